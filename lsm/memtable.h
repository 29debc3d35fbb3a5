/*
 * lsm/memtable.h -- the in-memory write buffer (private to lsm/).
 *
 * A memtable holds internal-key entries (user key, sequence, type, value) in
 * a skiplist whose nodes and entries live in one arena, so memory usage is
 * the arena's and everything is freed at once. The write path owns the
 * active memtable; when it is full it becomes immutable and a background
 * thread writes it to an L0 table. Readers (gets, iterators, the flush)
 * hold references, so a memtable lives until its last reader is done.
 *
 * Entry layout: one skiplist node per entry in the key arena holding the
 * internal key (user key | trailer), its value in the value arena (see
 * skiplist.h); point lookups go through a hash index (see memtable.c).
 *
 * Memory recycling: memtables made with lsm_mem_new_pooled take their arena
 * blocks from a db-wide lsm_mem_pool and give them back when they die, and
 * reuse a dead memtable's hash-index buckets (zeroed by the thread that
 * drops the last reference), so that a steady write load does not page-fault
 * fresh memory in for every memtable (see util/arena.h).
 *
 * Thread-safety: lsm_mem_add for one writer at a time; everything else
 * (get, iterators, usage, ref/unref) from any thread concurrently with it.
 * A pool is safe from any thread.
 */
#ifndef OM_LSM_MEMTABLE_H
#define OM_LSM_MEMTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm_int.h"
#include "util/arena.h"
#include "util/slice.h"
#include "util/status.h"

typedef struct lsm_memtable lsm_memtable;
typedef struct lsm_mem_pool lsm_mem_pool;

/*
 * lsm_mem_pool_new -- a pool for the memtables of one write_buffer_size that
 * keeps at most max_bytes of free arena blocks (plus one spare bucket array).
 * Returns: OM_OK; OM_E_NOMEM. Ownership: reference count 1; every pooled
 * memtable holds a reference, so the pool outlives them; the memory goes
 * with the last lsm_mem_pool_unref (accepts NULL).
 */
om_status lsm_mem_pool_new(size_t write_buffer_size, size_t max_bytes, lsm_mem_pool **out);
void lsm_mem_pool_unref(lsm_mem_pool *p);
/*
 * lsm_mem_pool_fill -- fault free blocks in ahead of use until the pool holds
 * target_bytes of them (or its cap); call it from a thread that may be slow.
 * Returns the blocks added.
 */
size_t lsm_mem_pool_fill(lsm_mem_pool *p, size_t target_bytes);
/*
 * lsm_mem_pool_set_reserve / lsm_mem_pool_filler / lsm_mem_pool_filler_stop --
 * keep reserve_bytes of pre-faulted blocks in the pool from a thread of the
 * caller's (om_arena_pool_set_reserve and om_arena_pool_filler, arena.h);
 * the filler first parks a faulted-in spare bucket array when there is none.
 * A pooled memtable that finds no spare faults its new array in at once.
 */
void lsm_mem_pool_set_reserve(lsm_mem_pool *p, size_t reserve_bytes);
void lsm_mem_pool_filler(lsm_mem_pool *p);
void lsm_mem_pool_filler_stop(lsm_mem_pool *p);
/* Free the pool's blocks beyond its reserve (om_arena_pool_trim); returns the number freed. */
size_t lsm_mem_pool_trim(lsm_mem_pool *p);
/* Block counters of the pool (see om_arena_pool_stats). */
void lsm_mem_pool_stats(lsm_mem_pool *p, om_arena_pool_stats *out);

/*
 * lsm_mem_new -- an empty memtable with a reference count of 1.
 * log_number is the WAL file whose records it holds (0 if none);
 * write_buffer_size sizes the arena blocks (about 1/16 of it, 4..256 KiB).
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_mem_new(uint64_t log_number, size_t write_buffer_size, lsm_memtable **out);
/* lsm_mem_new with the pool's write_buffer_size and memory from the pool. Returns as above. */
om_status lsm_mem_new_pooled(uint64_t log_number, lsm_mem_pool *pool, lsm_memtable **out);
void lsm_mem_ref(lsm_memtable *m);
/* Drop a reference; the last one frees the memtable (accepts NULL). */
void lsm_mem_unref(lsm_memtable *m);

/*
 * lsm_mem_add -- insert (key, seq, type, value). Each (key, seq) pair is unique.
 * Returns: OM_OK; OM_E_NOMEM (nothing inserted).
 * Requires: the caller is the only writer.
 */
om_status lsm_mem_add(lsm_memtable *m, uint64_t seq, lsm_vtype type, om_slice key, om_slice value);

/*
 * lsm_mem_prefetch -- start loading the hash-index bucket of key into the
 * CPU cache, so that a later lsm_mem_add of key does not stall on it (the
 * writer calls it for a group's keys before its WAL write). Any thread.
 */
void lsm_mem_prefetch(const lsm_memtable *m, om_slice key);

/*
 * lsm_mem_prefetch_gets -- start loading what lsm_mem_find of each of keys[0..n)
 * reads first: the hash-index bucket, then (once the bucket is there) the
 * first node of its chain. Only a hint: no effect on results. Any thread.
 */
void lsm_mem_prefetch_gets(const lsm_memtable *m, const om_slice *keys, size_t n);
/*
 * The second stage, for keys given to lsm_mem_prefetch_gets a while before
 * (their buckets and nodes are in the cache by now): starts loading the
 * first line of each key's newest value.
 */
void lsm_mem_prefetch_values(const lsm_memtable *m, const om_slice *keys, size_t n);
/*
 * lsm_mem_warm -- for the writer, before it adds keys[0..n) (user keys, best
 * in ascending order): load their skiplist search paths with the misses
 * overlapped (lsm_skl_warm). Only a hint: no effect on results.
 */
void lsm_mem_warm(const lsm_memtable *m, const om_slice *keys, size_t n);
/*
 * lsm_mem_prefetch_find -- for a batch about to be read at once: three rounds
 * over the keys whose found[i] is false -- buckets, chain heads, then (once
 * the heads are there) the value when the head is the key's newest version,
 * else the chain's next node -- setting found[i] for the keys it found here
 * (a hint too: a key it misses may still be in the memtable). Any thread.
 */
void lsm_mem_prefetch_find(const lsm_memtable *m, const om_slice *keys, size_t n, bool *found);

/*
 * lsm_mem_find -- the newest entry of key with sequence <= seq.
 * Returns: true if the memtable decides the answer: then *st is OM_OK (*value
 * points at the value inside m, valid while m is referenced) or OM_E_NOTFOUND
 * (a tombstone); false if the key has no visible entry here (look further down).
 */
bool lsm_mem_find(lsm_memtable *m, om_slice key, uint64_t seq, om_slice *value, om_status *st);

/* True if any entry (any sequence, value or tombstone) of key is present. */
bool lsm_mem_has_key(lsm_memtable *m, om_slice key);

/* Bytes of memory the memtable holds. */
size_t lsm_mem_usage(const lsm_memtable *m);
uint64_t lsm_mem_entries(const lsm_memtable *m);
uint64_t lsm_mem_log_number(const lsm_memtable *m);

/*
 * lsm_mem_iter -- an internal iterator over all entries in internal-key order.
 * Returns: OM_OK; OM_E_NOMEM. Ownership: the iterator holds a reference to m;
 * free it with lsm_it_free.
 */
om_status lsm_mem_iter(lsm_memtable *m, lsm_it **out);

#endif /* OM_LSM_MEMTABLE_H */
