/*
 * tests/shard/it_shard_writer.c -- the real objmeta-shard in both write modes
 * of shard/commit.h: the pipeline (sync-mode=always, the default: writer and
 * sync threads) and, for comparison, the synchronous path (sync-mode=periodic:
 * the loop writes each iteration's group itself). Loop test index _i:
 * 0 = pipeline, 1 = synchronous.
 *
 *   cas_counters_match_acknowledged_increments: several connections run
 *     if-version compare-and-set increments on the same few counters; each
 *     round reads a counter and pipelines several stores conditioned on the
 *     version read (at most one of them can win). At the end each counter
 *     equals the number of increments answered OK, the versions answered OK
 *     for a key are all different and each is newer than the version it
 *     replaced, and the record holds the newest of them.
 *   sigterm_with_writes_in_flight: connections pipeline thousands of stores
 *     and the server gets SIGTERM while they are in flight: it exits 0, and
 *     after a restart every store it answered OK is there with its data.
 *   flood_of_pipelined_stores: 10 connections pipeline 1000 small stores
 *     each, then 4 connections 32 stores of 256 KiB each -- more than the
 *     writer's queue holds (jobs, then bytes), so the loop waits for room
 *     (counted in Stats shard.writer_queue_waits, printed): every store is
 *     answered OK and reads back.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it_util.h"

static const char *const modes[2][4] = {{"--sync-mode=always", "--log-level=warn", NULL, NULL},
                                        {"--sync-mode=periodic", "--log-level=warn", NULL, NULL}};
static const char *const mode_names[2] = {"pipeline", "synchronous"};

/* ---- CAS counters ---- */

#define CAS_CLIENTS 6
#define CAS_KEYS 3
#define CAS_ROUNDS 120
#define CAS_PIPE 8 /* stores per round, all conditioned on the same version */
#define CAS_MAX_ACKS (CAS_ROUNDS * CAS_PIPE)

typedef struct cas_client {
    int port;
    uint64_t rnd;
    /* the versions of the increments answered OK, per key */
    uint64_t acked[CAS_KEYS][CAS_MAX_ACKS];
    int nacked[CAS_KEYS];
    int rounds_won, rounds_lost;
} cas_client;

static Objmeta__Response *
must_recv(int fd)
{
    Objmeta__Response *r = it_recv_response(fd, 30000);

    ck_assert_msg(r != NULL, "no response within 30 s");
    return r;
}

static void *
cas_main(void *arg)
{
    cas_client *cl = arg;
    int fd = it_sock(cl->port);
    uint64_t id = 1;

    for (int round = 0; round < CAS_ROUNDS; round++) {
        int k = (int)(tu_rand(&cl->rnd) % CAS_KEYS);
        char key[16], val[32];
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;
        Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
        Objmeta__Response *resp;
        uint64_t version = 0, count = 0, first_id;
        bool absent, won = false;

        snprintf(key, sizeof(key), "ctr-%d", k);
        rr.bucket = "cas";
        rr.key = key;
        req.id = id++;
        req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        req.retrieve = &rr;
        ck_assert(it_send_request(fd, &req));
        resp = must_recv(fd);
        ck_assert_uint_eq(resp->id, req.id);
        absent = resp->status == OBJMETA__STATUS__NOT_FOUND;
        ck_assert_msg(absent || resp->status == OBJMETA__STATUS__OK, "retrieve: %d %s",
                      resp->status, resp->message);
        if (!absent) {
            char num[32];
            size_t n = resp->retrieve->data.len < sizeof(num) - 1 ? resp->retrieve->data.len
                                                                  : sizeof(num) - 1;
            memcpy(num, resp->retrieve->data.data, n);
            num[n] = 0;
            count = strtoull(num, NULL, 10);
            version = resp->retrieve->info->version;
        }
        objmeta__response__free_unpacked(resp, NULL);

        /* CAS_PIPE increments of the value read, pipelined: at most one can hold */
        snprintf(val, sizeof(val), "%llu", (unsigned long long)(count + 1));
        sr.bucket = "cas";
        sr.key = key;
        sr.data.data = (uint8_t *)val;
        sr.data.len = strlen(val);
        if (absent) {
            sr.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
            sr.if_absent = true;
        } else {
            sr.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
            sr.if_version = version;
        }
        req.body_case = OBJMETA__REQUEST__BODY_STORE;
        req.store = &sr;
        first_id = id;
        for (int p = 0; p < CAS_PIPE; p++) {
            req.id = id++;
            ck_assert(it_send_request(fd, &req));
        }
        for (int p = 0; p < CAS_PIPE; p++) {
            resp = must_recv(fd);
            ck_assert_msg(resp->id >= first_id && resp->id < id, "unexpected response id %llu",
                          (unsigned long long)resp->id);
            if (resp->status == OBJMETA__STATUS__OK) {
                uint64_t v = resp->store->info->version;

                ck_assert_msg(!won, "two increments conditioned on version %llu both succeeded",
                              (unsigned long long)version);
                ck_assert_msg(v > version, "store answered version %llu, not newer than %llu",
                              (unsigned long long)v, (unsigned long long)version);
                won = true;
                cl->acked[k][cl->nacked[k]++] = v;
            } else {
                ck_assert_msg(resp->status == OBJMETA__STATUS__PRECONDITION_FAILED,
                              "store: status %d %s", resp->status, resp->message);
            }
            objmeta__response__free_unpacked(resp, NULL);
        }
        if (won)
            cl->rounds_won++;
        else
            cl->rounds_lost++;
    }
    close(fd);
    return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

START_TEST(cas_counters_match_acknowledged_increments)
{
    uint64_t rnd = tu_seed("cas_counters_match_acknowledged_increments");
    tu_proc *p = it_start_shard(NULL, modes[_i]);
    static cas_client cls[CAS_CLIENTS];
    static uint64_t all[CAS_CLIENTS * CAS_MAX_ACKS];
    pthread_t th[CAS_CLIENTS];
    omc_client *c;
    int won = 0, lost = 0;

    for (int i = 0; i < CAS_CLIENTS; i++) {
        memset(&cls[i], 0, sizeof(cls[i]));
        cls[i].port = tu_proc_port(p, "rpc");
        cls[i].rnd = tu_rand(&rnd);
    }
    for (int i = 0; i < CAS_CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, cas_main, &cls[i]), 0);
    for (int i = 0; i < CAS_CLIENTS; i++)
        pthread_join(th[i], NULL);

    c = it_client(p);
    for (int k = 0; k < CAS_KEYS; k++) {
        char key[16];
        size_t n = 0;
        omc_info info;
        om_buf data = OM_BUF_INIT;

        snprintf(key, sizeof(key), "ctr-%d", k);
        for (int i = 0; i < CAS_CLIENTS; i++) {
            memcpy(all + n, cls[i].acked[k], (size_t)cls[i].nacked[k] * sizeof(uint64_t));
            n += (size_t)cls[i].nacked[k];
        }
        if (n == 0)
            continue; /* never chosen (possible only with very few rounds) */
        qsort(all, n, sizeof(all[0]), cmp_u64);
        for (size_t i = 1; i < n; i++)
            ck_assert_msg(all[i] != all[i - 1], "%s: version %llu answered to two increments", key,
                          (unsigned long long)all[i]);
        ck_assert_msg(omc_retrieve(c, "cas", key, &info, &data) == OM_OK, "%s: %s", key,
                      omc_last_message(c));
        ck_assert_int_eq(om_buf_append_byte(&data, 0), OM_OK);
        ck_assert_msg(strtoull((const char *)data.p, NULL, 10) == n,
                      "%s: counter %s, but %zu increments were acknowledged", key,
                      (const char *)data.p, n);
        ck_assert_uint_eq(info.version, all[n - 1]);
        omc_info_free(&info);
        om_buf_free(&data);
    }
    for (int i = 0; i < CAS_CLIENTS; i++) {
        won += cls[i].rounds_won;
        lost += cls[i].rounds_lost;
    }
    ck_assert_int_gt(won, 0);
    printf("cas (%s): %d connections, %d rounds won, %d lost to a concurrent increment\n",
           mode_names[_i], CAS_CLIENTS, won, lost);
    omc_close(c);
    int st = tu_proc_stop(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    tu_proc_free(p);
}
END_TEST

/* ---- SIGTERM with writes in flight ---- */

#define TERM_CONNS 4
#define TERM_STORES 4000 /* per connection, pipelined */

typedef struct term_conn {
    int fd, id;
    atomic_int answered;     /* responses read */
    uint8_t ok[TERM_STORES]; /* 1: store i answered OK */
    int sent;
} term_conn;

static void
term_key(char *key, size_t n, int conn, int i)
{
    snprintf(key, n, "t%d-%05d", conn, i);
}

static void
term_val(char *val, size_t n, int conn, int i)
{
    snprintf(val, n, "value-%d-%d-%0100d", conn, i, i);
}

static void *
term_sender(void *arg)
{
    term_conn *tc = arg;

    for (int i = 0; i < TERM_STORES; i++) {
        char key[32], val[160];
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;

        term_key(key, sizeof(key), tc->id, i);
        term_val(val, sizeof(val), tc->id, i);
        sr.bucket = "term";
        sr.key = key;
        sr.data.data = (uint8_t *)val;
        sr.data.len = strlen(val);
        req.id = (uint64_t)i + 1;
        req.body_case = OBJMETA__REQUEST__BODY_STORE;
        req.store = &sr;
        if (!it_send_request(tc->fd, &req))
            break; /* the server closed the connection */
        tc->sent = i + 1;
    }
    return NULL;
}

static void *
term_receiver(void *arg)
{
    term_conn *tc = arg;
    Objmeta__Response *r;

    while ((r = it_recv_response(tc->fd, 30000)) != NULL) {
        ck_assert_msg(r->id >= 1 && r->id <= TERM_STORES, "unexpected response id %llu",
                      (unsigned long long)r->id);
        if (r->status == OBJMETA__STATUS__OK)
            tc->ok[r->id - 1] = 1;
        objmeta__response__free_unpacked(r, NULL);
        atomic_fetch_add(&tc->answered, 1);
    }
    return NULL;
}

START_TEST(sigterm_with_writes_in_flight)
{
    tu_proc *p = it_start_shard(NULL, modes[_i]);
    static term_conn tcs[TERM_CONNS];
    pthread_t snd[TERM_CONNS], rcv[TERM_CONNS];
    char dir[512];
    uint64_t deadline = tu_now_ms() + 30000;
    int answered, acked = 0, sent = 0, st;
    omc_client *c;
    om_buf data = OM_BUF_INIT;

    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(p));
    for (int i = 0; i < TERM_CONNS; i++) {
        memset(&tcs[i], 0, sizeof(tcs[i]));
        tcs[i].id = i;
        tcs[i].fd = it_sock(tu_proc_port(p, "rpc"));
    }
    for (int i = 0; i < TERM_CONNS; i++) {
        ck_assert_int_eq(pthread_create(&rcv[i], NULL, term_receiver, &tcs[i]), 0);
        ck_assert_int_eq(pthread_create(&snd[i], NULL, term_sender, &tcs[i]), 0);
    }
    /* stop the server once some stores are answered and (most likely) many are in flight */
    do {
        answered = 0;
        for (int i = 0; i < TERM_CONNS; i++)
            answered += atomic_load(&tcs[i].answered);
        sched_yield();
    } while (answered < 300 && tu_now_ms() < deadline);
    ck_assert_msg(answered >= 300, "only %d stores answered in 30 s", answered);
    st = tu_proc_stop(p); /* SIGTERM; the receivers keep reading the answers meanwhile */
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    for (int i = 0; i < TERM_CONNS; i++) {
        pthread_join(snd[i], NULL);
        pthread_join(rcv[i], NULL);
        close(tcs[i].fd);
    }
    tu_proc_free(p);

    p = it_start_shard(dir, modes[_i]);
    c = it_client(p);
    answered = 0;
    for (int i = 0; i < TERM_CONNS; i++) {
        answered += atomic_load(&tcs[i].answered);
        sent += tcs[i].sent;
        for (int j = 0; j < TERM_STORES; j++) {
            char key[32], val[160];
            omc_info info;

            if (!tcs[i].ok[j])
                continue;
            acked++;
            term_key(key, sizeof(key), i, j);
            term_val(val, sizeof(val), i, j);
            ck_assert_msg(omc_retrieve(c, "term", key, &info, &data) == OM_OK,
                          "store %s was acknowledged before SIGTERM but is lost (%s)", key,
                          omc_last_message(c));
            ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str(val)));
            omc_info_free(&info);
        }
    }
    ck_assert_int_gt(acked, 0);
    printf("sigterm (%s): %d stores sent, %d answered (%d OK) before the exit; all OK ones "
           "present after restart\n",
           mode_names[_i], sent, answered, acked);
    om_buf_free(&data);
    omc_close(c);
    st = tu_proc_stop(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    tu_proc_free(p);
}
END_TEST

/* ---- a flood of pipelined stores: the loop waits for room in the writer's queue ---- */

#define FLOOD_SMALL_CONNS 10
#define FLOOD_SMALL 1000 /* per connection (rpc lets 1024 be in flight) */
#define FLOOD_BIG_CONNS 4
#define FLOOD_BIG 32
#define FLOOD_BIG_SIZE (256 * 1024)

typedef struct flood_conn {
    int port, id, n;
    bool big;
    int fd, ok;
} flood_conn;

static void
flood_key(char *key, size_t n, bool big, int conn, int i)
{
    snprintf(key, n, "%s%d-%05d", big ? "big" : "small", conn, i);
}

/* The data of store i of a connection: FLOOD_BIG_SIZE or 64 bytes of a pattern. */
static size_t
flood_data(uint8_t *buf, bool big, int conn, int i)
{
    size_t n = big ? FLOOD_BIG_SIZE : 64;

    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(conn * 31 + i * 7 + (int)(k * 13 + k / 251));
    return n;
}

static void *
flood_sender(void *arg)
{
    flood_conn *fc = arg;
    uint8_t *buf = malloc(FLOOD_BIG_SIZE);

    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < fc->n; i++) {
        char key[32];
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;

        flood_key(key, sizeof(key), fc->big, fc->id, i);
        sr.bucket = "flood";
        sr.key = key;
        sr.data.data = buf;
        sr.data.len = flood_data(buf, fc->big, fc->id, i);
        req.id = (uint64_t)i + 1;
        req.body_case = OBJMETA__REQUEST__BODY_STORE;
        req.store = &sr;
        ck_assert(it_send_request(fc->fd, &req));
    }
    free(buf);
    return NULL;
}

static void *
flood_receiver(void *arg)
{
    flood_conn *fc = arg;

    for (int i = 0; i < fc->n; i++) {
        Objmeta__Response *r = must_recv(fc->fd);

        ck_assert_msg(r->status == OBJMETA__STATUS__OK, "store %llu: %d %s",
                      (unsigned long long)r->id, r->status, r->message);
        fc->ok++;
        objmeta__response__free_unpacked(r, NULL);
    }
    return NULL;
}

/* Run n connections of flood stores to completion; every one must be answered OK. */
static void
flood_run(tu_proc *p, int conns, int n, bool big)
{
    static flood_conn fcs[FLOOD_SMALL_CONNS];
    pthread_t snd[FLOOD_SMALL_CONNS], rcv[FLOOD_SMALL_CONNS];

    for (int i = 0; i < conns; i++) {
        fcs[i] = (flood_conn){.id = i, .n = n, .big = big, .fd = it_sock(tu_proc_port(p, "rpc"))};
        ck_assert_int_eq(pthread_create(&rcv[i], NULL, flood_receiver, &fcs[i]), 0);
        ck_assert_int_eq(pthread_create(&snd[i], NULL, flood_sender, &fcs[i]), 0);
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(snd[i], NULL);
        pthread_join(rcv[i], NULL);
        ck_assert_int_eq(fcs[i].ok, n);
        close(fcs[i].fd);
    }
}

static void
flood_check(omc_client *c, int conns, int n, bool big, int step)
{
    uint8_t *want = malloc(FLOOD_BIG_SIZE);
    om_buf data = OM_BUF_INIT;

    ck_assert_ptr_nonnull(want);
    for (int i = 0; i < conns; i++) {
        for (int j = 0; j < n; j += step) {
            char key[32];
            omc_info info;
            size_t len = flood_data(want, big, i, j);

            flood_key(key, sizeof(key), big, i, j);
            ck_assert_msg(omc_retrieve(c, "flood", key, &info, &data) == OM_OK, "%s: %s", key,
                          omc_last_message(c));
            ck_assert_msg(data.n == len && memcmp(data.p, want, len) == 0, "%s: wrong data", key);
            omc_info_free(&info);
        }
    }
    om_buf_free(&data);
    free(want);
}

START_TEST(flood_of_pipelined_stores)
{
    tu_proc *p = it_start_shard(NULL, modes[_i]);
    omc_client *c;
    omc_stats stats;
    uint64_t waits = 0;

    /* many small stores: up to 10 x 1024 in flight, more than the queue's 8192 jobs */
    flood_run(p, FLOOD_SMALL_CONNS, FLOOD_SMALL, false);
    /* large ones: the queue's 4 MiB hold 16 of them */
    flood_run(p, FLOOD_BIG_CONNS, FLOOD_BIG, true);
    c = it_client(p);
    flood_check(c, FLOOD_SMALL_CONNS, FLOOD_SMALL, false, 7);
    flood_check(c, FLOOD_BIG_CONNS, FLOOD_BIG, true, 1);
    ck_assert_int_eq(omc_stats_get(c, &stats), OM_OK);
    for (size_t i = 0; i < stats.n; i++)
        if (strcmp(stats.names[i], "shard.writer_queue_waits") == 0)
            waits = stats.values[i];
    omc_stats_free(&stats);
    printf("flood (%s): %d small and %d large stores answered OK and read back; the loop "
           "waited for the writer's queue %llu times\n",
           mode_names[_i], FLOOD_SMALL_CONNS * FLOOD_SMALL, FLOOD_BIG_CONNS * FLOOD_BIG,
           (unsigned long long)waits);
    omc_close(c);
    int st = tu_proc_stop(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    tu_proc_free(p);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("shard-writer");
    TCase *tc = tcase_create("writer");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, cas_counters_match_acknowledged_increments, 0, 2);
    tcase_add_loop_test(tc, sigterm_with_writes_in_flight, 0, 2);
    tcase_add_loop_test(tc, flood_of_pipelined_stores, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
