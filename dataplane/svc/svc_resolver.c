/* The resolver service's thread (svc_resolver.h): one epoll loop over the wake eventfd the
 * workers write, the stop eventfd, the UDP sockets and TCP connections
 * (svc_resolver_net.c), with the earliest deadline of the timer heap as its timeout.
 * Requests come in through svc_port_take(): a cache hit is answered at once, a question
 * already on the wire gets one more waiter, anything else becomes a query
 * (svc_resolver_query.c). Answers leave through svc_port_complete(), the workers woken
 * once per loop turn (svc_port_flush()). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "dataplane/svc/svc_resolver_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"

void svc_resolver_answer(struct svc_resolver *s, struct svc_request *r, int status,
			 struct dns_result *result)
{
	if (!result) {
		unsigned t = (unsigned)r->u.dns.type < DNS_TYPE_MAX ? (unsigned)r->u.dns.type : 0;
		result = dns_result_get(s->oom[t]);
		if (status == 0)
			status = -ENOMEM;
	}
	r->status = status;
	r->u.dns.result = result;
	if (result->status == DNS_RESULT_TEMPFAIL)
		svc_resolver_count(s, tempfails, 1);
	svc_port_complete(s->port, r);
}

int svc_resolver_random(struct svc_resolver *s, void *out, size_t n)
{
	if (n > sizeof(s->random))
		return -EINVAL;
	if (s->random_used + n > sizeof(s->random)) {
		size_t got = 0;
		while (got < sizeof(s->random)) {
			ssize_t k = getrandom(s->random + got, sizeof(s->random) - got, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return -EIO;
			got += (size_t)k;
		}
		s->random_used = 0;
	}
	memcpy(out, s->random + s->random_used, n);
	memset(s->random + s->random_used, 0, n); /* drawn bits are not kept around */
	s->random_used += n;
	return 0;
}

/* The key of the cache and of the in-flight map: the type, then the normalised name. */
static uint64_t svc_resolver_key_hash(const struct svc_resolver *s, enum dns_type type,
				      const char *name, size_t len)
{
	uint8_t key[1 + DNS_HOSTNAME_MAX];
	key[0] = (uint8_t)type;
	memcpy(key + 1, name, len);
	return svc_resolver_siphash(s->hash_key, key, 1 + len);
}

/* One request from a worker. */
static void svc_resolver_request(struct svc_resolver *s, struct svc_request *r)
{
	svc_resolver_count(s, requests, 1);
	struct svc_dns *d = &r->u.dns;
	dns_result_put(d->result); /* a reused request: its old answer goes */
	d->result = NULL;
	char name[DNS_HOSTNAME_MAX + 1];
	size_t len;
	assert(r->kind == SVC_DNS); /* the port is the resolver's */
	if ((unsigned)d->type >= DNS_TYPE_MAX ||
	    dns_name_normalize(d->name, strnlen(d->name, sizeof(d->name)), name, sizeof(name),
			       &len) < 0) {
		svc_resolver_answer(s, r, -EINVAL, dns_result_tempfail(
						   (unsigned)d->type < DNS_TYPE_MAX ? d->type
										 : DNS_TYPE_A,
						   "invalid question"));
		return;
	}
	uint64_t hash = svc_resolver_key_hash(s, d->type, name, len);
	struct dns_result *hit = svc_resolver_cache_get(&s->cache, d->type, name, len, hash,
							s->now);
	if (hit) {
		svc_resolver_count(s, hits, 1);
		svc_resolver_answer(s, r, 0, dns_result_get(hit));
		return;
	}
	svc_resolver_count(s, misses, 1);
	if (r->deadline_ms && r->deadline_ms <= s->now) {
		svc_resolver_count(s, expired, 1);
		svc_resolver_answer(s, r, -ETIMEDOUT, dns_result_tempfail(d->type, "timeout"));
		return;
	}
	struct svc_resolver_query *q = svc_resolver_query_find(s, d->type, name, len, hash);
	if (q) {
		if (svc_resolver_query_wait(s, q, r) < 0)
			svc_resolver_answer(s, r, -ENOMEM, NULL);
		else
			svc_resolver_count(s, merges, 1);
		return;
	}
	if (s->inflight.count >= s->cfg.p.max_in_flight) {
		svc_resolver_count(s, busy, 1);
		svc_resolver_answer(s, r, -EAGAIN,
				    dns_result_tempfail(d->type, "too many DNS queries in flight"));
		return;
	}
	q = svc_resolver_query_new(s, d->type, name, len, hash);
	if (!q) {
		svc_resolver_answer(s, r, -ENOMEM, NULL);
		return;
	}
	if (svc_resolver_query_wait(s, q, r) < 0) {
		svc_resolver_answer(s, r, -ENOMEM, NULL);
		/* the query is sent anyway: its answer fills the cache */
	}
	svc_resolver_query_start(s, q);
}

static void svc_resolver_take(struct svc_resolver *s)
{
	uint64_t v;
	ssize_t n = read(svc_port_wake_fd(s->port), &v, sizeof(v)); /* clear, then take all */
	(void)n;
	struct svc_request *r;
	while ((r = svc_port_take(s->port)))
		svc_resolver_request(s, r);
}

static void svc_resolver_gauges(struct svc_resolver *s)
{
	svc_resolver_gauge(s, entries, s->cache.entries);
	svc_resolver_gauge(s, bytes, s->cache.bytes);
	svc_resolver_gauge(s, evictions, s->cache.evictions);
	svc_resolver_gauge(s, in_flight, s->inflight.count);
	svc_resolver_gauge(s, tcp_open, s->tcp_open);
}

static void *svc_resolver_main(void *arg)
{
	struct svc_resolver *s = arg;
	struct epoll_event ev[SVC_RESOLVER_EVENTS];
	bool stop = false;
	s->now = mx_clock_monotonic_ms();
	while (!stop) {
		int timeout = -1;
		struct svc_resolver_timer *t = svc_resolver_heap_min(&s->timers);
		if (t)
			timeout = t->when <= s->now ? 0
				  : t->when - s->now > INT_MAX ? INT_MAX
							       : (int)(t->when - s->now);
		int n = epoll_wait(s->epfd, ev, SVC_RESOLVER_EVENTS, timeout);
		if (n < 0)
			n = 0; /* EINTR */
		s->now = mx_clock_monotonic_ms();
		for (int i = 0; i < n; i++) {
			enum svc_resolver_ev *kind = ev[i].data.ptr;
			struct svc_resolver_udp *u;
			struct svc_resolver_tcp *conn;
			switch (*kind) {
			case SVC_RESOLVER_EV_WAKE:
				svc_resolver_take(s);
				break;
			case SVC_RESOLVER_EV_STOP:
				stop = true;
				break;
			case SVC_RESOLVER_EV_UDP:
				u = svc_resolver_container_of(kind, struct svc_resolver_udp, ev);
				svc_resolver_udp_readable(s, u);
				break;
			case SVC_RESOLVER_EV_TCP:
				conn = svc_resolver_container_of(kind, struct svc_resolver_tcp, ev);
				svc_resolver_tcp_event(s, conn, ev[i].events);
				break;
			}
		}
		while ((t = svc_resolver_heap_min(&s->timers)) && t->when <= s->now) {
			svc_resolver_heap_disarm(&s->timers, t);
			svc_resolver_timer_fire(s, t);
		}
		svc_resolver_query_tcp_slot(s);
		svc_resolver_net_reap(s);
		svc_resolver_gauges(s);
		svc_port_flush(s->port);
	}
	/* the stop: what is queued and what waits are answered -ECANCELED */
	struct svc_request *r;
	while ((r = svc_port_take(s->port)))
		svc_resolver_answer(s, r, -ECANCELED,
				    dns_result_tempfail((unsigned)r->u.dns.type < DNS_TYPE_MAX
								? r->u.dns.type
								: DNS_TYPE_A,
							"resolver stopped"));
	svc_resolver_query_cancel_all(s);
	svc_port_flush(s->port);
	svc_resolver_net_close_all(s);
	svc_resolver_gauges(s);
	return NULL;
}

static void svc_resolver_free(struct svc_resolver *s)
{
	if (!s)
		return;
	svc_resolver_cache_free(&s->cache);
	svc_resolver_hmap_free(&s->inflight);
	svc_resolver_hmap_free(&s->wire);
	svc_resolver_heap_free(&s->timers);
	for (unsigned t = 0; t < DNS_TYPE_MAX; t++)
		dns_result_put(s->oom[t]);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s->pool);
	free(s->pool_next);
	free(s->answer);
	free(s->rxbuf);
	free(s);
}

static void svc_resolver_server_format(const struct dns_server *srv, char *out,
				       size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	mx_inet_format(&srv->addr, a, sizeof(a));
	if (srv->port == 53)
		snprintf(out, cap, "%s", a);
	else if (srv->addr.family == AF_INET6)
		snprintf(out, cap, "[%s]:%u", a, srv->port);
	else
		snprintf(out, cap, "%s:%u", a, srv->port);
}

static int svc_resolver_start(void **impl, struct svc_port *port, const void *params,
			      char *err, size_t errlen)
{
	struct svc_resolver_params defaults;
	const struct svc_resolver_params *p = params;
	if (!p) {
		svc_resolver_params_default(&defaults);
		p = &defaults;
	}
	*impl = NULL;
	struct svc_resolver *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	s->epfd = s->stop_fd = -1;
	s->port = port;
	s->wake_ev = SVC_RESOLVER_EV_WAKE;
	s->stop_ev = SVC_RESOLVER_EV_STOP;
	s->random_used = sizeof(s->random); /* drawn at first use */
	int rc = svc_resolver_config_resolve(p, &s->cfg, err, errlen);
	if (rc < 0) {
		svc_resolver_free(s);
		return rc;
	}
	const struct svc_resolver_params *c = &s->cfg.p;
	for (unsigned i = 0; i < c->nservers; i++)
		svc_resolver_server_format(&c->servers[i], s->server_text[i],
					   sizeof(s->server_text[i]));
	rc = -ENOMEM;
	s->answer = malloc(sizeof(*s->answer));
	s->rxbuf = malloc(DNS_MESSAGE_MAX + 1);
	s->pool = calloc((size_t)c->nservers * c->udp_sockets_per_server, sizeof(*s->pool));
	s->pool_next = calloc(c->nservers, sizeof(*s->pool_next));
	bool ok = s->answer && s->rxbuf && s->pool && s->pool_next;
	for (unsigned t = 0; ok && t < DNS_TYPE_MAX; t++)
		ok = (s->oom[t] = dns_result_tempfail((enum dns_type)t, "out of memory")) != NULL;
	ok = ok && svc_resolver_cache_init(&s->cache, c->cache_max_entries,
					   c->cache_max_bytes) == 0;
	ok = ok && svc_resolver_hmap_init(&s->inflight, 1024, c->max_in_flight) == 0;
	ok = ok && svc_resolver_hmap_init(&s->wire, 1024,
					  (size_t)c->max_in_flight * SVC_RESOLVER_LEGS) == 0;
	if (ok && svc_resolver_random(s, s->hash_key, sizeof(s->hash_key)) < 0) {
		ok = false;
		rc = -EIO;
	}
	if (ok) {
		s->epfd = epoll_create1(EPOLL_CLOEXEC);
		s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		struct epoll_event we = { .events = EPOLLIN, .data.ptr = &s->wake_ev };
		struct epoll_event se = { .events = EPOLLIN, .data.ptr = &s->stop_ev };
		ok = s->epfd >= 0 && s->stop_fd >= 0 &&
		     epoll_ctl(s->epfd, EPOLL_CTL_ADD, svc_port_wake_fd(port), &we) == 0 &&
		     epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_fd, &se) == 0;
		if (!ok)
			rc = -errno;
	}
	if (!ok) {
		svc_resolver_free(s);
		return mx_errf(err, errlen, rc, "cannot set up: %s", strerror(-rc));
	}
	rc = pthread_create(&s->thread, NULL, svc_resolver_main, s);
	if (rc != 0) {
		svc_resolver_free(s);
		return mx_errf(err, errlen, -rc, "cannot start the thread: %s", strerror(rc));
	}
	pthread_setname_np(s->thread, "mx-resolver");
	if (p->handle)
		*p->handle = s;
	char list[DNS_CONF_SERVERS_MAX * (SVC_RESOLVER_SERVER_TEXT + 2)] = "";
	for (unsigned i = 0; i < c->nservers; i++) {
		size_t used = strlen(list);
		snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
			 s->server_text[i]);
	}
	mx_log(MX_LOG_INFO,
	       "resolver: servers %s%s, timeout %u ms, attempts %u%s, EDNS %u, cache %u "
	       "entries",
	       list, s->cfg.from_resolv_conf ? " (from resolv.conf)" : "", c->timeout_ms,
	       c->attempts, c->rotate ? ", rotate" : "", c->edns_udp_size,
	       c->cache_max_entries);
	*impl = s;
	return 0;
}

static void svc_resolver_stop(void *impl)
{
	struct svc_resolver *s = impl;
	eventfd_write(s->stop_fd, 1); /* not write(2): see svc.c */
	pthread_join(s->thread, NULL);
	svc_resolver_free(s);
}

void svc_resolver_statistics(const void *handle, struct svc_resolver_stats *out)
{
	const struct svc_resolver *s = handle;
#define SVC_RESOLVER_STAT_COPY(name)                                                       \
	out->name = atomic_load_explicit(&s->ctr.name, memory_order_relaxed);
	SVC_RESOLVER_STATS(SVC_RESOLVER_STAT_COPY)
#undef SVC_RESOLVER_STAT_COPY
}

int svc_resolver_stats_format(const struct svc_resolver_stats *st, char *buf, size_t cap)
{
	size_t used = 0;
	if (cap)
		buf[0] = '\0';
#define SVC_RESOLVER_STAT_PRINT(name)                                                      \
	do {                                                                               \
		int k = snprintf(buf + (used < cap ? used : cap), used < cap ? cap - used : 0, \
				 "%s" #name "=%" PRIu64, used ? " " : "", st->name);       \
		used += k > 0 ? (size_t)k : 0;                                             \
	} while (0);
	SVC_RESOLVER_STATS(SVC_RESOLVER_STAT_PRINT)
#undef SVC_RESOLVER_STAT_PRINT
	return (int)used;
}

static void svc_resolver_log_statistics(void *impl, const char *when)
{
	struct svc_resolver_stats st;
	char line[1024];
	svc_resolver_statistics(impl, &st);
	svc_resolver_stats_format(&st, line, sizeof(line));
	mx_log(MX_LOG_INFO, "resolver statistics (%s): %s", when, line);
}

const struct svc_ops svc_resolver_ops = {
	.kind = SVC_DNS,
	.start = svc_resolver_start,
	.stop = svc_resolver_stop,
	.log_statistics = svc_resolver_log_statistics,
};
