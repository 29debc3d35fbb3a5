/*
 * tests/shard/test_shard.c -- unit suite for shard/: input validation, the
 * record codec, continuation tokens, object operations with versions and
 * conditions, and ListObjectsV2 against an oracle computed here from random
 * keys (run directly on a shard in a temporary directory, no network), and
 * the shard's invariant checks (a version that does not increase, stripes
 * taken out of order, the commit pipeline used from a second thread) firing
 * when broken on purpose.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/commit.h"
#include "shard/list.h"
#include "shard/record.h"
#include "shard/shard.h"
#include "shard/shard_int.h"
#include "tu.h"

#define S(str) om_slice_from_str(str)

/* ---- validation ---- */

START_TEST(bucket_names)
{
    char err[256];
    const char *good[] = {"abc", "my.bucket-1", "0ab", "a-b.c-d", "1.2.3", "192.168.1.1a"};
    const char *bad[] = {"ab",         "ABC",  "a_b",         "-abc",    "abc-",        "a..b",
                         ".abc",       "abc.", "192.168.1.1", "xn--abc", "abc-s3alias", "ab c",
                         "a\xc3\xa9z", ""};
    char long_ok[64], long_bad[65];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(shard_validate_bucket(S(good[i]), err, sizeof(err)) == OM_OK, "%s: %s",
                      good[i], err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        ck_assert_msg(shard_validate_bucket(S(bad[i]), err, sizeof(err)) == OM_E_INVALID,
                      "accepted %s", bad[i]);
        ck_assert_msg(strncmp(err, "bucket: ", 8) == 0, "message %s", err);
    }
    memset(long_ok, 'a', 63);
    long_ok[63] = 0;
    memset(long_bad, 'a', 64);
    long_bad[64] = 0;
    ck_assert_int_eq(shard_validate_bucket(S(long_ok), err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_validate_bucket(S(long_bad), err, sizeof(err)), OM_E_INVALID);
}
END_TEST

START_TEST(key_names)
{
    char err[256];
    char big[SHARD_KEY_MAX + 2];

    ck_assert_int_eq(shard_validate_key(S("a"), err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_validate_key(S("photos/\xe6\x97\xa5\xe6\x9c\xac.jpg"), err, sizeof(err)),
                     OM_OK);
    ck_assert_int_eq(shard_validate_key(S(""), err, sizeof(err)), OM_E_INVALID);
    ck_assert_str_eq(err, "key: must not be empty");
    ck_assert_int_eq(shard_validate_key(S("a\xff"), err, sizeof(err)), OM_E_INVALID);
    ck_assert_str_eq(err, "key: not valid UTF-8");
    ck_assert_int_eq(shard_validate_key(S("\xc0\xaf"), err, sizeof(err)), OM_E_INVALID);
    ck_assert_int_eq(shard_validate_key(S("\xed\xa0\x80"), err, sizeof(err)), OM_E_INVALID);
    memset(big, 'k', sizeof(big));
    ck_assert_int_eq(shard_validate_key(om_slice_make(big, SHARD_KEY_MAX), err, sizeof(err)),
                     OM_OK);
    ck_assert_int_eq(shard_validate_key(om_slice_make(big, SHARD_KEY_MAX + 1), err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_msg(strstr(err, "key: 1025 bytes") != NULL, "%s", err);
}
END_TEST

START_TEST(metadata_json)
{
    char err[256];
    char deep[200];
    int n = 0;

    ck_assert_int_eq(shard_validate_metadata(S(""), 1024, 32, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_validate_metadata(S("{}"), 1024, 32, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(
        shard_validate_metadata(S("{\"a\":[1,{\"b\":null}]}"), 1024, 32, err, sizeof(err)), OM_OK);
    const char *bad[] = {"[]",   "1",    "\"s\"", "{", "{\"a\":1,}", "{\"a\":1,\"a\":2}",
                         "null", "{} {}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        ck_assert_msg(shard_validate_metadata(S(bad[i]), 1024, 32, err, sizeof(err)) ==
                          OM_E_INVALID,
                      "accepted %s", bad[i]);
        ck_assert_msg(strncmp(err, "metadata: ", 10) == 0, "message %s", err);
    }
    /* depth: {"a":{"a":...{}}} with d objects has depth d */
    for (int d = 0; d < 33; d++)
        n += snprintf(deep + n, sizeof(deep) - (size_t)n, d < 32 ? "{\"a\":" : "{");
    for (int d = 0; d < 33; d++)
        deep[n++] = '}';
    deep[n] = 0;
    ck_assert_int_eq(shard_validate_metadata(S(deep), 1024, 33, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_validate_metadata(S(deep), 1024, 32, err, sizeof(err)), OM_E_INVALID);
    ck_assert_msg(strstr(err, "depth 33") != NULL, "%s", err);
    ck_assert_int_eq(shard_validate_metadata(S("{\"k\":\"0123456789\"}"), 10, 32, err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_int_eq(shard_validate_data(om_slice_make("abcd", 4), 3, err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_msg(strncmp(err, "data: ", 6) == 0, "%s", err);
    ck_assert_int_eq(shard_validate_content_type(S("text/plain; charset=utf-8"), err, sizeof(err)),
                     OM_OK);
    ck_assert_int_eq(shard_validate_content_type(S("a\nb"), err, sizeof(err)), OM_E_INVALID);
}
END_TEST

/* ---- record codec ---- */

START_TEST(record_roundtrip_and_truncation)
{
    shard_record r = {0}, d;
    om_buf b = OM_BUF_INIT;
    char hex[17];

    r.type = SHARD_REC_LIVE;
    r.version = 1763730000123456ULL;
    r.data = S("hello world");
    r.size = r.data.n;
    r.etag = 0x0123456789abcdefULL;
    r.created_ms = 1763730000123ULL;
    r.modified_ms = 1763730000999ULL;
    r.content_type = S("text/plain");
    r.metadata = S("{\"a\":1}");
    ck_assert_int_eq(shard_record_encode(&r, &b), OM_OK);
    ck_assert_int_eq(shard_record_decode(om_buf_slice(&b), &d), OM_OK);
    ck_assert_int_eq(d.type, SHARD_REC_LIVE);
    ck_assert_uint_eq(d.version, r.version);
    ck_assert_uint_eq(d.size, 11);
    ck_assert_uint_eq(d.etag, r.etag);
    ck_assert_uint_eq(d.created_ms, r.created_ms);
    ck_assert_uint_eq(d.modified_ms, r.modified_ms);
    ck_assert(om_slice_eq(d.content_type, r.content_type));
    ck_assert(om_slice_eq(d.metadata, r.metadata));
    ck_assert(om_slice_eq(d.data, r.data));
    shard_etag_hex(r.etag, hex);
    ck_assert_str_eq(hex, "0123456789abcdef");
    {
        /* the formatter against printf's %016llx, on edge and random values */
        uint64_t rs = tu_seed("etag_hex"),
                 vals[] = {
                     0, 1, 0xf, 0xa, 0x9, UINT64_MAX, 0xfedcba9876543210ull, 0xa0a0a0a0a0a0a0a0ull};
        char want[32];
        for (int i = 0; i < 2000; i++) {
            uint64_t v = i < 8 ? vals[i] : tu_rand(&rs);
            snprintf(want, sizeof(want), "%016llx", (unsigned long long)v);
            shard_etag_hex(v, hex);
            ck_assert_str_eq(hex, want);
        }
    }

    /*
     * The head alone: from the whole record and from every cut that keeps the
     * head (up to modified_ms, within SHARD_RECORD_HEAD_MAX bytes); a cut inside
     * the head is CORRUPT.
     */
    size_t head = 0;
    for (size_t n = 0; n <= b.n; n++) {
        om_status st = shard_record_decode_head(om_slice_make(b.p, n), &d);

        if (st == OM_OK && head == 0)
            head = n;
        ck_assert_int_eq(st, head != 0 ? OM_OK : OM_E_CORRUPT);
    }
    ck_assert_uint_gt(head, 0);
    ck_assert_uint_le(head, SHARD_RECORD_HEAD_MAX);
    ck_assert_int_eq(shard_record_decode_head(om_slice_make(b.p, head), &d), OM_OK);
    ck_assert_int_eq(d.type, SHARD_REC_LIVE);
    ck_assert_uint_eq(d.version, r.version);
    ck_assert_uint_eq(d.size, 11);
    ck_assert_uint_eq(d.etag, r.etag);
    ck_assert_uint_eq(d.created_ms, r.created_ms);
    ck_assert_uint_eq(d.modified_ms, r.modified_ms);
    ck_assert_uint_eq(d.content_type.n + d.metadata.n + d.data.n, 0);

    /* every truncation and a wrong format byte are CORRUPT, never a crash */
    for (size_t n = 0; n < b.n; n++)
        ck_assert_int_eq(shard_record_decode(om_slice_make(b.p, n), &d), OM_E_CORRUPT);
    b.p[0] = 9;
    ck_assert_int_eq(shard_record_decode(om_buf_slice(&b), &d), OM_E_CORRUPT);
    ck_assert_int_eq(shard_record_decode_head(om_buf_slice(&b), &d), OM_E_CORRUPT);
    b.p[0] = SHARD_RECORD_FORMAT;
    b.p[1] = 7;
    ck_assert_int_eq(shard_record_decode(om_buf_slice(&b), &d), OM_E_CORRUPT);
    ck_assert_int_eq(shard_record_decode_head(om_buf_slice(&b), &d), OM_E_CORRUPT);

    memset(&r, 0, sizeof(r));
    r.type = SHARD_REC_TOMBSTONE;
    r.version = 42;
    ck_assert_int_eq(shard_record_encode(&r, &b), OM_OK);
    ck_assert_int_eq(shard_record_decode(om_buf_slice(&b), &d), OM_OK);
    ck_assert_int_eq(d.type, SHARD_REC_TOMBSTONE);
    ck_assert_uint_eq(d.version, 42);
    ck_assert_uint_eq(d.data.n, 0);
    om_buf_free(&b);
}
END_TEST

START_TEST(lsm_key_and_successor)
{
    om_buf b = OM_BUF_INIT;

    ck_assert_int_eq(shard_lsm_key(S("bkt"), S("a/b"), &b), OM_OK);
    ck_assert_uint_eq(b.n, 7);
    ck_assert_mem_eq(b.p, "bkt\0a/b", 7);
    ck_assert(shard_prefix_successor(S("ab"), &b));
    ck_assert_mem_eq(b.p, "ac", 2);
    ck_assert(shard_prefix_successor(om_slice_make("a\xff\xff", 3), &b));
    ck_assert_uint_eq(b.n, 1);
    ck_assert_mem_eq(b.p, "b", 1);
    ck_assert(!shard_prefix_successor(om_slice_make("\xff", 1), &b));
    ck_assert(!shard_prefix_successor(S(""), &b));
    om_buf_free(&b);
}
END_TEST

/* ---- continuation tokens ---- */

START_TEST(tokens_are_validated)
{
    shard_list_req a = {.bucket = S("bkt"), .prefix = S("p/"), .delimiter = S("/")};
    shard_list_req other = a;
    om_buf tok = OM_BUF_INIT, resume = OM_BUF_INIT;
    char err[256];
    uint64_t seed = tu_seed("tokens_are_validated");

    ck_assert_int_eq(shard_list_token_encode(&a, S("p/x\0"), &tok), OM_OK);
    ck_assert_int_eq(shard_list_token_decode(&a, om_buf_slice(&tok), &resume, err, sizeof(err)),
                     OM_OK);
    ck_assert(om_slice_eq(om_buf_slice(&resume), S("p/x")));
    other.prefix = S("p/y");
    ck_assert_int_eq(shard_list_token_decode(&other, om_buf_slice(&tok), &resume, err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_msg(strstr(err, "another bucket") != NULL, "%s", err);
    other = a;
    other.bucket = S("bku");
    ck_assert_int_eq(shard_list_token_decode(&other, om_buf_slice(&tok), &resume, err, sizeof(err)),
                     OM_E_INVALID);

    /* change any one character: never accepted */
    for (size_t i = 0; i < tok.n; i++) {
        uint8_t save = tok.p[i];
        tok.p[i] = save == 'A' ? 'B' : 'A';
        ck_assert_int_eq(shard_list_token_decode(&a, om_buf_slice(&tok), &resume, err, sizeof(err)),
                         OM_E_INVALID);
        ck_assert_msg(strncmp(err, "continuation_token: ", 20) == 0, "%s", err);
        tok.p[i] = save;
    }
    /* truncations and random text */
    for (size_t n = 0; n < tok.n; n++)
        ck_assert_int_eq(
            shard_list_token_decode(&a, om_slice_make(tok.p, n), &resume, err, sizeof(err)),
            OM_E_INVALID);
    for (int i = 0; i < 200; i++) {
        char junk[64];
        size_t n = tu_rand(&seed) % sizeof(junk);
        for (size_t j = 0; j < n; j++)
            junk[j] = (char)(tu_rand(&seed) & 0xff);
        ck_assert_int_eq(
            shard_list_token_decode(&a, om_slice_make(junk, n), &resume, err, sizeof(err)),
            OM_E_INVALID);
    }
    om_buf_free(&tok);
    om_buf_free(&resume);
}
END_TEST

/* ---- operations on a shard ---- */

static shard *
open_shard(void)
{
    shard_opts o;
    shard *s = NULL;

    shard_opts_init(&o);
    o.lsm.sync_mode = LSM_SYNC_NONE;
    o.lsm.write_buffer_size = 256 * 1024; /* exercise flushes in the list test */
    ck_assert_int_eq(shard_open(tu_tmpdir(), &o, &s), OM_OK);
    return s;
}

static om_status
put(shard *s, const char *bucket, const char *key, const char *data, shard_cond c,
    shard_obj_info *info)
{
    shard_store_args a = {.bucket = S(bucket), .key = S(key), .data = S(data), .cond = c};
    char err[256];
    shard_obj_info tmp;
    return shard_store(s, &a, info ? info : &tmp, err, sizeof(err));
}

START_TEST(store_get_delete_versions)
{
    shard *s = open_shard();
    shard_obj_info i1, i2, i3, i4;
    shard_record r;
    om_buf raw = OM_BUF_INIT;
    char err[256];
    shard_cond none = {SHARD_COND_NONE, 0};
    shard_store_args a = {.bucket = S("bkt"),
                          .key = S("k1"),
                          .data = S("payload"),
                          .metadata = S("{\"owner\":\"x\"}"),
                          .content_type = S("text/plain")};

    ck_assert_int_eq(shard_store(s, &a, &i1, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(i1.size, 7);
    ck_assert_int_eq(shard_get(s, S("bkt"), S("k1"), &raw, &r, err, sizeof(err)), OM_OK);
    ck_assert(om_slice_eq(r.data, S("payload")));
    ck_assert(om_slice_eq(r.metadata, S("{\"owner\":\"x\"}")));
    ck_assert(om_slice_eq(r.content_type, S("text/plain")));
    ck_assert_uint_eq(r.version, i1.version);
    ck_assert_uint_eq(r.etag, i1.etag);
    ck_assert_int_eq(shard_exists(s, S("bkt"), S("k1"), err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_exists(s, S("bkt"), S("k2"), err, sizeof(err)), OM_E_NOTFOUND);

    ck_assert_int_eq(put(s, "bkt", "k1", "v2", none, &i2), OM_OK);
    ck_assert_uint_gt(i2.version, i1.version);
    ck_assert_uint_eq(i2.created_ms, i1.created_ms);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("k1"), none, 0, &i3, err, sizeof(err)), OM_OK);
    ck_assert_uint_gt(i3.version, i2.version);
    ck_assert_int_eq(shard_get(s, S("bkt"), S("k1"), &raw, &r, err, sizeof(err)), OM_E_NOTFOUND);
    ck_assert_int_eq(shard_exists(s, S("bkt"), S("k1"), err, sizeof(err)), OM_E_NOTFOUND);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("k1"), none, 0, &i3, err, sizeof(err)),
                     OM_E_NOTFOUND);
    ck_assert_int_eq(put(s, "bkt", "k1", "v3", none, &i4), OM_OK);
    ck_assert_uint_gt(i4.version, i3.version); /* strictly increasing across the delete */
    ck_assert_int_eq(put(s, "BAD", "k1", "v", none, NULL), OM_E_INVALID);
    om_buf_free(&raw);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/*
 * shard_rpc_prefetch (the server's read-ahead hints) over stored, deleted,
 * absent and invalid addresses, more than one batch of them, with data in
 * the memtable and in tables: reads answer exactly as before.
 */
START_TEST(read_hints_change_nothing)
{
    enum { N = 120 };
    shard *s = open_shard();
    shard_cond none = {SHARD_COND_NONE, 0};
    char keys[N][32], data[64], err[256], bigb[100], bigk[2000];
    rpc_key_hint h[N + 3];
    om_buf raw = OM_BUF_INIT;
    shard_record r;
    shard_obj_info info;

    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "obj-%d", i);
        snprintf(data, sizeof(data), "data-%d", i);
        if (i % 4 != 3)
            ck_assert_int_eq(put(s, "bkt", keys[i], data, none, NULL), OM_OK);
        if (i == N / 2) /* the first half goes to a table */
            ck_assert_int_eq(lsm_flush(shard_db(s)), OM_OK);
        h[i].bucket = S("bkt");
        h[i].key = S(keys[i]);
    }
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("obj-0"), none, 0, &info, err, sizeof(err)),
                     OM_OK);
    memset(bigb, 'b', sizeof(bigb));
    memset(bigk, 'k', sizeof(bigk));
    h[N].bucket = om_slice_make(bigb, sizeof(bigb)); /* too long to be valid */
    h[N].key = S("x");
    h[N + 1].bucket = S("bkt");
    h[N + 1].key = om_slice_make(bigk, sizeof(bigk));
    h[N + 2].bucket = om_slice_make(NULL, 0);
    h[N + 2].key = om_slice_make(NULL, 0);
    for (int from = 0; from < N + 3; from += 30) {
        size_t n = N + 3 - (size_t)from < 30 ? N + 3 - (size_t)from : 30;
        shard_rpc_prefetch(s, h + from, n);
    }
    shard_rpc_prefetch(s, h + N, 3);
    shard_rpc_prefetch(s, h, 1);
    for (int i = 0; i < N; i++) {
        om_status st = shard_get(s, S("bkt"), S(keys[i]), &raw, &r, err, sizeof(err));
        if (i == 0 || i % 4 == 3) {
            ck_assert_int_eq(st, OM_E_NOTFOUND);
            continue;
        }
        ck_assert_int_eq(st, OM_OK);
        snprintf(data, sizeof(data), "data-%d", i);
        ck_assert(om_slice_eq(r.data, S(data)));
    }
    om_buf_free(&raw);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(condition_matrix)
{
    shard *s = open_shard();
    shard_obj_info info, cur;
    char err[256];

    /* absent */
    ck_assert_int_eq(put(s, "bkt", "a1", "x", (shard_cond){SHARD_COND_IF_VERSION, 1}, NULL),
                     OM_E_PRECONDITION);
    ck_assert_int_eq(put(s, "bkt", "a1", "x", (shard_cond){SHARD_COND_IF_ABSENT, 0}, &cur), OM_OK);
    /* present */
    ck_assert_int_eq(put(s, "bkt", "a1", "y", (shard_cond){SHARD_COND_IF_ABSENT, 0}, NULL),
                     OM_E_PRECONDITION);
    ck_assert_int_eq(
        put(s, "bkt", "a1", "y", (shard_cond){SHARD_COND_IF_VERSION, cur.version + 1}, NULL),
        OM_E_PRECONDITION);
    ck_assert_int_eq(
        put(s, "bkt", "a1", "y", (shard_cond){SHARD_COND_IF_VERSION, cur.version}, &info), OM_OK);
    /* the old version no longer matches */
    ck_assert_int_eq(
        put(s, "bkt", "a1", "z", (shard_cond){SHARD_COND_IF_VERSION, cur.version}, NULL),
        OM_E_PRECONDITION);
    /* delete conditions */
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("a1"),
                                  (shard_cond){SHARD_COND_IF_VERSION, cur.version}, 0, &cur, err,
                                  sizeof(err)),
                     OM_E_PRECONDITION);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("a1"), (shard_cond){SHARD_COND_IF_ABSENT, 0}, 0,
                                  &cur, err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("a1"),
                                  (shard_cond){SHARD_COND_IF_VERSION, info.version}, 0, &cur, err,
                                  sizeof(err)),
                     OM_OK);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("a1"),
                                  (shard_cond){SHARD_COND_IF_VERSION, cur.version}, 0, &cur, err,
                                  sizeof(err)),
                     OM_E_PRECONDITION);
    /* deleted counts as absent */
    ck_assert_int_eq(put(s, "bkt", "a1", "w", (shard_cond){SHARD_COND_IF_ABSENT, 0}, NULL), OM_OK);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(forced_versions_for_migration)
{
    shard *s = open_shard();
    shard_obj_info info;
    char err[256];
    shard_store_args a = {
        .bucket = S("bkt"), .key = S("m"), .data = S("v100"), .forced_version = 100};
    om_buf raw = OM_BUF_INIT;
    shard_record r;

    ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(info.version, 100);
    a.data = S("v50");
    a.forced_version = 50; /* older: ignored, the newer record is kept */
    ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(info.version, 100);
    ck_assert_int_eq(shard_get(s, S("bkt"), S("m"), &raw, &r, err, sizeof(err)), OM_OK);
    ck_assert(om_slice_eq(r.data, S("v100")));
    /* a forwarded tombstone for a key never seen is kept (it carries the version) */
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("gone"), (shard_cond){SHARD_COND_NONE, 0}, 70,
                                  &info, err, sizeof(err)),
                     OM_OK);
    ck_assert_uint_eq(info.version, 70);
    a.key = S("gone");
    a.forced_version = 60;
    ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_get(s, S("bkt"), S("gone"), &raw, &r, err, sizeof(err)), OM_E_NOTFOUND);
    om_buf_free(&raw);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/* A batch behaves exactly like the same writes made one after another. */
START_TEST(write_batch_matches_sequential)
{
    shard *s = open_shard();
    shard_write w[8];
    om_buf raw = OM_BUF_INIT;
    shard_record r;
    char err[256];
    shard_obj_info pre;

    ck_assert_int_eq(put(s, "bkt", "present", "old", (shard_cond){SHARD_COND_NONE, 0}, &pre),
                     OM_OK);
    memset(w, 0, sizeof(w));
    /* 0: create; 1: same key if_absent -> must see 0 and fail */
    w[0].args = (shard_store_args){
        .bucket = S("bkt"), .key = S("dup"), .data = S("first"), .cond = {SHARD_COND_IF_ABSENT, 0}};
    w[1].args = (shard_store_args){.bucket = S("bkt"),
                                   .key = S("dup"),
                                   .data = S("second"),
                                   .cond = {SHARD_COND_IF_ABSENT, 0}};
    /* 2: invalid bucket; 3: if_version right on "present"; 4: delete of a missing key */
    w[2].args = (shard_store_args){.bucket = S("B"), .key = S("k"), .data = S("x")};
    w[3].args = (shard_store_args){.bucket = S("bkt"),
                                   .key = S("present"),
                                   .data = S("new"),
                                   .cond = {SHARD_COND_IF_VERSION, pre.version}};
    w[4].is_delete = true;
    w[4].args = (shard_store_args){.bucket = S("bkt"), .key = S("missing")};
    /* 5: plain store; 6: delete of the key stored by 5 in the same batch; 7: same key again */
    w[5].args = (shard_store_args){.bucket = S("bkt"), .key = S("tmp"), .data = S("t")};
    w[6].is_delete = true;
    w[6].args = (shard_store_args){.bucket = S("bkt"), .key = S("tmp")};
    w[7].args = (shard_store_args){
        .bucket = S("bkt"), .key = S("tmp"), .data = S("again"), .cond = {SHARD_COND_IF_ABSENT, 0}};
    shard_write_many(s, w, 8);
    ck_assert_int_eq(w[0].status, OM_OK);
    ck_assert_int_eq(w[1].status, OM_E_PRECONDITION);
    ck_assert_int_eq(w[2].status, OM_E_INVALID);
    ck_assert_msg(strncmp(w[2].err, "bucket: ", 8) == 0, "%s", w[2].err);
    ck_assert_int_eq(w[3].status, OM_OK);
    ck_assert_uint_gt(w[3].info.version, pre.version);
    ck_assert_int_eq(w[4].status, OM_E_NOTFOUND);
    ck_assert_int_eq(w[5].status, OM_OK);
    ck_assert_int_eq(w[6].status, OM_OK);
    ck_assert_uint_gt(w[6].info.version, w[5].info.version);
    ck_assert_int_eq(w[7].status, OM_OK);
    ck_assert_uint_gt(w[7].info.version, w[6].info.version);

    ck_assert_int_eq(shard_get(s, S("bkt"), S("dup"), &raw, &r, err, sizeof(err)), OM_OK);
    ck_assert(om_slice_eq(r.data, S("first")));
    ck_assert_int_eq(shard_get(s, S("bkt"), S("present"), &raw, &r, err, sizeof(err)), OM_OK);
    ck_assert(om_slice_eq(r.data, S("new")));
    ck_assert_int_eq(shard_get(s, S("bkt"), S("tmp"), &raw, &r, err, sizeof(err)), OM_OK);
    ck_assert(om_slice_eq(r.data, S("again")));
    ck_assert_uint_eq(r.version, w[7].info.version);
    om_buf_free(&raw);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/*
 * Many batches in a row over few keys: every batch reuses the shard's write
 * buffers, most writes overwrite a key the memtable already holds (the
 * skiplist's insert-before path), and two threads write at once (one takes
 * the spare buffers, the other makes its own). Each thread owns half the keys
 * and keeps an oracle: the last acknowledged version and data per key, with
 * versions strictly increasing; conditions check the version each time.
 */
#define WB_KEYS 64
#define WB_BATCHES 60
#define WB_BATCH 40

typedef struct wb_thread {
    shard *s;
    int half; /* keys half*WB_KEYS/2 .. (half+1)*WB_KEYS/2 - 1 */
    uint64_t rnd;
    uint64_t version[WB_KEYS];
    char data[WB_KEYS][32];
    bool live[WB_KEYS];
    int failures;
    char why[256];
} wb_thread;

static void *
wb_run(void *arg)
{
    wb_thread *t = arg;
    shard_write w[WB_BATCH];
    char keys[WB_BATCH][16], datas[WB_BATCH][32];
    int kidx[WB_BATCH];
    om_status expect[WB_BATCH];

    for (int b = 0; b < WB_BATCHES && t->failures == 0; b++) {
        bool live[WB_KEYS], touched[WB_KEYS] = {false};

        memcpy(live, t->live, sizeof(live));
        memset(w, 0, sizeof(w));
        for (int i = 0; i < WB_BATCH; i++) {
            int k = t->half * (WB_KEYS / 2) + (int)(tu_rand(&t->rnd) % (WB_KEYS / 2));
            uint64_t r = tu_rand(&t->rnd) % 8;
            bool ok;

            kidx[i] = k;
            snprintf(keys[i], sizeof(keys[i]), "k%03d", k);
            snprintf(datas[i], sizeof(datas[i]), "d%d.%d.%d", k, b, i);
            w[i].args.bucket = S("bkt");
            w[i].args.key = S(keys[i]);
            w[i].args.data = S(datas[i]);
            w[i].is_delete = r == 0;
            if (w[i].is_delete)
                w[i].args.data = OM_SLICE_NULL;
            if (r == 1)
                w[i].args.cond = (shard_cond){SHARD_COND_IF_ABSENT, 0};
            /* if_version needs the version ahead: only for a key not yet written in this batch */
            if (r == 2 && !touched[k])
                w[i].args.cond = (shard_cond){SHARD_COND_IF_VERSION, t->version[k]};
            /* the expected answer, as if the writes ran one after another */
            if (w[i].is_delete)
                ok = live[k];
            else if (w[i].args.cond.kind == SHARD_COND_IF_ABSENT)
                ok = !live[k];
            else if (w[i].args.cond.kind == SHARD_COND_IF_VERSION)
                ok = live[k];
            else
                ok = true;
            expect[i] = ok ? OM_OK
                        : w[i].is_delete && w[i].args.cond.kind == SHARD_COND_NONE
                            ? OM_E_NOTFOUND
                            : OM_E_PRECONDITION;
            if (ok) {
                live[k] = !w[i].is_delete;
                touched[k] = true;
            }
        }
        shard_write_many(t->s, w, WB_BATCH);
        for (int i = 0; i < WB_BATCH; i++) {
            int k = kidx[i];

            if (w[i].status != expect[i]) {
                snprintf(t->why, sizeof(t->why), "batch %d write %d key %d: %s, expected %s (%s)",
                         b, i, k, om_status_str(w[i].status), om_status_str(expect[i]), w[i].err);
                t->failures++;
                break;
            }
            if (w[i].status != OM_OK)
                continue;
            if (w[i].info.version <= t->version[k]) {
                snprintf(t->why, sizeof(t->why), "key %d: version %llu after %llu", k,
                         (unsigned long long)w[i].info.version, (unsigned long long)t->version[k]);
                t->failures++;
                break;
            }
            t->version[k] = w[i].info.version;
            t->live[k] = !w[i].is_delete;
            snprintf(t->data[k], sizeof(t->data[k]), "%s", datas[i]);
        }
    }
    return NULL;
}

START_TEST(write_batches_reuse_buffers)
{
    shard *s = open_shard();
    uint64_t seed = tu_seed("write_batches_reuse_buffers");
    wb_thread t[2];
    pthread_t th[2];
    om_buf raw = OM_BUF_INIT;
    shard_record r;
    char err[256], key[16];

    memset(t, 0, sizeof(t));
    for (int i = 0; i < 2; i++) {
        t[i].s = s;
        t[i].half = i;
        t[i].rnd = seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL;
        ck_assert_int_eq(pthread_create(&th[i], NULL, wb_run, &t[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(t[i].failures == 0, "thread %d: %s", i, t[i].why);
    for (int k = 0; k < WB_KEYS; k++) {
        const wb_thread *o = &t[k / (WB_KEYS / 2)];
        om_status st;

        snprintf(key, sizeof(key), "k%03d", k);
        st = shard_get(s, S("bkt"), S(key), &raw, &r, err, sizeof(err));
        if (!o->live[k]) {
            ck_assert_msg(st == OM_E_NOTFOUND, "key %d: %s", k, om_status_str(st));
            continue;
        }
        ck_assert_msg(st == OM_OK, "key %d: %s", k, err);
        ck_assert_uint_eq(r.version, o->version[k]);
        ck_assert_msg(om_slice_eq(r.data, S(o->data[k])), "key %d: data", k);
    }
    om_buf_free(&raw);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/* ---- list against an oracle ---- */

#define NKEYS 400

typedef struct item {
    char *s;
    size_t n;
    bool is_prefix;
} item;

typedef struct items {
    item v[4 * NKEYS];
    int n;
} items;

static om_status
collect_entry(void *arg, om_slice key, const shard_record *rec)
{
    items *it = arg;
    ck_assert_int_eq(rec->type, SHARD_REC_LIVE);
    ck_assert_int_lt(it->n, 4 * NKEYS);
    it->v[it->n++] = (item){om_slice_strdup(key), key.n, false};
    return OM_OK;
}

static om_status
collect_prefix(void *arg, om_slice cp)
{
    items *it = arg;
    ck_assert_int_lt(it->n, 4 * NKEYS);
    it->v[it->n++] = (item){om_slice_strdup(cp), cp.n, true};
    return OM_OK;
}

static int
cmp_str(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return om_slice_cmp(om_slice_make(x->s, x->n), om_slice_make(y->s, y->n));
}

static void
items_free(items *it)
{
    for (int i = 0; i < it->n; i++)
        free(it->v[i].s);
    it->n = 0;
}

/* The expected full listing computed from the sorted live keys. */
static void
oracle(const items *live, const char *prefix, const char *delim, const char *start_after,
       items *out)
{
    size_t pn = strlen(prefix), dn = strlen(delim);

    out->n = 0;
    for (int i = 0; i < live->n; i++) {
        om_slice k = om_slice_make(live->v[i].s, live->v[i].n);
        if (!om_slice_has_prefix(k, S(prefix)))
            continue;
        if (om_slice_cmp(k, S(start_after)) <= 0)
            continue;
        const char *d = dn ? memmem(k.p + pn, k.n - pn, delim, dn) : NULL;
        if (d != NULL) {
            size_t cn = (size_t)((const uint8_t *)d - k.p) + dn;
            if (out->n > 0 && out->v[out->n - 1].is_prefix && out->v[out->n - 1].n == cn &&
                memcmp(out->v[out->n - 1].s, k.p, cn) == 0)
                continue;
            out->v[out->n++] = (item){om_slice_strdup(om_slice_make(k.p, cn)), cn, true};
        } else {
            out->v[out->n++] = (item){om_slice_strdup(k), k.n, false};
        }
    }
}

START_TEST(list_matches_oracle)
{
    static const char *alphabet[] = {"a", "b", "/", ".", "\xc3\xa9", "z"};
    static const char *delims[] = {"", "/", "a/", "\xc3\xa9"};
    uint64_t seed = tu_seed("list_matches_oracle");
    shard *s = open_shard();
    items *all = calloc(1, sizeof(items)), *live = calloc(1, sizeof(items));
    items *want = calloc(1, sizeof(items)), *got = calloc(1, sizeof(items));
    shard_cond none = {SHARD_COND_NONE, 0};
    char err[256];
    shard_obj_info info;

    /* random keys in "bkt", with decoys in neighbouring buckets "bk" and "bkt0" */
    for (int i = 0; i < NKEYS; i++) {
        char k[16];
        int len = 1 + (int)(tu_rand(&seed) % 6), n = 0;
        for (int j = 0; j < len; j++)
            n += snprintf(k + n, sizeof(k) - (size_t)n, "%s", alphabet[tu_rand(&seed) % 6]);
        ck_assert_int_eq(put(s, "bkt", k, "v", none, NULL), OM_OK);
        ck_assert_int_eq(put(s, "bk0", k, "decoy", none, NULL), OM_OK);
        ck_assert_int_eq(put(s, "bkt0", k, "decoy", none, NULL), OM_OK);
        bool dup = false;
        for (int j = 0; j < all->n && !dup; j++)
            dup = strcmp(all->v[j].s, k) == 0;
        if (!dup)
            all->v[all->n++] = (item){strdup(k), strlen(k), false};
    }
    /* delete a fifth of them: tombstones must be invisible */
    for (int i = 0; i < all->n; i++) {
        if (tu_rand(&seed) % 5 == 0) {
            ck_assert_int_eq(
                shard_delete(s, S("bkt"), S(all->v[i].s), none, 0, &info, err, sizeof(err)), OM_OK);
        } else {
            live->v[live->n++] = (item){strdup(all->v[i].s), all->v[i].n, false};
        }
    }
    qsort(live->v, (size_t)live->n, sizeof(item), cmp_str);

    for (int q = 0; q < 150; q++) {
        char prefix[16] = "", start_after[16] = "";
        const char *delim = delims[tu_rand(&seed) % 4];
        uint32_t page = (uint32_t)(tu_rand(&seed) % 4 == 0 ? 1000 : 1 + tu_rand(&seed) % 7);
        if (tu_rand(&seed) % 2) {
            const item *k = &live->v[tu_rand(&seed) % (uint64_t)live->n];
            size_t pn = tu_rand(&seed) % (k->n + 1);
            while (!om_utf8_valid(om_slice_make(k->s, pn)))
                pn--; /* do not cut a multi-byte character */
            memcpy(prefix, k->s, pn);
            prefix[pn] = 0;
        }
        if (tu_rand(&seed) % 3 == 0) {
            const item *k = &all->v[tu_rand(&seed) % (uint64_t)all->n];
            memcpy(start_after, k->s, k->n + 1);
        }
        oracle(live, prefix, delim, start_after, want);

        shard_list_req req = {.bucket = S("bkt"),
                              .prefix = S(prefix),
                              .delimiter = S(delim),
                              .start_after = S(start_after),
                              .max_keys = page};
        shard_list_result res = {0};
        om_buf token = OM_BUF_INIT;
        int pages = 0;
        got->n = 0;
        for (;;) {
            int before = got->n;
            ck_assert_msg(shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res,
                                     err, sizeof(err)) == OM_OK,
                          "query %d: %s", q, err);
            ck_assert_int_eq((int)res.key_count, got->n - before);
            pages++;
            if (!res.is_truncated) {
                ck_assert_uint_eq(res.next_token.n, 0);
                break;
            }
            ck_assert_uint_eq(res.key_count, page);
            ck_assert_uint_gt(res.next_token.n, 0);
            ck_assert_int_le(pages, 4 * NKEYS);
            om_buf_set(&token, om_buf_slice(&res.next_token));
            req.continuation_token = om_buf_slice(&token);
        }
        ck_assert_msg(got->n == want->n,
                      "query %d prefix='%s' delim='%s' after='%s' page=%u: %d != %d", q, prefix,
                      delim, start_after, page, got->n, want->n);
        for (int i = 0; i < want->n; i++) {
            ck_assert_int_eq(got->v[i].is_prefix, want->v[i].is_prefix);
            ck_assert_msg(got->v[i].n == want->v[i].n &&
                              memcmp(got->v[i].s, want->v[i].s, want->v[i].n) == 0,
                          "query %d item %d: got '%s' want '%s'", q, i, got->v[i].s, want->v[i].s);
        }
        /* full pages until the last one; an empty listing is one empty page */
        ck_assert_int_eq(pages, want->n == 0 ? 1 : (want->n + (int)page - 1) / (int)page);
        items_free(got);
        items_free(want);
        om_buf_free(&token);
        om_buf_free(&res.next_token);
    }
    items_free(all);
    items_free(live);
    free(all);
    free(live);
    free(want);
    free(got);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(list_limits)
{
    shard *s = open_shard();
    shard_cond none = {SHARD_COND_NONE, 0};
    items *got = calloc(1, sizeof(items));
    shard_list_result res = {0};
    char err[256];

    ck_assert_int_eq(put(s, "bkt", "a", "v", none, NULL), OM_OK);
    ck_assert_int_eq(put(s, "bkt", "b", "v", none, NULL), OM_OK);
    shard_list_req req = {.bucket = S("bkt"), .max_keys = 0};
    ck_assert_int_eq(
        shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res, err, sizeof(err)),
        OM_OK);
    ck_assert_int_eq(got->n, 0);
    ck_assert(!res.is_truncated);
    req.max_keys = 1001;
    ck_assert_int_eq(
        shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res, err, sizeof(err)),
        OM_E_INVALID);
    ck_assert_msg(strncmp(err, "max_keys: ", 10) == 0, "%s", err);
    req.max_keys = 1;
    req.prefix = S("\xff");
    ck_assert_int_eq(
        shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res, err, sizeof(err)),
        OM_E_INVALID);
    /* exactly max_keys entries and nothing after: not truncated */
    req.prefix = S("");
    req.max_keys = 2;
    ck_assert_int_eq(
        shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res, err, sizeof(err)),
        OM_OK);
    ck_assert_int_eq(got->n, 2);
    ck_assert(!res.is_truncated);
    items_free(got);
    free(got);
    om_buf_free(&res.next_token);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/* A page ends early at its byte budget, and the token continues exactly there. */
START_TEST(list_byte_budget)
{
    shard *s = open_shard();
    items *got = calloc(1, sizeof(items));
    char meta[1100], key[16], err[256];
    om_buf token = OM_BUF_INIT;
    int pages = 0;

    memset(meta, ' ', sizeof(meta));
    memcpy(meta, "{\"pad\":1", 8);
    meta[sizeof(meta) - 2] = '}';
    meta[sizeof(meta) - 1] = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        shard_store_args a = {
            .bucket = S("bkt"), .key = S(key), .data = S("v"), .metadata = S(meta)};
        shard_obj_info info;
        ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_OK);
    }
    shard_list_req req = {
        .bucket = S("bkt"), .max_keys = 1000, .max_bytes = 2600, .count_metadata = true};
    for (;;) {
        shard_list_result res = {.next_token = OM_BUF_INIT};
        int before = got->n;
        ck_assert_int_eq(shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res,
                                    err, sizeof(err)),
                         OM_OK);
        pages++;
        ck_assert_int_le(got->n - before, 2); /* 2 x (1099 + 3 + 128) fit in 2600, 3 do not */
        ck_assert_int_ge(got->n - before, 1);
        if (!res.is_truncated) {
            om_buf_free(&res.next_token);
            break;
        }
        om_buf_set(&token, om_buf_slice(&res.next_token));
        req.continuation_token = om_buf_slice(&token);
        om_buf_free(&res.next_token);
    }
    ck_assert_int_eq(pages, 5);
    ck_assert_int_eq(got->n, 10);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        ck_assert_str_eq(got->v[i].s, key);
    }
    /* one entry over the budget still comes alone: progress is guaranteed */
    req = (shard_list_req){
        .bucket = S("bkt"), .max_keys = 1000, .max_bytes = 10, .count_metadata = true};
    items_free(got);
    shard_list_result res = {.next_token = OM_BUF_INIT};
    ck_assert_int_eq(
        shard_list(shard_db(s), &req, collect_entry, collect_prefix, got, &res, err, sizeof(err)),
        OM_OK);
    ck_assert_int_eq(got->n, 1);
    ck_assert(res.is_truncated);
    om_buf_free(&res.next_token);
    items_free(got);
    free(got);
    om_buf_free(&token);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/*
 * A key holding the highest version (a forwarded write may carry any version)
 * cannot be written again with an assigned one: refused with a message,
 * never a wrapped-around (lower) version and never a crash.
 */
START_TEST(highest_version_is_refused_not_wrapped)
{
    shard *s = open_shard();
    shard_obj_info info;
    char err[256];
    shard_store_args a = {
        .bucket = S("bkt"), .key = S("max"), .data = S("v"), .forced_version = UINT64_MAX};

    ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(info.version, UINT64_MAX);
    a.forced_version = 0;
    ck_assert_int_eq(shard_store(s, &a, &info, err, sizeof(err)), OM_E_INVALID);
    ck_assert_msg(strncmp(err, "version: ", 9) == 0, "message %s", err);
    ck_assert_int_eq(shard_delete(s, S("bkt"), S("max"), (shard_cond){SHARD_COND_NONE, 0}, 0, &info,
                                  err, sizeof(err)),
                     OM_E_INVALID);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/* The version rule is checked in every build: a version that does not increase aborts. */
START_TEST(version_not_increasing_aborts)
{
    shard_version_check(false, 0, 5); /* a new key: any version */
    shard_version_check(true, 5, 6);
    shard_version_check(true, 6, 6); /* the same version again: SIGABRT */
}
END_TEST

#if OM_ASSERTS_ON
/* A commit pipeline whose callbacks only count (no engine, no replies). */
static int commit_written, commit_answered;

static void
count_write(void *arg, commit_job **jobs, size_t n, bool nosync, void *scratch)
{
    commit_written += (int)n;
}

static void
count_answer(void *arg, commit_job *j)
{
    commit_answered++;
}

static void *
submit_main(void *arg)
{
    commit *c = arg;
    commit_job *j = commit_job_alloc(c, sizeof(*j));

    commit_submit(c, j); /* not the thread that serves: SIGABRT */
    return NULL;
}

/* "Loop thread only": the pipeline belongs to the thread that first served it. */
START_TEST(commit_from_another_thread_aborts)
{
    commit_ops ops = {.write = count_write, .answer = count_answer};
    commit *c = NULL;
    commit_job *j;
    pthread_t th;

    ck_assert_int_eq(commit_open(NULL, &ops, &c), OM_OK);
    j = commit_job_alloc(c, sizeof(*j));
    ck_assert_ptr_nonnull(j);
    commit_submit(c, j); /* no loop: written and answered at once, on this thread */
    ck_assert_int_eq(commit_written, 1);
    ck_assert_int_eq(commit_answered, 1);
    ck_assert_int_eq(pthread_create(&th, NULL, submit_main, c), 0);
    pthread_join(th, NULL);
}
END_TEST

/* Stripes are taken in ascending order only (debug and sanitizer builds check it). */
START_TEST(stripes_out_of_order_abort)
{
    shard *s = calloc(1, sizeof(*s)); /* zeroed mutexes are unlocked ones */
    int held = -1;

    ck_assert_ptr_nonnull(s);
    shard_stripe_lock(s, 3, &held);
    shard_stripe_lock(s, 7, &held);
    ck_assert_int_eq(held, 7);
    shard_stripe_lock(s, 5, &held); /* below one held: SIGABRT */
}
END_TEST
#endif

static Suite *
shard_suite(void)
{
    Suite *s = suite_create("shard");
    TCase *tc = tcase_create("validation");
    tcase_add_test(tc, bucket_names);
    tcase_add_test(tc, key_names);
    tcase_add_test(tc, metadata_json);
    suite_add_tcase(s, tc);
    tc = tcase_create("codec");
    tcase_add_test(tc, record_roundtrip_and_truncation);
    tcase_add_test(tc, lsm_key_and_successor);
    tcase_add_test(tc, tokens_are_validated);
    suite_add_tcase(s, tc);
    tc = tcase_create("operations");
    tcase_add_test(tc, store_get_delete_versions);
    tcase_add_test(tc, read_hints_change_nothing);
    tcase_add_test(tc, condition_matrix);
    tcase_add_test(tc, forced_versions_for_migration);
    tcase_add_test(tc, write_batch_matches_sequential);
    tcase_add_test(tc, write_batches_reuse_buffers);
    suite_add_tcase(s, tc);
    tc = tcase_create("list");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, list_matches_oracle);
    tcase_add_test(tc, list_limits);
    tcase_add_test(tc, list_byte_budget);
    suite_add_tcase(s, tc);
    tc = tcase_create("invariants");
    tcase_add_test(tc, highest_version_is_refused_not_wrapped);
    tcase_add_test_raise_signal(tc, version_not_increasing_aborts, SIGABRT);
#if OM_ASSERTS_ON
    tcase_add_test_raise_signal(tc, stripes_out_of_order_abort, SIGABRT);
    tcase_add_test_raise_signal(tc, commit_from_another_thread_aborts, SIGABRT);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(shard_suite());
}
