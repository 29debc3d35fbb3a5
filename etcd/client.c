/*
 * etcd/client.c -- endpoints and the life of one request.
 *
 * A request (etcd_req) is a JSON body POSTed to a path of the gateway. It
 * goes to the client's current endpoint over that endpoint's evhttp
 * connection (HTTP/1.1 keep-alive; evhttp queues requests on a connection
 * and sends them one after another, which is plenty for control-plane
 * traffic). Its life:
 *
 *   queued/in flight --answer 200--> parsed --> callback --> freed
 *          |--transport failure or gRPC Unavailable--> failover; if the
 *          |     request may be retried and an untried endpoint is left
 *          |     before the deadline: sent again there, else completed
 *          |     with OM_E_UNAVAILABLE
 *          |--other HTTP error--> completed with the mapped status
 *          `--deadline timer--> cancelled, failover, OM_E_TIMEOUT
 *
 * Every completion, including failures that evhttp reports inside
 * evhttp_make_request, goes through the request's own event, so a callback
 * never runs inside the call that queued it (callers may hold state that a
 * nested callback would see half-built).
 *
 * The connection's own read/write timeout is half the request deadline, so
 * a hung endpoint is given up early enough for a retry elsewhere.
 */
#define OM_LOG_MODULE "etcd"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_int.h"
#include "util/clock.h"
#include "util/log.h"

struct etcd_req {
    etcd_client *c;
    etcd_req *prev, *next;
    char path[48];
    char *body;
    size_t body_n;
    bool retry;
    size_t tries; /* endpoints tried so far */
    size_t ep;    /* endpoint of the current attempt */
    uint64_t sent_ns;
    uint64_t deadline_ms;
    struct evhttp_request *http; /* in flight; NULL otherwise */
    struct event *timer;         /* deadline */
    struct event *kick;          /* deferred failure handling */
    enum evhttp_request_error last_error;
    bool have_error;
    etcd_parse_fn parse;
    etcd_cb cb;
    void *arg;
};

void
etcd_opts_init(etcd_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 2000;
}

/* ---- endpoints ---- */

static om_status
endpoint_parse(const char *s, size_t n, etcd_endpoint *ep, char *err, size_t errlen)
{
    const char *p = s, *colon;
    char *end;
    long port;
    size_t hn;

    if (n >= 7 && strncmp(s, "http://", 7) == 0) {
        p += 7;
        n -= 7;
    } else if (n >= 8 && strncmp(s, "https://", 8) == 0) {
        return om_err_invalid(err, errlen, "etcd endpoint '%.*s': https is not supported", (int)n,
                              s);
    }
    while (n > 0 && p[n - 1] == '/')
        n--;
    colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return om_err_invalid(err, errlen, "etcd endpoint '%.*s': expected http://host:port",
                              (int)n, p);
    hn = (size_t)(colon - p);
    port = strtol(colon + 1, &end, 10);
    if (end != p + n || end == colon + 1 || port <= 0 || port > 65535)
        return om_err_invalid(err, errlen, "etcd endpoint '%.*s': bad port", (int)n, p);
    ep->host = strndup(p, hn);
    ep->url = malloc(hn + 16 + 8);
    if (ep->host == NULL || ep->url == NULL)
        return OM_ERR(OM_E_NOMEM);
    snprintf(ep->url, hn + 24, "http://%s:%ld", ep->host, port);
    ep->port = (int)port;
    return OM_OK;
}

om_status
etcd_client_new(struct event_base *base, const etcd_opts *o, char *err, size_t errlen,
                etcd_client **out)
{
    etcd_client *c;
    const char *s = o->endpoints, *comma;
    om_status st;

    if (s == NULL || *s == '\0')
        return om_err_invalid(err, errlen, "etcd endpoints: empty list");
    if (o->timeout_ms <= 0)
        return om_err_invalid(err, errlen, "etcd timeout: %d ms is not positive", o->timeout_ms);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->base = base;
    c->timeout_ms = o->timeout_ms;
    for (;;) {
        size_t n;
        etcd_endpoint *eps;

        comma = strchr(s, ',');
        n = comma ? (size_t)(comma - s) : strlen(s);
        if (n == 0) {
            st = om_err_invalid(err, errlen, "etcd endpoints: empty entry in '%s'", o->endpoints);
            goto fail;
        }
        eps = realloc(c->eps, (c->neps + 1) * sizeof(*eps));
        if (eps == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto fail;
        }
        c->eps = eps;
        memset(&c->eps[c->neps], 0, sizeof(c->eps[0]));
        c->neps++;
        OM_GOTO(endpoint_parse(s, n, &c->eps[c->neps - 1], err, errlen));
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    *out = c;
    return OM_OK;
fail:
    etcd_client_free(c);
    return st;
}

static void req_free(etcd_req *r);

void
etcd_client_free(etcd_client *c)
{
    if (c == NULL)
        return;
    while (c->reqs != NULL)
        req_free(c->reqs);
    for (size_t i = 0; i < c->neps; i++) {
        if (c->eps[i].conn != NULL)
            evhttp_connection_free(c->eps[i].conn);
        free(c->eps[i].host);
        free(c->eps[i].url);
    }
    free(c->eps);
    free(c);
}

void
etcd_drop_requests(etcd_client *c, void *arg)
{
    etcd_req *r = c->reqs, *next;

    for (; r != NULL; r = next) {
        next = r->next;
        if (r->arg == arg)
            req_free(r);
    }
}

const char *
etcd_client_endpoint(const etcd_client *c)
{
    return c->eps[c->cur].url;
}

void
etcd_client_stats(const etcd_client *c, etcd_stats *out)
{
    *out = c->stats;
}

void
etcd_failover(etcd_client *c, size_t ep)
{
    if (ep != c->cur || c->neps < 2)
        return;
    c->cur = (c->cur + 1) % c->neps;
    c->stats.failovers++;
    om_log(OM_LOG_WARN, "endpoint failed, trying the next from=%s to=%s", c->eps[ep].url,
           c->eps[c->cur].url);
}

void
etcd_note_revision(etcd_client *c, int64_t rev)
{
    if (rev > c->stats.revision)
        c->stats.revision = rev;
}

static struct evhttp_connection *
endpoint_conn(etcd_client *c, size_t i)
{
    etcd_endpoint *ep = &c->eps[i];

    if (ep->conn == NULL) {
        int half = c->timeout_ms / 2 > 100 ? c->timeout_ms / 2 : 100;
        struct timeval tv = {half / 1000, (half % 1000) * 1000};

        ep->conn = evhttp_connection_base_new(c->base, NULL, ep->host, (unsigned short)ep->port);
        if (ep->conn == NULL)
            return NULL;
        evhttp_connection_set_timeout_tv(ep->conn, &tv);
        evhttp_connection_set_retries(ep->conn, 0);
    }
    return ep->conn;
}

/* ---- one request ---- */

static void
req_free(etcd_req *r)
{
    etcd_client *c = r->c;

    if (r->http != NULL)
        evhttp_cancel_request(r->http);
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    if (r->timer != NULL)
        event_free(r->timer);
    if (r->kick != NULL)
        event_free(r->kick);
    free(r->body);
    free(r);
}

static void
req_complete(etcd_req *r, etcd_resp *resp)
{
    etcd_client *c = r->c;
    etcd_cb cb = r->cb;
    void *arg = r->arg;

    c->stats.requests++;
    c->stats.latency_us += (om_clock_mono_ns() - r->sent_ns) / 1000;
    if (resp->st != OM_OK)
        c->stats.errors++;
    else
        etcd_note_revision(c, resp->revision);
    r->http = NULL; /* evhttp owns and frees it after the callback */
    req_free(r);
    if (cb != NULL)
        cb(resp, arg);
}

static void
req_fail(etcd_req *r, om_status st, const char *fmt, const char *detail)
{
    char msg[512];
    etcd_resp resp = {.st = st, .err = msg};

    snprintf(msg, sizeof(msg), "etcd %s %s: %s%s", r->c->eps[r->ep].url, r->path + 4, fmt,
             detail ? detail : "");
    om_log(OM_LOG_DEBUG, "%s", msg);
    req_complete(r, &resp);
}

static om_status
grpc_code_status(int64_t code)
{
    switch (code) {
    case 3:
    case 11:
        return OM_E_INVALID;
    case 4:
        return OM_E_TIMEOUT;
    case 5:
        return OM_E_NOTFOUND;
    case 8:
        return OM_E_BUSY;
    case 9:
        return OM_E_PRECONDITION;
    case 14:
        return OM_E_UNAVAILABLE;
    default:
        return OM_E_INTERNAL;
    }
}

static const char *
http_error_name(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:
        return "timed out";
    case EVREQ_HTTP_EOF:
        return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid HTTP header";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection error";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "answer too long";
    default:
        return "request cancelled";
    }
}

static void req_send(etcd_req *r);

/* A transport failure on r's endpoint: fail over, retry or give up. */
static void
req_transport_failed(etcd_req *r)
{
    const char *why = r->have_error ? http_error_name(r->last_error) : "connection failed";

    r->http = NULL;
    etcd_failover(r->c, r->ep);
    if (r->retry && r->tries < r->c->neps && om_clock_mono_ms() < r->deadline_ms) {
        req_send(r);
        return;
    }
    req_fail(r, OM_E_UNAVAILABLE, why, NULL);
}

static void
req_parse(etcd_req *r, struct evhttp_request *h)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(h);
    size_t n = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    int code = evhttp_request_get_response_code(h);
    json_error_t jerr;
    json_t *root = body != NULL ? json_loadb(body, n, 0, &jerr) : NULL;
    etcd_resp resp = {.st = OM_OK, .err = ""};
    om_arena *a = NULL;
    om_status st;

    if (root == NULL || !json_is_object(root)) {
        char detail[96];

        snprintf(detail, sizeof(detail), " (HTTP %d, %zu bytes)", code, n);
        json_decref(root);
        r->http = NULL;
        req_fail(r, code == 200 ? OM_E_CORRUPT : OM_E_UNAVAILABLE, "unparseable answer", detail);
        return;
    }
    if (code != 200) {
        int64_t gcode = 0;
        const json_t *m = json_object_get(root, "error");
        char msg[300];

        if (m == NULL)
            m = json_object_get(root, "message");
        (void)etcd_json_i64(root, "code", &gcode);
        snprintf(msg, sizeof(msg), "%s (HTTP %d)",
                 json_is_string(m) ? json_string_value(m) : "no message", code);
        json_decref(root);
        st = grpc_code_status(gcode);
        r->http = NULL;
        if (st == OM_E_UNAVAILABLE) {
            etcd_failover(r->c, r->ep);
            if (r->retry && r->tries < r->c->neps && om_clock_mono_ms() < r->deadline_ms) {
                req_send(r);
                return;
            }
        }
        req_fail(r, st, msg, NULL);
        return;
    }
    /* keep-alive answers come wrapped in a stream's {"result": ...} */
    st = om_arena_new(4096, &a);
    if (st == OM_OK) {
        json_t *obj = json_object_get(root, "result");

        obj = obj != NULL && json_object_size(root) == 1 ? obj : root;
        st = etcd_json_header(obj, &resp);
        if (st == OM_OK && r->parse != NULL)
            st = r->parse(obj, a, &resp);
    }
    json_decref(root);
    r->http = NULL;
    if (st != OM_OK && resp.st == OM_OK) {
        om_arena_free(a);
        req_fail(r, st, st == OM_E_NOMEM ? "out of memory" : "answer of an unexpected shape", NULL);
        return;
    }
    if (resp.st != OM_OK && resp.err[0] == '\0') {
        /* a parser's verdict (lease not found): name etcd and the endpoint */
        char msg[256];

        snprintf(msg, sizeof(msg), "etcd %s %s: %s", r->c->eps[r->ep].url, r->path + 4,
                 om_status_str(resp.st));
        resp.err = msg;
        req_complete(r, &resp);
    } else {
        req_complete(r, &resp);
    }
    om_arena_free(a);
}

static void
req_done_cb(struct evhttp_request *h, void *arg)
{
    etcd_req *r = arg;

    if (h == NULL || evhttp_request_get_response_code(h) == 0) {
        req_transport_failed(r);
        return;
    }
    req_parse(r, h);
}

static void
req_error_cb(enum evhttp_request_error e, void *arg)
{
    etcd_req *r = arg;

    r->last_error = e;
    r->have_error = true;
}

static void
req_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    req_transport_failed(arg);
}

static void
req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    etcd_req *r = arg;
    char detail[48];

    if (r->http != NULL) {
        /* runs req_error_cb at once, never req_done_cb */
        evhttp_cancel_request(r->http);
        r->http = NULL;
    }
    etcd_failover(r->c, r->ep);
    snprintf(detail, sizeof(detail), "%d ms", r->c->timeout_ms);
    req_fail(r, OM_E_TIMEOUT, "no answer within ", detail);
}

static void
req_send(etcd_req *r)
{
    etcd_client *c = r->c;
    struct evhttp_connection *conn;
    struct evhttp_request *h;
    struct evkeyvalq *hdr;

    r->ep = c->cur;
    r->tries++;
    r->have_error = false;
    conn = endpoint_conn(c, r->ep);
    h = conn != NULL ? evhttp_request_new(req_done_cb, r) : NULL;
    if (h == NULL) {
        event_active(r->kick, 0, 0);
        return;
    }
    evhttp_request_set_error_cb(h, req_error_cb);
    hdr = evhttp_request_get_output_headers(h);
    evhttp_add_header(hdr, "Host", c->eps[r->ep].host);
    evhttp_add_header(hdr, "Content-Type", "application/json");
    if (evbuffer_add(evhttp_request_get_output_buffer(h), r->body, r->body_n) != 0) {
        evhttp_request_free(h);
        event_active(r->kick, 0, 0);
        return;
    }
    /* evhttp frees h itself when this fails */
    if (evhttp_make_request(conn, h, EVHTTP_REQ_POST, r->path) != 0) {
        event_active(r->kick, 0, 0);
        return;
    }
    r->http = h;
}

om_status
etcd_call(etcd_client *c, const char *path, json_t *body, bool retry, etcd_parse_fn parse,
          etcd_cb cb, void *arg)
{
    etcd_req *r;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};

    if (body == NULL)
        return OM_ERR(OM_E_NOMEM);
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        json_decref(body);
        return OM_ERR(OM_E_NOMEM);
    }
    r->c = c;
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    r->timer = evtimer_new(c->base, req_timer_cb, r);
    r->kick = event_new(c->base, -1, 0, req_kick_cb, r);
    if (r->body == NULL || r->timer == NULL || r->kick == NULL) {
        req_free(r);
        return OM_ERR(OM_E_NOMEM);
    }
    r->body_n = strlen(r->body);
    r->retry = retry;
    r->parse = parse;
    r->cb = cb;
    r->arg = arg;
    r->sent_ns = om_clock_mono_ns();
    r->deadline_ms = om_clock_mono_ms() + (uint64_t)c->timeout_ms;
    evtimer_add(r->timer, &tv);
    req_send(r);
    return OM_OK;
}
