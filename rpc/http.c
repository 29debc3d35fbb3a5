/*
 * rpc/http.c -- the HTTP side of a server: GET /healthz, /readyz and
 * /metrics on their own listener, with libevent's evhttp on the caller's
 * event_base.
 *
 * One health callback answers both probes. /healthz: 200 "ok\n" when all is
 * well, 429 "degraded: <reason>\n" when the server serves but not everything
 * (the callback returned OM_OK with a reason; 429 is Consul's "warning"), 503
 * "<reason>\n" when it cannot serve. /readyz, for load balancers and
 * readiness probes: 200 "ready\n" unless it cannot serve (then 503), so a
 * degraded server stays in rotation. The metrics callback appends the
 * Prometheus text exposition, followed by the process_* metrics and
 * objmeta_build_info (rpc/prom.c) that every server shares; it is sent as
 * text/plain; version=0.0.4. Callbacks run on the loop thread, so they may
 * read loop-owned state (server counters) without locks.
 */
#define OM_LOG_MODULE "rpc"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_int.h"
#include "util/log.h"

struct rpc_http {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    rpc_health_fn health;
    rpc_metrics_fn metrics;
    void *arg;
    int port;
};

static void
http_reply_text(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                const void *body, size_t n)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evbuffer_add(b, body, n);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

/* /healthz (ready_only false) or /readyz (true). */
static void
http_health(rpc_http *h, struct evhttp_request *req, bool ready_only)
{
    om_buf reason = OM_BUF_INIT;
    om_status st = h->health != NULL ? h->health(h->arg, &reason) : OM_OK;

    if (st == OM_OK && ready_only) {
        http_reply_text(req, 200, "OK", "text/plain", "ready\n", 6);
    } else if (st == OM_OK && reason.n == 0) {
        http_reply_text(req, 200, "OK", "text/plain", "ok\n", 3);
    } else if (st == OM_OK) {
        om_buf body = OM_BUF_INIT;
        if (om_buf_printf(&body, "degraded: %.*s\n", (int)reason.n, (const char *)reason.p) ==
            OM_OK)
            http_reply_text(req, 429, "Degraded", "text/plain", body.p, body.n);
        else
            evhttp_send_error(req, 500, "out of memory");
        om_buf_free(&body);
    } else {
        if (reason.n == 0)
            (void)om_buf_printf(&reason, "%s", om_status_str(st));
        (void)om_buf_append_byte(&reason, '\n');
        http_reply_text(req, 503, "Service Unavailable", "text/plain", reason.p, reason.n);
    }
    om_buf_free(&reason);
}

static void
http_metrics(rpc_http *h, struct evhttp_request *req)
{
    om_buf out = OM_BUF_INIT;
    om_status st = h->metrics != NULL ? h->metrics(h->arg, &out) : OM_OK;

    if (st == OM_OK)
        st = rpc_prom_process(&out);

    if (st != OM_OK) {
        om_log(OM_LOG_WARN, "metrics rendering failed err=%s", om_status_str(st));
        evhttp_send_error(req, 500, "metrics unavailable");
    } else {
        http_reply_text(req, 200, "OK", "text/plain; version=0.0.4", out.p, out.n);
    }
    om_buf_free(&out);
}

static void
http_gencb(struct evhttp_request *req, void *arg)
{
    rpc_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

    if (path == NULL || path[0] == '\0')
        path = "/";
    bool known = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
                 strcmp(path, "/metrics") == 0;
    if (!known) {
        evhttp_send_error(req, 404, "not found");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "method not allowed");
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0)
        http_health(h, req, path[1] == 'r');
    else
        http_metrics(h, req);
}

om_status
rpc_http_open(struct event_base *base, const char *listen, rpc_health_fn health,
              rpc_metrics_fn metrics, void *arg, rpc_http **out)
{
    char host[256];
    int port;
    rpc_http *h;

    if (base == NULL || listen == NULL)
        return OM_ERR(OM_E_INVALID);
    if (rpc_addr_split(listen, host, sizeof(host), &port) != OM_OK) {
        om_log(OM_LOG_ERROR, "http: bad listen address listen=%s", listen);
        return OM_ERR(OM_E_INVALID);
    }
    h = calloc(1, sizeof(*h));
    rpc_ignore_sigpipe();
    if (h == NULL)
        return OM_ERR(OM_E_NOMEM);
    h->health = health;
    h->metrics = metrics;
    h->arg = arg;
    h->http = evhttp_new(base);
    if (h->http == NULL) {
        free(h);
        return OM_ERR(OM_E_NOMEM);
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    /* A scraper or a probe sends its request at once and reads a few KiB:
     * a connection that takes longer (a request line without its CRLF, a
     * reader that stalls) is closed after RPC_HTTP_TIMEOUT_S (issue 13). */
    evhttp_set_timeout(h->http, RPC_HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 65536);
    evhttp_set_gencb(h->http, http_gencb, h);
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (h->sock == NULL) {
        int err = errno;
        om_log(OM_LOG_ERROR, "http: cannot listen listen=%s err=%s", listen, strerror(err));
        evhttp_free(h->http);
        free(h);
        return OM_ERR(err == EADDRINUSE ? OM_E_UNAVAILABLE : OM_E_IO);
    }
    h->port = rpc_sock_port(evhttp_bound_socket_get_fd(h->sock));
    om_log(OM_LOG_INFO, "http listening listen=%s port=%d", listen, h->port);
    *out = h;
    return OM_OK;
}

int
rpc_http_port(const rpc_http *h)
{
    return h->port;
}

void
rpc_http_close(rpc_http *h)
{
    if (h == NULL)
        return;
    evhttp_free(h->http);
    free(h);
}
