/*
 * bench/lsm/lsm_bench.c -- named workloads over objmeta's LSM engine and,
 * when built with -Dbench_peers=enabled, over RocksDB and LevelDB through
 * their C APIs, in the same run and with comparable options.
 *
 * Keys look like `bucket-0007/photos/2024/img-00001234.jpg` (key i sorts at
 * position i, so fillseq writes in key order). Values (--values): random
 * bytes by default (256 of them, --value-size; what compression cannot
 * shrink, like the object data users store), `json` for ~200-byte JSON
 * object metadata (compressible: field names repeat), or `half` (half
 * random, half a repeated pattern: the values of earlier runs). Reads,
 * scans and deletes choose keys uniformly or Zipfian (--dist=zipf, theta
 * 0.99 as YCSB; --dist=zipf:T for another theta). bench/common/bench_gen.c
 * generates both.
 *
 * Workloads (per engine, each on the database the previous one left where
 * that makes sense):
 *   fillseq       N puts in key order into a fresh database (no sync)
 *   fillrandom    N puts in random order into a fresh database (no sync);
 *                 the database is closed and reopened for the reads below
 *   readrandom    R gets of random existing keys
 *   readmissing   R gets of absent keys inside the key range
 *   seekscan100   R/20 seeks to a random key, then 100 nexts within its bucket
 *   deleterandom  R deletes of random keys
 *   fillsync      S puts, each synced, into a fresh database
 *   fillbatch4    4 threads writing synced batches of 8 puts (S batches in all)
 *
 * For each it prints ops/s, p50/p99 latency per operation, and for the
 * fills space amplification (bytes of files in the database directory after
 * close / logical key+value bytes) and write amplification (bytes the process
 * passed to write(2) from open to close, from /proc/self/io wchar, / logical
 * bytes written). Each workload ends with the ratio of objmeta's ops/s to the
 * best peer's.
 *
 * Every row's note ends with the engine's L0 table count and the process RSS
 * when the workload ended (before the close). --shape-ms=N prints the tree
 * shape (files per level) every N ms while a workload runs, and
 * --settle=S keeps a fill's database open after its last write until L0
 * holds at most 4 tables (or S seconds pass), printing the shape, so the
 * time compaction needs to catch up shows. Beside every workload a watch
 * samples L0 and the compaction debt every 100 ms and prints a "watch" line
 * under the row: L0's peak, the time L0 spent at or above the engine's
 * slowdown trigger (in all and the longest stretch), and the debt's peak and
 * its value when the workload ended (shape_mon). --hog=N runs N busy threads
 * beside every workload (a CPU competitor; the background threads of every
 * engine must still keep up). --cache-mb sets every engine's block cache;
 * --nice sets objmeta's background_nice (0 by default, the shard runs 5).
 *
 * --verbose prints each engine's tree shape (files per level: lsm_stats for
 * objmeta, the "num-files-at-level<N>" properties of RocksDB and LevelDB)
 * after each fill and when a read workload opens its database and ends, so a
 * comparison shows what every engine reads through. --keep leaves the
 * databases in place (with a "<dir>.filled" marker naming the fill's key
 * count and seed) so a read workload can be rerun alone on the same data.
 *
 * Options, the same for every engine: 64 MiB write buffer (objmeta's
 * default; --write-buffer-mb, the shard's memory budget gives 16), 4 KiB blocks,
 * 10-bit bloom filters, 64 MiB block cache (--cache-mb), 1000 open files, 2 background
 * jobs where configurable; compression zstd level 1 for objmeta and RocksDB,
 * snappy for LevelDB (its only compressor in Debian's 1.23).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/bench_gen.h"
#include "bench/lsm/lsm_bench.h"
#include "lsm/lsm.h"
#include "util/clock.h"
#include "util/log.h"

#define BUCKETS 16
#define SCAN_LEN 100
#define BATCH_KEYS 8
#define BATCH_THREADS 4

typedef struct bench_cfg {
    uint64_t num;      /* keys for fillseq/fillrandom */
    uint64_t reads;    /* ops for readrandom/readmissing/deleterandom */
    uint64_t sync_num; /* ops for fillsync, batches for fillbatch4 */
    const char *dir;
    uint64_t seed;
} bench_cfg;

/* ---- keys and values ---- */

static uint64_t keys_per_bucket = 1;
static bg_values vals;               /* --values, --value-size */
static engine_cfg ecfg;              /* --cache-mb, --nice: how every engine is opened */
static const char *dist = "uniform"; /* --dist: key choice of reads, scans and deletes */

static size_t
make_key(char *buf, uint64_t i, bool missing)
{
    return (size_t)snprintf(buf, 64, "bucket-%04" PRIu64 "/photos/2024/img-%08" PRIu64 ".%s",
                            i / keys_per_bucket, i, missing ? "jpx" : "jpg");
}

/* ---- latency histogram: 64 powers of two x 16 linear sub-buckets, in ns ---- */

typedef struct hist {
    uint64_t b[64][16];
    uint64_t n;
} hist;

static void
hist_add(hist *h, uint64_t ns)
{
    int e = ns < 16 ? 0 : 63 - __builtin_clzll(ns) - 3;
    uint64_t sub = ns < 16 ? ns : (ns >> e) & 15;

    h->b[e][sub]++;
    h->n++;
}

static void
hist_merge(hist *into, const hist *h)
{
    for (int e = 0; e < 64; e++)
        for (int s = 0; s < 16; s++)
            into->b[e][s] += h->b[e][s];
    into->n += h->n;
}

static double
hist_pct(const hist *h, double p)
{
    uint64_t want = (uint64_t)(p * (double)h->n), seen = 0;

    for (int e = 0; e < 64; e++)
        for (int s = 0; s < 16; s++) {
            seen += h->b[e][s];
            if (seen > want && h->b[e][s] > 0)
                return e == 0 ? (double)s : (double)((16u + (uint64_t)s) << e) - (1u << e) / 2.0;
        }
    return 0;
}

/* ---- process I/O and directory size ---- */

static uint64_t
proc_wchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    uint64_t v = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "wchar: %" SCNu64, &v) == 1)
            break;
    fclose(f);
    return v;
}

/* The 1-minute load average (other work on a shared machine skews every figure). */
static double
load_avg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;

    if (f != NULL) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static uint64_t
dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t total = 0;
    char p[4096];
    struct stat sb;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p))
            continue;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (uint64_t)sb.st_size;
    }
    closedir(d);
    return total;
}

static void
rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[4096];

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) < (int)sizeof(p))
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- workloads ---- */

static const char *const all_workloads[] = {"fillseq",     "fillrandom",  "readrandom",
                                            "readmissing", "seekscan100", "deleterandom",
                                            "fillsync",    "fillbatch4"};
#define NWORKLOADS (sizeof(all_workloads) / sizeof(all_workloads[0]))
#define NENGINES_MAX 3

typedef struct result {
    bool ran;
    double ops_per_s;
    double p50_us, p99_us, p999_us;
    double space_amp, write_amp; /* < 0: not measured */
    uint64_t ops;
    char note[160];
    char watch[160]; /* the watch's findings (shape_stop) */
} result;

#define MAX_ROUNDS 9
static result results[NENGINES_MAX][NWORKLOADS];
static result rres[MAX_ROUNDS][NENGINES_MAX][NWORKLOADS];
static int rounds = 1;
static bool verbose;
static bool keep;    /* leave the databases (and fill markers) in place at the end */
static int shape_ms; /* --shape-ms: print the tree shape this often during a workload */
static int settle_s; /* --settle: after a fill, wait up to this long for L0 <= SETTLED_L0 */
#define SETTLED_L0 4

static uint64_t
now_ns(void)
{
    return om_clock_mono_ns();
}

static void
finish(result *r, const hist *h, uint64_t ops, uint64_t t0, uint64_t t1)
{
    r->ran = true;
    r->ops = ops;
    r->ops_per_s = (double)ops / ((double)(t1 - t0) / 1e9);
    r->p50_us = hist_pct(h, 0.50) / 1000.0;
    r->p99_us = hist_pct(h, 0.99) / 1000.0;
    r->p999_us = hist_pct(h, 0.999) / 1000.0;
}

static void
die(const char *engine_name, const char *what)
{
    printf("%s: %s failed\n", engine_name, what);
    exit(1);
}

/*
 * Which engine directories hold a complete fillrandom database (read
 * workloads need one): the marker file "<dir>.filled" names the key count and
 * seed of the fill. It is written after a fillrandom closed its database and
 * removed before anything else changes the directory (a fill, a delete
 * workload), so with --keep a later run (`--workloads=readmissing`) reuses the
 * database instead of filling it again.
 */
static void
fill_marker_path(char *buf, size_t n, const char *dir)
{
    snprintf(buf, n, "%s.filled", dir);
}

static void
fill_marker_clear(const char *dir)
{
    char p[4200];

    fill_marker_path(p, sizeof(p), dir);
    unlink(p);
}

static void
fill_marker_set(const char *dir, uint64_t num, uint64_t seed)
{
    char p[4200];
    FILE *f;

    fill_marker_path(p, sizeof(p), dir);
    if ((f = fopen(p, "w")) == NULL)
        return; /* the next read workload fills again */
    fprintf(f, "fillrandom num=%" PRIu64 " seed=%" PRIu64 "\n", num, seed);
    fclose(f);
}

static bool
fill_marker_matches(const char *dir, uint64_t num, uint64_t seed)
{
    char p[4200], want[128], line[128];
    FILE *f;
    bool ok;

    fill_marker_path(p, sizeof(p), dir);
    if ((f = fopen(p, "r")) == NULL)
        return false;
    snprintf(want, sizeof(want), "fillrandom num=%" PRIu64 " seed=%" PRIu64 "\n", num, seed);
    ok = fgets(line, sizeof(line), f) != NULL && strcmp(line, want) == 0;
    fclose(f);
    return ok;
}

/* ---- tree shape over time, L0 and RSS in the notes ---- */

/* The engine's compaction debt in MiB, or -1 if it has no estimate. */
static double
debt_mib(const engine_ops *ops, engine *e)
{
    int64_t d = ops->debt != NULL ? ops->debt(e) : -1;

    return d < 0 ? -1.0 : (double)d / MB;
}

static void
print_shape(const engine_ops *ops, engine *e, uint64_t t0, const char *what)
{
    int f[7];
    double debt = debt_mib(ops, e);
    char d[32] = "-";

    ops->levels(e, f);
    if (debt >= 0)
        snprintf(d, sizeof(d), "%.0f MiB", debt);
    printf("    %-8s %-8s t=%6.1fs files/level %d %d %d %d %d %d %d  debt %s  rss %.0f MiB\n",
           ops->name, what, (double)(now_ns() - t0) / 1e9, f[0], f[1], f[2], f[3], f[4], f[5], f[6],
           d, (double)bg_rss_bytes(0) / MB);
    fflush(stdout);
}

/*
 * The watch: a thread beside every workload samples the engine's L0 table
 * count and compaction debt every WATCH_MS (and with --shape-ms prints the
 * shape every shape_ms). A workload's "watch" line then says how far L0
 * rose, how long it stayed at or above the engine's slowdown trigger (the
 * writes were being slowed) in all and in the longest stretch, and the debt
 * at its largest and when the workload ended -- issue 14's check that
 * compaction keeps up under a sustained write load.
 */
#define WATCH_MS 100

typedef struct shape_mon {
    const engine_ops *ops;
    engine *e;
    uint64_t t0;
    atomic_bool stop;
    pthread_t th;
    bool running;
    /* the samples: the thread's alone until shape_stop joined it */
    uint64_t last_ns;                      /* time of the previous sample */
    int l0_max;                            /* largest L0 sampled */
    uint64_t slow_ns, stretch_ns, long_ns; /* at or above the slowdown trigger */
    double debt_max, debt_end;             /* MiB; -1: the engine has no estimate */
} shape_mon;

static void
watch_sample(shape_mon *m)
{
    uint64_t now = now_ns(), dt = now - m->last_ns;
    int f[7];

    m->ops->levels(m->e, f);
    m->debt_end = debt_mib(m->ops, m->e);
    if (m->debt_end > m->debt_max)
        m->debt_max = m->debt_end;
    if (f[0] > m->l0_max)
        m->l0_max = f[0];
    if (f[0] >= m->e->l0_slowdown) {
        m->slow_ns += dt;
        m->stretch_ns += dt;
        if (m->stretch_ns > m->long_ns)
            m->long_ns = m->stretch_ns;
    } else {
        m->stretch_ns = 0;
    }
    m->last_ns = now;
}

static void *
shape_main(void *arg)
{
    shape_mon *m = arg;
    uint64_t next_print = m->t0, next_sample = m->t0 + WATCH_MS * 1000000u;

    while (!atomic_load(&m->stop)) {
        struct timespec ts = {0, 10 * 1000000L};

        if (shape_ms > 0 && now_ns() >= next_print) {
            print_shape(m->ops, m->e, m->t0, "running");
            next_print += (uint64_t)shape_ms * 1000000u;
        }
        if (now_ns() >= next_sample) {
            watch_sample(m);
            next_sample += WATCH_MS * 1000000u;
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void
shape_start(shape_mon *m, const engine_ops *ops, engine *e)
{
    memset(m, 0, sizeof(*m));
    m->ops = ops;
    m->e = e;
    m->t0 = m->last_ns = now_ns();
    m->debt_max = -1;
    atomic_init(&m->stop, false);
    m->running = pthread_create(&m->th, NULL, shape_main, m) == 0;
}

/* Stop the watch, take a last sample, and put its line into r->watch. */
static void
shape_stop(shape_mon *m, result *r)
{
    double secs = (double)(now_ns() - m->t0) / 1e9;
    int n;

    if (!m->running)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->th, NULL);
    m->running = false;
    watch_sample(m);
    n = snprintf(r->watch, sizeof(r->watch),
                 "L0 max %d, >= slowdown (%d) %.1f of %.1f s, longest %.1f s", m->l0_max,
                 m->e->l0_slowdown, (double)m->slow_ns / 1e9, secs, (double)m->long_ns / 1e9);
    if (m->debt_max >= 0)
        snprintf(r->watch + n, sizeof(r->watch) - (size_t)n, "; debt max %.0f MiB, end %.0f MiB",
                 m->debt_max, m->debt_end);
}

/*
 * --settle: keep a filled database open (no writes) until L0 holds at most
 * SETTLED_L0 tables or settle_s seconds pass, printing the shape each
 * second; the outcome goes into the note.
 */
static void
settle(const engine_ops *ops, engine *e, result *r)
{
    uint64_t t0 = now_ns(), last = 0;
    int f[7];
    size_t n = strlen(r->note);

    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        double secs = (double)(now_ns() - t0) / 1e9;

        ops->levels(e, f);
        if (f[0] <= SETTLED_L0 || secs >= settle_s) {
            snprintf(r->note + n, sizeof(r->note) - n, "%sL0 %s %d after %.1f s", n ? "; " : "",
                     f[0] <= SETTLED_L0 ? "settled at" : "still", f[0], secs);
            n = strlen(r->note);
            if (debt_mib(ops, e) >= 0)
                snprintf(r->note + n, sizeof(r->note) - n, ", debt %.0f MiB", debt_mib(ops, e));
            print_shape(ops, e, t0, "settle");
            return;
        }
        if (now_ns() - last >= 1000000000u) {
            print_shape(ops, e, t0, "settle");
            last = now_ns();
        }
        nanosleep(&ts, NULL);
    }
}

/* Append the L0 table count and the process RSS to r's note (before the close). */
static void
note_shape(result *r, const engine_ops *ops, engine *e)
{
    int f[7];
    size_t n = strlen(r->note);

    ops->levels(e, f);
    snprintf(r->note + n, sizeof(r->note) - n, "%sL0=%d rss=%.0fMiB", n ? "; " : "", f[0],
             (double)bg_rss_bytes(0) / MB);
}

/* Close e; with --verbose, say how long it took (an engine may finish background work). */
static void
close_timed(const engine_ops *ops, engine *e)
{
    uint64_t t0 = now_ns();

    ops->close(e);
    if (verbose)
        printf("    %s close: %.0f ms\n", ops->name, (double)(now_ns() - t0) / 1e6);
}

/*
 * Fill n keys (in order or a random permutation), then (--settle) wait for
 * compaction, then close; measures SA and WA.
 */
static void
run_fill(const engine_ops *ops, const char *dir, uint64_t n, bool random, bool sync, uint64_t seed,
         result *r)
{
    hist *h = calloc(1, sizeof(*h));
    uint32_t *perm = NULL;
    uint64_t w0 = proc_wchar(), t0, t1, s = seed, logical = 0;
    engine *e;
    char key[64];
    uint8_t vbuf[BG_JSON_MAX];
    shape_mon mon;

    r->note[0] = r->watch[0] = '\0';
    fill_marker_clear(dir);
    rm_tree(dir);
    if (random) {
        perm = malloc(n * sizeof(*perm));
        for (uint64_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        for (uint64_t i = n - 1; i > 0; i--) {
            uint64_t j = bg_rand(&s) % (i + 1);
            uint32_t t = perm[i];

            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    if ((e = ops->open(ops, dir, sync, &ecfg)) == NULL)
        exit(1);
    shape_start(&mon, ops, e);
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = random ? perm[i] : i;
        size_t kn = make_key(key, k, false);
        const uint8_t *v;
        size_t vn = bg_value(&vals, k, vbuf, &v);
        uint64_t a = now_ns();

        if (!ops->put(e, key, kn, v, vn))
            die(ops->name, "put");
        hist_add(h, now_ns() - a);
        logical += kn + vn;
    }
    t1 = now_ns();
    shape_stop(&mon, r);
    if (verbose && ops->stats != NULL)
        ops->stats(e, "(end)");
    note_shape(r, ops, e);
    if (settle_s > 0)
        settle(ops, e, r);
    close_timed(ops, e);
    if (random && !sync)
        fill_marker_set(dir, n, seed);
    finish(r, h, n, t0, t1);
    r->space_amp = (double)dir_bytes(dir) / (double)logical;
    r->write_amp = (double)(proc_wchar() - w0) / (double)logical;
    free(perm);
    free(h);
}

typedef enum { OP_READ, OP_MISSING, OP_SCAN, OP_DELETE } op_kind;

static void
run_ops(const engine_ops *ops, engine *e, op_kind kind, uint64_t count, uint64_t num, uint64_t seed,
        result *r)
{
    hist *h = calloc(1, sizeof(*h));
    uint64_t t0, t1, s = seed | 1, found = 0, scanned = 0;
    char key[64];
    bg_keys keys;
    shape_mon mon;

    r->note[0] = r->watch[0] = '\0';
    bg_keys_init(&keys, num, dist); /* dist was checked in main */
    shape_start(&mon, ops, e);
    t0 = now_ns();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t k = bg_keys_next(&keys, &s);
        size_t kn = make_key(key, k, kind == OP_MISSING);
        uint64_t a = now_ns();
        bool f = false, ok;
        int got = 0;

        switch (kind) {
        case OP_READ:
        case OP_MISSING:
            ok = ops->get(e, key, kn, &f);
            found += f;
            break;
        case OP_SCAN:
            /* Scan within the bucket: the prefix up to and including the first '/'. */
            ok = ops->scan(e, key, kn, 12, SCAN_LEN, &got);
            scanned += (uint64_t)got;
            break;
        default:
            ok = ops->del(e, key, kn);
            break;
        }
        if (!ok)
            die(ops->name, "operation");
        hist_add(h, now_ns() - a);
    }
    t1 = now_ns();
    shape_stop(&mon, r);
    if (verbose && ops->stats != NULL)
        ops->stats(e, "(end)");
    finish(r, h, count, t0, t1);
    r->space_amp = r->write_amp = -1;
    if (kind == OP_READ || kind == OP_MISSING)
        snprintf(r->note, sizeof(r->note), "found %" PRIu64 "/%" PRIu64, found, count);
    else if (kind == OP_SCAN)
        snprintf(r->note, sizeof(r->note), "avg %.1f keys/scan",
                 count ? (double)scanned / (double)count : 0.0);
    note_shape(r, ops, e);
    free(h);
}

typedef struct batch_worker {
    const engine_ops *ops;
    engine *e;
    uint64_t first, batches, num_keys;
    uint64_t logical; /* key and value bytes written */
    hist h;
} batch_worker;

static void *
batch_run(void *arg)
{
    batch_worker *w = arg;
    char keys[BATCH_KEYS][64];
    size_t kn[BATCH_KEYS], vn[BATCH_KEYS];
    const uint8_t *v[BATCH_KEYS];
    uint8_t vbuf[BATCH_KEYS][BG_JSON_MAX];
    uint64_t s = w->first * 7919 + 1;

    for (uint64_t b = 0; b < w->batches; b++) {
        uint64_t a;

        for (int i = 0; i < BATCH_KEYS; i++) {
            uint64_t k = bg_rand(&s) % w->num_keys;

            kn[i] = make_key(keys[i], k, false);
            vn[i] = bg_value(&vals, k, vbuf[i], &v[i]);
            w->logical += kn[i] + vn[i];
        }
        a = now_ns();
        if (!w->ops->batch(w->e, keys, kn, v, vn, BATCH_KEYS))
            die(w->ops->name, "batch write");
        hist_add(&w->h, now_ns() - a);
    }
    return NULL;
}

static void
run_batch4(const engine_ops *ops, const char *dir, uint64_t batches, uint64_t num, result *r)
{
    batch_worker *w = calloc(BATCH_THREADS, sizeof(*w));
    pthread_t th[BATCH_THREADS];
    hist *h = calloc(1, sizeof(*h));
    uint64_t w0 = proc_wchar(), t0, t1, logical = 0;
    engine *e;

    fill_marker_clear(dir);
    rm_tree(dir);
    if ((e = ops->open(ops, dir, true, &ecfg)) == NULL)
        exit(1);
    t0 = now_ns();
    for (int i = 0; i < BATCH_THREADS; i++) {
        w[i] = (batch_worker){ops, e, (uint64_t)i + 1, batches / BATCH_THREADS, num, 0, {{{0}}, 0}};
        pthread_create(&th[i], NULL, batch_run, &w[i]);
    }
    for (int i = 0; i < BATCH_THREADS; i++) {
        pthread_join(th[i], NULL);
        hist_merge(h, &w[i].h);
        logical += w[i].logical;
    }
    t1 = now_ns();
    snprintf(r->note, sizeof(r->note), "%d puts/batch, ops = batches", BATCH_KEYS);
    note_shape(r, ops, e);
    ops->close(e);
    finish(r, h, h->n, t0, t1);
    r->space_amp = -1;
    r->write_amp = (double)(proc_wchar() - w0) / (double)logical;
    free(w);
    free(h);
}

static bool
wanted(const char *list, const char *name)
{
    size_t n = strlen(name);

    if (list == NULL)
        return true;
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);

        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (c ? 1 : 0);
    }
    return false;
}

static void
print_row(const char *wl, const char *eng, const result *r)
{
    char sa[16] = "-", wa[16] = "-";

    if (r->space_amp >= 0)
        snprintf(sa, sizeof(sa), "%.2f", r->space_amp);
    if (r->write_amp >= 0)
        snprintf(wa, sizeof(wa), "%.2f", r->write_amp);
    printf("%-13s %-8s %9" PRIu64 " %10.0f %8.1f %8.1f %9.1f %6s %6s  %s\n", wl, eng, r->ops,
           r->ops_per_s, r->p50_us, r->p99_us, r->p999_us, sa, wa, r->note);
    if (r->watch[0] != '\0')
        printf("%-13s %-8s   watch: %s\n", "", "", r->watch);
    fflush(stdout);
}

/*
 * Run workload w on one engine in dir. Read and delete workloads open the
 * database fillrandom left (filling it first if fillrandom was skipped) and
 * close it afterwards. Returns false if the engine cannot be opened.
 */
static bool
run_workload(const engine_ops *ops, const char *dir, size_t w, const bench_cfg *cfg, result *r)
{
    const char *wl = all_workloads[w];
    struct stat sb;
    char cur[4200];
    engine *e;
    op_kind k;

    if (strcmp(wl, "fillseq") == 0) {
        run_fill(ops, dir, cfg->num, false, false, cfg->seed, r);
        return true;
    }
    if (strcmp(wl, "fillrandom") == 0) {
        run_fill(ops, dir, cfg->num, true, false, cfg->seed, r);
        return true;
    }
    if (strcmp(wl, "fillsync") == 0) {
        run_fill(ops, dir, cfg->sync_num, true, true, cfg->seed, r);
        return true;
    }
    if (strcmp(wl, "fillbatch4") == 0) {
        run_batch4(ops, dir, cfg->sync_num, cfg->num, r);
        return true;
    }
    snprintf(cur, sizeof(cur), "%s/CURRENT", dir);
    if (stat(cur, &sb) != 0 || !fill_marker_matches(dir, cfg->num, cfg->seed)) {
        result tmp = {0};

        run_fill(ops, dir, cfg->num, true, false, cfg->seed, &tmp);
    }
    k = strcmp(wl, "readrandom") == 0    ? OP_READ
        : strcmp(wl, "readmissing") == 0 ? OP_MISSING
        : strcmp(wl, "seekscan100") == 0 ? OP_SCAN
                                         : OP_DELETE;
    if (k == OP_DELETE)
        fill_marker_clear(dir); /* the database no longer holds every key */
    if ((e = ops->open(ops, dir, false, &ecfg)) == NULL)
        return false;
    if (verbose && ops->stats != NULL)
        ops->stats(e, "(opened)");
    run_ops(ops, e, k, k == OP_SCAN ? cfg->reads / 20 + 1 : cfg->reads, cfg->num, cfg->seed + w, r);
    close_timed(ops, e);
    return true;
}

static void
usage(void)
{
    printf("usage: lsm_bench [--num=N] [--reads=R] [--sync-num=S] [--engines=a,b]\n"
           "                 [--workloads=a,b] [--db-dir=DIR] [--seed=X] [--rounds=N]\n"
           "                 [--verbose] [--keep] [--values=random|json|half]\n"
           "                 [--value-size=B] [--dist=uniform|zipf|zipf:T] [--cache-mb=N]\n"
           "                 [--shape-ms=N] [--settle=S] [--hog=N] [--nice=N]\n"
           "                 [--write-buffer-mb=N] [--l1-mb=N]\n"
           "--values:  random bytes (default), ~200 B JSON metadata, or half random/half\n"
           "           pattern; --value-size for random and half (default 256)\n"
           "--dist:    key choice of reads, scans and deletes (zipf: theta 0.99)\n"
           "--shape-ms: print files per level every N ms while a workload runs\n"
           "--settle:  after a fill, wait up to S s (no writes) for L0 <= 4 tables\n"
           "--hog:     N busy threads beside every workload (CPU competition)\n"
           "--nice:    objmeta's background_nice (0..19; the shard's default is 5)\n"
           "--write-buffer-mb: every engine's memtable size (default 64; the shard's 16)\n"
           "--l1-mb:   objmeta's max_bytes_for_level1 (default: the engine's)\n"
           "LSM_BENCH_DEBUG=1 in the environment logs the engine's flushes and compactions\n"
           "--verbose: engine statistics (files per level) after each fill, and when a read\n"
           "           workload opens its database and when it ends\n"
           "--keep:    leave the databases in --db-dir; a later run's read workloads reuse a\n"
           "           database fillrandom left with the same --num and --seed\n"
           "engines:   objmeta"
#ifdef HAVE_ROCKSDB
           ",rocksdb"
#endif
#ifdef HAVE_LEVELDB
           ",leveldb"
#endif
           " (built in)\n"
           "workloads: fillseq,fillrandom,readrandom,readmissing,seekscan100,deleterandom,\n"
           "           fillsync,fillbatch4\n");
}

int
main(int argc, char **argv)
{
    bench_cfg cfg = {2000000, 0, 0, "/tmp/lsm_bench", 42};
    const char *engines = NULL, *workloads = NULL;
    const engine_ops *run[NENGINES_MAX], *const *all;
    size_t nrun = 0, n_all;
    bg_value_kind vkind = BG_VALUES_RANDOM;
    size_t cache_mb = 64, wbuf_mb = 64, l1_mb = 0;
    int om_nice = 0;
    uint64_t vsize = 256;
    int hog_threads = 0;
    bg_hog *hog;
    bg_keys kcheck;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strncmp(a, "--num=", 6) == 0)
            cfg.num = strtoull(a + 6, NULL, 10);
        else if (strncmp(a, "--reads=", 8) == 0)
            cfg.reads = strtoull(a + 8, NULL, 10);
        else if (strncmp(a, "--sync-num=", 11) == 0)
            cfg.sync_num = strtoull(a + 11, NULL, 10);
        else if (strncmp(a, "--engines=", 10) == 0)
            engines = a + 10;
        else if (strncmp(a, "--workloads=", 12) == 0)
            workloads = a + 12;
        else if (strncmp(a, "--db-dir=", 9) == 0)
            cfg.dir = a + 9;
        else if (strncmp(a, "--rounds=", 9) == 0)
            rounds = atoi(a + 9);
        else if (strcmp(a, "--verbose") == 0)
            verbose = true;
        else if (strcmp(a, "--keep") == 0)
            keep = true;
        else if (strncmp(a, "--seed=", 7) == 0)
            cfg.seed = strtoull(a + 7, NULL, 10);
        else if (strncmp(a, "--values=", 9) == 0) {
            if (!bg_value_kind_parse(a + 9, &vkind)) {
                printf("--values must be random, json or half\n");
                return 2;
            }
        } else if (strncmp(a, "--value-size=", 13) == 0)
            vsize = strtoull(a + 13, NULL, 10);
        else if (strncmp(a, "--dist=", 7) == 0)
            dist = a + 7;
        else if (strncmp(a, "--cache-mb=", 11) == 0)
            cache_mb = strtoull(a + 11, NULL, 10);
        else if (strncmp(a, "--write-buffer-mb=", 18) == 0)
            wbuf_mb = strtoull(a + 18, NULL, 10);
        else if (strncmp(a, "--l1-mb=", 8) == 0)
            l1_mb = strtoull(a + 8, NULL, 10);
        else if (strncmp(a, "--shape-ms=", 11) == 0)
            shape_ms = atoi(a + 11);
        else if (strncmp(a, "--settle=", 9) == 0)
            settle_s = atoi(a + 9);
        else if (strncmp(a, "--hog=", 6) == 0)
            hog_threads = atoi(a + 6);
        else if (strncmp(a, "--nice=", 7) == 0)
            om_nice = atoi(a + 7);
        else {
            usage();
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        printf("--rounds must be 1..%d\n", MAX_ROUNDS);
        return 2;
    }
    if (cfg.num < 1000) {
        printf("--num must be at least 1000\n");
        return 2;
    }
    if (vsize < 1 || vsize > (1u << 20) || cache_mb < 1 || shape_ms < 0 || settle_s < 0 ||
        hog_threads < 0 || hog_threads > 64 || om_nice < 0 || om_nice > 19 || wbuf_mb < 1 ||
        wbuf_mb > 4096) {
        printf("--value-size must be 1..1048576, --cache-mb >= 1, --shape-ms, --settle and "
               "--hog >= 0 (hog at most 64), --nice 0..19, --write-buffer-mb 1..4096\n");
        return 2;
    }
    ecfg.cache_bytes = cache_mb * MB;
    ecfg.background_nice = om_nice;
    ecfg.write_buffer = wbuf_mb * MB;
    ecfg.l1_bytes = (uint64_t)l1_mb * MB;
    if (!bg_keys_init(&kcheck, cfg.num, dist)) {
        printf("--dist must be uniform, zipf or zipf:T with 0 < T < 1\n");
        return 2;
    }
    if (cfg.reads == 0)
        cfg.reads = cfg.num / 4 < 1000000 ? cfg.num / 4 : 1000000;
    if (cfg.sync_num == 0)
        cfg.sync_num = 2000;
    keys_per_bucket = (cfg.num + BUCKETS - 1) / BUCKETS;
    /* The engine's INFO lines (flushes, compactions) would interleave with the table. */
    om_log_set_level(getenv("LSM_BENCH_DEBUG") ? OM_LOG_DEBUG : OM_LOG_WARN);
    if (!bg_values_init(&vals, vkind, (size_t)vsize, cfg.seed)) {
        printf("out of memory for values\n");
        return 1;
    }
    all = engines_all(&n_all);
    for (size_t i = 0; i < n_all; i++)
        if (wanted(engines, all[i]->name))
            run[nrun++] = all[i];
    if (engines != NULL) {
        /* Refuse unknown engine names rather than silently comparing fewer. */
        for (const char *p = engines; *p;) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            bool known = false;

            for (size_t i = 0; i < nrun; i++)
                known |= strlen(run[i]->name) == len && strncmp(run[i]->name, p, len) == 0;
            if (!known) {
                printf("engine '%.*s' is not built in (configure with -Dbench_peers=enabled)\n",
                       (int)len, p);
                return 2;
            }
            p += len + (c ? 1 : 0);
        }
    }
    mkdir(cfg.dir, 0755);
    printf("lsm_bench: num=%" PRIu64 " reads=%" PRIu64 " sync_num=%" PRIu64
           " values=%s%s%s dist=%s cache=%zu MiB write buffer=%zu MiB hog=%d nice=%d dir=%s"
           " load=%.2f\n",
           cfg.num, cfg.reads, cfg.sync_num, bg_value_kind_name(vkind),
           vkind == BG_VALUES_JSON ? " (~200 B)" : "", vkind == BG_VALUES_JSON ? "" : " of", dist,
           cache_mb, wbuf_mb, hog_threads, om_nice, cfg.dir, load_avg());
    if (vkind != BG_VALUES_JSON)
        printf("           value size %" PRIu64 " bytes\n", vsize);
    hog = bg_hog_start(hog_threads);
    printf("%-13s %-8s %9s %10s %8s %8s %9s %6s %6s  %s\n", "workload", "engine", "ops", "ops/s",
           "p50(us)", "p99(us)", "p99.9(us)", "spaceA", "writeA", "note");

    /*
     * Workload-major order: every engine runs a workload before any engine runs
     * the next, and the engine order rotates each round, so load from
     * neighbours on a shared machine spreads over the engines instead of
     * landing on one. Engines are closed between workloads, so one engine's
     * background compaction never runs during another's measurement.
     */
    for (int round = 0; round < rounds; round++) {
        if (rounds > 1)
            printf("-- round %d of %d\n", round + 1, rounds);
        for (size_t w = 0; w < NWORKLOADS; w++) {
            if (!wanted(workloads, all_workloads[w]))
                continue;
            for (size_t j = 0; j < nrun; j++) {
                size_t ei = (j + (size_t)round) % nrun;
                char dir[4096];

                snprintf(dir, sizeof(dir), "%s/%s", cfg.dir, run[ei]->name);
                if (!run_workload(run[ei], dir, w, &cfg, &rres[round][ei][w]))
                    return 1;
                print_row(all_workloads[w], run[ei]->name, &rres[round][ei][w]);
            }
        }
    }
    bg_hog_stop(hog);
    for (size_t ei = 0; ei < nrun && !keep; ei++) {
        char dir[4096];

        snprintf(dir, sizeof(dir), "%s/%s", cfg.dir, run[ei]->name);
        fill_marker_clear(dir);
        rm_tree(dir);
    }
    printf("lsm_bench: done, load=%.2f (1-minute load average; %ld cores)\n", load_avg(),
           sysconf(_SC_NPROCESSORS_ONLN));
    /* Per engine and workload, the round with the median ops/s. */
    for (size_t ei = 0; ei < nrun; ei++)
        for (size_t w = 0; w < NWORKLOADS; w++) {
            result *rs[MAX_ROUNDS];
            int n = 0;

            for (int round = 0; round < rounds; round++)
                if (rres[round][ei][w].ran)
                    rs[n++] = &rres[round][ei][w];
            for (int x = 1; x < n; x++)
                for (int y = x; y > 0 && rs[y - 1]->ops_per_s > rs[y]->ops_per_s; y--) {
                    result *t = rs[y];

                    rs[y] = rs[y - 1];
                    rs[y - 1] = t;
                }
            if (n > 0)
                results[ei][w] = *rs[n / 2];
        }
    if (rounds > 1) {
        printf("\nmedian of %d rounds\n", rounds);
        for (size_t w = 0; w < NWORKLOADS; w++)
            for (size_t ei = 0; ei < nrun; ei++)
                if (results[ei][w].ran)
                    print_row(all_workloads[w], run[ei]->name, &results[ei][w]);
    }

    if (nrun > 1 && run[0] == &objmeta_ops) {
        printf("\nratio objmeta / best peer (ops/s; >= 1.00 means objmeta is faster)\n");
        for (size_t w = 0; w < NWORKLOADS; w++) {
            double best = 0;
            const char *who = "-";

            if (!results[0][w].ran)
                continue;
            for (size_t ei = 1; ei < nrun; ei++)
                if (results[ei][w].ran && results[ei][w].ops_per_s > best) {
                    best = results[ei][w].ops_per_s;
                    who = run[ei]->name;
                }
            if (best > 0)
                printf("  %-13s %5.2f  (best peer: %s)\n", all_workloads[w],
                       results[0][w].ops_per_s / best, who);
        }
    }
    bg_values_fini(&vals);
    return 0;
}
