/*
 * lsm/lsm.h -- objmeta's embedded LSM storage engine (public API).
 *
 * An lsm_db is one directory holding a write-ahead log, sorted string tables
 * in levels, a MANIFEST of version edits and a CURRENT pointer. Keys and
 * values are arbitrary bytes, ordered bytewise (memcmp, shorter first). The
 * engine knows nothing of protobuf, sockets or objmeta's record format.
 *
 * Durability: with LSM_SYNC_ALWAYS (the default) a write returns OM_OK only
 * after its WAL record is fdatasync'ed; concurrent writers share one sync
 * (group commit). LSM_SYNC_PERIODIC syncs every sync_period_ms and may lose
 * the writes of that last period on power loss (not on a process crash).
 * LSM_SYNC_NONE leaves syncing to the OS (a WAL is still synced once when its
 * memtable is sealed, so only the newest log can have a torn tail).
 *
 * Byte layouts: lsm/FORMAT.md. Design (threads, locking order, recovery
 * procedure): lsm/README.md.
 *
 * Thread-safety: an lsm_db may be used from any number of threads at once;
 * iterators, batches and snapshots belong to one thread at a time.
 */
#ifndef OM_LSM_LSM_H
#define OM_LSM_LSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"
#include "util/slice.h"
#include "util/status.h"

typedef struct lsm_db lsm_db;
typedef struct lsm_batch lsm_batch;
typedef struct lsm_snapshot lsm_snapshot;
typedef struct lsm_iter lsm_iter;
typedef struct lsm_env lsm_env; /* file-system vtable, lsm/env.h; NULL = POSIX */

#define LSM_MAX_LEVELS 7
#define LSM_MAX_KEY_SIZE (64u * 1024u)
#define LSM_MAX_VALUE_SIZE (64u * 1024u * 1024u)

typedef enum lsm_sync_mode {
    LSM_SYNC_ALWAYS = 0, /* fdatasync before a write is acknowledged (group commit) */
    LSM_SYNC_PERIODIC,   /* fdatasync every sync_period_ms in the background */
    LSM_SYNC_NONE,       /* never sync explicitly (tests, bulk loads) */
} lsm_sync_mode;

typedef enum lsm_filter_decision {
    LSM_FILTER_KEEP = 0,
    LSM_FILTER_DROP, /* the entry (and older versions below it) disappears */
} lsm_filter_decision;

/*
 * A compaction filter is called for every live value a compaction writes
 * out (not for tombstones). It runs on a background thread and must be
 * thread-safe; dropping a key must not change the answer for keys it keeps.
 * Values a live snapshot can still read are not offered (they stay until the
 * snapshot is released and a later compaction reaches them); a snapshot taken
 * while a compaction runs may see a filtered key vanish. lsm_compact_range
 * offers every value in its range (see lsm/README.md, "Compaction").
 */
typedef lsm_filter_decision (*lsm_compaction_filter)(void *arg, int level, om_slice key,
                                                     om_slice value);

/* The engine logs through this (default: om_log with module "lsm"). */
typedef void (*lsm_log_fn)(void *arg, om_log_level level, const char *msg);

/*
 * Options. zstd_level: 1..22 or zstd's fast levels (negative, down to
 * -131072); 0 stores blocks raw. Compaction outputs use it as given; tables
 * written by memtable flushes use min(zstd_level, -3) when it is not 0,
 * since a flush's output is rewritten by the next compaction anyway.
 */
typedef struct lsm_opts {
    bool create_if_missing;        /* default true */
    bool error_if_exists;          /* default false */
    size_t write_buffer_size;      /* memtable size before a flush; default 64 MiB */
    int max_immutable_memtables;   /* waiting for flush before writes stall; default 2 */
    size_t block_size;             /* SSTable data block target; default 4 KiB */
    int block_restart_interval;    /* keys between restart points; default 16 */
    int bloom_bits_per_key;        /* 0 disables filters; default 10 (~1% FP) */
    size_t block_cache_size;       /* bytes of decompressed blocks; default 64 MiB (README) */
    int zstd_level;                /* 0 = no compression; default 1 (see above) */
    lsm_sync_mode sync_mode;       /* default LSM_SYNC_ALWAYS */
    uint32_t sync_period_ms;       /* LSM_SYNC_PERIODIC interval; default 100 */
    int l0_compaction_trigger;     /* L0 files that start a compaction; default 4 */
    int l0_slowdown_trigger;       /* L0 files that slow each write by 1 ms; default 20 */
    int l0_stop_trigger;           /* L0 files that stop writes until compaction; default 36 */
    int level_multiplier;          /* size ratio between levels; default 10 */
    uint64_t max_bytes_for_level1; /* default 256 MiB */
    uint64_t target_file_size;     /* SSTable size target from L1 down; default 64 MiB */
    int max_open_files;            /* table cache capacity; default 1000 */
    bool paranoid_checks;          /* verify every table on open; default false */
    lsm_compaction_filter compaction_filter; /* default NULL */
    void *compaction_filter_arg;
    lsm_log_fn log; /* default: om_log */
    void *log_arg;
    lsm_env *env; /* default NULL: the POSIX env */
    /*
     * lsm_close and a running automatic compaction: finish it when, from its
     * progress so far, it should end within this many milliseconds and
     * within the time it has run already; abandon it otherwise (its inputs
     * stay and the next open starts it again from the beginning). Default
     * 5000; 0 always abandons. Finishing keeps work the next open would redo.
     */
    uint32_t close_compaction_wait_ms;
    /*
     * When no write has arrived for this many milliseconds and L0 holds two
     * or more tables (fewer than l0_compaction_trigger), compact them into L1
     * so reads stop going through each of them. Default 1000; 0 disables.
     */
    uint32_t idle_l0_compaction_ms;
    /*
     * When no write has arrived for this many milliseconds, hand memory back:
     * the active memtable is flushed if it holds a quarter of
     * write_buffer_size or more, and the memtable pool frees its blocks
     * beyond the prefault reserve. A quiet database then holds neither a
     * large memtable nor the blocks of the last dead one (up to one write
     * buffer each), and a restart has little log to replay. Default 10000;
     * 0 disables.
     */
    uint32_t idle_flush_ms;
    /*
     * Row cache: bytes of entries that point lookups found in tables, keyed by
     * (table file number, user key). A repeated lsm_get of a key that lives
     * in a table then skips the index and data block search. Tables never
     * change, so entries need no invalidation; they age out by eviction. Default
     * 0 = off.
     */
    size_t row_cache_size;
    /*
     * Memtable memory comes from a pool that recycles the arena blocks of
     * flushed memtables (always on). With memtable_prefault, a background
     * thread also keeps min(write_buffer_size / 4, 16 MiB) of blocks in the
     * pool faulted in ahead of the writers, so that memtable inserts rarely
     * touch fresh pages (a page fault costs microseconds on some VMs, on the
     * writer's thread otherwise). Costs that much memory up front. Default true.
     */
    bool memtable_prefault;
    /*
     * With LSM_SYNC_ALWAYS, keep the WAL zero-filled this many bytes ahead of
     * its end (refilled when half is used), so that the fdatasync of each
     * group commit rewrites blocks the file already has instead of growing
     * it: on ext4 that skips a journal commit per sync and halves the sync
     * time (lsm/wal_format.h). Costs writing each WAL byte twice (once as a
     * zero) and up to this much unused space at the end of the newest log;
     * so it pauses while group commits average more than 48 KiB, where the
     * bytes cost more than the journal commits save. Default 1 MiB; 0 = off.
     * Ignored in the other sync modes.
     */
    size_t wal_preallocate;
    /*
     * The flush and compaction threads lower their CPU priority by this much
     * (a nice value, 0-19, set on each thread: Linux keeps one per thread).
     * On a machine with fewer cores than busy threads the writers, readers
     * and the caller's network threads then go first, and the background
     * work runs in what they leave. Compactions picked while the debt is
     * high (score >= 2: L0 at twice l0_compaction_trigger, or a level at
     * twice its target) run on a second compaction thread at the normal
     * priority, so a busy foreground cannot starve them for good. Default 0
     * = same priority (and no second thread).
     */
    int background_nice;
} lsm_opts;

/* Fill *o with the documented defaults. */
void lsm_opts_init(lsm_opts *o);

/*
 * lsm_opts_set_memory_budget -- size the engine's memory from one figure:
 * the memtables (write_buffer_size = 3/16 of the budget,
 * max_immutable_memtables = 2; blocks in use and recycled in the memtable
 * pool stay within three write buffers plus the prefault reserve of a
 * quarter of one, at most 39/64 of the budget, typically 6/16 under writes
 * and far less once idle_flush_ms has passed), the block cache (3/16) and
 * the row cache (1/16). The remaining ~9/64 is left for what is not
 * budgeted here: index and filter blocks of open tables (about 1.2 bytes
 * per key for 10-bit filters plus ~40 bytes per 4 KiB data block),
 * compaction and read buffers, and the caller's own (a server's
 * connections). Large write buffers are what keeps compaction cheap: an
 * L0->L1 compaction rewrites the L1 tables that the L0 tables overlap --
 * with uniform keys, all of L1 -- so its cost per byte written falls as L0
 * brings more at a time. Budgets under LSM_MIN_MEMORY_BUDGET are taken as
 * that minimum. Other options are left as they were; set any of the four
 * after this call to override its share.
 */
#define LSM_MIN_MEMORY_BUDGET (16u << 20)
void lsm_opts_set_memory_budget(lsm_opts *o, uint64_t budget);

/*
 * lsm_open -- open (or create) the database in directory `path`.
 *
 * Returns:   OM_OK; OM_E_INVALID (bad options, missing and !create_if_missing,
 *            present and error_if_exists, locked by another process);
 *            OM_E_CORRUPT (a checksum or format violation that is not a torn
 *            WAL tail; logged with file and offset); OM_E_IO.
 * Ownership: *out is closed with lsm_close(). opts is copied.
 */
om_status lsm_open(const char *path, const lsm_opts *opts, lsm_db **out);

/*
 * lsm_close -- wait for background work, sync the WAL, release everything.
 * A running compaction is abandoned, or finished when it is expected to end
 * within opts.close_compaction_wait_ms.
 * Returns the first error of the final sync (the handle is freed regardless).
 * Accepts NULL.
 */
om_status lsm_close(lsm_db *db);

/* lsm_destroy -- remove a closed database's files and directory. */
om_status lsm_destroy(const char *path, const lsm_opts *opts);

/*
 * lsm_put / lsm_del / lsm_write -- apply one change or a batch atomically.
 *
 * Returns:       OM_OK once durable per sync_mode; OM_E_INVALID for keys over
 *                LSM_MAX_KEY_SIZE or values over LSM_MAX_VALUE_SIZE; OM_E_IO
 *                (the database then refuses further writes: background error);
 *                writes stall (block) rather than fail when compaction lags.
 * Thread-safety: safe from many threads; concurrent writers share one WAL sync.
 */
om_status lsm_put(lsm_db *db, om_slice key, om_slice value);
om_status lsm_del(lsm_db *db, om_slice key);
om_status lsm_write(lsm_db *db, lsm_batch *batch);

/* Batches: an ordered list of puts and deletes applied atomically by lsm_write. */
om_status lsm_batch_new(lsm_batch **out);
void lsm_batch_free(lsm_batch *b);
om_status lsm_batch_put(lsm_batch *b, om_slice key, om_slice value);
om_status lsm_batch_del(lsm_batch *b, om_slice key);
void lsm_batch_clear(lsm_batch *b);
uint32_t lsm_batch_count(const lsm_batch *b);

/*
 * lsm_get -- the newest live value of key (at snap, or now if snap is NULL).
 *
 * Returns:   OM_OK and sets *value (replacing its contents); OM_E_NOTFOUND if
 *            absent or deleted; OM_E_CORRUPT if a block on the way fails its
 *            checksum; OM_E_IO.
 * Ownership: *value is the caller's buffer (om_buf_free when done).
 */
om_status lsm_get(lsm_db *db, const lsm_snapshot *snap, om_slice key, om_buf *value);

/*
 * lsm_get_ex -- lsm_get with flags (a bitwise OR of LSM_GET_* below; 0 makes
 * it exactly lsm_get). Returns and ownership as lsm_get.
 *
 * LSM_GET_NO_FILL: for a read whose row is about to be shadowed, such as the
 * read of a key's current value before writing it: the read neither looks
 * in nor adds to the row cache (opts.row_cache_size), so the row cache's
 * contents, usage and hit/miss counters stay as they were. The answer is the
 * same as lsm_get's. The block cache is used as by lsm_get (blocks read from
 * disk are still added to it).
 */
#define LSM_GET_NO_FILL 0x1u
/*
 * LSM_GET_HEAD: *value receives only the first LSM_GET_HEAD_BYTES bytes of
 * the value (all of it when shorter), for a caller that needs no more than a
 * value's leading fields (the shard's record header before a write); the
 * rest is neither copied nor brought into the CPU cache.
 */
#define LSM_GET_HEAD 0x2u
#define LSM_GET_HEAD_BYTES 64
om_status lsm_get_ex(lsm_db *db, const lsm_snapshot *snap, om_slice key, om_buf *value,
                     unsigned flags);

/*
 * lsm_prefetch -- a hint that keys[0..n) are about to be read with lsm_get /
 * lsm_get_ex: starts loading the active memtable's index entries for them
 * into the CPU cache (a writer reading a group of keys before writing them
 * calls it a few keys ahead). No effect on any result; cheap for small n.
 * Thread-safety: any thread.
 */
void lsm_prefetch(lsm_db *db, const om_slice *keys, size_t n);
/*
 * lsm_prefetch_values -- the second stage of lsm_prefetch, for keys given to
 * it a little earlier (a few gets before): starts loading the first bytes of
 * their newest memtable values, which a get copies. Same guarantees.
 */
void lsm_prefetch_values(lsm_db *db, const om_slice *keys, size_t n);

/*
 * lsm_prefetch_reads -- a deeper hint than lsm_prefetch for a batch of point
 * reads about to be made (a server with several requests in hand): it also
 * loads, at once, the values of the keys it finds in the active memtable,
 * looks for the others in the immutable memtables, and for those still not
 * found loads the bloom filter lines, row cache entries and rows of the
 * tables a get would consult (lsm/db_prefetch.c). It waits for memory a few
 * times per batch of up to 32 keys, so it pays when most of the keys are
 * then read. No effect on any result. Thread-safety: any thread.
 */
void lsm_prefetch_reads(lsm_db *db, const om_slice *keys, size_t n);

/*
 * lsm_may_contain -- a cheap check: false means key is certainly absent or
 * deleted; true means it may be present. Consults memtables and bloom
 * filters only (no data block reads).
 */
bool lsm_may_contain(lsm_db *db, om_slice key);

/* Snapshots: a consistent read view; release every snapshot you take. */
om_status lsm_snapshot_new(lsm_db *db, lsm_snapshot **out);
void lsm_snapshot_free(lsm_db *db, lsm_snapshot *snap);

typedef struct lsm_iter_opts {
    const lsm_snapshot *snapshot; /* NULL: a fresh implicit snapshot */
    om_slice lower;               /* inclusive lower bound; empty = none */
    om_slice upper;               /* exclusive upper bound; empty = none */
    bool fill_cache;              /* add blocks read to the block cache; default true */
} lsm_iter_opts;

void lsm_iter_opts_init(lsm_iter_opts *o);

/*
 * Iterators see live values only (tombstones hidden), in ascending key order,
 * within [lower, upper). They hold a consistent view (their snapshot) and pin
 * the files they read until freed.
 *
 * Ownership: the bounds in opts are copied. lsm_iter_key/value slices are
 *            valid until the next seek/next/free on the iterator.
 */
om_status lsm_iter_new(lsm_db *db, const lsm_iter_opts *opts, lsm_iter **out);
void lsm_iter_seek_first(lsm_iter *it);
void lsm_iter_seek(lsm_iter *it, om_slice key); /* first key >= key */
void lsm_iter_next(lsm_iter *it);
bool lsm_iter_valid(const lsm_iter *it);
om_slice lsm_iter_key(const lsm_iter *it);
om_slice lsm_iter_value(const lsm_iter *it);
/* OM_OK, or the error that made the iterator invalid early (e.g. OM_E_CORRUPT). */
om_status lsm_iter_status(const lsm_iter *it);
void lsm_iter_free(lsm_iter *it);

/* Make the current memtable an SSTable and wait until it is written. */
om_status lsm_flush(lsm_db *db);
/*
 * lsm_write_nosync -- lsm_write without waiting for the WAL sync, in every
 * sync mode: when it returns OM_OK the batch is written to the WAL file (not
 * synced) and applied to the memtable, and readers see it. It becomes durable
 * with the next lsm_sync called after it returned (or a synced lsm_write that
 * starts after it returned). A caller that acknowledges it must wait for that.
 * lsm_sync -- make durable every write (nosync or not) that returned before
 * this call; writes made while it runs are not covered (they may be). It does
 * not hold writers up: they go on, on other threads, while it syncs, so one
 * thread can write nosync groups while another syncs the previous one.
 * Returns:       as lsm_write; for lsm_sync OM_OK, the background error, or
 *                OM_E_IO (which becomes the background error: every later
 *                write and sync fails with it).
 * Thread-safety: both safe from many threads, concurrently with each other.
 */
om_status lsm_write_nosync(lsm_db *db, lsm_batch *batch);
om_status lsm_sync(lsm_db *db);
/*
 * Compact everything overlapping [begin, end] (empty slice = open end) down to
 * the bottom level, applying the compaction filter; waits until done.
 */
om_status lsm_compact_range(lsm_db *db, om_slice begin, om_slice end);
/*
 * lsm_compact_range_rate -- lsm_compact_range at most bytes_per_sec (0 =
 * unlimited): every entry read (kept or dropped) counts its key and value
 * bytes, so N bytes of entries take at least about N / bytes_per_sec seconds.
 * The compaction thread sleeps without the db mutex; while it runs, no
 * automatic compaction does, so the pace is dropped while L0 holds
 * l0_slowdown_trigger tables or more.
 * Returns:       as lsm_compact_range; OM_E_BUSY when lsm_close abandoned it.
 * Thread-safety: as lsm_compact_range; lsm_close may be called meanwhile from
 *                another thread: it wakes the pacing, abandons the compaction
 *                and returns promptly, once this call has returned.
 */
om_status lsm_compact_range_rate(lsm_db *db, om_slice begin, om_slice end, uint64_t bytes_per_sec);
/*
 * lsm_compact_range_stop -- for a shutdown that must not wait for a paced
 * compaction: the lsm_compact_range* calls in progress, and every later one,
 * return OM_E_BUSY soon (their compaction abandoned, nothing lost). Other
 * operations and automatic compactions go on. Irreversible until lsm_close.
 */
void lsm_compact_range_stop(lsm_db *db);
/*
 * lsm_compact_range_progress -- how far the lsm_compact_range* call in
 * progress has got, in table bytes read: *done of *total. A call compacts
 * level by level (each step reads a level's tables and the overlapping ones
 * of the next, the last one rewrites the deepest level in place), so the
 * total is the sum of the steps' inputs: estimated from the tables when the
 * call starts, and again from the tables at the start of each step -- so it
 * shrinks by what the compaction filter dropped, which the later steps do
 * not read again. Within a step, done advances with the entries read (their
 * share of the step's raw key and value bytes). When the call ends, done ==
 * total. *running false: no call runs; *done and *total are the last call's
 * (0 before any).
 * Thread-safety: any thread, concurrently with everything.
 */
void lsm_compact_range_progress(lsm_db *db, uint64_t *done, uint64_t *total, bool *running);
/*
 * lsm_compact_range_estimate -- the table bytes a full lsm_compact_range
 * (open begin and end) would read if it started now (the total above).
 * Thread-safety: any thread.
 */
uint64_t lsm_compact_range_estimate(lsm_db *db);

typedef struct lsm_level_stats {
    uint32_t files;
    uint64_t bytes;
} lsm_level_stats;

typedef struct lsm_stats {
    lsm_level_stats levels[LSM_MAX_LEVELS];
    uint64_t memtable_bytes; /* active + immutable */
    uint64_t live_sst_bytes; /* sum over levels */
    /*
     * Compaction debt: the bytes above their level's target (levels 1 and
     * down), plus all of L0's while it holds l0_compaction_trigger tables or
     * more -- what compaction must move down before every level scores below
     * 1 (the rewrite of the overlapping next-level tables not counted).
     */
    uint64_t pending_compaction_bytes;
    uint64_t user_bytes_written; /* key + value bytes accepted by writes */
    uint64_t wal_bytes_written;
    uint64_t flush_bytes_written;
    uint64_t compaction_bytes_read;
    uint64_t compaction_bytes_written;
    double write_amplification; /* (wal + flush + compaction writes) / user bytes */
    uint64_t cache_hits, cache_misses;
    double cache_hit_ratio;
    uint64_t bloom_checks, bloom_useful;   /* useful: a filter said "absent" */
    uint64_t stall_micros;                 /* time writers spent slowed or stopped */
    uint64_t wal_syncs, wal_synced_writes; /* group commit: writes per sync */
    uint64_t flushes, compactions;
    uint64_t urgent_compactions; /* run by the un-niced thread (background_nice, high debt) */
    uint64_t last_sequence;
    uint64_t row_cache_hits, row_cache_misses;   /* lsm_get table probes (0 when off) */
    uint64_t block_cache_bytes, row_cache_bytes; /* what the two caches hold now */
    /*
     * Memtable memory recycling: arena blocks a new memtable took from the
     * pool of dead memtables' blocks, blocks it had to get from malloc (the
     * pool was empty), and the bytes of free blocks the pool holds now (at
     * most one write_buffer_size).
     */
    uint64_t mem_pool_reused, mem_pool_allocated, mem_pool_bytes;
} lsm_stats;

/* Fill *out with a consistent-enough view of the counters. */
void lsm_stats_get(lsm_db *db, lsm_stats *out);

#endif /* OM_LSM_LSM_H */
