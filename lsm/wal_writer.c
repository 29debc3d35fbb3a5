/*
 * lsm/wal_writer.c -- frames records into 32 KiB blocks (wal_format.h).
 *
 * Records are framed into an in-memory buffer and written with one append
 * per lsm_wal_flush, so a group commit costs one write(2) and one
 * fdatasync however many batches it carries. lsm_wal_sync_written lets
 * another thread fdatasync what was written while the owner goes on adding
 * (lsm_sync overlapping later writes).
 *
 * Preallocation (wal_format.h): after each flush that leaves less than half
 * a chunk of zeros ahead of the end, the writer zero-fills up to a chunk past
 * the end. The sync that follows commits the larger file size once; the
 * syncs of the appends that then land in the zeroed space only flush data.
 * That pays while syncs are small (a journal commit saved per sync) and
 * costs while they are large (every byte written twice, the zeros flushed
 * by some sync): the zero-fill pauses while flushes average more than
 * LSM_WAL_PREALLOC_MAX_FLUSH bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "lsm/wal_format.h"
#include "util/checksum.h"
#include "util/coding.h"

struct lsm_wal_writer {
    lsm_wfile *f;
    uint64_t size;      /* bytes framed (flushed + buffered) */
    size_t block_off;   /* offset inside the current block */
    om_buf buf;         /* framed, not yet written */
    om_status err;      /* sticky */
    int syncers;        /* lsm_wal_sync_written calls running (under the db mutex) */
    uint64_t prealloc;  /* zero-fill chunk; 0 = off */
    uint64_t zero_end;  /* the file holds zeros from the end of the appends to here */
    uint64_t avg_flush; /* bytes per flush, moving average (1/8 weight to the newest) */
};

om_status
lsm_wal_writer_open(lsm_env *env, const char *path, lsm_wal_writer **out)
{
    lsm_wal_writer *w = calloc(1, sizeof(*w));
    om_status st;

    if (w == NULL)
        return OM_ERR(OM_E_NOMEM);
    st = env->ops->wfile_open(env, path, false, &w->f);
    if (st != OM_OK) {
        free(w);
        return st;
    }
    *out = w;
    return OM_OK;
}

void
lsm_wal_writer_preallocate(lsm_wal_writer *w, uint64_t chunk)
{
    w->prealloc = w->f->env->ops->wfile_zero != NULL ? chunk : 0;
}

/*
 * Zero-fill ahead of the appends (all flushed: they end at w->size). A
 * failure only turns preallocation off: the env has logged it, and the
 * appends themselves report a full or failing disk.
 */
static void
wal_zero_ahead(lsm_wal_writer *w)
{
    uint64_t end = w->size, from;

    if (w->prealloc == 0 || w->zero_end >= end + w->prealloc / 2 ||
        w->avg_flush > LSM_WAL_PREALLOC_MAX_FLUSH)
        return;
    from = w->zero_end > end ? w->zero_end : end;
    if (w->f->env->ops->wfile_zero(w->f, from, end + w->prealloc - from) != OM_OK) {
        w->prealloc = 0;
        return;
    }
    w->zero_end = end + w->prealloc;
}

static om_status
wal_emit(lsm_wal_writer *w, lsm_wal_frag type, const uint8_t *p, size_t n)
{
    uint8_t hdr[LSM_WAL_HEADER_SIZE], *f;
    size_t start = w->buf.n;

    hdr[4] = (uint8_t)n;
    hdr[5] = (uint8_t)(n >> 8);
    hdr[6] = (uint8_t)type;
    OM_TRY(om_buf_reserve(&w->buf, sizeof(hdr) + n));
    OM_TRY(om_buf_append(&w->buf, hdr, sizeof(hdr)));
    OM_TRY(om_buf_append(&w->buf, p, n));
    /* The type byte and the payload now sit together: checksum them in one call. */
    f = w->buf.p + start;
    om_put_fixed32(f, om_checksum32(f + LSM_WAL_HEADER_SIZE - 1, n + 1));
    w->block_off += LSM_WAL_HEADER_SIZE + n;
    w->size += LSM_WAL_HEADER_SIZE + n;
    return OM_OK;
}

om_status
lsm_wal_add(lsm_wal_writer *w, om_slice rec)
{
    const uint8_t *p = rec.p;
    size_t left = rec.n;
    bool first = true;
    om_status st;

    if (w->err != OM_OK)
        return w->err;
    do {
        size_t avail = LSM_WAL_BLOCK_SIZE - w->block_off, frag;
        lsm_wal_frag type;

        if (avail < LSM_WAL_HEADER_SIZE) {
            static const uint8_t zeros[LSM_WAL_HEADER_SIZE];

            if (avail > 0)
                OM_GOTO(om_buf_append(&w->buf, zeros, avail));
            w->size += avail;
            w->block_off = 0;
            avail = LSM_WAL_BLOCK_SIZE;
        }
        avail -= LSM_WAL_HEADER_SIZE;
        frag = left < avail ? left : avail;
        if (first && frag == left)
            type = LSM_WAL_FULL;
        else if (first)
            type = LSM_WAL_FIRST;
        else if (frag == left)
            type = LSM_WAL_LAST;
        else
            type = LSM_WAL_MIDDLE;
        OM_GOTO(wal_emit(w, type, p, frag));
        p += frag;
        left -= frag;
        first = false;
    } while (left > 0);
    return OM_OK;
fail:
    w->err = st;
    return st;
}

om_status
lsm_wal_flush(lsm_wal_writer *w)
{
    om_status st;

    if (w->err != OM_OK)
        return w->err;
    if (w->buf.n == 0)
        return OM_OK;
    st = lsm_wfile_append(w->f, w->buf.p, w->buf.n);
    if (st != OM_OK) {
        w->err = st;
        return st;
    }
    w->avg_flush = w->avg_flush - w->avg_flush / 8 + w->buf.n / 8;
    om_buf_reset(&w->buf);
    if (w->buf.cap > 4u << 20) /* do not keep a huge buffer after a big record */
        om_buf_free(&w->buf);
    wal_zero_ahead(w);
    return OM_OK;
}

om_status
lsm_wal_sync(lsm_wal_writer *w)
{
    om_status st;

    OM_TRY(lsm_wal_flush(w));
    st = lsm_wfile_sync(w->f);
    if (st != OM_OK)
        w->err = st;
    return st;
}

om_status
lsm_wal_sync_written(lsm_wal_writer *w)
{
    return lsm_wfile_sync(w->f);
}

int
lsm_wal_syncers(lsm_wal_writer *w, int delta)
{
    w->syncers += delta;
    return w->syncers;
}

uint64_t
lsm_wal_size(const lsm_wal_writer *w)
{
    return w->size;
}

om_status
lsm_wal_writer_close(lsm_wal_writer *w, bool sync)
{
    om_status st, cst;

    if (w == NULL)
        return OM_OK;
    st = sync ? lsm_wal_sync(w) : lsm_wal_flush(w);
    cst = lsm_wfile_close(w->f);
    if (st == OM_OK)
        st = cst;
    om_buf_free(&w->buf);
    free(w);
    return st;
}
