/*
 * rpc/server.c -- the rpc server: listener, connection list, the completion
 * queue that carries answers from handler threads back to the loop, the
 * periodic sweep (idle and request timeouts), graceful shutdown, counters.
 *
 * Per-connection work lives in conn.c, answering a request in reply.c; the
 * threading scheme is described in rpc_int.h.
 */
#define OM_LOG_MODULE "rpc"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/rpc_int.h"
#include "util/clock.h"
#include "util/assert.h"
#include "util/coding.h"
#include "util/log.h"

/* How long accepting pauses after running out of descriptors. */
#define SERVER_ACCEPT_PAUSE_MS 100u

void
rpc_server_opts_init(rpc_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "127.0.0.1:7400";
    o->max_frame = RPC_DEFAULT_MAX_FRAME;
    o->max_connections = 1024;
    o->idle_timeout_ms = 300000;
    o->request_timeout_ms = 30000;
    o->out_high_water = 4u * 1024u * 1024u;
    o->out_low_water = o->out_high_water / 4;
    o->max_inflight = 1024;
    o->backlog = 511;
    o->plaintext_roles = RPC_ROLES_AUTO;
    o->slow_request_ms = 1000;
}

/* 127.0.0.0/8 or ::1 (or ::ffff:127.x). */
static bool
server_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* The roles a plaintext connection gets (rpc_server_opts.plaintext_roles). */
static uint32_t
server_plain_roles(const rpc_server *s, const struct sockaddr_storage *ss)
{
    char buf[32];
    uint32_t r = s->o.plaintext_roles;

    if (r == RPC_ROLES_AUTO) {
        r = server_is_loopback(ss) ? RPC_ROLES_ALL : 0;
        if (r == 0)
            om_log(OM_LOG_WARN,
                   "plaintext listener on a non-loopback address grants no role: every request "
                   "is answered UNAUTHENTICATED (configure TLS, or set plaintext-roles) listen=%s",
                   s->listen_str);
    }
    r &= RPC_ROLES_ALL;
    rpc_roles_format(r, buf, sizeof(buf));
    om_log(OM_LOG_INFO, "plaintext connections get roles=%s listen=%s", buf, s->listen_str);
    return r;
}

/* The sweep period: a fraction of the shortest timeout, within [10, 250] ms. */
static uint32_t
server_tick_ms(const rpc_server_opts *o)
{
    uint32_t t = 250;

    if (o->idle_timeout_ms > 0 && o->idle_timeout_ms / 8 < t)
        t = o->idle_timeout_ms / 8;
    if (o->request_timeout_ms > 0 && o->request_timeout_ms / 8 < t)
        t = o->request_timeout_ms / 8;
    return t < 10 ? 10 : t;
}

static void
server_accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
                 void *arg)
{
    rpc_server *s = arg;
    bool reject = s->shutting_down || s->st.connections_current >= s->o.max_connections;

    (void)lis;
    if (!reject && s->accept_hook != NULL && s->accept_hook(s->accept_hook_arg, fd))
        return; /* handed to another server */
    (void)rpc_conn_new(s, fd, sa, salen, reject);
}

/* ---- adopted connections (adopt_only) ---- */

void
rpc_server_set_accept_hook(rpc_server *s, rpc_accept_fn fn, void *arg)
{
    s->accept_hook = fn;
    s->accept_hook_arg = arg;
}

void
rpc_server_adopt(rpc_server *s, int fd)
{
    OM_ASSERT(s->o.adopt_only);
    /* a descriptor number through the pipe: 4 bytes, written whole (PIPE_BUF) or not at all */
    if (write(s->adopt_pipe[1], &fd, sizeof(fd)) != (ssize_t)sizeof(fd)) {
        om_log(OM_LOG_WARN, "cannot hand a connection over listen=%s err=%s", s->listen_str,
               strerror(errno));
        close(fd);
    }
}

static void
server_adopt_cb(evutil_socket_t pfd, short what, void *arg)
{
    rpc_server *s = arg;
    int fd;

    (void)what;
    while (read(pfd, &fd, sizeof(fd)) == (ssize_t)sizeof(fd)) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        bool reject = s->shutting_down || s->st.connections_current >= s->o.max_connections;

        if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
            close(fd); /* the peer is gone already */
            continue;
        }
        (void)rpc_conn_new(s, fd, (struct sockaddr *)&ss, (int)len, reject);
    }
}

/* An adopt_only server's pipe of handed-over descriptors instead of a listener. */
static om_status
server_adopt_open(rpc_server *s)
{
    if (pipe2(s->adopt_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        s->adopt_pipe[0] = s->adopt_pipe[1] = -1;
        return OM_ERR(om_status_from_errno(errno));
    }
    s->adopt_ev = event_new(s->base, s->adopt_pipe[0], EV_READ | EV_PERSIST, server_adopt_cb, s);
    if (s->adopt_ev == NULL || event_add(s->adopt_ev, NULL) != 0)
        return OM_ERR(OM_E_NOMEM);
    return OM_OK;
}

/*
 * Out of descriptors (issue 13, D3). The listener stays readable while the
 * backlog holds connections, so retrying at once spins: the loop burns a
 * core and logs one line per attempt, and clients time out in the backlog.
 * Instead: take the reserve descriptor back, accept one waiting connection
 * with it, tell that peer BUSY and close it (it learns at once rather than
 * after its timeout), re-open the reserve, and pause accepting for
 * SERVER_ACCEPT_PAUSE_MS. The log line is rate-limited to one per second
 * with the count of failures it stands for.
 */
static void
server_reserve_open(rpc_server *s)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
server_shed_one(rpc_server *s)
{
    static const char msg[] = "server out of file descriptors: try again later";
    Objmeta__Response e = OBJMETA__RESPONSE__INIT;
    uint8_t frame[RPC_FRAME_HEADER_LEN + sizeof(msg) + 16];
    int fd;

    if (s->reserve_fd < 0 || s->lis == NULL)
        return;
    close(s->reserve_fd);
    s->reserve_fd = -1;
    fd = accept4(evconnlistener_get_fd(s->lis), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        e.status = OBJMETA__STATUS__BUSY;
        e.message = (char *)msg;
        size_t n = protobuf_c_message_pack(&e.base, frame + RPC_FRAME_HEADER_LEN);
        om_put_be32(frame, (uint32_t)n);
        ssize_t w = write(fd, frame, RPC_FRAME_HEADER_LEN + n);
        (void)w; /* best effort: a fresh socket's buffer takes a few bytes */
        close(fd);
        s->st.connections_rejected++;
    }
    server_reserve_open(s);
}

static void
server_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_server *s = arg;

    (void)fd;
    (void)what;
    server_reserve_open(s);
    if (s->lis != NULL)
        evconnlistener_enable(s->lis);
}

static void
server_accept_error_cb(struct evconnlistener *lis, void *arg)
{
    rpc_server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    uint64_t now = om_clock_mono_ms();

    s->accept_failures++;
    if (now - s->accept_log_ms >= 1000 || s->accept_log_ms == 0) {
        om_log(OM_LOG_WARN,
               "accept failed listen=%s err=%s failures=%llu (accepting paused %u ms per failure; "
               "raise the open-file limit or lower max-connections)",
               s->listen_str, strerror(err), (unsigned long long)s->accept_failures,
               SERVER_ACCEPT_PAUSE_MS);
        s->accept_log_ms = now;
        s->accept_failures = 0;
    }
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return; /* ECONNABORTED and the like: that connection is gone, go on */
    server_shed_one(s);
    struct timeval tv = {0, SERVER_ACCEPT_PAUSE_MS * 1000};
    evconnlistener_disable(lis);
    s->st.accept_pauses++;
    evtimer_add(s->accept_ev, &tv);
}

/*
 * Refuse to start when the open-file limit cannot hold max_connections plus
 * RPC_FD_HEADROOM (the server's own descriptors, the application's files):
 * out of descriptors at run time the server sheds connections instead of
 * serving them. A soft limit below that is raised up to the hard one.
 */
static om_status
server_check_nofile(const rpc_server_opts *o)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)o->max_connections + RPC_FD_HEADROOM;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return OM_OK;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
            om_log(OM_LOG_INFO, "raised the open-file soft limit to %llu for max_connections=%u",
                   (unsigned long long)need, o->max_connections);
            return OM_OK;
        }
    }
    om_log(OM_LOG_ERROR,
           "rpc server: the open-file limit (RLIMIT_NOFILE soft %llu, hard %llu) is below what "
           "max_connections=%u needs (%llu = connections + %u for the server's own files): raise "
           "it (ulimit -n, systemd LimitNOFILE=) or lower max-connections",
           (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, o->max_connections,
           (unsigned long long)need, RPC_FD_HEADROOM);
    return OM_ERR(OM_E_INVALID);
}

/* The loop side of the completion queue: deliver answers from other threads. */
static void
server_cq_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_server *s = arg;
    rpc_cq *q = s->cq;
    uint64_t v;
    rpc_reply *r;

    (void)what;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n; /* EAGAIN: another wake already consumed the counter */
    pthread_mutex_lock(&q->mu);
    r = q->head;
    q->head = q->tail = NULL;
    q->wake_pending = false;
    pthread_mutex_unlock(&q->mu);
    while (r != NULL) {
        rpc_reply *next = r->qnext;
        if (r->conn != NULL)
            rpc_conn_deliver_frame(r);
        rpc_reply_destroy(r);
        r = next;
    }
}

static void
server_force_close_all(rpc_server *s)
{
    while (s->conns != NULL)
        rpc_conn_free(s->conns);
}

static void
server_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_server *s = arg;
    uint64_t now = om_clock_mono_ms();

    (void)fd;
    (void)what;
    for (rpc_conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        rpc_conn_sweep(c, now);
    }
    if (s->shutting_down && s->shutdown_deadline_ms != 0 && now >= s->shutdown_deadline_ms &&
        s->conns != NULL) {
        unsigned n = 0;
        for (rpc_conn *c = s->conns; c != NULL; c = c->next)
            n++;
        om_log(OM_LOG_WARN, "shutdown deadline passed: closing connections=%u", n);
        server_force_close_all(s);
    }
}

static void
server_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rpc_conn_flush_dirty(arg);
}

static void
server_done_cb(evutil_socket_t fd, short what, void *arg)
{
    rpc_server *s = arg;

    (void)fd;
    (void)what;
    if (s->done_fired)
        return;
    s->done_fired = true;
    om_log(OM_LOG_INFO, "rpc server drained listen=%s", s->listen_str);
    if (s->done != NULL)
        s->done(s->done_arg);
    else
        event_base_loopexit(s->base, NULL);
}

void
rpc_server_conn_gone(rpc_server *s)
{
    if (s->shutting_down && s->conns == NULL && !s->done_fired && s->done_ev != NULL)
        event_active(s->done_ev, 0, 0);
}

static om_status
server_cq_new(rpc_server *s)
{
    rpc_cq *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return OM_ERR(OM_E_NOMEM);
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        om_log(OM_LOG_ERROR, "eventfd failed err=%s", strerror(errno));
        free(q);
        return OM_ERR(om_status_from_errno(errno));
    }
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        close(q->efd);
        free(q);
        return OM_ERR(OM_E_NOMEM);
    }
    atomic_init(&q->refs, 1);
    q->max_frame = s->o.max_frame;
    q->loop_thread = pthread_self();
    rpc_cq_reqlog_init(q, s->o.slow_request_ms, s->o.make_request_ids);
    s->cq = q;
    return OM_OK;
}

static om_status
server_check_opts(const rpc_server_opts *o)
{
    if (o->listen == NULL) {
        om_log(OM_LOG_ERROR, "rpc server: no listen address");
        return OM_ERR(OM_E_INVALID);
    }
    if (o->max_frame < 64 || o->max_connections == 0 || o->max_inflight == 0 ||
        o->out_high_water == 0 || o->out_low_water > o->out_high_water || o->backlog <= 0) {
        om_log(OM_LOG_ERROR,
               "rpc server: bad options max_frame=%u max_connections=%u max_inflight=%u "
               "out_high_water=%zu out_low_water=%zu backlog=%d",
               o->max_frame, o->max_connections, o->max_inflight, o->out_high_water,
               o->out_low_water, o->backlog);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

om_status
rpc_server_new(struct event_base *base, const rpc_server_opts *opts, rpc_handler_fn handler,
               void *arg, rpc_server **out)
{
    om_status st;
    struct sockaddr_storage ss;
    socklen_t sslen;
    rpc_server *s;

    if (base == NULL || opts == NULL || handler == NULL)
        return OM_ERR(OM_E_INVALID);
    OM_TRY(server_check_opts(opts));
    OM_TRY(server_check_nofile(opts));
    rpc_ignore_sigpipe();
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return OM_ERR(OM_E_NOMEM);
    s->base = base;
    s->reserve_fd = -1;
    s->adopt_pipe[0] = s->adopt_pipe[1] = -1;
    rpc_scratch_init(&s->scratch);
    s->o = *opts;
    s->handler = handler;
    s->handler_arg = arg;
    s->listen_str = strdup(opts->listen);
    if (s->listen_str == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    s->o.listen = s->listen_str;
    if (s->o.out_hard_limit == 0) {
        size_t lim = 2 * (size_t)s->o.max_frame + s->o.out_high_water;
        s->o.out_hard_limit = lim > (32u << 20) ? lim : (32u << 20);
    }
    st = rpc_addr_resolve(s->listen_str, true, &ss, &sslen);
    if (st != OM_OK) {
        om_log(OM_LOG_ERROR, "rpc server: bad listen address listen=%s", s->listen_str);
        goto fail;
    }
    s->plain_roles = opts->tls != NULL ? 0 : server_plain_roles(s, &ss);
    if (opts->token_keys_file != NULL && opts->token_keys_file[0] != '\0') {
        char kerr[256];
        if ((st = rpc_keyring_load(opts->token_keys_file, &s->keys, kerr, sizeof(kerr))) != OM_OK) {
            om_log(OM_LOG_ERROR, "rpc server: %s", kerr);
            goto fail;
        }
    }
    OM_GOTO(server_cq_new(s));
    s->cq_ev = event_new(base, s->cq->efd, EV_READ | EV_PERSIST, server_cq_cb, s);
    s->sweep_ev = event_new(base, -1, EV_PERSIST, server_sweep_cb, s);
    s->done_ev = event_new(base, -1, 0, server_done_cb, s);
    s->flush_ev = event_new(base, -1, 0, server_flush_cb, s);
    s->accept_ev = evtimer_new(base, server_accept_resume_cb, s);
    server_reserve_open(s);
    if (s->cq_ev == NULL || s->sweep_ev == NULL || s->done_ev == NULL || s->flush_ev == NULL ||
        s->accept_ev == NULL || s->reserve_fd < 0) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    if (s->o.adopt_only) {
        OM_GOTO(server_adopt_open(s));
        goto serving;
    }
    s->lis =
        evconnlistener_new_bind(base, server_accept_cb, s,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                s->o.backlog, (struct sockaddr *)&ss, (int)sslen);
    if (s->lis == NULL) {
        int err = errno;
        om_log(OM_LOG_ERROR, "rpc server: cannot listen listen=%s err=%s", s->listen_str,
               strerror(err));
        st = OM_ERR(err == EADDRINUSE ? OM_E_UNAVAILABLE : om_status_from_errno(err));
        goto fail;
    }
    evconnlistener_set_error_cb(s->lis, server_accept_error_cb);
    s->port = rpc_sock_port(evconnlistener_get_fd(s->lis));
serving:;
    uint32_t tick = server_tick_ms(&s->o);
    struct timeval tv = {.tv_sec = tick / 1000, .tv_usec = (tick % 1000) * 1000};
    if (event_add(s->cq_ev, NULL) != 0 || event_add(s->sweep_ev, &tv) != 0) {
        st = OM_ERR(OM_E_INTERNAL);
        goto fail;
    }
    om_log(OM_LOG_INFO, "rpc server %s listen=%s port=%d tls=%s",
           s->o.adopt_only ? "serving connections handed over" : "listening", s->listen_str,
           s->port, opts->tls != NULL ? "on" : "off");
    *out = s;
    return OM_OK;
fail:
    rpc_server_free(s);
    return st;
}

void
rpc_server_set_prefetch(rpc_server *s, rpc_prefetch_fn fn, void *arg)
{
    s->prefetch = fn;
    s->prefetch_arg = arg;
}

int
rpc_server_port(const rpc_server *s)
{
    return s->port;
}

void
rpc_server_shutdown(rpc_server *s, uint32_t deadline_ms, void (*done)(void *arg), void *arg)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->done = done;
    s->done_arg = arg;
    s->shutdown_deadline_ms = deadline_ms ? om_clock_mono_ms() + deadline_ms : 0;
    /* Close (not just disable) the listener: new connects are refused at once
     * instead of waiting in the kernel's backlog. */
    if (s->lis != NULL)
        evconnlistener_free(s->lis);
    s->lis = NULL;
    om_log(OM_LOG_INFO, "rpc server shutting down listen=%s inflight=%llu deadline_ms=%u",
           s->listen_str, (unsigned long long)s->st.requests_inflight, deadline_ms);
    for (rpc_conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        rpc_conn_drain(c);
    }
    if (s->conns == NULL)
        event_active(s->done_ev, 0, 0);
}

void
rpc_server_free(rpc_server *s)
{
    if (s == NULL)
        return;
    if (s->lis != NULL)
        evconnlistener_free(s->lis);
    s->lis = NULL;
    s->shutting_down = false; /* no done callback while tearing down */
    server_force_close_all(s);
    if (s->cq != NULL) {
        rpc_cq *q = s->cq;
        pthread_mutex_lock(&q->mu);
        q->dead = true;
        rpc_reply *r = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        while (q->pool != NULL) { /* no reply joins the pool once the cq is dead */
            rpc_reply *p = q->pool;
            q->pool = p->qnext;
            free(p);
        }
        q->n_pool = 0;
        while (r != NULL) {
            rpc_reply *next = r->qnext;
            rpc_reply_destroy(r);
            r = next;
        }
    }
    if (s->cq_ev != NULL)
        event_free(s->cq_ev);
    if (s->sweep_ev != NULL)
        event_free(s->sweep_ev);
    if (s->done_ev != NULL)
        event_free(s->done_ev);
    if (s->flush_ev != NULL)
        event_free(s->flush_ev);
    if (s->accept_ev != NULL)
        event_free(s->accept_ev);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    if (s->adopt_ev != NULL)
        event_free(s->adopt_ev);
    if (s->adopt_pipe[0] >= 0) {
        int fd;

        while (read(s->adopt_pipe[0], &fd, sizeof(fd)) == (ssize_t)sizeof(fd))
            close(fd); /* handed over, never served */
        close(s->adopt_pipe[0]);
        close(s->adopt_pipe[1]);
    }
    if (s->cq != NULL) {
        close(s->cq->efd); /* after `dead`: writers check it under the mutex */
        rpc_cq *q = s->cq;
        if (atomic_fetch_sub(&q->refs, 1) == 1) {
            pthread_mutex_destroy(&q->mu);
            free(q);
        }
    }
    rpc_scratch_fini(&s->scratch);
    rpc_keyring_free(s->keys);
    free(s->listen_str);
    free(s);
}

void
rpc_server_get_stats(const rpc_server *s, rpc_server_stats *out)
{
    *out = s->st;
    out->bytes_queued = 0;
    out->bytes_buffered = 0;
    for (const rpc_conn *c = s->conns; c != NULL; c = c->next) {
        out->bytes_queued += rpc_conn_out_len(c);
        out->bytes_buffered += rpc_conn_in_len(c);
    }
}

void
rpc_server_stats_add(rpc_server_stats *to, const rpc_server_stats *from)
{
    uint64_t *t = (uint64_t *)(void *)to;
    const uint64_t *f = (const uint64_t *)(const void *)from;

    _Static_assert(sizeof(rpc_server_stats) % sizeof(uint64_t) == 0, "counters only");
    for (size_t i = 0; i < sizeof(*to) / sizeof(uint64_t); i++)
        t[i] += f[i];
}
