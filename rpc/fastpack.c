/*
 * rpc/fastpack.c -- hand-written encoders for the hot Responses, and a
 * decoder for the hot Requests (the server side); after those, an encoder
 * for the hot Requests and a decoder for the hot Responses (the client
 * side, at the end of the file). Encoders: the
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

/*
 * Tags: field number << 3 | wire type. Every field coded here has a number
 * below 16, so each tag is one byte; the bodies' numbers are the generated
 * oneof cases (OBJMETA__REQUEST__BODY_STORE is 10, the field number), the
 * other numbers are those of proto/objmeta.proto, named where they are used.
 * tests/rpc/test_fastpack_schema.c checks every field against the descriptors.
 */
#define TAG(f, wire) ((uint8_t)(((unsigned)(f) << 3) | (unsigned)(wire)))
#define TAG_VARINT(f) TAG(f, PROTOBUF_C_WIRE_TYPE_VARINT)
#define TAG_LEN(f) TAG(f, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
#define TAG_FIELD(tag) ((unsigned)(tag) >> 3)

/* The hot bodies' tags (Request and Response use the same numbers, 10..14). */
#define TAG_STORE TAG_LEN(OBJMETA__REQUEST__BODY_STORE)
#define TAG_RETRIEVE TAG_LEN(OBJMETA__REQUEST__BODY_RETRIEVE)
#define TAG_HEAD TAG_LEN(OBJMETA__REQUEST__BODY_HEAD)
#define TAG_EXISTS TAG_LEN(OBJMETA__REQUEST__BODY_EXISTS)
#define TAG_DELETE TAG_LEN(OBJMETA__REQUEST__BODY_DELETE)

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
 * (field 1), ring_epoch (2) and one Store (10), Retrieve (11), Head (12) or
 * Exists (13) body, each field at most once, with one-byte tags, varints of
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
static inline bool
fu_varint(fu_in *in, uint64_t *v)
{
    const uint8_t *p = in->p;
    size_t lim = (size_t)(in->end - p);
    uint64_t r = 0;

    if (lim > 9)
        lim = 9;
    for (size_t i = 0; i < lim; i++) {
        uint64_t b = p[i];
        r |= (b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *v = r;
            in->p = p + i + 1;
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

/* An initialised (empty) message of type d from pa, or NULL. */
static void *
fu_msg_new(ProtobufCAllocator *pa, const ProtobufCMessageDescriptor *d)
{
    void *m = fu_alloc(pa, d->sizeof_message);

    if (m != NULL)
        protobuf_c_message_init(d, m);
    return m;
}

/* No byte over 0x7f in p[0..n) (eight bytes at a time). */
static inline bool
fu_ascii(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= p[i];
    return (acc & 0x8080808080808080ull) == 0;
}

/* A NUL-terminated copy of an ASCII string field. */
static bool
fu_str(fu_in *in, ProtobufCAllocator *pa, char **out)
{
    fu_in s;
    char *d;

    if (!fu_len(in, &s) || !fu_ascii(s.p, (size_t)(s.end - s.p)))
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

/* Retrieve, Head and Exists requests share the layout bucket (1), key (2). */
static bool
fu_keyed(fu_in in, ProtobufCAllocator *pa, char **bucket, char **key)
{
    unsigned seen = 0;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned bit = tag == TAG_LEN(1) ? 1u : tag == TAG_LEN(2) ? 2u : 0u;
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
        unsigned field = TAG_FIELD(tag);
        bool ok;
        if ((tag & 0x80) || field < 1 || field > 8 || (seen & (1u << field)))
            return false;
        seen |= 1u << field;
        /* 1..5 bucket, key, data, metadata_json, content_type; 6..8 varints */
        if (tag != (field <= 5 ? TAG_LEN(field) : TAG_VARINT(field)))
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
    r = fu_msg_new(pa, &objmeta__request__descriptor);
    if (r == NULL)
        return NULL;
    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        switch (tag) {
        case TAG_VARINT(1): /* id */
        case TAG_VARINT(2): /* ring_epoch */
            if (seen & (1u << TAG_FIELD(tag)))
                return NULL;
            seen |= 1u << TAG_FIELD(tag);
            if (!fu_varint(&in, tag == TAG_VARINT(1) ? &r->id : &r->ring_epoch))
                return NULL;
            break;
        case TAG_STORE:
        case TAG_RETRIEVE:
        case TAG_HEAD:
        case TAG_EXISTS:
            if (body_tag != 0 || !fu_len(&in, &body))
                return NULL;
            body_tag = tag;
            break;
        default:
            return NULL;
        }
    }
    switch (body_tag) {
    case TAG_STORE: {
        Objmeta__StoreRequest *b = fu_msg_new(pa, &objmeta__store_request__descriptor);
        if (b == NULL || !fu_store(body, pa, b))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_STORE;
        r->store = b;
        break;
    }
    case TAG_RETRIEVE: {
        Objmeta__RetrieveRequest *b = fu_msg_new(pa, &objmeta__retrieve_request__descriptor);
        if (b == NULL || !fu_keyed(body, pa, &b->bucket, &b->key))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        r->retrieve = b;
        break;
    }
    case TAG_HEAD: {
        Objmeta__HeadRequest *b = fu_msg_new(pa, &objmeta__head_request__descriptor);
        if (b == NULL || !fu_keyed(body, pa, &b->bucket, &b->key))
            return NULL;
        r->body_case = OBJMETA__REQUEST__BODY_HEAD;
        r->head = b;
        break;
    }
    case TAG_EXISTS: {
        Objmeta__ExistsRequest *b = fu_msg_new(pa, &objmeta__exists_request__descriptor);
        if (b == NULL || !fu_keyed(body, pa, &b->bucket, &b->key))
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

/*
 * rpc_fastpeek_keyed reads the address of a Retrieve, Head or Exists request
 * in place, for a prefetch hint: the top level may hold id (1), ring_epoch
 * (2) and the body (11, 12, 13); the body its bucket (1) and key (2).
 * It allocates nothing and checks only what it needs to stay inside the
 * bytes: whatever it returns is a hint, and the request is decoded (and
 * judged) as usual when it is dispatched.
 */
bool
rpc_fastpeek_keyed(const uint8_t *data, size_t n, om_slice *bucket, om_slice *key)
{
    fu_in in = {data, data + n}, body = {NULL, NULL}, s;
    uint64_t ignored;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        if (tag == TAG_VARINT(1) || tag == TAG_VARINT(2)) { /* id, ring_epoch */
            if (!fu_varint(&in, &ignored))
                return false;
        } else if (tag == TAG_RETRIEVE || tag == TAG_HEAD || tag == TAG_EXISTS) {
            if (!fu_len(&in, &body))
                return false;
        } else {
            return false;
        }
    }
    if (body.p == NULL)
        return false;
    *bucket = om_slice_make(NULL, 0);
    *key = om_slice_make(NULL, 0);
    while (body.p < body.end) {
        uint8_t tag = *body.p++;
        if ((tag != TAG_LEN(1) && tag != TAG_LEN(2)) || !fu_len(&body, &s)) /* bucket, key */
            return false;
        *(tag == TAG_LEN(1) ? bucket : key) = om_slice_make(s.p, (size_t)(s.end - s.p));
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Requests: an encoder for the hot ones (the client side)                    */

/*
 * rpc_fastpack_req_plan covers a Request (no unknown fields anywhere) with a
 * non-NULL Store, Retrieve, Head, Exists or Delete body, and writes what
 * protobuf-c writes for it: id (1), ring_epoch (2), then the body (10..14,
 * one-byte tags). Oneof members of the bodies (Store's if_absent /
 * if_version / forced_version, Delete's if_version / forced_version) are
 * sent whenever their case names them, zero or not, as protobuf-c does.
 */

/* Bytes of a varint field with a one-byte tag, sent even when 0 (a oneof member). */
static inline size_t
fp_u64_always(uint64_t v)
{
    return 1 + fp_varint_len(v);
}

/* bucket (1), key (2): the first two fields of every hot request body. */
static size_t
fpr_keyed_plan(const char *bucket, const char *key, rpc_fastpack_req *fp)
{
    size_t n = 0;

    fp->slen[0] = fp_strlen(bucket);
    fp->slen[1] = fp_strlen(key);
    if (fp->slen[0] > 0)
        n += fp_ld_size(fp->slen[0]);
    if (fp->slen[1] > 0)
        n += fp_ld_size(fp->slen[1]);
    return n;
}

bool
rpc_fastpack_req_plan(const Objmeta__Request *r, rpc_fastpack_req *fp)
{
    const ProtobufCMessage *body;
    size_t b = 0;

    if (r->base.descriptor != &objmeta__request__descriptor || r->base.n_unknown_fields != 0)
        return false;
    switch (r->body_case) {
    case OBJMETA__REQUEST__BODY_STORE: {
        const Objmeta__StoreRequest *s = r->store;
        if (s == NULL)
            return false;
        body = &s->base;
        b = fpr_keyed_plan(s->bucket, s->key, fp);
        fp->slen[2] = fp_strlen(s->metadata_json);
        fp->slen[3] = fp_strlen(s->content_type);
        if (s->data.len > 0)
            b += fp_ld_size(s->data.len);
        if (fp->slen[2] > 0)
            b += fp_ld_size(fp->slen[2]);
        if (fp->slen[3] > 0)
            b += fp_ld_size(fp->slen[3]);
        if (s->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT)
            b += 2;
        else if (s->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION)
            b += fp_u64_always(s->if_version);
        if (s->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION)
            b += fp_u64_always(s->forced_version);
        break;
    }
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        if (r->retrieve == NULL)
            return false;
        body = &r->retrieve->base;
        b = fpr_keyed_plan(r->retrieve->bucket, r->retrieve->key, fp);
        break;
    case OBJMETA__REQUEST__BODY_HEAD:
        if (r->head == NULL)
            return false;
        body = &r->head->base;
        b = fpr_keyed_plan(r->head->bucket, r->head->key, fp);
        break;
    case OBJMETA__REQUEST__BODY_EXISTS:
        if (r->exists == NULL)
            return false;
        body = &r->exists->base;
        b = fpr_keyed_plan(r->exists->bucket, r->exists->key, fp);
        break;
    case OBJMETA__REQUEST__BODY_DELETE: {
        const Objmeta__DeleteRequest *d = r->delete_;
        if (d == NULL)
            return false;
        body = &d->base;
        b = fpr_keyed_plan(d->bucket, d->key, fp);
        if (d->condition_case == OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION)
            b += fp_u64_always(d->if_version);
        if (d->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION)
            b += fp_u64_always(d->forced_version);
        break;
    }
    default:
        return false;
    }
    if (body->n_unknown_fields != 0)
        return false;
    fp->body_len = b;
    fp->total = fp_u64_size(r->id) + fp_u64_size(r->ring_epoch) + fp_ld_size(b);
    return true;
}

size_t
rpc_fastpack_req_write(const Objmeta__Request *r, const rpc_fastpack_req *fp, uint8_t *out)
{
    uint8_t *p = out;
    const char *bucket, *key;

    p = fp_put_u64(p, 1, r->id);
    p = fp_put_u64(p, 2, r->ring_epoch);
    *p++ = TAG_LEN((unsigned)r->body_case);
    p = fp_put_varint(p, fp->body_len);
    switch (r->body_case) {
    case OBJMETA__REQUEST__BODY_STORE: {
        const Objmeta__StoreRequest *s = r->store;
        p = fp_put_str(p, 1, s->bucket, fp->slen[0]);
        p = fp_put_str(p, 2, s->key, fp->slen[1]);
        if (s->data.len > 0) {
            *p++ = TAG_LEN(3);
            p = fp_put_varint(p, s->data.len);
            memcpy(p, s->data.data, s->data.len);
            p += s->data.len;
        }
        p = fp_put_str(p, 4, s->metadata_json, fp->slen[2]);
        p = fp_put_str(p, 5, s->content_type, fp->slen[3]);
        if (s->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT) {
            *p++ = TAG_VARINT(6);
            *p++ = s->if_absent ? 1 : 0;
        } else if (s->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION) {
            *p++ = TAG_VARINT(7);
            p = fp_put_varint(p, s->if_version);
        }
        if (s->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION) {
            *p++ = TAG_VARINT(8);
            p = fp_put_varint(p, s->forced_version);
        }
        return (size_t)(p - out);
    }
    case OBJMETA__REQUEST__BODY_DELETE: {
        const Objmeta__DeleteRequest *d = r->delete_;
        p = fp_put_str(p, 1, d->bucket, fp->slen[0]);
        p = fp_put_str(p, 2, d->key, fp->slen[1]);
        if (d->condition_case == OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION) {
            *p++ = TAG_VARINT(3);
            p = fp_put_varint(p, d->if_version);
        }
        if (d->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION) {
            *p++ = TAG_VARINT(4);
            p = fp_put_varint(p, d->forced_version);
        }
        return (size_t)(p - out);
    }
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        bucket = r->retrieve->bucket;
        key = r->retrieve->key;
        break;
    case OBJMETA__REQUEST__BODY_HEAD:
        bucket = r->head->bucket;
        key = r->head->key;
        break;
    default: /* EXISTS: the plan admits nothing else */
        bucket = r->exists->bucket;
        key = r->exists->key;
        break;
    }
    p = fp_put_str(p, 1, bucket, fp->slen[0]);
    p = fp_put_str(p, 2, key, fp->slen[1]);
    return (size_t)(p - out);
}

size_t
rpc_request_packed_size(const Objmeta__Request *req)
{
    rpc_fastpack_req fp;

    if (rpc_fastpack_req_plan(req, &fp))
        return fp.total;
    return protobuf_c_message_get_packed_size(&req->base);
}

/* ------------------------------------------------------------------------ */
/* Responses: a decoder for the hot, canonical ones (the client side)         */

/*
 * rpc_fastunpack_response takes a Response whose top level holds only id
 * (field 1), status (2, one varint byte: 0..127), message (3) and one Store
 * (10), Retrieve (11), Head (12), Exists (13) or Delete (14) body, each at
 * most once; inside the body only that message's fields, each at most once,
 * and inside an ObjectInfo (1) its nine fields, each at most once. The same
 * limits as for requests apply (one-byte tags, varints of at most 9 bytes,
 * ASCII strings); anything else is left to protobuf-c.
 */

static bool
fu_info(fu_in in, ProtobufCAllocator *pa, Objmeta__ObjectInfo *oi)
{
    unsigned seen = 0;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned field = TAG_FIELD(tag);
        bool ok;
        if ((tag & 0x80) || field < 1 || field > 9 || (seen & (1u << field)))
            return false;
        seen |= 1u << field;
        switch (tag) {
        case TAG_LEN(1):
            ok = fu_str(&in, pa, &oi->bucket);
            break;
        case TAG_LEN(2):
            ok = fu_str(&in, pa, &oi->key);
            break;
        case TAG_VARINT(3):
            ok = fu_varint(&in, &oi->size);
            break;
        case TAG_LEN(4):
            ok = fu_str(&in, pa, &oi->etag);
            break;
        case TAG_LEN(5):
            ok = fu_str(&in, pa, &oi->content_type);
            break;
        case TAG_VARINT(6):
            ok = fu_varint(&in, &oi->created_ms);
            break;
        case TAG_VARINT(7):
            ok = fu_varint(&in, &oi->modified_ms);
            break;
        case TAG_VARINT(8):
            ok = fu_varint(&in, &oi->version);
            break;
        case TAG_LEN(9):
            ok = fu_str(&in, pa, &oi->metadata_json);
            break;
        default:
            ok = false; /* wrong wire type */
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The info (1) and, for Retrieve, data (2) of a body; other fields decline. */
static bool
fu_info_body(fu_in in, ProtobufCAllocator *pa, Objmeta__ObjectInfo **info,
             ProtobufCBinaryData *data)
{
    unsigned seen = 0;

    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        if (tag == TAG_LEN(1) && !(seen & 1u)) {
            fu_in sub;
            Objmeta__ObjectInfo *oi;
            seen |= 1u;
            if (!fu_len(&in, &sub) ||
                (oi = fu_msg_new(pa, &objmeta__object_info__descriptor)) == NULL ||
                !fu_info(sub, pa, oi))
                return false;
            *info = oi;
        } else if (tag == TAG_LEN(2) && data != NULL && !(seen & 2u)) {
            seen |= 2u;
            if (!fu_bytes(&in, pa, data))
                return false;
        } else {
            return false;
        }
    }
    return true;
}

static bool
fu_exists(fu_in in, Objmeta__ExistsResponse *e)
{
    if (in.p < in.end && *in.p == TAG_VARINT(1)) { /* exists */
        in.p++;
        if (!fu_bool(&in, &e->exists))
            return false;
    }
    return in.p == in.end;
}

static bool
fu_delete(fu_in in, Objmeta__DeleteResponse *d)
{
    if (in.p < in.end && *in.p == TAG_VARINT(1)) { /* version */
        in.p++;
        if (!fu_varint(&in, &d->version))
            return false;
    }
    if (in.p < in.end && *in.p == TAG_VARINT(2)) { /* existed */
        in.p++;
        if (!fu_bool(&in, &d->existed))
            return false;
    }
    return in.p == in.end;
}

Objmeta__Response *
rpc_fastunpack_response(ProtobufCAllocator *pa, const uint8_t *data, size_t n, bool *handled)
{
    fu_in in = {data, data + n}, body = {NULL, NULL};
    Objmeta__Response *r;
    unsigned seen = 0;
    uint8_t body_tag = 0;

    *handled = false;
    r = fu_msg_new(pa, &objmeta__response__descriptor);
    if (r == NULL)
        return NULL;
    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned bit = 1u << (TAG_FIELD(tag) & 7);
        switch (tag) {
        case TAG_VARINT(1): /* id */
            if ((seen & bit) || !fu_varint(&in, &r->id))
                return NULL;
            break;
        case TAG_VARINT(2): /* status */
            if ((seen & bit) || in.p == in.end || *in.p >= 0x80)
                return NULL;
            r->status = (Objmeta__Status)*in.p++;
            break;
        case TAG_LEN(3): /* message */
            if ((seen & bit) || !fu_str(&in, pa, &r->message))
                return NULL;
            break;
        case TAG_STORE:
        case TAG_RETRIEVE:
        case TAG_HEAD:
        case TAG_EXISTS:
        case TAG_DELETE:
            if (body_tag != 0 || !fu_len(&in, &body))
                return NULL;
            body_tag = tag;
            bit = 0;
            break;
        default:
            return NULL;
        }
        seen |= bit;
    }
    switch (body_tag) {
    case 0:
        break;
    case TAG_STORE: {
        Objmeta__StoreResponse *b = fu_msg_new(pa, &objmeta__store_response__descriptor);
        if (b == NULL || !fu_info_body(body, pa, &b->info, NULL))
            return NULL;
        r->body_case = OBJMETA__RESPONSE__BODY_STORE;
        r->store = b;
        break;
    }
    case TAG_RETRIEVE: {
        Objmeta__RetrieveResponse *b = fu_msg_new(pa, &objmeta__retrieve_response__descriptor);
        if (b == NULL || !fu_info_body(body, pa, &b->info, &b->data))
            return NULL;
        r->body_case = OBJMETA__RESPONSE__BODY_RETRIEVE;
        r->retrieve = b;
        break;
    }
    case TAG_HEAD: {
        Objmeta__HeadResponse *b = fu_msg_new(pa, &objmeta__head_response__descriptor);
        if (b == NULL || !fu_info_body(body, pa, &b->info, NULL))
            return NULL;
        r->body_case = OBJMETA__RESPONSE__BODY_HEAD;
        r->head = b;
        break;
    }
    case TAG_EXISTS: {
        Objmeta__ExistsResponse *b = fu_msg_new(pa, &objmeta__exists_response__descriptor);
        if (b == NULL || !fu_exists(body, b))
            return NULL;
        r->body_case = OBJMETA__RESPONSE__BODY_EXISTS;
        r->exists = b;
        break;
    }
    default: {
        Objmeta__DeleteResponse *b = fu_msg_new(pa, &objmeta__delete_response__descriptor);
        if (b == NULL || !fu_delete(body, b))
            return NULL;
        r->body_case = OBJMETA__RESPONSE__BODY_DELETE;
        r->delete_ = b;
        break;
    }
    }
    *handled = true;
    return r;
}
