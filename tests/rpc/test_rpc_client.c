/*
 * tests/rpc/test_rpc_client.c -- integration suite for the rpc clients
 * against the in-process test server (testsrv.c): pipelined out-of-order
 * answers from a worker thread, 200 concurrent connections, per-call
 * timeouts, failing pending calls when the connection drops, reconnect and
 * its backoff, connect timeout, oversize responses on either side.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "testsrv.h"
#include "tu.h"
#include "util/coding.h"

START_TEST(rpc_sync_connect_refused)
{
    tsrv *t = tsrv_start();
    int port = t->port;
    char addr[64];
    rpc_sync_client *c = NULL;

    tsrv_stop(t); /* the port is now closed */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 2000, &c), OM_E_UNAVAILABLE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(rpc_sync_client_open("not an address", 2000, &c), OM_E_INVALID);
}
END_TEST

START_TEST(rpc_client_timeout_drop_and_reconnect)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    char addr[64];
    int done = 0, order = 0;
    cres r[8];

    memset(r, 0, sizeof(r));
    for (int i = 0; i < 8; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c), OM_OK);
    /* A call times out on the client; the connection stays usable. */
    async_call(c, "never", 100, &r[0]);
    ck_assert(run_until(b, &done, 1, 3000));
    ck_assert_int_eq(r[0].st, OM_E_TIMEOUT);
    ck_assert_int_eq(r[0].status, OBJMETA__STATUS__TIMEOUT);
    ck_assert_ptr_nonnull(strstr(r[0].message, "within 100 ms"));
    async_call(c, "x", 3000, &r[1]);
    ck_assert(run_until(b, &done, 2, 3000));
    ck_assert_int_eq(r[1].st, OM_OK);
    ck_assert(rpc_client_is_connected(c));
    /* The server goes away with calls pending: they fail UNAVAILABLE. */
    async_call(c, "hold", 10000, &r[2]);
    async_call(c, "hold", 10000, &r[3]);
    int port = t->port;
    /* Make sure both reached the server before it stops. */
    uint64_t deadline = tu_now_ms() + 3000;
    rpc_server_stats st;
    do {
        event_base_loop(b, EVLOOP_NONBLOCK);
        tsrv_stats(t, &st);
    } while (st.requests_inflight < 2 && tu_now_ms() < deadline);
    tsrv_stop(t);
    ck_assert(run_until(b, &done, 4, 5000));
    ck_assert_int_eq(r[2].st, OM_E_UNAVAILABLE);
    ck_assert_int_eq(r[3].st, OM_E_UNAVAILABLE);
    ck_assert_int_eq(r[3].status, OBJMETA__STATUS__UNAVAILABLE);
    ck_assert(!rpc_client_is_connected(c));
    /* Nobody listens: the next call fails fast. */
    async_call(c, "x", 3000, &r[4]);
    ck_assert(run_until(b, &done, 5, 3000));
    ck_assert_int_eq(r[4].st, OM_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(r[4].message, "connect to"));
    /* A server comes back on the same port: the next call reconnects. */
    rpc_server_opts o;
    char listen[64];
    rpc_server_opts_init(&o);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    o.listen = listen;
    t = tsrv_start_opts(&o);
    ck_assert_int_eq(t->port, port);
    async_call(c, "back", 3000, &r[5]);
    ck_assert(run_until(b, &done, 6, 3000));
    ck_assert_int_eq(r[5].st, OM_OK);
    ck_assert_str_eq(r[5].payload, "back");
    ck_assert(rpc_client_is_connected(c));
    /* Freeing the client fails what is pending. */
    async_call(c, "hold", 10000, &r[6]);
    rpc_client_free(c);
    ck_assert_int_eq(done, 7);
    ck_assert_int_eq(r[6].st, OM_E_UNAVAILABLE);
    ck_assert_str_eq(r[6].message, "client closed");
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_client_reconnect_backoff)
{
    tsrv *t = tsrv_start();
    int port = t->port;
    tsrv_stop(t);
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    rpc_client_opts co;
    char addr[64];
    int done = 0, order = 0;
    cres r[64];

    memset(r, 0, sizeof(r));
    for (int i = 0; i < 64; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    rpc_client_opts_init(&co);
    co.reconnect_backoff_ms = 2000;
    ck_assert_int_eq(rpc_client_new(b, addr, &co, &c), OM_OK);
    async_call(c, "x", 3000, &r[0]);
    ck_assert(run_until(b, &done, 1, 3000));
    uint64_t failed_at = tu_now_ms();
    ck_assert_int_eq(r[0].st, OM_E_UNAVAILABLE);
    /* The server is back, but within the backoff calls fail at once, same message. */
    rpc_server_opts o;
    char listen[64];
    rpc_server_opts_init(&o);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    o.listen = listen;
    t = tsrv_start_opts(&o);
    async_call(c, "x", 3000, &r[1]);
    ck_assert(run_until(b, &done, 2, 3000));
    if (tu_now_ms() - failed_at < 1500) {
        ck_assert_int_eq(r[1].st, OM_E_UNAVAILABLE);
        ck_assert_str_eq(r[1].message, r[0].message);
    }
    /* After it, the next call reconnects. */
    int i = 2;
    uint64_t deadline = tu_now_ms() + 6000;
    for (; i < 64 && tu_now_ms() < deadline; i++) {
        async_call(c, "x", 3000, &r[i]);
        ck_assert(run_until(b, &done, i + 1, 4000));
        if (r[i].st == OM_OK)
            break;
        ck_assert_int_eq(r[i].st, OM_E_UNAVAILABLE);
        usleep(50000); /* pacing of the retries, not synchronisation */
    }
    ck_assert_int_lt(i, 64);
    ck_assert_int_eq(r[i].st, OM_OK);
    ck_assert_uint_ge(tu_now_ms() - failed_at, 1900);
    rpc_client_free(c);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_client_connect_timeout)
{
    /* A listener that never accepts, its accept queue filled: further SYNs
     * are dropped, so a connect hangs until the client's timeout. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fill[8], nfill = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 0), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        fill[nfill++] = fd;
    }
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    rpc_sync_client *sc = NULL;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(rpc_sync_client_open(addr, 200, &sc), OM_E_TIMEOUT);
    uint64_t el = tu_now_ms() - t0;
    ck_assert_uint_ge(el, 190);
    ck_assert_uint_lt(el, 3000);

    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    rpc_client_opts co;
    int done = 0, order = 0;
    cres r;
    memset(&r, 0, sizeof(r));
    r.done = &done;
    r.order = &order;
    rpc_client_opts_init(&co);
    co.connect_timeout_ms = 200;
    ck_assert_int_eq(rpc_client_new(b, addr, &co, &c), OM_OK);
    async_call(c, "x", 5000, &r);
    ck_assert(run_until(b, &done, 1, 3000));
    ck_assert_int_eq(r.st, OM_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(r.message, "timed out after 200 ms"));
    rpc_client_free(c);
    event_free(tick);
    event_base_free(b);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
}
END_TEST

typedef struct chain {
    rpc_client *c;
    int calls_left;
    int done;
    om_status last_st;
    om_status call_st; /* what rpc_client_call returned inside the callback */
} chain;

static void
chain_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    chain *ch = arg;
    Objmeta__Request r;
    Objmeta__PingRequest p;

    (void)resp;
    ch->done++;
    ch->last_st = st;
    if (ch->calls_left-- > 0) {
        ping_req(&r, &p, st == OM_OK ? "x" : "hold");
        ch->call_st = rpc_client_call(ch->c, &r, 5000, chain_cb, ch);
    }
}

START_TEST(rpc_client_call_from_callback)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    char addr[64];
    chain ch = {.calls_left = 5};
    Objmeta__Request r;
    Objmeta__PingRequest p;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &ch.c), OM_OK);
    /* Each answer starts the next call from inside the callback. */
    ping_req(&r, &p, "x");
    ck_assert_int_eq(rpc_client_call(ch.c, &r, 5000, chain_cb, &ch), OM_OK);
    ck_assert(run_until(b, &ch.done, 5, 5000));
    ck_assert_int_eq(ch.last_st, OM_OK);
    ck_assert_int_eq(ch.call_st, OM_OK);
    /* The sixth call ("x") is in flight; the last allowed follow-up would come
     * from the callback run by rpc_client_free, which refuses it. */
    ch.calls_left = 1;
    rpc_client_free(ch.c);
    ck_assert_int_eq(ch.done, 6);
    ck_assert_int_eq(ch.last_st, OM_E_UNAVAILABLE);
    ck_assert_int_eq(ch.call_st, OM_E_UNAVAILABLE);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_oversize_responses)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.max_frame = 64 * 1024;
    tsrv *t = tsrv_start_opts(&o);
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    rpc_client_opts co;
    char addr[64];
    int done = 0, order = 0;
    cres r[3];

    memset(r, 0, sizeof(r));
    for (int i = 0; i < 3; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    rpc_client_opts_init(&co);
    co.max_frame = 8192;
    ck_assert_int_eq(rpc_client_new(b, addr, &co, &c), OM_OK);
    /* Larger than the server's max_frame: INTERNAL instead of the answer. */
    async_call(c, "big:100000", 3000, &r[0]);
    ck_assert(run_until(b, &done, 1, 3000));
    ck_assert_int_eq(r[0].st, OM_OK);
    ck_assert_int_eq(r[0].status, OBJMETA__STATUS__INTERNAL);
    ck_assert_ptr_nonnull(strstr(r[0].message, "response too large"));
    /* Larger than the client's max_frame: the client drops the connection. */
    async_call(c, "big:20000", 3000, &r[1]);
    ck_assert(run_until(b, &done, 2, 3000));
    ck_assert_int_eq(r[1].st, OM_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r[1].message, "exceeds max_frame 8192"));
    /* And reconnects for the next call. */
    async_call(c, "small", 3000, &r[2]);
    ck_assert(run_until(b, &done, 3, 3000));
    ck_assert_int_eq(r[2].st, OM_OK);
    rpc_client_free(c);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_pipelined_out_of_order)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    char addr[64];
    int done = 0, order = 0;
    cres r[4];

    memset(r, 0, sizeof(r));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c), OM_OK);
    for (int i = 0; i < 4; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    async_call(c, "hold", 5000, &r[0]);
    async_call(c, "hold", 5000, &r[1]);
    async_call(c, "hold", 5000, &r[2]);
    async_call(c, "release", 5000, &r[3]);
    ck_assert_uint_eq(rpc_client_pending(c), 4);
    ck_assert(run_until(b, &done, 4, 5000));
    /* "release" was sent last and answered first; the holds came from the worker. */
    ck_assert_int_eq(r[3].seq, 0);
    ck_assert_str_eq(r[3].payload, "release");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].st, OM_OK);
        ck_assert_str_eq(r[i].payload, "hold");
        ck_assert_int_gt(r[i].seq, 0);
    }
    ck_assert(rpc_client_is_connected(c));
    ck_assert_uint_eq(rpc_client_pending(c), 0);

    /* 500 pipelined calls answered off the loop thread, matched by id. */
    enum { N = 500 };
    cres *w = calloc(N, sizeof(*w));
    char(*payloads)[32] = calloc(N, 32);
    done = 0;
    for (int i = 0; i < N; i++) {
        w[i].done = &done;
        w[i].order = &order;
        snprintf(payloads[i], 32, "worker-%d", i);
        async_call(c, payloads[i], 10000, &w[i]);
    }
    ck_assert(run_until(b, &done, N, 20000));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(w[i].st, OM_OK);
        ck_assert_str_eq(w[i].payload, payloads[i]);
    }
    free(w);
    free(payloads);
    rpc_client_free(c);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_200_concurrent_connections)
{
    enum { NC = 200, PER = 3 };
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c[NC];
    cres *r = calloc(NC * PER, sizeof(*r));
    char addr[64];
    int done = 0, order = 0;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    for (int i = 0; i < NC; i++) {
        ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c[i]), OM_OK);
        for (int k = 0; k < PER; k++) {
            cres *x = &r[i * PER + k];
            x->done = &done;
            x->order = &order;
            async_call(c[i], k == 1 ? "worker" : "x", 20000, x);
        }
    }
    ck_assert(run_until(b, &done, NC * PER, 30000));
    for (int i = 0; i < NC * PER; i++)
        ck_assert_int_eq(r[i].st, OM_OK);
    rpc_server_stats st;
    tsrv_stats(t, &st);
    ck_assert_uint_eq(st.connections_current, NC);
    ck_assert_uint_eq(st.connections_total, NC);
    for (int i = 0; i < NC; i++)
        rpc_client_free(c[i]);
    ck_assert(tsrv_wait(t, pred_conns_eq, 0, 5000, NULL));
    free(r);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

/*
 * Per-call timeouts come from one deadline-ordered list and one timer per
 * client: calls made with different timeouts must still expire in deadline
 * order, never early, and an answered call must leave the list.
 */
START_TEST(rpc_client_deadlines_out_of_call_order)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    char addr[64];
    int done = 0, order = 0;
    cres r[5], burst[200];

    memset(r, 0, sizeof(r));
    memset(burst, 0, sizeof(burst));
    for (int i = 0; i < 5; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c), OM_OK);
    uint64_t t0 = tu_now_ms();
    async_call(c, "never", 900, &r[0]);
    async_call(c, "never", 100, &r[1]);
    async_call(c, "x", 2000, &r[2]); /* answered at once: leaves the list */
    async_call(c, "never", 400, &r[3]);
    async_call(c, "never", 0, &r[4]); /* default_timeout_ms, 30 s: outlives the test */
    ck_assert(run_until(b, &done, 2, 3000));
    ck_assert_int_eq(r[2].st, OM_OK);
    ck_assert_int_eq(r[2].seq, 0);
    ck_assert_int_eq(r[1].st, OM_E_TIMEOUT);
    ck_assert_int_eq(r[1].seq, 1);
    ck_assert_uint_ge(tu_now_ms() - t0, 100);
    ck_assert(run_until(b, &done, 3, 3000));
    ck_assert_int_eq(r[3].st, OM_E_TIMEOUT);
    ck_assert_int_eq(r[3].seq, 2);
    ck_assert_uint_ge(tu_now_ms() - t0, 400);
    ck_assert(run_until(b, &done, 4, 3000));
    ck_assert_int_eq(r[0].st, OM_E_TIMEOUT);
    ck_assert_int_eq(r[0].seq, 3);
    ck_assert_ptr_nonnull(strstr(r[0].message, "within 900 ms"));
    ck_assert_uint_ge(tu_now_ms() - t0, 900);
    ck_assert_uint_eq(rpc_client_pending(c), 1);
    /* A burst with equal deadlines (within the test server's MAX_HELD "never" slots, 4 taken): all
     * expire, in call order. */
    for (int i = 0; i < 200; i++) {
        burst[i].done = &done;
        burst[i].order = &order;
        async_call(c, "never", 50, &burst[i]);
    }
    ck_assert(run_until(b, &done, 204, 5000));
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(burst[i].st, OM_E_TIMEOUT);
        ck_assert_int_eq(burst[i].seq, 4 + i); /* in call order */
    }
    ck_assert_uint_eq(rpc_client_pending(c), 1);
    /* The connection still works after all that. */
    async_call(c, "after", 2000, &r[2]);
    ck_assert(run_until(b, &done, 205, 3000));
    ck_assert_str_eq(r[2].payload, "after");
    rpc_client_free(c);
    ck_assert_int_eq(done, 206);
    ck_assert_int_eq(r[4].st, OM_E_UNAVAILABLE);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

/*
 * Forwarding encoded responses (the coordinator's path): a proxy server
 * passes each request to the test server and answers with the upstream's
 * encoded Response, id rewritten (rpc_reply_send_encoded with
 * rpc_client_response_bytes) -- on the loop thread, and from another thread.
 */
typedef struct proxy {
    rpc_client *up;
    int forwarded, offloop;
} proxy;

typedef struct proxy_call {
    proxy *px;
    rpc_reply *reply;
    bool offloop;
} proxy_call;

typedef struct offloop_send {
    rpc_reply *reply;
    uint8_t *p;
    size_t n;
} offloop_send;

static void *
offloop_send_main(void *arg)
{
    offloop_send *o = arg;
    rpc_reply_send_encoded(o->reply, o->p, o->n);
    return NULL;
}

static void
proxy_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    proxy_call *pc = arg;
    om_slice enc = rpc_client_response_bytes();

    if (st != OM_OK) {
        ck_assert_uint_eq(enc.n, 0); /* synthetic: nothing encoded */
        rpc_reply_send(pc->reply, resp);
    } else if (pc->offloop) {
        /* Another thread sends a copy (the bytes die with this callback). */
        offloop_send o = {pc->reply, malloc(enc.n), enc.n};
        pthread_t th;
        ck_assert_ptr_nonnull(o.p);
        memcpy(o.p, enc.p, enc.n);
        ck_assert_int_eq(pthread_create(&th, NULL, offloop_send_main, &o), 0);
        pthread_join(th, NULL);
        free(o.p);
        pc->px->offloop++;
    } else {
        /* The bytes are the response as the upstream sent it: its own id. */
        Objmeta__Response *again = objmeta__response__unpack(NULL, enc.n, enc.p);
        ck_assert_ptr_nonnull(again);
        ck_assert_uint_eq(again->id, resp->id);
        objmeta__response__free_unpacked(again, NULL);
        rpc_reply_send_encoded(pc->reply, enc.p, enc.n);
    }
    pc->px->forwarded++;
    free(pc);
}

static void
proxy_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    proxy *px = arg;
    const char *pl = req->ping != NULL ? (const char *)req->ping->payload.data : "";
    size_t pn = req->ping != NULL ? req->ping->payload.len : 0;

    if (pn == 7 && memcmp(pl, "garbage", 7) == 0) {
        static const uint8_t bad[] = {0x1a, 0x09, 'x'}; /* length past the end */
        rpc_reply_send_encoded(reply, bad, sizeof(bad));
        return;
    }
    proxy_call *pc = calloc(1, sizeof(*pc));
    ck_assert_ptr_nonnull(pc);
    pc->px = px;
    pc->reply = reply;
    pc->offloop = pn > 4 && memcmp(pl, "off-", 4) == 0;
    ck_assert_int_eq(rpc_client_call(px->up, req, 5000, proxy_cb, pc), OM_OK);
}

START_TEST(rpc_forward_encoded_responses)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_server_opts o;
    rpc_server *ps;
    rpc_client *c;
    proxy px = {0};
    char addr[64];
    int done = 0, order = 0;
    enum { N = 300 };
    cres r[4], *w = calloc(N, sizeof(*w));
    char(*payloads)[32] = calloc(N, 32);

    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(payloads);
    memset(r, 0, sizeof(r));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &px.up), OM_OK);
    rpc_server_opts_init(&o);
    o.listen = "127.0.0.1:0";
    ck_assert_int_eq(rpc_server_new(b, &o, proxy_handler, &px, &ps), OM_OK);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(ps));
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c), OM_OK);
    ck_assert_uint_eq(rpc_client_response_bytes().n, 0);
    for (int i = 0; i < 4; i++) {
        r[i].done = &done;
        r[i].order = &order;
    }
    /* Out of order through the proxy: ids differ on each hop (the proxy's
     * client numbers its own calls), answers still match. */
    async_call(c, "x", 5000, &r[0]); /* proxy-client id 1 = client id 1 */
    async_call(c, "hold", 5000, &r[1]);
    async_call(c, "release", 5000, &r[2]);
    async_call(c, "garbage", 5000, &r[3]);
    ck_assert(run_until(b, &done, 4, 5000));
    ck_assert_int_eq(r[0].st, OM_OK);
    ck_assert_str_eq(r[0].payload, "x");
    ck_assert_int_eq(r[1].st, OM_OK);
    ck_assert_str_eq(r[1].payload, "hold");
    ck_assert_str_eq(r[2].payload, "release");
    ck_assert_int_lt(r[2].seq, r[1].seq);
    ck_assert_int_eq(r[3].st, OM_OK); /* the server answered: INTERNAL */
    ck_assert_int_eq(r[3].status, OBJMETA__STATUS__INTERNAL);
    ck_assert_ptr_nonnull(strstr(r[3].message, "undecodable response to forward"));
    /* Make the ids of the two hops diverge, then N pipelined calls, every
     * third one forwarded from another thread, answered by the test
     * server's worker in any order. */
    for (int i = 0; i < N; i++) {
        w[i].done = &done;
        w[i].order = &order;
        snprintf(payloads[i], 32, i % 3 == 0 ? "off-worker-%d" : "worker-%d", i);
        async_call(c, payloads[i], 10000, &w[i]);
    }
    ck_assert(run_until(b, &done, 4 + N, 20000));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(w[i].st, OM_OK);
        ck_assert_str_eq(w[i].payload, payloads[i]);
    }
    ck_assert_int_eq(px.forwarded, 3 + N);
    ck_assert_int_eq(px.offloop, N / 3);
    ck_assert_uint_eq(rpc_client_response_bytes().n, 0);
    rpc_client_free(c);
    rpc_server_free(ps);
    rpc_client_free(px.up);
    free(w);
    free(payloads);
    event_free(tick);
    event_base_free(b);
    tsrv_stop(t);
}
END_TEST

static Suite *
rpc_client_suite(void)
{
    Suite *s = suite_create("rpc-client");
    TCase *tc = tcase_create("client");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rpc_sync_connect_refused);
    tcase_add_test(tc, rpc_client_timeout_drop_and_reconnect);
    tcase_add_test(tc, rpc_client_deadlines_out_of_call_order);
    tcase_add_test(tc, rpc_forward_encoded_responses);
    tcase_add_test(tc, rpc_client_reconnect_backoff);
    tcase_add_test(tc, rpc_client_connect_timeout);
    tcase_add_test(tc, rpc_client_call_from_callback);
    tcase_add_test(tc, rpc_oversize_responses);
    tcase_add_test(tc, rpc_pipelined_out_of_order);
    tcase_add_test(tc, rpc_200_concurrent_connections);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    rpc_init_logging();
    return tu_run(rpc_client_suite());
}
