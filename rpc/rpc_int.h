/*
 * rpc/rpc_int.h -- private structures shared by server.c, conn.c and reply.c, and
 * helpers shared by every rpc file (address parsing, socket options).
 *
 * Concurrency scheme of the server (the one place threads meet):
 *
 *   Everything in rpc_server and rpc_conn belongs to the loop thread. A
 *   request becomes an rpc_reply that is linked into its connection's
 *   in-flight list (loop-owned fields: conn, prev, next). A handler answers
 *   on the loop thread -- the response is packed straight into the
 *   connection's output -- or from another thread: then the response is
 *   packed there into reply->frame, and the reply is pushed on the server's
 *   completion queue (rpc_cq: mutex + list + eventfd). The loop drains the
 *   queue when the eventfd fires. A reply whose request timed out, or whose
 *   connection closed, has conn == NULL (orphaned): its eventual answer is
 *   dropped. The cq is reference counted (server + each outstanding reply)
 *   because a handler may answer after the server is gone: rpc_server_free
 *   marks the cq dead under its mutex, and a later rpc_reply_send sees that
 *   under the same mutex and just frees the reply.
 *
 *   Lock order: cq->mu is a leaf; nothing else is locked in rpc.
 */
#ifndef OM_RPC_RPC_INT_H
#define OM_RPC_RPC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rpc/rpc.h"

struct bufferevent;
struct evbuffer;
struct event;
struct evconnlistener;

/* util.c: unpack scratch */
/*
 * rpc_scratch -- a bump allocator for protobuf-c unpacking on the loop
 * thread: a decoded message's structs and strings come from an inline block
 * (overflow from malloc'd blocks), and rpc_scratch_reset() releases all of
 * it at once instead of protobuf_c_message_free_unpacked's one free() per
 * field. The ProtobufCAllocator's free is a no-op (protobuf-c calls it when
 * an unpack fails half-way: the reset reclaims that memory too). `busy`
 * marks a scratch holding a live message: a nested user (a handler that
 * answers another connection, which dispatches that connection's frames)
 * falls back to the default allocator.
 * Thread-safety: one thread (the loop thread of its owner).
 */
#define RPC_SCRATCH_BYTES 16384u
typedef struct rpc_scratch_big rpc_scratch_big;
typedef struct rpc_scratch {
    ProtobufCAllocator pa;
    size_t used;
    bool busy;
    rpc_scratch_big *big;   /* overflow blocks (newest first), freed by reset */
    rpc_scratch_big *spare; /* one block kept by reset for the next message */
    _Alignas(16) uint8_t buf[RPC_SCRATCH_BYTES];
} rpc_scratch;
void rpc_scratch_init(rpc_scratch *s);
/* Free the overflow blocks (keeping one spare) and rewind: messages unpacked from it die here. */
void rpc_scratch_reset(rpc_scratch *s);
/* Release everything (the owner is going away). */
void rpc_scratch_fini(rpc_scratch *s);
/*
 * rpc_scratch_take -- the allocator to unpack with: s's (marked busy) when it
 * is free, else NULL (protobuf-c's default: free with free_unpacked).
 * rpc_scratch_done(s, pa, msg) releases what take handed out: a reset for
 * the scratch, free_unpacked for the default allocator (msg may be NULL).
 */
ProtobufCAllocator *rpc_scratch_take(rpc_scratch *s);
void rpc_scratch_done(rpc_scratch *s, ProtobufCAllocator *pa, ProtobufCMessage *msg);

/* Most bytes one read callback takes from a socket (libevent's default: 16 KiB). */
#define RPC_MAX_SINGLE_READ (256u * 1024u)
/* What one read asks for (rpc_bev_read_direct): first a request's worth,
 * then, while reads fill what they asked for, a pipelined batch at a time.
 * Each is 64 bytes below a power of two, so that the evbuffer chain it
 * allocates (data plus libevent's 48-byte chain header) is that power of
 * two; 1 KiB chains come from malloc's per-thread cache (4 KiB ones cost
 * some 400 instructions more per read, allocated and freed). */
#define RPC_READ_FIRST (1024u - 64u)
#define RPC_READ_NEXT (65536u - 64u)

typedef struct rpc_conn rpc_conn;
typedef struct rpc_cq rpc_cq;
typedef struct rpc_token rpc_token;     /* token.c */
typedef struct rpc_keyring rpc_keyring; /* token.c */

struct rpc_reply {
    /* Immutable after creation (read by any thread). */
    rpc_cq *cq;
    uint64_t id;
    uint64_t start_ms;
    uint64_t start_ns;                /* monotonic; read once per batch of frames (conn_process) */
    uint32_t op;                      /* the Request's body case (reqlog.c) */
    char rid[RPC_REQUEST_ID_MAX + 1]; /* its request_id, or the one made for it; "" = none */
    /* Loop thread only. */
    rpc_conn *conn; /* NULL: orphaned (timed out, connection closed) */
    rpc_reply *prev, *next;
    /* Written by the answering thread before it is queued. */
    uint8_t *frame;
    size_t frame_len;
    rpc_reply *qnext; /* under cq->mu */
};

struct rpc_cq {
    atomic_uint refs;
    pthread_mutex_t mu;
    rpc_reply *head, *tail; /* queued answers, FIFO */
    bool dead;              /* server freed: drop answers */
    bool wake_pending;      /* an eventfd write is outstanding */
    int efd;
    uint32_t max_frame;    /* immutable: for packing off the loop */
    pthread_t loop_thread; /* immutable: the thread that runs the server's base */
    /*
     * Loop thread only: released replies kept for the next requests (a
     * malloc/free pair per request saved), linked through qnext. Only a
     * reply destroyed on the loop thread while the server lives goes here;
     * rpc_server_free empties it after marking the cq dead.
     */
    rpc_reply *pool;
    unsigned n_pool;
    /* reqlog.c: immutable after rpc_cq_reqlog_init, except as noted */
    uint64_t slow_ns;              /* log answers this slow at WARN; 0 = never */
    bool make_ids;                 /* give requests without a request_id one */
    char id_tag[12];               /* the made ids' prefix */
    uint64_t id_seq;               /* loop thread only: the made ids' counter */
    _Atomic uint64_t warn_sec;     /* the second warn_n counts */
    atomic_uint warn_n;            /* WARN request lines in it */
    _Atomic uint64_t warn_dropped; /* left out since the last one logged */
};

/* Most replies a cq keeps for reuse (about 100 bytes each). */
#define RPC_REPLY_POOL 4096u

typedef enum conn_state {
    CONN_OPEN,     /* reading and dispatching */
    CONN_DRAINING, /* no more reads (shutdown or peer EOF); close when answered and flushed */
    CONN_FLUSHING, /* an error response is going out; then linger */
    CONN_LINGER,   /* write side shut; discard input until EOF or deadline */
} conn_state;

struct rpc_conn {
    rpc_server *srv;
    struct bufferevent *bev;
    struct evbuffer *sock_out; /* TLS: the socket bufferevent's output (records not written) */
    rpc_conn *prev, *next;     /* server's connection list */
    rpc_reply *in_head, *in_tail;
    uint32_t ninflight;
    conn_state state;
    bool counted;            /* counts against max_connections */
    bool read_enabled;       /* EV_READ currently enabled by us */
    bool out_blocked;        /* over out_high_water until out_low_water */
    bool in_dispatch;        /* conn_process is on the stack */
    bool peer_eof;           /* the peer half-closed; answer what was read, then close */
    bool free_deferred;      /* free when conn_process unwinds */
    bool dirty;              /* in the server's dirty list: output to write this iteration */
    bool wr_enabled;         /* EV_WRITE on: the socket was full, libevent finishes the write */
    rpc_conn *dprev, *dnext; /* server's dirty list */
    uint64_t last_active_ms;
    uint64_t state_since_ms;
    uint32_t roles;      /* effective roles (auth.c); checked before every dispatch */
    uint32_t base_roles; /* granted by the transport: plaintext_roles, or the certificate */
    bool tls;            /* a TLS connection */
    bool tls_ready;      /* its handshake finished (roles known) */
    rpc_token *tok;      /* from an AuthRequest (auth.c), or NULL; scopes the client role
                          * when the transport did not grant it */
    char peer[64];
};

struct rpc_server {
    struct event_base *base;
    rpc_server_opts o;
    char *listen_str;
    rpc_handler_fn handler;
    void *handler_arg;
    rpc_prefetch_fn prefetch; /* read-ahead hints (rpc_server_set_prefetch), or NULL */
    void *prefetch_arg;
    struct evconnlistener *lis;
    int port;
    uint32_t plain_roles; /* o.plaintext_roles with AUTO resolved */
    rpc_keyring *keys;    /* o.token_keys_file, or NULL: AuthRequest refused */
    rpc_cq *cq;
    struct event *cq_ev;
    struct event *sweep_ev;
    struct event *done_ev;
    rpc_conn *conns;        /* doubly linked */
    rpc_conn *dirty;        /* connections with responses queued this iteration (doubly linked) */
    struct event *flush_ev; /* writes the dirty connections' output (conn.c) */
    bool shutting_down;
    bool done_fired;
    uint64_t shutdown_deadline_ms; /* 0 = none */
    void (*done)(void *arg);
    void *done_arg;
    rpc_server_stats st;
    rpc_scratch scratch; /* requests are unpacked here (conn_process) */
    /* Out of descriptors (server.c): accepting pauses; the reserve sheds one waiting peer. */
    struct event *accept_ev; /* re-enables the listener after a pause */
    int reserve_fd;          /* /dev/null, closed to accept-and-refuse one connection */
    uint64_t accept_failures, accept_log_ms;
    rpc_accept_fn accept_hook; /* rpc_server_set_accept_hook, or NULL */
    void *accept_hook_arg;
    /* adopt_only: rpc_server_adopt writes descriptor numbers to adopt_pipe[1] */
    int adopt_pipe[2];
    struct event *adopt_ev;
};
/* Descriptors the server keeps beyond max_connections (startup check, server.c). */
#define RPC_FD_HEADROOM 64u

/* conn.c */
om_status rpc_conn_new(rpc_server *s, int fd, const struct sockaddr *sa, int salen, bool reject);
void rpc_conn_free(rpc_conn *c);
/* Periodic checks: idle, request timeouts, linger deadline. */
void rpc_conn_sweep(rpc_conn *c, uint64_t now_ms);
/* Stop reading and close once drained (shutdown). */
void rpc_conn_drain(rpc_conn *c);
/* Deliver an answer packed on another thread (loop thread; reply->conn != NULL). */
void rpc_conn_deliver_frame(rpc_reply *r);
/*
 * rpc_conn_flush_dirty -- write the output of every connection that queued
 * responses since the last call, one write(v) each, straight to the socket
 * (the flush_ev callback, run after the loop iteration's other callbacks).
 * Whatever the socket does not take is left to the bufferevent's EV_WRITE.
 */
void rpc_conn_flush_dirty(rpc_server *s);
/* Bytes waiting in the connection's output / input buffers. */
size_t rpc_conn_out_len(const rpc_conn *c);
size_t rpc_conn_in_len(const rpc_conn *c);
/* The connection's output buffer (loop thread). */
struct evbuffer *rpc_conn_out(rpc_conn *c);
/* Output was queued: write it at the end of this loop iteration. */
void rpc_conn_mark_dirty(rpc_conn *c);
/* Queue a response on the connection; a response too large becomes INTERNAL. */
void rpc_conn_queue_response(rpc_conn *c, const Objmeta__Response *resp);
/* Recompute whether to read, and close when the state says so (may free c). */
void rpc_conn_flow(rpc_conn *c);

/* reply.c */
/* A reply for request id, linked into c's in-flight list (loop thread; NULL: no memory). */
rpc_reply *rpc_reply_new(rpc_conn *c, uint64_t id, uint64_t now_ns);

/* reqlog.c: the request's id and operation into the reply (loop thread, at dispatch). */
void rpc_reply_take_request(rpc_reply *r, const Objmeta__Request *req);
/* reqlog.c: the name of a Request body case ("store"), "?" for none. */
const char *rpc_op_name(uint32_t op);
/* reqlog.c: the server's log options into its cq (at creation). */
void rpc_cq_reqlog_init(rpc_cq *q, uint32_t slow_request_ms, bool make_ids);
/* reqlog.c: the request's log line, as its answer (status, message) leaves; any thread. */
void reqlog_answered(rpc_reply *r, Objmeta__Status status, const char *msg, size_t msg_len);
/* The same for an encoded Response (status and message read from its top level). */
void reqlog_answered_encoded(rpc_reply *r, const uint8_t *p, size_t n);
/* Take a reply off its connection's in-flight list: it becomes orphaned (loop thread). */
void rpc_reply_unlink(rpc_reply *r);
/* Release a reply and its cq reference (any thread). */
void rpc_reply_destroy(rpc_reply *r);

/* token.c: bucket-scoped bearer tokens (format in token.c) */
#define RPC_TOKEN_KID_MAX 32u
#define RPC_KEYRING_MAX 16u
#define RPC_TOKEN_MAX_SCOPES 16u
#define RPC_TOKEN_PATTERN_MAX 63u
struct rpc_token {
    char subject[65];
    uint64_t expires_s; /* Unix seconds */
    size_t n;
    struct {
        char pattern[RPC_TOKEN_PATTERN_MAX + 1]; /* bucket, prefix ending in '*', or "*" */
        bool write;                              /* rw (else r) */
    } scope[RPC_TOKEN_MAX_SCOPES];
};
/* Load "<kid> <hex secret>" lines. OM_E_INVALID with the reason in err. */
om_status rpc_keyring_load(const char *path, rpc_keyring **out, char *err, size_t errlen);
void rpc_keyring_free(rpc_keyring *kr);
/* Check signature, expiry and form; fill *out. OM_E_INVALID with the reason in err. */
om_status rpc_token_verify(const rpc_keyring *kr, const char *tok, uint64_t now_s, rpc_token *out,
                           char *err, size_t errlen);
/* May the token read (write = false) or write bucket? */
bool rpc_token_allows(const rpc_token *t, const char *bucket, bool write);

/* tls.c */
struct event_base;
/* A server-side TLS bufferevent on an accepted fd (owns fd and SSL), or NULL. */
struct bufferevent *rpc_tls_bev_accept(rpc_tls *t, struct event_base *base, int fd);
/* A client-side TLS bufferevent to connect (bufferevent_socket_connect on
 * rpc_tls_socket_bev) that verifies the server's certificate against host;
 * NULL on failure. Both kinds start with EV_WRITE off: see rpc_tls_flush. */
struct bufferevent *rpc_tls_bev_connect(rpc_tls *t, struct event_base *base, const char *host);
/* The socket bufferevent under a TLS one (bev itself for a plaintext one). */
struct bufferevent *rpc_tls_socket_bev(struct bufferevent *bev);
/* Encrypt what the TLS bufferevent's output holds and write it to the
 * socket now (one writev); what the socket does not take, libevent writes
 * later, then runs bev's write callback. True when bytes were written. */
bool rpc_tls_flush(struct bufferevent *bev);
/* After the owner enabled EV_READ again: decrypt what arrived meanwhile
 * (buffered ciphertext raises no readiness event), in a deferred callback. */
void rpc_tls_kick(struct bufferevent *bev);
/* The roles of a verified peer certificate's OUs (0 without one); its CN into who. */
uint32_t rpc_tls_peer_roles(struct bufferevent *bev, char *who, size_t cap);
/* Why a TLS bufferevent failed, as text. */
void rpc_tls_bev_error(struct bufferevent *bev, char *buf, size_t cap);
/* Connections whose records our TLS 1.3 layer took over (rpc/tls_rec.h), process-wide. */
uint64_t rpc_tls_records_taken(void);
/* A server connection's handshake finished: its roles from the certificate. */
void rpc_tls_conn_ready(rpc_conn *c);
/* Its handshake failed: log why; a plaintext peer is told the port speaks TLS. */
void rpc_tls_conn_failed(rpc_conn *c);

/* wirecheck.c */
/*
 * rpc_wire_unpack_merged -- a Request whose operation body came in several
 * fragments (rpc_wire_check_strings' split_oneof), decoded again from the
 * merged encoding with the default allocator: req is released and *pa set
 * to NULL (rpc_scratch_done then frees the result). NULL when that fails.
 */
Objmeta__Request *rpc_wire_unpack_merged(rpc_scratch *sc, ProtobufCAllocator **pa,
                                         Objmeta__Request *req, om_slice p);

/* auth.c */
/*
 * rpc_auth_check -- may a connection holding `roles` send req?
 * Returns OM_OK; OM_E_UNAUTHENTICATED (roles == 0) or OM_E_PERMISSION with
 * the operation and the role it needs in err.
 */
om_status rpc_auth_check(const rpc_conn *c, const Objmeta__Request *req, char *err, size_t errlen);
/*
 * rpc_auth_token -- an AuthRequest on c: verify the token with the server's
 * keys and, on OK, make it the connection's (client role, its scopes) and
 * fill *out. Returns OM_OK; OM_E_UNAUTHENTICATED with the reason in err
 * (no keys configured, bad or expired token); OM_E_NOMEM.
 */
om_status rpc_auth_token(rpc_conn *c, const Objmeta__AuthRequest *a, Objmeta__AuthResponse *out,
                         char *err, size_t errlen);

/* server.c */
/* A connection left the server's list; fire `done` if shutting down and none are left. */
void rpc_server_conn_gone(rpc_server *s);

/* util.c */
/*
 * rpc_addr_split -- "host:port", "[v6]:port" -> host (without brackets) and port.
 * Returns OM_OK; OM_E_INVALID for a malformed address (message logged at DEBUG).
 */
om_status rpc_addr_split(const char *addr, char *host, size_t hostcap, int *port);
/* Resolve "host:port" to a socket address (first result of getaddrinfo). */
om_status rpc_addr_resolve(const char *addr, bool passive, struct sockaddr_storage *ss,
                           socklen_t *sslen);
/* "ip:port" of a socket address into buf. */
void rpc_addr_format(const struct sockaddr *sa, char *buf, size_t cap);
/*
 * rpc_ignore_sigpipe -- set SIGPIPE to SIG_IGN if it is at its default, once
 * per process: a write to a socket the peer closed must fail with EPIPE, not
 * kill the server. Called by rpc_server_new, rpc_client_new, rpc_http_open.
 */
void rpc_ignore_sigpipe(void);
/*
 * rpc_evb_write_direct -- write a socket bufferevent's output to its fd now,
 * one writev (evbuffer_write). A socket bufferevent keeps the front of its
 * output frozen so that only its own write callback drains it; this does what
 * that callback does: unfreeze, write, freeze again.
 * Returns the bytes written, or -1 (nothing written: full socket or error --
 * the caller leaves the rest to the bufferevent's EV_WRITE).
 */
int rpc_evb_write_direct(struct evbuffer *out, int fd);
/*
 * rpc_bev_read_direct -- make a socket bufferevent (with its fd set: after
 * bufferevent_socket_new on a socket, or after bufferevent_socket_connect)
 * read without libevent's FIONREAD ioctl. libevent asks the socket how many
 * bytes wait before every read, one system call in four of a pipeline-1
 * request; this read callback reads into the input's free space instead
 * (RPC_READ_FIRST bytes, then RPC_READ_NEXT again while a read fills what
 * it asked for, up to RPC_MAX_SINGLE_READ), then runs the read callback through
 * bufferevent_trigger, or on EOF or error disables reading and reports the
 * event, as libevent's does. Enabling, disabling and suspending reading are
 * libevent's as before (the same event, another callback). No read
 * watermark, rate limit or read timeout may be set on bev.
 */
void rpc_bev_read_direct(struct bufferevent *bev);
/* Disable Nagle (best effort). */
void rpc_sock_nodelay(int fd);
/* Port of a bound socket; 0 on error. */
int rpc_sock_port(int fd);

#endif /* OM_RPC_RPC_INT_H */
