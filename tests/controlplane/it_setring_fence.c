/*
 * tests/controlplane/it_setring_fence.c -- a shard takes rings only in the
 * order of the cluster state (coordinator/MIGRATION.md, "Fencing with many
 * coordinators"), against a real objmeta-shard over rpc:
 *
 *   newer-state-wins  two "coordinators" push different rings of one epoch
 *                     from two cluster-state revisions: the shard ends on
 *                     the newer state's rings whatever the order; a
 *                     replayed SetRing of the older revision is refused
 *                     PRECONDITION_FAILED naming the revisions and changes
 *                     nothing; a later epoch is taken from any revision;
 *                     a probe of the held rings from an older revision is
 *                     answered OK (a follower a checkpoint behind is no
 *                     failure)
 *   cutover-fence     with the fence on (the leader's cutover), keyed
 *                     requests routed by the current epoch for keys that
 *                     move away are WRONG_SHARD naming the new owner; keys
 *                     that stay, direct access (epoch 0), Lists, and the
 *                     pending epoch are served; a follower's probe (fence
 *                     0) leaves it on, the leader's off ends it, and so
 *                     does the switch to the pending ring
 *   forged-client     a SetRing from a connection with only the client
 *                     role (far-ahead epoch and revision) is refused
 *                     PERMISSION_DENIED and the shard keeps serving
 *
 * The senders are plain rpc clients speaking as coordinators would, so the
 * interleavings are exact; it_etcd_coord.c runs the real coordinators.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner/ring.h"
#include "it_util.h"
#include "rpc/rpc.h"
#include "tu.h"

typedef struct rings {
    ring *e1, *e2, *e3; /* s1 alone; s1+s2 at epoch 2; s1+s2 at epoch 3 */
} rings;

static void
rings_make(rings *r)
{
    ring_shard s1 = {"s1", "127.0.0.1:1", 1}, s2 = {"s2", "127.0.0.1:2", 1};
    ring_shard both[2] = {s1, s2};
    char err[128];

    ck_assert(ring_new(&s1, 1, 0, 1, &r->e1, err, sizeof(err)) == OM_OK);
    ck_assert(ring_new(both, 2, 0, 2, &r->e2, err, sizeof(err)) == OM_OK);
    ck_assert(ring_new(both, 2, 0, 3, &r->e3, err, sizeof(err)) == OM_OK);
}

static void
rings_free(rings *r)
{
    ring_unref(r->e1);
    ring_unref(r->e2);
    ring_unref(r->e3);
}

/* SetRing{cur, pending, rev, fence} on c; the response (caller frees). */
static Objmeta__Response *
set_ring_fence(rpc_sync_client *c, const ring *cur, const ring *pending, uint64_t rev,
               uint32_t fence)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Response *resp = NULL;

    ck_assert(ring_to_pb(cur, &sr.ring) == OM_OK);
    if (pending != NULL)
        ck_assert(ring_to_pb(pending, &sr.pending) == OM_OK);
    sr.state_revision = rev;
    sr.fence = fence;
    req.body_case = OBJMETA__REQUEST__BODY_SET_RING;
    req.set_ring = &sr;
    req.ring_epoch = ring_epoch(cur);
    ck_assert(rpc_sync_client_call(c, &req, 5000, &resp) == OM_OK);
    ring_pb_free(sr.ring);
    ring_pb_free(sr.pending);
    return resp;
}

static Objmeta__Response *
set_ring(rpc_sync_client *c, const ring *cur, const ring *pending, uint64_t rev)
{
    return set_ring_fence(c, cur, pending, rev, 0);
}

/* SetRing must be answered OK holding (epoch, pending). */
static void
set_ring_ok(rpc_sync_client *c, const ring *cur, const ring *pending, uint64_t rev, uint64_t epoch,
            uint64_t pend)
{
    Objmeta__Response *r = set_ring(c, cur, pending, rev);

    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "SetRing rev %llu: %s", (unsigned long long)rev,
                  r->message);
    ck_assert_uint_eq(r->set_ring->epoch, epoch);
    ck_assert_uint_eq(r->set_ring->pending_epoch, pend);
    rpc_response_free(r);
}

/* The shard's own view: GetRing. */
static void
held(rpc_sync_client *c, uint64_t *epoch, uint64_t *pend)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r = NULL;

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "GetRing: %s", r->message);
    *epoch = r->get_ring->ring->epoch;
    *pend = r->get_ring->pending ? r->get_ring->pending->epoch : 0;
    rpc_response_free(r);
}

static tu_proc *
shard_start(const char *roles)
{
    char rolearg[64];
    const char *extra[] = {"--id=s1", "--sync-mode=none", rolearg, NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(rolearg, sizeof(rolearg), "--plaintext-roles=%s", roles);
    return tu_proc_start("$OBJMETA_SHARD", &o);
}

static rpc_sync_client *
open_client(const tu_proc *p)
{
    char addr[64];
    rpc_sync_client *c = NULL;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tu_proc_port(p, "rpc"));
    ck_assert(rpc_sync_client_open(addr, 3000, &c) == OM_OK);
    return c;
}

START_TEST(newer_state_wins)
{
    tu_proc *sh = shard_start("auto");
    rpc_sync_client *a = open_client(sh), *b = open_client(sh);
    Objmeta__Response *r;
    rings rg;
    uint64_t e, p;

    rings_make(&rg);
    /* both coordinators start at revision 10: epoch 1, nothing pending */
    set_ring_ok(a, rg.e1, NULL, 10, 1, 0);
    set_ring_ok(b, rg.e1, NULL, 10, 1, 0);
    /* A (the leader) saved a change at revision 20 and pushes it */
    set_ring_ok(a, rg.e1, rg.e2, 20, 1, 2);
    /* B has not seen revision 20: its rings would drop the pending ring -- refused */
    r = set_ring(b, rg.e1, NULL, 10);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__PRECONDITION_FAILED);
    ck_assert_msg(strstr(r->message, "revision 10") && strstr(r->message, "revision 20") &&
                      strstr(r->message, "stale cluster state"),
                  "message: %s", r->message);
    rpc_response_free(r);
    held(b, &e, &p);
    ck_assert_uint_eq(e, 1);
    ck_assert_uint_eq(p, 2);
    /* a probe of the held rings from the older revision is no failure */
    set_ring_ok(b, rg.e1, rg.e2, 10, 1, 2);
    /* the leader aborts the change at revision 30; B, still at 20, cannot bring it back */
    set_ring_ok(a, rg.e1, NULL, 30, 1, 0);
    r = set_ring(b, rg.e1, rg.e2, 20);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__PRECONDITION_FAILED);
    rpc_response_free(r);
    held(a, &e, &p);
    ck_assert_uint_eq(p, 0);
    /* a new change (40), then its switch (45): a later epoch is taken, and the older
     * epoch's rings from any revision are ignored (answered with the held epoch) */
    set_ring_ok(a, rg.e1, rg.e3, 40, 1, 3);
    set_ring_ok(b, rg.e3, NULL, 45, 3, 0);
    set_ring_ok(a, rg.e1, rg.e3, 40, 3, 0);
    set_ring_ok(a, rg.e1, NULL, 50, 3, 0);
    held(a, &e, &p);
    ck_assert_uint_eq(e, 3);
    ck_assert_uint_eq(p, 0);
    rings_free(&rg);
    rpc_sync_client_close(a);
    rpc_sync_client_close(b);
    ck_assert_int_eq(tu_proc_stop(sh), 0);
    tu_proc_free(sh);
}
END_TEST

/* Does a List routed with epoch show key? */
static bool
listed(rpc_sync_client *c, const char *key, uint64_t epoch)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest lr = OBJMETA__LIST_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    bool found = false;

    lr.bucket = "bucket-one";
    req.body_case = OBJMETA__REQUEST__BODY_LIST;
    req.list = &lr;
    req.ring_epoch = epoch;
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "List: %s", r->message);
    for (size_t i = 0; i < r->list->n_entries; i++)
        found |= strcmp(r->list->entries[i]->key, key) == 0;
    rpc_response_free(r);
    return found;
}

/* SetRing with a fence op; the fenced flag of the answer. */
static bool
fence_op(rpc_sync_client *c, const ring *cur, const ring *pending, uint64_t rev, uint32_t op)
{
    Objmeta__Response *r = set_ring_fence(c, cur, pending, rev, op);
    bool on;

    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "SetRing fence %u: %s", op, r->message);
    on = r->set_ring->fenced;
    rpc_response_free(r);
    return on;
}

START_TEST(cutover_fence)
{
    tu_proc *sh = shard_start("auto");
    rpc_sync_client *c = open_client(sh);
    char moving[32] = "", staying[32] = "", msg[512];
    rings rg;

    rings_make(&rg);
    /* one key that moves from s1 to s2 under e2, one that stays on s1 */
    for (int i = 0; i < 1000 && (!moving[0] || !staying[0]); i++) {
        char k[32];
        const ring_shard *o;

        snprintf(k, sizeof(k), "key-%d", i);
        o = ring_lookup(rg.e2, om_slice_from_str("bucket-one"), om_slice_from_str(k));
        snprintf(strcmp(o->id, "s2") == 0 ? moving : staying, 32, "%s", k);
    }
    ck_assert(moving[0] && staying[0]);
    set_ring_ok(c, rg.e1, NULL, 10, 1, 0);
    set_ring_ok(c, rg.e1, rg.e2, 20, 1, 2);
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", moving, "v", 1, msg, sizeof(msg)),
                     OBJMETA__STATUS__OK);
    /* the leader's cutover: the fence on */
    ck_assert(fence_op(c, rg.e1, rg.e2, 20, 1));
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", moving, "v", 1, msg, sizeof(msg)),
                     OBJMETA__STATUS__WRONG_SHARD);
    ck_assert_msg(strstr(msg, "moving to shard s2") && strstr(msg, "fenced for the cutover"),
                  "message: %s", msg);
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", staying, "v", 1, msg, sizeof(msg)),
                     OBJMETA__STATUS__OK);
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", moving, "v", 0, msg, sizeof(msg)),
                     OBJMETA__STATUS__OK);
    ck_assert(listed(c, moving, 1));
    /* a follower's probe leaves it on; a stale leader's "off" (older revision) too */
    ck_assert(fence_op(c, rg.e1, rg.e2, 20, 0));
    ck_assert(fence_op(c, rg.e1, rg.e2, 15, 2));
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", moving, "v", 1, msg, sizeof(msg)),
                     OBJMETA__STATUS__WRONG_SHARD);
    /* the leader's "off" (an abandoned cutover) ends it */
    ck_assert(!fence_op(c, rg.e1, rg.e2, 20, 2));
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", moving, "v", 1, msg, sizeof(msg)),
                     OBJMETA__STATUS__OK);
    /* on again, then the switch to e2 ends it */
    ck_assert(fence_op(c, rg.e1, rg.e2, 25, 1));
    ck_assert(!fence_op(c, rg.e2, NULL, 30, 0));
    ck_assert_int_eq(it_store_at_epoch(c, "bucket-one", staying, "v", 2, msg, sizeof(msg)),
                     OBJMETA__STATUS__OK);
    rings_free(&rg);
    rpc_sync_client_close(c);
    ck_assert_int_eq(tu_proc_stop(sh), 0);
    tu_proc_free(sh);
}
END_TEST

START_TEST(forged_setring_from_client_refused)
{
    tu_proc *sh = shard_start("client");
    rpc_sync_client *c = open_client(sh);
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    ring_shard s1 = {"s1", "127.0.0.1:1", 1};
    ring *far = NULL;
    Objmeta__Response *r;
    char err[128];

    ck_assert(ring_new(&s1, 1, 0, 1ull << 40, &far, err, sizeof(err)) == OM_OK);
    r = set_ring(c, far, NULL, 1ull << 60);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__PERMISSION_DENIED);
    ck_assert_msg(strstr(r->message, "set_ring") != NULL, "message: %s", r->message);
    rpc_response_free(r);
    /* still in service for its clients */
    st.bucket = "bucket-one";
    st.key = "k";
    st.data.data = (uint8_t *)"v";
    st.data.len = 1;
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &st;
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "store after the forged ring: %s", r->message);
    rpc_response_free(r);
    ring_unref(far);
    rpc_sync_client_close(c);
    ck_assert_int_eq(tu_proc_stop(sh), 0);
    tu_proc_free(sh);
}
END_TEST

static Suite *
setring_fence_suite(void)
{
    Suite *s = suite_create("setring_fence");
    TCase *tc = tcase_create("shard");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, newer_state_wins);
    tcase_add_test(tc, cutover_fence);
    tcase_add_test(tc, forged_setring_from_client_refused);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(setring_fence_suite());
}
