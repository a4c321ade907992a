/* The Prometheus endpoint (metrics_http.h): the request-head parser (sans-I/O) and the
 * server thread.
 *
 * One thread polls the listening socket, a stop pipe and up to MX_METRICS_HTTP_CONNS
 * connections, each non-blocking: it reads the head, renders the registry into a buffer
 * of the connection's own and writes it out as the client takes it, then closes. A client
 * that stalls is closed at its deadline; one that sends more than a head is answered and
 * closed. No worker is ever involved: the registry reads the workers' memory. */
#include "mgmt/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/inet.h"

const char *mx_http_method_name(enum mx_http_method m)
{
	static const char *const names[MX_HTTP_METHOD_MAX] = {
		[MX_HTTP_GET] = "GET",
		[MX_HTTP_HEAD] = "HEAD",
		[MX_HTTP_OTHER] = "other",
	};
	return (unsigned)m < MX_HTTP_METHOD_MAX ? names[m] : "?";
}

/* ---- the parser ---- */

/* tchar of RFC 9110 5.6.2 */
static bool http_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The end of the line starting at p (the index of its LF), or -1 when [p, len) has none. */
static long http_line_end(const char *buf, size_t p, size_t len)
{
	const char *lf = memchr(buf + p, '\n', len - p);
	return lf ? (long)(lf - buf) : -1;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 3) in [b, e), CR
 * stripped. */
static int http_request_line(const char *b, size_t n, struct mx_http_request *req)
{
	size_t i = 0;
	while (i < n && http_tchar((unsigned char)b[i]))
		i++;
	if (i == 0 || i >= n || b[i] != ' ')
		return -EINVAL;
	if (i == 3 && memcmp(b, "GET", 3) == 0)
		req->method = MX_HTTP_GET;
	else if (i == 4 && memcmp(b, "HEAD", 4) == 0)
		req->method = MX_HTTP_HEAD;
	else
		req->method = MX_HTTP_OTHER;
	size_t t = ++i;
	/* the target: visible ASCII (RFC 3986 characters; we only compare it) */
	while (i < n && (unsigned char)b[i] > ' ' && (unsigned char)b[i] < 127)
		i++;
	if (i == t || i >= n || b[i] != ' ')
		return -EINVAL;
	size_t tl = i - t;
	req->path = b + t;
	req->path_len = 0;
	while (req->path_len < tl && b[t + req->path_len] != '?' && b[t + req->path_len] != '#')
		req->path_len++;
	i++;
	/* HTTP-version = "HTTP/" DIGIT "." DIGIT */
	if (n - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 6] != '.' ||
	    b[i + 5] < '0' || b[i + 5] > '9' || b[i + 7] < '0' || b[i + 7] > '9')
		return -EINVAL;
	if (b[i + 5] != '1')
		return -EPROTONOSUPPORT;
	req->minor = (unsigned)(b[i + 7] - '0');
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 5): a token name directly
 * followed by the colon (no white space before it, 5.1), a value without control
 * characters but HTAB. Obsolete line folding is refused (5.2). */
static int http_field_line(const char *b, size_t n)
{
	size_t i = 0;
	while (i < n && http_tchar((unsigned char)b[i]))
		i++;
	if (i == 0 || i >= n || b[i] != ':')
		return -EINVAL;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)b[i];
		if ((c < ' ' && c != '\t') || c == 127)
			return -EINVAL;
	}
	return 0;
}

int mx_http_request_parse(const char *buf, size_t len, struct mx_http_request *req)
{
	size_t limit = len < MX_METRICS_HTTP_HEAD_MAX ? len : MX_METRICS_HTTP_HEAD_MAX;
	size_t p = 0;
	unsigned fields = 0;
	/* RFC 9112 2.2: empty lines before the request-line are ignored (bounded too) */
	while (p < limit && (buf[p] == '\r' || buf[p] == '\n')) {
		if (buf[p] == '\n') {
			p++;
			continue;
		}
		if (p + 1 >= limit)
			return limit == len ? 0 : -E2BIG;
		if (buf[p + 1] != '\n')
			return -EINVAL;
		p += 2;
	}
	bool first = true;
	for (;;) {
		long e = http_line_end(buf, p, limit);
		if (e < 0)
			return len >= MX_METRICS_HTTP_HEAD_MAX ? -E2BIG : 0;
		size_t end = (size_t)e, n = end - p;
		if (n > 0 && buf[end - 1] == '\r')
			n--;
		if (memchr(buf + p, '\r', n))
			return -EINVAL; /* a CR inside a line */
		if (first) {
			int rc = http_request_line(buf + p, n, req);
			if (rc < 0)
				return rc;
			first = false;
		} else if (n == 0) {
			return (int)(end + 1);
		} else {
			if (buf[p] == ' ' || buf[p] == '\t')
				return -EINVAL; /* obs-fold */
			if (++fields > MX_METRICS_HTTP_FIELDS_MAX)
				return -E2BIG;
			int rc = http_field_line(buf + p, n);
			if (rc < 0)
				return rc;
		}
		p = end + 1;
	}
}

/* ---- the server ---- */

struct http_conn {
	int fd;               /* -1: free */
	uint64_t deadline_ms;
	char head[MX_METRICS_HTTP_HEAD_MAX];
	size_t head_len;
	struct mx_metrics_text out; /* the response, being written */
	size_t out_off;
	bool responding;
};

struct mx_metrics_http {
	struct mx_metrics *m;
	int lfd;
	int stop_pipe[2];
	uint16_t port;
	pthread_t thread;
	atomic_uint_fast64_t scrapes;
	struct http_conn conn[MX_METRICS_HTTP_CONNS];
};

static void http_conn_close(struct http_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	mx_metrics_text_free(&c->out);
	c->head_len = 0;
	c->out_off = 0;
	c->responding = false;
}

/* Build the response in c->out: status line, headers, the body for GET. */
static void http_respond(struct mx_metrics_http *h, struct http_conn *c, int status,
			 const struct mx_http_request *req)
{
	const char *reason = status == 200   ? "OK"
			     : status == 400 ? "Bad Request"
			     : status == 404 ? "Not Found"
			     : status == 405 ? "Method Not Allowed"
			     : status == 431 ? "Request Header Fields Too Large"
			     : status == 505 ? "HTTP Version Not Supported"
					     : "Internal Server Error";
	struct mx_metrics_text body = { 0 };
	const char *ctype = "text/plain; charset=utf-8";
	if (status == 200) {
		if (mx_metrics_render_prom(h->m, &body) < 0) {
			status = 500;
			reason = "Internal Server Error";
		} else {
			ctype = "text/plain; version=0.0.4; charset=utf-8";
			atomic_fetch_add(&h->scrapes, 1);
		}
	}
	char small[96];
	const char *text = body.p;
	size_t tlen = body.len;
	if (status != 200) {
		tlen = (size_t)snprintf(small, sizeof(small), "%d %s\n", status, reason);
		text = small;
	}
	char hdr[320];
	int hn = snprintf(hdr, sizeof(hdr),
			  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			  "Connection: close\r\n\r\n",
			  status, reason, ctype, tlen,
			  status == 405 ? "Allow: GET, HEAD\r\n" : "");
	bool head_only = req && req->method == MX_HTTP_HEAD;
	size_t total = (size_t)hn + (head_only ? 0 : tlen);
	c->out = (struct mx_metrics_text){ .p = malloc(total + 1), .cap = total + 1 };
	if (c->out.p) {
		memcpy(c->out.p, hdr, (size_t)hn);
		if (!head_only && tlen)
			memcpy(c->out.p + hn, text, tlen);
		c->out.len = total;
	}
	mx_metrics_text_free(&body);
	c->responding = true;
	c->out_off = 0;
	/* the client has until the deadline to take the response */
	c->deadline_ms = mx_clock_monotonic_ms() + MX_METRICS_HTTP_TIMEOUT_MS;
	shutdown(c->fd, SHUT_RD);
}

static void http_on_request(struct mx_metrics_http *h, struct http_conn *c)
{
	struct mx_http_request req;
	int rc = mx_http_request_parse(c->head, c->head_len, &req);
	if (rc == 0 && c->head_len < sizeof(c->head))
		return; /* more to come */
	if (rc == 0 || rc == -E2BIG) {
		http_respond(h, c, 431, NULL);
		return;
	}
	if (rc == -EPROTONOSUPPORT) {
		http_respond(h, c, 505, NULL);
		return;
	}
	if (rc < 0) {
		http_respond(h, c, 400, NULL);
		return;
	}
	if (req.method == MX_HTTP_OTHER)
		http_respond(h, c, 405, &req);
	else if (req.path_len == 8 && memcmp(req.path, "/metrics", 8) == 0)
		http_respond(h, c, 200, &req);
	else
		http_respond(h, c, 404, &req);
}

static void http_read(struct mx_metrics_http *h, struct http_conn *c)
{
	ssize_t n = recv(c->fd, c->head + c->head_len, sizeof(c->head) - c->head_len, 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		http_conn_close(c);
		return;
	}
	if (n < 0)
		return;
	c->head_len += (size_t)n;
	http_on_request(h, c);
}

static void http_write(struct http_conn *c)
{
	if (!c->out.p) {
		http_conn_close(c);
		return;
	}
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			http_conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	http_conn_close(c);
}

static void http_accept(struct mx_metrics_http *h)
{
	struct http_conn *free_slot = NULL;
	for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS && !free_slot; i++)
		if (h->conn[i].fd < 0)
			free_slot = &h->conn[i];
	if (!free_slot)
		return; /* the listener is not polled while full; a race leaves it queued */
	int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	free_slot->fd = fd;
	free_slot->head_len = 0;
	free_slot->responding = false;
	free_slot->deadline_ms = mx_clock_monotonic_ms() + MX_METRICS_HTTP_TIMEOUT_MS;
}

static void *http_thread(void *arg)
{
	struct mx_metrics_http *h = arg;
	for (;;) {
		struct pollfd p[2 + MX_METRICS_HTTP_CONNS];
		struct http_conn *who[2 + MX_METRICS_HTTP_CONNS];
		unsigned np = 0, used = 0;
		uint64_t now = mx_clock_monotonic_ms(), next = now + 1000;
		p[np++] = (struct pollfd){ .fd = h->stop_pipe[0], .events = POLLIN };
		for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS; i++) {
			struct http_conn *c = &h->conn[i];
			if (c->fd < 0)
				continue;
			if (now >= c->deadline_ms) {
				http_conn_close(c); /* a client that stalls loses its turn */
				continue;
			}
			used++;
			if (c->deadline_ms < next)
				next = c->deadline_ms;
			who[np] = c;
			p[np++] = (struct pollfd){ .fd = c->fd,
						   .events = c->responding ? POLLOUT : POLLIN };
		}
		if (used < MX_METRICS_HTTP_CONNS) {
			who[np] = NULL;
			p[np++] = (struct pollfd){ .fd = h->lfd, .events = POLLIN };
		}
		int rc = poll(p, np, (int)(next - now));
		if (rc < 0 && errno != EINTR) {
			mx_log(MX_LOG_ERROR, "metrics endpoint: poll: %s", strerror(errno));
			break;
		}
		if (rc <= 0)
			continue;
		if (p[0].revents)
			break;
		for (unsigned i = 1; i < np; i++) {
			if (!p[i].revents)
				continue;
			if (p[i].fd == h->lfd) {
				http_accept(h);
				continue;
			}
			struct http_conn *c = who[i];
			if (c->responding)
				http_write(c);
			else
				http_read(h, c);
		}
	}
	for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS; i++)
		http_conn_close(&h->conn[i]);
	return NULL;
}

int mx_metrics_http_start(struct mx_metrics *m, const struct mx_listen_addr *addr,
			  struct mx_metrics_http **out, char *err, size_t errlen)
{
	struct mx_inet_addr a;
	if (!mx_inet_parse(addr->host, &a)) {
		snprintf(err, errlen, "metrics endpoint: bad address %s", addr->host);
		return -EINVAL;
	}
	struct mx_metrics_http *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "metrics endpoint: out of memory");
		return -ENOMEM;
	}
	h->m = m;
	h->stop_pipe[0] = h->stop_pipe[1] = -1;
	for (unsigned i = 0; i < MX_METRICS_HTTP_CONNS; i++)
		h->conn[i].fd = -1;
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (a.family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(addr->port);
		memcpy(&s6->sin6_addr, a.bytes, 16);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(addr->port);
		memcpy(&s4->sin_addr, a.bytes, 4);
		sl = sizeof(*s4);
	}
	int one = 1, rc;
	h->lfd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0 || setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(h->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(h->lfd, 64) < 0 ||
	    pipe2(h->stop_pipe, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "metrics endpoint: %s%s%s:%u: %s",
			 a.family == AF_INET6 ? "[" : "", addr->host,
			 a.family == AF_INET6 ? "]" : "", addr->port, strerror(-rc));
		goto fail;
	}
	getsockname(h->lfd, (struct sockaddr *)&ss, &sl);
	h->port = ntohs(a.family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					     : ((struct sockaddr_in *)&ss)->sin_port);
	rc = -pthread_create(&h->thread, NULL, http_thread, h);
	if (rc < 0) {
		snprintf(err, errlen, "metrics endpoint: thread: %s", strerror(-rc));
		goto fail;
	}
	/* its name: ps, top -H and perf/metrics/bench_metrics.py find it by it */
	pthread_setname_np(h->thread, "mx-metrics");
	*out = h;
	return 0;
fail:
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->stop_pipe[0] >= 0) {
		close(h->stop_pipe[0]);
		close(h->stop_pipe[1]);
	}
	free(h);
	return rc;
}

void mx_metrics_http_stop(struct mx_metrics_http *h)
{
	if (!h)
		return;
	ssize_t w = write(h->stop_pipe[1], "x", 1);
	(void)w;
	pthread_join(h->thread, NULL);
	close(h->lfd);
	close(h->stop_pipe[0]);
	close(h->stop_pipe[1]);
	free(h);
}

uint16_t mx_metrics_http_port(const struct mx_metrics_http *h)
{
	return h->port;
}

uint64_t mx_metrics_http_scrapes(const struct mx_metrics_http *h)
{
	return atomic_load(&((struct mx_metrics_http *)h)->scrapes);
}
