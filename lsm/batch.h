/*
 * lsm/batch.h -- the write batch's encoding (private to lsm/).
 *
 * A batch is kept in its WAL form from the start, so the write path appends
 * it to the log without re-encoding (layout: FORMAT.md, "Write batch"):
 *
 *     fixed64 sequence | fixed32 count | count × op
 *     op = u8 type (0 delete, 1 put) | varint32 key_len | key
 *          [| varint32 value_len | value]   (puts only)
 *
 * The sequence is that of the first op; op i gets sequence + i.
 *
 * Thread-safety: a batch belongs to one thread at a time.
 */
#ifndef OM_LSM_BATCH_H
#define OM_LSM_BATCH_H

#include <stdint.h>

#include "lsm/lsm_int.h"
#include "lsm/memtable.h"
#include "util/slice.h"
#include "util/status.h"

#define LSM_BATCH_HEADER 12

struct lsm_batch {
    om_buf rep;     /* always holds at least the header */
    uint64_t bytes; /* key + value bytes, for statistics */
};

static inline om_slice
lsm_batch_rep(const lsm_batch *b)
{
    return om_buf_slice(&b->rep);
}

void lsm_batch_set_seq(lsm_batch *b, uint64_t seq);

/* Called for each op of an encoded batch, in order. */
typedef om_status (*lsm_batch_fn)(void *arg, uint64_t seq, lsm_vtype type, om_slice key,
                                  om_slice value);

/*
 * lsm_batch_iterate -- decode rep (validating it completely) and call fn per op.
 * Returns: OM_OK; OM_E_CORRUPT if rep is malformed (fn may have been called
 * for the ops before the fault); the first error fn returns.
 */
om_status lsm_batch_iterate(om_slice rep, lsm_batch_fn fn, void *arg);

/* Check rep fully without side effects; sets *seq and *count. Returns OM_OK or OM_E_CORRUPT. */
om_status lsm_batch_validate(om_slice rep, uint64_t *seq, uint32_t *count);

/* Insert every op of rep into m. Requires: the only memtable writer. */
om_status lsm_batch_apply(om_slice rep, lsm_memtable *m);
/*
 * lsm_batch_apply_sorted -- insert every op of the n batches reps[] into m,
 * in internal-key order (user key ascending, sequence descending) rather
 * than in batch order, so that the skiplist's finger search (skiplist.h)
 * shares the upper part of the descent between neighbouring keys. The
 * sequences stay those of the batches; the result is the same as applying
 * the batches one after another (a key's newest version ends first in the
 * hash index). *scratch (NULL at first, *cap 0) is a buffer kept between
 * calls by the caller and freed with free(). Falls back to batch order when
 * the scratch cannot grow.
 * Returns: as lsm_batch_apply. Requires: the only memtable writer; reps
 * validated (written by this process or checked by lsm_batch_validate).
 */
om_status lsm_batch_apply_sorted(const om_slice *reps, int n, lsm_memtable *m, void **scratch,
                                 size_t *cap);
/* lsm_batch_prefetch -- lsm_mem_prefetch every key of rep (rep as validated). */
void lsm_batch_prefetch(om_slice rep, lsm_memtable *m);

#endif /* OM_LSM_BATCH_H */
