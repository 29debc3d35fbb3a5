/*
 * tests/lsm/test_model.c -- a randomized model test: the engine against an
 * in-memory oracle over 200k+ operations (puts, deletes, batches, gets,
 * bounded iterations, snapshots and reads at them, flushes, range
 * compactions) with a small write buffer and small tables so that flushes
 * and leveled compactions happen all the time, and a close/reopen every few
 * thousand operations, and a MANIFEST rolled over every few KiB. The seed is
 * printed (TU_SEED reruns one); set MODEL_OPS to change the number of
 * operations.
 *
 * The oracle holds, per key, a version number (0 = absent); the value bytes
 * are a pure function of (key, version), so snapshots of the oracle are
 * cheap copies of a small array.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/db_int.h"
#include "lsm/lsm.h"
#include "tu.h"

#define NKEYS 3000
#define MAXSNAP 4

static uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t
mkkey(uint32_t k, char *buf)
{
    return (size_t)snprintf(buf, 32, "key/%05u", k);
}

/* Value of (key, version): half random bytes, half a repeated letter (compressible). */
static size_t
mkval(uint32_t k, uint32_t ver, uint8_t *buf)
{
    uint64_t h = mix(((uint64_t)k << 32) | ver);
    size_t n = (size_t)(h % 300);

    for (size_t i = 0; i < n; i++) {
        if (i < n / 2) {
            h = mix(h + i);
            buf[i] = (uint8_t)h;
        } else {
            buf[i] = (uint8_t)('a' + ver % 26);
        }
    }
    return n;
}

typedef struct model {
    lsm_db *db;
    lsm_opts o;
    const char *dir;
    uint32_t cur[NKEYS];
    uint32_t next_ver;
    lsm_snapshot *snap[MAXSNAP];
    uint32_t *snap_state[MAXSNAP];
    int nsnap;
    uint64_t rnd;
    uint64_t gets, iters, reopens;
    uint64_t flushes, compactions, stall_us; /* summed over the opens */
} model;

static void
check_get(model *m, uint32_t k, const lsm_snapshot *s, const uint32_t *state)
{
    char key[32];
    uint8_t want[512];
    om_buf v = OM_BUF_INIT;
    size_t kn = mkkey(k, key), wn;
    om_status st = lsm_get(m->db, s, om_slice_make(key, kn), &v);

    if (state[k] == 0) {
        ck_assert_msg(st == OM_E_NOTFOUND, "get %s: want absent, got %s", key, om_status_str(st));
    } else {
        ck_assert_msg(st == OM_OK, "get %s: want ver %u, got %s", key, state[k], om_status_str(st));
        wn = mkval(k, state[k], want);
        ck_assert_msg(v.n == wn && memcmp(v.p, want, wn) == 0, "get %s: wrong value", key);
    }
    om_buf_free(&v);
    m->gets++;
}

static void
check_iter(model *m, const lsm_snapshot *s, const uint32_t *state)
{
    lsm_iter_opts io;
    lsm_iter *it;
    char lo[32], hi[32], seek[32];
    uint32_t a = (uint32_t)(tu_rand(&m->rnd) % NKEYS), b = (uint32_t)(tu_rand(&m->rnd) % NKEYS);
    uint32_t start, k, limit = 1 + (uint32_t)(tu_rand(&m->rnd) % 60);
    bool use_lo = tu_rand(&m->rnd) % 2, use_hi = tu_rand(&m->rnd) % 2;
    uint8_t want[512];

    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    lsm_iter_opts_init(&io);
    io.snapshot = s;
    if (use_lo)
        io.lower = om_slice_make(lo, mkkey(a, lo));
    if (use_hi)
        io.upper = om_slice_make(hi, mkkey(b, hi));
    io.fill_cache = tu_rand(&m->rnd) % 4 != 0;
    ck_assert_int_eq(lsm_iter_new(m->db, &io, &it), OM_OK);
    start = (uint32_t)(tu_rand(&m->rnd) % NKEYS);
    if (tu_rand(&m->rnd) % 3 == 0) {
        lsm_iter_seek_first(it);
        start = 0;
    } else {
        lsm_iter_seek(it, om_slice_make(seek, mkkey(start, seek)));
    }
    if (use_lo && start < a)
        start = a;
    k = start;
    for (uint32_t n = 0; n < limit; n++) {
        while (k < NKEYS && state[k] == 0)
            k++;
        if (k >= NKEYS || (use_hi && k >= b)) {
            ck_assert_msg(!lsm_iter_valid(it), "iterator has a key past the end");
            break;
        }
        ck_assert_msg(lsm_iter_valid(it), "iterator ended early; want key %u", k);
        char key[32];
        size_t kn = mkkey(k, key), wn = mkval(k, state[k], want);
        om_slice ik = lsm_iter_key(it), iv = lsm_iter_value(it);
        ck_assert_msg(om_slice_eq(ik, om_slice_make(key, kn)), "iter: want %s got %.*s", key,
                      (int)ik.n, (const char *)ik.p);
        ck_assert_msg(iv.n == wn && memcmp(iv.p, want, wn) == 0, "iter: wrong value for %s", key);
        lsm_iter_next(it);
        k++;
    }
    ck_assert_int_eq(lsm_iter_status(it), OM_OK);
    lsm_iter_free(it);
    m->iters++;
}

/* Roll the MANIFEST every few KiB, so that path runs often (test hook). */
static void
model_small_manifest(lsm_db *db)
{
    pthread_mutex_lock(&db->manifest_mu);
    db->vs->manifest_roll_bytes = 8192;
    pthread_mutex_unlock(&db->manifest_mu);
}

static void
model_reopen(model *m)
{
    for (int i = 0; i < m->nsnap; i++) {
        lsm_snapshot_free(m->db, m->snap[i]);
        free(m->snap_state[i]);
    }
    m->nsnap = 0;
    lsm_stats s;
    lsm_stats_get(m->db, &s);
    m->flushes += s.flushes;
    m->compactions += s.compactions;
    m->stall_us += s.stall_micros;
    ck_assert_int_eq(lsm_close(m->db), OM_OK);
    ck_assert_int_eq(lsm_open(m->dir, &m->o, &m->db), OM_OK);
    model_small_manifest(m->db);
    m->reopens++;
}

static void
model_write(model *m)
{
    char key[32];
    uint8_t val[512];
    uint32_t k = (uint32_t)(tu_rand(&m->rnd) % NKEYS);
    uint64_t r = tu_rand(&m->rnd) % 100;

    if (r < 75) {
        uint32_t ver = ++m->next_ver;

        ck_assert_int_eq(lsm_put(m->db, om_slice_make(key, mkkey(k, key)),
                                 om_slice_make(val, mkval(k, ver, val))),
                         OM_OK);
        m->cur[k] = ver;
    } else if (r < 92) {
        ck_assert_int_eq(lsm_del(m->db, om_slice_make(key, mkkey(k, key))), OM_OK);
        m->cur[k] = 0;
    } else {
        lsm_batch *b;
        int n = 1 + (int)(tu_rand(&m->rnd) % 30);
        uint32_t pending[30][2];

        ck_assert_int_eq(lsm_batch_new(&b), OM_OK);
        for (int i = 0; i < n; i++) {
            /* Clustered keys so a batch often touches one key twice. */
            uint32_t bk = (k + (uint32_t)(tu_rand(&m->rnd) % 10)) % NKEYS;

            if (tu_rand(&m->rnd) % 4 == 0) {
                ck_assert_int_eq(lsm_batch_del(b, om_slice_make(key, mkkey(bk, key))), OM_OK);
                pending[i][1] = 0;
            } else {
                uint32_t ver = ++m->next_ver;

                ck_assert_int_eq(lsm_batch_put(b, om_slice_make(key, mkkey(bk, key)),
                                               om_slice_make(val, mkval(bk, ver, val))),
                                 OM_OK);
                pending[i][1] = ver;
            }
            pending[i][0] = bk;
        }
        ck_assert_int_eq(lsm_write(m->db, b), OM_OK);
        for (int i = 0; i < n; i++)
            m->cur[pending[i][0]] = pending[i][1];
        lsm_batch_free(b);
    }
}

static void
run_model(const char *name, uint64_t ops, bool with_compaction)
{
    model *m = calloc(1, sizeof(*m));
    uint64_t seed = tu_seed(name);
    const char *env_ops = getenv("MODEL_OPS");
    lsm_stats s;

    if (env_ops != NULL)
        ops = strtoull(env_ops, NULL, 10);
    m->rnd = seed;
    m->dir = tu_tmpdir();
    lsm_opts_init(&m->o);
    m->o.write_buffer_size = 48 * 1024;
    m->o.target_file_size = 24 * 1024;
    m->o.max_bytes_for_level1 = 96 * 1024;
    m->o.level_multiplier = 4;
    m->o.block_size = 1024;
    m->o.block_cache_size = 256 * 1024;
    m->o.max_open_files = 20;
    m->o.sync_mode = LSM_SYNC_NONE;
    m->o.l0_compaction_trigger = 2;
    m->o.l0_slowdown_trigger = 6;
    m->o.l0_stop_trigger = 10;
    m->o.zstd_level = (int)(seed % 2);     /* half the runs compress */
    if (getenv("MODEL_ROW_CACHE") != NULL) /* the row cache variant (see meson.build) */
        m->o.row_cache_size = (size_t)strtoull(getenv("MODEL_ROW_CACHE"), NULL, 10);
    if (!with_compaction) {
        m->o.write_buffer_size = 1u << 30; /* memtable + WAL only */
    }
    ck_assert_int_eq(lsm_open(m->dir, &m->o, &m->db), OM_OK);
    model_small_manifest(m->db);
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t r = tu_rand(&m->rnd) % 1000;

        if (r < 450) {
            model_write(m);
        } else if (r < 750) {
            check_get(m, (uint32_t)(tu_rand(&m->rnd) % NKEYS), NULL, m->cur);
        } else if (r < 800) {
            check_iter(m, NULL, m->cur);
        } else if (r < 900) {
            if (m->nsnap > 0) {
                int j = (int)(tu_rand(&m->rnd) % (uint64_t)m->nsnap);

                if (r < 880)
                    check_get(m, (uint32_t)(tu_rand(&m->rnd) % NKEYS), m->snap[j],
                              m->snap_state[j]);
                else
                    check_iter(m, m->snap[j], m->snap_state[j]);
            }
        } else if (r < 930) {
            if (m->nsnap < MAXSNAP) {
                ck_assert_int_eq(lsm_snapshot_new(m->db, &m->snap[m->nsnap]), OM_OK);
                m->snap_state[m->nsnap] = malloc(sizeof(m->cur));
                memcpy(m->snap_state[m->nsnap], m->cur, sizeof(m->cur));
                m->nsnap++;
            }
        } else if (r < 960) {
            if (m->nsnap > 0) {
                int j = (int)(tu_rand(&m->rnd) % (uint64_t)m->nsnap);

                lsm_snapshot_free(m->db, m->snap[j]);
                free(m->snap_state[j]);
                m->snap[j] = m->snap[m->nsnap - 1];
                m->snap_state[j] = m->snap_state[m->nsnap - 1];
                m->nsnap--;
            }
        } else if (r < 962 && with_compaction) {
            ck_assert_int_eq(lsm_flush(m->db), OM_OK);
        } else if (r < 963 && with_compaction && tu_rand(&m->rnd) % 8 == 0) {
            char a[32], b[32];
            uint32_t x = (uint32_t)(tu_rand(&m->rnd) % NKEYS);

            ck_assert_int_eq(lsm_compact_range(m->db, om_slice_make(a, mkkey(x, a)),
                                               om_slice_make(b, mkkey(x + 300, b))),
                             OM_OK);
        } else if (r < 964 && i % 9 == 0) {
            model_reopen(m);
        }
        if (i > 0 && i % 25000 == 0)
            model_reopen(m);
    }
    /* Final full check, then after a reopen. */
    for (int round = 0; round < 2; round++) {
        for (uint32_t k = 0; k < NKEYS; k++)
            check_get(m, k, NULL, m->cur);
        if (round == 0) /* before a reopen, which starts a new row cache */
            lsm_stats_get(m->db, &s);
        model_reopen(m);
    }
    printf("%s: ops=%llu gets=%llu iters=%llu reopens=%llu flushes=%llu compactions=%llu "
           "levels=%u/%u/%u/%u stall_us=%llu row_hits=%llu\n",
           name, (unsigned long long)ops, (unsigned long long)m->gets, (unsigned long long)m->iters,
           (unsigned long long)m->reopens, (unsigned long long)m->flushes,
           (unsigned long long)m->compactions, s.levels[0].files, s.levels[1].files,
           s.levels[2].files, s.levels[3].files, (unsigned long long)m->stall_us,
           (unsigned long long)s.row_cache_hits);
    ck_assert_int_eq(lsm_close(m->db), OM_OK);
    free(m);
}

START_TEST(model_memtable_and_wal)
{
    run_model("model_memtable_and_wal", 30000, false);
}
END_TEST

START_TEST(model_with_flush_and_compaction)
{
    run_model("model_with_flush_and_compaction", 200000, true);
}
END_TEST

static Suite *
model_suite(void)
{
    Suite *s = suite_create("lsm-model");
    TCase *tc = tcase_create("model");

    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, model_memtable_and_wal);
    tcase_add_test(tc, model_with_flush_and_compaction);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(model_suite());
}
