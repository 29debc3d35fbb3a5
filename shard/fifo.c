/*
 * shard/fifo.c -- shard_fifo (fifo.h): 64 KiB chunks, each allocation
 * preceded by a pointer to its chunk, a live count per chunk; a chunk whose
 * count drops to zero is reused in place (the newest), kept as a spare, or
 * freed (an oversized one).
 */
#include "shard/fifo.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct shard_fifo_chunk {
    shard_fifo_chunk *prev, *next;
    size_t cap;  /* bytes of data[] */
    size_t used; /* bytes of data[] handed out (allocation headers included) */
    size_t live; /* allocations not yet released */
    _Alignas(16) uint8_t data[];
};

/* Each allocation is preceded by its chunk pointer, padded to keep 16-byte alignment. */
#define FIFO_HDR 16u
#define FIFO_STD_CAP (SHARD_FIFO_CHUNK - sizeof(shard_fifo_chunk))

static void
fifo_unlink(shard_fifo *f, shard_fifo_chunk *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        f->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        f->tail = c->prev;
    c->prev = c->next = NULL;
}

void *
shard_fifo_alloc(shard_fifo *f, size_t n)
{
    size_t need = FIFO_HDR + ((n + 15u) & ~(size_t)15u);
    shard_fifo_chunk *c = f->tail;

    if (need < n)
        return NULL; /* overflow */
    if (c == NULL || c->cap - c->used < need) {
        if (need <= FIFO_STD_CAP && f->spare != NULL) {
            c = f->spare;
            f->spare = c->next;
            f->n_spare--;
        } else {
            size_t cap = need <= FIFO_STD_CAP ? FIFO_STD_CAP : need;
            c = malloc(sizeof(*c) + cap);
            if (c == NULL)
                return NULL;
            c->cap = cap;
        }
        c->used = c->live = 0;
        c->next = NULL;
        c->prev = f->tail;
        if (f->tail != NULL)
            f->tail->next = c;
        else
            f->head = c;
        f->tail = c;
    }
    uint8_t *p = c->data + c->used;
    memcpy(p, &c, sizeof(c));
    c->used += need;
    c->live++;
    return p + FIFO_HDR;
}

void
shard_fifo_release(shard_fifo *f, void *p)
{
    shard_fifo_chunk *c;

    memcpy(&c, (uint8_t *)p - FIFO_HDR, sizeof(c));
    if (--c->live > 0)
        return;
    if (c == f->tail && c->cap == FIFO_STD_CAP) {
        c->used = 0; /* the newest chunk: allocate from its start again */
        return;
    }
    fifo_unlink(f, c);
    if (c->cap == FIFO_STD_CAP && f->n_spare < SHARD_FIFO_SPARES) {
        c->next = f->spare;
        f->spare = c;
        f->n_spare++;
    } else {
        free(c);
    }
}

void
shard_fifo_fini(shard_fifo *f)
{
    for (int list = 0; list < 2; list++) {
        shard_fifo_chunk *c = list == 0 ? f->head : f->spare;
        while (c != NULL) {
            shard_fifo_chunk *next = c->next;
            free(c);
            c = next;
        }
    }
    f->head = f->tail = f->spare = NULL;
    f->n_spare = 0;
}
