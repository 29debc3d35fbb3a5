/*
 * lsm/cache.h -- a sharded second-chance (CLOCK) cache of refcounted entries
 * (private to lsm/).
 *
 * Three caches in the engine use it: the block cache (key = table cache id
 * and block offset, value = an uncompressed block, charge = its bytes), the
 * table cache (key = file number, value = an open table, charge = 1) and the
 * row cache (key = file number and user key, value = the row found).
 *
 * The key space is split over 2^shard_bits shards by hash, each with its own
 * mutex, hash table and eviction list, so concurrent readers rarely contend.
 * Each shard holds capacity / shards of charge. An entry lives while it is in
 * the cache or a handle pins it: lookup/insert return a pinned handle,
 * release unpins it, and the deleter runs when an entry is both out of the
 * cache (evicted, erased, pruned or replaced) and unpinned. Pinned entries are
 * never evicted; they count against the capacity, so usage may exceed
 * capacity while many entries are pinned (the next insert into the shard
 * trims it back once they are released).
 *
 * Eviction rule: second chance, an approximation of LRU. A hit (lookup or
 * peek) only marks the entry referenced. When a shard is over capacity it
 * sweeps its entries from the oldest (in insertion order): a referenced one
 * loses its mark and moves to the young end (a second chance), an
 * unreferenced unpinned one is evicted. A new entry starts unreferenced, so
 * entries inserted once and never read again (a scan) go before older
 * entries that were hit since the sweep last passed them; those go only when
 * the sweep comes round again and finds them not hit meanwhile.
 *
 * Thread-safety: every function is safe from any thread. The deleter runs on
 * whichever thread drops the last reference, without any cache lock held.
 */
#ifndef OM_LSM_CACHE_H
#define OM_LSM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

typedef struct lsm_cache lsm_cache;
typedef struct lsm_cache_handle lsm_cache_handle;

/* Called once per entry when it leaves the cache and is unpinned. */
typedef void (*lsm_cache_deleter)(om_slice key, void *value);

/*
 * lsm_cache_new -- a cache holding up to `capacity` units of charge.
 * shard_bits: log2 of the shard count (0..8); pass -1 for the default (4, or
 * fewer for small capacities so every shard can hold something).
 * Returns: OM_OK; OM_E_NOMEM; OM_E_INVALID for shard_bits out of range.
 */
om_status lsm_cache_new(size_t capacity, int shard_bits, lsm_cache **out);

/* Free the cache. Requires: no handle is pinned. Runs the deleters. Accepts NULL. */
void lsm_cache_free(lsm_cache *c);

/*
 * lsm_cache_insert -- insert (key copied) and return a pinned handle; an
 * existing entry with the same key is replaced (its deleter runs once unpinned).
 * Returns:   OM_OK and *out; OM_E_NOMEM (then the value is NOT taken: the
 *            caller still owns it and the deleter is not called).
 * Ownership: the cache takes value on OM_OK; release *out with lsm_cache_release.
 */
om_status lsm_cache_insert(lsm_cache *c, om_slice key, void *value, size_t charge,
                           lsm_cache_deleter deleter, lsm_cache_handle **out);

/* A pinned handle for key, or NULL (a miss). Counts a hit or a miss. */
lsm_cache_handle *lsm_cache_lookup(lsm_cache *c, om_slice key);

/*
 * lsm_cache_peek -- on a hit, call fn(arg, value) under the shard's lock and
 * mark the entry referenced, without pinning it (one lock round trip
 * instead of the two of lookup + release). Counts a hit or a miss.
 * Returns: true on a hit (fn was called), false on a miss.
 * Requires: fn is short and does not call into this cache; value is valid only during fn.
 */
typedef void (*lsm_cache_peek_fn)(void *arg, const void *value);
bool lsm_cache_peek(lsm_cache *c, om_slice key, lsm_cache_peek_fn fn, void *arg);

/*
 * lsm_cache_prefetch -- a hint for callers that batch lookups: start loading
 * the hash table line that a lookup/peek of key will read first, so that
 * several keys' misses overlap. Takes no lock, changes nothing, counts
 * nothing; always safe (also on an empty cache, or racing an insert that
 * grows the table: then it may prefetch a stale address, which is harmless).
 */
void lsm_cache_prefetch(const lsm_cache *c, om_slice key);

/*
 * lsm_cache_prefetch_entries -- a deeper hint for up to LSM_CACHE_PREFETCH_MAX
 * keys about to be looked up: loads, in three rounds that each overlap the
 * keys' misses, their slot lines, then the entries whose slot hash matches,
 * then the first CACHE_PREFETCH_VALUE (cache.c) bytes of the values of the
 * entries that hold the keys (the value pointer is taken as the start of
 * the value's bytes). Changes nothing and counts nothing; takes each key's
 * shard lock twice (briefly), so it costs more than lsm_cache_prefetch:
 * for batches of lookups that mostly hit.
 */
#define LSM_CACHE_PREFETCH_MAX 64
void lsm_cache_prefetch_entries(lsm_cache *c, const om_slice *keys, size_t n);

/* Unpin. Accepts NULL. */
void lsm_cache_release(lsm_cache *c, lsm_cache_handle *h);

/* The value of a pinned handle (valid until the handle is released). */
void *lsm_cache_value(const lsm_cache_handle *h);

/* Drop key from the cache (its entry lives on while pinned). */
void lsm_cache_erase(lsm_cache *c, om_slice key);

/* Drop every entry that no handle pins from the cache (pinned entries stay in it). */
void lsm_cache_prune(lsm_cache *c);

/*
 * lsm_cache_erase_prefix -- drop every entry whose key starts with prefix,
 * as lsm_cache_erase does (pinned ones live on until released). Walks every
 * entry of the cache, shard by shard: for rare events, like a table whose
 * blocks or rows can never be read again.
 */
void lsm_cache_erase_prefix(lsm_cache *c, om_slice prefix);

/*
 * lsm_cache_enable_admission -- turn on admission by second touch (cache.c,
 * "Admission"): once a shard is nearly full, lsm_cache_admit answers true
 * for a key only if it was refused recently. mean_charge sizes the memory of
 * refused keys (twice the entries capacity / mean_charge, 8 bytes each).
 * Returns: OM_OK; OM_E_NOMEM; OM_E_INVALID if already on.
 * Requires: before the cache is shared between threads.
 */
om_status lsm_cache_enable_admission(lsm_cache *c, size_t mean_charge);

/*
 * lsm_cache_admit -- whether a missed key should be inserted now (always
 * true without admission). Callers that get false use the value without
 * caching it. Lock-free; counts admissions and refusals.
 */
bool lsm_cache_admit(lsm_cache *c, om_slice key);
/* Keys refused by admission since creation. */
uint64_t lsm_cache_admission_rejected(const lsm_cache *c);

/* A number unique in this cache's life, to build keys of a namespace (one per table). */
uint64_t lsm_cache_new_id(lsm_cache *c);

/* Sum of the charges of the entries in the cache (pinned or not). */
size_t lsm_cache_usage(lsm_cache *c);
size_t lsm_cache_capacity(const lsm_cache *c);
/* Entries currently in the cache. */
size_t lsm_cache_count(lsm_cache *c);

/* Lookup counters since creation (summed over the shards without locking: a snapshot). */
uint64_t lsm_cache_hits(const lsm_cache *c);
uint64_t lsm_cache_misses(const lsm_cache *c);

#endif /* OM_LSM_CACHE_H */
