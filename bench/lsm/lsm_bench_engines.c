/*
 * bench/lsm/lsm_bench_engines.c -- the engines of lsm_bench (lsm_bench.h):
 * objmeta's LSM engine, and RocksDB and LevelDB through their C APIs when
 * built with -Dbench_peers. Options, the same for every engine: 64 MiB
 * write buffer, 4 KiB blocks, 10-bit bloom filters, the configured block
 * cache, 1000 open files, 2 background jobs where configurable;
 * compression zstd level 1 for objmeta and RocksDB, snappy for LevelDB
 * (its only compressor in Debian's 1.23).
 */
#include "bench/lsm/lsm_bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "util/slice.h"

#ifdef HAVE_ROCKSDB
#include <rocksdb/c.h>
#endif
#ifdef HAVE_LEVELDB
#include <leveldb/c.h>
#endif

/* objmeta */

typedef struct om_engine {
    engine base;
    lsm_db *db;
    om_buf val;
} om_engine;

static engine *
om_open(const char *dir, bool sync, const engine_cfg *cfg)
{
    om_engine *e = calloc(1, sizeof(*e));
    lsm_opts o;
    om_status st;

    lsm_opts_init(&o);
    o.sync_mode = sync ? LSM_SYNC_ALWAYS : LSM_SYNC_NONE;
    o.write_buffer_size = 64 * MB;
    o.block_cache_size = cfg->cache_bytes;
    o.bloom_bits_per_key = 10;
    o.block_size = 4096;
    o.zstd_level = 1;
    o.max_open_files = 1000;
    o.background_nice = cfg->background_nice;
    st = lsm_open(dir, &o, &e->db);
    if (st != OM_OK) {
        printf("objmeta: open %s: %s\n", dir, om_status_str(st));
        free(e);
        return NULL;
    }
    return &e->base;
}

static bool
om_put(engine *b, const char *k, size_t kn, const uint8_t *v, size_t vn)
{
    return lsm_put(((om_engine *)b)->db, om_slice_make(k, kn), om_slice_make(v, vn)) == OM_OK;
}

static bool
om_batch(engine *b, char (*keys)[64], const size_t *kn, const uint8_t **v, const size_t *vn, int n)
{
    lsm_batch *bt;
    bool ok = true;

    if (lsm_batch_new(&bt) != OM_OK)
        return false;
    for (int i = 0; i < n && ok; i++)
        ok = lsm_batch_put(bt, om_slice_make(keys[i], kn[i]), om_slice_make(v[i], vn[i])) == OM_OK;
    ok = ok && lsm_write(((om_engine *)b)->db, bt) == OM_OK;
    lsm_batch_free(bt);
    return ok;
}

static bool
om_get(engine *b, const char *k, size_t kn, bool *found)
{
    om_engine *e = (om_engine *)b;
    om_status st = lsm_get(e->db, NULL, om_slice_make(k, kn), &e->val);

    *found = st == OM_OK;
    return st == OM_OK || st == OM_E_NOTFOUND;
}

static bool
om_del(engine *b, const char *k, size_t kn)
{
    return lsm_del(((om_engine *)b)->db, om_slice_make(k, kn)) == OM_OK;
}

static bool
om_scan(engine *b, const char *k, size_t kn, size_t plen, int n, int *got)
{
    om_engine *e = (om_engine *)b;
    lsm_iter_opts io;
    lsm_iter *it;
    bool ok;

    lsm_iter_opts_init(&io);
    if (lsm_iter_new(e->db, &io, &it) != OM_OK)
        return false;
    *got = 0;
    for (lsm_iter_seek(it, om_slice_make(k, kn)); lsm_iter_valid(it) && *got < n;
         lsm_iter_next(it)) {
        om_slice key = lsm_iter_key(it);

        if (key.n < plen || memcmp(key.p, k, plen) != 0)
            break;
        (void)lsm_iter_value(it);
        (*got)++;
    }
    ok = lsm_iter_status(it) == OM_OK;
    lsm_iter_free(it);
    return ok;
}

static void
om_close(engine *b)
{
    om_engine *e = (om_engine *)b;

    lsm_close(e->db);
    om_buf_free(&e->val);
    free(e);
}

static void
om_stats(engine *b, const char *when)
{
    lsm_stats st;

    lsm_stats_get(((om_engine *)b)->db, &st);
    printf("    objmeta stats %-10s files/level", when);
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        printf(" %u", st.levels[l].files);
    printf(" | cache hit %.2f | bloom useful %" PRIu64 "/%" PRIu64 " | stall %.1f ms | "
           "flushes %" PRIu64 " compactions %" PRIu64 " (un-niced %" PRIu64 ") | WA %.2f\n",
           st.cache_hit_ratio, st.bloom_useful, st.bloom_checks, (double)st.stall_micros / 1000.0,
           st.flushes, st.compactions, st.urgent_compactions, st.write_amplification);
}

static void
om_levels(engine *b, int files[7])
{
    lsm_stats st;

    lsm_stats_get(((om_engine *)b)->db, &st);
    for (int l = 0; l < 7; l++)
        files[l] = l < LSM_MAX_LEVELS ? (int)st.levels[l].files : 0;
}

const engine_ops objmeta_ops = {
    .name = "objmeta",
    .open = om_open,
    .put = om_put,
    .batch = om_batch,
    .get = om_get,
    .del = om_del,
    .scan = om_scan,
    .close = om_close,
    .stats = om_stats,
    .levels = om_levels,
};

#ifdef HAVE_ROCKSDB
typedef struct rdb_engine {
    engine base;
    rocksdb_t *db;
    rocksdb_options_t *o;
    rocksdb_block_based_table_options_t *t;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
} rdb_engine;

static engine *
rdb_open(const char *dir, bool sync, const engine_cfg *cfg)
{
    rdb_engine *e = calloc(1, sizeof(*e));
    char *err = NULL;

    e->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(e->o, 1);
    rocksdb_options_set_write_buffer_size(e->o, 64 * MB);
    rocksdb_options_set_max_open_files(e->o, 1000);
    rocksdb_options_set_max_background_jobs(e->o, 2);
    rocksdb_options_set_compression(e->o, rocksdb_zstd_compression);
    rocksdb_options_set_compression_options(e->o, -14, 1, 0, 0);
    e->t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_size(e->t, 4096);
    rocksdb_block_based_options_set_filter_policy(e->t, rocksdb_filterpolicy_create_bloom(10));
    e->cache = rocksdb_cache_create_lru(cfg->cache_bytes);
    rocksdb_block_based_options_set_block_cache(e->t, e->cache);
    rocksdb_options_set_block_based_table_factory(e->o, e->t);
    e->db = rocksdb_open(e->o, dir, &err);
    if (err != NULL) {
        printf("rocksdb: open %s: %s\n", dir, err);
        free(err);
        return NULL;
    }
    e->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wo, sync);
    e->ro = rocksdb_readoptions_create();
    return &e->base;
}

static bool
rdb_check(char *err)
{
    if (err == NULL)
        return true;
    printf("rocksdb: %s\n", err);
    free(err);
    return false;
}

static bool
rdb_put(engine *b, const char *k, size_t kn, const uint8_t *v, size_t vn)
{
    rdb_engine *e = (rdb_engine *)b;
    char *err = NULL;

    rocksdb_put(e->db, e->wo, k, kn, (const char *)v, vn, &err);
    return rdb_check(err);
}

static bool
rdb_batch(engine *b, char (*keys)[64], const size_t *kn, const uint8_t **v, const size_t *vn, int n)
{
    rdb_engine *e = (rdb_engine *)b;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char *err = NULL;

    for (int i = 0; i < n; i++)
        rocksdb_writebatch_put(wb, keys[i], kn[i], (const char *)v[i], vn[i]);
    rocksdb_write(e->db, e->wo, wb, &err);
    rocksdb_writebatch_destroy(wb);
    return rdb_check(err);
}

static bool
rdb_get(engine *b, const char *k, size_t kn, bool *found)
{
    rdb_engine *e = (rdb_engine *)b;
    char *err = NULL, *v;
    size_t vn;

    v = rocksdb_get(e->db, e->ro, k, kn, &vn, &err);
    *found = v != NULL;
    free(v);
    return rdb_check(err);
}

static bool
rdb_del(engine *b, const char *k, size_t kn)
{
    rdb_engine *e = (rdb_engine *)b;
    char *err = NULL;

    rocksdb_delete(e->db, e->wo, k, kn, &err);
    return rdb_check(err);
}

static bool
rdb_scan(engine *b, const char *k, size_t kn, size_t plen, int n, int *got)
{
    rdb_engine *e = (rdb_engine *)b;
    rocksdb_iterator_t *it = rocksdb_create_iterator(e->db, e->ro);
    char *err = NULL;

    *got = 0;
    for (rocksdb_iter_seek(it, k, kn); rocksdb_iter_valid(it) && *got < n; rocksdb_iter_next(it)) {
        size_t n2, vn;
        const char *key = rocksdb_iter_key(it, &n2);

        if (n2 < plen || memcmp(key, k, plen) != 0)
            break;
        (void)rocksdb_iter_value(it, &vn);
        (*got)++;
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return rdb_check(err);
}

static void
rdb_close(engine *b)
{
    rdb_engine *e = (rdb_engine *)b;

    rocksdb_close(e->db);
    rocksdb_writeoptions_destroy(e->wo);
    rocksdb_readoptions_destroy(e->ro);
    rocksdb_options_destroy(e->o);
    rocksdb_block_based_options_destroy(e->t);
    rocksdb_cache_destroy(e->cache);
    free(e);
}

/* The tree shape (files per level) a read goes through, in the format of om_stats. */
static void
rdb_stats(engine *b, const char *when)
{
    rdb_engine *e = (rdb_engine *)b;

    printf("    rocksdb stats %-10s files/level", when);
    for (int l = 0; l < 7; l++) {
        char prop[64], *v;

        snprintf(prop, sizeof(prop), "rocksdb.num-files-at-level%d", l);
        v = rocksdb_property_value(e->db, prop);
        printf(" %s", v != NULL ? v : "?");
        free(v);
    }
    {
        char *l0 = rocksdb_property_value(e->db, "rocksdb.num-running-compactions");

        printf(" | running compactions %s\n", l0 != NULL ? l0 : "?");
        free(l0);
    }
}

static void
rdb_levels(engine *b, int files[7])
{
    for (int l = 0; l < 7; l++) {
        char prop[64], *v;

        snprintf(prop, sizeof(prop), "rocksdb.num-files-at-level%d", l);
        v = rocksdb_property_value(((rdb_engine *)b)->db, prop);
        files[l] = v != NULL ? atoi(v) : -1;
        free(v);
    }
}

const engine_ops rocksdb_ops = {
    .name = "rocksdb",
    .open = rdb_open,
    .put = rdb_put,
    .batch = rdb_batch,
    .get = rdb_get,
    .del = rdb_del,
    .scan = rdb_scan,
    .close = rdb_close,
    .stats = rdb_stats,
    .levels = rdb_levels,
};
#endif

#ifdef HAVE_LEVELDB
typedef struct ldb_engine {
    engine base;
    leveldb_t *db;
    leveldb_options_t *o;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *fp;
    leveldb_writeoptions_t *wo;
    leveldb_readoptions_t *ro;
} ldb_engine;

static bool
ldb_check(char *err)
{
    if (err == NULL)
        return true;
    printf("leveldb: %s\n", err);
    leveldb_free(err);
    return false;
}

static engine *
ldb_open(const char *dir, bool sync, const engine_cfg *cfg)
{
    ldb_engine *e = calloc(1, sizeof(*e));
    char *err = NULL;

    e->o = leveldb_options_create();
    leveldb_options_set_create_if_missing(e->o, 1);
    leveldb_options_set_write_buffer_size(e->o, 64 * MB);
    leveldb_options_set_max_open_files(e->o, 1000);
    leveldb_options_set_block_size(e->o, 4096);
    leveldb_options_set_compression(e->o, leveldb_snappy_compression);
    e->cache = leveldb_cache_create_lru(cfg->cache_bytes);
    leveldb_options_set_cache(e->o, e->cache);
    e->fp = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(e->o, e->fp);
    e->db = leveldb_open(e->o, dir, &err);
    if (err != NULL) {
        printf("leveldb: open %s: %s\n", dir, err);
        leveldb_free(err);
        return NULL;
    }
    e->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(e->wo, sync);
    e->ro = leveldb_readoptions_create();
    return &e->base;
}

static bool
ldb_put(engine *b, const char *k, size_t kn, const uint8_t *v, size_t vn)
{
    ldb_engine *e = (ldb_engine *)b;
    char *err = NULL;

    leveldb_put(e->db, e->wo, k, kn, (const char *)v, vn, &err);
    return ldb_check(err);
}

static bool
ldb_batch(engine *b, char (*keys)[64], const size_t *kn, const uint8_t **v, const size_t *vn, int n)
{
    ldb_engine *e = (ldb_engine *)b;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    char *err = NULL;

    for (int i = 0; i < n; i++)
        leveldb_writebatch_put(wb, keys[i], kn[i], (const char *)v[i], vn[i]);
    leveldb_write(e->db, e->wo, wb, &err);
    leveldb_writebatch_destroy(wb);
    return ldb_check(err);
}

static bool
ldb_get(engine *b, const char *k, size_t kn, bool *found)
{
    ldb_engine *e = (ldb_engine *)b;
    char *err = NULL, *v;
    size_t vn;

    v = leveldb_get(e->db, e->ro, k, kn, &vn, &err);
    *found = v != NULL;
    leveldb_free(v);
    return ldb_check(err);
}

static bool
ldb_del(engine *b, const char *k, size_t kn)
{
    ldb_engine *e = (ldb_engine *)b;
    char *err = NULL;

    leveldb_delete(e->db, e->wo, k, kn, &err);
    return ldb_check(err);
}

static bool
ldb_scan(engine *b, const char *k, size_t kn, size_t plen, int n, int *got)
{
    ldb_engine *e = (ldb_engine *)b;
    leveldb_iterator_t *it = leveldb_create_iterator(e->db, e->ro);
    char *err = NULL;

    *got = 0;
    for (leveldb_iter_seek(it, k, kn); leveldb_iter_valid(it) && *got < n; leveldb_iter_next(it)) {
        size_t n2, vn;
        const char *key = leveldb_iter_key(it, &n2);

        if (n2 < plen || memcmp(key, k, plen) != 0)
            break;
        (void)leveldb_iter_value(it, &vn);
        (*got)++;
    }
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    return ldb_check(err);
}

static void
ldb_close(engine *b)
{
    ldb_engine *e = (ldb_engine *)b;

    leveldb_close(e->db);
    leveldb_writeoptions_destroy(e->wo);
    leveldb_readoptions_destroy(e->ro);
    leveldb_options_destroy(e->o);
    leveldb_cache_destroy(e->cache);
    leveldb_filterpolicy_destroy(e->fp);
    free(e);
}

/* The tree shape (files per level) a read goes through, in the format of om_stats. */
static void
ldb_stats(engine *b, const char *when)
{
    ldb_engine *e = (ldb_engine *)b;

    printf("    leveldb stats %-10s files/level", when);
    for (int l = 0; l < 7; l++) {
        char prop[64], *v;

        snprintf(prop, sizeof(prop), "leveldb.num-files-at-level%d", l);
        v = leveldb_property_value(e->db, prop);
        printf(" %s", v != NULL ? v : "?");
        leveldb_free(v);
    }
    printf("\n");
}

static void
ldb_levels(engine *b, int files[7])
{
    for (int l = 0; l < 7; l++) {
        char prop[64], *v;

        snprintf(prop, sizeof(prop), "leveldb.num-files-at-level%d", l);
        v = leveldb_property_value(((ldb_engine *)b)->db, prop);
        files[l] = v != NULL ? atoi(v) : -1;
        leveldb_free(v);
    }
}

const engine_ops leveldb_ops = {
    .name = "leveldb",
    .open = ldb_open,
    .put = ldb_put,
    .batch = ldb_batch,
    .get = ldb_get,
    .del = ldb_del,
    .scan = ldb_scan,
    .close = ldb_close,
    .stats = ldb_stats,
    .levels = ldb_levels,
};
#endif

const engine_ops *const all_engines[] = {
    &objmeta_ops,
#ifdef HAVE_ROCKSDB
    &rocksdb_ops,
#endif
#ifdef HAVE_LEVELDB
    &leveldb_ops,
#endif
};
const size_t n_all_engines = sizeof(all_engines) / sizeof(all_engines[0]);
