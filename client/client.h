/*
 * client/client.h -- libobjmeta-client: a blocking client for objmeta
 * servers (a shard or the coordinator: both speak the same protocol).
 *
 * One omc_client is one TCP connection (rpc's blocking client underneath)
 * that reconnects on the next call after a transport failure. Every call
 * returns an om_status: OM_OK, the server's answer (OM_E_NOTFOUND,
 * OM_E_INVALID, OM_E_PRECONDITION, OM_E_WRONG_SHARD, OM_E_BUSY, ...), or a
 * transport error (OM_E_UNAVAILABLE, OM_E_TIMEOUT, OM_E_CORRUPT).
 * omc_last_message() then holds the human-readable message of that result.
 * Results come back through out-parameters, written only on OM_OK.
 *
 * Thread-safety: one thread at a time per omc_client; clients are independent.
 */
#ifndef OM_CLIENT_CLIENT_H
#define OM_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

typedef struct omc_client omc_client;

/*
 * omc_connect -- connect to "host:port", or to the first that accepts of a
 * list "host:port,host:port,..." (up to 16; several coordinators), within
 * timeout_ms (0 = 3000) per address. On a transport failure later calls
 * move to the next address and retry what is safe to retry: reads always,
 * unconditional deletes, and stores only after reading the key on the new
 * coordinator (client.c's header says exactly how).
 * Returns: OM_OK and *out; OM_E_INVALID (address); OM_E_UNAVAILABLE; OM_E_TIMEOUT.
 *          On failure *msg (if not NULL, msglen > 0) receives the reason.
 * Ownership: close *out with omc_close().
 */
om_status omc_connect(const char *addr, uint32_t timeout_ms, omc_client **out, char *msg,
                      size_t msglen);

/* The address of the server in use ("host:port"). */
const char *omc_address(const omc_client *c);
/*
 * Credentials (README.md, Security): TLS with the cluster CA (ca; cert and
 * key for a client certificate) and/or a bucket-scoped token. NULL or ""
 * fields are not used; all empty = plaintext without a token.
 */
typedef struct omc_creds {
    const char *ca, *cert, *key, *token;
} omc_creds;

/* omc_connect with credentials (cr may be NULL); msg names a bad TLS file. */
om_status omc_connect_creds(const char *addr, uint32_t timeout_ms, const omc_creds *cr,
                            omc_client **out, char *msg, size_t msglen);

/*
 * omc_rpc_open -- the blocking rpc connection omc_connect_creds makes, for
 * callers that speak rpc themselves (the admin commands). *tls (NULL when
 * plaintext) must outlive *out: rpc_tls_free it after rpc_sync_client_close.
 */
struct rpc_sync_client;
struct rpc_tls;
om_status omc_rpc_open(const char *addr, uint32_t timeout_ms, const omc_creds *cr,
                       struct rpc_sync_client **out, struct rpc_tls **tls, char *msg,
                       size_t msglen);

/* Close and free. Accepts NULL. */
void omc_close(omc_client *c);

/* Per-call timeout in ms (default 30000). */
void omc_set_timeout(omc_client *c, uint32_t timeout_ms);

/*
 * omc_set_request_id -- send rid as the request_id of every later request
 * (NULL or "" = none), so that the servers' log lines about them can be
 * found by it (rpc.h gives the rule for ids).
 * Returns: OM_OK; OM_E_INVALID with the reason in err. rid is copied.
 */
om_status omc_set_request_id(omc_client *c, const char *rid, char *err, size_t errlen);

/* The message of the last call's result ("" after OM_OK); valid until the next call. */
const char *omc_last_message(const omc_client *c);

/* System fields and metadata of an object. Strings are heap copies: omc_info_free. */
typedef struct omc_info {
    char *bucket;
    char *key;
    uint64_t size;
    char *etag; /* lower-case hex */
    char *content_type;
    uint64_t created_ms;
    uint64_t modified_ms;
    uint64_t version;
    char *metadata_json; /* "" when not returned */
} omc_info;

void omc_info_free(omc_info *info);

typedef struct omc_store_opts {
    const char *content_type;  /* NULL = none */
    const char *metadata_json; /* NULL = none; else a JSON object */
    bool if_absent;            /* store only if absent */
    bool has_if_version;       /* store only if the current version is if_version */
    uint64_t if_version;
} omc_store_opts;

/*
 * omc_store -- create or replace bucket/key with data (opts may be NULL).
 * Returns: OM_OK and *info (may be NULL; metadata_json is ""); errors as above.
 */
om_status omc_store(omc_client *c, const char *bucket, const char *key, om_slice data,
                    const omc_store_opts *opts, omc_info *info);

/*
 * omc_retrieve -- data and info of an object.
 * Ownership: *data is replaced (om_buf_free); *info is freed with omc_info_free.
 */
om_status omc_retrieve(omc_client *c, const char *bucket, const char *key, omc_info *info,
                       om_buf *data);

/* omc_head -- info (with metadata) of an object. */
om_status omc_head(omc_client *c, const char *bucket, const char *key, omc_info *info);

/* omc_exists -- OM_OK and *exists (absent is OM_OK with false, never OM_E_NOTFOUND). */
om_status omc_exists(omc_client *c, const char *bucket, const char *key, bool *exists);

/*
 * omc_delete -- delete an object; if_version NULL = unconditional.
 * Returns: OM_OK and *version (the tombstone's; may be NULL); OM_E_NOTFOUND;
 *          OM_E_PRECONDITION.
 */
om_status omc_delete(omc_client *c, const char *bucket, const char *key, const uint64_t *if_version,
                     uint64_t *version);

typedef struct omc_list_opts {
    const char *prefix;             /* NULL = "" */
    const char *delimiter;          /* NULL = none */
    const char *start_after;        /* NULL = none */
    const char *continuation_token; /* NULL = first page */
    uint32_t max_keys;              /* 0 = server default (1000) */
    bool include_metadata;
} omc_list_opts;

typedef struct omc_list_page {
    omc_info *entries;
    size_t n_entries;
    char **common_prefixes;
    size_t n_common_prefixes;
    bool is_truncated;
    char *next_continuation_token; /* "" when not truncated */
    uint32_t key_count;
} omc_list_page;

/*
 * omc_list -- one page of ListObjectsV2 (opts may be NULL).
 * Ownership: *page is freed with omc_list_page_free.
 */
om_status omc_list(omc_client *c, const char *bucket, const omc_list_opts *opts,
                   omc_list_page *page);
void omc_list_page_free(omc_list_page *page);

typedef struct omc_stats {
    char **names;
    uint64_t *values;
    size_t n;
    char *text; /* human-readable report */
} omc_stats;

/* omc_stats_get -- the server's counters. Ownership: omc_stats_free. */
om_status omc_stats_get(omc_client *c, omc_stats *out);
void omc_stats_free(omc_stats *st);

/* omc_ping -- round trip; *server (heap, may be NULL) names who answered. */
om_status omc_ping(omc_client *c, char **server);

#endif /* OM_CLIENT_CLIENT_H */
