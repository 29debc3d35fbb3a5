/*
 * tests/lsm/test_mem_pool.c -- memtable memory recycling (memtable.h,
 * lsm_mem_pool): a pooled memtable reuses the arena blocks and the zeroed
 * hash buckets of a dead one and answers only for its own keys; a database
 * under a write load takes most blocks of new memtables from the pool (the
 * lsm_stats counters), the pool stays within one write_buffer_size, and the
 * data survives close and reopen (whose recovery memtables are pooled too);
 * with memtable_prefault a reserve of blocks appears in the pool after open;
 * once writes stop for idle_flush_ms, a memtable of a quarter of the write
 * buffer or more is flushed and the pool trimmed to that reserve.
 * Randomized keys print their seed (TU_SEED replays).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lsm/lsm.h"
#include "lsm/memtable.h"
#include "tu.h"

static om_slice
S(const char *s)
{
    return om_slice_from_str(s);
}

START_TEST(mem_pool_recycles_blocks_and_buckets)
{
    const size_t wb = 64 * 1024;
    lsm_mem_pool *pool;
    lsm_memtable *m;
    om_arena_pool_stats ps;
    om_slice v = {0};
    om_status st;
    char key[32], val[64];

    ck_assert_int_eq(lsm_mem_pool_new(wb, 2 * wb, &pool), OM_OK);
    ck_assert_int_eq(lsm_mem_new_pooled(1, pool, &m), OM_OK);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "old-%04d", i);
        memset(val, 'a' + i % 26, sizeof(val));
        ck_assert_int_eq(
            lsm_mem_add(m, (uint64_t)i + 1, LSM_TYPE_VAL, S(key), om_slice_make(val, sizeof(val))),
            OM_OK);
    }
    lsm_mem_pool_stats(pool, &ps);
    ck_assert_uint_gt(ps.allocated, 2);
    ck_assert_uint_eq(ps.reused, 0);
    lsm_mem_unref(m);
    lsm_mem_pool_stats(pool, &ps);
    ck_assert_uint_eq(ps.returned, ps.allocated);
    ck_assert_uint_le(ps.free_bytes, 2 * wb);

    /* The next memtable: blocks from the pool, buckets of the dead one (zeroed). */
    ck_assert_int_eq(lsm_mem_new_pooled(2, pool, &m), OM_OK);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "old-%04d", i);
        ck_assert(!lsm_mem_find(m, S(key), 1000, &v, &st));
        ck_assert(!lsm_mem_has_key(m, S(key)));
    }
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "new-%04d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        ck_assert_int_eq(lsm_mem_add(m, (uint64_t)i + 1, LSM_TYPE_VAL, S(key), S(val)), OM_OK);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "new-%04d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        ck_assert(lsm_mem_find(m, S(key), 1000, &v, &st));
        ck_assert_int_eq(st, OM_OK);
        ck_assert_uint_eq(v.n, strlen(val));
        ck_assert_int_eq(memcmp(v.p, val, v.n), 0);
    }
    lsm_mem_pool_stats(pool, &ps);
    ck_assert_uint_gt(ps.reused, 0);
    /* The creator's reference goes first: the memtable keeps the pool alive. */
    lsm_mem_pool_unref(pool);
    snprintf(key, sizeof(key), "new-%04d", 7);
    ck_assert(lsm_mem_find(m, S(key), 1000, &v, &st));
    lsm_mem_unref(m);
}
END_TEST

static lsm_db *
open_db_idle(const char *dir, size_t wb, bool prefault, uint32_t idle_flush_ms)
{
    lsm_opts o;
    lsm_db *db = NULL;

    lsm_opts_init(&o);
    o.idle_flush_ms = idle_flush_ms;
    o.memtable_prefault = prefault;
    o.sync_mode = LSM_SYNC_NONE;
    o.write_buffer_size = wb;
    o.block_cache_size = 256 * 1024;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    return db;
}

static lsm_db *
open_db_opts(const char *dir, size_t wb, bool prefault)
{
    return open_db_idle(dir, wb, prefault, 0);
}

static lsm_db *
open_db(const char *dir, size_t wb)
{
    return open_db_opts(dir, wb, true);
}

#define NKEYS 3000

static void
mkkey(uint32_t k, char *out)
{
    snprintf(out, 32, "k%08x", k * 2654435761u);
}

/* The value of key k in round r: long enough that a round fills several memtables. */
static size_t
mkval(uint32_t k, int r, char *out, size_t cap)
{
    int n = snprintf(out, cap, "v%d-%u-", r, k);

    memset(out + n, 'x' + (char)(k % 3), cap - (size_t)n);
    return cap;
}

static void
check_all(lsm_db *db, int round)
{
    om_buf v = OM_BUF_INIT;
    char key[32], want[200];

    for (uint32_t k = 0; k < NKEYS; k++) {
        size_t n = mkval(k, round, want, sizeof(want));

        mkkey(k, key);
        ck_assert_int_eq(lsm_get(db, NULL, S(key), &v), OM_OK);
        ck_assert_uint_eq(v.n, n);
        ck_assert_msg(memcmp(v.p, want, n) == 0, "key %s round %d", key, round);
    }
    om_buf_free(&v);
}

static void
write_round(lsm_db *db, int round, uint64_t *rnd)
{
    char key[32], val[200];
    uint32_t start = (uint32_t)(tu_rand(rnd) % NKEYS);

    for (uint32_t i = 0; i < NKEYS; i++) {
        uint32_t k = (start + i * 7) % NKEYS; /* 7 is prime to NKEYS: every key once */
        size_t n = mkval(k, round, val, sizeof(val));

        mkkey(k, key);
        ck_assert_int_eq(lsm_put(db, S(key), om_slice_make(val, n)), OM_OK);
    }
}

START_TEST(mem_pool_db_reuses_across_memtables_and_reopen)
{
    const char *dir = tu_tmpdir();
    const size_t wb = 128 * 1024;
    uint64_t rnd = tu_seed("mem_pool_db_reuses_across_memtables_and_reopen");
    lsm_db *db = open_db(dir, wb);
    lsm_stats st;

    for (int r = 0; r < 4; r++) {
        write_round(db, r, &rnd); /* ~700 KB a round: several memtable switches */
        lsm_stats_get(db, &st);
        ck_assert_uint_le(st.mem_pool_bytes, wb);
    }
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    lsm_stats_get(db, &st);
    ck_assert_uint_gt(st.flushes, 8);
    /* After the first memtables, new ones mostly take their blocks from the pool. */
    ck_assert_msg(st.mem_pool_reused > st.mem_pool_allocated, "reused %llu allocated %llu",
                  (unsigned long long)st.mem_pool_reused,
                  (unsigned long long)st.mem_pool_allocated);
    ck_assert_uint_le(st.mem_pool_bytes, wb);
    check_all(db, 3);
    ck_assert_int_eq(lsm_close(db), OM_OK);

    /* Unflushed writes replay into pooled memtables at open. */
    db = open_db(dir, wb);
    check_all(db, 3);
    write_round(db, 4, &rnd);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    db = open_db(dir, wb);
    check_all(db, 4);
    write_round(db, 5, &rnd);
    lsm_stats_get(db, &st);
    ck_assert_uint_gt(st.mem_pool_reused, 0);
    ck_assert_uint_le(st.mem_pool_bytes, wb);
    check_all(db, 5);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* memtable_prefault: a reserve of blocks shows up in the pool soon after open; off, none. */
START_TEST(mem_pool_prefault_reserve)
{
    const size_t wb = 256 * 1024;
    lsm_db *db = open_db_opts(tu_tmpdir(), wb, true);
    uint64_t deadline = tu_now_ms() + 10000;
    uint64_t rnd = tu_seed("mem_pool_prefault_reserve");
    lsm_stats st;

    do {
        lsm_stats_get(db, &st);
        if (st.mem_pool_bytes >= wb / 4)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "no reserve: %llu bytes",
                      (unsigned long long)st.mem_pool_bytes);
        usleep(1000);
    } while (true);
    write_round(db, 0, &rnd);
    write_round(db, 1, &rnd);
    lsm_stats_get(db, &st);
    ck_assert_uint_le(st.mem_pool_bytes, wb);
    check_all(db, 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);

    db = open_db_opts(tu_tmpdir(), wb, false);
    lsm_stats_get(db, &st);
    ck_assert_uint_eq(st.mem_pool_bytes, 0);
    write_round(db, 0, &rnd);
    check_all(db, 0);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* Poll (with a deadline) until the pool holds at most `bytes` and the memtables less than `mem`. */
static void
wait_pool_and_mem(lsm_db *db, uint64_t bytes, uint64_t mem, lsm_stats *st)
{
    uint64_t deadline = tu_now_ms() + 20000;

    for (;;) {
        lsm_stats_get(db, st);
        if (st->mem_pool_bytes <= bytes && st->memtable_bytes < mem)
            return;
        ck_assert_msg(tu_now_ms() < deadline,
                      "not handed back: pool %llu bytes (want <= %llu), memtables %llu (< %llu)",
                      (unsigned long long)st->mem_pool_bytes, (unsigned long long)bytes,
                      (unsigned long long)st->memtable_bytes, (unsigned long long)mem);
        usleep(2000);
    }
}

/*
 * idle_flush_ms: once writes stop, a memtable holding a quarter of the write
 * buffer or more is flushed and the pool is trimmed to the prefault reserve;
 * a smaller memtable stays (no tiny table) while the pool is still trimmed.
 * Nothing is lost, before or after a reopen.
 */
START_TEST(mem_pool_idle_flush_hands_memory_back)
{
    const char *dir = tu_tmpdir();
    const size_t wb = 256 * 1024;
    uint64_t rnd = tu_seed("mem_pool_idle_flush_hands_memory_back"), flushes;
    lsm_db *db = open_db_idle(dir, wb, true, 100);
    char key[32], val[200];
    om_buf v = OM_BUF_INIT;
    lsm_stats st;

    /* Several switches leave dead memtables' blocks in the pool; then half a memtable more. */
    write_round(db, 0, &rnd);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (uint32_t k = 0; k < 640; k++) { /* ~128 KB: over a quarter, under the whole */
        mkkey(k, key);
        ck_assert_int_eq(lsm_put(db, S(key), om_slice_make(val, mkval(k, 1, val, sizeof(val)))),
                         OM_OK);
    }
    lsm_stats_get(db, &st);
    flushes = st.flushes;
    ck_assert_uint_ge(st.memtable_bytes, wb / 4);
    /* The reserve (wb / 4) stays; the memtable goes, leaving its empty successor. */
    wait_pool_and_mem(db, wb / 4, wb / 4, &st);
    ck_assert_uint_eq(st.flushes, flushes + 1);
    for (uint32_t k = 0; k < NKEYS; k++) {
        mkkey(k, key);
        ck_assert_int_eq(lsm_get(db, NULL, S(key), &v), OM_OK);
        ck_assert(v.n == mkval(k, k < 640 ? 1 : 0, val, sizeof(val)) && memcmp(v.p, val, v.n) == 0);
    }

    /* Again with a small memtable: only the pool is trimmed. */
    write_round(db, 2, &rnd);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    for (uint32_t k = 0; k < 20; k++) {
        mkkey(k, key);
        ck_assert_int_eq(lsm_put(db, S(key), om_slice_make(val, mkval(k, 3, val, sizeof(val)))),
                         OM_OK);
    }
    lsm_stats_get(db, &st);
    flushes = st.flushes;
    ck_assert_uint_gt(st.mem_pool_bytes, wb / 4); /* the flushed memtable's blocks */
    wait_pool_and_mem(db, wb / 4, wb / 4, &st);
    ck_assert_uint_eq(st.flushes, flushes);
    ck_assert_uint_gt(st.memtable_bytes, 0);
    ck_assert_int_eq(lsm_close(db), OM_OK);

    db = open_db(dir, wb);
    for (uint32_t k = 0; k < NKEYS; k++) {
        mkkey(k, key);
        ck_assert_int_eq(lsm_get(db, NULL, S(key), &v), OM_OK);
        ck_assert(v.n == mkval(k, k < 20 ? 3 : 2, val, sizeof(val)) && memcmp(v.p, val, v.n) == 0);
    }
    ck_assert_int_eq(lsm_close(db), OM_OK);
    om_buf_free(&v);
}
END_TEST

static Suite *
mem_pool_suite(void)
{
    Suite *s = suite_create("lsm-mem-pool");
    TCase *tc = tcase_create("mem-pool");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mem_pool_recycles_blocks_and_buckets);
    tcase_add_test(tc, mem_pool_db_reuses_across_memtables_and_reopen);
    tcase_add_test(tc, mem_pool_prefault_reserve);
    tcase_add_test(tc, mem_pool_idle_flush_hands_memory_back);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(mem_pool_suite());
}
