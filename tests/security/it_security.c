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
 *   descriptors  a shard refuses to start when RLIMIT_NOFILE cannot hold
 *                max-connections; out of descriptors under load it backs
 *                off (little CPU, a few log lines) and serves again once
 *                descriptors are free (D3)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "it_util.h"
#include "util/base64url.h"
#include "util/checksum.h"
#include "util/coding.h"

#define BUCKET "my-bucket"

/* ------------------------------------------------------------------------ */
/* Hand-made protobuf (protobuf-c cannot put a NUL inside a string)           */

typedef struct pbw {
    uint8_t b[4096];
    size_t n;
} pbw;

static void
pb_varint(pbw *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void
pb_lenfield(pbw *w, unsigned field, const void *p, size_t n)
{
    ck_assert_uint_lt(w->n + n + 16, sizeof(w->b));
    pb_varint(w, ((uint64_t)field << 3) | 2);
    pb_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* A Request {id, body field `op` = {bucket (1), key (2)[, data (3)]}} framed and sent. */
static void
send_raw_keyed(int fd, uint64_t id, unsigned op, const char *bucket, size_t blen, const char *key,
               size_t klen, const char *data)
{
    pbw body = {.n = 0}, req = {.n = 0};
    uint8_t hdr[4];

    pb_lenfield(&body, 1, bucket, blen);
    pb_lenfield(&body, 2, key, klen);
    if (data != NULL)
        pb_lenfield(&body, 3, data, strlen(data));
    pb_varint(&req, 1 << 3);
    pb_varint(&req, id);
    pb_lenfield(&req, op, body.b, body.n);
    om_put_be32(hdr, (uint32_t)req.n);
    ck_assert(it_send(fd, hdr, sizeof(hdr)));
    ck_assert(it_send(fd, req.b, req.n));
}

static Objmeta__Response *
recv_ok(int fd)
{
    Objmeta__Response *r = it_recv_response(fd, 10000);
    ck_assert_msg(r != NULL, "no response");
    return r;
}

static void
expect_status(int fd, uint64_t id, Objmeta__Status want, const char *needle)
{
    Objmeta__Response *r = recv_ok(fd);

    ck_assert_uint_eq(r->id, id);
    ck_assert_msg(r->status == want, "id %llu: status %s (%s), want %s", (unsigned long long)id,
                  rpc_proto_status_name(r->status), r->message, rpc_proto_status_name(want));
    if (needle != NULL)
        ck_assert_msg(strstr(r->message, needle) != NULL, "message \"%s\" lacks \"%s\"", r->message,
                      needle);
    objmeta__response__free_unpacked(r, NULL);
}

static void
store(int fd, uint64_t id, const char *bucket, const char *key, const char *data)
{
    send_raw_keyed(fd, id, OBJMETA__REQUEST__BODY_STORE, bucket, strlen(bucket), key, strlen(key),
                   data);
    expect_status(fd, id, OBJMETA__STATUS__OK, NULL);
}

/* Retrieve bucket/key and check the data. */
static void
expect_data(int fd, uint64_t id, const char *bucket, const char *key, const char *want)
{
    Objmeta__Response *r;

    send_raw_keyed(fd, id, OBJMETA__REQUEST__BODY_RETRIEVE, bucket, strlen(bucket), key,
                   strlen(key), NULL);
    r = recv_ok(fd);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "retrieve %s/%s: %s %s", bucket, key,
                  rpc_proto_status_name(r->status), r->message);
    ck_assert_ptr_nonnull(r->retrieve);
    ck_assert_uint_eq(r->retrieve->data.len, strlen(want));
    ck_assert(memcmp(r->retrieve->data.data, want, strlen(want)) == 0);
    objmeta__response__free_unpacked(r, NULL);
}

/* Send req (id set here) and expect `want` with a message containing needle. */
static void
call_expect(int fd, Objmeta__Request *req, uint64_t id, Objmeta__Status want, const char *needle)
{
    req->id = id;
    ck_assert(it_send_request(fd, req));
    expect_status(fd, id, want, needle);
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                  */

static tu_proc *
start_shard(const char *id, const char *roles)
{
    char idarg[64], rolearg[96];
    const char *extra[] = {"--sync-mode=none", idarg, rolearg, NULL};

    snprintf(idarg, sizeof(idarg), "--id=%s", id);
    snprintf(rolearg, sizeof(rolearg), "--plaintext-roles=%s", roles);
    return it_start_shard(NULL, extra);
}

static tu_proc *
start_coord(const tu_proc *shard, const char *roles)
{
    char shards[128], rolearg[96];
    const char *extra[] = {shards, rolearg, "--health-interval=100ms", "--startup-wait=5s", NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(shards, sizeof(shards), "--shards=s1=%s", it_addr(shard));
    snprintf(rolearg, sizeof(rolearg), "--plaintext-roles=%s", roles);
    return tu_proc_start("$OBJMETA_COORD", &o);
}

static void
stop(tu_proc *p)
{
    int st = tu_proc_stop(p);
    if (st != 0)
        tu_proc_dump_stderr(p);
    ck_assert_int_eq(st, 0);
    tu_proc_free(p);
}

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

/* Send a request and check its answer, over some connection (ctx). */
typedef void (*expect_fn)(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want,
                          const char *needle);

static void
fd_expect(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want, const char *needle)
{
    call_expect(*(int *)ctx, req, id, want, needle);
}

static void privileged_refused_on(expect_fn send, void *ctx, Objmeta__Status want, bool admin,
                                  bool peer);

/* Every admin and peer operation, and forced versions, refused with `want`. */
static void
privileged_refused(int fd, Objmeta__Status want)
{
    privileged_refused_on(fd_expect, &fd, want, true, true);
}

static void
privileged_refused_on(expect_fn send, void *ctx, Objmeta__Status want, bool admin, bool peer)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest stats = OBJMETA__STATS_REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__AddShardRequest as = OBJMETA__ADD_SHARD_REQUEST__INIT;
    Objmeta__RemoveShardRequest rs = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
    Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
    Objmeta__RebalanceStatusRequest rb = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Ring ring = OBJMETA__RING__INIT;
    Objmeta__MigrateScanRequest ms = OBJMETA__MIGRATE_SCAN_REQUEST__INIT;
    Objmeta__ApplyRecordsRequest ar = OBJMETA__APPLY_RECORDS_REQUEST__INIT;
    Objmeta__CompactRequest cp = OBJMETA__COMPACT_REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__DeleteRequest dl = OBJMETA__DELETE_REQUEST__INIT;
    const char *who = want == OBJMETA__STATUS__PERMISSION_DENIED ? "role" : "credential";
    uint64_t id = 100;

    as.id = (char *)"s9";
    as.addr = (char *)"127.0.0.1:1";
    rs.id = sw.id = (char *)"s1";
    sw.weight = 2;
    ring.epoch = 1ull << 62;
    sr.ring = &ring;
    st.bucket = dl.bucket = (char *)BUCKET;
    st.key = dl.key = (char *)"fv";
    st.forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
    st.forced_version = UINT64_MAX;
    dl.forced_case = OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION;
    dl.forced_version = UINT64_MAX;
#define REFUSE(CASE, FIELD, PTR)                                                                   \
    do {                                                                                           \
        q.body_case = CASE;                                                                        \
        q.FIELD = PTR;                                                                             \
        send(ctx, &q, id++, want, who);                                                            \
        q.FIELD = NULL;                                                                            \
    } while (0)
    if (admin) {
        REFUSE(OBJMETA__REQUEST__BODY_STATS, stats, &stats);
        REFUSE(OBJMETA__REQUEST__BODY_GET_RING, get_ring, &gr);
        REFUSE(OBJMETA__REQUEST__BODY_ADD_SHARD, add_shard, &as);
        REFUSE(OBJMETA__REQUEST__BODY_REMOVE_SHARD, remove_shard, &rs);
        REFUSE(OBJMETA__REQUEST__BODY_SET_WEIGHT, set_weight, &sw);
        REFUSE(OBJMETA__REQUEST__BODY_REBALANCE_STATUS, rebalance_status, &rb);
    }
    if (!peer)
        return;
    REFUSE(OBJMETA__REQUEST__BODY_SET_RING, set_ring, &sr);
    REFUSE(OBJMETA__REQUEST__BODY_MIGRATE_SCAN, migrate_scan, &ms);
    REFUSE(OBJMETA__REQUEST__BODY_APPLY_RECORDS, apply_records, &ar);
    REFUSE(OBJMETA__REQUEST__BODY_COMPACT, compact, &cp);
    REFUSE(OBJMETA__REQUEST__BODY_STORE, store, &st);
    REFUSE(OBJMETA__REQUEST__BODY_DELETE, delete_, &dl);
#undef REFUSE
}

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
/* Bucket-scoped tokens                                                        */

static char keyfile[600];

/* A key file with key k1 (once per test process). */
static const char *
token_keys(void)
{
    const char *argv[] = {"x", getenv("OBJMETA_GEN_TOKEN"), "key", "k1", NULL};
    char *out = NULL, *err = NULL;
    FILE *f;

    ck_assert_ptr_nonnull(argv[1]);
    ck_assert_int_eq(tu_run_cmd("/bin/sh", argv, 10000, &out, &err), 0);
    snprintf(keyfile, sizeof(keyfile), "%s/token.keys", tu_tmpdir());
    f = fopen(keyfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs(out, f);
    fclose(f);
    free(out);
    free(err);
    return keyfile;
}

/* A token minted by scripts/gen-token.sh (heap string). */
static char *
mint(const char *subject, const char *ttl, const char *scopes)
{
    const char *argv[] = {
        "x", getenv("OBJMETA_GEN_TOKEN"), "mint", keyfile, "k1", subject, ttl, scopes, NULL};
    char *out = NULL, *err = NULL;

    ck_assert_msg(tu_run_cmd("/bin/sh", argv, 10000, &out, &err) == 0, "gen-token: %s", err);
    out[strcspn(out, "\n")] = '\0';
    free(err);
    return out;
}

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

static size_t
count_lines_with(const char *path, const char *needle)
{
    char line[4096];
    size_t n = 0;
    FILE *f = fopen(path, "r");

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------------ */
/* TLS and certificates                                                        */

static char certdir[600];

/* Development certificates from scripts/gen-certs.sh --test (once per test process). */
static void
make_certs(void)
{
    const char *argv[] = {"x", getenv("OBJMETA_GEN_CERTS"), "--test", certdir, NULL};
    char *out = NULL, *err = NULL;

    ck_assert_ptr_nonnull(argv[1]);
    snprintf(certdir, sizeof(certdir), "%s/certs", tu_tmpdir());
    ck_assert_msg(tu_run_cmd("/bin/sh", argv, 30000, &out, &err) == 0, "gen-certs: %s", err);
    free(out);
    free(err);
}

/* certdir/name.ext into a rotating static buffer (a few live at once). */
static const char *
cert_file(const char *name, const char *ext)
{
    static char buf[8][700];
    static unsigned k;
    char *b = buf[k++ % 8];

    snprintf(b, sizeof(buf[0]), "%s/%s.%s", certdir, name, ext);
    return b;
}

/* "--tls-cert=..." style arguments for a server presenting node.pem. */
static void
tls_server_args(char args[4][768], const char *client_auth)
{
    snprintf(args[0], sizeof(args[0]), "--tls-cert=%s", cert_file("node", "pem"));
    snprintf(args[1], sizeof(args[1]), "--tls-key=%s", cert_file("node", "key"));
    snprintf(args[2], sizeof(args[2]), "--tls-ca=%s", cert_file("ca", "pem"));
    snprintf(args[3], sizeof(args[3]), "--tls-client-auth=%s", client_auth);
}

/* A client TLS configuration trusting `ca` and presenting `cert` (NULL: none). */
static rpc_tls *
client_tls(const char *ca, const char *cert)
{
    char err[256];
    rpc_tls *t = NULL;
    rpc_tls_opts o = {.ca_file = cert_file(ca, "pem"),
                      .cert_file = cert ? cert_file(cert, "pem") : NULL,
                      .key_file = cert ? cert_file(cert, "key") : NULL};

    ck_assert_msg(rpc_tls_new(&o, false, &t, err, sizeof(err)) == OM_OK, "client tls: %s", err);
    return t;
}

static om_status
tls_open(int port, rpc_tls *t, const char *token, rpc_sync_client **out, char *err, size_t n)
{
    char addr[64];
    rpc_client_opts o;

    rpc_client_opts_init(&o);
    o.tls = t;
    o.token = token;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    return rpc_sync_client_open_opts(addr, &o, out, err, n);
}

static void
sc_expect(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want, const char *needle)
{
    rpc_sync_client *sc = ctx;
    Objmeta__Response *r = NULL;
    om_status st;

    req->id = id;
    st = rpc_sync_client_call(sc, req, 10000, &r);
    ck_assert_msg(st == OM_OK, "request %llu: transport %s: %s", (unsigned long long)id,
                  om_status_str(st), rpc_sync_client_last_error(sc));
    ck_assert_msg(r->status == want, "request %llu: %s (%s), want %s", (unsigned long long)id,
                  rpc_proto_status_name(r->status), r->message, rpc_proto_status_name(want));
    if (needle != NULL)
        ck_assert_msg(strstr(r->message, needle) != NULL, "message \"%s\" lacks \"%s\"", r->message,
                      needle);
    rpc_response_free(r);
}

/* A Store of bucket/key over sc, expecting `want`. */
static void
sc_store(rpc_sync_client *sc, uint64_t id, const char *bucket, Objmeta__Status want)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;

    st.bucket = (char *)bucket;
    st.key = (char *)"tls-key";
    st.data.data = (uint8_t *)"v";
    st.data.len = 1;
    q.body_case = OBJMETA__REQUEST__BODY_STORE;
    q.store = &st;
    sc_expect(sc, &q, id, want, NULL);
}

/* Open a connection expected to work, as `cert` (NULL: none), with token (NULL: none). */
static rpc_sync_client *
tls_conn(int port, rpc_tls *t, const char *token)
{
    rpc_sync_client *sc = NULL;
    char err[256] = "";

    ck_assert_msg(tls_open(port, t, token, &sc, err, sizeof(err)) == OM_OK, "tls connect: %s", err);
    return sc;
}

/* A certificate the server refuses: the handshake (or the first call) fails. */
static void
tls_refused(int port, rpc_tls *t)
{
    rpc_sync_client *sc = NULL;
    char err[256] = "";
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;
    Objmeta__Response *r = NULL;

    if (tls_open(port, t, NULL, &sc, err, sizeof(err)) != OM_OK)
        return;
    q.id = 1;
    q.body_case = OBJMETA__REQUEST__BODY_PING;
    q.ping = &ping;
    om_status st = rpc_sync_client_call(sc, &q, 10000, &r);
    ck_assert_msg(st != OM_OK, "a refused certificate got an answer: %s", r ? r->message : "");
    rpc_sync_client_close(sc);
}

/* Everything a TLS server at port must do (shard or coordinator). */
static void
tls_checks(int port)
{
    rpc_tls *t_client = client_tls("ca", "client"), *t_admin = client_tls("ca", "admin");
    rpc_tls *t_none = client_tls("ca", NULL), *t_foreign = client_tls("ca", "foreign");
    rpc_tls *t_expired = client_tls("ca", "expired"), *t_wrongca = client_tls("foreign-ca", NULL);
    char *tok = mint("dave", "3600", "bucket-a=rw");
    rpc_sync_client *sc;
    char err[256] = "";

    /* a client certificate: data yes, admin and peer no */
    sc = tls_conn(port, t_client, NULL);
    sc_store(sc, 1, "tls-bucket", OBJMETA__STATUS__OK);
    privileged_refused_on(sc_expect, sc, OBJMETA__STATUS__PERMISSION_DENIED, true, true);
    rpc_sync_client_close(sc);
    /* an admin certificate: Stats yes, peer no */
    sc = tls_conn(port, t_admin, NULL);
    {
        Objmeta__Request q = OBJMETA__REQUEST__INIT;
        Objmeta__StatsRequest stats = OBJMETA__STATS_REQUEST__INIT;
        q.body_case = OBJMETA__REQUEST__BODY_STATS;
        q.stats = &stats;
        sc_expect(sc, &q, 1, OBJMETA__STATUS__OK, NULL);
    }
    privileged_refused_on(sc_expect, sc, OBJMETA__STATUS__PERMISSION_DENIED, false, true);
    rpc_sync_client_close(sc);
    /* TLS without a certificate: nothing without a token, the token's buckets with one */
    sc = tls_conn(port, t_none, NULL);
    sc_store(sc, 1, "tls-bucket", OBJMETA__STATUS__UNAUTHENTICATED);
    rpc_sync_client_close(sc);
    sc = tls_conn(port, t_none, tok);
    sc_store(sc, 1, "bucket-a", OBJMETA__STATUS__OK);
    sc_store(sc, 2, "bucket-b", OBJMETA__STATUS__PERMISSION_DENIED);
    rpc_sync_client_close(sc);
    /* certificates of another CA, or expired, fail the handshake */
    tls_refused(port, t_foreign);
    tls_refused(port, t_expired);
    /* the client refuses a server its CA did not sign */
    ck_assert(tls_open(port, t_wrongca, NULL, &sc, err, sizeof(err)) != OM_OK);
    ck_assert_msg(strstr(err, "certificate verify failed") != NULL, "unclear: %s", err);
    /* plaintext to the TLS port: told so in the protocol it speaks */
    {
        int fd = it_sock(port);
        Objmeta__Response *r;
        send_raw_keyed(fd, 7, OBJMETA__REQUEST__BODY_HEAD, "tls-bucket", 10, "k", 1, NULL);
        r = it_recv_response(fd, 10000);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->id, 0);
        ck_assert_msg(strstr(r->message, "speaks TLS") != NULL, "unclear: %s", r->message);
        objmeta__response__free_unpacked(r, NULL);
        close(fd);
    }
    /* and the server keeps serving */
    sc = tls_conn(port, t_client, NULL);
    sc_store(sc, 1, "tls-bucket", OBJMETA__STATUS__OK);
    rpc_sync_client_close(sc);
    free(tok);
    rpc_tls_free(t_client);
    rpc_tls_free(t_admin);
    rpc_tls_free(t_none);
    rpc_tls_free(t_foreign);
    rpc_tls_free(t_expired);
    rpc_tls_free(t_wrongca);
}

START_TEST(tls_everywhere)
{
    char sa[4][768], keys[700];
    tu_proc *sh, *co;

    make_certs();
    snprintf(keys, sizeof(keys), "--token-keys=%s", token_keys());
    tls_server_args(sa, "optional");
    {
        const char *extra[] = {
            "--sync-mode=none", "--id=s1", sa[0], sa[1], sa[2], sa[3], keys, NULL};
        sh = it_start_shard(NULL, extra);
    }
    {
        /* the coordinator talks TLS to the shard with its node (peer) certificate */
        char shards[128];
        const char *extra[] = {shards, sa[0], sa[1], sa[2], sa[3], keys, "--health-interval=100ms",
                               NULL};
        tu_proc_opts o = {.extra = extra};
        snprintf(shards, sizeof(shards), "--shards=s1=127.0.0.1:%d", tu_proc_port(sh, "rpc"));
        co = tu_proc_start("$OBJMETA_COORD", &o);
    }
    tls_checks(tu_proc_port(sh, "rpc"));
    tls_checks(tu_proc_port(co, "rpc"));
    {
        char path[700];
        snprintf(path, sizeof(path), "%s.stderr", tu_proc_data_dir(sh));
        ck_assert_uint_ge(count_lines_with(path, "unable to get local issuer certificate"), 1);
        ck_assert_uint_ge(count_lines_with(path, "certificate has expired"), 1);
        ck_assert_uint_ge(count_lines_with(path, "wrong version number"), 1);
    }
    stop(co);
    stop(sh);
}
END_TEST

START_TEST(tls_to_plaintext_port_and_required_certs)
{
    char sa[4][768], err[256] = "";
    rpc_tls *t_none, *t_client;
    rpc_sync_client *sc = NULL;
    tu_proc *plain = start_shard("s1", "auto"), *req;

    make_certs();
    t_none = client_tls("ca", NULL);
    t_client = client_tls("ca", "client");
    /* TLS to a plaintext port: a clear error, and the server keeps serving */
    ck_assert(tls_open(tu_proc_port(plain, "rpc"), t_none, NULL, &sc, err, sizeof(err)) != OM_OK);
    ck_assert_msg(strstr(err, "plaintext") != NULL, "unclear: %s", err);
    {
        int fd = it_sock(tu_proc_port(plain, "rpc"));
        store(fd, 1, BUCKET, "still", "serving");
        close(fd);
    }
    stop(plain);
    /* tls-client-auth=required: no certificate, no connection */
    tls_server_args(sa, "required");
    {
        const char *extra[] = {"--sync-mode=none", sa[0], sa[1], sa[2], sa[3], NULL};
        req = it_start_shard(NULL, extra);
    }
    tls_refused(tu_proc_port(req, "rpc"), t_none);
    sc = tls_conn(tu_proc_port(req, "rpc"), t_client, NULL);
    sc_store(sc, 1, "tls-bucket", OBJMETA__STATUS__OK);
    rpc_sync_client_close(sc);
    stop(req);
    rpc_tls_free(t_none);
    rpc_tls_free(t_client);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* D3: out of file descriptors                                                 */

START_TEST(nofile_too_low_refused_at_start)
{
    struct rlimit rl = {.rlim_cur = 200, .rlim_max = 200};
    const char *argv[] = {"x", "--listen=127.0.0.1:0", "--http-listen=off", NULL, NULL};
    char dd[512], *out = NULL, *err = NULL;
    int rc;

    snprintf(dd, sizeof(dd), "--data-dir=%s", tu_tmpdir());
    argv[3] = dd;
    /* this forked test only: the child inherits the limit (hard too, so it cannot raise it) */
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    rc = tu_run_cmd("$OBJMETA_SHARD", argv, 20000, &out, &err);
    ck_assert_msg(rc != 0, "the shard started with RLIMIT_NOFILE 200 and max-connections 1024");
    ck_assert_msg(strstr(err, "RLIMIT_NOFILE") != NULL && strstr(err, "max-connections") != NULL,
                  "unclear message: %s", err);
    free(out);
    free(err);
}
END_TEST

/* utime + stime of a process in clock ticks. */
static uint64_t
proc_cpu_ticks(int pid)
{
    char path[64], buf[1024];
    unsigned long ut = 0, stt = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    /* fields after the command's closing parenthesis: state is field 3, utime 14, stime 15 */
    const char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt), 2);
    return (uint64_t)ut + stt;
}

/* Resident set of a process in KiB. */
static long
proc_rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

#define BIG_OBJECT (1u << 20)
#define UNREAD_RETRIEVES 400

/* A client that pipelines large Retrieves and never reads: the coordinator
 * closes it at out_hard_limit instead of queueing every answer. */
START_TEST(unread_answers_bounded)
{
    tu_proc *sh = start_shard("s1", "auto");
    tu_proc *co = start_coord(sh, "auto");
    int port = tu_proc_port(co, "rpc"), pid = tu_proc_pid(co), fd = it_sock(port);
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
    uint8_t *big = malloc(BIG_OBJECT);
    long base, peak = 0;

    memset(big, 'b', BIG_OBJECT);
    st.bucket = (char *)BUCKET;
    st.key = (char *)"big";
    st.data.data = big;
    st.data.len = BIG_OBJECT;
    q.body_case = OBJMETA__REQUEST__BODY_STORE;
    q.store = &st;
    call_expect(fd, &q, 1, OBJMETA__STATUS__OK, NULL);
    close(fd);
    free(big);
    base = proc_rss_kb(pid);
    fd = it_sock(port);
    for (int i = 0; i < UNREAD_RETRIEVES; i++)
        send_raw_keyed(fd, (uint64_t)i + 1, OBJMETA__REQUEST__BODY_RETRIEVE, BUCKET, strlen(BUCKET),
                       "big", 3, NULL);
    /* the coordinator closes it once the unread answers pass out_hard_limit
     * (not reading here: reading would drain them); memory meanwhile stays bounded */
    uint64_t t0 = tu_now_ms();
    bool closed = false;
    while (!closed && tu_now_ms() - t0 < 60000) {
        char *body = NULL;
        long rss = proc_rss_kb(pid);
        peak = rss > peak ? rss : peak;
        ck_assert_int_eq(it_http_get(tu_proc_port(co, "http"), "/metrics", &body), 200);
        closed = strstr(body, "objmeta_rpc_slow_closes_total 1") != NULL;
        free(body);
        if (!closed)
            usleep(50000); /* polling with a deadline */
    }
    printf("coordinator RSS %ld KiB before, peak %ld KiB with %d unread 1 MiB answers\n", base,
           peak, UNREAD_RETRIEVES);
    ck_assert_msg(closed, "the coordinator kept a connection that never reads its answers");
    /* 400 MiB of answers were asked for; the limit (36 MiB here) plus what is in
     * transit through the shard connections must stay far below */
    ck_assert_msg(peak - base < 200 * 1024, "the coordinator grew by %ld KiB", peak - base);
    close(fd);
    /* everyone else is served (once the shard connections, busy with those
     * answers, have passed a health probe again) */
    fd = it_sock(port);
    Objmeta__Status last = OBJMETA__STATUS__UNAVAILABLE;
    for (uint64_t id = 1, end = tu_now_ms() + 20000;
         last != OBJMETA__STATUS__OK && tu_now_ms() < end; id++) {
        Objmeta__Response *r;
        send_raw_keyed(fd, id, OBJMETA__REQUEST__BODY_STORE, BUCKET, strlen(BUCKET), "after", 5,
                       "ok");
        r = recv_ok(fd);
        last = r->status;
        objmeta__response__free_unpacked(r, NULL);
        if (last != OBJMETA__STATUS__OK)
            usleep(50000); /* polling with a deadline */
    }
    ck_assert_int_eq(last, OBJMETA__STATUS__OK);
    close(fd);
    stop(co);
    stop(sh);
}
END_TEST

/* A request line without its CRLF does not hold the HTTP port open for long. */
START_TEST(http_partial_request_line_closed)
{
    tu_proc *sh = start_shard("s1", "auto");
    int fd = it_sock(tu_proc_port(sh, "http"));
    static const char partial[] = "GET /healthz HTTP/1.1";
    uint64_t t0 = tu_now_ms();

    ck_assert(it_send(fd, partial, sizeof(partial) - 1));
    ck_assert_msg(it_wait_closed(fd, (RPC_HTTP_TIMEOUT_S + 3) * 1000),
                  "the HTTP port held a partial request line over %d s", RPC_HTTP_TIMEOUT_S + 3);
    printf("partial request line closed after %llu ms\n", (unsigned long long)(tu_now_ms() - t0));
    close(fd);
    stop(sh);
}
END_TEST

#define HOLD_CONNS 300

START_TEST(out_of_descriptors_backs_off)
{
    tu_proc *sh = start_shard("s1", "auto");
    int pid = tu_proc_pid(sh), port = tu_proc_port(sh, "rpc");
    struct rlimit rl = {.rlim_cur = 128, .rlim_max = 128};
    int fds[HOLD_CONNS];
    char errpath[600];
    long hz = sysconf(_SC_CLK_TCK);

    snprintf(errpath, sizeof(errpath), "%s.stderr", tu_proc_data_dir(sh));
    /* lower the running shard's limit below what it is about to need */
    ck_assert_int_eq(prlimit(pid, RLIMIT_NOFILE, &rl, NULL), 0);
    for (int i = 0; i < HOLD_CONNS; i++)
        fds[i] = it_sock(port);
    uint64_t t0 = tu_now_ms(), c0 = proc_cpu_ticks(pid);
    while (tu_now_ms() - t0 < 2000)
        usleep(100000); /* measuring an interval, not synchronising */
    uint64_t c1 = proc_cpu_ticks(pid), ms = tu_now_ms() - t0;
    double cpu = (double)(c1 - c0) / (double)hz * 1000.0 / (double)ms;
    size_t lines = count_lines_with(errpath, "accept failed");
    printf("out of descriptors: cpu %.0f%% over %llu ms, %zu 'accept failed' lines\n", cpu * 100,
           (unsigned long long)ms, lines);
    ck_assert_msg(cpu < 0.25, "the shard spins out of descriptors: cpu %.0f%%", cpu * 100);
    ck_assert_msg(lines >= 1 && lines <= 10, "%zu 'accept failed' lines in ~2 s", lines);
    for (int i = 0; i < HOLD_CONNS; i++)
        close(fds[i]);
    /* descriptors free again: a new client is served once the pause ends */
    it_check_alive(sh);
    stop(sh);
}
END_TEST

static Suite *
security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("boundary");

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
    tc = tcase_create("tls");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, tls_everywhere);
    tcase_add_test(tc, tls_to_plaintext_port_and_required_certs);
    suite_add_tcase(s, tc);
    tc = tcase_create("descriptors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, nofile_too_low_refused_at_start);
    tcase_add_test(tc, out_of_descriptors_backs_off);
    tcase_add_test(tc, unread_answers_bounded);
    tcase_add_test(tc, http_partial_request_line_closed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(security_suite());
}
