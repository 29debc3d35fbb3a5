/*
 * lsm/cache.c -- the sharded second-chance (CLOCK) cache (see cache.h for
 * the contract).
 *
 * Design. Each shard has a mutex, an open-addressing hash table and two
 * circular lists. The table is an array of {hash, entry} slots probed
 * linearly from hash & mask; it doubles before it gets more than half full,
 * so there is always an empty slot to end a probe. A probe compares the
 * 64-bit hashes stored in the slots (four to a cache line) and reads an
 * entry only when its hash matches, so a lookup usually touches one slot
 * line and the entry's header and key (one or two adjacent lines). Deleting
 * a slot shifts the rest of its cluster back (no tombstones).
 *
 * An entry is one allocation: a header with what a lookup and the eviction
 * sweep read (list links, value, key length, refs, flags), the key, then a
 * cold part only insert, eviction and deletion read (deleter, charge, hash).
 * (Measured: 64-byte aligned entries cost more in glibc's aligned_alloc
 * than they saved; links in the header make a sweep step touch one entry.)
 *
 * Lists:
 *   lru    entries in the cache, oldest insert or second chance first: the
 *          eviction candidates, in sweep order. Pinned entries may be on it.
 *   in_use entries in the cache that the eviction sweep found pinned
 *          ("parked"); they go back to the young end of lru when unpinned.
 *
 * Eviction rule (second chance). A hit (lookup or peek) sets the entry's
 * referenced bit and writes nothing else: no list relinking, so a hit
 * touches no other entry's cache line. When a shard is over capacity, the
 * sweep takes the oldest entry on lru: pinned -> parked on in_use;
 * referenced -> the bit is cleared and it moves to the young end (another
 * round); otherwise it is evicted. New entries start unreferenced, so a scan
 * of keys read once evicts its own entries before older ones that were hit.
 *
 * An entry's refs count its handles plus one while it is in the cache. When
 * refs drops to zero the entry is out of the cache and unpinned, and its
 * deleter runs -- always after the shard mutex is released, so deleters may
 * take other locks (the table cache's deleter closes a file).
 *
 * Admission (lsm_cache_enable_admission; the block and row caches turn it
 * on). With keys read uniformly from more data than the cache holds, nearly
 * every lookup misses and every miss inserted an entry and evicted another:
 * a malloc, a table insert, a sweep and a deleter per read, for entries
 * that are evicted before they are read again. So once a shard is nearly
 * full (usage >= 7/8 of its capacity, kept in an atomic flag), a missed key
 * is admitted only on its second miss within about two cache turnovers: a
 * "ghost" array of recent missed hashes (direct-mapped, twice the entries
 * the cache holds, relaxed atomics, no lock) remembers the first.
 * Frequently read keys (a Zipfian head, a hot set) miss twice quickly and
 * go in; a uniform stream mostly does not, and the cache keeps what it
 * holds. Not full: everything goes in, so a cache warms up as before.
 * The ghost slot is a memory miss of its own on a large cache, so lookup
 * and peek start loading it before they probe (while admission applies):
 * the two misses then overlap instead of following each other.
 *
 * Invariants (with the shard mutex held): in_cache entries are in the table
 * and on exactly one list (in_use iff parked; parked implies refs > 1);
 * usage is the sum of their charges; at least one slot is empty (count <=
 * slots / 2 unless growing the table failed).
 */
#include "lsm/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/checksum.h"

#define LINE 64

/* List links; the first member of an entry, so a link pointer converts to it. */
typedef struct clink {
    struct clink *prev, *next;
} clink;

/* The header of an entry: what a lookup or the eviction sweep reads; the key follows it. */
typedef struct centry {
    clink link; /* first: a link pointer converts to its entry */
    void *value;
    uint32_t klen;
    uint32_t refs;
    uint8_t referenced; /* hit since the sweep last passed it */
    uint8_t in_cache;
    uint8_t parked; /* on in_use (pinned when the sweep came by) */
    uint8_t shard;  /* index of its shard */
    uint8_t key[];
} centry;

/* The cold part: what only insert, eviction and deletion use; after the key, 8-aligned. */
typedef struct ccold {
    lsm_cache_deleter deleter;
    size_t charge;
    uint64_t hash;
} ccold;

typedef struct cslot {
    uint64_t hash;
    centry *e; /* NULL: empty */
} cslot;

typedef struct cache_shard {
    pthread_mutex_t mu;
    size_t capacity;
    size_t usage;
    size_t count;
    cslot *slots;
    size_t mask; /* number of slots - 1 (a power of two minus one) */
    clink lru;   /* list heads */
    clink in_use;
    /* Lookup counters: written only with mu held (a plain load and store, no
     * locked read-modify-write), read without it by lsm_cache_hits/misses. */
    atomic_uint_fast64_t hits, misses;
    /* Copies of slots and mask for lsm_cache_prefetch, which reads them unlocked. */
    _Atomic(cslot *) pf_slots;
    atomic_size_t pf_mask;
    /* Usage is at 7/8 of capacity or more (admission applies); written with mu held. */
    atomic_bool full;
} __attribute__((aligned(LINE))) cache_shard;

struct lsm_cache {
    size_t capacity;
    int shard_bits;
    cache_shard *shards;
    atomic_uint_fast64_t next_id;
    /* Admission (lsm_cache_enable_admission): key hashes that missed lately, or NULL. */
    _Atomic uint64_t *ghost;
    size_t ghost_mask;
    atomic_uint_fast64_t admitted, rejected;
};

static size_t
cold_offset(size_t klen)
{
    return (offsetof(centry, key) + klen + 7) & ~(size_t)7;
}

static ccold *
cold_of(const centry *e)
{
    return (ccold *)((char *)e + cold_offset(e->klen));
}

static centry *
entry_of_link(clink *l)
{
    return (centry *)l;
}

static void
list_remove(clink *l)
{
    l->next->prev = l->prev;
    l->prev->next = l->next;
}

/* Append before head: the youngest position. */
static void
list_append(clink *head, clink *l)
{
    l->next = head;
    l->prev = head->prev;
    l->prev->next = l;
    l->next->prev = l;
}

/* The slot holding key, or the empty slot that ends its probe sequence. Requires: s->mu held. */
static size_t
shard_find(const cache_shard *s, om_slice key, uint64_t hash)
{
    size_t i = hash & s->mask;

    for (;;) {
        const cslot *sl = &s->slots[i];

        if (sl->e == NULL)
            return i;
        if (sl->hash == hash && sl->e->klen == key.n && memcmp(sl->e->key, key.p, key.n) == 0)
            return i;
        i = (i + 1) & s->mask;
    }
}

/* The slot of an entry known to be in the table. Requires: s->mu held. */
static size_t
shard_slot_of(const cache_shard *s, const centry *e, uint64_t hash)
{
    size_t i = hash & s->mask;

    while (s->slots[i].e != e)
        i = (i + 1) & s->mask;
    return i;
}

/* Empty slot i, shifting later members of its cluster back (linear probing). */
static void
shard_clear_slot(cache_shard *s, size_t i)
{
    size_t j = i;

    for (;;) {
        size_t home;

        j = (j + 1) & s->mask;
        if (s->slots[j].e == NULL)
            break;
        home = s->slots[j].hash & s->mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].e = NULL;
    s->slots[i].hash = 0;
}

static void
shard_set_prefetch(cache_shard *s)
{
    atomic_store_explicit(&s->pf_slots, s->slots, memory_order_relaxed);
    atomic_store_explicit(&s->pf_mask, s->mask, memory_order_relaxed);
}

/* Double the slot array. Returns false (table unchanged) when out of memory. */
static bool
shard_grow(cache_shard *s)
{
    size_t n = (s->mask + 1) * 2, mask = n - 1;
    cslot *t = calloc(n, sizeof(*t));

    if (t == NULL)
        return false;
    for (size_t i = 0; i <= s->mask; i++) {
        size_t j;

        if (s->slots[i].e == NULL)
            continue;
        j = s->slots[i].hash & mask;
        while (t[j].e != NULL)
            j = (j + 1) & mask;
        t[j] = s->slots[i];
    }
    /* A concurrent lsm_cache_prefetch may still read the old array's address: harmless. */
    free(s->slots);
    s->slots = t;
    s->mask = mask;
    shard_set_prefetch(s);
    return true;
}

/* Put e (out of every list) at the young end of lru. */
static void
shard_to_lru(cache_shard *s, centry *e)
{
    e->parked = 0;
    list_append(&s->lru, &e->link);
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
    if (e->refs == 1 && e->parked) {
        /* Unpinned after the sweep parked it: an eviction candidate again. */
        list_remove(&e->link);
        shard_to_lru(s, e);
    }
    return false;
}

/* Take e out of the cache (its slot already cleared by the caller). Requires: s->mu held. */
static bool
shard_finish_erase(cache_shard *s, centry *e)
{
    ccold *k = cold_of(e);

    e->in_cache = 0;
    e->parked = 0;
    list_remove(&e->link);
    s->usage -= k->charge;
    s->count--;
    return shard_unref(s, e);
}

/* Push e on a singly linked chain of entries to delete (through link.next). */
static void
dead_push(clink **dead, centry *e)
{
    e->link.next = *dead;
    *dead = &e->link;
}

static void
entry_delete(centry *e)
{
    ccold *k = cold_of(e);

    if (k->deleter != NULL)
        k->deleter(om_slice_make(e->key, e->klen), e->value);
    free(e);
}

static void
delete_chain(clink *l)
{
    while (l != NULL) {
        clink *next = l->next;

        entry_delete(entry_of_link(l));
        l = next;
    }
}

/* Remove an unpinned in-cache entry; onto *dead if that was its last reference. */
static void
shard_drop(cache_shard *s, centry *e, clink **dead)
{
    ccold *k = cold_of(e);

    shard_clear_slot(s, shard_slot_of(s, e, k->hash));
    if (shard_finish_erase(s, e))
        dead_push(dead, e);
}

/* Note whether the shard is (nearly) full, for lsm_cache_admit. Requires: s->mu held. */
static void
shard_note_usage(cache_shard *s)
{
    bool full = s->usage >= s->capacity - s->capacity / 8;

    if (atomic_load_explicit(&s->full, memory_order_relaxed) != full)
        atomic_store_explicit(&s->full, full, memory_order_relaxed);
}

/* The second-chance sweep while over capacity (see the top). Requires: s->mu held. */
static void
shard_evict(cache_shard *s, clink **dead)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        clink *l = s->lru.next;
        centry *e = entry_of_link(l);

        if (e->refs > 1) {
            e->parked = 1;
            list_remove(l);
            list_append(&s->in_use, l);
        } else if (e->referenced) {
            e->referenced = 0;
            list_remove(l);
            list_append(&s->lru, l);
        } else {
            shard_drop(s, e, dead);
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
    c->shards = aligned_alloc(LINE, n * sizeof(cache_shard));
    if (c->shards == NULL) {
        free(c);
        return OM_ERR(OM_E_NOMEM);
    }
    c->capacity = capacity;
    c->shard_bits = shard_bits;
    atomic_init(&c->next_id, 1);
    for (size_t i = 0; i < n; i++) {
        cache_shard *s = &c->shards[i];

        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->mu, NULL);
        /* The shards' capacities add up to exactly `capacity` (usage never exceeds it). */
        s->capacity = capacity / n + (i < capacity % n ? 1 : 0);
        s->mask = 16 - 1;
        s->slots = calloc(s->mask + 1, sizeof(*s->slots));
        s->lru.next = s->lru.prev = &s->lru;
        s->in_use.next = s->in_use.prev = &s->in_use;
        atomic_init(&s->pf_slots, s->slots);
        atomic_init(&s->pf_mask, s->mask);
        atomic_init(&s->hits, 0);
        atomic_init(&s->misses, 0);
        atomic_init(&s->full, false);
        if (s->slots == NULL) {
            for (size_t j = 0; j <= i; j++) {
                free(c->shards[j].slots);
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

/* Move every entry of list head onto *dead (requires: none pinned). */
static void
list_drain(clink *head, clink **dead)
{
    while (head->next != head) {
        clink *l = head->next;

        list_remove(l);
        l->next = *dead;
        *dead = l;
    }
}

void
lsm_cache_free(lsm_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        cache_shard *s = &c->shards[i];
        clink *dead = NULL;

        /* Requires: nothing pinned (so in_use is empty; drained for safety all the same). */
        list_drain(&s->lru, &dead);
        list_drain(&s->in_use, &dead);
        delete_chain(dead);
        free(s->slots);
        pthread_mutex_destroy(&s->mu);
    }
    free(c->shards);
    free((void *)c->ghost);
    free(c);
}

static size_t
cache_shard_index(const lsm_cache *c, uint64_t hash)
{
    return c->shard_bits == 0 ? 0 : (size_t)(hash >> (64 - c->shard_bits));
}

om_status
lsm_cache_insert(lsm_cache *c, om_slice key, void *value, size_t charge, lsm_cache_deleter deleter,
                 lsm_cache_handle **out)
{
    uint64_t hash = om_hash64(key.p, key.n);
    size_t si = cache_shard_index(c, hash);
    cache_shard *s = &c->shards[si];
    centry *e = malloc(cold_offset(key.n) + sizeof(ccold));
    ccold *k;
    clink *dead = NULL;
    size_t i;

    if (e == NULL)
        return OM_ERR(OM_E_NOMEM);
    e->value = value;
    e->klen = (uint32_t)key.n;
    e->refs = 2; /* the cache's and the returned handle's */
    e->referenced = 0;
    e->in_cache = 1;
    e->parked = 0;
    e->shard = (uint8_t)si;
    if (key.n > 0)
        memcpy(e->key, key.p, key.n);
    k = cold_of(e);
    k->deleter = deleter;
    k->charge = charge;
    k->hash = hash;

    pthread_mutex_lock(&s->mu);
    /* Keep the table at most half full; past that only if growing failed and a slot is left. */
    if ((s->count + 1) * 2 > s->mask + 1 && !shard_grow(s) && s->count + 2 > s->mask + 1) {
        pthread_mutex_unlock(&s->mu);
        free(e);
        return OM_ERR(OM_E_NOMEM);
    }
    i = shard_find(s, key, hash);
    if (s->slots[i].e != NULL) {
        centry *old = s->slots[i].e;

        s->slots[i].e = e;
        if (shard_finish_erase(s, old))
            dead_push(&dead, old);
    } else {
        s->slots[i].hash = hash;
        s->slots[i].e = e;
    }
    list_append(&s->lru, &e->link);
    s->usage += charge;
    s->count++;
    shard_evict(s, &dead);
    shard_note_usage(s);
    pthread_mutex_unlock(&s->mu);

    delete_chain(dead);
    *out = (lsm_cache_handle *)e;
    return OM_OK;
}

/* One lookup's hit or miss, for the hit ratio. */
static void
shard_count(cache_shard *s, bool hit)
{
    atomic_uint_fast64_t *n = hit ? &s->hits : &s->misses;

    /* Requires: s->mu held, so no other writer: no need for an atomic increment. */
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Mark a hit entry for a second chance; stores only when the bit changes. */
static void
entry_touch(centry *e)
{
    if (!e->referenced)
        e->referenced = 1;
}

/* The ghost slot of a key's hash (admission; requires c->ghost). */
static _Atomic uint64_t *
ghost_slot(const lsm_cache *c, uint64_t hash)
{
    /* Slot from bits the shard index does not use. */
    return &c->ghost[(size_t)(hash >> 8) & c->ghost_mask];
}

/*
 * Start loading the ghost slot a miss of hash will ask lsm_cache_admit
 * about, so that its (likely) memory miss overlaps the slot probe's
 * instead of following it. Only when admission applies to the shard.
 */
static inline void
ghost_prefetch(const lsm_cache *c, const cache_shard *s, uint64_t hash)
{
    if (c->ghost != NULL && atomic_load_explicit(&s->full, memory_order_relaxed))
        __builtin_prefetch(ghost_slot(c, hash), 1, 3);
}

lsm_cache_handle *
lsm_cache_lookup(lsm_cache *c, om_slice key)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = &c->shards[cache_shard_index(c, hash)];
    centry *e;

    ghost_prefetch(c, s, hash);
    pthread_mutex_lock(&s->mu);
    e = s->slots[shard_find(s, key, hash)].e;
    if (e != NULL) {
        e->refs++;
        entry_touch(e);
    }
    shard_count(s, e != NULL);
    pthread_mutex_unlock(&s->mu);
    return (lsm_cache_handle *)e;
}

bool
lsm_cache_peek(lsm_cache *c, om_slice key, lsm_cache_peek_fn fn, void *arg)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = &c->shards[cache_shard_index(c, hash)];
    centry *e;

    ghost_prefetch(c, s, hash);
    pthread_mutex_lock(&s->mu);
    e = s->slots[shard_find(s, key, hash)].e;
    if (e != NULL) {
        entry_touch(e);
        fn(arg, e->value);
    }
    shard_count(s, e != NULL);
    pthread_mutex_unlock(&s->mu);
    return e != NULL;
}

void
lsm_cache_prefetch(const lsm_cache *c, om_slice key)
{
    uint64_t hash = om_hash64(key.p, key.n);
    cache_shard *s = &c->shards[cache_shard_index(c, hash)];
    cslot *slots = atomic_load_explicit(&s->pf_slots, memory_order_relaxed);
    size_t mask = atomic_load_explicit(&s->pf_mask, memory_order_relaxed);

    /* The pair may be torn by a concurrent grow: a prefetch of a stale address is harmless. */
    __builtin_prefetch(&slots[hash & mask], 0, 3);
}

/* Bytes of an entry's value lsm_cache_prefetch_entries loads (the rest streams in after). */
#define CACHE_PREFETCH_VALUE 384

void
lsm_cache_prefetch_entries(lsm_cache *c, const om_slice *keys, size_t n)
{
    uint64_t h[LSM_CACHE_PREFETCH_MAX];
    cache_shard *sh[LSM_CACHE_PREFETCH_MAX];

    if (n > LSM_CACHE_PREFETCH_MAX)
        n = LSM_CACHE_PREFETCH_MAX;
    /* Round 1: the slot lines, unlocked (as lsm_cache_prefetch). */
    for (size_t i = 0; i < n; i++) {
        h[i] = om_hash64(keys[i].p, keys[i].n);
        sh[i] = &c->shards[cache_shard_index(c, h[i])];
        cslot *slots = atomic_load_explicit(&sh[i]->pf_slots, memory_order_relaxed);
        size_t mask = atomic_load_explicit(&sh[i]->pf_mask, memory_order_relaxed);
        __builtin_prefetch(&slots[h[i] & mask], 0, 3);
        ghost_prefetch(c, sh[i], h[i]);
    }
    /*
     * Round 2, under each shard's lock (entries may be evicted and freed by
     * another thread): the entries whose slot hash matches -- compared
     * without reading the entry, which is what is being loaded.
     */
    for (size_t i = 0; i < n; i++) {
        cache_shard *s = sh[i];

        pthread_mutex_lock(&s->mu);
        for (size_t j = h[i] & s->mask; s->slots[j].e != NULL; j = (j + 1) & s->mask) {
            if (s->slots[j].hash == h[i]) {
                __builtin_prefetch(s->slots[j].e, 0, 3);
                __builtin_prefetch((const char *)s->slots[j].e + LINE, 0, 3);
                break;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* Round 3: the values of the entries that are the keys'. */
    for (size_t i = 0; i < n; i++) {
        cache_shard *s = sh[i];
        centry *e;

        pthread_mutex_lock(&s->mu);
        e = s->slots[shard_find(s, keys[i], h[i])].e;
        if (e != NULL)
            for (size_t off = 0; off < CACHE_PREFETCH_VALUE; off += LINE)
                __builtin_prefetch((const char *)e->value + off, 0, 3);
        pthread_mutex_unlock(&s->mu);
    }
}

void
lsm_cache_release(lsm_cache *c, lsm_cache_handle *h)
{
    centry *e = (centry *)h;
    cache_shard *s;
    bool dead;

    if (e == NULL)
        return;
    s = &c->shards[e->shard];
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
    cache_shard *s = &c->shards[cache_shard_index(c, hash)];
    centry *e;
    size_t i;
    bool dead = false;

    pthread_mutex_lock(&s->mu);
    i = shard_find(s, key, hash);
    e = s->slots[i].e;
    if (e != NULL) {
        shard_clear_slot(s, i);
        dead = shard_finish_erase(s, e);
        shard_note_usage(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (dead)
        entry_delete(e);
}

void
lsm_cache_prune(lsm_cache *c)
{
    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        cache_shard *s = &c->shards[i];
        clink *dead = NULL, *l;

        pthread_mutex_lock(&s->mu);
        /* Pinned entries on lru stay (parked ones are on in_use and stay too). */
        for (l = s->lru.next; l != &s->lru;) {
            clink *next = l->next;
            centry *e = entry_of_link(l);

            if (e->refs == 1)
                shard_drop(s, e, &dead);
            l = next;
        }
        shard_note_usage(s);
        pthread_mutex_unlock(&s->mu);
        delete_chain(dead);
    }
}

/* Drop e from s (pinned or not) if its key starts with prefix. Requires: s->mu held. */
static void
shard_drop_prefixed(cache_shard *s, centry *e, om_slice prefix, clink **dead)
{
    if (e->klen >= prefix.n && memcmp(e->key, prefix.p, prefix.n) == 0)
        shard_drop(s, e, dead);
}

void
lsm_cache_erase_prefix(lsm_cache *c, om_slice prefix)
{
    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        cache_shard *s = &c->shards[i];
        clink *dead = NULL;

        pthread_mutex_lock(&s->mu);
        for (clink *head = &s->lru; head != NULL; head = head == &s->lru ? &s->in_use : NULL)
            for (clink *l = head->next; l != head;) {
                clink *next = l->next;

                shard_drop_prefixed(s, entry_of_link(l), prefix, &dead);
                l = next;
            }
        shard_note_usage(s);
        pthread_mutex_unlock(&s->mu);
        delete_chain(dead);
    }
}

/* ---- admission ---- */

om_status
lsm_cache_enable_admission(lsm_cache *c, size_t mean_charge)
{
    size_t entries = c->capacity / (mean_charge > 0 ? mean_charge : 1), n = 1024;

    /* Twice the entries the cache holds: a key is remembered for about two cache turnovers. */
    while (n < 2 * entries && n < ((size_t)1 << 24))
        n *= 2;
    if (c->ghost != NULL)
        return OM_ERR(OM_E_INVALID);
    c->ghost = calloc(n, sizeof(*c->ghost));
    if (c->ghost == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->ghost_mask = n - 1;
    return OM_OK;
}

bool
lsm_cache_admit(lsm_cache *c, om_slice key)
{
    uint64_t hash, tag;
    _Atomic uint64_t *g;

    if (c->ghost == NULL)
        return true;
    hash = om_hash64(key.p, key.n);
    if (!atomic_load_explicit(&c->shards[cache_shard_index(c, hash)].full, memory_order_relaxed))
        return true; /* room to spare: everything goes in */
    /* The whole hash (never 0) as the tag. */
    g = ghost_slot(c, hash);
    tag = hash | 1;
    if (atomic_load_explicit(g, memory_order_relaxed) == tag) {
        atomic_store_explicit(g, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->admitted, 1, memory_order_relaxed);
        return true;
    }
    atomic_store_explicit(g, tag, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->rejected, 1, memory_order_relaxed);
    return false;
}

uint64_t
lsm_cache_admission_rejected(const lsm_cache *c)
{
    return atomic_load_explicit(&c->rejected, memory_order_relaxed);
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

/* Sum one counter over the shards (relaxed reads: a snapshot that may lag by a few lookups). */
static uint64_t
cache_sum(const lsm_cache *c, bool hits)
{
    uint64_t total = 0;

    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++)
        total += atomic_load_explicit(hits ? &c->shards[i].hits : &c->shards[i].misses,
                                      memory_order_relaxed);
    return total;
}

uint64_t
lsm_cache_hits(const lsm_cache *c)
{
    return cache_sum(c, true);
}

uint64_t
lsm_cache_misses(const lsm_cache *c)
{
    return cache_sum(c, false);
}
