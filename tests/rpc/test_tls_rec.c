/*
 * tests/rpc/test_tls_rec.c -- the TLS 1.3 record layer (rpc/tls_rec.c) on
 * its own: a writer and a reader sharing a traffic secret, as the two ends
 * of one direction of a connection. (Against OpenSSL's own record layer:
 * tests/rpc/test_rpc_tls.c.)
 *
 *   roundtrip  records of 0 .. 16,384 bytes under each suite come out as
 *              they went in; unknown suites and secret lengths are refused
 *   tamper     a changed bit anywhere in a record (header, body, tag), a
 *              record opened twice or out of order: refused, nothing
 *              delivered, and the layer refuses everything after
 *   headers    an unprotected record, one too long or too short
 *   update     the write key's record limit: a KeyUpdate goes first, the
 *              reader follows it; a KeyUpdate that asks for ours gets one
 *   messages   padding, alerts (close_notify, fatal, the one we send on a
 *              failure), tickets to a client across records, and what
 *              neither side may send
 *   fuzz       the fuzz target's entry point (fuzz_tls_rec.c) over seeded
 *              random inputs
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/tls_rec.h"
#include "tu.h"

#define BUF (TLS_REC_HEADER + TLS_REC_PLAIN_MAX + TLS_REC_OVERHEAD)

static const unsigned suite_ids[] = {0x1301, 0x1302, 0x1303};
static const size_t suite_hash[] = {32, 48, 32};

/* One direction: w seals what r opens (r is the server's reader). */
typedef struct pair {
    tls_rec *w, *r;
} pair;

static pair
pair_new(unsigned suite, size_t slen)
{
    uint8_t a[TLS_REC_SECRET_MAX], b[TLS_REC_SECRET_MAX];
    pair p;

    for (size_t i = 0; i < sizeof(a); i++) {
        a[i] = (uint8_t)(i * 7 + 1);
        b[i] = (uint8_t)(i * 13 + 5);
    }
    /* w writes with a, r reads with a; their other directions use b */
    p.w = tls_rec_new(suite, b, a, slen, false);
    p.r = tls_rec_new(suite, a, b, slen, true);
    ck_assert(p.w != NULL && p.r != NULL);
    return p;
}

static void
pair_free(pair p)
{
    tls_rec_free(p.w);
    tls_rec_free(p.r);
}

/* Seal n bytes of pattern k of type ct from w into rec; its length. */
static size_t
seal(tls_rec *w, uint8_t ct, size_t n, int k, uint8_t *rec)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        rec[TLS_REC_HEADER + i] = (uint8_t)(i * 31 + (size_t)k);
    ck_assert(tls_rec_seal(w, ct, rec, n, &len));
    ck_assert_uint_eq(len, TLS_REC_HEADER + n + TLS_REC_OVERHEAD);
    return len;
}

/* Open rec on r: want the result; DATA must carry n bytes of pattern k. */
static void
open_expect(tls_rec *r, const uint8_t *rec, size_t len, tls_rec_result want, size_t n, int k)
{
    static uint8_t out[BUF];
    size_t got = 99;
    tls_rec_result res = tls_rec_open(r, rec, len, out, &got);

    ck_assert_msg(res == want, "result %d, want %d (%s)", res, want, tls_rec_why(r));
    if (want != TLS_REC_DATA) {
        ck_assert_uint_eq(got, 0);
        return;
    }
    ck_assert_uint_eq(got, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(out[i], (uint8_t)(i * 31 + (size_t)k));
}

static void
expect_why(const tls_rec *r, const char *needle)
{
    ck_assert_msg(strstr(tls_rec_why(r), needle) != NULL, "\"%s\" lacks \"%s\"", tls_rec_why(r),
                  needle);
}

START_TEST(roundtrip_every_suite)
{
    static uint8_t rec[BUF];
    static const size_t sizes[] = {0, 1, 300, 4096, TLS_REC_PLAIN_MAX};
    uint8_t s[TLS_REC_SECRET_MAX] = {1};

    for (size_t i = 0; i < 3; i++) {
        pair p = pair_new(suite_ids[i], suite_hash[i]);
        for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
            size_t len = seal(p.w, TLS_CT_APPDATA, sizes[j], (int)j, rec);
            ck_assert_uint_eq(rec[0], TLS_CT_APPDATA); /* the outer type hides the inner one */
            open_expect(p.r, rec, len, TLS_REC_DATA, sizes[j], (int)j);
        }
        pair_free(p);
    }
    ck_assert_ptr_null(tls_rec_new(0x1304, s, s, 32, true)); /* AES-128-CCM: not ours */
    ck_assert_ptr_null(tls_rec_new(0x1301, s, s, 48, true)); /* SHA-256 has 32 bytes */
}
END_TEST

START_TEST(tampered_records_are_refused)
{
    static uint8_t rec[BUF], bad[BUF];
    size_t offsets[] = {1, 2, 3, TLS_REC_HEADER, TLS_REC_HEADER + 150, 0 /* the tag */};

    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        pair p = pair_new(0x1301, 32);
        size_t len = seal(p.w, TLS_CT_APPDATA, 300, 1, rec), at = offsets[i] ? offsets[i] : len - 1;
        memcpy(bad, rec, len);
        bad[at] ^= 0x04;
        if (at == 3) { /* the length: the record is now 1,024 bytes longer than what is there */
            size_t n;
            ck_assert(tls_rec_header(p.r, bad, &n));
            ck_assert_uint_eq(n, len - TLS_REC_HEADER + 1024);
            bad[at] ^= 0x04 | 0x01; /* 256 bytes shorter instead */
            len -= 256;
        }
        open_expect(p.r, bad, len, TLS_REC_ERROR, 0, 0);
        expect_why(p.r, "bad_record_mac");
        /* the layer refuses everything after a failure, even the genuine record */
        open_expect(p.r, rec, len, TLS_REC_ERROR, 0, 0);
        pair_free(p);
    }
    /* replayed and reordered records fail: the sequence number is the nonce */
    pair p = pair_new(0x1302, 48);
    static uint8_t r2[BUF];
    size_t l1 = seal(p.w, TLS_CT_APPDATA, 10, 1, rec), l2 = seal(p.w, TLS_CT_APPDATA, 10, 2, r2);
    open_expect(p.r, rec, l1, TLS_REC_DATA, 10, 1);
    open_expect(p.r, rec, l1, TLS_REC_ERROR, 0, 0);
    pair_free(p);
    p = pair_new(0x1303, 32);
    l1 = seal(p.w, TLS_CT_APPDATA, 10, 1, rec);
    l2 = seal(p.w, TLS_CT_APPDATA, 10, 2, r2);
    open_expect(p.r, r2, l2, TLS_REC_ERROR, 0, 0);
    pair_free(p);
}
END_TEST

START_TEST(headers_are_checked)
{
    uint8_t h[TLS_REC_HEADER] = {TLS_CT_APPDATA, 3, 3, 0, 0};
    size_t n = 0;
    pair p = pair_new(0x1301, 32);

    h[3] = 0x41; /* 16,640 bytes: the most allowed */
    ck_assert(tls_rec_header(p.r, h, &n));
    ck_assert_uint_eq(n, 16640);
    h[4] = 1;
    ck_assert(!tls_rec_header(p.r, h, &n));
    expect_why(p.r, "more than the 16,640 allowed");
    pair_free(p);
    p = pair_new(0x1301, 32);
    h[3] = 0;
    h[4] = TLS_REC_TAG; /* no room for the content type */
    ck_assert(!tls_rec_header(p.r, h, &n));
    expect_why(p.r, "too short");
    pair_free(p);
    p = pair_new(0x1301, 32);
    h[0] = 20; /* ChangeCipherSpec, unprotected, after the handshake */
    h[4] = 1;
    ck_assert(!tls_rec_header(p.r, h, &n));
    expect_why(p.r, "unprotected TLS record of type 20");
    pair_free(p);
}
END_TEST

START_TEST(key_updates)
{
    static uint8_t rec[BUF], ctl[TLS_REC_CONTROL_MAX];
    static const uint8_t ku_asks[] = {24, 0, 0, 1, 1};
    size_t len, n;
    pair p = pair_new(0x1302, 48);

    /* the write key's limit: the next seal waits for the KeyUpdate; the
     * reader follows it; three rounds */
    tls_rec_set_update_after(p.w, 2);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++)
            open_expect(p.r, rec, seal(p.w, TLS_CT_APPDATA, 40, i, rec), TLS_REC_DATA, 40, i);
        ck_assert(!tls_rec_seal(p.w, TLS_CT_APPDATA, rec, 40, &len));
        ck_assert_uint_eq(tls_rec_pending(p.r, ctl), 0); /* the reader owes nothing */
        n = tls_rec_pending(p.w, ctl);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_eq(tls_rec_pending(p.w, ctl), 0); /* one at a time */
        if (round == 0) { /* a record under the new key before the KeyUpdate: refused */
            pair q = pair_new(0x1302, 48);
            tls_rec_set_update_after(q.w, 2);
            for (int i = 0; i < 2; i++)
                open_expect(q.r, rec, seal(q.w, TLS_CT_APPDATA, 40, i, rec), TLS_REC_DATA, 40, i);
            ck_assert_uint_gt(tls_rec_pending(q.w, rec), 0);
            open_expect(q.r, rec, seal(q.w, TLS_CT_APPDATA, 40, 5, rec), TLS_REC_ERROR, 0, 0);
            pair_free(q);
        }
        open_expect(p.r, ctl, n, TLS_REC_DATA, 0, 0);    /* the KeyUpdate: no bytes */
        ck_assert_uint_eq(tls_rec_pending(p.r, ctl), 0); /* it did not ask for ours */
    }
    open_expect(p.r, rec, seal(p.w, TLS_CT_APPDATA, 40, 9, rec), TLS_REC_DATA, 40, 9);
    pair_free(p);

    /* a KeyUpdate that asks for ours (update_requested, as a peer sends
     * it): the reader seals nothing before its own KeyUpdate, which the
     * peer's reader follows */
    p = pair_new(0x1301, 32);
    memcpy(rec + TLS_REC_HEADER, ku_asks, sizeof(ku_asks));
    ck_assert(tls_rec_seal(p.w, TLS_CT_HANDSHAKE, rec, sizeof(ku_asks), &len));
    open_expect(p.r, rec, len, TLS_REC_DATA, 0, 0);
    ck_assert(!tls_rec_seal(p.r, TLS_CT_APPDATA, rec, 10, &len));
    n = tls_rec_pending(p.r, ctl);
    ck_assert_uint_gt(n, 0);
    open_expect(p.w, ctl, n, TLS_REC_DATA, 0, 0); /* w reads r's direction */
    open_expect(p.w, rec, seal(p.r, TLS_CT_APPDATA, 30, 3, rec), TLS_REC_DATA, 30, 3);
    pair_free(p);

    /* a KeyUpdate must end its record, and says 0 or 1 */
    static const uint8_t ku_more[] = {24, 0, 0, 1, 0, 23};
    static const uint8_t ku_bad[] = {24, 0, 0, 1, 2};
    static const uint8_t ku_long[] = {24, 0, 0, 2, 0, 0};
    const uint8_t *msgs[] = {ku_more, ku_bad, ku_long};
    const size_t lens[] = {sizeof(ku_more), sizeof(ku_bad), sizeof(ku_long)};
    const char *why[] = {"followed by 1 bytes", "request 2", "KeyUpdate of 2 bytes"};
    for (int i = 0; i < 3; i++) {
        p = pair_new(0x1301, 32);
        memcpy(rec + TLS_REC_HEADER, msgs[i], lens[i]);
        ck_assert(tls_rec_seal(p.w, TLS_CT_HANDSHAKE, rec, lens[i], &len));
        open_expect(p.r, rec, len, TLS_REC_ERROR, 0, 0);
        expect_why(p.r, why[i]);
        pair_free(p);
    }
}
END_TEST

START_TEST(inner_messages)
{
    static uint8_t rec[BUF], out[BUF];
    size_t len, n;
    pair p = pair_new(0x1303, 32);

    /* zero padding after the content type is stripped */
    static const uint8_t padded[] = {'h', 'i', TLS_CT_APPDATA, 0, 0, 0};
    memcpy(rec + TLS_REC_HEADER, padded, sizeof(padded));
    ck_assert(tls_rec_seal(p.w, 0, rec, sizeof(padded), &len));
    ck_assert_int_eq(tls_rec_open(p.r, rec, len, out, &n), TLS_REC_DATA);
    ck_assert_uint_eq(n, 2);
    ck_assert(memcmp(out, "hi", 2) == 0);
    /* a ticket to the client, split over two records, is skipped whole */
    static const uint8_t ticket[] = {4, 0, 0, 6, 1, 2, 3, 4, 5, 6};
    memcpy(rec + TLS_REC_HEADER, ticket, 3);
    ck_assert(tls_rec_seal(p.r, TLS_CT_HANDSHAKE, rec, 3, &len)); /* r: the server writes */
    ck_assert_int_eq(tls_rec_open(p.w, rec, len, out, &n), TLS_REC_DATA);
    memcpy(rec + TLS_REC_HEADER, ticket + 3, sizeof(ticket) - 3);
    ck_assert(tls_rec_seal(p.r, TLS_CT_HANDSHAKE, rec, sizeof(ticket) - 3, &len));
    ck_assert_int_eq(tls_rec_open(p.w, rec, len, out, &n), TLS_REC_DATA);
    ck_assert_uint_eq(n, 0);
    open_expect(p.w, rec, seal(p.r, TLS_CT_APPDATA, 20, 4, rec), TLS_REC_DATA, 20, 4);
    /* close_notify ends the stream */
    static const uint8_t close_notify[] = {1, 0};
    memcpy(rec + TLS_REC_HEADER, close_notify, 2);
    ck_assert(tls_rec_seal(p.w, TLS_CT_ALERT, rec, 2, &len));
    open_expect(p.r, rec, len, TLS_REC_EOF, 0, 0);
    pair_free(p);

    /* a fatal alert names itself, and none answers it */
    p = pair_new(0x1301, 32);
    static const uint8_t bad_cert[] = {2, 42};
    memcpy(rec + TLS_REC_HEADER, bad_cert, 2);
    ck_assert(tls_rec_seal(p.w, TLS_CT_ALERT, rec, 2, &len));
    open_expect(p.r, rec, len, TLS_REC_ERROR, 0, 0);
    expect_why(p.r, "alert 42 \"bad certificate\"");
    ck_assert_uint_eq(tls_rec_alert(p.r, rec), 0);
    pair_free(p);

    /* a failure of ours sends its alert, which the peer reads by name */
    p = pair_new(0x1301, 32);
    memcpy(rec + TLS_REC_HEADER, ticket, sizeof(ticket)); /* a ticket to the server */
    ck_assert(tls_rec_seal(p.w, TLS_CT_HANDSHAKE, rec, sizeof(ticket), &len));
    open_expect(p.r, rec, len, TLS_REC_ERROR, 0, 0);
    expect_why(p.r, "handshake message 4 after the handshake");
    n = tls_rec_alert(p.r, rec);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_eq(tls_rec_alert(p.r, out), 0); /* once */
    open_expect(p.w, rec, n, TLS_REC_ERROR, 0, 0);
    expect_why(p.w, "unexpected_message");
    pair_free(p);

    /* what may not come: no content type, an unknown one, an empty
     * handshake record, data inside a handshake message, a long alert */
    static const uint8_t zeros[] = {0, 0, 0};
    static const uint8_t half_ku[] = {24, 0};
    struct {
        uint8_t ct;
        const uint8_t *b;
        size_t n;
        const char *why;
    } bad[] = {{0, zeros, sizeof(zeros), "without a content type"},
               {99, zeros, 1, "record type 99"},
               {TLS_CT_HANDSHAKE, zeros, 0, "empty TLS handshake record"},
               {TLS_CT_ALERT, zeros, 3, "alert of 3 bytes"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = pair_new(0x1301, 32);
        memcpy(rec + TLS_REC_HEADER, bad[i].b, bad[i].n);
        ck_assert(tls_rec_seal(p.w, bad[i].ct, rec, bad[i].n, &len));
        open_expect(p.r, rec, len, TLS_REC_ERROR, 0, 0);
        expect_why(p.r, bad[i].why);
        pair_free(p);
    }
    p = pair_new(0x1301, 32);
    memcpy(rec + TLS_REC_HEADER, half_ku, sizeof(half_ku));
    ck_assert(tls_rec_seal(p.w, TLS_CT_HANDSHAKE, rec, sizeof(half_ku), &len));
    open_expect(p.r, rec, len, TLS_REC_DATA, 0, 0);
    open_expect(p.r, rec, seal(p.w, TLS_CT_APPDATA, 5, 1, rec), TLS_REC_ERROR, 0, 0);
    expect_why(p.r, "inside a handshake message");
    pair_free(p);
}
END_TEST

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzz target's entry point (tests/rpc/fuzz_tls_rec.c) over seeded
 * random inputs: its own checks trap. */
START_TEST(fuzz_entry_smoke)
{
    static uint8_t in[4096];
    uint64_t seed = tu_seed("fuzz_entry_smoke");

    for (int round = 0; round < 400; round++) {
        size_t n = 1 + tu_rand(&seed) % sizeof(in);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)tu_rand(&seed);
        /* mostly data records, so that pairs live long */
        for (size_t i = 1; i + 1 < n && round % 2 == 0; i += 2 + in[i + 1])
            in[i] = (uint8_t)(TLS_CT_APPDATA << 2 | (in[i] & 3));
        ck_assert_int_eq(LLVMFuzzerTestOneInput(in, n), 0);
    }
}
END_TEST

static Suite *
tls_rec_suite(void)
{
    Suite *s = suite_create("tls-rec");
    TCase *tc = tcase_create("records");

    tcase_add_test(tc, roundtrip_every_suite);
    tcase_add_test(tc, tampered_records_are_refused);
    tcase_add_test(tc, headers_are_checked);
    tcase_add_test(tc, key_updates);
    tcase_add_test(tc, inner_messages);
    tcase_add_test(tc, fuzz_entry_smoke);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(tls_rec_suite());
}
