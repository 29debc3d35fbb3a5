/*
 * bench/lsm/lsm_bench_engines.c -- the engines of lsm_bench (lsm_bench.h):
 * objmeta's LSM engine, and RocksDB and LevelDB through their C APIs when
 * built with -Dbench_peers. Options, the same for every engine: the
 * configured write buffer (64 MiB unless --write-buffer-mb), 4 KiB blocks, 10-bit bloom filters,
 * the configured block cache, 1000 open files, 2 background jobs where configurable; compression
 * zstd level 1 for objmeta and RocksDB, snappy for LevelDB (its only compressor in Debian's 1.23).
 */
#include "bench/lsm/lsm_bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "util/slice.h"

#if defined(HAVE_ROCKSDB) || defined(HAVE_LEVELDB)
#include <dlfcn.h>
#include <stddef.h>
#endif
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
om_open(const engine_ops *self, const char *dir, bool sync, const engine_cfg *cfg)
{
    om_engine *e = calloc(1, sizeof(*e));
    lsm_opts o;
    om_status st;

    (void)self;
    lsm_opts_init(&o);
    o.sync_mode = sync ? LSM_SYNC_ALWAYS : LSM_SYNC_NONE;
    o.write_buffer_size = cfg->write_buffer;
    o.block_cache_size = cfg->cache_bytes;
    o.bloom_bits_per_key = 10;
    o.block_size = 4096;
    o.zstd_level = 1;
    o.max_open_files = 1000;
    o.background_nice = cfg->background_nice;
    if (cfg->l1_bytes > 0)
        o.max_bytes_for_level1 = cfg->l1_bytes;
    e->base.l0_slowdown = o.l0_slowdown_trigger;
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

static int64_t
om_debt(engine *b)
{
    lsm_stats st;

    lsm_stats_get(((om_engine *)b)->db, &st);
    return (int64_t)st.pending_compaction_bytes;
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
    .debt = om_debt,
};

#if defined(HAVE_ROCKSDB) || defined(HAVE_LEVELDB)
/*
 * The peers. RocksDB's and LevelDB's C APIs are one API under two prefixes
 * (rocksdb_put and leveldb_put, ...), each with its own handle types. So
 * one adapter (peer_*) serves both: peer_bind looks up the functions named
 * in peer_names under the library's prefix in this binary (which links
 * both), and a row of peer_libs holds what differs: the settings that are
 * not the same in both APIs (configure). engines_all gives each row a copy
 * of peer_ops with its name. The adapter holds handles as void *: peer_api's
 * types differ from the libraries' only in the pointee types of handles.
 */
typedef struct peer_api {
    void (*put)(void *db, const void *wo, const char *k, size_t kn, const char *v, size_t vn,
                char **err);
    void (*del)(void *db, const void *wo, const char *k, size_t kn, char **err);
    char *(*get)(void *db, const void *ro, const char *k, size_t kn, size_t *vn, char **err);
    void *(*batch_new)(void);
    void (*batch_put)(void *wb, const char *k, size_t kn, const char *v, size_t vn);
    void (*write)(void *db, const void *wo, void *wb, char **err);
    void (*batch_free)(void *wb);
    void *(*iter_new)(void *db, const void *ro);
    void (*iter_seek)(void *it, const char *k, size_t kn);
    unsigned char (*iter_valid)(const void *it);
    void (*iter_next)(void *it);
    const char *(*iter_key)(const void *it, size_t *n);
    const char *(*iter_value)(const void *it, size_t *n);
    void (*iter_error)(const void *it, char **err);
    void (*iter_free)(void *it);
    char *(*property)(void *db, const char *name);
    void (*close)(void *db);
    void (*wopts_free)(void *wo);
    void (*ropts_free)(void *ro);
    void (*free)(void *p);
    void *(*options_create)(void);
    void (*set_create_if_missing)(void *o, unsigned char v);
    void (*set_write_buffer_size)(void *o, size_t v);
    void (*set_max_open_files)(void *o, int v);
    void *(*cache_create_lru)(size_t capacity);
    void *(*open)(const void *o, const char *dir, char **err);
    void *(*wopts_new)(void);
    void (*wopts_set_sync)(void *wo, unsigned char v);
    void *(*ropts_new)(void);
    void (*options_free)(void *o);
    void (*cache_free)(void *cache);
} peer_api;

/* Each peer_api function's name after the library's "rocksdb_" or "leveldb_". */
static const struct {
    const char *name;
    size_t offset;
} peer_names[] = {
    {"put", offsetof(peer_api, put)},
    {"delete", offsetof(peer_api, del)},
    {"get", offsetof(peer_api, get)},
    {"writebatch_create", offsetof(peer_api, batch_new)},
    {"writebatch_put", offsetof(peer_api, batch_put)},
    {"write", offsetof(peer_api, write)},
    {"writebatch_destroy", offsetof(peer_api, batch_free)},
    {"create_iterator", offsetof(peer_api, iter_new)},
    {"iter_seek", offsetof(peer_api, iter_seek)},
    {"iter_valid", offsetof(peer_api, iter_valid)},
    {"iter_next", offsetof(peer_api, iter_next)},
    {"iter_key", offsetof(peer_api, iter_key)},
    {"iter_value", offsetof(peer_api, iter_value)},
    {"iter_get_error", offsetof(peer_api, iter_error)},
    {"iter_destroy", offsetof(peer_api, iter_free)},
    {"property_value", offsetof(peer_api, property)},
    {"close", offsetof(peer_api, close)},
    {"writeoptions_destroy", offsetof(peer_api, wopts_free)},
    {"readoptions_destroy", offsetof(peer_api, ropts_free)},
    {"free", offsetof(peer_api, free)},
    {"options_create", offsetof(peer_api, options_create)},
    {"options_set_create_if_missing", offsetof(peer_api, set_create_if_missing)},
    {"options_set_write_buffer_size", offsetof(peer_api, set_write_buffer_size)},
    {"options_set_max_open_files", offsetof(peer_api, set_max_open_files)},
    {"cache_create_lru", offsetof(peer_api, cache_create_lru)},
    {"open", offsetof(peer_api, open)},
    {"writeoptions_create", offsetof(peer_api, wopts_new)},
    {"writeoptions_set_sync", offsetof(peer_api, wopts_set_sync)},
    {"readoptions_create", offsetof(peer_api, ropts_new)},
    {"options_destroy", offsetof(peer_api, options_free)},
    {"cache_destroy", offsetof(peer_api, cache_free)},
};

typedef struct peer_engine {
    engine base;
    const char *lib; /* "rocksdb", "leveldb": the prefix of its functions and properties */
    peer_api f;
    void *db, *wo, *ro, *o, *cache;
    void *own; /* the library's own settings object (peer_lib.configure) */
    void (*own_free)(void *own);
} peer_engine;

/* What is not the same in both libraries (engine_ops.impl). */
typedef struct peer_lib {
    const char *name; /* the prefix of its functions and properties */
    /* The settings beyond those peer_open makes (e->o and e->cache exist); sets e->own. */
    void (*configure)(peer_engine *e);
    const char *own_free; /* the name of the function that frees e->own, after the prefix */
} peer_lib;

/* The function "<lib>_<name>" of this binary, or NULL (printed). */
static void *
peer_sym(void *self, const char *lib, const char *name)
{
    char sym[64];
    void *fn;

    snprintf(sym, sizeof(sym), "%s_%s", lib, name);
    fn = dlsym(self, sym);
    if (fn == NULL)
        printf("%s: no function %s in this binary\n", lib, sym);
    return fn;
}

/*
 * Fill e->f and e->own_free with the functions of e->lib; false (and
 * printed) if one is missing. POSIX: a function's address fits a void *.
 */
static bool
peer_bind(peer_engine *e, const peer_lib *lib)
{
    void *self = dlopen(NULL, RTLD_NOW), *fn = self;

    if (self == NULL)
        printf("%s: dlopen: %s\n", e->lib, dlerror());
    for (size_t i = 0; fn != NULL && i < sizeof(peer_names) / sizeof(peer_names[0]); i++) {
        fn = peer_sym(self, e->lib, peer_names[i].name);
        memcpy((char *)&e->f + peer_names[i].offset, &fn, sizeof(fn));
    }
    if (fn != NULL)
        fn = peer_sym(self, e->lib, lib->own_free);
    memcpy(&e->own_free, &fn, sizeof(fn));
    if (self != NULL)
        dlclose(self); /* the functions stay: the binary links the library */
    return fn != NULL;
}

/* An error from the library (freed here): false and printed; NULL: true. */
static bool
peer_check(peer_engine *e, char *err)
{
    if (err == NULL)
        return true;
    printf("%s: %s\n", e->lib, err);
    e->f.free(err);
    return false;
}

/* Free what peer_open made (db closed or never opened). */
static void
peer_free(peer_engine *e)
{
    e->f.wopts_free(e->wo);
    e->f.ropts_free(e->ro);
    e->f.options_free(e->o);
    if (e->own != NULL)
        e->own_free(e->own);
    e->f.cache_free(e->cache);
    free(e);
}

/* engine_ops.open of the peers: the options every engine shares (top of this file), then lib's. */
static engine *
peer_open(const engine_ops *self, const char *dir, bool sync, const engine_cfg *cfg)
{
    const peer_lib *lib = self->impl;
    peer_engine *e = calloc(1, sizeof(*e));
    char *err = NULL;

    if (e == NULL)
        return NULL;
    e->lib = self->name;
    if (!peer_bind(e, lib)) {
        free(e);
        return NULL;
    }
    e->o = e->f.options_create();
    e->f.set_create_if_missing(e->o, 1);
    e->f.set_write_buffer_size(e->o, cfg->write_buffer);
    e->f.set_max_open_files(e->o, 1000);
    e->cache = e->f.cache_create_lru(cfg->cache_bytes);
    lib->configure(e);
    e->wo = e->f.wopts_new();
    e->f.wopts_set_sync(e->wo, sync);
    e->ro = e->f.ropts_new();
    e->db = e->f.open(e->o, dir, &err);
    if (err == NULL)
        return &e->base;
    printf("%s: open %s: %s\n", e->lib, dir, err);
    e->f.free(err);
    peer_free(e);
    return NULL;
}

static bool
peer_put(engine *b, const char *k, size_t kn, const uint8_t *v, size_t vn)
{
    peer_engine *e = (peer_engine *)b;
    char *err = NULL;

    e->f.put(e->db, e->wo, k, kn, (const char *)v, vn, &err);
    return peer_check(e, err);
}

static bool
peer_batch(engine *b, char (*keys)[64], const size_t *kn, const uint8_t **v, const size_t *vn,
           int n)
{
    peer_engine *e = (peer_engine *)b;
    void *wb = e->f.batch_new();
    char *err = NULL;

    for (int i = 0; i < n; i++)
        e->f.batch_put(wb, keys[i], kn[i], (const char *)v[i], vn[i]);
    e->f.write(e->db, e->wo, wb, &err);
    e->f.batch_free(wb);
    return peer_check(e, err);
}

static bool
peer_get(engine *b, const char *k, size_t kn, bool *found)
{
    peer_engine *e = (peer_engine *)b;
    char *err = NULL, *v;
    size_t vn;

    v = e->f.get(e->db, e->ro, k, kn, &vn, &err);
    *found = v != NULL;
    e->f.free(v);
    return peer_check(e, err);
}

static bool
peer_del(engine *b, const char *k, size_t kn)
{
    peer_engine *e = (peer_engine *)b;
    char *err = NULL;

    e->f.del(e->db, e->wo, k, kn, &err);
    return peer_check(e, err);
}

static bool
peer_scan(engine *b, const char *k, size_t kn, size_t plen, int n, int *got)
{
    peer_engine *e = (peer_engine *)b;
    void *it = e->f.iter_new(e->db, e->ro);
    char *err = NULL;

    *got = 0;
    for (e->f.iter_seek(it, k, kn); e->f.iter_valid(it) && *got < n; e->f.iter_next(it)) {
        size_t n2, vn;
        const char *key = e->f.iter_key(it, &n2);

        if (n2 < plen || memcmp(key, k, plen) != 0)
            break;
        (void)e->f.iter_value(it, &vn);
        (*got)++;
    }
    e->f.iter_error(it, &err);
    e->f.iter_free(it);
    return peer_check(e, err);
}

static void
peer_close(engine *b)
{
    peer_engine *e = (peer_engine *)b;

    e->f.close(e->db);
    peer_free(e);
}

/* The value of property "<lib>.<name>" (free with e->f.free), or NULL. */
static char *
peer_property(peer_engine *e, const char *name)
{
    char prop[64];

    snprintf(prop, sizeof(prop), "%s.%s", e->lib, name);
    return e->f.property(e->db, prop);
}

/* The tree shape (files per level) a read goes through, in the format of om_stats. */
static void
peer_stats(engine *b, const char *when)
{
    peer_engine *e = (peer_engine *)b;
    char name[32], *v;

    printf("    %s stats %-10s files/level", e->lib, when);
    for (int l = 0; l < 7; l++) {
        snprintf(name, sizeof(name), "num-files-at-level%d", l);
        v = peer_property(e, name);
        printf(" %s", v != NULL ? v : "?");
        e->f.free(v);
    }
    v = peer_property(e, "num-running-compactions"); /* RocksDB only */
    if (v != NULL)
        printf(" | running compactions %s", v);
    e->f.free(v);
    printf("\n");
}

static void
peer_levels(engine *b, int files[7])
{
    peer_engine *e = (peer_engine *)b;
    char name[32], *v;

    for (int l = 0; l < 7; l++) {
        snprintf(name, sizeof(name), "num-files-at-level%d", l);
        v = peer_property(e, name);
        files[l] = v != NULL ? atoi(v) : -1;
        e->f.free(v);
    }
}

/* RocksDB's estimate-pending-compaction-bytes; LevelDB has none (-1). */
static int64_t
peer_debt(engine *b)
{
    peer_engine *e = (peer_engine *)b;
    char *v = peer_property(e, "estimate-pending-compaction-bytes");
    int64_t d = v != NULL ? strtoll(v, NULL, 10) : -1;

    e->f.free(v);
    return d;
}
#endif

#if defined(HAVE_ROCKSDB) || defined(HAVE_LEVELDB)
#ifdef HAVE_ROCKSDB
/* RocksDB: zstd level 1, 2 background jobs; blocks, bloom filters and cache in table options. */
static void
rdb_configure(peer_engine *e)
{
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();

    rocksdb_options_set_max_background_jobs(e->o, 2);
    rocksdb_options_set_compression(e->o, rocksdb_zstd_compression);
    rocksdb_options_set_compression_options(e->o, -14, 1, 0, 0);
    rocksdb_block_based_options_set_block_size(t, 4096);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_block_based_options_set_block_cache(t, e->cache);
    rocksdb_options_set_block_based_table_factory(e->o, t);
    e->own = t;
    e->base.l0_slowdown = 20; /* level0_slowdown_writes_trigger, RocksDB's default */
}
#endif

#ifdef HAVE_LEVELDB
/* LevelDB: snappy (its only compressor in Debian's 1.23); the rest in its options. */
static void
ldb_configure(peer_engine *e)
{
    leveldb_filterpolicy_t *fp = leveldb_filterpolicy_create_bloom(10);

    leveldb_options_set_block_size(e->o, 4096);
    leveldb_options_set_compression(e->o, leveldb_snappy_compression);
    leveldb_options_set_cache(e->o, e->cache);
    leveldb_options_set_filter_policy(e->o, fp);
    e->own = fp;
    e->base.l0_slowdown = 8; /* config::kL0_SlowdownWritesTrigger, fixed in LevelDB */
}
#endif

/* The peers built in: a row per library, and the adapter's table (name and impl per row). */
static const peer_lib peer_libs[] = {
#ifdef HAVE_ROCKSDB
    {.name = "rocksdb", .configure = rdb_configure, .own_free = "block_based_options_destroy"},
#endif
#ifdef HAVE_LEVELDB
    {.name = "leveldb", .configure = ldb_configure, .own_free = "filterpolicy_destroy"},
#endif
};
#define PEERS (sizeof(peer_libs) / sizeof(peer_libs[0]))
static const engine_ops peer_ops = {
    .open = peer_open,
    .put = peer_put,
    .batch = peer_batch,
    .get = peer_get,
    .del = peer_del,
    .scan = peer_scan,
    .close = peer_close,
    .stats = peer_stats,
    .levels = peer_levels,
    .debt = peer_debt,
};
#endif

const engine_ops *const *
engines_all(size_t *n)
{
#if defined(HAVE_ROCKSDB) || defined(HAVE_LEVELDB)
    static engine_ops peers[PEERS];
    static const engine_ops *all[1 + PEERS];

    for (size_t i = 0; i < PEERS; i++) {
        peers[i] = peer_ops;
        peers[i].name = peer_libs[i].name;
        peers[i].impl = &peer_libs[i];
        all[1 + i] = &peers[i];
    }
#else
    static const engine_ops *all[1];
#endif
    all[0] = &objmeta_ops;
    *n = sizeof(all) / sizeof(all[0]);
    return all;
}
