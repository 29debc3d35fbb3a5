/*
 * coordinator/migrate.c -- online ring changes: AddShard, RemoveShard and
 * SetWeight start one, a timer drives it, RebalanceStatus reports it. The
 * protocol and its reasoning are in coordinator/MIGRATION.md; in short:
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
 * active (mig_throttle_update; MIGRATION.md, "Throttle"). Cursors are
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

#define MIG_TICK_MS 10
#define MIG_CHECKPOINT_MS 200
#define MIG_MAX_RECORDS 4000u
#define MIG_BACKOFF_MIN_MS 50u
#define MIG_BACKOFF_MAX_MS 2000u
#define MIG_COMPACT_TIMEOUT_MS (30u * 60u * 1000u)
#define MIG_STATE_FORMAT 1
#define MIG_RATE_WINDOW_MS 2000u
#define MIG_DIRTY_MAX 200000u /* keys remembered for the cutover; beyond, it rescans everything */
#define MIG_KEYS_PER_SCAN 1000u
#define MIG_BUSY_HOLD_MS 250u /* clients count as active this long after their last request */
#define MIG_ADAPT_MS 100u     /* period of the adaptive back-off */

void
coord_mig_errf(coord_mig *m, char *buf, const char *fmt, ...)
{
    va_list ap;

    (void)m;
    va_start(ap, fmt);
    vsnprintf(buf, 256, fmt, ap);
    va_end(ap);
}

uint64_t
coord_mig_total_bytes(const coord_mig *m)
{
    uint64_t b = 0;
    for (size_t i = 0; i < m->nsrc; i++)
        b += m->src[i].bytes;
    return b;
}

uint64_t
coord_mig_total_records(const coord_mig *m)
{
    uint64_t r = 0;
    for (size_t i = 0; i < m->nsrc; i++)
        r += m->src[i].records;
    return r;
}

/* --- state: build, free, encode, decode ------------------------------------------------------- */

void
coord_mig_free_change(coord_mig *m)
{
    for (size_t i = 0; i < m->nrng; i++)
        free(m->rng[i].to);
    free(m->rng);
    for (size_t i = 0; i < m->nsrc; i++) {
        mig_src *s = &m->src[i];
        free(s->id);
        free(s->rng);
        free(s->hr);
        free(s->hrp);
        for (int k = 0; k < MIG_PIPELINE; k++) {
            free(s->b[k].rng_rec);
            free(s->b[k].rng_bytes);
            om_buf_free(&s->b[k].next_cursor);
        }
        om_buf_free(&s->cursor);
        om_buf_free(&s->scan_cursor);
        free(s->dkeys);
    }
    free(m->src);
    for (size_t i = 0; i < m->ncl; i++)
        free(m->cl[i].id);
    free(m->cl);
    m->rng = NULL;
    m->src = NULL;
    m->cl = NULL;
    m->nrng = m->nsrc = m->ncl = 0;
    om_buf_free(&m->dirty_mem);
    om_buf_free(&m->final_mem);
    free(m->dirty_off);
    m->dirty_off = NULL;
    m->ndirty = m->capdirty = 0;
    m->dirty_overflow = m->dirty_mode = false;
    m->gen++;
}

/* Ranges and sources of the change c->ring -> c->pending. */
om_status
coord_mig_build(coord_mig *m)
{
    coord *c = m->c;
    ring_move *mv = NULL;
    size_t n = 0;
    om_status st;

    OM_TRY(ring_diff(c->ring, c->pending, &mv, &n));
    m->rng = calloc(n ? n : 1, sizeof(*m->rng));
    m->src = calloc(n ? n : 1, sizeof(*m->src));
    if (m->rng == NULL || m->src == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t s;
        for (s = 0; s < m->nsrc && strcmp(m->src[s].id, mv[i].old_id) != 0; s++)
            ;
        if (s == m->nsrc) {
            m->src[s].id = strdup(mv[i].old_id);
            if (m->src[s].id == NULL) {
                st = OM_ERR(OM_E_NOMEM);
                goto out;
            }
            m->nsrc++;
        }
        m->rng[i].start = mv[i].start;
        m->rng[i].end = mv[i].end;
        m->rng[i].src = s;
        m->rng[i].to = strdup(mv[i].new_id);
        m->nrng++;
        if (m->rng[i].to == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto out;
        }
    }
    for (size_t s = 0; s < m->nsrc; s++) {
        mig_src *src = &m->src[s];
        for (size_t i = 0; i < m->nrng; i++)
            src->nrng += m->rng[i].src == s;
        src->rng = calloc(src->nrng, sizeof(*src->rng));
        src->hr = calloc(src->nrng, sizeof(*src->hr));
        src->hrp = calloc(src->nrng, sizeof(*src->hrp));
        if (!src->rng || !src->hr || !src->hrp) {
            st = OM_ERR(OM_E_NOMEM);
            goto out;
        }
        for (int b = 0; b < MIG_PIPELINE; b++) {
            src->b[b].rng_rec = calloc(src->nrng, sizeof(uint64_t));
            src->b[b].rng_bytes = calloc(src->nrng, sizeof(uint64_t));
            if (!src->b[b].rng_rec || !src->b[b].rng_bytes) {
                st = OM_ERR(OM_E_NOMEM);
                goto out;
            }
        }
        size_t k = 0;
        for (size_t i = 0; i < m->nrng; i++) { /* the diff is sorted by start */
            if (m->rng[i].src != s)
                continue;
            src->rng[k] = i;
            objmeta__hash_range__init(&src->hr[k]);
            src->hr[k].start = m->rng[i].start;
            src->hr[k].end = m->rng[i].end;
            src->hrp[k] = &src->hr[k];
            k++;
        }
    }
    st = OM_OK;
out:
    free(mv);
    return st;
}

static om_status
mig_encode(const coord_mig *m, om_buf *out)
{
    OM_TRY(om_buf_append_byte(out, MIG_STATE_FORMAT));
    OM_TRY(om_buf_append_byte(out, (uint8_t)m->phase));
    OM_TRY(om_buf_append_byte(out, (uint8_t)(m->pass > 1 ? 1 : m->pass)));
    OM_TRY(om_buf_put_lenpref(out, om_slice_from_str(m->op)));
    OM_TRY(om_buf_put_varint64(out, m->started_ms));
    OM_TRY(om_buf_put_varint64(out, m->last_change_epoch));
    OM_TRY(om_buf_put_varint64(out, m->from_epoch));
    OM_TRY(om_buf_put_varint64(out, m->to_epoch));
    OM_TRY(om_buf_put_varint64(out, m->nsrc));
    for (size_t i = 0; i < m->nsrc; i++) {
        const mig_src *s = &m->src[i];
        bool keep = m->pass == 0; /* later passes restart from the beginning */
        OM_TRY(om_buf_put_lenpref(out, om_slice_from_str(s->id)));
        OM_TRY(om_buf_put_lenpref(out, keep ? om_buf_slice(&s->cursor) : OM_SLICE_NULL));
        OM_TRY(om_buf_append_byte(out, keep ? s->done : 0));
        OM_TRY(om_buf_put_varint64(out, s->wm0));
        OM_TRY(om_buf_put_varint64(out, keep ? s->min_version : s->wm0));
        OM_TRY(om_buf_put_varint64(out, s->records));
        OM_TRY(om_buf_put_varint64(out, s->bytes));
    }
    OM_TRY(om_buf_put_varint64(out, m->nrng));
    for (size_t i = 0; i < m->nrng; i++) {
        OM_TRY(om_buf_put_varint64(out, m->rng[i].records));
        OM_TRY(om_buf_put_varint64(out, m->rng[i].bytes));
    }
    OM_TRY(om_buf_put_varint64(out, m->ncl));
    for (size_t i = 0; i < m->ncl; i++) {
        OM_TRY(om_buf_put_lenpref(out, om_slice_from_str(m->cl[i].id)));
        OM_TRY(om_buf_append_byte(out, m->cl[i].done));
    }
    return OM_OK;
}

static om_status
get_u8(om_slice *in, uint8_t *v)
{
    if (in->n < 1)
        return OM_E_CORRUPT;
    *v = in->p[0];
    in->p++;
    in->n--;
    return OM_OK;
}

/* Overlay a persisted state on m (whose change, if any, is already built). */
static om_status
mig_decode(coord_mig *m, om_slice in, char *err, size_t errlen)
{
    uint8_t fmt, phase, pass, b;
    om_slice op, id, cur;
    uint64_t n, v[5];
    om_status st = OM_E_CORRUPT;

#define GET(x)                                                                                     \
    do {                                                                                           \
        if ((x) != OM_OK)                                                                          \
            goto bad;                                                                              \
    } while (0)
    GET(get_u8(&in, &fmt));
    if (fmt != MIG_STATE_FORMAT) {
        snprintf(err, errlen, "migration state has format %u, this build reads %u", fmt,
                 MIG_STATE_FORMAT);
        return OM_ERR(OM_E_CORRUPT);
    }
    GET(get_u8(&in, &phase));
    GET(get_u8(&in, &pass));
    GET(om_slice_get_lenpref(&in, &op));
    GET(om_slice_get_varint64(&in, &m->started_ms));
    GET(om_slice_get_varint64(&in, &m->last_change_epoch));
    GET(om_slice_get_varint64(&in, &m->from_epoch));
    GET(om_slice_get_varint64(&in, &m->to_epoch));
    snprintf(m->op, sizeof(m->op), "%.*s", (int)(op.n < 150 ? op.n : 150), (const char *)op.p);
    m->phase = phase == MIG_COPYING ? MIG_COPYING : phase == MIG_CLEANUP ? MIG_CLEANUP : MIG_IDLE;
    m->pass = pass ? 1 : 0;
    GET(om_slice_get_varint64(&in, &n));
    for (uint64_t i = 0; i < n; i++) {
        GET(om_slice_get_lenpref(&in, &id));
        GET(om_slice_get_lenpref(&in, &cur));
        GET(get_u8(&in, &b));
        for (int k = 0; k < 4; k++)
            GET(om_slice_get_varint64(&in, &v[k]));
        for (size_t s = 0; s < m->nsrc; s++) {
            if (strlen(m->src[s].id) != id.n || memcmp(m->src[s].id, id.p, id.n) != 0)
                continue;
            if ((st = om_buf_set(&m->src[s].cursor, cur)) != OM_OK)
                return st;
            m->src[s].done = b != 0;
            m->src[s].wm0 = v[0];
            m->src[s].min_version = v[1];
            m->src[s].records = v[2];
            m->src[s].bytes = v[3];
        }
    }
    GET(om_slice_get_varint64(&in, &n));
    for (uint64_t i = 0; i < n; i++) {
        GET(om_slice_get_varint64(&in, &v[0]));
        GET(om_slice_get_varint64(&in, &v[1]));
        if (n == m->nrng) {
            m->rng[i].records = v[0];
            m->rng[i].bytes = v[1];
        }
    }
    GET(om_slice_get_varint64(&in, &n));
    if (n > RING_MAX_SHARDS)
        goto bad;
    m->cl = calloc(n ? n : 1, sizeof(*m->cl));
    if (m->cl == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (uint64_t i = 0; i < n; i++) {
        GET(om_slice_get_lenpref(&in, &id));
        GET(get_u8(&in, &b));
        m->cl[i].id = om_slice_strdup(id);
        if (m->cl[i].id == NULL)
            return OM_ERR(OM_E_NOMEM);
        m->cl[i].done = b != 0;
        m->ncl++;
    }
#undef GET
    return OM_OK;
bad:
    snprintf(err, errlen, "migration state in the RING file is truncated or damaged");
    return OM_ERR(OM_E_CORRUPT);
}

/* Persist rings and state (atomic RING file). */
om_status
coord_mig_persist(coord_mig *m)
{
    om_buf b = OM_BUF_INIT;
    char err[512] = "";
    om_status st = mig_encode(m, &b);

    if (st == OM_OK)
        st = coord_cstate_save(m->c->cs, m->c->ring, m->c->pending, om_buf_slice(&b), err,
                               sizeof(err));
    om_buf_free(&b);
    m->last_checkpoint_ms = om_clock_mono_ms();
    if (st != OM_OK) {
        coord_mig_errf(m, m->err, "cannot save the cluster state: %s",
                       err[0] ? err : om_status_str(st));
        om_log(OM_LOG_WARN, "cannot save the cluster state err=\"%s\"", m->err);
    }
    return st;
}

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
static void
src_restart(mig_src *s)
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
    src_restart(s);
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
        (void)coord_mig_persist(m);
}

typedef struct mig_call {
    coord_mig *m;
    size_t src;
    uint32_t gen, sgen, seq;
    size_t dpos_next; /* dirty mode: the key index after this scan's keys */
    uint64_t charged; /* scan: tokens taken when it was sent */
    char target[RING_ID_MAX + 1];
} mig_call;

static mig_call *
mig_call_new(coord_mig *m, size_t src, uint32_t gen)
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
        mig_call *ac = mig_call_new(m, (size_t)(s - m->src), s->gen);

        ar.records = tr[t];
        ar.n_records = tn[t];
        req.body_case = OBJMETA__REQUEST__BODY_APPLY_RECORDS;
        req.apply_records = &ar;
        req.ring_epoch = ring_epoch(c->pending);
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
static om_status
mig_build_dirty(coord_mig *m)
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
        src_restart(s);
    }
    mc = mig_call_new(m, i, m->gen);
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
static void
src_try_send(coord_mig *m, size_t i, uint64_t now)
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
    src_try_send(m, (size_t)(s - m->src), om_clock_mono_ms());
}

/* Start pass `pass` for every source: cursors from the start, min_version per the pass. */
static void
mig_start_pass(coord_mig *m, int pass)
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
        src_restart(s);
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

    /* cleanup list: old owners that stay in the ring */
    for (size_t i = 0; i < m->ncl; i++)
        free(m->cl[i].id);
    free(m->cl);
    m->ncl = 0;
    m->cl = calloc(m->nsrc ? m->nsrc : 1, sizeof(*m->cl));
    if (m->cl == NULL)
        return;
    m->ncl = 0;
    for (size_t i = 0; i < m->nsrc; i++) {
        if (ring_find(newr, m->src[i].id, &idx) != OM_OK)
            continue;
        m->cl[m->ncl].id = strdup(m->src[i].id);
        if (m->cl[m->ncl].id == NULL)
            return;
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
        for (size_t i = 0; i < m->ncl; i++)
            free(m->cl[i].id);
        free(m->cl);
        m->cl = NULL;
        m->ncl = 0;
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
mig_cleanup_step(coord_mig *m)
{
    coord *c = m->c;
    bool all = true, busy = false;

    /* one compaction at a time: they rewrite whole trees, and clients are still served */
    for (size_t i = 0; i < m->ncl; i++)
        busy |= m->cl[i].busy;
    for (size_t i = 0; i < m->ncl; i++) {
        mig_cleanup *cl = &m->cl[i];
        coord_shard *sh;
        if (cl->done)
            continue;
        all = false;
        if (busy || om_clock_mono_ms() < cl->retry_at_ms)
            continue;
        sh = coord_pool_find(c, cl->id);
        if (sh == NULL) {
            cl->done = true; /* left the ring meanwhile */
            continue;
        }
        if (!coord_pool_in_sync(sh))
            continue; /* it must hold the new ring, or its filter keeps everything */
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__CompactRequest cq = OBJMETA__COMPACT_REQUEST__INIT;
        mig_call *mc = mig_call_new(m, i, m->gen);
        if (mc == NULL)
            return;
        req.body_case = OBJMETA__REQUEST__BODY_COMPACT;
        req.compact = &cq;
        if (rpc_client_call(sh->conns[sh->next_conn++ % sh->nconns], &req, MIG_COMPACT_TIMEOUT_MS,
                            compact_cb, mc) != OM_OK) {
            free(mc);
            cl->retry_at_ms = om_clock_mono_ms() + 1000;
            continue;
        }
        cl->busy = busy = true;
    }
    if (all) {
        om_log(OM_LOG_INFO, "ring change finished epoch=%llu op=\"%s\"",
               (unsigned long long)ring_epoch(c->ring), m->op);
        coord_mig_set_phase(m, MIG_IDLE);
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
        mig_start_pass(m, 1);
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
            src_restart(&m->src[i]);
            m->src[i].wm_taken = false;
            m->src[i].pass_scanned = 0;
            m->src[i].min_version = m->dirty_mode ? 0 : wm ? wm : 1;
        }
        if (m->dirty_mode && mig_build_dirty(m) != OM_OK) {
            m->dirty_mode = false; /* no memory: scan everything since the copy began */
            for (size_t i = 0; i < m->nsrc; i++) {
                m->src[i].done = false;
                m->src[i].min_version = m->src[i].wm0 ? m->src[i].wm0 : 1;
            }
        }
    }
    for (size_t i = 0; i < m->nsrc; i++) {
        if (m->src[i].done)
            continue;
        all_done = false;
        src_try_send(m, i, now);
    }
    if (!all_done)
        return;
    if (m->pass == 0 && (m->need_catchup || m->dirty_overflow)) {
        mig_start_pass(m, 1);
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
mig_rate_update(coord_mig *m, uint64_t now)
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
static void
mig_throttle_update(coord_mig *m, uint64_t now)
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

static void
mig_tick(evutil_socket_t fd, short what, void *arg)
{
    coord_mig *m = arg;
    coord *c = m->c;
    uint64_t now = om_clock_mono_ms();
    double rate;

    (void)fd;
    (void)what;
    mig_throttle_update(m, now);
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
    if (coord_test_delay(c,
                         m->phase == MIG_CLEANUP                   ? "cleanup"
                         : m->phase == MIG_COPYING && m->pass == 2 ? "cutover"
                                                                   : NULL,
                         now))
        return; /* --test-phase-delay, a testing aid */
    if (m->phase == MIG_COPYING) {
        mig_rate_update(m, now);
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
        OM_TRY(mig_decode(m, state, err, errlen));
    for (size_t i = 0; i < m->nsrc; i++)
        src_restart(&m->src[i]); /* scans resume at the checkpoints */
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
            mig_start_pass(m, 1);
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
