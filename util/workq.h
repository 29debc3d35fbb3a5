/*
 * util/workq.h -- a worker pool: a bounded FIFO of jobs served by N threads.
 *
 * A job is any struct that embeds a workq_item; the pool hands it back to
 * the run function given at workq_open, which owns it from then on (frees
 * it, answers it). Jobs start in the order they were pushed; with more than
 * one thread they may finish in any order.
 *
 * Stopping: workq_close(q, NULL) drains -- the threads run every queued job,
 * then exit and are joined, so every accepted job is done (a graceful
 * shutdown answers every request it accepted). workq_close(q, cancel) hands
 * the jobs still queued to `cancel` instead (on the calling thread), waits
 * for the running ones and joins: for pools whose jobs may take minutes,
 * where a shutdown answers "try again later" rather than waiting.
 *
 * Ownership: a pushed item belongs to the pool until run or cancel gets it;
 * an item workq_push refused stays the caller's.
 * Thread-safety: workq_push and workq_len from any thread; workq_open and
 * workq_close from one thread, with no push racing the close.
 */
#ifndef OM_UTIL_WORKQ_H
#define OM_UTIL_WORKQ_H

#include <stddef.h>

#include "util/status.h"

typedef struct workq workq;

typedef struct workq_item {
    struct workq_item *next;
} workq_item;

/* Runs (or cancels) one job; arg is the one given to workq_open. */
typedef void (*workq_fn)(void *arg, workq_item *it);

/*
 * workq_open -- start `threads` threads (at least 1) named `name` (for top -H;
 * at most 15 characters) serving a FIFO of at most `max_len` jobs.
 * Returns:   OM_OK and *out; OM_E_NOMEM (no memory or no thread).
 * Ownership: *out is closed with workq_close.
 */
om_status workq_open(const char *name, int threads, size_t max_len, workq_fn run, void *arg,
                     workq **out);

/*
 * workq_push -- queue a job.
 * Returns: OM_OK; OM_E_BUSY when max_len jobs wait; OM_E_UNAVAILABLE once
 *          workq_close has begun. On an error the item stays the caller's.
 */
om_status workq_push(workq *q, workq_item *it);

/* Jobs waiting for a thread (not those running). */
size_t workq_len(workq *q);

/* workq_close -- stop as described above (cancel NULL: drain) and free. Accepts NULL. */
void workq_close(workq *q, workq_fn cancel);

#endif /* OM_UTIL_WORKQ_H */
