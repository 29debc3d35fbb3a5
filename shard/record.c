/*
 * shard/record.c -- encoder and decoder of the record format in record.h,
 * the LSM key layout, and validation of client input (S3 bucket rules, UTF-8
 * keys, JSON object metadata with size and depth limits, data limit).
 */
#define OM_LOG_MODULE "shard"
#include "shard/record.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/coding.h"

om_status
shard_record_encode(const shard_record *r, om_buf *out)
{
    om_buf_reset(out);
    return shard_record_append(r, out);
}

om_status
shard_record_append(const shard_record *r, om_buf *out)
{
    uint8_t hdr[2 + 3 * OM_MAX_VARINT64_LEN + 8 + 2 * OM_MAX_VARINT64_LEN];
    uint8_t *p = hdr;

    *p++ = SHARD_RECORD_FORMAT;
    *p++ = (uint8_t)r->type;
    p = om_encode_varint64(p, r->version);
    p = om_encode_varint64(p, r->size);
    om_put_fixed64(p, r->etag);
    p += 8;
    p = om_encode_varint64(p, r->created_ms);
    p = om_encode_varint64(p, r->modified_ms);
    OM_TRY(om_buf_reserve(out, (size_t)(p - hdr) + 2 * OM_MAX_VARINT64_LEN + r->content_type.n +
                                   r->metadata.n + r->data.n));
    OM_TRY(om_buf_append(out, hdr, (size_t)(p - hdr)));
    OM_TRY(om_buf_put_lenpref(out, r->content_type));
    OM_TRY(om_buf_put_lenpref(out, r->metadata));
    return om_buf_append_slice(out, r->data);
}

/*
 * The decoder's varints, inline: every Store decodes the record it replaces
 * and every Retrieve the one it returns, and out-of-line calls per field
 * were most of the decoding time. Same rules as om_decode_varint64 (at most
 * ten bytes, no bits beyond 64). Returns false on a truncated or overlong
 * varint.
 */
static inline bool
rec_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t r = 0;

    if (end - p >= 10) {
        /* ten bytes at hand (all but the record's last fields): no bounds check per byte */
        for (unsigned i = 0; i < 10; i++) {
            uint64_t b = p[i];
            r |= (b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0) {
                if (i == 9 && b > 1)
                    return false; /* overflow */
                *v = r;
                *pp = p + i + 1;
                return true;
            }
        }
        return false;
    }
    for (unsigned shift = 0; shift <= 63 && p < end; shift += 7) {
        uint64_t b = *p++;
        if (shift == 63 && b > 1)
            return false; /* overflow */
        r |= (b & 0x7F) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            *pp = p;
            return true;
        }
    }
    return false;
}

static inline bool
rec_lenpref(const uint8_t **pp, const uint8_t *end, om_slice *out)
{
    uint64_t len;

    if (!rec_varint(pp, end, &len) || len > (uint64_t)(end - *pp))
        return false;
    *out = om_slice_make(*pp, (size_t)len);
    *pp += len;
    return true;
}

/* The fixed-layout head: format through modified_ms; *pp moves past it. */
static om_status
rec_decode_head(const uint8_t **pp, const uint8_t *end, shard_record *t)
{
    const uint8_t *p = *pp;

    if (end - p < 2 || p[0] != SHARD_RECORD_FORMAT)
        return OM_ERR(OM_E_CORRUPT);
    if (p[1] != SHARD_REC_LIVE && p[1] != SHARD_REC_TOMBSTONE)
        return OM_ERR(OM_E_CORRUPT);
    t->type = (shard_rec_type)p[1];
    p += 2;
    if (!rec_varint(&p, end, &t->version) || !rec_varint(&p, end, &t->size) || end - p < 8)
        return OM_ERR(OM_E_CORRUPT);
    t->etag = om_get_fixed64(p);
    p += 8;
    if (!rec_varint(&p, end, &t->created_ms) || !rec_varint(&p, end, &t->modified_ms))
        return OM_ERR(OM_E_CORRUPT);
    *pp = p;
    return OM_OK;
}

om_status
shard_record_decode_head(om_slice in, shard_record *r)
{
    const uint8_t *p = in.p;
    shard_record t;

    OM_TRY(rec_decode_head(&p, in.p + in.n, &t));
    t.content_type = t.metadata = t.data = om_slice_make(NULL, 0);
    *r = t;
    return OM_OK;
}

om_status
shard_record_decode(om_slice in, shard_record *r)
{
    const uint8_t *p = in.p, *end = in.p + in.n;
    shard_record t;

    OM_TRY(rec_decode_head(&p, end, &t));
    if (!rec_lenpref(&p, end, &t.content_type) || !rec_lenpref(&p, end, &t.metadata))
        return OM_ERR(OM_E_CORRUPT);
    if ((uint64_t)(end - p) != t.size)
        return OM_ERR(OM_E_CORRUPT);
    t.data = om_slice_make(p, (size_t)(end - p));
    *r = t;
    return OM_OK;
}

void
shard_etag_hex(uint64_t etag, char out[17])
{
    /* Every Retrieve and Head formats one: eight nibbles at a time, without a loop. */
    for (int half = 0; half < 2; half++) {
        uint64_t n = half == 0 ? etag >> 32 : etag & 0xffffffffu, c;

        /* spread the nibbles one per byte, least significant nibble in the lowest byte */
        n = ((n & 0xffff0000u) << 16) | (n & 0xffffu);
        n = ((n & 0x0000ff000000ff00ull) << 8) | (n & 0x000000ff000000ffull);
        n = ((n & 0x00f000f000f000f0ull) << 4) | (n & 0x000f000f000f000full);
        /* '0' + v, plus 'a' - '0' - 10 where v >= 10 (v + 6 carries into bit 4) */
        c = n + 0x3030303030303030ull +
            (((n + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull) * 0x27;
        /* the most significant nibble goes first */
        c = __builtin_bswap64(c);
        memcpy(out + 8 * half, &c, 8);
    }
    out[16] = '\0';
}

om_status
shard_lsm_key(om_slice bucket, om_slice key, om_buf *out)
{
    om_buf_reset(out);
    OM_TRY(om_buf_reserve(out, bucket.n + 1 + key.n));
    OM_TRY(om_buf_append_slice(out, bucket));
    OM_TRY(om_buf_append_byte(out, 0));
    return om_buf_append_slice(out, key);
}

/* True if the name looks like a dotted-quad IPv4 address (S3 forbids those). */
static bool
bucket_is_ipv4(om_slice b)
{
    int groups = 1, digits = 0;

    for (size_t i = 0; i < b.n; i++) {
        if (b.p[i] == '.') {
            if (digits == 0)
                return false;
            groups++;
            digits = 0;
        } else if (b.p[i] >= '0' && b.p[i] <= '9') {
            if (++digits > 3)
                return false;
        } else {
            return false;
        }
    }
    return groups == 4 && digits > 0;
}

static bool
is_lower_alnum(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

om_status
shard_validate_bucket(om_slice b, char *err, size_t errlen)
{
    if (b.n < SHARD_BUCKET_MIN || b.n > SHARD_BUCKET_MAX)
        return om_err_invalid(err, errlen, "bucket: name must be %d to %d bytes long (got %zu)",
                              SHARD_BUCKET_MIN, SHARD_BUCKET_MAX, b.n);
    for (size_t i = 0; i < b.n; i++) {
        uint8_t c = b.p[i];
        if (!is_lower_alnum(c) && c != '.' && c != '-')
            return om_err_invalid(err, errlen,
                                  "bucket: only lower-case letters, digits, '.' and '-' are "
                                  "allowed (byte 0x%02x at offset %zu)",
                                  c, i);
        if (c == '.' && i > 0 && b.p[i - 1] == '.')
            return om_err_invalid(err, errlen, "bucket: must not contain two adjacent periods");
    }
    if (!is_lower_alnum(b.p[0]) || !is_lower_alnum(b.p[b.n - 1]))
        return om_err_invalid(err, errlen, "bucket: must start and end with a letter or digit");
    if (bucket_is_ipv4(b))
        return om_err_invalid(err, errlen, "bucket: must not be formatted as an IP address");
    if (b.n >= 4 && memcmp(b.p, "xn--", 4) == 0)
        return om_err_invalid(err, errlen, "bucket: must not start with the prefix 'xn--'");
    if (b.n >= 8 && memcmp(b.p + b.n - 8, "-s3alias", 8) == 0)
        return om_err_invalid(err, errlen, "bucket: must not end with the suffix '-s3alias'");
    return OM_OK;
}

om_status
shard_validate_key(om_slice key, char *err, size_t errlen)
{
    if (key.n == 0)
        return om_err_invalid(err, errlen, "key: must not be empty");
    if (key.n > SHARD_KEY_MAX)
        return om_err_invalid(err, errlen, "key: %zu bytes is longer than the limit of %d bytes",
                              key.n, SHARD_KEY_MAX);
    if (!om_utf8_valid(key))
        return om_err_invalid(err, errlen, "key: not valid UTF-8");
    return OM_OK;
}

/* Nesting depth of a parsed JSON value: scalars 0, [] / {} 1, and so on. */
static int
json_depth(const json_t *v)
{
    int d = 0;

    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int c = json_depth(x);
            if (c > d)
                d = c;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            int c = json_depth(x);
            if (c > d)
                d = c;
        }
        return d + 1;
    }
    return 0;
}

om_status
shard_validate_metadata(om_slice json, size_t max_bytes, int max_depth, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v;
    int depth;

    if (json.n == 0)
        return OM_OK;
    if (json.n > max_bytes)
        return om_err_invalid(err, errlen,
                              "metadata: %zu bytes is larger than the limit of %zu bytes", json.n,
                              max_bytes);
    v = json_loadb((const char *)json.p, json.n, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
        return om_err_invalid(err, errlen, "metadata: not valid JSON: %s (line %d, column %d)",
                              jerr.text, jerr.line, jerr.column);
    if (!json_is_object(v)) {
        json_decref(v);
        return om_err_invalid(err, errlen, "metadata: must be a JSON object");
    }
    depth = json_depth(v);
    json_decref(v);
    if (depth > max_depth)
        return om_err_invalid(err, errlen, "metadata: nesting depth %d exceeds the limit of %d",
                              depth, max_depth);
    return OM_OK;
}

om_status
shard_validate_content_type(om_slice ct, char *err, size_t errlen)
{
    if (ct.n > SHARD_CONTENT_TYPE_MAX)
        return om_err_invalid(err, errlen, "content_type: longer than %d bytes",
                              SHARD_CONTENT_TYPE_MAX);
    for (size_t i = 0; i < ct.n; i++)
        if (ct.p[i] < 0x20 || ct.p[i] > 0x7e)
            return om_err_invalid(err, errlen,
                                  "content_type: only printable ASCII is allowed (byte 0x%02x)",
                                  ct.p[i]);
    return OM_OK;
}

om_status
shard_validate_data(om_slice data, size_t max_bytes, char *err, size_t errlen)
{
    if (data.n > max_bytes)
        return om_err_invalid(err, errlen, "data: %zu bytes is larger than the limit of %zu bytes",
                              data.n, max_bytes);
    return OM_OK;
}
