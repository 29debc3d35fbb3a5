/*
 * util/slice.c -- slice comparison, growable buffers and UTF-8 validation.
 */
#include "util/slice.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

om_slice
om_slice_from_str(const char *s)
{
    return (om_slice){(const uint8_t *)s, s ? strlen(s) : 0};
}

int
om_slice_cmp(om_slice a, om_slice b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int r = n ? memcmp(a.p, b.p, n) : 0;

    if (r != 0)
        return r;
    return a.n < b.n ? -1 : (a.n > b.n ? 1 : 0);
}

bool
om_slice_eq(om_slice a, om_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool
om_slice_has_prefix(om_slice s, om_slice prefix)
{
    return s.n >= prefix.n && (prefix.n == 0 || memcmp(s.p, prefix.p, prefix.n) == 0);
}

om_status
om_buf_reserve(om_buf *b, size_t extra)
{
    size_t need, cap;
    uint8_t *p;

    if (extra > SIZE_MAX - b->n - 1)
        return OM_ERR(OM_E_NOMEM);
    need = b->n + extra + 1; /* +1: room for a NUL after printf */
    if (need <= b->cap)
        return OM_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return OM_ERR(OM_E_NOMEM);
    b->p = p;
    b->cap = cap;
    return OM_OK;
}

om_status
om_buf_append(om_buf *b, const void *p, size_t n)
{
    OM_TRY(om_buf_reserve(b, n));
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    return OM_OK;
}

om_status
om_buf_append_slice(om_buf *b, om_slice s)
{
    return om_buf_append(b, s.p, s.n);
}

om_status
om_buf_append_byte(om_buf *b, uint8_t c)
{
    return om_buf_append(b, &c, 1);
}

om_status
om_buf_set(om_buf *b, om_slice s)
{
    b->n = 0;
    return om_buf_append(b, s.p, s.n);
}

om_status
om_buf_printf(om_buf *b, const char *fmt, ...)
{
    va_list ap;
    int need;

    va_start(ap, fmt);
    need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(om_buf_reserve(b, (size_t)need));
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
    return OM_OK;
}

void
om_buf_free(om_buf *b)
{
    free(b->p);
    *b = OM_BUF_INIT;
}

uint8_t *
om_buf_take(om_buf *b, size_t *n)
{
    uint8_t *p = b->p;

    if (n)
        *n = b->n;
    *b = OM_BUF_INIT;
    return p;
}

char *
om_slice_strdup(om_slice s)
{
    char *p = malloc(s.n + 1);

    if (p == NULL)
        return NULL;
    if (s.n)
        memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    return p;
}

bool
om_utf8_valid(om_slice s)
{
    const uint8_t *p = s.p, *end = s.p + s.n;

    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            uint64_t w;
            /* ASCII runs (most keys) eight bytes at a time */
            if (end - p >= 8 && (memcpy(&w, p, 8), (w & 0x8080808080808080ull) == 0))
                p += 8;
            else
                p++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += len;
    }
    return true;
}
