/*
 * bench/replication/peer_write_bench.c -- the same durable-write load as
 * objmeta_bench's Store, against the replicated peers that
 * bench/replication/compare_replication.sh sets objmeta's replica groups
 * beside:
 *
 *   --target redis   SET key value, each followed by WAIT <replicas> 0 on the
 *                    same connection (the write counts when WAIT answers:
 *                    Redis then knows the replicas *received* it -- a weaker
 *                    promise than objmeta's, whose backups have it durable)
 *   --target etcd    PUT through etcd's v3 JSON gateway (POST /v3/kv/put,
 *                    HTTP/1.1 keep-alive, pipelined), which etcd answers once
 *                    a quorum has the entry in its raft log on disk
 *
 * N connections on one libevent loop, each keeping `pipeline` writes in
 * flight (a write is one request for etcd and the SET+WAIT pair for Redis),
 * on keys drawn uniformly from `keys`, with `value-size` random bytes per
 * value (bench/common/bench_gen.h, as objmeta_bench --values random), for
 * `duration`. Latency from send to answer goes into bench_hist.h's histogram;
 * the last line is the RESULT line the script parses (op=put).
 *
 * Single-threaded like objmeta_bench and redis-benchmark, so the load
 * generator costs each side the same one core.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/common/bench_gen.h"
#include "bench/common/bench_hist.h"
#include "util/base64.h"
#include "util/clock.h"
#include "util/conf.h"

enum { TARGET_REDIS, TARGET_ETCD };
#define PIPE_MAX 256

typedef struct pconn pconn;

typedef struct pbench {
    struct event_base *base;
    pconn *conns;
    int nconn, pipeline, target, redis_wait;
    uint64_t keys, rng;
    bg_values values;
    const char *host;
    char port[16];
    bool stopping;
    uint64_t ops, errors;
    bh_hist h;
    char last_error[256];
} pbench;

struct pconn {
    pbench *b;
    struct bufferevent *bev;
    uint64_t t0[PIPE_MAX]; /* send times of the writes in flight, oldest first (a ring) */
    int head, n;
    int parts; /* redis: replies still due for the oldest write (SET's, then WAIT's) */
    /* etcd: where the parser is in the current answer */
    int http_state; /* 0 status line, 1 headers, 2 body */
    int http_status;
    long body_left;
};

static void
fail(pbench *b, const char *fmt, const char *what)
{
    b->errors++;
    snprintf(b->last_error, sizeof(b->last_error), fmt, what);
}

static void
issue(pconn *c)
{
    pbench *b = c->b;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t vbuf[BG_JSON_MAX + 4096];
    const uint8_t *v;
    char key[32];
    uint64_t k = bg_rand(&b->rng) % b->keys;
    int klen = snprintf(key, sizeof(key), "key:%012" PRIu64, k);
    size_t vlen = bg_value(&b->values, k ^ bg_rand(&b->rng), vbuf, &v);

    if (b->target == TARGET_REDIS) {
        evbuffer_add_printf(out, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%zu\r\n", klen, key, vlen);
        evbuffer_add(out, v, vlen);
        evbuffer_add(out, "\r\n", 2);
        if (b->redis_wait > 0)
            evbuffer_add_printf(out, "*3\r\n$4\r\nWAIT\r\n$1\r\n%d\r\n$1\r\n0\r\n",
                                b->redis_wait); /* 0..9: one digit */
    } else {
        om_buf body = OM_BUF_INIT;
        if (om_buf_append(&body, "{\"key\":\"", 8) != OM_OK ||
            om_base64_encode(om_slice_make(key, (size_t)klen), &body) != OM_OK ||
            om_buf_append(&body, "\",\"value\":\"", 11) != OM_OK ||
            om_base64_encode(om_slice_make(v, vlen), &body) != OM_OK ||
            om_buf_append(&body, "\"}", 2) != OM_OK) {
            fprintf(stderr, "peer_write_bench: out of memory\n");
            exit(1);
        }
        evbuffer_add_printf(out,
                            "POST /v3/kv/put HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                            "application/json\r\nContent-Length: %zu\r\n\r\n",
                            b->host, b->port, body.n);
        evbuffer_add(out, body.p, body.n);
        om_buf_free(&body);
    }
    c->t0[(c->head + c->n) % PIPE_MAX] = om_clock_mono_ns();
    if (c->n++ == 0)
        c->parts = b->redis_wait > 0 ? 2 : 1;
}

/* The oldest write in flight got its (last) answer. */
static void
complete(pconn *c, bool ok)
{
    pbench *b = c->b;

    if (!b->stopping) {
        if (ok) {
            b->ops++;
            bh_add(&b->h, om_clock_mono_ns() - c->t0[c->head]);
        }
    }
    c->head = (c->head + 1) % PIPE_MAX;
    c->n--;
    c->parts = b->redis_wait > 0 ? 2 : 1;
    if (!b->stopping)
        issue(c);
}

static void
read_redis(pconn *c, struct evbuffer *in)
{
    char *line;
    size_t n;

    while (c->n > 0 && (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
        bool ok = line[0] == '+' || line[0] == ':';
        if (!ok)
            fail(c->b, "redis answered %s", line);
        else if (line[0] == ':' && atoi(line + 1) < c->b->redis_wait)
            fail(c->b, "WAIT counted fewer replicas than asked: %s", line);
        free(line);
        if (--c->parts == 0)
            complete(c, ok);
    }
}

static void
read_etcd(pconn *c, struct evbuffer *in)
{
    char *line;
    size_t n;

    while (c->n > 0) {
        if (c->http_state == 2) {
            if ((long)evbuffer_get_length(in) < c->body_left)
                return;
            evbuffer_drain(in, (size_t)c->body_left);
            c->http_state = 0;
            if (c->http_status != 200)
                fail(c->b, "etcd answered HTTP %s", c->http_status == 0 ? "?" : "non-200");
            complete(c, c->http_status == 200);
            continue;
        }
        if ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) == NULL)
            return;
        if (c->http_state == 0) {
            c->http_status = 0;
            c->body_left = -1;
            if (sscanf(line, "HTTP/1.%*d %d", &c->http_status) != 1)
                fail(c->b, "not an HTTP status line: %s", line);
            c->http_state = 1;
        } else if (n == 0) {
            if (c->body_left < 0) {
                fprintf(stderr, "peer_write_bench: etcd's answer has no Content-Length\n");
                exit(1);
            }
            c->http_state = 2;
        } else if (strncasecmp(line, "Content-Length:", 15) == 0) {
            c->body_left = strtol(line + 15, NULL, 10);
        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            fprintf(stderr, "peer_write_bench: chunked answers are not supported: %s\n", line);
            exit(1);
        }
        free(line);
    }
}

static void
readcb(struct bufferevent *bev, void *arg)
{
    pconn *c = arg;

    if (c->b->target == TARGET_REDIS)
        read_redis(c, bufferevent_get_input(bev));
    else
        read_etcd(c, bufferevent_get_input(bev));
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
    pconn *c = arg;

    if (what & BEV_EVENT_CONNECTED)
        return;
    if (!c->b->stopping) {
        fprintf(stderr, "peer_write_bench: connection to %s:%s lost (%s)\n", c->b->host, c->b->port,
                (what & BEV_EVENT_EOF) ? "closed by the server" : "error");
        exit(1);
    }
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
    pbench *b = arg;

    b->stopping = true;
    event_base_loopbreak(b->base);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: peer_write_bench --target redis|etcd --addr host:port [--connections 50]\n"
            "       [--pipeline 1] [--keys 2000000] [--value-size 256] [--duration 3s]\n"
            "       [--redis-wait 2] [--seed N]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    pbench b = {0};
    const char *addr = NULL, *target = NULL;
    int64_t duration_ms = 3000;
    long value_size = 256;
    uint64_t seed = 1;
    char host[256];
    const char *colon = NULL;
    struct timeval tv;
    struct event *stop;
    double secs;
    uint64_t t0;

    b.nconn = 50;
    b.pipeline = 1;
    b.keys = 2000000;
    b.redis_wait = 2;
    if (argc % 2 == 0)
        usage(); /* every option takes a value */
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--target") == 0)
            target = v;
        else if (strcmp(a, "--addr") == 0)
            addr = v;
        else if (strcmp(a, "--connections") == 0)
            b.nconn = atoi(v);
        else if (strcmp(a, "--pipeline") == 0)
            b.pipeline = atoi(v);
        else if (strcmp(a, "--keys") == 0)
            b.keys = strtoull(v, NULL, 10);
        else if (strcmp(a, "--value-size") == 0)
            value_size = atol(v);
        else if (strcmp(a, "--redis-wait") == 0)
            b.redis_wait = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--duration") == 0) {
            if (om_parse_duration_ms(v, &duration_ms) != OM_OK || duration_ms <= 0) {
                fprintf(stderr, "peer_write_bench: --duration: not a duration: %s\n", v);
                return 2;
            }
        } else
            usage();
    }
    if (target == NULL || addr == NULL || (colon = strrchr(addr, ':')) == NULL ||
        (size_t)(colon - addr) >= sizeof(host) || b.nconn < 1 || b.pipeline < 1 ||
        b.pipeline > PIPE_MAX || b.keys == 0 || value_size < 1 || value_size > 4096 ||
        b.redis_wait < 0 || b.redis_wait > 9)
        usage();
    if (strcmp(target, "redis") == 0)
        b.target = TARGET_REDIS;
    else if (strcmp(target, "etcd") == 0)
        b.target = TARGET_ETCD;
    else
        usage();
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    b.host = host;
    snprintf(b.port, sizeof(b.port), "%s", colon + 1);
    b.rng = seed ? seed : 1;
    if (!bg_values_init(&b.values, BG_VALUES_RANDOM, (size_t)value_size, seed)) {
        fprintf(stderr, "peer_write_bench: out of memory\n");
        return 1;
    }
    b.base = event_base_new();
    b.conns = calloc((size_t)b.nconn, sizeof(*b.conns));
    if (b.base == NULL || b.conns == NULL) {
        fprintf(stderr, "peer_write_bench: out of memory\n");
        return 1;
    }
    for (int i = 0; i < b.nconn; i++) {
        pconn *c = &b.conns[i];
        c->b = &b;
        c->bev = bufferevent_socket_new(b.base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL ||
            bufferevent_socket_connect_hostname(c->bev, NULL, AF_INET, host, atoi(b.port)) != 0) {
            fprintf(stderr, "peer_write_bench: cannot connect to %s\n", addr);
            return 1;
        }
        bufferevent_setcb(c->bev, readcb, NULL, eventcb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        for (int k = 0; k < b.pipeline; k++)
            issue(c);
    }
    stop = evtimer_new(b.base, stop_cb, &b);
    tv.tv_sec = duration_ms / 1000;
    tv.tv_usec = (duration_ms % 1000) * 1000;
    evtimer_add(stop, &tv);
    t0 = om_clock_mono_ns();
    event_base_dispatch(b.base);
    secs = (double)(om_clock_mono_ns() - t0) / 1e9;
    bh_print(target, b.ops, b.errors, &b.h, secs);
    if (b.errors > 0)
        printf("last error: %s\n", b.last_error);
    bh_print_result("put", b.ops, b.errors, &b.h, secs);
    for (int i = 0; i < b.nconn; i++)
        bufferevent_free(b.conns[i].bev);
    event_free(stop);
    event_base_free(b.base);
    free(b.conns);
    bg_values_fini(&b.values);
    return b.errors > 0 ? 1 : 0;
}
