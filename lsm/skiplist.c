/*
 * lsm/skiplist.c -- lock-free-read skiplist of internal keys over arena memory.
 *
 * Node heights follow a geometric distribution with p = 1/4 (at most
 * LSM_SKL_MAX_HEIGHT levels), drawn from a per-list xorshift generator that
 * only the writer touches. Publishing a node: its own next pointers are set
 * with relaxed stores (nobody can see the node yet), then each predecessor's
 * link is replaced with a release store, bottom level first, so that a reader
 * that finds the node at level i can also find it at every level below.
 *
 * Searches compare the user key with memcmp and then the trailer, straight
 * from the node (layout in skiplist.h). When a search drops a level it
 * remembers the node that stopped it: meeting that node again on the lower
 * level needs no comparison.
 */
#include "lsm/skiplist.h"

#include <stddef.h>
#include <string.h>

#include "util/assert.h"

struct lsm_skiplist {
    om_arena *arena, *varena;
    uint64_t rnd; /* writer only */
    atomic_int height;
    lsm_skl_node *head;
    /*
     * Writer only: the splice, a node at every level (or the head) such that
     * splice[i+1] <= splice[i] < the level-(i+1) successor of splice[i+1]
     * (see skiplist.h, "Finger search").
     */
    lsm_skl_node *splice[LSM_SKL_MAX_HEIGHT];
    uint64_t splice_hits, finger_hits, hint_hits;
};

typedef _Atomic(lsm_skl_node *) skl_link;

/* The link of n at level (level 0 is next0, the others sit below the node). */
static inline skl_link *
skl_link_at(const lsm_skl_node *n, int level)
{
    return (skl_link *)&((lsm_skl_node *)n)->next0 - level;
}

static inline lsm_skl_node *
skl_next(const lsm_skl_node *n, int level)
{
    return atomic_load_explicit(skl_link_at(n, level), memory_order_acquire);
}

/* Internal-key order of node n against (k, kn, kt): <0, 0, >0. */
static inline int
skl_cmp(const lsm_skl_node *n, const uint8_t *k, size_t kn, uint64_t kt)
{
    size_t nn = n->klen, m = nn < kn ? nn : kn;
    int r = m > 0 ? memcmp(n->key, k, m) : 0;
    uint64_t nt;

    if (r != 0)
        return r;
    if (nn != kn)
        return nn < kn ? -1 : 1;
    nt = om_get_fixed64(n->key + nn);
    return nt > kt ? -1 : (nt < kt ? 1 : 0);
}

static lsm_skl_node *
skl_node_new(lsm_skiplist *sl, int height, om_slice key, uint64_t trailer, om_slice value)
{
    size_t links = sizeof(skl_link) * (size_t)(height - 1);
    size_t sz = links + sizeof(lsm_skl_node) + key.n + 8;
    uint8_t *mem = om_arena_alloc(sl->arena, sz), *v = NULL;
    lsm_skl_node *n;

    if (mem == NULL)
        return NULL;
    if (value.n > 0 && (v = om_arena_alloc(sl->varena, value.n)) == NULL)
        return NULL;
    n = (lsm_skl_node *)(mem + links);
    for (int i = 0; i < height; i++)
        atomic_init(skl_link_at(n, i), NULL);
    atomic_init(&n->hnext, NULL);
    n->prev0 = NULL;
    n->klen = (uint32_t)key.n;
    n->vlen = (uint32_t)value.n;
    if (key.n > 0)
        memcpy(n->key, key.p, key.n);
    om_put_fixed64(n->key + key.n, trailer);
    if (value.n > 0)
        memcpy(v, value.p, value.n);
    /* An empty value still gets a real address (the end of the node), never NULL. */
    n->value = value.n > 0 ? v : n->key + key.n + 8;
    return n;
}

om_status
lsm_skl_new(om_arena *keys, om_arena *values, uint64_t seed, lsm_skiplist **out)
{
    lsm_skiplist *sl = om_arena_alloc(keys, sizeof(*sl));

    if (sl == NULL)
        return OM_ERR(OM_E_NOMEM);
    memset(sl, 0, sizeof(*sl));
    sl->arena = keys;
    sl->varena = values;
    sl->rnd = seed ? seed : 0x9e3779b97f4a7c15ULL;
    atomic_init(&sl->height, 1);
    sl->head = skl_node_new(sl, LSM_SKL_MAX_HEIGHT, OM_SLICE_NULL, 0, OM_SLICE_NULL);
    if (sl->head == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (int i = 0; i < LSM_SKL_MAX_HEIGHT; i++)
        sl->splice[i] = sl->head;
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

/*
 * The last node < key at every level (prev may be NULL when only the result
 * is wanted); returns the first node >= key or NULL.
 */
static lsm_skl_node *
skl_find_from(lsm_skl_node *x, int level, lsm_skl_node *known_ge, const uint8_t *k, size_t kn,
              uint64_t kt, lsm_skl_node **prev)
{
    for (;;) {
        lsm_skl_node *next = skl_next(x, level);

        if (next != NULL && next != known_ge) {
            if (skl_cmp(next, k, kn, kt) < 0) {
                x = next;
                continue;
            }
            known_ge = next;
        }
        if (prev != NULL)
            prev[level] = x;
        if (level == 0)
            return next;
        level--;
    }
}

static lsm_skl_node *
skl_find_ge(const lsm_skiplist *sl, const uint8_t *k, size_t kn, uint64_t kt, lsm_skl_node **prev)
{
    int level = atomic_load_explicit(&((lsm_skiplist *)sl)->height, memory_order_relaxed) - 1;

    return skl_find_from(sl->head, level, NULL, k, kn, kt, prev);
}

/*
 * Writer only: the predecessors of (k, kt) at every level below cur into
 * prev, starting from the splice when it lies before the key: up from level
 * 0 to the first level whose splice successor is beyond the key (the splices
 * above are then the predecessors as they are), and down from there.
 */
static void
skl_find_splice(lsm_skiplist *sl, int cur, const uint8_t *k, size_t kn, uint64_t kt,
                lsm_skl_node **prev)
{
    lsm_skl_node *succ = NULL;
    int level = 0;

    if (sl->splice[0] != sl->head && skl_cmp(sl->splice[0], k, kn, kt) > 0) {
        skl_find_ge(sl, k, kn, kt, prev);
        return;
    }
    for (; level < cur; level++) {
        succ = atomic_load_explicit(skl_link_at(sl->splice[level], level), memory_order_relaxed);
        if (succ == NULL || skl_cmp(succ, k, kn, kt) > 0)
            break;
    }
    if (level == cur) {
        /* Beyond every splice successor: go on from the top splice. */
        level = cur - 1;
        succ = NULL;
    }
    if (level > 0)
        sl->finger_hits++;
    else if (sl->splice[0] != sl->head)
        sl->splice_hits++;
    for (int i = level + 1; i < cur; i++)
        prev[i] = sl->splice[i];
    skl_find_from(sl->splice[level], level, succ, k, kn, kt, prev);
}

om_status
lsm_skl_insert_before(lsm_skiplist *sl, om_slice key, uint64_t trailer, om_slice value,
                      lsm_skl_node *hint, lsm_skl_node **node)
{
    lsm_skl_node *prev[LSM_SKL_MAX_HEIGHT];
    lsm_skl_node *n, *succ;
    int height, cur = atomic_load_explicit(&sl->height, memory_order_relaxed);

    if (hint != NULL) {
        /* Level 0 only (height 1, see skiplist.h): between the hint and its predecessor. */
        lsm_skl_node *p = hint->prev0;

        n = skl_node_new(sl, 1, key, trailer, value);
        if (n == NULL)
            return OM_ERR(OM_E_NOMEM);
        atomic_store_explicit(&n->next0, hint, memory_order_relaxed);
        n->prev0 = p;
        atomic_store_explicit(&p->next0, n, memory_order_release);
        hint->prev0 = n;
        /* Only level 0 changed: the splice still holds (see struct lsm_skiplist). */
        sl->hint_hits++;
        if (node != NULL)
            *node = n;
        return OM_OK;
    }
    height = skl_random_height(sl);
    skl_find_splice(sl, cur, key.p, key.n, trailer, prev);
    n = skl_node_new(sl, height, key, trailer, value);
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
    succ = atomic_load_explicit(&prev[0]->next0, memory_order_relaxed);
    n->prev0 = prev[0];
    if (succ != NULL)
        succ->prev0 = n;
    for (int i = 0; i < height; i++) {
        atomic_store_explicit(skl_link_at(n, i),
                              atomic_load_explicit(skl_link_at(prev[i], i), memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(skl_link_at(prev[i], i), n, memory_order_release);
    }
    /* The predecessors of whatever sorts right after n. */
    for (int i = height; i < cur; i++)
        sl->splice[i] = prev[i];
    for (int i = 0; i < height; i++)
        sl->splice[i] = n;
    if (node != NULL)
        *node = n;
    return OM_OK;
}

om_status
lsm_skl_insert(lsm_skiplist *sl, om_slice key, uint64_t trailer, om_slice value,
               lsm_skl_node **node)
{
    return lsm_skl_insert_before(sl, key, trailer, value, NULL, node);
}

/* Start loading the lines of node n that a search at `level` reads (its link, lengths, key). */
static inline void
skl_prefetch_node(const lsm_skl_node *n, int level)
{
    __builtin_prefetch(n, 0, 3);
    __builtin_prefetch(n->key + 32, 0, 3);
    if (level > 0)
        __builtin_prefetch(skl_link_at(n, level), 0, 3);
}

void
lsm_skl_warm(const lsm_skiplist *sl, const om_slice *keys, size_t n)
{
    struct {
        const lsm_skl_node *x, *next; /* at x on `level`; next: its successor, loading */
        int level;
        size_t i; /* the key; n when the lane is idle */
    } lane[LSM_SKL_WARM_LANES];
    int top = atomic_load_explicit(&((lsm_skiplist *)sl)->height, memory_order_relaxed) - 1;
    size_t taken = 0;
    int busy = 0;

    OM_ASSERT(top >= 0); /* a list is never lower than 1 (lsm_skl_new): skl_next(head, top) */
    for (int l = 0; l < LSM_SKL_WARM_LANES; l++) {
        lane[l].i = n;
        if (taken < n) {
            lane[l].i = taken++;
            lane[l].x = sl->head;
            lane[l].level = top;
            lane[l].next = skl_next(sl->head, top);
            busy++;
        }
    }
    /*
     * Round robin: each lane compares the successor it asked for a round
     * ago (loaded meanwhile, while the other lanes worked), then steps right
     * or down and asks for the next one. LSM_SKL_WARM_LANES misses are in
     * flight at once instead of one.
     */
    while (busy > 0) {
        for (int l = 0; l < LSM_SKL_WARM_LANES; l++) {
            const om_slice *k;

            if (lane[l].i == n)
                continue;
            k = &keys[lane[l].i];
            if (lane[l].next != NULL && skl_cmp(lane[l].next, k->p, k->n, UINT64_MAX) < 0) {
                lane[l].x = lane[l].next;
            } else if (lane[l].level > 0) {
                lane[l].level--;
            } else if (taken < n) { /* this key's path is loaded: the next key from the top */
                lane[l].i = taken++;
                lane[l].x = sl->head;
                lane[l].level = top;
            } else {
                lane[l].i = n;
                busy--;
                continue;
            }
            lane[l].next = skl_next(lane[l].x, lane[l].level);
            if (lane[l].next != NULL)
                skl_prefetch_node(lane[l].next, lane[l].level);
        }
    }
}

bool
lsm_skl_contains(const lsm_skiplist *sl, om_slice key, uint64_t trailer)
{
    lsm_skl_node *n = skl_find_ge(sl, key.p, key.n, trailer, NULL);

    return n != NULL && skl_cmp(n, key.p, key.n, trailer) == 0;
}

bool
lsm_skl_check(const lsm_skiplist *sl)
{
    int height = atomic_load_explicit(&((lsm_skiplist *)sl)->height, memory_order_relaxed);

    /* Level 0's back links (writer only) mirror its forward links. */
    for (const lsm_skl_node *p = sl->head, *x = skl_next(p, 0); x != NULL;
         p = x, x = skl_next(x, 0))
        if (x->prev0 != p)
            return false;
    for (int level = 0; level < LSM_SKL_MAX_HEIGHT; level++) {
        const lsm_skl_node *x = skl_next(sl->head, level), *lower = sl->head;

        if (level >= height && x != NULL)
            return false;
        for (; x != NULL; x = skl_next(x, level)) {
            const lsm_skl_node *nx = skl_next(x, level);

            if (nx != NULL &&
                skl_cmp(x, nx->key, nx->klen, om_get_fixed64(nx->key + nx->klen)) >= 0)
                return false;
            if (level > 0) {
                /* x must be reachable on the level below, after the last match. */
                while (lower != NULL && lower != x)
                    lower = skl_next(lower, level - 1);
                if (lower == NULL)
                    return false;
            }
        }
    }
    return true;
}

uint64_t
lsm_skl_splice_hits(const lsm_skiplist *sl)
{
    return sl->splice_hits;
}

uint64_t
lsm_skl_finger_hits(const lsm_skiplist *sl)
{
    return sl->finger_hits;
}

uint64_t
lsm_skl_hint_hits(const lsm_skiplist *sl)
{
    return sl->hint_hits;
}

void
lsm_skl_iter_init(lsm_skl_iter *it, const lsm_skiplist *sl)
{
    it->sl = sl;
    it->node = NULL;
}

void
lsm_skl_iter_seek(lsm_skl_iter *it, om_slice key, uint64_t trailer)
{
    it->node = skl_find_ge(it->sl, key.p, key.n, trailer, NULL);
}

void
lsm_skl_iter_seek_first(lsm_skl_iter *it)
{
    it->node = skl_next(it->sl->head, 0);
}
