/*
 * tests/harness/tu_model.c -- the model of the concurrent stress tests
 * (tu_model.h has the rules it checks).
 */
#include "tu_model.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tu.h"

struct tu_cmodel {
    uint64_t seed;
    uint32_t nkeys;
    uint64_t deadline_ms;
    atomic_uint *started;
    atomic_uint *done;
    pthread_mutex_t *klock;
    atomic_bool stop;
    pthread_mutex_t fail_mu;
    char fail_msg[512];
};

uint64_t
tu_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

tu_cmodel *
tu_cmodel_new(uint64_t seed, uint32_t nkeys, uint64_t seconds)
{
    tu_cmodel *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->seed = seed;
    m->nkeys = nkeys;
    m->deadline_ms = tu_now_ms() + 1000 * seconds;
    m->started = calloc(nkeys, sizeof(*m->started));
    m->done = calloc(nkeys, sizeof(*m->done));
    m->klock = calloc(nkeys, sizeof(*m->klock));
    ck_assert(m->started != NULL && m->done != NULL && m->klock != NULL);
    for (uint32_t k = 0; k < nkeys; k++)
        pthread_mutex_init(&m->klock[k], NULL);
    pthread_mutex_init(&m->fail_mu, NULL);
    return m;
}

void
tu_cmodel_free(tu_cmodel *m)
{
    if (m == NULL)
        return;
    for (uint32_t k = 0; k < m->nkeys; k++)
        pthread_mutex_destroy(&m->klock[k]);
    pthread_mutex_destroy(&m->fail_mu);
    free(m->started);
    free(m->done);
    free(m->klock);
    free(m);
}

bool
tu_cmodel_is_del(const tu_cmodel *m, uint32_t k, uint32_t i)
{
    return tu_mix64(m->seed * 31 + (((uint64_t)k << 32) | i)) % 5 == 0;
}

size_t
tu_cmodel_value(const tu_cmodel *m, uint32_t k, uint32_t i, uint8_t *buf)
{
    uint64_t h = tu_mix64(m->seed ^ (((uint64_t)i << 32) | k));
    size_t n = 8 + (size_t)(h % (TU_CMODEL_MAXVAL - 8));

    for (int b = 0; b < 4; b++) {
        buf[b] = (uint8_t)(k >> (8 * b));
        buf[4 + b] = (uint8_t)(i >> (8 * b));
    }
    /* half random bytes, half a repeated letter (compressible) */
    for (size_t j = 8; j < n; j++)
        buf[j] = (uint8_t)(j < n / 2 ? tu_mix64(h + j) : 'a' + i % 26);
    return n;
}

bool
tu_cmodel_take(tu_cmodel *m, uint32_t k, uint32_t *idx)
{
    if (pthread_mutex_trylock(&m->klock[k]) != 0)
        return false;
    *idx = atomic_load(&m->done[k]) + 1;
    atomic_store(&m->started[k], *idx);
    return true;
}

void
tu_cmodel_release(tu_cmodel *m, uint32_t k, uint32_t idx, bool applied)
{
    if (applied)
        atomic_store(&m->done[k], idx);
    else
        atomic_store(&m->started[k], idx - 1);
    pthread_mutex_unlock(&m->klock[k]);
}

uint32_t
tu_cmodel_done(tu_cmodel *m, uint32_t k)
{
    return atomic_load(&m->done[k]);
}

uint32_t
tu_cmodel_started(tu_cmodel *m, uint32_t k)
{
    return atomic_load(&m->started[k]);
}

long
tu_cmodel_check(tu_cmodel *m, const char *what, uint32_t k, uint32_t d, uint32_t s, bool found,
                om_slice val, size_t head)
{
    uint8_t want[TU_CMODEL_MAXVAL];
    uint32_t vk = 0, vi = 0;
    size_t wn;

    if (!found) {
        for (uint32_t i = d; i <= s; i++)
            if (i == 0 || tu_cmodel_is_del(m, k, i))
                return i;
        tu_cmodel_fail(m, "%s key %u: absent, but writes %u..%u are all puts (lost update)", what,
                       k, d, s);
        return -1;
    }
    if (val.n < 8) {
        tu_cmodel_fail(m, "%s key %u: value of %zu bytes", what, k, val.n);
        return -1;
    }
    for (int b = 0; b < 4; b++) {
        vk |= (uint32_t)val.p[b] << (8 * b);
        vi |= (uint32_t)val.p[4 + b] << (8 * b);
    }
    if (vk != k) {
        tu_cmodel_fail(m, "%s key %u: got the value of key %u", what, k, vk);
        return -1;
    }
    if (vi < d || vi > s) {
        tu_cmodel_fail(m, "%s key %u: got write %u, allowed %u..%u (%s)", what, k, vi, d, s,
                       vi < d ? "lost update: a newer write had returned" : "from the future");
        return -1;
    }
    if (vi == 0 || tu_cmodel_is_del(m, k, vi)) {
        tu_cmodel_fail(m, "%s key %u: got a value for write %u, a delete", what, k, vi);
        return -1;
    }
    wn = tu_cmodel_value(m, k, vi, want);
    if (head > 0 && wn > head)
        wn = head;
    if (val.n != wn || memcmp(val.p, want, wn) != 0) {
        tu_cmodel_fail(m, "%s key %u write %u: wrong bytes (%zu, want %zu)", what, k, vi, val.n,
                       wn);
        return -1;
    }
    return vi;
}

bool
tu_cmodel_check_size(tu_cmodel *m, const char *what, uint32_t k, uint32_t d, uint32_t s,
                     uint64_t size)
{
    uint8_t v[TU_CMODEL_MAXVAL];

    for (uint32_t i = d < 1 ? 1 : d; i <= s; i++)
        if (!tu_cmodel_is_del(m, k, i) && tu_cmodel_value(m, k, i, v) == size)
            return true;
    tu_cmodel_fail(m, "%s key %u: listed with size %llu, no put of writes %u..%u has it", what, k,
                   (unsigned long long)size, d, s);
    return false;
}

void
tu_cmodel_fail(tu_cmodel *m, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&m->fail_mu);
    if (m->fail_msg[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(m->fail_msg, sizeof(m->fail_msg), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&m->fail_mu);
    atomic_store(&m->stop, true);
}

bool
tu_cmodel_running(tu_cmodel *m)
{
    return !atomic_load(&m->stop) && tu_now_ms() < m->deadline_ms;
}

const char *
tu_cmodel_failure(tu_cmodel *m)
{
    return m->fail_msg;
}
