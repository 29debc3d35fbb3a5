/*
 * shard/migrate.c -- the shard's rings (cur / pending / prev), the fencing
 * check, SetRing and GetRing, and the compaction filter that drops what the
 * shard no longer owns; the migration operations MigrateScan, ApplyRecords
 * and Compact run in shard/mig_jobs.c (what both share: migrate_int.h).
 * Rules: shard/migrate.h; protocol: coordinator/MIGRATION.md.
 *
 * Threads. SetRing, GetRing and the fencing check are quick and run on the
 * loop thread (the check also on the shard's workers); the compaction filter
 * runs on the engine's compaction threads.
 *
 * Locking. `mu` guards the three ring pointers; everyone else takes
 * references under it (mig_view_get) and works without it.
 */
#define OM_LOG_MODULE "migrate"
#include "shard/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/migrate_int.h"
#include "shard/record.h"
#include "shard/shard_int.h"
#include "util/checksum.h"
#include "util/clock.h"
#include "util/log.h"

void
shard_mig_opts_init(shard_mig_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->tombstone_retention_ms = 7ull * 24 * 3600 * 1000;
    o->threads = 3;
    o->compact_rate = SHARD_MIG_COMPACT_RATE;
}

om_status
shard_mig_new(const char *self_id, const shard_mig_opts *o, shard_mig **out)
{
    shard_mig *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (o != NULL)
        m->opts = *o;
    else
        shard_mig_opts_init(&m->opts);
    if (m->opts.threads < 1)
        m->opts.threads = 1;
    m->self = strdup(self_id ? self_id : "");
    if (m->self == NULL) {
        free(m);
        return OM_ERR(OM_E_NOMEM);
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return OM_OK;
}

void
shard_mig_free(shard_mig *m)
{
    if (m == NULL)
        return;
    ring_unref(m->cur);
    ring_unref(m->pending);
    ring_unref(m->prev);
    pthread_mutex_destroy(&m->mu);
    free(m->self);
    free(m);
}

/* --- the rings ---------------------------------------------------------------------------------
 */

void
mig_view_get(shard_mig *m, mig_view *v)
{
    pthread_mutex_lock(&m->mu);
    v->cur = m->cur ? ring_ref(m->cur) : NULL;
    v->pending = m->pending ? ring_ref(m->pending) : NULL;
    v->prev = m->prev ? ring_ref(m->prev) : NULL;
    pthread_mutex_unlock(&m->mu);
}

void
mig_view_put(mig_view *v)
{
    ring_unref(v->cur);
    ring_unref(v->pending);
    ring_unref(v->prev);
}

/* Does r name shard `self` the owner of hash h? */
bool
mig_owns(const ring *r, const char *self, uint64_t h)
{
    return strcmp(ring_shard_at(r, ring_owner(r, h))->id, self) == 0;
}

uint64_t
shard_mig_epoch(shard_mig *m)
{
    uint64_t e;

    pthread_mutex_lock(&m->mu);
    e = m->cur ? ring_epoch(m->cur) : 0;
    pthread_mutex_unlock(&m->mu);
    return e;
}

uint64_t
shard_mig_pending_epoch(shard_mig *m)
{
    uint64_t e;

    pthread_mutex_lock(&m->mu);
    e = m->pending ? ring_epoch(m->pending) : 0;
    pthread_mutex_unlock(&m->mu);
    return e;
}

om_status
shard_mig_check(void *arg, uint64_t e, om_slice bucket, om_slice key, char *err, size_t errlen)
{
    shard_mig *m = arg;
    om_status st = OM_OK;
    mig_view v;
    uint64_t h;
    const ring *by = NULL;

    if (e == 0)
        return OM_OK;
    mig_view_get(m, &v);
    if (v.cur == NULL) {
        snprintf(err, errlen, "shard %s holds no ring (request routed with epoch %llu)", m->self,
                 (unsigned long long)e);
        st = OM_E_WRONG_SHARD;
        goto out;
    }
    h = key.n > 0 ? ring_key_hash(bucket, key) : 0;
    if (e == ring_epoch(v.cur)) {
        by = v.cur;
    } else if (v.pending != NULL && e == ring_epoch(v.pending)) {
        by = v.pending;
    } else if (v.prev != NULL && e == ring_epoch(v.prev) && key.n > 0) {
        if (!mig_owns(v.prev, m->self, h) || !mig_owns(v.cur, m->self, h)) {
            snprintf(err, errlen, "key moved: shard %s does not own it under ring epoch %llu",
                     m->self, (unsigned long long)ring_epoch(v.cur));
            st = OM_E_WRONG_SHARD;
        }
        goto out;
    } else {
        snprintf(err, errlen, "shard %s holds ring epoch %llu%s, request routed with %llu", m->self,
                 (unsigned long long)ring_epoch(v.cur), v.pending ? " (and a pending ring)" : "",
                 (unsigned long long)e);
        st = OM_E_WRONG_SHARD;
        goto out;
    }
    if (key.n > 0 && !mig_owns(by, m->self, h)) {
        snprintf(err, errlen, "key belongs to shard %s under ring epoch %llu, not %s",
                 ring_shard_at(by, ring_owner(by, h))->id, (unsigned long long)e, m->self);
        st = OM_E_WRONG_SHARD;
    }
out:
    mig_view_put(&v);
    return st;
}

om_status
shard_mig_move_fence(void *arg, uint64_t e, om_slice bucket, om_slice key, char *err, size_t errlen)
{
    shard_mig *m = arg;
    om_status st = OM_OK;
    mig_view v;
    uint64_t h;

    if (e == 0 || key.n == 0 || !atomic_load_explicit(&m->fenced, memory_order_acquire))
        return OM_OK;
    mig_view_get(m, &v);
    if (v.cur != NULL && v.pending != NULL && e == ring_epoch(v.cur)) {
        h = ring_key_hash(bucket, key);
        if (mig_owns(v.cur, m->self, h) && !mig_owns(v.pending, m->self, h)) {
            snprintf(err, errlen,
                     "key is moving to shard %s (ring epoch %llu): shard %s is fenced for the "
                     "cutover and serves it no longer by epoch %llu",
                     ring_shard_at(v.pending, ring_owner(v.pending, h))->id,
                     (unsigned long long)ring_epoch(v.pending), m->self, (unsigned long long)e);
            st = OM_E_WRONG_SHARD;
        }
    }
    mig_view_put(&v);
    return st;
}

lsm_filter_decision
shard_mig_compaction_filter(void *arg, int level, om_slice key, om_slice value)
{
    shard_mig *m = arg;
    lsm_filter_decision d = LSM_FILTER_KEEP;
    mig_view v;
    uint64_t h;

    (void)level;
    mig_view_get(m, &v);
    if (v.cur == NULL || shard_key_is_reserved(key))
        goto out; /* no ring known (just restarted), or the replica's own state: keep */
    h = om_hash64(key.p, key.n); /* the LSM key is bucket 0x00 key: its hash is the key hash */
    if (!m->opts.replicated && !mig_owns(v.cur, m->self, h) &&
        (v.pending == NULL || !mig_owns(v.pending, m->self, h))) {
        atomic_fetch_add_explicit(&m->filter_dropped, 1, memory_order_relaxed);
        d = LSM_FILTER_DROP;
        goto out;
    }
    if (v.pending == NULL && m->opts.tombstone_retention_ms > 0) {
        shard_record rec;
        uint64_t now_us = om_clock_wall_ns() / 1000;
        if (shard_record_decode(value, &rec) == OM_OK && rec.type == SHARD_REC_TOMBSTONE &&
            rec.version + m->opts.tombstone_retention_ms * 1000 < now_us) {
            atomic_fetch_add_explicit(&m->tombstones_dropped, 1, memory_order_relaxed);
            d = LSM_FILTER_DROP;
        }
    }
out:
    mig_view_put(&v);
    return d;
}

/* --- SetRing / GetRing ------------------------------------------------------------------------ */

static bool
ring_has(const ring *r, const char *id)
{
    size_t idx;
    return r != NULL && ring_find(r, id, &idx) == OM_OK;
}

static void
mig_answer_epochs(shard_mig *m, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__SetRingResponse out = OBJMETA__SET_RING_RESPONSE__INIT;

    pthread_mutex_lock(&m->mu);
    out.epoch = m->cur ? ring_epoch(m->cur) : 0;
    out.pending_epoch = m->pending ? ring_epoch(m->pending) : 0;
    out.state_revision = m->state_rev;
    out.fenced = atomic_load(&m->fenced);
    pthread_mutex_unlock(&m->mu);
    resp.body_case = OBJMETA__RESPONSE__BODY_SET_RING;
    resp.set_ring = &out;
    rpc_reply_send(reply, &resp);
}

om_status
shard_mig_install(shard_mig *m, const ring *cur, const ring *pending, char *err, size_t errlen)
{
    ring *drop[2] = {NULL, NULL};
    uint64_t held, held_p, want_p = pending ? ring_epoch(pending) : 0;
    bool changed = false;

    if (pending != NULL && ring_epoch(pending) <= ring_epoch(cur)) {
        snprintf(err, errlen, "pending epoch %llu is not above the ring's %llu",
                 (unsigned long long)ring_epoch(pending), (unsigned long long)ring_epoch(cur));
        return OM_E_INVALID;
    }
    if (!ring_has(cur, m->self) && !ring_has(pending, m->self)) {
        snprintf(err, errlen, "this shard (id %s) is not in ring epoch %llu%s", m->self,
                 (unsigned long long)ring_epoch(cur), pending ? " nor in the pending ring" : "");
        return OM_E_INVALID;
    }
    pthread_mutex_lock(&m->mu);
    held = m->cur ? ring_epoch(m->cur) : 0;
    /* A forged or corrupt epoch far ahead would make every later genuine ring
     * look old (MIGRATION.md, "Shards learn both rings"): bound the jump. */
    uint64_t top = want_p > ring_epoch(cur) ? want_p : ring_epoch(cur);
    if (held != 0 && top > held && top - held > SHARD_MIG_MAX_EPOCH_STEP) {
        pthread_mutex_unlock(&m->mu);
        snprintf(err, errlen,
                 "ring epoch %llu is more than %u ahead of the held epoch %llu (not a successor "
                 "this shard accepts; restart it to take any ring)",
                 (unsigned long long)top, SHARD_MIG_MAX_EPOCH_STEP, (unsigned long long)held);
        return OM_E_INVALID;
    }
    if (ring_epoch(cur) > held) {
        atomic_store(&m->fenced, false); /* the fence belongs to one pending ring */
        drop[0] = m->prev;
        m->prev = m->cur;
        m->cur = ring_ref(cur);
        changed = true;
    }
    if (ring_epoch(m->cur) == ring_epoch(cur)) {
        uint64_t hp = m->pending ? ring_epoch(m->pending) : 0;
        if (hp != want_p) {
            atomic_store(&m->fenced, false);
            drop[1] = m->pending;
            m->pending = pending ? ring_ref(pending) : NULL;
            changed = true;
        }
    }
    held = ring_epoch(m->cur);
    held_p = m->pending ? ring_epoch(m->pending) : 0;
    pthread_mutex_unlock(&m->mu);
    if (changed)
        om_log(OM_LOG_INFO, "rings installed id=%s epoch=%llu pending_epoch=%llu", m->self,
               (unsigned long long)held, (unsigned long long)held_p);
    ring_unref(drop[0]);
    ring_unref(drop[1]);
    return OM_OK;
}

/*
 * Rings are ordered by (epoch, cluster-state revision): at the epoch it holds
 * the shard takes a new pending ring only from a revision not older than the
 * newest it accepted, so a coordinator behind the cluster state cannot drop
 * or bring back a pending ring (MIGRATION.md, "Fencing with many
 * coordinators"). Revision 0 (file backend) is not compared. Loop thread.
 */
static void
mig_note_revision(shard_mig *m, uint64_t epoch, uint64_t rev)
{
    pthread_mutex_lock(&m->mu);
    if (rev != 0 && m->cur != NULL && ring_epoch(m->cur) == epoch && rev > m->state_rev)
        m->state_rev = rev;
    pthread_mutex_unlock(&m->mu);
}

typedef struct mig_fence_wait {
    shard_mig *m;
    rpc_reply *reply;
} mig_fence_wait;

static void
mig_fence_drained(void *arg)
{
    mig_fence_wait *w = arg;

    mig_answer_epochs(w->m, w->reply);
    free(w);
}

/*
 * The rings of sr are held: apply sr->fence -- only from the held rings and a
 * revision not older than the held one -- and answer. Turning the fence on
 * is answered through a commit barrier, so the answer leaves after every
 * write that passed the check before it (same loop thread) is durable.
 */
static void
mig_fence_answer(shard_mig *m, const Objmeta__SetRingRequest *sr, rpc_reply *reply)
{
    uint64_t want_p = sr->pending ? sr->pending->epoch : 0;
    bool on = false, was = false;
    mig_fence_wait *w;

    pthread_mutex_lock(&m->mu);
    if (sr->fence != 0 && m->cur != NULL && sr->ring->epoch == ring_epoch(m->cur) &&
        (sr->state_revision == 0 || sr->state_revision >= m->state_rev)) {
        on = sr->fence == 1 && m->pending != NULL && want_p == ring_epoch(m->pending);
        was = atomic_exchange(&m->fenced, on);
    }
    pthread_mutex_unlock(&m->mu);
    if (on != was)
        om_log(OM_LOG_INFO, "cutover fence %s id=%s epoch=%llu pending_epoch=%llu",
               on ? "on" : "off", m->self, (unsigned long long)sr->ring->epoch,
               (unsigned long long)want_p);
    if (!on || m->s == NULL) {
        mig_answer_epochs(m, reply);
        return;
    }
    w = malloc(sizeof(*w));
    if (w == NULL) {
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    *w = (mig_fence_wait){.m = m, .reply = reply};
    if (shard_commit_barrier(m->s, mig_fence_drained, w) != OM_OK) {
        free(w);
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
    }
}

static void
mig_set_ring(shard_mig *m, const Objmeta__SetRingRequest *sr, rpc_reply *reply)
{
    char err[256];
    ring *r = NULL, *p = NULL;
    uint64_t held, held_p, held_rev, want_p = sr->pending ? sr->pending->epoch : 0;
    uint64_t rev = sr->state_revision;

    if (sr->ring == NULL) {
        rpc_reply_error(reply, OM_E_INVALID, "SetRing without a ring");
        return;
    }
    /* The coordinator re-sends its rings as a health probe: answer a known state cheaply. */
    pthread_mutex_lock(&m->mu);
    held = m->cur ? ring_epoch(m->cur) : 0;
    held_p = m->pending ? ring_epoch(m->pending) : 0;
    held_rev = m->state_rev;
    pthread_mutex_unlock(&m->mu);
    if (sr->ring->epoch < held || (sr->ring->epoch == held && want_p == held_p)) {
        mig_note_revision(m, sr->ring->epoch, rev);
        mig_fence_answer(m, sr, reply);
        return;
    }
    if (sr->ring->epoch == held && rev != 0 && rev < held_rev) {
        rpc_reply_error(reply, OM_E_PRECONDITION,
                        "SetRing: stale cluster state: pending epoch %llu from state revision "
                        "%llu, but shard %s holds ring epoch %llu with pending %llu from the newer "
                        "revision %llu (the sender must reload the cluster state)",
                        (unsigned long long)want_p, (unsigned long long)rev, m->self,
                        (unsigned long long)held, (unsigned long long)held_p,
                        (unsigned long long)held_rev);
        return;
    }
    if (ring_from_pb(sr->ring, &r, err, sizeof(err)) != OM_OK) {
        rpc_reply_error(reply, OM_E_INVALID, "SetRing: %s", err);
        return;
    }
    if (sr->pending != NULL && ring_from_pb(sr->pending, &p, err, sizeof(err)) != OM_OK) {
        ring_unref(r);
        rpc_reply_error(reply, OM_E_INVALID, "SetRing: pending: %s", err);
        return;
    }
    if (shard_mig_install(m, r, p, err, sizeof(err)) != OM_OK) {
        rpc_reply_error(reply, OM_E_INVALID, "SetRing: %s", err);
    } else {
        pthread_mutex_lock(&m->mu);
        if (ring_epoch(m->cur) > held) /* a new epoch: its revisions start here */
            m->state_rev = 0;
        pthread_mutex_unlock(&m->mu);
        mig_note_revision(m, sr->ring->epoch, rev);
        mig_fence_answer(m, sr, reply);
    }
    ring_unref(r);
    ring_unref(p);
}

static void
mig_get_ring(shard_mig *m, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__GetRingResponse gr = OBJMETA__GET_RING_RESPONSE__INIT;
    Objmeta__Ring *pb = NULL, *pp = NULL;
    mig_view v;

    mig_view_get(m, &v);
    if (v.cur == NULL) {
        mig_view_put(&v);
        rpc_reply_error(reply, OM_E_NOTFOUND, "shard %s holds no ring", m->self);
        return;
    }
    if (ring_to_pb(v.cur, &pb) != OM_OK || (v.pending && ring_to_pb(v.pending, &pp) != OM_OK)) {
        mig_view_put(&v);
        ring_pb_free(pb);
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    mig_view_put(&v);
    gr.ring = pb;
    gr.pending = pp;
    resp.body_case = OBJMETA__RESPONSE__BODY_GET_RING;
    resp.get_ring = &gr;
    rpc_reply_send(reply, &resp);
    ring_pb_free(pb);
    ring_pb_free(pp);
}

bool
shard_mig_handle(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply)
{
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_SET_RING:
        mig_set_ring(m, req->set_ring, reply);
        return true;
    case OBJMETA__REQUEST__BODY_GET_RING:
        mig_get_ring(m, reply);
        return true;
    default:
        return mig_jobs_handle(m, req, reply); /* scans, applies, compactions */
    }
}
