/* Policy service endpoints: "inet:HOST:PORT", "unix:PATH" and "local:PATH" parsed as
 * Postfix's auto_clnt_create() and host_port() take them, and the name lookups that run
 * beside the service thread (svc_policy_internal.h says why). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/svc/svc_policy.h"
#include "dataplane/svc/svc_policy_internal.h"
#include "mxgate/ctype.h"
#include "mxgate/errf.h"

/* ---- parsing ---- */

/* Postfix's valid_hostname(): labels of letters, digits, '-' and '_', 1..63 octets, not
 * starting or ending with '-', at most 255 octets in all. */
static bool svc_policy_valid_hostname(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > SVC_POLICY_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!mx_ctype_is_alnum(c) && c != '-' && c != '_')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

/* A port: a number 1..65535 or a service name for getaddrinfo(). *num is the number, or
 * 0 for a name. */
static bool svc_policy_valid_port(const char *s, unsigned *num)
{
	*num = 0;
	if (!*s)
		return false;
	if (mx_ctype_is_digit((unsigned char)*s)) {
		unsigned long v = 0;
		for (const char *p = s; *p; p++) {
			if (!mx_ctype_is_digit((unsigned char)*p))
				return false; /* Postfix: "garbage after numerical service" */
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > 65535)
				return false;
		}
		*num = (unsigned)v;
		return v > 0;
	}
	for (const char *p = s; *p; p++)
		if (!mx_ctype_is_alnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

static int svc_policy_parse_unix(const char *endpoint, const char *path,
				 struct svc_policy_target *t, char *err, size_t errlen)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&t->addrs.addr[0];
	size_t n = strlen(path);
	if (n == 0)
		return mx_errf(err, errlen, -EINVAL, "empty socket path in \"%s\"", endpoint);
	if (n >= sizeof(sun->sun_path))
		return mx_errf(err, errlen, -ENAMETOOLONG,
			       "socket path longer than %zu octets in \"%s\"",
			       sizeof(sun->sun_path) - 1, endpoint);
	t->transport = SVC_POLICY_UNIX;
	t->numeric = true;
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n + 1);
	t->addrs.len[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	t->addrs.n = 1;
	return 0;
}

/* host_port(buf, &host, "localhost", &port, NULL): [host]:port, [IPv6:addr]:port,
 * host:port (split at the last ':', so a bare IPv6 address works), :port, port. */
static int svc_policy_parse_inet(const char *endpoint, const char *rest,
				 struct svc_policy_target *t, char *err, size_t errlen)
{
	char buf[SVC_ENDPOINT_MAX];
	snprintf(buf, sizeof(buf), "%s", rest);
	char *host, *port;
	bool ipv6 = false;
	if (buf[0] == '[') {
		host = buf + 1;
		if (strncasecmp(host, "IPv6:", 5) == 0) {
			host += 5;
			ipv6 = true;
		}
		char *close = strchr(host, ']');
		if (!close)
			return mx_errf(err, errlen, -EINVAL, "missing \"]\" in \"%s\"", endpoint);
		*close = '\0';
		port = close + 1;
		if (*port && *port != ':')
			return mx_errf(err, errlen, -EINVAL, "garbage after \"]\" in \"%s\"",
				       endpoint);
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
	if (!*host)
		return mx_errf(err, errlen, -EINVAL, "missing host information in \"%s\"",
			       endpoint);
	if (!*port)
		return mx_errf(err, errlen, -EINVAL, "missing service information in \"%s\"",
			       endpoint);
	struct in_addr a4;
	struct in6_addr a6;
	bool is4 = !ipv6 && inet_pton(AF_INET, host, &a4) == 1;
	bool is6 = !is4 && inet_pton(AF_INET6, host, &a6) == 1;
	if (ipv6 && !is6)
		return mx_errf(err, errlen, -EINVAL, "malformed IPv6 address in \"%s\"",
			       endpoint);
	if (!is4 && !is6 && !svc_policy_valid_hostname(host))
		return mx_errf(err, errlen, -EINVAL,
			       "valid hostname or network address required in \"%s\"", endpoint);
	unsigned portnum;
	if (!svc_policy_valid_port(port, &portnum))
		return mx_errf(err, errlen, -EINVAL, "bad port or service \"%s\" in \"%s\"", port,
			       endpoint);
	t->transport = SVC_POLICY_INET;
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->port, sizeof(t->port), "%s", port);
	if ((!is4 && !is6) || portnum == 0)
		return 0; /* looked up when needed */
	t->numeric = true;
	t->addrs.n = 1;
	if (is4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&t->addrs.addr[0];
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)portnum);
		sin->sin_addr = a4;
		t->addrs.len[0] = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addrs.addr[0];
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)portnum);
		sin6->sin6_addr = a6;
		t->addrs.len[0] = sizeof(*sin6);
	}
	return 0;
}

int svc_policy_target_parse(const char *endpoint, struct svc_policy_target *t, char *err,
			    size_t errlen)
{
	memset(t, 0, sizeof(*t));
	size_t n = strnlen(endpoint, SVC_ENDPOINT_MAX);
	if (n == SVC_ENDPOINT_MAX)
		return mx_errf(err, errlen, -ENAMETOOLONG, "policy service name longer than %d",
			       SVC_ENDPOINT_MAX - 1);
	const char *colon = strchr(endpoint, ':');
	if (!colon || colon == endpoint || !colon[1])
		return mx_errf(err, errlen, -EINVAL,
			       "need service transport:endpoint instead of \"%s\"", endpoint);
	const char *rest = colon + 1;
	snprintf(t->name, sizeof(t->name), "%s", rest);
	size_t tlen = (size_t)(colon - endpoint);
	if (tlen == 4 && memcmp(endpoint, "inet", 4) == 0)
		return svc_policy_parse_inet(endpoint, rest, t, err, errlen);
	if ((tlen == 4 && memcmp(endpoint, "unix", 4) == 0) ||
	    (tlen == 5 && memcmp(endpoint, "local", 5) == 0))
		return svc_policy_parse_unix(endpoint, rest, t, err, errlen);
	return mx_errf(err, errlen, -EINVAL, "invalid transport name: %.*s in service: %s",
		       (int)tlen, endpoint, endpoint);
}

int svc_policy_endpoint_check(const char *endpoint, char *err, size_t errlen)
{
	struct svc_policy_target *t = malloc(sizeof(*t));
	if (!t)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	int rc = svc_policy_target_parse(endpoint, t, err, errlen);
	free(t);
	return rc;
}

/* ---- name lookups ---- */

struct svc_policy_lookup {
	struct svc_policy_lookup *next;  /* in the hub's finished list */
	struct svc_policy_hub *hub;
	char host[SVC_POLICY_HOST_MAX + 1];
	char port[SVC_ENDPOINT_MAX];
	struct svc_policy_lookup_result result;
};

struct svc_policy_hub {
	pthread_mutex_t lock;
	unsigned refs;                    /* the service's, and one per running lookup */
	struct svc_policy_lookup *done;   /* finished, not yet taken */
	int fd;
};

int svc_policy_hub_new(struct svc_policy_hub **out)
{
	struct svc_policy_hub *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->fd < 0) {
		int rc = -errno;
		free(h);
		return rc;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->refs = 1;
	*out = h;
	return 0;
}

int svc_policy_hub_fd(const struct svc_policy_hub *h)
{
	return h->fd;
}

static void svc_policy_hub_unref(struct svc_policy_hub *h)
{
	pthread_mutex_lock(&h->lock);
	bool last = --h->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (!last)
		return;
	while (h->done) {
		struct svc_policy_lookup *l = h->done;
		h->done = l->next;
		free(l);
	}
	close(h->fd);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void svc_policy_hub_release(struct svc_policy_hub *h)
{
	if (h)
		svc_policy_hub_unref(h);
}

static void *svc_policy_lookup_main(void *arg)
{
	/* named by itself: a detached thread may be gone before its creator could */
	pthread_setname_np(pthread_self(), "mx-policy-dns");
	struct svc_policy_lookup *l = arg;
	struct svc_policy_lookup_result *r = &l->result;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(l->host, l->port, &hints, &res);
	if (rc != 0) {
		r->error = rc == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL;
		char sys[96] = "";
		const char *why = rc == EAI_SYSTEM ? strerror_r(errno, sys, sizeof(sys))
						   : gai_strerror(rc);
		snprintf(r->why, sizeof(r->why), "%s", why);
	} else {
		for (struct addrinfo *a = res; a && r->addrs.n < SVC_POLICY_ADDRS_MAX;
		     a = a->ai_next) {
			if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
			    a->ai_addrlen > sizeof(r->addrs.addr[0]))
				continue;
			memcpy(&r->addrs.addr[r->addrs.n], a->ai_addr, a->ai_addrlen);
			r->addrs.len[r->addrs.n++] = a->ai_addrlen;
		}
		freeaddrinfo(res);
		if (r->addrs.n == 0) {
			r->error = -EADDRNOTAVAIL;
			snprintf(r->why, sizeof(r->why), "no IPv4 or IPv6 address");
		}
	}
	struct svc_policy_hub *h = l->hub;
	pthread_mutex_lock(&h->lock);
	l->next = h->done;
	h->done = l;
	pthread_mutex_unlock(&h->lock);
	eventfd_write(h->fd, 1); /* a full counter is already readable; not write(2) */
	svc_policy_hub_unref(h);
	return NULL;
}

int svc_policy_hub_lookup(struct svc_policy_hub *h, const char *host, const char *port,
			  void *cookie)
{
	struct svc_policy_lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->hub = h;
	snprintf(l->host, sizeof(l->host), "%s", host);
	snprintf(l->port, sizeof(l->port), "%s", port);
	l->result.cookie = cookie;
	pthread_mutex_lock(&h->lock);
	h->refs++;
	pthread_mutex_unlock(&h->lock);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t tid;
	int rc = pthread_create(&tid, &attr, svc_policy_lookup_main, l);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(l);
		svc_policy_hub_unref(h); /* never the last: the service holds one */
		return -rc;
	}
	return 0;
}

bool svc_policy_hub_next(struct svc_policy_hub *h, struct svc_policy_lookup_result *out)
{
	/* clear the eventfd before taking: a lookup that finishes after this read writes it
	 * again, so the service looks once more */
	uint64_t v;
	ssize_t n = read(h->fd, &v, sizeof(v));
	(void)n;
	pthread_mutex_lock(&h->lock);
	struct svc_policy_lookup *l = h->done;
	if (l)
		h->done = l->next;
	pthread_mutex_unlock(&h->lock);
	if (!l)
		return false;
	*out = l->result;
	free(l);
	return true;
}
