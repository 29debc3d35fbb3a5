/*
 * shard/repl_etcd.h -- a replica whose group configuration lives in etcd
 * (private to shard/; wired up by main_repl.c; the design:
 * shard/REPLICATION.md, "Group configuration", "A backup that does not
 * answer", "Failover", "Lease reads").
 *
 * One object per process, on the shard's loop. It starts as a backup and
 * follows <prefix>/groups/<gid>/config and .../leader: a backup of the
 * in-sync set campaigns when the leader key disappears, a replica named
 * primary of a later term takes over; a primary holds the leader key under
 * its lease, serves only while the lease is valid by its own clock, removes
 * a silent backup from the in-sync set by transaction before anything that
 * depends on it is answered, adds a caught-up one back; a primary that sees
 * a later term, loses its lease or cannot change the configuration stops
 * serving at once and asks to be executed again (it comes back a backup:
 * the simplest way to drop every in-memory state of a primary).
 *
 * Thread-safety: the loop thread of `base`, but for shard_repl_etcd_stop and
 * _free (the main thread, after the loop ended).
 */
#ifndef OM_SHARD_REPL_ETCD_H
#define OM_SHARD_REPL_ETCD_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "shard/shard.h"
#include "util/status.h"

struct event_base;

typedef struct shard_repl_etcd shard_repl_etcd;

typedef struct shard_repl_etcd_opts {
    const char *endpoints;  /* etcd: http://host:port[,...] */
    const char *prefix;     /* the cluster's keys: <prefix>/groups/<group>/... */
    const char *group;      /* replica group id */
    const char *id;         /* this replica's id in the group configuration */
    uint32_t lease_ttl_ms;  /* the primary's lease (rounded up to seconds) */
    uint32_t timeout_ms;    /* a backup silent this long leaves the in-sync set */
    uint64_t catch_up_rate; /* shard_repl_opts.catch_up_rate */
    uint32_t etcd_timeout_ms;
    /* stop serving and return from the loop: main executes the binary again (loop thread) */
    void (*restart)(void *arg);
    void *restart_arg;
    rpc_tls *tls; /* NULL: ship in plaintext; else the shippers' client context (borrowed) */
    const char *test_drop_key; /* testing aid: shard_repl_opts.drop_key of each term led */
} shard_repl_etcd_opts;

/*
 * shard_repl_etcd_open -- start as a backup of s (shard_replica_open) and
 * follow the group's keys. After shard_open, before shard_attach_loop.
 * Returns: OM_OK and *out; OM_E_INVALID with err (a bad setting);
 * shard_replica_open's errors.
 */
om_status shard_repl_etcd_open(shard *s, struct event_base *base, const shard_repl_etcd_opts *o,
                               char *err, size_t errlen, shard_repl_etcd **out);

/*
 * shard_repl_etcd_handle -- the role's say on a request: a backup's
 * (shard_replica_handle), a primary's refusals (not serving yet, lease
 * over: UNAVAILABLE naming why, for client requests and migration's
 * MigrateScan, ApplyRecords and Compact), true when answered.
 */
bool shard_repl_etcd_handle(shard_repl_etcd *a, const Objmeta__Request *req, rpc_reply *reply);

/* The etcd layer's gauges (config term, in-sync size, failovers, serving, lease); NULL: none. */
om_status shard_repl_etcd_render_metrics(shard_repl_etcd *a, om_buf *out);

/*
 * shard_repl_etcd_shutdown -- a primary about to exit (SIGTERM) resigns at
 * once: nothing more is answered, its lease is revoked, and a backup takes
 * over without waiting for the lease to expire. then(arg) runs when the
 * revoke answered (at most 500 ms later; at once for a backup or NULL):
 * the loop must run until then. Loop thread.
 */
void shard_repl_etcd_shutdown(shard_repl_etcd *a, void (*then)(void *), void *arg);

/*
 * shard_repl_etcd_stop -- before shard_close: stop following etcd, stop the
 * primary's shipping or the backup's apply. Returns true when the process
 * should execute itself again (it stopped being the primary). Accepts NULL.
 */
bool shard_repl_etcd_stop(shard_repl_etcd *a);

/* shard_repl_etcd_free -- after shard_close. Accepts NULL. */
void shard_repl_etcd_free(shard_repl_etcd *a);

#endif /* OM_SHARD_REPL_ETCD_H */
