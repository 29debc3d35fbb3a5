/*
 * lsm/manifest.h -- version edits, versions and the version set (private).
 *
 * A version is the set of SSTables that make up the database at one moment:
 * per level, an array of file descriptions. L0 files may overlap and are
 * kept in file-number order (newest last); from L1 down the files of a level
 * are sorted by smallest key and their user-key ranges are disjoint.
 *
 * Versions change only by applying a version edit (files added and deleted,
 * new log number, next file number, last sequence, compaction pointers). The
 * version set appends every edit to the MANIFEST (in the log record format of
 * wal_format.h), fdatasyncs it, and only then installs the new version as
 * current. On open it replays the MANIFEST named by CURRENT.
 *
 * Lifetimes. Versions and file descriptions are refcounted with atomics:
 * readers, iterators and compactions pin the version they use. A file that
 * an installed edit deleted is marked obsolete; when the last version that
 * lists it is released, the file is evicted from the table cache and
 * removed from disk. So a table is deleted exactly when no reader can reach
 * it any more, from whichever thread lets go last.
 *
 * Locking: lsm_vset_log_and_apply requires the caller to hold the db's
 * manifest lock (one edit at a time) but not the db mutex; it takes the db
 * mutex (vs->db_mu) only to swap `current`. Readers of vs->current hold the
 * db mutex. Lock order: manifest lock, then db mutex.
 */
#ifndef OM_LSM_MANIFEST_H
#define OM_LSM_MANIFEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lsm/env.h"
#include "lsm/lsm_int.h"
#include "lsm/table_cache.h"
#include "lsm/wal_format.h"
#include "util/slice.h"
#include "util/status.h"
#include "util/workq.h"

typedef struct lsm_vset lsm_vset;

typedef struct lsm_file_meta {
    atomic_int refs;
    atomic_bool obsolete; /* deleted by an installed edit: remove after the last unref */
    uint64_t number;
    uint64_t size;
    om_buf smallest; /* internal keys */
    om_buf largest;
    lsm_vset *vs; /* for the deletion at the last unref; NULL: never delete */
    /*
     * The open table, pinned by the first lookup through a version that lists
     * this file (only when vs != NULL), released at the last unref: while any
     * version holds the file, lookups skip the table cache's hash and mutex.
     */
    lsm_table_pin pin;
} lsm_file_meta;

/* A new description (refs = 1). Returns OM_OK; OM_E_NOMEM. */
om_status lsm_file_meta_new(uint64_t number, uint64_t size, om_slice smallest, om_slice largest,
                            lsm_file_meta **out);
void lsm_file_meta_ref(lsm_file_meta *f);
void lsm_file_meta_unref(lsm_file_meta *f);

typedef struct lsm_edit_file {
    int level;
    lsm_file_meta *f; /* added files: a reference owned by the edit */
    uint64_t number;  /* deleted files */
} lsm_edit_file;

typedef struct lsm_edit {
    bool has_log_number, has_next_file, has_last_seq;
    uint64_t log_number, next_file, last_seq;
    int ncptr;
    struct {
        int level;
        om_buf key;
    } cptr[LSM_MAX_LEVELS];
    lsm_edit_file *adds, *dels;
    int nadds, ndels, cap_adds, cap_dels;
} lsm_edit;

void lsm_edit_init(lsm_edit *e);
void lsm_edit_fini(lsm_edit *e);
om_status lsm_edit_add_file(lsm_edit *e, int level, uint64_t number, uint64_t size,
                            om_slice smallest, om_slice largest);
om_status lsm_edit_del_file(lsm_edit *e, int level, uint64_t number);
om_status lsm_edit_set_cptr(lsm_edit *e, int level, om_slice ikey);
void lsm_edit_set_log_number(lsm_edit *e, uint64_t n);
void lsm_edit_set_next_file(lsm_edit *e, uint64_t n);
void lsm_edit_set_last_seq(lsm_edit *e, uint64_t n);

/* Append the encoding of e to out (FORMAT.md "MANIFEST"). */
om_status lsm_edit_encode(const lsm_edit *e, om_buf *out);
/* Decode into an initialised empty edit. Returns OM_OK; OM_E_CORRUPT; OM_E_NOMEM. */
om_status lsm_edit_decode(om_slice in, lsm_edit *e);

typedef struct lsm_version {
    atomic_int refs;
    int nfiles[LSM_MAX_LEVELS];
    lsm_file_meta **files[LSM_MAX_LEVELS];
    /* Compaction need, computed when the version is built. */
    double score;
    int score_level;
} lsm_version;

void lsm_version_ref(lsm_version *v);
/* Release; the last reference frees it and releases its files. Accepts NULL. */
void lsm_version_unref(lsm_version *v);
uint64_t lsm_version_level_bytes(const lsm_version *v, int level);
/*
 * Compaction debt (lsm_stats.pending_compaction_bytes): the bytes above their
 * level's target (levels 1 and down, not the last), plus all of L0's while it
 * holds l0_compaction_trigger tables or more.
 */
uint64_t lsm_version_debt(const lsm_version *v, const lsm_opts *o);

/*
 * lsm_version_apply -- a new version: base (may be NULL = empty) with e applied.
 * Returns: OM_OK; OM_E_CORRUPT (e deletes a file base lacks, adds one twice,
 * or an L1+ level would overlap); OM_E_NOMEM.
 */
om_status lsm_version_apply(const lsm_version *base, const lsm_edit *e, const lsm_opts *o,
                            lsm_version **out);

/* Maximum bytes for level (>= 1): max_bytes_for_level1 * multiplier^(level-1). */
uint64_t lsm_level_max_bytes(const lsm_opts *o, int level);

/*
 * Files of `level` overlapping the user-key range [begin, end] (empty slice =
 * open end), appended to *out (grown with realloc; references not taken).
 * For L0 the range widens to cover overlapping files transitively.
 */
om_status lsm_version_overlaps(const lsm_version *v, int level, om_slice begin, om_slice end,
                               lsm_file_meta ***out, int *n);

/* Index of the first file in a sorted level (>= 1) whose largest ikey >= ikey. */
int lsm_version_find_file(const lsm_version *v, int level, om_slice ikey);

struct lsm_vset {
    lsm_env *env;
    char *dir;
    const lsm_opts *opts;
    lsm_table_cache *tc; /* for evictions; may be NULL */
    pthread_mutex_t *db_mu;
    lsm_version *current; /* read under *db_mu */
    atomic_uint_fast64_t next_file;
    uint64_t log_number;      /* logs below this are obsolete */
    uint64_t last_seq;        /* as recorded in the MANIFEST */
    uint64_t manifest_number; /* the live MANIFEST */
    lsm_wal_writer *manifest;
    om_buf cptr[LSM_MAX_LEVELS];  /* round-robin compaction pointers (internal keys) */
    uint64_t manifest_roll_bytes; /* start a new MANIFEST past this size (tests lower it) */
    om_status err;                /* sticky: after a failed switch no edit may be logged */
    atomic_uint_fast64_t deleted_files;
    /*
     * Removes obsolete tables (lsm_vset_drop_table) on a thread of its own:
     * the last reference to a table may be dropped by any thread -- a reader,
     * the caller's writer -- and on ext4 unlinking a 64 MiB table took 20-35
     * ms under write load (a journal commit that frees 64 MiB and discards
     * it on the device).
     */
    workq *deleter;
};

/* Ownership: env, opts, tc and db_mu are borrowed; dir is copied. */
om_status lsm_vset_new(lsm_env *env, const char *dir, const lsm_opts *opts, lsm_table_cache *tc,
                       pthread_mutex_t *db_mu, lsm_vset **out);
/*
 * Close the MANIFEST, drop the current version, and wait until every table
 * dropped so far is removed (the deleter drains).
 */
void lsm_vset_free(lsm_vset *vs);

/* The deleter cuts a table down this much at a time before removing it. */
#define LSM_DELETE_CHUNK (4u << 20)

/*
 * lsm_vset_drop_table -- table `number` (of `size` bytes) is obsolete and no
 * version lists it any more: evict it from the table cache and remove its
 * file (cut down LSM_DELETE_CHUNK at a time first, unless the env says it
 * has another name), on the deleter's thread. Done on the calling thread
 * instead when the job cannot be queued (no memory, a full queue), so a
 * table is never left behind. Any thread, before lsm_vset_free's drain
 * (asserted); called by lsm_file_meta_unref.
 */
void lsm_vset_drop_table(lsm_vset *vs, uint64_t number, uint64_t size);

uint64_t lsm_vset_new_file_number(lsm_vset *vs);
/* Make sure later numbers are above n (a file found on disk). */
void lsm_vset_mark_file_number_used(lsm_vset *vs, uint64_t n);

/*
 * lsm_vset_recover -- read CURRENT and replay its MANIFEST into vs.
 * Returns: OM_OK; OM_E_NOTFOUND (no CURRENT); OM_E_CORRUPT (logged with file
 * and offset); OM_E_IO.
 */
om_status lsm_vset_recover(lsm_vset *vs);

/*
 * lsm_vset_create_manifest -- start a new MANIFEST holding a snapshot of the
 * current state plus `extra` (may be NULL), sync it, and switch CURRENT to it
 * atomically (write CURRENT.tmp, fsync, rename, fsync the directory).
 * Requires: no concurrent lsm_vset_log_and_apply (open time).
 */
om_status lsm_vset_create_manifest(lsm_vset *vs, lsm_edit *extra);

#define LSM_MANIFEST_ROLL_BYTES (64u << 20)

/*
 * lsm_vset_log_and_apply -- fill in next file number and (if unset) the last
 * sequence, append e to the MANIFEST, fdatasync, install the new version and
 * mark deleted files obsolete. When the MANIFEST has grown past
 * manifest_roll_bytes, the new state is written as a snapshot into a fresh
 * MANIFEST instead, CURRENT is switched to it and the old one removed. On failure nothing is
 * installed and the error is returned (the caller makes it the db's background error). Requires:
 * the manifest lock; not *db_mu. Calls `installed(arg)` with *db_mu held right after the swap (may
 * be NULL).
 */
om_status lsm_vset_log_and_apply(lsm_vset *vs, lsm_edit *e, void (*installed)(void *arg),
                                 void *arg);

/* A referenced current version. Requires: *db_mu held. */
lsm_version *lsm_vset_current(lsm_vset *vs);

#endif /* OM_LSM_MANIFEST_H */
