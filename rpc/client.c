/*
 * rpc/client.c -- the rpc client: pipelined asynchronous calls over one
 * connection on the caller's event_base, and the blocking wrapper
 * (rpc_sync_client) that runs the same client on a private base.
 *
 * Calls live in a hash table keyed by id (ids are sequential per client, so
 * `id & mask` spreads them perfectly). A call is packed into the
 * bufferevent's output as soon as it is made -- also while the connection is
 * still being set up, libevent sends it once connected. Responses are
 * matched by id in any order; a response to an unknown id (the call timed
 * out) is dropped.
 *
 * Timeouts: calls with a timeout sit in a list ordered by deadline (calls
 * made with the same timeout append at the tail in O(1)), and one timer per
 * client is armed for the earliest deadline -- no timer is created, added or
 * deleted per call. A call that completes leaves the list; the timer is not
 * moved, and when it fires it fails what is due and re-arms for the new head.
 * Writes: once connected, the bufferevent's EV_WRITE is off; a call marks
 * the client and flush_ev (activated once per loop iteration) writes every
 * request of the iteration with one writev straight to the socket, instead
 * of registering for EPOLLOUT and writing on the next iteration. When the
 * socket does not take it all, EV_WRITE goes on until the output is empty.
 * Over TLS the same, rpc_tls_flush encrypting the iteration's requests first.
 * Reads: once connected, the socket bufferevent reads through
 * rpc_bev_read_direct (util.c), without libevent's FIONREAD before each read.
 * Responses are unpacked into a per-client scratch allocator (rpc_int.h),
 * released after the callback returns, except for the blocking wrapper, which
 * keeps the response. The hot Requests are packed and the hot Responses
 * decoded by hand (fastpack_client.c, FRAMING.md), protobuf-c doing the rest; call
 * records are recycled through a per-client pool.
 *
 * Connection states: IDLE (no socket; the next call connects), CONNECTING,
 * CONNECTED, and FAILING (a failure detected inside rpc_client_call is
 * reported from an event, so callbacks never run inside rpc_client_call).
 * When the connection fails every pending call completes with UNAVAILABLE
 * (or CORRUPTION if the server sent garbage); the table is detached before
 * the callbacks run, so a callback may start new calls, which reconnect.
 */
#define OM_LOG_MODULE "rpc"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rpc/frame.h"
#include "rpc/rpc_int.h"
#include "util/clock.h"
#include "util/log.h"

typedef struct rpc_call rpc_call;

struct rpc_call {
    uint64_t id;
    rpc_client_cb cb;
    void *arg;
    uint32_t timeout_ms;
    uint64_t deadline_ms; /* monotonic; meaningful when in_dl */
    bool in_dl;           /* in the client's deadline list */
    rpc_call *dprev, *dnext;
    rpc_client *c;
    rpc_call *hnext;
};

typedef enum client_state {
    CLIENT_IDLE,
    CLIENT_CONNECTING,
    CLIENT_CONNECTED,
    CLIENT_FAILING,
} client_state;

struct rpc_client {
    struct event_base *base;
    char *addr;
    rpc_client_opts o;
    struct bufferevent *bev;
    client_state state;
    struct event *connect_timer;
    struct event *fail_ev;
    om_status fail_st;
    char fail_msg[256];
    uint64_t next_id;
    rpc_call **tab;
    size_t mask; /* table size - 1 */
    size_t npending;
    uint64_t answered; /* calls completed by a response from the server (any connection) */
    /* The blocking wrapper takes ownership of the response in its callback. */
    Objmeta__Response **steal_into;
    /* Last connection failure (for rpc_sync_client_open and the backoff). */
    om_status last_st;
    char last_msg[256];
    uint64_t connect_failed_ms; /* monotonic time of the last failed connect; 0 = none */
    bool closing;               /* rpc_client_free is failing the pending calls */
    /* Call deadlines: ordered list, one timer armed at timer_at_ms (0 = not armed). */
    rpc_call *dhead, *dtail;
    struct event *call_timer;
    uint64_t timer_at_ms;
    struct event *flush_ev; /* writes the output directly (see the top) */
    bool flush_pending;     /* flush_ev is active */
    bool wr_direct;         /* connected, EV_WRITE off: flush_ev writes */
    rpc_scratch scratch;    /* responses are unpacked here */
    /* Finished calls kept for the next ones (linked through hnext): a
     * calloc/free pair per call saved. */
    rpc_call *call_pool;
    unsigned n_call_pool;
    char host[256]; /* of addr: the name the server's certificate must carry (TLS) */
    char *token;    /* o.token copied, or NULL: sent first on every connection */
};

/* Most finished calls a client keeps for reuse (about 80 bytes each). */
#define RPC_CALL_POOL 4096u

void
rpc_client_opts_init(rpc_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->max_frame = RPC_DEFAULT_MAX_FRAME;
    o->connect_timeout_ms = 3000;
    o->default_timeout_ms = 30000;
    o->reconnect_backoff_ms = 0;
}

void
rpc_response_free(Objmeta__Response *resp)
{
    if (resp != NULL)
        objmeta__response__free_unpacked(resp, NULL);
}

/* ------------------------------------------------------------------------ */
/* Call table                                                                 */

static om_status
calls_grow(rpc_client *c)
{
    size_t ncap = (c->mask + 1) * 2;
    rpc_call **nt = calloc(ncap, sizeof(*nt));

    if (nt == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i <= c->mask; i++) {
        rpc_call *k = c->tab[i];
        while (k != NULL) {
            rpc_call *next = k->hnext;
            size_t b = (size_t)k->id & (ncap - 1);
            k->hnext = nt[b];
            nt[b] = k;
            k = next;
        }
    }
    free(c->tab);
    c->tab = nt;
    c->mask = ncap - 1;
    return OM_OK;
}

static void
calls_put(rpc_client *c, rpc_call *k)
{
    size_t b = (size_t)k->id & c->mask;

    k->hnext = c->tab[b];
    c->tab[b] = k;
    c->npending++;
}

/* Arm the client's call timer for `at_ms` (monotonic). */
static void
dl_arm(rpc_client *c, uint64_t at_ms)
{
    uint64_t now = om_clock_mono_ms();
    uint64_t d = at_ms > now ? at_ms - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(d / 1000), .tv_usec = (suseconds_t)(d % 1000) * 1000};

    if (event_add(c->call_timer, &tv) == 0)
        c->timer_at_ms = at_ms;
}

/* Enter a call into the deadline list (calls without a timeout stay out). */
static void
dl_insert(rpc_client *c, rpc_call *k)
{
    rpc_call *after = c->dtail;

    if (k->timeout_ms == 0)
        return;
    k->deadline_ms = om_clock_mono_ms() + k->timeout_ms;
    while (after != NULL && after->deadline_ms > k->deadline_ms)
        after = after->dprev;
    k->dprev = after;
    k->dnext = after != NULL ? after->dnext : c->dhead;
    if (k->dnext != NULL)
        k->dnext->dprev = k;
    else
        c->dtail = k;
    if (after != NULL)
        after->dnext = k;
    else
        c->dhead = k;
    k->in_dl = true;
    if (c->timer_at_ms == 0 || k->deadline_ms < c->timer_at_ms)
        dl_arm(c, k->deadline_ms);
}

static void
dl_remove(rpc_client *c, rpc_call *k)
{
    if (!k->in_dl)
        return;
    if (k->dprev != NULL)
        k->dprev->dnext = k->dnext;
    else
        c->dhead = k->dnext;
    if (k->dnext != NULL)
        k->dnext->dprev = k->dprev;
    else
        c->dtail = k->dprev;
    k->dprev = k->dnext = NULL;
    k->in_dl = false;
}

static rpc_call *
calls_take(rpc_client *c, uint64_t id)
{
    rpc_call **pp = &c->tab[(size_t)id & c->mask];

    for (; *pp != NULL; pp = &(*pp)->hnext) {
        if ((*pp)->id == id) {
            rpc_call *k = *pp;
            *pp = k->hnext;
            k->hnext = NULL;
            c->npending--;
            dl_remove(c, k);
            return k;
        }
    }
    return NULL;
}

/* Detach every pending call into a list (linked through hnext). */
static rpc_call *
calls_take_all(rpc_client *c)
{
    rpc_call *list = NULL;

    for (size_t i = 0; i <= c->mask; i++) {
        while (c->tab[i] != NULL) {
            rpc_call *k = c->tab[i];
            c->tab[i] = k->hnext;
            k->hnext = list;
            k->in_dl = false;
            k->dprev = k->dnext = NULL;
            list = k;
        }
    }
    c->npending = 0;
    c->dhead = c->dtail = NULL;
    return list;
}

static void
call_free(rpc_call *k)
{
    rpc_client *c = k->c;

    if (c->n_call_pool < RPC_CALL_POOL) {
        k->hnext = c->call_pool;
        c->call_pool = k;
        c->n_call_pool++;
        return;
    }
    free(k);
}

/* A zeroed call: from the client's pool, else the heap. */
static rpc_call *
call_alloc(rpc_client *c)
{
    rpc_call *k = c->call_pool;

    if (k == NULL)
        return calloc(1, sizeof(*k));
    c->call_pool = k->hnext;
    c->n_call_pool--;
    memset(k, 0, sizeof(*k));
    return k;
}

/* Complete a call with a transport failure and a synthetic response. */
static void
call_fail(rpc_call *k, om_status st, const char *msg)
{
    Objmeta__Response r = OBJMETA__RESPONSE__INIT;

    r.id = k->id;
    r.status = rpc_status_to_proto(st);
    r.message = (char *)msg;
    k->cb(k->arg, st, &r);
    call_free(k);
}

/* ------------------------------------------------------------------------ */
/* Connection                                                                 */

static void
client_close_bev(rpc_client *c)
{
    if (c->bev != NULL) {
        /* libevent closes the fd when the bufferevent is finalized, which is
         * deferred to the next loop iteration; shut the socket now so the
         * server sees the close even if the caller's loop stops here. */
        evutil_socket_t fd = bufferevent_getfd(rpc_tls_socket_bev(c->bev));
        if (fd >= 0)
            (void)shutdown(fd, SHUT_RDWR);
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->wr_direct = false;
    if (c->connect_timer != NULL)
        event_del(c->connect_timer);
}

/*
 * client_fail_all -- drop the connection and complete every pending call
 * with st. The table is detached first so callbacks may call again.
 */
static void
client_fail_all(rpc_client *c, om_status st, const char *msg)
{
    char m[256];

    snprintf(m, sizeof(m), "%s", msg); /* msg may point into c */
    om_log(OM_LOG_DEBUG, "rpc client failure addr=%s pending=%zu reason=\"%s\"", c->addr,
           c->npending, m);
    client_close_bev(c);
    c->state = CLIENT_IDLE;
    rpc_call *list = calls_take_all(c);
    while (list != NULL) {
        rpc_call *next = list->hnext;
        call_fail(list, st, m);
        list = next;
    }
}

static void client_record_failure(rpc_client *c, om_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
client_record_failure(rpc_client *c, om_status st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->last_msg, sizeof(c->last_msg), fmt, ap);
    va_end(ap);
    c->last_st = st;
}

/* The encoded response of the callback running on this thread (rpc_client_response_bytes). */
static _Thread_local om_slice cb_bytes;

om_slice
rpc_client_response_bytes(void)
{
    return cb_bytes;
}

/* True if every byte is printable ASCII. */
static bool
rpc_client_is_text(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}

static void
client_readcb(struct bufferevent *bev, void *arg)
{
    rpc_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (c->bev == bev) {
        uint32_t len = 0;
        om_slice p;
        char msg[256];
        om_status st = rpc_frame_evb_peek(in, c->o.max_frame, &len);
        if (st == OM_E_NOTFOUND)
            return;
        if (st != OM_OK) {
            /* Four printable bytes read as a length (over 500 MB, never a
             * real frame): a text service answered, most often HTTP (a
             * metrics port, a web proxy). Say so rather than quote the size. */
            uint8_t h[4];
            if (len >= 0x20202020u && evbuffer_copyout(in, h, 4) == 4 && rpc_client_is_text(h, 4))
                snprintf(msg, sizeof(msg),
                         "%s answered in %s (\"%.4s...\"), not the objmeta protocol", c->addr,
                         memcmp(h, "HTTP", 4) == 0 ? "HTTP" : "text", (const char *)h);
            else
                snprintf(msg, sizeof(msg),
                         "response frame of %u bytes from %s exceeds max_frame %u", len, c->addr,
                         c->o.max_frame);
            client_record_failure(c, OM_E_CORRUPT, "%s", msg);
            client_fail_all(c, OM_E_CORRUPT, msg);
            return;
        }
        if (rpc_frame_evb_pullup(in, len, &p) != OM_OK) {
            client_fail_all(c, OM_E_UNAVAILABLE, "out of memory reading a response");
            return;
        }
        /* The blocking wrapper keeps the response: heap-allocate it then. */
        ProtobufCAllocator *pa = c->steal_into != NULL ? NULL : rpc_scratch_take(&c->scratch);
        Objmeta__Response *resp = NULL;
        bool fast = false;
        /* the hot responses without protobuf-c, into the scratch (frame.h) */
        if (pa != NULL)
            resp = rpc_fastunpack_response(pa, p.p, p.n, &fast);
        if (!fast)
            resp = objmeta__response__unpack(pa, p.n, p.p);
        if (resp == NULL) {
            rpc_frame_evb_drain(in, len);
            rpc_scratch_done(&c->scratch, pa, NULL);
            snprintf(msg, sizeof(msg), "undecodable response (%u bytes) from %s", len, c->addr);
            client_record_failure(c, OM_E_CORRUPT, "%s", msg);
            client_fail_all(c, OM_E_CORRUPT, msg);
            return;
        }
        rpc_call *k = resp->id != 0 ? calls_take(c, resp->id) : NULL;
        if (k != NULL) {
            c->answered++;
            /* The frame stays in the input (p valid) until the callback returns,
             * for rpc_client_response_bytes. */
            Objmeta__Response **steal = c->steal_into;
            om_slice outer = cb_bytes;
            cb_bytes = p;
            k->cb(k->arg, OM_OK, resp);
            cb_bytes = outer;
            call_free(k);
            if (c->bev == bev)
                rpc_frame_evb_drain(in, len); /* else the callback closed the connection */
            if (pa == NULL && steal != NULL && *steal == resp)
                continue; /* the blocking wrapper kept it */
            rpc_scratch_done(&c->scratch, pa, &resp->base);
            continue;
        }
        rpc_frame_evb_drain(in, len);
        if (resp->id == 0) {
            /* About the connection: the server closes it after this. */
            om_status rst = rpc_response_status(resp);
            if (rst == OM_OK)
                rst = OM_E_UNAVAILABLE;
            snprintf(msg, sizeof(msg), "%s: %s", c->addr, resp->message ? resp->message : "");
            client_record_failure(c, rst, "%s", msg);
            rpc_scratch_done(&c->scratch, pa, &resp->base);
            client_fail_all(c, rst, msg);
            return;
        }
        /* Timed out already (or a confused server): nobody waits for it. */
        rpc_scratch_done(&c->scratch, pa, &resp->base);
    }
}

static void
client_eventcb(struct bufferevent *bev, short what, void *arg)
{
    rpc_client *c = arg;
    char msg[256];

    if (bev != c->bev)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        c->state = CLIENT_CONNECTED;
        c->connect_failed_ms = 0;
        event_del(c->connect_timer);
        if (c->o.tls != NULL) { /* the calls made while connecting: rpc_tls_flush */
            c->wr_direct = true;
            if (!c->flush_pending && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
                c->flush_pending = true;
                event_active(c->flush_ev, EV_TIMEOUT, 0);
            }
        } else if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            bufferevent_disable(bev, EV_WRITE);
            c->wr_direct = true;
        } /* else libevent sends the calls made while connecting; client_writecb */
        rpc_sock_nodelay(bufferevent_getfd(rpc_tls_socket_bev(bev)));
        c->last_st = OM_OK;
        c->last_msg[0] = '\0';
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (c->state == CLIENT_CONNECTING)
        c->connect_failed_ms = om_clock_mono_ms();
    if (c->state == CLIENT_CONNECTING && c->o.tls != NULL) {
        char why[160];
        rpc_tls_bev_error(bev, why, sizeof(why));
        snprintf(msg, sizeof(msg), "TLS handshake with %s failed: %s%s", c->addr, why,
                 strstr(why, "wrong version number") || strstr(why, "packet length too long")
                     ? " (does the server speak plaintext on this port?)"
                     : "");
    } else if (c->state == CLIENT_CONNECTING)
        snprintf(msg, sizeof(msg), "connect to %s failed: %s", c->addr,
                 (what & BEV_EVENT_ERROR) && err ? strerror(err) : "connection closed");
    else if (c->o.tls != NULL && (what & BEV_EVENT_ERROR)) {
        char why[160];
        rpc_tls_bev_error(bev, why, sizeof(why));
        snprintf(msg, sizeof(msg), "TLS connection to %s failed: %s", c->addr, why);
    } else if (what & BEV_EVENT_EOF)
        snprintf(msg, sizeof(msg), "connection to %s closed by the server", c->addr);
    else
        snprintf(msg, sizeof(msg), "connection to %s failed: %s", c->addr,
                 err ? strerror(err) : "error");
    client_record_failure(c, OM_E_UNAVAILABLE, "%s", msg);
    client_fail_all(c, OM_E_UNAVAILABLE, msg);
}

/* libevent emptied the output (the write watermark is 0): write directly again. */
static void
client_writecb(struct bufferevent *bev, void *arg)
{
    rpc_client *c = arg;

    if (bev != c->bev || c->state != CLIENT_CONNECTED || c->o.tls != NULL)
        return; /* TLS: the socket's output emptied (rpc_tls_flush); nothing to switch */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        c->wr_direct = true;
    }
}

/* Write what the calls of this loop iteration queued, in one writev. */
static void
client_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_client *c = arg;

    (void)fd;
    (void)what;
    c->flush_pending = false;
    if (c->bev == NULL || !c->wr_direct)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->o.tls != NULL) {
        (void)rpc_tls_flush(c->bev); /* what the socket does not take, libevent writes */
        return;
    }
    if (evbuffer_get_length(out) == 0)
        return;
    /* A full socket or an error: the bufferevent retries when writable and
     * reports errors through client_eventcb. */
    (void)rpc_evb_write_direct(out, bufferevent_getfd(c->bev));
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(c->bev, EV_WRITE);
        c->wr_direct = false;
    }
}

static void
client_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_client *c = arg;
    char msg[256];

    (void)fd;
    (void)what;
    if (c->state != CLIENT_CONNECTING)
        return;
    snprintf(msg, sizeof(msg), "connect to %s timed out after %u ms", c->addr,
             c->o.connect_timeout_ms);
    client_record_failure(c, OM_E_TIMEOUT, "%s", msg);
    c->connect_failed_ms = om_clock_mono_ms();
    client_fail_all(c, OM_E_UNAVAILABLE, msg);
}

static void
client_fail_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_client *c = arg;
    char msg[256];

    (void)fd;
    (void)what;
    if (c->state != CLIENT_FAILING)
        return;
    snprintf(msg, sizeof(msg), "%s", c->fail_msg);
    client_fail_all(c, c->fail_st, msg);
}

/* Report a failure found inside rpc_client_call from an event instead. */
static void
client_defer_failure(rpc_client *c, om_status st, const char *msg)
{
    client_close_bev(c);
    c->state = CLIENT_FAILING;
    c->fail_st = st;
    snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
    client_record_failure(c, st, "%s", msg);
    event_active(c->fail_ev, 0, 0);
}

/* The answer to the AuthRequest that opens a connection. */
static void
client_auth_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    rpc_client *c = arg;

    if (st == OM_OK && resp->status == OBJMETA__STATUS__OK)
        return;
    /* the calls behind it are answered UNAUTHENTICATED by the server */
    om_log(OM_LOG_WARN, "token refused addr=%s reason=\"%s\"", c->addr, resp->message);
    c->last_st = OM_E_UNAUTHENTICATED;
    snprintf(c->last_msg, sizeof(c->last_msg), "token refused by %s: %s", c->addr, resp->message);
}

/* Queue the AuthRequest ahead of every other call of a new connection. */
static void
client_send_auth(rpc_client *c)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AuthRequest a = OBJMETA__AUTH_REQUEST__INIT;

    a.token = c->token;
    req.body_case = OBJMETA__REQUEST__BODY_AUTH;
    req.auth = &a;
    if (rpc_client_call(c, &req, 0, client_auth_cb, c) != OM_OK)
        om_log(OM_LOG_WARN, "cannot queue the token addr=%s", c->addr);
}

static void
client_start_connect(rpc_client *c)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char msg[256];

    if (c->state != CLIENT_IDLE)
        return;
    if (c->o.reconnect_backoff_ms > 0 && c->connect_failed_ms != 0 &&
        om_clock_mono_ms() - c->connect_failed_ms < c->o.reconnect_backoff_ms) {
        /* Fail fast: the last attempt failed moments ago. */
        snprintf(msg, sizeof(msg), "%s", c->last_msg);
        client_defer_failure(c, OM_E_UNAVAILABLE, msg);
        return;
    }
    if (rpc_addr_resolve(c->addr, false, &ss, &sslen) != OM_OK) {
        c->connect_failed_ms = om_clock_mono_ms();
        snprintf(msg, sizeof(msg), "cannot resolve address %s", c->addr);
        client_defer_failure(c, OM_E_UNAVAILABLE, msg);
        return;
    }
    c->bev = c->o.tls != NULL ? rpc_tls_bev_connect(c->o.tls, c->base, c->host)
                              : bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        client_defer_failure(c, OM_E_UNAVAILABLE, "out of memory creating a connection");
        return;
    }
    bufferevent_set_max_single_read(c->bev, RPC_MAX_SINGLE_READ); /* see rpc_conn_new */
    bufferevent_setcb(c->bev, client_readcb, client_writecb, client_eventcb, c);
    bufferevent_enable(c->bev, c->o.tls != NULL ? EV_READ : EV_READ | EV_WRITE);
    c->state = CLIENT_CONNECTING;
    if (bufferevent_socket_connect(rpc_tls_socket_bev(c->bev), (struct sockaddr *)&ss,
                                   (int)sslen) != 0) {
        int err = errno;
        c->connect_failed_ms = om_clock_mono_ms();
        snprintf(msg, sizeof(msg), "connect to %s failed: %s", c->addr,
                 err ? strerror(err) : "error");
        client_defer_failure(c, OM_E_UNAVAILABLE, msg);
        return;
    }
    rpc_bev_read_direct(rpc_tls_socket_bev(c->bev)); /* its fd is set now */
    if (c->o.connect_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = c->o.connect_timeout_ms / 1000,
                             .tv_usec = (c->o.connect_timeout_ms % 1000) * 1000};
        event_add(c->connect_timer, &tv);
    }
    if (c->token != NULL)
        client_send_auth(c);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                 */

static void call_timer_cb(evutil_socket_t fd, short what, void *arg);

om_status
rpc_client_new(struct event_base *base, const char *addr, const rpc_client_opts *opts,
               rpc_client **out)
{
    char host[256];
    int port;
    rpc_client *c;

    if (base == NULL || addr == NULL)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(rpc_addr_split(addr, host, sizeof(host), &port));
    if (opts != NULL && opts->token != NULL && strlen(opts->token) > 4096)
        return OM_ERR(OM_E_INVALID);
    rpc_ignore_sigpipe();
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->base = base;
    if (opts != NULL)
        c->o = *opts;
    else
        rpc_client_opts_init(&c->o);
    if (c->o.max_frame == 0)
        c->o.max_frame = RPC_DEFAULT_MAX_FRAME;
    c->addr = strdup(addr);
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->token = c->o.token != NULL ? strdup(c->o.token) : NULL;
    c->o.token = NULL; /* the copy above is the client's */
    c->mask = 63;
    c->tab = calloc(c->mask + 1, sizeof(*c->tab));
    c->connect_timer = evtimer_new(base, client_connect_timeout_cb, c);
    c->fail_ev = event_new(base, -1, 0, client_fail_ev_cb, c);
    c->call_timer = evtimer_new(base, call_timer_cb, c);
    c->flush_ev = event_new(base, -1, 0, client_flush_cb, c);
    rpc_scratch_init(&c->scratch);
    if (c->addr == NULL || c->tab == NULL || c->connect_timer == NULL || c->fail_ev == NULL ||
        (opts != NULL && opts->token != NULL && c->token == NULL) || c->call_timer == NULL ||
        c->flush_ev == NULL) {
        rpc_client_free(c);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = c;
    return OM_OK;
}

void
rpc_client_free(rpc_client *c)
{
    if (c == NULL)
        return;
    c->closing = true; /* callbacks run below may not start new calls */
    if (c->tab != NULL)
        client_fail_all(c, OM_E_UNAVAILABLE, "client closed");
    client_close_bev(c);
    if (c->connect_timer != NULL)
        event_free(c->connect_timer);
    if (c->fail_ev != NULL)
        event_free(c->fail_ev);
    if (c->call_timer != NULL)
        event_free(c->call_timer);
    if (c->flush_ev != NULL)
        event_free(c->flush_ev);
    rpc_scratch_fini(&c->scratch);
    while (c->call_pool != NULL) {
        rpc_call *k = c->call_pool;
        c->call_pool = k->hnext;
        free(k);
    }
    free(c->tab);
    free(c->addr);
    free(c->token);
    free(c);
}

/* Fail every call whose deadline has passed, then re-arm for the next one. */
static void
call_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_client *c = arg;
    uint64_t now = om_clock_mono_ms();
    char msg[256];

    (void)fd;
    (void)what;
    c->timer_at_ms = 0;
    while (c->dhead != NULL && c->dhead->deadline_ms <= now) {
        rpc_call *k = calls_take(c, c->dhead->id);
        if (k == NULL)
            break; /* cannot happen: listed calls are in the table */
        snprintf(msg, sizeof(msg), "no response from %s within %u ms (request %llu)", c->addr,
                 k->timeout_ms, (unsigned long long)k->id);
        call_fail(k, OM_E_TIMEOUT, msg); /* may make new calls: they re-arm */
    }
    if (c->dhead != NULL && (c->timer_at_ms == 0 || c->dhead->deadline_ms < c->timer_at_ms))
        dl_arm(c, c->dhead->deadline_ms);
}

om_status
rpc_client_call(rpc_client *c, const Objmeta__Request *req, uint32_t timeout_ms, rpc_client_cb cb,
                void *arg)
{
    Objmeta__Request copy;
    rpc_call *k;

    if (req == NULL || cb == NULL || req->body_case == OBJMETA__REQUEST__BODY__NOT_SET)
        return OM_ERR(OM_E_INVALID);
    if (c->closing)
        return OM_ERR(OM_E_UNAVAILABLE);
    /* Connected (or connecting): the frame encoder below checks the size. */
    if ((c->bev == NULL || c->state == CLIENT_IDLE) &&
        rpc_request_packed_size(req) > c->o.max_frame)
        return OM_ERR(OM_E_INVALID);
    if (c->npending >= c->mask + 1)
        OM_TRY(calls_grow(c));
    k = call_alloc(c);
    if (k == NULL)
        return OM_ERR(OM_E_NOMEM);
    k->c = c;
    k->cb = cb;
    k->arg = arg;
    k->timeout_ms = timeout_ms ? timeout_ms : c->o.default_timeout_ms;
    k->id = ++c->next_id;
    if (c->state == CLIENT_IDLE)
        client_start_connect(c);
    if (c->bev != NULL) {
        copy = *req;
        copy.id = k->id;
        om_status st =
            rpc_frame_encode_evb(bufferevent_get_output(c->bev), &copy.base, c->o.max_frame, NULL);
        if (st != OM_OK) {
            call_free(k);
            return st;
        }
        if (c->wr_direct && !c->flush_pending) {
            c->flush_pending = true;
            event_active(c->flush_ev, EV_TIMEOUT, 0);
        }
    }
    calls_put(c, k);
    dl_insert(c, k);
    return OM_OK;
}

void
rpc_client_connect(rpc_client *c)
{
    if (c->state == CLIENT_IDLE)
        client_start_connect(c);
}

bool
rpc_client_is_connected(const rpc_client *c)
{
    return c->state == CLIENT_CONNECTED;
}

size_t
rpc_client_pending(const rpc_client *c)
{
    return c->npending;
}

uint64_t
rpc_client_answered(const rpc_client *c)
{
    return c->answered;
}

bool
rpc_client_batching(const rpc_client *c)
{
    return c->flush_pending;
}

const char *
rpc_client_addr(const rpc_client *c)
{
    return c->addr;
}

/* ------------------------------------------------------------------------ */
/* Blocking wrapper                                                           */

struct rpc_sync_client {
    struct event_base *base;
    rpc_client *c;
    char err[256];
};

typedef struct sync_wait {
    bool done;
    om_status st;
    Objmeta__Response *resp;
    rpc_sync_client *sc;
} sync_wait;

static void
sync_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    sync_wait *w = arg;

    w->done = true;
    w->st = st;
    if (st == OM_OK) {
        /* Keep the decoded response: client_readcb sees steal_into and does not free it. */
        w->resp = (Objmeta__Response *)resp;
        *w->sc->c->steal_into = w->resp;
    } else {
        snprintf(w->sc->err, sizeof(w->sc->err), "%s", resp->message);
    }
}

om_status
rpc_sync_client_open(const char *addr, uint32_t timeout_ms, rpc_sync_client **out)
{
    return rpc_sync_client_open_tls(addr, timeout_ms, NULL, out);
}

om_status
rpc_sync_client_open_tls(const char *addr, uint32_t timeout_ms, rpc_tls *tls, rpc_sync_client **out)
{
    rpc_client_opts o;

    rpc_client_opts_init(&o);
    o.connect_timeout_ms = timeout_ms;
    o.tls = tls;
    return rpc_sync_client_open_opts(addr, &o, out, NULL, 0);
}

om_status
rpc_sync_client_open_opts(const char *addr, const rpc_client_opts *opts, rpc_sync_client **out,
                          char *err, size_t errlen)
{
    rpc_client_opts o = *opts;
    rpc_sync_client *sc = calloc(1, sizeof(*sc));
    om_status st;

    if (sc == NULL)
        return OM_ERR(OM_E_NOMEM);
    sc->base = event_base_new();
    if (sc->base == NULL) {
        free(sc);
        return OM_ERR(OM_E_NOMEM);
    }
    if (o.connect_timeout_ms == 0)
        o.connect_timeout_ms = 3000;
    st = rpc_client_new(sc->base, addr, &o, &sc->c);
    if (st != OM_OK) {
        event_base_free(sc->base);
        free(sc);
        return st;
    }
    rpc_client_connect(sc->c);
    while (sc->c->state == CLIENT_CONNECTING || sc->c->state == CLIENT_FAILING)
        event_base_loop(sc->base, EVLOOP_ONCE);
    if (sc->c->state != CLIENT_CONNECTED) {
        st = sc->c->last_st != OM_OK ? sc->c->last_st : OM_E_UNAVAILABLE;
        om_log(OM_LOG_DEBUG, "rpc connect failed addr=%s reason=\"%s\"", addr, sc->c->last_msg);
        om_errf(err, errlen, "%s", sc->c->last_msg);
        rpc_sync_client_close(sc);
        return st;
    }
    *out = sc;
    return OM_OK;
}

om_status
rpc_sync_client_call(rpc_sync_client *sc, const Objmeta__Request *req, uint32_t timeout_ms,
                     Objmeta__Response **resp)
{
    sync_wait w = {.done = false, .st = OM_OK, .resp = NULL, .sc = sc};
    Objmeta__Response *kept = NULL;
    om_status st;

    sc->err[0] = '\0';
    /* Notice a close that happened while nobody ran the loop (idle timeout,
     * server restart), so this call reconnects instead of failing. */
    event_base_loop(sc->base, EVLOOP_NONBLOCK);
    st = rpc_client_call(sc->c, req, timeout_ms, sync_cb, &w);
    if (st != OM_OK) {
        snprintf(sc->err, sizeof(sc->err), "request rejected locally: %s", om_status_str(st));
        return st;
    }
    sc->c->steal_into = &kept;
    while (!w.done)
        event_base_loop(sc->base, EVLOOP_ONCE);
    sc->c->steal_into = NULL;
    if (w.st != OM_OK)
        return w.st;
    *resp = w.resp;
    return OM_OK;
}

const char *
rpc_sync_client_last_error(const rpc_sync_client *sc)
{
    return sc->err;
}

void
rpc_sync_client_close(rpc_sync_client *sc)
{
    if (sc == NULL)
        return;
    rpc_client_free(sc->c);
    event_base_free(sc->base);
    free(sc);
}
