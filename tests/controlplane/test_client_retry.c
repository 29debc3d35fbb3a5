/*
 * tests/controlplane/test_client_retry.c -- the client library's retry of a
 * store whose answer was lost (client/client.c's header), against scripted
 * in-process servers, so every interleaving is exact:
 *
 *   - address A reads one request and closes the connection (the answer is
 *     lost); the client moves to address B;
 *   - B answers from a script: each step names the request it expects
 *     (Retrieve, or a Store with a given condition) and the answer.
 *
 * The case that matters: the first attempt becomes visible only after the
 * client's read (a replicated group shows a write once every in-sync
 * replica has it), so the conditional retry is refused. The client must
 * read again and report the store as done, not PRECONDITION_FAILED.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client.h"
#include "rpc/rpc.h"
#include "tu.h"

#define BUCKET "retry-bucket"
#define KEY "photo"
#define MAX_STEPS 8

enum want { W_RETRIEVE, W_STORE_PLAIN, W_STORE_IF_ABSENT, W_STORE_IF_VERSION };

typedef struct step {
    enum want want;
    uint64_t if_version; /* W_STORE_IF_VERSION: the condition expected */
    Objmeta__Status status;
    const char *data; /* Retrieve OK: the object's data */
    uint64_t version; /* the object's version in an OK answer */
} step;

typedef struct script {
    step steps[MAX_STEPS];
    int n;
    atomic_int at;         /* steps answered */
    atomic_int mismatches; /* requests that were not what the step expected */
    char mismatch[256];
} script;

typedef struct fake {
    script *sc;
    struct event_base *base;
    tu_loop *loop; /* runs base */
    rpc_server *srv;
    int port;    /* B: the scripted server */
    int drop_fd; /* A: accepts, reads, closes */
    int drop_port;
    atomic_bool stop, ready;
    pthread_t drop_thr;
} fake;

static void
answer(rpc_reply *reply, const step *s, const Objmeta__Request *req)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ObjectInfo info = OBJMETA__OBJECT_INFO__INIT;
    Objmeta__RetrieveResponse rr = OBJMETA__RETRIEVE_RESPONSE__INIT;
    Objmeta__StoreResponse sr = OBJMETA__STORE_RESPONSE__INIT;

    resp.status = s->status;
    if (s->status != OBJMETA__STATUS__OK) {
        resp.message = s->status == OBJMETA__STATUS__NOT_FOUND ? "no such object"
                                                               : "the condition does not hold";
        rpc_reply_send(reply, &resp);
        return;
    }
    info.bucket = BUCKET;
    info.key = KEY;
    info.version = s->version;
    info.content_type = "text/plain";
    info.metadata_json = "";
    if (req->body_case == OBJMETA__REQUEST__BODY_RETRIEVE) {
        info.size = strlen(s->data);
        rr.info = &info;
        rr.data.data = (uint8_t *)s->data;
        rr.data.len = strlen(s->data);
        resp.body_case = OBJMETA__RESPONSE__BODY_RETRIEVE;
        resp.retrieve = &rr;
    } else {
        info.size = req->store->data.len;
        sr.info = &info;
        resp.body_case = OBJMETA__RESPONSE__BODY_STORE;
        resp.store = &sr;
    }
    rpc_reply_send(reply, &resp);
}

static bool
step_matches(const step *s, const Objmeta__Request *req)
{
    const Objmeta__StoreRequest *st = req->store;

    if (s->want == W_RETRIEVE)
        return req->body_case == OBJMETA__REQUEST__BODY_RETRIEVE;
    if (req->body_case != OBJMETA__REQUEST__BODY_STORE)
        return false;
    switch (s->want) {
    case W_STORE_PLAIN:
        return st->condition_case == OBJMETA__STORE_REQUEST__CONDITION__NOT_SET;
    case W_STORE_IF_ABSENT:
        return st->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
    case W_STORE_IF_VERSION:
        return st->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION &&
               st->if_version == s->if_version;
    default:
        return false;
    }
}

static void
handler(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    fake *f = arg;
    script *sc = f->sc;
    int at = atomic_load(&sc->at);
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;

    if (at >= sc->n || !step_matches(&sc->steps[at], req)) {
        if (atomic_fetch_add(&sc->mismatches, 1) == 0)
            snprintf(sc->mismatch, sizeof(sc->mismatch), "step %d: unexpected request (body %d)",
                     at, (int)req->body_case);
        resp.status = OBJMETA__STATUS__INTERNAL;
        resp.message = "the script did not expect this request";
        rpc_reply_send(reply, &resp);
        return;
    }
    answer(reply, &sc->steps[at], req);
    atomic_store(&sc->at, at + 1);
}

/* A: accept connections; read whatever arrives, then close without answering. */
static void *
drop_main(void *arg)
{
    fake *f = arg;
    char buf[4096];

    while (!atomic_load(&f->stop)) {
        int c = accept(f->drop_fd, NULL, NULL);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            break;
        }
        (void)recv(c, buf, sizeof(buf), 0);
        close(c);
    }
    return NULL;
}

static void
fake_start(fake *f, script *sc)
{
    rpc_server_opts o;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    memset(f, 0, sizeof(*f));
    f->sc = sc;
    f->base = event_base_new();
    ck_assert_ptr_nonnull(f->base);
    rpc_server_opts_init(&o);
    o.listen = "127.0.0.1:0";
    ck_assert_int_eq(rpc_server_new(f->base, &o, handler, f, &f->srv), OM_OK);
    f->port = rpc_server_port(f->srv);

    f->drop_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->drop_fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->drop_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(f->drop_fd, 8), 0);
    ck_assert_int_eq(getsockname(f->drop_fd, (struct sockaddr *)&sa, &len), 0);
    f->drop_port = ntohs(sa.sin_port);
    /* accept() wakes every 100 ms to look at `stop` */
    struct timeval rt = {0, 100 * 1000};
    ck_assert_int_eq(setsockopt(f->drop_fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt)), 0);

    f->loop = tu_loop_start(f->base);
    ck_assert_int_eq(pthread_create(&f->drop_thr, NULL, drop_main, f), 0);
}

static void
fake_stop(fake *f)
{
    atomic_store(&f->stop, true);
    tu_loop_stop(f->loop);
    pthread_join(f->drop_thr, NULL);
    rpc_server_free(f->srv);
    event_base_free(f->base);
    close(f->drop_fd);
}

/* Store "new-data" through A (answer lost) then B; the script plays B. */
static om_status
store_through(script *sc, const omc_store_opts *opts, omc_info *info, char *msg, size_t msglen)
{
    fake f;
    omc_client *c = NULL;
    char addrs[128], err[256];
    om_status st;

    fake_start(&f, sc);
    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d,127.0.0.1:%d", f.drop_port, f.port);
    ck_assert_msg(omc_connect(addrs, 3000, &c, err, sizeof(err)) == OM_OK, "%s", err);
    st = omc_store(c, BUCKET, KEY, om_slice_from_str("new-data"), opts, info);
    snprintf(msg, msglen, "%s", omc_last_message(c));
    omc_close(c);
    fake_stop(&f);
    ck_assert_msg(atomic_load(&sc->mismatches) == 0, "%s", sc->mismatch);
    ck_assert_msg(atomic_load(&sc->at) == sc->n, "the client made %d of the %d scripted requests",
                  atomic_load(&sc->at), sc->n);
    return st;
}

static const omc_store_opts plain = {.content_type = "text/plain"};

/* The failure seen in the rolling-restart test: nothing there at the read,
 * the if_absent retry refused because the first attempt became visible. */
START_TEST(lost_answer_first_attempt_visible_after_the_read)
{
    script sc = {
        .n = 3,
        .steps = {
            {.want = W_RETRIEVE, .status = OBJMETA__STATUS__NOT_FOUND},
            {.want = W_STORE_IF_ABSENT, .status = OBJMETA__STATUS__PRECONDITION_FAILED},
            {.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "new-data", .version = 7}}};
    omc_info info;
    char msg[256];

    ck_assert_msg(store_through(&sc, &plain, &info, msg, sizeof(msg)) == OM_OK, "%s", msg);
    ck_assert_uint_eq(info.version, 7);
    omc_info_free(&info);
}
END_TEST

/* Same with the caller's own if_version: the old version was read, the
 * retry refused, and the first attempt is there now. */
START_TEST(lost_answer_if_version_first_attempt_visible_after_the_read)
{
    script sc = {
        .n = 3,
        .steps = {
            {.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "old-data", .version = 4},
            {.want = W_STORE_IF_VERSION,
             .if_version = 4,
             .status = OBJMETA__STATUS__PRECONDITION_FAILED},
            {.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "new-data", .version = 5}}};
    omc_store_opts o = plain;
    omc_info info;
    char msg[256];

    o.has_if_version = true;
    o.if_version = 4;
    ck_assert_msg(store_through(&sc, &o, &info, msg, sizeof(msg)) == OM_OK, "%s", msg);
    ck_assert_uint_eq(info.version, 5);
    omc_info_free(&info);
}
END_TEST

/* A real concurrent writer still makes the caller's if_absent fail: the
 * second read finds other contents. */
START_TEST(lost_answer_other_writer_still_refused)
{
    script sc = {
        .n = 3,
        .steps = {{.want = W_RETRIEVE, .status = OBJMETA__STATUS__NOT_FOUND},
                  {.want = W_STORE_IF_ABSENT, .status = OBJMETA__STATUS__PRECONDITION_FAILED},
                  {.want = W_RETRIEVE,
                   .status = OBJMETA__STATUS__OK,
                   .data = "someone-else",
                   .version = 9}}};
    omc_store_opts o = plain;
    char msg[256];

    o.if_absent = true;
    ck_assert_int_eq(store_through(&sc, &o, NULL, msg, sizeof(msg)), OM_E_PRECONDITION);
    ck_assert_msg(strstr(msg, "other contents") != NULL, "%s", msg);
}
END_TEST

/* An unconditional store whose retry keeps losing to other writers gives up
 * after three reads with PRECONDITION_FAILED: it never overwrites blindly. */
START_TEST(lost_answer_busy_key_bounded)
{
    script sc = {
        .n = 6,
        .steps = {{.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "a", .version = 1},
                  {.want = W_STORE_IF_VERSION,
                   .if_version = 1,
                   .status = OBJMETA__STATUS__PRECONDITION_FAILED},
                  {.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "b", .version = 2},
                  {.want = W_STORE_IF_VERSION,
                   .if_version = 2,
                   .status = OBJMETA__STATUS__PRECONDITION_FAILED},
                  {.want = W_RETRIEVE, .status = OBJMETA__STATUS__OK, .data = "c", .version = 3},
                  {.want = W_STORE_IF_VERSION,
                   .if_version = 3,
                   .status = OBJMETA__STATUS__PRECONDITION_FAILED}}};
    char msg[256];

    ck_assert_int_eq(store_through(&sc, &plain, NULL, msg, sizeof(msg)), OM_E_PRECONDITION);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("client_retry");
    TCase *tc = tcase_create("lost_answer");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lost_answer_first_attempt_visible_after_the_read);
    tcase_add_test(tc, lost_answer_if_version_first_attempt_visible_after_the_read);
    tcase_add_test(tc, lost_answer_other_writer_still_refused);
    tcase_add_test(tc, lost_answer_busy_key_bounded);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
