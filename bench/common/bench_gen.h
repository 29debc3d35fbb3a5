/*
 * bench/common/bench_gen.h -- what the benchmarks generate alike: values
 * (incompressible random bytes, the old half-random values, or ~200-byte
 * JSON object metadata), key choice (uniform or scrambled Zipfian), the
 * resident memory of a process, and a CPU hog for runs under competition.
 * Shared by bench/lsm/lsm_bench and bench/server/objmeta_bench so that the
 * engine and the server are measured on the same kinds of data.
 *
 * Thread-safety: a bg_values or bg_keys is read-only after its init and may
 *                be used from any number of threads (each with its own rng
 *                state and value buffer).
 */
#ifndef OM_BENCH_GEN_H
#define OM_BENCH_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- random numbers (xorshift64*; the state must not be 0) ---- */
uint64_t bg_rand(uint64_t *state);

/* ---- values ---- */
typedef enum bg_value_kind {
    BG_VALUES_RANDOM, /* random bytes: what compression cannot shrink (the default) */
    BG_VALUES_HALF,   /* half random, half a repeated pattern (the old lsm_bench values) */
    BG_VALUES_JSON,   /* ~200 bytes of object metadata as a JSON object, per key */
} bg_value_kind;

#define BG_JSON_MAX 320 /* the longest JSON value bg_value writes */

typedef struct bg_values {
    bg_value_kind kind;
    size_t size; /* bytes per value (random, half); JSON values vary around 200 */
    uint8_t *pool;
    size_t pool_size;
} bg_values;

/* "random", "half" or "json" -> *out; false for anything else. */
bool bg_value_kind_parse(const char *s, bg_value_kind *out);
const char *bg_value_kind_name(bg_value_kind k);
/* false when out of memory. */
bool bg_values_init(bg_values *v, bg_value_kind kind, size_t size, uint64_t seed);
void bg_values_fini(bg_values *v);
/*
 * The value of key i: *out points into the pool (random, half) or into buf
 * (json; buf holds at least BG_JSON_MAX bytes). Returns its length.
 */
size_t bg_value(const bg_values *v, uint64_t i, uint8_t *buf, const uint8_t **out);

/* ---- key choice ---- */
typedef struct bg_keys {
    uint64_t n;
    bool zipf;
    double theta, zetan, alpha, eta;
} bg_keys;

/*
 * "uniform", "zipf" (theta 0.99, as YCSB) or "zipf:THETA" (0 < THETA < 1)
 * over n keys; false for anything else. A Zipfian draw ranks keys by
 * popularity and scatters the ranks over the key space (YCSB's scrambled
 * Zipfian), so hot keys are not neighbours.
 */
bool bg_keys_init(bg_keys *k, uint64_t n, const char *dist);
uint64_t bg_keys_next(const bg_keys *k, uint64_t *rng);

/* ---- processes ---- */
/* VmRSS of process pid (0: this process) in bytes; 0 if unreadable. */
uint64_t bg_rss_bytes(pid_t pid);

/* threads busy-looping until bg_hog_stop (NULL when threads <= 0). */
typedef struct bg_hog bg_hog;
bg_hog *bg_hog_start(int threads);
void bg_hog_stop(bg_hog *h);

#endif
