/*
 * bench/server/shard_engine_bench.c -- the shard's object operations without
 * the network: CPU time per Store (in batches, as the loop thread runs them
 * with shard_write_many) and per Retrieve (shard_get), measured on the calling
 * thread with CLOCK_THREAD_CPUTIME_ID, so background threads and other load
 * on the machine disturb the figures less than a wall-clock run. Meant for
 * A/B comparisons of the shard and engine write and read paths (alone or
 * under `valgrind --tool=cachegrind` for exact instruction and miss counts).
 *
 * Phases (keys "key:%012u" in bucket "bench", uniform random, 256-byte values
 * unless --value-size): preload every key once, store M, retrieve M (memtable
 * and tables), flush the memtable, retrieve M (tables only), store M (reads
 * the current versions from tables).
 *
 * usage: shard_engine_bench [--keys N] [--ops M] [--batch B] [--value-size V]
 *                           [--sync always|none] [--restart-interval R] [--dir D]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shard/record.h"
#include "shard/shard.h"
#include "util/log.h"
#include "util/status.h"

typedef struct eb {
    shard *s;
    uint32_t keys, ops, batch;
    size_t value_size;
    uint8_t *value;
    uint64_t rnd;
    char (*names)[24];
    shard_write *w;
} eb;

static uint64_t
eb_rand(eb *b)
{
    b->rnd ^= b->rnd << 13;
    b->rnd ^= b->rnd >> 7;
    b->rnd ^= b->rnd << 17;
    return b->rnd;
}

static double
eb_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* n stores in batches of b->batch; keys from `seq` (i-th key) or random. */
static int
eb_store(eb *b, uint32_t n, bool seq)
{
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < b->batch ? n - done : b->batch;

        for (uint32_t i = 0; i < k; i++) {
            uint32_t key = seq ? done + i : (uint32_t)(eb_rand(b) % b->keys);
            shard_write *w = &b->w[i];

            memset(w, 0, sizeof(*w));
            w->args.bucket = om_slice_from_str("bench");
            w->args.key = om_slice_from_str(b->names[key]);
            w->args.data = om_slice_make(b->value, b->value_size);
            w->args.content_type = om_slice_from_str("application/octet-stream");
        }
        shard_write_many(b->s, b->w, k);
        for (uint32_t i = 0; i < k; i++) {
            if (b->w[i].status != OM_OK) {
                om_log(OM_LOG_ERROR, "store failed: %s", b->w[i].err);
                return -1;
            }
        }
        done += k;
    }
    return 0;
}

static int
eb_get(eb *b, uint32_t n)
{
    om_buf raw = OM_BUF_INIT;
    shard_record rec;
    char err[256];

    for (uint32_t i = 0; i < n; i++) {
        uint32_t key = (uint32_t)(eb_rand(b) % b->keys);
        om_status st = shard_get(b->s, om_slice_from_str("bench"), om_slice_from_str(b->names[key]),
                                 &raw, &rec, err, sizeof(err));
        if (st != OM_OK) {
            om_log(OM_LOG_ERROR, "get failed: %s", err);
            om_buf_free(&raw);
            return -1;
        }
    }
    om_buf_free(&raw);
    return 0;
}

static void
eb_report(const char *phase, double t0, uint32_t n)
{
    printf("%-24s %8u ops %9.0f ns/op (thread CPU)\n", phase, n, (eb_cpu_ns() - t0) / n);
}

int
main(int argc, char **argv)
{
    eb b = {.keys = 100000,
            .ops = 200000,
            .batch = 800,
            .value_size = 256,
            .rnd = 88172645463325252ULL};
    const char *dir = NULL, *sync = "none";
    char tmpl[] = "/tmp/shard_engine_bench.XXXXXX";
    shard_opts o;
    double t0;
    int rc = 1;

    shard_opts_init(&o);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--keys") == 0)
            b.keys = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--ops") == 0)
            b.ops = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0)
            b.batch = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--value-size") == 0)
            b.value_size = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--sync") == 0)
            sync = argv[i + 1];
        else if (strcmp(argv[i], "--restart-interval") == 0)
            o.lsm.block_restart_interval = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else {
            printf("usage: %s [--keys N] [--ops M] [--batch B] [--value-size V] "
                   "[--sync always|none] [--restart-interval R] [--dir D]\n",
                   argv[0]);
            return 2;
        }
    }
    if (b.keys == 0 || b.ops == 0 || b.batch == 0) {
        printf("keys, ops and batch must be > 0\n");
        return 2;
    }
    if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    b.value = malloc(b.value_size + 1);
    b.names = calloc(b.keys, sizeof(*b.names));
    b.w = calloc(b.batch, sizeof(*b.w));
    if (b.value == NULL || b.names == NULL || b.w == NULL)
        goto out;
    for (size_t i = 0; i < b.value_size; i++)
        b.value[i] = (uint8_t)('a' + i % 26);
    for (uint32_t i = 0; i < b.keys; i++)
        snprintf(b.names[i], sizeof(b.names[i]), "key:%012" PRIu32, i);
    o.lsm.sync_mode = strcmp(sync, "always") == 0 ? LSM_SYNC_ALWAYS : LSM_SYNC_NONE;
    o.workers = 1;
    if (shard_open(dir, &o, &b.s) != OM_OK)
        goto out;
    t0 = eb_cpu_ns();
    if (eb_store(&b, b.keys, true) != 0)
        goto out;
    eb_report("preload (ascending)", t0, b.keys);
    t0 = eb_cpu_ns();
    if (eb_store(&b, b.ops, false) != 0)
        goto out;
    eb_report("store (memtable)", t0, b.ops);
    t0 = eb_cpu_ns();
    if (eb_get(&b, b.ops) != 0)
        goto out;
    eb_report("retrieve (memtable)", t0, b.ops);
    if (lsm_flush(shard_db(b.s)) != OM_OK)
        goto out;
    t0 = eb_cpu_ns();
    if (eb_get(&b, b.ops) != 0)
        goto out;
    eb_report("retrieve (tables)", t0, b.ops);
    t0 = eb_cpu_ns();
    if (eb_store(&b, b.ops, false) != 0)
        goto out;
    eb_report("store (after a flush)", t0, b.ops);
    rc = 0;
out:
    if (b.s != NULL && shard_close(b.s) != OM_OK)
        rc = 1;
    if (rc == 0 && lsm_destroy(dir, &o.lsm) != OM_OK)
        rc = 1;
    free(b.value);
    free(b.names);
    free(b.w);
    return rc;
}
