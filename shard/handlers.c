/*
 * shard/handlers.c -- the protocol side of a shard: translates Requests into
 * the object operations of shard.c and their results into Responses, runs the
 * worker pool, counts answers and latencies, renders /metrics.
 *
 * Threads. shard_rpc_handler runs on the rpc loop thread. Store and Delete
 * are batched on the loop thread when a loop is attached (shard_attach_loop,
 * the default of objmeta-shard; see "writes on the loop thread" below) and,
 * with opts.writer_thread, run on a writer thread ("the writer thread"),
 * else they are jobs for the worker pool. List is always a job: a scan must not
 * block the loop. The pool's opts.workers threads take up to
 * SHARD_WRITE_BATCH queued writes (and about SHARD_WRITE_BATCH_BYTES of them)
 * at once and make them one engine write (shard_write_many: one WAL record,
 * one fsync); concurrent workers share the engine's group commit. Workers
 * answer through rpc_reply_send(), which is thread-safe. Because rpc frees a
 * request when the handler returns, a job carries copies of the request's
 * strings in one allocation. Retrieve, Head and Exists are answered on the
 * loop thread when opts.inline_reads is set (the default: reads come from the
 * memtable and the block cache, and a thread hop would cost more than the
 * read), else they are jobs too.
 *
 * shard_pool_stop() lets the workers drain the queue before joining them, so
 * every accepted request is answered during a graceful shutdown.
 */
#define OM_LOG_MODULE "shard"
#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shard/list.h"
#include "shard/shard_int.h"
#include "util/clock.h"
#include "util/log.h"

/* Most Store/Delete jobs, and bytes of them, one worker turns into one engine write. */
#define SHARD_WRITE_BATCH 2048
#define SHARD_WRITE_BATCH_BYTES (1u << 20)

/* A copied request. Strings are NUL-terminated copies inside `mem`. */
struct shard_job {
    shard_job *next;
    shard_op op;
    rpc_reply *reply;
    uint64_t t0_ns;
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
    bool in_fifo;        /* memory from s->job_mem (loop thread), else from malloc */
    /* a write done by the writer thread: its group (gen_started), result, error text (malloc) */
    uint64_t gen;
    om_status wstatus;
    shard_obj_info winfo;
    char *werr;
    uint8_t *mem;
    size_t mem_used;
};

/* Release a job of job_new (s->job_mem on the loop thread, else free). */
static void
job_free(shard *s, shard_job *j)
{
    if (j->in_fifo)
        shard_fifo_release(&s->job_mem, j);
    else
        free(j);
}

/* ---- answers ---- */

/*
 * The shard whose loop this thread runs: set on entry to every loop callback
 * of the shard (the handler, the flush and sync events, detach), so that
 * shard_answer tells the loop from the workers.
 */
static _Thread_local shard *shard_loop_self;

/*
 * The group a reply of the loop depends on, when the loop answers a write the
 * writer thread did (shard_writer_answer): that write's group rather than
 * every group started so far. 0 = every group started so far (gen_started).
 */
static _Thread_local uint64_t shard_answer_gen;

/*
 * A packed reply the loop made while group `need` was not yet durable. It
 * lives in s->held_mem (a shard_fifo: held replies are made and released in
 * order, so their memory is recycled chunk by chunk instead of one malloc
 * each); shard_held_release gives it back after sending it.
 */
struct shard_held {
    shard_held *next;
    rpc_reply *reply;
    shard_op op;
    unsigned status; /* wire status, for the counters */
    uint64_t t0_ns, need;
    size_t n;
    uint8_t data[]; /* the packed Response, without the id (rpc_reply_send_packed) */
};

static unsigned
answer_status_index(Objmeta__Status status)
{
    return (unsigned)status < SHARD_NSTATUS ? (unsigned)status
                                            : (unsigned)OBJMETA__STATUS__INTERNAL;
}

/* Count an answer made at now_ns (one clock read serves a batch of answers). */
static void
shard_count_at(shard *s, shard_op op, unsigned st, uint64_t t0_ns, uint64_t now_ns)
{
    atomic_fetch_add_explicit(&s->answers[op][st], 1, memory_order_relaxed);
    rpc_hist_observe_ns(&s->latency[op], now_ns > t0_ns ? now_ns - t0_ns : 0);
}

static void
shard_count(shard *s, shard_op op, unsigned st, uint64_t t0_ns)
{
    shard_count_at(s, op, st, t0_ns, om_clock_mono_ns());
}

/*
 * The answer to a request whose reply could reveal a write the WAL sync did
 * not make durable (the sync failed): an error, never the data.
 */
static void
shard_answer_unsynced(shard *s, shard_op op, uint64_t t0_ns, rpc_reply *reply, om_status st)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    char msg[160];

    snprintf(msg, sizeof(msg), "WAL sync failed (%s): recent writes may not be durable",
             om_status_str(st));
    resp.status = rpc_status_to_proto(st != OM_OK ? st : OM_E_IO);
    resp.message = msg;
    shard_count(s, op, answer_status_index(resp.status), t0_ns);
    rpc_reply_send(reply, &resp);
}

/* Room for a held reply of n packed bytes in s->held_mem: returns where the bytes go. */
static void *
shard_held_alloc(void *arg, size_t n)
{
    shard *s = arg;
    shard_held *h = shard_fifo_alloc(&s->held_mem, sizeof(*h) + n);

    return h != NULL ? h->data : NULL;
}

/* Pack and hold a reply of the loop thread until group `need` is durable. */
static bool
shard_hold(shard *s, shard_op op, uint64_t t0_ns, rpc_reply *reply, const Objmeta__Response *resp,
           uint64_t need)
{
    size_t n = 0;
    /* resp->id is 0: rpc_reply_send_packed puts the id in front */
    uint8_t *data = rpc_response_pack_alloc(resp, shard_held_alloc, s, &n);
    shard_held *h;

    if (data == NULL)
        return false;
    h = (shard_held *)(void *)(data - offsetof(shard_held, data));
    h->n = n;
    h->next = NULL;
    h->reply = reply;
    h->op = op;
    h->status = answer_status_index(resp->status);
    h->t0_ns = t0_ns;
    h->need = need;
    if (s->held_tail != NULL)
        s->held_tail->next = h;
    else
        s->held_head = h;
    s->held_tail = h;
    return true;
}

/*
 * Send the held replies the last sync covered, in the order they were made;
 * after a failed sync, the rest get shard_answer_unsynced. Loop thread.
 */
static void
shard_held_release(shard *s)
{
    uint64_t now_ns = s->held_head != NULL ? om_clock_mono_ns() : 0;

    while (s->held_head != NULL &&
           (s->held_head->need <= s->loop_durable || s->loop_sync_err != OM_OK)) {
        shard_held *h = s->held_head;

        s->held_head = h->next;
        if (s->held_head == NULL)
            s->held_tail = NULL;
        if (h->need <= s->loop_durable) {
            shard_count_at(s, h->op, h->status, h->t0_ns, now_ns);
            rpc_reply_send_packed(h->reply, h->data, h->n);
        } else {
            shard_answer_unsynced(s, h->op, h->t0_ns, h->reply, s->loop_sync_err);
        }
        shard_fifo_release(&s->held_mem, h);
    }
}

/* A thread other than the loop: wait until every group written so far is durable. */
static om_status
shard_wait_durable(shard *s)
{
    uint64_t need = atomic_load(&s->gen_started);
    om_status st;

    pthread_mutex_lock(&s->dur_mu);
    while (s->durable < need && s->sync_err == OM_OK)
        pthread_cond_wait(&s->dur_cv, &s->dur_mu);
    st = s->durable >= need ? OM_OK : s->sync_err;
    pthread_mutex_unlock(&s->dur_mu);
    return st;
}

/*
 * Every answer goes through here. With overlapped syncs (s->async_sync) no
 * answer may show a write before it is durable: the loop thread holds its
 * replies while a group it wrote is not synced (gen_started > loop_durable),
 * and other threads (List, reads without inline_reads) wait, after making
 * their answer, until the groups written before they read are durable.
 */
static void
shard_answer(shard *s, shard_op op, uint64_t t0_ns, rpc_reply *reply, Objmeta__Response *resp)
{
    if (s->async_sync) {
        if (shard_loop_self == s) {
            /*
             * Acquire: with the writer thread, a group is counted before it
             * is written, so a read that saw the group's data sees the count.
             */
            uint64_t need = shard_answer_gen != 0
                                ? shard_answer_gen
                                : atomic_load_explicit(&s->gen_started, memory_order_acquire);

            if (need > s->loop_durable) {
                if (s->loop_sync_err != OM_OK)
                    shard_answer_unsynced(s, op, t0_ns, reply, s->loop_sync_err);
                else if (!shard_hold(s, op, t0_ns, reply, resp, need))
                    shard_answer_unsynced(s, op, t0_ns, reply, OM_E_NOMEM);
                return;
            }
        } else {
            om_status st = shard_wait_durable(s);

            if (st != OM_OK) {
                shard_answer_unsynced(s, op, t0_ns, reply, st);
                return;
            }
        }
    }
    shard_count(s, op, answer_status_index(resp->status), t0_ns);
    rpc_reply_send(reply, resp);
}

/* An answer that is only a status (an error, or OK for operations without a body). */
static void
shard_answer_status(shard *s, shard_op op, uint64_t t0_ns, rpc_reply *reply, om_status st,
                    const char *msg)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;

    resp.status = rpc_status_to_proto(st);
    resp.message = (char *)(msg && *msg ? msg : om_status_str(st));
    shard_answer(s, op, t0_ns, reply, &resp);
}

static om_status
shard_msg_nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return OM_ERR(OM_E_NOMEM);
}

/* ObjectInfo from a record; strings NUL-terminated in *scratch (freed by the caller). */
typedef struct info_strings {
    char *content_type;
    char *metadata;
    char etag[17];
} info_strings;

static om_status
shard_fill_info(Objmeta__ObjectInfo *oi, info_strings *is, const char *bucket, const char *key,
                const shard_record *r, bool with_metadata)
{
    is->content_type = om_slice_strdup(r->content_type);
    is->metadata = with_metadata ? om_slice_strdup(r->metadata) : NULL;
    if (is->content_type == NULL || (with_metadata && is->metadata == NULL))
        return OM_ERR(OM_E_NOMEM);
    shard_etag_hex(r->etag, is->etag);
    oi->bucket = (char *)bucket;
    oi->key = (char *)key;
    oi->size = r->size;
    oi->etag = is->etag;
    oi->content_type = is->content_type;
    oi->created_ms = r->created_ms;
    oi->modified_ms = r->modified_ms;
    oi->version = r->version;
    oi->metadata_json = with_metadata ? is->metadata : (char *)"";
    return OM_OK;
}

static void
info_strings_free(info_strings *is)
{
    free(is->content_type);
    free(is->metadata);
}

/* ---- the operations ---- */

/*
 * Retrieve/Head keep small strings on the stack: the content type is at most
 * SHARD_CONTENT_TYPE_MAX bytes, and metadata up to READ_STACK_META bytes (the
 * common case) needs no allocation either.
 */
#define READ_STACK_META 2048
#define READ_SCRATCH_KEEP (64u * 1024u) /* a reused read buffer larger than this is freed */

/* A NUL-terminated copy of sl in stack (when it fits in cap bytes) or *heap. */
static char *
read_cstr(om_slice sl, char *stack, size_t cap, char **heap)
{
    char *d = sl.n < cap ? stack : (*heap = malloc(sl.n + 1));

    if (d == NULL)
        return NULL;
    if (sl.n > 0)
        memcpy(d, sl.p, sl.n);
    d[sl.n] = 0;
    return d;
}

/*
 * scratch: the record buffer to use (the loop thread passes one it keeps
 * across requests), or NULL for a buffer of this call's own.
 */
static void
do_read(shard *s, shard_op op, uint64_t t0, rpc_reply *reply, om_slice bucket, om_slice key,
        om_buf *scratch)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ObjectInfo oi = OBJMETA__OBJECT_INFO__INIT;
    Objmeta__RetrieveResponse rr = OBJMETA__RETRIEVE_RESPONSE__INIT;
    Objmeta__HeadResponse hr = OBJMETA__HEAD_RESPONSE__INIT;
    Objmeta__ExistsResponse er = OBJMETA__EXISTS_RESPONSE__INIT;
    om_buf own = OM_BUF_INIT, *raw = scratch != NULL ? scratch : &own;
    char ctype[SHARD_CONTENT_TYPE_MAX + 1], meta[READ_STACK_META], etag[17];
    char *ctype_heap = NULL, *meta_heap = NULL;
    shard_record rec;
    char err[512] = "";
    om_status st;

    if (op == SHARD_OP_EXISTS) {
        st = shard_exists(s, bucket, key, err, sizeof(err));
        if (st == OM_OK || st == OM_E_NOTFOUND) {
            /* Exists answers OK with exists=false for an absent key (objmeta.proto) */
            er.exists = st == OM_OK;
            resp.body_case = OBJMETA__RESPONSE__BODY_EXISTS;
            resp.exists = &er;
            shard_answer(s, op, t0, reply, &resp);
        } else {
            shard_answer_status(s, op, t0, reply, st, err);
        }
        return;
    }
    st = shard_get(s, bucket, key, raw, &rec, err, sizeof(err));
    if (st == OM_OK) {
        oi.content_type = read_cstr(rec.content_type, ctype, sizeof(ctype), &ctype_heap);
        oi.metadata_json = read_cstr(rec.metadata, meta, sizeof(meta), &meta_heap);
        if (oi.content_type == NULL || oi.metadata_json == NULL)
            st = shard_msg_nomem(err, sizeof(err));
    }
    if (st != OM_OK) {
        shard_answer_status(s, op, t0, reply, st, err);
        goto out;
    }
    shard_etag_hex(rec.etag, etag);
    oi.bucket = (char *)bucket.p;
    oi.key = (char *)key.p;
    oi.size = rec.size;
    oi.etag = etag;
    oi.created_ms = rec.created_ms;
    oi.modified_ms = rec.modified_ms;
    oi.version = rec.version;
    if (op == SHARD_OP_RETRIEVE) {
        rr.info = &oi;
        rr.data.data = (uint8_t *)rec.data.p;
        rr.data.len = rec.data.n;
        resp.body_case = OBJMETA__RESPONSE__BODY_RETRIEVE;
        resp.retrieve = &rr;
    } else {
        hr.info = &oi;
        resp.body_case = OBJMETA__RESPONSE__BODY_HEAD;
        resp.head = &hr;
    }
    shard_answer(s, op, t0, reply, &resp);
out:
    free(ctype_heap);
    free(meta_heap);
    if (raw == &own || raw->cap > READ_SCRATCH_KEEP)
        om_buf_free(raw);
}

/*
 * The shard_write of a Store or Delete job (its slices borrow the job's
 * memory). Only the fields shard_write_many reads are set: the error text is
 * written when there is one, so err[] is not cleared here.
 */
static void
job_to_write(const shard_job *j, shard_write *w)
{
    w->is_delete = j->op == SHARD_OP_DELETE;
    w->args.bucket = j->bucket;
    w->args.key = j->key;
    w->args.data = j->data;
    w->args.metadata = j->metadata;
    w->args.content_type = j->content_type;
    w->args.cond = j->cond;
    w->args.forced_version = j->forced_version;
    w->status = OM_OK;
    memset(&w->info, 0, sizeof(w->info));
    w->err[0] = '\0';
}

static void
answer_write(shard *s, shard_job *j, const shard_write *w)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__StoreResponse sr = OBJMETA__STORE_RESPONSE__INIT;
    Objmeta__DeleteResponse dr = OBJMETA__DELETE_RESPONSE__INIT;
    Objmeta__ObjectInfo oi = OBJMETA__OBJECT_INFO__INIT;
    char etag[17];

    if (w->status != OM_OK) {
        shard_answer_status(s, j->op, j->t0_ns, j->reply, w->status, w->err);
        return;
    }
    if (j->op == SHARD_OP_DELETE) {
        dr.version = w->info.version;
        dr.existed = true;
        resp.body_case = OBJMETA__RESPONSE__BODY_DELETE;
        resp.delete_ = &dr;
        shard_answer(s, j->op, j->t0_ns, j->reply, &resp);
        return;
    }
    shard_etag_hex(w->info.etag, etag);
    oi.bucket = (char *)j->bucket.p;
    oi.key = (char *)j->key.p;
    oi.size = w->info.size;
    oi.etag = etag;
    oi.content_type = (char *)j->content_type.p;
    oi.created_ms = w->info.created_ms;
    oi.modified_ms = w->info.modified_ms;
    oi.version = w->info.version;
    sr.info = &oi;
    resp.body_case = OBJMETA__RESPONSE__BODY_STORE;
    resp.store = &sr;
    shard_answer(s, j->op, j->t0_ns, j->reply, &resp);
}

/*
 * Run n Store/Delete jobs as one engine write and answer each. `ws`: room
 * for n shard_writes (the loop thread passes an array it keeps), or NULL.
 */
static void
run_writes(shard *s, shard_job **jobs, size_t n, shard_write *ws, bool nosync)
{
    shard_write one, *w = ws != NULL ? ws : n == 1 ? &one : malloc(n * sizeof(*w));

    if (w == NULL) {
        for (size_t i = 0; i < n; i++)
            shard_answer_status(s, jobs[i]->op, jobs[i]->t0_ns, jobs[i]->reply, OM_E_NOMEM,
                                "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        job_to_write(jobs[i], &w[i]);
    shard_write_many_ex(s, w, n, nosync);
    for (size_t i = 0; i < n; i++)
        answer_write(s, jobs[i], &w[i]);
    if (w != &one && w != ws)
        free(w);
}

/* List results collected for one response. */
typedef struct list_acc {
    const char *bucket;
    bool include_metadata;
    Objmeta__ObjectInfo *infos;
    Objmeta__ObjectInfo **entries;
    info_strings *strs;
    char **keys;
    size_t n_entries;
    char **prefixes;
    size_t n_prefixes;
    size_t cap;
} list_acc;

static om_status
list_on_entry(void *arg, om_slice key, const shard_record *rec)
{
    list_acc *a = arg;
    size_t i = a->n_entries;

    if (i == a->cap)
        return OM_ERR(OM_E_INTERNAL); /* the page never exceeds max_keys */
    a->keys[i] = om_slice_strdup(key);
    if (a->keys[i] == NULL)
        return OM_ERR(OM_E_NOMEM);
    a->n_entries++;
    objmeta__object_info__init(&a->infos[i]);
    a->entries[i] = &a->infos[i];
    return shard_fill_info(&a->infos[i], &a->strs[i], a->bucket, a->keys[i], rec,
                           a->include_metadata);
}

static om_status
list_on_prefix(void *arg, om_slice cp)
{
    list_acc *a = arg;

    if (a->n_prefixes == a->cap)
        return OM_ERR(OM_E_INTERNAL);
    a->prefixes[a->n_prefixes] = om_slice_strdup(cp);
    if (a->prefixes[a->n_prefixes] == NULL)
        return OM_ERR(OM_E_NOMEM);
    a->n_prefixes++;
    return OM_OK;
}

/* The ownership filter of a fenced List: the ring check of each key under the request's epoch. */
typedef struct list_owner {
    shard *s;
    uint64_t epoch;
    om_slice bucket;
} list_owner;

static bool
list_owns(void *arg, om_slice lsm_key)
{
    list_owner *lo = arg;
    size_t kofs = lo->bucket.n + 1;
    char err[8];

    if (lsm_key.n <= kofs)
        return true;
    return lo->s->ring_check(lo->s->ring_check_arg, lo->epoch, lo->bucket,
                             om_slice_make(lsm_key.p + kofs, lsm_key.n - kofs), err,
                             sizeof(err)) == OM_OK;
}

static void
do_list(shard *s, shard_job *j)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ListResponse lr = OBJMETA__LIST_RESPONSE__INIT;
    shard_list_req req = {.bucket = j->bucket,
                          .prefix = j->prefix,
                          .delimiter = j->delimiter,
                          .start_after = j->start_after,
                          .continuation_token = j->token,
                          .max_keys = j->max_keys,
                          .max_bytes = s->opts.max_list_bytes,
                          .count_metadata = j->include_metadata};
    list_owner lo = {s, j->ring_epoch, j->bucket};
    shard_list_result res = {.next_token = OM_BUF_INIT};
    list_acc a = {.bucket = (const char *)j->bucket.p, .include_metadata = j->include_metadata};
    char err[512] = "";
    om_status st;

    /* objmeta.proto: max_keys 0 means the default (1000), larger values are clamped */
    if (req.max_keys == 0 || req.max_keys > SHARD_LIST_MAX)
        req.max_keys = SHARD_LIST_MAX;
    if (s->ring_check != NULL && j->ring_epoch != 0) {
        req.keep = list_owns; /* migration: list only the keys this shard owns */
        req.keep_arg = &lo;
    }
    st = shard_validate_bucket(j->bucket, err, sizeof(err));
    if (st != OM_OK)
        goto out;
    a.cap = req.max_keys;
    a.infos = calloc(a.cap, sizeof(*a.infos));
    a.entries = calloc(a.cap, sizeof(*a.entries));
    a.strs = calloc(a.cap, sizeof(*a.strs));
    a.keys = calloc(a.cap, sizeof(*a.keys));
    a.prefixes = calloc(a.cap, sizeof(*a.prefixes));
    if (!a.infos || !a.entries || !a.strs || !a.keys || !a.prefixes) {
        st = OM_ERR(OM_E_NOMEM);
        goto out;
    }
    st = shard_list(s->db, &req, list_on_entry, list_on_prefix, &a, &res, err, sizeof(err));
    if (st != OM_OK)
        goto out;
    if (om_buf_append_byte(&res.next_token, 0) != OM_OK) { /* NUL for protobuf-c */
        st = OM_ERR(OM_E_NOMEM);
        goto out;
    }
    lr.entries = a.entries;
    lr.n_entries = a.n_entries;
    lr.common_prefixes = a.prefixes;
    lr.n_common_prefixes = a.n_prefixes;
    lr.is_truncated = res.is_truncated;
    lr.next_continuation_token = (char *)res.next_token.p;
    lr.key_count = res.key_count;
    resp.body_case = OBJMETA__RESPONSE__BODY_LIST;
    resp.list = &lr;
    shard_answer(s, SHARD_OP_LIST, j->t0_ns, j->reply, &resp);
out:
    if (st != OM_OK)
        shard_answer_status(s, SHARD_OP_LIST, j->t0_ns, j->reply, st, err);
    for (size_t i = 0; i < a.n_entries; i++) {
        free(a.keys[i]);
        info_strings_free(&a.strs[i]);
    }
    for (size_t i = 0; i < a.n_prefixes; i++)
        free(a.prefixes[i]);
    free(a.infos);
    free(a.entries);
    free(a.strs);
    free(a.keys);
    free(a.prefixes);
    om_buf_free(&res.next_token);
}

static void
shard_run_job(shard *s, shard_job *j)
{
    switch (j->op) {
    case SHARD_OP_STORE:
    case SHARD_OP_DELETE:
        run_writes(s, &j, 1, NULL, false);
        break;
    case SHARD_OP_LIST:
        do_list(s, j);
        break;
    default:
        do_read(s, j->op, j->t0_ns, j->reply, j->bucket, j->key, NULL);
        break;
    }
}

/* ---- the pool ---- */

static bool
job_is_write(const shard_job *j)
{
    return j->op == SHARD_OP_STORE || j->op == SHARD_OP_DELETE;
}

/* Requires: q_mu held and the queue not empty. */
static shard_job *
queue_pop(shard *s)
{
    shard_job *j = s->q_head;

    s->q_head = j->next;
    if (s->q_head == NULL)
        s->q_tail = NULL;
    s->q_len--;
    return j;
}

/*
 * A worker takes one job, or -- when writes wait at the head of the queue --
 * up to SHARD_WRITE_BATCH of them (stopping after SHARD_WRITE_BATCH_BYTES), which
 * become one engine write with one
 * WAL fsync (Redis's appendfsync always batches a loop iteration the same way).
 */
static void *
shard_worker(void *arg)
{
    shard *s = arg;
    shard_job *jobs[SHARD_WRITE_BATCH]; /* 16 KiB of stack */

    pthread_setname_np(pthread_self(), "shard-worker"); /* for top -H and perf */

    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&s->q_mu);
        while (s->q_head == NULL && !s->q_stop)
            pthread_cond_wait(&s->q_cv, &s->q_mu);
        if (s->q_head == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&s->q_mu);
            return NULL;
        }
        jobs[n++] = queue_pop(s);
        size_t bytes = jobs[0]->mem_used;
        while (job_is_write(jobs[0]) && n < SHARD_WRITE_BATCH && bytes < SHARD_WRITE_BATCH_BYTES &&
               s->q_head != NULL && job_is_write(s->q_head)) {
            bytes += s->q_head->mem_used;
            jobs[n++] = queue_pop(s);
        }
        pthread_mutex_unlock(&s->q_mu);
        if (job_is_write(jobs[0]))
            run_writes(s, jobs, n, NULL, false);
        else
            shard_run_job(s, jobs[0]);
        for (size_t i = 0; i < n; i++)
            job_free(s, jobs[i]);
    }
}

om_status
shard_pool_start(shard *s)
{
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);
    s->workers = calloc((size_t)s->opts.workers, sizeof(pthread_t));
    if (s->workers == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (int i = 0; i < s->opts.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, shard_worker, s) != 0) {
            om_log(OM_LOG_ERROR, "cannot start worker thread index=%d", i);
            shard_pool_stop(s);
            return OM_ERR(OM_E_NOMEM);
        }
        s->n_workers++;
    }
    return OM_OK;
}

void
shard_pool_stop(shard *s)
{
    pthread_mutex_lock(&s->q_mu);
    s->q_stop = true;
    pthread_cond_broadcast(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
    free(s->workers);
    s->workers = NULL;
    pthread_cond_destroy(&s->q_cv);
    pthread_mutex_destroy(&s->q_mu);
}

static void
shard_enqueue(shard *s, shard_job *j)
{
    pthread_mutex_lock(&s->q_mu);
    j->next = NULL;
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    s->q_len++;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
}

/* ---- writes on the loop thread ---- */

/*
 * With a loop attached (shard_attach_loop), Store and Delete are not handed
 * to the pool: the handler appends them to a pending list and activates
 * flush_ev once; libevent runs it after the other callbacks already active in
 * this loop iteration (the other connections' reads), and it runs everything
 * pending as batches of shard_write_many (a group) and answers on the loop
 * thread. This is Redis's appendfsync-always design.
 *
 * Without a sync thread each group's lsm_write syncs the WAL, and the loop
 * blocks meanwhile. With one (async_sync: opts.sync_thread, LSM_SYNC_ALWAYS),
 * the loop counts the group in gen_started, writes it with lsm_write_nosync
 * and asks the "shard-sync" thread to lsm_sync up to it, unless a sync is
 * already running: then the groups written meanwhile are synced right after
 * it, by one sync. The loop goes on reading and answering; but every reply
 * it makes while a written group is not yet durable -- a read may show that
 * group's data, a Store's version may follow it -- is packed and held
 * (shard_answer), and released in order when the sync thread reports, through
 * an eventfd, the sync that covers it. Redis does the same: replies leave
 * after the AOF fsync of their iteration. A failed sync (the engine then
 * refuses every write) turns the held replies into errors, and so every
 * later reply that could depend on an unsynced write. Threads other than the
 * loop wait in shard_answer until the groups written before they read are
 * durable.
 */

/* Ask the sync thread to cover every group written so far, unless it is busy. Loop thread. */
static void
shard_sync_request(shard *s)
{
    uint64_t gen = atomic_load_explicit(&s->gen_started, memory_order_relaxed);

    if (s->sync_busy || gen <= s->loop_durable || s->loop_sync_err != OM_OK)
        return;
    pthread_mutex_lock(&s->dur_mu);
    s->sync_req = gen;
    pthread_cond_signal(&s->req_cv);
    pthread_mutex_unlock(&s->dur_mu);
    s->sync_busy = true;
}

static void shard_writer_answer(shard *s);

/*
 * Take the sync thread's results, release what they cover, start the next
 * sync (with the writer thread: take its finished writes and answer those
 * the results cover; the writer asks for the syncs). Loop thread.
 */
static void
shard_sync_collect(shard *s)
{
    pthread_mutex_lock(&s->dur_mu);
    s->loop_durable = s->durable;
    s->loop_sync_err = s->sync_err;
    s->sync_busy = s->sync_done < s->sync_req;
    if (s->writer_mode && s->done_head != NULL) {
        if (s->fin_tail != NULL)
            s->fin_tail->next = s->done_head;
        else
            s->fin_head = s->done_head;
        s->fin_tail = s->done_tail;
        s->done_head = s->done_tail = NULL;
    }
    pthread_mutex_unlock(&s->dur_mu);
    shard_held_release(s);
    if (s->writer_mode)
        shard_writer_answer(s);
    else
        shard_sync_request(s);
}

static void
shard_sync_done_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;

    (void)what;
    shard_loop_self = arg;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    shard_sync_collect(arg);
}

static void *
shard_sync_main(void *arg)
{
    shard *s = arg;

    pthread_setname_np(pthread_self(), "shard-sync"); /* for top -H and perf */
    pthread_mutex_lock(&s->dur_mu);
    for (;;) {
        uint64_t target, one = 1;
        om_status st;

        while (s->sync_req == s->sync_done && !s->sync_stop)
            pthread_cond_wait(&s->req_cv, &s->dur_mu);
        if (s->sync_req == s->sync_done)
            break; /* stopping, and every request is done */
        target = s->sync_req;
        pthread_mutex_unlock(&s->dur_mu);
        st = lsm_sync(s->db); /* the loop's later writes go on meanwhile */
        if (st != OM_OK) {
            int none = OM_OK;
            om_log(OM_LOG_ERROR, "WAL sync failed status=%s", om_status_str(st));
            atomic_compare_exchange_strong(&s->engine_error, &none, (int)st);
        }
        pthread_mutex_lock(&s->dur_mu);
        s->sync_done = target;
        if (st == OM_OK && target > s->durable)
            s->durable = target;
        else if (st != OM_OK && s->sync_err == OM_OK)
            s->sync_err = st;
        pthread_cond_broadcast(&s->dur_cv);
        while (write(s->sync_efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&s->dur_mu);
    return NULL;
}

/*
 * Take the next write group off the job list at *head: at most
 * SHARD_WRITE_BATCH jobs, and none more once SHARD_WRITE_BATCH_BYTES of
 * them are taken. Returns how many went to batch.
 */
static size_t
take_group(shard_job **head, shard_job **batch)
{
    size_t n = 0, bytes = 0;

    while (*head != NULL && n < SHARD_WRITE_BATCH && (n == 0 || bytes < SHARD_WRITE_BATCH_BYTES)) {
        bytes += (*head)->mem_used;
        batch[n++] = *head;
        *head = (*head)->next;
    }
    return n;
}

/* ---- the writer thread ---- */

/*
 * With opts.writer_thread (and overlapped syncs, above), the loop does not
 * run the writes either: shard_flush_cb hands the loop iteration's pending
 * Store/Delete jobs to the "shard-writer" thread, through a FIFO under wq_mu,
 * and goes back to reading and answering, so that the network I/O and
 * protobuf work of the loop and the engine work of the writes (the read
 * before each write, the WAL write, the memtable insert) run on two cores.
 * The writer takes everything queued whenever it is free -- the jobs that
 * arrived while it wrote the last group, a natural group commit -- and
 * turns it into groups of at most SHARD_WRITE_BATCH jobs (or
 * SHARD_WRITE_BATCH_BYTES), one shard_write_many each. One writer and a FIFO:
 * the writes of a key are applied in the order the loop received them, from
 * one connection or many; conditions and versions are decided under the
 * stripe locks as before (shard.c).
 *
 * For each group the writer
 *   1. counts it in gen_started BEFORE writing it. This is what keeps the
 *      loop's reads honest: a Retrieve on the loop that sees the group's
 *      data (the memtable insert happens after the count, and the engine's
 *      publication of the insert orders the two) then reads gen_started at
 *      least as large as the group (shard_answer, acquire) and so holds its
 *      reply until the group is durable;
 *   2. writes it with nosync, keeping each job's status, info and error text
 *      in the job;
 *   3. under dur_mu, appends the jobs, tagged with the group, to the done
 *      list and raises sync_req to the group (only the writer asks for syncs
 *      in this mode: a group is asked for once it is completely written).
 *      If a sync already failed, no sync will report these jobs: the writer
 *      wakes the loop through sync_efd itself.
 * The sync thread syncs and reports through sync_efd (as above); the loop
 * (shard_sync_collect) moves the done list to its own list (fin_*) and
 * answers, in order, the jobs whose group the syncs made durable -- with
 * that group as the reply's dependency (shard_answer_gen), so they go out at
 * once -- or, after a failed sync, answers every job not covered with the
 * error. The writer never answers: a reply always leaves from the loop,
 * after the sync that covers it.
 *
 * Backpressure: the loop adds jobs to the writer's queue only while it holds
 * fewer than SHARD_WRITER_QUEUE_JOBS jobs and SHARD_WRITER_QUEUE_BYTES bytes
 * of them (so it holds at most one job more than that: a single job larger
 * than the byte bound still goes through); beyond that the loop thread
 * blocks on wq_space_cv until the writer takes the queue, and hands over the
 * rest of the loop iteration's jobs then. At most the queue plus what the
 * writer holds (the previous queue) are in flight, besides the written jobs
 * waiting for their sync, which rpc's limits on requests in flight bound.
 * The writer never waits for the loop, so the loop's wait ends.
 *
 * Shutdown (shard_detach_loop): the pending jobs are handed over, the writer
 * writes everything queued and exits (joined), shard_sync_stop syncs the rest
 * and its collect answers every job (or fails it when a sync failed).
 */
#define SHARD_WRITER_QUEUE_JOBS (4 * SHARD_WRITE_BATCH)
#define SHARD_WRITER_QUEUE_BYTES (4 * SHARD_WRITE_BATCH_BYTES)

/*
 * A small iteration's writes while the writer is idle (nothing queued, nor
 * being written: only the loop queues, so it stays idle meanwhile) are
 * written by the loop itself, the writer's way (shard_writer_group): at
 * pipeline depth 1 a batch is a few writes, and the hop to the writer and
 * back would cost more than the writes. The FIFO order holds: everything
 * handed to the writer before is written. Returns false (nothing done) when
 * the writer is busy or the batch is larger than SHARD_WRITER_INLINE_JOBS.
 * Loop thread.
 */
#define SHARD_WRITER_INLINE_JOBS 64

static void shard_writer_group(shard *s, shard_job **jobs, size_t n, shard_write *w);

static bool
shard_writer_inline(shard *s)
{
    shard_job *batch[SHARD_WRITER_INLINE_JOBS];
    size_t n = 0;
    bool idle;

    for (shard_job *j = s->pend_head; j != NULL; j = j->next) {
        if (n == SHARD_WRITER_INLINE_JOBS)
            return false;
        batch[n++] = j;
    }
    if (n == 0)
        return true;
    if (s->flush_w == NULL &&
        (s->flush_w = malloc(SHARD_WRITE_BATCH * sizeof(*s->flush_w))) == NULL)
        return false;
    pthread_mutex_lock(&s->wq_mu);
    idle = s->wq_writer_idle && s->wq_head == NULL;
    pthread_mutex_unlock(&s->wq_mu);
    if (!idle)
        return false;
    s->pend_head = s->pend_tail = NULL;
    shard_writer_group(s, batch, n, s->flush_w);
    return true;
}

/* Hand the pending jobs to the writer, waiting while its queue is full. Loop thread. */
static void
shard_writer_submit(shard *s)
{
    shard_job *head = s->pend_head, *tail = s->pend_tail;
    size_t n = 0, bytes = 0;

    s->pend_head = s->pend_tail = NULL;
    if (head == NULL)
        return;
    for (const shard_job *j = head; j != NULL; j = j->next) {
        n++;
        bytes += j->mem_used;
    }
    pthread_mutex_lock(&s->wq_mu);
    while (head != NULL) {
        while (s->wq_head != NULL &&
               (s->wq_n >= SHARD_WRITER_QUEUE_JOBS || s->wq_bytes >= SHARD_WRITER_QUEUE_BYTES)) {
            s->wq_loop_waiting = true;
            atomic_fetch_add_explicit(&s->wq_full_waits, 1, memory_order_relaxed);
            pthread_cond_wait(&s->wq_space_cv, &s->wq_mu);
        }
        s->wq_loop_waiting = false;
        if (s->wq_n + n <= SHARD_WRITER_QUEUE_JOBS &&
            s->wq_bytes + bytes <= SHARD_WRITER_QUEUE_BYTES) {
            /* the common case: everything fits */
            if (s->wq_tail != NULL)
                s->wq_tail->next = head;
            else
                s->wq_head = head;
            s->wq_tail = tail;
            s->wq_n += n;
            s->wq_bytes += bytes;
            head = NULL;
        } else {
            /* as much as fits (at least one job), the rest once the writer took the queue */
            do {
                shard_job *j = head;

                head = j->next;
                j->next = NULL;
                if (s->wq_tail != NULL)
                    s->wq_tail->next = j;
                else
                    s->wq_head = j;
                s->wq_tail = j;
                s->wq_n++;
                s->wq_bytes += j->mem_used;
                n--;
                bytes -= j->mem_used;
            } while (head != NULL && s->wq_n < SHARD_WRITER_QUEUE_JOBS &&
                     s->wq_bytes < SHARD_WRITER_QUEUE_BYTES);
        }
        if (s->wq_writer_idle)
            pthread_cond_signal(&s->wq_cv);
    }
    pthread_mutex_unlock(&s->wq_mu);
}

/*
 * Write one group (jobs[0..n-1]) with w (room for n writes) and pass it to
 * the loop (see above). The writer thread, or the loop while the writer is
 * idle (shard_writer_inline).
 */
static void
shard_writer_group(shard *s, shard_job **jobs, size_t n, shard_write *w)
{
    uint64_t gen = atomic_fetch_add(&s->gen_started, 1) + 1; /* 1. counted before it is written */

    for (size_t i = 0; i < n; i++)
        job_to_write(jobs[i], &w[i]);
    shard_write_many_ex(s, w, n, true); /* 2. */
    for (size_t i = 0; i < n; i++) {
        shard_job *j = jobs[i];

        j->gen = gen;
        j->wstatus = w[i].status;
        j->winfo = w[i].info;
        j->werr = w[i].status != OM_OK && w[i].err[0] ? strdup(w[i].err) : NULL;
        j->next = i + 1 < n ? jobs[i + 1] : NULL;
    }
    pthread_mutex_lock(&s->dur_mu); /* 3. */
    if (s->done_tail != NULL)
        s->done_tail->next = jobs[0];
    else
        s->done_head = jobs[0];
    s->done_tail = jobs[n - 1];
    if (s->sync_err != OM_OK) {
        uint64_t one = 1;

        while (write(s->sync_efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    } else if (gen > s->sync_req) {
        s->sync_req = gen;
        pthread_cond_signal(&s->req_cv);
    }
    pthread_mutex_unlock(&s->dur_mu);
}

static void *
shard_writer_main(void *arg)
{
    shard *s = arg;
    shard_job *batch[SHARD_WRITE_BATCH]; /* 16 KiB of stack */

    pthread_setname_np(pthread_self(), "shard-writer"); /* for top -H and perf */
    pthread_mutex_lock(&s->wq_mu);
    for (;;) {
        shard_job *head;

        while (s->wq_head == NULL && !s->wq_stop) {
            s->wq_writer_idle = true;
            pthread_cond_wait(&s->wq_cv, &s->wq_mu);
        }
        s->wq_writer_idle = false;
        if (s->wq_head == NULL)
            break;         /* stopping, and everything handed over is written */
        head = s->wq_head; /* everything queued */
        s->wq_head = s->wq_tail = NULL;
        s->wq_n = s->wq_bytes = 0;
        if (s->wq_loop_waiting)
            pthread_cond_signal(&s->wq_space_cv);
        pthread_mutex_unlock(&s->wq_mu);
        while (head != NULL) {
            size_t n = take_group(&head, batch);
            shard_writer_group(s, batch, n, s->writer_w);
        }
        pthread_mutex_lock(&s->wq_mu);
    }
    pthread_mutex_unlock(&s->wq_mu);
    return NULL;
}

/*
 * Answer the writer's jobs the loop's last sync results cover, in order:
 * those of a durable group as made, the others with the error of a failed
 * sync. Loop thread (shard_sync_collect).
 */
static void
shard_writer_answer(shard *s)
{
    while (s->fin_head != NULL &&
           (s->fin_head->gen <= s->loop_durable || s->loop_sync_err != OM_OK)) {
        shard_job *j = s->fin_head;
        shard_write w;

        s->fin_head = j->next;
        if (s->fin_head == NULL)
            s->fin_tail = NULL;
        w.status = j->wstatus;
        w.info = j->winfo;
        snprintf(w.err, sizeof(w.err), "%s", j->werr != NULL ? j->werr : "");
        shard_answer_gen = j->gen; /* shard_answer holds it unless its group is durable */
        answer_write(s, j, &w);
        shard_answer_gen = 0;
        free(j->werr);
        job_free(s, j);
    }
}

static om_status
shard_writer_start(shard *s)
{
    s->writer_w = malloc(SHARD_WRITE_BATCH * sizeof(*s->writer_w));
    if (s->writer_w == NULL)
        return OM_ERR(OM_E_NOMEM);
    pthread_mutex_init(&s->wq_mu, NULL);
    pthread_cond_init(&s->wq_cv, NULL);
    pthread_cond_init(&s->wq_space_cv, NULL);
    s->wq_head = s->wq_tail = NULL;
    s->wq_n = s->wq_bytes = 0;
    s->wq_stop = s->wq_writer_idle = s->wq_loop_waiting = false;
    s->done_head = s->done_tail = s->fin_head = s->fin_tail = NULL;
    if (pthread_create(&s->writer, NULL, shard_writer_main, s) != 0) {
        om_log(OM_LOG_ERROR, "cannot start the writer thread");
        pthread_cond_destroy(&s->wq_space_cv);
        pthread_cond_destroy(&s->wq_cv);
        pthread_mutex_destroy(&s->wq_mu);
        free(s->writer_w);
        s->writer_w = NULL;
        return OM_ERR(OM_E_NOMEM);
    }
    s->have_writer = true;
    s->writer_mode = true;
    return OM_OK;
}

/* Let the writer write everything handed to it, join it (detach; the loop is not running). */
static void
shard_writer_stop(shard *s)
{
    pthread_mutex_lock(&s->wq_mu);
    s->wq_stop = true;
    pthread_cond_signal(&s->wq_cv);
    pthread_mutex_unlock(&s->wq_mu);
    pthread_join(s->writer, NULL);
    s->have_writer = false;
    pthread_cond_destroy(&s->wq_space_cv);
    pthread_cond_destroy(&s->wq_cv);
    pthread_mutex_destroy(&s->wq_mu);
    free(s->writer_w);
    s->writer_w = NULL;
}

static void
shard_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    shard *s = arg;
    shard_job *head = s->pend_head;
    shard_job *batch[SHARD_WRITE_BATCH]; /* 16 KiB of stack */

    shard_loop_self = s;
    if (s->writer_mode) {
        if (!shard_writer_inline(s))
            shard_writer_submit(s);
        return;
    }
    s->pend_head = s->pend_tail = NULL;
    if (head == NULL)
        return;
    /* the writes of one batch, kept for the next (loop thread only; freed at detach) */
    if (s->flush_w == NULL)
        s->flush_w = malloc(SHARD_WRITE_BATCH * sizeof(*s->flush_w));
    /* counted before it is written: a reader that sees the group sees the count */
    if (s->async_sync)
        atomic_fetch_add(&s->gen_started, 1);
    while (head != NULL) {
        size_t n = take_group(&head, batch);
        run_writes(s, batch, n, s->flush_w, s->async_sync);
        for (size_t i = 0; i < n; i++)
            job_free(s, batch[i]);
    }
    if (s->async_sync)
        shard_sync_request(s);
}

static om_status
shard_sync_start(shard *s, struct event_base *base)
{
    s->sync_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->sync_efd < 0) {
        om_log(OM_LOG_ERROR, "eventfd failed err=%s", strerror(errno));
        return OM_ERR(OM_E_IO);
    }
    s->sync_ev = event_new(base, s->sync_efd, EV_READ | EV_PERSIST, shard_sync_done_cb, s);
    if (s->sync_ev == NULL || event_add(s->sync_ev, NULL) != 0)
        goto fail;
    pthread_mutex_init(&s->dur_mu, NULL);
    pthread_cond_init(&s->req_cv, NULL);
    pthread_cond_init(&s->dur_cv, NULL);
    s->sync_req = s->sync_done = s->durable = s->loop_durable = 0;
    atomic_store(&s->gen_started, 0);
    s->sync_err = s->loop_sync_err = OM_OK;
    s->sync_stop = s->sync_busy = false;
    if (pthread_create(&s->sync_thread, NULL, shard_sync_main, s) != 0) {
        pthread_cond_destroy(&s->dur_cv);
        pthread_cond_destroy(&s->req_cv);
        pthread_mutex_destroy(&s->dur_mu);
        goto fail;
    }
    s->have_sync_thread = true;
    s->async_sync = true;
    return OM_OK;
fail:
    if (s->sync_ev != NULL)
        event_free(s->sync_ev);
    s->sync_ev = NULL;
    close(s->sync_efd);
    s->sync_efd = -1;
    return OM_ERR(OM_E_NOMEM);
}

/*
 * Detach: stop the sync thread once it has done what it was asked, sync the
 * rest here, release every held reply (or fail it), free the events.
 */
static void
shard_sync_stop(shard *s)
{
    uint64_t gen;

    pthread_mutex_lock(&s->dur_mu);
    s->sync_stop = true;
    pthread_cond_signal(&s->req_cv);
    pthread_mutex_unlock(&s->dur_mu);
    pthread_join(s->sync_thread, NULL);
    s->have_sync_thread = false;
    gen = atomic_load(&s->gen_started);
    pthread_mutex_lock(&s->dur_mu);
    if (s->durable < gen && s->sync_err == OM_OK) {
        om_status st;

        pthread_mutex_unlock(&s->dur_mu);
        st = lsm_sync(s->db);
        pthread_mutex_lock(&s->dur_mu);
        if (st == OM_OK)
            s->durable = gen;
        else
            s->sync_err = st;
    }
    s->sync_req = s->sync_done = gen;
    pthread_cond_broadcast(&s->dur_cv);
    pthread_mutex_unlock(&s->dur_mu);
    shard_sync_collect(s);
    event_free(s->sync_ev);
    s->sync_ev = NULL;
    close(s->sync_efd);
    s->sync_efd = -1;
}

om_status
shard_attach_loop(shard *s, struct event_base *base)
{
    s->flush_ev = event_new(base, -1, 0, shard_flush_cb, s);
    if (s->flush_ev == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (s->opts.sync_thread && s->opts.lsm.sync_mode == LSM_SYNC_ALWAYS) {
        om_status st = shard_sync_start(s, base);

        if (st == OM_OK && s->opts.writer_thread)
            st = shard_writer_start(s);
        if (st != OM_OK) {
            if (s->have_sync_thread)
                shard_sync_stop(s);
            s->async_sync = false;
            event_free(s->flush_ev);
            s->flush_ev = NULL;
            return st;
        }
    }
    return OM_OK;
}

void
shard_detach_loop(shard *s)
{
    if (s->flush_ev == NULL)
        return;
    shard_loop_self = s;      /* the loop thread, or the one closing the shard after it */
    shard_flush_cb(-1, 0, s); /* answer what is pending (dropped if the server is gone) */
    if (s->have_writer)
        shard_writer_stop(s); /* it writes everything handed to it, then exits */
    if (s->have_sync_thread)
        shard_sync_stop(s); /* syncs the rest; answers the writer's jobs (collect) */
    s->writer_mode = false;
    event_free(s->flush_ev);
    s->flush_ev = NULL;
    free(s->flush_w);
    s->flush_w = NULL;
    /* every job and held reply was answered above: their memory goes now */
    shard_fifo_fini(&s->job_mem);
    shard_fifo_fini(&s->held_mem);
}

static void
shard_submit_write(shard *s, shard_job *j)
{
    if (s->flush_ev == NULL) {
        shard_enqueue(s, j);
        return;
    }
    j->next = NULL;
    if (s->pend_tail != NULL)
        s->pend_tail->next = j;
    else
        s->pend_head = j;
    s->pend_tail = j;
    if (s->pend_head == j)
        event_active(s->flush_ev, EV_TIMEOUT, 0);
}

/* Copy n bytes into the job's memory, NUL-terminated. */
static om_slice
job_copy(shard_job *j, const void *p, size_t n)
{
    uint8_t *d = j->mem + j->mem_used;

    if (n > 0)
        memcpy(d, p, n);
    d[n] = 0;
    j->mem_used += n + 1;
    return om_slice_make(d, n);
}

static size_t
str_len(const char *s)
{
    return s ? strlen(s) : 0;
}

/*
 * A job with room for `bytes` of copied strings (plus one NUL per string).
 * A Store or Delete that will run on the loop thread (a loop is attached:
 * shard_submit_write batches it there) takes its memory from s->job_mem,
 * recycled after its write group; every other job is malloc'ed (a worker
 * frees it). Release with job_free (above).
 */
static shard_job *
job_new(shard *s, shard_op op, rpc_reply *reply, uint64_t t0, size_t bytes)
{
    size_t n = sizeof(shard_job) + bytes + 16;
    bool fifo = s->flush_ev != NULL && (op == SHARD_OP_STORE || op == SHARD_OP_DELETE);
    shard_job *j = fifo ? shard_fifo_alloc(&s->job_mem, n) : malloc(n);

    if (j == NULL)
        return NULL;
    memset(j, 0, sizeof(*j));
    j->op = op;
    j->reply = reply;
    j->t0_ns = t0;
    j->in_fifo = fifo;
    j->mem = (uint8_t *)(j + 1);
    return j;
}

/* ---- Ping and Stats ---- */

static void
do_ping(shard *s, const Objmeta__PingRequest *p, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
    char server[256];

    snprintf(server, sizeof(server), "objmeta-shard/%s id=%s", OM_VERSION, s->id);
    if (p != NULL)
        pr.payload = p->payload;
    pr.server = server;
    pr.ring_epoch = 0;
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    shard_answer(s, SHARD_OP_PING, t0, reply, &resp);
}

typedef struct stat_item {
    const char *name;
    uint64_t value;
} stat_item;

static size_t
shard_stat_items(shard *s, stat_item *v, size_t cap, char names[][48])
{
    lsm_stats ls;
    size_t n = 0;

    lsm_stats_get(s->db, &ls);
#define ADD(nm, val)                                                                               \
    do {                                                                                           \
        if (n < cap)                                                                               \
            v[n++] = (stat_item){(nm), (uint64_t)(val)};                                           \
    } while (0)
    ADD("lsm.memtable_bytes", ls.memtable_bytes);
    ADD("lsm.live_sst_bytes", ls.live_sst_bytes);
    ADD("lsm.user_bytes_written", ls.user_bytes_written);
    ADD("lsm.wal_bytes_written", ls.wal_bytes_written);
    ADD("lsm.flush_bytes_written", ls.flush_bytes_written);
    ADD("lsm.compaction_bytes_read", ls.compaction_bytes_read);
    ADD("lsm.compaction_bytes_written", ls.compaction_bytes_written);
    ADD("lsm.cache_hits", ls.cache_hits);
    ADD("lsm.cache_misses", ls.cache_misses);
    ADD("lsm.row_cache_hits", ls.row_cache_hits);
    ADD("lsm.block_cache_bytes", ls.block_cache_bytes);
    ADD("lsm.row_cache_bytes", ls.row_cache_bytes);
    ADD("lsm.mem_pool_bytes", ls.mem_pool_bytes);
    ADD("lsm.bloom_checks", ls.bloom_checks);
    ADD("lsm.bloom_useful", ls.bloom_useful);
    ADD("lsm.stall_micros", ls.stall_micros);
    ADD("lsm.wal_syncs", ls.wal_syncs);
    ADD("lsm.wal_synced_writes", ls.wal_synced_writes);
    ADD("lsm.flushes", ls.flushes);
    ADD("lsm.compactions", ls.compactions);
    ADD("lsm.last_sequence", ls.last_sequence);
    ADD("shard.writer_queue_waits", atomic_load(&s->wq_full_waits));
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        snprintf(names[2 * l], 48, "lsm.level%d.files", l);
        snprintf(names[2 * l + 1], 48, "lsm.level%d.bytes", l);
        ADD(names[2 * l], ls.levels[l].files);
        ADD(names[2 * l + 1], ls.levels[l].bytes);
    }
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        uint64_t total = 0;
        for (int k = 0; k < SHARD_NSTATUS; k++)
            total += atomic_load_explicit(&s->answers[op][k], memory_order_relaxed);
        snprintf(names[2 * LSM_MAX_LEVELS + op], 48, "shard.requests.%s",
                 shard_op_name((shard_op)op));
        ADD(names[2 * LSM_MAX_LEVELS + op], total);
    }
#undef ADD
    return n;
}

static void
do_stats(shard *s, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__StatsResponse sr = OBJMETA__STATS_RESPONSE__INIT;
    Objmeta__StatsCounter ctr[64], *ptr[64];
    stat_item items[64];
    char names[2 * LSM_MAX_LEVELS + SHARD_OP_COUNT_][48];
    om_buf text = OM_BUF_INIT;
    size_t n = shard_stat_items(s, items, 64, names);
    om_status st = OM_OK;

    for (size_t i = 0; i < n && st == OM_OK; i++) {
        objmeta__stats_counter__init(&ctr[i]);
        ctr[i].name = (char *)items[i].name;
        ctr[i].value = items[i].value;
        ptr[i] = &ctr[i];
        st =
            om_buf_printf(&text, "%-32s %llu\n", items[i].name, (unsigned long long)items[i].value);
    }
    if (st == OM_OK && text.n == 0)
        st = om_buf_printf(&text, "%s", "");
    if (st != OM_OK) {
        shard_answer_status(s, SHARD_OP_STATS, t0, reply, st, "out of memory");
    } else {
        sr.counters = ptr;
        sr.n_counters = n;
        sr.text = (char *)text.p;
        resp.body_case = OBJMETA__RESPONSE__BODY_STATS;
        resp.stats = &sr;
        shard_answer(s, SHARD_OP_STATS, t0, reply, &resp);
    }
    om_buf_free(&text);
}

/* ---- the handler ---- */

static bool
shard_fenced(shard *s, const Objmeta__Request *req, shard_op op, const char *bucket,
             const char *key, uint64_t t0, rpc_reply *reply)
{
    char err[512] = "";
    om_status st;

    if (s->ring_check == NULL)
        return false;
    st = s->ring_check(s->ring_check_arg, req->ring_epoch, om_slice_from_str(bucket),
                       om_slice_from_str(key ? key : ""), err, sizeof(err));
    if (st == OM_OK)
        return false;
    shard_answer_status(s, op, t0, reply, st, err[0] ? err : "not the owner of this key");
    return true;
}

static void
shard_submit_keyed(shard *s, shard_op op, const Objmeta__Request *req, const char *bucket,
                   const char *key, uint64_t t0, rpc_reply *reply)
{
    shard_job *j;

    if (shard_fenced(s, req, op, bucket, key, t0, reply))
        return;
    if (s->opts.inline_reads) {
        /* the loop thread's record buffer, kept across requests (shard_int.h) */
        do_read(s, op, t0, reply, om_slice_from_str(bucket), om_slice_from_str(key), &s->read_buf);
        return;
    }
    j = job_new(s, op, reply, t0, str_len(bucket) + str_len(key));
    if (j == NULL) {
        shard_answer_status(s, op, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->bucket = job_copy(j, bucket, str_len(bucket));
    j->key = job_copy(j, key, str_len(key));
    shard_enqueue(s, j);
}

/*
 * Submit a Store or Delete job, with the migration's forced version when the
 * request carries one (0 is never a version a shard assigns, so it is refused).
 */
static void
job_submit_forced(shard *s, shard_job *j, bool has_forced, uint64_t forced_version)
{
    if (has_forced) {
        if (forced_version == 0) {
            shard_answer_status(s, j->op, j->t0_ns, j->reply, OM_E_INVALID,
                                "forced_version: must not be 0");
            job_free(s, j);
            return;
        }
        j->forced_version = forced_version;
    }
    shard_submit_write(s, j);
}

static void
submit_store(shard *s, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    const Objmeta__StoreRequest *r = req->store;
    shard_job *j;

    if (shard_fenced(s, req, SHARD_OP_STORE, r->bucket, r->key, t0, reply))
        return;
    j = job_new(s, SHARD_OP_STORE, reply, t0,
                str_len(r->bucket) + str_len(r->key) + r->data.len + str_len(r->metadata_json) +
                    str_len(r->content_type));
    if (j == NULL) {
        shard_answer_status(s, SHARD_OP_STORE, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->bucket = job_copy(j, r->bucket, str_len(r->bucket));
    j->key = job_copy(j, r->key, str_len(r->key));
    j->data = job_copy(j, r->data.data, r->data.len);
    j->metadata = job_copy(j, r->metadata_json, str_len(r->metadata_json));
    j->content_type = job_copy(j, r->content_type, str_len(r->content_type));
    if (r->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT && r->if_absent)
        j->cond.kind = SHARD_COND_IF_ABSENT;
    else if (r->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION) {
        j->cond.kind = SHARD_COND_IF_VERSION;
        j->cond.version = r->if_version;
    }
    job_submit_forced(s, j, r->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION,
                      r->forced_version);
}

static void
submit_delete(shard *s, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    const Objmeta__DeleteRequest *r = req->delete_;
    shard_job *j;

    if (shard_fenced(s, req, SHARD_OP_DELETE, r->bucket, r->key, t0, reply))
        return;
    j = job_new(s, SHARD_OP_DELETE, reply, t0, str_len(r->bucket) + str_len(r->key));
    if (j == NULL) {
        shard_answer_status(s, SHARD_OP_DELETE, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->bucket = job_copy(j, r->bucket, str_len(r->bucket));
    j->key = job_copy(j, r->key, str_len(r->key));
    if (r->condition_case == OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION) {
        j->cond.kind = SHARD_COND_IF_VERSION;
        j->cond.version = r->if_version;
    }
    job_submit_forced(s, j, r->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION,
                      r->forced_version);
}

static void
submit_list(shard *s, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    const Objmeta__ListRequest *r = req->list;
    shard_job *j;

    if (shard_fenced(s, req, SHARD_OP_LIST, r->bucket, "", t0, reply))
        return;
    j = job_new(s, SHARD_OP_LIST, reply, t0,
                str_len(r->bucket) + str_len(r->prefix) + str_len(r->delimiter) +
                    str_len(r->start_after) + str_len(r->continuation_token));
    if (j == NULL) {
        shard_answer_status(s, SHARD_OP_LIST, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->bucket = job_copy(j, r->bucket, str_len(r->bucket));
    j->prefix = job_copy(j, r->prefix, str_len(r->prefix));
    j->delimiter = job_copy(j, r->delimiter, str_len(r->delimiter));
    j->start_after = job_copy(j, r->start_after, str_len(r->start_after));
    j->token = job_copy(j, r->continuation_token, str_len(r->continuation_token));
    j->max_keys = r->max_keys;
    j->include_metadata = r->include_metadata;
    j->ring_epoch = req->ring_epoch;
    shard_enqueue(s, j);
}

void
shard_rpc_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    shard *s = arg;
    uint64_t t0 = rpc_reply_start_ns(reply); /* when rpc read the request: no clock read here */

    shard_loop_self = s;
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE:
        submit_store(s, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        shard_submit_keyed(s, SHARD_OP_RETRIEVE, req, req->retrieve->bucket, req->retrieve->key, t0,
                           reply);
        break;
    case OBJMETA__REQUEST__BODY_HEAD:
        shard_submit_keyed(s, SHARD_OP_HEAD, req, req->head->bucket, req->head->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_EXISTS:
        shard_submit_keyed(s, SHARD_OP_EXISTS, req, req->exists->bucket, req->exists->key, t0,
                           reply);
        break;
    case OBJMETA__REQUEST__BODY_DELETE:
        submit_delete(s, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_LIST:
        submit_list(s, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_STATS:
        do_stats(s, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_PING:
        do_ping(s, req->ping, t0, reply);
        break;
    default:
        shard_answer_status(s, SHARD_OP_OTHER, t0, reply, OM_E_INVALID,
                            "operation not served by objmeta-shard");
        break;
    }
}

void
shard_rpc_prefetch(void *arg, const rpc_key_hint *hints, size_t n)
{
    shard *s = arg;
    om_slice b[SHARD_PREFETCH_MAX], k[SHARD_PREFETCH_MAX];

    /*
     * Reads on workers run later: loading now would not help them. A lone
     * read gains nothing either: its get would wait for the same loads, one
     * after another, right after the hint.
     */
    if (!s->opts.inline_reads || n < 2)
        return;
    if (n > SHARD_PREFETCH_MAX)
        n = SHARD_PREFETCH_MAX;
    for (size_t i = 0; i < n; i++) {
        b[i] = hints[i].bucket;
        k[i] = hints[i].key;
    }
    shard_prefetch_reads(s, b, k, n);
}

/* ---- /metrics ---- */

om_status
shard_render_metrics(shard *s, om_buf *out)
{
    stat_item items[64];
    char names[2 * LSM_MAX_LEVELS + SHARD_OP_COUNT_][48];
    char labels[96];
    size_t n;

    OM_TRY(rpc_prom_header(out, "objmeta_shard_requests_total", "counter",
                           "Requests answered, by operation and status."));
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        for (int k = 0; k < SHARD_NSTATUS; k++) {
            uint64_t v = atomic_load_explicit(&s->answers[op][k], memory_order_relaxed);
            if (v == 0 && k != 0)
                continue;
            snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%s\"", shard_op_name((shard_op)op),
                     rpc_proto_status_name((Objmeta__Status)k));
            OM_TRY(rpc_prom_value(out, "objmeta_shard_requests_total", labels, (double)v));
        }
    }
    OM_TRY(rpc_prom_header(out, "objmeta_shard_request_duration_seconds", "histogram",
                           "Time from receiving a request to answering it, by operation."));
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", shard_op_name((shard_op)op));
        OM_TRY(rpc_hist_render(&s->latency[op], out, "objmeta_shard_request_duration_seconds",
                               labels));
    }
    pthread_mutex_lock(&s->q_mu);
    size_t qlen = s->q_len;
    pthread_mutex_unlock(&s->q_mu);
    OM_TRY(rpc_prom_header(out, "objmeta_shard_queue_length", "gauge",
                           "Requests waiting for a worker thread."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_queue_length", NULL, (double)qlen));
    OM_TRY(rpc_prom_header(out, "objmeta_shard_writer_queue_waits_total", "counter",
                           "Times the network loop waited for room in the writer thread's queue."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_writer_queue_waits_total", NULL,
                          (double)atomic_load(&s->wq_full_waits)));

    /* engine statistics, one gauge each: lsm.wal_syncs -> objmeta_lsm_wal_syncs */
    n = shard_stat_items(s, items, 64, names);
    for (size_t i = 0; i < n; i++) {
        char metric[96];
        size_t m = 0;
        if (strncmp(items[i].name, "lsm.", 4) != 0)
            continue;
        m = (size_t)snprintf(metric, sizeof(metric), "objmeta_%s", items[i].name);
        for (size_t c = 0; c < m && c < sizeof(metric); c++)
            if (metric[c] == '.')
                metric[c] = '_';
        OM_TRY(rpc_prom_header(out, metric, "gauge", "Storage engine statistic (lsm_stats)."));
        OM_TRY(rpc_prom_value(out, metric, NULL, (double)items[i].value));
    }
    return OM_OK;
}
