/*
 * lsm/db_iter.c -- the public iterator, the level iterator and the merged
 * internal view of a database.
 *
 * The internal view of a read view (sv) merges: the active memtable, the
 * immutables, every L0 table (they overlap), and one level iterator per
 * deeper level. A level iterator walks the sorted, disjoint files of a level
 * and opens each table (through the table cache) only when it gets there,
 * so a short scan touches few files.
 *
 * The public iterator reads that merge in internal-key order: for each user
 * key the first entry with a sequence <= the snapshot is the newest visible
 * one; if it is a tombstone the key is skipped, otherwise it is returned and
 * the older entries of the key are skipped on the next step. Bounds cut the
 * walk at [lower, upper). The iterator pins its read view (memtables and
 * version, hence the files) until it is freed.
 */
#include <stdlib.h>
#include <string.h>

#include "lsm/db_int.h"

/* ---- level iterator ---- */

typedef struct level_it {
    lsm_it base;
    lsm_table_cache *tc;
    lsm_file_meta *const *files;
    int n;
    bool fill;
    int idx;
    lsm_it *cur;
    om_status st;
} level_it;

static bool
level_it_valid(const lsm_it *it)
{
    const level_it *li = (const level_it *)it;

    return li->st == OM_OK && li->cur != NULL && lsm_it_valid(li->cur);
}

static void
level_it_open(level_it *li)
{
    lsm_file_meta *f;

    lsm_it_free(li->cur);
    li->cur = NULL;
    if (li->idx >= li->n)
        return;
    f = li->files[li->idx];
    li->st = lsm_table_cache_iter_new(li->tc, f->number, f->size, li->fill, &li->cur);
    if (li->st != OM_OK)
        li->cur = NULL;
}

/* Move to the next file while the current one is exhausted. */
static void
level_it_skip(level_it *li)
{
    while (li->st == OM_OK && li->cur != NULL && !lsm_it_valid(li->cur)) {
        li->st = lsm_it_status(li->cur);
        if (li->st != OM_OK)
            return;
        li->idx++;
        level_it_open(li);
        if (li->cur != NULL)
            lsm_it_seek_first(li->cur);
    }
}

static void
level_it_seek_first(lsm_it *it)
{
    level_it *li = (level_it *)it;

    li->st = OM_OK;
    li->idx = 0;
    level_it_open(li);
    if (li->cur != NULL)
        lsm_it_seek_first(li->cur);
    level_it_skip(li);
}

static void
level_it_seek(lsm_it *it, om_slice ikey)
{
    level_it *li = (level_it *)it;
    int lo = 0, hi = li->n;

    while (lo < hi) { /* first file whose largest key >= ikey */
        int mid = lo + (hi - lo) / 2;

        if (lsm_ikey_cmp(om_buf_slice(&li->files[mid]->largest), ikey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    li->st = OM_OK;
    li->idx = lo;
    level_it_open(li);
    if (li->cur != NULL)
        lsm_it_seek(li->cur, ikey);
    level_it_skip(li);
}

static void
level_it_next(lsm_it *it)
{
    level_it *li = (level_it *)it;

    lsm_it_next(li->cur);
    level_it_skip(li);
}

static om_slice
level_it_key(const lsm_it *it)
{
    return lsm_it_key(((const level_it *)it)->cur);
}

static om_slice
level_it_value(const lsm_it *it)
{
    return lsm_it_value(((const level_it *)it)->cur);
}

static om_status
level_it_status(const lsm_it *it)
{
    const level_it *li = (const level_it *)it;

    if (li->st != OM_OK)
        return li->st;
    return li->cur != NULL ? lsm_it_status(li->cur) : OM_OK;
}

static void
level_it_free(lsm_it *it)
{
    level_it *li = (level_it *)it;

    lsm_it_free(li->cur);
    free(li);
}

static const lsm_it_ops level_it_ops = LSM_IT_OPS(level_it, level_it_free);

om_status
lsm_level_iter_new(lsm_table_cache *tc, lsm_file_meta *const *files, int n, bool fill_cache,
                   lsm_it **out)
{
    level_it *li = calloc(1, sizeof(*li));

    if (li == NULL)
        return OM_ERR(OM_E_NOMEM);
    li->base.ops = &level_it_ops;
    li->tc = tc;
    li->files = files;
    li->n = n;
    li->fill = fill_cache;
    li->idx = n;
    *out = &li->base;
    return OM_OK;
}

/* ---- merged internal view ---- */

om_status
lsm_db_internal_iter(lsm_db *db, lsm_sv *sv, bool fill_cache, lsm_it **out)
{
    const lsm_version *v = sv->v;
    int n = 0, cap = 1 + sv->nimm + v->nfiles[0] + LSM_MAX_LEVELS;
    lsm_it **kids = calloc((size_t)cap, sizeof(*kids));
    om_status st;

    if (kids == NULL)
        return OM_ERR(OM_E_NOMEM);
    OM_GOTO(lsm_mem_iter(sv->mem, &kids[n]));
    n++;
    for (int i = sv->nimm - 1; i >= 0; i--) {
        OM_GOTO(lsm_mem_iter(sv->imm[i], &kids[n]));
        n++;
    }
    for (int i = v->nfiles[0] - 1; i >= 0; i--) {
        const lsm_file_meta *f = v->files[0][i];

        OM_GOTO(lsm_table_cache_iter_new(db->tc, f->number, f->size, fill_cache, &kids[n]));
        n++;
    }
    for (int l = 1; l < LSM_MAX_LEVELS; l++) {
        if (v->nfiles[l] == 0)
            continue;
        OM_GOTO(lsm_level_iter_new(db->tc, v->files[l], v->nfiles[l], fill_cache, &kids[n]));
        n++;
    }
    st = lsm_merge_it_new(kids, n, out);
    free(kids);
    return st;
fail:
    for (int i = 0; i < n; i++)
        lsm_it_free(kids[i]);
    free(kids);
    return st;
}

/* ---- public iterator ---- */

struct lsm_iter {
    lsm_db *db;
    lsm_sv *sv;
    lsm_it *it;
    uint64_t seq;
    om_buf lower, upper;
    om_buf skip; /* user key to move past */
    om_buf tgt;  /* seek target */
    bool valid;
    om_status st;
};

void
lsm_iter_opts_init(lsm_iter_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->fill_cache = true;
}

om_status
lsm_iter_new(lsm_db *db, const lsm_iter_opts *opts, lsm_iter **out)
{
    lsm_iter_opts defaults;
    lsm_iter *it = calloc(1, sizeof(*it));
    om_status st;

    if (it == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (opts == NULL) {
        lsm_iter_opts_init(&defaults);
        opts = &defaults;
    }
    it->db = db;
    it->sv = lsm_db_sv_get(db, &it->seq);
    if (opts->snapshot != NULL)
        it->seq = opts->snapshot->seq;
    OM_GOTO(om_buf_set(&it->lower, opts->lower));
    OM_GOTO(om_buf_set(&it->upper, opts->upper));
    OM_GOTO(lsm_db_internal_iter(db, it->sv, opts->fill_cache, &it->it));
    *out = it;
    return OM_OK;
fail:
    lsm_iter_free(it);
    return st;
}

void
lsm_iter_free(lsm_iter *it)
{
    if (it == NULL)
        return;
    lsm_it_free(it->it);
    lsm_sv_unref(it->sv);
    om_buf_free(&it->lower);
    om_buf_free(&it->upper);
    om_buf_free(&it->skip);
    om_buf_free(&it->tgt);
    free(it);
}

/* From the internal position, find the next visible live entry. */
static void
iter_find(lsm_iter *it, bool skipping)
{
    it->valid = false;
    while (lsm_it_valid(it->it)) {
        lsm_ikey ik;

        if (lsm_ikey_parse(lsm_it_key(it->it), &ik) != OM_OK) {
            it->st = OM_ERR(OM_E_CORRUPT);
            return;
        }
        if (ik.seq > it->seq ||
            (skipping && om_slice_cmp(ik.user_key, om_buf_slice(&it->skip)) <= 0)) {
            lsm_it_next(it->it);
            continue;
        }
        if (it->upper.n > 0 && om_slice_cmp(ik.user_key, om_buf_slice(&it->upper)) >= 0)
            return;
        if (ik.type == LSM_TYPE_VAL) {
            it->valid = true;
            return;
        }
        if (om_buf_set(&it->skip, ik.user_key) != OM_OK) {
            it->st = OM_ERR(OM_E_NOMEM);
            return;
        }
        skipping = true;
        lsm_it_next(it->it);
    }
    it->st = lsm_it_status(it->it);
}

void
lsm_iter_seek(lsm_iter *it, om_slice key)
{
    if (it->lower.n > 0 && om_slice_cmp(key, om_buf_slice(&it->lower)) < 0)
        key = om_buf_slice(&it->lower);
    it->st = OM_OK;
    om_buf_reset(&it->tgt);
    if (lsm_ikey_append(&it->tgt, key, it->seq, LSM_TYPE_SEEK) != OM_OK) {
        it->valid = false;
        it->st = OM_ERR(OM_E_NOMEM);
        return;
    }
    lsm_it_seek(it->it, om_buf_slice(&it->tgt));
    iter_find(it, false);
}

void
lsm_iter_seek_first(lsm_iter *it)
{
    if (it->lower.n > 0) {
        lsm_iter_seek(it, om_buf_slice(&it->lower));
        return;
    }
    it->st = OM_OK;
    lsm_it_seek_first(it->it);
    iter_find(it, false);
}

void
lsm_iter_next(lsm_iter *it)
{
    if (!it->valid)
        return;
    if (om_buf_set(&it->skip, lsm_ikey_user(lsm_it_key(it->it))) != OM_OK) {
        it->valid = false;
        it->st = OM_ERR(OM_E_NOMEM);
        return;
    }
    lsm_it_next(it->it);
    iter_find(it, true);
}

bool
lsm_iter_valid(const lsm_iter *it)
{
    return it->valid && it->st == OM_OK;
}

om_slice
lsm_iter_key(const lsm_iter *it)
{
    return lsm_ikey_user(lsm_it_key(it->it));
}

om_slice
lsm_iter_value(const lsm_iter *it)
{
    return lsm_it_value(it->it);
}

om_status
lsm_iter_status(const lsm_iter *it)
{
    return it->st;
}
