/*
 * shard/shard_int.h -- the shard struct, shared by shard.c (object operations)
 * and handlers.c (protocol, worker pool, metrics). Private to shard/.
 *
 * Locking order: stripes_gate, then key stripes (stripes[i]), which may be
 * held while the engine takes its own locks; nothing else is held with a
 * stripe. Every stripe holder holds the gate shared; only shard_write_many
 * and migrate.c's ApplyRecords hold several stripes at once, through
 * shard_stripes_lock, in ascending index order -- or, for a group that
 * would need more than SHARD_GROUP_MAX_STRIPES of them, the gate exclusive
 * and no stripe (one lock instead of up to 256, and ThreadSanitizer's
 * deadlock detector tracks at most 64 locks held by one thread).
 */
#ifndef OM_SHARD_SHARD_INT_H
#define OM_SHARD_SHARD_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "rpc/rpc.h"
#include "shard/record.h"
#include "shard/shard.h"

#define SHARD_STRIPES 256
#define SHARD_GROUP_MAX_STRIPES 32
#define SHARD_NSTATUS 10 /* wire Status values 0..9; others count as INTERNAL */

/* The buffers of a shard_write_many call, kept between calls (shard.c). */
typedef struct shard_wm_scratch shard_wm_scratch;

/* One request waiting for a worker (handlers.c). */
typedef struct shard_job shard_job;

/* A reply of the loop thread held until a WAL sync covers it (handlers.c). */
typedef struct shard_held shard_held;

/*
 * shard_fifo -- recycled memory for objects that die roughly in the order
 * they were made (shard.c): the loop thread's Store/Delete jobs (released
 * after the write group that runs them) and held replies (released after
 * the sync that covers them). Allocations are carved from 64 KiB chunks,
 * oldest chunk first; a chunk whose allocations are all released is reused
 * in place (the newest) or kept as a spare (up to SHARD_FIFO_SPARES of them:
 * fresh pages cost page faults); an allocation larger than a chunk gets a
 * chunk of its own, freed when it is released. Releases may come in any
 * order; a chunk lives until its last allocation is released.
 * Ownership: memory from shard_fifo_alloc is valid until shard_fifo_release
 * (or shard_fifo_fini, which frees everything, released or not).
 * Thread-safety: one thread (the loop thread of the shard).
 */
#define SHARD_FIFO_CHUNK (64u * 1024u)
#define SHARD_FIFO_SPARES 8
typedef struct shard_fifo_chunk shard_fifo_chunk;
typedef struct shard_fifo {
    shard_fifo_chunk *head, *tail; /* chunks with live allocations (and the newest), oldest first */
    shard_fifo_chunk *spare;       /* empty standard chunks */
    unsigned n_spare;
} shard_fifo;
/* 16-byte aligned memory for n bytes; NULL if out of memory. */
void *shard_fifo_alloc(shard_fifo *f, size_t n);
/* Give back an allocation of f (p from shard_fifo_alloc). */
void shard_fifo_release(shard_fifo *f, void *p);
/* Free every chunk (f is empty and reusable afterwards). */
void shard_fifo_fini(shard_fifo *f);

struct shard {
    lsm_db *db;
    shard_opts opts;
    char *id; /* opts.id, copied */
    pthread_mutex_t stripes[SHARD_STRIPES];
    pthread_rwlock_t stripes_gate; /* see "Locking order" above */
    shard_ring_check_fn ring_check;
    void *ring_check_arg;

    /* the worker pool: a FIFO of jobs under q_mu; workers drain it before exiting */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    shard_job *q_head, *q_tail;
    size_t q_len;
    bool q_stop;
    pthread_t *workers;
    int n_workers;

    /* writes on the loop thread (shard_attach_loop): pending jobs, loop thread only */
    struct event *flush_ev;
    shard_job *pend_head, *pend_tail;
    shard_write *flush_w; /* SHARD_WRITE_BATCH writes, reused by every batch (or NULL) */

    /*
     * Overlapped WAL syncs (opts.sync_thread with sync-mode always and a loop,
     * handlers.c "writes on the loop thread"). The loop (or the writer
     * thread) writes each group nosync, after counting it in gen_started, and
     * hands its syncs to sync_thread. Under dur_mu: sync_req (the group the sync thread is asked
     * to cover), sync_done (the last one it tried), durable (every group <=
     * it is durable), sync_err (the first failed sync; sticky), sync_stop.
     */
    bool async_sync; /* set by shard_attach_loop, read-only afterwards */
    _Atomic uint64_t gen_started;
    pthread_mutex_t dur_mu;
    pthread_cond_t req_cv, dur_cv;
    uint64_t sync_req, sync_done, durable;
    om_status sync_err;
    bool sync_stop;
    pthread_t sync_thread;
    bool have_sync_thread;
    /* loop thread only: the sync thread's last answer, the held replies, the wake-up */
    bool sync_busy;
    uint64_t loop_durable;
    om_status loop_sync_err;
    shard_held *held_head, *held_tail;
    shard_fifo held_mem; /* the held replies' memory */
    shard_fifo job_mem;  /* the pending Store/Delete jobs' memory (inline writes) */
    int sync_efd;
    struct event *sync_ev;

    /*
     * The writer thread (opts.writer_thread with async_sync; handlers.c "the
     * writer thread"): the loop hands it its Store/Delete jobs instead of
     * writing them. Under wq_mu: the queue (wq_*, with its job and byte
     * counts), wq_stop, and who waits (the writer for jobs, the loop for
     * room). Under dur_mu: done_* (written jobs, for the loop). Loop thread
     * only: fin_* (written jobs waiting for the sync that covers them).
     */
    bool writer_mode; /* set by shard_attach_loop, cleared by detach */
    bool have_writer;
    pthread_t writer;
    shard_write *writer_w; /* SHARD_WRITE_BATCH writes, the writer's */
    pthread_mutex_t wq_mu;
    pthread_cond_t wq_cv, wq_space_cv;
    shard_job *wq_head, *wq_tail;
    size_t wq_n, wq_bytes;
    bool wq_stop, wq_writer_idle, wq_loop_waiting;
    _Atomic uint64_t wq_full_waits; /* times the loop waited for room (Stats) */
    shard_job *done_head, *done_tail;
    shard_job *fin_head, *fin_tail;

    /*
     * The record buffer of Retrieve/Head answered inline (inline_reads): one
     * thread, the one running shard_rpc_handler, uses it, one request at a
     * time; kept between requests so that a read allocates nothing for it.
     */
    om_buf read_buf;

    /* shard_write_many's spare buffers (NULL or one set), under wm_mu */
    pthread_mutex_t wm_mu;
    shard_wm_scratch *wm_spare;

    /* the first error of an engine write (an om_status; OM_OK = none), for /healthz */
    atomic_int engine_error;

    /* metrics: answers by operation and wire status, latency by operation */
    _Atomic uint64_t answers[SHARD_OP_COUNT_][SHARD_NSTATUS];
    rpc_hist latency[SHARD_OP_COUNT_];
};

struct event;

/* shard.c: shard_write_many, with nosync: lsm_write_nosync (the caller syncs before answering). */
void shard_write_many_ex(shard *s, shard_write *w, size_t n, bool nosync);

/*
 * shard.c: shard_prefetch_reads -- lsm_prefetch the LSM keys of up to
 * SHARD_PREFETCH_MAX addresses (bucket, key) about to be read (at most
 * SHARD_PREFETCH_BYTES of keys; addresses too long to be valid are left
 * out). Only a hint: no effect on any result. Any thread.
 */
#define SHARD_PREFETCH_MAX 32
#define SHARD_PREFETCH_BYTES 4096
void shard_prefetch_reads(shard *s, const om_slice *buckets, const om_slice *keys, size_t n);

/* shard.c: free the spare buffers of shard_write_many (shard_close). */
void shard_wm_scratch_release(shard *s);

/* handlers.c: start and stop the worker pool (called by shard_open/shard_close). */
om_status shard_pool_start(shard *s);
void shard_pool_stop(shard *s);

/*
 * Lock (unlock) the stripes in the bit set `set` (SHARD_STRIPES bits) for a
 * group write: the gate shared and the stripes in ascending order, or the
 * gate exclusive when there are more than SHARD_GROUP_MAX_STRIPES of them.
 * Pass the same set to both.
 */
void shard_stripes_lock(shard *s, const uint64_t *set);
void shard_stripes_unlock(shard *s, const uint64_t *set);

#endif /* OM_SHARD_SHARD_INT_H */
