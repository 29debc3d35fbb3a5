/*
 * lsm/table_cache.h -- open SSTables by file number (private to lsm/).
 *
 * The table cache maps a file number to an open lsm_sst, opening
 * "<dir>/<number>.sst" (lsm_sst_path) on a miss. It keeps at most
 * max_open_files tables open (second-chance eviction, one unit of charge per table); tables in
 * use are pinned by refcounted handles and closed only when evicted (or
 * dropped with lsm_table_cache_evict) and no handle or iterator uses them.
 * So the DB layer may evict an obsolete file's table and delete the file at
 * once: readers that still hold it keep reading through their open file
 * descriptor, and it is closed when the last of them lets go.
 *
 * Pins: a long-lived owner of a file (lsm_file_meta, for as long as some
 * version lists the file) can keep that table's handle in an lsm_table_pin,
 * taken on first use, so later lookups skip the cache's hash lookup, mutex
 * and refcount. At most max_open_files tables are pinned at once; past that
 * lookups take a handle per call as before. Pinned handles count against the
 * capacity like any handle in use, so eviction closes unpinned tables first
 * and the number of open tables stays max_open_files plus the tables that
 * running lookups and iterators hold beyond it. What changes: a table read
 * once stays open (up to that limit) until no version lists its file,
 * instead of until the cache evicts it.
 *
 * Thread-safety: every function is safe from any thread. Two threads that
 * miss on the same file at once may both open it; one copy wins the cache
 * slot and the other is closed when released.
 */
#ifndef OM_LSM_TABLE_CACHE_H
#define OM_LSM_TABLE_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/env.h"
#include "lsm/lsm_int.h"
#include "lsm/sstable.h"

typedef struct lsm_table_cache lsm_table_cache;
/* A pinned open table. */
typedef struct lsm_table_ref lsm_table_ref;

/*
 * lsm_table_cache_new -- a cache of tables in directory dir.
 * max_open_files < 1 is treated as 1. env, and topts' pointees (block cache,
 * stats, log opts), must outlive the table cache; topts itself and dir are copied.
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_table_cache_new(lsm_env *env, const char *dir, const lsm_table_opts *topts,
                              int max_open_files, lsm_table_cache **out);

/* Close every table and free. Requires: no ref or iterator is alive. Accepts NULL. */
void lsm_table_cache_free(lsm_table_cache *tc);

/*
 * lsm_table_cache_ref -- the open table for file `number` of size `file_size`
 * (opened on a miss).
 * Returns:   OM_OK and a pinned *out; errors of lsm_sst_open (OM_E_NOTFOUND if
 *            the file is missing, OM_E_CORRUPT, OM_E_IO, OM_E_NOMEM).
 * Ownership: release *out with lsm_table_cache_unref.
 */
om_status lsm_table_cache_ref(lsm_table_cache *tc, uint64_t number, uint64_t file_size,
                              lsm_table_ref **out);
void lsm_table_cache_unref(lsm_table_cache *tc, lsm_table_ref *ref);
/* The table of a pinned ref. */
lsm_sst *lsm_table_ref_sst(const lsm_table_ref *ref);

/* lsm_sst_get through the cache (pins the table for the duration of the call). */
om_status lsm_table_cache_get(lsm_table_cache *tc, uint64_t number, uint64_t file_size,
                              om_slice lookup_ikey, bool fill_cache, lsm_sst_get_fn fn, void *arg);

/*
 * lsm_table_cache_may_contain -- the bloom check of lsm_sst_may_contain
 * through the cache. Returns true when the table cannot be opened (the error
 * surfaces on a real read).
 */
bool lsm_table_cache_may_contain(lsm_table_cache *tc, uint64_t number, uint64_t file_size,
                                 om_slice user_key);

/*
 * lsm_table_cache_iter_new -- an iterator over a table that keeps it pinned
 * until lsm_it_free.
 * Returns: OM_OK; errors of lsm_table_cache_ref.
 */
om_status lsm_table_cache_iter_new(lsm_table_cache *tc, uint64_t number, uint64_t file_size,
                                   bool fill_cache, lsm_it **out);

/*
 * A slot holding a pinned handle (or NULL). Zero-initialise it; release it
 * with lsm_table_cache_unpin when its owner goes away (after every reader
 * that used it has finished).
 */
typedef struct lsm_table_pin {
    _Atomic(lsm_table_ref *) ref;
} lsm_table_pin;

/*
 * lsm_table_cache_borrow -- the open table `number`: the pinned handle when
 * pin holds one; else a new handle, which is stored in pin (pin may be NULL)
 * when fewer than max_open_files tables are pinned. *owned tells whether the
 * caller must lsm_table_cache_unref the handle (a pinned handle stays valid
 * until the pin is released, which the owner only does when no reader uses it).
 * Returns: as lsm_table_cache_ref.
 */
om_status lsm_table_cache_borrow(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number,
                                 uint64_t file_size, lsm_table_ref **out, bool *owned);

/* Release a pin's handle, if any (the table closes if it is no longer cached). */
void lsm_table_cache_unpin(lsm_table_cache *tc, lsm_table_pin *pin);

/* Tables pinned at the moment. */
size_t lsm_table_cache_pinned_count(lsm_table_cache *tc);

/* lsm_table_cache_get through a pin (pin may be NULL). */
om_status lsm_table_cache_get_pinned(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number,
                                     uint64_t file_size, om_slice lookup_ikey, bool fill_cache,
                                     lsm_sst_get_fn fn, void *arg);

/* lsm_table_cache_may_contain through a pin (pin may be NULL). */
bool lsm_table_cache_may_contain_pinned(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number,
                                        uint64_t file_size, om_slice user_key);

/* Drop file `number` from the cache (call when the file became obsolete). */
void lsm_table_cache_evict(lsm_table_cache *tc, uint64_t number);

/* Tables currently in the cache. */
size_t lsm_table_cache_open_count(lsm_table_cache *tc);

/*
 * Row cache (lsm_opts.row_cache_size): the entry a point lookup found in a
 * table, keyed by (file number, user key), in a second lsm_cache charged in
 * bytes. Only the newest entry of the key in that table is cached (the
 * lookup that fills it runs at LSM_MAX_SEQ), so a cached row answers a read
 * at sequence s exactly as the table would whenever row->trailer's sequence
 * is <= s; otherwise the reader asks the table. Tables are immutable, so
 * rows are never invalidated: they age out by eviction, and rows of a deleted
 * file are never asked for again (file numbers are not reused).
 */
typedef struct lsm_row {
    uint64_t trailer; /* lsm_trailer_pack(seq, type) of the entry */
    size_t n;         /* value bytes (0 for a tombstone) */
    uint8_t value[];
} lsm_row;

/*
 * lsm_table_cache_enable_rows -- create the row cache (call once, before any
 * read). capacity 0 leaves it off.
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_table_cache_enable_rows(lsm_table_cache *tc, size_t capacity);
/* Whether the row cache is on. */
bool lsm_table_cache_has_rows(const lsm_table_cache *tc);

/*
 * lsm_table_cache_row_lookup -- the cached row of user_key in table `number`
 * (a pinned handle and *row), or NULL. Counts a hit or a miss.
 * Requires: the row cache is on. Release the handle with lsm_table_cache_row_release.
 */
lsm_cache_handle *lsm_table_cache_row_lookup(lsm_table_cache *tc, uint64_t number,
                                             om_slice user_key, const lsm_row **row);
void lsm_table_cache_row_release(lsm_table_cache *tc, lsm_cache_handle *h);
/*
 * lsm_table_cache_row_peek -- lsm_cache_peek of the row of user_key in table
 * `number`: fn(arg, row) under the row cache shard's lock (see lsm_cache_peek).
 * Returns: true on a hit. Requires: the row cache is on.
 */
bool lsm_table_cache_row_peek(lsm_table_cache *tc, uint64_t number, om_slice user_key,
                              lsm_cache_peek_fn fn, void *arg);

/*
 * lsm_table_cache_row_prefetch -- lsm_cache_prefetch_entries of the rows of
 * user_keys[i] in tables numbers[i] (i < n): a hint for a batch of
 * lsm_table_cache_row_peek calls. No effect without the row cache.
 */
void lsm_table_cache_row_prefetch(lsm_table_cache *tc, const uint64_t *numbers,
                                  const om_slice *user_keys, size_t n);

/*
 * lsm_table_cache_row_insert -- cache row (from lsm_row_new) for user_key of
 * table `number`; it must be the table's newest entry of that key.
 * Returns:   a pinned handle, or NULL when out of memory (the row is freed then).
 * Ownership: takes row.
 */
lsm_cache_handle *lsm_table_cache_row_insert(lsm_table_cache *tc, uint64_t number,
                                             om_slice user_key, lsm_row *row);
/* A row holding trailer and a copy of value, or NULL when out of memory. */
lsm_row *lsm_row_new(uint64_t trailer, om_slice value);

/* Row cache counters (0 when off) and bytes in use. */
uint64_t lsm_table_cache_row_hits(const lsm_table_cache *tc);
uint64_t lsm_table_cache_row_misses(const lsm_table_cache *tc);
/*
 * Whether a row that missed should be inserted (lsm_cache_admit on its row
 * key): false means read it from the table without caching it.
 */
bool lsm_table_cache_row_admit(lsm_table_cache *tc, uint64_t number, om_slice user_key);
/* Bytes the row cache holds now (0 when off). */
size_t lsm_table_cache_row_bytes(lsm_table_cache *tc);
size_t lsm_table_cache_row_usage(lsm_table_cache *tc);

#endif /* OM_LSM_TABLE_CACHE_H */
