/*
 * bench/ring/ring_bench.c -- lookups per second of the consistent-hash ring
 * for 3, 16 and 64 equal shards at the default 128 vnodes per weight.
 *
 * Two figures per ring: `owner` is ring_owner() on precomputed key hashes
 * (the binary search alone), `lookup` is ring_lookup() on (bucket, key)
 * pairs (key hashing + search, what the coordinator pays per request). Keys
 * are 32-byte random object names, so the hashes are spread over the whole
 * ring and the search is not helped by a warm path. Also prints the time to
 * build each ring and to diff it against the ring with one more shard.
 *
 * Usage: ring_bench [lookups per measurement, default 5000000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner/ring.h"
#include "util/clock.h"

#define NKEYS 65536 /* distinct keys cycled through (fits in L2 with their hashes) */

static uint64_t
bench_rand(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static ring *
bench_ring(size_t n, uint64_t *build_ns)
{
    ring_shard *sp = calloc(n, sizeof(*sp));
    char(*ids)[32] = calloc(n, sizeof(*ids));
    char(*addrs)[48] = calloc(n, sizeof(*addrs));
    char err[256];
    ring *r = NULL;
    uint64_t t0;

    if (sp == NULL || ids == NULL || addrs == NULL)
        exit(1);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "shard-%02zu", i);
        snprintf(addrs[i], sizeof(addrs[i]), "10.%u.%u.1:7000", (unsigned)(i / 256),
                 (unsigned)(i % 256));
        sp[i] = (ring_shard){ids[i], addrs[i], 1};
    }
    t0 = om_clock_mono_ns();
    if (ring_new(sp, n, 0, 1, &r, err, sizeof(err)) != OM_OK) {
        printf("ring_new: %s\n", err);
        exit(1);
    }
    *build_ns = om_clock_mono_ns() - t0;
    free(sp);
    free(ids);
    free(addrs);
    return r;
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {3, 16, 64};
    long lookups = argc > 1 ? atol(argv[1]) : 5000000;
    char(*keys)[48] = malloc(NKEYS * sizeof(*keys));
    uint64_t *hashes = malloc(NKEYS * sizeof(*hashes));
    uint64_t st = 0x9E3779B97F4A7C15ULL;
    om_slice bucket = om_slice_from_str("bench-bucket");

    if (keys == NULL || hashes == NULL || lookups <= 0)
        return 1;
    for (size_t i = 0; i < NKEYS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "photos/%016llx-%08zu",
                 (unsigned long long)bench_rand(&st), i);
        hashes[i] = ring_key_hash(bucket, om_slice_from_str(keys[i]));
    }
    printf("ring_bench: %ld lookups per measurement, vnodes_per_weight=%u\n", lookups,
           RING_DEFAULT_VNODES_PER_WEIGHT);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t build_ns, t0, owner_ns, lookup_ns, diff_ns, sink = 0;
        ring *r = bench_ring(sizes[k], &build_ns), *grown;
        ring_shard extra = {"shard-extra", "10.1.0.1:7000", 1};
        ring_move *mv;
        size_t nmv;
        char err[256];

        t0 = om_clock_mono_ns();
        for (long i = 0; i < lookups; i++)
            sink += ring_owner(r, hashes[i & (NKEYS - 1)]);
        owner_ns = om_clock_mono_ns() - t0;

        t0 = om_clock_mono_ns();
        for (long i = 0; i < lookups; i++) {
            const char *key = keys[i & (NKEYS - 1)];
            sink += (uintptr_t)ring_lookup(r, bucket, om_slice_from_str(key));
        }
        lookup_ns = om_clock_mono_ns() - t0;

        if (ring_add_node(r, &extra, &grown, err, sizeof(err)) != OM_OK) {
            printf("ring_add_node: %s\n", err);
            return 1;
        }
        t0 = om_clock_mono_ns();
        if (ring_diff(r, grown, &mv, &nmv) != OM_OK)
            return 1;
        diff_ns = om_clock_mono_ns() - t0;
        free(mv);

        printf("shards=%-3zu points=%-6zu build=%.2f ms  owner: %.1f M/s (%.1f ns)  "
               "lookup: %.1f M/s (%.1f ns)  diff(+1 shard): %.2f ms, %zu ranges  [%llu]\n",
               sizes[k], ring_point_count(r), build_ns / 1e6, lookups / (owner_ns / 1e3),
               (double)owner_ns / lookups, lookups / (lookup_ns / 1e3), (double)lookup_ns / lookups,
               diff_ns / 1e6, nmv, (unsigned long long)(sink & 0xff));
        ring_unref(grown);
        ring_unref(r);
    }
    free(keys);
    free(hashes);
    return 0;
}
