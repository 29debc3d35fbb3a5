/*
 * shard/ring_fence.c -- the shard's ring (installed by SetRing) and the
 * fencing check of every keyed request; see ring_fence.h for the rules.
 */
#define OM_LOG_MODULE "fence"
#include "shard/ring_fence.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner/ring.h"
#include "util/log.h"

struct shard_fence {
    pthread_mutex_t mu;
    ring *cur; /* under mu; NULL until the first SetRing */
    char *self;
};

om_status
shard_fence_new(const char *self_id, shard_fence **out)
{
    shard_fence *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return OM_ERR(OM_E_NOMEM);
    f->self = strdup(self_id ? self_id : "");
    if (f->self == NULL) {
        free(f);
        return OM_ERR(OM_E_NOMEM);
    }
    pthread_mutex_init(&f->mu, NULL);
    *out = f;
    return OM_OK;
}

void
shard_fence_free(shard_fence *f)
{
    if (f == NULL)
        return;
    ring_unref(f->cur);
    pthread_mutex_destroy(&f->mu);
    free(f->self);
    free(f);
}

static ring *
fence_get(shard_fence *f)
{
    ring *r;

    pthread_mutex_lock(&f->mu);
    r = f->cur ? ring_ref(f->cur) : NULL;
    pthread_mutex_unlock(&f->mu);
    return r;
}

uint64_t
shard_fence_epoch(void *arg)
{
    shard_fence *f = arg;
    uint64_t e;

    pthread_mutex_lock(&f->mu);
    e = f->cur ? ring_epoch(f->cur) : 0;
    pthread_mutex_unlock(&f->mu);
    return e;
}

om_status
shard_fence_check(void *arg, uint64_t ring_epoch_req, om_slice bucket, om_slice key, char *err,
                  size_t errlen)
{
    shard_fence *f = arg;
    om_status st = OM_OK;
    ring *r;

    if (ring_epoch_req == 0)
        return OM_OK;
    r = fence_get(f);
    if (r == NULL) {
        snprintf(err, errlen, "shard %s holds no ring (request routed with epoch %llu)", f->self,
                 (unsigned long long)ring_epoch_req);
        return OM_E_WRONG_SHARD;
    }
    if (ring_epoch(r) != ring_epoch_req) {
        snprintf(err, errlen, "shard %s holds ring epoch %llu, request routed with %llu", f->self,
                 (unsigned long long)ring_epoch(r), (unsigned long long)ring_epoch_req);
        st = OM_E_WRONG_SHARD;
    } else if (key.n > 0) {
        const ring_shard *owner = ring_lookup(r, bucket, key);
        if (strcmp(owner->id, f->self) != 0) {
            snprintf(err, errlen, "key belongs to shard %s under ring epoch %llu, not %s",
                     owner->id, (unsigned long long)ring_epoch_req, f->self);
            st = OM_E_WRONG_SHARD;
        }
    }
    ring_unref(r);
    return st;
}

static void
fence_set_ring(shard_fence *f, const Objmeta__SetRingRequest *sr, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__SetRingResponse out = OBJMETA__SET_RING_RESPONSE__INIT;
    char err[256];
    ring *r = NULL, *old = NULL;
    size_t idx;

    if (sr->ring == NULL) {
        rpc_reply_error(reply, OM_E_INVALID, "SetRing without a ring");
        return;
    }
    /* The coordinator re-sends its ring as a health probe: answer a known epoch cheaply. */
    pthread_mutex_lock(&f->mu);
    if (f->cur != NULL && sr->ring->epoch <= ring_epoch(f->cur)) {
        out.epoch = ring_epoch(f->cur);
        pthread_mutex_unlock(&f->mu);
        resp.body_case = OBJMETA__RESPONSE__BODY_SET_RING;
        resp.set_ring = &out;
        rpc_reply_send(reply, &resp);
        return;
    }
    pthread_mutex_unlock(&f->mu);
    if (ring_from_pb(sr->ring, &r, err, sizeof(err)) != OM_OK) {
        rpc_reply_error(reply, OM_E_INVALID, "SetRing: %s", err);
        return;
    }
    if (ring_find(r, f->self, &idx) != OM_OK) {
        rpc_reply_error(reply, OM_E_INVALID, "this shard (id %s) is not in ring epoch %llu",
                        f->self, (unsigned long long)ring_epoch(r));
        ring_unref(r);
        return;
    }
    pthread_mutex_lock(&f->mu);
    if (f->cur == NULL || ring_epoch(r) > ring_epoch(f->cur)) {
        old = f->cur;
        f->cur = r;
        r = NULL;
    }
    out.epoch = ring_epoch(f->cur);
    pthread_mutex_unlock(&f->mu);
    if (r == NULL)
        om_log(OM_LOG_INFO, "ring installed id=%s epoch=%llu previous=%llu", f->self,
               (unsigned long long)out.epoch, (unsigned long long)(old ? ring_epoch(old) : 0));
    ring_unref(old);
    ring_unref(r);
    resp.body_case = OBJMETA__RESPONSE__BODY_SET_RING;
    resp.set_ring = &out;
    rpc_reply_send(reply, &resp);
}

static void
fence_get_ring(shard_fence *f, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__GetRingResponse gr = OBJMETA__GET_RING_RESPONSE__INIT;
    Objmeta__Ring *pb = NULL;
    ring *r = fence_get(f);

    if (r == NULL) {
        rpc_reply_error(reply, OM_E_NOTFOUND, "shard %s holds no ring", f->self);
        return;
    }
    if (ring_to_pb(r, &pb) != OM_OK) {
        ring_unref(r);
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    ring_unref(r);
    gr.ring = pb;
    resp.body_case = OBJMETA__RESPONSE__BODY_GET_RING;
    resp.get_ring = &gr;
    rpc_reply_send(reply, &resp);
    ring_pb_free(pb);
}

bool
shard_fence_handle(shard_fence *f, const Objmeta__Request *req, rpc_reply *reply)
{
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_SET_RING:
        fence_set_ring(f, req->set_ring, reply);
        return true;
    case OBJMETA__REQUEST__BODY_GET_RING:
        fence_get_ring(f, reply);
        return true;
    default:
        return false;
    }
}
