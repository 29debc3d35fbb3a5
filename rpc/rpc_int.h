/*
 * rpc/rpc_int.h -- private structures shared by server.c and conn.c, and
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
struct event;
struct evconnlistener;

typedef struct rpc_conn rpc_conn;
typedef struct rpc_cq rpc_cq;

struct rpc_reply {
    /* Immutable after creation (read by any thread). */
    rpc_cq *cq;
    uint64_t id;
    uint64_t start_ms;
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
};

typedef enum conn_state {
    CONN_OPEN,     /* reading and dispatching */
    CONN_DRAINING, /* no more reads (shutdown or peer EOF); close when answered and flushed */
    CONN_FLUSHING, /* an error response is going out; then linger */
    CONN_LINGER,   /* write side shut; discard input until EOF or deadline */
} conn_state;

struct rpc_conn {
    rpc_server *srv;
    struct bufferevent *bev;
    rpc_conn *prev, *next; /* server's connection list */
    rpc_reply *in_head, *in_tail;
    uint32_t ninflight;
    conn_state state;
    bool counted;       /* counts against max_connections */
    bool read_enabled;  /* EV_READ currently enabled by us */
    bool out_blocked;   /* over out_high_water until out_low_water */
    bool in_dispatch;   /* conn_process is on the stack */
    bool peer_eof;      /* the peer half-closed; answer what was read, then close */
    bool free_deferred; /* free when conn_process unwinds */
    uint64_t last_active_ms;
    uint64_t state_since_ms;
    char peer[64];
};

struct rpc_server {
    struct event_base *base;
    rpc_server_opts o;
    char *listen_str;
    rpc_handler_fn handler;
    void *handler_arg;
    struct evconnlistener *lis;
    int port;
    rpc_cq *cq;
    struct event *cq_ev;
    struct event *sweep_ev;
    struct event *done_ev;
    rpc_conn *conns; /* doubly linked */
    bool shutting_down;
    bool done_fired;
    uint64_t shutdown_deadline_ms; /* 0 = none */
    void (*done)(void *arg);
    void *done_arg;
    rpc_server_stats st;
};

/* conn.c */
om_status rpc_conn_new(rpc_server *s, int fd, const struct sockaddr *sa, int salen, bool reject);
void rpc_conn_free(rpc_conn *c);
/* Periodic checks: idle, request timeouts, linger deadline. */
void rpc_conn_sweep(rpc_conn *c, uint64_t now_ms);
/* Stop reading and close once drained (shutdown). */
void rpc_conn_drain(rpc_conn *c);
/* Deliver an answer packed on another thread (loop thread; reply->conn != NULL). */
void rpc_conn_deliver_frame(rpc_reply *r);
/* Bytes waiting in the connection's output / input buffers. */
size_t rpc_conn_out_len(const rpc_conn *c);
size_t rpc_conn_in_len(const rpc_conn *c);
/* Release a reply and its cq reference (any thread). */
void rpc_reply_destroy(rpc_reply *r);

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
/* Disable Nagle (best effort). */
void rpc_sock_nodelay(int fd);
/* Port of a bound socket; 0 on error. */
int rpc_sock_port(int fd);

#endif /* OM_RPC_RPC_INT_H */
