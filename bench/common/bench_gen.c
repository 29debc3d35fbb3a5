/*
 * bench/common/bench_gen.c -- values, key choice, RSS and a CPU hog for the
 * benchmarks (contract in bench_gen.h).
 *
 * Values. Metadata servers hold what users send: object data that is
 * usually already compressed, and small JSON documents whose field names
 * repeat from record to record. A benchmark of identical or half-pattern
 * values measures a compressor that removes most of the bytes, which no
 * user sees, so random bytes are the default and JSON is the second case.
 * Random values are windows of a 4 MiB pool at scattered offsets: two
 * values in one 4 KiB block share nothing, so zstd finds nothing either.
 *
 * Zipfian keys follow Gray et al., "Quickly generating billion-record
 * synthetic databases" (SIGMOD 1994), the generator YCSB uses: zeta(n) is
 * summed once at init (O(n); 2M keys take a few tens of milliseconds), a
 * draw costs one pow(). The rank is then hashed onto the key space.
 */
#include "bench/common/bench_gen.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_SIZE (4u << 20)

uint64_t
bg_rand(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ---- values ---- */

bool
bg_value_kind_parse(const char *s, bg_value_kind *out)
{
    for (int k = BG_VALUES_RANDOM; k <= BG_VALUES_JSON; k++)
        if (strcmp(s, bg_value_kind_name((bg_value_kind)k)) == 0) {
            *out = (bg_value_kind)k;
            return true;
        }
    return false;
}

const char *
bg_value_kind_name(bg_value_kind k)
{
    switch (k) {
    case BG_VALUES_RANDOM:
        return "random";
    case BG_VALUES_HALF:
        return "half";
    default:
        return "json";
    }
}

bool
bg_values_init(bg_values *v, bg_value_kind kind, size_t size, uint64_t seed)
{
    uint64_t x = seed | 1;

    memset(v, 0, sizeof(*v));
    v->kind = kind;
    v->size = size;
    if (kind == BG_VALUES_JSON)
        return true;
    v->pool_size = POOL_SIZE + size;
    if ((v->pool = malloc(v->pool_size)) == NULL)
        return false;
    for (size_t i = 0; i < v->pool_size; i++) {
        uint8_t r = (uint8_t)(bg_rand(&x) >> 56);

        /* half: 128 random bytes then 128 pattern bytes, so any window is half/half */
        v->pool[i] =
            kind == BG_VALUES_HALF && (i / 128) % 2 == 1 ? (uint8_t)("photos/2024/"[i % 12]) : r;
    }
    return true;
}

void
bg_values_fini(bg_values *v)
{
    free(v->pool);
    v->pool = NULL;
}

static const char *const json_types[] = {"image/jpeg", "application/pdf", "video/mp4",
                                         "text/plain; charset=utf-8"};
static const char *const json_classes[] = {"STANDARD", "STANDARD_IA", "GLACIER"};

size_t
bg_value(const bg_values *v, uint64_t i, uint8_t *buf, const uint8_t **out)
{
    uint64_t h = mix64(i + 0x9e3779b97f4a7c15ULL), h2 = mix64(h);
    int n;

    if (v->kind != BG_VALUES_JSON) {
        *out = v->pool + h % (v->pool_size - v->size);
        return v->size;
    }
    /* What a gateway keeps per object: type, owner, etag, size, class, tags, times. */
    n = snprintf((char *)buf, BG_JSON_MAX,
                 "{\"content-type\":\"%s\",\"owner\":\"user-%05u\",\"etag\":\"%016llx%016llx\","
                 "\"size\":%llu,\"storage-class\":\"%s\",\"tags\":{\"project\":\"p-%03u\","
                 "\"retention\":\"%u-days\"},\"uploaded\":\"2024-%02u-%02uT%02u:%02u:%02uZ\"}",
                 json_types[h % 4], (unsigned)(h >> 8) % 50000u, (unsigned long long)h,
                 (unsigned long long)h2, (unsigned long long)(h2 >> 20) % 100000000ULL,
                 json_classes[(h >> 40) % 3], (unsigned)(h2 >> 4) % 300u,
                 30u * (1u + (unsigned)(h2 >> 12) % 12u), 1u + (unsigned)(h >> 24) % 12u,
                 1u + (unsigned)(h >> 32) % 28u, (unsigned)(h2 >> 36) % 24u,
                 (unsigned)(h2 >> 44) % 60u, (unsigned)(h2 >> 52) % 60u);
    *out = buf;
    return n < 0 ? 0 : (size_t)n < BG_JSON_MAX ? (size_t)n : BG_JSON_MAX - 1;
}

/* ---- key choice ---- */

static double
zeta(uint64_t n, double theta)
{
    double s = 0;

    for (uint64_t i = 1; i <= n; i++)
        s += 1.0 / pow((double)i, theta);
    return s;
}

bool
bg_keys_init(bg_keys *k, uint64_t n, const char *dist)
{
    memset(k, 0, sizeof(*k));
    k->n = n;
    if (n == 0)
        return false;
    if (strcmp(dist, "uniform") == 0)
        return true;
    if (strcmp(dist, "zipf") == 0)
        k->theta = 0.99;
    else if (strncmp(dist, "zipf:", 5) == 0) {
        char *end;

        k->theta = strtod(dist + 5, &end);
        if (*end != '\0' || !(k->theta > 0 && k->theta < 1))
            return false;
    } else {
        return false;
    }
    k->zipf = true;
    k->zetan = zeta(n, k->theta);
    k->alpha = 1.0 / (1.0 - k->theta);
    k->eta = (1.0 - pow(2.0 / (double)n, 1.0 - k->theta)) / (1.0 - zeta(2, k->theta) / k->zetan);
    return true;
}

uint64_t
bg_keys_next(const bg_keys *k, uint64_t *rng)
{
    double u, uz;
    uint64_t rank;

    if (!k->zipf)
        return bg_rand(rng) % k->n;
    u = (double)(bg_rand(rng) >> 11) / 9007199254740992.0; /* [0, 1) */
    uz = u * k->zetan;
    if (uz < 1.0)
        rank = 0;
    else if (uz < 1.0 + pow(0.5, k->theta))
        rank = 1;
    else
        rank = (uint64_t)((double)k->n * pow(k->eta * u - k->eta + 1.0, k->alpha));
    if (rank >= k->n)
        rank = k->n - 1;
    return mix64(rank) % k->n;
}

/* ---- processes ---- */

uint64_t
bg_rss_bytes(pid_t pid)
{
    char path[64], line[256];
    unsigned long long kb = 0;
    FILE *f;

    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/status");
    else
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

struct bg_hog {
    atomic_bool stop;
    int n;
    pthread_t th[];
};

static void *
hog_main(void *arg)
{
    bg_hog *h = arg;
    volatile uint64_t x = 1;

    while (!atomic_load_explicit(&h->stop, memory_order_relaxed))
        for (int i = 0; i < 100000; i++)
            x = x * 6364136223846793005ULL + 1;
    return NULL;
}

bg_hog *
bg_hog_start(int threads)
{
    bg_hog *h;

    if (threads <= 0 || (h = calloc(1, sizeof(*h) + (size_t)threads * sizeof(pthread_t))) == NULL)
        return NULL;
    atomic_init(&h->stop, false);
    for (h->n = 0; h->n < threads; h->n++)
        if (pthread_create(&h->th[h->n], NULL, hog_main, h) != 0)
            break;
    return h;
}

void
bg_hog_stop(bg_hog *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, true);
    for (int i = 0; i < h->n; i++)
        pthread_join(h->th[i], NULL);
    free(h);
}
