/*
 * tests/etcd/test_etcd.c -- the etcd client against a real etcd (suite
 * controlplane): kv round trips with binary keys and prefixes, transactions
 * and their compares, leases, streamed watches (and their resumption across
 * an etcd restart without loss or repeats), failover across endpoints, the
 * errors' wording, and elections (one leader, guarded writes, takeover on
 * resign and on lease loss). Each test starts its own etcd (a checked
 * fixture) and drives the client's loop until a result arrives or a
 * deadline passes. Skipped (exit 77) when etcd is not installed.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd/etcd.h"
#include "util/log.h"
#include "tu.h"
#include "tu_etcd.h"

#define WAIT_MS 10000

static tu_etcd *etcd;
static struct event_base *base;
static struct event *tick;

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static void
setup(void)
{
    struct timeval tv = {0, 20000};

    etcd = tu_etcd_start(1);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    /* a persistent timer so that each loop turn returns to check deadlines */
    tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(tick, &tv);
}

static void
teardown(void)
{
    event_free(tick);
    event_base_free(base);
    tu_etcd_stop(etcd);
}

/* Run the loop until *flag or the deadline; fail the test on the deadline. */
static void
run_until(const bool *flag, const char *what)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (!*flag) {
        ck_assert_msg(tu_now_ms() < deadline, "timed out waiting for %s", what);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

/* A copy of one answer. */
typedef struct got {
    bool done;
    om_status st;
    char err[512];
    int64_t revision, lease_id, ttl, deleted;
    bool succeeded;
    size_t nkvs, nops, op_nkvs[4];
    char keys[16][80];
    char vals[16][80];
    size_t klen[16], vlen[16];
    int64_t create_rev[16], mod_rev[16], lease[16];
} got;

static void
copy_kvs(got *g, const etcd_kv *kvs, size_t n)
{
    for (size_t i = 0; i < n && g->nkvs < 16; i++, g->nkvs++) {
        const etcd_kv *kv = &kvs[i];

        ck_assert_uint_lt(kv->key.n, 80);
        ck_assert_uint_lt(kv->value.n, 80);
        memcpy(g->keys[g->nkvs], kv->key.p, kv->key.n);
        memcpy(g->vals[g->nkvs], kv->value.p, kv->value.n);
        g->klen[g->nkvs] = kv->key.n;
        g->vlen[g->nkvs] = kv->value.n;
        g->create_rev[g->nkvs] = kv->create_revision;
        g->mod_rev[g->nkvs] = kv->mod_revision;
        g->lease[g->nkvs] = kv->lease;
    }
}

static void
got_cb(const etcd_resp *r, void *arg)
{
    got *g = arg;

    memset(g, 0, sizeof(*g));
    g->done = true;
    g->st = r->st;
    snprintf(g->err, sizeof(g->err), "%s", r->err);
    g->revision = r->revision;
    g->lease_id = r->lease_id;
    g->ttl = r->ttl;
    g->deleted = r->deleted;
    g->succeeded = r->succeeded;
    copy_kvs(g, r->kvs, r->nkvs);
    g->nops = r->nops;
    for (size_t i = 0; i < r->nops && i < 4; i++) {
        g->op_nkvs[i] = r->ops[i].nkvs;
        copy_kvs(g, r->ops[i].kvs, r->ops[i].nkvs);
    }
}

static etcd_client *
client(const char *endpoints, int timeout_ms)
{
    etcd_opts o;
    etcd_client *c = NULL;
    char err[256];

    etcd_opts_init(&o);
    o.endpoints = endpoints;
    if (timeout_ms > 0)
        o.timeout_ms = timeout_ms;
    ck_assert_msg(etcd_client_new(base, &o, err, sizeof(err), &c) == OM_OK, "%s", err);
    return c;
}

static om_slice
S(const char *s)
{
    return om_slice_from_str(s);
}

static void
sync_put(etcd_client *c, om_slice k, om_slice v, int64_t lease, got *g)
{
    g->done = false;
    ck_assert_int_eq(etcd_put(c, k, v, lease, got_cb, g), OM_OK);
    run_until(&g->done, "put");
    ck_assert_msg(g->st == OM_OK, "put: %s", g->err);
}

static void
sync_range(etcd_client *c, om_slice k, bool prefix, got *g)
{
    g->done = false;
    ck_assert_int_eq(etcd_range(c, k, prefix, got_cb, g), OM_OK);
    run_until(&g->done, "range");
}

START_TEST(kv_roundtrip_binary_and_prefix)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 0);
    got g;
    /* keys with a NUL and a 0xff byte: the prefix end must carry past 0xff */
    om_slice k1 = om_slice_make("p/\xff\x00"
                                "a",
                                5),
             k2 = om_slice_make("p/\xff\xff", 4);

    sync_put(c, S("p/a"), S("1"), 0, &g);
    sync_put(c, S("p/b"), om_slice_make("", 0), 0, &g);
    sync_put(c, k1, om_slice_make("\x00\x01\x02", 3), 0, &g);
    sync_put(c, k2, S("4"), 0, &g);
    sync_put(c, S("q"), S("outside"), 0, &g);
    ck_assert_int_gt(g.revision, 0);

    sync_range(c, S("p/a"), false, &g);
    ck_assert_int_eq(g.st, OM_OK);
    ck_assert_uint_eq(g.nkvs, 1);
    ck_assert_mem_eq(g.vals[0], "1", 1);
    ck_assert_int_gt(g.create_rev[0], 0);

    sync_range(c, S("p/"), true, &g);
    ck_assert_int_eq(g.st, OM_OK);
    ck_assert_uint_eq(g.nkvs, 4);
    ck_assert_uint_eq(g.vlen[1], 0); /* empty value comes back empty */
    ck_assert_uint_eq(g.klen[2], 5);
    ck_assert_mem_eq(g.keys[2], k1.p, 5);
    ck_assert_uint_eq(g.vlen[2], 3);
    ck_assert_mem_eq(g.vals[2], "\x00\x01\x02", 3);
    ck_assert_mem_eq(g.keys[3], k2.p, 4);

    sync_range(c, k2, true, &g); /* a prefix of only 0xff bytes after "p/" */
    ck_assert_uint_eq(g.nkvs, 1);

    g.done = false;
    ck_assert_int_eq(etcd_delete(c, S("p/"), true, got_cb, &g), OM_OK);
    run_until(&g.done, "delete");
    ck_assert_int_eq(g.st, OM_OK);
    ck_assert_int_eq(g.deleted, 4);
    sync_range(c, S("p/"), true, &g);
    ck_assert_uint_eq(g.nkvs, 0);
    sync_range(c, S("q"), false, &g);
    ck_assert_uint_eq(g.nkvs, 1);
    etcd_client_free(c);
}
END_TEST

START_TEST(txn_compares_decide)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 0);
    etcd_txn *t;
    got g;
    int64_t rev;

    /* create if absent: the first wins, the second sees the holder */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
        etcd_txn_cmp(t, S("ring"), ETCD_CMP_CREATE, ETCD_EQ, 0);
        etcd_txn_put(t, true, S("ring"), i == 0 ? S("e1") : S("e1-other"), 0);
        etcd_txn_range(t, false, S("ring"), false);
        g.done = false;
        ck_assert_int_eq(etcd_txn_send(c, t, got_cb, &g), OM_OK);
        etcd_txn_free(t);
        run_until(&g.done, "txn");
        ck_assert_msg(g.st == OM_OK, "%s", g.err);
        ck_assert_int_eq(g.succeeded, i == 0);
        ck_assert_uint_eq(g.nops, 1);
        if (i == 1) {
            ck_assert_uint_eq(g.op_nkvs[0], 1);
            ck_assert_mem_eq(g.vals[0], "e1", 2);
            ck_assert_uint_eq(g.vlen[0], 2);
        }
    }
    sync_range(c, S("ring"), false, &g);
    rev = g.mod_rev[0];

    /* compare-and-swap on mod_revision: a stale revision loses */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
        etcd_txn_cmp(t, S("ring"), ETCD_CMP_MOD, ETCD_EQ, rev);
        etcd_txn_cmp_value(t, S("ring"), ETCD_EQ, S("e1"));
        etcd_txn_put(t, true, S("ring"), S("e2"), 0);
        etcd_txn_put(t, true, S("phase"), S("copying"), 0);
        g.done = false;
        ck_assert_int_eq(etcd_txn_send(c, t, got_cb, &g), OM_OK);
        etcd_txn_free(t);
        run_until(&g.done, "cas");
        ck_assert_int_eq(g.st, OM_OK);
        ck_assert_int_eq(g.succeeded, i == 0);
    }
    sync_range(c, S("phase"), false, &g);
    ck_assert_uint_eq(g.nkvs, 1);
    ck_assert_mem_eq(g.vals[0], "copying", 7);

    /* a put under a lease that does not exist is an error naming etcd */
    ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
    etcd_txn_put(t, true, S("x"), S("y"), 12345);
    g.done = false;
    ck_assert_int_eq(etcd_txn_send(c, t, got_cb, &g), OM_OK);
    etcd_txn_free(t);
    run_until(&g.done, "txn with a bad lease");
    ck_assert_int_eq(g.st, OM_E_NOTFOUND);
    ck_assert_msg(strstr(g.err, "etcd http://127.0.0.1:") != NULL && strstr(g.err, "kv/txn"), "%s",
                  g.err);
    etcd_client_free(c);
}
END_TEST

START_TEST(lease_grant_keepalive_revoke)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 0);
    got g;
    int64_t id;

    g.done = false;
    ck_assert_int_eq(etcd_lease_grant(c, 5, got_cb, &g), OM_OK);
    run_until(&g.done, "grant");
    ck_assert_msg(g.st == OM_OK, "%s", g.err);
    ck_assert_int_ne(g.lease_id, 0);
    ck_assert_int_eq(g.ttl, 5);
    id = g.lease_id;
    sync_put(c, S("leased"), S("v"), id, &g);
    sync_range(c, S("leased"), false, &g);
    ck_assert_int_eq(g.lease[0], id);

    g.done = false;
    ck_assert_int_eq(etcd_lease_keepalive(c, id, got_cb, &g), OM_OK);
    run_until(&g.done, "keepalive");
    ck_assert_msg(g.st == OM_OK, "%s", g.err);
    ck_assert_int_eq(g.ttl, 5);

    g.done = false;
    ck_assert_int_eq(etcd_lease_revoke(c, id, got_cb, &g), OM_OK);
    run_until(&g.done, "revoke");
    ck_assert_msg(g.st == OM_OK, "%s", g.err);
    sync_range(c, S("leased"), false, &g);
    ck_assert_uint_eq(g.nkvs, 0); /* the key went with its lease */

    g.done = false;
    ck_assert_int_eq(etcd_lease_keepalive(c, id, got_cb, &g), OM_OK);
    run_until(&g.done, "keepalive of a revoked lease");
    ck_assert_int_eq(g.st, OM_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(g.err, "lease/keepalive"));
    ck_assert_int_eq(etcd_lease_grant(c, 0, got_cb, &g), OM_E_INVALID);
    etcd_client_free(c);
}
END_TEST

/* ---- watches ---- */

typedef struct wlog {
    int n;             /* events seen */
    char what[64][24]; /* "P key=value" / "D key" */
    int64_t rev[64];
    om_status end;
    bool ended;
    etcd_watch *self;
    bool free_in_cb; /* free the watch from inside the callback at the 2nd event */
} wlog;

static void
wlog_cb(const etcd_watch_batch *b, void *arg)
{
    wlog *l = arg;

    if (b->st != OM_OK) {
        l->ended = true;
        l->end = b->st;
        return;
    }
    for (size_t i = 0; i < b->nevents && l->n < 64; i++, l->n++) {
        const etcd_event *e = &b->events[i];

        snprintf(l->what[l->n], sizeof(l->what[0]), "%c %.*s=%.*s",
                 e->type == ETCD_EV_PUT ? 'P' : 'D', (int)e->kv.key.n, (const char *)e->kv.key.p,
                 (int)e->kv.value.n, (const char *)e->kv.value.p);
        l->rev[l->n] = e->kv.mod_revision;
    }
    if (l->free_in_cb && l->n >= 2) {
        etcd_watch_free(l->self);
        l->self = NULL;
    }
}

static void
wait_events(wlog *l, int n)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (l->n < n) {
        ck_assert_msg(tu_now_ms() < deadline, "timed out: %d of %d watch events", l->n, n);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static void
wait_live(etcd_watch *w)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (!etcd_watch_is_live(w)) {
        ck_assert_msg(tu_now_ms() < deadline, "watch did not become live");
        event_base_loop(base, EVLOOP_ONCE);
    }
}

START_TEST(watch_streams_events_in_order)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 0);
    wlog l = {0}, old = {0};
    etcd_watch *w, *w2;
    got g;
    int64_t first;

    sync_put(c, S("w/before"), S("0"), 0, &g);
    first = g.revision;
    ck_assert_int_eq(etcd_watch_new(c, S("w/"), true, 0, wlog_cb, &l, &w), OM_OK);
    wait_live(w);
    sync_put(c, S("w/a"), S("1"), 0, &g);
    sync_put(c, S("other"), S("x"), 0, &g); /* outside the prefix */
    sync_put(c, S("w/a"), S("2"), 0, &g);
    g.done = false;
    ck_assert_int_eq(etcd_delete(c, S("w/a"), false, got_cb, &g), OM_OK);
    run_until(&g.done, "delete");
    wait_events(&l, 3);
    ck_assert_str_eq(l.what[0], "P w/a=1");
    ck_assert_str_eq(l.what[1], "P w/a=2");
    ck_assert_str_eq(l.what[2], "D w/a=");
    ck_assert_int_lt(l.rev[0], l.rev[1]);

    /* from an old revision: the history replays, starting with w/before */
    ck_assert_int_eq(etcd_watch_new(c, S("w/"), true, first, wlog_cb, &old, &w2), OM_OK);
    wait_events(&old, 4);
    ck_assert_str_eq(old.what[0], "P w/before=0");
    ck_assert_str_eq(old.what[3], "D w/a=");
    etcd_watch_free(w2);

    /* freed from inside its callback: nothing more arrives, nothing breaks */
    old = (wlog){.free_in_cb = true};
    ck_assert_int_eq(etcd_watch_new(c, S("w/"), true, first, wlog_cb, &old, &old.self), OM_OK);
    wait_events(&old, 2);
    ck_assert_ptr_null(old.self);
    sync_put(c, S("w/z"), S("9"), 0, &g);
    wait_events(&l, 4);
    ck_assert_int_le(old.n, 4); /* the batch in hand, never more */
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

START_TEST(watch_resumes_across_etcd_restart)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 1000);
    wlog l = {0};
    etcd_watch *w;
    got g;

    ck_assert_int_eq(etcd_watch_new(c, S("r/"), true, 0, wlog_cb, &l, &w), OM_OK);
    wait_live(w);
    sync_put(c, S("r/1"), S("a"), 0, &g);
    wait_events(&l, 1);
    tu_etcd_restart_member(etcd, 0);
    /* the stream broke; a write made before the watch reopens must still arrive, once */
    for (;;) {
        g.done = false;
        ck_assert_int_eq(etcd_put(c, S("r/2"), S("b"), 0, got_cb, &g), OM_OK);
        run_until(&g.done, "put after restart");
        if (g.st == OM_OK)
            break;
        /* the client may still hold the dead connection once: an honest error */
        ck_assert_msg(g.st == OM_E_UNAVAILABLE || g.st == OM_E_TIMEOUT, "%s", g.err);
    }
    sync_put(c, S("r/3"), S("c"), 0, &g);
    wait_events(&l, 3);
    ck_assert_str_eq(l.what[0], "P r/1=a");
    ck_assert_str_eq(l.what[1], "P r/2=b");
    ck_assert_str_eq(l.what[2], "P r/3=c");
    /* no repeats: nothing more turns up while the loop runs a little */
    for (uint64_t until = tu_now_ms() + 300; tu_now_ms() < until;)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(l.n, 3);
    ck_assert(!l.ended);
    etcd_watch_free(w);
    etcd_client_free(c);
}
END_TEST

/* ---- endpoints and errors ---- */

START_TEST(failover_and_error_messages)
{
    char eps[256], err[256];
    int dead = tu_free_port();
    etcd_client *c;
    etcd_opts o;
    etcd_txn *t;
    got g;

    /* bad lists are refused with the culprit named */
    etcd_opts_init(&o);
    o.endpoints = "http://127.0.0.1:2379,,x";
    ck_assert_int_eq(etcd_client_new(base, &o, err, sizeof(err), &c), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "empty entry"));
    o.endpoints = "http://127.0.0.1:99999";
    ck_assert_int_eq(etcd_client_new(base, &o, err, sizeof(err), &c), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "127.0.0.1:99999"));
    o.endpoints = "https://127.0.0.1:2379";
    ck_assert_int_eq(etcd_client_new(base, &o, err, sizeof(err), &c), OM_E_INVALID);
    o.endpoints = "localhost";
    ck_assert_int_eq(etcd_client_new(base, &o, err, sizeof(err), &c), OM_E_INVALID);

    /* a dead endpoint first: a range moves on and succeeds */
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,%s", dead, tu_etcd_endpoints(etcd));
    c = client(eps, 2000);
    sync_range(c, S("nothing"), false, &g);
    ck_assert_msg(g.st == OM_OK, "%s", g.err);
    ck_assert_str_eq(etcd_client_endpoint(c), tu_etcd_member_url(etcd, 0));
    etcd_client_free(c);

    /* a txn is never retried: it fails naming the dead endpoint, the next one works */
    c = client(eps, 2000);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
        etcd_txn_put(t, true, S("k"), S("v"), 0);
        g.done = false;
        ck_assert_int_eq(etcd_txn_send(c, t, got_cb, &g), OM_OK);
        etcd_txn_free(t);
        run_until(&g.done, "txn");
        if (i == 0) {
            char want[64];

            snprintf(want, sizeof(want), "etcd http://127.0.0.1:%d kv/txn: ", dead);
            ck_assert_int_eq(g.st, OM_E_UNAVAILABLE);
            ck_assert_msg(strncmp(g.err, want, strlen(want)) == 0, "%s", g.err);
        } else {
            ck_assert_msg(g.st == OM_OK && g.succeeded, "%s", g.err);
        }
    }
    etcd_client_free(c);

    /* nothing alive: UNAVAILABLE within the deadline */
    snprintf(eps, sizeof(eps), "127.0.0.1:%d", dead);
    c = client(eps, 1000);
    sync_range(c, S("k"), false, &g);
    ck_assert_int_eq(g.st, OM_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(g.err, "etcd http://127.0.0.1:"));
    ck_assert_ptr_nonnull(strstr(g.err, "kv/range"));
    etcd_client_free(c);
}
END_TEST

/* No fixture: three members of its own. */
START_TEST(three_members_survive_one_loss)
{
    struct timeval tv = {0, 20000};
    etcd_client *c;
    wlog l = {0};
    etcd_watch *w;
    got g;
    int used = -1;

    etcd = tu_etcd_start(3);
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(tick, &tv);
    c = client(tu_etcd_endpoints(etcd), 2000);
    ck_assert_int_eq(etcd_watch_new(c, S("m/"), true, 0, wlog_cb, &l, &w), OM_OK);
    wait_live(w);
    sync_put(c, S("m/1"), S("a"), 0, &g);
    wait_events(&l, 1);
    for (int i = 0; i < 3; i++)
        if (strcmp(etcd_client_endpoint(c), tu_etcd_member_url(etcd, i)) == 0)
            used = i;
    ck_assert_int_ge(used, 0);
    tu_etcd_stop_member(etcd, used);    /* the member this client talks to */
    sync_range(c, S("m/1"), false, &g); /* retried on the next member */
    ck_assert_msg(g.st == OM_OK, "%s", g.err);
    ck_assert_str_ne(etcd_client_endpoint(c), tu_etcd_member_url(etcd, used));
    sync_put(c, S("m/2"), S("b"), 0, &g);
    wait_events(&l, 2); /* the watch moved too */
    ck_assert_str_eq(l.what[1], "P m/2=b");
    etcd_watch_free(w);
    etcd_client_free(c);
    event_free(tick);
    event_base_free(base);
    tu_etcd_stop(etcd);
}
END_TEST

START_TEST(client_free_drops_pending)
{
    etcd_client *c = client(tu_etcd_endpoints(etcd), 0);
    got g[8];

    for (int i = 0; i < 8; i++) {
        g[i].done = false;
        ck_assert_int_eq(etcd_range(c, S("x"), false, got_cb, &g[i]), OM_OK);
    }
    etcd_client_free(c); /* no callback may run after this */
    for (uint64_t until = tu_now_ms() + 200; tu_now_ms() < until;)
        event_base_loop(base, EVLOOP_ONCE);
    for (int i = 0; i < 8; i++)
        ck_assert(!g[i].done);
}
END_TEST

/* ---- elections ---- */

typedef struct cand {
    etcd_election *e;
    etcd_role role;
    char leader[32];
    int changes;
    int step_downs; /* LEADER -> FOLLOWER transitions seen */
} cand;

static void
cand_cb(etcd_election *e, etcd_role role, om_slice leader, void *arg)
{
    cand *c = arg;

    if (c->role == ETCD_LEADER && role == ETCD_FOLLOWER)
        c->step_downs++;
    c->role = role;
    snprintf(c->leader, sizeof(c->leader), "%.*s", (int)leader.n, (const char *)leader.p);
    c->changes++;
}

static void
wait_cond(bool (*fn)(void *), void *arg, const char *what)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (!fn(arg)) {
        ck_assert_msg(tu_now_ms() < deadline, "timed out waiting for %s", what);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static bool
one_leader(void *arg)
{
    cand *c = arg;
    int n = etcd_election_is_leader(c[0].e) + etcd_election_is_leader(c[1].e);

    return n == 1 && strcmp(c[0].leader, c[1].leader) == 0 && c[0].leader[0] != '\0';
}

/* arg: cand *[2]; the first leads and the second knows it */
static bool
took_over(void *arg)
{
    cand **p = arg;

    return etcd_election_is_leader(p[0]->e) && strcmp(p[1]->leader, p[0]->leader) == 0;
}

static bool
stepped_down_and_one_leader(void *arg)
{
    cand *c = arg;

    return c[0].step_downs == 1 && one_leader(c);
}

static void
guarded_put(etcd_client *cl, const etcd_election *e, int64_t won_rev_override, got *g)
{
    etcd_txn *t;

    ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
    if (won_rev_override == 0) {
        ck_assert_int_eq(etcd_election_guard(e, t), OM_OK);
    } else {
        etcd_txn_cmp(t, S("leader"), ETCD_CMP_CREATE, ETCD_EQ, won_rev_override);
    }
    etcd_txn_put(t, true, S("state"), S("written"), 0);
    g->done = false;
    ck_assert_int_eq(etcd_txn_send(cl, t, got_cb, g), OM_OK);
    etcd_txn_free(t);
    run_until(&g->done, "guarded put");
    ck_assert_msg(g->st == OM_OK, "%s", g->err);
}

START_TEST(election_one_leader_and_takeover)
{
    etcd_client *c1 = client(tu_etcd_endpoints(etcd), 0);
    etcd_client *c2 = client(tu_etcd_endpoints(etcd), 0);
    cand cs[2] = {{0}, {0}};
    cand *lead, *follow;
    etcd_txn *t;
    got g;
    int64_t old_rev;

    ck_assert_int_eq(etcd_election_new(c1, S("leader"), 2, cand_cb, &cs[0], &cs[0].e), OM_OK);
    ck_assert_int_eq(etcd_election_new(c2, S("leader"), 2, cand_cb, &cs[1], &cs[1].e), OM_OK);
    ck_assert_int_eq(etcd_election_campaign(cs[0].e, S("A")), OM_OK);
    ck_assert_int_eq(etcd_election_campaign(cs[1].e, S("B")), OM_OK);
    wait_cond(one_leader, cs, "exactly one leader");
    lead = etcd_election_is_leader(cs[0].e) ? &cs[0] : &cs[1];
    follow = lead == &cs[0] ? &cs[1] : &cs[0];
    ck_assert_str_eq(lead->leader, lead == &cs[0] ? "A" : "B");
    ck_assert_str_eq(follow->leader, lead->leader); /* the follower knows who leads */
    ck_assert(!etcd_election_is_leader(follow->e));
    ck_assert_int_ne(etcd_election_lease(lead->e), 0);

    /* the follower cannot build a guard; the leader's guarded write applies */
    ck_assert_int_eq(etcd_txn_new(&t), OM_OK);
    ck_assert_int_eq(etcd_election_guard(follow->e, t), OM_E_PRECONDITION);
    etcd_txn_free(t);
    guarded_put(c1, lead->e, 0, &g);
    ck_assert(g.succeeded);
    sync_range(c1, S("leader"), false, &g);
    old_rev = g.create_rev[0];

    /* resign: the other candidate takes over, and the old leader learns who */
    etcd_election_resign(lead->e);
    ck_assert(!etcd_election_is_leader(lead->e));
    {
        cand *pair[2] = {follow, lead};

        wait_cond(took_over, pair, "takeover after resign");
    }
    /* a write guarded by the old leader's revision is refused */
    guarded_put(c1, lead->e, old_rev, &g);
    ck_assert(!g.succeeded);

    etcd_election_free(cs[0].e);
    etcd_election_free(cs[1].e);
    etcd_client_free(c1);
    etcd_client_free(c2);
}
END_TEST

static bool
a_leads(void *arg)
{
    cand *c = arg;

    return etcd_election_is_leader(c->e) && c->role == ETCD_LEADER;
}

static bool
a_follows(void *arg)
{
    cand *c = arg;

    return !etcd_election_is_leader(c->e) && c->role == ETCD_FOLLOWER;
}

START_TEST(election_lost_lease_steps_down)
{
    etcd_client *c1 = client(tu_etcd_endpoints(etcd), 0);
    etcd_client *c2 = client(tu_etcd_endpoints(etcd), 0);
    cand cs[2] = {{0}, {0}};
    int64_t old_rev;
    got g;

    ck_assert_int_eq(etcd_election_new(c1, S("leader"), 2, cand_cb, &cs[0], &cs[0].e), OM_OK);
    ck_assert_int_eq(etcd_election_campaign(cs[0].e, S("A")), OM_OK);
    wait_cond(a_leads, &cs[0], "A leads");
    sync_range(c1, S("leader"), false, &g);
    old_rev = g.create_rev[0];
    ck_assert_int_eq(etcd_election_new(c2, S("leader"), 2, cand_cb, &cs[1], &cs[1].e), OM_OK);
    ck_assert_int_eq(etcd_election_campaign(cs[1].e, S("B")), OM_OK);
    /* someone else revokes A's lease (as etcd does when it expires) */
    g.done = false;
    ck_assert_int_eq(etcd_lease_revoke(c2, etcd_election_lease(cs[0].e), got_cb, &g), OM_OK);
    run_until(&g.done, "revoke");
    ck_assert_int_eq(g.st, OM_OK);
    /* A learns it lost; then one of the two leads (A again, under a new lease, or B) */
    wait_cond(stepped_down_and_one_leader, cs, "A stepped down, then one leader");
    /* whoever leads now, a write guarded by A's first term is refused */
    guarded_put(c1, cs[0].e, old_rev, &g);
    ck_assert(!g.succeeded);
    etcd_election_free(cs[0].e);
    etcd_election_free(cs[1].e);
    etcd_client_free(c1);
    etcd_client_free(c2);
}
END_TEST

START_TEST(election_steps_down_without_etcd)
{
    etcd_client *c1 = client(tu_etcd_endpoints(etcd), 500);
    cand a = {0};
    uint64_t t0;

    ck_assert_int_eq(etcd_election_new(c1, S("leader"), 2, cand_cb, &a, &a.e), OM_OK);
    ck_assert_int_eq(etcd_election_campaign(a.e, S("A")), OM_OK);
    wait_cond(a_leads, &a, "A leads");
    tu_etcd_stop_member(etcd, 0);
    t0 = tu_now_ms();
    wait_cond(a_follows, &a, "A steps down without etcd");
    /* by the local clock: no later than one TTL after the last confirmed keep-alive */
    ck_assert_uint_le(tu_now_ms() - t0, 2000 + 200);
    tu_etcd_restart_member(etcd, 0);
    wait_cond(a_leads, &a, "A leads again once etcd is back");
    etcd_election_free(a.e);
    etcd_client_free(c1);
}
END_TEST

/*
 * The harness's tu_free_port claims each port it gives (and port + 1000)
 * for as long as the test process lives: another process -- another test
 * drawing ports while this one's server is down for a restart -- cannot
 * take the claim (its lock attempt would block), and once this process is
 * gone the claim is free again.
 */
START_TEST(free_ports_are_claimed_across_processes)
{
    int port = tu_free_port(), status = 0;
    pid_t pid;

    for (int k = 0; k < 2; k++) {
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            char path[64];
            int fd;

            /* the harness's claim file (tu_etcd.c, TU_PORT_DIR) */
            snprintf(path, sizeof(path), "/tmp/objmeta-tu-ports/%d", port + 1000 * k);
            fd = open(path, O_RDWR | O_CLOEXEC);
            _exit(fd < 0 ? 2 : flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK ? 0 : 1);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "port %d: another process could claim it (exit %d)", port + 1000 * k,
                      WEXITSTATUS(status));
    }
    /* A process that claimed a port and ended leaves it free to claim. */
    int fds[2], theirs = 0, fd;
    char path[64];

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int p = tu_free_port();

        _exit(write(fds[1], &p, sizeof(p)) == (ssize_t)sizeof(p) ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(read(fds[0], &theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
    close(fds[0]);
    close(fds[1]);
    snprintf(path, sizeof(path), "/tmp/objmeta-tu-ports/%d", theirs);
    fd = open(path, O_RDWR | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "no claim file for port %d", theirs);
    ck_assert_msg(flock(fd, LOCK_EX | LOCK_NB) == 0, "port %d still claimed", theirs);
    close(fd);
}
END_TEST

static Suite *
etcd_suite(void)
{
    Suite *s = suite_create("etcd");
    TCase *tc = tcase_create("etcd");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kv_roundtrip_binary_and_prefix);
    tcase_add_test(tc, txn_compares_decide);
    tcase_add_test(tc, lease_grant_keepalive_revoke);
    tcase_add_test(tc, watch_streams_events_in_order);
    tcase_add_test(tc, watch_resumes_across_etcd_restart);
    tcase_add_test(tc, failover_and_error_messages);
    tcase_add_test(tc, client_free_drops_pending);
    tcase_add_test(tc, election_one_leader_and_takeover);
    tcase_add_test(tc, election_lost_lease_steps_down);
    tcase_add_test(tc, election_steps_down_without_etcd);
    tcase_add_test(tc, free_ports_are_claimed_across_processes);
    suite_add_tcase(s, tc);
    tc = tcase_create("etcd-3-members");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, three_members_survive_one_loss);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    om_log_level lvl;

    if (getenv("OM_TEST_LOG") != NULL && om_log_level_parse(getenv("OM_TEST_LOG"), &lvl) == OM_OK)
        om_log_set_level(lvl);
    if (!tu_etcd_available())
        return 77;
    return tu_run(etcd_suite());
}
