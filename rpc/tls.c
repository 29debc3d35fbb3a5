/*
 * rpc/tls.c -- TLS for every rpc listener and client connection (OpenSSL
 * through libevent's bufferevent_openssl), and the roles a certificate
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
 * The transport is a filter: an SSL bufferevent over a socket bufferevent
 * (bufferevent_openssl_filter_new), not the SSL on the socket. On the
 * socket the SSL reads a record's 5-byte header and its body with two
 * read() calls, libevent takes one record per readiness event, and every
 * SSL_write is a write() of its own: over 3 syscalls per request at
 * pipeline 1, and one loop turn per record at 16 (issue 13, the TLS bar).
 * Over a socket bufferevent, one read() takes whatever arrived and the SSL
 * decrypts every record of it from memory. Writes follow the plaintext
 * scheme (conn.c, client.c): answers and calls queue as plaintext in the
 * SSL bufferevent while its EV_WRITE is off; once per loop turn
 * rpc_tls_flush encrypts all of them into the socket bufferevent's output
 * (a few records of up to 4 KiB) and writes it with one writev. When the
 * socket does not take it all, the socket bufferevent's EV_WRITE goes on
 * until its output is empty (tls_out_cb), then the owner's write callback
 * runs, as libevent's own write would have triggered it. Renegotiation is
 * refused (SSL_OP_NO_RENEGOTIATION), so a write never waits for a read.
 */
#define OM_LOG_MODULE "tls"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rpc/rpc_int.h"
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
    /* decrypt every record that arrived from one read of the socket
     * bufferevent (safe over a filter: libevent reads until the SSL blocks) */
    SSL_CTX_set_read_ahead(t->ctx, 1);
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
 * The socket bufferevent's output emptied after the socket had been full:
 * back to direct writes, and tell the owner as libevent's write would.
 * Not during the handshake, whose flights libevent writes.
 */
static void
tls_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg, *under = bufferevent_get_underlying(bev);

    if (info->n_deleted == 0 || evbuffer_get_length(buf) > 0 ||
        !(bufferevent_get_enabled(under) & EV_WRITE) ||
        !SSL_is_init_finished(bufferevent_openssl_get_ssl(bev)))
        return;
    bufferevent_disable(under, EV_WRITE);
    bufferevent_trigger(bev, EV_WRITE, BEV_OPT_DEFER_CALLBACKS);
}

/*
 * An SSL filter over a socket bufferevent on fd (-1: to connect); NULL on
 * failure. Enabling EV_READ on a filter decrypts what is buffered and runs
 * the read (or event) callback at once; a server connection, which enables
 * reading from inside its flow control (conn.c) and may be closed by those
 * callbacks, gets them deferred to the loop (BEV_OPT_DEFER_CALLBACKS).
 */
static struct bufferevent *
tls_bev_new(struct event_base *base, int fd, SSL *ssl, enum bufferevent_ssl_state state)
{
    int opts =
        BEV_OPT_CLOSE_ON_FREE | (state == BUFFEREVENT_SSL_ACCEPTING ? BEV_OPT_DEFER_CALLBACKS : 0);
    struct bufferevent *under = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE), *bev;

    if (under == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_set_max_single_read(under, RPC_MAX_SINGLE_READ);
    bev = bufferevent_openssl_filter_new(base, under, ssl, state, opts);
    if (bev == NULL) { /* it freed ssl */
        bufferevent_free(under);
        return NULL;
    }
    if (evbuffer_add_cb(bufferevent_get_output(under), tls_out_cb, bev) == NULL) {
        bufferevent_free(bev);
        return NULL;
    }
    bufferevent_set_max_single_read(bev, RPC_MAX_SINGLE_READ);
    bufferevent_disable(bev, EV_WRITE); /* rpc_tls_flush encrypts */
    return bev;
}

struct bufferevent *
rpc_tls_bev_accept(rpc_tls *t, struct event_base *base, int fd)
{
    SSL *ssl = SSL_new(t->ctx);

    return ssl != NULL ? tls_bev_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING) : NULL;
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
    return tls_bev_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING);
}

struct bufferevent *
rpc_tls_socket_bev(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);

    return under != NULL ? under : bev;
}

size_t
rpc_tls_queued(struct bufferevent *bev)
{
    return evbuffer_get_length(bufferevent_get_output(bev)) +
           evbuffer_get_length(bufferevent_get_output(bufferevent_get_underlying(bev)));
}

bool
rpc_tls_flush(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    struct evbuffer *out = bufferevent_get_output(under);
    int n = 0;

    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        bufferevent_enable(bev, EV_WRITE); /* encrypts the output into out */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            bufferevent_disable(bev, EV_WRITE);
    }
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(under) & EV_WRITE))
        return false; /* nothing to write, or libevent is writing (the socket was full) */
    n = rpc_evb_write_direct(out, bufferevent_getfd(under));
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(under, EV_WRITE);
    return n > 0;
}

/* Roles from the OUs of a verified peer certificate. */
uint32_t
rpc_tls_peer_roles(struct bufferevent *bev, char *who, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
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
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    unsigned long e, last = 0;
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

    /* libevent keeps the OpenSSL errors of the failed call; the last real one says most */
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (ERR_GET_LIB(e) != 0)
            last = e;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) != 0)
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
    om_log(OM_LOG_DEBUG, "tls connection peer=%s cert=%s roles=%s", c->peer, who, roles);
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
    int fd = bufferevent_getfd(c->bev);

    rpc_tls_bev_error(c->bev, why, sizeof(why));
    om_log(OM_LOG_INFO, "TLS handshake failed peer=%s reason=\"%s\"", c->peer, why);
    if (fd >= 0 && (strstr(why, "wrong version number") || strstr(why, "http request") ||
                    strstr(why, "packet length too long") || strstr(why, "unknown protocol")))
        tls_refuse_plaintext(fd);
}
