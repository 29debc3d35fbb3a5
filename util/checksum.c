/*
 * util/checksum.c -- thin wrappers over libxxhash's XXH3.
 */
#include "util/checksum.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

_Static_assert(sizeof(XXH3_state_t) <= sizeof(om_checksum_state),
               "om_checksum_state too small for XXH3_state_t");

uint64_t
om_hash64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

uint64_t
om_hash64_seed(const void *p, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, n, seed);
}

uint32_t
om_checksum32(const void *p, size_t n)
{
    return (uint32_t)XXH3_64bits_withSeed(p, n, OM_CHECKSUM_SEED);
}

void
om_checksum_begin(om_checksum_state *s)
{
    /*
     * XXH3 only rebuilds its secret when the seed differs from the one in the
     * state: on uninitialised memory that happens to hold our seed it would
     * hash with a garbage secret. Start from zero so the seed always differs.
     */
    memset(s, 0, sizeof(*s));
    XXH3_64bits_reset_withSeed((XXH3_state_t *)(void *)s->opaque_, OM_CHECKSUM_SEED);
}

void
om_checksum_update(om_checksum_state *s, const void *p, size_t n)
{
    XXH3_64bits_update((XXH3_state_t *)(void *)s->opaque_, p, n);
}

uint32_t
om_checksum_end(om_checksum_state *s)
{
    return (uint32_t)XXH3_64bits_digest((XXH3_state_t *)(void *)s->opaque_);
}
