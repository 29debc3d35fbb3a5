/*
 * tests/lsm/test_stress.c -- eight threads on one engine, every read checked
 * against a model of what it may see (issue 16): 4 writers (puts, deletes,
 * batches, some without sync), 2 point readers (get, get without row-cache
 * fill, get of the value's head, may_contain), 1 iterator thread (prefix
 * scans at snapshots, each scanned twice with point reads at the snapshot in
 * between, and scans without a snapshot), 1 thread forcing flushes and range
 * compactions; a 64 KiB write buffer and tiny tables, so flushes and
 * compactions run all the time, and the periodic sync thread every 2 ms;
 * in most runs niced background threads, so two compactions may run at once.
 * Bounded in time: LSM_STRESS_SECONDS (default 3). The seed is printed;
 * TU_SEED reruns with the same values and the same operation mix (the
 * interleaving is the scheduler's).
 *
 * The model (tests/harness/tu_model.h): writes to a key are serialised by
 * the test, numbered, and each is a pure function of (seed, key, number);
 * a read may show only the writes between the last that returned before it
 * began and the last that began before it ended. A snapshot is checked the
 * same way per key (done loaded before lsm_snapshot_new, started after), and
 * must then give the same answer every time it is read.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "tu.h"
#include "tu_model.h"

#define NPREFIX 16
#define KPP 128 /* keys per prefix */
#define NKEYS (NPREFIX * KPP)
#define NWRITERS 4
#define NREADERS 2

typedef struct stress {
    lsm_db *db;
    tu_cmodel *m;
    uint64_t seed;
    atomic_ullong writes, reads, scans, snap_reads, flushes, compactions;
} stress;

static size_t
kv_key(uint32_t k, char *buf)
{
    return (size_t)snprintf(buf, 16, "p%02u/%05u", k / KPP, k);
}

typedef struct st_thread {
    stress *s;
    int id;
    pthread_t th;
} st_thread;

static void *
st_writer(void *arg)
{
    st_thread *t = arg;
    stress *s = t->s;
    uint64_t rnd = tu_mix64(s->seed + 100 + (uint64_t)t->id);
    lsm_batch *b;
    char key[16];
    uint8_t val[TU_CMODEL_MAXVAL];

    if (lsm_batch_new(&b) != OM_OK) {
        tu_cmodel_fail(s->m, "writer %d: lsm_batch_new", t->id);
        return NULL;
    }
    while (tu_cmodel_running(s->m)) {
        uint32_t r = (uint32_t)(tu_rand(&rnd) % 10), p = (uint32_t)(tu_rand(&rnd) % NPREFIX);
        uint32_t keys[8], idx[8], n = 0, want = r < 5 ? 1 : 2 + (uint32_t)(tu_rand(&rnd) % 7);
        om_status st;

        /* Keys of one prefix, so a scan can cross a batch's keys mid-write. */
        for (uint32_t tries = 0; n < want && tries < 2 * want; tries++) {
            uint32_t k = p * KPP + (uint32_t)(tu_rand(&rnd) % KPP);
            bool dup = false;

            for (uint32_t j = 0; j < n; j++)
                dup |= keys[j] == k;
            if (!dup && tu_cmodel_take(s->m, k, &idx[n]))
                keys[n++] = k;
        }
        if (n == 0)
            continue;
        if (r < 5) { /* one put or delete */
            om_slice ks = om_slice_make(key, kv_key(keys[0], key));

            st = tu_cmodel_is_del(s->m, keys[0], idx[0])
                     ? lsm_del(s->db, ks)
                     : lsm_put(s->db, ks,
                               om_slice_make(val, tu_cmodel_value(s->m, keys[0], idx[0], val)));
        } else { /* a batch; one in three without the sync */
            lsm_batch_clear(b);
            for (uint32_t j = 0; j < n; j++) {
                om_slice ks = om_slice_make(key, kv_key(keys[j], key));

                st = tu_cmodel_is_del(s->m, keys[j], idx[j])
                         ? lsm_batch_del(b, ks)
                         : lsm_batch_put(
                               b, ks,
                               om_slice_make(val, tu_cmodel_value(s->m, keys[j], idx[j], val)));
                if (st != OM_OK)
                    break;
            }
            if (st == OM_OK)
                st = r < 8 ? lsm_write(s->db, b) : lsm_write_nosync(s->db, b);
        }
        for (uint32_t j = 0; j < n; j++)
            tu_cmodel_release(s->m, keys[j], idx[j], st == OM_OK);
        if (st != OM_OK) {
            tu_cmodel_fail(s->m, "writer %d: write failed: %s", t->id, om_status_str(st));
            break;
        }
        atomic_fetch_add(&s->writes, n);
    }
    lsm_batch_free(b);
    return NULL;
}

static void *
st_reader(void *arg)
{
    st_thread *t = arg;
    stress *s = t->s;
    uint64_t rnd = tu_mix64(s->seed + 200 + (uint64_t)t->id);
    om_buf v = OM_BUF_INIT;
    char key[16];

    while (tu_cmodel_running(s->m)) {
        uint32_t k = (uint32_t)(tu_rand(&rnd) % NKEYS), r = (uint32_t)(tu_rand(&rnd) % 8);
        om_slice ks = om_slice_make(key, kv_key(k, key));
        uint32_t d = tu_cmodel_done(s->m, k), hi;
        om_status st;

        if (r == 0) { /* false must mean absent */
            bool may = lsm_may_contain(s->db, ks);

            hi = tu_cmodel_started(s->m, k);
            if (!may && tu_cmodel_check(s->m, "may_contain", k, d, hi, false, OM_SLICE_NULL, 0) < 0)
                break;
            continue;
        }
        st = lsm_get_ex(s->db, NULL, ks, &v, r == 1 ? LSM_GET_NO_FILL : r == 2 ? LSM_GET_HEAD : 0);
        hi = tu_cmodel_started(s->m, k);
        if (st != OM_OK && st != OM_E_NOTFOUND) {
            tu_cmodel_fail(s->m, "reader %d: get key %u: %s", t->id, k, om_status_str(st));
            break;
        }
        if (tu_cmodel_check(s->m, "get", k, d, hi, st == OM_OK, om_buf_slice(&v),
                            r == 2 ? LSM_GET_HEAD_BYTES : 0) < 0)
            break;
        atomic_fetch_add(&s->reads, 1);
    }
    om_buf_free(&v);
    return NULL;
}

/*
 * Scan prefix p (at snap, or now when snap is NULL); seen[j] gets the write
 * each key of the prefix shows. With want != NULL every key must show
 * exactly want[j]; else the windows d[j]..hi[j] apply (without a snapshot,
 * hi[] is loaded here, after the iterator took its view).
 */
static bool
st_scan(stress *s, uint32_t p, const lsm_snapshot *snap, const uint32_t *d, uint32_t *hi,
        const long *want, long *seen)
{
    char lo[16], up[16];
    lsm_iter_opts io;
    lsm_iter *it;
    uint32_t next = 0; /* next key of the prefix not yet accounted for */
    bool ok = false;
    om_status st;

    lsm_iter_opts_init(&io);
    io.snapshot = snap;
    io.lower = om_slice_make(lo, (size_t)snprintf(lo, sizeof(lo), "p%02u/", p));
    io.upper = om_slice_make(up, (size_t)snprintf(up, sizeof(up), "p%02u0", p)); /* '/' + 1 */
    if ((st = lsm_iter_new(s->db, &io, &it)) != OM_OK) {
        tu_cmodel_fail(s->m, "lsm_iter_new: %s", om_status_str(st));
        return false;
    }
    /* Without a snapshot the iterator's view is taken just now: the windows end here. */
    if (snap == NULL && want == NULL)
        for (uint32_t j = 0; j < KPP; j++)
            hi[j] = tu_cmodel_started(s->m, p * KPP + j);
    for (lsm_iter_seek_first(it);; lsm_iter_next(it)) {
        uint32_t k = KPP, end;
        om_slice ik = OM_SLICE_NULL;

        if (lsm_iter_valid(it)) {
            char key[16];

            ik = lsm_iter_key(it);
            for (k = next; k < KPP; k++)
                if (om_slice_eq(ik, om_slice_make(key, kv_key(p * KPP + k, key))))
                    break;
            if (k == KPP) {
                tu_cmodel_fail(s->m, "scan of p%02u: unexpected key %.*s after key %u", p,
                               (int)ik.n, (const char *)ik.p, p * KPP + next);
                break;
            }
        }
        end = k;
        for (; next <= end && next < KPP; next++) {
            uint32_t g = p * KPP + next;
            bool found = next == end;
            long w;

            if (want != NULL) {
                w = found ? tu_cmodel_check(s->m, "rescan", g, (uint32_t)want[next],
                                            (uint32_t)want[next], true, lsm_iter_value(it), 0)
                          : tu_cmodel_check(s->m, "rescan", g, (uint32_t)want[next],
                                            (uint32_t)want[next], false, OM_SLICE_NULL, 0);
            } else {
                w = tu_cmodel_check(s->m, snap ? "snapshot scan" : "scan", g, d[next], hi[next],
                                    found, found ? lsm_iter_value(it) : OM_SLICE_NULL, 0);
            }
            if (w < 0)
                goto out;
            seen[next] = w;
        }
        if (end == KPP) {
            ok = true;
            break;
        }
    }
out:
    st = lsm_iter_status(it);
    lsm_iter_free(it);
    if (st != OM_OK) {
        tu_cmodel_fail(s->m, "scan: iterator status %s", om_status_str(st));
        return false;
    }
    return ok;
}

static void *
st_iterator(void *arg)
{
    st_thread *t = arg;
    stress *s = t->s;
    uint64_t rnd = tu_mix64(s->seed + 300);
    uint32_t d[KPP], hi[KPP];
    long seen[KPP], again[KPP];
    om_buf v = OM_BUF_INIT;

    while (tu_cmodel_running(s->m)) {
        uint32_t p = (uint32_t)(tu_rand(&rnd) % NPREFIX);
        bool use_snap = tu_rand(&rnd) % 4 != 0;
        lsm_snapshot *snap = NULL;
        char key[16];

        for (uint32_t j = 0; j < KPP; j++)
            d[j] = tu_cmodel_done(s->m, p * KPP + j);
        if (use_snap && lsm_snapshot_new(s->db, &snap) != OM_OK) {
            tu_cmodel_fail(s->m, "lsm_snapshot_new failed");
            break;
        }
        for (uint32_t j = 0; j < KPP; j++)
            hi[j] = tu_cmodel_started(s->m, p * KPP + j);
        if (!st_scan(s, p, snap, d, hi, NULL, seen))
            goto done;
        atomic_fetch_add(&s->scans, 1);
        if (snap == NULL)
            continue;
        /* The snapshot is one moment: point reads and a second scan agree with the first. */
        for (int n = 0; n < 16; n++) {
            uint32_t j = (uint32_t)(tu_rand(&rnd) % KPP);
            om_status st = lsm_get(s->db, snap, om_slice_make(key, kv_key(p * KPP + j, key)), &v);

            if (st != OM_OK && st != OM_E_NOTFOUND) {
                tu_cmodel_fail(s->m, "get at snapshot: %s", om_status_str(st));
                goto done;
            }
            if (tu_cmodel_check(s->m, "get at snapshot", p * KPP + j, (uint32_t)seen[j],
                                (uint32_t)seen[j], st == OM_OK, om_buf_slice(&v), 0) < 0)
                goto done;
            atomic_fetch_add(&s->snap_reads, 1);
        }
        if (!st_scan(s, p, snap, NULL, NULL, seen, again))
            goto done;
        lsm_snapshot_free(s->db, snap);
        continue;
    done:
        if (snap != NULL)
            lsm_snapshot_free(s->db, snap);
        break;
    }
    om_buf_free(&v);
    return NULL;
}

static void *
st_background(void *arg)
{
    st_thread *t = arg;
    stress *s = t->s;
    uint64_t rnd = tu_mix64(s->seed + 400);

    while (tu_cmodel_running(s->m)) {
        uint32_t r = (uint32_t)(tu_rand(&rnd) % 4);
        om_status st;

        if (r < 2) {
            st = lsm_flush(s->db);
            atomic_fetch_add(&s->flushes, 1);
        } else if (r == 2) {
            uint32_t a = (uint32_t)(tu_rand(&rnd) % NPREFIX),
                     b = (uint32_t)(tu_rand(&rnd) % NPREFIX);
            char lo[16], up[16];

            if (a > b) {
                uint32_t x = a;
                a = b;
                b = x;
            }
            st = lsm_compact_range(s->db, om_slice_make(lo, (size_t)snprintf(lo, 16, "p%02u/", a)),
                                   om_slice_make(up, (size_t)snprintf(up, 16, "p%02u0", b)));
            atomic_fetch_add(&s->compactions, 1);
        } else {
            lsm_stats stats;

            lsm_stats_get(s->db, &stats);
            st = lsm_sync(s->db);
        }
        if (st != OM_OK) {
            tu_cmodel_fail(s->m, "background: %s", om_status_str(st));
            break;
        }
    }
    return NULL;
}

/* After the threads: every key shows exactly its last write, by get and by scan. */
static void
st_check_final(stress *s, const char *when)
{
    om_buf v = OM_BUF_INIT;
    long want[KPP], seen[KPP];
    char key[16];

    for (uint32_t k = 0; k < NKEYS; k++) {
        uint32_t d = tu_cmodel_done(s->m, k);
        om_status st = lsm_get(s->db, NULL, om_slice_make(key, kv_key(k, key)), &v);

        ck_assert_uint_eq(d, tu_cmodel_started(s->m, k));
        ck_assert_msg(st == OM_OK || st == OM_E_NOTFOUND, "%s: get: %s", when, om_status_str(st));
        tu_cmodel_check(s->m, when, k, d, d, st == OM_OK, om_buf_slice(&v), 0);
    }
    for (uint32_t p = 0; p < NPREFIX; p++) {
        for (uint32_t j = 0; j < KPP; j++)
            want[j] = tu_cmodel_done(s->m, p * KPP + j);
        st_scan(s, p, NULL, NULL, NULL, want, seen);
    }
    om_buf_free(&v);
    ck_assert_msg(tu_cmodel_failure(s->m)[0] == '\0', "%s", tu_cmodel_failure(s->m));
}

START_TEST(stress_eight_threads)
{
    static stress s;
    const char *dir = tu_tmpdir();
    const char *secs = getenv("LSM_STRESS_SECONDS");
    st_thread th[8];
    lsm_opts o;
    lsm_stats stats;
    int n = 0;

    memset(&s, 0, sizeof(s));
    s.seed = tu_seed("lsm_stress");
    lsm_opts_init(&o);
    o.write_buffer_size = 64 * 1024;
    o.target_file_size = 32 * 1024;
    o.max_bytes_for_level1 = 128 * 1024;
    o.level_multiplier = 4;
    o.block_size = 1024;
    o.block_cache_size = 256 * 1024;
    o.row_cache_size = s.seed % 2 ? 64 * 1024 : 0;
    o.max_open_files = 20;
    o.l0_compaction_trigger = 2;
    o.sync_mode = LSM_SYNC_PERIODIC;
    o.sync_period_ms = 2;
    o.zstd_level = (int)(s.seed / 2 % 2);
    /* Niced background in 3 runs of 4: two compaction threads, an urgent L0->L1 compaction
     * beside a deeper one or a young one yielding to it (compaction_thread.c). */
    o.background_nice = s.seed / 4 % 4 != 0 ? 5 : 0;
    ck_assert_int_eq(lsm_open(dir, &o, &s.db), OM_OK);
    s.m = tu_cmodel_new(s.seed, NKEYS, secs ? strtoull(secs, NULL, 10) : 3);

    for (int i = 0; i < NWRITERS; i++, n++) {
        th[n] = (st_thread){.s = &s, .id = i};
        ck_assert_int_eq(pthread_create(&th[n].th, NULL, st_writer, &th[n]), 0);
    }
    for (int i = 0; i < NREADERS; i++, n++) {
        th[n] = (st_thread){.s = &s, .id = i};
        ck_assert_int_eq(pthread_create(&th[n].th, NULL, st_reader, &th[n]), 0);
    }
    th[n] = (st_thread){.s = &s};
    ck_assert_int_eq(pthread_create(&th[n].th, NULL, st_iterator, &th[n]), 0);
    n++;
    th[n] = (st_thread){.s = &s};
    ck_assert_int_eq(pthread_create(&th[n].th, NULL, st_background, &th[n]), 0);
    n++;
    for (int i = 0; i < n; i++)
        pthread_join(th[i].th, NULL);
    ck_assert_msg(tu_cmodel_failure(s.m)[0] == '\0', "seed %llu: %s", (unsigned long long)s.seed,
                  tu_cmodel_failure(s.m));

    lsm_stats_get(s.db, &stats);
    printf("lsm_stress: writes=%llu reads=%llu scans=%llu snapshot_reads=%llu forced_flushes=%llu "
           "range_compactions=%llu flushes=%llu compactions=%llu l0=%u l1=%u\n",
           (unsigned long long)s.writes, (unsigned long long)s.reads, (unsigned long long)s.scans,
           (unsigned long long)s.snap_reads, (unsigned long long)s.flushes,
           (unsigned long long)s.compactions, (unsigned long long)stats.flushes,
           (unsigned long long)stats.compactions, stats.levels[0].files, stats.levels[1].files);
    fflush(stdout);
    /* The run did what it is for (a slow sanitizer build still gets this far in 3 s). */
    ck_assert_uint_ge(s.writes, 200);
    ck_assert_uint_ge(s.reads, 100);
    ck_assert_uint_ge(s.scans, 5);
    ck_assert_uint_ge(stats.flushes, 3);
    ck_assert_uint_ge(stats.compactions, 1);

    st_check_final(&s, "final");
    ck_assert_int_eq(lsm_close(s.db), OM_OK);
    ck_assert_int_eq(lsm_open(dir, &o, &s.db), OM_OK);
    st_check_final(&s, "after reopen");
    ck_assert_int_eq(lsm_close(s.db), OM_OK);
    tu_cmodel_free(s.m);
}
END_TEST

static Suite *
stress_suite(void)
{
    Suite *s = suite_create("lsm-stress");
    TCase *tc = tcase_create("stress");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, stress_eight_threads);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(stress_suite());
}
