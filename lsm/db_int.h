/*
 * lsm/db_int.h -- the lsm_db structure shared by db.c, db_read.c, db_write.c,
 * db_iter.c and compaction.c (private to lsm/).
 *
 * Threads. User threads call the API. Three background threads per db:
 * the flush thread writes immutable memtables to L0 tables; the compaction
 * thread runs leveled compactions (and manual ones for lsm_compact_range);
 * the sync thread (LSM_SYNC_PERIODIC only) forces a WAL sync every
 * sync_period_ms by queueing an empty, sync-only write. A fourth thread
 * keeps a reserve of page-faulted-in arena blocks in the memtable pool
 * (db.c, db_prefault_main), so that the writers' memtable inserts do not
 * fault fresh memory in.
 *
 * Locks, in the order they may be taken:
 *   1. manifest_mu -- one version edit at a time (flush and compaction).
 *   2. mu          -- the db mutex: writer queue, memtable pointers, the
 *                     read view (sv), snapshots, background state, and
 *                     vset->current. Held only briefly; never across I/O
 *                     except creating the next WAL at a memtable switch.
 *   3. sv_mu       -- guards the pair (sv pointer, last_seq) for readers, who
 *                     take only this lock; writers change either with mu
 *                     held and sv_mu taken inside it, so readers never
 *                     queue behind the writer queue's work under mu.
 *   4. leaf locks inside the table cache, block cache, env and the memtable
 *      block pool (util/arena.c; taken when a memtable dies, even under mu).
 *
 * The read view. `sv` bundles the active memtable, the immutables and the
 * current version with one atomic refcount. It is replaced (under mu and
 * sv_mu) at every memtable switch, flush and compaction install. A reader
 * takes sv_mu, references sv and reads last_seq, and drops sv_mu: everything with a
 * sequence <= that last_seq is reachable from that sv, so the pair is a
 * consistent view. Readers never wait for I/O of others.
 *
 * The write path (db_write.c): writers queue on mu; the writer at the head
 * is the leader and owns the WAL writer and the active memtable's insert
 * side until it hands over. See db_write.c for the group commit.
 */
#ifndef OM_LSM_DB_INT_H
#define OM_LSM_DB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lsm/cache.h"
#include "lsm/env.h"
#include "lsm/lsm_int.h"
#include "lsm/manifest.h"
#include "lsm/memtable.h"
#include "lsm/sstable.h"
#include "lsm/table_cache.h"
#include "lsm/wal_format.h"

/* Bytewise order of user key a and the user key of internal key ik (inline: hot in gets). */
static inline int
lsm_db_ucmp(om_slice a, const om_buf *ik)
{
    size_t bn = ik->n - LSM_TRAILER_SIZE, n = a.n < bn ? a.n : bn;
    int r = n > 0 ? memcmp(a.p, ik->p, n) : 0;

    return r != 0 ? r : (a.n < bn ? -1 : (a.n > bn ? 1 : 0));
}

/* Does table f's key range cover user key `key`? */
static inline bool
lsm_db_file_covers(const lsm_file_meta *f, om_slice key)
{
    return lsm_db_ucmp(key, &f->smallest) >= 0 && lsm_db_ucmp(key, &f->largest) <= 0;
}

#define LSM_MAX_IMM 64
/* zstd's fast levels go down to -131072 (ZSTD_minCLevel); lsm_open accepts this range. */
#define LSM_ZSTD_MIN_LEVEL (-131072)
/* The zstd level of memtable flushes when the configured level is higher (db_write.c). */
#define LSM_FLUSH_ZSTD_LEVEL (-3)
#define LSM_GC_TRACK 16 /* writer threads a leader may wait for */

/* The read view: memtables plus version, refcounted as one. */
typedef struct lsm_sv {
    atomic_int refs;
    lsm_memtable *mem;
    int nimm;
    lsm_memtable *imm[LSM_MAX_IMM]; /* oldest first */
    lsm_version *v;
} lsm_sv;

struct lsm_snapshot {
    uint64_t seq;
    struct lsm_snapshot *prev, *next;
};

typedef struct db_writer db_writer;

typedef struct db_manual {
    int level;
    bool in_place;     /* rewrite the level itself (the deepest one with data) */
    om_buf begin, end; /* user keys; empty = open */
    bool done;
    bool taken;             /* the compaction thread runs it: it will set done (under mu) */
    uint64_t bytes_per_sec; /* pace (compaction.c, comp_pace); 0 = unlimited */
    uint64_t done_base;     /* manual_done when this step started (progress) */
    om_status st;
} db_manual;

struct lsm_db {
    char *dir;
    lsm_opts opts;
    lsm_env *env;
    int lock_handle;
    bool locked;

    lsm_mem_pool *mem_pool; /* memtable memory, recycled between memtables (memtable.h) */
    lsm_cache *block_cache;
    lsm_table_stats tstats;
    lsm_table_opts topts;
    lsm_table_cache *tc;
    lsm_vset *vs;

    pthread_mutex_t manifest_mu;
    pthread_mutex_t mu;
    pthread_mutex_t sv_mu; /* sv and last_seq for readers (see above) */
    pthread_cond_t bg_cv;  /* background progress: flush/compaction done, errors */

    /* Under mu. */
    lsm_memtable *mem;
    lsm_memtable *imm[LSM_MAX_IMM];
    int nimm;
    uint64_t mem_id;       /* id of the active memtable (ids increase at each switch) */
    uint64_t imm_first_id; /* id of imm[0] */
    uint64_t flushed_id;   /* every memtable with id <= this is in a table */
    lsm_wal_writer *wal;   /* touched only by the leader (or under mu at a switch) */
    uint64_t wal_number;
    lsm_sv *sv;
    db_writer *wq_head, *wq_tail;
    lsm_snapshot snap_list; /* sentinel of a circular list, oldest first */
    om_status bg_error;
    bool shutting_down;
    bool flush_running;
    /* The compactions running: [0] the niced (or only) thread's, [1] the urgent thread's. */
    struct lsm_compaction *running[2];
    db_manual *manual;
    int manual_callers;         /* threads inside lsm_compact_range*: lsm_close waits for them */
    atomic_bool manual_stopped; /* lsm_compact_range_stop was called (compaction.c) */
    /* lsm_compact_range_progress: written by the caller of lsm_compact_range* (total, running)
     * and by the compaction thread (done, as entries are read) */
    _Atomic uint64_t manual_done, manual_total;
    atomic_bool manual_running;
    pthread_cond_t flush_cv, compact_cv, sync_cv;
    uint64_t unsynced_writes;
    /*
     * Group commit pacing (under mu, see db_write.c): the writer threads of
     * the last synced group, when it finished, and the mean sync time.
     */
    uintptr_t gc_last_tids[LSM_GC_TRACK];
    int gc_last_n;
    uint64_t gc_done_ns, gc_sync_ns;
    bool gc_waiting; /* the leader waits for writers: enqueuers wake it */
    /* The leader's buffer for sorting a group's ops (lsm_batch_apply_sorted). */
    void *apply_scratch;
    size_t apply_cap;

    atomic_uint_fast64_t last_seq; /* published with release under mu */
    atomic_bool closing;           /* shutting_down, readable without mu */

    pthread_t flush_thread, compact_thread, sync_thread, prefault_thread, urgent_thread;
    bool have_flush_thread, have_compact_thread, have_sync_thread, have_prefault_thread;
    bool have_urgent_thread; /* the un-niced compaction thread (background_nice > 0) */

    /* Statistics (relaxed atomics). */
    atomic_uint_fast64_t st_user_bytes, st_wal_bytes, st_flush_bytes, st_comp_read, st_comp_written,
        st_stall_us, st_wal_syncs, st_synced_writes, st_flushes, st_compactions,
        st_urgent_compactions;
};

/* ---- db.c ---- */

/* Build a new read view from the db state. Requires: mu held. */
om_status lsm_db_install_sv(lsm_db *db);
/* Lower the calling (background) thread's priority by opts.background_nice. */
void lsm_db_background_priority(lsm_db *db);
/*
 * How long writes have stopped, as one background thread sees it (the
 * compaction thread's idle L0 rule, the flush thread's idle flush): the last
 * sequence it saw and since when. lsm_db_idle_moved looks at last_seq at
 * `now` and restarts the period if it moved (returns whether it did).
 * Requires: the owning thread only.
 */
typedef struct lsm_db_idle {
    uint64_t seq;      /* last_seq when last looked at */
    uint64_t since_ns; /* when last_seq last changed (as far as seen) */
} lsm_db_idle;
bool lsm_db_idle_moved(lsm_db *db, lsm_db_idle *idle, uint64_t now);
/* Create log `number` in db's directory, preallocated per the options. */
om_status lsm_db_wal_open(lsm_db *db, uint64_t number, lsm_wal_writer **out);
/* Reference the read view and read last_seq consistently. */
lsm_sv *lsm_db_sv_get(lsm_db *db, uint64_t *last_seq);
void lsm_sv_unref(lsm_sv *sv);
/* Record a background error (first one wins) and wake everyone. Requires: mu held. */
void lsm_db_set_bg_error(lsm_db *db, om_status st);
/* Oldest sequence a live snapshot can see (last_seq if none). Requires: mu held. */
uint64_t lsm_db_oldest_snapshot(lsm_db *db);
/*
 * At open, before background threads run: remove logs below the log number,
 * old MANIFESTs, CURRENT.tmp and tables the current version does not list.
 */
void lsm_db_delete_obsolete(lsm_db *db);

/* ---- db_write.c ---- */

/* Switch memtables if needed, stalling while flushes/compactions lag. Requires: mu held. */
om_status lsm_db_make_room(lsm_db *db, bool force);
/* Thread bodies. */
void *lsm_db_flush_main(void *arg);
void *lsm_db_sync_main(void *arg);
/* Flush one memtable to an L0 table; fills e. number is the new file's. */
om_status lsm_db_write_level0(lsm_db *db, lsm_memtable *m, lsm_edit *e, uint64_t *bytes);

/* ---- compaction.c ---- */

struct lsm_compaction;
/*
 * lsm_compaction_do -- run c (trivially or not) and install the result; m:
 * the manual compaction it is a step of (pace, progress), or NULL.
 * Requires: mu not held.
 */
om_status lsm_compaction_do(lsm_db *db, struct lsm_compaction *c, uint64_t smallest,
                            uint64_t newest, const db_manual *m);

/* ---- compaction_thread.c ---- */

void *lsm_db_compact_main(void *arg);
/* The compaction thread for high debt (score >= LSM_COMPACT_URGENT_SCORE), at normal priority. */
void *lsm_db_compact_urgent_main(void *arg);
#define LSM_COMPACT_URGENT_SCORE 2.0

/* ---- db_iter.c ---- */

/*
 * An internal iterator over a whole sv (memtables, L0 tables, level
 * iterators), merged. Requires: sv stays referenced until the iterator is freed.
 */
om_status lsm_db_internal_iter(lsm_db *db, lsm_sv *sv, bool fill_cache, lsm_it **out);
/*
 * An iterator over sorted, disjoint files (a level >= 1 or part of one),
 * opening each table lazily. Requires: files outlive the iterator.
 */
om_status lsm_level_iter_new(lsm_table_cache *tc, lsm_file_meta *const *files, int n,
                             bool fill_cache, lsm_it **out);

/*
 * lsm_manual_estimate -- table bytes the steps from level `from` to max_level
 * of a manual compaction of everything would read, from v's level sizes
 * (compaction.c explains the model), with `unflushed` bytes of memtables
 * that its flush would add to L0 (from 0 only). Requires: v pinned (mu
 * held, or a ref).
 */
uint64_t lsm_manual_estimate(const lsm_version *v, int from, int max_level, uint64_t unflushed);

#endif /* OM_LSM_DB_INT_H */
