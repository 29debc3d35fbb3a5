/*
 * lsm/wal_reader.c -- reads records back from a log (wal_format.h).
 *
 * The reader walks the file one 32 KiB block at a time. A fragment that is
 * cut short, fails its checksum, has an impossible length or type, or breaks
 * the FIRST/MIDDLE/LAST sequence is "damage". To tell a torn tail from
 * corruption the reader then scans everything after the damage, at every
 * byte offset, for a fragment that is intact (type 1..4, length inside its
 * block, checksum matches). Logs are never reused, so an intact fragment
 * after the damage means data was written after it: corruption in the
 * middle, reported as OM_E_CORRUPT. Nothing intact after it: a torn tail,
 * reported as the end of the log.
 *
 * Zeros from a fragment boundary to the end of the file, outside a record,
 * are the unused part of a preallocated log (wal_format.h): the clean end
 * of the log, neither torn nor corrupt.
 */
#include <stdlib.h>
#include <string.h>

#include "lsm/wal_format.h"
#include "util/checksum.h"
#include "util/coding.h"

struct lsm_wal_reader {
    lsm_rfile *f; /* NULL when reading from memory */
    const uint8_t *mem;
    uint64_t file_size;
    uint8_t *blk;     /* current block (LSM_WAL_BLOCK_SIZE bytes) */
    size_t blk_len;   /* bytes of the current block that exist */
    uint64_t blk_off; /* file offset of the current block */
    size_t pos;       /* parse position in the current block */
    bool loaded;
    om_buf rec;        /* assembled multi-fragment record */
    uint64_t last_end; /* end of the last complete record */
    uint64_t bad_off;  /* offset of the damage (after OM_E_CORRUPT) */
    bool torn, done;
    om_status err;
};

static om_status
wal_reader_alloc(lsm_wal_reader **out)
{
    lsm_wal_reader *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return OM_ERR(OM_E_NOMEM);
    r->blk = malloc(LSM_WAL_BLOCK_SIZE);
    if (r->blk == NULL) {
        free(r);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = r;
    return OM_OK;
}

om_status
lsm_wal_reader_open(lsm_env *env, const char *path, lsm_wal_reader **out)
{
    lsm_wal_reader *r = NULL;
    om_status st;

    OM_TRY(wal_reader_alloc(&r));
    st = env->ops->rfile_open(env, path, &r->f, &r->file_size);
    if (st != OM_OK) {
        free(r->blk);
        free(r);
        return st;
    }
    *out = r;
    return OM_OK;
}

om_status
lsm_wal_reader_mem(const uint8_t *data, size_t n, lsm_wal_reader **out)
{
    lsm_wal_reader *r = NULL;

    OM_TRY(wal_reader_alloc(&r));
    r->mem = data;
    r->file_size = n;
    *out = r;
    return OM_OK;
}

void
lsm_wal_reader_close(lsm_wal_reader *r)
{
    if (r == NULL)
        return;
    lsm_rfile_close(r->f);
    om_buf_free(&r->rec);
    free(r->blk);
    free(r);
}

bool
lsm_wal_reader_torn(const lsm_wal_reader *r)
{
    return r->torn;
}

uint64_t
lsm_wal_reader_offset(const lsm_wal_reader *r)
{
    return r->err == OM_E_CORRUPT ? r->bad_off : r->last_end;
}

/* Read the block starting at off into dst; *len is how many bytes exist. */
static om_status
wal_read_block(lsm_wal_reader *r, uint64_t off, uint8_t *dst, size_t *len)
{
    size_t want = LSM_WAL_BLOCK_SIZE, got = 0;

    if (off >= r->file_size) {
        *len = 0;
        return OM_OK;
    }
    if (r->file_size - off < want)
        want = (size_t)(r->file_size - off);
    if (r->mem != NULL) {
        memcpy(dst, r->mem + off, want);
        *len = want;
        return OM_OK;
    }
    OM_TRY(lsm_rfile_read(r->f, off, want, dst, &got));
    *len = got;
    return OM_OK;
}

/* Is there an intact fragment at p (n bytes left in its block)? */
static bool
wal_frag_intact(const uint8_t *p, size_t n)
{
    size_t len;
    uint8_t type;

    if (n < LSM_WAL_HEADER_SIZE)
        return false;
    type = p[6];
    if (type < LSM_WAL_FULL || type > LSM_WAL_LAST)
        return false;
    len = (size_t)p[4] | ((size_t)p[5] << 8);
    if (len > n - LSM_WAL_HEADER_SIZE)
        return false;
    /* The type byte and the payload are contiguous: one-shot checksum. */
    return om_checksum32(p + LSM_WAL_HEADER_SIZE - 1, len + 1) == om_get_fixed32(p);
}

/* Block scanners for wal_scan: does bytes [start, len) of block b hold what is sought? */
typedef bool (*wal_block_pred)(const uint8_t *b, size_t start, size_t len);

/* An intact fragment (fragments never cross blocks, so each block is scanned on its own). */
static bool
wal_block_has_intact(const uint8_t *b, size_t start, size_t len)
{
    for (size_t i = start; i + LSM_WAL_HEADER_SIZE <= len; i++)
        if (wal_frag_intact(b + i, len - i))
            return true;
    return false;
}

static bool
wal_block_has_nonzero(const uint8_t *b, size_t start, size_t len)
{
    for (size_t i = start; i < len; i++)
        if (b[i] != 0)
            return true;
    return false;
}

/* Does any block from file offset `from` to the end of the file satisfy pred? */
static om_status
wal_scan(lsm_wal_reader *r, uint64_t from, wal_block_pred pred, bool *found)
{
    uint8_t *b = malloc(LSM_WAL_BLOCK_SIZE);
    uint64_t off = from - from % LSM_WAL_BLOCK_SIZE;
    size_t start = (size_t)(from % LSM_WAL_BLOCK_SIZE);
    om_status st = OM_OK;

    if (b == NULL)
        return OM_ERR(OM_E_NOMEM);
    *found = false;
    for (; off < r->file_size && !*found; off += LSM_WAL_BLOCK_SIZE, start = 0) {
        size_t len;

        st = wal_read_block(r, off, b, &len);
        if (st != OM_OK)
            break;
        *found = pred(b, start, len);
    }
    free(b);
    return st;
}

/*
 * Damage at file offset `at`: decide between a torn tail and corruption by
 * looking for an intact fragment at or after `scan_from`.
 */
static om_status
wal_damage(lsm_wal_reader *r, uint64_t scan_from, uint64_t at)
{
    bool found;
    om_status st = wal_scan(r, scan_from, wal_block_has_intact, &found);

    if (st != OM_OK) {
        r->err = st;
        return st;
    }
    if (found) {
        r->bad_off = at;
        r->err = OM_E_CORRUPT;
        return OM_ERR(OM_E_CORRUPT);
    }
    r->torn = true;
    r->done = true;
    return OM_E_NOTFOUND;
}

om_status
lsm_wal_read(lsm_wal_reader *r, om_slice *out)
{
    bool in_rec = false;
    uint64_t rec_start = 0;

    if (r->err != OM_OK)
        return r->err;
    if (r->done)
        return OM_E_NOTFOUND;
    om_buf_reset(&r->rec);
    for (;;) {
        const uint8_t *p;
        size_t len, left;
        uint8_t type;
        uint64_t frag_off;
        om_status st;

        if (!r->loaded || (r->blk_len == LSM_WAL_BLOCK_SIZE &&
                           LSM_WAL_BLOCK_SIZE - r->pos < LSM_WAL_HEADER_SIZE)) {
            uint64_t off = r->loaded ? r->blk_off + LSM_WAL_BLOCK_SIZE : 0;

            st = wal_read_block(r, off, r->blk, &r->blk_len);
            if (st != OM_OK) {
                r->err = st;
                return st;
            }
            r->blk_off = off;
            r->pos = 0;
            r->loaded = true;
        }
        left = r->blk_len - r->pos;
        frag_off = r->blk_off + r->pos;
        if (left == 0 && r->blk_len < LSM_WAL_BLOCK_SIZE) { /* end of file */
            r->done = true;
            if (in_rec) {
                r->torn = true;
                return OM_E_NOTFOUND;
            }
            return OM_E_NOTFOUND;
        }
        p = r->blk + r->pos;
        if (!wal_frag_intact(p, left)) {
            bool nonzero = true;

            if (!in_rec && (st = wal_scan(r, frag_off, wal_block_has_nonzero, &nonzero)) != OM_OK) {
                r->err = st;
                return st;
            }
            if (!nonzero) { /* zeros to the end: the preallocated, unused end of the log */
                r->done = true;
                return OM_E_NOTFOUND;
            }
            return wal_damage(r, frag_off + 1, frag_off);
        }
        type = p[6];
        len = (size_t)p[4] | ((size_t)p[5] << 8);
        r->pos += LSM_WAL_HEADER_SIZE + len;
        switch (type) {
        case LSM_WAL_FULL:
            if (in_rec) /* the intact FULL itself proves data follows the gap */
                return wal_damage(r, frag_off, rec_start);
            r->last_end = r->blk_off + r->pos;
            *out = om_slice_make(p + LSM_WAL_HEADER_SIZE, len);
            return OM_OK;
        case LSM_WAL_FIRST:
            if (in_rec)
                return wal_damage(r, frag_off, rec_start);
            in_rec = true;
            rec_start = frag_off;
            break;
        case LSM_WAL_MIDDLE:
        case LSM_WAL_LAST:
            if (!in_rec)
                return wal_damage(r, frag_off, frag_off);
            break;
        default:
            return wal_damage(r, frag_off, frag_off); /* excluded by wal_frag_intact */
        }
        if (om_buf_append(&r->rec, p + LSM_WAL_HEADER_SIZE, len) != OM_OK) {
            r->err = OM_ERR(OM_E_NOMEM);
            return r->err;
        }
        if (type == LSM_WAL_LAST) {
            r->last_end = r->blk_off + r->pos;
            *out = om_buf_slice(&r->rec);
            return OM_OK;
        }
    }
}
