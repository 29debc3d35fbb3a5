/*
 * bench/rebalance/bench_rebalance.c -- how fast an online ring change
 * copies, and what it costs the clients (issue 6's bar: >= 50 MB/s without
 * client load; client p99 during a migration within 3x its value before).
 *
 * Starts a real cluster in a temporary directory (objmeta-shard x 4 with
 * sync-mode=always, objmeta-coord over the first 3 with its default copy
 * throttle unless --rate/--batch/--rate-busy/--batch-busy are given: they
 * become --migrate-rate etc.), preloads --records records of --value-size
 * bytes, then:
 *
 *   1. add-shard s4 with no client load (1 s after the preload): copy rate
 *      of pass 0 (records/s, MB/s of record bytes) and the time of the whole
 *      change;
 *   2. --secs of client load (--threads blocking clients, 80 % Retrieve,
 *      20 % Store of preloaded keys) for the "before" latencies;
 *   3. remove-shard s4 under the same load (--weight: set-weight s4 2
 *      instead, so that the old owners s1..s3 stay and compact in the
 *      cleanup): copy rate under load and the client latencies while the
 *      change runs.
 *
 * usage: bench_rebalance --shard PATH --coord PATH [--records N] [--value-size B]
 *                        [--threads T] [--secs S] [--rate R] [--batch B]
 *                        [--rate-busy R] [--batch-busy B] [--weight]
 * The load average (/proc/loadavg) is printed at the start and the end.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "rpc/rpc.h"
#include "util/clock.h"

#define BUCKET "bench-bucket"
#define MAXLAT 4000000

typedef struct proc {
    pid_t pid;
    int port;
} proc;

static char tmpdir[256];
static const char *shard_bin, *coord_bin;
static int nrecords = 60000, value_size = 1000, nthreads = 8, secs = 3;
/* coordinator options passed through (NULL: its default) */
static const char *rate, *batch, *rate_busy, *batch_busy;
static bool weight_change; /* --weight: the change under load is set-weight s4 2 */

static void
print_loadavg(const char *when)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof(buf), f) == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    printf("load average %s: %s\n", when, buf);
}

static void
die(const char *msg)
{
    fputs(msg, stdout);
    fputc('\n', stdout);
    exit(1);
}

/* Start bin with args; wait for its port file; returns the rpc port. */
static proc
spawn(const char *bin, const char *name, const char *const *args)
{
    char pf[512], logf[512], buf[600];
    char *argv[32];
    int n = 0;
    proc p = {0, 0};
    uint64_t deadline = om_clock_mono_ms() + 20000;

    snprintf(pf, sizeof(pf), "%s/%s.ports", tmpdir, name);
    snprintf(logf, sizeof(logf), "%s/%s.log", tmpdir, name);
    unlink(pf);
    argv[n++] = (char *)bin;
    for (int i = 0; args[i] != NULL && n < 28; i++)
        argv[n++] = (char *)args[i];
    snprintf(buf, sizeof(buf), "--port-file=%s", pf);
    argv[n++] = buf;
    argv[n] = NULL;
    p.pid = fork();
    if (p.pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, argv);
        _exit(127);
    }
    for (;;) {
        FILE *f = fopen(pf, "r");
        if (f != NULL) {
            char nm[32];
            int port;
            while (fscanf(f, "%31s %d", nm, &port) == 2)
                if (strcmp(nm, "rpc") == 0)
                    p.port = port;
            fclose(f);
            if (p.port > 0)
                return p;
        }
        if (om_clock_mono_ms() > deadline)
            die("a server did not start (see its log in the temporary directory)");
        om_clock_sleep_ms(20);
    }
}

static void
stop(proc *p)
{
    int st;
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, &st, 0);
    p->pid = 0;
}

static char coord_addr[64];

static Objmeta__Response *
admin(const Objmeta__Request *req)
{
    rpc_sync_client *c = NULL;
    Objmeta__Response *r = NULL;

    if (rpc_sync_client_open(coord_addr, 3000, &c) != OM_OK)
        return NULL;
    if (rpc_sync_client_call(c, req, 30000, &r) != OM_OK)
        r = NULL;
    rpc_sync_client_close(c);
    return r;
}

/* --- load ----------------------------------------------------------------------------------- */

static atomic_int phase; /* 0 before, 1 during the copy and cutover, 2 during cleanup, 3 after */
static atomic_bool stop_load;
static uint32_t *lat[3]; /* µs, phases 0, 1 and 2 */
static atomic_size_t nlat[3];

static void
key_of(int i, char *out, size_t n)
{
    snprintf(out, n, "obj/%08d", i);
}

static void *
load_main(void *arg)
{
    uint64_t rs = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    omc_client *c = NULL;
    char msg[256];
    uint8_t *buf = malloc((size_t)value_size);
    om_buf data = OM_BUF_INIT;

    memset(buf, 'v', (size_t)value_size);
    if (omc_connect(coord_addr, 3000, &c, msg, sizeof(msg)) != OM_OK)
        die(msg);
    while (!atomic_load(&stop_load)) {
        char key[32];
        omc_info info;
        uint64_t t0;
        om_status st;
        int ph;

        rs ^= rs << 13;
        rs ^= rs >> 7;
        rs ^= rs << 17;
        key_of((int)(rs % (uint64_t)nrecords), key, sizeof(key));
        t0 = om_clock_mono_ns();
        if (rs % 5 == 0)
            st = omc_store(c, BUCKET, key, om_slice_make(buf, (size_t)value_size), NULL, NULL);
        else
            st = omc_retrieve(c, BUCKET, key, &info, &data);
        if (st == OM_OK && rs % 5 != 0)
            omc_info_free(&info);
        ph = atomic_load(&phase);
        if (ph < 3) {
            size_t k = atomic_fetch_add(&nlat[ph], 1);
            if (k < MAXLAT)
                lat[ph][k] = (uint32_t)((om_clock_mono_ns() - t0) / 1000);
        }
    }
    om_buf_free(&data);
    free(buf);
    omc_close(c);
    return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void
percentiles(int ph, double *p50, double *p99, size_t *n)
{
    size_t k = atomic_load(&nlat[ph]);
    if (k > MAXLAT)
        k = MAXLAT;
    *n = k;
    if (k == 0) {
        *p50 = *p99 = 0;
        return;
    }
    qsort(lat[ph], k, sizeof(uint32_t), cmp_u32);
    *p50 = lat[ph][k / 2] / 1000.0;
    *p99 = lat[ph][(size_t)((double)k * 0.99)] / 1000.0;
}

typedef struct preload_arg {
    int from, to;
} preload_arg;

static void *
preload_main(void *arg)
{
    preload_arg *a = arg;
    omc_client *c = NULL;
    char msg[256];
    uint8_t *buf = malloc((size_t)value_size);

    memset(buf, 'p', (size_t)value_size);
    if (omc_connect(coord_addr, 3000, &c, msg, sizeof(msg)) != OM_OK)
        die(msg);
    for (int i = a->from; i < a->to; i++) {
        char key[32];
        key_of(i, key, sizeof(key));
        if (omc_store(c, BUCKET, key, om_slice_make(buf, (size_t)value_size), NULL, NULL) != OM_OK)
            die("preload failed");
    }
    free(buf);
    omc_close(c);
    return NULL;
}

/* Run one change; fills the copy (pass 0) duration and totals. */
static void
run_change(Objmeta__Request *req, double *copy_s, double *total_s, uint64_t *records,
           uint64_t *bytes)
{
    Objmeta__Request sreq = OBJMETA__REQUEST__INIT;
    Objmeta__RebalanceStatusRequest srq = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    Objmeta__Response *r = admin(req);
    uint64_t t0 = om_clock_mono_ms(), tcopy = 0, to;

    if (r == NULL || r->status != OBJMETA__STATUS__OK)
        die(r ? r->message : "change: no answer");
    to = (r->add_shard ? r->add_shard : r->remove_shard)->to_epoch;
    rpc_response_free(r);
    sreq.body_case = OBJMETA__REQUEST__BODY_REBALANCE_STATUS;
    sreq.rebalance_status = &srq;
    for (;;) {
        const Objmeta__RebalanceStatusResponse *s;
        r = admin(&sreq);
        if (r == NULL || r->status != OBJMETA__STATUS__OK)
            die("status failed");
        s = r->rebalance_status;
        if (tcopy == 0 && (!s->active || strcmp(s->phase, "copying") != 0))
            tcopy = om_clock_mono_ms();
        if (strcmp(s->phase, "cleanup") == 0 && atomic_load(&phase) == 1)
            atomic_store(&phase, 2); /* the old owners compact */
        if (!s->active && s->last_change_epoch >= to) {
            *records = s->records_copied;
            *bytes = s->bytes_copied;
            rpc_response_free(r);
            break;
        }
        rpc_response_free(r);
        om_clock_sleep_ms(5);
    }
    *copy_s = (double)(tcopy - t0) / 1000.0;
    *total_s = (double)(om_clock_mono_ms() - t0) / 1000.0;
}

int
main(int argc, char **argv)
{
    proc sh[4], co;
    char addr[4][64], shards_arg[512], opt_arg[4][64], dirs[5][512], ids[4][32];
    const char *opt_val[4],
        *opt_name[4] = {"migrate-rate", "migrate-batch", "migrate-rate-busy", "migrate-batch-busy"};
    pthread_t th[64];
    preload_arg pa[8];
    double copy_s, total_s, p50b, p99b, p50d, p99d, p50c, p99c, p50all = 0, p99all = 0;
    uint32_t *lat_all = NULL;
    size_t nall = 0;
    uint64_t recs, bytes;
    size_t nb, nd, nc;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--shard") == 0 && v)
            shard_bin = argv[++i];
        else if (strcmp(argv[i], "--coord") == 0 && v)
            coord_bin = argv[++i];
        else if (strcmp(argv[i], "--records") == 0 && v)
            nrecords = atoi(argv[++i]);
        else if (strcmp(argv[i], "--value-size") == 0 && v)
            value_size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && v)
            nthreads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--secs") == 0 && v)
            secs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0 && v)
            rate = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && v)
            batch = argv[++i];
        else if (strcmp(argv[i], "--weight") == 0)
            weight_change = true;
        else if (strcmp(argv[i], "--rate-busy") == 0 && v)
            rate_busy = argv[++i];
        else if (strcmp(argv[i], "--batch-busy") == 0 && v)
            batch_busy = argv[++i];
        else
            die("usage: bench_rebalance --shard PATH --coord PATH [--records N] "
                "[--value-size B] [--threads T] [--secs S] [--rate R] [--batch B] "
                "[--rate-busy R] [--batch-busy B] [--weight]");
    }
    if (shard_bin == NULL || coord_bin == NULL || nrecords < 1 || value_size < 1 || nthreads < 1 ||
        nthreads > 64 || secs < 1)
        die("bench_rebalance: --shard and --coord are required; numbers must be positive");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench_rebalance.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp failed");
    lat[0] = calloc(MAXLAT, sizeof(uint32_t));
    lat[1] = calloc(MAXLAT, sizeof(uint32_t));
    lat[2] = calloc(MAXLAT, sizeof(uint32_t));
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < 4; i++) {
        char idarg[160], dirarg[600];
        snprintf(ids[i], sizeof(ids[i]), "s%d", i + 1);
        snprintf(dirs[i], sizeof(dirs[i]), "%s/%s", tmpdir, ids[i]);
        snprintf(idarg, sizeof(idarg), "--id=%s", ids[i]);
        snprintf(dirarg, sizeof(dirarg), "--data-dir=%s", dirs[i]);
        const char *args[] = {
            idarg, dirarg, "--listen=127.0.0.1:0", "--http-listen=off", "--sync-mode=always", NULL};
        sh[i] = spawn(shard_bin, ids[i], args);
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", sh[i].port);
    }
    snprintf(shards_arg, sizeof(shards_arg), "--shards=s1=%s,s2=%s,s3=%s", addr[0], addr[1],
             addr[2]);
    snprintf(dirs[4], sizeof(dirs[4]), "--data-dir=%s/coord", tmpdir);
    opt_val[0] = rate;
    opt_val[1] = batch;
    opt_val[2] = rate_busy;
    opt_val[3] = batch_busy;
    {
        const char *args[12] = {dirs[4], "--listen=127.0.0.1:0", "--http-listen=off", shards_arg,
                                "--health-interval=200ms"};
        int na = 5;
        for (int i = 0; i < 4; i++) {
            if (opt_val[i] == NULL)
                continue;
            snprintf(opt_arg[i], sizeof(opt_arg[i]), "--%s=%s", opt_name[i], opt_val[i]);
            args[na++] = opt_arg[i];
            printf("coordinator option --%s=%s\n", opt_name[i], opt_val[i]);
        }
        args[na] = NULL;
        co = spawn(coord_bin, "coord", args);
    }
    snprintf(coord_addr, sizeof(coord_addr), "127.0.0.1:%d", co.port);

    print_loadavg("at start");
    uint64_t t0 = om_clock_mono_ms();
    for (int t = 0; t < 8; t++) {
        pa[t] = (preload_arg){t * nrecords / 8, (t + 1) * nrecords / 8};
        pthread_create(&th[t], NULL, preload_main, &pa[t]);
    }
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    printf("preload: %d records of %d bytes in %.1f s\n", nrecords, value_size,
           (double)(om_clock_mono_ms() - t0) / 1000.0);

    /* 1. add s4, no client load: the coordinator counts clients as active for 250 ms after
     * their last request (MIGRATION.md, "Throttle"), so let the preload's traffic age out */
    om_clock_sleep_ms(1000);
    {
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__AddShardRequest ad = OBJMETA__ADD_SHARD_REQUEST__INIT;
        ad.id = "s4";
        ad.addr = addr[3];
        req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
        req.add_shard = &ad;
        run_change(&req, &copy_s, &total_s, &recs, &bytes);
        printf("add-shard, no load:  copied %llu records, %.1f MB in %.2f s: %.0f records/s, "
               "%.1f MB/s; whole change (catch-up, cutover, cleanup) %.2f s\n",
               (unsigned long long)recs, (double)bytes / 1e6, copy_s, (double)recs / copy_s,
               (double)bytes / 1e6 / copy_s, total_s);
    }
    /* 2. load, before */
    atomic_store(&phase, 0);
    for (int t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, load_main, (void *)(uintptr_t)(t + 1));
    om_clock_sleep_ms((uint64_t)secs * 1000);
    /* 3. remove s4 (or raise its weight) under load */
    atomic_store(&phase, 1);
    {
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__RemoveShardRequest rm = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
        Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
        rm.id = sw.id = "s4";
        sw.weight = 2;
        if (weight_change) {
            req.body_case = OBJMETA__REQUEST__BODY_SET_WEIGHT;
            req.set_weight = &sw;
        } else {
            req.body_case = OBJMETA__REQUEST__BODY_REMOVE_SHARD;
            req.remove_shard = &rm;
        }
        run_change(&req, &copy_s, &total_s, &recs, &bytes);
    }
    atomic_store(&phase, 3);
    atomic_store(&stop_load, true);
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    printf("%s, load: copied %llu records, %.1f MB in %.2f s: %.0f records/s, "
           "%.1f MB/s; whole change %.2f s\n",
           weight_change ? "set-weight s4 2" : "remove-shard", (unsigned long long)recs,
           (double)bytes / 1e6, copy_s, (double)recs / copy_s, (double)bytes / 1e6 / copy_s,
           total_s);
    percentiles(0, &p50b, &p99b, &nb);
    {
        /* the whole change: copy, cutover and cleanup together (phase 3 holds the merge) */
        size_t n1 = atomic_load(&nlat[1]), n2 = atomic_load(&nlat[2]);
        n1 = n1 > MAXLAT ? MAXLAT : n1;
        n2 = n2 > MAXLAT ? MAXLAT : n2;
        lat_all = calloc(n1 + n2 + 1, sizeof(uint32_t));
        memcpy(lat_all, lat[1], n1 * sizeof(uint32_t));
        memcpy(lat_all + n1, lat[2], n2 * sizeof(uint32_t));
        qsort(lat_all, n1 + n2, sizeof(uint32_t), cmp_u32);
        nall = n1 + n2;
        p99all = nall ? lat_all[(size_t)((double)nall * 0.99)] / 1000.0 : 0;
        p50all = nall ? lat_all[nall / 2] / 1000.0 : 0;
    }
    percentiles(1, &p50d, &p99d, &nd);
    percentiles(2, &p50c, &p99c, &nc);
    printf("client latency (%d threads, 80%% retrieve / 20%% store): before p50 %.2f ms p99 "
           "%.2f ms (%zu ops in %d s); during p50 %.2f ms p99 %.2f ms (%zu ops in %.2f s); "
           "p99 ratio %.2f\n",
           nthreads, p50b, p99b, nb, secs, p50all, p99all, nall, total_s,
           p99b > 0 ? p99all / p99b : 0);
    printf("  copy + cutover: p50 %.2f ms p99 %.2f ms (%.2fx, %zu ops); after the switch "
           "(requests held by the cutover answered, old owners compact): p50 %.2f ms p99 %.2f "
           "ms (%.2fx, %zu ops)\n",
           p50d, p99d, p99b > 0 ? p99d / p99b : 0, nd, p50c, p99c, p99b > 0 ? p99c / p99b : 0, nc);
    free(lat_all);
    print_loadavg("at end");

    stop(&co);
    for (int i = 0; i < 4; i++)
        stop(&sh[i]);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            printf("could not remove %s\n", tmpdir);
    }
    free(lat[0]);
    free(lat[1]);
    free(lat[2]);
    return 0;
}
