/*
 * tests/lsm/test_row_cache.c -- the row cache (lsm_opts.row_cache_size):
 * gets through it answer exactly as the engine without it, across
 * overwrites, deletes, flushes, compactions and reopens (a randomized run
 * comparing two databases fed the same operations, seed printed); reads at
 * snapshots older than a cached row still see the older entry; tombstones
 * cached in a newer table hide older values; the statistics count hits and
 * misses; the cache stays within its capacity as rows are evicted; and
 * lsm_get_ex with LSM_GET_NO_FILL answers as lsm_get without touching the
 * row cache (no fill, no lookup, counters unchanged); LSM_GET_HEAD returns
 * the first LSM_GET_HEAD_BYTES bytes of what lsm_get returns, from the
 * memtable, tables and cached rows alike; lsm_prefetch_reads (read-ahead
 * hints, also mixed into the randomized run) changes no answer and no
 * counter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "lsm/table_cache.h"
#include "tu.h"

static om_slice
S(const char *s)
{
    return om_slice_from_str(s);
}

static lsm_db *
open_db(const char *dir, size_t row_cache)
{
    lsm_opts o;
    lsm_db *db = NULL;

    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    o.write_buffer_size = 32 * 1024;
    o.target_file_size = 16 * 1024;
    o.max_bytes_for_level1 = 64 * 1024;
    o.level_multiplier = 4;
    o.block_size = 1024;
    o.block_cache_size = 128 * 1024;
    o.l0_compaction_trigger = 2;
    o.row_cache_size = row_cache;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    return db;
}

/* The answer of a get as a string ("" and NOTFOUND map to "<none>"). */
static void
get_str(lsm_db *db, const lsm_snapshot *snap, const char *k, char *out, size_t cap)
{
    om_buf v = OM_BUF_INIT;
    om_status st = lsm_get(db, snap, S(k), &v);

    if (st == OM_E_NOTFOUND) {
        snprintf(out, cap, "<none>");
    } else {
        ck_assert_msg(st == OM_OK, "get %s: %s", k, om_status_str(st));
        ck_assert_uint_lt(v.n, cap);
        memcpy(out, v.p, v.n);
        out[v.n] = '\0';
    }
    om_buf_free(&v);
}

static void
expect(lsm_db *db, const lsm_snapshot *snap, const char *k, const char *want)
{
    char got[256];

    get_str(db, snap, k, got, sizeof(got));
    ck_assert_str_eq(got, want);
}

START_TEST(row_cache_snapshot_and_tombstone)
{
    const char *dir = tu_tmpdir();
    lsm_db *db = open_db(dir, 1u << 20);
    lsm_snapshot *s1, *s2;
    lsm_stats st;

    ck_assert_int_eq(lsm_put(db, S("k"), S("v1")), OM_OK);
    ck_assert_int_eq(lsm_snapshot_new(db, &s1), OM_OK);
    ck_assert_int_eq(lsm_put(db, S("k"), S("v2")), OM_OK);
    ck_assert_int_eq(lsm_put(db, S("gone"), S("x")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK); /* one table holds v1 (kept for s1) and v2 */
    /* The older snapshot first: the miss caches v2, which s1 must not see. */
    expect(db, s1, "k", "v1");
    expect(db, NULL, "k", "v2");
    expect(db, NULL, "k", "v2");
    expect(db, s1, "k", "v1");
    ck_assert_int_eq(lsm_snapshot_new(db, &s2), OM_OK);
    ck_assert_int_eq(lsm_del(db, S("gone")), OM_OK);
    ck_assert_int_eq(lsm_put(db, S("k"), S("v3")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK); /* a newer table with the tombstone and v3 */
    for (int i = 0; i < 3; i++) {
        expect(db, NULL, "gone", "<none>");
        expect(db, s2, "gone", "x");
        expect(db, NULL, "k", "v3");
        expect(db, s2, "k", "v2");
        expect(db, s1, "k", "v1");
    }
    lsm_stats_get(db, &st);
    ck_assert_uint_gt(st.row_cache_hits, 0);
    ck_assert_uint_gt(st.row_cache_misses, 0);
    lsm_snapshot_free(db, s1);
    lsm_snapshot_free(db, s2);
    ck_assert_int_eq(lsm_compact_range(db, S(""), S("")), OM_OK);
    expect(db, NULL, "gone", "<none>");
    expect(db, NULL, "k", "v3");
    expect(db, NULL, "k", "v3");
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(row_cache_off_counts_nothing)
{
    lsm_db *db = open_db(tu_tmpdir(), 0);
    lsm_stats st;

    ck_assert_int_eq(lsm_put(db, S("a"), S("1")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    expect(db, NULL, "a", "1");
    lsm_stats_get(db, &st);
    ck_assert_uint_eq(st.row_cache_hits + st.row_cache_misses, 0);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

#define NKEYS 600
#define MAXSNAP 4

static void
rkey(uint32_t k, char *out)
{
    snprintf(out, 32, "key-%05u", k);
}

/*
 * Two databases fed the same operations, one with a small row cache (so rows
 * are evicted and refilled) and one without; every get must agree, at the
 * latest state and at snapshots taken along the way.
 */
START_TEST(row_cache_matches_cache_off)
{
    uint64_t rnd = tu_seed("row_cache_matches_cache_off");
    const char *dir_a = tu_tmpdir(), *dir_b = tu_tmpdir();
    lsm_db *a = open_db(dir_a, 48 * 1024), *b = open_db(dir_b, 0);
    lsm_snapshot *sa[MAXSNAP], *sb[MAXSNAP];
    int nsnap = 0;
    int ops = 40000;
    const char *env_ops = getenv("ROW_CACHE_OPS");
    uint64_t gets = 0, found = 0;
    lsm_stats st;

    if (env_ops != NULL)
        ops = atoi(env_ops);
    for (int i = 0; i < ops; i++) {
        uint64_t r = tu_rand(&rnd) % 1000;
        /* Skewed keys: a hot tenth gets most of the traffic (and the cache hits). */
        uint32_t k = (uint32_t)(tu_rand(&rnd) % 4 == 0 ? tu_rand(&rnd) % NKEYS
                                                       : tu_rand(&rnd) % (NKEYS / 10));
        char key[32], val[160], ga[256], gb[256];

        rkey(k, key);
        if (r < 150) {
            int n = snprintf(val, sizeof(val), "v%d-%u-", i, k);

            memset(val + n, 'a' + (int)(i % 26), (size_t)(20 + i % 100));
            val[n + 20 + i % 100] = '\0';
            ck_assert_int_eq(lsm_put(a, S(key), S(val)), OM_OK);
            ck_assert_int_eq(lsm_put(b, S(key), S(val)), OM_OK);
        } else if (r < 180) {
            ck_assert_int_eq(lsm_del(a, S(key)), OM_OK);
            ck_assert_int_eq(lsm_del(b, S(key)), OM_OK);
        } else if (r < 900) {
            int j = r < 800 || nsnap == 0 ? -1 : (int)(tu_rand(&rnd) % (uint64_t)nsnap);

            if (r % 8 == 0) {
                /* read-ahead hints for this key and a few others: no effect on answers */
                char pk[5][32];
                om_slice ps[6];
                for (int q = 0; q < 5; q++) {
                    rkey((uint32_t)(tu_rand(&rnd) % NKEYS), pk[q]);
                    ps[q] = S(pk[q]);
                }
                ps[5] = S(key);
                lsm_prefetch_reads(a, ps, 6);
            }

            get_str(a, j < 0 ? NULL : sa[j], key, ga, sizeof(ga));
            get_str(b, j < 0 ? NULL : sb[j], key, gb, sizeof(gb));
            ck_assert_msg(strcmp(ga, gb) == 0, "op %d key %s snap %d: row cache %s, plain %s", i,
                          key, j, ga, gb);
            gets++;
            found += strcmp(ga, "<none>") != 0;
        } else if (r < 930) {
            if (nsnap < MAXSNAP) {
                ck_assert_int_eq(lsm_snapshot_new(a, &sa[nsnap]), OM_OK);
                ck_assert_int_eq(lsm_snapshot_new(b, &sb[nsnap]), OM_OK);
                nsnap++;
            }
        } else if (r < 960) {
            if (nsnap > 0) {
                int j = (int)(tu_rand(&rnd) % (uint64_t)nsnap);

                lsm_snapshot_free(a, sa[j]);
                lsm_snapshot_free(b, sb[j]);
                nsnap--;
                sa[j] = sa[nsnap];
                sb[j] = sb[nsnap];
            }
        } else if (r < 975) {
            ck_assert_int_eq(lsm_flush(a), OM_OK);
            ck_assert_int_eq(lsm_flush(b), OM_OK);
        } else if (r < 978) {
            char lo[32], hi[32];

            rkey(k, lo);
            rkey(k + 100, hi);
            ck_assert_int_eq(lsm_compact_range(a, S(lo), S(hi)), OM_OK);
            ck_assert_int_eq(lsm_compact_range(b, S(lo), S(hi)), OM_OK);
        } else if (r < 979 && nsnap == 0) {
            ck_assert_int_eq(lsm_close(a), OM_OK);
            a = open_db(dir_a, 48 * 1024);
        }
    }
    for (uint32_t k = 0; k < NKEYS; k++) {
        char key[32], ga[256], gb[256];

        rkey(k, key);
        get_str(a, NULL, key, ga, sizeof(ga));
        get_str(b, NULL, key, gb, sizeof(gb));
        ck_assert_str_eq(ga, gb);
    }
    lsm_stats_get(a, &st);
    printf("row_cache_matches_cache_off: ops=%d gets=%llu found=%llu row_hits=%llu "
           "row_misses=%llu\n",
           ops, (unsigned long long)gets, (unsigned long long)found,
           (unsigned long long)st.row_cache_hits, (unsigned long long)st.row_cache_misses);
    ck_assert_uint_gt(st.row_cache_hits, 0);
    while (nsnap > 0) {
        nsnap--;
        lsm_snapshot_free(a, sa[nsnap]);
        lsm_snapshot_free(b, sb[nsnap]);
    }
    ck_assert_int_eq(lsm_close(a), OM_OK);
    ck_assert_int_eq(lsm_close(b), OM_OK);
}
END_TEST

/* Rows beyond the capacity are evicted (oldest first); usage never exceeds it. */
/*
 * Issue 14: blocks and rows of tables that a compaction replaced leave the
 * caches with their tables, instead of sitting there until evicted (the
 * caches filled to capacity however little data was live).
 */
START_TEST(replaced_tables_leave_the_caches)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    lsm_iter_opts io;
    lsm_iter *it;
    om_buf v = OM_BUF_INIT;
    char k[32], val[100];
    uint64_t deadline;
    int n = 0;

    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    o.block_size = 1024;
    o.block_cache_size = 4u << 20;
    o.row_cache_size = 4u << 20;
    o.idle_l0_compaction_ms = 0;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int t = 0; t < 2; t++) { /* two overlapping L0 tables: a compaction merges them */
        for (int i = t; i < 500; i += 2 - t) {
            snprintf(k, sizeof(k), "key%04d", i);
            snprintf(val, sizeof(val), "value-%04d-%080d", i, i);
            ck_assert_int_eq(lsm_put(db, S(k), S(val)), OM_OK);
        }
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    /* half the blocks go into the cache through gets, the other half through an iterator */
    for (int i = 0; i < 250; i++) {
        snprintf(k, sizeof(k), "key%04d", i);
        ck_assert_int_eq(lsm_get(db, NULL, S(k), &v), OM_OK);
    }
    lsm_iter_opts_init(&io);
    ck_assert_int_eq(lsm_iter_new(db, &io, &it), OM_OK);
    for (lsm_iter_seek(it, S("key0250")); lsm_iter_valid(it); lsm_iter_next(it))
        n++;
    ck_assert_int_eq(lsm_iter_status(it), OM_OK);
    lsm_iter_free(it);
    ck_assert_int_eq(n, 250);
    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.block_cache_bytes, 500 * 100);
    for (int i = 250; i < 500; i++) { /* the rows: only gets fill that cache */
        snprintf(k, sizeof(k), "key%04d", i);
        ck_assert_int_eq(lsm_get(db, NULL, S(k), &v), OM_OK);
    }
    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.row_cache_bytes, 500 * 100);
    ck_assert_uint_eq(s.levels[0].files, 2);
    /* the L0 tables are merged into a new one below: their blocks and rows are dead */
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    deadline = tu_now_ms() + 10000;
    do
        lsm_stats_get(db, &s);
    while ((s.block_cache_bytes > 0 || s.row_cache_bytes > 0) && tu_now_ms() < deadline);
    ck_assert_uint_eq(s.levels[0].files, 0);
    ck_assert_uint_eq(s.block_cache_bytes, 0);
    ck_assert_uint_eq(s.row_cache_bytes, 0);
    for (int i = 0; i < 500; i += 7) { /* and the new table fills them again */
        snprintf(k, sizeof(k), "key%04d", i);
        snprintf(val, sizeof(val), "value-%04d-%080d", i, i);
        ck_assert_int_eq(lsm_get(db, NULL, S(k), &v), OM_OK);
        ck_assert(om_slice_eq(om_buf_slice(&v), S(val)));
    }
    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.block_cache_bytes, 0);
    ck_assert_uint_gt(s.row_cache_bytes, 0);
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * Blocks that do not go into the block cache (no cache here, so none does)
 * are read in place from the table's mapping instead of copied: gets, an
 * iterator over everything, a compaction and a reopen all read right.
 */
START_TEST(uncached_blocks_read_in_place)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_iter_opts io;
    lsm_iter *it;
    om_buf v = OM_BUF_INIT;
    char k[32], val[200];
    int n;

    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    o.block_size = 1024;
    o.block_cache_size = 0;
    o.zstd_level = 0; /* raw blocks: the ones read in place */
    o.write_buffer_size = 64 * 1024;
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        if (round == 0) {
            for (int i = 0; i < 3000; i++) {
                snprintf(k, sizeof(k), "key%05d", (i * 7919) % 3000);
                snprintf(val, sizeof(val), "v%05d-%0150d", (i * 7919) % 3000, i);
                ck_assert_int_eq(lsm_put(db, S(k), S(val)), OM_OK);
            }
            ck_assert_int_eq(lsm_flush(db), OM_OK);
        }
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < 3000; i += 3) {
                snprintf(k, sizeof(k), "key%05d", i);
                ck_assert_int_eq(lsm_get(db, NULL, S(k), &v), OM_OK);
                ck_assert_uint_eq(v.n, 157);
                ck_assert(memcmp(v.p, "v", 1) == 0 && memcmp(v.p + 1, k + 3, 5) == 0);
            }
            lsm_iter_opts_init(&io);
            ck_assert_int_eq(lsm_iter_new(db, &io, &it), OM_OK);
            n = 0;
            for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
                snprintf(k, sizeof(k), "key%05d", n);
                ck_assert(om_slice_eq(lsm_iter_key(it), S(k)));
                ck_assert_uint_eq(lsm_iter_value(it).n, 157);
                n++;
            }
            ck_assert_int_eq(lsm_iter_status(it), OM_OK);
            lsm_iter_free(it);
            ck_assert_int_eq(n, 3000);
            if (pass == 0)
                ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
    }
    om_buf_free(&v);
}
END_TEST

START_TEST(row_cache_respects_capacity)
{
    lsm_opts o;
    lsm_table_stats ts;
    lsm_table_opts topts;
    lsm_table_cache *tc;
    const size_t cap = 64 * 1024;
    char val[200];
    const lsm_row *row;
    lsm_cache_handle *h;

    lsm_opts_init(&o);
    lsm_table_stats_init(&ts);
    lsm_table_opts_init(&topts, &o, NULL, &ts);
    ck_assert_int_eq(lsm_table_cache_new(lsm_env_posix(), tu_tmpdir(), &topts, 10, &tc), OM_OK);
    ck_assert(!lsm_table_cache_has_rows(tc));
    ck_assert_int_eq(lsm_table_cache_enable_rows(tc, cap), OM_OK);
    ck_assert(lsm_table_cache_has_rows(tc));
    memset(val, 'v', sizeof(val));
    for (uint32_t i = 0; i < 2000; i++) {
        char key[32];
        lsm_row *r =
            lsm_row_new(lsm_trailer_pack(i + 1, LSM_TYPE_VAL), om_slice_make(val, sizeof(val)));

        ck_assert_ptr_nonnull(r);
        rkey(i, key);
        h = lsm_table_cache_row_insert(tc, 7, S(key), r);
        ck_assert_ptr_nonnull(h);
        lsm_table_cache_row_release(tc, h);
        ck_assert_uint_le(lsm_table_cache_row_usage(tc), cap);
    }
    ck_assert_uint_gt(lsm_table_cache_row_usage(tc), cap / 2);
    {
        char key[32];

        rkey(0, key); /* long evicted */
        ck_assert_ptr_null(lsm_table_cache_row_lookup(tc, 7, S(key), &row));
        rkey(1999, key); /* the newest is there, under its own file number only */
        ck_assert_ptr_null(lsm_table_cache_row_lookup(tc, 8, S(key), &row));
        h = lsm_table_cache_row_lookup(tc, 7, S(key), &row);
        ck_assert_ptr_nonnull(h);
        ck_assert_uint_eq(row->trailer, lsm_trailer_pack(2000, LSM_TYPE_VAL));
        ck_assert_uint_eq(row->n, sizeof(val));
        ck_assert_int_eq(memcmp(row->value, val, sizeof(val)), 0);
        lsm_table_cache_row_release(tc, h);
    }
    ck_assert_uint_eq(lsm_table_cache_row_hits(tc), 1);
    ck_assert_uint_eq(lsm_table_cache_row_misses(tc), 2);
    lsm_table_cache_free(tc);
}
END_TEST

/* The answer of lsm_get_ex(flags) as a string, like get_str. */
static void
get_ex_str(lsm_db *db, const lsm_snapshot *snap, const char *k, unsigned flags, char *out,
           size_t cap)
{
    om_buf v = OM_BUF_INIT;
    om_status st = lsm_get_ex(db, snap, S(k), &v, flags);

    if (st == OM_E_NOTFOUND) {
        snprintf(out, cap, "<none>");
    } else {
        ck_assert_msg(st == OM_OK, "get %s: %s", k, om_status_str(st));
        ck_assert_uint_lt(v.n, cap);
        memcpy(out, v.p, v.n);
        out[v.n] = '\0';
    }
    om_buf_free(&v);
}

START_TEST(row_cache_no_fill_read)
{
    lsm_db *db = open_db(tu_tmpdir(), 1u << 20);
    lsm_snapshot *snap;
    lsm_stats st0, st1;
    char key[32], val[64], a[256], b[256];

    /* Keys in two tables (some overwritten or deleted in the newer one), some in the memtable. */
    for (uint32_t i = 0; i < 200; i++) {
        rkey(i, key);
        snprintf(val, sizeof(val), "old-%u", i);
        ck_assert_int_eq(lsm_put(db, S(key), S(val)), OM_OK);
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    ck_assert_int_eq(lsm_snapshot_new(db, &snap), OM_OK);
    for (uint32_t i = 0; i < 200; i += 3) {
        rkey(i, key);
        snprintf(val, sizeof(val), "new-%u", i);
        ck_assert_int_eq(i % 2 ? lsm_del(db, S(key)) : lsm_put(db, S(key), S(val)), OM_OK);
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (uint32_t i = 100; i < 200; i += 5) {
        rkey(i, key);
        snprintf(val, sizeof(val), "mem-%u", i);
        ck_assert_int_eq(lsm_put(db, S(key), S(val)), OM_OK);
    }
    /* No-fill reads first: the row cache stays untouched. */
    lsm_stats_get(db, &st0);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < 210; i++) {
            rkey(i, key);
            get_ex_str(db, NULL, key, LSM_GET_NO_FILL, a, sizeof(a));
            get_ex_str(db, snap, key, LSM_GET_NO_FILL, b, sizeof(b));
            if (i >= 200) {
                ck_assert_str_eq(a, "<none>");
                ck_assert_str_eq(b, "<none>");
            }
        }
        lsm_stats_get(db, &st1);
        ck_assert_uint_eq(st1.row_cache_hits, st0.row_cache_hits);
        ck_assert_uint_eq(st1.row_cache_misses, st0.row_cache_misses);
    }
    /*
     * One lsm_get of each key visits each (table, key) once: a hit could only
     * come from a row that a no-fill read had cached.
     */
    for (uint32_t i = 0; i < 210; i++) {
        rkey(i, key);
        get_str(db, NULL, key, b, sizeof(b));
    }
    lsm_stats_get(db, &st1);
    ck_assert_uint_eq(st1.row_cache_hits, st0.row_cache_hits);
    ck_assert_uint_gt(st1.row_cache_misses, st0.row_cache_misses + 100);
    /* The same answers as lsm_get (which fills). */
    for (uint32_t i = 0; i < 210; i++) {
        rkey(i, key);
        get_ex_str(db, NULL, key, LSM_GET_NO_FILL, a, sizeof(a));
        get_str(db, NULL, key, b, sizeof(b));
        ck_assert_str_eq(a, b);
        get_ex_str(db, snap, key, LSM_GET_NO_FILL, a, sizeof(a));
        get_str(db, snap, key, b, sizeof(b));
        ck_assert_str_eq(a, b);
        get_ex_str(db, snap, key, 0, a, sizeof(a));
        ck_assert_str_eq(a, b);
    }
    lsm_stats_get(db, &st1);
    ck_assert_uint_gt(st1.row_cache_misses, st0.row_cache_misses);
    ck_assert_uint_gt(st1.row_cache_hits, st0.row_cache_hits);
    expect(db, NULL, "key-00001", "old-1");
    lsm_snapshot_free(db, snap);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * lsm_prefetch_reads over keys in the memtable, in two tables (rows cached or
 * not), absent, empty and too long for the hints' stack buffers: the answers
 * and the row cache counters stay as they were.
 */
START_TEST(row_cache_prefetch_reads_changes_nothing)
{
    lsm_db *db = open_db(tu_tmpdir(), 1u << 20);
    lsm_stats st0, st1;
    char key[32], val[64], before[210][256], got[256];
    om_slice ks[212];
    char keys[210][32], longkey[400];

    for (uint32_t i = 0; i < 200; i++) {
        rkey(i, key);
        snprintf(val, sizeof(val), "old-%u", i);
        ck_assert_int_eq(lsm_put(db, S(key), S(val)), OM_OK);
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (uint32_t i = 0; i < 200; i += 3) {
        rkey(i, key);
        snprintf(val, sizeof(val), "new-%u", i);
        ck_assert_int_eq(i % 2 ? lsm_del(db, S(key)) : lsm_put(db, S(key), S(val)), OM_OK);
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (uint32_t i = 100; i < 200; i += 5) {
        rkey(i, key);
        snprintf(val, sizeof(val), "mem-%u", i);
        ck_assert_int_eq(lsm_put(db, S(key), S(val)), OM_OK);
    }
    /* half the keys read once, so that their rows are cached */
    for (uint32_t i = 0; i < 210; i++) {
        rkey(i, keys[i]);
        ks[i] = S(keys[i]);
        if (i % 2 == 0)
            get_str(db, NULL, keys[i], before[i], sizeof(before[i]));
    }
    memset(longkey, 'z', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    ks[210] = S(longkey);
    ks[211] = om_slice_make(NULL, 0);
    lsm_stats_get(db, &st0);
    lsm_prefetch_reads(db, ks, 212);
    lsm_prefetch_reads(db, ks + 7, 3);
    lsm_prefetch_reads(db, ks, 0);
    lsm_stats_get(db, &st1);
    ck_assert_uint_eq(st1.row_cache_hits, st0.row_cache_hits);
    ck_assert_uint_eq(st1.row_cache_misses, st0.row_cache_misses);
    for (uint32_t i = 0; i < 210; i += 2) {
        get_str(db, NULL, keys[i], got, sizeof(got));
        ck_assert_str_eq(got, before[i]);
    }
    expect(db, NULL, "key-00001", "old-1");
    expect(db, NULL, "key-00105", "mem-105");
    expect(db, NULL, longkey, "<none>");
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* Key i's value in round r: i*37 % 300 bytes, so some are shorter than a head and some longer. */
static size_t
head_val(uint32_t i, int r, char *out)
{
    size_t n = (i * 37u + (uint32_t)r * 11u) % 300u;

    for (size_t j = 0; j < n; j++)
        out[j] = (char)('a' + (i + j + (uint32_t)r) % 26);
    out[n] = '\0';
    return n;
}

START_TEST(get_head_is_a_prefix)
{
    lsm_db *db = open_db(tu_tmpdir(), 1u << 20);
    char key[32], val[512], a[512], b[512];

    /* A table, a newer table with overwrites and deletes, and the memtable. */
    for (int r = 0; r < 3; r++) {
        for (uint32_t i = 0; i < 300; i += (uint32_t)r + 1) {
            rkey(i, key);
            head_val(i, r, val);
            ck_assert_int_eq(
                r == 1 && i % 4 == 0 ? lsm_del(db, S(key)) : lsm_put(db, S(key), S(val)), OM_OK);
        }
        if (r < 2)
            ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    /* Twice: the first lsm_get pass fills the row cache, the second reads through it. */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < 310; i++) {
            rkey(i, key);
            get_str(db, NULL, key, b, sizeof(b));
            if (strcmp(b, "<none>") != 0 && strlen(b) > LSM_GET_HEAD_BYTES)
                b[LSM_GET_HEAD_BYTES] = '\0';
            get_ex_str(db, NULL, key, LSM_GET_HEAD, a, sizeof(a));
            ck_assert_str_eq(a, b);
            get_ex_str(db, NULL, key, LSM_GET_HEAD | LSM_GET_NO_FILL, a, sizeof(a));
            ck_assert_str_eq(a, b);
        }
    }
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

static Suite *
row_cache_suite(void)
{
    Suite *s = suite_create("lsm-row-cache");
    TCase *tc = tcase_create("row-cache");

    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, row_cache_snapshot_and_tombstone);
    tcase_add_test(tc, row_cache_off_counts_nothing);
    tcase_add_test(tc, replaced_tables_leave_the_caches);
    tcase_add_test(tc, uncached_blocks_read_in_place);
    tcase_add_test(tc, row_cache_matches_cache_off);
    tcase_add_test(tc, row_cache_respects_capacity);
    tcase_add_test(tc, row_cache_no_fill_read);
    tcase_add_test(tc, row_cache_prefetch_reads_changes_nothing);
    tcase_add_test(tc, get_head_is_a_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(row_cache_suite());
}
