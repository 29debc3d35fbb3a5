/*
 * tests/rpc/test_rpc_tls.c -- the TLS filter's record handling (rpc/tls.c)
 * against the in-process test server serving TLS, from a client whose
 * OpenSSL writes into memory, so that the test decides how the ciphertext
 * reaches the socket (one test, one server, a connection for each part):
 *
 *   records   several records in one read, a record header and a record
 *             body split across reads, a request of two full-size records
 *             (each larger than the server's first read of 960 bytes):
 *             every request is answered, in order
 *   stale     an error some other OpenSSL call of the server's loop thread
 *             left in its error queue (the "openssl-error" ping) does not
 *             end a connection whose next SSL_read must wait for the rest
 *             of a record (the filter looks at the queue only after a
 *             failed call, and then repeats the call from a clean queue)
 *
 * Certificates: scripts/gen-certs.sh (OBJMETA_GEN_CERTS); the client
 * presents client.pem (OU=client).
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/frame.h"
#include "rpc/rpc.h"
#include "rpc/rpc_int.h"
#include "testsrv.h"
#include "tu.h"
#include "util/coding.h"

static char certdir[600];

static const char *
cert(const char *name)
{
    static char buf[4][700];
    static unsigned k;
    char *b = buf[k++ % 4];

    snprintf(b, sizeof(buf[0]), "%s/%s", certdir, name);
    return b;
}

/* A TLS test server (client certificates optional; client.pem grants the client role). */
static tsrv *
tls_server(rpc_tls **tls)
{
    rpc_tls_opts to = {0};
    rpc_server_opts o;
    char err[256];

    snprintf(certdir, sizeof(certdir), "%s/certs", tu_tmpdir());
    tu_gen_certs(false, certdir);
    to.cert_file = cert("node.pem");
    to.key_file = cert("node.key");
    to.ca_file = cert("ca.pem");
    to.client_auth = RPC_TLS_CLIENT_OPTIONAL;
    ck_assert_msg(rpc_tls_new(&to, true, tls, err, sizeof(err)) == OM_OK, "%s", err);
    rpc_server_opts_init(&o);
    o.tls = *tls;
    return tsrv_start_opts(&o);
}

/* The client: an SSL over two memory BIOs and a blocking socket. */
typedef struct mclient {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* ciphertext from the socket / for the socket */
} mclient;

/* Move what arrived on the socket into the SSL's input BIO; false at EOF. */
static bool
mc_recv(mclient *m)
{
    char buf[16384];
    ssize_t n = recv(m->fd, buf, sizeof(buf), 0);

    if (n <= 0)
        return false;
    ck_assert_int_eq(BIO_write(m->in, buf, (int)n), (int)n);
    return true;
}

/* Take the ciphertext the SSL wrote (*len bytes; free it). */
static uint8_t *
mc_take(mclient *m, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(m->out, &p);
    uint8_t *c = malloc((size_t)n + 1);

    ck_assert_ptr_nonnull(c);
    memcpy(c, p, (size_t)n);
    *len = (size_t)n;
    (void)BIO_reset(m->out);
    return c;
}

static void
mc_flush(mclient *m)
{
    size_t n;
    uint8_t *c = mc_take(m, &n);

    if (n > 0)
        raw_send(m->fd, c, n);
    free(c);
}

/* Connect with TLS up to version max (TLS1_3_VERSION, TLS1_2_VERSION). */
static void
mc_open(mclient *m, int port, int max)
{
    memset(m, 0, sizeof(*m));
    m->ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(m->ctx);
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(m->ctx, max), 1);
    ck_assert_int_eq(SSL_CTX_load_verify_locations(m->ctx, cert("ca.pem"), NULL), 1);
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(m->ctx, cert("client.pem")), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(m->ctx, cert("client.key"), SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER, NULL);
    m->ssl = SSL_new(m->ctx);
    m->in = BIO_new(BIO_s_mem());
    m->out = BIO_new(BIO_s_mem());
    ck_assert(m->ssl != NULL && m->in != NULL && m->out != NULL);
    SSL_set_bio(m->ssl, m->in, m->out);
    SSL_set_connect_state(m->ssl);
    m->fd = raw_connect(port);
    ck_assert_int_ge(m->fd, 0);
    for (;;) {
        int r = SSL_do_handshake(m->ssl);
        mc_flush(m);
        if (r == 1)
            break;
        ck_assert_int_eq(SSL_get_error(m->ssl, r), SSL_ERROR_WANT_READ);
        ck_assert_msg(mc_recv(m), "the server closed during the handshake");
    }
}

static void
mc_close(mclient *m)
{
    SSL_free(m->ssl); /* and both BIOs */
    SSL_CTX_free(m->ctx);
    close(m->fd);
}

/* One Ping request as one or more TLS records (*len bytes of ciphertext; free it). */
static uint8_t *
mc_seal_ping(mclient *m, const char *payload, size_t plen, size_t *len)
{
    Objmeta__Request r = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest p = OBJMETA__PING_REQUEST__INIT;
    size_t n;
    uint8_t *frame;

    r.body_case = OBJMETA__REQUEST__BODY_PING;
    r.ping = &p;
    p.payload.data = (uint8_t *)payload;
    p.payload.len = plen;
    n = objmeta__request__get_packed_size(&r);
    frame = malloc(RPC_FRAME_HEADER_LEN + n);
    ck_assert_ptr_nonnull(frame);
    om_put_be32(frame, (uint32_t)n);
    objmeta__request__pack(&r, frame + RPC_FRAME_HEADER_LEN);
    ck_assert_int_eq(SSL_write(m->ssl, frame, (int)(RPC_FRAME_HEADER_LEN + n)),
                     (int)(RPC_FRAME_HEADER_LEN + n));
    free(frame);
    return mc_take(m, len);
}

/* The next answer: its Ping payload must be want (wlen bytes). */
static void
mc_expect(mclient *m, const char *want, size_t wlen)
{
    static uint8_t buf[1 << 17];
    static size_t have;
    uint32_t n;

    for (;;) {
        if (have >= RPC_FRAME_HEADER_LEN && have >= RPC_FRAME_HEADER_LEN + (n = om_get_be32(buf)))
            break;
        int r = SSL_read(m->ssl, buf + have, (int)(sizeof(buf) - have));
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        ck_assert_int_eq(SSL_get_error(m->ssl, r), SSL_ERROR_WANT_READ);
        ck_assert_msg(mc_recv(m), "the server closed the connection");
    }
    Objmeta__Response *resp = objmeta__response__unpack(NULL, n, buf + RPC_FRAME_HEADER_LEN);
    ck_assert_ptr_nonnull(resp);
    ck_assert_msg(resp->status == OBJMETA__STATUS__OK, "status %d: %s", resp->status,
                  resp->message ? resp->message : "");
    ck_assert_int_eq(resp->body_case, OBJMETA__RESPONSE__BODY_PING);
    ck_assert_uint_eq(resp->ping->payload.len, wlen);
    ck_assert(memcmp(resp->ping->payload.data, want, wlen) == 0);
    objmeta__response__free_unpacked(resp, NULL);
    have -= RPC_FRAME_HEADER_LEN + n;
    memmove(buf, buf + RPC_FRAME_HEADER_LEN + n, have);
}

/* Records joined in one read, split across reads, larger than a read
 * (TLS up to version max: 1.3 is our record layer, 1.2 OpenSSL's). */
static void
records_split_and_joined(tsrv *t, int max)
{
    mclient m;
    size_t la, lb, lc, lbig;
    size_t bigsz = 2 * 16000;
    char *big = malloc(bigsz);

    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < bigsz; i++)
        big[i] = (char)('a' + i % 26);
    mc_open(&m, t->port, max);
    uint8_t *a = mc_seal_ping(&m, "first", 5, &la);
    uint8_t *b = mc_seal_ping(&m, "second", 6, &lb);
    uint8_t *c = mc_seal_ping(&m, "third", 5, &lc);
    uint8_t *d = mc_seal_ping(&m, big, bigsz, &lbig);
    ck_assert_uint_gt(lbig, 2 * 960); /* at least two records, each beyond a first read */
    /* two whole records and 3 bytes of the third's header in one write
     * (one read: under the server's first read of 960 bytes) */
    uint8_t *ab = malloc(la + lb + 3);
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb);
    memcpy(ab + la + lb, c, 3);
    ck_assert_uint_lt(la + lb + 3, 960);
    raw_send(m.fd, ab, la + lb + 3);
    mc_expect(&m, "first", 5);
    mc_expect(&m, "second", 6);
    /* the rest of the header and half the body, then the rest (answered
     * only once the whole record is there) */
    raw_send(m.fd, c + 3, 4);
    raw_send(m.fd, c + 7, lc - 7 - 5);
    raw_send(m.fd, c + lc - 5, 5);
    mc_expect(&m, "third", 5);
    /* a request of two full-size records, each larger than a first read */
    raw_send(m.fd, d, lbig);
    mc_expect(&m, big, bigsz);
    free(ab);
    free(a);
    free(b);
    free(c);
    free(d);
    free(big);
    mc_close(&m);
}

/* A partial record read while a stale error sits in the server's queue. */
static void
stale_error_queue_keeps_the_connection(tsrv *t)
{
    mclient m;
    size_t le, lb, lc;

    mc_open(&m, t->port, TLS1_2_VERSION); /* OpenSSL's records: SSL_read on the server */
    uint8_t *e = mc_seal_ping(&m, "openssl-error", 13, &le);
    uint8_t *b = mc_seal_ping(&m, "after", 5, &lb);
    uint8_t *c = mc_seal_ping(&m, "last", 4, &lc);
    /* the request that leaves an error on the server's loop thread, and
     * half of the next record: answered, so the error is queued */
    uint8_t *eb = malloc(le + lb / 2);
    memcpy(eb, e, le);
    memcpy(eb + le, b, lb / 2);
    raw_send(m.fd, eb, le + lb / 2);
    mc_expect(&m, "openssl-error", 13);
    /* the rest of that record and 3 bytes of the next: its SSL_read waits
     * for more with the stale error still queued */
    uint8_t *bc = malloc(lb - lb / 2 + 3);
    memcpy(bc, b + lb / 2, lb - lb / 2);
    memcpy(bc + lb - lb / 2, c, 3);
    raw_send(m.fd, bc, lb - lb / 2 + 3);
    mc_expect(&m, "after", 5);
    raw_send(m.fd, c + 3, lc - 3);
    mc_expect(&m, "last", 4);
    free(eb);
    free(bc);
    free(e);
    free(b);
    free(c);
    mc_close(&m);
}

/* A Ping round trip on m. */
static void
mc_ping(mclient *m, const char *payload)
{
    size_t n;
    uint8_t *c = mc_seal_ping(m, payload, strlen(payload), &n);

    raw_send(m->fd, c, n);
    free(c);
    mc_expect(m, payload, strlen(payload));
}

/* What the server sent until it closed the connection goes into the SSL. */
static void
mc_recv_until_closed(mclient *m)
{
    struct timeval tv = {.tv_sec = 10};

    ck_assert_int_eq(setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    while (mc_recv(m))
        ;
}

/*
 * TLS 1.3 from OpenSSL's client: the server's records are ours (the
 * process-wide count), and they follow OpenSSL's key updates either way: a
 * KeyUpdate asking for the server's (which must come before its next
 * answer) and one that does not.
 */
static void
key_updates_with_openssl(tsrv *t)
{
    mclient m;
    uint64_t before = rpc_tls_records_taken();

    mc_open(&m, t->port, TLS1_3_VERSION);
    mc_ping(&m, "before");
    ck_assert_uint_eq(rpc_tls_records_taken(), before + 1);
    ck_assert_int_eq(SSL_key_update(m.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    mc_ping(&m, "asked");
    mc_ping(&m, "after the server's update");
    ck_assert_int_eq(SSL_key_update(m.ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    mc_ping(&m, "not asked");
    mc_close(&m);
    /* TLS 1.2 keeps OpenSSL's record layer */
    mc_open(&m, t->port, TLS1_2_VERSION);
    mc_ping(&m, "tls 1.2");
    ck_assert_uint_eq(rpc_tls_records_taken(), before + 1);
    mc_close(&m);
}

/* A changed byte in a record: no answer, an alert OpenSSL reads (TLS 1.3), the end. */
static void
tampered_record_ends_the_connection(tsrv *t, int max)
{
    mclient m;
    size_t n;
    char buf[64];

    mc_open(&m, t->port, max);
    mc_ping(&m, "fine");
    uint8_t *c = mc_seal_ping(&m, "tampered", 8, &n);
    c[n - 20] ^= 0x10;
    raw_send(m.fd, c, n);
    free(c);
    mc_recv_until_closed(&m);
    ERR_clear_error();
    ck_assert_int_le(SSL_read(m.ssl, buf, sizeof(buf)), 0);
    /* our record layer says why; OpenSSL's (TLS 1.2) may just close */
    const char *why = ERR_reason_error_string(ERR_peek_last_error());
    ck_assert_msg(max != TLS1_3_VERSION || (why != NULL && strstr(why, "bad record mac") != NULL),
                  "unclear: %s", why ? why : "(no error)");
    ERR_clear_error();
    mc_close(&m);
}

/* close_notify from the client: the server closes its side. */
static void
close_notify_closes(tsrv *t)
{
    mclient m;
    char buf[16];

    mc_open(&m, t->port, TLS1_3_VERSION);
    mc_ping(&m, "bye");
    ck_assert_int_ge(SSL_shutdown(m.ssl), 0);
    mc_flush(&m);
    mc_recv_until_closed(&m);
    ck_assert_int_le(SSL_read(m.ssl, buf, sizeof(buf)), 0); /* nothing more came */
    ERR_clear_error();
    mc_close(&m);
}

/*
 * Our client's records against OpenSSL's server: a plain OpenSSL server
 * thread (two session tickets after the handshake, as OpenSSL sends by
 * default) answers two Pings, asking for the client's key update before
 * its first answer, then closes with close_notify.
 */
typedef struct ossl_srv {
    int lfd, port;
    SSL_CTX *ctx;
    int answered;
} ossl_srv;

static bool
ossl_read_all(SSL *ssl, uint8_t *p, size_t n)
{
    size_t got = 0, k;

    while (got < n)
        if (SSL_read_ex(ssl, p + got, n - got, &k) != 1)
            return false;
        else
            got += k;
    return true;
}

static void *
ossl_server_main(void *arg)
{
    ossl_srv *S = arg;
    int fd = accept(S->lfd, NULL, NULL);
    SSL *ssl = fd >= 0 ? SSL_new(S->ctx) : NULL;
    uint8_t hdr[RPC_FRAME_HEADER_LEN], body[4096], out[4096 + RPC_FRAME_HEADER_LEN];

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
        goto out;
    for (int i = 0; i < 2; i++) {
        uint32_t n;
        if (!ossl_read_all(ssl, hdr, sizeof(hdr)) || (n = om_get_be32(hdr)) > sizeof(body) ||
            !ossl_read_all(ssl, body, n))
            goto out;
        Objmeta__Request *q = objmeta__request__unpack(NULL, n, body);
        if (q == NULL || q->body_case != OBJMETA__REQUEST__BODY_PING)
            goto out;
        Objmeta__Response r = OBJMETA__RESPONSE__INIT;
        Objmeta__PingResponse pr = OBJMETA__PING_RESPONSE__INIT;
        r.id = q->id;
        r.status = OBJMETA__STATUS__OK;
        r.body_case = OBJMETA__RESPONSE__BODY_PING;
        r.ping = &pr;
        pr.payload = q->ping->payload;
        size_t m = objmeta__response__pack(&r, out + RPC_FRAME_HEADER_LEN);
        objmeta__request__free_unpacked(q, NULL);
        om_put_be32(out, (uint32_t)m);
        if (i == 0 && SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
            goto out;
        if (SSL_write(ssl, out, (int)(RPC_FRAME_HEADER_LEN + m)) <= 0)
            goto out;
        S->answered++;
    }
    (void)SSL_shutdown(ssl);
out:
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void
client_records_with_openssl_server(void)
{
    ossl_srv S = {0};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    pthread_t th;
    char ca[700], cc[700], ck[700];
    rpc_tls_opts to = {.ca_file = ca, .cert_file = cc, .key_file = ck};
    rpc_tls *ct = NULL;
    rpc_client_opts o;
    rpc_sync_client *sc = NULL;
    char err[256] = "", addr[64];
    uint64_t before = rpc_tls_records_taken();

    S.ctx = SSL_CTX_new(TLS_server_method());
    ck_assert_ptr_nonnull(S.ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(S.ctx, cert("node.pem")), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(S.ctx, cert("node.key"), SSL_FILETYPE_PEM), 1);
    S.lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(S.lfd, 0);
    ck_assert_int_eq(bind(S.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(S.lfd, 4), 0);
    ck_assert_int_eq(getsockname(S.lfd, (struct sockaddr *)&a, &al), 0);
    S.port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&th, NULL, ossl_server_main, &S), 0);
    snprintf(ca, sizeof(ca), "%s", cert("ca.pem"));
    snprintf(cc, sizeof(cc), "%s", cert("client.pem"));
    snprintf(ck, sizeof(ck), "%s", cert("client.key"));
    ck_assert_msg(rpc_tls_new(&to, false, &ct, err, sizeof(err)) == OM_OK, "%s", err);
    rpc_client_opts_init(&o);
    o.tls = ct;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", S.port);
    ck_assert_msg(rpc_sync_client_open_opts(addr, &o, &sc, err, sizeof(err)) == OM_OK, "%s", err);
    for (int i = 0; i < 2; i++) {
        Objmeta__Request q = OBJMETA__REQUEST__INIT;
        Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;
        Objmeta__Response *r = NULL;
        q.id = (uint64_t)i + 1;
        q.body_case = OBJMETA__REQUEST__BODY_PING;
        q.ping = &ping;
        ping.payload.data = (uint8_t *)(i == 0 ? "one" : "two");
        ping.payload.len = 3;
        om_status st = rpc_sync_client_call(sc, &q, 10000, &r);
        ck_assert_msg(st == OM_OK, "ping %d: %s: %s", i, om_status_str(st),
                      rpc_sync_client_last_error(sc));
        ck_assert_int_eq(r->status, OBJMETA__STATUS__OK);
        ck_assert_uint_eq(r->ping->payload.len, 3);
        ck_assert(memcmp(r->ping->payload.data, i == 0 ? "one" : "two", 3) == 0);
        rpc_response_free(r);
    }
    ck_assert_uint_eq(rpc_tls_records_taken(), before + 1); /* the client's, ours */
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(S.answered, 2);
    rpc_sync_client_close(sc);
    rpc_tls_free(ct);
    close(S.lfd);
    SSL_CTX_free(S.ctx);
}

/* One server (and one set of certificates) for all: each connection is fresh. */
START_TEST(tls_record_boundaries)
{
    rpc_tls *tls;
    tsrv *t = tls_server(&tls);

    records_split_and_joined(t, TLS1_3_VERSION);
    records_split_and_joined(t, TLS1_2_VERSION);
    stale_error_queue_keeps_the_connection(t);
    key_updates_with_openssl(t);
    tampered_record_ends_the_connection(t, TLS1_3_VERSION);
    tampered_record_ends_the_connection(t, TLS1_2_VERSION);
    close_notify_closes(t);
    client_records_with_openssl_server();
    tsrv_stop(t);
    rpc_tls_free(tls);
}
END_TEST

static Suite *
rpc_tls_suite(void)
{
    Suite *s = suite_create("rpc-tls");
    TCase *tc = tcase_create("records");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tls_record_boundaries);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    rpc_init_logging();
    return tu_run(rpc_tls_suite());
}
