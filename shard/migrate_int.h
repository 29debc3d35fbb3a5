/*
 * shard/migrate_int.h -- what shard/migrate.c (the rings, the fence check,
 * SetRing / GetRing, the compaction filter) and shard/mig_jobs.c
 * (MigrateScan, ApplyRecords and Compact on the migration worker pool)
 * share: struct shard_mig and the ring view. Other modules use
 * shard/migrate.h.
 *
 * Locking: `mu` guards the three ring pointers; mig_view_get takes
 * references under it, and the holder works without it.
 */
#ifndef OM_SHARD_MIGRATE_INT_H
#define OM_SHARD_MIGRATE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "partitioner/ring.h"
#include "shard/migrate.h"
#include "util/workq.h"

struct shard_mig {
    pthread_mutex_t mu;
    ring *cur, *pending, *prev; /* under mu */
    uint64_t state_rev;  /* under mu: newest cluster-state revision accepted at cur's epoch */
    _Atomic bool fenced; /* written under mu: the cutover fence (shard_mig_move_fence) */
    char *self;
    shard_mig_opts opts;
    shard *s;

    workq *pool; /* scans, applies, compactions (shard_mig_attach .. shard_mig_stop) */

    _Atomic uint64_t filter_dropped;
    _Atomic uint64_t tombstones_dropped;
};

/* References to the rings at one moment (mig_view_put releases them). */
typedef struct mig_view {
    ring *cur, *pending, *prev;
} mig_view;

void mig_view_get(shard_mig *m, mig_view *v);
void mig_view_put(mig_view *v);

/* Does r name shard `self` the owner of hash h? */
bool mig_owns(const ring *r, const char *self, uint64_t h);

/* MigrateScan, ApplyRecords and Compact (shard/mig_jobs.c); false for any other request. */
bool mig_jobs_handle(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply);

#endif /* OM_SHARD_MIGRATE_INT_H */
