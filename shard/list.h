/*
 * shard/list.h -- S3 ListObjectsV2 over the keys of one shard (private to
 * shard/).
 *
 * Semantics (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html):
 * keys of `bucket` that start with `prefix`, in UTF-8 binary order, strictly
 * after `start_after` (ignored when a continuation token is given). With a
 * non-empty delimiter, every key whose remainder after the prefix contains
 * the delimiter is rolled up into the common prefix `prefix + ... +
 * delimiter`; each common prefix counts against max_keys like a key, and the
 * listing seeks past it (to the successor of the common prefix) instead of
 * scanning the keys under it. Tombstones are skipped. max_keys 0 gives an
 * empty, not truncated page; above SHARD_LIST_MAX it is INVALID_ARGUMENT.
 * is_truncated is set only when another entry really follows.
 *
 * Continuation tokens are opaque base64url text of:
 *   u8 token version (2) | fixed64 om_hash64 of (bucket, prefix, delimiter)
 *   | lenpref resume key (listing restarts at the first key >= it)
 *   | 16-byte HMAC-SHA256 of everything before under req->mac_key (rpc_mac)
 * so that nobody without the shard's secret (list-token-secret) can make
 * the shard start a listing at a position of their choosing. A token that
 * does not decode, fails its tag or belongs to another bucket/prefix/
 * delimiter is INVALID_ARGUMENT ("continuation_token: ...").
 *
 * Thread-safety: reentrant; runs on the caller's thread against a thread-safe lsm_db.
 */
#ifndef OM_SHARD_LIST_H
#define OM_SHARD_LIST_H

#include <stdbool.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "shard/record.h"
#include "util/slice.h"
#include "util/status.h"

#define SHARD_LIST_MAX 1000
#define SHARD_LIST_TOKEN_VERSION 2

typedef struct shard_list_req {
    om_slice bucket;
    om_slice prefix;
    om_slice delimiter;
    om_slice start_after;
    om_slice continuation_token; /* empty: none */
    om_slice mac_key;            /* signs and checks tokens (shard_opts.list_secret) */
    uint32_t max_keys;           /* 0..SHARD_LIST_MAX */
    /*
     * Optional ownership filter (migration, shard/migrate.h): a key for which
     * keep(keep_arg, lsm_key) is false is skipped as if absent -- it neither
     * appears nor opens a common prefix. NULL keeps every key.
     */
    bool (*keep)(void *keep_arg, om_slice lsm_key);
    void *keep_arg;
    /*
     * Byte budget of a page (0 = none), so that a response always fits in a
     * frame: the page ends early (truncated, with a token) before the entry
     * that would take it over, but always holds at least one entry. An entry
     * counts its key, content type, metadata when count_metadata is set, and
     * SHARD_LIST_ENTRY_OVERHEAD; a common prefix its length plus 8.
     */
    size_t max_bytes;
    bool count_metadata;
} shard_list_req;

#define SHARD_LIST_ENTRY_OVERHEAD 128

/*
 * Called for each entry in order. `key` is the object key (without bucket),
 * `rec` a live record; both borrow until the callback returns. A non-OK return
 * stops the listing and is returned by shard_list.
 */
typedef om_status (*shard_list_entry_fn)(void *arg, om_slice key, const shard_record *rec);
/* Called for each common prefix in order (borrowed until it returns). */
typedef om_status (*shard_list_prefix_fn)(void *arg, om_slice common_prefix);

typedef struct shard_list_result {
    bool is_truncated;
    uint32_t key_count; /* entries + common prefixes */
    om_buf next_token;  /* set when truncated; caller frees */
} shard_list_result;

/*
 * shard_list -- run one page of a listing.
 * Returns:   OM_OK; OM_E_INVALID with a message in err (bad token, max_keys);
 *            OM_E_CORRUPT (a record does not decode) and the iterator's errors.
 * Ownership: res->next_token is the caller's (om_buf_free), also on error.
 */
om_status shard_list(lsm_db *db, const shard_list_req *req, shard_list_entry_fn on_entry,
                     shard_list_prefix_fn on_prefix, void *arg, shard_list_result *res, char *err,
                     size_t errlen);

/* Token codec, exposed for tests. */
om_status shard_list_token_encode(const shard_list_req *req, om_slice resume, om_buf *out);
/* Returns OM_OK and *resume (heap bytes in *resume_buf); OM_E_INVALID with a message. */
om_status shard_list_token_decode(const shard_list_req *req, om_slice token, om_buf *resume,
                                  char *err, size_t errlen);

/*
 * The smallest byte string greater than every string starting with s: s with
 * trailing 0xff bytes removed and the last byte incremented. Returns false (and
 * leaves out empty) when s is all 0xff or empty: no such string exists.
 */
bool shard_prefix_successor(om_slice s, om_buf *out);

#endif /* OM_SHARD_LIST_H */
