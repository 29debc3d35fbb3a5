/*
 * util/arena.c -- block list bump allocator, and the pool that recycles
 * standard-size blocks between arenas (see arena.h).
 *
 * Every block records its size, so that om_arena_free can tell the
 * standard blocks (which a pooled arena gives back) from the blocks of their
 * own that large requests got (always freed). The pool is a LIFO free list
 * under a mutex: the most recently freed block is handed out first, which is
 * the one most likely still in the CPU caches. The lock is taken once per
 * block taken (one per block_size bytes of allocations) and once per arena
 * freed, never per allocation.
 */
#include "util/arena.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "util/clock.h"

#define ARENA_DEFAULT_BLOCK (64 * 1024)
#define ARENA_ALIGN 8
#define ARENA_PAGE 4096 /* stride of om_arena_pool_fill's touches */

typedef struct arena_block {
    struct arena_block *next;
    size_t size; /* bytes of data */
    alignas(max_align_t) unsigned char data[];
} arena_block;

struct om_arena_pool {
    atomic_int refs;
    size_t block_size;
    size_t max_blocks;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* wakes the filler */
    size_t reserve_blocks; /* under mu: the filler's target (0: none) */
    bool stop;             /* under mu: om_arena_pool_filler_stop was called */
    arena_block *free;     /* under mu */
    size_t nfree;          /* under mu */
    uint64_t reused, allocated, returned, dropped, filled, trimmed; /* under mu */
};

struct om_arena {
    size_t block_size;
    unsigned char *cur; /* next free byte in the current block */
    size_t left;        /* bytes left in the current block */
    arena_block *blocks;
    om_arena_pool *pool; /* NULL: not pooled */
    atomic_size_t usage;
};

/* ---- pool ---- */

om_status
om_arena_pool_new(size_t block_size, size_t max_bytes, om_arena_pool **out)
{
    om_arena_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&p->refs, 1);
    p->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
    p->block_size = (p->block_size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    p->max_blocks = max_bytes / p->block_size;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return OM_ERR(OM_E_NOMEM);
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = p;
    return OM_OK;
}

static void
pool_ref(om_arena_pool *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void
om_arena_pool_unref(om_arena_pool *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (arena_block *b = p->free, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

size_t
om_arena_pool_block_size(const om_arena_pool *p)
{
    return p->block_size;
}

/* A free block from the pool, or NULL when it is empty. */
static arena_block *
pool_take(om_arena_pool *p)
{
    arena_block *b;

    pthread_mutex_lock(&p->mu);
    b = p->free;
    if (b != NULL) {
        p->free = b->next;
        p->nfree--;
        p->reused++;
    } else {
        p->allocated++;
    }
    /* Below half the reserve: the filler (if one runs) tops it up. Cheap without waiters. */
    if (p->reserve_blocks > 0 && p->nfree < p->reserve_blocks / 2 + 1)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return b;
}

/*
 * Give the chain of standard blocks [first .. last] (n of them) back; the
 * ones over the cap are returned through *excess for the caller to free
 * outside the lock.
 */
static arena_block *
pool_give(om_arena_pool *p, arena_block *first, arena_block *last, size_t n, uint64_t *counter)
{
    arena_block *excess = NULL;

    pthread_mutex_lock(&p->mu);
    while (n > 0 && p->nfree + n > p->max_blocks) {
        arena_block *b = first;

        first = first->next;
        b->next = excess;
        excess = b;
        n--;
        p->dropped++;
    }
    if (n > 0) {
        last->next = p->free;
        p->free = first;
        p->nfree += n;
        *counter += n;
    }
    pthread_mutex_unlock(&p->mu);
    return excess;
}

size_t
om_arena_pool_fill(om_arena_pool *p, size_t target_bytes)
{
    size_t want, added = 0;

    if (target_bytes / p->block_size < p->max_blocks)
        want = (target_bytes + p->block_size - 1) / p->block_size;
    else
        want = p->max_blocks;
    for (;;) {
        arena_block *b, *excess;

        pthread_mutex_lock(&p->mu);
        if (p->nfree >= want || p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        pthread_mutex_unlock(&p->mu);
        b = malloc(sizeof(*b) + p->block_size);
        if (b == NULL)
            break;
        b->size = p->block_size;
        b->next = NULL;
        /* The first write to each page is the fault this moves off the caller's path. */
        for (size_t off = 0; off < p->block_size; off += ARENA_PAGE)
            ((volatile unsigned char *)b->data)[off] = 0;
        excess = pool_give(p, b, b, 1, &p->filled);
        if (excess != NULL) { /* others filled it meanwhile */
            free(excess);
            break;
        }
        added++;
    }
    return added;
}

void
om_arena_pool_set_reserve(om_arena_pool *p, size_t reserve_bytes)
{
    pthread_mutex_lock(&p->mu);
    p->reserve_blocks = reserve_bytes / p->block_size;
    if (p->reserve_blocks > p->max_blocks)
        p->reserve_blocks = p->max_blocks;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

size_t
om_arena_pool_trim(om_arena_pool *p)
{
    arena_block *excess = NULL;
    size_t n = 0;

    pthread_mutex_lock(&p->mu);
    while (p->nfree > p->reserve_blocks) {
        arena_block *b = p->free;

        p->free = b->next;
        p->nfree--;
        b->next = excess;
        excess = b;
        n++;
    }
    p->trimmed += n;
    pthread_mutex_unlock(&p->mu);
    while (excess != NULL) {
        arena_block *b = excess;

        excess = b->next;
        free(b);
    }
#ifdef __GLIBC__
    /*
     * Blocks above the mmap threshold were mapped and are unmapped by free;
     * but glibc raises that threshold to the size of a mapped chunk freed, so
     * most blocks come from its heaps, whose free chunks it keeps unless
     * asked: hand their pages back.
     */
    if (n > 0)
        malloc_trim(0);
#endif
    return n;
}

void
om_arena_pool_filler(om_arena_pool *p)
{
    size_t filled_to = 0; /* the reserve the last fill aimed at */

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        size_t reserve = p->reserve_blocks;

        /* A first fill (or a larger reserve) right away, then refills from half. */
        if (reserve > 0 && (filled_to < reserve || p->nfree < reserve / 2 + 1)) {
            pthread_mutex_unlock(&p->mu);
            om_arena_pool_fill(p, reserve * p->block_size);
            pthread_mutex_lock(&p->mu);
            filled_to = reserve;
            if (p->nfree < reserve / 2 + 1 && p->nfree < p->max_blocks && !p->stop) {
                /* Out of memory, or taken as fast as filled: do not spin. */
                om_clock_cond_wait_ns(&p->cv, &p->mu, 10u * 1000 * 1000);
            }
            continue;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

void
om_arena_pool_filler_stop(om_arena_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void
om_arena_pool_stats_get(om_arena_pool *p, om_arena_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    out->reused = p->reused;
    out->allocated = p->allocated;
    out->returned = p->returned;
    out->dropped = p->dropped;
    out->filled = p->filled;
    out->trimmed = p->trimmed;
    out->free_blocks = p->nfree;
    out->free_bytes = p->nfree * p->block_size;
    pthread_mutex_unlock(&p->mu);
}

/* ---- arena ---- */

om_status
om_arena_new(size_t block_size, om_arena **out)
{
    om_arena *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return OM_ERR(OM_E_NOMEM);
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
    atomic_init(&a->usage, sizeof(*a));
    *out = a;
    return OM_OK;
}

om_status
om_arena_new_pooled(om_arena_pool *pool, om_arena **out)
{
    OM_TRY(om_arena_new(pool->block_size, out));
    pool_ref(pool);
    (*out)->pool = pool;
    return OM_OK;
}

void
om_arena_free(om_arena *a)
{
    arena_block *first = NULL, *last = NULL;
    size_t n = 0;

    if (a == NULL)
        return;
    for (arena_block *b = a->blocks, *next; b != NULL; b = next) {
        next = b->next;
        if (a->pool != NULL && b->size == a->pool->block_size) {
            b->next = first;
            first = b;
            if (last == NULL)
                last = b;
            n++;
        } else {
            free(b);
        }
    }
    if (n > 0) {
        arena_block *excess = pool_give(a->pool, first, last, n, &a->pool->returned);

        for (arena_block *b = excess, *next; b != NULL; b = next) {
            next = b->next;
            free(b);
        }
    }
    om_arena_pool_unref(a->pool);
    free(a);
}

static unsigned char *
arena_new_block(om_arena *a, size_t n)
{
    arena_block *b = NULL;

    if (a->pool != NULL && n == a->pool->block_size)
        b = pool_take(a->pool);
    if (b == NULL) {
        b = malloc(sizeof(*b) + n);
        if (b == NULL)
            return NULL;
        b->size = n;
    }
    b->next = a->blocks;
    a->blocks = b;
    atomic_fetch_add_explicit(&a->usage, sizeof(*b) + n, memory_order_relaxed);
    return b->data;
}

void *
om_arena_alloc(om_arena *a, size_t n)
{
    unsigned char *p;

    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n <= a->left) {
        p = a->cur;
        a->cur += n;
        a->left -= n;
        return p;
    }
    if (n > a->block_size / 4) /* big: own block, keep the current one */
        return arena_new_block(a, n);
    p = arena_new_block(a, a->block_size);
    if (p == NULL)
        return NULL;
    a->cur = p + n;
    a->left = a->block_size - n;
    return p;
}

size_t
om_arena_usage(const om_arena *a)
{
    return atomic_load_explicit(&a->usage, memory_order_relaxed);
}
