/*
 * tests/security/sec_util.c -- helpers shared by the security suites
 * (sec_util.h): hand-made protobuf frames, request/expect helpers over raw
 * sockets, starting shard and coordinator with roles, the list of
 * privileged requests, token keys and tokens from scripts/gen-token.sh.
 */
#include "sec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/coding.h"

/* ------------------------------------------------------------------------ */
/* Hand-made protobuf (protobuf-c cannot put a NUL inside a string)           */

void
pb_varint(pbw *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

void
pb_lenfield(pbw *w, unsigned field, const void *p, size_t n)
{
    ck_assert_uint_lt(w->n + n + 16, sizeof(w->b));
    pb_varint(w, ((uint64_t)field << 3) | 2);
    pb_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* A Request {id, body field `op` = {bucket (1), key (2)[, data (3)]}} framed and sent. */
void
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

Objmeta__Response *
recv_ok(int fd)
{
    Objmeta__Response *r = it_recv_response(fd, 10000);
    ck_assert_msg(r != NULL, "no response");
    return r;
}

void
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

void
store(int fd, uint64_t id, const char *bucket, const char *key, const char *data)
{
    send_raw_keyed(fd, id, OBJMETA__REQUEST__BODY_STORE, bucket, strlen(bucket), key, strlen(key),
                   data);
    expect_status(fd, id, OBJMETA__STATUS__OK, NULL);
}

/* Retrieve bucket/key and check the data. */
void
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
void
call_expect(int fd, Objmeta__Request *req, uint64_t id, Objmeta__Status want, const char *needle)
{
    req->id = id;
    ck_assert(it_send_request(fd, req));
    expect_status(fd, id, want, needle);
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                  */

tu_proc *
start_shard(const char *id, const char *roles)
{
    char idarg[64], rolearg[96];
    const char *extra[] = {"--sync-mode=none", idarg, rolearg, NULL};

    snprintf(idarg, sizeof(idarg), "--id=%s", id);
    snprintf(rolearg, sizeof(rolearg), "--plaintext-roles=%s", roles);
    return it_start_shard(NULL, extra);
}

tu_proc *
start_coord(const tu_proc *shard, const char *roles)
{
    return start_coord_with(shard, roles, NULL);
}

tu_proc *
start_coord_with(const tu_proc *shard, const char *roles, const char *more)
{
    char shards[128], rolearg[96];
    const char *extra[] = {shards, rolearg, "--health-interval=100ms", "--startup-wait=5s",
                           more,   NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(shards, sizeof(shards), "--shards=s1=%s", it_addr(shard));
    snprintf(rolearg, sizeof(rolearg), "--plaintext-roles=%s", roles);
    return tu_proc_start("$OBJMETA_COORD", &o);
}

void
stop(tu_proc *p)
{
    int st = tu_proc_stop(p);
    if (st != 0)
        tu_proc_dump_stderr(p);
    ck_assert_int_eq(st, 0);
    tu_proc_free(p);
}

void
fd_expect(void *ctx, Objmeta__Request *req, uint64_t id, Objmeta__Status want, const char *needle)
{
    call_expect(*(int *)ctx, req, id, want, needle);
}

void privileged_refused_on(expect_fn send, void *ctx, Objmeta__Status want, bool admin, bool peer);

/* Every admin and peer operation, and forced versions, refused with `want`. */
void
privileged_refused(int fd, Objmeta__Status want)
{
    privileged_refused_on(fd_expect, &fd, want, true, true);
}

void
privileged_refused_on(expect_fn send, void *ctx, Objmeta__Status want, bool admin, bool peer)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest stats = OBJMETA__STATS_REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__AddShardRequest as = OBJMETA__ADD_SHARD_REQUEST__INIT;
    Objmeta__RemoveShardRequest rs = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
    Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
    Objmeta__RebalanceStatusRequest rb = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    Objmeta__CancelRebalanceRequest cr = OBJMETA__CANCEL_REBALANCE_REQUEST__INIT;
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
        REFUSE(OBJMETA__REQUEST__BODY_CANCEL_REBALANCE, cancel_rebalance, &cr);
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

static char keyfile[600];

/* A key file with key k1 (once per test process). */
const char *
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
char *
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

size_t
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
