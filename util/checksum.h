/*
 * util/checksum.h -- xxh3 hashes and checksums.
 *
 * om_hash64 is XXH3-64 (the ring's key and point hash, ARCHITECTURE.md).
 * om_checksum32 is the low 32 bits of XXH3-64 with a fixed seed, used to
 * cover records and blocks on disk; the seed keeps it distinct from
 * om_hash64 of the same bytes, so a hash stored next to its own data cannot
 * masquerade as a checksum.
 *
 * Thread-safety: pure functions.
 */
#ifndef OM_UTIL_CHECKSUM_H
#define OM_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define OM_CHECKSUM_SEED 0x6f626a6d657461ULL /* "objmeta" */

uint64_t om_hash64(const void *p, size_t n);
uint64_t om_hash64_seed(const void *p, size_t n, uint64_t seed);
uint32_t om_checksum32(const void *p, size_t n);

/* Streaming checksum over several pieces; equal to om_checksum32 of their concatenation. */
typedef struct om_checksum_state {
    uint8_t opaque_[640] __attribute__((aligned(64)));
} om_checksum_state;

void om_checksum_begin(om_checksum_state *s);
void om_checksum_update(om_checksum_state *s, const void *p, size_t n);
uint32_t om_checksum_end(om_checksum_state *s);

#endif /* OM_UTIL_CHECKSUM_H */
