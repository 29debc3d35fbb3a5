/*
 * bench/common/bench_hist.h -- the latency histogram every load generator
 * keeps: log-linear (32 sub-buckets per power of two of nanoseconds, about
 * 3% resolution), cheap enough to add every request to, and printed as one
 * human line plus one machine-readable RESULT line that the comparison
 * scripts parse:
 *   RESULT op=<name> ops=<n> ops_per_sec=<x> p50_us=<x> p99_us=<x> p999_us=<x> errors=<n>
 *
 * Thread-safety: none; one histogram per thread, merged at the end.
 */
#ifndef OM_BENCH_HIST_H
#define OM_BENCH_HIST_H

#include <stdint.h>

#define BH_SUB 32
#define BH_POW 40

typedef struct bh_hist {
    uint64_t b[BH_POW * BH_SUB];
    uint64_t n;
} bh_hist;

/* Count one request that took `ns` nanoseconds. */
void bh_add(bh_hist *h, uint64_t ns);

/* Upper bound of the bucket holding quantile q (0..1), in microseconds; 0 when empty. */
double bh_q_us(const bh_hist *h, double q);

/* dst += src. */
void bh_merge(bh_hist *dst, const bh_hist *src);

/* The human line: name, ops, ops/s, p50/p99/p99.9, errors. */
void bh_print(const char *name, uint64_t ops, uint64_t errors, const bh_hist *h, double secs);

/* The RESULT line (format above). */
void bh_print_result(const char *name, uint64_t ops, uint64_t errors, const bh_hist *h,
                     double secs);

#endif
