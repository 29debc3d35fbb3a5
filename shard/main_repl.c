/*
 * shard/main_repl.c -- the replication settings of objmeta-shard turned
 * into the replication objects (shard/repl.h, shard/repl_etcd.h; design:
 * shard/REPLICATION.md). Part of the binary, like main_conf.c: the library
 * takes option structs.
 *
 * A primary whose shard serves TLS ships over TLS too, as the coordinator
 * dials shards (coordinator/coord.c): a client context with the shard's own
 * certificate and key (OU=peer: the peer role Replicate needs) and the
 * cluster CA, which the backup's certificate must chain to. A backup may
 * then grant plaintext nothing (plaintext-roles = none).
 */
#define OM_LOG_MODULE "main"
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shard/main_conf.h"
#include "util/log.h"

/* The etcd layer: membership, terms and roles come from the group configuration. */
static om_status
start_etcd(const shard_conf *c, shard *sh, struct event_base *base, void (*restart)(void *),
           void *arg, shard_conf_repl *out)
{
    const char *colon = strrchr(c->listen, ':');
    shard_repl_etcd_opts o = {.endpoints = c->etcd,
                              .prefix = c->etcd_prefix,
                              .group = c->replica_group,
                              .id = c->replica_id,
                              .lease_ttl_ms = (uint32_t)c->replica_lease_ttl,
                              .timeout_ms = (uint32_t)c->replica_timeout,
                              .catch_up_rate = (uint64_t)c->replica_catch_up_rate,
                              .restart = restart,
                              .restart_arg = arg,
                              .tls = out->tls,
                              .test_drop_key = c->test_drop_shipment_key};
    char err[256];

    if (c->replica_role != SHARD_ROLE_NONE || c->replicas[0] != '\0' || c->replica_term != 1) {
        om_log(OM_LOG_ERROR, "bad configuration: with etcd the group configuration names the "
                             "primary, the replicas and the term: leave replica-role, replicas "
                             "and replica-term unset");
        return OM_ERR(OM_E_INVALID);
    }
    if (colon == NULL || strcmp(colon, ":0") == 0) {
        om_log(OM_LOG_ERROR,
               "bad configuration: with etcd, listen needs a fixed port (the group "
               "configuration names this replica's address) listen=%s",
               c->listen);
        return OM_ERR(OM_E_INVALID);
    }
    if (shard_repl_etcd_open(sh, base, &o, err, sizeof(err), &out->etcd) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: %s", err);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

om_status
shard_conf_replication(const shard_conf *c, shard *sh, struct event_base *base,
                       void (*restart)(void *), void *arg, shard_conf_repl *out)
{
    shard_repl_opts o;
    char err[512];

    if (c->tls_cert[0] != '\0' && (c->etcd[0] != '\0' || c->replica_role == SHARD_ROLE_PRIMARY)) {
        rpc_tls_opts t = {.cert_file = c->tls_cert, .key_file = c->tls_key, .ca_file = c->tls_ca};
        if (rpc_tls_new(&t, false, &out->tls, err, sizeof(err)) != OM_OK) {
            om_log(OM_LOG_ERROR, "bad configuration: replication over TLS: %s", err);
            return OM_ERR(OM_E_INVALID);
        }
    }
    if (c->etcd[0] != '\0')
        return start_etcd(c, sh, base, restart, arg, out);
    if (c->replica_role == SHARD_ROLE_BACKUP)
        return shard_replica_open(sh, c->replica_group, &out->backup);
    if (c->replica_role != SHARD_ROLE_PRIMARY)
        return OM_OK;
    shard_repl_opts_init(&o);
    o.group = c->replica_group;
    o.term = (uint64_t)c->replica_term;
    o.backups = c->replicas;
    o.timeout_ms = (uint32_t)c->replica_timeout;
    o.catch_up_rate = (uint64_t)c->replica_catch_up_rate;
    o.tls = out->tls;
    o.drop_key = c->test_drop_shipment_key;
    return shard_repl_open(sh, &o, &out->primary);
}

bool
shard_conf_repl_handle(shard_conf_repl *r, const Objmeta__Request *req, rpc_reply *reply)
{
    return (r->etcd != NULL && shard_repl_etcd_handle(r->etcd, req, reply)) ||
           (r->backup != NULL && shard_replica_handle(r->backup, req, reply));
}

bool
shard_conf_repl_stop(shard_conf_repl *r)
{
    shard_repl_stop(r->primary); /* a backup that never answers must not hold the exit */
    shard_replica_close(r->backup);
    r->backup = NULL;
    return shard_repl_etcd_stop(r->etcd);
}

void
shard_conf_repl_free(shard_conf_repl *r)
{
    shard_repl_close(r->primary);
    shard_repl_etcd_free(r->etcd);
    rpc_tls_free(r->tls); /* after every shipper that borrowed it */
    memset(r, 0, sizeof(*r));
}

/* Marks every descriptor above stderr close-on-exec. Sockets that libevent
 * and the etcd client opened without O_CLOEXEC would otherwise live on in
 * the new process: a peer would keep seeing an open connection that nobody
 * reads. /proc/self/fd, not close_range(2): no kernel or libc version rule. */
static void
cloexec_all(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        om_log(OM_LOG_WARN, "cannot list /proc/self/fd: descriptors may leak into the new process");
        return;
    }
    int self = dirfd(d);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        char *end = NULL;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd <= 2 || fd == self)
            continue;
        int fl = fcntl((int)fd, F_GETFD);
        if (fl >= 0)
            (void)fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
    }
    closedir(d);
}

int
shard_conf_exec_again(char **argv)
{
    om_log(OM_LOG_WARN, "executing again as a backup (shard/REPLICATION.md, \"Failover\")");
    cloexec_all();
    execv("/proc/self/exe", argv);
    om_log(OM_LOG_ERROR, "exec failed: exiting instead");
    return 1;
}
