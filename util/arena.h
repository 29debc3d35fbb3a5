/*
 * util/arena.h -- a bump allocator whose memory is freed all at once, and a
 * pool that recycles its blocks.
 *
 * Used by memtables: entries are allocated as they are added and released
 * together when the last reference to the memtable goes. Allocations are
 * aligned to 8 bytes; large requests (over a quarter of the block size) get a
 * block of their own so that little space is wasted.
 *
 * Block pool. Fresh memory from the system costs a page fault on the first
 * touch of every page (microseconds each on some VMs), and a memtable's
 * blocks would otherwise go back to the system when it dies, only for the
 * next memtable to fault them in again. An om_arena_pool keeps the
 * standard-size blocks of freed arenas (up to a byte cap) and hands them to
 * the next arenas before asking malloc. Blocks of their own (large requests)
 * are never pooled. om_arena_pool_fill can fault blocks in ahead of time on a
 * thread that is not latency-critical.
 *
 * Thread-safety: om_arena_alloc() is for one writer at a time.
 * om_arena_usage() may be read concurrently from other threads. A pool is
 * safe to use from any number of threads (arenas of different threads take
 * from it and give back to it concurrently; a mutex guards it).
 */
#ifndef OM_UTIL_ARENA_H
#define OM_UTIL_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct om_arena om_arena;
typedef struct om_arena_pool om_arena_pool;

/* Returns: OM_OK; OM_E_NOMEM. block_size 0 means the default (64 KiB). */
om_status om_arena_new(size_t block_size, om_arena **out);
/*
 * om_arena_new_pooled -- an arena whose blocks (of the pool's block size)
 * come from pool when it has some and go back to it at om_arena_free.
 * Returns: OM_OK; OM_E_NOMEM.
 * Ownership: the arena holds a reference to pool until om_arena_free.
 */
om_status om_arena_new_pooled(om_arena_pool *pool, om_arena **out);
/* Free the arena; pooled arenas give their standard blocks back (accepts NULL). */
void om_arena_free(om_arena *a);

/* 8-byte aligned memory valid until om_arena_free(); NULL if out of memory. */
void *om_arena_alloc(om_arena *a, size_t n);

/* Bytes allocated from the system (or taken from a pool) so far (blocks plus bookkeeping). */
size_t om_arena_usage(const om_arena *a);

/*
 * om_arena_pool_new -- a pool of free blocks of block_size bytes (0: the
 * default) that holds at most max_bytes of them (block bytes; 0 = keep
 * none, every block is freed at once).
 * Returns: OM_OK; OM_E_NOMEM. Ownership: reference count 1; drop it with
 * om_arena_pool_unref (the pool and its free blocks go with the last
 * reference, the creator's or an arena's).
 */
om_status om_arena_pool_new(size_t block_size, size_t max_bytes, om_arena_pool **out);
void om_arena_pool_unref(om_arena_pool *p); /* accepts NULL */
size_t om_arena_pool_block_size(const om_arena_pool *p);

/*
 * om_arena_pool_fill -- allocate blocks and touch every page of them (so the
 * page faults happen now, on the calling thread) until the pool holds at
 * least target_bytes of free blocks, or its cap. Returns the number of
 * blocks added (0 if out of memory or already there).
 */
size_t om_arena_pool_fill(om_arena_pool *p, size_t target_bytes);

/*
 * A reserve of pre-faulted blocks. om_arena_pool_filler runs on a thread of
 * the caller's (until om_arena_pool_filler_stop): it fills the pool to
 * reserve_bytes at once, then again every time arenas have taken it below
 * half of that, so that arenas find faulted-in blocks instead of fresh
 * memory. Without a reserve (0, the default) it only waits for the stop.
 * om_arena_pool_filler_stop makes a running or later filler return soon (a
 * fill in progress stops after its current block); it is final.
 */
void om_arena_pool_set_reserve(om_arena_pool *p, size_t reserve_bytes);
/*
 * om_arena_pool_trim -- free the pool's free blocks beyond its reserve (all
 * of them without one): for an owner that is idle, so that the memory of
 * dead arenas goes back to the system instead of waiting for arenas that may
 * not come. Returns the number of blocks freed.
 */
size_t om_arena_pool_trim(om_arena_pool *p);
void om_arena_pool_filler(om_arena_pool *p);
void om_arena_pool_filler_stop(om_arena_pool *p);

typedef struct om_arena_pool_stats {
    uint64_t reused;    /* blocks handed out from the pool */
    uint64_t allocated; /* standard blocks that arenas had to malloc (pool empty) */
    uint64_t returned;  /* blocks taken back from freed arenas */
    uint64_t dropped;   /* blocks freed because the pool was at its cap */
    uint64_t filled;    /* blocks added by om_arena_pool_fill and the filler */
    uint64_t trimmed;   /* blocks freed by om_arena_pool_trim */
    size_t free_blocks; /* blocks in the pool now */
    size_t free_bytes;  /* their bytes (block_size each) */
} om_arena_pool_stats;

void om_arena_pool_stats_get(om_arena_pool *p, om_arena_pool_stats *out);

#endif /* OM_UTIL_ARENA_H */
