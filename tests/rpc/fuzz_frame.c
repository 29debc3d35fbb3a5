/*
 * tests/rpc/fuzz_frame.c -- libFuzzer target for the frame codec and the
 * Request decoder (rpc/frame.c, the generated protobuf-c code).
 *
 * Input layout: byte 0 chooses the chunk size the stream is fed in (1..16
 * bytes, or all at once), byte 1 the decoder's max_frame (small values make
 * oversize headers reachable); the rest is the byte stream as a server would
 * read it. Both decoders -- the byte-stream rpc_frame_dec and the evbuffer
 * adapter the server uses -- must agree frame for frame and on the error.
 * Every frame that decodes as a Request is re-encoded and decoded again:
 * protobuf re-encoding must be stable (pack(unpack(pack(x))) == pack(x))
 * whenever the re-encoding decodes (see fuzz_reencode for the one case of
 * protobuf-c where it does not).
 * The hand-written decoder of the hot Requests (rpc_fastunpack_request)
 * must decline or agree with protobuf-c: whatever it decodes, protobuf-c
 * decodes too, to a message with the same encoding. The same holds for
 * the Response decoder (rpc_fastunpack_response) on every frame read as a
 * Response; and the Request encoder the frame encoder uses for the hot
 * Requests (rpc_fastpack_req_*) must write protobuf_c_message_pack's bytes.
 * The read-ahead peek (rpc_fastpeek_keyed) must stay inside every frame.
 * Any disagreement traps. Built with -fsanitize=fuzzer only with
 * -Dfuzz=true; tests/rpc/fuzz_smoke.c runs the entry point in every build.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "rpc/rpc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(x)                                                                              \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

/* Re-encode a decoded request and check the encoding is a fixed point. */
static void
fuzz_reencode(const Objmeta__Request *r)
{
    om_buf a = OM_BUF_INIT, b = OM_BUF_INIT;

    if (rpc_frame_encode(&a, &r->base, UINT32_MAX) != OM_OK)
        __builtin_trap();
    {
        /* the frame encoder (hand-written for the hot bodies) writes protobuf-c's bytes */
        size_t n = protobuf_c_message_get_packed_size(&r->base);
        uint8_t *want = malloc(n + 1);
        FUZZ_CHECK(want != NULL && a.n == n + 4);
        FUZZ_CHECK(protobuf_c_message_pack(&r->base, want) == n);
        FUZZ_CHECK(memcmp(a.p + 4, want, n) == 0);
        free(want);
    }
    Objmeta__Request *r2 = objmeta__request__unpack(NULL, a.n - 4, a.p + 4);
    if (r2 == NULL) {
        /* protobuf-c keeps an unknown field numbered 0 when its tag is spelled
         * in two bytes (0x81 0x00) and re-emits it as 0x01, which it then
         * rejects. Harmless for us (the request is still answered); only
         * messages with unknown fields can do this. */
        FUZZ_CHECK(r->base.n_unknown_fields > 0 || r->body_case != OBJMETA__REQUEST__BODY__NOT_SET);
        om_buf_free(&a);
        return;
    }
    FUZZ_CHECK(r2->id == r->id && r2->body_case == r->body_case);
    FUZZ_CHECK(rpc_frame_encode(&b, &r2->base, UINT32_MAX) == OM_OK);
    FUZZ_CHECK(a.n == b.n && memcmp(a.p, b.p, a.n) == 0);
    objmeta__request__free_unpacked(r2, NULL);
    om_buf_free(&a);
    om_buf_free(&b);
}

/* The fast decoder agrees with protobuf-c's verdict `ref` on payload p. */
static void
fuzz_fastunpack(const uint8_t *p, size_t n, const Objmeta__Request *ref)
{
    static rpc_scratch *sc;
    bool handled = false;

    if (sc == NULL) {
        sc = malloc(sizeof(*sc));
        FUZZ_CHECK(sc != NULL);
        rpc_scratch_init(sc);
    }
    ProtobufCAllocator *pa = rpc_scratch_take(sc);
    FUZZ_CHECK(pa != NULL);
    Objmeta__Request *fast = rpc_fastunpack_request(pa, p, n, &handled);
    om_slice hb, hk;
    if (rpc_fastpeek_keyed(p, n, &hb, &hk)) {
        /* the read-ahead peek stays inside the frame */
        FUZZ_CHECK(hb.n == 0 || (hb.p >= p && hb.p + hb.n <= p + n));
        FUZZ_CHECK(hk.n == 0 || (hk.p >= p && hk.p + hk.n <= p + n));
    }
    if (handled) {
        om_buf a = OM_BUF_INIT, b = OM_BUF_INIT;
        FUZZ_CHECK(fast != NULL && ref != NULL);
        FUZZ_CHECK(rpc_frame_encode(&a, &fast->base, UINT32_MAX) == OM_OK);
        FUZZ_CHECK(rpc_frame_encode(&b, &ref->base, UINT32_MAX) == OM_OK);
        FUZZ_CHECK(a.n == b.n && memcmp(a.p, b.p, a.n) == 0);
        om_buf_free(&a);
        om_buf_free(&b);
    } else {
        FUZZ_CHECK(fast == NULL);
    }
    rpc_scratch_done(sc, pa, NULL);
}

/* The same for the Response decoder: p read as a Response, protobuf-c's verdict ref. */
static void
fuzz_fastunpack_response(const uint8_t *p, size_t n)
{
    static rpc_scratch *sc;
    bool handled = false;

    if (sc == NULL) {
        sc = malloc(sizeof(*sc));
        FUZZ_CHECK(sc != NULL);
        rpc_scratch_init(sc);
    }
    Objmeta__Response *ref = objmeta__response__unpack(NULL, n, p);
    ProtobufCAllocator *pa = rpc_scratch_take(sc);
    FUZZ_CHECK(pa != NULL);
    Objmeta__Response *fast = rpc_fastunpack_response(pa, p, n, &handled);
    if (handled) {
        om_buf a = OM_BUF_INIT, b = OM_BUF_INIT;
        FUZZ_CHECK(fast != NULL && ref != NULL);
        FUZZ_CHECK(fast->body_case == ref->body_case && fast->status == ref->status);
        FUZZ_CHECK(rpc_frame_encode(&a, &fast->base, UINT32_MAX) == OM_OK);
        FUZZ_CHECK(rpc_frame_encode(&b, &ref->base, UINT32_MAX) == OM_OK);
        FUZZ_CHECK(a.n == b.n && memcmp(a.p, b.p, a.n) == 0);
        om_buf_free(&a);
        om_buf_free(&b);
    } else {
        FUZZ_CHECK(fast == NULL);
    }
    rpc_scratch_done(sc, pa, NULL);
    if (ref != NULL)
        objmeta__response__free_unpacked(ref, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = data[0] < 240 ? (size_t)(data[0] % 16) + 1 : SIZE_MAX;
    uint32_t max_frame = data[1] < 128 ? (uint32_t)data[1] * 8u : RPC_DEFAULT_MAX_FRAME;
    data += 2;
    size -= 2;

    rpc_frame_dec d;
    struct evbuffer *e = evbuffer_new();
    om_status dst = OM_E_NOTFOUND, est = OM_E_NOTFOUND;
    size_t pos = 0;

    FUZZ_CHECK(e != NULL);
    rpc_frame_dec_init(&d, max_frame);
    while (pos < size) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        FUZZ_CHECK(rpc_frame_dec_feed(&d, data + pos, n) == OM_OK);
        FUZZ_CHECK(evbuffer_add(e, data + pos, n) == 0);
        pos += n;
        for (;;) {
            om_slice f, g;
            uint32_t len = 0;
            dst = rpc_frame_dec_next(&d, &f);
            est = rpc_frame_evb_peek(e, max_frame, &len);
            FUZZ_CHECK(dst == est);
            if (dst != OM_OK)
                break;
            FUZZ_CHECK(len == f.n);
            FUZZ_CHECK(rpc_frame_evb_pullup(e, len, &g) == OM_OK);
            FUZZ_CHECK(memcmp(f.p, g.p, f.n) == 0);
            Objmeta__Request *r = objmeta__request__unpack(NULL, f.n, f.p);
            fuzz_fastunpack(f.p, f.n, r);
            fuzz_fastunpack_response(f.p, f.n);
            rpc_frame_evb_drain(e, len);
            if (r != NULL) {
                fuzz_reencode(r);
                objmeta__request__free_unpacked(r, NULL);
            }
        }
        if (dst == OM_E_CORRUPT) {
            FUZZ_CHECK(d.bad_len > max_frame);
            break; /* the stream is not trusted past a bad header */
        }
    }
    if (dst != OM_E_CORRUPT)
        FUZZ_CHECK(rpc_frame_dec_pending(&d) == evbuffer_get_length(e));
    rpc_frame_dec_fini(&d);
    evbuffer_free(e);
    return 0;
}
