/*
 * tests/security/sec_util.h -- helpers shared by the security suites
 * (it_security.c, it_tls.c, it_limits.c) against the real objmeta-shard and
 * objmeta-coord.
 *
 * Thread-safety: test code; single-threaded.
 */
#ifndef OM_TESTS_SECURITY_SEC_UTIL_H
#define OM_TESTS_SECURITY_SEC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "it_util.h"

#define BUCKET "my-bucket"

/* A protobuf message written by hand (protobuf-c cannot put a NUL in a string). */
typedef struct pbw {
    uint8_t b[4096];
    size_t n;
} pbw;
void pb_varint(pbw *w, uint64_t v);
void pb_lenfield(pbw *w, unsigned field, const void *p, size_t n);

/* A Request {id, body field `op` = {bucket (1), key (2)[, data (3)]}} framed and sent. */
void send_raw_keyed(int fd, uint64_t id, unsigned op, const char *bucket, size_t blen,
                    const char *key, size_t klen, const char *data);
/* The next Response (fails the test without one within 10 s). */
Objmeta__Response *recv_ok(int fd);
/* The next Response has this id and status, and its message contains needle (NULL: any). */
void expect_status(int fd, uint64_t id, Objmeta__Status want, const char *needle);
/* Store bucket/key = data, expecting OK. */
void store(int fd, uint64_t id, const char *bucket, const char *key, const char *data);
/* Retrieve bucket/key, expecting OK and the data `want`. */
void expect_data(int fd, uint64_t id, const char *bucket, const char *key, const char *want);
/* Send req (id set here) and expect `want` with a message containing needle. */
void call_expect(int fd, Objmeta__Request *req, uint64_t id, Objmeta__Status want,
                 const char *needle);

/* objmeta-shard with --id and --plaintext-roles (sync-mode none). */
tu_proc *start_shard(const char *id, const char *roles);
/* objmeta-coord in front of one shard (s1), with --plaintext-roles. */
tu_proc *start_coord(const tu_proc *shard, const char *roles);
/* start_coord with one more argument (NULL: none). */
tu_proc *start_coord_with(const tu_proc *shard, const char *roles, const char *more);
/* Stop and free; the process must exit 0. */
void stop(tu_proc *p);

/* Send a request and check its answer, over some connection (ctx). */
typedef void (*expect_fn)(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want,
                          const char *needle);
/* expect_fn over a raw socket (ctx: int *fd). */
void fd_expect(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want,
               const char *needle);
/* Every admin (if admin) and peer (if peer) operation, forced versions included, answered want. */
void privileged_refused_on(expect_fn send, void *ctx, Objmeta__Status want, bool admin, bool peer);
/* All of them over a raw socket. */
void privileged_refused(int fd, Objmeta__Status want);

/* A token key file with key k1 (scripts/gen-token.sh key); its path. */
const char *token_keys(void);
/* A token signed with k1 for subject, TTL seconds and scopes (heap string). */
char *mint(const char *subject, const char *ttl, const char *scopes);

/* Lines of a file that contain needle. */
size_t count_lines_with(const char *path, const char *needle);

#endif /* OM_TESTS_SECURITY_SEC_UTIL_H */
