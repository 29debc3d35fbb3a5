/*
 * tests/lsm/test_compaction.c -- leveled compaction: picking by score with
 * round-robin compaction pointers, the survival rules (shadowed entries,
 * tombstones only at the base level, snapshots, the compaction filter), and
 * the same rules end to end in a database, inspected through its internal
 * (all-versions) iterator. Also the pacing of lsm_compact_range_rate (a
 * lower bound on its duration only, and a close that interrupts it).
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lsm/compaction.h"
#include "lsm/db_int.h"
#include "tu.h"

static om_buf
ik(const char *k, uint64_t seq, lsm_vtype t)
{
    om_buf b = OM_BUF_INIT;

    lsm_ikey_append(&b, om_slice_from_str(k), seq, t);
    return b;
}

static void
add(lsm_edit *e, int level, uint64_t num, uint64_t size, const char *lo, const char *hi)
{
    om_buf a = ik(lo, 9, LSM_TYPE_VAL), b = ik(hi, 8, LSM_TYPE_VAL);

    ck_assert_int_eq(lsm_edit_add_file(e, level, num, size, om_buf_slice(&a), om_buf_slice(&b)),
                     OM_OK);
    om_buf_free(&a);
    om_buf_free(&b);
}

START_TEST(pick_by_score)
{
    lsm_opts o;
    lsm_edit e;
    lsm_version *v;
    lsm_compaction *c;
    om_buf cptr[LSM_MAX_LEVELS];

    memset(cptr, 0, sizeof(cptr));
    lsm_opts_init(&o);
    o.max_bytes_for_level1 = 1000;
    o.level_multiplier = 10;
    /* Nothing over its target: no compaction. */
    lsm_edit_init(&e);
    add(&e, 0, 1, 10, "a", "c");
    add(&e, 1, 2, 500, "a", "f");
    add(&e, 2, 3, 5000, "a", "z");
    ck_assert_int_eq(lsm_version_apply(NULL, &e, &o, &v), OM_OK);
    lsm_edit_fini(&e);
    ck_assert(v->score < 1);
    ck_assert_uint_eq(lsm_version_debt(v, &o), 0);
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_E_NOTFOUND);
    lsm_version_unref(v);

    /* L1 at 3x its target, L2 at 1.2x, L0 at 2/4: L1 wins. */
    lsm_edit_init(&e);
    add(&e, 0, 10, 10, "a", "c");
    add(&e, 0, 11, 10, "b", "d");
    add(&e, 1, 20, 1000, "a", "f");
    add(&e, 1, 21, 1000, "g", "m");
    add(&e, 1, 22, 1000, "n", "t");
    add(&e, 2, 30, 6000, "a", "h");
    add(&e, 2, 31, 6000, "i", "z");
    add(&e, 3, 40, 10, "a", "z");
    ck_assert_int_eq(lsm_version_apply(NULL, &e, &o, &v), OM_OK);
    lsm_edit_fini(&e);
    ck_assert_int_eq(v->score_level, 1);
    ck_assert(v->score > 2.9 && v->score < 3.1);
    /* Debt: L1 2000 over its 1000, L2 2000 over its 10000; L0 below its trigger adds none. */
    ck_assert_uint_eq(lsm_version_debt(v, &o), 4000);
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_OK);
    ck_assert_int_eq(c->level, 1);
    ck_assert_int_eq(c->out_level, 2);
    ck_assert_int_eq(c->nin[0], 1);
    ck_assert_uint_eq(c->in[0][0]->number, 20);
    ck_assert_int_eq(c->nin[1], 1); /* a..f overlaps only 30 */
    ck_assert_uint_eq(c->in[1][0]->number, 30);
    ck_assert_int_eq(c->ngp, 1);
    ck_assert(!lsm_compaction_is_trivial(c, &o));
    /* Round robin: with the pointer at file 20's largest key, file 21 is next. */
    om_buf_set(&cptr[1], om_buf_slice(&c->in[0][0]->largest));
    lsm_compaction_free(c);
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_OK);
    ck_assert_uint_eq(c->in[0][0]->number, 21);
    ck_assert_int_eq(c->nin[1], 2); /* g..m overlaps both L2 files */
    om_buf_set(&cptr[1], om_buf_slice(&c->in[0][0]->largest));
    lsm_compaction_free(c);
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_OK);
    ck_assert_uint_eq(c->in[0][0]->number, 22);
    om_buf_set(&cptr[1], om_buf_slice(&c->in[0][0]->largest));
    lsm_compaction_free(c);
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_OK);
    ck_assert_uint_eq(c->in[0][0]->number, 20); /* wrapped around */
    lsm_compaction_free(c);
    lsm_version_unref(v);

    /* L0 over its trigger: the overlapping L0 files go together into L1. */
    lsm_edit_init(&e);
    add(&e, 0, 50, 10, "a", "c");
    add(&e, 0, 51, 10, "b", "e");
    add(&e, 0, 52, 10, "x", "z");
    add(&e, 0, 53, 10, "d", "f");
    add(&e, 0, 54, 10, "p", "q");
    add(&e, 1, 60, 10, "e", "h");
    ck_assert_int_eq(lsm_version_apply(NULL, &e, &o, &v), OM_OK);
    lsm_edit_fini(&e);
    ck_assert_int_eq(v->score_level, 0);
    ck_assert_uint_eq(lsm_version_debt(v, &o), 50); /* all of L0, at its trigger */
    ck_assert_int_eq(lsm_compaction_pick(v, &o, cptr, &c), OM_OK);
    ck_assert_int_eq(c->level, 0);
    ck_assert_int_eq(c->nin[0], 3); /* 50, 51, 53 chain together; 52 and 54 do not */
    ck_assert_int_eq(c->nin[1], 1);
    lsm_compaction_free(c);
    /* Trivial move: one input, nothing below. */
    ck_assert_int_eq(
        lsm_compaction_range(v, 0, false, om_slice_from_str("x"), om_slice_from_str("y"), &c),
        OM_OK);
    ck_assert_int_eq(c->nin[0], 1);
    ck_assert(lsm_compaction_is_trivial(c, &o));
    lsm_compaction_free(c);
    ck_assert_int_eq(
        lsm_compaction_range(v, 1, false, om_slice_from_str("x"), om_slice_from_str("y"), &c),
        OM_E_NOTFOUND);
    lsm_version_unref(v);
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        om_buf_free(&cptr[l]);
}
END_TEST

static lsm_filter_decision
drop_prefix(void *arg, int level, om_slice key, om_slice value)
{
    (void)level;
    (void)value;
    return om_slice_has_prefix(key, om_slice_from_str(arg)) ? LSM_FILTER_DROP : LSM_FILTER_KEEP;
}

static lsm_cverdict
decide(lsm_cdecide *d, const char *k, uint64_t seq, lsm_vtype t, bool base)
{
    om_buf b = ik(k, seq, t);
    lsm_cverdict v;

    ck_assert_int_eq(lsm_cdecide_next(d, om_buf_slice(&b), om_slice_from_str("val"), base, &v),
                     OM_OK);
    om_buf_free(&b);
    return v;
}

START_TEST(survival_rules)
{
    lsm_cdecide d;

    /* No snapshots (oldest readable = 100): only the newest version survives. */
    lsm_cdecide_init(&d, 100, 0, NULL, NULL, 1);
    ck_assert_int_eq(decide(&d, "a", 50, LSM_TYPE_VAL, false), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "a", 40, LSM_TYPE_VAL, false), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "a", 30, LSM_TYPE_DEL, false), LSM_CV_DROP);
    /* A tombstone survives unless the key has no data below (base level). */
    ck_assert_int_eq(decide(&d, "b", 60, LSM_TYPE_DEL, false), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "b", 20, LSM_TYPE_VAL, false), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "c", 60, LSM_TYPE_DEL, true), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "c", 20, LSM_TYPE_VAL, true), LSM_CV_DROP);
    lsm_cdecide_fini(&d);

    /* A snapshot at 45: the version it sees (40) must stay; 30 is dead. */
    lsm_cdecide_init(&d, 45, 45, NULL, NULL, 1);
    ck_assert_int_eq(decide(&d, "a", 50, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "a", 40, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "a", 30, LSM_TYPE_VAL, true), LSM_CV_DROP);
    /* A tombstone newer than the snapshot stays even at the base level. */
    ck_assert_int_eq(decide(&d, "b", 50, LSM_TYPE_DEL, true), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "b", 44, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    lsm_cdecide_fini(&d);

    /* The filter: drops the newest value when no snapshot can see it. */
    lsm_cdecide_init(&d, 100, 0, drop_prefix, "x/", 2);
    ck_assert_int_eq(decide(&d, "x/1", 50, LSM_TYPE_VAL, true), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "x/1", 40, LSM_TYPE_VAL, true), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "x/2", 50, LSM_TYPE_VAL, false), LSM_CV_TOMBSTONE);
    ck_assert_int_eq(decide(&d, "x/2", 40, LSM_TYPE_VAL, false), LSM_CV_DROP);
    ck_assert_int_eq(decide(&d, "y/1", 50, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    lsm_cdecide_fini(&d);
    /* ... but not a value a live snapshot (at 60) reads. */
    lsm_cdecide_init(&d, 60, 60, drop_prefix, "x/", 2);
    ck_assert_int_eq(decide(&d, "x/1", 50, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    ck_assert_int_eq(decide(&d, "x/2", 70, LSM_TYPE_VAL, true), LSM_CV_TOMBSTONE);
    ck_assert_int_eq(decide(&d, "x/2", 55, LSM_TYPE_VAL, true), LSM_CV_KEEP);
    lsm_cdecide_fini(&d);
}
END_TEST

/* Count every internal entry (all versions, tombstones) of keys with a prefix. */
static void
count_entries(lsm_db *db, const char *prefix, int *vals, int *dels)
{
    uint64_t last;
    lsm_sv *sv = lsm_db_sv_get(db, &last);
    lsm_it *it;

    *vals = *dels = 0;
    ck_assert_int_eq(lsm_db_internal_iter(db, sv, false, &it), OM_OK);
    for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it)) {
        lsm_ikey k;

        ck_assert_int_eq(lsm_ikey_parse(lsm_it_key(it), &k), OM_OK);
        if (!om_slice_has_prefix(k.user_key, om_slice_from_str(prefix)))
            continue;
        if (k.type == LSM_TYPE_DEL)
            (*dels)++;
        else
            (*vals)++;
    }
    ck_assert_int_eq(lsm_it_status(it), OM_OK);
    lsm_it_free(it);
    lsm_sv_unref(sv);
}

static void
copts(lsm_opts *o)
{
    lsm_opts_init(o);
    o->sync_mode = LSM_SYNC_NONE;
    o->write_buffer_size = 16 * 1024;
    o->target_file_size = 8 * 1024;
    o->max_bytes_for_level1 = 16 * 1024;
    o->level_multiplier = 4;
    o->l0_compaction_trigger = 2;
    o->block_size = 512;
}

static void
fill(lsm_db *db, const char *prefix, int n, int round)
{
    char k[64], v[128];

    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "%s%05d", prefix, i);
        snprintf(v, sizeof(v), "round-%d-value-%05d-%040d", round, i, i);
        ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_from_str(v)), OM_OK);
    }
}

START_TEST(tombstones_dropped_only_at_bottom)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    int vals, dels;
    om_buf v = OM_BUF_INIT;

    copts(&o);
    o.max_bytes_for_level1 = 1u << 30;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int r = 0; r < 3; r++)
        fill(db, "data/", 1500, r);
    ck_assert_int_eq(lsm_put(db, om_slice_from_str("m/key"), om_slice_from_str("old")), OM_OK);
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.levels[0].files, 0);
    ck_assert_uint_gt(s.levels[1].files, 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    /* Reopen with a tiny L1 target: background compaction empties L1 into deeper levels. */
    o.max_bytes_for_level1 = 4096;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    uint64_t deadline = tu_now_ms() + 30000;
    do
        lsm_stats_get(db, &s);
    while ((s.levels[1].files > 0 || s.levels[0].files > 0) && tu_now_ms() < deadline);
    ck_assert_uint_eq(s.levels[1].files, 0);
    ck_assert_uint_gt(s.levels[2].files, 0);
    count_entries(db, "m/", &vals, &dels);
    ck_assert_int_eq(vals, 1);

    /* Delete: the tombstone reaches L1 first, above the value: it must stay. */
    ck_assert_int_eq(lsm_del(db, om_slice_from_str("m/key")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    {
        lsm_sv *sv;
        uint64_t last;
        lsm_compaction *c;

        sv = lsm_db_sv_get(db, &last);
        ck_assert_int_eq(sv->v->nfiles[0], 1);
        ck_assert_int_eq(lsm_compaction_range(sv->v, 0, false, OM_SLICE_NULL, OM_SLICE_NULL, &c),
                         OM_OK);
        ck_assert(!lsm_compaction_is_base(c, om_slice_from_str("m/key")));
        ck_assert(lsm_compaction_is_base(c, om_slice_from_str("zzz")));
        lsm_compaction_free(c);
        lsm_sv_unref(sv);
    }
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str("m/key"), &v), OM_E_NOTFOUND);
    /* A second overlapping L0 file triggers the background L0 -> L1 compaction. */
    ck_assert_int_eq(lsm_put(db, om_slice_from_str("m/a"), om_slice_from_str("x")), OM_OK);
    ck_assert_int_eq(lsm_put(db, om_slice_from_str("m/z"), om_slice_from_str("x")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    deadline = tu_now_ms() + 20000;
    /* the version (L0 empty) is installed before the counter moves: wait for both */
    do
        lsm_stats_get(db, &s);
    while ((s.levels[0].files > 0 || s.compactions == 0) && tu_now_ms() < deadline);
    ck_assert_uint_eq(s.levels[0].files, 0);
    ck_assert_uint_gt(s.levels[1].files, 0);
    /* The tombstone now sits in L1, above the old value in a deeper level: kept. */
    count_entries(db, "m/key", &vals, &dels);
    ck_assert_int_eq(dels, 1);
    ck_assert_int_eq(vals, 1);
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str("m/key"), &v), OM_E_NOTFOUND);
    /* All the way to the bottom: both disappear. */
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    count_entries(db, "m/key", &vals, &dels);
    ck_assert_int_eq(vals, 0);
    ck_assert_int_eq(dels, 0);
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str("m/key"), &v), OM_E_NOTFOUND);
    count_entries(db, "data/", &vals, &dels);
    ck_assert_int_eq(vals, 1500); /* old rounds gone, one version per key */
    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.compactions, 0);
    ck_assert_uint_gt(s.compaction_bytes_written, 0);
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(filter_applied_snapshots_respected)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_snapshot *snap;
    int vals, dels;
    om_buf v = OM_BUF_INIT;
    char k[32];

    copts(&o);
    o.compaction_filter = drop_prefix;
    o.compaction_filter_arg = "gone/";
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    fill(db, "gone/", 300, 0);
    fill(db, "kept/", 300, 0);
    /* A snapshot that reads the values: the filter must leave them alone. */
    ck_assert_int_eq(lsm_snapshot_new(db, &snap), OM_OK);
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    ck_assert_int_eq(lsm_get(db, snap, om_slice_from_str("gone/00007"), &v), OM_OK);
    count_entries(db, "gone/", &vals, &dels);
    ck_assert_int_eq(vals, 300);
    lsm_snapshot_free(db, snap);
    /* Without it, a range compaction drops them (at the bottom: nothing written). */
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    count_entries(db, "gone/", &vals, &dels);
    ck_assert_int_eq(vals, 0);
    ck_assert_int_eq(dels, 0);
    count_entries(db, "kept/", &vals, &dels);
    ck_assert_int_eq(vals, 300);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), "gone/%05d", i);
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_E_NOTFOUND);
        snprintf(k, sizeof(k), "kept/%05d", i);
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
    }
    /* New writes of filtered keys are visible until a compaction reaches them. */
    ck_assert_int_eq(lsm_put(db, om_slice_from_str("gone/new"), om_slice_from_str("x")), OM_OK);
    ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str("gone/new"), &v), OM_OK);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    count_entries(db, "kept/", &vals, &dels);
    ck_assert_int_eq(vals, 300);
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(background_compaction_keeps_levels_in_shape)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    uint64_t deadline;

    copts(&o);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int r = 0; r < 4; r++)
        fill(db, "k/", 2000, r);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    /* Poll until the background work settles: every level within its target. */
    deadline = tu_now_ms() + 30000;
    for (;;) {
        bool ok = true;

        lsm_stats_get(db, &s);
        ok = s.levels[0].files < (uint32_t)o.l0_compaction_trigger;
        for (int l = 1; l < LSM_MAX_LEVELS - 1 && ok; l++)
            ok = s.levels[l].bytes <= lsm_level_max_bytes(&o, l);
        if (ok || tu_now_ms() > deadline)
            break;
    }
    for (int l = 1; l < LSM_MAX_LEVELS - 1; l++)
        ck_assert_msg(s.levels[l].bytes <= lsm_level_max_bytes(&o, l), "level %d holds %llu bytes",
                      l, (unsigned long long)s.levels[l].bytes);
    ck_assert_uint_gt(s.compactions, 3);
    ck_assert(s.write_amplification > 1.0);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/* Files of the current version whose table is pinned, and the files in it. */
static size_t
pinned_files(lsm_db *db, size_t *nfiles)
{
    size_t n = 0;
    lsm_version *v;

    pthread_mutex_lock(&db->mu);
    v = lsm_vset_current(db->vs);
    pthread_mutex_unlock(&db->mu);
    *nfiles = 0;
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        for (int i = 0; i < v->nfiles[l]; i++) {
            (*nfiles)++;
            if (atomic_load(&v->files[l][i]->pin.ref) != NULL)
                n++;
        }
    lsm_version_unref(v);
    return n;
}

/*
 * A version pins the tables its gets read: after reading every key each file
 * of the current version holds its table, and the table cache counts exactly
 * those pins. When a compaction replaces the files and the old version dies,
 * their pins are released (the count drops to the new version's pins).
 */
START_TEST(version_pins_its_tables)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    om_buf v = OM_BUF_INIT;
    char k[64];
    size_t nfiles, pinned;

    copts(&o);
    o.l0_compaction_trigger = 100; /* no background compaction: the files stay put */
    o.l0_slowdown_trigger = 200;
    o.l0_stop_trigger = 300;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int r = 0; r < 3; r++) {
        fill(db, "p/", 1000, r);
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    ck_assert_uint_eq(lsm_table_cache_pinned_count(db->tc), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 1000; i++) {
            snprintf(k, sizeof(k), "p/%05d", i);
            ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
        }
        /* Every key's newest copy is in the newest files, which got pinned. */
        pinned = pinned_files(db, &nfiles);
        ck_assert_uint_gt(nfiles, 1);
        ck_assert_uint_gt(pinned, 0);
        ck_assert_uint_eq(lsm_table_cache_pinned_count(db->tc), pinned);
        if (pass == 1)
            break;
        ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
        /* The old files died with the old version and took their pins along. */
        pinned = pinned_files(db, &nfiles);
        ck_assert_uint_eq(pinned, 0);
        ck_assert_uint_eq(lsm_table_cache_pinned_count(db->tc), 0);
    }
    /* A pinned table serves may_contain too, and close releases every pin. */
    ck_assert(lsm_may_contain(db, om_slice_from_str("p/00007")));
    ck_assert_int_eq(lsm_close(db), OM_OK);
    om_buf_free(&v);
}
END_TEST

/*
 * lsm_close during an automatic compaction. A compaction filter holds the
 * compaction after it has passed `stop_at` of the `total` keys until the
 * database is closing, so the close decides at a known progress: with most of
 * the work done and a generous close_compaction_wait_ms the compaction is
 * finished (L0 empty at the next open); with a quarter done (the rest would
 * take longer than the part done) or with the wait at 0 it is abandoned (the
 * L0 files are still there). Every key survives either way.
 */
typedef struct hold_arg {
    _Atomic(lsm_db *) db;
    atomic_int calls, reached;
    int stop_at;
} hold_arg;

static lsm_filter_decision
hold_at_close(void *arg, int level, om_slice key, om_slice value)
{
    hold_arg *h = arg;
    uint64_t deadline = tu_now_ms() + 20000;
    lsm_db *db;

    (void)level;
    (void)key;
    (void)value;
    if (atomic_fetch_add(&h->calls, 1) + 1 != h->stop_at)
        return LSM_FILTER_KEEP;
    /* lsm_open stores the handle only when it returns; the thread may be faster. */
    while ((db = atomic_load(&h->db)) == NULL && tu_now_ms() < deadline)
        sched_yield();
    atomic_store(&h->reached, 1);
    while (db != NULL && !atomic_load(&db->closing) && tu_now_ms() < deadline)
        sched_yield();
    return LSM_FILTER_KEEP;
}

static void
close_during_compaction(int stop_percent, uint32_t wait_ms, bool want_finished)
{
    const char *dir = tu_tmpdir();
    enum { ROUNDS = 6, PER_ROUND = 400 };
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    hold_arg h;
    om_buf v = OM_BUF_INIT;
    char k[32], val[64];
    uint64_t deadline;

    copts(&o);
    o.write_buffer_size = 1u << 20; /* one L0 table per round (lsm_flush) */
    o.zstd_level = 0; /* input and output bytes compare: progress is the key fraction */
    o.target_file_size = 8 * 1024;
    o.max_bytes_for_level1 = 64u << 20; /* L0 -> L1 only */
    o.l0_compaction_trigger = 20;       /* no compaction while filling */
    o.l0_slowdown_trigger = o.l0_stop_trigger = 20;
    o.idle_l0_compaction_ms = 0; /* L0 stays as the test left it */
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PER_ROUND; i++) {
            snprintf(k, sizeof(k), "key%06d", i * ROUNDS + r); /* every table spans the range */
            snprintf(val, sizeof(val), "value-%06d-%040d", i * ROUNDS + r, r);
            ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_from_str(val)), OM_OK);
        }
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.levels[0].files, ROUNDS);
    ck_assert_int_eq(lsm_close(db), OM_OK);

    /* Reopen with the trigger reached: the compaction starts at once and is held. */
    memset(&h, 0, sizeof(h));
    h.stop_at = ROUNDS * PER_ROUND * stop_percent / 100;
    o.l0_compaction_trigger = 4;
    o.compaction_filter = hold_at_close;
    o.compaction_filter_arg = &h;
    o.close_compaction_wait_ms = wait_ms;
    db = NULL;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    atomic_store(&h.db, db);
    deadline = tu_now_ms() + 20000;
    while (!atomic_load(&h.reached) && tu_now_ms() < deadline)
        sched_yield();
    ck_assert_int_eq(atomic_load(&h.reached), 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);

    /* What the close left, seen without any further compaction. */
    o.l0_compaction_trigger = o.l0_slowdown_trigger = o.l0_stop_trigger = 20;
    o.compaction_filter = NULL;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    lsm_stats_get(db, &s);
    if (want_finished) {
        ck_assert_uint_eq(s.levels[0].files, 0);
        ck_assert_uint_gt(s.levels[1].files, 1);
    } else {
        ck_assert_uint_eq(s.levels[0].files, ROUNDS);
        ck_assert_uint_eq(s.levels[1].files, 0);
    }
    for (int i = 0; i < ROUNDS * PER_ROUND; i++) {
        snprintf(k, sizeof(k), "key%06d", i);
        snprintf(val, sizeof(val), "value-%06d-%040d", i, i % ROUNDS);
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
        ck_assert(om_slice_eq(om_buf_slice(&v), om_slice_from_str(val)));
    }
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}

/* Two L0 tables (below the trigger) and no writes: the idle rule merges them into L1. */
START_TEST(idle_database_compacts_l0)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    om_buf v = OM_BUF_INIT;
    char k[32];
    uint64_t deadline;

    copts(&o);
    o.write_buffer_size = 1u << 20;
    o.max_bytes_for_level1 = 64u << 20;
    o.l0_compaction_trigger = 8;
    o.idle_l0_compaction_ms = 200;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 300; i++) {
            snprintf(k, sizeof(k), "key%05d", i * 3 + r);
            ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_from_str(k)), OM_OK);
        }
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    deadline = tu_now_ms() + 20000;
    /* the version (L0 empty) is installed before the counter moves: wait for both */
    do
        lsm_stats_get(db, &s);
    while ((s.levels[0].files > 0 || s.compactions == 0) && tu_now_ms() < deadline);
    ck_assert_uint_eq(s.levels[0].files, 0);
    ck_assert_uint_gt(s.levels[1].files, 0);
    ck_assert_uint_ge(s.compactions, 1);
    for (int i = 0; i < 900; i++) {
        snprintf(k, sizeof(k), "key%05d", i);
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
        ck_assert(om_slice_eq(om_buf_slice(&v), om_slice_from_str(k)));
    }
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * Issue 14: a random fill that produced many L0 tables settles to at most
 * l0_compaction_trigger (4, the default) of them once writes stop, with the
 * background threads niced or not; every key reads back.
 */
static void
random_fill_settles(int background_nice)
{
    const char *dir = tu_tmpdir();
    uint64_t seed = tu_seed("random_fill_settles"), x = seed | 1, deadline;
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    om_buf v = OM_BUF_INIT;
    char k[32];
    uint8_t val[100];
    enum { N = 20000 };

    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    o.write_buffer_size = 128u << 10; /* ~20 flushes */
    o.max_bytes_for_level1 = 1u << 20;
    o.target_file_size = 256u << 10;
    o.background_nice = background_nice;
    o.idle_l0_compaction_ms = 200;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(k, sizeof(k), "key%08llu", (unsigned long long)(x % (N * 4)));
        for (size_t j = 0; j < sizeof(val); j++)
            val[j] = (uint8_t)(x >> (j % 8 * 8)) ^ (uint8_t)j;
        ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_make(val, sizeof(val))), OM_OK);
    }
    lsm_stats_get(db, &s);
    ck_assert_uint_ge(s.flushes, 8);
    deadline = tu_now_ms() + 60000;
    do
        lsm_stats_get(db, &s);
    while (s.levels[0].files > 4 && tu_now_ms() < deadline);
    ck_assert_uint_le(s.levels[0].files, 4);
    for (int i = 0; i < N; i += 97) {
        x = seed | 1;
        for (int r = 0; r <= i; r++)
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(k, sizeof(k), "key%08llu", (unsigned long long)(x % (N * 4)));
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
    }
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}

START_TEST(random_fill_settles_to_four_l0_tables)
{
    random_fill_settles(0);
}
END_TEST

START_TEST(random_fill_settles_with_niced_background)
{
    random_fill_settles(5);
}
END_TEST

/*
 * With background_nice, a debt of score >= 2 (here 10 L0 tables, trigger 4)
 * is compacted by the un-niced thread.
 */
START_TEST(high_debt_runs_on_the_unniced_thread)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    char k[32];
    uint64_t deadline;

    copts(&o);
    o.l0_compaction_trigger = 100; /* build the debt first */
    o.l0_slowdown_trigger = 200;
    o.l0_stop_trigger = 300;
    o.idle_l0_compaction_ms = 0;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int t = 0; t < 10; t++) {
        snprintf(k, sizeof(k), "key%03d", t);
        ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_from_str(k)), OM_OK);
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
    ck_assert_int_eq(lsm_close(db), OM_OK);
    o.l0_compaction_trigger = 4;
    o.l0_slowdown_trigger = 20;
    o.l0_stop_trigger = 36;
    o.background_nice = 5;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    deadline = tu_now_ms() + 20000;
    do
        lsm_stats_get(db, &s);
    while ((s.levels[0].files > 4 || s.urgent_compactions == 0) && tu_now_ms() < deadline);
    ck_assert_uint_le(s.levels[0].files, 4);
    ck_assert_uint_ge(s.urgent_compactions, 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * Two compactions at once (issue 14). A test hook holds the niced thread's
 * compaction open: one of L1 (hold_level 1) or L0 (hold_level 0). The
 * hook records what the urgent thread starts meanwhile; a held compaction
 * is let go when the test says so or when it is asked to yield.
 */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hold_level;
    bool release;
    int held;        /* niced compactions of hold_level held so far */
    int l0_beside;   /* urgent L0 compactions started while one was held */
    bool yield_seen; /* the held compaction was asked to yield */
} hk = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, 0, 0, false};

static void
hold_hook(lsm_compaction *c, bool urgent)
{
    pthread_mutex_lock(&hk.mu);
    if (!urgent && c->level == hk.hold_level && !c->manual && !hk.release && !hk.yield_seen) {
        hk.held++;
        pthread_cond_broadcast(&hk.cv);
        while (!hk.release && !atomic_load(&c->yield)) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10 * 1000000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&hk.cv, &hk.mu, &ts); /* polls c->yield */
        }
        hk.yield_seen = atomic_load(&c->yield); /* then no more holds */
        hk.held--;
    } else if (urgent && c->level == 0 && hk.held > 0) {
        hk.l0_beside++;
    }
    pthread_cond_broadcast(&hk.cv);
    pthread_mutex_unlock(&hk.mu);
}

/* Wait until *what >= n or 20 s pass; the value seen. */
static int
hook_wait(const int *what, int n)
{
    uint64_t deadline = tu_now_ms() + 20000;
    int v;

    pthread_mutex_lock(&hk.mu);
    while (*what < n && tu_now_ms() < deadline) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec++;
        pthread_cond_timedwait(&hk.cv, &hk.mu, &ts);
    }
    v = *what;
    pthread_mutex_unlock(&hk.mu);
    return v;
}

/* The hook's state, read under its lock. */
static void
hook_state(int *held, bool *yield_seen)
{
    pthread_mutex_lock(&hk.mu);
    *held = hk.held;
    *yield_seen = hk.yield_seen;
    pthread_mutex_unlock(&hk.mu);
}

static void
hook_release(void)
{
    pthread_mutex_lock(&hk.mu);
    hk.release = true;
    pthread_cond_broadcast(&hk.cv);
    pthread_mutex_unlock(&hk.mu);
}

/* Key i of L0 table t (every table spans the same keys of its prefix) and its value. */
static void
l0_kv(const char *prefix, int t, int i, char *k, size_t kn, uint8_t *v, size_t vn)
{
    uint64_t x = ((uint64_t)t << 32 | (uint64_t)i) * 0x9E3779B97F4A7C15u | 1;

    snprintf(k, kn, "%s%02d-%03d", prefix, i, t);
    for (size_t j = 0; j < vn; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[j] = (uint8_t)x; /* incompressible: the level sizes are what the test sets */
    }
}

/* Tables first .. first + n - 1 of 20 keys in L0, each flushed. */
static void
l0_tables(lsm_db *db, const char *prefix, int first, int n)
{
    char k[32];
    uint8_t v[200];

    for (int t = first; t < first + n; t++) {
        for (int i = 0; i < 20; i++) {
            l0_kv(prefix, t, i, k, sizeof(k), v, sizeof(v));
            ck_assert_int_eq(lsm_put(db, om_slice_from_str(k), om_slice_make(v, sizeof(v))), OM_OK);
        }
        ck_assert_int_eq(lsm_flush(db), OM_OK);
    }
}

/* Every key l0_tables wrote reads back. */
static void
l0_tables_read(lsm_db *db, const char *prefix, int n)
{
    om_buf got = OM_BUF_INIT;
    char k[32];
    uint8_t v[200];

    for (int t = 0; t < n; t++)
        for (int i = 0; i < 20; i++) {
            l0_kv(prefix, t, i, k, sizeof(k), v, sizeof(v));
            ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &got), OM_OK);
            ck_assert(om_slice_eq(om_buf_slice(&got), om_slice_make(v, sizeof(v))));
        }
    om_buf_free(&got);
}

static void
beside_opts(lsm_opts *o)
{
    copts(o);
    o->l0_compaction_trigger = 4; /* urgent at 8 L0 tables */
    o->l0_slowdown_trigger = 200;
    o->l0_stop_trigger = 300;
    o->idle_l0_compaction_ms = 0;
    o->background_nice = 5;
}

/*
 * While the niced thread's L1->L2 compaction (keys a...) is held open, L0
 * (keys z...) reaches twice its trigger: the urgent thread runs an L0->L1
 * compaction beside it -- the two share no level range -- instead of
 * waiting for it.
 */
START_TEST(l0_compaction_runs_beside_a_deeper_one)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    uint64_t deadline;
    int held;
    bool yield_seen;

    beside_opts(&o);
    o.max_bytes_for_level1 = 1u << 20; /* keys a... stay in L1 */
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    l0_tables(db, "a", 0, 12);
    ck_assert_int_eq(lsm_compact_range(db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.levels[0].files, 0);
    ck_assert_uint_gt(s.levels[1].bytes, 0); /* the deepest level with data, rewritten in place */
    ck_assert_int_eq(lsm_close(db), OM_OK);

    /* L1 at 1.5 times its target: the niced thread's compaction (score < 2). */
    o.max_bytes_for_level1 = s.levels[1].bytes * 2 / 3;
    hk.hold_level = 1;
    lsm_compaction_test_hook = hold_hook;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    ck_assert_int_eq(hook_wait(&hk.held, 1), 1);
    l0_tables(db, "z", 0, 8);
    ck_assert_int_ge(hook_wait(&hk.l0_beside, 1), 1);
    hook_state(&held, &yield_seen);
    ck_assert(!yield_seen && held == 1); /* still held: nothing was asked of it */
    hook_release();
    deadline = tu_now_ms() + 20000;
    do
        lsm_stats_get(db, &s);
    while (s.levels[0].files > 4 && tu_now_ms() < deadline);
    ck_assert_uint_le(s.levels[0].files, 4);
    ck_assert_uint_ge(s.urgent_compactions, 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    lsm_compaction_test_hook = NULL;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    l0_tables_read(db, "a", 12);
    l0_tables_read(db, "z", 8);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * The niced thread's L0->L1 compaction (5 tables, score 1.25) is held open
 * and L0 reaches twice its trigger: the urgent thread's L0 compaction would
 * share its files, so it asks it to yield; the niced one, not half done,
 * gives up (no background error), and the urgent thread compacts L0.
 */
START_TEST(young_niced_compaction_yields_to_urgent_l0)
{
    const char *dir = tu_tmpdir();
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;
    uint64_t deadline;
    int held;
    bool yield_seen;

    beside_opts(&o);
    o.l0_compaction_trigger = 100; /* 5 L0 tables first */
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    l0_tables(db, "k", 0, 5);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    o.l0_compaction_trigger = 4;
    hk.hold_level = 0;
    lsm_compaction_test_hook = hold_hook;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    ck_assert_int_eq(hook_wait(&hk.held, 1), 1);
    l0_tables(db, "k", 5, 3);
    deadline = tu_now_ms() + 20000;
    do
        lsm_stats_get(db, &s);
    while ((s.levels[0].files > 4 || s.urgent_compactions == 0) && tu_now_ms() < deadline);
    hook_release();
    hook_state(&held, &yield_seen);
    ck_assert(yield_seen);
    ck_assert_uint_le(s.levels[0].files, 4);
    ck_assert_uint_ge(s.urgent_compactions, 1);
    l0_tables(db, "k", 8, 1); /* no background error */
    ck_assert_int_eq(lsm_close(db), OM_OK);
    lsm_compaction_test_hook = NULL;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    l0_tables_read(db, "k", 9);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

START_TEST(close_finishes_a_mostly_done_compaction)
{
    close_during_compaction(80, 60000, true);
}
END_TEST

START_TEST(close_abandons_a_young_compaction)
{
    /* A quarter done: the rest would take about three times what the part done took. */
    close_during_compaction(25, 60000, false);
}
END_TEST

START_TEST(close_abandons_when_told_not_to_wait)
{
    close_during_compaction(80, 0, false);
}
END_TEST

/* ---- paced manual compactions (lsm_compact_range_rate) ---- */

enum { PACE_VALUE = 4000, PACE_KEYS = 1024 }; /* about 4 MiB of entries */

/* Drops every odd key; notes that the compaction has started. */
static atomic_int pace_started;

static lsm_filter_decision
pace_filter(void *arg, int level, om_slice key, om_slice value)
{
    (void)arg;
    (void)level;
    (void)value;
    atomic_store(&pace_started, 1);
    return (key.p[key.n - 1] - '0') % 2 == 1 ? LSM_FILTER_DROP : LSM_FILTER_KEEP;
}

/* PACE_KEYS keys with PACE_VALUE-byte values, in L0 tables; returns the bytes of entries. */
static uint64_t
pace_fill(const char *dir, lsm_db **out)
{
    lsm_opts o;
    char k[32];
    uint8_t *val = malloc(PACE_VALUE);
    uint64_t bytes = 0;

    ck_assert_ptr_nonnull(val);
    copts(&o);
    o.zstd_level = 0;
    o.write_buffer_size = 1u << 20;
    o.target_file_size = 1u << 20;
    o.max_bytes_for_level1 = 256u << 20; /* no automatic compaction below L0 */
    o.l0_compaction_trigger = o.l0_slowdown_trigger = o.l0_stop_trigger = 64;
    o.idle_l0_compaction_ms = 0;
    o.compaction_filter = pace_filter;
    atomic_store(&pace_started, 0);
    ck_assert_int_eq(lsm_open(dir, &o, out), OM_OK);
    for (int i = 0; i < PACE_KEYS; i++) {
        snprintf(k, sizeof(k), "key%06d", i);
        memset(val, 'a' + i % 26, PACE_VALUE);
        ck_assert_int_eq(lsm_put(*out, om_slice_from_str(k), om_slice_make(val, PACE_VALUE)),
                         OM_OK);
        bytes += strlen(k) + 8 + PACE_VALUE; /* the internal key carries 8 bytes more */
    }
    ck_assert_int_eq(lsm_flush(*out), OM_OK);
    free(val);
    return bytes;
}

/*
 * N bytes of entries compacted at R bytes/s take at least about N / R: checked
 * with a generous lower bound only (a slow machine takes longer, never less).
 * The result is the same as unpaced: odd keys dropped, even keys intact.
 */
START_TEST(paced_compaction_takes_at_least_bytes_over_rate)
{
    const char *dir = tu_tmpdir();
    const uint64_t rate = 4u << 20;
    lsm_db *db;
    lsm_stats s;
    om_buf v = OM_BUF_INIT;
    char k[32];
    uint64_t bytes = pace_fill(dir, &db), t0, ms, want_ms;

    lsm_stats_get(db, &s);
    ck_assert_uint_gt(s.levels[0].files, 1);
    t0 = tu_now_ms();
    ck_assert_int_eq(lsm_compact_range_rate(db, OM_SLICE_NULL, OM_SLICE_NULL, rate), OM_OK);
    ms = tu_now_ms() - t0;
    want_ms = bytes * 1000 / rate;
    printf("paced compaction: %llu bytes at %llu B/s took %llu ms (N/R = %llu ms)\n",
           (unsigned long long)bytes, (unsigned long long)rate, (unsigned long long)ms,
           (unsigned long long)want_ms);
    /* The burst credit (50 ms) and the last unpaid chunk are the only slack. */
    ck_assert_uint_ge(ms, want_ms * 8 / 10);
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.levels[0].files, 0);
    for (int i = 0; i < PACE_KEYS; i++) {
        snprintf(k, sizeof(k), "key%06d", i);
        if (i % 2 == 1) {
            ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_E_NOTFOUND);
        } else {
            ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
            ck_assert_uint_eq(v.n, PACE_VALUE);
            ck_assert_uint_eq(v.p[0], (uint8_t)('a' + i % 26));
        }
    }
    /* The in-place rewrite of the bottom level is paced too (half the entries are left). */
    t0 = tu_now_ms();
    ck_assert_int_eq(lsm_compact_range_rate(db, OM_SLICE_NULL, OM_SLICE_NULL, rate), OM_OK);
    ms = tu_now_ms() - t0;
    ck_assert_uint_ge(ms, want_ms / 2 * 8 / 10);
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

typedef struct pace_call {
    lsm_db *db;
    uint64_t rate;
    om_status st;
    atomic_int returned;
} pace_call;

static void *
pace_thread(void *arg)
{
    pace_call *c = arg;

    c->st = lsm_compact_range_rate(c->db, OM_SLICE_NULL, OM_SLICE_NULL, c->rate);
    atomic_store(&c->returned, 1);
    return NULL;
}

/*
 * A compaction paced to take about a minute; lsm_close from another thread
 * wakes the pacing and abandons it: the close returns long before the minute
 * (bound: half of it), the call returns OM_E_BUSY, and nothing is lost.
 */
START_TEST(close_wakes_a_paced_compaction)
{
    const char *dir = tu_tmpdir();
    pace_call c;
    pthread_t th;
    lsm_opts o;
    lsm_db *db;
    om_buf v = OM_BUF_INIT;
    char k[32];
    uint64_t bytes, deadline, t0, ms;

    memset(&c, 0, sizeof(c));
    bytes = pace_fill(dir, &c.db);
    c.rate = bytes / 60;
    ck_assert_int_eq(pthread_create(&th, NULL, pace_thread, &c), 0);
    deadline = tu_now_ms() + 20000;
    while (!atomic_load(&pace_started) && tu_now_ms() < deadline)
        sched_yield();
    ck_assert_int_eq(atomic_load(&pace_started), 1);
    t0 = tu_now_ms();
    ck_assert_int_eq(lsm_close(c.db), OM_OK);
    ms = tu_now_ms() - t0;
    pthread_join(th, NULL);
    printf("close during a paced compaction: %llu ms\n", (unsigned long long)ms);
    ck_assert_uint_lt(ms, 30000);
    ck_assert_int_eq(c.st, OM_E_BUSY);
    /* Abandoned: every key is still there. */
    copts(&o);
    o.zstd_level = 0;
    o.idle_l0_compaction_ms = 0;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    for (int i = 0; i < PACE_KEYS; i++) {
        snprintf(k, sizeof(k), "key%06d", i);
        ck_assert_int_eq(lsm_get(db, NULL, om_slice_from_str(k), &v), OM_OK);
    }
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

/*
 * lsm_compact_range_stop (a shard shutting down): the paced call returns
 * OM_E_BUSY long before its minute, later calls too, and the database keeps
 * working (no background error): writes, reads, flushes.
 */
START_TEST(stop_abandons_a_paced_compaction)
{
    const char *dir = tu_tmpdir();
    pace_call c;
    pthread_t th;
    om_buf v = OM_BUF_INIT;
    uint64_t bytes, deadline, t0;

    memset(&c, 0, sizeof(c));
    bytes = pace_fill(dir, &c.db);
    c.rate = bytes / 60;
    ck_assert_int_eq(pthread_create(&th, NULL, pace_thread, &c), 0);
    deadline = tu_now_ms() + 20000;
    while (!atomic_load(&pace_started) && tu_now_ms() < deadline)
        sched_yield();
    ck_assert_int_eq(atomic_load(&pace_started), 1);
    t0 = tu_now_ms();
    lsm_compact_range_stop(c.db);
    pthread_join(th, NULL);
    printf("stop during a paced compaction: %llu ms\n", (unsigned long long)(tu_now_ms() - t0));
    ck_assert_uint_lt(tu_now_ms() - t0, 30000);
    ck_assert_int_eq(c.st, OM_E_BUSY);
    ck_assert_int_eq(lsm_compact_range(c.db, OM_SLICE_NULL, OM_SLICE_NULL), OM_E_BUSY);
    ck_assert_int_eq(lsm_put(c.db, om_slice_from_str("after"), om_slice_from_str("stop")), OM_OK);
    ck_assert_int_eq(lsm_flush(c.db), OM_OK);
    ck_assert_int_eq(lsm_get(c.db, NULL, om_slice_from_str("key000001"), &v), OM_OK);
    ck_assert_int_eq(lsm_get(c.db, NULL, om_slice_from_str("after"), &v), OM_OK);
    om_buf_free(&v);
    ck_assert_int_eq(lsm_close(c.db), OM_OK);
}
END_TEST

/*
 * lsm_compact_range_progress: before any call nothing; the estimate of a full compaction is the
 * L0 tables (one step into an empty L1); during a paced call the bytes read grow, stay within
 * the total and the call is running; at the end done == total, about the tables read (the
 * filter drops half, so the second call's total is about half the first's).
 */
START_TEST(compact_range_progress_grows_to_total)
{
    const char *dir = tu_tmpdir();
    pace_call c;
    pthread_t th;
    lsm_stats s;
    uint64_t done, total, last = 0, deadline, first_total;
    bool running;
    int seen = 0;

    memset(&c, 0, sizeof(c));
    (void)pace_fill(dir, &c.db);
    lsm_compact_range_progress(c.db, &done, &total, &running);
    ck_assert(!running);
    ck_assert_uint_eq(done, 0);
    ck_assert_uint_eq(total, 0);
    lsm_stats_get(c.db, &s);
    ck_assert_uint_eq(lsm_compact_range_estimate(c.db), s.levels[0].bytes);
    c.rate = 2u << 20; /* about 2 s for the 4 MiB */
    ck_assert_int_eq(pthread_create(&th, NULL, pace_thread, &c), 0);
    deadline = tu_now_ms() + 60000;
    while (!atomic_load(&c.returned) && tu_now_ms() < deadline) {
        lsm_compact_range_progress(c.db, &done, &total, &running);
        ck_assert_uint_ge(done, last);
        ck_assert_uint_le(done, total);
        if (running && done > last && done < total)
            seen++;
        last = done;
        usleep(20000);
    }
    pthread_join(th, NULL);
    ck_assert_int_eq(c.st, OM_OK);
    printf("compact_range progress: %d readings between 0 and the total\n", seen);
    ck_assert_int_ge(seen, 3);
    lsm_compact_range_progress(c.db, &done, &total, &running);
    ck_assert(!running);
    ck_assert_uint_eq(done, total);
    ck_assert_uint_eq(total, s.levels[0].bytes); /* L0 into the empty L1: one step */
    first_total = total;
    /* Again: the deepest level (half the entries now) rewritten in place. */
    ck_assert_int_eq(lsm_compact_range(c.db, OM_SLICE_NULL, OM_SLICE_NULL), OM_OK);
    lsm_compact_range_progress(c.db, &done, &total, &running);
    ck_assert_uint_eq(done, total);
    ck_assert_uint_lt(total, first_total * 6 / 10);
    ck_assert_uint_gt(total, first_total * 4 / 10);
    ck_assert_int_eq(lsm_close(c.db), OM_OK);
}
END_TEST

static Suite *
compaction_suite(void)
{
    Suite *s = suite_create("lsm-compaction");
    TCase *tc = tcase_create("compaction");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pick_by_score);
    tcase_add_test(tc, compact_range_progress_grows_to_total);
    tcase_add_test(tc, survival_rules);
    tcase_add_test(tc, tombstones_dropped_only_at_bottom);
    tcase_add_test(tc, filter_applied_snapshots_respected);
    tcase_add_test(tc, background_compaction_keeps_levels_in_shape);
    tcase_add_test(tc, version_pins_its_tables);
    tcase_add_test(tc, idle_database_compacts_l0);
    tcase_add_test(tc, random_fill_settles_to_four_l0_tables);
    tcase_add_test(tc, random_fill_settles_with_niced_background);
    tcase_add_test(tc, high_debt_runs_on_the_unniced_thread);
    tcase_add_test(tc, l0_compaction_runs_beside_a_deeper_one);
    tcase_add_test(tc, young_niced_compaction_yields_to_urgent_l0);
    tcase_add_test(tc, close_finishes_a_mostly_done_compaction);
    tcase_add_test(tc, close_abandons_a_young_compaction);
    tcase_add_test(tc, close_abandons_when_told_not_to_wait);
    tcase_add_test(tc, paced_compaction_takes_at_least_bytes_over_rate);
    tcase_add_test(tc, close_wakes_a_paced_compaction);
    tcase_add_test(tc, stop_abandons_a_paced_compaction);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(compaction_suite());
}
