/* tables/anvil.c's sharing (anvil_share_*): the merge of local and cluster counts, the
 * hand-over of pending events to the sync (collect / applied / failed), aligned windows;
 * and tables/anvil_wire.c: keys, the add + incr pair, the reader of its replies (whole,
 * byte by byte, split at every offset, in heap buffers of exactly their length). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tables/anvil.h"
#include "tables/anvil_wire.h"
#include "testing.h"

#define UNIT 60
/* monotonic second 1000 is wall second 1,700,000,000 + 1000: window 28,333,350 */
#define OFFSET 1700000000ll

static struct anvil *shared_table(void)
{
	struct anvil *a = NULL;
	CHECK_INT_EQ(anvil_new(1024, 0x5eed, &a), 0);
	CHECK_INT_EQ(anvil_share_enable(a, OFFSET), 0);
	CHECK(anvil_shared(a));
	return a;
}

static struct anvil_key key(const char *addr, unsigned service)
{
	struct mx_inet_addr a;
	struct anvil_key k;
	CHECK(mx_inet_parse(addr, &a));
	anvil_key_make(&k, &a, 32, 84, service);
	return k;
}

static uint32_t conn(struct anvil *a, const struct anvil_key *k, uint64_t now)
{
	uint32_t count = 0, rate = 0;
	CHECK_INT_EQ(anvil_connect(a, k, now, UNIT, &count, &rate, NULL), 0);
	return rate;
}

/* Collect everything now: the deltas into out, their number returned. */
static size_t collect(struct anvil *a, uint64_t now, unsigned mask, struct anvil_delta *out,
		      size_t max)
{
	struct anvil_cursor cur = { 0 };
	size_t n = 0;
	do {
		n += anvil_share_collect(a, now, mask, &cur, out + n, max - n);
	} while (!cur.done && max - n >= ANVIL_RATE_MAX);
	CHECK(cur.done);
	return n;
}

static const struct anvil_delta *find(const struct anvil_delta *d, size_t n,
				      enum anvil_rate r)
{
	for (size_t i = 0; i < n; i++)
		if (d[i].rate == r)
			return &d[i];
	return NULL;
}

/* Not shared: the rate is the local one and nothing is collected. */
static void test_unshared_unchanged(void)
{
	struct anvil *a = NULL;
	CHECK_INT_EQ(anvil_new(1024, 1, &a), 0);
	CHECK(!anvil_shared(a));
	struct anvil_key k = key("192.0.2.1", 0);
	CHECK_INT_EQ(conn(a, &k, 1000), 1);
	CHECK_INT_EQ(conn(a, &k, 1001), 2);
	anvil_free(a);
}

/* The local count alone until a sync; the cluster's total after it, plus what came since. */
static void test_merge(void)
{
	struct anvil *a = shared_table();
	struct anvil_key k = key("192.0.2.1", 0);
	CHECK_INT_EQ(conn(a, &k, 1000), 1);
	CHECK_INT_EQ(conn(a, &k, 1000), 2);
	struct anvil_delta d[64];
	size_t n = collect(a, 1000, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(d[0].rate, ANVIL_RATE_CONNECT);
	CHECK_INT_EQ(d[0].n, 2);
	CHECK_INT_EQ(d[0].unit, UNIT);
	CHECK_INT_EQ(d[0].window, (uint64_t)(OFFSET + 1000) / UNIT);
	/* in flight: still counted */
	CHECK_INT_EQ(conn(a, &k, 1000), 3);
	/* memcached says 7: another node counted 4 more (+ 1 pending here) */
	anvil_share_applied(a, &d[0], 7);
	CHECK_INT_EQ(conn(a, &k, 1001), 9);
	/* a lookup shows the merged rate too */
	struct anvil_view v;
	CHECK_INT_EQ(anvil_lookup(a, &k, 1001, UNIT, &v), 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], 9);
	/* the next sync sends the 2 pending */
	n = collect(a, 1001, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(d[0].n, 2);
	anvil_share_applied(a, &d[0], 9);
	CHECK_INT_EQ(anvil_lookup(a, &k, 1001, UNIT, &v), 0);
	CHECK_INT_EQ(v.rate[ANVIL_RATE_CONNECT], 9);
	anvil_free(a);
}

/* An idle client (no connection open) that counted here is read back: it learns the
 * other nodes' events before its next connection. */
static void test_read_back_idle(void)
{
	struct anvil *a = shared_table();
	struct anvil_key k = key("192.0.2.2", 0);
	CHECK_INT_EQ(conn(a, &k, 1000), 1);
	CHECK_INT_EQ(anvil_disconnect(a, &k, 1000, UNIT), 0);
	struct anvil_delta d[64];
	size_t n = collect(a, 1000, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	anvil_share_applied(a, &d[0], 1);
	/* nothing new: a read (n = 0) */
	n = collect(a, 1000, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(d[0].n, 0);
	anvil_share_applied(a, &d[0], 4); /* three more elsewhere */
	CHECK_INT_EQ(conn(a, &k, 1001), 5);
	anvil_free(a);
}

/* A failed sync gives the events back to pending; they go with the next one. The local
 * rate is never lost: the table counts what this node saw. */
static void test_failed(void)
{
	struct anvil *a = shared_table();
	struct anvil_key k = key("2001:db8::1", 1);
	CHECK_INT_EQ(conn(a, &k, 1000), 1);
	uint32_t rate = 0;
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MESSAGE, 1000, UNIT, &rate), 0);
	CHECK_INT_EQ(rate, 1);
	struct anvil_delta d[64];
	size_t n = collect(a, 1000, 0, d, 64);
	CHECK_INT_EQ(n, 2);
	for (size_t i = 0; i < n; i++)
		anvil_share_failed(a, &d[i]);
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MESSAGE, 1000, UNIT, &rate), 0);
	CHECK_INT_EQ(rate, 2);
	n = collect(a, 1000, 0, d, 64);
	CHECK_INT_EQ(n, 2);
	const struct anvil_delta *m = find(d, n, ANVIL_RATE_MESSAGE);
	CHECK(m != NULL);
	CHECK_INT_EQ(m->n, 2);
	CHECK_INT_EQ(find(d, n, ANVIL_RATE_CONNECT)->n, 1);
	anvil_free(a);
}

/* read_mask: a connected client's kinds a limit asks for are read even before counted
 * here; an idle client's are not. */
static void test_read_mask(void)
{
	struct anvil *a = shared_table();
	struct anvil_key k = key("192.0.2.3", 0), idle = key("192.0.2.4", 0);
	conn(a, &k, 1000);
	conn(a, &idle, 1000);
	CHECK_INT_EQ(anvil_disconnect(a, &idle, 1000, UNIT), 0);
	struct anvil_delta d[64];
	unsigned mask = 1u << ANVIL_RATE_MESSAGE | 1u << ANVIL_RATE_RECIPIENT;
	size_t n = collect(a, 1000, mask, d, 64);
	CHECK_INT_EQ(n, 4); /* k: connect, message, recipient; idle: connect */
	size_t mine = 0;
	for (size_t i = 0; i < n; i++) {
		if (memcmp(&d[i].key, &k, sizeof(k)) == 0) {
			mine++;
			if (d[i].rate == ANVIL_RATE_MESSAGE) {
				CHECK_INT_EQ(d[i].n, 0);
				anvil_share_applied(a, &d[i], 5);
			}
		}
	}
	CHECK_INT_EQ(mine, 3);
	uint32_t rate = 0;
	CHECK_INT_EQ(anvil_event(a, &k, ANVIL_RATE_MESSAGE, 1000, UNIT, &rate), 0);
	CHECK_INT_EQ(rate, 6);
	anvil_free(a);
}

/* Aligned windows: a new window (wall time / unit) starts the shared counts at zero; an
 * answer for the old one changes nothing. The local rate keeps Postfix's own window. */
static void test_windows(void)
{
	struct anvil *a = shared_table();
	struct anvil_key k = key("192.0.2.5", 0);
	/* wall 1,700,001,000 is window 28,333,350 [1,700,001,000, +60): monotonic 1000..1059 */
	CHECK_INT_EQ(conn(a, &k, 1058), 1);
	struct anvil_delta d[64];
	size_t n = collect(a, 1058, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	anvil_share_applied(a, &d[0], 30);
	CHECK_INT_EQ(conn(a, &k, 1059), 31); /* 30 (this node's 1 in it) + 1 pending */
	/* 1060: the next aligned window; Postfix's local window (from 1058) goes on */
	CHECK_INT_EQ(conn(a, &k, 1060), 3);
	anvil_share_applied(a, &d[0], 100); /* late answer for the old window: ignored */
	CHECK_INT_EQ(conn(a, &k, 1060), 4);
	n = collect(a, 1060, 0, d, 64);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(d[0].n, 2);
	CHECK_INT_EQ(d[0].window, (uint64_t)(OFFSET + 1060) / UNIT);
	/* a step of the wall clock moves the alignment */
	anvil_share_set_offset(a, OFFSET + UNIT);
	CHECK_INT_EQ(conn(a, &k, 1061), 5);
	n = collect(a, 1061, 0, d, 64);
	CHECK_INT_EQ(d[0].window, (uint64_t)(OFFSET + UNIT + 1061) / UNIT);
	anvil_free(a);
}

/* A small out: the walk stops with room for one entry's kinds and goes on. */
static void test_collect_bounded(void)
{
	struct anvil *a = shared_table();
	char addr[32];
	for (int i = 0; i < 50; i++) {
		snprintf(addr, sizeof(addr), "198.51.100.%d", i);
		struct anvil_key k = key(addr, 0);
		conn(a, &k, 1000);
	}
	struct anvil_delta d[ANVIL_RATE_MAX];
	struct anvil_cursor cur = { 0 };
	size_t total = 0, calls = 0;
	do {
		size_t n = anvil_share_collect(a, 1000, 0, &cur, d, ANVIL_RATE_MAX);
		CHECK(n <= ANVIL_RATE_MAX);
		total += n;
		calls++;
	} while (!cur.done && calls < 1000);
	CHECK(cur.done);
	CHECK_INT_EQ(total, 50);
	CHECK(calls >= 10);
	anvil_free(a);
}

/* ---- anvil_wire ---- */

static void test_wire_service(void)
{
	char buf[ANVIL_SERVICE_NAME_MAX];
	CHECK_STR_EQ(anvil_wire_service("smtp", buf, sizeof(buf)), "smtp");
	CHECK_STR_EQ(anvil_wire_service("192.0.2.10:smtp", buf, sizeof(buf)), "smtp");
	CHECK_STR_EQ(anvil_wire_service("[2001:db8::1]:2525", buf, sizeof(buf)), "2525");
	CHECK_STR_EQ(anvil_wire_service("odd:", buf, sizeof(buf)), "odd:");
}

static void test_wire_key(void)
{
	struct anvil_delta d = { .key = key("192.0.2.77", 3), .rate = ANVIL_RATE_RECIPIENT,
				 .unit = 60, .window = 28333350, .n = 2 };
	char out[ANVIL_WIRE_KEY_MAX + 1];
	long n = anvil_wire_key(out, sizeof(out), "127.0.0.1:smtp", &d);
	CHECK_STR_EQ(out, "anvil:smtp:192.0.2.77:recipient:60:28333350");
	CHECK_INT_EQ(n, (long)strlen(out));
	CHECK(memcache_key_valid(out, (size_t)n));
	struct mx_inet_addr a6;
	CHECK(mx_inet_parse("2001:db8:1:2:3:4:5:6", &a6));
	anvil_key_make(&d.key, &a6, 32, 84, 0);
	d.rate = ANVIL_RATE_CONNECT;
	n = anvil_wire_key(out, sizeof(out), "smtp", &d);
	CHECK_STR_EQ(out, "anvil:smtp:2001:db8:1:2:3::/84:connect:60:28333350");
	CHECK(memcache_key_valid(out, (size_t)n));
	/* too small a buffer, no service */
	CHECK_INT_EQ(anvil_wire_key(out, 10, "smtp", &d), -ENOBUFS);
	CHECK_INT_EQ(anvil_wire_key(out, sizeof(out), "", &d), -EINVAL);
	char longname[ANVIL_SERVICE_NAME_MAX + 20];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	n = anvil_wire_key(out, sizeof(out), longname, &d);
	CHECK(n > 0 && n <= ANVIL_WIRE_KEY_MAX);
}

static void test_wire_exptime(void)
{
	struct anvil_delta d = { .unit = 60, .window = 1000 };
	/* until (1000 + 2) * 60 + 60 = 60180 */
	CHECK_INT_EQ(anvil_wire_exptime(&d, 60000), 180);
	CHECK_INT_EQ(anvil_wire_exptime(&d, 60180), 60);
	CHECK_INT_EQ(anvil_wire_exptime(&d, 99999), 60);
	/* a unit of 30 days: an absolute time */
	struct anvil_delta big = { .unit = 2592000, .window = 600 };
	uint64_t now = 600ull * 2592000;
	CHECK_INT_EQ(anvil_wire_exptime(&big, now), (uint32_t)(602ull * 2592000 + 60));
}

static void test_wire_encode(void)
{
	char buf[ANVIL_WIRE_PAIR_MAX];
	const char *k = "mx:anvil:smtp:192.0.2.1:connect:60:5";
	long n = anvil_wire_encode(buf, sizeof(buf), k, strlen(k), 3, 180);
	const char *want = "add mx:anvil:smtp:192.0.2.1:connect:60:5 0 180 1\r\n0\r\n"
			   "incr mx:anvil:smtp:192.0.2.1:connect:60:5 3\r\n";
	CHECK_INT_EQ(n, (long)strlen(want));
	CHECK_MEM_EQ(buf, (size_t)n, want, strlen(want));
	CHECK_INT_EQ(anvil_wire_encode(buf, 20, k, strlen(k), 3, 180), -ENOBUFS);
	CHECK_INT_EQ(anvil_wire_encode(buf, sizeof(buf), "a b", 3, 3, 180), -EINVAL);
	CHECK_INT_EQ(anvil_wire_encode(buf, sizeof(buf), k, strlen(k), 0, 1) > 0, 1);
}

/* Feed text in pieces of `step` bytes (0: whole) from a heap copy of exactly its length;
 * returns the last feed's result and the bytes taken. */
static int wire_feed(struct anvil_wire_reader *r, const char *text, size_t step,
		     size_t *taken)
{
	size_t len = strlen(text);
	char *heap = malloc(len ? len : 1);
	memcpy(heap, text, len);
	anvil_wire_reader_start(r);
	size_t off = 0;
	int rc = 0;
	while (off < len) {
		size_t k = step && len - off > step ? step : len - off;
		size_t used = 0;
		rc = anvil_wire_reader_feed(r, heap + off, k, &used);
		CHECK(used <= k);
		off += used;
		if (rc != 0)
			break;
		CHECK_INT_EQ(used, k);
	}
	free(heap);
	*taken = off;
	return rc;
}

struct wire_case {
	const char *text;
	int rc;            /* of the feed */
	int result;        /* DONE: reader.result */
	uint64_t total;
	size_t taken;      /* 0: all of text */
};

static const struct wire_case wire_cases[] = {
	{ "STORED\r\n1\r\n", 1, 0, 1, 0 },
	{ "NOT_STORED\r\n42\r\n", 1, 0, 42, 0 },
	{ "NOT_STORED\r\n18446744073709551615\r\n", 1, 0, UINT64_MAX, 0 },
	{ "STORED\r\nNOT_FOUND\r\n", 1, -ENOENT, 0, 0 },
	{ "SERVER_ERROR out of memory storing object\r\n"
	  "SERVER_ERROR out of memory\r\n", 1, -EIO, 0, 0 },
	{ "NOT_STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
	  1, -EIO, 0, 0 },
	{ "ERROR\r\nERROR\r\n", 1, -EIO, 0, 0 },
	/* the next pair's bytes stay for it */
	{ "STORED\r\n5\r\nNOT_STORED\r\n6\r\n", 1, 0, 5, 11 },
	/* what add or incr cannot answer */
	{ "VALUE k 0 1\r\nx\r\nEND\r\n", -EPROTO, 0, 0, 0 },
	{ "DELETED\r\n", -EPROTO, 0, 0, 0 },
	{ "STORED\r\nSTORED\r\n", -EPROTO, 0, 0, 0 },
	{ "STORED\r\n12x\r\n", -EPROTO, 0, 0, 0 },
	{ "STORED\r\n99999999999999999999999\r\n", -EPROTO, 0, 0, 0 },
};

static void test_wire_reader(void)
{
	struct anvil_wire_reader r;
	CHECK_INT_EQ(anvil_wire_reader_init(&r, 1024), 0);
	for (size_t i = 0; i < sizeof(wire_cases) / sizeof(wire_cases[0]); i++) {
		const struct wire_case *c = &wire_cases[i];
		size_t len = strlen(c->text);
		size_t want_taken = c->taken ? c->taken : len;
		/* whole, then byte by byte */
		for (size_t step = 0; step <= 1; step++) {
			size_t taken = 0;
			int rc = wire_feed(&r, c->text, step, &taken);
			if (rc != c->rc)
				fprintf(stderr, "  case %zu (%s) step %zu: rc %d\n", i, c->text,
					step, rc);
			CHECK_INT_EQ(rc, c->rc);
			if (c->rc == 1) {
				CHECK_INT_EQ(taken, want_taken);
				CHECK_INT_EQ(r.state, ANVIL_WIRE_DONE);
				CHECK_INT_EQ(r.result, c->result);
				if (c->result == 0)
					CHECK(r.total == c->total);
			} else {
				CHECK_INT_EQ(r.state, ANVIL_WIRE_FAILED);
			}
		}
		/* split at every offset into two heap buffers of exactly their length */
		for (size_t cut = 0; c->rc == 1 && cut <= want_taken; cut++) {
			anvil_wire_reader_start(&r);
			char *x = malloc(cut ? cut : 1), *y = malloc(len - cut ? len - cut : 1);
			memcpy(x, c->text, cut);
			memcpy(y, c->text + cut, len - cut);
			size_t u1 = 0, u2 = 0;
			int rc = anvil_wire_reader_feed(&r, x, cut, &u1);
			if (rc == 0)
				rc = anvil_wire_reader_feed(&r, y, len - cut, &u2);
			CHECK_INT_EQ(rc, 1);
			CHECK_INT_EQ(u1 + u2, want_taken);
			CHECK_INT_EQ(r.result, c->result);
			free(x);
			free(y);
		}
	}
	/* the error's words are kept */
	size_t taken;
	CHECK_INT_EQ(wire_feed(&r, "SERVER_ERROR out of memory\r\n7\r\n", 0, &taken), 1);
	CHECK_INT_EQ(r.error_kind, MEMCACHE_REPLY_SERVER_ERROR);
	CHECK_STR_EQ(r.error, "out of memory");
	/* a failed reader stays failed until started */
	CHECK_INT_EQ(wire_feed(&r, "HUH\r\n", 0, &taken), -EPROTO);
	size_t used;
	CHECK_INT_EQ(anvil_wire_reader_feed(&r, "STORED\r\n", 8, &used), -EPROTO);
	CHECK_STR_EQ(anvil_wire_state_name(ANVIL_WIRE_DONE), "done");
	CHECK_STR_EQ(anvil_wire_state_name(ANVIL_WIRE_STATE_MAX), "?");
	anvil_wire_reader_free(&r);
}

int main(void)
{
	RUN_TEST(test_unshared_unchanged);
	RUN_TEST(test_merge);
	RUN_TEST(test_read_back_idle);
	RUN_TEST(test_failed);
	RUN_TEST(test_read_mask);
	RUN_TEST(test_windows);
	RUN_TEST(test_collect_bounded);
	RUN_TEST(test_wire_service);
	RUN_TEST(test_wire_key);
	RUN_TEST(test_wire_exptime);
	RUN_TEST(test_wire_encode);
	RUN_TEST(test_wire_reader);
	return TEST_RESULT();
}
