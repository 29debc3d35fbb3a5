/*
 * tests/lsm/test_wal.c -- the log format: round trips across block
 * boundaries (file and memory), a torn tail at every cut point of the last
 * record (end of log, truncation offset reported), and bit flips in the
 * middle of a log (OM_E_CORRUPT, never a wrong record), and preallocated
 * logs: a zero tail is the clean end, a torn record before it is torn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/env.h"
#include "lsm/wal_format.h"
#include "tu.h"

typedef struct log_img {
    om_buf bytes;
    om_buf *recs;
    uint64_t *start, *end; /* [start, end) of each record's framing */
    int n;
} log_img;

static void
img_free(log_img *l)
{
    for (int i = 0; i < l->n; i++)
        om_buf_free(&l->recs[i]);
    free(l->recs);
    free(l->start);
    free(l->end);
    om_buf_free(&l->bytes);
}

/* Write records of the given sizes (content from rnd or the fill byte) to a file, read it back. */
static void
img_build(log_img *l, const size_t *sizes, int n, uint64_t *rnd, int fill)
{
    const char *dir = tu_tmpdir();
    char path[512];
    lsm_env *env = lsm_env_posix();
    lsm_wal_writer *w;
    lsm_rfile *f;
    uint64_t size;
    size_t got;

    memset(l, 0, sizeof(*l));
    l->recs = calloc((size_t)n, sizeof(om_buf));
    l->start = calloc((size_t)n, sizeof(uint64_t));
    l->end = calloc((size_t)n, sizeof(uint64_t));
    l->n = n;
    snprintf(path, sizeof(path), "%s/000001.log", dir);
    ck_assert_int_eq(lsm_wal_writer_open(env, path, &w), OM_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(om_buf_reserve(&l->recs[i], sizes[i] + 1), OM_OK);
        for (size_t j = 0; j < sizes[i]; j++)
            l->recs[i].p[j] = fill >= 0 ? (uint8_t)fill : (uint8_t)tu_rand(rnd);
        l->recs[i].n = sizes[i];
        l->start[i] = lsm_wal_size(w);
        ck_assert_int_eq(lsm_wal_add(w, om_buf_slice(&l->recs[i])), OM_OK);
        l->end[i] = lsm_wal_size(w);
        if (i % 3 == 0)
            ck_assert_int_eq(lsm_wal_flush(w), OM_OK);
    }
    ck_assert_int_eq(lsm_wal_writer_close(w, true), OM_OK);
    ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
    ck_assert_uint_eq(size, l->end[n - 1]);
    ck_assert_int_eq(om_buf_reserve(&l->bytes, size + 1), OM_OK);
    ck_assert_int_eq(lsm_rfile_read(f, 0, size, l->bytes.p, &got), OM_OK);
    ck_assert_uint_eq(got, size);
    l->bytes.n = size;
    lsm_rfile_close(f);

    /* The file reader agrees with the in-memory reader. */
    lsm_wal_reader *r;
    om_slice rec;
    ck_assert_int_eq(lsm_wal_reader_open(env, path, &r), OM_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(lsm_wal_read(r, &rec), OM_OK);
        ck_assert(om_slice_eq(rec, om_buf_slice(&l->recs[i])));
    }
    ck_assert_int_eq(lsm_wal_read(r, &rec), OM_E_NOTFOUND);
    ck_assert(!lsm_wal_reader_torn(r));
    ck_assert_uint_eq(lsm_wal_reader_offset(r), size);
    lsm_wal_reader_close(r);
}

/*
 * Read an image prefix/variant: returns the number of records read intact;
 * *st is the final status. Fails the test if a record differs.
 */
static int
img_read(const log_img *l, const uint8_t *p, size_t n, om_status *st, bool *torn, uint64_t *off)
{
    lsm_wal_reader *r;
    om_slice rec;
    int i = 0;

    ck_assert_int_eq(lsm_wal_reader_mem(p, n, &r), OM_OK);
    while ((*st = lsm_wal_read(r, &rec)) == OM_OK) {
        ck_assert_int_lt(i, l->n);
        ck_assert_msg(om_slice_eq(rec, om_buf_slice(&l->recs[i])), "record %d differs", i);
        i++;
    }
    *torn = lsm_wal_reader_torn(r);
    *off = lsm_wal_reader_offset(r);
    lsm_wal_reader_close(r);
    return i;
}

START_TEST(wal_roundtrip_spans_blocks)
{
    uint64_t rnd = tu_seed("wal_roundtrip_spans_blocks");
    size_t sizes[] = {0,
                      1,
                      100,
                      LSM_WAL_BLOCK_SIZE - 7 - 100 - 1 - 0 - 21,
                      32761,
                      32768,
                      10,
                      100000,
                      7,
                      0,
                      65536,
                      3,
                      LSM_WAL_BLOCK_SIZE * 3 + 5};
    log_img l;
    om_status st;
    bool torn;
    uint64_t off;

    img_build(&l, sizes, (int)(sizeof(sizes) / sizeof(sizes[0])), &rnd, -1);
    ck_assert_int_eq(img_read(&l, l.bytes.p, l.bytes.n, &st, &torn, &off), l.n);
    ck_assert_int_eq(st, OM_E_NOTFOUND);
    ck_assert(!torn);
    ck_assert_uint_gt(l.bytes.n, 4 * LSM_WAL_BLOCK_SIZE);
    img_free(&l);
}
END_TEST

/* Cut the log at every point inside the last record: a torn tail, never an error. */
static void
torn_every_cut(const size_t *sizes, int n, size_t step)
{
    uint64_t rnd = 1;
    log_img l;
    om_status st;
    bool torn;
    uint64_t off;

    om_buf pad = OM_BUF_INIT;
    const size_t zeros = 3 * LSM_WAL_BLOCK_SIZE + 11;

    img_build(&l, sizes, n, &rnd, 'x');
    for (uint64_t cut = l.start[n - 1]; cut < l.end[n - 1]; cut += step) {
        int got = img_read(&l, l.bytes.p, (size_t)cut, &st, &torn, &off);
        bool written = false;

        /*
         * A cut at the record's start is a clean end; so is one that kept
         * only zero bytes of it (a zero tail: see the padded case below).
         */
        for (uint64_t i = l.start[n - 1]; i < cut; i++)
            written |= l.bytes.p[i] != 0;
        ck_assert_msg(st == OM_E_NOTFOUND, "cut %llu: %s", (unsigned long long)cut,
                      om_status_str(st));
        ck_assert_int_eq(got, n - 1);
        ck_assert_uint_eq(off, l.end[n - 2]);
        ck_assert_msg(torn == written, "cut %llu torn=%d", (unsigned long long)cut, (int)torn);

        /* The same cut in a preallocated log: zeros follow it to the end of the file. */
        om_buf_reset(&pad);
        ck_assert_int_eq(om_buf_reserve(&pad, (size_t)cut + zeros), OM_OK);
        memcpy(pad.p, l.bytes.p, (size_t)cut);
        memset(pad.p + cut, 0, zeros);
        pad.n = (size_t)cut + zeros;
        got = img_read(&l, pad.p, pad.n, &st, &torn, &off);
        ck_assert_msg(st == OM_E_NOTFOUND, "padded cut %llu: %s", (unsigned long long)cut,
                      om_status_str(st));
        ck_assert_int_eq(got, n - 1);
        ck_assert_uint_eq(off, l.end[n - 2]);
        ck_assert_msg(torn == written, "padded cut %llu torn=%d", (unsigned long long)cut,
                      (int)torn);
    }
    om_buf_free(&pad);
    img_free(&l);
}

START_TEST(wal_torn_tail_every_cut)
{
    /* The last record straddles a block boundary: starts 150 bytes before it. */
    size_t first = LSM_WAL_BLOCK_SIZE - 150 - 2 * LSM_WAL_HEADER_SIZE - 40;
    size_t small[] = {40, first, 500};
    size_t big[] = {10, 20, 3 * LSM_WAL_BLOCK_SIZE + 77};

    torn_every_cut(small, 3, 1);
    torn_every_cut(big, 3, 61);
}
END_TEST

START_TEST(wal_bit_flips_in_middle_are_corrupt)
{
    uint64_t seed = tu_seed("wal_bit_flips_in_middle_are_corrupt"), rnd = seed;
    size_t sizes[40];
    log_img l;
    om_buf copy = OM_BUF_INIT;
    int corrupt = 0, flips = 0;

    for (int i = 0; i < 40; i++)
        sizes[i] = i % 10 == 9 ? 40000 : 10 + tu_rand(&rnd) % 3000;
    img_build(&l, sizes, 40, &rnd, -1);
    for (int t = 0; t < 400; t++) {
        int victim = (int)(tu_rand(&rnd) % 39); /* never the last record */
        uint64_t span = l.end[victim] - l.start[victim];
        uint64_t pos = l.start[victim] + tu_rand(&rnd) % span;
        om_status st;
        bool torn;
        uint64_t off;
        int got;

        om_buf_set(&copy, om_buf_slice(&l.bytes));
        copy.p[pos] ^= (uint8_t)(1u << (tu_rand(&rnd) % 8));
        flips++;
        got = img_read(&l, copy.p, copy.n, &st, &torn, &off);
        if (st == OM_E_CORRUPT) {
            corrupt++;
            ck_assert_int_le(got, victim);
            ck_assert_uint_le(off, pos);
        } else {
            /* Only a flip in block padding can go unnoticed: then everything is intact. */
            ck_assert_int_eq(st, OM_E_NOTFOUND);
            ck_assert_int_eq(got, 40);
            ck_assert(!torn);
        }
    }
    ck_assert_int_ge(corrupt, flips * 9 / 10);
    om_buf_free(&copy);
    img_free(&l);
}
END_TEST

START_TEST(wal_garbage_and_zero_tails)
{
    size_t sizes[] = {100, 200, 300};
    uint64_t rnd = 5;
    log_img l;
    om_buf b = OM_BUF_INIT;
    om_status st;
    bool torn;
    uint64_t off;

    img_build(&l, sizes, 3, &rnd, -1);
    /* Zeros after the end (a preallocated log, or one extended but never written): clean end. */
    om_buf_set(&b, om_buf_slice(&l.bytes));
    for (int i = 0; i < 5000; i++)
        om_buf_append_byte(&b, 0);
    ck_assert_int_eq(img_read(&l, b.p, b.n, &st, &torn, &off), 3);
    ck_assert_int_eq(st, OM_E_NOTFOUND);
    ck_assert(!torn);
    ck_assert_uint_eq(off, l.end[2]);
    /* Zeros in place of a record, with an intact one after: corrupt, not an end. */
    om_buf_set(&b, om_buf_slice(&l.bytes));
    memset(b.p + l.start[1], 0, (size_t)(l.end[1] - l.start[1]));
    ck_assert_int_eq(img_read(&l, b.p, b.n, &st, &torn, &off), 1);
    ck_assert_int_eq(st, OM_E_CORRUPT);
    ck_assert_uint_eq(off, l.start[1]);
    /* Garbage after the zeros: not a zero tail; nothing intact, so torn. */
    om_buf_set(&b, om_buf_slice(&l.bytes));
    for (int i = 0; i < 5000; i++)
        om_buf_append_byte(&b, 0);
    b.p[b.n - 100] = 0x5a;
    ck_assert_int_eq(img_read(&l, b.p, b.n, &st, &torn, &off), 3);
    ck_assert_int_eq(st, OM_E_NOTFOUND);
    ck_assert(torn);
    ck_assert_uint_eq(off, l.end[2]);
    /* A damaged header in the middle with intact records after: corrupt. */
    om_buf_set(&b, om_buf_slice(&l.bytes));
    b.p[l.start[1] + 6] = 9; /* fragment type */
    ck_assert_int_eq(img_read(&l, b.p, b.n, &st, &torn, &off), 1);
    ck_assert_int_eq(st, OM_E_CORRUPT);
    ck_assert_uint_eq(off, l.start[1]);
    /* Empty log. */
    ck_assert_int_eq(img_read(&l, b.p, 0, &st, &torn, &off), 0);
    ck_assert_int_eq(st, OM_E_NOTFOUND);
    ck_assert(!torn);
    om_buf_free(&b);
    img_free(&l);
}
END_TEST

/*
 * A preallocating writer: the file runs ahead of the records in zeros, never
 * by more than a chunk, and reads back as exactly the records (clean end).
 */
START_TEST(wal_preallocated_roundtrip)
{
    uint64_t seed = tu_seed("wal_preallocated_roundtrip"), rnd = seed;
    const char *dir = tu_tmpdir();
    const uint64_t chunk = 64 * 1024;
    lsm_env *env = lsm_env_posix();
    char path[512];
    lsm_wal_writer *w;
    lsm_wal_reader *r;
    om_buf recs[200];
    om_slice rec;
    int n = 200;

    snprintf(path, sizeof(path), "%s/000007.log", dir);
    ck_assert_int_eq(lsm_wal_writer_open(env, path, &w), OM_OK);
    lsm_wal_writer_preallocate(w, chunk);
    for (int i = 0; i < n; i++) {
        size_t len = i % 50 == 49 ? 70000 : tu_rand(&rnd) % 2000;
        lsm_rfile *f;
        uint64_t size;

        memset(&recs[i], 0, sizeof(recs[i]));
        ck_assert_int_eq(om_buf_reserve(&recs[i], len + 1), OM_OK);
        for (size_t j = 0; j < len; j++)
            recs[i].p[j] = (uint8_t)tu_rand(&rnd);
        recs[i].n = len;
        ck_assert_int_eq(lsm_wal_add(w, om_buf_slice(&recs[i])), OM_OK);
        ck_assert_int_eq(i % 2 ? lsm_wal_sync(w) : lsm_wal_flush(w), OM_OK);
        ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
        lsm_rfile_close(f);
        ck_assert_uint_ge(size, lsm_wal_size(w) + chunk / 2);
        ck_assert_uint_le(size, lsm_wal_size(w) + chunk);
    }
    ck_assert_int_eq(lsm_wal_writer_close(w, true), OM_OK);
    ck_assert_int_eq(lsm_wal_reader_open(env, path, &r), OM_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(lsm_wal_read(r, &rec), OM_OK);
        ck_assert_msg(om_slice_eq(rec, om_buf_slice(&recs[i])), "record %d differs", i);
        om_buf_free(&recs[i]);
    }
    ck_assert_int_eq(lsm_wal_read(r, &rec), OM_E_NOTFOUND);
    ck_assert(!lsm_wal_reader_torn(r));
    lsm_wal_reader_close(r);
}
END_TEST

/* Flushes larger than LSM_WAL_PREALLOC_MAX_FLUSH on average pause the zero-fill. */
START_TEST(wal_preallocation_pauses_for_large_flushes)
{
    const char *dir = tu_tmpdir();
    const uint64_t chunk = 256 * 1024;
    lsm_env *env = lsm_env_posix();
    char path[512];
    lsm_wal_writer *w;
    om_buf rec = OM_BUF_INIT;
    uint64_t size = 0, grown = 0;
    lsm_rfile *f;

    snprintf(path, sizeof(path), "%s/000009.log", dir);
    ck_assert_int_eq(lsm_wal_writer_open(env, path, &w), OM_OK);
    lsm_wal_writer_preallocate(w, chunk);
    ck_assert_int_eq(om_buf_reserve(&rec, 4 * LSM_WAL_PREALLOC_MAX_FLUSH), OM_OK);
    memset(rec.p, 'r', 4 * LSM_WAL_PREALLOC_MAX_FLUSH);
    rec.n = 4 * LSM_WAL_PREALLOC_MAX_FLUSH;
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(lsm_wal_add(w, om_buf_slice(&rec)), OM_OK);
        ck_assert_int_eq(lsm_wal_flush(w), OM_OK);
        ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
        lsm_rfile_close(f);
        if (size > lsm_wal_size(w))
            grown = size - lsm_wal_size(w);
    }
    /* After a few flushes the average is over the bound: the file ends with the records. */
    ck_assert_uint_eq(size, lsm_wal_size(w));
    ck_assert_uint_le(grown, chunk);
    ck_assert_int_eq(lsm_wal_writer_close(w, true), OM_OK);
    om_buf_free(&rec);
}
END_TEST

static Suite *
wal_suite(void)
{
    Suite *s = suite_create("lsm-wal");
    TCase *tc = tcase_create("wal");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, wal_roundtrip_spans_blocks);
    tcase_add_test(tc, wal_torn_tail_every_cut);
    tcase_add_test(tc, wal_bit_flips_in_middle_are_corrupt);
    tcase_add_test(tc, wal_garbage_and_zero_tails);
    tcase_add_test(tc, wal_preallocated_roundtrip);
    tcase_add_test(tc, wal_preallocation_pauses_for_large_flushes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(wal_suite());
}
