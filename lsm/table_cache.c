/*
 * lsm/table_cache.c -- file number -> open SSTable (see table_cache.h).
 *
 * Built on lsm_cache with a charge of one per table and capacity
 * max_open_files; the cache's refcounting gives the pinning: a table is
 * closed by the cache deleter once it is evicted or erased and the last
 * handle (lookup, get, iterator or pin) is released. Pins are counted
 * against max_open_files (see table_cache.h).
 *
 * Thread-safety: as lsm_cache; lsm_sst is safe for concurrent readers.
 */
#include "lsm/table_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util/coding.h"

struct lsm_table_cache {
    lsm_env *env;
    char *dir;
    lsm_table_opts topts; /* tables point here: it lives as long as they do */
    lsm_cache *cache;
    lsm_cache *rows;       /* the row cache, or NULL when off */
    size_t pin_limit;      /* max_open_files */
    atomic_size_t npinned; /* handles held in pins */
};

static void
table_deleter(om_slice key, void *value)
{
    lsm_sst_close(value);
}

om_status
lsm_table_cache_new(lsm_env *env, const char *dir, const lsm_table_opts *topts, int max_open_files,
                    lsm_table_cache **out)
{
    lsm_table_cache *tc = calloc(1, sizeof(*tc));
    size_t cap = max_open_files < 1 ? 1 : (size_t)max_open_files;
    int bits = 0;
    om_status st;

    if (tc == NULL || (tc->dir = strdup(dir)) == NULL) {
        free(tc);
        return OM_ERR(OM_E_NOMEM);
    }
    /* Shard only when every shard still holds a useful number of tables. */
    while (bits < 4 && (cap >> (bits + 1)) >= 16)
        bits++;
    st = lsm_cache_new(cap, bits, &tc->cache);
    if (st != OM_OK) {
        free(tc->dir);
        free(tc);
        return st;
    }
    tc->env = env;
    tc->topts = *topts;
    tc->pin_limit = cap;
    atomic_init(&tc->npinned, 0);
    *out = tc;
    return OM_OK;
}

void
lsm_table_cache_free(lsm_table_cache *tc)
{
    if (tc == NULL)
        return;
    lsm_cache_free(tc->cache);
    lsm_cache_free(tc->rows);
    free(tc->dir);
    free(tc);
}

om_status
lsm_table_cache_ref(lsm_table_cache *tc, uint64_t number, uint64_t file_size, lsm_table_ref **out)
{
    uint8_t key[8];
    lsm_cache_handle *h;
    lsm_sst *t;
    char path[4096];
    om_status st;

    om_put_fixed64(key, number);
    h = lsm_cache_lookup(tc->cache, om_slice_make(key, sizeof(key)));
    if (h == NULL) {
        lsm_sst_path(path, sizeof(path), tc->dir, number);
        OM_TRY(lsm_sst_open(tc->env, path, number, file_size, &tc->topts, &t));
        st = lsm_cache_insert(tc->cache, om_slice_make(key, sizeof(key)), t, 1, table_deleter, &h);
        if (st != OM_OK) {
            lsm_sst_close(t);
            return st;
        }
    }
    *out = (lsm_table_ref *)h;
    return OM_OK;
}

void
lsm_table_cache_unref(lsm_table_cache *tc, lsm_table_ref *ref)
{
    lsm_cache_release(tc->cache, (lsm_cache_handle *)ref);
}

lsm_sst *
lsm_table_ref_sst(const lsm_table_ref *ref)
{
    return lsm_cache_value((const lsm_cache_handle *)ref);
}

om_status
lsm_table_cache_borrow(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number, uint64_t file_size,
                       lsm_table_ref **out, bool *owned)
{
    lsm_table_ref *ref, *expected = NULL;

    if (pin != NULL && (ref = atomic_load_explicit(&pin->ref, memory_order_acquire)) != NULL) {
        *out = ref;
        *owned = false;
        return OM_OK;
    }
    OM_TRY(lsm_table_cache_ref(tc, number, file_size, &ref));
    *out = ref;
    *owned = true;
    if (pin == NULL)
        return OM_OK;
    /* Reserve a pin slot first so that the limit holds under races. */
    if (atomic_fetch_add_explicit(&tc->npinned, 1, memory_order_relaxed) >= tc->pin_limit) {
        atomic_fetch_sub_explicit(&tc->npinned, 1, memory_order_relaxed);
        return OM_OK;
    }
    if (atomic_compare_exchange_strong_explicit(&pin->ref, &expected, ref, memory_order_acq_rel,
                                                memory_order_acquire)) {
        *owned = false;
        return OM_OK;
    }
    /* Another thread pinned the table first: use its handle. */
    atomic_fetch_sub_explicit(&tc->npinned, 1, memory_order_relaxed);
    lsm_table_cache_unref(tc, ref);
    *out = expected;
    *owned = false;
    return OM_OK;
}

void
lsm_table_cache_unpin(lsm_table_cache *tc, lsm_table_pin *pin)
{
    lsm_table_ref *ref = atomic_exchange_explicit(&pin->ref, NULL, memory_order_acq_rel);

    if (ref == NULL)
        return;
    lsm_table_cache_unref(tc, ref);
    atomic_fetch_sub_explicit(&tc->npinned, 1, memory_order_relaxed);
}

size_t
lsm_table_cache_pinned_count(lsm_table_cache *tc)
{
    return atomic_load_explicit(&tc->npinned, memory_order_relaxed);
}

om_status
lsm_table_cache_get_pinned(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number,
                           uint64_t file_size, om_slice lookup_ikey, bool fill_cache,
                           lsm_sst_get_fn fn, void *arg)
{
    lsm_table_ref *ref;
    bool owned;
    om_status st;

    OM_TRY(lsm_table_cache_borrow(tc, pin, number, file_size, &ref, &owned));
    st = lsm_sst_get(lsm_table_ref_sst(ref), lookup_ikey, fill_cache, fn, arg);
    if (owned)
        lsm_table_cache_unref(tc, ref);
    return st;
}

om_status
lsm_table_cache_get(lsm_table_cache *tc, uint64_t number, uint64_t file_size, om_slice lookup_ikey,
                    bool fill_cache, lsm_sst_get_fn fn, void *arg)
{
    return lsm_table_cache_get_pinned(tc, NULL, number, file_size, lookup_ikey, fill_cache, fn,
                                      arg);
}

bool
lsm_table_cache_may_contain_pinned(lsm_table_cache *tc, lsm_table_pin *pin, uint64_t number,
                                   uint64_t file_size, om_slice user_key)
{
    lsm_table_ref *ref;
    bool owned, r;

    if (lsm_table_cache_borrow(tc, pin, number, file_size, &ref, &owned) != OM_OK)
        return true;
    r = lsm_sst_may_contain(lsm_table_ref_sst(ref), user_key);
    if (owned)
        lsm_table_cache_unref(tc, ref);
    return r;
}

bool
lsm_table_cache_may_contain(lsm_table_cache *tc, uint64_t number, uint64_t file_size,
                            om_slice user_key)
{
    return lsm_table_cache_may_contain_pinned(tc, NULL, number, file_size, user_key);
}

/* An iterator that forwards to a table iterator and keeps the table pinned. */
typedef struct tc_iter {
    lsm_it base;
    lsm_it *inner;
    lsm_table_cache *tc;
    lsm_table_ref *ref;
} tc_iter;

static bool
tci_valid(const lsm_it *it)
{
    return lsm_it_valid(((const tc_iter *)it)->inner);
}
static void
tci_seek_first(lsm_it *it)
{
    lsm_it_seek_first(((tc_iter *)it)->inner);
}
static void
tci_seek(lsm_it *it, om_slice k)
{
    lsm_it_seek(((tc_iter *)it)->inner, k);
}
static void
tci_next(lsm_it *it)
{
    lsm_it_next(((tc_iter *)it)->inner);
}
static om_slice
tci_key(const lsm_it *it)
{
    return lsm_it_key(((const tc_iter *)it)->inner);
}
static om_slice
tci_value(const lsm_it *it)
{
    return lsm_it_value(((const tc_iter *)it)->inner);
}
static om_status
tci_status(const lsm_it *it)
{
    return lsm_it_status(((const tc_iter *)it)->inner);
}
static void
tci_free(lsm_it *base)
{
    tc_iter *it = (tc_iter *)base;

    lsm_it_free(it->inner);
    lsm_table_cache_unref(it->tc, it->ref);
    free(it);
}

static const lsm_it_ops tci_ops = LSM_IT_OPS(tci, tci_free);

om_status
lsm_table_cache_iter_new(lsm_table_cache *tc, uint64_t number, uint64_t file_size, bool fill_cache,
                         lsm_it **out)
{
    tc_iter *it = calloc(1, sizeof(*it));
    om_status st;

    if (it == NULL)
        return OM_ERR(OM_E_NOMEM);
    st = lsm_table_cache_ref(tc, number, file_size, &it->ref);
    if (st == OM_OK) {
        st = lsm_sst_iter_new(lsm_table_ref_sst(it->ref), fill_cache, &it->inner);
        if (st != OM_OK)
            lsm_table_cache_unref(tc, it->ref);
    }
    if (st != OM_OK) {
        free(it);
        return st;
    }
    it->base.ops = &tci_ops;
    it->tc = tc;
    *out = &it->base;
    return OM_OK;
}

void
lsm_table_cache_evict(lsm_table_cache *tc, uint64_t number)
{
    uint8_t key[8];

    om_put_fixed64(key, number);
    lsm_cache_erase(tc->cache, om_slice_make(key, sizeof(key)));
    /* The file is gone for good: its rows (keyed by file number first) can never hit again. */
    if (tc->rows != NULL)
        lsm_cache_erase_prefix(tc->rows, om_slice_make(key, sizeof(key)));
}

size_t
lsm_table_cache_open_count(lsm_table_cache *tc)
{
    return lsm_cache_count(tc->cache);
}

/* ---- row cache ---- */

/*
 * Per-row bookkeeping beyond key and value bytes: the cache entry header and
 * its hash chain slot, the lsm_row header and malloc rounding (about).
 */
#define ROW_OVERHEAD 96

static void
row_deleter(om_slice key, void *value)
{
    (void)key;
    free(value);
}

/*
 * The row cache key: the file number (fixed64) then the user key, in buf
 * when it fits, else in *heap (the caller frees). Returns false if out of memory.
 */
#define ROW_KEY_STACK 264
static bool
row_key(uint64_t number, om_slice user_key, uint8_t *buf, uint8_t **heap, om_slice *out)
{
    uint8_t *k = buf;

    *heap = NULL;
    if (8 + user_key.n > ROW_KEY_STACK) {
        if ((*heap = malloc(8 + user_key.n)) == NULL)
            return false;
        k = *heap;
    }
    om_put_fixed64(k, number);
    if (user_key.n > 0)
        memcpy(k + 8, user_key.p, user_key.n);
    *out = om_slice_make(k, 8 + user_key.n);
    return true;
}

om_status
lsm_table_cache_enable_rows(lsm_table_cache *tc, size_t capacity)
{
    om_status st;

    if (capacity == 0 || tc->rows != NULL)
        return OM_OK;
    /* The default sharding: up to 16 shards of at least 256 KiB each. */
    OM_TRY(lsm_cache_new(capacity, -1, &tc->rows));
    /* Uniform reads over more rows than fit: a row goes in on its second miss (cache.c). */
    if ((st = lsm_cache_enable_admission(tc->rows, 256 + ROW_OVERHEAD)) != OM_OK) {
        lsm_cache_free(tc->rows);
        tc->rows = NULL;
    }
    return st;
}

bool
lsm_table_cache_row_admit(lsm_table_cache *tc, uint64_t number, om_slice user_key)
{
    uint8_t buf[ROW_KEY_STACK], *heap;
    om_slice k;
    bool admit;

    if (!row_key(number, user_key, buf, &heap, &k))
        return false;
    admit = lsm_cache_admit(tc->rows, k);
    free(heap);
    return admit;
}

bool
lsm_table_cache_has_rows(const lsm_table_cache *tc)
{
    return tc->rows != NULL;
}

lsm_cache_handle *
lsm_table_cache_row_lookup(lsm_table_cache *tc, uint64_t number, om_slice user_key,
                           const lsm_row **row)
{
    uint8_t buf[ROW_KEY_STACK], *heap;
    om_slice k;
    lsm_cache_handle *h;

    if (!row_key(number, user_key, buf, &heap, &k))
        return NULL;
    h = lsm_cache_lookup(tc->rows, k);
    free(heap);
    if (h != NULL)
        *row = lsm_cache_value(h);
    return h;
}

bool
lsm_table_cache_row_peek(lsm_table_cache *tc, uint64_t number, om_slice user_key,
                         lsm_cache_peek_fn fn, void *arg)
{
    uint8_t buf[ROW_KEY_STACK], *heap;
    om_slice k;
    bool hit;

    if (!row_key(number, user_key, buf, &heap, &k))
        return false;
    hit = lsm_cache_peek(tc->rows, k, fn, arg);
    free(heap);
    return hit;
}

void
lsm_table_cache_row_prefetch(lsm_table_cache *tc, const uint64_t *numbers,
                             const om_slice *user_keys, size_t n)
{
    uint8_t buf[LSM_CACHE_PREFETCH_MAX * 64];
    om_slice k[LSM_CACHE_PREFETCH_MAX];
    size_t used = 0, nk = 0;

    if (tc->rows == NULL)
        return;
    for (size_t i = 0; i < n && nk < LSM_CACHE_PREFETCH_MAX; i++) {
        size_t len = 8 + user_keys[i].n;

        if (used + len > sizeof(buf))
            continue;                           /* a long key: no hint for it */
        om_put_fixed64(buf + used, numbers[i]); /* row_key's layout */
        if (user_keys[i].n > 0)
            memcpy(buf + used + 8, user_keys[i].p, user_keys[i].n);
        k[nk++] = om_slice_make(buf + used, len);
        used += len;
    }
    lsm_cache_prefetch_entries(tc->rows, k, nk);
}

void
lsm_table_cache_row_release(lsm_table_cache *tc, lsm_cache_handle *h)
{
    lsm_cache_release(tc->rows, h);
}

lsm_row *
lsm_row_new(uint64_t trailer, om_slice value)
{
    lsm_row *r = malloc(sizeof(*r) + value.n);

    if (r == NULL)
        return NULL;
    r->trailer = trailer;
    r->n = value.n;
    if (value.n > 0)
        memcpy(r->value, value.p, value.n);
    return r;
}

lsm_cache_handle *
lsm_table_cache_row_insert(lsm_table_cache *tc, uint64_t number, om_slice user_key, lsm_row *row)
{
    uint8_t buf[ROW_KEY_STACK], *heap;
    om_slice k;
    lsm_cache_handle *h = NULL;

    if (!row_key(number, user_key, buf, &heap, &k)) {
        free(row);
        return NULL;
    }
    if (lsm_cache_insert(tc->rows, k, row, k.n + sizeof(*row) + row->n + ROW_OVERHEAD, row_deleter,
                         &h) != OM_OK) {
        free(row);
        h = NULL;
    }
    free(heap);
    return h;
}

uint64_t
lsm_table_cache_row_hits(const lsm_table_cache *tc)
{
    return tc->rows != NULL ? lsm_cache_hits(tc->rows) : 0;
}

size_t
lsm_table_cache_row_bytes(lsm_table_cache *tc)
{
    return tc->rows != NULL ? lsm_cache_usage(tc->rows) : 0;
}

uint64_t
lsm_table_cache_row_misses(const lsm_table_cache *tc)
{
    return tc->rows != NULL ? lsm_cache_misses(tc->rows) : 0;
}

size_t
lsm_table_cache_row_usage(lsm_table_cache *tc)
{
    return tc->rows != NULL ? lsm_cache_usage(tc->rows) : 0;
}
