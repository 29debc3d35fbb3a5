/*
 * tests/controlplane/it_repl_rolling.c -- a rolling restart of every
 * process of the README's replicated cluster (scripts/cluster.sh's
 * topology: a 3-member etcd, 3 coordinators, 3 replica groups x 3
 * replicas; issue 18) under the rebalance suite's load through all three
 * coordinators (tests/harness/tu_load.c: two writers, a deleter, a reader
 * of stable keys and a paginated lister).
 *
 *   rolling_restart   one process at a time, with SIGTERM as an upgrade
 *                     would: each etcd member (back on its ports and
 *                     data), each coordinator (back on its port), then
 *                     each replica (back on its address; the next waits
 *                     until its group's in-sync set is whole again). The
 *                     clients see only retryable errors (UNAVAILABLE,
 *                     TIMEOUT, BUSY) and, after every stop, answers again
 *                     within the failover window (lease TTL + 3 s). At
 *                     the end: every acknowledged write reads back with
 *                     its value or a later one, no acknowledged delete is
 *                     undone, every complete listing held every stable key
 *                     once and in order, and `objmeta admin verify` finds
 *                     each group's replicas identical.
 *
 * Skipped (77) when etcd is not installed. The seed is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "it_util.h"
#include "tu.h"
#include "tu_etcd.h"
#include "tu_load.h"
#include "util/clock.h"

#define NG 3  /* replica groups */
#define NR 3  /* replicas per group */
#define NCO 3 /* coordinators */
#define PREFIX "/objmeta/roll"
#define BUCKET "roll-bucket"
#define TTL_MS 2000
#define WINDOW_MS (TTL_MS + 3000)

typedef struct cluster {
    tu_etcd *etcd;
    tu_proc *rep[NG][NR];
    char rdir[NG][NR][256];
    int rport[NG][NR], rhttp[NG][NR];
    tu_proc *co[NCO];
    char caddr[NCO][64];
    char coords[NCO * 64]; /* "a,b,c": the load's clients fail over between them */
    char shards_arg[400];
} cluster;

static void
replica_start(cluster *cl, int g, int r)
{
    char listen[64], http[64], etcd[300], id[32], grp[40], rid[32];
    const char *extra[] = {"--sync-mode=always",
                           listen,
                           http,
                           etcd,
                           "--etcd-prefix=" PREFIX,
                           grp,
                           id,
                           rid,
                           "--replica-lease-ttl=2s",
                           "--replica-timeout=500ms",
                           NULL};
    tu_proc_opts o = {.data_dir = cl->rdir[g][r][0] ? cl->rdir[g][r] : NULL,
                      .extra = extra,
                      .start_timeout_ms = 60000};

    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", cl->rport[g][r]);
    snprintf(http, sizeof(http), "--http-listen=127.0.0.1:%d", cl->rhttp[g][r]);
    snprintf(etcd, sizeof(etcd), "--etcd=%s", tu_etcd_endpoints(cl->etcd));
    snprintf(grp, sizeof(grp), "--replica-group=g%d", g + 1);
    snprintf(id, sizeof(id), "--id=g%d", g + 1); /* a replica's id is its group's */
    snprintf(rid, sizeof(rid), "--replica-id=r%d", r);
    cl->rep[g][r] = tu_proc_start("$OBJMETA_SHARD", &o);
    snprintf(cl->rdir[g][r], sizeof(cl->rdir[g][r]), "%s", tu_proc_data_dir(cl->rep[g][r]));
}

/* Start coordinator i (on its former port when it ran before). */
static void
coord_start(cluster *cl, int i)
{
    char etcd[300], listen[80];
    const char *extra[] = {cl->shards_arg,
                           etcd,
                           "--etcd-prefix=" PREFIX,
                           "--lease-ttl=2s",
                           "--etcd-timeout=1s",
                           "--health-interval=100ms",
                           listen,
                           NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(etcd, sizeof(etcd), "--etcd=%s", tu_etcd_endpoints(cl->etcd));
    /* a port of tu_free_port's (its HTTP port + 1000 too): free again at a restart */
    if (cl->caddr[i][0] == '\0')
        snprintf(cl->caddr[i], sizeof(cl->caddr[i]), "127.0.0.1:%d", tu_free_port());
    snprintf(listen, sizeof(listen), "--listen=%s", cl->caddr[i]);
    cl->co[i] = tu_proc_start("$OBJMETA_COORD", &o);
}

/* Put group g's first configuration (what `admin add-group` writes): term 1, r0 primary. */
static void
put_group_config(const cluster *cl, int g)
{
    char ep[300], key[80], cfg[1024];
    const char *argv[] = {"etcdctl", ep, "put", key, cfg, NULL};
    char *out = NULL, *err = NULL;
    size_t off;
    int rc;

    snprintf(ep, sizeof(ep), "--endpoints=%s", tu_etcd_endpoints(cl->etcd));
    snprintf(key, sizeof(key), PREFIX "/groups/g%d/config", g + 1);
    off = (size_t)snprintf(
        cfg, sizeof(cfg), "{\"group\":\"g%d\",\"term\":1,\"primary\":\"r0\",\"replicas\":[", g + 1);
    for (int r = 0; r < NR; r++)
        off += (size_t)snprintf(cfg + off, sizeof(cfg) - off,
                                "%s{\"id\":\"r%d\",\"addr\":\"127.0.0.1:%d\"}", r ? "," : "", r,
                                cl->rport[g][r]);
    snprintf(cfg + off, sizeof(cfg) - off, "],\"in_sync\":[\"r0\",\"r1\",\"r2\"]}");
    rc = tu_run_cmd("/usr/bin/etcdctl", argv, 15000, &out, &err);
    ck_assert_msg(rc == 0, "etcdctl put %s: %d %s", key, rc, err ? err : "");
    free(out);
    free(err);
}

/* True when some replica of group g is the serving primary with the whole set in sync. */
static bool
group_whole(const cluster *cl, int g)
{
    for (int r = 0; r < NR; r++) {
        char *body = NULL;
        bool whole = cl->rep[g][r] != NULL &&
                     it_http_get(cl->rhttp[g][r], "/metrics", &body) == 200 &&
                     strstr(body, "objmeta_replication_role{role=\"primary\"} 1\n") != NULL &&
                     strstr(body, "objmeta_replication_serving 1\n") != NULL &&
                     strstr(body, "objmeta_replication_in_sync_size 3\n") != NULL;

        free(body);
        if (whole)
            return true;
    }
    return false;
}

static void
wait_group_whole(const cluster *cl, int g, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;

    while (!group_whole(cl, g)) {
        ck_assert_msg(tu_now_ms() < deadline, "group g%d has no primary with 3 in sync after %d ms",
                      g + 1, timeout_ms);
        om_clock_sleep_ms(50); /* polling */
    }
}

/* The load's acknowledged requests: `more` beyond now within timeout_ms (returns the time). */
static uint64_t
wait_answers(tu_load *L, int more, int timeout_ms, const char *after)
{
    uint64_t t0 = tu_now_ms(), deadline = t0 + (uint64_t)timeout_ms;
    uint64_t target = tu_load_ops(L) - tu_load_errors(L) + (uint64_t)more;

    while (tu_load_ops(L) - tu_load_errors(L) < target) {
        ck_assert_msg(tu_now_ms() < deadline, "no answers within %d ms after %s", timeout_ms,
                      after);
        om_clock_sleep_ms(5); /* polling */
    }
    return tu_now_ms() - t0;
}

/* `objmeta admin verify --group gN` through the coordinators: identical. */
static void
verify_groups(const cluster *cl)
{
    for (int g = 0; g < NG; g++) {
        char gid[8];

        snprintf(gid, sizeof(gid), "g%d", g + 1);
        it_verify_identical(cl->coords, "--group", gid);
    }
    printf("verify: the replicas of every group are identical\n");
}

START_TEST(rolling_restart)
{
    static cluster cl;
    uint64_t seed = tu_seed("rolling_restart"), worst = 0;
    tu_load *L;
    size_t off;
    char what[64];

    memset(&cl, 0, sizeof(cl));
    cl.etcd = tu_etcd_start(3);
    for (int g = 0; g < NG; g++)
        for (int r = 0; r < NR; r++) {
            cl.rport[g][r] = tu_free_port();
            cl.rhttp[g][r] = tu_free_port();
        }
    off = (size_t)snprintf(cl.shards_arg, sizeof(cl.shards_arg), "--shards=");
    for (int g = 0; g < NG; g++) {
        put_group_config(&cl, g);
        for (int r = 0; r < NR; r++)
            replica_start(&cl, g, r);
        off += (size_t)snprintf(cl.shards_arg + off, sizeof(cl.shards_arg) - off,
                                "%sg%d=127.0.0.1:%d", g ? "," : "", g + 1, cl.rport[g][0]);
    }
    for (int g = 0; g < NG; g++)
        wait_group_whole(&cl, g, 20000);
    for (int i = 0; i < NCO; i++)
        coord_start(&cl, i);
    snprintf(cl.coords, sizeof(cl.coords), "%s,%s,%s", cl.caddr[0], cl.caddr[1], cl.caddr[2]);

    L = tu_load_new(cl.coords, BUCKET, 150, 150, seed, true);
    tu_load_preload(L);
    tu_load_start(L);
    wait_answers(L, 200, 20000, "the start");
    for (int step = 0; step < 3 + NCO + NG * NR; step++) {
        uint64_t took;

        if (step < 3) {
            snprintf(what, sizeof(what), "etcd member %d", step);
            tu_etcd_stop_member(cl.etcd, step);
            took = wait_answers(L, 20, WINDOW_MS, what);
            tu_etcd_restart_member(cl.etcd, step);
        } else if (step < 3 + NCO) {
            int i = step - 3;

            snprintf(what, sizeof(what), "coordinator %d", i);
            tu_proc_stop(cl.co[i]);
            tu_proc_free(cl.co[i]);
            took = wait_answers(L, 20, WINDOW_MS, what);
            coord_start(&cl, i);
        } else {
            int g = (step - 3 - NCO) / NR, r = (step - 3 - NCO) % NR;

            snprintf(what, sizeof(what), "replica g%d/r%d", g + 1, r);
            tu_proc_stop(cl.rep[g][r]);
            tu_proc_free(cl.rep[g][r]);
            cl.rep[g][r] = NULL;
            took = wait_answers(L, 20, WINDOW_MS, what);
            replica_start(&cl, g, r);
            wait_group_whole(&cl, g, 30000); /* in sync again before the next goes */
        }
        worst = took > worst ? took : worst;
        printf("%s restarted: answers again after %llu ms\n", what, (unsigned long long)took);
        wait_answers(L, 50, 20000, what);
    }
    tu_load_stop(L); /* fails on a non-retryable error or a listing that broke its promises */
    printf("rolling restart of %d processes: %llu requests, %llu retryable errors, answers again "
           "after %llu ms at worst, the longest request %llu ms, %llu complete listings\n",
           3 + NCO + NG * NR, (unsigned long long)tu_load_ops(L),
           (unsigned long long)tu_load_errors(L), (unsigned long long)worst,
           (unsigned long long)tu_load_max_latency_ms(L), (unsigned long long)tu_load_lists(L));
    /* a request held by a failover is answered (or fails, retryably) within the window */
    ck_assert_msg(tu_load_max_latency_ms(L) <= WINDOW_MS, "a request waited %llu ms > %d ms",
                  (unsigned long long)tu_load_max_latency_ms(L), WINDOW_MS);
    tu_load_check(L);
    verify_groups(&cl);
    tu_load_free(L);
    for (int i = 0; i < NCO; i++) {
        tu_proc_stop(cl.co[i]);
        tu_proc_free(cl.co[i]);
    }
    for (int g = 0; g < NG; g++)
        for (int r = 0; r < NR; r++) {
            tu_proc_stop(cl.rep[g][r]);
            tu_proc_free(cl.rep[g][r]);
        }
    tu_etcd_stop(cl.etcd);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("repl_rolling");
    TCase *tc = tcase_create("rolling");

    if (!tu_etcd_available())
        return 77;
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, rolling_restart);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
