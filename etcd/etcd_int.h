/*
 * etcd/etcd_int.h -- private to etcd/: the client's endpoint list and the
 * request machinery shared by kv.c, lease.c, watch.c and election.c.
 *
 * Thread-safety: loop thread only, like the public API.
 */
#ifndef OM_ETCD_ETCD_INT_H
#define OM_ETCD_ETCD_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "etcd/etcd.h"
#include "util/arena.h"
#include "util/slice.h"

struct evhttp_connection;

/* One endpoint: "http://host:port" split into its parts. */
typedef struct etcd_endpoint {
    char *url; /* "http://host:port", for messages */
    char *host;
    int port;
    struct evhttp_connection *conn; /* unary requests; created on first use */
} etcd_endpoint;

typedef struct etcd_req etcd_req;

struct etcd_client {
    struct event_base *base;
    etcd_endpoint *eps;
    size_t neps;
    size_t cur; /* index of the endpoint in use */
    int timeout_ms;
    etcd_req *reqs; /* outstanding requests (doubly linked) */
    etcd_stats stats;
};

/*
 * A parser turns the JSON answer of one call into an etcd_resp. Memory it
 * needs (decoded keys and values, arrays) comes from the arena, which lives
 * until the callback returns. Returns OM_E_CORRUPT for an answer of the
 * wrong shape.
 */
typedef om_status (*etcd_parse_fn)(json_t *root, om_arena *a, etcd_resp *r);

/*
 * etcd_call -- POST body to path ("/v3/kv/range") and hand the parsed answer
 * to cb. retry: the call may be repeated on another endpoint (see etcd.h).
 * Ownership: body is always consumed (decref'd), also on failure.
 */
om_status etcd_call(etcd_client *c, const char *path, json_t *body, bool retry, etcd_parse_fn parse,
                    etcd_cb cb, void *arg);

/* Drop every outstanding request whose callback argument is arg, without callbacks. */
void etcd_drop_requests(etcd_client *c, void *arg);

/* The client's next endpoint after a failure on ep (moves only if ep is current). */
void etcd_failover(etcd_client *c, size_t ep);
/* Fold a header revision into the stats. */
void etcd_note_revision(etcd_client *c, int64_t rev);

/* ---- JSON helpers (json.c) ---- */

/* {"key": base64(key)} plus range_end for a prefix; NULL on allocation failure. */
json_t *etcd_json_key(om_slice key, bool prefix);
/* Add base64(v) under name; false on allocation failure. */
bool etcd_json_set_bytes(json_t *obj, const char *name, om_slice v);
/* Add an int64 as a JSON string (the gateway's form of 64-bit integers). */
bool etcd_json_set_i64(json_t *obj, const char *name, int64_t v);
/* Read an int64 sent as a string or a number; absent means 0. */
om_status etcd_json_i64(const json_t *obj, const char *name, int64_t *out);
/* Decode base64 field name into arena memory; absent means empty. */
om_status etcd_json_bytes(const json_t *obj, const char *name, om_arena *a, om_slice *out);
/* Parse one mvccpb.KeyValue object. */
om_status etcd_json_kv(const json_t *obj, om_arena *a, etcd_kv *kv);
/* Parse "header.revision" of obj into r->revision. */
om_status etcd_json_header(const json_t *obj, etcd_resp *r);
/*
 * obj's member name as an array (*arr) of *n elements, with room for them
 * (*n * elem bytes) in *out from the arena; absent or empty: *n 0 and *out
 * NULL. OM_E_CORRUPT when it is not an array, OM_E_NOMEM.
 */
om_status etcd_json_array(const json_t *obj, const char *name, om_arena *a, size_t elem,
                          const json_t **arr, void **out, size_t *n);
/* Parse a "kvs" array into r->kvs / r->nkvs / r->more. */
om_status etcd_json_kvs(const json_t *obj, om_arena *a, etcd_resp *r);

#endif /* OM_ETCD_ETCD_INT_H */
