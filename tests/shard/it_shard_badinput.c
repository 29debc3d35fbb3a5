/*
 * tests/shard/it_shard_badinput.c -- the bad-input suite against the real
 * objmeta-shard: random bytes, a 4 GiB length prefix, a frame cut short, an
 * undecodable message, an unknown operation, invalid keys, buckets, metadata
 * and oversized data, a client that never reads, 200 concurrent connections.
 * After each, the server must still answer other clients correctly.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it_util.h"

static tu_proc *srv;

static void
setup(void)
{
    static const char *const extra[] = {"--sync-mode=none", "--max-object-size=64K",
                                        "--max-connections=400", NULL};
    srv = it_start_shard(NULL, extra);
}

static void
teardown(void)
{
    int st = tu_proc_stop(srv);
    tu_proc_free(srv);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %d", st);
}

START_TEST(random_bytes)
{
    uint64_t seed = tu_seed("random_bytes");
    for (int round = 0; round < 20; round++) {
        int fd = it_sock(tu_proc_port(srv, "rpc"));
        uint8_t junk[2048];
        size_t n = 1 + tu_rand(&seed) % sizeof(junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)tu_rand(&seed);
        it_send(fd, junk, n);
        /* whatever the server makes of it, it must not hang on to us forever or crash */
        close(fd);
    }
    it_check_alive(srv);
}
END_TEST

START_TEST(huge_length_prefix)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    Objmeta__Response *r;

    ck_assert(it_send(fd, hdr, 4));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 0);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_msg(strstr(r->message, "max_frame") != NULL, "%s", r->message);
    objmeta__response__free_unpacked(r, NULL);
    ck_assert(it_wait_closed(fd, 5000));
    close(fd);
    it_check_alive(srv);
}
END_TEST

START_TEST(frame_cut_short_then_close)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    uint8_t part[10] = {0, 0, 0, 100, 8, 1, 0x52, 0, 0, 0};

    ck_assert(it_send(fd, part, sizeof(part)));
    close(fd);
    it_check_alive(srv);
}
END_TEST

START_TEST(undecodable_message)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    /* a field 1 varint that never ends */
    uint8_t frame[9] = {0, 0, 0, 5, 0x08, 0xff, 0xff, 0xff, 0xff};
    Objmeta__Response *r;

    ck_assert(it_send(fd, frame, sizeof(frame)));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 0);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    objmeta__response__free_unpacked(r, NULL);
    ck_assert(it_wait_closed(fd, 5000));
    close(fd);
    it_check_alive(srv);
}
END_TEST

START_TEST(unknown_operation_keeps_connection)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;
    Objmeta__Response *r;

    req.id = 77; /* no body */
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 77);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    objmeta__response__free_unpacked(r, NULL);
    /* an admin operation a shard does not serve: also an answer, not a crash */
    Objmeta__AddShardRequest add = OBJMETA__ADD_SHARD_REQUEST__INIT;
    req.id = 78;
    req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
    req.add_shard = &add;
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 78);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    objmeta__response__free_unpacked(r, NULL);
    /* the same connection still works */
    req.id = 79;
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &ping;
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 79);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
    objmeta__response__free_unpacked(r, NULL);
    close(fd);
}
END_TEST

/* Store through a raw connection; returns the response (caller frees). */
static Objmeta__Response *
raw_store(int fd, uint64_t id, const char *bucket, const char *key, const char *meta, size_t len)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
    uint8_t *data = calloc(1, len + 1);

    req.id = id;
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &sr;
    sr.bucket = (char *)bucket;
    sr.key = (char *)key;
    sr.metadata_json = (char *)meta;
    sr.data.data = data;
    sr.data.len = len;
    ck_assert(it_send_request(fd, &req));
    free(data);
    Objmeta__Response *r = it_recv_response(fd, 10000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, id);
    return r;
}

START_TEST(invalid_fields_name_the_field)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    char long_key[1026];
    struct {
        const char *bucket, *key, *meta;
        size_t len;
        const char *want;
    } cases[] = {
        {"good", "a\xff\xfe", "", 1, "key: not valid UTF-8"},
        {"good", "\xc0\xaf", "", 1, "key:"},
        {"good", long_key, "", 1, "key: 1025 bytes"},
        {"good", "", "", 1, "key: must not be empty"},
        {"Bad_Bucket", "k", "", 1, "bucket:"},
        {"ab", "k", "", 1, "bucket:"},
        {"192.168.0.1", "k", "", 1, "bucket:"},
        {"good", "k", "[1,2]", 1, "metadata: must be a JSON object"},
        {"good", "k", "{\"a\":", 1, "metadata: not valid JSON"},
        {"good", "k", "", 64 * 1024 + 1, "data: 65537 bytes"},
    };
    Objmeta__Response *r;

    memset(long_key, 'x', 1025);
    long_key[1025] = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r = raw_store(fd, 100 + i, cases[i].bucket, cases[i].key, cases[i].meta, cases[i].len);
        ck_assert_msg(r->status == OBJMETA__STATUS__INVALID_ARGUMENT, "case %zu: status %d", i,
                      r->status);
        ck_assert_msg(strstr(r->message, cases[i].want) != NULL, "case %zu: message '%s'", i,
                      r->message);
        objmeta__response__free_unpacked(r, NULL);
    }
    /* the limit itself is fine, and 1024-byte keys too */
    long_key[1024] = 0;
    r = raw_store(fd, 200, "good", long_key, "{\"ok\":true}", 64 * 1024);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "%s", r->message);
    objmeta__response__free_unpacked(r, NULL);
    close(fd);
    it_check_alive(srv);
}
END_TEST

START_TEST(forced_version_zero_is_refused)
{
    int fd = it_sock(tu_proc_port(srv, "rpc"));
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__DeleteRequest dr = OBJMETA__DELETE_REQUEST__INIT;
    Objmeta__Response *r;

    /* A migration's forced write must carry a real version, for Store and Delete alike. */
    req.id = 300;
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &sr;
    sr.bucket = "good";
    sr.key = "forced";
    sr.metadata_json = "";
    sr.forced_case = OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
    sr.forced_version = 0;
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 300);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(r->message, "forced_version"));
    objmeta__response__free_unpacked(r, NULL);

    req.id = 301;
    req.body_case = OBJMETA__REQUEST__BODY_DELETE;
    req.delete_ = &dr;
    dr.bucket = "good";
    dr.key = "forced";
    dr.forced_case = OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION;
    dr.forced_version = 0;
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 301);
    ck_assert_int_eq(r->status, OBJMETA__STATUS__INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(r->message, "forced_version"));
    objmeta__response__free_unpacked(r, NULL);

    /* a real forced version is applied */
    req.id = 302;
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &sr; /* the body is a union: delete_ replaced it */
    sr.forced_version = 42;
    ck_assert(it_send_request(fd, &req));
    r = it_recv_response(fd, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(r->status == OBJMETA__STATUS__OK, "%s", r->message);
    objmeta__response__free_unpacked(r, NULL);
    close(fd);
    it_check_alive(srv);
}
END_TEST

START_TEST(client_that_never_reads)
{
    int slow = it_sock(tu_proc_port(srv, "rpc"));
    omc_client *c = it_client(srv);
    uint8_t big[60000];
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;
    int rcvbuf = 4096;

    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(omc_store(c, "slow", "big", om_slice_make(big, sizeof(big)), NULL, NULL),
                     OM_OK);
    setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* non-blocking: once the server stops reading us, sending stops too */
    fcntl(slow, F_SETFL, fcntl(slow, F_GETFL) | O_NONBLOCK);
    /* ask for ~60 MB of answers and never read them */
    req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
    req.retrieve = &rr;
    rr.bucket = "slow";
    rr.key = "big";
    for (int i = 0; i < 1000; i++) {
        req.id = (uint64_t)i + 1;
        if (!it_send_request(slow, &req))
            break;
    }
    /* others are served normally meanwhile */
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(omc_store(c, "slow", key, om_slice_from_str(key), NULL, NULL), OM_OK);
    }
    omc_close(c);
    it_check_alive(srv);
    close(slow);
    it_check_alive(srv);
}
END_TEST

START_TEST(two_hundred_connections)
{
    enum { N = 200 };
    int fds[N];
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;

    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &ping;
    for (int i = 0; i < N; i++)
        fds[i] = it_sock(tu_proc_port(srv, "rpc"));
    for (int i = 0; i < N; i++) {
        req.id = (uint64_t)i + 1000;
        ck_assert(it_send_request(fds[i], &req));
    }
    for (int i = 0; i < N; i++) {
        Objmeta__Response *r = it_recv_response(fds[i], 10000);
        ck_assert_msg(r != NULL, "connection %d got no answer", i);
        ck_assert_uint_eq(r->id, (uint64_t)i + 1000);
        ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
        objmeta__response__free_unpacked(r, NULL);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    it_check_alive(srv);
}
END_TEST

static Suite *
badinput_suite(void)
{
    Suite *s = suite_create("shard-badinput");
    TCase *tc = tcase_create("badinput");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, random_bytes);
    tcase_add_test(tc, huge_length_prefix);
    tcase_add_test(tc, frame_cut_short_then_close);
    tcase_add_test(tc, undecodable_message);
    tcase_add_test(tc, unknown_operation_keeps_connection);
    tcase_add_test(tc, invalid_fields_name_the_field);
    tcase_add_test(tc, forced_version_zero_is_refused);
    tcase_add_test(tc, client_that_never_reads);
    tcase_add_test(tc, two_hundred_connections);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(badinput_suite());
}
