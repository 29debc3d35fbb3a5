/*
 * lsm/batch.c -- write batches: building (public API) and decoding (WAL
 * replay, memtable insert). See batch.h for the layout.
 */
#include "lsm/batch.h"

#include <stdlib.h>
#include <string.h>

#include "util/coding.h"

/*
 * lsm_batch_apply_sorted loads the skiplist search paths of this many keys
 * at a time before inserting them (lsm_mem_warm), once the memtable holds
 * BATCH_WARM_MIN_ENTRIES: below that its nodes fit in the CPU caches anyway.
 */
#define BATCH_WARM_CHUNK 64
#define BATCH_WARM_MIN_ENTRIES 16384

static om_status
batch_reset(lsm_batch *b)
{
    uint8_t hdr[LSM_BATCH_HEADER] = {0};

    om_buf_reset(&b->rep);
    b->bytes = 0;
    return om_buf_append(&b->rep, hdr, sizeof(hdr));
}

om_status
lsm_batch_new(lsm_batch **out)
{
    lsm_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (batch_reset(b) != OM_OK) {
        free(b);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = b;
    return OM_OK;
}

void
lsm_batch_free(lsm_batch *b)
{
    if (b == NULL)
        return;
    om_buf_free(&b->rep);
    free(b);
}

void
lsm_batch_clear(lsm_batch *b)
{
    /* The header fits in the existing allocation: this cannot fail. */
    om_buf_reset(&b->rep);
    memset(b->rep.p, 0, LSM_BATCH_HEADER);
    b->rep.n = LSM_BATCH_HEADER;
    b->bytes = 0;
}

uint32_t
lsm_batch_count(const lsm_batch *b)
{
    return om_get_fixed32(b->rep.p + 8);
}

void
lsm_batch_set_seq(lsm_batch *b, uint64_t seq)
{
    om_put_fixed64(b->rep.p, seq);
}

static om_status
batch_add(lsm_batch *b, lsm_vtype type, om_slice key, om_slice value)
{
    size_t old = b->rep.n;
    uint32_t count = lsm_batch_count(b);
    om_status st;

    if (key.n > LSM_MAX_KEY_SIZE)
        return OM_ERR(OM_E_INVALID);
    if (value.n > LSM_MAX_VALUE_SIZE)
        return OM_ERR(OM_E_INVALID);
    if (count == UINT32_MAX)
        return OM_ERR(OM_E_INVALID);
    OM_GOTO(om_buf_append_byte(&b->rep, (uint8_t)type));
    OM_GOTO(om_buf_put_lenpref(&b->rep, key));
    if (type == LSM_TYPE_VAL)
        OM_GOTO(om_buf_put_lenpref(&b->rep, value));
    om_put_fixed32(b->rep.p + 8, count + 1);
    b->bytes += key.n + value.n;
    return OM_OK;
fail:
    b->rep.n = old;
    return st;
}

om_status
lsm_batch_put(lsm_batch *b, om_slice key, om_slice value)
{
    return batch_add(b, LSM_TYPE_VAL, key, value);
}

om_status
lsm_batch_del(lsm_batch *b, om_slice key)
{
    return batch_add(b, LSM_TYPE_DEL, key, OM_SLICE_NULL);
}

om_status
lsm_batch_iterate(om_slice rep, lsm_batch_fn fn, void *arg)
{
    uint64_t seq;
    uint32_t count, found = 0;
    om_slice in = rep;

    if (om_slice_get_fixed64(&in, &seq) != OM_OK || om_slice_get_fixed32(&in, &count) != OM_OK)
        return OM_ERR(OM_E_CORRUPT);
    while (in.n > 0) {
        uint8_t type = in.p[0];
        om_slice key, value = OM_SLICE_NULL;

        in.p++;
        in.n--;
        if (type > LSM_TYPE_VAL || om_slice_get_lenpref(&in, &key) != OM_OK)
            return OM_ERR(OM_E_CORRUPT);
        if (type == LSM_TYPE_VAL && om_slice_get_lenpref(&in, &value) != OM_OK)
            return OM_ERR(OM_E_CORRUPT);
        if (key.n > LSM_MAX_KEY_SIZE || found == count || seq + found > LSM_MAX_SEQ)
            return OM_ERR(OM_E_CORRUPT);
        if (fn != NULL)
            OM_TRY(fn(arg, seq + found, (lsm_vtype)type, key, value));
        found++;
    }
    if (found != count)
        return OM_ERR(OM_E_CORRUPT);
    return OM_OK;
}

om_status
lsm_batch_validate(om_slice rep, uint64_t *seq, uint32_t *count)
{
    OM_TRY(lsm_batch_iterate(rep, NULL, NULL));
    *seq = om_get_fixed64(rep.p);
    *count = om_get_fixed32(rep.p + 8);
    return OM_OK;
}

static om_status
batch_apply_one(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    return lsm_mem_add(arg, seq, type, key, value);
}

static om_status
batch_prefetch_one(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    (void)seq;
    (void)type;
    (void)value;
    lsm_mem_prefetch(arg, key);
    return OM_OK;
}

void
lsm_batch_prefetch(om_slice rep, lsm_memtable *m)
{
    (void)lsm_batch_iterate(rep, batch_prefetch_one, m);
}

om_status
lsm_batch_apply(om_slice rep, lsm_memtable *m)
{
    return lsm_batch_iterate(rep, batch_apply_one, m);
}

/* One op of a group being sorted. */
typedef struct batch_op {
    const uint8_t *k, *v;
    uint32_t kn, vn;
    uint64_t seq;
    lsm_vtype type;
} batch_op;

/*
 * What the sort moves: the 8 key bytes after the prefix every key of the
 * group shares (big-endian, zero-padded: an "abbreviated key" that decides
 * most comparisons without touching the keys) and the op's index.
 */
typedef struct batch_sortkey {
    uint64_t abbr;
    uint32_t i;
} batch_sortkey;

typedef struct batch_collect {
    batch_op *ops;
    size_t n;
    size_t lcp; /* bytes every key so far shares with the first */
} batch_collect;

static om_status
batch_collect_one(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    batch_collect *c = arg;
    batch_op *o = &c->ops[c->n++];
    size_t l = 0;

    o->k = key.p;
    o->kn = (uint32_t)key.n;
    o->v = value.p;
    o->vn = (uint32_t)value.n;
    o->seq = seq;
    o->type = type;
    if (c->n == 1) {
        c->lcp = key.n;
    } else {
        const uint8_t *f = c->ops[0].k;
        size_t m = c->lcp < key.n ? c->lcp : key.n;

        while (l < m && f[l] == key.p[l])
            l++;
        c->lcp = l;
    }
    return OM_OK;
}

/* Internal-key order of ops a and b: user key ascending, then sequence descending. */
static int
batch_op_cmp(const batch_op *a, const batch_op *b)
{
    uint32_t m = a->kn < b->kn ? a->kn : b->kn;
    int r = m > 0 ? memcmp(a->k, b->k, m) : 0;

    if (r != 0)
        return r;
    if (a->kn != b->kn)
        return a->kn < b->kn ? -1 : 1;
    return a->seq > b->seq ? -1 : (a->seq < b->seq ? 1 : 0);
}

static inline bool
batch_sk_less(const batch_sortkey *a, const batch_sortkey *b, const batch_op *ops)
{
    if (a->abbr != b->abbr)
        return a->abbr < b->abbr;
    return batch_op_cmp(&ops[a->i], &ops[b->i]) < 0;
}

static inline void
batch_sk_swap(batch_sortkey *a, batch_sortkey *b)
{
    batch_sortkey t = *a;

    *a = *b;
    *b = t;
}

/* Quicksort (median of three, insertion sort for short ranges) of v[0..n). */
static void
batch_sk_sort(batch_sortkey *v, size_t n, const batch_op *ops)
{
    while (n > 16) {
        size_t mid = n / 2, i = 0, j = n - 1;
        batch_sortkey pivot;

        if (batch_sk_less(&v[mid], &v[0], ops))
            batch_sk_swap(&v[mid], &v[0]);
        if (batch_sk_less(&v[n - 1], &v[0], ops))
            batch_sk_swap(&v[n - 1], &v[0]);
        if (batch_sk_less(&v[n - 1], &v[mid], ops))
            batch_sk_swap(&v[n - 1], &v[mid]);
        pivot = v[mid];
        /* Hoare partition: v[0..j] <= pivot <= v[j+1..n). */
        for (;;) {
            while (batch_sk_less(&v[i], &pivot, ops))
                i++;
            while (batch_sk_less(&pivot, &v[j], ops))
                j--;
            if (i >= j)
                break;
            batch_sk_swap(&v[i], &v[j]);
            i++;
            j--;
        }
        /* Recurse into the smaller part, loop on the larger. */
        if (j + 1 < n - (j + 1)) {
            batch_sk_sort(v, j + 1, ops);
            v += j + 1;
            n -= j + 1;
        } else {
            batch_sk_sort(v + j + 1, n - (j + 1), ops);
            n = j + 1;
        }
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && batch_sk_less(&v[j], &v[j - 1], ops); j--)
            batch_sk_swap(&v[j], &v[j - 1]);
}

om_status
lsm_batch_apply_sorted(const om_slice *reps, int n, lsm_memtable *m, void **scratch, size_t *cap)
{
    batch_collect c = {.ops = NULL, .n = 0, .lcp = 0};
    batch_sortkey *sk;
    size_t total = 0;

    for (int i = 0; i < n; i++)
        total += om_get_fixed32(reps[i].p + 8);
    if (total < 2) {
        for (int i = 0; i < n; i++)
            OM_TRY(lsm_batch_apply(reps[i], m));
        return OM_OK;
    }
    if (total > *cap) {
        size_t want = total < 256 ? 256 : total;
        void *p = realloc(*scratch, want * (sizeof(batch_op) + sizeof(batch_sortkey)));

        if (p == NULL) {
            for (int i = 0; i < n; i++)
                OM_TRY(lsm_batch_apply(reps[i], m));
            return OM_OK;
        }
        *scratch = p;
        *cap = want;
    }
    c.ops = *scratch;
    sk = (batch_sortkey *)(c.ops + *cap);
    for (int i = 0; i < n; i++)
        OM_TRY(lsm_batch_iterate(reps[i], batch_collect_one, &c));
    if (c.n != total)
        return OM_ERR(OM_E_CORRUPT);
    for (size_t i = 0; i < c.n; i++) {
        const batch_op *o = &c.ops[i];
        uint8_t b[8] = {0};
        size_t k = o->kn - c.lcp; /* every key is at least lcp bytes long */

        if (k > 0)
            memcpy(b, o->k + c.lcp, k < 8 ? k : 8);
        sk[i].abbr = om_get_be64(b);
        sk[i].i = (uint32_t)i;
    }
    batch_sk_sort(sk, c.n, c.ops);
    for (size_t i = 0; i < c.n; i += BATCH_WARM_CHUNK) {
        size_t end = c.n - i < BATCH_WARM_CHUNK ? c.n : i + BATCH_WARM_CHUNK;

        if (lsm_mem_entries(m) >= BATCH_WARM_MIN_ENTRIES) {
            om_slice keys[BATCH_WARM_CHUNK];

            for (size_t j = i; j < end; j++)
                keys[j - i] = om_slice_make(c.ops[sk[j].i].k, c.ops[sk[j].i].kn);
            lsm_mem_warm(m, keys, end - i);
        }
        for (size_t j = i; j < end; j++) {
            const batch_op *o = &c.ops[sk[j].i];

            OM_TRY(lsm_mem_add(m, o->seq, o->type, om_slice_make(o->k, o->kn),
                               om_slice_make(o->v, o->vn)));
        }
    }
    return OM_OK;
}
