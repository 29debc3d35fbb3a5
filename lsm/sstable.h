/*
 * lsm/sstable.h -- sorted string tables: the writer, the reader and the
 * table-level statistics (private to lsm/).
 *
 * An SSTable is an immutable file of internal keys (lsm_int.h) in ascending
 * internal order with their values: prefix-compressed data blocks (zstd per
 * block when it pays), a bloom filter over the user keys, an index block, a
 * properties block and a fixed-size footer. Every block carries a checksum
 * that is verified on every read; a mismatch, a bad block handle or a block
 * that fails to decompress is OM_E_CORRUPT (logged with file and offset) and
 * never wrong data. The byte layout is in lsm/FORMAT.md, section "SSTable";
 * the constants in lsm/sstable_format.h.
 *
 * File names: SSTables are named "<dir>/<number:%06llu>.sst" (lsm_sst_path);
 * the table cache opens them by number with that name.
 *
 * Thread-safety: a writer belongs to one thread. An open table (lsm_sst) is
 * immutable: lsm_sst_get, lsm_sst_may_contain, lsm_sst_iter_new and the
 * accessors are safe from many threads at once; each iterator belongs to one
 * thread. lsm_table_stats counters are atomics updated by any thread.
 */
#ifndef OM_LSM_SSTABLE_H
#define OM_LSM_SSTABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/env.h"
#include "lsm/lsm_int.h"
#include "util/slice.h"
#include "util/status.h"

/* Counters shared by all tables of a database (owned by the db, pointed to by the opts). */
typedef struct lsm_table_stats {
    atomic_uint_fast64_t bloom_checks; /* filter consulted for a point lookup */
    atomic_uint_fast64_t bloom_useful; /* filter said "absent": a block read saved */
    atomic_uint_fast64_t block_reads;  /* blocks read from files (cache misses + no-cache reads) */
    atomic_uint_fast64_t block_read_bytes;
    atomic_uint_fast64_t corrupt_blocks; /* checksum/format failures seen */
    atomic_uint_fast64_t block_checks;   /* data block checksums computed (a mapped block: once) */
} lsm_table_stats;

/* A plain copy of lsm_table_stats. */
typedef struct lsm_table_counters {
    uint64_t bloom_checks, bloom_useful, block_reads, block_read_bytes, corrupt_blocks,
        block_checks;
} lsm_table_counters;

void lsm_table_stats_init(lsm_table_stats *s);
/* Relaxed reads of every counter. */
void lsm_table_stats_get(const lsm_table_stats *s, lsm_table_counters *out);

/* What the table layer needs to know; derive it from lsm_opts with lsm_table_opts_init. */
typedef struct lsm_table_opts {
    size_t block_size;        /* data block target (uncompressed bytes) */
    int restart_interval;     /* keys between restart points in data blocks (>= 1) */
    int bloom_bits_per_key;   /* 0: no filter */
    int zstd_level;           /* 0: no compression */
    lsm_cache *block_cache;   /* may be NULL: every read goes to the file */
    lsm_table_stats *stats;   /* may be NULL */
    const lsm_opts *log_opts; /* where lsm_logf sends messages; may be NULL */
    bool verify_on_open;      /* read and check every data block when opening */
    bool key_index;           /* writers: data blocks with a key index (format version 2) */
} lsm_table_opts;

/*
 * lsm_table_opts_init -- table options from database options.
 * block_cache and stats are borrowed and must outlive every table and writer
 * using these options; o is borrowed too (for logging) and may be NULL.
 */
void lsm_table_opts_init(lsm_table_opts *t, const lsm_opts *o, lsm_cache *block_cache,
                         lsm_table_stats *stats);

/* "<dir>/<number:%06llu>.sst" into buf (truncated to n bytes, always NUL-terminated). */
void lsm_sst_path(char *buf, size_t n, const char *dir, uint64_t number);

/* Properties of a table, written by the writer and read back by the reader. */
typedef struct lsm_sst_props {
    uint64_t entries;   /* internal entries (values + tombstones) */
    uint64_t deletions; /* tombstones */
    uint64_t data_blocks;
    uint64_t raw_key_bytes;   /* sum of internal key lengths */
    uint64_t raw_value_bytes; /* sum of value lengths */
    uint64_t raw_data_bytes;  /* data blocks before compression */
    uint64_t data_bytes;      /* data blocks as stored (with trailers) */
    uint64_t index_bytes;
    uint64_t filter_bytes;
    uint64_t file_size;
    uint64_t smallest_seq, largest_seq;
    om_buf smallest; /* smallest internal key (empty if the table is empty) */
    om_buf largest;  /* largest internal key */
} lsm_sst_props;

/* Release the key buffers of a props struct filled by lsm_sst_writer_finish. */
void lsm_sst_props_fini(lsm_sst_props *p);

/* ---- writer ---- */

/* A writer asks its env to start writing out every this many bytes (env.h wfile_writeback). */
#define LSM_SST_WRITEBACK (1u << 20)

typedef struct lsm_sst_writer lsm_sst_writer;

/*
 * lsm_sst_writer_open -- create (truncate) the file at path for a new table.
 * Returns:   OM_OK; OM_E_IO; OM_E_NOMEM; OM_E_INVALID (bad options).
 * Ownership: *out ends with lsm_sst_writer_finish or lsm_sst_writer_abandon.
 *            env and o (and what it points to) must outlive the writer.
 */
om_status lsm_sst_writer_open(lsm_env *env, const char *path, const lsm_table_opts *o,
                              lsm_sst_writer **out);

/*
 * lsm_sst_writer_add -- append one entry. Keys must be valid internal keys in
 * strictly ascending internal order. Errors are sticky: after the first one
 * every call returns it and finish reports it.
 * Returns: OM_OK; OM_E_INVALID (order violated or not an internal key); OM_E_IO; OM_E_NOMEM.
 */
om_status lsm_sst_writer_add(lsm_sst_writer *w, om_slice ikey, om_slice value);

/* Bytes the file would have if finished now (without filter/index/footer). */
uint64_t lsm_sst_writer_estimated_size(const lsm_sst_writer *w);
/* Entries added so far. */
uint64_t lsm_sst_writer_entries(const lsm_sst_writer *w);

/*
 * lsm_sst_writer_finish -- write the last data block, filter, index,
 * properties and footer, fdatasync and close the file. Frees w in every case;
 * on error the partial file is removed (best effort).
 * Returns:   OM_OK and fills *props if props != NULL; the sticky first error.
 * Ownership: *props holds heap buffers: release with lsm_sst_props_fini.
 */
om_status lsm_sst_writer_finish(lsm_sst_writer *w, lsm_sst_props *props);

/* Close and remove the partial file, free w. Accepts NULL. */
void lsm_sst_writer_abandon(lsm_sst_writer *w);

/* ---- reader ---- */

typedef struct lsm_sst lsm_sst;

/*
 * lsm_sst_open -- open the table at path for reading: reads and verifies the
 * footer, index, filter and properties (and all data blocks if
 * o->verify_on_open). file_size is the size recorded in the MANIFEST; a file
 * whose actual size differs is OM_E_CORRUPT (0: unknown, take the file's size).
 * file_number is for log messages.
 * Returns:   OM_OK; OM_E_NOTFOUND (no such file); OM_E_CORRUPT; OM_E_IO; OM_E_NOMEM.
 * Ownership: close with lsm_sst_close. env and o's pointees must outlive the table.
 */
om_status lsm_sst_open(lsm_env *env, const char *path, uint64_t file_number, uint64_t file_size,
                       const lsm_table_opts *o, lsm_sst **out);

/* Close the table. Requires: no iterator over it is alive. Accepts NULL. */
void lsm_sst_close(lsm_sst *t);

/*
 * Called by lsm_sst_get with the entry found; ikey and value are valid only
 * during the call.
 */
typedef void (*lsm_sst_get_fn)(void *arg, om_slice ikey, om_slice value);

/*
 * lsm_sst_get -- point lookup: consult the bloom filter for the user key of
 * lookup_ikey, then find the first entry >= lookup_ikey in internal order; if
 * its user key equals lookup's, call fn with it (value or tombstone: the
 * caller reads the type from the ikey trailer).
 * Returns: OM_OK (fn was called once); OM_E_NOTFOUND (fn not called);
 *          OM_E_CORRUPT; OM_E_IO; OM_E_NOMEM.
 */
om_status lsm_sst_get(lsm_sst *t, om_slice lookup_ikey, bool fill_cache, lsm_sst_get_fn fn,
                      void *arg);

/*
 * lsm_sst_may_contain -- bloom filter only: false means no entry of user_key
 * is in the table. True without a filter. Counts in the stats.
 */
bool lsm_sst_may_contain(lsm_sst *t, om_slice user_key);

/*
 * The negative path of a lookup across many tables, with the key hashed once
 * by the caller. lsm_sst_has_filter: the table has a bloom filter.
 * lsm_sst_may_contain_hash: false means no entry of the user key whose
 * om_hash64 is h is in the table (true without a filter); not counted in the
 * stats (the caller counts). lsm_sst_get_unfiltered: lsm_sst_get without the
 * filter check (same returns), for a caller that just checked it.
 */
bool lsm_sst_has_filter(const lsm_sst *t);
bool lsm_sst_may_contain_hash(const lsm_sst *t, uint64_t h);
/* A hint: start loading the filter line lsm_sst_may_contain_hash(t, h) reads. */
void lsm_sst_prefetch_filter(const lsm_sst *t, uint64_t h);
om_status lsm_sst_get_unfiltered(lsm_sst *t, om_slice lookup_ikey, bool fill_cache,
                                 lsm_sst_get_fn fn, void *arg);

/*
 * lsm_sst_iter_new -- an iterator over the table's internal keys.
 * Returns:   OM_OK; OM_E_NOMEM.
 * Ownership: free with lsm_it_free before closing the table.
 */
om_status lsm_sst_iter_new(lsm_sst *t, bool fill_cache, lsm_it **out);

/* The table's properties (valid while the table is open). */
const lsm_sst_props *lsm_sst_props_get(const lsm_sst *t);
uint64_t lsm_sst_file_number(const lsm_sst *t);

/*
 * lsm_sst_approximate_offset -- the file offset where ikey's entries would
 * start (the data block holding it), file_size-ish past the last key. For
 * compaction size estimates.
 */
uint64_t lsm_sst_approximate_offset(lsm_sst *t, om_slice ikey);

#endif /* OM_LSM_SSTABLE_H */
