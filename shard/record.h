/*
 * shard/record.h -- the record stored as an LSM value, the LSM key layout and
 * the validation of everything a client sends (private to shard/).
 *
 * LSM key:   bucket 0x00 key. Buckets never contain 0x00, so the first 0x00
 *            separates the two, a bucket's keys are contiguous and sorted in
 *            UTF-8 binary order (the order S3 lists in).
 *
 * LSM value (record format version 1, all integers as in util/coding.h):
 *
 *   u8       format       1 (SHARD_RECORD_FORMAT)
 *   u8       type         1 = live, 2 = tombstone
 *   varint64 version      strictly increasing per key (see shard/README.md)
 *   varint64 size         length of data in bytes
 *   fixed64  etag         xxh3-64 of data (om_hash64), shown as 16 hex digits
 *   varint64 created_ms   wall clock, ms since the Unix epoch
 *   varint64 modified_ms
 *   lenpref  content_type (varint length + bytes)
 *   lenpref  metadata     the user's JSON object text, or empty
 *   bytes    data         the rest of the value; its length must equal size
 *
 * Reserved keys: an LSM key whose first byte is 0x00 (an empty bucket, which
 * no valid address has) holds the shard's own state, not a record -- the
 * replication state (term, last index; shard/REPLICATION.md). Scans that
 * move or filter records (migration, the compaction filter) skip them.
 *
 * A tombstone has the same layout with size 0 and empty strings; it keeps the
 * version (and created_ms of the deleted object) so a migration can tell
 * which of two copies is newer. The LSM checksums every block, so the record
 * carries no checksum of its own; the decoder still checks every length.
 *
 * Thread-safety: pure functions.
 */
#ifndef OM_SHARD_RECORD_H
#define OM_SHARD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

#define SHARD_RECORD_FORMAT 1
#define SHARD_BUCKET_MIN 3
#define SHARD_BUCKET_MAX 63
#define SHARD_KEY_MAX 1024
#define SHARD_CONTENT_TYPE_MAX 256
#define SHARD_DEFAULT_MAX_OBJECT (4u * 1024u * 1024u)
#define SHARD_DEFAULT_MAX_METADATA (64u * 1024u)
#define SHARD_DEFAULT_METADATA_DEPTH 32

typedef enum shard_rec_type {
    SHARD_REC_LIVE = 1,
    SHARD_REC_TOMBSTONE = 2,
} shard_rec_type;

/* A decoded record; the slices borrow from the encoded bytes. */
typedef struct shard_record {
    shard_rec_type type;
    uint64_t version;
    uint64_t size;
    uint64_t etag;
    uint64_t created_ms;
    uint64_t modified_ms;
    om_slice content_type;
    om_slice metadata;
    om_slice data;
} shard_record;

/*
 * shard_record_encode -- append the encoding of *r to out (out is reset first).
 * r->size must equal r->data.n for live records.
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status shard_record_encode(const shard_record *r, om_buf *out);

/* shard_record_append -- as shard_record_encode, but appends to out without resetting it. */
om_status shard_record_append(const shard_record *r, om_buf *out);

/*
 * shard_record_decode -- parse an LSM value.
 * Returns:   OM_OK and fills *r; OM_E_CORRUPT for an unknown format, type or
 *            a length that does not fit.
 * Ownership: r's slices borrow from `in`.
 */
om_status shard_record_decode(om_slice in, shard_record *r);

/*
 * shard_record_decode_head -- parse only the head of an LSM value (format
 * through modified_ms: type, version, size, etag and times), which takes at
 * most SHARD_RECORD_HEAD_MAX bytes; `in` may be the value cut anywhere after
 * it. content_type, metadata and data come back empty.
 * Returns: OM_OK; OM_E_CORRUPT as shard_record_decode, for the head.
 */
#define SHARD_RECORD_HEAD_MAX (2 + 10 + 10 + 8 + 10 + 10)
om_status shard_record_decode_head(om_slice in, shard_record *r);

/* The 16 lower-case hex digits of an etag, NUL-terminated. */
void shard_etag_hex(uint64_t etag, char out[17]);

/* shard_key_is_reserved -- an LSM key of the shard's own state (see above), not a record. */
static inline bool
shard_key_is_reserved(om_slice lkey)
{
    return lkey.n > 0 && lkey.p[0] == 0;
}

/*
 * shard_lsm_key -- out = bucket 0x00 key (out is reset first).
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status shard_lsm_key(om_slice bucket, om_slice key, om_buf *out);

/*
 * Validation. Each returns OM_OK, or OM_E_INVALID with a message in err that
 * names the field ("bucket: ...", "key: ...", "metadata: ..."); err may be NULL.
 */
om_status shard_validate_bucket(om_slice bucket, char *err, size_t errlen);
om_status shard_validate_key(om_slice key, char *err, size_t errlen);
/* An empty metadata slice is accepted (no metadata). */
om_status shard_validate_metadata(om_slice json, size_t max_bytes, int max_depth, char *err,
                                  size_t errlen);
om_status shard_validate_content_type(om_slice ct, char *err, size_t errlen);
om_status shard_validate_data(om_slice data, size_t max_bytes, char *err, size_t errlen);

#endif /* OM_SHARD_RECORD_H */
