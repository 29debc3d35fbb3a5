/*
 * tests/shard/it_util.h -- helpers for the shard integration suites: start a
 * real objmeta-shard, raw TCP sockets for the bad-input tests, frames through
 * rpc's frame codec, a minimal HTTP GET, and a blocking client connection.
 *
 * Thread-safety: test code; the socket helpers may be used from several
 * threads on different sockets.
 */
#ifndef OM_TESTS_SHARD_IT_UTIL_H
#define OM_TESTS_SHARD_IT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"
#include "rpc/rpc.h"
#include "tu.h"

/* A Store of bucket/key = data on c routed by ring epoch `epoch` (0 = none); returns the
 * answer's status, its message in msg (fails the test if no answer comes in 5 s). */
Objmeta__Status it_store_at_epoch(rpc_sync_client *c, const char *bucket, const char *key,
                                  const char *data, uint64_t epoch, char *msg, size_t cap);
/* Start objmeta-shard ($OBJMETA_SHARD) with the harness; extra is NULL-terminated or NULL. */
tu_proc *it_start_shard(const char *data_dir, const char *const *extra);
/* "127.0.0.1:<rpc port>" in a static buffer per process (valid until the next call). */
const char *it_addr(const tu_proc *p);
/* A connected client to p; fails the test if it cannot connect. */
omc_client *it_client(const tu_proc *p);

/* A TCP connection to 127.0.0.1:port (fails the test on error). */
int it_sock(int port);
/* Write all bytes (false on error). */
bool it_send(int fd, const void *p, size_t n);
/* Frame and send a Request. */
bool it_send_request(int fd, const Objmeta__Request *req);
/*
 * Read one Response with a deadline. Returns it (objmeta__response__free_unpacked)
 * or NULL on EOF, error or timeout.
 */
Objmeta__Response *it_recv_response(int fd, int timeout_ms);
/* True if the peer closes the connection within timeout_ms (reading and discarding). */
bool it_wait_closed(int fd, int timeout_ms);

/* GET path on 127.0.0.1:port; returns the HTTP status and the body in *body (malloc'd). */
int it_http_get(int port, const char *path, char **body);

/*
 * The value of one series on a /metrics page: `series` is its whole name,
 * labels included (objmeta_shard_loop_requests_total{loop="1"}); -1 if the
 * page has no line starting with it.
 */
double it_metric(const char *body, const char *series);

/* Fail the test unless the server answers a ping and a store/retrieve round trip. */
void it_check_alive(const tu_proc *p);

/*
 * `objmeta [--addr coord] admin verify FLAG VALUE` ($OBJMETA_CLI; coord NULL:
 * none, for --shards) until it exits 0 finding the replicas identical; fails
 * the test after 20 s (a backup applies the last groups a moment late).
 */
void it_verify_identical(const char *coord, const char *flag, const char *value);

#endif /* OM_TESTS_SHARD_IT_UTIL_H */
