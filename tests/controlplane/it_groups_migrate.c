/*
 * tests/controlplane/it_groups_migrate.c -- ring changes into and out of
 * replica groups (shard/REPLICATION.md, "Migration into a group";
 * coordinator/GROUPS.md): a real etcd, a real objmeta-coord with the etcd
 * cluster state, and groups of three objmeta-shard replicas in etcd mode
 * (lease, failover), under a load of writers (stores and deletes, each
 * key owned by one writer) and a reader, all through the coordinator.
 *
 *   add_group_under_load   g1 holds data; add-group g2 while the load
 *                          runs.
 *   source_primary_killed  kill -9 of g1's primary (the source) while the
 *                          copy runs: the change finishes against the new
 *                          primary; the killed replica restarts and rejoins.
 *   target_primary_killed  the same for g2's primary (the target).
 *   add_during_failover    g1 and g2 in the ring; kill -9 of g2's primary
 *                          and add-group g3 at once: g2 is a source that
 *                          fails over while the change starts.
 *
 * Every listing taken meanwhile has its keys strictly ascending across its
 * pages (none repeated) and every key that existed throughout. Each ends,
 * with the load stopped and every replica back in sync, with:
 * every key reads back through the coordinator as its last acknowledged
 * write left it (or as a write whose outcome the writer could not know),
 * so no acknowledged write is lost and no acknowledged delete undone; every
 * live key is on all three replicas of exactly one group -- the one the
 * coordinator reads it from -- so the moved keys were purged from every
 * replica of their old group; and `admin verify` finds each group's
 * replicas identical. The copy is throttled so that it lasts seconds; the
 * seed of the load is printed (TU_SEED repeats a run).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "it_util.h"
#include "tu.h"
#include "tu_etcd.h"
#include "util/clock.h"

#define PREFIX "/objmeta/grpmig"
#define BUCKET "mig"
#define NREP 3
#define NKEYS 480  /* the writers' keys */
#define NSTABLE 60 /* more keys, stored once and never written again: every listing has them */
#define NALL (NKEYS + NSTABLE)
#define VALUE_BYTES 2048
#define WRITERS 3
#define MAX_PENDING 16
#define WAIT_MS 90000

/* ---- processes ---- */

typedef struct group {
    char id[8];
    tu_proc *p[NREP];
    char dir[NREP][256];
    int port[NREP];
    char addr[NREP][64];
} group;

static tu_etcd *etcd;

static void
replica_start(group *g, int i, bool fresh)
{
    char listen[64], eps[300], id[32], gid[32], rid[32];
    const char *extra[] = {"--sync-mode=always",
                           listen,
                           eps,
                           "--etcd-prefix=" PREFIX,
                           gid,
                           id,
                           rid,
                           "--replica-lease-ttl=2s",
                           "--replica-timeout=500ms",
                           NULL};
    tu_proc_opts o = {
        .data_dir = fresh ? NULL : g->dir[i], .extra = extra, .start_timeout_ms = 60000};

    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", g->port[i]);
    snprintf(eps, sizeof(eps), "--etcd=%s", tu_etcd_endpoints(etcd));
    snprintf(gid, sizeof(gid), "--replica-group=%s", g->id);
    snprintf(id, sizeof(id), "--id=%s", g->id);
    snprintf(rid, sizeof(rid), "--replica-id=r%d", i);
    g->p[i] = tu_proc_start("$OBJMETA_SHARD", &o);
    snprintf(g->dir[i], sizeof(g->dir[i]), "%s", tu_proc_data_dir(g->p[i]));
}

static void
group_start(group *g, const char *id)
{
    memset(g, 0, sizeof(*g));
    snprintf(g->id, sizeof(g->id), "%s", id);
    for (int i = 0; i < NREP; i++) {
        g->port[i] = tu_free_port();
        snprintf(g->addr[i], sizeof(g->addr[i]), "127.0.0.1:%d", g->port[i]);
        replica_start(g, i, true);
    }
}

static void
group_stop(group *g)
{
    for (int i = 0; i < NREP; i++)
        if (g->p[i] != NULL) {
            tu_proc_stop(g->p[i]);
            tu_proc_free(g->p[i]);
            g->p[i] = NULL;
        }
}

/* `r0@addr,r1@addr,r2@addr` for add-group. */
static void
group_replicas_arg(const group *g, char *out, size_t n)
{
    snprintf(out, n, "r0@%s,r1@%s,r2@%s", g->addr[0], g->addr[1], g->addr[2]);
}

static char *
etcdctl(const char *const *args)
{
    char ep[300];
    const char *argv[8] = {"etcdctl", ep};
    char *out = NULL, *err = NULL;
    int n = 2, rc;

    snprintf(ep, sizeof(ep), "--endpoints=%s", tu_etcd_endpoints(etcd));
    for (int i = 0; args[i] != NULL && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    for (int attempt = 0;; attempt++) { /* a loaded machine can make one call slow */
        rc = tu_run_cmd("/usr/bin/etcdctl", argv, 15000, &out, &err);
        if (rc == 0 || attempt == 2)
            break;
        free(out);
        free(err);
    }
    ck_assert_msg(rc == 0, "etcdctl failed: status %d: %s", rc, err ? err : "");
    free(err);
    return out;
}

/* What `admin add-group` writes: term 1, r0 primary, every replica in sync. */
static void
group_put_config(const group *g)
{
    char key[128], cfg[1024];
    const char *args[] = {"put", key, cfg, NULL};

    snprintf(key, sizeof(key), PREFIX "/groups/%s/config", g->id);
    snprintf(cfg, sizeof(cfg),
             "{\"group\":\"%s\",\"term\":1,\"primary\":\"r0\",\"replicas\":[{\"id\":\"r0\","
             "\"addr\":\"%s\"},{\"id\":\"r1\",\"addr\":\"%s\"},{\"id\":\"r2\",\"addr\":\"%s\"}],"
             "\"in_sync\":[\"r0\",\"r1\",\"r2\"]}",
             g->id, g->addr[0], g->addr[1], g->addr[2]);
    free(etcdctl(args));
}

/* The group's configured primary (index) and in-sync size, from etcd. */
static void
group_config(const group *g, long *term, int *primary, int *in_sync)
{
    char key[128];
    const char *args[] = {"get", key, "--print-value-only", NULL};
    char *out;
    json_t *j;
    const char *pr;

    snprintf(key, sizeof(key), PREFIX "/groups/%s/config", g->id);
    out = etcdctl(args);
    j = json_loads(out, 0, NULL);
    ck_assert_msg(j != NULL, "config of %s is not JSON: %s", g->id, out);
    *term = (long)json_integer_value(json_object_get(j, "term"));
    pr = json_string_value(json_object_get(j, "primary"));
    *primary = pr != NULL && pr[0] == 'r' ? atoi(pr + 1) : -1;
    *in_sync = (int)json_array_size(json_object_get(j, "in_sync"));
    json_decref(j);
    free(out);
}

/* kill -9 of the group's primary; returns once another replica leads a later term. */
static int
kill_primary(group *g)
{
    long term, t2;
    int pr, p2, n;
    uint64_t deadline = tu_now_ms() + WAIT_MS, t0 = tu_now_ms();

    group_config(g, &term, &pr, &n);
    ck_assert_msg(pr >= 0 && g->p[pr] != NULL, "group %s has no running primary", g->id);
    tu_proc_kill9(g->p[pr]);
    tu_proc_free(g->p[pr]);
    g->p[pr] = NULL;
    for (;;) {
        group_config(g, &t2, &p2, &n);
        if (t2 > term && p2 != pr)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "group %s: no new primary after kill -9", g->id);
        om_clock_sleep_ms(100);
    }
    printf("group %s: r%d killed (term %ld), r%d leads term %ld after %llu ms\n", g->id, pr, term,
           p2, t2, (unsigned long long)(tu_now_ms() - t0));
    return pr;
}

static void
wait_all_in_sync(const group *g)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;
    long term;
    int pr, n;

    for (;;) {
        group_config(g, &term, &pr, &n);
        if (n == NREP)
            return;
        ck_assert_msg(tu_now_ms() < deadline, "group %s: %d of %d replicas in sync", g->id, n,
                      NREP);
        om_clock_sleep_ms(200);
    }
}

static tu_proc *
start_coord(const char *shards)
{
    char sarg[400], earg[300];
    const char *extra[] = {sarg, earg, "--etcd-prefix=" PREFIX, "--lease-ttl=2s",
                           "--health-interval=100ms", "--etcd-timeout=2s", "--failover-wait=15s",
                           /* slow enough that a copy of ~0.5 MB lasts seconds */
                           "--migrate-rate=256K", "--migrate-rate-busy=128K", "--migrate-batch=32K",
                           "--migrate-batch-busy=16K", NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(sarg, sizeof(sarg), "--shards=%s", shards);
    snprintf(earg, sizeof(earg), "--etcd=%s", tu_etcd_endpoints(etcd));
    return tu_proc_start("$OBJMETA_COORD", &o);
}

static const char *
coord_addr(const tu_proc *c)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "127.0.0.1:%d", tu_proc_port(c, "rpc"));
    return buf;
}

/* The value of the metric line starting with `series` on the coordinator (-1: none). */
static double
coord_metric(const tu_proc *c, const char *series)
{
    char *body = NULL;
    double v = -1;
    const char *p;

    if (it_http_get(tu_proc_port(c, "http"), "/metrics", &body) == 200 && body != NULL &&
        (p = strstr(body, series)) != NULL)
        v = strtod(p + strlen(series), NULL);
    free(body);
    return v;
}

#define PHASE(name) "\nobjmeta_coord_rebalance_phase{phase=\"" name "\"} "

/* ---- the load ---- */

/*
 * What a key may hold. Op numbers grow per key (one writer per key): op n
 * stores the value "key:n:" (padded), op -n deletes. `acked` is the last
 * acknowledged op (0: none yet, the key absent); pending, the ops since
 * whose outcome the writer could not know.
 */
typedef struct kstate {
    int acked;
    int pending[MAX_PENDING];
    int npending;
    bool unknown; /* more unknown outcomes than pending holds: any of them */
} kstate;

typedef struct load {
    const char *addr;
    atomic_bool stop;
    uint64_t seed;
    kstate keys[NALL];
    int next_op[NALL];
    atomic_int acked, unknown, reads, read_errors, bad, lists, list_errors;
    char first_bad[256];
    pthread_mutex_t mu; /* first_bad */
} load;

typedef struct worker {
    load *l;
    int w; /* writer index, or -1: the reader, -2: the lister */
} worker;

static void
note_bad(load *l, const char *fmt, const char *a, const char *b)
{
    pthread_mutex_lock(&l->mu);
    if (atomic_fetch_add(&l->bad, 1) == 0)
        snprintf(l->first_bad, sizeof(l->first_bad), fmt, a, b);
    pthread_mutex_unlock(&l->mu);
}

static void
value_of(int key, int op, char *buf)
{
    int n = snprintf(buf, VALUE_BYTES + 1, "%04d:%d:", key, op);

    memset(buf + n, 'a' + (op % 26), (size_t)(VALUE_BYTES - n));
    buf[VALUE_BYTES] = '\0';
}

/* Can the key hold op (0: absent, negative: deleted)? */
static bool
kstate_allows(const kstate *k, int op)
{
    bool absent = op <= 0;

    if (k->unknown)
        return true;
    if (k->acked == op || (absent && k->acked <= 0))
        return true;
    for (int i = 0; i < k->npending; i++)
        if (k->pending[i] == op || (absent && k->pending[i] < 0))
            return true;
    return false;
}

/* A retryable refusal (or one whose outcome the client cannot know). */
static bool
retryable(om_status st)
{
    return st == OM_E_UNAVAILABLE || st == OM_E_BUSY || st == OM_E_TIMEOUT || st == OM_E_IO;
}

static omc_client *
load_client(const load *l)
{
    omc_client *c = NULL;
    char msg[256];

    ck_assert_msg(omc_connect(l->addr, 5000, &c, msg, sizeof(msg)) == OM_OK, "%s", msg);
    omc_set_timeout(c, 30000);
    return c;
}

static void
writer_step(load *l, omc_client *c, uint64_t *rs, int w)
{
    int key = (int)(tu_rand(rs) % (NKEYS / WRITERS)) * WRITERS + w;
    kstate *k = &l->keys[key];
    int op = ++l->next_op[key];
    char name[16], val[VALUE_BYTES + 1];
    om_status st;

    snprintf(name, sizeof(name), "k%04d", key);
    if (tu_rand(rs) % 4 == 0) {
        op = -op;
        st = omc_delete(c, BUCKET, name, NULL, NULL);
        if (st == OM_E_NOTFOUND)
            st = OM_OK; /* definite: absent now */
    } else {
        value_of(key, op, val);
        st = omc_store(c, BUCKET, name, om_slice_make(val, VALUE_BYTES), NULL, NULL);
    }
    if (st == OM_OK) {
        k->acked = op;
        k->npending = 0;
        k->unknown = false;
        atomic_fetch_add(&l->acked, 1);
        return;
    }
    if (!retryable(st))
        note_bad(l, "a write failed: %s: %s", om_status_str(st), omc_last_message(c));
    atomic_fetch_add(&l->unknown, 1);
    if (k->npending < MAX_PENDING)
        k->pending[k->npending++] = op;
    else
        k->unknown = true;
}

static void
reader_step(load *l, omc_client *c, uint64_t *rs)
{
    char name[16];
    omc_info info;
    om_buf data = OM_BUF_INIT;
    om_status st;

    snprintf(name, sizeof(name), "k%04d", (int)(tu_rand(rs) % NALL));
    st = omc_retrieve(c, BUCKET, name, &info, &data);
    if (st == OM_OK)
        omc_info_free(&info);
    if (st == OM_OK || st == OM_E_NOTFOUND)
        atomic_fetch_add(&l->reads, 1);
    else if (retryable(st))
        atomic_fetch_add(&l->read_errors, 1);
    else
        note_bad(l, "a read failed: %s: %s", om_status_str(st), omc_last_message(c));
    om_buf_free(&data);
}

/*
 * One whole listing, 97 keys a page: keys strictly ascending across pages
 * (none repeated, none out of order) and every stable key present. A
 * retryable error restarts it.
 */
static void
lister_step(load *l, omc_client *c)
{
    char prev[64] = "", token[512] = "";
    int stable = 0;

    for (;;) {
        omc_list_opts o = {.max_keys = 97, .continuation_token = token[0] ? token : NULL};
        omc_list_page page;
        om_status st = omc_list(c, BUCKET, &o, &page);
        bool more;

        if (st != OM_OK) {
            if (retryable(st))
                atomic_fetch_add(&l->list_errors, 1);
            else
                note_bad(l, "a listing failed: %s: %s", om_status_str(st), omc_last_message(c));
            return;
        }
        for (size_t i = 0; i < page.n_entries; i++) {
            const char *k = page.entries[i].key;
            int n;

            if (strcmp(prev, k) >= 0)
                note_bad(l, "a listing repeats or reorders keys: %s after %s", k, prev);
            snprintf(prev, sizeof(prev), "%s", k);
            if (sscanf(k, "k%d", &n) == 1 && n >= NKEYS && n < NALL)
                stable++;
        }
        more = page.is_truncated;
        snprintf(token, sizeof(token), "%s", more ? page.next_continuation_token : "");
        omc_list_page_free(&page);
        if (!more)
            break;
    }
    if (stable != NSTABLE) {
        char got[16], want[16];
        snprintf(got, sizeof(got), "%d", stable);
        snprintf(want, sizeof(want), "%d", NSTABLE);
        note_bad(l, "a listing missed keys that existed throughout: %s of %s", got, want);
    }
    atomic_fetch_add(&l->lists, 1);
}

static void *
worker_main(void *arg)
{
    worker *wk = arg;
    load *l = wk->l;
    omc_client *c = load_client(l);
    uint64_t rs = l->seed * 31 + (uint64_t)(wk->w + 2);

    while (!atomic_load(&l->stop)) {
        if (wk->w >= 0)
            writer_step(l, c, &rs, wk->w);
        else if (wk->w == -1)
            reader_step(l, c, &rs);
        else
            lister_step(l, c);
    }
    omc_close(c);
    return NULL;
}

#define WORKERS (WRITERS + 2) /* the writers, a reader, a lister */

typedef struct run {
    load l;
    worker wk[WORKERS];
    pthread_t th[WORKERS];
} run;

/* Every key stored once (the data a change copies), then the load starts. */
static void
run_start(run *r, const char *coord, const char *name)
{
    omc_client *c;
    char key[16], val[VALUE_BYTES + 1];

    memset(r, 0, sizeof(*r));
    r->l.addr = coord;
    r->l.seed = tu_seed(name);
    pthread_mutex_init(&r->l.mu, NULL);
    c = load_client(&r->l);
    for (int i = 0; i < NALL; i++) {
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        om_status st;

        snprintf(key, sizeof(key), "k%04d", i);
        value_of(i, 1, val);
        /* the first stores may meet a group whose primary does not serve yet */
        while ((st = omc_store(c, BUCKET, key, om_slice_make(val, VALUE_BYTES), NULL, NULL)) !=
               OM_OK) {
            ck_assert_msg(retryable(st) && tu_now_ms() < deadline, "preload %s: %s: %s", key,
                          om_status_str(st), omc_last_message(c));
            om_clock_sleep_ms(50);
        }
        r->l.keys[i].acked = 1;
        r->l.next_op[i] = 1;
    }
    omc_close(c);
    for (int i = 0; i < WORKERS; i++) {
        r->wk[i].l = &r->l;
        r->wk[i].w = i < WRITERS ? i : WRITERS - 1 - i; /* then -1, -2 */
        ck_assert_int_eq(pthread_create(&r->th[i], NULL, worker_main, &r->wk[i]), 0);
    }
}

static void
run_stop(run *r)
{
    atomic_store(&r->l.stop, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(r->th[i], NULL);
    printf("load: %d writes acknowledged, %d with an unknown outcome; %d reads (%d retryable "
           "errors); %d whole listings (%d restarted after a retryable error)\n",
           atomic_load(&r->l.acked), atomic_load(&r->l.unknown), atomic_load(&r->l.reads),
           atomic_load(&r->l.read_errors), atomic_load(&r->l.lists),
           atomic_load(&r->l.list_errors));
    ck_assert_int_gt(atomic_load(&r->l.lists), 0);
    ck_assert_msg(atomic_load(&r->l.bad) == 0, "%d requests failed for good, first: %s",
                  atomic_load(&r->l.bad), r->l.first_bad);
}

/* The op a read shows: n for a value "key:n:", 0 for absent. */
static int
op_of(om_status st, const om_buf *data, int key)
{
    int k = -1, op = 0;

    if (st == OM_E_NOTFOUND)
        return 0;
    ck_assert_msg(st == OM_OK, "k%04d: %s", key, om_status_str(st));
    ck_assert_msg(data->n == VALUE_BYTES && sscanf((const char *)data->p, "%d:%d:", &k, &op) == 2 &&
                      k == key,
                  "k%04d: a value of %zu bytes that is not one of its own", key, data->n);
    return op;
}

/*
 * The checks at the end (load stopped, every replica in sync): every key as
 * the model allows, through the coordinator; every live key on all the
 * replicas of exactly one group; the replicas of every group identical.
 */
static void
check_all(run *r, const tu_proc *co, group *const *gs, int ng)
{
    omc_client *c = load_client(&r->l), *direct[4][NREP];
    int live = 0;

    for (int g = 0; g < ng; g++)
        for (int i = 0; i < NREP; i++)
            direct[g][i] = it_client(gs[g]->p[i]);
    for (int key = 0; key < NALL; key++) {
        char name[16];
        omc_info info;
        om_buf data = OM_BUF_INIT;
        om_status st;
        int op, holders = 0, holder = -1;

        snprintf(name, sizeof(name), "k%04d", key);
        st = omc_retrieve(c, BUCKET, name, &info, &data);
        if (st == OM_OK)
            omc_info_free(&info);
        op = op_of(st, &data, key);
        ck_assert_msg(kstate_allows(&r->l.keys[key], op),
                      "k%04d reads as op %d; last acknowledged %d, %d unknown outcomes", key, op,
                      r->l.keys[key].acked, r->l.keys[key].npending);
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < NREP; i++) {
                om_buf d2 = OM_BUF_INIT;
                om_status s2 = omc_retrieve(direct[g][i], BUCKET, name, &info, &d2);
                if (s2 == OM_OK) {
                    omc_info_free(&info);
                    ck_assert_msg(op_of(s2, &d2, key) == op,
                                  "k%04d: %s/r%d holds op %d, the coordinator reads %d", key,
                                  gs[g]->id, i, op_of(s2, &d2, key), op);
                    holders++;
                    ck_assert_msg(holder < 0 || holder == g, "k%04d is on %s and on %s", key,
                                  gs[holder]->id, gs[g]->id);
                    holder = g;
                } else {
                    ck_assert_msg(s2 == OM_E_NOTFOUND, "k%04d on %s/r%d: %s", key, gs[g]->id, i,
                                  om_status_str(s2));
                }
                om_buf_free(&d2);
            }
        ck_assert_msg(holders == (op > 0 ? NREP : 0), "k%04d (op %d) is on %d replicas", key, op,
                      holders);
        live += op > 0;
        om_buf_free(&data);
    }
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < NREP; i++)
            omc_close(direct[g][i]);
    omc_close(c);
    for (int g = 0; g < ng; g++) {
        const char *argv[] = {"objmeta", "--addr",  coord_addr(co), "admin",
                              "verify",  "--group", gs[g]->id,      NULL};
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        char *out = NULL, *err = NULL;
        int rc;

        /* a replica that rejoined may still be applying its last groups: asked again */
        while ((rc = tu_run_cmd("$OBJMETA_CLI", argv, 30000, &out, &err)) != 0) {
            ck_assert_msg(tu_now_ms() < deadline, "verify --group %s: exit %d: %s %s", gs[g]->id,
                          rc, out ? out : "", err ? err : "");
            free(out);
            free(err);
            om_clock_sleep_ms(200);
        }
        free(out);
        free(err);
    }
    printf("%d live keys, each on the %d replicas of one group; %d groups verified identical\n",
           live, NREP, ng);
}

/* ---- the change ---- */

typedef struct change {
    const char *coord;
    const group *g;
    pthread_t th;
    int rc;
    char *out, *err;
} change;

static void *
change_main(void *arg)
{
    change *ch = arg;
    char reps[300];
    const char *argv[] = {"objmeta", "--addr",     ch->coord, "admin",  "add-group", "--id",
                          ch->g->id, "--replicas", reps,      "--wait", NULL};

    uint64_t deadline = tu_now_ms() + WAIT_MS;

    group_replicas_arg(ch->g, reps, sizeof(reps));
    for (;;) {
        ch->rc = tu_run_cmd("$OBJMETA_CLI", argv, 240000, &ch->out, &ch->err);
        /* 4: UNAVAILABLE, the new group's primary does not serve yet (it is taking over) */
        if (ch->rc != 4 || tu_now_ms() > deadline)
            break;
        free(ch->out);
        free(ch->err);
        om_clock_sleep_ms(100);
    }
    return NULL;
}

static void
change_start(change *ch, const char *coord, const group *g)
{
    memset(ch, 0, sizeof(*ch));
    ch->coord = coord;
    ch->g = g;
    ck_assert_int_eq(pthread_create(&ch->th, NULL, change_main, ch), 0);
}

static void
change_finish(change *ch)
{
    pthread_join(ch->th, NULL);
    ck_assert_msg(ch->rc == 0, "add-group %s: exit %d: %s %s", ch->g->id, ch->rc,
                  ch->out ? ch->out : "", ch->err ? ch->err : "");
    free(ch->out);
    free(ch->err);
}

/* Wait until the change copies and has copied something. */
static void
wait_copying(const tu_proc *co)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (coord_metric(co, PHASE("copying")) != 1 ||
           coord_metric(co, "\nobjmeta_coord_rebalance_records_copied ") < 1)
        ck_assert_msg(tu_now_ms() < deadline, "the change never copied");
}

enum { KILL_NONE, KILL_SOURCE, KILL_TARGET };

static void
add_group_scenario(const char *name, int kill)
{
    group g1, g2, *gs[2] = {&g1, &g2};
    tu_proc *co;
    char shards[128];
    change ch;
    run *r = calloc(1, sizeof(*r));
    int killed = -1;
    group *victim = kill == KILL_SOURCE ? &g1 : &g2;

    etcd = tu_etcd_start(1);
    group_start(&g1, "g1");
    group_put_config(&g1);
    snprintf(shards, sizeof(shards), "g1=%s", g1.addr[0]);
    co = start_coord(shards);
    run_start(r, coord_addr(co), name);
    group_start(&g2, "g2");
    change_start(&ch, coord_addr(co), &g2);
    if (kill != KILL_NONE) {
        wait_copying(co);
        killed = kill_primary(victim);
        ck_assert_msg(coord_metric(co, PHASE("idle")) != 1, "the change ended before the kill");
        replica_start(victim, killed, false); /* it returns as a backup and rejoins */
    }
    change_finish(&ch);
    run_stop(r);
    wait_all_in_sync(&g1);
    wait_all_in_sync(&g2);
    check_all(r, co, gs, 2);
    tu_proc_stop(co);
    tu_proc_free(co);
    group_stop(&g1);
    group_stop(&g2);
    tu_etcd_stop(etcd);
    free(r);
}

START_TEST(add_group_under_load)
{
    if (tu_etcd_available())
        add_group_scenario("add_group_under_load", KILL_NONE);
}
END_TEST

START_TEST(source_primary_killed)
{
    if (tu_etcd_available())
        add_group_scenario("source_primary_killed", KILL_SOURCE);
}
END_TEST

START_TEST(target_primary_killed)
{
    if (tu_etcd_available())
        add_group_scenario("target_primary_killed", KILL_TARGET);
}
END_TEST

START_TEST(add_during_failover)
{
    group g1, g2, g3, *gs[3] = {&g1, &g2, &g3};
    tu_proc *co;
    char shards[200];
    change ch;
    run *r;
    int killed;

    if (!tu_etcd_available())
        return;
    r = calloc(1, sizeof(*r));
    etcd = tu_etcd_start(1);
    group_start(&g1, "g1");
    group_put_config(&g1);
    group_start(&g2, "g2");
    group_put_config(&g2);
    snprintf(shards, sizeof(shards), "g1=%s,g2=%s", g1.addr[0], g2.addr[0]);
    co = start_coord(shards);
    run_start(r, coord_addr(co), "add_during_failover");
    group_start(&g3, "g3");
    {
        long term;
        int pr, n;
        group_config(&g2, &term, &pr, &n);
        tu_proc_kill9(g2.p[pr]); /* g2 fails over while the change starts */
        tu_proc_free(g2.p[pr]);
        g2.p[pr] = NULL;
        killed = pr;
    }
    change_start(&ch, coord_addr(co), &g3);
    {
        long term;
        int pr, n;
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        for (;;) { /* the next primary of g2 */
            group_config(&g2, &term, &pr, &n);
            if (term > 1 && pr != killed)
                break;
            ck_assert_msg(tu_now_ms() < deadline, "g2: no new primary");
            om_clock_sleep_ms(100);
        }
        printf("g2: r%d killed, r%d leads term %ld; add-group g3 meanwhile\n", killed, pr, term);
    }
    replica_start(&g2, killed, false);
    change_finish(&ch);
    run_stop(r);
    for (int g = 0; g < 3; g++)
        wait_all_in_sync(gs[g]);
    check_all(r, co, gs, 3);
    tu_proc_stop(co);
    tu_proc_free(co);
    for (int g = 0; g < 3; g++)
        group_stop(gs[g]);
    tu_etcd_stop(etcd);
    free(r);
}
END_TEST

static Suite *
groups_migrate_suite(void)
{
    Suite *s = suite_create("groups-migrate");
    TCase *tc = tcase_create("groups-migrate");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, add_group_under_load);
    tcase_add_test(tc, source_primary_killed);
    tcase_add_test(tc, target_primary_killed);
    tcase_add_test(tc, add_during_failover);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(groups_migrate_suite());
}
