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

/* Wall-clock seconds since the epoch, for Received: dates and spool records. */
static inline int64_t mx_clock_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

#endif
