/*
 * tests/lsm/test_fuzz_smoke.c -- runs the SSTable fuzz target's entry point
 * (fuzz_sstable.c, linked in) over a few hundred generated inputs in every
 * build, so the fuzzer's code paths and its oracles run in CI without clang:
 * valid tables and damaged copies of them, random bytes, key/value lists for
 * the writer round trip, raw blocks, and targeted single-byte damage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/lsm_int.h"
#include "lsm/sstable.h"
#include "tu.h"
#include "util/coding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A payload of n random length-prefixed key/value pairs. */
static void
gen_pairs(om_buf *b, uint64_t *rng, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t k[24], v[80];
        size_t kl = 1 + tu_rand(rng) % sizeof(k), vl = tu_rand(rng) % sizeof(v);

        for (size_t j = 0; j < kl; j++)
            k[j] = (uint8_t)('a' + tu_rand(rng) % 6);
        for (size_t j = 0; j < vl; j++)
            v[j] = (uint8_t)(j % 3 == 0 ? tu_rand(rng) : 'v');
        ck_assert_int_eq(om_buf_put_lenpref(b, om_slice_make(k, kl)), OM_OK);
        ck_assert_int_eq(om_buf_put_lenpref(b, om_slice_make(v, vl)), OM_OK);
    }
}

START_TEST(fuzz_entry_smoke)
{
    uint64_t rng = tu_seed("fuzz_entry_smoke");
    om_buf in = OM_BUF_INIT, table = OM_BUF_INIT;
    int runs = 0;

    /* Mode 1 (writer round trip) and mode 3 (targeted damage). */
    for (int i = 0; i < 200; i++) {
        om_buf_reset(&in);
        ck_assert_int_eq(
            om_buf_append_byte(&in, (uint8_t)((tu_rand(&rng) % 64) * 4 + (i % 2 ? 1 : 3))), OM_OK);
        if (i % 2 == 0) {
            ck_assert_int_eq(om_buf_put_fixed32(&in, (uint32_t)tu_rand(&rng)), OM_OK);
            ck_assert_int_eq(om_buf_append_byte(&in, (uint8_t)tu_rand(&rng)), OM_OK);
        }
        gen_pairs(&in, &rng, (int)(tu_rand(&rng) % 60));
        LLVMFuzzerTestOneInput(in.p, in.n);
        runs++;
    }
    /* Mode 0: a real table (built by the writer through the public table API), intact and damaged.
     */
    {
        const char *dir = tu_tmpdir();
        char path[512];
        lsm_table_opts o;
        lsm_sst_writer *w;
        lsm_sst_props p;
        om_buf k = OM_BUF_INIT;
        FILE *f;
        long len;

        lsm_table_opts_init(&o, NULL, NULL, NULL);
        o.block_size = 256;
        snprintf(path, sizeof(path), "%s/t.sst", dir);
        ck_assert_int_eq(lsm_sst_writer_open(lsm_env_posix(), path, &o, &w), OM_OK);
        for (int i = 0; i < 200; i++) {
            char uk[32];

            snprintf(uk, sizeof(uk), "key-%05d", i);
            om_buf_reset(&k);
            ck_assert_int_eq(lsm_ikey_append(&k, om_slice_from_str(uk), 9, LSM_TYPE_VAL), OM_OK);
            ck_assert_int_eq(lsm_sst_writer_add(w, om_buf_slice(&k), om_slice_from_str(uk)), OM_OK);
        }
        ck_assert_int_eq(lsm_sst_writer_finish(w, &p), OM_OK);
        lsm_sst_props_fini(&p);
        om_buf_free(&k);
        f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        fseek(f, 0, SEEK_SET);
        ck_assert_int_eq(om_buf_reserve(&table, (size_t)len + 1), OM_OK);
        table.p[0] = 0; /* mode 0 */
        ck_assert_uint_eq(fread(table.p + 1, 1, (size_t)len, f), (size_t)len);
        table.n = (size_t)len + 1;
        fclose(f);
    }
    LLVMFuzzerTestOneInput(table.p, table.n);
    runs++;
    for (int i = 0; i < 200; i++) {
        om_buf_set(&in, om_buf_slice(&table));
        for (int j = 0; j < 1 + i % 4; j++)
            in.p[1 + tu_rand(&rng) % (in.n - 1)] ^= (uint8_t)(1 + tu_rand(&rng) % 255);
        if (i % 5 == 0)
            in.n = 1 + tu_rand(&rng) % (in.n - 1);
        LLVMFuzzerTestOneInput(in.p, in.n);
        runs++;
    }
    /* Modes 0 and 2 on random bytes, including a block with a plausible restart trailer. */
    for (int i = 0; i < 200; i++) {
        size_t n = 1 + tu_rand(&rng) % 300;

        om_buf_reset(&in);
        for (size_t j = 0; j < n; j++)
            ck_assert_int_eq(om_buf_append_byte(&in, (uint8_t)tu_rand(&rng)), OM_OK);
        in.p[0] = (uint8_t)((in.p[0] & ~3u) | (i % 2 ? 2u : 0u));
        if (i % 2 && n > 9)
            om_put_fixed32(in.p + n - 4, 1 + (uint32_t)(tu_rand(&rng) % 2));
        LLVMFuzzerTestOneInput(in.p, in.n);
        runs++;
    }
    printf("fuzz smoke: %d inputs\n", runs);
    om_buf_free(&in);
    om_buf_free(&table);
}
END_TEST

static Suite *
smoke_suite(void)
{
    Suite *s = suite_create("lsm-fuzz-smoke");
    TCase *tc = tcase_create("smoke");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fuzz_entry_smoke);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(smoke_suite());
}
