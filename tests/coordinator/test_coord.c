/*
 * tests/coordinator/test_coord.c -- unit suite for coordinator/ internals
 * that need no processes: continuation tokens, list page sizing, the ring
 * file (atomic save, load, damage detection), the --shards parser, the
 * size of the answer table and the legal moves between migration phases.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator/coord_int.h"
#include "coordinator/migrate_int.h"
#include "tu.h"

#define ERRLEN 256

static const uint8_t secret_a[COORD_SECRET_LEN] = "0123456789abcdef0123456789abcde";
static const uint8_t secret_b[COORD_SECRET_LEN] = "0123456789abcdef0123456789abcdX";

static om_slice
S(const char *s)
{
    return om_slice_from_str(s);
}

static char *
token_of(const uint8_t *secret, const char *b, const char *p, const char *d, const char *resume)
{
    om_buf t = OM_BUF_INIT;

    ck_assert_int_eq(coord_token_encode(secret, S(b), S(p), S(d), S(resume), &t), OM_OK);
    ck_assert_int_eq(om_buf_append_byte(&t, 0), OM_OK);
    return (char *)om_buf_take(&t, &(size_t){0});
}

START_TEST(token_round_trip_and_rejections)
{
    char err[ERRLEN];
    om_buf r = OM_BUF_INIT;
    const char *resume = "photos/2024/\xc3\xa9t\xc3\xa9/cat.jpg";
    char *tok = token_of(secret_a, "bucket-1", "photos/", "/", resume);

    /* printable, opaque */
    ck_assert(strncmp(tok, "c1", 2) == 0);
    for (const char *p = tok; *p; p++)
        ck_assert(*p > 0x20 && *p < 0x7f);
    ck_assert_ptr_null(strstr(tok, "photos"));

    ck_assert_int_eq(coord_token_decode(secret_a, S("bucket-1"), S("photos/"), S("/"), tok, &r, err,
                                        sizeof(err)),
                     OM_OK);
    ck_assert_uint_eq(r.n, strlen(resume));
    ck_assert_int_eq(memcmp(r.p, resume, r.n), 0);

    /* another coordinator's secret: forged */
    ck_assert_int_eq(coord_token_decode(secret_b, S("bucket-1"), S("photos/"), S("/"), tok, &r, err,
                                        sizeof(err)),
                     OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "failed validation"));
    /* used with other parameters */
    ck_assert_int_eq(coord_token_decode(secret_a, S("bucket-1"), S("photos/x"), S("/"), tok, &r,
                                        err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "another bucket"));
    ck_assert_int_eq(coord_token_decode(secret_a, S("bucket-2"), S("photos/"), S("/"), tok, &r, err,
                                        sizeof(err)),
                     OM_E_INVALID);
    ck_assert_int_eq(
        coord_token_decode(secret_a, S("bucket-1"), S("photos/"), S(""), tok, &r, err, sizeof(err)),
        OM_E_INVALID);

    /* every single-character change is caught */
    size_t n = strlen(tok);
    int caught = 0, tried = 0;
    for (size_t i = 0; i < n; i++) {
        char save = tok[i];
        tok[i] = save == 'A' ? 'B' : 'A';
        tried++;
        caught += coord_token_decode(secret_a, S("bucket-1"), S("photos/"), S("/"), tok, &r, err,
                                     sizeof(err)) == OM_E_INVALID;
        tok[i] = save;
    }
    ck_assert_int_eq(caught, tried);
    /* truncations */
    for (size_t k = 0; k < n; k++) {
        char *t = strndup(tok, k);
        ck_assert_int_eq(coord_token_decode(secret_a, S("bucket-1"), S("photos/"), S("/"), t, &r,
                                            err, sizeof(err)),
                         OM_E_INVALID);
        free(t);
    }
    /* garbage */
    const char *bad[] = {"",      "hello",     "c1", "c1!!!!", "c1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         "C1abc", "c1\xff\xfe"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(coord_token_decode(secret_a, S("bucket-1"), S("photos/"), S("/"), bad[i],
                                            &r, err, sizeof(err)),
                         OM_E_INVALID);
        ck_assert_ptr_nonnull(strstr(err, "continuation_token"));
    }
    free(tok);
    om_buf_free(&r);
}
END_TEST

START_TEST(list_page_sizing)
{
    /* one shard: exactly max_keys; several: about max_keys / n plus slack, never more */
    ck_assert_uint_eq(coord_list_shard_page(1000, 1), 1000);
    ck_assert_uint_eq(coord_list_shard_page(1000, 8), 125 + 31 + 4);
    ck_assert_uint_le(coord_list_shard_page(1000, 16) * 16, 2 * 1000);
    ck_assert_uint_le(coord_list_shard_page(1000, 64) * 64, 3 * 1000);
    ck_assert_uint_eq(coord_list_shard_page(1, 8), 1);
    ck_assert_uint_eq(coord_list_shard_page(3, 3), 3);
    for (uint32_t m = 1; m <= 1000; m += 37)
        for (size_t n = 1; n <= 64; n *= 2) {
            uint32_t p = coord_list_shard_page(m, n);
            ck_assert_uint_ge(p, 1);
            ck_assert_uint_le(p, m);
            ck_assert_uint_ge((uint64_t)p * n, m); /* together they can fill a page */
        }
}
END_TEST

START_TEST(ring_file_round_trip_and_damage)
{
    const char *dir = tu_tmpdir();
    char err[ERRLEN], path[4096];
    ring *r, *p, *cur = NULL, *pend = NULL;

    ck_assert_int_eq(coord_ring_store_load(dir, &cur, &pend, err, sizeof(err)), OM_E_NOTFOUND);
    ck_assert_int_eq(coord_parse_shards("s1=127.0.0.1:7001, s2=127.0.0.1:7002/3 ,s3=h:1", 64, &r,
                                        err, sizeof(err)),
                     OM_OK);
    ck_assert_uint_eq(ring_shard_count(r), 3);
    ck_assert_uint_eq(ring_epoch(r), 1);
    ck_assert_uint_eq(ring_shard_at(r, 1)->weight, 3);
    ck_assert_int_eq(coord_ring_store_save(dir, r, NULL), OM_OK);
    ck_assert_int_eq(coord_ring_store_load(dir, &cur, &pend, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(r, cur));
    ck_assert_ptr_null(pend);
    ring_unref(cur);

    /* with a pending ring, overwriting the previous file */
    ring_shard ns = {"s4", "h:2", 1};
    ck_assert_int_eq(ring_add_node(r, &ns, &p, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(coord_ring_store_save(dir, r, p), OM_OK);
    ck_assert_int_eq(coord_ring_store_load(dir, &cur, &pend, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(r, cur));
    ck_assert(ring_equal(p, pend));
    ring_unref(cur);
    ring_unref(pend);
    snprintf(path, sizeof(path), "%s/RING.tmp", dir);
    ck_assert_int_ne(access(path, F_OK), 0); /* no temporary left behind */

    /* any flipped byte is detected */
    snprintf(path, sizeof(path), "%s/RING", dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    for (off_t off = 0; off < sb.st_size; off += 7) {
        int fd = open(path, O_RDWR);
        uint8_t b;
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, &b, 1, off), 1);
        b ^= 0x20;
        ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
        ck_assert_int_eq(coord_ring_store_load(dir, &cur, &pend, err, sizeof(err)), OM_E_CORRUPT);
        ck_assert(strstr(err, "RING") != NULL);
        b ^= 0x20;
        ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
        close(fd);
    }
    /* truncated */
    ck_assert_int_eq(truncate(path, sb.st_size - 3), 0);
    ck_assert_int_eq(coord_ring_store_load(dir, &cur, &pend, err, sizeof(err)), OM_E_CORRUPT);
    ring_unref(p);
    ring_unref(r);
}
END_TEST

START_TEST(shards_parser_rejects_bad_lists)
{
    char err[ERRLEN];
    ring *r = NULL;
    static const struct {
        const char *spec;
        const char *needle;
    } bad[] = {
        {"", "no shards"},
        {"s1", "id=host:port"},
        {"s1=localhost", "host:port"},
        {"s1=h:1/0", "weight 0"},
        {"s1=h:1/x", "bad weight"},
        {"s1=h:1/2000", "bad weight"},
        {"s1=h:1,s1=h:2", "more than once"},
        {"s1=h:1,s2=h:1", "more than one shard"},
        {"=h:1", "empty"},
        {"s 1=h:1", "s 1"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(coord_parse_shards(bad[i].spec, 0, &r, err, sizeof(err)), OM_E_INVALID);
        ck_assert_msg(strstr(err, bad[i].needle) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
                      bad[i].spec, err, bad[i].needle);
        ck_assert_ptr_null(r);
    }
}
END_TEST

START_TEST(secret_persists)
{
    const char *dir = tu_tmpdir();
    uint8_t a[COORD_SECRET_LEN], b[COORD_SECRET_LEN];

    ck_assert_int_eq(coord_secret_load(dir, a), OM_OK);
    ck_assert_int_eq(coord_secret_load(dir, b), OM_OK);
    ck_assert_int_eq(memcmp(a, b, sizeof(a)), 0);
}
END_TEST

/* The answer table (metrics.c) has one column per wire Status. */
START_TEST(answer_table_covers_every_status)
{
    const ProtobufCEnumDescriptor *d = &objmeta__status__descriptor;

    ck_assert_uint_eq(d->n_values, COORD_NSTATUS);
    for (unsigned i = 0; i < d->n_values; i++)
        ck_assert_int_lt(d->values[i].value, COORD_NSTATUS);
    ck_assert_int_lt(COORD_STATUS_UNKNOWN, COORD_NSTATUS);
}
END_TEST

/* The change's phases move only along the legal edges (coord_mig_set_phase). */
START_TEST(mig_phase_legal_moves)
{
    coord_mig m;

    memset(&m, 0, sizeof(m));
    coord_mig_set_phase(&m, MIG_COPYING);
    coord_mig_set_phase(&m, MIG_CLEANUP);
    coord_mig_set_phase(&m, MIG_COPYING); /* a switch that could not be persisted */
    coord_mig_set_phase(&m, MIG_CLEANUP);
    coord_mig_set_phase(&m, MIG_IDLE);
    coord_mig_set_phase(&m, MIG_COPYING);
    coord_mig_set_phase(&m, MIG_IDLE); /* a change that could not start */
    ck_assert_int_eq(m.phase, MIG_IDLE);
}
END_TEST

#if OM_ASSERTS_ON
/* A change cannot jump from idle to cleanup: the check aborts. */
START_TEST(mig_phase_illegal_move_aborts)
{
    coord_mig m;

    memset(&m, 0, sizeof(m));
    coord_mig_set_phase(&m, MIG_CLEANUP);
}
END_TEST
#endif

static Suite *
coord_suite(void)
{
    Suite *s = suite_create("coordinator");
    TCase *tc = tcase_create("unit");

    tcase_add_test(tc, token_round_trip_and_rejections);
    tcase_add_test(tc, list_page_sizing);
    tcase_add_test(tc, ring_file_round_trip_and_damage);
    tcase_add_test(tc, shards_parser_rejects_bad_lists);
    tcase_add_test(tc, secret_persists);
    tcase_add_test(tc, answer_table_covers_every_status);
    tcase_add_test(tc, mig_phase_legal_moves);
#if OM_ASSERTS_ON
    tcase_add_test_raise_signal(tc, mig_phase_illegal_move_aborts, SIGABRT);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(coord_suite());
}
