/*
 * tests/lsm/test_cache.c -- unit suite for lsm/cache.c, the sharded LRU:
 * lookup/insert/replace, LRU eviction order, the capacity bound, pinning by
 * handles, deleter accounting, counters, and a two-thread smoke test.
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
    ck_assert(has(c, 1)); /* 1 becomes the most recently used */
    put(c, 11, 1);        /* evicts 2, the least recently used */
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
    tcase_add_test(tc, cache_two_threads);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(cache_suite());
}
