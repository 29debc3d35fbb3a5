/*
 * shard/main_conf.c -- the settings of objmeta-shard: name, type, default,
 * bounds and a one-line doc each. `objmeta-shard --print-config` prints them
 * (deploy/conf/shard.conf.example is that output; a test keeps them equal).
 */
#define OM_LOG_MODULE "main"
#include "shard/main_conf.h"

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "util/log.h"

const char *const shard_sync_modes[] = {"always", "periodic", "none", NULL};
static const char *const replica_roles[] = {"none", "primary", "backup", NULL};

#define F(x) offsetof(shard_conf, x)
static const om_conf_item shard_items[] = {
    RPC_CONF_LISTEN_ITEMS(shard_conf, "127.0.0.1:7001"),
    {"data-dir", OM_CONF_STR, "data/shard", 0, 0, NULL, F(data_dir), "LSM directory"},
    {"id", OM_CONF_STR, "shard-1", 0, 0, NULL, F(id), "shard id shown by Ping"},
    {"sync-mode", OM_CONF_ENUM, "always", 0, 0, shard_sync_modes, F(sync_mode),
     "always = fsync the WAL before acknowledging (group commit on a writer and a sync thread); "
     "periodic; none"},
    {"sync-period", OM_CONF_DURATION, "100ms", 1, 60000, NULL, F(sync_period),
     "WAL sync interval for sync-mode=periodic"},
    {"memory-budget", OM_CONF_SIZE, "256M", 16LL << 20, 1LL << 42, NULL, F(memory_budget),
     "memory for the storage engine: memtables 3/16 each (up to 39/64 with two immutable, the "
     "recycled blocks and the prefault reserve; about 6/16 under writes), block cache 3/16, row "
     "cache 1/16, the rest for index and filter blocks, compaction and connection buffers; "
     "write-buffer, block-cache and row-cache-size override their share"},
    {"write-buffer", OM_CONF_SIZE, "0", 0, 4LL << 30, NULL, F(write_buffer),
     "memtable size before a flush (0 = 3/16 of memory-budget; at least 64K otherwise); larger "
     "memtables make compaction cheaper"},
    {"idle-flush", OM_CONF_DURATION, "10s", 0, 3600000, NULL, F(idle_flush),
     "after this long without writes, flush a memtable holding a quarter of write-buffer or more "
     "and free the recycled memtable blocks (0 = never)"},
    {"wal-preallocate", OM_CONF_SIZE, "1M", 0, 1LL << 30, NULL, F(wal_preallocate),
     "with sync-mode=always: keep the WAL zero-filled this far ahead of its end so each fsync "
     "only flushes data (no file-size change to journal); 0 = off"},
    {"background-nice", OM_CONF_INT, "5", 0, 19, NULL, F(background_nice),
     "lower the LSM flush and compaction threads' CPU priority by this nice value, so requests "
     "go first when cores are short (0 = same priority)"},
    {"block-cache", OM_CONF_SIZE, "0", 0, 1LL << 40, NULL, F(block_cache),
     "bytes of decompressed SSTable blocks to cache (0 = 3/16 of memory-budget); blocks stored "
     "raw are read in place from the mapped tables and never cached"},
    {"row-cache-size", OM_CONF_SIZE, "0", 0, 1LL << 40, NULL, F(row_cache),
     "bytes of entries found in SSTables cached per key, so lookups skip the block search (0 = "
     "1/16 of memory-budget)"},
    {"max-object-size", OM_CONF_SIZE, "4M", 0, 64LL << 20, NULL, F(max_object_size),
     "largest object data accepted"},
    {"max-metadata-size", OM_CONF_SIZE, "64K", 2, 16LL << 20, NULL, F(max_metadata_size),
     "largest metadata JSON accepted"},
    {"request-timeout", OM_CONF_DURATION, "30s", 0, 3600000, NULL, F(request_timeout),
     "answer TIMEOUT when a request takes longer (0 = never)"},
    {"workers", OM_CONF_INT, "8", 1, 1024, NULL, F(workers),
     "threads running lists (and retrieve/head/exists when inline-reads is false)"},
    {"cleanup-compact-rate", OM_CONF_SIZE, "32M", 0, 1LL << 40, NULL, F(cleanup_compact_rate),
     "pace of the compaction that drops what a ring change moved away (its cleanup), bytes of "
     "entries read per second; 0 = full speed"},
    {"inline-reads", OM_CONF_BOOL, "true", 0, 0, NULL, F(inline_reads),
     "answer retrieve/head/exists on the network thread"},
    {"loops", OM_CONF_INT, "0", 0, 32, NULL, F(loops),
     "network threads serving the rpc port (shard/README.md, \"Threads\"): the first accepts "
     "connections and deals them out in turn and runs everything but reads; each other one "
     "answers retrieve/head/exists on its connections itself and hands other requests to the "
     "first; max-connections is shared out among them; 0 = one per CPU the process may run on "
     "(nproc), at most 4 (1 when inline-reads is false)"},
    {"list-token-secret", OM_CONF_STR, "", 0, 0, NULL, F(list_token_secret),
     "key file ('<kid> <hex>', the first key) signing List continuation tokens; empty = a "
     "random secret per start (tokens then end with a restart)"},
    RPC_CONF_TRUST_ITEMS(shard_conf),
    {"etcd", OM_CONF_STR, "", 0, 0, NULL, F(etcd),
     "replication with the group configuration in etcd: http://host:port[,...] (the "
     "coordinators' etcd; empty = static membership or none). Needs replica-group, replica-id "
     "and a fixed listen port; replica-role, replicas and replica-term must stay unset"},
    {"etcd-prefix", OM_CONF_STR, "/objmeta/default", 0, 0, NULL, F(etcd_prefix),
     "etcd: the cluster's keys live under this prefix (/objmeta/<cluster-name>, as the "
     "coordinators'); the group's under <prefix>/groups/<replica-group>/"},
    {"replica-id", OM_CONF_STR, "", 0, 0, NULL, F(replica_id),
     "etcd: this replica's id in the group configuration"},
    {"replica-lease-ttl", OM_CONF_DURATION, "5s", 1000, 600000, NULL, F(replica_lease_ttl),
     "etcd: the primary's lease (whole seconds); a dead primary is replaced within about this "
     "long, and a primary cut off from etcd stops serving before it ends"},
    {"replica-role", OM_CONF_ENUM, "none", 0, 0, replica_roles, F(replica_role),
     "replication (shard/REPLICATION.md): none; primary (ships every group commit to the "
     "replicas and answers only once all have it durable); backup (applies the primary's stream, "
     "refuses client writes)"},
    {"replicas", OM_CONF_STR, "", 0, 0, NULL, F(replicas),
     "replica-role=primary: the backups' rpc addresses, host:port,host:port"},
    {"replica-group", OM_CONF_STR, "", 0, 0, NULL, F(replica_group),
     "the replica group's id, the same on its primary and backups (a backup with \"\" accepts "
     "any)"},
    {"replica-term", OM_CONF_INT, "1", 1, INT64_MAX, NULL, F(replica_term),
     "replica-role=primary: the term it leads (static membership; with etcd the terms come "
     "from the group configuration)"},
    {"replica-timeout", OM_CONF_DURATION, "2s", 10, 600000, NULL, F(replica_timeout),
     "wait this long for a backup's answer before sending again; static membership: the writes "
     "stay held; etcd: the primary then removes the backup from the in-sync set"},
    {"test-drop-shipment-key", OM_CONF_STR, "", 0, 0, NULL, F(test_drop_shipment_key),
     "testing aid, never for production: as primary, ship nothing from the first group commit "
     "holding a key that contains this string on (it is durable here and never acknowledged), "
     "so a test can kill the primary with such a write in hand (empty = off)"},
    {"replica-catch-up-rate", OM_CONF_SIZE, "16M", 0, 1LL << 40, NULL, F(replica_catch_up_rate),
     "a primary sends the snapshot pages of a catch-up at most this fast, in key and value "
     "bytes per second, while the backup is out of the in-sync set (no write waits for it; the "
     "migration copy's busy rate); 0 = full speed"},
    RPC_CONF_LOG_ITEMS(shard_conf),
};
const om_conf_table shard_table = {"objmeta-shard", OM_VERSION, shard_items,
                                   sizeof(shard_items) / sizeof(shard_items[0])};

void
shard_conf_shard_opts(const shard_conf *c, shard_opts *so)
{
    shard_opts_init(so);
    so->lsm.sync_mode = (lsm_sync_mode)c->sync_mode;
    so->lsm.sync_period_ms = (uint32_t)c->sync_period;
    lsm_opts_set_memory_budget(&so->lsm, (uint64_t)c->memory_budget); /* 0 below: its share */
    if (c->write_buffer)
        so->lsm.write_buffer_size = (size_t)c->write_buffer;
    if (c->block_cache)
        so->lsm.block_cache_size = (size_t)c->block_cache;
    if (c->row_cache)
        so->lsm.row_cache_size = (size_t)c->row_cache;
    so->lsm.wal_preallocate = (size_t)c->wal_preallocate;
    so->lsm.idle_flush_ms = (uint32_t)c->idle_flush;
    so->lsm.background_nice = (int)c->background_nice;
    so->max_object_size = (size_t)c->max_object_size;
    so->max_metadata_size = (size_t)c->max_metadata_size;
    so->workers = (int)c->workers;
    so->inline_reads = c->inline_reads;
    so->id = c->id;
    so->max_list_bytes = (size_t)c->max_frame / 2; /* a List page always fits in a frame */
}

unsigned
shard_conf_loops(const shard_conf *c)
{
    cpu_set_t set;
    /* the CPUs this process may run on (taskset, a cpuset), as nproc counts them */
    long cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                             : sysconf(_SC_NPROCESSORS_ONLN);

    if (c->loops > 0)
        return (unsigned)c->loops;
    if (!c->inline_reads || cpus < 1)
        return 1;
    return cpus < SHARD_CONF_LOOPS_AUTO_MAX ? (unsigned)cpus : SHARD_CONF_LOOPS_AUTO_MAX;
}

void
shard_conf_rpc_opts(const shard_conf *c, rpc_server_opts *ro)
{
    rpc_server_opts_init(ro);
    ro->listen = c->listen;
    ro->max_frame = (uint32_t)c->max_frame;
    ro->max_connections = (uint32_t)c->max_connections;
    ro->idle_timeout_ms = (uint32_t)c->idle_timeout;
    ro->request_timeout_ms = (uint32_t)c->request_timeout;
    ro->slow_request_ms = (uint32_t)c->slow_request;
    ro->token_keys_file = c->token_keys;
    if (shard_conf_loops(c) > 1) {
        unsigned n = shard_conf_loops(c);

        ro->max_connections = (ro->max_connections + n - 1) / n; /* per loop */
    }
}

om_status
shard_conf_trust(const shard_conf *c, shard_opts *so, rpc_server_opts *ro, rpc_tls **tls)
{
    char err[512];

    *tls = NULL;
    if (c->list_token_secret[0] != '\0' &&
        rpc_secret_load(c->list_token_secret, so->list_secret, sizeof(so->list_secret),
                        &so->list_secret_len, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: list-token-secret: %s", err);
        return OM_ERR(OM_E_INVALID);
    }
    if (c->tls_cert[0] != '\0') {
        rpc_tls_opts t = {.cert_file = c->tls_cert,
                          .key_file = c->tls_key,
                          .ca_file = c->tls_ca,
                          .client_auth = c->tls_client_auth};
        if (rpc_tls_new(&t, true, tls, err, sizeof(err)) != OM_OK) {
            om_log(OM_LOG_ERROR, "bad configuration: %s", err);
            return OM_ERR(OM_E_INVALID);
        }
        ro->tls = *tls;
    }
    if (rpc_roles_parse(c->plaintext_roles, &ro->plaintext_roles, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: plaintext-roles: %s", err);
        return OM_ERR(OM_E_INVALID); /* *tls: the caller frees it */
    }
    return OM_OK;
}

void
shard_conf_mig_opts(const shard_conf *c, shard_mig_opts *mo)
{
    shard_mig_opts_init(mo);
    mo->compact_rate = (uint64_t)c->cleanup_compact_rate;
    mo->replicated = c->etcd[0] != '\0' || c->replica_role != SHARD_ROLE_NONE;
}
