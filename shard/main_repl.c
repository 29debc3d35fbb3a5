/*
 * shard/main_repl.c -- the replica-role settings of objmeta-shard turned
 * into the replication objects (shard/repl.h; design: shard/REPLICATION.md).
 * Part of the binary, like main_conf.c: the library takes option structs.
 *
 * A primary whose shard serves TLS ships over TLS too, as the coordinator
 * dials shards (coordinator/coord.c): a client context with the shard's own
 * certificate and key (OU=peer: the peer role Replicate needs) and the
 * cluster CA, which the backup's certificate must chain to. A backup may
 * then grant plaintext nothing (plaintext-roles = none).
 */
#define OM_LOG_MODULE "main"
#include "shard/main_conf.h"
#include "util/log.h"

om_status
shard_conf_replication(const shard_conf *c, shard *sh, shard_repl **primary, shard_replica **backup,
                       rpc_tls **tls)
{
    shard_repl_opts o;
    char err[512];

    if (c->replica_role == SHARD_ROLE_BACKUP)
        return shard_replica_open(sh, c->replica_group, backup);
    if (c->replica_role != SHARD_ROLE_PRIMARY)
        return OM_OK;
    shard_repl_opts_init(&o);
    o.group = c->replica_group;
    o.term = (uint64_t)c->replica_term;
    o.backups = c->replicas;
    o.timeout_ms = (uint32_t)c->replica_timeout;
    if (c->tls_cert[0] != '\0') {
        rpc_tls_opts t = {.cert_file = c->tls_cert, .key_file = c->tls_key, .ca_file = c->tls_ca};
        if (rpc_tls_new(&t, false, tls, err, sizeof(err)) != OM_OK) {
            om_log(OM_LOG_ERROR, "bad configuration: replication over TLS: %s", err);
            return OM_E_INVALID;
        }
        o.tls = *tls;
    }
    return shard_repl_open(sh, &o, primary);
}
