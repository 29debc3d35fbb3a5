/*
 * tests/rpc/test_fastpack_schema.c -- the hand-written codecs against proto/objmeta.proto, field
 * by field.
 *
 * The hand-written codecs (rpc/fastpack.c, the server side; rpc/fastpack_client.c, the client
 * side) know the hot messages' fields by number, and nothing in the compiler ties that list to
 * the .proto. test_fastpack.c compares them with protobuf-c on random messages, but it builds
 * those messages from the C field names it knows: a field added
 * to ObjectInfo would never be set there, and its loss on the fast path never seen. This suite
 * builds its messages from protobuf-c's descriptors (ProtobufCMessageDescriptor.fields) instead.
 * For each of the four fast paths it walks every message the path handles -- from Request or
 * Response through the hot bodies, recursively -- and on random messages that set every field the
 * descriptors list (every type protobuf-c has; one member of each oneof, a different one from
 * round to round; in half of the rounds a random subset of the fields) it requires:
 *   - the encoders (rpc_fastpack_plan/_write for Responses, rpc_fastpack_req_plan/_write for
 *     Requests) take the message, write protobuf-c's bytes, and protobuf-c decodes those bytes
 *     back to every field's value;
 *   - the decoders (rpc_fastunpack_request, rpc_fastunpack_response) take protobuf-c's bytes of
 *     the message (handled) and decode every field to its value;
 * and at the end that every field of every walked descriptor was set in some round, so every
 * field was round-tripped. A failure names the field (Message.field.field) and the seed.
 *
 * The hot bodies of each path are listed here (fast_paths[]): that list is the fast path's
 * declared scope; everything inside it is taken from the descriptors. The decoders leave 10-byte
 * varints to protobuf-c (their documented limit), so for them values stay below 2^63 and int32s
 * non-negative (short_varints). A first test runs the builder and the comparison on every
 * message of the .proto through protobuf-c alone, so that a builder that sets nothing, or a
 * comparison that sees nothing, cannot make the others pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "rpc/rpc_int.h"
#include "tu.h"

#define ROUNDS 3000
#define MAX_DEPTH 6
#define BUF_CAP (1u << 20)
#define MAX_DESCS 128
#define MAX_FIELDS 64

static uint64_t rs;
static bool short_varints; /* rnd_nonzero: below 2^63 (a varint of at most 9 bytes) */

static uint64_t
rnd(uint64_t n)
{
    return n == 0 ? 0 : tu_rand(&rs) % n;
}

/* Every allocation of one round, freed together (messages are built field by field). */
typedef struct pool {
    void **p;
    size_t n, cap;
} pool;

static pool mem;

static void *
pool_alloc(size_t n)
{
    void *x = calloc(1, n > 0 ? n : 1);

    ck_assert_ptr_nonnull(x);
    if (mem.n == mem.cap) {
        mem.cap = mem.cap ? 2 * mem.cap : 256;
        mem.p = realloc(mem.p, mem.cap * sizeof(*mem.p));
        ck_assert_ptr_nonnull(mem.p);
    }
    mem.p[mem.n++] = x;
    return x;
}

static void
pool_free_all(void)
{
    for (size_t i = 0; i < mem.n; i++)
        free(mem.p[i]);
    mem.n = 0;
}

/* ------------------------------------------------------------------------ */
/* The fast paths and their scope                                            */

struct fast_path;
typedef void (*path_check)(const struct fast_path *fp, ProtobufCMessage *m, int round);

typedef struct fast_path {
    const char *name;
    const ProtobufCMessageDescriptor *root;
    const char *const *bodies; /* hot members of the root's `body` oneof, NULL-terminated */
    bool body_optional;        /* a root without a body is hot too */
    bool short_varints;        /* the decoders take varints of up to 9 bytes (values < 2^63) */
    path_check check;
} fast_path;

/* Hits per field of every descriptor a path reaches (coverage). */
typedef struct cover {
    const ProtobufCMessageDescriptor *d;
    unsigned hits[MAX_FIELDS];
} cover;

static cover covers[MAX_DESCS];
static int n_covers;
static uint64_t seed;

static cover *
cover_of(const ProtobufCMessageDescriptor *d)
{
    for (int i = 0; i < n_covers; i++)
        if (covers[i].d == d)
            return &covers[i];
    ck_assert_int_lt(n_covers, MAX_DESCS);
    ck_assert_uint_le(d->n_fields, MAX_FIELDS);
    memset(&covers[n_covers], 0, sizeof(covers[0]));
    covers[n_covers].d = d;
    return &covers[n_covers++];
}

static bool
same_oneof(const ProtobufCFieldDescriptor *a, const ProtobufCFieldDescriptor *b)
{
    return (a->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && (b->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           a->quantifier_offset == b->quantifier_offset;
}

/* The root's `body` oneof field with this name is one of the path's hot bodies. */
static bool
is_hot_body(const fast_path *fp, const ProtobufCFieldDescriptor *f)
{
    for (const char *const *b = fp->bodies; *b != NULL; b++)
        if (strcmp(*b, f->name) == 0)
            return true;
    return false;
}

/* The root's `body` oneof field (the first hot body), or NULL when d is not the path's root. */
static const ProtobufCFieldDescriptor *
root_body(const fast_path *fp, const ProtobufCMessageDescriptor *d)
{
    if (fp == NULL || d != fp->root)
        return NULL;
    return protobuf_c_message_descriptor_get_field_by_name(d, fp->bodies[0]);
}

/* Whether field f of d is in the path's scope: everything but the root's other bodies. */
static bool
in_scope(const fast_path *fp, const ProtobufCMessageDescriptor *d,
         const ProtobufCFieldDescriptor *f)
{
    const ProtobufCFieldDescriptor *body = root_body(fp, d);

    return body == NULL || !same_oneof(f, body) || is_hot_body(fp, f);
}

/* Register every descriptor the path reaches, so that coverage can be checked for each. */
static void
walk(const fast_path *fp, const ProtobufCMessageDescriptor *d, int depth)
{
    bool known = false;

    for (int i = 0; i < n_covers; i++)
        known = known || covers[i].d == d;
    cover_of(d);
    if (known || depth >= MAX_DEPTH)
        return;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && in_scope(fp, d, f))
            walk(fp, f->descriptor, depth + 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Random messages from the descriptors                                      */

static size_t
value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default: /* int32, sint32, sfixed32, uint32, fixed32, float, enum */
        return 4;
    }
}

/* A non-zero uint64 that hits the varint boundaries often. */
static uint64_t
rnd_nonzero(void)
{
    static const uint64_t edges[] = {1,          127,        128,        16383,
                                     16384,      2097151,    2097152,    UINT32_MAX,
                                     1ull << 35, 1ull << 56, 1ull << 63, UINT64_MAX};
    uint64_t v;

    switch (rnd(3)) {
    case 0:
        v = edges[rnd(sizeof(edges) / sizeof(edges[0]))];
        break;
    case 1:
        v = 1 + rnd(300);
        break;
    default:
        v = tu_rand(&rs) >> rnd(64);
        break;
    }
    if (short_varints)
        v &= (1ull << 63) - 1;
    return v != 0 ? v : 1;
}

/* Printable ASCII (the fast decoders take ASCII only), never empty; lengths around 127/128. */
static char *
rnd_string(void)
{
    size_t len = rnd(3) == 0 ? 120 + rnd(20) : 1 + rnd(40);
    char *s = pool_alloc(len + 1);

    for (size_t i = 0; i < len; i++)
        s[i] = (char)(' ' + rnd(95));
    return s;
}

static void *build(const fast_path *fp, const ProtobufCMessageDescriptor *d, int depth, bool all);

/* Set the value at dst to a random non-default value of field f's type. */
static void
set_value(const fast_path *fp, const ProtobufCFieldDescriptor *f, void *dst, int depth, bool all)
{
    uint64_t v = rnd_nonzero();

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t x = (uint32_t)v; /* negative int32s too */
        if (short_varints && f->type == PROTOBUF_C_TYPE_INT32)
            x &= INT32_MAX; /* a negative int32 is a 10-byte varint */
        x = x != 0 ? x : 1u;
        memcpy(dst, &x, 4);
        break;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        memcpy(dst, &v, 8);
        break;
    case PROTOBUF_C_TYPE_FLOAT: {
        float x = (float)(1 + rnd(100000)) / 7.0f;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x = (double)(1 + rnd(1000000)) / 7.0;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean x = 1;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        int x = 0;
        for (int tries = 0; tries < 64 && x == 0; tries++)
            x = ed->values[rnd(ed->n_values)].value;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char *s = rnd_string();
        memcpy(dst, &s, sizeof(s));
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData b;
        b.len = 1 + rnd(rnd(8) == 0 ? 4000 : 200);
        b.data = pool_alloc(b.len);
        for (size_t i = 0; i < b.len; i++)
            b.data[i] = (uint8_t)tu_rand(&rs);
        memcpy(dst, &b, sizeof(b));
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        void *m = build(fp, f->descriptor, depth + 1, all);
        memcpy(dst, &m, sizeof(m));
        break;
    }
    }
}

/* Set field f of message m (with its quantifier: has_ flag, oneof case, repeated count). */
static void
set_field(const fast_path *fp, const ProtobufCMessageDescriptor *d,
          const ProtobufCFieldDescriptor *f, void *m, int depth, bool all)
{
    uint8_t *base = m;

    if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth + 1 >= MAX_DEPTH)
        return; /* a recursive message: stop here (coverage counts only what was set) */
    cover_of(d)->hits[f - d->fields]++;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = 1 + rnd(3), sz = value_size(f->type);
        uint8_t *arr = pool_alloc(n * sz);
        for (size_t i = 0; i < n; i++)
            set_value(fp, f, arr + i * sz, depth, all);
        memcpy(base + f->quantifier_offset, &n, sizeof(n));
        memcpy(base + f->offset, &arr, sizeof(arr));
        return;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t c = f->id;
        memcpy(base + f->quantifier_offset, &c, sizeof(c));
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING) {
        protobuf_c_boolean has = 1;
        memcpy(base + f->quantifier_offset, &has, sizeof(has));
    }
    set_value(fp, f, base + f->offset, depth, all);
}

/* One member of the oneof whose first field is d->fields[i], or NULL for none. */
static const ProtobufCFieldDescriptor *
pick_oneof(const fast_path *fp, const ProtobufCMessageDescriptor *d, unsigned i, bool all)
{
    const ProtobufCFieldDescriptor *cand[MAX_FIELDS], *body = root_body(fp, d);
    unsigned n = 0;
    bool none_ok = body != NULL && same_oneof(&d->fields[i], body) ? fp->body_optional : !all;

    for (unsigned j = i; j < d->n_fields; j++)
        if (same_oneof(&d->fields[i], &d->fields[j]) && in_scope(fp, d, &d->fields[j]))
            cand[n++] = &d->fields[j];
    if (n == 0 || (none_ok && rnd(n + 1) == n))
        return NULL;
    return cand[rnd(n)];
}

/*
 * A message of type d from the descriptor: all: every field set (one member of each oneof);
 * otherwise each field (and oneof) with probability 3/4. fp == NULL: every body of the roots.
 */
static void *
build(const fast_path *fp, const ProtobufCMessageDescriptor *d, int depth, bool all)
{
    void *m = pool_alloc(d->sizeof_message);

    protobuf_c_message_init(d, m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            bool first = true;
            for (unsigned j = 0; j < i; j++)
                first = first && !same_oneof(f, &d->fields[j]);
            if (!first)
                continue;
            f = pick_oneof(fp, d, i, all);
            if (f == NULL)
                continue;
        } else if (!all && rnd(4) == 0) {
            continue;
        }
        set_field(fp, d, f, m, depth, all);
    }
    return m;
}

/* ------------------------------------------------------------------------ */
/* Field-by-field comparison from the descriptors                           */

static bool msg_same(const ProtobufCMessageDescriptor *d, const void *a, const void *b, char *path,
                     size_t plen);

static bool
value_same(const ProtobufCFieldDescriptor *f, const void *a, const void *b, char *path, size_t plen)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *x, *y;
        memcpy(&x, a, sizeof(x));
        memcpy(&y, b, sizeof(y));
        return strcmp(x != NULL ? x : "", y != NULL ? y : "") == 0; /* NULL and "" are absent */
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *x = a, *y = b;
        return x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const void *x, *y;
        memcpy(&x, a, sizeof(x));
        memcpy(&y, b, sizeof(y));
        if (x == NULL || y == NULL)
            return x == y;
        return msg_same(f->descriptor, x, y, path, plen);
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean x, y;
        memcpy(&x, a, sizeof(x));
        memcpy(&y, b, sizeof(y));
        return !x == !y;
    }
    default:
        return memcmp(a, b, value_size(f->type)) == 0;
    }
}

/* Whether a and b (messages of type d) hold the same values; if not, path names the field. */
static bool
msg_same(const ProtobufCMessageDescriptor *d, const void *a, const void *b, char *path, size_t plen)
{
    const uint8_t *x = a, *y = b;
    size_t len = strlen(path);

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        snprintf(path + len, plen - len, ".%s", f->name);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na, nb, sz = value_size(f->type);
            const uint8_t *pa, *pb;
            memcpy(&na, x + f->quantifier_offset, sizeof(na));
            memcpy(&nb, y + f->quantifier_offset, sizeof(nb));
            memcpy(&pa, x + f->offset, sizeof(pa));
            memcpy(&pb, y + f->offset, sizeof(pb));
            if (na != nb)
                return false;
            for (size_t k = 0; k < na; k++)
                if (!value_same(f, pa + k * sz, pb + k * sz, path, plen))
                    return false;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca, cb;
            memcpy(&ca, x + f->quantifier_offset, sizeof(ca));
            memcpy(&cb, y + f->quantifier_offset, sizeof(cb));
            if ((ca == f->id) != (cb == f->id))
                return false;
            if (ca != f->id)
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
                   f->type != PROTOBUF_C_TYPE_STRING) {
            protobuf_c_boolean ha, hb;
            memcpy(&ha, x + f->quantifier_offset, sizeof(ha));
            memcpy(&hb, y + f->quantifier_offset, sizeof(hb));
            if (!ha != !hb)
                return false;
            if (!ha)
                continue;
        }
        if (!value_same(f, x + f->offset, y + f->offset, path, plen))
            return false;
    }
    path[len] = '\0';
    return true;
}

/* ck_assert that got holds want's values, naming the first field that differs. */
static void
assert_same(const fast_path *fp, const ProtobufCMessage *want, const ProtobufCMessage *got,
            const char *what, int round)
{
    char path[512];

    snprintf(path, sizeof(path), "%s", want->descriptor->short_name);
    ck_assert_msg(msg_same(want->descriptor, want, got, path, sizeof(path)),
                  "%s: %s: field %s not round-tripped (round %d, seed %llu)", fp->name, what, path,
                  round, (unsigned long long)seed);
}

/* ------------------------------------------------------------------------ */
/* The four fast paths                                                       */

static uint8_t *want_buf, *got_buf;
static rpc_scratch scratch;

/* protobuf-c's bytes of m into want_buf. */
static size_t
pack_ref(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);

    ck_assert_uint_le(n, BUF_CAP);
    ck_assert_uint_eq(protobuf_c_message_pack(m, want_buf), n);
    return n;
}

/* The encoder's bytes (got_buf, gn) equal protobuf-c's, and protobuf-c decodes them to m. */
static void
check_encoded(const fast_path *fp, const ProtobufCMessage *m, size_t gn, int round)
{
    size_t wn = pack_ref(m);
    ProtobufCMessage *back = protobuf_c_message_unpack(m->descriptor, NULL, gn, got_buf);

    ck_assert_msg(back != NULL, "%s: its bytes do not decode (round %d, seed %llu)", fp->name,
                  round, (unsigned long long)seed);
    assert_same(fp, m, back, "encoded", round);
    protobuf_c_message_free_unpacked(back, NULL);
    ck_assert_msg(gn == wn && memcmp(got_buf, want_buf, wn) == 0,
                  "%s: %zu bytes, protobuf-c %zu, or other bytes (round %d, seed %llu)", fp->name,
                  gn, wn, round, (unsigned long long)seed);
}

/* The encoders: the path's plan takes m, and its bytes are protobuf-c's (check_encoded). */
static void
check_encoder(const fast_path *fp, ProtobufCMessage *m, int round)
{
    bool planned;
    size_t total, gn;

    if (fp->root == &objmeta__request__descriptor) {
        rpc_fastpack_req plan;
        planned = rpc_fastpack_req_plan((const Objmeta__Request *)m, &plan);
        total = plan.total;
        gn = planned && total <= BUF_CAP
                 ? rpc_fastpack_req_write((const Objmeta__Request *)m, &plan, got_buf)
                 : 0;
    } else {
        rpc_fastpack plan;
        planned = rpc_fastpack_plan((const Objmeta__Response *)m, &plan);
        total = plan.total;
        gn = planned && total <= BUF_CAP
                 ? rpc_fastpack_write((const Objmeta__Response *)m, &plan, got_buf)
                 : 0;
    }
    ck_assert_msg(planned, "%s: declined a hot %s (round %d, seed %llu)", fp->name,
                  fp->root->short_name, round, (unsigned long long)seed);
    ck_assert_uint_le(total, BUF_CAP);
    ck_assert_uint_eq(gn, total);
    check_encoded(fp, m, gn, round);
}

/* Run the path's decoder on protobuf-c's bytes of m; *got (scratch memory) when handled. */
static bool
decode_fast(const fast_path *fp, const ProtobufCMessage *m, ProtobufCAllocator *pa,
            ProtobufCMessage **got)
{
    size_t n = pack_ref(m);
    bool handled = false;

    if (fp->root == &objmeta__request__descriptor)
        *got = (ProtobufCMessage *)rpc_fastunpack_request(pa, want_buf, n, &handled);
    else
        *got = (ProtobufCMessage *)rpc_fastunpack_response(pa, want_buf, n, &handled);
    return handled && *got != NULL;
}

static bool
decoder_takes(const fast_path *fp, const ProtobufCMessage *root)
{
    ProtobufCAllocator *pa = rpc_scratch_take(&scratch);
    ProtobufCMessage *got;
    bool ok;

    ck_assert_ptr_nonnull(pa);
    ok = decode_fast(fp, root, pa, &got);
    rpc_scratch_done(&scratch, pa, NULL);
    return ok;
}

/*
 * The field of m (inside root) without which the decoder takes root: each set field in turn,
 * innermost first, is cleared (oneof case, has_ flag, count or value zeroed), tried and put back.
 * Returns false when no single field is to blame.
 */
static bool
blame(const fast_path *fp, const ProtobufCMessage *root, const ProtobufCMessageDescriptor *d,
      void *m, char *path, size_t plen)
{
    uint8_t *base = m;
    size_t len = strlen(path);

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        uint8_t *q =
            f->label == PROTOBUF_C_LABEL_REPEATED || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                ? base + f->quantifier_offset
                : base + f->offset;
        size_t qn = f->label == PROTOBUF_C_LABEL_REPEATED      ? sizeof(size_t)
                    : (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? sizeof(uint32_t)
                                                               : value_size(f->type);
        uint8_t saved[32];
        void *sub;

        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)q != f->id)
            continue;
        snprintf(path + len, plen - len, ".%s", f->name);
        memcpy(&sub, base + f->offset, sizeof(sub));
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED &&
            sub != NULL && blame(fp, root, f->descriptor, sub, path, plen))
            return true;
        memcpy(saved, q, qn);
        memset(q, 0, qn);
        bool took = decoder_takes(fp, root);
        memcpy(q, saved, qn);
        if (took)
            return true;
    }
    path[len] = '\0';
    return false;
}

/* The decoders: protobuf-c's bytes of m must be taken, and decode to m. */
static void
check_decoder(const fast_path *fp, ProtobufCMessage *m, int round)
{
    ProtobufCAllocator *pa = rpc_scratch_take(&scratch);
    ProtobufCMessage *got;

    ck_assert_ptr_nonnull(pa);
    if (!decode_fast(fp, m, pa, &got)) {
        char path[512];
        snprintf(path, sizeof(path), "%s", fp->root->short_name);
        rpc_scratch_done(&scratch, pa, NULL);
        ck_abort_msg("%s: declined protobuf-c's bytes of a hot %s; it takes them without field "
                     "%s (round %d, seed %llu)",
                     fp->name, fp->root->short_name,
                     blame(fp, m, m->descriptor, m, path, sizeof(path)) ? path : "(none alone)",
                     round, (unsigned long long)seed);
    }
    assert_same(fp, m, got, "decoded", round);
    rpc_scratch_done(&scratch, pa, NULL);
}

static const char *const hot_all[] = {"store", "retrieve", "head", "exists", "delete", NULL};
static const char *const hot_server_req[] = {"store", "retrieve", "head", "exists", NULL};

static const fast_path fast_paths[] = {
    {"rpc_fastpack_write (server, Response)", &objmeta__response__descriptor, hot_all, true, false,
     check_encoder},
    {"rpc_fastunpack_request (server, Request)", &objmeta__request__descriptor, hot_server_req,
     false, true, check_decoder},
    {"rpc_fastpack_req_write (client, Request)", &objmeta__request__descriptor, hot_all, false,
     false, check_encoder},
    {"rpc_fastunpack_response (client, Response)", &objmeta__response__descriptor, hot_all, true,
     true, check_decoder},
};

/* Every field of every descriptor the path reaches was set (and so round-tripped) in some round. */
static void
assert_covered(const fast_path *fp)
{
    unsigned fields = 0;

    for (int i = 0; i < n_covers; i++) {
        const ProtobufCMessageDescriptor *d = covers[i].d;
        for (unsigned k = 0; k < d->n_fields; k++) {
            if (!in_scope(fp, d, &d->fields[k]))
                continue;
            ck_assert_msg(covers[i].hits[k] > 0, "%s: %s.%s never set in %d rounds (seed %llu)",
                          fp != NULL ? fp->name : "builder", d->short_name, d->fields[k].name,
                          ROUNDS, (unsigned long long)seed);
            fields++;
        }
    }
    printf("%s: %d messages, %u fields, each round-tripped\n", fp != NULL ? fp->name : "builder",
           n_covers, fields);
}

START_TEST(fast_paths_roundtrip_every_field)
{
    const fast_path *fp = &fast_paths[_i];

    seed = tu_seed(fp->name);
    rs = seed;
    short_varints = fp->short_varints;
    want_buf = malloc(BUF_CAP);
    got_buf = malloc(BUF_CAP);
    ck_assert(want_buf && got_buf);
    rpc_scratch_init(&scratch);
    n_covers = 0;
    walk(fp, fp->root, 0);
    for (int round = 0; round < ROUNDS; round++) {
        ProtobufCMessage *m = build(fp, fp->root, 0, round % 2 == 0);
        fp->check(fp, m, round);
        pool_free_all();
    }
    assert_covered(fp);
    rpc_scratch_fini(&scratch);
    free(want_buf);
    free(got_buf);
}
END_TEST

/*
 * The machinery itself, on every message of the .proto (every body of Request and Response)
 * through protobuf-c alone: what the builder sets, protobuf-c packs and unpacks, and the
 * comparison finds it equal; a changed field it finds different; every field is reached.
 */
START_TEST(builder_covers_every_message)
{
    static const ProtobufCMessageDescriptor *const roots[] = {&objmeta__request__descriptor,
                                                              &objmeta__response__descriptor};

    seed = tu_seed("builder_covers_every_message");
    rs = seed;
    want_buf = malloc(BUF_CAP);
    ck_assert_ptr_nonnull(want_buf);
    n_covers = 0;
    for (int r = 0; r < 2; r++)
        walk(NULL, roots[r], 0);
    for (int round = 0; round < ROUNDS; round++) {
        const ProtobufCMessageDescriptor *d = roots[round % 2];
        ProtobufCMessage *m = build(NULL, d, 0, round % 4 < 2);
        char path[512];
        size_t n = pack_ref(m);
        ProtobufCMessage *back = protobuf_c_message_unpack(d, NULL, n, want_buf);
        ck_assert_ptr_nonnull(back);
        snprintf(path, sizeof(path), "%s", d->short_name);
        ck_assert_msg(msg_same(d, m, back, path, sizeof(path)),
                      "protobuf-c does not round-trip %s (round %d, seed %llu)", path, round,
                      (unsigned long long)seed);
        /* the comparison sees a change: the id (field 1 of both roots) */
        uint64_t *id = (uint64_t *)((uint8_t *)back + d->fields[0].offset);
        *id ^= 1;
        snprintf(path, sizeof(path), "%s", d->short_name);
        ck_assert(!msg_same(d, m, back, path, sizeof(path)));
        ck_assert_str_eq(path + strlen(d->short_name), ".id");
        protobuf_c_message_free_unpacked(back, NULL);
        pool_free_all();
    }
    assert_covered(NULL);
    free(want_buf);
}
END_TEST

static Suite *
schema_suite(void)
{
    Suite *s = suite_create("rpc-fastpack-schema");
    TCase *tc = tcase_create("schema");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, builder_covers_every_message);
    tcase_add_loop_test(tc, fast_paths_roundtrip_every_field, 0,
                        (int)(sizeof(fast_paths) / sizeof(fast_paths[0])));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    int rc = tu_run(schema_suite());

    free(mem.p);
    return rc;
}
