/* The timer wheel holding a million idle connections' timers (dataplane/net/net_timer.h):
 * what advancing it costs per second of (virtual) time while none of them is due.
 *
 * Each timer sits in its own 96-byte block, the blocks in random order, as a worker's
 * dp_conn structs lie on the heap; they are armed as a ramp arms them (25 a millisecond)
 * with smtpd_timeout = 3600 s, then the wheel is advanced a millisecond at a time over a
 * minute. With one level (before the coarse wheel) every timer was visited every 4.096 s,
 * a cache miss each: 244,000 visits a second. Prints the CPU time per second of wheel
 * time; meson benchmark('timer-wheel'). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dataplane/net/net_timer.h"

#define BENCH_TIMERS 1000000u
#define BENCH_BLOCK 96u
#define BENCH_SECONDS 60u

static unsigned bench_fired;

static void bench_fire(void *arg, struct net_timer *t)
{
	(void)arg;
	(void)t;
	bench_fired++;
}

static double bench_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
	static struct net_timer_wheel w;
	char *mem = calloc(BENCH_TIMERS, BENCH_BLOCK);
	uint32_t *perm = malloc(BENCH_TIMERS * sizeof(*perm));
	if (!mem || !perm)
		return 1;
	/* a fixed shuffle (xorshift), so runs compare */
	uint64_t x = 88172645463325252ull;
	for (uint32_t i = 0; i < BENCH_TIMERS; i++)
		perm[i] = i;
	for (uint32_t i = BENCH_TIMERS - 1; i > 0; i--) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t j = (uint32_t)(x % (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	net_timer_wheel_init(&w, 0);
	uint32_t now = 0;
	for (uint32_t i = 0; i < BENCH_TIMERS; i++) {
		uint32_t at = i / 25;
		if (at != now) {
			net_timer_advance(&w, at, bench_fire, NULL);
			now = at;
		}
		net_timer_arm(&w, (struct net_timer *)(mem + (size_t)perm[i] * BENCH_BLOCK),
			      at + 3600u * 1000u);
	}
	double t0 = bench_now_s();
	for (uint32_t ms = 0; ms < BENCH_SECONDS * 1000u; ms++)
		net_timer_advance(&w, ++now, bench_fire, NULL);
	double dt = bench_now_s() - t0;
	printf("%u idle timers (due in an hour): %.3f ms of CPU per second of wheel time; "
	       "%u fired\n", BENCH_TIMERS, dt / BENCH_SECONDS * 1000.0, bench_fired);
	free(mem);
	free(perm);
	return bench_fired == 0 ? 0 : 1;
}
