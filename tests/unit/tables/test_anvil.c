/* tables/anvil.c: anvil(8)'s per-client counts in one table shared by threads. The
 * expected numbers follow Postfix's anvil.c (ANVIL_REMOTE_FIRST_CONN, _NEXT_CONN,
 * _INCR_RATE, _DROP_ONE and the expiry timer) and inet_prefix_top.c's test cases. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "tables/anvil.h"
#include "testing.h"

#define UNIT 60 /* anvil_rate_time_unit's default */

static struct anvil *table(size_t capacity)
{
	struct anvil *a = NULL;
	CHECK_INT_EQ(anvil_new(capacity, 0x5eed, &a), 0);
	return a;
}

static struct anvil_key key(const char *addr, unsigned v4, unsigned v6, unsigned service)
{
	struct mx_inet_addr a;
	struct anvil_key k;
	if (!mx_inet_parse(addr, &a)) {
		fprintf(stderr, "  test bug: bad address %s\n", addr);
		CHECK(false);
	}
	anvil_key_make(&k, &a, v4, v6, service);
	return k;
}

static const char *range(const char *addr, unsigned v4, unsigned v6)
{
	static char buf[64];
	struct anvil_key k = key(addr, v4, v6, 0);
	return anvil_key_range(&k, buf, sizeof(buf));
}

/* connect, checking the count and rate it reports */
static void connect_is(struct anvil *a, const struct anvil_key *k, uint64_t now,
		       uint32_t want_count, uint32_t want_rate)
{
	uint32_t count = 0, rate = 0;
	CHECK_INT_EQ(anvil_connect(a, k, now, UNIT, &count, &rate, NULL), 0);
	CHECK_INT_EQ(count, want_count);
	CHECK_INT_EQ(rate, want_rate);
}

static uint32_t event(struct anvil *a, const struct anvil_key *k, enum anvil_rate r,
		      uint64_t now)
{
	uint32_t rate = 0;
	CHECK_INT_EQ(anvil_event(a, k, r, now, UNIT, &rate), 0);
	return rate;
}

/* The ranges Postfix's inet_prefix_top() makes (its own test cases, on all-ones
 * addresses), and the prefix defaults 32 and 84. */
static void test_key_ranges(void)
{
	CHECK_STR_EQ(range("255.255.255.255", 32, 84), "255.255.255.255");
	CHECK_STR_EQ(range("255.255.255.255", 28, 84), "255.255.255.240/28");
	CHECK_STR_EQ(range("255.255.255.255", 4, 84), "240.0.0.0/4");
	CHECK_STR_EQ(range("255.255.255.255", 0, 84), "0.0.0.0/0");
	const char *ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
	CHECK_STR_EQ(range(ones, 32, 128), ones);
	CHECK_STR_EQ(range(ones, 32, 124), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124");
	CHECK_STR_EQ(range(ones, 32, 4), "f000::/4");
	CHECK_STR_EQ(range(ones, 32, 0), "::/0");
	CHECK_STR_EQ(range("2001:db8:1:2:3:4:5:6", 32, 84), "2001:db8:1:2:3::/84");
	CHECK_STR_EQ(range("192.0.2.77", 24, 84), "192.0.2.0/24");
	CHECK_STR_EQ(range("192.0.2.77", 25, 84), "192.0.2.0/25");
	CHECK_STR_EQ(range("192.0.2.200", 25, 84), "192.0.2.128/25");
	/* past the address's length: the full address */
	CHECK_STR_EQ(range("192.0.2.77", 99, 84), "192.0.2.77");
	/* the same range, the same key; a service makes another */
	struct anvil_key a = key("192.0.2.1", 24, 84, 0), b = key("192.0.2.254", 24, 84, 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	b = key("192.0.2.1", 24, 84, 1);
	CHECK(memcmp(&a, &b, sizeof(a)) != 0);
	CHECK_STR_EQ(anvil_rate_name(ANVIL_RATE_RECIPIENT), "recipient");
}

static void test_new_bounds(void)
{
	struct anvil *a = (struct anvil *)1;
	CHECK_INT_EQ(anvil_new(ANVIL_CAPACITY_MIN - 1, 1, &a), -EINVAL);
	CHECK(a == NULL);
	CHECK_INT_EQ(anvil_new((size_t)ANVIL_CAPACITY_MAX + 1, 1, &a), -EINVAL);
	/* rounded up to a power of two */
	a = table(1000);
	CHECK_INT_EQ(anvil_capacity(a), 1024);
	CHECK_INT_EQ(anvil_entries(a), 0);
	anvil_free(a);
	anvil_free(NULL);
}

/* count: up at connect, down at disconnect; the rate counts every connection. */
static void test_count(void)
{
	struct anvil *a = table(1024);
	struct anvil_key k = key("192.0.2.1", 32, 84, 0);
	for (uint32_t i = 1; i <= 51; i++)
		connect_is(a, &k, 100, i, i);
	CHECK_INT_EQ(anvil_disconnect(a, &k, 100, UNIT), 0);
	connect_is(a, &k, 101, 51, 52);
	for (int i = 0; i < 51; i++)
		CHECK_INT_EQ(anvil_disconnect(a, &k, 102, UNIT), 0);
	/* no connection left: a disconnect is a caller's bug, and changes nothing */
	CHECK_INT_EQ(anvil_disconnect(a, &k, 102, UNIT), -ENOENT);
	struct anvil_view v;
	CHECK_INT_EQ(anvil_lookup(a, &k, 102, UNIT, &v), 0);
	CHECK_INT_EQ(v.count, 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], 52);
	/* other clients and other services are not this one */
	struct anvil_key other = key("192.0.2.2", 32, 84, 0), svc = key("192.0.2.1", 32, 84, 3);
	CHECK_INT_EQ(anvil_lookup(a, &other, 102, UNIT, &v), -ENOENT);
	connect_is(a, &svc, 102, 1, 1);
	CHECK_INT_EQ(anvil_disconnect(a, &other, 102, UNIT), -ENOENT);
	anvil_free(a);
}

/* One fixed window per client, as ANVIL_REMOTE_INCR_RATE: it starts at the first
 * connection; an event when start + unit < now (strictly) zeroes every rate first. */
static void test_window(void)
{
	struct anvil *a = table(1024);
	struct anvil_key k = key("198.51.100.7", 32, 84, 0);
	connect_is(a, &k, 1000, 1, 1);               /* window [1000, 1060] */
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_MESSAGE, 1030), 1);
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_MESSAGE, 1059), 2);
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_RECIPIENT, 1060), 1);
	connect_is(a, &k, 1060, 2, 2);               /* 1000 + 60 < 1060 is false */
	/* the first event past the window resets every rate, whatever its kind */
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_RECIPIENT, 1061), 1);
	struct anvil_view v;
	CHECK_INT_EQ(anvil_lookup(a, &k, 1061, UNIT, &v), 0);
	CHECK_INT_EQ(v.count, 2);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_MESSAGE], 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_RECIPIENT], 1);
	connect_is(a, &k, 1070, 3, 1);               /* window [1061, 1121] */
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_MESSAGE, 1121), 1);
	/* a lookup does not report a window that has passed, and counts nothing */
	CHECK_INT_EQ(anvil_lookup(a, &k, 1122, UNIT, &v), 0);
	CHECK_INT_EQ(v.count, 3);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT] + v.rate[ANVIL_RATE_MESSAGE], 0);
	CHECK_INT_EQ(anvil_lookup(a, &k, 1121, UNIT, &v), 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], 1);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_MESSAGE], 1);
	/* the unit is the caller's (a reload may change it) */
	uint32_t rate = 0;
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MESSAGE, 1125, 3600, &rate), 0);
	CHECK_INT_EQ(rate, 2);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_CONNECT, 1125, UNIT, &rate), -EINVAL);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MAX, 1125, UNIT, &rate), -EINVAL);
	/* AUTH and new TLS sessions count as the others, each on its own, and the window
	 * reset zeroes them too */
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_AUTH, 1125, 3600, &rate), 0);
	CHECK_INT_EQ(rate, 1);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_NEWTLS, 1125, 3600, &rate), 0);
	CHECK_INT_EQ(rate, 1);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_NEWTLS, 1125, 3600, &rate), 0);
	CHECK_INT_EQ(rate, 2);
	CHECK_INT_EQ(anvil_lookup(a, &k, 1125, 3600, &v), 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_AUTH], 1);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_NEWTLS], 2);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_MESSAGE], 2);
	CHECK_INT_EQ(anvil_lookup(a, &k, 1125, UNIT, &v), 0); /* window passed: not reported */
	CHECK_INT_EQ(v.rate[ANVIL_RATE_NEWTLS] + v.rate[ANVIL_RATE_AUTH], 0);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_NEWTLS, 1125, UNIT, &rate), 0);
	CHECK_INT_EQ(rate, 1);
	CHECK_STR_EQ(anvil_rate_name(ANVIL_RATE_NEWTLS), "newtls");
	anvil_free(a);
}

/* An entry without connections is forgotten a unit after its last disconnect (anvil's
 * timer), not before: a connection then starts afresh. */
static void test_expiry(void)
{
	struct anvil *a = table(1024);
	struct anvil_key k = key("203.0.113.9", 32, 84, 0);
	connect_is(a, &k, 0, 1, 1);
	CHECK_INT_EQ(anvil_disconnect(a, &k, 10, UNIT), 0);    /* expires at 70 */
	connect_is(a, &k, 50, 1, 2);                           /* still the window of 0 */
	CHECK_INT_EQ(anvil_disconnect(a, &k, 50, UNIT), 0);    /* expires at 110 */
	connect_is(a, &k, 109, 1, 1);                          /* window of 0 passed */
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_MESSAGE, 109), 1);
	CHECK_INT_EQ(anvil_disconnect(a, &k, 110, UNIT), 0);   /* expires at 170 */
	struct anvil_view v;
	CHECK_INT_EQ(anvil_lookup(a, &k, 169, UNIT, &v), 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_MESSAGE], 1);
	CHECK_INT_EQ(anvil_lookup(a, &k, 170, UNIT, &v), -ENOENT);
	/* an expired client has no entry for MAIL or RCPT either */
	uint32_t rate;
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MESSAGE, 170, UNIT, &rate), -ENOENT);
	connect_is(a, &k, 170, 1, 1);
	CHECK_INT_EQ(event(a, &k, ANVIL_RATE_MESSAGE, 170), 1);
	/* a client that never connected has no rates to count */
	struct anvil_key none = key("203.0.113.10", 32, 84, 0);
	CHECK_INT_EQ(anvil_event(a, &none, ANVIL_RATE_RECIPIENT, 170, UNIT, &rate), -ENOENT);
	CHECK_INT_EQ(anvil_entries(a), 1);
	anvil_free(a);
}

/* Postfix 3.8's aggregation: clients of one IPv4 /24 or IPv6 /84 share their counts. */
static void test_prefix_aggregation(void)
{
	struct anvil *a = table(1024);
	struct anvil_key a1 = key("192.0.2.10", 24, 84, 0), a2 = key("192.0.2.200", 24, 84, 0);
	struct anvil_key a3 = key("192.0.3.10", 24, 84, 0);
	connect_is(a, &a1, 5, 1, 1);
	connect_is(a, &a2, 5, 2, 2);
	connect_is(a, &a3, 5, 1, 1);
	CHECK_INT_EQ(event(a, &a2, ANVIL_RATE_RECIPIENT, 6), 1);
	CHECK_INT_EQ(event(a, &a1, ANVIL_RATE_RECIPIENT, 6), 2);
	/* at /32 (the default) they are separate clients */
	struct anvil_key b1 = key("192.0.2.10", 32, 84, 0), b2 = key("192.0.2.200", 32, 84, 0);
	connect_is(a, &b1, 5, 1, 1);
	connect_is(a, &b2, 5, 1, 1);
	/* IPv6 at /84: the low 44 bits do not matter; bit 84 does */
	struct anvil_key c1 = key("2001:db8:0:1::1", 32, 84, 0);
	struct anvil_key c2 = key("2001:db8:0:1:0:fff:ffff:ffff", 32, 84, 0);
	struct anvil_key c3 = key("2001:db8:0:1:0:1000::1", 32, 84, 0);
	connect_is(a, &c1, 5, 1, 1);
	connect_is(a, &c2, 5, 2, 2);
	connect_is(a, &c3, 5, 1, 1);
	/* at /128 each address is its own */
	struct anvil_key d1 = key("2001:db8::1", 32, 128, 0), d2 = key("2001:db8::2", 32, 128, 0);
	connect_is(a, &d1, 5, 1, 1);
	connect_is(a, &d2, 5, 1, 1);
	/* an IPv4 /0 is every IPv4 client, apart from IPv6 ones at /0 */
	struct anvil_key e1 = key("10.0.0.1", 0, 0, 0), e2 = key("172.16.0.1", 0, 0, 0);
	struct anvil_key e3 = key("::1", 0, 0, 0);
	connect_is(a, &e1, 5, 1, 1);
	connect_is(a, &e2, 5, 2, 2);
	connect_is(a, &e3, 5, 1, 1);
	anvil_free(a);
}

/* The table never holds more than its capacity: a new client takes a free or expired
 * slot, else the idle one that expires first (counted as evicted), and is not tracked
 * when every slot of its window has connections open. */
static void test_bounded(void)
{
	struct anvil *a = table(ANVIL_PROBE); /* one window: the whole table */
	CHECK_INT_EQ(anvil_capacity(a), ANVIL_PROBE);
	struct anvil_key k[ANVIL_PROBE + 1];
	char addr[32];
	for (int i = 0; i <= ANVIL_PROBE; i++) {
		snprintf(addr, sizeof(addr), "10.1.0.%d", i + 1);
		k[i] = key(addr, 32, 84, 0);
	}
	uint32_t count, rate;
	struct anvil_effect fx;
	for (int i = 0; i < ANVIL_PROBE; i++)
		connect_is(a, &k[i], 100, 1, 1);
	CHECK_INT_EQ(anvil_entries(a), ANVIL_PROBE);
	/* full of open connections: the next client is not tracked, nothing changes */
	CHECK_INT_EQ(anvil_connect(a, &k[ANVIL_PROBE], 100, UNIT, &count, &rate, &fx), -ENOSPC);
	CHECK_INT_EQ(anvil_entries(a), ANVIL_PROBE);
	/* known clients still count */
	connect_is(a, &k[3], 100, 2, 2);
	/* two go idle; the one that expires first makes room, before its time */
	CHECK_INT_EQ(anvil_disconnect(a, &k[5], 100, UNIT), 0);  /* expires at 160 */
	CHECK_INT_EQ(anvil_disconnect(a, &k[7], 90, UNIT), 0);   /* expires at 150 */
	CHECK_INT_EQ(anvil_connect(a, &k[ANVIL_PROBE], 101, UNIT, &count, &rate, &fx), 0);
	CHECK(fx.evicted);
	CHECK_INT_EQ(count, 1);
	struct anvil_view v;
	CHECK_INT_EQ(anvil_lookup(a, &k[7], 101, UNIT, &v), -ENOENT);
	CHECK_INT_EQ(anvil_lookup(a, &k[5], 101, UNIT, &v), 0);
	/* an expired slot is reused without evicting anything */
	CHECK_INT_EQ(anvil_connect(a, &k[7], 161, UNIT, &count, &rate, &fx), 0);
	CHECK(!fx.evicted);
	CHECK_INT_EQ(anvil_lookup(a, &k[5], 161, UNIT, &v), -ENOENT);
	CHECK_INT_EQ(anvil_entries(a), ANVIL_PROBE);
	anvil_free(a);

	/* Many clients through a small table: never more entries than slots, and every
	 * client with a connection open keeps its entry and its count. */
	a = table(64);
	struct anvil_key pinned = key("10.9.9.9", 32, 84, 0);
	connect_is(a, &pinned, 0, 1, 1);
	int tracked = 0, untracked = 0;
	for (int i = 0; i < 5000; i++) {
		snprintf(addr, sizeof(addr), "10.2.%d.%d", i / 250, i % 250 + 1);
		struct anvil_key c = key(addr, 32, 84, 0);
		uint64_t now = (uint64_t)i / 10;
		int rc = anvil_connect(a, &c, now, UNIT, &count, &rate, NULL);
		if (rc == 0) {
			tracked++;
			if (i % 3)
				CHECK_INT_EQ(anvil_disconnect(a, &c, now, UNIT), 0);
		} else {
			CHECK_INT_EQ(rc, -ENOSPC);
			untracked++;
		}
		if (anvil_entries(a) > 64) {
			CHECK(anvil_entries(a) <= 64);
			break;
		}
	}
	CHECK(tracked > 0);
	CHECK(untracked > 0); /* a third keep a connection: the table fills up */
	CHECK_INT_EQ(anvil_lookup(a, &pinned, 500, UNIT, &v), 0);
	CHECK_INT_EQ(v.count, 1);
	anvil_free(a);
}

static void test_services(void)
{
	struct anvil *a = table(1024);
	CHECK_INT_EQ(anvil_service(a, "smtp"), 0);
	CHECK_INT_EQ(anvil_service(a, "submission"), 1);
	CHECK_INT_EQ(anvil_service(a, "smtp"), 0);
	char name[32];
	for (int i = 2; i < ANVIL_SERVICES_MAX; i++) {
		snprintf(name, sizeof(name), "127.0.0.1:%d", 10000 + i);
		CHECK_INT_EQ(anvil_service(a, name), i);
	}
	CHECK_INT_EQ(anvil_service(a, "one too many"), -ENOSPC);
	CHECK_INT_EQ(anvil_service(a, "submission"), 1);
	anvil_free(a);
}

/* Several threads count the same clients at once: nothing is lost. */
#define THREADS 4
#define ROUNDS 20000
#define CLIENTS 8

struct worker_arg {
	struct anvil *a;
	int index;
	int failures; /* counted here: CHECK is not for other threads */
};

static void *worker(void *p)
{
	struct worker_arg *w = p;
	char addr[32];
	for (int r = 0; r < ROUNDS; r++) {
		snprintf(addr, sizeof(addr), "192.0.2.%d", r % CLIENTS + 1);
		struct anvil_key k = key(addr, 32, 84, 0);
		uint32_t count, rate;
		if (anvil_connect(w->a, &k, 10, 3600, &count, &rate, NULL) != 0 || count < 1)
			w->failures++;
		if (anvil_event(w->a, &k, ANVIL_RATE_RECIPIENT, 10, 3600, &rate) != 0)
			w->failures++;
		/* every other connection of each client stays open */
		if ((r / CLIENTS) % 2 && anvil_disconnect(w->a, &k, 10, 3600) != 0)
			w->failures++;
		/* a client of this thread alone, in and out */
		snprintf(addr, sizeof(addr), "198.51.100.%d", w->index + 1);
		k = key(addr, 32, 84, 0);
		if (anvil_connect(w->a, &k, 10, 3600, &count, &rate, NULL) != 0 || count != 1 ||
		    anvil_disconnect(w->a, &k, 10, 3600) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_threads(void)
{
	struct anvil *a = table(1024);
	pthread_t t[THREADS];
	struct worker_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct worker_arg){ .a = a, .index = i };
		CHECK_INT_EQ(pthread_create(&t[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT_EQ(args[i].failures, 0);
	}
	char addr[32];
	for (int c = 0; c < CLIENTS; c++) {
		snprintf(addr, sizeof(addr), "192.0.2.%d", c + 1);
		struct anvil_key k = key(addr, 32, 84, 0);
		struct anvil_view v;
		CHECK_INT_EQ(anvil_lookup(a, &k, 10, 3600, &v), 0);
		/* each thread connected ROUNDS / CLIENTS times and closed half of those */
		CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], THREADS * ROUNDS / CLIENTS);
		CHECK_INT_EQ(v.rate[ANVIL_RATE_RECIPIENT], THREADS * ROUNDS / CLIENTS);
		CHECK_INT_EQ(v.count, THREADS * ROUNDS / CLIENTS / 2);
	}
	CHECK_INT_EQ(anvil_entries(a), CLIENTS + THREADS);
	anvil_free(a);
}

int main(void)
{
	RUN_TEST(test_key_ranges);
	RUN_TEST(test_new_bounds);
	RUN_TEST(test_count);
	RUN_TEST(test_window);
	RUN_TEST(test_expiry);
	RUN_TEST(test_prefix_aggregation);
	RUN_TEST(test_bounded);
	RUN_TEST(test_services);
	RUN_TEST(test_threads);
	return TEST_RESULT();
}
