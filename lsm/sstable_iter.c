/*
 * lsm/sstable_iter.c -- the iterator over one SSTable: the index block's
 * iterator picks data blocks, each read through the block cache (or
 * privately, without filling it) and iterated in turn (layout:
 * lsm/FORMAT.md, "SSTable"). A corrupt block ends the iteration with
 * OM_E_CORRUPT, never with wrong data.
 *
 * Thread-safety: an iterator belongs to one thread; any number may run over
 * the same open table (lsm/sstable_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm_int.h"
#include "lsm/sstable_int.h"

/* ---- iterator: index block over data blocks ---- */

typedef struct sst_iter {
    lsm_it base;
    lsm_sst *t;
    bool fill_cache;
    lsm_block_iter index_it;
    lsm_block_iter data_it;
    sst_blockref ref;
    bool have_block;
    uint64_t block_off;
    om_status st;
} sst_iter;

static void
siter_drop_block(sst_iter *it)
{
    sst_blockref_release(it->t, &it->ref);
    it->have_block = false;
}

/* Load the block the index iterator points at; false if none or on error. */
static bool
siter_load_block(sst_iter *it)
{
    uint64_t off, size;
    om_status st;

    if (!lsm_it_valid(&it->index_it.base)) {
        siter_drop_block(it);
        if (lsm_it_status(&it->index_it.base) != OM_OK && it->st == OM_OK)
            it->st = sst_corrupt(it->t, it->t->data_end, "index block malformed");
        return false;
    }
    st = sst_decode_handle(it->t, lsm_it_value(&it->index_it.base), &off, &size);
    if (st == OM_OK && it->have_block && off == it->block_off)
        return true;
    siter_drop_block(it);
    if (st == OM_OK)
        st = sst_block_get(it->t, off, size, lsm_block_iter_ordinal(&it->index_it), it->fill_cache,
                           &it->ref);
    if (st != OM_OK) {
        it->st = st;
        return false;
    }
    it->have_block = true;
    it->block_off = off;
    lsm_block_iter_init(&it->data_it, it->ref.b, LSM_CMP_IKEY);
    return true;
}

/* Move past exhausted blocks to the next entry, if any. */
static void
siter_skip_forward(sst_iter *it)
{
    while (it->st == OM_OK && it->have_block && !lsm_it_valid(&it->data_it.base)) {
        if (lsm_it_status(&it->data_it.base) != OM_OK) {
            it->st = sst_corrupt(it->t, it->block_off, "data block entries malformed");
            break;
        }
        lsm_it_next(&it->index_it.base);
        if (!siter_load_block(it))
            break;
        lsm_it_seek_first(&it->data_it.base);
    }
}

static bool
siter_valid(const lsm_it *base)
{
    const sst_iter *it = (const sst_iter *)base;

    return it->st == OM_OK && it->have_block && it->data_it.valid;
}

static void
siter_seek_first(lsm_it *base)
{
    sst_iter *it = (sst_iter *)base;

    if (it->st != OM_OK)
        return;
    lsm_it_seek_first(&it->index_it.base);
    if (siter_load_block(it))
        lsm_it_seek_first(&it->data_it.base);
    siter_skip_forward(it);
}

static void
siter_seek(lsm_it *base, om_slice target)
{
    sst_iter *it = (sst_iter *)base;

    if (it->st != OM_OK)
        return;
    sst_index_seek(it->t, &it->index_it, target);
    if (siter_load_block(it))
        lsm_it_seek(&it->data_it.base, target);
    siter_skip_forward(it);
}

static void
siter_next(lsm_it *base)
{
    sst_iter *it = (sst_iter *)base;

    if (!siter_valid(base))
        return;
    lsm_it_next(&it->data_it.base);
    siter_skip_forward(it);
}

static om_slice
siter_key(const lsm_it *base)
{
    return lsm_it_key(&((const sst_iter *)base)->data_it.base);
}

static om_slice
siter_value(const lsm_it *base)
{
    return lsm_it_value(&((const sst_iter *)base)->data_it.base);
}

static om_status
siter_status(const lsm_it *base)
{
    return ((const sst_iter *)base)->st;
}

static void
siter_free(lsm_it *base)
{
    sst_iter *it = (sst_iter *)base;

    siter_drop_block(it);
    lsm_block_iter_fini(&it->index_it);
    lsm_block_iter_fini(&it->data_it);
    free(it);
}

static const lsm_it_ops siter_ops = LSM_IT_OPS(siter, siter_free);

om_status
lsm_sst_iter_new(lsm_sst *t, bool fill_cache, lsm_it **out)
{
    sst_iter *it = calloc(1, sizeof(*it));

    if (it == NULL)
        return OM_ERR(OM_E_NOMEM);
    it->base.ops = &siter_ops;
    it->t = t;
    it->fill_cache = fill_cache;
    lsm_block_iter_init(&it->index_it, &t->index, LSM_CMP_IKEY);
    *out = &it->base;
    return OM_OK;
}
