/*
 * tests/rpc/test_frame.c -- unit suite for the frame codec (rpc/frame.c):
 * encode/decode round trips, a valid stream fed in every two-way split and
 * one byte at a time, seeded random splits, zero-length frames, oversize
 * headers (sticky error), truncated streams, the evbuffer adapter, and the
 * id rewrite used to forward encoded responses.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "tu.h"
#include "util/coding.h"

#define NFRAMES 6

/* A stream of NFRAMES ping requests of varied sizes (one empty message). */
typedef struct stream {
    om_buf bytes;
    size_t payload_len[NFRAMES];
    uint64_t id[NFRAMES];
} stream;

static void
stream_build(stream *s)
{
    static const size_t sizes[NFRAMES] = {0, 1, 17, 300, 5000, 70000};
    uint8_t *data = malloc(70000);

    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < 70000; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    s->bytes = OM_BUF_INIT;
    for (int i = 0; i < NFRAMES; i++) {
        Objmeta__Request r = OBJMETA__REQUEST__INIT;
        Objmeta__PingRequest p = OBJMETA__PING_REQUEST__INIT;
        if (i == 0) {
            /* An empty message: a zero-length frame. */
            s->id[i] = 0;
            ck_assert_int_eq(rpc_frame_encode(&s->bytes, &r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
            s->payload_len[i] = 0;
            continue;
        }
        r.id = 1000 + (uint64_t)i;
        r.body_case = OBJMETA__REQUEST__BODY_PING;
        r.ping = &p;
        p.payload.data = data;
        p.payload.len = sizes[i];
        s->id[i] = r.id;
        s->payload_len[i] = protobuf_c_message_get_packed_size(&r.base);
        ck_assert_int_eq(rpc_frame_encode(&s->bytes, &r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
    }
    free(data);
}

/* Check one decoded frame against the stream's i-th message. */
static void
check_frame(const stream *s, int i, om_slice f)
{
    ck_assert_uint_eq(f.n, s->payload_len[i]);
    Objmeta__Request *r = objmeta__request__unpack(NULL, f.n, f.p);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, s->id[i]);
    if (i > 0) {
        ck_assert_int_eq(r->body_case, OBJMETA__REQUEST__BODY_PING);
        /* One assertion per frame: Check's ck_assert is costly in a byte loop. */
        size_t bad = r->ping->payload.len;
        for (size_t k = 0; k < r->ping->payload.len && bad == r->ping->payload.len; k++)
            if (r->ping->payload.data[k] != (uint8_t)(k * 31 + 7))
                bad = k;
        ck_assert_uint_eq(bad, r->ping->payload.len);
    }
    objmeta__request__free_unpacked(r, NULL);
}

/* Feed the stream in the given chunk boundaries and check every frame comes out once. */
static void
feed_in_chunks(const stream *s, const size_t *cuts, size_t ncuts)
{
    rpc_frame_dec d;
    size_t pos = 0;
    int got = 0;

    rpc_frame_dec_init(&d, RPC_DEFAULT_MAX_FRAME);
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : s->bytes.n;
        /* Plain checks in this hot loop: each ck_assert writes to Check's pipe. */
        if (rpc_frame_dec_feed(&d, s->bytes.p + pos, end - pos) != OM_OK)
            ck_abort_msg("feed failed at %zu", pos);
        pos = end;
        om_slice f;
        om_status st;
        while ((st = rpc_frame_dec_next(&d, &f)) == OM_OK) {
            if (got >= NFRAMES)
                ck_abort_msg("extra frame at %zu", pos);
            check_frame(s, got, f);
            got++;
        }
        if (st != OM_E_NOTFOUND)
            ck_abort_msg("decoder error %d at %zu", (int)st, pos);
    }
    ck_assert_int_eq(got, NFRAMES);
    ck_assert_uint_eq(rpc_frame_dec_pending(&d), 0);
    rpc_frame_dec_fini(&d);
}

START_TEST(frame_roundtrip_whole)
{
    stream s;
    stream_build(&s);
    feed_in_chunks(&s, NULL, 0);
    om_buf_free(&s.bytes);
}
END_TEST

START_TEST(frame_every_two_way_split)
{
    stream s;
    stream_build(&s);
    /* Every cut point in the small frames, and a stride through the large one. */
    for (size_t k = 0; k <= s.bytes.n; k += (k < 6000 ? 1 : 97)) {
        size_t cut = k;
        feed_in_chunks(&s, &cut, 1);
    }
    om_buf_free(&s.bytes);
}
END_TEST

START_TEST(frame_one_byte_at_a_time)
{
    stream s;
    stream_build(&s);
    size_t *cuts = malloc(s.bytes.n * sizeof(*cuts));
    ck_assert_ptr_nonnull(cuts);
    for (size_t i = 0; i < s.bytes.n; i++)
        cuts[i] = i + 1;
    feed_in_chunks(&s, cuts, s.bytes.n - 1);
    free(cuts);
    om_buf_free(&s.bytes);
}
END_TEST

START_TEST(frame_random_splits)
{
    stream s;
    uint64_t seed = tu_seed("frame_random_splits");
    stream_build(&s);
    size_t *cuts = malloc(s.bytes.n * sizeof(*cuts));
    ck_assert_ptr_nonnull(cuts);
    for (int round = 0; round < 300; round++) {
        size_t n = 0, pos = 0;
        uint64_t maxchunk = 1 + tu_rand(&seed) % (round % 3 == 0 ? 8 : 20000);
        for (;;) {
            pos += 1 + tu_rand(&seed) % maxchunk;
            if (pos >= s.bytes.n)
                break;
            cuts[n++] = pos;
        }
        feed_in_chunks(&s, cuts, n);
    }
    free(cuts);
    om_buf_free(&s.bytes);
}
END_TEST

START_TEST(frame_zero_length)
{
    rpc_frame_dec d;
    uint8_t z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    om_slice f;

    rpc_frame_dec_init(&d, 16);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, z, sizeof(z)), OM_OK);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_OK);
    ck_assert_uint_eq(f.n, 0);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_OK);
    ck_assert_uint_eq(f.n, 0);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_NOTFOUND);
    /* An empty message decodes: a Request with id 0 and no operation. */
    Objmeta__Request *r = objmeta__request__unpack(NULL, 0, (const uint8_t *)"");
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 0);
    ck_assert_int_eq(r->body_case, OBJMETA__REQUEST__BODY__NOT_SET);
    objmeta__request__free_unpacked(r, NULL);
    rpc_frame_dec_fini(&d);
}
END_TEST

START_TEST(frame_oversize_is_sticky)
{
    rpc_frame_dec d;
    uint8_t h[4];
    om_slice f;

    /* Exactly max is fine, max + 1 is not. */
    rpc_frame_dec_init(&d, 100);
    om_put_be32(h, 100);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, h, 4), OM_OK);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_NOTFOUND);
    rpc_frame_dec_fini(&d);

    rpc_frame_dec_init(&d, 100);
    om_put_be32(h, 101);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, h, 4), OM_OK);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_CORRUPT);
    ck_assert_uint_eq(d.bad_len, 101);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, "x", 1), OM_E_CORRUPT);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_CORRUPT);
    rpc_frame_dec_fini(&d);

    /* A 4 GiB - 1 length with the default maximum, split inside the header. */
    rpc_frame_dec_init(&d, RPC_DEFAULT_MAX_FRAME);
    om_put_be32(h, 0xffffffffu);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, h, 3), OM_OK);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_NOTFOUND);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, h + 3, 1), OM_OK);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_CORRUPT);
    ck_assert_uint_eq(d.bad_len, 0xffffffffu);
    rpc_frame_dec_fini(&d);
    ck_assert_int_eq(rpc_frame_check_len(RPC_DEFAULT_MAX_FRAME, RPC_DEFAULT_MAX_FRAME), OM_OK);
    ck_assert_int_eq(rpc_frame_check_len(RPC_DEFAULT_MAX_FRAME + 1, RPC_DEFAULT_MAX_FRAME),
                     OM_E_CORRUPT);
}
END_TEST

START_TEST(frame_truncated)
{
    stream s;
    rpc_frame_dec d;
    om_slice f;
    int got = 0;

    stream_build(&s);
    rpc_frame_dec_init(&d, RPC_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(rpc_frame_dec_feed(&d, s.bytes.p, s.bytes.n - 1), OM_OK);
    while (rpc_frame_dec_next(&d, &f) == OM_OK)
        check_frame(&s, got++, f);
    ck_assert_int_eq(got, NFRAMES - 1);
    ck_assert_uint_gt(rpc_frame_dec_pending(&d), 0);
    ck_assert_int_eq(rpc_frame_dec_next(&d, &f), OM_E_NOTFOUND);
    rpc_frame_dec_fini(&d);
    om_buf_free(&s.bytes);
}
END_TEST

START_TEST(frame_encode_too_large)
{
    om_buf b = OM_BUF_INIT;
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest p = OBJMETA__PING_REQUEST__INIT;
    uint8_t data[200] = {0};

    r.body_case = OBJMETA__REQUEST__BODY_PING;
    r.ping = &p;
    p.payload.data = data;
    p.payload.len = sizeof(data);
    ck_assert_int_eq(rpc_frame_encode(&b, &r.base, 100), OM_E_INVALID);
    ck_assert_uint_eq(b.n, 0);
    ck_assert_int_eq(rpc_frame_encode(&b, &r.base, 1000), OM_OK);
    ck_assert_uint_eq(b.n, 4 + protobuf_c_message_get_packed_size(&r.base));
    ck_assert_uint_eq(om_get_be32(b.p), b.n - 4);

    struct evbuffer *e = evbuffer_new();
    size_t n = 0;
    ck_assert_int_eq(rpc_frame_encode_evb(e, &r.base, 100, &n), OM_E_INVALID);
    ck_assert_uint_eq(evbuffer_get_length(e), 0);
    ck_assert_int_eq(rpc_frame_encode_evb(e, &r.base, 1000, &n), OM_OK);
    ck_assert_uint_eq(n, b.n);
    ck_assert_uint_eq(evbuffer_get_length(e), b.n);
    uint8_t *copy = malloc(n);
    evbuffer_copyout(e, copy, n);
    ck_assert_mem_eq(copy, b.p, n);
    free(copy);
    evbuffer_free(e);
    om_buf_free(&b);
}
END_TEST

START_TEST(frame_evbuffer_adapter)
{
    stream s;
    uint64_t seed = tu_seed("frame_evbuffer_adapter");
    struct evbuffer *e = evbuffer_new();
    size_t pos = 0;
    int got = 0;

    stream_build(&s);
    while (pos < s.bytes.n) {
        size_t n = 1 + tu_rand(&seed) % 3000;
        if (n > s.bytes.n - pos)
            n = s.bytes.n - pos;
        /* Add in small pieces so frames span evbuffer chains. */
        evbuffer_add(e, s.bytes.p + pos, n);
        pos += n;
        uint32_t len;
        om_status st;
        while ((st = rpc_frame_evb_peek(e, RPC_DEFAULT_MAX_FRAME, &len)) == OM_OK) {
            om_slice f;
            ck_assert_int_eq(rpc_frame_evb_pullup(e, len, &f), OM_OK);
            check_frame(&s, got++, f);
            rpc_frame_evb_drain(e, len);
        }
        ck_assert_int_eq(st, OM_E_NOTFOUND);
    }
    ck_assert_int_eq(got, NFRAMES);
    ck_assert_uint_eq(evbuffer_get_length(e), 0);

    uint8_t h[4];
    uint32_t len = 0;
    om_put_be32(h, 0xffffffffu);
    evbuffer_add(e, h, 4);
    ck_assert_int_eq(rpc_frame_evb_peek(e, RPC_DEFAULT_MAX_FRAME, &len), OM_E_CORRUPT);
    ck_assert_uint_eq(len, 0xffffffffu);
    evbuffer_free(e);
    om_buf_free(&s.bytes);
}
END_TEST

/* Rewrite id to new_id and check: decodes, id replaced, the rest byte-equal to a re-pack. */
static void
check_rewrite(const uint8_t *p, size_t n, uint64_t new_id, const Objmeta__Response *want)
{
    size_t len = 0;
    ck_assert_int_eq(rpc_frame_id_rewrite_len(p, n, new_id, &len), OM_OK);
    uint8_t *out = malloc(len + 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(rpc_frame_id_rewrite(p, n, new_id, out), len);
    Objmeta__Response *got = objmeta__response__unpack(NULL, len, out);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got->id, new_id);
    ck_assert_int_eq(got->status, want->status);
    ck_assert_str_eq(got->message, want->message);
    ck_assert_int_eq(got->body_case, want->body_case);
    /* Re-packing the expected message with the new id gives the same bytes
     * (protobuf-c writes id first, the other fields in number order). */
    Objmeta__Response w = *want;
    w.id = new_id;
    size_t wl = protobuf_c_message_get_packed_size(&w.base);
    uint8_t *wb = malloc(wl + 1);
    ck_assert_ptr_nonnull(wb);
    protobuf_c_message_pack(&w.base, wb);
    ck_assert_uint_eq(wl, len);
    ck_assert(memcmp(wb, out, len) == 0);
    free(wb);
    objmeta__response__free_unpacked(got, NULL);
    free(out);
}

START_TEST(frame_id_rewrite)
{
    Objmeta__Response r = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
    uint8_t data[300], buf[1024], odd[1100];
    const uint64_t ids[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);
    pr.payload.data = data;
    pr.payload.len = sizeof(data);
    r.status = OBJMETA__STATUS__NOT_FOUND;
    r.message = "a message";
    r.body_case = OBJMETA__RESPONSE__BODY_PING;
    r.ping = &pr;
    for (size_t a = 0; a < sizeof(ids) / sizeof(ids[0]); a++) {
        r.id = ids[a];
        size_t n = protobuf_c_message_pack(&r.base, buf);
        for (size_t b = 0; b < sizeof(ids) / sizeof(ids[0]); b++)
            check_rewrite(buf, n, ids[b], &r);
    }
    /* The id elsewhere than first, and twice (the last wins on decode):
     * every occurrence goes. Layout: [fields without id][id=5][rest][id=9]. */
    r.id = 0;
    size_t n = protobuf_c_message_pack(&r.base, buf);
    size_t o = 0;
    odd[o++] = 0x10; /* status, field 2 varint */
    odd[o++] = OBJMETA__STATUS__NOT_FOUND;
    odd[o++] = 0x08; /* id 5 */
    odd[o++] = 5;
    ck_assert_uint_eq(buf[0], 0x10); /* the packed message starts with status */
    memcpy(odd + o, buf + 2, n - 2);
    o += n - 2;
    odd[o++] = 0x08; /* id 9 */
    odd[o++] = 9;
    Objmeta__Response *dec = objmeta__response__unpack(NULL, o, odd);
    ck_assert_ptr_nonnull(dec);
    ck_assert_uint_eq(dec->id, 9);
    objmeta__response__free_unpacked(dec, NULL);
    check_rewrite(odd, o, 77, &r);
    check_rewrite(odd, o, 0, &r);
    /* Unknown fields of every wire type are kept: field 99 (varint, fixed64,
     * fixed32, bytes) appended after the known ones. */
    uint8_t unk[64];
    size_t u = 0;
    memcpy(unk, "\x98\x06\x2a", 3); /* field 99 varint 42 */
    u += 3;
    memcpy(unk + u,
           "\x99\x06"
           "12345678",
           10); /* field 99 fixed64 */
    u += 10;
    memcpy(unk + u,
           "\x9d\x06"
           "abcd",
           6); /* field 99 fixed32 */
    u += 6;
    memcpy(unk + u, "\x9a\x06\x03xyz", 6); /* field 99 bytes */
    u += 6;
    uint8_t with_unk[1200], out[1300];
    r.id = 4;
    n = protobuf_c_message_pack(&r.base, with_unk);
    memcpy(with_unk + n, unk, u);
    size_t len = 0;
    ck_assert_int_eq(rpc_frame_id_rewrite_len(with_unk, n + u, 1000, &len), OM_OK);
    ck_assert_uint_eq(len, n + u + 1); /* id 4 (1 byte) -> id 1000 (2 bytes) */
    ck_assert_uint_eq(rpc_frame_id_rewrite(with_unk, n + u, 1000, out), len);
    ck_assert(memcmp(out + len - u, unk, u) == 0);
    /* Malformed top levels are refused, never read past the end. */
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
        {"\x08", 1},     /* tag without its varint */
        {"\x08\x80", 2}, /* truncated varint */
        {"\x1a\x05"
         "abc",
         5},         /* length past the end */
        {"\x1a", 1}, /* length missing */
        {"\x09"
         "1234567",
         8}, /* fixed64 cut short */
        {"\x0d"
         "123",
         4},             /* fixed32 cut short */
        {"\x0b\x0c", 2}, /* group wire types */
        {"\x00\x01", 2}, /* field 0 */
        {"\x80", 1},     /* truncated tag */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(rpc_frame_id_rewrite_len((const uint8_t *)bad[i].p, bad[i].n, 7, &len) ==
                          OM_E_CORRUPT,
                      "bad case %zu", i);
    /* An empty message is a valid one: only the new id. */
    ck_assert_int_eq(rpc_frame_id_rewrite_len(buf, 0, 300, &len), OM_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_uint_eq(rpc_frame_id_rewrite(buf, 0, 300, out), 3);
    ck_assert(memcmp(out, "\x08\xac\x02", 3) == 0);
}
END_TEST

static Suite *
frame_suite(void)
{
    Suite *s = suite_create("rpc-frame");
    TCase *tc = tcase_create("decode");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, frame_roundtrip_whole);
    tcase_add_test(tc, frame_every_two_way_split);
    tcase_add_test(tc, frame_one_byte_at_a_time);
    tcase_add_test(tc, frame_random_splits);
    tcase_add_test(tc, frame_zero_length);
    tcase_add_test(tc, frame_oversize_is_sticky);
    tcase_add_test(tc, frame_truncated);
    suite_add_tcase(s, tc);
    tc = tcase_create("encode");
    tcase_add_test(tc, frame_encode_too_large);
    tcase_add_test(tc, frame_evbuffer_adapter);
    tcase_add_test(tc, frame_id_rewrite);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(frame_suite());
}
