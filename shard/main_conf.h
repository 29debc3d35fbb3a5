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

#include "rpc/rpc.h"
#include "shard/migrate.h"
#include "shard/repl.h"
#include "shard/repl_etcd.h"
#include "util/conf.h"

typedef struct shard_conf {
    char *listen, *http_listen, *data_dir, *port_file, *id, *plaintext_roles, *token_keys;
    char *tls_cert, *tls_key, *tls_ca, *list_token_secret;
    int tls_client_auth;
    int sync_mode, log_level, log_format;
    int64_t slow_request;
    char *replicas, *replica_group, *etcd, *etcd_prefix, *replica_id, *test_drop_shipment_key;
    int replica_role;
    int64_t replica_term, replica_timeout, replica_lease_ttl, replica_catch_up_rate;
    int64_t sync_period, write_buffer, block_cache, max_object_size, max_metadata_size;
    int64_t row_cache, wal_preallocate, background_nice, memory_budget, idle_flush;
    int64_t max_frame, max_connections, idle_timeout, request_timeout, workers;
    int64_t cleanup_compact_rate, loops;
    bool inline_reads;
} shard_conf;

/* Names of the replica-role choices, indexed by shard_conf.replica_role. */
enum { SHARD_ROLE_NONE = 0, SHARD_ROLE_PRIMARY, SHARD_ROLE_BACKUP };
/* Names of the sync-mode choices, indexed by shard_conf.sync_mode. */
extern const char *const shard_sync_modes[];
/* The table: every setting, default, bounds and doc line. */
extern const om_conf_table shard_table;

/* The shard's, the rpc server's and the migration's options from the settings (main_conf.c). */
void shard_conf_shard_opts(const shard_conf *c, shard_opts *so);
void shard_conf_rpc_opts(const shard_conf *c, rpc_server_opts *ro);
/*
 * shard_conf_trust -- the List token secret into so, TLS (*tls, the caller
 * frees it with rpc_tls_free, also after an error) and the plaintext roles
 * into ro. Returns: OM_OK; OM_E_INVALID (a clear message logged).
 */
om_status shard_conf_trust(const shard_conf *c, shard_opts *so, rpc_server_opts *ro, rpc_tls **tls);
void shard_conf_mig_opts(const shard_conf *c, shard_mig_opts *mo);

/*
 * The loop threads serving the rpc port, main one included (setting `loops`,
 * 0 = auto: one per CPU the process may run on, at most
 * SHARD_CONF_LOOPS_AUTO_MAX; one without inline-reads, which leaves reads to
 * the worker pool).
 */
#define SHARD_CONF_LOOPS_AUTO_MAX 4
unsigned shard_conf_loops(const shard_conf *c);

/* The replication objects one of which the settings start (main_repl.c). */
typedef struct shard_conf_repl {
    shard_repl *primary;   /* replica-role primary */
    shard_replica *backup; /* replica-role backup */
    shard_repl_etcd *etcd; /* etcd: either role, as the group configuration says */
    rpc_tls *tls;          /* the shippers' client context when the shard serves TLS */
} shard_conf_repl;

/*
 * shard_conf_replication (main_repl.c) -- start what the settings name:
 * static membership (replica-role), the etcd layer (etcd), or nothing.
 * restart(arg) is how the etcd layer stops a demoted primary (main executes
 * the binary again). Call after shard_open, before shard_attach_loop.
 * Returns: OM_OK; OM_E_INVALID (a clear message logged); the objects' errors.
 */
om_status shard_conf_replication(const shard_conf *c, shard *sh, struct event_base *base,
                                 void (*restart)(void *), void *arg, shard_conf_repl *out);

/* The role's say on a request (true: answered). Loop thread. */
bool shard_conf_repl_handle(shard_conf_repl *r, const Objmeta__Request *req, rpc_reply *reply);

/*
 * shard_conf_repl_stop -- before shard_close; true when the process must
 * execute itself again (a demoted primary). shard_conf_repl_free after it.
 */
bool shard_conf_repl_stop(shard_conf_repl *r);
void shard_conf_repl_free(shard_conf_repl *r);
/* Execute this binary again with the same arguments; returns 1 only if exec failed. */
int shard_conf_exec_again(char **argv);

#endif /* OM_SHARD_MAIN_CONF_H */
