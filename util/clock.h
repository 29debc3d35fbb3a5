/*
 * util/clock.h -- monotonic and wall clocks.
 *
 * Use the monotonic clock for deadlines, timeouts and latency; the wall clock
 * only for timestamps shown to people or stored in records.
 *
 * Thread-safety: safe from any thread.
 */
#ifndef OM_UTIL_CLOCK_H
#define OM_UTIL_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* Nanoseconds since an arbitrary fixed point; never goes backwards. */
uint64_t om_clock_mono_ns(void);
/* Milliseconds on the monotonic clock. */
uint64_t om_clock_mono_ms(void);
/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t om_clock_wall_ns(void);
/* Milliseconds since the Unix epoch. */
uint64_t om_clock_wall_ms(void);
/* Sleep for ms milliseconds (restarted on EINTR). Not for synchronising tests. */
void om_clock_sleep_ms(uint64_t ms);

/*
 * om_clock_cond_wait_ns -- pthread_cond_timedwait for at most wait_ns from
 * now, on a condition variable with the default (realtime) clock; mu held.
 * Returns what pthread_cond_timedwait returned (0, ETIMEDOUT). A wall clock
 * step shortens or lengthens the wait: callers recheck their state anyway.
 */
int om_clock_cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t wait_ns);

/*
 * om_clock_pace -- pacing of background work at `rate` units per second
 * (GCRA): tat_ns is the monotonic time at which the units charged so far
 * are paid for; charging n more at `now` returns the new one, crediting at
 * most burst_ns of time left unused (after a slow stretch the work catches
 * up only that much). The caller waits until the result before it goes on.
 * rate > 0. Used by the manual compaction (lsm/compaction.c) and the
 * replica catch-up (shard/repl_catchup.c).
 */
uint64_t om_clock_pace(uint64_t tat_ns, uint64_t n, uint64_t rate, uint64_t burst_ns, uint64_t now);

#endif /* OM_UTIL_CLOCK_H */
