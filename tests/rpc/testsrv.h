/*
 * tests/rpc/testsrv.h -- the in-process test server and socket helpers shared
 * by the rpc integration suites (test_rpc.c, test_rpc_client.c).
 *
 * The test server answers Ping only, steered by the payload:
 *   "hold"       kept until "release" (or the 'r' control command): then a
 *                worker thread answers all held ones -- after "release",
 *                which is answered at once (out of order, off the loop)
 *   "worker..."  answered by the worker thread (echo); "worker-packed..."
 *                through rpc_reply_send_packed
 *   "packed..."  echoed at once through rpc_reply_send_packed (a Response
 *                packed with id 0 by rpc_response_pack)
 *   "never"      never answered while the server lives (request timeouts);
 *                answered after rpc_server_free (the dead-queue path)
 *   "big:N"      answered with an N-byte payload
 *   "openssl-error" echoed, leaving an error in the loop thread's OpenSSL
 *                error queue (what a failed OpenSSL call elsewhere leaves)
 *   anything else: echoed at once from the handler
 * It runs its own event_base in a thread; the test thread steers it through
 * a control pipe (tsrv_cmd: 'g' stats snapshot, 's' graceful shutdown, 'r'
 * release held requests, 'q' quit), so nothing sleeps to synchronise: waits
 * poll a condition with a deadline.
 *
 * Thread-safety: test code; the fields below are written by the server
 * thread before `ready` and read by the test thread after it.
 */
#ifndef OM_TESTS_RPC_TESTSRV_H
#define OM_TESTS_RPC_TESTSRV_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc/rpc.h"

#define MAX_HELD 256

typedef struct work {
    rpc_reply *reply;
    char *payload;
    struct work *next;
} work;

typedef struct tsrv {
    rpc_server_opts o;
    char listen[64];
    pthread_t thr, wthr;
    struct event_base *base;
    rpc_server *srv;
    rpc_http *http;
    struct event *ctl_ev;
    int ctl[2];
    int port, http_port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, exited, drained;
    om_status start_st;
    rpc_server_stats stats;
    uint64_t stats_gen;
    /* loop-owned */
    rpc_reply *held[MAX_HELD];
    int nheld;
    rpc_reply *never[MAX_HELD];
    int nnever;
    /* worker queue (under mu) */
    work *wq_head, *wq_tail;
    bool wstop;
    pthread_cond_t wcv;
    atomic_int unhealthy;
    rpc_hist ping_hist;
    /* with `hints` (set before tsrv_start_opts' server starts): the read-ahead
     * hints (rpc_server_set_prefetch) as "bucket/key\n" lines, under mu */
    bool hints;
    char *hint_log;
    size_t hint_log_n, hint_log_cap;
    unsigned hint_calls;
} tsrv;

typedef struct cres {
    int *done;
    int *order;
    int seq;
    om_status st;
    Objmeta__Status status;
    char payload[64];
    char message[256];
} cres;

/* A condition on the server's counters, for tsrv_wait. */
typedef bool (*stats_pred)(const rpc_server_stats *st, uint64_t arg);

/* The test server's handler (see above); arg is the tsrv. */
void tsrv_handler(void *arg, const Objmeta__Request *req, rpc_reply *reply);
/* Start a server (port 0 unless o->listen names one) and its HTTP side; fails the test on error. */
tsrv *tsrv_start_opts(const rpc_server_opts *o);
/* tsrv_start_opts with the read-ahead hints recorded in t->hint_log. */
tsrv *tsrv_start_hints(const rpc_server_opts *o);
tsrv *tsrv_start(void);
/* Send a control command to the loop thread ('g', 's', 'r', 'q'). */
void tsrv_cmd(tsrv *t, char c);
/* A snapshot of the server's counters, taken on the loop thread. */
void tsrv_stats(tsrv *t, rpc_server_stats *out);
/* Join the loop thread (after 'q' or a drained shutdown) and the worker; frees t. */
void tsrv_join(tsrv *t);
/* 'q' then tsrv_join. */
void tsrv_stop(tsrv *t);
/* Poll the counters until pred(st, arg) holds (true) or timeout_ms passes (false). */
bool tsrv_wait(tsrv *t, stats_pred pred, uint64_t arg, uint64_t timeout_ms, rpc_server_stats *last);
bool pred_conns_eq(const rpc_server_stats *st, uint64_t n);
bool pred_inflight_eq(const rpc_server_stats *st, uint64_t n);
bool pred_pauses(const rpc_server_stats *st, uint64_t n);
bool pred_idle_closes(const rpc_server_stats *st, uint64_t n);
/* Raw loopback sockets with 5 s send/receive timeouts; -1 if the connect fails. */
int raw_connect(int port);
void raw_send(int fd, const void *p, size_t n);
void raw_send_req(int fd, const Objmeta__Request *r);
/* One response, or NULL at EOF/reset. */
Objmeta__Response *raw_recv(int fd);
/* True when the peer closes within the receive timeout. */
bool raw_sees_close(int fd);
void ping_req(Objmeta__Request *r, Objmeta__PingRequest *p, const char *payload);
/* A blocking ping on a fresh connection succeeds (the server still serves). */
void assert_serves(int port);
/* Async client plumbing: cres_cb records one result; client_base makes a base
 * with a 20 ms tick so run_until can check its deadline. */
void cres_cb(void *arg, om_status st, const Objmeta__Response *resp);
struct event_base *client_base(struct event **tick);
bool run_until(struct event_base *b, const int *done, int want, uint64_t timeout_ms);
void async_call(rpc_client *c, const char *payload, uint32_t timeout_ms, cres *r);

#endif /* OM_TESTS_RPC_TESTSRV_H */
