/*
 * coordinator/main.c -- objmeta-coord: parse the config table, open the
 * coordinator on one libevent loop, write the port file once every shard
 * is up (or the start-up wait is over), and shut down gracefully on
 * SIGTERM/SIGINT: stop accepting, answer requests in flight, exit 0.
 *
 * http-listen "auto" means the host of `listen` with port listen+1000
 * (7000 -> 8000), or port 0 when listen's port is 0; "off" disables HTTP.
 */
#define OM_LOG_MODULE "main"
#include <event2/event.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord.h"
#include "rpc/rpc.h"
#include "util/conf.h"
#include "util/log.h"

typedef struct coord_conf {
    char *listen, *http_listen, *data_dir, *port_file, *shards, *plaintext_roles, *token_keys,
        *tls_cert, *tls_key, *tls_ca;
    int log_level, tls_client_auth;
    int64_t vnodes, pool_size, health_interval, health_timeout, shard_timeout, startup_wait;
    int64_t max_frame;
    int64_t migrate_rate, migrate_batch, migrate_rate_busy, migrate_batch_busy, cutover_timeout,
        clock_margin;
} coord_conf;

static const char *const tls_client_auths[] = {"none", "optional", "required", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define F(x) offsetof(coord_conf, x)
static const om_conf_item coord_items[] = {
    {"listen", OM_CONF_STR, "127.0.0.1:7000", 0, 0, NULL, F(listen), "rpc listener host:port"},
    {"http-listen", OM_CONF_STR, "auto", 0, 0, NULL, F(http_listen),
     "/metrics and /healthz host:port; auto = listen port + 1000 (0 if listen port is 0); off"},
    {"data-dir", OM_CONF_STR, "data/coord", 0, 0, NULL, F(data_dir), "ring state and token secret"},
    {"port-file", OM_CONF_STR, "", 0, 0, NULL, F(port_file),
     "write 'rpc <port>' and 'http <port>' here once serving (empty = none)"},
    {"shards", OM_CONF_STR, "", 0, 0, NULL, F(shards),
     "first start only: the ring's shards, id=host:port[/weight],..."},
    {"vnodes-per-weight", OM_CONF_INT, "128", 1, 4096, NULL, F(vnodes),
     "first start only: ring points per unit of shard weight"},
    {"pool-size", OM_CONF_INT, "6", 1, 64, NULL, F(pool_size),
     "multiplexed connections to each shard"},
    {"health-interval", OM_CONF_DURATION, "500ms", 10, 60000, NULL, F(health_interval),
     "how often each shard is probed (SetRing, which also reinstalls the ring)"},
    {"health-timeout", OM_CONF_DURATION, "1s", 10, 60000, NULL, F(health_timeout),
     "a probe (or connect) slower than this counts as failed"},
    {"shard-timeout", OM_CONF_DURATION, "10s", 10, 3600000, NULL, F(shard_timeout),
     "deadline of a request forwarded to a shard"},
    {"startup-wait", OM_CONF_DURATION, "5s", 0, 600000, NULL, F(startup_wait),
     "at start, wait this long for every shard before serving anyway"},
    {"max-frame", OM_CONF_SIZE, "16M", 1024, 1LL << 30, NULL, F(max_frame),
     "largest protocol message accepted or forwarded"},
    {"migrate-rate", OM_CONF_SIZE, "128M", 0, 1LL << 40, NULL, F(migrate_rate),
     "ring changes: copy at most this many bytes per second while no client request "
     "arrives (0 = unlimited)"},
    {"migrate-batch", OM_CONF_SIZE, "1M", 4096, 64LL << 20, NULL, F(migrate_batch),
     "ring changes: bytes of records per copy batch"},
    {"migrate-rate-busy", OM_CONF_SIZE, "16M", 0, 1LL << 40, NULL, F(migrate_rate_busy),
     "ring changes: while clients are active (a request in the last 250 ms) copy at most "
     "this (and migrate-rate), halved down to 1/8 while client writes take over twice "
     "their usual time (0 = migrate-rate)"},
    {"migrate-batch-busy", OM_CONF_SIZE, "128K", 0, 64LL << 20, NULL, F(migrate_batch_busy),
     "ring changes: bytes per copy batch while clients are active (0 = migrate-batch)"},
    {"cutover-timeout", OM_CONF_DURATION, "5s", 100, 600000, NULL, F(cutover_timeout),
     "ring changes: a cutover (moving keys held) longer than this is retried later"},
    {"clock-margin", OM_CONF_DURATION, "10s", 0, 3600000, NULL, F(clock_margin),
     "ring changes: catch-up passes also copy records this much older than the pass start"},
    {"plaintext-roles", OM_CONF_STR, "auto", 0, 0, NULL, F(plaintext_roles),
     "roles of plaintext connections (client,admin,peer or none; auto = all on loopback)"},
    {"token-keys", OM_CONF_STR, "", 0, 0, NULL, F(token_keys),
     "file of '<kid> <hex secret>' lines verifying client tokens (empty = no tokens)"},
    {"tls-cert", OM_CONF_STR, "", 0, 0, NULL, F(tls_cert),
     "PEM certificate chain: serve TLS only (with tls-key; empty = plaintext)"},
    {"tls-key", OM_CONF_STR, "", 0, 0, NULL, F(tls_key), "PEM private key of tls-cert"},
    {"tls-ca", OM_CONF_STR, "", 0, 0, NULL, F(tls_ca),
     "PEM cluster CA: client certificates must chain to it (roles by OU: peer, admin, client)"
     "; also makes the connections to the shards TLS"},
    {"tls-client-auth", OM_CONF_ENUM, "optional", 0, 0, tls_client_auths, F(tls_client_auth),
     "TLS client certificates: none, optional (else a token) or required"},
    {"log-level", OM_CONF_ENUM, "info", 0, 0, log_levels, F(log_level),
     "error, warn, info or debug"},
};
static const om_conf_table coord_table = {"objmeta-coord", OM_VERSION, coord_items,
                                          sizeof(coord_items) / sizeof(coord_items[0])};

typedef struct app {
    coord *c;
    struct event_base *base;
    const char *port_file;
    int rc;
} app;

static void
app_ready(void *arg)
{
    app *a = arg;
    const char *names[2] = {"rpc", "http"};
    int ports[2] = {coord_rpc_port(a->c), coord_http_port(a->c)};

    if (a->port_file[0] != '\0' &&
        rpc_port_file_write(a->port_file, names, ports, ports[1] ? 2 : 1) != OM_OK) {
        a->rc = 1;
        event_base_loopexit(a->base, NULL);
        return;
    }
    om_log(OM_LOG_INFO, "serving rpc_port=%d http_port=%d", ports[0], ports[1]);
}

static void
app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;

    om_log(OM_LOG_INFO, "shutting down signal=%d", (int)sig);
    coord_shutdown(a->c, 10000, NULL, NULL); /* NULL done: rpc exits the loop */
}

static void
http_addr(const coord_conf *c, char *out, size_t n)
{
    const char *colon = strrchr(c->listen, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;

    if (strcmp(c->http_listen, "off") == 0)
        snprintf(out, n, "%s", "");
    else if (strcmp(c->http_listen, "auto") != 0)
        snprintf(out, n, "%s", c->http_listen);
    else
        snprintf(out, n, "%.*s:%ld", colon ? (int)(colon - c->listen) : 0, c->listen,
                 port > 0 ? port + 1000 : 0);
}

int
main(int argc, char **argv)
{
    coord_conf cf = {0};
    om_conf_action act;
    char err[512], haddr[300];
    coord_opts o;
    app a = {0};
    struct event *sigs[2] = {NULL, NULL};

    if (om_conf_load(&coord_table, &cf, argc, argv, &act, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: %s", err);
        om_conf_fini(&coord_table, &cf);
        return 2;
    }
    if (act != OM_CONF_RUN) {
        if (act == OM_CONF_PRINT)
            om_conf_print(&coord_table, &cf, stdout);
        else if (act == OM_CONF_HELP)
            om_conf_usage(&coord_table, stdout);
        else
            printf("objmeta-coord %s\n", OM_VERSION);
        om_conf_fini(&coord_table, &cf);
        return 0;
    }
    om_log_set_level((om_log_level)cf.log_level);
    rpc_init_logging();
    signal(SIGPIPE, SIG_IGN);

    coord_opts_init(&o);
    o.data_dir = cf.data_dir;
    o.listen = cf.listen;
    http_addr(&cf, haddr, sizeof(haddr));
    o.http_listen = haddr;
    o.initial_shards = cf.shards;
    o.vnodes_per_weight = (uint32_t)cf.vnodes;
    o.pool_size = (uint32_t)cf.pool_size;
    o.health_interval_ms = (uint32_t)cf.health_interval;
    o.health_timeout_ms = (uint32_t)cf.health_timeout;
    o.shard_timeout_ms = (uint32_t)cf.shard_timeout;
    o.startup_wait_ms = (uint32_t)cf.startup_wait;
    o.max_frame = (uint32_t)cf.max_frame;
    o.migrate_rate = (uint64_t)cf.migrate_rate;
    o.migrate_batch = (uint32_t)cf.migrate_batch;
    o.migrate_rate_busy = (uint64_t)cf.migrate_rate_busy;
    o.migrate_batch_busy = (uint32_t)cf.migrate_batch_busy;
    o.cutover_timeout_ms = (uint32_t)cf.cutover_timeout;
    o.clock_margin_ms = (uint32_t)cf.clock_margin;
    o.plaintext_roles = cf.plaintext_roles;
    o.token_keys_file = cf.token_keys;
    o.tls_cert = cf.tls_cert, o.tls_key = cf.tls_key, o.tls_ca = cf.tls_ca;
    o.tls_client_auth = cf.tls_client_auth;
    a.port_file = cf.port_file;
    a.rc = 1;

    if ((a.base = event_base_new()) == NULL)
        goto out;
    if (coord_open(a.base, &o, app_ready, &a, &a.c, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot start: %s", err);
        goto out;
    }
    sigs[0] = evsignal_new(a.base, SIGTERM, app_on_signal, &a);
    sigs[1] = evsignal_new(a.base, SIGINT, app_on_signal, &a);
    if (!sigs[0] || !sigs[1] || event_add(sigs[0], NULL) || event_add(sigs[1], NULL))
        goto out;
    a.rc = 0;
    event_base_dispatch(a.base);
out:
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    coord_close(a.c);
    if (a.base)
        event_base_free(a.base);
    om_log(a.rc == 0 ? OM_LOG_INFO : OM_LOG_ERROR, "exit status=%d", a.rc);
    om_conf_fini(&coord_table, &cf);
    return a.rc;
}
