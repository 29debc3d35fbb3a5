/*
 * shard/commit.c -- the durability pipeline (contract and modes: commit.h).
 *
 * The pipeline, for one Store with the defaults (a loop, sync-mode always):
 *
 *   loop     commit_submit appends the job to the pending list and activates
 *            flush_ev once; libevent runs it after the other callbacks of the
 *            loop iteration (the other connections' reads), so everything
 *            that arrived in one iteration is handed on together
 *            (Redis's appendfsync always batches the same way).
 *   loop     commit_flush_cb hands the pending jobs to the writer's queue
 *            (writer_submit), or -- at most WRITER_INLINE_JOBS of them while
 *            the writer is idle -- writes them itself the writer's way
 *            (writer_inline): at pipeline depth 1 the hop to the writer and
 *            back would cost more than the writes.
 *   writer   takes everything queued whenever it is free (group commit
 *            without a timer) and, per group of at most COMMIT_GROUP_MAX
 *            jobs (COMMIT_GROUP_BYTES): 1. counts it in `started` BEFORE
 *            writing it -- a read on the loop that sees the group's data
 *            (the memtable insert comes after the count) then sees the count
 *            (acquire) and its reply waits for the group; 2. writes it
 *            (ops.write, nosync); 3. under dur_mu, marks it written, appends
 *            its jobs to the done list and asks the sync thread for it.
 *   sync     lsm_sync up to the highest group asked for (the groups written
 *            while one sync runs are covered by the next, together), marks
 *            them durable, wakes the loop through an eventfd.
 *   loop     commit_collect: moves the done jobs to its own list, answers
 *            those now durable in order (ops.answer -> commit_gate, which
 *            sends them at once), releases the held replies now covered.
 *
 * The gate. Every reply the loop makes while a group it depends on is not
 * durable -- a read may show that group's data, a Store's version may follow
 * it -- is packed once into held_mem and released, in order, when a sync
 * covers it. A failed sync (sticky: the engine then refuses every write)
 * turns the held replies, and every later reply that could depend on an
 * unsynced write, into errors. Threads other than the loop wait in
 * commit_wait instead.
 *
 * The writer never answers: a reply always leaves from the loop (or, in sync
 * mode without a loop, from the thread that wrote it), after the sync that
 * makes it true. One writer and a FIFO: a key's writes apply in the order the
 * loop received them.
 *
 * Backpressure: the loop adds jobs to the writer's queue only while it holds
 * fewer than WRITER_QUEUE_JOBS jobs and WRITER_QUEUE_BYTES bytes of them (a
 * single larger job still goes through); beyond that the loop waits on
 * wq_space_cv until the writer takes the queue (counted: commit_queue_waits).
 * The writer never waits for the loop, so the loop's wait ends.
 *
 * Memory: the loop's write jobs (commit_job_alloc) and held replies come from
 * two shard_fifos (fifo.h), so the Store path makes no malloc per request.
 *
 * State and its guards:
 *   loop thread   pend_*, fin_*, held_*, loop_durable, loop_sync_err, the
 *                 fifos, flush_ev, loop_scratch (loop_check)
 *   wq_mu         wq_* (the writer's queue and its flags)
 *   dur_mu        written, sync_req, sync_done, durable, sync_err,
 *                 sync_stop, done_*
 *   atomic        started, pipeline, wq_full_waits
 * Lock order: wq_mu and dur_mu are never held together (commit.h).
 */
#define OM_LOG_MODULE "shard"
#include "shard/commit.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shard/fifo.h"
#include "util/assert.h"
#include "util/clock.h"
#include "util/log.h"

#define WRITER_QUEUE_JOBS (4 * COMMIT_GROUP_MAX)
#define WRITER_QUEUE_BYTES (4 * COMMIT_GROUP_BYTES)
#define WRITER_INLINE_JOBS 64

/* A packed reply of the loop held until group `need` is durable (in held_mem). */
typedef struct commit_held {
    struct commit_held *next;
    rpc_reply *reply;
    unsigned tag, status;
    bool heap; /* malloc'd by commit_send (another loop thread), else in held_mem */
    uint64_t t0_ns, need;
    size_t n;
    uint8_t data[]; /* the packed Response, without the id (rpc_reply_send_packed) */
} commit_held;
/* hold() assigns the header after the data is packed: no padding of it may overlap data */
_Static_assert(offsetof(commit_held, data) == sizeof(commit_held), "commit_held: data at the end");

struct commit {
    lsm_db *db;
    commit_ops ops;
    commit_repl repl; /* ship == NULL: no replication */
    om_thread_owner loop;
    _Atomic bool pipeline; /* writer and sync threads in use (commit_attach) */
    _Atomic uint64_t started;
    _Atomic uint64_t lease_until; /* replies leave only before it (commit_set_lease) */
    _Atomic uint64_t durable_pub; /* `durable` as commit_send reads it without dur_mu */

    /* commit_render_metrics: groups written, their jobs, write and sync times (any thread) */
    _Atomic uint64_t groups, jobs;
    rpc_hist write_hist, sync_hist;

    /* under fq_mu: commit_send's replies waiting for a sync, for the loop's held list */
    pthread_mutex_t fq_mu;
    commit_held *fq_head, *fq_tail;

    /* loop thread only */
    struct event *flush_ev;
    commit_job *pend_head, *pend_tail;
    commit_job *fin_head, *fin_tail; /* written, waiting for their sync */
    commit_held *held_head, *held_tail;
    uint64_t loop_durable;
    om_status loop_sync_err;
    shard_fifo job_mem, held_mem;
    void *loop_scratch;
    int efd;
    struct event *efd_ev;

    /* under dur_mu */
    pthread_mutex_t dur_mu;
    pthread_cond_t req_cv, dur_cv;
    uint64_t written, sync_req, sync_done, durable;
    om_status sync_err;
    bool sync_stop;
    commit_job *done_head, *done_tail;
    pthread_t sync_th;
    bool have_sync;

    /* under wq_mu */
    pthread_mutex_t wq_mu;
    pthread_cond_t wq_cv, wq_space_cv;
    commit_job *wq_head, *wq_tail;
    size_t wq_n, wq_bytes;
    bool wq_stop, wq_idle, wq_loop_waiting;
    _Atomic uint64_t wq_full_waits;
    pthread_t writer;
    bool have_writer;
    void *writer_scratch;
};

/*
 * "Loop thread only": the loop thread claims the pipeline the first time it
 * runs one of its calls after commit_attach (which may run on another thread
 * before the loop starts); from then on any other thread is a bug.
 */
static void
loop_check(commit *c)
{
    if (!c->loop.set)
        om_thread_owner_set(&c->loop);
    OM_ASSERT_OWNER(&c->loop);
}

/* ---- sending ---- */

static void
wake_loop(commit *c)
{
    uint64_t one = 1;

    while (write(c->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/*
 * The answer to a reply that could reveal a write the failed sync did not
 * make durable (st != OM_OK), or that comes too late: the primary's lease
 * ended (st == OM_OK: UNAVAILABLE).
 */
static void
send_unsynced(commit *c, unsigned tag, uint64_t t0_ns, rpc_reply *reply, om_status st)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    char msg[160];

    if (st == OM_OK)
        snprintf(msg, sizeof(msg),
                 "this primary's lease has ended: no reply may leave it (another replica may "
                 "lead the group now; shard/REPLICATION.md)");
    else
        snprintf(msg, sizeof(msg),
                 "WAL sync or replication failed (%s): recent writes may not be durable",
                 om_status_str(st));
    resp.status = rpc_status_to_proto(st != OM_OK ? st : OM_E_UNAVAILABLE);
    resp.message = msg;
    c->ops.sent(c->ops.arg, tag, (unsigned)resp.status, t0_ns, om_clock_mono_ns());
    rpc_reply_send(reply, &resp);
}

/* The lease check of a reply leaving at now_ns (commit_set_lease). */
static bool
lease_over(const commit *c, uint64_t now_ns)
{
    uint64_t until = atomic_load_explicit(&c->lease_until, memory_order_acquire);

    return until != UINT64_MAX && now_ns >= until;
}

void
commit_set_lease(commit *c, uint64_t until_ns)
{
    atomic_store_explicit(&c->lease_until, until_ns, memory_order_release);
}

static void
send_now(commit *c, const commit_reply *r)
{
    uint64_t now_ns = om_clock_mono_ns();

    if (lease_over(c, now_ns)) {
        send_unsynced(c, r->tag, r->t0_ns, r->reply, OM_OK);
        return;
    }
    c->ops.sent(c->ops.arg, r->tag, (unsigned)r->resp->status, r->t0_ns, now_ns);
    rpc_reply_send(r->reply, r->resp);
}

static void *
held_alloc(void *arg, size_t n)
{
    commit *c = arg;
    commit_held *h = shard_fifo_alloc(&c->held_mem, sizeof(*h) + n);

    return h != NULL ? h->data : NULL;
}

/* The header of a held reply whose n packed bytes are already in h->data. */
static void
held_init(commit_held *h, const commit_reply *r, uint64_t need, size_t n, bool heap)
{
    *h = (commit_held){.reply = r->reply,
                       .tag = r->tag,
                       .status = (unsigned)r->resp->status,
                       .t0_ns = r->t0_ns,
                       .need = need,
                       .n = n,
                       .heap = heap};
}

/* The group a reply must wait for (the pipeline in use, r->after not NONE). */
static uint64_t
reply_need(commit *c, const commit_reply *r)
{
    /* acquire: a group is counted before it is written (see above) */
    return r->after != COMMIT_AFTER_ALL ? r->after
                                        : atomic_load_explicit(&c->started, memory_order_acquire);
}

static bool
hold(commit *c, const commit_reply *r, uint64_t need)
{
    size_t n = 0;
    uint8_t *data = rpc_response_pack_alloc(r->resp, held_alloc, c, &n);
    commit_held *h;

    if (data == NULL)
        return false;
    h = (commit_held *)(void *)(data - offsetof(commit_held, data));
    held_init(h, r, need, n, false);
    /* released in order: a later reply never depends on an earlier group */
    OM_ASSERT(c->held_tail == NULL || c->held_tail->need <= need);
    if (c->held_tail != NULL)
        c->held_tail->next = h;
    else
        c->held_head = h;
    c->held_tail = h;
    return true;
}

/* Send the held replies the last sync results cover, in order; after a failed sync, errors. */
static void
held_release(commit *c)
{
    uint64_t now_ns = c->held_head != NULL ? om_clock_mono_ns() : 0;

    while (c->held_head != NULL &&
           (c->held_head->need <= c->loop_durable || c->loop_sync_err != OM_OK)) {
        commit_held *h = c->held_head;

        c->held_head = h->next;
        if (c->held_head == NULL)
            c->held_tail = NULL;
        if (h->need <= c->loop_durable && lease_over(c, now_ns)) {
            send_unsynced(c, h->tag, h->t0_ns, h->reply, OM_OK);
        } else if (h->need <= c->loop_durable) {
            c->ops.sent(c->ops.arg, h->tag, h->status, h->t0_ns, now_ns);
            rpc_reply_send_packed(h->reply, h->data, h->n);
        } else {
            send_unsynced(c, h->tag, h->t0_ns, h->reply, c->loop_sync_err);
        }
        if (h->heap)
            free(h);
        else
            shard_fifo_release(&c->held_mem, h);
    }
}

void
commit_gate(commit *c, const commit_reply *r)
{
    loop_check(c);
    if (atomic_load_explicit(&c->pipeline, memory_order_relaxed) && r->after != COMMIT_AFTER_NONE) {
        uint64_t need = reply_need(c, r);

        if (need > c->loop_durable) {
            if (c->loop_sync_err != OM_OK)
                send_unsynced(c, r->tag, r->t0_ns, r->reply, c->loop_sync_err);
            else if (!hold(c, r, need))
                send_unsynced(c, r->tag, r->t0_ns, r->reply, OM_E_NOMEM);
            return;
        }
    }
    send_now(c, r);
}

static void *
heap_alloc(void *arg, size_t n)
{
    commit_held **out = arg;

    *out = malloc(sizeof(**out) + n);
    return *out != NULL ? (*out)->data : NULL;
}

/*
 * A reply of another thread that must wait for group `need`: packed into
 * memory of its own and queued for the loop, which moves it into its held
 * list (fq_take) and releases it with the others.
 */
static bool
hold_foreign(commit *c, const commit_reply *r, uint64_t need)
{
    commit_held *h = NULL;
    size_t n = 0;
    bool first;

    if (rpc_response_pack_alloc(r->resp, heap_alloc, &h, &n) == NULL) {
        free(h);
        return false;
    }
    held_init(h, r, need, n, true);
    pthread_mutex_lock(&c->fq_mu);
    if (c->fq_tail != NULL)
        c->fq_tail->next = h;
    else
        c->fq_head = h;
    c->fq_tail = h;
    first = c->fq_head == h;
    pthread_mutex_unlock(&c->fq_mu);
    /*
     * After the push, and only onto an empty queue: a non-empty one has a
     * wake-up coming (efd_cb reads the eventfd before fq_take empties it).
     */
    if (first)
        wake_loop(c);
    return true;
}

/*
 * Move commit_send's queued replies to the end of the held list. A reply
 * there may have asked for an earlier group than the list's last; it then
 * waits for that one too (later, never wrong), which keeps the list in order.
 */
static void
fq_take(commit *c)
{
    commit_held *h;

    pthread_mutex_lock(&c->fq_mu);
    h = c->fq_head;
    c->fq_head = c->fq_tail = NULL;
    pthread_mutex_unlock(&c->fq_mu);
    while (h != NULL) {
        commit_held *next = h->next;

        h->next = NULL;
        if (c->held_tail != NULL && h->need < c->held_tail->need)
            h->need = c->held_tail->need;
        if (c->held_tail != NULL)
            c->held_tail->next = h;
        else
            c->held_head = h;
        c->held_tail = h;
        h = next;
    }
}

void
commit_send(commit *c, const commit_reply *r)
{
    if (atomic_load_explicit(&c->pipeline, memory_order_acquire) && r->after != COMMIT_AFTER_NONE) {
        uint64_t need = reply_need(c, r);

        if (need > atomic_load_explicit(&c->durable_pub, memory_order_acquire)) {
            if (!hold_foreign(c, r, need))
                send_unsynced(c, r->tag, r->t0_ns, r->reply, OM_E_NOMEM);
            return;
        }
    }
    send_now(c, r);
}

om_status
commit_wait_durable(commit *c)
{
    uint64_t need = atomic_load(&c->started);
    om_status st;

    pthread_mutex_lock(&c->dur_mu);
    while (c->durable < need && c->sync_err == OM_OK && c->have_sync)
        pthread_cond_wait(&c->dur_cv, &c->dur_mu);
    st = c->durable >= need || !c->have_sync ? OM_OK : c->sync_err;
    pthread_mutex_unlock(&c->dur_mu);
    return st;
}

void
commit_wait(commit *c, const commit_reply *r)
{
    om_status st = OM_OK;

    if (atomic_load_explicit(&c->pipeline, memory_order_acquire))
        st = commit_wait_durable(c);
    if (st != OM_OK)
        send_unsynced(c, r->tag, r->t0_ns, r->reply, st);
    else
        send_now(c, r);
}

/* ---- jobs ---- */

commit_job *
commit_job_alloc(commit *c, size_t n)
{
    bool fifo = c->flush_ev != NULL && om_thread_owner_is_me(&c->loop);
    commit_job *j = fifo ? shard_fifo_alloc(&c->job_mem, n) : malloc(n);

    if (j == NULL)
        return NULL;
    memset(j, 0, sizeof(*j));
    j->in_fifo = fifo;
    return j;
}

void
commit_job_discard(commit *c, commit_job *j)
{
    if (j->in_fifo)
        shard_fifo_release(&c->job_mem, j);
    else
        free(j);
}

static void
answer_and_free(commit *c, commit_job *j)
{
    c->ops.answer(c->ops.arg, j);
    commit_job_discard(c, j);
}

/* The next group off the list at *head: at most COMMIT_GROUP_MAX jobs and COMMIT_GROUP_BYTES. */
static size_t
take_group(commit_job **head, commit_job **batch)
{
    size_t n = 0, bytes = 0;

    while (*head != NULL && n < COMMIT_GROUP_MAX && (n == 0 || bytes < COMMIT_GROUP_BYTES)) {
        bytes += (*head)->bytes;
        batch[n++] = *head;
        *head = (*head)->next;
    }
    return n;
}

/* ops.write of one group, counted and timed for commit_render_metrics. */
static void
write_timed(commit *c, commit_job **jobs, size_t n, bool nosync, void *scratch)
{
    uint64_t t0 = om_clock_mono_ns();

    c->ops.write(c->ops.arg, jobs, n, nosync, scratch);
    rpc_hist_observe_ns(&c->write_hist, om_clock_mono_ns() - t0);
    atomic_fetch_add_explicit(&c->groups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->jobs, n, memory_order_relaxed);
}

/* Sync mode: write the jobs at head in groups, each synced as the engine says, and answer them. */
static void
run_sync(commit *c, commit_job *head, void *scratch)
{
    commit_job *batch[COMMIT_GROUP_MAX]; /* 16 KiB of stack */

    while (head != NULL) {
        size_t n = take_group(&head, batch);

        write_timed(c, batch, n, false, scratch);
        for (size_t i = 0; i < n; i++)
            answer_and_free(c, batch[i]);
    }
}

/* ---- the writer ---- */

/* Write one group and pass it on (steps 1-3 above). The writer, or the loop while it is idle. */
static void
writer_group(commit *c, commit_job **jobs, size_t n, void *scratch)
{
    uint64_t gen = atomic_fetch_add(&c->started, 1) + 1; /* 1. counted before it is written */

    write_timed(c, jobs, n, true, scratch); /* 2. */
    for (size_t i = 0; i < n; i++) {
        jobs[i]->group = gen;
        jobs[i]->next = i + 1 < n ? jobs[i + 1] : NULL;
    }
    pthread_mutex_lock(&c->dur_mu); /* 3. */
    /* one group at a time, in order: the writer, or the loop while the writer is idle */
    OM_ASSERT(gen == c->written + 1);
    c->written = gen;
    if (c->done_tail != NULL)
        c->done_tail->next = jobs[0];
    else
        c->done_head = jobs[0];
    c->done_tail = jobs[n - 1];
    if (c->sync_err != OM_OK) {
        wake_loop(c); /* no sync will report these jobs: the loop fails them */
    } else if (gen > c->sync_req) {
        c->sync_req = gen;
        pthread_cond_signal(&c->req_cv);
    }
    pthread_mutex_unlock(&c->dur_mu);
}

static void *
writer_main(void *arg)
{
    commit *c = arg;
    commit_job *batch[COMMIT_GROUP_MAX]; /* 16 KiB of stack */

    pthread_setname_np(pthread_self(), "shard-writer"); /* for top -H and perf */
    pthread_mutex_lock(&c->wq_mu);
    for (;;) {
        commit_job *head;

        while (c->wq_head == NULL && !c->wq_stop) {
            c->wq_idle = true;
            pthread_cond_wait(&c->wq_cv, &c->wq_mu);
        }
        c->wq_idle = false;
        if (c->wq_head == NULL)
            break;         /* stopping, and everything handed over is written */
        head = c->wq_head; /* everything queued */
        c->wq_head = c->wq_tail = NULL;
        c->wq_n = c->wq_bytes = 0;
        if (c->wq_loop_waiting)
            pthread_cond_signal(&c->wq_space_cv);
        pthread_mutex_unlock(&c->wq_mu);
        while (head != NULL) {
            size_t n = take_group(&head, batch);

            writer_group(c, batch, n, c->writer_scratch);
        }
        pthread_mutex_lock(&c->wq_mu);
    }
    pthread_mutex_unlock(&c->wq_mu);
    return NULL;
}

/* A small iteration while the writer is idle: write it here. False: nothing done. Loop thread. */
static bool
writer_inline(commit *c)
{
    commit_job *batch[WRITER_INLINE_JOBS];
    size_t n = 0;
    bool idle;

    for (commit_job *j = c->pend_head; j != NULL; j = j->next) {
        if (n == WRITER_INLINE_JOBS)
            return false;
        batch[n++] = j;
    }
    if (n == 0)
        return true;
    if (c->loop_scratch == NULL && (c->loop_scratch = malloc(c->ops.write_scratch)) == NULL)
        return false;
    pthread_mutex_lock(&c->wq_mu);
    idle = c->wq_idle && c->wq_head == NULL; /* only the loop queues: it stays idle */
    pthread_mutex_unlock(&c->wq_mu);
    if (!idle)
        return false;
    c->pend_head = c->pend_tail = NULL;
    writer_group(c, batch, n, c->loop_scratch);
    return true;
}

/* Append jobs to the writer's queue. Requires: wq_mu held. */
static void
wq_append(commit *c, commit_job *head, commit_job *tail, size_t n, size_t bytes)
{
    if (c->wq_tail != NULL)
        c->wq_tail->next = head;
    else
        c->wq_head = head;
    c->wq_tail = tail;
    c->wq_n += n;
    c->wq_bytes += bytes;
}

/* Hand the pending jobs to the writer, waiting while its queue is full. Loop thread. */
static void
writer_submit(commit *c)
{
    commit_job *head = c->pend_head, *tail = c->pend_tail;
    size_t n = 0, bytes = 0;

    c->pend_head = c->pend_tail = NULL;
    if (head == NULL)
        return;
    for (const commit_job *j = head; j != NULL; j = j->next) {
        n++;
        bytes += j->bytes;
    }
    pthread_mutex_lock(&c->wq_mu);
    while (head != NULL) {
        while (c->wq_head != NULL &&
               (c->wq_n >= WRITER_QUEUE_JOBS || c->wq_bytes >= WRITER_QUEUE_BYTES)) {
            c->wq_loop_waiting = true;
            atomic_fetch_add_explicit(&c->wq_full_waits, 1, memory_order_relaxed);
            pthread_cond_wait(&c->wq_space_cv, &c->wq_mu);
        }
        c->wq_loop_waiting = false;
        if (c->wq_n + n <= WRITER_QUEUE_JOBS && c->wq_bytes + bytes <= WRITER_QUEUE_BYTES) {
            wq_append(c, head, tail, n, bytes); /* the common case: everything fits */
            head = NULL;
        } else {
            /* as much as fits (at least one job), the rest once the writer took the queue */
            do {
                commit_job *j = head;

                head = j->next;
                j->next = NULL;
                wq_append(c, j, j, 1, j->bytes);
                n--;
                bytes -= j->bytes;
            } while (head != NULL && c->wq_n < WRITER_QUEUE_JOBS &&
                     c->wq_bytes < WRITER_QUEUE_BYTES);
        }
        if (c->wq_idle)
            pthread_cond_signal(&c->wq_cv);
    }
    pthread_mutex_unlock(&c->wq_mu);
}

/* ---- the sync thread ---- */

void
commit_set_replication(commit *c, const commit_repl *r)
{
    /* under dur_mu: the sync thread reads repl after taking it for the next request */
    pthread_mutex_lock(&c->dur_mu);
    c->repl = *r;
    pthread_mutex_unlock(&c->dur_mu);
}

/* Sync the groups written so far and, replicated, ship them (commit.h): they become durable. */
static om_status
sync_groups(commit *c)
{
    uint64_t mark = c->repl.ship != NULL ? c->repl.mark(c->repl.arg) : 0;
    uint64_t t0 = om_clock_mono_ns();
    om_status st = lsm_sync(c->db);

    rpc_hist_observe_ns(&c->sync_hist, om_clock_mono_ns() - t0);

    if (st == OM_OK && c->repl.ship != NULL)
        st = c->repl.ship(c->repl.arg, mark);
    return st;
}

static void *
sync_main(void *arg)
{
    commit *c = arg;

    pthread_setname_np(pthread_self(), "shard-sync"); /* for top -H and perf */
    pthread_mutex_lock(&c->dur_mu);
    for (;;) {
        uint64_t target;
        om_status st;

        while (c->sync_req == c->sync_done && !c->sync_stop)
            pthread_cond_wait(&c->req_cv, &c->dur_mu);
        if (c->sync_req == c->sync_done)
            break; /* stopping, and every request is done */
        target = c->sync_req;
        OM_ASSERT(target <= c->written); /* write before sync */
        pthread_mutex_unlock(&c->dur_mu);
        /*
         * The group becomes durable: every group <= target is in the WAL
         * file; the sync makes it durable here, and replication (when set)
         * waits for the backups to have them durable -- shipped since they
         * were written, or from here -- before `durable` advances (commit.h,
         * shard/repl.c).
         */
        st = sync_groups(c); /* the later groups go on being written meanwhile */
        if (st != OM_OK)
            om_log(OM_LOG_ERROR, "WAL sync or replication failed status=%s", om_status_str(st));
        pthread_mutex_lock(&c->dur_mu);
        c->sync_done = target;
        if (st == OM_OK && target > c->durable) {
            c->durable = target;
            atomic_store_explicit(&c->durable_pub, target, memory_order_release);
        } else if (st != OM_OK && c->sync_err == OM_OK)
            c->sync_err = st;
        OM_ASSERT(c->durable <= c->written);
        pthread_cond_broadcast(&c->dur_cv);
        wake_loop(c);
    }
    pthread_mutex_unlock(&c->dur_mu);
    return NULL;
}

/*
 * Take the sync results, answer the written jobs they cover (in order: those
 * of a durable group as made, the others with the error), release the held
 * replies they cover. Loop thread.
 */
static void
commit_collect(commit *c)
{
    loop_check(c);
    pthread_mutex_lock(&c->dur_mu);
    OM_ASSERT(c->durable >= c->loop_durable);
    c->loop_durable = c->durable;
    c->loop_sync_err = c->sync_err;
    if (c->done_head != NULL) {
        if (c->fin_tail != NULL)
            c->fin_tail->next = c->done_head;
        else
            c->fin_head = c->done_head;
        c->fin_tail = c->done_tail;
        c->done_head = c->done_tail = NULL;
    }
    pthread_mutex_unlock(&c->dur_mu);
    fq_take(c);
    held_release(c);
    while (c->fin_head != NULL &&
           (c->fin_head->group <= c->loop_durable || c->loop_sync_err != OM_OK)) {
        commit_job *j = c->fin_head;

        c->fin_head = j->next;
        if (c->fin_head == NULL)
            c->fin_tail = NULL;
        OM_ASSERT(c->fin_head == NULL || c->fin_head->group >= j->group); /* in group order */
        answer_and_free(c, j); /* its reply goes out at once unless a sync failed */
    }
}

static void
efd_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;

    (void)what;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    commit_collect(arg);
}

/* ---- the loop side ---- */

static void
commit_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    commit *c = arg;
    commit_job *head = c->pend_head;

    (void)fd;
    (void)what;
    loop_check(c);
    if (atomic_load_explicit(&c->pipeline, memory_order_relaxed)) {
        if (!writer_inline(c))
            writer_submit(c);
        return;
    }
    c->pend_head = c->pend_tail = NULL;
    if (head != NULL && c->loop_scratch == NULL)
        c->loop_scratch = malloc(c->ops.write_scratch); /* NULL: ops.write makes its own */
    run_sync(c, head, c->loop_scratch);
}

void
commit_submit(commit *c, commit_job *j)
{
    loop_check(c);
    j->next = NULL;
    if (c->flush_ev == NULL) {
        run_sync(c, j, NULL); /* no loop: at once */
        return;
    }
    if (c->pend_tail != NULL)
        c->pend_tail->next = j;
    else
        c->pend_head = j;
    c->pend_tail = j;
    if (c->pend_head == j)
        event_active(c->flush_ev, EV_TIMEOUT, 0);
}

om_status
commit_open(lsm_db *db, const commit_ops *ops, commit **out)
{
    commit *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->db = db;
    c->ops = *ops;
    c->efd = -1;
    atomic_init(&c->lease_until, UINT64_MAX);
    atomic_init(&c->durable_pub, 0);
    atomic_init(&c->groups, 0);
    atomic_init(&c->jobs, 0);
    rpc_hist_init(&c->write_hist);
    rpc_hist_init(&c->sync_hist);
    pthread_mutex_init(&c->fq_mu, NULL);
    pthread_mutex_init(&c->dur_mu, NULL);
    pthread_cond_init(&c->req_cv, NULL);
    pthread_cond_init(&c->dur_cv, NULL);
    pthread_mutex_init(&c->wq_mu, NULL);
    pthread_cond_init(&c->wq_cv, NULL);
    pthread_cond_init(&c->wq_space_cv, NULL);
    *out = c;
    return OM_OK;
}

/* Start the sync thread and the writer (the pipeline). */
static om_status
pipeline_start(commit *c, struct event_base *base)
{
    c->writer_scratch = malloc(c->ops.write_scratch);
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->writer_scratch == NULL || c->efd < 0) {
        om_log(OM_LOG_ERROR, "cannot start the write pipeline err=%s", strerror(errno));
        return OM_ERR(c->efd < 0 ? OM_E_IO : OM_E_NOMEM);
    }
    c->efd_ev = event_new(base, c->efd, EV_READ | EV_PERSIST, efd_cb, c);
    if (c->efd_ev == NULL || event_add(c->efd_ev, NULL) != 0)
        return OM_ERR(OM_E_NOMEM);
    c->sync_stop = c->wq_stop = false;
    if (pthread_create(&c->sync_th, NULL, sync_main, c) != 0)
        return OM_ERR(OM_E_NOMEM);
    pthread_mutex_lock(&c->dur_mu);
    c->have_sync = true;
    pthread_mutex_unlock(&c->dur_mu);
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0)
        return OM_ERR(OM_E_NOMEM);
    c->have_writer = true;
    atomic_store(&c->pipeline, true);
    return OM_OK;
}

om_status
commit_attach(commit *c, struct event_base *base, lsm_sync_mode mode)
{
    om_status st = OM_OK;

    c->loop.set = false; /* the loop thread claims it when it starts serving */
    c->flush_ev = event_new(base, -1, 0, commit_flush_cb, c);
    if (c->flush_ev == NULL)
        st = OM_ERR(OM_E_NOMEM);
    else if (mode == LSM_SYNC_ALWAYS)
        st = pipeline_start(c, base);
    if (st != OM_OK)
        commit_detach(c);
    return st;
}

/* Detach: the writer writes everything handed to it and exits. */
static void
writer_stop(commit *c)
{
    pthread_mutex_lock(&c->wq_mu);
    c->wq_stop = true;
    pthread_cond_signal(&c->wq_cv);
    pthread_mutex_unlock(&c->wq_mu);
    pthread_join(c->writer, NULL);
    c->have_writer = false;
}

/* Detach: the sync thread finishes what it was asked; the rest is synced here. */
static void
sync_stop(commit *c)
{
    uint64_t gen;

    pthread_mutex_lock(&c->dur_mu);
    c->sync_stop = true;
    pthread_cond_signal(&c->req_cv);
    pthread_mutex_unlock(&c->dur_mu);
    pthread_join(c->sync_th, NULL);
    gen = atomic_load(&c->started);
    pthread_mutex_lock(&c->dur_mu);
    OM_ASSERT(c->written == gen); /* the writer is joined: every started group is written */
    if (c->durable < gen && c->sync_err == OM_OK) {
        om_status st;

        pthread_mutex_unlock(&c->dur_mu);
        st = sync_groups(c);
        pthread_mutex_lock(&c->dur_mu);
        if (st == OM_OK) {
            c->durable = gen;
            atomic_store_explicit(&c->durable_pub, gen, memory_order_release);
        } else {
            c->sync_err = st;
        }
    }
    c->sync_req = c->sync_done = gen;
    c->have_sync = false; /* commit_wait_durable waits no more */
    pthread_cond_broadcast(&c->dur_cv);
    pthread_mutex_unlock(&c->dur_mu);
}

void
commit_detach(commit *c)
{
    if (c->flush_ev == NULL && !c->have_sync)
        return;
    om_thread_owner_set(&c->loop); /* the loop is not running: this thread stands in */
    if (c->flush_ev != NULL)
        commit_flush_cb(-1, 0, c); /* hand over or write what is pending */
    if (c->have_writer)
        writer_stop(c);
    if (c->have_sync) {
        sync_stop(c);
        commit_collect(c); /* answers every written job, releases every held reply */
    }
    atomic_store(&c->pipeline, false);
    OM_ASSERT(c->held_head == NULL && c->fin_head == NULL && c->pend_head == NULL);
    OM_ASSERT(c->fq_head == NULL); /* commit_send's threads stopped before the detach */
    if (c->efd_ev != NULL)
        event_free(c->efd_ev);
    if (c->efd >= 0)
        close(c->efd);
    if (c->flush_ev != NULL)
        event_free(c->flush_ev);
    c->efd_ev = c->flush_ev = NULL;
    c->efd = -1;
    free(c->loop_scratch);
    free(c->writer_scratch);
    c->loop_scratch = c->writer_scratch = NULL;
    /* every job and held reply was answered above: their memory goes now */
    shard_fifo_fini(&c->job_mem);
    shard_fifo_fini(&c->held_mem);
}

void
commit_close(commit *c)
{
    if (c == NULL)
        return;
    commit_detach(c);
    pthread_cond_destroy(&c->wq_space_cv);
    pthread_cond_destroy(&c->wq_cv);
    pthread_mutex_destroy(&c->wq_mu);
    pthread_cond_destroy(&c->dur_cv);
    pthread_cond_destroy(&c->req_cv);
    pthread_mutex_destroy(&c->dur_mu);
    pthread_mutex_destroy(&c->fq_mu);
    free(c);
}

om_status
commit_error(commit *c)
{
    om_status st;

    pthread_mutex_lock(&c->dur_mu);
    st = c->sync_err;
    pthread_mutex_unlock(&c->dur_mu);
    return st;
}

uint64_t
commit_queue_waits(commit *c)
{
    return atomic_load_explicit(&c->wq_full_waits, memory_order_relaxed);
}

om_status
commit_render_metrics(commit *c, om_buf *out)
{
    OM_TRY(rpc_prom_header(out, "objmeta_shard_commit_groups_total", "counter",
                           "Groups of Stores and Deletes written together (one WAL write each)."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_commit_groups_total", NULL,
                          (double)atomic_load_explicit(&c->groups, memory_order_relaxed)));
    OM_TRY(rpc_prom_header(out, "objmeta_shard_commit_writes_total", "counter",
                           "Stores and Deletes written in those groups."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_commit_writes_total", NULL,
                          (double)atomic_load_explicit(&c->jobs, memory_order_relaxed)));
    OM_TRY(rpc_prom_header(out, "objmeta_shard_commit_write_duration_seconds", "histogram",
                           "Time to write one group: the reads before the writes, the WAL write "
                           "and the memtable inserts (with sync-mode other than always, the "
                           "sync too)."));
    OM_TRY(
        rpc_hist_render(&c->write_hist, out, "objmeta_shard_commit_write_duration_seconds", NULL));
    OM_TRY(rpc_prom_header(out, "objmeta_shard_commit_sync_duration_seconds", "histogram",
                           "Time of one WAL sync of the commit pipeline (sync-mode always)."));
    return rpc_hist_render(&c->sync_hist, out, "objmeta_shard_commit_sync_duration_seconds", NULL);
}
