/*
 * rpc/frame.c -- the frame codec: 4-byte big-endian length + one protobuf
 * message (rpc/FRAMING.md). See frame.h for the two decoder flavours.
 *
 * The byte-stream decoder keeps received bytes in one om_buf and a read
 * offset. Frames are handed out as slices into that buffer; the consumed
 * prefix is discarded lazily at the next feed (a memmove of the partial tail
 * only, so feeding one byte at a time stays linear in the stream size once
 * the buffer has grown to a frame).
 */
#include <event2/buffer.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "util/coding.h"

om_status
rpc_frame_check_len(uint32_t len, uint32_t max_frame)
{
    if (len > max_frame)
        return OM_ERR(OM_E_CORRUPT);
    return OM_OK;
}

void
rpc_frame_dec_init(rpc_frame_dec *d, uint32_t max_frame)
{
    d->buf = OM_BUF_INIT;
    d->off = 0;
    d->max_frame = max_frame;
    d->bad_len = 0;
    d->err = OM_OK;
}

void
rpc_frame_dec_fini(rpc_frame_dec *d)
{
    om_buf_free(&d->buf);
    d->off = 0;
}

om_status
rpc_frame_dec_feed(rpc_frame_dec *d, const void *p, size_t n)
{
    if (d->err != OM_OK)
        return d->err;
    if (d->off > 0) {
        /* Drop the frames already handed out; their slices die here (see header). */
        size_t rest = d->buf.n - d->off;
        memmove(d->buf.p, d->buf.p + d->off, rest);
        d->buf.n = rest;
        d->off = 0;
    }
    if (n == 0)
        return OM_OK;
    om_status st = om_buf_append(&d->buf, p, n);
    if (st != OM_OK)
        d->err = st;
    return st;
}

om_status
rpc_frame_dec_next(rpc_frame_dec *d, om_slice *payload)
{
    if (d->err != OM_OK)
        return d->err;
    size_t avail = d->buf.n - d->off;
    if (avail < RPC_FRAME_HEADER_LEN)
        return OM_E_NOTFOUND;
    const uint8_t *h = d->buf.p + d->off;
    uint32_t len = om_get_be32(h);
    if (rpc_frame_check_len(len, d->max_frame) != OM_OK) {
        d->bad_len = len;
        d->err = OM_E_CORRUPT;
        return d->err;
    }
    if (avail - RPC_FRAME_HEADER_LEN < len)
        return OM_E_NOTFOUND;
    *payload = om_slice_make(h + RPC_FRAME_HEADER_LEN, len);
    d->off += RPC_FRAME_HEADER_LEN + (size_t)len;
    return OM_OK;
}

size_t
rpc_frame_dec_pending(const rpc_frame_dec *d)
{
    return d->buf.n - d->off;
}

om_status
rpc_frame_evb_peek(struct evbuffer *in, uint32_t max_frame, uint32_t *len)
{
    size_t avail = evbuffer_get_length(in);
    uint8_t h[RPC_FRAME_HEADER_LEN];

    if (avail < RPC_FRAME_HEADER_LEN)
        return OM_E_NOTFOUND;
    if (evbuffer_copyout(in, h, sizeof(h)) != (ev_ssize_t)sizeof(h))
        return OM_ERR(OM_E_INTERNAL);
    uint32_t n = om_get_be32(h);
    if (rpc_frame_check_len(n, max_frame) != OM_OK) {
        *len = n;
        return OM_E_CORRUPT;
    }
    if (avail - RPC_FRAME_HEADER_LEN < n)
        return OM_E_NOTFOUND;
    *len = n;
    return OM_OK;
}

om_status
rpc_frame_evb_pullup(struct evbuffer *in, uint32_t len, om_slice *payload)
{
    size_t total = RPC_FRAME_HEADER_LEN + (size_t)len;
    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)total);

    if (p == NULL)
        return OM_ERR(OM_E_NOMEM);
    *payload = om_slice_make(p + RPC_FRAME_HEADER_LEN, len);
    return OM_OK;
}

void
rpc_frame_evb_drain(struct evbuffer *in, uint32_t len)
{
    evbuffer_drain(in, RPC_FRAME_HEADER_LEN + (size_t)len);
}

/* The payload size of msg, or an error if it would not fit a frame. */
static om_status
frame_packed_size(const ProtobufCMessage *msg, uint32_t max_frame, size_t *n)
{
    size_t sz = protobuf_c_message_get_packed_size(msg);

    if (sz > max_frame)
        return OM_ERR(OM_E_INVALID);
    *n = sz;
    return OM_OK;
}

/*
 * A message to encode: a Response or Request a hand-written encoder covers
 * (kind set, its plan filled), or anything else for protobuf-c.
 */
typedef enum frame_kind { FRAME_PB, FRAME_RESP, FRAME_REQ } frame_kind;
typedef struct frame_msg {
    const ProtobufCMessage *msg;
    frame_kind kind;
    union {
        rpc_fastpack resp;
        rpc_fastpack_req req;
    } plan;
} frame_msg;

static om_status
frame_msg_size(frame_msg *m, const ProtobufCMessage *msg, uint32_t max_frame, size_t *n)
{
    size_t total;

    m->msg = msg;
    if (msg->descriptor == &objmeta__response__descriptor &&
        rpc_fastpack_plan((const Objmeta__Response *)msg, &m->plan.resp)) {
        m->kind = FRAME_RESP;
        total = m->plan.resp.total;
    } else if (msg->descriptor == &objmeta__request__descriptor &&
               rpc_fastpack_req_plan((const Objmeta__Request *)msg, &m->plan.req)) {
        m->kind = FRAME_REQ;
        total = m->plan.req.total;
    } else {
        m->kind = FRAME_PB;
        return frame_packed_size(msg, max_frame, n);
    }
    if (total > max_frame)
        return OM_ERR(OM_E_INVALID);
    *n = total;
    return OM_OK;
}

static size_t
frame_msg_pack(const frame_msg *m, uint8_t *out)
{
    switch (m->kind) {
    case FRAME_RESP:
        return rpc_fastpack_write((const Objmeta__Response *)m->msg, &m->plan.resp, out);
    case FRAME_REQ:
        return rpc_fastpack_req_write((const Objmeta__Request *)m->msg, &m->plan.req, out);
    default:
        return protobuf_c_message_pack(m->msg, out);
    }
}

om_status
rpc_frame_encode(om_buf *out, const ProtobufCMessage *msg, uint32_t max_frame)
{
    size_t n = 0;
    frame_msg m;

    OM_TRY(frame_msg_size(&m, msg, max_frame, &n));
    OM_TRY(om_buf_reserve(out, RPC_FRAME_HEADER_LEN + n));
    uint8_t *p = out->p + out->n;
    om_put_be32(p, (uint32_t)n);
    size_t packed = frame_msg_pack(&m, p + RPC_FRAME_HEADER_LEN);
    if (packed != n)
        return OM_ERR(OM_E_INTERNAL);
    out->n += RPC_FRAME_HEADER_LEN + n;
    return OM_OK;
}

om_status
rpc_frame_encode_evb(struct evbuffer *out, const ProtobufCMessage *msg, uint32_t max_frame,
                     size_t *frame_len)
{
    size_t n = 0;
    struct evbuffer_iovec v;
    frame_msg m;

    OM_TRY(frame_msg_size(&m, msg, max_frame, &n));
    size_t total = RPC_FRAME_HEADER_LEN + n;
    /* One iovec: libevent then guarantees a single contiguous extent. */
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) != 1 || v.iov_len < total)
        return OM_ERR(OM_E_NOMEM);
    uint8_t *p = v.iov_base;
    om_put_be32(p, (uint32_t)n);
    if (frame_msg_pack(&m, p + RPC_FRAME_HEADER_LEN) != n)
        return OM_ERR(OM_E_INTERNAL);
    v.iov_len = total;
    if (evbuffer_commit_space(out, &v, 1) != 0)
        return OM_ERR(OM_E_NOMEM);
    if (frame_len != NULL)
        *frame_len = total;
    return OM_OK;
}

/* ------------------------------------------------------------------------ */
/* Id rewrite                                                                 */

/*
 * The end of the top-level field starting at p (its tag included), or NULL
 * when malformed; *field is its field number.
 */
static const uint8_t *
frame_skip_field(const uint8_t *p, const uint8_t *end, uint64_t *field)
{
    uint64_t tag = 0, v = 0;

    p = om_decode_varint64(p, end, &tag);
    if (p == NULL || (tag >> 3) == 0)
        return NULL;
    *field = tag >> 3;
    switch (tag & 7) {
    case 0: /* varint */
        return om_decode_varint64(p, end, &v);
    case 1: /* 64-bit */
        return (size_t)(end - p) >= 8 ? p + 8 : NULL;
    case 2: /* length-delimited */
        p = om_decode_varint64(p, end, &v);
        if (p == NULL || v > (uint64_t)(end - p))
            return NULL;
        return p + v;
    case 5: /* 32-bit */
        return (size_t)(end - p) >= 4 ? p + 4 : NULL;
    default: /* groups (3, 4) are not used by objmeta; 6, 7 do not exist */
        return NULL;
    }
}

om_status
rpc_frame_id_rewrite_len(const uint8_t *p, size_t n, uint64_t id, size_t *out_len)
{
    const uint8_t *end = p + n;
    size_t len = id != 0 ? 1 + om_varint_len(id) : 0;

    while (p < end) {
        uint64_t field = 0;
        const uint8_t *next = frame_skip_field(p, end, &field);
        if (next == NULL)
            return OM_ERR(OM_E_CORRUPT);
        if (field != 1)
            len += (size_t)(next - p);
        p = next;
    }
    *out_len = len;
    return OM_OK;
}

size_t
rpc_frame_id_rewrite(const uint8_t *p, size_t n, uint64_t id, uint8_t *dst)
{
    const uint8_t *end = p + n;
    uint8_t *d = dst;

    if (id != 0) {
        *d++ = 0x08; /* field 1, varint */
        d = om_encode_varint64(d, id);
    }
    while (p < end) {
        uint64_t field = 0;
        const uint8_t *next = frame_skip_field(p, end, &field);
        if (next == NULL)
            break; /* rpc_frame_id_rewrite_len rejected this already */
        if (field != 1) {
            memcpy(d, p, (size_t)(next - p));
            d += next - p;
        }
        p = next;
    }
    return (size_t)(d - dst);
}
