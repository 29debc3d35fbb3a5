/*
 * coordinator/coord.h -- objmeta-coord: one front door for a cluster of
 * shards (public API of coordinator/).
 *
 * The coordinator holds the consistent-hash ring (partitioner/ring.h),
 * persisted in its data dir or, with several coordinators, in etcd (one
 * elected leader changes it; see MIGRATION.md, "Many coordinators"), and
 * speaks the same protocol as a shard:
 *
 *   - Store/Retrieve/Head/Exists/Delete go to the shard that owns
 *     (bucket, key) under the ring, stamped with the ring epoch (fencing:
 *     the shard answers WRONG_SHARD if it does not own the key under it).
 *     The shard's answer is forwarded unchanged.
 *   - List fans out to every shard in parallel and merges the sorted pages
 *     k ways (fanout.c), with its own continuation token.
 *   - Ping, Stats and GetRing are answered by the coordinator itself.
 *   - AddShard, RemoveShard, SetWeight start an online ring change and
 *     RebalanceStatus reports it (migrate.c; the protocol is in
 *     coordinator/MIGRATION.md).
 *
 * Each shard is reached through a small pool of multiplexed rpc_client
 * connections (shard_pool.c); requests for different shards never wait for
 * each other. A health check probes every shard with SetRing, which also
 * (re)installs the ring; a shard that does not answer is marked down and
 * requests for its keys fail at once with UNAVAILABLE while the other shards
 * keep serving. A shard that answers again with the coordinator's ring epoch
 * (and its own id, checked with Ping) is marked up.
 *
 * Thread-safety: a coord belongs to the thread that runs its event_base;
 * every function here is for that thread only.
 */
#ifndef OM_COORDINATOR_COORD_H
#define OM_COORDINATOR_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

struct event_base;

typedef struct coord coord;

typedef struct coord_opts {
    const char *data_dir;        /* ring state and token secret live here (required) */
    const char *listen;          /* rpc "host:port"; default "127.0.0.1:7000" */
    const char *http_listen;     /* /healthz, /metrics; "" = no HTTP; default "127.0.0.1:8000" */
    const char *initial_shards;  /* "id=host:port[,id=host:port...]"; "/W" after an address
                                  * sets that shard's weight (default 1). Used only when the
                                  * data dir holds no ring yet. */
    uint32_t vnodes_per_weight;  /* for the initial ring; 0 = the ring default (128) */
    uint32_t pool_size;          /* connections per shard; default 2 */
    uint32_t health_interval_ms; /* probe (SetRing) period per shard; default 500 */
    uint32_t health_timeout_ms;  /* a slower probe counts as a failure; default 1000 */
    uint32_t shard_timeout_ms;   /* deadline of a request forwarded to a shard; default 10000 */
    uint32_t slow_request_ms;    /* log slower answers at WARN (rpc_server_opts); default 1000 */
    uint32_t startup_wait_ms;    /* coord_open's ready callback waits this long for every
                                  * shard to come up; default 5000 */
    uint32_t max_frame;          /* largest message in or out; default rpc's 16 MiB */
    uint32_t max_connections;    /* client connections beyond this are refused BUSY; 0 =
                                  * rpc's default (1024) */
    uint32_t idle_timeout_ms;    /* close an idle client connection; 0 = never; default
                                  * rpc's (300 s) */
    /* Online ring changes (coordinator/MIGRATION.md). */
    uint64_t migrate_rate;       /* copy throttle, bytes/s over all sources; 0 = unlimited;
                                  * default 128 MiB/s */
    uint32_t migrate_batch;      /* bytes of records per scan batch; default 1 MiB */
    uint64_t migrate_rate_busy;  /* the throttle while clients are active (a client request
                                  * within the last 250 ms): at most this (and at most
                                  * migrate_rate), halved down to 1/8 while client writes
                                  * are slow; 0 = migrate_rate; default 16 MiB/s */
    uint32_t migrate_batch_busy; /* batch size while clients are active (at most
                                  * migrate_batch); 0 = migrate_batch; default 128 KiB */
    uint32_t cutover_timeout_ms; /* a fenced final pass longer than this is abandoned and
                                  * retried after another catch-up pass; default 5000 */
    uint32_t clock_margin_ms;    /* catch-up passes copy records with version >= the
                                  * source's clock at the previous pass's start minus this;
                                  * default 10000 */
    /* Testing aid (--test-phase-delay): the leader pauses this long in cutover, once the
     * shards confirmed the fence, and on entering cleanup (coord_test_delay); 0 = off, the
     * default. */
    uint32_t test_phase_delay_ms;
    /* Cluster state (coordinator/cstate.h): the RING file in data_dir unless etcd is set. */
    const char *etcd;            /* "http://host:port[,...]"; NULL or "" = file */
    const char *etcd_prefix;     /* the cluster's keys; default "/objmeta/default" */
    uint32_t etcd_timeout_ms;    /* one etcd request; default 2000 */
    uint32_t lease_ttl_ms;       /* the leader's etcd lease; default 5000 (whole seconds) */
    uint32_t failover_wait_ms;   /* a request for a replica group without a usable primary
                                  * (failover) waits this long for the next one; default 7000 */
    const char *advertise;       /* "host:port" for other coordinators (forwarded admin
                                  * requests); NULL or "" = listen's host and bound port */
    const char *plaintext_roles; /* roles of plaintext client connections (rpc_roles_parse);
                                  * default "auto" */
    const char *token_keys_file; /* verifies client tokens (rpc_server_opts); NULL = none */
    /* TLS (README.md, Security): with tls_cert the listener speaks only TLS; with
     * tls_ca the connections to the shards use TLS too, presenting tls_cert (a
     * "peer" certificate of the cluster CA). NULL or "" = off. */
    const char *tls_cert, *tls_key, *tls_ca;
    int tls_client_auth; /* RPC_TLS_CLIENT_*; default OPTIONAL */
} coord_opts;

/* Fill *o with the defaults documented above (data_dir NULL, initial_shards NULL). */
void coord_opts_init(coord_opts *o);

/*
 * coord_open -- load (or create from initial_shards) the ring, bind the rpc
 * and HTTP listeners on `base`, connect to the shards and start health
 * checking. When every shard is up, or after startup_wait_ms, ready(arg) is
 * called once on the loop thread (write the port file there).
 *
 * Returns:   OM_OK and *out; OM_E_INVALID with a message in err (no ring
 *            and no initial_shards, malformed initial_shards, bad option);
 *            OM_E_CORRUPT with a message if the stored ring is damaged;
 *            OM_E_IO (logged) if the data dir or a listener cannot be used.
 * Ownership: the caller closes *out with coord_close(); opts is copied.
 */
om_status coord_open(struct event_base *base, const coord_opts *opts, void (*ready)(void *arg),
                     void *arg, coord **out, char *err, size_t errlen);

/* The bound ports (useful with port 0); http 0 when HTTP is off. */
int coord_rpc_port(const coord *c);
int coord_http_port(const coord *c);

/*
 * coord_shutdown -- stop accepting, let requests in flight finish (their
 * shard calls included), then call done(arg). Calling it again does nothing.
 */
void coord_shutdown(coord *c, uint32_t deadline_ms, void (*done)(void *arg), void *arg);

/* coord_close -- free everything at once. Accepts NULL. Not from inside a callback. */
void coord_close(coord *c);

#endif /* OM_COORDINATOR_COORD_H */
