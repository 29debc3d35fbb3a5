/*
 * bench/common/bench_hist.c -- the load generators' latency histogram
 * (bench_hist.h).
 */
#include "bench/common/bench_hist.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

void
bh_add(bh_hist *h, uint64_t ns)
{
    unsigned p = 0;
    uint64_t v = ns < BH_SUB ? BH_SUB : ns;
    while ((v >> p) >= 2 * BH_SUB)
        p++;
    unsigned idx = p * BH_SUB + (unsigned)((v >> p) - BH_SUB);
    if (idx >= BH_POW * BH_SUB)
        idx = BH_POW * BH_SUB - 1;
    h->b[idx]++;
    h->n++;
}

double
bh_q_us(const bh_hist *h, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
    if (h->n == 0)
        return 0;
    for (unsigned i = 0; i < BH_POW * BH_SUB; i++) {
        seen += h->b[i];
        if (seen >= want && h->b[i] > 0) {
            unsigned p = i / BH_SUB, s = i % BH_SUB;
            return (double)(((uint64_t)(BH_SUB + s + 1)) << p) / 1000.0;
        }
    }
    return 0;
}

void
bh_merge(bh_hist *dst, const bh_hist *src)
{
    for (unsigned i = 0; i < BH_POW * BH_SUB; i++)
        dst->b[i] += src->b[i];
    dst->n += src->n;
}

void
bh_print(const char *name, uint64_t ops, uint64_t errors, const bh_hist *h, double secs)
{
    printf("%-9s %10" PRIu64 " ops %12.0f ops/s  p50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us"
           "  errors %" PRIu64 "\n",
           name, ops, (double)ops / secs, bh_q_us(h, 0.5), bh_q_us(h, 0.99), bh_q_us(h, 0.999),
           errors);
}

void
bh_print_result(const char *name, uint64_t ops, uint64_t errors, const bh_hist *h, double secs)
{
    printf("RESULT op=%s ops=%" PRIu64 " ops_per_sec=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
           "errors=%" PRIu64 "\n",
           name, ops, (double)ops / secs, bh_q_us(h, 0.5), bh_q_us(h, 0.99), bh_q_us(h, 0.999),
           errors);
}
