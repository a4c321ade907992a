/* rts: the scripted DNS server of resolver_test_server.h. */
#include "resolver_test_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RTS_TYPE_A 1
#define RTS_TYPE_NS 2
#define RTS_TYPE_CNAME 5
#define RTS_TYPE_SOA 6
#define RTS_TYPE_PTR 12
#define RTS_TYPE_MX 15
#define RTS_TYPE_TXT 16
#define RTS_TYPE_AAAA 28
#define RTS_TYPE_OPT 41

static uint64_t rts_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void rts_put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void rts_put32(uint8_t *p, uint32_t v)
{
	rts_put16(p, v >> 16);
	rts_put16(p + 2, v & 0xffff);
}

/* A presentation name into wire form; returns its length. */
static size_t rts_name(const char *name, uint8_t *out)
{
	size_t n = 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		out[n++] = (uint8_t)l;
		memcpy(out + n, p, l);
		n += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[n++] = 0;
	return n;
}

/* A parsed query. */
struct rts_query {
	uint16_t id, flags, qtype;
	size_t qend;         /* offset after QTYPE/QCLASS */
	char qname[256];     /* presentation, case as received */
	uint16_t udp_size;   /* 512, or the OPT record's */
};

static int rts_parse(const uint8_t *p, size_t len, struct rts_query *q)
{
	if (len < 12 || (p[4] << 8 | p[5]) != 1)
		return -1;
	q->id = (uint16_t)(p[0] << 8 | p[1]);
	q->flags = (uint16_t)(p[2] << 8 | p[3]);
	size_t off = 12, n = 0;
	while (off < len && p[off] != 0) {
		size_t l = p[off];
		if (l > 63 || off + 1 + l >= len || n + l + 1 >= sizeof(q->qname))
			return -1;
		if (n)
			q->qname[n++] = '.';
		memcpy(q->qname + n, p + off + 1, l);
		n += l;
		off += 1 + l;
	}
	q->qname[n] = '\0';
	if (off + 5 > len)
		return -1;
	q->qtype = (uint16_t)(p[off + 1] << 8 | p[off + 2]);
	q->qend = off + 5;
	q->udp_size = 512;
	unsigned arcount = (unsigned)(p[10] << 8 | p[11]);
	if (arcount && q->qend + 11 <= len && p[q->qend] == 0 &&
	    (p[q->qend + 1] << 8 | p[q->qend + 2]) == RTS_TYPE_OPT) {
		unsigned sz = (unsigned)(p[q->qend + 3] << 8 | p[q->qend + 4]);
		q->udp_size = (uint16_t)(sz < 512 ? 512 : sz);
	}
	return 0;
}

/* One record's RDATA for the value; returns its length. */
static size_t rts_rdata(uint16_t type, const char *v, uint8_t *out)
{
	switch (type) {
	case RTS_TYPE_A:
		inet_pton(AF_INET, v, out);
		return 4;
	case RTS_TYPE_AAAA:
		inet_pton(AF_INET6, v, out);
		return 16;
	case RTS_TYPE_MX: {
		unsigned pref = (unsigned)atoi(v);
		const char *sp = strchr(v, ' ');
		rts_put16(out, pref);
		return 2 + rts_name(sp ? sp + 1 : "", out + 2);
	}
	case RTS_TYPE_TXT: {
		size_t len = strlen(v), n = 0;
		do {
			size_t l = len > 255 ? 255 : len;
			out[n++] = (uint8_t)l;
			memcpy(out + n, v, l);
			n += l;
			v += l;
			len -= l;
		} while (len);
		return n;
	}
	default: /* PTR, NS, CNAME */
		return rts_name(v, out);
	}
}

/* Append a record owned by the question name (a pointer to offset 12). */
static size_t rts_record(uint8_t *out, uint16_t type, uint32_t ttl, const uint8_t *rdata,
			 size_t rdlen)
{
	rts_put16(out, 0xc00c);
	rts_put16(out + 2, type);
	rts_put16(out + 4, 1);
	rts_put32(out + 6, ttl);
	rts_put16(out + 10, (unsigned)rdlen);
	memcpy(out + 12, rdata, rdlen);
	return 12 + rdlen;
}

/* The SOA of the zone "test" (RFC 2308 3: negative answers carry it). */
static size_t rts_soa(uint8_t *out, uint32_t ttl)
{
	size_t n = rts_name("test", out);
	rts_put16(out + n, RTS_TYPE_SOA);
	rts_put16(out + n + 2, 1);
	rts_put32(out + n + 4, ttl);
	uint8_t rd[128];
	size_t r = rts_name("ns.test", rd);
	r += rts_name("hostmaster.test", rd + r);
	rts_put32(rd + r, 1);
	rts_put32(rd + r + 4, 3600);
	rts_put32(rd + r + 8, 600);
	rts_put32(rd + r + 12, 86400);
	rts_put32(rd + r + 16, ttl);
	r += 20;
	rts_put16(out + n + 8, (unsigned)r);
	memcpy(out + n + 10, rd, r);
	return n + 10 + r;
}

/* The response to q (pkt is the query) under `action`; tc_only: header and question with
 * TC. Returns its length (out holds 65535). */
static size_t rts_build(const uint8_t *pkt, const struct rts_query *q, const struct rts_rule *r,
			enum rts_action action, bool tc_only, uint8_t *out)
{
	unsigned rcode = action == RTS_NXDOMAIN ? 3 : action == RTS_SERVFAIL ? 2
						: action == RTS_REFUSED ? 5 : 0;
	unsigned flags = 0x8000 | 0x0400 | 0x0080 | (q->flags & 0x0100) | rcode;
	if (tc_only)
		flags |= 0x0200;
	rts_put16(out, q->id);
	rts_put16(out + 2, flags);
	rts_put16(out + 4, 1);
	memset(out + 6, 0, 6);
	memcpy(out + 12, pkt + 12, q->qend - 12);
	size_t n = q->qend;
	if (tc_only || !r)
		return n;
	unsigned an = 0, ns = 0;
	if (action == RTS_MALFORMED) {
		rts_put16(out + 6, 1);
		rts_put16(out + n, 0xc00c);
		rts_put16(out + n + 2, q->qtype);
		return n + 4; /* class, TTL and RDATA missing */
	}
	if (action == RTS_ANSWER) {
		uint8_t rd[RTS_VALUE_MAX + 16];
		for (unsigned i = 0; i < r->nvalues && n < 60000; i++, an++)
			n += rts_record(out + n, q->qtype, r->ttl, rd,
					rts_rdata(q->qtype, r->values[i], rd));
		for (unsigned i = 0; i < r->generate_a && n < 60000; i++, an++) {
			uint8_t a[4] = { 10, 0, (uint8_t)(i >> 8), (uint8_t)i };
			n += rts_record(out + n, RTS_TYPE_A, r->ttl, a, 4);
		}
	}
	if ((action == RTS_NXDOMAIN || (action == RTS_ANSWER && an == 0)) && !r->no_soa) {
		n += rts_soa(out + n, r->ttl);
		ns = 1;
	}
	rts_put16(out + 6, an);
	rts_put16(out + 8, ns);
	return n;
}

static struct rts_rule *rts_match(struct rts_server *s, const struct rts_query *q)
{
	for (unsigned i = 0; i < s->nrules; i++) {
		struct rts_rule *r = &s->rules[i];
		bool name_ok = strcasecmp(r->name, q->qname) == 0;
		if (!name_ok && r->name[0] == '*') {
			/* "*.zone": any name under zone */
			size_t nl = strlen(q->qname), sl = strlen(r->name) - 1;
			name_ok = nl > sl && strcasecmp(q->qname + nl - sl, r->name + 1) == 0;
		}
		if (name_ok && (!r->qtype || r->qtype == q->qtype))
			return r;
	}
	return NULL;
}

static void rts_send(struct rts_server *s, const uint8_t *pkt, size_t len,
		     const struct sockaddr_storage *peer, socklen_t plen)
{
	ssize_t n = sendto(s->udp_fd, pkt, len, 0, (const struct sockaddr *)peer, plen);
	(void)n;
}

/* Spoofed answers, each an A record 6.6.6.6 that must never be taken: a wrong ID, the
 * question's letters in the opposite case, another name. */
static void rts_spoof(struct rts_server *s, const uint8_t *pkt, const struct rts_query *q,
		      const struct sockaddr_storage *peer, socklen_t plen)
{
	uint8_t out[600];
	uint8_t a[4] = { 6, 6, 6, 6 };
	for (int variant = 0; variant < 3; variant++) {
		struct rts_query v = *q;
		size_t n = rts_build(pkt, q, NULL, RTS_ANSWER, false, out);
		if (variant == 0)
			rts_put16(out, (unsigned)(q->id + 1));
		for (size_t i = 13; variant == 1 && i < q->qend - 4; i++)
			if ((out[i] | 0x20) >= 'a' && (out[i] | 0x20) <= 'z')
				out[i] ^= 0x20;
		if (variant == 2)
			out[13] = out[13] == 'z' || out[13] == 'Z' ? 'y' : 'z';
		rts_put16(out + 6, 1);
		n += rts_record(out + n, v.qtype, 300, a, 4);
		rts_send(s, out, n, peer, plen);
	}
}

static void rts_udp(struct rts_server *s)
{
	static uint8_t pkt[65536], out[65536];
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	ssize_t len = recvfrom(s->udp_fd, pkt, sizeof(pkt), MSG_DONTWAIT,
			       (struct sockaddr *)&peer, &plen);
	struct rts_query q;
	if (len <= 0 || rts_parse(pkt, (size_t)len, &q) < 0)
		return;
	atomic_fetch_add(&s->udp_total, 1);
	pthread_mutex_lock(&s->lock);
	uint16_t port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
	bool seen = false;
	for (unsigned i = 0; i < s->nports; i++)
		seen |= s->ports[i] == port;
	if (!seen && s->nports < 256)
		s->ports[s->nports++] = port;
	struct rts_rule *r = rts_match(s, &q);
	enum rts_action action = r ? r->action : RTS_REFUSED;
	unsigned delay = 0;
	if (r) {
		unsigned nq = atomic_fetch_add(&r->udp_queries, 1);
		snprintf(r->last_qname, sizeof(r->last_qname), "%s", q.qname);
		if (nq < r->drop_first)
			action = RTS_DROP;
		delay = r->delay_ms;
		if (r->spoof_first && action != RTS_DROP)
			rts_spoof(s, pkt, &q, &peer, plen);
	}
	if (action == RTS_DROP) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	size_t n = rts_build(pkt, &q, r, action, action == RTS_TRUNCATE, out);
	if (n > q.udp_size)
		n = rts_build(pkt, &q, r, action, true, out);
	if (delay && s->npending < RTS_PENDING_MAX && n <= sizeof(s->pending[0].pkt)) {
		struct rts_pending *p = &s->pending[s->npending++];
		p->due_ms = rts_now_ms() + delay;
		memcpy(p->pkt, out, n);
		p->len = n;
		p->peer = peer;
		p->peer_len = plen;
	} else if (!delay) {
		rts_send(s, out, n, &peer, plen);
	}
	pthread_mutex_unlock(&s->lock);
}

static bool rts_read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = read(fd, p, n);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

/* One TCP connection, served inline (queries are small and come at once). */
static void rts_tcp(struct rts_server *s)
{
	static uint8_t pkt[65536], out[65538];
	int fd = accept(s->tcp_fd, NULL, NULL);
	if (fd < 0)
		return;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint8_t lb[2];
	while (rts_read_all(fd, lb, 2)) {
		size_t len = (size_t)(lb[0] << 8 | lb[1]);
		struct rts_query q;
		if (!rts_read_all(fd, pkt, len) || rts_parse(pkt, len, &q) < 0)
			break;
		atomic_fetch_add(&s->tcp_total, 1);
		pthread_mutex_lock(&s->lock);
		struct rts_rule *r = rts_match(s, &q);
		enum rts_action action = r ? r->action : RTS_REFUSED;
		if (r) {
			atomic_fetch_add(&r->tcp_queries, 1);
			snprintf(r->last_qname, sizeof(r->last_qname), "%s", q.qname);
			if (action == RTS_TRUNCATE)
				action = r->tcp_action;
		}
		size_t n = action == RTS_DROP ? 0 : rts_build(pkt, &q, r, action, false, out + 2);
		pthread_mutex_unlock(&s->lock);
		if (action == RTS_DROP)
			break;
		rts_put16(out, (unsigned)n);
		if (write(fd, out, n + 2) != (ssize_t)(n + 2))
			break;
	}
	close(fd);
}

static void *rts_main(void *arg)
{
	struct rts_server *s = arg;
	while (!atomic_load(&s->stop)) {
		int timeout = 20;
		uint64_t now = rts_now_ms();
		pthread_mutex_lock(&s->lock);
		for (unsigned i = 0; i < s->npending;) {
			struct rts_pending *p = &s->pending[i];
			if (p->due_ms <= now) {
				rts_send(s, p->pkt, p->len, &p->peer, p->peer_len);
				s->pending[i] = s->pending[--s->npending];
				continue;
			}
			if ((int)(p->due_ms - now) < timeout)
				timeout = (int)(p->due_ms - now);
			i++;
		}
		pthread_mutex_unlock(&s->lock);
		struct pollfd pf[2] = { { .fd = s->udp_fd, .events = POLLIN },
					{ .fd = s->tcp_fd, .events = POLLIN } };
		if (poll(pf, 2, timeout) <= 0)
			continue;
		if (pf[0].revents & POLLIN)
			for (int k = 0; k < 64; k++)
				rts_udp(s);
		if (pf[1].revents & POLLIN)
			rts_tcp(s);
	}
	return NULL;
}

int rts_start(struct rts_server *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->pending = calloc(RTS_PENDING_MAX, sizeof(*s->pending));
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* a port free for both UDP and TCP */
	for (int tries = 0; tries < 50; tries++) {
		s->udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
		sin.sin_port = 0;
		socklen_t sl = sizeof(sin);
		if (bind(s->udp_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    getsockname(s->udp_fd, (struct sockaddr *)&sin, &sl) < 0)
			return -errno;
		s->tcp_fd = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(s->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s->tcp_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    listen(s->tcp_fd, 64) == 0) {
			s->port = ntohs(sin.sin_port);
			int big = 1 << 20;
			setsockopt(s->udp_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
			return -pthread_create(&s->thread, NULL, rts_main, s);
		}
		close(s->udp_fd);
		close(s->tcp_fd);
	}
	return -EADDRINUSE;
}

void rts_stop(struct rts_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->udp_fd);
	close(s->tcp_fd);
	free(s->pending);
	pthread_mutex_destroy(&s->lock);
}

struct rts_rule *rts_add(struct rts_server *s, const char *name, uint16_t qtype,
			 enum rts_action action, uint32_t ttl, const char *value)
{
	pthread_mutex_lock(&s->lock);
	if (s->nrules >= RTS_RULES_MAX) {
		pthread_mutex_unlock(&s->lock);
		fprintf(stderr, "rts: too many rules\n");
		abort();
	}
	struct rts_rule *r = &s->rules[s->nrules++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->qtype = qtype;
	r->action = action;
	r->tcp_action = RTS_ANSWER;
	r->ttl = ttl;
	if (value)
		snprintf(r->values[r->nvalues++], RTS_VALUE_MAX, "%s", value);
	pthread_mutex_unlock(&s->lock);
	return r;
}

void rts_value(struct rts_server *s, struct rts_rule *r, const char *value)
{
	pthread_mutex_lock(&s->lock);
	if (r->nvalues < RTS_VALUES_MAX)
		snprintf(r->values[r->nvalues++], RTS_VALUE_MAX, "%s", value);
	pthread_mutex_unlock(&s->lock);
}

void rts_last_qname(struct rts_server *s, const struct rts_rule *r, char *out, size_t cap)
{
	pthread_mutex_lock(&s->lock);
	snprintf(out, cap, "%s", r->last_qname);
	pthread_mutex_unlock(&s->lock);
}

unsigned rts_source_ports(struct rts_server *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->nports;
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned rts_queries(const struct rts_rule *r)
{
	return atomic_load(&r->udp_queries) + atomic_load(&r->tcp_queries);
}
