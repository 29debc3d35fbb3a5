/*
 * lsm/memtable.c -- skiplist memtable in an arena, with a hash index for
 * point lookups.
 *
 * Each entry is one skiplist node in the key arena (layout in skiplist.h)
 * with its value in the value arena: both are copied in once, and searches
 * compare the user key and the trailer in place, without building a target
 * and without allocating.
 *
 * Hash index. Gets do not search the skiplist: a fixed array of buckets
 * (sized from the write buffer, about one per 256 bytes of it) chains, for
 * every user key in the memtable, exactly one node -- its newest version
 * (highest trailer). The chains go through the nodes' hnext fields. A get
 * hashes the key, finds that node and walks forward on level 0 (a key's
 * versions are adjacent there, newest first) to the first version visible
 * at its sequence: one or two cache misses instead of one per skiplist
 * level. Iterators and seeks still use the skiplist.
 *
 * The same chain walk gives the writer the key's newest node before it
 * inserts: a newer version goes right in front of it in the skiplist, so an
 * overwrite of a key already in the memtable is linked without a skiplist
 * search most of the time (lsm_skl_insert_before).
 *
 * Concurrency (one writer, lock-free readers): the writer links a node into
 * the skiplist first, then into its chain -- either at the bucket head (a new
 * key) or in place of the key's previous newest node (its hnext copied
 * first, then the link that pointed at the old node is switched with a
 * release store). A reader that still reaches the old node walks the
 * skiplist from there and only misses versions newer than any sequence it
 * may read: a write's sequence is published (last_seq) only after its
 * memtable insert, hash link included, is complete.
 */
#include "lsm/memtable.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/skiplist.h"
#include "util/arena.h"
#include "util/checksum.h"
#include "util/coding.h"

typedef _Atomic(lsm_skl_node *) mem_link;

struct lsm_memtable {
    atomic_int refs;
    atomic_uint_fast64_t entries;
    uint64_t log_number;
    om_arena *arena;  /* skiplist nodes: links and keys */
    om_arena *varena; /* values */
    lsm_skiplist *sl;
    mem_link *buckets;  /* hash index: newest node of each user key */
    size_t mask;        /* buckets - 1 (a power of two) */
    lsm_mem_pool *pool; /* NULL: not pooled */
};

/*
 * The memory of pooled memtables: arena blocks, and one spare bucket array
 * (all zero when it is parked here) of the size every memtable of this
 * write_buffer_size uses.
 */
struct lsm_mem_pool {
    atomic_int refs;
    size_t write_buffer_size;
    size_t block, nbuckets;
    om_arena_pool *blocks;
    _Atomic(mem_link *) spare;
};

/* Arena block and bucket count for a write buffer size. */
static void
mem_geometry(size_t write_buffer_size, size_t *block, size_t *nbuckets)
{
    size_t b = write_buffer_size / 16, nb = 64;

    if (b < 2048)
        b = 2048;
    if (b > 256 * 1024)
        b = 256 * 1024;
    while (nb < write_buffer_size / 128 && nb < ((size_t)1 << 21))
        nb <<= 1;
    *block = b;
    *nbuckets = nb;
}

/* calloc: all-zero bytes are NULL links on the platforms we build for. */
static mem_link *
mem_buckets_new(size_t nb)
{
    return calloc(nb, sizeof(mem_link));
}

/*
 * Fault every page of fresh zeroed memory in now, with one write each: a
 * bucket array fills at random, and a page first read (a get or an insert's
 * chain walk maps the zero page) and then written faults twice.
 */
static void
mem_touch(void *p, size_t n)
{
    for (size_t off = 0; off < n; off += 4096)
        ((volatile unsigned char *)p)[off] = 0;
}

om_status
lsm_mem_pool_new(size_t write_buffer_size, size_t max_bytes, lsm_mem_pool **out)
{
    lsm_mem_pool *p = calloc(1, sizeof(*p));
    om_status st;

    if (p == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&p->refs, 1);
    atomic_init(&p->spare, NULL);
    p->write_buffer_size = write_buffer_size;
    mem_geometry(write_buffer_size, &p->block, &p->nbuckets);
    st = om_arena_pool_new(p->block, max_bytes, &p->blocks);
    if (st != OM_OK) {
        free(p);
        return st;
    }
    *out = p;
    return OM_OK;
}

void
lsm_mem_pool_unref(lsm_mem_pool *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(atomic_load_explicit(&p->spare, memory_order_relaxed));
    om_arena_pool_unref(p->blocks);
    free(p);
}

size_t
lsm_mem_pool_fill(lsm_mem_pool *p, size_t target_bytes)
{
    return om_arena_pool_fill(p->blocks, target_bytes);
}

void
lsm_mem_pool_set_reserve(lsm_mem_pool *p, size_t reserve_bytes)
{
    om_arena_pool_set_reserve(p->blocks, reserve_bytes);
}

void
lsm_mem_pool_filler(lsm_mem_pool *p)
{
    /* A spare bucket array, faulted in, for the next memtable (the first switch's). */
    if (atomic_load_explicit(&p->spare, memory_order_relaxed) == NULL) {
        mem_link *b = mem_buckets_new(p->nbuckets), *none = NULL;

        if (b != NULL) {
            mem_touch(b, p->nbuckets * sizeof(*b));
            if (!atomic_compare_exchange_strong_explicit(&p->spare, &none, b, memory_order_release,
                                                         memory_order_relaxed))
                free(b);
        }
    }
    om_arena_pool_filler(p->blocks);
}

void
lsm_mem_pool_filler_stop(lsm_mem_pool *p)
{
    om_arena_pool_filler_stop(p->blocks);
}

size_t
lsm_mem_pool_trim(lsm_mem_pool *p)
{
    return om_arena_pool_trim(p->blocks);
}

void
lsm_mem_pool_stats(lsm_mem_pool *p, om_arena_pool_stats *out)
{
    om_arena_pool_stats_get(p->blocks, out);
}

static om_status
mem_new(uint64_t log_number, size_t write_buffer_size, lsm_mem_pool *pool, lsm_memtable **out)
{
    lsm_memtable *m = calloc(1, sizeof(*m));
    size_t block, nb;
    om_status st;

    mem_geometry(write_buffer_size, &block, &nb);
    if (m == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&m->refs, 1);
    atomic_init(&m->entries, 0);
    m->log_number = log_number;
    if (pool != NULL) {
        atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
        m->pool = pool;
        m->buckets = atomic_exchange_explicit(&pool->spare, NULL, memory_order_acquire);
    }
    if (m->buckets == NULL) {
        if ((m->buckets = mem_buckets_new(nb)) == NULL)
            OM_GOTO(OM_ERR(OM_E_NOMEM));
        if (pool != NULL)
            mem_touch(m->buckets, nb * sizeof(*m->buckets));
    }
    m->mask = nb - 1;
    if (pool != NULL) {
        OM_GOTO(om_arena_new_pooled(pool->blocks, &m->arena));
        OM_GOTO(om_arena_new_pooled(pool->blocks, &m->varena));
    } else {
        OM_GOTO(om_arena_new(block, &m->arena));
        OM_GOTO(om_arena_new(block, &m->varena));
    }
    OM_GOTO(lsm_skl_new(m->arena, m->varena, (uint64_t)(uintptr_t)m ^ log_number, &m->sl));
    *out = m;
    return OM_OK;
fail:
    om_arena_free(m->arena);
    om_arena_free(m->varena);
    free(m->buckets);
    lsm_mem_pool_unref(m->pool);
    free(m);
    return st;
}

om_status
lsm_mem_new(uint64_t log_number, size_t write_buffer_size, lsm_memtable **out)
{
    return mem_new(log_number, write_buffer_size, NULL, out);
}

om_status
lsm_mem_new_pooled(uint64_t log_number, lsm_mem_pool *pool, lsm_memtable **out)
{
    return mem_new(log_number, pool->write_buffer_size, pool, out);
}

void
lsm_mem_ref(lsm_memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void
lsm_mem_unref(lsm_memtable *m)
{
    mem_link *none = NULL;

    if (m == NULL)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    om_arena_free(m->arena);
    om_arena_free(m->varena);
    if (m->pool != NULL && atomic_load_explicit(&m->pool->spare, memory_order_relaxed) == NULL) {
        /* Zeroing here (usually the flush thread) beats faulting a fresh array in. */
        memset(m->buckets, 0, (m->mask + 1) * sizeof(*m->buckets));
        if (atomic_compare_exchange_strong_explicit(&m->pool->spare, &none, m->buckets,
                                                    memory_order_release, memory_order_relaxed))
            m->buckets = NULL;
    }
    free(m->buckets);
    lsm_mem_pool_unref(m->pool);
    free(m);
}

static inline bool
mem_key_is(const lsm_skl_node *n, om_slice key)
{
    return n->klen == key.n && (key.n == 0 || memcmp(n->key, key.p, key.n) == 0);
}

static inline mem_link *
mem_bucket(const lsm_memtable *m, om_slice key)
{
    return &m->buckets[om_hash64(key.p, key.n) & m->mask];
}

/* The newest node of key, or NULL. Any thread. */
static const lsm_skl_node *
mem_newest(const lsm_memtable *m, om_slice key)
{
    const lsm_skl_node *x = atomic_load_explicit(mem_bucket(m, key), memory_order_acquire);

    while (x != NULL && !mem_key_is(x, key))
        x = atomic_load_explicit(&((lsm_skl_node *)x)->hnext, memory_order_acquire);
    return x;
}

void
lsm_mem_prefetch(const lsm_memtable *m, om_slice key)
{
    __builtin_prefetch(mem_bucket(m, key), 1, 3);
}

/* Most bytes of a value lsm_mem_prefetch_find loads ahead (the rest streams in after). */
#define MEM_PREFETCH_VALUE 512

void
lsm_mem_prefetch_find(const lsm_memtable *m, const om_slice *keys, size_t n, bool *found)
{
    mem_link *b[32];
    const lsm_skl_node *x[32];
    size_t idx[32];

    while (n > 0) {
        size_t k = n < 32 ? n : 32, w = 0;

        /*
         * Three rounds, each starting every key's next load before waiting
         * for any: the buckets; then the chains' heads (waiting for the
         * buckets); then the values of the heads that are the keys' nodes
         * (waiting for the heads) -- a get reads its newest version's value
         * almost always -- or, for a head of another key, the next node of
         * the chain, which a get walks to.
         */
        for (size_t i = 0; i < k; i++) {
            if (found != NULL && found[i])
                continue;
            idx[w] = i;
            b[w] = mem_bucket(m, keys[i]);
            __builtin_prefetch(b[w], 0, 3);
            w++;
        }
        for (size_t j = 0; j < w; j++) {
            x[j] = atomic_load_explicit(b[j], memory_order_acquire);
            if (x[j] != NULL) {
                __builtin_prefetch(x[j], 0, 3);
                __builtin_prefetch((const char *)x[j] + 64, 0, 3);
            }
        }
        for (size_t j = 0; j < w; j++) {
            size_t i = idx[j];

            if (x[j] == NULL)
                continue;
            if (!mem_key_is(x[j], keys[i])) {
                const lsm_skl_node *nx =
                    atomic_load_explicit(&((lsm_skl_node *)x[j])->hnext, memory_order_acquire);
                if (nx != NULL)
                    __builtin_prefetch(nx, 0, 3);
                continue;
            }
            if (found != NULL)
                found[i] = true;
            size_t vn = x[j]->vlen < MEM_PREFETCH_VALUE ? x[j]->vlen : MEM_PREFETCH_VALUE;
            for (size_t off = 0; off < vn; off += 64)
                __builtin_prefetch(x[j]->value + off, 0, 3);
        }
        keys += k;
        if (found != NULL)
            found += k;
        n -= k;
    }
}

void
lsm_mem_prefetch_gets(const lsm_memtable *m, const om_slice *keys, size_t n)
{
    mem_link *b[32];

    while (n > 0) {
        size_t k = n < 32 ? n : 32;

        /* All buckets first, so that their misses overlap; then the chains' heads. */
        for (size_t i = 0; i < k; i++) {
            b[i] = mem_bucket(m, keys[i]);
            __builtin_prefetch(b[i], 0, 3);
        }
        for (size_t i = 0; i < k; i++) {
            const lsm_skl_node *x = atomic_load_explicit(b[i], memory_order_acquire);

            if (x != NULL) {
                __builtin_prefetch(x, 0, 3);
                __builtin_prefetch((const char *)x + 64, 0, 3);
            }
        }
        keys += k;
        n -= k;
    }
}

om_status
lsm_mem_add(lsm_memtable *m, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    uint64_t trailer = lsm_trailer_pack(seq, type);
    mem_link *head = mem_bucket(m, key), *link = head;
    lsm_skl_node *x, *n;

    /* The key's newest node, and the link that points at it. */
    for (x = atomic_load_explicit(link, memory_order_relaxed); x != NULL && !mem_key_is(x, key);
         x = atomic_load_explicit(link, memory_order_relaxed))
        link = &x->hnext;
    if (x != NULL && lsm_skl_node_trailer(x) > trailer) {
        /* An older version arriving late: x stays the newest, n follows it on level 0. */
        OM_TRY(lsm_skl_insert(m->sl, key, trailer, value, &n));
    } else {
        /*
         * A newer version sorts immediately before x (x is the first of the
         * key's versions): the skiplist can link it there without a search.
         */
        OM_TRY(lsm_skl_insert_before(m->sl, key, trailer, value, x, &n));
        /* Then n replaces x in the chain (or heads the bucket for a new key). */
        atomic_store_explicit(&n->hnext,
                              x != NULL ? atomic_load_explicit(&x->hnext, memory_order_relaxed)
                                        : atomic_load_explicit(head, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(x != NULL ? link : head, n, memory_order_release);
    }
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    return OM_OK;
}

void
lsm_mem_warm(const lsm_memtable *m, const om_slice *keys, size_t n)
{
    lsm_skl_warm(m->sl, keys, n);
}

void
lsm_mem_prefetch_values(const lsm_memtable *m, const om_slice *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const lsm_skl_node *x = mem_newest(m, keys[i]);

        if (x != NULL)
            __builtin_prefetch(x->value, 0, 3);
    }
}

bool
lsm_mem_find(lsm_memtable *m, om_slice key, uint64_t seq, om_slice *value, om_status *st)
{
    const uint64_t target = lsm_trailer_pack(seq, LSM_TYPE_SEEK);
    const lsm_skl_node *x = mem_newest(m, key);
    uint64_t t = 0;

    /* The first version at or below target: the skiplist seek's answer. */
    while (x != NULL && mem_key_is(x, key) && (t = lsm_skl_node_trailer(x)) > target)
        x = lsm_skl_node_next(x);
    if (x == NULL || !mem_key_is(x, key))
        return false;
    if ((t & 0xff) == LSM_TYPE_DEL) {
        *st = OM_E_NOTFOUND;
    } else {
        *st = OM_OK;
        *value = lsm_skl_node_value(x);
    }
    return true;
}

bool
lsm_mem_has_key(lsm_memtable *m, om_slice key)
{
    return mem_newest(m, key) != NULL;
}

size_t
lsm_mem_usage(const lsm_memtable *m)
{
    return om_arena_usage(m->arena) + om_arena_usage(m->varena) +
           (m->mask + 1) * sizeof(*m->buckets);
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

static const lsm_it_ops mem_it_ops = LSM_IT_OPS(mem_it, mem_it_free);

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
