/*
 * lsm/memtable.c -- skiplist memtable in an arena.
 *
 * Entries are encoded once into arena memory (layout in memtable.h) and the
 * skiplist indexes pointers to them, ordered by internal key. Seeks encode
 * the target as a length-prefixed internal key, which is all the comparator
 * reads.
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

/* Lengths are varints; the one-byte case (< 128) is by far the common one. */
static inline const uint8_t *
mem_varint(const uint8_t *p, uint32_t *n)
{
    if (p[0] < 128) {
        *n = p[0];
        return p + 1;
    }
    return om_decode_varint32(p, p + OM_MAX_VARINT32_LEN, n);
}

static inline om_slice
mem_entry_ikey(const uint8_t *e)
{
    uint32_t n = 0;
    const uint8_t *p = mem_varint(e, &n);

    return om_slice_make(p, n);
}

static inline om_slice
mem_entry_value(const uint8_t *e)
{
    om_slice k = mem_entry_ikey(e);
    uint32_t n = 0;
    const uint8_t *p = mem_varint(k.p + k.n, &n);

    return om_slice_make(p, n);
}

static int
mem_cmp(const uint8_t *a, const uint8_t *b)
{
    return lsm_ikey_cmp(mem_entry_ikey(a), mem_entry_ikey(b));
}

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
    OM_GOTO(lsm_skl_new(m->arena, mem_cmp, (uint64_t)(uintptr_t)m ^ log_number, &m->sl));
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
    size_t ikn = key.n + LSM_TRAILER_SIZE;
    size_t len = om_varint_len(ikn) + ikn + om_varint_len(value.n) + value.n;
    uint8_t *e = om_arena_alloc(m->arena, len), *p;

    if (e == NULL)
        return OM_ERR(OM_E_NOMEM);
    p = om_encode_varint32(e, (uint32_t)ikn);
    if (key.n > 0)
        memcpy(p, key.p, key.n);
    p += key.n;
    om_put_fixed64(p, lsm_trailer_pack(seq, type));
    p += LSM_TRAILER_SIZE;
    p = om_encode_varint32(p, (uint32_t)value.n);
    if (value.n > 0)
        memcpy(p, value.p, value.n);
    OM_TRY(lsm_skl_insert(m->sl, e));
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    return OM_OK;
}

/* Encode a seek target (length-prefixed internal key) into buf. */
static om_status
mem_target(om_buf *buf, om_slice ikey)
{
    om_buf_reset(buf);
    OM_TRY(om_buf_put_varint32(buf, (uint32_t)ikey.n));
    return om_buf_append(buf, ikey.p, ikey.n);
}

static om_status
mem_lookup_target(om_buf *buf, om_slice key, uint64_t seq)
{
    om_buf_reset(buf);
    OM_TRY(om_buf_put_varint32(buf, (uint32_t)(key.n + LSM_TRAILER_SIZE)));
    return lsm_ikey_append(buf, key, seq, LSM_TYPE_SEEK);
}

bool
lsm_mem_get(lsm_memtable *m, om_slice key, uint64_t seq, om_buf *value, om_status *st)
{
    uint8_t stack[256];
    om_buf tgt = OM_BUF_INIT;
    lsm_skl_iter it;
    lsm_ikey ik;
    bool found = false;

    if (key.n + LSM_TRAILER_SIZE + OM_MAX_VARINT32_LEN <= sizeof(stack)) {
        uint8_t *p = om_encode_varint32(stack, (uint32_t)(key.n + LSM_TRAILER_SIZE));

        if (key.n > 0)
            memcpy(p, key.p, key.n);
        om_put_fixed64(p + key.n, lsm_trailer_pack(seq, LSM_TYPE_SEEK));
        lsm_skl_iter_init(&it, m->sl);
        lsm_skl_iter_seek(&it, stack);
    } else {
        if (mem_lookup_target(&tgt, key, seq) != OM_OK) {
            *st = OM_ERR(OM_E_NOMEM);
            om_buf_free(&tgt);
            return true;
        }
        lsm_skl_iter_init(&it, m->sl);
        lsm_skl_iter_seek(&it, tgt.p);
        om_buf_free(&tgt);
    }
    if (!lsm_skl_iter_valid(&it))
        return false;
    const uint8_t *e = lsm_skl_iter_entry(&it);
    if (lsm_ikey_parse(mem_entry_ikey(e), &ik) != OM_OK || !om_slice_eq(ik.user_key, key))
        return false;
    found = true;
    if (ik.type == LSM_TYPE_DEL) {
        *st = OM_E_NOTFOUND;
    } else {
        *st = om_buf_set(value, mem_entry_value(e));
    }
    return found;
}

bool
lsm_mem_has_key(lsm_memtable *m, om_slice key)
{
    om_buf tgt = OM_BUF_INIT;
    lsm_skl_iter it;
    bool r = false;

    if (mem_lookup_target(&tgt, key, LSM_MAX_SEQ) != OM_OK) {
        om_buf_free(&tgt);
        return true; /* cannot tell: "may contain" */
    }
    lsm_skl_iter_init(&it, m->sl);
    lsm_skl_iter_seek(&it, tgt.p);
    if (lsm_skl_iter_valid(&it))
        r = om_slice_eq(lsm_ikey_user(mem_entry_ikey(lsm_skl_iter_entry(&it))), key);
    om_buf_free(&tgt);
    return r;
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
    om_buf tgt;
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

    if (mem_target(&mi->tgt, ikey) != OM_OK) {
        mi->st = OM_ERR(OM_E_NOMEM);
        mi->it.node = NULL;
        return;
    }
    lsm_skl_iter_seek(&mi->it, mi->tgt.p);
}

static void
mem_it_next(lsm_it *it)
{
    lsm_skl_iter_next(&((mem_it *)it)->it);
}

static om_slice
mem_it_key(const lsm_it *it)
{
    return mem_entry_ikey(lsm_skl_iter_entry(&((const mem_it *)it)->it));
}

static om_slice
mem_it_value(const lsm_it *it)
{
    return mem_entry_value(lsm_skl_iter_entry(&((const mem_it *)it)->it));
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
    om_buf_free(&mi->tgt);
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
