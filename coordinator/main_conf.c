/*
 * coordinator/main_conf.c -- objmeta-coord's settings (main_conf.h): one
 * declarative table, printed by --print-config and mirrored in
 * deploy/conf/coord.conf.example (a lint test compares them).
 */
#include "coordinator/main_conf.h"

#include "rpc/rpc.h"

#include <stddef.h>

#define F(x) offsetof(coord_conf, x)
static const om_conf_item coord_items[] = {
    RPC_CONF_LISTEN_ITEMS(coord_conf, "127.0.0.1:7000"),
    {"data-dir", OM_CONF_STR, "data/coord", 0, 0, NULL, F(data_dir), "ring state and token secret"},
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
     "at start, wait this long for every shard before serving anyway, and keep trying "
     "etcd this long when it does not answer"},
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
    {"test-phase-delay", OM_CONF_DURATION, "0", 0, 60000, NULL, F(test_phase_delay),
     "testing aid, never for production: the leader waits this long in cutover (moving keys "
     "held, the shards fenced) and on entering cleanup, so a test can act in those phases "
     "(0 = off)"},
    {"clock-margin", OM_CONF_DURATION, "10s", 0, 3600000, NULL, F(clock_margin),
     "ring changes: catch-up passes also copy records this much older than the pass start"},
    {"etcd", OM_CONF_STR, "", 0, 0, NULL, F(etcd),
     "cluster state in etcd: http://host:port[,...] (empty = the RING file in data-dir, "
     "one coordinator)"},
    {"etcd-prefix", OM_CONF_STR, "/objmeta/default", 0, 0, NULL, F(etcd_prefix),
     "etcd: the cluster's keys live under this prefix (/objmeta/<cluster-name>)"},
    {"etcd-timeout", OM_CONF_DURATION, "2s", 100, 60000, NULL, F(etcd_timeout),
     "etcd: deadline of one request (every endpoint tried within it)"},
    {"lease-ttl", OM_CONF_DURATION, "5s", 2000, 600000, NULL, F(lease_ttl),
     "etcd: the leader's lease; a dead leader is replaced within about this long"},
    {"failover-wait", OM_CONF_DURATION, "7s", 0, 600000, NULL, F(failover_wait),
     "etcd: a request for a replica group whose primary is failing over waits this long for "
     "the next primary (a little above the shards' primary lease) before UNAVAILABLE"},
    {"advertise", OM_CONF_STR, "", 0, 0, NULL, F(advertise),
     "etcd: host:port other coordinators forward admin requests to (empty = listen's host "
     "and bound port)"},
    RPC_CONF_TRUST_ITEMS(coord_conf),
    RPC_CONF_LOG_ITEMS(coord_conf),
};
const om_conf_table coord_table = {"objmeta-coord", OM_VERSION, coord_items,
                                   sizeof(coord_items) / sizeof(coord_items[0])};

void
coord_conf_opts(const coord_conf *cf, coord_opts *o, char *haddr, size_t haddrlen)
{
    coord_opts_init(o);
    o->data_dir = cf->data_dir;
    o->listen = cf->listen;
    rpc_conf_http_addr(cf->listen, cf->http_listen, haddr, haddrlen);
    o->http_listen = haddr;
    o->initial_shards = cf->shards;
    o->vnodes_per_weight = (uint32_t)cf->vnodes;
    o->pool_size = (uint32_t)cf->pool_size;
    o->health_interval_ms = (uint32_t)cf->health_interval;
    o->health_timeout_ms = (uint32_t)cf->health_timeout;
    o->shard_timeout_ms = (uint32_t)cf->shard_timeout;
    o->slow_request_ms = (uint32_t)cf->slow_request;
    o->startup_wait_ms = (uint32_t)cf->startup_wait;
    o->max_frame = (uint32_t)cf->max_frame;
    o->max_connections = (uint32_t)cf->max_connections;
    o->idle_timeout_ms = (uint32_t)cf->idle_timeout;
    o->migrate_rate = (uint64_t)cf->migrate_rate;
    o->migrate_batch = (uint32_t)cf->migrate_batch;
    o->migrate_rate_busy = (uint64_t)cf->migrate_rate_busy;
    o->migrate_batch_busy = (uint32_t)cf->migrate_batch_busy;
    o->cutover_timeout_ms = (uint32_t)cf->cutover_timeout;
    o->clock_margin_ms = (uint32_t)cf->clock_margin;
    o->test_phase_delay_ms = (uint32_t)cf->test_phase_delay;
    o->etcd = cf->etcd;
    o->etcd_prefix = cf->etcd_prefix;
    o->etcd_timeout_ms = (uint32_t)cf->etcd_timeout;
    o->lease_ttl_ms = (uint32_t)cf->lease_ttl;
    o->failover_wait_ms = (uint32_t)cf->failover_wait;
    o->advertise = cf->advertise;
    o->plaintext_roles = cf->plaintext_roles;
    o->token_keys_file = cf->token_keys;
    o->tls_cert = cf->tls_cert, o->tls_key = cf->tls_key, o->tls_ca = cf->tls_ca;
    o->tls_client_auth = cf->tls_client_auth;
}
