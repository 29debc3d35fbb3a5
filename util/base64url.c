/*
 * util/base64url.c -- unpadded base64url, strict decoding (the rules are in
 * base64url.h). Three bytes make four characters; a last group of one or two
 * bytes makes two or three characters, whose unused low bits must be zero.
 */
#include "util/base64url.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

om_status
om_base64url_encode(om_slice in, om_buf *out)
{
    char q[4];

    OM_TRY(om_buf_reserve(out, (in.n + 2) / 3 * 4));
    for (size_t i = 0; i < in.n; i += 3) {
        size_t k = in.n - i >= 3 ? 3 : in.n - i;
        uint32_t v = (uint32_t)in.p[i] << 16;
        if (k > 1)
            v |= (uint32_t)in.p[i + 1] << 8;
        if (k > 2)
            v |= in.p[i + 2];
        q[0] = b64url_alphabet[(v >> 18) & 63];
        q[1] = b64url_alphabet[(v >> 12) & 63];
        q[2] = b64url_alphabet[(v >> 6) & 63];
        q[3] = b64url_alphabet[v & 63];
        OM_TRY(om_buf_append(out, q, k + 1));
    }
    return OM_OK;
}

/* The 6-bit value of character c, or -1 outside the alphabet. */
static int
b64url_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

om_status
om_base64url_decode(om_slice in, om_buf *out)
{
    uint32_t acc = 0;
    int bits = 0;

    if (in.n % 4 == 1)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(om_buf_reserve(out, in.n / 4 * 3 + 2));
    for (size_t i = 0; i < in.n; i++) {
        int v = b64url_value(in.p[i]);
        if (v < 0)
            return OM_ERR(OM_E_INVALID);
        acc = (acc << 6 | (uint32_t)v) & 0xffffu; /* at most 8 + 6 bits are pending */
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            OM_TRY(om_buf_append_byte(out, (uint8_t)(acc >> bits)));
        }
    }
    /* the unused low bits of a canonical last character are zero */
    if ((acc & ((1u << bits) - 1)) != 0)
        return OM_ERR(OM_E_INVALID);
    return OM_OK;
}
