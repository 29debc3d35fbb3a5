/*
 * lsm/sstable_writer.c -- builds an SSTable file (layout: lsm/FORMAT.md,
 * section "SSTable"; constants: sstable_format.h).
 *
 * Entries arrive in ascending internal-key order and go into a data block
 * builder; when a block reaches block_size it is compressed with zstd (kept
 * only if that saves at least 12.5%), given its trailer (type byte and
 * checksum) and appended to an output buffer that is written to the file in
 * large chunks. The index entry for a block is written lazily, when the next
 * key is known, so its separator can be shortened to the shortest key k with
 * last <= k < next (LevelDB's trick; it keeps the index small). The filter
 * collects one xxh3 hash per user key.
 *
 * Every LSM_SST_WRITEBACK bytes handed to the env are also handed to its
 * wfile_writeback (env.h): the device writes a table as it grows, so the
 * sync at the end has at most that much left, and a flush or compaction
 * never queues a whole table's pages on the device at once in front of the
 * WAL's syncs (RocksDB's bytes_per_sync). Measured: see docs/PERFORMANCE.md.
 *
 * finish() writes the filter, index and properties blocks and the footer,
 * then fdatasyncs and closes. Errors are sticky: the first one is kept,
 * later calls return it, and finish reports it and removes the partial file.
 *
 * Thread-safety: a writer belongs to one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "lsm/block.h"
#include "lsm/bloom.h"
#include "lsm/sstable.h"
#include "lsm/sstable_format.h"
#include "util/checksum.h"
#include "util/coding.h"

/* Output is handed to the env in chunks of about this size. */
#define SST_WRITE_CHUNK (256u * 1024u)

/*
 * Compression sampling. Object data is often incompressible (random bytes,
 * already compressed media): zstd then runs on every block only for the
 * block to be stored raw -- measured, a quarter of the shard's CPU during
 * Store at pipeline 16 over 2M random-valued records, in compaction, which
 * competes with the writer for the cores. After SST_RAW_RUN blocks in a row
 * that did not shrink enough, only every SST_COMPRESS_SAMPLE-th block is
 * tried, until one shrinks (then every block again). Compressible data
 * never gets there; mixed data loses at most SST_COMPRESS_SAMPLE - 1
 * blocks' compression at a switch from incompressible to compressible.
 */
#define SST_RAW_RUN 8u
#define SST_COMPRESS_SAMPLE 16u

struct lsm_sst_writer {
    lsm_env *env;
    const lsm_table_opts *o;
    char *path;
    lsm_wfile *f;
    uint64_t offset;  /* logical file size: handed to the env plus `out` */
    uint64_t wb_from; /* bytes before it were given to wfile_writeback */
    om_buf out;       /* bytes not yet handed to the env */
    lsm_block_builder data;
    lsm_block_builder index;
    lsm_bloom_builder bloom;
    bool use_bloom;
    om_buf last_key;
    bool pending_index; /* a finished data block waits for its index entry */
    uint64_t pending_off, pending_size;
    om_buf sep;  /* scratch: separators */
    om_buf comp; /* scratch: compressed block */
    ZSTD_CCtx *cctx;
    uint32_t raw_run; /* data blocks in a row that zstd did not (or was not asked to) shrink */
    lsm_sst_props props;
    om_status st;
};

/* ---- small shared helpers (declared in sstable.h) ---- */

void
lsm_table_stats_init(lsm_table_stats *s)
{
    atomic_init(&s->bloom_checks, 0);
    atomic_init(&s->bloom_useful, 0);
    atomic_init(&s->block_reads, 0);
    atomic_init(&s->block_read_bytes, 0);
    atomic_init(&s->corrupt_blocks, 0);
    atomic_init(&s->block_checks, 0);
}

void
lsm_table_stats_get(const lsm_table_stats *s, lsm_table_counters *out)
{
    out->bloom_checks = atomic_load_explicit(&s->bloom_checks, memory_order_relaxed);
    out->bloom_useful = atomic_load_explicit(&s->bloom_useful, memory_order_relaxed);
    out->block_reads = atomic_load_explicit(&s->block_reads, memory_order_relaxed);
    out->block_read_bytes = atomic_load_explicit(&s->block_read_bytes, memory_order_relaxed);
    out->corrupt_blocks = atomic_load_explicit(&s->corrupt_blocks, memory_order_relaxed);
    out->block_checks = atomic_load_explicit(&s->block_checks, memory_order_relaxed);
}

void
lsm_table_opts_init(lsm_table_opts *t, const lsm_opts *o, lsm_cache *block_cache,
                    lsm_table_stats *stats)
{
    memset(t, 0, sizeof(*t));
    t->block_size = 4096;
    t->restart_interval = 16;
    t->bloom_bits_per_key = 10;
    t->zstd_level = 1;
    t->key_index = true;
    if (o != NULL) {
        t->block_size = o->block_size;
        t->restart_interval = o->block_restart_interval;
        t->bloom_bits_per_key = o->bloom_bits_per_key;
        t->zstd_level = o->zstd_level;
        t->verify_on_open = o->paranoid_checks;
    }
    t->block_cache = block_cache;
    t->stats = stats;
    t->log_opts = o;
}

void
lsm_sst_path(char *buf, size_t n, const char *dir, uint64_t number)
{
    snprintf(buf, n, "%s/%06llu.sst", dir, (unsigned long long)number);
}

void
lsm_sst_props_fini(lsm_sst_props *p)
{
    om_buf_free(&p->smallest);
    om_buf_free(&p->largest);
}

/* ---- writer ---- */

static void
writer_fail(lsm_sst_writer *w, om_status st)
{
    if (w->st == OM_OK)
        w->st = st;
}

static om_status
writer_drain(lsm_sst_writer *w)
{
    om_status st;

    if (w->out.n == 0)
        return OM_OK;
    st = lsm_wfile_append(w->f, w->out.p, w->out.n);
    om_buf_reset(&w->out); /* now all of offset is handed to the env */
    if (st == OM_OK && w->env->ops->wfile_writeback != NULL &&
        w->offset - w->wb_from >= LSM_SST_WRITEBACK) {
        st = w->env->ops->wfile_writeback(w->f, w->wb_from, w->offset - w->wb_from);
        w->wb_from = w->offset;
    }
    return st;
}

/*
 * Append a block with its trailer at the current offset; *off and *size get
 * its handle. compress: try zstd (data blocks only).
 */
static om_status
writer_put_block(lsm_sst_writer *w, om_slice raw, bool compress, uint64_t *off, uint64_t *size)
{
    om_slice stored = raw;
    uint8_t type = LSM_BLOCK_RAW;
    size_t start;

    if (compress && w->o->zstd_level != 0 && raw.n >= 64 && w->raw_run >= SST_RAW_RUN &&
        (w->raw_run - SST_RAW_RUN) % SST_COMPRESS_SAMPLE != 0) {
        w->raw_run++; /* incompressible so far: not sampled this time */
    } else if (compress && w->o->zstd_level != 0 && raw.n >= 64) {
        size_t bound = ZSTD_compressBound(raw.n), r;

        om_buf_reset(&w->comp);
        OM_TRY(om_buf_reserve(&w->comp, bound));
        if (w->cctx == NULL && (w->cctx = ZSTD_createCCtx()) == NULL)
            return OM_ERR(OM_E_NOMEM);
        r = ZSTD_compressCCtx(w->cctx, w->comp.p, bound, raw.p, raw.n, w->o->zstd_level);
        /* A compression failure just means the block is stored raw. */
        if (!ZSTD_isError(r) && r < raw.n - (raw.n >> LSM_COMPRESS_MIN_SAVING_SHIFT)) {
            stored = om_slice_make(w->comp.p, r);
            type = LSM_BLOCK_ZSTD;
            w->raw_run = 0;
        } else {
            w->raw_run++;
        }
    }
    if (stored.n > LSM_MAX_BLOCK_SIZE)
        return OM_ERR(OM_E_INVALID);
    start = w->out.n;
    OM_TRY(om_buf_reserve(&w->out, stored.n + LSM_BLOCK_TRAILER_SIZE));
    OM_TRY(om_buf_append(&w->out, stored.p, stored.n));
    OM_TRY(om_buf_append_byte(&w->out, type));
    /* The checksum covers the stored bytes and the type byte, contiguous in out. */
    OM_TRY(om_buf_put_fixed32(&w->out, om_checksum32(w->out.p + start, stored.n + 1)));
    *off = w->offset;
    *size = stored.n;
    w->offset += stored.n + LSM_BLOCK_TRAILER_SIZE;
    if (w->out.n >= SST_WRITE_CHUNK)
        OM_TRY(writer_drain(w));
    return OM_OK;
}

/*
 * The shortest internal key k with a <= k < b (a < b), into w->sep. When the
 * user keys differ, k's user key is a's prefix with one byte incremented and
 * k gets the largest trailer, so it sorts before every entry of that user key.
 */
static om_status
writer_separator(lsm_sst_writer *w, om_slice a, om_slice b)
{
    om_slice ua = lsm_ikey_user(a), ub = lsm_ikey_user(b);
    size_t i = 0, lim = ua.n < ub.n ? ua.n : ub.n;

    om_buf_reset(&w->sep);
    while (i < lim && ua.p[i] == ub.p[i])
        i++;
    if (i < lim) {
        size_t j = i;

        /* ua[i] < ub[i]. Increment ua[i] if that stays below ub[i], else a later byte of ua. */
        if (ua.p[i] + 1 >= ub.p[i]) {
            j = i + 1;
            while (j < ua.n && ua.p[j] == 0xff)
                j++;
        }
        if (j < ua.n && j + 1 < ua.n) {
            OM_TRY(om_buf_append(&w->sep, ua.p, j + 1));
            w->sep.p[j]++;
            return lsm_ikey_append(&w->sep, om_slice_make(NULL, 0), LSM_MAX_SEQ, LSM_TYPE_SEEK);
        }
    }
    return om_buf_set(&w->sep, a);
}

/* A key >= every internal key of a's user key (for the last index entry). */
static om_status
writer_successor(lsm_sst_writer *w, om_slice a)
{
    om_slice ua = lsm_ikey_user(a);

    om_buf_reset(&w->sep);
    for (size_t i = 0; i + 1 < ua.n; i++) {
        if (ua.p[i] != 0xff) {
            OM_TRY(om_buf_append(&w->sep, ua.p, i + 1));
            w->sep.p[i]++;
            return lsm_ikey_append(&w->sep, om_slice_make(NULL, 0), LSM_MAX_SEQ, LSM_TYPE_SEEK);
        }
    }
    return om_buf_set(&w->sep, a);
}

static om_status
writer_add_index(lsm_sst_writer *w, om_slice sep)
{
    uint8_t h[2 * OM_MAX_VARINT64_LEN], *p = h;

    p = om_encode_varint64(p, w->pending_off);
    p = om_encode_varint64(p, w->pending_size);
    w->pending_index = false;
    return lsm_block_builder_add(&w->index, sep, om_slice_make(h, (size_t)(p - h)));
}

static om_status
writer_flush_data(lsm_sst_writer *w)
{
    om_slice raw;

    if (lsm_block_builder_empty(&w->data))
        return OM_OK;
    OM_TRY(lsm_block_builder_finish(&w->data, &raw));
    OM_TRY(writer_put_block(w, raw, true, &w->pending_off, &w->pending_size));
    w->props.raw_data_bytes += raw.n;
    w->props.data_bytes += w->pending_size + LSM_BLOCK_TRAILER_SIZE;
    w->props.data_blocks++;
    w->pending_index = true;
    lsm_block_builder_reset(&w->data);
    return OM_OK;
}

om_status
lsm_sst_writer_open(lsm_env *env, const char *path, const lsm_table_opts *o, lsm_sst_writer **out)
{
    lsm_sst_writer *w;
    om_status st;

    if (o->block_size == 0 || o->block_size > LSM_MAX_BLOCK_SIZE / 2 || o->restart_interval < 1 ||
        o->bloom_bits_per_key < 0 || o->zstd_level < ZSTD_minCLevel() ||
        o->zstd_level > ZSTD_maxCLevel()) {
        lsm_logf(o->log_opts, OM_LOG_ERROR,
                 "sstable writer: bad options block_size=%zu restart_interval=%d bloom_bits=%d "
                 "zstd_level=%d",
                 o->block_size, o->restart_interval, o->bloom_bits_per_key, o->zstd_level);
        return OM_ERR(OM_E_INVALID);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        return OM_ERR(OM_E_NOMEM);
    }
    w->env = env;
    w->o = o;
    lsm_block_builder_init(&w->data, o->restart_interval);
    if (o->key_index)
        lsm_block_builder_key_index(&w->data);
    lsm_block_builder_init(&w->index, LSM_INDEX_RESTART_INTERVAL);
    lsm_bloom_builder_init(&w->bloom, o->bloom_bits_per_key);
    w->use_bloom = o->bloom_bits_per_key > 0;
    OM_GOTO(env->ops->wfile_open(env, path, false, &w->f));
    *out = w;
    return OM_OK;
fail:
    lsm_sst_writer_abandon(w);
    return st;
}

om_status
lsm_sst_writer_add(lsm_sst_writer *w, om_slice ikey, om_slice value)
{
    lsm_ikey pk;
    om_status st;

    if (w->st != OM_OK)
        return w->st;
    if (lsm_ikey_parse(ikey, &pk) != OM_OK ||
        (w->props.entries > 0 && lsm_ikey_cmp(om_buf_slice(&w->last_key), ikey) >= 0)) {
        lsm_logf(w->o->log_opts, OM_LOG_ERROR,
                 "sstable writer: key out of order or malformed file=%s entry=%llu", w->path,
                 (unsigned long long)w->props.entries);
        writer_fail(w, OM_ERR(OM_E_INVALID));
        return w->st;
    }
    if (w->pending_index) {
        OM_GOTO(writer_separator(w, om_buf_slice(&w->last_key), ikey));
        OM_GOTO(writer_add_index(w, om_buf_slice(&w->sep)));
    }
    if (w->use_bloom)
        OM_GOTO(lsm_bloom_builder_add(&w->bloom, pk.user_key));
    OM_GOTO(lsm_block_builder_add(&w->data, ikey, value));
    OM_GOTO(om_buf_set(&w->last_key, ikey));
    if (w->props.entries == 0) {
        OM_GOTO(om_buf_set(&w->props.smallest, ikey));
        w->props.smallest_seq = pk.seq;
    }
    if (w->props.entries == 0 || pk.seq < w->props.smallest_seq)
        w->props.smallest_seq = pk.seq;
    if (pk.seq > w->props.largest_seq)
        w->props.largest_seq = pk.seq;
    w->props.entries++;
    if (pk.type == LSM_TYPE_DEL)
        w->props.deletions++;
    w->props.raw_key_bytes += ikey.n;
    w->props.raw_value_bytes += value.n;
    if (lsm_block_builder_size(&w->data) >= w->o->block_size)
        OM_GOTO(writer_flush_data(w));
    return OM_OK;
fail:
    writer_fail(w, st);
    return w->st;
}

uint64_t
lsm_sst_writer_estimated_size(const lsm_sst_writer *w)
{
    return w->offset + lsm_block_builder_size(&w->data);
}

uint64_t
lsm_sst_writer_entries(const lsm_sst_writer *w)
{
    return w->props.entries;
}

static om_status
props_put_u64(lsm_block_builder *b, const char *name, uint64_t v)
{
    uint8_t buf[OM_MAX_VARINT64_LEN];
    uint8_t *e = om_encode_varint64(buf, v);

    return lsm_block_builder_add(b, om_slice_from_str(name), om_slice_make(buf, (size_t)(e - buf)));
}

/* The properties block: names in ascending bytewise order (the block's key order). */
static om_status
writer_props_block(lsm_sst_writer *w, lsm_block_builder *b)
{
    const lsm_sst_props *p = &w->props;

    OM_TRY(props_put_u64(b, LSM_PROP_DATA_BLOCKS, p->data_blocks));
    OM_TRY(props_put_u64(b, LSM_PROP_DATA_BYTES, p->data_bytes));
    OM_TRY(props_put_u64(b, LSM_PROP_DELETIONS, p->deletions));
    OM_TRY(props_put_u64(b, LSM_PROP_ENTRIES, p->entries));
    OM_TRY(props_put_u64(b, LSM_PROP_FILTER_BYTES, p->filter_bytes));
    OM_TRY(props_put_u64(b, LSM_PROP_INDEX_BYTES, p->index_bytes));
    OM_TRY(
        lsm_block_builder_add(b, om_slice_from_str(LSM_PROP_LARGEST), om_buf_slice(&p->largest)));
    OM_TRY(
        lsm_block_builder_add(b, om_slice_from_str(LSM_PROP_SMALLEST), om_buf_slice(&p->smallest)));
    OM_TRY(props_put_u64(b, LSM_PROP_RAW_DATA_BYTES, p->raw_data_bytes));
    OM_TRY(props_put_u64(b, LSM_PROP_RAW_KEY_BYTES, p->raw_key_bytes));
    OM_TRY(props_put_u64(b, LSM_PROP_RAW_VALUE_BYTES, p->raw_value_bytes));
    OM_TRY(props_put_u64(b, LSM_PROP_SEQ_LARGEST, p->largest_seq));
    OM_TRY(props_put_u64(b, LSM_PROP_SEQ_SMALLEST, p->smallest_seq));
    return OM_OK;
}

static void
put_handle(uint8_t *p, uint64_t off, uint64_t size)
{
    om_put_fixed64(p, off);
    om_put_fixed64(p + 8, size);
}

static om_status
writer_finish_blocks(lsm_sst_writer *w)
{
    uint64_t foff = 0, fsize = 0, ioff, isize, poff, psize;
    uint8_t footer[LSM_FOOTER_SIZE];
    lsm_block_builder pb;
    om_slice raw;
    om_buf filter = OM_BUF_INIT;
    om_status st;

    OM_TRY(writer_flush_data(w));
    if (w->pending_index) {
        OM_TRY(writer_successor(w, om_buf_slice(&w->last_key)));
        OM_TRY(writer_add_index(w, om_buf_slice(&w->sep)));
    }
    if (w->use_bloom) {
        st = lsm_bloom_builder_finish(&w->bloom, &filter);
        if (st == OM_OK)
            st = writer_put_block(w, om_buf_slice(&filter), false, &foff, &fsize);
        om_buf_free(&filter);
        OM_TRY(st);
        w->props.filter_bytes = fsize + LSM_BLOCK_TRAILER_SIZE;
    }
    OM_TRY(lsm_block_builder_finish(&w->index, &raw));
    OM_TRY(writer_put_block(w, raw, false, &ioff, &isize));
    w->props.index_bytes = isize + LSM_BLOCK_TRAILER_SIZE;
    OM_TRY(om_buf_set(&w->props.largest, om_buf_slice(&w->last_key)));

    lsm_block_builder_init(&pb, 1);
    st = writer_props_block(w, &pb);
    if (st == OM_OK)
        st = lsm_block_builder_finish(&pb, &raw);
    if (st == OM_OK)
        st = writer_put_block(w, raw, false, &poff, &psize);
    lsm_block_builder_fini(&pb);
    OM_TRY(st);

    put_handle(footer, foff, fsize);
    put_handle(footer + 16, ioff, isize);
    put_handle(footer + 32, poff, psize);
    om_put_fixed32(footer + 48, w->o->key_index ? LSM_SST_FORMAT_VERSION : LSM_SST_FORMAT_V1);
    om_put_fixed32(footer + 52, om_checksum32(footer, LSM_FOOTER_CHECKED_SIZE));
    om_put_fixed64(footer + 56, LSM_SST_MAGIC);
    OM_TRY(om_buf_append(&w->out, footer, sizeof(footer)));
    w->offset += sizeof(footer);
    w->props.file_size = w->offset;
    OM_TRY(writer_drain(w));
    return lsm_wfile_sync(w->f);
}

static void
writer_free(lsm_sst_writer *w)
{
    lsm_block_builder_fini(&w->data);
    lsm_block_builder_fini(&w->index);
    lsm_bloom_builder_fini(&w->bloom);
    om_buf_free(&w->out);
    om_buf_free(&w->last_key);
    om_buf_free(&w->sep);
    om_buf_free(&w->comp);
    lsm_sst_props_fini(&w->props);
    ZSTD_freeCCtx(w->cctx);
    free(w->path);
    free(w);
}

om_status
lsm_sst_writer_finish(lsm_sst_writer *w, lsm_sst_props *props)
{
    om_status st = w->st;

    if (st == OM_OK)
        st = writer_finish_blocks(w);
    if (st == OM_OK) {
        st = lsm_wfile_close(w->f);
        w->f = NULL;
    }
    if (st != OM_OK) {
        lsm_logf(w->o->log_opts, OM_LOG_ERROR, "sstable write failed file=%s status=%s", w->path,
                 om_status_str(st));
        lsm_sst_writer_abandon(w);
        return st;
    }
    if (props != NULL) {
        *props = w->props;
        /* The key buffers move to the caller. */
        w->props.smallest = OM_BUF_INIT;
        w->props.largest = OM_BUF_INIT;
    }
    writer_free(w);
    return OM_OK;
}

void
lsm_sst_writer_abandon(lsm_sst_writer *w)
{
    if (w == NULL)
        return;
    if (w->f != NULL) {
        lsm_wfile_close(w->f);
        /* Best effort: a leftover file is harmless (not in the MANIFEST, removed as garbage). */
        w->env->ops->remove(w->env, w->path);
    }
    writer_free(w);
}
