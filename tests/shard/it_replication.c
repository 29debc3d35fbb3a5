/*
 * tests/shard/it_replication.c -- replication with real processes (static
 * membership: shard/REPLICATION.md, "What is built"): one primary and two
 * backups of group g1 on loopback.
 *
 *   kill9_primary      writers store and delete under a load; kill -9 of
 *                      the primary; then every acknowledged write is on
 *                      BOTH backups (read directly) with its version and
 *                      data, and no acknowledged delete is undone.
 *   stopped_backup     SIGSTOP of one backup: a write is not acknowledged
 *                      (it times out) rather than answered without it;
 *                      SIGCONT: writes flow again and reach both backups.
 *   stale_primary      backups that followed term 2 refuse a primary of
 *                      term 1: its write is answered with an error, never OK,
 *                      and lands on no backup.
 *   empty_backup       a primary restarted with a new, empty backup: the
 *                      backup gets the primary's snapshot (deletes included)
 *                      and the stream after it before a write is answered.
 *   former_primary     a failover by hand (static membership): with both
 *                      backups away the primary makes a write durable
 *                      locally, unacknowledged, and dies; a backup leads
 *                      term 2 and the former primary rejoins as a backup:
 *                      its diverged copy is repaired, the write is nowhere.
 *   restarted_primary  a primary restarted with a write durable only on
 *                      itself: both backups get it (probe, gap, catch-up)
 *                      without any new write.
 *   primary_behind     a primary restarted behind its backups in its own
 *                      term (a machine crash lost groups it had shipped):
 *                      it holds the writes instead of writing those indexes
 *                      again.
 *   backup_role        a backup refuses client writes (UNAVAILABLE with
 *                      Response.not_applied on the wire) and serves reads.
 * (ApplyRecords: a primary takes it through the stream -- without the
 * pending ring it was sent for, WRONG_SHARD -- and a backup refuses it;
 * migration into groups end to end: tests/controlplane/it_groups_migrate.c).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"
#include "it_writers.h"

#define WRITERS 4

typedef struct group {
    tu_proc *b[2], *p;
    char baddr[2][64], paddr[64];
} group;

static tu_proc *
start_backup(void)
{
    static const char *const extra[] = {"--replica-role=backup", "--replica-group=g1", NULL};
    return it_start_shard(NULL, extra);
}

/* A primary on data_dir (NULL: a fresh one) shipping to backups a and b. */
static tu_proc *
start_primary_on(const char *data_dir, const char *a, const char *b, const char *term,
                 const char *timeout)
{
    char replicas[160], t[40], to[48];
    const char *extra[] = {"--replica-role=primary",
                           "--replica-group=g1",
                           replicas,
                           t,
                           to,
                           "--request-timeout=3s",
                           NULL};

    snprintf(replicas, sizeof(replicas), "--replicas=%s,%s", a, b);
    snprintf(t, sizeof(t), "--replica-term=%s", term);
    snprintf(to, sizeof(to), "--replica-timeout=%s", timeout);
    return it_start_shard(data_dir, extra);
}

static tu_proc *
start_primary(const group *g, const char *term, const char *timeout)
{
    return start_primary_on(NULL, g->baddr[0], g->baddr[1], term, timeout);
}

static void
group_start(group *g, const char *term)
{
    for (int i = 0; i < 2; i++) {
        g->b[i] = start_backup();
        snprintf(g->baddr[i], sizeof(g->baddr[i]), "%s", it_addr(g->b[i]));
    }
    g->p = start_primary(g, term, "500ms");
    snprintf(g->paddr, sizeof(g->paddr), "%s", it_addr(g->p));
}

static void
group_stop(group *g)
{
    if (g->p != NULL) {
        tu_proc_stop(g->p);
        tu_proc_free(g->p);
    }
    for (int i = 0; i < 2; i++) {
        tu_proc_stop(g->b[i]);
        tu_proc_free(g->b[i]);
    }
}

/* ---- kill -9 of the primary under a load ---- */

/* Every acknowledged write of the writers is on the replica at addr, as acknowledged. */
static int
check_replica(const char *addr, it_writer *w)
{
    omc_client *c = NULL;
    om_buf data = OM_BUF_INIT;
    char key[32], msg[128];
    int checked = 0;

    ck_assert_int_eq(omc_connect(addr, 5000, &c, msg, sizeof(msg)), OM_OK);
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < IT_WRITER_KEYS; k++) {
            omc_info info = {0};
            om_status st;

            it_writer_key(i, k, key, sizeof(key));
            st = omc_retrieve(c, "repl", key, &info, &data);
            checked +=
                it_wkey_check(&w[i].keys[k], key, addr, st, info.version, om_buf_slice(&data));
            if (st == OM_OK)
                omc_info_free(&info);
        }
    om_buf_free(&data);
    omc_close(c);
    return checked;
}

START_TEST(kill9_primary_loses_nothing_acknowledged)
{
    static it_writer w[WRITERS];
    pthread_t th[WRITERS];
    atomic_bool stop = false;
    group g;
    int total;

    group_start(&g, "1");
    /* the writers stop at their first failure: the primary died */
    it_writers_start(w, th, WRITERS,
                     &(it_writer){.addrs = {g.paddr},
                                  .naddrs = 1,
                                  .bucket = "repl",
                                  .connect_ms = 5000,
                                  .timeout_ms = 10000,
                                  .stop_on_error = true,
                                  .stop = &stop},
                     tu_seed("kill9_primary_loses_nothing_acknowledged"));
    it_writers_wait_acked(w, WRITERS, 400, 30000);
    tu_proc_kill9(g.p); /* in the middle of the load */
    tu_proc_free(g.p);
    g.p = NULL;
    it_writers_join(w, th, WRITERS);
    total = it_writers_acked(w, WRITERS);
    ck_assert_int_gt(total, 0);
    int c0 = check_replica(g.baddr[0], w), c1 = check_replica(g.baddr[1], w);
    ck_assert_int_eq(c0, c1);
    printf("kill -9 of the primary after %d acknowledged writes: all %d keys as acknowledged on "
           "both backups\n",
           total, c0);
    group_stop(&g);
}
END_TEST

/* ---- a stopped backup holds the writes ---- */

START_TEST(stopped_backup_holds_writes)
{
    group g;
    omc_client *c = NULL;
    omc_info info;
    char msg[128];
    om_status st = OM_E_UNAVAILABLE;
    uint64_t deadline;

    group_start(&g, "1");
    {
        /* ApplyRecords: the primary takes it (here refused only for the pending ring it lacks),
         * a backup refuses it as a backup */
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__ApplyRecordsRequest ar = OBJMETA__APPLY_RECORDS_REQUEST__INIT;
        Objmeta__Response *resp = NULL;
        rpc_sync_client *sc = NULL;
        const char *to[2] = {g.paddr, g.baddr[0]};
        om_status want[2] = {OM_E_WRONG_SHARD, OM_E_UNAVAILABLE};

        req.body_case = OBJMETA__REQUEST__BODY_APPLY_RECORDS;
        req.apply_records = &ar;
        req.ring_epoch = 2;
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(rpc_sync_client_open(to[i], 5000, &sc), OM_OK);
            ck_assert_int_eq(rpc_sync_client_call(sc, &req, 5000, &resp), OM_OK);
            ck_assert_int_eq(rpc_response_status(resp), want[i]);
            rpc_response_free(resp);
            rpc_sync_client_close(sc);
        }
    }
    c = it_client(g.p);
    ck_assert_int_eq(omc_store(c, "repl", "before", om_slice_from_str("1"), NULL, NULL), OM_OK);
    ck_assert_int_eq(kill(tu_proc_pid(g.b[1]), SIGSTOP), 0);
    omc_set_timeout(c, 2500);
    st = omc_store(c, "repl", "held", om_slice_from_str("2"), NULL, NULL);
    ck_assert_msg(st != OM_OK, "a write was acknowledged while a backup was stopped");
    printf("with a backup stopped the write was answered %s (%s)\n", om_status_str(st),
           omc_last_message(c));
    omc_close(c);
    ck_assert_int_eq(kill(tu_proc_pid(g.b[1]), SIGCONT), 0);
    /* the held write goes through once the backup answers; new writes flow again */
    deadline = tu_now_ms() + 20000;
    ck_assert_int_eq(omc_connect(g.paddr, 5000, &c, msg, sizeof(msg)), OM_OK);
    omc_set_timeout(c, 5000);
    do {
        st = omc_store(c, "repl", "after", om_slice_from_str("3"), NULL, &info);
    } while (st != OM_OK && tu_now_ms() < deadline);
    ck_assert_msg(st == OM_OK, "writes do not flow after SIGCONT: %s", omc_last_message(c));
    for (int i = 0; i < 2; i++) {
        omc_client *b = it_client(g.b[i]);
        omc_info bi;

        ck_assert_int_eq(omc_head(b, "repl", "after", &bi), OM_OK);
        ck_assert_uint_eq(bi.version, info.version);
        omc_info_free(&bi);
        /* the held write was made durable on the primary, so it was shipped on resume */
        ck_assert_int_eq(omc_head(b, "repl", "held", &bi), OM_OK);
        omc_info_free(&bi);
        omc_close(b);
    }
    omc_info_free(&info);
    omc_close(c);
    group_stop(&g);
}
END_TEST

/* ---- an older term is refused ---- */

START_TEST(stale_primary_is_refused)
{
    group g;
    omc_client *c;
    om_status st;

    group_start(&g, "2");
    c = it_client(g.p);
    ck_assert_int_eq(omc_store(c, "repl", "t2", om_slice_from_str("2"), NULL, NULL), OM_OK);
    omc_close(c);
    tu_proc_stop(g.p);
    tu_proc_free(g.p);
    /* a primary of term 1 (a fresh disk): the backups are in term 2 */
    g.p = start_primary(&g, "1", "500ms");
    c = it_client(g.p);
    omc_set_timeout(c, 10000);
    st = omc_store(c, "repl", "t1", om_slice_from_str("1"), NULL, NULL);
    ck_assert_msg(st != OM_OK, "a primary of an older term had a write acknowledged");
    /* and it stays refused: the error is sticky, and /metrics says so */
    ck_assert_int_ne(omc_store(c, "repl", "t1b", om_slice_from_str("1"), NULL, NULL), OM_OK);
    {
        char *body = NULL;

        ck_assert_int_eq(it_http_get(tu_proc_port(g.p, "http"), "/metrics", &body), 200);
        ck_assert_ptr_nonnull(strstr(body, "objmeta_replication_failed 1"));
        free(body);
    }
    omc_close(c);
    for (int i = 0; i < 2; i++) {
        omc_client *b = it_client(g.b[i]);
        omc_info bi;

        ck_assert_int_eq(omc_head(b, "repl", "t1", &bi), OM_E_NOTFOUND);
        ck_assert_int_eq(omc_head(b, "repl", "t2", &bi), OM_OK);
        omc_info_free(&bi);
        omc_close(b);
    }
    group_stop(&g);
}
END_TEST

/* ---- an empty backup catches up ---- */

START_TEST(empty_backup_catches_up)
{
    uint64_t seed = tu_seed("empty_backup_catches_up"), rs = seed | 1;
    static uint64_t ver[300];
    static bool gone[300];
    char key[32], val[48], dir[512], b3addr[64];
    group g;
    omc_client *c;
    omc_info info;
    tu_proc *b3;
    int ndel = 0;

    group_start(&g, "1");
    c = it_client(g.p);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        snprintf(val, sizeof(val), "v%llu", (unsigned long long)tu_rand(&rs));
        ck_assert_int_eq(omc_store(c, "repl", key, om_slice_from_str(val), NULL, &info), OM_OK);
        ver[i] = info.version;
        omc_info_free(&info);
    }
    for (int i = 0; i < 300; i += 7) {
        snprintf(key, sizeof(key), "k%03d", i);
        ck_assert_int_eq(omc_delete(c, "repl", key, NULL, &ver[i]), OM_OK);
        gone[i] = true;
        ndel++;
    }
    omc_close(c);
    /* the primary restarts with a new, empty backup in place of the second */
    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(g.p));
    tu_proc_stop(g.p);
    tu_proc_free(g.p);
    b3 = start_backup();
    snprintf(b3addr, sizeof(b3addr), "%s", it_addr(b3));
    g.p = start_primary_on(dir, g.baddr[0], b3addr, "1", "500ms");
    c = it_client(g.p);
    omc_set_timeout(c, 30000);
    /* the write waits for the catch-up (b3 lacks every group the primary no longer keeps) */
    ck_assert_msg(omc_store(c, "repl", "after", om_slice_from_str("x"), NULL, &info) == OM_OK, "%s",
                  omc_last_message(c));
    omc_info_free(&info);
    omc_close(c);
    c = it_client(b3);
    for (int i = 0; i < 300; i++) {
        omc_info bi;
        om_status st;

        snprintf(key, sizeof(key), "k%03d", i);
        st = omc_head(c, "repl", key, &bi);
        if (gone[i]) {
            ck_assert_msg(st == OM_E_NOTFOUND, "%s: delete undone on the new backup", key);
            continue;
        }
        ck_assert_msg(st == OM_OK, "%s: missing on the new backup", key);
        ck_assert_uint_eq(bi.version, ver[i]);
        omc_info_free(&bi);
    }
    ck_assert_int_eq(omc_head(c, "repl", "after", &info), OM_OK);
    omc_info_free(&info);
    omc_close(c);
    {
        char *body = NULL, want[160];

        ck_assert_int_eq(it_http_get(tu_proc_port(g.p, "http"), "/metrics", &body), 200);
        ck_assert_ptr_nonnull(strstr(body, "objmeta_replication_role{role=\"primary\"} 1"));
        snprintf(want, sizeof(want), "objmeta_replication_backup_catching_up{backup=\"%s\"} 0",
                 b3addr);
        ck_assert_msg(strstr(body, want) != NULL, "no %s in\n%s", want, body);
        ck_assert_ptr_nonnull(strstr(body, "objmeta_replication_failed 0"));
        free(body);
        ck_assert_int_eq(it_http_get(tu_proc_port(b3, "http"), "/metrics", &body), 200);
        ck_assert_ptr_nonnull(strstr(body, "objmeta_replication_role{role=\"backup\"} 1"));
        free(body);
    }
    printf("an empty backup caught up 300 keys (%d deleted) from the primary's snapshot\n", ndel);
    tu_proc_stop(b3);
    tu_proc_free(b3);
    group_stop(&g);
}
END_TEST

/* ---- a manual failover: the former primary's unacknowledged write is repaired away ---- */

static tu_proc *
restart_backup(const char *dir)
{
    static const char *const extra[] = {"--replica-role=backup", "--replica-group=g1", NULL};
    return it_start_shard(dir, extra);
}

START_TEST(former_primary_is_repaired)
{
    char key[32], pdir[512], bdir[2][512], addr[3][64];
    static uint64_t ver[100];
    group g;
    omc_client *c;
    omc_info info;
    tu_proc *old;

    group_start(&g, "1");
    c = it_client(g.p);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        ck_assert_int_eq(omc_store(c, "repl", key, om_slice_from_str("v"), NULL, &info), OM_OK);
        ver[i] = info.version;
        omc_info_free(&info);
    }
    /* both backups away: the primary makes "ghost" durable locally, never acknowledged */
    for (int i = 0; i < 2; i++) {
        snprintf(bdir[i], sizeof(bdir[i]), "%s", tu_proc_data_dir(g.b[i]));
        tu_proc_stop(g.b[i]);
        tu_proc_free(g.b[i]);
    }
    omc_set_timeout(c, 1500);
    ck_assert_int_ne(omc_store(c, "repl", "ghost", om_slice_from_str("x"), NULL, NULL), OM_OK);
    omc_close(c);
    snprintf(pdir, sizeof(pdir), "%s", tu_proc_data_dir(g.p));
    tu_proc_kill9(g.p);
    tu_proc_free(g.p);

    /* failover by hand: backup 0 leads term 2; backup 1 and the former primary follow */
    g.b[1] = restart_backup(bdir[1]);
    old = restart_backup(pdir);
    snprintf(addr[1], sizeof(addr[1]), "%s", it_addr(g.b[1]));
    snprintf(addr[2], sizeof(addr[2]), "%s", it_addr(old));
    g.p = start_primary_on(bdir[0], addr[1], addr[2], "2", "500ms");
    g.b[0] = old; /* stopped with the group */
    c = it_client(g.p);
    omc_set_timeout(c, 30000);
    ck_assert_msg(omc_store(c, "repl", "after", om_slice_from_str("y"), NULL, &info) == OM_OK, "%s",
                  omc_last_message(c));
    omc_info_free(&info);
    ck_assert_int_eq(omc_head(c, "repl", "ghost", &info), OM_E_NOTFOUND);
    omc_close(c);
    for (int b = 1; b < 3; b++) {
        c = it_client(b == 1 ? g.b[1] : old);
        ck_assert_msg(omc_head(c, "repl", "ghost", &info) == OM_E_NOTFOUND,
                      "the never-acknowledged write survived on %s", addr[b]);
        ck_assert_int_eq(omc_head(c, "repl", "after", &info), OM_OK);
        omc_info_free(&info);
        for (int i = 0; i < 100; i++) {
            snprintf(key, sizeof(key), "k%03d", i);
            ck_assert_int_eq(omc_head(c, "repl", key, &info), OM_OK);
            ck_assert_uint_eq(info.version, ver[i]);
            omc_info_free(&info);
        }
        omc_close(c);
    }
    group_stop(&g);
}
END_TEST

/*
 * ---- a restarted primary brings its backups up to what it holds ----
 * (It also waits for that before it listens -- await_backups -- but the
 * catch-up is quick enough here that this test would not see the order.)
 */

START_TEST(restarted_primary_brings_backups_up)
{
    char pdir[512], bdir[2][512], addr[2][64];
    group g;
    omc_client *c;
    omc_info info;

    group_start(&g, "1");
    c = it_client(g.p);
    ck_assert_int_eq(omc_store(c, "repl", "k", om_slice_from_str("v"), NULL, NULL), OM_OK);
    /* both backups away: "late" is durable on the primary only, unacknowledged */
    for (int i = 0; i < 2; i++) {
        snprintf(bdir[i], sizeof(bdir[i]), "%s", tu_proc_data_dir(g.b[i]));
        tu_proc_stop(g.b[i]);
        tu_proc_free(g.b[i]);
    }
    omc_set_timeout(c, 1500);
    ck_assert_int_ne(omc_store(c, "repl", "late", om_slice_from_str("x"), NULL, NULL), OM_OK);
    omc_close(c);
    snprintf(pdir, sizeof(pdir), "%s", tu_proc_data_dir(g.p));
    tu_proc_kill9(g.p);
    tu_proc_free(g.p);
    for (int i = 0; i < 2; i++) {
        g.b[i] = restart_backup(bdir[i]);
        snprintf(addr[i], sizeof(addr[i]), "%s", it_addr(g.b[i]));
    }
    /* the primary comes back; no write follows, yet both backups get "late" */
    g.p = start_primary_on(pdir, addr[0], addr[1], "1", "500ms");
    for (int i = 0; i < 2; i++) {
        c = it_client(g.b[i]);
        ck_assert_msg(omc_head(c, "repl", "late", &info) == OM_OK,
                      "the primary serves a write backup %d lacks", i);
        omc_info_free(&info);
        omc_close(c);
    }
    c = it_client(g.p);
    ck_assert_int_eq(omc_head(c, "repl", "late", &info), OM_OK);
    omc_info_free(&info);
    omc_close(c);
    group_stop(&g);
}
END_TEST

/*
 * ---- a primary behind its backups in its own term holds ----
 * What a machine crash can leave since groups ship before the primary's own
 * sync (REPLICATION.md, "Shipping before the primary's sync"): backups
 * holding an index of the term that the restarted primary lost. Simulated by
 * restarting the primary of term 1 on an empty disk: it must not write index
 * 1 again and have it acknowledged over the backups' different index 1.
 */

START_TEST(primary_behind_its_backups_holds)
{
    group g;
    omc_client *c;
    omc_info info;
    om_status st;

    group_start(&g, "1");
    c = it_client(g.p);
    ck_assert_int_eq(omc_store(c, "repl", "k", om_slice_from_str("v"), NULL, NULL), OM_OK);
    omc_close(c);
    tu_proc_kill9(g.p);
    tu_proc_free(g.p);
    g.p = start_primary(&g, "1", "500ms"); /* index 0, the backups at 1 */
    c = it_client(g.p);
    omc_set_timeout(c, 1500);
    st = omc_store(c, "repl", "again", om_slice_from_str("x"), NULL, NULL);
    ck_assert_msg(st != OM_OK, "a primary behind its backups had a write acknowledged");
    omc_close(c);
    for (int i = 0; i < 2; i++) {
        c = it_client(g.b[i]);
        ck_assert_int_eq(omc_head(c, "repl", "k", &info), OM_OK);
        omc_info_free(&info);
        ck_assert_int_eq(omc_head(c, "repl", "again", &info), OM_E_NOTFOUND);
        omc_close(c);
    }
    group_stop(&g);
}
END_TEST

START_TEST(backup_refuses_client_writes)
{
    tu_proc *b = start_backup();
    omc_client *c = it_client(b);
    bool ex = true;

    ck_assert_int_eq(omc_store(c, "repl", "k", om_slice_from_str("x"), NULL, NULL),
                     OM_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "backup"));
    {
        /* on the wire: refused before acting (Response.not_applied: routers may resend it) */
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
        Objmeta__Response *resp = NULL;
        rpc_sync_client *sc = NULL;

        sr.bucket = "repl";
        sr.key = "k";
        req.body_case = OBJMETA__REQUEST__BODY_STORE;
        req.store = &sr;
        ck_assert_int_eq(rpc_sync_client_open(it_addr(b), 5000, &sc), OM_OK);
        ck_assert_int_eq(rpc_sync_client_call(sc, &req, 5000, &resp), OM_OK);
        ck_assert_int_eq(rpc_response_status(resp), OM_E_UNAVAILABLE);
        ck_assert_msg(resp->not_applied, "a backup's refusal lacks not_applied");
        rpc_response_free(resp);
        rpc_sync_client_close(sc);
    }
    ck_assert_int_eq(omc_delete(c, "repl", "k", NULL, NULL), OM_E_UNAVAILABLE);
    ck_assert_int_eq(omc_exists(c, "repl", "k", &ex), OM_OK);
    ck_assert(!ex);
    omc_close(c);
    tu_proc_stop(b);
    tu_proc_free(b);
}
END_TEST

static Suite *
replication_suite(void)
{
    Suite *s = suite_create("it-replication");
    TCase *tc = tcase_create("static");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, kill9_primary_loses_nothing_acknowledged);
    tcase_add_test(tc, stopped_backup_holds_writes);
    tcase_add_test(tc, stale_primary_is_refused);
    tcase_add_test(tc, empty_backup_catches_up);
    tcase_add_test(tc, former_primary_is_repaired);
    tcase_add_test(tc, restarted_primary_brings_backups_up);
    tcase_add_test(tc, primary_behind_its_backups_holds);
    tcase_add_test(tc, backup_refuses_client_writes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(replication_suite());
}
