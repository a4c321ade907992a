/* `mxgate explain`'s policy client: one check_policy_service query at a time, blocking, as
 * the gateway's policy service (dataplane/svc/svc_policy.c) and Postfix's
 * attr_clnt_request() make it (explain.h says how). The service does the same without
 * blocking, with persistent connections; explain opens a connection per query, which
 * every policy server must accept (Postfix closes idle ones too). */
#include "mgmt/explain.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_delegation.h"

#define EXPLAIN_POLICY_HOST_MAX 256
#define EXPLAIN_POLICY_PORT_MAX 64
#define EXPLAIN_POLICY_ADDRS_MAX 8      /* addresses of a host name tried in turn */
#define EXPLAIN_POLICY_TIMEOUT_S 100    /* smtpd_policy_service_timeout's default, for 0 */

/* Where to connect: the addresses of an inet: endpoint or the path of a unix: one. */
struct mx_explain_policy_target {
	struct sockaddr_storage addr[EXPLAIN_POLICY_ADDRS_MAX];
	socklen_t len[EXPLAIN_POLICY_ADDRS_MAX];
	unsigned n;
	char shown[2 * (EXPLAIN_POLICY_HOST_MAX + EXPLAIN_POLICY_PORT_MAX)]; /* for messages */
};

/* "unix:PATH" / "local:PATH": absolute paths only (Postfix reads a relative one from its
 * queue_directory, e.g. unix:private/policy, and mxgate has none). */
static int mx_explain_policy_unix(const char *endpoint, const char *path,
				  struct mx_explain_policy_target *t, char *why, size_t whylen)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&t->addr[0];
	size_t n = strlen(path);
	if (n == 0)
		return mx_errf(why, whylen, -EINVAL, "%s: empty socket path", endpoint);
	if (path[0] != '/')
		return mx_errf(why, whylen, -EINVAL,
			       "%s: a relative socket path is relative to Postfix's "
			       "queue_directory, which mxgate does not have: write the absolute "
			       "path (e.g. unix:/var/spool/postfix/%s)",
			       endpoint, path);
	if (n >= sizeof(sun->sun_path))
		return mx_errf(why, whylen, -ENAMETOOLONG,
			       "%s: socket path longer than %zu octets", endpoint,
			       sizeof(sun->sun_path) - 1);
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n + 1);
	t->len[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	t->n = 1;
	snprintf(t->shown, sizeof(t->shown), "%s", path);
	return 0;
}

/* "inet:" as Postfix's host_port(): [host]:port, [IPv6:addr]:port, host:port (split at the
 * last ':'), :port and port (host localhost); the host numeric or looked up with
 * getaddrinfo(), the port a number or a service name. */
static int mx_explain_policy_inet(const char *endpoint, const char *rest,
				  struct mx_explain_policy_target *t, char *why, size_t whylen)
{
	char buf[EXPLAIN_POLICY_HOST_MAX + EXPLAIN_POLICY_PORT_MAX];
	if (strlen(rest) >= sizeof(buf))
		return mx_errf(why, whylen, -ENAMETOOLONG, "%s: too long", endpoint);
	snprintf(buf, sizeof(buf), "%s", rest);
	char *host, *port;
	if (buf[0] == '[') {
		host = buf + 1;
		if (strncasecmp(host, "IPv6:", 5) == 0)
			host += 5;
		char *close = strchr(host, ']');
		if (!close)
			return mx_errf(why, whylen, -EINVAL, "%s: missing \"]\"", endpoint);
		*close = '\0';
		port = close + 1;
		if (*port && *port != ':')
			return mx_errf(why, whylen, -EINVAL, "%s: garbage after \"]\"", endpoint);
		if (*port == ':')
			port++;
	} else {
		char *colon = strrchr(buf, ':');
		if (colon) {
			*colon = '\0';
			host = buf[0] ? buf : "localhost";
			port = colon + 1;
		} else {
			host = "localhost";
			port = buf;
		}
	}
	if (!*host || !*port)
		return mx_errf(why, whylen, -EINVAL, "%s: missing %s", endpoint,
			       *host ? "port" : "host");
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0)
		return mx_errf(why, whylen, g == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL,
			       "%s: cannot look up %s:%s: %s", endpoint, host, port,
			       gai_strerror(g));
	for (struct addrinfo *a = res; a && t->n < EXPLAIN_POLICY_ADDRS_MAX; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof(t->addr[0]))
			continue;
		memcpy(&t->addr[t->n], a->ai_addr, a->ai_addrlen);
		t->len[t->n++] = a->ai_addrlen;
	}
	freeaddrinfo(res);
	if (t->n == 0)
		return mx_errf(why, whylen, -EADDRNOTAVAIL, "%s: %s has no IPv4 or IPv6 address",
			       endpoint, host);
	snprintf(t->shown, sizeof(t->shown), "%s:%s", host, port);
	return 0;
}

static int mx_explain_policy_target(const char *endpoint, struct mx_explain_policy_target *t,
				    char *why, size_t whylen)
{
	memset(t, 0, sizeof(*t));
	const char *colon = endpoint ? strchr(endpoint, ':') : NULL;
	if (!colon || colon == endpoint || !colon[1])
		return mx_errf(why, whylen, -EINVAL,
			       "need service transport:endpoint instead of \"%s\"",
			       endpoint ? endpoint : "");
	size_t tl = (size_t)(colon - endpoint);
	if (tl == 4 && memcmp(endpoint, "inet", 4) == 0)
		return mx_explain_policy_inet(endpoint, colon + 1, t, why, whylen);
	if ((tl == 4 && memcmp(endpoint, "unix", 4) == 0) ||
	    (tl == 5 && memcmp(endpoint, "local", 5) == 0))
		return mx_explain_policy_unix(endpoint, colon + 1, t, why, whylen);
	return mx_errf(why, whylen, -EINVAL, "%s: unknown transport \"%.*s\" (inet: or unix:)",
		       endpoint, (int)tl, endpoint);
}

/* Milliseconds left until deadline (0 when past it). */
int mx_explain_ms_left(uint64_t deadline)
{
	uint64_t now = mx_clock_monotonic_ms();
	return now >= deadline ? 0 : (int)(deadline - now);
}

int mx_explain_wait(int fd, short events, uint64_t deadline)
{
	for (;;) {
		int left = mx_explain_ms_left(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

/* A connected stream to address i of t before deadline: the fd, or a negative errno. */
static int mx_explain_policy_connect(const struct mx_explain_policy_target *t, unsigned i,
				     uint64_t deadline)
{
	int fd = socket(t->addr[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&t->addr[i], t->len[i]) == 0)
		return fd;
	int rc = errno == EINPROGRESS ? 0 : -errno;
	if (rc == 0)
		rc = mx_explain_wait(fd, POLLOUT, deadline);
	if (rc == 0) {
		int soerr = 0;
		socklen_t el = sizeof(soerr);
		rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0 ? -errno : -soerr;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* One try: connect, send, read the reply into r. Returns 0 (r complete), or a negative
 * errno with why set. */
static int mx_explain_policy_try(const struct mx_explain_policy_target *t, unsigned timeout_s,
				 const char *request, size_t len,
				 struct smtp_delegation_reader *r, char *why, size_t whylen)
{
	uint64_t deadline = mx_clock_monotonic_ms() + (uint64_t)timeout_s * 1000u;
	int fd = -ENOENT;
	for (unsigned i = 0; i < t->n; i++) {
		fd = mx_explain_policy_connect(t, i, deadline);
		if (fd >= 0 || fd == -ETIMEDOUT)
			break;
	}
	if (fd < 0)
		return mx_errf(why, whylen, fd, "connect to %s: %s", t->shown, strerror(-fd));
	int rc = 0;
	size_t off = 0;
	while (rc == 0 && off < len) {
		ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			rc = mx_explain_wait(fd, POLLOUT, deadline);
		else if (n < 0 && errno != EINTR)
			rc = -errno;
	}
	if (rc < 0) {
		close(fd);
		return mx_errf(why, whylen, rc, "sending to %s: %s", t->shown, strerror(-rc));
	}
	for (;;) {
		rc = mx_explain_wait(fd, POLLIN, deadline);
		if (rc < 0)
			break;
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -ECONNRESET;
			break;
		}
		size_t used;
		rc = smtp_delegation_reader_feed(r, buf, (size_t)n, &used);
		if (rc != 0)
			break;
	}
	close(fd);
	if (rc == 1)
		return 0; /* anything the server sent after its reply is let go with the stream */
	if (rc == -ECONNRESET)
		return mx_errf(why, whylen, rc, "%s closed the connection before the reply ended",
			       t->shown);
	if (rc == -ETIMEDOUT)
		return mx_errf(why, whylen, rc, "no reply from %s within %u s", t->shown,
			       timeout_s);
	if (rc == -ENOMSG)
		return mx_errf(why, whylen, rc, "%s: a reply without action", t->shown);
	if (rc == -EBADMSG || rc == -EMSGSIZE)
		return mx_errf(why, whylen, rc, "%s: malformed reply (%s)", t->shown,
			       strerror(-rc));
	return mx_errf(why, whylen, rc, "reading from %s: %s", t->shown, strerror(-rc));
}

/* Sleep seconds (the retry delay). */
static void mx_explain_policy_sleep(unsigned seconds)
{
	struct timespec ts = { .tv_sec = (time_t)seconds };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int mx_explain_policy_query(const struct smtp_policy_service *svc, const char *request,
			    size_t len, bool smtputf8, struct mx_explain_policy_reply *out)
{
	memset(out, 0, sizeof(*out));
	struct mx_explain_policy_target *t = malloc(sizeof(*t));
	struct smtp_delegation_reader *r = malloc(sizeof(*r));
	if (!t || !r) {
		free(t);
		free(r);
		out->error = mx_errf(out->why, sizeof(out->why), -ENOMEM, "out of memory");
		return out->error;
	}
	unsigned limit = svc->try_limit ? svc->try_limit : 1;
	unsigned timeout = svc->timeout ? svc->timeout : EXPLAIN_POLICY_TIMEOUT_S;
	int rc = 0;
	t->n = 0;
	while (out->tries < limit) {
		if (out->tries > 0)
			mx_explain_policy_sleep(svc->retry_delay);
		out->tries++;
		if (t->n == 0) {
			/* the endpoint, its host name looked up (again after a failed lookup,
			 * as a new connection of Postfix's would) */
			rc = mx_explain_policy_target(svc->endpoint, t, out->why,
						      sizeof(out->why));
			if (rc == -EADDRNOTAVAIL)
				continue;
			if (rc < 0) {
				out->tries = 0; /* an endpoint that cannot be used: no try */
				break;
			}
		}
		/* UTF-8 is checked on the whole action below, as the gateway does */
		smtp_delegation_reader_init(r, 0);
		rc = mx_explain_policy_try(t, timeout, request, len, r, out->why,
					   sizeof(out->why));
		if (rc == 0)
			break;
		/* every failed try is tried again, a reply without action too, as the
		 * gateway's policy service does (svc_policy_try_failed()) */
	}
	if (rc == 0) {
		struct mx_span a = smtp_delegation_reader_action(r);
		memcpy(out->action, a.ptr, a.len);
		out->action[a.len] = '\0';
		if (smtputf8 && !smtp_utf8_valid(out->action, a.len)) {
			/* smtpd_check.c valid_utf8_action() */
			rc = mx_errf(out->why, sizeof(out->why), -EILSEQ,
				     "malformed UTF-8 in the reply's action");
			out->action[0] = '\0';
		}
	}
	free(t);
	free(r);
	out->error = rc;
	return rc;
}
