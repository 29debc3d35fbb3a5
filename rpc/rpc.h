/*
 * rpc/rpc.h -- the transport of objmeta: protobuf frames over TCP on libevent.
 *
 * One module, four parts, all driven by a caller-owned libevent event_base:
 *
 *   - the server (rpc_server_*): accepts connections, decodes Request frames,
 *     hands each request to one handler callback together with a reply handle
 *     (rpc_reply), and writes the Response whenever the handler sends it --
 *     synchronously from the handler, or later from any thread. Many requests
 *     are in flight per connection; responses go out in completion order.
 *   - the client (rpc_client_*): asynchronous, pipelined calls on one
 *     connection, matched by id, per-call timeouts, reconnect on the next call
 *     after a failure; and a blocking wrapper (rpc_sync_client_*) with its own
 *     private event_base for tools and tests.
 *   - the HTTP side (rpc_http_*): /healthz and /metrics on their own port, plus
 *     Prometheus text helpers (rpc_hist, rpc_prom_*).
 *   - glue: the one om_status <-> wire Status table, the port file, libevent
 *     logging into om_log.
 *
 * The wire format and the conversation rules are in rpc/FRAMING.md.
 *
 * Signals: rpc_server_new, rpc_client_new and rpc_http_open set SIGPIPE to
 * SIG_IGN when it is still at its default (once per process), so that a write
 * to a socket the peer closed fails with EPIPE instead of killing the process.
 *
 * Threads: the server, client and HTTP objects belong to the thread that runs
 * their event_base (the "loop thread"); only rpc_reply_send()/rpc_reply_error()
 * and the rpc_hist functions may be called from other threads. A coordinator
 * runs its rpc_server, its rpc_clients to the shards and its rpc_http on the
 * same base; a shard answers from LSM worker threads through rpc_reply_send().
 */
#ifndef OM_RPC_RPC_H
#define OM_RPC_RPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objmeta.pb-c.h"
#include "util/conf.h"
#include "util/slice.h"
#include "util/status.h"

struct event_base;

/* Default maximum frame payload (the protobuf message, without the 4-byte length). */
#define RPC_DEFAULT_MAX_FRAME (16u * 1024u * 1024u)
/* Bytes of the length prefix before every message. */
#define RPC_FRAME_HEADER_LEN 4u

/* ------------------------------------------------------------------------ */
/* Status mapping (the one table; rpc/status_map.c)                          */

/*
 * rpc_status_to_proto -- the wire Status for an om_status.
 * Codes without a wire counterpart map to the closest one (OM_E_NOMEM and
 * OM_E_IO -> INTERNAL); out-of-range values -> INTERNAL.
 * Thread-safety: pure.
 */
Objmeta__Status rpc_status_to_proto(om_status st);

/*
 * rpc_status_from_proto -- the om_status for a wire Status. Values this build
 * does not know (a newer peer) -> OM_E_INTERNAL.
 * Thread-safety: pure.
 */
om_status rpc_status_from_proto(Objmeta__Status s);

/* The om_status of a response (rpc_status_from_proto(resp->status)). */
om_status rpc_response_status(const Objmeta__Response *resp);

/* The upper-case wire name of a status ("NOT_FOUND"); "?" for values this build does not know. */
const char *rpc_proto_status_name(Objmeta__Status s);

/*
 * rpc_response_free -- free a Response that rpc handed to the caller
 * (rpc_sync_client_call). Accepts NULL.
 */
void rpc_response_free(Objmeta__Response *resp);

/* ------------------------------------------------------------------------ */
/* Roles (rpc/auth.c; README.md, "Security")                                 */

/*
 * A connection holds a set of roles; each operation needs one of its own
 * (the one table in rpc/auth.c): client for the data operations, admin for
 * ring changes, GetRing, RebalanceStatus and Stats, peer for SetRing,
 * MigrateScan, ApplyRecords, Compact and forced versions. Ping: any role.
 * The server refuses the rest before dispatch: UNAUTHENTICATED when the
 * connection holds no role, PERMISSION_DENIED otherwise.
 */
#define RPC_ROLE_CLIENT 1u
#define RPC_ROLE_ADMIN 2u
#define RPC_ROLE_PEER 4u
#define RPC_ROLES_ALL (RPC_ROLE_CLIENT | RPC_ROLE_ADMIN | RPC_ROLE_PEER)
/* rpc_server_opts.plaintext_roles: every role on a loopback address, none elsewhere. */
#define RPC_ROLES_AUTO 0x80000000u

/*
 * rpc_roles_parse -- "client,admin,peer" (any subset, comma-separated),
 * "none" or "" (no role), or "auto" (RPC_ROLES_AUTO) into a mask.
 * Returns: OM_OK and *out; OM_E_INVALID naming the unknown role in err.
 * Thread-safety: pure.
 */
om_status rpc_roles_parse(const char *s, uint32_t *out, char *err, size_t errlen);
/* "client,peer" (or "none") for a mask, into buf. */
void rpc_roles_format(uint32_t roles, char *buf, size_t cap);
/* The roles of which a connection must hold one to send req (forced versions: peer). */
uint32_t rpc_request_roles(const Objmeta__Request *req);
/* The operation's name as in the table ("store", "set_ring"; "unknown"). */
const char *rpc_request_op_name(const Objmeta__Request *req);

/* ------------------------------------------------------------------------ */
/* TLS (rpc/tls.c; README.md, "Security")                                    */

/*
 * rpc_tls -- one TLS configuration (an OpenSSL SSL_CTX), shared by a
 * server's connections or by any number of clients. A server's client
 * certificates that chain to ca_file grant roles by their subject's OU:
 * "peer" (every role), "admin" (admin and client), "client" (client).
 */
typedef struct rpc_tls rpc_tls;
#define RPC_TLS_CLIENT_NONE 0     /* server: ask for no client certificate */
#define RPC_TLS_CLIENT_OPTIONAL 1 /* verify one if sent (roles), accept none (tokens) */
#define RPC_TLS_CLIENT_REQUIRED 2 /* the handshake fails without a valid one */
typedef struct rpc_tls_opts {
    const char *cert_file; /* PEM chain: server certificate, or client certificate (optional) */
    const char *key_file;  /* PEM private key of cert_file */
    const char *ca_file;   /* PEM CA(s) the peer's certificate must chain to (client: required) */
    int client_auth;       /* server only: RPC_TLS_CLIENT_* */
} rpc_tls_opts;

/*
 * rpc_tls_new -- load the files into a server (server = true) or client
 * configuration. Returns OM_OK and *out; OM_E_INVALID naming the file and
 * OpenSSL's reason in err. Ownership: rpc_tls_free; it must outlive every
 * server and client given it. Thread-safety: use from one thread.
 */
om_status rpc_tls_new(const rpc_tls_opts *o, bool server, rpc_tls **out, char *err, size_t errlen);
void rpc_tls_free(rpc_tls *t);

/*
 * rpc_mac -- HMAC-SHA256 of p[0..n) under key, truncated to RPC_MAC_LEN bytes:
 * the tag of the continuation tokens (coordinator/fanout.c, shard/list.c).
 * rpc_mac_equal compares two tags in constant time.
 * Thread-safety: pure.
 */
#define RPC_MAC_LEN 16u
void rpc_mac(const uint8_t *key, size_t keylen, const uint8_t *p, size_t n,
             uint8_t tag[RPC_MAC_LEN]);
bool rpc_mac_equal(const uint8_t a[RPC_MAC_LEN], const uint8_t b[RPC_MAC_LEN]);

/*
 * rpc_secret_load -- the first key of a key file (the format of token-keys,
 * rpc/token.c: "<kid> <hex secret>" lines): the cluster secret that signs
 * continuation tokens. Returns OM_OK with *n bytes in out (cap >= 64);
 * OM_E_INVALID with the reason in err.
 */
om_status rpc_secret_load(const char *path, uint8_t *out, size_t cap, size_t *n, char *err,
                          size_t errlen);

/* ------------------------------------------------------------------------ */
/* Logging and small helpers                                                 */

/*
 * rpc_init_logging -- route libevent's internal log messages into om_log
 * (module "libevent"). Call once at startup, before threads start.
 */
void rpc_init_logging(void);

/*
 * rpc_port_file_write -- write "<name> <port>\n" for each listener to `path`
 * atomically (a temporary file in the same directory, fsync, rename).
 * Write it after every listener is bound: test harnesses and scripts wait
 * for the file and read it once.
 * Returns: OM_OK; OM_E_INVALID for n == 0 or a bad name; OM_E_IO (logged).
 * Thread-safety: safe (touches only the file system).
 */
om_status rpc_port_file_write(const char *path, const char *const *names, const int *ports,
                              size_t n);

/* ------------------------------------------------------------------------ */
/* Request ids                                                               */

/*
 * A Request's request_id (proto/objmeta.proto) is repeated in every log line
 * about the request, on the coordinator and on the shards it asks: 1 to
 * RPC_REQUEST_ID_MAX bytes of printable ASCII other than space, '"' and
 * '\\' ("" = none).
 */
#define RPC_REQUEST_ID_MAX 64u

static inline bool
rpc_request_id_char(uint8_t ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

/*
 * rpc_request_id_check -- the rule above for the n bytes at p (the server
 * applies it to every Request as it arrived on the wire; clients before
 * they send). Returns: OM_OK; OM_E_INVALID with "request_id: ..." in err.
 * Thread-safety: pure.
 */
om_status rpc_request_id_check(const uint8_t *p, size_t n, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Server                                                                    */

typedef struct rpc_server rpc_server;
/* One request awaiting its response; see rpc_handler_fn. */
typedef struct rpc_reply rpc_reply;

typedef struct rpc_server_opts {
    /* "host:port" (IPv4, "[v6]:port", or a name); port 0 = any free port
     * (read it back with rpc_server_port). Default "127.0.0.1:7400". */
    const char *listen;
    uint32_t max_frame;          /* largest accepted message; default RPC_DEFAULT_MAX_FRAME */
    uint32_t max_connections;    /* more are answered BUSY and closed; default 1024 */
    uint32_t idle_timeout_ms;    /* close a connection with nothing in flight and no
                                  * bytes for this long; 0 = never; default 300000 */
    uint32_t request_timeout_ms; /* answer TIMEOUT when the handler has not replied in
                                  * this long (a later reply is dropped); 0 = never;
                                  * default 30000 */
    size_t out_high_water;       /* stop reading a connection while more than this many
                                  * response bytes wait to be sent; default 4 MiB */
    size_t out_low_water;        /* resume reading once at most this many wait;
                                  * default out_high_water / 4 */
    size_t out_hard_limit;       /* close a connection (a client that sends and never
                                  * reads) once more than this many response bytes wait
                                  * (requests already in flight keep answering past
                                  * out_high_water); 0 = max(32 MiB, 2 * max_frame +
                                  * out_high_water); default 0 */
    uint32_t max_inflight;       /* requests handed to the handler and not yet answered,
                                  * per connection; reading pauses at the limit;
                                  * default 1024 */
    int backlog;                 /* listen(2) backlog; default 511 */
    uint32_t plaintext_roles;    /* roles of every connection to this (plaintext)
                                  * listener: RPC_ROLE_* bits, or RPC_ROLES_AUTO = all
                                  * of them when the listen address is loopback, none
                                  * otherwise (a warning is logged); default AUTO */
    const char *token_keys_file; /* keys that verify client tokens (AuthRequest;
                                  * rpc/token.c has both formats); NULL or "" = tokens
                                  * are refused; default NULL */
    rpc_tls *tls;                /* TLS on this listener (rpc_tls_new(server)), borrowed;
                                  * NULL = plaintext (plaintext_roles apply); default NULL */
    uint32_t slow_request_ms;    /* an answer that took this long is logged at WARN
                                  * ("slow request", with its request id); 0 = never;
                                  * default 1000 (every answer is logged at DEBUG) */
    bool make_request_ids;       /* give a request without a request_id one of its own
                                  * (rpc_reply_request_id); default false */
    bool adopt_only;             /* bind nothing: connections come from rpc_server_adopt
                                  * (another server's accept hook hands them over: one
                                  * server per loop thread of a process); listen still
                                  * names the address (logs, plaintext roles); default
                                  * false */
} rpc_server_opts;

/* Fill in the defaults documented above. */
void rpc_server_opts_init(rpc_server_opts *o);

/*
 * rpc_handler_fn -- called on the loop thread for every well-formed request
 * with a known operation (rpc itself answers malformed and unknown ones).
 *
 * The handler must make exactly one of rpc_reply_send() / rpc_reply_error()
 * on `reply`, either before it returns or later from any thread.
 * Ownership: `req` is freed by rpc when the handler returns; copy what you
 * need for an asynchronous answer. `reply` stays valid until it is sent.
 */
typedef void (*rpc_handler_fn)(void *arg, const Objmeta__Request *req, rpc_reply *reply);

/*
 * rpc_server_new -- bind the listener and start accepting on `base`.
 * Returns: OM_OK and *out; OM_E_INVALID for a bad address or option, or an
 *          open-file limit below max_connections + 64 that cannot be raised
 *          (logged: the server would run out of descriptors under load);
 *          OM_E_IO / OM_E_UNAVAILABLE when the address cannot be bound (logged).
 * Ownership: the caller owns *out and `base` (which must outlive the server);
 *            opts is copied (listen string included).
 * Thread-safety: call on the thread that will run `base`.
 */
om_status rpc_server_new(struct event_base *base, const rpc_server_opts *opts,
                         rpc_handler_fn handler, void *arg, rpc_server **out);

/*
 * rpc_prefetch_fn / rpc_server_set_prefetch -- read-ahead hints. Before the
 * server dispatches the frames buffered on a connection, it looks at up to
 * RPC_PREFETCH_MAX of the next ones and passes the address (bucket, key) of
 * each Retrieve, Head and Exists among them to fn, in order, so that the
 * application can start loading what those reads will touch while the
 * handler has not run yet (the CPU then waits for several cache misses at
 * once instead of one after another). A hint is only a hint: the requests
 * are decoded and dispatched as usual afterwards (or not at all, when the
 * connection breaks first); fn must not answer anything or change state a
 * result depends on. Requests of other kinds, frames split across buffer
 * chunks and unusual encodings are left out. fn NULL: no hints (default).
 * Ownership: the slices borrow the connection's input; valid during the call.
 * Thread-safety: fn runs on the loop thread; set it on the loop thread
 * before serving.
 */
#define RPC_PREFETCH_MAX 32u
typedef struct rpc_key_hint {
    om_slice bucket, key;
} rpc_key_hint;
typedef void (*rpc_prefetch_fn)(void *arg, const rpc_key_hint *hints, size_t n);
void rpc_server_set_prefetch(rpc_server *s, rpc_prefetch_fn fn, void *arg);

/*
 * rpc_server_set_accept_hook -- offer each connection this server accepts
 * to fn first (loop thread): fn returns true when it took the descriptor
 * (it hands it to another server with rpc_server_adopt), false when this
 * server is to serve it. Connections the server refuses (over
 * max_connections, shutting down) are not offered. fn NULL: none (default).
 * Thread-safety: loop thread.
 */
typedef bool (*rpc_accept_fn)(void *arg, int fd);
void rpc_server_set_accept_hook(rpc_server *s, rpc_accept_fn fn, void *arg);

/*
 * rpc_server_adopt -- serve an accepted connection (fd, owned from here on)
 * on s, a server made with adopt_only, on its loop thread: it is woken to
 * take it. A server over max_connections or shutting down answers it BUSY
 * and closes it, as its own listener would; one with tens of thousands
 * waiting closes it at once (logged). Ownership: consumes fd.
 * Thread-safety: any thread, while s is not freed (the caller stops handing
 * descriptors over before it asks s's loop to shut down).
 */
void rpc_server_adopt(rpc_server *s, int fd);

/* The bound TCP port (useful with port 0; 0 for an adopt_only server). */
int rpc_server_port(const rpc_server *s);

/*
 * rpc_server_shutdown -- graceful stop: close the listener, stop reading
 * requests, let requests in flight finish and their responses flush, close
 * each connection as it drains. When every connection is gone, or after
 * deadline_ms (0 = wait forever) when the rest are closed by force, call
 * done(arg) on the loop thread -- or, when done is NULL, event_base_loopexit().
 * done may call rpc_server_free. Calling rpc_server_shutdown again does nothing.
 * Thread-safety: loop thread only (install signal handlers with evsignal_new
 * on the same base).
 */
void rpc_server_shutdown(rpc_server *s, uint32_t deadline_ms, void (*done)(void *arg), void *arg);

/*
 * rpc_server_free -- close the listener and every connection at once. Replies
 * still held by handlers become no-ops (their rpc_reply_send() frees them).
 * Accepts NULL. Loop thread only, never from inside a server callback.
 */
void rpc_server_free(rpc_server *s);

/* Counters of one server; read with rpc_server_stats (loop thread). */
typedef struct rpc_server_stats {
    uint64_t connections_current;
    uint64_t connections_total;    /* accepted since start */
    uint64_t connections_rejected; /* over max_connections, or shed out of descriptors */
    uint64_t accept_pauses;        /* accepting paused: out of file descriptors */
    uint64_t requests_total;       /* decoded requests (all operations) */
    uint64_t requests_inflight;    /* handed to the handler, not yet answered */
    uint64_t responses_total;      /* responses queued for sending */
    uint64_t protocol_errors;      /* oversize, undecodable, unknown operation */
    uint64_t requests_denied;      /* refused UNAUTHENTICATED or PERMISSION_DENIED */
    uint64_t request_timeouts;     /* answered TIMEOUT by request_timeout_ms */
    uint64_t idle_closes;          /* closed by idle_timeout_ms */
    uint64_t slow_closes;          /* closed over out_hard_limit (never read its answers) */
    uint64_t backpressure_pauses;  /* times reading paused on high water or max_inflight */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t bytes_queued;   /* response bytes waiting in connection output buffers */
    uint64_t bytes_buffered; /* request bytes read but not yet dispatched */
} rpc_server_stats;

void rpc_server_get_stats(const rpc_server *s, rpc_server_stats *out);

/* Add every counter of `from` to `to` (the servers of several loop threads as one). Pure. */
void rpc_server_stats_add(rpc_server_stats *to, const rpc_server_stats *from);

/*
 * rpc_reply_send -- answer a request. rpc copies the response (it is packed
 * before this returns), sets its id to the request's, and sends it; the
 * caller keeps ownership of `resp` (a stack value is fine). resp->status and
 * resp->message are sent as given (set status with rpc_status_to_proto;
 * message must not be NULL -- protobuf-c's default is "").
 * A response larger than max_frame is replaced by INTERNAL "response too
 * large". If the connection has closed or the request already timed out, the
 * response is dropped.
 * Ownership: consumes `reply` (invalid afterwards).
 * Thread-safety: any thread. From a non-loop thread the response is queued
 * and the loop is woken; responses from one thread keep their order.
 */
void rpc_reply_send(rpc_reply *reply, const Objmeta__Response *resp);

/*
 * rpc_reply_error -- answer with a body-less response: status
 * rpc_status_to_proto(st) and a printf-formatted message (st may be OM_OK for
 * operations whose answer is only a status).
 * Ownership and thread-safety as rpc_reply_send.
 */
void rpc_reply_error(rpc_reply *reply, om_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * rpc_reply_send_encoded -- answer with a Response that is already encoded
 * (a proxy passing on another server's answer, see
 * rpc_client_response_bytes): the message's id field is replaced by the
 * request's id and every other byte is sent unchanged -- no decode, no
 * re-encode (rpc/FRAMING.md, "Forwarding encoded responses"). The caller
 * keeps ownership of the bytes.
 * A payload that does not parse as a protobuf message at the top level is
 * answered INTERNAL "undecodable response to forward"; one larger than
 * max_frame after the rewrite, INTERNAL "response too large".
 * Ownership: consumes `reply`. Thread-safety: any thread, as rpc_reply_send.
 */
void rpc_reply_send_encoded(rpc_reply *reply, const uint8_t *p, size_t n);

/*
 * rpc_reply_send_packed -- answer with a Response the caller packed with id
 * 0 (no field 1, e.g. with rpc_response_pack): rpc puts the request's id in
 * front -- protobuf-c writes fields in number order, so the result is the
 * bytes rpc_reply_send would have sent -- and copies the rest unchanged,
 * without parsing it. The caller keeps ownership of the bytes. A frame over
 * max_frame is answered INTERNAL "response too large".
 * Ownership: consumes `reply`. Thread-safety: any thread, as rpc_reply_send.
 */
void rpc_reply_send_packed(rpc_reply *reply, const uint8_t *p, size_t n);

/*
 * rpc_response_packed_size / rpc_response_pack -- protobuf-c's
 * get_packed_size and pack for a Response, the hot bodies (none, Store,
 * Retrieve, Head, Exists, Delete) through hand-written encoders that write
 * the same bytes (rpc/fastpack.c, rpc/FRAMING.md). `out` has room for the
 * size; pack returns the bytes written. Thread-safety: reentrant.
 */
size_t rpc_response_packed_size(const Objmeta__Response *resp);
size_t rpc_response_pack(const Objmeta__Response *resp, uint8_t *out);
/*
 * rpc_response_pack_alloc -- the same in one pass over the strings: measure,
 * ask alloc(arg, size) for the room, pack into it.
 * Returns what alloc returned (NULL: alloc failed, nothing packed) and the
 * packed length in *n. Ownership: the memory is the allocator's.
 */
uint8_t *rpc_response_pack_alloc(const Objmeta__Response *resp, void *(*alloc)(void *arg, size_t n),
                                 void *arg, size_t *n);

/*
 * rpc_reply_request_id -- the request_id of the request this reply answers,
 * or the one the server made for it (make_request_ids); "" = none. For log
 * lines (om_log_rid) and for the requests sent on its behalf.
 * Ownership: valid until the reply is sent. Thread-safety: any thread.
 */
const char *rpc_reply_request_id(const rpc_reply *reply);

/* The request id this reply answers (handy for logs). Any thread, before sending. */
uint64_t rpc_reply_id(const rpc_reply *reply);
/*
 * rpc_reply_start_ns -- when the request was read (om_clock_mono_ns; the
 * server reads the clock once per batch of frames it takes from a
 * connection), for latency figures without a clock read per request.
 * Any thread, before sending.
 */
uint64_t rpc_reply_start_ns(const rpc_reply *reply);

/* ------------------------------------------------------------------------ */
/* Client (asynchronous, on the caller's event_base)                          */

typedef struct rpc_client rpc_client;

typedef struct rpc_client_opts {
    uint32_t max_frame;            /* largest accepted response; default RPC_DEFAULT_MAX_FRAME */
    uint32_t connect_timeout_ms;   /* default 3000 */
    uint32_t default_timeout_ms;   /* used when a call passes timeout 0; default 30000 */
    uint32_t reconnect_backoff_ms; /* after a failed connect, calls made within this
                                    * long fail at once (UNAVAILABLE, the same message)
                                    * without a new connect attempt; 0 = always retry
                                    * (default) */
    rpc_tls *tls;                  /* connect with TLS (rpc_tls_new(client)), borrowed;
                                    * NULL = plaintext (default) */
    const char *token;             /* a client token sent (AuthRequest) first on every
                                    * connection; copied; NULL = none (default) */
} rpc_client_opts;

void rpc_client_opts_init(rpc_client_opts *o);

/*
 * rpc_client_cb -- the end of one call, on the loop thread, exactly once.
 *
 * st == OM_OK: the server answered; resp is its Response (resp->status may
 *   still be an error -- that is the server's answer).
 * st != OM_OK: the transport failed: OM_E_TIMEOUT (no answer within the
 *   call's timeout), OM_E_UNAVAILABLE (connect failed, connection dropped or
 *   client freed), OM_E_CORRUPT (the server sent garbage; the connection is
 *   closed). resp is then a synthetic Response with the mapped status and a
 *   message naming the cause, so it can be forwarded as is.
 * Ownership: resp is freed after the callback returns; the callback may call
 *   rpc_client_call (also on this client) but must not free the client.
 */
typedef void (*rpc_client_cb)(void *arg, om_status st, const Objmeta__Response *resp);

/*
 * rpc_client_new -- a client for "host:port" on `base`. Does not connect yet:
 * the first call (or rpc_client_connect) does.
 * Returns: OM_OK and *out; OM_E_INVALID for a malformed address; OM_E_NOMEM.
 * Ownership: caller owns *out; `base` must outlive it; opts and addr are copied.
 * Thread-safety: loop thread of `base` for every rpc_client_* function.
 */
om_status rpc_client_new(struct event_base *base, const char *addr, const rpc_client_opts *opts,
                         rpc_client **out);

/*
 * rpc_client_call -- send one request; cb runs later, exactly once.
 *
 * The client assigns the id (req->id is ignored) and packs the request before
 * returning, so the caller may free `req` at once. Calls are pipelined: many
 * may be outstanding on the one connection and complete in any order.
 * timeout_ms 0 = the client's default_timeout_ms. When the client is not
 * connected (never connected, or the last connection failed) this starts a
 * connect; calls made meanwhile wait for it.
 * Returns: OM_OK (cb will run; never from inside this call);
 *          OM_E_INVALID if the request packs larger than max_frame or has no
 *          operation; OM_E_UNAVAILABLE from a callback run by
 *          rpc_client_free; OM_E_NOMEM. On error cb never runs.
 */
om_status rpc_client_call(rpc_client *c, const Objmeta__Request *req, uint32_t timeout_ms,
                          rpc_client_cb cb, void *arg);

/*
 * rpc_client_response_bytes -- inside an rpc_client_cb called with st ==
 * OM_OK on this thread: the encoded Response it was decoded from (the frame
 * payload as received, the client's own request id included), to pass on
 * with rpc_reply_send_encoded. An empty slice anywhere else (outside a
 * callback, or in a callback with a synthetic response).
 * Ownership: valid only until the callback returns.
 */
om_slice rpc_client_response_bytes(void);

/* Start connecting now if not connected or connecting (e.g. to warm a pool). */
void rpc_client_connect(rpc_client *c);

/* True while a connection is established. */
bool rpc_client_is_connected(const rpc_client *c);

/* Calls sent and not yet completed. */
size_t rpc_client_pending(const rpc_client *c);

/* Calls completed so far by a response from the server: a caller whose call
 * timed out can tell a busy connection (this moved meanwhile) from a dead one. */
uint64_t rpc_client_answered(const rpc_client *c);

/*
 * True while calls made during this loop iteration wait to be written
 * together (at its end, with one write). A caller that spreads calls over
 * several clients to one server sends more with the same client meanwhile:
 * one write and one read per iteration instead of one per call.
 */
bool rpc_client_batching(const rpc_client *c);

/* The address given to rpc_client_new. */
const char *rpc_client_addr(const rpc_client *c);

/*
 * rpc_client_free -- close the connection; every pending call completes with
 * OM_E_UNAVAILABLE ("client closed") before this returns. Accepts NULL. Never
 * from inside one of this client's callbacks.
 */
void rpc_client_free(rpc_client *c);

/* ------------------------------------------------------------------------ */
/* Blocking client (own private event_base; for tools and tests)              */

typedef struct rpc_sync_client rpc_sync_client;

/*
 * rpc_sync_client_open -- connect to "host:port" and wait for the connection.
 * Returns: OM_OK and *out; OM_E_INVALID (address); OM_E_UNAVAILABLE (refused,
 *          unreachable) or OM_E_TIMEOUT (no connection within timeout_ms;
 *          0 = 3000); messages are logged at DEBUG.
 * Ownership: caller closes *out with rpc_sync_client_close.
 * Thread-safety: one thread at a time per client; clients are independent.
 */
om_status rpc_sync_client_open(const char *addr, uint32_t timeout_ms, rpc_sync_client **out);
/* The same over TLS when tls is not NULL (a client context: rpc_tls_new with
 * server = false; its certificate, if any, is this side's credential). */
om_status rpc_sync_client_open_tls(const char *addr, uint32_t timeout_ms, rpc_tls *tls,
                                   rpc_sync_client **out);
/* The same with client options (TLS, token; o->connect_timeout_ms 0 = 3000),
 * and the reason of a failure in err (may be NULL). */
om_status rpc_sync_client_open_opts(const char *addr, const rpc_client_opts *o,
                                    rpc_sync_client **out, char *err, size_t errlen);

/*
 * rpc_sync_client_call -- send req and wait for its response.
 * Returns: OM_OK and *resp (whatever its resp->status: use
 *          rpc_response_status); transport errors as rpc_client_cb
 *          (OM_E_TIMEOUT, OM_E_UNAVAILABLE, OM_E_CORRUPT) or OM_E_INVALID,
 *          and then *resp is untouched. After a transport error the next call
 *          reconnects; a close noticed between calls (idle timeout, server
 *          restart) makes this call reconnect first.
 * Ownership: *resp belongs to the caller: rpc_response_free().
 */
om_status rpc_sync_client_call(rpc_sync_client *c, const Objmeta__Request *req, uint32_t timeout_ms,
                               Objmeta__Response **resp);

/* The message of the last transport error ("" if none); valid until the next call. */
const char *rpc_sync_client_last_error(const rpc_sync_client *c);

/* Close and free. Accepts NULL. */
void rpc_sync_client_close(rpc_sync_client *c);

/* ------------------------------------------------------------------------ */
/* HTTP: /healthz, /readyz and /metrics (evhttp, on the caller's base)       */

typedef struct rpc_http rpc_http;

/*
 * rpc_health_fn -- OM_OK with `reason` left empty: healthy (/healthz 200
 * "ok\n"). OM_OK with a reason appended: degraded, serving but not
 * everything (/healthz 429 "degraded: <reason>\n"; /readyz still 200).
 * Anything else: cannot serve (503 with the reason, or the status name when
 * reason stays empty, on both).
 */
typedef om_status (*rpc_health_fn)(void *arg, om_buf *reason);

/*
 * rpc_metrics_fn -- append the Prometheus text exposition to `out`. A non-OK
 * return gives 500.
 */
typedef om_status (*rpc_metrics_fn)(void *arg, om_buf *out);

/* Seconds an HTTP connection may take to send its request or read the answer. */
#define RPC_HTTP_TIMEOUT_S 3

/*
 * rpc_http_open -- serve GET /healthz, /readyz and /metrics on `listen`
 * ("host:port", port 0 = any). Other paths: 404; other methods: 405.
 * Either callback may be NULL (healthz then always 200; metrics empty).
 * Returns: OM_OK and *out; OM_E_INVALID (address); OM_E_IO (bind failed, logged).
 * Ownership: caller closes *out; `base` must outlive it.
 * Thread-safety: loop thread; callbacks run on it.
 */
om_status rpc_http_open(struct event_base *base, const char *listen, rpc_health_fn health,
                        rpc_metrics_fn metrics, void *arg, rpc_http **out);

int rpc_http_port(const rpc_http *h);

void rpc_http_close(rpc_http *h);

/* ------------------------------------------------------------------------ */
/* Prometheus helpers                                                         */

/*
 * Upper bounds of the latency buckets in microseconds: a 1-2-5 series from
 * 10 us to 10 s (19 bounds), plus +Inf.
 */
#define RPC_HIST_BOUNDS 19

/*
 * rpc_hist -- a latency histogram with fixed log-scale buckets.
 * A value type: embed it, zero it (or rpc_hist_init) and observe.
 * Thread-safety: rpc_hist_observe_* from any thread (relaxed atomics);
 * rendering reads a consistent-enough snapshot (counts may be a few
 * observations apart under load, never torn).
 */
typedef struct rpc_hist {
    _Atomic uint64_t bucket[RPC_HIST_BOUNDS + 1]; /* non-cumulative; last = +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} rpc_hist;

void rpc_hist_init(rpc_hist *h);
void rpc_hist_observe_ns(rpc_hist *h, uint64_t ns);
/* Bucket bound i in microseconds (i < RPC_HIST_BOUNDS). */
uint64_t rpc_hist_bound_us(unsigned i);
/* Approximate quantile q in [0,1] in microseconds (upper bound of its bucket; 0 if empty). */
uint64_t rpc_hist_quantile_us(const rpc_hist *h, double q);

/*
 * rpc_hist_render -- append `name`_bucket{labels,le="..."} (cumulative, le in
 * seconds), `name`_sum (seconds) and `name`_count lines. `labels` is the
 * inside of the braces without them, e.g. `op="store"`, or "" / NULL.
 * Emit rpc_prom_header once per metric name before the series.
 */
om_status rpc_hist_render(const rpc_hist *h, om_buf *out, const char *name, const char *labels);

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram). */
om_status rpc_prom_header(om_buf *out, const char *name, const char *type, const char *help);

/* "name{labels} value\n" (labels may be NULL or ""). */
om_status rpc_prom_value(om_buf *out, const char *name, const char *labels, double value);

/*
 * rpc_prom_process -- append the process_* metrics of the Prometheus client
 * conventions (CPU seconds, resident and virtual memory, open and maximum
 * fds, start time; from /proc/self) and objmeta_build_info{version,binary} 1.
 * rpc_http appends them to every /metrics answer.
 */
om_status rpc_prom_process(om_buf *out);

/* Append the server's counters as objmeta_rpc_* metrics (with HELP/TYPE). Loop thread. */
om_status rpc_server_render_metrics(const rpc_server *s, om_buf *out);
/* The same from counters in hand (rpc_server_get_stats, summed with rpc_server_stats_add). */
om_status rpc_server_render_stats(const rpc_server_stats *st, om_buf *out);

/*
 * Settings every objmeta server shares, as rows of its configuration table
 * (util/conf.h): who may do what on its listener (plaintext roles, client
 * tokens, TLS) and how it logs. objmeta-shard and objmeta-coord both expand
 * these macros, so the names, defaults, bounds and doc lines exist once.
 *
 * RPC_CONF_LISTEN_ITEMS(T, LISTEN): T has char *listen (default LISTEN),
 * *http_listen, *port_file and int64_t max_frame, max_connections,
 * idle_timeout (rpc_server_opts); rpc_conf_http_addr() resolves http-listen.
 * RPC_CONF_TRUST_ITEMS(T): T has char *plaintext_roles, *token_keys,
 * *tls_cert, *tls_key, *tls_ca and int tls_client_auth (RPC_TLS_CLIENT_*).
 * RPC_CONF_LOG_ITEMS(T): T has int log_level (om_log_level), int
 * log_format (om_log_format) and int64_t slow_request (ms, for
 * rpc_server_opts.slow_request_ms).
 */
/* Index = RPC_TLS_CLIENT_*; index = om_log_level; index = om_log_format. */
extern const char *const rpc_conf_tls_client_auths[];
extern const char *const rpc_conf_log_levels[];
extern const char *const rpc_conf_log_formats[];

/*
 * rpc_conf_http_addr -- the address http-listen names, in out: "" for "off"
 * (no HTTP listener); for "auto" the host of listen with its port + 1000
 * (port 0, any free port, stays 0); any other value as it is.
 */
void rpc_conf_http_addr(const char *listen, const char *http_listen, char *out, size_t n);

/* One table row per setting reads better than the formatter's layout. */
/* clang-format off */
#define RPC_CONF_LISTEN_ITEMS(T, LISTEN)                                                           \
    {"listen", OM_CONF_STR, LISTEN, 0, 0, NULL, offsetof(T, listen), "rpc listener host:port"},    \
    {"http-listen", OM_CONF_STR, "auto", 0, 0, NULL, offsetof(T, http_listen),                     \
     "/metrics and /healthz host:port; auto = listen port + 1000 (0 if listen port is 0); off"},   \
    {"port-file", OM_CONF_STR, "", 0, 0, NULL, offsetof(T, port_file),                             \
     "write 'rpc <port>' and 'http <port>' here once bound (empty = none)"},                       \
    {"max-frame", OM_CONF_SIZE, "16M", 1024, 1LL << 30, NULL, offsetof(T, max_frame),              \
     "largest protocol message accepted (and forwarded, by a coordinator)"},                      \
    {"max-connections", OM_CONF_INT, "1024", 1, 1000000, NULL, offsetof(T, max_connections),       \
     "connections beyond this are refused with BUSY"},                                             \
    {"idle-timeout", OM_CONF_DURATION, "300s", 0, 86400000, NULL, offsetof(T, idle_timeout),       \
     "close idle connections after this long (0 = never)"}
#define RPC_CONF_TRUST_ITEMS(T)                                                                    \
    {"plaintext-roles", OM_CONF_STR, "auto", 0, 0, NULL, offsetof(T, plaintext_roles),             \
     "roles of plaintext connections: client,admin,peer subsets or none; auto = all on a "         \
     "loopback listen address, none elsewhere (README.md, Security)"},                             \
    {"token-keys", OM_CONF_STR, "", 0, 0, NULL, offsetof(T, token_keys),                           \
     "file of '<kid> <hex secret>' lines verifying client tokens (empty = no tokens)"},            \
    {"tls-cert", OM_CONF_STR, "", 0, 0, NULL, offsetof(T, tls_cert),                               \
     "PEM certificate chain: serve TLS only (with tls-key; empty = plaintext)"},                   \
    {"tls-key", OM_CONF_STR, "", 0, 0, NULL, offsetof(T, tls_key),                                 \
     "PEM private key of tls-cert"},                                                               \
    {"tls-ca", OM_CONF_STR, "", 0, 0, NULL, offsetof(T, tls_ca),                                   \
     "PEM cluster CA: client certificates must chain to it (roles by OU: peer, admin, "            \
     "client); a coordinator also connects to its shards with TLS then"},                          \
    {"tls-client-auth", OM_CONF_ENUM, "optional", 0, 0, rpc_conf_tls_client_auths,                 \
     offsetof(T, tls_client_auth),                                                                 \
     "TLS client certificates: none, optional (else a token) or required"}

#define RPC_CONF_LOG_ITEMS(T)                                                                      \
    {"log-level", OM_CONF_ENUM, "info", 0, 0, rpc_conf_log_levels, offsetof(T, log_level),         \
     "error, warn, info or debug"},                                                                \
    {"log-format", OM_CONF_ENUM, "text", 0, 0, rpc_conf_log_formats, offsetof(T, log_format),      \
     "text (one line per event) or json (one JSON object per line)"},                             \
    {"slow-request", OM_CONF_DURATION, "1s", 0, 3600000, NULL, offsetof(T, slow_request),          \
     "log an answer that took this long at warn, with its request id (0 = never; every answer "    \
     "is logged at debug)"}
/* clang-format on */

#endif /* OM_RPC_RPC_H */
