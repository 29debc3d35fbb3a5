/*
 * tests/rpc/test_rpc.c -- integration suite for the rpc server: a real
 * server on 127.0.0.1:0 in a thread of the test process (testsrv.c), talked
 * to over loopback with raw sockets and the rpc clients. Covers bad input
 * (unknown operation, undecodable message, 4 GiB length, frame cut short,
 * random bytes), half-close, flow control (max_inflight, a client that never
 * reads), idle and request timeouts, the connection limit, graceful
 * shutdown, and the HTTP endpoints.
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

START_TEST(rpc_sync_ping_and_large_payload)
{
    tsrv *t = tsrv_start();
    char addr[64];
    rpc_sync_client *c;
    Objmeta__Request r;
    Objmeta__PingRequest p;
    Objmeta__Response *resp = NULL;

    assert_serves(t->port);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c), OM_OK);
    /* 1 MiB payload: frames span many reads and writes. */
    size_t n = 1u << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    ping_req(&r, &p, big);
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 5000, &resp), OM_OK);
    ck_assert_int_eq(rpc_response_status(resp), OM_OK);
    ck_assert_uint_eq(resp->ping->payload.len, n);
    ck_assert_int_eq(memcmp(resp->ping->payload.data, big, n), 0);
    ck_assert_uint_ne(resp->id, 0);
    rpc_response_free(resp);
    /* A non-ping operation gets the handler's error. */
    Objmeta__Request sr = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest s = OBJMETA__STATS_REQUEST__INIT;
    sr.body_case = OBJMETA__REQUEST__BODY_STATS;
    sr.stats = &s;
    ck_assert_int_eq(rpc_sync_client_call(c, &sr, 3000, &resp), OM_OK);
    ck_assert_int_eq(rpc_response_status(resp), OM_E_INVALID);
    ck_assert_str_eq(resp->message, "test server answers ping only");
    rpc_response_free(resp);
    /* A request without operation is refused locally. */
    Objmeta__Request empty = OBJMETA__REQUEST__INIT;
    ck_assert_int_eq(rpc_sync_client_call(c, &empty, 3000, &resp), OM_E_INVALID);
    free(big);
    rpc_sync_client_close(c);
    tsrv_stop(t);
}
END_TEST

/*
 * rpc_reply_send_packed from the loop and from another thread: the id is
 * put in front of a Response packed with id 0; ids grow past one varint byte.
 */
START_TEST(rpc_reply_send_packed_ids)
{
    tsrv *t = tsrv_start();
    char addr[64], payload[64];
    rpc_sync_client *c;
    Objmeta__Request r;
    Objmeta__PingRequest p;
    Objmeta__Response *resp = NULL;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c), OM_OK);
    for (int i = 0; i < 300; i++) {
        snprintf(payload, sizeof(payload), "%s-%d", i % 2 ? "packed" : "worker-packed", i);
        ping_req(&r, &p, payload);
        ck_assert_int_eq(rpc_sync_client_call(c, &r, 5000, &resp), OM_OK);
        ck_assert_int_eq(rpc_response_status(resp), OM_OK);
        ck_assert_uint_eq(resp->id, (uint64_t)i + 1); /* the sync client numbers 1, 2, ... */
        ck_assert_int_eq(resp->body_case, OBJMETA__RESPONSE__BODY_PING);
        ck_assert_uint_eq(resp->ping->payload.len, strlen(payload));
        ck_assert_int_eq(memcmp(resp->ping->payload.data, payload, strlen(payload)), 0);
        ck_assert_str_eq(resp->ping->server, "test");
        rpc_response_free(resp);
    }
    rpc_sync_client_close(c);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_unknown_operation_keeps_connection)
{
    tsrv *t = tsrv_start();
    int fd = raw_connect(t->port);
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest p;

    r.id = 7;
    raw_send_req(fd, &r);
    Objmeta__Response *resp = raw_recv(fd);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 7);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(resp->message, "unknown operation"));
    rpc_response_free(resp);
    /* An operation number from the future (field 99, empty) decodes to "no operation" too:
     * id 9 (08 09), then tag 99 length-delimited (9a 06) of length 0. */
    uint8_t fut[] = {0, 0, 0, 5, 0x08, 0x09, 0x9a, 0x06, 0x00};
    raw_send(fd, fut, sizeof(fut));
    resp = raw_recv(fd);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 9);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    rpc_response_free(resp);
    /* The connection still works. */
    ping_req(&r, &p, "after");
    r.id = 8;
    raw_send_req(fd, &r);
    resp = raw_recv(fd);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 8);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp);
    close(fd);
    rpc_server_stats st;
    tsrv_stats(t, &st);
    ck_assert_uint_eq(st.protocol_errors, 2);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_undecodable_message_closes)
{
    tsrv *t = tsrv_start();
    int fd = raw_connect(t->port);
    /* Field 1 as a length-delimited field claiming 100 bytes: not a Request. */
    uint8_t bad[] = {0, 0, 0, 3, 0x0a, 0x64, 0xff};

    raw_send(fd, bad, sizeof(bad));
    Objmeta__Response *resp = raw_recv(fd);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 0);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(resp->message, "undecodable"));
    rpc_response_free(resp);
    ck_assert(raw_sees_close(fd));
    close(fd);
    assert_serves(t->port);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_4gib_length_prefix)
{
    tsrv *t = tsrv_start();
    int fd = raw_connect(t->port);
    uint8_t h[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};

    raw_send(fd, h, sizeof(h));
    Objmeta__Response *resp = raw_recv(fd);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 0);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(resp->message, "4294967295 bytes exceeds max_frame"));
    rpc_response_free(resp);
    ck_assert(raw_sees_close(fd));
    close(fd);
    assert_serves(t->port);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_frame_cut_short_then_close)
{
    tsrv *t = tsrv_start();
    int fd = raw_connect(t->port);
    uint8_t part[14] = {0, 0, 0, 100, 0x08, 0x01};

    ck_assert(tsrv_wait(t, pred_conns_eq, 1, 3000, NULL));
    raw_send(fd, part, sizeof(part));
    close(fd);
    ck_assert(tsrv_wait(t, pred_conns_eq, 0, 3000, NULL));
    assert_serves(t->port);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_random_bytes_do_not_hurt)
{
    tsrv *t = tsrv_start();
    uint64_t seed = tu_seed("rpc_random_bytes_do_not_hurt");
    uint8_t buf[4096];
    int fds[20];

    for (int i = 0; i < 20; i++) {
        fds[i] = raw_connect(t->port);
        ck_assert_int_ge(fds[i], 0);
        size_t n = 1 + tu_rand(&seed) % sizeof(buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)tu_rand(&seed);
        /* Some with a plausible small length, so garbage reaches the decoder. */
        if (i % 2 == 0 && n > 8)
            om_put_be32(buf, (uint32_t)(n - 4));
        raw_send(fds[i], buf, n);
    }
    assert_serves(t->port);
    for (int i = 0; i < 20; i++)
        close(fds[i]);
    ck_assert(tsrv_wait(t, pred_conns_eq, 0, 5000, NULL));
    assert_serves(t->port);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_slow_client_backpressure)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.out_high_water = 256 * 1024;
    o.out_low_water = 64 * 1024;
    o.max_inflight = 64;
    tsrv *t = tsrv_start_opts(&o);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    struct sockaddr_in sa;

    /* A client that asks for 64 KiB answers and never reads them. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)t->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    Objmeta__Request r;
    Objmeta__PingRequest p;
    om_buf one = OM_BUF_INIT;
    ping_req(&r, &p, "big:65536");
    r.id = 1;
    ck_assert_int_eq(rpc_frame_encode(&one, &r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
    int sent = 0;
    uint64_t deadline = tu_now_ms() + 3000;
    while (sent < 20000 && tu_now_ms() < deadline) {
        ssize_t w = send(fd, one.p, one.n, MSG_NOSIGNAL);
        if (w == (ssize_t)one.n) {
            sent++;
            continue;
        }
        ck_assert(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        break; /* the server stopped reading: our send buffer is full */
    }
    ck_assert_int_gt(sent, 100);
    rpc_server_stats st;
    ck_assert(tsrv_wait(t, pred_pauses, 1, 5000, &st));
    /* Memory stays bounded while the client sits there, and others are served. */
    for (int i = 0; i < 5; i++) {
        tsrv_stats(t, &st);
        ck_assert_uint_le(st.bytes_queued, o.out_high_water + 65536 + 64);
        ck_assert_uint_le(st.bytes_buffered, 1u << 20);
        ck_assert_uint_lt(st.requests_total, (uint64_t)sent);
        assert_serves(t->port);
    }
    om_buf_free(&one);
    close(fd);
    ck_assert(tsrv_wait(t, pred_conns_eq, 0, 5000, NULL));
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_half_close_still_answered)
{
    tsrv *t = tsrv_start();
    int fd = raw_connect(t->port);
    Objmeta__Request r;
    Objmeta__PingRequest p;
    const char *payloads[] = {"a", "worker-b", "c"};

    for (int i = 0; i < 3; i++) {
        ping_req(&r, &p, payloads[i]);
        r.id = 10 + (uint64_t)i;
        raw_send_req(fd, &r);
    }
    /* A partial frame after the whole ones is dropped at EOF. */
    uint8_t part[] = {0, 0, 0, 50, 0x08};
    raw_send(fd, part, sizeof(part));
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        Objmeta__Response *resp = raw_recv(fd);
        ck_assert_ptr_nonnull(resp);
        ck_assert_uint_ge(resp->id, 10);
        ck_assert_uint_le(resp->id, 12);
        int k = (int)(resp->id - 10);
        ck_assert(!seen[k]);
        seen[k] = true;
        ck_assert_uint_eq(resp->ping->payload.len, strlen(payloads[k]));
        rpc_response_free(resp);
    }
    ck_assert(raw_sees_close(fd));
    close(fd);
    ck_assert(tsrv_wait(t, pred_conns_eq, 0, 3000, NULL));
    tsrv_stop(t);
}
END_TEST

static bool
pred_inflight_total(const rpc_server_stats *st, uint64_t want)
{
    /* want = inflight << 32 | requests_total */
    return st->requests_inflight == (want >> 32) && st->requests_total == (want & 0xffffffffu);
}

START_TEST(rpc_max_inflight_pauses_reading)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.max_inflight = 2;
    tsrv *t = tsrv_start_opts(&o);
    int fd = raw_connect(t->port);
    Objmeta__Request r;
    Objmeta__PingRequest p;

    for (int i = 0; i < 5; i++) {
        ping_req(&r, &p, "hold");
        r.id = 1 + (uint64_t)i;
        raw_send_req(fd, &r);
    }
    /* Only two are handed to the handler at a time; the rest wait unread. */
    int got = 0;
    uint64_t dispatched = 0;
    while (got < 5) {
        uint64_t batch = 5 - (uint64_t)got < 2 ? 5 - (uint64_t)got : 2;
        dispatched += batch;
        ck_assert(tsrv_wait(t, pred_inflight_total, batch << 32 | dispatched, 3000, NULL));
        tsrv_cmd(t, 'r');
        for (uint64_t k = 0; k < batch; k++) {
            Objmeta__Response *resp = raw_recv(fd);
            ck_assert_ptr_nonnull(resp);
            ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
            rpc_response_free(resp);
            got++;
        }
    }
    rpc_server_stats st;
    tsrv_stats(t, &st);
    ck_assert_uint_ge(st.backpressure_pauses, 2);
    close(fd);
    tsrv_stop(t);
}
END_TEST

/* Frame i of the hint test: Retrieve, Ping, Head, Store, Exists in turn (keyed: 0, 2, 4). */
static void
hint_frame(om_buf *out, unsigned i, char *expect, size_t cap, size_t *elen)
{
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;
    Objmeta__HeadRequest hr = OBJMETA__HEAD_REQUEST__INIT;
    Objmeta__ExistsRequest er = OBJMETA__EXISTS_REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__PingRequest p = OBJMETA__PING_REQUEST__INIT;
    char bucket[32], key[64];

    /* keys of varying length, so that frames straddle the input's chunks anywhere */
    snprintf(bucket, sizeof(bucket), "bkt%u", i % 7);
    snprintf(key, sizeof(key), "key-%u-%.*s", i, (int)(i % 29), "abcdefghijklmnopqrstuvwxyz0123");
    r.id = 1 + i;
    switch (i % 5) {
    case 0:
        rr.bucket = bucket;
        rr.key = key;
        r.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        r.retrieve = &rr;
        break;
    case 1:
        p.payload.data = (uint8_t *)"x";
        p.payload.len = 1;
        r.body_case = OBJMETA__REQUEST__BODY_PING;
        r.ping = &p;
        break;
    case 2:
        hr.bucket = bucket;
        hr.key = key;
        r.body_case = OBJMETA__REQUEST__BODY_HEAD;
        r.head = &hr;
        break;
    case 3:
        sr.bucket = bucket;
        sr.key = key;
        r.body_case = OBJMETA__REQUEST__BODY_STORE;
        r.store = &sr;
        break;
    default:
        er.bucket = bucket;
        er.key = key;
        r.ring_epoch = 7;
        r.body_case = OBJMETA__REQUEST__BODY_EXISTS;
        r.exists = &er;
        break;
    }
    ck_assert_int_eq(rpc_frame_encode(out, &r.base, RPC_DEFAULT_MAX_FRAME), OM_OK);
    if (i % 5 == 0 || i % 5 == 2 || i % 5 == 4) {
        int w = snprintf(expect + *elen, cap - *elen, "%s/%s\n", bucket, key);
        ck_assert(w > 0 && (size_t)w < cap - *elen);
        *elen += (size_t)w;
    }
}

/*
 * Read-ahead hints (rpc_server_set_prefetch): the addresses of the keyed
 * reads only, in request order, each at most once, none invented -- across
 * one burst large enough to spread over several input chunks -- and every
 * request is still answered.
 */
START_TEST(rpc_prefetch_hints_follow_requests)
{
    enum { N = 3000 };
    rpc_server_opts o;
    om_buf b = OM_BUF_INIT;
    size_t cap = (size_t)N * 64, elen = 0, lpos = 0, epos = 0, lines = 0;
    char *expect = malloc(cap);

    ck_assert_ptr_nonnull(expect);
    rpc_server_opts_init(&o);
    o.max_inflight = 4096;
    tsrv *t = tsrv_start_hints(&o);
    int fd = raw_connect(t->port);
    for (unsigned i = 0; i < N; i++)
        hint_frame(&b, i, expect, cap, &elen);
    raw_send(fd, b.p, b.n);
    for (unsigned i = 0; i < N; i++) {
        Objmeta__Response *resp = raw_recv(fd);
        ck_assert_ptr_nonnull(resp);
        ck_assert_uint_eq(resp->id, 1 + i); /* answered at once, in order */
        rpc_response_free(resp);
    }
    close(fd);
    /* every answer came after its request's hint: the log is complete */
    pthread_mutex_lock(&t->mu);
    size_t log_n = t->hint_log_n;
    unsigned calls = t->hint_calls;
    char *log = malloc(log_n + 1);
    ck_assert_ptr_nonnull(log);
    if (log_n > 0)
        memcpy(log, t->hint_log, log_n);
    pthread_mutex_unlock(&t->mu);
    tsrv_stop(t);
    /* every logged line is the next expected one or a later one (a frame
     * not whole when its batch was hinted gets none) */
    while (lpos < log_n) {
        const char *nl = memchr(log + lpos, '\n', log_n - lpos);
        ck_assert_ptr_nonnull(nl);
        size_t ln = (size_t)(nl - (log + lpos)) + 1;
        const char *found = NULL;
        while (epos < elen) {
            const char *enl = memchr(expect + epos, '\n', elen - epos);
            size_t en = (size_t)(enl - (expect + epos)) + 1;
            bool same = en == ln && memcmp(expect + epos, log + lpos, ln) == 0;
            epos += en;
            if (same) {
                found = log + lpos;
                break;
            }
        }
        ck_assert_msg(found != NULL, "hint %zu is no later keyed request: %.*s", lines, (int)ln,
                      log + lpos);
        lpos += ln;
        lines++;
    }
    printf("prefetch hints: %zu of %u keyed requests in %u calls\n", lines, N * 3 / 5, calls);
    ck_assert_uint_ge(lines, N / 5); /* most bursts are hinted */
    free(log);
    om_buf_free(&b);
    free(expect);
}
END_TEST

START_TEST(rpc_idle_timeout)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.idle_timeout_ms = 200;
    tsrv *t = tsrv_start_opts(&o);

    /* A request in flight keeps the connection (for well past the idle time). */
    int busy = raw_connect(t->port);
    Objmeta__Request r;
    Objmeta__PingRequest p;
    ping_req(&r, &p, "hold");
    r.id = 1;
    raw_send_req(busy, &r);
    ck_assert(tsrv_wait(t, pred_inflight_eq, 1, 3000, NULL));

    uint64_t t0 = tu_now_ms();
    int fd = raw_connect(t->port);
    ck_assert(raw_sees_close(fd));
    uint64_t el = tu_now_ms() - t0;
    ck_assert_uint_ge(el, 150);
    ck_assert_uint_lt(el, 3000);
    close(fd);
    rpc_server_stats st;
    tsrv_stats(t, &st);
    ck_assert_uint_eq(st.idle_closes, 1);
    ck_assert_uint_eq(st.connections_current, 1);
    /* The held request is answered, then that connection goes idle too. */
    tsrv_cmd(t, 'r');
    Objmeta__Response *resp = raw_recv(busy);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->id, 1);
    rpc_response_free(resp);
    ck_assert(raw_sees_close(busy));
    close(busy);
    /* A blocking client whose connection was closed as idle reconnects on its next call. */
    char addr[64];
    rpc_sync_client *c;
    Objmeta__Response *resp2;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c), OM_OK);
    ping_req(&r, &p, "x");
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 3000, &resp2), OM_OK);
    rpc_response_free(resp2);
    ck_assert(tsrv_wait(t, pred_idle_closes, 3, 3000, NULL));
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 3000, &resp2), OM_OK);
    ck_assert_int_eq(resp2->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp2);
    rpc_sync_client_close(c);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_connection_limit)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.max_connections = 4;
    tsrv *t = tsrv_start_opts(&o);
    char addr[64];
    rpc_sync_client *c[5];
    Objmeta__Request r;
    Objmeta__PingRequest p;
    Objmeta__Response *resp;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ping_req(&r, &p, "x");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c[i]), OM_OK);
        ck_assert_int_eq(rpc_sync_client_call(c[i], &r, 3000, &resp), OM_OK);
        rpc_response_free(resp);
    }
    /* The fifth connects (TCP) but is told BUSY and closed -- while the
     * client still waits for the connection, or on its first call. */
    om_status st5 = rpc_sync_client_open(addr, 3000, &c[4]);
    if (st5 == OM_OK) {
        ck_assert_int_eq(rpc_sync_client_call(c[4], &r, 3000, &resp), OM_E_BUSY);
        ck_assert_ptr_nonnull(strstr(rpc_sync_client_last_error(c[4]), "too many connections"));
        rpc_sync_client_close(c[4]);
    } else {
        ck_assert_int_eq(st5, OM_E_BUSY);
    }
    rpc_server_stats st;
    tsrv_stats(t, &st);
    /*
     * 1, or 2 when the client saw the first refusal's close before its call
     * and reconnected for it (rpc_sync_client_call reconnects a closed
     * connection): the second attempt is refused with BUSY as well.
     */
    ck_assert_uint_ge(st.connections_rejected, 1);
    ck_assert_uint_le(st.connections_rejected, 2);
    rpc_sync_client_close(c[0]);
    ck_assert(tsrv_wait(t, pred_conns_eq, 3, 3000, NULL));
    assert_serves(t->port);
    for (int i = 1; i < 4; i++)
        rpc_sync_client_close(c[i]);
    tsrv_stop(t);
}
END_TEST

/* ---- a listener handing connections to an adopt_only server ---- */

typedef struct adopt_pair {
    rpc_server *adopter;
    int offered;
} adopt_pair;

/* Ping answered with the name of the server (arg) that served the connection. */
static void
named_ping(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;

    (void)req;
    pr.server = arg;
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    rpc_reply_send(reply, &resp);
}

/* The accept hook: every second connection goes to the adopter. */
static bool
hand_every_other(void *arg, int fd)
{
    adopt_pair *p = arg;

    if (p->offered++ % 2 == 0)
        return false;
    rpc_server_adopt(p->adopter, fd);
    return true;
}

/*
 * rpc_server_set_accept_hook + rpc_server_adopt: connections the listener's
 * hook hands over are served by the adopt_only server (its handler answers),
 * the others by the listener; the adopter refuses BUSY over its
 * max_connections as a listener would. Both servers on one loop here (the
 * shard runs one per thread; test_sync_order and it_shard_loops cover that).
 */
START_TEST(rpc_adopted_connections)
{
    static adopt_pair p;
    struct event_base *base = event_base_new();
    rpc_server *lis = NULL;
    tu_loop *loop;
    rpc_server_opts lo, ao;
    rpc_sync_client *c[4];
    char addr[64];
    Objmeta__Request r;
    Objmeta__PingRequest pg;
    Objmeta__Response *resp;
    static const char *const want[3] = {"listener", "adopter", "listener"};

    memset(&p, 0, sizeof(p));
    rpc_server_opts_init(&lo);
    lo.listen = "127.0.0.1:0";
    ao = lo;
    ao.adopt_only = true;
    ao.max_connections = 1;
    ck_assert_int_eq(rpc_server_new(base, &lo, named_ping, "listener", &lis), OM_OK);
    ck_assert_int_eq(rpc_server_new(base, &ao, named_ping, "adopter", &p.adopter), OM_OK);
    ck_assert_int_eq(rpc_server_port(p.adopter), 0);
    rpc_server_set_accept_hook(lis, hand_every_other, &p);
    loop = tu_loop_start(base);

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(lis));
    ping_req(&r, &pg, "x");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c[i]), OM_OK);
        ck_assert_int_eq(rpc_sync_client_call(c[i], &r, 3000, &resp), OM_OK);
        ck_assert_str_eq(resp->ping->server, want[i]);
        rpc_response_free(resp);
    }
    /* the fourth goes to the adopter, which holds its one connection already */
    om_status st = rpc_sync_client_open(addr, 3000, &c[3]);
    if (st == OM_OK) {
        ck_assert_int_eq(rpc_sync_client_call(c[3], &r, 3000, &resp), OM_E_BUSY);
        rpc_sync_client_close(c[3]);
    } else {
        ck_assert_int_eq(st, OM_E_BUSY);
    }
    for (int i = 0; i < 3; i++)
        rpc_sync_client_close(c[i]);
    tu_loop_stop(loop);
    rpc_server_free(p.adopter);
    rpc_server_free(lis);
    event_base_free(base);
}
END_TEST

START_TEST(rpc_graceful_shutdown_finishes_inflight)
{
    tsrv *t = tsrv_start();
    struct event *tick;
    struct event_base *b = client_base(&tick);
    rpc_client *c;
    char addr[64];
    int done = 0, order = 0;
    cres r[3];

    memset(r, 0, sizeof(r));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_client_new(b, addr, NULL, &c), OM_OK);
    for (int i = 0; i < 3; i++) {
        r[i].done = &done;
        r[i].order = &order;
        async_call(c, "hold", 10000, &r[i]);
    }
    /* Drive our side until the server holds all three. */
    uint64_t deadline = tu_now_ms() + 5000;
    rpc_server_stats st;
    for (;;) {
        event_base_loop(b, EVLOOP_NONBLOCK);
        tsrv_stats(t, &st);
        if (st.requests_inflight == 3 || tu_now_ms() > deadline)
            break;
        usleep(2000);
    }
    ck_assert_uint_eq(st.requests_inflight, 3);
    uint64_t t0 = tu_now_ms();
    tsrv_cmd(t, 's');
    /* New connections are refused once the listener is closed. */
    int fd;
    deadline = tu_now_ms() + 3000;
    while ((fd = raw_connect(t->port)) >= 0 && tu_now_ms() < deadline) {
        close(fd);
        usleep(2000);
    }
    ck_assert_int_lt(fd, 0);
    /* The in-flight requests still get their answers. */
    tsrv_cmd(t, 'r');
    ck_assert(run_until(b, &done, 3, 5000));
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].st, OM_OK);
        ck_assert_str_eq(r[i].payload, "hold");
    }
    tsrv_join(t);                              /* the loop exits by itself once drained */
    ck_assert_uint_lt(tu_now_ms() - t0, 4000); /* well before the 5 s deadline */
    rpc_client_free(c);
    event_free(tick);
    event_base_free(b);
}
END_TEST

START_TEST(rpc_request_timeout)
{
    rpc_server_opts o;
    rpc_server_opts_init(&o);
    o.request_timeout_ms = 100;
    tsrv *t = tsrv_start_opts(&o);
    char addr[64];
    rpc_sync_client *c;
    Objmeta__Request r;
    Objmeta__PingRequest p;
    Objmeta__Response *resp;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c), OM_OK);
    ping_req(&r, &p, "never");
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 5000, &resp), OM_OK);
    ck_assert_int_eq(rpc_response_status(resp), OM_E_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(resp->message, "not answered within 100 ms"));
    ck_assert_uint_ge(tu_now_ms() - t0, 90);
    rpc_response_free(resp);
    ping_req(&r, &p, "x");
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 3000, &resp), OM_OK);
    ck_assert_int_eq(rpc_response_status(resp), OM_OK);
    rpc_response_free(resp);
    rpc_server_stats st;
    tsrv_stats(t, &st);
    ck_assert_uint_eq(st.request_timeouts, 1);
    ck_assert_uint_eq(st.requests_inflight, 0);
    rpc_sync_client_close(c);
    tsrv_stop(t);
}
END_TEST

/* GET path on the HTTP port; returns the whole reply (status line, headers, body). */
static char *
http_get(int port, const char *path)
{
    int fd = raw_connect(port);
    char req[256];
    om_buf b = OM_BUF_INIT;
    char buf[4096];

    ck_assert_int_ge(fd, 0);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    raw_send(fd, req, strlen(req));
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        ck_assert_int_eq(om_buf_append(&b, buf, (size_t)n), OM_OK);
    }
    close(fd);
    ck_assert_int_eq(om_buf_append_byte(&b, 0), OM_OK);
    return (char *)b.p;
}

START_TEST(rpc_http_healthz_and_metrics)
{
    tsrv *t = tsrv_start();
    char *r;

    ck_assert_int_gt(t->http_port, 0);
    ck_assert_int_ne(t->http_port, t->port);
    r = http_get(t->http_port, "/healthz");
    ck_assert_ptr_nonnull(strstr(r, "HTTP/1.1 200"));
    ck_assert_ptr_nonnull(strstr(r, "\r\n\r\nok\n"));
    free(r);
    atomic_store(&t->unhealthy, 1);
    r = http_get(t->http_port, "/healthz");
    ck_assert_ptr_nonnull(strstr(r, "HTTP/1.1 503"));
    ck_assert_ptr_nonnull(strstr(r, "\r\n\r\ndraining for a test\n"));
    free(r);
    assert_serves(t->port);
    r = http_get(t->http_port, "/metrics");
    ck_assert_ptr_nonnull(strstr(r, "HTTP/1.1 200"));
    ck_assert_ptr_nonnull(strstr(r, "text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(r, "# TYPE objmeta_rpc_connections gauge\n"));
    ck_assert_ptr_nonnull(strstr(r, "\nobjmeta_rpc_requests_total 1\n"));
    ck_assert_ptr_nonnull(strstr(r, "test_ping_seconds_bucket{op=\"ping\",le=\"+Inf\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(r, "test_ping_seconds_count{op=\"ping\"} 1\n"));
    free(r);
    r = http_get(t->http_port, "/nope");
    ck_assert_ptr_nonnull(strstr(r, "HTTP/1.1 404"));
    free(r);
    tsrv_stop(t);
}
END_TEST

START_TEST(rpc_listen_errors)
{
    struct event_base *b = event_base_new();
    rpc_server_opts o;
    rpc_server *s = NULL;
    rpc_http *h = NULL;

    rpc_server_opts_init(&o);
    o.listen = "127.0.0.1:0";
    ck_assert_int_eq(rpc_server_new(b, &o, (rpc_handler_fn)NULL, NULL, &s), OM_E_INVALID);
    o.listen = "nonsense";
    ck_assert_int_eq(rpc_server_new(b, &o, (rpc_handler_fn)tsrv_handler, NULL, &s), OM_E_INVALID);
    o.listen = "127.0.0.1:0";
    o.out_low_water = o.out_high_water + 1;
    ck_assert_int_eq(rpc_server_new(b, &o, (rpc_handler_fn)tsrv_handler, NULL, &s), OM_E_INVALID);
    rpc_server_opts_init(&o);
    o.listen = "127.0.0.1:0";
    ck_assert_int_eq(rpc_server_new(b, &o, (rpc_handler_fn)tsrv_handler, NULL, &s), OM_OK);
    /* The same port twice: the second bind fails. */
    char taken[64];
    rpc_server *s2 = NULL;
    snprintf(taken, sizeof(taken), "127.0.0.1:%d", rpc_server_port(s));
    o.listen = taken;
    ck_assert_int_ne(rpc_server_new(b, &o, (rpc_handler_fn)tsrv_handler, NULL, &s2), OM_OK);
    ck_assert_ptr_null(s2);
    ck_assert_int_ne(rpc_http_open(b, taken, NULL, NULL, NULL, &h), OM_OK);
    ck_assert_int_eq(rpc_http_open(b, "bad", NULL, NULL, NULL, &h), OM_E_INVALID);
    ck_assert_ptr_null(h);
    rpc_server_free(s);
    rpc_server_free(NULL);
    rpc_http_close(NULL);
    event_base_free(b);
}
END_TEST

static Suite *
rpc_server_suite(void)
{
    Suite *s = suite_create("rpc-server");
    TCase *tc = tcase_create("server");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rpc_sync_ping_and_large_payload);
    tcase_add_test(tc, rpc_reply_send_packed_ids);
    tcase_add_test(tc, rpc_unknown_operation_keeps_connection);
    tcase_add_test(tc, rpc_undecodable_message_closes);
    tcase_add_test(tc, rpc_4gib_length_prefix);
    tcase_add_test(tc, rpc_frame_cut_short_then_close);
    tcase_add_test(tc, rpc_random_bytes_do_not_hurt);
    tcase_add_test(tc, rpc_slow_client_backpressure);
    tcase_add_test(tc, rpc_half_close_still_answered);
    tcase_add_test(tc, rpc_max_inflight_pauses_reading);
    tcase_add_test(tc, rpc_prefetch_hints_follow_requests);
    tcase_add_test(tc, rpc_idle_timeout);
    tcase_add_test(tc, rpc_connection_limit);
    tcase_add_test(tc, rpc_adopted_connections);
    tcase_add_test(tc, rpc_graceful_shutdown_finishes_inflight);
    tcase_add_test(tc, rpc_request_timeout);
    tcase_add_test(tc, rpc_http_healthz_and_metrics);
    tcase_add_test(tc, rpc_listen_errors);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    rpc_init_logging();
    return tu_run(rpc_server_suite());
}
