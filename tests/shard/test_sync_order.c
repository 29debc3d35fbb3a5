/*
 * tests/shard/test_sync_order.c -- the commit pipeline (shard/commit.h): no
 * reply may show a write before it is durable. acked_writes_survive_power_loss
 * runs in both write modes: _i = 0 the pipeline (shard_attach_loop with
 * LSM_SYNC_ALWAYS: writer and sync threads, held replies), _i = 1 the
 * synchronous path (no loop attached: each write synced before its answer),
 * _i = 2 the pipeline with the reads on a read loop (a second server on a
 * thread of its own, shard_rpc_read_loop_handler: replies through
 * commit_send, held for the loop when their group is not durable yet).
 *
 * The shard runs in this process on an rpc server whose loop has its own
 * thread, over tests/lsm's fault env, which knows how much of every file was
 * synced and can simulate a power loss (every file cut back to its synced
 * size, every later write and sync failing).
 *
 *   acked_writes_survive_power_loss: client threads store unique values and
 *     read each other's newest keys (pipelined on the loop with the stores
 *     of others); at a random moment the power fails. Reopened from what was
 *     synced, the shard must hold every acknowledged store, and every value
 *     a Retrieve answered (a read must not be answered before the write it
 *     shows is durable), at least at the version answered.
 *   sync_failure_gives_error_replies: the WAL sync fails: the Store is
 *     answered with an error, and so are a read of that key on the loop and
 *     a List on a worker (both could show the unsynced write).
 *   lease_deadline_stops_replies: a primary's lease (commit_set_lease):
 *     before the deadline replies leave; past it a held Store reply, a
 *     read on the loop and a List on a worker all become UNAVAILABLE.
 */
#include <check.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_env.h"
#include "rpc/rpc.h"
#include "shard/commit.h"
#include "shard/record.h"
#include "shard/shard.h"
#include "shard/shard_int.h"
#include "tu.h"
#include "util/clock.h"

#define CLIENTS 4
#define MAX_OPS 4000 /* per client */

typedef struct server {
    struct event_base *base;
    rpc_server *srv;
    shard *sh;
    tu_loop *loop;
    char addr[64];
    /* the read loop (read_loop_start), or rsrv NULL */
    struct event_base *rbase;
    rpc_server *rsrv;
    tu_loop *rloop;
    om_buf rbuf;
    char raddr[64];
} server;

static void
read_loop_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    server *sv = arg;

    if (!shard_rpc_read_loop_handler(sv->sh, &sv->rbuf, req, reply))
        rpc_reply_error(reply, OM_E_INVALID, "this test's read loop serves reads only");
}

/* A second server for reads on its own thread (the objmeta-shard binary's read loops). */
static void
read_loop_start(server *sv)
{
    rpc_server_opts ro;

    sv->rbase = event_base_new();
    ck_assert_ptr_nonnull(sv->rbase);
    rpc_server_opts_init(&ro);
    ro.listen = "127.0.0.1:0";
    sv->rbuf = OM_BUF_INIT;
    ck_assert_int_eq(rpc_server_new(sv->rbase, &ro, read_loop_handle, sv, &sv->rsrv), OM_OK);
    snprintf(sv->raddr, sizeof(sv->raddr), "127.0.0.1:%d", rpc_server_port(sv->rsrv));
    sv->rloop = tu_loop_start(sv->rbase);
}

static void
server_start(server *sv, const char *dir, fault_env *fe, bool pipeline)
{
    shard_opts so;
    rpc_server_opts ro;

    memset(sv, 0, sizeof(*sv));
    shard_opts_init(&so);
    so.lsm.env = fault_env_get(fe);
    so.lsm.sync_mode = LSM_SYNC_ALWAYS;
    so.workers = 2;
    ck_assert_int_eq(shard_open(dir, &so, &sv->sh), OM_OK);
    sv->base = event_base_new();
    ck_assert_ptr_nonnull(sv->base);
    rpc_server_opts_init(&ro);
    ro.listen = "127.0.0.1:0";
    ck_assert_int_eq(rpc_server_new(sv->base, &ro, shard_rpc_handler, sv->sh, &sv->srv), OM_OK);
    if (pipeline)
        ck_assert_int_eq(shard_attach_loop(sv->sh, sv->base), OM_OK);
    snprintf(sv->addr, sizeof(sv->addr), "127.0.0.1:%d", rpc_server_port(sv->srv));
    snprintf(sv->raddr, sizeof(sv->raddr), "%s", sv->addr); /* until read_loop_start */
    sv->loop = tu_loop_start(sv->base);
}

/* Stop the loop, then free the server and close the shard (its final sync may fail). */
static void
server_stop(server *sv)
{
    if (sv->rsrv != NULL) { /* read loops stop before the shard closes (commit_send) */
        tu_loop_stop(sv->rloop);
        rpc_server_free(sv->rsrv);
        event_base_free(sv->rbase);
        om_buf_free(&sv->rbuf);
    }
    tu_loop_stop(sv->loop);
    rpc_server_free(sv->srv);
    shard_close(sv->sh);
    event_base_free(sv->base);
}

static Objmeta__Response *
call(rpc_sync_client *c, const Objmeta__Request *req)
{
    Objmeta__Response *resp = NULL;
    om_status st = rpc_sync_client_call(c, req, 20000, &resp);

    ck_assert_msg(st == OM_OK, "call: %s %s", om_status_str(st), rpc_sync_client_last_error(c));
    return resp;
}

static Objmeta__Response *
do_store(rpc_sync_client *c, const char *key, const uint8_t *data, size_t n)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;

    sr.bucket = "sync";
    sr.key = (char *)key;
    sr.data.data = (uint8_t *)data;
    sr.data.len = n;
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &sr;
    return call(c, &req);
}

static Objmeta__Response *
do_retrieve(rpc_sync_client *c, const char *key)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;

    rr.bucket = "sync";
    rr.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
    req.retrieve = &rr;
    return call(c, &req);
}

/* What a client saw acknowledged: a key and the version answered. */
typedef struct seen {
    char key[32];
    uint64_t version;
} seen;

typedef struct client {
    server *sv;
    int id;
    uint64_t rnd;
    atomic_int sent; /* keys c<id>-<i> for i < sent have been sent (maybe not acked) */
    struct client *peers;
    seen acked[MAX_OPS], read[MAX_OPS];
    int nacked, nread;
    atomic_int progress; /* acked stores, for the power-loss trigger */
    atomic_bool stop;
} client;

static void *
client_main(void *arg)
{
    client *cl = arg;
    rpc_sync_client *c = NULL, *rc = NULL;
    uint8_t data[256];

    ck_assert_int_eq(rpc_sync_client_open(cl->sv->addr, 5000, &c), OM_OK);
    ck_assert_int_eq(rpc_sync_client_open(cl->sv->raddr, 5000, &rc), OM_OK);
    for (int i = 0; i < MAX_OPS && !atomic_load(&cl->stop); i++) {
        char key[32];
        Objmeta__Response *resp;
        client *peer =
            &cl->peers[(cl->id + 1 + (int)(tu_rand(&cl->rnd) % (CLIENTS - 1))) % CLIENTS];
        int pi;

        snprintf(key, sizeof(key), "c%d-%d", cl->id, i);
        for (size_t k = 0; k < sizeof(data); k += 8) {
            uint64_t r = tu_rand(&cl->rnd);
            memcpy(data + k, &r, 8);
        }
        atomic_store(&cl->sent, i + 1);
        resp = do_store(c, key, data, sizeof(data));
        if (resp->status == OBJMETA__STATUS__OK) {
            ck_assert_ptr_nonnull(resp->store);
            snprintf(cl->acked[cl->nacked].key, sizeof(cl->acked[0].key), "%s", key);
            cl->acked[cl->nacked++].version = resp->store->info->version;
            atomic_fetch_add(&cl->progress, 1);
        }
        rpc_response_free(resp);
        /* the newest key another client sent: its store may be in a pending group */
        pi = atomic_load(&peer->sent) - 1;
        if (pi < 0)
            continue;
        snprintf(key, sizeof(key), "c%d-%d", peer->id, pi);
        resp = do_retrieve(rc, key);
        if (resp->status == OBJMETA__STATUS__OK) {
            ck_assert_ptr_nonnull(resp->retrieve);
            snprintf(cl->read[cl->nread].key, sizeof(cl->read[0].key), "%s", key);
            cl->read[cl->nread++].version = resp->retrieve->info->version;
        }
        rpc_response_free(resp);
    }
    rpc_sync_client_close(c);
    rpc_sync_client_close(rc);
    return NULL;
}

static void
check_seen(shard *sh, const seen *v, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        shard_record rec;
        om_buf raw = OM_BUF_INIT;
        char err[256] = "";
        om_status st = shard_get(sh, om_slice_from_str("sync"), om_slice_from_str(v[i].key), &raw,
                                 &rec, err, sizeof(err));

        ck_assert_msg(st == OM_OK, "%s key %s (version %llu) lost after the power loss: %s", what,
                      v[i].key, (unsigned long long)v[i].version, om_status_str(st));
        ck_assert_msg(rec.version >= v[i].version, "%s key %s: version %llu < answered %llu", what,
                      v[i].key, (unsigned long long)rec.version, (unsigned long long)v[i].version);
        om_buf_free(&raw);
    }
}

START_TEST(acked_writes_survive_power_loss)
{
    uint64_t seed = tu_seed("acked_writes_survive_power_loss"), rnd = seed;

    for (int round = 0; round < 4; round++) {
        const char *dir = tu_tmpdir();
        fault_env *fe = fault_env_new();
        static client cls[CLIENTS];
        pthread_t th[CLIENTS];
        server sv;
        int target = 50 + (int)(tu_rand(&rnd) % 400), total = 0, acks = 0, reads = 0;
        uint64_t deadline = tu_now_ms() + 30000;
        shard *sh;
        shard_opts so;

        server_start(&sv, dir, fe, _i != 1);
        if (_i == 2)
            read_loop_start(&sv);
        for (int i = 0; i < CLIENTS; i++) {
            memset(&cls[i], 0, sizeof(cls[i]));
            cls[i].sv = &sv;
            cls[i].id = i;
            cls[i].rnd = tu_rand(&rnd);
            cls[i].peers = cls;
        }
        for (int i = 0; i < CLIENTS; i++)
            ck_assert_int_eq(pthread_create(&th[i], NULL, client_main, &cls[i]), 0);
        /* power loss once `target` stores were acknowledged (polled, with a deadline) */
        while (total < target && tu_now_ms() < deadline) {
            total = 0;
            for (int i = 0; i < CLIENTS; i++)
                total += atomic_load(&cls[i].progress);
            sched_yield();
        }
        ck_assert_msg(total >= target, "only %d stores acknowledged in 30 s", total);
        fault_env_crash(fe, false, &rnd);
        for (int i = 0; i < CLIENTS; i++)
            atomic_store(&cls[i].stop, true);
        for (int i = 0; i < CLIENTS; i++)
            pthread_join(th[i], NULL);
        server_stop(&sv);
        fault_env_free(fe);

        shard_opts_init(&so);
        ck_assert_int_eq(shard_open(dir, &so, &sh), OM_OK);
        for (int i = 0; i < CLIENTS; i++) {
            check_seen(sh, cls[i].acked, cls[i].nacked, "stored");
            check_seen(sh, cls[i].read, cls[i].nread, "read");
            acks += cls[i].nacked;
            reads += cls[i].nread;
        }
        ck_assert_int_eq(shard_close(sh), OM_OK);
        printf("round %d (%s): power loss after %d acks; %d stores and %d reads acknowledged, "
               "all durable\n",
               round,
               _i == 0   ? "pipeline"
               : _i == 1 ? "synchronous"
                         : "pipeline, read loop",
               target, acks, reads);
        tu_rmrf(dir);
    }
}
END_TEST

START_TEST(sync_failure_gives_error_replies)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    rpc_sync_client *c = NULL, *rc = NULL;
    server sv;
    uint8_t data[64] = {1, 2, 3};
    Objmeta__Response *resp;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest lr = OBJMETA__LIST_REQUEST__INIT;

    server_start(&sv, dir, fe, true);
    read_loop_start(&sv);
    ck_assert_int_eq(rpc_sync_client_open(sv.addr, 5000, &c), OM_OK);
    ck_assert_int_eq(rpc_sync_client_open(sv.raddr, 5000, &rc), OM_OK);
    resp = do_store(c, "before", data, sizeof(data));
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp);

    fault_env_arm(fe, FAULT_SYNC, ".log", 0);
    resp = do_store(c, "lost", data, sizeof(data));
    ck_assert_msg(resp->status != OBJMETA__STATUS__OK, "a store whose sync failed was acked");
    ck_assert_ptr_nonnull(strstr(resp->message, "sync"));
    rpc_response_free(resp);
    /* the key's data is in the memtable but not durable: a read must not show it */
    resp = do_retrieve(c, "lost");
    ck_assert_msg(resp->status != OBJMETA__STATUS__OK, "read of an unsynced write answered");
    rpc_response_free(resp);
    /* nor a read on a read loop (commit_send) */
    resp = do_retrieve(rc, "lost");
    ck_assert_msg(resp->status != OBJMETA__STATUS__OK,
                  "read loop: read of an unsynced write answered");
    rpc_response_free(resp);
    /* List runs on a worker thread: it must not show it either */
    lr.bucket = "sync";
    req.body_case = OBJMETA__REQUEST__BODY_LIST;
    req.list = &lr;
    resp = call(c, &req);
    ck_assert_msg(resp->status != OBJMETA__STATUS__OK, "list after a failed sync answered");
    rpc_response_free(resp);
    /* the engine now refuses writes */
    resp = do_store(c, "after", data, sizeof(data));
    ck_assert_int_ne(resp->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp);
    ck_assert_int_gt(fault_env_injected(fe), 0);
    rpc_sync_client_close(rc);
    rpc_sync_client_close(c);
    server_stop(&sv);
    fault_env_free(fe);
    tu_rmrf(dir);
}
END_TEST

START_TEST(lease_deadline_stops_replies)
{
    const char *dir = tu_tmpdir();
    fault_env *fe = fault_env_new();
    rpc_sync_client *c = NULL;
    server sv;
    uint8_t data[16] = {7};
    Objmeta__Response *resp;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest lr = OBJMETA__LIST_REQUEST__INIT;

    server_start(&sv, dir, fe, true);
    ck_assert_int_eq(rpc_sync_client_open(sv.addr, 5000, &c), OM_OK);
    commit_set_lease(sv.sh->commit, om_clock_mono_ns() + 60ull * 1000000000u);
    resp = do_store(c, "in-lease", data, sizeof(data));
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp);
    commit_set_lease(sv.sh->commit, om_clock_mono_ns()); /* over from now */
    resp = do_store(c, "late", data, sizeof(data));      /* held for its sync, released late */
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(resp->message, "lease"));
    rpc_response_free(resp);
    resp = do_retrieve(c, "in-lease");
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__UNAVAILABLE);
    rpc_response_free(resp);
    lr.bucket = "sync";
    req.body_case = OBJMETA__REQUEST__BODY_LIST;
    req.list = &lr;
    resp = call(c, &req);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__UNAVAILABLE);
    rpc_response_free(resp);
    commit_set_lease(sv.sh->commit, UINT64_MAX); /* no lease: everything leaves again */
    resp = do_retrieve(c, "in-lease");
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    rpc_response_free(resp);
    rpc_sync_client_close(c);
    server_stop(&sv);
    fault_env_free(fe);
    tu_rmrf(dir);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("shard_sync_order");
    TCase *tc = tcase_create("overlapped_sync");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, acked_writes_survive_power_loss, 0, 3);
    tcase_add_test(tc, sync_failure_gives_error_replies);
    tcase_add_test(tc, lease_deadline_stops_replies);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
