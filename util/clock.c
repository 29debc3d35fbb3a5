/*
 * util/clock.c -- clock_gettime wrappers.
 */
#include "util/clock.h"

#include <errno.h>
#include <time.h>

static uint64_t
clock_read_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t
om_clock_mono_ns(void)
{
    return clock_read_ns(CLOCK_MONOTONIC);
}

uint64_t
om_clock_mono_ms(void)
{
    return om_clock_mono_ns() / 1000000ULL;
}

uint64_t
om_clock_wall_ns(void)
{
    return clock_read_ns(CLOCK_REALTIME);
}

uint64_t
om_clock_wall_ms(void)
{
    return om_clock_wall_ns() / 1000000ULL;
}

void
om_clock_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int
om_clock_cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t wait_ns)
{
    struct timespec ts;
    uint64_t ns;

    clock_gettime(CLOCK_REALTIME, &ts);
    ns = (uint64_t)ts.tv_nsec + wait_ns % 1000000000u;
    ts.tv_sec += (time_t)(wait_ns / 1000000000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return pthread_cond_timedwait(cv, mu, &ts);
}

uint64_t
om_clock_pace(uint64_t tat_ns, uint64_t n, uint64_t rate, uint64_t burst_ns, uint64_t now)
{
    if (tat_ns + burst_ns < now)
        tat_ns = now - burst_ns;
    return tat_ns + (uint64_t)((double)n * 1e9 / (double)rate);
}
