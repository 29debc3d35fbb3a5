/*
 * tests/shard/it_repl_etcd.c -- replication with the group configuration in
 * etcd (shard/REPLICATION.md; shard/repl_etcd.c): a real etcd, three real
 * objmeta-shard replicas of group g1, writers under a load model that
 * follow the primary (a refusal or error moves a writer to the next
 * replica), and the configuration read back from etcd with etcdctl.
 *
 *   kill9_primary_failover   10 rounds (REPL_ROUNDS) of kill -9 of the
 *                            primary at a random moment: a new primary
 *                            serves within the lease TTL + 1 s; the killed
 *                            replica restarts, is repaired and rejoins the
 *                            in-sync set.
 *   kill9_backup_removed     kill -9 of a backup: it leaves the in-sync set
 *                            and writes continue; restarted, it rejoins --
 *                            under the load, and once more with none.
 *   sigstop_primary          SIGSTOP of the primary past its lease: a new
 *                            term begins; after SIGCONT no write of a writer
 *                            on the old primary is acknowledged.
 *   wiped_backup             a backup's data directory wiped: full catch-up,
 *                            then in-sync again; the catch-up is throttled
 *                            (replica-catch-up-rate 4K: it takes at least
 *                            its bytes but the last page's / the rate, in
 *                            small pages, says the primary's "catch-up
 *                            done" line).
 *   empty_group_failover     a group that never stored anything: its
 *                            primary's term mark gives every replica index
 *                            1 with no client write; kill -9 of the primary:
 *                            a backup takes over within the lease TTL + 1 s
 *                            (no admin promote), the killed one rejoins.
 *   promote_switchover       a configuration of a later term naming a backup
 *                            (admin promote): the old primary stops, the
 *                            named one takes over; /metrics says so.
 *   etcd_unreachable         etcd stopped: the primary stops serving before
 *                            its lease could expire; etcd back: a primary
 *                            serves again, the set is whole.
 *   sigterm_rolling          SIGTERM of the primary, three times: it resigns,
 *                            a backup serves well within one lease TTL.
 *   static_settings_refused  with etcd, replica-role / replicas and a listen
 *                            port 0 are refused with a message naming them.
 *   drop_shipment            (tcase faults) r0 runs with the testing aid
 *                            test-drop-shipment-key: a write of that key is
 *                            made durable on r0 and never shipped; r0 dies
 *                            (kill -9) holding it; after the failover and
 *                            r0's rejoin the write is gone on every
 *                            replica, it was never acknowledged, and no
 *                            read or listing through the primary showed it.
 *
 * Beside the writers, a reader of stable keys and a paginated lister follow
 * the primary throughout (every read returns its stable key, every complete
 * listing holds every stable key once and in order). Each scenario ends with
 * every acknowledged write read back from EVERY replica directly, the
 * replicas identical key by key (versions included), and `objmeta admin
 * verify --shards` finding them identical. The seed of the moments is
 * printed (TU_SEED repeats a run).
 *
 * Reads go to the primary, as a coordinator sends them: a backup answers
 * a direct read from its own engine, and a former primary restarted as a
 * backup shows its never-acknowledged writes until it is repaired.
 */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "it_util.h"
#include "it_writers.h"
#include "tu_etcd.h"

#define NREP 3
#define WRITERS 3
#define TTL_MS 2000
#define PREFIX "/objmeta/itrepl"
#define CFG_KEY PREFIX "/groups/g1/config"

typedef struct cluster {
    tu_etcd *etcd;
    const char *drop_key; /* r0's test-drop-shipment-key while set (drop_shipment) */
    tu_proc *p[NREP];
    char dir[NREP][256];
    int port[NREP], http[NREP];
    char addr[NREP][64];
} cluster;

static void
pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The catch-up throttle of the replicas started from now on (wiped_backup). */
static const char *catch_up_rate = "--replica-catch-up-rate=16M";

static void
start_replica(cluster *cl, int i, bool fresh)
{
    char listen[64], etcd[300], id[32], http[64], drop[96] = "--log-level=info";
    const char *extra[] = {"--sync-mode=always",
                           drop,
                           catch_up_rate,
                           "--log-level=info",
                           listen,
                           http,
                           etcd,
                           "--etcd-prefix=" PREFIX,
                           "--replica-group=g1",
                           id,
                           "--replica-lease-ttl=2s",
                           "--replica-timeout=500ms",
                           "--request-timeout=3s",
                           NULL};
    /* 60 s: a machine busy with other fsyncs (or a ThreadSanitizer build) can make an
     * engine recovery slow; a start that hangs still fails, with where it waits */
    tu_proc_opts o = {
        .data_dir = fresh ? NULL : cl->dir[i], .extra = extra, .start_timeout_ms = 60000};

    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", cl->port[i]);
    snprintf(http, sizeof(http), "--http-listen=127.0.0.1:%d", cl->http[i]);
    snprintf(etcd, sizeof(etcd), "--etcd=%s", tu_etcd_endpoints(cl->etcd));
    snprintf(id, sizeof(id), "--replica-id=r%d", i);
    if (i == 0 && cl->drop_key != NULL)
        snprintf(drop, sizeof(drop), "--test-drop-shipment-key=%s", cl->drop_key);
    cl->p[i] = tu_proc_start("$OBJMETA_SHARD", &o);
    snprintf(cl->dir[i], sizeof(cl->dir[i]), "%s", tu_proc_data_dir(cl->p[i]));
}

static char *
etcdctl(const cluster *cl, const char *const *args)
{
    char ep[300];
    const char *argv[8] = {"etcdctl", ep};
    char *out = NULL, *err = NULL;
    int n = 2, rc;

    snprintf(ep, sizeof(ep), "--endpoints=%s", tu_etcd_endpoints(cl->etcd));
    for (int i = 0; args[i] != NULL && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    /* a loaded machine can make one call slow: again, up to three times (get and put
     * of the same value are idempotent) */
    for (int attempt = 0;; attempt++) {
        rc = tu_run_cmd("/usr/bin/etcdctl", argv, 15000, &out, &err);
        if (rc == 0 || attempt == 2)
            break;
        printf("etcdctl %s: status %d (%s), again\n", args[0], rc, err ? err : "");
        free(out);
        free(err);
    }
    ck_assert_msg(rc == 0, "etcdctl failed: status %d: %s", rc, err ? err : "");
    free(err);
    return out;
}

/* The group configuration: term, primary index (-1: none known), in-sync size. */
static void
read_config(const cluster *cl, long *term, int *primary, int *in_sync)
{
    static const char *const args[] = {"get", CFG_KEY, "--print-value-only", NULL};
    char *out = etcdctl(cl, args);
    json_t *j = json_loads(out, 0, NULL);
    const char *pr;

    ck_assert_msg(j != NULL, "config is not JSON: %s", out);
    *term = (long)json_integer_value(json_object_get(j, "term"));
    pr = json_string_value(json_object_get(j, "primary"));
    *primary = pr != NULL && pr[0] == 'r' ? atoi(pr + 1) : -1;
    *in_sync = (int)json_array_size(json_object_get(j, "in_sync"));
    json_decref(j);
    free(out);
}

/* Put the configuration as an admin does: every replica in sync, `primary` leads `term`. */
static void
put_config(const cluster *cl, int term, int primary)
{
    char cfg[1024];
    const char *args[] = {"put", CFG_KEY, cfg, NULL};

    snprintf(cfg, sizeof(cfg),
             "{\"group\":\"g1\",\"term\":%d,\"primary\":\"r%d\",\"replicas\":[{\"id\":\"r0\","
             "\"addr\":\"%s\"},{\"id\":\"r1\",\"addr\":\"%s\"},{\"id\":\"r2\",\"addr\":\"%s\"}],"
             "\"in_sync\":[\"r0\",\"r1\",\"r2\"]}",
             term, primary, cl->addr[0], cl->addr[1], cl->addr[2]);
    free(etcdctl(cl, args));
}

static void
cluster_start(cluster *cl)
{
    const char *drop_key = cl->drop_key;

    memset(cl, 0, sizeof(*cl));
    cl->drop_key = drop_key;
    cl->etcd = tu_etcd_start(1);
    for (int i = 0; i < NREP; i++) {
        cl->port[i] = tu_free_port();
        cl->http[i] = tu_free_port();
        snprintf(cl->addr[i], sizeof(cl->addr[i]), "127.0.0.1:%d", cl->port[i]);
        start_replica(cl, i, true);
    }
    put_config(cl, 1, 0); /* what `admin add-group` writes: term 1, the first replica primary */
}

/* Fail unless replica i's /metrics has the line `line`. */
static void
check_metric(const cluster *cl, int i, const char *line)
{
    char *body = NULL;

    ck_assert_int_eq(it_http_get(cl->http[i], "/metrics", &body), 200);
    ck_assert_msg(strstr(body, line) != NULL, "r%d /metrics lacks \"%s\"", i, line);
    free(body);
}

/* Wait until replica i's /metrics has the line `line` (fails after timeout_ms). */
static void
wait_metric(const cluster *cl, int i, const char *line, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        char *body = NULL;
        bool has = it_http_get(cl->http[i], "/metrics", &body) == 200 && strstr(body, line);

        free(body);
        if (has)
            return;
        ck_assert_msg(tu_now_ms() < deadline, "r%d /metrics lacks \"%s\" after %d ms", i, line,
                      timeout_ms);
        pause_ms(50);
    }
}

static void
cluster_stop(cluster *cl)
{
    for (int i = 0; i < NREP; i++)
        if (cl->p[i] != NULL) {
            tu_proc_stop(cl->p[i]);
            tu_proc_free(cl->p[i]);
            cl->p[i] = NULL;
        }
    tu_etcd_stop(cl->etcd);
}

/* Store on replica i; OM_OK when it serves as primary. */
static om_status
try_store(const cluster *cl, int i, const char *key)
{
    omc_client *c = NULL;
    char msg[128];
    om_status st = omc_connect(cl->addr[i], 1000, &c, msg, sizeof(msg));

    if (st == OM_OK) {
        omc_set_timeout(c, 3000);
        st = omc_store(c, "repl", key, om_slice_from_str("probe"), NULL, NULL);
        omc_close(c);
    }
    return st;
}

/* Wait until some replica but `not` accepts a write; returns it (fails after timeout_ms). */
static int
wait_primary(const cluster *cl, int not, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        for (int i = 0; i < NREP; i++)
            if (i != not &&cl->p[i] != NULL && try_store(cl, i, "probe") == OM_OK)
                return i;
        ck_assert_msg(tu_now_ms() < deadline, "no primary serves within %d ms", timeout_ms);
        pause_ms(20); /* polling */
    }
}

/* Wait until the configuration's in-sync set has n members. */
static void
wait_in_sync(const cluster *cl, int n, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;
    long term;
    int pr, in;

    for (;;) {
        read_config(cl, &term, &pr, &in);
        if (in == n)
            return;
        ck_assert_msg(tu_now_ms() < deadline, "in-sync set has %d members, not %d (term %ld)", in,
                      n, term);
        pause_ms(50);
    }
}

/*
 * ---- the readers: a reader of the stable keys and a paginated lister on the
 * replica the writers last saw acknowledge (the primary, as far as a client
 * knows), and a watcher of the dropped key there too ----
 *
 * NSTABLE stable keys ("s-%03d") are written before the load and never
 * again: every read must return them, every complete listing must hold them
 * all, in strictly increasing key order, and no key of a write whose
 * shipment was dropped. A listing cut by an error or a primary change
 * starts again (its continuation token is the old primary's). The first
 * violation is kept; the test thread fails on it after joining.
 */
#define NSTABLE 60
#define DROPPED_KEY "dropped-1"

typedef enum obs_kind { OBS_READER, OBS_LISTER, OBS_WATCHER } obs_kind;

typedef struct observer {
    const cluster *cl;
    obs_kind kind;
    atomic_int *hint;
    atomic_bool *stop;
    uint64_t seed;
    atomic_int done; /* reads, complete listings, or watched reads */
    char failure[256];
} observer;

static void
obs_fail(observer *o, const char *what, const char *key, int replica)
{
    if (o->failure[0] == '\0')
        snprintf(o->failure, sizeof(o->failure), "%s: %s on r%d", what, key, replica);
}

/* One complete listing of "repl" on replica cur: false if cut short (an error). */
static bool
list_once(observer *o, omc_client *c, int cur)
{
    char token[1024] = "", last[64] = "";
    int next_stable = 0;

    for (;;) {
        omc_list_opts lo = {.max_keys = 25, .continuation_token = token[0] ? token : NULL};
        omc_list_page pg;
        bool more;

        if (omc_list(c, "repl", &lo, &pg) != OM_OK)
            return false;
        for (size_t i = 0; i < pg.n_entries; i++) {
            const char *k = pg.entries[i].key != NULL ? pg.entries[i].key : "";

            if (last[0] != '\0' && strcmp(k, last) <= 0)
                obs_fail(o, "a listing repeated or reordered a key", k, cur);
            if (strcmp(k, DROPPED_KEY) == 0)
                obs_fail(o, "a listing showed the write whose shipment was dropped", k, cur);
            if (strncmp(k, "s-", 2) == 0 && atoi(k + 2) != next_stable++)
                obs_fail(o, "a listing missed a stable key before", k, cur);
            snprintf(last, sizeof(last), "%s", k);
        }
        snprintf(token, sizeof(token), "%s", pg.next_continuation_token);
        more = pg.is_truncated;
        omc_list_page_free(&pg);
        if (!more)
            break;
        if (atomic_load(o->hint) != cur)
            return false; /* the primary changed: its token is not the next one's */
    }
    if (next_stable != NSTABLE)
        obs_fail(o, "a complete listing lacks stable keys from", "s-...", cur);
    return true;
}

static void *
observer_main(void *arg)
{
    observer *o = arg;
    omc_client *c = NULL;
    om_buf data = OM_BUF_INIT;
    uint64_t rs = o->seed | 1;
    int cur = -1;
    char key[32], want[32], msg[128];

    while (!atomic_load(o->stop)) {
        int want_cur = atomic_load(o->hint);
        omc_info info;
        om_status st;

        if (c != NULL && want_cur != cur) {
            omc_close(c);
            c = NULL;
        }
        cur = want_cur;
        if (c == NULL && omc_connect(o->cl->addr[cur], 1000, &c, msg, sizeof(msg)) != OM_OK) {
            c = NULL;
            pause_ms(20); /* backoff: the replica is down */
            continue;
        }
        omc_set_timeout(c, 4000);
        if (o->kind == OBS_LISTER) {
            if (list_once(o, c, cur))
                atomic_fetch_add(&o->done, 1);
            continue;
        }
        if (o->kind == OBS_WATCHER) {
            pause_ms(2); /* pacing */
            snprintf(key, sizeof(key), "%s", DROPPED_KEY);
        } else {
            int i = (int)(tu_rand(&rs) % NSTABLE);
            snprintf(key, sizeof(key), "s-%03d", i);
            snprintf(want, sizeof(want), "stable-%d", i);
        }
        st = omc_retrieve(c, "repl", key, &info, &data);
        if (st == OM_OK) {
            if (o->kind == OBS_WATCHER)
                obs_fail(o, "the write whose shipment was dropped was read", key, cur);
            else if (!om_slice_eq(om_buf_slice(&data), om_slice_from_str(want)))
                obs_fail(o, "a stable key read back other data", key, cur);
            omc_info_free(&info);
        } else if (st == OM_E_NOTFOUND && o->kind == OBS_READER) {
            obs_fail(o, "a stable key was missing", key, cur);
        } else if (st != OM_E_NOTFOUND) {
            omc_close(c); /* the replica went down or does not serve: look again */
            c = NULL;
            pause_ms(10);
            continue;
        }
        atomic_fetch_add(&o->done, 1);
    }
    omc_close(c);
    om_buf_free(&data);
    return NULL;
}

/* Store the stable keys through the first primary (r0). */
static void
preload_stable(const cluster *cl)
{
    omc_client *c = NULL;
    char key[32], val[32], msg[128];

    ck_assert_int_eq(omc_connect(cl->addr[0], 5000, &c, msg, sizeof(msg)), OM_OK);
    omc_set_timeout(c, 10000);
    for (int i = 0; i < NSTABLE; i++) {
        snprintf(key, sizeof(key), "s-%03d", i);
        snprintf(val, sizeof(val), "stable-%d", i);
        ck_assert_msg(omc_store(c, "repl", key, om_slice_from_str(val), NULL, NULL) == OM_OK,
                      "preload %s: %s", key, omc_last_message(c));
    }
    omc_close(c);
}

/*
 * Every acknowledged write on every replica as acknowledged, and the
 * replicas identical key by key (uncertain keys included). Polls until the
 * replicas agree (a backup applies the last groups a moment after the
 * primary answered).
 */
static void
check_replicas(const cluster *cl, it_writer *w, int nw)
{
    omc_client *c[NREP];
    om_buf data = OM_BUF_INIT, first = OM_BUF_INIT;
    char key[32], msg[128];
    int checked = 0;

    for (int r = 0; r < NREP; r++)
        ck_assert_int_eq(omc_connect(cl->addr[r], 5000, &c[r], msg, sizeof(msg)), OM_OK);
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < IT_WRITER_KEYS; k++) {
            const it_wkey *ks = &w[i].keys[k];
            uint64_t deadline = tu_now_ms() + 10000;

            it_writer_key(i, k, key, sizeof(key));
            for (;;) {
                om_status st0 = OM_OK;
                uint64_t v0 = 0;
                bool same = true;

                for (int r = 0; r < NREP; r++) {
                    omc_info info = {0};
                    om_status st = omc_retrieve(c[r], "repl", key, &info, &data);

                    ck_assert_msg(st == OM_OK || st == OM_E_NOTFOUND, "%s on %s: %s", key,
                                  cl->addr[r], omc_last_message(c[r]));
                    it_wkey_check(ks, key, cl->addr[r], st, info.version, om_buf_slice(&data));
                    if (r == 0) {
                        st0 = st;
                        v0 = st == OM_OK ? info.version : 0;
                        ck_assert_int_eq(om_buf_set(&first, om_buf_slice(&data)), OM_OK);
                    } else if (st != st0 || (st == OM_OK && (info.version != v0 ||
                                                             !om_slice_eq(om_buf_slice(&data),
                                                                          om_buf_slice(&first)))))
                        same = false;
                    if (st == OM_OK)
                        omc_info_free(&info);
                }
                if (same)
                    break;
                ck_assert_msg(tu_now_ms() < deadline, "%s differs between the replicas", key);
                pause_ms(50);
            }
            checked++;
        }
    for (int r = 0; r < NREP; r++)
        omc_close(c[r]);
    om_buf_free(&data);
    om_buf_free(&first);
    printf("  %d keys identical on the %d replicas, every acknowledged write as acknowledged\n",
           checked, NREP);
}

/* ---- scenarios ---- */

/* One scenario: the cluster, WRITERS writers following the primary (+1 spare slot). */
typedef struct run {
    cluster cl;
    it_writer w[WRITERS + 1];
    pthread_t th[WRITERS + 1];
    int nw;
    observer obs[3]; /* a reader and a lister; a watcher in drop_shipment */
    pthread_t obs_th[3];
    int nobs;
    atomic_int hint;
    bool joined;
    atomic_bool stop;
    uint64_t seed;
} run;

static void
observer_start(run *r, obs_kind kind)
{
    observer *o = &r->obs[r->nobs];

    memset(o, 0, sizeof(*o));
    o->cl = &r->cl;
    o->kind = kind;
    o->hint = &r->hint;
    o->stop = &r->stop;
    o->seed = r->seed ^ (0x5bd1e995u * (uint64_t)(kind + 1));
    ck_assert_int_eq(pthread_create(&r->obs_th[r->nobs], NULL, observer_main, o), 0);
    r->nobs++;
}

static void
run_start(run *r, const char *name)
{
    const char *drop_key = r->cl.drop_key;

    memset(r, 0, sizeof(*r));
    r->seed = tu_seed(name);
    r->cl.drop_key = drop_key; /* set by the test before */
    cluster_start(&r->cl);
    ck_assert_int_eq(wait_primary(&r->cl, -1, 15000), 0); /* the configuration named r0 */
    preload_stable(&r->cl);
    r->nw = WRITERS;
    /* they follow the primary: a refusal or an error moves a writer to the next replica */
    it_writers_start(r->w, r->th, WRITERS,
                     &(it_writer){.addrs = {r->cl.addr[0], r->cl.addr[1], r->cl.addr[2]},
                                  .naddrs = NREP,
                                  .bucket = "repl",
                                  .connect_ms = 1000,
                                  .timeout_ms = 4000,
                                  .backoff_ms = 10,
                                  .stop = &r->stop,
                                  .hint = &r->hint},
                     r->seed);
    observer_start(r, OBS_READER);
    observer_start(r, OBS_LISTER);
}

/* Stop the writers and the readers; fail on what the readers saw. */
static void
writers_stop(run *r)
{
    if (r->joined)
        return;
    atomic_store(&r->stop, true);
    for (int i = 0; i < r->nw; i++)
        pthread_join(r->th[i], NULL);
    for (int i = 0; i < r->nobs; i++)
        pthread_join(r->obs_th[i], NULL);
    r->joined = true;
    for (int i = 0; i < r->nobs; i++)
        ck_assert_msg(r->obs[i].failure[0] == '\0', "%s", r->obs[i].failure);
    printf("  readers: %d stable reads, %d complete listings (every stable key, in order)\n",
           atomic_load(&r->obs[0].done), atomic_load(&r->obs[1].done));
}

/* `objmeta admin verify --shards` of the three replicas: identical. */
static void
verify_identical(const cluster *cl)
{
    char shards[200];

    snprintf(shards, sizeof(shards), "%s,%s,%s", cl->addr[0], cl->addr[1], cl->addr[2]);
    it_verify_identical(NULL, "--shards", shards);
    printf("  verify: the replicas are identical\n");
}

/* Stop the writers and readers, check every replica, verify, stop everything. */
static void
run_finish(run *r)
{
    writers_stop(r);
    check_replicas(&r->cl, r->w, r->nw);
    verify_identical(&r->cl);
    cluster_stop(&r->cl);
}

/* Take replica i down: kill -9 (or SIGTERM). */
static void
replica_down(cluster *cl, int i, bool kill9)
{
    if (kill9)
        tu_proc_kill9(cl->p[i]);
    else
        tu_proc_stop(cl->p[i]);
    tu_proc_free(cl->p[i]);
    cl->p[i] = NULL;
}

START_TEST(kill9_primary_failover)
{
    static run r;
    const char *env = getenv("REPL_ROUNDS");
    int rounds = env != NULL && atoi(env) > 0 ? atoi(env) : 10, primary = 0;
    uint64_t worst = 0, rs;

    run_start(&r, "kill9_primary_failover");
    rs = r.seed | 1;
    for (int round = 0; round < rounds; round++) {
        uint64_t t0, took;
        long term;
        int pr, in, next;

        it_writers_wait_acked(r.w, WRITERS, 100, 20000);
        pause_ms((int)(tu_rand(&rs) % 700)); /* a random moment of the load */
        read_config(&r.cl, &term, &pr, &in);
        ck_assert_int_eq(pr, primary);
        t0 = tu_now_ms();
        replica_down(&r.cl, primary, true);
        next = wait_primary(&r.cl, primary, TTL_MS + 5000);
        took = tu_now_ms() - t0;
        worst = took > worst ? took : worst;
        printf("round %d: kill -9 of r%d (term %ld): r%d serves after %llu ms\n", round, primary,
               term, next, (unsigned long long)took);
        ck_assert_msg(took <= TTL_MS + 1000, "failover took %llu ms > lease TTL + 1 s",
                      (unsigned long long)took);
        it_writers_wait_acked(r.w, WRITERS, 50, 10000);
        start_replica(&r.cl, primary, false); /* rejoins: repaired, then in sync again */
        wait_in_sync(&r.cl, NREP, 20000);
        primary = next;
    }
    printf("%d rounds, worst failover %llu ms, %d writes acknowledged\n", rounds,
           (unsigned long long)worst, it_writers_acked(r.w, WRITERS));
    run_finish(&r);
}
END_TEST

/* The write of DROPPED_KEY on r0, in a thread: it must never be acknowledged. */
typedef struct dropper {
    const cluster *cl;
    om_status st;
    char msg[200];
} dropper;

static void *
dropper_main(void *arg)
{
    dropper *d = arg;
    omc_client *c = NULL;

    d->st = omc_connect(d->cl->addr[0], 1000, &c, d->msg, sizeof(d->msg));
    if (d->st == OM_OK) {
        omc_set_timeout(c, 60000); /* it waits for its acknowledgements until r0 dies */
        d->st = omc_store(c, "repl", DROPPED_KEY, om_slice_from_str("never"), NULL, NULL);
        snprintf(d->msg, sizeof(d->msg), "%s", omc_last_message(c));
        omc_close(c);
    }
    return NULL;
}

START_TEST(drop_shipment)
{
    static run r;
    dropper d = {.cl = &r.cl};
    pthread_t dth;
    uint64_t deadline;
    int next;

    r.cl.drop_key = DROPPED_KEY; /* r0: ship nothing from the group holding it on */
    run_start(&r, "drop_shipment");
    observer_start(&r, OBS_WATCHER); /* reads DROPPED_KEY as clients do, from now to the end */
    it_writers_wait_acked(r.w, WRITERS, 100, 20000);
    ck_assert_int_eq(pthread_create(&dth, NULL, dropper_main, &d), 0);
    /* r0 made the group durable and shipped nothing: its log says so after the sync */
    for (deadline = tu_now_ms() + 20000;; pause_ms(20)) {
        char *err = tu_proc_stderr(r.cl.p[0]);
        bool held = strstr(err, "test-drop-shipment-key: durable here") != NULL;

        free(err);
        if (held)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "r0 never held the dropped write");
    }
    pause_ms(300); /* the write stays in hand a moment: readers and listers look meanwhile */
    replica_down(&r.cl, 0, true);
    pthread_join(dth, NULL);
    ck_assert_msg(d.st != OM_OK, "the write whose shipment was dropped was acknowledged");
    next = wait_primary(&r.cl, 0, TTL_MS + 5000);
    printf("r0 died holding %s (%s); r%d leads\n", DROPPED_KEY, om_status_str(d.st), next);
    it_writers_wait_acked(r.w, WRITERS, 50, 10000);
    r.cl.drop_key = NULL;
    start_replica(&r.cl, 0, false); /* rejoins: repaired from the new primary */
    wait_in_sync(&r.cl, NREP, 20000);
    it_writers_wait_acked(r.w, WRITERS, 50, 10000);
    writers_stop(&r);
    for (int i = 0; i < NREP; i++) { /* gone everywhere, r0 included */
        omc_client *c = NULL;
        char msg[128];
        omc_info info;
        om_buf data = OM_BUF_INIT;

        ck_assert_int_eq(omc_connect(r.cl.addr[i], 5000, &c, msg, sizeof(msg)), OM_OK);
        ck_assert_msg(omc_retrieve(c, "repl", DROPPED_KEY, &info, &data) == OM_E_NOTFOUND,
                      "r%d holds the write whose shipment was dropped", i);
        om_buf_free(&data);
        omc_close(c);
    }
    printf("  %s is gone on every replica; %d reads of it never found it\n", DROPPED_KEY,
           atomic_load(&r.obs[2].done));
    run_finish(&r);
}
END_TEST

START_TEST(kill9_backup_removed)
{
    static run r;

    run_start(&r, "kill9_backup_removed");
    it_writers_wait_acked(r.w, WRITERS, 200, 20000);
    replica_down(&r.cl, 2, true);
    wait_in_sync(&r.cl, NREP - 1, 10000);            /* removed by the primary's transaction */
    it_writers_wait_acked(r.w, WRITERS, 200, 10000); /* and the writes go on without it */
    printf("backup r2 removed from the in-sync set; writes continue\n");
    check_metric(&r.cl, 0, "objmeta_replication_in_sync_size 2\n");
    check_metric(&r.cl, 0, "objmeta_replication_backup_in_sync{backup=\"");
    start_replica(&r.cl, 2, false);
    wait_in_sync(&r.cl, NREP, 20000);
    it_writers_wait_acked(r.w, WRITERS, 100, 10000);
    printf("backup r2 rejoined the in-sync set\n");
    /* again, and back while nothing is written: the shipper's retries find it */
    replica_down(&r.cl, 2, true);
    wait_in_sync(&r.cl, NREP - 1, 10000);
    it_writers_wait_acked(r.w, WRITERS, 100, 10000);
    writers_stop(&r);
    start_replica(&r.cl, 2, false);
    wait_in_sync(&r.cl, NREP, 10000);
    printf("backup r2 rejoined an idle group\n");
    run_finish(&r);
}
END_TEST

START_TEST(sigstop_primary)
{
    static run r;
    it_writer *old;
    uint64_t t_new, until;
    long term;
    int pr, in, next;

    run_start(&r, "sigstop_primary");
    /* one more writer that stays on r0, the primary about to be stopped */
    old = &r.w[WRITERS];
    it_writers_start(old, &r.th[WRITERS], 1,
                     &(it_writer){.addrs = {r.cl.addr[0]},
                                  .naddrs = 1,
                                  .bucket = "repl",
                                  .connect_ms = 1000,
                                  .timeout_ms = 4000,
                                  .backoff_ms = 10,
                                  .stop = &r.stop,
                                  .id = WRITERS},
                     r.seed ^ 77);
    r.nw = WRITERS + 1;
    it_writers_wait_acked(r.w, WRITERS + 1, 200, 20000);
    ck_assert_int_eq(kill(tu_proc_pid(r.cl.p[0]), SIGSTOP), 0);
    next = wait_primary(&r.cl, 0, TTL_MS + 5000);
    t_new = tu_now_ms();
    read_config(&r.cl, &term, &pr, &in);
    printf("r0 stopped: r%d leads term %ld\n", next, term);
    it_writers_wait_acked(r.w, WRITERS, 100, 10000);
    ck_assert_int_eq(kill(tu_proc_pid(r.cl.p[0]), SIGCONT), 0);
    /* the old primary wakes past its lease: nothing more is acknowledged by it */
    for (until = tu_now_ms() + 3000; tu_now_ms() < until; pause_ms(20))
        ck_assert_msg(atomic_load(&old->ok_after_ms) < t_new,
                      "the old primary acknowledged a write after the new term began");
    wait_in_sync(&r.cl, NREP, 20000); /* it came back a backup and was repaired */
    printf("old primary: %d writes acknowledged, none after the new term\n",
           atomic_load(&old->acked));
    run_finish(&r);
}
END_TEST

START_TEST(empty_group_failover)
{
    static cluster cl;
    uint64_t t0, took;
    long term;
    int pr, in, next;

    cluster_start(&cl);
    wait_metric(&cl, 0, "objmeta_replication_serving 1\n", 15000);
    for (int i = 0; i < NREP; i++) /* the term mark, and no client write */
        wait_metric(&cl, i, "objmeta_replication_index 1\n", 10000);
    t0 = tu_now_ms();
    replica_down(&cl, 0, true);
    next = wait_primary(&cl, 0, TTL_MS + 5000);
    took = tu_now_ms() - t0;
    read_config(&cl, &term, &pr, &in);
    printf("empty group: kill -9 of r0, r%d serves term %ld after %llu ms\n", next, term,
           (unsigned long long)took);
    ck_assert_int_eq(term, 2);
    ck_assert_int_eq(pr, next);
    ck_assert_msg(took <= TTL_MS + 1000, "failover took %llu ms > lease TTL + 1 s",
                  (unsigned long long)took);
    start_replica(&cl, 0, false);
    wait_in_sync(&cl, NREP, 20000);
    cluster_stop(&cl);
}
END_TEST

START_TEST(promote_switchover)
{
    static run r;
    long term;
    int pr, in;

    run_start(&r, "promote_switchover");
    it_writers_wait_acked(r.w, WRITERS, 200, 20000);
    put_config(&r.cl, 2, 1); /* admin promote r1: the old primary must stop, r1 take over */
    ck_assert_int_eq(wait_primary(&r.cl, 0, 10000), 1);
    read_config(&r.cl, &term, &pr, &in);
    ck_assert_int_eq(term, 2);
    ck_assert_int_eq(pr, 1);
    it_writers_wait_acked(r.w, WRITERS, 200, 10000);
    wait_in_sync(&r.cl, NREP, 10000);
    check_metric(&r.cl, 1, "objmeta_replication_role{role=\"primary\"} 1\n");
    check_metric(&r.cl, 1, "objmeta_replication_serving 1\n");
    check_metric(&r.cl, 1, "objmeta_replication_failovers_total 1\n");
    check_metric(&r.cl, 2, "objmeta_replication_term 2\n");
    printf("promoted r1 leads term 2; writes continue\n");
    run_finish(&r);
}
END_TEST

START_TEST(etcd_unreachable)
{
    static run r;
    uint64_t t0, deadline, until, refused_sent;
    int acked;

    run_start(&r, "etcd_unreachable");
    it_writers_wait_acked(r.w, WRITERS, 200, 20000);
    tu_etcd_stop_member(r.cl.etcd, 0);
    t0 = tu_now_ms();
    /* the primary stops serving before its lease could have expired in etcd */
    deadline = t0 + TTL_MS;
    for (;;) {
        refused_sent = tu_now_ms();
        if (try_store(&r.cl, 0, "probe") != OM_OK)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "the primary serves past its lease without etcd");
        pause_ms(20);
    }
    printf("etcd stopped: the primary stopped serving after %llu ms\n",
           (unsigned long long)(tu_now_ms() - t0));
    /*
     * Nobody acknowledges a write sent after that. One sent before it (each writer has at
     * most one in flight) may still be answered, within the lease: its reply can arrive, or
     * be counted by the writer's thread, after the probe was refused.
     */
    acked = it_writers_acked(r.w, WRITERS);
    for (until = tu_now_ms() + 1000; tu_now_ms() < until; pause_ms(20)) {
        ck_assert_int_le(it_writers_acked(r.w, WRITERS), acked + WRITERS);
        for (int i = 0; i < WRITERS; i++)
            ck_assert_msg(atomic_load(&r.w[i].ok_sent_ms) <= refused_sent,
                          "writer %d: a write sent %llu ms after the refusal was acknowledged", i,
                          (unsigned long long)(atomic_load(&r.w[i].ok_sent_ms) - refused_sent));
    }
    tu_etcd_restart_member(r.cl.etcd, 0);
    (void)wait_primary(&r.cl, -1, 20000);
    it_writers_wait_acked(r.w, WRITERS, 100, 10000);
    wait_in_sync(&r.cl, NREP, 20000);
    printf("etcd back: a primary serves again\n");
    run_finish(&r);
}
END_TEST

START_TEST(sigterm_rolling)
{
    static run r;
    int primary = 0;

    run_start(&r, "sigterm_rolling");
    for (int round = 0; round < 3; round++) {
        uint64_t t0, took;
        int next;

        it_writers_wait_acked(r.w, WRITERS, 100, 20000);
        t0 = tu_now_ms();
        replica_down(&r.cl, primary, false); /* a restart of a rolling upgrade */
        next = wait_primary(&r.cl, primary, TTL_MS + 5000);
        took = tu_now_ms() - t0;
        printf("round %d: SIGTERM of r%d: r%d serves after %llu ms\n", round, primary, next,
               (unsigned long long)took);
        /* it resigned (lease revoked): no wait for the lease to expire */
        ck_assert_msg(took < TTL_MS, "failover after SIGTERM took %llu ms",
                      (unsigned long long)took);
        start_replica(&r.cl, primary, false);
        wait_in_sync(&r.cl, NREP, 20000);
        primary = next;
    }
    run_finish(&r);
}
END_TEST

START_TEST(static_settings_refused)
{
    static const struct {
        const char *setting, *listen, *msg;
    } c[] = {
        {"--replica-role=primary", "--listen=127.0.0.1:7", "leave replica-role"},
        {"--replicas=127.0.0.1:9", "--listen=127.0.0.1:7", "leave replica-role"},
        {"--replica-lease-ttl=2s", "--listen=127.0.0.1:0", "needs a fixed port"},
    };

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char dir[300], *out = NULL, *err = NULL;
        const char *argv[] = {"objmeta-shard",
                              dir,
                              "--etcd=http://127.0.0.1:1",
                              "--replica-group=g1",
                              "--replica-id=r0",
                              c[i].listen,
                              c[i].setting,
                              "--http-listen=off",
                              NULL};
        int rc;

        snprintf(dir, sizeof(dir), "--data-dir=%s", tu_tmpdir());
        rc = tu_run_cmd("$OBJMETA_SHARD", argv, 10000, &out, &err);
        ck_assert_msg(rc != 0, "%s accepted with etcd", c[i].setting);
        ck_assert_msg(err != NULL && strstr(err, c[i].msg) != NULL, "%s: stderr lacks \"%s\": %s",
                      c[i].setting, c[i].msg, err ? err : "");
        free(out);
        free(err);
    }
}
END_TEST

/*
 * The primary's "catch-up done" line for the backup on port `port`: pages,
 * bytes and seconds (false: none yet).
 */
static bool
catch_up_done(const cluster *cl, int primary, int port, unsigned long long *pages,
              unsigned long long *bytes, double *secs)
{
    char path[300], line[1024], backup[64];
    FILE *f;
    bool found = false;

    snprintf(path, sizeof(path), "%s.stderr", cl->dir[primary]);
    snprintf(backup, sizeof(backup), "backup=127.0.0.1:%d ", port);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, "catch-up done ");
        unsigned long long records, index;
        if (p != NULL && strstr(p, backup) != NULL)
            found = sscanf(strstr(p, "index="),
                           "index=%llu pages=%llu records=%llu bytes=%llu elapsed_s=%lf", &index,
                           pages, &records, bytes, secs) == 5;
    }
    fclose(f);
    return found;
}

START_TEST(wiped_backup)
{
    static run r;
    unsigned long long pages = 0, bytes = 0;
    double secs = 0, least;
    uint64_t deadline;

    catch_up_rate = "--replica-catch-up-rate=4K";
    run_start(&r, "wiped_backup");
    it_writers_wait_acked(r.w, WRITERS, 300, 20000);
    replica_down(&r.cl, 1, false);
    tu_rmrf(r.cl.dir[1]);
    wait_in_sync(&r.cl, NREP - 1, 10000);
    start_replica(&r.cl, 1, false); /* the same path, now empty */
    wait_in_sync(&r.cl, NREP, 30000);
    it_writers_wait_acked(r.w, WRITERS, 100, 10000);
    printf("wiped backup r1 caught up and is in sync again\n");
    deadline = tu_now_ms() + 10000;
    while (!catch_up_done(&r.cl, 0, r.cl.port[1], &pages, &bytes, &secs)) {
        ck_assert_msg(tu_now_ms() < deadline, "r0 logged no \"catch-up done\" for r1");
        pause_ms(50);
    }
    /* 4 KiB/s: pages of at most 4 KiB, each paid for before the next, so every page but the
     * last (at most 4 KiB) took its bytes / the rate */
    least = bytes > 4096 ? (double)(bytes - 4096) / 4096.0 - 0.01 : 0;
    printf("catch-up: %llu pages, %llu bytes in %.2f s (at least %.2f s at 4 KiB/s)\n", pages,
           bytes, secs, least);
    ck_assert_msg(bytes > 4096 && pages >= bytes / 4096, "pages %llu for %llu bytes", pages, bytes);
    ck_assert_msg(secs >= least, "catch-up of %llu bytes took %.2f s: not throttled", bytes, secs);
    catch_up_rate = "--replica-catch-up-rate=16M";
    run_finish(&r);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("repl_etcd");
    TCase *tc = tcase_create("etcd");

    if (!tu_etcd_available())
        return 77;
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, kill9_primary_failover);
    tcase_add_test(tc, kill9_backup_removed);
    tcase_add_test(tc, sigstop_primary);
    tcase_add_test(tc, wiped_backup);
    tcase_add_test(tc, empty_group_failover);
    tcase_add_test(tc, promote_switchover);
    tcase_add_test(tc, etcd_unreachable);
    tcase_add_test(tc, sigterm_rolling);
    tcase_add_test(tc, static_settings_refused);
    suite_add_tcase(s, tc);
    /* the fault hooks (CK_RUN_CASE=faults runs them alone) */
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, drop_shipment);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
