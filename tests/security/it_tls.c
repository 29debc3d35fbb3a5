/*
 * tests/security/it_tls.c -- TLS on every listener (issue 13), against the
 * real objmeta-shard and objmeta-coord with certificates from
 * scripts/gen-certs.sh --test:
 *
 *   everywhere  a TLS shard and a TLS coordinator in front of it (mutual
 *               TLS between them): client and admin certificates get
 *               PERMISSION_DENIED outside their roles, no certificate is
 *               UNAUTHENTICATED unless a token scopes it, foreign-CA and
 *               expired certificates fail the handshake (logged), a client
 *               refuses a server of another CA, plaintext to the TLS port is
 *               told so, and the server keeps serving
 *   mix-ups     TLS to a plaintext port names plaintext; with
 *               tls-client-auth=required no certificate, no connection
 *   replication a TLS-only primary and backup (plaintext-roles=none): the
 *               primary ships over TLS with its own certificate; a write
 *               is acknowledged with the backup holding it, and with the
 *               backup stopped (SIGSTOP) it is not acknowledged
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "sec_util.h"

/* ------------------------------------------------------------------------ */
/* TLS and certificates                                                        */

static char certdir[600];

/*
 * Development certificates from scripts/gen-certs.sh --test, made by the
 * first test that needs them in a directory of main's (each test runs in a
 * child process, whose exit removes the directories it made).
 */
static void
make_certs(void)
{
    tu_gen_certs(true, certdir);
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
    /* the server's alert, read by the client's record layer, says why */
    ck_assert_msg(strstr(rpc_sync_client_last_error(sc), "alert") != NULL, "unclear: %s",
                  rpc_sync_client_last_error(sc));
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

/* A Head of tls-bucket/key over sc, expecting `want`. */
static void
sc_head(rpc_sync_client *sc, uint64_t id, const char *key, Objmeta__Status want)
{
    Objmeta__Request q = OBJMETA__REQUEST__INIT;
    Objmeta__HeadRequest hd = OBJMETA__HEAD_REQUEST__INIT;

    hd.bucket = (char *)"tls-bucket";
    hd.key = (char *)key;
    q.body_case = OBJMETA__REQUEST__BODY_HEAD;
    q.head = &hd;
    sc_expect(sc, &q, id, want, NULL);
}

/* A TLS-only replica of g1: a backup, or (replicas: "--replicas=...") its primary. */
static tu_proc *
start_tls_replica(const char *replicas)
{
    char sa[4][768];
    const char *extra[] = {replicas ? "--replica-role=primary" : "--replica-role=backup",
                           "--replica-group=g1",
                           "--plaintext-roles=none",
                           "--request-timeout=3s",
                           sa[0],
                           sa[1],
                           sa[2],
                           sa[3],
                           replicas,
                           "--replica-term=1",
                           "--replica-timeout=500ms",
                           NULL};

    tls_server_args(sa, "optional");
    return it_start_shard(NULL, extra); /* a backup's list ends at replicas (NULL) */
}

START_TEST(tls_replication)
{
    char replicas[96];
    rpc_tls *t_client;
    rpc_sync_client *sp, *sb;
    tu_proc *b, *p;

    make_certs();
    t_client = client_tls("ca", "client");
    b = start_tls_replica(NULL);
    snprintf(replicas, sizeof(replicas), "--replicas=127.0.0.1:%d", tu_proc_port(b, "rpc"));
    p = start_tls_replica(replicas);
    sp = tls_conn(tu_proc_port(p, "rpc"), t_client, NULL);
    sb = tls_conn(tu_proc_port(b, "rpc"), t_client, NULL);
    /* acknowledged: the backup holds it */
    sc_store(sp, 1, "tls-bucket", OBJMETA__STATUS__OK);
    sc_head(sb, 2, "tls-key", OBJMETA__STATUS__OK);
    {
        /* the backup stopped: the write is held, not acknowledged */
        Objmeta__Request q = OBJMETA__REQUEST__INIT;
        Objmeta__StoreRequest st = OBJMETA__STORE_REQUEST__INIT;
        Objmeta__Response *r = NULL;
        om_status ts;

        st.bucket = (char *)"tls-bucket";
        st.key = (char *)"held";
        q.id = 3;
        q.body_case = OBJMETA__REQUEST__BODY_STORE;
        q.store = &st;
        ck_assert_int_eq(kill(tu_proc_pid(b), SIGSTOP), 0);
        ts = rpc_sync_client_call(sp, &q, 2500, &r);
        ck_assert_msg(ts != OM_OK || r->status != OBJMETA__STATUS__OK,
                      "a write was acknowledged while the backup was stopped");
        rpc_response_free(r);
        ck_assert_int_eq(kill(tu_proc_pid(b), SIGCONT), 0);
    }
    {
        /* TLS is the only way in: plaintext to the backup gets no role */
        int fd = it_sock(tu_proc_port(b, "rpc"));
        send_raw_keyed(fd, 4, OBJMETA__REQUEST__BODY_HEAD, "tls-bucket", 10, "tls-key", 7, NULL);
        expect_status(fd, 0, OBJMETA__STATUS__UNAVAILABLE, "speaks TLS");
        close(fd);
    }
    rpc_sync_client_close(sb);
    rpc_sync_client_close(sp);
    stop(p);
    stop(b);
    rpc_tls_free(t_client);
}
END_TEST

static Suite *
tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc;

    tc = tcase_create("tls");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, tls_everywhere);
    tcase_add_test(tc, tls_to_plaintext_port_and_required_certs);
    tcase_add_test(tc, tls_replication);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    const char *tmp = getenv("TMPDIR");
    char base[500];
    int rc;

    snprintf(base, sizeof(base), "%s/objmeta-it-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    snprintf(certdir, sizeof(certdir), "%s/certs", base);
    rc = tu_run(tls_suite());
    tu_rmrf(base);
    return rc;
}
