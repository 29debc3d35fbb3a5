/*
 * tests/controlplane/it_groups.c -- replica groups on the coordinator side
 * (coordinator/groups.c, group_admin.c, shard/verify.c) with real etcd, a
 * real objmeta-coord and static-membership replica groups (one primary, two
 * backups: tests/shard/it_replication.c's setup, each replica started with
 * the group id as its --id):
 *
 *   routing_follows   the group's configuration is written into etcd by
 *                     hand; its leader key deleted: a List waits (parked)
 *                     until the key names the primary again; a reader runs
 *                     throughout; the primary is killed
 *                     (kill -9), and while the
 *                     coordinator shows the group waiting, a client keeps
 *                     storing and reading through it; a backup is restarted
 *                     as primary of term 2 and the new configuration is
 *                     written: every request made during the switch is
 *                     answered OK (it waited, it did not fail; a read the
 *                     dead primary failed is sent again), and every
 *                     acknowledged write reads back through the new primary.
 *   admin_groups      `objmeta admin add-group` (configuration and ring),
 *                     `groups` (roles, in-sync, reachable; and the lag: a
 *                     SIGSTOPped backup shows down, lagging by the held
 *                     write in records and bytes, then in-sync at the
 *                     primary's index after SIGCONT), verify of
 *                     identical replicas (exit 0, through the coordinator
 *                     and directly), add-replica / remove-replica, promote's
 *                     refusals (a replica not in sync, an unknown group, an
 *                     unknown replica) and a promote that is taken; then one
 *                     backup's record changed directly (the backup started
 *                     standalone on its data dir): verify reports the range
 *                     and exits 7, both ways; remove-group moves its keys
 *                     out of the ring, then deletes its configuration.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_groups.h"
#include "it_util.h"
#include "client/client.h"
#include "tu.h"
#include "tu_etcd.h"
#include "util/clock.h"

#define PREFIX "/objmeta/grp"
#define BUCKET "grp-bucket"
#define WAIT_MS 30000

/* ---- processes ---- */

typedef struct grp {
    tu_proc *p, *b[2];
    char paddr[64], baddr[2][64];
} grp;

static tu_proc *
start_backup(const char *gid, const char *data_dir)
{
    char idarg[64], garg[64];
    const char *extra[] = {"--replica-role=backup", garg, idarg, "--sync-mode=always", NULL};

    snprintf(idarg, sizeof(idarg), "--id=%s", gid);
    snprintf(garg, sizeof(garg), "--replica-group=%s", gid);
    return it_start_shard(data_dir, extra);
}

static tu_proc *
start_primary(const char *gid, const char *data_dir, const char *replicas, int term)
{
    char idarg[64], garg[64], rarg[200], targ[40];
    const char *extra[] = {
        "--replica-role=primary", garg, idarg, rarg, targ, "--replica-timeout=500ms",
        "--sync-mode=always",     NULL};

    snprintf(idarg, sizeof(idarg), "--id=%s", gid);
    snprintf(garg, sizeof(garg), "--replica-group=%s", gid);
    snprintf(rarg, sizeof(rarg), "--replicas=%s", replicas);
    snprintf(targ, sizeof(targ), "--replica-term=%d", term);
    return it_start_shard(data_dir, extra);
}

static void
grp_start(grp *g, const char *gid)
{
    char reps[160];

    for (int i = 0; i < 2; i++) {
        g->b[i] = start_backup(gid, NULL);
        snprintf(g->baddr[i], sizeof(g->baddr[i]), "%s", it_addr(g->b[i]));
    }
    snprintf(reps, sizeof(reps), "%s,%s", g->baddr[0], g->baddr[1]);
    g->p = start_primary(gid, NULL, reps, 1);
    snprintf(g->paddr, sizeof(g->paddr), "%s", it_addr(g->p));
}

static void
grp_stop(grp *g)
{
    tu_proc *all[3] = {g->p, g->b[0], g->b[1]};

    for (int i = 0; i < 3; i++)
        if (all[i] != NULL) {
            tu_proc_stop(all[i]);
            tu_proc_free(all[i]);
        }
}

static tu_proc *
start_coord(const tu_etcd *e, const char *shards)
{
    return cp_coord_start(e, PREFIX, shards, NULL);
}

static void
wait_metric(const tu_proc *c, const char *series, double want)
{
    uint64_t deadline = tu_now_ms() + WAIT_MS;

    while (cp_coord_metric(c, series) != want) {
        ck_assert_msg(tu_now_ms() < deadline, "%s never reached %g (is %g)", series, want,
                      cp_coord_metric(c, series));
        om_clock_sleep_ms(50);
    }
}

/* The config JSON of a group whose replicas are (id, addr) pairs, all in sync. */
static void
config_json(char *out, size_t n, const char *gid, int term, const char *primary,
            const char *const *ids, const char *const *addrs, int nrep)
{
    size_t off = (size_t)snprintf(out, n,
                                  "{\"group\":\"%s\",\"term\":%d,\"primary\":\"%s\","
                                  "\"replicas\":[",
                                  gid, term, primary);

    for (int i = 0; i < nrep; i++)
        off += (size_t)snprintf(out + off, n - off, "%s{\"id\":\"%s\",\"addr\":\"%s\"}",
                                i ? "," : "", ids[i], addrs[i]);
    off += (size_t)snprintf(out + off, n - off, "],\"in_sync\":[");
    for (int i = 0; i < nrep; i++)
        off += (size_t)snprintf(out + off, n - off, "%s\"%s\"", i ? "," : "", ids[i]);
    snprintf(out + off, n - off, "]}");
}

/* ---- routing follows a primary change ---- */

/* Reads one key over and over from before the primary goes until after the switch: a read in
 * flight when it goes is sent again to the next primary, never failed. */
typedef struct reader {
    const char *addr;
    atomic_bool stop;
    atomic_int ok, failed;
    char first_error[256];
} reader;

static void *
reader_main(void *arg)
{
    reader *r = arg;
    omc_client *c = NULL;
    char msg[256];

    ck_assert(omc_connect(r->addr, 5000, &c, msg, sizeof(msg)) == OM_OK);
    omc_set_timeout(c, 30000);
    while (!atomic_load(&r->stop)) {
        omc_info info;
        om_buf data = OM_BUF_INIT;
        om_status st = omc_retrieve(c, BUCKET, "before", &info, &data);

        if (st == OM_OK) {
            omc_info_free(&info);
            atomic_fetch_add(&r->ok, 1);
        } else if (atomic_fetch_add(&r->failed, 1) == 0) {
            snprintf(r->first_error, sizeof(r->first_error), "%s: %s", om_status_str(st),
                     omc_last_message(c));
        }
        om_buf_free(&data);
    }
    omc_close(c);
    return NULL;
}

typedef struct loader {
    const char *addr;
    atomic_bool stop;
    atomic_int ok, failed, started;
    char first_error[256];
    int nstored;
    char data[400][32];
} loader;

static void *
loader_main(void *arg)
{
    loader *l = arg;
    omc_client *c = NULL;
    char msg[256], key[32];

    ck_assert(omc_connect(l->addr, 5000, &c, msg, sizeof(msg)) == OM_OK);
    omc_set_timeout(c, 30000);
    while (!atomic_load(&l->stop) && l->nstored < 400) {
        omc_info info;
        om_buf data = OM_BUF_INIT;
        om_status st;

        atomic_fetch_add(&l->started, 1);
        snprintf(key, sizeof(key), "during-%03d", l->nstored);
        snprintf(l->data[l->nstored], sizeof(l->data[0]), "value-%d", l->nstored);
        st = omc_store(c, BUCKET, key, om_slice_from_str(l->data[l->nstored]), NULL, &info);
        if (st == OM_OK) {
            omc_info_free(&info);
            st = omc_retrieve(c, BUCKET, key, &info, &data);
            if (st == OM_OK)
                omc_info_free(&info);
        }
        om_buf_free(&data);
        if (st != OM_OK) {
            if (atomic_fetch_add(&l->failed, 1) == 0)
                snprintf(l->first_error, sizeof(l->first_error), "%s: %s", om_status_str(st),
                         omc_last_message(c));
            continue;
        }
        l->nstored++;
        atomic_fetch_add(&l->ok, 1);
    }
    omc_close(c);
    return NULL;
}

/* One List through the coordinator, in a thread. */
typedef struct lister {
    const char *addr;
    atomic_bool done;
    om_status st;
    size_t n;
} lister;

static void *
lister_main(void *arg)
{
    lister *l = arg;
    omc_client *c = NULL;
    omc_list_page page;
    char msg[256];

    ck_assert(omc_connect(l->addr, 5000, &c, msg, sizeof(msg)) == OM_OK);
    omc_set_timeout(c, 30000);
    l->st = omc_list(c, BUCKET, NULL, &page);
    if (l->st == OM_OK) {
        l->n = page.n_entries;
        omc_list_page_free(&page);
    }
    omc_close(c);
    atomic_store(&l->done, true);
    return NULL;
}

START_TEST(routing_follows)
{
    tu_etcd *e;
    grp g;
    tu_proc *co, *np;
    char shards[128], conf[1024], reps[80];
    const char *ids[3] = {"p", "b1", "b2"}, *addrs[3];
    loader l = {0};
    reader rd = {0};
    pthread_t th, rth;

    if (!tu_etcd_available())
        return;
    e = tu_etcd_start(1);
    grp_start(&g, "g1");
    addrs[0] = g.paddr, addrs[1] = g.baddr[0], addrs[2] = g.baddr[1];
    config_json(conf, sizeof(conf), "g1", 1, "p", ids, addrs, 3);
    cp_etcd_put(e, PREFIX "/groups/g1/config", conf);
    snprintf(shards, sizeof(shards), "g1=%s", g.paddr);
    co = start_coord(e, shards);
    wait_metric(co, "\nobjmeta_coord_group_term{group=\"g1\"}", 1);

    /* before: a write through the coordinator reaches the group */
    {
        omc_client *cc = NULL;
        char msg[256];
        omc_info info;
        ck_assert(omc_connect(cp_coord_addr(co), 5000, &cc, msg, sizeof(msg)) == OM_OK);
        ck_assert_int_eq(omc_store(cc, BUCKET, "before", om_slice_from_str("b"), NULL, &info),
                         OM_OK);
        omc_info_free(&info);
        omc_close(cc);
    }

    /* the leader key: present and naming the primary, then gone (its lease ended): the
     * group's requests -- a List here -- wait until a leader key names the primary again */
    cp_etcd_put(e, PREFIX "/groups/g1/leader", "p 1");
    wait_metric(co, "\nobjmeta_coord_group_leader_present{group=\"g1\"}", 1);
    ck_assert_double_eq(cp_coord_metric(co, "\nobjmeta_coord_group_waiting{group=\"g1\"}"), 0);
    cp_etcd_put(e, PREFIX "/groups/g1/leader", NULL);
    wait_metric(co, "\nobjmeta_coord_group_waiting{group=\"g1\"}", 1);
    {
        lister ls = {.addr = cp_coord_addr(co)};
        pthread_t lth;
        ck_assert_int_eq(pthread_create(&lth, NULL, lister_main, &ls), 0);
        wait_metric(co, "\nobjmeta_coord_parked ", 1);
        ck_assert(!atomic_load(&ls.done));
        cp_etcd_put(e, PREFIX "/groups/g1/leader", "p 1");
        pthread_join(lth, NULL);
        ck_assert_int_eq(ls.st, OM_OK);
        ck_assert_uint_eq(ls.n, 1);
    }
    wait_metric(co, "\nobjmeta_coord_group_waiting{group=\"g1\"}", 0);

    /* reads run across the whole switch */
    rd.addr = cp_coord_addr(co);
    ck_assert_int_eq(pthread_create(&rth, NULL, reader_main, &rd), 0);
    {
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        while (atomic_load(&rd.ok) < 50)
            ck_assert(tu_now_ms() < deadline);
    }
    /* the primary dies (kill -9: reads in flight lose their connection); the coordinator
     * holds the group's requests */
    tu_proc_kill9(g.p);
    cp_etcd_put(e, PREFIX "/groups/g1/leader", NULL); /* its lease ends */
    tu_proc_free(g.p);
    g.p = NULL;
    wait_metric(co, "\nobjmeta_coord_group_waiting{group=\"g1\"}", 1);
    l.addr = cp_coord_addr(co);
    ck_assert_int_eq(pthread_create(&th, NULL, loader_main, &l), 0);
    {
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        while (atomic_load(&l.started) == 0) /* a request is out while there is no primary */
            ck_assert(tu_now_ms() < deadline);
    }
    om_clock_sleep_ms(300); /* let it wait a little: it must not fail meanwhile */
    ck_assert_int_eq(atomic_load(&l.ok), 0);
    ck_assert_msg(atomic_load(&l.failed) == 0, "a request failed during the switch: %s",
                  l.first_error);

    /* a failover by hand: b1 leads term 2 with b2 as its backup, then the configuration */
    {
        const char *dir = tu_proc_data_dir(g.b[0]);
        char keep[512];
        snprintf(keep, sizeof(keep), "%s", dir);
        tu_proc_stop(g.b[0]);
        tu_proc_free(g.b[0]);
        g.b[0] = NULL;
        snprintf(reps, sizeof(reps), "%s", g.baddr[1]);
        np = start_primary("g1", keep, reps, 2);
    }
    {
        const char *ids2[2] = {"b1", "b2"}, *addrs2[2];
        char na[64];
        snprintf(na, sizeof(na), "%s", it_addr(np));
        addrs2[0] = na, addrs2[1] = g.baddr[1];
        config_json(conf, sizeof(conf), "g1", 2, "b1", ids2, addrs2, 2);
        cp_etcd_put(e, PREFIX "/groups/g1/config", conf);
        cp_etcd_put(e, PREFIX "/groups/g1/leader", "b1 2"); /* as the new primary would */
    }
    {
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        while (atomic_load(&l.ok) < 20) {
            ck_assert_msg(atomic_load(&l.failed) == 0, "a request failed during the switch: %s",
                          l.first_error);
            ck_assert_msg(tu_now_ms() < deadline, "no request answered after the switch");
            om_clock_sleep_ms(20);
        }
    }
    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    {
        int before = atomic_load(&rd.ok); /* and reads flow through the new primary */
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        while (atomic_load(&rd.ok) < before + 50)
            ck_assert(tu_now_ms() < deadline);
    }
    atomic_store(&rd.stop, true);
    pthread_join(rth, NULL);
    ck_assert_msg(rd.failed == 0, "%d reads failed across the switch, first: %s", rd.failed,
                  rd.first_error);
    printf("routing_follows: %d reads, %d store+read pairs across the switch; the coordinator "
           "parked %g requests, %g of them sent again after the former primary failed them\n",
           atomic_load(&rd.ok), atomic_load(&l.ok),
           cp_coord_metric(co, "\nobjmeta_coord_parked_total{kind=\"all\"}"),
           cp_coord_metric(co, "\nobjmeta_coord_parked_total{kind=\"retried\"}"));
    ck_assert_msg(l.failed == 0, "a request failed during the switch: %s", l.first_error);
    ck_assert_double_eq(cp_coord_metric(co, "\nobjmeta_coord_group_term{group=\"g1\"}"), 2);
    ck_assert_double_ge(
        cp_coord_metric(co, "\nobjmeta_coord_group_primary_changes_total{group=\"g1\"}"), 1);

    /* every acknowledged write reads back through the new primary */
    {
        omc_client *cc = NULL;
        char msg[256], key[32];
        ck_assert(omc_connect(cp_coord_addr(co), 5000, &cc, msg, sizeof(msg)) == OM_OK);
        for (int i = 0; i < l.nstored; i++) {
            omc_info info;
            om_buf data = OM_BUF_INIT;
            snprintf(key, sizeof(key), "during-%03d", i);
            ck_assert_int_eq(omc_retrieve(cc, BUCKET, key, &info, &data), OM_OK);
            ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str(l.data[i])));
            omc_info_free(&info);
            om_buf_free(&data);
        }
        {
            omc_info info;
            om_buf data = OM_BUF_INIT;
            ck_assert_int_eq(omc_retrieve(cc, BUCKET, "before", &info, &data), OM_OK);
            omc_info_free(&info);
            om_buf_free(&data);
        }
        omc_close(cc);
    }
    tu_proc_stop(co);
    tu_proc_free(co);
    tu_proc_stop(np);
    tu_proc_free(np);
    grp_stop(&g);
    tu_etcd_stop(e);
}
END_TEST

/* ---- admin: add-group, groups, verify, replicas, promote ---- */

/* Run `objmeta --addr ADDR admin ARGS...`; its exit code, stdout in *out (caller frees). */
static int
admin(const char *addr, char **out, const char *a1, const char *a2, const char *a3, const char *a4,
      const char *a5, const char *a6, const char *a7)
{
    const char *argv[] = {"objmeta", "--addr", addr, "admin", a1, a2, a3, a4, a5, a6, a7, NULL};
    char *o = NULL, *err = NULL;
    int rc = tu_run_cmd("$OBJMETA_CLI", argv, 30000, &o, &err);

    if (rc != 0 || (err != NULL && err[0] != '\0'))
        fprintf(stdout, "admin %s: exit %d, stdout: %s, stderr: %s\n", a1, rc, o ? o : "",
                err ? err : "");
    free(err);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return rc;
}

/* One replica's line of `objmeta admin groups` (text): its index, state, lag. */
typedef struct rep_line {
    unsigned long long index, lag, lag_bytes;
    char state[32];
} rep_line;

static bool
groups_line(const char *coord, const char *gid, const char *rid, rep_line *out)
{
    char *o = NULL, *save = NULL;
    bool found = false;

    if (admin(coord, &o, "groups", NULL, NULL, NULL, NULL, NULL, NULL) != 0) {
        free(o);
        return false;
    }
    for (char *line = strtok_r(o, "\n", &save); line != NULL && !found;
         line = strtok_r(NULL, "\n", &save)) {
        char g[64], r[64], addr[128], role[16], insync[8];
        unsigned long long term;
        found = sscanf(line, "%63s %63s %127s %15s %7s %llu %llu %31s %llu %llu", g, r, addr, role,
                       insync, &term, &out->index, out->state, &out->lag, &out->lag_bytes) == 10 &&
                strcmp(g, gid) == 0 && strcmp(r, rid) == 0;
    }
    free(o);
    return found;
}

typedef struct held_store {
    const char *addr;
    om_status st;
} held_store;

static void *
held_store_main(void *arg)
{
    held_store *h = arg;
    omc_client *c = NULL;
    char msg[256], value[4096];
    omc_info info;

    memset(value, 'v', sizeof(value));
    h->st = omc_connect(h->addr, 5000, &c, msg, sizeof(msg));
    if (h->st != OM_OK)
        return NULL;
    omc_set_timeout(c, 60000);
    /* the first key g2 owns (the others are s1's: WRONG_SHARD at once) */
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "lag-key-%d", i);
        h->st = omc_store(c, BUCKET, key, om_slice_make((const uint8_t *)value, sizeof(value)),
                          NULL, &info);
        if (h->st == OM_OK)
            omc_info_free(&info);
        if (h->st != OM_E_WRONG_SHARD)
            break;
    }
    omc_close(c);
    return NULL;
}

/*
 * `groups` shows the lag: backup b stopped (SIGSTOP) while a write waits for
 * it is "down", lagging by at least one group commit of at least the
 * write's bytes (the primary's account); after SIGCONT the write is
 * answered and b is in-sync at the primary's index, lag 0.
 */
static void
check_groups_lag(const char *coord, grp *g)
{
    held_store h = {.addr = g->paddr, .st = OM_E_INTERNAL};
    pthread_t th;
    rep_line a = {0}, b = {0};
    uint64_t deadline;

    ck_assert(kill(tu_proc_pid(g->b[0]), SIGSTOP) == 0);
    ck_assert(pthread_create(&th, NULL, held_store_main, &h) == 0);
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        bool found = groups_line(coord, "g2", "b", &b);
        if (found && strcmp(b.state, "down") == 0 && b.lag >= 1 && b.lag_bytes >= 4096)
            break;
        if (tu_now_ms() >= deadline) {
            char *o = NULL;
            admin(coord, &o, "groups", NULL, NULL, NULL, NULL, NULL, NULL);
            fprintf(stdout, "groups: %s\nheld store: %s\n", o, om_status_str(h.st));
            fflush(stdout);
            free(o);
        }
        ck_assert_msg(tu_now_ms() < deadline,
                      "groups never showed b down and lagging: found %d state %s lag %llu/%llu",
                      found, found ? b.state : "", b.lag, b.lag_bytes);
        om_clock_sleep_ms(100);
    }
    ck_assert(kill(tu_proc_pid(g->b[0]), SIGCONT) == 0);
    pthread_join(th, NULL);
    ck_assert_msg(h.st == OM_OK, "the held store: %s", om_status_str(h.st));
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        if (groups_line(coord, "g2", "a", &a) && groups_line(coord, "g2", "b", &b) &&
            strcmp(a.state, "primary") == 0 && strcmp(b.state, "in-sync") == 0 && b.lag == 0 &&
            b.lag_bytes == 0 && b.index == a.index && a.index > 0)
            break;
        ck_assert_msg(tu_now_ms() < deadline,
                      "groups never showed b in sync again: a %s %llu, b %s %llu lag %llu/%llu",
                      a.state, a.index, b.state, b.index, b.lag, b.lag_bytes);
        om_clock_sleep_ms(100);
    }
}

START_TEST(admin_groups)
{
    tu_etcd *e;
    grp g;
    tu_proc *s1, *co, *extra;
    char shards[128], reps[300], *out = NULL, direct[200], one[120];
    int rc;

    if (!tu_etcd_available())
        return;
    e = tu_etcd_start(1);
    s1 = it_start_shard(NULL, (const char *const[]){"--id=s1", "--sync-mode=always", NULL});
    grp_start(&g, "g2");
    snprintf(shards, sizeof(shards), "s1=%s", it_addr(s1));
    co = start_coord(e, shards);

    wait_metric(co, "\nobjmeta_coord_leader ", 1); /* ring changes need the elected leader */
    /* add-group writes the configuration and adds g2 to the ring */
    snprintf(reps, sizeof(reps), "a@%s,b@%s,c@%s", g.paddr, g.baddr[0], g.baddr[1]);
    rc = admin(cp_coord_addr(co), &out, "add-group", "--id", "g2", "--replicas", reps, "--wait",
               NULL);
    ck_assert_msg(rc == 0, "add-group exit %d: %s", rc, out);
    free(out);
    wait_metric(co, "\nobjmeta_coord_group_term{group=\"g2\"}", 1);
    rc = admin(cp_coord_addr(co), &out, "groups", NULL, NULL, NULL, NULL, NULL, NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "g2") && strstr(out, "primary") && strstr(out, "backup") &&
                      strstr(out, "in the ring"),
                  "groups: %s", out);
    free(out);
    {
        const char *argv[] = {"objmeta", "--addr", cp_coord_addr(co), "--json", "admin",
                              "groups",  NULL};
        char *err = NULL;
        ck_assert_int_eq(tu_run_cmd("$OBJMETA_CLI", argv, 30000, &out, &err), 0);
        ck_assert_msg(strstr(out, "\"id\":\"g2\"") && strstr(out, "\"term\":1") &&
                          strstr(out, "\"primary\":\"a\"") && strstr(out, "\"in_ring\":true") &&
                          !strstr(out, "\"reachable\":false") && !strstr(out, "\"in_sync\":false"),
                      "groups --json: %s", out);
        free(out);
        free(err);
    }

    /* some data, through the coordinator (both members get keys) */
    {
        omc_client *cc = NULL;
        char msg[256], key[32];
        ck_assert(omc_connect(cp_coord_addr(co), 5000, &cc, msg, sizeof(msg)) == OM_OK);
        for (int i = 0; i < 200; i++) {
            omc_info info;
            snprintf(key, sizeof(key), "k%03d", i);
            ck_assert_int_eq(omc_store(cc, BUCKET, key, om_slice_from_str(key), NULL, &info),
                             OM_OK);
            omc_info_free(&info);
        }
        omc_close(cc);
    }
    /* identical replicas: exit 0, through the coordinator and directly */
    rc = admin(cp_coord_addr(co), &out, "verify", "--group", "g2", NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0 && strstr(out, "identical"), "verify exit %d: %s", rc, out);
    free(out);
    snprintf(direct, sizeof(direct), "%s,%s,%s", g.paddr, g.baddr[0], g.baddr[1]);
    rc = admin(cp_coord_addr(co), &out, "verify", "--shards", direct, "--ranges", "16", NULL, NULL);
    ck_assert_msg(rc == 0 && strstr(out, "identical"), "verify --shards exit %d: %s", rc, out);
    free(out);
    check_groups_lag(cp_coord_addr(co), &g);

    /* add-replica: in replicas, not in sync; promote refuses it */
    extra = start_backup("g2", NULL);
    snprintf(one, sizeof(one), "d@%s", it_addr(extra));
    rc = admin(cp_coord_addr(co), &out, "add-replica", "--group", "g2", "--replica", one, NULL,
               NULL);
    ck_assert_msg(rc == 0, "add-replica exit %d: %s", rc, out);
    free(out);
    {
        const char *argv[] = {"objmeta", "--addr", cp_coord_addr(co), "--json", "admin",
                              "groups",  NULL};
        char *err = NULL;
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        for (;;) { /* the watch brings the change to the table */
            ck_assert_int_eq(tu_run_cmd("$OBJMETA_CLI", argv, 30000, &out, &err), 0);
            free(err);
            if (strstr(out, "\"id\":\"d\"") != NULL)
                break;
            free(out);
            ck_assert(tu_now_ms() < deadline);
            om_clock_sleep_ms(50);
        }
        ck_assert_msg(strstr(out, "\"in_sync\":false"), "groups: %s", out);
        free(out);
    }
    rc = admin(cp_coord_addr(co), &out, "promote", "--group", "g2", "--replica", "d", NULL, NULL);
    ck_assert_msg(rc == 6, "promote of a replica not in sync: exit %d", rc); /* PRECONDITION */
    free(out);
    rc = admin(cp_coord_addr(co), &out, "promote", "--group", "nosuch", "--replica", "a", NULL,
               NULL);
    ck_assert_msg(rc == 5, "promote in an unknown group: exit %d", rc); /* NOT_FOUND */
    free(out);
    rc = admin(cp_coord_addr(co), &out, "promote", "--group", "g2", "--replica", "zz", NULL, NULL);
    ck_assert_msg(rc == 5, "promote of an unknown replica: exit %d", rc);
    free(out);
    rc = admin(cp_coord_addr(co), &out, "remove-replica", "--group", "g2", "--replica", "a", NULL,
               NULL);
    ck_assert_msg(rc == 6, "remove-replica of the primary: exit %d", rc);
    free(out);
    rc = admin(cp_coord_addr(co), &out, "remove-replica", "--group", "g2", "--replica", "d", NULL,
               NULL);
    ck_assert_msg(rc == 0, "remove-replica exit %d: %s", rc, out);
    free(out);
    tu_proc_stop(extra);
    tu_proc_free(extra);

    /* one backup's copy changed directly: verify names the range, exit 7 */
    {
        char dir[512], key[32];
        tu_proc *alone;
        omc_client *cc;
        omc_info info;

        snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(g.b[1]));
        tu_proc_stop(g.b[1]);
        tu_proc_free(g.b[1]);
        alone = it_start_shard(dir, (const char *const[]){"--id=g2", "--sync-mode=always", NULL});
        cc = it_client(alone);
        snprintf(key, sizeof(key), "k%03d", 7);
        ck_assert_int_eq(omc_store(cc, BUCKET, key, om_slice_from_str("changed"), NULL, &info),
                         OM_OK);
        omc_info_free(&info);
        omc_close(cc);
        tu_proc_stop(alone);
        tu_proc_free(alone);
        g.b[1] = start_backup("g2", dir);
        snprintf(g.baddr[1], sizeof(g.baddr[1]), "%s", it_addr(g.b[1]));
    }
    snprintf(direct, sizeof(direct), "%s,%s,%s", g.paddr, g.baddr[0], g.baddr[1]);
    rc = admin(cp_coord_addr(co), &out, "verify", "--shards", direct, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 7 && strstr(out, "differs") && strstr(out, "1 of 64 ranges differ"),
                  "verify --shards after the change: exit %d: %s", rc, out);
    free(out);
    /* the coordinator asks the configured addresses: write c's new one (as the shard would) */
    {
        const char *ids[3] = {"a", "b", "c"}, *addrs[3] = {g.paddr, g.baddr[0], g.baddr[1]};
        char conf[1024];
        config_json(conf, sizeof(conf), "g2", 1, "a", ids, addrs, 3);
        cp_etcd_put(e, PREFIX "/groups/g2/config", conf);
    }
    {
        uint64_t deadline = tu_now_ms() + WAIT_MS;
        for (;;) {
            rc = admin(cp_coord_addr(co), &out, "verify", "--group", "g2", NULL, NULL, NULL, NULL);
            if (rc == 7)
                break;
            ck_assert_msg(tu_now_ms() < deadline, "verify --group never saw the change: %d: %s", rc,
                          out);
            free(out);
            om_clock_sleep_ms(100);
        }
        ck_assert_msg(strstr(out, "differs"), "verify: %s", out);
        free(out);
    }

    /* promote b: term 2, b primary (the coordinator follows it) */
    rc = admin(cp_coord_addr(co), &out, "promote", "--group", "g2", "--replica", "b", NULL, NULL);
    ck_assert_msg(rc == 0 && strstr(out, "term 2 primary b"), "promote exit %d: %s", rc, out);
    free(out);
    wait_metric(co, "\nobjmeta_coord_group_term{group=\"g2\"}", 2);

    /* remove-group: out of the ring (its keys move to s1), then the configuration goes */
    rc = admin(cp_coord_addr(co), &out, "remove-group", "--id", "g2", NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 0 && strstr(out, "configuration deleted"), "remove-group exit %d: %s", rc,
                  out);
    free(out);
    rc = admin(cp_coord_addr(co), &out, "remove-group", "--id", "g2", NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == 5, "remove-group of a removed group: exit %d", rc); /* NOT_FOUND */
    free(out);
    {
        omc_client *cc = NULL;
        char msg[256];
        omc_info info;
        om_buf data = OM_BUF_INIT;
        ck_assert(omc_connect(cp_coord_addr(co), 5000, &cc, msg, sizeof(msg)) == OM_OK);
        for (int i = 0; i < 200; i += 13) { /* every key is on s1 now */
            char key[32];
            snprintf(key, sizeof(key), "k%03d", i);
            ck_assert_int_eq(omc_retrieve(cc, BUCKET, key, &info, &data), OM_OK);
            omc_info_free(&info);
        }
        om_buf_free(&data);
        omc_close(cc);
    }

    tu_proc_stop(co);
    tu_proc_free(co);
    grp_stop(&g);
    tu_proc_stop(s1);
    tu_proc_free(s1);
    tu_etcd_stop(e);
}
END_TEST

static Suite *
groups_suite(void)
{
    Suite *s = suite_create("groups");
    TCase *tc = tcase_create("groups");

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, routing_follows);
    tcase_add_test(tc, admin_groups);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(groups_suite());
}
