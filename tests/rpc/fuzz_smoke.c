/*
 * tests/rpc/fuzz_smoke.c -- runs the fuzz entry point of fuzz_frame.c in
 * every build: valid streams of real requests (every operation), the same
 * streams mutated (bit flips, cuts, spliced length headers), and pure random
 * bytes, all seeded. A crash, sanitizer report or trap fails the test.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "tu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Append one encoded request of a random operation. */
static void
add_request(om_buf *b, uint64_t *seed)
{
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__ListRequest li = OBJMETA__LIST_REQUEST__INIT;
    Objmeta__DeleteRequest de = OBJMETA__DELETE_REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Ring ring = OBJMETA__RING__INIT;
    Objmeta__RingShard sh = OBJMETA__RING_SHARD__INIT, *shp = &sh;
    Objmeta__PingRequest pi = OBJMETA__PING_REQUEST__INIT;
    uint8_t data[300];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)tu_rand(seed);
    r.id = tu_rand(seed);
    r.ring_epoch = tu_rand(seed) % 3;
    switch (tu_rand(seed) % 5) {
    case 0:
        st.bucket = "bucket";
        st.key = "some/key";
        st.data.data = data;
        st.data.len = tu_rand(seed) % sizeof(data);
        st.metadata_json = "{\"a\":1}";
        st.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
        st.if_version = 42;
        st.forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
        st.forced_version = 43;
        r.body_case = OBJMETA__REQUEST__BODY_STORE;
        r.store = &st;
        break;
    case 1:
        li.bucket = "bucket";
        li.prefix = "a/";
        li.delimiter = "/";
        li.max_keys = 1000;
        r.body_case = OBJMETA__REQUEST__BODY_LIST;
        r.list = &li;
        break;
    case 2:
        de.bucket = "bucket";
        de.key = "k";
        de.condition_case = OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION;
        de.if_version = 7;
        r.body_case = OBJMETA__REQUEST__BODY_DELETE;
        r.delete_ = &de;
        break;
    case 3:
        sh.id = "s1";
        sh.addr = "127.0.0.1:1";
        sh.weight = 2;
        ring.epoch = 5;
        ring.vnodes_per_weight = 128;
        ring.n_shards = 1;
        ring.shards = &shp;
        sr.ring = &ring;
        r.body_case = OBJMETA__REQUEST__BODY_SET_RING;
        r.set_ring = &sr;
        break;
    default:
        pi.payload.data = data;
        pi.payload.len = tu_rand(seed) % 64;
        r.body_case = OBJMETA__REQUEST__BODY_PING;
        r.ping = &pi;
        break;
    }
    ck_assert_int_eq(rpc_frame_encode(b, &r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
}

START_TEST(fuzz_entry_smoke)
{
    uint64_t seed = tu_seed("fuzz_entry_smoke");
    om_buf in = OM_BUF_INIT;

    for (int round = 0; round < 3000; round++) {
        om_buf_reset(&in);
        uint8_t hdr[2] = {(uint8_t)tu_rand(&seed), (uint8_t)(tu_rand(&seed) % 3 == 0 ? 255 : 0)};
        if (hdr[1] == 0)
            hdr[1] = (uint8_t)(tu_rand(&seed) % 256);
        ck_assert_int_eq(om_buf_append(&in, hdr, 2), OM_OK);
        int kind = round % 4;
        if (kind == 3) {
            size_t n = tu_rand(&seed) % 512;
            for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(om_buf_append_byte(&in, (uint8_t)tu_rand(&seed)), OM_OK);
        } else {
            int nreq = 1 + (int)(tu_rand(&seed) % 5);
            for (int i = 0; i < nreq; i++)
                add_request(&in, &seed);
            if (kind >= 1 && in.n > 2) {
                /* Mutate: flip a few bytes, maybe cut the tail. */
                int flips = 1 + (int)(tu_rand(&seed) % 4);
                for (int f = 0; f < flips; f++)
                    in.p[2 + tu_rand(&seed) % (in.n - 2)] ^= (uint8_t)(1u << (tu_rand(&seed) % 8));
                if (kind == 2)
                    in.n = 2 + tu_rand(&seed) % (in.n - 2);
            }
        }
        ck_assert_int_eq(LLVMFuzzerTestOneInput(in.p, in.n), 0);
    }
    om_buf_free(&in);
}
END_TEST

static Suite *
fuzz_suite(void)
{
    Suite *s = suite_create("rpc-fuzz-smoke");
    TCase *tc = tcase_create("frame");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fuzz_entry_smoke);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(fuzz_suite());
}
