/*
 * etcd/watch.c -- streamed watches.
 *
 * A watch POSTs {"create_request": ...} to /v3/watch on a connection of its
 * own and reads the answer as it streams: the gateway writes one JSON
 * object per line, {"result": WatchResponse} or {"error": ...}. The first
 * result says "created"; later ones carry events.
 *
 * Resuming without loss or repeats: next_rev is the first revision not yet
 * delivered. It starts at the caller's start_revision; a "created" answer
 * to a watch from "now" fixes it to header.revision + 1; every delivered
 * batch moves it past the batch's last event. When the stream breaks
 * (endpoint died, idle timeout, gateway error) the watch opens a new stream
 * on the client's current endpoint (after failing over) from next_rev, with
 * a backoff of 100 ms doubling to 2 s. Only a compacted next_rev ends the
 * watch (OM_E_NOTFOUND), because the events in between are gone.
 *
 * Freeing from inside the callback: evhttp is then in the middle of reading
 * the stream, so the request cannot be cancelled there; the watch is marked
 * freed (no more callbacks) and a zero-delay event frees it once evhttp
 * has returned. A watch that ended closes its stream the same way and waits
 * for the caller's etcd_watch_free.
 */
#define OM_LOG_MODULE "etcd"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_int.h"
#include "util/log.h"

/* Idle streams are reopened after this long: it bounds how long a hung
 * (not closed) endpoint can keep a watch silent. */
#define WATCH_IDLE_S 60
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 2000

struct etcd_watch {
    etcd_client *c;
    om_buf key;
    bool prefix;
    int64_t next_rev;
    etcd_watch_cb cb;
    void *arg;
    size_t ep;
    struct evhttp_connection *conn;
    struct evhttp_request *http;
    struct evbuffer *pending; /* bytes of a line not yet complete */
    struct event *retry;      /* reconnect timer; also the deferred free */
    int backoff_ms;
    bool live;
    bool in_cb;
    bool ended; /* reported its end; delivers nothing more */
    bool freed; /* etcd_watch_free ran inside the callback */
};

static void watch_open(etcd_watch *w);

static void
watch_close_stream(etcd_watch *w)
{
    /* freeing the connection frees its request without a callback */
    if (w->conn != NULL)
        evhttp_connection_free(w->conn);
    w->conn = NULL;
    w->http = NULL;
    w->live = false;
    evbuffer_drain(w->pending, evbuffer_get_length(w->pending));
}

static void
watch_destroy(etcd_watch *w)
{
    watch_close_stream(w);
    if (w->retry != NULL)
        event_free(w->retry);
    if (w->pending != NULL)
        evbuffer_free(w->pending);
    om_buf_free(&w->key);
    free(w);
}

static void
watch_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    etcd_watch *w = arg;

    if (w->freed) {
        watch_destroy(w);
        return;
    }
    watch_close_stream(w);
    if (!w->ended)
        watch_open(w);
}

static void
watch_schedule_reopen(etcd_watch *w, const char *why)
{
    struct timeval tv = {w->backoff_ms / 1000, (w->backoff_ms % 1000) * 1000};

    om_log(OM_LOG_INFO, "watch stream lost, reopening endpoint=%s why=%s next_rev=%lld",
           w->c->eps[w->ep].url, why, (long long)w->next_rev);
    w->live = false;
    etcd_failover(w->c, w->ep);
    evtimer_add(w->retry, &tv);
    w->backoff_ms =
        w->backoff_ms * 2 > WATCH_BACKOFF_MAX_MS ? WATCH_BACKOFF_MAX_MS : w->backoff_ms * 2;
}

/* Deliver b; returns false if the callback freed the watch. */
static bool
watch_deliver(etcd_watch *w, const etcd_watch_batch *b)
{
    w->in_cb = true;
    w->cb(b, w->arg);
    w->in_cb = false;
    return !w->freed;
}

static void
watch_end(etcd_watch *w, om_status st, const char *what)
{
    char msg[256];
    etcd_watch_batch b = {.st = st, .err = msg};

    snprintf(msg, sizeof(msg), "etcd %s watch: %s", w->c->eps[w->ep].url, what);
    om_log(OM_LOG_WARN, "%s", msg);
    w->ended = true; /* no reopen; the caller frees */
    w->live = false;
    w->in_cb = true;
    w->cb(&b, w->arg);
    w->in_cb = false;
}

/* One line of the stream. Returns false when the stream must not be read further. */
static bool
watch_line(etcd_watch *w, const char *line, size_t n)
{
    json_error_t jerr;
    json_t *root = json_loadb(line, n, 0, &jerr);
    json_t *res = root != NULL ? json_object_get(root, "result") : NULL;
    etcd_resp hdr = {.st = OM_OK};
    const json_t *events;
    om_arena *a = NULL;
    etcd_event *evs = NULL;
    size_t nev = 0;
    int64_t compact = 0;
    bool ok = true;

    if (res == NULL || !json_is_object(res)) {
        json_decref(root);
        watch_schedule_reopen(w, "error or unreadable line on the stream");
        return false;
    }
    (void)etcd_json_header(res, &hdr);
    (void)etcd_json_i64(res, "compact_revision", &compact);
    etcd_note_revision(w->c, hdr.revision);
    if (compact > 0) {
        json_decref(root);
        watch_end(w, OM_E_NOTFOUND, "start revision was compacted");
        return false;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        json_decref(root);
        watch_end(w, OM_E_UNAVAILABLE, "cancelled by etcd");
        return false;
    }
    if (json_is_true(json_object_get(res, "created"))) {
        w->live = true;
        w->backoff_ms = WATCH_BACKOFF_MIN_MS;
        if (w->next_rev == 0)
            w->next_rev = hdr.revision + 1;
    }
    events = json_object_get(res, "events");
    if (json_is_array(events) && json_array_size(events) > 0) {
        nev = json_array_size(events);
        if (om_arena_new(4096, &a) != OM_OK ||
            (evs = om_arena_alloc(a, nev * sizeof(*evs))) == NULL)
            ok = false;
        for (size_t i = 0; ok && i < nev; i++) {
            const json_t *e = json_array_get(events, i);
            const json_t *type = json_object_get(e, "type");

            evs[i].type = json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0
                              ? ETCD_EV_DELETE
                              : ETCD_EV_PUT;
            ok = etcd_json_kv(json_object_get(e, "kv"), a, &evs[i].kv) == OM_OK;
        }
        if (ok) {
            etcd_watch_batch b = {
                .st = OM_OK, .err = "", .revision = hdr.revision, .events = evs, .nevents = nev};

            w->next_rev = evs[nev - 1].kv.mod_revision + 1;
            ok = watch_deliver(w, &b);
            om_arena_free(a);
            json_decref(root);
            return ok;
        }
        om_arena_free(a);
        json_decref(root);
        watch_schedule_reopen(w, "event of an unexpected shape");
        return false;
    }
    json_decref(root);
    return true;
}

static void
watch_chunk_cb(struct evhttp_request *h, void *arg)
{
    etcd_watch *w = arg;
    char *line;
    size_t n;

    if (w->ended || w->freed || evtimer_pending(w->retry, NULL))
        return;
    evbuffer_add_buffer(w->pending, evhttp_request_get_input_buffer(h));
    while ((line = evbuffer_readln(w->pending, &n, EVBUFFER_EOL_LF)) != NULL) {
        bool go_on = n == 0 || watch_line(w, line, n);

        free(line);
        if (w->freed || w->ended) {
            /* close (or free) once evhttp has returned */
            event_active(w->retry, 0, 0);
            return;
        }
        if (!go_on)
            return;
    }
}

static void
watch_done_cb(struct evhttp_request *h, void *arg)
{
    etcd_watch *w = arg;

    w->http = NULL;
    if (w->ended || w->freed || evtimer_pending(w->retry, NULL))
        return;
    watch_schedule_reopen(w, h == NULL || evhttp_request_get_response_code(h) == 0
                                 ? "connection failed or closed"
                                 : "stream ended");
}

static void
watch_open(etcd_watch *w)
{
    etcd_client *c = w->c;
    json_t *create = etcd_json_key(om_buf_slice(&w->key), w->prefix);
    json_t *body = create != NULL ? json_object() : NULL;
    char *text = NULL;
    struct evhttp_request *h = NULL;
    struct timeval tv = {WATCH_IDLE_S, 0};

    w->ep = c->cur;
    if (body == NULL ||
        (w->next_rev > 0 && !etcd_json_set_i64(create, "start_revision", w->next_rev)) ||
        json_object_set_new(body, "create_request", create) != 0) {
        if (body == NULL)
            json_decref(create);
        goto fail;
    }
    create = NULL;
    text = json_dumps(body, JSON_COMPACT);
    w->conn = evhttp_connection_base_new(c->base, NULL, c->eps[w->ep].host,
                                         (unsigned short)c->eps[w->ep].port);
    if (text == NULL || w->conn == NULL)
        goto fail;
    evhttp_connection_set_timeout_tv(w->conn, &tv);
    h = evhttp_request_new(watch_done_cb, w);
    if (h == NULL)
        goto fail;
    evhttp_request_set_chunked_cb(h, watch_chunk_cb);
    evhttp_add_header(evhttp_request_get_output_headers(h), "Host", c->eps[w->ep].host);
    evhttp_add_header(evhttp_request_get_output_headers(h), "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(h), text, strlen(text));
    if (evhttp_make_request(w->conn, h, EVHTTP_REQ_POST, "/v3/watch") != 0)
        goto fail_made;
    w->http = h;
    free(text);
    json_decref(body);
    return;
fail:
    if (h != NULL)
        evhttp_request_free(h);
fail_made:
    free(text);
    json_decref(body);
    watch_schedule_reopen(w, "could not start the request");
}

om_status
etcd_watch_new(etcd_client *c, om_slice key, bool prefix, int64_t start_revision, etcd_watch_cb cb,
               void *arg, etcd_watch **out)
{
    etcd_watch *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return OM_ERR(OM_E_NOMEM);
    w->c = c;
    w->prefix = prefix;
    w->next_rev = start_revision > 0 ? start_revision : 0;
    w->cb = cb;
    w->arg = arg;
    w->backoff_ms = WATCH_BACKOFF_MIN_MS;
    w->pending = evbuffer_new();
    w->retry = evtimer_new(c->base, watch_retry_cb, w);
    if (w->pending == NULL || w->retry == NULL || om_buf_set(&w->key, key) != OM_OK) {
        watch_destroy(w);
        return OM_ERR(OM_E_NOMEM);
    }
    watch_open(w);
    *out = w;
    return OM_OK;
}

void
etcd_watch_free(etcd_watch *w)
{
    if (w == NULL)
        return;
    if (w->in_cb) {
        w->freed = true; /* watch_chunk_cb schedules the destruction */
        return;
    }
    watch_destroy(w);
}

bool
etcd_watch_is_live(const etcd_watch *w)
{
    return w->live;
}
