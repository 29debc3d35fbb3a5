/*
 * util/slice.h -- borrowed byte ranges (om_slice) and growable owned
 * buffers (om_buf).
 *
 * An om_slice never owns its bytes: whoever hands one out says how long it
 * stays valid. An om_buf owns heap memory; om_buf_free() releases it and
 * leaves an empty buffer that may be reused.
 *
 * Thread-safety: none; a buffer belongs to one thread at a time.
 */
#ifndef OM_UTIL_SLICE_H
#define OM_UTIL_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct om_slice {
    const uint8_t *p;
    size_t n;
} om_slice;

typedef struct om_buf {
    uint8_t *p;
    size_t n;   /* bytes in use */
    size_t cap; /* bytes allocated */
} om_buf;

#define OM_SLICE_NULL ((om_slice){NULL, 0})
#define OM_BUF_INIT ((om_buf){NULL, 0, 0})

static inline om_slice
om_slice_make(const void *p, size_t n)
{
    return (om_slice){(const uint8_t *)p, n};
}

/* A slice over a NUL-terminated string, without the NUL. */
om_slice om_slice_from_str(const char *s);

/* Bytewise comparison (memcmp order, shorter prefix first): <0, 0, >0. */
int om_slice_cmp(om_slice a, om_slice b);
bool om_slice_eq(om_slice a, om_slice b);
bool om_slice_has_prefix(om_slice s, om_slice prefix);

static inline om_slice
om_buf_slice(const om_buf *b)
{
    return (om_slice){b->p, b->n};
}

/*
 * om_buf_reserve -- make room for at least `extra` more bytes.
 * Returns: OM_OK; OM_E_NOMEM if the allocation failed (the buffer is unchanged).
 */
om_status om_buf_reserve(om_buf *b, size_t extra);
om_status om_buf_append(om_buf *b, const void *p, size_t n);
om_status om_buf_append_slice(om_buf *b, om_slice s);
om_status om_buf_append_byte(om_buf *b, uint8_t c);
/* Replace the contents with a copy of s. */
om_status om_buf_set(om_buf *b, om_slice s);
/* Append a printf-formatted string (without its NUL; a NUL is kept after n). */
om_status om_buf_printf(om_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Keep the allocation, forget the contents. */
static inline void
om_buf_reset(om_buf *b)
{
    b->n = 0;
}
/* Release the memory; the buffer is empty and reusable afterwards. */
void om_buf_free(om_buf *b);
/*
 * om_buf_take -- hand the bytes to the caller and leave the buffer empty.
 * Ownership: the returned pointer is heap memory the caller free()s.
 */
uint8_t *om_buf_take(om_buf *b, size_t *n);

/* Heap copy of a slice, NUL-terminated. Returns NULL on allocation failure. */
char *om_slice_strdup(om_slice s);

/* om_utf8_valid -- true if s is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool om_utf8_valid(om_slice s);

#endif /* OM_UTIL_SLICE_H */
