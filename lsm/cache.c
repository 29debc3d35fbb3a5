/*
 * lsm/cache.c -- the sharded LRU cache (see cache.h for the contract).
 *
 * Design. Each shard has a mutex, a chained hash table that doubles when it
 * holds more entries than buckets, and two circular lists:
 *
 *   lru    entries in the cache that nobody pins, oldest first: eviction
 *          candidates;
 *   in_use entries in the cache that some handle pins.
 *
 * An entry's refs count its handles plus one while it is in the cache. When
 * refs drops to zero the entry is out of the cache and unpinned, and its
 * deleter runs -- always after the shard mutex is released, so deleters may
 * take other locks (the table cache's deleter closes a file).
 *
 * Invariants (with the shard mutex held): in_cache entries are in the hash
 * table and on exactly one list (lru iff refs == 1); usage is the sum of
 * their charges.
 */
#include "lsm/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"

/* List links; the first member of an entry, so a link pointer converts to its entry. */
typedef struct clink {
    struct clink *prev, *next;
} clink;

typedef struct centry {
    clink link;
    struct centry *next_hash;
    void *value;
    lsm_cache_deleter deleter;
    size_t charge;
    uint64_t hash;
    uint32_t refs;
    bool in_cache;
    size_t klen;
    uint8_t key[];
} centry;

typedef struct cache_shard {
    pthread_mutex_t mu;
    size_t capacity;
    size_t usage;
    size_t count;
    centry **table;
    size_t nbuckets; /* a power of two */
    clink lru;       /* list heads */
    clink in_use;
} __attribute__((aligned(64))) cache_shard;

struct lsm_cache {
    size_t capacity;
    int shard_bits;
    cache_shard *shards;
    atomic_uint_fast64_t next_id;
    atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
};

static void
list_remove(centry *e)
{
    e->link.next->prev = e->link.prev;
    e->link.prev->next = e->link.next;
}

/* Append before head: the newest position. */
static void
list_append(clink *head, centry *e)
{
    e->link.next = head;
    e->link.prev = head->prev;
    e->link.prev->next = &e->link;
    e->link.next->prev = &e->link;
}

static centry **
shard_find(cache_shard *s, om_slice key, uint64_t hash)
{
    centry **pp = &s->table[hash & (s->nbuckets - 1)];

    while (*pp != NULL &&
           ((*pp)->hash != hash || (*pp)->klen != key.n || memcmp((*pp)->key, key.p, key.n) != 0))
        pp = &(*pp)->next_hash;
    return pp;
}

/* Double the bucket array; on allocation failure keep the longer chains. */
static void
shard_grow(cache_shard *s)
{
    size_t nb = s->nbuckets * 2;
    centry **t = calloc(nb, sizeof(*t));

    if (t == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        centry *e = s->table[i];

        while (e != NULL) {
            centry *next = e->next_hash;
            centry **b = &t[e->hash & (nb - 1)];

            e->next_hash = *b;
            *b = e;
            e = next;
        }
    }
    free(s->table);
    s->table = t;
    s->nbuckets = nb;
}

/*
 * Drop one reference. Returns true if the entry must be deleted (by the
 * caller, after unlocking). Requires: s->mu held.
 */
static bool
shard_unref(cache_shard *s, centry *e)
{
    e->refs--;
    if (e->refs == 0)
        return true;
    if (e->in_cache && e->refs == 1) {
        /* No longer pinned: becomes an eviction candidate. */
        list_remove(e);
        list_append(&s->lru, e);
    }
    return false;
}

/* Take e out of the cache (hash table already unlinked by the caller). Requires: s->mu held. */
static bool
shard_finish_erase(cache_shard *s, centry *e)
{
    e->in_cache = false;
    list_remove(e);
    s->usage -= e->charge;
    s->count--;
    return shard_unref(s, e);
}

static void
entry_delete(centry *e)
{
    if (e->deleter != NULL)
        e->deleter(om_slice_make(e->key, e->klen), e->value);
    free(e);
}

static void
delete_chain(centry *e)
{
    while (e != NULL) {
        centry *next = e->next_hash;

        entry_delete(e);
        e = next;
    }
}

/* Evict unpinned entries while over capacity; they go onto *dead. Requires: s->mu held. */
static void
shard_evict(cache_shard *s, centry **dead)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        centry *old = (centry *)s->lru.next;
        centry **pp = shard_find(s, om_slice_make(old->key, old->klen), old->hash);

        /* Invariant: an lru entry is in the hash table. */
        *pp = old->next_hash;
        if (shard_finish_erase(s, old)) {
            old->next_hash = *dead;
            *dead = old;
        }
    }
}

om_status
lsm_cache_new(size_t capacity, int shard_bits, lsm_cache **out)
{
    lsm_cache *c;
    size_t n;

    if (shard_bits < -1 || shard_bits > 8)
        return OM_ERR(OM_E_INVALID);
    if (shard_bits == -1) {
        /* Each shard of a byte-sized cache should hold at least a few hundred blocks. */
        shard_bits = 4;
        while (shard_bits > 0 && (capacity >> shard_bits) < 256 * 1024)
            shard_bits--;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    n = (size_t)1 << shard_bits;
    c->shards = aligned_alloc(64, n * sizeof(cache_shard));
    if (c->shards == NULL) {
        free(c);
        return OM_ERR(OM_E_NOMEM);
    }
    c->capacity = capacity;
    c->shard_bits = shard_bits;
    atomic_init(&c->next_id, 1);
    atomic_init(&c->hits, 0);
    atomic_init(&c->misses, 0);
    for (size_t i = 0; i < n; i++) {
        cache_shard *s = &c->shards[i];

        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->mu, NULL);
        /* The shards' capacities add up to exactly `capacity` (usage never exceeds it). */
        s->capacity = capacity / n + (i < capacity % n ? 1 : 0);
        s->nbuckets = 16;
        s->table = calloc(s->nbuckets, sizeof(*s->table));
        s->lru.next = s->lru.prev = &s->lru;
        s->in_use.next = s->in_use.prev = &s->in_use;
        if (s->table == NULL) {
            for (size_t j = 0; j <= i; j++) {
                free(c->shards[j].table);
                pthread_mutex_destroy(&c->shards[j].mu);
            }
            free(c->shards);
            free(c);
            return OM_ERR(OM_E_NOMEM);
        }
    }
    *out = c;
    return OM_OK;
}

void
lsm_cache_free(lsm_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        cache_shard *s = &c->shards[i];
        centry *dead = NULL;

        /* Requires: nothing pinned, so every entry is on lru with refs == 1. */
        while (s->lru.next != &s->lru) {
            centry *e = (centry *)s->lru.next;

            list_remove(e);
            e->next_hash = dead;
            dead = e;
        }
        delete_chain(dead);
        free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    free(c->shards);
    free(c);
}

static cache_shard *
cache_shard_of(lsm_cache *c, uint64_t hash)
{
    return &c->shards[c->shard_bits == 0 ? 0 : hash >> (64 - c->shard_bits)];
}

om_status
lsm_cache_insert(lsm_cache *c, om_slice key, void *value, size_t charge, lsm_cache_deleter deleter,
                 lsm_cache_handle **out)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = cache_shard_of(c, hash);
    centry *e = malloc(sizeof(*e) + key.n);
    centry *dead = NULL;
    centry **pp;

    if (e == NULL)
        return OM_ERR(OM_E_NOMEM);
    e->value = value;
    e->deleter = deleter;
    e->charge = charge;
    e->hash = hash;
    e->refs = 2; /* the cache's and the returned handle's */
    e->in_cache = true;
    e->klen = key.n;
    if (key.n > 0)
        memcpy(e->key, key.p, key.n);

    pthread_mutex_lock(&s->mu);
    pp = shard_find(s, key, hash);
    if (*pp != NULL) {
        centry *old = *pp;

        e->next_hash = old->next_hash;
        *pp = e;
        if (shard_finish_erase(s, old)) {
            old->next_hash = dead;
            dead = old;
        }
    } else {
        e->next_hash = NULL;
        *pp = e;
    }
    list_append(&s->in_use, e);
    s->usage += charge;
    s->count++;
    if (s->count > s->nbuckets)
        shard_grow(s);
    shard_evict(s, &dead);
    pthread_mutex_unlock(&s->mu);

    delete_chain(dead);
    *out = (lsm_cache_handle *)e;
    return OM_OK;
}

/* One lookup's hit or miss, for the hit ratio. */
static void
cache_count(lsm_cache *c, bool hit)
{
    atomic_fetch_add_explicit(hit ? &c->hits : &c->misses, 1, memory_order_relaxed);
}

lsm_cache_handle *
lsm_cache_lookup(lsm_cache *c, om_slice key)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = cache_shard_of(c, hash);
    centry *e;

    pthread_mutex_lock(&s->mu);
    e = *shard_find(s, key, hash);
    if (e != NULL) {
        if (e->refs == 1) {
            /* First pin: move from lru to in_use. */
            list_remove(e);
            list_append(&s->in_use, e);
        }
        e->refs++;
    }
    pthread_mutex_unlock(&s->mu);
    cache_count(c, e != NULL);
    return (lsm_cache_handle *)e;
}

bool
lsm_cache_peek(lsm_cache *c, om_slice key, lsm_cache_peek_fn fn, void *arg)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = cache_shard_of(c, hash);
    centry *e;

    pthread_mutex_lock(&s->mu);
    e = *shard_find(s, key, hash);
    if (e != NULL) {
        if (e->refs == 1) {
            /* Unpinned: move to the young end of the LRU (pinned ones are in in_use). */
            list_remove(e);
            list_append(&s->lru, e);
        }
        fn(arg, e->value);
    }
    pthread_mutex_unlock(&s->mu);
    cache_count(c, e != NULL);
    return e != NULL;
}

void
lsm_cache_release(lsm_cache *c, lsm_cache_handle *h)
{
    centry *e = (centry *)h;
    cache_shard *s;
    bool dead;

    if (e == NULL)
        return;
    s = cache_shard_of(c, e->hash);
    pthread_mutex_lock(&s->mu);
    dead = shard_unref(s, e);
    pthread_mutex_unlock(&s->mu);
    if (dead)
        entry_delete(e);
}

void *
lsm_cache_value(const lsm_cache_handle *h)
{
    return ((const centry *)h)->value;
}

void
lsm_cache_erase(lsm_cache *c, om_slice key)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = cache_shard_of(c, hash);
    centry **pp, *e = NULL;
    bool dead = false;

    pthread_mutex_lock(&s->mu);
    pp = shard_find(s, key, hash);
    if (*pp != NULL) {
        e = *pp;
        *pp = e->next_hash;
        dead = shard_finish_erase(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    if (dead)
        entry_delete(e);
}

uint64_t
lsm_cache_new_id(lsm_cache *c)
{
    return atomic_fetch_add_explicit(&c->next_id, 1, memory_order_relaxed);
}

size_t
lsm_cache_usage(lsm_cache *c)
{
    size_t total = 0;

    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        total += c->shards[i].usage;
        pthread_mutex_unlock(&c->shards[i].mu);
    }
    return total;
}

size_t
lsm_cache_capacity(const lsm_cache *c)
{
    return c->capacity;
}

size_t
lsm_cache_count(lsm_cache *c)
{
    size_t total = 0;

    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        total += c->shards[i].count;
        pthread_mutex_unlock(&c->shards[i].mu);
    }
    return total;
}

uint64_t
lsm_cache_hits(const lsm_cache *c)
{
    return atomic_load_explicit(&c->hits, memory_order_relaxed);
}

uint64_t
lsm_cache_misses(const lsm_cache *c)
{
    return atomic_load_explicit(&c->misses, memory_order_relaxed);
}
