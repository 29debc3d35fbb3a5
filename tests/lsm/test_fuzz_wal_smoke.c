/*
 * tests/lsm/test_fuzz_wal_smoke.c -- runs the WAL fuzz target's entry point
 * (fuzz_wal.c) over a few hundred inputs in the normal build: valid logs of
 * batches and edits, then truncated, bit-flipped, spliced and random
 * variants. The seed is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/batch.h"
#include "lsm/manifest.h"
#include "lsm/wal_format.h"
#include "tu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A valid log image of batches and edits, via a file written with the real writer. */
static void
make_log(om_buf *out, uint64_t *rnd)
{
    char path[512];
    lsm_env *env = lsm_env_posix();
    lsm_wal_writer *w;
    lsm_rfile *f;
    uint64_t size;
    size_t got;
    int n = 1 + (int)(tu_rand(rnd) % 20);

    snprintf(path, sizeof(path), "%s/fuzz.log", tu_tmpdir());
    ck_assert_int_eq(lsm_wal_writer_open(env, path, &w), OM_OK);
    for (int i = 0; i < n; i++) {
        om_buf rec = OM_BUF_INIT;

        if (tu_rand(rnd) % 2) {
            lsm_batch *b;
            int ops = (int)(tu_rand(rnd) % 50);

            lsm_batch_new(&b);
            for (int j = 0; j < ops; j++) {
                char k[16], v[3000];
                size_t vn = tu_rand(rnd) % sizeof(v);

                memset(v, 'v', vn);
                snprintf(k, sizeof(k), "k%d", j);
                lsm_batch_put(b, om_slice_from_str(k), om_slice_make(v, vn));
            }
            lsm_batch_set_seq(b, tu_rand(rnd) % 1000);
            om_buf_set(&rec, lsm_batch_rep(b));
            lsm_batch_free(b);
        } else {
            lsm_edit e;
            om_buf a = OM_BUF_INIT;

            lsm_edit_init(&e);
            lsm_edit_set_log_number(&e, tu_rand(rnd) % 100);
            lsm_ikey_append(&a, om_slice_from_str("key"), 5, LSM_TYPE_VAL);
            lsm_edit_add_file(&e, 1, 7, 100, om_buf_slice(&a), om_buf_slice(&a));
            lsm_edit_del_file(&e, 2, 9);
            lsm_edit_encode(&e, &rec);
            lsm_edit_fini(&e);
            om_buf_free(&a);
        }
        ck_assert_int_eq(lsm_wal_add(w, om_buf_slice(&rec)), OM_OK);
        om_buf_free(&rec);
    }
    ck_assert_int_eq(lsm_wal_writer_close(w, false), OM_OK);
    ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
    om_buf_reset(out);
    ck_assert_int_eq(om_buf_reserve(out, size + 1), OM_OK);
    ck_assert_int_eq(lsm_rfile_read(f, 0, size, out->p, &got), OM_OK);
    out->n = got;
    lsm_rfile_close(f);
}

START_TEST(fuzz_wal_smoke)
{
    uint64_t rnd = tu_seed("fuzz_wal_smoke");
    om_buf log = OM_BUF_INIT, m = OM_BUF_INIT;
    int runs = 0;

    for (int i = 0; i < 40; i++) {
        make_log(&log, &rnd);
        LLVMFuzzerTestOneInput(log.p, log.n);
        runs++;
        for (int j = 0; j < 8; j++) {
            om_buf_set(&m, om_buf_slice(&log));
            switch (j % 4) {
            case 0: /* truncation */
                m.n = log.n > 0 ? tu_rand(&rnd) % log.n : 0;
                break;
            case 1: /* bit flips */
                for (int k = 0; k < 1 + (int)(tu_rand(&rnd) % 4) && m.n > 0; k++)
                    m.p[tu_rand(&rnd) % m.n] ^= (uint8_t)(1u << (tu_rand(&rnd) % 8));
                break;
            case 2: /* a splice of the log with itself */
                if (m.n > 0) {
                    size_t cut = tu_rand(&rnd) % m.n;

                    om_buf_append(&m, log.p + cut, log.n - cut);
                }
                break;
            default: /* random bytes over a region */
                for (size_t k = 0; k < 64 && m.n > 0; k++)
                    m.p[tu_rand(&rnd) % m.n] = (uint8_t)tu_rand(&rnd);
                break;
            }
            LLVMFuzzerTestOneInput(m.p, m.n);
            runs++;
        }
    }
    /* Pure noise. */
    for (int i = 0; i < 60; i++) {
        size_t n = tu_rand(&rnd) % 70000;

        om_buf_reset(&m);
        om_buf_reserve(&m, n + 1);
        for (size_t k = 0; k < n; k++)
            m.p[k] = (uint8_t)tu_rand(&rnd);
        m.n = n;
        LLVMFuzzerTestOneInput(m.p, m.n);
        runs++;
    }
    ck_assert_int_ge(runs, 400);
    om_buf_free(&log);
    om_buf_free(&m);
}
END_TEST

static Suite *
smoke_suite(void)
{
    Suite *s = suite_create("lsm-fuzz-wal-smoke");
    TCase *tc = tcase_create("smoke");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fuzz_wal_smoke);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(smoke_suite());
}
