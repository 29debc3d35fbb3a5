/*
 * coordinator/mig_copy.c -- the copy pipeline of an online ring change and
 * its throttle. Per source one MigrateScan in flight and up to MIG_PIPELINE
 * scanned batches whose ApplyRecords are out; batches commit in order and
 * the cursor advances only when every apply of a batch succeeded, so a
 * failure restarts the pipeline from the cursor after a backoff (applies
 * are idempotent). The same pipeline runs pass 0 (copy), pass 1 (catch-up,
 * version >= the pass's watermark) and pass 2 (fenced: the dirty keys, or a
 * rescan). Writes to moving keys whose copy is not confirmed are noted here
 * (coord_mig_note_dirty). The token bucket's inputs (busy/idle, the
 * adaptive back-off) are computed once per tick by coord_mig_throttle_update.
 * The state machine that sequences the passes is in migrate.c; the protocol
 * in coordinator/MIGRATION.md, "Copy" and "Throttle".
 *
 * Thread-safety: loop thread only. Ownership: a mig_call belongs to the rpc
 * callback it is passed to, which frees it; answers to an abandoned pass or
 * pipeline (generation mismatch) are dropped.
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

#define MIG_CHECKPOINT_MS 200
#define MIG_MAX_RECORDS 4000u
#define MIG_BACKOFF_MIN_MS 50u
#define MIG_BACKOFF_MAX_MS 2000u
#define MIG_RATE_WINDOW_MS 2000u
#define MIG_DIRTY_MAX 200000u /* keys remembered for the cutover; beyond, it rescans everything */
#define MIG_KEYS_PER_SCAN 1000u
#define MIG_BUSY_HOLD_MS 250u /* clients count as active this long after their last request */
#define MIG_ADAPT_MS 100u     /* period of the adaptive back-off */

/* --- copying -----------------------------------------------------------------------------------
 */

/* The range of source s holding hash h (index into s->rng), or SIZE_MAX. */
static size_t
src_range_of(const coord_mig *m, const mig_src *s, uint64_t h)
{
    size_t lo = 0, hi = s->nrng;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->rng[s->rng[mid]].start <= h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return SIZE_MAX;
    const mig_rng *r = &m->rng[s->rng[lo - 1]];
    return ring_range_contains(r->start, r->end, h) ? lo - 1 : SIZE_MAX;
}

/* Drop the pipeline (answers still out are disowned) and scan again from the cursor. */
void
coord_mig_src_restart(mig_src *s)
{
    s->sgen++;
    s->bcount = 0;
    s->scan_busy = false;
    s->scan_done = s->done;
    if (om_buf_set(&s->scan_cursor, om_buf_slice(&s->cursor)) != OM_OK)
        om_buf_reset(&s->scan_cursor); /* from the start: correct, only slower */
}

static void
src_backoff(coord_mig *m, mig_src *s)
{
    coord_mig_src_restart(s);
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : MIG_BACKOFF_MIN_MS;
    if (s->backoff_ms > MIG_BACKOFF_MAX_MS)
        s->backoff_ms = MIG_BACKOFF_MAX_MS;
    s->retry_at_ms = om_clock_mono_ms() + s->backoff_ms;
    (void)m;
}

/* Commit the finished batches at the head of the pipeline, in order. */
static void
src_commit(coord_mig *m, mig_src *s)
{
    bool first = false;

    while (s->bcount > 0) {
        mig_batch *b = &s->b[s->bhead];
        if (b->applies_out > 0)
            return;
        if (b->failed || om_buf_set(&s->cursor, om_buf_slice(&b->next_cursor)) != OM_OK) {
            src_backoff(m, s);
            return;
        }
        s->done = b->next_done;
        s->pass_scanned += b->scanned;
        if (m->pass == 0) { /* progress counts the copy; catch-up passes re-send recent records */
            s->records += b->records;
            s->bytes += b->bytes;
            for (size_t k = 0; k < s->nrng; k++) {
                m->rng[s->rng[k]].records += b->rng_rec[k];
                m->rng[s->rng[k]].bytes += b->rng_bytes[k];
            }
        } else {
            m->catchup_records += b->records;
            m->catchup_bytes += b->bytes;
        }
        if (b->charged > b->bytes) /* the scan paid a full batch: refund what it did not move */
            m->tokens += (double)(b->charged - b->bytes);
        first = first || (b->records > 0 && s->records == b->records);
        s->bhead = (s->bhead + 1) % MIG_PIPELINE;
        s->bcount--;
        s->backoff_ms = 0;
        s->err[0] = '\0';
    }
    /* checkpoint: the first records of a source at once, then at most every 200 ms */
    if (m->pass == 0 && (first || om_clock_mono_ms() - m->last_checkpoint_ms >= MIG_CHECKPOINT_MS))
        (void)coord_mig_checkpoint(m);
}

mig_call *
coord_mig_call_new(coord_mig *m, size_t src, uint32_t gen)
{
    mig_call *mc = calloc(1, sizeof(*mc));
    if (mc != NULL) {
        mc->m = m;
        mc->src = src;
        mc->gen = gen;
        if (src < m->nsrc)
            mc->sgen = m->src[src].sgen;
    }
    return mc;
}

/* The source of a call that is still current, else NULL (an abandoned pass or pipeline). */
static mig_src *
call_src(const mig_call *mc)
{
    coord_mig *m = mc->m;

    if (mc->gen != m->gen || mc->src >= m->nsrc || m->src[mc->src].gen != mc->gen ||
        m->src[mc->src].sgen != mc->sgen)
        return NULL;
    return &m->src[mc->src];
}

static void src_kick(coord_mig *m, mig_src *s);

static void
apply_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    mig_call *mc = arg;
    coord_mig *m = mc->m;
    mig_src *s = call_src(mc);
    mig_batch *b = NULL;

    if (s != NULL)
        for (uint32_t i = 0; i < s->bcount; i++)
            if (s->b[(s->bhead + i) % MIG_PIPELINE].seq == mc->seq)
                b = &s->b[(s->bhead + i) % MIG_PIPELINE];
    if (b == NULL) {
        free(mc);
        return;
    }
    if (st != OM_OK || resp->status != OBJMETA__STATUS__OK) {
        b->failed = true;
        coord_mig_errf(m, s->err, "applying records on %s: %s", mc->target,
                       resp->message[0] ? resp->message : om_status_str(st));
    }
    b->applies_out--;
    src_commit(m, s);
    src_kick(m, s);
    free(mc);
}

static void
scan_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    mig_call *mc = arg;
    coord_mig *m = mc->m;
    coord *c = m->c;
    const Objmeta__MigrateScanResponse *sr;
    mig_src *s = call_src(mc);
    mig_batch *b;
    coord_shard **tsh = NULL;
    Objmeta__MigrateRecord ***tr = NULL;
    size_t *tn = NULL, nt = 0, dpos_next = mc->dpos_next;
    uint64_t charged = mc->charged;
    uint8_t dcur[8];
    om_slice next_key;
    bool next_done;

    free(mc);
    if (s == NULL)
        return;
    s->scan_busy = false;
    if (st != OM_OK || resp->status != OBJMETA__STATUS__OK ||
        resp->body_case != OBJMETA__RESPONSE__BODY_MIGRATE_SCAN) {
        coord_mig_errf(m, s->err, "scanning %s: %s", s->id,
                       resp->message[0] ? resp->message : om_status_str(st));
        src_backoff(m, s);
        return;
    }
    sr = resp->migrate_scan;
    next_key = om_slice_make(sr->next_after_key.data, sr->next_after_key.len);
    next_done = sr->done;
    if (!s->wm_taken) {
        /* first answer of this pass: the source's clock bounds what later passes must copy */
        uint64_t margin = (uint64_t)c->opts.clock_margin_ms * 1000;
        s->next_wm = sr->now_us > margin ? sr->now_us - margin : 1;
        if (m->pass == 0 && s->wm0 == 0)
            s->wm0 = s->next_wm;
        s->wm_taken = true;
    }
    s->total = sr->total_bytes;
    if (m->pass == 2 && m->dirty_mode) {
        /* keys mode: the cursor is the index of the next dirty key (8 bytes, big-endian) */
        om_put_be64(dcur, dpos_next);
        next_key = om_slice_make(dcur, sizeof(dcur));
        next_done = dpos_next >= s->ndkeys;
    }
    if (om_buf_set(&s->scan_cursor, next_key) != OM_OK)
        goto nomem;
    s->scan_done = next_done;
    b = &s->b[(s->bhead + s->bcount) % MIG_PIPELINE];
    s->bcount++;
    b->seq = ++s->bseq;
    b->records = sr->n_records;
    b->bytes = 0;
    b->scanned = sr->scanned_bytes;
    b->charged = charged;
    b->next_done = next_done;
    b->failed = false;
    b->applies_out = 0;
    memset(b->rng_rec, 0, s->nrng * sizeof(*b->rng_rec));
    memset(b->rng_bytes, 0, s->nrng * sizeof(*b->rng_bytes));
    if (om_buf_set(&b->next_cursor, next_key) != OM_OK)
        goto nomem;
    if (sr->n_records > 0) {
        tsh = calloc(c->nshards, sizeof(*tsh));
        tr = calloc(c->nshards, sizeof(*tr));
        tn = calloc(c->nshards, sizeof(*tn));
        if (tsh == NULL || tr == NULL || tn == NULL)
            goto nomem;
    }
    for (size_t i = 0; i < sr->n_records; i++) {
        Objmeta__MigrateRecord *r = sr->records[i];
        uint64_t h = om_hash64(r->key.data, r->key.len);
        size_t k = src_range_of(m, s, h), t;
        coord_shard *to;

        if (k == SIZE_MAX) {
            coord_mig_errf(m, s->err, "source %s returned a record outside its moving ranges",
                           s->id);
            src_backoff(m, s);
            goto out;
        }
        to = coord_pool_find(c, m->rng[s->rng[k]].to);
        if (to == NULL) {
            coord_mig_errf(m, s->err, "new owner %s is not in the pool", m->rng[s->rng[k]].to);
            src_backoff(m, s);
            goto out;
        }
        b->rng_rec[k]++;
        b->rng_bytes[k] += r->key.len + r->value.len;
        b->bytes += r->key.len + r->value.len;
        for (t = 0; t < nt && tsh[t] != to; t++)
            ;
        if (t == nt) {
            tsh[nt] = to;
            tr[nt] = calloc(sr->n_records, sizeof(**tr));
            if (tr[nt] == NULL)
                goto nomem;
            nt++;
        }
        tr[t][tn[t]++] = r;
    }
    b->applies_out = (uint32_t)nt;
    for (size_t t = 0; t < nt; t++) {
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__ApplyRecordsRequest ar = OBJMETA__APPLY_RECORDS_REQUEST__INIT;
        mig_call *ac = coord_mig_call_new(m, (size_t)(s - m->src), s->gen);

        ar.records = tr[t];
        ar.n_records = tn[t];
        req.body_case = OBJMETA__REQUEST__BODY_APPLY_RECORDS;
        req.apply_records = &ar;
        req.ring_epoch = ring_epoch(c->pending);
        req.request_id = (char *)coord_mig_request_id(m);
        if (ac != NULL) {
            ac->seq = b->seq;
            snprintf(ac->target, sizeof(ac->target), "%s", tsh[t]->id);
        }
        if (ac == NULL || !tsh[t]->up || coord_pool_call(tsh[t], &req, apply_cb, ac) != OM_OK) {
            free(ac);
            b->failed = true;
            coord_mig_errf(m, s->err, "new owner %s is down: %s", tsh[t]->id, tsh[t]->why_down);
            b->applies_out--;
        }
    }
    /* callbacks never run inside rpc_client_call, so b is still ours here */
    src_commit(m, s);
    src_kick(m, s);
    goto out;
nomem:
    coord_mig_errf(m, s->err, "out of memory");
    src_backoff(m, s);
out:
    if (tr != NULL)
        for (size_t t = 0; t < nt; t++)
            free(tr[t]);
    free(tr);
    free(tsh);
    free(tn);
}

void
coord_mig_note_dirty(coord *c, const char *bucket, const char *key)
{
    coord_mig *m = c->mig;
    size_t bn = strlen(bucket), kn = strlen(key);

    if (m == NULL || m->phase != MIG_COPYING || m->dirty_overflow)
        return;
    if (m->ndirty + 1 >= m->capdirty || m->ndirty >= MIG_DIRTY_MAX) {
        size_t cap = m->capdirty ? m->capdirty * 2 : 1024;
        size_t *v = m->ndirty >= MIG_DIRTY_MAX ? NULL : realloc(m->dirty_off, cap * sizeof(*v));
        if (v == NULL) {
            m->dirty_overflow = true; /* the cutover rescans everything instead */
            om_log(OM_LOG_WARN,
                   "too many unconfirmed writes to moving keys; the cutover will "
                   "rescan the moving ranges keys=%zu",
                   m->ndirty);
            return;
        }
        m->dirty_off = v;
        m->capdirty = cap;
        if (m->ndirty == 0)
            m->dirty_off[0] = 0;
    }
    if (om_buf_append(&m->dirty_mem, bucket, bn) != OM_OK ||
        om_buf_append_byte(&m->dirty_mem, 0) != OM_OK ||
        om_buf_append(&m->dirty_mem, key, kn) != OM_OK) {
        m->dirty_overflow = true;
        return;
    }
    m->ndirty++;
    m->dirty_off[m->ndirty] = m->dirty_mem.n;
}

static const coord_mig *dirty_sort_m; /* qsort has no argument: set around the one call */

static bool
dirty_cmp_eq(const coord_mig *m, size_t i, size_t j)
{
    size_t n = m->dirty_off[i + 1] - m->dirty_off[i];
    return n == m->dirty_off[j + 1] - m->dirty_off[j] &&
           memcmp(m->dirty_mem.p + m->dirty_off[i], m->dirty_mem.p + m->dirty_off[j], n) == 0;
}

static int
dirty_cmp(const void *a, const void *b)
{
    const coord_mig *m = dirty_sort_m;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    om_slice x =
        om_slice_make(m->dirty_mem.p + m->dirty_off[i], m->dirty_off[i + 1] - m->dirty_off[i]);
    om_slice y =
        om_slice_make(m->dirty_mem.p + m->dirty_off[j], m->dirty_off[j + 1] - m->dirty_off[j]);
    return om_slice_cmp(x, y);
}

/*
 * Pass 2 in dirty mode: freeze the dirty keys (deduplicated) and give each
 * source the ones it owns under the ring in force. A source with none is done.
 */
om_status
coord_mig_build_dirty(coord_mig *m)
{
    coord *c = m->c;
    size_t *idx = calloc(m->ndirty ? m->ndirty : 1, sizeof(*idx));
    size_t *off = calloc(m->ndirty + 1, sizeof(*off)), nk = 0;
    om_status st = OM_OK;

    if (idx == NULL || off == NULL) {
        free(idx);
        free(off);
        return OM_ERR(OM_E_NOMEM);
    }
    for (size_t i = 0; i < m->ndirty; i++)
        idx[i] = i;
    dirty_sort_m = m;
    qsort(idx, m->ndirty, sizeof(*idx), dirty_cmp);
    dirty_sort_m = NULL;
    om_buf_reset(&m->final_mem);
    for (size_t i = 0; i < m->ndirty && st == OM_OK; i++) {
        if (i > 0 && dirty_cmp_eq(m, idx[i], idx[i - 1]))
            continue;
        off[nk] = m->final_mem.n;
        st = om_buf_append(&m->final_mem, m->dirty_mem.p + m->dirty_off[idx[i]],
                           m->dirty_off[idx[i] + 1] - m->dirty_off[idx[i]]);
        nk++;
    }
    off[nk] = m->final_mem.n;
    for (size_t s = 0; s < m->nsrc && st == OM_OK; s++) {
        mig_src *src = &m->src[s];
        free(src->dkeys);
        src->ndkeys = 0;
        src->dkeys = calloc(nk ? nk : 1, sizeof(*src->dkeys));
        if (src->dkeys == NULL)
            st = OM_ERR(OM_E_NOMEM);
    }
    for (size_t k = 0; k < nk && st == OM_OK; k++) {
        const uint8_t *p = m->final_mem.p + off[k];
        size_t n = off[k + 1] - off[k];
        const char *owner = ring_shard_at(c->ring, ring_owner(c->ring, om_hash64(p, n)))->id;
        for (size_t s = 0; s < m->nsrc; s++) {
            mig_src *src = &m->src[s];
            if (strcmp(src->id, owner) != 0)
                continue;
            src->dkeys[src->ndkeys].data = (uint8_t *)p;
            src->dkeys[src->ndkeys].len = n;
            src->ndkeys++;
        }
    }
    for (size_t s = 0; s < m->nsrc; s++)
        if (m->src[s].ndkeys == 0)
            m->src[s].done = true;
    om_log(OM_LOG_INFO, "cutover copies the unconfirmed writes keys=%zu (of %zu noted)", nk,
           m->ndirty);
    free(idx);
    free(off);
    return st;
}

/* Is every new owner of source s up and holding the pending ring? */
static const char *
src_targets_ready(const coord_mig *m, const mig_src *s)
{
    for (size_t k = 0; k < s->nrng; k++) {
        coord_shard *to = coord_pool_find(m->c, m->rng[s->rng[k]].to);
        if (to == NULL || !coord_pool_in_sync(to))
            return m->rng[s->rng[k]].to;
    }
    return NULL;
}

static void
src_send_scan(coord_mig *m, size_t i)
{
    coord *c = m->c;
    mig_src *s = &m->src[i];
    coord_shard *sh = coord_pool_find(c, s->id);
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__MigrateScanRequest sq = OBJMETA__MIGRATE_SCAN_REQUEST__INIT;
    const char *wait;
    mig_call *mc;
    uint32_t batch = coord_mig_batch_now(m);

    if (sh == NULL || !coord_pool_in_sync(sh)) {
        coord_mig_errf(m, s->err, "waiting for old owner %s: %s", s->id,
                       sh == NULL ? "not in the pool"
                       : sh->up   ? "installing the pending ring"
                                  : sh->why_down);
        return;
    }
    if ((wait = src_targets_ready(m, s)) != NULL) {
        coord_shard *t = coord_pool_find(c, wait);
        coord_mig_errf(m, s->err, "waiting for new owner %s: %s", wait,
                       t && t->up ? "installing the pending ring"
                       : t        ? t->why_down
                                  : "not in pool");
        return;
    }
    if (s->gen != m->gen) { /* a new pass: disown anything of the previous one */
        s->gen = m->gen;
        coord_mig_src_restart(s);
    }
    mc = coord_mig_call_new(m, i, m->gen);
    if (mc == NULL)
        return;
    sq.ranges = s->hrp;
    sq.n_ranges = s->nrng;
    sq.after_key.data = s->scan_cursor.p;
    sq.after_key.len = s->scan_cursor.n;
    sq.max_records = MIG_MAX_RECORDS;
    sq.max_bytes = batch;
    sq.min_version = s->min_version;
    sq.max_scan_bytes = 16ull * batch;
    if (m->pass == 2 && m->dirty_mode) {
        size_t pos = s->scan_cursor.n == 8 ? (size_t)om_get_be64(s->scan_cursor.p) : 0;
        size_t n = s->ndkeys - pos < MIG_KEYS_PER_SCAN ? s->ndkeys - pos : MIG_KEYS_PER_SCAN;
        sq.keys = s->dkeys + pos;
        sq.n_keys = n;
        mc->dpos_next = pos + n;
    }
    req.body_case = OBJMETA__REQUEST__BODY_MIGRATE_SCAN;
    req.migrate_scan = &sq;
    req.request_id = (char *)coord_mig_request_id(m);
    if (coord_pool_call(sh, &req, scan_cb, mc) != OM_OK) {
        free(mc);
        coord_mig_errf(m, s->err, "cannot send a scan to %s", s->id);
        src_backoff(m, s);
        return;
    }
    s->scan_busy = true;
    if (coord_mig_rate_now(m) > 0 && m->pass < 2) {
        mc->charged = batch; /* refunded at commit down to what it moved */
        m->tokens -= (double)batch;
    }
}

/* Send the next scan of source i if its pipeline, the throttle and its backoff allow. */
void
coord_mig_src_try_send(coord_mig *m, size_t i, uint64_t now)
{
    mig_src *s = &m->src[i];
    /* while clients are active one batch per source is applied at a time: a client write on
     * the new owner meets at most one apply (the fenced pass is not held back) */
    uint32_t depth = m->busy && m->pass < 2 ? 1 : MIG_PIPELINE;

    if (s->done || s->scan_busy || s->scan_done || s->bcount >= depth || now < s->retry_at_ms)
        return;
    if (coord_mig_rate_now(m) > 0 && m->tokens <= 0 && m->pass < 2)
        return; /* throttled (the fenced pass is not: requests are waiting) */
    src_send_scan(m, i);
}

/*
 * A batch of s was scanned or committed: send its next scan now rather than at the next
 * tick (a source would otherwise idle up to MIG_TICK_MS per batch), if the copy is in a
 * state where mig_copy_step would send one. Not while clients are active (except in the
 * fenced pass): then the tick paces the copy, one scan per source per tick at most, so
 * that batches come evenly spaced rather than back to back.
 */
static void
src_kick(coord_mig *m, mig_src *s)
{
    if (m->phase != MIG_COPYING || m->c->stopping || (m->pass == 0 && !m->drained) ||
        (m->pass == 2 && !m->final_started) || (m->busy && m->pass < 2))
        return;
    coord_mig_src_try_send(m, (size_t)(s - m->src), om_clock_mono_ms());
}

/* Start pass `pass` for every source: cursors from the start, min_version per the pass. */
void
coord_mig_start_pass(coord_mig *m, int pass)
{
    /* pass 1 (catch-up) is the only pass restarted: after pass 0, an abandoned cutover or a
     * restart; pass 0 starts with the change, pass 2 with the fence */
    OM_ASSERT(pass == 1 && m->phase == MIG_COPYING);
    m->gen++; /* answers to the previous pass are ignored */
    m->pass = pass;
    m->pass_start_ms = om_clock_mono_ms();
    for (size_t i = 0; i < m->nsrc; i++) {
        mig_src *s = &m->src[i];
        uint64_t prev_wm = s->next_wm;
        om_buf_reset(&s->cursor);
        s->done = false;
        coord_mig_src_restart(s);
        s->wm_taken = false;
        s->pass_scanned = 0;
        s->retry_at_ms = 0;
        s->backoff_ms = 0;
        /* pass 1: everything since the copy began; pass 2: since pass 1 began */
        s->min_version = pass == 1 ? s->wm0 : prev_wm;
        if (s->min_version == 0)
            s->min_version = 1;
    }
    om_log(OM_LOG_INFO, "migration pass started pass=%d from_epoch=%llu to_epoch=%llu", pass,
           (unsigned long long)m->from_epoch, (unsigned long long)m->to_epoch);
}

void
coord_mig_rate_update(coord_mig *m, uint64_t now)
{
    uint64_t bytes = coord_mig_total_bytes(m);

    if (m->win_start_ms == 0) {
        m->win_start_ms = m->start_mono_ms = now;
        m->win_bytes = m->start_bytes = bytes;
        return;
    }
    if (!m->rate_windowed && now > m->start_mono_ms) /* before a full window: the average */
        m->rate = (double)(bytes - m->start_bytes) * 1000.0 / (double)(now - m->start_mono_ms);
    if (now - m->win_start_ms >= MIG_RATE_WINDOW_MS) {
        m->rate = (double)(bytes - m->win_bytes) * 1000.0 / (double)(now - m->win_start_ms);
        m->rate_windowed = true;
        m->win_start_ms = now;
        m->win_bytes = bytes;
    }
}

double
coord_mig_rate_now(const coord_mig *m)
{
    const coord_opts *o = &m->c->opts;
    double idle = (double)o->migrate_rate, busy = (double)o->migrate_rate_busy;

    if (!m->busy)
        return idle;
    if (busy <= 0 || (idle > 0 && idle < busy))
        busy = idle; /* 0 (unlimited) stays 0 */
    return busy * m->adapt;
}

uint32_t
coord_mig_batch_now(const coord_mig *m)
{
    const coord_opts *o = &m->c->opts;

    if (m->busy && o->migrate_batch_busy > 0 && o->migrate_batch_busy < o->migrate_batch)
        return o->migrate_batch_busy;
    return o->migrate_batch;
}

/*
 * The throttle's inputs, once per tick. Busy: a client request (keyed or List) was
 * dispatched within MIG_BUSY_HOLD_MS. Adapt: while busy, every MIG_ADAPT_MS, halve the
 * busy rate (down to 1/8) while the clients' write latency (fast EWMA) is above twice
 * its pre-change baseline, raise it by a quarter (up to 1) once it is under 1.5x or no
 * write was answered.
 */
void
coord_mig_throttle_update(coord_mig *m, uint64_t now)
{
    coord *c = m->c;
    bool busy;

    if (c->client_reqs != m->seen_reqs) {
        m->seen_reqs = c->client_reqs;
        m->busy_until_ms = now + MIG_BUSY_HOLD_MS;
    }
    busy = now < m->busy_until_ms;
    if (busy != m->busy && m->phase == MIG_COPYING)
        om_log(OM_LOG_DEBUG, "copy throttle %s", busy ? "busy: clients active" : "idle");
    m->busy = busy;
    if (m->adapt <= 0 || m->adapt > 1)
        m->adapt = 1;
    if (m->phase == MIG_COPYING && busy && c->wlat_base_us > 0 && now >= m->adapt_at_ms) {
        bool fresh = c->wlat_n >= m->adapt_n + 8; /* enough writes answered to judge */
        m->adapt_n = c->wlat_n;
        if (fresh && c->wlat_fast_us > 2.0 * c->wlat_base_us)
            m->adapt = m->adapt / 2 > 0.125 ? m->adapt / 2 : 0.125;
        else if (!fresh || c->wlat_fast_us < 1.5 * c->wlat_base_us)
            m->adapt = m->adapt * 1.25 < 1 ? m->adapt * 1.25 : 1;
        m->adapt_at_ms = now + MIG_ADAPT_MS;
    }
}
