/*
 * tests/lsm/test_manifest.c -- version edits (encode/decode, malformed
 * input), building versions (ordering, overlap checks, obsolete marking),
 * and the version set's MANIFEST/CURRENT recovery, including a torn last
 * edit, a corrupt CURRENT and a database whose table went missing.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lsm/filename.h"
#include "lsm/manifest.h"
#include "tu.h"
#include "util/assert.h"

static om_buf
ikey(const char *k, uint64_t seq)
{
    om_buf b = OM_BUF_INIT;

    lsm_ikey_append(&b, om_slice_from_str(k), seq, LSM_TYPE_VAL);
    return b;
}

static void
add(lsm_edit *e, int level, uint64_t num, const char *lo, const char *hi)
{
    om_buf a = ikey(lo, 5), b = ikey(hi, 4);

    ck_assert_int_eq(
        lsm_edit_add_file(e, level, num, 1000 + num, om_buf_slice(&a), om_buf_slice(&b)), OM_OK);
    om_buf_free(&a);
    om_buf_free(&b);
}

START_TEST(edit_roundtrip)
{
    lsm_edit e, d;
    om_buf enc = OM_BUF_INIT, enc2 = OM_BUF_INIT, cp = ikey("m", 9);

    lsm_edit_init(&e);
    lsm_edit_set_log_number(&e, 12);
    lsm_edit_set_next_file(&e, 99);
    lsm_edit_set_last_seq(&e, 123456789);
    ck_assert_int_eq(lsm_edit_set_cptr(&e, 2, om_buf_slice(&cp)), OM_OK);
    ck_assert_int_eq(lsm_edit_del_file(&e, 1, 7), OM_OK);
    add(&e, 0, 20, "a", "z");
    add(&e, 3, 21, "b", "c");
    ck_assert_int_eq(lsm_edit_encode(&e, &enc), OM_OK);
    lsm_edit_init(&d);
    ck_assert_int_eq(lsm_edit_decode(om_buf_slice(&enc), &d), OM_OK);
    ck_assert(d.has_log_number && d.log_number == 12);
    ck_assert(d.has_next_file && d.next_file == 99);
    ck_assert(d.has_last_seq && d.last_seq == 123456789);
    ck_assert_int_eq(d.ncptr, 1);
    ck_assert_int_eq(d.ndels, 1);
    ck_assert_int_eq(d.nadds, 2);
    ck_assert_uint_eq(d.adds[1].f->number, 21);
    ck_assert_uint_eq(d.adds[1].f->size, 1021);
    ck_assert_int_eq(lsm_edit_encode(&d, &enc2), OM_OK);
    ck_assert(om_slice_eq(om_buf_slice(&enc), om_buf_slice(&enc2)));
    lsm_edit_fini(&d);
    /* Every strict prefix that cuts a field is rejected; so is an unknown tag. */
    int rejected = 0;
    for (size_t n = 0; n < enc.n; n++) {
        lsm_edit_init(&d);
        rejected += lsm_edit_decode(om_slice_make(enc.p, n), &d) == OM_E_CORRUPT;
        lsm_edit_fini(&d);
    }
    ck_assert_int_gt(rejected, (int)enc.n / 2);
    enc.p[0] = 77;
    lsm_edit_init(&d);
    ck_assert_int_eq(lsm_edit_decode(om_buf_slice(&enc), &d), OM_E_CORRUPT);
    lsm_edit_fini(&d);
    lsm_edit_fini(&e);
    om_buf_free(&enc);
    om_buf_free(&enc2);
    om_buf_free(&cp);
}
END_TEST

START_TEST(version_apply_checks)
{
    lsm_opts o;
    lsm_edit e;
    lsm_version *v1, *v2, *bad;

    lsm_opts_init(&o);
    lsm_edit_init(&e);
    add(&e, 0, 5, "a", "m");
    add(&e, 0, 3, "c", "z");
    add(&e, 1, 8, "n", "p");
    add(&e, 1, 9, "a", "c");
    ck_assert_int_eq(lsm_version_apply(NULL, &e, &o, &v1), OM_OK);
    lsm_edit_fini(&e);
    /* L0 by number, L1 by key. */
    ck_assert_uint_eq(v1->files[0][0]->number, 3);
    ck_assert_uint_eq(v1->files[1][0]->number, 9);
    ck_assert_uint_eq(lsm_version_level_bytes(v1, 1), 1008 + 1009);
    ck_assert_int_eq(v1->score_level, 0);
    /* Overlap in L1 is refused; so is deleting an absent file. */
    lsm_edit_init(&e);
    add(&e, 1, 10, "b", "d");
    ck_assert_int_eq(lsm_version_apply(v1, &e, &o, &bad), OM_E_CORRUPT);
    lsm_edit_fini(&e);
    lsm_edit_init(&e);
    lsm_edit_del_file(&e, 2, 8);
    ck_assert_int_eq(lsm_version_apply(v1, &e, &o, &bad), OM_E_CORRUPT);
    lsm_edit_fini(&e);
    /* Deleting and adding. */
    lsm_edit_init(&e);
    lsm_edit_del_file(&e, 1, 8);
    add(&e, 2, 11, "n", "q");
    ck_assert_int_eq(lsm_version_apply(v1, &e, &o, &v2), OM_OK);
    lsm_edit_fini(&e);
    ck_assert_int_eq(v2->nfiles[1], 1);
    ck_assert_int_eq(v2->nfiles[2], 1);
    /* Overlap queries. */
    lsm_file_meta **fs = NULL;
    int n = 0;
    ck_assert_int_eq(
        lsm_version_overlaps(v1, 0, om_slice_from_str("n"), om_slice_from_str("o"), &fs, &n),
        OM_OK);
    ck_assert_int_eq(n, 2); /* 3 overlaps, and 5 overlaps 3 */
    n = 0;
    ck_assert_int_eq(
        lsm_version_overlaps(v1, 1, om_slice_from_str("d"), om_slice_from_str("m"), &fs, &n),
        OM_OK);
    ck_assert_int_eq(n, 0);
    free(fs);
    lsm_version_unref(v1);
    lsm_version_unref(v2);
}
END_TEST

static lsm_vset *
vset_open(const char *dir, lsm_opts *o, pthread_mutex_t *mu, bool recover)
{
    lsm_vset *vs;

    ck_assert_int_eq(lsm_vset_new(lsm_env_posix(), dir, o, NULL, mu, &vs), OM_OK);
    if (recover)
        ck_assert_int_eq(lsm_vset_recover(vs), OM_OK);
    return vs;
}

START_TEST(vset_recovery_and_torn_tail)
{
    const char *dir = tu_tmpdir();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    char path[512];
    lsm_opts o;
    lsm_vset *vs;
    lsm_edit e;
    uint64_t mnum;

    lsm_opts_init(&o);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_recover(vs), OM_E_NOTFOUND); /* no CURRENT yet */
    ck_assert_int_eq(lsm_vset_create_manifest(vs, NULL), OM_OK);
    mnum = vs->manifest_number;
    for (int i = 0; i < 20; i++) {
        char lo[8], hi[8];

        lsm_edit_init(&e);
        snprintf(lo, sizeof(lo), "k%02d", i);
        snprintf(hi, sizeof(hi), "k%02dz", i);
        add(&e, 1, lsm_vset_new_file_number(vs), lo, hi);
        lsm_edit_set_log_number(&e, 100 + (uint64_t)i);
        lsm_edit_set_last_seq(&e, 1000 + (uint64_t)i);
        ck_assert_int_eq(lsm_vset_log_and_apply(vs, &e, NULL, NULL), OM_OK);
        lsm_edit_fini(&e);
    }
    uint64_t next = atomic_load(&vs->next_file);
    lsm_vset_free(vs);

    vs = vset_open(dir, &o, &mu, true);
    ck_assert_int_eq(vs->current->nfiles[1], 20);
    ck_assert_uint_eq(vs->log_number, 119);
    ck_assert_uint_eq(vs->last_seq, 1019);
    ck_assert_uint_ge(atomic_load(&vs->next_file), next);
    ck_assert_uint_eq(vs->manifest_number, mnum);
    lsm_vset_free(vs);

    /* Cut the MANIFEST inside its last edit: that edit never happened. */
    lsm_fname(path, sizeof(path), dir, LSM_FT_MANIFEST, mnum);
    lsm_env *env = lsm_env_posix();
    lsm_rfile *f;
    uint64_t size;
    ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
    lsm_rfile_close(f);
    ck_assert_int_eq(env->ops->truncate(env, path, size - 3), OM_OK);
    vs = vset_open(dir, &o, &mu, true);
    ck_assert_int_eq(vs->current->nfiles[1], 19);
    ck_assert_uint_eq(vs->last_seq, 1018);
    /* A new MANIFEST with a snapshot, then CURRENT switched to it. */
    ck_assert_int_eq(lsm_vset_create_manifest(vs, NULL), OM_OK);
    ck_assert_uint_ne(vs->manifest_number, mnum);
    lsm_vset_free(vs);
    vs = vset_open(dir, &o, &mu, true);
    ck_assert_int_eq(vs->current->nfiles[1], 19);
    lsm_vset_free(vs);
}
END_TEST

/*
 * An edit that would take the recorded last sequence backwards is a bug in
 * the caller (OM_ASSERT in lsm_vset_log_and_apply): the process aborts
 * before anything is written. Registered only where asserts are on.
 */
START_TEST(vset_asserts_last_seq_never_goes_back)
{
    const char *dir = tu_tmpdir();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    lsm_opts o;
    lsm_vset *vs;
    lsm_edit e;

    lsm_opts_init(&o);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_create_manifest(vs, NULL), OM_OK);
    lsm_edit_init(&e);
    add(&e, 1, lsm_vset_new_file_number(vs), "a", "b");
    lsm_edit_set_last_seq(&e, 1000);
    ck_assert_int_eq(lsm_vset_log_and_apply(vs, &e, NULL, NULL), OM_OK);
    lsm_edit_fini(&e);
    lsm_edit_init(&e);
    add(&e, 1, lsm_vset_new_file_number(vs), "c", "d");
    lsm_edit_set_last_seq(&e, 999);
    lsm_vset_log_and_apply(vs, &e, NULL, NULL); /* aborts */
    ck_abort_msg("a last sequence going backwards was logged");
}
END_TEST

START_TEST(vset_rolls_large_manifest)
{
    const char *dir = tu_tmpdir();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    char path[512];
    lsm_opts o;
    lsm_vset *vs;
    lsm_edit e;
    uint64_t first;
    int rolls = 0;
    bool exists;

    lsm_opts_init(&o);
    vs = vset_open(dir, &o, &mu, false);
    vs->manifest_roll_bytes = 600;
    ck_assert_int_eq(lsm_vset_create_manifest(vs, NULL), OM_OK);
    first = vs->manifest_number;
    for (int i = 0; i < 40; i++) {
        char lo[8], hi[8];
        uint64_t before = vs->manifest_number;

        lsm_edit_init(&e);
        snprintf(lo, sizeof(lo), "k%02d", i);
        snprintf(hi, sizeof(hi), "k%02dz", i);
        add(&e, 2, lsm_vset_new_file_number(vs), lo, hi);
        if (i > 0 && i % 5 == 0) /* and a deletion now and then */
            lsm_edit_del_file(&e, 2, vs->current->files[2][0]->number);
        lsm_edit_set_last_seq(&e, 500 + (uint64_t)i);
        ck_assert_int_eq(lsm_vset_log_and_apply(vs, &e, NULL, NULL), OM_OK);
        lsm_edit_fini(&e);
        rolls += vs->manifest_number != before;
    }
    ck_assert_int_gt(rolls, 2);
    int nfiles = vs->current->nfiles[2];
    lsm_vset_free(vs);
    lsm_fname(path, sizeof(path), dir, LSM_FT_MANIFEST, first);
    ck_assert_int_eq(lsm_env_posix()->ops->exists(lsm_env_posix(), path, &exists), OM_OK);
    ck_assert(!exists);
    vs = vset_open(dir, &o, &mu, true);
    ck_assert_int_eq(vs->current->nfiles[2], nfiles);
    ck_assert_int_eq(nfiles, 40 - 7);
    ck_assert_uint_eq(vs->last_seq, 539);
    lsm_vset_free(vs);
}
END_TEST

START_TEST(vset_corrupt_current_and_manifest)
{
    const char *dir = tu_tmpdir();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    char path[512];
    lsm_env *env = lsm_env_posix();
    lsm_wfile *w;
    lsm_opts o;
    lsm_vset *vs;
    lsm_edit e;

    lsm_opts_init(&o);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_create_manifest(vs, NULL), OM_OK);
    for (int i = 0; i < 3; i++) {
        lsm_edit_init(&e);
        add(&e, 0, lsm_vset_new_file_number(vs), "a", "b");
        ck_assert_int_eq(lsm_vset_log_and_apply(vs, &e, NULL, NULL), OM_OK);
        lsm_edit_fini(&e);
    }
    uint64_t mnum = vs->manifest_number;
    lsm_vset_free(vs);
    /* Flip a byte in the first (snapshot) edit: intact edits follow, so corruption. */
    lsm_fname(path, sizeof(path), dir, LSM_FT_MANIFEST, mnum);
    lsm_rfile *f;
    uint64_t size;
    size_t got;
    uint8_t buf[4096];
    ck_assert_int_eq(env->ops->rfile_open(env, path, &f, &size), OM_OK);
    ck_assert_int_eq(lsm_rfile_read(f, 0, size, buf, &got), OM_OK);
    lsm_rfile_close(f);
    buf[9] ^= 0x40;
    ck_assert_int_eq(env->ops->wfile_open(env, path, false, &w), OM_OK);
    ck_assert_int_eq(lsm_wfile_append(w, buf, got), OM_OK);
    ck_assert_int_eq(lsm_wfile_close(w), OM_OK);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_recover(vs), OM_E_CORRUPT);
    lsm_vset_free(vs);
    /* CURRENT naming garbage, or a missing MANIFEST. */
    lsm_fname(path, sizeof(path), dir, LSM_FT_CURRENT, 0);
    ck_assert_int_eq(env->ops->wfile_open(env, path, false, &w), OM_OK);
    ck_assert_int_eq(lsm_wfile_append(w, "garbage\n", 8), OM_OK);
    ck_assert_int_eq(lsm_wfile_close(w), OM_OK);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_recover(vs), OM_E_CORRUPT);
    lsm_vset_free(vs);
    ck_assert_int_eq(env->ops->wfile_open(env, path, false, &w), OM_OK);
    ck_assert_int_eq(lsm_wfile_append(w, "MANIFEST-999999\n", 16), OM_OK);
    ck_assert_int_eq(lsm_wfile_close(w), OM_OK);
    vs = vset_open(dir, &o, &mu, false);
    ck_assert_int_eq(lsm_vset_recover(vs), OM_E_CORRUPT);
    lsm_vset_free(vs);
}
END_TEST

/* The POSIX env with truncates and removes of tables recorded, and their threads. */
static lsm_env_ops dr_ops;
static lsm_env dr_env;
static pthread_t dr_caller;
static uint64_t dr_cuts[8];
static int dr_ncuts, dr_removes, dr_on_caller;

static om_status
dr_truncate(lsm_env *env, const char *path, uint64_t size)
{
    (void)env;
    if (dr_ncuts < 8)
        dr_cuts[dr_ncuts] = size;
    dr_ncuts++;
    dr_on_caller += pthread_equal(pthread_self(), dr_caller);
    return lsm_env_posix()->ops->truncate(lsm_env_posix(), path, size);
}

static om_status
dr_remove(lsm_env *env, const char *path)
{
    (void)env;
    dr_removes++;
    dr_on_caller += pthread_equal(pthread_self(), dr_caller);
    return lsm_env_posix()->ops->remove(lsm_env_posix(), path);
}

/*
 * A dropped table is removed on the deleter's thread, cut down from its end
 * in LSM_DELETE_CHUNK steps first -- unless it has another name, which keeps
 * its data; lsm_vset_free waits for it. A table that is already gone costs a
 * warning, nothing more.
 */
START_TEST(vset_drops_tables_in_steps_off_the_caller)
{
    const char *dir = tu_tmpdir();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    uint64_t size = 2 * LSM_DELETE_CHUNK + 12345;
    char path[512], path9[512], backup[600];
    struct stat sb;
    lsm_opts o;
    lsm_vset *vs;
    bool ex;
    FILE *f;

    lsm_opts_init(&o);
    dr_ops = *lsm_env_posix()->ops;
    dr_ops.truncate = dr_truncate;
    dr_ops.remove = dr_remove;
    dr_env.ops = &dr_ops;
    dr_caller = pthread_self();
    lsm_fname(path, sizeof(path), dir, LSM_FT_SST, 7);
    ck_assert_ptr_nonnull(f = fopen(path, "wb"));
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)size), 0);
    fclose(f);
    /* table 9: as large, with a second name (an operator's hard-linked backup) */
    lsm_fname(path9, sizeof(path9), dir, LSM_FT_SST, 9);
    snprintf(backup, sizeof(backup), "%s/backup-000009.sst", dir);
    ck_assert_ptr_nonnull(f = fopen(path9, "wb"));
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)size), 0);
    fclose(f);
    ck_assert_int_eq(link(path9, backup), 0);
    ck_assert_int_eq(lsm_vset_new(&dr_env, dir, &o, NULL, &mu, &vs), OM_OK);
    lsm_vset_drop_table(vs, 7, size);
    lsm_vset_drop_table(vs, 8, 100); /* no such file */
    lsm_vset_drop_table(vs, 9, size);
    lsm_vset_free(vs);
    ck_assert_int_eq(dr_ncuts, 2); /* table 7 only */
    ck_assert_uint_eq(dr_cuts[0], LSM_DELETE_CHUNK + 12345);
    ck_assert_uint_eq(dr_cuts[1], 12345);
    ck_assert_int_eq(dr_removes, 3);
    ck_assert_int_eq(dr_on_caller, 0);
    ck_assert_int_eq(lsm_env_posix()->ops->exists(lsm_env_posix(), path, &ex), OM_OK);
    ck_assert(!ex);
    ck_assert_int_eq(lsm_env_posix()->ops->exists(lsm_env_posix(), path9, &ex), OM_OK);
    ck_assert(!ex);
    ck_assert_int_eq(stat(backup, &sb), 0);
    ck_assert_int_eq(sb.st_size, (off_t)size); /* the backup keeps every byte */
}
END_TEST

START_TEST(db_refuses_missing_table)
{
    const char *dir = tu_tmpdir();
    char path[512];
    lsm_opts o;
    lsm_db *db;
    lsm_stats s;

    lsm_opts_init(&o);
    o.sync_mode = LSM_SYNC_NONE;
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    ck_assert_int_eq(lsm_put(db, om_slice_from_str("k"), om_slice_from_str("v")), OM_OK);
    ck_assert_int_eq(lsm_flush(db), OM_OK);
    lsm_stats_get(db, &s);
    ck_assert_uint_eq(s.levels[0].files, 1);
    ck_assert_int_eq(lsm_close(db), OM_OK);
    /* Remove every table: acknowledged data would be lost, so the open fails. */
    char **names;
    size_t n;
    lsm_env *env = lsm_env_posix();
    ck_assert_int_eq(env->ops->list(env, dir, &names, &n), OM_OK);
    int removed = 0;
    for (size_t i = 0; i < n; i++) {
        if (strstr(names[i], ".sst") != NULL) {
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            ck_assert_int_eq(env->ops->remove(env, path), OM_OK);
            removed++;
        }
    }
    lsm_env_free_list(names, n);
    ck_assert_int_eq(removed, 1);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_E_CORRUPT);
}
END_TEST

START_TEST(filenames_parse)
{
    lsm_ftype t;
    uint64_t n;
    char buf[64];

    lsm_fname(buf, sizeof(buf), "d", LSM_FT_LOG, 42);
    ck_assert_str_eq(buf, "d/000042.log");
    ck_assert_int_eq(lsm_fname_parse("000042.log", &t, &n), OM_OK);
    ck_assert(t == LSM_FT_LOG && n == 42);
    ck_assert_int_eq(lsm_fname_parse("1234567.sst", &t, &n), OM_OK);
    ck_assert(t == LSM_FT_SST && n == 1234567);
    ck_assert_int_eq(lsm_fname_parse("MANIFEST-000003", &t, &n), OM_OK);
    ck_assert(t == LSM_FT_MANIFEST && n == 3);
    ck_assert_int_eq(lsm_fname_parse("CURRENT", &t, &n), OM_OK);
    ck_assert_int_eq(lsm_fname_parse("x.log", &t, &n), OM_E_INVALID);
    ck_assert_int_eq(lsm_fname_parse(".sst", &t, &n), OM_E_INVALID);
    ck_assert_int_eq(lsm_fname_parse("MANIFEST-", &t, &n), OM_E_INVALID);
    ck_assert_int_eq(lsm_fname_parse("notes.txt", &t, &n), OM_E_INVALID);
}
END_TEST

static Suite *
manifest_suite(void)
{
    Suite *s = suite_create("lsm-manifest");
    TCase *tc = tcase_create("manifest");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, edit_roundtrip);
    tcase_add_test(tc, version_apply_checks);
    tcase_add_test(tc, vset_recovery_and_torn_tail);
    tcase_add_test(tc, vset_corrupt_current_and_manifest);
    tcase_add_test(tc, vset_rolls_large_manifest);
    tcase_add_test(tc, vset_drops_tables_in_steps_off_the_caller);
    if (OM_ASSERTS_ON)
        tcase_add_test_raise_signal(tc, vset_asserts_last_seq_never_goes_back, SIGABRT);
    tcase_add_test(tc, db_refuses_missing_table);
    tcase_add_test(tc, filenames_parse);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(manifest_suite());
}
