/*
 * lsm/db_prefetch.c -- lsm_prefetch_reads: read-ahead for a batch of point
 * reads (see lsm.h).
 *
 * A get that misses the CPU cache waits for memory several times in a row:
 * the memtable's hash bucket, the node, the value; or, for a key that lives
 * in a table, the row cache's slot, its entry, the row. A server that has a
 * batch of gets in hand (the pipelined requests of one socket read) can
 * start those loads for all of them first, so that the waits overlap: each
 * round below starts every key's next load, then waits once for the round's
 * loads together instead of once per key.
 *
 * The rounds follow the order a get searches in: the active memtable
 * (buckets, chain heads, values: lsm_mem_prefetch_find), then, for the keys
 * not found there, each immutable memtable, newest first; then, for the
 * keys still not found and when the row cache is on, the rows of every
 * table a get may consult (each L0 table whose range covers the key, and
 * the one file of each deeper level that does) through
 * lsm_table_cache_row_prefetch -- in two rounds: first every such table's
 * bloom filter line loads (tables are pinned, and so open, after their first
 * lookup), then each key's tables are asked in the get's order and rows are
 * hinted up to the first table whose filter admits the key, so a key costs
 * one row probe instead of one per table. Everything here is a hint: it reads the same structures
 * as a get under the same rules (the read view is referenced, the cache's shards are locked) and
 * changes nothing.
 */
#include <string.h>

#include "lsm/db_int.h"
#include "lsm/lsm.h"
#include "util/checksum.h"
#include "util/coding.h"

/* Keys handled per round: the width of the memtable rounds. */
#define PF_KEYS 32
/* Internal lookup keys of the deeper levels' file search, per key. */
#define PF_LOOKUP_MAX 256

/* Collects (table, key) pairs and hands them to the row cache in chunks. */
typedef struct pf_rows {
    lsm_table_cache *tc;
    uint64_t numbers[LSM_CACHE_PREFETCH_MAX];
    om_slice keys[LSM_CACHE_PREFETCH_MAX];
    size_t n;
} pf_rows;

static void
pf_rows_flush(pf_rows *r)
{
    if (r->n > 0)
        lsm_table_cache_row_prefetch(r->tc, r->numbers, r->keys, r->n);
    r->n = 0;
}

static void
pf_rows_add(pf_rows *r, const lsm_file_meta *f, om_slice key)
{
    if (r->n == LSM_CACHE_PREFETCH_MAX)
        pf_rows_flush(r);
    r->numbers[r->n] = f->number;
    r->keys[r->n] = key;
    r->n++;
}

/* A table a get of keys[key] may consult; candidates of one key are listed in the get's order. */
typedef struct pf_cand {
    const lsm_file_meta *f;
    const lsm_sst *t; /* its open table when pinned and filtered, else NULL (no filter to ask) */
    size_t key;
} pf_cand;

/* Candidates per chunk of keys (beyond that, keys get no row hints). */
#define PF_CANDS 256

static void
pf_cand_add(pf_cand *c, size_t *nc, lsm_file_meta *f, size_t key, uint64_t h)
{
    /* the version we hold keeps a pinned table open */
    lsm_table_ref *ref = atomic_load_explicit(&f->pin.ref, memory_order_acquire);
    const lsm_sst *t = ref != NULL ? lsm_table_ref_sst(ref) : NULL;

    if (*nc == PF_CANDS)
        return;
    if (t != NULL && !lsm_sst_has_filter(t))
        t = NULL;
    if (t != NULL)
        lsm_sst_prefetch_filter(t, h);
    c[(*nc)++] = (pf_cand){.f = f, .t = t, .key = key};
}

/* The tables a get of keys[ki] (om_hash64 h) may consult, in its order. */
static void
pf_tables(pf_cand *c, size_t *nc, const lsm_version *v, om_slice key, size_t ki, uint64_t h)
{
    uint8_t lk[PF_LOOKUP_MAX];

    for (int i = v->nfiles[0] - 1; i >= 0; i--)
        if (lsm_db_file_covers(v->files[0][i], key))
            pf_cand_add(c, nc, v->files[0][i], ki, h);
    if (key.n + LSM_TRAILER_SIZE > sizeof(lk))
        return; /* a long key: only its L0 hints */
    if (key.n > 0)
        memcpy(lk, key.p, key.n);
    om_put_fixed64(lk + key.n, lsm_trailer_pack(LSM_MAX_SEQ, LSM_TYPE_SEEK));
    for (int l = 1; l < LSM_MAX_LEVELS; l++) {
        int idx;

        if (v->nfiles[l] == 0)
            continue;
        idx = lsm_version_find_file(v, l, om_slice_make(lk, key.n + LSM_TRAILER_SIZE));
        if (idx < v->nfiles[l] && lsm_db_file_covers(v->files[l][idx], key))
            pf_cand_add(c, nc, v->files[l][idx], ki, h);
    }
}

/*
 * The row hints of the keys not found in a memtable. Two rounds: list each
 * key's tables and start loading their filter lines; then, per key, hint the
 * rows of its tables in the get's order up to the first whose filter admits
 * the key (a table whose filter cannot be asked is hinted and passed).
 */
static void
pf_table_rows(lsm_db *db, const lsm_version *v, const om_slice *keys, size_t k, const bool *found)
{
    pf_cand c[PF_CANDS];
    uint64_t h[PF_KEYS];
    bool done[PF_KEYS] = {false};
    size_t nc = 0;
    pf_rows r = {.tc = db->tc, .n = 0};

    for (size_t i = 0; i < k; i++) {
        if (found[i] || keys[i].n > LSM_MAX_KEY_SIZE)
            continue;
        h[i] = om_hash64(keys[i].p, keys[i].n); /* the filters' hash (db_read.c's db_probe_hash) */
        pf_tables(c, &nc, v, keys[i], i, h[i]);
    }
    for (size_t j = 0; j < nc; j++) {
        size_t ki = c[j].key;

        if (done[ki])
            continue;
        if (c[j].t != NULL) {
            if (!lsm_sst_may_contain_hash(c[j].t, h[ki]))
                continue;
            done[ki] = true;
        }
        pf_rows_add(&r, c[j].f, keys[ki]);
    }
    pf_rows_flush(&r);
}

void
lsm_prefetch_reads(lsm_db *db, const om_slice *keys, size_t n)
{
    uint64_t last;
    lsm_sv *sv;

    if (n == 0)
        return;
    sv = lsm_db_sv_get(db, &last);
    while (n > 0) {
        size_t k = n < PF_KEYS ? n : PF_KEYS, left = k;
        bool found[PF_KEYS] = {false};

        lsm_mem_prefetch_find(sv->mem, keys, k, found);
        for (int m = sv->nimm - 1; m >= 0; m--) {
            left = 0;
            for (size_t i = 0; i < k; i++)
                left += !found[i];
            if (left == 0)
                break;
            lsm_mem_prefetch_find(sv->imm[m], keys, k, found);
        }
        left = 0;
        for (size_t i = 0; i < k; i++)
            left += !found[i];
        if (left > 0 && lsm_table_cache_has_rows(db->tc))
            pf_table_rows(db, sv->v, keys, k, found);
        keys += k;
        n -= k;
    }
    lsm_sv_unref(sv);
}
