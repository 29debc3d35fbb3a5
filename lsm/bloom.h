/*
 * lsm/bloom.h -- the per-table bloom filter over user keys (private to lsm/).
 *
 * Each key is hashed once with xxh3-64 (om_hash64). The filter is split in
 * 64-byte lines (cache-line blocked, as RocksDB's newer filters): the high 32
 * bits of the hash choose the line, and k bits inside it come from the low
 * 32 bits stepped by a multiplicative sequence, so a probe touches one cache
 * line. With b bits per key, k = round(b * ln 2), one less from 8 bits/key up,
 * clamped to [1, 30]; at 10 bits/key (k = 6) that measures about 1% false
 * positives (tests/lsm/test_bloom.c).
 *
 * Serialized filter: whole 64-byte lines (at least one) followed by one byte
 * holding k. Layout: lsm/FORMAT.md, section "SSTable".
 *
 * Thread-safety: a builder belongs to one thread; lsm_bloom_may_contain is
 * a pure function of its inputs.
 */
#ifndef OM_LSM_BLOOM_H
#define OM_LSM_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

typedef struct lsm_bloom_builder {
    int bits_per_key;
    uint64_t *hashes;
    size_t n, cap;
} lsm_bloom_builder;

void lsm_bloom_builder_init(lsm_bloom_builder *b, int bits_per_key);
void lsm_bloom_builder_fini(lsm_bloom_builder *b);

/* Remember a key (consecutive duplicates are skipped). Returns: OM_OK; OM_E_NOMEM. */
om_status lsm_bloom_builder_add(lsm_bloom_builder *b, om_slice key);
/* The same with a precomputed om_hash64 of the key. */
om_status lsm_bloom_builder_add_hash(lsm_bloom_builder *b, uint64_t h);
size_t lsm_bloom_builder_count(const lsm_bloom_builder *b);

/*
 * Append the serialized filter for every key added to out and forget the
 * keys. Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_bloom_builder_finish(lsm_bloom_builder *b, om_buf *out);

/*
 * lsm_bloom_check_filter -- whether filter is well-formed (k in range, whole
 * 64-byte lines, at least one). Returns: OM_OK; OM_E_CORRUPT.
 */
om_status lsm_bloom_check_filter(om_slice filter);

/*
 * lsm_bloom_may_contain -- false if key was certainly not added. A filter
 * that fails lsm_bloom_check_filter answers true (never a false negative).
 */
bool lsm_bloom_may_contain(om_slice filter, om_slice key);
bool lsm_bloom_may_contain_hash(om_slice filter, uint64_t h);

/*
 * A filter that passed lsm_bloom_check_filter, decoded once for repeated
 * probes (a table keeps one for its life): the probe is then a few
 * multiplications and one cache line, with no validation per lookup.
 */
typedef struct lsm_bloom_probe {
    const uint8_t *lines; /* nlines x 64 bytes */
    uint32_t nlines;      /* >= 1 */
    int k;                /* 1..LSM_BLOOM_MAX_PROBES */
} lsm_bloom_probe;

/* Requires: lsm_bloom_check_filter(filter) == OM_OK; filter outlives p. */
void lsm_bloom_probe_init(lsm_bloom_probe *p, om_slice filter);

/* The multiplier of the probe sequence inside a line (FORMAT.md, "Filter block"). */
#define LSM_BLOOM_STEP 0x9E3779B9u

/* The line a probe of the key with om_hash64 h reads. */
static inline const uint8_t *
lsm_bloom_probe_line(const lsm_bloom_probe *p, uint64_t h)
{
    /* The line: the high 32 bits of h, multiply-shifted into [0, nlines). */
    return p->lines + (size_t)(((h >> 32) * (uint64_t)p->nlines) >> 32) * 64;
}

/* False if the key with om_hash64 h was certainly not added. */
static inline bool
lsm_bloom_probe_may_contain(const lsm_bloom_probe *p, uint64_t h)
{
    const uint8_t *line = lsm_bloom_probe_line(p, h);
    uint32_t a = (uint32_t)h;

    for (int j = 0; j < p->k; j++) {
        uint32_t pos;

        a *= LSM_BLOOM_STEP;
        pos = a >> 23;
        if ((line[pos >> 3] & (1u << (pos & 7))) == 0)
            return false;
    }
    return true;
}

#endif /* OM_LSM_BLOOM_H */
