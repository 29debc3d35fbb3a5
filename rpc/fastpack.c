/*
 * rpc/fastpack.c -- hand-written encoders for the hot Responses, and a
 * decoder for the hot Requests (the server side; the client side, an
 * encoder for the hot Requests and a decoder for the hot Responses, is
 * rpc/fastpack_client.c; what both use is rpc/fastpack_int.h). Encoders: the
 * envelope (id, status, message, not_applied) with a Store, Retrieve, Head, Exists or
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

#include "rpc/fastpack_int.h"
#include "rpc/frame.h"
#include "rpc/rpc.h"

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
    if (r->not_applied)
        n += 2;
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
    if (r->not_applied) {
        *p++ = TAG_VARINT(4);
        *p++ = 1;
    }
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
 * (field 1), ring_epoch (2), request_id (3) and one Store (10), Retrieve (11), Head (12) or
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

/*
 * A Retrieve, Head or Exists request: bucket (1) and key (2), both strings,
 * at the offsets m's descriptor gives. A message that has grown other
 * fields is left to protobuf-c (false), so none is dropped here.
 */
static bool
fu_keyed(fu_in in, ProtobufCAllocator *pa, ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const ProtobufCFieldDescriptor *f = d->fields; /* sorted by number */
    unsigned seen = 0;

    if (d->n_fields != 2 || f[0].id != 1 || f[1].id != 2 || f[0].type != PROTOBUF_C_TYPE_STRING ||
        f[1].type != PROTOBUF_C_TYPE_STRING)
        return false;
    while (in.p < in.end) {
        uint8_t tag = *in.p++;
        unsigned bit = tag == TAG_LEN(1) ? 1u : tag == TAG_LEN(2) ? 2u : 0u;
        if (bit == 0 || (seen & bit) ||
            !fu_str(&in, pa, (char **)((uint8_t *)m + f[bit - 1].offset)))
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
        if (!fp_tag_once(tag, 8, &seen))
            return false;
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
    ProtobufCMessage *b;
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
        case TAG_LEN(RPC_REQUEST_ID_FIELD):
            if ((seen & (1u << RPC_REQUEST_ID_FIELD)) || !fu_str(&in, pa, &r->request_id))
                return NULL;
            seen |= 1u << RPC_REQUEST_ID_FIELD;
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
    if (body_tag == 0)
        return NULL; /* no body: protobuf-c (the server answers "unknown operation") */
    b = fu_body_new(pa, &r->base, TAG_FIELD(body_tag));
    if (b == NULL ||
        !(body_tag == TAG_STORE ? fu_store(body, pa, r->store) : fu_keyed(body, pa, b)))
        return NULL;
    *handled = true;
    return r;
}

/*
 * rpc_fastpeek_keyed reads the address of a Retrieve, Head or Exists request
 * in place, for a prefetch hint: the top level may hold id (1), ring_epoch
 * (2), request_id (3) and the body (11, 12, 13); the body its bucket (1) and key (2).
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
        } else if (tag == TAG_LEN(RPC_REQUEST_ID_FIELD)) {
            if (!fu_len(&in, &s))
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
