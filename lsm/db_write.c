/*
 * lsm/db_write.c -- the write path: group commit, memtable switches, write
 * stalls, the flush thread and the periodic sync thread.
 *
 * Group commit. Every writer puts a db_writer on the queue (under mu) and
 * waits until it is either done or at the head. The head is the leader: it
 * makes room (possibly switching memtables or stalling), takes a group of
 * queued writers behind it, assigns their sequence numbers, and drops mu.
 * Without the lock it frames every batch of the group into the WAL, writes
 * them with one append, fdatasyncs once if any member asked for it (all do
 * in LSM_SYNC_ALWAYS), and inserts the batches into the memtable, sorted by
 * key (lsm_batch_apply_sorted): it is the
 * only memtable writer because only the head of the queue writes. It then
 * takes mu, publishes the new last sequence (readers see the whole group at
 * once), marks the group done, wakes the followers and the next head. Only
 * the head assigns and publishes sequences, so last_seq never goes
 * backwards (checked where it is published).
 *
 * lsm_write_nosync writes the same way without asking for the sync (in any
 * mode), and lsm_sync does not queue: it notes the current log under mu,
 * fdatasyncs it without any lock (lsm_wal_sync_written) while the leaders
 * go on appending, and reports the result. Every write that returned before
 * lsm_sync was called is in that log's page cache or in an older log, which
 * the memtable switch synced before it existed; so the sync covers exactly
 * what it must. A switch waits until no such sync uses the log it closes.
 *
 * A failed WAL append or sync leaves the log in an unknown state: the error
 * becomes the db's background error, the group's writers get it, and every
 * later write is refused with it. Nothing of the failed group is applied.
 *
 * Stalls. Before writing, the leader slows down by 1 ms when L0 has
 * l0_slowdown_trigger files or more (once per write), and waits when the
 * memtable is full and max_immutable_memtables are still unflushed, or
 * when L0 has l0_stop_trigger files. Time spent is counted in stall_micros.
 */
#define OM_LOG_MODULE "lsm"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>

#include "lsm/batch.h"
#include "lsm/db_int.h"
#include "lsm/filename.h"
#include "util/assert.h"
#include "util/clock.h"

/* A group holds at most this many bytes of batches (more only for one big batch). */
#define DB_MAX_GROUP_BYTES (1u << 20)
/* Batches sorted together into the memtable. */
#define DB_APPLY_CHUNK 32

struct db_writer {
    lsm_batch *batch; /* NULL: sync or switch request only */
    uintptr_t tid;    /* the writing thread (db_thread_tag's address) */
    bool sync;
    bool force_switch;
    bool done;
    om_status st;
    pthread_cond_t cv;
    db_writer *next;
};

/* Longest a leader waits for the writers of the previous group (-D to experiment). */
#ifndef DB_GC_MAX_WAIT_NS
#define DB_GC_MAX_WAIT_NS (200u * 1000u)
#endif

/* Its address tells writer threads apart. */
static _Thread_local char db_thread_tag;

/* Writers of the last synced group that are not queued now. Requires: mu held. */
static int
db_gc_missing(const lsm_db *db)
{
    int missing = 0;

    for (int i = 0; i < db->gc_last_n; i++) {
        const db_writer *x = db->wq_head;

        while (x != NULL && x->tid != db->gc_last_tids[i])
            x = x->next;
        missing += x == NULL;
    }
    return missing;
}

/*
 * Group commit pacing. While one group syncs, the writers arriving queue up
 * and become the next group, which syncs as soon as the first one is done;
 * the first group's writers come back a moment later and wait a whole sync
 * for the group after that. With n busy writer threads the groups settle at
 * about n/2 writers. So before a sync the leader waits, briefly, for the
 * threads of the previous group that are not queued yet: at most a quarter
 * of the mean sync time and at most DB_GC_MAX_WAIT_NS, and only when that
 * group has just finished (its threads are still coming back). A lone
 * writer never waits: its own thread is the previous group.
 * Requires: mu held, w is the queue head.
 */
static void
db_gc_pace(lsm_db *db, db_writer *w)
{
    uint64_t now, wait, deadline;
    bool sync = false;

    for (const db_writer *x = w; x != NULL && !sync; x = x->next)
        sync = x->sync;
    if (!sync || db->gc_last_n == 0)
        return;
    wait = db->gc_sync_ns / 4;
    if (wait > DB_GC_MAX_WAIT_NS)
        wait = DB_GC_MAX_WAIT_NS;
    now = om_clock_mono_ns();
    if (now - db->gc_done_ns > wait || db_gc_missing(db) == 0)
        return;
    deadline = now + wait;
    db->gc_waiting = true;
    do {
        om_clock_cond_wait_ns(&w->cv, &db->mu, deadline - now);
        now = om_clock_mono_ns();
    } while (now < deadline && db_gc_missing(db) > 0 && db->bg_error == OM_OK);
    db->gc_waiting = false;
}

/* Remember the threads of a group that just synced, and the sync time. Requires: mu held. */
static void
db_gc_note(lsm_db *db, const db_writer *first, const db_writer *last, uint64_t sync_ns)
{
    int n = 0;

    for (const db_writer *x = first; n < LSM_GC_TRACK; x = x->next) {
        bool dup = false;

        for (int i = 0; i < n && !dup; i++)
            dup = db->gc_last_tids[i] == x->tid;
        if (!dup)
            db->gc_last_tids[n++] = x->tid;
        if (x == last)
            break;
    }
    db->gc_last_n = n;
    db->gc_done_ns = om_clock_mono_ns();
    /* Mean sync time: an exponential average over about 8 syncs. */
    db->gc_sync_ns =
        db->gc_sync_ns == 0 ? sync_ns : db->gc_sync_ns - db->gc_sync_ns / 8 + sync_ns / 8;
}

static void
db_stall_add(lsm_db *db, uint64_t t0_ns)
{
    atomic_fetch_add(&db->st_stall_us, (om_clock_mono_ns() - t0_ns) / 1000);
}

bool
lsm_db_idle_moved(lsm_db *db, lsm_db_idle *idle, uint64_t now)
{
    uint64_t seq = atomic_load_explicit(&db->last_seq, memory_order_acquire);

    if (seq == idle->seq)
        return false;
    idle->seq = seq;
    idle->since_ns = now;
    return true;
}

void
lsm_db_background_priority(lsm_db *db)
{
    /* Linux: PRIO_PROCESS with 0 means the calling thread, not the whole process. */
    if (db->opts.background_nice > 0 && setpriority(PRIO_PROCESS, 0, db->opts.background_nice) != 0)
        lsm_logf(&db->opts, OM_LOG_WARN, "could not lower background thread priority: %s",
                 strerror(errno));
}

om_status
lsm_db_wal_open(lsm_db *db, uint64_t number, lsm_wal_writer **out)
{
    char path[LSM_PATH_MAX];

    lsm_fname(path, sizeof(path), db->dir, LSM_FT_LOG, number);
    OM_TRY(lsm_wal_writer_open(db->env, path, out));
    if (db->opts.sync_mode == LSM_SYNC_ALWAYS)
        lsm_wal_writer_preallocate(*out, db->opts.wal_preallocate);
    return OM_OK;
}

/* Requires: mu held, the caller is the queue head. */
static om_status
db_switch_memtable(lsm_db *db)
{
    char path[LSM_PATH_MAX];
    uint64_t number = lsm_vset_new_file_number(db->vs);
    lsm_wal_writer *w = NULL;
    lsm_memtable *m = NULL;
    om_status st;

    /* An lsm_sync may be using the old log (without mu): let it finish. */
    while (lsm_wal_syncers(db->wal, 0) > 0)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    /*
     * The old log is synced first, even in the relaxed modes, before the
     * next log exists: a torn tail can then only ever be in the newest log,
     * which recovery relies on.
     */
    st = lsm_wal_sync(db->wal);
    if (st != OM_OK) {
        lsm_db_set_bg_error(db, st);
        return st;
    }
    OM_TRY(lsm_db_wal_open(db, number, &w));
    st = lsm_mem_new_pooled(number, db->mem_pool, &m);
    if (st != OM_OK) {
        lsm_wal_writer_close(w, false);
        lsm_fname(path, sizeof(path), db->dir, LSM_FT_LOG, number);
        db->env->ops->remove(db->env, path);
        return st;
    }
    st = lsm_wal_writer_close(db->wal, false);
    db->wal = w;
    db->wal_number = number;
    db->imm[db->nimm++] = db->mem;
    db->mem = m;
    db->mem_id++;
    if (st != OM_OK) {
        lsm_db_set_bg_error(db, st);
    } else {
        st = lsm_db_install_sv(db);
        if (st != OM_OK)
            lsm_db_set_bg_error(db, st);
    }
    pthread_cond_signal(&db->flush_cv);
    return st;
}

om_status
lsm_db_make_room(lsm_db *db, bool force)
{
    bool allow_delay = !force;

    for (;;) {
        int nl0 = db->vs->current->nfiles[0];
        uint64_t t0;

        if (db->bg_error != OM_OK)
            return db->bg_error;
        if (db->shutting_down)
            return OM_ERR(OM_E_INVALID);
        if (allow_delay && nl0 >= db->opts.l0_slowdown_trigger) {
            t0 = om_clock_mono_ns();
            pthread_mutex_unlock(&db->mu);
            om_clock_sleep_ms(1);
            pthread_mutex_lock(&db->mu);
            db_stall_add(db, t0);
            allow_delay = false;
            continue;
        }
        if (!force && lsm_mem_usage(db->mem) <= db->opts.write_buffer_size)
            return OM_OK;
        if (db->nimm >= db->opts.max_immutable_memtables || nl0 >= db->opts.l0_stop_trigger) {
            t0 = om_clock_mono_ns();
            pthread_cond_signal(&db->flush_cv);
            pthread_cond_broadcast(&db->compact_cv);
            pthread_cond_wait(&db->bg_cv, &db->mu);
            db_stall_add(db, t0);
            continue;
        }
        OM_TRY(db_switch_memtable(db));
        force = false;
    }
}

static om_status
db_write(lsm_db *db, lsm_batch *batch, bool sync, bool force_switch)
{
    db_writer w = {.batch = batch,
                   .tid = (uintptr_t)&db_thread_tag,
                   .sync = sync,
                   .force_switch = force_switch};
    db_writer *last, *x;
    lsm_wal_writer *wal;
    lsm_memtable *mem;
    uint64_t seq, wal_before, user_bytes = 0, sync_ns = 0;
    size_t group_bytes = 0, max_bytes = DB_MAX_GROUP_BYTES;
    bool need_sync = false;
    int nbatches = 0;
    om_status st;

    pthread_cond_init(&w.cv, NULL);
    pthread_mutex_lock(&db->mu);
    if (db->wq_tail != NULL)
        db->wq_tail->next = &w;
    else
        db->wq_head = &w;
    db->wq_tail = &w;
    if (db->gc_waiting && db->wq_head != &w)
        pthread_cond_signal(&db->wq_head->cv);
    while (!w.done && db->wq_head != &w)
        pthread_cond_wait(&w.cv, &db->mu);
    if (w.done) {
        pthread_mutex_unlock(&db->mu);
        pthread_cond_destroy(&w.cv);
        return w.st;
    }
    /* We lead. */
    st = lsm_db_make_room(db, force_switch && lsm_mem_entries(db->mem) > 0);
    last = &w;
    if (st == OM_OK)
        db_gc_pace(db, &w);
    if (st == OM_OK) {
        if (batch != NULL && batch->rep.n <= 128u * 1024)
            max_bytes = batch->rep.n + 128u * 1024; /* keep small writes fast */
        for (x = &w; x != NULL; x = x->next) {
            if (x != &w && x->force_switch)
                break; /* it must make room itself */
            if (x->batch != NULL) {
                if (x != &w && group_bytes + x->batch->rep.n > max_bytes)
                    break;
                group_bytes += x->batch->rep.n;
            }
            last = x;
        }
        seq = atomic_load(&db->last_seq);
        for (x = &w;; x = x->next) {
            need_sync |= x->sync;
            if (x->batch != NULL && lsm_batch_count(x->batch) > 0) {
                lsm_batch_set_seq(x->batch, seq + 1);
                seq += lsm_batch_count(x->batch);
                user_bytes += x->batch->bytes;
                nbatches++;
            }
            if (x == last)
                break;
        }
        wal = db->wal;
        mem = db->mem;
        pthread_mutex_unlock(&db->mu);

        /* The memtable's hash buckets load while the log is written. */
        for (x = &w;; x = x->next) {
            if (x->batch != NULL && lsm_batch_count(x->batch) > 0)
                lsm_batch_prefetch(lsm_batch_rep(x->batch), mem);
            if (x == last)
                break;
        }
        wal_before = lsm_wal_size(wal);
        for (x = &w; st == OM_OK; x = x->next) {
            if (x->batch != NULL && lsm_batch_count(x->batch) > 0)
                st = lsm_wal_add(wal, lsm_batch_rep(x->batch));
            if (x == last)
                break;
        }
        if (st == OM_OK && need_sync) {
            sync_ns = om_clock_mono_ns();
            st = lsm_wal_sync(wal);
            sync_ns = om_clock_mono_ns() - sync_ns;
        } else if (st == OM_OK) {
            st = lsm_wal_flush(wal);
        }
        if (st == OM_OK && need_sync) {
            atomic_fetch_add(&db->st_wal_syncs, 1);
            atomic_fetch_add(&db->st_synced_writes, (uint64_t)nbatches);
        }
        /*
         * Into the memtable in key order, up to DB_APPLY_CHUNK batches at a
         * time (any order gives the same memtable: see lsm_batch_apply_sorted).
         */
        for (x = &w; st == OM_OK;) {
            om_slice reps[DB_APPLY_CHUNK];
            int nr = 0;
            bool end = false;

            /*
             * Never step past `last`: its next pointer belongs to the queue,
             * which other writers extend under mu while we run without it.
             */
            while (nr < DB_APPLY_CHUNK && !end) {
                if (x->batch != NULL && lsm_batch_count(x->batch) > 0)
                    reps[nr++] = lsm_batch_rep(x->batch);
                end = x == last;
                if (!end)
                    x = x->next;
            }
            if (nr > 0)
                st = lsm_batch_apply_sorted(reps, nr, mem, &db->apply_scratch, &db->apply_cap);
            if (end)
                break;
        }
        atomic_fetch_add(&db->st_wal_bytes, lsm_wal_size(wal) - wal_before);

        pthread_mutex_lock(&db->mu);
        if (st != OM_OK) {
            lsm_logf(&db->opts, OM_LOG_ERROR, "write to log failed log=%llu status=%s",
                     (unsigned long long)db->wal_number, om_status_str(st));
            lsm_db_set_bg_error(db, st);
        } else {
            pthread_mutex_lock(&db->sv_mu);
            OM_ASSERT(seq >= atomic_load_explicit(&db->last_seq, memory_order_relaxed));
            atomic_store_explicit(&db->last_seq, seq, memory_order_release);
            pthread_mutex_unlock(&db->sv_mu);
            atomic_fetch_add(&db->st_user_bytes, user_bytes);
            if (need_sync) {
                db->unsynced_writes = 0;
                db_gc_note(db, &w, last, sync_ns);
            } else
                db->unsynced_writes += (uint64_t)nbatches;
        }
    }
    /* Hand results to the group and leadership to the next writer. */
    for (;;) {
        x = db->wq_head;
        db->wq_head = x->next;
        if (db->wq_head == NULL)
            db->wq_tail = NULL;
        if (x != &w) {
            x->st = st;
            x->done = true;
            pthread_cond_signal(&x->cv);
        }
        if (x == last)
            break;
    }
    if (db->wq_head != NULL)
        pthread_cond_signal(&db->wq_head->cv);
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    return st;
}

om_status
lsm_write(lsm_db *db, lsm_batch *batch)
{
    if (batch == NULL)
        return OM_ERR(OM_E_INVALID);
    if (lsm_batch_count(batch) == 0)
        return OM_OK;
    return db_write(db, batch, db->opts.sync_mode == LSM_SYNC_ALWAYS, false);
}

static om_status
db_write_one(lsm_db *db, lsm_vtype type, om_slice key, om_slice value)
{
    uint8_t stack[1024];
    lsm_batch b = {.rep = OM_BUF_INIT, .bytes = 0};
    uint8_t hdr[LSM_BATCH_HEADER] = {0};
    size_t need = LSM_BATCH_HEADER + 16 + key.n + value.n;
    om_status st;

    /*
     * A small op is encoded on the stack: the batch never grows past `need`
     * (tag, two varints, key, value), and om_buf only reallocates when an
     * append goes past cap - 1, so the stack memory is never handed to realloc.
     */
    if (key.n <= sizeof(stack) && value.n <= sizeof(stack) && need < sizeof(stack)) {
        b.rep.p = stack;
        b.rep.cap = sizeof(stack);
    } else {
        OM_TRY(om_buf_reserve(&b.rep, need));
    }
    om_buf_append(&b.rep, hdr, sizeof(hdr)); /* cannot fail: room is reserved */
    st = type == LSM_TYPE_VAL ? lsm_batch_put(&b, key, value) : lsm_batch_del(&b, key);
    if (st == OM_OK)
        st = lsm_write(db, &b);
    if (b.rep.p != stack)
        om_buf_free(&b.rep);
    return st;
}

om_status
lsm_put(lsm_db *db, om_slice key, om_slice value)
{
    return db_write_one(db, LSM_TYPE_VAL, key, value);
}

om_status
lsm_del(lsm_db *db, om_slice key)
{
    return db_write_one(db, LSM_TYPE_DEL, key, OM_SLICE_NULL);
}

om_status
lsm_write_nosync(lsm_db *db, lsm_batch *batch)
{
    if (batch == NULL)
        return OM_ERR(OM_E_INVALID);
    if (lsm_batch_count(batch) == 0)
        return OM_OK;
    return db_write(db, batch, false, false);
}

om_status
lsm_sync(lsm_db *db)
{
    lsm_wal_writer *wal;
    uint64_t writes;
    om_status st;

    pthread_mutex_lock(&db->mu);
    st = db->bg_error != OM_OK ? db->bg_error : db->shutting_down ? OM_ERR(OM_E_INVALID) : OM_OK;
    if (st != OM_OK) {
        pthread_mutex_unlock(&db->mu);
        return st;
    }
    wal = db->wal;
    lsm_wal_syncers(wal, 1);
    writes = db->unsynced_writes; /* covered now; later writes count again */
    db->unsynced_writes = 0;
    pthread_mutex_unlock(&db->mu);

    st = lsm_wal_sync_written(wal); /* leaders keep appending meanwhile */

    pthread_mutex_lock(&db->mu);
    lsm_wal_syncers(wal, -1);
    if (st != OM_OK) {
        lsm_logf(&db->opts, OM_LOG_ERROR, "sync of log failed log=%llu status=%s",
                 (unsigned long long)db->wal_number, om_status_str(st));
        lsm_db_set_bg_error(db, st);
    } else {
        atomic_fetch_add(&db->st_wal_syncs, 1);
        atomic_fetch_add(&db->st_synced_writes, writes);
    }
    pthread_cond_broadcast(&db->bg_cv); /* a memtable switch may wait for this log */
    pthread_mutex_unlock(&db->mu);
    return st;
}

om_status
lsm_flush(lsm_db *db)
{
    uint64_t target;
    om_status st = db_write(db, NULL, false, true);

    if (st != OM_OK)
        return st;
    pthread_mutex_lock(&db->mu);
    target = db->mem_id - 1;
    while (db->flushed_id < target && db->bg_error == OM_OK && !db->shutting_down)
        pthread_cond_wait(&db->bg_cv, &db->mu);
    st = db->flushed_id >= target ? OM_OK : db->bg_error != OM_OK ? db->bg_error : OM_E_INVALID;
    pthread_mutex_unlock(&db->mu);
    return st;
}

/* ---- flush ---- */

/*
 * Flushed tables are compressed with zstd's fast level LSM_FLUSH_ZSTD_LEVEL
 * when the configured level is higher: their data is rewritten by the next
 * compaction (at the configured level) anyway, and the flush is what holds
 * writers back when it lags. On this engine's values the fast level keeps the
 * ratio within about 1% at two to four times the speed.
 */
static int
db_flush_zstd_level(int configured)
{
    return configured > LSM_FLUSH_ZSTD_LEVEL ? LSM_FLUSH_ZSTD_LEVEL : configured;
}

om_status
lsm_db_write_level0(lsm_db *db, lsm_memtable *m, lsm_edit *e, uint64_t *bytes)
{
    char path[LSM_PATH_MAX];
    uint64_t number = lsm_vset_new_file_number(db->vs);
    lsm_table_opts topts = db->topts;
    lsm_sst_writer *w = NULL;
    lsm_sst_props props;
    lsm_it *it = NULL;
    om_status st;

    memset(&props, 0, sizeof(props));
    lsm_sst_path(path, sizeof(path), db->dir, number);
    if (topts.zstd_level != 0)
        topts.zstd_level = db_flush_zstd_level(topts.zstd_level);
    OM_TRY(lsm_sst_writer_open(db->env, path, &topts, &w));
    st = lsm_mem_iter(m, &it);
    if (st != OM_OK) {
        lsm_sst_writer_abandon(w);
        return st;
    }
    for (lsm_it_seek_first(it); st == OM_OK && lsm_it_valid(it); lsm_it_next(it))
        st = lsm_sst_writer_add(w, lsm_it_key(it), lsm_it_value(it));
    if (st == OM_OK)
        st = lsm_it_status(it);
    lsm_it_free(it);
    if (st != OM_OK || lsm_sst_writer_entries(w) == 0) {
        lsm_sst_writer_abandon(w);
        *bytes = 0;
        return st;
    }
    OM_TRY(lsm_sst_writer_finish(w, &props));
    st = lsm_edit_add_file(e, 0, number, props.file_size, om_buf_slice(&props.smallest),
                           om_buf_slice(&props.largest));
    *bytes = props.file_size;
    lsm_sst_props_fini(&props);
    if (st != OM_OK)
        db->env->ops->remove(db->env, path);
    else
        lsm_logf(&db->opts, OM_LOG_DEBUG, "flushed memtable table=%llu bytes=%llu",
                 (unsigned long long)number, (unsigned long long)*bytes);
    return st;
}

typedef struct flush_install {
    lsm_db *db;
    uint64_t id;
    uint64_t bytes; /* the table's */
} flush_install;

/* Called by log_and_apply with mu held, right after the new version is current. */
static void
db_flush_installed(void *arg)
{
    flush_install *fi = arg;
    lsm_db *db = fi->db;
    lsm_memtable *m = db->imm[0];

    memmove(db->imm, db->imm + 1, sizeof(db->imm[0]) * (size_t)(db->nimm - 1));
    db->nimm--;
    db->imm[db->nimm] = NULL;
    db->flushed_id = fi->id;
    /* Counted here, with flushed_id: a caller that lsm_flush released sees its flush counted. */
    atomic_fetch_add(&db->st_flushes, 1);
    atomic_fetch_add(&db->st_flush_bytes, fi->bytes);
    if (lsm_db_install_sv(db) != OM_OK)
        lsm_db_set_bg_error(db, OM_E_NOMEM);
    lsm_mem_unref(m);
}

/*
 * Idle flush (opts.idle_flush_ms). The flush thread watches last_seq: once
 * it has not moved for idle_flush_ms, the thread switches a memtable that
 * holds a quarter of write_buffer_size or more (then flushes it as any
 * other) and, with no immutable memtable left, trims the memtable pool to
 * its reserve -- once per idle period. It switches only as the head of the
 * write queue and only when the queue is empty and a slot is free, so it
 * never waits for room: a stall waits for this very thread. The quarter
 * keeps a trickle of writes from making tiny tables: a small memtable costs
 * little memory.
 */
typedef struct db_idle {
    lsm_db_idle t;
    bool done; /* this idle period's work is done */
} db_idle;

/*
 * Switch the memtable as the write queue's head; returns whether it did.
 * Requires: mu held, queue empty, nimm < max.
 */
static bool
db_idle_switch(lsm_db *db)
{
    db_writer w = {.force_switch = true};
    size_t bytes = lsm_mem_usage(db->mem);
    om_status st;

    OM_ASSERT(db->wq_head == NULL && db->nimm < db->opts.max_immutable_memtables);
    pthread_cond_init(&w.cv, NULL);
    db->wq_head = db->wq_tail = &w; /* writers that come meanwhile queue behind it */
    st = db_switch_memtable(db);
    OM_ASSERT(db->wq_head == &w);
    db->wq_head = w.next;
    if (db->wq_head == NULL)
        db->wq_tail = NULL;
    else
        pthread_cond_signal(&db->wq_head->cv);
    pthread_cond_destroy(&w.cv);
    if (st == OM_OK)
        lsm_logf(&db->opts, OM_LOG_INFO, "idle for %u ms: flushing the memtable (%zu bytes)",
                 db->opts.idle_flush_ms, bytes);
    else /* a failed log or memtable: writers meet it themselves; nothing is lost */
        lsm_logf(&db->opts, OM_LOG_WARN, "idle flush: memtable switch failed status=%s",
                 om_status_str(st));
    return st == OM_OK;
}

/*
 * With no immutable memtable: wait for one, or until the idle rule is due,
 * and apply it. Requires: mu held (released while waiting or trimming).
 */
static void
db_flush_idle_wait(lsm_db *db, db_idle *idle)
{
    uint64_t now = om_clock_mono_ns(), period = (uint64_t)db->opts.idle_flush_ms * 1000000u;

    if (db->opts.idle_flush_ms == 0 || db->bg_error != OM_OK) {
        pthread_cond_wait(&db->flush_cv, &db->mu);
        return;
    }
    if (lsm_db_idle_moved(db, &idle->t, now))
        idle->done = false;
    if (idle->done || now - idle->t.since_ns < period) {
        /* Writes move last_seq without waking this thread: look again a period on at most. */
        om_clock_cond_wait_ns(&db->flush_cv, &db->mu,
                              idle->done ? period : idle->t.since_ns + period - now);
        return;
    }
    if (lsm_mem_usage(db->mem) >= db->opts.write_buffer_size / 4 && lsm_mem_entries(db->mem) > 0) {
        if (db->wq_head == NULL && db->nimm < db->opts.max_immutable_memtables &&
            db_idle_switch(db))
            return; /* the flush runs, then (still idle, the memtable empty) the trim */
        /* A writer is at work after all, or the switch failed: try a period later. */
        idle->t.since_ns = om_clock_mono_ns();
        return;
    }
    idle->done = true;
    pthread_mutex_unlock(&db->mu);
    lsm_mem_pool_trim(db->mem_pool);
    pthread_mutex_lock(&db->mu);
}

void *
lsm_db_flush_main(void *arg)
{
    lsm_db *db = arg;
    db_idle idle = {{0, 0}, false};

    pthread_setname_np(pthread_self(), "lsm-flush"); /* for top -H and perf */
    lsm_db_background_priority(db);

    pthread_mutex_lock(&db->mu);
    idle.t.seq = atomic_load(&db->last_seq);
    idle.t.since_ns = om_clock_mono_ns();
    while (!db->shutting_down) {
        lsm_memtable *m;
        uint64_t next_log, last, id, bytes = 0, log;
        flush_install fi;
        lsm_edit e;
        om_status st;

        if (db->nimm == 0 || db->bg_error != OM_OK) {
            db_flush_idle_wait(db, &idle);
            continue;
        }
        m = db->imm[0];
        lsm_mem_ref(m);
        next_log = db->nimm > 1 ? lsm_mem_log_number(db->imm[1]) : db->wal_number;
        id = db->mem_id - (uint64_t)db->nimm;
        last = atomic_load(&db->last_seq);
        db->flush_running = true;
        pthread_mutex_unlock(&db->mu);

        lsm_edit_init(&e);
        st = lsm_db_write_level0(db, m, &e, &bytes);
        if (st == OM_OK) {
            lsm_edit_set_log_number(&e, next_log);
            lsm_edit_set_last_seq(&e, last);
            fi.db = db;
            fi.id = id;
            fi.bytes = bytes;
            pthread_mutex_lock(&db->manifest_mu);
            st = lsm_vset_log_and_apply(db->vs, &e, db_flush_installed, &fi);
            pthread_mutex_unlock(&db->manifest_mu);
            /*
             * On failure the table stays: the edit may have reached the disk
             * before the error (a failed sync), so the next open decides; if
             * no MANIFEST lists the table it is removed then.
             */
        }
        lsm_edit_fini(&e);
        log = lsm_mem_log_number(m);
        lsm_mem_unref(m);
        if (st == OM_OK && log != 0) {
            char path[LSM_PATH_MAX];

            lsm_fname(path, sizeof(path), db->dir, LSM_FT_LOG, log);
            db->env->ops->remove(db->env, path);
        }
        pthread_mutex_lock(&db->mu);
        db->flush_running = false;
        if (st == OM_OK) {
            pthread_cond_broadcast(&db->compact_cv);
        } else {
            lsm_logf(&db->opts, OM_LOG_ERROR, "memtable flush failed status=%s", om_status_str(st));
            lsm_db_set_bg_error(db, st);
        }
        pthread_cond_broadcast(&db->bg_cv);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* ---- periodic sync ---- */

void *
lsm_db_sync_main(void *arg)
{
    lsm_db *db = arg;

    pthread_setname_np(pthread_self(), "lsm-sync");

    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        om_clock_cond_wait_ns(&db->sync_cv, &db->mu, (uint64_t)db->opts.sync_period_ms * 1000000u);
        if (db->shutting_down)
            break;
        if (db->unsynced_writes > 0 && db->bg_error == OM_OK) {
            pthread_mutex_unlock(&db->mu);
            lsm_sync(db); /* a failure becomes the background error */
            pthread_mutex_lock(&db->mu);
        }
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}
