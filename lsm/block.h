/*
 * lsm/block.h -- the block format shared by data, index and properties
 * blocks: builder and reader (private to lsm/).
 *
 * A block is a sequence of entries sorted by key, each stored as
 *
 *   varint32 shared | varint32 unshared | varint32 value_len |
 *   key bytes after the shared prefix | value bytes
 *
 * where `shared` is the length of the prefix common with the previous key.
 * Every restart_interval entries a restart point stores the full key
 * (shared = 0); the block ends with the fixed32 offsets of the restart points
 * and a fixed32 count, so a seek binary-searches the restart points and then
 * scans at most restart_interval entries. Layout: lsm/FORMAT.md.
 *
 * Key index (data blocks of format version 2, lsm_block_builder_key_index):
 * a point lookup finds its entry without the search. The builder then
 * compresses every key against the block's first key (not the previous
 * one), so any entry's key is the first key's prefix plus its own bytes,
 * and appends after the restart array one fixed16 entry offset and one
 * fingerprint byte per distinct user key, a fixed16 count, and sets the
 * top bit of the restart count word. Readers that do not look at the index
 * decode such a block exactly as before (a key's prefix shared with the
 * first key is shared with the previous key too, keys being sorted).
 * Layout and limits: lsm/FORMAT.md.
 *
 * The reader never trusts its input: every length is bounds-checked and a
 * malformed block makes the iterator invalid with OM_E_CORRUPT (callers also
 * verify the block checksum before parsing, so this is defence in depth and
 * what the fuzzer exercises).
 *
 * Thread-safety: a builder belongs to one thread. A parsed lsm_block is
 * immutable and may be iterated by many threads, each with its own iterator.
 */
#ifndef OM_LSM_BLOCK_H
#define OM_LSM_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm_int.h"
#include "util/slice.h"
#include "util/status.h"

/* Key comparison used inside a block: internal-key order or plain bytewise. */
typedef enum lsm_block_cmp {
    LSM_CMP_IKEY = 0, /* lsm_ikey_cmp: data and index blocks */
    LSM_CMP_BYTES,    /* om_slice_cmp: the properties block */
} lsm_block_cmp;

/* ---- builder ---- */

typedef struct lsm_block_builder {
    om_buf buf;         /* entries so far */
    uint32_t *restarts; /* restart offsets */
    size_t nrestarts, restarts_cap;
    int restart_interval;
    int counter; /* entries since the last restart */
    om_buf last_key;
    uint64_t entries;
    bool finished;
    /* Key index (lsm_block_builder_key_index): first key, per user key offset and fingerprint. */
    bool key_index;
    om_buf first_key;
    uint16_t *koffs;
    uint8_t *kfps;
    size_t nkeys, keys_cap;
    bool keys_overflow; /* too many keys or bytes for the index: the block goes without */
} lsm_block_builder;

/* A key index holds at most this many user keys, at entry offsets below 65536. */
#define LSM_BLOCK_INDEX_MAX_KEYS 4096u
/* The top bit of the restart count word: a key index follows the restart array. */
#define LSM_BLOCK_INDEX_FLAG 0x80000000u

/* The fingerprint byte of a user key's om_hash64 in a block's key index. */
static inline uint8_t
lsm_block_key_fp(uint64_t h)
{
    return (uint8_t)((h * UINT64_C(0x9E3779B97F4A7C15)) >> 56);
}

/* Set up an empty builder (restart_interval < 1 is taken as 1). */
void lsm_block_builder_init(lsm_block_builder *b, int restart_interval);
/*
 * Build blocks with a key index from now on (data blocks of internal keys:
 * every key added must be an internal key). Call on an empty builder.
 */
void lsm_block_builder_key_index(lsm_block_builder *b);
void lsm_block_builder_fini(lsm_block_builder *b);
/* Forget the contents, keep the memory. */
void lsm_block_builder_reset(lsm_block_builder *b);

/*
 * Append an entry. Requires: key > every key added since the last reset (the
 * caller checks the order). Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_block_builder_add(lsm_block_builder *b, om_slice key, om_slice value);

/* Bytes the block would have if finished now. */
size_t lsm_block_builder_size(const lsm_block_builder *b);
static inline bool
lsm_block_builder_empty(const lsm_block_builder *b)
{
    return b->entries == 0;
}

/*
 * Append the restart array and return the finished block (valid until the
 * next reset or fini). Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_block_builder_finish(lsm_block_builder *b, om_slice *out);

/* ---- reader ---- */

/* A parsed block: its bytes and where its restart array starts. */
typedef struct lsm_block {
    const uint8_t *data;
    size_t size;          /* total bytes including restarts */
    uint32_t restart_off; /* offset of the restart array == end of entries */
    uint32_t nrestarts;
    uint32_t nkeys;    /* user keys in the key index (0: none) */
    uint32_t keys_off; /* offset of the index's fixed16 entry offsets (fingerprints follow) */
    uint8_t *owned;    /* heap bytes freed by lsm_block_free, or NULL if borrowed */
} lsm_block;

/*
 * lsm_block_parse -- check the restart trailer of `data` and fill *b.
 * take_ownership: the block frees data (a heap pointer) in lsm_block_free;
 * only on OM_OK (on failure the caller still owns it).
 * Returns: OM_OK; OM_E_CORRUPT (too short, bad restart count).
 */
om_status lsm_block_parse(lsm_block *b, uint8_t *data, size_t n, bool take_ownership);
/*
 * lsm_block_parse_again -- fill *b from bytes that passed lsm_block_parse
 * before (the same immutable bytes: a mapped table's block verified once).
 * Reads only the restart count; the restart array is not walked again (a
 * seek still bounds-checks every restart offset it uses).
 * Returns: OM_OK; OM_E_CORRUPT (restart count out of range).
 */
om_status lsm_block_parse_again(lsm_block *b, const uint8_t *data, size_t n);
/* Release owned bytes. */
void lsm_block_free(lsm_block *b);

/* Keys up to this many bytes are rebuilt inside the iterator itself (no allocation). */
#define LSM_BLOCK_ITER_INLINE_KEY 112

/*
 * An iterator positioned within one block; embeddable (no allocation for keys
 * of up to LSM_BLOCK_ITER_INLINE_KEY bytes). A key stored whole in the block
 * (shared prefix 0: every restart entry) is returned in place; other keys are
 * rebuilt from the previous key's prefix and the entry's delta into the
 * iterator's key buffer. The fields are private to block.c.
 */
typedef struct lsm_block_iter {
    lsm_it base;
    const lsm_block *block;
    lsm_block_cmp cmp;
    uint32_t cur;          /* offset of the current entry; == restart_off when past the end */
    uint32_t next_off;     /* offset of the entry after the current one */
    uint32_t ordinal;      /* restart index of the last seek's start + entries stepped since */
    const uint8_t *kblock; /* the current key inside the block, or NULL: it is in the buffer */
    uint32_t kn;           /* current key length */
    uint32_t kcap;         /* bytes of kheap (0: the inline buffer is used) */
    uint8_t *kheap;        /* key buffer for keys longer than the inline one, or NULL */
    om_slice value;
    om_status status;
    bool valid;
    uint8_t kinline[LSM_BLOCK_ITER_INLINE_KEY];
} lsm_block_iter;

/*
 * Initialise an iterator over b (not positioned: call a seek first).
 * Requires: *it is zeroed or was initialised before (its key buffer is reused).
 * A positioned iterator must not be copied (its key may live in the struct).
 */
void lsm_block_iter_init(lsm_block_iter *it, const lsm_block *b, lsm_block_cmp cmp);
/* Free the iterator's heap key buffer, if any (embedded form; heap ones: lsm_it_free). */
void lsm_block_iter_fini(lsm_block_iter *it);

/*
 * lsm_block_iter_seek_between -- lsm_it_seek(target) in a block with a
 * restart point at every entry (index blocks), when the caller knows that
 * the keys of entries before lo are < target and those from hi on >=
 * target: a binary search over [lo, hi) only (lo == hi: positions at entry
 * lo, or past the end, without reading target). Requires lo <= hi <= the
 * block's restart count.
 */
void lsm_block_iter_seek_between(lsm_block_iter *it, om_slice target, uint32_t lo, uint32_t hi);

/*
 * lsm_block_iter_seek_point -- a point lookup's seek. Positions the iterator
 * as lsm_it_seek(target) would (the first entry >= target), through the
 * block's key index when it has one, and returns true; returns false
 * (iterator not valid, status OM_OK) when the key index says no entry of
 * target's user key is in the block -- where a seek would have stopped at a
 * larger user key or run off the block's end. Blocks without an index, and
 * iterators that are not LSM_CMP_IKEY, always seek.
 */
bool lsm_block_iter_seek_point(lsm_block_iter *it, om_slice target);

/*
 * The ordinal of the current entry in a block with a restart point at every
 * entry (index blocks: the number of the data block it names). Requires: the
 * iterator is valid. Meaningless for blocks with longer restart intervals.
 */
static inline uint32_t
lsm_block_iter_ordinal(const lsm_block_iter *it)
{
    return it->ordinal;
}

/*
 * lsm_block_iter_new -- a heap iterator over b (lsm_it_free releases it).
 * The block must outlive the iterator. Returns: OM_OK; OM_E_NOMEM.
 */
om_status lsm_block_iter_new(const lsm_block *b, lsm_block_cmp cmp, lsm_it **out);

#endif /* OM_LSM_BLOCK_H */
