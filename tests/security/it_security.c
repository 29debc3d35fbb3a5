/*
 * tests/security/it_security.c -- the trust boundary (issue 13) against the
 * real objmeta-shard and objmeta-coord processes, over raw sockets:
 *
 *   nul          a NUL inside any string field (key, bucket, a shard id
 *                nested in SetRing) is refused INVALID_ARGUMENT naming the
 *                field, on shard and coordinator, and writes nothing (D1)
 *   roles        with plaintext-roles=client every admin and peer request,
 *                and a Store or Delete carrying forced_version, gets
 *                PERMISSION_DENIED and changes nothing (D2, D4); the data
 *                operations still work
 *   no-role      with plaintext-roles=none every request gets
 *                UNAUTHENTICATED
 *   forged-ring  a ring whose epoch jumps far ahead of the held one is
 *                refused by the shard, even from a peer, and the cluster
 *                keeps serving (D4)
 *   split body   a Store whose body comes in two fragments is merged
 *   list tokens  a continuation token forged without the secret is refused
 *   tokens       bucket-scoped tokens across all six data operations,
 *                through a shard and through a coordinator
 * TLS is in it_tls.c, resource limits in it_limits.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "sec_util.h"
#include "util/base64url.h"
#include "util/checksum.h"
#include "util/coding.h"

/* ------------------------------------------------------------------------ */
/* D1: NUL inside strings                                                      */

static void
nul_checks(int port)
{
    int fd = it_sock(port);

    store(fd, 1, BUCKET, "photo", "ORIGINAL");
    send_raw_keyed(fd, 2, OBJMETA__REQUEST__BODY_STORE, BUCKET, strlen(BUCKET), "photo\0evil", 10,
                   "EVIL");
    expect_status(fd, 2, OBJMETA__STATUS__INVALID_ARGUMENT, "store.key");
    expect_data(fd, 3, BUCKET, "photo", "ORIGINAL");
    send_raw_keyed(fd, 4, OBJMETA__REQUEST__BODY_STORE, "nul-bucket\0junk", 15, "k", 1, "EVIL");
    expect_status(fd, 4, OBJMETA__STATUS__INVALID_ARGUMENT, "store.bucket");
    send_raw_keyed(fd, 5, OBJMETA__REQUEST__BODY_RETRIEVE, BUCKET, strlen(BUCKET), "photo\0zzz", 9,
                   NULL);
    expect_status(fd, 5, OBJMETA__STATUS__INVALID_ARGUMENT, "retrieve.key");
    send_raw_keyed(fd, 6, OBJMETA__REQUEST__BODY_DELETE, BUCKET, strlen(BUCKET), "photo\0x", 7,
                   NULL);
    expect_status(fd, 6, OBJMETA__STATUS__INVALID_ARGUMENT, "delete.key");
    send_raw_keyed(fd, 7, OBJMETA__REQUEST__BODY_LIST, BUCKET, strlen(BUCKET), "ph\0", 3, NULL);
    expect_status(fd, 7, OBJMETA__STATUS__INVALID_ARGUMENT, "list.prefix");
    /* the connection still works, and nothing was written */
    expect_data(fd, 8, BUCKET, "photo", "ORIGINAL");
    send_raw_keyed(fd, 9, OBJMETA__REQUEST__BODY_HEAD, "nul-bucket", 10, "k", 1, NULL);
    expect_status(fd, 9, OBJMETA__STATUS__NOT_FOUND, NULL);
    close(fd);
}

START_TEST(nul_in_strings_refused)
{
    tu_proc *sh = start_shard("s1", "auto");
    tu_proc *co = start_coord(sh, "auto");
    int fd;

    nul_checks(tu_proc_port(sh, "rpc"));
    nul_checks(tu_proc_port(co, "rpc"));

    /* nested: SetRing { ring { shards { id = "s1\0x" } } } */
    {
        pbw shard = {.n = 0}, ring = {.n = 0}, sr = {.n = 0}, req = {.n = 0};
        uint8_t hdr[4];
        pb_lenfield(&shard, 1, "s1\0x", 4);
        pb_lenfield(&shard, 2, "127.0.0.1:1", 11);
        pb_varint(&ring, 1 << 3);
        pb_varint(&ring, 99);
        pb_lenfield(&ring, 3, shard.b, shard.n);
        pb_lenfield(&sr, 1, ring.b, ring.n);
        pb_varint(&req, 1 << 3);
        pb_varint(&req, 42);
        pb_lenfield(&req, OBJMETA__REQUEST__BODY_SET_RING, sr.b, sr.n);
        om_put_be32(hdr, (uint32_t)req.n);
        fd = it_sock(tu_proc_port(sh, "rpc"));
        ck_assert(it_send(fd, hdr, 4) && it_send(fd, req.b, req.n));
        expect_status(fd, 42, OBJMETA__STATUS__INVALID_ARGUMENT, "set_ring.ring.shards.id");
        close(fd);
    }
    /* the replica group bodies too: AddGroup { replicas { id = "a\0x" } } to the coordinator */
    {
        pbw spec = {.n = 0}, ag = {.n = 0}, req = {.n = 0};
        uint8_t hdr[4];
        pb_lenfield(&spec, 1, "a\0x", 3);
        pb_lenfield(&spec, 2, "127.0.0.1:1", 11);
        pb_lenfield(&ag, 1, "g1", 2);
        pb_lenfield(&ag, 2, spec.b, spec.n);
        pb_varint(&req, 1 << 3);
        pb_varint(&req, 43);
        pb_lenfield(&req, OBJMETA__REQUEST__BODY_ADD_GROUP, ag.b, ag.n);
        om_put_be32(hdr, (uint32_t)req.n);
        fd = it_sock(tu_proc_port(co, "rpc"));
        ck_assert(it_send(fd, hdr, 4) && it_send(fd, req.b, req.n));
        expect_status(fd, 43, OBJMETA__STATUS__INVALID_ARGUMENT, "add_group.replicas.id");
        close(fd);
    }
    stop(co);
    stop(sh);
}
END_TEST

/* A Store whose body arrives in two fragments is merged (protobuf), not cut to the last one. */
START_TEST(split_body_merged)
{
    tu_proc *sh = start_shard("s1", "auto");
    int fd = it_sock(tu_proc_port(sh, "rpc"));
    pbw a = {.n = 0}, b = {.n = 0}, req = {.n = 0};
    uint8_t hdr[4];

    pb_lenfield(&a, 1, BUCKET, strlen(BUCKET));
    pb_lenfield(&a, 2, "split", 5);
    pb_lenfield(&b, 3, "DATA", 4);
    pb_varint(&req, 1 << 3);
    pb_varint(&req, 1);
    pb_lenfield(&req, OBJMETA__REQUEST__BODY_STORE, a.b, a.n);
    pb_lenfield(&req, OBJMETA__REQUEST__BODY_STORE, b.b, b.n);
    om_put_be32(hdr, (uint32_t)req.n);
    ck_assert(it_send(fd, hdr, 4) && it_send(fd, req.b, req.n));
    expect_status(fd, 1, OBJMETA__STATUS__OK, NULL);
    expect_data(fd, 2, BUCKET, "split", "DATA");
    close(fd);
    stop(sh);
}
END_TEST

/*
 * A shard continuation token made by someone who knows the format but not
 * the shard's secret: the old layout (checksum instead of a MAC) and the
 * new one with a made-up tag are both refused.
 */
static char *
forged_list_token(uint8_t version, const char *bucket, const char *resume)
{
    om_buf bind = OM_BUF_INIT, raw = OM_BUF_INIT, text = OM_BUF_INIT;

    ck_assert_int_eq(om_buf_put_lenpref(&bind, om_slice_from_str(bucket)), OM_OK);
    ck_assert_int_eq(om_buf_put_lenpref(&bind, om_slice_from_str("")), OM_OK);
    ck_assert_int_eq(om_buf_put_lenpref(&bind, om_slice_from_str("")), OM_OK);
    ck_assert_int_eq(om_buf_append_byte(&raw, version), OM_OK);
    ck_assert_int_eq(om_buf_put_fixed64(&raw, om_hash64(bind.p, bind.n)), OM_OK);
    ck_assert_int_eq(om_buf_put_lenpref(&raw, om_slice_from_str(resume)), OM_OK);
    if (version == 1) {
        ck_assert_int_eq(om_buf_put_fixed32(&raw, om_checksum32(raw.p, raw.n)), OM_OK);
    } else {
        uint8_t tag[RPC_MAC_LEN] = {0};
        ck_assert_int_eq(om_buf_append(&raw, tag, sizeof(tag)), OM_OK);
    }
    ck_assert_int_eq(om_base64url_encode(om_buf_slice(&raw), &text), OM_OK);
    ck_assert_int_eq(om_buf_append_byte(&text, 0), OM_OK);
    om_buf_free(&bind);
    om_buf_free(&raw);
    return (char *)text.p;
}

START_TEST(forged_list_token_refused)
{
    tu_proc *sh = start_shard("s1", "auto");
    int fd = it_sock(tu_proc_port(sh, "rpc"));
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest l = OBJMETA__LIST_REQUEST__INIT;

    store(fd, 1, BUCKET, "a", "1");
    l.bucket = (char *)BUCKET;
    q.body_case = OBJMETA__REQUEST__BODY_LIST;
    q.list = &l;
    for (uint8_t v = 1; v <= 2; v++) {
        char *tok = forged_list_token(v, BUCKET, "a");
        l.continuation_token = tok;
        call_expect(fd, &q, 10 + v, OBJMETA__STATUS__INVALID_ARGUMENT, "continuation_token");
        free(tok);
    }
    close(fd);
    stop(sh);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Roles                                                                       */

START_TEST(client_role_refused_admin_and_peer)
{
    tu_proc *sh = start_shard("s1", "client");
    int fd = it_sock(tu_proc_port(sh, "rpc"));

    store(fd, 1, BUCKET, "fv", "first");
    privileged_refused(fd, OBJMETA__STATUS__PERMISSION_DENIED);
    /* D2: the forced store was not applied; versions did not jump */
    expect_data(fd, 2, BUCKET, "fv", "first");
    store(fd, 3, BUCKET, "fv", "second");
    expect_data(fd, 4, BUCKET, "fv", "second");
    close(fd);
    stop(sh);
}
END_TEST

START_TEST(coordinator_client_role_refused)
{
    tu_proc *sh = start_shard("s1", "auto");
    tu_proc *co = start_coord(sh, "client");
    int fd = it_sock(tu_proc_port(co, "rpc"));

    store(fd, 1, BUCKET, "fv", "first");
    privileged_refused(fd, OBJMETA__STATUS__PERMISSION_DENIED);
    expect_data(fd, 2, BUCKET, "fv", "first");
    close(fd);
    stop(co);
    stop(sh);
}
END_TEST

START_TEST(no_role_unauthenticated)
{
    tu_proc *sh = start_shard("s1", "none");
    int fd = it_sock(tu_proc_port(sh, "rpc"));
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;

    send_raw_keyed(fd, 1, OBJMETA__REQUEST__BODY_STORE, BUCKET, strlen(BUCKET), "k", 1, "v");
    expect_status(fd, 1, OBJMETA__STATUS__UNAUTHENTICATED, "store needs a credential");
    send_raw_keyed(fd, 2, OBJMETA__REQUEST__BODY_RETRIEVE, BUCKET, strlen(BUCKET), "k", 1, NULL);
    expect_status(fd, 2, OBJMETA__STATUS__UNAUTHENTICATED, NULL);
    q.body_case = OBJMETA__REQUEST__BODY_PING;
    q.ping = &ping;
    call_expect(fd, &q, 3, OBJMETA__STATUS__UNAUTHENTICATED, NULL);
    privileged_refused(fd, OBJMETA__STATUS__UNAUTHENTICATED);
    close(fd);
    stop(sh);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* D4: a forged ring                                                          */

/* The ring epoch a shard holds (GetRing; 0 = none). */
static uint64_t
held_epoch(int fd, uint64_t id)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *r;
    uint64_t e;

    q.id = id;
    q.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    q.get_ring = &gr;
    ck_assert(it_send_request(fd, &q));
    r = recv_ok(fd);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
    e = r->get_ring != NULL && r->get_ring->ring != NULL ? r->get_ring->ring->epoch : 0;
    objmeta__response__free_unpacked(r, NULL);
    return e;
}

START_TEST(forged_ring_refused)
{
    tu_proc *sh = start_shard("s1", "auto");
    tu_proc *co = start_coord(sh, "auto");
    int sfd = it_sock(tu_proc_port(sh, "rpc")), cfd = it_sock(tu_proc_port(co, "rpc"));
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Response *r;
    uint64_t held = 0, deadline = tu_now_ms() + 10000;

    /* the coordinator installs its ring on the shard within a probe or two */
    while ((held = held_epoch(sfd, 1)) == 0 && tu_now_ms() < deadline)
        usleep(20000);
    ck_assert_uint_gt(held, 0);
    q.id = 2;
    q.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    q.get_ring = &gr;
    ck_assert(it_send_request(cfd, &q));
    r = recv_ok(cfd);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
    r->get_ring->ring->epoch = 1ull << 62;
    sr.ring = r->get_ring->ring;
    q.get_ring = NULL;
    q.body_case = OBJMETA__REQUEST__BODY_SET_RING;
    q.set_ring = &sr;
    call_expect(sfd, &q, 3, OBJMETA__STATUS__INVALID_ARGUMENT, "ahead of the held epoch");
    objmeta__response__free_unpacked(r, NULL);
    ck_assert_uint_eq(held_epoch(sfd, 4), held);
    /* the coordinator keeps routing to the shard */
    store(cfd, 5, BUCKET, "after", "forged");
    expect_data(cfd, 6, BUCKET, "after", "forged");
    close(sfd);
    close(cfd);
    stop(co);
    stop(sh);
}
END_TEST

/* ------------------------------------------------------------------------ */
static void
auth_expect(int fd, uint64_t id, const char *token, Objmeta__Status want, const char *needle)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__AuthRequest a = OBJMETA__AUTH_REQUEST__INIT;

    a.token = (char *)token;
    q.body_case = OBJMETA__REQUEST__BODY_AUTH;
    q.auth = &a;
    call_expect(fd, &q, id, want, needle);
}

/* The six data operations on bucket/key (store first, delete last): allowed
 * ones answer OK or NOT_FOUND, the others PERMISSION_DENIED naming the bucket. */
static void
six_ops(int fd, uint64_t id, const char *bucket, bool read_ok, bool write_ok)
{
    static const unsigned ops[] = {OBJMETA__REQUEST__BODY_STORE, OBJMETA__REQUEST__BODY_RETRIEVE,
                                   OBJMETA__REQUEST__BODY_HEAD,  OBJMETA__REQUEST__BODY_EXISTS,
                                   OBJMETA__REQUEST__BODY_LIST,  OBJMETA__REQUEST__BODY_DELETE};
    const char *key = "obj";

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        bool write =
            ops[i] == OBJMETA__REQUEST__BODY_STORE || ops[i] == OBJMETA__REQUEST__BODY_DELETE;
        bool ok = write ? write_ok : read_ok, list = ops[i] == OBJMETA__REQUEST__BODY_LIST;
        send_raw_keyed(fd, id + i, ops[i], bucket, strlen(bucket), list ? "" : key,
                       list ? 0 : strlen(key),
                       ops[i] == OBJMETA__REQUEST__BODY_STORE ? "data" : NULL);
        Objmeta__Response *r = recv_ok(fd);
        ck_assert_uint_eq(r->id, id + i);
        if (ok)
            ck_assert_msg(
                r->status == OBJMETA__STATUS__OK || r->status == OBJMETA__STATUS__NOT_FOUND,
                "%s op %u: %s (%s)", bucket, ops[i], rpc_proto_status_name(r->status), r->message);
        else
            ck_assert_msg(r->status == OBJMETA__STATUS__PERMISSION_DENIED &&
                              strstr(r->message, bucket) != NULL,
                          "%s op %u: %s (%s), want PERMISSION_DENIED", bucket, ops[i],
                          rpc_proto_status_name(r->status), r->message);
        objmeta__response__free_unpacked(r, NULL);
    }
}

static void
token_checks(int port)
{
    char *rw = mint("alice", "3600", "bucket-a=rw,logs-*=r"),
         *ro = mint("bob", "3600", "bucket-*=r");
    char *old = mint("carol", "0", "*=rw"), *forged = strdup(rw);
    int fd = it_sock(port), fd2;
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest stats = OBJMETA__STATS_REQUEST__INIT;

    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
    send_raw_keyed(fd, 1, OBJMETA__REQUEST__BODY_STORE, "bucket-a", 8, "obj", 3, "data");
    expect_status(fd, 1, OBJMETA__STATUS__UNAUTHENTICATED, NULL);
    auth_expect(fd, 2, forged, OBJMETA__STATUS__UNAUTHENTICATED, "bad signature");
    auth_expect(fd, 3, old, OBJMETA__STATUS__UNAUTHENTICATED, "expired");
    /* widening the scope breaks the signature */
    char *wide = strdup(rw);
    memcpy(strstr(wide, "bucket-a=rw"), "bucket-*=rw", 11);
    auth_expect(fd, 4, wide, OBJMETA__STATUS__UNAUTHENTICATED, "bad signature");
    send_raw_keyed(fd, 5, OBJMETA__REQUEST__BODY_RETRIEVE, "bucket-a", 8, "obj", 3, NULL);
    expect_status(fd, 5, OBJMETA__STATUS__UNAUTHENTICATED, NULL);

    auth_expect(fd, 6, rw, OBJMETA__STATUS__OK, NULL);
    six_ops(fd, 10, "bucket-a", true, true);
    six_ops(fd, 20, "bucket-b", false, false);
    /* logs-* is read-only: reads go through (NOT_FOUND: nothing there), writes do not */
    send_raw_keyed(fd, 30, OBJMETA__REQUEST__BODY_HEAD, "logs-1", 6, "obj", 3, NULL);
    expect_status(fd, 30, OBJMETA__STATUS__NOT_FOUND, NULL);
    send_raw_keyed(fd, 31, OBJMETA__REQUEST__BODY_STORE, "logs-1", 6, "obj", 3, "x");
    expect_status(fd, 31, OBJMETA__STATUS__PERMISSION_DENIED, "write access");
    q.body_case = OBJMETA__REQUEST__BODY_STATS;
    q.stats = &stats;
    call_expect(fd, &q, 32, OBJMETA__STATUS__PERMISSION_DENIED, "admin");
    store(fd, 33, "bucket-a", "kept", "by-alice");

    fd2 = it_sock(port);
    auth_expect(fd2, 1, ro, OBJMETA__STATUS__OK, NULL);
    expect_data(fd2, 2, "bucket-a", "kept", "by-alice");
    six_ops(fd2, 10, "bucket-a", true, false);
    six_ops(fd2, 20, "other-bucket", false, false);
    close(fd2);
    close(fd);
    free(rw);
    free(ro);
    free(old);
    free(forged);
    free(wide);
}

START_TEST(tokens_scope_buckets)
{
    char keys[700], rolearg[] = "--plaintext-roles=none";
    const char *keysfile = token_keys();
    const char *extra[] = {"--sync-mode=none", "--id=s1", rolearg, keys, NULL};
    tu_proc *sh, *co;

    snprintf(keys, sizeof(keys), "--token-keys=%s", keysfile);
    sh = it_start_shard(NULL, extra);
    token_checks(tu_proc_port(sh, "rpc"));
    stop(sh);

    /* through a coordinator whose clients hold tokens (its shard trusts it on loopback) */
    sh = start_shard("s1", "auto");
    {
        char shards[128];
        const char *cx[] = {shards, rolearg, keys, "--health-interval=100ms", NULL};
        tu_proc_opts o = {.extra = cx};
        snprintf(shards, sizeof(shards), "--shards=s1=%s", it_addr(sh));
        co = tu_proc_start("$OBJMETA_COORD", &o);
    }
    token_checks(tu_proc_port(co, "rpc"));
    stop(co);
    stop(sh);
}
END_TEST

static Suite *
security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc;

    tc = tcase_create("boundary");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, nul_in_strings_refused);
    tcase_add_test(tc, split_body_merged);
    tcase_add_test(tc, forged_list_token_refused);
    tcase_add_test(tc, client_role_refused_admin_and_peer);
    tcase_add_test(tc, coordinator_client_role_refused);
    tcase_add_test(tc, no_role_unauthenticated);
    tcase_add_test(tc, forged_ring_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("tokens");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tokens_scope_buckets);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(security_suite());
}
