/*
 * rpc/fastpack_int.h -- the pieces rpc/fastpack.c (the server side: hot
 * Responses encoded, hot Requests decoded) and rpc/fastpack_client.c (the
 * client side: hot Requests encoded, hot Responses decoded) share: tags,
 * varints, field sizes and writers, and the bounded reader the decoders
 * parse with. Private to rpc/.
 *
 * Thread-safety: pure functions.
 */
#ifndef OM_RPC_FASTPACK_INT_H
#define OM_RPC_FASTPACK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "rpc/frame.h"

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

/*
 * fp_tag_once -- the decoders' rule for a tag inside a body: one byte, a
 * field number 1..max_field, each field at most once (*seen: a bit per
 * field). False leaves the message to protobuf-c.
 */
static inline bool
fp_tag_once(uint8_t tag, unsigned max_field, unsigned *seen)
{
    unsigned field = TAG_FIELD(tag);

    if ((tag & 0x80) || field < 1 || field > max_field || (*seen & (1u << field)))
        return false;
    *seen |= 1u << field;
    return true;
}

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

static inline uint8_t *
fp_put_str(uint8_t *p, unsigned field, const char *s, size_t n)
{
    if (n == 0)
        return p;
    *p++ = TAG_LEN(field);
    p = fp_put_varint(p, n);
    memcpy(p, s, n);
    return p + n;
}

static inline uint8_t *
fp_put_u64(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return p;
    *p++ = TAG_VARINT(field);
    return fp_put_varint(p, v);
}

/* A bounded input: the decoders read p[0 .. end - p). */
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
static inline bool
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
static inline bool
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

static inline void *
fu_alloc(ProtobufCAllocator *pa, size_t n)
{
    return pa->alloc(pa->allocator_data, n);
}

/* An initialised (empty) message of type d from pa, or NULL. */
static inline void *
fu_msg_new(ProtobufCAllocator *pa, const ProtobufCMessageDescriptor *d)
{
    void *m = fu_alloc(pa, d->sizeof_message);

    if (m != NULL)
        protobuf_c_message_init(d, m);
    return m;
}

/*
 * fu_body_new -- a new, empty message for the oneof body field `field` of
 * top (a Request or a Response), of the type the field's descriptor names,
 * set as top's body (oneof case and member, at the descriptor's offsets, as
 * protobuf-c sets them). NULL: top has no such message field, or no memory.
 */
static inline void *
fu_body_new(ProtobufCAllocator *pa, ProtobufCMessage *top, unsigned field)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(top->descriptor, field);
    ProtobufCMessage *b;
    uint32_t which = field;

    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0)
        return NULL;
    b = fu_msg_new(pa, f->descriptor);
    if (b == NULL)
        return NULL;
    memcpy((uint8_t *)top + f->quantifier_offset, &which, sizeof(which));
    memcpy((uint8_t *)top + f->offset, &b, sizeof(b));
    return b;
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
static inline bool
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

static inline bool
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
#endif /* OM_RPC_FASTPACK_INT_H */
