/*
 * lsm/sstable_int.h -- what the SSTable reader (lsm/sstable_reader.c: open,
 * block reads through the cache or the mapping, point lookups) and the
 * SSTable iterator (lsm/sstable_iter.c) share: the open table and the block
 * helpers. Not for other files: they use lsm/sstable.h.
 *
 * Thread-safety: an open lsm_sst is immutable but for its checked-block
 * bitmap (atomic); the helpers may be called from any thread.
 */
#ifndef OM_LSM_SSTABLE_INT_H
#define OM_LSM_SSTABLE_INT_H

#include <stdatomic.h>

#include "lsm/block.h"
#include "lsm/bloom.h"
#include "lsm/sstable.h"

struct lsm_sst {
    lsm_env *env;
    const lsm_table_opts *o;
    char *path;
    uint64_t number;
    lsm_rfile *f;
    const uint8_t *map; /* the whole file mapped (env rfile_map), or NULL: pread */
    uint64_t file_size;
    uint64_t data_end; /* where the meta blocks start */
    uint64_t cache_id;
    atomic_bool cached; /* a block of this table went into the block cache */
    lsm_block index;
    lsm_block filter_block; /* owns the filter bytes, if any */
    om_slice filter;        /* empty: no filter */
    lsm_bloom_probe probe;  /* the filter decoded (when filter.n > 0) */
    lsm_sst_props props;
    /* Mapped tables: bit i set once data block i (index ordinal) passed its checks. */
    _Atomic uint64_t *checked;
    uint32_t nchecked; /* bits in checked (data blocks in the index) */
    /* Index search: every SST_IX_SAMPLE-th separator, whole, one after another. */
    om_buf ixkeys;
    uint32_t *ixoff; /* sample i is ixkeys[ixoff[i], ixoff[i + 1]) */
    uint32_t nixs;   /* samples (0: search the index block only) */
};

/*
 * A data block in use: pinned in the cache (h != NULL, b its value), or
 * read for this use only (b == &local; its bytes owned by local or borrowed
 * from the mapping).
 */
typedef struct sst_blockref {
    lsm_block *b;
    lsm_cache_handle *h;
    lsm_block local;
} sst_blockref;

/* Log and count a corrupt block of t at offset off; returns OM_E_CORRUPT. */
om_status sst_corrupt(lsm_sst *t, uint64_t off, const char *why);

/* Data block number ord at (off, size), from the cache or the file (checked). */
om_status sst_block_get(lsm_sst *t, uint64_t off, uint64_t size, uint32_t ord, bool fill_cache,
                        sst_blockref *out);

/* Unpin or free what sst_block_get gave; r is empty afterwards. */
void sst_blockref_release(lsm_sst *t, sst_blockref *r);

/* A block handle (offset, size) from an index entry, checked against the data area. */
om_status sst_decode_handle(lsm_sst *t, om_slice v, uint64_t *off, uint64_t *size);

/* Position ii (an iterator over t's index block) at the first entry >= ikey. */
void sst_index_seek(const lsm_sst *t, lsm_block_iter *ii, om_slice ikey);

#endif /* OM_LSM_SSTABLE_INT_H */
