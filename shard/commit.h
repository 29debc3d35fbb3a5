/*
 * shard/commit.h -- the shard's durability pipeline: how a Store or Delete
 * becomes one write of a group commit, and how no reply leaves the shard
 * before the writes it could reveal are durable (private to shard/).
 *
 * The contract, in four calls:
 *
 *   commit_submit(c, job)     loop thread: a write job enters the pipeline;
 *                             the pipeline writes it in a group (ops.write)
 *                             and later answers it (ops.answer) on the loop
 *                             thread, then frees it.
 *   commit_gate(c, reply)     loop thread: send a reply now, or hold it until
 *                             the group it depends on is durable (a failed
 *                             sync turns it into an error).
 *   commit_wait(c, reply)     other threads (List, reads on the workers):
 *                             wait until every group started before is
 *                             durable (commit_wait_durable), then send -- or
 *                             send the error of a failed sync.
 *   commit_send(c, reply)     read loops (shard/loops.h), which must not
 *                             block: send now if that group is durable, else
 *                             queue the packed reply for the loop's gate.
 *
 * Two modes, chosen by commit_attach:
 *
 *   pipeline   a loop is attached and the engine syncs every write
 *              (LSM_SYNC_ALWAYS): the loop hands each iteration's writes to
 *              the "shard-writer" thread (or writes a small iteration itself
 *              while the writer is idle), which writes each group without
 *              syncing and asks the "shard-sync" thread to sync it; replies
 *              wait in the gate for the sync that covers them. The loop never
 *              blocks on an fsync.
 *   sync       otherwise (sync-mode periodic or none, or no loop: tests and
 *              library users): the writes of one loop iteration (or, without
 *              a loop, each write at once) are one engine write that syncs as
 *              the engine's sync mode says, answered right after it; the gate
 *              always sends at once.
 *
 * Groups are numbered 1, 2, ... in the order they are written. Three counters
 * order them: started (counted before a group is written), written (the last
 * group completely written) and durable (the last group a sync covered).
 * Invariant, checked: durable <= written <= started, each only grows, and
 * held replies and written jobs are released in group order.
 *
 * Replication plugs in at one place: the sync thread's step that turns a
 * written group into a durable one (commit.c, "the group becomes durable").
 * Waiting there for the backups' acknowledgement, before `durable` advances,
 * keeps every other rule above as it is: the gate opens only for groups that
 * are both synced and replicated. (The shipping itself may start earlier,
 * when the group is written, so that the backups' fsyncs run while this
 * one's does: shard/repl.c.)
 *
 * Lock order: commit's two mutexes (the writer queue's and the durability
 * state's) are never held together, and neither is held while ops.write or
 * ops.answer run or while the engine syncs; ops.write takes the shard's key
 * stripes (shard.c) with no commit lock held.
 *
 * Thread-safety: as stated per call; "loop thread" is the thread that runs
 * the event_base given to commit_attach -- it claims the pipeline with its
 * first call, and a call of another thread fails an OM_ASSERT (debug and
 * sanitizer builds) -- or, with no loop attached, the one thread that serves
 * requests.
 */
#ifndef OM_SHARD_COMMIT_H
#define OM_SHARD_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "rpc/rpc.h"
#include "util/status.h"

typedef struct commit commit;

/* Most jobs, and bytes of them (commit_job.bytes), in one group. */
#define COMMIT_GROUP_MAX 2048
#define COMMIT_GROUP_BYTES (1u << 20)

/*
 * A write job as the pipeline sees it: the first member of the caller's job,
 * allocated with commit_job_alloc. `group` is set by the pipeline before
 * ops.answer runs (0 in sync mode).
 */
typedef struct commit_job {
    struct commit_job *next;
    uint64_t group;
    size_t bytes; /* the job's size, for the group and queue bounds */
    bool in_fifo; /* memory of the loop's recycled chunks (commit.c) */
} commit_job;

typedef struct commit_ops {
    /*
     * Write jobs[0..n) (n <= COMMIT_GROUP_MAX) as one engine write, without a
     * WAL sync when nosync, and keep each job's result in the job. scratch:
     * write_scratch bytes the caller's thread keeps between groups, or NULL.
     * Runs on the writer thread or the loop thread.
     */
    void (*write)(void *arg, commit_job **jobs, size_t n, bool nosync, void *scratch);
    /* Answer a written job through commit_gate with its group. Loop thread. */
    void (*answer)(void *arg, commit_job *j);
    /* Count a reply as it leaves (tag and t0_ns of commit_reply; status: the wire status). */
    void (*sent)(void *arg, unsigned tag, unsigned status, uint64_t t0_ns, uint64_t now_ns);
    void *arg;
    size_t write_scratch; /* bytes of scratch for a full group */
} commit_ops;

/*
 * Replication (shard/repl.h): mark runs right before each sync of the
 * groups, ship(mark) right after it succeeds and waits for the backups (who
 * may have had the groups since they were written); the groups become
 * durable only if ship returns OM_OK (its error fails them like a failed
 * sync). Both run on the sync thread (or commit_detach's) with no commit lock
 * held.
 */
typedef struct commit_repl {
    uint64_t (*mark)(void *arg);
    om_status (*ship)(void *arg, uint64_t mark);
    void *arg;
} commit_repl;

/*
 * commit_set_replication -- as above; before commit_attach, or on the loop
 * thread while no write is in the pipeline (a backup promoted: it took no
 * client writes; the writer and sync threads see it through the queues'
 * mutexes, which every later group passes).
 */
void commit_set_replication(commit *c, const commit_repl *r);

/*
 * commit_set_lease -- a primary's lease (shard/REPLICATION.md, "Lease
 * reads"): every reply that leaves at or after until_ns (monotonic clock;
 * the gate, the held replies, commit_wait) is replaced by UNAVAILABLE --
 * checked when it leaves, so a process paused with replies in hand does not
 * send them when it wakes. UINT64_MAX (the default): no lease; 0: nothing
 * leaves. Any thread.
 */
void commit_set_lease(commit *c, uint64_t until_ns);

/* commit_reply.after: every group started so far (a read, an error, a Ping). */
#define COMMIT_AFTER_ALL 0
/* commit_reply.after: no group (it shows no data: a Ping asked `now`); sent at once. */
#define COMMIT_AFTER_NONE UINT64_MAX

typedef struct commit_reply {
    rpc_reply *reply;
    const Objmeta__Response *resp; /* id 0; copied (packed) if held */
    unsigned tag;                  /* the caller's (the operation), given back to ops.sent */
    uint64_t t0_ns;
    uint64_t after; /* the group the reply depends on, or COMMIT_AFTER_ALL */
} commit_reply;

/*
 * commit_open -- a pipeline in sync mode over db (no loop yet).
 * Returns: OM_OK and *out; OM_E_NOMEM. Close with commit_close.
 * Thread-safety: the thread that will serve requests.
 */
om_status commit_open(lsm_db *db, const commit_ops *ops, commit **out);

/*
 * commit_attach -- serve writes on the loop of `base` (the calling thread,
 * before it serves): the pipeline with LSM_SYNC_ALWAYS (starts the writer and
 * sync threads), else sync mode batched per loop iteration.
 * Returns: OM_OK; OM_E_NOMEM; OM_E_IO (no eventfd).
 */
om_status commit_attach(commit *c, struct event_base *base, lsm_sync_mode mode);

/*
 * commit_detach -- write and answer everything submitted, join the threads,
 * sync, release every held reply (or fail it), free the events; back in sync
 * mode without a loop. The loop must not be running: the calling thread
 * takes its place. No effect without a loop.
 */
void commit_detach(commit *c);

/* commit_close -- detach and free. Accepts NULL. */
void commit_close(commit *c);

/*
 * commit_job_alloc -- memory for a write job of n bytes (n >= sizeof(commit_job)),
 * zeroed up to sizeof(commit_job): recycled chunks on the loop thread with a
 * loop attached, else malloc. NULL if out of memory. The pipeline frees it
 * after ops.answer; a job never submitted goes back with commit_job_discard.
 */
commit_job *commit_job_alloc(commit *c, size_t n);
void commit_job_discard(commit *c, commit_job *j);

/* commit_submit -- see above. Loop thread. */
void commit_submit(commit *c, commit_job *j);

/* commit_gate -- see above. Loop thread. */
void commit_gate(commit *c, const commit_reply *r);

/* commit_wait -- see above. Any thread but the loop. */
void commit_wait(commit *c, const commit_reply *r);

/*
 * commit_send -- commit_gate for the other loop threads of the shard (its
 * read loops, shard/loops.h), which must not block: a reply whose group is
 * already durable leaves at once from the calling thread; another is packed
 * and queued for the loop thread, which holds and releases it with its own
 * (held in order, it may wait for a later group than it asked for, never an
 * earlier one). Any thread but the loop; every such thread stops before
 * commit_detach.
 */
void commit_send(commit *c, const commit_reply *r);

/*
 * commit_wait_durable -- wait until every group started so far is durable.
 * Returns: OM_OK; the error of the sync that failed. Any thread but the loop.
 */
om_status commit_wait_durable(commit *c);

/* The first failed WAL sync (OM_OK: none), for /healthz. Any thread. */
om_status commit_error(commit *c);

/* Times the loop waited for room in the writer's queue (Stats, /metrics). Any thread. */
uint64_t commit_queue_waits(commit *c);

/*
 * commit_render_metrics -- append the pipeline's Prometheus metrics to out:
 * groups written and the Stores and Deletes in them (their ratio is the group
 * size), the time each group took to write (its sum, as a rate, is how busy
 * the writer is) and each WAL sync's. Returns: OM_OK; OM_E_NOMEM. Any thread.
 */
om_status commit_render_metrics(commit *c, om_buf *out);

#endif /* OM_SHARD_COMMIT_H */
