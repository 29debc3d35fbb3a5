/*
 * lsm/skiplist.h -- the ordered index of a memtable (private to lsm/).
 *
 * A skiplist of opaque entries allocated in an om_arena. Entries are compared
 * with a caller-supplied function; the list never copies or frees them. There
 * is no deletion: the whole list dies with its arena.
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

#include <stdbool.h>
#include <stdint.h>

#include "util/arena.h"
#include "util/status.h"

#define LSM_SKL_MAX_HEIGHT 12

/* Entry order: <0, 0, >0 as a sorts before, equal to, after b. */
typedef int (*lsm_skl_cmp)(const uint8_t *a, const uint8_t *b);

typedef struct lsm_skiplist lsm_skiplist;
typedef struct lsm_skl_node lsm_skl_node;

/*
 * lsm_skl_new -- an empty list whose nodes live in arena.
 * Returns: OM_OK; OM_E_NOMEM. Ownership: freed with the arena.
 */
om_status lsm_skl_new(om_arena *arena, lsm_skl_cmp cmp, uint64_t seed, lsm_skiplist **out);

/*
 * lsm_skl_insert -- add entry (which must compare unequal to every entry in
 * the list). Returns: OM_OK; OM_E_NOMEM (list unchanged).
 * Requires: the caller is the only writer.
 */
om_status lsm_skl_insert(lsm_skiplist *sl, const uint8_t *entry);

/* True if an entry equal to key is in the list. */
bool lsm_skl_contains(const lsm_skiplist *sl, const uint8_t *key);

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
/* The current entry. Requires: valid. */
const uint8_t *lsm_skl_iter_entry(const lsm_skl_iter *it);
void lsm_skl_iter_next(lsm_skl_iter *it);
/* Position at the first entry >= target (compared with the list's cmp). */
void lsm_skl_iter_seek(lsm_skl_iter *it, const uint8_t *target);
void lsm_skl_iter_seek_first(lsm_skl_iter *it);

#endif /* OM_LSM_SKIPLIST_H */
