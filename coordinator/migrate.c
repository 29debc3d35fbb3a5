/*
 * coordinator/migrate.c -- the state machine of online ring changes: the
 * timer that drives a change through its passes, the cutover fence and its
 * queue of held requests, the switch, the cleanup, open/close. AddShard,
 * RemoveShard and SetWeight start a change (mig_admin.c); the copy pipeline
 * and its throttle are in mig_copy.c, the persisted state in mig_state.c.
 * The protocol and its reasoning are in coordinator/MIGRATION.md; in short:
 *
 *   IDLE --admin op--> COPYING (pass 0: copy, [pass 1: catch-up],
 *        pass 2: final, fenced) --switch--> CLEANUP --compacted--> IDLE
 *
 * The ring in force (c->ring, epoch e) and the target (c->pending, e + 1)
 * are persisted with this state in the RING file (tag 3) before anything
 * acts on them. Per old owner ("source") the state holds the LSM cursor of
 * the last batch copied, the watermarks and counters.
 *
 * Copy. Per source a pipeline: one MigrateScan in flight (the source's
 * records in its moving ranges, after the scan cursor, version >= the
 * pass's min_version) and up to MIG_PIPELINE scanned batches whose
 * ApplyRecords (one per new owner named in the batch) are out. Batches
 * commit in order; the cursor advances only when every apply of a batch
 * succeeded, so a failure anywhere (a shard down, a timeout) restarts the
 * pipeline from the cursor after a backoff -- applies are idempotent (a
 * record is kept only if newer). A token bucket over all sources throttles
 * the copy: migrate_rate bytes/s in migrate_batch batches while no client
 * request arrives, the lower migrate_rate_busy (halved while client writes
 * are slow) in migrate_batch_busy batches, one at a time, while clients are
 * active (coord_mig_throttle_update; MIGRATION.md, "Throttle"). Cursors are
 * persisted when a source commits its first records and then at most every
 * MIG_CHECKPOINT_MS during pass 0, so a coordinator restart resumes near
 * where it stopped.
 *
 * Writes meanwhile go to the old owner and are forwarded (router.c); a
 * write whose copy on the new owner is not confirmed lands in the dirty set
 * (coord_mig_note_dirty). Pass 0 starts once the writes routed before the
 * change are answered. After it the moving keys are fenced (router.c and
 * fanout.c hold new requests for them with coord_mig_hold, below; one that
 * cannot be held is answered BUSY, never routed), requests for them still
 * in flight drain, and
 * pass 2 copies the dirty keys (MigrateScan{keys}). Nothing can write a
 * moving key during pass 2, so when it ends the new owners hold the newest
 * version of every moving record. The switch persists {ring e+1, no
 * pending, CLEANUP}, routes by e+1, pushes SetRing to every shard and
 * releases the held requests. A fenced pass longer than cutover_timeout_ms
 * is abandoned (requests released) and retried after a catch-up pass.
 *
 * After a restart (or a dirty-set overflow) the dirty set is incomplete:
 * pass 1 then copies every record with version >= wm0 (the source's clock
 * when pass 0 started, minus clock_margin_ms) and pass 2 rescans for what
 * was written since pass 1 began.
 *
 * Cleanup asks every old owner that stays in the ring to compact once it
 * holds ring e+1: its compaction filter drops the records it gave away.
 * One compacts at a time. Its progress comes from polls (CompactRequest
 * with progress, every MIG_CLEANUP_POLL_MS, answered at once by the shard
 * from lsm_compact_range_progress: table bytes read of the total); each
 * waiting owner is polled once for the bytes its compaction will read, so
 * the status has a total for the whole cleanup, a rate (bytes done since
 * the first Compact over the time since) and an ETA from them.
 *
 * A coordinator restart during pass 0 resumes from the checkpoints; later
 * it restarts pass 1 with min_version wm0 (conservative).
 *
 * Everything runs on the coordinator's loop thread; callbacks check the
 * state's generation so that answers to an abandoned pass are ignored.
 */
#define OM_LOG_MODULE "migrate"
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cstate.h"
#include "coordinator/migrate_int.h"
#include "util/checksum.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/log.h"

#define MIG_COMPACT_TIMEOUT_MS (30u * 60u * 1000u)
/* How often the old owner that compacts is asked for its progress, and how long it may take. */
#define MIG_CLEANUP_POLL_MS 500u
#define MIG_CLEANUP_POLL_TIMEOUT_MS 2000u

bool
coord_mig_quiet(const coord *c)
{
    const coord_mig *m = c->mig;

    if (m == NULL)
        return true;
    if (m->starting)
        return false;
    for (size_t i = 0; i < m->nsrc; i++) {
        if (m->src[i].scan_busy)
            return false;
        for (size_t k = 0; k < MIG_PIPELINE; k++)
            if (m->src[i].b[k].applies_out > 0)
                return false;
    }
    for (size_t i = 0; i < m->ncl; i++)
        if (m->cl[i].busy)
            return false;
    return true;
}

/* --- held requests (the cutover fence, a ring switch)
 * ---------------------------------------------- */

struct coord_held {
    coord_held *next;
    rpc_reply *reply;
    uint64_t t0;
    size_t n;
    uint8_t *packed;
};

bool
coord_mig_hold(coord *c, const Objmeta__Request *req, coord_op op, uint64_t t0, rpc_reply *reply,
               bool is_list)
{
    coord_held *h;

    if (is_list ? !c->hold_lists : !c->fenced)
        return false;
    h = calloc(1, sizeof(*h));
    if (h != NULL) {
        h->n = objmeta__request__get_packed_size(req);
        h->packed = malloc(h->n ? h->n : 1);
    }
    if (h == NULL || h->packed == NULL) {
        /* Forwarding now would let a write reach the old owner behind the final pass's back. */
        free(h);
        coord_answer_error(c, op, t0, reply, OM_E_BUSY,
                           "ring switch under way and no memory to hold the request; retry");
        return true;
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
            c->dispatch(c, req, h->t0, h->reply);
            objmeta__request__free_unpacked(req, NULL);
        }
        free(h->packed);
        free(h);
        h = next;
    }
}

static bool
mig_phase_move_legal(mig_phase from, mig_phase to)
{
    switch (from) {
    case MIG_IDLE:
        return to == MIG_COPYING;
    case MIG_COPYING:
        return to == MIG_CLEANUP || to == MIG_IDLE;
    case MIG_CLEANUP:
        return to == MIG_IDLE || to == MIG_COPYING;
    }
    return false;
}

void
coord_mig_set_phase(coord_mig *m, mig_phase to)
{
    OM_ASSERT(mig_phase_move_legal(m->phase, to));
    m->phase = to;
    if (to == MIG_CLEANUP)
        m->cl_t0_ms = m->cl_done0 = 0; /* the cleanup's rate starts with its first Compact */
}

static void
mig_unfence(coord_mig *m)
{
    coord *c = m->c;

    c->fenced = false;
    c->hold_lists = false;
    if (c->shard_fence) {
        c->shard_fence = false;
        coord_pool_push_all(c); /* the shards' fence off */
    }
    if (c->held_count > 0)
        om_log(OM_LOG_INFO, "releasing held requests count=%zu", c->held_count);
    coord_mig_release_held(c);
}

/* The final pass is done: persist ring e+1, route by it, tell the shards, release requests. */
static void
mig_switch(coord_mig *m)
{
    coord *c = m->c;
    ring *oldr = c->ring, *newr = c->pending;
    size_t idx;

    /* The switch ends the fenced final pass; ring epochs only move forward. */
    OM_ASSERT(m->phase == MIG_COPYING && m->pass == 2 && c->fenced && c->hold_lists);
    OM_ASSERT(ring_epoch(newr) > ring_epoch(oldr));

    /* cleanup list: old owners that stay in the ring, after the targets of a cancelled
     * change (set by coord_mig_cancel; empty otherwise) */
    size_t ncl0 = m->ncl;
    mig_cleanup *cl = realloc(m->cl, (ncl0 + m->nsrc + 1) * sizeof(*m->cl));
    if (cl == NULL)
        return;
    m->cl = cl;
    for (size_t i = 0; i < m->nsrc; i++) {
        if (ring_find(newr, m->src[i].id, &idx) != OM_OK)
            continue;
        memset(&m->cl[m->ncl], 0, sizeof(m->cl[m->ncl]));
        m->cl[m->ncl].id = strdup(m->src[i].id);
        if (m->cl[m->ncl].id == NULL) {
            while (m->ncl > ncl0)
                free(m->cl[--m->ncl].id);
            return;
        }
        m->ncl++;
    }
    c->ring = newr;
    c->pending = NULL;
    coord_mig_set_phase(m, MIG_CLEANUP);
    OM_ASSERT(ring_epoch(newr) > m->last_change_epoch);
    m->last_change_epoch = ring_epoch(newr);
    if (coord_mig_persist(m) != OM_OK) {
        /* not switched: try again at the next tick (still fenced; the cutover timeout applies) */
        c->pending = newr;
        c->ring = oldr;
        coord_mig_set_phase(m, MIG_COPYING);
        while (m->ncl > ncl0)
            free(m->cl[--m->ncl].id);
        return;
    }
    ring_unref(oldr);
    if (coord_pool_sync(c) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot update the shard pool after the switch");
    coord_pool_push_all(c);
    om_log(OM_LOG_INFO,
           "ring switched epoch=%llu fenced_ms=%llu records=%llu bytes=%llu "
           "catchup_records=%llu catchup_bytes=%llu forwards_ok=%llu forwards_failed=%llu "
           "held_requests=%zu",
           (unsigned long long)ring_epoch(newr),
           (unsigned long long)(om_clock_mono_ms() - m->fence_start_ms),
           (unsigned long long)coord_mig_total_records(m),
           (unsigned long long)coord_mig_total_bytes(m), (unsigned long long)m->catchup_records,
           (unsigned long long)m->catchup_bytes, (unsigned long long)c->forwards_ok,
           (unsigned long long)c->forwards_failed, c->held_count);
    mig_unfence(m);
}

/* --- cancel (MIGRATION.md, "Cancel") ---------------------------------------------------------- */

bool
coord_mig_cancelling(const coord_mig *m)
{
    /* a change that moves nothing never persists COPYING (mig_begin switches at once): a
     * pending ring with ring e's placement is a cancel, also after a restart */
    return m->phase == MIG_COPYING && m->nrng == 0;
}

/* Ring e's placement with epoch `epoch`. */
static om_status
ring_renumber(const ring *r, uint64_t epoch, ring **out, char *err, size_t errlen)
{
    size_t n = ring_shard_count(r);
    ring_shard *sh = calloc(n ? n : 1, sizeof(*sh));
    om_status st;

    if (sh == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < n; i++)
        sh[i] = *ring_shard_at(r, i);
    st = ring_new(sh, n, ring_vnodes_per_weight(r), epoch, out, err, errlen);
    free(sh);
    return st;
}

/*
 * Until the switch the old owners hold every acknowledged write (they judged and versioned
 * them all) and still own their keys, so going back loses nothing. What the targets copied
 * must neither become visible nor outlive a later delete: the cancel is run as a change to
 * ring e's placement under epoch e' = pending + 1 (a fresh epoch: shards tell rings apart
 * by epoch, so e + 1 cannot be reused). Nothing moves in it, so it goes straight to the
 * switch once every shard that is up holds e' as its pending ring -- from then on they
 * refuse applies and forwards routed with e + 1 -- and its cleanup compacts the targets
 * that stay in the ring (their filter drops every key they do not own under e'). The next
 * change starts only after that cleanup. Targets outside ring e (an added shard) leave the
 * pool: they hold copies and AddShard refuses them until their data dir is wiped.
 */
om_status
coord_mig_cancel(coord_mig *m, Objmeta__CancelRebalanceResponse *out, char ***wipe, char *err,
                 size_t errlen)
{
    coord *c = m->c;
    ring *oldp = c->pending, *np = NULL;
    coord_mig *next = NULL;
    mig_cleanup *cl = NULL;
    size_t ncl = 0, nwipe = 0, idx;
    char **w = NULL;
    om_status st;

    OM_ASSERT(m->phase == MIG_COPYING && oldp != NULL && !coord_mig_cancelling(m));
    *wipe = NULL;
    out->phase = m->pass == 2 ? "cutover" : m->pass == 1 ? "catch-up" : "copying";
    out->from_epoch = ring_epoch(c->ring);
    out->cancelled_epoch = ring_epoch(oldp);
    OM_TRY(ring_renumber(c->ring, ring_epoch(oldp) + 1, &np, err, errlen));
    cl = calloc(m->nrng + 1, sizeof(*cl));
    w = calloc(m->nrng + 1, sizeof(*w));
    next = malloc(sizeof(*next));
    if (cl == NULL || w == NULL || next == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    for (size_t i = 0; i < m->nrng; i++) {
        const char *to = m->rng[i].to;
        bool seen = false, stays = ring_find(c->ring, to, &idx) == OM_OK;
        for (size_t k = 0; k < ncl; k++)
            seen |= strcmp(cl[k].id, to) == 0;
        for (size_t k = 0; k < nwipe; k++)
            seen |= strcmp(w[k], to) == 0;
        if (seen)
            continue;
        char *id = strdup(to);
        if (id == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto fail;
        }
        if (stays)
            cl[ncl++].id = id;
        else
            w[nwipe++] = id;
    }
    /* the state after the cancel, saved before anything acts on it */
    *next = *m;
    next->pass = 0;
    next->nsrc = next->nrng = 0;
    next->cl = cl;
    next->ncl = ncl;
    next->from_epoch = ring_epoch(c->ring);
    next->to_epoch = ring_epoch(np);
    next->started_ms = om_clock_wall_ms();
    snprintf(next->op, sizeof(next->op), "cancel of %.140s", m->op);
    if ((st = coord_mig_save(m, next, np)) != OM_OK) {
        snprintf(err, errlen, "%s", m->err);
        goto fail;
    }
    om_log(OM_LOG_INFO,
           "ring change cancelled op=\"%s\" phase=%s epoch=%llu cancelled_epoch=%llu "
           "new_epoch=%llu targets_to_compact=%zu shards_to_wipe=%zu held_requests=%zu",
           m->op, out->phase, (unsigned long long)ring_epoch(c->ring),
           (unsigned long long)ring_epoch(oldp), (unsigned long long)ring_epoch(np), ncl, nwipe,
           c->held_count);
    coord_mig_free_change(m); /* answers to the cancelled passes are ignored from now on */
    c->pending = np;
    ring_unref(oldp);
    if (coord_mig_build(m) != OM_OK) /* no range moves: no source; nothing lost without */
        om_log(OM_LOG_WARN, "cancel: out of memory building the empty change");
    OM_ASSERT_ALWAYS(m->nrng == 0);
    m->cl = cl;
    m->ncl = ncl;
    m->pass = 0;
    m->final_started = false;
    memcpy(m->op, next->op, sizeof(m->op));
    m->from_epoch = next->from_epoch;
    m->to_epoch = next->to_epoch;
    m->started_ms = next->started_ms;
    m->need_catchup = false;
    m->drained = true; /* nothing is copied */
    m->err[0] = '\0';
    m->pass_start_ms = om_clock_mono_ms();
    free(next);
    /* the requests held for the cancelled cutover go to their owners under ring e */
    mig_unfence(m);
    if (coord_pool_sync(c) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot update the shard pool after the cancel");
    coord_pool_push_all(c);
    out->operation = m->op + strlen("cancel of ");
    out->to_epoch = ring_epoch(np);
    out->n_wipe_shards = nwipe;
    out->wipe_shards = w;
    *wipe = w;
    return OM_OK;
fail:
    for (size_t k = 0; k < ncl; k++)
        free(cl[k].id);
    for (size_t k = 0; k < nwipe; k++)
        free(w[k]);
    free(cl);
    free(w);
    free(next);
    ring_unref(np);
    return st;
}

const char *
coord_mig_request_id(coord_mig *m)
{
    snprintf(m->rid, sizeof(m->rid), "change-e%llu", (unsigned long long)m->to_epoch);
    return m->rid;
}

static void
compact_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    mig_call *mc = arg;
    coord_mig *m = mc->m;

    if (mc->gen == m->gen && mc->src < m->ncl) {
        mig_cleanup *cl = &m->cl[mc->src];
        cl->busy = false;
        if (st == OM_OK && resp->status == OBJMETA__STATUS__OK &&
            resp->body_case == OBJMETA__RESPONSE__BODY_COMPACT) {
            cl->done = true;
            cl->bytes_before = resp->compact->bytes_before;
            cl->bytes_after = resp->compact->bytes_after;
            if (resp->compact->bytes_total > 0) { /* what it read in the end */
                cl->bytes_done = resp->compact->bytes_done;
                cl->bytes_total = resp->compact->bytes_total;
            } else {
                cl->bytes_total = cl->bytes_done; /* a shard that reports no progress */
            }
            om_log(OM_LOG_INFO, "old owner compacted id=%s bytes_before=%llu bytes_after=%llu",
                   cl->id, (unsigned long long)cl->bytes_before,
                   (unsigned long long)cl->bytes_after);
            (void)coord_mig_persist(m);
        } else {
            coord_mig_errf(m, m->err, "compacting %s: %s", cl->id,
                           resp->message[0] ? resp->message : om_status_str(st));
            cl->retry_at_ms = om_clock_mono_ms() + 1000;
        }
    }
    free(mc);
}

static void
cleanup_poll_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    mig_call *mc = arg;
    coord_mig *m = mc->m;

    if (mc->gen == m->gen && mc->src < m->ncl) {
        mig_cleanup *cl = &m->cl[mc->src];
        cl->polling = false;
        if (!cl->done && st == OM_OK && resp->status == OBJMETA__STATUS__OK &&
            resp->body_case == OBJMETA__RESPONSE__BODY_COMPACT) {
            const Objmeta__CompactResponse *cr = resp->compact;
            if (cr->running && cl->busy) {
                cl->bytes_done = cr->bytes_done;
                cl->bytes_total = cr->bytes_total;
            } else if (!cr->running && (!cl->busy || cl->bytes_total == 0)) {
                /* not started (or queued): what it will read; a compaction that just ended
                 * keeps its last figures until its own answer brings the final ones */
                cl->bytes_done = 0;
                cl->bytes_total = cr->bytes_total;
            }
        }
    }
    free(mc);
}

/* Ask old owner i (shard sh) how far its compaction has got (or how much it will read). */
static void
cleanup_poll(coord_mig *m, size_t i, coord_shard *sh, uint64_t now)
{
    mig_cleanup *cl = &m->cl[i];
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__CompactRequest cq = OBJMETA__COMPACT_REQUEST__INIT;
    mig_call *mc;

    if (cl->polling || now < cl->poll_at_ms || !sh->up)
        return;
    if ((mc = coord_mig_call_new(m, i, m->gen)) == NULL)
        return;
    cq.progress = true;
    req.body_case = OBJMETA__REQUEST__BODY_COMPACT;
    req.compact = &cq;
    req.request_id = (char *)coord_mig_request_id(m);
    cl->poll_at_ms = now + MIG_CLEANUP_POLL_MS;
    if (rpc_client_call(sh->conns[sh->next_conn++ % sh->nconns], &req, MIG_CLEANUP_POLL_TIMEOUT_MS,
                        cleanup_poll_cb, mc) != OM_OK) {
        free(mc);
        return;
    }
    cl->polling = true;
}

/* The cleanup's totals: table bytes its compactions read of their total (estimated). */
void
coord_mig_cleanup_bytes(const coord_mig *m, uint64_t *done, uint64_t *total)
{
    *done = *total = 0;
    for (size_t i = 0; i < m->ncl; i++) {
        *done += m->cl[i].bytes_done;
        *total +=
            m->cl[i].bytes_total > m->cl[i].bytes_done ? m->cl[i].bytes_total : m->cl[i].bytes_done;
    }
}

static void
mig_cleanup_step(coord_mig *m)
{
    coord *c = m->c;
    bool all = true, busy = false;

    /* one compaction at a time: they rewrite whole trees, and clients are still served */
    for (size_t i = 0; i < m->ncl; i++)
        busy |= m->cl[i].busy;
    for (size_t i = 0; i < m->ncl; i++) {
        mig_cleanup *cl = &m->cl[i];
        uint64_t now = om_clock_mono_ms();
        coord_shard *sh;
        if (cl->done)
            continue;
        all = false;
        sh = coord_pool_find(c, cl->id);
        /* progress: every poll period from the one compacting, once from the others */
        if (sh != NULL && (cl->busy || cl->bytes_total == 0))
            cleanup_poll(m, i, sh, now);
        if (busy || now < cl->retry_at_ms)
            continue;
        if (sh == NULL) {
            cl->done = true; /* left the ring meanwhile */
            continue;
        }
        if (!coord_pool_in_sync(sh))
            continue; /* it must hold the new ring, or its filter keeps everything */
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__CompactRequest cq = OBJMETA__COMPACT_REQUEST__INIT;
        mig_call *mc = coord_mig_call_new(m, i, m->gen);
        if (mc == NULL)
            return;
        req.body_case = OBJMETA__REQUEST__BODY_COMPACT;
        req.compact = &cq;
        req.request_id = (char *)coord_mig_request_id(m);
        if (rpc_client_call(sh->conns[sh->next_conn++ % sh->nconns], &req, MIG_COMPACT_TIMEOUT_MS,
                            compact_cb, mc) != OM_OK) {
            free(mc);
            cl->retry_at_ms = om_clock_mono_ms() + 1000;
            continue;
        }
        cl->busy = busy = true;
        if (m->cl_t0_ms == 0) {
            uint64_t total;
            m->cl_t0_ms = om_clock_mono_ms();
            coord_mig_cleanup_bytes(m, &m->cl_done0, &total);
        }
    }
    if (all) {
        om_log(OM_LOG_INFO, "ring change finished epoch=%llu op=\"%s\"",
               (unsigned long long)ring_epoch(c->ring), m->op);
        coord_mig_set_phase(m, MIG_IDLE);
        m->ended_ms = om_clock_wall_ms();
        m->err[0] = '\0';
        (void)coord_mig_persist(m);
    }
}

static void
mig_copy_step(coord_mig *m)
{
    coord *c = m->c;
    uint64_t now = om_clock_mono_ms();
    bool all_done = true;

    if (c->fenced && now - m->fence_start_ms > c->opts.cutover_timeout_ms) {
        om_log(OM_LOG_WARN, "cutover took too long; releasing requests and retrying fenced_ms=%llu",
               (unsigned long long)(now - m->fence_start_ms));
        m->cutovers_abandoned++;
        mig_unfence(m);
        coord_mig_start_pass(m, 1);
        /* pass 1 again: min_version from the abandoned pass-2 watermark would be enough, but
         * wm0 is simple and safe */
        return;
    }
    if (m->pass == 0 && !m->drained) {
        /* writes routed before the change were not forwarded: the copy starts after them */
        if (c->unfwd_inflight > 0) {
            coord_mig_errf(m, m->err, "waiting for %llu writes routed before the change",
                           (unsigned long long)c->unfwd_inflight);
            return;
        }
        m->drained = true;
        m->err[0] = '\0';
    }
    if (m->pass == 2 && !m->final_started) {
        if (c->mig_inflight > 0)
            return; /* requests for moving keys still in flight */
        if (!coord_pool_fence_shards(c))
            return; /* the old owners refuse moving keys routed by e first (MIGRATION.md) */
        m->final_started = true;
        m->dirty_mode = !m->need_catchup && !m->dirty_overflow;
        for (size_t i = 0; i < m->nsrc; i++) {
            uint64_t wm = m->src[i].next_wm; /* pass 1's start */
            om_buf_reset(&m->src[i].cursor);
            m->src[i].done = false;
            coord_mig_src_restart(&m->src[i]);
            m->src[i].wm_taken = false;
            m->src[i].pass_scanned = 0;
            m->src[i].min_version = m->dirty_mode ? 0 : wm ? wm : 1;
        }
        if (m->dirty_mode && coord_mig_build_dirty(m) != OM_OK) {
            m->dirty_mode = false; /* no memory: scan everything since the copy began */
            for (size_t i = 0; i < m->nsrc; i++) {
                m->src[i].done = false;
                m->src[i].min_version = m->src[i].wm0 ? m->src[i].wm0 : 1;
            }
        }
        if (coord_test_delay(c, "cutover", now))
            return; /* --test-phase-delay: paused with the moving keys fenced everywhere */
    }
    for (size_t i = 0; i < m->nsrc; i++) {
        if (m->src[i].done)
            continue;
        all_done = false;
        coord_mig_src_try_send(m, i, now);
    }
    if (!all_done)
        return;
    if (m->pass == 0 && (m->need_catchup || m->dirty_overflow)) {
        coord_mig_start_pass(m, 1);
        (void)coord_mig_persist(m);
    } else if (m->pass <= 1) {
        if (m->pass == 0) {
            m->pass = 1; /* persisted as "past the copy": a restart redoes the catch-up */
            (void)coord_mig_persist(m);
        }
        /* Every shard that is up must hold the pending ring before the switch: afterwards it
         * is asked with epoch e+1 (a shard that is down gets ring e+1 when it returns). */
        for (size_t i = 0; i < c->nshards; i++) {
            if (c->shards[i]->up && !coord_pool_in_sync(c->shards[i])) {
                coord_mig_errf(m, m->err, "waiting for shard %s to install the pending ring",
                               c->shards[i]->id);
                return;
            }
        }
        m->err[0] = '\0';
        m->gen++;
        OM_ASSERT(m->pass == 1 && !c->fenced); /* the final pass follows the copy or catch-up */
        m->pass = 2;
        m->final_started = false;
        c->fenced = true;
        m->fence_start_ms = now;
        om_log(OM_LOG_INFO, "cutover: moving keys fenced inflight=%llu",
               (unsigned long long)c->mig_inflight);
    } else {
        c->hold_lists = true;
        if (c->lists_active > 0)
            return; /* Lists routed with the old epoch finish first */
        mig_switch(m);
    }
}

static void
mig_tick(evutil_socket_t fd, short what, void *arg)
{
    coord_mig *m = arg;
    coord *c = m->c;
    uint64_t now = om_clock_mono_ms();
    double rate;

    (void)fd;
    (void)what;
    coord_mig_throttle_update(m, now);
    rate = coord_mig_rate_now(m);
    if (rate > 0) {
        /* the bucket holds one batch, or two ticks' worth at high rates */
        double cap = (double)coord_mig_batch_now(m);
        if (cap < rate * 2.0 * MIG_TICK_MS / 1000.0)
            cap = rate * 2.0 * MIG_TICK_MS / 1000.0;
        m->tokens += rate * (double)(now - m->last_tick_ms) / 1000.0;
        if (m->tokens > cap)
            m->tokens = cap;
    }
    m->last_tick_ms = now;
    if (c->stopping || !coord_is_leader(c)) {
        /* shutting down, or not (or no longer) the leader: held requests are answered (routed
         * by ring e) instead of waiting, and nothing is copied, switched or saved */
        if (c->fenced || c->hold_lists)
            mig_unfence(m);
        return;
    }
    /* --test-phase-delay, a testing aid: the cutover's pause begins in mig_copy_step, once the
     * shards confirmed the fence */
    if (coord_test_delay(c,
                         m->phase == MIG_CLEANUP                                       ? "cleanup"
                         : m->phase == MIG_COPYING && m->pass == 2 && m->final_started ? "cutover"
                                                                                       : NULL,
                         now))
        return;
    if (m->phase == MIG_COPYING) {
        coord_mig_rate_update(m, now);
        mig_copy_step(m);
    } else if (m->phase == MIG_CLEANUP) {
        mig_cleanup_step(m);
    }
}

/* --- open / close ------------------------------------------------------------------------------
 */

om_status
coord_mig_open(coord *c, om_slice state, char *err, size_t errlen)
{
    coord_mig *m = calloc(1, sizeof(*m));
    struct timeval tv = {0, MIG_TICK_MS * 1000};
    om_status st;

    if (m == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->mig = m;
    m->c = c;
    m->last_tick_ms = om_clock_mono_ms();
    if (c->pending != NULL)
        OM_TRY(coord_mig_build(m));
    if (state.n > 0)
        OM_TRY(coord_mig_decode(m, state, err, errlen));
    for (size_t i = 0; i < m->nsrc; i++)
        coord_mig_src_restart(&m->src[i]); /* scans resume at the checkpoints */
    if (c->pending != NULL) {
        /* the rings say a change is in progress, whatever the record says */
        OM_ASSERT(ring_epoch(c->pending) > ring_epoch(c->ring));
        if (m->phase != MIG_COPYING)
            coord_mig_set_phase(m, MIG_COPYING);
        m->from_epoch = ring_epoch(c->ring);
        m->to_epoch = ring_epoch(c->pending);
        m->need_catchup = true; /* the writes noted before the restart are gone */
        m->drained = true;      /* writes of the previous process: covered by the catch-up */
        if (m->pass >= 1) {
            for (size_t i = 0; i < m->nsrc; i++)
                m->src[i].next_wm = m->src[i].wm0;
            coord_mig_start_pass(m, 1);
        }
        om_log(c->following ? OM_LOG_DEBUG : OM_LOG_INFO,
               "resuming ring change op=\"%s\" pass=%d sources=%zu ranges=%zu", m->op, m->pass,
               m->nsrc, m->nrng);
    } else if (m->phase == MIG_COPYING) {
        coord_mig_set_phase(m, MIG_IDLE); /* a record without a pending ring: nothing to resume */
    } else if (m->phase == MIG_CLEANUP) {
        size_t left = 0;
        for (size_t i = 0; i < m->ncl; i++)
            left += !m->cl[i].done;
        om_log(c->following ? OM_LOG_DEBUG : OM_LOG_INFO,
               "resuming cleanup op=\"%s\" epoch=%llu old_owners_left=%zu", m->op,
               (unsigned long long)ring_epoch(c->ring), left);
    }
    m->timer = event_new(c->base, -1, EV_PERSIST, mig_tick, m);
    if (m->timer == NULL || event_add(m->timer, &tv) != 0)
        return OM_ERR(OM_E_NOMEM);
    st = OM_OK;
    return st;
}

void
coord_mig_close(coord *c)
{
    coord_mig *m = c->mig;

    if (m == NULL)
        return;
    if (m->timer)
        event_free(m->timer);
    /* held requests: dispatched normally now (they are answered or fail with the pool) */
    c->fenced = c->hold_lists = false;
    while (c->held_head != NULL)
        coord_mig_release_held(c);
    coord_mig_free_change(m);
    free(m);
    c->mig = NULL;
}
