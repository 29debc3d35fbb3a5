/*
 * shard/main_repl.c -- the replica-role settings of objmeta-shard turned
 * into the replication objects (shard/repl.h; design: shard/REPLICATION.md).
 * Part of the binary, like main_conf.c: the library takes option structs.
 */
#include "shard/main_conf.h"

om_status
shard_conf_replication(const shard_conf *c, shard *sh, shard_repl **primary, shard_replica **backup)
{
    shard_repl_opts o;

    if (c->replica_role == SHARD_ROLE_BACKUP)
        return shard_replica_open(sh, c->replica_group, backup);
    if (c->replica_role != SHARD_ROLE_PRIMARY)
        return OM_OK;
    shard_repl_opts_init(&o);
    o.group = c->replica_group;
    o.term = (uint64_t)c->replica_term;
    o.backups = c->replicas;
    o.timeout_ms = (uint32_t)c->replica_timeout;
    return shard_repl_open(sh, &o, primary);
}
