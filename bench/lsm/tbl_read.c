/*
 * bench/lsm/tbl_read.c -- a fixed read workload over objmeta's engine for
 * instruction counting (callgrind) of the table read path.
 *
 *   tbl_read --dir=D --prepare [--num=N]     fill N keys in random order, flush
 *                                           everything to tables, close
 *   tbl_read --dir=D --phase=get|missing|scan [--num=N] [--ops=R] [--warm]
 *
 * Keys look like lsm_bench's (`bucket-0007/photos/2024/img-00001234.jpg`,
 * 256-byte values). Each phase runs its loop in a function of its own
 * (phase_get, phase_missing, phase_scan) so that
 * `valgrind --tool=callgrind --toggle-collect=phase_get ...` counts only the
 * reads, not the open. --warm runs the same operations once before (outside
 * the collected functions), so the counted pass finds its blocks cached.
 * --dist=zipf draws the gets' keys from a Zipfian (theta 0.99) instead of
 * uniformly. --random-values (with --prepare) makes the values random bytes, which the
 * tables store uncompressed, like most object data. --cache-mb and --row-cache-mb size the block
 * cache (default 64) and the row cache (default 0, off); a block cache much smaller than the data
 * (--cache-mb=8 against the 56 MB of 200k keys) gives uniform reads that
 * miss the cache nearly every time, the case of issue 14. --warm-ops=W runs
 * W other gets (a different seed) first instead, so the caches are full but
 * the counted keys were not read just before.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/common/bench_gen.h"
#include "lsm/lsm.h"

#define NBUCKETS 16
#define VALUE_SIZE 256

static uint64_t num = 200000, keys_per_bucket;
static bool random_values; /* --random-values: prepare incompressible values (stored raw) */
static bg_keys key_dist;   /* --dist: key choice of gets (uniform by default) */

static size_t
make_key(char *buf, uint64_t i, bool missing)
{
    return (size_t)snprintf(buf, 64, "bucket-%04" PRIu64 "/photos/2024/img-%08" PRIu64 ".%s",
                            i / keys_per_bucket, i, missing ? "jpx" : "jpg");
}

static uint64_t
rnd(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, om_status st)
{
    fprintf(stderr, "tbl_read: %s: status %d\n", what, (int)st);
    exit(1);
}

static void
prepare(lsm_db *db)
{
    uint64_t *perm = malloc(num * sizeof(*perm)), s = 42;
    uint8_t val[VALUE_SIZE];
    char key[64];

    for (uint64_t i = 0; i < num; i++)
        perm[i] = i;
    for (uint64_t i = num - 1; i > 0; i--) {
        uint64_t j = rnd(&s) % (i + 1), t = perm[i];

        perm[i] = perm[j];
        perm[j] = t;
    }
    for (uint64_t i = 0; i < num; i++) {
        size_t kn = make_key(key, perm[i], false);

        for (size_t b = 0; b < VALUE_SIZE; b++)
            val[b] =
                random_values || b < VALUE_SIZE / 2 ? (uint8_t)rnd(&s) : (uint8_t)('a' + b % 13);
        om_status st = lsm_put(db, om_slice_make(key, kn), om_slice_make(val, sizeof(val)));
        if (st != OM_OK)
            die("put", st);
    }
    free(perm);
    if (lsm_flush(db) != OM_OK)
        die("flush", OM_E_IO);
}

/* The phase_* and warm_* wrappers are not inlined so that callgrind can toggle on them
 * (gcc's noipa also keeps it from cloning them; clang has no such attribute). */
#if defined(__clang__)
#define TBL_PHASE __attribute__((noinline))
#else
#define TBL_PHASE __attribute__((noinline, noipa))
#endif
TBL_PHASE static uint64_t
loop_get(lsm_db *db, uint64_t ops, bool missing)
{
    uint64_t s = missing ? 7 : 5, found = 0;
    om_buf v = {0};
    char key[64];

    for (uint64_t i = 0; i < ops; i++) {
        size_t kn = make_key(key, bg_keys_next(&key_dist, &s), missing);
        om_status st = lsm_get(db, NULL, om_slice_make(key, kn), &v);

        if (st == OM_OK)
            found++;
        else if (st != OM_E_NOTFOUND)
            die("get", st);
    }
    om_buf_free(&v);
    return found;
}

TBL_PHASE static uint64_t
loop_scan(lsm_db *db, uint64_t ops)
{
    uint64_t s = 9, seen = 0;
    lsm_iter_opts io;
    char key[64];

    lsm_iter_opts_init(&io);
    for (uint64_t i = 0; i < ops; i++) {
        lsm_iter *it;
        size_t kn = make_key(key, rnd(&s) % num, false);
        om_status st = lsm_iter_new(db, &io, &it);

        if (st != OM_OK)
            die("iter", st);
        lsm_iter_seek(it, om_slice_make(key, kn));
        for (int k = 0; k < 100 && lsm_iter_valid(it); k++, lsm_iter_next(it))
            seen++;
        if (lsm_iter_status(it) != OM_OK)
            die("scan", lsm_iter_status(it));
        lsm_iter_free(it);
    }
    return seen;
}

TBL_PHASE static uint64_t
phase_get(lsm_db *db, uint64_t ops, bool missing)
{
    uint64_t r = loop_get(db, ops, missing);

    __asm__ volatile("" ::: "memory"); /* no tail call: callgrind must see this frame */
    return r;
}

TBL_PHASE static uint64_t
phase_missing(lsm_db *db, uint64_t ops)
{
    uint64_t r = loop_get(db, ops, true);

    __asm__ volatile("" ::: "memory");
    return r;
}

TBL_PHASE static uint64_t
phase_scan(lsm_db *db, uint64_t ops)
{
    uint64_t r = loop_scan(db, ops);

    __asm__ volatile("" ::: "memory");
    return r;
}

TBL_PHASE static void
warm_get(lsm_db *db, uint64_t ops, bool missing)
{
    (void)loop_get(db, ops, missing);
}

/* Gets of other keys than the counted pass's (another seed): fills the caches. */
TBL_PHASE static void
warm_other(lsm_db *db, uint64_t ops)
{
    uint64_t s = 11;
    om_buf v = {0};
    char key[64];

    for (uint64_t i = 0; i < ops; i++) {
        size_t kn = make_key(key, bg_keys_next(&key_dist, &s), false);
        om_status st = lsm_get(db, NULL, om_slice_make(key, kn), &v);

        if (st != OM_OK && st != OM_E_NOTFOUND)
            die("get", st);
    }
    om_buf_free(&v);
}

TBL_PHASE static void
warm_scan(lsm_db *db, uint64_t ops)
{
    (void)loop_scan(db, ops);
}

int
main(int argc, char **argv)
{
    const char *dir = NULL, *phase = NULL, *dist = "uniform";
    bool do_prepare = false, warm = false;
    uint64_t ops = 100000, r = 0, cache_mb = 64, row_cache_mb = 0, warm_ops = 0;
    lsm_opts o;
    lsm_db *db;
    om_status st;
    double t0;

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--dir=", 6) == 0)
            dir = argv[i] + 6;
        else if (strncmp(argv[i], "--phase=", 8) == 0)
            phase = argv[i] + 8;
        else if (strncmp(argv[i], "--num=", 6) == 0)
            num = strtoull(argv[i] + 6, NULL, 10);
        else if (strncmp(argv[i], "--ops=", 6) == 0)
            ops = strtoull(argv[i] + 6, NULL, 10);
        else if (strcmp(argv[i], "--warm") == 0)
            warm = true;
        else if (strncmp(argv[i], "--warm-ops=", 11) == 0)
            warm_ops = strtoull(argv[i] + 11, NULL, 10);
        else if (strncmp(argv[i], "--cache-mb=", 11) == 0)
            cache_mb = strtoull(argv[i] + 11, NULL, 10);
        else if (strncmp(argv[i], "--row-cache-mb=", 15) == 0)
            row_cache_mb = strtoull(argv[i] + 15, NULL, 10);
        else if (strcmp(argv[i], "--prepare") == 0)
            do_prepare = true;
        else if (strncmp(argv[i], "--dist=", 7) == 0)
            dist = argv[i] + 7;
        else if (strcmp(argv[i], "--random-values") == 0)
            random_values = true;
        else {
            fprintf(stderr, "usage: tbl_read --dir=D (--prepare | --phase=get|missing|scan) "
                            "[--num=N] [--ops=R] [--warm] [--warm-ops=W] [--cache-mb=M] "
                            "[--row-cache-mb=M]\n");
            return 2;
        }
    }
    if (dir == NULL || num < NBUCKETS || (!do_prepare && phase == NULL)) {
        fprintf(stderr, "tbl_read: need --dir, --num >= 16 and --prepare or --phase\n");
        return 2;
    }
    keys_per_bucket = (num + NBUCKETS - 1) / NBUCKETS;
    if (!bg_keys_init(&key_dist, num, dist)) {
        fprintf(stderr, "tbl_read: --dist must be uniform, zipf or zipf:T\n");
        return 2;
    }
    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    o.write_buffer_size = 4u << 20;
    o.target_file_size = 4u << 20;
    o.max_bytes_for_level1 = 16u << 20;
    o.block_cache_size = (size_t)cache_mb << 20;
    o.row_cache_size = (size_t)row_cache_mb << 20;
    if ((st = lsm_open(dir, &o, &db)) != OM_OK)
        die("open", st);
    if (warm_ops > 0 && !do_prepare)
        warm_other(db, warm_ops);
    if (warm && !do_prepare) {
        /* Same operations, same order, outside the collected functions. */
        if (strcmp(phase, "get") == 0)
            warm_get(db, ops, false);
        else if (strcmp(phase, "missing") == 0)
            warm_get(db, ops, true);
        else if (strcmp(phase, "scan") == 0)
            warm_scan(db, ops);
    }
    t0 = now_s();
    if (do_prepare)
        prepare(db);
    else if (strcmp(phase, "get") == 0)
        r = phase_get(db, ops, false);
    else if (strcmp(phase, "missing") == 0)
        r = phase_missing(db, ops);
    else if (strcmp(phase, "scan") == 0)
        r = phase_scan(db, ops);
    else {
        fprintf(stderr, "tbl_read: unknown phase %s\n", phase);
        return 2;
    }
    printf("%s: %" PRIu64 " ops, result %" PRIu64 ", %.0f ops/s\n", do_prepare ? "prepare" : phase,
           do_prepare ? num : ops, r, (double)(do_prepare ? num : ops) / (now_s() - t0));
    if ((st = lsm_close(db)) != OM_OK)
        die("close", st);
    return 0;
}
