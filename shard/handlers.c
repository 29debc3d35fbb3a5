/*
 * shard/handlers.c -- protocol translation: a Request becomes a job (or is
 * answered at once), a job's result becomes a Response. Nothing here
 * decides durability, ownership or what is counted: the Response goes
 * through answer(), which hands it to the commit pipeline's gate
 * (shard/commit.h); the ring fence is shard/fence.c; counters, Stats and
 * /metrics are shard/metrics.c; a List page is shard/list_page.c; the
 * object operations are shard/shard.c.
 *
 * Where each request runs:
 *   Ping, Stats                  the handler (the loop thread)
 *   Retrieve, Head, Exists       the handler with opts.inline_reads (the
 *                                default: reads come from the memtable and
 *                                the block cache, and a thread hop would cost
 *                                more than the read), else the worker pool
 *   Store, Delete                the commit pipeline (commit_submit), which
 *                                calls back shard_job_write_group (job.c)
 *                                and answer_write
 *   List                         the worker pool (a scan must not block the
 *                                loop)
 * A job (job.h) carries copies of the request's strings, because rpc frees
 * the request when the handler returns. Jobs on the workers answer through
 * commit_wait (rpc_reply_send is thread-safe); the pool drains its queue on
 * shard_close, so every accepted request is answered during a graceful
 * shutdown.
 */
#define OM_LOG_MODULE "shard"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/fence.h"
#include "shard/job.h"
#include "shard/list_page.h"
#include "shard/metrics.h"
#include "shard/repl.h"
#include "shard/shard_int.h"

/* ---- answers ---- */

static void
answer(shard *s, const answer_to *to, const Objmeta__Response *resp)
{
    commit_reply r = {.reply = to->reply,
                      .resp = resp,
                      .tag = (unsigned)to->op,
                      .t0_ns = to->t0_ns,
                      .after = to->after};

    switch (to->via) {
    case ANSWER_GATE:
        commit_gate(s->commit, &r);
        break;
    case ANSWER_WAIT:
        commit_wait(s->commit, &r);
        break;
    case ANSWER_SEND:
        commit_send(s->commit, &r);
        break;
    }
}

/* An answer that is only a status (an error, or OK for operations without a body). */
static void
answer_status(shard *s, const answer_to *to, om_status st, const char *msg)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;

    resp.status = rpc_status_to_proto(st);
    resp.message = (char *)(msg && *msg ? msg : om_status_str(st));
    answer(s, to, &resp);
}

static om_status
shard_msg_nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return OM_ERR(OM_E_NOMEM);
}

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

/* Fill oi for (bucket, key) with the system fields `in`; etag: room for 16 hex digits. */
static void
object_info(Objmeta__ObjectInfo *oi, om_slice bucket, om_slice key, const shard_obj_info *in,
            char *etag)
{
    shard_etag_hex(in->etag, etag);
    oi->bucket = (char *)bucket.p;
    oi->key = (char *)key.p;
    oi->size = in->size;
    oi->etag = etag;
    oi->created_ms = in->created_ms;
    oi->modified_ms = in->modified_ms;
    oi->version = in->version;
}

/*
 * scratch: the record buffer to use (the loop thread passes one it keeps
 * across requests), or NULL for a buffer of this call's own.
 */
static void
do_read(shard *s, const answer_to *to, om_slice bucket, om_slice key, om_buf *scratch)
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

    if (to->op == SHARD_OP_EXISTS) {
        st = shard_exists(s, bucket, key, err, sizeof(err));
        if (st == OM_OK || st == OM_E_NOTFOUND) {
            /* Exists answers OK with exists=false for an absent key (objmeta.proto) */
            er.exists = st == OM_OK;
            resp.body_case = OBJMETA__RESPONSE__BODY_EXISTS;
            resp.exists = &er;
            answer(s, to, &resp);
        } else {
            answer_status(s, to, st, err);
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
        answer_status(s, to, st, err);
        goto out;
    }
    object_info(&oi, bucket, key,
                &(shard_obj_info){.version = rec.version,
                                  .size = rec.size,
                                  .etag = rec.etag,
                                  .created_ms = rec.created_ms,
                                  .modified_ms = rec.modified_ms},
                etag);
    if (to->op == SHARD_OP_RETRIEVE) {
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
    answer(s, to, &resp);
out:
    free(ctype_heap);
    free(meta_heap);
    if (raw == &own || raw->cap > READ_SCRATCH_KEEP)
        om_buf_free(raw);
}

/* ---- Store and Delete (the commit pipeline's callbacks) ---- */

/* commit_ops.answer: the Response of a written job, gated on its group. Loop thread. */
static void
answer_write(void *arg, commit_job *cj)
{
    shard *s = arg;
    shard_job *j = (shard_job *)cj;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__StoreResponse sr = OBJMETA__STORE_RESPONSE__INIT;
    Objmeta__DeleteResponse dr = OBJMETA__DELETE_RESPONSE__INIT;
    Objmeta__ObjectInfo oi = OBJMETA__OBJECT_INFO__INIT;
    char etag[17];

    if (j->barrier != NULL) {
        j->barrier(j->barrier_arg); /* every job before it is answered: written and durable */
        return;
    }
    if (j->other_answer != NULL) {
        j->other_answer(j->other_arg, cj->group);
        return;
    }
    j->to.after = cj->group;
    if (j->wstatus != OM_OK) {
        answer_status(s, &j->to, j->wstatus, j->werr);
        free(j->werr);
        return;
    }
    if (j->to.op == SHARD_OP_DELETE) {
        dr.version = j->winfo.version;
        dr.existed = true;
        resp.body_case = OBJMETA__RESPONSE__BODY_DELETE;
        resp.delete_ = &dr;
        answer(s, &j->to, &resp);
        return;
    }
    object_info(&oi, j->bucket, j->key, &j->winfo, etag);
    oi.content_type = (char *)j->content_type.p;
    sr.info = &oi;
    resp.body_case = OBJMETA__RESPONSE__BODY_STORE;
    resp.store = &sr;
    answer(s, &j->to, &resp);
}

void
shard_commit_ops(shard *s, commit_ops *ops)
{
    *ops = (commit_ops){.write = shard_job_write_group,
                        .answer = answer_write,
                        .sent = shard_metrics_sent,
                        .arg = s,
                        .write_scratch = COMMIT_GROUP_MAX * sizeof(shard_write)};
}

/* ---- List and the worker pool ---- */

static void
do_list(shard *s, shard_job *j)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    shard_list_args args = {.bucket = j->bucket,
                            .prefix = j->prefix,
                            .delimiter = j->delimiter,
                            .start_after = j->start_after,
                            .token = j->token,
                            .max_keys = j->max_keys,
                            .include_metadata = j->include_metadata,
                            .ring_epoch = j->ring_epoch};
    shard_list_page page;
    char err[512] = "";
    om_status st = shard_list_page_build(s, &args, &page, err, sizeof(err));

    if (st == OM_OK) {
        resp.body_case = OBJMETA__RESPONSE__BODY_LIST;
        resp.list = &page.lr;
        answer(s, &j->to, &resp);
    } else {
        answer_status(s, &j->to, st, err);
    }
    shard_list_page_fini(&page);
}

/* The worker pool's job runner (workq): a List or a read, then the job is freed. */
void
shard_pool_run(void *arg, workq_item *it)
{
    shard *s = arg;
    shard_job *j = (shard_job *)(void *)((uint8_t *)it - offsetof(shard_job, item));

    if (j->to.op == SHARD_OP_LIST)
        do_list(s, j);
    else
        do_read(s, &j->to, j->bucket, j->key, NULL);
    free(j);
}

/* Queue a job for the workers; a full queue or a stopping pool answers at once. */
static void
pool_push(shard *s, shard_job *j)
{
    om_status st;

    j->to.via = ANSWER_WAIT;
    st = workq_push(s->pool, &j->item);
    if (st == OM_OK)
        return;
    j->to.via = ANSWER_GATE;
    answer_status(s, &j->to, st,
                  st == OM_E_BUSY ? "too many requests queued for the workers"
                                  : "the shard is shutting down");
    free(j);
}

/* ---- requests into jobs ---- */

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
 * A job for `to` with room for `bytes` of copied strings (plus one NUL per
 * string), or NULL after answering "out of memory".
 */
static shard_job *
job_new(shard *s, const answer_to *to, size_t bytes)
{
    shard_job *j = shard_job_new(s, to->op == SHARD_OP_STORE || to->op == SHARD_OP_DELETE, bytes);

    if (j == NULL)
        answer_status(s, to, OM_E_NOMEM, "out of memory");
    else
        j->to = *to;
    return j;
}

/* ---- Ping and Stats ---- */

static void
do_ping(shard *s, const Objmeta__PingRequest *p, const answer_to *to)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
    Objmeta__ReplicationState rs = OBJMETA__REPLICATION_STATE__INIT;
    Objmeta__BackupState bs[SHARD_REPL_PING_BACKUPS], *bp[SHARD_REPL_PING_BACKUPS];
    answer_to now = *to;
    char server[256];

    snprintf(server, sizeof(server), "objmeta-shard/%s id=%s", OM_VERSION, s->id);
    if (p != NULL)
        pr.payload = p->payload;
    pr.server = server;
    pr.ring_epoch = 0;
    if (shard_repl_ping_state(s, &rs, bs, bp, SHARD_REPL_PING_BACKUPS))
        pr.replication = &rs;
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    if (p != NULL && p->now)
        now.after = COMMIT_AFTER_NONE; /* it shows no data: not held behind the writes */
    answer(s, &now, &resp);
}

static void
do_stats(shard *s, const answer_to *to)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    shard_stats_msg m;
    om_status st = shard_stats_build(s, &m);

    if (st != OM_OK) {
        answer_status(s, to, st, "out of memory");
    } else {
        resp.body_case = OBJMETA__RESPONSE__BODY_STATS;
        resp.stats = &m.sr;
        answer(s, to, &resp);
    }
    shard_stats_fini(&m);
}

/*
 * The ring fence (fence.c) of a request for (bucket, key): true when it was
 * refused and answered.
 */
static bool
fenced(shard *s, const Objmeta__Request *req, const answer_to *to, const char *bucket,
       const char *key)
{
    char err[512];
    om_status st = shard_fence_check(s, req->ring_epoch, om_slice_from_str(bucket),
                                     om_slice_from_str(key ? key : ""), err, sizeof(err));

    if (st == OM_OK)
        return false;
    answer_status(s, to, st, err);
    return true;
}

static void
submit_read(shard *s, const Objmeta__Request *req, const answer_to *to, const char *bucket,
            const char *key)
{
    shard_job *j;

    if (fenced(s, req, to, bucket, key))
        return;
    if (s->opts.inline_reads) {
        /* the loop thread's record buffer, kept across requests (shard_int.h) */
        do_read(s, to, om_slice_from_str(bucket), om_slice_from_str(key), &s->read_buf);
        return;
    }
    j = job_new(s, to, str_len(bucket) + str_len(key));
    if (j == NULL)
        return;
    j->bucket = job_copy(j, bucket, str_len(bucket));
    j->key = job_copy(j, key, str_len(key));
    pool_push(s, j);
}

/*
 * Hand a Store or Delete job to the pipeline, with the migration's forced
 * version when the request carries one (0 is never a version a shard
 * assigns, so it is refused).
 */
static void
submit_write(shard *s, shard_job *j, bool has_forced, uint64_t forced_version)
{
    if (has_forced && forced_version == 0) {
        answer_status(s, &j->to, OM_E_INVALID, "forced_version: must not be 0");
        commit_job_discard(s->commit, &j->cj);
        return;
    }
    if (has_forced)
        j->forced_version = forced_version;
    j->cj.bytes = j->mem_used;
    commit_submit(s->commit, &j->cj);
}

static void
submit_store(shard *s, const Objmeta__Request *req, const answer_to *to)
{
    const Objmeta__StoreRequest *r = req->store;
    shard_job *j;

    if (fenced(s, req, to, r->bucket, r->key))
        return;
    j = job_new(s, to,
                str_len(r->bucket) + str_len(r->key) + r->data.len + str_len(r->metadata_json) +
                    str_len(r->content_type));
    if (j == NULL)
        return;
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
    submit_write(s, j, r->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION,
                 r->forced_version);
}

static void
submit_delete(shard *s, const Objmeta__Request *req, const answer_to *to)
{
    const Objmeta__DeleteRequest *r = req->delete_;
    shard_job *j;

    if (fenced(s, req, to, r->bucket, r->key))
        return;
    j = job_new(s, to, str_len(r->bucket) + str_len(r->key));
    if (j == NULL)
        return;
    j->bucket = job_copy(j, r->bucket, str_len(r->bucket));
    j->key = job_copy(j, r->key, str_len(r->key));
    if (r->condition_case == OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION) {
        j->cond.kind = SHARD_COND_IF_VERSION;
        j->cond.version = r->if_version;
    }
    submit_write(s, j, r->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION,
                 r->forced_version);
}

static void
submit_list(shard *s, const Objmeta__Request *req, const answer_to *to)
{
    const Objmeta__ListRequest *r = req->list;
    shard_job *j;

    if (fenced(s, req, to, r->bucket, ""))
        return;
    j = job_new(s, to,
                str_len(r->bucket) + str_len(r->prefix) + str_len(r->delimiter) +
                    str_len(r->start_after) + str_len(r->continuation_token));
    if (j == NULL)
        return;
    j->bucket = job_copy(j, r->bucket, str_len(r->bucket));
    j->prefix = job_copy(j, r->prefix, str_len(r->prefix));
    j->delimiter = job_copy(j, r->delimiter, str_len(r->delimiter));
    j->start_after = job_copy(j, r->start_after, str_len(r->start_after));
    j->token = job_copy(j, r->continuation_token, str_len(r->continuation_token));
    j->max_keys = r->max_keys;
    j->include_metadata = r->include_metadata;
    j->ring_epoch = req->ring_epoch;
    pool_push(s, j);
}

/* ---- the handler ---- */

static shard_op
request_op(Objmeta__Request__BodyCase body)
{
    switch (body) {
    case OBJMETA__REQUEST__BODY_STORE:
        return SHARD_OP_STORE;
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        return SHARD_OP_RETRIEVE;
    case OBJMETA__REQUEST__BODY_HEAD:
        return SHARD_OP_HEAD;
    case OBJMETA__REQUEST__BODY_EXISTS:
        return SHARD_OP_EXISTS;
    case OBJMETA__REQUEST__BODY_DELETE:
        return SHARD_OP_DELETE;
    case OBJMETA__REQUEST__BODY_LIST:
        return SHARD_OP_LIST;
    case OBJMETA__REQUEST__BODY_STATS:
        return SHARD_OP_STATS;
    case OBJMETA__REQUEST__BODY_PING:
        return SHARD_OP_PING;
    default:
        return SHARD_OP_OTHER;
    }
}

void
shard_rpc_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    shard *s = arg;
    /* t0: when rpc read the request (no clock read here); the loop thread */
    answer_to to = {.reply = reply,
                    .op = request_op(req->body_case),
                    .t0_ns = rpc_reply_start_ns(reply),
                    .after = COMMIT_AFTER_ALL,
                    .via = ANSWER_GATE};

    switch (to.op) {
    case SHARD_OP_STORE:
        submit_store(s, req, &to);
        break;
    case SHARD_OP_RETRIEVE:
        submit_read(s, req, &to, req->retrieve->bucket, req->retrieve->key);
        break;
    case SHARD_OP_HEAD:
        submit_read(s, req, &to, req->head->bucket, req->head->key);
        break;
    case SHARD_OP_EXISTS:
        submit_read(s, req, &to, req->exists->bucket, req->exists->key);
        break;
    case SHARD_OP_DELETE:
        submit_delete(s, req, &to);
        break;
    case SHARD_OP_LIST:
        submit_list(s, req, &to);
        break;
    case SHARD_OP_STATS:
        do_stats(s, &to);
        break;
    case SHARD_OP_PING:
        do_ping(s, req->ping, &to);
        break;
    default:
        if (req->body_case == OBJMETA__REQUEST__BODY_DIGEST)
            shard_verify_digest(s, req->digest, reply); /* verify.c */
        else
            answer_status(s, &to, OM_E_INVALID, "operation not served by objmeta-shard");
        break;
    }
}

bool
shard_rpc_read_loop_handler(shard *s, om_buf *read_buf, const Objmeta__Request *req,
                            rpc_reply *reply)
{
    answer_to to = {.reply = reply,
                    .op = request_op(req->body_case),
                    .t0_ns = rpc_reply_start_ns(reply),
                    .after = COMMIT_AFTER_ALL,
                    .via = ANSWER_SEND};
    const char *bucket, *key;

    switch (to.op) {
    case SHARD_OP_RETRIEVE:
        bucket = req->retrieve->bucket, key = req->retrieve->key;
        break;
    case SHARD_OP_HEAD:
        bucket = req->head->bucket, key = req->head->key;
        break;
    case SHARD_OP_EXISTS:
        bucket = req->exists->bucket, key = req->exists->key;
        break;
    default:
        return false;
    }
    if (!s->opts.inline_reads || !atomic_load_explicit(&s->reads_anywhere, memory_order_acquire))
        return false; /* the worker pool; or the replication state decides, on the loop */
    if (!fenced(s, req, &to, bucket, key))
        do_read(s, &to, om_slice_from_str(bucket), om_slice_from_str(key), read_buf);
    return true;
}
