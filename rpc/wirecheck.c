/*
 * rpc/wirecheck.c -- the checks a request must pass as it arrived on the
 * wire, before anything acts on the decoded message (issue 13, D1).
 *
 * protobuf-c hands strings to C as NUL-terminated copies of their wire
 * bytes. A string whose bytes contain a NUL therefore decodes to a shorter
 * string than the one sent: Store key "photo\0evil" became key "photo",
 * which validation accepted and the shard stored over the real "photo".
 * Nothing after the decode can see the difference, so the check runs on
 * the encoded bytes: walk the message by its descriptor (top level, then
 * into every message-typed field, repeated or not, whatever the oneof) and
 * refuse any string field whose wire payload holds a 0x00 byte, naming the
 * field by its path ("store.key", "set_ring.ring.shards.id").
 *
 * Generic on purpose: every string field of every request, on shard and
 * coordinator alike, is covered by the one call in the server's decode path
 * (conn.c), including fields added to the proto later. Bytes fields and
 * unknown fields are skipped by their length. The walk runs after protobuf-c
 * (or the fast decoder) accepted the frame, so a malformed layout cannot
 * reach it; it still bounds every read and refuses what it cannot follow.
 * Cost: one pass over the tags, plus memchr over string payloads (keys and
 * buckets, not object data).
 *
 * One field has rules of its own: Request.request_id, which every log line
 * about the request repeats (`rid=` in text, "request_id" in JSON), holds
 * at most RPC_REQUEST_ID_MAX bytes of printable ASCII without space, '"'
 * or '\\', so that it stays one token in a text line and needs no
 * escaping in JSON (rpc_request_id_check, shared with the client tool).
 */
#include <stdio.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc_int.h"
#include "util/coding.h"

/* The schema has no recursive messages; this bounds the walk regardless. */
#define WIRE_MAX_DEPTH 16

typedef struct wire_ctx {
    char *err;
    size_t errlen;
    uint64_t seen, split; /* top level: oneof message members (id < 64) seen, seen twice */
    /* names of the message fields entered, outermost first: the path of an error,
     * formatted only when one is reported (a request that passes costs no printf) */
    const char *names[WIRE_MAX_DEPTH + 2];
    char path[256];
} wire_ctx;

/* A message-typed member of a oneof (a Request's operation body). */
static bool
wire_is_oneof_msg(const ProtobufCFieldDescriptor *f)
{
    return f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
           (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 && f->id < 64;
}

static bool
wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;

    for (unsigned i = 0; i < 10 && *p < end; i++) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *v = r;
            return true;
        }
    }
    return false;
}

static om_status wire_walk(wire_ctx *w, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                           size_t n, unsigned depth);

/* The dotted path of names[0..n) into w->path ("store.key"); "" for n = 0. */
static const char *
wire_path(wire_ctx *w, unsigned n)
{
    size_t off = 0;

    w->path[0] = '\0';
    for (unsigned i = 0; i < n && off < sizeof(w->path); i++) {
        int k = snprintf(w->path + off, sizeof(w->path) - off, "%s%s", i ? "." : "", w->names[i]);
        if (k < 0)
            break;
        off += (size_t)k;
    }
    return w->path;
}

/* One length-delimited field of d: a string to check or a message to enter. */
static om_status
wire_field(wire_ctx *w, const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t n,
           unsigned depth)
{
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const uint8_t *nul = memchr(p, 0, n);
        if (nul == NULL)
            return OM_OK;
        w->names[depth] = f->name;
        return om_err_invalid(w->err, w->errlen,
                              "%s: contains a NUL byte at offset %zu of %zu (NUL is not "
                              "allowed in strings)",
                              wire_path(w, depth + 1), (size_t)(nul - p), n);
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        w->names[depth] = f->name;
        return wire_walk(w, f->descriptor, p, n, depth + 1);
    }
    return OM_OK; /* bytes, or a packed repeated scalar */
}

static om_status
wire_walk(wire_ctx *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
          unsigned depth)
{
    const uint8_t *end = p + n;

    if (depth > WIRE_MAX_DEPTH)
        return om_err_invalid(w->err, w->errlen, "%s: messages nested too deep",
                              wire_path(w, depth));
    while (p < end) {
        uint64_t tag, len;

        if (!wire_varint(&p, end, &tag))
            goto bad;
        switch (tag & 7) {
        case 0:
            if (!wire_varint(&p, end, &len))
                goto bad;
            break;
        case 1:
            if ((size_t)(end - p) < 8)
                goto bad;
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4)
                goto bad;
            p += 4;
            break;
        case 2: {
            if (!wire_varint(&p, end, &len) || len > (uint64_t)(end - p))
                goto bad;
            uint64_t id = tag >> 3;
            const ProtobufCFieldDescriptor *f =
                id <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)id) : NULL;
            if (depth == 0 && wire_is_oneof_msg(f)) {
                uint64_t bit = 1ull << f->id;
                w->split |= w->seen & bit;
                w->seen |= bit;
            }
            if (f != NULL)
                OM_TRY(wire_field(w, f, p, (size_t)len, depth));
            if (depth == 0 && d == &objmeta__request__descriptor && id == RPC_REQUEST_ID_FIELD)
                OM_TRY(rpc_request_id_check(p, (size_t)len, w->err, w->errlen));
            p += len;
            break;
        }
        default:
            goto bad;
        }
    }
    return OM_OK;
bad:
    return om_err_invalid(w->err, w->errlen, "%s: malformed encoding",
                          depth ? wire_path(w, depth) : d->name);
}

om_status
rpc_request_id_check(const uint8_t *p, size_t n, char *err, size_t errlen)
{
    if (n > RPC_REQUEST_ID_MAX)
        return om_err_invalid(err, errlen, "request_id: %zu bytes, at most %u", n,
                              RPC_REQUEST_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if (!rpc_request_id_char(p[i]))
            return om_err_invalid(err, errlen,
                                  "request_id: byte 0x%02x at offset %zu is not allowed "
                                  "(printable ASCII without space, '\"' or '\\')",
                                  p[i], i);
    return OM_OK;
}

om_status
rpc_wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                       bool *split_oneof, char *err, size_t errlen)
{
    wire_ctx w = {.err = err, .errlen = errlen};

    OM_TRY(wire_walk(&w, d, p, n, 0));
    *split_oneof = w.split != 0;
    return OM_OK;
}

/*
 * Merging a split body. Protobuf merges a message field that occurs twice
 * (the second occurrence's fields are added to the first: FRAMING.md), but
 * protobuf-c replaces a oneof member instead, so a Store sent as two body
 * fragments lost the first. Rewriting the top level so that each such
 * member occurs once, its payloads concatenated in order (which is what a
 * merge of two encodings means), at the place of its last occurrence (so
 * that a different member sent later still wins), gives protobuf-c an
 * input it decodes as protobuf specifies. Other fields are copied as they
 * are. Only called for the rare input that needs it.
 */
static bool
merge_next(const uint8_t **p, const uint8_t *end, uint64_t *tag, const uint8_t **val, size_t *vn)
{
    uint64_t len;

    if (!wire_varint(p, end, tag))
        return false;
    *val = *p;
    switch (*tag & 7) {
    case 0:
        if (!wire_varint(p, end, &len))
            return false;
        break;
    case 1:
    case 5: {
        size_t k = (*tag & 7) == 1 ? 8 : 4;
        if ((size_t)(end - *p) < k)
            return false;
        *p += k;
        break;
    }
    case 2:
        if (!wire_varint(p, end, &len) || len > (uint64_t)(end - *p))
            return false;
        *val = *p;
        *p += len;
        break;
    default:
        return false;
    }
    *vn = (size_t)(*p - *val);
    return true;
}

om_status
rpc_wire_merge_oneofs(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, om_buf *out)
{
    const uint8_t *end = p + n, *q;
    uint64_t tag, split = 0, seen = 0;
    const uint8_t *val, *last[64] = {NULL};
    size_t vn, total[64] = {0};

    for (q = p; q < end;) {
        const uint8_t *start = q;
        if (!merge_next(&q, end, &tag, &val, &vn))
            return OM_ERR(OM_E_CORRUPT);
        uint64_t id = tag >> 3;
        const ProtobufCFieldDescriptor *f =
            (tag & 7) == 2 && id < 64 ? protobuf_c_message_descriptor_get_field(d, (unsigned)id)
                                      : NULL;
        if (wire_is_oneof_msg(f)) {
            split |= seen & (1ull << id);
            seen |= 1ull << id;
            last[id] = start;
            total[id] += vn;
        }
    }
    for (q = p; q < end;) {
        const uint8_t *start = q;
        (void)merge_next(&q, end, &tag, &val, &vn);
        uint64_t id = tag >> 3;
        if ((tag & 7) != 2 || id >= 64 || !(split & (1ull << id))) {
            OM_TRY(om_buf_append(out, start, (size_t)(q - start)));
            continue;
        }
        if (start != last[id])
            continue; /* folded into the last occurrence */
        uint8_t hdr[20], *h = hdr;
        h = om_encode_varint64(h, tag);
        h = om_encode_varint64(h, total[id]);
        OM_TRY(om_buf_append(out, hdr, (size_t)(h - hdr)));
        for (const uint8_t *r = p; r < end;) {
            uint64_t t2;
            (void)merge_next(&r, end, &t2, &val, &vn);
            if (t2 == tag)
                OM_TRY(om_buf_append(out, val, vn));
        }
    }
    return OM_OK;
}

Objmeta__Request *
rpc_wire_unpack_merged(rpc_scratch *sc, ProtobufCAllocator **pa, Objmeta__Request *req, om_slice p)
{
    om_buf merged = OM_BUF_INIT;
    Objmeta__Request *out = NULL;

    if (rpc_wire_merge_oneofs(&objmeta__request__descriptor, p.p, p.n, &merged) == OM_OK)
        out = objmeta__request__unpack(NULL, merged.n, merged.p);
    om_buf_free(&merged);
    rpc_scratch_done(sc, *pa, &req->base);
    *pa = NULL;
    return out;
}
