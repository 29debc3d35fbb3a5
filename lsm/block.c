/*
 * lsm/block.c -- block builder and block iterator (format in block.h and
 * lsm/FORMAT.md).
 *
 * The iterator decodes entries in place: values are slices into the block,
 * whole keys (restart entries) are returned where they lie in the block, and
 * other keys are rebuilt from the shared prefix into the iterator's own
 * buffer (inline in the struct for keys up to LSM_BLOCK_ITER_INLINE_KEY
 * bytes, so a lookup allocates nothing).
 * A seek binary-searches the restart points (whose keys are stored whole, so
 * they are compared without copying) for the last one before the target and
 * scans forward from there. Any length that would run past the entries, a
 * restart entry with a shared prefix, or a key too short to be an internal
 * key turns the iterator invalid with OM_E_CORRUPT.
 */
#include "lsm/block.h"

#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"
#include "util/coding.h"

static inline uint32_t
get_fixed16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

/* ---- builder ---- */

void
lsm_block_builder_init(lsm_block_builder *b, int restart_interval)
{
    memset(b, 0, sizeof(*b));
    b->restart_interval = restart_interval < 1 ? 1 : restart_interval;
}

void
lsm_block_builder_fini(lsm_block_builder *b)
{
    om_buf_free(&b->buf);
    om_buf_free(&b->last_key);
    om_buf_free(&b->first_key);
    free(b->restarts);
    free(b->koffs);
    free(b->kfps);
    memset(b, 0, sizeof(*b));
}

void
lsm_block_builder_key_index(lsm_block_builder *b)
{
    b->key_index = true;
}

void
lsm_block_builder_reset(lsm_block_builder *b)
{
    om_buf_reset(&b->buf);
    om_buf_reset(&b->last_key);
    b->nrestarts = 0;
    b->counter = 0;
    b->entries = 0;
    b->finished = false;
    om_buf_reset(&b->first_key);
    b->nkeys = 0;
    b->keys_overflow = false;
}

static om_status
builder_push_restart(lsm_block_builder *b, uint32_t off)
{
    if (b->nrestarts == b->restarts_cap) {
        size_t ncap = b->restarts_cap ? b->restarts_cap * 2 : 64;
        uint32_t *r = realloc(b->restarts, ncap * sizeof(*r));

        if (r == NULL)
            return OM_ERR(OM_E_NOMEM);
        b->restarts = r;
        b->restarts_cap = ncap;
    }
    b->restarts[b->nrestarts++] = off;
    return OM_OK;
}

/* Note the entry about to be added at the end of buf, the first of its user key, in the key index.
 */
static om_status
builder_index_key(lsm_block_builder *b, om_slice key)
{
    if (b->nkeys == LSM_BLOCK_INDEX_MAX_KEYS || b->buf.n > UINT16_MAX) {
        b->keys_overflow = true;
        return OM_OK;
    }
    if (b->nkeys == b->keys_cap) {
        size_t ncap = b->keys_cap ? b->keys_cap * 2 : 32;
        uint16_t *o = realloc(b->koffs, ncap * sizeof(*o));

        if (o == NULL)
            return OM_ERR(OM_E_NOMEM);
        b->koffs = o;
        uint8_t *f = realloc(b->kfps, ncap);
        if (f == NULL)
            return OM_ERR(OM_E_NOMEM);
        b->kfps = f;
        b->keys_cap = ncap;
    }
    b->koffs[b->nkeys] = (uint16_t)b->buf.n;
    b->kfps[b->nkeys] = lsm_block_key_fp(om_hash64(key.p, key.n - LSM_TRAILER_SIZE));
    b->nkeys++;
    return OM_OK;
}

om_status
lsm_block_builder_add(lsm_block_builder *b, om_slice key, om_slice value)
{
    uint8_t hdr[3 * OM_MAX_VARINT32_LEN], *p = hdr;
    size_t shared = 0, lcp = 0;
    bool indexed = false; /* the first entry of its user key in a key-indexed block */

    if (b->entries > 0) {
        size_t lim = key.n < b->last_key.n ? key.n : b->last_key.n;

        while (lcp < lim && key.p[lcp] == b->last_key.p[lcp])
            lcp++;
    }
    if (b->key_index && !b->keys_overflow) {
        if (key.n < LSM_TRAILER_SIZE) {
            b->keys_overflow = true; /* not an internal key: no index */
        } else if (b->entries == 0 || key.n != b->last_key.n ||
                   lcp < key.n - LSM_TRAILER_SIZE) { /* else an older version of the last key */
            OM_TRY(builder_index_key(b, key));
            indexed = !b->keys_overflow;
        }
    }
    if (b->counter >= b->restart_interval || b->entries == 0) {
        OM_TRY(builder_push_restart(b, (uint32_t)b->buf.n));
        b->counter = 0;
        if (b->entries == 0 && b->key_index)
            OM_TRY(om_buf_set(&b->first_key, key));
    } else if (indexed) {
        /*
         * Against the first key, so a lookup through the index rebuilds the
         * key from the first one (no further than the previous key shares:
         * always, keys being sorted, so readers decode it as ever).
         */
        while (shared < lcp && shared < b->first_key.n && key.p[shared] == b->first_key.p[shared])
            shared++;
    } else {
        shared = lcp;
    }
    p = om_encode_varint32(p, (uint32_t)shared);
    p = om_encode_varint32(p, (uint32_t)(key.n - shared));
    p = om_encode_varint32(p, (uint32_t)value.n);
    OM_TRY(om_buf_reserve(&b->buf, (size_t)(p - hdr) + key.n - shared + value.n));
    OM_TRY(om_buf_append(&b->buf, hdr, (size_t)(p - hdr)));
    OM_TRY(om_buf_append(&b->buf, key.p + shared, key.n - shared));
    if (value.n > 0)
        OM_TRY(om_buf_append(&b->buf, value.p, value.n));
    /* Keep the full last key: only the unshared tail changes. */
    b->last_key.n = shared;
    OM_TRY(om_buf_append(&b->last_key, key.p + shared, key.n - shared));
    b->counter++;
    b->entries++;
    return OM_OK;
}

/* Whether the finished block carries a key index. */
static bool
builder_has_index(const lsm_block_builder *b)
{
    return b->key_index && !b->keys_overflow && b->nkeys > 0;
}

size_t
lsm_block_builder_size(const lsm_block_builder *b)
{
    size_t nr = b->nrestarts == 0 ? 1 : b->nrestarts;

    if (b->finished)
        return b->buf.n;
    return b->buf.n + 4 * nr + 4 + (builder_has_index(b) ? 3 * b->nkeys + 2 : 0);
}

om_status
lsm_block_builder_finish(lsm_block_builder *b, om_slice *out)
{
    if (!b->finished) {
        bool idx = builder_has_index(b);

        if (b->nrestarts == 0)
            OM_TRY(builder_push_restart(b, 0));
        OM_TRY(om_buf_reserve(&b->buf, 4 * b->nrestarts + 4 + (idx ? 3 * b->nkeys + 2 : 0)));
        for (size_t i = 0; i < b->nrestarts; i++)
            OM_TRY(om_buf_put_fixed32(&b->buf, b->restarts[i]));
        if (idx) {
            for (size_t i = 0; i < b->nkeys; i++) {
                uint8_t le[2] = {(uint8_t)b->koffs[i], (uint8_t)(b->koffs[i] >> 8)};

                OM_TRY(om_buf_append(&b->buf, le, 2));
            }
            OM_TRY(om_buf_append(&b->buf, b->kfps, b->nkeys));
            uint8_t cnt[2] = {(uint8_t)b->nkeys, (uint8_t)(b->nkeys >> 8)};
            OM_TRY(om_buf_append(&b->buf, cnt, 2));
        }
        OM_TRY(
            om_buf_put_fixed32(&b->buf, (uint32_t)b->nrestarts | (idx ? LSM_BLOCK_INDEX_FLAG : 0)));
        b->finished = true;
    }
    *out = om_buf_slice(&b->buf);
    return OM_OK;
}

/* ---- parsed block ---- */

/* Read the trailer (restart count) of data[0, n) into *b; the restarts are not walked. */
static om_status
block_parse_trailer(lsm_block *b, const uint8_t *data, size_t n)
{
    uint32_t word, nr, nkeys = 0;
    size_t tail;

    if (n < 4 || n > UINT32_MAX)
        return OM_ERR(OM_E_CORRUPT);
    word = om_get_fixed32(data + n - 4);
    nr = word & ~LSM_BLOCK_INDEX_FLAG;
    tail = 4 + 4 * (size_t)nr;
    if (word & LSM_BLOCK_INDEX_FLAG) {
        if (n < 6 || (nkeys = get_fixed16(data + n - 6)) == 0 || nkeys > LSM_BLOCK_INDEX_MAX_KEYS)
            return OM_ERR(OM_E_CORRUPT);
        tail += 2 + 3 * (size_t)nkeys;
    }
    if (nr == 0 || tail > n)
        return OM_ERR(OM_E_CORRUPT);
    b->data = data;
    b->size = n;
    b->nrestarts = nr;
    b->restart_off = (uint32_t)(n - tail);
    b->nkeys = nkeys;
    b->keys_off = b->restart_off + 4 * nr;
    b->owned = NULL;
    return OM_OK;
}

om_status
lsm_block_parse(lsm_block *b, uint8_t *data, size_t n, bool take_ownership)
{
    lsm_block p;
    uint32_t prev = 0;

    OM_TRY(block_parse_trailer(&p, data, n));
    /*
     * The restart array must start at 0 and rise strictly inside the entries.
     * Blocks are checksummed before they get here, so this only matters for a
     * writer bug or a checksum collision, but it is a few compares per block
     * and it means a seek can never be steered outside the entries.
     */
    for (uint32_t i = 0; i < p.nrestarts; i++) {
        uint32_t r = om_get_fixed32(data + p.restart_off + 4 * (size_t)i);
        if (i == 0 ? r != 0 : (r <= prev || r >= p.restart_off))
            return OM_ERR(OM_E_CORRUPT);
        prev = r;
    }
    /* The key index's entry offsets likewise: from 0, rising, inside the entries. */
    for (uint32_t i = 0; i < p.nkeys; i++) {
        uint32_t o = get_fixed16(data + p.keys_off + 2 * (size_t)i);
        if (i == 0 ? o != 0 : (o <= prev || o >= p.restart_off))
            return OM_ERR(OM_E_CORRUPT);
        prev = o;
    }
    p.owned = take_ownership ? data : NULL;
    *b = p;
    return OM_OK;
}

om_status
lsm_block_parse_again(lsm_block *b, const uint8_t *data, size_t n)
{
    return block_parse_trailer(b, data, n);
}

void
lsm_block_free(lsm_block *b)
{
    free(b->owned);
    b->owned = NULL;
    b->data = NULL;
    b->size = 0;
}

/* ---- iterator ---- */

/* The current key's bytes (in the block or in the iterator's buffer). */
static inline const uint8_t *
biter_kptr(const lsm_block_iter *it)
{
    if (it->kblock != NULL)
        return it->kblock;
    return it->kheap != NULL ? it->kheap : it->kinline;
}

/*
 * Key order inside a block, inlined: user key bytes then the trailer
 * descending for internal keys (same order as lsm_ikey_cmp), plain bytes
 * otherwise. Requires for LSM_CMP_IKEY: both keys hold a trailer.
 */
static inline int
biter_cmp(lsm_block_cmp cmp, const uint8_t *a, size_t an, om_slice b)
{
    size_t tr = cmp == LSM_CMP_IKEY ? LSM_TRAILER_SIZE : 0, ua = an - tr, ub = b.n - tr;
    size_t m = ua < ub ? ua : ub;
    int r = m == 0 ? 0 : memcmp(a, b.p, m);

    if (r != 0)
        return r;
    if (ua != ub)
        return ua < ub ? -1 : 1;
    if (tr == 0)
        return 0;
    uint64_t ta = om_get_fixed64(a + ua), tb = om_get_fixed64(b.p + ub);
    return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

static void
biter_corrupt(lsm_block_iter *it)
{
    if (it->status == OM_OK)
        it->status = OM_ERR(OM_E_CORRUPT);
    it->valid = false;
    it->cur = it->next_off = it->block->restart_off;
    it->kblock = NULL;
    it->kn = 0;
}

/* One varint32 with inline paths for the one- and two-byte forms. */
static inline const uint8_t *
biter_varint(const uint8_t *p, const uint8_t *limit, uint32_t *v)
{
    if (p < limit && p[0] < 128) {
        *v = p[0];
        return p + 1;
    }
    if (limit - p >= 2 && p[1] < 128) {
        *v = (uint32_t)(p[0] & 0x7f) | ((uint32_t)p[1] << 7);
        return p + 2;
    }
    return om_decode_varint32(p, limit, v);
}

/*
 * Decode the entry header at off. On success returns a pointer to the key
 * delta and sets the three lengths; NULL if the entry does not fit.
 */
static inline const uint8_t *
biter_decode_header(const lsm_block *b, uint32_t off, uint32_t *shared, uint32_t *unshared,
                    uint32_t *vlen)
{
    const uint8_t *p = b->data + off, *limit = b->data + b->restart_off;

    if (off >= b->restart_off)
        return NULL;
    /* Fast path: three one-byte varints. */
    if (limit - p >= 3 && (p[0] | p[1] | p[2]) < 128) {
        *shared = p[0];
        *unshared = p[1];
        *vlen = p[2];
        p += 3;
    } else if ((p = biter_varint(p, limit, shared)) == NULL ||
               (p = biter_varint(p, limit, unshared)) == NULL ||
               (p = biter_varint(p, limit, vlen)) == NULL) {
        return NULL;
    }
    if ((uint64_t)*unshared + *vlen > (uint64_t)(limit - p))
        return NULL;
    return p;
}

/*
 * Make the current key prev[0, shared) + delta. A whole key (shared == 0) is
 * left in the block; otherwise it is rebuilt in the buffer (the prefix is
 * copied only when the previous key was in the block). False on NOMEM.
 */
static inline bool
biter_set_key(lsm_block_iter *it, uint32_t shared, const uint8_t *delta, uint32_t unshared)
{
    uint32_t n = shared + unshared, cap = it->kheap != NULL ? it->kcap : LSM_BLOCK_ITER_INLINE_KEY;
    uint8_t *buf;

    if (shared == 0) {
        it->kblock = delta;
        it->kn = unshared;
        return true;
    }
    if (n > cap) {
        uint32_t ncap = n < 2 * cap ? 2 * cap : n;
        uint8_t *nb = malloc(ncap);

        if (nb == NULL)
            return false;
        memcpy(nb, biter_kptr(it), shared);
        free(it->kheap);
        it->kheap = nb;
        it->kcap = ncap;
        it->kblock = NULL;
    }
    buf = it->kheap != NULL ? it->kheap : it->kinline;
    if (it->kblock != NULL) {
        memcpy(buf, it->kblock, shared);
        it->kblock = NULL;
    }
    memcpy(buf + shared, delta, unshared);
    it->kn = n;
    return true;
}

/* Parse the entry at it->cur into key/value; false (and corrupt) if malformed. */
static inline bool
biter_parse_current(lsm_block_iter *it)
{
    const lsm_block *b = it->block;
    uint32_t shared, unshared, vlen;
    const uint8_t *p;

    if (it->cur >= b->restart_off) {
        it->valid = false;
        return true;
    }
    p = biter_decode_header(b, it->cur, &shared, &unshared, &vlen);
    if (p == NULL || shared > it->kn ||
        (it->cmp == LSM_CMP_IKEY && (uint64_t)shared + unshared < LSM_TRAILER_SIZE)) {
        biter_corrupt(it);
        return false;
    }
    if (!biter_set_key(it, shared, p, unshared)) {
        it->status = OM_E_NOMEM;
        it->valid = false;
        return false;
    }
    it->value = om_slice_make(p + unshared, vlen);
    it->next_off = (uint32_t)(p + unshared + vlen - b->data);
    it->valid = true;
    return true;
}

/* The offset of restart point i, or UINT32_MAX if it lies outside the entries. */
static inline uint32_t
biter_restart(const lsm_block_iter *it, uint32_t i)
{
    uint32_t off = om_get_fixed32(it->block->data + it->block->restart_off + 4 * (size_t)i);

    return off < it->block->restart_off || (off == 0 && it->block->restart_off == 0) ? off
                                                                                     : UINT32_MAX;
}

static void
biter_seek_to_restart(lsm_block_iter *it, uint32_t i)
{
    uint32_t off = biter_restart(it, i);

    if (off == UINT32_MAX) {
        biter_corrupt(it);
        return;
    }
    it->kblock = NULL;
    it->kn = 0;
    it->cur = off;
    it->ordinal = i;
    biter_parse_current(it);
}

static bool
biter_valid(const lsm_it *base)
{
    return ((const lsm_block_iter *)base)->valid;
}

static void
biter_seek_first(lsm_it *base)
{
    lsm_block_iter *it = (lsm_block_iter *)base;

    if (it->status != OM_OK)
        return;
    biter_seek_to_restart(it, 0);
}

static void
biter_next(lsm_it *base)
{
    lsm_block_iter *it = (lsm_block_iter *)base;

    if (!it->valid)
        return;
    it->cur = it->next_off;
    it->ordinal++;
    biter_parse_current(it);
}

/*
 * The key of restart point i where it lies in the block (its length in
 * *kn), or NULL with the iterator made corrupt: a restart outside the
 * entries, a malformed entry, a shared prefix, a key shorter than tr.
 */
static inline const uint8_t *
biter_restart_key(lsm_block_iter *it, uint32_t i, size_t tr, uint32_t *kn)
{
    uint32_t off = biter_restart(it, i), shared, vlen;
    const uint8_t *p;

    if (off == UINT32_MAX ||
        (p = biter_decode_header(it->block, off, &shared, kn, &vlen)) == NULL || shared != 0 ||
        *kn < tr) {
        biter_corrupt(it);
        return NULL;
    }
    return p;
}

/*
 * Binary search for the last restart point whose key is < target, comparing
 * each restart key where it lies in the block (it is stored whole), then a
 * forward scan from there. The restart entry found by the search is known to
 * be < target and is not compared again.
 */
static void
biter_seek(lsm_it *base, om_slice target)
{
    lsm_block_iter *it = (lsm_block_iter *)base;
    const lsm_block *b = it->block;
    const lsm_block_cmp cmp = it->cmp;
    const size_t tr = cmp == LSM_CMP_IKEY ? LSM_TRAILER_SIZE : 0;
    uint32_t left = 0, right = b->nrestarts - 1;

    if (it->status != OM_OK)
        return;
    if (target.n < tr) {
        /* Not an internal key: it has no place in internal-key order. */
        it->status = OM_ERR(OM_E_INVALID);
        it->valid = false;
        return;
    }
    while (left < right) {
        uint32_t mid = left + (right - left + 1) / 2, kn;
        const uint8_t *p = biter_restart_key(it, mid, tr, &kn);

        if (p == NULL)
            return;
        if (biter_cmp(cmp, p, kn, target) < 0)
            left = mid;
        else
            right = mid - 1;
    }
    biter_seek_to_restart(it, left);
    if (left > 0 && it->valid) /* restart `left` compared < target above */
        biter_next(base);
    while (it->valid && biter_cmp(cmp, biter_kptr(it), it->kn, target) < 0) {
        it->cur = it->next_off;
        it->ordinal++;
        biter_parse_current(it);
    }
}

void
lsm_block_iter_seek_between(lsm_block_iter *it, om_slice target, uint32_t lo, uint32_t hi)
{
    const lsm_block *b = it->block;
    const size_t tr = it->cmp == LSM_CMP_IKEY ? LSM_TRAILER_SIZE : 0;

    if (it->status != OM_OK)
        return;
    if ((lo < hi && target.n < tr) || hi > b->nrestarts || lo > hi) {
        it->status = OM_ERR(OM_E_INVALID);
        it->valid = false;
        return;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2, kn;
        const uint8_t *p = biter_restart_key(it, mid, tr, &kn);

        if (p == NULL)
            return;
        if (biter_cmp(it->cmp, p, kn, target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == b->nrestarts) { /* every key < target: past the end */
        it->valid = false;
        it->cur = it->next_off = b->restart_off;
        it->kblock = NULL;
        it->kn = 0;
        it->ordinal = lo;
        return;
    }
    biter_seek_to_restart(it, lo);
}

/*
 * Position at the entry at off, taking its key's shared prefix from the
 * block's first key (a key-indexed block compresses against it).
 */
static void
biter_at_entry(lsm_block_iter *it, uint32_t off)
{
    biter_seek_to_restart(it, 0);
    if (!it->valid || off == 0)
        return;
    if (off >= it->block->restart_off) {
        biter_corrupt(it);
        return;
    }
    it->cur = off;
    biter_parse_current(it);
}

bool
lsm_block_iter_seek_point(lsm_block_iter *it, om_slice target)
{
    const lsm_block *b = it->block;
    const uint8_t *offs, *fps, *p, *end;
    size_t un;
    uint8_t fp;

    if (b->nkeys == 0 || it->cmp != LSM_CMP_IKEY || it->status != OM_OK ||
        target.n < LSM_TRAILER_SIZE) {
        biter_seek(&it->base, target);
        return true;
    }
    un = target.n - LSM_TRAILER_SIZE;
    offs = b->data + b->keys_off;
    p = fps = offs + 2 * (size_t)b->nkeys;
    end = fps + b->nkeys;
    fp = lsm_block_key_fp(om_hash64(target.p, un));
    while (p < end && (p = memchr(p, fp, (size_t)(end - p))) != NULL) {
        biter_at_entry(it, get_fixed16(offs + 2 * (size_t)(p - fps)));
        if (!it->valid)
            return true; /* corrupt: the status says so */
        if (it->kn - LSM_TRAILER_SIZE == un && memcmp(biter_kptr(it), target.p, un) == 0) {
            /* The user key's newest entry here; newer ones than target come first. */
            while (it->valid && biter_cmp(LSM_CMP_IKEY, biter_kptr(it), it->kn, target) < 0) {
                it->cur = it->next_off;
                it->ordinal++;
                biter_parse_current(it);
            }
            return true;
        }
        p++;
    }
    it->valid = false;
    it->cur = it->next_off = b->restart_off;
    it->kblock = NULL;
    it->kn = 0;
    return false;
}

static om_slice
biter_key(const lsm_it *base)
{
    const lsm_block_iter *it = (const lsm_block_iter *)base;

    return om_slice_make(biter_kptr(it), it->kn);
}

static om_slice
biter_value(const lsm_it *base)
{
    return ((const lsm_block_iter *)base)->value;
}

static om_status
biter_status(const lsm_it *base)
{
    return ((const lsm_block_iter *)base)->status;
}

static void
biter_free_embedded(lsm_it *base)
{
    lsm_block_iter_fini((lsm_block_iter *)base);
}

static void
biter_free_heap(lsm_it *base)
{
    lsm_block_iter_fini((lsm_block_iter *)base);
    free(base);
}

static const lsm_it_ops biter_embedded_ops = LSM_IT_OPS(biter, biter_free_embedded);

static const lsm_it_ops biter_heap_ops = LSM_IT_OPS(biter, biter_free_heap);

void
lsm_block_iter_init(lsm_block_iter *it, const lsm_block *b, lsm_block_cmp cmp)
{
    /* Keep the heap key buffer of a re-initialised iterator; the inline one needs no reset. */
    it->base.ops = &biter_embedded_ops;
    it->block = b;
    it->cmp = cmp;
    it->cur = it->next_off = b->restart_off;
    it->ordinal = 0;
    it->kblock = NULL;
    it->kn = 0;
    it->value = OM_SLICE_NULL;
    it->status = OM_OK;
    it->valid = false;
}

void
lsm_block_iter_fini(lsm_block_iter *it)
{
    free(it->kheap);
    it->kheap = NULL;
    it->kcap = 0;
    it->kblock = NULL;
    it->kn = 0;
    it->valid = false;
}

om_status
lsm_block_iter_new(const lsm_block *b, lsm_block_cmp cmp, lsm_it **out)
{
    lsm_block_iter *it = calloc(1, sizeof(*it));

    if (it == NULL)
        return OM_ERR(OM_E_NOMEM);
    lsm_block_iter_init(it, b, cmp);
    it->base.ops = &biter_heap_ops;
    *out = &it->base;
    return OM_OK;
}
