/*
 * rpc/util.c -- small pieces every rpc file uses: "host:port" parsing and
 * resolution, socket options, the atomic port file, and routing libevent's
 * own log messages into om_log.
 */
#define OM_LOG_MODULE "rpc"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rpc/rpc_int.h"
#include "util/log.h"
#include "util/slice.h"

om_status
rpc_addr_split(const char *addr, char *host, size_t hostcap, int *port)
{
    const char *colon;
    const char *hs = addr;
    size_t hn;

    if (addr == NULL || *addr == '\0') {
        om_log(OM_LOG_DEBUG, "empty address");
        return OM_ERR(OM_E_INVALID);
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            om_log(OM_LOG_DEBUG, "bad address addr=%s (want [v6]:port)", addr);
            return OM_ERR(OM_E_INVALID);
        }
        hs = addr + 1;
        hn = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            om_log(OM_LOG_DEBUG, "bad address addr=%s (want host:port)", addr);
            return OM_ERR(OM_E_INVALID);
        }
        hn = (size_t)(colon - addr);
    }
    if (hn == 0 || hn >= hostcap) {
        om_log(OM_LOG_DEBUG, "bad address addr=%s (host)", addr);
        return OM_ERR(OM_E_INVALID);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
        om_log(OM_LOG_DEBUG, "bad address addr=%s (port)", addr);
        return OM_ERR(OM_E_INVALID);
    }
    memcpy(host, hs, hn);
    host[hn] = '\0';
    *port = (int)p;
    return OM_OK;
}

om_status
rpc_addr_resolve(const char *addr, bool passive, struct sockaddr_storage *ss, socklen_t *sslen)
{
    char host[256];
    char portstr[16];
    int port;
    struct addrinfo hints, *res = NULL;

    OM_TRY(rpc_addr_split(addr, host, sizeof(host), &port));
    snprintf(portstr, sizeof(portstr), "%d", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || res == NULL) {
        om_log(OM_LOG_DEBUG, "cannot resolve addr=%s err=%s", addr, gai_strerror(rc));
        if (res != NULL)
            freeaddrinfo(res);
        return OM_ERR(OM_E_INVALID);
    }
    if (res->ai_addrlen > sizeof(*ss)) {
        freeaddrinfo(res);
        return OM_ERR(OM_E_INTERNAL);
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return OM_OK;
}

void
rpc_addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(buf, cap, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(buf, cap, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, cap, "?");
    }
}

void
rpc_sock_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a failure costs latency, not correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
rpc_sock_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

om_status
rpc_port_file_write(const char *path, const char *const *names, const int *ports, size_t n)
{
    om_buf b = OM_BUF_INIT;
    om_buf tmp = OM_BUF_INIT;
    om_status st = OM_OK;
    int fd = -1;

    if (path == NULL || n == 0)
        return OM_ERR(OM_E_INVALID);
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0' || strpbrk(names[i], " \t\n") != NULL) {
            om_log(OM_LOG_ERROR, "port file: bad listener name index=%zu", i);
            st = OM_ERR(OM_E_INVALID);
            goto fail;
        }
        OM_GOTO(om_buf_printf(&b, "%s %d\n", names[i], ports[i]));
    }
    OM_GOTO(om_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid()));
    const char *tpath = (const char *)tmp.p;
    fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        om_log(OM_LOG_ERROR, "port file: open path=%s err=%s", tpath, strerror(errno));
        st = OM_ERR(om_status_from_errno(errno));
        goto fail;
    }
    size_t off = 0;
    while (off < b.n) {
        ssize_t w = write(fd, b.p + off, b.n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            om_log(OM_LOG_ERROR, "port file: write path=%s err=%s", tpath, strerror(errno));
            st = OM_ERR(OM_E_IO);
            goto fail_unlink;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        om_log(OM_LOG_ERROR, "port file: fsync path=%s err=%s", tpath, strerror(errno));
        st = OM_ERR(OM_E_IO);
        goto fail_unlink;
    }
    close(fd);
    fd = -1;
    if (rename(tpath, path) != 0) {
        om_log(OM_LOG_ERROR, "port file: rename to path=%s err=%s", path, strerror(errno));
        st = OM_ERR(OM_E_IO);
        goto fail_unlink;
    }
    om_buf_free(&b);
    om_buf_free(&tmp);
    return OM_OK;
fail_unlink:
    unlink((const char *)tmp.p);
fail:
    if (fd >= 0)
        close(fd);
    om_buf_free(&b);
    om_buf_free(&tmp);
    return st;
}

static void
rpc_libevent_log(int severity, const char *msg)
{
    om_log_level lvl;

    switch (severity) {
    case EVENT_LOG_DEBUG:
        lvl = OM_LOG_DEBUG;
        break;
    case EVENT_LOG_MSG:
        lvl = OM_LOG_INFO;
        break;
    case EVENT_LOG_WARN:
        lvl = OM_LOG_WARN;
        break;
    default:
        lvl = OM_LOG_ERROR;
        break;
    }
    if ((int)lvl <= om_log_threshold)
        om_log_write(lvl, "libevent", "%s", msg);
}

void
rpc_init_logging(void)
{
    event_set_log_callback(rpc_libevent_log);
}

static void
rpc_sigpipe_once(void)
{
    struct sigaction sa;

    /* Only replace the default: a program that installed its own handler keeps it. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGPIPE, &sa, NULL);
    }
}

void
rpc_ignore_sigpipe(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, rpc_sigpipe_once);
}

/* ------------------------------------------------------------------------ */
/* Unpack scratch (rpc_int.h)                                                 */

struct rpc_scratch_big {
    rpc_scratch_big *next;
    size_t cap, used;
    _Alignas(16) uint8_t mem[];
};

/* Overflow blocks: at least this big, doubling, so a large message (a List
 * page of 1000 entries) costs a few mallocs rather than one per field. */
#define SCRATCH_BLOCK_MIN (64u * 1024u)
/* A reset keeps one block up to this size for the next message. */
#define SCRATCH_KEEP_MAX (4u * 1024u * 1024u)

static void *
scratch_alloc(void *data, size_t n)
{
    rpc_scratch *s = data;
    size_t need = (n + 15u) & ~(size_t)15u;

    if (need < n)
        return NULL;
    if (need <= RPC_SCRATCH_BYTES - s->used) {
        void *p = s->buf + s->used;
        s->used += need;
        return p;
    }
    rpc_scratch_big *b = s->big;
    if (b != NULL && need <= b->cap - b->used) {
        void *p = b->mem + b->used;
        b->used += need;
        return p;
    }
    size_t cap = b != NULL && b->cap <= SIZE_MAX / 4 ? b->cap * 2 : SCRATCH_BLOCK_MIN;
    if (cap < need)
        cap = need;
    if (s->spare != NULL && s->spare->cap >= need) {
        b = s->spare; /* the block a reset kept */
        s->spare = NULL;
    } else {
        if (cap > SIZE_MAX - sizeof(rpc_scratch_big))
            return NULL;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
    }
    b->used = need;
    b->next = s->big;
    s->big = b;
    return b->mem;
}

static void
scratch_free(void *data, void *p)
{
    /* Released all at once by rpc_scratch_reset. */
    (void)data;
    (void)p;
}

void
rpc_scratch_init(rpc_scratch *s)
{
    s->pa.alloc = scratch_alloc;
    s->pa.free = scratch_free;
    s->pa.allocator_data = s;
    s->used = 0;
    s->busy = false;
    s->big = NULL;
    s->spare = NULL;
}

void
rpc_scratch_reset(rpc_scratch *s)
{
    while (s->big != NULL) {
        rpc_scratch_big *b = s->big;
        s->big = b->next;
        if (b->cap <= SCRATCH_KEEP_MAX && (s->spare == NULL || s->spare->cap < b->cap)) {
            free(s->spare);
            s->spare = b; /* the largest reasonable block, for the next message */
        } else {
            free(b);
        }
    }
    s->used = 0;
    s->busy = false;
}

void
rpc_scratch_fini(rpc_scratch *s)
{
    rpc_scratch_reset(s);
    free(s->spare);
    s->spare = NULL;
}

ProtobufCAllocator *
rpc_scratch_take(rpc_scratch *s)
{
    if (s->busy)
        return NULL;
    s->busy = true;
    return &s->pa;
}

void
rpc_scratch_done(rpc_scratch *s, ProtobufCAllocator *pa, ProtobufCMessage *msg)
{
    if (pa == &s->pa) {
        rpc_scratch_reset(s);
        return;
    }
    if (msg != NULL)
        protobuf_c_message_free_unpacked(msg, NULL);
}

int
rpc_evb_write_direct(struct evbuffer *out, int fd)
{
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, fd);
    evbuffer_freeze(out, 1);
    return n;
}

/* One read(v) into in's free space; the bytes read, 0 at EOF, -1 (errno). */
static ssize_t
evb_read_chunk(struct evbuffer *in, int fd, size_t want, size_t *asked)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    ssize_t n;

    if (nv < 1) {
        errno = ENOMEM;
        return -1;
    }
    *asked = 0;
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
        *asked += v[i].iov_len;
    }
    n = nv == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len) : readv(fd, iov, nv);
    if (n <= 0) {
        (void)evbuffer_commit_space(in, v, 0);
        return n;
    }
    size_t left = (size_t)n;
    for (int i = 0; i < nv; i++) {
        v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
        left -= v[i].iov_len;
    }
    (void)evbuffer_commit_space(in, v, nv);
    return n;
}

/* rpc_bev_read_direct's read callback (what libevent's bufferevent_readcb
 * does, less the FIONREAD, the watermarks and the rate limits). */
static void
bev_direct_readcb(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t total = 0, asked = 0;
    ssize_t n;
    int err = 0;

    (void)what;
    evbuffer_unfreeze(in, 0); /* libevent keeps the end frozen outside its reads */
    do {
        n = evb_read_chunk(in, fd, total == 0 ? RPC_READ_FIRST : RPC_READ_NEXT, &asked);
        if (n > 0)
            total += (size_t)n;
        else if (n < 0)
            err = errno;
    } while (n > 0 && (size_t)n == asked && total < RPC_MAX_SINGLE_READ);
    evbuffer_freeze(in, 0);
    if (total > 0) /* the end or the error, if one came, again on the next turn */
        bufferevent_trigger(bev, EV_READ, 0);
    else if (n == 0 || (err != EAGAIN && err != EWOULDBLOCK && err != EINTR)) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_trigger_event(
            bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), 0);
    }
}

void
rpc_bev_read_direct(struct bufferevent *bev)
{
    struct event *ev = &bev->ev_read;
    evutil_socket_t fd = event_get_fd(ev);
    bool pending = event_pending(ev, EV_READ, NULL) != 0;

    if (fd < 0)
        return;
    if (pending)
        (void)event_del(ev);
    (void)event_assign(ev, bev->ev_base, fd, EV_READ | EV_PERSIST | EV_FINALIZE, bev_direct_readcb,
                       bev);
    if (pending)
        (void)event_add(ev, NULL);
}

/* The choices of the shared settings (rpc.h, RPC_CONF_*_ITEMS): index = value. */
const char *const rpc_conf_tls_client_auths[] = {"none", "optional", "required", NULL};
const char *const rpc_conf_log_levels[] = {"error", "warn", "info", "debug", NULL};
const char *const rpc_conf_log_formats[] = {"text", "json", NULL};

void
rpc_conf_http_addr(const char *listen, const char *http_listen, char *out, size_t n)
{
    const char *colon = strrchr(listen, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;

    if (strcmp(http_listen, "off") == 0)
        snprintf(out, n, "%s", "");
    else if (strcmp(http_listen, "auto") != 0)
        snprintf(out, n, "%s", http_listen);
    else
        snprintf(out, n, "%.*s:%ld", colon ? (int)(colon - listen) : 0, listen,
                 port > 0 ? port + 1000 : 0);
}
