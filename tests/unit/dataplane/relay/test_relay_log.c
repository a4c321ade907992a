/* dataplane/relay/relay_log.c: the delivery status line as Postfix's log_adhoc() writes
 * it, and its time format (format_tv() with two significant digits, two decimals at most). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/relay/relay_log.h"
#include "testing.h"

static void check_tv(uint64_t us, const char *want)
{
	char buf[32];
	size_t n = relay_log_format_tv(buf, sizeof(buf), us);
	if (strcmp(buf, want) != 0)
		fprintf(stderr, "  %llu us: got %s, want %s\n", (unsigned long long)us, buf, want);
	CHECK_STR_EQ(buf, want);
	CHECK_INT_EQ(n, strlen(want));
}

static void test_format_tv(void)
{
	check_tv(0, "0");
	check_tv(4999, "0");       /* below half the 0.01 resolution */
	check_tv(5000, "0.01");    /* rounded half up */
	check_tv(10000, "0.01");
	check_tv(100000, "0.1");   /* no trailing zero */
	check_tv(250000, "0.25");
	check_tv(254999, "0.25");
	check_tv(255000, "0.26");
	check_tv(995000, "1");     /* rounds into the next second */
	check_tv(1000000, "1");
	check_tv(1049999, "1");
	check_tv(1234567, "1.2");  /* two significant digits */
	check_tv(1250000, "1.3");
	check_tv(9960000, "10");
	check_tv(12345678, "12");
	check_tv(12600000, "13");
	check_tv(51000000, "51");
	check_tv(123456789, "123"); /* whole seconds keep every digit */
	check_tv(86400ull * 5 * 1000000, "432000");

	/* a small buffer is cut, never overrun */
	char small[4];
	memset(small, 'x', sizeof(small));
	CHECK_INT_EQ(relay_log_format_tv(small, sizeof(small), 1234567), 3);
	CHECK_STR_EQ(small, "1.2");
	CHECK_INT_EQ(relay_log_format_tv(small, 2, 250000), 1);
	CHECK_STR_EQ(small, "0");
	CHECK_INT_EQ(relay_log_format_tv(small, 0, 250000), 0);
}

#define T0 1700000000000000ull /* an arrival, in wall-clock microseconds */

static void test_delivery_line(void)
{
	char buf[512];
	/* every moment stamped: 0.2 s before the attempt, 0.01 in the queue manager, 0.15
	 * to set up the connection, 1.2 to send */
	struct relay_log_times t = {
		.arrival_us = T0,
		.active_us = T0 + 200000,
		.handoff_us = T0 + 210000,
		.setup_us = T0 + 360000,
		.done_us = T0 + 1560000,
	};
	relay_log_delivery(buf, sizeof(buf), "4ZhQ5N0Bc9z01", "bob@example.net",
			   "127.0.0.1[127.0.0.1]:2525", &t, "2.0.0", "sent",
			   "250 2.0.0 Ok: queued as 4Zh");
	CHECK_STR_EQ(buf, "4ZhQ5N0Bc9z01: to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:2525, "
			  "delay=1.6, delays=0.2/0.01/0.15/1.2, dsn=2.0.0, status=sent (250 2.0.0 "
			  "Ok: queued as 4Zh)");

	/* the connection failed: no set-up moment, the rest of the time is "transmission" */
	t.setup_us = 0;
	t.done_us = T0 + 3210000;
	relay_log_delivery(buf, sizeof(buf), "ID", "a@b", "none", &t, "4.4.1", "deferred",
			   "connect to 127.0.0.1[127.0.0.1]:9: Connection refused");
	CHECK_STR_EQ(buf, "ID: to=<a@b>, relay=none, delay=3.2, delays=0.2/0.01/0/3, dsn=4.4.1, "
			  "status=deferred (connect to 127.0.0.1[127.0.0.1]:9: Connection "
			  "refused)");

	/* never handed to a next hop (no route, expiry): all after the attempt began is the
	 * queue manager's */
	t.handoff_us = 0;
	relay_log_delivery(buf, sizeof(buf), "ID", "a@b", "none", &t, "5.4.4", "bounced", "x");
	CHECK_STR_EQ(buf, "ID: to=<a@b>, relay=none, delay=3.2, delays=0.2/3/0/0, dsn=5.4.4, "
			  "status=bounced (x)");

	/* no attempt moment: all of it before the queue manager */
	t.active_us = 0;
	relay_log_delivery(buf, sizeof(buf), "ID", "a@b", "none", &t, "4.0.0", "deferred", "y");
	CHECK_STR_EQ(buf, "ID: to=<a@b>, relay=none, delay=3.2, delays=3.2/0/0/0, dsn=4.0.0, "
			  "status=deferred (y)");

	/* a clock step backwards never gives a negative or huge delay */
	struct relay_log_times back = { .arrival_us = T0, .active_us = T0 - 5000000,
					.handoff_us = T0 - 4000000, .setup_us = T0 - 3000000,
					.done_us = T0 - 1000000 };
	relay_log_delivery(buf, sizeof(buf), "ID", "a@b", "h[1.2.3.4]:25", &back, "2.0.0", "sent",
			   "ok");
	CHECK_STR_EQ(buf, "ID: to=<a@b>, relay=h[1.2.3.4]:25, delay=0, delays=0/1/1/2, dsn=2.0.0, "
			  "status=sent (ok)");

	/* pflogsumm's parse of it (its regex, in words): to=<A>, relay=R, delay=D, delays=...,
	 * dsn=..., status=S: each field is there, in that order, comma-separated */
	const char *p = strstr(buf, "to=<");
	CHECK(p && strstr(p, ">, relay=") && strstr(p, ", delay=") && strstr(p, ", delays=") &&
	      strstr(p, ", dsn=") && strstr(p, ", status=sent"));

	/* cut to the buffer, NUL-terminated */
	char small[20];
	size_t n = relay_log_delivery(small, sizeof(small), "ID", "a@b", "none", &t, "4.0.0",
				      "deferred", "y");
	CHECK_INT_EQ(n, sizeof(small) - 1);
	CHECK_INT_EQ(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	RUN_TEST(test_format_tv);
	RUN_TEST(test_delivery_line);
	return TEST_RESULT();
}
