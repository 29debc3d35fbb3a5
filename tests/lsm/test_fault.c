/*
 * tests/lsm/test_fault.c -- fault injection through tests/lsm/fault_env:
 * failed and short WAL appends, ENOSPC, failed WAL syncs, failures while
 * flushing tables and writing the MANIFEST, and crashes that keep a torn
 * part of the unsynced tail; a failed WAL zero-fill (preallocation) only
 * turns preallocation off; a power loss in the middle of a LSM_SYNC_ALWAYS
 * write load from two threads (the fsync half of what tests/lsm/test_crash.c
 * cannot see with kill -9). In every case the error surfaces as a status,
 * the database refuses writes after a failed WAL write or sync, and a
 * reopen (with a healthy env) finds every acknowledged write and opens
 * cleanly.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_env.h"
#include "lsm/lsm.h"
#include "tu.h"

static void
fopts(lsm_opts *o, fault_env *fe, lsm_sync_mode mode)
{
    lsm_opts_init(o);
    o->env = fe != NULL ? fault_env_get(fe) : NULL;
    o->sync_mode = mode;
    o->write_buffer_size = 32 * 1024;
    o->target_file_size = 16 * 1024;
    o->max_bytes_for_level1 = 64 * 1024;
    o->l0_compaction_trigger = 2;
    o->block_cache_size = 64 * 1024;
}

static om_status
put_i(lsm_db *db, int i)
{
    char k[32], v[100];

    snprintf(k, sizeof(k), "key%06d", i);
    snprintf(v, sizeof(v), "value-%06d-%060d", i, i);
    return lsm_put(db, om_slice_from_str(k), om_slice_from_str(v));
}

static bool
has_i(lsm_db *db, int i)
{
    char k[32], v[100];
    om_buf got = OM_BUF_INIT;
    om_status st;
    bool ok;

    snprintf(k, sizeof(k), "key%06d", i);
    snprintf(v, sizeof(v), "value-%06d-%060d", i, i);
    st = lsm_get(db, NULL, om_slice_from_str(k), &got);
    ck_assert_msg(st == OM_OK || st == OM_E_NOTFOUND, "get: %s", om_status_str(st));
    ok = st == OM_OK;
    if (ok)
        ck_assert(om_slice_eq(om_buf_slice(&got), om_slice_from_str(v)));
    om_buf_free(&got);
    return ok;
}

/* Reopen with the plain POSIX env and check keys [0, acked) are all there. */
static void
verify_acked(const char *dir, int acked)
{
    lsm_opts o;
    lsm_db *db;

    fopts(&o, NULL, LSM_SYNC_ALWAYS);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int i = 0; i < acked; i++)
        ck_assert_msg(has_i(db, i), "acknowledged key %d lost", i);
    /* And the database takes writes again. */
    ck_assert_int_eq(put_i(db, 999999), OM_OK);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}

/* Write until the armed fault hits; returns the number of acknowledged writes. */
static int
write_until_error(lsm_db *db, int max, om_status *err)
{
    int i;

    for (i = 0; i < max; i++) {
        *err = put_i(db, i);
        if (*err != OM_OK)
            break;
    }
    return i;
}

static void
wal_fault_case(fault_kind kind, lsm_sync_mode mode, int64_t nth)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    lsm_opts o;
    lsm_db *db;
    om_status err = OM_OK;
    int acked;

    fopts(&o, fe, mode);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    fault_env_arm(fe, kind, ".log", nth);
    acked = write_until_error(db, 5000, &err);
    ck_assert_int_eq(err, OM_E_IO);
    ck_assert_uint_ge(fault_env_injected(fe), 1);
    /* The db refuses writes from now on, with the background error. */
    fault_env_disarm(fe);
    ck_assert_int_eq(put_i(db, 424242), OM_E_IO);
    ck_assert_int_eq(lsm_flush(db), OM_E_IO);
    /* Reads still work. */
    for (int i = 0; i < acked; i++)
        ck_assert(has_i(db, i));
    ck_assert_int_eq(lsm_close(db), OM_E_IO);
    fault_env_free(fe);
    if (mode == LSM_SYNC_ALWAYS)
        verify_acked(dir, acked);
    else
        verify_acked(dir, 0); /* relaxed modes promise nothing; the db must still open */
}

/*
 * The WAL's zero-fill ahead of the appends (wal_preallocate) fails on a full
 * disk: the write that triggered it still succeeds (its append went
 * through), preallocation stops for that log, and later writes go on.
 */
START_TEST(fault_wal_zero_fill_fails)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    lsm_opts o;
    lsm_db *db;

    fopts(&o, fe, LSM_SYNC_ALWAYS);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    /* op 0 on the log: the first put's append; op 1: the zero-fill after it */
    fault_env_arm(fe, FAULT_WRITE_NOSPC, ".log", 1);
    ck_assert_int_eq(put_i(db, 0), OM_OK);
    ck_assert_uint_eq(fault_env_injected(fe), 1);
    fault_env_disarm(fe);
    for (int i = 1; i < 300; i++)
        ck_assert_int_eq(put_i(db, i), OM_OK);
    ck_assert_uint_eq(fault_env_injected(fe), 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    fault_env_free(fe);
    verify_acked(dir, 300);
}
END_TEST

START_TEST(fault_wal_write_eio)
{
    wal_fault_case(FAULT_WRITE_EIO, LSM_SYNC_ALWAYS, 50);
}
END_TEST

START_TEST(fault_wal_enospc)
{
    wal_fault_case(FAULT_WRITE_NOSPC, LSM_SYNC_ALWAYS, 700);
}
END_TEST

START_TEST(fault_wal_short_write)
{
    /* The half-written record is a torn tail that recovery truncates. */
    wal_fault_case(FAULT_WRITE_SHORT, LSM_SYNC_ALWAYS, 333);
    wal_fault_case(FAULT_WRITE_SHORT, LSM_SYNC_NONE, 10);
}
END_TEST

START_TEST(fault_wal_sync_fails)
{
    wal_fault_case(FAULT_SYNC, LSM_SYNC_ALWAYS, 20);
    wal_fault_case(FAULT_SYNC, LSM_SYNC_ALWAYS, 0);
}
END_TEST

static void
bg_fault_case(fault_kind kind, const char *filter)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    lsm_opts o;
    lsm_db *db;
    om_status err = OM_OK, st;
    int acked = 0;

    fopts(&o, fe, LSM_SYNC_ALWAYS);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    acked = write_until_error(db, 300, &err);
    ck_assert_int_eq(err, OM_OK);
    fault_env_arm(fe, kind, filter, 0);
    st = lsm_flush(db);
    ck_assert_msg(st == OM_E_IO, "flush: %s", om_status_str(st));
    /* The background error stops writes. */
    ck_assert_int_eq(put_i(db, 5000), OM_E_IO);
    for (int i = 0; i < acked; i++)
        ck_assert(has_i(db, i));
    lsm_close(db);
    fault_env_free(fe);
    verify_acked(dir, acked);
}

START_TEST(fault_flush_table_write)
{
    bg_fault_case(FAULT_WRITE_EIO, ".sst");
    bg_fault_case(FAULT_WRITE_NOSPC, ".sst");
    bg_fault_case(FAULT_SYNC, ".sst");
}
END_TEST

START_TEST(fault_manifest_write)
{
    bg_fault_case(FAULT_SYNC, "MANIFEST");
    bg_fault_case(FAULT_WRITE_SHORT, "MANIFEST");
}
END_TEST

START_TEST(fault_compaction_output)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    lsm_opts o;
    lsm_db *db;
    om_status st = OM_OK;
    int acked = 0;

    fopts(&o, fe, LSM_SYNC_NONE);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (; acked < 2000; acked++)
        ck_assert_int_eq(put_i(db, acked), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    ck_assert_int_eq(lsm_sync(db), OM_OK);
    fault_env_arm(fe, FAULT_WRITE_EIO, ".sst", 0);
    st = lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL);
    ck_assert_msg(st == OM_E_IO, "compact_range: %s", om_status_str(st));
    ck_assert_int_eq(put_i(db, 5000), OM_E_IO);
    lsm_close(db);
    fault_env_free(fe);
    verify_acked(dir, acked);
}
END_TEST

START_TEST(fault_crash_with_torn_tail)
{
    uint64_t seed = tu_seed("fault_crash_with_torn_tail"), rnd = seed;

    for (int round = 0; round < 25; round++) {
        const char *dir = tu_tmpdir();
        fault_env *fe = fault_env_new();
        lsm_opts o;
        lsm_db *db;
        int synced = 50 + (int)(tu_rand(&rnd) % 400), more = 1 + (int)(tu_rand(&rnd) % 400);
        int last = -1;

        fopts(&o, fe, LSM_SYNC_NONE);
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        for (int i = 0; i < synced; i++)
            ck_assert_int_eq(put_i(db, i), OM_OK);
        ck_assert_int_eq(lsm_sync(db), OM_OK);
        for (int i = synced; i < synced + more; i++)
            ck_assert_int_eq(put_i(db, i), OM_OK);
        /* Power loss: unsynced data is partly kept, partly lost, maybe mid-record. */
        fault_env_crash(fe, true, &rnd);
        lsm_close(db);
        fault_env_free(fe);

        fopts(&o, NULL, LSM_SYNC_NONE);
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        for (int i = 0; i < synced + more; i++) {
            bool have = has_i(db, i);

            if (i < synced)
                ck_assert_msg(have, "round %d: synced key %d lost", round, i);
            /* The log is a prefix: nothing after a missing write survives. */
            if (have)
                ck_assert_msg(last == i - 1, "round %d: key %d present after a gap", round, i);
            if (have)
                last = i;
        }
        ck_assert_int_eq(put_i(db, 0), OM_OK);
        ck_assert_int_eq(lsm_close(db), OM_OK);
    }
}
END_TEST

typedef struct pl_writer {
    lsm_db *db;
    int thread;
    atomic_int acked; /* keys [0, acked) of this thread were acknowledged */
    atomic_bool stop;
} pl_writer;

static void
pl_kv(int thread, int i, char *k, char *v)
{
    snprintf(k, 32, "t%d-%06d", thread, i);
    snprintf(v, 100, "value-%d-%06d-%060d", thread, i, i);
}

static void *
pl_writer_main(void *arg)
{
    pl_writer *w = arg;
    char k[32], v[100];

    for (int i = 0; !atomic_load(&w->stop); i++) {
        pl_kv(w->thread, i, k, v);
        if (lsm_put(w->db, om_slice_from_str(k), om_slice_from_str(v)) != OM_OK)
            break; /* the power is out: every later write fails */
        atomic_store(&w->acked, i + 1);
    }
    return NULL;
}

/*
 * Power loss under a LSM_SYNC_ALWAYS load: two threads write (with flushes
 * and compactions running: small buffers and tables), and after a random
 * number of acknowledged writes every file is cut back to what was synced
 * (with a torn unsynced tail in every other round). Reopened, the database
 * holds every acknowledged write: acknowledged means synced, which kill -9
 * cannot show (the page cache survives a killed process).
 */
START_TEST(fault_power_loss_keeps_acked_writes)
{
    uint64_t seed = tu_seed("fault_power_loss_keeps_acked_writes"), rnd = seed;

    for (int round = 0; round < 8; round++) {
        const char *dir = tu_tmpdir();
        fault_env *fe = fault_env_new();
        int target = 100 + (int)(tu_rand(&rnd) % 900), total = 0;
        uint64_t deadline = tu_now_ms() + 30000;
        pl_writer w[2];
        pthread_t th[2];
        lsm_opts o;
        lsm_db *db;

        fopts(&o, fe, LSM_SYNC_ALWAYS);
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        for (int t = 0; t < 2; t++) {
            w[t].db = db;
            w[t].thread = t;
            atomic_init(&w[t].acked, 0);
            atomic_init(&w[t].stop, false);
            ck_assert_int_eq(pthread_create(&th[t], NULL, pl_writer_main, &w[t]), 0);
        }
        while (total < target && tu_now_ms() < deadline) { /* polled, with a deadline */
            sched_yield();
            total = atomic_load(&w[0].acked) + atomic_load(&w[1].acked);
        }
        ck_assert_msg(total >= target, "only %d writes acknowledged in 30 s", total);
        fault_env_crash(fe, round % 2 == 1, &rnd);
        for (int t = 0; t < 2; t++) {
            atomic_store(&w[t].stop, true);
            pthread_join(th[t], NULL);
        }
        lsm_close(db); /* fails: nothing more reaches the disk */
        fault_env_free(fe);

        fopts(&o, NULL, LSM_SYNC_ALWAYS);
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < atomic_load(&w[t].acked); i++) {
                char k[32], v[100];
                om_buf got = OM_BUF_INIT;
                pl_kv(t, i, k, v);
                om_status st = lsm_get(db, NULL, om_slice_from_str(k), &got);
                ck_assert_msg(st == OM_OK, "round %d (seed %llu): acknowledged %s lost: %s", round,
                              (unsigned long long)seed, k, om_status_str(st));
                ck_assert(om_slice_eq(om_buf_slice(&got), om_slice_from_str(v)));
                om_buf_free(&got);
            }
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
        printf("round %d: power loss after %d + %d acknowledged writes, all kept\n", round,
               atomic_load(&w[0].acked), atomic_load(&w[1].acked));
    }
}
END_TEST

static Suite *
fault_suite(void)
{
    Suite *s = suite_create("lsm-fault");
    TCase *tc = tcase_create("fault");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fault_wal_write_eio);
    tcase_add_test(tc, fault_wal_zero_fill_fails);
    tcase_add_test(tc, fault_wal_enospc);
    tcase_add_test(tc, fault_wal_short_write);
    tcase_add_test(tc, fault_wal_sync_fails);
    tcase_add_test(tc, fault_flush_table_write);
    tcase_add_test(tc, fault_manifest_write);
    tcase_add_test(tc, fault_compaction_output);
    tcase_add_test(tc, fault_crash_with_torn_tail);
    tcase_add_test(tc, fault_power_loss_keeps_acked_writes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(fault_suite());
}
