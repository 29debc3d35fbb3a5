/*
 * lsm/wal_format.h -- the log record format shared by the WAL and the
 * MANIFEST, and the writer/reader APIs (private to lsm/).
 *
 * A log is a sequence of 32 KiB blocks. A record (a write batch, a version
 * edit) is cut into fragments that never cross a block boundary:
 *
 *     fragment = fixed32 checksum | fixed16 length | u8 type | payload
 *
 * type: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST. checksum = om_checksum32 over the
 * type byte followed by the payload. A block tail shorter than a header is
 * zero-filled. Byte layout: FORMAT.md, "WAL".
 *
 * Preallocation: a writer may zero-fill ahead of its records
 * (lsm_wal_writer_preallocate); zeros from a fragment boundary to the end of
 * the file, outside a record, are the clean end of the log.
 *
 * Torn tails versus corruption. A process or power failure can leave the end
 * of the last log incomplete; that is normal, and the reader reports it as
 * the end of the log (lsm_wal_reader_torn tells where the last complete
 * record ends, so recovery can truncate there). Damage followed by any
 * valid fragment further on is corruption in the middle of the log: the
 * reader returns OM_E_CORRUPT with the offset, and acknowledged records
 * beyond it must not be silently dropped.
 *
 * Thread-safety: a writer or reader belongs to one thread at a time.
 */
#ifndef OM_LSM_WAL_FORMAT_H
#define OM_LSM_WAL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/env.h"
#include "util/slice.h"
#include "util/status.h"

#define LSM_WAL_BLOCK_SIZE 32768
#define LSM_WAL_HEADER_SIZE 7

typedef enum lsm_wal_frag {
    LSM_WAL_ZERO = 0, /* padding; never a valid fragment */
    LSM_WAL_FULL = 1,
    LSM_WAL_FIRST = 2,
    LSM_WAL_MIDDLE = 3,
    LSM_WAL_LAST = 4,
} lsm_wal_frag;

/* ---- writer ---- */

typedef struct lsm_wal_writer lsm_wal_writer;

/*
 * lsm_wal_writer_open -- create (truncate) the log at path.
 * Returns: OM_OK; OM_E_IO; OM_E_NOMEM. Ownership: close with lsm_wal_writer_close.
 */
om_status lsm_wal_writer_open(lsm_env *env, const char *path, lsm_wal_writer **out);

/*
 * lsm_wal_add -- frame one record into the writer's buffer (no I/O).
 * Errors are sticky: after a failure every call returns the first error.
 */
om_status lsm_wal_add(lsm_wal_writer *w, om_slice record);
/* Write the buffered bytes to the file (one append). */
om_status lsm_wal_flush(lsm_wal_writer *w);
/* Flush, then fdatasync. */
om_status lsm_wal_sync(lsm_wal_writer *w);
/*
 * lsm_wal_sync_written -- fdatasync what earlier lsm_wal_flush calls wrote,
 * from a thread other than the writer's (lsm_sync): it touches neither the
 * buffer nor the sticky error, so the writer may add and flush meanwhile.
 * Bytes flushed while it runs may or may not be covered.
 * lsm_wal_syncers -- the number of such syncs running on w, changed by delta
 * (+1 before, -1 after; 0 reads it). The writer must not be closed while it
 * is not 0. Requires: the caller's lock around every call (the db mutex).
 */
om_status lsm_wal_sync_written(lsm_wal_writer *w);
int lsm_wal_syncers(lsm_wal_writer *w, int delta);
/*
 * lsm_wal_writer_preallocate -- keep the file zero-filled up to `chunk`
 * bytes past its last append (refilled when less than half is left), so that
 * syncing appends rewrites allocated blocks instead of growing the file: on
 * ext4 an fdatasync that changes the size commits the journal, one that
 * does not only flushes data (about twice as fast on the test machine). The
 * reader takes zeros up to the end of the file as the end of the log. 0
 * turns it off; so does an env without wfile_zero. Call before adding.
 */
void lsm_wal_writer_preallocate(lsm_wal_writer *w, uint64_t chunk);
/*
 * Preallocation pauses while flushes (group commits) average more than this:
 * a large sync is mostly data, so the journal commit it saves is small next
 * to writing the zeros. Measured (shard Store, 330-byte records): 17 KB per
 * sync, pipeline 1: +20% with it; 120 KB per sync, pipeline 16: -10%.
 */
#define LSM_WAL_PREALLOC_MAX_FLUSH (48u * 1024)
/* Bytes framed so far (the file size once flushed, preallocation excluded). */
uint64_t lsm_wal_size(const lsm_wal_writer *w);
/* Flush, optionally sync, and close; returns the first error. Accepts NULL. */
om_status lsm_wal_writer_close(lsm_wal_writer *w, bool sync);

/* ---- reader ---- */

typedef struct lsm_wal_reader lsm_wal_reader;

/* Open the log at path. Returns: OM_OK; OM_E_NOTFOUND; OM_E_IO; OM_E_NOMEM. */
om_status lsm_wal_reader_open(lsm_env *env, const char *path, lsm_wal_reader **out);
/*
 * lsm_wal_reader_mem -- read a log held in memory (fuzzing, tests).
 * Ownership: data is borrowed and must outlive the reader.
 */
om_status lsm_wal_reader_mem(const uint8_t *data, size_t n, lsm_wal_reader **out);

/*
 * lsm_wal_read -- the next complete record.
 * Returns:   OM_OK and *rec (valid until the next call); OM_E_NOTFOUND at the
 *            end of the log (clean or torn, see lsm_wal_reader_torn);
 *            OM_E_CORRUPT for damage that is not a torn tail
 *            (lsm_wal_reader_offset tells where); OM_E_IO; OM_E_NOMEM.
 */
om_status lsm_wal_read(lsm_wal_reader *r, om_slice *rec);
/* After OM_E_NOTFOUND: true if the log ended in an incomplete or damaged tail. */
bool lsm_wal_reader_torn(const lsm_wal_reader *r);
/*
 * The offset where the last complete record read so far ends (the length to
 * truncate a torn log to); after OM_E_CORRUPT, the offset of the damage.
 */
uint64_t lsm_wal_reader_offset(const lsm_wal_reader *r);
void lsm_wal_reader_close(lsm_wal_reader *r);

#endif /* OM_LSM_WAL_FORMAT_H */
