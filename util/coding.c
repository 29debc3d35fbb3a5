/*
 * util/coding.c -- varint encode/decode and om_buf/om_slice helpers.
 */
#include "util/coding.h"

uint8_t *
om_encode_varint64(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

uint8_t *
om_encode_varint32(uint8_t *p, uint32_t v)
{
    return om_encode_varint64(p, v);
}

size_t
om_varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

const uint8_t *
om_decode_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *v)
{
    uint64_t r = 0;

    for (unsigned shift = 0; shift <= 63 && p < limit; shift += 7) {
        uint64_t b = *p++;
        if (shift == 63 && b > 1)
            return NULL; /* overflow */
        r |= (b & 0x7F) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

const uint8_t *
om_decode_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *v)
{
    uint64_t r;
    const uint8_t *q = om_decode_varint64(p, limit, &r);

    if (q == NULL || r > UINT32_MAX || q - p > OM_MAX_VARINT32_LEN)
        return NULL;
    *v = (uint32_t)r;
    return q;
}

om_status
om_buf_put_varint64(om_buf *b, uint64_t v)
{
    uint8_t tmp[OM_MAX_VARINT64_LEN];

    return om_buf_append(b, tmp, (size_t)(om_encode_varint64(tmp, v) - tmp));
}

om_status
om_buf_put_varint32(om_buf *b, uint32_t v)
{
    return om_buf_put_varint64(b, v);
}

om_status
om_buf_put_fixed32(om_buf *b, uint32_t v)
{
    uint8_t tmp[4];

    om_put_fixed32(tmp, v);
    return om_buf_append(b, tmp, 4);
}

om_status
om_buf_put_fixed64(om_buf *b, uint64_t v)
{
    uint8_t tmp[8];

    om_put_fixed64(tmp, v);
    return om_buf_append(b, tmp, 8);
}

om_status
om_buf_put_lenpref(om_buf *b, om_slice s)
{
    OM_TRY(om_buf_put_varint64(b, s.n));
    return om_buf_append(b, s.p, s.n);
}

om_status
om_slice_get_varint64(om_slice *in, uint64_t *v)
{
    const uint8_t *q = om_decode_varint64(in->p, in->p + in->n, v);

    if (q == NULL)
        return OM_E_CORRUPT;
    in->n -= (size_t)(q - in->p);
    in->p = q;
    return OM_OK;
}

om_status
om_slice_get_varint32(om_slice *in, uint32_t *v)
{
    const uint8_t *q = om_decode_varint32(in->p, in->p + in->n, v);

    if (q == NULL)
        return OM_E_CORRUPT;
    in->n -= (size_t)(q - in->p);
    in->p = q;
    return OM_OK;
}

om_status
om_slice_get_fixed32(om_slice *in, uint32_t *v)
{
    if (in->n < 4)
        return OM_E_CORRUPT;
    *v = om_get_fixed32(in->p);
    in->p += 4;
    in->n -= 4;
    return OM_OK;
}

om_status
om_slice_get_fixed64(om_slice *in, uint64_t *v)
{
    if (in->n < 8)
        return OM_E_CORRUPT;
    *v = om_get_fixed64(in->p);
    in->p += 8;
    in->n -= 8;
    return OM_OK;
}

om_status
om_slice_get_lenpref(om_slice *in, om_slice *out)
{
    om_slice s = *in;
    uint64_t len;

    if (om_slice_get_varint64(&s, &len) != OM_OK || len > s.n)
        return OM_E_CORRUPT;
    out->p = s.p;
    out->n = (size_t)len;
    in->p = s.p + len;
    in->n = s.n - (size_t)len;
    return OM_OK;
}
