/*
 * util/arena.h -- a bump allocator whose memory is freed all at once.
 *
 * Used by memtables: entries are allocated as they are added and released
 * together when the last reference to the memtable goes. Allocations are
 * aligned to 8 bytes; large requests (over a quarter of the block size) get a
 * block of their own so that little space is wasted.
 *
 * Thread-safety: om_arena_alloc() is for one writer at a time.
 * om_arena_usage() may be read concurrently from other threads.
 */
#ifndef OM_UTIL_ARENA_H
#define OM_UTIL_ARENA_H

#include <stddef.h>

#include "util/status.h"

typedef struct om_arena om_arena;

/* Returns: OM_OK; OM_E_NOMEM. block_size 0 means the default (64 KiB). */
om_status om_arena_new(size_t block_size, om_arena **out);
void om_arena_free(om_arena *a);

/* 8-byte aligned memory valid until om_arena_free(); NULL if out of memory. */
void *om_arena_alloc(om_arena *a, size_t n);

/* Bytes allocated from the system so far (blocks plus bookkeeping). */
size_t om_arena_usage(const om_arena *a);

#endif /* OM_UTIL_ARENA_H */
