/*
 * lsm/db_read.c -- point reads: lsm_get / lsm_get_ex, lsm_may_contain and
 * the memtable read-ahead stages of lsm_prefetch / lsm_prefetch_values
 * (the table read-ahead of lsm_prefetch_reads is db_prefetch.c's).
 *
 * A get takes the current read view (lsm_db_sv_get: memtable, immutable
 * memtables, version, all referenced) and searches newest first: the active
 * memtable, the immutables newest first, then the version's tables -- every
 * L0 table whose range covers the key, newest first, then the one file of
 * each deeper level whose range does. The first entry found answers: a value
 * or a tombstone (OM_E_NOTFOUND). A table lookup goes through the row cache
 * when it is on (a hit answers without touching a block; a miss fills the
 * row from the table) and otherwise through the table's bloom filter and
 * block index. The read view keeps every memtable and table it names alive
 * for the get's duration; nothing here takes db->mu.
 *
 * Thread-safety: every function here may be called from any thread,
 * concurrently with writers, flushes and compactions.
 */
#define OM_LOG_MODULE "lsm"
#include <stdlib.h>
#include <string.h>

#include "lsm/db_int.h"
#include "util/coding.h"
#include "util/checksum.h"

typedef struct db_get_ctx {
    bool found;
    lsm_vtype type;
    om_buf *value;
    size_t max; /* copy at most this much of the value (LSM_GET_HEAD) */
    om_status st;
} db_get_ctx;

/* Answer a get from the entry it found: a value or a tombstone. */
static void
db_answer(db_get_ctx *c, lsm_vtype type, om_slice value)
{
    c->found = true;
    c->type = type;
    if (value.n > c->max)
        value.n = c->max;
    c->st = type == LSM_TYPE_VAL ? om_buf_set(c->value, value) : OM_E_NOTFOUND;
}

static void
db_get_cb(void *arg, om_slice ikey, om_slice value)
{
    db_get_ctx *c = arg;
    lsm_ikey ik;

    if (lsm_ikey_parse(ikey, &ik) != OM_OK) {
        c->found = true;
        c->st = OM_ERR(OM_E_CORRUPT);
        return;
    }
    db_answer(c, ik.type, value);
}

/*
 * One point lookup's walk over the tables of a version. A missing key is
 * usually turned away by every table's bloom filter, so that path is kept
 * lean: the key is hashed once for all tables (on the first table that has a
 * filter), the filter checks are counted here and added to the shared
 * statistics once per get, and a table's block search only starts when its
 * filter lets the key through.
 */
typedef struct db_probe {
    om_slice key; /* user key */
    uint64_t hash;
    bool hashed;
    uint32_t checks, useful;
    size_t max; /* value bytes wanted (LSM_GET_HEAD) */
} db_probe;

/* The user key's om_hash64, computed on first use. */
static inline uint64_t
db_probe_hash(db_probe *p)
{
    if (!p->hashed) {
        p->hash = om_hash64(p->key.p, p->key.n);
        p->hashed = true;
    }
    return p->hash;
}

static void
db_probe_count(lsm_db *db, const db_probe *p)
{
    if (p->checks == 0)
        return;
    atomic_fetch_add_explicit(&db->tstats.bloom_checks, p->checks, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->tstats.bloom_useful, p->useful, memory_order_relaxed);
}

/* The open table of f, pinned in the file description (released when no version lists it). */
static inline om_status
db_table_borrow(lsm_db *db, lsm_file_meta *f, lsm_table_ref **ref, bool *owned)
{
    return lsm_table_cache_borrow(db->tc, f->vs != NULL ? &f->pin : NULL, f->number, f->size, ref,
                                  owned);
}

/* Whether the table may hold the probe's key (its filter; true without one). */
static inline bool
db_table_may_contain(lsm_sst *t, db_probe *p)
{
    if (!lsm_sst_has_filter(t))
        return true;
    p->checks++;
    if (lsm_sst_may_contain_hash(t, db_probe_hash(p)))
        return true;
    p->useful++;
    return false;
}

/*
 * The lookup key (key, seq, LSM_TYPE_SEEK) in stackbuf, or in *heap (which
 * the caller frees) when the key is too long for it. Returns false if out of memory.
 */
#define DB_LOOKUP_STACK 256
static bool
db_lookup_key(om_slice key, uint64_t seq, uint8_t *stackbuf, uint8_t **heap, om_slice *out)
{
    uint8_t *kp = stackbuf;

    *heap = NULL;
    if (key.n + LSM_TRAILER_SIZE > DB_LOOKUP_STACK) {
        *heap = malloc(key.n + LSM_TRAILER_SIZE);
        if (*heap == NULL)
            return false;
        kp = *heap;
    }
    if (key.n > 0)
        memcpy(kp, key.p, key.n);
    om_put_fixed64(kp + key.n, lsm_trailer_pack(seq, LSM_TYPE_SEEK));
    *out = om_slice_make(kp, key.n + LSM_TRAILER_SIZE);
    return true;
}

/* Answer a get from a row (value or tombstone). */
static void
db_row_answer(db_get_ctx *c, const lsm_row *row)
{
    db_answer(c, (lsm_vtype)(row->trailer & 0xff), om_slice_make(row->value, row->n));
}

/* Collects the table's newest entry of a key into a new row (a row cache fill). */
typedef struct db_row_fill {
    lsm_row *row;
    om_status st;
} db_row_fill;

static void
db_row_fill_cb(void *arg, om_slice ikey, om_slice value)
{
    db_row_fill *rf = arg;
    lsm_ikey ik;

    if (lsm_ikey_parse(ikey, &ik) != OM_OK) {
        rf->st = OM_ERR(OM_E_CORRUPT);
        return;
    }
    rf->row = lsm_row_new(lsm_trailer_pack(ik.seq, ik.type),
                          ik.type == LSM_TYPE_VAL ? value : om_slice_make(NULL, 0));
    if (rf->row == NULL)
        rf->st = OM_ERR(OM_E_NOMEM);
}

/*
 * lsm_sst_get_unfiltered through the row cache. A cached row is the table's
 * newest entry of the key; it answers when its sequence is visible at the
 * lookup's sequence. A miss reads the newest entry (lookup at LSM_MAX_SEQ),
 * caches it, and answers from it when visible. An older snapshot than the
 * row asks the table at its own sequence (the row cannot tell which older
 * entry, if any, the table holds). Returns as lsm_sst_get_unfiltered.
 */
typedef struct db_row_peek {
    uint64_t seq; /* the read's sequence */
    db_get_ctx *c;
    bool answered; /* false: the row is newer than the read */
} db_row_peek;

/* Under the row cache shard's lock: answer from the row when the read sees it. */
static void
db_row_peek_cb(void *arg, const void *value)
{
    db_row_peek *rp = arg;
    const lsm_row *row = value;

    if ((row->trailer >> 8) <= rp->seq) {
        db_row_answer(rp->c, row);
        rp->answered = true;
    }
}

static om_status
db_row_get(lsm_db *db, lsm_sst *t, uint64_t number, om_slice lookup, db_probe *p, db_get_ctx *c)
{
    uint64_t seq = om_get_fixed64(lookup.p + lookup.n - LSM_TRAILER_SIZE) >> 8;
    db_row_peek rp = {.seq = seq, .c = c, .answered = false};
    uint8_t stackbuf[DB_LOOKUP_STACK], *heap;
    om_slice newest;
    db_row_fill rf = {.row = NULL, .st = OM_OK};
    lsm_cache_handle *h;
    const lsm_row *row;
    om_status st;

    /* A hit copies the value out under the shard lock: no pin, one lock round trip. */
    if (lsm_table_cache_row_peek(db->tc, number, p->key, db_row_peek_cb, &rp))
        return rp.answered ? OM_OK : lsm_sst_get_unfiltered(t, lookup, true, db_get_cb, c);
    /* A first miss in a full row cache is not cached (admission, lsm/cache.c): a plain read. */
    if (!lsm_table_cache_row_admit(db->tc, number, p->key))
        return lsm_sst_get_unfiltered(t, lookup, true, db_get_cb, c);
    if (!db_lookup_key(p->key, LSM_MAX_SEQ, stackbuf, &heap, &newest))
        return OM_ERR(OM_E_NOMEM);
    st = lsm_sst_get_unfiltered(t, newest, true, db_row_fill_cb, &rf);
    free(heap);
    if (st != OM_OK || rf.st != OM_OK) {
        free(rf.row);
        return st != OM_OK ? st : rf.st;
    }
    row = rf.row;
    h = lsm_table_cache_row_insert(db->tc, number, p->key, rf.row);
    if (h == NULL) /* out of memory: the row is gone, ask the table as without a cache */
        return lsm_sst_get_unfiltered(t, lookup, true, db_get_cb, c);
    if ((row->trailer >> 8) > seq) {
        lsm_table_cache_row_release(db->tc, h);
        return lsm_sst_get_unfiltered(t, lookup, true, db_get_cb, c);
    }
    db_row_answer(c, row);
    lsm_table_cache_row_release(db->tc, h);
    return OM_OK;
}

/* Look key up in one table (rows: via the row cache); *done when the table decided the answer. */
static om_status
db_table_get(lsm_db *db, lsm_file_meta *f, om_slice lookup, db_probe *p, bool rows, om_buf *value,
             bool *done)
{
    db_get_ctx c = {.value = value, .max = p->max, .st = OM_OK};
    lsm_table_ref *ref;
    bool owned;
    om_status st = db_table_borrow(db, f, &ref, &owned);

    if (st == OM_OK) {
        lsm_sst *t = lsm_table_ref_sst(ref);

        if (!db_table_may_contain(t, p))
            st = OM_E_NOTFOUND;
        else if (rows && lsm_table_cache_has_rows(db->tc))
            st = db_row_get(db, t, f->number, lookup, p, &c);
        else
            st = lsm_sst_get_unfiltered(t, lookup, true, db_get_cb, &c);
        if (owned)
            lsm_table_cache_unref(db->tc, ref);
    }
    if (st == OM_E_NOTFOUND) {
        *done = false;
        return OM_OK;
    }
    if (st != OM_OK) {
        *done = true;
        return st;
    }
    *done = c.found;
    return c.st;
}

/* rows: through the row cache (when there is one). */
static om_status
db_version_get(lsm_db *db, const lsm_version *v, om_slice key, uint64_t seq, om_buf *value,
               bool rows, size_t max)
{
    uint8_t stackbuf[DB_LOOKUP_STACK], *heap;
    om_slice lk;
    db_probe p = {.key = key, .max = max};
    bool done = false;
    om_status st;

    /* The lookup key goes on the stack: no allocation per get. */
    if (!db_lookup_key(key, seq, stackbuf, &heap, &lk))
        return OM_ERR(OM_E_NOMEM);
    for (int i = v->nfiles[0] - 1; i >= 0; i--) {
        if (!lsm_db_file_covers(v->files[0][i], key))
            continue;
        st = db_table_get(db, v->files[0][i], lk, &p, rows, value, &done);
        if (done)
            goto out;
    }
    for (int l = 1; l < LSM_MAX_LEVELS; l++) {
        int idx;

        if (v->nfiles[l] == 0)
            continue;
        idx = lsm_version_find_file(v, l, lk);
        if (idx >= v->nfiles[l] || !lsm_db_file_covers(v->files[l][idx], key))
            continue;
        st = db_table_get(db, v->files[l][idx], lk, &p, rows, value, &done);
        if (done)
            goto out;
    }
    st = OM_E_NOTFOUND;
out:
    db_probe_count(db, &p);
    free(heap);
    return st;
}

/* The bloom check of lsm_may_contain for one file (true when the table cannot be opened). */
static bool
db_file_may_contain(lsm_db *db, lsm_file_meta *f, db_probe *p)
{
    lsm_table_ref *ref;
    bool owned, r;

    if (!lsm_db_file_covers(f, p->key))
        return false;
    if (db_table_borrow(db, f, &ref, &owned) != OM_OK)
        return true; /* the error surfaces on a real read */
    r = db_table_may_contain(lsm_table_ref_sst(ref), p);
    if (owned)
        lsm_table_cache_unref(db->tc, ref);
    return r;
}

om_status
lsm_get(lsm_db *db, const lsm_snapshot *snap, om_slice key, om_buf *value)
{
    return lsm_get_ex(db, snap, key, value, 0);
}

om_status
lsm_get_ex(lsm_db *db, const lsm_snapshot *snap, om_slice key, om_buf *value, unsigned flags)
{
    size_t max = flags & LSM_GET_HEAD ? LSM_GET_HEAD_BYTES : SIZE_MAX;
    uint64_t last;
    lsm_sv *sv;
    om_slice mv;
    bool found;
    om_status st;

    if (key.n > LSM_MAX_KEY_SIZE)
        return OM_ERR(OM_E_INVALID);
    sv = lsm_db_sv_get(db, &last);
    if (snap != NULL)
        last = snap->seq;
    found = lsm_mem_find(sv->mem, key, last, &mv, &st);
    for (int i = sv->nimm - 1; i >= 0 && !found; i--)
        found = lsm_mem_find(sv->imm[i], key, last, &mv, &st);
    if (found) {
        if (st == OM_OK)
            st = om_buf_set(value, om_slice_make(mv.p, mv.n < max ? mv.n : max));
        goto out;
    }
    st = db_version_get(db, sv->v, key, last, value, (flags & LSM_GET_NO_FILL) == 0, max);
out:
    lsm_sv_unref(sv);
    return st;
}

/* Run one of the active memtable's prefetch stages over keys. */
static void
db_mem_prefetch(lsm_db *db, const om_slice *keys, size_t n,
                void (*stage)(const lsm_memtable *, const om_slice *, size_t))
{
    uint64_t last;
    lsm_sv *sv;

    if (n == 0)
        return;
    sv = lsm_db_sv_get(db, &last);
    stage(sv->mem, keys, n);
    lsm_sv_unref(sv);
}

void
lsm_prefetch(lsm_db *db, const om_slice *keys, size_t n)
{
    db_mem_prefetch(db, keys, n, lsm_mem_prefetch_gets);
}

void
lsm_prefetch_values(lsm_db *db, const om_slice *keys, size_t n)
{
    db_mem_prefetch(db, keys, n, lsm_mem_prefetch_values);
}

bool
lsm_may_contain(lsm_db *db, om_slice key)
{
    uint64_t last;
    lsm_sv *sv = lsm_db_sv_get(db, &last);
    const lsm_version *v = sv->v;
    uint8_t stackbuf[DB_LOOKUP_STACK], *heap = NULL;
    om_slice lk;
    db_probe p = {.key = key};
    bool r = true;

    if (lsm_mem_has_key(sv->mem, key))
        goto out;
    for (int i = 0; i < sv->nimm; i++)
        if (lsm_mem_has_key(sv->imm[i], key))
            goto out;
    for (int i = v->nfiles[0] - 1; i >= 0; i--)
        if (db_file_may_contain(db, v->files[0][i], &p))
            goto out;
    if (!db_lookup_key(key, LSM_MAX_SEQ, stackbuf, &heap, &lk))
        goto out;
    for (int l = 1; l < LSM_MAX_LEVELS; l++) {
        int idx;
        lsm_file_meta *f;

        if (v->nfiles[l] == 0)
            continue;
        idx = lsm_version_find_file(v, l, lk);
        if (idx >= v->nfiles[l])
            continue;
        f = v->files[l][idx];
        if (db_file_may_contain(db, f, &p))
            goto out;
    }
    r = false;
out:
    db_probe_count(db, &p);
    free(heap);
    lsm_sv_unref(sv);
    return r;
}
