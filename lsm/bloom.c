/*
 * lsm/bloom.c -- bloom filter builder and probe (see bloom.h).
 *
 * The builder keeps one 64-bit hash per distinct consecutive key (a table
 * holds many versions of a key next to each other; they need one entry) and
 * sizes the bit array when the table is finished, when the key count is
 * known. The filter is cache-line blocked: the high half of the hash picks
 * one 64-byte line (multiply-shift, no division) and all k probes fall in
 * that line, so a lookup touches one cache line instead of k -- the cost that
 * dominates a negative lookup across many tables.
 */
#include "lsm/bloom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/sstable_format.h"
#include "util/checksum.h"

void
lsm_bloom_builder_init(lsm_bloom_builder *b, int bits_per_key)
{
    memset(b, 0, sizeof(*b));
    b->bits_per_key = bits_per_key < 1 ? 1 : bits_per_key;
}

void
lsm_bloom_builder_fini(lsm_bloom_builder *b)
{
    free(b->hashes);
    memset(b, 0, sizeof(*b));
}

om_status
lsm_bloom_builder_add_hash(lsm_bloom_builder *b, uint64_t h)
{
    if (b->n > 0 && b->hashes[b->n - 1] == h)
        return OM_OK;
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 1024;
        uint64_t *nh = realloc(b->hashes, ncap * sizeof(*nh));

        if (nh == NULL)
            return OM_ERR(OM_E_NOMEM);
        b->hashes = nh;
        b->cap = ncap;
    }
    b->hashes[b->n++] = h;
    return OM_OK;
}

om_status
lsm_bloom_builder_add(lsm_bloom_builder *b, om_slice key)
{
    return lsm_bloom_builder_add_hash(b, om_hash64(key.p, key.n));
}

size_t
lsm_bloom_builder_count(const lsm_bloom_builder *b)
{
    return b->n;
}

static int
bloom_probes(int bits_per_key)
{
    /*
     * k = bits * ln 2 is optimal for a classic filter; confined to one cache
     * line, one probe fewer measures better above 8 bits/key (10 bits: k = 6).
     */
    int k = (int)lround(bits_per_key * 0.69314718056);

    if (bits_per_key >= 8)
        k--;
    if (k < 1)
        k = 1;
    if (k > LSM_BLOOM_MAX_PROBES)
        k = LSM_BLOOM_MAX_PROBES;
    return k;
}

/* The 64-byte line of key hash h among nlines: the high 32 bits, multiply-shifted. */
static inline uint32_t
bloom_line(uint64_t h, uint32_t nlines)
{
    return (uint32_t)(((h >> 32) * (uint64_t)nlines) >> 32);
}

/* Probe bit positions inside the line: the top 9 bits of a 32-bit multiplicative sequence. */
#define BLOOM_STEP LSM_BLOOM_STEP

om_status
lsm_bloom_builder_finish(lsm_bloom_builder *b, om_buf *out)
{
    uint64_t bits = (uint64_t)b->n * (uint64_t)b->bits_per_key;
    int k = bloom_probes(b->bits_per_key);
    uint64_t nlines;
    size_t bytes;
    uint8_t *arr;

    /* Whole 512-bit lines, at least one; at most 2^32 lines. */
    nlines = (bits + 511) / 512;
    if (nlines < 1)
        nlines = 1;
    if (nlines > UINT32_MAX)
        nlines = UINT32_MAX;
    bytes = (size_t)nlines * 64;
    OM_TRY(om_buf_reserve(out, bytes + 1));
    arr = out->p + out->n;
    memset(arr, 0, bytes);
    for (size_t i = 0; i < b->n; i++) {
        uint64_t h = b->hashes[i];
        uint8_t *line = arr + (size_t)bloom_line(h, (uint32_t)nlines) * 64;
        uint32_t a = (uint32_t)h;

        for (int j = 0; j < k; j++) {
            uint32_t pos;

            a *= BLOOM_STEP;
            pos = a >> 23;
            line[pos >> 3] |= (uint8_t)(1u << (pos & 7));
        }
    }
    arr[bytes] = (uint8_t)k;
    out->n += bytes + 1;
    b->n = 0;
    return OM_OK;
}

om_status
lsm_bloom_check_filter(om_slice f)
{
    if (f.n < 65 || (f.n - 1) % 64 != 0 || (f.n - 1) / 64 > UINT32_MAX)
        return OM_E_CORRUPT;
    if (f.p[f.n - 1] < 1 || f.p[f.n - 1] > LSM_BLOOM_MAX_PROBES)
        return OM_E_CORRUPT;
    return OM_OK;
}

void
lsm_bloom_probe_init(lsm_bloom_probe *p, om_slice f)
{
    p->lines = f.p;
    p->nlines = (uint32_t)((f.n - 1) / 64);
    p->k = f.p[f.n - 1];
}

bool
lsm_bloom_may_contain_hash(om_slice f, uint64_t h)
{
    lsm_bloom_probe p;

    if (lsm_bloom_check_filter(f) != OM_OK)
        return true;
    lsm_bloom_probe_init(&p, f);
    return lsm_bloom_probe_may_contain(&p, h);
}

bool
lsm_bloom_may_contain(om_slice f, om_slice key)
{
    return lsm_bloom_may_contain_hash(f, om_hash64(key.p, key.n));
}
