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

#endif /* OM_UTIL_CLOCK_H */
