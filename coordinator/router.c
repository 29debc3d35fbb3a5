/*
 * coordinator/router.c -- the coordinator's request handler: keyed
 * operations to their owner, List to the fan-out, the rest answered here;
 * plus its /metrics and /healthz.
 *
 * Routing a keyed request (Store, Retrieve, Head, Exists, Delete):
 *
 *   1. hash (bucket, key) and find the owner on the ring (ring_owner);
 *   2. if that shard is down, answer UNAVAILABLE at once, naming the shard
 *      and why it is down (fail fast; other shards are not affected);
 *   3. otherwise forward the request unchanged except for ring_epoch, which
 *      is set to the ring's epoch (the shard's fence), on the next
 *      connection of the shard's pool;
 *   4. forward the shard's response as is: its encoded bytes go to the
 *      client with only the id rewritten (rpc_reply_send_encoded), no
 *      re-encoding. A transport failure becomes the
 *      matching status (UNAVAILABLE, TIMEOUT, CORRUPTION) with the shard
 *      named. WRONG_SHARD means the shard does not hold our epoch (it
 *      restarted, or missed a SetRing): the shard is marked down until it
 *      acknowledges the ring again and the client gets a retryable
 *      UNAVAILABLE, never a misrouted answer.
 *
 * The request was unpacked by rpc and is freed when the handler returns;
 * rpc_client_call packs it before returning, so forwarding needs no copy.
 */
#define OM_LOG_MODULE "coord"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "util/clock.h"
#include "util/log.h"

static const char *const coord_op_names[COORD_OP_COUNT_] = {
    "store", "retrieve", "head", "exists", "delete", "list", "stats", "ping", "get_ring", "other",
};

void
coord_answer(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, const Objmeta__Response *resp)
{
    unsigned s = (unsigned)resp->status < COORD_NSTATUS ? (unsigned)resp->status : 8;

    c->answers[op][s]++;
    rpc_hist_observe_ns(&c->latency[op], om_clock_mono_ns() - t0);
    rpc_reply_send(reply, resp);
}

void
coord_answer_encoded(coord *c, coord_op op, uint64_t t0, rpc_reply *reply,
                     const Objmeta__Response *resp, om_slice encoded)
{
    unsigned s = (unsigned)resp->status < COORD_NSTATUS ? (unsigned)resp->status : 8;

    c->answers[op][s]++;
    rpc_hist_observe_ns(&c->latency[op], om_clock_mono_ns() - t0);
    rpc_reply_send_encoded(reply, encoded.p, encoded.n);
}

void
coord_answer_error(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, om_status st,
                   const char *fmt, ...)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp.status = rpc_status_to_proto(st);
    resp.message = msg;
    coord_answer(c, op, t0, reply, &resp);
}

/* --- keyed operations ------------------------------------------------------------------------ */

typedef struct coord_call {
    coord_waiter w; /* first: the abort callback casts back */
    bool answered;  /* aborted when the shard went down */
    bool moving;    /* the key changes owner in the change in progress (counted in mig_inflight) */
    bool unfwd;     /* a write routed while no change was pending (counted in unfwd_inflight) */
    coord *c;
    coord_shard *sh;
    rpc_reply *reply;
    coord_op op;
    uint64_t t0;
    uint64_t epoch;
    Objmeta__Request *fwd; /* migration: a copy to forward to the new owner once acknowledged */
    coord_shard *fwd_sh;
} coord_call;

static void
route_abort(coord_waiter *w, coord_shard *sh)
{
    coord_call *cc = (coord_call *)w;

    cc->answered = true;
    coord_answer_error(cc->c, cc->op, cc->t0, cc->reply, OM_E_UNAVAILABLE,
                       "shard %s (%s) went down: %s", sh->id, sh->addr, sh->why_down);
}

/* --- migration forwarding -------------------------------------------------------------------- */

typedef struct coord_fwd {
    coord *c;
    coord_shard *sh;
    char *bucket, *key; /* to mark the key dirty if the forward fails */
} coord_fwd;

/* bucket and key of a Store or Delete request */
static void
request_addr(const Objmeta__Request *req, const char **bucket, const char **key)
{
    *bucket =
        req->body_case == OBJMETA__REQUEST__BODY_STORE ? req->store->bucket : req->delete_->bucket;
    *key = req->body_case == OBJMETA__REQUEST__BODY_STORE ? req->store->key : req->delete_->key;
}

static void
forward_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    coord_fwd *f = arg;
    coord *c = f->c;

    c->mig_inflight--;
    if (st == OM_OK && resp->status == OBJMETA__STATUS__OK) {
        c->forwards_ok++;
    } else {
        coord_mig_note_dirty(c, f->bucket, f->key);
        /* Not the client's problem: the catch-up passes copy every record written since the
         * copy started, this one included. */
        c->forwards_failed++;
        om_log(OM_LOG_DEBUG, "forward to new owner failed shard=%s status=%s msg=\"%s\"", f->sh->id,
               st != OM_OK ? om_status_str(st) : rpc_proto_status_name(resp->status),
               resp->message);
    }
    free(f->bucket);
    free(f->key);
    free(f);
}

/*
 * An acknowledged Store/Delete of a moving key: send it to the new owner with
 * the version the old owner assigned (forced_version), without its condition
 * (the old owner evaluated it). Consumes req.
 */
static void
forward_send(coord *c, Objmeta__Request *req, coord_shard *to, const Objmeta__Response *resp)
{
    coord_fwd *f = NULL;
    const char *bucket, *key;
    uint64_t v = 0;

    request_addr(req, &bucket, &key);
    if (req->body_case == OBJMETA__REQUEST__BODY_STORE &&
        resp->body_case == OBJMETA__RESPONSE__BODY_STORE && resp->store->info != NULL) {
        v = resp->store->info->version;
        req->store->condition_case = OBJMETA__STORE_REQUEST__CONDITION__NOT_SET;
        req->store->forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
        req->store->forced_version = v;
    } else if (req->body_case == OBJMETA__REQUEST__BODY_DELETE &&
               resp->body_case == OBJMETA__RESPONSE__BODY_DELETE) {
        v = resp->delete_->version;
        req->delete_->condition_case = OBJMETA__DELETE_REQUEST__CONDITION__NOT_SET;
        req->delete_->forced_case = OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION;
        req->delete_->forced_version = v;
    }
    if (v == 0 || c->pending == NULL || !to->up || (f = calloc(1, sizeof(*f))) == NULL ||
        (f->bucket = strdup(bucket)) == NULL || (f->key = strdup(key)) == NULL) {
        if (v != 0) {
            c->forwards_failed++;
            coord_mig_note_dirty(c, bucket, key);
        }
        if (f != NULL) {
            free(f->bucket);
            free(f);
        }
        objmeta__request__free_unpacked(req, NULL);
        return;
    }
    f->c = c;
    f->sh = to;
    req->ring_epoch = ring_epoch(c->pending); /* the new owner accepts it under the pending ring */
    if (coord_pool_call(to, req, forward_cb, f) == OM_OK) {
        c->mig_inflight++;
    } else {
        c->forwards_failed++;
        coord_mig_note_dirty(c, bucket, key);
        free(f->bucket);
        free(f->key);
        free(f);
    }
    objmeta__request__free_unpacked(req, NULL);
}

/* A heap copy of a request (pack + unpack); NULL when out of memory. */
static Objmeta__Request *
request_copy(const Objmeta__Request *req)
{
    size_t n = objmeta__request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    Objmeta__Request *out;

    if (buf == NULL)
        return NULL;
    objmeta__request__pack(req, buf);
    out = objmeta__request__unpack(NULL, n, buf);
    free(buf);
    return out;
}

/* --- held requests (a ring switch is under way) ---------------------------------------------- */

struct coord_held {
    coord_held *next;
    rpc_reply *reply;
    uint64_t t0;
    size_t n;
    uint8_t *packed;
};

bool
coord_mig_hold(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply, bool is_list)
{
    coord_held *h;

    if (is_list ? !c->hold_lists : !c->fenced)
        return false;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return false;
    h->n = objmeta__request__get_packed_size(req);
    h->packed = malloc(h->n ? h->n : 1);
    if (h->packed == NULL) {
        free(h);
        return false;
    }
    objmeta__request__pack(req, h->packed);
    h->reply = reply;
    h->t0 = t0;
    if (c->held_tail)
        c->held_tail->next = h;
    else
        c->held_head = h;
    c->held_tail = h;
    c->held_count++;
    return true;
}

void
coord_mig_release_held(coord *c)
{
    coord_held *h = c->held_head;

    c->held_head = c->held_tail = NULL;
    c->held_count = 0;
    while (h != NULL) {
        coord_held *next = h->next;
        Objmeta__Request *req = objmeta__request__unpack(NULL, h->n, h->packed);
        if (req == NULL) {
            coord_answer_error(c, COORD_OP_OTHER, h->t0, h->reply, OM_E_NOMEM,
                               "out of memory while releasing a held request");
        } else {
            coord_dispatch(c, req, h->t0, h->reply);
            objmeta__request__free_unpacked(req, NULL);
        }
        free(h->packed);
        free(h);
        h = next;
    }
}

/* --- routing --------------------------------------------------------------------------------- */

static void
route_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    coord_call *cc = arg;
    coord_shard *sh = cc->sh;
    bool ok = false;

    coord_waiter_remove(&cc->w);
    if (cc->moving)
        cc->c->mig_inflight--;
    if (cc->unfwd)
        cc->c->unfwd_inflight--;
    if (cc->answered) {
        /* answered UNAVAILABLE when the shard was marked down */
    } else if (st != OM_OK) {
        coord_pool_note_failure(sh, st, resp->message);
        coord_answer_error(cc->c, cc->op, cc->t0, cc->reply, st, "shard %s (%s): %s", sh->id,
                           sh->addr, resp->message);
    } else if (resp->status == OBJMETA__STATUS__WRONG_SHARD) {
        coord_pool_note_wrong_shard(sh);
        coord_answer_error(cc->c, cc->op, cc->t0, cc->reply, OM_E_UNAVAILABLE,
                           "shard %s is not on ring epoch %llu yet (%s); retry", sh->id,
                           (unsigned long long)cc->epoch, resp->message);
    } else {
        ok = resp->status == OBJMETA__STATUS__OK;
        if (ok && (cc->op == COORD_OP_STORE || cc->op == COORD_OP_DELETE)) {
            coord *c = cc->c;
            double us = (double)(om_clock_mono_ns() - cc->t0) / 1000.0;
            if (c->pending == NULL)
                c->wlat_base_us = c->wlat_base_us > 0 ? 0.99 * c->wlat_base_us + 0.01 * us : us;
            c->wlat_fast_us = c->wlat_fast_us > 0 ? 0.9 * c->wlat_fast_us + 0.1 * us : us;
            c->wlat_n++;
        }
        /* st == OM_OK: resp was decoded from these bytes (rpc.h) */
        om_slice enc = rpc_client_response_bytes();
        if (enc.n > 0)
            coord_answer_encoded(cc->c, cc->op, cc->t0, cc->reply, resp, enc);
        else
            coord_answer(cc->c, cc->op, cc->t0, cc->reply, resp);
    }
    if (cc->fwd != NULL) {
        if (ok) {
            forward_send(cc->c, cc->fwd, cc->fwd_sh, resp);
        } else {
            const char *bucket, *key;
            /* not written, or written with an unknown outcome: copy it again at cutover */
            request_addr(cc->fwd, &bucket, &key);
            if (st != OM_OK || cc->answered ||
                (resp->status != OBJMETA__STATUS__PRECONDITION_FAILED &&
                 resp->status != OBJMETA__STATUS__NOT_FOUND))
                coord_mig_note_dirty(cc->c, bucket, key);
            objmeta__request__free_unpacked(cc->fwd, NULL);
        }
    }
    free(cc);
}

static void
route(coord *c, coord_op op, const Objmeta__Request *req, const char *bucket, const char *key,
      uint64_t t0, rpc_reply *reply)
{
    Objmeta__Request fwd;
    coord_shard *sh, *to = NULL;
    coord_call *cc;
    uint64_t h;
    om_status st;

    if (bucket == NULL || bucket[0] == '\0') {
        coord_answer_error(c, op, t0, reply, OM_E_INVALID, "bucket is empty");
        return;
    }
    if (key == NULL || key[0] == '\0') {
        coord_answer_error(c, op, t0, reply, OM_E_INVALID, "key is empty");
        return;
    }
    h = ring_key_hash(om_slice_from_str(bucket), om_slice_from_str(key));
    sh = coord_cur_shard(c, ring_owner(c->ring, h));
    if (c->pending != NULL) {
        to = coord_pend_shard(c, ring_owner(c->pending, h));
        if (to == sh)
            to = NULL; /* the key stays where it is */
        else if (coord_mig_hold(c, req, t0, reply, false))
            return; /* cutover: answered once the ring has switched */
    }
    if (!sh->up) {
        sh->failed_fast++;
        coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE, "shard %s (%s) is down: %s", sh->id,
                           sh->addr, sh->why_down);
        return;
    }
    cc = calloc(1, sizeof(*cc));
    if (cc == NULL) {
        coord_answer_error(c, op, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    *cc = (coord_call){{NULL, NULL, route_abort}, false, to != NULL, false, c, sh, reply, op, t0,
                       ring_epoch(c->ring),       NULL,  NULL};
    if (to != NULL && (op == COORD_OP_STORE || op == COORD_OP_DELETE)) {
        cc->fwd = request_copy(req);
        cc->fwd_sh = to;
        if (cc->fwd == NULL)
            coord_mig_note_dirty(c, bucket, key); /* no memory to forward: copied at cutover */
    }
    cc->unfwd = c->pending == NULL && (op == COORD_OP_STORE || op == COORD_OP_DELETE);
    fwd = *req; /* shallow: rpc_client_call packs it before returning */
    fwd.ring_epoch = cc->epoch;
    st = coord_pool_call(sh, &fwd, route_cb, cc);
    if (st != OM_OK) {
        if (cc->fwd)
            objmeta__request__free_unpacked(cc->fwd, NULL);
        free(cc);
        coord_answer_error(c, op, t0, reply, st, "cannot forward to shard %s: %s", sh->id,
                           om_status_str(st));
        return;
    }
    if (cc->moving)
        c->mig_inflight++;
    if (cc->unfwd)
        c->unfwd_inflight++;
    coord_waiter_add(sh, &cc->w);
}

/* --- answered here --------------------------------------------------------------------------- */

static void
answer_ping(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
    char server[128];

    snprintf(server, sizeof(server), "objmeta-coord/%s shards_up=%zu/%zu", OM_VERSION,
             coord_pool_up_count(c), c->nshards);
    pr.payload = req->ping->payload;
    pr.server = server;
    pr.ring_epoch = ring_epoch(c->ring);
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    coord_answer(c, COORD_OP_PING, t0, reply, &resp);
}

static void
answer_get_ring(coord *c, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__GetRingResponse gr = OBJMETA__GET_RING_RESPONSE__INIT;
    Objmeta__Ring *pb, *pp = NULL;
    om_status st;

    if ((st = ring_to_pb(c->ring, &pb)) != OM_OK) {
        coord_answer_error(c, COORD_OP_GET_RING, t0, reply, st, "cannot encode the ring");
        return;
    }
    if (c->pending != NULL && (st = ring_to_pb(c->pending, &pp)) != OM_OK) {
        ring_pb_free(pb);
        coord_answer_error(c, COORD_OP_GET_RING, t0, reply, st, "cannot encode the ring");
        return;
    }
    gr.ring = pb;
    gr.pending = pp;
    resp.body_case = OBJMETA__RESPONSE__BODY_GET_RING;
    resp.get_ring = &gr;
    coord_answer(c, COORD_OP_GET_RING, t0, reply, &resp);
    ring_pb_free(pb);
    ring_pb_free(pp);
}

/* Stats: counters plus a readable report of the ring and the shards. */
static void
answer_stats(coord *c, uint64_t t0, rpc_reply *reply)
{
    enum { MAXC = COORD_OP_COUNT_ + 12 };
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__StatsResponse sr = OBJMETA__STATS_RESPONSE__INIT;
    Objmeta__StatsCounter cnt[MAXC], *ptrs[MAXC];
    char names[MAXC][48];
    om_buf text = OM_BUF_INIT;
    size_t n = 0;
    om_status st = OM_OK;

#define COUNTER(nm, v)                                                                             \
    do {                                                                                           \
        objmeta__stats_counter__init(&cnt[n]);                                                     \
        snprintf(names[n], sizeof(names[n]), "%s", (nm));                                          \
        cnt[n].name = names[n];                                                                    \
        cnt[n].value = (v);                                                                        \
        ptrs[n] = &cnt[n];                                                                         \
        n++;                                                                                       \
    } while (0)
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        uint64_t total = 0;
        char nm[48];
        for (int k = 0; k < COORD_NSTATUS; k++)
            total += c->answers[op][k];
        snprintf(nm, sizeof(nm), "coord.requests.%s", coord_op_names[op]);
        COUNTER(nm, total);
    }
    COUNTER("coord.ring_epoch", ring_epoch(c->ring));
    COUNTER("coord.shards", c->nshards);
    COUNTER("coord.shards_up", coord_pool_up_count(c));
    COUNTER("coord.list.pages", c->list_pages);
    COUNTER("coord.list.shard_fetches", c->list_shard_fetches);
    COUNTER("coord.list.records_fetched", c->list_records_fetched);
    COUNTER("coord.list.records_returned", c->list_records_returned);
    COUNTER("coord.migrate.pending_epoch", c->pending ? ring_epoch(c->pending) : 0);
    COUNTER("coord.migrate.forwards_ok", c->forwards_ok);
    COUNTER("coord.migrate.forwards_failed", c->forwards_failed);
    COUNTER("coord.migrate.held_requests", c->held_count);
#undef COUNTER

    st = om_buf_printf(&text, "objmeta-coord %s\nring: ", OM_VERSION);
    if (st == OM_OK)
        st = ring_format(c->ring, &text);
    for (size_t i = 0; st == OM_OK && i < c->nshards; i++) {
        const coord_shard *sh = c->shards[i];
        size_t ri;
        double share =
            ring_find(c->ring, sh->id, &ri) == OM_OK ? ring_shard_fraction(c->ring, ri) : 0;
        st = om_buf_printf(&text,
                           "\nshard %s %s %s forwarded=%llu failed_fast=%llu "
                           "transport_errors=%llu share=%.4f%s%s",
                           sh->id, sh->addr, sh->up ? "up" : "DOWN",
                           (unsigned long long)sh->forwarded, (unsigned long long)sh->failed_fast,
                           (unsigned long long)sh->transport_errors, share,
                           sh->up ? "" : " reason=", sh->up ? "" : sh->why_down);
    }
    if (st == OM_OK)
        st = om_buf_printf(&text, "\n");
    if (st != OM_OK) {
        om_buf_free(&text);
        coord_answer_error(c, COORD_OP_STATS, t0, reply, st, "cannot build stats");
        return;
    }
    sr.counters = ptrs;
    sr.n_counters = n;
    sr.text = (char *)text.p;
    resp.body_case = OBJMETA__RESPONSE__BODY_STATS;
    resp.stats = &sr;
    coord_answer(c, COORD_OP_STATS, t0, reply, &resp);
    om_buf_free(&text);
}

void
coord_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    coord_dispatch(arg, req, om_clock_mono_ns(), reply);
}

void
coord_dispatch(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE:
    case OBJMETA__REQUEST__BODY_RETRIEVE:
    case OBJMETA__REQUEST__BODY_HEAD:
    case OBJMETA__REQUEST__BODY_EXISTS:
    case OBJMETA__REQUEST__BODY_DELETE:
    case OBJMETA__REQUEST__BODY_LIST:
        c->client_reqs++; /* a ring change copies slower while clients are served */
        break;
    default:
        break;
    }
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE:
        route(c, COORD_OP_STORE, req, req->store->bucket, req->store->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        route(c, COORD_OP_RETRIEVE, req, req->retrieve->bucket, req->retrieve->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_HEAD:
        route(c, COORD_OP_HEAD, req, req->head->bucket, req->head->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_EXISTS:
        route(c, COORD_OP_EXISTS, req, req->exists->bucket, req->exists->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_DELETE:
        route(c, COORD_OP_DELETE, req, req->delete_->bucket, req->delete_->key, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_LIST:
        coord_list(c, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_PING:
        answer_ping(c, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_STATS:
        answer_stats(c, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_GET_RING:
        answer_get_ring(c, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_SET_RING:
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID,
                           "SetRing is for shards; the coordinator owns its ring");
        break;
    case OBJMETA__REQUEST__BODY_ADD_SHARD:
    case OBJMETA__REQUEST__BODY_REMOVE_SHARD:
    case OBJMETA__REQUEST__BODY_SET_WEIGHT:
        coord_mig_admin(c, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_REBALANCE_STATUS:
        coord_mig_status(c, t0, reply);
        break;
    default:
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "unknown operation");
        break;
    }
}

/* --- /metrics and /healthz ------------------------------------------------------------------- */

om_status
coord_render_metrics(void *arg, om_buf *out)
{
    coord *c = arg;
    char labels[160];

    OM_TRY(rpc_prom_header(out, "objmeta_coord_requests_total", "counter",
                           "Requests answered by the coordinator, by operation and status."));
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        for (int k = 0; k < COORD_NSTATUS; k++) {
            if (c->answers[op][k] == 0 && k != 0)
                continue;
            snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%s\"", coord_op_names[op],
                     rpc_proto_status_name((Objmeta__Status)k));
            OM_TRY(rpc_prom_value(out, "objmeta_coord_requests_total", labels,
                                  (double)c->answers[op][k]));
        }
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_request_seconds", "histogram",
                           "Time from receiving a request to answering it, by operation."));
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", coord_op_names[op]);
        OM_TRY(rpc_hist_render(&c->latency[op], out, "objmeta_coord_request_seconds", labels));
    }
    OM_TRY(
        rpc_prom_header(out, "objmeta_coord_ring_epoch", "gauge", "Epoch of the ring in force."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_ring_epoch", NULL, (double)ring_epoch(c->ring)));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_shard_up", "gauge",
                           "1 if the shard answers pings and holds the ring, else 0."));
    for (size_t i = 0; i < c->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%s\"", c->shards[i]->id);
        OM_TRY(rpc_prom_value(out, "objmeta_coord_shard_up", labels, c->shards[i]->up));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_shard_failed_fast_total", "counter",
                           "Requests answered UNAVAILABLE at once because their shard was down."));
    for (size_t i = 0; i < c->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%s\"", c->shards[i]->id);
        OM_TRY(rpc_prom_value(out, "objmeta_coord_shard_failed_fast_total", labels,
                              (double)c->shards[i]->failed_fast));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_migrate_forwards_total", "counter",
                           "Writes to moving keys forwarded to their new owner, by result."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_forwards_total", "result=\"ok\"",
                          (double)c->forwards_ok));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_forwards_total", "result=\"failed\"",
                          (double)c->forwards_failed));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_migrate_pending_epoch", "gauge",
                           "Epoch of the ring a change in progress moves to (0 = none)."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_pending_epoch", NULL,
                          c->pending ? (double)ring_epoch(c->pending) : 0));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_shard_fetches_total", "counter",
                           "Pages fetched from shards to answer List."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_shard_fetches_total", NULL,
                          (double)c->list_shard_fetches));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_records_fetched_total", "counter",
                           "Entries fetched from shards to answer List."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_records_fetched_total", NULL,
                          (double)c->list_records_fetched));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_records_returned_total", "counter",
                           "Entries returned to List callers."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_records_returned_total", NULL,
                          (double)c->list_records_returned));
    if (c->mig != NULL)
        OM_TRY(coord_mig_render_metrics(c, out));
    return rpc_server_render_metrics(c->server, out);
}

/*
 * Healthy while every shard is up; degraded (serving, /healthz 429 naming the
 * shards down, /readyz still 200) while some are; unavailable when none is.
 * One shard down makes only its keys (and List) unavailable, so taking the
 * coordinator out of a load balancer's rotation would make things worse.
 */
om_status
coord_health(void *arg, om_buf *reason)
{
    coord *c = arg;
    size_t up = coord_pool_up_count(c);

    if (up == c->nshards)
        return OM_OK;
    if (up > 0)
        OM_TRY(om_buf_printf(reason, "%zu of %zu shards down", c->nshards - up, c->nshards));
    else
        OM_TRY(om_buf_printf(reason, "no shard is up (%zu in the ring)", c->nshards));
    for (size_t i = 0; i < c->nshards; i++)
        if (!c->shards[i]->up)
            OM_TRY(om_buf_printf(reason, "; %s: %s", c->shards[i]->id, c->shards[i]->why_down));
    return up > 0 ? OM_OK : OM_E_UNAVAILABLE;
}
