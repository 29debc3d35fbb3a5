/*
 * rpc/fastpack_client.c -- the client side of the hand-written codecs: an
 * encoder for the hot Requests and a decoder for the hot Responses (used by
 * the rpc client, so by objmeta_bench and the coordinator's shard client).
 * The rules they follow are protobuf-c's, as rpc/fastpack.c lists them; both
 * are compared with protobuf-c in tests/rpc/test_fastpack.c and, field by
 * field against the descriptors, in tests/rpc/test_fastpack_schema.c.
 */
#include <string.h>

#include "rpc/fastpack_int.h"
#include "rpc/frame.h"
#include "rpc/rpc.h"

/* ------------------------------------------------------------------------ */
/* Requests: an encoder for the hot ones (the client side)                    */

/*
 * rpc_fastpack_req_plan covers a Request (no unknown fields anywhere) with a
 * non-NULL Store, Retrieve, Head, Exists or Delete body, and writes what
 * protobuf-c writes for it: id (1), ring_epoch (2), request_id (3), then the body (10..14,
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
    fp->rid_len = fp_strlen(r->request_id);
    fp->total = fp_u64_size(r->id) + fp_u64_size(r->ring_epoch) + fp_ld_size(b) +
                (fp->rid_len > 0 ? fp_ld_size(fp->rid_len) : 0);
    return true;
}

size_t
rpc_fastpack_req_write(const Objmeta__Request *r, const rpc_fastpack_req *fp, uint8_t *out)
{
    uint8_t *p = out;
    const char *bucket, *key;

    p = fp_put_u64(p, 1, r->id);
    p = fp_put_u64(p, 2, r->ring_epoch);
    p = fp_put_str(p, RPC_REQUEST_ID_FIELD, r->request_id, fp->rid_len);
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
 * (field 1), status (2, one varint byte: 0..127), message (3), not_applied (4) and one Store
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
        bool ok;
        if (!fp_tag_once(tag, 9, &seen))
            return false;
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
    bool ok;

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
        case TAG_VARINT(4): /* not_applied */
            if ((seen & bit) || !fu_bool(&in, &r->not_applied))
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
    /* the body message, set as r's oneof member: r->store ... r->delete_ */
    if (body_tag != 0 && fu_body_new(pa, &r->base, TAG_FIELD(body_tag)) == NULL)
        return NULL;
    switch (body_tag) {
    case 0:
        ok = true;
        break;
    case TAG_STORE:
        ok = fu_info_body(body, pa, &r->store->info, NULL);
        break;
    case TAG_RETRIEVE:
        ok = fu_info_body(body, pa, &r->retrieve->info, &r->retrieve->data);
        break;
    case TAG_HEAD:
        ok = fu_info_body(body, pa, &r->head->info, NULL);
        break;
    case TAG_EXISTS:
        ok = fu_exists(body, r->exists);
        break;
    default:
        ok = fu_delete(body, r->delete_);
        break;
    }
    if (!ok)
        return NULL;
    *handled = true;
    return r;
}
