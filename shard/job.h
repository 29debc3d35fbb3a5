/*
 * shard/job.h -- a request as a job: the copy of a request that outlives
 * the handler, where its answer goes, and how the commit pipeline writes a
 * group of them (private to shard/).
 *
 * rpc frees a request when the handler returns, so a job carries copies of
 * the request's strings in its own allocation, right behind the struct
 * (`mem`). handlers.c makes jobs from Requests and Responses from jobs;
 * job.c gives them memory and runs a write group through the engine.
 *
 * Ownership:     a Store or Delete job (and a barrier) is the commit
 *                pipeline's (commit_job_alloc): it recycles the memory after
 *                ops.answer; any other job is malloc'ed and the worker that
 *                runs it frees it.
 * Thread-safety: a job belongs to one thread at a time; it crosses threads
 *                only through the commit pipeline and the worker queue.
 */
#ifndef OM_SHARD_JOB_H
#define OM_SHARD_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shard/commit.h"
#include "shard/shard_int.h"
#include "util/workq.h"

/* Which thread makes an answer, and so through which call of commit.h it leaves. */
typedef enum answer_via {
    ANSWER_GATE, /* the loop thread: commit_gate */
    ANSWER_WAIT, /* a worker of the pool, which may block: commit_wait */
    ANSWER_SEND, /* a read loop (loops.h), which must not block: commit_send */
} answer_via;

/* Where an answer goes and what it depends on. */
typedef struct answer_to {
    rpc_reply *reply;
    shard_op op;
    uint64_t t0_ns;
    uint64_t after; /* the write group it depends on (commit_reply.after) */
    answer_via via;
} answer_to;

/* A copied request. Strings are NUL-terminated copies inside `mem`. */
typedef struct shard_job {
    commit_job cj;   /* first: a Store or Delete is a job of the commit pipeline */
    workq_item item; /* a List or a read on the worker pool */
    answer_to to;
    om_slice bucket, key;
    /* store */
    om_slice data, metadata, content_type;
    shard_cond cond;
    uint64_t forced_version;
    /* list */
    om_slice prefix, delimiter, start_after, token;
    uint32_t max_keys;
    bool include_metadata;
    uint64_t ring_epoch; /* list: keys the ring of this epoch gives another shard are skipped */
    /* a write's result (shard_job_write_group): status, info, error text (malloc, or NULL) */
    om_status wstatus;
    shard_obj_info winfo;
    char *werr;
    uint8_t *mem;
    size_t mem_used;
    /* a barrier (shard_commit_barrier): no write; barrier(barrier_arg) when answered */
    void (*barrier)(void *arg);
    void *barrier_arg;
    /*
     * An other write (shard_commit_other: migration's ApplyRecords and purges
     * on a replicated primary): other_write(other_arg, nosync) writes in the
     * group's place, after its Stores and Deletes, on the writer's thread;
     * other_answer(other_arg, group) answers on the loop thread.
     */
    void (*other_write)(void *arg, bool nosync);
    void (*other_answer)(void *arg, uint64_t group);
    void *other_arg;
    bool term_mark; /* the barrier writes a primary's empty group (shard_commit_term_mark) */
} shard_job;

/*
 * shard_job_new -- a zeroed job with room for `bytes` of copied strings
 * behind it: from the commit pipeline when `write` (a Store, Delete or
 * barrier), else malloc'ed. NULL if out of memory. Loop thread.
 */
shard_job *shard_job_new(shard *s, bool write, size_t bytes);

/*
 * shard_job_write_group -- commit_ops.write (arg = the shard): jobs[0..n) as
 * one engine write (barriers write nothing); each job keeps its result in
 * wstatus, winfo and werr.
 */
void shard_job_write_group(void *arg, commit_job **jobs, size_t n, bool nosync, void *scratch);

#endif /* OM_SHARD_JOB_H */
