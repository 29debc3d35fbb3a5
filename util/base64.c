/*
 * util/base64.c -- RFC 4648 section 4 base64 (standard alphabet, '='
 * padding) on top of the strict base64url codec (base64url.c): the two
 * alphabets differ only in characters 62 and 63 ('+' '/' against '-' '_'),
 * so encoding translates those and pads, and decoding checks the padding,
 * translates back and lets base64url.c judge the rest (alphabet, length,
 * canonical last character).
 */
#include "util/base64.h"

#include <string.h>

#include "util/base64url.h"

om_status
om_base64_encode(om_slice in, om_buf *out)
{
    size_t start = out->n;

    OM_TRY(om_base64url_encode(in, out));
    for (size_t i = start; i < out->n; i++) {
        if (out->p[i] == '-')
            out->p[i] = '+';
        else if (out->p[i] == '_')
            out->p[i] = '/';
    }
    while ((out->n - start) % 4 != 0)
        OM_TRY(om_buf_append_byte(out, '='));
    return OM_OK;
}

om_status
om_base64_decode(om_slice in, om_buf *out)
{
    om_buf t = OM_BUF_INIT;
    size_t n = in.n;
    om_status st;

    /* at most two '=', and only to pad a full group of four */
    if (n % 4 == 0 && n > 0 && in.p[n - 1] == '=')
        n -= n > 1 && in.p[n - 2] == '=' ? 2 : 1;
    OM_TRY(om_buf_append(&t, in.p, n));
    for (size_t i = 0; i < t.n; i++) {
        if (t.p[i] == '-' || t.p[i] == '_') {
            om_buf_free(&t);
            return OM_ERR(OM_E_INVALID); /* base64url characters in standard base64 */
        }
        if (t.p[i] == '+')
            t.p[i] = '-';
        else if (t.p[i] == '/')
            t.p[i] = '_';
    }
    st = om_base64url_decode(om_buf_slice(&t), out);
    om_buf_free(&t);
    return st;
}
