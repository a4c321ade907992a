/* The resolver's sockets.
 *
 * UDP: each server has a pool of connected sockets (udp_sockets_per_server). connect(2)
 * binds each to an ephemeral port the kernel picks at random in ip_local_port_range, so
 * an off-path spoofer must guess the port as well as the 16-bit ID and the 0x20 case of
 * the name; a socket is replaced by a fresh one (a new port) after udp_socket_uses
 * queries, and is closed once no try waits on it any more. A connected socket only
 * receives datagrams from its server, and reports ICMP port unreachable as ECONNREFUSED,
 * so a dead local resolver fails over at once instead of after a timeout. Answers are
 * matched by (socket, ID) in the wire map, then by dns_response_parse() against the
 * query (question, case).
 *
 * TCP: one connection per truncated answer (RFC 1035 4.2.2: length-prefixed messages;
 * RFC 7766 6.2.1 allows either side to close), at most max_tcp at once.
 *
 * A closed socket's struct waits in a graveyard until the end of the loop turn, since
 * events already returned by epoll_wait may still point at it. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/svc/svc_resolver_internal.h"

static socklen_t svc_resolver_sockaddr(const struct dns_server *srv,
				       struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (srv->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(srv->port);
		memcpy(&sin->sin_addr, srv->addr.bytes, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(srv->port);
	memcpy(&sin6->sin6_addr, srv->addr.bytes, 16);
	return sizeof(*sin6);
}

/* The wire map's key: the socket and the ID. IDs are ours (random), so the key needs no
 * secret, but the keyed hash costs little and keeps every map the same. */
static uint64_t svc_resolver_wire_hash(const struct svc_resolver *s,
				       const struct svc_resolver_udp *sock, uint16_t id)
{
	struct {
		uintptr_t sock;
		uint16_t id;
	} key;
	memset(&key, 0, sizeof(key));
	key.sock = (uintptr_t)sock;
	key.id = id;
	return svc_resolver_siphash(s->hash_key, &key, sizeof(key));
}

static struct svc_resolver_leg *svc_resolver_wire_find(struct svc_resolver *s,
						       struct svc_resolver_udp *sock, uint16_t id)
{
	uint64_t h = svc_resolver_wire_hash(s, sock, id);
	for (struct svc_resolver_hnode *n = svc_resolver_hmap_first(&s->wire, h); n;
	     n = svc_resolver_hmap_next(n, h)) {
		struct svc_resolver_leg *leg = svc_resolver_container_of(n, struct svc_resolver_leg,
									 node);
		if (leg->sock == sock && leg->q->dq.id == id)
			return leg;
	}
	return NULL;
}

/* ---- UDP ---- */

static void svc_resolver_udp_close(struct svc_resolver *s, struct svc_resolver_udp *sock)
{
	if (sock->fd < 0)
		return;
	if (!sock->retired) {
		unsigned per = s->cfg.p.udp_sockets_per_server;
		for (unsigned k = 0; k < per; k++)
			if (s->pool[sock->server * per + k] == sock)
				s->pool[sock->server * per + k] = NULL;
	}
	close(sock->fd); /* also leaves the epoll set */
	sock->fd = -1;
	s->udp_count--;
	if (sock->all_prev)
		sock->all_prev->all_next = sock->all_next;
	else
		s->udp_all = sock->all_next;
	if (sock->all_next)
		sock->all_next->all_prev = sock->all_prev;
	sock->dead_next = s->udp_dead;
	s->udp_dead = sock;
}

static struct svc_resolver_udp *svc_resolver_udp_open(struct svc_resolver *s, unsigned server)
{
	const struct dns_server *srv = &s->cfg.p.servers[server];
	struct sockaddr_storage ss;
	socklen_t sl = svc_resolver_sockaddr(srv, &ss);
	struct svc_resolver_udp *sock = calloc(1, sizeof(*sock));
	if (!sock)
		return NULL;
	sock->ev = SVC_RESOLVER_EV_UDP;
	sock->server = server;
	sock->fd = socket(srv->addr.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sock->fd < 0) {
		free(sock);
		return NULL;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = sock };
	if (connect(sock->fd, (struct sockaddr *)&ss, sl) < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, sock->fd, &ev) < 0) {
		close(sock->fd);
		free(sock);
		return NULL;
	}
	sock->all_next = s->udp_all;
	if (s->udp_all)
		s->udp_all->all_prev = sock;
	s->udp_all = sock;
	s->udp_count++;
	return sock;
}

struct svc_resolver_udp *svc_resolver_udp_pick(struct svc_resolver *s, unsigned server,
					       const struct svc_resolver_query *q)
{
	unsigned per = s->cfg.p.udp_sockets_per_server;
	for (unsigned k = 0; k < per; k++) {
		unsigned slot = (s->pool_next[server] + k) % per;
		struct svc_resolver_udp **p = &s->pool[server * per + slot];
		if (!*p)
			*p = svc_resolver_udp_open(s, server);
		if (!*p)
			return NULL; /* no socket to be had (EMFILE...): the try is lost */
		const struct svc_resolver_leg *taken = svc_resolver_wire_find(s, *p, q->dq.id);
		if (!taken || taken->q == q) {
			s->pool_next[server] = (slot + 1) % per;
			return *p;
		}
	}
	return NULL; /* the ID is taken on every socket of the pool (rare): the try is lost */
}

void svc_resolver_leg_register(struct svc_resolver *s, struct svc_resolver_leg *leg,
			       struct svc_resolver_udp *sock)
{
	leg->sock = sock;
	svc_resolver_hmap_insert(&s->wire, &leg->node, svc_resolver_wire_hash(s, sock,
									      leg->q->dq.id));
	leg->sock_prev = NULL;
	leg->sock_next = sock->legs;
	if (sock->legs)
		sock->legs->sock_prev = leg;
	sock->legs = leg;
	sock->nlegs++;
	unsigned per = s->cfg.p.udp_sockets_per_server;
	if (++sock->uses >= s->cfg.p.udp_socket_uses && !sock->retired &&
	    s->udp_count < per * s->cfg.p.nservers * SVC_RESOLVER_UDP_RETIRED_MAX) {
		/* out of the pool: the next query gets a fresh socket, a fresh port */
		for (unsigned k = 0; k < per; k++)
			if (s->pool[sock->server * per + k] == sock)
				s->pool[sock->server * per + k] = NULL;
		sock->retired = true;
	}
}

void svc_resolver_leg_unregister(struct svc_resolver *s, struct svc_resolver_leg *leg)
{
	struct svc_resolver_udp *sock = leg->sock;
	if (!sock)
		return;
	svc_resolver_hmap_remove(&s->wire, &leg->node);
	if (leg->sock_prev)
		leg->sock_prev->sock_next = leg->sock_next;
	else
		sock->legs = leg->sock_next;
	if (leg->sock_next)
		leg->sock_next->sock_prev = leg->sock_prev;
	leg->sock = NULL;
	leg->sock_prev = leg->sock_next = NULL;
	if (--sock->nlegs == 0 && sock->retired)
		svc_resolver_udp_close(s, sock);
}

/* ICMP port unreachable from the socket's server: every query asking it there fails over
 * (one at a time: each may end and unregister its legs). */
static void svc_resolver_udp_refused(struct svc_resolver *s, struct svc_resolver_udp *sock)
{
	char why[SVC_RESOLVER_WHY_MAX];
	snprintf(why, sizeof(why), "connection refused by %s", s->server_text[sock->server]);
	uint32_t bit = 1u << sock->server;
	for (;;) {
		struct svc_resolver_leg *l = sock->legs;
		while (l && (l->q->failed & bit))
			l = l->sock_next;
		if (!l)
			break;
		svc_resolver_query_server_failed(s, l->q, sock->server, why);
	}
}

void svc_resolver_udp_readable(struct svc_resolver *s, struct svc_resolver_udp *sock)
{
	for (int i = 0; i < SVC_RESOLVER_RECV_BATCH && sock->fd >= 0; i++) {
		ssize_t n = recv(sock->fd, s->rxbuf, DNS_MESSAGE_MAX + 1, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED) {
				svc_resolver_udp_refused(s, sock);
				continue;
			}
			break; /* EAGAIN: all read */
		}
		if ((size_t)n < DNS_HEADER_LEN) {
			svc_resolver_count(s, mismatched, 1);
			continue;
		}
		uint16_t id = (uint16_t)((s->rxbuf[0] << 8) | s->rxbuf[1]);
		struct svc_resolver_leg *leg = svc_resolver_wire_find(s, sock, id);
		if (!leg) {
			svc_resolver_count(s, mismatched, 1);
			continue;
		}
		svc_resolver_query_udp_answer(s, leg, s->rxbuf, (size_t)n);
	}
}

/* ---- TCP ---- */

int svc_resolver_tcp_open(struct svc_resolver *s, struct svc_resolver_query *q,
			  unsigned server, char *why, size_t whylen)
{
	const struct dns_server *srv = &s->cfg.p.servers[server];
	struct svc_resolver_tcp *t = malloc(sizeof(*t));
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	t->ev = SVC_RESOLVER_EV_TCP;
	t->server = server;
	t->q = q;
	t->connected = false;
	t->out_sent = 0;
	t->dead_next = NULL;
	dns_tcp_reader_init(&t->reader);
	size_t len;
	int rc = dns_query_encode(&q->dq, t->out + 2, sizeof(t->out) - 2, &len);
	if (rc == 0)
		rc = dns_tcp_frame(t->out + 2, len, t->out, sizeof(t->out), &t->out_len);
	if (rc < 0) {
		free(t); /* the buffer fits any query: a bug */
		snprintf(why, whylen, "cannot encode the query");
		return rc;
	}
	struct sockaddr_storage ss;
	socklen_t sl = svc_resolver_sockaddr(srv, &ss);
	t->fd = socket(srv->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->fd < 0) {
		rc = -errno;
		free(t);
		snprintf(why, whylen, "TCP socket: %s", strerror(-rc));
		return rc;
	}
	if (connect(t->fd, (struct sockaddr *)&ss, sl) == 0)
		t->connected = true;
	else if (errno != EINPROGRESS)
		rc = -errno;
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = t };
	if (rc == 0 && epoll_ctl(s->epfd, EPOLL_CTL_ADD, t->fd, &ev) < 0)
		rc = -errno;
	if (rc < 0) {
		close(t->fd);
		free(t);
		snprintf(why, whylen, "TCP to %s: %s", s->server_text[server], strerror(-rc));
		return rc;
	}
	s->tcp_open++;
	q->tcp = t;
	return 0;
}

void svc_resolver_tcp_close(struct svc_resolver *s, struct svc_resolver_tcp *t)
{
	if (!t || t->fd < 0)
		return;
	close(t->fd);
	t->fd = -1;
	s->tcp_open--;
	if (t->q && t->q->tcp == t)
		t->q->tcp = NULL;
	t->q = NULL;
	t->dead_next = s->tcp_dead;
	s->tcp_dead = t;
}

/* The connection failed: the server fails for this query. */
static void svc_resolver_tcp_fail(struct svc_resolver *s, struct svc_resolver_tcp *t,
				  const char *what, int err)
{
	struct svc_resolver_query *q = t->q;
	unsigned server = t->server;
	char why[SVC_RESOLVER_WHY_MAX];
	if (err)
		snprintf(why, sizeof(why), "TCP to %s: %s: %s", s->server_text[server], what,
			 strerror(err));
	else
		snprintf(why, sizeof(why), "TCP to %s: %s", s->server_text[server], what);
	svc_resolver_tcp_close(s, t);
	svc_resolver_query_server_failed(s, q, server, why);
}

/* Read what came; true when the connection is gone (answered or failed). */
static bool svc_resolver_tcp_read(struct svc_resolver *s, struct svc_resolver_tcp *t)
{
	for (;;) {
		ssize_t n = recv(t->fd, s->rxbuf, DNS_MESSAGE_MAX + 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n < 0) {
			svc_resolver_tcp_fail(s, t, "read", errno);
			return true;
		}
		if (n == 0) {
			svc_resolver_tcp_fail(s, t, "closed before the answer", 0);
			return true;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used;
			int rc = dns_tcp_reader_feed(&t->reader, s->rxbuf + off, (size_t)n - off,
						     &used);
			off += used;
			if (rc < 0) {
				svc_resolver_count(s, malformed, 1);
				svc_resolver_tcp_fail(s, t, "malformed stream", 0);
				return true;
			}
			if (rc == 0)
				break;
			size_t len;
			const uint8_t *msg = dns_tcp_reader_message(&t->reader, &len);
			if (svc_resolver_query_tcp_answer(s, t->q, msg, len))
				return true;
			dns_tcp_reader_next(&t->reader);
		}
	}
}

void svc_resolver_tcp_event(struct svc_resolver *s, struct svc_resolver_tcp *t,
			    uint32_t events)
{
	if (t->fd < 0)
		return;
	if (!t->connected) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int e = 0;
		socklen_t el = sizeof(e);
		if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
		if (e) {
			svc_resolver_tcp_fail(s, t, "connect", e);
			return;
		}
		t->connected = true;
	}
	if (t->out_sent < t->out_len) {
		ssize_t n = send(t->fd, t->out + t->out_sent, t->out_len - t->out_sent,
				 MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0) {
			svc_resolver_tcp_fail(s, t, "write", errno);
			return;
		}
		t->out_sent += (size_t)n;
		if (t->out_sent < t->out_len)
			return;
		svc_resolver_count(s, queries, 1);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = t };
		if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, t->fd, &ev) < 0) {
			svc_resolver_tcp_fail(s, t, "epoll", errno);
			return;
		}
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		svc_resolver_tcp_read(s, t);
}

void svc_resolver_net_close_all(struct svc_resolver *s)
{
	while (s->udp_all)
		svc_resolver_udp_close(s, s->udp_all);
	svc_resolver_net_reap(s);
}

void svc_resolver_net_reap(struct svc_resolver *s)
{
	while (s->udp_dead) {
		struct svc_resolver_udp *u = s->udp_dead;
		s->udp_dead = u->dead_next;
		free(u);
	}
	while (s->tcp_dead) {
		struct svc_resolver_tcp *t = s->tcp_dead;
		s->tcp_dead = t->dead_next;
		free(t);
	}
}
