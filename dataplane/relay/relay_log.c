/* Postfix's delivery status line (global/log_adhoc.c, util/format_tv.c): see relay_log.h. */
#include "dataplane/relay/relay_log.h"

#include <inttypes.h>
#include <stdio.h>

#define RELAY_LOG_MILLION 1000000u

size_t relay_log_format_tv(char *buf, size_t cap, uint64_t us)
{
	if (cap == 0)
		return 0;
	uint64_t sec = us / RELAY_LOG_MILLION, usec = us % RELAY_LOG_MILLION;
	/* The resolution: 0.01 s at most (two decimals), coarser as the seconds take up the
	 * two significant digits: 1.2, then 12, then 123. */
	uint64_t res = RELAY_LOG_MILLION / 100;
	if (sec > 0) {
		uint64_t n = 1;
		while (sec >= n && n <= 10)
			n *= 10;
		res = (RELAY_LOG_MILLION / 100) * n;
	}
	/* round half up at that resolution */
	usec += res / 2;
	if (usec >= RELAY_LOG_MILLION) {
		sec++;
		usec -= RELAY_LOG_MILLION;
	}
	int len = snprintf(buf, cap, "%" PRIu64, sec);
	size_t o = len < 0 ? 0 : (size_t)len < cap ? (size_t)len : cap - 1;
	if (usec >= res && o + 1 < cap) {
		buf[o++] = '.';
		uint64_t rem = usec;
		for (uint64_t n = RELAY_LOG_MILLION / 10; rem >= res && n > 0 && o + 1 < cap;
		     n /= 10) {
			buf[o++] = (char)('0' + rem / n);
			rem %= n;
		}
		buf[o] = '\0';
	}
	return o;
}

/* b - a, or 0 when b is earlier (a clock step). */
static uint64_t relay_log_delta(uint64_t b, uint64_t a)
{
	return b > a ? b - a : 0;
}

size_t relay_log_delivery(char *buf, size_t cap, const char *id, const char *to,
			  const char *relay, const struct relay_log_times *t, const char *dsn,
			  const char *status, const char *text)
{
	if (cap == 0)
		return 0;
	uint64_t now = t->done_us;
	uint64_t delay = relay_log_delta(now, t->arrival_us);
	uint64_t pdelay, adelay = 0, sdelay = 0, xdelay = 0;
	/* log_adhoc(): each part from the moments that happened */
	if (t->active_us) {
		pdelay = relay_log_delta(t->active_us, t->arrival_us);
		if (t->handoff_us) {
			adelay = relay_log_delta(t->handoff_us, t->active_us);
			if (t->setup_us) {
				sdelay = relay_log_delta(t->setup_us, t->handoff_us);
				xdelay = relay_log_delta(now, t->setup_us);
			} else {
				xdelay = relay_log_delta(now, t->handoff_us);
			}
		} else {
			adelay = relay_log_delta(now, t->active_us);
		}
	} else {
		pdelay = relay_log_delta(now, t->arrival_us);
	}
	char d[24], p[24], a[24], s[24], x[24];
	relay_log_format_tv(d, sizeof(d), delay);
	relay_log_format_tv(p, sizeof(p), pdelay);
	relay_log_format_tv(a, sizeof(a), adelay);
	relay_log_format_tv(s, sizeof(s), sdelay);
	relay_log_format_tv(x, sizeof(x), xdelay);
	int n = snprintf(buf, cap,
			 "%s: to=<%s>, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, "
			 "status=%s (%s)",
			 id, to, relay, d, p, a, s, x, dsn, status, text);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
