/*
 * bench/lsm/lsm_bench.h -- the engines lsm_bench drives (objmeta's LSM and,
 * when built with -Dbench_peers, RocksDB and LevelDB through their C APIs)
 * behind one table of operations; lsm_bench_engines.c implements them.
 *
 * Thread-safety: an engine's put/batch/get may be called from several
 * threads at once (each engine's own guarantee); levels is safe while
 * another thread writes.
 */
#ifndef OM_BENCH_LSM_BENCH_H
#define OM_BENCH_LSM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MB (1024u * 1024u)

/* Options an engine is opened with, the same for every engine where it has them. */
typedef struct engine_cfg {
    size_t cache_bytes;  /* block cache (--cache-mb) */
    size_t write_buffer; /* memtable size (--write-buffer-mb; 64 MiB, objmeta's default) */
    uint64_t l1_bytes;   /* objmeta's max_bytes_for_level1 (--l1-mb; 0: the engine's default) */
    int background_nice; /* objmeta's background_nice (--nice) */
} engine_cfg;

typedef struct engine engine;

typedef struct engine_ops {
    const char *name;
    const void *impl; /* the engine's own description, for open (the peers: which library) */
    /* open(self, ...): self is this table. Returns NULL (after printing why) on failure. */
    engine *(*open)(const struct engine_ops *self, const char *dir, bool sync,
                    const engine_cfg *cfg);
    bool (*put)(engine *e, const char *k, size_t kn, const uint8_t *v, size_t vn);
    /* n keys and values written atomically with one (synced, if opened so) write. */
    bool (*batch)(engine *e, char (*keys)[64], const size_t *kn, const uint8_t **v,
                  const size_t *vn, int n);
    /* *found; the value is read in full. */
    bool (*get)(engine *e, const char *k, size_t kn, bool *found);
    bool (*del)(engine *e, const char *k, size_t kn);
    /* Seek to k and read up to n entries sharing its first plen bytes; *got counts them. */
    bool (*scan)(engine *e, const char *k, size_t kn, size_t plen, int n, int *got);
    void (*close)(engine *e);
    /* Optional: print engine statistics, at least the files per level (--verbose). */
    void (*stats)(engine *e, const char *when);
    /* Files per level (7 levels); safe while another thread writes. */
    void (*levels)(engine *e, int files[7]);
    /* Compaction debt in bytes as the engine estimates it, -1 if it has no estimate. */
    int64_t (*debt)(engine *e);
} engine_ops;

struct engine {
    const engine_ops *ops;
    int l0_slowdown; /* L0 tables at which the engine starts slowing writes */
};

extern const engine_ops objmeta_ops;
/* The engines built in, objmeta first, then the peers; *n of them. Call from one thread. */
const engine_ops *const *engines_all(size_t *n);

#endif
