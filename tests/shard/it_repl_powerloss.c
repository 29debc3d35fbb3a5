/*
 * tests/shard/it_repl_powerloss.c -- power loss of a backup while the
 * primary ships to it (issue 18; shard/REPLICATION.md, "Crashes"): a real
 * objmeta-shard primary (static membership) ships to a backup that runs in
 * this process over tests/lsm's fault env, which knows how much of every
 * file was synced. Writers store and delete through the primary, a lister
 * pages through the bucket; at a random moment (seeded, printed) the backup
 * loses power: every file is cut back to what was synced, plus a random
 * torn part of the rest, and every later write fails.
 *
 *   backup_power_loss   three rounds. After each loss the backup's engine is
 *                       reopened from what survived and must hold every
 *                       write and delete a client was answered for (a
 *                       backup acknowledges a group only once it is
 *                       durable, and the primary answers only then); it
 *                       serves again on its address, catches up from the
 *                       primary while the writers go on, and ends with the
 *                       same records as the primary, key by key and by
 *                       `objmeta admin verify`. Listings never repeat a key
 *                       nor miss a stable key.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_env.h"
#include "it_util.h"
#include "it_writers.h"
#include "shard/record.h"
#include "shard/repl.h"
#include "shard/shard.h"
#include "util/clock.h"

#define BUCKET "powerloss"
#define GROUP "g1"
#define WRITERS 3
#define NSTABLE 30 /* "s-%03d": written first, never again */

/* ---- the backup: a shard and its replica over the fault env, served on a loop thread ---- */

typedef struct backup {
    fault_env *fe;
    shard *sh;
    shard_replica *rep;
    struct event_base *base;
    rpc_server *srv;
    tu_loop *loop;
    int port;
} backup;

static void
backup_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    backup *b = arg;

    if (!shard_replica_handle(b->rep, req, reply))
        shard_rpc_handler(b->sh, req, reply);
}

/* Open the backup on dir (a new fault env) and serve it on port (0: a free one). */
static void
backup_start(backup *b, const char *dir, int port)
{
    shard_opts so;
    rpc_server_opts ro;
    char listen[64];
    uint64_t deadline = tu_now_ms() + 10000;

    memset(b, 0, sizeof(*b));
    b->fe = fault_env_new();
    shard_opts_init(&so);
    so.lsm.env = fault_env_get(b->fe);
    so.lsm.sync_mode = LSM_SYNC_ALWAYS;
    so.workers = 2;
    ck_assert_int_eq(shard_open(dir, &so, &b->sh), OM_OK);
    ck_assert_int_eq(shard_replica_open(b->sh, GROUP, &b->rep), OM_OK);
    b->base = event_base_new();
    ck_assert_ptr_nonnull(b->base);
    rpc_server_opts_init(&ro);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    ro.listen = listen;
    /* the same address again after a power loss: the primary names it */
    while (rpc_server_new(b->base, &ro, backup_handle, b, &b->srv) != OM_OK) {
        ck_assert_msg(tu_now_ms() < deadline, "the backup cannot listen on %s again", listen);
        om_clock_sleep_ms(50);
    }
    b->port = rpc_server_port(b->srv);
    b->loop = tu_loop_start(b->base);
}

/* Stop serving and close (after a power loss every write fails: errors are expected). */
static void
backup_stop(backup *b)
{
    tu_loop_stop(b->loop);
    rpc_server_free(b->srv);
    shard_replica_close(b->rep);
    (void)shard_close(b->sh);
    event_base_free(b->base);
    fault_env_free(b->fe);
}

/* ---- the load: the writers (it_writers.h) and a lister ---- */

typedef struct lister {
    const char *addr;
    atomic_bool *stop;
    atomic_int lists;
    char failure[200];
} lister;

static void *
lister_main(void *arg)
{
    lister *l = arg;
    omc_client *c = NULL;
    char msg[128];

    while (!atomic_load(l->stop)) {
        char token[1024] = "", last[64] = "";
        int next_stable = 0;
        bool cut = false;

        if (c == NULL && omc_connect(l->addr, 1000, &c, msg, sizeof(msg)) != OM_OK) {
            c = NULL;
            om_clock_sleep_ms(20); /* backoff */
            continue;
        }
        omc_set_timeout(c, 2000);
        for (bool more = true; more && !cut;) {
            omc_list_opts lo = {.max_keys = 20, .continuation_token = token[0] ? token : NULL};
            omc_list_page pg;

            if (omc_list(c, BUCKET, &lo, &pg) != OM_OK) {
                cut = true; /* held behind the backup's absence: start again */
                omc_close(c);
                c = NULL;
                break;
            }
            for (size_t i = 0; i < pg.n_entries; i++) {
                const char *k = pg.entries[i].key ? pg.entries[i].key : "";

                if ((last[0] && strcmp(k, last) <= 0) ||
                    (strncmp(k, "s-", 2) == 0 && atoi(k + 2) != next_stable++))
                    if (l->failure[0] == '\0')
                        snprintf(l->failure, sizeof(l->failure),
                                 "a listing repeated, reordered or missed a key at %s", k);
                snprintf(last, sizeof(last), "%s", k);
            }
            snprintf(token, sizeof(token), "%s", pg.next_continuation_token);
            more = pg.is_truncated;
            omc_list_page_free(&pg);
        }
        if (!cut && next_stable != NSTABLE && l->failure[0] == '\0')
            snprintf(l->failure, sizeof(l->failure), "a listing held %d of %d stable keys",
                     next_stable, NSTABLE);
        if (!cut)
            atomic_fetch_add(&l->lists, 1);
    }
    omc_close(c);
    return NULL;
}

typedef struct load {
    it_writer w[WRITERS];
    lister l;
    pthread_t th[WRITERS + 1];
    atomic_bool stop;
} load;

static void
load_start(load *L, const char *addr, uint64_t seed)
{
    atomic_store(&L->stop, false);
    /* a write held while the backup is away times out: its key is uncertain */
    it_writers_start(L->w, L->th, WRITERS,
                     &(it_writer){.addrs = {addr},
                                  .naddrs = 1,
                                  .bucket = BUCKET,
                                  .connect_ms = 1000,
                                  .timeout_ms = 2000,
                                  .stop = &L->stop},
                     seed);
    L->l.addr = addr;
    L->l.stop = &L->stop;
    ck_assert_int_eq(pthread_create(&L->th[WRITERS], NULL, lister_main, &L->l), 0);
}

static void
load_stop(load *L)
{
    atomic_store(&L->stop, true);
    for (int i = 0; i <= WRITERS; i++)
        pthread_join(L->th[i], NULL);
    ck_assert_msg(L->l.failure[0] == '\0', "%s", L->l.failure);
}

/* Every acknowledged write and delete on the backup's reopened engine. */
static int
check_backup_engine(shard *sh, load *L)
{
    int checked = 0;

    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < IT_WRITER_KEYS; k++) {
            shard_record rec;
            om_buf raw = OM_BUF_INIT;
            char key[32], err[256] = "";
            om_status st;

            it_writer_key(i, k, key, sizeof(key));
            st = shard_get(sh, om_slice_from_str(BUCKET), om_slice_from_str(key), &raw, &rec, err,
                           sizeof(err));
            checked += it_wkey_check(&L->w[i].keys[k], key, "the backup", st,
                                     st == OM_OK ? rec.version : 0,
                                     st == OM_OK ? rec.data : om_slice_from_str(""));
            om_buf_free(&raw);
        }
    return checked;
}

/* Primary and backup agree on every key (polled: the backup applies last); verify agrees. */
static void
check_identical(const char *paddr, const char *baddr, load *L)
{
    omc_client *c[2];
    const char *addr[2] = {paddr, baddr};
    char msg[128], shards[160];
    uint64_t deadline = tu_now_ms() + 15000;

    for (int r = 0; r < 2; r++)
        ck_assert_int_eq(omc_connect(addr[r], 5000, &c[r], msg, sizeof(msg)), OM_OK);
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < IT_WRITER_KEYS; k++) {
            char key[32];

            it_writer_key(i, k, key, sizeof(key));
            for (;;) {
                om_status st[2];
                uint64_t v[2] = {0, 0};
                om_buf data[2] = {OM_BUF_INIT, OM_BUF_INIT};
                bool same;

                for (int r = 0; r < 2; r++) {
                    omc_info info;

                    st[r] = omc_retrieve(c[r], BUCKET, key, &info, &data[r]);
                    ck_assert_msg(st[r] == OM_OK || st[r] == OM_E_NOTFOUND, "%s on %s: %s", key,
                                  addr[r], omc_last_message(c[r]));
                    if (st[r] == OM_OK) {
                        v[r] = info.version;
                        omc_info_free(&info);
                    }
                }
                same = st[0] == st[1] && v[0] == v[1] &&
                       om_slice_eq(om_buf_slice(&data[0]), om_buf_slice(&data[1]));
                it_wkey_check(&L->w[i].keys[k], key, "the primary", st[0], v[0],
                              om_buf_slice(&data[0]));
                om_buf_free(&data[0]);
                om_buf_free(&data[1]);
                if (same)
                    break;
                ck_assert_msg(tu_now_ms() < deadline, "%s differs between primary and backup", key);
                om_clock_sleep_ms(50);
            }
        }
    omc_close(c[0]);
    omc_close(c[1]);
    snprintf(shards, sizeof(shards), "%s,%s", paddr, baddr);
    it_verify_identical(NULL, "--shards", shards);
}

START_TEST(backup_power_loss)
{
    uint64_t seed = tu_seed("backup_power_loss"), rnd = seed;
    const char *bdir = tu_tmpdir();
    static load L;
    backup b;
    tu_proc *p;
    char paddr[64], baddr[64], reps[80], msg[128];
    const char *extra[] = {"--replica-role=primary",  "--replica-group=" GROUP, reps,
                           "--replica-timeout=500ms", "--sync-mode=always",     NULL};

    backup_start(&b, bdir, 0);
    snprintf(baddr, sizeof(baddr), "127.0.0.1:%d", b.port);
    snprintf(reps, sizeof(reps), "--replicas=%s", baddr);
    p = it_start_shard(NULL, extra);
    snprintf(paddr, sizeof(paddr), "%s", it_addr(p));
    {
        omc_client *c = NULL;
        char key[32];

        ck_assert_int_eq(omc_connect(paddr, 5000, &c, msg, sizeof(msg)), OM_OK);
        omc_set_timeout(c, 10000);
        for (int i = 0; i < NSTABLE; i++) {
            snprintf(key, sizeof(key), "s-%03d", i);
            ck_assert_int_eq(omc_store(c, BUCKET, key, om_slice_from_str("stable"), NULL, NULL),
                             OM_OK);
        }
        omc_close(c);
    }
    memset(&L, 0, sizeof(L));
    load_start(&L, paddr, seed);
    for (int round = 0; round < 3; round++) {
        int after = 50 + (int)(tu_rand(&rnd) % 300), checked;

        it_writers_wait_acked(L.w, WRITERS, after, 30000);
        fault_env_crash(b.fe, true, &rnd); /* the power fails: unsynced data is gone */
        load_stop(&L);                     /* answers now wait for the backup, then time out */
        backup_stop(&b);
        {
            shard_opts so;
            shard *sh;

            shard_opts_init(&so);
            ck_assert_int_eq(shard_open(bdir, &so, &sh), OM_OK);
            checked = check_backup_engine(sh, &L);
            ck_assert_int_eq(shard_close(sh), OM_OK);
        }
        printf("round %d: power loss after %d more acks; %d acknowledged keys all on the backup\n",
               round, after, checked);
        backup_start(&b, bdir, b.port); /* back on its address: the primary resends */
        load_start(&L, paddr, tu_rand(&rnd));
        it_writers_wait_acked(L.w, WRITERS, 100, 30000);
    }
    load_stop(&L);
    check_identical(paddr, baddr, &L);
    printf("primary and backup identical; %d listings complete\n", atomic_load(&L.l.lists));
    tu_proc_stop(p);
    tu_proc_free(p);
    backup_stop(&b);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("repl_powerloss");
    TCase *tc = tcase_create("powerloss");

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, backup_power_loss);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
