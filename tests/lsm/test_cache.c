/*
 * tests/lsm/test_cache.c -- unit suite for lsm/cache.c, the sharded
 * second-chance cache: lookup/insert/replace, eviction order (a hit entry gets
 * a second chance), the capacity bound, pinning by handles, deleter
 * accounting, erase and prune, the prefetch hint, counters, a randomized
 * comparison against a model, and a two-thread smoke test.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/cache.h"
#include "tu.h"
#include "util/coding.h"

static atomic_int deleted;

/* Values are heap uint64s holding the key number; the deleter checks the pairing. */
static void
num_deleter(om_slice key, void *value)
{
    uint64_t *v = value;

    ck_assert_uint_eq(key.n, 8);
    ck_assert_uint_eq(om_get_fixed64(key.p), *v);
    free(v);
    atomic_fetch_add(&deleted, 1);
}

static om_slice
num_key(uint8_t buf[8], uint64_t k)
{
    om_put_fixed64(buf, k);
    return om_slice_make(buf, 8);
}

static void
put(lsm_cache *c, uint64_t k, size_t charge)
{
    uint8_t kb[8];
    uint64_t *v = malloc(sizeof(*v));
    lsm_cache_handle *h;

    *v = k;
    ck_assert_int_eq(lsm_cache_insert(c, num_key(kb, k), v, charge, num_deleter, &h), OM_OK);
    ck_assert_ptr_eq(lsm_cache_value(h), v);
    lsm_cache_release(c, h);
}

static bool
has(lsm_cache *c, uint64_t k)
{
    uint8_t kb[8];
    lsm_cache_handle *h = lsm_cache_lookup(c, num_key(kb, k));

    if (h == NULL)
        return false;
    ck_assert_uint_eq(*(uint64_t *)lsm_cache_value(h), k);
    lsm_cache_release(c, h);
    return true;
}

START_TEST(cache_lru_eviction_order)
{
    lsm_cache *c;

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(10, 0, &c), OM_OK);
    for (uint64_t k = 1; k <= 10; k++)
        put(c, k, 1);
    ck_assert_uint_eq(lsm_cache_usage(c), 10);
    ck_assert(has(c, 1)); /* 1 is hit: it gets a second chance */
    put(c, 11, 1);        /* evicts 2, the oldest entry not hit */
    ck_assert(!has(c, 2));
    ck_assert(has(c, 1));
    ck_assert(has(c, 3));
    ck_assert_int_eq(atomic_load(&deleted), 1);
    /* A heavy entry evicts several old ones. */
    put(c, 12, 5);
    ck_assert_uint_le(lsm_cache_usage(c), 10);
    ck_assert(has(c, 12));
    ck_assert(!has(c, 4));
    ck_assert_uint_eq(lsm_cache_capacity(c), 10);
    lsm_cache_free(c);
    /* Every value was deleted exactly once. */
    ck_assert_int_eq(atomic_load(&deleted), 12);
}
END_TEST

START_TEST(cache_replace_erase_and_counters)
{
    lsm_cache *c;
    uint8_t kb[8];
    uint64_t id1, id2;

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(1000, -1, &c), OM_OK);
    ck_assert(!has(c, 7));
    put(c, 7, 10);
    put(c, 7, 20); /* replaces: the old value is deleted */
    ck_assert_int_eq(atomic_load(&deleted), 1);
    ck_assert_uint_eq(lsm_cache_usage(c), 20);
    ck_assert_uint_eq(lsm_cache_count(c), 1);
    ck_assert(has(c, 7));
    lsm_cache_erase(c, num_key(kb, 7));
    ck_assert_int_eq(atomic_load(&deleted), 2);
    ck_assert(!has(c, 7));
    lsm_cache_erase(c, num_key(kb, 7)); /* absent: no effect */
    ck_assert_uint_eq(lsm_cache_usage(c), 0);
    ck_assert_uint_eq(lsm_cache_hits(c), 1);
    ck_assert_uint_eq(lsm_cache_misses(c), 2);
    id1 = lsm_cache_new_id(c);
    id2 = lsm_cache_new_id(c);
    ck_assert_uint_ne(id1, id2);
    /* Many keys: the hash tables grow and everything stays findable. */
    for (uint64_t k = 0; k < 900; k++)
        put(c, k, 1);
    for (uint64_t k = 0; k < 900; k++)
        ck_assert(has(c, k));
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 902);
    ck_assert_int_eq(lsm_cache_new(10, 9, &c), OM_E_INVALID);
}
END_TEST

START_TEST(cache_pinned_entries_survive)
{
    lsm_cache *c;
    lsm_cache_handle *pinned;
    uint8_t kb[8];

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(4, 0, &c), OM_OK);
    put(c, 1, 1);
    pinned = lsm_cache_lookup(c, num_key(kb, 1));
    ck_assert_ptr_nonnull(pinned);
    for (uint64_t k = 2; k < 50; k++)
        put(c, k, 1);
    /* 1 is pinned, so it stayed in the cache although it is the oldest. */
    ck_assert(has(c, 1));
    ck_assert_uint_le(lsm_cache_usage(c), 4);
    /* Erased while pinned: the value lives until the handle goes. */
    lsm_cache_erase(c, num_key(kb, 1));
    ck_assert(!has(c, 1));
    int before = atomic_load(&deleted);
    ck_assert_uint_eq(*(uint64_t *)lsm_cache_value(pinned), 1);
    lsm_cache_release(c, pinned);
    ck_assert_int_eq(atomic_load(&deleted), before + 1);
    /* Pinned entries count against capacity: with everything pinned usage exceeds it. */
    lsm_cache_handle *hs[8];
    for (uint64_t k = 100; k < 108; k++) {
        uint64_t *v = malloc(sizeof(*v));

        *v = k;
        ck_assert_int_eq(lsm_cache_insert(c, num_key(kb, k), v, 1, num_deleter, &hs[k - 100]),
                         OM_OK);
    }
    ck_assert_uint_eq(lsm_cache_usage(c), 8);
    for (int i = 0; i < 8; i++)
        lsm_cache_release(c, hs[i]);
    put(c, 200, 1); /* the next insert trims back to capacity */
    ck_assert_uint_le(lsm_cache_usage(c), 4);
    lsm_cache_free(c);
}
END_TEST

START_TEST(cache_second_chance)
{
    lsm_cache *c;

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(3, 0, &c), OM_OK);
    put(c, 1, 1);
    put(c, 2, 1);
    put(c, 3, 1);
    ck_assert(has(c, 1)); /* a hit: 1 gets a second chance */
    put(c, 4, 1);         /* the sweep passes 1 (clearing its mark) and evicts 2 */
    ck_assert_int_eq(atomic_load(&deleted), 1);
    ck_assert(!has(c, 2));
    ck_assert(has(c, 1));
    ck_assert(has(c, 4)); /* marks 1 and 4 (the has() calls above and here) */
    put(c, 5, 1);         /* 3 is the oldest and was never hit: it goes */
    ck_assert_int_eq(atomic_load(&deleted), 2);
    ck_assert(!has(c, 3));
    ck_assert(has(c, 1));
    ck_assert(has(c, 4));
    ck_assert(has(c, 5));
    ck_assert_uint_eq(lsm_cache_usage(c), 3);
    /* Everything was hit: the sweep clears every mark in one round (4, 1, 5;
     * 6 is pinned by its insert), then evicts the first one it meets again. */
    put(c, 6, 1);
    ck_assert(!has(c, 4));
    ck_assert(has(c, 1) && has(c, 5) && has(c, 6));
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 6);
}
END_TEST

START_TEST(cache_prune_keeps_pinned)
{
    lsm_cache *c;
    lsm_cache_handle *h;
    uint8_t kb[8];

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(1000, 2, &c), OM_OK);
    for (uint64_t k = 0; k < 50; k++)
        put(c, k, 2);
    h = lsm_cache_lookup(c, num_key(kb, 7));
    ck_assert_ptr_nonnull(h);
    lsm_cache_prune(c);
    ck_assert_int_eq(atomic_load(&deleted), 49);
    ck_assert_uint_eq(lsm_cache_count(c), 1);
    ck_assert_uint_eq(lsm_cache_usage(c), 2);
    ck_assert(has(c, 7));
    ck_assert(!has(c, 8));
    lsm_cache_release(c, h); /* still in the cache: nothing deleted */
    ck_assert_int_eq(atomic_load(&deleted), 49);
    lsm_cache_prune(c);
    ck_assert_int_eq(atomic_load(&deleted), 50);
    ck_assert_uint_eq(lsm_cache_count(c), 0);
    ck_assert_uint_eq(lsm_cache_usage(c), 0);
    lsm_cache_prune(c); /* empty: no effect */
    put(c, 7, 1);       /* the cache works after a prune */
    ck_assert(has(c, 7));
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 51);
}
END_TEST

/* Issue 14: erase_prefix drops the matching entries, pinned ones once released. */
START_TEST(cache_erase_prefix)
{
    lsm_cache *c;
    lsm_cache_handle *h;
    uint8_t kb[8], prefix = 5; /* keys are little-endian: the first byte is k % 256 */

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(10000, 2, &c), OM_OK);
    for (uint64_t k = 0; k < 600; k++)
        put(c, k, 2);
    h = lsm_cache_lookup(c, num_key(kb, 261)); /* 261 % 256 == 5: pinned while erased */
    ck_assert_ptr_nonnull(h);
    lsm_cache_erase_prefix(c, om_slice_make(&prefix, 1));
    ck_assert_int_eq(atomic_load(&deleted), 2); /* 5 and 517; 261 lives while pinned */
    ck_assert_uint_eq(lsm_cache_count(c), 597);
    ck_assert_uint_eq(lsm_cache_usage(c), 597 * 2);
    ck_assert(!has(c, 5));
    ck_assert(!has(c, 261));
    ck_assert(!has(c, 517));
    ck_assert(has(c, 4));
    ck_assert(has(c, 262));
    ck_assert_uint_eq(*(uint64_t *)lsm_cache_value(h), 261);
    lsm_cache_release(c, h);
    ck_assert_int_eq(atomic_load(&deleted), 3);
    lsm_cache_erase_prefix(c, om_slice_make(kb, 8)); /* a whole key: 261, gone already */
    ck_assert_uint_eq(lsm_cache_count(c), 597);
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 600);
}
END_TEST

/* Issue 14: admission by second touch, once the shard is nearly full. */
START_TEST(cache_admission_second_touch)
{
    lsm_cache *c, *plain;
    uint8_t kb[8];

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(100, 0, &plain), OM_OK);
    ck_assert(lsm_cache_admit(plain, num_key(kb, 1))); /* no admission: always */
    lsm_cache_free(plain);

    ck_assert_int_eq(lsm_cache_new(100, 0, &c), OM_OK);
    ck_assert_int_eq(lsm_cache_enable_admission(c, 10), OM_OK);
    ck_assert_int_eq(lsm_cache_enable_admission(c, 10), OM_E_INVALID);
    for (uint64_t k = 0; k < 8; k++) { /* 80 of 100: below 7/8, everything goes in */
        ck_assert(lsm_cache_admit(c, num_key(kb, k)));
        put(c, k, 10);
    }
    ck_assert_uint_eq(lsm_cache_admission_rejected(c), 0);
    put(c, 8, 10);                                    /* 90 >= 87.5: full from now on */
    ck_assert(!lsm_cache_admit(c, num_key(kb, 100))); /* first miss: refused, remembered */
    ck_assert(!lsm_cache_admit(c, num_key(kb, 101)));
    ck_assert(lsm_cache_admit(c, num_key(kb, 100)));  /* second miss: admitted */
    ck_assert(!lsm_cache_admit(c, num_key(kb, 100))); /* forgotten once admitted */
    ck_assert(lsm_cache_admit(c, num_key(kb, 101)));
    ck_assert_uint_eq(lsm_cache_admission_rejected(c), 3);
    ck_assert(has(c, 0));            /* what the cache held stays */
    for (uint64_t k = 0; k < 9; k++) /* room again: everything goes in */
        lsm_cache_erase(c, num_key(kb, k));
    ck_assert(lsm_cache_admit(c, num_key(kb, 200)));
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 9);
}
END_TEST

START_TEST(cache_prefetch_is_harmless)
{
    lsm_cache *c;
    uint8_t kb[8];

    atomic_store(&deleted, 0);
    ck_assert_int_eq(lsm_cache_new(100000, 3, &c), OM_OK);
    /* Empty cache, an empty key, absent keys. */
    lsm_cache_prefetch(c, om_slice_make(kb, 0));
    for (uint64_t k = 0; k < 64; k++)
        lsm_cache_prefetch(c, num_key(kb, k));
    ck_assert_uint_eq(lsm_cache_hits(c) + lsm_cache_misses(c), 0);
    /* Across table growth and erases, then lookups find exactly what is there. */
    for (uint64_t k = 0; k < 5000; k++) {
        lsm_cache_prefetch(c, num_key(kb, k + 1));
        put(c, k, 1);
        if (k % 3 == 0)
            lsm_cache_erase(c, num_key(kb, k));
    }
    for (uint64_t k = 0; k < 5000; k++) {
        lsm_cache_prefetch(c, num_key(kb, k));
        ck_assert(has(c, k) == (k % 3 != 0));
    }
    ck_assert_uint_eq(lsm_cache_hits(c) + lsm_cache_misses(c), 5000);
    lsm_cache_free(c);
    ck_assert_int_eq(atomic_load(&deleted), 5000);
}
END_TEST

/* ---- randomized comparison against a model ---- */

#define M_KEYS 160
#define M_HELD 6
#define M_MAXVALS 40000

/* A model value: the key it belongs to and a serial number. */
typedef struct mval {
    uint64_t key, id;
} mval;

static int m_pins[M_MAXVALS];         /* handles the test holds on value id */
static atomic_int m_freed[M_MAXVALS]; /* times value id was deleted */

static void
mval_deleter(om_slice key, void *value)
{
    mval *v = value;

    ck_assert_uint_eq(key.n, 8);
    ck_assert_uint_eq(om_get_fixed64(key.p), v->key);
    ck_assert_int_eq(m_pins[v->id], 0); /* never deleted while the test pins it */
    atomic_fetch_add(&m_freed[v->id], 1);
    free(v);
}

/* A peek callback: the id of a model value. */
static void
peek_id(void *arg, const void *value)
{
    *(uint64_t *)arg = ((const mval *)value)->id;
}

typedef struct mkey {
    uint64_t cur;  /* id of the value last inserted (0: none yet) */
    size_t charge; /* its charge */
    bool maybe;    /* might be in the cache (false: known absent) */
} mkey;

typedef struct mheld {
    lsm_cache_handle *h;
    uint64_t key, id;
} mheld;

/* Probe every key: each must be absent or hold its current value; usage and count must match. */
static void
model_sweep(lsm_cache *c, mkey *m, const mheld *held, int nheld)
{
    uint8_t kb[8];
    size_t usage = 0, count = 0;

    for (uint64_t k = 0; k < M_KEYS; k++) {
        lsm_cache_handle *h = lsm_cache_lookup(c, num_key(kb, k));
        bool pinned_current = false;

        for (int i = 0; i < nheld; i++)
            if (held[i].key == k && held[i].id == m[k].cur && m[k].maybe)
                pinned_current = true;
        if (h == NULL) {
            ck_assert_msg(!pinned_current, "key %llu pinned but missing", (unsigned long long)k);
            m[k].maybe = false;
            continue;
        }
        ck_assert_msg(m[k].maybe, "key %llu came back after it left", (unsigned long long)k);
        ck_assert_uint_eq(((mval *)lsm_cache_value(h))->id, m[k].cur);
        usage += m[k].charge;
        count++;
        lsm_cache_release(c, h);
    }
    ck_assert_uint_eq(lsm_cache_usage(c), usage);
    ck_assert_uint_eq(lsm_cache_count(c), count);
}

static void
model_run(uint64_t seed, int shard_bits, size_t capacity)
{
    lsm_cache *c;
    mkey m[M_KEYS];
    mheld held[M_HELD];
    int nheld = 0;
    uint64_t rng = seed, next_id = 1;
    uint8_t kb[8];

    memset(m, 0, sizeof(m));
    memset(m_pins, 0, sizeof(m_pins));
    for (int i = 0; i < M_MAXVALS; i++)
        atomic_store(&m_freed[i], 0);
    ck_assert_int_eq(lsm_cache_new(capacity, shard_bits, &c), OM_OK);
    for (int step = 0; step < 12000 && next_id < M_MAXVALS; step++) {
        uint64_t k = tu_rand(&rng) % M_KEYS, op = tu_rand(&rng) % 100;
        lsm_cache_handle *h;

        if (op < 35) { /* insert, sometimes keeping the handle */
            mval *v = malloc(sizeof(*v));
            size_t charge = 1 + tu_rand(&rng) % 4;

            ck_assert_ptr_nonnull(v);
            *v = (mval){k, next_id++};
            ck_assert_int_eq(lsm_cache_insert(c, num_key(kb, k), v, charge, mval_deleter, &h),
                             OM_OK);
            m[k] = (mkey){v->id, charge, true};
            if (nheld < M_HELD && tu_rand(&rng) % 4 == 0) {
                held[nheld++] = (mheld){h, k, v->id};
                m_pins[v->id]++;
            } else {
                lsm_cache_release(c, h);
            }
            /* With nothing pinned, an insert trims its shard back to capacity. */
            if (nheld == 0 && shard_bits == 0)
                ck_assert_uint_le(lsm_cache_usage(c), capacity);
        } else if (op < 65) { /* lookup, sometimes keeping the handle */
            h = lsm_cache_lookup(c, num_key(kb, k));
            if (h == NULL) {
                for (int i = 0; i < nheld; i++)
                    ck_assert(!(held[i].key == k && held[i].id == m[k].cur && m[k].maybe));
                m[k].maybe = false;
                continue;
            }
            ck_assert(m[k].maybe);
            ck_assert_uint_eq(((mval *)lsm_cache_value(h))->id, m[k].cur);
            if (nheld < M_HELD && tu_rand(&rng) % 4 == 0) {
                held[nheld++] = (mheld){h, k, m[k].cur};
                m_pins[m[k].cur]++;
            } else {
                lsm_cache_release(c, h);
            }
        } else if (op < 85) { /* release a held handle */
            if (nheld > 0) {
                int i = (int)(tu_rand(&rng) % (uint64_t)nheld);
                mval *v = lsm_cache_value(held[i].h);

                /* The value is intact until the release, whatever happened to the key. */
                ck_assert_uint_eq(v->key, held[i].key);
                ck_assert_uint_eq(v->id, held[i].id);
                m_pins[held[i].id]--;
                lsm_cache_release(c, held[i].h);
                held[i] = held[--nheld];
            }
        } else if (op < 93) { /* erase */
            lsm_cache_erase(c, num_key(kb, k));
            m[k].maybe = false;
        } else if (op < 94) { /* prune: only pinned current values stay */
            lsm_cache_prune(c);
            for (uint64_t j = 0; j < M_KEYS; j++) {
                bool pinned = false;

                for (int i = 0; i < nheld; i++)
                    pinned |= held[i].key == j && held[i].id == m[j].cur;
                m[j].maybe = m[j].maybe && pinned;
            }
        } else if (op < 95) {
            model_sweep(c, m, held, nheld);
        } else { /* a peek */
            uint64_t got = 0;

            lsm_cache_prefetch(c, num_key(kb, k));
            if (lsm_cache_peek(c, num_key(kb, k), peek_id, &got)) {
                ck_assert(m[k].maybe);
                ck_assert_uint_eq(got, m[k].cur);
            } else {
                m[k].maybe = false;
            }
        }
    }
    model_sweep(c, m, held, nheld);
    while (nheld > 0) {
        nheld--;
        m_pins[held[nheld].id]--;
        lsm_cache_release(c, held[nheld].h);
    }
    lsm_cache_free(c);
    /* Every value was deleted exactly once. */
    for (uint64_t id = 1; id < next_id; id++)
        ck_assert_msg(atomic_load(&m_freed[id]) == 1, "value %llu deleted %d times",
                      (unsigned long long)id, atomic_load(&m_freed[id]));
}

START_TEST(cache_model_random)
{
    uint64_t seed = tu_seed("cache_model_random");

    /* Tight (about a tenth of the keys fit), loose, and sharded. */
    model_run(seed, 0, 40);
    model_run(seed + 1, 0, 250);
    model_run(seed + 2, 2, 120);
}
END_TEST

typedef struct worker {
    lsm_cache *c;
    uint64_t seed;
    long ops;
    int errors;
} worker;

static void *
worker_run(void *arg)
{
    worker *w = arg;
    uint64_t rng = w->seed;
    uint8_t kb[8];

    for (long i = 0; i < w->ops; i++) {
        uint64_t k = tu_rand(&rng) % 2000, op = tu_rand(&rng) % 10;
        lsm_cache_handle *h;

        if (op < 6) {
            h = lsm_cache_lookup(w->c, num_key(kb, k));
            if (h != NULL) {
                if (*(uint64_t *)lsm_cache_value(h) != k)
                    w->errors++;
                lsm_cache_release(w->c, h);
            }
        } else if (op < 9) {
            uint64_t *v = malloc(sizeof(*v));

            *v = k;
            if (lsm_cache_insert(w->c, num_key(kb, k), v, 1 + k % 4, num_deleter, &h) != OM_OK) {
                free(v);
                w->errors++;
                continue;
            }
            if (*(uint64_t *)lsm_cache_value(h) != k)
                w->errors++;
            lsm_cache_release(w->c, h);
        } else {
            lsm_cache_erase(w->c, num_key(kb, k));
        }
    }
    return NULL;
}

START_TEST(cache_two_threads)
{
    uint64_t seed = tu_seed("cache_two_threads");
    lsm_cache *c;
    worker w[2];
    pthread_t t[2];

    ck_assert_int_eq(lsm_cache_new(1500, 3, &c), OM_OK);
    for (int i = 0; i < 2; i++) {
        w[i] = (worker){c, seed + (uint64_t)i * 7919, 300000, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    ck_assert_int_eq(w[0].errors + w[1].errors, 0);
    ck_assert_uint_le(lsm_cache_usage(c), 1500);
    ck_assert_uint_gt(lsm_cache_hits(c), 0);
    ck_assert_uint_eq(lsm_cache_hits(c) + lsm_cache_misses(c) > 300000, 1);
    lsm_cache_free(c);
}
END_TEST

static Suite *
cache_suite(void)
{
    Suite *s = suite_create("lsm-cache");
    TCase *tc = tcase_create("cache");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cache_lru_eviction_order);
    tcase_add_test(tc, cache_replace_erase_and_counters);
    tcase_add_test(tc, cache_pinned_entries_survive);
    tcase_add_test(tc, cache_second_chance);
    tcase_add_test(tc, cache_prune_keeps_pinned);
    tcase_add_test(tc, cache_erase_prefix);
    tcase_add_test(tc, cache_admission_second_touch);
    tcase_add_test(tc, cache_prefetch_is_harmless);
    tcase_add_test(tc, cache_model_random);
    tcase_add_test(tc, cache_two_threads);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(cache_suite());
}
