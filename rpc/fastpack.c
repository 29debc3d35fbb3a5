/*
 * rpc/fastpack.c -- hand-written encoders for the hot Responses, and a
 * decoder for the hot Requests (at the end of the file). Encoders: the
 * envelope (id, status, message) with a Store, Retrieve, Head, Exists or
 * Delete body, or none. They produce byte for byte what protobuf-c's
 * get_packed_size/pack produce for the same Objmeta__Response (the
 * rpc-fastpack test compares the two on random messages), without walking
 * field descriptors, and computing every string length and nested message
 * size once instead of once per nesting level.
 *
 * protobuf-c's rules, as followed here (proto3, fields in number order):
 *   - a scalar field is left out when zero (bool false, enum 0, uint64 0);
 *   - a string is left out when NULL or "" (protobuf-c strings are C strings);
 *   - bytes are left out when len is 0;
 *   - a message field is left out when NULL, and sent (possibly empty) otherwise;
 *   - of a oneof, only the member named by the case is sent, and not when
 *     its pointer is NULL;
 *   - an enum is an int32: a negative value takes 10 bytes (sign-extended);
 *   - unknown fields kept from an unpack go last.
 * Any message outside that set -- another body, or unknown fields anywhere
 * -- goes to protobuf-c (rpc_fastpack_plan returns false).
 */
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"

/* Tags (field number << 3 | wire type) of the fields encoded here. */
#define TAG_VARINT(f) ((uint8_t)((f) << 3))
#define TAG_LEN(f) ((uint8_t)(((f) << 3) | 2))

static inline size_t
fp_varint_len(uint64_t v)
{
    /* 7 payload bits per byte: bytes = ceil(significant bits / 7), at least 1 */
    unsigned bits = 64u - (unsigned)__builtin_clzll(v | 1u);
    return (bits + 6u) / 7u;
}

static inline uint8_t *
fp_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Length of a protobuf-c string field as sent (0: left out). */
static inline size_t
fp_strlen(const char *s)
{
    return s != NULL && s[0] != '\0' ? strlen(s) : 0;
}

/* Bytes of a length-delimited field with a one-byte tag and payload n. */
static inline size_t
fp_ld_size(size_t n)
{
    return 1 + fp_varint_len(n) + n;
}

/* Bytes of a uint64 field (one-byte tag), 0 when the value is 0. */
static inline size_t
fp_u64_size(uint64_t v)
{
    return v != 0 ? 1 + fp_varint_len(v) : 0;
}

/* protobuf-c's int32 varint: negative values are sign-extended to 64 bits. */
static inline uint64_t
fp_int32_wire(int32_t v)
{
    return (uint64_t)(int64_t)v;
}

static size_t
fp_info_plan(const Objmeta__ObjectInfo *oi, rpc_fastpack *fp)
{
    size_t n = 0;

    for (int i = 0; i < 5; i++) {
        const char *s = i == 0   ? oi->bucket
                        : i == 1 ? oi->key
                        : i == 2 ? oi->etag
                        : i == 3 ? oi->content_type
                                 : oi->metadata_json;
        fp->slen[i] = fp_strlen(s);
        if (fp->slen[i] > 0)
            n += fp_ld_size(fp->slen[i]);
    }
    n += fp_u64_size(oi->size) + fp_u64_size(oi->created_ms) + fp_u64_size(oi->modified_ms) +
         fp_u64_size(oi->version);
    return n;
}

static uint8_t *
fp_put_str(uint8_t *p, unsigned field, const char *s, size_t n)
{
    if (n == 0)
        return p;
    *p++ = TAG_LEN(field);
    p = fp_put_varint(p, n);
    memcpy(p, s, n);
    return p + n;
}

static uint8_t *
fp_put_u64(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return p;
    *p++ = TAG_VARINT(field);
    return fp_put_varint(p, v);
}

static uint8_t *
fp_info_write(uint8_t *p, const Objmeta__ObjectInfo *oi, const rpc_fastpack *fp)
{
    p = fp_put_str(p, 1, oi->bucket, fp->slen[0]);
    p = fp_put_str(p, 2, oi->key, fp->slen[1]);
    p = fp_put_u64(p, 3, oi->size);
    p = fp_put_str(p, 4, oi->etag, fp->slen[2]);
    p = fp_put_str(p, 5, oi->content_type, fp->slen[3]);
    p = fp_put_u64(p, 6, oi->created_ms);
    p = fp_put_u64(p, 7, oi->modified_ms);
    p = fp_put_u64(p, 8, oi->version);
    return fp_put_str(p, 9, oi->metadata_json, fp->slen[4]);
}

/* The info message of the body, or NULL; *data gets the Retrieve bytes. */
static const Objmeta__ObjectInfo *
fp_body_info(const Objmeta__Response *r, const ProtobufCMessage **body)
{
    switch (r->body_case) {
    case OBJMETA__RESPONSE__BODY_STORE:
        *body = r->store ? &r->store->base : NULL;
        return r->store ? r->store->info : NULL;
    case OBJMETA__RESPONSE__BODY_RETRIEVE:
        *body = r->retrieve ? &r->retrieve->base : NULL;
        return r->retrieve ? r->retrieve->info : NULL;
    case OBJMETA__RESPONSE__BODY_HEAD:
        *body = r->head ? &r->head->base : NULL;
        return r->head ? r->head->info : NULL;
    case OBJMETA__RESPONSE__BODY_EXISTS:
        *body = r->exists ? &r->exists->base : NULL;
        return NULL;
    case OBJMETA__RESPONSE__BODY_DELETE:
        *body = r->delete_ ? &r->delete_->base : NULL;
        return NULL;
    default:
        *body = NULL;
        return NULL;
    }
}

bool
rpc_fastpack_plan(const Objmeta__Response *r, rpc_fastpack *fp)
{
    const ProtobufCMessage *body = NULL;
    const Objmeta__ObjectInfo *oi;
    size_t n = 0;

    if (r->base.descriptor != &objmeta__response__descriptor || r->base.n_unknown_fields != 0)
        return false;
    switch (r->body_case) {
    case OBJMETA__RESPONSE__BODY__NOT_SET:
    case OBJMETA__RESPONSE__BODY_STORE:
    case OBJMETA__RESPONSE__BODY_RETRIEVE:
    case OBJMETA__RESPONSE__BODY_HEAD:
    case OBJMETA__RESPONSE__BODY_EXISTS:
    case OBJMETA__RESPONSE__BODY_DELETE:
        break;
    default:
        return false;
    }
    oi = fp_body_info(r, &body);
    if ((body != NULL && body->n_unknown_fields != 0) ||
        (oi != NULL && oi->base.n_unknown_fields != 0))
        return false;
    fp->msg_len = fp_strlen(r->message);
    n += fp_u64_size(r->id);
    if (r->status != 0)
        n += 1 + fp_varint_len(fp_int32_wire((int32_t)r->status));
    if (fp->msg_len > 0)
        n += fp_ld_size(fp->msg_len);
    fp->info_len = oi != NULL ? fp_info_plan(oi, fp) : 0;
    fp->body_len = 0;
    if (body != NULL) {
        size_t b = 0;
        switch (r->body_case) {
        case OBJMETA__RESPONSE__BODY_STORE:
        case OBJMETA__RESPONSE__BODY_HEAD:
            b = oi != NULL ? fp_ld_size(fp->info_len) : 0;
            break;
        case OBJMETA__RESPONSE__BODY_RETRIEVE:
            b = oi != NULL ? fp_ld_size(fp->info_len) : 0;
            if (r->retrieve->data.len > 0)
                b += fp_ld_size(r->retrieve->data.len);
            break;
        case OBJMETA__RESPONSE__BODY_EXISTS:
            b = r->exists->exists ? 2 : 0;
            break;
        case OBJMETA__RESPONSE__BODY_DELETE:
            b = fp_u64_size(r->delete_->version) + (r->delete_->existed ? 2 : 0);
            break;
        default:
            break;
        }
        fp->body_len = b;
        n += fp_ld_size(b); /* the body tags (10..14) take one byte */
    }
    fp->has_body = body != NULL;
    fp->total = n;
    return true;
}

size_t
rpc_fastpack_write(const Objmeta__Response *r, const rpc_fastpack *fp, uint8_t *out)
{
    uint8_t *p = out;

    p = fp_put_u64(p, 1, r->id);
    if (r->status != 0) {
        *p++ = TAG_VARINT(2);
        p = fp_put_varint(p, fp_int32_wire((int32_t)r->status));
    }
    p = fp_put_str(p, 3, r->message, fp->msg_len);
    if (fp->has_body) {
        const ProtobufCMessage *body = NULL;
        const Objmeta__ObjectInfo *oi = fp_body_info(r, &body);

        *p++ = TAG_LEN((unsigned)r->body_case);
        p = fp_put_varint(p, fp->body_len);
        if (oi != NULL) {
            *p++ = TAG_LEN(1);
            p = fp_put_varint(p, fp->info_len);
            p = fp_info_write(p, oi, fp);
        }
        switch (r->body_case) {
        case OBJMETA__RESPONSE__BODY_RETRIEVE:
            if (r->retrieve->data.len > 0) {
                *p++ = TAG_LEN(2);
                p = fp_put_varint(p, r->retrieve->data.len);
                memcpy(p, r->retrieve->data.data, r->retrieve->data.len);
                p += r->retrieve->data.len;
            }
            break;
        case OBJMETA__RESPONSE__BODY_EXISTS:
            if (r->exists->exists) {
                *p++ = TAG_VARINT(1);
                *p++ = 1;
            }
            break;
        case OBJMETA__RESPONSE__BODY_DELETE:
            p = fp_put_u64(p, 1, r->delete_->version);
            if (r->delete_->existed) {
                *p++ = TAG_VARINT(2);
                *p++ = 1;
            }
            break;
        default:
            break;
        }
    }
    return (size_t)(p - out);
}

size_t
rpc_response_packed_size(const Objmeta__Response *resp)
{
    rpc_fastpack fp;

    if (rpc_fastpack_plan(resp, &fp))
        return fp.total;
    return protobuf_c_message_get_packed_size(&resp->base);
}

uint8_t *
rpc_response_pack_alloc(const Objmeta__Response *resp, void *(*alloc)(void *arg, size_t n),
                        void *arg, size_t *n)
{
    rpc_fastpack fp;
    bool fast = rpc_fastpack_plan(resp, &fp);
    size_t len = fast ? fp.total : protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *out = alloc(arg, len);

    if (out == NULL)
        return NULL;
    *n = fast ? rpc_fastpack_write(resp, &fp, out) : protobuf_c_message_pack(&resp->base, out);
    return out;
}

size_t
rpc_response_pack(const Objmeta__Response *resp, uint8_t *out)
{
    rpc_fastpack fp;

    if (rpc_fastpack_plan(resp, &fp))
        return rpc_fastpack_write(resp, &fp, out);
    return protobuf_c_message_pack(&resp->base, out);
}

/* ------------------------------------------------------------------------ */
/* Requests: a decoder for the hot, canonical ones                            */

/*
 * rpc_fastunpack_request decodes a Request whose top level holds only id
 * (08), ring_epoch (10) and one Store (52), Retrieve (5a), Head (62) or
 * Exists (6a) body, each field at most once, with one-byte tags, varints of
 * at most 9 bytes, and strings of ASCII bytes only; inside the body only the
 * fields of that message, each at most once (and at most one condition).
 * Anything else -- another field or body, a repeated field (protobuf-c
 * merges or replaces those), a wrong wire type, a long varint, a byte over
 * 0x7f in a string (no UTF-8 questions), a truncated or overlong length --
 * is left to protobuf-c: *handled = false and the scratch bytes used so far
 * are reclaimed by the caller's rpc_scratch_done, as for a failed unpack.
 * For the inputs it takes, the result is field for field what
 * protobuf_c_message_unpack builds (the rpc-fastpack test checks it),
 * allocated from the same allocator.
 */

typedef struct fu_in {
    const uint8_t *p, *end;
} fu_in;

/* A varint of at most 9 bytes (10-byte ones go to protobuf-c). */
static bool
fu_varint(fu_in *in, uint64_t *v)
{
    uint64_t r = 0;

    for (unsigned i = 0; i < 9 && in->p < in->end; i++) {
        uint8_t b = *in->p++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* protobuf-c's bool: true if any payload bit of the varint is set. */
static bool
fu_bool(fu_in *in, protobuf_c_boolean *v)
{
    const uint8_t *start = in->p;
    uint64_t ignored;
    bool any = false;

    if (!fu_varint(in, &ignored))
        return false;
    for (const uint8_t *q = start; q < in->p; q++)
        any = any || (*q & 0x7f) != 0;
    *v = any;
    return true;
}

/* A length-delimited payload: *sub spans it, in moves past it. */
static bool
fu_len(fu_in *in, fu_in *sub)
{
    uint64_t n;

    if (!fu_varint(in, &n) || n > (uint64_t)(in->end - in->p))
        return false;
    sub->p = in->p;
    sub->end = in->p + n;
    in->p += n;
    return true;
}

static void *
fu_alloc(ProtobufCAllocator *pa, size_t n)
{
    return pa->alloc(pa->allocator_data, n);
}

/* A NUL-terminated copy of an ASCII string field. */
static bool
fu_str(fu_in *in, ProtobufCAllocator *pa, char **out)
{
    fu_in s;
    char *d;

    if (!fu_len(in, &s))
        return false;
    for (const uint8_t *q = s.p; q < s.end; q++)
        if (*q >= 0x80)
            return false;
    d = fu_alloc(pa, (size_t)(s.end - s.p) + 1);
    if (d == NULL)
        return false;
    if (s.end > s.p)
        memcpy(d, s.p, (size_t)(s.end - s.p));
    d[s.end - s.p] = '\0';
    *out = d;
    return true;
}

static bool
fu_bytes(fu_in *in, ProtobufCAllocator *pa, ProtobufCBinaryData *out)
{
    fu_in s;
    size_t n;

    if (!fu_len(in, &s))
        return false;
    n = (size_t)(s.end - s.p);
    out->len = n;
    out->data = NULL;
    if (n > 0) {
        out->data = fu_alloc(pa, n);
        if (out->data == NULL)
            return false;
        memcpy(out->data, s.p, n);
    }
    return true;
}

/* Retrieve, Head and Exists requests share the layout bucket (0a), key (12). */
static bool
fu_keyed(fu_in in, ProtobufCAllocator *pa, char **bucket, char **key)
{
    unsigned seen = 0;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned bit = tag == 0x0a ? 1u : tag == 0x12 ? 2u : 0u;
        if (bit == 0 || (seen & bit) || !fu_str(&in, pa, bit == 1 ? bucket : key))
            return false;
        seen |= bit;
    }
    return true;
}

static bool
fu_store(fu_in in, ProtobufCAllocator *pa, Objmeta__StoreRequest *r)
{
    unsigned seen = 0;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned field = tag >> 3;
        bool ok;
        if ((tag & 0x80) || field < 1 || field > 8 || (seen & (1u << field)))
            return false;
        seen |= 1u << field;
        if (field <= 5 && (tag & 7) != 2)
            return false;
        if (field >= 6 && (tag & 7) != 0)
            return false;
        switch (field) {
        case 1:
            ok = fu_str(&in, pa, &r->bucket);
            break;
        case 2:
            ok = fu_str(&in, pa, &r->key);
            break;
        case 3:
            ok = fu_bytes(&in, pa, &r->data);
            break;
        case 4:
            ok = fu_str(&in, pa, &r->metadata_json);
            break;
        case 5:
            ok = fu_str(&in, pa, &r->content_type);
            break;
        case 6:
            ok = !(seen & (1u << 7)) && fu_bool(&in, &r->if_absent);
            r->condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
            break;
        case 7:
            ok = !(seen & (1u << 6)) && fu_varint(&in, &r->if_version);
            r->condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
            break;
        default:
            ok = fu_varint(&in, &r->forced_version);
            r->forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

Objmeta__Request *
rpc_fastunpack_request(ProtobufCAllocator *pa, const uint8_t *data, size_t n, bool *handled)
{
    fu_in in = {data, data + n}, body = {NULL, NULL};
    Objmeta__Request *r;
    unsigned seen = 0;
    uint8_t body_tag = 0;

    *handled = false;
    r = fu_alloc(pa, sizeof(*r));
    if (r == NULL)
        return NULL;
    objmeta__request__init(r);
    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        switch (tag) {
        case 0x08:
        case 0x10:
            if (seen & (1u << (tag >> 3)))
                return NULL;
            seen |= 1u << (tag >> 3);
            if (!fu_varint(&in, tag == 0x08 ? &r->id : &r->ring_epoch))
                return NULL;
            break;
        case 0x52:
        case 0x5a:
        case 0x62:
        case 0x6a:
            if (body_tag != 0 || !fu_len(&in, &body))
                return NULL;
            body_tag = tag;
            break;
        default:
            return NULL;
        }
    }
    switch (body_tag) {
    case 0x52: {
        Objmeta__StoreRequest *b = fu_alloc(pa, sizeof(*b));
        if (b == NULL)
            return NULL;
        objmeta__store_request__init(b);
        if (!fu_store(body, pa, b))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_STORE;
        r->store = b;
        break;
    }
    case 0x5a: {
        Objmeta__RetrieveRequest *b = fu_alloc(pa, sizeof(*b));
        if (b == NULL)
            return NULL;
        objmeta__retrieve_request__init(b);
        if (!fu_keyed(body, pa, &b->bucket, &b->key))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        r->retrieve = b;
        break;
    }
    case 0x62: {
        Objmeta__HeadRequest *b = fu_alloc(pa, sizeof(*b));
        if (b == NULL)
            return NULL;
        objmeta__head_request__init(b);
        if (!fu_keyed(body, pa, &b->bucket, &b->key))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_HEAD;
        r->head = b;
        break;
    }
    case 0x6a: {
        Objmeta__ExistsRequest *b = fu_alloc(pa, sizeof(*b));
        if (b == NULL)
            return NULL;
        objmeta__exists_request__init(b);
        if (!fu_keyed(body, pa, &b->bucket, &b->key))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_EXISTS;
        r->exists = b;
        break;
    }
    default:
        return NULL; /* no body: protobuf-c (the server answers "unknown operation") */
    }
    *handled = true;
    return r;
}
