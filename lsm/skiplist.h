/*
 * lsm/skiplist.h -- the ordered index of a memtable (private to lsm/).
 *
 * A skiplist of internal-key entries. Each entry is one node in the key
 * arena holding its links, the user key length, the value length, a pointer
 * to the value (copied into the value arena) and the internal key (user key |
 * fixed64_le trailer, the layout of lsm_int.h), in one allocation:
 *
 *     next[h-1] .. next[1] | next[0] klen vlen value hnext prev0 | user key | trailer
 *                            ^ node pointer
 *
 * The upper links sit below the node pointer, so the key is at a fixed offset
 * and the first bytes of it share a cache line with next[0] and the lengths.
 * Values live apart so that nodes are packed densely: a search touches about
 * one cache line per node and far fewer pages than with values inline.
 * The order is internal-key order (user key bytewise ascending, then trailer
 * descending) and is compared inline, without decoding anything. There is no
 * deletion: the whole list dies with its arena.
 *
 * Finger search. The writer keeps a "splice": for every level a node (or
 * the head) -- after an insert, the new node on its own levels and its
 * predecessors above -- such that each level's splice node lies between the
 * splice node of the level above and that node's successor there. When the
 * next key sorts after splice[0], the search climbs from level 0 to the
 * first level whose splice successor lies beyond the key (the splice nodes
 * above it are then the key's predecessors as they are) and descends from
 * there; otherwise it searches from the head. Ascending inserts therefore
 * share the hot upper part of the descent: a key right after the last
 * insert (the successor at level 0 is already beyond it) costs two
 * comparisons, and a group of keys inserted in sorted order (the write
 * path's lsm_batch_apply_sorted) costs a short search each.
 *
 * Inserts before a known successor. A writer that already knows the node
 * the new entry sorts immediately before (the memtable knows the newest
 * version of a key from its hash index, and a newer version of that key goes
 * right in front of it) passes it as a hint. The new node then gets height
 * 1 whatever its draw: the only link to set is on level 0, between the hint
 * and its level-0 predecessor, which every node keeps in prev0 (a field only
 * the writer reads or writes), and the search is skipped. The tower of a key
 * stays on its first version in the list, and its newer versions sit in
 * front of it on level 0 only. A search for any other key steps over them
 * only when it ends between that tower and the one before (at most the
 * versions of one key per search), and a read of the key walks its versions
 * on level 0 anyway (newest first, down to its snapshot). Such an insert
 * only changes level 0, between two adjacent nodes, so the splice stays
 * valid. Measured (shard Store at pipeline 16, 100 000 keys, 4 interleaved
 * rounds on the 2-core VM): searching for tall hinted nodes, as before,
 * 228-252 k ops/s; height 1, 243-266 k.
 *
 * Concurrency: one writer at a time (lsm_skl_insert), any number of readers
 * concurrently without locks. A node is fully initialised before it is
 * published with a release store into its predecessor's next pointer; readers
 * follow next pointers with acquire loads, so a reader sees either the old or
 * the new link, and every node it reaches is complete. The list's height is
 * read relaxed: a stale height only makes a search start lower.
 *
 * Thread-safety: as above. The writer must be externally serialised.
 */
#ifndef OM_LSM_SKIPLIST_H
#define OM_LSM_SKIPLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/arena.h"
#include "util/coding.h"
#include "util/slice.h"
#include "util/status.h"

#define LSM_SKL_MAX_HEIGHT 12

typedef struct lsm_skiplist lsm_skiplist;
typedef struct lsm_skl_node lsm_skl_node;

/* Visible so that the iterator accessors inline; only skiplist.c writes it. */
struct lsm_skl_node {
    _Atomic(lsm_skl_node *) next0; /* level 0; level i at ((...)&next0)[-i] */
    uint32_t klen;                 /* user key bytes */
    uint32_t vlen;                 /* value bytes */
    const uint8_t *value;          /* in the value arena */
    _Atomic(lsm_skl_node *) hnext; /* the memtable's hash chain (memtable.c); NULL here */
    lsm_skl_node *prev0;           /* writer only: the level-0 predecessor (head: NULL) */
    uint8_t key[];                 /* user key | fixed64_le trailer */
};

/*
 * lsm_skl_new -- an empty list whose nodes live in `keys` and whose values
 * are copied into `values` (which may be the same arena).
 * Returns: OM_OK; OM_E_NOMEM. Ownership: freed with the arenas.
 */
om_status lsm_skl_new(om_arena *keys, om_arena *values, uint64_t seed, lsm_skiplist **out);

/*
 * lsm_skl_insert -- copy (user_key, trailer, value) into a new node. The
 * (user_key, trailer) pair must differ from every entry in the list. The new
 * node goes to *node when node is not NULL (its hnext is the caller's).
 * Returns: OM_OK; OM_E_NOMEM (list unchanged).
 * Requires: the caller is the only writer.
 */
om_status lsm_skl_insert(lsm_skiplist *sl, om_slice user_key, uint64_t trailer, om_slice value,
                         lsm_skl_node **node);

/*
 * lsm_skl_insert_before -- lsm_skl_insert with a hint: succ, when not NULL,
 * must be the node that sorts immediately after (user_key, trailer) (no entry
 * lies between them). Returns and requires as lsm_skl_insert.
 */
om_status lsm_skl_insert_before(lsm_skiplist *sl, om_slice user_key, uint64_t trailer,
                                om_slice value, lsm_skl_node *succ, lsm_skl_node **node);

/* Inserts that used the hint of lsm_skl_insert_before (no search). */
uint64_t lsm_skl_hint_hits(const lsm_skiplist *sl);

/* A node's parts (any thread; the node is immutable once published). */
static inline om_slice
lsm_skl_node_user_key(const lsm_skl_node *n)
{
    return om_slice_make(n->key, n->klen);
}
static inline uint64_t
lsm_skl_node_trailer(const lsm_skl_node *n)
{
    return om_get_fixed64(n->key + n->klen);
}
static inline om_slice
lsm_skl_node_value(const lsm_skl_node *n)
{
    return om_slice_make(n->value, n->vlen);
}
/* The next node in order (level 0), or NULL. */
static inline const lsm_skl_node *
lsm_skl_node_next(const lsm_skl_node *n)
{
    return atomic_load_explicit(&((lsm_skl_node *)n)->next0, memory_order_acquire);
}

/*
 * lsm_skl_warm -- load into the CPU caches the search paths of n keys (user
 * keys, the position of their newest version), read-only and interleaved:
 * LSM_SKL_WARM_LANES searches advance in turn, each asking for the next
 * node a round before it reads it, so their cache misses overlap instead of
 * coming one after another. The writer calls it before inserting the keys
 * (the inserts' own searches then find their nodes loaded); it changes
 * nothing and is safe beside readers. Keys in ascending order keep the
 * paths close, but any order is correct.
 */
#define LSM_SKL_WARM_LANES 8
void lsm_skl_warm(const lsm_skiplist *sl, const om_slice *keys, size_t n);
/* True if an entry with exactly (user_key, trailer) is in the list. */
bool lsm_skl_contains(const lsm_skiplist *sl, om_slice user_key, uint64_t trailer);

/*
 * lsm_skl_check -- verify the structure: every level is sorted, and every node
 * linked at level i is also linked at level i-1. Returns true if it holds.
 * For tests; requires no concurrent writer.
 */
bool lsm_skl_check(const lsm_skiplist *sl);

/*
 * Inserts that took the sequential fast path (the key sorts between splice[0]
 * and its successor: no search), and those that searched from a higher level
 * of the splice instead of the head (for tests and statistics).
 */
uint64_t lsm_skl_splice_hits(const lsm_skiplist *sl);
uint64_t lsm_skl_finger_hits(const lsm_skiplist *sl);

/* A cursor over the list; a plain value, no cleanup needed. */
typedef struct lsm_skl_iter {
    const lsm_skiplist *sl;
    const lsm_skl_node *node; /* NULL: not valid */
} lsm_skl_iter;

void lsm_skl_iter_init(lsm_skl_iter *it, const lsm_skiplist *sl);
static inline bool
lsm_skl_iter_valid(const lsm_skl_iter *it)
{
    return it->node != NULL;
}
/* The current entry's parts. Require: valid. */
static inline om_slice
lsm_skl_iter_ikey(const lsm_skl_iter *it)
{
    return om_slice_make(it->node->key, (size_t)it->node->klen + 8);
}
static inline om_slice
lsm_skl_iter_user_key(const lsm_skl_iter *it)
{
    return om_slice_make(it->node->key, it->node->klen);
}
static inline uint64_t
lsm_skl_iter_trailer(const lsm_skl_iter *it)
{
    return om_get_fixed64(it->node->key + it->node->klen);
}
static inline om_slice
lsm_skl_iter_value(const lsm_skl_iter *it)
{
    return om_slice_make(it->node->value, it->node->vlen);
}
static inline void
lsm_skl_iter_next(lsm_skl_iter *it)
{
    it->node = atomic_load_explicit(&((lsm_skl_node *)it->node)->next0, memory_order_acquire);
}
/* Position at the first entry >= (user_key, trailer) in internal-key order. */
void lsm_skl_iter_seek(lsm_skl_iter *it, om_slice user_key, uint64_t trailer);
void lsm_skl_iter_seek_first(lsm_skl_iter *it);

#endif /* OM_LSM_SKIPLIST_H */
