/*
 * lsm/memtable.c -- skiplist memtable in an arena.
 *
 * Each entry is one skiplist node in the arena (layout in skiplist.h): the
 * internal key and the value are copied into the node once, and searches
 * compare the user key and the trailer in place, without building a target
 * and without allocating.
 */
#include "lsm/memtable.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/skiplist.h"
#include "util/arena.h"
#include "util/coding.h"

struct lsm_memtable {
    atomic_int refs;
    atomic_uint_fast64_t entries;
    uint64_t log_number;
    om_arena *arena;
    lsm_skiplist *sl;
};

om_status
lsm_mem_new(uint64_t log_number, size_t write_buffer_size, lsm_memtable **out)
{
    lsm_memtable *m = calloc(1, sizeof(*m));
    size_t block = write_buffer_size / 16;
    om_status st;

    if (block < 4096)
        block = 4096;
    if (block > 256 * 1024)
        block = 256 * 1024;
    if (m == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&m->refs, 1);
    atomic_init(&m->entries, 0);
    m->log_number = log_number;
    OM_GOTO(om_arena_new(block, &m->arena));
    OM_GOTO(lsm_skl_new(m->arena, (uint64_t)(uintptr_t)m ^ log_number, &m->sl));
    *out = m;
    return OM_OK;
fail:
    om_arena_free(m->arena);
    free(m);
    return st;
}

void
lsm_mem_ref(lsm_memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void
lsm_mem_unref(lsm_memtable *m)
{
    if (m == NULL)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        om_arena_free(m->arena);
        free(m);
    }
}

om_status
lsm_mem_add(lsm_memtable *m, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    OM_TRY(lsm_skl_insert(m->sl, key, lsm_trailer_pack(seq, type), value));
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    return OM_OK;
}

bool
lsm_mem_get(lsm_memtable *m, om_slice key, uint64_t seq, om_buf *value, om_status *st)
{
    lsm_skl_iter it;
    uint64_t t;

    lsm_skl_iter_init(&it, m->sl);
    lsm_skl_iter_seek(&it, key, lsm_trailer_pack(seq, LSM_TYPE_SEEK));
    if (!lsm_skl_iter_valid(&it) || !om_slice_eq(lsm_skl_iter_user_key(&it), key))
        return false;
    t = lsm_skl_iter_trailer(&it);
    if ((t & 0xff) == LSM_TYPE_DEL)
        *st = OM_E_NOTFOUND;
    else
        *st = om_buf_set(value, lsm_skl_iter_value(&it));
    return true;
}

bool
lsm_mem_has_key(lsm_memtable *m, om_slice key)
{
    lsm_skl_iter it;

    lsm_skl_iter_init(&it, m->sl);
    lsm_skl_iter_seek(&it, key, lsm_trailer_pack(LSM_MAX_SEQ, LSM_TYPE_SEEK));
    return lsm_skl_iter_valid(&it) && om_slice_eq(lsm_skl_iter_user_key(&it), key);
}

size_t
lsm_mem_usage(const lsm_memtable *m)
{
    return om_arena_usage(m->arena);
}

uint64_t
lsm_mem_entries(const lsm_memtable *m)
{
    return atomic_load_explicit(&((lsm_memtable *)m)->entries, memory_order_relaxed);
}

uint64_t
lsm_mem_log_number(const lsm_memtable *m)
{
    return m->log_number;
}

/* ---- iterator ---- */

typedef struct mem_it {
    lsm_it base;
    lsm_memtable *m;
    lsm_skl_iter it;
    om_status st;
} mem_it;

static bool
mem_it_valid(const lsm_it *it)
{
    return lsm_skl_iter_valid(&((const mem_it *)it)->it);
}

static void
mem_it_seek_first(lsm_it *it)
{
    lsm_skl_iter_seek_first(&((mem_it *)it)->it);
}

static void
mem_it_seek(lsm_it *it, om_slice ikey)
{
    mem_it *mi = (mem_it *)it;

    if (ikey.n < LSM_TRAILER_SIZE) {
        mi->st = OM_ERR(OM_E_INVALID);
        mi->it.node = NULL;
        return;
    }
    lsm_skl_iter_seek(&mi->it, lsm_ikey_user(ikey), lsm_ikey_trailer(ikey));
}

static void
mem_it_next(lsm_it *it)
{
    lsm_skl_iter_next(&((mem_it *)it)->it);
}

static om_slice
mem_it_key(const lsm_it *it)
{
    return lsm_skl_iter_ikey(&((const mem_it *)it)->it);
}

static om_slice
mem_it_value(const lsm_it *it)
{
    return lsm_skl_iter_value(&((const mem_it *)it)->it);
}

static om_status
mem_it_status(const lsm_it *it)
{
    return ((const mem_it *)it)->st;
}

static void
mem_it_free(lsm_it *it)
{
    mem_it *mi = (mem_it *)it;

    lsm_mem_unref(mi->m);
    free(mi);
}

static const lsm_it_ops mem_it_ops = {
    .valid = mem_it_valid,
    .seek_first = mem_it_seek_first,
    .seek = mem_it_seek,
    .next = mem_it_next,
    .key = mem_it_key,
    .value = mem_it_value,
    .status = mem_it_status,
    .free = mem_it_free,
};

om_status
lsm_mem_iter(lsm_memtable *m, lsm_it **out)
{
    mem_it *mi = calloc(1, sizeof(*mi));

    if (mi == NULL)
        return OM_ERR(OM_E_NOMEM);
    mi->base.ops = &mem_it_ops;
    mi->m = m;
    lsm_mem_ref(m);
    lsm_skl_iter_init(&mi->it, m->sl);
    *out = &mi->base;
    return OM_OK;
}
