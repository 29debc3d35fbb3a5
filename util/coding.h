/*
 * util/coding.h -- varints and fixed-width integers.
 *
 * Fixed-width integers on disk are little-endian (om_put_fixed32/64); the
 * wire frame length is big-endian (om_put_be32), as rpc/FRAMING.md says.
 * Varints are LEB128: 7 bits a byte, low bits first, high bit = more.
 *
 * Decoders take a limit and never read past it: they return the position
 * after the value, or NULL if the input is truncated or malformed.
 *
 * Thread-safety: pure functions.
 */
#ifndef OM_UTIL_CODING_H
#define OM_UTIL_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/slice.h"

#define OM_MAX_VARINT32_LEN 5
#define OM_MAX_VARINT64_LEN 10

static inline void
om_put_fixed32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
om_put_fixed64(uint8_t *p, uint64_t v)
{
    om_put_fixed32(p, (uint32_t)v);
    om_put_fixed32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
om_get_fixed32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t
om_get_fixed64(const uint8_t *p)
{
    return (uint64_t)om_get_fixed32(p) | ((uint64_t)om_get_fixed32(p + 4) << 32);
}

static inline void
om_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t
om_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void
om_put_be64(uint8_t *p, uint64_t v)
{
    om_put_be32(p, (uint32_t)(v >> 32));
    om_put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t
om_get_be64(const uint8_t *p)
{
    return ((uint64_t)om_get_be32(p) << 32) | om_get_be32(p + 4);
}

/* Encode v at p (room for OM_MAX_VARINT64_LEN bytes); returns the end. */
uint8_t *om_encode_varint64(uint8_t *p, uint64_t v);
uint8_t *om_encode_varint32(uint8_t *p, uint32_t v);
/* Bytes the varint encoding of v takes. */
size_t om_varint_len(uint64_t v);

/* Decode a varint in [p, limit); NULL if truncated, too long or overflowing. */
const uint8_t *om_decode_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *v);
const uint8_t *om_decode_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *v);

/* Append helpers for om_buf. */
om_status om_buf_put_varint64(om_buf *b, uint64_t v);
om_status om_buf_put_varint32(om_buf *b, uint32_t v);
om_status om_buf_put_fixed32(om_buf *b, uint32_t v);
om_status om_buf_put_fixed64(om_buf *b, uint64_t v);
/* A varint length followed by the bytes. */
om_status om_buf_put_lenpref(om_buf *b, om_slice s);

/*
 * Slice readers: consume from the front of *in. Return OM_OK, or
 * OM_E_CORRUPT if *in is too short or malformed (then *in is unchanged).
 */
om_status om_slice_get_varint64(om_slice *in, uint64_t *v);
om_status om_slice_get_varint32(om_slice *in, uint32_t *v);
om_status om_slice_get_fixed32(om_slice *in, uint32_t *v);
om_status om_slice_get_fixed64(om_slice *in, uint64_t *v);
/* *out borrows from *in's bytes. */
om_status om_slice_get_lenpref(om_slice *in, om_slice *out);

#endif /* OM_UTIL_CODING_H */
