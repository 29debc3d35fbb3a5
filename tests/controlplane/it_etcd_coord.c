/*
 * tests/controlplane/it_etcd_coord.c -- several objmeta-coord processes
 * over one cluster state in a real etcd (suite controlplane): requests
 * through each coordinator reach the owner; two add-shard requests at the
 * same moment on two coordinators make exactly one change (the other is
 * BUSY); kill -9 of the leader while it copies, in cutover and in cleanup
 * (held open by the testing aid --test-phase-delay) leaves another to
 * finish it with no acknowledged write lost, no delete undone and every
 * key on its final owner; a cancel sent to a follower is carried out by
 * the leader; a leader frozen
 * (SIGSTOP) past its lease writes nothing after its successor's first write
 * and follows when it wakes; with etcd stopped, data requests go on and
 * admin changes are refused with UNAVAILABLE naming etcd, and resume once
 * etcd is back; a follower cut off from etcd alone (its own member stopped)
 * serves data on its ring, refuses admin changes naming etcd and catches up
 * with the change the leader made meanwhile once the member returns; during
 * the kill -9 scenarios the rebalance suite's load (tests/harness/tu_load.c)
 * checks that listings stay exact; a client given all three addresses keeps working while the
 * coordinators are killed and restarted one at a time. Skipped (77) when
 * etcd is not installed.
 *
 * Who wrote which state revision is read from <prefix>/writer (put in the
 * same transaction as the state) through a watch from a past revision.
 */
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "etcd/etcd.h"
#include "rpc/rpc.h"
#include "tu.h"
#include "tu_etcd.h"
#include "tu_load.h"

#define MAXSH 6
#define NCO 3
#define PREFIX "/objmeta/it"
#define BUCKET "cp-bucket"
#define WAIT_MS 30000

typedef struct cluster {
    tu_etcd *etcd;
    tu_proc *shard[MAXSH];
    char shard_addr[MAXSH][64];
    int nshards;
    tu_proc *coord[NCO];
    char coord_addr[NCO][64];
    char shards_arg[512];
    const char *rate;  /* --migrate-rate */
    const char *extra; /* one more coordinator argument, or NULL */
    bool own_member;   /* coordinator i talks to etcd member i only (3 members) */
} cluster;

static void
shard_start(cluster *cl, int i)
{
    char idarg[32];
    const char *extra[] = {idarg, NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(idarg, sizeof(idarg), "--id=s%d", i + 1);
    cl->shard[i] = tu_proc_start("$OBJMETA_SHARD", &o);
    snprintf(cl->shard_addr[i], sizeof(cl->shard_addr[i]), "127.0.0.1:%d",
             tu_proc_port(cl->shard[i], "rpc"));
}

/* Start coordinator i (on its old port again when it ran before). */
static void
coord_start(cluster *cl, int i)
{
    char etcd[600], rate[64], listen[80];
    const char *extra[] = {cl->shards_arg,
                           etcd,
                           "--etcd-prefix=" PREFIX,
                           "--lease-ttl=2s",
                           rate,
                           "--health-interval=100ms",
                           "--startup-wait=5s",
                           "--etcd-timeout=1s",
                           "--clock-margin=100ms",
                           NULL,
                           NULL,
                           NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(etcd, sizeof(etcd), "--etcd=%s",
             cl->own_member ? tu_etcd_member_url(cl->etcd, i) : tu_etcd_endpoints(cl->etcd));
    snprintf(rate, sizeof(rate), "--migrate-rate=%s", cl->rate ? cl->rate : "128M");
    /* a port of tu_free_port's (its HTTP port + 1000 too): free again at a restart */
    if (cl->coord_addr[i][0] == '\0')
        snprintf(cl->coord_addr[i], sizeof(cl->coord_addr[i]), "127.0.0.1:%d", tu_free_port());
    snprintf(listen, sizeof(listen), "--listen=%s", cl->coord_addr[i]);
    extra[9] = listen;
    extra[10] = cl->extra;
    cl->coord[i] = tu_proc_start("$OBJMETA_COORD", &o);
}

static void
cluster_start_etcd(cluster *cl, int nshards, const char *rate, const char *extra, bool own_member)
{
    size_t off;

    memset(cl, 0, sizeof(*cl));
    cl->rate = rate;
    cl->extra = extra;
    cl->own_member = own_member;
    cl->etcd = tu_etcd_start(own_member ? NCO : 1);
    cl->nshards = nshards;
    off = (size_t)snprintf(cl->shards_arg, sizeof(cl->shards_arg), "--shards=");
    for (int i = 0; i < nshards; i++) {
        shard_start(cl, i);
        off += (size_t)snprintf(cl->shards_arg + off, sizeof(cl->shards_arg) - off, "%ss%d=%s",
                                i ? "," : "", i + 1, cl->shard_addr[i]);
    }
    for (int i = 0; i < NCO; i++)
        coord_start(cl, i);
}

static void
cluster_start_with(cluster *cl, int nshards, const char *rate, const char *extra)
{
    cluster_start_etcd(cl, nshards, rate, extra, false);
}

static void
cluster_start(cluster *cl, int nshards, const char *rate)
{
    cluster_start_with(cl, nshards, rate, NULL);
}

static void
cluster_stop(cluster *cl)
{
    for (int i = 0; i < NCO; i++)
        if (cl->coord[i] != NULL)
            tu_proc_free(cl->coord[i]);
    for (int i = 0; i < MAXSH; i++)
        if (cl->shard[i] != NULL)
            tu_proc_free(cl->shard[i]);
    tu_etcd_stop(cl->etcd);
}

/* ---- requests ---- */

static Objmeta__Response *
call(const char *addr, const Objmeta__Request *req)
{
    rpc_sync_client *c = NULL;
    Objmeta__Response *r = NULL;

    if (rpc_sync_client_open(addr, 3000, &c) != OM_OK)
        return NULL;
    if (rpc_sync_client_call(c, req, 20000, &r) != OM_OK)
        r = NULL;
    rpc_sync_client_close(c);
    return r;
}

static Objmeta__Response *
add_shard(const char *coord_addr, const char *id, const char *addr)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddShardRequest a = OBJMETA__ADD_SHARD_REQUEST__INIT;

    a.id = (char *)id;
    a.addr = (char *)addr;
    a.weight = 1;
    req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
    req.add_shard = &a;
    return call(coord_addr, &req);
}

/* Ring epoch and pending epoch as coordinator addr sees them; false if it does not answer. */
static bool
ring_of(const char *addr, uint64_t *epoch, uint64_t *pending, size_t *nshards)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r;

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    r = call(addr, &req);
    if (r == NULL || r->status != OBJMETA__STATUS__OK ||
        r->body_case != OBJMETA__RESPONSE__BODY_GET_RING) {
        rpc_response_free(r);
        return false;
    }
    *epoch = r->get_ring->ring ? r->get_ring->ring->epoch : 0;
    *pending = r->get_ring->pending ? r->get_ring->pending->epoch : 0;
    if (nshards != NULL)
        *nshards = r->get_ring->ring ? r->get_ring->ring->n_shards : 0;
    rpc_response_free(r);
    return true;
}

/* The phase addr's RebalanceStatus reports into out ("" if it does not answer). */
static void
phase_of(const char *addr, char *out, size_t cap)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RebalanceStatusRequest rq = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    Objmeta__Response *r;

    req.body_case = OBJMETA__REQUEST__BODY_REBALANCE_STATUS;
    req.rebalance_status = &rq;
    r = call(addr, &req);
    out[0] = '\0';
    if (r != NULL && r->body_case == OBJMETA__RESPONSE__BODY_REBALANCE_STATUS)
        snprintf(out, cap, "%s", r->rebalance_status->phase);
    rpc_response_free(r);
}

/* The change is finished (epoch reached, nothing pending, idle) as seen by addr. */
static bool
change_done(const char *addr, uint64_t epoch)
{
    uint64_t e = 0, p = 0;
    char phase[32];

    if (!ring_of(addr, &e, &p, NULL) || e < epoch || p != 0)
        return false;
    phase_of(addr, phase, sizeof(phase));
    return strcmp(phase, "idle") == 0;
}

static void
wait_change_done(const char *addr, uint64_t epoch)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (!change_done(addr, epoch)) {
        char phase[32];

        phase_of(addr, phase, sizeof(phase));
        ck_assert_msg(tu_now_ms() < deadline, "change to epoch %llu not done via %s (phase %s)",
                      (unsigned long long)epoch, addr, phase);
        struct timespec ts = {0, 50 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
}

static omc_client *
client_of(const char *addr)
{
    omc_client *c = NULL;
    char msg[256];

    ck_assert_msg(omc_connect(addr, 3000, &c, msg, sizeof(msg)) == OM_OK, "%s", msg);
    omc_set_timeout(c, 10000);
    return c;
}

/* How many shards hold bucket/key (direct, unfenced reads). */
static int
holders_in(cluster *cl, const char *bucket, const char *key)
{
    int n = 0;

    for (int i = 0; i < MAXSH; i++) {
        omc_client *c;
        bool ex = false;

        if (cl->shard[i] == NULL)
            continue;
        c = client_of(cl->shard_addr[i]);
        ck_assert_int_eq(omc_exists(c, bucket, key, &ex), OM_OK);
        n += ex;
        omc_close(c);
    }
    return n;
}

static int
holders(cluster *cl, const char *key)
{
    return holders_in(cl, BUCKET, key);
}

static void
put(omc_client *c, const char *key, const char *val)
{
    ck_assert_msg(omc_store(c, BUCKET, key, om_slice_from_str(val), NULL, NULL) == OM_OK,
                  "store %s: %s", key, omc_last_message(c));
}

static void
expect(omc_client *c, const char *key, const char *val)
{
    om_buf got = OM_BUF_INIT;
    omc_info info;
    om_status st = omc_retrieve(c, BUCKET, key, &info, &got);

    if (val == NULL) {
        ck_assert_msg(st == OM_E_NOTFOUND, "%s: deleted, yet %s", key, om_status_str(st));
        return;
    }
    ck_assert_msg(st == OM_OK, "get %s: %s", key, omc_last_message(c));
    ck_assert_uint_eq(got.n, strlen(val));
    ck_assert_mem_eq(got.p, val, got.n);
    omc_info_free(&info);
    om_buf_free(&got);
}

/* ---- etcd: the leader, and who wrote ---- */

static struct event_base *ebase;
static etcd_client *ecl;

typedef struct eget {
    bool done;
    om_status st;
    char value[128];
    int64_t revision;
} eget;

static void
eget_cb(const etcd_resp *r, void *arg)
{
    eget *g = arg;

    g->done = true;
    g->st = r->st;
    g->revision = r->revision;
    if (r->nkvs == 1)
        snprintf(g->value, sizeof(g->value), "%.*s", (int)r->kvs[0].value.n,
                 (const char *)r->kvs[0].value.p);
}

static void
etcd_open(cluster *cl)
{
    etcd_opts o;
    char err[256];

    ebase = event_base_new();
    etcd_opts_init(&o);
    o.endpoints = tu_etcd_endpoints(cl->etcd);
    ck_assert_msg(etcd_client_new(ebase, &o, err, sizeof(err), &ecl) == OM_OK, "%s", err);
}

static void
etcd_close(void)
{
    etcd_client_free(ecl);
    event_base_free(ebase);
}

/* One range of `key` through client c on base b (st says whether it was read). */
static eget
etcd_get_on(etcd_client *c, struct event_base *b, const char *key)
{
    eget g = {0};

    g.st = etcd_range(c, om_slice_from_str(key), false, eget_cb, &g);
    while (g.st == OM_OK && !g.done)
        event_base_loop(b, EVLOOP_ONCE);
    return g;
}

static eget
etcd_get(const char *key)
{
    eget g = etcd_get_on(ecl, ebase, key);

    ck_assert_msg(g.done, "etcd range %s: %s", key, om_status_str(g.st));
    return g;
}

/* The index of the coordinator that leads, waiting for one (-1 never: fails the test). */
static int
leader_of(cluster *cl)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    for (;;) {
        eget g = etcd_get(PREFIX "/leader");

        for (int i = 0; g.st == OM_OK && i < NCO; i++)
            if (cl->coord[i] != NULL && strcmp(g.value, cl->coord_addr[i]) == 0)
                return i;
        ck_assert_msg(tu_now_ms() < deadline, "no leader in etcd");
        struct timespec ts = {0, 50 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
}

/*
 * The moment another coordinator than the killed leader leads, watched by a thread of its
 * own from the kill on (its own etcd client): the test's writes meanwhile wait for the
 * takeover too, and on a slow machine finishing them took longer than the takeover did.
 */
typedef struct takeover {
    char endpoints[600];
    char old[64];   /* the killed leader's address */
    uint64_t at_ms; /* when another one led; 0 if none within WAIT_MS */
    pthread_t th;
} takeover;

static void *
takeover_main(void *arg)
{
    takeover *t = arg;
    struct event_base *b = event_base_new();
    etcd_client *c = NULL;
    etcd_opts o;
    char err[256];
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    etcd_opts_init(&o);
    o.endpoints = t->endpoints;
    if (b == NULL || etcd_client_new(b, &o, err, sizeof(err), &c) != OM_OK)
        goto out;
    while (tu_now_ms() < deadline) {
        eget g = etcd_get_on(c, b, PREFIX "/leader");

        if (g.done && g.st == OM_OK && g.value[0] != '\0' && strcmp(g.value, t->old) != 0) {
            t->at_ms = tu_now_ms();
            break;
        }
        struct timespec ts = {0, 10 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
out:
    if (c != NULL)
        etcd_client_free(c);
    if (b != NULL)
        event_base_free(b);
    return NULL;
}

/* Kill -9 coordinator `lead` and start watching for its successor. */
static void
takeover_start(takeover *t, cluster *cl, int lead)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->endpoints, sizeof(t->endpoints), "%s", tu_etcd_endpoints(cl->etcd));
    snprintf(t->old, sizeof(t->old), "%s", cl->coord_addr[lead]);
    ck_assert_int_eq(pthread_create(&t->th, NULL, takeover_main, t), 0);
}

/* Milliseconds from `killed_ms` until another coordinator led (fails after WAIT_MS). */
static uint64_t
takeover_ms(takeover *t, uint64_t killed_ms)
{
    pthread_join(t->th, NULL);
    ck_assert_msg(t->at_ms != 0, "nobody took over from %s within %d ms", t->old, WAIT_MS);
    return t->at_ms - killed_ms;
}

typedef struct writers {
    int n;
    char who[256][64];
    int64_t rev[256];
    int64_t upto; /* wait until an event at or past this revision */
} writers;

static void
writers_cb(const etcd_watch_batch *b, void *arg)
{
    writers *w = arg;

    for (size_t i = 0; b->st == OM_OK && i < b->nevents && w->n < 256; i++, w->n++) {
        snprintf(w->who[w->n], sizeof(w->who[0]), "%.*s", (int)b->events[i].kv.value.n,
                 (const char *)b->events[i].kv.value.p);
        w->rev[w->n] = b->events[i].kv.mod_revision;
    }
}

/* Every write of the state after revision `after`, up to the store's current revision. */
static void
writers_since(int64_t after, writers *w)
{
    etcd_watch *wa;
    eget now = etcd_get(PREFIX "/writer");
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    memset(w, 0, sizeof(*w));
    ck_assert_int_eq(etcd_watch_new(ecl, om_slice_from_str(PREFIX "/writer"), false, after + 1,
                                    writers_cb, w, &wa),
                     OM_OK);
    /* the last write of the key is at or before `now`; wait until it came through */
    while (w->n == 0 || w->rev[w->n - 1] < now.revision) {
        eget again = etcd_get(PREFIX "/writer");

        if (w->n > 0 && again.revision == now.revision)
            break; /* nothing newer will come: the key's last put was seen */
        ck_assert_msg(tu_now_ms() < deadline, "watch of the writers did not catch up");
        event_base_loop(ebase, EVLOOP_NONBLOCK);
        now = again;
    }
    etcd_watch_free(wa);
}

/* A counter of coordinator addr's Stats (fails the test if absent). */
static uint64_t
stat_of(const char *addr, const char *name)
{
    omc_client *c = client_of(addr);
    omc_stats st;
    uint64_t v = 0;
    bool found = false;

    ck_assert_int_eq(omc_stats_get(c, &st), OM_OK);
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(st.names[i], name) == 0) {
            v = st.values[i];
            found = true;
        }
    omc_stats_free(&st);
    omc_close(c);
    ck_assert_msg(found, "no counter %s", name);
    return v;
}

/* ---- tests ---- */

START_TEST(coordinators_route_to_the_owner)
{
    cluster cl;
    omc_client *c[NCO];
    char key[32], val[32];

    cluster_start(&cl, 3, NULL);
    for (int i = 0; i < NCO; i++)
        c[i] = client_of(cl.coord_addr[i]);
    for (int k = 0; k < 30; k++) {
        snprintf(key, sizeof(key), "k%02d", k);
        snprintf(val, sizeof(val), "v%02d", k);
        put(c[k % NCO], key, val);
    }
    for (int k = 0; k < 30; k++) {
        snprintf(key, sizeof(key), "k%02d", k);
        snprintf(val, sizeof(val), "v%02d", k);
        for (int i = 0; i < NCO; i++)
            expect(c[i], key, val);
        ck_assert_int_eq(holders(&cl, key), 1); /* on its owner only */
    }
    /* exactly one says it leads; all of them have talked to etcd */
    {
        uint64_t deadline = tu_now_ms() + WAIT_MS;

        for (;;) {
            uint64_t leaders = 0;

            for (int i = 0; i < NCO; i++)
                leaders += stat_of(cl.coord_addr[i], "coord.leader");
            if (leaders == 1)
                break;
            ck_assert_msg(tu_now_ms() < deadline, "%llu coordinators lead",
                          (unsigned long long)leaders);
        }
    }
    /* objmeta admin status over the three: one leader, everyone at epoch 1 */
    {
        char addrs[256], *out = NULL, *err = NULL;
        const char *argv[] = {"objmeta", "--addr", addrs, "admin", "status", "--json", NULL};
        int leaders = 0, at1 = 0;

        snprintf(addrs, sizeof(addrs), "%s,%s,%s", cl.coord_addr[0], cl.coord_addr[1],
                 cl.coord_addr[2]);
        ck_assert_int_eq(tu_run_cmd("$OBJMETA_CLI", argv, 10000, &out, &err), 0);
        for (const char *q = out; (q = strstr(q, "\"role\":\"leader\"")) != NULL; q++)
            leaders++;
        for (const char *q = out; (q = strstr(q, "\"epoch\":1,")) != NULL; q++)
            at1++;
        ck_assert_msg(leaders == 1 && at1 == NCO, "admin status: %s", out);
        free(out);
        free(err);
    }
    for (int i = 0; i < NCO; i++) {
        uint64_t e, p;
        size_t n;

        ck_assert_uint_gt(stat_of(cl.coord_addr[i], "coord.etcd.requests"), 0);
        ck_assert_uint_gt(stat_of(cl.coord_addr[i], "coord.state.revision"), 0);
        ck_assert_uint_eq(stat_of(cl.coord_addr[i], "coord.state.watch_lag"), 0);
        ck_assert(ring_of(cl.coord_addr[i], &e, &p, &n));
        ck_assert_uint_eq(e, 1);
        ck_assert_uint_eq(n, 3);
        omc_close(c[i]);
    }
    cluster_stop(&cl);
}
END_TEST

typedef struct racer {
    pthread_barrier_t *bar;
    const char *coord, *id, *addr;
    Objmeta__Status status;
    char message[256];
} racer;

static void *
racer_main(void *arg)
{
    racer *r = arg;
    Objmeta__Response *resp;

    pthread_barrier_wait(r->bar);
    resp = add_shard(r->coord, r->id, r->addr);
    r->status = resp ? resp->status : OBJMETA__STATUS__UNAVAILABLE;
    snprintf(r->message, sizeof(r->message), "%s", resp && resp->message ? resp->message : "");
    rpc_response_free(resp);
    return NULL;
}

START_TEST(concurrent_add_shard_one_wins)
{
    cluster cl;
    pthread_barrier_t bar;
    pthread_t th[2];
    racer r[2];
    uint64_t e, p;
    size_t n;
    int ok = 0, busy = 0;

    /* The change of an empty cluster would end within ~100 ms, and a racer delayed that long
     * (a busy machine, a sanitizer build) would then start a second, legitimate change: hold
     * cutover and cleanup open so the change the other racer meets is still in progress. */
    cluster_start_with(&cl, 2, NULL, "--test-phase-delay=1000ms");
    shard_start(&cl, 2);
    shard_start(&cl, 3);
    pthread_barrier_init(&bar, NULL, 2);
    for (int i = 0; i < 2; i++) {
        r[i] = (racer){.bar = &bar,
                       .coord = cl.coord_addr[i],
                       .id = i ? "s4" : "s3",
                       .addr = cl.shard_addr[2 + i]};
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 2; i++) {
        ok += r[i].status == OBJMETA__STATUS__OK;
        busy += r[i].status == OBJMETA__STATUS__BUSY;
        if (r[i].status == OBJMETA__STATUS__BUSY)
            ck_assert_msg(strstr(r[i].message, "in progress") != NULL, "%s", r[i].message);
    }
    ck_assert_msg(ok == 1 && busy == 1, "answers: %d (%s), %d (%s)", (int)r[0].status, r[0].message,
                  (int)r[1].status, r[1].message);
    for (int i = 0; i < NCO; i++)
        wait_change_done(cl.coord_addr[i], 2);
    ck_assert(ring_of(cl.coord_addr[2], &e, &p, &n));
    ck_assert_uint_eq(e, 2); /* exactly one change */
    ck_assert_uint_eq(n, 3);
    cluster_stop(&cl);
}
END_TEST

#define NKEYS 400
#define VPAD 4000       /* padding of each value while the leader dies copying */
#define VPAD_SHORT 1000 /* in the other phases: saves the sanitizer builds a few seconds */
#define LOAD_BUCKET "cp-load"
#define LOAD_NSTABLE 200
#define LOAD_NMUT 100

/* Key k's value: vpad bytes of a pattern shifted by k, then "-k". */
static void
load_value(char *val, size_t cap, int k, size_t vpad)
{
    static const char pad[] = "0123456789abcdef";

    for (size_t i = 0; i < vpad; i++)
        val[i] = pad[(k + i) % 16];
    snprintf(val + vpad, cap - vpad, "-%d", k);
}

/*
 * Load keys, start a slow add-shard, write and delete while it runs, and kill -9 the leader
 * once it reports `phase` ("copying", "cutover", "cleanup"; the last two are held open by
 * the testing aid --test-phase-delay): another coordinator finishes the change with no
 * acknowledged write lost, no acknowledged delete undone, every key on its final owner.
 * Throughout, the rebalance suite's load (tu_load.h) runs through the two followers: its
 * listings taken during the change never repeat a key nor miss one that existed
 * throughout, and its acknowledged writes and deletes hold afterwards.
 */
static void
leader_killed_during(const char *phase)
{
    cluster cl;
    omc_client *c;
    Objmeta__Response *r;
    char key[32], val[VPAD + 16], addrs[256];
    int lead, keeper;
    uint64_t killed_ms = 0, lists_before, took;
    takeover tw;
    tu_load *L;

    printf("kill -9 of the leader during %s\n", phase);
    /* 256 KiB/s: the load's busy clients throttle the copy down to 1/8 of that, and it must
     * still end within WAIT_MS. s3's share of NKEYS values of VPAD bytes (~260 KB) lasts
     * about a second at full rate: long enough to be seen copying on a busy machine (with
     * 1 KB values it took 0.26 s, and a slower rate let the catch-up pass trail the load's
     * writes for over WAIT_MS). Cutover and cleanup are held open by the testing aid, and
     * 1 KB values save the sanitizer builds a few seconds there. */
    size_t vpad = strcmp(phase, "copying") == 0 ? VPAD : VPAD_SHORT;
    cluster_start_with(&cl, 2, "256K",
                       strcmp(phase, "copying") != 0 ? "--test-phase-delay=1500ms" : NULL);
    shard_start(&cl, 2);
    etcd_open(&cl);
    lead = leader_of(&cl);
    keeper = (lead + 1) % NCO;
    snprintf(addrs, sizeof(addrs), "%s,%s", cl.coord_addr[keeper], cl.coord_addr[(lead + 2) % NCO]);
    c = client_of(addrs);
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof(key), "m%03d", k);
        load_value(val, sizeof(val), k, vpad);
        put(c, key, val);
    }
    L = tu_load_new(addrs, LOAD_BUCKET, LOAD_NSTABLE, LOAD_NMUT, tu_seed(phase), true);
    tu_load_preload(L);
    tu_load_start(L);
    /* through a follower: forwarded to the leader */
    r = add_shard(cl.coord_addr[keeper], "s3", cl.shard_addr[2]);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "add-shard: %s",
                  r ? r->message : "no answer");
    rpc_response_free(r);
    /* writes and deletes while it copies; the leader dies after the first (the load's
     * writes ran before it: a copy may end within a second, before a few slow writes
     * on a busy machine did, and the leader would never be seen copying). Followers pass
     * moving keys to the leader, so until a successor leads (one lease TTL) those are
     * refused with UNAVAILABLE -- not acknowledged -- and the client tries again. */
    for (int k = 0; k < 40; k++) {
        uint64_t until = tu_now_ms() + WAIT_MS;
        om_status st;

        snprintf(key, sizeof(key), "m%03d", k);
        do {
            st = k % 2 ? omc_delete(c, BUCKET, key, NULL, NULL)
                       : omc_store(c, BUCKET, key, om_slice_from_str("rewritten"), NULL, NULL);
            if (st == OM_E_NOTFOUND && k % 2)
                st = OM_OK; /* an earlier, unacknowledged attempt deleted it */
            ck_assert_msg(st == OM_OK || (st == OM_E_UNAVAILABLE && tu_now_ms() < until), "%s: %s",
                          key, omc_last_message(c));
            if (st != OM_OK) {
                struct timespec ts = {0, 50 * 1000000L}; /* retry interval */
                nanosleep(&ts, NULL);
            }
        } while (st != OM_OK);
        if (k == 0) {
            char now[32];
            uint64_t phase_until = tu_now_ms() + WAIT_MS;

            for (phase_of(cl.coord_addr[lead], now, sizeof(now)); strcmp(now, phase) != 0;
                 phase_of(cl.coord_addr[lead], now, sizeof(now))) {
                ck_assert_msg(tu_now_ms() < phase_until,
                              "the leader never reported %s (now \"%s\")", phase, now);
                struct timespec ts = {0, 10 * 1000000L}; /* poll interval */
                nanosleep(&ts, NULL);
            }
            takeover_start(&tw, &cl, lead);
            tu_proc_kill9(cl.coord[lead]);
            killed_ms = tu_now_ms();
        }
    }
    /* another coordinator took over (the bar: within 2 x the 2 s lease) and finishes */
    took = takeover_ms(&tw, killed_ms);
    printf("takeover after kill -9: %llu ms (lease 2000 ms); killed %llu ms after the load "
           "started\n",
           (unsigned long long)took, (unsigned long long)(killed_ms - tu_load_started_ms(L)));
    fflush(stdout);
    ck_assert_uint_le(took, 2 * 2000);
    ck_assert_int_ne(leader_of(&cl), lead);
    lists_before = tu_load_lists(L);
    wait_change_done(cl.coord_addr[keeper], 2);
    tu_load_stop(L);
    printf("%llu complete listings after the takeover, during the rest of the change\n",
           (unsigned long long)(tu_load_lists(L) - lists_before));
    ck_assert_uint_gt(tu_load_lists(L), 0);
    tu_load_check(L);
    for (int k = 0; k < LOAD_NSTABLE; k += 5) {
        tu_load_stable_key(k, key, sizeof(key));
        ck_assert_msg(holders_in(&cl, LOAD_BUCKET, key) == 1,
                      "%s is not on exactly its final owner", key);
    }
    tu_load_free(L);
    /* the followers passed the moving keys to the leader */
    ck_assert_uint_gt(stat_of(cl.coord_addr[keeper], "coord.proxied_moving") +
                          stat_of(cl.coord_addr[(lead + 2) % NCO], "coord.proxied_moving"),
                      0);
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof(key), "m%03d", k);
        if (k < 40) {
            expect(c, key, k % 2 ? NULL : "rewritten");
        } else {
            load_value(val, sizeof(val), k, vpad);
            expect(c, key, val);
        }
        if (k % 2 == 0 || k >= 40)
            ck_assert_msg(holders(&cl, key) == 1, "%s is not on exactly its final owner", key);
    }
    omc_close(c);
    etcd_close();
    cluster_stop(&cl);
}

START_TEST(leader_killed_mid_change_another_finishes)
{
    leader_killed_during("copying");
}
END_TEST

START_TEST(leader_killed_in_cutover_another_finishes)
{
    leader_killed_during("cutover");
}
END_TEST

START_TEST(leader_killed_in_cleanup_another_finishes)
{
    leader_killed_during("cleanup");
}
END_TEST

/*
 * CancelRebalance sent to a follower: forwarded, the leader cancels mid-copy. Every
 * coordinator ends on the two old shards under a new epoch (3), writes and deletes made
 * during the copy hold, and the shard that was being added leaves holding copies, so it is
 * refused until wiped.
 */
START_TEST(cancel_through_a_follower)
{
    cluster cl;
    omc_client *c;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__CancelRebalanceRequest cq = OBJMETA__CANCEL_REBALANCE_REQUEST__INIT;
    Objmeta__Response *r;
    char key[32], val[1100];
    int lead, fol;
    uint64_t e = 0, p = 0;
    size_t n = 0;

    /* 32 KiB/s: the copy (~1/3 of 400 KB) lasts seconds, so 40 writes and the cancel come
     * before the switch even on a busy machine */
    cluster_start(&cl, 2, "32K");
    shard_start(&cl, 2);
    etcd_open(&cl);
    lead = leader_of(&cl);
    fol = (lead + 1) % NCO;
    c = client_of(cl.coord_addr[fol]);
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof(key), "c%03d", k);
        memset(val, 'a' + k % 26, 1000);
        snprintf(val + 1000, sizeof(val) - 1000, "-%d", k);
        put(c, key, val);
    }
    r = add_shard(cl.coord_addr[fol], "s3", cl.shard_addr[2]);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "add-shard: %s",
                  r ? r->message : "no answer");
    rpc_response_free(r);
    for (int k = 0; k < 40; k++) { /* while it copies */
        snprintf(key, sizeof(key), "c%03d", k);
        if (k % 2)
            ck_assert_int_eq(omc_delete(c, BUCKET, key, NULL, NULL), OM_OK);
        else
            put(c, key, "rewritten");
    }
    req.body_case = OBJMETA__REQUEST__BODY_CANCEL_REBALANCE;
    req.cancel_rebalance = &cq;
    r = call(cl.coord_addr[fol], &req);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "cancel: %s",
                  r ? r->message : "no answer");
    printf("cancel through a follower: %s while %s, epoch %llu -> %llu, wipe %s\n",
           r->cancel_rebalance->operation, r->cancel_rebalance->phase,
           (unsigned long long)r->cancel_rebalance->from_epoch,
           (unsigned long long)r->cancel_rebalance->to_epoch,
           r->cancel_rebalance->n_wipe_shards ? r->cancel_rebalance->wipe_shards[0] : "-");
    ck_assert_uint_eq(r->cancel_rebalance->to_epoch, 3);
    ck_assert_uint_eq(r->cancel_rebalance->n_wipe_shards, 1);
    ck_assert_str_eq(r->cancel_rebalance->wipe_shards[0], "s3");
    rpc_response_free(r);
    for (int i = 0; i < NCO; i++) {
        wait_change_done(cl.coord_addr[i], 3);
        ck_assert(ring_of(cl.coord_addr[i], &e, &p, &n));
        ck_assert_uint_eq(e, 3);
        ck_assert_uint_eq(n, 2);
    }
    r = add_shard(cl.coord_addr[lead], "s3", cl.shard_addr[2]);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(r->status == OBJMETA__STATUS__INVALID_ARGUMENT &&
                      strstr(r->message, "already holds records") != NULL,
                  "re-adding the cancelled shard: %s", r->message);
    rpc_response_free(r);
    ck_assert_int_eq(tu_proc_stop(cl.shard[2]), 0); /* out of the cluster: its copies too */
    tu_proc_free(cl.shard[2]);
    cl.shard[2] = NULL;
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof(key), "c%03d", k);
        memset(val, 'a' + k % 26, 1000);
        snprintf(val + 1000, sizeof(val) - 1000, "-%d", k);
        expect(c, key, k < 40 ? (k % 2 ? NULL : "rewritten") : val);
        if (k % 2 == 0 || k >= 40)
            ck_assert_msg(holders(&cl, key) == 1, "%s is not on exactly its owner", key);
    }
    omc_close(c);
    etcd_close();
    cluster_stop(&cl);
}
END_TEST

START_TEST(frozen_leader_writes_nothing)
{
    cluster cl;
    Objmeta__Response *r;
    writers w;
    int lead, other;
    int64_t stop_rev;
    int first_new = -1;
    uint64_t deadline;
    omc_client *c;
    char key[32];

    cluster_start(&cl, 2, "32K");
    shard_start(&cl, 2);
    etcd_open(&cl);
    lead = leader_of(&cl);
    other = (lead + 1) % NCO;
    c = client_of(cl.coord_addr[other]);
    for (int k = 0; k < 200; k++) {
        char val[600];

        snprintf(key, sizeof(key), "f%03d", k);
        memset(val, 'a' + k % 26, 500);
        val[500] = 0;
        put(c, key, val);
    }
    r = add_shard(cl.coord_addr[lead], "s3", cl.shard_addr[2]);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "add-shard: %s",
                  r ? r->message : "no answer");
    rpc_response_free(r);
    /* freeze the leader while it copies (it checkpoints every 200 ms) */
    kill(tu_proc_pid(cl.coord[lead]), SIGSTOP);
    stop_rev = etcd_get(PREFIX "/writer").revision;
    deadline = tu_now_ms() + WAIT_MS;
    while (leader_of(&cl) == lead) {
        ck_assert_msg(tu_now_ms() < deadline, "nobody took over from the frozen leader");
        struct timespec ts = {0, 50 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
    kill(tu_proc_pid(cl.coord[lead]), SIGCONT);
    wait_change_done(cl.coord_addr[other], 2);
    /* the woken leader follows: it serves the final ring too */
    wait_change_done(cl.coord_addr[lead], 2);
    writers_since(stop_rev, &w);
    for (int i = 0; i < w.n; i++) {
        if (first_new < 0 && strcmp(w.who[i], cl.coord_addr[lead]) != 0)
            first_new = i;
        if (first_new >= 0)
            ck_assert_msg(strcmp(w.who[i], cl.coord_addr[lead]) != 0,
                          "the former leader %s wrote revision %lld after its successor %s",
                          cl.coord_addr[lead], (long long)w.rev[i], w.who[first_new]);
    }
    ck_assert_msg(first_new >= 0, "the successor never wrote the state");
    for (int k = 0; k < 200; k += 7) {
        snprintf(key, sizeof(key), "f%03d", k);
        ck_assert_int_eq(holders(&cl, key), 1);
    }
    omc_close(c);
    etcd_close();
    cluster_stop(&cl);
}
END_TEST

START_TEST(etcd_down_data_flows_admin_refused)
{
    cluster cl;
    omc_client *c;
    Objmeta__Response *r;
    char key[32];
    uint64_t deadline;

    cluster_start(&cl, 2, NULL);
    shard_start(&cl, 2);
    c = client_of(cl.coord_addr[1]);
    put(c, "before", "1");
    tu_etcd_stop_member(cl.etcd, 0);
    /* data requests go on with the rings in hand, through every coordinator */
    for (int i = 0; i < NCO; i++) {
        omc_client *ci = client_of(cl.coord_addr[i]);

        snprintf(key, sizeof(key), "during-%d", i);
        put(ci, key, "2");
        expect(ci, "before", "1");
        omc_close(ci);
    }
    /* admin changes are refused, naming etcd */
    for (int i = 0; i < NCO; i++) {
        r = add_shard(cl.coord_addr[i], "s3", cl.shard_addr[2]);
        ck_assert_ptr_nonnull(r);
        ck_assert_msg(r->status == OBJMETA__STATUS__UNAVAILABLE && strstr(r->message, "etcd"),
                      "coordinator %d: status %d: %s", i, (int)r->status, r->message);
        rpc_response_free(r);
    }
    /* a coordinator starting now keeps trying etcd for --startup-wait, then says why not */
    {
        char etcd[600], dir[600], *out = NULL, *err = NULL;
        const char *argv[] = {"objmeta-coord",
                              etcd,
                              "--etcd-prefix=" PREFIX,
                              "--etcd-timeout=1s",
                              "--startup-wait=1s",
                              "--listen=127.0.0.1:0",
                              dir,
                              NULL};

        snprintf(etcd, sizeof(etcd), "--etcd=%s", tu_etcd_endpoints(cl.etcd));
        snprintf(dir, sizeof(dir), "--data-dir=%s/coord-no-etcd", tu_tmpdir());
        ck_assert_int_ne(tu_run_cmd("$OBJMETA_COORD", argv, 20000, &out, &err), 0);
        ck_assert_msg(strstr(err, "trying again") && strstr(err, "cannot start: etcd"), "%s", err);
        free(out);
        free(err);
    }
    /* etcd back: a leader again, and the change goes through */
    tu_etcd_restart_member(cl.etcd, 0);
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        r = add_shard(cl.coord_addr[0], "s3", cl.shard_addr[2]);
        if (r != NULL && r->status == OBJMETA__STATUS__OK)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "admin still refused after etcd came back: %s",
                      r ? r->message : "no answer");
        rpc_response_free(r);
        struct timespec ts = {0, 100 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
    rpc_response_free(r);
    wait_change_done(cl.coord_addr[2], 2);
    expect(c, "during-0", "2");
    expect(c, "before", "1");
    omc_close(c);
    cluster_stop(&cl);
}
END_TEST

static Objmeta__Response *
cancel_via(const char *addr)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__CancelRebalanceRequest cq = OBJMETA__CANCEL_REBALANCE_REQUEST__INIT;

    req.body_case = OBJMETA__REQUEST__BODY_CANCEL_REBALANCE;
    req.cancel_rebalance = &cq;
    return call(addr, &req);
}

/* Refused with UNAVAILABLE, the message naming etcd. */
static bool
refused_naming_etcd(const Objmeta__Response *r)
{
    return r != NULL && r->status == OBJMETA__STATUS__UNAVAILABLE && r->message != NULL &&
           strstr(r->message, "etcd") != NULL;
}

/*
 * Three etcd members, coordinator i talking to member i only; the member of a follower
 * stops (etcd keeps its quorum, the leader goes on). The follower keeps serving data on
 * the ring it holds and refuses admin changes with UNAVAILABLE naming etcd; the leader
 * meanwhile adds a shard; once the member is back the follower catches up with the ring.
 */
START_TEST(follower_cut_off_from_etcd)
{
    cluster cl;
    omc_client *c;
    Objmeta__Response *r;
    char key[32];
    int lead, fol;
    uint64_t e = 0, p = 0, deadline;

    cluster_start_etcd(&cl, 2, NULL, NULL, true);
    shard_start(&cl, 2);
    etcd_open(&cl);
    lead = leader_of(&cl);
    fol = (lead + 1) % NCO;
    c = client_of(cl.coord_addr[fol]);
    put(c, "before", "1");
    tu_etcd_stop_member(cl.etcd, fol);
    /* once its lease keep-alives go unanswered for a TTL it knows it is cut off; until then
     * a cancel is passed to the leader, which has nothing to cancel (never OK) */
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        r = cancel_via(cl.coord_addr[fol]);
        ck_assert_msg(r != NULL && r->status != OBJMETA__STATUS__OK, "cancel via the follower: %s",
                      r ? r->message : "no answer");
        if (refused_naming_etcd(r))
            break;
        ck_assert_msg(tu_now_ms() < deadline, "the follower never noticed it is cut off: %s",
                      r->message);
        rpc_response_free(r);
        struct timespec ts = {0, 100 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
    printf("cut-off follower refuses: %s\n", r->message);
    rpc_response_free(r);
    r = add_shard(cl.coord_addr[fol], "s3", cl.shard_addr[2]);
    ck_assert_msg(refused_naming_etcd(r), "add-shard via the cut-off follower: %s",
                  r ? r->message : "no answer");
    rpc_response_free(r);
    /* data goes on through it, on the ring it holds */
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof(key), "cut-%02d", k);
        put(c, key, key);
        expect(c, key, key);
    }
    expect(c, "before", "1");
    /* the leader, in touch with etcd, makes a change meanwhile (retried while etcd's own
     * leader moves, if the stopped member led it) */
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        lead = leader_of(&cl);
        ck_assert_int_ne(lead, fol);
        r = add_shard(cl.coord_addr[lead], "s3", cl.shard_addr[2]);
        if (r != NULL && r->status == OBJMETA__STATUS__OK)
            break;
        ck_assert_msg(tu_now_ms() < deadline &&
                          (r == NULL || r->status == OBJMETA__STATUS__UNAVAILABLE),
                      "add-shard via the leader: %s", r ? r->message : "no answer");
        rpc_response_free(r);
        struct timespec ts = {0, 100 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
    rpc_response_free(r);
    wait_change_done(cl.coord_addr[lead], 2);
    ck_assert(ring_of(cl.coord_addr[fol], &e, &p, NULL));
    ck_assert_msg(e == 1, "the cut-off follower saw epoch %llu", (unsigned long long)e);
    /* etcd back: it catches up with the ring, and passes admin requests on again */
    tu_etcd_restart_member(cl.etcd, fol);
    wait_change_done(cl.coord_addr[fol], 2);
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        r = cancel_via(cl.coord_addr[fol]);
        ck_assert_ptr_nonnull(r);
        if (r->status == OBJMETA__STATUS__PRECONDITION_FAILED)
            break; /* the leader's answer: nothing to cancel */
        ck_assert_msg(tu_now_ms() < deadline, "cancel via the follower after etcd returned: %s",
                      r->message);
        rpc_response_free(r);
        struct timespec ts = {0, 100 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
    rpc_response_free(r);
    omc_close(c);
    c = client_of(cl.coord_addr[fol]);
    expect(c, "before", "1");
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof(key), "cut-%02d", k);
        expect(c, key, key);
        ck_assert_int_eq(holders(&cl, key), 1);
    }
    omc_close(c);
    etcd_close();
    cluster_stop(&cl);
}
END_TEST

START_TEST(rolling_restarts_three_addresses)
{
    cluster cl;
    omc_client *c;
    char addrs[256], key[32], val[32];

    cluster_start(&cl, 2, NULL);
    snprintf(addrs, sizeof(addrs), "%s,%s,%s", cl.coord_addr[0], cl.coord_addr[1],
             cl.coord_addr[2]);
    c = client_of(addrs);
    for (int round = 0; round < 2 * NCO; round++) {
        int victim = round % NCO;

        tu_proc_kill9(cl.coord[victim]);
        for (int k = 0; k < 5; k++) {
            snprintf(key, sizeof(key), "roll-%d-%d", round, k);
            snprintf(val, sizeof(val), "v-%d-%d", round, k);
            put(c, key, val);
            expect(c, key, val);
        }
        tu_proc_free(cl.coord[victim]);
        coord_start(&cl, victim);
    }
    for (int round = 0; round < 2 * NCO; round++) {
        snprintf(key, sizeof(key), "roll-%d-4", round);
        snprintf(val, sizeof(val), "v-%d-4", round);
        expect(c, key, val);
    }
    omc_close(c);
    cluster_stop(&cl);
}
END_TEST

static Suite *
etcd_coord_suite(void)
{
    Suite *s = suite_create("etcd-coordinators");
    TCase *tc = tcase_create("etcd-coordinators");

    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, coordinators_route_to_the_owner);
    tcase_add_test(tc, concurrent_add_shard_one_wins);
    tcase_add_test(tc, leader_killed_mid_change_another_finishes);
    tcase_add_test(tc, cancel_through_a_follower);
    tcase_add_test(tc, leader_killed_in_cutover_another_finishes);
    tcase_add_test(tc, leader_killed_in_cleanup_another_finishes);
    tcase_add_test(tc, frozen_leader_writes_nothing);
    tcase_add_test(tc, etcd_down_data_flows_admin_refused);
    tcase_add_test(tc, follower_cut_off_from_etcd);
    tcase_add_test(tc, rolling_restarts_three_addresses);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    if (!tu_etcd_available())
        return 77;
    return tu_run(etcd_coord_suite());
}
