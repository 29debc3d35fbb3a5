/*
 * lsm/sstable_reader.c -- opens SSTables and serves point lookups; the
 * iterator is lsm/sstable_iter.c (layout: lsm/FORMAT.md, section "SSTable").
 *
 * Blocks are read from a read-only mapping of the file when the env offers
 * one (env rfile_map; no system call per block, as LevelDB does), else with
 * positional reads. Open reads the fixed-size footer at the end of the file, checks its magic,
 * version and checksum, and loads the index block, the bloom filter and the
 * properties into memory for the life of the table. Data blocks are read on
 * demand through the block cache (key: the table's cache id and the block
 * offset), or privately when the caller asked not to fill the cache and the
 * block is not cached already.
 *
 * Trust: every block read is checked against its trailer checksum before a
 * byte of it is parsed, block handles are checked against the file's data
 * area, and zstd blocks must decompress to exactly the size their frame
 * declares. A mapped table checks each data block once per open: the
 * mapping's bytes cannot change under a read-only mapping of an immutable
 * file, so a block that passed its checksum and restart-array check is
 * marked in a bitmap (one bit per data block, by its ordinal in the index)
 * and later reads of it skip both. Uniform reads over more data than the
 * block cache holds read most blocks from the mapping without caching them;
 * the checksum was a pass over the whole 4 KiB block on every such read
 * (~16 % of a Retrieve's CPU at 2M records), where the lookup itself
 * touches a few cache lines. Reads without a mapping (pread) verify every
 * time, and so does a table opened with verify_on_open. Any failure is OM_E_CORRUPT, logged once
 * with the file and the offset, and counted in the table stats. Never is wrong data returned: a
 * corrupt block makes the lookup or the iterator fail.
 *
 * The index search. A point lookup binary-searches the index block (one
 * entry per data block, ~16k in a 64 MiB table), and each step read a
 * restart offset and a key from a different part of the block: ~19 cache
 * misses per get over 2M records (callgrind), the largest part left after
 * the key index in data blocks. So open also copies every 64th separator
 * into one contiguous array (a few KiB per table, which stay in the CPU
 * cache): a lookup searches those first, then the 64 entries between two
 * of them in the index block (6 steps instead of 14).
 *
 * zstd decompression contexts are kept one per thread (a pthread key whose
 * destructor frees the context at thread exit), so concurrent readers do not
 * contend and no context is allocated per block.
 *
 * Thread-safety: an open lsm_sst is immutable; any number of threads may
 * look up and iterate concurrently (each iterator belongs to one thread).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "lsm/block.h"
#include "lsm/bloom.h"
#include "lsm/sstable_format.h"
#include "lsm/sstable_int.h"
#include "util/checksum.h"
#include "util/coding.h"

/* ---- per-thread zstd contexts ---- */

static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;
static pthread_key_t dctx_key;
static bool dctx_key_ok;

static void
dctx_destroy(void *p)
{
    ZSTD_freeDCtx(p);
}

static void
dctx_key_init(void)
{
    dctx_key_ok = pthread_key_create(&dctx_key, dctx_destroy) == 0;
}

/* This thread's context; NULL on allocation failure. */
static ZSTD_DCtx *
dctx_get(void)
{
    ZSTD_DCtx *d;

    pthread_once(&dctx_once, dctx_key_init);
    if (!dctx_key_ok)
        return NULL;
    d = pthread_getspecific(dctx_key);
    if (d == NULL) {
        d = ZSTD_createDCtx();
        if (d != NULL && pthread_setspecific(dctx_key, d) != 0) {
            ZSTD_freeDCtx(d);
            d = NULL;
        }
    }
    return d;
}

/* ---- block reads ---- */

om_status
sst_corrupt(lsm_sst *t, uint64_t off, const char *why)
{
    lsm_logf(t->o->log_opts, OM_LOG_ERROR, "sstable corrupt file=%s offset=%llu reason=\"%s\"",
             t->path, (unsigned long long)off, why);
    if (t->o->stats != NULL)
        atomic_fetch_add_explicit(&t->o->stats->corrupt_blocks, 1, memory_order_relaxed);
    return OM_ERR(OM_E_CORRUPT);
}

/*
 * Read the block at (off, size), verify its checksum and decompress it.
 * Returns OM_OK with *data and *n: heap bytes owned by the caller, or --
 * when borrow is set, the file is mapped and the block is stored raw --
 * the mapped bytes themselves (*borrowed set; valid while the table is
 * open), which saves a malloc, a 4 KiB copy and a free per block that is
 * not going into the cache. OM_E_CORRUPT; OM_E_IO; OM_E_NOMEM.
 */
static om_status
sst_read_block_bytes_ex(lsm_sst *t, uint64_t off, uint64_t size, bool borrow, bool checked,
                        uint8_t **data, size_t *n, bool *borrowed)
{
    size_t total, got;
    uint8_t *buf = NULL, type;
    const uint8_t *src;
    om_status st;

    if (size > LSM_MAX_BLOCK_SIZE || off > t->data_end || size > t->data_end - off ||
        LSM_BLOCK_TRAILER_SIZE > t->data_end - off - size)
        return sst_corrupt(t, off, "block handle outside the file");
    total = (size_t)size + LSM_BLOCK_TRAILER_SIZE;
    if (t->o->stats != NULL) {
        atomic_fetch_add_explicit(&t->o->stats->block_reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->o->stats->block_read_bytes, total, memory_order_relaxed);
    }
    if (t->map != NULL) {
        /* data_end <= file size (checked at open), so the block lies inside the mapping. */
        src = t->map + off;
    } else {
        buf = malloc(total);
        if (buf == NULL)
            return OM_ERR(OM_E_NOMEM);
        st = lsm_rfile_read(t->f, off, total, buf, &got);
        if (st != OM_OK) {
            free(buf);
            return st;
        }
        if (got != total) {
            free(buf);
            return sst_corrupt(t, off, "block truncated");
        }
        src = buf;
    }
    if (!checked || buf != NULL) {
        if (t->o->stats != NULL)
            atomic_fetch_add_explicit(&t->o->stats->block_checks, 1, memory_order_relaxed);
        if (om_checksum32(src, (size_t)size + 1) != om_get_fixed32(src + size + 1)) {
            free(buf);
            return sst_corrupt(t, off, "block checksum mismatch");
        }
    }
    type = src[size];
    *borrowed = false;
    if (type == LSM_BLOCK_RAW && buf == NULL && borrow) {
        *data = (uint8_t *)(uintptr_t)src; /* read only: lsm_block never writes its bytes */
        *n = (size_t)size;
        *borrowed = true;
        return OM_OK;
    }
    if (type == LSM_BLOCK_RAW) {
        if (buf == NULL) {
            /* Cached blocks outlive the table (and its mapping): copy. */
            if ((buf = malloc(size == 0 ? 1 : (size_t)size)) == NULL)
                return OM_ERR(OM_E_NOMEM);
            memcpy(buf, src, (size_t)size);
        }
        *data = buf;
        *n = (size_t)size;
        return OM_OK;
    }
    if (type == LSM_BLOCK_ZSTD) {
        unsigned long long raw = ZSTD_getFrameContentSize(src, (size_t)size);
        ZSTD_DCtx *d = dctx_get();
        uint8_t *out;
        size_t r;

        if (raw == ZSTD_CONTENTSIZE_UNKNOWN || raw == ZSTD_CONTENTSIZE_ERROR ||
            raw > LSM_MAX_BLOCK_SIZE) {
            free(buf);
            return sst_corrupt(t, off, "zstd frame without a valid size");
        }
        if (d == NULL || (out = malloc(raw == 0 ? 1 : (size_t)raw)) == NULL) {
            free(buf);
            return OM_ERR(OM_E_NOMEM);
        }
        r = ZSTD_decompressDCtx(d, out, (size_t)raw, src, (size_t)size);
        free(buf);
        if (ZSTD_isError(r) || r != raw) {
            free(out);
            return sst_corrupt(t, off, "zstd block does not decompress");
        }
        *data = out;
        *n = (size_t)raw;
        return OM_OK;
    }
    free(buf);
    return sst_corrupt(t, off, "unknown block compression type");
}

/* sst_read_block_bytes_ex without borrowing: the bytes are always the caller's. */
static om_status
sst_read_block_bytes(lsm_sst *t, uint64_t off, uint64_t size, uint8_t **data, size_t *n)
{
    bool borrowed;

    return sst_read_block_bytes_ex(t, off, size, false, false, data, n, &borrowed);
}

/* Whether data block `ord` of a mapped table passed its checks before. */
static inline bool
sst_block_checked(const lsm_sst *t, uint32_t ord)
{
    return ord < t->nchecked &&
           (atomic_load_explicit(&t->checked[ord / 64], memory_order_relaxed) >> (ord % 64) & 1);
}

static inline void
sst_block_set_checked(lsm_sst *t, uint32_t ord)
{
    uint64_t bit = UINT64_C(1) << (ord % 64);

    if (ord < t->nchecked &&
        !(atomic_load_explicit(&t->checked[ord / 64], memory_order_relaxed) & bit))
        atomic_fetch_or_explicit(&t->checked[ord / 64], bit, memory_order_relaxed);
}

/*
 * Read and parse a block into *b (owning its bytes, or with borrow -- a
 * block not going into the cache -- maybe pointing into the mapping).
 * ord: the data block's ordinal in the index, or UINT32_MAX (a meta block,
 * or a read that must check): a mapped block whose ordinal is marked is
 * not checked again, and one that passes is marked.
 */
static om_status
sst_read_block_into(lsm_sst *t, uint64_t off, uint64_t size, bool borrow, uint32_t ord,
                    lsm_block *b)
{
    bool checked = t->map != NULL && sst_block_checked(t, ord), borrowed;
    uint8_t *data;
    size_t n;

    OM_TRY(sst_read_block_bytes_ex(t, off, size, borrow, checked, &data, &n, &borrowed));
    if (checked && borrowed) {
        if (lsm_block_parse_again(b, data, n) == OM_OK)
            return OM_OK;
    } else if (lsm_block_parse(b, data, n, !borrowed) == OM_OK) {
        if (!checked && t->map != NULL)
            sst_block_set_checked(t, ord);
        return OM_OK;
    }
    if (!borrowed)
        free(data);
    return sst_corrupt(t, off, "block restart array malformed");
}

/* Read and parse a block into a heap lsm_block that owns its bytes (always checked). */
static om_status
sst_read_block(lsm_sst *t, uint64_t off, uint64_t size, lsm_block **out)
{
    lsm_block *b = malloc(sizeof(*b));
    om_status st;

    if (b == NULL)
        return OM_ERR(OM_E_NOMEM);
    st = sst_read_block_into(t, off, size, false, UINT32_MAX, b);
    if (st != OM_OK) {
        free(b);
        return st;
    }
    *out = b;
    return OM_OK;
}

static void
block_cache_deleter(om_slice key, void *value)
{
    lsm_block_free(value);
    free(value);
}

void
sst_blockref_release(lsm_sst *t, sst_blockref *r)
{
    if (r->h != NULL)
        lsm_cache_release(t->o->block_cache, r->h);
    else if (r->b != NULL) {
        lsm_block_free(r->b);
        if (r->b != &r->local)
            free(r->b);
    }
    r->b = NULL;
    r->h = NULL;
}

/* Data block number ord at (off, size), from the cache or the file. */
om_status
sst_block_get(lsm_sst *t, uint64_t off, uint64_t size, uint32_t ord, bool fill_cache,
              sst_blockref *out)
{
    lsm_cache *c = t->o->block_cache;
    uint8_t key[16];
    lsm_block *b;
    bool cache_it;
    om_status st;

    /*
     * A raw block of a mapped table is read in place, never through the
     * cache: borrowed, it costs no copy, and no checksum after the first
     * read (sst_block_checked), so a cache hit would save nothing that its
     * lookup does not cost, and a cached copy would only duplicate what the
     * page cache holds. The cache keeps the blocks that cost something to
     * make: decompressed ones, and those of tables read with pread. The
     * compression type is the trailer's first byte; the read checks it with
     * the rest of the block.
     */
    bool in_place = t->map != NULL && off < t->data_end && size < t->data_end - off &&
                    t->map[off + size] == LSM_BLOCK_RAW;

    if (c != NULL && !in_place) {
        om_put_fixed64(key, t->cache_id);
        om_put_fixed64(key + 8, off);
        out->h = lsm_cache_lookup(c, om_slice_make(key, sizeof(key)));
        if (out->h != NULL) {
            out->b = lsm_cache_value(out->h);
            return OM_OK;
        }
    }
    cache_it =
        !in_place && c != NULL && fill_cache && lsm_cache_admit(c, om_slice_make(key, sizeof(key)));
    if (!cache_it) {
        /* Only read while the table is pinned: borrow it, no allocation. */
        OM_TRY(sst_read_block_into(t, off, size, true, ord, &out->local));
        out->b = &out->local;
        out->h = NULL;
        return OM_OK;
    }
    if ((b = malloc(sizeof(*b))) == NULL)
        return OM_ERR(OM_E_NOMEM);
    if ((st = sst_read_block_into(t, off, size, false, ord, b)) != OM_OK) {
        free(b);
        return st;
    }
    out->b = b;
    out->h = NULL;
    if (lsm_cache_insert(c, om_slice_make(key, sizeof(key)), b, b->size + sizeof(*b) + 64,
                         block_cache_deleter, &out->h) != OM_OK)
        out->h = NULL; /* not cached: stays privately owned */
    else if (out->h != NULL && !atomic_load_explicit(&t->cached, memory_order_relaxed))
        atomic_store_explicit(&t->cached, true, memory_order_relaxed);
    return OM_OK;
}

/* Decode an index entry's value: varint64 offset, varint64 size. */
static inline const uint8_t *
sst_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *v)
{
    /* Inline for the forms block offsets and sizes mostly take (up to three bytes). */
    if (limit - p >= 3) {
        if (p[0] < 128) {
            *v = p[0];
            return p + 1;
        }
        if (p[1] < 128) {
            *v = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
            return p + 2;
        }
        if (p[2] < 128) {
            *v = (uint64_t)(p[0] & 0x7f) | ((uint64_t)(p[1] & 0x7f) << 7) | ((uint64_t)p[2] << 14);
            return p + 3;
        }
    }
    return om_decode_varint64(p, limit, v);
}

om_status
sst_decode_handle(lsm_sst *t, om_slice v, uint64_t *off, uint64_t *size)
{
    const uint8_t *p = v.p, *limit = v.p + v.n;

    if ((p = sst_varint64(p, limit, off)) == NULL || (p = sst_varint64(p, limit, size)) == NULL ||
        p != limit)
        return sst_corrupt(t, 0, "bad block handle in index");
    return OM_OK;
}

/* ---- index search ---- */

/* Every SST_IX_SAMPLE-th separator is copied into the sample array. */
#define SST_IX_SAMPLE 64u

/*
 * Copy every SST_IX_SAMPLE-th separator of the index into t->ixs. Any
 * irregularity (a malformed index entry, not one restart per entry) leaves
 * no samples: the plain search then reports the problem when it meets it.
 * Returns: OM_OK; OM_E_NOMEM.
 */
static om_status
sst_build_ix_samples(lsm_sst *t)
{
    lsm_block_iter it = {0};
    uint32_t n = t->index.nrestarts, i = 0, ns = (n + SST_IX_SAMPLE - 1) / SST_IX_SAMPLE;
    om_status st = OM_OK;

    if (n < 2 * SST_IX_SAMPLE)
        return OM_OK;
    if ((t->ixoff = malloc((ns + 1) * sizeof(*t->ixoff))) == NULL)
        return OM_ERR(OM_E_NOMEM);
    lsm_block_iter_init(&it, &t->index, LSM_CMP_IKEY);
    for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base) && st == OM_OK;
         lsm_it_next(&it.base), i++) {
        if (i % SST_IX_SAMPLE == 0 && i / SST_IX_SAMPLE < ns) {
            t->ixoff[i / SST_IX_SAMPLE] = (uint32_t)t->ixkeys.n;
            st = om_buf_append(&t->ixkeys, lsm_it_key(&it.base).p, lsm_it_key(&it.base).n);
        }
    }
    t->ixoff[ns] = (uint32_t)t->ixkeys.n;
    if (st == OM_OK && (i != n || lsm_it_status(&it.base) != OM_OK || t->ixkeys.n > UINT32_MAX))
        ns = 0; /* not one entry per restart, or malformed: no samples */
    lsm_block_iter_fini(&it);
    t->nixs = st == OM_OK ? ns : 0;
    return st;
}

/*
 * Position the index iterator ii at the first separator >= ikey (as
 * lsm_it_seek): a binary search over the samples (contiguous, a few KiB per
 * table: they stay in the CPU cache), then over the SST_IX_SAMPLE entries
 * between two samples in the index block.
 */
void
sst_index_seek(const lsm_sst *t, lsm_block_iter *ii, om_slice ikey)
{
    uint32_t lo = 0, hi = t->nixs;

    if (t->nixs == 0 || ikey.n < LSM_TRAILER_SIZE) {
        lsm_it_seek(&ii->base, ikey);
        return;
    }
    while (lo < hi) { /* the first sample >= ikey */
        uint32_t mid = lo + (hi - lo) / 2;
        om_slice k = om_slice_make(t->ixkeys.p + t->ixoff[mid], t->ixoff[mid + 1] - t->ixoff[mid]);

        if (lsm_ikey_cmp(k, ikey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Entries before sample lo-1's are < ikey, and sample lo's entry (if any) is >= it. */
    if (lo == 0)
        lsm_block_iter_seek_between(ii, ikey, 0, 0);
    else
        lsm_block_iter_seek_between(ii, ikey, (lo - 1) * SST_IX_SAMPLE + 1,
                                    lo == t->nixs ? t->index.nrestarts : lo * SST_IX_SAMPLE);
}

/* ---- open / close ---- */

static om_status
sst_read_props(lsm_sst *t, uint64_t off, uint64_t size)
{
    static const struct {
        const char *name;
        size_t field; /* offsetof in lsm_sst_props; SIZE_MAX for the keys */
    } fields[] = {
        {LSM_PROP_DATA_BLOCKS, offsetof(lsm_sst_props, data_blocks)},
        {LSM_PROP_DATA_BYTES, offsetof(lsm_sst_props, data_bytes)},
        {LSM_PROP_DELETIONS, offsetof(lsm_sst_props, deletions)},
        {LSM_PROP_ENTRIES, offsetof(lsm_sst_props, entries)},
        {LSM_PROP_FILTER_BYTES, offsetof(lsm_sst_props, filter_bytes)},
        {LSM_PROP_INDEX_BYTES, offsetof(lsm_sst_props, index_bytes)},
        {LSM_PROP_RAW_DATA_BYTES, offsetof(lsm_sst_props, raw_data_bytes)},
        {LSM_PROP_RAW_KEY_BYTES, offsetof(lsm_sst_props, raw_key_bytes)},
        {LSM_PROP_RAW_VALUE_BYTES, offsetof(lsm_sst_props, raw_value_bytes)},
        {LSM_PROP_SEQ_LARGEST, offsetof(lsm_sst_props, largest_seq)},
        {LSM_PROP_SEQ_SMALLEST, offsetof(lsm_sst_props, smallest_seq)},
    };
    unsigned seen = 0, need = (1u << (sizeof(fields) / sizeof(fields[0]))) - 1;
    bool have_small = false, have_large = false;
    lsm_block *b = NULL;
    lsm_block_iter it = {0};
    om_status st = OM_OK;

    OM_TRY(sst_read_block(t, off, size, &b));
    lsm_block_iter_init(&it, b, LSM_CMP_BYTES);
    for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base); lsm_it_next(&it.base)) {
        om_slice k = lsm_it_key(&it.base), v = lsm_it_value(&it.base);

        if (om_slice_eq(k, om_slice_from_str(LSM_PROP_SMALLEST))) {
            st = om_buf_set(&t->props.smallest, v);
            have_small = true;
        } else if (om_slice_eq(k, om_slice_from_str(LSM_PROP_LARGEST))) {
            st = om_buf_set(&t->props.largest, v);
            have_large = true;
        } else {
            for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                if (om_slice_eq(k, om_slice_from_str(fields[i].name))) {
                    uint64_t x;

                    if (om_slice_get_varint64(&v, &x) != OM_OK || v.n != 0) {
                        st = sst_corrupt(t, off, "bad property value");
                        break;
                    }
                    memcpy((uint8_t *)&t->props + fields[i].field, &x, sizeof(x));
                    seen |= 1u << i;
                }
            }
            /* Unknown names are properties of a newer writer: ignored. */
        }
        if (st != OM_OK)
            break;
    }
    if (st == OM_OK && lsm_it_status(&it.base) != OM_OK)
        st = sst_corrupt(t, off, "properties block malformed");
    if (st == OM_OK && (seen != need || !have_small || !have_large))
        st = sst_corrupt(t, off, "properties block incomplete");
    if (st == OM_OK && t->props.entries > 0 &&
        (t->props.smallest.n < LSM_TRAILER_SIZE || t->props.largest.n < LSM_TRAILER_SIZE))
        st = sst_corrupt(t, off, "properties key range malformed");
    lsm_block_iter_fini(&it);
    lsm_block_free(b);
    free(b);
    t->props.file_size = t->file_size;
    return st;
}

/* Read every data block once (paranoid open). */
static om_status
sst_verify_blocks(lsm_sst *t)
{
    lsm_block_iter it = {0};
    om_status st = OM_OK;

    lsm_block_iter_init(&it, &t->index, LSM_CMP_IKEY);
    for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base) && st == OM_OK;
         lsm_it_next(&it.base)) {
        uint64_t off, size;
        lsm_block *b = NULL;

        st = sst_decode_handle(t, lsm_it_value(&it.base), &off, &size);
        if (st == OM_OK)
            st = sst_read_block(t, off, size, &b);
        if (st == OM_OK) {
            lsm_block_iter bi = {0};

            lsm_block_iter_init(&bi, b, LSM_CMP_IKEY);
            for (lsm_it_seek_first(&bi.base); lsm_it_valid(&bi.base); lsm_it_next(&bi.base))
                ;
            if (lsm_it_status(&bi.base) != OM_OK)
                st = sst_corrupt(t, off, "data block entries malformed");
            lsm_block_iter_fini(&bi);
            lsm_block_free(b);
            free(b);
        }
    }
    if (st == OM_OK && lsm_it_status(&it.base) != OM_OK)
        st = sst_corrupt(t, t->data_end, "index block malformed");
    lsm_block_iter_fini(&it);
    return st;
}

static void
sst_get_handle(const uint8_t *p, uint64_t *off, uint64_t *size)
{
    *off = om_get_fixed64(p);
    *size = om_get_fixed64(p + 8);
}

om_status
lsm_sst_open(lsm_env *env, const char *path, uint64_t file_number, uint64_t file_size,
             const lsm_table_opts *o, lsm_sst **out)
{
    uint8_t footer[LSM_FOOTER_SIZE];
    uint64_t foff, fsize, ioff, isize, poff, psize, actual;
    lsm_sst *t;
    size_t got;
    om_status st;

    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->path = strdup(path)) == NULL) {
        free(t);
        return OM_ERR(OM_E_NOMEM);
    }
    t->env = env;
    t->o = o;
    t->number = file_number;
    OM_GOTO(env->ops->rfile_open(env, path, &t->f, &actual));
    if (file_size != 0 && actual != file_size) {
        lsm_logf(o->log_opts, OM_LOG_ERROR,
                 "sstable size mismatch file=%s expected=%llu actual=%llu", path,
                 (unsigned long long)file_size, (unsigned long long)actual);
        OM_GOTO(OM_ERR(OM_E_CORRUPT));
    }
    t->file_size = actual;
    /* Prefer a mapping: a block read is then a checksum and a copy, no system call. */
    {
        const uint8_t *map;
        uint64_t msize;

        if (actual > 0 && lsm_rfile_map(t->f, &map, &msize) == OM_OK && msize == actual)
            t->map = map;
    }
    if (actual < LSM_FOOTER_SIZE)
        OM_GOTO(sst_corrupt(t, 0, "file shorter than the footer"));
    OM_GOTO(lsm_rfile_read(t->f, actual - LSM_FOOTER_SIZE, LSM_FOOTER_SIZE, footer, &got));
    if (got != LSM_FOOTER_SIZE)
        OM_GOTO(sst_corrupt(t, actual - LSM_FOOTER_SIZE, "footer truncated"));
    if (om_get_fixed64(footer + 56) != LSM_SST_MAGIC)
        OM_GOTO(sst_corrupt(t, actual - LSM_FOOTER_SIZE, "bad magic (not an sstable)"));
    if (om_checksum32(footer, LSM_FOOTER_CHECKED_SIZE) != om_get_fixed32(footer + 52))
        OM_GOTO(sst_corrupt(t, actual - LSM_FOOTER_SIZE, "footer checksum mismatch"));
    if (om_get_fixed32(footer + 48) != LSM_SST_FORMAT_VERSION &&
        om_get_fixed32(footer + 48) != LSM_SST_FORMAT_V1)
        OM_GOTO(sst_corrupt(t, actual - LSM_FOOTER_SIZE, "unsupported format version"));
    sst_get_handle(footer, &foff, &fsize);
    sst_get_handle(footer + 16, &ioff, &isize);
    sst_get_handle(footer + 32, &poff, &psize);
    /* Blocks must lie before the footer; the read path checks each handle against data_end. */
    t->data_end = actual - LSM_FOOTER_SIZE;
    {
        uint8_t *data;
        size_t n;

        OM_GOTO(sst_read_block_bytes(t, ioff, isize, &data, &n));
        if (lsm_block_parse(&t->index, data, n, true) != OM_OK) {
            free(data);
            OM_GOTO(sst_corrupt(t, ioff, "index restart array malformed"));
        }
        if (fsize > 0) {
            uint8_t *aligned;

            OM_GOTO(sst_read_block_bytes(t, foff, fsize, &data, &n));
            /* Align the filter so each of its 64-byte lines is one cache line. */
            aligned = aligned_alloc(64, (n + 63) / 64 * 64);
            if (aligned == NULL) {
                free(data);
                OM_GOTO(OM_ERR(OM_E_NOMEM));
            }
            memcpy(aligned, data, n);
            free(data);
            t->filter_block.owned = aligned;
            t->filter = om_slice_make(aligned, n);
            if (lsm_bloom_check_filter(t->filter) != OM_OK)
                OM_GOTO(sst_corrupt(t, foff, "bloom filter malformed"));
            lsm_bloom_probe_init(&t->probe, t->filter);
        }
    }
    OM_GOTO(sst_read_props(t, poff, psize));
    /* Data blocks end where the first meta block starts. */
    t->data_end = fsize > 0 ? foff : ioff;
    if (poff < t->data_end || ioff < t->data_end)
        OM_GOTO(sst_corrupt(t, actual - LSM_FOOTER_SIZE, "meta blocks overlap data"));
    if (o->block_cache != NULL)
        t->cache_id = lsm_cache_new_id(o->block_cache);
    OM_GOTO(sst_build_ix_samples(t));
    if (o->verify_on_open)
        OM_GOTO(sst_verify_blocks(t));
    else if (t->map != NULL) {
        /* The index has a restart point per entry: one per data block. */
        t->nchecked = t->index.nrestarts;
        t->checked = calloc((t->nchecked + 63) / 64, sizeof(*t->checked));
        if (t->checked == NULL)
            OM_GOTO(OM_ERR(OM_E_NOMEM));
    }
    *out = t;
    return OM_OK;
fail:
    lsm_sst_close(t);
    return st;
}

/*
 * Drop the table's blocks from the block cache at its close. They are keyed
 * by this open's cache id, which no later open reuses, so they could only
 * sit there until evicted (with tables replaced by compaction the cache
 * filled to capacity however little data was live). One erase per block of
 * the index: the cost follows the table's size, not the cache's.
 */
static void
sst_uncache_blocks(lsm_sst *t)
{
    lsm_block_iter it = {0};
    uint8_t key[16];

    om_put_fixed64(key, t->cache_id);
    lsm_block_iter_init(&it, &t->index, LSM_CMP_IKEY);
    for (lsm_it_seek_first(&it.base); lsm_it_valid(&it.base); lsm_it_next(&it.base)) {
        uint64_t off, size;

        if (sst_decode_handle(t, lsm_it_value(&it.base), &off, &size) != OM_OK)
            break; /* checked at open; a block left behind is only memory until evicted */
        om_put_fixed64(key + 8, off);
        lsm_cache_erase(t->o->block_cache, om_slice_make(key, sizeof(key)));
    }
    lsm_block_iter_fini(&it);
}

void
lsm_sst_close(lsm_sst *t)
{
    if (t == NULL)
        return;
    if (atomic_load(&t->cached))
        sst_uncache_blocks(t);
    lsm_rfile_close(t->f);
    lsm_block_free(&t->index);
    free((void *)t->checked);
    free(t->ixoff);
    om_buf_free(&t->ixkeys);
    free(t->filter_block.owned);
    lsm_sst_props_fini(&t->props);
    free(t->path);
    free(t);
}

const lsm_sst_props *
lsm_sst_props_get(const lsm_sst *t)
{
    return &t->props;
}

uint64_t
lsm_sst_file_number(const lsm_sst *t)
{
    return t->number;
}

/* ---- lookups ---- */

static bool
sst_filter_says_absent(lsm_sst *t, om_slice user_key)
{
    bool absent;

    if (t->filter.n == 0)
        return false;
    absent = !lsm_bloom_probe_may_contain(&t->probe, om_hash64(user_key.p, user_key.n));
    if (t->o->stats != NULL) {
        atomic_fetch_add_explicit(&t->o->stats->bloom_checks, 1, memory_order_relaxed);
        if (absent)
            atomic_fetch_add_explicit(&t->o->stats->bloom_useful, 1, memory_order_relaxed);
    }
    return absent;
}

bool
lsm_sst_may_contain(lsm_sst *t, om_slice user_key)
{
    return !sst_filter_says_absent(t, user_key);
}

bool
lsm_sst_has_filter(const lsm_sst *t)
{
    return t->filter.n > 0;
}

bool
lsm_sst_may_contain_hash(const lsm_sst *t, uint64_t h)
{
    return t->filter.n == 0 || lsm_bloom_probe_may_contain(&t->probe, h);
}

void
lsm_sst_prefetch_filter(const lsm_sst *t, uint64_t h)
{
    if (t->filter.n > 0)
        __builtin_prefetch(lsm_bloom_probe_line(&t->probe, h), 0, 3);
}

om_status
lsm_sst_get(lsm_sst *t, om_slice lookup, bool fill_cache, lsm_sst_get_fn fn, void *arg)
{
    if (lookup.n < LSM_TRAILER_SIZE)
        return OM_ERR(OM_E_INVALID);
    if (sst_filter_says_absent(t, lsm_ikey_user(lookup)))
        return OM_E_NOTFOUND;
    return lsm_sst_get_unfiltered(t, lookup, fill_cache, fn, arg);
}

om_status
lsm_sst_get_unfiltered(lsm_sst *t, om_slice lookup, bool fill_cache, lsm_sst_get_fn fn, void *arg)
{
    lsm_block_iter ii = {0}, di = {0};
    sst_blockref ref = {0};
    om_status st = OM_E_NOTFOUND;
    bool first = true;

    if (lookup.n < LSM_TRAILER_SIZE)
        return OM_ERR(OM_E_INVALID);
    lsm_block_iter_init(&ii, &t->index, LSM_CMP_IKEY);
    sst_index_seek(t, &ii, lookup);
    /*
     * The first index entry >= lookup names the block holding the first key >= lookup;
     * if that block ends before one is found (only possible when a user key spans blocks)
     * the answer is at the start of the next block.
     */
    while (lsm_it_valid(&ii.base)) {
        uint64_t off, size;

        if ((st = sst_decode_handle(t, lsm_it_value(&ii.base), &off, &size)) != OM_OK)
            break;
        if ((st = sst_block_get(t, off, size, lsm_block_iter_ordinal(&ii), fill_cache, &ref)) !=
            OM_OK)
            break;
        lsm_block_iter_init(&di, ref.b, LSM_CMP_IKEY);
        if (!first) {
            lsm_it_seek_first(&di.base);
        } else if (!lsm_block_iter_seek_point(&di, lookup)) {
            /*
             * The block's key index says the user key is not in it. The next
             * block starts after the index entry's separator, so it cannot
             * hold the key either unless the separator has the same user key.
             */
            if (om_slice_cmp(lsm_ikey_user(lookup), lsm_ikey_user(lsm_it_key(&ii.base))) < 0) {
                st = OM_E_NOTFOUND;
                break;
            }
            lsm_it_seek(&di.base, lookup);
        }
        first = false;
        if (lsm_it_valid(&di.base)) {
            om_slice k = lsm_it_key(&di.base);

            if (om_slice_eq(lsm_ikey_user(k), lsm_ikey_user(lookup))) {
                fn(arg, k, lsm_it_value(&di.base));
                st = OM_OK;
            } else {
                st = OM_E_NOTFOUND;
            }
            break;
        }
        if (lsm_it_status(&di.base) != OM_OK) {
            st = sst_corrupt(t, off, "data block entries malformed");
            break;
        }
        sst_blockref_release(t, &ref);
        st = OM_E_NOTFOUND;
        lsm_it_next(&ii.base);
    }
    if (st == OM_E_NOTFOUND && lsm_it_status(&ii.base) != OM_OK)
        st = sst_corrupt(t, t->data_end, "index block malformed");
    sst_blockref_release(t, &ref);
    lsm_block_iter_fini(&di);
    lsm_block_iter_fini(&ii);
    return st;
}

uint64_t
lsm_sst_approximate_offset(lsm_sst *t, om_slice ikey)
{
    lsm_block_iter ii = {0};
    uint64_t off = t->data_end, size;

    lsm_block_iter_init(&ii, &t->index, LSM_CMP_IKEY);
    lsm_it_seek(&ii.base, ikey);
    if (lsm_it_valid(&ii.base)) {
        om_slice v = lsm_it_value(&ii.base);

        if (om_slice_get_varint64(&v, &off) != OM_OK || om_slice_get_varint64(&v, &size) != OM_OK)
            off = t->data_end;
    }
    lsm_block_iter_fini(&ii);
    return off;
}
