/* `mxgate explain`'s DNS: a small blocking stub resolver over the project's DNS codec
 * (tables/dns_message.h), asking as the gateway's resolver service asks (explain.h says
 * how), with a cache for the run; and the client's name looked up as the gateway's
 * connection looks it up at connect. A command-line tool may block; the gateway's workers
 * never do, which is why the gateway has its own resolver thread instead of this. */
#include "mgmt/explain.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mxgate/clock.h"

#define EXPLAIN_DNS_WHY_MAX 96 /* struct dns_result's why[] */

struct mx_explain_dns_entry {
	enum dns_type type;
	char *name; /* normalised */
	struct dns_result *result;
};

struct mx_explain_dns {
	struct mx_explain_dns_opts o;
	char server_text[DNS_CONF_SERVERS_MAX][64]; /* "127.0.0.1", "[::1]:5353" */
	unsigned next_start;                        /* rotate */
	struct mx_explain_dns_entry *cache;
	size_t ncache, capcache;
	struct mx_explain_dns_stats stats;
	struct dns_answer *answer;     /* one parse at a time (about 50 KiB) */
	struct dns_tcp_reader *reader; /* one TCP stream at a time (about 64 KiB) */
	uint8_t *pkt;                  /* a datagram (DNS_MESSAGE_MAX + 1: a longer one is
					  seen as such and fails to parse) */
};

/* One question on the wire: its query (ID and 0x20 case drawn once, so a late answer to
 * an earlier try is as good as one to the current try) and a socket per server asked. */
struct mx_explain_dns_q {
	struct dns_query dq;
	int fd[DNS_CONF_SERVERS_MAX]; /* -1: not asked (or failed) */
	uint32_t failed;              /* servers not asked again */
	char why[EXPLAIN_DNS_WHY_MAX]; /* the last failure */
	uint64_t end;                 /* question_timeout_ms after it began */
	unsigned from;                /* the server whose answer is in d->answer */
};

/* What waiting for one try came to. */
enum mx_explain_dns_try {
	EXPLAIN_DNS_ANSWER,    /* OK, NODATA or NXDOMAIN in d->answer, from q->from */
	EXPLAIN_DNS_TRUNCATED, /* TC over UDP from q->from: ask it over TCP */
	EXPLAIN_DNS_NEXT,      /* the try is over (timeout, or its server failed) */
	EXPLAIN_DNS_FATAL,     /* the question failed whatever the server (a CNAME loop) */
	EXPLAIN_DNS_TRY_MAX
};

/* ---------------------------------------------------------------------------------------
 * Settings */

int mx_explain_dns_opts_init(struct mx_explain_dns_opts *o, const char *servers,
			     const char *resolv_conf, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->edns_udp_size = MX_EXPLAIN_DNS_EDNS_UDP_SIZE;
	o->question_timeout_ms = MX_EXPLAIN_DNS_QUESTION_TIMEOUT_MS;
	int rc = dns_servers_parse(servers ? servers : "", o->servers, DNS_CONF_SERVERS_MAX,
				   &o->nservers, err, errlen);
	if (rc < 0)
		return rc;
	if (o->nservers > 0) {
		snprintf(o->source, sizeof(o->source), "mxgate_dns_servers");
	} else {
		const char *path = resolv_conf ? resolv_conf : "/etc/resolv.conf";
		struct dns_resolv_conf rcf;
		rc = dns_resolv_conf_read(path, &rcf, err, errlen);
		if (rc < 0)
			return rc;
		memcpy(o->servers, rcf.servers, rcf.nservers * sizeof(rcf.servers[0]));
		o->nservers = rcf.nservers;
		o->timeout_ms = rcf.timeout_ms;
		o->attempts = rcf.attempts;
		o->rotate = rcf.rotate;
		snprintf(o->source, sizeof(o->source), "%.40s%s", path,
			 rcf.defaulted ? ": no nameserver line" : "");
	}
	if (o->timeout_ms == 0)
		o->timeout_ms = DNS_CONF_DEFAULT_TIMEOUT_MS;
	if (o->attempts == 0)
		o->attempts = DNS_CONF_DEFAULT_ATTEMPTS;
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * The resolver */

int mx_explain_dns_new(const struct mx_explain_dns_opts *o, struct mx_explain_dns **out)
{
	*out = NULL;
	if (o->nservers == 0 || o->nservers > DNS_CONF_SERVERS_MAX || o->timeout_ms == 0 ||
	    o->timeout_ms > DNS_CONF_TIMEOUT_MAX_MS || o->attempts == 0 ||
	    o->attempts > DNS_CONF_ATTEMPTS_MAX || o->question_timeout_ms == 0 ||
	    (o->edns_udp_size != 0 && o->edns_udp_size < DNS_UDP_MIN))
		return -EINVAL;
	for (unsigned i = 0; i < o->nservers; i++)
		if (o->servers[i].port == 0 || (o->servers[i].addr.family != AF_INET &&
						 o->servers[i].addr.family != AF_INET6))
			return -EINVAL;
	struct mx_explain_dns *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->o = *o;
	d->answer = malloc(sizeof(*d->answer));
	d->reader = malloc(sizeof(*d->reader));
	d->pkt = malloc(DNS_MESSAGE_MAX + 1);
	if (!d->answer || !d->reader || !d->pkt) {
		mx_explain_dns_free(d);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < o->nservers; i++) {
		/* as the gateway's resolver names them in its TEMPFAIL reasons */
		char a[INET6_ADDRSTRLEN];
		const struct dns_server *s = &o->servers[i];
		mx_inet_format(&s->addr, a, sizeof(a));
		if (s->port == 53)
			snprintf(d->server_text[i], sizeof(d->server_text[i]), "%s", a);
		else if (s->addr.family == AF_INET6)
			snprintf(d->server_text[i], sizeof(d->server_text[i]), "[%s]:%u", a,
				 s->port);
		else
			snprintf(d->server_text[i], sizeof(d->server_text[i]), "%s:%u", a, s->port);
	}
	*out = d;
	return 0;
}

void mx_explain_dns_free(struct mx_explain_dns *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->ncache; i++) {
		free(d->cache[i].name);
		dns_result_put(d->cache[i].result);
	}
	free(d->cache);
	free(d->answer);
	free(d->reader);
	free(d->pkt);
	free(d);
}

void mx_explain_dns_stats(const struct mx_explain_dns *d, struct mx_explain_dns_stats *out)
{
	*out = d->stats;
}

/* A server's socket address. */
static socklen_t mx_explain_dns_sockaddr(const struct dns_server *s,
					 struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (s->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(s->port);
		memcpy(&sin->sin_addr, s->addr.bytes, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(s->port);
	memcpy(&sin6->sin6_addr, s->addr.bytes, 16);
	return sizeof(*sin6);
}

/* Milliseconds left until deadline (0 when past it). */
/* The server failed this question: not asked again, its late answers not taken. */
static void mx_explain_dns_server_failed(struct mx_explain_dns_q *q, unsigned s,
					 const char *why)
{
	q->failed |= 1u << s;
	if (q->fd[s] >= 0)
		close(q->fd[s]);
	q->fd[s] = -1;
	snprintf(q->why, sizeof(q->why), "%s", why);
}

/* A response parsed from server s (rc from dns_response_parse(), not -ENOMSG): what it
 * means for the question, as svc_resolver_query_response() reads it. */
static enum mx_explain_dns_try mx_explain_dns_response(struct mx_explain_dns *d,
						       struct mx_explain_dns_q *q, unsigned s,
						       int rc, bool tcp, const char *perr)
{
	const char *from = d->server_text[s];
	char why[EXPLAIN_DNS_WHY_MAX];
	q->from = s;
	if (rc == -ELOOP) {
		/* the data's fault, not the server's: every server would say the same */
		snprintf(q->why, sizeof(q->why), "CNAME chain too long at %s", from);
		return EXPLAIN_DNS_FATAL;
	}
	if (rc < 0) {
		snprintf(why, sizeof(why), "malformed answer from %s: %s", from, perr);
		mx_explain_dns_server_failed(q, s, why);
		return EXPLAIN_DNS_NEXT;
	}
	switch (d->answer->status) {
	case DNS_STATUS_OK:
	case DNS_STATUS_NODATA:
	case DNS_STATUS_NXDOMAIN:
		return EXPLAIN_DNS_ANSWER;
	case DNS_STATUS_TRUNCATED:
		if (!tcp)
			return EXPLAIN_DNS_TRUNCATED;
		/* TC over TCP: nothing usable will come (RFC 7766 6.2.1.1) */
		snprintf(why, sizeof(why), "truncated TCP answer from %s", from);
		mx_explain_dns_server_failed(q, s, why);
		return EXPLAIN_DNS_NEXT;
	case DNS_STATUS_SERVFAIL:
		snprintf(why, sizeof(why), "SERVFAIL from %s", from);
		break;
	case DNS_STATUS_REFUSED:
		snprintf(why, sizeof(why), "REFUSED from %s", from);
		break;
	case DNS_STATUS_RCODE:
	case DNS_STATUS_MAX:
		snprintf(why, sizeof(why), "RCODE %u from %s", d->answer->rcode, from);
		break;
	}
	mx_explain_dns_server_failed(q, s, why);
	return EXPLAIN_DNS_NEXT;
}

/* Send the try's datagram to server s on its socket (made on its first try). false when
 * the server cannot be asked (it failed); a datagram that could not leave otherwise
 * counts as sent and lost, as on the wire. */
static bool mx_explain_dns_send(struct mx_explain_dns *d, struct mx_explain_dns_q *q,
				unsigned s)
{
	char why[EXPLAIN_DNS_WHY_MAX];
	if (q->fd[s] < 0) {
		struct sockaddr_storage ss;
		socklen_t sl = mx_explain_dns_sockaddr(&d->o.servers[s], &ss);
		int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		/* connected: only this server's datagrams come in, an ICMP port unreachable
		 * comes back as ECONNREFUSED, and the kernel picks a random source port */
		if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
			snprintf(why, sizeof(why), "cannot ask %s: %s", d->server_text[s],
				 strerror(errno));
			if (fd >= 0)
				close(fd);
			mx_explain_dns_server_failed(q, s, why);
			return false;
		}
		q->fd[s] = fd;
	}
	uint8_t buf[DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4 + 11];
	size_t len;
	if (dns_query_encode(&q->dq, buf, sizeof(buf), &len) < 0) {
		mx_explain_dns_server_failed(q, s, "the query does not fit a message");
		return false;
	}
	if (send(q->fd[s], buf, len, 0) < 0 && errno == ECONNREFUSED) {
		snprintf(why, sizeof(why), "connection refused by %s", d->server_text[s]);
		mx_explain_dns_server_failed(q, s, why);
		return false;
	}
	d->stats.udp_sent++;
	return true;
}

/* Wait for the try to server s until deadline, taking answers from every server asked
 * (a late one to an earlier try included). */
static enum mx_explain_dns_try mx_explain_dns_wait_udp(struct mx_explain_dns *d,
						       struct mx_explain_dns_q *q, unsigned s,
						       uint64_t deadline)
{
	unsigned n = d->o.nservers;
	for (;;) {
		if (q->fd[s] < 0)
			return EXPLAIN_DNS_NEXT; /* the try's server failed */
		int left = mx_explain_ms_left(deadline);
		if (left == 0)
			return EXPLAIN_DNS_NEXT; /* timed out: asked again next round */
		struct pollfd pfd[DNS_CONF_SERVERS_MAX];
		unsigned who[DNS_CONF_SERVERS_MAX], np = 0;
		for (unsigned i = 0; i < n; i++) {
			if (q->fd[i] < 0)
				continue;
			pfd[np] = (struct pollfd){ .fd = q->fd[i], .events = POLLIN };
			who[np++] = i;
		}
		int pr = poll(pfd, np, left);
		if (pr < 0 && errno != EINTR)
			return EXPLAIN_DNS_NEXT;
		for (unsigned k = 0; pr > 0 && k < np; k++) {
			if (!pfd[k].revents)
				continue;
			unsigned j = who[k];
			ssize_t got = recv(q->fd[j], d->pkt, DNS_MESSAGE_MAX + 1, 0);
			if (got < 0) {
				if (errno == ECONNREFUSED) {
					char why[EXPLAIN_DNS_WHY_MAX];
					snprintf(why, sizeof(why), "connection refused by %s",
						 d->server_text[j]);
					mx_explain_dns_server_failed(q, j, why);
				}
				continue; /* EAGAIN, EINTR: nothing after all */
			}
			char perr[128] = "";
			int rc = dns_response_parse(&q->dq, d->pkt, (size_t)got, d->answer, perr,
						    sizeof(perr));
			if (rc == -ENOMSG) {
				d->stats.mismatched++; /* a stray, or a spoofing attempt */
				continue;
			}
			enum mx_explain_dns_try t =
				mx_explain_dns_response(d, q, j, rc, false, perr);
			if (t != EXPLAIN_DNS_NEXT)
				return t;
			/* server j failed: when it was an earlier try's, this try goes on */
		}
	}
}

/* Write all of buf to the stream before deadline: 0 or a negative errno. */
static int mx_explain_dns_write_all(int fd, const uint8_t *buf, size_t len, uint64_t deadline)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		int left = mx_explain_ms_left(deadline);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		if (left == 0 || (poll(&pfd, 1, left) < 0 && errno != EINTR))
			return -ETIMEDOUT;
	}
	return 0;
}

/* Connect fd to server s before deadline: 0 or a negative errno. */
static int mx_explain_dns_connect(int fd, const struct sockaddr_storage *ss, socklen_t sl,
				  uint64_t deadline)
{
	if (connect(fd, (const struct sockaddr *)ss, sl) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	int rc = mx_explain_wait(fd, POLLOUT, deadline);
	if (rc < 0)
		return rc;
	int soerr = 0;
	socklen_t el = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0)
		return -errno;
	return -soerr;
}

/* Read messages from the stream until one answers the question, before deadline: the
 * try's outcome, or -1 with the errno in *err (0: the server closed the stream). */
static int mx_explain_dns_read_tcp(struct mx_explain_dns *d, struct mx_explain_dns_q *q,
				   unsigned s, int fd, uint64_t deadline, int *err)
{
	dns_tcp_reader_init(d->reader);
	for (;;) {
		int rc = mx_explain_wait(fd, POLLIN, deadline);
		if (rc < 0) {
			*err = -rc;
			return -1;
		}
		uint8_t chunk[4096];
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			*err = n < 0 ? errno : 0;
			return -1;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used;
			int f = dns_tcp_reader_feed(d->reader, chunk + off, (size_t)n - off, &used);
			if (f < 0) {
				*err = EBADMSG;
				return -1;
			}
			if (f == 0)
				break;
			off += used;
			size_t mlen;
			const uint8_t *m = dns_tcp_reader_message(d->reader, &mlen);
			char perr[128] = "";
			int p = dns_response_parse(&q->dq, m, mlen, d->answer, perr, sizeof(perr));
			if (p == -ENOMSG) {
				/* not ours on our own connection: read on (the timeout bounds it) */
				d->stats.mismatched++;
				dns_tcp_reader_next(d->reader);
				continue;
			}
			return (int)mx_explain_dns_response(d, q, s, p, true, perr);
		}
	}
}

/* The question again over TCP to server s (its UDP answer was truncated; RFC 7766 5),
 * within one try's timeout. A server that fails over TCP is not asked again. */
static enum mx_explain_dns_try mx_explain_dns_tcp(struct mx_explain_dns *d,
						  struct mx_explain_dns_q *q, unsigned s)
{
	const char *from = d->server_text[s];
	struct sockaddr_storage ss;
	socklen_t sl = mx_explain_dns_sockaddr(&d->o.servers[s], &ss);
	uint64_t deadline = mx_clock_monotonic_ms() + d->o.timeout_ms;
	if (deadline > q->end)
		deadline = q->end;
	char why[EXPLAIN_DNS_WHY_MAX];
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(why, sizeof(why), "TCP to %s: socket: %s", from, strerror(errno));
		mx_explain_dns_server_failed(q, s, why);
		return EXPLAIN_DNS_NEXT;
	}
	d->stats.tcp_connects++;
	const char *what = "connect";
	int rc = mx_explain_dns_connect(fd, &ss, sl, deadline);
	uint8_t msg[DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4 + 11], framed[sizeof(msg) + 2];
	size_t len, flen;
	if (rc == 0 && (dns_query_encode(&q->dq, msg, sizeof(msg), &len) < 0 ||
			dns_tcp_frame(msg, len, framed, sizeof(framed), &flen) < 0))
		rc = -EMSGSIZE;
	if (rc == 0) {
		what = "write";
		rc = mx_explain_dns_write_all(fd, framed, flen, deadline);
	}
	if (rc == 0) {
		int err = 0;
		what = "read";
		int t = mx_explain_dns_read_tcp(d, q, s, fd, deadline, &err);
		if (t >= 0) {
			close(fd);
			return (enum mx_explain_dns_try)t;
		}
		rc = err ? -err : 0;
		if (err == 0)
			what = "closed before the answer";
		else if (err == EBADMSG)
			what = "malformed stream";
	}
	close(fd);
	if (rc == -ETIMEDOUT)
		snprintf(why, sizeof(why), "TCP to %s: timeout", from);
	else if (rc == 0 || rc == -EBADMSG)
		snprintf(why, sizeof(why), "TCP to %s: %s", from, what);
	else
		snprintf(why, sizeof(why), "TCP to %s: %s: %s", from, what, strerror(-rc));
	mx_explain_dns_server_failed(q, s, why);
	return EXPLAIN_DNS_NEXT;
}

/* Random bytes from the kernel: 0 or -EIO. */
static int mx_explain_dns_random(uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

/* Ask the servers (name normalised): the result (one reference), NULL when out of
 * memory. */
static struct dns_result *mx_explain_dns_ask(struct mx_explain_dns *d, enum dns_type type,
					     const char *name)
{
	/* a random ID and one random bit per letter of the name (DNS 0x20) */
	uint8_t rnd[2 + DNS_0X20_RANDOM_BYTES];
	if (mx_explain_dns_random(rnd, sizeof(rnd)) < 0)
		return dns_result_tempfail(type, "no random bytes for the query ID");
	struct mx_explain_dns_q *q = malloc(sizeof(*q));
	if (!q)
		return NULL;
	memset(q, 0, sizeof(*q));
	for (unsigned i = 0; i < DNS_CONF_SERVERS_MAX; i++)
		q->fd[i] = -1;
	uint16_t id = (uint16_t)((rnd[0] << 8) | rnd[1]);
	if (dns_query_init(&q->dq, name, type, id, d->o.edns_udp_size, rnd + 2,
			   DNS_0X20_RANDOM_BYTES) < 0) {
		free(q);
		return dns_result_tempfail(type, "not a valid DNS name");
	}
	q->end = mx_clock_monotonic_ms() + d->o.question_timeout_ms;
	unsigned n = d->o.nservers, total = d->o.attempts * n;
	unsigned start = d->o.rotate ? d->next_start++ % n : 0;
	enum mx_explain_dns_try t = EXPLAIN_DNS_NEXT;
	for (unsigned pos = 0; pos < total && t == EXPLAIN_DNS_NEXT; pos++) {
		unsigned s = (start + pos % n) % n;
		if (q->failed & (1u << s))
			continue;
		if (mx_explain_ms_left(q->end) == 0) {
			snprintf(q->why, sizeof(q->why), "timeout");
			break;
		}
		if (!mx_explain_dns_send(d, q, s))
			continue;
		uint64_t deadline = mx_clock_monotonic_ms() + d->o.timeout_ms;
		t = mx_explain_dns_wait_udp(d, q, s, deadline < q->end ? deadline : q->end);
		if (t == EXPLAIN_DNS_TRUNCATED)
			t = mx_explain_dns_tcp(d, q, q->from);
	}
	for (unsigned i = 0; i < DNS_CONF_SERVERS_MAX; i++)
		if (q->fd[i] >= 0)
			close(q->fd[i]);
	struct dns_result *r;
	if (t == EXPLAIN_DNS_ANSWER)
		r = dns_result_from_answer(d->answer, type, 0);
	else
		r = dns_result_tempfail(type, q->why[0] ? q->why : "timeout");
	free(q);
	return r;
}

/* Keep r for (type, norm) for the rest of the run (when memory allows). */
static void mx_explain_dns_keep(struct mx_explain_dns *d, enum dns_type type,
				const char *norm, struct dns_result *r)
{
	if (d->ncache >= MX_EXPLAIN_DNS_CACHE_MAX) {
		/* past the bound the oldest answer goes (a run asks a few dozen questions);
		 * whoever holds it keeps its own reference */
		free(d->cache[0].name);
		dns_result_put(d->cache[0].result);
		memmove(d->cache, d->cache + 1, (d->ncache - 1) * sizeof(d->cache[0]));
		d->ncache--;
	}
	if (d->ncache == d->capcache) {
		size_t cap = d->capcache ? d->capcache * 2 : 16;
		struct mx_explain_dns_entry *c = realloc(d->cache, cap * sizeof(*c));
		if (!c)
			return; /* not kept: asked again next time */
		d->cache = c;
		d->capcache = cap;
	}
	char *copy = strdup(norm);
	if (!copy)
		return;
	d->cache[d->ncache++] = (struct mx_explain_dns_entry){
		.type = type, .name = copy, .result = dns_result_get(r)
	};
}

struct dns_result *mx_explain_dns_lookup(struct mx_explain_dns *d, enum dns_type type,
					 const char *name, bool *cached)
{
	*cached = false;
	char norm[DNS_HOSTNAME_MAX + 1];
	size_t nlen;
	if (!name || dns_name_normalize(name, strlen(name), norm, sizeof(norm), &nlen) < 0)
		return dns_result_tempfail(type, "not a valid DNS name");
	for (size_t i = 0; i < d->ncache; i++) {
		if (d->cache[i].type == type && strcmp(d->cache[i].name, norm) == 0) {
			*cached = true;
			d->stats.cache_hits++;
			return dns_result_get(d->cache[i].result);
		}
	}
	struct dns_result *r = mx_explain_dns_ask(d, type, norm);
	if (r)
		mx_explain_dns_keep(d, type, norm, r);
	return r;
}

/* ---------------------------------------------------------------------------------------
 * The client's name, as at connect */

/* Ask (type, name) for the peer lookup; the result, NULL when out of memory. */
static const struct dns_result *mx_explain_peer_ask(struct mx_explain_dns *d,
						    struct mx_explain_peer *p, enum dns_type type,
						    const char *name)
{
	struct mx_explain_peer_lookup *l = &p->lookups[p->nlookups];
	l->type = type;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->result = mx_explain_dns_lookup(d, type, name, &l->cached);
	if (!l->result)
		return NULL;
	p->nlookups++;
	return l->result;
}

int mx_explain_peer_lookup(struct mx_explain_dns *d, const struct mx_inet_addr *addr,
			   struct mx_explain_peer *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "unknown");
	snprintf(out->reverse_name, sizeof(out->reverse_name), "unknown");
	struct mx_inet_addr a = mx_inet_unmap(addr);
	char astr[INET6_ADDRSTRLEN], rev[DNS_HOSTNAME_MAX + 1];
	mx_inet_format(&a, astr, sizeof(astr));
	if (dns_name_reverse(&a, rev, sizeof(rev)) < 0) {
		/* the gateway cannot ask either: as a failed lookup */
		out->name_status = out->reverse_name_status = SMTP_POLICY_NAME_TEMP;
		return 0;
	}
	const struct dns_result *r = mx_explain_peer_ask(d, out, DNS_TYPE_PTR, rev);
	if (!r)
		return -ENOMEM;
	const char *name = NULL;
	bool numeric = false;
	if (r->status == DNS_RESULT_OK && r->nrecords > 0)
		name = dns_result_name(r, &r->records[0]);
	if (!name || !dns_result_reverse_name_usable(name, &numeric)) {
		if (name && numeric)
			snprintf(out->warning, sizeof(out->warning), "numeric hostname: %s", name);
		out->name_status = out->reverse_name_status =
			r->status == DNS_RESULT_TEMPFAIL ? SMTP_POLICY_NAME_TEMP
							 : SMTP_POLICY_NAME_PERM;
		return 0;
	}
	snprintf(out->reverse_name, sizeof(out->reverse_name), "%s", name);
	out->reverse_name_status = SMTP_POLICY_NAME_OK;
	r = mx_explain_peer_ask(d, out, a.family == AF_INET6 ? DNS_TYPE_AAAA : DNS_TYPE_A,
				out->reverse_name);
	if (!r)
		return -ENOMEM;
	if (r->status != DNS_RESULT_OK) {
		snprintf(out->warning, sizeof(out->warning),
			 "hostname %s does not resolve to address %s: %s", out->reverse_name,
			 astr, dns_result_gai_text(r->status));
		out->name_status = r->status == DNS_RESULT_TEMPFAIL ? SMTP_POLICY_NAME_TEMP
								    : SMTP_POLICY_NAME_FORGED;
		return 0;
	}
	size_t n = a.family == AF_INET ? 4 : 16;
	for (unsigned i = 0; i < r->nrecords; i++) {
		struct mx_inet_addr ra = mx_inet_unmap(&r->records[i].addr);
		if (ra.family == a.family && memcmp(ra.bytes, a.bytes, n) == 0) {
			out->name_status = SMTP_POLICY_NAME_OK;
			snprintf(out->name, sizeof(out->name), "%s", out->reverse_name);
			return 0;
		}
	}
	snprintf(out->warning, sizeof(out->warning), "hostname %s does not resolve to address %s",
		 out->reverse_name, astr);
	out->name_status = SMTP_POLICY_NAME_FORGED;
	return 0;
}

void mx_explain_peer_clear(struct mx_explain_peer *p)
{
	for (unsigned i = 0; i < p->nlookups; i++)
		dns_result_put(p->lookups[i].result);
	p->nlookups = 0;
}
