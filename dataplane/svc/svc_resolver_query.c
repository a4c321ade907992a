/* One distinct question on the wire (svc_resolver_internal.h: struct svc_resolver_query)
 * and the requests that wait for it.
 *
 * Tries, as the libc stub resolver makes them (resolv.conf(5)): `attempts` rounds, each
 * over the servers in order (from the next one each query with rotate), one datagram and
 * `timeout` per try. The ID and the 0x20 case pattern are drawn once per query, so a late
 * answer to an earlier try (its leg is still registered) is as good as one to the current
 * try. A server that answered SERVFAIL, REFUSED or another error RCODE, sent something
 * malformed, refused the connection, or failed over TCP is not asked again for this query
 * (a recursive resolver's SERVFAIL is its considered answer, and asking it again at once
 * gets the same); a server that timed out is asked again in the next round. A truncated
 * answer (TC) sends the question to the same server over TCP. When no try is left, every
 * waiter gets TEMPFAIL saying the last failure ("SERVFAIL from 127.0.0.1"), or "timeout".
 *
 * Answers OK, NODATA and NXDOMAIN go to the cache for their TTL, clamped to max_ttl (a
 * negative one kept at least negative_ttl_floor). TEMPFAIL is never cached: a timeout says
 * nothing about the name, the expected local resolver already keeps server failures for a
 * while (RFC 2308 7.1; unbound's infrastructure cache) and answers SERVFAIL quickly, and a
 * cached failure would outlast the outage it reports. What protects the servers during an
 * outage is the in-flight merge: identical questions asked meanwhile wait on the one query. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/svc/svc_resolver_internal.h"
#include "mxgate/ctype.h"

const char *svc_resolver_qstate_name(enum svc_resolver_qstate s)
{
	static const char *const names[SVC_RESOLVER_Q_STATE_MAX] = {
		[SVC_RESOLVER_Q_NEW] = "new",
		[SVC_RESOLVER_Q_UDP] = "udp",
		[SVC_RESOLVER_Q_TCP_WAIT] = "tcp-wait",
		[SVC_RESOLVER_Q_TCP] = "tcp",
	};
	return (unsigned)s < SVC_RESOLVER_Q_STATE_MAX ? names[s] : "?";
}

/* The one place a query's state changes. */
static void svc_resolver_query_enter_state(struct svc_resolver_query *q,
					   enum svc_resolver_qstate st)
{
	switch (st) {
	case SVC_RESOLVER_Q_NEW:
		assert(q->state == SVC_RESOLVER_Q_NEW);
		break;
	case SVC_RESOLVER_Q_UDP:
		assert(!q->tcp);
		break;
	case SVC_RESOLVER_Q_TCP_WAIT:
		assert(!q->tcp && !q->tcp_wait_next);
		break;
	case SVC_RESOLVER_Q_TCP:
		break;
	case SVC_RESOLVER_Q_STATE_MAX:
		assert(!"no such state");
		break;
	}
	q->state = st;
}

struct svc_resolver_query *svc_resolver_query_find(struct svc_resolver *s, enum dns_type type,
						   const char *name, size_t len, uint64_t hash)
{
	for (struct svc_resolver_hnode *n = svc_resolver_hmap_first(&s->inflight, hash); n;
	     n = svc_resolver_hmap_next(n, hash)) {
		struct svc_resolver_query *q =
			svc_resolver_container_of(n, struct svc_resolver_query, node);
		if (q->dq.type == type && memcmp(q->dq.name, name, len) == 0 &&
		    q->dq.name[len] == '\0')
			return q;
	}
	return NULL;
}

struct svc_resolver_query *svc_resolver_query_new(struct svc_resolver *s, enum dns_type type,
						  const char *name, size_t len, uint64_t hash)
{
	/* a random ID and one random bit per letter of the name (DNS 0x20) */
	uint8_t rnd[2 + DNS_0X20_RANDOM_BYTES];
	size_t letters = 0;
	for (size_t i = 0; i < len; i++)
		letters += mx_ctype_is_alpha((unsigned char)name[i]);
	size_t nb = (letters + 7) / 8;
	if (nb > DNS_0X20_RANDOM_BYTES)
		nb = DNS_0X20_RANDOM_BYTES;
	if (svc_resolver_random(s, rnd, 2 + nb) < 0)
		return NULL;
	struct svc_resolver_query *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	uint16_t id = (uint16_t)((rnd[0] << 8) | rnd[1]);
	if (dns_query_init(&q->dq, name, type, id, s->cfg.p.edns_udp_size, rnd + 2, nb) < 0) {
		free(q); /* the caller normalised the name: cannot happen */
		return NULL;
	}
	svc_resolver_timer_init(&q->timer, SVC_RESOLVER_TIMER_TRY);
	svc_resolver_query_enter_state(q, SVC_RESOLVER_Q_NEW);
	unsigned n = s->cfg.p.nservers;
	q->start = s->cfg.p.rotate ? s->next_start++ % n : 0;
	svc_resolver_hmap_insert(&s->inflight, &q->node, hash);
	return q;
}

int svc_resolver_query_wait(struct svc_resolver *s, struct svc_resolver_query *q,
			    struct svc_request *r)
{
	struct svc_resolver_waiter *w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	svc_resolver_timer_init(&w->timer, SVC_RESOLVER_TIMER_WAITER);
	if (r->deadline_ms && svc_resolver_heap_arm(&s->timers, &w->timer, r->deadline_ms) < 0) {
		free(w);
		return -ENOMEM;
	}
	w->req = r;
	w->q = q;
	w->prev = NULL;
	w->next = q->waiters;
	if (q->waiters)
		q->waiters->prev = w;
	q->waiters = w;
	q->nwaiters++;
	return 0;
}

static void svc_resolver_waiter_unlink(struct svc_resolver *s, struct svc_resolver_waiter *w)
{
	struct svc_resolver_query *q = w->q;
	if (w->prev)
		w->prev->next = w->next;
	else
		q->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	q->nwaiters--;
	svc_resolver_heap_disarm(&s->timers, &w->timer);
}

static void svc_resolver_tcp_wait_remove(struct svc_resolver *s, struct svc_resolver_query *q)
{
	struct svc_resolver_query **p = &s->tcp_wait_head, *prev = NULL;
	while (*p && *p != q) {
		prev = *p;
		p = &(*p)->tcp_wait_next;
	}
	if (!*p)
		return;
	*p = q->tcp_wait_next;
	if (s->tcp_wait_tail == q)
		s->tcp_wait_tail = prev;
	q->tcp_wait_next = NULL;
}

/* Leave the wire: legs, connection, timer, the in-flight map; then free. */
static void svc_resolver_query_release(struct svc_resolver *s, struct svc_resolver_query *q)
{
	assert(!q->waiters);
	for (unsigned i = 0; i < SVC_RESOLVER_LEGS; i++)
		svc_resolver_leg_unregister(s, &q->legs[i]);
	svc_resolver_tcp_close(s, q->tcp);
	if (q->state == SVC_RESOLVER_Q_TCP_WAIT)
		svc_resolver_tcp_wait_remove(s, q);
	svc_resolver_heap_disarm(&s->timers, &q->timer);
	svc_resolver_hmap_remove(&s->inflight, &q->node);
	free(q);
}

/* The query's answer (its reference; NULL: out of memory): cached when it may be, handed
 * to every waiter, and the query is gone. */
static void svc_resolver_query_finish(struct svc_resolver *s, struct svc_resolver_query *q,
				      struct dns_result *result)
{
	if (result && result->status != DNS_RESULT_TEMPFAIL) {
		uint32_t ttl = result->ttl;
		if (result->status != DNS_RESULT_OK && ttl < s->cfg.p.negative_ttl_floor)
			ttl = s->cfg.p.negative_ttl_floor;
		if (ttl > s->cfg.p.max_ttl)
			ttl = s->cfg.p.max_ttl;
		svc_resolver_cache_put(&s->cache, q->dq.type, q->dq.name, strlen(q->dq.name),
				       q->node.hash, result, ttl, s->now);
	}
	struct svc_resolver_waiter *w;
	while ((w = q->waiters)) {
		svc_resolver_waiter_unlink(s, w);
		svc_resolver_answer(s, w->req, 0, dns_result_get(result));
		free(w);
	}
	dns_result_put(result);
	svc_resolver_query_release(s, q);
}

static void svc_resolver_query_fail(struct svc_resolver *s, struct svc_resolver_query *q)
{
	svc_resolver_query_finish(s, q,
				  dns_result_tempfail(q->dq.type, q->why[0] ? q->why : "timeout"));
}

/* Send the datagram of a try to server. false when the server cannot be asked (refused):
 * the caller goes on to the next try. A datagram that could not leave (no socket, a full
 * buffer) counts as sent and lost: the try's timeout moves on. */
static bool svc_resolver_query_send_udp(struct svc_resolver *s, struct svc_resolver_query *q,
					unsigned server)
{
	q->server = server;
	svc_resolver_query_enter_state(q, SVC_RESOLVER_Q_UDP);
	if (svc_resolver_heap_arm(&s->timers, &q->timer, s->now + s->cfg.p.timeout_ms) < 0) {
		snprintf(q->why, sizeof(q->why), "out of memory");
		q->pos = UINT32_MAX; /* no try can be timed: give up */
		return false;
	}
	struct svc_resolver_udp *sock = svc_resolver_udp_pick(s, server, q);
	if (!sock)
		return true;
	/* an earlier try on the same socket (one socket a server, a later round): its leg
	 * already matches the answer */
	struct svc_resolver_leg *leg = NULL;
	for (unsigned i = 0; i < SVC_RESOLVER_LEGS; i++)
		if (q->legs[i].sock == sock)
			leg = &q->legs[i];
	if (!leg) {
		leg = &q->legs[q->next_leg++ % SVC_RESOLVER_LEGS];
		/* the oldest try's late answer is let go (never on sock: see above) */
		svc_resolver_leg_unregister(s, leg);
		leg->q = q;
		svc_resolver_leg_register(s, leg, sock);
	}
	uint8_t buf[DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4 + 11];
	size_t len;
	int rc = dns_query_encode(&q->dq, buf, sizeof(buf), &len);
	assert(rc == 0);
	(void)rc;
	if (send(sock->fd, buf, len, 0) < 0) {
		if (errno == ECONNREFUSED) {
			snprintf(q->why, sizeof(q->why), "connection refused by %s",
				 s->server_text[server]);
			q->failed |= 1u << server;
			svc_resolver_leg_unregister(s, leg);
			svc_resolver_heap_disarm(&s->timers, &q->timer);
			return false;
		}
		return true; /* EAGAIN, ENOBUFS...: lost, as on the wire */
	}
	svc_resolver_count(s, queries, 1);
	return true;
}

/* The next try, or the end (TEMPFAIL) when none is left. q may be gone after. */
static void svc_resolver_query_next_try(struct svc_resolver *s, struct svc_resolver_query *q)
{
	unsigned n = s->cfg.p.nservers;
	unsigned total = s->cfg.p.attempts * n;
	while (q->pos < total) {
		unsigned server = (q->start + q->pos % n) % n;
		q->pos++;
		if (q->failed & (1u << server))
			continue;
		if (svc_resolver_query_send_udp(s, q, server))
			return;
	}
	svc_resolver_query_fail(s, q);
}

void svc_resolver_query_start(struct svc_resolver *s, struct svc_resolver_query *q)
{
	svc_resolver_query_next_try(s, q);
}

void svc_resolver_query_server_failed(struct svc_resolver *s, struct svc_resolver_query *q,
				      unsigned server, const char *why)
{
	q->failed |= 1u << server;
	if (why)
		snprintf(q->why, sizeof(q->why), "%s", why);
	if (q->server != server || q->state == SVC_RESOLVER_Q_NEW)
		return; /* an earlier try's server: the current try goes on */
	svc_resolver_tcp_close(s, q->tcp);
	if (q->state == SVC_RESOLVER_Q_TCP_WAIT)
		svc_resolver_tcp_wait_remove(s, q);
	svc_resolver_heap_disarm(&s->timers, &q->timer);
	svc_resolver_query_next_try(s, q);
}

/* Ask server again over TCP (its UDP answer was truncated). */
static void svc_resolver_query_go_tcp(struct svc_resolver *s, struct svc_resolver_query *q,
				      unsigned server)
{
	if (q->state == SVC_RESOLVER_Q_TCP || q->state == SVC_RESOLVER_Q_TCP_WAIT)
		return; /* already on its way */
	svc_resolver_count(s, tcp, 1);
	q->server = server;
	if (svc_resolver_heap_arm(&s->timers, &q->timer, s->now + s->cfg.p.timeout_ms) < 0) {
		svc_resolver_query_server_failed(s, q, server, "out of memory");
		return;
	}
	if (s->tcp_open >= s->cfg.p.max_tcp) {
		svc_resolver_query_enter_state(q, SVC_RESOLVER_Q_TCP_WAIT);
		if (s->tcp_wait_tail)
			s->tcp_wait_tail->tcp_wait_next = q;
		else
			s->tcp_wait_head = q;
		s->tcp_wait_tail = q;
		return;
	}
	svc_resolver_query_enter_state(q, SVC_RESOLVER_Q_TCP);
	char why[SVC_RESOLVER_WHY_MAX];
	if (svc_resolver_tcp_open(s, q, server, why, sizeof(why)) < 0)
		svc_resolver_query_server_failed(s, q, server, why);
}

void svc_resolver_query_tcp_slot(struct svc_resolver *s)
{
	while (s->tcp_wait_head && s->tcp_open < s->cfg.p.max_tcp) {
		struct svc_resolver_query *q = s->tcp_wait_head;
		s->tcp_wait_head = q->tcp_wait_next;
		if (!s->tcp_wait_head)
			s->tcp_wait_tail = NULL;
		q->tcp_wait_next = NULL;
		svc_resolver_query_enter_state(q, SVC_RESOLVER_Q_TCP);
		char why[SVC_RESOLVER_WHY_MAX];
		if (svc_resolver_tcp_open(s, q, q->server, why, sizeof(why)) < 0)
			svc_resolver_query_server_failed(s, q, q->server, why);
	}
}

/* A parsed response (rc from dns_response_parse(), not -ENOMSG) from server. */
static void svc_resolver_query_response(struct svc_resolver *s, struct svc_resolver_query *q,
					unsigned server, int rc, bool over_tcp,
					const char *err)
{
	char why[SVC_RESOLVER_WHY_MAX];
	const char *from = s->server_text[server];
	if (rc == -ELOOP) {
		/* the data's fault, not the server's: every server would say the same */
		snprintf(q->why, sizeof(q->why), "CNAME chain too long at %s", from);
		svc_resolver_query_fail(s, q);
		return;
	}
	if (rc < 0) {
		svc_resolver_count(s, malformed, 1);
		snprintf(why, sizeof(why), "malformed answer from %s: %s", from, err);
		svc_resolver_query_server_failed(s, q, server, why);
		return;
	}
	svc_resolver_count(s, answers, 1);
	const struct dns_answer *a = s->answer;
	switch (a->status) {
	case DNS_STATUS_OK:
	case DNS_STATUS_NODATA:
	case DNS_STATUS_NXDOMAIN:
		svc_resolver_query_finish(
			s, q, dns_result_from_answer(a, q->dq.type, s->cfg.p.negative_ttl_floor));
		return;
	case DNS_STATUS_TRUNCATED:
		if (over_tcp) {
			/* TC over TCP means nothing usable will come (RFC 7766 6.2.1.1 hints
			 * at it); that server has failed */
			svc_resolver_count(s, malformed, 1);
			snprintf(why, sizeof(why), "truncated TCP answer from %s", from);
			svc_resolver_query_server_failed(s, q, server, why);
			return;
		}
		svc_resolver_query_go_tcp(s, q, server);
		return;
	case DNS_STATUS_SERVFAIL:
	case DNS_STATUS_REFUSED:
	case DNS_STATUS_RCODE:
	case DNS_STATUS_MAX:
		break;
	}
	svc_resolver_count(s, servfails, 1);
	if (a->status == DNS_STATUS_SERVFAIL)
		snprintf(why, sizeof(why), "SERVFAIL from %s", from);
	else if (a->status == DNS_STATUS_REFUSED)
		snprintf(why, sizeof(why), "REFUSED from %s", from);
	else
		snprintf(why, sizeof(why), "RCODE %u from %s", a->rcode, from);
	svc_resolver_query_server_failed(s, q, server, why);
}

void svc_resolver_query_udp_answer(struct svc_resolver *s, struct svc_resolver_leg *leg,
				   const uint8_t *pkt, size_t len)
{
	struct svc_resolver_query *q = leg->q;
	char err[128] = "";
	int rc = dns_response_parse(&q->dq, pkt, len, s->answer, err, sizeof(err));
	if (rc == -ENOMSG) {
		svc_resolver_count(s, mismatched, 1); /* a spoofing attempt, or a stray */
		return;
	}
	svc_resolver_query_response(s, q, leg->sock->server, rc, false, err);
}

bool svc_resolver_query_tcp_answer(struct svc_resolver *s, struct svc_resolver_query *q,
				   const uint8_t *pkt, size_t len)
{
	char err[128] = "";
	int rc = dns_response_parse(&q->dq, pkt, len, s->answer, err, sizeof(err));
	if (rc == -ENOMSG) {
		/* not ours on our own connection: read on (the try's timer bounds it) */
		svc_resolver_count(s, mismatched, 1);
		return false;
	}
	/* every outcome below ends the connection: the query finishes, or the server
	 * failed and the next try begins */
	svc_resolver_query_response(s, q, q->tcp->server, rc, true, err);
	return true;
}

void svc_resolver_timer_fire(struct svc_resolver *s, struct svc_resolver_timer *t)
{
	if (t->kind == SVC_RESOLVER_TIMER_WAITER) {
		struct svc_resolver_waiter *w =
			svc_resolver_container_of(t, struct svc_resolver_waiter, timer);
		enum dns_type type = w->q->dq.type;
		svc_resolver_waiter_unlink(s, w);
		svc_resolver_count(s, expired, 1);
		/* the query goes on: its answer will fill the cache */
		svc_resolver_answer(s, w->req, -ETIMEDOUT, dns_result_tempfail(type, "timeout"));
		free(w);
		return;
	}
	struct svc_resolver_query *q = svc_resolver_container_of(t, struct svc_resolver_query,
								 timer);
	svc_resolver_count(s, timeouts, 1);
	q->timed_out = true;
	if (q->state == SVC_RESOLVER_Q_TCP) {
		/* it said "use TCP" and TCP did not answer: not asked again */
		q->failed |= 1u << q->server;
		snprintf(q->why, sizeof(q->why), "TCP to %s: timeout", s->server_text[q->server]);
		svc_resolver_tcp_close(s, q->tcp);
	} else if (q->state == SVC_RESOLVER_Q_TCP_WAIT) {
		svc_resolver_tcp_wait_remove(s, q);
	}
	svc_resolver_query_next_try(s, q);
}

void svc_resolver_query_cancel_all(struct svc_resolver *s)
{
	for (size_t b = 0; b <= s->inflight.mask; b++) {
		struct svc_resolver_hnode *n;
		while ((n = s->inflight.buckets[b])) {
			struct svc_resolver_query *q =
				svc_resolver_container_of(n, struct svc_resolver_query, node);
			struct svc_resolver_waiter *w;
			while ((w = q->waiters)) {
				svc_resolver_waiter_unlink(s, w);
				svc_resolver_answer(s, w->req, -ECANCELED,
						    dns_result_tempfail(q->dq.type,
									"resolver stopped"));
				free(w);
			}
			svc_resolver_query_release(s, q);
		}
	}
}
