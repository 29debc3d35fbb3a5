/*
 * tests/rpc/fuzz_tls_rec.c -- libFuzzer target for the TLS 1.3 record
 * layer (rpc/tls_rec.c).
 *
 * A writer and a reader share a direction's secrets, as the two ends of a
 * connection. Random bytes would almost never pass a record's tag, so most
 * of the input is what the writer seals -- any content type, any inner
 * bytes (handshake messages, alerts, padding, nothing) -- and the reader
 * opens; the rest is raw bytes offered as records, and sealed records with
 * one byte changed. Input: byte 0 the suite, then steps of [op, length,
 * bytes...]:
 *
 *   op % 4 == 0  seal length bytes as type (op >> 2) and open them
 *   op % 4 == 1  the bytes as a raw record (header checked, then opened)
 *   op % 4 == 2  seal as data, offer the first (op >> 2) bytes (it
 *                waits), then the whole record
 *   op % 4 == 3  seal as data, change a bit of byte (op >> 2) of the
 *                record, open
 * Byte 0's top bit makes the writer replace its key every 1-4 records
 * (KeyUpdate, opened by the reader before the next record).
 *
 * What must hold, or the target traps: application data comes out as it
 * went in; a changed or raw record is never accepted as data (only a
 * record the writer sealed opens); a reader that failed refuses
 * everything after; nothing reads or writes outside its buffer (the
 * sanitizers). A failed pair is replaced and the input goes on.
 * tests/rpc/test_tls_rec.c runs the entry point over seeded random inputs
 * in every build; the libFuzzer binary is built with -Dfuzz=true.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/tls_rec.h"

#define FZ_BUF (TLS_REC_HEADER + TLS_REC_PLAIN_MAX + TLS_REC_OVERHEAD)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned fz_suites[] = {0x1301, 0x1302, 0x1303};
static const size_t fz_hash[] = {32, 48, 32};

typedef struct fz_pair {
    tls_rec *w, *r;
    bool failed; /* the reader returned TLS_REC_ERROR */
} fz_pair;

static void
fz_open_pair(fz_pair *p, unsigned suite)
{
    uint8_t a[TLS_REC_SECRET_MAX], b[TLS_REC_SECRET_MAX];

    for (size_t i = 0; i < sizeof(a); i++) {
        a[i] = (uint8_t)(i + 1);
        b[i] = (uint8_t)(0xa5 ^ i);
    }
    p->w = tls_rec_new(fz_suites[suite], b, a, fz_hash[suite], false);
    p->r = tls_rec_new(fz_suites[suite], a, b, fz_hash[suite], true);
    p->failed = false;
    if (p->w == NULL || p->r == NULL)
        __builtin_trap();
}

static void
fz_close_pair(fz_pair *p)
{
    tls_rec_free(p->w);
    tls_rec_free(p->r);
}

/* Offer n bytes at rec to the reader as a record (what a connection's
 * input would hold): an incomplete one waits, DATA with nothing. */
static tls_rec_result
fz_open(fz_pair *p, const uint8_t *rec, size_t n, uint8_t *out, size_t *outlen)
{
    size_t len;
    tls_rec_result res;

    *outlen = 0;
    if (n < TLS_REC_HEADER)
        return TLS_REC_DATA; /* not a record yet */
    if (!tls_rec_header(p->r, rec, &len)) {
        p->failed = true;
        return TLS_REC_ERROR;
    }
    if (n < TLS_REC_HEADER + len)
        return TLS_REC_DATA; /* the rest would come later */
    res = tls_rec_open(p->r, rec, TLS_REC_HEADER + len, out, outlen);
    if (*outlen > len)
        __builtin_trap();
    if (res == TLS_REC_ERROR) {
        p->failed = true;
        /* refused for good: the same bytes again must fail too */
        size_t again = 0;
        if (tls_rec_open(p->r, rec, TLS_REC_HEADER + len, out, &again) != TLS_REC_ERROR)
            __builtin_trap();
    }
    return res;
}

/* Seal n bytes at b as type ct into rec (a KeyUpdate the writer owes
 * goes to the reader first); its length, 0 when the reader failed on it. */
static size_t
fz_seal(fz_pair *p, uint8_t ct, const uint8_t *b, size_t n, uint8_t *rec)
{
    static uint8_t ctl[TLS_REC_CONTROL_MAX], out[FZ_BUF];
    size_t len = 0, k, got;

    if ((k = tls_rec_pending(p->w, ctl)) > 0 &&
        (fz_open(p, ctl, k, out, &got) != TLS_REC_DATA || got != 0))
        return 0;
    memcpy(rec + TLS_REC_HEADER, b, n);
    if (!tls_rec_seal(p->w, ct, rec, n, &len))
        __builtin_trap(); /* nothing is owed any more */
    return len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t rec[FZ_BUF], out[FZ_BUF];
    fz_pair p;
    size_t i = 1;
    unsigned suite;
    bool clean = true; /* nothing but data sealed since the pair began */

    if (size < 1)
        return 0;
    suite = data[0] % 3;
    fz_open_pair(&p, suite);
    if (data[0] & 0x80) /* exercise the write key's limit */
        tls_rec_set_update_after(p.w, 1 + (data[0] >> 3) % 4);
    while (i + 2 <= size) {
        uint8_t op = data[i], ln = data[i + 1];
        size_t n = ln, got = 0, len;
        unsigned at = (unsigned)(op >> 2);
        tls_rec_result res;
        i += 2;
        if (n > size - i)
            n = size - i;
        const uint8_t *b = data + i;
        i += n;
        switch (op % 4) {
        case 0: /* seal as type op >> 2 (0..63: data, alerts, handshake, junk) */
            if ((len = fz_seal(&p, (uint8_t)at, b, n, rec)) == 0)
                break;
            res = fz_open(&p, rec, len, out, &got);
            if (at == TLS_CT_APPDATA && clean &&
                (res != TLS_REC_DATA || got != n || memcmp(out, b, n) != 0))
                __builtin_trap(); /* data must come out as it went in */
            if (at != TLS_CT_APPDATA)
                clean = false;
            break;
        case 1: /* raw bytes: never accepted as data */
            res = fz_open(&p, b, n, out, &got);
            if (res == TLS_REC_DATA && got > 0)
                __builtin_trap();
            break;
        case 2: /* a data record offered cut short first: it waits */
            if ((len = fz_seal(&p, TLS_CT_APPDATA, b, n, rec)) == 0)
                break;
            res = fz_open(&p, rec, at % len, out, &got);
            if (res != TLS_REC_DATA || got != 0)
                __builtin_trap();
            res = fz_open(&p, rec, len, out, &got);
            if (clean && (res != TLS_REC_DATA || got != n || memcmp(out, b, n) != 0))
                __builtin_trap();
            break;
        default: /* one bit of a sealed record changed: never accepted */
            if ((len = fz_seal(&p, TLS_CT_APPDATA, b, n, rec)) == 0)
                break;
            rec[at % len] ^= (uint8_t)(1u << (ln % 8));
            res = fz_open(&p, rec, len, out, &got);
            if ((res == TLS_REC_DATA && got > 0) ||
                (res != TLS_REC_ERROR && at % len != 3 && at % len != 4))
                __builtin_trap();
            clean = false; /* a longer length waits for more: the reader is behind */
            break;
        }
        if (p.failed) { /* a reader that failed stays failed; start over */
            if (tls_rec_open(p.r, rec, 0, out, &got) != TLS_REC_ERROR)
                __builtin_trap();
            (void)tls_rec_alert(p.r, out);
            fz_close_pair(&p);
            fz_open_pair(&p, suite);
            clean = true;
        }
    }
    fz_close_pair(&p);
    return 0;
}
