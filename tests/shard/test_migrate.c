/*
 * tests/shard/test_migrate.c -- unit suite of shard/migrate.c (the shard's
 * rings, fencing and compaction filter of online ring changes), against
 * random keys with the partitioner as the oracle:
 *
 *   fence     epoch 0 is unfenced; cur and pending admit exactly their
 *             owners; prev admits keys that did not move; other epochs and
 *             "no ring" are WRONG_SHARD; Lists follow their epoch
 *   filter    with cur + pending a record is dropped iff neither names the
 *             shard; without a ring nothing is dropped; old tombstones go
 *             only while no change is pending
 *   install   older rings are ignored, pending is set and cleared, a ring
 *             without this shard is refused
 */
#include <stdio.h>
#include <string.h>

#include "partitioner/ring.h"
#include "shard/migrate.h"
#include "shard/record.h"
#include "tu.h"

#define NKEYS 3000

static ring *
mk(int nshards, uint32_t w1, uint64_t epoch)
{
    ring_shard s[4] = {{"s1", "127.0.0.1:1", w1},
                       {"s2", "127.0.0.1:2", 1},
                       {"s3", "127.0.0.1:3", 1},
                       {"s4", "127.0.0.1:4", 1}};
    ring *r = NULL;
    char err[128];

    ck_assert_int_eq(ring_new(s, (size_t)nshards, 16, epoch, &r, err, sizeof(err)), OM_OK);
    return r;
}

static bool
owns(const ring *r, const char *id, om_slice b, om_slice k)
{
    return strcmp(ring_lookup(r, b, k)->id, id) == 0;
}

static om_status
chk(shard_mig *m, uint64_t e, const char *key)
{
    char err[256];
    return shard_mig_check(m, e, om_slice_from_str("bkt"), om_slice_from_str(key), err,
                           sizeof(err));
}

static void
record(shard_rec_type t, uint64_t version, om_buf *out)
{
    shard_record r;

    memset(&r, 0, sizeof(r));
    r.type = t;
    r.version = version;
    ck_assert_int_eq(shard_record_encode(&r, out), OM_OK);
}

START_TEST(fence_follows_the_rings)
{
    uint64_t seed = tu_seed("fence_follows_the_rings"), rs = seed | 1;
    ring *e1 = mk(3, 1, 1), *e2 = mk(4, 1, 2);
    shard_mig *m[4];
    char err[256];

    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%d", i + 1);
        ck_assert_int_eq(shard_mig_new(id, NULL, &m[i]), OM_OK);
        ck_assert_int_eq(chk(m[i], 0, "x"), OM_OK);            /* unfenced */
        ck_assert_int_eq(chk(m[i], 1, "x"), OM_E_WRONG_SHARD); /* no ring yet */
        ck_assert_int_eq(shard_mig_install(m[i], e1, e2, err, sizeof(err)), OM_OK);
        ck_assert_uint_eq(shard_mig_epoch(m[i]), 1);
        ck_assert_uint_eq(shard_mig_pending_epoch(m[i]), 2);
    }
    for (int n = 0; n < NKEYS; n++) {
        char key[32];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)tu_rand(&rs));
        om_slice b = om_slice_from_str("bkt"), k = om_slice_from_str(key);
        for (int i = 0; i < 4; i++) {
            char id[8];
            snprintf(id, sizeof(id), "s%d", i + 1);
            ck_assert_int_eq(chk(m[i], 1, key) == OM_OK, owns(e1, id, b, k));
            ck_assert_int_eq(chk(m[i], 2, key) == OM_OK, owns(e2, id, b, k));
            ck_assert_int_eq(chk(m[i], 3, key), OM_E_WRONG_SHARD);
        }
    }
    /* Lists (empty key) pass under cur and pending */
    ck_assert_int_eq(chk(m[0], 1, ""), OM_OK);
    ck_assert_int_eq(chk(m[0], 2, ""), OM_OK);
    /* the switch: e2 in force, e1 becomes prev */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(shard_mig_install(m[i], e2, NULL, err, sizeof(err)), OM_OK);
    for (int n = 0; n < NKEYS; n++) {
        char key[32];
        snprintf(key, sizeof(key), "p%llu", (unsigned long long)tu_rand(&rs));
        om_slice b = om_slice_from_str("bkt"), k = om_slice_from_str(key);
        for (int i = 0; i < 3; i++) {
            char id[8];
            snprintf(id, sizeof(id), "s%d", i + 1);
            ck_assert_int_eq(chk(m[i], 1, key) == OM_OK, owns(e1, id, b, k) && owns(e2, id, b, k));
            ck_assert_int_eq(chk(m[i], 2, key) == OM_OK, owns(e2, id, b, k));
        }
    }
    ck_assert_int_eq(chk(m[0], 1, ""), OM_E_WRONG_SHARD); /* a List under prev: refused */
    for (int i = 0; i < 4; i++)
        shard_mig_free(m[i]);
    ring_unref(e1);
    ring_unref(e2);
}
END_TEST

START_TEST(filter_drops_what_moved_away)
{
    uint64_t seed = tu_seed("filter_drops_what_moved_away"), rs = seed | 1;
    ring *e1 = mk(3, 1, 1), *e2 = mk(3, 3, 2); /* s1's weight 1 -> 3 */
    shard_mig_opts o;
    shard_mig *m;
    om_buf live = OM_BUF_INIT, old_tomb = OM_BUF_INIT, lk = OM_BUF_INIT;
    char err[256];
    int dropped = 0;

    shard_mig_opts_init(&o);
    o.tombstone_retention_ms = 1000;
    ck_assert_int_eq(shard_mig_new("s2", &o, &m), OM_OK);
    record(SHARD_REC_LIVE, 5, &live);
    record(SHARD_REC_TOMBSTONE, 1000, &old_tomb); /* version 1000 µs: 1970, long expired */
    /* no ring: keep everything, expired tombstones too */
    ck_assert_int_eq(
        shard_mig_compaction_filter(m, 1, om_slice_from_str("bkt\0k"), om_buf_slice(&old_tomb)),
        LSM_FILTER_KEEP);
    ck_assert_int_eq(shard_mig_install(m, e1, e2, err, sizeof(err)), OM_OK);
    for (int n = 0; n < NKEYS; n++) {
        char key[32];
        snprintf(key, sizeof(key), "f%llu", (unsigned long long)tu_rand(&rs));
        om_slice b = om_slice_from_str("bkt"), k = om_slice_from_str(key);
        ck_assert_int_eq(shard_lsm_key(b, k, &lk), OM_OK);
        bool keep = owns(e1, "s2", b, k) || owns(e2, "s2", b, k);
        ck_assert_int_eq(shard_mig_compaction_filter(m, 1, om_buf_slice(&lk), om_buf_slice(&live)),
                         keep ? LSM_FILTER_KEEP : LSM_FILTER_DROP);
        if (keep) /* a change is pending: tombstones stay */
            ck_assert_int_eq(
                shard_mig_compaction_filter(m, 1, om_buf_slice(&lk), om_buf_slice(&old_tomb)),
                LSM_FILTER_KEEP);
        dropped += !keep;
    }
    ck_assert_int_gt(dropped, 0);
    ck_assert_int_eq(shard_mig_install(m, e2, NULL, err, sizeof(err)), OM_OK);
    for (int n = 0; n < NKEYS; n++) {
        char key[32];
        snprintf(key, sizeof(key), "g%llu", (unsigned long long)tu_rand(&rs));
        om_slice b = om_slice_from_str("bkt"), k = om_slice_from_str(key);
        ck_assert_int_eq(shard_lsm_key(b, k, &lk), OM_OK);
        bool mine = owns(e2, "s2", b, k);
        ck_assert_int_eq(shard_mig_compaction_filter(m, 1, om_buf_slice(&lk), om_buf_slice(&live)),
                         mine ? LSM_FILTER_KEEP : LSM_FILTER_DROP);
        /* no change pending: an expired tombstone goes */
        ck_assert_int_eq(
            shard_mig_compaction_filter(m, 1, om_buf_slice(&lk), om_buf_slice(&old_tomb)),
            LSM_FILTER_DROP);
    }
    om_buf_free(&live);
    om_buf_free(&old_tomb);
    om_buf_free(&lk);
    shard_mig_free(m);
    ring_unref(e1);
    ring_unref(e2);
}
END_TEST

START_TEST(install_rules)
{
    ring *e1 = mk(3, 1, 1), *e2 = mk(4, 1, 2), *only4 = NULL;
    ring_shard s4 = {"s4", "127.0.0.1:4", 1};
    shard_mig *m;
    char err[256];

    ck_assert_int_eq(ring_new(&s4, 1, 16, 5, &only4, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_mig_new("s4", NULL, &m), OM_OK);
    /* a new shard: not in cur, in pending -> accepted */
    ck_assert_int_eq(shard_mig_install(m, e1, e2, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(shard_mig_pending_epoch(m), 2);
    /* pending not above cur: refused */
    ck_assert_int_eq(shard_mig_install(m, e2, e1, err, sizeof(err)), OM_E_INVALID);
    /* ...but not in ring e1 alone */
    ck_assert_int_eq(shard_mig_install(m, e1, NULL, err, sizeof(err)), OM_E_INVALID);
    shard_mig_free(m);
    /* the same ring without pending clears it */
    ck_assert_int_eq(shard_mig_new("s1", NULL, &m), OM_OK);
    ck_assert_int_eq(shard_mig_install(m, e1, e2, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_mig_install(m, e1, NULL, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(shard_mig_pending_epoch(m), 0);
    ck_assert_uint_eq(shard_mig_epoch(m), 1);
    /* a shard in neither ring: refused */
    shard_mig_free(m);
    ck_assert_int_eq(shard_mig_new("s9", NULL, &m), OM_OK);
    ck_assert_int_eq(shard_mig_install(m, e1, e2, err, sizeof(err)), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "s9"));
    shard_mig_free(m);
    /* an older ring is ignored */
    ck_assert_int_eq(shard_mig_new("s4", NULL, &m), OM_OK);
    ck_assert_int_eq(shard_mig_install(m, only4, NULL, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_mig_install(m, e2, NULL, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(shard_mig_epoch(m), 5);
    shard_mig_free(m);
    ring_unref(e1);
    ring_unref(e2);
    ring_unref(only4);
}
END_TEST

static Suite *
migrate_suite(void)
{
    Suite *s = suite_create("shard-migrate");
    TCase *tc = tcase_create("migrate");

    tcase_add_test(tc, fence_follows_the_rings);
    tcase_add_test(tc, filter_drops_what_moved_away);
    tcase_add_test(tc, install_rules);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(migrate_suite());
}
