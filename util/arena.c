/*
 * util/arena.c -- block list bump allocator.
 */
#include "util/arena.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define ARENA_DEFAULT_BLOCK (64 * 1024)
#define ARENA_ALIGN 8

typedef struct arena_block {
    struct arena_block *next;
    alignas(max_align_t) unsigned char data[];
} arena_block;

struct om_arena {
    size_t block_size;
    unsigned char *cur; /* next free byte in the current block */
    size_t left;        /* bytes left in the current block */
    arena_block *blocks;
    atomic_size_t usage;
};

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

void
om_arena_free(om_arena *a)
{
    if (a == NULL)
        return;
    for (arena_block *b = a->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

static unsigned char *
arena_new_block(om_arena *a, size_t n)
{
    arena_block *b = malloc(sizeof(*b) + n);

    if (b == NULL)
        return NULL;
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
