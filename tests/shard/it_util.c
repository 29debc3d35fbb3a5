/*
 * tests/shard/it_util.c -- see it_util.h.
 */
#include "it_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/coding.h"

tu_proc *
it_start_shard(const char *data_dir, const char *const *extra)
{
    static const char *const defaults[] = {"--sync-mode=always", "--log-level=info", NULL};
    tu_proc_opts o = {.data_dir = data_dir, .extra = extra ? extra : defaults};
    tu_proc *p = tu_proc_start("$OBJMETA_SHARD", &o);

    ck_assert_int_gt(tu_proc_port(p, "rpc"), 0);
    return p;
}

const char *
it_addr(const tu_proc *p)
{
    static char buf[64];
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", tu_proc_port(p, "rpc"));
    return buf;
}

omc_client *
it_client(const tu_proc *p)
{
    omc_client *c = NULL;
    char msg[256] = "";
    om_status st = omc_connect(it_addr(p), 5000, &c, msg, sizeof(msg));
    ck_assert_msg(st == OM_OK, "connect: %s", msg);
    omc_set_timeout(c, 20000);
    return c;
}

int
it_sock(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s",
                  strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

bool
it_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

bool
it_send_request(int fd, const Objmeta__Request *req)
{
    size_t n = objmeta__request__get_packed_size(req);
    uint8_t *buf = malloc(n + 4);
    bool ok;

    ck_assert_ptr_nonnull(buf);
    om_put_be32(buf, (uint32_t)n);
    objmeta__request__pack(req, buf + 4);
    ok = it_send(fd, buf, n + 4);
    free(buf);
    return ok;
}

/* Read exactly n bytes before the deadline. */
static bool
recv_exact(int fd, uint8_t *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        uint64_t now = tu_now_ms();
        if (now >= deadline)
            return false;
        int r = poll(&pf, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t got = recv(fd, p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

Objmeta__Response *
it_recv_response(int fd, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;
    uint8_t hdr[4], *buf;
    Objmeta__Response *r;
    uint32_t n;

    if (!recv_exact(fd, hdr, 4, deadline))
        return NULL;
    n = om_get_be32(hdr);
    ck_assert_uint_le(n, 64u << 20);
    buf = malloc(n + 1);
    ck_assert_ptr_nonnull(buf);
    if (!recv_exact(fd, buf, n, deadline)) {
        free(buf);
        return NULL;
    }
    r = objmeta__response__unpack(NULL, n, buf);
    free(buf);
    ck_assert_msg(r != NULL, "server sent an undecodable response");
    return r;
}

bool
it_wait_closed(int fd, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;
    uint8_t buf[4096];

    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        uint64_t now = tu_now_ms();
        if (now >= deadline)
            return false;
        int r = poll(&pf, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got == 0 || (got < 0 && errno == ECONNRESET))
            return true;
        if (got < 0 && errno != EINTR)
            return true;
    }
}

double
it_metric(const char *body, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = body; (p = strstr(p, series)) != NULL; p += n)
        if ((p == body || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

int
it_http_get(int port, const char *path, char **body)
{
    int fd = it_sock(port), code = -1;
    char req[256];
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap + 1);
    uint64_t deadline = tu_now_ms() + 5000;

    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ck_assert(it_send(fd, req, strlen(req)));
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        uint64_t now = tu_now_ms();
        ck_assert_msg(now < deadline, "HTTP GET %s timed out", path);
        if (poll(&pf, 1, (int)(deadline - now)) <= 0)
            continue;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t got = recv(fd, buf + n, cap - n, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = 0;
    sscanf(buf, "HTTP/1.%*d %d", &code);
    char *b = strstr(buf, "\r\n\r\n");
    *body = strdup(b ? b + 4 : "");
    free(buf);
    return code;
}

void
it_check_alive(const tu_proc *p)
{
    omc_client *c = it_client(p);
    om_buf data = OM_BUF_INIT;
    omc_info info;
    char *server = NULL;

    ck_assert_msg(omc_ping(c, &server) == OM_OK, "ping: %s", omc_last_message(c));
    ck_assert_ptr_nonnull(strstr(server, "objmeta-shard"));
    ck_assert_int_eq(omc_store(c, "alive", "probe", om_slice_from_str("still here"), NULL, NULL),
                     OM_OK);
    ck_assert_int_eq(omc_retrieve(c, "alive", "probe", &info, &data), OM_OK);
    ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str("still here")));
    omc_info_free(&info);
    om_buf_free(&data);
    free(server);
    omc_close(c);
}

void
it_verify_identical(const char *coord, const char *flag, const char *value)
{
    const char *argv[] = {"objmeta", "--addr", coord, "admin", "verify", flag, value, NULL};
    const char **av = coord != NULL ? argv : argv + 2; /* av[0] is replaced by the binary */
    uint64_t deadline = tu_now_ms() + 20000;

    if (coord == NULL)
        av[0] = "objmeta";
    for (;;) {
        char *out = NULL, *err = NULL;
        int rc = tu_run_cmd("$OBJMETA_CLI", av, 30000, &out, &err);
        bool same = rc == 0 && out != NULL && strstr(out, "identical") != NULL;

        if (!same && tu_now_ms() >= deadline)
            ck_abort_msg("verify %s %s: exit %d: %s %s", flag, value, rc, out ? out : "",
                         err ? err : "");
        free(out);
        free(err);
        if (same)
            return;
        struct timespec ts = {0, 200 * 1000000L}; /* poll interval: backups apply last */
        nanosleep(&ts, NULL);
    }
}

Objmeta__Status
it_store_at_epoch(rpc_sync_client *c, const char *bucket, const char *key, const char *data,
                  uint64_t epoch, char *msg, size_t cap)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    Objmeta__Status status;

    st.bucket = (char *)bucket;
    st.key = (char *)key;
    st.data.data = (uint8_t *)data;
    st.data.len = strlen(data);
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &st;
    req.ring_epoch = epoch;
    ck_assert(rpc_sync_client_call(c, &req, 5000, &r) == OM_OK);
    status = r->status;
    snprintf(msg, cap, "%s", r->message);
    rpc_response_free(r);
    return status;
}
