/*
 * shard/main_conf.h -- the config table of the objmeta-shard binary (one
 * declarative table, util/conf.h). Part of the binary, not of om_shard:
 * libraries get option structs, never config files.
 *
 * Thread-safety: const data; loaded once at startup.
 */
#ifndef OM_SHARD_MAIN_CONF_H
#define OM_SHARD_MAIN_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "shard/repl.h"
#include "util/conf.h"

typedef struct shard_conf {
    char *listen, *http_listen, *data_dir, *port_file, *id, *plaintext_roles, *token_keys;
    char *tls_cert, *tls_key, *tls_ca, *list_token_secret;
    int tls_client_auth;
    int sync_mode, log_level, log_format;
    char *replicas, *replica_group;
    int replica_role;
    int64_t replica_term, replica_timeout;
    int64_t sync_period, write_buffer, block_cache, max_object_size, max_metadata_size;
    int64_t row_cache, wal_preallocate, background_nice, memory_budget;
    int64_t max_frame, max_connections, idle_timeout, request_timeout, workers;
    bool inline_reads;
} shard_conf;

/* Names of the replica-role choices, indexed by shard_conf.replica_role. */
enum { SHARD_ROLE_NONE = 0, SHARD_ROLE_PRIMARY, SHARD_ROLE_BACKUP };
/* Names of the sync-mode choices, indexed by shard_conf.sync_mode. */
extern const char *const shard_sync_modes[];
/* The table: every setting, default, bounds and doc line. */
extern const om_conf_table shard_table;

/*
 * shard_conf_replication (main_repl.c) -- start the replica role the
 * settings name: a backup's apply side into *backup, a primary's shipping
 * into *primary (over TLS with the client context it puts in *tls when the
 * shard has a certificate), nothing for none. Call after shard_open, before
 * shard_attach_loop. Returns: as shard_replica_open / shard_repl_open;
 * OM_E_INVALID (logged) for TLS settings a client cannot use.
 * Ownership: the caller frees *tls (rpc_tls_free) after shard_repl_close.
 */
om_status shard_conf_replication(const shard_conf *c, shard *sh, shard_repl **primary,
                                 shard_replica **backup, rpc_tls **tls);

#endif /* OM_SHARD_MAIN_CONF_H */
