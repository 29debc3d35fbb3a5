/*
 * lsm/db.c -- opening, recovery, snapshots, statistics and closing (point
 * reads are db_read.c's, writes db_write.c's, iterators db_iter.c's).
 *
 * Recovery procedure (lsm_open):
 *   1. Take the LOCK file (a second opener gets OM_E_INVALID).
 *   2. No CURRENT: create a fresh database (if create_if_missing). Else
 *      replay the MANIFEST that CURRENT names (version_set.c).
 *   3. Check that every table the version lists exists (a missing one is
 *      OM_E_CORRUPT: acknowledged data would be lost).
 *   4. Replay every WAL with a number >= the MANIFEST's log number, oldest
 *      first, into memtables, writing each full memtable to an L0 table. A
 *      torn tail is accepted only at the end of the newest log; it is
 *      truncated away and logged. Any other damage is OM_E_CORRUPT with the
 *      file and offset, and the open fails.
 *   5. Start a new WAL, write a fresh MANIFEST holding the recovered state
 *      (L0 tables from step 4, the new log number, the last sequence), and
 *      switch CURRENT to it atomically.
 *   6. Delete what is now obsolete: older logs and MANIFESTs, tables no
 *      version lists (outputs of an interrupted flush or compaction).
 * A crash at any step leaves the old CURRENT, MANIFEST and logs intact, so
 * recovery simply runs again.
 */
#define OM_LOG_MODULE "lsm"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/batch.h"
#include "lsm/db_int.h"
#include "lsm/filename.h"
#include "util/checksum.h"
#include "util/clock.h"

/*
 * The memtable memory pool keeps the free arena blocks of this many write
 * buffers at most: one memtable's worth frees up at every flush and the
 * active memtable takes it back as it fills, so the blocks in use and in the
 * pool together stay within max_immutable_memtables + 1 write buffers (plus
 * the prefault reserve). A cap of 2 measured no faster (Store at pipeline
 * 16, 48 and 64 MiB write buffers) and kept a write buffer more around.
 */
#define DB_MEM_POOL_BUFFERS 1
/*
 * The prefault thread keeps this much of the pool faulted in ahead of the
 * writers: a quarter of the write buffer, at most 16 MiB (refilled when the
 * writers took half of it; a page fault costs microseconds on some VMs, on
 * the writer's thread otherwise).
 */
#define DB_MEM_RESERVE_MAX (16u << 20)

static size_t
db_mem_reserve(size_t write_buffer_size)
{
    size_t r = write_buffer_size / 4;

    return r < DB_MEM_RESERVE_MAX ? r : DB_MEM_RESERVE_MAX;
}

static void *
db_prefault_main(void *arg)
{
    lsm_db *db = arg;

    pthread_setname_np(pthread_self(), "lsm-prefault");
    lsm_mem_pool_filler(db->mem_pool);
    return NULL;
}

void
lsm_opts_init(lsm_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->create_if_missing = true;
    o->error_if_exists = false;
    o->write_buffer_size = 64u << 20;
    o->max_immutable_memtables = 2;
    o->block_size = 4096;
    o->block_restart_interval = 16;
    o->bloom_bits_per_key = 10;
    o->block_cache_size = 64u << 20;
    o->zstd_level = 1;
    o->sync_mode = LSM_SYNC_ALWAYS;
    o->sync_period_ms = 100;
    o->l0_compaction_trigger = 4;
    o->l0_slowdown_trigger = 20;
    o->l0_stop_trigger = 36;
    o->level_multiplier = 10;
    o->max_bytes_for_level1 = 256u << 20;
    o->target_file_size = 64u << 20;
    o->max_open_files = 1000;
    o->paranoid_checks = false;
    o->close_compaction_wait_ms = 5000;
    o->idle_l0_compaction_ms = 1000;
    o->idle_flush_ms = 10000;
    o->memtable_prefault = true;
    o->wal_preallocate = 1u << 20;
}

void
lsm_opts_set_memory_budget(lsm_opts *o, uint64_t budget)
{
    if (budget < LSM_MIN_MEMORY_BUDGET)
        budget = LSM_MIN_MEMORY_BUDGET;
    o->write_buffer_size = (size_t)(budget / 16 * 3);
    o->max_immutable_memtables = 2;
    o->block_cache_size = (size_t)(budget / 16 * 3);
    o->row_cache_size = (size_t)(budget / 16);
}

static om_status
db_check_opts(const lsm_opts *o)
{
    const char *why = NULL;

    if (o->write_buffer_size < 4096)
        why = "write_buffer_size < 4096";
    else if (o->max_immutable_memtables < 1 || o->max_immutable_memtables > LSM_MAX_IMM - 1)
        why = "max_immutable_memtables out of range";
    else if (o->block_size < 64 || o->block_restart_interval < 1)
        why = "block_size or block_restart_interval too small";
    else if (o->bloom_bits_per_key < 0 || o->zstd_level < LSM_ZSTD_MIN_LEVEL || o->zstd_level > 22)
        why = "bloom_bits_per_key or zstd_level out of range";
    else if (o->sync_mode > LSM_SYNC_NONE ||
             (o->sync_mode == LSM_SYNC_PERIODIC && o->sync_period_ms == 0))
        why = "bad sync_mode or sync_period_ms";
    else if (o->l0_compaction_trigger < 1 || o->l0_slowdown_trigger < o->l0_compaction_trigger ||
             o->l0_stop_trigger < o->l0_slowdown_trigger)
        why = "L0 triggers must satisfy 1 <= compaction <= slowdown <= stop";
    else if (o->level_multiplier < 2 || o->max_bytes_for_level1 < 4096 ||
             o->target_file_size < 1024)
        why = "level_multiplier, max_bytes_for_level1 or target_file_size too small";
    else if (o->background_nice < 0 || o->background_nice > 19)
        why = "background_nice out of range 0-19";
    if (why != NULL) {
        lsm_logf(o, OM_LOG_ERROR, "invalid options: %s", why);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

/* ---- read views ---- */

void
lsm_sv_unref(lsm_sv *sv)
{
    if (sv == NULL || atomic_fetch_sub_explicit(&sv->refs, 1, memory_order_acq_rel) != 1)
        return;
    lsm_mem_unref(sv->mem);
    for (int i = 0; i < sv->nimm; i++)
        lsm_mem_unref(sv->imm[i]);
    lsm_version_unref(sv->v);
    free(sv);
}

om_status
lsm_db_install_sv(lsm_db *db)
{
    lsm_sv *sv = calloc(1, sizeof(*sv)), *old;

    if (sv == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&sv->refs, 1);
    sv->mem = db->mem;
    lsm_mem_ref(sv->mem);
    sv->nimm = db->nimm;
    for (int i = 0; i < db->nimm; i++) {
        sv->imm[i] = db->imm[i];
        lsm_mem_ref(sv->imm[i]);
    }
    sv->v = lsm_vset_current(db->vs);
    pthread_mutex_lock(&db->sv_mu);
    old = db->sv;
    db->sv = sv;
    pthread_mutex_unlock(&db->sv_mu);
    lsm_sv_unref(old);
    return OM_OK;
}

lsm_sv *
lsm_db_sv_get(lsm_db *db, uint64_t *last_seq)
{
    lsm_sv *sv;

    pthread_mutex_lock(&db->sv_mu);
    sv = db->sv;
    atomic_fetch_add_explicit(&sv->refs, 1, memory_order_relaxed);
    *last_seq = atomic_load_explicit(&db->last_seq, memory_order_acquire);
    pthread_mutex_unlock(&db->sv_mu);
    return sv;
}

void
lsm_db_set_bg_error(lsm_db *db, om_status st)
{
    if (st == OM_OK || db->bg_error != OM_OK)
        return;
    db->bg_error = st;
    lsm_logf(&db->opts, OM_LOG_ERROR, "background error: database refuses writes status=%s",
             om_status_str(st));
    pthread_cond_broadcast(&db->bg_cv);
}

uint64_t
lsm_db_oldest_snapshot(lsm_db *db)
{
    if (db->snap_list.next != &db->snap_list)
        return db->snap_list.next->seq;
    return atomic_load(&db->last_seq);
}

/* ---- obsolete files ---- */

void
lsm_db_delete_obsolete(lsm_db *db)
{
    char **names = NULL, path[LSM_PATH_MAX];
    size_t n = 0;
    lsm_version *v;
    uint64_t log_number, manifest_number;

    if (db->env->ops->list(db->env, db->dir, &names, &n) != OM_OK)
        return;
    pthread_mutex_lock(&db->mu);
    v = lsm_vset_current(db->vs);
    log_number = db->vs->log_number;
    manifest_number = db->vs->manifest_number;
    pthread_mutex_unlock(&db->mu);
    for (size_t i = 0; i < n; i++) {
        lsm_ftype type;
        uint64_t num;
        bool drop = false;

        if (lsm_fname_parse(names[i], &type, &num) != OM_OK)
            continue;
        switch (type) {
        case LSM_FT_LOG:
            drop = num < log_number;
            break;
        case LSM_FT_MANIFEST:
            drop = num != manifest_number;
            break;
        case LSM_FT_TEMP:
            drop = true;
            break;
        case LSM_FT_SST:
            /* Only at open (no flush or compaction is writing a new table). */
            drop = true;
            for (int l = 0; l < LSM_MAX_LEVELS && drop; l++)
                for (int j = 0; j < v->nfiles[l] && drop; j++)
                    drop = v->files[l][j]->number != num;
            break;
        default:
            break;
        }
        if (drop) {
            snprintf(path, sizeof(path), "%s/%s", db->dir, names[i]);
            if (db->env->ops->remove(db->env, path) == OM_OK)
                lsm_logf(&db->opts, OM_LOG_DEBUG, "removed obsolete file=%s", path);
        }
    }
    lsm_version_unref(v);
    lsm_env_free_list(names, n);
}

/* ---- recovery ---- */

static int
db_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Add an L0 table for m to e (nothing if m is empty). */
static om_status
db_recover_flush(lsm_db *db, lsm_memtable *m, lsm_edit *e)
{
    uint64_t bytes = 0;

    if (lsm_mem_entries(m) == 0)
        return OM_OK;
    OM_TRY(lsm_db_write_level0(db, m, e, &bytes));
    atomic_fetch_add(&db->st_flush_bytes, bytes);
    return OM_OK;
}

static om_status
db_replay_log(lsm_db *db, uint64_t number, bool last, lsm_memtable **mem, lsm_edit *e,
              uint64_t *max_seq)
{
    char path[LSM_PATH_MAX];
    lsm_wal_reader *r;
    om_slice rec;
    uint64_t records = 0;
    om_status st;

    lsm_fname(path, sizeof(path), db->dir, LSM_FT_LOG, number);
    OM_TRY(lsm_wal_reader_open(db->env, path, &r));
    while ((st = lsm_wal_read(r, &rec)) == OM_OK) {
        uint64_t seq;
        uint32_t count;

        if (lsm_batch_validate(rec, &seq, &count) != OM_OK) {
            lsm_logf(&db->opts, OM_LOG_ERROR,
                     "corrupt write batch in log file=%s offset=%llu (record ending there)", path,
                     (unsigned long long)lsm_wal_reader_offset(r));
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
        OM_GOTO(lsm_batch_apply(rec, *mem));
        if (count > 0 && seq + count - 1 > *max_seq)
            *max_seq = seq + count - 1;
        records++;
        if (lsm_mem_usage(*mem) > db->opts.write_buffer_size) {
            OM_GOTO(db_recover_flush(db, *mem, e));
            lsm_mem_unref(*mem);
            *mem = NULL;
            OM_GOTO(lsm_mem_new_pooled(0, db->mem_pool, mem));
        }
    }
    if (st == OM_E_CORRUPT) {
        lsm_logf(&db->opts, OM_LOG_ERROR, "corrupt log file=%s offset=%llu", path,
                 (unsigned long long)lsm_wal_reader_offset(r));
        goto out;
    }
    if (st != OM_E_NOTFOUND)
        goto out;
    st = OM_OK;
    if (lsm_wal_reader_torn(r)) {
        uint64_t off = lsm_wal_reader_offset(r);

        if (!last) {
            lsm_logf(&db->opts, OM_LOG_ERROR,
                     "incomplete record in a log that is not the newest file=%s offset=%llu", path,
                     (unsigned long long)off);
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
        lsm_logf(&db->opts, OM_LOG_WARN, "truncating torn log tail file=%s offset=%llu", path,
                 (unsigned long long)off);
        OM_GOTO(db->env->ops->truncate(db->env, path, off));
    }
    lsm_logf(&db->opts, OM_LOG_INFO, "recovered log file=%s records=%llu", path,
             (unsigned long long)records);
out:
fail:
    lsm_wal_reader_close(r);
    return st;
}

/* Steps 3-6 of the recovery procedure. */
static om_status
db_recover_logs(lsm_db *db)
{
    char **names = NULL, path[LSM_PATH_MAX];
    size_t n = 0, nlogs = 0;
    uint64_t *logs = NULL, max_seq = db->vs->last_seq;
    lsm_memtable *mem = NULL;
    lsm_edit e;
    om_status st;
    lsm_version *v = db->vs->current;

    lsm_edit_init(&e);
    OM_GOTO(db->env->ops->list(db->env, db->dir, &names, &n));
    logs = calloc(n + 1, sizeof(*logs));
    if (logs == NULL)
        OM_GOTO(OM_ERR(OM_E_NOMEM));
    for (size_t i = 0; i < n; i++) {
        lsm_ftype type;
        uint64_t num;

        if (lsm_fname_parse(names[i], &type, &num) != OM_OK)
            continue;
        lsm_vset_mark_file_number_used(db->vs, num);
        if (type == LSM_FT_LOG && num >= db->vs->log_number)
            logs[nlogs++] = num;
    }
    /* Every table the version lists must be there. */
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        for (int j = 0; j < v->nfiles[l]; j++) {
            bool ok = false;

            lsm_fname(path, sizeof(path), db->dir, LSM_FT_SST, v->files[l][j]->number);
            OM_GOTO(db->env->ops->exists(db->env, path, &ok));
            if (!ok) {
                lsm_logf(&db->opts, OM_LOG_ERROR,
                         "table listed in the manifest is missing file=%s level=%d", path, l);
                OM_GOTO(OM_ERR(OM_E_CORRUPT));
            }
        }
    }
    qsort(logs, nlogs, sizeof(*logs), db_cmp_u64);
    OM_GOTO(lsm_mem_new_pooled(0, db->mem_pool, &mem));
    for (size_t i = 0; i < nlogs; i++)
        OM_GOTO(db_replay_log(db, logs[i], i + 1 == nlogs, &mem, &e, &max_seq));
    OM_GOTO(db_recover_flush(db, mem, &e));
    /* Step 5: the new log, then the new MANIFEST that points past the old logs. */
    db->wal_number = lsm_vset_new_file_number(db->vs);
    OM_GOTO(lsm_db_wal_open(db, db->wal_number, &db->wal));
    lsm_edit_set_log_number(&e, db->wal_number);
    lsm_edit_set_last_seq(&e, max_seq);
    OM_GOTO(lsm_vset_create_manifest(db->vs, &e));
    atomic_store(&db->last_seq, max_seq);
fail:
    lsm_mem_unref(mem);
    lsm_edit_fini(&e);
    free(logs);
    lsm_env_free_list(names, n);
    return st;
}

static void
db_free(lsm_db *db)
{
    lsm_sv_unref(db->sv);
    lsm_mem_unref(db->mem);
    for (int i = 0; i < db->nimm; i++)
        lsm_mem_unref(db->imm[i]);
    lsm_mem_pool_unref(db->mem_pool); /* the memory goes with the last memtable */
    lsm_vset_free(db->vs);
    lsm_table_cache_free(db->tc);
    lsm_cache_free(db->block_cache);
    if (db->locked)
        db->env->ops->unlock(db->env, db->lock_handle);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->sv_mu);
    pthread_mutex_destroy(&db->manifest_mu);
    pthread_cond_destroy(&db->bg_cv);
    pthread_cond_destroy(&db->flush_cv);
    pthread_cond_destroy(&db->compact_cv);
    pthread_cond_destroy(&db->sync_cv);
    free(db->dir);
    free(db->apply_scratch);
    free(db);
}

static om_status
db_start_threads(lsm_db *db)
{
    if (pthread_create(&db->flush_thread, NULL, lsm_db_flush_main, db) != 0)
        return OM_ERR(OM_E_NOMEM);
    db->have_flush_thread = true;
    if (db->opts.background_nice > 0) {
        /* Before either compaction thread runs: both read it under mu to split the work. */
        pthread_mutex_lock(&db->mu);
        db->have_urgent_thread = true;
        pthread_mutex_unlock(&db->mu);
        if (pthread_create(&db->urgent_thread, NULL, lsm_db_compact_urgent_main, db) != 0) {
            pthread_mutex_lock(&db->mu);
            db->have_urgent_thread = false;
            pthread_mutex_unlock(&db->mu);
            return OM_ERR(OM_E_NOMEM);
        }
    }
    if (pthread_create(&db->compact_thread, NULL, lsm_db_compact_main, db) != 0)
        return OM_ERR(OM_E_NOMEM);
    db->have_compact_thread = true;
    if (db->opts.memtable_prefault) {
        lsm_mem_pool_set_reserve(db->mem_pool, db_mem_reserve(db->opts.write_buffer_size));
        if (pthread_create(&db->prefault_thread, NULL, db_prefault_main, db) != 0)
            return OM_ERR(OM_E_NOMEM);
        db->have_prefault_thread = true;
    }
    if (db->opts.sync_mode == LSM_SYNC_PERIODIC) {
        if (pthread_create(&db->sync_thread, NULL, lsm_db_sync_main, db) != 0)
            return OM_ERR(OM_E_NOMEM);
        db->have_sync_thread = true;
    }
    return OM_OK;
}

static void
db_stop_threads(lsm_db *db)
{
    pthread_mutex_lock(&db->mu);
    db->shutting_down = true;
    atomic_store(&db->closing, true);
    pthread_cond_broadcast(&db->bg_cv);
    pthread_cond_broadcast(&db->flush_cv);
    pthread_cond_broadcast(&db->compact_cv);
    pthread_cond_broadcast(&db->sync_cv);
    pthread_mutex_unlock(&db->mu);
    if (db->have_prefault_thread) {
        lsm_mem_pool_filler_stop(db->mem_pool);
        pthread_join(db->prefault_thread, NULL);
    }
    if (db->have_flush_thread)
        pthread_join(db->flush_thread, NULL);
    if (db->have_compact_thread)
        pthread_join(db->compact_thread, NULL);
    if (db->have_urgent_thread)
        pthread_join(db->urgent_thread, NULL);
    if (db->have_sync_thread)
        pthread_join(db->sync_thread, NULL);
    db->have_flush_thread = db->have_compact_thread = db->have_sync_thread = false;
    db->have_prefault_thread = db->have_urgent_thread = false;
    /* lsm_compact_range* callers on other threads leave at once now (see there). */
    pthread_mutex_lock(&db->mu);
    while (db->manual_callers > 0)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    pthread_mutex_unlock(&db->mu);
}

om_status
lsm_open(const char *path, const lsm_opts *opts, lsm_db **out)
{
    lsm_db *db;
    lsm_opts defaults;
    char fpath[LSM_PATH_MAX];
    bool exists = false;
    om_status st;

    if (opts == NULL) {
        lsm_opts_init(&defaults);
        opts = &defaults;
    }
    if (path == NULL || *path == '\0' || strlen(path) > LSM_PATH_MAX - 64)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(db_check_opts(opts));
    db = calloc(1, sizeof(*db));
    if (db == NULL)
        return OM_ERR(OM_E_NOMEM);
    db->opts = *opts;
    db->env = opts->env != NULL ? opts->env : lsm_env_posix();
    db->opts.env = db->env;
    db->dir = strdup(path);
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->sv_mu, NULL);
    pthread_mutex_init(&db->manifest_mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    pthread_cond_init(&db->flush_cv, NULL);
    pthread_cond_init(&db->compact_cv, NULL);
    pthread_cond_init(&db->sync_cv, NULL);
    db->snap_list.next = db->snap_list.prev = &db->snap_list;
    if (db->dir == NULL)
        OM_GOTO(OM_ERR(OM_E_NOMEM));
    lsm_table_stats_init(&db->tstats);

    OM_GOTO(db->env->ops->exists(db->env, path, &exists));
    if (!exists && !opts->create_if_missing) {
        lsm_logf(&db->opts, OM_LOG_ERROR, "database does not exist dir=%s", path);
        OM_GOTO(OM_ERR(OM_E_INVALID));
    }
    OM_GOTO(db->env->ops->mkdir(db->env, path));
    lsm_fname(fpath, sizeof(fpath), path, LSM_FT_LOCK, 0);
    st = db->env->ops->lock(db->env, fpath, &db->lock_handle);
    if (st != OM_OK) {
        lsm_logf(&db->opts, OM_LOG_ERROR, "database is locked by another process dir=%s", path);
        OM_GOTO(OM_ERR(OM_E_INVALID));
    }
    db->locked = true;
    OM_GOTO(lsm_mem_pool_new(opts->write_buffer_size, DB_MEM_POOL_BUFFERS * opts->write_buffer_size,
                             &db->mem_pool));
    if (opts->block_cache_size > 0) {
        OM_GOTO(lsm_cache_new(opts->block_cache_size, 4, &db->block_cache));
        /* uniform reads over more data than fits: insert blocks on their second miss */
        OM_GOTO(lsm_cache_enable_admission(db->block_cache, opts->block_size + 64));
    }
    lsm_table_opts_init(&db->topts, &db->opts, db->block_cache, &db->tstats);
    db->topts.verify_on_open = opts->paranoid_checks;
    OM_GOTO(lsm_table_cache_new(db->env, path, &db->topts, opts->max_open_files, &db->tc));
    OM_GOTO(lsm_table_cache_enable_rows(db->tc, opts->row_cache_size));
    OM_GOTO(lsm_vset_new(db->env, path, &db->opts, db->tc, &db->mu, &db->vs));

    lsm_fname(fpath, sizeof(fpath), path, LSM_FT_CURRENT, 0);
    OM_GOTO(db->env->ops->exists(db->env, fpath, &exists));
    if (!exists) {
        if (!opts->create_if_missing) {
            lsm_logf(&db->opts, OM_LOG_ERROR, "database does not exist dir=%s", path);
            OM_GOTO(OM_ERR(OM_E_INVALID));
        }
        lsm_logf(&db->opts, OM_LOG_INFO, "creating database dir=%s", path);
    } else {
        if (opts->error_if_exists) {
            lsm_logf(&db->opts, OM_LOG_ERROR, "database exists dir=%s", path);
            OM_GOTO(OM_ERR(OM_E_INVALID));
        }
        OM_GOTO(lsm_vset_recover(db->vs));
    }
    OM_GOTO(db_recover_logs(db));
    lsm_db_delete_obsolete(db);
    OM_GOTO(lsm_mem_new_pooled(db->wal_number, db->mem_pool, &db->mem));
    db->mem_id = 1;
    db->flushed_id = 0;
    pthread_mutex_lock(&db->mu);
    st = lsm_db_install_sv(db);
    pthread_mutex_unlock(&db->mu);
    OM_GOTO(st);
    OM_GOTO(db_start_threads(db));
    *out = db;
    return OM_OK;
fail:
    db_stop_threads(db);
    lsm_wal_writer_close(db->wal, false);
    db_free(db);
    return st;
}

om_status
lsm_close(lsm_db *db)
{
    om_status st;

    if (db == NULL)
        return OM_OK;
    db_stop_threads(db);
    st = lsm_wal_writer_close(db->wal, db->opts.sync_mode != LSM_SYNC_NONE);
    if (st == OM_OK)
        st = db->bg_error;
    db_free(db);
    return st;
}

om_status
lsm_destroy(const char *path, const lsm_opts *opts)
{
    lsm_env *env = opts != NULL && opts->env != NULL ? opts->env : lsm_env_posix();
    char **names = NULL, fpath[LSM_PATH_MAX];
    size_t n = 0;
    int handle;
    bool exists = false;
    om_status st = OM_OK;

    OM_TRY(env->ops->exists(env, path, &exists));
    if (!exists)
        return OM_OK;
    lsm_fname(fpath, sizeof(fpath), path, LSM_FT_LOCK, 0);
    if (env->ops->lock(env, fpath, &handle) != OM_OK) {
        lsm_logf(opts, OM_LOG_ERROR, "cannot destroy a database in use dir=%s", path);
        return OM_ERR(OM_E_INVALID);
    }
    st = env->ops->list(env, path, &names, &n);
    for (size_t i = 0; st == OM_OK && i < n; i++) {
        lsm_ftype type;
        uint64_t num;

        if (lsm_fname_parse(names[i], &type, &num) != OM_OK || type == LSM_FT_LOCK)
            continue;
        snprintf(fpath, sizeof(fpath), "%s/%s", path, names[i]);
        st = env->ops->remove(env, fpath);
    }
    lsm_env_free_list(names, n);
    lsm_fname(fpath, sizeof(fpath), path, LSM_FT_LOCK, 0);
    env->ops->unlock(env, handle);
    if (st == OM_OK)
        st = env->ops->remove(env, fpath);
    if (st == OM_OK)
        st = env->ops->rmdir(env, path);
    return st;
}

/* ---- snapshots ---- */

om_status
lsm_snapshot_new(lsm_db *db, lsm_snapshot **out)
{
    lsm_snapshot *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return OM_ERR(OM_E_NOMEM);
    pthread_mutex_lock(&db->mu);
    s->seq = atomic_load(&db->last_seq);
    s->next = &db->snap_list;
    s->prev = db->snap_list.prev;
    s->prev->next = s;
    db->snap_list.prev = s;
    pthread_mutex_unlock(&db->mu);
    *out = s;
    return OM_OK;
}

void
lsm_snapshot_free(lsm_db *db, lsm_snapshot *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&db->mu);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    pthread_mutex_unlock(&db->mu);
    free(s);
}

/* ---- maintenance and statistics ---- */

om_status
lsm_compact_range(lsm_db *db, om_slice begin, om_slice end)
{
    return lsm_compact_range_rate(db, begin, end, 0);
}

/*
 * The caller counts itself in manual_callers so that lsm_close, which may run
 * meanwhile on another thread, frees the db only after it left; once the
 * compaction thread took a step (m.taken), the caller waits for it to end
 * even at close (m lives on this stack), which close makes quick (abandon).
 */
om_status
lsm_compact_range_rate(lsm_db *db, om_slice begin, om_slice end, uint64_t bytes_per_sec)
{
    db_manual m;
    om_status st = OM_OK;
    int max_level = 0;

    pthread_mutex_lock(&db->mu);
    db->manual_callers++;
    pthread_mutex_unlock(&db->mu);
    st = lsm_flush(db);
    pthread_mutex_lock(&db->mu);
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        if (db->sv->v->nfiles[l] > 0)
            max_level = l;
    atomic_store(&db->manual_done, 0);
    atomic_store(&db->manual_total, lsm_manual_estimate(db->vs->current, 0, max_level, 0));
    atomic_store(&db->manual_running, true);
    pthread_mutex_unlock(&db->mu);
    /*
     * Push everything down to the deepest level with data (at least L1), then
     * rewrite that level in place so the filter sees every value.
     */
    for (int level = 0; level <= max_level && st == OM_OK; level++) {
        memset(&m, 0, sizeof(m));
        m.level = level;
        m.in_place = level == max_level && level > 0;
        m.bytes_per_sec = bytes_per_sec;
        if (om_buf_set(&m.begin, begin) != OM_OK || om_buf_set(&m.end, end) != OM_OK) {
            st = OM_ERR(OM_E_NOMEM);
        } else {
            pthread_mutex_lock(&db->mu);
            while (db->manual != NULL && !db->shutting_down && db->bg_error == OM_OK)
                pthread_cond_wait(&db->bg_cv, &db->mu);
            if (db->shutting_down || db->bg_error != OM_OK) {
                st = db->bg_error != OM_OK ? db->bg_error : OM_ERR(OM_E_INVALID);
            } else if (atomic_load(&db->manual_stopped)) {
                st = OM_E_BUSY; /* lsm_compact_range_stop */
            } else {
                /* progress: what is done, plus this step and the ones below it, estimated from
                 * the tables as they are now (what the filter dropped is not read again) */
                m.done_base = atomic_load(&db->manual_done);
                atomic_store(&db->manual_total,
                             m.done_base +
                                 lsm_manual_estimate(db->vs->current, level, max_level, 0));
                db->manual = &m;
                pthread_cond_broadcast(&db->compact_cv);
                while (!m.done && (m.taken || (!db->shutting_down && db->bg_error == OM_OK)))
                    pthread_cond_wait(&db->bg_cv, &db->mu);
                if (db->manual == &m)
                    db->manual = NULL;
                st = m.done ? m.st : (db->bg_error != OM_OK ? db->bg_error : OM_E_INVALID);
                pthread_cond_broadcast(&db->bg_cv);
            }
            pthread_mutex_unlock(&db->mu);
        }
        om_buf_free(&m.begin);
        om_buf_free(&m.end);
    }
    pthread_mutex_lock(&db->mu);
    if (st == OM_OK) /* read through: the last estimate is what was read */
        atomic_store(&db->manual_total, atomic_load(&db->manual_done));
    atomic_store(&db->manual_running, false);
    db->manual_callers--;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    return st;
}

void
lsm_compact_range_progress(lsm_db *db, uint64_t *done, uint64_t *total, bool *running)
{
    uint64_t d = atomic_load(&db->manual_done), t = atomic_load(&db->manual_total);

    *running = atomic_load(&db->manual_running);
    *done = d;
    *total = t > d ? t : d; /* a step may read more than its estimate (writes meanwhile) */
}

uint64_t
lsm_compact_range_estimate(lsm_db *db)
{
    uint64_t est, unflushed;
    int max_level = 0;

    pthread_mutex_lock(&db->mu);
    /* memory used by memtables with entries: about the data they hold */
    unflushed = lsm_mem_entries(db->mem) > 0 ? lsm_mem_usage(db->mem) : 0;
    for (int i = 0; i < db->nimm; i++)
        unflushed += lsm_mem_entries(db->imm[i]) > 0 ? lsm_mem_usage(db->imm[i]) : 0;
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        if (db->vs->current->nfiles[l] > 0)
            max_level = l;
    est = lsm_manual_estimate(db->vs->current, 0, max_level, unflushed);
    pthread_mutex_unlock(&db->mu);
    return est;
}

void
lsm_stats_get(lsm_db *db, lsm_stats *out)
{
    uint64_t last, wal, user, fl, cw;
    lsm_sv *sv = lsm_db_sv_get(db, &last);
    lsm_table_counters tc;
    om_arena_pool_stats ps;

    memset(out, 0, sizeof(*out));
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        out->levels[l].files = (uint32_t)sv->v->nfiles[l];
        out->levels[l].bytes = lsm_version_level_bytes(sv->v, l);
        out->live_sst_bytes += out->levels[l].bytes;
    }
    out->pending_compaction_bytes = lsm_version_debt(sv->v, &db->opts);
    out->memtable_bytes = lsm_mem_usage(sv->mem);
    for (int i = 0; i < sv->nimm; i++)
        out->memtable_bytes += lsm_mem_usage(sv->imm[i]);
    lsm_sv_unref(sv);
    user = atomic_load(&db->st_user_bytes);
    wal = atomic_load(&db->st_wal_bytes);
    fl = atomic_load(&db->st_flush_bytes);
    cw = atomic_load(&db->st_comp_written);
    out->user_bytes_written = user;
    out->wal_bytes_written = wal;
    out->flush_bytes_written = fl;
    out->compaction_bytes_read = atomic_load(&db->st_comp_read);
    out->compaction_bytes_written = cw;
    out->write_amplification = user > 0 ? (double)(wal + fl + cw) / (double)user : 0.0;
    if (db->block_cache != NULL) {
        out->cache_hits = lsm_cache_hits(db->block_cache);
        out->cache_misses = lsm_cache_misses(db->block_cache);
    }
    if (out->cache_hits + out->cache_misses > 0)
        out->cache_hit_ratio =
            (double)out->cache_hits / (double)(out->cache_hits + out->cache_misses);
    lsm_table_stats_get(&db->tstats, &tc);
    out->bloom_checks = tc.bloom_checks;
    out->bloom_useful = tc.bloom_useful;
    out->stall_micros = atomic_load(&db->st_stall_us);
    out->wal_syncs = atomic_load(&db->st_wal_syncs);
    out->wal_synced_writes = atomic_load(&db->st_synced_writes);
    out->flushes = atomic_load(&db->st_flushes);
    out->compactions = atomic_load(&db->st_compactions);
    out->urgent_compactions = atomic_load(&db->st_urgent_compactions);
    out->last_sequence = last;
    out->row_cache_hits = lsm_table_cache_row_hits(db->tc);
    out->row_cache_misses = lsm_table_cache_row_misses(db->tc);
    out->row_cache_bytes = lsm_table_cache_row_bytes(db->tc);
    out->block_cache_bytes = db->block_cache != NULL ? lsm_cache_usage(db->block_cache) : 0;
    lsm_mem_pool_stats(db->mem_pool, &ps);
    out->mem_pool_reused = ps.reused;
    out->mem_pool_allocated = ps.allocated;
    out->mem_pool_bytes = ps.free_bytes;
}
