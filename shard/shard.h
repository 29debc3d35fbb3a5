/*
 * shard/shard.h -- one objmeta shard: object operations over one LSM tree,
 * and the rpc handler that serves them (public API of shard/).
 *
 * A shard stores records (shard/record.h) under `bucket 0x00 key`. Versions
 * are assigned here and strictly increase per key, across deletes too:
 *
 *     next = max(previous version + 1, wall clock in microseconds)
 *
 * where "previous" is the live record or the tombstone left by a delete.
 * Versions therefore also order writes to one key made on different shards
 * during a migration, as long as the clocks are roughly right; the +1 keeps
 * them strictly increasing when a clock steps back.
 *
 * Conditions are evaluated atomically with the write: the read of the current
 * record, the check and the LSM write happen under one of SHARD_STRIPES
 * mutexes chosen by the key's hash, so two writers of one key are serialised
 * while writers of other keys proceed in parallel and share the WAL's group
 * commit.
 *
 *   Store, no condition         always writes.
 *   Store, if_absent            PRECONDITION_FAILED if a live record exists.
 *   Store, if_version V         PRECONDITION_FAILED unless a live record with
 *                               version V exists (absent: PRECONDITION_FAILED).
 *   Delete, no condition        NOT_FOUND if no live record; else a tombstone.
 *   Delete, if_version V        PRECONDITION_FAILED unless a live record with
 *                               version V exists (absent: PRECONDITION_FAILED).
 *   Delete, if_absent           INVALID_ARGUMENT (meaningless).
 *
 * Thread-safety: every function may be called from any thread concurrently,
 * except shard_open/shard_close and shard_set_ring_check (call those while no
 * request is running).
 */
#ifndef OM_SHARD_SHARD_H
#define OM_SHARD_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "rpc/rpc.h"
#include "util/slice.h"
#include "util/status.h"

typedef struct shard shard;

typedef struct shard_opts {
    lsm_opts lsm;             /* engine options (sync mode, buffers, cache) */
    size_t max_object_size;   /* default 4 MiB */
    size_t max_metadata_size; /* default 64 KiB */
    int metadata_max_depth;   /* default 32 */
    int workers;              /* threads running lists (and reads without inline_reads);
                               * default 8 */
    bool inline_reads;        /* Retrieve/Head/Exists on the network thread; default true */
    const char *id;           /* shown by Ping ("objmeta-shard/<version> id=<id>"); default "" */
    size_t max_list_bytes;    /* a List page ends early beyond this; default 8 MiB (keep it
                               * below the rpc max_frame) */
    uint8_t list_secret[64];  /* signs continuation tokens (HMAC-SHA256, shard/list.h) */
    size_t list_secret_len;   /* 0 = 32 random bytes at open: tokens then do not survive a
                               * restart; default 0 */
} shard_opts;

/* Fill *o with the documented defaults (lsm_opts_init for the engine). */
void shard_opts_init(shard_opts *o);

/*
 * The ring-fencing hook. Called for every keyed request (key empty for List)
 * with the request's ring_epoch. Return OM_OK to serve it or OM_E_WRONG_SHARD
 * (with a message in err) to refuse it. Runs on any thread. Default: accept.
 */
typedef om_status (*shard_ring_check_fn)(void *arg, uint64_t ring_epoch, om_slice bucket,
                                         om_slice key, char *err, size_t errlen);

/*
 * shard_open -- open (or create) the shard in directory `dir` (created with its
 * parents when missing) and start the worker threads.
 * Returns:   OM_OK; errors of lsm_open; OM_E_NOMEM.
 * Ownership: *out is closed with shard_close(); opts is copied.
 */
om_status shard_open(const char *dir, const shard_opts *opts, shard **out);

/*
 * shard_close -- stop the worker threads (finishing queued work), sync the WAL
 * and close the engine. Accepts NULL. Returns the first error of the final sync.
 */
om_status shard_close(shard *s);

void shard_set_ring_check(shard *s, shard_ring_check_fn fn, void *arg);
/*
 * shard_set_move_fence -- a second check for keyed requests only (not the
 * List filter): the cutover fence of shard_mig (migrate.h). Same rules as
 * shard_set_ring_check.
 */
void shard_set_move_fence(shard *s, shard_ring_check_fn fn, void *arg);

/* The engine, for statistics and tests. Valid until shard_close(). */
lsm_db *shard_db(shard *s);

typedef enum shard_cond_kind {
    SHARD_COND_NONE = 0,
    SHARD_COND_IF_ABSENT,
    SHARD_COND_IF_VERSION,
} shard_cond_kind;

typedef struct shard_cond {
    shard_cond_kind kind;
    uint64_t version; /* SHARD_COND_IF_VERSION */
} shard_cond;

/* System fields of an object (or of the tombstone a delete wrote). */
typedef struct shard_obj_info {
    uint64_t version;
    uint64_t size;
    uint64_t etag; /* xxh3-64 of the data; shard_etag_hex for text */
    uint64_t created_ms;
    uint64_t modified_ms;
} shard_obj_info;

typedef struct shard_store_args {
    om_slice bucket, key, data, metadata, content_type;
    shard_cond cond;
    /*
     * Migration forwarding (StoreRequest.forced_version): 0 = assign a version
     * as usual; else write with exactly this version, and only if it is newer
     * than the version held (live or tombstone) -- otherwise OM_OK without a
     * write and *info describes what is held.
     */
    uint64_t forced_version;
} shard_store_args;

/*
 * shard_store -- validate and write an object.
 * Returns: OM_OK and *info; OM_E_INVALID (message names the field);
 *          OM_E_PRECONDITION; engine errors (OM_E_IO, OM_E_CORRUPT).
 */
om_status shard_store(shard *s, const shard_store_args *a, shard_obj_info *info, char *err,
                      size_t errlen);

/*
 * shard_write -- one store or delete of a batch given to shard_write_many;
 * the caller fills is_delete and args (for a delete: bucket, key, cond,
 * forced_version), shard_write_many fills status, info and err.
 */
typedef struct shard_write {
    bool is_delete;
    shard_store_args args;
    om_status status;    /* as shard_store / shard_delete would return */
    shard_obj_info info; /* on OM_OK */
    char err[256];       /* message when status != OM_OK */
} shard_write;

/*
 * shard_write_many -- run n writes as one engine write (one WAL record, one
 * fsync), each with its own condition and answer, exactly as if they had been
 * made one after the other. Writes to a key that appears earlier in the batch
 * run after it. The commit pipeline (shard/commit.h) writes each group commit
 * this way.
 */
void shard_write_many(shard *s, shard_write *w, size_t n);

/*
 * shard_get -- read an object.
 * Returns:   OM_OK, *info, and *rec whose slices (content type, metadata,
 *            data) borrow from *raw; OM_E_NOTFOUND (absent or deleted);
 *            OM_E_INVALID; engine errors.
 * Ownership: *raw is the caller's buffer (om_buf_free).
 */
typedef struct shard_record shard_record;
om_status shard_get(shard *s, om_slice bucket, om_slice key, om_buf *raw, shard_record *rec,
                    char *err, size_t errlen);

/*
 * shard_exists -- OM_OK if a live record exists, OM_E_NOTFOUND if not. Answers
 * from the bloom filters without reading a block when they rule the key out.
 */
om_status shard_exists(shard *s, om_slice bucket, om_slice key, char *err, size_t errlen);

/*
 * shard_delete -- write a tombstone (see the table above). forced_version as
 * in shard_store_args: a forwarded tombstone is written whenever it is newer
 * than what is held, even if no live record exists (migration needs it).
 * Returns: OM_OK and *info (the tombstone's version); OM_E_NOTFOUND;
 *          OM_E_PRECONDITION; OM_E_INVALID; engine errors.
 */
om_status shard_delete(shard *s, om_slice bucket, om_slice key, shard_cond cond,
                       uint64_t forced_version, shard_obj_info *info, char *err, size_t errlen);

/*
 * shard_rpc_handler -- the rpc_handler_fn of a shard server (arg = the shard).
 * Ping, Stats and (with inline_reads) Retrieve/Head/Exists are answered on
 * the calling thread; Store and Delete go to the commit pipeline
 * (shard/commit.h: written at once without a loop attached, else batched per
 * loop iteration); List (and reads without inline_reads) go to the worker
 * pool and are answered from there through rpc_reply_send(). Every keyed
 * request first passes the ring check. Call it from one thread (the rpc
 * loop), one request at a time: the inline reads reuse a buffer of the shard.
 */
void shard_rpc_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply);

/*
 * shard_rpc_read_loop_handler -- the part of shard_rpc_handler a read loop
 * (shard/loops.h) serves itself: Retrieve, Head and Exists, read inline into
 * read_buf (the calling thread's own buffer, kept across its requests) and
 * answered through commit_send, while reads may be served off the loop
 * thread (shard_set_reads_anywhere). Returns true when it answered; false
 * for anything else, which the caller hands to the loop thread unchanged.
 * Thread-safety: any thread but the loop's; one read_buf per thread.
 */
bool shard_rpc_read_loop_handler(shard *s, om_buf *read_buf, const Objmeta__Request *req,
                                 rpc_reply *reply);

/*
 * shard_set_reads_anywhere -- whether threads other than the loop may serve
 * client reads (true after shard_open). The replication state clears it
 * while only the loop thread can decide whether a read may be served (a
 * primary that does not serve yet, a replica changing roles, an etcd-mode
 * backup) and sets it while this replica serves reads; what a read loop
 * sends is also subject to the primary's lease (commit_set_lease) when it
 * leaves. Thread-safety: any thread.
 */
void shard_set_reads_anywhere(shard *s, bool on);

/*
 * shard_rpc_prefetch -- the rpc_prefetch_fn of a shard server (arg = the
 * shard; rpc_server_set_prefetch): with inline_reads, starts loading the
 * engine's index entries and values of the reads about to be dispatched
 * (lsm_prefetch_reads), so that their cache misses overlap; nothing for a
 * single read, whose misses have nothing to overlap with. No effect on results.
 * Thread-safety: the rpc loop thread.
 */
void shard_rpc_prefetch(void *arg, const rpc_key_hint *hints, size_t n);

/*
 * shard_attach_loop -- run Store and Delete on the loop of `base` (the one
 * running the rpc server): the writes that arrive in one loop iteration
 * become groups with one WAL write and one fsync each, as in Redis's
 * appendfsync always. With LSM_SYNC_ALWAYS that is the pipeline of
 * shard/commit.h: a "shard-writer" thread writes the groups and a
 * "shard-sync" thread syncs them while the loop goes on serving, and every
 * reply the loop makes while a group it could reveal is not durable (reads
 * too) is held until the sync covering it ends (an error if that sync
 * fails). With periodic or none the loop writes each iteration's group
 * itself. Without a loop, each write is made at once by the handler.
 * shard_detach_loop (also done by shard_close) writes and answers what is
 * pending, joins the threads, syncs and releases the held replies; call it
 * before freeing `base`, once the loop has stopped.
 * Returns: OM_OK; OM_E_NOMEM; OM_E_IO (no eventfd).
 * Thread-safety: loop thread, before serving.
 */
struct event_base;
om_status shard_attach_loop(shard *s, struct event_base *base);
void shard_detach_loop(shard *s);

/*
 * shard_health -- an rpc_health_fn (arg = the shard): OM_OK while writes
 * work; after an engine write failed (the engine then refuses every write:
 * disk full, I/O error) the error, with the reason appended to `reason`.
 */
om_status shard_health(void *arg, om_buf *reason);

/*
 * shard_render_metrics -- append the shard's Prometheus metrics: answers by
 * operation and status, latency histograms by operation, engine statistics.
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status shard_render_metrics(shard *s, om_buf *out);

/* Per-operation request counters, as reported by Stats and /metrics. */
typedef enum shard_op {
    SHARD_OP_STORE = 0,
    SHARD_OP_RETRIEVE,
    SHARD_OP_HEAD,
    SHARD_OP_EXISTS,
    SHARD_OP_DELETE,
    SHARD_OP_LIST,
    SHARD_OP_STATS,
    SHARD_OP_PING,
    SHARD_OP_OTHER,
    SHARD_OP_COUNT_
} shard_op;

/* Stable lower-case name of an operation ("store", ...). */
const char *shard_op_name(shard_op op);

#endif /* OM_SHARD_SHARD_H */
