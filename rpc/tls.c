/*
 * rpc/tls.c -- TLS for every rpc listener and client connection (OpenSSL
 * under a libevent filter bufferevent of ours), and the roles a certificate
 * grants (README.md, "Security").
 *
 * One rpc_tls holds one SSL_CTX: a server's (certificate, key, the CA its
 * clients' certificates must chain to, and whether a client certificate is
 * none / optional / required) or a client's (the CA the server's
 * certificate must chain to, and optionally a client certificate). Both
 * sides require TLS 1.2 or newer. A client checks the server's certificate
 * against the host part of the address it dialled (DNS name or IP SAN).
 *
 * Roles by mutual TLS: a client certificate that verifies against the
 * cluster CA grants the roles named by its subject's organizational units
 * (OU): "peer" -> peer, admin and client (a cluster member: coordinators
 * and shards), "admin" -> admin and client (an operator), "client" ->
 * client (an application, every bucket). Any other OU grants nothing; such
 * a connection may still authenticate with a bucket-scoped token. A
 * handshake with a certificate of another CA, an expired one, or plaintext
 * bytes fails, and the connection is closed with the reason logged.
 *
 * The transport is a libevent filter bufferevent (bufferevent_filter_new)
 * over a socket bufferevent, with our own filter functions and a BIO that
 * reads and writes the socket bufferevent's evbuffers (no syscall of its
 * own): one read() takes whatever arrived, and the SSL, reading ahead,
 * decrypts every record of it from memory. libevent's bufferevent_openssl
 * did the same at about a quarter more CPU per record than needed: it
 * clears the OpenSSL error queue before every call (some 800 instructions
 * each in OpenSSL 3), calls SSL_read once more per readiness event only to
 * hear "want read", and makes one record per evbuffer chain. Here the
 * queue is looked at only after a call failed (tls_retry_clean), SSL_read
 * runs only while bytes are buffered, and a write is one record per 16
 * KiB (issue 13, the TLS bar; docs/PERFORMANCE.md). Writes follow the plaintext scheme (conn.c,
 * client.c): answers and calls queue as plaintext in the filter's output
 * while its EV_WRITE is off; once per loop turn rpc_tls_flush encrypts all
 * of them into the socket bufferevent's output and writes it with one
 * writev. When the socket does not take it all, the socket bufferevent's
 * EV_WRITE goes on until its output is empty (tls_out_cb), then the
 * owner's write callback runs, as libevent's own write would have
 * triggered it. During the handshake libevent writes the flights.
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION), so a write never
 * waits for a read.
 *
 * After a TLS 1.3 handshake the records are ours (rpc/tls_rec.h): OpenSSL
 * keeps the handshake, the certificates and the roles, and hands over the
 * application traffic secrets through its key log callback; every record
 * after that is sealed and opened by tls_rec with OpenSSL's AEAD, at about
 * half the instructions of OpenSSL 3.0's record layer per small record
 * (docs/PERFORMANCE.md). For the switch to be exact, the handshake reads
 * record by record (no read-ahead: OpenSSL holds no byte past it) and a
 * server sends no session tickets, so both directions start at sequence 0
 * under the first application keys. TLS 1.2 keeps OpenSSL's records.
 *
 * The owner hears BEV_EVENT_CONNECTED when the handshake has finished,
 * BEV_EVENT_ERROR when it or a record fails (the reason: rpc_tls_bev_error)
 * and BEV_EVENT_EOF on close_notify or the socket's end.
 */
#define OM_LOG_MODULE "tls"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rpc/rpc_int.h"
#include "rpc/tls_rec.h"
#include "util/coding.h"
#include "util/log.h"

struct rpc_tls {
    SSL_CTX *ctx;
    bool server;
};

/* The newest OpenSSL error as text (and clear the queue). */
static void
tls_errstr(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error(), next;

    if (e == 0) {
        snprintf(buf, cap, "unknown TLS error");
        return;
    }
    while ((next = ERR_get_error()) != 0)
        e = next;
    ERR_error_string_n(e, buf, cap);
}

static void tls_keylog(const SSL *ssl, const char *line);

om_status
rpc_tls_new(const rpc_tls_opts *o, bool server, rpc_tls **out, char *err, size_t errlen)
{
    char ebuf[256];
    rpc_tls *t;
    bool want_cert = server || (o->cert_file != NULL && o->cert_file[0] != '\0');

    if (server && (o->cert_file == NULL || o->key_file == NULL))
        return om_err_invalid(err, errlen, "tls: a server needs a certificate and a key");
    if (!server && (o->ca_file == NULL || o->ca_file[0] == '\0'))
        return om_err_invalid(err, errlen, "tls: a client needs the CA (tls-ca / --ca)");
    if (server && o->client_auth != RPC_TLS_CLIENT_NONE && (o->ca_file == NULL || !o->ca_file[0]))
        return om_err_invalid(err, errlen, "tls: client certificates need the CA (tls-ca)");
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return OM_ERR(OM_E_NOMEM);
    t->server = server;
    t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (t->ctx == NULL)
        goto ssl_fail;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
    /* TLS 1.3 suites, AES-128-GCM first: as strong as the others for
     * this use and the cheapest with AES-NI (the default puts AES-256 first) */
    if (SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                         "TLS_CHACHA20_POLY1305_SHA256") != 1)
        goto ssl_fail;
    /* the handshake reads record by record, so that OpenSSL holds no
     * byte past it when our record layer takes over (tls_take_records);
     * a TLS 1.2 connection reads ahead afterwards */
    SSL_CTX_set_read_ahead(t->ctx, 0);
    SSL_CTX_set_keylog_callback(t->ctx, tls_keylog);
    /* no session tickets: objmeta does not resume sessions, and a ticket
     * sent after the handshake would be a record under the new keys */
    if (server)
        (void)SSL_CTX_set_num_tickets(t->ctx, 0);
    if (want_cert) {
        if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
            tls_errstr(ebuf, sizeof(ebuf));
            om_errf(err, errlen, "tls: certificate %s: %s", o->cert_file, ebuf);
            goto fail;
        }
        if (o->key_file == NULL ||
            SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(t->ctx) != 1) {
            tls_errstr(ebuf, sizeof(ebuf));
            om_errf(err, errlen, "tls: key %s: %s", o->key_file ? o->key_file : "(none)", ebuf);
            goto fail;
        }
    }
    if (o->ca_file != NULL && o->ca_file[0] != '\0' &&
        SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
        tls_errstr(ebuf, sizeof(ebuf));
        om_errf(err, errlen, "tls: CA %s: %s", o->ca_file, ebuf);
        goto fail;
    }
    if (!server)
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    else if (o->client_auth == RPC_TLS_CLIENT_REQUIRED)
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else if (o->client_auth == RPC_TLS_CLIENT_OPTIONAL)
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    else
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    *out = t;
    return OM_OK;
ssl_fail:
    tls_errstr(ebuf, sizeof(ebuf));
    om_errf(err, errlen, "tls: %s", ebuf);
fail:
    rpc_tls_free(t);
    return OM_E_INVALID;
}

void
rpc_tls_free(rpc_tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/*
 * One TLS connection: the SSL, the filter bufferevent its owner uses and
 * the socket bufferevent under it, whose callbacks (installed by libevent
 * for the filter) it wraps to see the TCP connect and the end of the stream;
 * found from the filter through the socket bufferevent's callback argument.
 * Thread-safety: the owner's loop thread only. Ownership: the filter's
 * context, freed with it (tls_link_free).
 */
typedef struct tls_link {
    SSL *ssl;
    struct bufferevent *bev, *under;
    bufferevent_data_cb f_read, f_write; /* libevent's filter callbacks on under */
    bufferevent_event_cb f_event;
    void *f_arg;
    unsigned long err; /* the OpenSSL error that ended the connection (0: none yet) */
    bool dead;         /* failed or closed by the peer: nothing more is decrypted */
    /* after a TLS 1.3 handshake: our record layer (NULL: OpenSSL's), and
     * the application traffic secrets OpenSSL logged for it until then */
    tls_rec *rec;
    bool rec_failed; /* the record layer ended the connection: tls_rec_why */
    uint8_t secrets; /* 1: csec, 2: ssec */
    size_t slen;
    uint8_t csec[TLS_REC_SECRET_MAX], ssec[TLS_REC_SECRET_MAX];
} tls_link;

/*
 * OpenSSL's key log: the one place OpenSSL 3.0 gives out a TLS 1.3
 * connection's application traffic secrets ("CLIENT_TRAFFIC_SECRET_0
 * <client random> <secret>", in hex), kept until the handshake ends.
 */
static void
tls_keylog(const SSL *ssl, const char *line)
{
    tls_link *t = SSL_get_app_data(ssl);
    static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sl[] = "SERVER_TRAFFIC_SECRET_0 ";
    const char *p;
    uint8_t *dst, bit;
    size_t n;

    if (t == NULL)
        return;
    if (strncmp(line, cl, sizeof(cl) - 1) == 0) {
        dst = t->csec;
        bit = 1;
    } else if (strncmp(line, sl, sizeof(sl) - 1) == 0) {
        dst = t->ssec;
        bit = 2;
    } else {
        return;
    }
    if ((p = strchr(line + sizeof(cl) - 1, ' ')) == NULL)
        return;
    n = strlen(++p);
    if (n % 2 != 0 || n / 2 > TLS_REC_SECRET_MAX || (t->secrets != 0 && n / 2 != t->slen))
        return;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)p[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    t->slen = n / 2;
    t->secrets |= bit;
}

/* Connections whose records tls_take_records gave to our layer. */
static atomic_uint_fast64_t tls_records_taken;

uint64_t
rpc_tls_records_taken(void)
{
    return atomic_load(&tls_records_taken);
}

/*
 * The handshake has finished: a TLS 1.3 connection's records are ours
 * from here on (rpc/tls_rec.h), when OpenSSL holds no record past the
 * handshake (it read record by record) and, on a server, sent no ticket,
 * so that both directions start at sequence number 0 under the first
 * application keys. TLS 1.2 keeps OpenSSL's records, reading ahead.
 */
static void
tls_take_records(tls_link *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    bool server = SSL_is_server(t->ssl) == 1;

    if (SSL_version(t->ssl) == TLS1_3_VERSION && t->secrets == 3 && c != NULL &&
        !SSL_has_pending(t->ssl) && (!server || SSL_get_num_tickets(t->ssl) == 0))
        t->rec = tls_rec_new(SSL_CIPHER_get_protocol_id(c), server ? t->csec : t->ssec,
                             server ? t->ssec : t->csec, t->slen, server);
    OPENSSL_cleanse(t->csec, sizeof(t->csec));
    OPENSSL_cleanse(t->ssec, sizeof(t->ssec));
    if (t->rec == NULL) {
        SSL_set_read_ahead(t->ssl, 1);
        return;
    }
    (void)SSL_free_buffers(t->ssl); /* OpenSSL's record buffers are not used again */
    atomic_fetch_add(&tls_records_taken, 1);
}

static tls_link *
tls_link_of(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    void *arg = NULL;

    if (under != NULL)
        bufferevent_getcb(under, NULL, NULL, NULL, &arg);
    return arg;
}

/*
 * After an SSL call failed: true when the caller should repeat it once.
 * SSL_get_error needs an empty error queue before the call, but even
 * looking at the queue costs some 200 instructions in OpenSSL 3 (the
 * thread's error state), twice a request on each side, and a call that
 * succeeds never looks. So the queue is not checked before a call; a
 * failure that leaves it non-empty may have found errors some other
 * OpenSSL call of this thread left there (SSL_get_error would then say
 * SSL_ERROR_SSL whatever happened), so the queue is emptied and the call
 * repeated: a call that wants more input wants it again, now from a clean
 * queue, and an SSL that failed fails again (it refuses I/O after a fatal
 * error). The newest error is kept as the reason in case it was the SSL's.
 */
static bool
tls_retry_clean(tls_link *t, int *tries)
{
    unsigned long e;

    if ((*tries)++ > 0 || ERR_peek_error() == 0)
        return false;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) != 0)
            t->err = e;
    return true;
}

/* The BIO under the SSL: ciphertext from the socket bufferevent's input
 * and to its output, no syscall of its own. */
static int
tls_bio_read(BIO *b, char *out, int len)
{
    tls_link *t = BIO_get_data(b);
    int n = evbuffer_remove(bufferevent_get_input(t->under), out, (size_t)len);

    BIO_clear_retry_flags(b);
    if (n == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    return n;
}

static int
tls_bio_write(BIO *b, const char *in, int len)
{
    tls_link *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    return evbuffer_add(bufferevent_get_output(t->under), in, (size_t)len) == 0 ? len : -1;
}

static long
tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_link *t = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)evbuffer_get_length(bufferevent_get_input(t->under));
    case BIO_CTRL_WPENDING:
        return (long)evbuffer_get_length(bufferevent_get_output(t->under));
    default:
        return 0;
    }
}

static BIO_METHOD *tls_bio_method;

static void
tls_bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "objmeta-evbuffer");

    if (m != NULL &&
        (BIO_meth_set_read(m, tls_bio_read) != 1 || BIO_meth_set_write(m, tls_bio_write) != 1 ||
         BIO_meth_set_ctrl(m, tls_bio_ctrl) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    tls_bio_method = m; /* process-wide, never freed */
}

/* The connection is over: send the alert if one was written (during the
 * handshake too: the owner may free the connection before libevent would
 * write it, and a client refused for its certificate should hear why),
 * and tell the owner (deferred: libevent may be inside the filter, which
 * the owner's callback may free). */
static void
tls_end(tls_link *t, short what)
{
    struct evbuffer *out = bufferevent_get_output(t->under);
    int fd = bufferevent_getfd(t->under);

    t->dead = true;
    bufferevent_disable(t->under, EV_READ);
    if (evbuffer_get_length(out) > 0 && fd >= 0) /* best effort */
        (void)rpc_evb_write_direct(out, fd);
    bufferevent_trigger_event(t->bev, what, BEV_OPT_DEFER_CALLBACKS);
}

/* An SSL call failed with ret: wait for more input, or end the connection. */
static void
tls_io_failed(tls_link *t, int ret)
{
    int e = SSL_get_error(t->ssl, ret);
    unsigned long x;

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->err = 0; /* what tls_retry_clean kept was not the SSL's */
        return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
        tls_end(t, BEV_EVENT_EOF | BEV_EVENT_READING);
        return;
    }
    while ((x = ERR_get_error()) != 0) /* the last real error says most */
        if (ERR_GET_LIB(x) != 0)
            t->err = x;
    tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_READING);
}

/* What the SSL wrote outside an SSL_write (tickets, alerts, key update
 * answers) goes out through libevent. */
static void
tls_send_pending(tls_link *t)
{
    if (evbuffer_get_length(bufferevent_get_output(t->under)) > 0 &&
        !(bufferevent_get_enabled(t->under) & EV_WRITE))
        bufferevent_enable(t->under, EV_WRITE);
}

/* Our record layer ended the connection: its alert, then the owner hears. */
static void
tls_rec_failed(tls_link *t, short what)
{
    uint8_t a[TLS_REC_CONTROL_MAX];
    size_t n = tls_rec_alert(t->rec, a);

    if (n > 0)
        (void)evbuffer_add(bufferevent_get_output(t->under), a, n);
    t->rec_failed = true;
    tls_end(t, BEV_EVENT_ERROR | what);
}

/* A record our layer must send before the next (a KeyUpdate) goes to
 * the socket bufferevent's output; false when the layer failed. */
static bool
tls_rec_control(tls_link *t)
{
    uint8_t c[TLS_REC_CONTROL_MAX];
    size_t n = tls_rec_pending(t->rec, c);

    if (n > 0 && evbuffer_add(bufferevent_get_output(t->under), c, n) != 0) {
        tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
        return false;
    }
    return true;
}

/* Seal src into the socket bufferevent's output with our record layer:
 * each record's plaintext copied once, into the space its ciphertext
 * takes, and encrypted there. */
static bool
tls_rec_encrypt(tls_link *t, struct evbuffer *src)
{
    struct evbuffer *out = bufferevent_get_output(t->under);
    size_t len;

    while ((len = evbuffer_get_length(src)) > 0) {
        size_t n = len < TLS_REC_PLAIN_MAX ? len : TLS_REC_PLAIN_MAX, w = 0;
        struct evbuffer_iovec v;
        if (!tls_rec_control(t))
            return false;
        if (evbuffer_reserve_space(out, (ev_ssize_t)(TLS_REC_HEADER + n + TLS_REC_OVERHEAD), &v,
                                   1) < 1 ||
            evbuffer_copyout(src, (uint8_t *)v.iov_base + TLS_REC_HEADER, n) != (ev_ssize_t)n) {
            tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
            return false;
        }
        if (!tls_rec_seal(t->rec, TLS_CT_APPDATA, v.iov_base, n, &w)) {
            (void)evbuffer_commit_space(out, &v, 0);
            tls_rec_failed(t, BEV_EVENT_WRITING);
            return false;
        }
        v.iov_len = w;
        (void)evbuffer_commit_space(out, &v, 1);
        evbuffer_drain(src, n);
    }
    return true;
}

/* Encrypt src into the socket bufferevent's output: one record per
 * TLS_REC_PLAIN_MAX bytes, whatever the evbuffer's chains. */
static bool
tls_encrypt(tls_link *t, struct evbuffer *src)
{
    size_t len;

    if (t->dead || !SSL_is_init_finished(t->ssl))
        return false; /* the handshake's end encrypts what waits */
    if (t->rec != NULL)
        return tls_rec_encrypt(t, src);
    while ((len = evbuffer_get_length(src)) > 0) {
        size_t n = len < TLS_REC_PLAIN_MAX ? len : TLS_REC_PLAIN_MAX, w = 0;
        unsigned char *p = evbuffer_pullup(src, (ev_ssize_t)n);
        int r, tries = 0;
        if (p == NULL) {
            tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
            return false;
        }
        while ((r = SSL_write_ex(t->ssl, p, n, &w)) != 1 && tls_retry_clean(t, &tries))
            ;
        if (r != 1) {
            tls_io_failed(t, r);
            return false;
        }
        evbuffer_drain(src, w);
    }
    return true;
}

/* Drive the handshake; true once it has finished. */
static bool
tls_handshake(tls_link *t)
{
    int r, tries = 0;

    if (SSL_is_init_finished(t->ssl))
        return true;
    while ((r = SSL_do_handshake(t->ssl)) != 1 && tls_retry_clean(t, &tries))
        ;
    if (r != 1) {
        tls_io_failed(t, r); /* libevent writes the flights: under's EV_WRITE is on */
        return false;
    }
    tls_take_records(t);
    (void)tls_encrypt(t, bufferevent_get_output(t->bev)); /* queued while shaking hands */
    if (evbuffer_get_length(bufferevent_get_output(t->under)) == 0)
        bufferevent_disable(t->under, EV_WRITE); /* else tls_out_cb, once written */
    bufferevent_trigger_event(t->bev, BEV_EVENT_CONNECTED, BEV_OPT_DEFER_CALLBACKS);
    return true;
}

/* tls_filter_in with our record layer: every whole record in src. */
static enum bufferevent_filter_result
tls_rec_decrypt(tls_link *t, struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim)
{
    ev_ssize_t got = 0;
    uint8_t hdr[TLS_REC_HEADER];
    size_t have, len;

    while ((lim < 0 || got < lim) && (have = evbuffer_get_length(src)) >= TLS_REC_HEADER) {
        struct evbuffer_iovec v;
        size_t n = 0;
        (void)evbuffer_copyout(src, hdr, TLS_REC_HEADER);
        if (!tls_rec_header(t->rec, hdr, &len)) {
            tls_rec_failed(t, BEV_EVENT_READING);
            break;
        }
        if (have < TLS_REC_HEADER + len)
            break; /* the rest of the record is on its way */
        const uint8_t *p = evbuffer_pullup(src, (ev_ssize_t)(TLS_REC_HEADER + len));
        /* a record's plaintext is shorter than its ciphertext: a small
         * request takes the input chain's free space */
        if (p == NULL || evbuffer_reserve_space(dst, (ev_ssize_t)len, &v, 1) < 1) {
            tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_READING);
            break;
        }
        tls_rec_result r = tls_rec_open(t->rec, p, TLS_REC_HEADER + len, v.iov_base, &n);
        evbuffer_drain(src, TLS_REC_HEADER + len);
        v.iov_len = n;
        (void)evbuffer_commit_space(dst, &v, n > 0 ? 1 : 0);
        got += (ev_ssize_t)n;
        if (r == TLS_REC_EOF) {
            tls_end(t, BEV_EVENT_EOF | BEV_EVENT_READING);
            break;
        }
        if (r == TLS_REC_ERROR) {
            tls_rec_failed(t, BEV_EVENT_READING);
            break;
        }
        if (!tls_rec_control(t)) /* a KeyUpdate the peer asked for */
            break;
    }
    tls_send_pending(t);
    return got > 0 ? BEV_OK : t->dead ? BEV_ERROR : BEV_NEED_MORE;
}

/*
 * Decrypt what arrived (src, the socket bufferevent's input) into dst, the
 * filter's input. SSL_read is called only while a record may be there: its
 * read-ahead takes all of src at once, and a further call that can only
 * answer "want read" costs as much as a record's bookkeeping.
 */
static enum bufferevent_filter_result
tls_filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
              enum bufferevent_flush_mode mode, void *arg)
{
    tls_link *t = arg;
    ev_ssize_t got = 0;

    (void)mode;
    if (t->dead)
        return BEV_ERROR;
    if (!tls_handshake(t))
        return t->dead ? BEV_ERROR : BEV_NEED_MORE;
    if (t->rec != NULL)
        return tls_rec_decrypt(t, src, dst, lim);
    while ((lim < 0 || got < lim) && (evbuffer_get_length(src) > 0 || SSL_has_pending(t->ssl))) {
        struct evbuffer_iovec v;
        size_t n = 0, in = evbuffer_get_length(src);
        int r, tries = 0;
        /* a record's plaintext is shorter than its ciphertext: a small
         * request takes the input chain's free space, not a 16 KiB chunk */
        if (evbuffer_reserve_space(
                dst, in > 0 && in < TLS_REC_PLAIN_MAX ? (ev_ssize_t)in : TLS_REC_PLAIN_MAX, &v, 1) <
            1) {
            tls_end(t, BEV_EVENT_ERROR | BEV_EVENT_READING);
            break;
        }
        while ((r = SSL_read_ex(t->ssl, v.iov_base, v.iov_len, &n)) != 1 &&
               tls_retry_clean(t, &tries))
            ;
        if (r != 1) {
            (void)evbuffer_commit_space(dst, &v, 0);
            tls_io_failed(t, r);
            break;
        }
        v.iov_len = n;
        (void)evbuffer_commit_space(dst, &v, 1);
        got += (ev_ssize_t)n;
    }
    tls_send_pending(t);
    return got > 0 ? BEV_OK : t->dead ? BEV_ERROR : BEV_NEED_MORE;
}

/* libevent encrypts through this when the owner enables EV_WRITE on the
 * filter (our owners do not: rpc_tls_flush); never a plaintext pass-through. */
static enum bufferevent_filter_result
tls_filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
               enum bufferevent_flush_mode mode, void *arg)
{
    tls_link *t = arg;

    (void)dst;
    (void)lim;
    (void)mode;
    if (t->dead)
        return BEV_ERROR;
    return tls_encrypt(t, src) ? BEV_OK : t->dead ? BEV_ERROR : BEV_NEED_MORE;
}

static void
tls_under_read(struct bufferevent *under, void *arg)
{
    tls_link *t = arg;

    t->f_read(under, t->f_arg);
}

static void
tls_under_write(struct bufferevent *under, void *arg)
{
    tls_link *t = arg;

    t->f_write(under, t->f_arg);
}

/*
 * The TCP connection is up (a client): send the ClientHello; the owner
 * hears BEV_EVENT_CONNECTED when the handshake has finished. The end of the
 * stream: first decrypt what is buffered (the owner may have paused
 * reading), as a plaintext connection keeps its input.
 */
static void
tls_under_event(struct bufferevent *under, short what, void *arg)
{
    tls_link *t = arg;

    if (what & BEV_EVENT_CONNECTED) {
        (void)tls_handshake(t);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !t->dead && SSL_is_init_finished(t->ssl))
        (void)tls_filter_in(bufferevent_get_input(under), bufferevent_get_input(t->bev), -1,
                            BEV_FINISHED, t);
    t->f_event(under, what, t->f_arg);
}

static void
tls_link_free(void *arg)
{
    tls_link *t = arg;

    tls_rec_free(t->rec);
    SSL_free(t->ssl);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

/*
 * The socket bufferevent's output emptied after the socket had been full:
 * back to direct writes, and tell the owner as libevent's write would.
 * During the handshake libevent writes the flights.
 */
static void
tls_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    tls_link *t = arg;

    if (info->n_deleted == 0 || evbuffer_get_length(buf) > 0 ||
        !(bufferevent_get_enabled(t->under) & EV_WRITE) || !SSL_is_init_finished(t->ssl))
        return;
    bufferevent_disable(t->under, EV_WRITE);
    bufferevent_trigger(t->bev, EV_WRITE, BEV_OPT_DEFER_CALLBACKS);
}

/*
 * A TLS filter over a socket bufferevent on fd (-1: to connect); NULL on
 * failure (ssl freed). A server connection, which enables reading from
 * inside its flow control (conn.c) and may be closed by its callbacks, gets
 * them deferred to the loop (BEV_OPT_DEFER_CALLBACKS).
 */
static struct bufferevent *
tls_bev_new(struct event_base *base, int fd, SSL *ssl, bool accept)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int opts = BEV_OPT_CLOSE_ON_FREE | (accept ? BEV_OPT_DEFER_CALLBACKS : 0);
    struct bufferevent *under = NULL, *bev;
    tls_link *t = NULL;
    BIO *bio = NULL;

    (void)pthread_once(&once, tls_bio_method_init);
    if (tls_bio_method == NULL || (t = calloc(1, sizeof(*t))) == NULL ||
        (bio = BIO_new(tls_bio_method)) == NULL)
        goto fail;
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_app_data(ssl, t); /* tls_keylog */
    if (accept)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    t->ssl = ssl;
    under = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (under == NULL)
        goto fail;
    t->under = under;
    bufferevent_set_max_single_read(under, RPC_MAX_SINGLE_READ);
    bev = bufferevent_filter_new(under, tls_filter_in, tls_filter_out, opts, tls_link_free, t);
    if (bev == NULL)
        goto fail;
    t->bev = bev; /* from here on bufferevent_free(bev) frees t, ssl and under */
    bufferevent_getcb(under, &t->f_read, &t->f_write, &t->f_event, &t->f_arg);
    bufferevent_setcb(under, tls_under_read, tls_under_write, tls_under_event, t);
    if (evbuffer_add_cb(bufferevent_get_output(under), tls_out_cb, t) == NULL) {
        bufferevent_free(bev);
        return NULL;
    }
    bufferevent_disable(bev, EV_WRITE); /* rpc_tls_flush encrypts */
    return bev;
fail:
    if (under != NULL)
        bufferevent_free(under);
    SSL_free(ssl); /* and bio, once set */
    if (bio != NULL && t != NULL && t->ssl == NULL)
        BIO_free(bio);
    free(t);
    return NULL;
}

struct bufferevent *
rpc_tls_bev_accept(rpc_tls *t, struct event_base *base, int fd)
{
    SSL *ssl = SSL_new(t->ctx);

    return ssl != NULL ? tls_bev_new(base, fd, ssl, true) : NULL;
}

struct bufferevent *
rpc_tls_bev_connect(rpc_tls *t, struct event_base *base, const char *host)
{
    SSL *ssl = SSL_new(t->ctx);
    X509_VERIFY_PARAM *vp;

    if (ssl == NULL)
        return NULL;
    vp = SSL_get0_param(ssl);
    /* an IP address is checked against IP SANs, a name against DNS SANs */
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
        ERR_clear_error();
        if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return tls_bev_new(base, -1, ssl, false);
}

struct bufferevent *
rpc_tls_socket_bev(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);

    return under != NULL ? under : bev;
}

bool
rpc_tls_flush(struct bufferevent *bev)
{
    tls_link *t = tls_link_of(bev);
    struct evbuffer *out = bufferevent_get_output(t->under);
    int n = 0;

    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        (void)tls_encrypt(t, bufferevent_get_output(bev));
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(t->under) & EV_WRITE))
        return false; /* nothing to write, or libevent is writing (the socket was full) */
    n = rpc_evb_write_direct(out, bufferevent_getfd(t->under));
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(t->under, EV_WRITE);
    return n > 0;
}

void
rpc_tls_kick(struct bufferevent *bev)
{
    tls_link *t = tls_link_of(bev);

    if (t != NULL && !t->dead &&
        (evbuffer_get_length(bufferevent_get_input(t->under)) > 0 || SSL_has_pending(t->ssl)))
        bufferevent_trigger(t->under, EV_READ,
                            BEV_OPT_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
}

/* Roles from the OUs of a verified peer certificate. */
uint32_t
rpc_tls_peer_roles(struct bufferevent *bev, char *who, size_t cap)
{
    tls_link *t = tls_link_of(bev);
    SSL *ssl = t != NULL ? t->ssl : NULL;
    X509 *cert;
    uint32_t roles = 0;

    snprintf(who, cap, "-");
    if (ssl == NULL || (cert = SSL_get1_peer_certificate(ssl)) == NULL)
        return 0;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        X509_NAME *name = X509_get_subject_name(cert);
        int i = -1;
        X509_NAME_get_text_by_NID(name, NID_commonName, who, (int)cap);
        while ((i = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, i)) >= 0) {
            ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
            const char *s = (const char *)ASN1_STRING_get0_data(v);
            int n = ASN1_STRING_length(v);
            if (n == 4 && memcmp(s, "peer", 4) == 0)
                roles |= RPC_ROLES_ALL;
            else if (n == 5 && memcmp(s, "admin", 5) == 0)
                roles |= RPC_ROLE_ADMIN | RPC_ROLE_CLIENT;
            else if (n == 6 && memcmp(s, "client", 6) == 0)
                roles |= RPC_ROLE_CLIENT;
        }
    }
    X509_free(cert);
    return roles;
}

void
rpc_tls_bev_error(struct bufferevent *bev, char *buf, size_t cap)
{
    tls_link *t = tls_link_of(bev);
    unsigned long e, last = t != NULL ? t->err : 0;
    long vr = t != NULL ? SSL_get_verify_result(t->ssl) : X509_V_OK;

    if (t != NULL && t->rec_failed) {
        snprintf(buf, cap, "%s", tls_rec_why(t->rec));
        return;
    }
    /* the error that ended the connection (tls_io_failed), else the queue's last real one */
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) != 0 && (t == NULL || t->err == 0))
            last = e;
    if (vr != X509_V_OK) {
        snprintf(buf, cap, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        return;
    }
    if (last == 0) {
        snprintf(buf, cap, "connection closed during the TLS handshake");
        return;
    }
    const char *r = ERR_reason_error_string(last);
    snprintf(buf, cap, "%s", r != NULL ? r : "TLS error");
}

void
rpc_tls_conn_ready(rpc_conn *c)
{
    char who[128], roles[32];

    if (c->tls_ready)
        return; /* conn_readcb came first */
    c->roles = c->base_roles = rpc_tls_peer_roles(c->bev, who, sizeof(who));
    c->tls_ready = true;
    rpc_roles_format(c->roles, roles, sizeof(roles));
    om_log(OM_LOG_DEBUG, "tls connection peer=%s cert=%s roles=%s records=%s", c->peer, who, roles,
           tls_link_of(c->bev)->rec != NULL ? "objmeta" : "openssl");
}

/*
 * A plaintext client on a TLS port: tell it so in its own protocol (an id-0
 * response, the way connection-level errors travel) before the connection
 * closes, instead of leaving it a reset. Its unread bytes are drained first
 * so that the close sends FIN, not RST. Best effort: nonblocking, one write.
 */
static void
tls_refuse_plaintext(int fd)
{
    static const char msg[] = "this port speaks TLS: connect with TLS and the cluster CA "
                              "(the objmeta tool: --ca FILE)";
    Objmeta__Response e = OBJMETA__RESPONSE__INIT;
    uint8_t frame[RPC_FRAME_HEADER_LEN + sizeof(msg) + 16], junk[4096];

    while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    e.status = OBJMETA__STATUS__UNAVAILABLE;
    e.message = (char *)msg;
    size_t n = protobuf_c_message_pack(&e.base, frame + RPC_FRAME_HEADER_LEN);
    om_put_be32(frame, (uint32_t)n);
    ssize_t w = send(fd, frame, RPC_FRAME_HEADER_LEN + n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    (void)shutdown(fd, SHUT_WR);
}

void
rpc_tls_conn_failed(rpc_conn *c)
{
    char why[256];
    int fd = bufferevent_getfd(rpc_tls_socket_bev(c->bev));

    rpc_tls_bev_error(c->bev, why, sizeof(why));
    om_log(OM_LOG_INFO, "TLS handshake failed peer=%s reason=\"%s\"", c->peer, why);
    if (fd >= 0 && (strstr(why, "wrong version number") || strstr(why, "http request") ||
                    strstr(why, "packet length too long") || strstr(why, "unknown protocol")))
        tls_refuse_plaintext(fd);
}
