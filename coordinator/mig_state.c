/*
 * coordinator/mig_state.c -- the persisted state of an online ring change:
 * the moving ranges and sources built from the ring diff, their encoding in
 * the RING file's tag 3 (or etcd's <prefix>/state), the decoding of a saved
 * state on restart or takeover, and the save itself. The format and what it
 * must hold for a restart to lose nothing: coordinator/MIGRATION.md,
 * "Phases (persisted)" and "Crashes".
 *
 * Thread-safety: loop thread only, like everything in migrate_int.h.
 * Ownership: the change's arrays belong to the coord_mig; coord_mig_free_change
 * frees them.
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

#define MIG_STATE_FORMAT 1

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
om_status
coord_mig_decode(coord_mig *m, om_slice in, char *err, size_t errlen)
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
    return coord_mig_save(m, m, m->c->pending);
}

/* Save (checkpoint: without waiting for etcd; only progress changed since the last save). */
static om_status
mig_save(coord_mig *m, const coord_mig *state, const ring *pending, bool checkpoint)
{
    om_buf b = OM_BUF_INIT;
    char err[512] = "";
    om_status st = mig_encode(state, &b);

    if (st == OM_OK && checkpoint)
        st = coord_cstate_checkpoint(m->c->cs, m->c->ring, pending, om_buf_slice(&b), err,
                                     sizeof(err));
    else if (st == OM_OK)
        st = coord_cstate_save(m->c->cs, m->c->ring, pending, om_buf_slice(&b), err, sizeof(err));
    om_buf_free(&b);
    m->last_checkpoint_ms = om_clock_mono_ms();
    if (st != OM_OK) {
        coord_mig_errf(m, m->err, "cannot save the cluster state: %s",
                       err[0] ? err : om_status_str(st));
        om_log(OM_LOG_WARN, "cannot save the cluster state err=\"%s\"", m->err);
    }
    return st;
}

om_status
coord_mig_save(coord_mig *m, const coord_mig *state, const ring *pending)
{
    return mig_save(m, state, pending, false);
}

om_status
coord_mig_checkpoint(coord_mig *m)
{
    return mig_save(m, m, m->c->pending, true);
}
