/*
 * bench/server/objmeta_bench.c -- load generator for objmeta servers (a
 * shard or the coordinator).
 *
 * N connections (rpc's asynchronous client on one libevent loop), each
 * keeping `pipeline` requests in flight, issue a weighted mix of operations
 * (store, retrieve, head, exists, delete, list) on keys drawn uniformly from
 * `keys` keys, with values of `value-size` bytes, for `duration`. Latency is
 * measured per request from send to answer and kept in a log-linear
 * histogram (32 sub-buckets per power of two: about 3% resolution), from
 * which p50/p99/p99.9 are printed, with ops/s per operation and in total.
 * `--preload` stores every key once first so that reads hit.
 *
 * What is stored and read looks like production by default: `--values
 * random` (the default) stores `value-size` random bytes as object data (no
 * two values alike, nothing for the engine's compressor to remove);
 * `--values json` stores no data and ~200 bytes of JSON user metadata per
 * object (field names repeat: compressible). `--dist zipf` (theta 0.99, as
 * YCSB; `zipf:T` for another) draws keys from a scrambled Zipfian instead
 * of uniformly (bench/common/bench_gen.c). `--workload A|B|C|E` selects a
 * YCSB core mix instead of --ops: A 50/50 retrieve/store (update heavy), B
 * 95/5, C retrieve only, E 95% short scans (List of up to 10 keys from a
 * random key, --list-max-keys to change) and 5% stores. `--stats` asks the
 * server for its Stats after the run and prints the tree shape (files per
 * level) and memtable bytes on one line:
 *   SHARD l0_files=<n> files=<l0,l1,..> live_sst_bytes=<n> memtable_bytes=<n>
 *
 * List requests ask for `--list-max-keys` keys (default 100) of the bucket,
 * with `--prefix`/`--delimiter` when given, starting after a random key
 * drawn so that a full page follows it (key index < keys - max_keys). The
 * keys of each answered page are counted and reported as keys per page.
 * `--requests N` stops after N requests (the timed run ends at whichever of
 * N requests or `--duration` comes first).
 *
 * `--addr a,b,c` (several coordinators) spreads the connections over them
 * round-robin: connection i talks to address i mod n.
 *
 * `--direct-shards` measures the shards without the coordinator: the ring
 * is fetched from --addr (a coordinator, GetRing), every connection becomes
 * one connection per shard, and each keyed request goes straight to the
 * key's owner, carrying the ring epoch (so a misrouted request would be
 * answered WRONG_SHARD and counted as an error). The number of requests in
 * flight per connection stays `pipeline`, as through the coordinator. List
 * has no single owner and is refused in this mode.
 *
 * The last lines are machine-readable for bench/server/compare_redis.sh:
 *   RESULT op=<op|all> ops=<n> ops_per_sec=<x> p50_us=<x> p99_us=<x> p999_us=<x> errors=<n>
 */
#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/common/bench_gen.h"
#include "bench/common/bench_hist.h"
#include "rpc/rpc.h"
#ifdef OM_BENCH_RING
#include "partitioner/ring.h"
#endif
#include "util/clock.h"
#include "util/conf.h"

enum { OP_STORE, OP_RETRIEVE, OP_HEAD, OP_EXISTS, OP_DELETE, OP_LIST, OP_N };
static const char *const op_names[OP_N] = {"store", "retrieve", "head", "exists", "delete", "list"};

typedef struct bench {
    struct event_base *base;
    rpc_client **conns; /* nconn * nroute: connection i to shard s is conns[i * nroute + s] */
    int nconn, nroute, pipeline, weights[OP_N], wsum;
    uint64_t keys, seed, max_requests, issued;
    size_t value_size;
    bg_values values;
    bg_keys key_dist;
    uint64_t key_rng;
    const char *bucket, *prefix, *delimiter;
    uint32_t list_max_keys;
    bool stopping, preload;
    uint64_t preload_next, outstanding;
    uint64_t list_keys, list_truncated;
#ifdef OM_BENCH_RING
    ring *ring; /* --direct-shards: the coordinator's ring; NULL otherwise */
#endif
    uint64_t ops[OP_N], errors[OP_N];
    bh_hist h[OP_N];
    char last_error[256];
    struct call *free_calls; /* finished calls, reused (no malloc per request) */
} bench;

typedef struct call {
    bench *b;
    int conn, op;
    uint64_t t0;
    struct call *next; /* in b->free_calls */
} call;

/* "key:" and k in at least 12 decimal digits (zero-padded), as "key:%012" PRIu64. */
static void
format_key(char *out, uint64_t k)
{
    char d[20];
    int n = 0;

    do {
        d[n++] = (char)('0' + k % 10);
        k /= 10;
    } while (k != 0);
    memcpy(out, "key:", 4);
    out += 4;
    for (int i = n; i < 12; i++)
        *out++ = '0';
    while (n > 0)
        *out++ = d[--n];
    *out = '\0';
}

static uint64_t
bench_rand(bench *b)
{
    b->seed ^= b->seed >> 12;
    b->seed ^= b->seed << 25;
    b->seed ^= b->seed >> 27;
    return b->seed * 2685821657736338717ULL;
}

static void bench_issue(bench *b, int conn);

static void
bench_done(void *arg, om_status st, const Objmeta__Response *resp)
{
    call *c = arg;
    bench *b = c->b;
    om_status rs = st == OM_OK ? rpc_response_status(resp) : st;

    b->outstanding--;
    if (!b->preload) {
        /* NOT_FOUND is an answer (a read or delete of a key not stored yet) */
        if (rs == OM_OK || rs == OM_E_NOTFOUND) {
            b->ops[c->op]++;
            bh_add(&b->h[c->op], om_clock_mono_ns() - c->t0);
            if (c->op == OP_LIST && resp != NULL &&
                resp->body_case == OBJMETA__RESPONSE__BODY_LIST) {
                b->list_keys += resp->list->key_count;
                b->list_truncated += resp->list->is_truncated;
            }
        } else {
            b->errors[c->op]++;
            snprintf(b->last_error, sizeof(b->last_error), "%s: %s", op_names[c->op],
                     resp && resp->message ? resp->message : om_status_str(rs));
        }
    } else if (rs != OM_OK) {
        b->errors[OP_STORE]++;
    }
    int conn = c->conn;
    c->next = b->free_calls;
    b->free_calls = c;
    if (!b->stopping)
        bench_issue(b, conn);
    else if (b->outstanding == 0)
        event_base_loopbreak(b->base);
}

static void
bench_issue(bench *b, int conn)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__RetrieveRequest rt = OBJMETA__RETRIEVE_REQUEST__INIT;
    Objmeta__HeadRequest hd = OBJMETA__HEAD_REQUEST__INIT;
    Objmeta__ExistsRequest ex = OBJMETA__EXISTS_REQUEST__INIT;
    Objmeta__DeleteRequest dl = OBJMETA__DELETE_REQUEST__INIT;
    Objmeta__ListRequest ls = OBJMETA__LIST_REQUEST__INIT;
    char key[32];
    uint8_t json[BG_JSON_MAX];
    const uint8_t *val;
    size_t vn;
    uint64_t k;
    int op = OP_STORE, route = 0;
    call *c;

    if (b->preload) {
        if (b->preload_next >= b->keys) {
            b->stopping = true;
            if (b->outstanding == 0)
                event_base_loopbreak(b->base);
            return;
        }
        k = b->preload_next++;
    } else {
        int w = (int)(bench_rand(b) % (uint64_t)b->wsum);
        for (op = 0; op < OP_N; op++) {
            if (w < b->weights[op])
                break;
            w -= b->weights[op];
        }
        k = bg_keys_next(&b->key_dist, &b->key_rng);
        if (op == OP_LIST && b->keys > b->list_max_keys)
            k %= b->keys - b->list_max_keys; /* a full page follows key k */
        if (b->max_requests > 0 && b->issued >= b->max_requests) {
            b->stopping = true;
            if (b->outstanding == 0)
                event_base_loopbreak(b->base);
            return;
        }
        b->issued++;
    }
    format_key(key, k);
    /* each kind of request is its own message type; they name the object alike */
    st.bucket = rt.bucket = hd.bucket = ex.bucket = dl.bucket = ls.bucket = (char *)b->bucket;
    st.key = rt.key = hd.key = ex.key = dl.key = key;
    switch (op) {
    case OP_STORE:
        vn = bg_value(&b->values, k ^ b->issued, json, &val);
        if (b->values.kind == BG_VALUES_JSON) {
            json[vn] = '\0';
            st.metadata_json = (char *)json;
        } else {
            st.data.data = (uint8_t *)val;
            st.data.len = b->value_size > 0 ? vn : 0;
        }
        req.body_case = OBJMETA__REQUEST__BODY_STORE;
        req.store = &st;
        break;
    case OP_RETRIEVE:
        req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
        req.retrieve = &rt;
        break;
    case OP_HEAD:
        req.body_case = OBJMETA__REQUEST__BODY_HEAD;
        req.head = &hd;
        break;
    case OP_EXISTS:
        req.body_case = OBJMETA__REQUEST__BODY_EXISTS;
        req.exists = &ex;
        break;
    case OP_DELETE:
        req.body_case = OBJMETA__REQUEST__BODY_DELETE;
        req.delete_ = &dl;
        break;
    default:
        ls.start_after = key;
        ls.max_keys = b->list_max_keys;
        ls.prefix = (char *)b->prefix;
        ls.delimiter = (char *)b->delimiter;
        req.body_case = OBJMETA__REQUEST__BODY_LIST;
        req.list = &ls;
        break;
    }
#ifdef OM_BENCH_RING
    if (b->ring != NULL) {
        route = (int)ring_owner(
            b->ring, ring_key_hash(om_slice_from_str(b->bucket), om_slice_from_str(key)));
        req.ring_epoch = ring_epoch(b->ring);
    }
#endif
    c = b->free_calls;
    if (c != NULL)
        b->free_calls = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL) {
        b->errors[op]++;
        return;
    }
    c->b = b;
    c->conn = conn;
    c->op = op;
    c->t0 = om_clock_mono_ns();
    if (rpc_client_call(b->conns[conn * b->nroute + route], &req, 0, bench_done, c) != OM_OK) {
        free(c);
        b->errors[op]++;
        return;
    }
    b->outstanding++;
}

static void
bench_stop(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    b->stopping = true;
    if (b->outstanding == 0)
        event_base_loopbreak(b->base);
}

/* A connection's first answer: one fewer to wait for. */
static void
bench_connected(void *arg, om_status st, const Objmeta__Response *resp)
{
    bench *b = arg;

    (void)st;
    (void)resp;
    if (--b->outstanding == 0)
        event_base_loopbreak(b->base);
}

/*
 * Connect every connection (and finish its TLS handshake) with one Ping
 * each before the clock starts: the timed run measures requests, not
 * connection set-up, which over TLS costs a key exchange and two
 * certificate checks per connection.
 */
static void
bench_connect(bench *b)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;

    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &ping;
    for (int i = 0; i < b->nconn * b->nroute; i++)
        if (rpc_client_call(b->conns[i], &req, 0, bench_connected, b) == OM_OK)
            b->outstanding++;
    if (b->outstanding > 0)
        event_base_dispatch(b->base);
}

/* Run until stopped (duration timer, or preload finished). */
static void
bench_run(bench *b, int64_t duration_ms)
{
    struct event *t = NULL;
    b->stopping = false;
    if (duration_ms > 0) {
        struct timeval tv = {duration_ms / 1000, (duration_ms % 1000) * 1000};
        t = evtimer_new(b->base, bench_stop, b);
        evtimer_add(t, &tv);
    }
    for (int i = 0; i < b->nconn; i++)
        for (int d = 0; d < b->pipeline; d++)
            bench_issue(b, i);
    if (b->outstanding > 0)
        event_base_dispatch(b->base);
    if (t)
        event_free(t);
}

static int
parse_mix(bench *b, const char *mix)
{
    char *copy = strdup(mix), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int op;
        for (op = 0; op < OP_N; op++)
            if (strncmp(tok, op_names[op], eq ? (size_t)(eq - tok) : strlen(tok)) == 0 &&
                strlen(op_names[op]) == (eq ? (size_t)(eq - tok) : strlen(tok)))
                break;
        if (op == OP_N) {
            fprintf(stderr, "objmeta_bench: unknown operation in --ops: %s\n", tok);
            free(copy);
            return -1;
        }
        b->weights[op] = eq ? atoi(eq + 1) : 1;
        b->wsum += b->weights[op];
    }
    free(copy);
    return b->wsum > 0 ? 0 : -1;
}

#ifdef OM_BENCH_RING
/* Address i mod n of the comma-separated list into out (cap bytes); false if too long. */
static bool
nth_addr(const char *list, int i, char *out, size_t cap)
{
    int n = 1;
    const char *p = list, *end;

    for (const char *q = list; *q; q++)
        n += *q == ',';
    for (int k = i % n; k > 0; k--)
        p = strchr(p, ',') + 1;
    end = strchr(p, ',');
    if (end == NULL)
        end = p + strlen(p);
    if ((size_t)(end - p) >= cap)
        return false;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return true;
}

/* --direct-shards: the ring the coordinator at addr routes with. */
static int
fetch_ring(const char *addr, ring **out)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *resp = NULL;
    rpc_sync_client *sc = NULL;
    char err[256] = "";
    int rc = -1;

    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    if (rpc_sync_client_open(addr, 3000, &sc) != OM_OK) {
        fprintf(stderr, "objmeta_bench: cannot connect to %s for its ring\n", addr);
        return -1;
    }
    if (rpc_sync_client_call(sc, &req, 5000, &resp) != OM_OK)
        fprintf(stderr, "objmeta_bench: GetRing from %s: %s\n", addr,
                rpc_sync_client_last_error(sc));
    else if (rpc_response_status(resp) != OM_OK ||
             resp->body_case != OBJMETA__RESPONSE__BODY_GET_RING || resp->get_ring->ring == NULL)
        fprintf(stderr, "objmeta_bench: %s has no ring to give (%s)\n", addr,
                resp->message && resp->message[0] ? resp->message : "not a coordinator?");
    else if (ring_from_pb(resp->get_ring->ring, out, err, sizeof(err)) != OM_OK)
        fprintf(stderr, "objmeta_bench: bad ring from %s: %s\n", addr, err);
    else
        rc = 0;
    rpc_response_free(resp);
    rpc_sync_client_close(sc);
    return rc;
}
#endif

/* YCSB core workloads as --ops mixes; E's scans are short Lists. */
static const char *
ycsb_mix(const char *w)
{
    static const char *const mixes[][2] = {{"A", "retrieve=50,store=50"},
                                           {"B", "retrieve=95,store=5"},
                                           {"C", "retrieve=100"},
                                           {"E", "list=95,store=5"}};

    for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
        if (strcmp(w, mixes[i][0]) == 0)
            return mixes[i][1];
    return NULL;
}

/* --stats: the server's tree shape and memtable bytes after the run, one line. */
static void
print_server_stats(const char *addr)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest sr = OBJMETA__STATS_REQUEST__INIT;
    Objmeta__Response *resp = NULL;
    rpc_sync_client *sc = NULL;
    uint64_t files[8] = {0}, sst = 0, mem = 0, bc = 0, rc = 0, pool = 0;

    req.body_case = OBJMETA__REQUEST__BODY_STATS;
    req.stats = &sr;
    if (rpc_sync_client_open(addr, 3000, &sc) != OM_OK ||
        rpc_sync_client_call(sc, &req, 5000, &resp) != OM_OK ||
        rpc_response_status(resp) != OM_OK || resp->body_case != OBJMETA__RESPONSE__BODY_STATS) {
        printf("SHARD stats unavailable\n");
        goto out;
    }
    for (size_t i = 0; i < resp->stats->n_counters; i++) {
        const Objmeta__StatsCounter *c = resp->stats->counters[i];
        unsigned l;
        char tail[8];

        if (sscanf(c->name, "lsm.level%u.file%7s", &l, tail) == 2 && l < 8 &&
            strcmp(tail, "s") == 0)
            files[l] = c->value;
        else if (strcmp(c->name, "lsm.live_sst_bytes") == 0)
            sst = c->value;
        else if (strcmp(c->name, "lsm.memtable_bytes") == 0)
            mem = c->value;
        else if (strcmp(c->name, "lsm.block_cache_bytes") == 0)
            bc = c->value;
        else if (strcmp(c->name, "lsm.row_cache_bytes") == 0)
            rc = c->value;
        else if (strcmp(c->name, "lsm.mem_pool_bytes") == 0)
            pool = c->value;
    }
    printf("SHARD l0_files=%" PRIu64 " files=%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
           ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 " live_sst_bytes=%" PRIu64 " memtable_bytes=%" PRIu64
           " mem_pool_bytes=%" PRIu64 " block_cache_bytes=%" PRIu64 " row_cache_bytes=%" PRIu64
           "\n",
           files[0], files[0], files[1], files[2], files[3], files[4], files[5], files[6], sst, mem,
           pool, bc, rc);
out:
    rpc_response_free(resp);
    rpc_sync_client_close(sc);
}

int
main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:7001", *mix = "store=50,retrieve=50";
    char first[256];         /* the first of the --addr list: GetRing, Stats */
    rpc_tls_opts tlso = {0}; /* --ca [--cert --key]: TLS to the server */
    rpc_tls *tls = NULL;
    int64_t conns = 50, pipeline = 1, keys = 100000, vsize = 256, duration = 10000;
    int64_t list_max = 100, requests = 0;
    bool preload = false, direct = false, stats = false;
    const char *values = "random", *dist = "uniform", *workload = NULL;
    bg_value_kind vkind;
    bench b = {.bucket = "bench", .prefix = "", .delimiter = "", .seed = 0x9e3779b97f4a7c15ULL};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--preload") == 0) {
            preload = true;
            continue;
        }
        if (strcmp(a, "--direct-shards") == 0) {
            direct = true;
            continue;
        }
        if (strcmp(a, "--stats") == 0) {
            stats = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || v == NULL) {
            printf("usage: objmeta_bench [--addr H:P[,H:P...]] [--connections N] [--pipeline D]\n"
                   "  [--ops store=50,retrieve=50,head=0,exists=0,delete=0,list=0]\n"
                   "  [--value-size BYTES] [--keys N] [--duration 10s] [--bucket B] [--preload]\n"
                   "  [--requests N] [--list-max-keys N] [--prefix P] [--delimiter D]\n"
                   "  [--direct-shards]  (--addr is a coordinator; requests go to the owners)\n"
                   "  [--values random|json] [--dist uniform|zipf|zipf:T] [--workload A|B|C|E]\n"
                   "  [--stats]  (print the server's files per level after the run)\n"
                   "  [--ca FILE [--cert FILE --key FILE]]  (TLS)\n");
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
        i++;
        if (strcmp(a, "--addr") == 0)
            addr = v;
        else if (strcmp(a, "--ops") == 0)
            mix = v;
        else if (strcmp(a, "--ca") == 0)
            tlso.ca_file = v;
        else if (strcmp(a, "--cert") == 0)
            tlso.cert_file = v;
        else if (strcmp(a, "--key") == 0)
            tlso.key_file = v;
        else if (strcmp(a, "--bucket") == 0)
            b.bucket = v;
        else if (strcmp(a, "--values") == 0)
            ok = bg_value_kind_parse(values = v, &vkind) && vkind != BG_VALUES_HALF;
        else if (strcmp(a, "--dist") == 0)
            dist = v;
        else if (strcmp(a, "--workload") == 0)
            ok = (mix = ycsb_mix(workload = v)) != NULL;
        else if (strcmp(a, "--prefix") == 0)
            b.prefix = v;
        else if (strcmp(a, "--delimiter") == 0)
            b.delimiter = v;
        else if (strcmp(a, "--list-max-keys") == 0)
            ok = om_parse_int(v, &list_max) == OM_OK && list_max > 0 && list_max <= 1000;
        else if (strcmp(a, "--requests") == 0)
            ok = om_parse_int(v, &requests) == OM_OK && requests > 0;
        else if (strcmp(a, "--connections") == 0)
            ok = om_parse_int(v, &conns) == OM_OK && conns > 0 && conns <= 10000;
        else if (strcmp(a, "--pipeline") == 0)
            ok = om_parse_int(v, &pipeline) == OM_OK && pipeline > 0 && pipeline <= 1024;
        else if (strcmp(a, "--keys") == 0)
            ok = om_parse_int(v, &keys) == OM_OK && keys > 0;
        else if (strcmp(a, "--value-size") == 0)
            ok = om_parse_size(v, &vsize) == OM_OK && vsize >= 0 && vsize <= (64 << 20);
        else if (strcmp(a, "--duration") == 0)
            ok = om_parse_duration_ms(v, &duration) == OM_OK && duration > 0;
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "objmeta_bench: bad option %s %s\n", a, v);
            return 2;
        }
    }
    if (workload != NULL && strcmp(workload, "E") == 0 && list_max == 100)
        list_max = 10; /* YCSB E: short scans */
    if (parse_mix(&b, mix) != 0)
        return 2;
    if (!bg_keys_init(&b.key_dist, (uint64_t)keys, dist)) {
        fprintf(stderr, "objmeta_bench: bad --dist %s (uniform, zipf or zipf:T, 0 < T < 1)\n",
                dist);
        return 2;
    }
    b.key_rng = b.seed;
    if (tlso.ca_file != NULL) {
        char err[256];
        if (rpc_tls_new(&tlso, false, &tls, err, sizeof(err)) != OM_OK) {
            fprintf(stderr, "objmeta_bench: %s\n", err);
            return 2;
        }
    }
    if (!nth_addr(addr, 0, first, sizeof(first))) {
        fprintf(stderr, "objmeta_bench: bad address %s\n", addr);
        return 2;
    }
    b.nroute = 1;
    if (direct) {
#ifdef OM_BENCH_RING
        if (b.weights[OP_LIST] > 0) {
            fprintf(stderr, "objmeta_bench: --direct-shards cannot route list (no single owner)\n");
            return 2;
        }
        if (fetch_ring(first, &b.ring) != 0)
            return 1;
        b.nroute = (int)ring_shard_count(b.ring);
#else
        fprintf(stderr, "objmeta_bench: built without partitioner/: no --direct-shards\n");
        return 2;
#endif
    }
    b.list_max_keys = (uint32_t)list_max;
    b.max_requests = (uint64_t)requests;
    b.base = event_base_new();
    b.nconn = (int)conns;
    b.pipeline = (int)pipeline;
    b.keys = (uint64_t)keys;
    b.value_size = (size_t)vsize;
    bg_value_kind_parse(values, &vkind);
    if (!bg_values_init(&b.values, vkind, b.value_size > 0 ? b.value_size : 1, b.seed)) {
        fprintf(stderr, "objmeta_bench: out of memory for values\n");
        return 1;
    }
    b.conns = calloc((size_t)conns * (size_t)b.nroute, sizeof(*b.conns));
    for (int i = 0; i < b.nconn * b.nroute; i++) {
        rpc_client_opts o;
        char one[256];
        const char *to = one;

        if (!nth_addr(addr, direct ? 0 : i, one, sizeof(one))) {
            fprintf(stderr, "objmeta_bench: bad address %s\n", addr);
            return 2;
        }
#ifdef OM_BENCH_RING
        if (b.ring != NULL)
            to = ring_shard_at(b.ring, (size_t)(i % b.nroute))->addr;
#endif
        rpc_client_opts_init(&o);
        o.tls = tls;
        if (rpc_client_new(b.base, to, &o, &b.conns[i]) != OM_OK) {
            fprintf(stderr, "objmeta_bench: bad address %s\n", to);
            return 2;
        }
    }
    bench_connect(&b);
    if (preload) {
        uint64_t t0 = om_clock_mono_ns();
        b.preload = true;
        bench_run(&b, 0);
        b.preload = false;
        printf("preloaded %" PRIu64 " keys of %zu bytes in %.2f s (%" PRIu64 " errors)\n", b.keys,
               b.value_size, (double)(om_clock_mono_ns() - t0) / 1e9, b.errors[OP_STORE]);
        b.errors[OP_STORE] = 0;
    }
    uint64_t t0 = om_clock_mono_ns();
    bench_run(&b, duration);
    double secs = (double)(om_clock_mono_ns() - t0) / 1e9;

    printf(
        "objmeta_bench addr=%s%s connections=%d pipeline=%d values=%s value_size=%zu keys=%" PRIu64
        " dist=%s duration=%.2fs ops=%s%s%s\n",
        addr, b.nroute > 1 || direct ? " (direct to the owner shards)" : "", b.nconn, b.pipeline,
        values, b.values.kind == BG_VALUES_JSON ? (size_t)0 : b.value_size, b.keys, dist, secs, mix,
        workload ? " ycsb=" : "", workload ? workload : "");
    bh_hist *all = calloc(1, sizeof(bh_hist));
    uint64_t tot = 0, err = 0;
    for (int op = 0; op < OP_N; op++) {
        if (b.weights[op] == 0)
            continue;
        bh_print(op_names[op], b.ops[op], b.errors[op], &b.h[op], secs);
        bh_merge(all, &b.h[op]);
        tot += b.ops[op];
        err += b.errors[op];
    }
    bh_print("all", tot, err, all, secs);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("client cpu %.2f s (user %.2f, system %.2f) over %.2f s\n",
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, secs);
    if (b.weights[OP_LIST] > 0 && b.ops[OP_LIST] > 0)
        printf("list: %.1f keys per page (max_keys %u), %" PRIu64 " of %" PRIu64
               " pages truncated\n",
               (double)b.list_keys / (double)b.ops[OP_LIST], b.list_max_keys, b.list_truncated,
               b.ops[OP_LIST]);
    if (err > 0)
        printf("last error: %s\n", b.last_error);
    for (int op = 0; op < OP_N; op++)
        if (b.weights[op] > 0)
            bh_print_result(op_names[op], b.ops[op], b.errors[op], &b.h[op], secs);
    bh_print_result("all", tot, err, all, secs);
    for (int i = 0; i < b.nconn * b.nroute; i++)
        rpc_client_free(b.conns[i]);
    rpc_tls_free(tls);
#ifdef OM_BENCH_RING
    ring_unref(b.ring);
#endif
    while (b.free_calls != NULL) {
        call *c = b.free_calls;
        b.free_calls = c->next;
        free(c);
    }
    free(b.conns);
    bg_values_fini(&b.values);
    free(all);
    if (stats)
        print_server_stats(first);
    event_base_free(b.base);
    return err > 0 && tot == 0 ? 1 : 0;
}
