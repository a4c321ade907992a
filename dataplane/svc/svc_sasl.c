/* The SASL service (svc_sasl.h): one thread, one persistent connection per Dovecot auth
 * endpoint, every worker's SMTP AUTH exchanges multiplexed over it by request id
 * (smtp/smtp_dovecot_auth.h drives the protocol; this file does the sockets, the timers
 * and the bookkeeping).
 *
 * An exchange is named to the worker by a 64-bit number: the connection's generation
 * (a service-wide counter bumped at every connect) in the high half, the codec's request
 * id in the low half. A CONT whose generation is not the endpoint's current connection
 * belongs to a connection that dropped: TEMPFAIL "Connection lost to authentication
 * server", as Postfix's smtpd says when its stream to Dovecot broke.
 *
 * Per connection a table indexed by the codec's slot (the id's low bits) holds the request
 * waiting for Dovecot's reply (with its deadline) or the time the exchange waits for the
 * client's CONT until. Timers are found by a scan of the tables, done only when the
 * earliest deadline seen so far has come (scan_at), so an idle service sleeps. */
#include "dataplane/svc/svc_sasl.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_policy_internal.h"
#include "dataplane/svc/svc_sasl_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"

/* Exchanges in flight per connection (a power of two: the codec's id carries the slot in
 * its low bits). Dovecot itself has no such limit; a full table answers TEMPFAIL. */
#define SVC_SASL_EXCHANGES_MAX 4096u
/* Unsent bytes a connection may hold: Dovecot not reading this much is hung; the
 * connection is dropped (and reconnected). */
#define SVC_SASL_OUT_MAX (1u << 20)
#define SVC_SASL_READ_CHUNK 16384
/* Reconnect back-off: the first try right away (a restart of Dovecot), then doubling. */
#define SVC_SASL_BACKOFF_MIN_MS 250u
#define SVC_SASL_BACKOFF_MAX_MS 30000u
/* A connection that stayed ready this long resets the back-off. */
#define SVC_SASL_STABLE_MS 10000u
/* Warnings per endpoint and kind: at most one per interval (the rest counted). */
#define SVC_SASL_WARN_INTERVAL_MS 60000u
/* A host name's addresses are looked up again after this. */
#define SVC_SASL_RESOLVE_TTL_MS 60000u
#define SVC_SASL_TIMEOUT_MS 30000u
#define SVC_SASL_CLIENT_WAIT_MS 600000u
#define SVC_SASL_EVENTS 64
#define SVC_SASL_NEVER UINT64_MAX
#define SVC_SASL_BUSY_REASON "Too many authentication requests in progress"
#define SVC_SASL_LIMIT_REASON "SASL response limit exceeded"

enum svc_sasl_conn_state {
	SVC_SASL_CONN_DOWN,       /* no socket: waiting for retry_at */
	SVC_SASL_CONN_RESOLVING,  /* a host name lookup runs (the hub holds the conn) */
	SVC_SASL_CONN_CONNECTING, /* non-blocking connect in progress */
	SVC_SASL_CONN_HANDSHAKE,  /* connected, VERSION/CPID sent, waiting for DONE */
	SVC_SASL_CONN_READY,      /* requests may be sent */
	SVC_SASL_CONN_STATE_MAX
};

enum svc_sasl_warning {
	SVC_SASL_WARN_CONNECT,  /* connect or lookup failed */
	SVC_SASL_WARN_LOST,     /* a connection dropped, timed out or spoke nonsense */
	SVC_SASL_WARN_MAX
};

struct svc_sasl_xchg {
	struct svc_request *req; /* waiting for Dovecot's reply (START or CONT) */
	uint64_t deadline;       /* of req */
	uint64_t client_until;   /* no req: the exchange waits for the client's CONT until */
	uint32_t id;             /* the codec's id while the exchange lives */
	bool live;
};

struct svc_sasl_conn {
	unsigned slot;                       /* in the directory */
	char endpoint[SVC_ENDPOINT_MAX];
	struct svc_policy_target target;
	struct svc_policy_addrs found;       /* a name's addresses, when have_found */
	bool have_found;
	uint64_t resolved_at;
	unsigned addr_next;                  /* the next address to try in this attempt */
	enum svc_sasl_conn_state state;
	int fd;
	uint32_t events;
	struct smtp_dovecot *codec;
	uint64_t gen;                        /* of the current connection */
	char *out;                           /* unsent bytes out[out_off .. out_len) */
	size_t out_off, out_len, out_cap;
	uint64_t retry_at, deadline;         /* DOWN: next try; CONNECTING/HANDSHAKE: give up */
	uint64_t ready_at;
	uint32_t backoff_ms;
	unsigned failures;                   /* connect attempts failed since the last ready */
	bool mech_dirty;                     /* the mechanisms are still to be published */
	int last_error;
	struct svc_warn_limit warned[SVC_SASL_WARN_MAX];
	struct svc_sasl_xchg *x;             /* [SVC_SASL_EXCHANGES_MAX] */
	size_t nlive;
};

struct svc_sasl_stats {
	atomic_uint_fast64_t requests, ok, fail, tempfail, bad_mech, cont, cancels, timeouts,
		no_server, conn_lost, connects, drops;
};

#define SVC_SASL_ADD(s, f) atomic_fetch_add_explicit(&(s)->stats.f, 1, memory_order_relaxed)
#define SVC_SASL_GET(s, f) \
	((uint64_t)atomic_load_explicit(&(s)->stats.f, memory_order_relaxed))

struct svc_sasl_service {
	struct svc_port *port;
	struct svc_sasl_params params;
	struct svc_sasl_directory *dir;
	pthread_t thread;
	atomic_bool stop;
	int epfd;
	struct svc_policy_hub *hub;
	int wake_tag, hub_tag, dir_tag;     /* epoll tags (their addresses) */
	uint64_t now;
	uint64_t scan_at;                   /* the earliest timer may be due then */
	uint64_t gen_counter;
	uint64_t bad_warned_at;             /* the last warning about an unusable endpoint */
	unsigned nconns;
	struct svc_sasl_conn *conns[SVC_SASL_ENDPOINTS_MAX];
	struct svc_sasl_stats stats;
};

static const char *svc_sasl_conn_state_name(enum svc_sasl_conn_state s)
{
	static const char *const names[SVC_SASL_CONN_STATE_MAX] = {
		[SVC_SASL_CONN_DOWN] = "down",
		[SVC_SASL_CONN_RESOLVING] = "resolving",
		[SVC_SASL_CONN_CONNECTING] = "connecting",
		[SVC_SASL_CONN_HANDSHAKE] = "handshake",
		[SVC_SASL_CONN_READY] = "ready",
	};
	return (unsigned)s < SVC_SASL_CONN_STATE_MAX ? names[s] : "?";
}

static uint64_t svc_sasl_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void svc_sasl_timer_at(struct svc_sasl_service *p, uint64_t at)
{
	p->scan_at = svc_sasl_min(p->scan_at, at);
}

/* How Postfix names the socket in its warnings: the path of a UNIX socket, else the
 * endpoint as configured ("inet:host:port"). */
static const char *svc_sasl_conn_name(const struct svc_sasl_conn *c)
{
	return c->target.transport == SVC_POLICY_UNIX ? c->target.name : c->endpoint;
}

static void svc_sasl_warn(struct svc_sasl_service *p, struct svc_sasl_conn *c,
			  enum svc_sasl_warning kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A warning, at most one of a kind per endpoint and interval: a dead Dovecot retried
 * every 30 s would otherwise log all day. */
static void svc_sasl_warn(struct svc_sasl_service *p, struct svc_sasl_conn *c,
			  enum svc_sasl_warning kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	svc_warn_limitedv(&c->warned[kind], p->now, SVC_SASL_WARN_INTERVAL_MS, fmt, ap);
	va_end(ap);
}

/* ---- answers ---- */

/* Hand r back with result and a copy of text (n bytes; NULL: ""). */
static void svc_sasl_answer(struct svc_sasl_service *p, struct svc_request *r,
			    enum svc_sasl_result result, const char *text, size_t n)
{
	struct svc_sasl *q = &r->u.sasl;
	free(q->text);
	q->text = malloc(n + 1);
	if (!q->text) {
		r->status = -ENOMEM; /* the worker answers 454 */
	} else {
		if (n)
			memcpy(q->text, text, n);
		q->text[n] = '\0';
		r->status = 0;
	}
	q->result = result;
	switch (result) {
	case SVC_SASL_OK: SVC_SASL_ADD(p, ok); break;
	case SVC_SASL_CONTINUE: SVC_SASL_ADD(p, cont); break;
	case SVC_SASL_FAIL: SVC_SASL_ADD(p, fail); break;
	case SVC_SASL_TEMPFAIL: SVC_SASL_ADD(p, tempfail); break;
	case SVC_SASL_BAD_MECH: SVC_SASL_ADD(p, bad_mech); break;
	case SVC_SASL_RESULT_MAX: assert(!"result"); break;
	}
	svc_port_complete(p->port, r);
}

static void svc_sasl_answer_str(struct svc_sasl_service *p, struct svc_request *r,
				enum svc_sasl_result result, const char *text)
{
	svc_sasl_answer(p, r, result, text, strlen(text));
}

static void svc_sasl_finish_status(struct svc_sasl_service *p, struct svc_request *r,
				   int status)
{
	r->status = status;
	r->u.sasl.result = SVC_SASL_TEMPFAIL;
	svc_port_complete(p->port, r);
}

/* ---- connections ---- */

static int svc_sasl_conn_watch(struct svc_sasl_service *p, struct svc_sasl_conn *c,
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

static void svc_sasl_conn_enter_state(struct svc_sasl_service *p, struct svc_sasl_conn *c,
				      enum svc_sasl_conn_state s);

/* The exchange of slot i is over (its codec request is gone or cancelled). */
static void svc_sasl_xchg_clear(struct svc_sasl_conn *c, uint32_t i)
{
	if (c->x[i].live)
		c->nlive--;
	memset(&c->x[i], 0, sizeof(c->x[i]));
}

/* Close the socket: every exchange in flight gets TEMPFAIL "Connection lost to
 * authentication server", the mechanisms become unknown, a retry is scheduled. */
static void svc_sasl_conn_drop(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	for (uint32_t i = 0; i < SVC_SASL_EXCHANGES_MAX && c->nlive; i++) {
		if (!c->x[i].live)
			continue;
		if (c->x[i].req) {
			SVC_SASL_ADD(p, conn_lost);
			svc_sasl_answer_str(p, c->x[i].req, SVC_SASL_TEMPFAIL,
					    SMTP_DOVECOT_REASON_CONN_LOST);
		}
		svc_sasl_xchg_clear(c, i);
	}
	assert(c->nlive == 0);
	if (c->fd >= 0) {
		close(c->fd); /* leaves the epoll set with it */
		c->fd = -1;
	}
	c->events = 0;
	smtp_dovecot_free(c->codec);
	c->codec = NULL;
	c->out_off = c->out_len = 0;
	if (c->state == SVC_SASL_CONN_READY)
		SVC_SASL_ADD(p, drops);
	svc_sasl_conn_enter_state(p, c, SVC_SASL_CONN_DOWN);
}

static void svc_sasl_connect_failed(struct svc_sasl_service *p, struct svc_sasl_conn *c,
				    int error)
{
	c->last_error = error;
	c->failures++;
	svc_sasl_warn(p, c, SVC_SASL_WARN_CONNECT,
		      "SASL: Connect to Dovecot auth socket '%s' failed: %s", svc_sasl_conn_name(c),
		      strerror(-error));
	svc_sasl_conn_drop(p, c);
}

/* Flush what can be written. 0, or a negative errno (the connection must be dropped). */
static int svc_sasl_conn_flush(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	uint32_t ev = EPOLLIN | EPOLLRDHUP | (c->out_len ? EPOLLOUT : 0);
	return svc_sasl_conn_watch(p, c, ev);
}

/* Room for one line at the end of the output; NULL when the connection holds too much
 * unsent (the caller drops it) or out of memory. */
static char *svc_sasl_conn_room(struct svc_sasl_conn *c, size_t *cap)
{
	size_t need = SMTP_DOVECOT_LINE_MAX + 64;
	if (c->out_len - c->out_off > SVC_SASL_OUT_MAX)
		return NULL;
	if (c->out_off && c->out_len + need > c->out_cap) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + need > c->out_cap) {
		size_t ncap = c->out_cap ? c->out_cap * 2 : 2 * need;
		while (ncap < c->out_len + need)
			ncap *= 2;
		char *n = realloc(c->out, ncap);
		if (!n)
			return NULL;
		c->out = n;
		c->out_cap = ncap;
	}
	*cap = c->out_cap - c->out_len;
	return c->out + c->out_len;
}

/* Write the CANCEL of exchange id (if the codec says one is due). false: the connection
 * was dropped. */
static bool svc_sasl_conn_cancel(struct svc_sasl_service *p, struct svc_sasl_conn *c, uint32_t id)
{
	size_t cap;
	char *o = svc_sasl_conn_room(c, &cap);
	if (!o) {
		svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
			      "SASL: Dovecot auth socket '%s' does not read its input",
			      svc_sasl_conn_name(c));
		svc_sasl_conn_drop(p, c);
		return false;
	}
	ssize_t n = smtp_dovecot_cancel(c->codec, id, o, cap);
	if (n > 0)
		c->out_len += (size_t)n;
	SVC_SASL_ADD(p, cancels);
	return true;
}

/* Connect to the next address of the endpoint. */
static void svc_sasl_conn_connect(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	const struct svc_policy_addrs *a = c->target.numeric ? &c->target.addrs : &c->found;
	int error = c->last_error ? c->last_error : -ECONNREFUSED;
	while (c->addr_next < a->n) {
		unsigned i = c->addr_next++;
		int family = a->addr[i].ss_family;
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			error = -errno;
			break;
		}
		int rc = connect(fd, (const struct sockaddr *)&a->addr[i], a->len[i]);
		int err = rc == 0 ? 0 : errno;
		if (rc == 0 || err == EINPROGRESS || err == EINTR) {
			c->fd = fd;
			c->events = 0;
			int wrc = svc_sasl_conn_watch(p, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
			if (wrc < 0) {
				close(fd);
				c->fd = -1;
				error = wrc;
				break;
			}
			svc_sasl_conn_enter_state(p, c, SVC_SASL_CONN_CONNECTING);
			return;
		}
		/* a UNIX socket whose backlog is full says EAGAIN: not taking connections */
		error = err == EAGAIN ? -ECONNREFUSED : -err;
		close(fd);
	}
	svc_sasl_connect_failed(p, c, error);
}

/* Start a connection attempt (from DOWN). */
static void svc_sasl_conn_open(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	c->addr_next = 0;
	c->last_error = 0;
	if (!c->target.numeric &&
	    (!c->have_found || p->now - c->resolved_at >= SVC_SASL_RESOLVE_TTL_MS)) {
		int rc = svc_policy_hub_lookup(p->hub, c->target.host, c->target.port, c);
		if (rc == 0) {
			svc_sasl_conn_enter_state(p, c, SVC_SASL_CONN_RESOLVING);
			return;
		}
		if (!c->have_found) {
			svc_sasl_connect_failed(p, c, rc);
			return;
		}
	}
	svc_sasl_conn_connect(p, c);
}

/* The connect finished (EPOLLOUT): say hello. */
static void svc_sasl_conn_connected(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		close(c->fd);
		c->fd = -1;
		c->events = 0;
		c->last_error = -soerr;
		svc_sasl_conn_connect(p, c); /* the next address, or the failure */
		return;
	}
	int rc = smtp_dovecot_new(SVC_SASL_EXCHANGES_MAX, &c->codec);
	size_t cap;
	char *o = rc == 0 ? svc_sasl_conn_room(c, &cap) : NULL;
	ssize_t n = o ? smtp_dovecot_hello((uint32_t)getpid(), o, cap) : -ENOMEM;
	if (n < 0) {
		svc_sasl_connect_failed(p, c, -ENOMEM);
		return;
	}
	c->out_len += (size_t)n;
	c->gen = ++p->gen_counter;
	svc_sasl_conn_enter_state(p, c, SVC_SASL_CONN_HANDSHAKE);
	if ((rc = svc_sasl_conn_flush(p, c)) < 0)
		svc_sasl_connect_failed(p, c, rc);
}

/* The one place a connection's state changes: its timers and what is published. */
static void svc_sasl_conn_enter_state(struct svc_sasl_service *p, struct svc_sasl_conn *c,
				      enum svc_sasl_conn_state s)
{
	enum svc_sasl_conn_state was = c->state;
	c->state = s;
	c->deadline = SVC_SASL_NEVER;
	switch (s) {
	case SVC_SASL_CONN_DOWN:
		if (was == SVC_SASL_CONN_READY || was == SVC_SASL_CONN_HANDSHAKE)
			c->mech_dirty = !svc_sasl_directory_publish(p->dir, c->slot, NULL, p->now);
		/* a connection that was ready a while: try again at once (Dovecot restarted);
		 * else wait, longer each time */
		if (was == SVC_SASL_CONN_READY && p->now - c->ready_at >= SVC_SASL_STABLE_MS)
			c->backoff_ms = 0;
		else if (c->backoff_ms == 0)
			c->backoff_ms = SVC_SASL_BACKOFF_MIN_MS;
		c->retry_at = p->now + c->backoff_ms;
		c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : SVC_SASL_BACKOFF_MIN_MS;
		if (c->backoff_ms > SVC_SASL_BACKOFF_MAX_MS)
			c->backoff_ms = SVC_SASL_BACKOFF_MAX_MS;
		svc_sasl_timer_at(p, c->retry_at);
		break;
	case SVC_SASL_CONN_RESOLVING:
		break;
	case SVC_SASL_CONN_CONNECTING:
	case SVC_SASL_CONN_HANDSHAKE:
		if (s == SVC_SASL_CONN_CONNECTING)
			SVC_SASL_ADD(p, connects);
		c->deadline = p->now + p->params.timeout_ms;
		svc_sasl_timer_at(p, c->deadline);
		break;
	case SVC_SASL_CONN_READY:
		c->ready_at = p->now;
		if (c->failures)
			mx_log(MX_LOG_INFO, "SASL: connected to Dovecot auth socket '%s' after %u "
			       "failed attempts", svc_sasl_conn_name(c), c->failures);
		c->failures = 0;
		c->mech_dirty = !svc_sasl_directory_publish(p->dir, c->slot, c->codec, p->now);
		break;
	case SVC_SASL_CONN_STATE_MAX:
		assert(!"state");
		break;
	}
	if (c->mech_dirty)
		svc_sasl_timer_at(p, p->now + 1000);
}

static struct svc_sasl_conn *svc_sasl_conn_new(struct svc_sasl_service *p, unsigned slot)
{
	struct svc_sasl_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->x = calloc(SVC_SASL_EXCHANGES_MAX, sizeof(c->x[0]));
	char err[256];
	snprintf(c->endpoint, sizeof(c->endpoint), "%s",
		 svc_sasl_directory_endpoint(p->dir, slot));
	if (!c->x || svc_policy_target_parse(c->endpoint, &c->target, err, sizeof(err)) < 0) {
		/* want() checked the endpoint: only memory can be missing */
		free(c->x);
		free(c);
		return NULL;
	}
	c->slot = slot;
	c->fd = -1;
	c->state = SVC_SASL_CONN_DOWN;
	c->retry_at = p->now; /* connect at once */
	svc_sasl_timer_at(p, c->retry_at);
	return c;
}

/* Connections for the endpoints wanted since the last call. */
static void svc_sasl_adopt(struct svc_sasl_service *p)
{
	unsigned n = svc_sasl_directory_count(p->dir);
	while (p->nconns < n) {
		struct svc_sasl_conn *c = svc_sasl_conn_new(p, p->nconns);
		if (!c) {
			svc_sasl_timer_at(p, p->now + 1000); /* try again */
			return;
		}
		p->conns[p->nconns++] = c;
	}
}

/* ---- Dovecot's replies ---- */

static void svc_sasl_on_event(struct svc_sasl_service *p, struct svc_sasl_conn *c,
			      const struct smtp_dovecot_event *ev)
{
	uint32_t i = ev->id & (SVC_SASL_EXCHANGES_MAX - 1);
	struct svc_sasl_xchg *x = &c->x[i];
	if (ev->type == SMTP_DOVECOT_EV_CANCEL_NEEDED) {
		if (svc_sasl_conn_cancel(p, c, ev->id))
			svc_sasl_xchg_clear(c, i);
		return;
	}
	/* the codec matched the id to a request waiting for the server: ours */
	assert(x->live && x->id == ev->id && x->req);
	struct svc_request *r = x->req;
	x->req = NULL;
	switch (ev->type) {
	case SMTP_DOVECOT_EV_OK:
		svc_sasl_xchg_clear(c, i);
		svc_sasl_answer(p, r, SVC_SASL_OK, ev->user.ptr, ev->user.len);
		break;
	case SMTP_DOVECOT_EV_FAIL:
		svc_sasl_xchg_clear(c, i);
		/* Postfix logs the user= of a FAIL as sasl_username */
		free(r->u.sasl.user);
		r->u.sasl.user = ev->user.len ? strndup(ev->user.ptr, ev->user.len) : NULL;
		svc_sasl_answer(p, r, ev->temp ? SVC_SASL_TEMPFAIL : SVC_SASL_FAIL, ev->reason.ptr,
				ev->reason.len);
		break;
	case SMTP_DOVECOT_EV_CONT:
		if (atomic_load_explicit(&r->cancelled, memory_order_relaxed)) {
			/* nobody will send the CONT: end the exchange here */
			if (svc_sasl_conn_cancel(p, c, ev->id))
				svc_sasl_xchg_clear(c, i);
			svc_sasl_finish_status(p, r, -ECANCELED);
			break;
		}
		x->client_until = p->now + p->params.client_wait_ms;
		svc_sasl_timer_at(p, x->client_until);
		svc_sasl_answer(p, r, SVC_SASL_CONTINUE, ev->challenge.ptr, ev->challenge.len);
		break;
	default:
		assert(!"event");
	}
}

/* Read what Dovecot sent and act on every line. */
static void svc_sasl_conn_read(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	char buf[SVC_SASL_READ_CHUNK];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			int error = n == 0 ? ECONNRESET : errno;
			if (c->state == SVC_SASL_CONN_HANDSHAKE) {
				svc_sasl_connect_failed(p, c, -error);
			} else {
				svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
					      "SASL: Connection lost to Dovecot auth socket '%s': %s",
					      svc_sasl_conn_name(c),
					      n == 0 ? "closed by the server" : strerror(error));
				svc_sasl_conn_drop(p, c);
			}
			return;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			struct smtp_dovecot_event ev;
			size_t used = 0;
			enum smtp_dovecot_event_type t =
				smtp_dovecot_step(c->codec, buf + off, (size_t)n - off, &used, &ev);
			off += used;
			if (t == SMTP_DOVECOT_EV_NONE)
				break;
			if (t == SMTP_DOVECOT_EV_ERROR) {
				svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
					      "SASL: Protocol error on Dovecot auth socket '%s' "
					      "(%s): %s", svc_sasl_conn_name(c),
					      svc_sasl_conn_state_name(c->state), ev.error);
				if (c->state == SVC_SASL_CONN_HANDSHAKE)
					c->failures++;
				svc_sasl_conn_drop(p, c);
				return;
			}
			if (t == SMTP_DOVECOT_EV_READY)
				svc_sasl_conn_enter_state(p, c, SVC_SASL_CONN_READY);
			else
				svc_sasl_on_event(p, c, &ev);
			if (c->state != SVC_SASL_CONN_READY)
				return; /* dropped */
		}
		if (svc_sasl_conn_flush(p, c) < 0) {
			svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
				      "SASL: Connection lost to Dovecot auth socket '%s': %s",
				      svc_sasl_conn_name(c), strerror(errno));
			svc_sasl_conn_drop(p, c);
			return;
		}
		if ((size_t)n < sizeof(buf))
			return;
	}
}

static void svc_sasl_conn_event(struct svc_sasl_service *p, struct svc_sasl_conn *c,
				uint32_t events)
{
	if (c->state == SVC_SASL_CONN_CONNECTING) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			svc_sasl_conn_connected(p, c);
		return;
	}
	if (c->state != SVC_SASL_CONN_HANDSHAKE && c->state != SVC_SASL_CONN_READY)
		return;
	if (events & EPOLLOUT) {
		int rc = svc_sasl_conn_flush(p, c);
		if (rc < 0) {
			svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
				      "SASL: Connection lost to Dovecot auth socket '%s': %s",
				      svc_sasl_conn_name(c), strerror(-rc));
			svc_sasl_conn_drop(p, c);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		svc_sasl_conn_read(p, c);
}

static void svc_sasl_lookup_done(struct svc_sasl_service *p,
				 const struct svc_policy_lookup_result *res)
{
	struct svc_sasl_conn *c = res->cookie;
	if (c->state != SVC_SASL_CONN_RESOLVING)
		return;
	c->resolved_at = p->now;
	if (res->error == 0) {
		c->found = res->addrs;
		c->have_found = true;
	} else if (!c->have_found) {
		c->state = SVC_SASL_CONN_CONNECTING; /* for the drop's bookkeeping */
		c->last_error = res->error;
		c->failures++;
		svc_sasl_warn(p, c, SVC_SASL_WARN_CONNECT,
			      "SASL: Connect to Dovecot auth socket '%s' failed: %s",
			      svc_sasl_conn_name(c), res->why);
		svc_sasl_conn_drop(p, c);
		return;
	}
	svc_sasl_conn_connect(p, c);
}

/* ---- requests ---- */

static uint64_t svc_sasl_exchange(const struct svc_sasl_conn *c, uint32_t id)
{
	return (c->gen << 32) | id;
}

/* An exchange's deadline for a step sent to Dovecot now. */
static uint64_t svc_sasl_step_deadline(const struct svc_sasl_service *p,
				       const struct svc_request *r)
{
	uint64_t d = p->now + p->params.timeout_ms;
	return r->deadline_ms ? svc_sasl_min(d, r->deadline_ms) : d;
}

/* Bytes a request must hold before it reaches the codec. */
static bool svc_sasl_request_valid(const struct svc_request *r)
{
	const struct svc_sasl *q = &r->u.sasl;
	if ((unsigned)q->op >= SVC_SASL_OP_MAX)
		return false;
	if (strnlen(q->endpoint, sizeof(q->endpoint)) >= sizeof(q->endpoint) || !q->endpoint[0])
		return false;
	if (q->op == SVC_SASL_START &&
	    (strnlen(q->mech, sizeof(q->mech)) >= sizeof(q->mech) ||
	     strnlen(q->service, sizeof(q->service)) >= sizeof(q->service)))
		return false;
	if (q->data_len && !q->data)
		return false;
	return true;
}

/* A request's connection, or NULL (answered: TEMPFAIL, can't connect). */
static struct svc_sasl_conn *svc_sasl_request_conn(struct svc_sasl_service *p,
						   struct svc_request *r)
{
	const struct svc_sasl *q = &r->u.sasl;
	int slot = svc_sasl_directory_find(p->dir, q->endpoint);
	if (slot < 0) {
		/* main.c wants every endpoint it uses; one it did not is taken on now */
		int rc = svc_sasl_directory_want(p->dir, q->endpoint);
		if (rc < 0 && (!p->bad_warned_at ||
			       p->now - p->bad_warned_at >= SVC_SASL_WARN_INTERVAL_MS)) {
			p->bad_warned_at = p->now ? p->now : 1;
			mx_log(MX_LOG_WARNING, "SASL: cannot use Dovecot auth socket '%s': %s",
			       q->endpoint, rc == -ENOSPC ? "too many endpoints" :
			       "bad endpoint syntax");
		}
		svc_sasl_adopt(p);
		slot = svc_sasl_directory_find(p->dir, q->endpoint);
	}
	struct svc_sasl_conn *c = slot >= 0 && (unsigned)slot < p->nconns ? p->conns[slot] : NULL;
	if (!c || c->state != SVC_SASL_CONN_READY) {
		SVC_SASL_ADD(p, no_server);
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_NO_SERVER);
		return NULL;
	}
	return c;
}

/* The codec wrote n bytes (or failed with n < 0) for request r on c: send them. false
 * when the connection was dropped (r is answered then). */
static bool svc_sasl_sent(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	int rc = svc_sasl_conn_flush(p, c);
	if (rc < 0) {
		svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
			      "SASL: Connection lost to Dovecot auth socket '%s': %s",
			      svc_sasl_conn_name(c), strerror(-rc));
		svc_sasl_conn_drop(p, c);
		return false;
	}
	return true;
}

static void svc_sasl_start_req(struct svc_sasl_service *p, struct svc_request *r)
{
	struct svc_sasl *q = &r->u.sasl;
	if (atomic_load_explicit(&r->cancelled, memory_order_relaxed)) {
		svc_sasl_finish_status(p, r, -ECANCELED); /* nobody waits: no exchange begun */
		return;
	}
	if (q->data_len > SVC_SASL_DATA_MAX) {
		svc_sasl_answer_str(p, r, SVC_SASL_FAIL, SVC_SASL_LIMIT_REASON);
		return;
	}
	if (r->deadline_ms && r->deadline_ms <= p->now) {
		/* too late to ask (it waited in the worker's queue): as a timeout */
		SVC_SASL_ADD(p, timeouts);
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		return;
	}
	struct svc_sasl_conn *c = svc_sasl_request_conn(p, r);
	if (!c)
		return;
	struct smtp_dovecot_auth_request a = {
		.mech = mx_span_make(q->mech, strlen(q->mech)),
		.sec_opts = q->sec_opts,
		.service = q->service[0] ? q->service : "smtp",
		.local = q->local.family ? &q->local : NULL,
		.remote = q->remote.family ? &q->remote : NULL,
		.local_port = q->local_port,
		.remote_port = q->remote_port,
		.secured = q->secured,
		.valid_client_cert = q->valid_client_cert,
		.has_initial_response = q->has_initial_response,
		.initial_response = mx_span_make(q->data ? q->data : "", q->data_len),
	};
	size_t cap;
	char *o = svc_sasl_conn_room(c, &cap);
	if (!o) {
		svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
			      "SASL: Dovecot auth socket '%s' does not read its input",
			      svc_sasl_conn_name(c));
		svc_sasl_conn_drop(p, c);
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		return;
	}
	uint32_t id = 0;
	ssize_t n = smtp_dovecot_auth(c->codec, &a, &id, o, cap);
	switch (n) {
	case -ENOENT:
		svc_sasl_answer_str(p, r, SVC_SASL_BAD_MECH, "");
		return;
	case -EINVAL:
		svc_sasl_answer_str(p, r, SVC_SASL_FAIL, SMTP_DOVECOT_REASON_BAD_INITIAL);
		return;
	case -EMSGSIZE:
		svc_sasl_answer_str(p, r, SVC_SASL_FAIL, SVC_SASL_LIMIT_REASON);
		return;
	case -EBUSY:
		if (c->nlive < SVC_SASL_EXCHANGES_MAX / 2) {
			/* most of the table holds requests given up on (deadline, worker gone)
			 * whose replies never came: Dovecot is stuck; start afresh */
			svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
				      "SASL: Dovecot auth socket '%s' left %zu requests "
				      "unanswered: reconnecting", svc_sasl_conn_name(c),
				      smtp_dovecot_pending(c->codec) - c->nlive);
			svc_sasl_conn_drop(p, c);
			svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
			return;
		}
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SVC_SASL_BUSY_REASON);
		return;
	default:
		break;
	}
	assert(n > 0); /* -ENOSPC cannot happen: the room holds a whole line */
	c->out_len += (size_t)n;
	uint32_t i = id & (SVC_SASL_EXCHANGES_MAX - 1);
	assert(!c->x[i].live);
	c->x[i] = (struct svc_sasl_xchg){ .req = r, .deadline = svc_sasl_step_deadline(p, r),
					  .id = id, .live = true };
	c->nlive++;
	svc_sasl_timer_at(p, c->x[i].deadline);
	q->exchange = svc_sasl_exchange(c, id);
	svc_sasl_sent(p, c);
}

/* The exchange a CONT or CANCEL names on c: its slot, or -1 (not of this connection, or
 * over). */
static long svc_sasl_find_xchg(const struct svc_sasl_conn *c, uint64_t exchange)
{
	if (exchange >> 32 != c->gen)
		return -1;
	uint32_t id = (uint32_t)exchange;
	uint32_t i = id & (SVC_SASL_EXCHANGES_MAX - 1);
	if (!c->x[i].live || c->x[i].id != id)
		return -1;
	return (long)i;
}

static void svc_sasl_cont_req(struct svc_sasl_service *p, struct svc_request *r)
{
	struct svc_sasl *q = &r->u.sasl;
	int slot = svc_sasl_directory_find(p->dir, q->endpoint);
	struct svc_sasl_conn *c = slot >= 0 && (unsigned)slot < p->nconns ? p->conns[slot] : NULL;
	long i = c && c->state == SVC_SASL_CONN_READY ? svc_sasl_find_xchg(c, q->exchange) : -1;
	if (i < 0 || c->x[i].req) {
		/* its connection dropped (or the exchange expired): Postfix's reply when the
		 * stream to Dovecot broke */
		SVC_SASL_ADD(p, conn_lost);
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		return;
	}
	struct svc_sasl_xchg *x = &c->x[i];
	bool cancelled = atomic_load_explicit(&r->cancelled, memory_order_relaxed);
	size_t cap;
	char *o = svc_sasl_conn_room(c, &cap);
	ssize_t n = -ENOMEM;
	if (o && !cancelled && q->data_len <= SVC_SASL_DATA_MAX)
		n = smtp_dovecot_cont(c->codec, x->id,
				      mx_span_make(q->data ? q->data : "", q->data_len), o, cap);
	else if (o && !cancelled)
		n = -EMSGSIZE;
	if (n > 0) {
		c->out_len += (size_t)n;
		x->req = r;
		x->client_until = 0;
		x->deadline = svc_sasl_step_deadline(p, r);
		svc_sasl_timer_at(p, x->deadline);
		svc_sasl_sent(p, c);
		return;
	}
	/* no CONT sent: the exchange ends here, at Dovecot too */
	uint32_t id = x->id;
	if (!o) {
		svc_sasl_warn(p, c, SVC_SASL_WARN_LOST,
			      "SASL: Dovecot auth socket '%s' does not read its input",
			      svc_sasl_conn_name(c));
		svc_sasl_conn_drop(p, c);
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		return;
	}
	if (!svc_sasl_conn_cancel(p, c, id)) {
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		return;
	}
	svc_sasl_xchg_clear(c, (uint32_t)i);
	if (cancelled)
		svc_sasl_finish_status(p, r, -ECANCELED);
	else if (n == -EINVAL)
		svc_sasl_answer_str(p, r, SVC_SASL_FAIL, SMTP_DOVECOT_REASON_BAD_CONT);
	else if (n == -EMSGSIZE)
		svc_sasl_answer_str(p, r, SVC_SASL_FAIL, SVC_SASL_LIMIT_REASON);
	else
		svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
	svc_sasl_sent(p, c);
}

static void svc_sasl_cancel_req(struct svc_sasl_service *p, struct svc_request *r)
{
	struct svc_sasl *q = &r->u.sasl;
	int slot = svc_sasl_directory_find(p->dir, q->endpoint);
	struct svc_sasl_conn *c = slot >= 0 && (unsigned)slot < p->nconns ? p->conns[slot] : NULL;
	long i = c && c->state == SVC_SASL_CONN_READY ? svc_sasl_find_xchg(c, q->exchange) : -1;
	if (i >= 0) {
		struct svc_sasl_xchg *x = &c->x[i];
		struct svc_request *waiting = x->req;
		x->req = NULL;
		/* waiting for Dovecot: the codec swallows the reply; waiting for the client:
		 * CANCEL is written */
		if (svc_sasl_conn_cancel(p, c, x->id)) {
			svc_sasl_xchg_clear(c, (uint32_t)i);
			svc_sasl_sent(p, c);
		}
		if (waiting)
			svc_sasl_answer_str(p, waiting, SVC_SASL_TEMPFAIL,
					    SMTP_DOVECOT_REASON_CONN_LOST);
	}
	svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, "");
}

static void svc_sasl_accept(struct svc_sasl_service *p, struct svc_request *r)
{
	SVC_SASL_ADD(p, requests);
	if (r->kind != SVC_SASL || !svc_sasl_request_valid(r)) {
		svc_sasl_finish_status(p, r, -EINVAL);
		return;
	}
	switch (r->u.sasl.op) {
	case SVC_SASL_START:
		svc_sasl_start_req(p, r);
		break;
	case SVC_SASL_CONT:
		svc_sasl_cont_req(p, r);
		break;
	case SVC_SASL_CANCEL:
		svc_sasl_cancel_req(p, r);
		break;
	case SVC_SASL_OP_MAX:
		assert(!"op");
		break;
	}
}

/* ---- timers ---- */

static void svc_sasl_conn_expire(struct svc_sasl_service *p, struct svc_sasl_conn *c)
{
	switch (c->state) {
	case SVC_SASL_CONN_DOWN:
		if (c->retry_at <= p->now)
			svc_sasl_conn_open(p, c);
		else
			svc_sasl_timer_at(p, c->retry_at);
		return;
	case SVC_SASL_CONN_RESOLVING:
		return;
	case SVC_SASL_CONN_CONNECTING:
	case SVC_SASL_CONN_HANDSHAKE:
		if (c->deadline <= p->now)
			svc_sasl_connect_failed(p, c, -ETIMEDOUT);
		else
			svc_sasl_timer_at(p, c->deadline);
		return;
	case SVC_SASL_CONN_READY:
		break;
	case SVC_SASL_CONN_STATE_MAX:
		assert(!"state");
		return;
	}
	bool wrote = false;
	for (uint32_t i = 0; i < SVC_SASL_EXCHANGES_MAX && c->nlive; i++) {
		struct svc_sasl_xchg *x = &c->x[i];
		if (!x->live)
			continue;
		uint64_t at = x->req ? x->deadline : x->client_until;
		if (at > p->now) {
			svc_sasl_timer_at(p, at);
			continue;
		}
		struct svc_request *r = x->req;
		x->req = NULL;
		if (!svc_sasl_conn_cancel(p, c, x->id)) {
			if (r)
				svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL,
						    SMTP_DOVECOT_REASON_CONN_LOST);
			return; /* dropped: every other exchange was answered */
		}
		svc_sasl_xchg_clear(c, i);
		wrote = true;
		if (r) {
			/* what Postfix's smtpd says when its read from Dovecot times out */
			SVC_SASL_ADD(p, timeouts);
			svc_sasl_answer_str(p, r, SVC_SASL_TEMPFAIL, SMTP_DOVECOT_REASON_CONN_LOST);
		}
	}
	if (wrote)
		svc_sasl_sent(p, c);
}

static void svc_sasl_expire(struct svc_sasl_service *p)
{
	if (p->scan_at > p->now)
		return;
	p->scan_at = SVC_SASL_NEVER;
	for (unsigned k = 0; k < p->nconns; k++) {
		struct svc_sasl_conn *c = p->conns[k];
		if (c->mech_dirty) {
			bool ok = svc_sasl_directory_publish(
				p->dir, c->slot, c->state == SVC_SASL_CONN_READY ? c->codec : NULL,
				p->now);
			c->mech_dirty = !ok;
			if (!ok)
				svc_sasl_timer_at(p, p->now + 1000);
		}
		svc_sasl_conn_expire(p, c);
	}
	if (p->nconns < svc_sasl_directory_count(p->dir))
		svc_sasl_timer_at(p, p->now + 1000);
}

static int svc_sasl_wait_ms(const struct svc_sasl_service *p)
{
	if (p->scan_at == SVC_SASL_NEVER)
		return -1;
	uint64_t now = mx_clock_monotonic_ms();
	if (p->scan_at <= now)
		return 0;
	return p->scan_at - now > INT_MAX ? INT_MAX : (int)(p->scan_at - now);
}

/* ---- the thread ---- */

static void svc_sasl_shutdown(struct svc_sasl_service *p)
{
	p->now = mx_clock_monotonic_ms();
	struct svc_request *r;
	while ((r = svc_port_take(p->port))) {
		SVC_SASL_ADD(p, requests);
		svc_sasl_finish_status(p, r, -ECANCELED);
	}
	for (unsigned k = 0; k < p->nconns; k++) {
		struct svc_sasl_conn *c = p->conns[k];
		for (uint32_t i = 0; i < SVC_SASL_EXCHANGES_MAX && c->nlive; i++) {
			if (c->x[i].req)
				svc_sasl_finish_status(p, c->x[i].req, -ECANCELED);
			svc_sasl_xchg_clear(c, i);
		}
		if (c->fd >= 0)
			close(c->fd);
		smtp_dovecot_free(c->codec);
		svc_sasl_directory_publish(p->dir, c->slot, NULL, p->now);
		free(c->out);
		free(c->x);
		free(c);
		p->conns[k] = NULL;
	}
	p->nconns = 0;
	svc_port_flush(p->port);
}

static void *svc_sasl_main(void *arg)
{
	struct svc_sasl_service *p = arg;
	struct epoll_event ev[SVC_SASL_EVENTS];
	p->now = mx_clock_monotonic_ms();
	svc_sasl_adopt(p);
	while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
		int n = epoll_wait(p->epfd, ev, SVC_SASL_EVENTS, svc_sasl_wait_ms(p));
		p->now = mx_clock_monotonic_ms();
		bool take = false;
		for (int i = 0; i < n; i++) {
			void *tag = ev[i].data.ptr;
			if (tag == &p->wake_tag) {
				eventfd_t v;
				eventfd_read(svc_port_wake_fd(p->port), &v);
				take = true;
			} else if (tag == &p->dir_tag) {
				eventfd_t v;
				eventfd_read(svc_sasl_directory_wake_fd(p->dir), &v);
				svc_sasl_adopt(p);
			} else if (tag == &p->hub_tag) {
				struct svc_policy_lookup_result res;
				while (svc_policy_hub_next(p->hub, &res))
					svc_sasl_lookup_done(p, &res);
			} else {
				svc_sasl_conn_event(p, tag, ev[i].events);
			}
		}
		svc_sasl_expire(p);
		if (take) {
			struct svc_request *r;
			while ((r = svc_port_take(p->port)))
				svc_sasl_accept(p, r);
		}
		svc_port_flush(p->port);
	}
	svc_sasl_shutdown(p);
	return NULL;
}

/* ---- svc_ops ---- */

static void svc_sasl_free(struct svc_sasl_service *p)
{
	if (p->epfd >= 0)
		close(p->epfd);
	svc_policy_hub_release(p->hub);
	free(p);
}

static int svc_sasl_start(void **impl, struct svc_port *port, const void *params, char *err,
			  size_t errlen)
{
	const struct svc_sasl_params *sp = params;
	if (!sp || !sp->directory)
		return mx_errf(err, errlen, -EINVAL, "the SASL service needs its directory");
	struct svc_sasl_service *p = calloc(1, sizeof(*p));
	if (!p)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	p->port = port;
	p->params = *sp;
	if (!p->params.timeout_ms)
		p->params.timeout_ms = SVC_SASL_TIMEOUT_MS;
	if (!p->params.client_wait_ms)
		p->params.client_wait_ms = SVC_SASL_CLIENT_WAIT_MS;
	p->dir = sp->directory;
	p->scan_at = SVC_SASL_NEVER;
	atomic_init(&p->stop, false);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		int rc = -errno;
		svc_sasl_free(p);
		return mx_errf(err, errlen, rc, "epoll_create1: %s", strerror(-rc));
	}
	int rc = svc_policy_hub_new(&p->hub);
	if (rc < 0) {
		svc_sasl_free(p);
		return mx_errf(err, errlen, rc, "lookup eventfd: %s", strerror(-rc));
	}
	struct epoll_event wake = { .events = EPOLLIN, .data.ptr = &p->wake_tag };
	struct epoll_event hub = { .events = EPOLLIN, .data.ptr = &p->hub_tag };
	struct epoll_event dir = { .events = EPOLLIN, .data.ptr = &p->dir_tag };
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, svc_port_wake_fd(port), &wake) < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, svc_policy_hub_fd(p->hub), &hub) < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, svc_sasl_directory_wake_fd(p->dir), &dir) < 0) {
		rc = -errno;
		svc_sasl_free(p);
		return mx_errf(err, errlen, rc, "epoll_ctl: %s", strerror(-rc));
	}
	if ((rc = svc_thread_start(&p->thread, svc_sasl_main, p, "mx-sasl", err, errlen)) < 0) {
		svc_sasl_free(p);
		return rc;
	}
	*impl = p;
	return 0;
}

static void svc_sasl_stop(void *impl)
{
	struct svc_sasl_service *p = impl;
	svc_thread_stop(p->thread, &p->stop, p->port);
	svc_sasl_free(p);
}

static void svc_sasl_log_statistics(void *impl, const char *when)
{
	struct svc_sasl_service *p = impl;
	mx_log(MX_LOG_INFO,
	       "sasl statistics (%s): requests=%" PRIu64 " ok=%" PRIu64 " continue=%" PRIu64
	       " fail=%" PRIu64 " tempfail=%" PRIu64 " bad_mech=%" PRIu64 " no_server=%" PRIu64
	       " conn_lost=%" PRIu64 " timeouts=%" PRIu64 " cancels=%" PRIu64
	       " connects=%" PRIu64 " drops=%" PRIu64,
	       when, SVC_SASL_GET(p, requests), SVC_SASL_GET(p, ok), SVC_SASL_GET(p, cont),
	       SVC_SASL_GET(p, fail), SVC_SASL_GET(p, tempfail), SVC_SASL_GET(p, bad_mech),
	       SVC_SASL_GET(p, no_server), SVC_SASL_GET(p, conn_lost), SVC_SASL_GET(p, timeouts),
	       SVC_SASL_GET(p, cancels), SVC_SASL_GET(p, connects), SVC_SASL_GET(p, drops));
}

const struct svc_ops svc_sasl_ops = {
	.kind = SVC_SASL,
	.start = svc_sasl_start,
	.stop = svc_sasl_stop,
	.log_statistics = svc_sasl_log_statistics,
};
