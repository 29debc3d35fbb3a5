/*
 * rpc/frame.h -- the one frame codec (private to rpc/ and its tests).
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of one
 * protobuf message (rpc/FRAMING.md). Two decoders share one header check:
 *
 *   - rpc_frame_dec: a byte-stream decoder for any source. Feed it bytes in
 *     any split (down to one byte at a time); it yields whole frames. Used by
 *     the tests and the fuzz target, and by anyone reading a plain socket.
 *   - rpc_frame_evb_*: the same rules applied in place to a libevent evbuffer
 *     (server and client read their bufferevent input with it, without
 *     copying the bytes out first).
 *
 * A header announcing more than max_frame bytes is an error that sticks: the
 * stream cannot be resynchronised, so the caller closes the connection (after
 * sending an error response, on the server).
 *
 * Encoders pack a protobuf-c message behind its header, into an om_buf or
 * straight into an evbuffer's reserved space.
 *
 * Thread-safety: a decoder belongs to one thread; encoders are reentrant.
 */
#ifndef OM_RPC_FRAME_H
#define OM_RPC_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objmeta.pb-c.h"
#include "util/slice.h"
#include "util/status.h"

struct evbuffer;

/*
 * rpc_frame_check_len -- validate an announced length.
 * Returns: OM_OK; OM_E_CORRUPT when len > max_frame.
 */
om_status rpc_frame_check_len(uint32_t len, uint32_t max_frame);

typedef struct rpc_frame_dec {
    om_buf buf;         /* received bytes not yet returned as frames */
    size_t off;         /* bytes of buf already consumed (frames handed out) */
    uint32_t max_frame; /* largest accepted payload */
    uint32_t bad_len;   /* the oversize length that broke the stream (when err) */
    om_status err;      /* first error; sticky */
} rpc_frame_dec;

void rpc_frame_dec_init(rpc_frame_dec *d, uint32_t max_frame);
void rpc_frame_dec_fini(rpc_frame_dec *d);

/*
 * rpc_frame_dec_feed -- append received bytes.
 * Returns: OM_OK; OM_E_NOMEM; or the sticky error. Invalidates slices
 * returned by rpc_frame_dec_next.
 */
om_status rpc_frame_dec_feed(rpc_frame_dec *d, const void *p, size_t n);

/*
 * rpc_frame_dec_next -- take the next whole frame.
 * Returns: OM_OK and *payload (the message bytes, borrowed until the next
 *          feed/next/fini); OM_E_NOTFOUND when no whole frame is buffered
 *          yet; OM_E_CORRUPT (sticky) when a header exceeds max_frame.
 */
om_status rpc_frame_dec_next(rpc_frame_dec *d, om_slice *payload);

/* Bytes buffered that do not yet form a whole frame (non-zero at EOF = truncated). */
size_t rpc_frame_dec_pending(const rpc_frame_dec *d);

/*
 * rpc_frame_evb_peek -- look at the front of an evbuffer.
 * Returns: OM_OK and *len when a whole frame (header + len bytes) is there;
 *          OM_E_NOTFOUND when more bytes are needed; OM_E_CORRUPT when the
 *          header exceeds max_frame (*len is then the announced length).
 */
om_status rpc_frame_evb_peek(struct evbuffer *in, uint32_t max_frame, uint32_t *len);

/*
 * rpc_frame_evb_pullup -- make the whole frame of length len (as returned by
 * rpc_frame_evb_peek) contiguous and return its payload, borrowed until
 * rpc_frame_evb_drain. Returns OM_OK or OM_E_NOMEM.
 */
om_status rpc_frame_evb_pullup(struct evbuffer *in, uint32_t len, om_slice *payload);

/* Remove the frame of payload length len from the front of the evbuffer. */
void rpc_frame_evb_drain(struct evbuffer *in, uint32_t len);

/*
 * rpc_frame_encode -- append header + packed msg to out.
 * Returns: OM_OK; OM_E_INVALID if the packed message exceeds max_frame;
 *          OM_E_NOMEM. On error out is unchanged.
 */
om_status rpc_frame_encode(om_buf *out, const ProtobufCMessage *msg, uint32_t max_frame);

/*
 * rpc_frame_encode_evb -- the same, packing straight into the evbuffer.
 * Returns as rpc_frame_encode; *frame_len (if not NULL) gets header + payload bytes.
 */
om_status rpc_frame_encode_evb(struct evbuffer *out, const ProtobufCMessage *msg,
                               uint32_t max_frame, size_t *frame_len);

/*
 * rpc_fastpack -- the hand-written Response encoder (fastpack.c): the plan
 * holds the lengths measured by rpc_fastpack_plan for rpc_fastpack_write.
 * rpc_fastpack_plan returns false for a Response it does not cover (a body
 * other than Store, Retrieve, Head, Exists, Delete, or unknown fields): pack
 * it with protobuf-c. Otherwise fp->total is the packed size, and
 * rpc_fastpack_write (out has room for fp->total bytes, resp unchanged since
 * the plan) writes exactly protobuf_c_message_pack's bytes and returns
 * fp->total. rpc_frame_encode* use it for every Response.
 */
typedef struct rpc_fastpack {
    size_t total;    /* packed size of the Response */
    size_t msg_len;  /* strlen(message), 0 when left out */
    size_t body_len; /* the body message's size */
    size_t info_len; /* the ObjectInfo's size */
    size_t slen[5];  /* bucket, key, etag, content_type, metadata_json */
    bool has_body;
} rpc_fastpack;
bool rpc_fastpack_plan(const Objmeta__Response *resp, rpc_fastpack *fp);
size_t rpc_fastpack_write(const Objmeta__Response *resp, const rpc_fastpack *fp, uint8_t *out);

/*
 * rpc_fastunpack_request -- decode the hot canonical Requests (Store,
 * Retrieve, Head, Exists; fastpack.c says exactly which) without protobuf-c.
 * pa must be an allocator whose memory is released all at once (the
 * server's rpc_scratch): a partial decode is not freed here.
 * Returns the Request and *handled = true; otherwise NULL and *handled =
 * false: decode with protobuf_c_message_unpack, which decides (the fast
 * path never rejects an input, it only declines it).
 */
Objmeta__Request *rpc_fastunpack_request(ProtobufCAllocator *pa, const uint8_t *data, size_t n,
                                         bool *handled);

/*
 * rpc_fastpeek_keyed -- the bucket and key of an encoded Retrieve, Head or
 * Exists Request, read in place (slices into data) without decoding it, for
 * the server's prefetch hints (rpc_server_set_prefetch). Returns false for
 * any other request and for a layout it does not follow (then there is no
 * hint; the request is decoded as usual either way). Missing fields are
 * empty slices. Thread-safety: pure.
 */
bool rpc_fastpeek_keyed(const uint8_t *data, size_t n, om_slice *bucket, om_slice *key);

/*
 * rpc_fastpack_req -- the hand-written Request encoder (fastpack_client.c, the
 * client side): rpc_fastpack_req_plan covers a Request with a non-NULL
 * Store, Retrieve, Head, Exists or Delete body and no unknown fields, and
 * returns false for anything else (pack it with protobuf-c). Then fp->total
 * is the packed size, and rpc_fastpack_req_write (out has room for
 * fp->total bytes, req unchanged since the plan) writes exactly
 * protobuf_c_message_pack's bytes and returns fp->total. rpc_frame_encode*
 * use it for every Request; rpc_request_packed_size is get_packed_size
 * through it.
 */
typedef struct rpc_fastpack_req {
    size_t total;    /* packed size of the Request */
    size_t body_len; /* the body message's size */
    size_t slen[4];  /* bucket, key, metadata_json, content_type */
    size_t rid_len;  /* request_id */
} rpc_fastpack_req;
bool rpc_fastpack_req_plan(const Objmeta__Request *req, rpc_fastpack_req *fp);
size_t rpc_fastpack_req_write(const Objmeta__Request *req, const rpc_fastpack_req *fp,
                              uint8_t *out);
size_t rpc_request_packed_size(const Objmeta__Request *req);

/*
 * rpc_fastunpack_response -- decode the hot canonical Responses (none,
 * Store, Retrieve, Head, Exists, Delete bodies; fastpack_client.c says exactly
 * which) without protobuf-c, on the contract of rpc_fastunpack_request:
 * pa releases its memory all at once (the client's rpc_scratch); NULL and
 * *handled = false means decode with protobuf_c_message_unpack instead.
 */
Objmeta__Response *rpc_fastunpack_response(ProtobufCAllocator *pa, const uint8_t *data, size_t n,
                                           bool *handled);

/* Request.request_id's field number (proto/objmeta.proto; the wire checks and the fast codecs). */
#define RPC_REQUEST_ID_FIELD 3

/*
 * rpc_wire_check_strings -- refuse an encoded message of type d in which
 * any string field, at any depth, carries a NUL byte on the wire
 * (protobuf-c would silently cut the string there; wirecheck.c).
 * Returns: OM_OK; OM_E_INVALID with a message naming the field's path
 * ("store.key: contains a NUL byte ...") in err. A Request's request_id
 * must also pass rpc_request_id_check.
 * Thread-safety: pure.
 */
om_status rpc_wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                                 bool *split_oneof, char *err, size_t errlen);
/*
 * rpc_wire_check_strings also sets *split_oneof when a message-typed oneof
 * member occurs more than once at the top level: protobuf merges the
 * occurrences, protobuf-c keeps the last. rpc_wire_merge_oneofs appends to
 * out the same message with each such member once (payloads concatenated),
 * which protobuf-c then decodes as protobuf means (wirecheck.c).
 * Returns OM_OK; OM_E_NOMEM; OM_E_CORRUPT for a malformed top level.
 */
om_status rpc_wire_merge_oneofs(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                                om_buf *out);

/*
 * Re-addressing an encoded message (the coordinator forwards a shard's
 * Response to its client without decoding and re-encoding it). Field 1 is
 * the id in both Request and Response (a varint). The rewrite walks the
 * message's top-level fields only (tag, then skip the value by its wire
 * type), drops every field-1 occurrence, and puts `id` first (nothing when
 * id is 0, protobuf's default); all other bytes are copied unchanged and in
 * order, so the result decodes to the same message with only the id changed.
 *
 * rpc_frame_id_rewrite_len -- the encoded size of the rewritten message.
 * Returns: OM_OK and *out_len; OM_E_CORRUPT when the top level is not
 * well-formed (truncated tag/varint/length, group wire types, field 0).
 */
om_status rpc_frame_id_rewrite_len(const uint8_t *p, size_t n, uint64_t id, size_t *out_len);
/*
 * rpc_frame_id_rewrite -- write the rewritten message to dst, which has room
 * for the length rpc_frame_id_rewrite_len returned for the same arguments.
 * Returns the bytes written. Call only after rpc_frame_id_rewrite_len said OK.
 */
size_t rpc_frame_id_rewrite(const uint8_t *p, size_t n, uint64_t id, uint8_t *dst);

#endif /* OM_RPC_FRAME_H */
