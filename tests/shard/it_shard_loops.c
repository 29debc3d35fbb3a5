/*
 * tests/shard/it_shard_loops.c -- a shard with read loops (shard/loops.h):
 * several network threads on one port, reads answered where they arrive,
 * everything else handed to the main loop.
 *
 *   reads_follow_acked_writes: writer threads store on one connection and
 *     read back on another (the main loop deals connections out in turn, so
 *     14 connections over 3 loops put writer and reader on different loops):
 *     every read, head and exists shows the write just acknowledged, at its
 *     version; reads of other threads' keys never go back in version.
 *     /metrics then counts requests on every loop, and
 *     objmeta_rpc_requests_total sums every loop's.
 *   sigterm_with_requests_in_flight: SIGTERM while threads store and read on
 *     every loop: the shard exits 0, and after a restart every acknowledged
 *     store is there at its version or a later one.
 *   bad_loops_setting_refused: --loops out of bounds is refused at start with
 *     a message naming the setting.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "it_util.h"

#define S(x) om_slice_from_str(x)
#define THREADS 6
#define ROUNDS 150

typedef struct worker {
    char addr[64];
    int id;
    uint64_t seed;
    /* results */
    _Atomic int rounds; /* rounds completed with every check holding */
    _Atomic bool ended; /* the thread stopped (read failure after the join) */
    char failure[256];  /* the first check that failed, or "" */
    bool wrong;         /* ... and it was an answer showing the wrong state (not an error) */
    uint64_t acked;     /* the value last acknowledged (its key: "k<id>") */
    uint64_t acked_version;
    _Atomic bool *stop; /* NULL: run ROUNDS rounds */
} worker;

static long
value_of(const om_buf *b)
{
    char text[32];

    snprintf(text, sizeof(text), "%.*s", (int)b->n, (const char *)b->p);
    return strtol(text, NULL, 10);
}

/* One round: store k<id> = round on w, read it back on r (retrieve, head, exists). */
static bool
round_checks(worker *a, omc_client *w, omc_client *r, uint64_t round, uint64_t *seen)
{
    char key[16], val[32];
    omc_info info, got;
    om_buf data = OM_BUF_INIT;
    bool exists = false;
    om_status st;

    snprintf(key, sizeof(key), "k%d", a->id);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)round);
    st = omc_store(w, "loops", key, S(val), NULL, &info);
    if (st != OM_OK) {
        snprintf(a->failure, sizeof(a->failure), "store %s: %s", key, om_status_str(st));
        return false;
    }
    a->acked = round;
    a->acked_version = info.version;
    st = omc_retrieve(r, "loops", key, &got, &data);
    a->wrong = st == OM_OK && ((uint64_t)value_of(&data) != round || got.version != info.version);
    if (st != OM_OK || a->wrong)
        snprintf(a->failure, sizeof(a->failure),
                 "retrieve %s after the store of %s (version %llu) acked: %s, value %ld version "
                 "%llu",
                 key, val, (unsigned long long)info.version, om_status_str(st),
                 st == OM_OK ? value_of(&data) : -1,
                 st == OM_OK ? (unsigned long long)got.version : 0ull);
    if (st == OM_OK)
        omc_info_free(&got);
    om_buf_free(&data);
    if (a->failure[0] == '\0' && (st = omc_head(r, "loops", key, &got)) == OM_OK) {
        a->wrong = got.version != info.version;
        if (a->wrong)
            snprintf(a->failure, sizeof(a->failure), "head %s: version %llu, acked %llu", key,
                     (unsigned long long)got.version, (unsigned long long)info.version);
        omc_info_free(&got);
    } else if (a->failure[0] == '\0') {
        snprintf(a->failure, sizeof(a->failure), "head %s: %s", key, om_status_str(st));
    }
    if (a->failure[0] == '\0' && (st = omc_exists(r, "loops", key, &exists)) != OM_OK)
        snprintf(a->failure, sizeof(a->failure), "exists %s: %s", key, om_status_str(st));
    else if (a->failure[0] == '\0' && !exists)
        a->wrong = true,
        snprintf(a->failure, sizeof(a->failure), "exists %s: false after its store", key);
    omc_info_free(&info);
    if (a->failure[0] != '\0')
        return false;
    /* another thread's key, read on this reader: never older than before */
    int other = (int)(tu_rand(&a->seed) % THREADS);
    snprintf(key, sizeof(key), "k%d", other);
    st = omc_retrieve(r, "loops", key, &got, &data);
    if (st == OM_OK) {
        a->wrong = got.version < seen[other];
        if (a->wrong)
            snprintf(a->failure, sizeof(a->failure), "retrieve %s: version %llu after %llu", key,
                     (unsigned long long)got.version, (unsigned long long)seen[other]);
        seen[other] = got.version;
        omc_info_free(&got);
    } else if (st != OM_E_NOTFOUND) {
        snprintf(a->failure, sizeof(a->failure), "retrieve %s: %s", key, om_status_str(st));
    }
    om_buf_free(&data);
    return a->failure[0] == '\0';
}

static void *
worker_main(void *arg)
{
    worker *a = arg;
    omc_client *w = NULL, *r = NULL;
    uint64_t seen[THREADS] = {0};
    char msg[128];

    if (omc_connect(a->addr, 5000, &w, msg, sizeof(msg)) != OM_OK ||
        omc_connect(a->addr, 5000, &r, msg, sizeof(msg)) != OM_OK) {
        snprintf(a->failure, sizeof(a->failure), "connect: %s", msg);
        goto out;
    }
    for (uint64_t round = 1;; round++) {
        if (a->stop != NULL ? atomic_load(a->stop) : round > ROUNDS)
            break;
        if (!round_checks(a, w, r, round, seen))
            break;
        a->rounds++;
    }
out:
    omc_close(w);
    omc_close(r);
    atomic_store(&a->ended, true);
    return NULL;
}

static void
start_workers(worker *ws, pthread_t *th, const tu_proc *p, uint64_t seed, _Atomic bool *stop)
{
    for (int i = 0; i < THREADS; i++) {
        ws[i] = (worker){.id = i, .seed = seed + (uint64_t)i * 7919u + 1u, .stop = stop};
        snprintf(ws[i].addr, sizeof(ws[i].addr), "%s", it_addr(p));
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &ws[i]), 0);
    }
}

START_TEST(reads_follow_acked_writes)
{
    static const char *const extra[] = {"--loops=3", "--sync-mode=always", NULL};
    tu_proc *p = it_start_shard(NULL, extra);
    uint64_t seed = tu_seed("reads_follow_acked_writes");
    worker ws[THREADS];
    pthread_t th[THREADS];
    omc_client *c = it_client(p); /* a 13th connection, held over the whole test */
    int http = tu_proc_port(p, "http");
    uint64_t deadline;
    char *body = NULL;
    int busy = 0;
    double reqs = 0, total = 0;

    it_check_alive(p);
    start_workers(ws, th, p, seed, NULL);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(ws[i].failure[0] == '\0', "thread %d, round %d: %s", i, ws[i].rounds + 1,
                      ws[i].failure);
        ck_assert_int_eq(ws[i].rounds, ROUNDS);
    }
    /* each loop publishes its counters every 100 ms: poll until they add up */
    deadline = tu_now_ms() + 5000;
    do {
        free(body);
        body = NULL;
        ck_assert_int_eq(it_http_get(http, "/metrics", &body), 200);
        busy = 0;
        reqs = 0;
        for (int loop = 0; loop < 3; loop++) {
            char name[64];
            double v;

            snprintf(name, sizeof(name), "objmeta_shard_loop_requests_total{loop=\"%d\"}", loop);
            v = it_metric(body, name);
            ck_assert_msg(v >= 0, "no %s in /metrics:\n%s", name, body);
            busy += v > 0;
            reqs += v;
        }
        total = it_metric(body, "objmeta_rpc_requests_total");
    } while ((busy < 3 || total < THREADS * ROUNDS * 5) && tu_now_ms() < deadline);
    /* connections are dealt out in turn: 14 over 3 loops leave none idle */
    ck_assert_msg(busy == 3, "14 connections, requests on %d of 3 loops:\n%s", busy, body);
    ck_assert_msg(total >= THREADS * ROUNDS * 5 && total == reqs,
                  "objmeta_rpc_requests_total %.0f, per loop %.0f, made at least %d", total, reqs,
                  THREADS * ROUNDS * 5);
    printf("%d threads x %d rounds: every read showed the acknowledged write; requests on %d of 3 "
           "loops\n",
           THREADS, ROUNDS, busy);
    free(body);
    omc_close(c);
    ck_assert_int_eq(tu_proc_stop(p), 0);
    tu_proc_free(p);
}
END_TEST

START_TEST(sigterm_with_requests_in_flight)
{
    static const char *const extra[] = {"--loops=3", "--sync-mode=always", NULL};
    tu_proc *p = it_start_shard(NULL, extra);
    uint64_t seed = tu_seed("sigterm_with_requests_in_flight");
    char dir[512];
    worker ws[THREADS];
    pthread_t th[THREADS];
    _Atomic bool stop = false;
    uint64_t deadline;
    int rounds = 0, status;

    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(p));
    start_workers(ws, th, p, seed, &stop);
    /* every thread under way, then SIGTERM while they go on */
    deadline = tu_now_ms() + 20000;
    for (int done = 0; done < THREADS && tu_now_ms() < deadline;) {
        done = 0;
        for (int i = 0; i < THREADS; i++)
            done += atomic_load(&ws[i].rounds) >= 20 || atomic_load(&ws[i].ended);
    }
    status = tu_proc_stop(p);
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        rounds += ws[i].rounds;
        /* errors are expected once the shard stops; a wrong answer never is */
        ck_assert_msg(!ws[i].wrong, "thread %d: %s", i, ws[i].failure);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    tu_proc_free(p);

    p = it_start_shard(dir, NULL);
    omc_client *c = it_client(p);
    for (int i = 0; i < THREADS; i++) {
        char key[16];
        omc_info info;
        om_buf data = OM_BUF_INIT;

        if (ws[i].acked == 0)
            continue;
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(omc_retrieve(c, "loops", key, &info, &data), OM_OK);
        ck_assert_msg(info.version >= ws[i].acked_version &&
                          (uint64_t)value_of(&data) >= ws[i].acked,
                      "%s: version %llu value %ld after a restart; acknowledged %llu at %llu", key,
                      (unsigned long long)info.version, value_of(&data),
                      (unsigned long long)ws[i].acked, (unsigned long long)ws[i].acked_version);
        omc_info_free(&info);
        om_buf_free(&data);
    }
    printf("SIGTERM after %d rounds on 3 loops: exit 0, every acknowledged store kept\n", rounds);
    omc_close(c);
    ck_assert_int_eq(tu_proc_stop(p), 0);
    tu_proc_free(p);
}
END_TEST

START_TEST(bad_loops_setting_refused)
{
    const char *const argv[] = {"objmeta-shard", "--loops=33", "--data-dir=/nonexistent", NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run_cmd("$OBJMETA_SHARD", argv, 10000, &out, &err);

    ck_assert_msg(rc != 0 && strstr(err, "loops") != NULL, "rc %d, stderr: %s", rc, err);
    free(out);
    free(err);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("shard_loops");
    TCase *tc = tcase_create("loops");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, reads_follow_acked_writes);
    tcase_add_test(tc, sigterm_with_requests_in_flight);
    tcase_add_test(tc, bad_loops_setting_refused);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
