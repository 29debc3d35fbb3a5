/*
 * tests/controlplane/cp_groups.h -- what the replica-group tests
 * (it_groups.c, it_groups_migrate.c) share: a coordinator with the etcd
 * cluster state, its address and its /metrics; etcd keys read and written
 * as an operator (or a shard) would.
 *
 * Thread-safety: the test thread.
 */
#ifndef OM_TESTS_CP_GROUPS_H
#define OM_TESTS_CP_GROUPS_H

#include "tu.h"
#include "tu_etcd.h"

/*
 * An objmeta-coord on etcd e under prefix (lease 2 s, probes every 100 ms,
 * failover-wait 15 s), first ring `shards` (id=host:port,...), with `more`
 * settings after those (NULL-terminated, or NULL).
 */
tu_proc *cp_coord_start(const tu_etcd *e, const char *prefix, const char *shards,
                        const char *const *more);

/* "127.0.0.1:<rpc port>" (a static buffer: the next call overwrites it). */
const char *cp_coord_addr(const tu_proc *c);

/* The value of the metric line starting with `series` (begin it with '\n') on c's /metrics;
 * -1 if there is none. */
double cp_coord_metric(const tu_proc *c, const char *series);

/* Put key = value in etcd e, or delete key when value is NULL; fails the test on an error. */
void cp_etcd_put(const tu_etcd *e, const char *key, const char *value);

/* The value of key in etcd e (malloc'ed, NUL-terminated; the caller frees), NULL if absent. */
char *cp_etcd_get(const tu_etcd *e, const char *key);

#endif /* OM_TESTS_CP_GROUPS_H */
