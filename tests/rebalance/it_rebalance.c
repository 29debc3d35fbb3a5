/*
 * tests/rebalance/it_rebalance.c -- online ring changes with real
 * processes (objmeta-shard × up to 6, objmeta-coord), under a continuous
 * load of writers, deleters, readers and paginated listers.
 *
 *   changes     (a) add a shard to 3, (b) add two more, (c) remove one,
 *               (d) change a weight -- one cluster, one change after the
 *               other, the load running through each
 *   kill_coord  kill -9 the coordinator mid-copy, restart it on its data dir
 *   kill_source kill -9 an old owner mid-stream, restart it
 *   kill_target kill -9 the new shard mid-stream, restart it
 *   kill_coord_unconfirmed  writes to moving keys whose forward cannot be
 *               confirmed (the new shard is down), then kill -9 the
 *               coordinator: the resumed change still carries them over
 *   kill_coord_cleanup      kill -9 the coordinator while the old owners
 *               compact (cleanup); it resumes the cleanup and finishes
 *   throttle    with clients active the copy keeps to --migrate-rate-busy;
 *               once they stop it runs unthrottled (--migrate-rate=0)
 *   conditional if-absent and if-version stores and deletes of moving keys
 *               during a move, and compare-and-set counters racing across
 *               the cutover: every condition is judged on the newest version
 *   refusals    BUSY while a change runs; a shard holding data is refused
 *   cli         objmeta admin add-shard --wait / rebalance-status --json
 *   cancel      objmeta admin cancel while copying (a set-weight, an
 *               add-shard), refused in the cleanup and when idle
 *   cancel_cutover  objmeta admin cancel during the fenced final pass (an
 *               old owner stopped so that the fence holds)
 *
 * After each change: every acknowledged write reads back with its value or
 * a later version; no acknowledged delete is undone; every listing taken
 * during the move was strictly increasing and held every key that existed
 * throughout; every key sits on the shard the final ring names and no
 * longer on its old owner (asked directly, epoch 0); the old owners' data
 * size fell (after the change's compaction). Without faults, no client
 * request may fail at all. Kills are timed by polling RebalanceStatus
 * (records copied > 0 and the copy not done), never by sleeping; the copy
 * is throttled (--migrate-rate) so that it lasts long enough to be hit.
 * Seeds are printed (TU_SEED replays one).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "partitioner/ring.h"
#include "rpc/rpc.h"
#include "tu.h"
#include "tu_load.h"
#include "util/clock.h"

#define MAXSH 6
#define BUCKET "rebal-bucket"
#define NSTABLE 1500 /* keys never written during a change: must always list and read */
#define NMUT 600     /* keys the load writes and deletes */
#define CHANGE_DEADLINE_MS 45000

typedef struct cluster {
    tu_proc *shard[MAXSH];
    char addr[MAXSH][64];
    int port[MAXSH];
    char id[MAXSH][16];
    tu_proc *coord;
    char coord_addr[64];
    char coord_dir[512];
    const char *rate;
    const char *coord_flag; /* one more coordinator flag, or NULL */
} cluster;

static void
shard_start(cluster *cl, int i, const char *data_dir)
{
    char idarg[32], listen[64];
    const char *extra[5] = {idarg, "--sync-mode=always", "--http-listen=off", NULL, NULL};
    tu_proc_opts o = {0};

    snprintf(cl->id[i], sizeof(cl->id[i]), "s%d", i + 1);
    snprintf(idarg, sizeof(idarg), "--id=%s", cl->id[i]);
    if (cl->port[i] > 0) {
        snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", cl->port[i]);
        extra[3] = listen;
    }
    o.extra = extra;
    o.data_dir = data_dir;
    cl->shard[i] = tu_proc_start("$OBJMETA_SHARD", &o);
    cl->port[i] = tu_proc_port(cl->shard[i], "rpc");
    snprintf(cl->addr[i], sizeof(cl->addr[i]), "127.0.0.1:%d", cl->port[i]);
}

static void
coord_start(cluster *cl, int ninit)
{
    char shards[512], rate[64];
    size_t off = (size_t)snprintf(shards, sizeof(shards), "--shards=");
    const char *extra[] = {shards,
                           rate,
                           "--health-interval=100ms",
                           "--health-timeout=1s",
                           "--startup-wait=5s",
                           "--shard-timeout=8s",
                           "--migrate-batch=256K",
                           "--http-listen=off",
                           cl->coord_flag,
                           NULL};
    tu_proc_opts o = {0};

    for (int i = 0; i < ninit; i++)
        off += (size_t)snprintf(shards + off, sizeof(shards) - off, "%s%s=%s", i ? "," : "",
                                cl->id[i], cl->addr[i]);
    snprintf(rate, sizeof(rate), "--migrate-rate=%s", cl->rate);
    o.extra = extra;
    o.data_dir = cl->coord_dir[0] ? cl->coord_dir : NULL;
    cl->coord = tu_proc_start("$OBJMETA_COORD", &o);
    snprintf(cl->coord_dir, sizeof(cl->coord_dir), "%s", tu_proc_data_dir(cl->coord));
    snprintf(cl->coord_addr, sizeof(cl->coord_addr), "127.0.0.1:%d",
             tu_proc_port(cl->coord, "rpc"));
}

/* nshards shards, the first ninit in the ring; coord_flag: one more coordinator flag or NULL */
static void
cluster_start_with(cluster *cl, int nshards, int ninit, const char *rate, const char *coord_flag)
{
    memset(cl, 0, sizeof(*cl));
    cl->rate = rate;
    cl->coord_flag = coord_flag;
    for (int i = 0; i < nshards; i++)
        shard_start(cl, i, NULL);
    coord_start(cl, ninit);
}

static void
cluster_start(cluster *cl, int nshards, int ninit, const char *rate)
{
    cluster_start_with(cl, nshards, ninit, rate, NULL);
}

static void
proc_stop_checked(tu_proc *p, const char *what)
{
    int st;

    if (p == NULL)
        return;
    st = tu_proc_stop(p);
    if (st != 0)
        tu_proc_dump_stderr(p);
    ck_assert_msg(st == 0, "%s exited with status %d", what, st);
    tu_proc_free(p);
}

static void
cluster_stop(cluster *cl)
{
    proc_stop_checked(cl->coord, "objmeta-coord");
    for (int i = 0; i < MAXSH; i++)
        proc_stop_checked(cl->shard[i], cl->id[i]);
    memset(cl, 0, sizeof(*cl));
}

/* One admin request to the coordinator; returns the response (caller frees) or NULL. */
static Objmeta__Response *
coord_call(const char *addr, const Objmeta__Request *req)
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
get_status(const char *addr)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RebalanceStatusRequest rq = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    Objmeta__Response *r;

    req.body_case = OBJMETA__REQUEST__BODY_REBALANCE_STATUS;
    req.rebalance_status = &rq;
    r = coord_call(addr, &req);
    if (r != NULL && (r->status != OBJMETA__STATUS__OK ||
                      r->body_case != OBJMETA__RESPONSE__BODY_REBALANCE_STATUS)) {
        rpc_response_free(r);
        r = NULL;
    }
    return r;
}

/* Start a change; returns its target epoch (fails the test when refused). */
static uint64_t
start_change(cluster *cl, const char *op, const char *id, const char *addr, uint32_t weight)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddShardRequest ad = OBJMETA__ADD_SHARD_REQUEST__INIT;
    Objmeta__RemoveShardRequest rm = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
    Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
    Objmeta__Response *r;
    const Objmeta__RingChangeResponse *rc;
    uint64_t to;

    if (strcmp(op, "add") == 0) {
        ad.id = (char *)id;
        ad.addr = (char *)addr;
        ad.weight = weight;
        req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
        req.add_shard = &ad;
    } else if (strcmp(op, "remove") == 0) {
        rm.id = (char *)id;
        req.body_case = OBJMETA__REQUEST__BODY_REMOVE_SHARD;
        req.remove_shard = &rm;
    } else {
        sw.id = (char *)id;
        sw.weight = weight;
        req.body_case = OBJMETA__REQUEST__BODY_SET_WEIGHT;
        req.set_weight = &sw;
    }
    r = coord_call(cl->coord_addr, &req);
    ck_assert_msg(r != NULL, "%s %s: no answer", op, id);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "%s %s refused: %s", op, id, r->message);
    rc = r->add_shard ? r->add_shard : r->remove_shard ? r->remove_shard : r->set_weight;
    ck_assert_ptr_nonnull(rc);
    ck_assert_uint_eq(rc->to_epoch, rc->from_epoch + 1);
    to = rc->to_epoch;
    printf("change %s %s: epoch %llu -> %llu, %u ranges move\n", op, id,
           (unsigned long long)rc->from_epoch, (unsigned long long)to, rc->moving_ranges);
    rpc_response_free(r);
    return to;
}

/* Poll until the change to `to` is over (idle, last_change_epoch >= to). */
static void
wait_change(cluster *cl, uint64_t to)
{
    uint64_t t0 = tu_now_ms(), deadline = t0 + CHANGE_DEADLINE_MS;
    char last_err[256] = "";

    for (;;) {
        Objmeta__Response *r = get_status(cl->coord_addr);
        if (r != NULL) {
            const Objmeta__RebalanceStatusResponse *s = r->rebalance_status;
            bool over = !s->active && s->last_change_epoch >= to;
            if (s->error[0])
                snprintf(last_err, sizeof(last_err), "%s", s->error);
            if (over)
                printf("change to epoch %llu done in %llu ms: %llu records, %llu bytes copied\n",
                       (unsigned long long)to, (unsigned long long)(tu_now_ms() - t0),
                       (unsigned long long)s->records_copied, (unsigned long long)s->bytes_copied);
            rpc_response_free(r);
            if (over)
                return;
        }
        if (tu_now_ms() > deadline) {
            tu_proc_dump_stderr(cl->coord);
            ck_abort_msg("change to epoch %llu not done within %d ms (last error: %s)",
                         (unsigned long long)to, CHANGE_DEADLINE_MS, last_err);
        }
        om_clock_sleep_ms(20);
    }
}

/* Poll until the copy of the change is under way (records copied, pass 0 not over). */
static void
wait_mid_copy(cluster *cl)
{
    uint64_t deadline = tu_now_ms() + 20000;

    for (;;) {
        Objmeta__Response *r = get_status(cl->coord_addr);
        bool mid = false;
        if (r != NULL) {
            const Objmeta__RebalanceStatusResponse *s = r->rebalance_status;
            mid = s->active && strcmp(s->phase, "copying") == 0 && s->records_copied > 0 &&
                  s->sources_done < s->sources;
            rpc_response_free(r);
        }
        if (mid)
            return;
        ck_assert_msg(tu_now_ms() < deadline, "the copy never got under way");
        om_clock_sleep_ms(5);
    }
}

static ring *
get_ring(const char *addr)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r;
    ring *out = NULL;
    char err[256];

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    r = coord_call(addr, &req);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "GetRing failed");
    ck_assert_msg(r->get_ring->pending == NULL, "a change is still pending");
    ck_assert_int_eq(ring_from_pb(r->get_ring->ring, &out, err, sizeof(err)), OM_OK);
    rpc_response_free(r);
    return out;
}

/* A shard's data size (LSM files + memtables) from Stats, asked directly. */
static uint64_t
shard_bytes(const char *addr)
{
    omc_client *c = tu_omc_connect(addr);
    omc_stats s;
    uint64_t b = 0;

    ck_assert_int_eq(omc_stats_get(c, &s), OM_OK);
    for (size_t i = 0; i < s.n; i++)
        if (strcmp(s.names[i], "lsm.live_sst_bytes") == 0 ||
            strcmp(s.names[i], "lsm.memtable_bytes") == 0)
            b += s.values[i];
    omc_stats_free(&s);
    omc_close(c);
    return b;
}

/* --- the load (tests/harness/tu_load.c) and the checks after a change --------------------------
 */

/* Preload the stable keys of the load (tu_load.h). */
static void
preload(cluster *cl)
{
    tu_load *L = tu_load_new(cl->coord_addr, BUCKET, NSTABLE, NMUT, 0, false);

    tu_load_preload(L);
    tu_load_free(L);
}

/*
 * Every key is where the final ring says, read directly (epoch 0), and no
 * longer on any other live shard of the ring (dropped by the cleanup).
 */
static void
check_placement(cluster *cl, bool strict_absence)
{
    ring *r = get_ring(cl->coord_addr);
    omc_client *direct[MAXSH] = {NULL};
    int misplaced = 0, leftovers = 0, checked = 0;

    for (int i = 0; i < MAXSH; i++) {
        size_t idx;
        if (cl->shard[i] != NULL && ring_find(r, cl->id[i], &idx) == OM_OK)
            direct[i] = tu_omc_connect(cl->addr[i]);
    }
    for (int k = 0; k < NSTABLE + NMUT; k += 3) {
        char key[32];
        const ring_shard *owner;
        if (k < NSTABLE)
            tu_load_stable_key(k, key, sizeof(key));
        else
            tu_load_mut_key(k - NSTABLE, key, sizeof(key));
        owner = ring_lookup(r, om_slice_from_str(BUCKET), om_slice_from_str(key));
        for (int i = 0; i < MAXSH; i++) {
            bool exists = false;
            if (direct[i] == NULL)
                continue;
            ck_assert_int_eq(omc_exists(direct[i], BUCKET, key, &exists), OM_OK);
            if (strcmp(owner->id, cl->id[i]) == 0) {
                if (k < NSTABLE && !exists)
                    misplaced++;
            } else if (exists) {
                leftovers++;
            }
        }
        checked++;
    }
    for (int i = 0; i < MAXSH; i++)
        omc_close(direct[i]);
    ring_unref(r);
    printf("placement: %d keys checked on every shard, %d missing on their owner, %d left on "
           "another shard\n",
           checked, misplaced, leftovers);
    ck_assert_int_eq(misplaced, 0);
    if (strict_absence)
        ck_assert_int_eq(leftovers, 0);
}

/* --- scenarios ---------------------------------------------------------------------------------
 */

static void
run_change(cluster *cl, tu_load *L, const char *op, int shard, uint32_t weight, int *old_owners,
           int nold)
{
    uint64_t before[MAXSH] = {0}, to;

    for (int i = 0; i < nold; i++)
        before[old_owners[i]] = shard_bytes(cl->addr[old_owners[i]]);
    tu_load_start(L);
    to = start_change(cl, op, cl->id[shard], cl->addr[shard], weight);
    wait_change(cl, to);
    tu_load_stop(L);
    tu_load_check(L);
    check_placement(cl, true);
    for (int i = 0; i < nold; i++) {
        uint64_t after = shard_bytes(cl->addr[old_owners[i]]);
        printf("old owner %s: %llu bytes before, %llu after\n", cl->id[old_owners[i]],
               (unsigned long long)before[old_owners[i]], (unsigned long long)after);
        ck_assert_msg(after < before[old_owners[i]], "%s's data did not shrink (%llu -> %llu)",
                      cl->id[old_owners[i]], (unsigned long long)before[old_owners[i]],
                      (unsigned long long)after);
    }
}

START_TEST(rebalance_changes)
{
    cluster cl;
    tu_load *L;
    int s123[] = {0, 1, 2}, s1234[] = {0, 1, 2, 3};

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed("rebalance_changes"), false);
    cluster_start(&cl, 6, 3, "512K");
    preload(&cl);
    /* (a) add a shard to 3 */
    run_change(&cl, L, "add", 3, 1, s123, 3);
    /* (b) add two more */
    run_change(&cl, L, "add", 4, 1, NULL, 0);
    run_change(&cl, L, "add", 5, 1, NULL, 0);
    /* (c) remove one: its keys go to the others */
    run_change(&cl, L, "remove", 1, 0, NULL, 0);
    /* (d) change a weight: s1 takes more */
    run_change(&cl, L, "weight", 0, 3, NULL, 0);
    (void)s1234;
    /* refusals: unknown id, duplicate id, removing down to nothing is covered by the ring */
    {
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__RemoveShardRequest rm = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
        Objmeta__Response *r;
        rm.id = "nope";
        req.body_case = OBJMETA__REQUEST__BODY_REMOVE_SHARD;
        req.remove_shard = &rm;
        r = coord_call(cl.coord_addr, &req);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
        printf("refused as expected: %s\n", r->message);
        rpc_response_free(r);
    }
    cluster_stop(&cl);
    tu_load_free(L);
}
END_TEST

/* The change runs while another is refused with BUSY, and a non-empty shard is refused. */
/* AddShard of shard i, which holds records: refused, the message says why. */
static void
expect_add_refused_holding(cluster *cl, int i)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddShardRequest ad = OBJMETA__ADD_SHARD_REQUEST__INIT;
    Objmeta__Response *r;

    ad.id = cl->id[i];
    ad.addr = cl->addr[i];
    req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
    req.add_shard = &ad;
    r = coord_call(cl->coord_addr, &req);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(r->message, "already holds records"));
    printf("refused as expected: %s\n", r->message);
    rpc_response_free(r);
}

START_TEST(rebalance_refusals)
{
    cluster cl;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
    Objmeta__Response *r;
    uint64_t to;

    cluster_start(&cl, 4, 3, "2M");
    preload(&cl);
    /* s4 already holds data written to it directly: refused */
    {
        omc_client *c = tu_omc_connect(cl.addr[3]);
        ck_assert_int_eq(omc_store(c, BUCKET, "junk", om_slice_from_str("x"), NULL, NULL), OM_OK);
        omc_close(c);
    }
    expect_add_refused_holding(&cl, 3);

    to = start_change(&cl, "weight", cl.id[0], NULL, 2);
    sw.id = cl.id[1];
    sw.weight = 2;
    req.body_case = OBJMETA__REQUEST__BODY_SET_WEIGHT;
    req.set_weight = &sw;
    r = coord_call(cl.coord_addr, &req);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__BUSY);
    printf("refused as expected: %s\n", r->message);
    rpc_response_free(r);
    wait_change(&cl, to);
    check_placement(&cl, true);
    cluster_stop(&cl);
}
END_TEST

typedef enum fault { KILL_COORD, KILL_SOURCE, KILL_TARGET } fault;

static void
fault_round(fault f, const char *name)
{
    cluster cl;
    tu_load *L;
    uint64_t to;
    int victim = f == KILL_SOURCE ? 0 : 3;

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed(name), true);
    /* throttled so that the copy of ~1/4 of the data lasts a few seconds */
    cluster_start(&cl, 4, 3, "512K");
    preload(&cl);
    tu_load_start(L);
    to = start_change(&cl, "add", cl.id[3], cl.addr[3], 1);
    wait_mid_copy(&cl);
    if (f == KILL_COORD) {
        tu_proc_kill9(cl.coord);
        tu_proc_free(cl.coord);
        printf("%s: coordinator killed mid-copy\n", name);
        coord_start(&cl, 3); /* same data dir: resumes from the RING file */
        {
            /* it resumes from its checkpoints rather than starting over */
            Objmeta__Response *r = get_status(cl.coord_addr);
            ck_assert_ptr_nonnull(r);
            printf("%s: restarted coordinator reports phase %s, %llu records already copied\n",
                   name, r->rebalance_status->phase,
                   (unsigned long long)r->rebalance_status->records_copied);
            ck_assert(r->rebalance_status->active);
            ck_assert_uint_gt(r->rebalance_status->records_copied, 0);
            rpc_response_free(r);
        }
    } else {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(cl.shard[victim]));
        tu_proc_kill9(cl.shard[victim]);
        tu_proc_free(cl.shard[victim]);
        cl.shard[victim] = NULL;
        printf("%s: shard %s killed mid-stream\n", name, cl.id[victim]);
        shard_start(&cl, victim, dir); /* same port and data dir */
    }
    wait_change(&cl, to);
    tu_load_stop(L);
    tu_load_check(L);
    check_placement(&cl, true);
    cluster_stop(&cl);
    tu_load_free(L);
}

START_TEST(rebalance_kill_coord)
{
    fault_round(KILL_COORD, "rebalance_kill_coord");
}
END_TEST

START_TEST(rebalance_kill_source)
{
    fault_round(KILL_SOURCE, "rebalance_kill_source");
}
END_TEST

START_TEST(rebalance_kill_target)
{
    fault_round(KILL_TARGET, "rebalance_kill_target");
}
END_TEST

/* --- conditional writes, unconfirmed forwards, cleanup restarts --------------------------------
 */

/* The coordinator's rings; *pend is NULL when no change is pending. */
static void
get_rings(const char *addr, ring **cur, ring **pend)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r;
    char err[256];

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    r = coord_call(addr, &req);
    ck_assert_msg(r != NULL && r->status == OBJMETA__STATUS__OK, "GetRing failed");
    ck_assert_int_eq(ring_from_pb(r->get_ring->ring, cur, err, sizeof(err)), OM_OK);
    *pend = NULL;
    if (r->get_ring->pending != NULL)
        ck_assert_int_eq(ring_from_pb(r->get_ring->pending, pend, err, sizeof(err)), OM_OK);
    rpc_response_free(r);
}

/* n keys "<prefix>NNNNN" whose owner differs between cur and pend (they move). */
static void
moving_keys(const ring *cur, const ring *pend, const char *prefix, int n, char (*out)[32])
{
    int found = 0;

    for (int i = 0; i < 200000 && found < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "%s%05d", prefix, i);
        if (strcmp(ring_lookup(cur, om_slice_from_str(BUCKET), om_slice_from_str(key))->id,
                   ring_lookup(pend, om_slice_from_str(BUCKET), om_slice_from_str(key))->id) != 0)
            snprintf(out[found++], 32, "%s", key);
    }
    ck_assert_int_eq(found, n);
}

static bool
change_active(cluster *cl)
{
    Objmeta__Response *r = get_status(cl->coord_addr);
    bool active = r != NULL && r->rebalance_status->active;

    if (r != NULL)
        rpc_response_free(r);
    return active;
}

#define NCAS 12 /* compare-and-set counters */
#define NABS 24 /* keys created with if-absent */
#define NCASTH 3

typedef struct cas_ctx {
    cluster *cl;
    uint64_t seed;
    char keys[NCAS][32];
    atomic_ulong ok[NCAS];
    atomic_ulong conflicts, ops;
    atomic_bool stop;
    pthread_mutex_t mu;
    char failure[512];
} cas_ctx;

typedef struct cas_worker {
    cas_ctx *x;
    int idx;
} cas_worker;

static void
cas_fail(cas_ctx *x, const char *what, const char *key, omc_client *c)
{
    pthread_mutex_lock(&x->mu);
    if (x->failure[0] == '\0')
        snprintf(x->failure, sizeof(x->failure), "%s %s: %s", what, key, omc_last_message(c));
    pthread_mutex_unlock(&x->mu);
}

/* Read a counter, store counter + 1 if its version is still the one read. */
static void *
cas_main(void *arg)
{
    cas_worker *w = arg;
    cas_ctx *x = w->x;
    uint64_t rs = x->seed ^ ((uint64_t)(w->idx + 1) * 0x9e3779b97f4a7c15ull);
    omc_client *c = tu_omc_connect(x->cl->coord_addr);
    om_buf data = OM_BUF_INIT;

    while (!atomic_load(&x->stop)) {
        int k = (int)(tu_rand(&rs) % NCAS);
        omc_info info;
        omc_store_opts so = {0};
        char val[32];
        unsigned long long n;
        om_status st = omc_retrieve(c, BUCKET, x->keys[k], &info, &data);

        atomic_fetch_add(&x->ops, 1);
        if (st != OM_OK) {
            cas_fail(x, "retrieve of counter", x->keys[k], c);
            break;
        }
        snprintf(val, sizeof(val), "%.*s", (int)(data.n < 31 ? data.n : 31), (const char *)data.p);
        n = strtoull(val, NULL, 10);
        so.has_if_version = true;
        so.if_version = info.version;
        omc_info_free(&info);
        snprintf(val, sizeof(val), "%llu", n + 1);
        st = omc_store(c, BUCKET, x->keys[k], om_slice_from_str(val), &so, NULL);
        if (st == OM_OK)
            atomic_fetch_add(&x->ok[k], 1);
        else if (st == OM_E_PRECONDITION)
            atomic_fetch_add(&x->conflicts, 1);
        else {
            cas_fail(x, "compare-and-set of counter", x->keys[k], c);
            break;
        }
    }
    om_buf_free(&data);
    omc_close(c);
    return NULL;
}

/* Store key if absent; expect `want`; returns the new version (0 if refused). */
static uint64_t
store_if_absent(omc_client *c, const char *key, const char *val, om_status want)
{
    omc_store_opts so = {0};
    omc_info info;
    uint64_t v = 0;
    om_status st;

    so.if_absent = true;
    st = omc_store(c, BUCKET, key, om_slice_from_str(val), &so, &info);
    ck_assert_msg(st == want, "store-if-absent %s: %s, expected %s (%s)", key, om_status_str(st),
                  om_status_str(want), omc_last_message(c));
    if (st == OM_OK) {
        v = info.version;
        omc_info_free(&info);
    }
    return v;
}

static void
store_if_version(omc_client *c, const char *key, const char *val, uint64_t ver, om_status want,
                 uint64_t *newv)
{
    omc_store_opts so = {0};
    omc_info info;
    om_status st;

    so.has_if_version = true;
    so.if_version = ver;
    st = omc_store(c, BUCKET, key, om_slice_from_str(val), &so, &info);
    ck_assert_msg(st == want, "store-if-version %s (%llu): %s, expected %s (%s)", key,
                  (unsigned long long)ver, om_status_str(st), om_status_str(want),
                  omc_last_message(c));
    if (st == OM_OK) {
        if (newv != NULL)
            *newv = info.version;
        omc_info_free(&info);
    }
}

/* Read key through c: want its data to be val (NULL: absent). Returns its version. */
static uint64_t
expect_value(omc_client *c, const char *key, const char *val)
{
    omc_info info;
    om_buf data = OM_BUF_INIT;
    uint64_t v = 0;
    om_status st = omc_retrieve(c, BUCKET, key, &info, &data);

    if (val == NULL) {
        ck_assert_msg(st == OM_E_NOTFOUND, "%s: expected absent, got %s", key, om_status_str(st));
    } else {
        ck_assert_msg(st == OM_OK, "%s: %s (%s)", key, om_status_str(st), omc_last_message(c));
        ck_assert_msg(data.n == strlen(val) && memcmp(data.p, val, data.n) == 0,
                      "%s: reads back %.*s, expected %s", key, (int)data.n, (const char *)data.p,
                      val);
        v = info.version;
        omc_info_free(&info);
    }
    om_buf_free(&data);
    return v;
}

START_TEST(rebalance_conditional)
{
    cluster cl;
    cas_ctx *x = calloc(1, sizeof(*x));
    cas_worker w[NCASTH];
    pthread_t th[NCASTH];
    char abs_keys[NABS][32];
    uint64_t absv[NABS], to, ops_at_switch, deadline;
    ring *cur, *pend;
    omc_client *c;
    int during = 0;

    pthread_mutex_init(&x->mu, NULL);
    x->seed = tu_seed("rebalance_conditional");
    x->cl = &cl;
    cluster_start(&cl, 4, 3, "512K");
    preload(&cl);
    to = start_change(&cl, "add", cl.id[3], cl.addr[3], 1);
    wait_mid_copy(&cl);
    get_rings(cl.coord_addr, &cur, &pend);
    ck_assert_ptr_nonnull(pend);
    moving_keys(cur, pend, "cas/", NCAS, x->keys);
    moving_keys(cur, pend, "abs/", NABS, abs_keys);
    ring_unref(cur);
    ring_unref(pend);
    c = tu_omc_connect(cl.coord_addr);
    /* the counters are created with if-absent while the copy runs, then raced on */
    for (int k = 0; k < NCAS; k++) {
        store_if_absent(c, x->keys[k], "0", OM_OK);
        store_if_absent(c, x->keys[k], "0", OM_E_PRECONDITION);
    }
    for (int t = 0; t < NCASTH; t++) {
        w[t] = (cas_worker){x, t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, cas_main, &w[t]), 0);
    }
    /* if-absent / if-version / delete-if-version on moving keys, judged by the old owner */
    for (int i = 0; i < NABS; i++) {
        uint64_t v, dv = 0;
        char val[32];
        during += change_active(&cl);
        snprintf(val, sizeof(val), "first-%d", i);
        v = store_if_absent(c, abs_keys[i], val, OM_OK);
        store_if_absent(c, abs_keys[i], "second", OM_E_PRECONDITION);
        store_if_version(c, abs_keys[i], "stale", v - 1, OM_E_PRECONDITION, NULL);
        dv = v - 1;
        ck_assert_int_eq(omc_delete(c, BUCKET, abs_keys[i], &dv, NULL), OM_E_PRECONDITION);
        snprintf(val, sizeof(val), "second-%d", i);
        store_if_version(c, abs_keys[i], val, v, OM_OK, &absv[i]);
        if (i % 2 == 1) { /* delete exactly that version, then re-create: absent again */
            ck_assert_int_eq(omc_delete(c, BUCKET, abs_keys[i], &absv[i], NULL), OM_OK);
            snprintf(val, sizeof(val), "third-%d", i);
            absv[i] = store_if_absent(c, abs_keys[i], val, OM_OK);
        }
    }
    printf("conditional: %d of %d key rounds started while the change was active\n", during, NABS);
    wait_change(&cl, to);
    /* let the counters race on the new owners for a while after the switch */
    ops_at_switch = atomic_load(&x->ops);
    deadline = tu_now_ms() + 20000;
    while (atomic_load(&x->ops) < ops_at_switch + 200 && x->failure[0] == '\0') {
        ck_assert_msg(tu_now_ms() < deadline, "counters stalled after the switch");
        om_clock_sleep_ms(5);
    }
    atomic_store(&x->stop, true);
    for (int t = 0; t < NCASTH; t++)
        pthread_join(th[t], NULL);
    ck_assert_msg(x->failure[0] == '\0', "%s", x->failure);
    /* after the switch, on the new owners: every condition still holds */
    for (int i = 0; i < NABS; i++) {
        char val[32];
        snprintf(val, sizeof(val), i % 2 ? "third-%d" : "second-%d", i);
        ck_assert_uint_eq(expect_value(c, abs_keys[i], val), absv[i]);
        store_if_absent(c, abs_keys[i], "again", OM_E_PRECONDITION);
        store_if_version(c, abs_keys[i], "stale", absv[i] - 1, OM_E_PRECONDITION, NULL);
    }
    {
        unsigned long total = 0;
        for (int k = 0; k < NCAS; k++) {
            char want[32];
            snprintf(want, sizeof(want), "%lu", (unsigned long)atomic_load(&x->ok[k]));
            expect_value(c, x->keys[k], want); /* one increment per acknowledged CAS */
            total += atomic_load(&x->ok[k]);
        }
        printf("conditional: %lu compare-and-sets acknowledged, %lu refused as stale, %lu "
               "after the switch\n",
               total, (unsigned long)atomic_load(&x->conflicts),
               (unsigned long)(atomic_load(&x->ops) - ops_at_switch));
    }
    omc_close(c);
    check_placement(&cl, true);
    cluster_stop(&cl);
    pthread_mutex_destroy(&x->mu);
    free(x);
}
END_TEST

#define NUNC 60

/*
 * Writes to moving keys while their new owner is down (so their forward is never
 * confirmed: the coordinator notes them only in memory), then kill -9 the
 * coordinator: the restarted one does not know them, and its catch-up pass
 * (every record with version >= wm0, the source's clock when the copy began
 * minus the margin) must carry them over anyway.
 */
START_TEST(rebalance_kill_coord_unconfirmed)
{
    cluster cl;
    char keys[NUNC][32], dir[512];
    uint64_t ver[NUNC], to;
    ring *cur, *pend;
    omc_client *c;

    tu_seed("rebalance_kill_coord_unconfirmed"); /* not randomized: printed for the record */
    cluster_start(&cl, 4, 3, "512K");
    preload(&cl);
    to = start_change(&cl, "add", cl.id[3], cl.addr[3], 1);
    wait_mid_copy(&cl);
    get_rings(cl.coord_addr, &cur, &pend);
    ck_assert_ptr_nonnull(pend);
    /* "a/..." sorts before every preloaded key ("s/..."), so the copy's cursor is already
     * past them: the resumed copy (pass 0) will not see them, only the catch-up can */
    moving_keys(cur, pend, "a/unc/", NUNC, keys);
    ring_unref(cur);
    ring_unref(pend);
    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(cl.shard[3]));
    tu_proc_kill9(cl.shard[3]);
    tu_proc_free(cl.shard[3]);
    cl.shard[3] = NULL;
    c = tu_omc_connect(cl.coord_addr);
    for (int i = 0; i < NUNC; i++) {
        omc_info info;
        char val[32];
        snprintf(val, sizeof(val), "unconfirmed-%d", i);
        ck_assert_int_eq(omc_store(c, BUCKET, keys[i], om_slice_from_str(val), NULL, &info), OM_OK);
        ver[i] = info.version;
        omc_info_free(&info);
        if (i % 3 == 2) /* and some deletes: their tombstones must travel too */
            ck_assert_int_eq(omc_delete(c, BUCKET, keys[i], NULL, &ver[i]), OM_OK);
    }
    omc_close(c);
    printf("kill_coord_unconfirmed: %d writes to moving keys acknowledged while their new owner "
           "was down; killing the coordinator\n",
           NUNC);
    tu_proc_kill9(cl.coord);
    tu_proc_free(cl.coord);
    shard_start(&cl, 3, dir);
    coord_start(&cl, 3);
    wait_change(&cl, to);
    c = tu_omc_connect(cl.coord_addr);
    for (int pass = 0; pass < 2; pass++) { /* through the coordinator, then on s4 directly */
        for (int i = 0; i < NUNC; i++) {
            char val[32];
            snprintf(val, sizeof(val), "unconfirmed-%d", i);
            if (i % 3 == 2)
                expect_value(c, keys[i], NULL);
            else
                ck_assert_uint_eq(expect_value(c, keys[i], val), ver[i]);
        }
        omc_close(c);
        c = pass == 0 ? tu_omc_connect(cl.addr[3]) : NULL;
    }
    check_placement(&cl, true);
    cluster_stop(&cl);
}
END_TEST

/* Does the file hold the string? */
static bool
file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    bool found = false;

    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Poll until the change is in cleanup (true) or over (false). */
static bool
wait_cleanup(cluster *cl, uint64_t to)
{
    uint64_t deadline = tu_now_ms() + CHANGE_DEADLINE_MS;

    for (;;) {
        Objmeta__Response *r = get_status(cl->coord_addr);
        int state = 0; /* 1 cleanup, 2 over */
        if (r != NULL) {
            const Objmeta__RebalanceStatusResponse *s = r->rebalance_status;
            if (s->active && strcmp(s->phase, "cleanup") == 0)
                state = 1;
            else if (!s->active && s->last_change_epoch >= to)
                state = 2;
            rpc_response_free(r);
        }
        if (state != 0)
            return state == 1;
        ck_assert_msg(tu_now_ms() < deadline, "the change never reached its cleanup");
    }
}

/* kill -9 the coordinator while the old owners compact: it resumes the cleanup. */
START_TEST(rebalance_kill_coord_cleanup)
{
    cluster cl;
    tu_load *L;
    char errpath[600];
    bool hit = false;

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed("rebalance_kill_coord_cleanup"),
                    true);
    cluster_start(&cl, 4, 3, "4M");
    preload(&cl);
    tu_load_start(L);
    /* the cleanup lasts as long as the old owners' compactions: if one attempt misses it,
     * change the new shard's weight and try again */
    for (int attempt = 0; attempt < 4 && !hit; attempt++) {
        uint64_t to = attempt == 0
                          ? start_change(&cl, "add", cl.id[3], cl.addr[3], 1)
                          : start_change(&cl, "weight", cl.id[3], NULL, (uint32_t)(attempt + 1));
        if (wait_cleanup(&cl, to)) {
            tu_proc_kill9(cl.coord);
            tu_proc_free(cl.coord);
            coord_start(&cl, 3);
            snprintf(errpath, sizeof(errpath), "%s.stderr", cl.coord_dir);
            hit = file_contains(errpath, "resuming cleanup");
            printf("kill_coord_cleanup: attempt %d: coordinator killed in cleanup; %s\n", attempt,
                   hit ? "the restarted one resumes the cleanup" : "it had just finished");
        }
        wait_change(&cl, to);
    }
    tu_load_stop(L);
    ck_assert_msg(hit, "no attempt killed the coordinator during a cleanup");
    tu_load_check(L);
    check_placement(&cl, true); /* strict: the resumed cleanup compacted every old owner */
    cluster_stop(&cl);
    tu_load_free(L);
}
END_TEST

static uint64_t
bytes_copied(cluster *cl, bool *copying)
{
    Objmeta__Response *r = get_status(cl->coord_addr);
    uint64_t b;

    ck_assert_ptr_nonnull(r);
    b = r->rebalance_status->bytes_copied;
    *copying = r->rebalance_status->active && strcmp(r->rebalance_status->phase, "copying") == 0;
    rpc_response_free(r);
    return b;
}

#define BUSY_RATE (64u << 10)

/*
 * The throttle gives way to clients: while the load runs the copy keeps to
 * --migrate-rate-busy (64 KiB/s here), and when the clients stop it goes at the
 * idle rate (--migrate-rate=0: unlimited).
 */
START_TEST(rebalance_throttle)
{
    cluster cl;
    tu_load *L;
    uint64_t to, b0, b1, t0, t1, deadline;
    bool copying;

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed("rebalance_throttle"), false);
    cluster_start_with(&cl, 4, 3, "0", "--migrate-rate-busy=64K");
    preload(&cl);
    tu_load_start(L);
    deadline = tu_now_ms() + 20000;
    while (tu_load_ops(L) < 50) { /* the clients are under way */
        ck_assert_msg(tu_now_ms() < deadline, "the load did not start");
        om_clock_sleep_ms(5);
    }
    to = start_change(&cl, "add", cl.id[3], cl.addr[3], 1);
    /* one second of busy copying, measured between two status answers */
    b0 = bytes_copied(&cl, &copying);
    t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 1000)
        om_clock_sleep_ms(20);
    b1 = bytes_copied(&cl, &copying);
    t1 = tu_now_ms();
    printf("throttle: with clients, %llu bytes copied in %llu ms (busy rate %u B/s), still "
           "copying: %d\n",
           (unsigned long long)(b1 - b0), (unsigned long long)(t1 - t0), BUSY_RATE, copying);
    /* at most the rate plus the bucket (one batch) and one batch in flight */
    ck_assert_uint_le(b1 - b0, (t1 - t0) * BUSY_RATE / 1000 + 2 * (128u << 10));
    ck_assert_msg(copying, "the copy ended within a second at the busy rate");
    tu_load_stop(L);
    /* idle now: unthrottled, what is left goes much faster than the busy rate */
    t0 = tu_now_ms();
    b0 = bytes_copied(&cl, &copying);
    deadline = t0 + CHANGE_DEADLINE_MS;
    do { /* until the copy (pass 0) is over; bytes_copied counts pass 0 only */
        ck_assert_msg(tu_now_ms() < deadline, "the copy did not end");
        om_clock_sleep_ms(5);
        b1 = bytes_copied(&cl, &copying);
    } while (copying);
    t1 = tu_now_ms();
    wait_change(&cl, to);
    printf("throttle: without clients, the remaining %llu bytes in %llu ms (the busy rate would "
           "take %llu ms)\n",
           (unsigned long long)(b1 - b0), (unsigned long long)(t1 - t0),
           (unsigned long long)((b1 - b0) * 1000 / BUSY_RATE));
    ck_assert_uint_lt((t1 - t0) * BUSY_RATE / 1000, (b1 - b0) / 2);
    tu_load_check(L);
    check_placement(&cl, true);
    cluster_stop(&cl);
    tu_load_free(L);
}
END_TEST

/* The operator's tool: add-shard --wait (plain lines: stdout is not a terminal), status. */
START_TEST(rebalance_cli)
{
    cluster cl;
    char *out = NULL, *err = NULL;
    int rc;

    cluster_start(&cl, 4, 3, "1M");
    preload(&cl);
    {
        const char *argv[] = {"objmeta", "--addr", cl.coord_addr, "admin",  "add-shard", "--id",
                              cl.id[3],  "--addr", cl.addr[3],    "--wait", NULL};
        rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 60000, &out, &err);
        printf("objmeta admin add-shard --wait: exit %d\n%s%s", rc, out, err);
        ck_assert_int_eq(rc, 0);
        ck_assert_ptr_nonnull(strstr(out, "add-shard: ring epoch 1 -> 2"));
        ck_assert_ptr_nonnull(strstr(out, "done: ring epoch 2"));
        ck_assert_ptr_null(strchr(out, '\r')); /* no terminal: no progress redraws */
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"objmeta",          "--addr", cl.coord_addr, "admin",
                              "rebalance-status", "--json", NULL};
        rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 20000, &out, &err);
        ck_assert_int_eq(rc, 0);
        ck_assert_ptr_nonnull(strstr(out, "\"active\": false"));
        ck_assert_ptr_nonnull(strstr(out, "\"last_change_epoch\": 2"));
        /* the summary keeps how long it took and what the cleanup compacted */
        ck_assert_ptr_nonnull(strstr(out, "\"duration_ms\": "));
        ck_assert_ptr_null(strstr(out, "\"duration_ms\": 0,"));
        ck_assert_ptr_nonnull(strstr(out, "\"cleanup_bytes_before\": "));
        ck_assert_ptr_null(strstr(out, "\"cleanup_bytes_before\": 0,"));
        free(out);
        free(err);
    }
    {
        /* removing a shard that is not there: refused, exit 5, message on stderr */
        const char *argv[] = {"objmeta",      "--addr", cl.coord_addr, "admin",
                              "remove-shard", "--id",   "nope",        NULL};
        rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 20000, &out, &err);
        ck_assert_int_eq(rc, 5);
        ck_assert_ptr_nonnull(strstr(err, "not in the ring"));
        free(out);
        free(err);
    }
    {
        /* nothing to cancel: refused, exit 5 */
        const char *argv[] = {"objmeta", "--addr", cl.coord_addr, "admin", "cancel", NULL};
        rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 20000, &out, &err);
        ck_assert_int_eq(rc, 5);
        ck_assert_ptr_nonnull(strstr(err, "no ring change is in progress"));
        free(out);
        free(err);
    }
    check_placement(&cl, true);
    cluster_stop(&cl);
}
END_TEST

/* --- cancel (coordinator/MIGRATION.md, "Cancel") ----------------------------------------------
 */

/* CancelRebalance; returns the response (caller frees), never NULL. */
static Objmeta__Response *
cancel_call(cluster *cl)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__CancelRebalanceRequest cq = OBJMETA__CANCEL_REBALANCE_REQUEST__INIT;
    Objmeta__Response *r;

    req.body_case = OBJMETA__REQUEST__BODY_CANCEL_REBALANCE;
    req.cancel_rebalance = &cq;
    r = coord_call(cl->coord_addr, &req);
    ck_assert_msg(r != NULL, "cancel: no answer");
    printf("cancel: %s %s\n", rpc_proto_status_name(r->status), r->message);
    return r;
}

/*
 * Cancel the change to `to` mid-copy, by request or with `objmeta admin cancel --wait`:
 * the answer names the phase and the epochs; the cancel then runs to its end (epoch
 * to + 1, ring e's placement). Returns how many shards the answer says to wipe.
 */
static size_t
cancel_mid_copy(cluster *cl, uint64_t to, const ring *before, bool cli)
{
    Objmeta__Response *r;
    const Objmeta__CancelRebalanceResponse *cr;
    size_t nwipe = 0;
    ring *after;

    wait_mid_copy(cl);
    if (cli) {
        const char *argv[] = {"objmeta", "--addr", cl->coord_addr, "admin", "cancel",
                              "--wait",  NULL};
        char *out = NULL, *err = NULL, want[64];
        int rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 60000, &out, &err);
        printf("objmeta admin cancel --wait: exit %d\n%s%s", rc, out, err);
        ck_assert_int_eq(rc, 0);
        ck_assert_ptr_nonnull(strstr(out, "cancelled while copying"));
        snprintf(want, sizeof(want), "done: ring epoch %llu", (unsigned long long)(to + 1));
        ck_assert_ptr_nonnull(strstr(out, want));
        nwipe = strstr(out, "left the cluster holding copies") != NULL;
        free(out);
        free(err);
    } else {
        r = cancel_call(cl);
        ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
        ck_assert_int_eq(r->body_case, OBJMETA__RESPONSE__BODY_CANCEL_REBALANCE);
        cr = r->cancel_rebalance;
        ck_assert(!cr->already);
        ck_assert_str_eq(cr->phase, "copying");
        ck_assert_uint_eq(cr->from_epoch, to - 1);
        ck_assert_uint_eq(cr->cancelled_epoch, to);
        ck_assert_uint_eq(cr->to_epoch, to + 1);
        nwipe = cr->n_wipe_shards;
        rpc_response_free(r);
        /* a second cancel while the first runs answers the same, "already" (unless the
         * first has finished meanwhile: then there is nothing to cancel) */
        r = cancel_call(cl);
        ck_assert(r->status == OBJMETA__STATUS__OK
                      ? r->cancel_rebalance->already
                      : strstr(r->message, "no ring change is in progress") != NULL);
        rpc_response_free(r);
    }
    wait_change(cl, to + 1);
    after = get_ring(cl->coord_addr);
    ck_assert_uint_eq(ring_epoch(after), to + 1);
    ck_assert_msg(ring_same_placement(before, after), "the cancel did not restore the placement");
    ring_unref(after);
    return nwipe;
}

/*
 * Cancel in each phase, under the load. Copying: a set-weight (its target stays in the
 * ring and must compact its copies away) and an add-shard (the new shard leaves holding
 * copies, and is refused until wiped). Past the switch: refused, the cleanup finishes.
 * Idle: refused. After each: no acknowledged write lost, no delete undone, every key on
 * its owner and on no other shard, and a new change runs to its end.
 */
START_TEST(rebalance_cancel)
{
    cluster cl;
    tu_load *L;
    Objmeta__Response *r;
    ring *before;
    uint64_t to;
    bool hit = false;

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed("rebalance_cancel"), false);
    cluster_start(&cl, 4, 3, "2M");
    preload(&cl);

    /* idle: nothing to cancel */
    r = cancel_call(&cl);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__PRECONDITION_FAILED);
    ck_assert_ptr_nonnull(strstr(r->message, "no ring change is in progress"));
    rpc_response_free(r);

    /* copying, set-weight: s1's copies must not survive */
    before = get_ring(cl.coord_addr);
    tu_load_start(L);
    to = start_change(&cl, "weight", cl.id[0], NULL, 3);
    ck_assert_uint_eq(cancel_mid_copy(&cl, to, before, false), 0);
    tu_load_stop(L);
    ring_unref(before);
    tu_load_check(L);
    check_placement(&cl, true); /* strict: the target compacted what it had copied */

    /* copying, add-shard, with the tool: s4 leaves with copies */
    before = get_ring(cl.coord_addr);
    tu_load_start(L);
    to = start_change(&cl, "add", cl.id[3], cl.addr[3], 1);
    ck_assert_uint_eq(cancel_mid_copy(&cl, to, before, true), 1);
    tu_load_stop(L);
    ring_unref(before);
    tu_load_check(L);
    check_placement(&cl, true);
    expect_add_refused_holding(&cl, 3);

    /* past the switch: refused, the change finishes; a cleanup can be short, so retry */
    tu_load_start(L);
    for (int attempt = 0; attempt < 4 && !hit; attempt++) {
        to = start_change(&cl, "weight", cl.id[attempt % 3], NULL, (uint32_t)(attempt + 2));
        if (wait_cleanup(&cl, to)) {
            r = cancel_call(&cl);
            if (r->status == OBJMETA__STATUS__PRECONDITION_FAILED &&
                strstr(r->message, "only its cleanup") != NULL)
                hit = true;
            else /* the cleanup ended meanwhile: nothing to cancel */
                ck_assert_ptr_nonnull(strstr(r->message, "no ring change is in progress"));
            rpc_response_free(r);
        }
        wait_change(&cl, to);
    }
    tu_load_stop(L);
    ck_assert_msg(hit, "no attempt reached a cleanup to refuse the cancel in");
    tu_load_check(L);
    check_placement(&cl, true);
    cluster_stop(&cl);
    tu_load_free(L);
}
END_TEST

/*
 * Poll the coordinator's log from *off for a line holding `needle`: true once seen, false
 * if the change to `to` is over first. Reads only what was appended since the last call.
 */
static bool
log_wait(cluster *cl, const char *needle, long *off, uint64_t to)
{
    char path[600], line[2048];
    uint64_t next_status = 0, deadline = tu_now_ms() + CHANGE_DEADLINE_MS;

    snprintf(path, sizeof(path), "%s.stderr", cl->coord_dir);
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f != NULL && fseek(f, *off, SEEK_SET) == 0) {
            while (fgets(line, sizeof(line), f) != NULL) {
                size_t n = strlen(line);
                if (line[n - 1] != '\n')
                    break; /* a line being written: read it whole next time */
                *off += (long)n;
                if (strstr(line, needle) != NULL) {
                    fclose(f);
                    return true;
                }
            }
        }
        if (f != NULL)
            fclose(f);
        if (tu_now_ms() >= next_status) {
            Objmeta__Response *r = get_status(cl->coord_addr);
            bool over = r != NULL && !r->rebalance_status->active &&
                        r->rebalance_status->last_change_epoch >= to;
            rpc_response_free(r);
            if (over)
                return false;
            next_status = tu_now_ms() + 50;
        }
        ck_assert_msg(tu_now_ms() < deadline, "the change to epoch %llu never fenced",
                      (unsigned long long)to);
        om_clock_sleep_ms(1);
    }
}

/*
 * Cancel during the cutover. The fenced pass waits for the requests for moving keys in
 * flight; the test stops an old owner (SIGSTOP) as soon as the coordinator logs the fence,
 * so a request to it stays in flight and the fence holds (--cutover-timeout 30 s) until the
 * cancel, which must release the held requests and go back to ring e's placement. A
 * fenced pass can end before the stop lands: then the change finishes and the test tries
 * again with another change.
 */
START_TEST(rebalance_cancel_cutover)
{
    cluster cl;
    tu_load *L;
    long off = 0;
    bool hit = false;
    uint64_t to;

    L = tu_load_new(cl.coord_addr, BUCKET, NSTABLE, NMUT, tu_seed("rebalance_cancel_cutover"),
                    true); /* the stopped shard's keys are unavailable meanwhile */
    cluster_start_with(&cl, 3, 3, "0", "--cutover-timeout=30s");
    preload(&cl);
    tu_load_start(L);
    for (int attempt = 0; attempt < 8 && !hit; attempt++) {
        ring *before = get_ring(cl.coord_addr);
        int stopped = 1 + attempt % 2; /* s2 or s3: an old owner of the set-weight of s1 */
        to = start_change(&cl, "weight", cl.id[0], NULL, (uint32_t)(attempt + 2));
        if (log_wait(&cl, "cutover: moving keys fenced", &off, to)) {
            Objmeta__Response *r = NULL;
            ck_assert_int_eq(kill(tu_proc_pid(cl.shard[stopped]), SIGSTOP), 0);
            om_clock_sleep_ms(100); /* the fence either holds on the stopped shard or is over */
            Objmeta__Response *st = get_status(cl.coord_addr);
            bool cutover = st != NULL && st->rebalance_status->active &&
                           strcmp(st->rebalance_status->phase, "cutover") == 0;
            rpc_response_free(st);
            if (cutover)
                r = cancel_call(&cl);
            ck_assert_int_eq(kill(tu_proc_pid(cl.shard[stopped]), SIGCONT), 0);
            if (r != NULL && r->status == OBJMETA__STATUS__OK) {
                ck_assert_str_eq(r->cancel_rebalance->phase, "cutover");
                ck_assert_uint_eq(r->cancel_rebalance->to_epoch, to + 1);
                hit = true;
            }
            rpc_response_free(r);
            printf("cancel_cutover: attempt %d: %s\n", attempt,
                   hit       ? "cancelled in the cutover"
                   : cutover ? "the cutover ended before the cancel"
                             : "the cutover was over before the stop");
        }
        if (hit) {
            ring *after;
            wait_change(&cl, to + 1);
            after = get_ring(cl.coord_addr);
            ck_assert_msg(ring_same_placement(before, after),
                          "the cancel did not restore the ring");
            ring_unref(after);
        } else {
            wait_change(&cl, to);
        }
        ring_unref(before);
    }
    ck_assert_msg(hit, "no attempt cancelled during a cutover");
    /* a new change starts and finishes after the cancel */
    to = start_change(&cl, "weight", cl.id[1], NULL, 5);
    wait_change(&cl, to);
    tu_load_stop(L);
    tu_load_check(L);
    check_placement(&cl, true);
    cluster_stop(&cl);
    tu_load_free(L);
}
END_TEST

static Suite *
rebalance_suite(void)
{
    Suite *s = suite_create("rebalance");
    TCase *tc = tcase_create("changes");

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, rebalance_changes);
    tcase_add_test(tc, rebalance_refusals);
    tcase_add_test(tc, rebalance_cli);
    tcase_add_test(tc, rebalance_conditional);
    tcase_add_test(tc, rebalance_throttle);
    suite_add_tcase(s, tc);
    tc = tcase_create("cancel");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, rebalance_cancel);
    tcase_add_test(tc, rebalance_cancel_cutover);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rebalance_kill_coord);
    tcase_add_test(tc, rebalance_kill_source);
    tcase_add_test(tc, rebalance_kill_target);
    tcase_add_test(tc, rebalance_kill_coord_unconfirmed);
    tcase_add_test(tc, rebalance_kill_coord_cleanup);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(rebalance_suite());
}
