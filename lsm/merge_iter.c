/*
 * lsm/merge_iter.c -- merges n internal iterators into one ordered stream
 * (lsm_merge_it_new, declared in lsm_int.h).
 *
 * A binary min-heap holds the indices of the valid children, ordered by
 * their current internal key; equal keys are ordered by child index, so the
 * earlier child (the newer source: memtable before L0 files before deeper
 * levels, as the DB layer passes them) comes out first. Each child's current
 * key is cached next to the heap to save a vtable call per comparison. The
 * merge does not hide duplicates or tombstones: that is the job of the
 * caller (the DB iterator, compaction).
 *
 * An error in any child (its status after a movement) ends the merge: it
 * becomes invalid and reports that status.
 *
 * Invariant (checked by OM_ASSERT in merge_next): every child yields keys in
 * strictly increasing internal-key order, so the merged stream strictly
 * increases in (internal key, child index) order. A child that went
 * backwards would make the merge skip or repeat keys without any error.
 *
 * Thread-safety: an iterator belongs to one thread.
 */
#include <stdlib.h>

#include "lsm/lsm_int.h"
#include "util/assert.h"

typedef struct merge_it {
    lsm_it base;
    int n;
    lsm_it **child;
    om_slice *key; /* current key of each child in the heap */
    int *heap;     /* child indices */
    int size;
    om_status st;
#if OM_ASSERTS_ON
    om_buf last; /* the key merge_next moved past, for the ordering check */
#endif
} merge_it;

static bool
merge_less(const merge_it *m, int a, int b)
{
    int r = lsm_ikey_cmp(m->key[a], m->key[b]);

    return r < 0 || (r == 0 && a < b);
}

static void
merge_sift_down(merge_it *m, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i, tmp;

        if (l < m->size && merge_less(m, m->heap[l], m->heap[s]))
            s = l;
        if (r < m->size && merge_less(m, m->heap[r], m->heap[s]))
            s = r;
        if (s == i)
            return;
        tmp = m->heap[i];
        m->heap[i] = m->heap[s];
        m->heap[s] = tmp;
        i = s;
    }
}

/* Check child c after a movement: add its key, or note its error. Returns false on error. */
static bool
merge_child_ok(merge_it *m, int c)
{
    if (lsm_it_valid(m->child[c])) {
        m->key[c] = lsm_it_key(m->child[c]);
        return true;
    }
    if (lsm_it_status(m->child[c]) != OM_OK) {
        if (m->st == OM_OK)
            m->st = lsm_it_status(m->child[c]);
        return false;
    }
    return true;
}

static void
merge_rebuild(merge_it *m)
{
    m->size = 0;
    for (int c = 0; c < m->n; c++) {
        if (!merge_child_ok(m, c))
            continue;
        if (lsm_it_valid(m->child[c]))
            m->heap[m->size++] = c;
    }
    if (m->st != OM_OK) {
        m->size = 0;
        return;
    }
    for (int i = m->size / 2 - 1; i >= 0; i--)
        merge_sift_down(m, i);
}

static bool
merge_valid(const lsm_it *base)
{
    const merge_it *m = (const merge_it *)base;

    return m->st == OM_OK && m->size > 0;
}

static void
merge_seek_first(lsm_it *base)
{
    merge_it *m = (merge_it *)base;

    if (m->st != OM_OK)
        return;
    for (int c = 0; c < m->n; c++)
        lsm_it_seek_first(m->child[c]);
    merge_rebuild(m);
}

static void
merge_seek(lsm_it *base, om_slice target)
{
    merge_it *m = (merge_it *)base;

    if (m->st != OM_OK)
        return;
    for (int c = 0; c < m->n; c++)
        lsm_it_seek(m->child[c], target);
    merge_rebuild(m);
}

static void
merge_next(lsm_it *base)
{
    merge_it *m = (merge_it *)base;
    int top;

    if (!merge_valid(base))
        return;
    top = m->heap[0];
#if OM_ASSERTS_ON
    bool check = om_buf_set(&m->last, m->key[top]) == OM_OK; /* the child may reuse its key */
#endif
    lsm_it_next(m->child[top]);
    if (!merge_child_ok(m, top)) {
        m->size = 0;
        return;
    }
    if (!lsm_it_valid(m->child[top]))
        m->heap[0] = m->heap[--m->size];
    if (m->size > 0)
        merge_sift_down(m, 0);
#if OM_ASSERTS_ON
    if (check && m->size > 0) {
        int r = lsm_ikey_cmp(om_buf_slice(&m->last), m->key[m->heap[0]]);
        OM_ASSERT(r < 0 || (r == 0 && top < m->heap[0]));
    }
#endif
}

static om_slice
merge_key(const lsm_it *base)
{
    const merge_it *m = (const merge_it *)base;

    return m->key[m->heap[0]];
}

static om_slice
merge_value(const lsm_it *base)
{
    const merge_it *m = (const merge_it *)base;

    return lsm_it_value(m->child[m->heap[0]]);
}

static om_status
merge_status(const lsm_it *base)
{
    return ((const merge_it *)base)->st;
}

static void
merge_free(lsm_it *base)
{
    merge_it *m = (merge_it *)base;

    for (int c = 0; c < m->n; c++)
        lsm_it_free(m->child[c]);
    free(m->child);
    free(m->key);
    free(m->heap);
#if OM_ASSERTS_ON
    om_buf_free(&m->last);
#endif
    free(m);
}

static const lsm_it_ops merge_ops = LSM_IT_OPS(merge, merge_free);

om_status
lsm_merge_it_new(lsm_it **children, int n, lsm_it **out)
{
    merge_it *m = calloc(1, sizeof(*m));
    size_t k = n > 0 ? (size_t)n : 1;

    if (m != NULL) {
        m->child = malloc(k * sizeof(*m->child));
        m->key = calloc(k, sizeof(*m->key));
        m->heap = malloc(k * sizeof(*m->heap));
    }
    if (n < 0 || m == NULL || m->child == NULL || m->key == NULL || m->heap == NULL) {
        for (int c = 0; c < n; c++)
            lsm_it_free(children[c]);
        if (m != NULL) {
            free(m->child);
            free(m->key);
            free(m->heap);
            free(m);
        }
        return n < 0 ? OM_ERR(OM_E_INVALID) : OM_ERR(OM_E_NOMEM);
    }
    for (int c = 0; c < n; c++)
        m->child[c] = children[c];
    m->n = n;
    m->base.ops = &merge_ops;
    *out = &m->base;
    return OM_OK;
}
