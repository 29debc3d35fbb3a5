/*
 * shard/replica.c -- the backup side of replication (repl.h; design:
 * shard/REPLICATION.md) and the replica state both sides keep.
 *
 * A backup is a log follower whose log position lives in its own engine.
 * The primary numbers its group commits 1, 2, ... (the replication index)
 * and ships them in order; the backup keeps (term, last index) under a
 * reserved key and applies a request only if it continues that state:
 *
 *   term < held             refused: the sender is a former primary, and a
 *                           refusal is what keeps it from ever having a write
 *                           acknowledged again (REPLICATION.md, "Failover").
 *   first_index > last + 1  refused with the last index: the primary resends
 *                           from there (it keeps every group some backup
 *                           lacks), so the backup's log never has a hole.
 *   overlap, same term      the groups at or below last are skipped: within
 *                           one term index i names one group, so a resend
 *                           after a lost answer is idempotent.
 *   overlap, higher term    refused, also for a probe (no groups): the new
 *                           primary's group i may differ from the one held,
 *                           and raising the term over it would relabel it
 *                           -- divergence; the primary repairs this replica
 *                           with a catch-up.
 *
 *   catch_up page          the range (after_key, last_key] is made equal to
 *                          the primary's snapshot page (records written,
 *                          other keys there deleted); the last page sets the
 *                          index to the snapshot's. Pages are idempotent.
 *
 * Exact apply. The records are written as the primary wrote them, blind
 * puts with the primary's versions, not "only if newer" like a migration's
 * ApplyRecords: the backup must be a copy of the primary's log, and within
 * a term the stream is the primary's history in order, so every record is
 * newer than what the backup holds anyway; where it would not be (repairing
 * a former primary's never-acknowledged writes, a later layer), the newer
 * local version is exactly what must go. The version inside each record is
 * still checked against the one the request names (a mangled record is
 * refused whole).
 *
 * Atomic and durable. One request = one engine batch: every record of every
 * new group plus the new state, written and then synced (lsm_write_nosync +
 * lsm_sync, whatever the shard's sync mode) before the answer. A crash
 * leaves either the whole batch with its state or neither, so the state
 * never claims a group the data lacks and vice versa; the answer
 * (durable_index) is sent only after the sync.
 *
 * Threads: the loop copies each request (pack + unpack: the rpc frees its
 * own) onto a one-thread queue, so requests apply in arrival order and the
 * loop never waits for an fsync; `mu` serialises shard_replica_apply for
 * callers outside that thread (tests) and guards the state.
 */
#define OM_LOG_MODULE "replica"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/record.h"
#include "shard/repl.h"
#include "shard/shard_int.h"
#include "util/coding.h"
#include "util/log.h"
#include "util/workq.h"

#define REPLICA_STATE_FORMAT 1
#define REPLICA_QUEUE_MAX 256 /* requests queued; more are answered BUSY */

struct shard_replica {
    shard *s;
    char *group;
    pthread_mutex_t mu;
    shard_repl_state state; /* under mu */
    workq *q;
};

typedef struct replica_job {
    workq_item item; /* first: the queue's item is the job */
    rpc_reply *reply;
    Objmeta__ReplicateRequest *rq; /* a copy (protobuf-c allocated) */
} replica_job;

/* ---- the replica state ---- */

static om_slice
state_key(void)
{
    return om_slice_make((const uint8_t *)SHARD_REPL_STATE_KEY, SHARD_REPL_STATE_KEY_LEN);
}

om_status
shard_repl_state_load(lsm_db *db, shard_repl_state *out)
{
    om_buf v = OM_BUF_INIT;
    om_status st = lsm_get(db, NULL, state_key(), &v);
    shard_repl_state s = {0, 0};

    if (st == OM_OK) {
        const uint8_t *p = v.p, *end = v.p + v.n;

        if (v.n < 1 || p[0] != REPLICA_STATE_FORMAT ||
            (p = om_decode_varint64(p + 1, end, &s.term)) == NULL ||
            (p = om_decode_varint64(p, end, &s.index)) == NULL || p != end) {
            om_log(OM_LOG_ERROR, "the replica state key does not decode bytes=%zu", v.n);
            st = OM_ERR(OM_E_CORRUPT);
        }
    } else if (st == OM_E_NOTFOUND) {
        st = OM_OK;
    }
    om_buf_free(&v);
    if (st == OM_OK)
        *out = s;
    return st;
}

om_status
shard_repl_state_put(lsm_batch *b, const shard_repl_state *st)
{
    uint8_t buf[1 + 2 * 10], *p = buf;

    *p++ = REPLICA_STATE_FORMAT;
    p = om_encode_varint64(p, st->term);
    p = om_encode_varint64(p, st->index);
    return lsm_batch_put(b, state_key(), om_slice_make(buf, (size_t)(p - buf)));
}

/* ---- applying ---- */

static om_status replica_msg(om_status st, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static om_status
replica_msg(om_status st, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return st;
}

/* Check one record as it arrived; a message naming it on failure. */
static om_status
check_record(const Objmeta__MigrateRecord *mr, size_t g, size_t i, char *err, size_t errlen)
{
    om_slice k = om_slice_make(mr->key.data, mr->key.len);
    shard_record rec;

    if (k.n == 0 || k.n > LSM_MAX_KEY_SIZE || shard_key_is_reserved(k))
        return replica_msg(OM_E_INVALID, err, errlen,
                           "groups[%zu].records[%zu].key: empty, too long or reserved", g, i);
    if (mr->value.len == 0 && mr->version == 0)
        return OM_OK; /* a purge: the key moved to another group and goes (mig_jobs.c) */
    if (shard_record_decode(om_slice_make(mr->value.data, mr->value.len), &rec) != OM_OK)
        return replica_msg(OM_E_CORRUPT, err, errlen,
                           "groups[%zu].records[%zu].value: does not decode as a record", g, i);
    if (rec.version != mr->version)
        return replica_msg(OM_E_CORRUPT, err, errlen,
                           "groups[%zu].records[%zu].version: %llu, the record holds %llu", g, i,
                           (unsigned long long)mr->version, (unsigned long long)rec.version);
    return OM_OK;
}

static om_slice
pb_slice(ProtobufCBinaryData b)
{
    return om_slice_make(b.data, b.len);
}

/* A catch-up page: no groups besides, records ascending inside (after_key, last_key]. */
static om_status
check_page(const Objmeta__ReplicateRequest *rq, char *err, size_t errlen)
{
    const Objmeta__CatchUpPage *pg = rq->catch_up;
    om_slice after = pb_slice(pg->after_key), last = pb_slice(pg->last_key);

    if (rq->n_groups > 0)
        return replica_msg(OM_E_INVALID, err, errlen, "groups: not allowed with catch_up");
    if (!pg->done && om_slice_cmp(last, after) <= 0)
        return replica_msg(OM_E_INVALID, err, errlen,
                           "catch_up.last_key: not after after_key (and not done)");
    for (size_t i = 0; i < pg->n_records; i++) {
        om_slice k = pb_slice(pg->records[i]->key);

        OM_TRY(check_record(pg->records[i], 0, i, err, errlen));
        if (pg->records[i]->value.len == 0) /* a page holds records; a purge is absence */
            return replica_msg(OM_E_INVALID, err, errlen, "catch_up.records[%zu].value: empty", i);
        if (om_slice_cmp(k, i > 0 ? pb_slice(pg->records[i - 1]->key) : after) <= 0 ||
            (!pg->done && om_slice_cmp(k, last) > 0))
            return replica_msg(OM_E_INVALID, err, errlen,
                               "catch_up.records[%zu].key: not ascending inside the page's range",
                               i);
    }
    return OM_OK;
}

/*
 * Make the page's key range of the engine equal to the page, into b: the
 * records exactly, and a delete of every other key held there (the reserved
 * keys excepted). Requires: r->mu held.
 */
static om_status
page_into_batch(shard_replica *r, const Objmeta__CatchUpPage *pg, lsm_batch *b)
{
    om_slice after = pb_slice(pg->after_key), last = pb_slice(pg->last_key);
    lsm_iter_opts io;
    lsm_iter *it = NULL;
    size_t j = 0;
    om_status st;

    for (size_t i = 0; i < pg->n_records; i++)
        OM_TRY(lsm_batch_put(b, pb_slice(pg->records[i]->key), pb_slice(pg->records[i]->value)));
    lsm_iter_opts_init(&io);
    io.lower = after;
    io.fill_cache = false;
    OM_TRY(lsm_iter_new(shard_db(r->s), &io, &it));
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        om_slice k = lsm_iter_key(it);

        if (om_slice_cmp(k, after) <= 0 || shard_key_is_reserved(k))
            continue;
        if (!pg->done && om_slice_cmp(k, last) > 0)
            break;
        while (j < pg->n_records && om_slice_cmp(pb_slice(pg->records[j]->key), k) < 0)
            j++;
        if (j < pg->n_records && om_slice_eq(pb_slice(pg->records[j]->key), k))
            continue; /* written above */
        if (lsm_batch_del(b, k) != OM_OK) {
            lsm_iter_free(it);
            return OM_ERR(OM_E_NOMEM);
        }
    }
    st = lsm_iter_status(it);
    lsm_iter_free(it);
    return st;
}

/* Requires: r->mu held. The request against the state held (the table above). */
static om_status
check_request(shard_replica *r, const Objmeta__ReplicateRequest *rq, char *err, size_t errlen)
{
    const shard_repl_state *h = &r->state;

    if (r->group[0] != '\0' && strcmp(rq->group, r->group) != 0)
        return replica_msg(OM_E_INVALID, err, errlen,
                           "group: this replica belongs to group %s, not %s", r->group, rq->group);
    if (rq->term == 0 || (rq->first_index == 0 && rq->catch_up == NULL))
        return replica_msg(OM_E_INVALID, err, errlen, "%s: must be at least 1",
                           rq->term == 0 ? "term" : "first_index");
    if (rq->first_index > UINT64_MAX - rq->n_groups)
        return replica_msg(OM_E_INVALID, err, errlen, "first_index: too large");
    if (rq->term < h->term)
        return replica_msg(OM_E_PRECONDITION, err, errlen,
                           "stale term: this replica is in term %llu, the request in %llu",
                           (unsigned long long)h->term, (unsigned long long)rq->term);
    if (rq->catch_up != NULL)
        return check_page(rq, err, errlen); /* no index: a page replaces a key range */
    if (rq->first_index > h->index + 1)
        return replica_msg(OM_E_PRECONDITION, err, errlen,
                           "gap: this replica holds up to index %llu, the request starts at %llu",
                           (unsigned long long)h->index, (unsigned long long)rq->first_index);
    /* a probe too: raising the term over indexes of the old one would relabel them */
    if (rq->term > h->term && rq->first_index <= h->index)
        return replica_msg(OM_E_PRECONDITION, err, errlen,
                           "divergence: term %llu continues at index %llu, this replica holds up "
                           "to %llu from term %llu (the primary repairs it from a snapshot)",
                           (unsigned long long)rq->term, (unsigned long long)rq->first_index,
                           (unsigned long long)h->index, (unsigned long long)h->term);
    for (size_t g = 0; g < rq->n_groups; g++)
        for (size_t i = 0; i < rq->groups[g]->n_records; i++)
            OM_TRY(check_record(rq->groups[g]->records[i], g, i, err, errlen));
    return OM_OK;
}

om_status
shard_replica_apply(shard_replica *r, const Objmeta__ReplicateRequest *rq, shard_repl_state *state,
                    char *err, size_t errlen)
{
    lsm_batch *b = NULL;
    shard_repl_state next;
    om_status st;

    err[0] = '\0';
    pthread_mutex_lock(&r->mu);
    st = check_request(r, rq, err, errlen);
    if (st != OM_OK)
        goto out;
    next.term = rq->term;
    next.index = rq->first_index + rq->n_groups - 1;
    if (next.index < r->state.index)
        next.index = r->state.index; /* everything sent is held already */
    if (rq->catch_up != NULL) {
        /* the index moves only with the last page: a crash before it starts the catch-up over */
        next.index = rq->catch_up->done ? rq->catch_up->snapshot_index : r->state.index;
        st = lsm_batch_new(&b);
        if (st == OM_OK)
            st = page_into_batch(r, rq->catch_up, b);
        goto write;
    }
    if (next.term == r->state.term && next.index == r->state.index)
        goto out; /* a resend (or a probe): nothing new */
    st = lsm_batch_new(&b);
    /* the groups above the last index, in order: a later record of a key wins */
    for (size_t g = r->state.index + 1 - rq->first_index; st == OM_OK && g < rq->n_groups; g++)
        for (size_t i = 0; st == OM_OK && i < rq->groups[g]->n_records; i++) {
            const Objmeta__MigrateRecord *mr = rq->groups[g]->records[i];

            if (mr->value.len == 0) /* a purge (check_record) */
                st = lsm_batch_del(b, om_slice_make(mr->key.data, mr->key.len));
            else
                st = lsm_batch_put(b, om_slice_make(mr->key.data, mr->key.len),
                                   om_slice_make(mr->value.data, mr->value.len));
        }
write:
    if (st == OM_OK)
        st = shard_repl_state_put(b, &next);
    if (st == OM_OK)
        st = lsm_write_nosync(shard_db(r->s), b);
    if (st == OM_OK)
        st = lsm_sync(shard_db(r->s)); /* durable before the answer, whatever the sync mode */
    if (st != OM_OK) {
        om_log(OM_LOG_ERROR, "applying a replicated batch failed status=%s first_index=%llu",
               om_status_str(st), (unsigned long long)rq->first_index);
        replica_msg(st, err, errlen, "applying the batch failed: %s", om_status_str(st));
        goto out;
    }
    r->state = next;
out:
    *state = r->state;
    pthread_mutex_unlock(&r->mu);
    lsm_batch_free(b);
    return st;
}

void
shard_replica_state(shard_replica *r, shard_repl_state *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->state;
    pthread_mutex_unlock(&r->mu);
}

/* ---- the apply thread ---- */

static void
job_free(replica_job *j)
{
    objmeta__replicate_request__free_unpacked(j->rq, NULL);
    free(j);
}

static void
replica_run(void *arg, workq_item *it)
{
    shard_replica *r = arg;
    replica_job *j = (replica_job *)it;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ReplicateResponse out = OBJMETA__REPLICATE_RESPONSE__INIT;
    shard_repl_state state;
    char err[256];
    om_status st = shard_replica_apply(r, j->rq, &state, err, sizeof(err));

    out.durable_index = state.index;
    out.term = state.term;
    resp.status = rpc_status_to_proto(st);
    resp.message = st != OM_OK ? err : "";
    /* the state goes with a refusal too: the primary resumes from it */
    resp.body_case = OBJMETA__RESPONSE__BODY_REPLICATE;
    resp.replicate = &out;
    rpc_reply_send(j->reply, &resp);
    job_free(j);
}

static void
replica_cancel(void *arg, workq_item *it)
{
    replica_job *j = (replica_job *)it;

    (void)arg;
    rpc_reply_error(j->reply, OM_E_UNAVAILABLE, "the backup is shutting down");
    job_free(j);
}

om_status
shard_replica_open(shard *s, const char *group, shard_replica **out)
{
    shard_replica *r = calloc(1, sizeof(*r));
    om_status st;

    if (r == NULL || (r->group = strdup(group ? group : "")) == NULL) {
        free(r);
        return OM_ERR(OM_E_NOMEM);
    }
    r->s = s;
    pthread_mutex_init(&r->mu, NULL);
    st = shard_repl_state_load(shard_db(s), &r->state);
    if (st == OM_OK)
        st = workq_open("shard-replica", 1, REPLICA_QUEUE_MAX, replica_run, r, &r->q);
    if (st != OM_OK) {
        pthread_mutex_destroy(&r->mu);
        free(r->group);
        free(r);
        return st;
    }
    s->replica = r;
    om_log(OM_LOG_INFO, "backup of group=%s term=%llu index=%llu", r->group,
           (unsigned long long)r->state.term, (unsigned long long)r->state.index);
    *out = r;
    return OM_OK;
}

void
shard_replica_close(shard_replica *r)
{
    if (r == NULL)
        return;
    workq_close(r->q, replica_cancel);
    r->s->replica = NULL;
    pthread_mutex_destroy(&r->mu);
    free(r->group);
    free(r);
}

/* Queue a copy of the Replicate request for the apply thread. */
static void
replica_submit(shard_replica *r, const Objmeta__ReplicateRequest *rq, rpc_reply *reply)
{
    size_t n = objmeta__replicate_request__get_packed_size(rq);
    uint8_t *buf = malloc(n ? n : 1);
    replica_job *j = calloc(1, sizeof(*j));
    om_status st = OM_E_NOMEM;

    if (buf != NULL && j != NULL) {
        objmeta__replicate_request__pack(rq, buf);
        j->rq = objmeta__replicate_request__unpack(NULL, n, buf);
        j->reply = reply;
        if (j->rq != NULL)
            st = workq_push(r->q, &j->item);
    }
    free(buf);
    if (st == OM_OK)
        return;
    if (j != NULL && j->rq != NULL)
        objmeta__replicate_request__free_unpacked(j->rq, NULL);
    free(j);
    if (st == OM_E_BUSY)
        rpc_reply_error(reply, OM_E_BUSY, "the backup has too many Replicate requests queued");
    else
        rpc_reply_error(reply, st == OM_E_NOMEM ? OM_E_NOMEM : OM_E_UNAVAILABLE,
                        "the backup cannot take the request: %s", om_status_str(st));
}

void
shard_reply_not_applied(rpc_reply *reply, const char *fmt, ...)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp.status = OBJMETA__STATUS__UNAVAILABLE;
    resp.message = msg;
    resp.not_applied = true;
    rpc_reply_send(reply, &resp);
}

bool
shard_replica_handle(shard_replica *r, const Objmeta__Request *req, rpc_reply *reply)
{
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_REPLICATE:
        replica_submit(r, req->replicate, reply);
        return true;
    case OBJMETA__REQUEST__BODY_STORE:
    case OBJMETA__REQUEST__BODY_DELETE:
    case OBJMETA__REQUEST__BODY_APPLY_RECORDS:
        shard_reply_not_applied(
            reply, "this replica is a backup of group %s: writes go to the primary", r->group);
        return true;
    default:
        return false;
    }
}
