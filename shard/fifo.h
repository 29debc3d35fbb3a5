/*
 * shard/fifo.h -- chunked memory for objects released roughly in the order
 * they were allocated (private to shard/).
 */
#ifndef OM_SHARD_FIFO_H
#define OM_SHARD_FIFO_H

#include <stddef.h>

/*
 * shard_fifo -- recycled memory for objects that die roughly in the order
 * they were made: the loop thread's Store/Delete jobs (released after the
 * write group that runs them) and held replies (released after the sync
 * that covers them), both owned by the commit pipeline (commit.c). Allocations are carved from 64
 * KiB chunks, oldest chunk first; a chunk whose allocations are all released is reused in place
 * (the newest) or kept as a spare (up to SHARD_FIFO_SPARES of them: fresh pages cost page faults);
 * an allocation larger than a chunk gets a chunk of its own, freed when it is released. Releases
 * may come in any order; a chunk lives until its last allocation is released. Ownership: memory
 * from shard_fifo_alloc is valid until shard_fifo_release (or shard_fifo_fini, which frees
 * everything, released or not). Thread-safety: one thread (the loop thread of the shard).
 */
#define SHARD_FIFO_CHUNK (64u * 1024u)
#define SHARD_FIFO_SPARES 8
typedef struct shard_fifo_chunk shard_fifo_chunk;
typedef struct shard_fifo {
    shard_fifo_chunk *head, *tail; /* chunks with live allocations (and the newest), oldest first */
    shard_fifo_chunk *spare;       /* empty standard chunks */
    unsigned n_spare;
} shard_fifo;
/* 16-byte aligned memory for n bytes; NULL if out of memory. */
void *shard_fifo_alloc(shard_fifo *f, size_t n);
/* Give back an allocation of f (p from shard_fifo_alloc). */
void shard_fifo_release(shard_fifo *f, void *p);
/* Free every chunk (f is empty and reusable afterwards). */
void shard_fifo_fini(shard_fifo *f);

#endif /* OM_SHARD_FIFO_H */
