/*
 * util/base64.c -- RFC 4648 section 4 base64 (standard alphabet, '='
 * padding). The decoder accepts input with or without padding but rejects
 * non-canonical trailing bits, so every byte string has one accepted form
 * besides its unpadded twin.
 */
#include "util/base64.h"

#include <stdint.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

om_status
om_base64_encode(om_slice in, om_buf *out)
{
    char q[4];

    OM_TRY(om_buf_reserve(out, (in.n + 2) / 3 * 4 + 1));
    for (size_t i = 0; i < in.n; i += 3) {
        size_t k = in.n - i >= 3 ? 3 : in.n - i;
        uint32_t v = (uint32_t)in.p[i] << 16;

        if (k > 1)
            v |= (uint32_t)in.p[i + 1] << 8;
        if (k > 2)
            v |= in.p[i + 2];
        q[0] = b64_std[(v >> 18) & 63];
        q[1] = b64_std[(v >> 12) & 63];
        q[2] = k > 1 ? b64_std[(v >> 6) & 63] : '=';
        q[3] = k > 2 ? b64_std[v & 63] : '=';
        OM_TRY(om_buf_append(out, q, 4));
    }
    return OM_OK;
}

static int
b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

om_status
om_base64_decode(om_slice in, om_buf *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = in.n;

    /* at most two '=' and only as padding of a full quad */
    if (n % 4 == 0 && n > 0 && in.p[n - 1] == '=')
        n -= n > 1 && in.p[n - 2] == '=' ? 2 : 1;
    if (n % 4 == 1)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(om_buf_reserve(out, n * 3 / 4 + 1));
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in.p[i]);

        if (v < 0)
            return OM_ERR(OM_E_INVALID);
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            OM_TRY(om_buf_append_byte(out, (uint8_t)(acc >> bits)));
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0)
        return OM_ERR(OM_E_INVALID);
    return OM_OK;
}
