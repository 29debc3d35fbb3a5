/*
 * partitioner/ring.c -- construction, lookup, derivation and diff of rings.
 *
 * Representation. A ring holds its shards sorted by id (so a shard index is
 * also its rank in id order, which is what breaks ties between equal point
 * values) and its points as two parallel arrays sorted by
 * (value, shard index, point index): `hash` (the values, searched) and
 * `owner` (the shard index of each point). Keeping the searched values in
 * their own dense array makes the binary search touch 8 bytes per probe; 16
 * shards of weight 1 at 128 vnodes are 2048 points = 16 KiB, inside L1.
 *
 * Lookup. owner(h) is the first point strictly greater than h, wrapping to
 * point 0: a branch-free upper-bound binary search over `hash`. A radix
 * index over the top bits of the hash (about one slot per point) first
 * narrows the search to the points sharing h's top bits, so a lookup costs
 * one or two probes instead of log2(points) dependent loads.
 *
 * Lifetime. A ring never changes after ring_new() returns it; derived rings
 * are built from scratch (the cost is one sort of the points, well under a
 * millisecond for typical clusters). The reference count is the only
 * mutable field and is atomic, so a ring may be shared between threads
 * without locks; whoever swaps a "current ring" pointer protects the swap.
 *
 * Diff. The boundaries of both rings' points cut the linear hash space into
 * segments on which each ring's owner is constant (the owner of the whole
 * segment [b, next boundary) is the owner of b). Walking both sorted point
 * arrays once yields the segments whose owner id changed; neighbours with
 * the same (old, new) pair are merged.
 */
#define OM_LOG_MODULE "ring"
#include "partitioner/ring.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "util/assert.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/log.h"

struct ring {
    atomic_uint refs;
    uint64_t epoch;
    uint32_t vnodes;
    size_t nshards;
    ring_shard *shards; /* sorted by id; id/addr strings owned */
    size_t npoints;
    uint64_t *hash;    /* sorted point values */
    uint32_t *owner;   /* shard index of each point */
    unsigned lut_bits; /* radix index over the top lut_bits bits of a hash */
    uint32_t *lut;     /* lut[b]: first point whose top bits are >= b; 2^lut_bits + 1 entries */
};

/* A point while the ring is being built. */
typedef struct ring_pt {
    uint64_t h;
    uint32_t shard;
    uint32_t idx;
} ring_pt;

/* --- hashing --------------------------------------------------------------------------------- */

uint64_t
ring_key_hash(om_slice bucket, om_slice key)
{
    uint8_t stack[1152];
    size_t n = bucket.n + 1 + key.n;

    if (n <= sizeof(stack)) {
        if (bucket.n)
            memcpy(stack, bucket.p, bucket.n);
        stack[bucket.n] = 0;
        if (key.n)
            memcpy(stack + bucket.n + 1, key.p, key.n);
        return om_hash64(stack, n);
    }
    /* Longer than any valid bucket and key: hash in pieces (same value). */
    XXH3_state_t st;
    const uint8_t zero = 0;

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, bucket.p, bucket.n);
    XXH3_64bits_update(&st, &zero, 1);
    XXH3_64bits_update(&st, key.p, key.n);
    return XXH3_64bits_digest(&st);
}

/* Requires: idlen <= RING_ID_MAX. buf holds id || 0x00 and has room for 4 more bytes. */
static uint64_t
ring_point_hash_buf(uint8_t *buf, size_t idlen, uint32_t index)
{
    om_put_be32(buf + idlen + 1, index);
    return om_hash64(buf, idlen + 5);
}

uint64_t
ring_point_hash(const char *id, uint32_t index)
{
    uint8_t buf[RING_ID_MAX + 5];
    size_t n = strlen(id);

    if (n > RING_ID_MAX) {
        /* Not a valid id; still a well-defined value. */
        XXH3_state_t st;
        uint8_t tail[5] = {0};

        om_put_be32(tail + 1, index);
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, id, n);
        XXH3_64bits_update(&st, tail, sizeof(tail));
        return XXH3_64bits_digest(&st);
    }
    memcpy(buf, id, n);
    buf[n] = 0;
    return ring_point_hash_buf(buf, n, index);
}

/* --- validation ------------------------------------------------------------------------------ */

static bool
ring_id_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static om_status
ring_check_id(const char *id, char *err, size_t errlen)
{
    size_t n;

    if (id == NULL || id[0] == '\0') {
        om_errf(err, errlen, "shard id is empty");
        return OM_ERR(OM_E_INVALID);
    }
    n = strlen(id);
    if (n > RING_ID_MAX) {
        om_errf(err, errlen, "shard id \"%.16s...\" is %zu bytes, more than %u", id, n,
                RING_ID_MAX);
        return OM_ERR(OM_E_INVALID);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ring_id_char_ok((unsigned char)id[i])) {
            om_errf(err, errlen, "shard id \"%s\" has byte 0x%02x at %zu; ids use [A-Za-z0-9._:-]",
                    id, (unsigned char)id[i], i);
            return OM_ERR(OM_E_INVALID);
        }
    }
    return OM_OK;
}

static om_status
ring_check_addr(const char *id, const char *addr, char *err, size_t errlen)
{
    size_t n;

    if (addr == NULL || addr[0] == '\0') {
        om_errf(err, errlen, "shard \"%s\" has an empty address", id);
        return OM_ERR(OM_E_INVALID);
    }
    n = strlen(addr);
    if (n > RING_ADDR_MAX) {
        om_errf(err, errlen, "shard \"%s\" address is %zu bytes, more than %u", id, n,
                RING_ADDR_MAX);
        return OM_ERR(OM_E_INVALID);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c <= 0x20 || c >= 0x7f || c == ',') {
            om_errf(err, errlen, "shard \"%s\" address has byte 0x%02x at %zu", id, c, i);
            return OM_ERR(OM_E_INVALID);
        }
    }
    return OM_OK;
}

static om_status
ring_check_weight(const char *id, uint32_t weight, char *err, size_t errlen)
{
    if (weight == 0 || weight > RING_MAX_WEIGHT) {
        om_errf(err, errlen, "shard \"%s\" has weight %u; weights are 1..%u", id, weight,
                RING_MAX_WEIGHT);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

/* --- construction ---------------------------------------------------------------------------- */

static int
ring_shard_cmp_id(const void *a, const void *b)
{
    return strcmp(((const ring_shard *)a)->id, ((const ring_shard *)b)->id);
}

static int
ring_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
ring_pt_cmp(const void *a, const void *b)
{
    const ring_pt *x = a, *y = b;

    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void
ring_destroy(ring *r)
{
    if (r == NULL)
        return;
    if (r->shards) {
        for (size_t i = 0; i < r->nshards; i++) {
            free((char *)r->shards[i].id);
            free((char *)r->shards[i].addr);
        }
    }
    free(r->shards);
    free(r->hash);
    free(r->owner);
    free(r->lut);
    free(r);
}

/* Validate every shard (in caller order, so messages follow the input). */
static om_status
ring_check_specs(const ring_shard *shards, size_t n, uint32_t vnodes, uint64_t epoch, char *err,
                 size_t errlen)
{
    uint64_t total = 0;

    if (n == 0) {
        om_errf(err, errlen, "a ring needs at least one shard");
        return OM_ERR(OM_E_INVALID);
    }
    if (n > RING_MAX_SHARDS) {
        om_errf(err, errlen, "%zu shards, more than the maximum %u", n, RING_MAX_SHARDS);
        return OM_ERR(OM_E_INVALID);
    }
    if (vnodes == 0 || vnodes > RING_MAX_VNODES_PER_WEIGHT) {
        om_errf(err, errlen, "vnodes_per_weight %u is out of range 1..%u", vnodes,
                RING_MAX_VNODES_PER_WEIGHT);
        return OM_ERR(OM_E_INVALID);
    }
    if (epoch == 0) {
        om_errf(err, errlen, "ring epoch 0 is reserved for \"no ring\"");
        return OM_ERR(OM_E_INVALID);
    }
    for (size_t i = 0; i < n; i++) {
        OM_TRY(ring_check_id(shards[i].id, err, errlen));
        OM_TRY(ring_check_addr(shards[i].id, shards[i].addr, err, errlen));
        OM_TRY(ring_check_weight(shards[i].id, shards[i].weight, err, errlen));
        total += (uint64_t)shards[i].weight * vnodes;
    }
    if (total > RING_MAX_POINTS) {
        om_errf(err, errlen, "%llu points (weights x vnodes_per_weight), more than %u",
                (unsigned long long)total, RING_MAX_POINTS);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

/* Requires: r->shards sorted by id. Rejects duplicate ids and addresses. */
static om_status
ring_check_unique(const ring *r, char *err, size_t errlen)
{
    const char **addrs;
    om_status st = OM_OK;

    for (size_t i = 1; i < r->nshards; i++) {
        if (strcmp(r->shards[i - 1].id, r->shards[i].id) == 0) {
            om_errf(err, errlen, "shard id \"%s\" appears more than once", r->shards[i].id);
            return OM_ERR(OM_E_INVALID);
        }
    }
    addrs = malloc(r->nshards * sizeof(*addrs));
    if (addrs == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < r->nshards; i++)
        addrs[i] = r->shards[i].addr;
    qsort(addrs, r->nshards, sizeof(*addrs), ring_str_cmp);
    for (size_t i = 1; i < r->nshards; i++) {
        if (strcmp(addrs[i - 1], addrs[i]) == 0) {
            om_errf(err, errlen, "address \"%s\" is given to more than one shard", addrs[i]);
            st = OM_ERR(OM_E_INVALID);
            break;
        }
    }
    free(addrs);
    return st;
}

/* Requires: r->hash sorted. */
static om_status
ring_build_lut(ring *r)
{
    size_t slots, i = 0;

    r->lut_bits = 4;
    while (r->lut_bits < 20 && ((size_t)1 << r->lut_bits) < r->npoints)
        r->lut_bits++;
    slots = (size_t)1 << r->lut_bits;
    r->lut = malloc((slots + 1) * sizeof(*r->lut));
    if (r->lut == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t b = 0; b < slots; b++) {
        while (i < r->npoints && (r->hash[i] >> (64 - r->lut_bits)) < b)
            i++;
        r->lut[b] = (uint32_t)i;
    }
    r->lut[slots] = (uint32_t)r->npoints;
    return OM_OK;
}

static om_status
ring_build_points(ring *r)
{
    ring_pt *pts;
    size_t k = 0;

    r->npoints = 0;
    for (size_t i = 0; i < r->nshards; i++)
        r->npoints += (size_t)r->shards[i].weight * r->vnodes;
    pts = malloc(r->npoints * sizeof(*pts));
    r->hash = malloc(r->npoints * sizeof(*r->hash));
    r->owner = malloc(r->npoints * sizeof(*r->owner));
    if (pts == NULL || r->hash == NULL || r->owner == NULL) {
        free(pts);
        return OM_ERR(OM_E_NOMEM);
    }
    for (size_t s = 0; s < r->nshards; s++) {
        uint8_t buf[RING_ID_MAX + 5];
        size_t idlen = strlen(r->shards[s].id);
        uint32_t np = r->shards[s].weight * r->vnodes;

        memcpy(buf, r->shards[s].id, idlen);
        buf[idlen] = 0;
        for (uint32_t i = 0; i < np; i++)
            pts[k++] = (ring_pt){ring_point_hash_buf(buf, idlen, i), (uint32_t)s, i};
    }
    qsort(pts, r->npoints, sizeof(*pts), ring_pt_cmp);
    for (size_t i = 0; i < r->npoints; i++) {
        r->hash[i] = pts[i].h;
        r->owner[i] = pts[i].shard;
        /* lookups (the radix index, the binary search) rely on sorted points */
        OM_ASSERT(i == 0 || r->hash[i - 1] <= r->hash[i]);
        OM_ASSERT(r->owner[i] < r->nshards);
    }
    free(pts);
    return ring_build_lut(r);
}

om_status
ring_new(const ring_shard *shards, size_t n, uint32_t vnodes_per_weight, uint64_t epoch, ring **out,
         char *err, size_t errlen)
{
    om_status st;
    ring *r;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (vnodes_per_weight == 0)
        vnodes_per_weight = RING_DEFAULT_VNODES_PER_WEIGHT;
    OM_TRY(ring_check_specs(shards, n, vnodes_per_weight, epoch, err, errlen));

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&r->refs, 1);
    r->epoch = epoch;
    r->vnodes = vnodes_per_weight;
    r->shards = calloc(n, sizeof(*r->shards));
    if (r->shards == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    r->nshards = n;
    for (size_t i = 0; i < n; i++) {
        r->shards[i].id = strdup(shards[i].id);
        r->shards[i].addr = strdup(shards[i].addr);
        r->shards[i].weight = shards[i].weight;
        if (r->shards[i].id == NULL || r->shards[i].addr == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto fail;
        }
    }
    qsort(r->shards, n, sizeof(*r->shards), ring_shard_cmp_id);
    OM_GOTO(ring_check_unique(r, err, errlen));
    OM_GOTO(ring_build_points(r));
    *out = r;
    return OM_OK;
fail:
    ring_destroy(r);
    return st;
}

ring *
ring_ref(const ring *r)
{
    ring *m = (ring *)r; /* the count is the one mutable field */

    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void
ring_unref(const ring *r)
{
    ring *m = (ring *)r;

    if (m == NULL)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        ring_destroy(m);
}

/* --- accessors and lookup -------------------------------------------------------------------- */

uint64_t
ring_epoch(const ring *r)
{
    return r->epoch;
}

uint32_t
ring_vnodes_per_weight(const ring *r)
{
    return r->vnodes;
}

size_t
ring_shard_count(const ring *r)
{
    return r->nshards;
}

size_t
ring_point_count(const ring *r)
{
    return r->npoints;
}

const ring_shard *
ring_shard_at(const ring *r, size_t i)
{
    return i < r->nshards ? &r->shards[i] : NULL;
}

om_status
ring_find(const ring *r, const char *id, size_t *idx)
{
    size_t lo = 0, hi = r->nshards;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->shards[mid].id, id);
        if (c == 0) {
            *idx = mid;
            return OM_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return OM_E_NOTFOUND;
}

/* Index of the first point > h, or npoints if none. */
static size_t
ring_upper_bound(const ring *r, uint64_t h)
{
    size_t b = (size_t)(h >> (64 - r->lut_bits));
    size_t lo = r->lut[b], n = r->lut[b + 1] - lo;
    const uint64_t *base = r->hash + lo;

    /* Points before lo have smaller top bits (< h); from lut[b + 1] on, larger (> h). */
    if (n == 0)
        return lo;
    /* Invariant: the answer lies in [base, base + n]. */
    while (n > 1) {
        size_t half = n / 2;
        base = base[half - 1] <= h ? base + half : base;
        n -= half;
    }
    size_t i = (size_t)(base - r->hash) + (*base <= h);

    /* the first point above h: every point before it is <= h */
    OM_ASSERT(i <= r->npoints && (i == r->npoints || r->hash[i] > h) &&
              (i == 0 || r->hash[i - 1] <= h));
    return i;
}

size_t
ring_owner(const ring *r, uint64_t h)
{
    size_t i = ring_upper_bound(r, h);

    return r->owner[i == r->npoints ? 0 : i];
}

const ring_shard *
ring_lookup(const ring *r, om_slice bucket, om_slice key)
{
    return &r->shards[ring_owner(r, ring_key_hash(bucket, key))];
}

double
ring_shard_fraction(const ring *r, size_t s)
{
    const double two64 = 18446744073709551616.0;
    double sum = 0;

    if (r->npoints == 1)
        return r->owner[0] == s ? 1.0 : 0.0;
    for (size_t i = 0; i < r->npoints; i++) {
        if (r->owner[i] != s)
            continue;
        /* point i owns [hash[i-1], hash[i]), wrapping for i == 0 */
        uint64_t prev = r->hash[i == 0 ? r->npoints - 1 : i - 1];
        sum += (double)(uint64_t)(r->hash[i] - prev) / two64;
    }
    return sum;
}

/* --- derived rings --------------------------------------------------------------------------- */

/* A shallow copy of r's shard list with room for one more. */
static om_status
ring_spec_copy(const ring *r, ring_shard **out)
{
    ring_shard *s = malloc((r->nshards + 1) * sizeof(*s));

    if (s == NULL)
        return OM_ERR(OM_E_NOMEM);
    memcpy(s, r->shards, r->nshards * sizeof(*s));
    *out = s;
    return OM_OK;
}

static om_status
ring_next_epoch(const ring *r, uint64_t *epoch, char *err, size_t errlen)
{
    if (r->epoch == UINT64_MAX) {
        om_errf(err, errlen, "ring epoch is at its maximum");
        return OM_ERR(OM_E_INVALID);
    }
    *epoch = r->epoch + 1;
    return OM_OK;
}

om_status
ring_add_node(const ring *r, const ring_shard *s, ring **out, char *err, size_t errlen)
{
    ring_shard *spec = NULL;
    uint64_t epoch = 0;
    size_t idx = 0;
    om_status st;

    OM_TRY(ring_next_epoch(r, &epoch, err, errlen));
    OM_TRY(ring_check_id(s->id, err, errlen));
    if (ring_find(r, s->id, &idx) == OM_OK) {
        om_errf(err, errlen, "shard \"%s\" is already in the ring", s->id);
        return OM_ERR(OM_E_INVALID);
    }
    OM_TRY(ring_spec_copy(r, &spec));
    spec[r->nshards] = *s;
    st = ring_new(spec, r->nshards + 1, r->vnodes, epoch, out, err, errlen);
    free(spec);
    return st;
}

om_status
ring_remove_node(const ring *r, const char *id, ring **out, char *err, size_t errlen)
{
    ring_shard *spec = NULL;
    uint64_t epoch = 0;
    size_t idx = 0;
    om_status st;

    OM_TRY(ring_next_epoch(r, &epoch, err, errlen));
    if (ring_find(r, id, &idx) != OM_OK) {
        om_errf(err, errlen, "shard \"%s\" is not in the ring", id);
        return OM_ERR(OM_E_INVALID);
    }
    if (r->nshards == 1) {
        om_errf(err, errlen, "cannot remove \"%s\": it is the last shard", id);
        return OM_ERR(OM_E_INVALID);
    }
    OM_TRY(ring_spec_copy(r, &spec));
    memmove(&spec[idx], &spec[idx + 1], (r->nshards - idx - 1) * sizeof(*spec));
    st = ring_new(spec, r->nshards - 1, r->vnodes, epoch, out, err, errlen);
    free(spec);
    return st;
}

/*
 * The next ring with one shard's weight or address replaced (NULL keeps it);
 * ring_new validates the result as it does every ring.
 */
static om_status
ring_change_shard(const ring *r, const char *id, const uint32_t *weight, const char *addr,
                  ring **out, char *err, size_t errlen)
{
    ring_shard *spec = NULL;
    uint64_t epoch = 0;
    size_t idx = 0;
    om_status st;

    OM_TRY(ring_next_epoch(r, &epoch, err, errlen));
    if (ring_find(r, id, &idx) != OM_OK) {
        om_errf(err, errlen, "shard \"%s\" is not in the ring", id);
        return OM_ERR(OM_E_INVALID);
    }
    OM_TRY(ring_spec_copy(r, &spec));
    if (weight != NULL)
        spec[idx].weight = *weight;
    if (addr != NULL)
        spec[idx].addr = addr;
    st = ring_new(spec, r->nshards, r->vnodes, epoch, out, err, errlen);
    free(spec);
    return st;
}

om_status
ring_set_weight(const ring *r, const char *id, uint32_t weight, ring **out, char *err,
                size_t errlen)
{
    return ring_change_shard(r, id, &weight, NULL, out, err, errlen);
}

om_status
ring_set_addr(const ring *r, const char *id, const char *addr, ring **out, char *err, size_t errlen)
{
    return ring_change_shard(r, id, NULL, addr, out, err, errlen);
}

bool
ring_same_placement(const ring *a, const ring *b)
{
    if (a->vnodes != b->vnodes || a->nshards != b->nshards)
        return false;
    for (size_t i = 0; i < a->nshards; i++) {
        if (strcmp(a->shards[i].id, b->shards[i].id) != 0 ||
            a->shards[i].weight != b->shards[i].weight)
            return false;
    }
    return true;
}

bool
ring_equal(const ring *a, const ring *b)
{
    if (a->epoch != b->epoch || !ring_same_placement(a, b))
        return false;
    for (size_t i = 0; i < a->nshards; i++) {
        if (strcmp(a->shards[i].addr, b->shards[i].addr) != 0)
            return false;
    }
    return true;
}

/* --- diff ------------------------------------------------------------------------------------ */

typedef struct ring_moves {
    ring_move *v;
    size_t n, cap;
} ring_moves;

static om_status
ring_moves_push(ring_moves *m, const ring_move *mv)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        ring_move *v = realloc(m->v, cap * sizeof(*v));
        if (v == NULL)
            return OM_ERR(OM_E_NOMEM);
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = *mv;
    return OM_OK;
}

om_status
ring_diff(const ring *o, const ring *nw, ring_move **moves, size_t *n)
{
    ring_moves m = {NULL, 0, 0};
    size_t *map; /* old shard index -> new shard index, SIZE_MAX if gone */
    size_t i = 0, j = 0;
    uint64_t s = 0;
    om_status st = OM_OK;

    map = malloc(o->nshards * sizeof(*map));
    if (map == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t a = 0, b = 0; a < o->nshards; a++) {
        int c = 1;
        while (b < nw->nshards && (c = strcmp(nw->shards[b].id, o->shards[a].id)) < 0)
            b++;
        map[a] = (b < nw->nshards && c == 0) ? b : SIZE_MAX;
    }
    for (;;) {
        uint64_t end;
        bool top;

        /* i, j: the first point > s in each ring (the owners of [s, next boundary)). */
        while (i < o->npoints && o->hash[i] <= s)
            i++;
        while (j < nw->npoints && nw->hash[j] <= s)
            j++;
        top = i == o->npoints && j == nw->npoints;
        if (top)
            end = 0;
        else if (i == o->npoints)
            end = nw->hash[j];
        else if (j == nw->npoints)
            end = o->hash[i];
        else
            end = o->hash[i] < nw->hash[j] ? o->hash[i] : nw->hash[j];

        size_t oo = o->owner[i == o->npoints ? 0 : i];
        size_t no = nw->owner[j == nw->npoints ? 0 : j];
        if (map[oo] != no) {
            ring_move *last = m.n ? &m.v[m.n - 1] : NULL;
            if (last && last->end == s && last->old_shard == oo && last->new_shard == no) {
                last->end = end;
            } else {
                ring_move mv = {s, end, oo, no, o->shards[oo].id, nw->shards[no].id};
                if ((st = ring_moves_push(&m, &mv)) != OM_OK)
                    break;
            }
        }
        if (top)
            break;
        s = end;
    }
    free(map);
    if (st != OM_OK) {
        free(m.v);
        return st;
    }
    *moves = m.v;
    *n = m.n;
    return OM_OK;
}

/* --- formatting ------------------------------------------------------------------------------ */

om_status
ring_format(const ring *r, om_buf *out)
{
    OM_TRY(om_buf_printf(out, "epoch=%llu vnodes_per_weight=%u shards=[",
                         (unsigned long long)r->epoch, r->vnodes));
    for (size_t i = 0; i < r->nshards; i++)
        OM_TRY(om_buf_printf(out, "%s%s@%s w=%u", i ? ", " : "", r->shards[i].id, r->shards[i].addr,
                             r->shards[i].weight));
    return om_buf_printf(out, "]");
}
