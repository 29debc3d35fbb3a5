/*
 * tests/util/test_base64url.c -- unit suite for util/base64url: the RFC 4648
 * vectors, the url alphabet, random round trips, and strictness: every
 * string of up to three characters decodes if and only if it is the
 * encoding of what it decodes to (padding, foreign characters, impossible
 * lengths and non-canonical trailing bits are rejected).
 */
#include <string.h>

#include "tu.h"
#include "util/base64url.h"

static om_status
enc(const char *in, size_t n, om_buf *out)
{
    om_buf_reset(out);
    return om_base64url_encode(om_slice_make(in, n), out);
}

static om_status
dec(const char *in, om_buf *out)
{
    om_buf_reset(out);
    return om_base64url_decode(om_slice_from_str(in), out);
}

START_TEST(rfc4648_vectors)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const text[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    om_buf b = OM_BUF_INIT;

    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        ck_assert_int_eq(enc(plain[i], strlen(plain[i]), &b), OM_OK);
        ck_assert_uint_eq(b.n, strlen(text[i]));
        ck_assert_int_eq(memcmp(b.p, text[i], b.n), 0);
        ck_assert_int_eq(dec(text[i], &b), OM_OK);
        ck_assert_uint_eq(b.n, strlen(plain[i]));
        ck_assert_int_eq(memcmp(b.p, plain[i], b.n), 0);
    }
    /* the url alphabet: 62 is '-', 63 is '_' */
    ck_assert_int_eq(enc("\xfb\xff\xbf", 3, &b), OM_OK);
    ck_assert_int_eq(memcmp(b.p, "-_-_", 4), 0);
    /* encode appends */
    om_buf_reset(&b);
    ck_assert_int_eq(om_buf_append(&b, "c1", 2), OM_OK);
    ck_assert_int_eq(om_base64url_encode(om_slice_make("foo", 3), &b), OM_OK);
    ck_assert_uint_eq(b.n, 6);
    ck_assert_int_eq(memcmp(b.p, "c1Zm9v", 6), 0);
    om_buf_free(&b);
}
END_TEST

START_TEST(rejects_non_canonical_text)
{
    static const char *const bad[] = {
        "Zg==", "Zm8=",  "Zm9v=",  "=",                              /* padding */
        "Z",    "Zm9vY",                                             /* one character over */
        "Zh",   "Zm9",   "Zm9vYh", "Zm9vYmF",                        /* unused low bits set */
        "Zm+v", "Zm/v",  "Zm9v\n", "Zm 9v",   "Zm.v", "Zm9\xc3\xa9", /* outside the alphabet */
    };
    om_buf b = OM_BUF_INIT;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(dec(bad[i], &b) == OM_E_INVALID, "accepted \"%s\"", bad[i]);
    /* a NUL inside the text */
    om_buf_reset(&b);
    ck_assert_int_eq(om_base64url_decode(om_slice_make("Zm\0v", 4), &b), OM_E_INVALID);
    om_buf_free(&b);
}
END_TEST

/* Every string of 1..3 characters over all byte values: accepted iff canonical. */
START_TEST(accepts_exactly_the_canonical_forms)
{
    om_buf d = OM_BUF_INIT, e = OM_BUF_INIT;
    char s[4];
    size_t accepted = 0;

    for (int len = 1; len <= 3; len++) {
        size_t total = (size_t)1 << (8 * len);
        for (size_t x = 0; x < total; x++) {
            for (int j = 0; j < len; j++)
                s[j] = (char)(x >> (8 * j));
            om_buf_reset(&d);
            om_status st = om_base64url_decode(om_slice_make(s, (size_t)len), &d);
            if (st != OM_OK)
                continue;
            accepted++;
            om_buf_reset(&e);
            ck_assert_int_eq(om_base64url_encode(om_buf_slice(&d), &e), OM_OK);
            ck_assert_uint_eq(e.n, (size_t)len);
            ck_assert_int_eq(memcmp(e.p, s, (size_t)len), 0);
        }
    }
    /* no 1-char text; 2 chars carry 1 byte (256 texts); 3 chars carry 2 bytes (65536) */
    ck_assert_uint_eq(accepted, 256 + 65536);
    om_buf_free(&d);
    om_buf_free(&e);
}
END_TEST

START_TEST(random_round_trips)
{
    uint64_t rs = tu_seed("base64url.random_round_trips");
    uint8_t in[300];
    om_buf e = OM_BUF_INIT, d = OM_BUF_INIT;

    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(tu_rand(&rs) % sizeof(in));
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)tu_rand(&rs);
        om_buf_reset(&e);
        om_buf_reset(&d);
        ck_assert_int_eq(om_base64url_encode(om_slice_make(in, n), &e), OM_OK);
        ck_assert_uint_eq(e.n, n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0));
        ck_assert_int_eq(om_base64url_decode(om_buf_slice(&e), &d), OM_OK);
        ck_assert_uint_eq(d.n, n);
        ck_assert(n == 0 || memcmp(d.p, in, n) == 0);
    }
    om_buf_free(&e);
    om_buf_free(&d);
}
END_TEST

static Suite *
base64url_suite(void)
{
    Suite *s = suite_create("base64url");
    TCase *tc = tcase_create("codec");

    tcase_add_test(tc, rfc4648_vectors);
    tcase_add_test(tc, rejects_non_canonical_text);
    tcase_add_test(tc, accepts_exactly_the_canonical_forms);
    tcase_add_test(tc, random_round_trips);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(base64url_suite());
}
