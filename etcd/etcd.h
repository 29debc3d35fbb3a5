/*
 * etcd/etcd.h -- an asynchronous etcd v3 client over etcd's JSON gateway
 * (POST /v3/kv/range, /v3/kv/txn, /v3/lease/..., /v3/watch), on the
 * caller's libevent event_base.
 *
 * Requests: every call queues one HTTP request and returns at once; its
 * callback runs later on the loop thread with an etcd_resp that is valid
 * only during the callback. Every request has a deadline (opts.timeout_ms).
 *
 * Endpoints and failover: the client talks to one endpoint at a time. A
 * transport failure (refused, reset, timeout) or an etcd "unavailable"
 * answer moves it to the next endpoint. Requests whose repetition cannot
 * change the outcome (range, lease grant/keep-alive/revoke: a lease granted
 * twice leaves one to expire unused) are retried once on each other endpoint
 * within their deadline; put, delete and txn are never retried, because a
 * lost reply may hide an applied write and a repeated one could undo a later
 * write of someone else: they fail with OM_E_UNAVAILABLE and the caller
 * re-reads and decides.
 *
 * Errors: resp->st is OM_OK or the failure, and resp->err is one line that
 * names etcd, the endpoint and the call ("etcd http://127.0.0.1:2379
 * kv/txn: connection refused"). gRPC codes map to om_status: NotFound ->
 * OM_E_NOTFOUND, InvalidArgument -> OM_E_INVALID, FailedPrecondition ->
 * OM_E_PRECONDITION, Unavailable -> OM_E_UNAVAILABLE, DeadlineExceeded ->
 * OM_E_TIMEOUT, ResourceExhausted -> OM_E_BUSY, anything else
 * OM_E_INTERNAL.
 *
 * Watches keep one streamed HTTP response open each; a broken stream is
 * reopened on the next endpoint from the revision after the last one
 * delivered, so no event is lost or delivered twice.
 *
 * Elections follow etcd's own recipe: a candidate creates the election key
 * under its lease in a transaction that requires the key to be absent
 * (create_revision == 0); the key's holder leads until its lease ends; the
 * others watch the key and try again when it is deleted. A leader's writes
 * must be conditional on etcd_election_guard() (the key still has the
 * create_revision it was won with), so a leader whose lease expired --
 * frozen, partitioned, slow -- cannot change anything.
 *
 * Thread-safety: one client and everything made from it belong to the
 * thread running its event_base.
 * Ownership: free watches and elections before their client. Freeing the
 * client drops its outstanding requests without calling their callbacks;
 * never free a client from inside one of its request callbacks (evhttp is
 * still using the connection then). Watches may be freed from their own
 * callback.
 */
#ifndef OM_ETCD_ETCD_H
#define OM_ETCD_ETCD_H

#include <stdbool.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

struct event_base;

typedef struct etcd_client etcd_client;

typedef struct etcd_opts {
    const char *endpoints; /* "http://h:p[,http://h:p...]" (http:// may be omitted) */
    int timeout_ms;        /* deadline of one request, retries included; default 2000 */
} etcd_opts;

/* Fill in the defaults (endpoints NULL: must be set). */
void etcd_opts_init(etcd_opts *o);

/*
 * etcd_client_new -- parse the endpoint list; connects lazily.
 * Returns: OM_OK; OM_E_INVALID with a message in err naming the bad endpoint.
 */
om_status etcd_client_new(struct event_base *base, const etcd_opts *o, char *err, size_t errlen,
                          etcd_client **out);
void etcd_client_free(etcd_client *c);

/* The endpoint requests currently go to ("http://h:p"). */
const char *etcd_client_endpoint(const etcd_client *c);

/* Counters for /metrics. */
typedef struct etcd_stats {
    uint64_t requests;   /* completed requests (any outcome) */
    uint64_t errors;     /* completed with st != OM_OK (answers such as a failed compare are OK) */
    uint64_t latency_us; /* sum of round-trip times of completed requests */
    uint64_t failovers;  /* moves to another endpoint */
    int64_t revision;    /* highest header revision seen */
} etcd_stats;
void etcd_client_stats(const etcd_client *c, etcd_stats *out);

/* One key-value pair as etcd returns it (all slices valid during the callback). */
typedef struct etcd_kv {
    om_slice key;
    om_slice value;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} etcd_kv;

/* The answer to one request. */
typedef struct etcd_resp {
    om_status st;
    const char *err;  /* "" on OM_OK */
    int64_t revision; /* store revision in the response header */
    /* range: */
    const etcd_kv *kvs;
    size_t nkvs;
    bool more;
    /* delete: */
    int64_t deleted;
    /* txn: whether the compares held, and one sub-response per executed op */
    bool succeeded;
    const struct etcd_resp *ops;
    size_t nops;
    /* lease grant / keep-alive: */
    int64_t lease_id;
    int64_t ttl;
} etcd_resp;

typedef void (*etcd_cb)(const etcd_resp *r, void *arg);

/* Range over one key, or over every key that starts with key when prefix is true. */
om_status etcd_range(etcd_client *c, om_slice key, bool prefix, etcd_cb cb, void *arg);
/* Put key=value, attached to lease (0 for none). */
om_status etcd_put(etcd_client *c, om_slice key, om_slice value, int64_t lease, etcd_cb cb,
                   void *arg);
/* Delete one key or a prefix; resp->deleted counts the keys. */
om_status etcd_delete(etcd_client *c, om_slice key, bool prefix, etcd_cb cb, void *arg);

/*
 * Transactions: if every compare holds, run the success ops, else the
 * failure ops; resp->succeeded says which. A builder remembers its first
 * error (allocation) and etcd_txn_send reports it.
 */
typedef struct etcd_txn etcd_txn;

typedef enum etcd_target {
    ETCD_CMP_VALUE,
    ETCD_CMP_VERSION,
    ETCD_CMP_CREATE, /* create_revision: 0 means "absent" */
    ETCD_CMP_MOD,    /* mod_revision */
    ETCD_CMP_LEASE,
} etcd_target;

typedef enum etcd_cmp_op { ETCD_EQ, ETCD_NE, ETCD_LT, ETCD_GT } etcd_cmp_op;

om_status etcd_txn_new(etcd_txn **out);
void etcd_txn_free(etcd_txn *t);
/* Compare an integer target (not ETCD_CMP_VALUE) of key. */
void etcd_txn_cmp(etcd_txn *t, om_slice key, etcd_target target, etcd_cmp_op op, int64_t v);
/* Compare the value of key. */
void etcd_txn_cmp_value(etcd_txn *t, om_slice key, etcd_cmp_op op, om_slice value);
void etcd_txn_put(etcd_txn *t, bool on_success, om_slice key, om_slice value, int64_t lease);
void etcd_txn_delete(etcd_txn *t, bool on_success, om_slice key, bool prefix);
void etcd_txn_range(etcd_txn *t, bool on_success, om_slice key, bool prefix);
/*
 * etcd_txn_send -- send the transaction (never retried; see above).
 * Ownership: the builder stays the caller's; it may be freed at once.
 */
om_status etcd_txn_send(etcd_client *c, const etcd_txn *t, etcd_cb cb, void *arg);

/* Leases. keep-alive answers ttl 0 and OM_E_NOTFOUND when the lease is gone. */
om_status etcd_lease_grant(etcd_client *c, int64_t ttl_s, etcd_cb cb, void *arg);
om_status etcd_lease_keepalive(etcd_client *c, int64_t id, etcd_cb cb, void *arg);
om_status etcd_lease_revoke(etcd_client *c, int64_t id, etcd_cb cb, void *arg);

/*
 * Watch: events on one key (or a prefix) from start_revision (0: from now).
 * The callback gets each batch; st != OM_OK reports that the watch ended
 * and will deliver nothing more (OM_E_NOTFOUND: start_revision was
 * compacted; the caller re-reads and watches again). Stream breaks are not
 * reported: the watch reopens itself (see the file header).
 */
typedef struct etcd_watch etcd_watch;

typedef enum etcd_event_type { ETCD_EV_PUT, ETCD_EV_DELETE } etcd_event_type;

typedef struct etcd_event {
    etcd_event_type type;
    etcd_kv kv; /* for a delete: key and mod_revision (the delete's revision) */
} etcd_event;

typedef struct etcd_watch_batch {
    om_status st;
    const char *err;
    int64_t revision; /* header revision */
    const etcd_event *events;
    size_t nevents;
} etcd_watch_batch;

typedef void (*etcd_watch_cb)(const etcd_watch_batch *b, void *arg);

om_status etcd_watch_new(etcd_client *c, om_slice key, bool prefix, int64_t start_revision,
                         etcd_watch_cb cb, void *arg, etcd_watch **out);
/* Stop; no callback runs after this returns. Safe from inside the callback. */
void etcd_watch_free(etcd_watch *w);
/* True while a stream is open and created (false while reconnecting). */
bool etcd_watch_is_live(const etcd_watch *w);

/*
 * Election on one key. A candidate (after etcd_election_campaign) holds a
 * lease of ttl_s seconds that it keeps alive every ttl/3; an observer only
 * follows the leader's value. The callback runs on every change of role or
 * of the leader's value.
 */
typedef struct etcd_election etcd_election;

typedef enum etcd_role {
    ETCD_FOLLOWER, /* someone else leads (leader value may be empty: nobody) */
    ETCD_LEADER,   /* this candidate holds the key */
} etcd_role;

typedef void (*etcd_election_cb)(etcd_election *e, etcd_role role, om_slice leader_value,
                                 void *arg);

om_status etcd_election_new(etcd_client *c, om_slice key, int ttl_s, etcd_election_cb cb, void *arg,
                            etcd_election **out);
/*
 * Start (or keep) competing with value (an identity, e.g. the coordinator's
 * address). Ownership: value is copied.
 */
om_status etcd_election_campaign(etcd_election *e, om_slice value);
/* Give up leadership (delete the key, revoke the lease) and stop competing. */
void etcd_election_resign(etcd_election *e);
/* Resign if leading, stop everything; no callback runs after this returns. */
void etcd_election_free(etcd_election *e);

/*
 * True while this candidate leads and the lease cannot have expired yet by
 * the local clock (the last successful keep-alive was sent less than one
 * TTL ago). Check it before acting as leader, and make every write
 * conditional with etcd_election_guard.
 */
bool etcd_election_is_leader(const etcd_election *e);
/* The current leader's value (empty: none known). Valid until the next loop turn. */
om_slice etcd_election_leader(const etcd_election *e);
/*
 * True while etcd confirmed this candidate's lease less than one TTL ago (a
 * keep-alive sent then was answered), i.e. this process is in touch with
 * etcd and its view of the leader is current; false once it is cut off (and
 * before its first lease). Candidates only: an observer is always "in touch".
 */
bool etcd_election_in_touch(const etcd_election *e);
/*
 * etcd_election_guard -- add to t the compare "the election key still has
 * the create_revision this candidate won it with". Returns OM_E_PRECONDITION
 * (nothing added) when not leader.
 */
om_status etcd_election_guard(const etcd_election *e, etcd_txn *t);
/* The lease of this candidate (0 if none), to attach keys that live as long as it. */
int64_t etcd_election_lease(const etcd_election *e);

#endif /* OM_ETCD_ETCD_H */
