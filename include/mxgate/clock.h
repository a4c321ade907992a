/* Time as the layers see it. smtp/ and tables/ never read a clock: the caller passes
 * "now" in. Transports read it here. */
#ifndef MXGATE_CLOCK_H
#define MXGATE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds, for timeouts. */
static inline uint64_t mx_clock_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The CLOCK_MONOTONIC time us microseconds from now, for pthread_cond_timedwait() on a
 * condition variable whose clock is CLOCK_MONOTONIC (pthread_condattr_setclock()). */
static inline void mx_clock_monotonic_deadline_us(struct timespec *ts, uint64_t us)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(us / 1000000u);
	ts->tv_nsec += (long)(us % 1000000u) * 1000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Wall-clock microseconds since the epoch, for identifiers that sort by arrival. */
static inline uint64_t mx_clock_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Wall-clock seconds since the epoch, for Received: dates and spool records. */
static inline int64_t mx_clock_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

#endif
