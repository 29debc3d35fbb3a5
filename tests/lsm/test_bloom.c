/*
 * tests/lsm/test_bloom.c -- unit suite for lsm/bloom.c: no false negatives,
 * and the measured false-positive rate at 10 bits/key over 100k keys (must be
 * under 2%; the design target is about 1%).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/bloom.h"
#include "tu.h"
#include "util/checksum.h"

static om_slice
bloom_key(char *buf, size_t n, const char *prefix, uint64_t i)
{
    int len = snprintf(buf, n, "%s-%04llu/photos/2024/img-%08llu.jpg", prefix,
                       (unsigned long long)(i % 97), (unsigned long long)i);

    return om_slice_make(buf, (size_t)len);
}

/* Build a filter of n keys at bits/key and return the measured FP rate over `probes` others. */
static double
measure(int bits, uint64_t n, uint64_t probes, uint64_t salt)
{
    lsm_bloom_builder b;
    om_buf f = OM_BUF_INIT;
    char buf[128];
    uint64_t fp = 0;
    lsm_bloom_probe probe;

    lsm_bloom_builder_init(&b, bits);
    for (uint64_t i = 0; i < n; i++)
        ck_assert_int_eq(lsm_bloom_builder_add(&b, bloom_key(buf, sizeof(buf), "in", i ^ salt)),
                         OM_OK);
    ck_assert_uint_eq(lsm_bloom_builder_count(&b), n);
    ck_assert_int_eq(lsm_bloom_builder_finish(&b, &f), OM_OK);
    ck_assert_int_eq(lsm_bloom_check_filter(om_buf_slice(&f)), OM_OK);
    /* bits/key rounded up to whole 64-byte lines, plus the probe-count byte. */
    ck_assert_uint_le(f.n, (n * (uint64_t)bits + 7) / 8 + 65);
    ck_assert_uint_eq((f.n - 1) % 64, 0);
    for (uint64_t i = 0; i < n; i++)
        ck_assert_msg(
            lsm_bloom_may_contain(om_buf_slice(&f), bloom_key(buf, sizeof(buf), "in", i ^ salt)),
            "false negative for key %llu", (unsigned long long)i);
    lsm_bloom_probe_init(&probe, om_buf_slice(&f));
    for (uint64_t i = 0; i < probes; i++) {
        om_slice k = bloom_key(buf, sizeof(buf), "out", i ^ salt);
        bool maybe = lsm_bloom_may_contain(om_buf_slice(&f), k);

        /* The decoded probe a table keeps answers exactly like the filter bytes. */
        ck_assert(lsm_bloom_probe_may_contain(&probe, om_hash64(k.p, k.n)) == maybe);
        fp += maybe;
    }
    lsm_bloom_builder_fini(&b);
    om_buf_free(&f);
    return (double)fp / (double)probes;
}

START_TEST(bloom_fp_rate_10_bits)
{
    uint64_t seed = tu_seed("bloom_fp_rate_10_bits");
    double rate = measure(10, 100000, 100000, seed);

    printf("bloom: 10 bits/key, 100000 keys: false-positive rate %.3f%%\n", rate * 100);
    ck_assert_msg(rate < 0.02, "false-positive rate %.3f%% >= 2%%", rate * 100);
    ck_assert_msg(rate > 0.001, "rate %.4f%% implausibly low: is the filter probing?", rate * 100);
}
END_TEST

START_TEST(bloom_more_bits_fewer_false_positives)
{
    uint64_t seed = tu_seed("bloom_more_bits_fewer_false_positives");
    double r4 = measure(4, 20000, 50000, seed), r16 = measure(16, 20000, 50000, seed);

    printf("bloom: 4 bits/key %.3f%%, 16 bits/key %.3f%%\n", r4 * 100, r16 * 100);
    ck_assert(r16 < r4);
    ck_assert(r16 < 0.005);
}
END_TEST

START_TEST(bloom_small_and_malformed)
{
    lsm_bloom_builder b;
    om_buf f = OM_BUF_INIT;
    uint8_t junk[65] = {0};

    /* No keys: a minimal filter that says "absent" to everything. */
    lsm_bloom_builder_init(&b, 10);
    ck_assert_int_eq(lsm_bloom_builder_finish(&b, &f), OM_OK);
    ck_assert_uint_eq(f.n, 65);
    ck_assert(!lsm_bloom_may_contain(om_buf_slice(&f), om_slice_from_str("x")));
    /* Duplicates added consecutively count once. */
    om_buf_reset(&f);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(lsm_bloom_builder_add(&b, om_slice_from_str("same")), OM_OK);
    ck_assert_uint_eq(lsm_bloom_builder_count(&b), 1);
    ck_assert_int_eq(lsm_bloom_builder_finish(&b, &f), OM_OK);
    ck_assert(lsm_bloom_may_contain(om_buf_slice(&f), om_slice_from_str("same")));
    lsm_bloom_builder_fini(&b);
    om_buf_free(&f);
    /* Malformed filters are reported and answer "maybe" (never a false negative). */
    ck_assert_int_eq(lsm_bloom_check_filter(om_slice_make(junk, 65)), OM_E_CORRUPT); /* k = 0 */
    junk[64] = 31;
    ck_assert_int_eq(lsm_bloom_check_filter(om_slice_make(junk, 65)), OM_E_CORRUPT);
    junk[64] = 6;
    ck_assert_int_eq(lsm_bloom_check_filter(om_slice_make(junk, 65)), OM_OK);
    /* Not whole lines. */
    junk[40] = 6;
    ck_assert_int_eq(lsm_bloom_check_filter(om_slice_make(junk, 41)), OM_E_CORRUPT);
    ck_assert_int_eq(lsm_bloom_check_filter(om_slice_make(junk, 3)), OM_E_CORRUPT);
    ck_assert(lsm_bloom_may_contain(om_slice_make(junk, 41), om_slice_from_str("x")));
}
END_TEST

static Suite *
bloom_suite(void)
{
    Suite *s = suite_create("lsm-bloom");
    TCase *tc = tcase_create("bloom");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bloom_fp_rate_10_bits);
    tcase_add_test(tc, bloom_more_bits_fewer_false_positives);
    tcase_add_test(tc, bloom_small_and_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(bloom_suite());
}
