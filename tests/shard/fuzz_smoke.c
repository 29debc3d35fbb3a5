/*
 * tests/shard/fuzz_smoke.c -- runs the entry point of fuzz_shard.c in every
 * build: real requests of every operation over a small key space (so that
 * stores, conditions, deletes and lists meet each other), the same requests
 * with bytes flipped and cut, encoded records mutated, and random bytes for
 * the token decoder and validators. Seeded; a trap or sanitizer report fails.
 */
#include <stdlib.h>
#include <string.h>

#include "objmeta.pb-c.h"
#include "shard/record.h"
#include "tu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_shard_fini(void);

static const char *const buckets[] = {"fuzz", "fuzz2", "Bad", "ab", "fz"};
static const char *const keys[] = {"a", "a/b", "a/c", "b", "\xc3\xa9/x", "\xff", "a/b/c", ""};
static const char *const metas[] = {"", "{}", "{\"k\":[1,2]}", "[1]", "{", "{\"a\":{\"b\":{}}}"};

static const char *
pick(const char *const *v, size_t n, uint64_t *seed)
{
    return v[tu_rand(seed) % n];
}

#define PICK(v, seed) pick((v), sizeof(v) / sizeof((v)[0]), (seed))

/* One packed request with a 1-byte target prefix (any value >= 3). */
static size_t
make_request(uint8_t *buf, size_t cap, uint64_t *seed)
{
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__RetrieveRequest rt = OBJMETA__RETRIEVE_REQUEST__INIT;
    Objmeta__ExistsRequest ex = OBJMETA__EXISTS_REQUEST__INIT;
    Objmeta__DeleteRequest de = OBJMETA__DELETE_REQUEST__INIT;
    Objmeta__ListRequest li = OBJMETA__LIST_REQUEST__INIT;
    uint8_t data[64];

    memset(data, 'd', sizeof(data));
    switch (tu_rand(seed) % 5) {
    case 0:
        st.bucket = (char *)PICK(buckets, seed);
        st.key = (char *)PICK(keys, seed);
        st.metadata_json = (char *)PICK(metas, seed);
        st.data.data = data;
        st.data.len = tu_rand(seed) % sizeof(data);
        if (tu_rand(seed) % 3 == 0) {
            st.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
            st.if_absent = 1;
        } else if (tu_rand(seed) % 3 == 0) {
            st.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
            st.if_version = tu_rand(seed) % 4;
        }
        if (tu_rand(seed) % 8 == 0) {
            st.forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
            st.forced_version = 1 + tu_rand(seed) % 100;
        }
        r.body_case = OBJMETA__REQUEST__BODY_STORE;
        r.store = &st;
        break;
    case 1:
        rt.bucket = (char *)PICK(buckets, seed);
        rt.key = (char *)PICK(keys, seed);
        r.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        r.retrieve = &rt;
        break;
    case 2:
        ex.bucket = (char *)PICK(buckets, seed);
        ex.key = (char *)PICK(keys, seed);
        r.body_case = OBJMETA__REQUEST__BODY_EXISTS;
        r.exists = &ex;
        break;
    case 3:
        de.bucket = (char *)PICK(buckets, seed);
        de.key = (char *)PICK(keys, seed);
        r.body_case = OBJMETA__REQUEST__BODY_DELETE;
        r.delete_ = &de;
        break;
    default:
        li.bucket = (char *)PICK(buckets, seed);
        li.prefix = (char *)PICK(keys, seed);
        li.delimiter = tu_rand(seed) % 2 ? "/" : "";
        li.start_after = tu_rand(seed) % 3 ? "" : (char *)PICK(keys, seed);
        li.max_keys = (uint32_t)(tu_rand(seed) % 5);
        r.body_case = OBJMETA__REQUEST__BODY_LIST;
        r.list = &li;
        break;
    }
    size_t n = objmeta__request__get_packed_size(&r);
    ck_assert_uint_lt(n + 1, cap);
    buf[0] = (uint8_t)(3 + tu_rand(seed) % 250);
    objmeta__request__pack(&r, buf + 1);
    return n + 1;
}

START_TEST(fuzz_entry_smoke)
{
    uint64_t seed = tu_seed("fuzz_entry_smoke");
    uint8_t buf[4096];

    setenv("FUZZ_SHARD_DIR", tu_tmpdir(), 1);
    for (int i = 0; i < 4000; i++) {
        size_t n = make_request(buf, sizeof(buf), &seed);
        if (i % 4 == 3) { /* flip a byte or cut the tail */
            if (tu_rand(&seed) % 2)
                buf[1 + tu_rand(&seed) % (n - 1)] ^= (uint8_t)(1 + tu_rand(&seed) % 255);
            else
                n = 1 + tu_rand(&seed) % n;
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    /* records: valid encodings mutated */
    for (int i = 0; i < 2000; i++) {
        shard_record r = {.type = SHARD_REC_LIVE,
                          .version = tu_rand(&seed),
                          .data = om_slice_from_str("payload"),
                          .size = 7,
                          .metadata = om_slice_from_str("{}"),
                          .content_type = om_slice_from_str("t/p")};
        om_buf b = OM_BUF_INIT;
        ck_assert_int_eq(om_buf_append_byte(&b, 0), OM_OK);
        om_buf enc = OM_BUF_INIT;
        ck_assert_int_eq(shard_record_encode(&r, &enc), OM_OK);
        ck_assert_int_eq(om_buf_append_slice(&b, om_buf_slice(&enc)), OM_OK);
        if (i % 2)
            b.p[1 + tu_rand(&seed) % enc.n] ^= (uint8_t)(1 + tu_rand(&seed) % 255);
        LLVMFuzzerTestOneInput(b.p, i % 3 ? b.n : 1 + tu_rand(&seed) % b.n);
        om_buf_free(&b);
        om_buf_free(&enc);
    }
    /* random bytes for every target */
    for (int i = 0; i < 3000; i++) {
        size_t n = 1 + tu_rand(&seed) % 200;
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)tu_rand(&seed);
        buf[0] = (uint8_t)(i % 4);
        LLVMFuzzerTestOneInput(buf, n);
    }
    fuzz_shard_fini();
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("shard-fuzz-smoke");
    TCase *tc = tcase_create("fuzz");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fuzz_entry_smoke);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
