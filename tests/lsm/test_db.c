/*
 * tests/lsm/test_db.c -- the public API of the engine end to end: put, get,
 * delete, batches, iterators with bounds and snapshots, reopen (WAL replay
 * and tables), flush, compact_range, may_contain, statistics, the LOCK
 * file, option checks and destroy; the prefetch hints change no answer;
 * background_nice lowers the flush and compaction threads only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/env.h"
#include "lsm/lsm.h"
#include "tu.h"

static lsm_db *
open_db(const char *dir, lsm_opts *o)
{
    lsm_db *db = NULL;

    ck_assert_int_eq(lsm_open(dir, o, &db), OM_OK);
    return db;
}

static om_slice
S(const char *s)
{
    return om_slice_from_str(s);
}

static void
put(lsm_db *db, const char *k, const char *v)
{
    ck_assert_int_eq(lsm_put(db, S(k), S(v)), OM_OK);
}

static void
check_get(lsm_db *db, const lsm_snapshot *snap, const char *k, const char *want)
{
    om_buf v = OM_BUF_INIT;
    om_status st = lsm_get(db, snap, S(k), &v);

    if (want == NULL) {
        ck_assert_msg(st == OM_E_NOTFOUND, "key %s: status %s", k, om_status_str(st));
    } else {
        ck_assert_msg(st == OM_OK, "key %s: status %s", k, om_status_str(st));
        ck_assert_uint_eq(v.n, strlen(want));
        ck_assert(memcmp(v.p, want, v.n) == 0);
    }
    om_buf_free(&v);
}

static void
small_opts(lsm_opts *o)
{
    lsm_opts_init(o);
    o->write_buffer_size = 64 * 1024;
    o->target_file_size = 32 * 1024;
    o->max_bytes_for_level1 = 128 * 1024;
    o->sync_mode = LSM_SYNC_NONE;
    o->block_cache_size = 1 << 20;
}

START_TEST(put_get_del)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;

    lsm_opts_init(&o);
    db = open_db(dir, &o);
    check_get(db, NULL, "a", NULL);
    put(db, "a", "1");
    put(db, "b", "2");
    check_get(db, NULL, "a", "1");
    put(db, "a", "3");
    check_get(db, NULL, "a", "3");
    ck_assert_int_eq(lsm_del(db, S("a")), OM_OK);
    check_get(db, NULL, "a", NULL);
    check_get(db, NULL, "b", "2");
    ck_assert_int_eq(lsm_put(db, S(""), S("empty-key")), OM_OK);
    check_get(db, NULL, "", "empty-key");
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(key_and_value_limits)
{
    const char *dir = tu_tmpdir();
    lsm_db *db = open_db(dir, NULL);
    size_t big = LSM_MAX_KEY_SIZE + 1;
    uint8_t *k = calloc(1, big);
    om_buf v = OM_BUF_INIT;

    ck_assert_int_eq(lsm_put(db, om_slice_make(k, big), S("x")), OM_E_INVALID);
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_make(k, big), &v), OM_E_INVALID);
    ck_assert_int_eq(lsm_put(db, om_slice_make(k, big - 1), S("x")), OM_OK);
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_make(k, big - 1), &v), OM_OK);
    om_buf_free(&v);
    free(k);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(batch_atomic_and_ordered)
{
    const char *dir = tu_tmpdir();
    lsm_db *db = open_db(dir, NULL);
    lsm_batch *b;

    ck_assert_int_eq(lsm_batch_new(&b), OM_OK);
    ck_assert_uint_eq(lsm_batch_count(b), 0);
    ck_assert_int_eq(lsm_write(db, b), OM_OK);
    ck_assert_int_eq(lsm_batch_put(b, S("k1"), S("v1")), OM_OK);
    ck_assert_int_eq(lsm_batch_put(b, S("k2"), S("v2")), OM_OK);
    ck_assert_int_eq(lsm_batch_del(b, S("k1")), OM_OK);
    ck_assert_int_eq(lsm_batch_put(b, S("k3"), S("v3")), OM_OK);
    ck_assert_uint_eq(lsm_batch_count(b), 4);
    ck_assert_int_eq(lsm_write(db, b), OM_OK);
    check_get(db, NULL, "k1", NULL); /* later ops in a batch win */
    check_get(db, NULL, "k2", "v2");
    check_get(db, NULL, "k3", "v3");
    lsm_batch_clear(b);
    ck_assert_uint_eq(lsm_batch_count(b), 0);
    ck_assert_int_eq(lsm_batch_put(b, S("k1"), S("again")), OM_OK);
    ck_assert_int_eq(lsm_write(db, b), OM_OK);
    check_get(db, NULL, "k1", "again");
    lsm_batch_free(b);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* Collect the iterator's keys as "k=v," into a string. */
static char *
scan(lsm_db *db, const lsm_snapshot *snap, const char *lo, const char *hi, const char *seek)
{
    lsm_iter_opts io;
    lsm_iter *it;
    om_buf out = OM_BUF_INIT;

    lsm_iter_opts_init(&io);
    io.snapshot = snap;
    if (lo != NULL)
        io.lower = S(lo);
    if (hi != NULL)
        io.upper = S(hi);
    ck_assert_int_eq(lsm_iter_new(db, &io, &it), OM_OK);
    if (seek != NULL)
        lsm_iter_seek(it, S(seek));
    else
        lsm_iter_seek_first(it);
    for (; lsm_iter_valid(it); lsm_iter_next(it)) {
        om_slice k = lsm_iter_key(it), v = lsm_iter_value(it);

        om_buf_printf(&out, "%.*s=%.*s,", (int)k.n, (const char *)k.p, (int)v.n, (const char *)v.p);
    }
    ck_assert_int_eq(lsm_iter_status(it), OM_OK);
    lsm_iter_free(it);
    om_buf_append_byte(&out, 0);
    return (char *)out.p;
}

static void
check_scan(lsm_db *db, const lsm_snapshot *snap, const char *lo, const char *hi, const char *seek,
           const char *want)
{
    char *got = scan(db, snap, lo, hi, seek);

    ck_assert_str_eq(got, want);
    free(got);
}

static void
iter_checks(lsm_db *db)
{
    check_scan(db, NULL, NULL, NULL, NULL, "a=1,b=2,c=3,d=4,");
    check_scan(db, NULL, "b", NULL, NULL, "b=2,c=3,d=4,");
    check_scan(db, NULL, NULL, "c", NULL, "a=1,b=2,");
    check_scan(db, NULL, "b", "d", NULL, "b=2,c=3,");
    check_scan(db, NULL, NULL, NULL, "bb", "c=3,d=4,");
    check_scan(db, NULL, "c", NULL, "a", "c=3,d=4,");
    check_scan(db, NULL, NULL, "b", "c", "");
}

START_TEST(iterators_and_bounds)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;

    small_opts(&o);
    db = open_db(dir, &o);
    put(db, "c", "x");
    put(db, "a", "1");
    put(db, "e", "5");
    put(db, "b", "2");
    put(db, "d", "4");
    put(db, "c", "3");
    ck_assert_int_eq(lsm_del(db, S("e")), OM_OK);
    iter_checks(db);
    /* The same answers from tables, and from a mix of tables and memtable. */
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    iter_checks(db);
    put(db, "b", "2");
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    iter_checks(db);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    db = open_db(dir, &o);
    iter_checks(db);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(snapshots_see_the_past)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_snapshot *s1, *s2;

    small_opts(&o);
    db = open_db(dir, &o);
    put(db, "k", "v1");
    put(db, "gone", "here");
    ck_assert_int_eq(lsm_snapshot_new(db, &s1), OM_OK);
    put(db, "k", "v2");
    ck_assert_int_eq(lsm_del(db, S("gone")), OM_OK);
    put(db, "new", "n");
    ck_assert_int_eq(lsm_snapshot_new(db, &s2), OM_OK);
    put(db, "k", "v3");
    for (int round = 0; round < 2; round++) {
        check_get(db, s1, "k", "v1");
        check_get(db, s1, "gone", "here");
        check_get(db, s1, "new", NULL);
        check_get(db, s2, "k", "v2");
        check_get(db, s2, "gone", NULL);
        check_get(db, NULL, "k", "v3");
        check_scan(db, s1, NULL, NULL, NULL, "gone=here,k=v1,");
        check_scan(db, s2, NULL, NULL, NULL, "k=v2,new=n,");
        /* Compaction must keep what the snapshots see. */
        ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    }
    lsm_snapshot_free(db, s1);
    lsm_snapshot_free(db, s2);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(reopen_replays_wal_and_tables)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    char k[32], v[64];

    small_opts(&o);
    for (int round = 0; round < 3; round++) {
        db = open_db(dir, &o);
        for (int i = 0; i < 3000; i++) {
            snprintf(k, sizeof(k), "key%06d", i);
            snprintf(v, sizeof(v), "value-%d-%d", round, i);
            put(db, k, v);
        }
        for (int i = 0; i < 3000; i += 7) {
            snprintf(k, sizeof(k), "key%06d", i);
            ck_assert_int_eq(lsm_del(db, S(k)), OM_OK);
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
        db = open_db(dir, &o);
        for (int i = 0; i < 3000; i++) {
            snprintf(k, sizeof(k), "key%06d", i);
            snprintf(v, sizeof(v), "value-%d-%d", round, i);
            check_get(db, NULL, k, i % 7 == 0 ? NULL : v);
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
    }
}
END_TEST

START_TEST(may_contain_and_stats)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    char k[32];
    int maybe = 0;

    small_opts(&o);
    db = open_db(dir, &o);
    ck_assert(!lsm_may_contain(db, S("nothing")));
    put(db, "mem", "x");
    ck_assert(lsm_may_contain(db, S("mem")));
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "present%05d", i);
        put(db, k, "some value bytes");
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "present%05d", i);
        ck_assert(lsm_may_contain(db, S(k)));
        snprintf(k, sizeof(k), "present%05d-absent", i);
        maybe += lsm_may_contain(db, S(k));
    }
    ck_assert_int_lt(maybe, 100); /* ~1% false positives expected at 10 bits/key */
    lsm_stats_get(db, &s);
    ck_assert_uint_ge(s.flushes, 1);
    ck_assert_uint_ge(s.levels[0].files + s.levels[1].files, 1);
    ck_assert_uint_gt(s.live_sst_bytes, 0);
    ck_assert_uint_gt(s.user_bytes_written, 2000 * 16);
    ck_assert_uint_gt(s.wal_bytes_written, s.user_bytes_written);
    ck_assert(s.write_amplification > 1.0);
    ck_assert_uint_gt(s.bloom_checks, 0);
    ck_assert_uint_gt(s.bloom_useful, 0);
    ck_assert_uint_eq(s.last_sequence, 2001);
    ck_assert_uint_eq(s.wal_syncs, 0); /* LSM_SYNC_NONE */
    ck_assert_int_eq(lsm_close(db), OM_OK);

    o.sync_mode = LSM_SYNC_ALWAYS;
    db = open_db(dir, &o);
    put(db, "s1", "x");
    put(db, "s2", "x");
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.wal_syncs, 2);
    ck_assert_uint_eq(s.wal_synced_writes, 2);
    ck_assert_uint_eq(s.last_sequence, 2003);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(lock_options_destroy)
{
    const char *dir = tu_tmpdir();
    char path[512];
    lsm_opts o;
    lsm_db *db, *db2 = NULL;

    lsm_opts_init(&o);
    o.create_if_missing = false;
    snprintf(path, sizeof(path), "%s/sub", dir);
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    lsm_opts_init(&o);
    o.l0_slowdown_trigger = 1; /* below the compaction trigger */
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    lsm_opts_init(&o);
    db = open_db(path, &o);
    put(db, "k", "v");
    /* The LOCK file is per process (fcntl): a second handle in-process must also fail. */
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    ck_assert_int_eq(lsm_destroy(path, &o), OM_E_INVALID);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    o.error_if_exists = true;
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    ck_assert_int_eq(lsm_destroy(path, &o), OM_OK);
    o.error_if_exists = false;
    o.create_if_missing = false;
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
}
END_TEST

/*
 * zstd's fast (negative) levels are accepted, below its minimum refused; a
 * flush (which compresses with a fast level) and a compaction (with the
 * configured level) both give back what was written, compressed.
 */
START_TEST(zstd_levels)
{
    const char *dir = tu_tmpdir();
    char path[512], k[32], val[300];
    lsm_opts o;
    lsm_stats s;
    lsm_db *db, *db2 = NULL;

    snprintf(path, sizeof(path), "%s/z", dir);
    small_opts(&o);
    o.zstd_level = -131073;
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    o.zstd_level = 23;
    ck_assert_int_eq(lsm_open(path, &o, &db2), OM_E_INVALID);
    for (int level = -5; level <= 3; level += 4) { /* -5, -1, 3 */
        small_opts(&o);
        o.zstd_level = level;
        db = open_db(path, &o);
        memset(val, 'z', sizeof(val) - 1);
        val[sizeof(val) - 1] = 0;
        for (int i = 0; i < 400; i++) {
            snprintf(k, sizeof(k), "key%05d", i);
            put(db, k, val);
        }
        ck_assert_int_eq(lsm_flush(db), OM_OK);
        lsm_stats_get(db, &s);
        /* 400 x 300 bytes of 'z' compress far below their raw size. */
        ck_assert_uint_lt(s.live_sst_bytes, 400 * 300 / 4);
        ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
        for (int i = 0; i < 400; i += 7) {
            snprintf(k, sizeof(k), "key%05d", i);
            check_get(db, NULL, k, val);
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
        ck_assert_int_eq(lsm_destroy(path, &o), OM_OK);
    }
}
END_TEST

typedef struct writer_arg {
    lsm_db *db;
    int id;
    int n;
} writer_arg;

static void *
writer_main(void *p)
{
    writer_arg *a = p;
    char k[32], v[32];

    for (int i = 0; i < a->n; i++) {
        snprintf(k, sizeof(k), "w%d-%05d", a->id, i);
        snprintf(v, sizeof(v), "v%d", i);
        if (lsm_put(a->db, S(k), S(v)) != OM_OK)
            return (void *)1;
    }
    return NULL;
}

START_TEST(group_commit_many_writers)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    pthread_t th[4];
    writer_arg args[4];
    char k[32], v[32];

    small_opts(&o);
    o.sync_mode = LSM_SYNC_ALWAYS;
    db = open_db(dir, &o);
    for (int t = 0; t < 4; t++) {
        args[t] = (writer_arg){db, t, 150};
        ck_assert_int_eq(pthread_create(&th[t], NULL, writer_main, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        void *r;

        pthread_join(th[t], &r);
        ck_assert_ptr_null(r);
    }
    lsm_stats_get(db, &s);
    /* Every write was synced; concurrent writers share syncs. */
    ck_assert_uint_eq(s.wal_synced_writes, 600);
    ck_assert_uint_le(s.wal_syncs, 600);
    ck_assert_uint_ge(s.wal_syncs, 1);
    printf("group commit: writes=%llu syncs=%llu (%.2f writes per sync)\n",
           (unsigned long long)s.wal_synced_writes, (unsigned long long)s.wal_syncs,
           (double)s.wal_synced_writes / (double)s.wal_syncs);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    db = open_db(dir, &o);
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 150; i++) {
            snprintf(k, sizeof(k), "w%d-%05d", t, i);
            snprintf(v, sizeof(v), "v%d", i);
            check_get(db, NULL, k, v);
        }
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(periodic_sync_happens)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    uint64_t deadline;

    small_opts(&o);
    o.sync_mode = LSM_SYNC_PERIODIC;
    o.sync_period_ms = 10;
    db = open_db(dir, &o);
    put(db, "a", "1");
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.wal_synced_writes, 0); /* not synced inline */
    deadline = tu_now_ms() + 10000;
    do
        lsm_stats_get(db, &s);
    while (s.wal_syncs == 0 && tu_now_ms() < deadline);
    ck_assert_uint_ge(s.wal_syncs, 1);
    ck_assert_int_eq(lsm_sync(db), OM_OK);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(iterator_pins_files_across_compaction)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_iter *it;
    char k[32], v[64];
    int n = 0;

    small_opts(&o);
    db = open_db(dir, &o);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        snprintf(v, sizeof(v), "old-%05d-%030d", i, i);
        put(db, k, v);
    }
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    ck_assert_int_eq(lsm_iter_new(db, NULL, &it), OM_OK);
    lsm_iter_seek_first(it);
    /* Rewrite and compact everything: the iterator's files become obsolete. */
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        if (i % 2)
            ck_assert_int_eq(lsm_del(db, S(k)), OM_OK);
        else
            put(db, k, "new");
    }
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    for (; lsm_iter_valid(it); lsm_iter_next(it), n++) {
        snprintf(k, sizeof(k), "key%05d", n);
        snprintf(v, sizeof(v), "old-%05d-%030d", n, n);
        ck_assert(om_slice_eq(lsm_iter_key(it), S(k)));
        ck_assert(om_slice_eq(lsm_iter_value(it), S(v)));
    }
    ck_assert_int_eq(lsm_iter_status(it), OM_OK);
    ck_assert_int_eq(n, 2000);
    lsm_iter_free(it);
    check_get(db, NULL, "key00000", "new");
    check_get(db, NULL, "key00001", NULL);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* The POSIX env, with the threads that remove tables told apart. */
static lsm_env_ops rm_ops;
static lsm_env rm_env;
static pthread_t rm_caller;
static atomic_int rm_on_caller, rm_elsewhere;

static om_status
rm_remove(lsm_env *env, const char *path)
{
    (void)env;
    if (strstr(path, ".sst") != NULL)
        atomic_fetch_add(pthread_equal(pthread_self(), rm_caller) ? &rm_on_caller : &rm_elsewhere,
                         1);
    return lsm_env_posix()->ops->remove(lsm_env_posix(), path);
}

static int
count_tables(const char *dir)
{
    char **names;
    size_t n;
    int tables = 0;

    ck_assert_int_eq(lsm_env_posix()->ops->list(lsm_env_posix(), dir, &names, &n), OM_OK);
    for (size_t i = 0; i < n; i++)
        tables += strstr(names[i], ".sst") != NULL;
    lsm_env_free_list(names, n);
    return tables;
}

/*
 * A thread that drops the last reference to an obsolete table -- here the
 * caller, freeing an iterator, and the caller's compact_range -- never
 * removes its file itself (an unlink under write load took 20-35 ms): the
 * engine's deleter does, and lsm_close waits for it, so after the close the
 * directory holds exactly the tables of the last version.
 */
START_TEST(obsolete_tables_removed_off_the_caller)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_iter *it;
    lsm_stats s;
    char k[32];
    uint64_t live = 0;

    rm_ops = *lsm_env_posix()->ops;
    rm_ops.remove = rm_remove;
    rm_env.ops = &rm_ops;
    rm_caller = pthread_self();
    atomic_store(&rm_on_caller, 0);
    atomic_store(&rm_elsewhere, 0);
    small_opts(&o);
    o.env = &rm_env;
    db = open_db(dir, &o);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        put(db, k, "first version of a value long enough to fill blocks");
    }
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    ck_assert_int_eq(lsm_iter_new(db, NULL, &it), OM_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        put(db, k, "second");
    }
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    lsm_iter_free(it); /* the last reference to the first tables */
    lsm_stats_get(db, &s);
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        live += s.levels[l].files;
    ck_assert_int_eq(lsm_close(db), OM_OK);
    int on_caller = atomic_load(&rm_on_caller), elsewhere = atomic_load(&rm_elsewhere);
    ck_assert_int_eq(on_caller, 0);
    ck_assert_int_gt(elsewhere, 0);
    ck_assert_int_eq(count_tables(dir), (int)live);
}
END_TEST

START_TEST(stalls_are_counted)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    char k[32], v[200];

    small_opts(&o);
    o.write_buffer_size = 8 * 1024;
    o.max_immutable_memtables = 1;
    o.l0_compaction_trigger = 1;
    o.l0_slowdown_trigger = 1;
    o.l0_stop_trigger = 2;
    db = open_db(dir, &o);
    memset(v, 'x', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    for (int i = 0; i < 600; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        put(db, k, v);
    }
    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.stall_micros, 0);
    for (int i = 0; i < 600; i += 50) {
        snprintf(k, sizeof(k), "key%05d", i);
        check_get(db, NULL, k, v);
    }
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(corrupt_table_gives_corrupt)
{
    const char *dir = tu_tmpdir();
    char path[512], k[32];
    lsm_opts o;
    lsm_db *db;
    lsm_iter *it;
    om_buf v = OM_BUF_INIT;
    char **names;
    size_t n;
    lsm_env *env = lsm_env_posix();
    int corrupt = 0, ok = 0;

    small_opts(&o);
    o.paranoid_checks = false;
    db = open_db(dir, &o);
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        put(db, k, "some value that is long enough to fill a few blocks");
    }
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    /* Flip one byte near the start of every table (inside its first data block). */
    ck_assert_int_eq(env->ops->list(env, dir, &names, &n), OM_OK);
    for (size_t i = 0; i < n; i++) {
        if (strstr(names[i], ".sst") == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r+b");
        ck_assert_ptr_nonnull(f);
        fseek(f, 20, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 20, SEEK_SET);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    lsm_env_free_list(names, n);
    db = open_db(dir, &o);
    for (int i = 0; i < 500; i++) {
        om_status st;

        snprintf(k, sizeof(k), "key%05d", i);
        st = lsm_get(db, NULL, S(k), &v);
        ck_assert_msg(st == OM_OK || st == OM_E_CORRUPT, "get %s: %s", k, om_status_str(st));
        if (st == OM_OK)
            ck_assert(om_slice_eq(om_buf_slice(&v),
                                  S("some value that is long enough to fill a few blocks")));
        corrupt += st == OM_E_CORRUPT;
        ok += st == OM_OK;
    }
    ck_assert_int_gt(corrupt, 0);
    ck_assert_int_gt(ok, 0);
    ck_assert_int_eq(lsm_iter_new(db, NULL, &it), OM_OK);
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
        ;
    ck_assert_int_eq(lsm_iter_status(it), OM_E_CORRUPT);
    lsm_iter_free(it);
    om_buf_free(&v);
    lsm_close(db);
}
END_TEST

/* The nice value of this process's thread named `name` (-100: no such thread). */
static int
thread_nice(const char *name)
{
    char **names = NULL, path[512], buf[1024];
    size_t n = 0;
    int nice = -100;
    lsm_env *env = lsm_env_posix();

    ck_assert_int_eq(env->ops->list(env, "/proc/self/task", &names, &n), OM_OK);
    for (size_t i = 0; i < n && nice == -100; i++) {
        FILE *f;
        char *p;

        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", names[i]);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL &&
            strstr(buf, name) != NULL) {
            /* after "pid (comm)": state is field 3, nice field 19 */
            int field = 2;
            long v = 0;

            for (char *t = strtok(p + 1, " "); t != NULL && field < 19; t = strtok(NULL, " ")) {
                field++;
                v = strtol(t, NULL, 10);
            }
            if (field == 19)
                nice = (int)v;
        }
        fclose(f);
    }
    lsm_env_free_list(names, n);
    return nice;
}

/* background_nice: checked, and set on the flush and compaction threads only. */
START_TEST(background_nice_lowers_flush_and_compaction)
{
    lsm_opts o;
    lsm_db *db = NULL;
    uint64_t deadline;

    small_opts(&o);
    o.background_nice = 20;
    ck_assert_int_eq(lsm_open(tu_tmpdir(), &o, &db), OM_E_INVALID);
    o.background_nice = -1;
    ck_assert_int_eq(lsm_open(tu_tmpdir(), &o, &db), OM_E_INVALID);
    o.background_nice = 7;
    db = open_db(tu_tmpdir(), &o);
    put(db, "k", "v");
    /* The threads set it when they start: poll with a deadline. */
    deadline = tu_now_ms() + 10000;
    while ((thread_nice("(lsm-flush)") != 7 || thread_nice("(lsm-compact)") != 7) &&
           tu_now_ms() < deadline)
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    ck_assert_int_eq(thread_nice("(lsm-flush)"), 7);
    ck_assert_int_eq(thread_nice("(lsm-compact)"), 7);
    ck_assert_int_ne(thread_nice("(test_lsm_db)"), 7);
    check_get(db, NULL, "k", "v");
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* lsm_prefetch and lsm_prefetch_values on present, deleted, absent and empty keys: hints only. */
START_TEST(prefetch_hints_change_nothing)
{
    lsm_opts o;
    lsm_db *db;
    om_slice keys[5];

    small_opts(&o);
    db = open_db(tu_tmpdir(), &o);
    put(db, "a", "1");
    put(db, "b", "2");
    ck_assert_int_eq(lsm_del(db, S("b")), OM_OK);
    keys[0] = S("a");
    keys[1] = S("b");
    keys[2] = S("zz-absent");
    keys[3] = S("");
    keys[4] = S("a");
    for (size_t n = 0; n <= 5; n++) {
        lsm_prefetch(db, keys, n);
        lsm_prefetch_values(db, keys, n);
    }
    check_get(db, NULL, "a", "1");
    check_get(db, NULL, "b", NULL);
    check_get(db, NULL, "zz-absent", NULL);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

static Suite *
db_suite(void)
{
    Suite *s = suite_create("lsm-db");
    TCase *tc = tcase_create("api");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, put_get_del);
    tcase_add_test(tc, key_and_value_limits);
    tcase_add_test(tc, batch_atomic_and_ordered);
    tcase_add_test(tc, iterators_and_bounds);
    tcase_add_test(tc, snapshots_see_the_past);
    tcase_add_test(tc, reopen_replays_wal_and_tables);
    tcase_add_test(tc, may_contain_and_stats);
    tcase_add_test(tc, lock_options_destroy);
    tcase_add_test(tc, zstd_levels);
    tcase_add_test(tc, group_commit_many_writers);
    tcase_add_test(tc, periodic_sync_happens);
    tcase_add_test(tc, iterator_pins_files_across_compaction);
    tcase_add_test(tc, stalls_are_counted);
    tcase_add_test(tc, corrupt_table_gives_corrupt);
    tcase_add_test(tc, prefetch_hints_change_nothing);
    tcase_add_test(tc, background_nice_lowers_flush_and_compaction);
    tcase_add_test(tc, obsolete_tables_removed_off_the_caller);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(db_suite());
}
