/*
 * shard/migrate.h -- the shard's side of online ring changes (private to
 * shard/; wired up by main.c; the protocol is in coordinator/MIGRATION.md).
 *
 * A shard_mig holds the rings the coordinator installed with SetRing and
 * serves the migration operations:
 *
 *   cur      the ring in force (epoch e)
 *   pending  while a change is in progress, the target ring (epoch e + 1)
 *   prev     the ring cur replaced at the last switch (kept for requests
 *            the coordinator routed just before it switched)
 *
 * Fencing (shard_mig_check, a shard_ring_check_fn). A request routed with
 * epoch 0 is unfenced (direct access, served as is). Otherwise, with
 * h = the key hash:
 *
 *   epoch == cur      served iff cur names this shard the owner of h
 *                     (a List is served and filtered by cur)
 *   epoch == pending  served iff pending names this shard the owner of h:
 *                     forwarded writes (forced_version) reach the new owner
 *                     this way while it does not own the key under cur
 *                     (a List is served and filtered by pending)
 *   epoch == prev     a keyed request only, served iff this shard owns h
 *                     under prev AND under cur (the key did not move)
 *   anything else     WRONG_SHARD
 *
 * SetRing installs a higher epoch (cur moves to prev) and sets or clears
 * the pending ring to what the request carries; a ring older than cur is
 * ignored. A SetRing whose cur and pending both lack this shard's id is
 * refused (a shard started with the wrong --id). The answer carries the
 * epochs held. Rings are not persisted: after a restart the shard holds
 * none (every fenced request gets WRONG_SHARD) until the coordinator's
 * health check installs them again.
 *
 * Migration operations (on a small thread pool, never on the loop thread):
 *   MigrateScan    records (tombstones included) whose key hash lies in the
 *                  given ranges, in LSM key order, from a cursor, bounded by
 *                  records, bytes and bytes examined.
 *   ApplyRecords   the new owner stores each record whose version is newer
 *                  than the one it holds; the records of a batch take the
 *                  shard's stripe locks (ascending) so a concurrent client
 *                  write to the same key is never overwritten by an older
 *                  copy. Requires ring_epoch == the pending epoch held.
 *   Compact        lsm_compact_range_rate over everything, paced at
 *                  opts.compact_rate: the compaction filter drops the records
 *                  this shard no longer owns, without starving clients. On a
 *                  replicated primary a purge comes first: the keys owned
 *                  neither under cur nor under pending are deleted by group
 *                  commits that go to every backup, and the answer waits
 *                  until every in-sync replica has them durable.
 *
 * Compaction filter (shard_mig_compaction_filter): with a ring held, a
 * record is dropped iff its key is owned by another shard under cur AND
 * (no pending ring, or another shard under pending too). Tombstones older
 * than tombstone_retention_ms are dropped when no change is pending. With
 * no ring held (just restarted) nothing is dropped, and with opts.replicated
 * no moved key (the purge deletes them on every replica alike).
 *
 * Thread-safety: shard_mig_check, shard_mig_compaction_filter and the
 * handlers run on any thread; the rings are swapped under a mutex and each
 * user holds its own references. shard_mig_new/attach/stop/free: main
 * thread, in that order around the shard's life.
 */
#ifndef OM_SHARD_MIGRATE_H
#define OM_SHARD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "rpc/rpc.h"
#include "shard/shard.h"
#include "util/slice.h"
#include "util/status.h"

typedef struct shard_mig shard_mig;

typedef struct shard_mig_opts {
    /* Tombstones older than this (by their version, µs wall clock) are dropped by compaction
     * when no ring change is pending; 0 keeps them forever. Default 7 days. */
    uint64_t tombstone_retention_ms;
    int threads; /* migration worker threads; default 3 */
    /*
     * Pace of the cleanup compaction (Compact), bytes of entries read per second; 0 = full
     * speed. Default SHARD_MIG_COMPACT_RATE. At full speed it doubled client p99 and more
     * while it ran (coordinator/MIGRATION.md, "Cleanup").
     */
    uint64_t compact_rate;
    /*
     * A replica of a group (shard/REPLICATION.md): the compaction filter keeps
     * the keys moved away -- each replica compacts on its own, so dropping
     * them there would make the replicas differ -- and Compact on the primary
     * first purges them through the replication stream (mig_jobs.c).
     */
    bool replicated;
} shard_mig_opts;

#define SHARD_MIG_COMPACT_RATE (32ull << 20) /* 32 MiB/s */

void shard_mig_opts_init(shard_mig_opts *o);

/*
 * shard_mig_new -- an empty ring view for shard `self_id` (copied).
 * Returns: OM_OK and *out; OM_E_NOMEM. Free with shard_mig_free.
 * Use it as the compaction filter's arg before lsm_open (shard_open).
 */
om_status shard_mig_new(const char *self_id, const shard_mig_opts *o, shard_mig **out);

/* shard_mig_attach -- give it the opened shard and start the workers. Returns OM_OK; OM_E_NOMEM. */
om_status shard_mig_attach(shard_mig *m, shard *s);

/*
 * shard_mig_stop -- answer queued jobs UNAVAILABLE, finish the running scans and applies,
 * abandon a running Compact (lsm_compact_range_stop: answered UNAVAILABLE; the coordinator asks
 * again), join the workers. No Compact runs on the shard's db after it.
 */
void shard_mig_stop(shard_mig *m);

/* Accepts NULL. Call after shard_mig_stop and after the shard is closed. */
void shard_mig_free(shard_mig *m);

/* A shard_ring_check_fn (arg = the shard_mig); see the rules above. */
om_status shard_mig_check(void *arg, uint64_t ring_epoch, om_slice bucket, om_slice key, char *err,
                          size_t errlen);

/*
 * The cutover fence, a shard_ring_check_fn for keyed requests only
 * (shard_set_move_fence): while a SetRing turned it on (coordinator/
 * MIGRATION.md, "Fencing with many coordinators"), a request routed by the
 * current epoch for a key this shard owns now but not under the pending ring
 * is OM_E_WRONG_SHARD. Any thread.
 */
om_status shard_mig_move_fence(void *arg, uint64_t ring_epoch, om_slice bucket, om_slice key,
                               char *err, size_t errlen);

/* An lsm_compaction_filter (arg = the shard_mig). */
lsm_filter_decision shard_mig_compaction_filter(void *arg, int level, om_slice key, om_slice value);

/*
 * shard_mig_handle -- answer SetRing, GetRing, MigrateScan, ApplyRecords and
 * Compact; returns false (reply untouched) for every other operation.
 * Loop thread.
 */
bool shard_mig_handle(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply);

/*
 * shard_mig_install -- what SetRing does once the rings are decoded: install
 * cur if its epoch is above the one held (the held one becomes prev), and set
 * the pending ring (NULL clears it) when cur is the ring held.
 * Returns:   OM_OK; OM_E_INVALID with a message (pending not above cur,
 *            this shard in neither ring, or an epoch more than
 *            SHARD_MIG_MAX_EPOCH_STEP above the held one).
 * Ownership: takes its own references; the caller keeps its own.
 */
#define SHARD_MIG_MAX_EPOCH_STEP 1000u
struct ring;
om_status shard_mig_install(shard_mig *m, const struct ring *cur, const struct ring *pending,
                            char *err, size_t errlen);

/* Epochs held (0 = none). Any thread. */
uint64_t shard_mig_epoch(shard_mig *m);
uint64_t shard_mig_pending_epoch(shard_mig *m);

#endif /* OM_SHARD_MIGRATE_H */
