/*
 * tests/rpc/test_fastpack.c -- the hand-written Response encoder
 * (rpc/fastpack.c) against protobuf-c: random Responses of every covered
 * body (none, Store, Retrieve, Head, Exists, Delete), with absent/NULL/empty
 * strings, absent sub-messages, 0 values, varint boundaries, negative and
 * out-of-range status values and large data, packed both ways must give the
 * same size and the same bytes (rpc_response_pack, _packed_size, _pack_alloc); the frame encoders
 * (om_buf and evbuffer) must frame those bytes; Responses outside the covered set must fall back to
 * protobuf-c; and rpc_reply_send_packed's "id in front" rule must give the same bytes as packing
 * with the id. The request decoder (rpc_fastunpack_request) against protobuf_c_message_unpack on
 * random Requests and mutations of them (flipped bytes, cuts, appended fields, concatenations,
 * which protobuf merges): whatever the fast path takes, protobuf-c must accept too and decode to
 * the same message. The client side likewise: the Request encoder
 * (rpc_fastpack_req_*) against protobuf_c pack on random Requests (NULL / empty / non-ASCII
 * strings, NULL bodies, oneof members set to 0, non-hot bodies that must be declined), and the
 * Response decoder (rpc_fastunpack_response) against protobuf_c_message_unpack on random and
 * mutated Responses. These messages are built from the C fields known here; that the fast paths
 * know every field of the .proto is test_fastpack_schema.c's job (messages from the descriptors).
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "rpc/rpc_int.h"
#include "tu.h"
#include "util/coding.h"

#define ROUNDS 20000
#define BIG_DATA (300u * 1024u)

static uint64_t rs;
static bool ascii_strs; /* rnd_str: printable ASCII only (what the decoders take) */

static uint64_t
rnd(uint64_t n)
{
    return n == 0 ? 0 : tu_rand(&rs) % n;
}

/* A uint64 that hits 0, varint boundaries and the extremes often. */
static uint64_t
rnd_u64(void)
{
    static const uint64_t edges[] = {0,          1,          127,        128,
                                     16383,      16384,      2097151,    2097152,
                                     UINT32_MAX, 1ull << 35, 1ull << 56, (1ull << 63) - 1,
                                     1ull << 63, UINT64_MAX};
    switch (rnd(4)) {
    case 0:
        return edges[rnd(sizeof(edges) / sizeof(edges[0]))];
    case 1:
        return rnd(300);
    case 2:
        return tu_rand(&rs) >> rnd(64);
    default:
        return 0;
    }
}

/* Storage for one random message's strings. */
typedef struct pool {
    char str[16][600];
    int n;
    uint8_t *data;
} pool;

/* NULL, "", or a random string (lengths around the one/two-byte varint edge). */
static char *
rnd_str(pool *p)
{
    char *s;
    size_t len;

    switch (rnd(6)) {
    case 0:
        return NULL;
    case 1:
        return (char *)"";
    case 2:
        return (char *)protobuf_c_empty_string;
    default:
        break;
    }
    s = p->str[p->n++];
    len = rnd(3) == 0 ? 120 + rnd(20) : rnd(3) == 0 ? rnd(599) : rnd(40);
    for (size_t i = 0; i < len; i++)
        s[i] = ascii_strs && rnd(50) != 0 ? (char)(' ' + rnd(95))
                                          : (char)(1 + rnd(255)); /* any byte but NUL */
    s[len] = '\0';
    return s;
}

static Objmeta__ObjectInfo *
rnd_info(Objmeta__ObjectInfo *oi, pool *p)
{
    if (rnd(8) == 0)
        return NULL;
    objmeta__object_info__init(oi);
    oi->bucket = rnd_str(p);
    oi->key = rnd_str(p);
    oi->size = rnd_u64();
    oi->etag = rnd_str(p);
    oi->content_type = rnd_str(p);
    oi->created_ms = rnd_u64();
    oi->modified_ms = rnd_u64();
    oi->version = rnd_u64();
    oi->metadata_json = rnd_str(p);
    return oi;
}

typedef struct msgs {
    Objmeta__Response r;
    Objmeta__StoreResponse st;
    Objmeta__RetrieveResponse rt;
    Objmeta__HeadResponse hd;
    Objmeta__ExistsResponse ex;
    Objmeta__DeleteResponse dl;
    Objmeta__ObjectInfo oi;
} msgs;

static void
rnd_response(msgs *m, pool *p)
{
    static const Objmeta__Response__BodyCase bodies[] = {
        OBJMETA__RESPONSE__BODY__NOT_SET, OBJMETA__RESPONSE__BODY_STORE,
        OBJMETA__RESPONSE__BODY_RETRIEVE, OBJMETA__RESPONSE__BODY_HEAD,
        OBJMETA__RESPONSE__BODY_EXISTS,   OBJMETA__RESPONSE__BODY_DELETE};
    static const int statuses[] = {0, 1, 2, 3, 8, 9, 127, 128, 100000, -1, -2147483647 - 1};
    Objmeta__Response *r = &m->r;

    p->n = 0;
    objmeta__response__init(r);
    r->id = rnd_u64();
    r->status = (Objmeta__Status)(rnd(3) == 0 ? statuses[rnd(sizeof(statuses) / sizeof(int))]
                                              : (int)rnd(10));
    r->message = rnd_str(p);
    r->body_case = bodies[rnd(sizeof(bodies) / sizeof(bodies[0]))];
    switch (r->body_case) {
    case OBJMETA__RESPONSE__BODY_STORE:
        objmeta__store_response__init(&m->st);
        m->st.info = rnd_info(&m->oi, p);
        r->store = rnd(10) == 0 ? NULL : &m->st;
        break;
    case OBJMETA__RESPONSE__BODY_RETRIEVE:
        objmeta__retrieve_response__init(&m->rt);
        m->rt.info = rnd_info(&m->oi, p);
        m->rt.data.len = rnd(4) == 0 ? 0 : rnd(10) == 0 ? rnd(BIG_DATA) : rnd(1000);
        m->rt.data.data = m->rt.data.len > 0 ? p->data + rnd(BIG_DATA - m->rt.data.len + 1) : NULL;
        r->retrieve = rnd(10) == 0 ? NULL : &m->rt;
        break;
    case OBJMETA__RESPONSE__BODY_HEAD:
        objmeta__head_response__init(&m->hd);
        m->hd.info = rnd_info(&m->oi, p);
        r->head = rnd(10) == 0 ? NULL : &m->hd;
        break;
    case OBJMETA__RESPONSE__BODY_EXISTS:
        objmeta__exists_response__init(&m->ex);
        m->ex.exists = (protobuf_c_boolean)rnd(3); /* 2: any non-zero is true */
        r->exists = rnd(10) == 0 ? NULL : &m->ex;
        break;
    case OBJMETA__RESPONSE__BODY_DELETE:
        objmeta__delete_response__init(&m->dl);
        m->dl.version = rnd_u64();
        m->dl.existed = (protobuf_c_boolean)rnd(3);
        r->delete_ = rnd(10) == 0 ? NULL : &m->dl;
        break;
    default:
        break;
    }
}

static void
hexdump_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            printf("first difference at byte %zu: fast %02x, protobuf-c %02x\n", i, a[i], b[i]);
            return;
        }
    }
}

/* rpc_response_pack_alloc's allocator: malloc, recording the size asked for. */
static void *
test_alloc(void *arg, size_t n)
{
    *(size_t *)arg = n;
    return malloc(n + 1);
}

START_TEST(fastpack_matches_protobuf_c)
{
    uint64_t seed = tu_seed("fastpack_matches_protobuf_c");
    pool *p = calloc(1, sizeof(*p));
    uint8_t *want, *got;
    size_t cap = BIG_DATA + 64 * 1024;
    unsigned fast = 0;

    rs = seed;
    ck_assert_ptr_nonnull(p);
    p->data = malloc(BIG_DATA);
    want = malloc(cap);
    got = malloc(cap);
    ck_assert(p->data && want && got);
    for (size_t i = 0; i < BIG_DATA; i++)
        p->data[i] = (uint8_t)tu_rand(&rs);
    for (int round = 0; round < ROUNDS; round++) {
        msgs m;
        rpc_fastpack fp;
        rnd_response(&m, p);
        size_t wn = protobuf_c_message_get_packed_size(&m.r.base);
        ck_assert_uint_le(wn, cap);
        ck_assert_uint_eq(protobuf_c_message_pack(&m.r.base, want), wn);
        ck_assert_msg(rpc_fastpack_plan(&m.r, &fp), "round %d: body %d not covered", round,
                      (int)m.r.body_case);
        fast++;
        ck_assert_uint_eq(fp.total, wn);
        memset(got, 0xa5, wn + 1);
        size_t gn = rpc_fastpack_write(&m.r, &fp, got);
        if (gn != wn || memcmp(got, want, wn) != 0) {
            hexdump_diff(got, want, wn);
            ck_abort_msg("round %d (seed %llu): fast %zu bytes, protobuf-c %zu bytes", round,
                         (unsigned long long)seed, gn, wn);
        }
        ck_assert_uint_eq(got[wn], 0xa5); /* nothing written past the end */
        ck_assert_uint_eq(rpc_response_packed_size(&m.r), wn);
        ck_assert_uint_eq(rpc_response_pack(&m.r, got), wn);
        ck_assert_mem_eq(got, want, wn);
        size_t an = 0, asked = SIZE_MAX;
        uint8_t *al = rpc_response_pack_alloc(&m.r, test_alloc, &asked, &an);
        ck_assert_ptr_nonnull(al);
        ck_assert_uint_eq(asked, wn);
        ck_assert_uint_eq(an, wn);
        ck_assert_mem_eq(al, want, wn);
        free(al);
    }
    ck_assert_uint_eq(fast, ROUNDS);
    free(p->data);
    free(p);
    free(want);
    free(got);
}
END_TEST

/* The frame encoders frame exactly protobuf-c's bytes. */
START_TEST(fastpack_frames_match)
{
    uint64_t seed = tu_seed("fastpack_frames_match");
    pool *p = calloc(1, sizeof(*p));
    uint8_t *want;

    rs = seed;
    ck_assert_ptr_nonnull(p);
    p->data = calloc(1, BIG_DATA);
    want = malloc(BIG_DATA + 64 * 1024);
    ck_assert(p->data && want);
    for (int round = 0; round < 2000; round++) {
        msgs m;
        om_buf b = OM_BUF_INIT;
        struct evbuffer *evb = evbuffer_new();
        size_t flen = 0;
        rnd_response(&m, p);
        size_t wn = protobuf_c_message_pack(&m.r.base, want);
        ck_assert_int_eq(rpc_frame_encode(&b, &m.r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
        ck_assert_uint_eq(b.n, 4 + wn);
        ck_assert_uint_eq(om_get_be32(b.p), wn);
        ck_assert_mem_eq(b.p + 4, want, wn);
        ck_assert_int_eq(rpc_frame_encode_evb(evb, &m.r.base, RPC_DEFAULT_MAX_FRAME, &flen), OM_OK);
        ck_assert_uint_eq(flen, 4 + wn);
        ck_assert_mem_eq(evbuffer_pullup(evb, -1), b.p, b.n);
        /* a frame over max_frame is refused, as with protobuf-c sizes */
        if (wn > 0) {
            om_buf small = OM_BUF_INIT;
            ck_assert_int_eq(rpc_frame_encode(&small, &m.r.base, (uint32_t)wn - 1), OM_E_INVALID);
            ck_assert_uint_eq(small.n, 0);
            om_buf_free(&small);
        }
        evbuffer_free(evb);
        om_buf_free(&b);
    }
    free(p->data);
    free(p);
    free(want);
}
END_TEST

/* Putting "08 varint(id)" in front of a Response packed with id 0 gives the packing with id. */
START_TEST(fastpack_id_in_front)
{
    uint64_t seed = tu_seed("fastpack_id_in_front");
    pool *p = calloc(1, sizeof(*p));
    uint8_t *want = malloc(BIG_DATA + 64 * 1024), *noid = malloc(BIG_DATA + 64 * 1024);

    rs = seed;
    ck_assert(p && want && noid);
    p->data = calloc(1, BIG_DATA);
    ck_assert_ptr_nonnull(p->data);
    for (int round = 0; round < 2000; round++) {
        msgs m;
        uint8_t *q;
        rnd_response(&m, p);
        uint64_t id = m.r.id;
        size_t wn = protobuf_c_message_pack(&m.r.base, want);
        m.r.id = 0;
        size_t nn = rpc_response_pack(&m.r, noid);
        uint8_t *both = malloc(nn + 16);
        q = both;
        if (id != 0) {
            *q++ = 0x08;
            q = om_encode_varint64(q, id);
        }
        memcpy(q, noid, nn);
        ck_assert_uint_eq((size_t)(q - both) + nn, wn);
        ck_assert_mem_eq(both, want, wn);
        free(both);
    }
    free(p->data);
    free(p);
    free(want);
    free(noid);
}
END_TEST

/* Other bodies and unknown fields go to protobuf-c, with the same bytes. */
START_TEST(fastpack_falls_back)
{
    Objmeta__Response r = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
    Objmeta__StoreResponse sr = OBJMETA__STORE_RESPONSE__INIT;
    Objmeta__ObjectInfo oi = OBJMETA__OBJECT_INFO__INIT;
    ProtobufCMessageUnknownField uf = {
        .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 1, .data = (uint8_t *)"\x05"};
    rpc_fastpack fp;
    uint8_t a[256], b[256];

    r.id = 7;
    r.body_case = OBJMETA__RESPONSE__BODY_PING;
    r.ping = &pr;
    pr.server = (char *)"x";
    ck_assert(!rpc_fastpack_plan(&r, &fp));
    ck_assert_uint_eq(rpc_response_packed_size(&r), protobuf_c_message_get_packed_size(&r.base));
    size_t n = rpc_response_pack(&r, a);
    ck_assert_uint_eq(protobuf_c_message_pack(&r.base, b), n);
    ck_assert_mem_eq(a, b, n);

    /* unknown fields on the info, the body or the envelope */
    r.body_case = OBJMETA__RESPONSE__BODY_STORE;
    r.store = &sr;
    sr.info = &oi;
    oi.key = (char *)"k";
    ck_assert(rpc_fastpack_plan(&r, &fp));
    for (int where = 0; where < 3; where++) {
        ProtobufCMessage *m = where == 0 ? &oi.base : where == 1 ? &sr.base : &r.base;
        m->n_unknown_fields = 1;
        m->unknown_fields = &uf;
        ck_assert(!rpc_fastpack_plan(&r, &fp));
        n = rpc_response_pack(&r, a);
        ck_assert_uint_eq(protobuf_c_message_pack(&r.base, b), n);
        ck_assert_uint_eq(rpc_response_packed_size(&r), n);
        ck_assert_mem_eq(a, b, n);
        m->n_unknown_fields = 0;
        m->unknown_fields = NULL;
    }
}
END_TEST

/* A random string for requests: ASCII mostly, sometimes bytes over 0x7f or empty. */
static char *
rnd_req_str(pool *p)
{
    char *s = p->str[p->n++];
    size_t len = rnd(5) == 0 ? 0 : rnd(4) == 0 ? 100 + rnd(200) : 1 + rnd(30);

    for (size_t i = 0; i < len; i++)
        s[i] = (char)('a' + rnd(26));
    if (len > 0 && rnd(8) == 0)
        s[rnd(len)] = (char)(1 + rnd(255)); /* sometimes a control or non-ASCII byte */
    s[len] = '\0';
    return s;
}

typedef struct reqs {
    Objmeta__Request r;
    Objmeta__StoreRequest st;
    Objmeta__RetrieveRequest rt;
    Objmeta__HeadRequest hd;
    Objmeta__ExistsRequest ex;
    Objmeta__DeleteRequest dl;
    Objmeta__PingRequest pg;
} reqs;

/* A request string: rnd_req_str mostly, sometimes NULL / "" / any bytes (rnd_str). */
static char *
rnd_any_str(pool *p, bool wild)
{
    return wild && rnd(4) == 0 ? rnd_str(p) : rnd_req_str(p);
}

/* A random Request (mostly the hot bodies); wild: NULL strings and bodies, odd cases too. */
static void
rnd_request_msg(reqs *m, pool *p, bool wild)
{
    Objmeta__Request *r = &m->r;

    p->n = 0;
    objmeta__request__init(r);
    objmeta__store_request__init(&m->st);
    objmeta__retrieve_request__init(&m->rt);
    objmeta__head_request__init(&m->hd);
    objmeta__exists_request__init(&m->ex);
    objmeta__delete_request__init(&m->dl);
    objmeta__ping_request__init(&m->pg);
    r->id = rnd_u64();
    r->ring_epoch = rnd(3) == 0 ? rnd_u64() : 0;
    switch (rnd(7)) {
    case 0:
    case 1:
        r->body_case = OBJMETA__REQUEST__BODY_STORE;
        r->store = &m->st;
        m->st.bucket = rnd_any_str(p, wild);
        m->st.key = rnd_any_str(p, wild);
        m->st.data.len = rnd(4) == 0 ? 0 : rnd(2000);
        m->st.data.data = m->st.data.len ? p->data : NULL;
        m->st.metadata_json = rnd(2) ? rnd_any_str(p, wild) : (char *)"";
        m->st.content_type = rnd_any_str(p, wild);
        switch (rnd(3)) {
        case 0:
            m->st.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
            m->st.if_absent = (protobuf_c_boolean)rnd(wild ? 3 : 2); /* 2: any non-zero */
            break;
        case 1:
            m->st.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
            m->st.if_version = rnd_u64();
            break;
        default:
            break;
        }
        if (rnd(4) == 0) {
            m->st.forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
            m->st.forced_version = rnd_u64();
        }
        break;
    case 2:
        r->body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        r->retrieve = &m->rt;
        m->rt.bucket = rnd_any_str(p, wild);
        m->rt.key = rnd_any_str(p, wild);
        break;
    case 3:
        r->body_case = OBJMETA__REQUEST__BODY_HEAD;
        r->head = &m->hd;
        m->hd.bucket = rnd_any_str(p, wild);
        m->hd.key = rnd_any_str(p, wild);
        break;
    case 4:
        r->body_case = OBJMETA__REQUEST__BODY_EXISTS;
        r->exists = &m->ex;
        m->ex.bucket = rnd_any_str(p, wild);
        m->ex.key = rnd_any_str(p, wild);
        break;
    case 5:
        r->body_case = OBJMETA__REQUEST__BODY_DELETE;
        r->delete_ = &m->dl;
        m->dl.bucket = rnd_any_str(p, wild);
        m->dl.key = rnd_any_str(p, wild);
        if (rnd(3) == 0) {
            m->dl.condition_case = OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION;
            m->dl.if_version = rnd_u64();
        }
        if (rnd(4) == 0) {
            m->dl.forced_case = OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION;
            m->dl.forced_version = rnd_u64();
        }
        break;
    default:
        if (rnd(2)) {
            r->body_case = OBJMETA__REQUEST__BODY_PING;
            r->ping = &m->pg;
        }
        break;
    }
    if (wild && r->body_case != OBJMETA__REQUEST__BODY__NOT_SET && rnd(20) == 0)
        r->store = NULL; /* the oneof's pointer (all members share it) */
}

/* A random Request (mostly the hot bodies) packed by protobuf-c into out. */
static size_t
rnd_request(pool *p, uint8_t *out)
{
    reqs m;

    rnd_request_msg(&m, p, false);
    return protobuf_c_message_pack(&m.r.base, out);
}

/* Mutate a packed request the ways a peer (or a fuzzer) could. */
static size_t
mutate(uint8_t *b, size_t n, size_t cap, const uint8_t *other, size_t on)
{
    switch (rnd(6)) {
    case 0: /* flip bytes */
        for (int k = 0, m = 1 + (int)rnd(3); k < m && n > 0; k++)
            b[rnd(n)] ^= (uint8_t)(1 + rnd(255));
        return n;
    case 1: /* cut */
        return n > 0 ? rnd(n) : 0;
    case 2: /* append another message: protobuf merges the two */
        if (n + on <= cap) {
            memcpy(b + n, other, on);
            n += on;
        }
        return n;
    case 3: /* append a random field */
        if (n + 12 <= cap) {
            b[n++] = (uint8_t)rnd(256);
            for (int k = 0; k < 10; k++)
                b[n++] = (uint8_t)rnd(256);
        }
        return n;
    case 4: /* a random byte somewhere: set it to a tag */
        if (n > 0)
            b[rnd(n)] = (uint8_t)(rnd(2) ? 0x08 : 0x5a);
        return n;
    default:
        return n;
    }
}

START_TEST(fastunpack_matches_protobuf_c)
{
    uint64_t seed = tu_seed("fastunpack_matches_protobuf_c");
    pool *p = calloc(1, sizeof(*p));
    rpc_scratch *sc = malloc(sizeof(*sc));
    size_t cap = 64 * 1024;
    uint8_t *in = malloc(cap), *other = malloc(cap), *a = malloc(cap), *b = malloc(cap);
    unsigned handled_plain = 0, handled_mut = 0, plain = 0;

    rs = seed;
    ck_assert(p && sc && in && other && a && b);
    p->data = malloc(4096);
    ck_assert_ptr_nonnull(p->data);
    for (size_t i = 0; i < 4096; i++)
        p->data[i] = (uint8_t)tu_rand(&rs);
    rpc_scratch_init(sc);
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = rnd_request(p, in);
        bool mutated = rnd(2) == 0, handled = false;
        if (mutated) {
            size_t on = rnd_request(p, other);
            n = mutate(in, n, cap, other, on);
        } else {
            plain++;
        }
        ProtobufCAllocator *pa = rpc_scratch_take(sc);
        ck_assert_ptr_nonnull(pa);
        Objmeta__Request *fast = rpc_fastunpack_request(pa, in, n, &handled);
        Objmeta__Request *ref = objmeta__request__unpack(NULL, n, in);
        if (handled) {
            ck_assert_msg(ref != NULL,
                          "round %d (seed %llu): fast path took what protobuf-c rejects", round,
                          (unsigned long long)seed);
            ck_assert_ptr_nonnull(fast);
            size_t an = protobuf_c_message_get_packed_size(&fast->base);
            size_t bn = protobuf_c_message_get_packed_size(&ref->base);
            ck_assert_uint_le(an, cap);
            ck_assert_uint_eq(an, bn);
            ck_assert_uint_eq(protobuf_c_message_pack(&fast->base, a), an);
            ck_assert_uint_eq(protobuf_c_message_pack(&ref->base, b), bn);
            ck_assert_msg(memcmp(a, b, an) == 0, "round %d (seed %llu): decoded messages differ",
                          round, (unsigned long long)seed);
            ck_assert_int_eq(fast->body_case, ref->body_case);
            ck_assert(fast->body_case == OBJMETA__REQUEST__BODY_STORE ||
                      fast->body_case == OBJMETA__REQUEST__BODY_RETRIEVE ||
                      fast->body_case == OBJMETA__REQUEST__BODY_HEAD ||
                      fast->body_case == OBJMETA__REQUEST__BODY_EXISTS);
            if (fast->body_case == OBJMETA__REQUEST__BODY_STORE) {
                /* cases are part of the C struct, not only of the bytes */
                ck_assert_int_eq(fast->store->condition_case, ref->store->condition_case);
                ck_assert_int_eq(fast->store->forced_case, ref->store->forced_case);
                ck_assert_int_eq(fast->store->if_absent, ref->store->if_absent);
                ck_assert_str_eq(fast->store->key, ref->store->key);
            }
            if (mutated)
                handled_mut++;
            else
                handled_plain++;
        } else {
            ck_assert_ptr_null(fast);
        }
        if (ref != NULL)
            objmeta__request__free_unpacked(ref, NULL);
        rpc_scratch_done(sc, pa, NULL);
    }
    printf("fastunpack: %u of %u plain requests and %u mutated ones took the fast path\n",
           handled_plain, plain, handled_mut);
    ck_assert_uint_gt(handled_plain, plain / 3); /* the fast path is exercised */
    ck_assert_uint_gt(handled_mut, 0);
    rpc_scratch_fini(sc);
    free(sc);
    free(p->data);
    free(p);
    free(in);
    free(other);
    free(a);
    free(b);
}
END_TEST

/* The address a keyed request decodes to, or false for other requests. */
static bool
keyed_addr(const Objmeta__Request *r, const char **bucket, const char **key)
{
    switch (r->body_case) {
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        *bucket = r->retrieve->bucket;
        *key = r->retrieve->key;
        return true;
    case OBJMETA__REQUEST__BODY_HEAD:
        *bucket = r->head->bucket;
        *key = r->head->key;
        return true;
    case OBJMETA__REQUEST__BODY_EXISTS:
        *bucket = r->exists->bucket;
        *key = r->exists->key;
        return true;
    default:
        return false;
    }
}

/* The string field sl as the decoder gives it to C: up to its first NUL byte. */
static bool
slice_is(om_slice sl, const char *s)
{
    const uint8_t *nul = sl.n > 0 ? memchr(sl.p, 0, sl.n) : NULL;
    size_t n = nul != NULL ? (size_t)(nul - sl.p) : sl.n;

    return n == strlen(s) && (n == 0 || memcmp(sl.p, s, n) == 0);
}

/*
 * rpc_fastpeek_keyed (the server's read-ahead hints): on every keyed request
 * the fast decoder takes, the address it peeks is the decoded one; on any
 * bytes (mutated too, each in an allocation of its exact size so that ASan
 * sees a read past the end) it stays inside them.
 */
START_TEST(fastpeek_keyed_matches_decode)
{
    uint64_t seed = tu_seed("fastpeek_keyed_matches_decode");
    pool *p = calloc(1, sizeof(*p));
    rpc_scratch *sc = malloc(sizeof(*sc));
    size_t cap = 64 * 1024;
    uint8_t *in = malloc(cap), *other = malloc(cap);
    unsigned keyed = 0;

    rs = seed;
    ck_assert(p && sc && in && other);
    p->data = malloc(4096);
    ck_assert_ptr_nonnull(p->data);
    for (size_t i = 0; i < 4096; i++)
        p->data[i] = (uint8_t)tu_rand(&rs);
    rpc_scratch_init(sc);
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = rnd_request(p, in);
        bool handled = false, peeked;
        const char *bucket, *key;
        om_slice pb, pk;

        if (rnd(2) == 0)
            n = mutate(in, n, cap, other, rnd_request(p, other));
        uint8_t *exact = malloc(n > 0 ? n : 1);
        ck_assert_ptr_nonnull(exact);
        memcpy(exact, in, n);
        peeked = rpc_fastpeek_keyed(exact, n, &pb, &pk);
        if (peeked) {
            ck_assert(pb.n == 0 || (pb.p >= exact && pb.p + pb.n <= exact + n));
            ck_assert(pk.n == 0 || (pk.p >= exact && pk.p + pk.n <= exact + n));
        }
        ProtobufCAllocator *pa = rpc_scratch_take(sc);
        ck_assert_ptr_nonnull(pa);
        Objmeta__Request *fast = rpc_fastunpack_request(pa, exact, n, &handled);
        if (handled && keyed_addr(fast, &bucket, &key)) {
            keyed++;
            ck_assert_msg(peeked, "round %d (seed %llu): no hint for a keyed request", round,
                          (unsigned long long)seed);
            ck_assert_msg(slice_is(pb, bucket) && slice_is(pk, key),
                          "round %d (seed %llu): hint differs from the decoded address", round,
                          (unsigned long long)seed);
        }
        if (handled && fast->body_case == OBJMETA__REQUEST__BODY_STORE)
            ck_assert_msg(!peeked, "round %d (seed %llu): a hint for a Store", round,
                          (unsigned long long)seed);
        rpc_scratch_done(sc, pa, NULL);
        free(exact);
    }
    printf("fastpeek: %u keyed requests checked\n", keyed);
    ck_assert_uint_gt(keyed, ROUNDS / 20);
    rpc_scratch_fini(sc);
    free(sc);
    free(p->data);
    free(p);
    free(in);
    free(other);
}
END_TEST

START_TEST(fastpack_req_matches_protobuf_c)
{
    uint64_t seed = tu_seed("fastpack_req_matches_protobuf_c");
    pool *p = calloc(1, sizeof(*p));
    size_t cap = 64 * 1024;
    uint8_t *want = malloc(cap), *got = malloc(cap);
    unsigned fast = 0, hot = 0;

    rs = seed;
    ck_assert(p && want && got);
    p->data = malloc(4096);
    ck_assert_ptr_nonnull(p->data);
    for (size_t i = 0; i < 4096; i++)
        p->data[i] = (uint8_t)tu_rand(&rs);
    for (int round = 0; round < ROUNDS; round++) {
        reqs m;
        rpc_fastpack_req fp;
        rnd_request_msg(&m, p, true);
        size_t wn = protobuf_c_message_get_packed_size(&m.r.base);
        ck_assert_uint_le(wn, cap);
        ck_assert_uint_eq(protobuf_c_message_pack(&m.r.base, want), wn);
        ck_assert_uint_eq(rpc_request_packed_size(&m.r), wn);
        bool covered = m.r.store != NULL && m.r.body_case >= OBJMETA__REQUEST__BODY_STORE &&
                       m.r.body_case <= OBJMETA__REQUEST__BODY_DELETE;
        hot += covered;
        if (!rpc_fastpack_req_plan(&m.r, &fp)) {
            ck_assert_msg(!covered, "round %d (seed %llu): body %d not covered", round,
                          (unsigned long long)seed, (int)m.r.body_case);
            continue;
        }
        ck_assert(covered);
        fast++;
        ck_assert_uint_eq(fp.total, wn);
        memset(got, 0xa5, wn + 1);
        size_t gn = rpc_fastpack_req_write(&m.r, &fp, got);
        if (gn != wn || memcmp(got, want, wn) != 0) {
            hexdump_diff(got, want, wn);
            ck_abort_msg("round %d (seed %llu): fast %zu bytes, protobuf-c %zu bytes", round,
                         (unsigned long long)seed, gn, wn);
        }
        ck_assert_uint_eq(got[wn], 0xa5); /* nothing written past the end */
        /* the frame encoder takes the same path */
        om_buf fb = {0};
        ck_assert_int_eq(rpc_frame_encode(&fb, &m.r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
        ck_assert_uint_eq(fb.n, RPC_FRAME_HEADER_LEN + wn);
        ck_assert_uint_eq(om_get_be32(fb.p), wn);
        ck_assert_mem_eq(fb.p + RPC_FRAME_HEADER_LEN, want, wn);
        if (wn > 0)
            ck_assert_int_eq(rpc_frame_encode(&fb, &m.r.base, (uint32_t)wn - 1), OM_E_INVALID);
        om_buf_free(&fb);
    }
    printf("fastpack requests: %u of %u rounds covered\n", fast, ROUNDS);
    ck_assert_uint_eq(fast, hot);
    ck_assert_uint_gt(fast, ROUNDS / 2);
    free(p->data);
    free(p);
    free(want);
    free(got);
}
END_TEST

/* Pack a Response with protobuf-c: the bytes the decoders are compared on. */
static size_t
pack_response(const Objmeta__Response *r, uint8_t *out)
{
    return protobuf_c_message_pack(&r->base, out);
}

START_TEST(fastunpack_response_matches_protobuf_c)
{
    uint64_t seed = tu_seed("fastunpack_response_matches_protobuf_c");
    pool *p = calloc(1, sizeof(*p));
    rpc_scratch *sc = malloc(sizeof(*sc));
    size_t cap = 2 * BIG_DATA + 128 * 1024;
    uint8_t *in = malloc(cap), *other = malloc(cap), *a = malloc(cap), *b = malloc(cap);
    unsigned handled_plain = 0, handled_mut = 0, plain = 0;

    rs = seed;
    ck_assert(p && sc && in && other && a && b);
    p->data = malloc(BIG_DATA);
    ck_assert_ptr_nonnull(p->data);
    for (size_t i = 0; i < BIG_DATA; i++)
        p->data[i] = (uint8_t)tu_rand(&rs);
    rpc_scratch_init(sc);
    for (int round = 0; round < ROUNDS; round++) {
        msgs m;
        bool mutated = rnd(2) == 0, handled = false;
        ascii_strs = rnd(8) != 0;
        rnd_response(&m, p);
        size_t n = pack_response(&m.r, in);
        if (mutated) {
            rnd_response(&m, p);
            size_t on = pack_response(&m.r, other);
            n = mutate(in, n, cap, other, on);
        } else {
            plain++;
        }
        ProtobufCAllocator *pa = rpc_scratch_take(sc);
        ck_assert_ptr_nonnull(pa);
        Objmeta__Response *fast = rpc_fastunpack_response(pa, in, n, &handled);
        Objmeta__Response *ref = objmeta__response__unpack(NULL, n, in);
        if (handled) {
            ck_assert_msg(ref != NULL,
                          "round %d (seed %llu): fast path took what protobuf-c rejects", round,
                          (unsigned long long)seed);
            ck_assert_ptr_nonnull(fast);
            size_t an = protobuf_c_message_get_packed_size(&fast->base);
            size_t bn = protobuf_c_message_get_packed_size(&ref->base);
            ck_assert_uint_le(an, cap);
            ck_assert_uint_eq(an, bn);
            ck_assert_uint_eq(protobuf_c_message_pack(&fast->base, a), an);
            ck_assert_uint_eq(protobuf_c_message_pack(&ref->base, b), bn);
            ck_assert_msg(memcmp(a, b, an) == 0, "round %d (seed %llu): decoded messages differ",
                          round, (unsigned long long)seed);
            /* what the bytes do not show: cases, bools, present-but-empty strings */
            ck_assert_int_eq(fast->body_case, ref->body_case);
            ck_assert_int_eq(fast->status, ref->status);
            ck_assert_uint_eq(fast->id, ref->id);
            ck_assert_str_eq(fast->message, ref->message);
            switch (fast->body_case) {
            case OBJMETA__RESPONSE__BODY_EXISTS:
                ck_assert_int_eq(fast->exists->exists, ref->exists->exists);
                break;
            case OBJMETA__RESPONSE__BODY_DELETE:
                ck_assert_int_eq(fast->delete_->existed, ref->delete_->existed);
                break;
            case OBJMETA__RESPONSE__BODY_STORE:
                ck_assert_int_eq(fast->store->info == NULL, ref->store->info == NULL);
                if (fast->store->info != NULL)
                    ck_assert_str_eq(fast->store->info->key, ref->store->info->key);
                break;
            default:
                break;
            }
            if (mutated)
                handled_mut++;
            else
                handled_plain++;
        } else {
            ck_assert_ptr_null(fast);
        }
        if (ref != NULL)
            objmeta__response__free_unpacked(ref, NULL);
        rpc_scratch_done(sc, pa, NULL);
    }
    ascii_strs = false;
    printf("fastunpack responses: %u of %u plain and %u mutated took the fast path\n",
           handled_plain, plain, handled_mut);
    ck_assert_uint_gt(handled_plain, plain / 3); /* the fast path is exercised */
    ck_assert_uint_gt(handled_mut, 0);
    rpc_scratch_fini(sc);
    free(sc);
    free(p->data);
    free(p);
    free(in);
    free(other);
    free(a);
    free(b);
}
END_TEST

/* Request.request_id at the wire: the NUL rule, the length bound and the characters, by name. */
START_TEST(wire_check_request_id)
{
    static const struct {
        const char *rid;
        size_t n; /* wire length (a NUL inside counts) */
        bool ok;
        const char *why;
    } cases[] = {
        {"5f3a9c21-2a", 11, true, NULL},
        {"x", 1, true, NULL},
        {"has space", 9, false, "request_id: byte 0x20 at offset 3"},
        {"q\"uote", 6, false, "request_id: byte 0x22 at offset 1"},
        {"nul\0tail", 8, false, "request_id: contains a NUL byte at offset 3"},
        {"0123456789012345678901234567890123456789012345678901234567890123", 64, true, NULL},
        {"0123456789012345678901234567890123456789012345678901234567890123x", 65, false,
         "request_id: 65 bytes, at most 64"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Objmeta__Request r = OBJMETA__REQUEST__INIT;
        Objmeta__PingRequest pq = OBJMETA__PING_REQUEST__INIT;
        uint8_t buf[256], *p = buf;
        char err[256] = "";
        bool split = false;

        r.id = 7;
        r.body_case = OBJMETA__REQUEST__BODY_PING;
        r.ping = &pq;
        p += objmeta__request__pack(&r, p);
        *p++ = (uint8_t)(RPC_REQUEST_ID_FIELD << 3 | 2); /* the field by hand: NUL included */
        *p++ = (uint8_t)cases[i].n;
        memcpy(p, cases[i].rid, cases[i].n);
        p += cases[i].n;
        om_status st = rpc_wire_check_strings(&objmeta__request__descriptor, buf, (size_t)(p - buf),
                                              &split, err, sizeof(err));
        ck_assert_msg((st == OM_OK) == cases[i].ok, "case %zu: %s", i, err);
        if (!cases[i].ok)
            ck_assert_msg(strstr(err, cases[i].why) != NULL, "case %zu: %s", i, err);
    }
}
END_TEST

static Suite *
fastpack_suite(void)
{
    Suite *s = suite_create("rpc-fastpack");
    TCase *tc = tcase_create("fastpack");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fastpack_matches_protobuf_c);
    tcase_add_test(tc, fastpack_frames_match);
    tcase_add_test(tc, fastpack_id_in_front);
    tcase_add_test(tc, fastpack_falls_back);
    tcase_add_test(tc, fastunpack_matches_protobuf_c);
    tcase_add_test(tc, fastpeek_keyed_matches_decode);
    tcase_add_test(tc, fastpack_req_matches_protobuf_c);
    tcase_add_test(tc, fastunpack_response_matches_protobuf_c);
    tcase_add_test(tc, wire_check_request_id);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(fastpack_suite());
}
