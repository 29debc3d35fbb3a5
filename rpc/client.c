/*
 * rpc/client.c -- the rpc client: pipelined asynchronous calls over one
 * connection on the caller's event_base, and the blocking wrapper
 * (rpc_sync_client) that runs the same client on a private base.
 *
 * Calls live in a hash table keyed by id (ids are sequential per client, so
 * `id & mask` spreads them perfectly). A call is packed into the
 * bufferevent's output as soon as it is made -- also while the connection is
 * still being set up, libevent sends it once connected -- and has its own
 * timer. Responses are matched by id in any order; a response to an unknown
 * id (the call timed out) is dropped.
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
    struct event *timer;
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
    /* The blocking wrapper takes ownership of the response in its callback. */
    Objmeta__Response **steal_into;
    /* Last connection failure (for rpc_sync_client_open and the backoff). */
    om_status last_st;
    char last_msg[256];
    uint64_t connect_failed_ms; /* monotonic time of the last failed connect; 0 = none */
    bool closing;               /* rpc_client_free is failing the pending calls */
};

void
rpc_client_opts_init(rpc_client_opts *o)
{
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
            list = k;
        }
    }
    c->npending = 0;
    return list;
}

static void
call_free(rpc_call *k)
{
    if (k->timer != NULL)
        event_free(k->timer);
    free(k);
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
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd >= 0)
            (void)shutdown(fd, SHUT_RDWR);
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
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
            snprintf(msg, sizeof(msg), "response frame of %u bytes from %s exceeds max_frame %u",
                     len, c->addr, c->o.max_frame);
            client_record_failure(c, OM_E_CORRUPT, "%s", msg);
            client_fail_all(c, OM_E_CORRUPT, msg);
            return;
        }
        if (rpc_frame_evb_pullup(in, len, &p) != OM_OK) {
            client_fail_all(c, OM_E_UNAVAILABLE, "out of memory reading a response");
            return;
        }
        Objmeta__Response *resp = objmeta__response__unpack(NULL, p.n, p.p);
        rpc_frame_evb_drain(in, len);
        if (resp == NULL) {
            snprintf(msg, sizeof(msg), "undecodable response (%u bytes) from %s", len, c->addr);
            client_record_failure(c, OM_E_CORRUPT, "%s", msg);
            client_fail_all(c, OM_E_CORRUPT, msg);
            return;
        }
        if (resp->id == 0) {
            /* About the connection: the server closes it after this. */
            om_status rst = rpc_response_status(resp);
            if (rst == OM_OK)
                rst = OM_E_UNAVAILABLE;
            snprintf(msg, sizeof(msg), "%s: %s", c->addr, resp->message ? resp->message : "");
            client_record_failure(c, rst, "%s", msg);
            objmeta__response__free_unpacked(resp, NULL);
            client_fail_all(c, rst, msg);
            return;
        }
        rpc_call *k = calls_take(c, resp->id);
        if (k == NULL) {
            /* Timed out already (or a confused server): nobody waits for it. */
            objmeta__response__free_unpacked(resp, NULL);
            continue;
        }
        Objmeta__Response **steal = c->steal_into;
        k->cb(k->arg, OM_OK, resp);
        call_free(k);
        if (steal != NULL && *steal == resp)
            continue; /* the blocking wrapper kept it */
        objmeta__response__free_unpacked(resp, NULL);
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
        rpc_sock_nodelay(bufferevent_getfd(bev));
        c->last_st = OM_OK;
        c->last_msg[0] = '\0';
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (c->state == CLIENT_CONNECTING)
        c->connect_failed_ms = om_clock_mono_ms();
    if (c->state == CLIENT_CONNECTING)
        snprintf(msg, sizeof(msg), "connect to %s failed: %s", c->addr,
                 (what & BEV_EVENT_ERROR) && err ? strerror(err) : "connection closed");
    else if (what & BEV_EVENT_EOF)
        snprintf(msg, sizeof(msg), "connection to %s closed by the server", c->addr);
    else
        snprintf(msg, sizeof(msg), "connection to %s failed: %s", c->addr,
                 err ? strerror(err) : "error");
    client_record_failure(c, OM_E_UNAVAILABLE, "%s", msg);
    client_fail_all(c, OM_E_UNAVAILABLE, msg);
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
    c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        client_defer_failure(c, OM_E_UNAVAILABLE, "out of memory creating a connection");
        return;
    }
    bufferevent_setcb(c->bev, client_readcb, NULL, client_eventcb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CLIENT_CONNECTING;
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) != 0) {
        int err = errno;
        c->connect_failed_ms = om_clock_mono_ms();
        snprintf(msg, sizeof(msg), "connect to %s failed: %s", c->addr,
                 err ? strerror(err) : "error");
        client_defer_failure(c, OM_E_UNAVAILABLE, msg);
        return;
    }
    if (c->o.connect_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = c->o.connect_timeout_ms / 1000,
                             .tv_usec = (c->o.connect_timeout_ms % 1000) * 1000};
        event_add(c->connect_timer, &tv);
    }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                 */

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
    c->mask = 63;
    c->tab = calloc(c->mask + 1, sizeof(*c->tab));
    c->connect_timer = evtimer_new(base, client_connect_timeout_cb, c);
    c->fail_ev = event_new(base, -1, 0, client_fail_ev_cb, c);
    if (c->addr == NULL || c->tab == NULL || c->connect_timer == NULL || c->fail_ev == NULL) {
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
    free(c->tab);
    free(c->addr);
    free(c);
}

static void
call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_call *k = arg;
    rpc_client *c = k->c;
    char msg[256];

    (void)fd;
    (void)what;
    k = calls_take(c, k->id);
    if (k == NULL)
        return;
    snprintf(msg, sizeof(msg), "no response from %s within %u ms (request %llu)", c->addr,
             k->timeout_ms, (unsigned long long)k->id);
    call_fail(k, OM_E_TIMEOUT, msg);
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
    if (protobuf_c_message_get_packed_size(&req->base) > c->o.max_frame)
        return OM_ERR(OM_E_INVALID);
    if (c->npending >= c->mask + 1)
        OM_TRY(calls_grow(c));
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return OM_ERR(OM_E_NOMEM);
    k->timer = evtimer_new(c->base, call_timeout_cb, k);
    if (k->timer == NULL) {
        free(k);
        return OM_ERR(OM_E_NOMEM);
    }
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
    }
    if (k->timeout_ms > 0) {
        struct timeval tv = {.tv_sec = k->timeout_ms / 1000,
                             .tv_usec = (k->timeout_ms % 1000) * 1000};
        event_add(k->timer, &tv);
    }
    calls_put(c, k);
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
    rpc_client_opts o;
    rpc_sync_client *sc = calloc(1, sizeof(*sc));
    om_status st;

    if (sc == NULL)
        return OM_ERR(OM_E_NOMEM);
    sc->base = event_base_new();
    if (sc->base == NULL) {
        free(sc);
        return OM_ERR(OM_E_NOMEM);
    }
    rpc_client_opts_init(&o);
    o.connect_timeout_ms = timeout_ms ? timeout_ms : 3000;
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
