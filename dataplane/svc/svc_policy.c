/* The policy service thread (svc_policy.h): Postfix's check_policy_service client, as
 * smtpd_check.c, attr_clnt.c and auto_clnt.c do it, for every worker at once and without
 * ever blocking.
 *
 * One thread, one epoll set: the port's wake eventfd (requests from the workers), the
 * lookup hub's eventfd (host names resolved beside the thread) and the non-blocking
 * sockets. Timers (deadlines, per-try timeouts, retry delays, idle and TTL limits) live in
 * a binary heap; epoll_wait() sleeps until the earliest.
 *
 * An endpoint (the endpoint string with max_idle, max_ttl and request_limit: Postfix keeps
 * one client per distinct service specification) has a queue of jobs waiting for a
 * connection, a list of idle connections (most recently used first, so the surplus ages
 * out by max_idle) and at most params.conns_per_endpoint connections. A connection carries
 * one request at a time (the protocol is strictly request, reply).
 *
 * A job is one request: QUEUED (waiting for a connection), ACTIVE (a try on a connection:
 * connect, write, read, within timeout_ms) or DELAYED (the retry delay after a failed
 * try). As attr_clnt_request(): a failed try (connect error, timeout, EOF, malformed
 * reply) closes its connection; the next try, after the retry delay, opens a new one; after
 * try_limit tries the request fails. The request's deadline bounds it all: the service
 * answers by then, with -ETIMEDOUT at worst. As auto_clnt: a connection is closed after
 * max_idle of idleness, once older than max_ttl (never in the middle of a request), after
 * request_limit requests, when the server closes it or sends anything unasked, and on any
 * error.
 *
 * Objects are freed where they cannot be reached by an event still in the current
 * epoll_wait() batch: a closed connection goes to a graveyard freed at the end of the
 * iteration. */
#include "dataplane/svc/svc_policy.h"

#include <assert.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_policy_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_delegation.h"

#define SVC_POLICY_REQUEST_MAX (256u * 1024u) /* an encoded request (values <= 4 KiB each) */
#define SVC_POLICY_RESOLVE_TTL_MS 60000u      /* a host name's addresses are looked up again */
#define SVC_POLICY_WARN_INTERVAL_MS 1000u     /* one warning of a kind per endpoint */
#define SVC_POLICY_EVENTS 64
#define SVC_POLICY_NEVER UINT64_MAX

_Static_assert(SMTP_DELEGATION_ACTION_MAX < SVC_POLICY_ACTION_MAX, "an action always fits");

void svc_policy_params_init(struct svc_policy_params *p)
{
	memset(p, 0, sizeof(*p));
	p->conns_per_endpoint = SVC_POLICY_CONNS_PER_ENDPOINT;
	p->conns_max = SVC_POLICY_CONNS_MAX;
	p->endpoints_max = SVC_POLICY_ENDPOINTS_MAX;
	p->retry_delay_ms = SVC_POLICY_RETRY_DELAY_MS;
	p->smtputf8 = true;
}

/* ---- intrusive doubly linked lists ---- */

struct svc_policy_link {
	struct svc_policy_link *prev, *next;
};

#define SVC_POLICY_ENTRY(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void svc_policy_list_init(struct svc_policy_link *l)
{
	l->prev = l->next = l;
}

static bool svc_policy_list_empty(const struct svc_policy_link *l)
{
	return l->next == l;
}

static void svc_policy_list_insert_after(struct svc_policy_link *at, struct svc_policy_link *e)
{
	e->prev = at;
	e->next = at->next;
	at->next->prev = e;
	at->next = e;
}

/* Remove e from its list, if any (a link that is in no list points at itself). */
static void svc_policy_list_remove(struct svc_policy_link *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

/* ---- a binary min-heap of timers ---- */

enum svc_policy_timer_kind {
	SVC_POLICY_TIMER_JOB,
	SVC_POLICY_TIMER_CONN,
};

struct svc_policy_timer {
	uint64_t at;       /* monotonic ms */
	size_t slot;       /* its index in the heap, SIZE_MAX when not armed */
	enum svc_policy_timer_kind kind;
};

struct svc_policy_heap {
	struct svc_policy_timer **v;
	size_t n, cap;
};

/* Room for `need` timers, so arming one never allocates. */
static bool svc_policy_heap_reserve(struct svc_policy_heap *h, size_t need)
{
	if (need <= h->cap)
		return true;
	size_t cap = h->cap ? h->cap * 2 : 64;
	while (cap < need)
		cap *= 2;
	struct svc_policy_timer **v = realloc(h->v, cap * sizeof(*v));
	if (!v)
		return false;
	h->v = v;
	h->cap = cap;
	return true;
}

static void svc_policy_heap_place(struct svc_policy_heap *h, size_t i, struct svc_policy_timer *t)
{
	h->v[i] = t;
	t->slot = i;
}

static void svc_policy_heap_sift(struct svc_policy_heap *h, size_t i)
{
	struct svc_policy_timer *t = h->v[i];
	while (i > 0 && h->v[(i - 1) / 2]->at > t->at) {
		svc_policy_heap_place(h, i, h->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->at < h->v[c]->at)
			c++;
		if (h->v[c]->at >= t->at)
			break;
		svc_policy_heap_place(h, i, h->v[c]);
		i = c;
	}
	svc_policy_heap_place(h, i, t);
}

static void svc_policy_heap_cancel(struct svc_policy_heap *h, struct svc_policy_timer *t)
{
	if (t->slot == SIZE_MAX)
		return;
	size_t i = t->slot;
	t->slot = SIZE_MAX;
	if (i == --h->n)
		return;
	svc_policy_heap_place(h, i, h->v[h->n]);
	svc_policy_heap_sift(h, i);
}

/* Arm (or move) t to fire at `at`; SVC_POLICY_NEVER disarms it. */
static void svc_policy_heap_set(struct svc_policy_heap *h, struct svc_policy_timer *t, uint64_t at)
{
	if (at == SVC_POLICY_NEVER) {
		svc_policy_heap_cancel(h, t);
		return;
	}
	t->at = at;
	if (t->slot == SIZE_MAX) {
		assert(h->n < h->cap); /* reserved when its owner was created */
		svc_policy_heap_place(h, h->n++, t);
	}
	svc_policy_heap_sift(h, t->slot);
}

static uint64_t svc_policy_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ---- the objects ---- */

/* Why a connection was closed (statistics). */
enum svc_policy_close {
	SVC_POLICY_CLOSE_IDLE,     /* max_idle */
	SVC_POLICY_CLOSE_TTL,      /* max_ttl */
	SVC_POLICY_CLOSE_LIMIT,    /* request_limit */
	SVC_POLICY_CLOSE_PEER,     /* the server closed it, or spoke unasked, while idle */
	SVC_POLICY_CLOSE_ERROR,    /* a failed try, or bytes after a reply */
	SVC_POLICY_CLOSE_EVICTED,  /* its slot was needed (the bounds) */
	SVC_POLICY_CLOSE_STOP,     /* the service stopped, or its request was answered early */
	SVC_POLICY_CLOSE_MAX
};

/* What failed in a try (statistics). */
enum svc_policy_fail {
	SVC_POLICY_FAIL_CONNECT,
	SVC_POLICY_FAIL_TIMEOUT,
	SVC_POLICY_FAIL_CLOSED,     /* EOF, reset, a write or read error */
	SVC_POLICY_FAIL_MALFORMED,  /* the reply reader's errors */
	SVC_POLICY_FAIL_LOOKUP,     /* the host name was not found */
	SVC_POLICY_FAIL_MAX
};

/* Warnings, each limited per endpoint to one per SVC_POLICY_WARN_INTERVAL_MS. */
enum svc_policy_warning {
	SVC_POLICY_WARN_CONNECT,
	SVC_POLICY_WARN_TALK,
	SVC_POLICY_WARN_LOOKUP,
	SVC_POLICY_WARN_UTF8,
	SVC_POLICY_WARN_MAX
};

struct svc_policy_endpoint {
	struct svc_policy_link link;          /* in the service's endpoints */
	char endpoint[SVC_ENDPOINT_MAX];      /* as the requests name it */
	uint32_t max_idle_ms, max_ttl_ms;
	unsigned request_limit;
	struct svc_policy_target target;
	struct svc_policy_addrs found;        /* a name's addresses, when have_addrs */
	bool have_addrs;
	bool resolving;                       /* a lookup is running (it holds a pointer) */
	uint64_t resolved_at;
	unsigned preferred;                   /* the address that last connected */
	struct svc_policy_link queue;         /* QUEUED jobs, oldest first */
	struct svc_policy_link idle;          /* IDLE connections, most recently used first */
	unsigned nconns;                      /* open (or opening) connections */
	unsigned njobs;                       /* jobs of any state for this endpoint */
	struct svc_warn_limit warned[SVC_POLICY_WARN_MAX];
};

struct svc_policy_conn;

struct svc_policy_job {
	struct svc_policy_timer timer;        /* min(deadline, the state's own time) */
	struct svc_policy_link link;          /* in the endpoint's queue when QUEUED */
	struct svc_policy_link all;           /* in the service's jobs */
	enum svc_policy_job_state state;
	struct svc_request *req;
	struct svc_policy_endpoint *ep;
	struct svc_policy_conn *conn;         /* ACTIVE */
	unsigned tries;                       /* tries started */
	bool fresh;                           /* the next try needs a new connection */
	uint64_t try_end, retry_at;
};

struct svc_policy_conn {
	struct svc_policy_timer timer;        /* IDLE: min(max_idle, max_ttl) */
	struct svc_policy_link link;          /* the endpoint's idle list, or the graveyard */
	enum svc_policy_conn_state state;
	int fd;
	uint32_t events;                      /* registered with epoll (0: not registered) */
	struct svc_policy_endpoint *ep;
	struct svc_policy_job *job;           /* CONNECTING, SENDING, READING */
	uint64_t opened_at, idle_since;
	unsigned served;                      /* replies read on it */
	unsigned addr, addrs_tried;           /* CONNECTING: the address being tried */
	int connect_error;                    /* the last address's failure */
	size_t sent;                          /* octets of the request written */
	struct smtp_delegation_reader reader;
};

/* Counters: written by the service thread only, read by log_statistics() from another
 * thread, both through relaxed atomics. */
struct svc_policy_stats {
	uint64_t requests, replies, failed, invalid, cancelled, retries, stale, utf8;
	uint64_t fail[SVC_POLICY_FAIL_MAX];
	uint64_t opened, reused, closed[SVC_POLICY_CLOSE_MAX];
	uint64_t in_flight, queued, conns, idle; /* now */
};

struct svc_policy_service {
	struct svc_port *port;
	struct svc_policy_params params;
	pthread_t thread;
	atomic_bool stop;
	int epfd;
	char wake_tag, hub_tag;               /* epoll data for the two eventfds */
	struct svc_policy_hub *hub;
	struct svc_policy_heap heap;
	size_t objects;                       /* jobs and open connections: heap room */
	struct svc_policy_link endpoints;
	unsigned nendpoints;
	struct svc_policy_link jobs;
	unsigned nconns;
	struct svc_policy_link graveyard;
	uint64_t now;                         /* monotonic ms, read once per iteration */
	struct svc_policy_stats stats;
	char rbuf[4096];
};

#define SVC_POLICY_ADD(p, field, d) \
	__atomic_store_n(&(p)->stats.field, (p)->stats.field + (uint64_t)(d), __ATOMIC_RELAXED)
#define SVC_POLICY_GET(p, field) __atomic_load_n(&(p)->stats.field, __ATOMIC_RELAXED)

const char *svc_policy_job_state_name(enum svc_policy_job_state s)
{
	static const char *const names[SVC_POLICY_JOB_STATE_MAX] = {
		[SVC_POLICY_JOB_QUEUED] = "queued",
		[SVC_POLICY_JOB_ACTIVE] = "active",
		[SVC_POLICY_JOB_DELAYED] = "delayed",
	};
	return (unsigned)s < SVC_POLICY_JOB_STATE_MAX ? names[s] : "?";
}

const char *svc_policy_conn_state_name(enum svc_policy_conn_state s)
{
	static const char *const names[SVC_POLICY_CONN_STATE_MAX] = {
		[SVC_POLICY_CONN_CONNECTING] = "connecting",
		[SVC_POLICY_CONN_SENDING] = "sending",
		[SVC_POLICY_CONN_READING] = "reading",
		[SVC_POLICY_CONN_IDLE] = "idle",
		[SVC_POLICY_CONN_CLOSED] = "closed",
	};
	return (unsigned)s < SVC_POLICY_CONN_STATE_MAX ? names[s] : "?";
}

/* A Postfix-style warning ("warning: connect to 127.0.0.1:10023: Connection refused"),
 * at most one of a kind per endpoint and interval: a dead server under load would
 * otherwise log one line per query. */
static void svc_policy_warn(struct svc_policy_service *p, struct svc_policy_endpoint *ep,
			    enum svc_policy_warning kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void svc_policy_warn(struct svc_policy_service *p, struct svc_policy_endpoint *ep,
			    enum svc_policy_warning kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	svc_warn_limitedv(&ep->warned[kind], p->now, SVC_POLICY_WARN_INTERVAL_MS, fmt, ap);
	va_end(ap);
}

/* ---- connections ---- */

static void svc_policy_try_failed(struct svc_policy_service *p, struct svc_policy_job *j,
				  int error, enum svc_policy_fail kind);
static void svc_policy_answer(struct svc_policy_service *p, struct svc_policy_job *j,
			      int status);

/* Register the events wanted on c's socket (only when they change). 0 or -errno. */
static int svc_policy_conn_watch(struct svc_policy_service *p, struct svc_policy_conn *c,
				 uint32_t events)
{
	if (c->events == events)
		return 0;
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(p->epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
		return -errno;
	c->events = events;
	return 0;
}

/* The idle timer: the earlier of max_idle after the last reply and max_ttl after the
 * connect (0: no such limit, as in auto_clnt). */
static uint64_t svc_policy_conn_expiry(const struct svc_policy_conn *c)
{
	const struct svc_policy_endpoint *ep = c->ep;
	uint64_t at = SVC_POLICY_NEVER;
	if (ep->max_idle_ms)
		at = c->idle_since + ep->max_idle_ms;
	if (ep->max_ttl_ms)
		at = svc_policy_min(at, c->opened_at + ep->max_ttl_ms);
	return at;
}

/* The one place a connection's state changes; why is the reason for CLOSED (for the
 * statistics), ignored otherwise. */
static void svc_policy_conn_enter_state(struct svc_policy_service *p, struct svc_policy_conn *c,
					enum svc_policy_conn_state s, enum svc_policy_close why)
{
	assert(c->state != SVC_POLICY_CONN_CLOSED);
	if (c->state == SVC_POLICY_CONN_IDLE) {
		svc_policy_list_remove(&c->link);
		SVC_POLICY_ADD(p, idle, -1);
	}
	switch (s) {
	case SVC_POLICY_CONN_CONNECTING:
	case SVC_POLICY_CONN_SENDING:
	case SVC_POLICY_CONN_READING:
		/* a busy connection is timed by its job */
		svc_policy_heap_cancel(&p->heap, &c->timer);
		break;
	case SVC_POLICY_CONN_IDLE:
		assert(!c->job);
		c->idle_since = p->now;
		svc_policy_list_insert_after(&c->ep->idle, &c->link);
		SVC_POLICY_ADD(p, idle, 1);
		svc_policy_heap_set(&p->heap, &c->timer, svc_policy_conn_expiry(c));
		break;
	case SVC_POLICY_CONN_CLOSED:
		assert(!c->job);
		svc_policy_heap_cancel(&p->heap, &c->timer);
		if (c->fd >= 0)
			close(c->fd); /* leaves the epoll set with it */
		c->fd = -1;
		c->events = 0;
		c->ep->nconns--;
		p->nconns--;
		p->objects--;
		svc_policy_list_insert_after(&p->graveyard, &c->link);
		SVC_POLICY_ADD(p, conns, -1);
		SVC_POLICY_ADD(p, closed[why], 1);
		break;
	case SVC_POLICY_CONN_STATE_MAX:
		assert(0 && "not a state");
		break;
	}
	c->state = s;
}

static void svc_policy_conn_close(struct svc_policy_service *p, struct svc_policy_conn *c,
				  enum svc_policy_close why)
{
	svc_policy_conn_enter_state(p, c, SVC_POLICY_CONN_CLOSED, why);
}

/* A connection slot for ep (the caller opens it at once), or NULL: out of memory. */
static struct svc_policy_conn *svc_policy_conn_new(struct svc_policy_service *p,
						   struct svc_policy_endpoint *ep)
{
	if (!svc_policy_heap_reserve(&p->heap, p->objects + 1))
		return NULL;
	struct svc_policy_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->timer.slot = SIZE_MAX;
	c->timer.kind = SVC_POLICY_TIMER_CONN;
	svc_policy_list_init(&c->link);
	c->fd = -1;
	c->ep = ep;
	c->opened_at = p->now;
	c->state = SVC_POLICY_CONN_CONNECTING;
	c->connect_error = -ECONNREFUSED;
	ep->nconns++;
	p->nconns++;
	p->objects++;
	SVC_POLICY_ADD(p, conns, 1);
	return c;
}

static const struct svc_policy_addrs *svc_policy_ep_addrs(const struct svc_policy_endpoint *ep)
{
	return ep->target.numeric ? &ep->target.addrs : &ep->found;
}

static void svc_policy_conn_connected(struct svc_policy_service *p, struct svc_policy_conn *c)
{
	c->ep->preferred = c->addr;
	SVC_POLICY_ADD(p, opened, 1);
	svc_policy_conn_enter_state(p, c, SVC_POLICY_CONN_SENDING, SVC_POLICY_CLOSE_MAX);
}

/* Connect to the endpoint's next address not tried yet, starting with the one that last
 * worked (inet_connect() tries each address of a name in turn). 0: connected (SENDING) or
 * connecting; or the negative errno of the last address that failed. */
static int svc_policy_conn_connect(struct svc_policy_service *p, struct svc_policy_conn *c)
{
	const struct svc_policy_addrs *a = svc_policy_ep_addrs(c->ep);
	while (c->addrs_tried < a->n) {
		unsigned i = (c->ep->preferred + c->addrs_tried++) % a->n;
		c->addr = i;
		int family = a->addr[i].ss_family;
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno; /* EMFILE, ENOBUFS: no other address does better */
		if (family != AF_UNIX) {
			int one = 1; /* one request, one reply: never wait for more to send */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		c->fd = fd;
		c->events = 0;
		int rc = connect(fd, (const struct sockaddr *)&a->addr[i], a->len[i]);
		int err = rc == 0 ? 0 : errno;
		if (rc == 0 || err == EINPROGRESS || err == EINTR) {
			uint32_t ev = EPOLLIN | EPOLLRDHUP | (rc == 0 ? 0 : EPOLLOUT);
			int wrc = svc_policy_conn_watch(p, c, ev);
			if (wrc < 0)
				return wrc;
			if (rc == 0)
				svc_policy_conn_connected(p, c);
			return 0;
		}
		/* a UNIX socket whose backlog is full says EAGAIN: the server is not
		 * taking connections, as with a refusal */
		c->connect_error = err == EAGAIN ? -ECONNREFUSED : -err;
		close(fd);
		c->fd = -1;
	}
	return c->connect_error;
}

/* ---- jobs ---- */

/* The one place a job's state changes. */
static void svc_policy_job_enter_state(struct svc_policy_service *p, struct svc_policy_job *j,
				       enum svc_policy_job_state s)
{
	if (j->state == SVC_POLICY_JOB_QUEUED && !svc_policy_list_empty(&j->link)) {
		svc_policy_list_remove(&j->link);
		SVC_POLICY_ADD(p, queued, -1);
	}
	uint64_t at = j->req->deadline_ms;
	switch (s) {
	case SVC_POLICY_JOB_QUEUED:
		/* a retry goes first: it has waited longest */
		if (j->fresh)
			svc_policy_list_insert_after(&j->ep->queue, &j->link);
		else
			svc_policy_list_insert_after(j->ep->queue.prev, &j->link);
		SVC_POLICY_ADD(p, queued, 1);
		break;
	case SVC_POLICY_JOB_ACTIVE:
		assert(j->conn);
		at = svc_policy_min(at, j->try_end);
		break;
	case SVC_POLICY_JOB_DELAYED:
		assert(!j->conn);
		at = svc_policy_min(at, j->retry_at);
		break;
	case SVC_POLICY_JOB_STATE_MAX:
		assert(0 && "not a state");
		break;
	}
	svc_policy_heap_set(&p->heap, &j->timer, at);
	j->state = s;
}

/* Hand a request back to its worker. */
static void svc_policy_finish(struct svc_policy_service *p, struct svc_request *r, int status)
{
	r->status = status;
	if (status != 0) {
		free(r->u.policy.action);
		r->u.policy.action = NULL;
	}
	if (status == 0)
		SVC_POLICY_ADD(p, replies, 1);
	else if (status == -ECANCELED)
		SVC_POLICY_ADD(p, cancelled, 1);
	else
		SVC_POLICY_ADD(p, failed, 1);
	svc_port_complete(p->port, r);
}

/* The job is done: answer it with status and free it (its connection, if it still has
 * one, is closed: the stream would be out of step). */
static void svc_policy_answer(struct svc_policy_service *p, struct svc_policy_job *j, int status)
{
	if (j->conn) {
		struct svc_policy_conn *c = j->conn;
		c->job = NULL;
		j->conn = NULL;
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_STOP);
	}
	if (j->state == SVC_POLICY_JOB_QUEUED && !svc_policy_list_empty(&j->link)) {
		svc_policy_list_remove(&j->link);
		SVC_POLICY_ADD(p, queued, -1);
	}
	svc_policy_heap_cancel(&p->heap, &j->timer);
	svc_policy_list_remove(&j->all);
	j->ep->njobs--;
	p->objects--;
	SVC_POLICY_ADD(p, in_flight, -1);
	svc_policy_finish(p, j->req, status);
	free(j);
}

/* A try failed: close its connection; retry after the delay on a fresh connection, or
 * answer when try_limit tries were made or the next one could not start before the
 * deadline (attr_clnt_request()). */
static void svc_policy_try_failed(struct svc_policy_service *p, struct svc_policy_job *j,
				  int error, enum svc_policy_fail kind)
{
	if (j->conn) {
		struct svc_policy_conn *c = j->conn;
		c->job = NULL;
		j->conn = NULL;
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_ERROR);
	}
	SVC_POLICY_ADD(p, fail[kind], 1);
	unsigned limit = j->req->u.policy.try_limit;
	uint32_t delay = j->req->u.policy.retry_delay_ms;
	uint64_t retry_at = p->now + (delay ? delay : p->params.retry_delay_ms);
	if ((limit && j->tries >= limit) || retry_at >= j->req->deadline_ms) {
		char why[128];
		svc_policy_warn(p, j->ep, SVC_POLICY_WARN_TALK, "problem talking to server %s: %s",
				j->ep->target.name, strerror_r(-error, why, sizeof(why)));
		svc_policy_answer(p, j, error);
		return;
	}
	j->fresh = true;
	j->retry_at = retry_at;
	SVC_POLICY_ADD(p, retries, 1);
	svc_policy_job_enter_state(p, j, SVC_POLICY_JOB_DELAYED);
}

static void svc_policy_conn_send(struct svc_policy_service *p, struct svc_policy_conn *c);

/* Connecting failed on every address: the try failed. */
static void svc_policy_connect_failed(struct svc_policy_service *p, struct svc_policy_conn *c,
				      int error)
{
	char why[128];
	svc_policy_warn(p, c->ep, SVC_POLICY_WARN_CONNECT, "connect to %s: %s",
			c->ep->target.name, strerror_r(-error, why, sizeof(why)));
	svc_policy_try_failed(p, c->job, error, SVC_POLICY_FAIL_CONNECT);
}

/* Start a try of j on c: an idle connection, or a new one not connected yet. */
static void svc_policy_try_start(struct svc_policy_service *p, struct svc_policy_job *j,
				 struct svc_policy_conn *c)
{
	uint32_t timeout = j->req->u.policy.timeout_ms;
	j->tries++;
	j->try_end = timeout ? p->now + timeout : SVC_POLICY_NEVER;
	j->conn = c;
	c->job = j;
	c->sent = 0;
	smtp_delegation_reader_init(&c->reader, 0); /* UTF-8 is checked on the whole action */
	svc_policy_job_enter_state(p, j, SVC_POLICY_JOB_ACTIVE);
	if (c->state == SVC_POLICY_CONN_IDLE) {
		SVC_POLICY_ADD(p, reused, 1);
		svc_policy_conn_enter_state(p, c, SVC_POLICY_CONN_SENDING, SVC_POLICY_CLOSE_MAX);
		svc_policy_conn_send(p, c);
		return;
	}
	int rc = svc_policy_conn_connect(p, c);
	if (rc < 0) {
		svc_policy_connect_failed(p, c, rc);
		return;
	}
	if (c->state == SVC_POLICY_CONN_SENDING)
		svc_policy_conn_send(p, c);
}

/* ---- a try's I/O ---- */

/* The reply is complete: the action goes back, and the connection is kept for the next
 * request unless the server sent more than its reply, or a limit says close. */
static void svc_policy_reply(struct svc_policy_service *p, struct svc_policy_conn *c,
			     bool trailing)
{
	struct svc_policy_job *j = c->job;
	struct svc_policy_endpoint *ep = c->ep;
	struct svc_policy *q = &j->req->u.policy;
	struct mx_span a = smtp_delegation_reader_action(&c->reader);
	/* The reader allows no NUL and at most SMTP_DELEGATION_ACTION_MAX octets. */
	free(q->action);
	q->action = malloc(a.len + 1);
	if (q->action) {
		memcpy(q->action, a.ptr, a.len);
		q->action[a.len] = '\0';
	}
	bool utf8_ok = !q->action || !p->params.smtputf8 || smtp_utf8_valid(q->action, a.len);

	c->served++;
	c->job = NULL;
	j->conn = NULL;
	if (trailing || c->sent < q->request_len)
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_ERROR); /* the stream is out of step */
	else if (ep->request_limit && c->served >= ep->request_limit)
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_LIMIT);
	else if (ep->max_ttl_ms && p->now - c->opened_at >= ep->max_ttl_ms)
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_TTL);
	else
		svc_policy_conn_enter_state(p, c, SVC_POLICY_CONN_IDLE, SVC_POLICY_CLOSE_MAX);

	if (!utf8_ok) {
		/* smtpd_check.c valid_utf8_action(); the reply itself was whole, so Postfix
		 * neither retries nor drops the connection */
		svc_policy_warn(p, ep, SVC_POLICY_WARN_UTF8,
				"malformed UTF-8 in policy server %s response: \"%s\"", ep->endpoint,
				q->action);
		SVC_POLICY_ADD(p, utf8, 1);
		svc_policy_answer(p, j, -EILSEQ);
		return;
	}
	svc_policy_answer(p, j, q->action ? 0 : -ENOMEM);
}

/* The connection failed under a try (EOF, reset, a failed write). When it had served
 * requests before and not one octet of this reply came, the server most likely closed it
 * while this request was on its way (one that closes idle connections, or closes after
 * each reply, as postgrey --exim): the request goes again at once on a fresh connection,
 * without costing a try or the retry delay (Postfix avoids the same race by closing a
 * stream as soon as it turns readable between requests, as this service does too, but
 * cannot for a close that crosses the request). Otherwise the try failed. */
static void svc_policy_conn_lost(struct svc_policy_service *p, struct svc_policy_conn *c,
				 int error)
{
	struct svc_policy_job *j = c->job;
	const struct smtp_delegation_reader *rd = &c->reader;
	bool nothing_read = rd->state == SMTP_DELEGATION_READ_NAME && rd->lines == 0 &&
			    rd->line_len == 0;
	bool stale = c->served > 0 && nothing_read &&
		     (error == -ECONNRESET || error == -EPIPE);
	if (!stale) {
		svc_policy_try_failed(p, j, error, SVC_POLICY_FAIL_CLOSED);
		return;
	}
	c->job = NULL;
	j->conn = NULL;
	svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_PEER);
	j->tries--;
	j->fresh = true;
	SVC_POLICY_ADD(p, stale, 1);
	svc_policy_job_enter_state(p, j, SVC_POLICY_JOB_QUEUED);
}

/* Read what the server sent and feed the reply reader. Bounded: the reader fails a reply
 * over SMTP_DELEGATION_LINES_MAX lines of SMTP_DELEGATION_LINE_MAX octets. */
static void svc_policy_conn_read(struct svc_policy_service *p, struct svc_policy_conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, p->rbuf, sizeof(p->rbuf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* EOF before the reply ended: the server closed the connection */
			svc_policy_conn_lost(p, c, n == 0 ? -ECONNRESET : -errno);
			return;
		}
		size_t used;
		int rc = smtp_delegation_reader_feed(&c->reader, p->rbuf, (size_t)n, &used);
		if (rc == 0)
			continue;
		if (rc < 0) {
			svc_policy_try_failed(p, c->job, rc, SVC_POLICY_FAIL_MALFORMED);
			return;
		}
		svc_policy_reply(p, c, c->reader.trailing > 0);
		return;
	}
}

/* Write what is left of the request; READING once it is all out. */
static void svc_policy_conn_send(struct svc_policy_service *p, struct svc_policy_conn *c)
{
	const struct svc_policy *q = &c->job->req->u.policy;
	while (c->sent < q->request_len) {
		ssize_t n = send(c->fd, q->request + c->sent, q->request_len - c->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = svc_policy_conn_watch(p, c, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
			if (rc < 0)
				svc_policy_try_failed(p, c->job, rc, SVC_POLICY_FAIL_CLOSED);
			return;
		}
		svc_policy_conn_lost(p, c, n < 0 ? -errno : -EPIPE);
		return;
	}
	int rc = svc_policy_conn_watch(p, c, EPOLLIN | EPOLLRDHUP);
	if (rc < 0) {
		svc_policy_try_failed(p, c->job, rc, SVC_POLICY_FAIL_CLOSED);
		return;
	}
	svc_policy_conn_enter_state(p, c, SVC_POLICY_CONN_READING, SVC_POLICY_CLOSE_MAX);
}

static void svc_policy_conn_event(struct svc_policy_service *p, struct svc_policy_conn *c,
				  uint32_t events)
{
	switch (c->state) {
	case SVC_POLICY_CONN_CLOSED:
		return; /* closed earlier in this batch */
	case SVC_POLICY_CONN_IDLE:
		/* auto_clnt: a read event on an idle stream means the server closed it (or
		 * said something unasked: out of step either way) */
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_PEER);
		return;
	case SVC_POLICY_CONN_CONNECTING: {
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr == 0) {
			/* connected; what else came with it (the server's EOF) is seen as
			 * the request is written and the reply read */
			svc_policy_conn_connected(p, c);
			svc_policy_conn_event(p, c, events | EPOLLOUT);
			return;
		}
		c->connect_error = -soerr;
		close(c->fd);
		c->fd = -1;
		c->events = 0;
		int rc = svc_policy_conn_connect(p, c); /* the next address, if any */
		if (rc < 0)
			svc_policy_connect_failed(p, c, rc);
		else if (c->state == SVC_POLICY_CONN_SENDING)
			svc_policy_conn_send(p, c);
		return;
	}
	case SVC_POLICY_CONN_SENDING:
		if (events & EPOLLOUT)
			svc_policy_conn_send(p, c);
		if (c->state == SVC_POLICY_CONN_CLOSED || c->state == SVC_POLICY_CONN_IDLE)
			return;
		/* fall through: an early reply, or the server closed */
		if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
			return;
		svc_policy_conn_read(p, c);
		return;
	case SVC_POLICY_CONN_READING:
		svc_policy_conn_read(p, c);
		return;
	case SVC_POLICY_CONN_STATE_MAX:
		break;
	}
	assert(0 && "not a state");
}

/* ---- endpoints ---- */

/* Every job waiting for ep's addresses fails its try: the name was not found. */
static void svc_policy_lookup_failed(struct svc_policy_service *p, struct svc_policy_endpoint *ep,
				     int error, const char *why)
{
	/* inet_connect(): "host or service %s not found: %s" */
	svc_policy_warn(p, ep, SVC_POLICY_WARN_LOOKUP, "host or service %s not found: %s",
			ep->target.name, why);
	if (ep->have_addrs)
		return; /* keep using the addresses found before */
	while (!svc_policy_list_empty(&ep->queue)) {
		struct svc_policy_job *j = SVC_POLICY_ENTRY(ep->queue.next, struct svc_policy_job,
							   link);
		j->tries++; /* the lookup was this try's connect */
		svc_policy_try_failed(p, j, error, SVC_POLICY_FAIL_LOOKUP);
	}
}

static void svc_policy_lookup_start(struct svc_policy_service *p, struct svc_policy_endpoint *ep)
{
	int rc = svc_policy_hub_lookup(p->hub, ep->target.host, ep->target.port, ep);
	if (rc == 0) {
		ep->resolving = true;
		return;
	}
	ep->resolved_at = p->now;
	char why[128];
	svc_policy_lookup_failed(p, ep, rc, strerror_r(-rc, why, sizeof(why)));
}

static void svc_policy_lookup_done(struct svc_policy_service *p,
				   const struct svc_policy_lookup_result *r)
{
	struct svc_policy_endpoint *ep = r->cookie;
	ep->resolving = false;
	ep->resolved_at = p->now;
	if (r->error == 0) {
		ep->found = r->addrs;
		ep->have_addrs = true;
		ep->preferred = 0;
		return;
	}
	svc_policy_lookup_failed(p, ep, r->error, r->why);
}

/* Whether ep has addresses to connect to; starts a lookup when a name has none or they
 * are older than SVC_POLICY_RESOLVE_TTL_MS (the old ones serve until it ends). */
static bool svc_policy_ep_ready(struct svc_policy_service *p, struct svc_policy_endpoint *ep)
{
	if (ep->target.numeric)
		return true;
	bool stale = ep->have_addrs && p->now - ep->resolved_at >= SVC_POLICY_RESOLVE_TTL_MS;
	if ((!ep->have_addrs || stale) && !ep->resolving)
		svc_policy_lookup_start(p, ep);
	return ep->have_addrs;
}

/* An idle connection of ep that is still good, most recently used first, or NULL. As
 * attr_clnt_request(), one that is readable before a request is sent was closed by the
 * server (or is out of step): it is closed here without costing the request a try. */
static struct svc_policy_conn *svc_policy_idle_take(struct svc_policy_service *p,
						    struct svc_policy_endpoint *ep)
{
	while (!svc_policy_list_empty(&ep->idle)) {
		struct svc_policy_conn *c = SVC_POLICY_ENTRY(ep->idle.next, struct svc_policy_conn,
							    link);
		char b;
		ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return c;
		svc_policy_conn_close(p, c, SVC_POLICY_CLOSE_PEER);
	}
	return NULL;
}

/* Room for one more connection to ep, making it by closing an idle connection when a
 * bound is reached: ep's least recently used one when ep is at its own bound and the job
 * needs a fresh connection, else the least recently used one of any endpoint. */
static bool svc_policy_conn_slot(struct svc_policy_service *p, struct svc_policy_endpoint *ep,
				 bool fresh)
{
	if (ep->nconns >= p->params.conns_per_endpoint) {
		if (!fresh || svc_policy_list_empty(&ep->idle))
			return false;
		svc_policy_conn_close(p, SVC_POLICY_ENTRY(ep->idle.prev, struct svc_policy_conn, link),
				      SVC_POLICY_CLOSE_EVICTED);
		return true;
	}
	if (p->nconns < p->params.conns_max)
		return true;
	struct svc_policy_conn *victim = NULL;
	for (struct svc_policy_link *l = p->endpoints.next; l != &p->endpoints; l = l->next) {
		struct svc_policy_endpoint *e = SVC_POLICY_ENTRY(l, struct svc_policy_endpoint, link);
		if (svc_policy_list_empty(&e->idle))
			continue;
		struct svc_policy_conn *c = SVC_POLICY_ENTRY(e->idle.prev, struct svc_policy_conn,
							    link);
		if (!victim || c->idle_since < victim->idle_since)
			victim = c;
	}
	if (!victim)
		return false;
	svc_policy_conn_close(p, victim, SVC_POLICY_CLOSE_EVICTED);
	return true;
}

/* Start tries for ep's queued jobs while connections can be had. */
static void svc_policy_dispatch(struct svc_policy_service *p, struct svc_policy_endpoint *ep)
{
	while (!svc_policy_list_empty(&ep->queue)) {
		if (!svc_policy_ep_ready(p, ep))
			return;
		struct svc_policy_job *j = SVC_POLICY_ENTRY(ep->queue.next, struct svc_policy_job,
							   link);
		if (atomic_load_explicit(&j->req->cancelled, memory_order_relaxed)) {
			/* its session is gone: not worth a server connection */
			svc_policy_answer(p, j, -ECANCELED);
			continue;
		}
		struct svc_policy_conn *c = j->fresh ? NULL : svc_policy_idle_take(p, ep);
		if (!c) {
			if (!svc_policy_conn_slot(p, ep, j->fresh))
				return;
			c = svc_policy_conn_new(p, ep);
			if (!c) {
				svc_policy_answer(p, j, -ENOMEM);
				continue;
			}
		}
		svc_policy_try_start(p, j, c);
	}
}

static void svc_policy_ep_free(struct svc_policy_service *p, struct svc_policy_endpoint *ep)
{
	assert(ep->njobs == 0 && ep->nconns == 0 && !ep->resolving);
	svc_policy_list_remove(&ep->link);
	p->nendpoints--;
	free(ep);
}

/* Dispatch every endpoint with waiting jobs; free the endpoints nothing uses any more
 * (no job, no connection, no lookup running). */
static void svc_policy_dispatch_all(struct svc_policy_service *p)
{
	struct svc_policy_link *l = p->endpoints.next;
	while (l != &p->endpoints) {
		struct svc_policy_endpoint *ep = SVC_POLICY_ENTRY(l, struct svc_policy_endpoint,
								 link);
		l = l->next;
		if (!svc_policy_list_empty(&ep->queue))
			svc_policy_dispatch(p, ep);
		if (ep->njobs == 0 && ep->nconns == 0 && !ep->resolving)
			svc_policy_ep_free(p, ep);
	}
}

/* The endpoint a request names, with its connection limits; created on first use. */
static struct svc_policy_endpoint *svc_policy_ep_get(struct svc_policy_service *p,
						     const struct svc_policy *q, int *error)
{
	for (struct svc_policy_link *l = p->endpoints.next; l != &p->endpoints; l = l->next) {
		struct svc_policy_endpoint *ep = SVC_POLICY_ENTRY(l, struct svc_policy_endpoint,
								 link);
		if (ep->max_idle_ms == q->max_idle_ms && ep->max_ttl_ms == q->max_ttl_ms &&
		    ep->request_limit == q->request_limit && strcmp(ep->endpoint, q->endpoint) == 0)
			return ep;
	}
	if (p->nendpoints >= p->params.endpoints_max) {
		*error = -EMFILE;
		return NULL;
	}
	struct svc_policy_endpoint *ep = calloc(1, sizeof(*ep));
	if (!ep) {
		*error = -ENOMEM;
		return NULL;
	}
	char err[256];
	int rc = svc_policy_target_parse(q->endpoint, &ep->target, err, sizeof(err));
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "policy service: %s", err);
		free(ep);
		*error = -EINVAL;
		return NULL;
	}
	snprintf(ep->endpoint, sizeof(ep->endpoint), "%s", q->endpoint);
	ep->max_idle_ms = q->max_idle_ms;
	ep->max_ttl_ms = q->max_ttl_ms;
	ep->request_limit = q->request_limit;
	svc_policy_list_init(&ep->queue);
	svc_policy_list_init(&ep->idle);
	svc_policy_list_insert_after(p->endpoints.prev, &ep->link);
	p->nendpoints++;
	return ep;
}

/* ---- requests in, timers, the loop ---- */

static bool svc_policy_request_valid(const struct svc_policy *q)
{
	if (!memchr(q->endpoint, '\0', sizeof(q->endpoint)))
		return false;
	/* whole name=value lines and the one empty line that ends them: anything else would
	 * put the stream out of step with the server */
	if (!q->request || q->request_len < 2 || q->request_len > SVC_POLICY_REQUEST_MAX)
		return false;
	const char *end = memmem(q->request, q->request_len, "\n\n", 2);
	return end && (size_t)(end - q->request) == q->request_len - 2 && q->request[0] != '\n';
}

static void svc_policy_accept(struct svc_policy_service *p, struct svc_request *r)
{
	assert(r->kind == SVC_POLICY);
	struct svc_policy *q = &r->u.policy;
	free(q->action);
	q->action = NULL;
	SVC_POLICY_ADD(p, requests, 1);
	if (!svc_policy_request_valid(q)) {
		SVC_POLICY_ADD(p, invalid, 1);
		svc_policy_finish(p, r, -EINVAL);
		return;
	}
	if (r->deadline_ms <= p->now) {
		svc_policy_finish(p, r, -ETIMEDOUT);
		return;
	}
	int error = 0;
	struct svc_policy_endpoint *ep = svc_policy_ep_get(p, q, &error);
	if (!ep) {
		if (error == -EINVAL)
			SVC_POLICY_ADD(p, invalid, 1);
		svc_policy_finish(p, r, error);
		return;
	}
	struct svc_policy_job *j = NULL;
	if (svc_policy_heap_reserve(&p->heap, p->objects + 1))
		j = calloc(1, sizeof(*j));
	if (!j) {
		svc_policy_finish(p, r, -ENOMEM);
		return;
	}
	j->timer.slot = SIZE_MAX;
	j->timer.kind = SVC_POLICY_TIMER_JOB;
	svc_policy_list_init(&j->link);
	j->req = r;
	j->ep = ep;
	ep->njobs++;
	p->objects++;
	svc_policy_list_insert_after(p->jobs.prev, &j->all);
	SVC_POLICY_ADD(p, in_flight, 1);
	svc_policy_job_enter_state(p, j, SVC_POLICY_JOB_QUEUED);
}

static void svc_policy_job_timer(struct svc_policy_service *p, struct svc_policy_job *j)
{
	if (p->now >= j->req->deadline_ms) {
		char why[128];
		if (j->state == SVC_POLICY_JOB_ACTIVE)
			SVC_POLICY_ADD(p, fail[SVC_POLICY_FAIL_TIMEOUT], 1);
		svc_policy_warn(p, j->ep, SVC_POLICY_WARN_TALK, "problem talking to server %s: %s",
				j->ep->target.name, strerror_r(ETIMEDOUT, why, sizeof(why)));
		svc_policy_answer(p, j, -ETIMEDOUT);
		return;
	}
	switch (j->state) {
	case SVC_POLICY_JOB_ACTIVE:
		svc_policy_try_failed(p, j, -ETIMEDOUT, SVC_POLICY_FAIL_TIMEOUT);
		return;
	case SVC_POLICY_JOB_DELAYED:
		svc_policy_job_enter_state(p, j, SVC_POLICY_JOB_QUEUED);
		return;
	case SVC_POLICY_JOB_QUEUED:
	case SVC_POLICY_JOB_STATE_MAX:
		break;
	}
	/* a queued job's timer is its deadline */
	assert(0 && "job timer in a state without one");
}

static void svc_policy_conn_timer(struct svc_policy_service *p, struct svc_policy_conn *c)
{
	assert(c->state == SVC_POLICY_CONN_IDLE);
	bool ttl = c->ep->max_ttl_ms && p->now - c->opened_at >= c->ep->max_ttl_ms;
	svc_policy_conn_close(p, c, ttl ? SVC_POLICY_CLOSE_TTL : SVC_POLICY_CLOSE_IDLE);
}

static void svc_policy_expire(struct svc_policy_service *p)
{
	while (p->heap.n > 0 && p->heap.v[0]->at <= p->now) {
		struct svc_policy_timer *t = p->heap.v[0];
		svc_policy_heap_cancel(&p->heap, t);
		if (t->kind == SVC_POLICY_TIMER_JOB)
			svc_policy_job_timer(p, SVC_POLICY_ENTRY(t, struct svc_policy_job, timer));
		else
			svc_policy_conn_timer(p, SVC_POLICY_ENTRY(t, struct svc_policy_conn, timer));
	}
}

static int svc_policy_wait_ms(const struct svc_policy_service *p)
{
	if (p->heap.n == 0)
		return -1;
	uint64_t at = p->heap.v[0]->at, now = mx_clock_monotonic_ms();
	if (at <= now)
		return 0;
	return at - now > INT_MAX ? INT_MAX : (int)(at - now);
}

static void svc_policy_bury(struct svc_policy_service *p)
{
	while (!svc_policy_list_empty(&p->graveyard)) {
		struct svc_policy_conn *c = SVC_POLICY_ENTRY(p->graveyard.next,
							    struct svc_policy_conn, link);
		svc_policy_list_remove(&c->link);
		free(c);
	}
}

/* Stop: every request still queued or in progress is answered -ECANCELED. */
static void svc_policy_shutdown(struct svc_policy_service *p)
{
	p->now = mx_clock_monotonic_ms();
	struct svc_request *r;
	while ((r = svc_port_take(p->port))) {
		SVC_POLICY_ADD(p, requests, 1);
		svc_policy_finish(p, r, -ECANCELED);
	}
	while (!svc_policy_list_empty(&p->jobs))
		svc_policy_answer(p, SVC_POLICY_ENTRY(p->jobs.next, struct svc_policy_job, all),
				  -ECANCELED);
	while (!svc_policy_list_empty(&p->endpoints)) {
		struct svc_policy_endpoint *ep = SVC_POLICY_ENTRY(p->endpoints.next,
								 struct svc_policy_endpoint, link);
		while (!svc_policy_list_empty(&ep->idle))
			svc_policy_conn_close(p, SVC_POLICY_ENTRY(ep->idle.next,
								  struct svc_policy_conn, link),
					      SVC_POLICY_CLOSE_STOP);
		/* a lookup still running holds ep as its cookie: its result is dropped with
		 * the hub, never looked at */
		ep->resolving = false;
		svc_policy_ep_free(p, ep);
	}
	svc_policy_bury(p);
	svc_port_flush(p->port);
}

static void *svc_policy_main(void *arg)
{
	struct svc_policy_service *p = arg;
	struct epoll_event ev[SVC_POLICY_EVENTS];
	while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
		int n = epoll_wait(p->epfd, ev, SVC_POLICY_EVENTS, svc_policy_wait_ms(p));
		p->now = mx_clock_monotonic_ms();
		for (int i = 0; i < n; i++) {
			void *tag = ev[i].data.ptr;
			if (tag == &p->wake_tag) {
				uint64_t v;
				ssize_t k = read(svc_port_wake_fd(p->port), &v, sizeof(v));
				(void)k;
				struct svc_request *r;
				while ((r = svc_port_take(p->port)))
					svc_policy_accept(p, r);
			} else if (tag == &p->hub_tag) {
				struct svc_policy_lookup_result res;
				while (svc_policy_hub_next(p->hub, &res))
					svc_policy_lookup_done(p, &res);
			} else {
				svc_policy_conn_event(p, tag, ev[i].events);
			}
		}
		svc_policy_expire(p);
		svc_policy_dispatch_all(p);
		svc_policy_bury(p);
		svc_port_flush(p->port);
	}
	svc_policy_shutdown(p);
	return NULL;
}

/* ---- svc_ops ---- */

static void svc_policy_free(struct svc_policy_service *p)
{
	if (p->epfd >= 0)
		close(p->epfd);
	svc_policy_hub_release(p->hub);
	free(p->heap.v);
	free(p);
}

static int svc_policy_start(void **impl, struct svc_port *port, const void *params, char *err,
			    size_t errlen)
{
	struct svc_policy_params defaults;
	const struct svc_policy_params *pp = params;
	if (!pp) {
		svc_policy_params_init(&defaults);
		pp = &defaults;
	}
	if (!pp->conns_per_endpoint || !pp->conns_max || !pp->endpoints_max ||
	    !pp->retry_delay_ms)
		return mx_errf(err, errlen, -EINVAL,
			       "connection bounds, endpoints and the retry delay must be > 0");
	struct svc_policy_service *p = calloc(1, sizeof(*p));
	if (!p)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	p->port = port;
	p->params = *pp;
	svc_policy_list_init(&p->endpoints);
	svc_policy_list_init(&p->jobs);
	svc_policy_list_init(&p->graveyard);
	atomic_init(&p->stop, false);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		int rc = -errno;
		svc_policy_free(p);
		return mx_errf(err, errlen, rc, "epoll_create1: %s", strerror(-rc));
	}
	int rc = svc_policy_hub_new(&p->hub);
	if (rc < 0) {
		svc_policy_free(p);
		return mx_errf(err, errlen, rc, "lookup eventfd: %s", strerror(-rc));
	}
	struct epoll_event wake = { .events = EPOLLIN, .data.ptr = &p->wake_tag };
	struct epoll_event hub = { .events = EPOLLIN, .data.ptr = &p->hub_tag };
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, svc_port_wake_fd(port), &wake) < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, svc_policy_hub_fd(p->hub), &hub) < 0) {
		rc = -errno;
		svc_policy_free(p);
		return mx_errf(err, errlen, rc, "epoll_ctl: %s", strerror(-rc));
	}
	p->now = mx_clock_monotonic_ms();
	if ((rc = svc_thread_start(&p->thread, svc_policy_main, p, "mx-policy", err, errlen)) < 0) {
		svc_policy_free(p);
		return rc;
	}
	*impl = p;
	return 0;
}

static void svc_policy_stop(void *impl)
{
	struct svc_policy_service *p = impl;
	svc_thread_stop(p->thread, &p->stop, p->port);
	svc_policy_free(p);
}

static void svc_policy_log_statistics(void *impl, const char *when)
{
	struct svc_policy_service *p = impl;
	mx_log(MX_LOG_INFO,
	       "policy statistics (%s): requests=%" PRIu64 " replies=%" PRIu64 " failed=%" PRIu64
	       " invalid=%" PRIu64 " cancelled=%" PRIu64 " retries=%" PRIu64
	       " fail_connect=%" PRIu64 " fail_timeout=%" PRIu64 " fail_closed=%" PRIu64
	       " fail_malformed=%" PRIu64 " fail_lookup=%" PRIu64 " bad_utf8=%" PRIu64
	       " stale_resent=%" PRIu64
	       " conns_opened=%" PRIu64 " conns_reused=%" PRIu64 " conns_closed_idle=%" PRIu64
	       " conns_closed_ttl=%" PRIu64 " conns_closed_limit=%" PRIu64
	       " conns_closed_peer=%" PRIu64 " conns_closed_error=%" PRIu64
	       " conns_closed_evicted=%" PRIu64 " conns_closed_stop=%" PRIu64
	       " conns_open=%" PRIu64 " conns_idle=%" PRIu64 " in_flight=%" PRIu64
	       " queued=%" PRIu64,
	       when, SVC_POLICY_GET(p, requests), SVC_POLICY_GET(p, replies),
	       SVC_POLICY_GET(p, failed), SVC_POLICY_GET(p, invalid), SVC_POLICY_GET(p, cancelled),
	       SVC_POLICY_GET(p, retries), SVC_POLICY_GET(p, fail[SVC_POLICY_FAIL_CONNECT]),
	       SVC_POLICY_GET(p, fail[SVC_POLICY_FAIL_TIMEOUT]),
	       SVC_POLICY_GET(p, fail[SVC_POLICY_FAIL_CLOSED]),
	       SVC_POLICY_GET(p, fail[SVC_POLICY_FAIL_MALFORMED]),
	       SVC_POLICY_GET(p, fail[SVC_POLICY_FAIL_LOOKUP]), SVC_POLICY_GET(p, utf8),
	       SVC_POLICY_GET(p, stale),
	       SVC_POLICY_GET(p, opened), SVC_POLICY_GET(p, reused),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_IDLE]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_TTL]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_LIMIT]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_PEER]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_ERROR]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_EVICTED]),
	       SVC_POLICY_GET(p, closed[SVC_POLICY_CLOSE_STOP]), SVC_POLICY_GET(p, conns),
	       SVC_POLICY_GET(p, idle), SVC_POLICY_GET(p, in_flight), SVC_POLICY_GET(p, queued));
}

const struct svc_ops svc_policy_ops = {
	.kind = SVC_POLICY,
	.start = svc_policy_start,
	.stop = svc_policy_stop,
	.log_statistics = svc_policy_log_statistics,
};
