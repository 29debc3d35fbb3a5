/*
 * tests/harness/tu_load.c -- the ring-change tests' client load and its
 * model (tu_load.h).
 *
 * Each worker thread has its own client; the model (per mutable key: the
 * highest acknowledged store and delete versions) is under one mutex. A
 * worker records the first violation it sees in `failure` and goes on; the
 * test thread asserts on it after joining them (a ck_assert in a worker
 * thread would not end the test cleanly).
 */
#include "tu_load.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "tu.h"
#include "util/clock.h"

#define STABLE_SIZE 1500
#define MAX_VALUE 4096
#define NWORKERS 5

typedef struct kstate {
    uint64_t store_v;   /* highest acknowledged store version */
    uint32_t store_tag; /* its value: writer << 24 | seq */
    uint32_t store_len;
    uint64_t del_v;         /* highest acknowledged delete version */
    bool maybe_deleted;     /* a delete whose outcome is unknown (transport error) */
    uint64_t store_sent_ms; /* tu_now_ms() when the store of store_v was sent */
    /* the latest answer to a delete that found the key gone although an earlier attempt of
     * it may have deleted it (its answer lost, the request retried: by the client library,
     * which then answers OK with version 0, or -- with faults -- by a coordinator, which
     * passes the retry's NOT_FOUND on): a store sent before it may have been deleted */
    uint64_t gone_ms;
} kstate;

struct tu_load {
    const char *addr;
    char bucket[64];
    int nstable, nmut;
    uint64_t seed;
    atomic_bool stop;
    bool faults; /* errors allowed (a process is killed) */
    pthread_mutex_t mu;
    kstate *k;
    atomic_ulong ops, errors, lists, list_pages;
    atomic_ulong max_ms; /* the longest store, delete or read, answered or failed */
    char failure[512];   /* first invariant violation seen by a thread */
    pthread_t th[NWORKERS];
    int nth;
    uint64_t t_start; /* tu_now_ms() at tu_load_start */
};

typedef struct worker {
    tu_load *L;
    int kind; /* 0 writer, 1 deleter, 2 reader, 3 lister */
    int idx;
} worker;

omc_client *
tu_omc_connect(const char *addr)
{
    char msg[256];
    omc_client *c = NULL;
    uint64_t deadline = tu_now_ms() + 10000;

    while (omc_connect(addr, 3000, &c, msg, sizeof(msg)) != OM_OK) {
        ck_assert_msg(tu_now_ms() < deadline, "connect %s: %s", addr, msg);
        om_clock_sleep_ms(20); /* retry interval while the server starts */
    }
    omc_set_timeout(c, 20000);
    return c;
}

static void
load_fail(tu_load *L, const char *fmt, const char *a, unsigned long long b)
{
    pthread_mutex_lock(&L->mu);
    if (L->failure[0] == '\0')
        snprintf(L->failure, sizeof(L->failure), fmt, a, b);
    pthread_mutex_unlock(&L->mu);
}

void
tu_load_mut_key(int i, char *out, size_t n)
{
    snprintf(out, n, "m/%05d", i);
}

void
tu_load_stable_key(int i, char *out, size_t n)
{
    snprintf(out, n, "s/%05d", i);
}

/* The data of a mutable key's write: a tag the checker can recognise, then filler. */
static size_t
mut_value(uint32_t tag, uint32_t len, uint8_t *buf)
{
    memset(buf, 'a' + (int)(tag % 26), len);
    memcpy(buf, &tag, sizeof(tag));
    return len;
}

static void
stable_value(int i, uint8_t *buf)
{
    memset(buf, 'A' + i % 26, STABLE_SIZE);
    snprintf((char *)buf, 16, "%08d", i);
}

/* A request that began at t0 (tu_now_ms) has its answer: keep the longest wait. */
static void
note_latency(tu_load *L, uint64_t t0)
{
    unsigned long ms = (unsigned long)(tu_now_ms() - t0), cur = atomic_load(&L->max_ms);

    while (ms > cur && !atomic_compare_exchange_weak(&L->max_ms, &cur, ms))
        ;
}

static bool
transient(om_status st)
{
    return st == OM_E_UNAVAILABLE || st == OM_E_TIMEOUT || st == OM_E_BUSY;
}

static void
note_error(tu_load *L, const char *what, om_status st, omc_client *c)
{
    atomic_fetch_add(&L->errors, 1);
    if (transient(st))
        om_clock_sleep_ms(10); /* a process is restarting: do not spin */
    if (!L->faults || !transient(st)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s: %s: %s", what, om_status_str(st), omc_last_message(c));
        load_fail(L, "%s (%llu)", msg, 0);
    }
}

static void
run_writer(worker *w, omc_client *c, uint64_t *rs)
{
    tu_load *L = w->L;
    uint8_t buf[MAX_VALUE];
    uint32_t seq = 0;

    while (!atomic_load(&L->stop)) {
        int i = (int)(tu_rand(rs) % (uint64_t)L->nmut);
        char key[32];
        uint32_t tag = ((uint32_t)w->idx << 24) | (++seq & 0xffffff);
        uint32_t len = 64 + (uint32_t)(tu_rand(rs) % 2000);
        omc_info info;
        om_status st;
        uint64_t t0 = tu_now_ms();

        tu_load_mut_key(i, key, sizeof(key));
        mut_value(tag, len, buf);
        st = omc_store(c, L->bucket, key, om_slice_make(buf, len), NULL, &info);
        note_latency(L, t0);
        atomic_fetch_add(&L->ops, 1);
        if (st != OM_OK) {
            note_error(L, "store", st, c);
            continue;
        }
        pthread_mutex_lock(&L->mu);
        if (info.version > L->k[i].store_v) {
            L->k[i].store_sent_ms = t0;
            L->k[i].store_v = info.version;
            L->k[i].store_tag = tag;
            L->k[i].store_len = len;
        }
        pthread_mutex_unlock(&L->mu);
        omc_info_free(&info);
    }
}

static void
run_deleter(worker *w, omc_client *c, uint64_t *rs)
{
    tu_load *L = w->L;

    while (!atomic_load(&L->stop)) {
        int i = (int)(tu_rand(rs) % (uint64_t)L->nmut);
        char key[32];
        uint64_t v = 0, t0 = tu_now_ms();
        om_status st;

        tu_load_mut_key(i, key, sizeof(key));
        st = omc_delete(c, L->bucket, key, NULL, &v);
        note_latency(L, t0);
        atomic_fetch_add(&L->ops, 1);
        if (st == OM_E_NOTFOUND && !L->faults)
            continue; /* nothing to delete: no process fails, so no attempt was retried */
        pthread_mutex_lock(&L->mu);
        if (st == OM_E_NOTFOUND || (st == OM_OK && v == 0))
            L->k[i].gone_ms = tu_now_ms();
        if (st == OM_OK && v > L->k[i].del_v)
            L->k[i].del_v = v;
        if (st != OM_OK && st != OM_E_NOTFOUND)
            L->k[i].maybe_deleted = true;
        pthread_mutex_unlock(&L->mu);
        if (st != OM_OK && st != OM_E_NOTFOUND)
            note_error(L, "delete", st, c);
        om_clock_sleep_ms(2); /* deletes are rarer than writes */
    }
}

static void
run_reader(worker *w, omc_client *c, uint64_t *rs)
{
    tu_load *L = w->L;
    uint8_t want[STABLE_SIZE];
    om_buf data = OM_BUF_INIT;

    while (!atomic_load(&L->stop)) {
        int i = (int)(tu_rand(rs) % (uint64_t)L->nstable);
        char key[32];
        omc_info info;
        om_status st;
        uint64_t t0 = tu_now_ms();

        tu_load_stable_key(i, key, sizeof(key));
        st = omc_retrieve(c, L->bucket, key, &info, &data);
        note_latency(L, t0);
        atomic_fetch_add(&L->ops, 1);
        if (st != OM_OK) {
            note_error(L, "retrieve of a stable key", st, c);
            continue;
        }
        stable_value(i, want);
        if (data.n != STABLE_SIZE || memcmp(data.p, want, STABLE_SIZE) != 0)
            load_fail(L, "stable key %s read back wrong data (%llu bytes)", key, data.n);
        omc_info_free(&info);
    }
    om_buf_free(&data);
}

/* Whole listings, 100 keys a page: strictly increasing, every stable key present. */
static void
run_lister(worker *w, omc_client *c, uint64_t *rs)
{
    tu_load *L = w->L;
    (void)rs;

    while (!atomic_load(&L->stop)) {
        char token[1024] = "", last[64] = "";
        int stable_seen = 0, next_stable = 0, first_missing = -1, pages = 0;
        bool broken = false;
        uint64_t t0 = tu_now_ms();

        for (;;) {
            omc_list_opts lo = {0};
            omc_list_page pg;
            om_status st;

            lo.max_keys = 100;
            lo.continuation_token = token[0] ? token : NULL;
            st = omc_list(c, L->bucket, &lo, &pg);
            if (st != OM_OK) {
                note_error(L, "list", st, c);
                broken = true;
                break;
            }
            atomic_fetch_add(&L->list_pages, 1);
            for (size_t i = 0; i < pg.n_entries; i++) {
                const char *k = pg.entries[i].key ? pg.entries[i].key : "";
                if (last[0] && strcmp(k, last) <= 0)
                    load_fail(L, "listing repeated or reordered key %s (page %llu)", k,
                              (unsigned long long)atomic_load(&L->list_pages));
                snprintf(last, sizeof(last), "%s", k);
                if (strncmp(k, "s/", 2) == 0) {
                    int idx = atoi(k + 2);

                    if (first_missing < 0 && idx > next_stable)
                        first_missing =
                            next_stable; /* keys come in order: those skipped are missing */
                    next_stable = idx + 1;
                    stable_seen++;
                }
            }
            pages++;
            snprintf(token, sizeof(token), "%s", pg.next_continuation_token);
            bool more = pg.is_truncated;
            omc_list_page_free(&pg);
            if (!more)
                break;
            if (atomic_load(&L->stop) && L->failure[0])
                break;
        }
        if (!broken && stable_seen != L->nstable) {
            char what[160];

            if (first_missing < 0)
                first_missing = next_stable;
            snprintf(what, sizeof(what),
                     "%d of %d seen, the first missing s/%05d; %d pages from %llu to %llu ms after "
                     "the load started",
                     stable_seen, L->nstable, first_missing, pages,
                     (unsigned long long)(t0 - L->t_start),
                     (unsigned long long)(tu_now_ms() - L->t_start));
            load_fail(L, "a listing missed stable keys (%s)", what, 0);
        }
        if (!broken)
            atomic_fetch_add(&L->lists, 1);
    }
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    uint64_t rs = w->L->seed ^ ((uint64_t)(w->kind * 16 + w->idx + 1) * 0x9e3779b97f4a7c15ull);
    omc_client *c = tu_omc_connect(w->L->addr);

    omc_set_timeout(c, 30000);
    switch (w->kind) {
    case 0:
        run_writer(w, c, &rs);
        break;
    case 1:
        run_deleter(w, c, &rs);
        break;
    case 2:
        run_reader(w, c, &rs);
        break;
    default:
        run_lister(w, c, &rs);
        break;
    }
    omc_close(c);
    free(w);
    return NULL;
}

tu_load *
tu_load_new(const char *addr, const char *bucket, int nstable, int nmut, uint64_t seed, bool faults)
{
    tu_load *L = calloc(1, sizeof(*L));

    ck_assert_ptr_nonnull(L);
    ck_assert(nstable > 0 && nmut > 0);
    L->addr = addr;
    snprintf(L->bucket, sizeof(L->bucket), "%s", bucket);
    L->nstable = nstable;
    L->nmut = nmut;
    L->seed = seed;
    L->faults = faults;
    L->k = calloc((size_t)nmut, sizeof(*L->k));
    ck_assert_ptr_nonnull(L->k);
    pthread_mutex_init(&L->mu, NULL);
    return L;
}

void
tu_load_free(tu_load *L)
{
    if (L == NULL)
        return;
    pthread_mutex_destroy(&L->mu);
    free(L->k);
    free(L);
}

void
tu_load_start(tu_load *L)
{
    static const int kinds[NWORKERS] = {0, 0, 1, 2, 3};

    atomic_store(&L->stop, false);
    L->nth = 0;
    L->t_start = tu_now_ms();
    for (int i = 0; i < NWORKERS; i++) {
        worker *w = calloc(1, sizeof(*w));

        ck_assert_ptr_nonnull(w);
        w->L = L;
        w->kind = kinds[i];
        w->idx = i + 1;
        ck_assert_int_eq(pthread_create(&L->th[L->nth++], NULL, worker_main, w), 0);
    }
}

void
tu_load_stop(tu_load *L)
{
    atomic_store(&L->stop, true);
    for (int i = 0; i < L->nth; i++)
        pthread_join(L->th[i], NULL);
    L->nth = 0;
    printf("load: %lu ops, %lu errors, %lu complete listings (%lu pages)\n",
           (unsigned long)atomic_load(&L->ops), (unsigned long)atomic_load(&L->errors),
           (unsigned long)atomic_load(&L->lists), (unsigned long)atomic_load(&L->list_pages));
    ck_assert_msg(L->failure[0] == '\0', "%s", L->failure);
}

uint64_t
tu_load_started_ms(const tu_load *L)
{
    return L->t_start;
}

uint64_t
tu_load_ops(tu_load *L)
{
    return atomic_load(&L->ops);
}

uint64_t
tu_load_max_latency_ms(tu_load *L)
{
    return atomic_load(&L->max_ms);
}

uint64_t
tu_load_errors(tu_load *L)
{
    return atomic_load(&L->errors);
}

uint64_t
tu_load_lists(tu_load *L)
{
    return atomic_load(&L->lists);
}

/* Preload the stable keys (and nothing else) with a few parallel clients. */
typedef struct preload_arg {
    tu_load *L;
    int from, to;
} preload_arg;

static void *
preload_main(void *arg)
{
    preload_arg *p = arg;
    omc_client *c = tu_omc_connect(p->L->addr);
    uint8_t buf[STABLE_SIZE];

    for (int i = p->from; i < p->to; i++) {
        char key[32];

        tu_load_stable_key(i, key, sizeof(key));
        stable_value(i, buf);
        om_status st = omc_store(c, p->L->bucket, key, om_slice_make(buf, STABLE_SIZE), NULL, NULL);
        ck_assert_msg(st == OM_OK, "preload %s: %s", key, omc_last_message(c));
    }
    omc_close(c);
    return NULL;
}

void
tu_load_preload(tu_load *L)
{
    pthread_t th[4];
    preload_arg a[4];

    for (int t = 0; t < 4; t++) {
        a[t] = (preload_arg){L, t * L->nstable / 4, (t + 1) * L->nstable / 4};
        ck_assert_int_eq(pthread_create(&th[t], NULL, preload_main, &a[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
}

void
tu_load_check(tu_load *L)
{
    omc_client *c = tu_omc_connect(L->addr);
    om_buf data = OM_BUF_INIT;
    uint8_t want[MAX_VALUE];
    int live = 0;

    for (int i = 0; i < L->nmut; i++) {
        char key[32];
        omc_info info;
        kstate k = L->k[i];
        om_status st;

        tu_load_mut_key(i, key, sizeof(key));
        st = omc_retrieve(c, L->bucket, key, &info, &data);
        if (st == OM_E_NOTFOUND) {
            ck_assert_msg(k.del_v > k.store_v || k.maybe_deleted || k.store_v == 0 ||
                              k.store_sent_ms < k.gone_ms,
                          "%s: acknowledged write (version %llu) lost: key is gone, last "
                          "acknowledged delete %llu",
                          key, (unsigned long long)k.store_v, (unsigned long long)k.del_v);
            continue;
        }
        ck_assert_msg(st == OM_OK, "%s: %s", key, omc_last_message(c));
        live++;
        ck_assert_msg(info.version >= k.store_v,
                      "%s: read version %llu older than acknowledged write %llu", key,
                      (unsigned long long)info.version, (unsigned long long)k.store_v);
        ck_assert_msg(info.version > k.del_v,
                      "%s: acknowledged delete (version %llu) undone: read version %llu", key,
                      (unsigned long long)k.del_v, (unsigned long long)info.version);
        if (info.version == k.store_v) {
            mut_value(k.store_tag, k.store_len, want);
            ck_assert_msg(data.n == k.store_len && memcmp(data.p, want, data.n) == 0,
                          "%s: version %llu reads back other data", key,
                          (unsigned long long)info.version);
        }
        omc_info_free(&info);
    }
    om_buf_free(&data);
    omc_close(c);
    printf("model: %d mutable keys live, all acknowledged writes and deletes hold\n", live);
}
