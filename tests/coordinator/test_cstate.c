/*
 * tests/coordinator/test_cstate.c -- the cluster-state store (cstate.h)
 * with both backends: the file backend round trip, and the etcd backend
 * against a real etcd: bootstrap by exactly one of two coordinators, saves
 * conditional on the revision read (a second writer from the same state
 * loses with PRECONDITION), only the elected leader writes, followers hear
 * of changes through the watch, and with etcd gone a save fails with
 * UNAVAILABLE and a message naming etcd. Skipped (77) without etcd.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "coordinator/cstate.h"
#include "tu.h"
#include "tu_etcd.h"

static ring *
test_ring(const char *spec)
{
    ring *r = NULL;
    char err[256];

    ck_assert_msg(coord_parse_shards(spec, 16, &r, err, sizeof(err)) == OM_OK, "%s", err);
    return r;
}

static ring *
next_ring(const ring *r, const char *id)
{
    ring *out = NULL;
    char err[256];
    ring_shard s = {id, "127.0.0.1:9", 1};

    ck_assert_msg(ring_add_node(r, &s, &out, err, sizeof(err)) == OM_OK, "%s", err);
    return out;
}

static coord_cstate *
open_cs(struct event_base *base, const char *etcd)
{
    coord_cstate_opts o = {.data_dir = tu_tmpdir(),
                           .etcd = etcd,
                           .etcd_prefix = "/objmeta/test",
                           .etcd_timeout_ms = 1000,
                           .lease_ttl_s = 2};
    coord_cstate *s = NULL;
    char err[256];

    ck_assert_msg(coord_cstate_open(base, &o, err, sizeof(err), &s) == OM_OK, "%s", err);
    return s;
}

START_TEST(file_backend_roundtrip)
{
    coord_cstate *s = open_cs(NULL, NULL);
    ring *r1 = test_ring("s1=127.0.0.1:1,s2=127.0.0.1:2"), *r2 = next_ring(r1, "s3");
    ring *cur = NULL, *pend = NULL;
    om_buf mig = OM_BUF_INIT;
    char err[256];

    ck_assert_str_eq(coord_cstate_backend(s), "file");
    ck_assert_int_eq(coord_cstate_load(s, &cur, &pend, &mig, err, sizeof(err)), OM_E_NOTFOUND);
    ck_assert_int_eq(coord_cstate_create(s, r1, err, sizeof(err)), OM_OK);
    ck_assert(coord_cstate_is_leader(s));
    ck_assert_int_eq(coord_cstate_save(s, r1, r2, om_slice_from_str("mig"), err, sizeof(err)),
                     OM_OK);
    ck_assert_int_eq(coord_cstate_load(s, &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(cur, r1));
    ck_assert(ring_equal(pend, r2));
    ck_assert_mem_eq(mig.p, "mig", 3);
    ring_unref(cur);
    ring_unref(pend);
    ring_unref(r1);
    ring_unref(r2);
    om_buf_free(&mig);
    coord_cstate_close(s);
}
END_TEST

START_TEST(etcd_bad_options)
{
    coord_cstate_opts o = {.data_dir = "/tmp", .etcd = "http://127.0.0.1:1", .etcd_prefix = "x"};
    coord_cstate *s = NULL;
    char err[256];

    ck_assert_int_eq(coord_cstate_open(NULL, &o, err, sizeof(err), &s), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "etcd-prefix"));
    o.etcd_prefix = "/objmeta/x";
    o.etcd = "http://127.0.0.1:0x";
    ck_assert_int_eq(coord_cstate_open(NULL, &o, err, sizeof(err), &s), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "etcd endpoint"));
}
END_TEST

START_TEST(etcd_saves_compare_what_they_read)
{
    tu_etcd *e = tu_etcd_start(1);
    struct event_base *base = event_base_new();
    coord_cstate *a = open_cs(base, tu_etcd_endpoints(e));
    coord_cstate *b = open_cs(base, tu_etcd_endpoints(e));
    ring *r1 = test_ring("s1=127.0.0.1:1,s2=127.0.0.1:2"), *r2 = next_ring(r1, "s3");
    ring *r2b = next_ring(r1, "s4");
    ring *cur = NULL, *pend = NULL;
    om_buf mig = OM_BUF_INIT;
    char err[512];

    ck_assert_str_eq(coord_cstate_backend(a), "etcd");
    ck_assert_int_eq(coord_cstate_load(a, &cur, &pend, &mig, err, sizeof(err)), OM_E_NOTFOUND);
    ck_assert_int_eq(coord_cstate_load(b, &cur, &pend, &mig, err, sizeof(err)), OM_E_NOTFOUND);
    /* both bootstrap: one wins */
    ck_assert_msg(coord_cstate_create(a, r1, err, sizeof(err)) == OM_OK, "%s", err);
    ck_assert_int_eq(coord_cstate_create(b, r1, err, sizeof(err)), OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "already exists"));
    ck_assert_int_eq(coord_cstate_load(b, &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(cur, r1));
    ck_assert_ptr_null(pend);
    ring_unref(cur);
    ck_assert_int_eq(coord_cstate_revision(a), coord_cstate_revision(b));

    /* two changes from the same state: the first wins, the second is refused */
    ck_assert_msg(coord_cstate_save(a, r1, r2, om_slice_from_str("A"), err, sizeof(err)) == OM_OK,
                  "%s", err);
    ck_assert_int_eq(coord_cstate_save(b, r1, r2b, om_slice_from_str("B"), err, sizeof(err)),
                     OM_E_PRECONDITION);
    ck_assert_msg(strstr(err, "another coordinator") != NULL, "%s", err);
    ck_assert_int_eq(coord_cstate_load(b, &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(pend, r2));
    ck_assert_uint_eq(mig.n, 1);
    ck_assert_mem_eq(mig.p, "A", 1);
    ring_unref(cur);
    ring_unref(pend);

    /* the token secret is one for the cluster, whoever asks first */
    {
        uint8_t sa[COORD_SECRET_LEN], sb[COORD_SECRET_LEN];

        ck_assert_msg(coord_cstate_secret(a, sa, err, sizeof(err)) == OM_OK, "%s", err);
        ck_assert_msg(coord_cstate_secret(b, sb, err, sizeof(err)) == OM_OK, "%s", err);
        ck_assert_mem_eq(sa, sb, COORD_SECRET_LEN);
    }

    /* etcd gone: a save fails at once, naming etcd and the endpoint */
    tu_etcd_stop_member(e, 0);
    ck_assert_int_eq(coord_cstate_save(a, r1, r2, OM_SLICE_NULL, err, sizeof(err)),
                     OM_E_UNAVAILABLE);
    ck_assert_msg(strstr(err, "etcd http://127.0.0.1:") != NULL, "%s", err);

    om_buf_free(&mig);
    ring_unref(r1);
    ring_unref(r2);
    ring_unref(r2b);
    coord_cstate_close(a);
    coord_cstate_close(b);
    event_base_free(base);
    tu_etcd_stop(e);
}
END_TEST

typedef struct seen {
    int changed, role;
} seen;

static void
on_changed(void *arg)
{
    ((seen *)arg)->changed++;
}

static void
on_role(void *arg)
{
    ((seen *)arg)->role++;
}

static void
loop_until(struct event_base *base, bool (*fn)(void *), void *arg, const char *what)
{
    uint64_t deadline = tu_now_ms() + 10000;
    struct timeval tv = {0, 20000};

    while (!fn(arg)) {
        ck_assert_msg(tu_now_ms() < deadline, "timed out waiting for %s", what);
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static coord_cstate *pair[2];
static seen seen_by[2];

static bool
one_leads(void *arg)
{
    return coord_cstate_is_leader(pair[0]) + coord_cstate_is_leader(pair[1]) == 1 &&
           coord_cstate_leader(pair[0]).n > 0 && coord_cstate_leader(pair[1]).n > 0;
}

static bool
follower_heard(void *arg)
{
    return seen_by[*(int *)arg].changed > 0;
}

/* The leader's checkpoints are all answered (none in flight, none queued). */
static bool
ck_landed(void *arg)
{
    return coord_cstate_checkpoints_idle(pair[*(int *)arg]);
}

START_TEST(etcd_only_the_leader_writes)
{
    tu_etcd *e = tu_etcd_start(1);
    struct event_base *base = event_base_new();
    ring *r1 = test_ring("s1=127.0.0.1:1"), *r2 = next_ring(r1, "s2");
    ring *cur = NULL, *pend = NULL;
    om_buf mig = OM_BUF_INIT;
    char err[512];
    int lead, follow;

    pair[0] = open_cs(base, tu_etcd_endpoints(e));
    pair[1] = open_cs(base, tu_etcd_endpoints(e));
    ck_assert_int_eq(coord_cstate_create(pair[0], r1, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(coord_cstate_load(pair[1], &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ring_unref(cur);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(
            coord_cstate_start(pair[i], i ? "b:1" : "a:1", on_changed, on_role, &seen_by[i]),
            OM_OK);
    loop_until(base, one_leads, NULL, "one leader");
    lead = coord_cstate_is_leader(pair[0]) ? 0 : 1;
    follow = 1 - lead;
    ck_assert_int_gt(seen_by[lead].role, 0);

    /* the follower may not write, even from the current revision */
    ck_assert_int_eq(coord_cstate_save(pair[follow], r1, r2, OM_SLICE_NULL, err, sizeof(err)),
                     OM_E_PRECONDITION);
    ck_assert_msg(strstr(err, "not the leader") != NULL, "%s", err);
    /* the leader writes; the follower hears of it, and its own save stays silent */
    ck_assert_msg(coord_cstate_save(pair[lead], r1, r2, OM_SLICE_NULL, err, sizeof(err)) == OM_OK,
                  "%s", err);
    loop_until(base, follower_heard, &follow, "the follower's watch");
    ck_assert_int_eq(seen_by[lead].changed, 0);
    ck_assert_int_eq(coord_cstate_load(pair[follow], &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(pend, r2));
    ring_unref(cur);
    ring_unref(pend);

    /* checkpoints: sent without waiting, heard by the follower, read back over the state's
     * record; a save afterwards wins over an older checkpoint; only the leader checkpoints */
    seen_by[follow].changed = 0;
    ck_assert_int_eq(
        coord_cstate_checkpoint(pair[follow], r1, r2, om_slice_from_str("F"), err, sizeof(err)),
        OM_E_PRECONDITION);
    ck_assert_int_eq(
        coord_cstate_checkpoint(pair[lead], r1, r2, om_slice_from_str("C1"), err, sizeof(err)),
        OM_OK);
    ck_assert_int_eq(
        coord_cstate_checkpoint(pair[lead], r1, r2, om_slice_from_str("C2"), err, sizeof(err)),
        OM_OK);
    loop_until(base, ck_landed, &lead, "the checkpoints");
    ck_assert_int_eq(coord_cstate_load(pair[follow], &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert(ring_equal(pend, r2));
    ck_assert_uint_eq(mig.n, 2);
    ck_assert_mem_eq(mig.p, "C2", 2); /* the newer replaced the queued one */
    ring_unref(cur);
    ring_unref(pend);
    loop_until(base, follower_heard, &follow, "the follower's watch of the checkpoint");
    /* a checkpoint in flight, then a save: the save's record is the one in force */
    ck_assert_int_eq(
        coord_cstate_checkpoint(pair[lead], r1, r2, om_slice_from_str("C3"), err, sizeof(err)),
        OM_OK);
    ck_assert_int_eq(
        coord_cstate_checkpoint(pair[lead], r1, r2, om_slice_from_str("C4"), err, sizeof(err)),
        OM_OK);
    ck_assert_msg(coord_cstate_save(pair[lead], r1, r2, om_slice_from_str("S"), err, sizeof(err)) ==
                      OM_OK,
                  "%s", err);
    loop_until(base, ck_landed, &lead, "the checkpoint in flight");
    ck_assert_int_eq(coord_cstate_load(pair[follow], &cur, &pend, &mig, err, sizeof(err)), OM_OK);
    ck_assert_uint_eq(mig.n, 1);
    ck_assert_mem_eq(mig.p, "S", 1);
    ring_unref(cur);
    ring_unref(pend);
    ck_assert_int_eq(seen_by[lead].changed, 0); /* its own writes are not news to it */

    /* the leader closes (resigns): the other takes over and may write */
    coord_cstate_close(pair[lead]);
    pair[lead] = NULL;
    {
        uint64_t deadline = tu_now_ms() + 10000;
        struct timeval tv = {0, 20000};

        while (!coord_cstate_is_leader(pair[follow])) {
            ck_assert_msg(tu_now_ms() < deadline, "no takeover");
            event_base_loopexit(base, &tv);
            event_base_dispatch(base);
        }
    }
    ck_assert_msg(coord_cstate_save(pair[follow], r2, NULL, OM_SLICE_NULL, err, sizeof(err)) ==
                      OM_OK,
                  "%s", err);
    coord_cstate_close(pair[follow]);
    om_buf_free(&mig);
    ring_unref(r1);
    ring_unref(r2);
    event_base_free(base);
    tu_etcd_stop(e);
}
END_TEST

static Suite *
cstate_suite(void)
{
    Suite *s = suite_create("cstate");
    TCase *tc = tcase_create("file");

    tcase_add_test(tc, file_backend_roundtrip);
    tcase_add_test(tc, etcd_bad_options);
    suite_add_tcase(s, tc);
    if (tu_etcd_available()) {
        tc = tcase_create("etcd");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, etcd_saves_compare_what_they_read);
        tcase_add_test(tc, etcd_only_the_leader_writes);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    return tu_run(cstate_suite());
}
