/*
 * shard/ring_fence.h -- the shard's copy of the ring and its fencing check
 * (private to shard/; wired up by main.c).
 *
 * The coordinator installs its ring with SetRing; the shard keeps the ring
 * with the highest epoch it has been given (an older one is ignored and
 * answered with the epoch held). Every keyed request with a non-zero
 * ring_epoch passes shard_fence_check (the shard_ring_check_fn):
 *
 *   request epoch 0                      -> served (a client talking to the
 *                                           shard directly, unfenced)
 *   no ring held, or a different epoch   -> WRONG_SHARD (the coordinator
 *                                           re-sends its ring)
 *   same epoch, key owned by another id  -> WRONG_SHARD naming the owner
 *   same epoch, List (empty key)         -> served (every shard lists its part)
 *
 * The ring is not persisted by the shard: after a restart it holds none
 * until the coordinator's health check sees epoch 0 in Ping and re-sends it.
 * A SetRing whose ring does not contain this shard's id is refused with
 * INVALID_ARGUMENT, which catches a shard started with the wrong --id.
 *
 * Thread-safety: shard_fence_check and shard_fence_epoch run on any thread
 * concurrently with shard_fence_handle (the ring pointer is swapped under a
 * mutex and each check holds its own reference).
 */
#ifndef OM_SHARD_RING_FENCE_H
#define OM_SHARD_RING_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "util/slice.h"
#include "util/status.h"

typedef struct shard_fence shard_fence;

/* Returns: OM_OK and *out; OM_E_NOMEM. self_id is copied. Free with shard_fence_free. */
om_status shard_fence_new(const char *self_id, shard_fence **out);
void shard_fence_free(shard_fence *f);

/* A shard_ring_check_fn (arg = the fence). */
om_status shard_fence_check(void *arg, uint64_t ring_epoch, om_slice bucket, om_slice key,
                            char *err, size_t errlen);

/* The epoch held (0 = no ring); a shard_ring_epoch_fn (arg = the fence). */
uint64_t shard_fence_epoch(void *arg);

/*
 * shard_fence_handle -- answer SetRing and GetRing; returns false (and
 * leaves reply alone) for every other operation.
 */
bool shard_fence_handle(shard_fence *f, const Objmeta__Request *req, rpc_reply *reply);

#endif /* OM_SHARD_RING_FENCE_H */
