/*
 * tests/rpc/testsrv.c -- the in-process rpc test server, raw-socket helpers
 * and async-client helpers shared by the rpc integration suites (see
 * testsrv.h for what the server does with each payload).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/err.h>
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

/* ------------------------------------------------------------------------ */
/* Test server                                                                */

static void
ping_answer(rpc_reply *reply, const void *p, size_t n)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;

    pr.payload.data = (uint8_t *)p;
    pr.payload.len = n;
    pr.server = "test";
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    rpc_reply_send(reply, &resp);
}

/* The same answer, packed here with id 0 and sent with rpc_reply_send_packed. */
static void
ping_answer_packed(rpc_reply *reply, const void *p, size_t n)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;

    pr.payload.data = (uint8_t *)p;
    pr.payload.len = n;
    pr.server = "test";
    resp.body_case = OBJMETA__RESPONSE__BODY_PING;
    resp.ping = &pr;
    size_t len = rpc_response_packed_size(&resp);
    uint8_t *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(rpc_response_pack(&resp, buf), len);
    rpc_reply_send_packed(reply, buf, len);
    free(buf);
}

static void
worker_push(tsrv *t, rpc_reply *r, const char *payload)
{
    work *w = calloc(1, sizeof(*w));

    w->reply = r;
    w->payload = strdup(payload);
    pthread_mutex_lock(&t->mu);
    if (t->wq_tail != NULL)
        t->wq_tail->next = w;
    else
        t->wq_head = w;
    t->wq_tail = w;
    pthread_cond_signal(&t->wcv);
    pthread_mutex_unlock(&t->mu);
}

static void *
worker_main(void *arg)
{
    tsrv *t = arg;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->wq_head == NULL && !t->wstop)
            pthread_cond_wait(&t->wcv, &t->mu);
        if (t->wq_head == NULL && t->wstop)
            break;
        work *w = t->wq_head;
        t->wq_head = w->next;
        if (t->wq_head == NULL)
            t->wq_tail = NULL;
        pthread_mutex_unlock(&t->mu);
        if (strncmp(w->payload, "worker-packed", 13) == 0)
            ping_answer_packed(w->reply, w->payload, strlen(w->payload));
        else
            ping_answer(w->reply, w->payload, strlen(w->payload));
        free(w->payload);
        free(w);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void
release_held(tsrv *t)
{
    for (int i = 0; i < t->nheld; i++)
        worker_push(t, t->held[i], "hold");
    t->nheld = 0;
}

void
tsrv_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    tsrv *t = arg;
    uint64_t t0 = tu_now_ms();

    if (req->body_case != OBJMETA__REQUEST__BODY_PING) {
        rpc_reply_error(reply, OM_E_INVALID, "test server answers ping only");
        return;
    }
    char cmd[64];
    size_t n = req->ping->payload.len < sizeof(cmd) - 1 ? req->ping->payload.len : sizeof(cmd) - 1;
    memcpy(cmd, req->ping->payload.data, n);
    cmd[n] = '\0';
    if (strcmp(cmd, "hold") == 0 && t->nheld < MAX_HELD) {
        t->held[t->nheld++] = reply;
    } else if (strcmp(cmd, "release") == 0) {
        ping_answer(reply, "release", 7);
        release_held(t);
    } else if (strncmp(cmd, "worker", 6) == 0) {
        worker_push(t, reply, cmd);
    } else if (strcmp(cmd, "never") == 0 && t->nnever < MAX_HELD) {
        t->never[t->nnever++] = reply;
    } else if (strncmp(cmd, "packed", 6) == 0) {
        ping_answer_packed(reply, req->ping->payload.data, req->ping->payload.len);
    } else if (strcmp(cmd, "openssl-error") == 0) {
        ERR_raise(ERR_LIB_USER,
                  ERR_R_PASSED_INVALID_ARGUMENT); /* left in the loop thread's queue */
        ping_answer(reply, cmd, n);
    } else if (strncmp(cmd, "big:", 4) == 0) {
        size_t len = strtoul(cmd + 4, NULL, 10);
        uint8_t *p = calloc(1, len + 1);
        ping_answer(reply, p, len);
        free(p);
    } else {
        ping_answer(reply, req->ping->payload.data, req->ping->payload.len);
    }
    rpc_hist_observe_ns(&t->ping_hist, (tu_now_ms() - t0) * 1000000u);
}

/* The rpc_prefetch_fn of a server started by tsrv_start_hints: log every hint. */
static void
tsrv_hint(void *arg, const rpc_key_hint *h, size_t n)
{
    tsrv *t = arg;

    ck_assert_uint_gt(n, 0);
    ck_assert_uint_le(n, RPC_PREFETCH_MAX);
    pthread_mutex_lock(&t->mu);
    t->hint_calls++;
    for (size_t i = 0; i < n; i++) {
        size_t need = h[i].bucket.n + h[i].key.n + 2;
        if (t->hint_log_n + need > t->hint_log_cap) {
            t->hint_log_cap = (t->hint_log_n + need) * 2;
            t->hint_log = realloc(t->hint_log, t->hint_log_cap + 1);
            ck_assert_ptr_nonnull(t->hint_log);
        }
        memcpy(t->hint_log + t->hint_log_n, h[i].bucket.p, h[i].bucket.n);
        t->hint_log_n += h[i].bucket.n;
        t->hint_log[t->hint_log_n++] = '/';
        memcpy(t->hint_log + t->hint_log_n, h[i].key.p, h[i].key.n);
        t->hint_log_n += h[i].key.n;
        t->hint_log[t->hint_log_n++] = '\n';
        t->hint_log[t->hint_log_n] = '\0';
    }
    pthread_mutex_unlock(&t->mu);
}

static om_status
test_health(void *arg, om_buf *reason)
{
    tsrv *t = arg;

    if (atomic_load(&t->unhealthy)) {
        (void)om_buf_printf(reason, "draining for a test");
        return OM_E_UNAVAILABLE;
    }
    return OM_OK;
}

static om_status
test_metrics(void *arg, om_buf *out)
{
    tsrv *t = arg;

    OM_TRY(rpc_server_render_metrics(t->srv, out));
    OM_TRY(rpc_prom_header(out, "test_ping_seconds", "histogram", "Ping handling latency."));
    return rpc_hist_render(&t->ping_hist, out, "test_ping_seconds", "op=\"ping\"");
}

static void
on_drained(void *arg)
{
    tsrv *t = arg;

    pthread_mutex_lock(&t->mu);
    t->drained = true;
    pthread_mutex_unlock(&t->mu);
    event_base_loopexit(t->base, NULL);
}

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    tsrv *t = arg;
    char c;

    (void)what;
    if (read(fd, &c, 1) != 1)
        return;
    switch (c) {
    case 'g':
        pthread_mutex_lock(&t->mu);
        rpc_server_get_stats(t->srv, &t->stats);
        t->stats_gen++;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        break;
    case 's':
        rpc_server_shutdown(t->srv, 5000, on_drained, t);
        break;
    case 'r':
        release_held(t);
        break;
    case 'q':
        event_base_loopexit(t->base, NULL);
        break;
    }
}

static void *
tsrv_main(void *arg)
{
    tsrv *t = arg;
    om_status st;

    t->base = event_base_new();
    st = rpc_server_new(t->base, &t->o, tsrv_handler, t, &t->srv);
    if (st == OM_OK) {
        if (t->hints)
            rpc_server_set_prefetch(t->srv, tsrv_hint, t);
        t->port = rpc_server_port(t->srv);
        st = rpc_http_open(t->base, "127.0.0.1:0", test_health, test_metrics, t, &t->http);
        if (st == OM_OK)
            t->http_port = rpc_http_port(t->http);
    }
    t->ctl_ev = event_new(t->base, t->ctl[0], EV_READ | EV_PERSIST, ctl_cb, t);
    event_add(t->ctl_ev, NULL);
    pthread_mutex_lock(&t->mu);
    t->start_st = st;
    t->ready = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (st == OM_OK)
        event_base_dispatch(t->base);
    /* Teardown on the loop thread; replies still held are answered after the
     * server is gone (the dead-queue path, on and off the loop thread). */
    rpc_http_close(t->http);
    rpc_server_free(t->srv);
    t->srv = NULL;
    for (int i = 0; i < t->nnever; i++)
        ping_answer(t->never[i], "late", 4);
    t->nnever = 0;
    release_held(t);
    event_free(t->ctl_ev);
    event_base_free(t->base);
    pthread_mutex_lock(&t->mu);
    t->exited = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static tsrv *
tsrv_start_ex(const rpc_server_opts *o, bool hints)
{
    tsrv *t = calloc(1, sizeof(*t));

    ck_assert_ptr_nonnull(t);
    t->hints = hints;
    t->o = *o;
    if (o->listen == NULL || strcmp(o->listen, "127.0.0.1:7400") == 0)
        t->o.listen = "127.0.0.1:0";
    snprintf(t->listen, sizeof(t->listen), "%s", t->o.listen);
    t->o.listen = t->listen;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->wcv, NULL);
    rpc_hist_init(&t->ping_hist);
    ck_assert_int_eq(pipe2(t->ctl, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&t->wthr, NULL, worker_main, t), 0);
    ck_assert_int_eq(pthread_create(&t->thr, NULL, tsrv_main, t), 0);
    pthread_mutex_lock(&t->mu);
    while (!t->ready)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    ck_assert_int_eq(t->start_st, OM_OK);
    ck_assert_int_gt(t->port, 0);
    return t;
}

tsrv *
tsrv_start_opts(const rpc_server_opts *o)
{
    return tsrv_start_ex(o, false);
}

tsrv *
tsrv_start_hints(const rpc_server_opts *o)
{
    return tsrv_start_ex(o, true);
}

tsrv *
tsrv_start(void)
{
    rpc_server_opts o;

    rpc_server_opts_init(&o);
    return tsrv_start_opts(&o);
}

void
tsrv_cmd(tsrv *t, char c)
{
    ck_assert_int_eq(write(t->ctl[1], &c, 1), 1);
}

void
tsrv_stats(tsrv *t, rpc_server_stats *out)
{
    pthread_mutex_lock(&t->mu);
    uint64_t gen = t->stats_gen;
    pthread_mutex_unlock(&t->mu);
    tsrv_cmd(t, 'g');
    pthread_mutex_lock(&t->mu);
    while (t->stats_gen == gen)
        pthread_cond_wait(&t->cv, &t->mu);
    *out = t->stats;
    pthread_mutex_unlock(&t->mu);
}

/* Wait (bounded) for the loop thread to exit, then join both threads. */
void
tsrv_join(tsrv *t)
{
    ck_assert_int_eq(pthread_join(t->thr, NULL), 0);
    pthread_mutex_lock(&t->mu);
    t->wstop = true;
    pthread_cond_signal(&t->wcv);
    pthread_mutex_unlock(&t->mu);
    ck_assert_int_eq(pthread_join(t->wthr, NULL), 0);
    close(t->ctl[0]);
    close(t->ctl[1]);
    free(t->hint_log);
    free(t);
}

void
tsrv_stop(tsrv *t)
{
    tsrv_cmd(t, 'q');
    tsrv_join(t);
}

bool
tsrv_wait(tsrv *t, stats_pred pred, uint64_t arg, uint64_t timeout_ms, rpc_server_stats *last)
{
    uint64_t deadline = tu_now_ms() + timeout_ms;
    rpc_server_stats st;

    for (;;) {
        tsrv_stats(t, &st);
        if (last != NULL)
            *last = st;
        if (pred(&st, arg))
            return true;
        if (tu_now_ms() > deadline)
            return false;
        usleep(2000); /* polling interval, not synchronisation */
    }
}

bool
pred_conns_eq(const rpc_server_stats *st, uint64_t n)
{
    return st->connections_current == n;
}

bool
pred_inflight_eq(const rpc_server_stats *st, uint64_t n)
{
    return st->requests_inflight == n;
}

bool
pred_idle_closes(const rpc_server_stats *st, uint64_t n)
{
    return st->idle_closes >= n;
}

bool
pred_pauses(const rpc_server_stats *st, uint64_t n)
{
    return st->backpressure_pauses >= n;
}

/* ------------------------------------------------------------------------ */
/* Raw sockets                                                                */

int
raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void
raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        b += w;
        n -= (size_t)w;
    }
}

void
raw_send_req(int fd, const Objmeta__Request *r)
{
    om_buf b = OM_BUF_INIT;
    ck_assert_int_eq(rpc_frame_encode(&b, &r->base, RPC_DEFAULT_MAX_FRAME), OM_OK);
    raw_send(fd, b.p, b.n);
    om_buf_free(&b);
}

/* Read one response; NULL at EOF or reset. */
Objmeta__Response *
raw_recv(int fd)
{
    uint8_t h[4];
    ssize_t n = recv(fd, h, 4, MSG_WAITALL);
    if (n != 4)
        return NULL;
    uint32_t len = om_get_be32(h);
    ck_assert_uint_le(len, RPC_DEFAULT_MAX_FRAME);
    uint8_t *p = malloc(len + 1);
    n = len > 0 ? recv(fd, p, len, MSG_WAITALL) : 0;
    ck_assert_int_eq(n, (ssize_t)len);
    Objmeta__Response *r = objmeta__response__unpack(NULL, len, p);
    free(p);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* True when the peer closes (EOF or reset) within the socket's receive timeout. */
bool
raw_sees_close(int fd)
{
    char b[256];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false; /* timeout */
    }
}

void
ping_req(Objmeta__Request *r, Objmeta__PingRequest *p, const char *payload)
{
    objmeta__request__init(r);
    objmeta__ping_request__init(p);
    p->payload.data = (uint8_t *)payload;
    p->payload.len = strlen(payload);
    r->body_case = OBJMETA__REQUEST__BODY_PING;
    r->ping = p;
}

/* A blocking ping on a fresh connection: proves the server still serves. */
void
assert_serves(int port)
{
    char addr[64];
    rpc_sync_client *c;
    Objmeta__Request r;
    Objmeta__PingRequest p;
    Objmeta__Response *resp = NULL;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ck_assert_int_eq(rpc_sync_client_open(addr, 3000, &c), OM_OK);
    ping_req(&r, &p, "still-there");
    ck_assert_int_eq(rpc_sync_client_call(c, &r, 3000, &resp), OM_OK);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    ck_assert_int_eq(resp->body_case, OBJMETA__RESPONSE__BODY_PING);
    ck_assert_uint_eq(resp->ping->payload.len, 11);
    ck_assert_mem_eq(resp->ping->payload.data, "still-there", 11);
    rpc_response_free(resp);
    rpc_sync_client_close(c);
}

/* ------------------------------------------------------------------------ */
/* Async client helpers                                                       */

void
cres_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    cres *r = arg;

    r->st = st;
    r->status = resp->status;
    snprintf(r->message, sizeof(r->message), "%s", resp->message ? resp->message : "");
    if (st == OM_OK && resp->body_case == OBJMETA__RESPONSE__BODY_PING) {
        size_t n = resp->ping->payload.len < 63 ? resp->ping->payload.len : 63;
        memcpy(r->payload, resp->ping->payload.data, n);
        r->payload[n] = '\0';
    }
    r->seq = (*r->order)++;
    (*r->done)++;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A base with a 20 ms tick so bounded waits can check their deadline. */
struct event_base *
client_base(struct event **tick)
{
    struct event_base *b = event_base_new();
    struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};

    *tick = event_new(b, -1, EV_PERSIST, tick_cb, NULL);
    event_add(*tick, &tv);
    return b;
}

bool
run_until(struct event_base *b, const int *done, int want, uint64_t timeout_ms)
{
    uint64_t deadline = tu_now_ms() + timeout_ms;
    while (*done < want && tu_now_ms() < deadline)
        event_base_loop(b, EVLOOP_ONCE);
    return *done >= want;
}

void
async_call(rpc_client *c, const char *payload, uint32_t timeout_ms, cres *r)
{
    Objmeta__Request req;
    Objmeta__PingRequest p;

    ping_req(&req, &p, payload);
    ck_assert_int_eq(rpc_client_call(c, &req, timeout_ms, cres_cb, r), OM_OK);
}
