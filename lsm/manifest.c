/*
 * lsm/manifest.c -- version edits (encoding), versions (building, lookups
 * of overlapping files) and the version set (MANIFEST writing and recovery).
 * The concurrency scheme is in manifest.h; the byte layout in FORMAT.md
 * ("MANIFEST").
 */
#define OM_LOG_MODULE "lsm"
#include "lsm/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/filename.h"
#include "util/coding.h"

enum {
    EDIT_LOG_NUMBER = 1,
    EDIT_NEXT_FILE = 2,
    EDIT_LAST_SEQ = 3,
    EDIT_CPTR = 4,
    EDIT_DEL_FILE = 5,
    EDIT_NEW_FILE = 6,
};

/* ---- file descriptions ---- */

om_status
lsm_file_meta_new(uint64_t number, uint64_t size, om_slice smallest, om_slice largest,
                  lsm_file_meta **out)
{
    lsm_file_meta *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&f->refs, 1);
    atomic_init(&f->obsolete, false);
    atomic_init(&f->pin.ref, NULL);
    f->number = number;
    f->size = size;
    if (om_buf_set(&f->smallest, smallest) != OM_OK || om_buf_set(&f->largest, largest) != OM_OK) {
        om_buf_free(&f->smallest);
        free(f);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = f;
    return OM_OK;
}

void
lsm_file_meta_ref(lsm_file_meta *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void
lsm_file_meta_unref(lsm_file_meta *f)
{
    if (f == NULL || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* No version lists the file any more, so no reader uses the pin. */
    if (f->vs != NULL && f->vs->tc != NULL)
        lsm_table_cache_unpin(f->vs->tc, &f->pin);
    if (f->vs != NULL && atomic_load(&f->obsolete))
        lsm_vset_drop_table(f->vs, f->number, f->size);
    om_buf_free(&f->smallest);
    om_buf_free(&f->largest);
    free(f);
}

/* ---- edits ---- */

void
lsm_edit_init(lsm_edit *e)
{
    memset(e, 0, sizeof(*e));
}

void
lsm_edit_fini(lsm_edit *e)
{
    for (int i = 0; i < e->nadds; i++)
        lsm_file_meta_unref(e->adds[i].f);
    for (int i = 0; i < e->ncptr; i++)
        om_buf_free(&e->cptr[i].key);
    free(e->adds);
    free(e->dels);
    memset(e, 0, sizeof(*e));
}

static om_status
edit_grow(lsm_edit_file **arr, int n, int *cap)
{
    if (n < *cap)
        return OM_OK;
    int ncap = *cap ? *cap * 2 : 8;
    lsm_edit_file *a = realloc(*arr, sizeof(**arr) * (size_t)ncap);

    if (a == NULL)
        return OM_ERR(OM_E_NOMEM);
    *arr = a;
    *cap = ncap;
    return OM_OK;
}

om_status
lsm_edit_add_file(lsm_edit *e, int level, uint64_t number, uint64_t size, om_slice smallest,
                  om_slice largest)
{
    lsm_file_meta *f;

    OM_TRY(edit_grow(&e->adds, e->nadds, &e->cap_adds));
    OM_TRY(lsm_file_meta_new(number, size, smallest, largest, &f));
    e->adds[e->nadds++] = (lsm_edit_file){.level = level, .f = f, .number = number};
    return OM_OK;
}

om_status
lsm_edit_del_file(lsm_edit *e, int level, uint64_t number)
{
    OM_TRY(edit_grow(&e->dels, e->ndels, &e->cap_dels));
    e->dels[e->ndels++] = (lsm_edit_file){.level = level, .f = NULL, .number = number};
    return OM_OK;
}

om_status
lsm_edit_set_cptr(lsm_edit *e, int level, om_slice ikey)
{
    for (int i = 0; i < e->ncptr; i++)
        if (e->cptr[i].level == level)
            return om_buf_set(&e->cptr[i].key, ikey);
    if (e->ncptr == LSM_MAX_LEVELS)
        return OM_ERR(OM_E_INVALID);
    e->cptr[e->ncptr].level = level;
    e->cptr[e->ncptr].key = OM_BUF_INIT;
    OM_TRY(om_buf_set(&e->cptr[e->ncptr].key, ikey));
    e->ncptr++;
    return OM_OK;
}

void
lsm_edit_set_log_number(lsm_edit *e, uint64_t n)
{
    e->has_log_number = true;
    e->log_number = n;
}

void
lsm_edit_set_next_file(lsm_edit *e, uint64_t n)
{
    e->has_next_file = true;
    e->next_file = n;
}

void
lsm_edit_set_last_seq(lsm_edit *e, uint64_t n)
{
    e->has_last_seq = true;
    e->last_seq = n;
}

om_status
lsm_edit_encode(const lsm_edit *e, om_buf *out)
{
    if (e->has_log_number) {
        OM_TRY(om_buf_put_varint32(out, EDIT_LOG_NUMBER));
        OM_TRY(om_buf_put_varint64(out, e->log_number));
    }
    if (e->has_next_file) {
        OM_TRY(om_buf_put_varint32(out, EDIT_NEXT_FILE));
        OM_TRY(om_buf_put_varint64(out, e->next_file));
    }
    if (e->has_last_seq) {
        OM_TRY(om_buf_put_varint32(out, EDIT_LAST_SEQ));
        OM_TRY(om_buf_put_varint64(out, e->last_seq));
    }
    for (int i = 0; i < e->ncptr; i++) {
        OM_TRY(om_buf_put_varint32(out, EDIT_CPTR));
        OM_TRY(om_buf_put_varint32(out, (uint32_t)e->cptr[i].level));
        OM_TRY(om_buf_put_lenpref(out, om_buf_slice(&e->cptr[i].key)));
    }
    for (int i = 0; i < e->ndels; i++) {
        OM_TRY(om_buf_put_varint32(out, EDIT_DEL_FILE));
        OM_TRY(om_buf_put_varint32(out, (uint32_t)e->dels[i].level));
        OM_TRY(om_buf_put_varint64(out, e->dels[i].number));
    }
    for (int i = 0; i < e->nadds; i++) {
        const lsm_file_meta *f = e->adds[i].f;

        OM_TRY(om_buf_put_varint32(out, EDIT_NEW_FILE));
        OM_TRY(om_buf_put_varint32(out, (uint32_t)e->adds[i].level));
        OM_TRY(om_buf_put_varint64(out, f->number));
        OM_TRY(om_buf_put_varint64(out, f->size));
        OM_TRY(om_buf_put_lenpref(out, om_buf_slice(&f->smallest)));
        OM_TRY(om_buf_put_lenpref(out, om_buf_slice(&f->largest)));
    }
    return OM_OK;
}

static om_status
edit_get_level(om_slice *in, int *level)
{
    uint32_t l;

    if (om_slice_get_varint32(in, &l) != OM_OK || l >= LSM_MAX_LEVELS)
        return OM_E_CORRUPT;
    *level = (int)l;
    return OM_OK;
}

static bool
edit_ikey_ok(om_slice k)
{
    lsm_ikey ik;

    return lsm_ikey_parse(k, &ik) == OM_OK;
}

om_status
lsm_edit_decode(om_slice in, lsm_edit *e)
{
    while (in.n > 0) {
        uint32_t tag;
        int level;
        uint64_t number, size;
        om_slice a, b;
        om_status st;

        if (om_slice_get_varint32(&in, &tag) != OM_OK)
            return OM_ERR(OM_E_CORRUPT);
        switch (tag) {
        case EDIT_LOG_NUMBER:
            if (om_slice_get_varint64(&in, &number) != OM_OK)
                return OM_ERR(OM_E_CORRUPT);
            lsm_edit_set_log_number(e, number);
            break;
        case EDIT_NEXT_FILE:
            if (om_slice_get_varint64(&in, &number) != OM_OK)
                return OM_ERR(OM_E_CORRUPT);
            lsm_edit_set_next_file(e, number);
            break;
        case EDIT_LAST_SEQ:
            if (om_slice_get_varint64(&in, &number) != OM_OK || number > LSM_MAX_SEQ)
                return OM_ERR(OM_E_CORRUPT);
            lsm_edit_set_last_seq(e, number);
            break;
        case EDIT_CPTR:
            if (edit_get_level(&in, &level) != OM_OK || om_slice_get_lenpref(&in, &a) != OM_OK ||
                !edit_ikey_ok(a))
                return OM_ERR(OM_E_CORRUPT);
            OM_TRY(lsm_edit_set_cptr(e, level, a));
            break;
        case EDIT_DEL_FILE:
            if (edit_get_level(&in, &level) != OM_OK ||
                om_slice_get_varint64(&in, &number) != OM_OK)
                return OM_ERR(OM_E_CORRUPT);
            OM_TRY(lsm_edit_del_file(e, level, number));
            break;
        case EDIT_NEW_FILE:
            if (edit_get_level(&in, &level) != OM_OK ||
                om_slice_get_varint64(&in, &number) != OM_OK ||
                om_slice_get_varint64(&in, &size) != OM_OK ||
                om_slice_get_lenpref(&in, &a) != OM_OK || om_slice_get_lenpref(&in, &b) != OM_OK ||
                !edit_ikey_ok(a) || !edit_ikey_ok(b) || lsm_ikey_cmp(a, b) > 0)
                return OM_ERR(OM_E_CORRUPT);
            st = lsm_edit_add_file(e, level, number, size, a, b);
            if (st != OM_OK)
                return st;
            break;
        default:
            return OM_ERR(OM_E_CORRUPT);
        }
    }
    return OM_OK;
}

/* ---- versions ---- */

void
lsm_version_ref(lsm_version *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void
lsm_version_unref(lsm_version *v)
{
    if (v == NULL || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        for (int i = 0; i < v->nfiles[l]; i++)
            lsm_file_meta_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

uint64_t
lsm_version_level_bytes(const lsm_version *v, int level)
{
    uint64_t sum = 0;

    for (int i = 0; i < v->nfiles[level]; i++)
        sum += v->files[level][i]->size;
    return sum;
}

uint64_t
lsm_level_max_bytes(const lsm_opts *o, int level)
{
    double r = (double)o->max_bytes_for_level1;

    for (int l = 1; l < level; l++)
        r *= o->level_multiplier;
    return r > 1.8e19 ? UINT64_MAX : (uint64_t)r;
}

static int
version_cmp_number(const void *a, const void *b)
{
    const lsm_file_meta *fa = *(lsm_file_meta *const *)a, *fb = *(lsm_file_meta *const *)b;

    return fa->number < fb->number ? -1 : fa->number > fb->number;
}

static int
version_cmp_smallest(const void *a, const void *b)
{
    const lsm_file_meta *fa = *(lsm_file_meta *const *)a, *fb = *(lsm_file_meta *const *)b;
    int r = lsm_ikey_cmp(om_buf_slice(&fa->smallest), om_buf_slice(&fb->smallest));

    return r != 0 ? r : version_cmp_number(a, b);
}

static void
version_score(lsm_version *v, const lsm_opts *o)
{
    v->score = -1;
    v->score_level = -1;
    for (int l = 0; l < LSM_MAX_LEVELS - 1; l++) {
        double s;

        if (l == 0)
            s = (double)v->nfiles[0] /
                (o->l0_compaction_trigger > 0 ? o->l0_compaction_trigger : 1);
        else
            s = (double)lsm_version_level_bytes(v, l) / (double)lsm_level_max_bytes(o, l);
        if (s > v->score) {
            v->score = s;
            v->score_level = l;
        }
    }
}

uint64_t
lsm_version_debt(const lsm_version *v, const lsm_opts *o)
{
    uint64_t debt = 0;

    if (v->nfiles[0] >= o->l0_compaction_trigger)
        debt = lsm_version_level_bytes(v, 0);
    for (int l = 1; l < LSM_MAX_LEVELS - 1; l++) {
        uint64_t bytes = lsm_version_level_bytes(v, l), target = lsm_level_max_bytes(o, l);

        if (bytes > target)
            debt += bytes - target;
    }
    return debt;
}

static bool
edit_deletes(const lsm_edit *e, int level, uint64_t number)
{
    for (int i = 0; i < e->ndels; i++)
        if (e->dels[i].level == level && e->dels[i].number == number)
            return true;
    return false;
}

om_status
lsm_version_apply(const lsm_version *base, const lsm_edit *e, const lsm_opts *o, lsm_version **out)
{
    lsm_version *v = calloc(1, sizeof(*v));
    om_status st = OM_OK;

    if (v == NULL)
        return OM_ERR(OM_E_NOMEM);
    atomic_init(&v->refs, 1);
    /* Every deleted file must exist in base. */
    for (int i = 0; i < e->ndels; i++) {
        bool found = false;

        for (int j = 0; base != NULL && j < base->nfiles[e->dels[i].level] && !found; j++)
            found = base->files[e->dels[i].level][j]->number == e->dels[i].number;
        if (!found)
            OM_GOTO(OM_ERR(OM_E_CORRUPT));
    }
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        int cap = (base ? base->nfiles[l] : 0), n = 0;

        for (int i = 0; i < e->nadds; i++)
            cap += e->adds[i].level == l;
        if (cap == 0)
            continue;
        v->files[l] = malloc(sizeof(lsm_file_meta *) * (size_t)cap);
        if (v->files[l] == NULL)
            OM_GOTO(OM_ERR(OM_E_NOMEM));
        for (int i = 0; base != NULL && i < base->nfiles[l]; i++) {
            lsm_file_meta *f = base->files[l][i];

            if (edit_deletes(e, l, f->number))
                continue;
            lsm_file_meta_ref(f);
            v->files[l][n++] = f;
            v->nfiles[l] = n;
        }
        for (int i = 0; i < e->nadds; i++) {
            if (e->adds[i].level != l)
                continue;
            lsm_file_meta_ref(e->adds[i].f);
            v->files[l][n++] = e->adds[i].f;
            v->nfiles[l] = n;
        }
        qsort(v->files[l], (size_t)n, sizeof(lsm_file_meta *),
              l == 0 ? version_cmp_number : version_cmp_smallest);
        for (int i = 1; i < n; i++) {
            if (v->files[l][i]->number == v->files[l][i - 1]->number)
                OM_GOTO(OM_ERR(OM_E_CORRUPT));
            if (l > 0 && om_slice_cmp(lsm_ikey_user(om_buf_slice(&v->files[l][i - 1]->largest)),
                                      lsm_ikey_user(om_buf_slice(&v->files[l][i]->smallest))) >= 0)
                OM_GOTO(OM_ERR(OM_E_CORRUPT));
        }
    }
    version_score(v, o);
    *out = v;
    return OM_OK;
fail:
    lsm_version_unref(v);
    return st;
}

int
lsm_version_find_file(const lsm_version *v, int level, om_slice ikey)
{
    int lo = 0, hi = v->nfiles[level];

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (lsm_ikey_cmp(om_buf_slice(&v->files[level][mid]->largest), ikey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool
range_before(om_slice largest_user, om_slice begin)
{
    return begin.n > 0 && om_slice_cmp(largest_user, begin) < 0;
}

static bool
range_after(om_slice smallest_user, om_slice end)
{
    return end.n > 0 && om_slice_cmp(smallest_user, end) > 0;
}

om_status
lsm_version_overlaps(const lsm_version *v, int level, om_slice begin, om_slice end,
                     lsm_file_meta ***out, int *n)
{
    om_buf b = OM_BUF_INIT, en = OM_BUF_INIT;
    om_status st = OM_OK;
    int start = *n;
    bool restart;

    OM_GOTO(om_buf_set(&b, begin));
    OM_GOTO(om_buf_set(&en, end));
    do {
        restart = false;
        *n = start;
        for (int i = 0; i < v->nfiles[level]; i++) {
            lsm_file_meta *f = v->files[level][i];
            om_slice fs = lsm_ikey_user(om_buf_slice(&f->smallest));
            om_slice fl = lsm_ikey_user(om_buf_slice(&f->largest));
            lsm_file_meta **arr;

            if (range_before(fl, om_buf_slice(&b)) || range_after(fs, om_buf_slice(&en)))
                continue;
            arr = realloc(*out, sizeof(*arr) * (size_t)(*n + 1));
            if (arr == NULL)
                OM_GOTO(OM_ERR(OM_E_NOMEM));
            *out = arr;
            arr[(*n)++] = f;
            if (level == 0) {
                /* L0 files overlap each other: widen the range and start over. */
                if (b.n > 0 && om_slice_cmp(fs, om_buf_slice(&b)) < 0) {
                    OM_GOTO(om_buf_set(&b, fs));
                    restart = true;
                }
                if (en.n > 0 && om_slice_cmp(fl, om_buf_slice(&en)) > 0) {
                    OM_GOTO(om_buf_set(&en, fl));
                    restart = true;
                }
                if (restart)
                    break;
            }
        }
    } while (restart);
fail:
    om_buf_free(&b);
    om_buf_free(&en);
    return st;
}
