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
 * Replica groups (groups.c, coordinator/GROUPS.md "Routing"): the owner may
 * be a group whose primary is failing over (coord_shard_waits). Its
 * requests are then parked -- a packed copy, the reply and the arrival
 * time -- and dispatched again from the top when the group table changes
 * or its entry comes up, and every PARK_TICK_MS; those older than
 * failover_wait_ms are answered UNAVAILABLE. A request for a group keeps a
 * copy while in flight, so that one the primary failed (its connection
 * broke, it answered UNAVAILABLE, it does not serve yet, or it is a backup
 * now) can be parked and sent again -- only when that cannot change its
 * outcome (route_may_retry).
 *
 * The request was unpacked by rpc and is freed when the handler returns;
 * rpc_client_call packs it before returning, so forwarding needs no copy.
 * What a forward costs the coordinator itself per request, at pipeline 1
 * (issue 17): no allocation (call contexts come back to a cache,
 * CALL_CACHE_MAX of them), two clock reads (rpc's arrival time of the
 * request's batch is t0; one read when the answer comes serves the write
 * latency and the answer's histogram), the ring lookup and the counters.
 * The rest is rpc's: decode, re-encode, the shard's answer decoded and
 * passed on encoded.
 *
 * Layering: this file is the top of the request path. It calls down into
 * fanout.c (List), mig_admin.c and migrate.c (ring changes, the cutover
 * fence), shard_pool.c and metrics.c (every answer is sent and counted
 * there); none of them calls back up. Requests held by the fence come back
 * through c->dispatch (set to coord_dispatch by coord_open).
 */
#define OM_LOG_MODULE "coord"
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "util/clock.h"
#include "util/log.h"

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
    Objmeta__Request *fwd;   /* migration: a copy to forward to the new owner once acknowledged */
    coord_shard *fwd_sh;     /* valid only while the pending ring is still fwd_epoch's */
    uint64_t fwd_epoch;      /* the pending ring's epoch when the call was routed */
    Objmeta__Request *again; /* a replicated group's request: a copy to send to the next primary */
    struct coord_call *next_free; /* in c->free_calls */
} coord_call;

/*
 * May a request that failed on a group's primary be sent again (to the next
 * primary, or to this one once it serves)? Only when another attempt cannot
 * turn into a different outcome (the client library's rules,
 * client/client.c): reads always; an unconditional Delete (deleting twice
 * leaves the key deleted; when the first attempt was applied, the retry
 * answers NOT_FOUND, which the client library reports as OK with version 0
 * -- a caller speaking the protocol itself must read NOT_FOUND on a Delete
 * as "the key is gone", as S3 does);
 * any request the replica refused before acting on it (the answer's
 * not_applied: a backup asked for a write, a primary that does not serve
 * yet or any more, a replica changing roles; shard/repl.h). A
 * Store or conditional Delete whose outcome is unknown is not: the client
 * library re-reads the key before it writes again. As often as the
 * failover deadline allows: each attempt is as safe as the first.
 */
static bool
route_may_retry(const coord_call *cc, bool refused_unapplied)
{
    if (cc->again == NULL)
        return false;
    if (refused_unapplied)
        return true;
    switch (cc->op) {
    case COORD_OP_RETRIEVE:
    case COORD_OP_HEAD:
    case COORD_OP_EXISTS:
        return true;
    case COORD_OP_DELETE:
        return cc->again->delete_->condition_case == OBJMETA__DELETE_REQUEST__CONDITION__NOT_SET;
    default:
        return false;
    }
}

/* Park cc's request for the group's next primary (counted as a retry). */
static void
route_retry(coord_call *cc, const char *why)
{
    om_log(OM_LOG_DEBUG, "request for group %s waits for its next primary why=\"%s\"", cc->sh->id,
           why);
    cc->c->parked_retried++;
    coord_route_park(cc->c, cc->again, cc->op, cc->t0, cc->reply, cc->sh->id);
}

static void
route_abort(coord_waiter *w, coord_shard *sh)
{
    coord_call *cc = (coord_call *)w;

    cc->answered = true;
    if (route_may_retry(cc, false)) {
        route_retry(cc, sh->why_down);
        return;
    }
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

Objmeta__Request *
coord_request_copy(const Objmeta__Request *req)
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

/* --- routing --------------------------------------------------------------------------------- */

/* Finished call contexts kept for reuse; none under AddressSanitizer, so that a context used
 * after its call ended is still reported there. */
#if defined(__SANITIZE_ADDRESS__)
#define CALL_CACHE_MAX 0
#else
#define CALL_CACHE_MAX 1024
#endif

/* A call context, from the cache or malloc'd; the caller sets every field. */
static coord_call *
call_new(coord *c)
{
    coord_call *cc = c->free_calls;

    if (cc == NULL)
        return malloc(sizeof(*cc));
    c->free_calls = cc->next_free;
    c->nfree_calls--;
    return cc;
}

static void
call_free(coord *c, coord_call *cc)
{
#if CALL_CACHE_MAX > 0
    if (c->nfree_calls < CALL_CACHE_MAX) {
        cc->next_free = c->free_calls;
        c->free_calls = cc;
        c->nfree_calls++;
        return;
    }
#endif
    free(cc);
}

void
coord_route_close(coord *c)
{
    while (c->free_calls != NULL) {
        coord_call *cc = c->free_calls;
        c->free_calls = cc->next_free;
        free(cc);
    }
    c->nfree_calls = 0;
}

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
        /* answered UNAVAILABLE (or parked) when the shard was marked down */
    } else if (st != OM_OK) {
        coord_pool_note_failure(sh, st, resp->message);
        if ((st == OM_E_UNAVAILABLE || st == OM_E_TIMEOUT) && route_may_retry(cc, false)) {
            cc->answered = true;
            route_retry(cc, resp->message);
        } else {
            coord_answer_error(cc->c, cc->op, cc->t0, cc->reply, st, "shard %s (%s): %s", sh->id,
                               sh->addr, resp->message);
        }
    } else if (resp->status == OBJMETA__STATUS__UNAVAILABLE &&
               route_may_retry(cc, resp->not_applied)) {
        /* a backup (the configuration moved on), a primary that stopped serving or does not
         * serve yet */
        cc->answered = true;
        route_retry(cc, resp->message);
    } else if (resp->status == OBJMETA__STATUS__WRONG_SHARD) {
        coord_pool_note_wrong_shard(sh);
        coord_answer_error(cc->c, cc->op, cc->t0, cc->reply, OM_E_UNAVAILABLE,
                           "shard %s is not on ring epoch %llu yet (%s); retry", sh->id,
                           (unsigned long long)cc->epoch, resp->message);
    } else {
        uint64_t now = om_clock_mono_ns();
        ok = resp->status == OBJMETA__STATUS__OK;
        if (ok && (cc->op == COORD_OP_STORE || cc->op == COORD_OP_DELETE)) {
            coord *c = cc->c;
            double us = (double)(now - cc->t0) / 1000.0;
            if (c->pending == NULL)
                c->wlat_base_us = c->wlat_base_us > 0 ? 0.99 * c->wlat_base_us + 0.01 * us : us;
            c->wlat_fast_us = c->wlat_fast_us > 0 ? 0.9 * c->wlat_fast_us + 0.1 * us : us;
            c->wlat_n++;
        }
        /* st == OM_OK: resp was decoded from these bytes (rpc.h) */
        om_slice enc = rpc_client_response_bytes();
        if (enc.n > 0)
            coord_answer_encoded(cc->c, cc->op, cc->t0, now, cc->reply, resp, enc);
        else
            coord_answer(cc->c, cc->op, cc->t0, cc->reply, resp);
    }
    if (cc->fwd != NULL &&
        (cc->c->pending == NULL || ring_epoch(cc->c->pending) != cc->fwd_epoch)) {
        /*
         * The change this forward belonged to is over (switched, or cancelled): its target
         * may have left the pool (pool_gc frees it) and nothing is forwarded under a ring
         * that is not pending any more. A later change copies the key anew.
         */
        objmeta__request__free_unpacked(cc->fwd, NULL);
    } else if (cc->fwd != NULL) {
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
    if (cc->again != NULL)
        objmeta__request__free_unpacked(cc->again, NULL);
    call_free(cc->c, cc);
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
        else if (coord_leader_proxy(c, op, req, t0, reply))
            return; /* a follower: the leader routes moving keys (leader.c) */
        else if (coord_mig_hold(c, req, op, t0, reply, false))
            return; /* cutover: answered once the ring has switched */
    }
    if (coord_shard_waits(sh)) {
        coord_route_park(c, req, op, t0, reply, sh->id);
        return; /* a replicated group between primaries: routed again when it has one */
    }
    if (!sh->up) {
        sh->failed_fast++;
        coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE, "shard %s (%s) is down: %s", sh->id,
                           sh->addr, sh->why_down);
        return;
    }
    cc = call_new(c);
    if (cc == NULL) {
        coord_answer_error(c, op, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    *cc = (coord_call){.w = {NULL, NULL, route_abort},
                       .moving = to != NULL,
                       .c = c,
                       .sh = sh,
                       .reply = reply,
                       .op = op,
                       .t0 = t0,
                       .epoch = ring_epoch(c->ring)};
    if (to != NULL && (op == COORD_OP_STORE || op == COORD_OP_DELETE)) {
        cc->fwd = coord_request_copy(req);
        cc->fwd_sh = to;
        cc->fwd_epoch = ring_epoch(c->pending);
        if (cc->fwd == NULL)
            coord_mig_note_dirty(c, bucket, key); /* no memory to forward: copied at cutover */
    }
    cc->unfwd = c->pending == NULL && (op == COORD_OP_STORE || op == COORD_OP_DELETE);
    if (sh->replicated)
        cc->again = coord_request_copy(req); /* NULL (no memory): answered, not retried */
    fwd = *req; /* shallow: rpc_client_call packs it before returning */
    fwd.ring_epoch = cc->epoch;
    st = coord_pool_call(sh, &fwd, route_cb, cc);
    if (st != OM_OK) {
        if (cc->fwd)
            objmeta__request__free_unpacked(cc->fwd, NULL);
        if (cc->again)
            objmeta__request__free_unpacked(cc->again, NULL);
        call_free(c, cc);
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

/* --- waiting for a group's next primary ------------------------------------------------------ */

struct coord_parked {
    struct coord_parked *next;
    rpc_reply *reply;
    uint64_t t0;
    coord_op op;
    char group[RING_ID_MAX + 1];
    size_t n;
    uint8_t packed[]; /* the request */
};

#define PARK_TICK_MS 100
#define PARK_MAX 65536 /* beyond this many waiting requests, new ones are answered at once */

static void
park_expired(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, const char *group,
             uint64_t waited_ms)
{
    c->parked_expired++;
    coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE,
                       "replica group %s has no primary that answers (waited %llu ms for a "
                       "failover); retry",
                       group, (unsigned long long)waited_ms);
}

/* Append p to the parked list (the tick runs while the list is not empty). */
static void
park_append(coord *c, struct coord_parked *p)
{
    struct timeval tv = {0, PARK_TICK_MS * 1000};

    p->next = NULL;
    if (c->parked_tail != NULL)
        c->parked_tail->next = p;
    else
        c->parked_head = p;
    c->parked_tail = p;
    if (c->parked_count++ == 0)
        evtimer_add(c->park_timer, &tv);
}

/* Every PARK_TICK_MS while requests wait: a release pass (it also expires them). */
static void
park_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    coord_route_release(arg);
}

void
coord_route_park(coord *c, const Objmeta__Request *req, coord_op op, uint64_t t0, rpc_reply *reply,
                 const char *group)
{
    uint64_t waited_ms = (om_clock_mono_ns() - t0) / 1000000;
    size_t n = objmeta__request__get_packed_size(req);
    struct coord_parked *p;

    if (waited_ms >= c->opts.failover_wait_ms || c->stopping) {
        park_expired(c, op, t0, reply, group, waited_ms);
        return;
    }
    if (c->parked_count >= PARK_MAX) {
        coord_answer_error(c, op, t0, reply, OM_E_BUSY,
                           "replica group %s is failing over and %d requests already wait; retry",
                           group, PARK_MAX);
        return;
    }
    if (c->park_timer == NULL)
        c->park_timer = event_new(c->base, -1, EV_PERSIST, park_tick, c);
    p = malloc(sizeof(*p) + n);
    if (p == NULL || c->park_timer == NULL) {
        free(p);
        coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE,
                           "replica group %s is failing over and there is no memory to hold the "
                           "request; retry",
                           group);
        return;
    }
    objmeta__request__pack(req, p->packed);
    p->n = n;
    p->reply = reply;
    p->t0 = t0;
    p->op = op;
    snprintf(p->group, sizeof(p->group), "%s", group);
    park_append(c, p);
    if (!c->releasing)
        c->parked_total++; /* a request parked again by a release is counted once */
}

void
coord_route_release(coord *c)
{
    struct coord_parked *p = c->parked_head;

    c->parked_head = c->parked_tail = NULL;
    c->parked_count = 0;
    if (c->park_timer != NULL)
        evtimer_del(c->park_timer);
    while (p != NULL) {
        struct coord_parked *next = p->next;
        coord_shard *sh = coord_pool_find(c, p->group);
        uint64_t waited_ms = (om_clock_mono_ns() - p->t0) / 1000000;
        Objmeta__Request *req;

        if (waited_ms >= c->opts.failover_wait_ms) {
            park_expired(c, p->op, p->t0, p->reply, p->group, waited_ms);
            free(p);
            p = next;
            continue;
        }
        if (sh != NULL && coord_shard_waits(sh) && !c->stopping) {
            park_append(c, p); /* its group still has no primary: it keeps waiting */
            p = next;
            continue;
        }
        req = objmeta__request__unpack(NULL, p->n, p->packed);
        if (req == NULL) {
            coord_answer_error(c, p->op, p->t0, p->reply, OM_E_NOMEM,
                               "out of memory while releasing a request held for a failover");
        } else {
            /* routed again: sent to the group's primary now, or parked again until its deadline */
            c->releasing = true;
            c->dispatch(c, req, p->t0, p->reply);
            c->releasing = false;
            objmeta__request__free_unpacked(req, NULL);
        }
        free(p);
        p = next;
    }
}

void
coord_route_park_close(coord *c)
{
    struct coord_parked *p = c->parked_head;

    c->parked_head = c->parked_tail = NULL;
    c->parked_count = 0;
    while (p != NULL) {
        struct coord_parked *next = p->next;
        coord_answer_error(c, p->op, p->t0, p->reply, OM_E_UNAVAILABLE,
                           "the coordinator is closing; replica group %s had no primary", p->group);
        free(p);
        p = next;
    }
    if (c->park_timer != NULL)
        event_free(c->park_timer);
    c->park_timer = NULL;
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

void
coord_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    /* when rpc read the request's batch: no clock read per request */
    coord_dispatch(arg, req, rpc_reply_start_ns(reply), reply);
}

void
coord_dispatch(coord *c, const Objmeta__Request *in, uint64_t t0, rpc_reply *reply)
{
    /* Whatever is sent on behalf of this request -- routed, proxied to the leader, held and
     * replayed -- carries its request id (the client's, or the one rpc made: rpc.h). */
    Objmeta__Request with_id = *in;
    const Objmeta__Request *req = &with_id;

    with_id.request_id = (char *)rpc_reply_request_id(reply);
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
        coord_answer_stats(c, t0, reply);
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
    case OBJMETA__REQUEST__BODY_CANCEL_REBALANCE:
        coord_mig_admin(c, req, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_REBALANCE_STATUS:
        coord_mig_status(c, t0, reply);
        break;
    case OBJMETA__REQUEST__BODY_ADD_GROUP:
    case OBJMETA__REQUEST__BODY_REMOVE_GROUP:
    case OBJMETA__REQUEST__BODY_GROUPS:
    case OBJMETA__REQUEST__BODY_PROMOTE:
    case OBJMETA__REQUEST__BODY_ADD_REPLICA:
    case OBJMETA__REQUEST__BODY_REMOVE_REPLICA:
    case OBJMETA__REQUEST__BODY_VERIFY:
        coord_group_admin(c, req, t0, reply); /* group_admin.c */
        break;
    default:
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "unknown operation");
        break;
    }
}
