/*
 * lsm/skiplist.c -- lock-free-read skiplist over arena memory.
 *
 * Node heights follow a geometric distribution with p = 1/4 (at most
 * LSM_SKL_MAX_HEIGHT levels), drawn from a per-list xorshift generator that
 * only the writer touches. Publishing a node: its own next pointers are set
 * with relaxed stores (nobody can see the node yet), then each predecessor's
 * link is replaced with a release store, bottom level first, so that a reader
 * that finds the node at level i can also find it at every level below.
 */
#include "lsm/skiplist.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

struct lsm_skl_node {
    const uint8_t *entry;
    _Atomic(lsm_skl_node *) next[]; /* height entries */
};

struct lsm_skiplist {
    om_arena *arena;
    lsm_skl_cmp cmp;
    uint64_t rnd; /* writer only */
    atomic_int height;
    lsm_skl_node *head;
};

static lsm_skl_node *
skl_node_new(lsm_skiplist *sl, const uint8_t *entry, int height)
{
    size_t sz = sizeof(lsm_skl_node) + sizeof(_Atomic(lsm_skl_node *)) * (size_t)height;
    lsm_skl_node *n = om_arena_alloc(sl->arena, sz);

    if (n == NULL)
        return NULL;
    n->entry = entry;
    for (int i = 0; i < height; i++)
        atomic_init(&n->next[i], NULL);
    return n;
}

om_status
lsm_skl_new(om_arena *arena, lsm_skl_cmp cmp, uint64_t seed, lsm_skiplist **out)
{
    lsm_skiplist *sl = om_arena_alloc(arena, sizeof(*sl));

    if (sl == NULL)
        return OM_ERR(OM_E_NOMEM);
    sl->arena = arena;
    sl->cmp = cmp;
    sl->rnd = seed ? seed : 0x9e3779b97f4a7c15ULL;
    atomic_init(&sl->height, 1);
    sl->head = skl_node_new(sl, NULL, LSM_SKL_MAX_HEIGHT);
    if (sl->head == NULL)
        return OM_ERR(OM_E_NOMEM);
    *out = sl;
    return OM_OK;
}

static int
skl_random_height(lsm_skiplist *sl)
{
    int h = 1;
    uint64_t x = sl->rnd;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sl->rnd = x;
    x *= 0x2545f4914f6cdd1dULL;
    while (h < LSM_SKL_MAX_HEIGHT && (x & 3) == 0) {
        h++;
        x >>= 2;
    }
    return h;
}

static inline lsm_skl_node *
skl_next(const lsm_skl_node *n, int level)
{
    return atomic_load_explicit(&((lsm_skl_node *)n)->next[level], memory_order_acquire);
}

/*
 * The last node < key at every level (prev may be NULL when only the result
 * is wanted); returns the first node >= key or NULL.
 */
static lsm_skl_node *
skl_find_ge(const lsm_skiplist *sl, const uint8_t *key, lsm_skl_node **prev)
{
    lsm_skl_node *x = sl->head;
    int level = atomic_load_explicit(&((lsm_skiplist *)sl)->height, memory_order_relaxed) - 1;

    for (;;) {
        lsm_skl_node *next = skl_next(x, level);

        if (next != NULL && sl->cmp(next->entry, key) < 0) {
            x = next;
            continue;
        }
        if (prev != NULL)
            prev[level] = x;
        if (level == 0)
            return next;
        level--;
    }
}

om_status
lsm_skl_insert(lsm_skiplist *sl, const uint8_t *entry)
{
    lsm_skl_node *prev[LSM_SKL_MAX_HEIGHT];
    lsm_skl_node *n;
    int height, cur = atomic_load_explicit(&sl->height, memory_order_relaxed);

    skl_find_ge(sl, entry, prev);
    height = skl_random_height(sl);
    n = skl_node_new(sl, entry, height);
    if (n == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (int i = cur; i < height; i++)
        prev[i] = sl->head;
    /*
     * A reader that sees the new height before the links at those levels
     * finds NULL at the head and simply drops a level: harmless.
     */
    if (height > cur)
        atomic_store_explicit(&sl->height, height, memory_order_relaxed);
    for (int i = 0; i < height; i++) {
        atomic_store_explicit(&n->next[i],
                              atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    return OM_OK;
}

bool
lsm_skl_contains(const lsm_skiplist *sl, const uint8_t *key)
{
    lsm_skl_node *n = skl_find_ge(sl, key, NULL);

    return n != NULL && sl->cmp(n->entry, key) == 0;
}

void
lsm_skl_iter_init(lsm_skl_iter *it, const lsm_skiplist *sl)
{
    it->sl = sl;
    it->node = NULL;
}

const uint8_t *
lsm_skl_iter_entry(const lsm_skl_iter *it)
{
    return it->node->entry;
}

void
lsm_skl_iter_next(lsm_skl_iter *it)
{
    it->node = skl_next(it->node, 0);
}

void
lsm_skl_iter_seek(lsm_skl_iter *it, const uint8_t *target)
{
    it->node = skl_find_ge(it->sl, target, NULL);
}

void
lsm_skl_iter_seek_first(lsm_skl_iter *it)
{
    it->node = skl_next(it->sl->head, 0);
}
