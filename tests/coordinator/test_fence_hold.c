/*
 * tests/coordinator/test_fence_hold.c -- the cutover fence's hold path
 * (coord_mig_hold, coord_mig_release_held in coordinator/migrate.c) without
 * processes. The executable is linked with --wrap for calloc, malloc and
 * rpc_reply_send: the wrappers fail the allocation the test names and
 * capture the answer the coordinator sends, so the test can check that a
 * request the coordinator has no memory to hold during the fence is answered
 * BUSY (never routed to a shard, MIGRATION.md "Fence").
 */
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "tu.h"

void *__real_calloc(size_t n, size_t size);
void *__real_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void __wrap_rpc_reply_send(rpc_reply *reply, const Objmeta__Response *resp);

static int fail_countdown; /* > 0: the fail_countdown-th allocation from now fails */
static int answers_sent;   /* rpc_reply_send calls */
static Objmeta__Status last_status;
static int dispatched; /* held requests dispatched again */

static bool
alloc_should_fail(void)
{
    return fail_countdown > 0 && --fail_countdown == 0;
}

void *
__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *
__wrap_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : __real_malloc(size);
}

void
__wrap_rpc_reply_send(rpc_reply *reply, const Objmeta__Response *resp)
{
    (void)reply;
    answers_sent++;
    last_status = resp->status;
}

static void
count_dispatch(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    (void)c;
    (void)t0;
    (void)reply;
    ck_assert_int_eq(req->body_case, OBJMETA__REQUEST__BODY_STORE);
    ck_assert_str_eq(req->store->key, "k1");
    dispatched++;
}

static coord c;
static Objmeta__Request req = OBJMETA__REQUEST__INIT;
static Objmeta__StoreRequest store = OBJMETA__STORE_REQUEST__INIT;
/* never dereferenced: rpc_reply_send is wrapped */
static rpc_reply *const fake_reply = (rpc_reply *)&fake_reply;

static void
setup(void)
{
    memset(&c, 0, sizeof(c));
    c.dispatch = count_dispatch;
    store.bucket = "b";
    store.key = "k1";
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &store;
    fail_countdown = answers_sent = dispatched = 0;
}

START_TEST(hold_without_fence_routes)
{
    ck_assert(!coord_mig_hold(&c, &req, COORD_OP_STORE, 0, fake_reply, false));
    ck_assert(!coord_mig_hold(&c, &req, COORD_OP_LIST, 0, fake_reply, true));
    ck_assert_int_eq(answers_sent, 0);
}
END_TEST

START_TEST(hold_then_release_dispatches_once)
{
    c.fenced = true;
    ck_assert(coord_mig_hold(&c, &req, COORD_OP_STORE, 0, fake_reply, false));
    ck_assert_uint_eq(c.held_count, 1);
    ck_assert_int_eq(answers_sent, 0);
    c.fenced = false;
    coord_mig_release_held(&c);
    ck_assert_int_eq(dispatched, 1);
    ck_assert_uint_eq(c.held_count, 0);
    ck_assert_ptr_null(c.held_head);
}
END_TEST

/* Allocation i of the hold path (1: the queue entry, 2: the packed copy) fails. */
START_TEST(hold_without_memory_answers_busy)
{
    c.fenced = true;
    fail_countdown = _i + 1;
    ck_assert(coord_mig_hold(&c, &req, COORD_OP_STORE, 0, fake_reply, false));
    ck_assert_int_eq(fail_countdown, 0); /* the failure was injected */
    ck_assert_int_eq(answers_sent, 1);
    ck_assert_int_eq(last_status, OBJMETA__STATUS__BUSY);
    ck_assert_uint_eq(c.answers[COORD_OP_STORE][OBJMETA__STATUS__BUSY], 1);
    ck_assert_uint_eq(c.held_count, 0);
    coord_mig_release_held(&c);
    ck_assert_int_eq(dispatched, 0);
}
END_TEST

START_TEST(list_hold_without_memory_answers_busy)
{
    c.hold_lists = true;
    fail_countdown = 1;
    ck_assert(coord_mig_hold(&c, &req, COORD_OP_LIST, 0, fake_reply, true));
    ck_assert_int_eq(answers_sent, 1);
    ck_assert_int_eq(last_status, OBJMETA__STATUS__BUSY);
    ck_assert_uint_eq(c.answers[COORD_OP_LIST][OBJMETA__STATUS__BUSY], 1);
}
END_TEST

static Suite *
fence_suite(void)
{
    Suite *s = suite_create("coordinator-fence");
    TCase *tc = tcase_create("hold");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, hold_without_fence_routes);
    tcase_add_test(tc, hold_then_release_dispatches_once);
    tcase_add_loop_test(tc, hold_without_memory_answers_busy, 0, 2);
    tcase_add_test(tc, list_hold_without_memory_answers_busy);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(fence_suite());
}
