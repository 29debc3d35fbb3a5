/*
 * tests/lsm/fuzz_sstable.c -- libFuzzer target for the SSTable reader and
 * the block decoder.
 *
 * The first input byte picks a mode; the rest is the payload:
 *
 *   0  the payload is a table file: open it (with and without the size
 *      check), scan it, seek and look up keys taken from the payload.
 *   1  the payload is a list of length-prefixed keys and values: build a
 *      table from them (sorted, as internal keys) in memory, then read it
 *      back and abort() unless every entry comes back intact.
 *   2  the payload is a raw block (no checksum in front of the decoder):
 *      iterate and seek it, which must never read out of bounds.
 *   3  a table built from the payload as in mode 1, then damaged at the
 *      position and with the byte the payload's first bytes choose; every
 *      read must give the right data or OM_E_CORRUPT (else abort()).
 *
 * Files live in a tiny in-memory env, so the target does no disk I/O and
 * logs nothing (the engine logs through a no-op callback).
 *
 * Built as a libFuzzer binary only with -Dfuzz=true and clang; the same
 * entry point is linked into test_fuzz_smoke, which runs it over a few
 * hundred generated inputs in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/env.h"
#include "lsm/lsm_int.h"
#include "lsm/sstable.h"
#include "util/coding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a one-file in-memory env ---- */

typedef struct mem_env {
    lsm_env base;
    om_buf file;
} mem_env;

typedef struct mem_file {
    lsm_wfile w; /* also used as the lsm_rfile header: both start with the env pointer */
    mem_env *env;
} mem_file;

static om_status
mem_wopen(lsm_env *env, const char *path, bool append, lsm_wfile **out)
{
    mem_file *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return OM_E_NOMEM;
    f->w.env = env;
    f->env = (mem_env *)env;
    if (!append)
        om_buf_reset(&f->env->file);
    *out = &f->w;
    return OM_OK;
}

static om_status
mem_append(lsm_wfile *w, const void *p, size_t n)
{
    return om_buf_append(&((mem_file *)w)->env->file, p, n);
}

static om_status
mem_sync(lsm_wfile *w)
{
    return OM_OK;
}

static om_status
mem_wclose(lsm_wfile *w)
{
    free(w);
    return OM_OK;
}

static om_status
mem_ropen(lsm_env *env, const char *path, lsm_rfile **out, uint64_t *size)
{
    lsm_rfile *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return OM_E_NOMEM;
    f->env = env;
    *out = f;
    *size = ((mem_env *)env)->file.n;
    return OM_OK;
}

static om_status
mem_read(lsm_rfile *f, uint64_t off, size_t n, uint8_t *dst, size_t *got)
{
    const om_buf *b = &((mem_env *)f->env)->file;

    if (off >= b->n) {
        *got = 0;
        return OM_OK;
    }
    *got = n < b->n - off ? n : (size_t)(b->n - off);
    memcpy(dst, b->p + off, *got);
    return OM_OK;
}

static void
mem_rclose(lsm_rfile *f)
{
    free(f);
}

static om_status
mem_remove(lsm_env *env, const char *path)
{
    om_buf_reset(&((mem_env *)env)->file);
    return OM_OK;
}

static const lsm_env_ops mem_ops = {
    .wfile_open = mem_wopen,
    .wfile_append = mem_append,
    .wfile_sync = mem_sync,
    .wfile_close = mem_wclose,
    .rfile_open = mem_ropen,
    .rfile_read = mem_read,
    .rfile_close = mem_rclose,
    .remove = mem_remove,
};

static void
quiet_log(void *arg, om_log_level level, const char *msg)
{
}

/* ---- helpers ---- */

typedef struct fz_entry {
    om_slice k, v;
} fz_entry;

static int
fz_cmp(const void *a, const void *b)
{
    return om_slice_cmp(((const fz_entry *)a)->k, ((const fz_entry *)b)->k);
}

/* Parse "varint32 len | bytes" pairs from the payload; sorted, distinct keys. */
static size_t
fz_parse_pairs(om_slice in, fz_entry *out, size_t max)
{
    size_t n = 0;

    while (n < max && in.n > 0) {
        om_slice k, v;

        if (om_slice_get_lenpref(&in, &k) != OM_OK || om_slice_get_lenpref(&in, &v) != OM_OK)
            break;
        out[n++] = (fz_entry){k, v};
    }
    qsort(out, n, sizeof(*out), fz_cmp);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || om_slice_cmp(out[w - 1].k, out[i].k) != 0)
            out[w++] = out[i];
    return w;
}

/* Read a table every way; with an oracle, demand right data or CORRUPT. */
static void
fz_read_table(mem_env *env, uint64_t size, const lsm_table_opts *o, const fz_entry *oracle,
              size_t n, om_slice probes)
{
    lsm_sst *t;
    lsm_it *it;
    om_buf k = OM_BUF_INIT;
    om_status st = lsm_sst_open(&env->base, "t.sst", 1, size, o, &t);
    size_t i = 0;

    if (st != OM_OK) {
        if (oracle != NULL && st != OM_E_CORRUPT)
            abort();
        return;
    }
    if (lsm_sst_iter_new(t, true, &it) == OM_OK) {
        for (lsm_it_seek_first(it); lsm_it_valid(it) && i < 100000; lsm_it_next(it), i++) {
            if (oracle == NULL)
                continue;
            if (i >= n || !om_slice_eq(lsm_ikey_user(lsm_it_key(it)), oracle[i].k) ||
                !om_slice_eq(lsm_it_value(it), oracle[i].v))
                abort();
        }
        if (oracle != NULL && lsm_it_status(it) == OM_OK && i != n)
            abort();
        if (oracle != NULL && lsm_it_status(it) != OM_OK && lsm_it_status(it) != OM_E_CORRUPT)
            abort();
        /* Seeks to keys cut from the probe bytes. */
        for (size_t p = 0; p + 1 < probes.n && p < 64; p += 8) {
            size_t len = probes.p[p] % 16;

            if (p + 1 + len > probes.n)
                len = probes.n - p - 1;
            om_buf_reset(&k);
            if (lsm_ikey_append(&k, om_slice_make(probes.p + p + 1, len), LSM_MAX_SEQ,
                                LSM_TYPE_SEEK) != OM_OK)
                break;
            lsm_it_seek(it, om_buf_slice(&k));
            if (lsm_it_valid(it))
                lsm_it_next(it);
            (void)lsm_sst_may_contain(t, om_slice_make(probes.p + p + 1, len));
        }
        lsm_it_free(it);
    }
    om_buf_free(&k);
    lsm_sst_close(t);
}

typedef struct fz_got {
    om_slice want;
    bool ok;
} fz_got;

static void
fz_get_fn(void *arg, om_slice ikey, om_slice value)
{
    fz_got *g = arg;

    g->ok = om_slice_eq(value, g->want);
}

/* Point lookups against the oracle: right value or CORRUPT. */
static void
fz_check_gets(mem_env *env, uint64_t size, const lsm_table_opts *o, const fz_entry *oracle,
              size_t n)
{
    lsm_sst *t;
    om_buf k = OM_BUF_INIT;
    om_status st = lsm_sst_open(&env->base, "t.sst", 1, size, o, &t);

    if (st != OM_OK) {
        if (st != OM_E_CORRUPT)
            abort();
        return;
    }
    for (size_t j = 0; j < n; j++) {
        fz_got g = {oracle[j].v, false};

        om_buf_reset(&k);
        if (lsm_ikey_append(&k, oracle[j].k, 100, LSM_TYPE_SEEK) != OM_OK)
            break;
        st = lsm_sst_get(t, om_buf_slice(&k), j % 2 == 0, fz_get_fn, &g);
        if (st == OM_E_CORRUPT)
            continue;
        if (st != OM_OK || !g.ok)
            abort();
    }
    om_buf_free(&k);
    lsm_sst_close(t);
}

/* Build a table of the payload's pairs into env->file. Returns the entry count. */
static size_t
fz_build(mem_env *env, const lsm_table_opts *o, om_slice payload, fz_entry *pairs, size_t max)
{
    size_t n = fz_parse_pairs(payload, pairs, max);
    lsm_sst_writer *w;
    om_buf k = OM_BUF_INIT;

    if (lsm_sst_writer_open(&env->base, "t.sst", o, &w) != OM_OK)
        abort();
    for (size_t i = 0; i < n; i++) {
        om_buf_reset(&k);
        if (lsm_ikey_append(&k, pairs[i].k, 100, LSM_TYPE_VAL) != OM_OK ||
            lsm_sst_writer_add(w, om_buf_slice(&k), pairs[i].v) != OM_OK)
            abort();
    }
    if (lsm_sst_writer_finish(w, NULL) != OM_OK)
        abort();
    om_buf_free(&k);
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mem_env env = {{&mem_ops}, OM_BUF_INIT};
    lsm_opts lo;
    lsm_table_opts o;
    fz_entry *pairs;
    om_slice payload;
    size_t n;

    if (size < 1)
        return 0;
    memset(&lo, 0, sizeof(lo));
    lo.log = quiet_log;
    lsm_table_opts_init(&o, NULL, NULL, NULL);
    o.log_opts = &lo;
    o.block_size = 64 + data[0] % 4 * 128;
    o.restart_interval = 1 + data[0] / 4 % 8;
    o.zstd_level = data[0] / 32 % 2;
    payload = om_slice_make(data + 1, size - 1);
    switch (data[0] % 4) {
    case 0:
        if (om_buf_set(&env.file, payload) != OM_OK)
            break;
        fz_read_table(&env, payload.n, &o, NULL, 0, payload);
        o.verify_on_open = true;
        fz_read_table(&env, 0, &o, NULL, 0, payload);
        break;
    case 1:
        pairs = calloc(size / 2 + 1, sizeof(*pairs));
        if (pairs == NULL)
            break;
        n = fz_build(&env, &o, payload, pairs, size / 2 + 1);
        fz_read_table(&env, env.file.n, &o, pairs, n, payload);
        fz_check_gets(&env, env.file.n, &o, pairs, n);
        free(pairs);
        break;
    case 2: {
        uint8_t *copy = malloc(payload.n ? payload.n : 1);
        lsm_block blk;

        if (copy == NULL)
            break;
        if (payload.n > 0)
            memcpy(copy, payload.p, payload.n);
        if (lsm_block_parse(&blk, copy, payload.n, true) == OM_OK) {
            for (int cmp = 0; cmp < 2; cmp++) {
                lsm_block_iter it = {0};
                om_buf k = OM_BUF_INIT;
                int steps = 0;

                lsm_block_iter_init(&it, &blk, cmp == 0 ? LSM_CMP_IKEY : LSM_CMP_BYTES);
                for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base) && steps < 100000;
                     lsm_it_next(&it.base), steps++)
                    (void)lsm_it_value(&it.base);
                (void)lsm_ikey_append(&k, om_slice_make(payload.p, payload.n < 9 ? payload.n : 9),
                                      7, LSM_TYPE_VAL);
                lsm_it_seek(&it.base, om_buf_slice(&k));
                om_buf_free(&k);
                lsm_block_iter_fini(&it);
            }
            lsm_block_free(&blk);
        } else {
            free(copy);
        }
        break;
    }
    default: {
        uint32_t pos;

        if (payload.n < 5)
            break;
        pos = om_get_fixed32(payload.p);
        pairs = calloc(size / 2 + 1, sizeof(*pairs));
        if (pairs == NULL)
            break;
        n = fz_build(&env, &o, om_slice_make(payload.p + 5, payload.n - 5), pairs, size / 2 + 1);
        if (env.file.n > 0) {
            env.file.p[pos % env.file.n] ^= (uint8_t)(payload.p[4] | 1);
            fz_read_table(&env, env.file.n, &o, pairs, n, payload);
            fz_check_gets(&env, env.file.n, &o, pairs, n);
        }
        free(pairs);
        break;
    }
    }
    om_buf_free(&env.file);
    return 0;
}
