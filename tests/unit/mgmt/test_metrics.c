/* The metrics registry, its text-format renderer, the statistics lines built from it, the
 * HTTP request-head parser (whole, byte by byte, split at every offset, in heap buffers of
 * exactly their length) and the endpoint over a real socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mgmt/metrics.h"
#include "mgmt/metrics_http.h"
#include "mxgate/worker_metrics.h"
#include "testing.h"

/* ---- a subsystem with per-worker memory, summed at read time ---- */

#define T_WORKERS 3

struct t_worker {
	uint64_t accepted;
	uint64_t by_code[2]; /* "250", "550" */
	struct mx_latency_hist lat;
};

struct t_subsys {
	struct t_worker w[T_WORKERS];
	double gauge;
};

static const struct mx_metric_family t_fams[] = {
	{ .name = "mxgate_t_accepted_total", .help = "Accepted.", .type = MX_METRIC_COUNTER,
	  .stat_key = "accepted" },
	{ .name = "mxgate_t_replies_total", .help = "Replies by \\code.",
	  .type = MX_METRIC_COUNTER, .labels = { "code", "text" }, .stat_key = "replies" },
	{ .name = "mxgate_t_age_seconds", .help = "Age.", .type = MX_METRIC_GAUGE },
	{ .name = "mxgate_t_latency_seconds", .help = "Latency.", .type = MX_METRIC_HISTOGRAM,
	  .buckets = mx_latency_buckets_s, .nbuckets = MX_LATENCY_BUCKETS },
};

static void t_collect(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct t_subsys *s = ctx;
	static const char *const codes[2] = { "250", "550" };
	static const char *const texts[2] = { "ok \"q\"", "no\\\nway" };
	switch (i) {
	case 0: {
		uint64_t sum = 0;
		for (unsigned w = 0; w < T_WORKERS; w++)
			sum += s->w[w].accepted;
		mx_metrics_u64(sink, NULL, sum);
		break;
	}
	case 1:
		for (unsigned c = 0; c < 2; c++) {
			uint64_t sum = 0;
			for (unsigned w = 0; w < T_WORKERS; w++)
				sum += s->w[w].by_code[c];
			const char *lv[2] = { codes[c], texts[c] };
			mx_metrics_u64(sink, lv, sum);
		}
		break;
	case 2:
		mx_metrics_f64(sink, NULL, s->gauge);
		break;
	case 3: {
		uint64_t counts[MX_LATENCY_NBOUNDS + 1] = { 0 };
		uint64_t sum_us = 0;
		for (unsigned w = 0; w < T_WORKERS; w++) {
			for (unsigned b = 0; b <= MX_LATENCY_NBOUNDS; b++)
				counts[b] += s->w[w].lat.count[b];
			sum_us += s->w[w].lat.sum_us;
		}
		mx_metrics_hist(sink, NULL, counts, (double)sum_us / 1e6);
		break;
	}
	}
}

static void test_register_checks(void)
{
	struct mx_metrics *m = mx_metrics_new();
	CHECK(m);
	struct t_subsys s = { 0 };
	static const struct mx_metric_family bad_name[] = {
		{ .name = "9bad", .help = "x", .type = MX_METRIC_COUNTER } };
	static const struct mx_metric_family bad_label[] = {
		{ .name = "ok", .help = "x", .type = MX_METRIC_COUNTER, .labels = { "__x" } } };
	static const struct mx_metric_family dup_label[] = {
		{ .name = "ok", .help = "x", .type = MX_METRIC_COUNTER, .labels = { "a", "a" } } };
	static const struct mx_metric_family le_label[] = {
		{ .name = "ok", .help = "x", .type = MX_METRIC_HISTOGRAM, .labels = { "le" },
		  .buckets = mx_latency_buckets_s, .nbuckets = 2 } };
	static const struct mx_metric_family no_buckets[] = {
		{ .name = "ok", .help = "x", .type = MX_METRIC_HISTOGRAM } };
	static const double down[] = { 2, 1 };
	static const struct mx_metric_family bad_buckets[] = {
		{ .name = "ok", .help = "x", .type = MX_METRIC_HISTOGRAM, .buckets = down,
		  .nbuckets = 2 } };
	static const struct mx_metric_family nl_help[] = {
		{ .name = "ok", .help = "a\nb", .type = MX_METRIC_COUNTER } };
	CHECK_INT_EQ(mx_metrics_register(m, "t", bad_name, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", bad_label, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", dup_label, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", le_label, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", no_buckets, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", bad_buckets, 1, t_collect, &s), -EINVAL);
	CHECK_INT_EQ(mx_metrics_register(m, "t", nl_help, 1, t_collect, &s), -EINVAL);
	int h = mx_metrics_register(m, "t", t_fams, 4, t_collect, &s);
	CHECK(h > 0);
	/* a name is registered once */
	CHECK_INT_EQ(mx_metrics_register(m, "u", t_fams, 1, t_collect, &s), -EINVAL);
	mx_metrics_unregister(m, h);
	h = mx_metrics_register(m, "u", t_fams, 1, t_collect, &s);
	CHECK(h > 0);
	mx_metrics_unregister(m, h);
	mx_metrics_free(m);
}

static void test_render(void)
{
	struct mx_metrics *m = mx_metrics_new();
	struct t_subsys s = { 0 };
	s.w[0].accepted = 1;
	s.w[1].accepted = 2;
	s.w[2].accepted = 4;
	s.w[0].by_code[0] = 10;
	s.w[2].by_code[0] = 5;
	s.w[1].by_code[1] = 3;
	s.gauge = 1.5;
	/* 50 us and 100 us in the first bucket (le is inclusive), 101 us in the second, 2 s
	 * in 2.5, 31 s in +Inf: on three workers */
	mx_latency_observe(&s.w[0].lat, 50);
	mx_latency_observe(&s.w[1].lat, 100);
	mx_latency_observe(&s.w[2].lat, 101);
	mx_latency_observe(&s.w[2].lat, 2000000);
	mx_latency_observe(&s.w[0].lat, 31000000);
	int h = mx_metrics_register(m, "t", t_fams, 4, t_collect, &s);
	CHECK(h > 0);
	struct mx_metrics_text t;
	CHECK_INT_EQ(mx_metrics_render_prom(m, &t), 0);
	const char *want =
		"# HELP mxgate_t_accepted_total Accepted.\n"
		"# TYPE mxgate_t_accepted_total counter\n"
		"mxgate_t_accepted_total 7\n"
		"# HELP mxgate_t_replies_total Replies by \\\\code.\n"
		"# TYPE mxgate_t_replies_total counter\n"
		"mxgate_t_replies_total{code=\"250\",text=\"ok \\\"q\\\"\"} 15\n"
		"mxgate_t_replies_total{code=\"550\",text=\"no\\\\\\nway\"} 3\n"
		"# HELP mxgate_t_age_seconds Age.\n"
		"# TYPE mxgate_t_age_seconds gauge\n"
		"mxgate_t_age_seconds 1.5\n"
		"# HELP mxgate_t_latency_seconds Latency.\n"
		"# TYPE mxgate_t_latency_seconds histogram\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.0001\"} 2\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.00025\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.0005\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.001\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.0025\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.005\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.01\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.025\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.05\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.1\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.25\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"0.5\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"1\"} 3\n"
		"mxgate_t_latency_seconds_bucket{le=\"2.5\"} 4\n"
		"mxgate_t_latency_seconds_bucket{le=\"10\"} 4\n"
		"mxgate_t_latency_seconds_bucket{le=\"30\"} 4\n"
		"mxgate_t_latency_seconds_bucket{le=\"+Inf\"} 5\n"
		"mxgate_t_latency_seconds_sum 33.000250999999999\n"
		"mxgate_t_latency_seconds_count 5\n";
	CHECK_STR_EQ(t.p, want);
	mx_metrics_text_free(&t);

	/* the statistics line: families with a stat key, the sum of their samples or of
	 * those whose label matches */
	char line[256];
	mx_metrics_stat_line(m, "t", NULL, NULL, line, sizeof(line));
	CHECK_STR_EQ(line, " accepted=7 replies=18");
	mx_metrics_stat_line(m, "t", "code", "550", line, sizeof(line));
	CHECK_STR_EQ(line, " accepted=7 replies=3");
	mx_metrics_stat_line(m, "other", NULL, NULL, line, sizeof(line));
	CHECK_STR_EQ(line, "");
	/* truncated, terminated */
	CHECK_INT_EQ(mx_metrics_stat_line(m, "t", NULL, NULL, line, 8), 7);
	CHECK_STR_EQ(line, " accept");

	/* one value; the workers move and the next read sees it */
	uint64_t v = 0;
	CHECK_INT_EQ(mx_metrics_get(m, "mxgate_t_accepted_total", NULL, &v), 0);
	CHECK_INT_EQ(v, 7);
	s.w[1].accepted += 10;
	CHECK_INT_EQ(mx_metrics_get(m, "mxgate_t_accepted_total", NULL, &v), 0);
	CHECK_INT_EQ(v, 17);
	const char *lv[2] = { "550", "no\\\nway" };
	CHECK_INT_EQ(mx_metrics_get(m, "mxgate_t_replies_total", lv, &v), 0);
	CHECK_INT_EQ(v, 3);
	CHECK_INT_EQ(mx_metrics_get(m, "mxgate_nope", NULL, &v), -ENOENT);
	mx_metrics_unregister(m, h);
	/* an empty registry renders as nothing */
	CHECK_INT_EQ(mx_metrics_render_prom(m, &t), 0);
	CHECK_STR_EQ(t.p, "");
	mx_metrics_text_free(&t);
	mx_metrics_free(m);
}

static void test_escape(void)
{
	char buf[64];
	CHECK_INT_EQ(mx_metrics_escape_label("plain", buf, sizeof(buf)), 5);
	CHECK_STR_EQ(buf, "plain");
	CHECK_INT_EQ(mx_metrics_escape_label("a\"b\\c\nd", buf, sizeof(buf)), 10);
	CHECK_STR_EQ(buf, "a\\\"b\\\\c\\nd");
	/* truncation: the needed length, a terminated prefix */
	CHECK_INT_EQ(mx_metrics_escape_label("\"\"\"", buf, 4), 6);
	CHECK_STR_EQ(buf, "\\\"\\");
	CHECK_INT_EQ(mx_metrics_escape_label("", buf, sizeof(buf)), 0);
	CHECK_STR_EQ(buf, "");
}

static void test_reply_counts(void)
{
	struct mx_reply_counts *t = calloc(1, sizeof(*t));
	uint32_t k250 = mx_reply_key(250, 2, 0, 0), k550 = mx_reply_key(550, 5, 7, 1);
	CHECK(k250 != k550 && k250 != 0);
	CHECK_INT_EQ(mx_reply_key_code(k550), 550);
	CHECK_INT_EQ(mx_reply_key_class(k550), 5);
	CHECK_INT_EQ(mx_reply_key_subject(k550), 7);
	CHECK_INT_EQ(mx_reply_key_detail(k550), 1);
	uint32_t k = mx_reply_key(599, 5, 999, 999);
	CHECK_INT_EQ(mx_reply_key_code(k), 599);
	CHECK_INT_EQ(mx_reply_key_class(k), 5);
	CHECK_INT_EQ(mx_reply_key_subject(k), 999);
	CHECK_INT_EQ(mx_reply_key_detail(k), 999);
	CHECK(mx_reply_key(200, 0, 0, 0) != 0);
	mx_reply_count(t, k250);
	mx_reply_count(t, k250);
	mx_reply_count(t, k550);
	uint64_t n250 = 0, n550 = 0, slots = 0;
	for (unsigned i = 0; i < MX_REPLY_SLOTS; i++) {
		if (t->slot[i].key == k250)
			n250 = t->slot[i].n;
		if (t->slot[i].key == k550)
			n550 = t->slot[i].n;
		slots += t->slot[i].key != 0;
	}
	CHECK_INT_EQ(n250, 2);
	CHECK_INT_EQ(n550, 1);
	CHECK_INT_EQ(slots, 2);
	/* the table is bounded: what finds no slot is counted as other, none is lost */
	uint64_t total = 3;
	for (unsigned code = 200; code < 600; code++)
		for (unsigned d = 0; d < 3; d++, total++)
			mx_reply_count(t, mx_reply_key(code, code / 100, 1, d));
	uint64_t seen = t->other;
	for (unsigned i = 0; i < MX_REPLY_SLOTS; i++)
		seen += t->slot[i].n;
	CHECK_INT_EQ(seen, total);
	CHECK(t->other > 0);
	free(t);
}

/* ---- the request-head parser ---- */

/* parse s from a heap buffer of exactly its length */
static int t_parse(const char *s, size_t n, struct mx_http_request *r)
{
	char *b = malloc(n ? n : 1);
	memcpy(b, s, n);
	int rc = mx_http_request_parse(b, n, r);
	if (rc > 0 && r->path) /* copy the path out of the buffer before it goes */
		r->path = s + (r->path - b);
	free(b);
	return rc;
}

struct t_http_case {
	const char *in;
	int want;              /* > 0: the whole input is the head (its length) */
	enum mx_http_method method;
	const char *path;
	unsigned minor;
};

static const struct t_http_case t_http_cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 1, MX_HTTP_GET, "/metrics", 1 },
	{ "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", 1, MX_HTTP_HEAD, "/metrics", 0 },
	{ "GET / HTTP/1.1\n\n", 1, MX_HTTP_GET, "/", 1 },
	{ "\r\nGET /m#f HTTP/1.1\r\nA: b\r\nC:\r\n\r\n", 1, MX_HTTP_GET, "/m", 1 },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1, MX_HTTP_OTHER, "/metrics", 1 },
	{ "get /metrics HTTP/1.1\r\n\r\n", 1, MX_HTTP_OTHER, "/metrics", 1 },
	{ "GET /metrics HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1 \r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost: a\rb\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost: a\x01\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "GET /me\x7ftrics HTTP/1.1\r\n\r\n", -EINVAL, 0, NULL, 0 },
	{ "\rX", -EINVAL, 0, NULL, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n", 0, 0, NULL, 0 },
	{ "GET /metr", 0, 0, NULL, 0 },
};

static void test_http_parse(void)
{
	for (size_t k = 0; k < sizeof(t_http_cases) / sizeof(t_http_cases[0]); k++) {
		const struct t_http_case *c = &t_http_cases[k];
		size_t n = strlen(c->in);
		struct mx_http_request r = { 0 };
		int rc = t_parse(c->in, n, &r);
		int want = c->want > 0 ? (int)n : c->want;
		if (rc != want)
			fprintf(stderr, "case %zu: %s\n", k, c->in);
		CHECK_INT_EQ(rc, want);
		if (c->want > 0) {
			CHECK_INT_EQ(r.method, c->method);
			CHECK_INT_EQ(r.path_len, strlen(c->path));
			CHECK(memcmp(r.path, c->path, r.path_len) == 0);
			CHECK_INT_EQ(r.minor, c->minor);
		}
		/* every prefix of a complete head needs more (or already fails the same way
		 * for a bad one): never a different answer for the same bytes */
		for (size_t cut = 0; cut < n; cut++) {
			struct mx_http_request r2 = { 0 };
			int rc2 = t_parse(c->in, cut, &r2);
			if (c->want >= 0)
				CHECK_INT_EQ(rc2, 0);
			else
				CHECK(rc2 == 0 || rc2 == c->want);
		}
		/* a head followed by more bytes (a body, a pipelined request) ends where it
		 * ends */
		if (c->want > 0) {
			char *more = malloc(n + 5);
			memcpy(more, c->in, n);
			memcpy(more + n, "XXXXX", 5);
			CHECK_INT_EQ(mx_http_request_parse(more, n + 5, &r), (int)n);
			free(more);
		}
	}
}

static void test_http_bounds(void)
{
	/* a head that never ends stops at the bound */
	size_t n = MX_METRICS_HTTP_HEAD_MAX + 10;
	char *b = malloc(n);
	memset(b, 'a', n);
	memcpy(b, "GET / HTTP/1.1\r\nX: ", 19);
	struct mx_http_request r;
	CHECK_INT_EQ(mx_http_request_parse(b, MX_METRICS_HTTP_HEAD_MAX - 1, &r), 0);
	CHECK_INT_EQ(mx_http_request_parse(b, MX_METRICS_HTTP_HEAD_MAX, &r), -E2BIG);
	CHECK_INT_EQ(mx_http_request_parse(b, n, &r), -E2BIG);
	/* too many field lines */
	size_t len = 0;
	len += (size_t)sprintf(b + len, "GET / HTTP/1.1\r\n");
	for (unsigned i = 0; i <= MX_METRICS_HTTP_FIELDS_MAX; i++)
		len += (size_t)sprintf(b + len, "A: b\r\n");
	len += (size_t)sprintf(b + len, "\r\n");
	CHECK(len < MX_METRICS_HTTP_HEAD_MAX);
	CHECK_INT_EQ(mx_http_request_parse(b, len, &r), -E2BIG);
	/* endless empty lines before the request-line are bounded too */
	memset(b, '\n', n);
	CHECK_INT_EQ(mx_http_request_parse(b, 100, &r), 0);
	CHECK_INT_EQ(mx_http_request_parse(b, n, &r), -E2BIG);
	free(b);
}

/* ---- the endpoint ---- */

static int t_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

/* Send req, read until the server closes; the response in buf (terminated). */
static size_t t_exchange(uint16_t port, const char *req, size_t reqlen, char *buf, size_t cap)
{
	int fd = t_connect(port);
	CHECK(send(fd, req, reqlen, MSG_NOSIGNAL) == (ssize_t)reqlen);
	size_t n = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		CHECK(poll(&p, 1, 5000) == 1);
		ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	close(fd);
	return n;
}

static void test_http_server(void)
{
	struct mx_metrics *m = mx_metrics_new();
	struct t_subsys s = { 0 };
	s.w[2].accepted = 42;
	int h = mx_metrics_register(m, "t", t_fams, 4, t_collect, &s);
	struct mx_listen_addr a = { .host = "127.0.0.1", .port = 0 };
	struct mx_metrics_http *srv = NULL;
	char err[256];
	CHECK_INT_EQ(mx_metrics_http_start(m, &a, &srv, err, sizeof(err)), 0);
	uint16_t port = mx_metrics_http_port(srv);
	CHECK(port != 0);
	char *buf = malloc(1 << 16);
	const char *get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	t_exchange(port, get, strlen(get), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(strstr(buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	CHECK(strstr(buf, "\r\n\r\n# HELP mxgate_t_accepted_total Accepted.\n"));
	CHECK(strstr(buf, "\nmxgate_t_accepted_total 42\n"));
	const char *headreq = "HEAD /metrics HTTP/1.0\r\n\r\n";
	size_t n = t_exchange(port, headreq, strlen(headreq), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(n >= 4 && strcmp(buf + n - 4, "\r\n\r\n") == 0);
	const char *nf = "GET /other HTTP/1.1\r\n\r\n";
	t_exchange(port, nf, strlen(nf), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	const char *post = "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
	t_exchange(port, post, strlen(post), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 405 ", 13) == 0);
	CHECK(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));
	const char *bad = "GET /metrics HTTP/1.1\r\nBad Field\r\n\r\n";
	t_exchange(port, bad, strlen(bad), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 400 ", 13) == 0);
	char *big = malloc(MX_METRICS_HTTP_HEAD_MAX + 100);
	memset(big, 'a', MX_METRICS_HTTP_HEAD_MAX + 100);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	t_exchange(port, big, MX_METRICS_HTTP_HEAD_MAX + 100, buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 431 ", 13) == 0);
	free(big);
	/* more idle connections than the bound: the endpoint still answers once they go */
	int idle[MX_METRICS_HTTP_CONNS + 2];
	for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS + 2; i++)
		idle[i] = t_connect(port);
	for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS + 2; i++)
		close(idle[i]);
	t_exchange(port, get, strlen(get), buf, 1 << 16);
	CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK_INT_EQ(mx_metrics_http_scrapes(srv), 3);
	free(buf);
	mx_metrics_http_stop(srv);
	/* an address in use is refused with the reason */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	a.port = ntohs(sa.sin_port);
	CHECK_INT_EQ(mx_metrics_http_start(m, &a, &srv, err, sizeof(err)), -EADDRINUSE);
	CHECK(strstr(err, "127.0.0.1:"));
	close(fd);
	mx_metrics_unregister(m, h);
	mx_metrics_free(m);
}

int main(void)
{
	RUN_TEST(test_register_checks);
	RUN_TEST(test_render);
	RUN_TEST(test_escape);
	RUN_TEST(test_reply_counts);
	RUN_TEST(test_http_parse);
	RUN_TEST(test_http_bounds);
	RUN_TEST(test_http_server);
	return TEST_RESULT();
}
