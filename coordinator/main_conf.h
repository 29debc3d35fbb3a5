/*
 * coordinator/main_conf.h -- objmeta-coord's configuration table (the
 * binary's, not the library's): the settings, their defaults and bounds, and
 * their translation into coord_opts. Part of the objmeta-coord executable.
 *
 * Thread-safety: startup only.
 */
#ifndef OM_COORDINATOR_MAIN_CONF_H
#define OM_COORDINATOR_MAIN_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/coord.h"
#include "util/conf.h"

typedef struct coord_conf {
    char *listen, *http_listen, *data_dir, *port_file, *shards;
    int log_level, log_format;
    int64_t slow_request;
    int64_t vnodes, pool_size, health_interval, health_timeout, shard_timeout, startup_wait;
    int64_t max_frame, max_connections, idle_timeout;
    int64_t migrate_rate, migrate_batch, migrate_rate_busy, migrate_batch_busy, cutover_timeout,
        clock_margin, test_phase_delay;
    char *etcd, *etcd_prefix, *advertise;
    int64_t etcd_timeout, lease_ttl, failover_wait;
    char *plaintext_roles, *token_keys, *tls_cert, *tls_key, *tls_ca;
    int tls_client_auth;
} coord_conf;

extern const om_conf_table coord_table;

/*
 * coord_conf_opts -- fill o from cf. http-listen "auto" is resolved into
 * haddr (the host of `listen`, port + 1000; port 0 stays 0).
 * Ownership: o's strings point into cf and haddr.
 */
void coord_conf_opts(const coord_conf *cf, coord_opts *o, char *haddr, size_t haddrlen);

#endif /* OM_COORDINATOR_MAIN_CONF_H */
