/*
 * shard/shard.c -- the object operations of one shard over its LSM tree:
 * store, get, exists and delete with versions and conditions (the rules are
 * in shard.h). Protocol translation lives in handlers.c, the threads that
 * write and sync in commit.c, opening and closing in lifecycle.c.
 *
 * Read-check-write: a writer locks the stripe of its key (xxh3 of the LSM key
 * modulo SHARD_STRIPES), reads the current record, checks the condition,
 * computes the next version (checked to increase: shard_version_check) and
 * writes, then unlocks. Readers take no lock: the engine gives them a
 * consistent value.
 */
#define OM_LOG_MODULE "shard"
#include "shard/shard_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard/repl.h"
#include "util/checksum.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/workq.h"

static const char *const shard_op_names[SHARD_OP_COUNT_] = {
    "store", "retrieve", "head", "exists", "delete", "list", "stats", "ping", "other",
};

const char *
shard_op_name(shard_op op)
{
    return (unsigned)op < SHARD_OP_COUNT_ ? shard_op_names[op] : "other";
}

static om_status
shard_msg(om_status st, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* mkdir -p: the data directory and its parents. */
static om_status
shard_make_dirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf)) {
        om_log(OM_LOG_ERROR, "bad data directory path=%s", path);
        return OM_ERR(OM_E_INVALID);
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        char c = buf[i];
        if (c != '/' && c != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            om_log(OM_LOG_ERROR, "cannot create directory path=%s error=%s", buf, strerror(e));
            return OM_ERR(om_status_from_errno(e));
        }
        buf[i] = c;
    }
    return OM_OK;
}

/*
 * The engine side of shard_open (lifecycle.c): the data directory, the
 * stripes, the engine. On an error everything it made is undone.
 */
om_status
shard_engine_open(shard *s, const char *dir)
{
    pthread_rwlockattr_t ga;
    om_status st;

    for (int i = 0; i < SHARD_STRIPES; i++)
        pthread_mutex_init(&s->stripes[i], NULL);
    pthread_rwlockattr_init(&ga);
    /* a group taking the gate exclusive must not starve behind single writes */
    pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->stripes_gate, &ga);
    pthread_rwlockattr_destroy(&ga);
    pthread_mutex_init(&s->wm_mu, NULL);
    st = shard_make_dirs(dir);
    if (st == OM_OK)
        st = lsm_open(dir, &s->opts.lsm, &s->db);
    if (st != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot open the engine dir=%s status=%s", dir, om_status_str(st));
        for (int i = 0; i < SHARD_STRIPES; i++)
            pthread_mutex_destroy(&s->stripes[i]);
        pthread_rwlock_destroy(&s->stripes_gate);
        pthread_mutex_destroy(&s->wm_mu);
    }
    return st;
}

static void wm_scratch_free(shard_wm_scratch *x);

/* Sync the WAL and close the engine (no request runs any more). Returns the first error. */
om_status
shard_engine_close(shard *s)
{
    om_status st, st2;

    om_buf_free(&s->read_buf);
    wm_scratch_free(s->wm_spare);
    s->wm_spare = NULL;
    pthread_mutex_destroy(&s->wm_mu);
    st = lsm_sync(s->db);
    st2 = lsm_close(s->db);
    if (st == OM_OK)
        st = st2;
    for (int i = 0; i < SHARD_STRIPES; i++)
        pthread_mutex_destroy(&s->stripes[i]);
    pthread_rwlock_destroy(&s->stripes_gate);
    return st;
}

lsm_db *
shard_db(shard *s)
{
    return s->db;
}

static om_status
shard_validate_addr(om_slice bucket, om_slice key, char *err, size_t errlen)
{
    OM_TRY(shard_validate_bucket(bucket, err, errlen));
    return shard_validate_key(key, err, errlen);
}

unsigned
shard_stripe_of(om_slice lkey)
{
    return (unsigned)(om_hash64(lkey.p, lkey.n) % SHARD_STRIPES);
}

static unsigned
stripes_count(const uint64_t *set)
{
    unsigned n = 0;

    for (unsigned w = 0; w < SHARD_STRIPES / 64; w++)
        n += (unsigned)__builtin_popcountll(set[w]);
    return n;
}

void
shard_stripes_lock(shard *s, const uint64_t *set)
{
    int held = -1;

    if (stripes_count(set) > SHARD_GROUP_MAX_STRIPES) {
        pthread_rwlock_wrlock(&s->stripes_gate);
        return;
    }
    pthread_rwlock_rdlock(&s->stripes_gate);
    for (unsigned k = 0; k < SHARD_STRIPES; k++)
        if (set[k / 64] & (UINT64_C(1) << (k % 64)))
            shard_stripe_lock(s, k, &held);
}

void
shard_stripes_unlock(shard *s, const uint64_t *set)
{
    if (stripes_count(set) <= SHARD_GROUP_MAX_STRIPES)
        for (unsigned k = SHARD_STRIPES; k-- > 0;)
            if (set[k / 64] & (UINT64_C(1) << (k % 64)))
                pthread_mutex_unlock(&s->stripes[k]);
    pthread_rwlock_unlock(&s->stripes_gate);
}

/*
 * Read the current record (live or tombstone) of lkey into *raw and *rec.
 * flags: LSM_GET_* (LSM_GET_NO_FILL for the read before a write: the row it
 * finds is about to be shadowed, so caching it would only evict a useful one;
 * LSM_GET_HEAD when only the head of *rec is wanted: see
 * shard_record_decode_head). Returns OM_OK, OM_E_NOTFOUND if the engine has
 * nothing, or an engine error.
 */
_Static_assert(SHARD_RECORD_HEAD_MAX <= LSM_GET_HEAD_BYTES, "a record head fits LSM_GET_HEAD");
static om_status
shard_read(shard *s, om_slice lkey, unsigned flags, om_buf *raw, shard_record *rec, char *err,
           size_t errlen)
{
    om_status st = lsm_get_ex(s->db, NULL, lkey, raw, flags);

    if (st == OM_E_NOTFOUND)
        return st;
    if (st != OM_OK)
        return shard_msg(st, err, errlen, "storage engine read failed: %s", om_status_str(st));
    st = flags & LSM_GET_HEAD ? shard_record_decode_head(om_buf_slice(raw), rec)
                              : shard_record_decode(om_buf_slice(raw), rec);
    if (st != OM_OK)
        return shard_msg(st, err, errlen, "stored record does not decode");
    return OM_OK;
}

static uint64_t
shard_next_version(bool have_old, uint64_t old_version)
{
    uint64_t now_us = om_clock_wall_ns() / 1000;

    if (have_old && old_version + 1 > now_us)
        return old_version + 1;
    return now_us;
}

static void
shard_info_from(const shard_record *r, shard_obj_info *info)
{
    info->version = r->version;
    info->size = r->size;
    info->etag = r->etag;
    info->created_ms = r->created_ms;
    info->modified_ms = r->modified_ms;
}

/* Check a condition against the current record (live tells whether it is a live one). */
static om_status
shard_check_cond(shard_cond c, bool live, uint64_t version, char *err, size_t errlen)
{
    switch (c.kind) {
    case SHARD_COND_NONE:
        return OM_OK;
    case SHARD_COND_IF_ABSENT:
        if (live)
            return shard_msg(OM_E_PRECONDITION, err, errlen,
                             "if_absent: the object exists (version %llu)",
                             (unsigned long long)version);
        return OM_OK;
    case SHARD_COND_IF_VERSION:
        if (!live)
            return shard_msg(OM_E_PRECONDITION, err, errlen,
                             "if_version: the object does not exist (expected version %llu)",
                             (unsigned long long)c.version);
        if (version != c.version)
            return shard_msg(OM_E_PRECONDITION, err, errlen,
                             "if_version: current version is %llu, expected %llu",
                             (unsigned long long)version, (unsigned long long)c.version);
        return OM_OK;
    }
    return shard_msg(OM_E_INVALID, err, errlen, "condition: unknown kind %d", (int)c.kind);
}

/*
 * The LSM key of a validated address in a stack buffer: bucket 0x00 key is
 * at most SHARD_BUCKET_MAX + 1 + SHARD_KEY_MAX bytes, so reads need no
 * allocation for it. Requires: bucket and key passed shard_validate_addr.
 */
#define SHARD_LKEY_MAX (SHARD_BUCKET_MAX + 1 + SHARD_KEY_MAX)

static om_slice
shard_lkey_stack(om_slice bucket, om_slice key, uint8_t buf[SHARD_LKEY_MAX])
{
    memcpy(buf, bucket.p, bucket.n);
    buf[bucket.n] = 0;
    if (key.n > 0)
        memcpy(buf + bucket.n + 1, key.p, key.n);
    return om_slice_make(buf, bucket.n + 1 + key.n);
}

om_status
shard_get(shard *s, om_slice bucket, om_slice key, om_buf *raw, shard_record *rec, char *err,
          size_t errlen)
{
    uint8_t kbuf[SHARD_LKEY_MAX];
    shard_record r;
    om_status st;

    OM_TRY(shard_validate_addr(bucket, key, err, errlen));
    st = shard_read(s, shard_lkey_stack(bucket, key, kbuf), 0, raw, &r, err, errlen);
    if (st == OM_OK && r.type == SHARD_REC_TOMBSTONE)
        st = OM_E_NOTFOUND;
    if (st == OM_E_NOTFOUND)
        shard_msg(st, err, errlen, "no such object");
    if (st == OM_OK)
        *rec = r;
    return st;
}

void
shard_rpc_prefetch(void *arg, const rpc_key_hint *hints, size_t n)
{
    shard *s = arg;
    uint8_t buf[SHARD_PREFETCH_BYTES];
    om_slice lk[SHARD_PREFETCH_MAX];
    size_t used = 0, k = 0;

    /*
     * Reads on workers run later: loading now would not help them. A lone
     * read gains nothing either: its get would wait for the same loads, one
     * after another, right after the hint.
     */
    if (!s->opts.inline_reads || n < 2)
        return;
    for (size_t i = 0; i < n && i < SHARD_PREFETCH_MAX; i++) {
        om_slice b = hints[i].bucket, key = hints[i].key;
        size_t len = b.n + 1 + key.n;

        /* only addresses of a valid length (and so non-NULL): a bad one fails at the read */
        if (b.n < SHARD_BUCKET_MIN || b.n > SHARD_BUCKET_MAX || key.n == 0 || key.n > SHARD_KEY_MAX)
            continue;
        if (used + len > sizeof(buf))
            break;
        lk[k++] = shard_lkey_stack(b, key, buf + used);
        used += len;
    }
    lsm_prefetch_reads(s->db, lk, k);
}

om_status
shard_exists(shard *s, om_slice bucket, om_slice key, char *err, size_t errlen)
{
    uint8_t kbuf[SHARD_LKEY_MAX];
    om_buf raw = OM_BUF_INIT;
    shard_record r;
    om_slice lkey;
    om_status st;

    OM_TRY(shard_validate_addr(bucket, key, err, errlen));
    lkey = shard_lkey_stack(bucket, key, kbuf);
    if (!lsm_may_contain(s->db, lkey)) {
        st = OM_E_NOTFOUND;
    } else {
        st = shard_read(s, lkey, 0, &raw, &r, err, errlen);
        if (st == OM_OK && r.type == SHARD_REC_TOMBSTONE)
            st = OM_E_NOTFOUND;
    }
    if (st == OM_E_NOTFOUND)
        shard_msg(st, err, errlen, "no such object");
    om_buf_free(&raw);
    return st;
}

/*
 * Writes. One write (a store or a delete) goes through three steps:
 * write_validate (no lock), write_prepare (under the key's stripe: read the
 * current record, check the condition, assign the version, encode the new
 * record) and the LSM write. shard_write_many runs a batch of writes with a
 * single lsm_write -- one WAL record and one fsync for all of them -- while it
 * holds every stripe involved, taken in ascending index order (the only
 * place a thread holds more than one stripe, so there is no deadlock) --
 * or, past SHARD_GROUP_MAX_STRIPES of them, the stripes gate exclusive,
 * which excludes every stripe holder (shard_int.h, "Lock order").
 * A write to a key that appears earlier in the same batch is decided against
 * the record its latest predecessor in the batch puts there (or, when no
 * predecessor writes anything, against the engine), and goes into the same
 * lsm_write after it: the engine applies a batch in order, so the result is
 * that of the writes made one after another, with one fsync for all.
 */
static om_status
write_validate(shard *s, shard_write *w)
{
    const shard_store_args *a = &w->args;

    OM_TRY(shard_validate_addr(a->bucket, a->key, w->err, sizeof(w->err)));
    if (w->is_delete) {
        if (a->cond.kind == SHARD_COND_IF_ABSENT)
            return shard_msg(OM_E_INVALID, w->err, sizeof(w->err),
                             "condition: if_absent is not allowed on delete");
        return OM_OK;
    }
    OM_TRY(shard_validate_data(a->data, s->opts.max_object_size, w->err, sizeof(w->err)));
    OM_TRY(shard_validate_metadata(a->metadata, s->opts.max_metadata_size,
                                   s->opts.metadata_max_depth, w->err, sizeof(w->err)));
    return shard_validate_content_type(a->content_type, w->err, sizeof(w->err));
}

/*
 * The engine's record of a key as read before a group's writes (the head
 * only): st is OM_OK (rec holds it), OM_E_NOTFOUND, or an engine error whose
 * message is in the write's err.
 */
typedef struct shard_preread {
    om_status st;
    shard_record rec;
} shard_preread;

/*
 * Requires: the stripe of lkey held. Decide w: on OM_OK the record to write
 * is appended to *vals and its length goes to *vlen, or *vlen is 0 when
 * nothing is to be written (a forwarded write older than what is held);
 * w->info is filled either way. The current record is `prev` when not NULL
 * (an earlier write of the same batch, not yet in the engine), else `pre`
 * when not NULL (read under the same stripes: wm_read_chunks), else read
 * from the engine into *raw.
 */
static om_status
write_prepare(shard *s, shard_write *w, om_slice lkey, uint64_t etag, const om_slice *prev,
              const shard_preread *pre, om_buf *raw, om_buf *vals, size_t *vlen)
{
    const shard_store_args *a = &w->args;
    shard_record old, rec;
    bool have_old, live;
    size_t start = vals->n;
    om_status st;

    *vlen = 0;
    /* Only the old record's head is used: version, type, times (shard_info_from). */
    if (prev != NULL) {
        st = shard_record_decode_head(*prev, &old);
        if (st != OM_OK)
            return shard_msg(st, w->err, sizeof(w->err), "batched record does not decode");
    } else if (pre != NULL) {
        st = pre->st;
        old = pre->rec;
    } else {
        st = shard_read(s, lkey, LSM_GET_NO_FILL | LSM_GET_HEAD, raw, &old, w->err, sizeof(w->err));
    }
    if (st != OM_OK && st != OM_E_NOTFOUND)
        return st;
    have_old = st == OM_OK;
    live = have_old && old.type == SHARD_REC_LIVE;
    OM_TRY(shard_check_cond(a->cond, live, live ? old.version : 0, w->err, sizeof(w->err)));
    if (a->forced_version != 0 && have_old && old.version >= a->forced_version) {
        shard_info_from(&old, &w->info); /* a newer write is already here: keep it */
        return OM_OK;
    }
    if (w->is_delete && !live && a->forced_version == 0)
        return shard_msg(OM_E_NOTFOUND, w->err, sizeof(w->err), "no such object");
    if (have_old && old.version == UINT64_MAX && a->forced_version == 0)
        return shard_msg(OM_E_INVALID, w->err, sizeof(w->err),
                         "version: the key holds the highest version; it cannot be written again");
    memset(&rec, 0, sizeof(rec));
    rec.type = w->is_delete ? SHARD_REC_TOMBSTONE : SHARD_REC_LIVE;
    rec.version = a->forced_version != 0 ? a->forced_version
                                         : shard_next_version(have_old, have_old ? old.version : 0);
    shard_version_check(have_old, have_old ? old.version : 0, rec.version);
    rec.modified_ms = om_clock_wall_ms();
    rec.etag = etag;
    if (w->is_delete) {
        rec.created_ms = live ? old.created_ms : 0;
    } else {
        rec.created_ms = live ? old.created_ms : rec.modified_ms;
        rec.size = a->data.n;
        rec.content_type = a->content_type;
        rec.metadata = a->metadata;
        rec.data = a->data;
    }
    st = shard_record_append(&rec, vals);
    if (st != OM_OK) {
        vals->n = start;
        return shard_msg(st, w->err, sizeof(w->err), "out of memory");
    }
    *vlen = vals->n - start;
    shard_info_from(&rec, &w->info);
    return OM_OK;
}

static void
write_fail_engine(shard *s, shard_write *w, om_status st)
{
    int none = OM_OK;
    /* the first engine write error makes /healthz unhealthy (the engine refuses writes now) */
    atomic_compare_exchange_strong(&s->engine_error, &none, (int)st);
    w->status = st;
    shard_msg(st, w->err, sizeof(w->err), "storage engine write failed: %s", om_status_str(st));
}

/* One write, alone. */
static void
write_one(shard *s, shard_write *w)
{
    om_buf lkey = OM_BUF_INIT, raw = OM_BUF_INIT, val = OM_BUF_INIT;
    uint64_t etag = om_hash64(w->args.data.p, w->args.data.n); /* outside the lock */
    unsigned stripe;
    int held = -1;
    size_t vlen;

    w->err[0] = '\0';
    w->status = write_validate(s, w);
    if (w->status != OM_OK)
        return;
    if (shard_lsm_key(w->args.bucket, w->args.key, &lkey) != OM_OK) {
        w->status = shard_msg(OM_E_NOMEM, w->err, sizeof(w->err), "out of memory");
        return;
    }
    stripe = shard_stripe_of(om_buf_slice(&lkey));
    pthread_rwlock_rdlock(&s->stripes_gate);
    shard_stripe_lock(s, stripe, &held);
    w->status = write_prepare(s, w, om_buf_slice(&lkey), etag, NULL, NULL, &raw, &val, &vlen);
    if (w->status == OM_OK && vlen > 0) {
        om_status st = lsm_put(s->db, om_buf_slice(&lkey), om_buf_slice(&val));
        if (st != OM_OK)
            write_fail_engine(s, w, st);
    }
    pthread_mutex_unlock(&s->stripes[stripe]);
    pthread_rwlock_unlock(&s->stripes_gate);
    om_buf_free(&lkey);
    om_buf_free(&raw);
    om_buf_free(&val);
}

/*
 * One write of a shard_write_many batch. The LSM keys of the whole batch
 * live in one buffer and the encoded records in another (hence offsets: the
 * buffers grow), so a batch costs a handful of allocations rather than a few
 * per write.
 */
typedef struct wm_item {
    size_t koff, klen, voff, vlen;
    uint64_t hash;
    unsigned stripe;
    bool valid, in_batch;
    shard_preread pre; /* the engine's record, read before the writes (valid items) */
} wm_item;

/*
 * The buffers of one shard_write_many call. One set is kept in the shard
 * between calls (s->wm_spare, under wm_mu), so the loop thread's batch after
 * batch reuses the same memory -- the engine batch and the record buffer of
 * 800 writes are a quarter megabyte each, which fresh allocations would
 * fault in page by page. A concurrent caller that finds no spare makes its own.
 */
struct shard_wm_scratch {
    lsm_batch *batch;
    om_buf keys, vals, raw;
};

/* A scratch set larger than this is freed rather than kept. */
#define WM_SCRATCH_KEEP (8u << 20)

static void
wm_scratch_free(shard_wm_scratch *x)
{
    if (x == NULL)
        return;
    lsm_batch_free(x->batch);
    om_buf_free(&x->keys);
    om_buf_free(&x->vals);
    om_buf_free(&x->raw);
    free(x);
}

static shard_wm_scratch *
wm_scratch_get(shard *s)
{
    shard_wm_scratch *x;

    pthread_mutex_lock(&s->wm_mu);
    x = s->wm_spare;
    s->wm_spare = NULL;
    pthread_mutex_unlock(&s->wm_mu);
    if (x != NULL)
        return x;
    x = calloc(1, sizeof(*x));
    if (x == NULL || lsm_batch_new(&x->batch) != OM_OK) {
        free(x);
        return NULL;
    }
    return x;
}

static void
wm_scratch_put(shard *s, shard_wm_scratch *x)
{
    if (x->keys.cap + x->vals.cap + x->raw.cap > WM_SCRATCH_KEEP) {
        wm_scratch_free(x);
        return;
    }
    lsm_batch_clear(x->batch); /* keeps its memory */
    om_buf_reset(&x->keys);
    om_buf_reset(&x->vals);
    om_buf_reset(&x->raw);
    pthread_mutex_lock(&s->wm_mu);
    if (s->wm_spare == NULL) {
        s->wm_spare = x;
        x = NULL;
    }
    pthread_mutex_unlock(&s->wm_mu);
    wm_scratch_free(x);
}

void
shard_write_many(shard *s, shard_write *w, size_t n)
{
    shard_write_group(s, w, n, false);
}

/*
 * The reads before a group's writes. The group's valid items are read in
 * chunks of WM_PREFETCH_AHEAD, taken from one cursor by the writing thread
 * and -- for a group of at least WM_HELP_MIN items -- by the shard's read
 * helper as well (s->wreads, a queue of one thread), so that a large group's
 * reads, most of a Store's cost on the writer, run on two cores. The writer
 * never waits for a helper that has not started: it takes every chunk left,
 * then waits only for the chunks the helper has taken (at most two). All of
 * it happens under the group's stripes and before anything of the group is
 * written, so each read sees what it would see right before its write: the
 * engine changes only through the group's own batch, written after them.
 * The reads of a chunk are announced to the engine in two stages:
 * lsm_prefetch (index buckets and nodes) a chunk ahead, lsm_prefetch_values
 * (the values the reads copy) just before the chunk.
 */
#define WM_PREFETCH_AHEAD 8
#define WM_HELP_MIN 32

typedef struct wm_reads {
    workq_item item; /* first: the helper's job is the item */
    shard *s;
    shard_write *w;
    wm_item *items;
    const om_buf *keys;
    size_t n;
    bool helped;        /* pushed to the helper: mu, cv and refs are live */
    atomic_size_t next; /* the first item of the next chunk to take */
    atomic_size_t done; /* items of the chunks read */
    atomic_int refs;    /* the writer's, and the helper's until it has run */
    pthread_mutex_t mu; /* with cv: the writer waits for done == n */
    pthread_cond_t cv;
} wm_reads;

/* Prefetch for the valid items [from, from + WM_PREFETCH_AHEAD) (capped at n). */
static void
wm_prefetch(shard *s, const wm_item *items, const om_buf *keys, size_t from, size_t n, bool values)
{
    om_slice ks[WM_PREFETCH_AHEAD];
    size_t k = 0;

    for (size_t i = from; i < from + WM_PREFETCH_AHEAD && i < n; i++)
        if (items[i].valid)
            ks[k++] = om_slice_make(keys->p + items[i].koff, items[i].klen);
    if (values)
        lsm_prefetch_values(s->db, ks, k);
    else
        lsm_prefetch(s->db, ks, k);
}

/* Take chunks from r's cursor and read them until none is left. */
static void
wm_read_chunks(wm_reads *r, om_buf *raw)
{
    size_t n = r->n, cur = atomic_fetch_add(&r->next, WM_PREFETCH_AHEAD);

    if (cur < n)
        wm_prefetch(r->s, r->items, r->keys, cur, n, false);
    while (cur < n) {
        size_t end = cur + WM_PREFETCH_AHEAD < n ? cur + WM_PREFETCH_AHEAD : n;
        size_t nxt = atomic_fetch_add(&r->next, WM_PREFETCH_AHEAD);

        if (nxt < n)
            wm_prefetch(r->s, r->items, r->keys, nxt, n, false);
        wm_prefetch(r->s, r->items, r->keys, cur, n, true);
        for (size_t i = cur; i < end; i++) {
            wm_item *it = &r->items[i];
            if (it->valid)
                it->pre.st = shard_read(r->s, om_slice_make(r->keys->p + it->koff, it->klen),
                                        LSM_GET_NO_FILL | LSM_GET_HEAD, raw, &it->pre.rec,
                                        r->w[i].err, sizeof(r->w[i].err));
        }
        if (atomic_fetch_add(&r->done, end - cur) + (end - cur) == n && r->helped) {
            pthread_mutex_lock(&r->mu);
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
        }
        cur = nxt;
    }
}

static void
wm_reads_unref(wm_reads *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* The read helper's job runner (workq): its share of one group's reads. */
static void
wm_help_run(void *arg, workq_item *it)
{
    wm_reads *r = (wm_reads *)(void *)it;
    om_buf raw = OM_BUF_INIT;

    (void)arg;
    wm_read_chunks(r, &raw);
    om_buf_free(&raw);
    wm_reads_unref(r);
}

/* Read the engine's record of every valid item into items[i].pre (see above). */
static void
wm_read_all(shard *s, shard_write *w, wm_item *items, const om_buf *keys, size_t n, om_buf *raw)
{
    wm_reads local, *r = NULL;

    if (s->wreads != NULL && n >= WM_HELP_MIN && (r = calloc(1, sizeof(*r))) != NULL) {
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv, NULL);
        r->helped = true;
        atomic_init(&r->refs, 2);
    } else {
        r = memset(&local, 0, sizeof(local));
    }
    r->s = s;
    r->w = w;
    r->items = items;
    r->keys = keys;
    r->n = n;
    atomic_init(&r->next, 0);
    atomic_init(&r->done, 0);
    if (r->helped && workq_push(s->wreads, &r->item) != OM_OK)
        atomic_fetch_sub(&r->refs, 1); /* not queued: the writer reads it all */
    wm_read_chunks(r, raw);
    if (r->helped) {
        pthread_mutex_lock(&r->mu);
        while (atomic_load(&r->done) < n)
            pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
    }
    OM_ASSERT(atomic_load(&r->done) == n); /* every item read once, by one of the two */
    if (r->helped)
        wm_reads_unref(r);
}

om_status
shard_wreads_open(shard *s)
{
    return workq_open("shard-wreads", 1, 64, wm_help_run, s, &s->wreads);
}

void
shard_write_group(shard *s, shard_write *w, size_t n, bool nosync)
{
    shard_wm_scratch *x = NULL;
    wm_item *items = NULL;
    size_t *last = NULL; /* open addressing: key -> 1 + its latest write in the batch; 0 = empty */
    uint64_t stripes[SHARD_STRIPES / 64] = {0}; /* the stripes to lock, as a bit set */
    size_t nbatch = 0, mask = 1, kbytes = 0, vbytes = 0;
    om_status st;

    if (n == 0)
        return;
    if (s->repl != NULL && !nosync) {
        /* a primary's groups are shipped by the pipeline's sync step (repl.h): no other way */
        for (size_t i = 0; i < n; i++)
            w[i].status = shard_msg(OM_E_INTERNAL, w[i].err, sizeof(w[i].err),
                                    "a replicated shard writes only through the commit pipeline");
        return;
    }
    if (n == 1 && !nosync) {
        write_one(s, w);
        return;
    }
    while (mask + 1 < 2 * n)
        mask = mask * 2 + 1;
    items = calloc(n, sizeof(*items));
    last = calloc(mask + 1, sizeof(*last));
    for (size_t i = 0; i < n; i++) {
        const shard_store_args *a = &w[i].args;
        kbytes += a->bucket.n + 1 + a->key.n;
        /* 96: the header and two length prefixes (at most 80 bytes) */
        vbytes += 96 + a->content_type.n + a->metadata.n + a->data.n;
    }
    if (!items || !last || (x = wm_scratch_get(s)) == NULL ||
        om_buf_reserve(&x->keys, kbytes) != OM_OK || om_buf_reserve(&x->vals, vbytes) != OM_OK) {
        /* no memory for the batch: fall back to one write at a time (unreplicated: refuse) */
        for (size_t i = 0; i < n; i++) {
            if (s->repl == NULL)
                write_one(s, &w[i]);
            else
                w[i].status = shard_msg(OM_E_NOMEM, w[i].err, sizeof(w[i].err), "out of memory");
        }
        goto out;
    }
    om_buf *keys = &x->keys, *vals = &x->vals;
    for (size_t i = 0; i < n; i++) {
        const shard_store_args *a = &w[i].args;

        w[i].err[0] = '\0';
        w[i].status = write_validate(s, &w[i]);
        if (w[i].status != OM_OK)
            continue;
        /* bucket 0x00 key (shard_lsm_key's layout); the room is reserved: no failure */
        items[i].koff = keys->n;
        om_buf_append(keys, a->bucket.p, a->bucket.n);
        om_buf_append_byte(keys, 0);
        om_buf_append(keys, a->key.p, a->key.n);
        items[i].klen = keys->n - items[i].koff;
        items[i].hash = om_hash64(keys->p + items[i].koff, items[i].klen);
        items[i].stripe = (unsigned)(items[i].hash % SHARD_STRIPES); /* shard_stripe_of */
        items[i].valid = true;
        stripes[items[i].stripe / 64] |= UINT64_C(1) << (items[i].stripe % 64);
    }
    shard_stripes_lock(s, stripes); /* ascending, or the gate alone */
    wm_read_all(s, w, items, keys, n, &x->raw);
    for (size_t i = 0; i < n; i++) {
        wm_item *it = &items[i];
        om_slice lkey = om_slice_make(keys->p + it->koff, it->klen), prev_val;
        const om_slice *prev = NULL;

        if (!it->valid)
            continue;
        /* The latest earlier write of this key that went into the batch. */
        size_t slot = (size_t)it->hash & mask;
        while (last[slot] != 0) {
            const wm_item *o = &items[last[slot] - 1];
            if (o->hash == it->hash && om_slice_eq(om_slice_make(keys->p + o->koff, o->klen), lkey))
                break;
            slot = (slot + 1) & mask;
        }
        if (last[slot] != 0) {
            const wm_item *o = &items[last[slot] - 1];
            prev_val = om_slice_make(vals->p + o->voff, o->vlen);
            prev = &prev_val;
        }
        uint64_t etag = om_hash64(w[i].args.data.p, w[i].args.data.n);
        it->voff = vals->n;
        w[i].status = write_prepare(s, &w[i], lkey, etag, prev, &it->pre, &x->raw, vals, &it->vlen);
        if (w[i].status != OM_OK || it->vlen == 0)
            continue; /* answered without a write */
        st = lsm_batch_put(x->batch, lkey, om_slice_make(vals->p + it->voff, it->vlen));
        if (st != OM_OK) {
            write_fail_engine(s, &w[i], st);
            continue;
        }
        it->in_batch = true;
        last[slot] = i + 1; /* this key's record is now this write's */
        nbatch++;
        if (s->repl != NULL) /* a primary keeps the group for its backups (repl.h) */
            shard_repl_stage(s->repl, lkey, om_slice_make(vals->p + it->voff, it->vlen));
    }
    st = nbatch > 0 && s->repl != NULL ? shard_repl_seal(s->repl, x->batch) : OM_OK;
    if (st == OM_OK && nbatch > 0)
        st = nosync ? lsm_write_nosync(s->db, x->batch) : lsm_write(s->db, x->batch);
    if (st != OM_OK)
        for (size_t i = 0; i < n; i++)
            if (items[i].in_batch)
                write_fail_engine(s, &w[i], st);
    shard_stripes_unlock(s, stripes);
    if (nbatch > 0 && s->repl != NULL)
        shard_repl_written(s->repl, st);
out:
    if (x != NULL)
        wm_scratch_put(s, x);
    free(items);
    free(last);
}

om_status
shard_store(shard *s, const shard_store_args *a, shard_obj_info *info, char *err, size_t errlen)
{
    shard_write w = {.args = *a};

    write_one(s, &w);
    if (w.status == OM_OK)
        *info = w.info;
    else if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", w.err);
    return w.status;
}

om_status
shard_delete(shard *s, om_slice bucket, om_slice key, shard_cond cond, uint64_t forced_version,
             shard_obj_info *info, char *err, size_t errlen)
{
    shard_write w = {
        .is_delete = true,
        .args = {.bucket = bucket, .key = key, .cond = cond, .forced_version = forced_version}};

    write_one(s, &w);
    if (w.status == OM_OK)
        *info = w.info;
    else if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", w.err);
    return w.status;
}
