/*
 * tests/controlplane/it_groups_migrate.c -- ring changes into and out of
 * replica groups (shard/REPLICATION.md, "Migration into a group";
 * coordinator/GROUPS.md): a real etcd, a real objmeta-coord with the etcd
 * cluster state, and groups of three objmeta-shard replicas in etcd mode
 * (lease, failover), under the ring-change tests' load through the
 * coordinator (tests/harness/tu_load.h: writers, a deleter, a reader and a
 * paginated lister).
 *
 *   add_group_under_load   g1 holds data; add-group g2 while the load
 *                          runs.
 *   primaries_killed_mid_copy
 *                          kill -9 of g1's primary (the source) and of g2's
 *                          (the target) while the copy runs: the change
 *                          finishes against the new primaries; the killed
 *                          replicas restart and rejoin.
 *   add_during_failover    g1 and g2 in the ring; kill -9 of g2's primary
 *                          and add-group g3 at once: g2 is a source that
 *                          fails over while the change starts. Then, in
 *                          the cutover (the coordinator holds the moving
 *                          keys and the old owners are fenced; held open
 *                          by the testing aid --test-phase-delay), kill -9
 *                          of g1's primary (a source) and of g3's (the
 *                          target): each group's next primary is probed
 *                          with the rings and the fence, so g1's refuses a
 *                          write routed by the old ring for a moving key
 *                          -- what a coordinator cut off from etcd would
 *                          send (coordinator/MIGRATION.md, "Fencing with
 *                          many coordinators"), and a write the final pass
 *                          would miss -- exactly as its old primary did.
 *
 * Every listing taken meanwhile never repeats a key nor misses one that
 * existed throughout (tu_load). Each ends, with the load stopped and every
 * replica back in sync, with: every acknowledged write reads back (its
 * value or a later one) and no acknowledged delete is undone; every
 * live key is on all three replicas of exactly one group -- the one the
 * coordinator reads it from -- so the moved keys were purged from every
 * replica of their old group; and `admin verify` finds each group's
 * replicas identical. The copy is throttled so that it lasts seconds; the
 * seed of the load is printed (TU_SEED repeats a run).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "cp_groups.h"
#include "it_util.h"
#include "partitioner/ring.h"
#include "rpc/rpc.h"
#include "tu.h"
#include "tu_load.h"
#include "tu_etcd.h"
#include "util/clock.h"

#define PREFIX "/objmeta/grpmig"
#define BUCKET "mig"
#define NREP 3
#define NSTABLE 400 /* stored once (1500 bytes each), never written again: what a change copies */
#define NMUT 200    /* written and deleted all the time */
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

/* What `admin add-group` writes: term 1, r0 primary, every replica in sync. */
static void
group_put_config(const group *g)
{
    char key[128], cfg[1024];

    snprintf(key, sizeof(key), PREFIX "/groups/%s/config", g->id);
    snprintf(cfg, sizeof(cfg),
             "{\"group\":\"%s\",\"term\":1,\"primary\":\"r0\",\"replicas\":[{\"id\":\"r0\","
             "\"addr\":\"%s\"},{\"id\":\"r1\",\"addr\":\"%s\"},{\"id\":\"r2\",\"addr\":\"%s\"}],"
             "\"in_sync\":[\"r0\",\"r1\",\"r2\"]}",
             g->id, g->addr[0], g->addr[1], g->addr[2]);
    cp_etcd_put(etcd, key, cfg);
}

/* The group's configured term, primary (index) and in-sync size, from etcd. */
static void
group_config(const group *g, long *term, int *primary, int *in_sync)
{
    char key[128], *out;
    json_t *j;
    const char *pr;

    snprintf(key, sizeof(key), PREFIX "/groups/%s/config", g->id);
    out = cp_etcd_get(etcd, key);
    ck_assert_msg(out != NULL, "group %s has no configuration", g->id);
    j = json_loads(out, 0, NULL);
    ck_assert_msg(j != NULL, "config of %s is not JSON: %s", g->id, out);
    *term = (long)json_integer_value(json_object_get(j, "term"));
    pr = json_string_value(json_object_get(j, "primary"));
    *primary = pr != NULL && pr[0] == 'r' ? atoi(pr + 1) : -1;
    *in_sync = (int)json_array_size(json_object_get(j, "in_sync"));
    json_decref(j);
    free(out);
}

/* kill -9 of the group's primary (its index); *term = the term it led. */
static int
kill_primary_only(group *g, long *term)
{
    int pr, n;

    group_config(g, term, &pr, &n);
    ck_assert_msg(pr >= 0 && g->p[pr] != NULL, "group %s has no running primary", g->id);
    tu_proc_kill9(g->p[pr]);
    tu_proc_free(g->p[pr]);
    g->p[pr] = NULL;
    return pr;
}

/* Wait until a replica other than `killed` leads a term after `term`; returns its index. */
static int
wait_new_primary(const group *g, int killed, long term, uint64_t t0)
{
    long t2;
    int p2, n;
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    for (;;) {
        group_config(g, &t2, &p2, &n);
        if (t2 > term && p2 != killed)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "group %s: no new primary after kill -9", g->id);
        om_clock_sleep_ms(100); /* poll interval */
    }
    printf("group %s: r%d killed (term %ld), r%d leads term %ld after %llu ms\n", g->id, killed,
           term, p2, t2, (unsigned long long)(tu_now_ms() - t0));
    return p2;
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

/*
 * hold_ms > 0: the cutover (and the start of cleanup) is held that long by the testing aid
 * --test-phase-delay, and the cutover timeout is set above it (0: both left out, the NULL
 * ends the list).
 */
static tu_proc *
start_coord(const char *shards, int hold_ms)
{
    /* slow enough that a copy of ~0.6 MB lasts seconds */
    char hold[64], timeout[64];
    const char *const more[] = {"--migrate-rate=256K",
                                "--migrate-rate-busy=128K",
                                "--migrate-batch=32K",
                                "--migrate-batch-busy=16K",
                                hold_ms > 0 ? hold : NULL,
                                timeout,
                                NULL};

    snprintf(hold, sizeof(hold), "--test-phase-delay=%dms", hold_ms);
    snprintf(timeout, sizeof(timeout), "--cutover-timeout=%dms", hold_ms + 10000);
    return cp_coord_start(etcd, PREFIX, shards, more);
}

#define PHASE(name) "\nobjmeta_coord_rebalance_phase{phase=\"" name "\"} "

/* ---- the cutover fence on a group's primary ---- */

/* The hold of the cutover, in ms (tests/controlplane/meson.build: longer under a sanitizer). */
static int
hold_ms(void)
{
    const char *v = getenv("GROUPS_MIGRATE_HOLD_MS");

    return v != NULL && atoi(v) > 0 ? atoi(v) : 5000;
}

/* Wait until the coordinator pauses in cutover: moving keys held, the shards fenced. */
static void
wait_cutover_held(const tu_proc *co)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    for (;;) {
        char *log = tu_proc_stderr(co);
        bool held = log != NULL && strstr(log, "test-phase-delay: pausing phase=cutover") != NULL;

        free(log);
        if (held)
            return;
        ck_assert_msg(tu_now_ms() < deadline, "the change never reached its cutover");
        om_clock_sleep_ms(20); /* poll interval */
    }
}

/* The rings replica c holds (false: none yet, a new primary before the coordinator's probe). */
static bool
held_rings(rpc_sync_client *c, ring **cur, ring **pend)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    char err[128];
    bool ok;

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    ok = r->status == OBJMETA__STATUS__OK;
    ck_assert_msg(ok || r->status == OBJMETA__STATUS__NOT_FOUND, "GetRing: %s", r->message);
    *cur = *pend = NULL;
    if (ok) {
        ck_assert_msg(ring_from_pb(r->get_ring->ring, cur, err, sizeof(err)) == OM_OK, "%s", err);
        if (r->get_ring->pending != NULL)
            ck_assert_msg(ring_from_pb(r->get_ring->pending, pend, err, sizeof(err)) == OM_OK, "%s",
                          err);
    }
    rpc_response_free(r);
    return ok;
}

/*
 * Is replica c fenced for the cutover? Asked as a follower coordinator's probe
 * would: SetRing with the rings it holds, fence 0 ("leave it"), revision 0 (not
 * compared) -- which changes nothing and answers the fence's state.
 */
static bool
is_fenced(rpc_sync_client *c, const ring *cur, const ring *pend)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    bool fenced;

    ck_assert(ring_to_pb(cur, &sr.ring) == OM_OK);
    ck_assert(ring_to_pb(pend, &sr.pending) == OM_OK);
    req.body_case = OBJMETA__REQUEST__BODY_SET_RING;
    req.set_ring = &sr;
    req.ring_epoch = ring_epoch(cur);
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK && r->set_ring != NULL, "SetRing: %s",
                  r->message);
    fenced = r->set_ring->fenced;
    rpc_response_free(r);
    ring_pb_free(sr.ring);
    ring_pb_free(sr.pending);
    return fenced;
}

/*
 * g's primary during the held cutover -- the replica (other than `skip`, a
 * killed one) that holds rings: backups never get any -- refuses what a
 * coordinator cut off from etcd would send it: a Store routed by the ring in
 * force for a key that moves away from g. Acknowledged, that write would be
 * lost: the final pass copies only the keys the leader noted, and cleanup
 * purges the key from g. Polls every 5 ms while no replica holds rings yet (a
 * new primary, until the coordinator's probe) or the primary does not serve
 * yet; from the first poll that sees the rings the fence must be on too (the
 * probe installs both in one step: a fence one probe later would leave a
 * window). Returns the primary's index.
 */
static int
check_fenced(const group *g, int skip, const tu_proc *co)
{
    rpc_sync_client *c[NREP] = {NULL};
    uint64_t deadline = tu_now_ms() + WAIT_MS;
    int tries = 0, i = -1;

    for (int r = 0; r < NREP; r++)
        if (r != skip && g->p[r] != NULL)
            ck_assert_int_eq(rpc_sync_client_open(g->addr[r], 5000, &c[r]), OM_OK);
    for (;; tries++) {
        ring *cur = NULL, *pend = NULL;
        char key[32] = "", msg[512];
        Objmeta__Status st = OBJMETA__STATUS__UNAVAILABLE;
        uint64_t e = 0;

        ck_assert_msg(tu_now_ms() < deadline, "no replica of %s came to hold the rings", g->id);
        /* the first replica seen holding rings is the primary: backups never get one */
        for (int r = 0; r < NREP && i < 0; r++)
            if (c[r] != NULL && held_rings(c[r], &cur, &pend))
                i = r;
        if (i >= 0 && (cur != NULL || held_rings(c[i], &cur, &pend))) {
            ck_assert_msg(pend != NULL,
                          "%s/r%d: the change switched before its primary was checked (the "
                          "hold of the cutover is too short)",
                          g->id, i);
            for (int k = 0; k < 100000 && key[0] == '\0'; k++) {
                snprintf(key, sizeof(key), "fence-probe-%d", k);
                if (strcmp(ring_lookup(cur, om_slice_from_str(BUCKET), om_slice_from_str(key))->id,
                           g->id) != 0 ||
                    strcmp(ring_lookup(pend, om_slice_from_str(BUCKET), om_slice_from_str(key))->id,
                           g->id) == 0)
                    key[0] = '\0'; /* not a key that moves away from g */
            }
            ck_assert_msg(key[0] != '\0', "no key moves away from %s", g->id);
            ck_assert_msg(is_fenced(c[i], cur, pend),
                          "%s/r%d holds the rings of the cutover but not its fence", g->id, i);
            e = ring_epoch(cur);
            st = it_store_at_epoch(c[i], BUCKET, key, "stale", e, msg, sizeof(msg));
        }
        ring_unref(cur);
        ring_unref(pend);
        if (st == OBJMETA__STATUS__UNAVAILABLE) {
            om_clock_sleep_ms(5); /* poll interval: the coordinator's probe comes */
            continue;
        }
        ck_assert_msg(st == OBJMETA__STATUS__WRONG_SHARD && strstr(msg, "fenced for the cutover"),
                      "%s/r%d answered %s (\"%s\") to a Store of %s routed by epoch %llu during "
                      "the cutover (coordinator phase cutover: %g): an acknowledged write the "
                      "final pass would miss",
                      g->id, i, st == OBJMETA__STATUS__OK ? "OK" : "not fenced", msg, key,
                      (unsigned long long)e, cp_coord_metric(co, PHASE("cutover")));
        printf("%s/r%d fenced for the cutover after %d polls: %s\n", g->id, i, tries, msg);
        break;
    }
    for (int r = 0; r < NREP; r++)
        if (c[r] != NULL)
            rpc_sync_client_close(c[r]);
    return i;
}

/* ---- the checks ---- */

/* Key i of the load: the stable keys first, then the mutable ones. */
static void
load_key(int i, char *out, size_t n)
{
    if (i < NSTABLE)
        tu_load_stable_key(i, out, n);
    else
        tu_load_mut_key(i - NSTABLE, out, n);
}

/*
 * The checks at the end (load stopped, every replica in sync): the load's
 * model through the coordinator (tu_load_check); every live key on all the
 * replicas of exactly one group with the version the coordinator reads,
 * every absent key on none; the replicas of every group identical.
 */
static void
check_all(tu_load *L, const tu_proc *co, group *const *gs, int ng)
{
    omc_client *c = tu_omc_connect(cp_coord_addr(co)), *direct[3][NREP];
    int live = 0;

    tu_load_check(L);
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < NREP; i++)
            direct[g][i] = it_client(gs[g]->p[i]);
    for (int key = 0; key < NSTABLE + NMUT; key++) {
        char name[32];
        omc_info info;
        om_buf data = OM_BUF_INIT;
        om_status st;
        uint64_t version = 0;
        int holders = 0, holder = -1;

        load_key(key, name, sizeof(name));
        st = omc_retrieve(c, BUCKET, name, &info, &data);
        ck_assert_msg(st == OM_OK || st == OM_E_NOTFOUND, "%s: %s", name, om_status_str(st));
        if (st == OM_OK) {
            version = info.version;
            omc_info_free(&info);
        }
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < NREP; i++) {
                om_status s2 = omc_retrieve(direct[g][i], BUCKET, name, &info, &data);

                ck_assert_msg(s2 == OM_OK || s2 == OM_E_NOTFOUND, "%s on %s/r%d: %s", name,
                              gs[g]->id, i, om_status_str(s2));
                if (s2 != OM_OK)
                    continue;
                ck_assert_msg(info.version == version,
                              "%s: %s/r%d holds version %llu, the coordinator reads %llu", name,
                              gs[g]->id, i, (unsigned long long)info.version,
                              (unsigned long long)version);
                omc_info_free(&info);
                ck_assert_msg(holder < 0 || holder == g, "%s is on %s and on %s", name,
                              gs[holder]->id, gs[g]->id);
                holder = g;
                holders++;
            }
        ck_assert_msg(holders == (st == OM_OK ? NREP : 0), "%s (%s) is on %d replicas", name,
                      om_status_str(st), holders);
        live += st == OM_OK;
        om_buf_free(&data);
    }
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < NREP; i++)
            omc_close(direct[g][i]);
    omc_close(c);
    for (int g = 0; g < ng; g++) {
        const char *argv[] = {"objmeta", "--addr",  cp_coord_addr(co), "admin",
                              "verify",  "--group", gs[g]->id,         NULL};
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

/* The load (tests/harness/tu_load.h), preloaded and started. */
static tu_load *
load_start(const tu_proc *co, const char *name, bool faults)
{
    static char addr[64];
    tu_load *L;

    snprintf(addr, sizeof(addr), "%s", cp_coord_addr(co));
    L = tu_load_new(addr, BUCKET, NSTABLE, NMUT, tu_seed(name), faults);
    tu_load_preload(L);
    tu_load_start(L);
    return L;
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

    while (cp_coord_metric(co, PHASE("copying")) != 1 ||
           cp_coord_metric(co, "\nobjmeta_coord_rebalance_records_copied ") < 1)
        ck_assert_msg(tu_now_ms() < deadline, "the change never copied");
}

/* g1 holds data; add-group g2 under the load; kill: of both primaries while the copy runs. */
static void
add_group_scenario(const char *name, bool kill)
{
    group g1, g2, *gs[2] = {&g1, &g2};
    tu_proc *co;
    char shards[128];
    change ch;
    tu_load *L;

    etcd = tu_etcd_start(1);
    group_start(&g1, "g1");
    group_put_config(&g1);
    snprintf(shards, sizeof(shards), "g1=%s", g1.addr[0]);
    co = start_coord(shards, 0);
    L = load_start(co, name, kill); /* without a kill no request may fail */
    group_start(&g2, "g2");
    change_start(&ch, cp_coord_addr(co), &g2);
    if (kill) {
        long t1, t2;
        int k1, k2;
        uint64_t t0;

        wait_copying(co);
        t0 = tu_now_ms();
        k1 = kill_primary_only(&g1, &t1); /* the source */
        k2 = kill_primary_only(&g2, &t2); /* the target */
        ck_assert_msg(cp_coord_metric(co, PHASE("copying")) == 1, "the copy ended before the kill");
        wait_new_primary(&g1, k1, t1, t0);
        wait_new_primary(&g2, k2, t2, t0);
        replica_start(&g1, k1, false); /* they return as backups and rejoin */
        replica_start(&g2, k2, false);
    }
    change_finish(&ch);
    tu_load_stop(L);
    wait_all_in_sync(&g1);
    wait_all_in_sync(&g2);
    check_all(L, co, gs, 2);
    tu_proc_stop(co);
    tu_proc_free(co);
    group_stop(&g1);
    group_stop(&g2);
    tu_etcd_stop(etcd);
    tu_load_free(L);
}

START_TEST(add_group_under_load)
{
    if (tu_etcd_available())
        add_group_scenario("add_group_under_load", false);
}
END_TEST

START_TEST(primaries_killed_mid_copy)
{
    if (tu_etcd_available())
        add_group_scenario("primaries_killed_mid_copy", true);
}
END_TEST

START_TEST(add_during_failover)
{
    group g1, g2, g3, *gs[3] = {&g1, &g2, &g3};
    tu_proc *co;
    char shards[200];
    change ch;
    tu_load *L;
    int killed, hold = hold_ms();

    if (!tu_etcd_available())
        return;
    etcd = tu_etcd_start(1);
    group_start(&g1, "g1");
    group_put_config(&g1);
    group_start(&g2, "g2");
    group_put_config(&g2);
    snprintf(shards, sizeof(shards), "g1=%s,g2=%s", g1.addr[0], g2.addr[0]);
    co = start_coord(shards, hold);
    L = load_start(co, "add_during_failover", true);
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
    change_start(&ch, cp_coord_addr(co), &g3);
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
    {
        /* the cutover, held: kill -9 of a source's primary (g1) and of the target's (g3) */
        long t1, t3;
        int k1, k3, p1, n;
        uint64_t t0;

        wait_cutover_held(co);
        t0 = tu_now_ms();
        group_config(&g1, &t1, &p1, &n);
        ck_assert_int_eq(check_fenced(&g1, -1, co), p1); /* the old primary, as every old owner */
        k1 = kill_primary_only(&g1, &t1);
        k3 = kill_primary_only(&g3, &t3);
        /* its next primary, probed during the cutover: checked from the moment it holds rings */
        p1 = check_fenced(&g1, k1, co);
        ck_assert_int_eq(wait_new_primary(&g1, k1, t1, t0), p1);
        wait_new_primary(&g3, k3, t3, t0);
        ck_assert_msg(cp_coord_metric(co, PHASE("cutover")) == 1,
                      "the cutover ended before both groups failed over (hold %d ms)", hold);
        printf("cutover held %d ms: g1 and g3 failed over within it after %llu ms\n", hold,
               (unsigned long long)(tu_now_ms() - t0));
        replica_start(&g1, k1, false);
        replica_start(&g3, k3, false);
    }
    change_finish(&ch);
    tu_load_stop(L);
    for (int g = 0; g < 3; g++)
        wait_all_in_sync(gs[g]);
    check_all(L, co, gs, 3);
    tu_proc_stop(co);
    tu_proc_free(co);
    for (int g = 0; g < 3; g++)
        group_stop(gs[g]);
    tu_etcd_stop(etcd);
    tu_load_free(L);
}
END_TEST

static Suite *
groups_migrate_suite(void)
{
    Suite *s = suite_create("groups-migrate");
    TCase *tc = tcase_create("groups-migrate");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, add_group_under_load);
    tcase_add_test(tc, primaries_killed_mid_copy);
    tcase_add_test(tc, add_during_failover);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(groups_migrate_suite());
}
