/*
 * tests/lsm/test_skiplist.c -- the skiplist, the memtable and write batch
 * encoding: ordering, seeks, a reader running concurrently with the single
 * writer, memtable lookups across sequences and tombstones, and batch
 * decoding that rejects malformed input.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/batch.h"
#include "lsm/memtable.h"
#include "lsm/skiplist.h"
#include "tu.h"
#include "util/arena.h"
#include "util/coding.h"

/* User keys are 8-byte big-endian numbers: memcmp order is numeric order. */
static om_status
u64_insert(lsm_skiplist *sl, uint64_t v)
{
    uint8_t k[8];

    om_put_be64(k, v);
    return lsm_skl_insert(sl, om_slice_make(k, 8), 0, OM_SLICE_NULL, NULL);
}

static uint64_t
u64_entry(const lsm_skl_iter *it)
{
    ck_assert_uint_eq(lsm_skl_iter_user_key(it).n, 8);
    return om_get_be64(lsm_skl_iter_user_key(it).p);
}

START_TEST(skiplist_orders_and_seeks)
{
    om_arena *a;
    lsm_skiplist *sl;
    lsm_skl_iter it;
    uint64_t seed = tu_seed("skiplist_orders_and_seeks"), rnd = seed;
    static bool present[20000];
    uint8_t key[8];
    int n = 0;

    memset(present, 0, sizeof(present));
    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed, &sl), OM_OK);
    lsm_skl_iter_init(&it, sl);
    lsm_skl_iter_seek_first(&it);
    ck_assert(!lsm_skl_iter_valid(&it));
    for (int i = 0; i < 10000; i++) {
        uint64_t v = tu_rand(&rnd) % 20000;

        if (present[v])
            continue;
        present[v] = true;
        n++;
        ck_assert_int_eq(u64_insert(sl, v), OM_OK);
    }
    /* Full scan is sorted and complete. */
    int seen = 0;
    uint64_t prev = 0;
    for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it)) {
        uint64_t v = u64_entry(&it);

        ck_assert(present[v]);
        ck_assert(seen == 0 || v > prev);
        prev = v;
        seen++;
    }
    ck_assert_int_eq(seen, n);
    ck_assert(lsm_skl_check(sl));
    /* Seeks land on the first entry >= target. */
    for (uint64_t t = 0; t < 20000; t += 37) {
        uint64_t want = t;

        while (want < 20000 && !present[want])
            want++;
        om_put_be64(key, t);
        lsm_skl_iter_seek(&it, om_slice_make(key, 8), 0);
        if (want == 20000) {
            ck_assert(!lsm_skl_iter_valid(&it));
        } else {
            ck_assert(lsm_skl_iter_valid(&it));
            ck_assert_uint_eq(u64_entry(&it), want);
        }
        ck_assert(lsm_skl_contains(sl, om_slice_make(key, 8), 0) == present[t]);
    }
    om_arena_free(a);
}
END_TEST

typedef struct conc {
    lsm_skiplist *sl;
    atomic_uint_fast64_t published; /* all values < published are inserted */
    atomic_bool stop;
    int errors;
    atomic_long scans;
} conc;

static void *
conc_reader(void *arg)
{
    conc *c = arg;
    lsm_skl_iter it;

    lsm_skl_iter_init(&it, c->sl);
    while (!atomic_load(&c->stop)) {
        uint64_t must = atomic_load(&c->published), prev = 0, count = 0;

        /* Writer inserts even values 0,2,4,...: a scan must be sorted, and hold every
         * value published before the scan began. */
        for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it)) {
            uint64_t v = u64_entry(&it);

            if ((count > 0 && v <= prev) || v % 2 != 0)
                c->errors++;
            if (v < must)
                count++;
            prev = v;
        }
        if (count != (must + 1) / 2)
            c->errors++;
        atomic_fetch_add(&c->scans, 1);
    }
    return NULL;
}

START_TEST(skiplist_concurrent_reader)
{
    om_arena *a;
    conc c;
    pthread_t th;
    uint64_t seed = tu_seed("skiplist_concurrent_reader"), rnd = seed;
    const uint64_t n = 20000;
    uint64_t *order = malloc(sizeof(uint64_t) * n);

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed, &c.sl), OM_OK);
    /* Insert in blocks of 100 in random order within each block. */
    for (uint64_t i = 0; i < n; i++)
        order[i] = i * 2;
    for (uint64_t b = 0; b < n; b += 100)
        for (uint64_t i = b + 99; i > b; i--) {
            uint64_t j = b + tu_rand(&rnd) % (i - b + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
    ck_assert_int_eq(pthread_create(&th, NULL, conc_reader, &c), 0);
    for (uint64_t b = 0; b < n; b += 100) {
        for (uint64_t i = b; i < b + 100; i++)
            ck_assert_int_eq(u64_insert(c.sl, order[i]), OM_OK);
        atomic_store(&c.published, (b + 100) * 2);
    }
    /* Let the reader finish at least a few scans over the full list. */
    uint64_t deadline = tu_now_ms() + 10000;
    long start = c.scans;
    while (c.scans < start + 3 && tu_now_ms() < deadline)
        ;
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_eq(c.errors, 0);
    ck_assert_int_gt(c.scans, 0);
    free(order);
    om_arena_free(a);
}
END_TEST

/* An internal-key entry for the oracle of skiplist_internal_order. */
typedef struct ent {
    uint8_t k[6];
    size_t kn;
    uint64_t trailer;
} ent;

static int
ent_cmp(const void *pa, const void *pb)
{
    const ent *a = pa, *b = pb;
    size_t m = a->kn < b->kn ? a->kn : b->kn;
    int r = m > 0 ? memcmp(a->k, b->k, m) : 0;

    if (r != 0)
        return r;
    if (a->kn != b->kn)
        return a->kn < b->kn ? -1 : 1;
    return a->trailer > b->trailer ? -1 : (a->trailer < b->trailer ? 1 : 0);
}

/* First index in sorted e[0..n) that is >= t. */
static size_t
ent_lower_bound(const ent *e, size_t n, const ent *t)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (ent_cmp(&e[mid], t) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Internal-key order (user keys that are prefixes of others, the empty key,
 * several trailers per user key) against a sorted oracle, with inserts in
 * ascending runs taken in random order, so both the search path and the
 * sequential splice path build the list; the structure invariants hold and
 * values come back intact.
 */
START_TEST(skiplist_internal_order)
{
    uint64_t seed = tu_seed("skiplist_internal_order"), rnd = seed;
    enum { N = 6000, RUN = 40 };
    ent *e = malloc(sizeof(ent) * N), *sorted = malloc(sizeof(ent) * N);
    size_t n = 0, seen = 0;
    int order[N / RUN];
    om_arena *a, *va;
    lsm_skiplist *sl;
    lsm_skl_iter it;

    /* Unique (key, trailer) pairs over a small alphabet: many shared prefixes. */
    while (n < N) {
        ent x;
        bool dup = false;

        memset(&x, 0, sizeof(x));
        x.kn = tu_rand(&rnd) % 6;
        for (size_t i = 0; i < x.kn; i++)
            x.k[i] = (uint8_t)("ab\x00\xff"[tu_rand(&rnd) % 4]);
        x.trailer = lsm_trailer_pack(tu_rand(&rnd) % 50, (lsm_vtype)(tu_rand(&rnd) % 2));
        for (size_t i = 0; i < n && !dup; i++)
            dup = ent_cmp(&e[i], &x) == 0;
        if (!dup)
            e[n++] = x;
    }
    memcpy(sorted, e, sizeof(ent) * N);
    qsort(sorted, N, sizeof(ent), ent_cmp);
    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(om_arena_new(0, &va), OM_OK); /* values apart from the nodes */
    ck_assert_int_eq(lsm_skl_new(a, va, seed, &sl), OM_OK);
    for (int r = 0; r < N / RUN; r++)
        order[r] = r;
    for (int r = N / RUN - 1; r > 0; r--) {
        int j = (int)(tu_rand(&rnd) % (uint64_t)(r + 1)), t = order[r];

        order[r] = order[j];
        order[j] = t;
    }
    for (int r = 0; r < N / RUN; r++)
        for (int i = 0; i < RUN; i++) {
            const ent *x = &sorted[order[r] * RUN + i];
            uint8_t val[16];

            om_put_fixed64(val, x->trailer);
            om_put_fixed64(val + 8, x->kn);
            ck_assert_int_eq(lsm_skl_insert(sl, om_slice_make(x->k, x->kn), x->trailer,
                                            om_slice_make(val, x->trailer % 17), NULL),
                             OM_OK);
        }
    ck_assert(lsm_skl_check(sl));
    /* Each run but its first insert is sequential. */
    ck_assert_uint_ge(lsm_skl_splice_hits(sl), (uint64_t)(N / RUN) * (RUN - 1));
    lsm_skl_iter_init(&it, sl);
    for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it), seen++) {
        const ent *x = &sorted[seen];
        om_slice v = lsm_skl_iter_value(&it), ik = lsm_skl_iter_ikey(&it);

        ck_assert_uint_lt(seen, N);
        ck_assert_uint_eq(lsm_skl_iter_user_key(&it).n, x->kn);
        ck_assert(x->kn == 0 || memcmp(lsm_skl_iter_user_key(&it).p, x->k, x->kn) == 0);
        ck_assert_uint_eq(lsm_skl_iter_trailer(&it), x->trailer);
        ck_assert_uint_eq(ik.n, x->kn + 8);
        ck_assert_uint_eq(lsm_ikey_trailer(ik), x->trailer);
        ck_assert_uint_eq(v.n, x->trailer % 17);
        ck_assert_ptr_nonnull(v.p); /* empty values too: callers memcmp it */
        if (v.n >= 8)
            ck_assert_uint_eq(om_get_fixed64(v.p), x->trailer);
    }
    ck_assert_uint_eq(seen, N);
    /* Seeks to random targets land on the oracle's lower bound. */
    for (int i = 0; i < 3000; i++) {
        ent t;
        size_t want;

        memset(&t, 0, sizeof(t));
        t.kn = tu_rand(&rnd) % 6;
        for (size_t j = 0; j < t.kn; j++)
            t.k[j] = (uint8_t)("ab\x00\xff"[tu_rand(&rnd) % 4]);
        t.trailer = lsm_trailer_pack(tu_rand(&rnd) % 52, (lsm_vtype)(tu_rand(&rnd) % 2));
        want = ent_lower_bound(sorted, N, &t);
        lsm_skl_iter_seek(&it, om_slice_make(t.k, t.kn), t.trailer);
        if (want == N) {
            ck_assert(!lsm_skl_iter_valid(&it));
            continue;
        }
        ck_assert(lsm_skl_iter_valid(&it));
        ck_assert_uint_eq(lsm_skl_iter_trailer(&it), sorted[want].trailer);
        ck_assert_uint_eq(lsm_skl_iter_user_key(&it).n, sorted[want].kn);
        ck_assert(lsm_skl_contains(sl, om_slice_make(t.k, t.kn), t.trailer) ==
                  (ent_cmp(&sorted[want], &t) == 0));
    }
    om_arena_free(a);
    om_arena_free(va);
    free(e);
    free(sorted);
}
END_TEST

/* Ascending fills take the splice path on every insert after the first; descending never. */
START_TEST(skiplist_sequential_fill)
{
    uint64_t seed = tu_seed("skiplist_sequential_fill");
    om_arena *a;
    lsm_skiplist *up, *down;
    lsm_skl_iter it;
    uint64_t prev = 0, seen = 0;

    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed, &up), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed + 1, &down), OM_OK);
    for (uint64_t i = 0; i < 5000; i++) {
        ck_assert_int_eq(u64_insert(up, i * 3), OM_OK);
        ck_assert_int_eq(u64_insert(down, 15000 - i * 3), OM_OK);
    }
    ck_assert_uint_eq(lsm_skl_splice_hits(up), 4999);
    ck_assert_uint_eq(lsm_skl_splice_hits(down), 0);
    /*
     * Then fill the gaps of `up` in ascending order: each key is greater than
     * the last insert but also greater than its successor, so the splice is
     * never valid and every insert must search.
     */
    for (uint64_t j = 0; j < 5000; j++)
        ck_assert_int_eq(u64_insert(up, j * 3 + 1), OM_OK);
    ck_assert_uint_eq(lsm_skl_splice_hits(up), 4999);
    ck_assert(lsm_skl_check(up));
    ck_assert(lsm_skl_check(down));
    lsm_skl_iter_init(&it, up);
    for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it), seen++) {
        uint64_t v = u64_entry(&it);

        ck_assert(seen == 0 || v > prev);
        ck_assert(v % 3 != 2);
        prev = v;
    }
    ck_assert_uint_eq(seen, 10000);
    om_arena_free(a);
}
END_TEST

/*
 * The memtable's hash index against a brute-force oracle: many versions per
 * key inserted with sequences out of order (so a newer version may arrive
 * after an older one and the reverse), values and tombstones; every get at
 * a random sequence returns the newest version at or below it, and a small
 * write buffer makes the buckets hold long chains of different keys.
 */
typedef struct mop {
    uint32_t key;
    uint64_t seq;
    lsm_vtype type;
} mop;

START_TEST(memtable_hash_index_matches_oracle)
{
    uint64_t seed = tu_seed("memtable_hash_index_matches_oracle"), rnd = seed;
    enum { NOPS = 8000, NKEYS = 700 };
    mop *ops = malloc(sizeof(mop) * NOPS);
    uint64_t *seqs = malloc(sizeof(uint64_t) * NOPS);
    lsm_memtable *m;
    om_slice v = {0};

    /* Distinct sequences 1..NOPS in random order. */
    for (int i = 0; i < NOPS; i++)
        seqs[i] = (uint64_t)i + 1;
    for (int i = NOPS - 1; i > 0; i--) {
        int j = (int)(tu_rand(&rnd) % (uint64_t)(i + 1));
        uint64_t t = seqs[i];

        seqs[i] = seqs[j];
        seqs[j] = t;
    }
    ck_assert_int_eq(lsm_mem_new(1, 16 * 1024, &m), OM_OK); /* few buckets: long chains */
    for (int i = 0; i < NOPS; i++) {
        char k[16], val[24];
        int kn, vn;

        ops[i].key = (uint32_t)(tu_rand(&rnd) % NKEYS);
        ops[i].seq = seqs[i];
        ops[i].type = tu_rand(&rnd) % 5 == 0 ? LSM_TYPE_DEL : LSM_TYPE_VAL;
        kn = snprintf(k, sizeof(k), "key%u", ops[i].key);
        vn = snprintf(val, sizeof(val), "v%llu", (unsigned long long)ops[i].seq);
        ck_assert_int_eq(lsm_mem_add(m, ops[i].seq, ops[i].type, om_slice_make(k, (size_t)kn),
                                     om_slice_make(val, (size_t)vn)),
                         OM_OK);
    }
    for (int q = 0; q < 6000; q++) {
        uint32_t key = (uint32_t)(tu_rand(&rnd) % (NKEYS + 50)); /* some absent keys */
        uint64_t at = tu_rand(&rnd) % (NOPS + 2);
        const mop *best = NULL;
        char k[16], want[24];
        int kn = snprintf(k, sizeof(k), "key%u", key);
        om_status st = OM_OK;
        bool got;

        for (int i = 0; i < NOPS; i++)
            if (ops[i].key == key && ops[i].seq <= at && (best == NULL || ops[i].seq > best->seq))
                best = &ops[i];
        got = lsm_mem_find(m, om_slice_make(k, (size_t)kn), at, &v, &st);
        ck_assert_msg(got == (best != NULL), "key%u at %llu: decided %d", key,
                      (unsigned long long)at, (int)got);
        if (best == NULL)
            continue;
        if (best->type == LSM_TYPE_DEL) {
            ck_assert_int_eq(st, OM_E_NOTFOUND);
        } else {
            int wn = snprintf(want, sizeof(want), "v%llu", (unsigned long long)best->seq);

            ck_assert_int_eq(st, OM_OK);
            ck_assert(v.n == (size_t)wn && memcmp(v.p, want, v.n) == 0);
        }
        ck_assert(lsm_mem_has_key(m, om_slice_make(k, (size_t)kn)));
    }
    for (uint32_t key = NKEYS; key < NKEYS + 50; key++) {
        char k[16];
        int kn = snprintf(k, sizeof(k), "key%u", key);

        ck_assert(!lsm_mem_has_key(m, om_slice_make(k, (size_t)kn)));
    }
    /* The read-ahead hint marks only keys it holds and leaves set marks alone. */
    unsigned marked = 0;
    for (int q = 0; q < 200; q++) {
        enum { B = 40 };
        char kb[B][16];
        om_slice ks[B];
        bool found[B], preset[B];

        for (int i = 0; i < B; i++) {
            int kn =
                snprintf(kb[i], sizeof(kb[i]), "key%u", (uint32_t)(tu_rand(&rnd) % (NKEYS + 50)));
            ks[i] = om_slice_make(kb[i], (size_t)kn);
            found[i] = preset[i] = tu_rand(&rnd) % 4 == 0;
        }
        lsm_mem_prefetch_find(m, ks, B, found);
        lsm_mem_prefetch_gets(m, ks, B);
        for (int i = 0; i < B; i++) {
            if (preset[i])
                ck_assert(found[i]);
            else if (found[i]) {
                ck_assert_msg(lsm_mem_has_key(m, ks[i]), "%s marked but absent", kb[i]);
                marked++;
            }
        }
    }
    ck_assert_uint_gt(marked, 0);
    lsm_mem_unref(m);
    free(ops);
    free(seqs);
}
END_TEST

/*
 * A reader running gets concurrently with the writer: the writer adds
 * sequence s to key s % 64 (value: s), then publishes s; a get at the
 * published sequence must return exactly the newest version at or below it.
 */
typedef struct mconc {
    lsm_memtable *m;
    atomic_uint_fast64_t published;
    atomic_bool stop;
    atomic_long gets;
    int errors;
} mconc;

static void *
mconc_reader(void *arg)
{
    mconc *c = arg;
    om_slice v = {0};
    uint64_t rnd = 12345;

    while (!atomic_load(&c->stop)) {
        uint64_t w = atomic_load(&c->published), key = tu_rand(&rnd) % 64, want;
        char k[16];
        int kn = snprintf(k, sizeof(k), "key%llu", (unsigned long long)key);
        om_status st = OM_OK;
        bool got = lsm_mem_find(c->m, om_slice_make(k, (size_t)kn), w, &v, &st);

        /* The newest s <= w with s % 64 == key, sequences starting at 1. */
        want = w >= key ? w - (w - key) % 64 : 0;
        if (want == 0) {
            if (got)
                c->errors++;
        } else if (!got || st != OM_OK || v.n != 8 || om_get_fixed64(v.p) != want) {
            c->errors++;
        }
        atomic_fetch_add(&c->gets, 1);
    }
    return NULL;
}

START_TEST(memtable_hash_index_concurrent_reader)
{
    mconc c;
    pthread_t th;
    const uint64_t n = 30000;

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(lsm_mem_new(1, 64 * 1024, &c.m), OM_OK);
    ck_assert_int_eq(pthread_create(&th, NULL, mconc_reader, &c), 0);
    for (uint64_t s = 1; s <= n; s++) {
        char k[16];
        uint8_t val[8];
        int kn = snprintf(k, sizeof(k), "key%llu", (unsigned long long)(s % 64));

        om_put_fixed64(val, s);
        ck_assert_int_eq(
            lsm_mem_add(c.m, s, LSM_TYPE_VAL, om_slice_make(k, (size_t)kn), om_slice_make(val, 8)),
            OM_OK);
        atomic_store(&c.published, s);
    }
    /* Let the reader run some gets against the complete table too. */
    uint64_t deadline = tu_now_ms() + 10000;
    long start = atomic_load(&c.gets);
    while (atomic_load(&c.gets) < start + 1000 && tu_now_ms() < deadline)
        ;
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_eq(c.errors, 0);
    ck_assert_int_gt(atomic_load(&c.gets), 0);
    lsm_mem_unref(c.m);
}
END_TEST

START_TEST(memtable_versions_and_tombstones)
{
    lsm_memtable *m;
    om_buf v = OM_BUF_INIT;
    om_slice mv = {0};
    om_status st;
    lsm_it *it;
    int n = 0;

    ck_assert_int_eq(lsm_mem_new(7, 1 << 20, &m), OM_OK);
    ck_assert_uint_eq(lsm_mem_log_number(m), 7);
    ck_assert_int_eq(
        lsm_mem_add(m, 1, LSM_TYPE_VAL, om_slice_from_str("k"), om_slice_from_str("v1")), OM_OK);
    ck_assert_int_eq(lsm_mem_add(m, 3, LSM_TYPE_DEL, om_slice_from_str("k"), OM_SLICE_NULL), OM_OK);
    ck_assert_int_eq(
        lsm_mem_add(m, 5, LSM_TYPE_VAL, om_slice_from_str("k"), om_slice_from_str("v5")), OM_OK);
    ck_assert_int_eq(
        lsm_mem_add(m, 2, LSM_TYPE_VAL, om_slice_from_str("j"), om_slice_from_str("j2")), OM_OK);
    ck_assert(!lsm_mem_find(m, om_slice_from_str("k"), 0, &mv, &st));
    ck_assert(lsm_mem_find(m, om_slice_from_str("k"), 1, &mv, &st));
    ck_assert_int_eq(st, OM_OK);
    ck_assert(mv.n == 2 && memcmp(mv.p, "v1", 2) == 0);
    ck_assert(lsm_mem_find(m, om_slice_from_str("k"), 2, &mv, &st));
    ck_assert(lsm_mem_find(m, om_slice_from_str("k"), 4, &mv, &st));
    ck_assert_int_eq(st, OM_E_NOTFOUND);
    ck_assert(lsm_mem_find(m, om_slice_from_str("k"), 100, &mv, &st));
    ck_assert_int_eq(st, OM_OK);
    ck_assert(mv.n == 2 && memcmp(mv.p, "v5", 2) == 0);
    ck_assert(!lsm_mem_find(m, om_slice_from_str("kk"), 100, &mv, &st));
    ck_assert(!lsm_mem_find(m, om_slice_from_str("a"), 100, &mv, &st));
    ck_assert(lsm_mem_has_key(m, om_slice_from_str("j")));
    ck_assert(!lsm_mem_has_key(m, om_slice_from_str("i")));
    ck_assert_uint_eq(lsm_mem_entries(m), 4);
    ck_assert_uint_gt(lsm_mem_usage(m), 0);
    /* Iterator: j@2, k@5, k@3, k@1 -- and it keeps the memtable alive. */
    ck_assert_int_eq(lsm_mem_iter(m, &it), OM_OK);
    lsm_mem_unref(m);
    uint64_t want_seq[] = {2, 5, 3, 1};
    for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it)) {
        lsm_ikey ik;

        ck_assert_int_eq(lsm_ikey_parse(lsm_it_key(it), &ik), OM_OK);
        ck_assert_uint_eq(ik.seq, want_seq[n]);
        n++;
    }
    ck_assert_int_eq(n, 4);
    om_buf_reset(&v);
    lsm_ikey_append(&v, om_slice_from_str("k"), 4, LSM_TYPE_SEEK);
    lsm_it_seek(it, om_buf_slice(&v));
    ck_assert(lsm_it_valid(it));
    ck_assert_uint_eq(lsm_ikey_trailer(lsm_it_key(it)) >> 8, 3);
    ck_assert_int_eq(lsm_it_status(it), OM_OK);
    lsm_it_free(it);
    om_buf_free(&v);
}
END_TEST

static om_status
collect(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    om_buf *b = arg;

    return om_buf_printf(b, "%llu:%d:%.*s=%.*s;", (unsigned long long)seq, (int)type, (int)key.n,
                         (const char *)key.p, (int)value.n, (const char *)value.p);
}

START_TEST(batch_encode_decode)
{
    lsm_batch *b;
    om_buf out = OM_BUF_INIT, bad = OM_BUF_INIT;
    uint64_t seq;
    uint32_t count;

    ck_assert_int_eq(lsm_batch_new(&b), OM_OK);
    ck_assert_int_eq(lsm_batch_put(b, om_slice_from_str("a"), om_slice_from_str("1")), OM_OK);
    ck_assert_int_eq(lsm_batch_del(b, om_slice_from_str("b")), OM_OK);
    ck_assert_int_eq(lsm_batch_put(b, om_slice_from_str("c"), om_slice_from_str("")), OM_OK);
    lsm_batch_set_seq(b, 41);
    ck_assert_int_eq(lsm_batch_validate(lsm_batch_rep(b), &seq, &count), OM_OK);
    ck_assert_uint_eq(seq, 41);
    ck_assert_uint_eq(count, 3);
    ck_assert_int_eq(lsm_batch_iterate(lsm_batch_rep(b), collect, &out), OM_OK);
    om_buf_append_byte(&out, 0);
    ck_assert_str_eq((char *)out.p, "41:1:a=1;42:0:b=;43:1:c=;");
    /* Every truncation and a wrong count are rejected. */
    for (size_t n = 0; n < lsm_batch_rep(b).n; n++)
        ck_assert_int_eq(lsm_batch_validate(om_slice_make(lsm_batch_rep(b).p, n), &seq, &count),
                         OM_E_CORRUPT);
    om_buf_set(&bad, lsm_batch_rep(b));
    om_put_fixed32(bad.p + 8, 4);
    ck_assert_int_eq(lsm_batch_validate(om_buf_slice(&bad), &seq, &count), OM_E_CORRUPT);
    om_put_fixed32(bad.p + 8, 3);
    bad.p[12] = 7; /* unknown op type */
    ck_assert_int_eq(lsm_batch_validate(om_buf_slice(&bad), &seq, &count), OM_E_CORRUPT);
    om_buf_free(&bad);
    om_buf_free(&out);
    lsm_batch_free(b);
}
END_TEST

/*
 * Sorted group inserts (lsm_batch_apply_sorted, the skiplist's finger
 * search): random keys in random batches -- duplicates inside a batch and
 * across batches, puts and deletes -- applied a few batches at a time, against
 * a model of every op, while a reader gets random keys at the published
 * sequence and scans the memtable for order.
 */
#define SB_KEYS 500
#define SB_OPS 40000

typedef struct sb_op {
    uint32_t key;
    uint8_t type; /* LSM_TYPE_VAL or LSM_TYPE_DEL */
} sb_op;

typedef struct sb {
    lsm_memtable *m;
    const sb_op *ops;          /* op i has sequence i + 1 */
    uint32_t *by_key[SB_KEYS]; /* each key's op indices, ascending */
    uint32_t nby_key[SB_KEYS];
    atomic_uint_fast64_t published;
    atomic_bool stop;
    atomic_long errors, gets, scans;
} sb;

static int
sb_key(char *buf, uint32_t key)
{
    /* Variable lengths, and keys that are prefixes of others. */
    return snprintf(buf, 16, "k%u", key);
}

static void
sb_value(uint8_t *val, size_t *vn, uint64_t seq)
{
    om_put_fixed64(val, seq);
    *vn = 8 + seq % 9;
    memset(val + 8, (int)(seq & 0xff), *vn - 8);
}

/* Check one get of key at sequence s against the model; true if it matches. */
static bool
sb_get_ok(sb *c, uint32_t key, uint64_t s, om_slice *v)
{
    char k[16];
    int kn = sb_key(k, key);
    om_status st = OM_OK;
    bool got = lsm_mem_find(c->m, om_slice_make(k, (size_t)kn), s, v, &st);
    const uint32_t *ix = c->by_key[key];
    size_t lo = 0, hi = c->nby_key[key];
    uint8_t want[16];
    size_t wn;

    /* The newest op of key with sequence <= s: index < s. */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (ix[mid] < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return !got;
    if (!got)
        return false;
    if (c->ops[ix[lo - 1]].type == LSM_TYPE_DEL)
        return st == OM_E_NOTFOUND;
    sb_value(want, &wn, (uint64_t)ix[lo - 1] + 1);
    return st == OM_OK && v->n == wn && memcmp(v->p, want, wn) == 0;
}

static void *
sb_reader(void *arg)
{
    sb *c = arg;
    om_slice v = {0};
    uint64_t rnd = 777;

    while (!atomic_load(&c->stop)) {
        uint64_t s = atomic_load(&c->published);

        for (int i = 0; i < 64; i++) {
            if (!sb_get_ok(c, (uint32_t)(tu_rand(&rnd) % SB_KEYS), s, &v))
                atomic_fetch_add(&c->errors, 1);
            atomic_fetch_add(&c->gets, 1);
        }
        if (tu_rand(&rnd) % 8 == 0) {
            lsm_it *it;
            om_buf prev = OM_BUF_INIT;
            bool first = true;

            if (lsm_mem_iter(c->m, &it) != OM_OK) {
                atomic_fetch_add(&c->errors, 1);
                continue;
            }
            for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it)) {
                om_slice ik = lsm_it_key(it);

                if (!first && lsm_ikey_cmp(om_buf_slice(&prev), ik) >= 0)
                    atomic_fetch_add(&c->errors, 1);
                om_buf_set(&prev, ik);
                first = false;
            }
            lsm_it_free(it);
            om_buf_free(&prev);
            atomic_fetch_add(&c->scans, 1);
        }
    }
    return NULL;
}

START_TEST(memtable_sorted_batches_match_model)
{
    uint64_t seed = tu_seed("memtable_sorted_batches_match_model"), rnd = seed;
    sb_op *ops = malloc(sizeof(sb_op) * SB_OPS);
    sb *c = calloc(1, sizeof(*c));
    lsm_batch *b[3];
    void *scratch = NULL;
    size_t cap = 0, done = 0;
    pthread_t th;
    om_slice v = {0};

    ck_assert_ptr_nonnull(ops);
    ck_assert_ptr_nonnull(c);
    for (size_t i = 0; i < SB_OPS; i++) {
        /* A hot tenth of the keys makes duplicates inside a batch common. */
        ops[i].key = (uint32_t)(tu_rand(&rnd) % 2 ? tu_rand(&rnd) % (SB_KEYS / 10)
                                                  : tu_rand(&rnd) % SB_KEYS);
        ops[i].type = tu_rand(&rnd) % 5 == 0 ? LSM_TYPE_DEL : LSM_TYPE_VAL;
        c->nby_key[ops[i].key]++;
    }
    for (int k = 0; k < SB_KEYS; k++) {
        c->by_key[k] = malloc(sizeof(uint32_t) * (c->nby_key[k] + 1));
        ck_assert_ptr_nonnull(c->by_key[k]);
        c->nby_key[k] = 0;
    }
    for (size_t i = 0; i < SB_OPS; i++)
        c->by_key[ops[i].key][c->nby_key[ops[i].key]++] = (uint32_t)i;
    c->ops = ops;
    ck_assert_int_eq(lsm_mem_new(1, 1 << 20, &c->m), OM_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(lsm_batch_new(&b[i]), OM_OK);
    ck_assert_int_eq(pthread_create(&th, NULL, sb_reader, c), 0);
    while (done < SB_OPS) {
        int nb = 1 + (int)(tu_rand(&rnd) % 3);
        om_slice reps[3];
        size_t start = done;

        for (int j = 0; j < nb; j++) {
            size_t cnt = 1 + tu_rand(&rnd) % (tu_rand(&rnd) % 4 == 0 ? 400 : 40);

            lsm_batch_clear(b[j]);
            lsm_batch_set_seq(b[j], done + 1);
            for (size_t i = 0; i < cnt && done < SB_OPS; i++, done++) {
                char k[16];
                uint8_t val[16];
                size_t vn;
                om_slice key = om_slice_make(k, (size_t)sb_key(k, ops[done].key));

                sb_value(val, &vn, done + 1);
                ck_assert_int_eq(ops[done].type == LSM_TYPE_DEL
                                     ? lsm_batch_del(b[j], key)
                                     : lsm_batch_put(b[j], key, om_slice_make(val, vn)),
                                 OM_OK);
            }
            reps[j] = lsm_batch_rep(b[j]);
        }
        ck_assert_uint_gt(done, start);
        ck_assert_int_eq(lsm_batch_apply_sorted(reps, nb, c->m, &scratch, &cap), OM_OK);
        atomic_store(&c->published, done);
    }
    /* Let the reader see the complete table too. */
    uint64_t deadline = tu_now_ms() + 10000;
    long start = atomic_load(&c->scans);
    while (atomic_load(&c->scans) < start + 2 && tu_now_ms() < deadline)
        ;
    atomic_store(&c->stop, true);
    pthread_join(th, NULL);
    ck_assert_int_eq(atomic_load(&c->errors), 0);
    ck_assert_int_gt(atomic_load(&c->gets), 0);
    /* Every key at every tenth sequence, and the full table in internal-key order. */
    for (uint64_t s = 0; s <= SB_OPS; s += SB_OPS / 10)
        for (uint32_t k = 0; k < SB_KEYS; k++)
            ck_assert_msg(sb_get_ok(c, k, s, &v), "key %u at seq %llu", k, (unsigned long long)s);
    {
        lsm_it *it;
        size_t n = 0;
        om_buf prev = OM_BUF_INIT;

        ck_assert_int_eq(lsm_mem_iter(c->m, &it), OM_OK);
        for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it), n++) {
            if (n > 0)
                ck_assert_int_lt(lsm_ikey_cmp(om_buf_slice(&prev), lsm_it_key(it)), 0);
            ck_assert_int_eq(om_buf_set(&prev, lsm_it_key(it)), OM_OK);
        }
        ck_assert_uint_eq(n, SB_OPS);
        lsm_it_free(it);
        om_buf_free(&prev);
    }
    ck_assert_uint_eq(lsm_mem_entries(c->m), SB_OPS);
    free(scratch);
    for (int i = 0; i < 3; i++)
        lsm_batch_free(b[i]);
    for (int k = 0; k < SB_KEYS; k++)
        free(c->by_key[k]);
    lsm_mem_unref(c->m);
    free(c);
    free(ops);
}
END_TEST

/* Random groups inserted in sorted order: finger searches build a sound list. */
START_TEST(skiplist_finger_groups)
{
    uint64_t seed = tu_seed("skiplist_finger_groups"), rnd = seed;
    om_arena *a;
    lsm_skiplist *sl;
    enum { NG = 200, GN = 100 };
    uint64_t *all = malloc(sizeof(uint64_t) * NG * GN), grp[GN], seen = 0, prev = 0;
    size_t n = 0;
    lsm_skl_iter it;

    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed, &sl), OM_OK);
    for (int g = 0; g < NG; g++) {
        size_t gn = 0;

        /* Random high part, a unique low part: no duplicates. */
        for (int i = 0; i < GN; i++)
            grp[gn++] = (tu_rand(&rnd) % 100000) * (NG * GN) + n + (size_t)i;
        /* Sorted ascending (insertion sort: small). */
        for (size_t i = 1; i < gn; i++)
            for (size_t j = i; j > 0 && grp[j - 1] > grp[j]; j--) {
                uint64_t t = grp[j];

                grp[j] = grp[j - 1];
                grp[j - 1] = t;
            }
        for (size_t i = 0; i < gn; i++) {
            ck_assert_int_eq(u64_insert(sl, grp[i]), OM_OK);
            all[n++] = grp[i];
        }
    }
    ck_assert(lsm_skl_check(sl));
    ck_assert_uint_gt(lsm_skl_finger_hits(sl), 0);
    lsm_skl_iter_init(&it, sl);
    for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it), seen++) {
        uint64_t x = u64_entry(&it);

        ck_assert(seen == 0 || x > prev);
        prev = x;
    }
    ck_assert_uint_eq(seen, n);
    for (size_t i = 0; i < n; i += 7) {
        uint8_t k[8];

        om_put_be64(k, all[i]);
        ck_assert(lsm_skl_contains(sl, om_slice_make(k, 8), 0));
    }
    free(all);
    om_arena_free(a);
}
END_TEST

/*
 * lsm_skl_warm changes nothing: on an empty list, and on a large one with
 * key sets of every size around the lane count -- present, absent, before
 * and after every key, unsorted, repeated -- the list stays valid and whole.
 */
START_TEST(skiplist_warm_changes_nothing)
{
    uint64_t seed = tu_seed("skiplist_warm_changes_nothing"), rnd = seed;
    enum { N = 30000, K = 200 };
    uint8_t kb[K][8];
    om_slice keys[K];
    om_arena *a;
    lsm_skiplist *sl;
    lsm_skl_iter it;
    size_t seen = 0;

    ck_assert_int_eq(om_arena_new(0, &a), OM_OK);
    ck_assert_int_eq(lsm_skl_new(a, a, seed, &sl), OM_OK);
    for (int i = 0; i < K; i++) {
        om_put_be64(kb[i], tu_rand(&rnd));
        keys[i] = om_slice_make(kb[i], 8);
    }
    lsm_skl_warm(sl, keys, K); /* empty list */
    lsm_skl_warm(sl, keys, 0);
    for (uint64_t i = 0; i < N; i++)
        ck_assert_int_eq(u64_insert(sl, (i * 2654435761u) % (4 * N) * 2 + 2), OM_OK);
    for (size_t n = 0; n <= K; n = n < 20 ? n + 1 : n * 2) {
        for (size_t i = 0; i < n; i++) {
            uint64_t r = tu_rand(&rnd);
            /* present (even), absent (odd), 0 before all, the maximum after all */
            uint64_t v = r % 4 == 0 ? 0 : r % 4 == 1 ? UINT64_MAX : r % 8 * N;

            om_put_be64(kb[i], r % 2 ? v : ((r >> 8) % N * 2654435761u) % (4 * N) * 2 + 2);
            keys[i] = om_slice_make(kb[i], i % 5 == 4 ? (size_t)(r >> 40) % 9 : 8);
        }
        lsm_skl_warm(sl, keys, n);
        if (n >= 2) {
            keys[1] = keys[0]; /* repeated */
            lsm_skl_warm(sl, keys, n);
        }
    }
    ck_assert(lsm_skl_check(sl));
    lsm_skl_iter_init(&it, sl);
    for (lsm_skl_iter_seek_first(&it); lsm_skl_iter_valid(&it); lsm_skl_iter_next(&it))
        seen++;
    ck_assert_uint_eq(seen, N);
    om_arena_free(a);
}
END_TEST

static Suite *
skiplist_suite(void)
{
    Suite *s = suite_create("lsm-skiplist");
    TCase *tc = tcase_create("skiplist");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, skiplist_orders_and_seeks);
    tcase_add_test(tc, skiplist_concurrent_reader);
    tcase_add_test(tc, skiplist_internal_order);
    tcase_add_test(tc, skiplist_sequential_fill);
    tcase_add_test(tc, memtable_versions_and_tombstones);
    tcase_add_test(tc, memtable_hash_index_matches_oracle);
    tcase_add_test(tc, memtable_hash_index_concurrent_reader);
    tcase_add_test(tc, batch_encode_decode);
    tcase_add_test(tc, skiplist_finger_groups);
    tcase_add_test(tc, skiplist_warm_changes_nothing);
    tcase_add_test(tc, memtable_sorted_batches_match_model);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(skiplist_suite());
}
