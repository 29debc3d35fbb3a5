/*
 * shard/shard_int.h -- the shard struct and what the files of shard/ share
 * about it (private to shard/).
 *
 * Who owns what:
 *   shard.c       the object operations: db, stripes, the write_many scratch
 *   commit.c      the durability pipeline (commit.h), behind `commit`
 *   handlers.c    protocol translation; List and worker reads go to `pool`
 *   fence.c       ring_check (the ring fence, fence.h)
 *   metrics.c     metrics (counters), Stats, /metrics
 *   lifecycle.c   open, attach, detach, close
 *   repl.c        a primary's replication, behind `repl` (its catch-up in
 *                 repl_catchup.c); replica.c a backup's, behind `replica`
 *                 (repl.h)
 *
 * Lock order (outermost first):
 *   1. stripes_gate: every stripe holder holds it shared; a group that
 *      would need more than SHARD_GROUP_MAX_STRIPES stripes holds it
 *      exclusive instead, and no stripe (shard_stripes_lock: one lock
 *      instead of up to 256, and ThreadSanitizer's deadlock detector
 *      tracks at most 64 locks held by one thread);
 *   2. key stripes (stripes[i]), several only in ascending index order
 *      (shard_write_group, migrate.c's ApplyRecords), taken through
 *      shard_stripe_lock, which checks the order;
 *   3. the engine's own locks (lsm_write, lsm_get under a stripe);
 *   wm_mu, the commit's mutexes, the pool's and repl.c's are leaves:
 *   nothing else is taken while one is held, and no stripe is held while
 *   one is taken; the group reads' mutex and the read helper's queue
 *   (wreads, shard.c) are leaves taken by a writer that holds its group's
 *   stripes -- the helper holds nothing while it reads, and the writer waits
 *   only for reads the helper has started. replica.c's mutex (a backup,
 *   where no client writes and so no stripe is taken) is held across its
 *   engine write: level 1.
 */
#ifndef OM_SHARD_SHARD_INT_H
#define OM_SHARD_SHARD_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "rpc/rpc.h"
#include "shard/commit.h"
#include "shard/record.h"
#include "shard/shard.h"
#include "util/assert.h"
#include "util/workq.h"

#define SHARD_STRIPES 256
#define SHARD_NSTATUS 12 /* wire Status values 0..11; others count as INTERNAL */

/* What metrics.c counts: answers by operation and wire status, latency by operation. */
typedef struct shard_metrics {
    _Atomic uint64_t answers[SHARD_OP_COUNT_][SHARD_NSTATUS];
    rpc_hist latency[SHARD_OP_COUNT_];
} shard_metrics;

/* The buffers of a shard_write_group call, kept between calls (shard.c). */
typedef struct shard_wm_scratch shard_wm_scratch;

struct shard {
    lsm_db *db;
    shard_opts opts;
    char *id; /* opts.id, copied */
    pthread_mutex_t stripes[SHARD_STRIPES];
    pthread_rwlock_t stripes_gate;  /* see "Lock order" above */
    shard_ring_check_fn ring_check; /* fence.c */
    void *ring_check_arg;
    shard_ring_check_fn move_fence; /* fence.c: keyed requests only */
    void *move_fence_arg;
    commit *commit;                /* Store and Delete (commit.h) */
    struct shard_repl *repl;       /* a primary's replication (repl.h), or NULL */
    struct shard_replica *replica; /* a backup's (repl.h), or NULL */
    workq *pool;                   /* List, and reads without inline_reads (handlers.c) */
    workq *verify_q;               /* Digest scans (verify.c), opened on first use */
    workq *wreads;                 /* helps read before a group's writes (shard.c), or NULL */

    /*
     * The record buffer of Retrieve/Head answered inline (inline_reads): one
     * thread, the one running shard_rpc_handler, uses it, one request at a
     * time; kept between requests so that a read allocates nothing for it.
     */
    om_buf read_buf;

    /* shard_write_group's spare buffers (NULL or one set), under wm_mu */
    pthread_mutex_t wm_mu;
    shard_wm_scratch *wm_spare;

    /* the first error of an engine write (an om_status; OM_OK = none), for /healthz */
    atomic_int engine_error;

    /* shard_set_reads_anywhere: read loops (loops.h) may serve Retrieve/Head/Exists */
    atomic_bool reads_anywhere;

    shard_metrics metrics;
};

/*
 * shard.c: shard_write_many, with nosync: lsm_write_nosync (the caller syncs
 * before answering: the commit pipeline).
 */
void shard_write_group(shard *s, shard_write *w, size_t n, bool nosync);

/*
 * shard.c: start the thread that helps shard_write_group read before a
 * group's writes (s->wreads; closed with workq_close once no group can be
 * written: after commit_close). Returns OM_OK; OM_E_NOMEM.
 */
om_status shard_wreads_open(shard *s);

/* shard_rpc_prefetch (shard.c) loads at most this many keys, of this many bytes in all. */
#define SHARD_PREFETCH_MAX 32
#define SHARD_PREFETCH_BYTES 4096

/* shard.c: the engine side of shard_open / shard_close (stripes, scratch, lsm). */
om_status shard_engine_open(shard *s, const char *dir);
om_status shard_engine_close(shard *s);

/*
 * The stripe of an LSM key, and taking several in order: *held is the
 * highest stripe the caller holds (-1 for none); a stripe at or below it
 * would break the lock order, which OM_ASSERT checks (debug builds).
 */
unsigned shard_stripe_of(om_slice lkey);

/*
 * shard_commit_barrier -- a no-op job at the tail of the commit pipeline:
 * fn(arg) runs on the loop when it is answered, i.e. once every write
 * submitted before it is written and durable (job.c). Loop thread.
 * Returns: OM_OK (fn will run); OM_E_NOMEM (it will not).
 */
om_status shard_commit_barrier(shard *s, void (*fn)(void *arg), void *arg);

/*
 * shard_commit_other -- a write job the caller carries out itself (job.c):
 * write(arg, nosync) runs on the pipeline's writer (after the Stores and
 * Deletes of its group; nosync as commit_ops.write), then answer(arg, group)
 * on the loop with the group its writes belong to (for commit_gate's
 * `after`). bytes: its size, for the pipeline's bounds. Loop thread.
 * Returns: OM_OK (both will run); OM_E_NOMEM (neither will).
 */
om_status shard_commit_other(shard *s, size_t bytes, void (*write)(void *arg, bool nosync),
                             void (*answer)(void *arg, uint64_t group), void *arg);

/*
 * shard_commit_term_mark -- shard_commit_barrier that first writes, on a
 * primary, one group commit of no record: only the replica state (term,
 * index + 1), shipped like any group. The etcd layer writes one per term as
 * soon as its primary serves, so every in-sync replica of a group that ever
 * had a primary holds a non-empty log and may campaign (REPLICATION.md,
 * "Failover"). Loop thread. Returns as shard_commit_barrier.
 */
om_status shard_commit_term_mark(shard *s, void (*fn)(void *arg), void *arg);

static inline void
shard_stripe_lock(shard *s, unsigned stripe, int *held)
{
    OM_ASSERT(stripe < SHARD_STRIPES && (int)stripe > *held); /* ascending only */
    pthread_mutex_lock(&s->stripes[stripe]);
    *held = (int)stripe;
}

/*
 * Lock (unlock) the stripes in the bit set `set` (SHARD_STRIPES bits) for a
 * group write, with the gate (lock order above): the gate shared and the
 * stripes in ascending order, or the gate exclusive and no stripe when there
 * are more than SHARD_GROUP_MAX_STRIPES of them. Pass the same set to both.
 * A single write takes the gate shared, then its stripe.
 */
#define SHARD_GROUP_MAX_STRIPES 32
void shard_stripes_lock(shard *s, const uint64_t *set);
void shard_stripes_unlock(shard *s, const uint64_t *set);

/*
 * The version rule (shard.h): a write to a key that holds a record (live or
 * tombstone) with version old must carry a higher one. Checked in every
 * build right before a record is encoded: a version going backwards would
 * let an older copy win a migration's comparison, silently.
 */
static inline void
shard_version_check(bool have_old, uint64_t old_version, uint64_t new_version)
{
    OM_ASSERT_ALWAYS(!have_old || new_version > old_version);
}

/* handlers.c: the commit pipeline's callbacks and the worker pool's job runner. */
void shard_commit_ops(shard *s, commit_ops *ops);
void shard_pool_run(void *arg, workq_item *it);
/* verify.c: answer a Digest request (from the loop thread; the scan runs on verify_q). */
void shard_verify_digest(shard *s, const Objmeta__DigestRequest *r, rpc_reply *reply);

#endif /* OM_SHARD_SHARD_INT_H */
