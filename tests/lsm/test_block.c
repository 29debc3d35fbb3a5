/*
 * tests/lsm/test_block.c -- unit suite for lsm/block.c: builder/iterator
 * round trips, restart points, seeks, and malformed blocks (which must end
 * the iteration with OM_E_CORRUPT, never crash or read out of bounds).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/lsm_int.h"
#include "tu.h"
#include "util/coding.h"

/* Internal key "key-%08d" (user key) with seq. */
static void
mk_ikey(om_buf *b, int i, uint64_t seq)
{
    char uk[32];

    om_buf_reset(b);
    snprintf(uk, sizeof(uk), "bucket/key-%08d", i);
    ck_assert_int_eq(lsm_ikey_append(b, om_slice_from_str(uk), seq, LSM_TYPE_VAL), OM_OK);
}

static void
mk_value(om_buf *b, int i)
{
    om_buf_reset(b);
    ck_assert_int_eq(om_buf_printf(b, "value-%d-%.*s", i, i % 50,
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
                     OM_OK);
}

/* Finish b, free it and return a heap copy of the block (its size in *size). */
static uint8_t *
finish_copy(lsm_block_builder *b, size_t *size)
{
    om_slice out;
    uint8_t *copy;

    ck_assert_int_eq(lsm_block_builder_finish(b, &out), OM_OK);
    ck_assert_uint_eq(out.n, lsm_block_builder_size(b));
    copy = malloc(out.n);
    memcpy(copy, out.p, out.n);
    *size = out.n;
    lsm_block_builder_fini(b);
    return copy;
}

/* Build a block of n keys (even numbers 0, 2, ... so odd ones fall between). */
static uint8_t *
build_block(int n, int interval, size_t *size)
{
    lsm_block_builder b;
    om_buf k = OM_BUF_INIT, v = OM_BUF_INIT;

    lsm_block_builder_init(&b, interval);
    for (int i = 0; i < n; i++) {
        mk_ikey(&k, 2 * i, 100);
        mk_value(&v, 2 * i);
        ck_assert_int_eq(lsm_block_builder_add(&b, om_buf_slice(&k), om_buf_slice(&v)), OM_OK);
    }
    om_buf_free(&k);
    om_buf_free(&v);
    return finish_copy(&b, size);
}

START_TEST(block_roundtrip_and_restarts)
{
    static const int intervals[] = {1, 2, 16, 1000};

    for (size_t t = 0; t < sizeof(intervals) / sizeof(intervals[0]); t++) {
        int n = 500, interval = intervals[t];
        size_t size;
        uint8_t *data = build_block(n, interval, &size);
        lsm_block blk;
        lsm_it *it;
        om_buf k = OM_BUF_INIT, v = OM_BUF_INIT;
        int i = 0;

        ck_assert_int_eq(lsm_block_parse(&blk, data, size, true), OM_OK);
        ck_assert_uint_eq(blk.nrestarts, (uint32_t)((n + interval - 1) / interval));
        ck_assert_int_eq(lsm_block_iter_new(&blk, LSM_CMP_IKEY, &it), OM_OK);
        for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it), i++) {
            mk_ikey(&k, 2 * i, 100);
            mk_value(&v, 2 * i);
            ck_assert(om_slice_eq(lsm_it_key(it), om_buf_slice(&k)));
            ck_assert(om_slice_eq(lsm_it_value(it), om_buf_slice(&v)));
        }
        ck_assert_int_eq(i, n);
        ck_assert_int_eq(lsm_it_status(it), OM_OK);
        lsm_it_free(it);
        lsm_block_free(&blk);
        om_buf_free(&k);
        om_buf_free(&v);
    }
}
END_TEST

START_TEST(block_seek)
{
    size_t size;
    uint8_t *data = build_block(300, 16, &size);
    lsm_block blk;
    lsm_it *it;
    om_buf k = OM_BUF_INIT, want = OM_BUF_INIT;

    ck_assert_int_eq(lsm_block_parse(&blk, data, size, true), OM_OK);
    ck_assert_int_eq(lsm_block_iter_new(&blk, LSM_CMP_IKEY, &it), OM_OK);
    for (int t = -1; t < 600; t++) {
        /* Exact keys land on themselves, odd ones on the next even key. */
        mk_ikey(&k, t, 100);
        lsm_it_seek(it, om_buf_slice(&k));
        if (t >= 599) {
            ck_assert(!lsm_it_valid(it));
            continue;
        }
        ck_assert(lsm_it_valid(it));
        mk_ikey(&want, t < 0 ? 0 : (t + 1) / 2 * 2, 100);
        ck_assert(om_slice_eq(lsm_it_key(it), om_buf_slice(&want)));
        /* After a seek, next continues in order. */
        if (t >= 0 && t < 590) {
            lsm_it_next(it);
            mk_ikey(&want, (t + 1) / 2 * 2 + 2, 100);
            ck_assert(om_slice_eq(lsm_it_key(it), om_buf_slice(&want)));
        }
    }
    /* A higher sequence sorts first: seeking (key 10, seq 200) finds (key 10, seq 100). */
    mk_ikey(&k, 10, 200);
    lsm_it_seek(it, om_buf_slice(&k));
    mk_ikey(&want, 10, 100);
    ck_assert(om_slice_eq(lsm_it_key(it), om_buf_slice(&want)));
    /* A lower sequence sorts after: (key 10, seq 50) finds key 12. */
    mk_ikey(&k, 10, 50);
    lsm_it_seek(it, om_buf_slice(&k));
    mk_ikey(&want, 12, 100);
    ck_assert(om_slice_eq(lsm_it_key(it), om_buf_slice(&want)));
    lsm_it_free(it);
    lsm_block_free(&blk);
    om_buf_free(&k);
    om_buf_free(&want);
}
END_TEST

START_TEST(block_empty_and_bytewise)
{
    lsm_block_builder b;
    om_slice out;
    lsm_block blk;
    lsm_block_iter it = {0};
    static const char *const names[] = {"a", "ab", "abc", "b", "zz"};

    lsm_block_builder_init(&b, 4);
    ck_assert(lsm_block_builder_empty(&b));
    ck_assert_int_eq(lsm_block_builder_finish(&b, &out), OM_OK);
    ck_assert_uint_eq(out.n, 8);
    ck_assert_int_eq(lsm_block_parse(&blk, (uint8_t *)out.p, out.n, false), OM_OK);
    lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
    lsm_it_seek_first(&it.base);
    ck_assert(!lsm_it_valid(&it.base));
    lsm_it_seek(&it.base, om_slice_from_str("abcdefghij"));
    ck_assert(!lsm_it_valid(&it.base));
    ck_assert_int_eq(lsm_it_status(&it.base), OM_OK);

    lsm_block_builder_reset(&b);
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(
            lsm_block_builder_add(&b, om_slice_from_str(names[i]), om_slice_from_str(names[i])),
            OM_OK);
    ck_assert_int_eq(lsm_block_builder_finish(&b, &out), OM_OK);
    ck_assert_int_eq(lsm_block_parse(&blk, (uint8_t *)out.p, out.n, false), OM_OK);
    lsm_block_iter_init(&it, &blk, LSM_CMP_BYTES);
    lsm_it_seek(&it.base, om_slice_from_str("aba"));
    ck_assert(lsm_it_valid(&it.base));
    ck_assert(om_slice_eq(lsm_it_key(&it.base), om_slice_from_str("abc")));
    lsm_it_seek(&it.base, om_slice_from_str("b"));
    ck_assert(om_slice_eq(lsm_it_value(&it.base), om_slice_from_str("b")));
    lsm_it_next(&it.base);
    ck_assert(om_slice_eq(lsm_it_key(&it.base), om_slice_from_str("zz")));
    lsm_it_next(&it.base);
    ck_assert(!lsm_it_valid(&it.base));
    lsm_block_iter_fini(&it);
    lsm_block_builder_fini(&b);
}
END_TEST

/*
 * A restart entry must hold its whole key (shared 0) and, in an internal-key
 * block, at least a trailer: the binary search compares restart keys in
 * place, so a restart with a shared prefix or a short key is OM_E_CORRUPT.
 */
START_TEST(block_seek_corrupt_restart_key)
{
    for (int damage = 0; damage < 2; damage++) {
        size_t n;
        uint8_t *data = build_block(64, 1, &n);
        lsm_block blk;
        lsm_block_iter it = {0};
        om_buf k = OM_BUF_INIT;
        uint32_t nr, roff, mid_off;

        ck_assert_int_eq(lsm_block_parse(&blk, data, n, false), OM_OK);
        nr = blk.nrestarts;
        ck_assert_uint_eq(nr, 64);
        roff = blk.restart_off;
        /* The first probe of the binary search is restart nr / 2. */
        mid_off = om_get_fixed32(data + roff + 4 * (nr / 2));
        ck_assert_uint_eq(data[mid_off], 0);                    /* shared */
        ck_assert_uint_ge(data[mid_off + 1], LSM_TRAILER_SIZE); /* unshared */
        if (damage == 0)
            data[mid_off] = 1; /* a restart claiming a shared prefix */
        else
            data[mid_off + 1] = LSM_TRAILER_SIZE - 1; /* too short for an internal key */
        lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
        mk_ikey(&k, 17, 100);
        lsm_it_seek(&it.base, om_buf_slice(&k));
        ck_assert(!lsm_it_valid(&it.base));
        ck_assert_int_eq(lsm_it_status(&it.base), OM_E_CORRUPT);
        /* The error sticks: later seeks stay invalid. */
        lsm_it_seek_first(&it.base);
        ck_assert(!lsm_it_valid(&it.base));
        ck_assert_int_eq(lsm_it_status(&it.base), OM_E_CORRUPT);
        lsm_block_iter_fini(&it);
        om_buf_free(&k);
        free(data);
    }
}
END_TEST

/*
 * Keys longer than the iterator's inline key buffer, sharing long prefixes,
 * are rebuilt in a heap buffer: every key read back and every seek must be
 * exact, also after the iterator is re-initialised over another block.
 */
START_TEST(block_long_keys)
{
    lsm_block_builder b;
    om_buf k = OM_BUF_INIT, want = OM_BUF_INIT;
    om_slice out;
    lsm_block blk;
    lsm_block_iter it = {0};
    char uk[512]; /* longest key: 300 + 1 + 4 + 1 + 121 bytes */
    const int n = 50;

    lsm_block_builder_init(&b, 16);
    for (int i = 0; i < n; i++) {
        /* 300 shared bytes, then a varying tail; lengths vary around the inline size. */
        int len = snprintf(uk, sizeof(uk), "%0300d/%04d/%0*d", 7, i, 1 + (i % 7) * 20, i);

        om_buf_reset(&k);
        ck_assert_int_eq(lsm_ikey_append(&k, om_slice_make(uk, (size_t)len), 5, LSM_TYPE_VAL),
                         OM_OK);
        ck_assert_int_eq(lsm_block_builder_add(&b, om_buf_slice(&k), om_slice_from_str("v")),
                         OM_OK);
    }
    ck_assert_int_eq(lsm_block_builder_finish(&b, &out), OM_OK);
    ck_assert_int_eq(lsm_block_parse(&blk, (uint8_t *)out.p, out.n, false), OM_OK);
    for (int round = 0; round < 2; round++) {
        int i = 0;

        lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
        for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base); lsm_it_next(&it.base), i++) {
            int len = snprintf(uk, sizeof(uk), "%0300d/%04d/%0*d", 7, i, 1 + (i % 7) * 20, i);

            om_buf_reset(&want);
            ck_assert_int_eq(
                lsm_ikey_append(&want, om_slice_make(uk, (size_t)len), 5, LSM_TYPE_VAL), OM_OK);
            ck_assert(om_slice_eq(lsm_it_key(&it.base), om_buf_slice(&want)));
        }
        ck_assert_int_eq(i, n);
        ck_assert_int_eq(lsm_it_status(&it.base), OM_OK);
        for (int j = n - 1; j >= 0; j -= 3) {
            int len = snprintf(uk, sizeof(uk), "%0300d/%04d/%0*d", 7, j, 1 + (j % 7) * 20, j);

            om_buf_reset(&want);
            ck_assert_int_eq(
                lsm_ikey_append(&want, om_slice_make(uk, (size_t)len), 5, LSM_TYPE_VAL), OM_OK);
            lsm_it_seek(&it.base, om_buf_slice(&want));
            ck_assert(lsm_it_valid(&it.base));
            ck_assert(om_slice_eq(lsm_it_key(&it.base), om_buf_slice(&want)));
        }
    }
    lsm_block_iter_fini(&it);
    lsm_block_builder_fini(&b);
    om_buf_free(&k);
    om_buf_free(&want);
}
END_TEST

/* Iterate everything and seek a few keys; return the final status. Must not crash. */
static om_status
exercise(const uint8_t *data, size_t n, uint64_t *rng)
{
    uint8_t *copy = malloc(n ? n : 1);
    lsm_block blk;
    lsm_block_iter it = {0};
    om_buf k = OM_BUF_INIT;
    om_status st;
    int count = 0;

    memcpy(copy, data, n);
    if (lsm_block_parse(&blk, copy, n, true) != OM_OK) {
        free(copy);
        return OM_E_CORRUPT;
    }
    lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
    for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base) && count < 100000;
         lsm_it_next(&it.base), count++)
        ck_assert_uint_ge(lsm_it_key(&it.base).n, LSM_TRAILER_SIZE);
    st = lsm_it_status(&it.base);
    for (int s = 0; s < 4; s++) {
        mk_ikey(&k, (int)(tu_rand(rng) % 600), 100);
        lsm_it_seek(&it.base, om_buf_slice(&k));
        if (lsm_it_status(&it.base) != OM_OK)
            st = lsm_it_status(&it.base);
        lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
        lsm_block_iter_seek_point(&it, om_buf_slice(&k));
        if (lsm_it_status(&it.base) != OM_OK)
            st = lsm_it_status(&it.base);
        lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
    }
    lsm_block_iter_fini(&it);
    lsm_block_free(&blk);
    om_buf_free(&k);
    return st;
}

/*
 * A key-indexed block: user keys 2i (i < n), 1 + i % 3 versions each
 * (sequences 300, 200, 100; every 5th newest version a tombstone).
 */
static uint8_t *
build_indexed_block(int n, int interval, bool key_index, size_t *size, int *nentries)
{
    lsm_block_builder b;
    om_buf k = OM_BUF_INIT, v = OM_BUF_INIT;
    char uk[32];

    *nentries = 0;
    lsm_block_builder_init(&b, interval);
    if (key_index)
        lsm_block_builder_key_index(&b);
    for (int i = 0; i < n; i++) {
        snprintf(uk, sizeof(uk), "bucket/key-%08d", 2 * i);
        for (int ver = 0; ver <= i % 3; ver++) {
            lsm_vtype t = ver == 0 && i % 5 == 0 ? LSM_TYPE_DEL : LSM_TYPE_VAL;

            om_buf_reset(&k);
            ck_assert_int_eq(lsm_ikey_append(&k, om_slice_from_str(uk), 300 - 100 * ver, t), OM_OK);
            mk_value(&v, 2 * i + ver);
            ck_assert_int_eq(lsm_block_builder_add(&b, om_buf_slice(&k), om_buf_slice(&v)), OM_OK);
            (*nentries)++;
        }
    }
    om_buf_free(&k);
    om_buf_free(&v);
    return finish_copy(&b, size);
}

/* seek_point agrees with a seek for every key present, absent and between, at every sequence. */
static void
check_seek_point(const lsm_block *blk, int n)
{
    lsm_block_iter a = {0}, p = {0};
    om_buf k = OM_BUF_INIT;
    char uk[32];
    static const uint64_t seqs[] = {LSM_MAX_SEQ, 301, 300, 250, 200, 150, 100, 50, 0};
    int said_absent = 0;

    for (int i = -1; i <= 2 * n + 1; i++) {
        snprintf(uk, sizeof(uk), "bucket/key-%08d", i);
        for (size_t s = 0; s < sizeof(seqs) / sizeof(seqs[0]); s++) {
            om_buf_reset(&k);
            ck_assert_int_eq(lsm_ikey_append(&k, om_slice_from_str(uk), seqs[s], LSM_TYPE_SEEK),
                             OM_OK);
            lsm_block_iter_init(&a, blk, LSM_CMP_IKEY);
            lsm_block_iter_init(&p, blk, LSM_CMP_IKEY);
            lsm_it_seek(&a.base, om_buf_slice(&k));
            if (lsm_block_iter_seek_point(&p, om_buf_slice(&k))) {
                ck_assert_int_eq(lsm_it_valid(&p.base), lsm_it_valid(&a.base));
                if (lsm_it_valid(&a.base)) {
                    ck_assert(om_slice_eq(lsm_it_key(&p.base), lsm_it_key(&a.base)));
                    ck_assert(om_slice_eq(lsm_it_value(&p.base), lsm_it_value(&a.base)));
                }
            } else {
                /* Absent: a seek stops at another user key or runs off the end. */
                said_absent++;
                ck_assert(!lsm_it_valid(&p.base));
                ck_assert(i < 0 || i % 2 == 1 || i >= 2 * n);
                if (lsm_it_valid(&a.base))
                    ck_assert(!om_slice_eq(lsm_ikey_user(lsm_it_key(&a.base)),
                                           lsm_ikey_user(om_buf_slice(&k))));
            }
            ck_assert_int_eq(lsm_it_status(&p.base), OM_OK);
        }
    }
    if (blk->nkeys > 0)
        ck_assert_int_gt(said_absent, 0);
    lsm_block_iter_fini(&a);
    lsm_block_iter_fini(&p);
    om_buf_free(&k);
}

START_TEST(block_key_index)
{
    int sizes[] = {1, 2, 15, 16, 17, 200};

    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        int n = sizes[z], ne, ne2;
        size_t size, size2;
        uint8_t *data = build_indexed_block(n, 16, true, &size, &ne);
        uint8_t *plain = build_indexed_block(n, 16, false, &size2, &ne2);
        lsm_block blk, pb;
        lsm_block_iter a = {0}, b = {0};
        int count = 0;

        ck_assert_int_eq(lsm_block_parse(&blk, data, size, true), OM_OK);
        ck_assert_int_eq(lsm_block_parse(&pb, plain, size2, true), OM_OK);
        ck_assert_uint_eq(blk.nkeys, (uint32_t)n);
        ck_assert_uint_eq(pb.nkeys, 0);
        /* The index costs 3 bytes per user key and 2 more; prefixes against the first key little.
         */
        ck_assert_uint_le(size, size2 + 3 * (size_t)n + 2 + (size_t)ne * 2);
        /* Both decode to the same entries in order (the plain decoder reads indexed blocks). */
        lsm_block_iter_init(&a, &blk, LSM_CMP_IKEY);
        lsm_block_iter_init(&b, &pb, LSM_CMP_IKEY);
        for (lsm_it_seek_first(&a.base), lsm_it_seek_first(&b.base); lsm_it_valid(&a.base);
             lsm_it_next(&a.base), lsm_it_next(&b.base), count++) {
            ck_assert(lsm_it_valid(&b.base));
            ck_assert(om_slice_eq(lsm_it_key(&a.base), lsm_it_key(&b.base)));
            ck_assert(om_slice_eq(lsm_it_value(&a.base), lsm_it_value(&b.base)));
        }
        ck_assert(!lsm_it_valid(&b.base));
        ck_assert_int_eq(lsm_it_status(&a.base), OM_OK);
        ck_assert_int_eq(count, ne);
        check_seek_point(&blk, n);
        check_seek_point(&pb, n);
        /* Parsed again from the same bytes: the same index. */
        lsm_block again;
        ck_assert_int_eq(lsm_block_parse_again(&again, data, size), OM_OK);
        ck_assert_uint_eq(again.nkeys, blk.nkeys);
        ck_assert_uint_eq(again.restart_off, blk.restart_off);
        lsm_block_iter_fini(&a);
        lsm_block_iter_fini(&b);
        lsm_block_free(&blk);
        lsm_block_free(&pb);
    }
}
END_TEST

START_TEST(block_key_index_corrupt)
{
    int ne;
    size_t size;
    uint8_t *data = build_indexed_block(40, 16, true, &size, &ne), *bad = malloc(size);
    lsm_block blk;

    /* The count or an offset out of place: the parse refuses the block. */
    memcpy(bad, data, size);
    bad[size - 6] = 0xff;
    bad[size - 5] = 0xff;
    ck_assert_int_eq(lsm_block_parse(&blk, bad, size, false), OM_E_CORRUPT);
    memcpy(bad, data, size);
    bad[size - 6 - 40 - 2 * 40] = 1; /* the first offset must be 0 */
    ck_assert_int_eq(lsm_block_parse(&blk, bad, size, false), OM_E_CORRUPT);
    memcpy(bad, data, size);
    bad[size - 6 - 40 - 2] = 0xff; /* the last offset past the entries */
    bad[size - 6 - 40 - 1] = 0xff;
    ck_assert_int_eq(lsm_block_parse(&blk, bad, size, false), OM_E_CORRUPT);
    /* A fingerprint changed: the key is not found through the index (never another key's entry). */
    memcpy(bad, data, size);
    for (int j = 0; j < 40; j++)
        bad[size - 6 - 40 + j] ^= 0x5a;
    ck_assert_int_eq(lsm_block_parse(&blk, bad, size, false), OM_OK);
    {
        lsm_block_iter it = {0};
        om_buf k = OM_BUF_INIT;

        for (int i = 0; i < 40; i++) {
            char uk[32];

            snprintf(uk, sizeof(uk), "bucket/key-%08d", 2 * i);
            om_buf_reset(&k);
            ck_assert_int_eq(lsm_ikey_append(&k, om_slice_from_str(uk), LSM_MAX_SEQ, LSM_TYPE_SEEK),
                             OM_OK);
            lsm_block_iter_init(&it, &blk, LSM_CMP_IKEY);
            if (lsm_block_iter_seek_point(&it, om_buf_slice(&k)) && lsm_it_valid(&it.base))
                ck_assert(om_slice_eq(lsm_ikey_user(lsm_it_key(&it.base)), om_slice_from_str(uk)));
        }
        lsm_block_iter_fini(&it);
        om_buf_free(&k);
    }
    free(bad);
    free(data);
}
END_TEST

START_TEST(block_corruption)
{
    size_t size;
    uint8_t *data = build_block(200, 16, &size), *bad = malloc(size);
    uint64_t rng = tu_seed("block_corruption");
    int corrupt = 0;

    ck_assert_int_eq(exercise(data, size, &rng), OM_OK);
    /* Targeted: a restart count that does not fit, a truncated block. */
    memcpy(bad, data, size);
    om_put_fixed32(bad + size - 4, 1u << 30);
    ck_assert_int_eq(exercise(bad, size, &rng), OM_E_CORRUPT);
    ck_assert_int_eq(exercise(data, 3, &rng), OM_E_CORRUPT);
    om_put_fixed32(bad + size - 4, 0);
    ck_assert_int_eq(exercise(bad, size, &rng), OM_E_CORRUPT);
    /* The first entry claims a value longer than the block. */
    memcpy(bad, data, size);
    bad[2] = 0x7f;
    bad[0] = 0; /* shared */
    ck_assert_int_eq(exercise(bad, size, &rng), OM_E_CORRUPT);
    /* A restart offset pointing past the entries. */
    memcpy(bad, data, size);
    om_put_fixed32(bad + size - 8, (uint32_t)size);
    ck_assert_int_eq(exercise(bad, size, &rng), OM_E_CORRUPT);
    /* The first entry shares a prefix with a key that does not exist. */
    memcpy(bad, data, size);
    bad[0] = 5;
    ck_assert_int_eq(exercise(bad, size, &rng), OM_E_CORRUPT);

    /* Random damage: never a crash or out-of-bounds read (ASan checks the latter). */
    for (int round = 0; round < 3000; round++) {
        size_t n = size;

        memcpy(bad, data, size);
        switch (tu_rand(&rng) % 3) {
        case 0:
            bad[tu_rand(&rng) % size] ^= (uint8_t)(1u << (tu_rand(&rng) % 8));
            break;
        case 1:
            for (int j = 0; j < 8; j++)
                bad[tu_rand(&rng) % size] = (uint8_t)tu_rand(&rng);
            break;
        default:
            n = (size_t)(tu_rand(&rng) % size);
            break;
        }
        if (exercise(bad, n, &rng) != OM_OK)
            corrupt++;
    }
    printf("block_corruption: %d of 3000 damaged blocks detected structurally\n", corrupt);
    ck_assert_int_gt(corrupt, 0);
    free(bad);
    free(data);
}
END_TEST

static Suite *
block_suite(void)
{
    Suite *s = suite_create("lsm-block");
    TCase *tc = tcase_create("block");

    tcase_add_test(tc, block_roundtrip_and_restarts);
    tcase_add_test(tc, block_seek);
    tcase_add_test(tc, block_empty_and_bytewise);
    tcase_add_test(tc, block_corruption);
    tcase_add_test(tc, block_seek_corrupt_restart_key);
    tcase_add_test(tc, block_long_keys);
    tcase_add_test(tc, block_key_index);
    tcase_add_test(tc, block_key_index_corrupt);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(block_suite());
}
