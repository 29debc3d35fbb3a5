/*
 * rpc/conn.c -- one server connection: reading frames, dispatching requests
 * to the handler, writing responses, flow control, and closing. How an
 * answer gets back to the connection (rpc_reply, from any thread) is
 * rpc/reply.c's.
 *
 * A connection moves through these states (rpc_int.h: conn_state):
 *
 *   OPEN      read frames, dispatch each request to the handler. Reading
 *             pauses (EV_READ off, so TCP pushes back on the peer) while
 *             max_inflight requests are unanswered or while the output holds
 *             more than out_high_water bytes (until it drains to
 *             out_low_water). After the peer half-closes (EOF), frames still
 *             buffered are dispatched and the connection closes once every
 *             answer is flushed.
 *   DRAINING  graceful shutdown: no more frames are dispatched; close once
 *             every in-flight request is answered and the output flushed.
 *   FLUSHING  the stream broke (oversize frame, undecodable message) or the
 *             connection was over the limit: one id-0 error response is
 *             going out; in-flight requests are orphaned.
 *   LINGER    that response is flushed; the write side is shut (FIN) and
 *             input is read and discarded until the peer closes, so the peer
 *             reads the error instead of a reset. Bounded by CONN_LINGER_MS.
 *
 * The only transitions (conn_enter checks them): a new connection enters
 * OPEN once; OPEN -> DRAINING (rpc_conn_drain), OPEN -> FLUSHING
 * (conn_fatal), FLUSHING -> LINGER. Nothing leaves DRAINING or LINGER but
 * the close, so no path leads back to dispatching.
 *
 * Frees happen only where no caller holds the connection: a free requested
 * while conn_process is on the stack (from a handler that answered
 * synchronously, say) is deferred until it unwinds.
 *
 * Read-ahead hints: with a prefetch function set (rpc_server_set_prefetch),
 * conn_process first hands it the addresses of the keyed reads among the
 * next frames (conn_hint_reads, up to RPC_PREFETCH_MAX frames, read in place
 * without decoding), then every RPC_PREFETCH_MAX dispatched frames again, so
 * that the handler's data for a pipelined batch loads while it runs.
 *
 * Writing: the bufferevent's EV_WRITE is normally off. A connection that
 * queues output joins the server's dirty list, and flush_ev (activated once,
 * so it runs after the other callbacks of this loop iteration) writes each
 * dirty connection's output with one writev. Every response of an iteration
 * goes out in one system call per connection, without registering for
 * EPOLLOUT and waiting a loop iteration for it (two epoll_ctl calls and a
 * wake-up per write with a plain bufferevent). Only when the socket does not
 * take everything is EV_WRITE enabled; libevent then writes the rest, and
 * conn_writecb turns it off again once the output is empty. TLS connections
 * take the same path, rpc_tls_flush encrypting the output first (tls.c).
 *
 * Reading: the socket bufferevent reads through rpc_bev_read_direct (util.c),
 * one read() per readiness event, without the FIONREAD ioctl libevent makes
 * before each read (TLS: the socket bufferevent under the filter).
 */
#define OM_LOG_MODULE "rpc"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/frame.h"
#include "rpc/rpc_int.h"
#include "util/assert.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/log.h"

/* How long a broken connection may take to flush its error and linger. */
#define CONN_LINGER_MS 2000

static void conn_process(rpc_conn *c);
static void conn_destroy(rpc_conn *c);

struct evbuffer *
rpc_conn_out(rpc_conn *c)
{
    return bufferevent_get_output(c->bev);
}

/* Bytes queued and not yet sent (TLS: plaintext not encrypted, and records
 * not written; sock_out is kept because finding it costs a libevent control
 * call, and this runs several times per request). */
static size_t
conn_queued(const rpc_conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));

    return c->tls ? n + evbuffer_get_length(c->sock_out) : n;
}

/* Output was queued: write it at the end of this loop iteration. */
void
rpc_conn_mark_dirty(rpc_conn *c)
{
    rpc_server *s = c->srv;

    if (c->dirty || c->wr_enabled)
        return; /* already listed, or libevent is writing it */
    c->dirty = true;
    c->dprev = NULL;
    c->dnext = s->dirty;
    if (s->dirty != NULL)
        s->dirty->dprev = c;
    else
        event_active(s->flush_ev, EV_TIMEOUT, 0);
    s->dirty = c;
}

static void
conn_unmark_dirty(rpc_conn *c)
{
    rpc_server *s = c->srv;

    if (!c->dirty)
        return;
    if (c->dprev != NULL)
        c->dprev->dnext = c->dnext;
    else
        s->dirty = c->dnext;
    if (c->dnext != NULL)
        c->dnext->dprev = c->dprev;
    c->dprev = c->dnext = NULL;
    c->dirty = false;
}

static void
conn_set_write(rpc_conn *c, bool on)
{
    if (on == c->wr_enabled)
        return;
    if (on)
        bufferevent_enable(c->bev, EV_WRITE);
    else
        bufferevent_disable(c->bev, EV_WRITE);
    c->wr_enabled = on;
}

/* Queue a response on the connection; a response too large becomes INTERNAL. */
void
rpc_conn_queue_response(rpc_conn *c, const Objmeta__Response *resp)
{
    size_t n = 0;
    om_status st = rpc_frame_encode_evb(rpc_conn_out(c), &resp->base, c->srv->o.max_frame, &n);

    if (st == OM_E_INVALID) {
        char msg[128];
        Objmeta__Response e = OBJMETA__RESPONSE__INIT;
        snprintf(msg, sizeof(msg), "response too large (%zu bytes, max_frame %u)",
                 protobuf_c_message_get_packed_size(&resp->base), c->srv->o.max_frame);
        om_log(OM_LOG_WARN, "%s peer=%s id=%llu", msg, c->peer, (unsigned long long)resp->id);
        e.id = resp->id;
        e.status = OBJMETA__STATUS__INTERNAL;
        e.message = msg;
        st = rpc_frame_encode_evb(rpc_conn_out(c), &e.base, c->srv->o.max_frame, &n);
    }
    if (st != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot queue response peer=%s id=%llu err=%s", c->peer,
               (unsigned long long)resp->id, om_status_str(st));
        return;
    }
    c->srv->st.responses_total++;
    c->srv->st.bytes_out += n;
    rpc_conn_mark_dirty(c); /* last_active_ms is stamped when the bytes leave */
}

static void conn_send_error(rpc_conn *c, uint64_t id, om_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
conn_send_error(rpc_conn *c, uint64_t id, om_status st, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    Objmeta__Response e = OBJMETA__RESPONSE__INIT;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    e.id = id;
    e.status = rpc_status_to_proto(st);
    e.message = msg;
    rpc_conn_queue_response(c, &e);
}

/* Orphan every in-flight request: their answers will be dropped. */
static void
conn_orphan_all(rpc_conn *c)
{
    while (c->in_head != NULL)
        rpc_reply_unlink(c->in_head);
}

static void
conn_set_read(rpc_conn *c, bool on)
{
    if (on == c->read_enabled)
        return;
    if (on) {
        bufferevent_enable(c->bev, EV_READ);
        if (c->tls)
            rpc_tls_kick(c->bev); /* what arrived while paused (its callbacks are deferred) */
    } else
        bufferevent_disable(c->bev, EV_READ);
    c->read_enabled = on;
}

static void
conn_enter(rpc_conn *c, conn_state s)
{
    OM_ASSERT(s == CONN_OPEN     ? c->state_since_ms == 0 /* rpc_conn_new, once */
              : s == CONN_LINGER ? c->state == CONN_FLUSHING
                                 : c->state == CONN_OPEN); /* DRAINING, FLUSHING */
    c->state = s;
    c->state_since_ms = om_clock_mono_ms();
}

/* The stream is broken: send one id-0 error, then flush, linger and close. */
static void
conn_fatal(rpc_conn *c, om_status st, const char *msg)
{
    om_log(OM_LOG_DEBUG, "closing connection peer=%s reason=\"%s\"", c->peer, msg);
    conn_orphan_all(c);
    conn_send_error(c, 0, st, "%s", msg);
    conn_set_read(c, false);
    conn_enter(c, CONN_FLUSHING);
    rpc_conn_flow(c);
}

static void
conn_start_linger(rpc_conn *c)
{
    /* FIN after the error response; keep reading so the peer sees no reset. */
    (void)shutdown(bufferevent_getfd(rpc_tls_socket_bev(c->bev)), SHUT_WR);
    conn_enter(c, CONN_LINGER);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    conn_set_read(c, true);
}

/* True when a whole frame (or a broken header) waits in the input. */
static bool
conn_has_frame(rpc_conn *c)
{
    uint32_t len;
    om_status st = rpc_frame_evb_peek(bufferevent_get_input(c->bev), c->srv->o.max_frame, &len);
    return st != OM_E_NOTFOUND;
}

/*
 * rpc_conn_flow -- recompute whether to read, and close when the state says so.
 * Called after anything that changes in-flight count, output size or state.
 */
void
rpc_conn_flow(rpc_conn *c)
{
    const rpc_server_opts *o = &c->srv->o;

    if (c->free_deferred)
        return;
    size_t out = conn_queued(c);
    if (out > o->out_hard_limit && (c->state == CONN_OPEN || c->state == CONN_DRAINING)) {
        /* answers of requests already in flight keep coming after reading
         * paused: a peer that never reads must not hold them all (issue 13) */
        om_log(OM_LOG_WARN,
               "closing a connection that does not read its answers peer=%s "
               "queued=%zu out_hard_limit=%zu",
               c->peer, out, o->out_hard_limit);
        c->srv->st.slow_closes++;
        conn_destroy(c);
        return;
    }
    switch (c->state) {
    case CONN_OPEN: {
        if (c->out_blocked && out <= o->out_low_water)
            c->out_blocked = false;
        else if (!c->out_blocked && out > o->out_high_water)
            c->out_blocked = true;
        bool can_dispatch = !c->out_blocked && c->ninflight < o->max_inflight;
        bool want_read = can_dispatch && !c->peer_eof;
        if (!want_read && c->read_enabled && !c->peer_eof)
            c->srv->st.backpressure_pauses++;
        conn_set_read(c, want_read);
        if (can_dispatch && !c->in_dispatch && conn_has_frame(c)) {
            conn_process(c); /* frames buffered while paused */
            return;
        }
        if (c->peer_eof && c->ninflight == 0 && out == 0 && !conn_has_frame(c)) {
            size_t left = evbuffer_get_length(bufferevent_get_input(c->bev));
            if (left > 0)
                om_log(OM_LOG_DEBUG, "peer closed inside a frame peer=%s bytes=%zu", c->peer, left);
            conn_destroy(c);
        }
        break;
    }
    case CONN_DRAINING:
        conn_set_read(c, false);
        if (c->ninflight == 0 && out == 0)
            conn_destroy(c);
        break;
    case CONN_FLUSHING:
        if (out == 0)
            conn_start_linger(c);
        break;
    case CONN_LINGER:
        break;
    }
}

/*
 * Read-ahead hints (rpc_server_set_prefetch): the addresses of the keyed
 * reads among the next `max` whole frames at the front of the input, read
 * in place. Frames are followed across the input's chunks; a frame whose
 * payload is split between two chunks is stepped over without a hint.
 */
#define CONN_HINT_IOV 8

/* A position in an array of iovecs. */
typedef struct hint_pos {
    const struct evbuffer_iovec *v;
    size_t nv, vi, off;
} hint_pos;

/* Step over up to n bytes from *p, copying them to dst unless NULL; returns how many. */
static size_t
hint_take(hint_pos *p, uint8_t *dst, size_t n)
{
    size_t got = 0;

    while (got < n && p->vi < p->nv) {
        size_t left = p->v[p->vi].iov_len - p->off, k = left < n - got ? left : n - got;

        if (dst != NULL)
            memcpy(dst + got, (const uint8_t *)p->v[p->vi].iov_base + p->off, k);
        got += k;
        p->off += k;
        if (p->off == p->v[p->vi].iov_len) {
            p->vi++;
            p->off = 0;
        }
    }
    return got;
}

static void
conn_hint_reads(rpc_conn *c, size_t max)
{
    rpc_server *s = c->srv;
    struct evbuffer_iovec v[CONN_HINT_IOV];
    rpc_key_hint h[RPC_PREFETCH_MAX];
    size_t nh = 0, nframes = 0;
    int nv = evbuffer_peek(bufferevent_get_input(c->bev), -1, NULL, v, CONN_HINT_IOV);
    hint_pos pos = {.v = v, .nv = nv < 0 ? 0 : nv > CONN_HINT_IOV ? CONN_HINT_IOV : (size_t)nv};

    /* (beyond CONN_HINT_IOV chunks the input is not looked at) */
    if (max > RPC_PREFETCH_MAX)
        max = RPC_PREFETCH_MAX;
    for (; nframes < max; nframes++) {
        uint8_t hdr[RPC_FRAME_HEADER_LEN];
        size_t len;

        /* the header, possibly split between chunks */
        if (hint_take(&pos, hdr, sizeof(hdr)) < sizeof(hdr))
            break;
        len = om_get_be32(hdr);
        if (len > s->o.max_frame)
            break;
        /* a payload inside one chunk is peeked at; a split one only stepped over */
        if (pos.vi < pos.nv && pos.v[pos.vi].iov_len - pos.off >= len &&
            rpc_fastpeek_keyed((const uint8_t *)pos.v[pos.vi].iov_base + pos.off, len,
                               &h[nh].bucket, &h[nh].key))
            nh++;
        if (hint_take(&pos, NULL, len) < len)
            break; /* not whole yet */
    }
    if (nh > 0)
        s->prefetch(s->prefetch_arg, h, nh);
}

/* An AuthRequest: answered here, never by the handler (auth.c). */
static void
conn_auth(rpc_conn *c, const Objmeta__Request *req, char *err, size_t errlen)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__AuthResponse ar = OBJMETA__AUTH_RESPONSE__INIT;
    om_status st = req->auth != NULL ? rpc_auth_token(c, req->auth, &ar, err, errlen)
                                     : om_err_invalid(err, errlen, "auth: no token");

    if (st != OM_OK) {
        c->srv->st.requests_denied++;
        om_log(OM_LOG_INFO, "authentication failed peer=%s reason=\"%s\"", c->peer, err);
        conn_send_error(c, req->id, st, "%s", err);
        return;
    }
    om_log(OM_LOG_DEBUG, "authenticated peer=%s subject=%s", c->peer, ar.subject);
    resp.id = req->id;
    resp.message = (char *)"";
    resp.body_case = OBJMETA__RESPONSE__BODY_AUTH;
    resp.auth = &ar;
    rpc_conn_queue_response(c, &resp);
}

/* Dispatch every whole frame buffered while the state and limits allow. */
static void
conn_process(rpc_conn *c)
{
    rpc_server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* One clock read per batch of frames: request start times (for
     * request_timeout_ms, swept every few ms) need no finer resolution. */
    uint64_t now_ns = om_clock_mono_ns(), now_ms = now_ns / 1000000u;
    size_t unhinted = 0; /* frames left that the last read-ahead hint covered */

    if (c->in_dispatch)
        return;
    c->in_dispatch = true;
    c->last_active_ms = now_ms;
    while (c->state == CONN_OPEN && !c->free_deferred && !c->out_blocked &&
           c->ninflight < s->o.max_inflight) {
        uint32_t len = 0;
        om_slice p;
        char msg[160], werr[256];
        om_status st = rpc_frame_evb_peek(in, s->o.max_frame, &len);
        if (st == OM_E_NOTFOUND)
            break;
        if (st != OM_OK) {
            s->st.protocol_errors++;
            if ((len >> 16) == 0x1603) /* a TLS record header: handshake, version 3.x */
                snprintf(msg, sizeof(msg), "this port speaks plaintext objmeta, not TLS");
            else
                snprintf(msg, sizeof(msg), "frame of %u bytes exceeds max_frame %u", len,
                         s->o.max_frame);
            om_log(OM_LOG_INFO, "protocol error peer=%s reason=\"%s\"", c->peer, msg);
            conn_fatal(c, OM_E_INVALID, msg);
            break;
        }
        if (s->prefetch != NULL && unhinted-- == 0) {
            /* the next frames' reads, up to what may be dispatched now */
            unhinted = s->o.max_inflight - c->ninflight;
            if (unhinted > RPC_PREFETCH_MAX)
                unhinted = RPC_PREFETCH_MAX;
            conn_hint_reads(c, unhinted);
            unhinted--;
        }
        if (rpc_frame_evb_pullup(in, len, &p) != OM_OK) {
            conn_fatal(c, OM_E_BUSY, "out of memory reading a frame");
            break;
        }
        /* The handler may answer another connection, which may dispatch
         * that one's frames from here: the scratch then serves only one. */
        ProtobufCAllocator *pa = rpc_scratch_take(&s->scratch);
        Objmeta__Request *req = NULL;
        bool fast = false;
        /* the hot requests without protobuf-c, into the scratch (frame.h) */
        if (pa != NULL)
            req = rpc_fastunpack_request(pa, p.p, p.n, &fast);
        if (!fast)
            req = objmeta__request__unpack(pa, p.n, p.p);
        /* strings as they were on the wire, before anyone reads the C copies */
        bool split = false;
        om_status wst = req != NULL ? rpc_wire_check_strings(&objmeta__request__descriptor, p.p,
                                                             p.n, &split, werr, sizeof(werr))
                                    : OM_OK;
        if (wst == OM_OK && split)
            req = rpc_wire_unpack_merged(&s->scratch, &pa, req, p);
        rpc_frame_evb_drain(in, len);
        s->st.bytes_in += RPC_FRAME_HEADER_LEN + (uint64_t)len;
        if (req == NULL) {
            rpc_scratch_done(&s->scratch, pa, NULL);
            s->st.protocol_errors++;
            snprintf(msg, sizeof(msg), "undecodable request: %u bytes are not an objmeta.Request",
                     len);
            conn_fatal(c, OM_E_INVALID, msg);
            break;
        }
        s->st.requests_total++;
        if (wst != OM_OK) {
            s->st.protocol_errors++;
            conn_send_error(c, req->id, OM_E_INVALID, "%s", werr);
            rpc_scratch_done(&s->scratch, pa, &req->base);
            rpc_conn_flow(c);
            continue;
        }
        if (req->body_case == OBJMETA__REQUEST__BODY__NOT_SET) {
            s->st.protocol_errors++;
            conn_send_error(c, req->id, OM_E_INVALID,
                            "unknown operation: request %llu carries no operation this "
                            "server knows",
                            (unsigned long long)req->id);
            rpc_scratch_done(&s->scratch, pa, &req->base);
            rpc_conn_flow(c);
            continue;
        }
        if (req->body_case == OBJMETA__REQUEST__BODY_AUTH) {
            conn_auth(c, req, werr, sizeof(werr));
            rpc_scratch_done(&s->scratch, pa, &req->base);
            rpc_conn_flow(c);
            continue;
        }
        om_status ast = rpc_auth_check(c, req, werr, sizeof(werr));
        if (ast != OM_OK) {
            s->st.requests_denied++;
            om_log(OM_LOG_DEBUG, "request denied peer=%s id=%llu reason=\"%s\"", c->peer,
                   (unsigned long long)req->id, werr);
            conn_send_error(c, req->id, ast, "%s", werr);
            rpc_scratch_done(&s->scratch, pa, &req->base);
            rpc_conn_flow(c);
            continue;
        }
        rpc_reply *r = rpc_reply_new(c, req->id, now_ns);
        if (r == NULL) {
            conn_send_error(c, req->id, OM_E_BUSY, "out of memory");
            rpc_scratch_done(&s->scratch, pa, &req->base);
            continue;
        }
        rpc_reply_take_request(r, req);
        s->handler(s->handler_arg, req, r);
        rpc_scratch_done(&s->scratch, pa, &req->base);
        rpc_conn_flow(c); /* the handler may have answered: recheck high water */
    }
    c->in_dispatch = false;
    if (c->free_deferred) {
        conn_destroy(c);
        return;
    }
    rpc_conn_flow(c);
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
    rpc_conn *c = arg;

    if (c->state == CONN_LINGER || c->state == CONN_FLUSHING || c->state == CONN_DRAINING) {
        struct evbuffer *in = bufferevent_get_input(bev);
        c->last_active_ms = om_clock_mono_ms();
        if (c->state == CONN_LINGER)
            evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    /* libevent decrypts the first requests (and runs this) before it
     * reports the finished handshake: the roles first */
    if (c->tls && !c->tls_ready)
        rpc_tls_conn_ready(c);
    conn_process(c);
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
    rpc_conn *c = arg;

    c->last_active_ms = om_clock_mono_ms();
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_set_write(c, false); /* back to direct writes (TLS: rpc_tls_flush) */
    rpc_conn_flow(c);
}

void
rpc_conn_flush_dirty(rpc_server *s)
{
    uint64_t now_ms = om_clock_mono_ms();

    while (s->dirty != NULL) {
        rpc_conn *c = s->dirty;
        conn_unmark_dirty(c);
        struct evbuffer *out = rpc_conn_out(c);
        if (c->tls) {
            if (rpc_tls_flush(c->bev))
                c->last_active_ms = now_ms;
            rpc_conn_flow(c);
            continue;
        }
        if (c->wr_enabled || evbuffer_get_length(out) == 0)
            continue;
        /* Whatever stops a direct write (a full socket, an error) is left to
         * the bufferevent: it retries when writable and reports errors
         * through conn_eventcb, as for any write it makes itself. */
        if (rpc_evb_write_direct(out, bufferevent_getfd(c->bev)) > 0)
            c->last_active_ms = now_ms;
        if (evbuffer_get_length(out) > 0)
            conn_set_write(c, true);
        rpc_conn_flow(c); /* the output shrank: resume reading, linger, or close */
    }
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    rpc_conn *c = arg;

    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake done: roles from the certificate */
        rpc_tls_conn_ready(c);
        return;
    }
    if (c->tls && !c->tls_ready) {
        rpc_tls_conn_failed(c);
        conn_destroy(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->state == CONN_OPEN) {
        /* Half-close: answer what was sent, then close. */
        c->peer_eof = true;
        c->read_enabled = false; /* libevent stopped reading */
        rpc_conn_flow(c);
        return;
    }
    if (what & BEV_EVENT_ERROR)
        om_log(OM_LOG_DEBUG, "connection error peer=%s", c->peer);
    conn_destroy(c);
}

static void
conn_destroy(rpc_conn *c)
{
    rpc_server *s = c->srv;

    if (c->in_dispatch) {
        c->free_deferred = true;
        conn_set_read(c, false);
        return;
    }
    conn_orphan_all(c);
    conn_unmark_dirty(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->counted)
        s->st.connections_current--;
    bufferevent_free(c->bev);
    free(c->tok);
    free(c);
    rpc_server_conn_gone(s);
}

void
rpc_conn_free(rpc_conn *c)
{
    conn_destroy(c);
}

om_status
rpc_conn_new(rpc_server *s, int fd, const struct sockaddr *sa, int salen, bool reject)
{
    rpc_conn *c = calloc(1, sizeof(*c));

    (void)salen;
    if (c == NULL) {
        close(fd);
        return OM_ERR(OM_E_NOMEM);
    }
    c->srv = s;
    rpc_addr_format(sa, c->peer, sizeof(c->peer));
    c->tls = s->o.tls != NULL;
    c->bev = c->tls ? rpc_tls_bev_accept(s->o.tls, s->base, fd)
                    : bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        return OM_ERR(OM_E_NOMEM);
    }
    rpc_sock_nodelay(fd);
    rpc_bev_read_direct(rpc_tls_socket_bev(c->bev));
    c->sock_out = bufferevent_get_output(rpc_tls_socket_bev(c->bev));
    /* libevent reads at most 16 KiB per callback by default: a connection
     * carrying many clients' requests (a coordinator's) would then feed a
     * loop iteration -- and a write batch -- only 16 KiB of them. */
    bufferevent_set_max_single_read(c->bev, RPC_MAX_SINGLE_READ);
    bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
    /* The write callback fires whenever the output drains to the low mark.
     * EV_WRITE stays off until a direct write leaves bytes behind (above). */
    bufferevent_setwatermark(c->bev, EV_WRITE, s->o.out_low_water, 0);
    bufferevent_disable(c->bev, EV_WRITE); /* TLS: already off (rpc_tls_flush) */
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    c->last_active_ms = om_clock_mono_ms();
    conn_enter(c, CONN_OPEN);
    if (reject) {
        char msg[96];
        s->st.connections_rejected++;
        snprintf(msg, sizeof(msg), "too many connections (max_connections %u)",
                 s->o.max_connections);
        om_log(OM_LOG_WARN, "rejecting connection peer=%s reason=\"%s\"", c->peer, msg);
        conn_fatal(c, OM_E_BUSY, msg);
        return OM_OK;
    }
    c->roles = c->base_roles = c->tls ? 0 : s->plain_roles; /* TLS: after the handshake */
    c->counted = true;
    s->st.connections_current++;
    s->st.connections_total++;
    conn_set_read(c, true);
    return OM_OK;
}

size_t
rpc_conn_out_len(const rpc_conn *c)
{
    return conn_queued(c);
}

size_t
rpc_conn_in_len(const rpc_conn *c)
{
    return evbuffer_get_length(bufferevent_get_input(c->bev));
}

void
rpc_conn_drain(rpc_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    conn_enter(c, CONN_DRAINING);
    rpc_conn_flow(c);
}

void
rpc_conn_sweep(rpc_conn *c, uint64_t now_ms)
{
    const rpc_server_opts *o = &c->srv->o;

    if (c->state == CONN_FLUSHING || c->state == CONN_LINGER) {
        if (now_ms - c->state_since_ms >= CONN_LINGER_MS)
            conn_destroy(c);
        return;
    }
    if (o->request_timeout_ms > 0) {
        bool any = false;
        /* In-flight lists are in arrival order, so the oldest come first. */
        while (c->in_head != NULL && now_ms - c->in_head->start_ms >= o->request_timeout_ms) {
            rpc_reply *r = c->in_head;
            uint64_t id = r->id;
            om_log_rid(OM_LOG_WARN, r->rid, "request timed out op=%s id=%llu peer=%s timeout_ms=%u",
                       rpc_op_name(r->op), (unsigned long long)id, c->peer, o->request_timeout_ms);
            rpc_reply_unlink(r);
            c->srv->st.request_timeouts++;
            conn_send_error(c, id, OM_E_TIMEOUT, "request %llu not answered within %u ms",
                            (unsigned long long)id, o->request_timeout_ms);
            any = true;
        }
        if (any) {
            rpc_conn_flow(c);
            return; /* conn_flow may have freed c */
        }
    }
    if (c->state == CONN_OPEN && o->idle_timeout_ms > 0 && c->ninflight == 0 &&
        conn_queued(c) == 0 && now_ms - c->last_active_ms >= o->idle_timeout_ms) {
        om_log(OM_LOG_DEBUG, "closing idle connection peer=%s idle_ms=%llu", c->peer,
               (unsigned long long)(now_ms - c->last_active_ms));
        c->srv->st.idle_closes++;
        conn_destroy(c);
    }
}

void
rpc_conn_deliver_frame(rpc_reply *r)
{
    rpc_conn *c = r->conn;

    rpc_reply_unlink(r);
    if (r->frame == NULL) {
        conn_send_error(c, r->id, OM_E_INTERNAL, "out of memory packing the response");
    } else if (evbuffer_add(rpc_conn_out(c), r->frame, r->frame_len) == 0) {
        c->srv->st.responses_total++;
        c->srv->st.bytes_out += r->frame_len;
        rpc_conn_mark_dirty(c);
    } else {
        om_log(OM_LOG_ERROR, "cannot queue response peer=%s id=%llu", c->peer,
               (unsigned long long)r->id);
    }
    rpc_conn_flow(c);
}
