/*
 * coordinator/coord.c -- the coordinator's life cycle: open (ring from the
 * data dir or from the initial shard list, token secret, shard pool,
 * listeners, health checks), readiness, graceful shutdown and close.
 *
 * Ring at start-up. The data dir's RING file wins: a coordinator that has
 * run once keeps its ring (and epoch) across restarts, and --shards is
 * only read to create the first ring (epoch 1), which is persisted before
 * the coordinator serves anything. If --shards disagrees with the stored
 * ring it is ignored with a warning; ring changes go through the admin
 * operations, never through the command line.
 */
#define OM_LOG_MODULE "coord"
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/coord_int.h"
#include "coordinator/cstate.h"
#include "util/clock.h"
#include "util/log.h"

void
coord_opts_init(coord_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "127.0.0.1:7000";
    o->http_listen = "127.0.0.1:8000";
    o->pool_size = 2;
    o->health_interval_ms = 500;
    o->health_timeout_ms = 1000;
    o->shard_timeout_ms = 10000;
    o->slow_request_ms = 1000;
    o->startup_wait_ms = 5000;
    o->max_frame = RPC_DEFAULT_MAX_FRAME;
    o->idle_timeout_ms = 300000;
    o->migrate_rate = 128ull << 20;
    o->migrate_batch = 1u << 20;
    o->migrate_rate_busy = 16ull << 20;
    o->migrate_batch_busy = 128u << 10;
    o->cutover_timeout_ms = 5000;
    o->clock_margin_ms = 10000;
    o->etcd_prefix = "/objmeta/default";
    o->etcd_timeout_ms = 2000;
    o->lease_ttl_ms = 5000;
    o->failover_wait_ms = 7000;
    o->tls_client_auth = RPC_TLS_CLIENT_OPTIONAL;
}

static void
coord_ready_timeout(evutil_socket_t fd, short what, void *arg)
{
    coord *c = arg;

    if (c->ready_called || c->ready == NULL)
        return;
    c->ready_called = true;
    om_log(OM_LOG_WARN, "serving with shards down shards_up=%zu shards=%zu", coord_pool_up_count(c),
           c->nshards);
    c->ready(c->ready_arg);
}

static void
coord_errf(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, a, b);
}

/*
 * Load the cluster state or create the first ring from opts->initial_shards
 * (with etcd, exactly one of the coordinators starting at once creates it;
 * the others load what it wrote).
 */
static om_status
coord_load_ring(coord *c, om_buf *mig, char *err, size_t errlen)
{
    ring *given = NULL;
    om_status st;

    st = coord_cstate_load(c->cs, &c->ring, &c->pending, mig, err, errlen);
    if (st == OM_OK) {
        if (c->pending != NULL)
            om_log(OM_LOG_INFO, "ring change in progress epoch=%llu pending_epoch=%llu",
                   (unsigned long long)ring_epoch(c->ring),
                   (unsigned long long)ring_epoch(c->pending));
        if (c->opts.initial_shards != NULL && c->opts.initial_shards[0] != '\0' &&
            coord_parse_shards(c->opts.initial_shards, c->opts.vnodes_per_weight, &given, NULL,
                               0) == OM_OK &&
            !ring_same_placement(given, c->ring))
            om_log(OM_LOG_WARN,
                   "--shards differs from the stored ring and is ignored; "
                   "change the ring with the admin operations ring_epoch=%llu",
                   (unsigned long long)ring_epoch(c->ring));
        ring_unref(given);
        om_log(OM_LOG_INFO, "ring loaded from=\"%s\" epoch=%llu shards=%zu",
               coord_cstate_where(c->cs), (unsigned long long)ring_epoch(c->ring),
               ring_shard_count(c->ring));
        return OM_OK;
    }
    if (st != OM_E_NOTFOUND)
        return st;
    if (c->opts.initial_shards == NULL || c->opts.initial_shards[0] == '\0') {
        coord_errf(err, errlen,
                   "no ring in %s%s: start the first time with --shards id=host:port,...",
                   coord_cstate_where(c->cs), "");
        return OM_ERR(OM_E_INVALID);
    }
    OM_TRY(coord_parse_shards(c->opts.initial_shards, c->opts.vnodes_per_weight, &c->ring, err,
                              errlen));
    st = coord_cstate_create(c->cs, c->ring, err, errlen);
    if (st == OM_E_PRECONDITION) {
        /* another coordinator created it meanwhile: use theirs */
        ring_unref(c->ring);
        c->ring = NULL;
        return coord_load_ring(c, mig, err, errlen);
    }
    OM_TRY(st);
    om_log(OM_LOG_INFO, "ring created in=\"%s\" epoch=1 shards=%zu", coord_cstate_where(c->cs),
           ring_shard_count(c->ring));
    return OM_OK;
}

/*
 * A startup step against etcd whose request timed out or found no endpoint answering (etcd
 * busy, electing, or starting beside us) is worth another try, every 200 ms until
 * --startup-wait has passed: both steps are safe to repeat (a range; create-if-absent
 * transactions whose retry reads what an unanswered first attempt wrote).
 */
static bool
coord_startup_retry(const coord *c, bool etcd, om_status st, uint64_t t0, char *err)
{
    if (!etcd || (st != OM_E_UNAVAILABLE && st != OM_E_TIMEOUT) ||
        om_clock_mono_ms() - t0 >= c->opts.startup_wait_ms)
        return false;
    om_log(OM_LOG_WARN, "cluster state not read yet, trying again err=\"%s\"", err);
    err[0] = '\0';
    om_clock_sleep_ms(200);
    return true;
}

/* The identity other coordinators reach this one by: --advertise, else listen's host and port. */
static void
coord_identity(const coord *c, char *out, size_t n)
{
    const char *colon = strrchr(c->listen, ':');

    if (c->opts.advertise != NULL && c->opts.advertise[0] != '\0')
        snprintf(out, n, "%s", c->opts.advertise);
    else
        snprintf(out, n, "%.*s:%d", colon ? (int)(colon - c->listen) : 0, c->listen,
                 coord_rpc_port(c));
}

/* The listener's and the shard connections' TLS, as the options ask. */
static om_status
coord_tls_open(coord *c, char *err, size_t errlen)
{
    rpc_tls_opts t = {.cert_file = c->opts.tls_cert,
                      .key_file = c->opts.tls_key,
                      .ca_file = c->opts.tls_ca,
                      .client_auth = c->opts.tls_client_auth};

    if (c->opts.tls_cert != NULL && c->opts.tls_cert[0] != '\0')
        OM_TRY(rpc_tls_new(&t, true, &c->tls_srv, err, errlen));
    if (c->opts.tls_ca != NULL && c->opts.tls_ca[0] != '\0')
        OM_TRY(rpc_tls_new(&t, false, &c->tls_cli, err, errlen));
    return OM_OK;
}

om_status
coord_open(struct event_base *base, const coord_opts *opts, void (*ready)(void *arg), void *arg,
           coord **out, char *err, size_t errlen)
{
    rpc_server_opts so;
    om_buf mig = OM_BUF_INIT;
    coord *c;
    om_status st;
    bool etcd = opts->etcd != NULL && opts->etcd[0] != '\0';
    uint64_t t0;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (opts->data_dir == NULL || opts->data_dir[0] == '\0') {
        coord_errf(err, errlen, "data-dir is not set%s%s", "", "");
        return OM_ERR(OM_E_INVALID);
    }
    if (opts->pool_size == 0 || opts->health_interval_ms == 0 || opts->health_timeout_ms == 0 ||
        opts->shard_timeout_ms == 0) {
        coord_errf(err, errlen,
                   "pool-size, health-interval, health-timeout and shard-timeout "
                   "must be positive%s%s",
                   "", "");
        return OM_ERR(OM_E_INVALID);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->base = base;
    c->opts = *opts;
    c->data_dir = strdup(opts->data_dir);
    c->listen = strdup(opts->listen ? opts->listen : "127.0.0.1:7000");
    c->http_listen = strdup(opts->http_listen ? opts->http_listen : "");
    if (c->data_dir == NULL || c->listen == NULL || c->http_listen == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    c->opts.data_dir = c->data_dir;
    c->opts.listen = c->listen;
    c->opts.http_listen = c->http_listen;
    c->opts.initial_shards = NULL; /* only read during open */
    c->ready = ready;
    c->dispatch = coord_dispatch;
    c->ready_arg = arg;
    for (int op = 0; op < COORD_OP_COUNT_; op++)
        rpc_hist_init(&c->latency[op]);

    if (mkdir(c->data_dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        om_log(OM_LOG_ERROR, "cannot create data dir=%s err=\"%s\"", c->data_dir, strerror(e));
        coord_errf(err, errlen, "cannot create data dir %s: %s", c->data_dir, strerror(e));
        st = OM_ERR(om_status_from_errno(e));
        goto fail;
    }
    {
        coord_cstate_opts co = {.data_dir = c->data_dir,
                                .etcd = opts->etcd,
                                .etcd_prefix = opts->etcd_prefix,
                                .etcd_timeout_ms = (int)opts->etcd_timeout_ms,
                                .lease_ttl_s = (int)((opts->lease_ttl_ms + 999) / 1000)};

        OM_GOTO(coord_cstate_open(base, &co, err, errlen, &c->cs));
    }
    c->opts.etcd = c->opts.etcd_prefix = c->opts.advertise = NULL; /* only read during open */
    c->opts.initial_shards = opts->initial_shards;
    t0 = om_clock_mono_ms();
    while ((st = coord_load_ring(c, &mig, err, errlen)) != OM_OK &&
           coord_startup_retry(c, etcd, st, t0, err)) {
        ring_unref(c->ring); /* a first ring parsed before its create failed */
        ring_unref(c->pending);
        c->ring = c->pending = NULL;
        om_buf_free(&mig);
    }
    c->opts.initial_shards = NULL;
    if (st != OM_OK)
        goto fail;
    while ((st = coord_cstate_secret(c->cs, c->secret, err, errlen)) != OM_OK &&
           coord_startup_retry(c, etcd, st, t0, err))
        ;
    if (st != OM_OK)
        goto fail;
    OM_GOTO(coord_tls_open(c, err, errlen));
    OM_GOTO(coord_pool_open(c));
    OM_GOTO(coord_groups_open(c));
    OM_GOTO(coord_mig_open(c, om_buf_slice(&mig), err, errlen));
    om_buf_free(&mig);

    rpc_server_opts_init(&so);
    so.listen = c->listen;
    so.max_frame = c->opts.max_frame;
    if (c->opts.max_connections > 0)
        so.max_connections = c->opts.max_connections;
    so.idle_timeout_ms = c->opts.idle_timeout_ms;
    /* answers come from the shards, which have their own deadline */
    so.request_timeout_ms = c->opts.shard_timeout_ms + c->opts.failover_wait_ms + 5000;
    so.slow_request_ms = c->opts.slow_request_ms;
    so.make_request_ids = true; /* passed on to the shards (router.c, fanout.c) */
    if ((st = rpc_roles_parse(c->opts.plaintext_roles ? c->opts.plaintext_roles : "auto",
                              &so.plaintext_roles, err, errlen)) != OM_OK)
        goto fail;
    so.token_keys_file = c->opts.token_keys_file;
    so.tls = c->tls_srv;
    if ((st = rpc_server_new(base, &so, coord_handle, c, &c->server)) != OM_OK) {
        coord_errf(err, errlen, "cannot listen on %s (%s)", c->listen, om_status_str(st));
        goto fail;
    }
    if (c->http_listen[0] != '\0' &&
        (st = rpc_http_open(base, c->http_listen, coord_health, coord_render_metrics, c,
                            &c->http)) != OM_OK) {
        coord_errf(err, errlen, "cannot serve HTTP on %s (%s)", c->http_listen, om_status_str(st));
        goto fail;
    }
    struct timeval tv = {c->opts.startup_wait_ms / 1000, (c->opts.startup_wait_ms % 1000) * 1000};
    c->ready_timer = evtimer_new(base, coord_ready_timeout, c);
    if (c->ready_timer == NULL || evtimer_add(c->ready_timer, &tv) != 0) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    OM_GOTO(coord_pool_start_health(c));
    {
        char id[300];

        c->opts.advertise = opts->advertise;
        coord_identity(c, id, sizeof(id));
        c->opts.advertise = NULL;
        OM_GOTO(coord_leader_start(c, id));
    }
    om_log(OM_LOG_INFO, "coordinator listening rpc_port=%d http_port=%d shards=%zu",
           coord_rpc_port(c), coord_http_port(c), c->nshards);
    *out = c;
    return OM_OK;
fail:
    om_buf_free(&mig);
    if (err != NULL && errlen > 0 && err[0] == '\0')
        snprintf(err, errlen, "coordinator start failed: %s", om_status_str(st));
    coord_close(c);
    return st;
}

int
coord_rpc_port(const coord *c)
{
    return c->server ? rpc_server_port(c->server) : 0;
}

int
coord_http_port(const coord *c)
{
    return c->http ? rpc_http_port(c->http) : 0;
}

void
coord_shutdown(coord *c, uint32_t deadline_ms, void (*done)(void *arg), void *arg)
{
    if (c->stopping)
        return;
    c->stopping = true;
    om_log(OM_LOG_INFO, "coordinator shutting down");
    rpc_server_shutdown(c->server, deadline_ms, done, arg);
}

void
coord_close(coord *c)
{
    if (c == NULL)
        return;
    if (c->health_timer)
        event_free(c->health_timer);
    if (c->ready_timer)
        event_free(c->ready_timer);
    coord_mig_close(c);        /* its timer, held requests and state; its calls end with the pool */
    coord_route_park_close(c); /* requests waiting for a group's primary are answered */
    /* Shard calls complete first (their callbacks answer through the server). */
    coord_pool_close(c);
    coord_leader_close(c);
    coord_groups_close(c); /* its watch, before the etcd client goes */
    coord_cstate_close(c->cs);
    rpc_http_close(c->http);
    rpc_server_free(c->server);
    rpc_tls_free(c->tls_srv);
    rpc_tls_free(c->tls_cli);
    ring_unref(c->ring);
    ring_unref(c->pending);
    free(c->data_dir);
    free(c->listen);
    free(c->http_listen);
    free(c);
}
