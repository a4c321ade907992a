#include "dataplane/relay/relay.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/queue_id.h"
#include "dataplane/relay/relay_dsn.h"
#include "mgmt/log.h"

#include "mxgate/errf.h"

/* Bounds on what the next hop may send us. */
#define RELAY_LINE_MAX 2048   /* one reply line (RFC 5321 4.5.3.1.5 says 512) */
#define RELAY_REPLY_LINES 100 /* lines of one multi-line reply */
#define RELAY_TEXT_MAX 1024   /* reply text kept for logs and DELIVERY records */
#define RELAY_WHY_MAX (RELAY_TEXT_MAX + 400)
#define RELAY_OUT_SIZE 65536  /* body output buffer */
#define RELAY_RECLAIM_MS 1000 /* at most one reclaim pass a second */
#define RELAY_MAX_MAPS 16     /* tables in transport_maps */
/* Relocation: when the segments below the newest two hold at least this many times more
 * bytes than the live messages in them, the live ones are copied forward (so copying
 * costs at most a quarter of what it frees). */
#define RELAY_RELOCATE_RATIO 4

enum relay_phase {
	RELAY_PH_GREETING,
	RELAY_PH_HELO,
	RELAY_PH_MAIL,
	RELAY_PH_RCPT,
	RELAY_PH_DATA,
	RELAY_PH_BODY,
	RELAY_PH_DOT,
	RELAY_PH_RSET,
	RELAY_PH_QUIT,
	RELAY_PH_MAX,
};

static const char *relay_phase_name(enum relay_phase p)
{
	/* as Postfix's "(in reply to ... command)" and "while ..." texts */
	switch (p) {
	case RELAY_PH_GREETING: return "receiving the initial server greeting";
	case RELAY_PH_HELO: return "performing the EHLO handshake";
	case RELAY_PH_MAIL: return "MAIL FROM";
	case RELAY_PH_RCPT: return "RCPT TO";
	case RELAY_PH_DATA: return "DATA";
	case RELAY_PH_BODY: return "sending message body";
	case RELAY_PH_DOT: return "end of DATA";
	case RELAY_PH_RSET: return "RSET";
	case RELAY_PH_QUIT: return "QUIT";
	case RELAY_PH_MAX: break;
	}
	return "?";
}

/* A next hop and its connections. Created on first use, kept until the relay stops. */
struct relay_dest {
	struct relay_nexthop nh;
	char host[160];              /* nh.name without the port: "host X said" */
	unsigned nconn;              /* open connections, idle or in use */
	struct relay_conn *idle;     /* cached idle connections, most recent first */
	uint64_t dead_until_ms;      /* connecting failed: defer without trying until then */
	char dead_reason[RELAY_WHY_MAX];
	struct relay_dest *next;
};

struct relay_conn {
	int fd;
	struct relay_dest *dest;
	bool pipelining, eightbitmime, smtputf8, has_size, dsn;
	uint64_t size_limit;
	uint64_t idle_since_ms;
	struct relay_conn *next; /* in dest->idle */
	char in[RELAY_LINE_MAX * 2];
	size_t in_len;
};

struct relay_msg {
	struct spool_msg_entry e; /* e.rstate/e.rtext: per recipient state, grown as needed */
	uint64_t min_seg;
	uint64_t next_try_ms;
	int64_t next_try_wall;
	unsigned attempts;
	bool busy;      /* a thread works on it (delivery, relocation, an operator change) */
	bool in_ready;  /* in the ready queue */
	bool deferred;  /* waiting for its next attempt */
	bool waiting;   /* waiting for a free connection to a destination at its limit */
	/* operator changes asked for while busy, applied when the attempt ends */
	bool want_hold, want_release, want_delete;
	char *reason;   /* the last deferral reason (malloc'd), for mailq */
	struct relay_msg *prev, *next; /* all live messages */
	struct relay_msg *qnext;       /* ready queue */
};

struct relay_reply {
	int code;
	char text[RELAY_TEXT_MAX]; /* the lines joined by a space, as Postfix logs them */
};

/* Waiting for records handed to the writer to become durable. */
struct relay_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned pending;
	int rc;
};

struct relay_thread {
	struct relay *r;
	pthread_t tid;
	bool started;
	struct relay_conn *conn; /* the connection in use */
	struct relay_wait wait;
	char *out;
	size_t out_len;
	/* spooling notifications: this thread's client of the writer */
	struct spool_client *client;
	int wake_fd;
	/* transport_maps, through this thread's own LMDB reader */
	struct tables_reader *reader;
	struct table *maps[RELAY_MAX_MAPS];
	size_t nmaps;
};

struct relay {
	struct relay_params p;
	char *helo_name;
	char *transport_maps;
	int seg_dir_fd;
	char map_specs[RELAY_MAX_MAPS][TABLE_NAME_MAX + 16];
	size_t nmaps;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct relay_msg *all;
	struct relay_msg *ready_head, *ready_tail;
	uint64_t last_run_ms;
	uint64_t last_reclaim_ms;
	uint64_t reclaim_seg; /* the writer's segment at the last reclaim pass */
	bool reclaim_wanted;
	struct relay_dest *dests;
	unsigned ndests;
	size_t nwaiting; /* messages with `waiting` set: a released slot scans only if any */
	struct queue_id_gen idgen; /* for notifications, under mu */

	unsigned nthreads;
	struct relay_thread *threads;

	atomic_uint_fast64_t queued, sent, deferred, bounced, removed, reclaimed;
	atomic_uint_fast64_t expired, notified, relocated;
};

static uint64_t relay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double relay_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void relay_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000u);
	ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void relay_set_reason(struct relay_msg *m, const char *why)
{
	char *s = why ? strdup(why) : NULL;
	if (why && !s)
		return; /* keep the old one: it is only for mailq */
	free(m->reason);
	m->reason = s;
}

/* ---- the queue (all under r->mu) ---- */

static void relay_set_waiting(struct relay *r, struct relay_msg *m, bool waiting)
{
	if (m->waiting != waiting)
		r->nwaiting = waiting ? r->nwaiting + 1 : r->nwaiting - 1;
	m->waiting = waiting;
}

/* What mailq says of a message while no next hop is configured. */
#define RELAY_KEEP_REASON "mail transport unavailable: relayhost and transport_maps are empty"

static void relay_ready_push(struct relay *r, struct relay_msg *m)
{
	if (m->in_ready || m->busy || m->e.held || r->p.keep_only)
		return;
	m->qnext = NULL;
	m->deferred = false;
	relay_set_waiting(r, m, false);
	m->in_ready = true;
	if (r->ready_tail)
		r->ready_tail->qnext = m;
	else
		r->ready_head = m;
	r->ready_tail = m;
	pthread_cond_signal(&r->cv);
}

static struct relay_msg *relay_ready_pop(struct relay *r)
{
	struct relay_msg *m = r->ready_head;
	if (!m)
		return NULL;
	r->ready_head = m->qnext;
	if (!r->ready_head)
		r->ready_tail = NULL;
	m->in_ready = false;
	return m;
}

/* Take m out of the ready queue (an operator change on it). */
static void relay_ready_unlink(struct relay *r, struct relay_msg *m)
{
	if (!m->in_ready)
		return;
	struct relay_msg *prev = NULL;
	for (struct relay_msg *q = r->ready_head; q; prev = q, q = q->qnext) {
		if (q != m)
			continue;
		if (prev)
			prev->qnext = q->qnext;
		else
			r->ready_head = q->qnext;
		if (r->ready_tail == q)
			r->ready_tail = prev;
		break;
	}
	m->in_ready = false;
}

static void relay_add(struct relay *r, struct relay_msg *m)
{
	m->min_seg = spool_msg_entry_min_seg(&m->e);
	m->prev = NULL;
	m->next = r->all;
	if (r->all)
		r->all->prev = m;
	r->all = m;
	atomic_fetch_add(&r->queued, 1);
	if (r->p.keep_only) {
		m->deferred = true;
		m->reason = strdup(RELAY_KEEP_REASON); /* NULL: mailq shows no reason */
	}
	relay_ready_push(r, m); /* not when held, nor while keeping only */
}

static void relay_remove(struct relay *r, struct relay_msg *m)
{
	relay_ready_unlink(r, m);
	relay_set_waiting(r, m, false);
	if (m->prev)
		m->prev->next = m->next;
	else
		r->all = m->next;
	if (m->next)
		m->next->prev = m->prev;
	atomic_fetch_sub(&r->queued, 1);
	spool_msg_entry_clear(&m->e);
	free(m->reason);
	free(m);
}

static struct relay_msg *relay_find(struct relay *r, const char *id)
{
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (strcmp(m->e.id, id) == 0)
			return m;
	return NULL;
}

static void relay_committed(void *ctx, struct spool_msg_entry *e)
{
	struct relay *r = ctx;
	struct relay_msg *m = calloc(1, sizeof(*m));
	if (!m) {
		mx_log(MX_LOG_WARNING, "%s: out of memory queueing the message for relay; it is "
				       "delivered after the next restart",
		       e->id);
		spool_msg_entry_clear(e);
		free(e);
		return;
	}
	m->e = *e;
	free(e);
	if (m->e.held)
		mx_log(MX_LOG_INFO, "%s: held: %s", m->e.id,
		       m->e.hold_reason ? m->e.hold_reason : "policy HOLD action");
	pthread_mutex_lock(&r->mu);
	relay_add(r, m);
	pthread_mutex_unlock(&r->mu);
}

/* A queue run: deferred messages whose time has come become ready (Postfix's qmgr scans
 * the deferred queue every queue_run_delay). */
static void relay_queue_run(struct relay *r, uint64_t now)
{
	if (now < r->last_run_ms + (uint64_t)r->p.queue_run_delay * 1000u)
		return;
	r->last_run_ms = now;
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->deferred && m->next_try_ms <= now)
			relay_ready_push(r, m);
}

/* A connection slot became free: messages that waited for one try again. */
static void relay_wake_waiting(struct relay *r)
{
	/* every delivery releases a connection: no scan of the queue unless someone waits */
	for (struct relay_msg *m = r->nwaiting ? r->all : NULL; m; m = m->next)
		if (m->waiting)
			relay_ready_push(r, m);
}

/* ---- waiting for the writer ---- */

static void relay_wait_init(struct relay_wait *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->pending = 0;
	w->rc = 0;
}

static void relay_wait_destroy(struct relay_wait *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

static void relay_wait_done(void *arg, int rc)
{
	struct relay_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	if (rc < 0 && w->rc == 0)
		w->rc = rc;
	w->pending--;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void relay_wait_add(struct relay_wait *w, int rc)
{
	pthread_mutex_lock(&w->mu);
	if (rc == 0)
		w->pending++;
	else if (w->rc == 0)
		w->rc = rc;
	pthread_mutex_unlock(&w->mu);
}

/* Hand a DELIVERY or RETIRE record to the writer; relay_wait_end() waits for it. */
static void relay_record(struct relay *r, struct relay_wait *w, enum spool_rec_type type,
			 const char *id, uint32_t rcpt, enum spool_rcpt_state st, const char *text)
{
	/* count it first: the writer may call back before append returns */
	relay_wait_add(w, 0);
	int rc = spool_status_append(r->p.spool, type, id, rcpt, st, text, relay_wait_done, w);
	if (rc < 0)
		relay_wait_done(w, rc);
}

static void relay_record_hold(struct relay *r, struct relay_wait *w, const char *id,
			      bool held, const char *reason)
{
	relay_wait_add(w, 0);
	int rc = spool_hold_append(r->p.spool, id, held, reason, relay_wait_done, w);
	if (rc < 0)
		relay_wait_done(w, rc);
}

/* Wait until every record handed over is durable. Returns 0 or the first error. */
static int relay_wait_end(struct relay_wait *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->pending)
		pthread_cond_wait(&w->cv, &w->mu);
	int rc = w->rc;
	w->rc = 0;
	pthread_mutex_unlock(&w->mu);
	return rc;
}

/* ---- the connection ---- */

static void relay_close(struct relay_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = 0;
}

/* Wait for `events` on the connection until deadline_ms. Returns 0, -ETIMEDOUT, or
 * -ECANCELED when the relay stops. */
static int relay_poll(struct relay_thread *t, short events, uint64_t deadline_ms)
{
	for (;;) {
		if (__atomic_load_n(&t->r->stop, __ATOMIC_RELAXED))
			return -ECANCELED;
		uint64_t now = relay_now_ms();
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		uint64_t wait = deadline_ms - now;
		if (wait > 250)
			wait = 250; /* notice a stop */
		struct pollfd pfd = { .fd = t->conn->fd, .events = events };
		int n = poll(&pfd, 1, (int)wait);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int relay_write(struct relay_thread *t, const char *p, size_t n, unsigned timeout_s)
{
	uint64_t deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
	while (n) {
		ssize_t w = send(t->conn->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			/* the timeout bounds each wait for progress, as Postfix's per-write */
			deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = relay_poll(t, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		return w < 0 ? -errno : -EPIPE;
	}
	return 0;
}

/* Read one reply (RFC 5321 4.2: "NNN-text" lines, then "NNN text"). Returns 0 and the
 * reply, -ETIMEDOUT, -ECONNRESET (closed), -EPROTO (not a reply) or -ECANCELED. */
static int relay_read_reply(struct relay_thread *t, unsigned timeout_s, struct relay_reply *rep)
{
	struct relay_conn *c = t->conn;
	uint64_t deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
	size_t tl = 0;
	unsigned lines = 0;
	rep->code = 0;
	rep->text[0] = '\0';
	for (;;) {
		char *nl = memchr(c->in, '\n', c->in_len);
		if (!nl && c->in_len == sizeof(c->in)) {
			/* an over-long line: keep its start, drop the rest up to its end */
			nl = c->in + sizeof(c->in) - 1;
		}
		if (!nl) {
			int rc = relay_poll(t, POLLIN, deadline);
			if (rc < 0)
				return rc;
			ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
			if (n == 0)
				return -ECONNRESET;
			if (n < 0) {
				if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
					continue;
				return -errno;
			}
			c->in_len += (size_t)n;
			continue;
		}
		size_t len = (size_t)(nl - c->in);
		size_t used = len + 1;
		if (len && c->in[len - 1] == '\r')
			len--;
		const char *l = c->in;
		if (len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
		    l[2] > '9' || (len > 3 && l[3] != ' ' && l[3] != '-'))
			return -EPROTO;
		int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		if (lines && code != rep->code)
			return -EPROTO;
		rep->code = code;
		bool last = len == 3 || l[3] == ' ';
		/* "250 text" first, then the text of continuation lines */
		size_t from = lines ? 4 : 0;
		if (from <= len) {
			if (lines && tl < sizeof(rep->text) - 1)
				rep->text[tl++] = ' ';
			for (size_t i = from; i < len && tl < sizeof(rep->text) - 1; i++) {
				unsigned char ch = (unsigned char)l[i];
				rep->text[tl++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
			}
			rep->text[tl] = '\0';
		}
		if (!lines && len > 3)
			rep->text[3] = ' ';
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (++lines > RELAY_REPLY_LINES)
			return -EPROTO;
		if (last)
			return 0;
	}
}

/* What the EHLO reply offers (RFC 5321 4.1.1.1; keywords are case-insensitive). */
static void relay_parse_ehlo(struct relay_conn *c, const char *text)
{
	/* the joined text: "250 host word word ..." lines separated by ' ' cannot be told
	 * apart, so look for each keyword as a word; SIZE takes the number after it */
	c->pipelining = c->eightbitmime = c->smtputf8 = c->has_size = c->dsn = false;
	c->size_limit = 0;
	const char *p = text;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (n == 10 && strncasecmp(p, "PIPELINING", n) == 0)
			c->pipelining = true;
		else if (n == 8 && strncasecmp(p, "8BITMIME", n) == 0)
			c->eightbitmime = true;
		else if (n == 8 && strncasecmp(p, "SMTPUTF8", n) == 0)
			c->smtputf8 = true;
		else if (n == 3 && strncasecmp(p, "DSN", n) == 0)
			c->dsn = true;
		else if (n == 4 && strncasecmp(p, "SIZE", n) == 0) {
			c->has_size = true;
			const char *q = p + n;
			if (*q == ' ' && q[1] >= '0' && q[1] <= '9')
				c->size_limit = strtoull(q + 1, NULL, 10);
		}
		p += n;
	}
}

/* Why a delivery attempt did not go through, in Postfix's words. */
struct relay_failure {
	bool permanent;
	char dsn[16];
	char why[RELAY_WHY_MAX];
};

static void relay_dsn_of(const struct relay_reply *rep, char *dsn, size_t len)
{
	/* RFC 3463 enhanced status code after the reply code, when the next hop sent one */
	const char *p = rep->text + 4;
	int a = 0, b = 0, c = 0, n = 0;
	if (strlen(rep->text) > 4 && sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 &&
	    a == rep->code / 100 && (p[n] == ' ' || p[n] == '\0'))
		snprintf(dsn, len, "%d.%d.%d", a, b, c);
	else
		snprintf(dsn, len, "%d.0.0", rep->code / 100);
}

static void relay_fail_reply(const char *host, struct relay_failure *f,
			     const struct relay_reply *rep, enum relay_phase ph)
{
	f->permanent = rep->code >= 500;
	relay_dsn_of(rep, f->dsn, sizeof(f->dsn));
	snprintf(f->why, sizeof(f->why), "host %s said: %s (in reply to %s command)", host,
		 rep->text, relay_phase_name(ph));
}

static void relay_fail_io(const char *host, struct relay_failure *f, int rc,
			  enum relay_phase ph)
{
	/* Postfix's texts: "... while receiving the initial server greeting", "... while
	 * sending RCPT TO", "... while sending message body" */
	bool cmd = ph != RELAY_PH_GREETING && ph != RELAY_PH_HELO && ph != RELAY_PH_BODY;
	const char *verb = cmd ? "sending " : ph == RELAY_PH_BODY ? "sending " : "";
	f->permanent = false;
	snprintf(f->dsn, sizeof(f->dsn), "4.4.2");
	if (rc == -ETIMEDOUT) {
		snprintf(f->why, sizeof(f->why), "conversation with %s timed out while %s%s",
			 host, verb, relay_phase_name(ph));
	} else if (rc == -EPROTO) {
		snprintf(f->dsn, sizeof(f->dsn), "4.5.0");
		snprintf(f->why, sizeof(f->why), "host %s sent a malformed reply while %s%s",
			 host, verb, relay_phase_name(ph));
	} else if (rc == -ECANCELED) {
		snprintf(f->dsn, sizeof(f->dsn), "4.3.0");
		snprintf(f->why, sizeof(f->why), "mail system is shutting down");
	} else {
		snprintf(f->why, sizeof(f->why), "lost connection with %s while %s%s", host,
			 verb, relay_phase_name(ph));
	}
}

/* Connect t->conn to its destination, read the greeting, EHLO (or LHLO). Returns 0, or
 * fills f, closes the socket and returns < 0. */
static int relay_connect(struct relay_thread *t, struct relay_failure *f)
{
	struct relay *r = t->r;
	struct relay_conn *c = t->conn;
	const struct relay_nexthop *nh = &c->dest->nh;
	const char *host = c->dest->host;
	bool lmtp = nh->kind == RELAY_TRANSPORT_LMTP;
	c->in_len = 0;
	c->fd = socket(nh->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int e = errno;
		snprintf(f->dsn, sizeof(f->dsn), "4.4.1");
		snprintf(f->why, sizeof(f->why), "connect to %s: %s", nh->name, strerror(e));
		f->permanent = false;
		return -e;
	}
	if (nh->addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	int rc = 0;
	if (connect(c->fd, (const struct sockaddr *)&nh->addr, nh->addrlen) != 0) {
		if (errno != EINPROGRESS)
			rc = -errno;
		else if ((rc = relay_poll(t, POLLOUT,
					  relay_now_ms() + (uint64_t)r->p.connect_timeout * 1000u)) ==
			 0) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			rc = -soerr;
		}
	}
	if (rc < 0) {
		snprintf(f->dsn, sizeof(f->dsn), "4.4.1");
		snprintf(f->why, sizeof(f->why), "connect to %s: %s", nh->name,
			 rc == -ETIMEDOUT ? "Connection timed out" : strerror(-rc));
		f->permanent = false;
		relay_close(c);
		return rc;
	}
	struct relay_reply rep;
	if ((rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
		relay_fail_io(host, f, rc, RELAY_PH_GREETING);
		relay_close(c);
		return rc;
	}
	if (rep.code != 220) {
		relay_fail_reply(host, f, &rep, RELAY_PH_GREETING);
		snprintf(f->why, sizeof(f->why), "host %s refused to talk to me: %s", host,
			 rep.text);
		f->permanent = false; /* Postfix defers on a 5xx greeting too (another MX) */
		relay_close(c);
		return -EPROTO;
	}
	char cmd[512];
	int n = snprintf(cmd, sizeof(cmd), "%s %s\r\n", lmtp ? "LHLO" : "EHLO", r->helo_name);
	if ((rc = relay_write(t, cmd, (size_t)n, r->p.helo_timeout)) < 0 ||
	    (rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
		relay_fail_io(host, f, rc, RELAY_PH_HELO);
		relay_close(c);
		return rc;
	}
	if (rep.code != 250 && !lmtp) {
		/* RFC 5321 4.1.4: a server that does not know EHLO gets HELO */
		n = snprintf(cmd, sizeof(cmd), "HELO %s\r\n", r->helo_name);
		if ((rc = relay_write(t, cmd, (size_t)n, r->p.helo_timeout)) < 0 ||
		    (rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
			relay_fail_io(host, f, rc, RELAY_PH_HELO);
			relay_close(c);
			return rc;
		}
		c->pipelining = c->eightbitmime = c->smtputf8 = c->has_size = c->dsn = false;
	} else if (rep.code == 250) {
		relay_parse_ehlo(c, rep.text);
	}
	if (rep.code != 250) {
		relay_fail_reply(host, f, &rep, RELAY_PH_HELO);
		f->permanent = false;
		relay_close(c);
		return -EPROTO;
	}
	return 0;
}

/* QUIT and close t->conn (not freed). */
static void relay_quit(struct relay_thread *t)
{
	struct relay_conn *c = t->conn;
	if (!c || c->fd < 0)
		return;
	struct relay_reply rep;
	unsigned to = t->r->p.quit_timeout;
	if (relay_write(t, "QUIT\r\n", 6, to) == 0)
		(void)relay_read_reply(t, to < 5 ? to : 5, &rep);
	relay_close(c);
}

/* ---- destinations and their connections ---- */

/* The destination for nh, created on first use. Under r->mu. NULL when out of memory or
 * over RELAY_MAX_DESTINATIONS. */
static struct relay_dest *relay_dest_get(struct relay *r, const struct relay_nexthop *nh)
{
	for (struct relay_dest *d = r->dests; d; d = d->next)
		if (strcmp(d->nh.key, nh->key) == 0)
			return d;
	if (r->ndests >= RELAY_MAX_DESTINATIONS)
		return NULL;
	struct relay_dest *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->nh = *nh;
	/* "host X said": the name without its port */
	snprintf(d->host, sizeof(d->host), "%s", nh->name);
	char *br = strrchr(d->host, ']');
	if (br)
		br[1] = '\0';
	d->next = r->dests;
	r->dests = d;
	r->ndests++;
	return d;
}

enum relay_acquire {
	RELAY_ACQ_CACHED, /* t->conn is an open cached connection */
	RELAY_ACQ_NEW,    /* t->conn is fresh: connect it */
	RELAY_ACQ_DEAD,   /* the destination is marked dead: why says so */
	RELAY_ACQ_BUSY,   /* at its concurrency limit: wait for a free slot */
	RELAY_ACQ_NOMEM,
};

static enum relay_acquire relay_conn_acquire(struct relay_thread *t, struct relay_dest *d,
					     char *why, size_t whylen)
{
	struct relay *r = t->r;
	pthread_mutex_lock(&r->mu);
	enum relay_acquire res;
	if (relay_now_ms() < d->dead_until_ms) {
		snprintf(why, whylen, "%s", d->dead_reason);
		res = RELAY_ACQ_DEAD;
	} else if (d->idle) {
		t->conn = d->idle;
		d->idle = t->conn->next;
		t->conn->next = NULL;
		res = RELAY_ACQ_CACHED;
	} else if (d->nconn < r->p.concurrency) {
		struct relay_conn *c = calloc(1, sizeof(*c));
		if (c) {
			c->fd = -1;
			c->dest = d;
			d->nconn++;
			t->conn = c;
			res = RELAY_ACQ_NEW;
		} else {
			res = RELAY_ACQ_NOMEM;
		}
	} else {
		res = RELAY_ACQ_BUSY;
	}
	pthread_mutex_unlock(&r->mu);
	return res;
}

/* Give t->conn back: cached when still open, else freed. Wakes messages that waited for a
 * connection slot. */
static void relay_conn_release(struct relay_thread *t)
{
	struct relay *r = t->r;
	struct relay_conn *c = t->conn;
	if (!c)
		return;
	t->conn = NULL;
	pthread_mutex_lock(&r->mu);
	struct relay_dest *d = c->dest;
	if (c->fd >= 0 && !r->stop) {
		c->idle_since_ms = relay_now_ms();
		c->next = d->idle;
		d->idle = c;
		c = NULL;
	} else {
		d->nconn--;
	}
	relay_wake_waiting(r);
	pthread_mutex_unlock(&r->mu);
	if (c) {
		relay_close(c);
		free(c);
	}
}

/* Close cached connections idle for smtp_connection_cache_time_limit (QUIT first), and
 * return the milliseconds until the next one expires (UINT64_MAX: none). Called without
 * r->mu. */
static uint64_t relay_close_idle(struct relay_thread *t)
{
	struct relay *r = t->r;
	uint64_t limit = (uint64_t)r->p.cache_time_limit * 1000u, next = UINT64_MAX;
	for (;;) {
		struct relay_conn *expired = NULL;
		uint64_t now = relay_now_ms();
		pthread_mutex_lock(&r->mu);
		next = UINT64_MAX;
		for (struct relay_dest *d = r->dests; d && !expired; d = d->next) {
			for (struct relay_conn **pc = &d->idle; *pc; pc = &(*pc)->next) {
				struct relay_conn *c = *pc;
				if (now >= c->idle_since_ms + limit) {
					*pc = c->next;
					c->next = NULL;
					d->nconn--;
					expired = c;
					break;
				}
				if (c->idle_since_ms + limit - now < next)
					next = c->idle_since_ms + limit - now;
			}
		}
		pthread_mutex_unlock(&r->mu);
		if (!expired)
			return next;
		struct relay_conn *mine = t->conn;
		t->conn = expired;
		relay_quit(t);
		t->conn = mine;
		free(expired);
		pthread_mutex_lock(&r->mu);
		relay_wake_waiting(r);
		pthread_mutex_unlock(&r->mu);
	}
}

/* ---- one message ---- */

static int relay_out(struct relay_thread *t, const char *p, size_t n)
{
	if (t->out_len + n > RELAY_OUT_SIZE) {
		int rc = relay_write(t, t->out, t->out_len, t->r->p.data_xfer_timeout);
		t->out_len = 0;
		if (rc < 0)
			return rc;
	}
	if (n > RELAY_OUT_SIZE)
		return relay_write(t, p, n, t->r->p.data_xfer_timeout);
	memcpy(t->out + t->out_len, p, n);
	t->out_len += n;
	return 0;
}

/* The message with dot-stuffing (RFC 5321 4.5.2) and the final ".". Lines end in CRLF in
 * the spool (the engine normalizes); a last line without one gets it. */
static int relay_send_body(struct relay_thread *t, const char *msg, size_t size)
{
	int rc;
	size_t i = 0;
	t->out_len = 0;
	while (i < size) {
		const char *nl = memchr(msg + i, '\n', size - i);
		size_t end = nl ? (size_t)(nl - msg) + 1 : size;
		if (msg[i] == '.' && (rc = relay_out(t, ".", 1)) < 0)
			return rc;
		if ((rc = relay_out(t, msg + i, end - i)) < 0)
			return rc;
		i = end;
	}
	if (size && msg[size - 1] != '\n' && (rc = relay_out(t, "\r\n", 2)) < 0)
		return rc;
	if ((rc = relay_out(t, ".\r\n", 3)) < 0)
		return rc;
	rc = relay_write(t, t->out, t->out_len, t->r->p.data_xfer_timeout);
	t->out_len = 0;
	return rc;
}

/* RFC 3461 5.2/5.3: a next hop that offers DSN gets the client's RET/ENVID and
 * NOTIFY/ORCPT along, so its notifications follow what the sender asked for. */
static size_t relay_dsn_param_text(char *out, size_t cap, char *const *params, size_t n,
			       const char *const *names)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		for (const char *const *k = names; *k; k++) {
			size_t kl = strlen(*k);
			if (strncasecmp(params[i], *k, kl) == 0 && params[i][kl] == '=') {
				int w = snprintf(out + len, cap - len, " %s", params[i]);
				if (w < 0 || (size_t)w >= cap - len)
					return len; /* bounded by cap: the envelope bounds them anyway */
				len += (size_t)w;
			}
		}
	}
	return len;
}

static bool relay_has_param(const struct spool_record *rec, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < rec->nmail_params; i++)
		if (strncasecmp(rec->mail_params[i], prefix, n) == 0)
			return true;
	return false;
}

/* The outcome of one attempt, per recipient. */
struct relay_outcome {
	enum spool_rcpt_state *st; /* per recipient: SENT, FAILED, or PENDING (deferred) */
	char (*text)[RELAY_WHY_MAX];
	char (*dsn)[16];
	bool *tried;
	const char **relay; /* relay= in the log: the destination's name, or "none" */
	bool *decided;      /* this attempt decided (or deferred) it: log and record it */
};

static void relay_set(struct relay_outcome *o, size_t i, enum spool_rcpt_state st,
		      const char *dsn, const char *text)
{
	o->st[i] = st;
	o->tried[i] = true;
	o->decided[i] = true;
	snprintf(o->dsn[i], sizeof(o->dsn[i]), "%s", dsn);
	snprintf(o->text[i], sizeof(o->text[i]), "%s", text);
}

static void relay_set_all(struct relay_outcome *o, const size_t *idx, size_t n,
			  const struct relay_failure *f)
{
	for (size_t k = 0; k < n; k++)
		relay_set(o, idx[k], f->permanent ? SPOOL_RCPT_FAILED : SPOOL_RCPT_PENDING, f->dsn,
			  f->why);
}

/* One SMTP/LMTP transaction for the pending recipients idx[0..n). Returns 0 when the
 * transaction ran (outcomes set), or a negative errno on a connection failure before
 * any reply about this message (the caller may retry on a fresh connection; f says
 * why). */
static int relay_transaction(struct relay_thread *t, const struct spool_record *rec,
			     const size_t *idx, size_t n, struct relay_outcome *o,
			     struct relay_failure *f)
{
	struct relay *r = t->r;
	struct relay_conn *c = t->conn;
	const char *host = c->dest->host;
	bool lmtp = c->dest->nh.kind == RELAY_TRANSPORT_LMTP;
	struct relay_reply rep;
	int rc;

	/* RFC 1870: refuse before sending what the next hop will not take */
	if (c->has_size && c->size_limit && rec->size > c->size_limit) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.3.4");
		snprintf(f->why, sizeof(f->why),
			 "message size %" PRIu64 " exceeds size limit %" PRIu64 " of server %s",
			 rec->size, c->size_limit, host);
		relay_set_all(o, idx, n, f);
		return 0;
	}
	bool utf8 = relay_has_param(rec, "SMTPUTF8");
	if (utf8 && !c->smtputf8) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.6.7");
		snprintf(f->why, sizeof(f->why), "SMTPUTF8 is required, but was not offered by "
						 "host %s",
			 host);
		relay_set_all(o, idx, n, f);
		return 0;
	}

	/* MAIL, RCPT..., DATA: one write with PIPELINING (RFC 2920), else one at a time */
	static const char *const mail_dsn[] = { "RET", "ENVID", NULL };
	static const char *const rcpt_dsn[] = { "NOTIFY", "ORCPT", NULL };
	size_t cap = 1024 + strlen(rec->sender), len = 0;
	for (size_t i = 0; i < rec->nmail_params; i++)
		cap += strlen(rec->mail_params[i]) + 1;
	for (size_t k = 0; k < n; k++) {
		cap += strlen(rec->rcpts[idx[k]].addr) + 16;
		for (size_t j = 0; j < rec->rcpts[idx[k]].nparams; j++)
			cap += strlen(rec->rcpts[idx[k]].params[j]) + 1;
	}
	char *cmds = malloc(cap);
	if (!cmds)
		return -ENOMEM;
	len += (size_t)snprintf(cmds + len, cap - len, "MAIL FROM:<%s>", rec->sender);
	if (c->has_size)
		len += (size_t)snprintf(cmds + len, cap - len, " SIZE=%" PRIu64, rec->size);
	if (c->eightbitmime && relay_has_param(rec, "BODY=8BITMIME"))
		len += (size_t)snprintf(cmds + len, cap - len, " BODY=8BITMIME");
	if (utf8)
		len += (size_t)snprintf(cmds + len, cap - len, " SMTPUTF8");
	if (c->dsn)
		len += relay_dsn_param_text(cmds + len, cap - len, rec->mail_params, rec->nmail_params,
					mail_dsn);
	len += (size_t)snprintf(cmds + len, cap - len, "\r\n");
	size_t mail_end = len;
	size_t *rcpt_end = malloc(n * sizeof(*rcpt_end));
	size_t *accepted = malloc(n * sizeof(*accepted));
	if (!rcpt_end || !accepted) {
		free(cmds);
		free(rcpt_end);
		free(accepted);
		return -ENOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		len += (size_t)snprintf(cmds + len, cap - len, "RCPT TO:<%s>",
					rec->rcpts[idx[k]].addr);
		if (c->dsn)
			len += relay_dsn_param_text(cmds + len, cap - len, rec->rcpts[idx[k]].params,
						rec->rcpts[idx[k]].nparams, rcpt_dsn);
		len += (size_t)snprintf(cmds + len, cap - len, "\r\n");
		rcpt_end[k] = len;
	}
	len += (size_t)snprintf(cmds + len, cap - len, "DATA\r\n");
	size_t naccepted = 0;
	bool any_reply = false;
	enum relay_phase ph = RELAY_PH_MAIL;

	if (c->pipelining) {
		if ((rc = relay_write(t, cmds, len, r->p.mail_timeout)) < 0)
			goto io_fail;
	} else if ((rc = relay_write(t, cmds, mail_end, r->p.mail_timeout)) < 0) {
		goto io_fail;
	}
	if ((rc = relay_read_reply(t, r->p.mail_timeout, &rep)) < 0)
		goto io_fail;
	any_reply = true;
	bool mail_ok = rep.code / 100 == 2;
	if (!mail_ok) {
		relay_fail_reply(host, f, &rep, RELAY_PH_MAIL);
		relay_set_all(o, idx, n, f);
	}
	ph = RELAY_PH_RCPT;
	for (size_t k = 0; k < n && (mail_ok || c->pipelining); k++) {
		if (!c->pipelining &&
		    (rc = relay_write(t, cmds + (k ? rcpt_end[k - 1] : mail_end),
				      rcpt_end[k] - (k ? rcpt_end[k - 1] : mail_end),
				      r->p.rcpt_timeout)) < 0)
			goto io_fail;
		if ((rc = relay_read_reply(t, r->p.rcpt_timeout, &rep)) < 0)
			goto io_fail;
		if (!mail_ok)
			continue; /* pipelined RCPTs after a refused MAIL: already decided */
		if (rep.code / 100 == 2) {
			accepted[naccepted++] = idx[k];
		} else {
			struct relay_failure rf;
			relay_fail_reply(host, &rf, &rep, RELAY_PH_RCPT);
			relay_set(o, idx[k], rf.permanent ? SPOOL_RCPT_FAILED : SPOOL_RCPT_PENDING,
				  rf.dsn, rf.why);
		}
	}
	ph = RELAY_PH_DATA;
	if (!c->pipelining && naccepted) {
		if ((rc = relay_write(t, "DATA\r\n", 6, r->p.data_init_timeout)) < 0)
			goto io_fail;
	}
	if (c->pipelining || naccepted) {
		if ((rc = relay_read_reply(t, r->p.data_init_timeout, &rep)) < 0)
			goto io_fail;
		if (rep.code == 354 && naccepted == 0) {
			/* RFC 2920 3.1 says a server refuses DATA without a valid recipient; one
			 * that did not gets an empty message it must not deliver */
			ph = RELAY_PH_DOT;
			if ((rc = relay_write(t, ".\r\n", 3, r->p.data_done_timeout)) < 0 ||
			    (rc = relay_read_reply(t, r->p.data_done_timeout, &rep)) < 0)
				goto io_fail;
		} else if (rep.code != 354 && naccepted) {
			struct relay_failure rf;
			relay_fail_reply(host, &rf, &rep, RELAY_PH_DATA);
			relay_set_all(o, accepted, naccepted, &rf);
			naccepted = 0;
		}
		if (rep.code == 354 && naccepted) {
			ph = RELAY_PH_BODY;
			if ((rc = relay_send_body(t, rec->message, rec->size)) < 0)
				goto io_fail;
			ph = RELAY_PH_DOT;
			/* RFC 2033 4.2: LMTP answers once per accepted recipient */
			size_t replies = lmtp ? naccepted : 1;
			for (size_t k = 0; k < replies; k++) {
				if ((rc = relay_read_reply(t, r->p.data_done_timeout, &rep)) < 0)
					goto io_fail;
				size_t from = lmtp ? k : 0, to = lmtp ? k + 1 : naccepted;
				for (size_t j = from; j < to; j++) {
					if (rep.code / 100 == 2) {
						char dsn[16];
						relay_dsn_of(&rep, dsn, sizeof(dsn));
						relay_set(o, accepted[j], SPOOL_RCPT_SENT, dsn,
							  rep.text);
					} else {
						struct relay_failure rf;
						relay_fail_reply(host, &rf, &rep, RELAY_PH_DOT);
						relay_set(o, accepted[j],
							  rf.permanent ? SPOOL_RCPT_FAILED
								       : SPOOL_RCPT_PENDING,
							  rf.dsn, rf.why);
					}
				}
			}
			naccepted = 0;
			goto done;
		}
	}
	/* no message went through: RSET so the connection can be reused (RFC 5321 4.1.1.5) */
	ph = RELAY_PH_RSET;
	if ((rc = relay_write(t, "RSET\r\n", 6, r->p.mail_timeout)) < 0 ||
	    (rc = relay_read_reply(t, r->p.mail_timeout, &rep)) < 0 || rep.code != 250)
		relay_close(c);
done:
	free(cmds);
	free(rcpt_end);
	free(accepted);
	return 0;

io_fail:
	relay_fail_io(host, f, rc, ph);
	relay_close(c);
	/* everything not decided yet is deferred */
	for (size_t k = 0; k < n; k++)
		if (!o->tried[idx[k]])
			relay_set(o, idx[k], SPOOL_RCPT_PENDING, f->dsn, f->why);
	for (size_t k = 0; k < naccepted; k++)
		relay_set(o, accepted[k], SPOOL_RCPT_PENDING, f->dsn, f->why);
	free(cmds);
	free(rcpt_end);
	free(accepted);
	return any_reply ? 0 : rc;
}

static uint64_t relay_backoff_ms(const struct relay *r, unsigned attempts)
{
	uint64_t d = (uint64_t)r->p.min_backoff * 1000u;
	for (unsigned i = 1; i < attempts && d < (uint64_t)r->p.max_backoff * 1000u; i++)
		d *= 2;
	if (d > (uint64_t)r->p.max_backoff * 1000u)
		d = (uint64_t)r->p.max_backoff * 1000u;
	return d;
}

/* ---- per-recipient state kept in memory (as recovery would rebuild it) ---- */

/* Grow e's per-recipient arrays to n. Returns 0 or -ENOMEM. */
static int relay_entry_grow(struct spool_msg_entry *e, size_t n)
{
	size_t want = n > e->nrstate ? n : e->nrstate;
	if (want == e->nrstate && (e->rtext || want == 0))
		return 0;
	uint8_t *ns = realloc(e->rstate, want);
	if (!ns)
		return -ENOMEM;
	memset(ns + e->nrstate, SPOOL_RCPT_PENDING, want - e->nrstate);
	e->rstate = ns;
	char **nt = realloc(e->rtext, want * sizeof(*nt));
	if (!nt)
		return -ENOMEM; /* rstate grew, nrstate did not: still consistent */
	size_t had = e->rtext ? e->nrstate : 0;
	memset(nt + had, 0, (want - had) * sizeof(*nt));
	e->rtext = nt;
	e->nrstate = (uint32_t)want;
	return 0;
}

static enum spool_rcpt_state relay_rstate(const struct spool_msg_entry *e, size_t i)
{
	return i < e->nrstate ? (enum spool_rcpt_state)e->rstate[i] : SPOOL_RCPT_PENDING;
}

/* A failed recipient's DELIVERY text is "X.Y.Z reason" (relay.h). Older records, or
 * odd text, get a status from the reply quoted in the reason, else 5.0.0. */
static void relay_split_failure(const char *text, char *status, size_t slen, const char **reason)
{
	int a = 0, b = 0, c = 0, n = 0;
	if (text && sscanf(text, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && (a == 4 || a == 5) &&
	    text[n] == ' ') {
		snprintf(status, slen, "%d.%d.%d", a, b, c);
		*reason = text + n + 1;
		return;
	}
	*reason = text && *text ? text : "delivery failed";
	const char *said = text ? strstr(text, " said: ") : NULL;
	if (said && sscanf(said + 7, "%*3d %1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && (a == 4 || a == 5))
		snprintf(status, slen, "%d.%d.%d", a, b, c);
	else if (said && (said[7] == '4' || said[7] == '5'))
		snprintf(status, slen, "%c.0.0", said[7]);
	else
		snprintf(status, slen, "5.0.0");
}

/* ---- routing: where each pending recipient goes ---- */

/* Decide the destination of each pending recipient idx[0..np) of rec. Network
 * destinations go to dest[i]; what the route itself decides (error:, retry:, discard:, a
 * table or configuration problem) is set in o. */
static void relay_route(struct relay_thread *t, const struct spool_record *rec, const size_t *idx,
			size_t np, struct relay_outcome *o, struct relay_dest **dest)
{
	struct relay *r = t->r;
	if (t->reader && tables_reader_renew(t->reader) < 0)
		mx_log(MX_LOG_WARNING, "transport_maps: cannot renew the table reader");
	char val[TABLE_VALUE_MAX + 1], err[256];
	struct relay_nexthop nh;
	for (size_t k = 0; k < np; k++) {
		size_t i = idx[k];
		const char *addr = rec->rcpts[i].addr;
		const char *value = NULL, *what = "relayhost";
		dest[i] = NULL;
		if (rec->filter) {
			value = rec->filter;
			what = "FILTER action";
		} else if (t->nmaps) {
			int rc = relay_transport_lookup(t->maps, t->nmaps, addr, &r->p.transport_opts,
							val, sizeof(val), NULL, 0);
			if (rc < 0) {
				/* a broken table must never reroute mail: wait for it to be fixed */
				char why[RELAY_WHY_MAX];
				snprintf(why, sizeof(why), "transport_maps lookup error for %s: %s",
					 addr, strerror(-rc));
				relay_set(o, i, SPOOL_RCPT_PENDING, "4.3.0", why);
				continue;
			}
			if (rc == 1) {
				value = val;
				what = "transport_maps";
			}
		}
		int prc = 0;
		if (value)
			prc = relay_nexthop_parse(value, r->p.have_default ? &r->p.dflt : NULL, &nh, err,
						  sizeof(err));
		else if (r->p.have_default)
			nh = r->p.dflt;
		else
			prc = mx_errf(err, sizeof(err), -EINVAL,
				      "relayhost is empty and transport_maps has no entry for it");
		if (prc < 0) {
			char why[RELAY_WHY_MAX];
			snprintf(why, sizeof(why), "mail transport unavailable: %s \"%.200s\": %.512s", what,
				 value ? value : "", err);
			relay_set(o, i, SPOOL_RCPT_PENDING, "4.3.5", why);
			continue;
		}
		switch (nh.kind) {
		case RELAY_TRANSPORT_ERROR:
			relay_set(o, i, SPOOL_RCPT_FAILED, nh.status, nh.text);
			break;
		case RELAY_TRANSPORT_RETRY:
			relay_set(o, i, SPOOL_RCPT_PENDING, nh.status, nh.text);
			break;
		case RELAY_TRANSPORT_DISCARD:
			/* Postfix's discard(8): "status=sent (discarded)" */
			relay_set(o, i, SPOOL_RCPT_SENT, "2.0.0", nh.text[0] ? nh.text : "discarded");
			break;
		case RELAY_TRANSPORT_SMTP:
		case RELAY_TRANSPORT_LMTP:
		case RELAY_TRANSPORT_KIND_MAX: {
			pthread_mutex_lock(&r->mu);
			dest[i] = relay_dest_get(r, &nh);
			pthread_mutex_unlock(&r->mu);
			if (!dest[i])
				relay_set(o, i, SPOOL_RCPT_PENDING, "4.3.0",
					  "too many destinations (or out of memory)");
			break;
		}
		}
	}
}

/* Deliver the recipients gidx[0..gn) of rec to destination d on one connection. Sets
 * *waiting when d is at its concurrency limit (nothing tried). */
static void relay_deliver_group(struct relay_thread *t, const struct spool_record *rec,
				struct relay_dest *d, const size_t *gidx, size_t gn,
				struct relay_outcome *o, bool *waiting)
{
	struct relay *r = t->r;
	struct relay_failure f = { 0 };
	for (int attempt = 0; attempt < 2; attempt++) {
		char why[RELAY_WHY_MAX];
		enum relay_acquire acq = relay_conn_acquire(t, d, why, sizeof(why));
		if (acq == RELAY_ACQ_BUSY) {
			*waiting = true;
			return;
		}
		if (acq == RELAY_ACQ_DEAD || acq == RELAY_ACQ_NOMEM) {
			snprintf(f.dsn, sizeof(f.dsn), acq == RELAY_ACQ_DEAD ? "4.4.1" : "4.3.0");
			snprintf(f.why, sizeof(f.why), "%s",
				 acq == RELAY_ACQ_DEAD ? why : "out of memory");
			f.permanent = false;
			relay_set_all(o, gidx, gn, &f);
			return;
		}
		bool reused = acq == RELAY_ACQ_CACHED;
		if (!reused && relay_connect(t, &f) < 0) {
			relay_set_all(o, gidx, gn, &f);
			if (strncmp(f.why, "connect to", 10) == 0) {
				/* the next hop is down: the rest for it waits too, without trying */
				pthread_mutex_lock(&r->mu);
				d->dead_until_ms = relay_now_ms() + (uint64_t)r->p.min_backoff * 1000u;
				snprintf(d->dead_reason, sizeof(d->dead_reason), "%s", f.why);
				pthread_mutex_unlock(&r->mu);
			}
			relay_conn_release(t);
			return;
		}
		for (size_t k = 0; k < gn; k++) {
			o->tried[gidx[k]] = false;
			o->relay[gidx[k]] = d->nh.name;
		}
		int rc = relay_transaction(t, rec, gidx, gn, o, &f);
		if (rc < 0 && reused && rc != -ECANCELED) {
			/* a cached connection the next hop closed meanwhile: once more, fresh */
			relay_conn_release(t);
			continue;
		}
		if (rc < 0)
			relay_set_all(o, gidx, gn, &f);
		relay_conn_release(t);
		return;
	}
}

/* ---- notifications ---- */

static void relay_noop_news(void *owner, void *arg)
{
	(void)owner;
	(void)arg;
}

/* Wait for the writer's news about this thread's messages (or 250 ms). */
static void relay_client_wait(struct relay_thread *t)
{
	struct pollfd pfd = { .fd = t->wake_fd, .events = POLLIN };
	if (poll(&pfd, 1, 250) > 0) {
		uint64_t v;
		if (read(t->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			mx_log(MX_LOG_WARNING, "relay: reading the writer's eventfd: %s",
			       strerror(errno));
	}
	spool_client_poll(t->client, relay_noop_news, NULL);
}

/* Spool a message the gateway itself writes (a notification): null sender, one
 * recipient, made durable like mail from a client. Returns 0 or a negative errno. */
static int relay_spool_message(struct relay_thread *t, const char *id, const char *rcpt,
			       const char *mail_params, const char *bytes, size_t len)
{
	struct spool_msg *sm = spool_msg_new(t->client, t);
	if (!sm)
		return -ENOMEM;
	struct spool_envelope env = {
		.queue_id = id,
		.arrival = (int64_t)time(NULL),
		.client_addr = "",
		.client_port = 0,
		.client_name = "localhost",
		.helo = mx_span_cstr(""),
		.protocol = "local",
		.sender = mx_span_cstr(""),
		.mail_params = mx_span_cstr(mail_params),
	};
	int rc = spool_msg_begin(sm, &env);
	if (rc == 0)
		rc = spool_msg_add_rcpt(sm, mx_span_cstr(rcpt), mx_span_cstr(""));
	for (size_t off = 0; rc == 0 && off < len;) {
		while (spool_msg_busy(sm) && spool_msg_result(sm) >= 0)
			relay_client_wait(t);
		size_t n = len - off < SPOOL_FRAGMENT_SIZE ? len - off : SPOOL_FRAGMENT_SIZE;
		rc = spool_msg_append(sm, bytes + off, n);
		off += n;
	}
	if (rc == 0)
		rc = spool_msg_commit(sm);
	while (rc == 0 && (rc = spool_msg_result(sm)) == 1)
		relay_client_wait(t);
	spool_msg_release(sm);
	return rc;
}

/* Every recipient of m is decided and some failed: send the sender a notification when it
 * is owed. Returns 0 (sent, or none owed) or a negative errno (try again later). */
static int relay_notify(struct relay_thread *t, struct relay_msg *m, const struct spool_record *rec,
			char *why, size_t whylen)
{
	struct relay *r = t->r;
	size_t n = 0;
	for (size_t i = 0; i < rec->nrcpt; i++)
		n += relay_rstate(&m->e, i) == SPOOL_RCPT_FAILED;
	struct relay_dsn_rcpt *dr = calloc(n ? n : 1, sizeof(*dr));
	char (*status)[16] = calloc(n ? n : 1, sizeof(*status));
	char (*mta)[160] = calloc(n ? n : 1, sizeof(*mta));
	char (*diag)[RELAY_WHY_MAX] = calloc(n ? n : 1, sizeof(*diag));
	int rc = 0;
	if (!dr || !status || !mta || !diag) {
		rc = mx_errf(why, whylen, -ENOMEM, "out of memory");
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < rec->nrcpt; i++) {
		if (relay_rstate(&m->e, i) != SPOOL_RCPT_FAILED)
			continue;
		const char *text = m->e.rtext && i < m->e.nrstate ? m->e.rtext[i] : NULL;
		const char *reason;
		relay_split_failure(text, status[k], sizeof(status[k]), &reason);
		dr[k] = (struct relay_dsn_rcpt){ .index = i, .status = status[k], .reason = reason,
						 .expired = status[k][0] == '4' };
		/* "host NAME[ADDR] said: REPLY (in reply to X command)" names the next hop */
		const char *said = strstr(reason, " said: ");
		if (strncmp(reason, "host ", 5) == 0 && said) {
			snprintf(mta[k], sizeof(mta[k]), "%.*s", (int)(said - reason - 5), reason + 5);
			char *br = strchr(mta[k], '[');
			if (br)
				*br = '\0';
			const char *d = said + 7, *end = strstr(d, " (in reply to ");
			snprintf(diag[k], sizeof(diag[k]), "%.*s", (int)(end ? end - d : (long)strlen(d)),
				 d);
			dr[k].remote_mta = mta[k];
			dr[k].diagnostic = diag[k];
		}
		k++;
	}
	if (!relay_dsn_owed(rec, dr, n)) {
		mx_log(MX_LOG_INFO, "%s: sender non-delivery notification not sent: %s", m->e.id,
		       rec->sender[0] ? "no recipient asked for one (NOTIFY)"
				      : "the sender is the null sender");
		goto out;
	}
	char nid[QUEUE_ID_SIZE];
	pthread_mutex_lock(&r->mu);
	queue_id_next(&r->idgen, queue_id_clock_us(), nid);
	pthread_mutex_unlock(&r->mu);
	struct relay_dsn_params dp = {
		.myhostname = r->helo_name,
		.bounce_size_limit = r->p.bounce_size_limit,
		.now = (int64_t)time(NULL),
		.dsn_queue_id = nid,
	};
	char *msg = NULL;
	size_t len = 0;
	rc = relay_dsn_build(&dp, rec, dr, n, &msg, &len);
	if (rc < 0) {
		mx_errf(why, whylen, rc, "cannot build the delivery status notification: %s",
			strerror(-rc));
		goto out;
	}
	/* 8-bit content needs BODY=8BITMIME at the next hop; UTF-8 addresses need SMTPUTF8 */
	bool eight = false;
	for (size_t i = 0; i < len && !eight; i++)
		eight = (unsigned char)msg[i] >= 0x80;
	bool utf8 = false;
	for (size_t i = 0; i < rec->nmail_params; i++)
		utf8 |= strcasecmp(rec->mail_params[i], "SMTPUTF8") == 0;
	char params[64];
	snprintf(params, sizeof(params), "%s%s%s", eight ? "BODY=8BITMIME" : "",
		 eight && utf8 ? " " : "", utf8 ? "SMTPUTF8" : "");
	rc = relay_spool_message(t, nid, rec->sender, params, msg, len);
	if (rc < 0) {
		mx_errf(why, whylen, rc, "cannot spool the delivery status notification: %s",
			strerror(-rc));
	} else {
		mx_log(MX_LOG_INFO, "%s: from=<>, size=%zu, nrcpt=1 (queue active)", nid, len);
		mx_log(MX_LOG_INFO, "%s: sender non-delivery notification: %s", m->e.id, nid);
		atomic_fetch_add(&r->notified, 1);
	}
	free(msg);
out:
	free(dr);
	free(status);
	free(mta);
	free(diag);
	return rc;
}

/* ---- one delivery attempt ---- */

enum relay_result {
	RELAY_DONE,     /* retired: remove it */
	RELAY_DEFERRED, /* try again after the backoff */
	RELAY_WAITING,  /* only waiting for a connection slot: try again when one frees */
};

static const char *relay_status_name(enum spool_rcpt_state st)
{
	return st == SPOOL_RCPT_SENT ? "sent" : st == SPOOL_RCPT_FAILED ? "bounced" : "deferred";
}

static void relay_log_rcpt(const struct relay_msg *m, const char *addr, const char *relay,
			   double delay, const char *dsn, const char *status, const char *text)
{
	/* Postfix's precision: delay=0.25, delay=1.2, delay=51 */
	mx_log(MX_LOG_INFO, "%s: to=<%s>, relay=%s, delay=%.*f, dsn=%s, status=%s (%s)", m->e.id,
	       addr, relay, delay < 1 ? 2 : delay < 10 ? 1 : 0, delay, dsn, status, text);
}

/* Remember a decided recipient in memory as recovery would after a restart: we do not
 * send twice in this run even if its record failed. */
static void relay_entry_decide(struct spool_msg_entry *e, size_t n, size_t i,
			       enum spool_rcpt_state st, const char *text)
{
	if (relay_entry_grow(e, n) < 0)
		return;
	e->rstate[i] = (uint8_t)st;
	free(e->rtext[i]);
	e->rtext[i] = text ? strdup(text) : NULL;
}

static enum relay_result relay_deliver(struct relay_thread *t, struct relay_msg *m)
{
	struct relay *r = t->r;
	struct spool_record *rec = NULL;
	char err[RELAY_WHY_MAX];
	int rc = spool_index_read(r->seg_dir_fd, &m->e, &rec, err, sizeof(err));
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: cannot read the message from the spool: %s; retrying "
				       "later",
		       m->e.id, err);
		relay_set_reason(m, err);
		return RELAY_DEFERRED;
	}
	size_t n = rec->nrcpt;
	struct relay_outcome o = {
		.st = calloc(n, sizeof(*o.st)),
		.text = calloc(n, sizeof(*o.text)),
		.dsn = calloc(n, sizeof(*o.dsn)),
		.tried = calloc(n, sizeof(*o.tried)),
		.relay = calloc(n, sizeof(*o.relay)),
		.decided = calloc(n, sizeof(*o.decided)),
	};
	size_t *idx = calloc(n, sizeof(*idx)), *gidx = calloc(n, sizeof(*gidx));
	struct relay_dest **dest = calloc(n, sizeof(*dest));
	enum relay_result result = RELAY_DEFERRED;
	if (!o.st || !o.text || !o.dsn || !o.tried || !o.relay || !o.decided || !idx || !gidx ||
	    !dest || relay_entry_grow(&m->e, n) < 0) {
		mx_log(MX_LOG_WARNING, "%s: out of memory; retrying later", m->e.id);
		relay_set_reason(m, "out of memory");
		goto out;
	}
	size_t np = 0;
	for (size_t i = 0; i < n; i++) {
		o.st[i] = relay_rstate(&m->e, i);
		if (o.st[i] == SPOOL_RCPT_PENDING)
			idx[np++] = i;
	}

	/* where each goes, then one transaction per destination */
	bool waiting = false;
	if (np) {
		relay_route(t, rec, idx, np, &o, dest);
		for (size_t k = 0; k < np; k++) {
			struct relay_dest *d = dest[idx[k]];
			if (!d)
				continue;
			size_t gn = 0;
			for (size_t j = k; j < np; j++) {
				if (dest[idx[j]] != d)
					continue;
				gidx[gn++] = idx[j];
				if (j > k)
					dest[idx[j]] = NULL; /* grouped now */
			}
			dest[idx[k]] = NULL;
			relay_deliver_group(t, rec, d, gidx, gn, &o, &waiting);
		}
	}

	/* log and record each decided recipient; durable before it counts */
	double delay = relay_wall() - (double)rec->arrival;
	if (delay < 0)
		delay = 0;
	size_t deferred = 0;
	struct relay_wait *w = &t->wait;
	for (size_t k = 0; k < np; k++) {
		size_t i = idx[k];
		if (!o.decided[i])
			continue; /* waiting for a connection slot: not tried */
		const char *text = o.text[i][0] ? o.text[i] : "delivery temporarily suspended";
		relay_log_rcpt(m, rec->rcpts[i].addr, o.relay[i] ? o.relay[i] : "none", delay,
			       o.dsn[i][0] ? o.dsn[i] : "4.0.0", relay_status_name(o.st[i]), text);
		if (o.st[i] == SPOOL_RCPT_PENDING) {
			deferred++;
			relay_set_reason(m, text);
			continue;
		}
		char stored[RELAY_WHY_MAX + 20];
		if (o.st[i] == SPOOL_RCPT_SENT) {
			atomic_fetch_add(&r->sent, 1);
			snprintf(stored, sizeof(stored), "%s", o.text[i]);
		} else {
			atomic_fetch_add(&r->bounced, 1);
			snprintf(stored, sizeof(stored), "%s %s", o.dsn[i][0] ? o.dsn[i] : "5.0.0",
				 text);
		}
		relay_record(r, w, SPOOL_REC_DELIVERY, m->e.id, (uint32_t)i, o.st[i], stored);
		relay_entry_decide(&m->e, n, i, o.st[i], stored);
	}
	int wrc = relay_wait_end(w);
	if (wrc < 0)
		mx_log(MX_LOG_WARNING,
		       "%s: cannot record the delivery status in the spool: %s; recipients may "
		       "be sent again after a restart",
		       m->e.id, strerror(-wrc));

	size_t pending = 0;
	for (size_t i = 0; i < n; i++)
		pending += relay_rstate(&m->e, i) == SPOOL_RCPT_PENDING;
	if (pending && !deferred && waiting) {
		result = RELAY_WAITING;
		goto out;
	}
	if (pending) {
		/* maximal_queue_lifetime: after this attempt, the deferred ones are returned */
		unsigned life = rec->sender[0] ? r->p.max_queue_lifetime : r->p.bounce_queue_lifetime;
		if (relay_wall() - (double)rec->arrival < (double)life) {
			atomic_fetch_add(&r->deferred, 1);
			goto out;
		}
		mx_log(MX_LOG_INFO, "%s: from=<%s>, status=expired, returned to sender", m->e.id,
		       rec->sender);
		for (size_t i = 0; i < n; i++) {
			if (relay_rstate(&m->e, i) != SPOOL_RCPT_PENDING)
				continue;
			const char *last = o.decided[i] && o.text[i][0] ? o.text[i]
					   : m->reason	       ? m->reason
								: "delivery temporarily suspended";
			const char *dsn = o.decided[i] && o.dsn[i][0] == '4' ? o.dsn[i] : "4.4.7";
			char stored[RELAY_WHY_MAX + 20];
			snprintf(stored, sizeof(stored), "%s %s", dsn, last);
			relay_record(r, w, SPOOL_REC_DELIVERY, m->e.id, (uint32_t)i,
				     SPOOL_RCPT_FAILED, stored);
			relay_entry_decide(&m->e, n, i, SPOOL_RCPT_FAILED, stored);
			atomic_fetch_add(&r->expired, 1);
		}
		if ((wrc = relay_wait_end(w)) < 0) {
			mx_log(MX_LOG_WARNING, "%s: cannot record the expiry in the spool: %s",
			       m->e.id, strerror(-wrc));
			goto out;
		}
	}

	/* nothing pending: a notification for the failed ones, then retire */
	bool any_failed = false;
	for (size_t i = 0; i < n; i++)
		any_failed |= relay_rstate(&m->e, i) == SPOOL_RCPT_FAILED;
	if (any_failed && (rc = relay_notify(t, m, rec, err, sizeof(err))) < 0) {
		mx_log(MX_LOG_WARNING, "%s: %s; retrying later", m->e.id, err);
		relay_set_reason(m, err);
		goto out;
	}
	relay_record(r, w, SPOOL_REC_RETIRE, m->e.id, 0, SPOOL_RCPT_SENT, NULL);
	if ((wrc = relay_wait_end(w)) == 0) {
		mx_log(MX_LOG_INFO, "%s: removed", m->e.id);
		atomic_fetch_add(&r->removed, 1);
		result = RELAY_DONE;
	} else {
		/* kept: a later attempt finds nothing pending and retires it then */
		mx_log(MX_LOG_WARNING, "%s: cannot record the message as done: %s; retrying later",
		       m->e.id, strerror(-wrc));
		relay_set_reason(m, "cannot record the message as done");
	}
out:
	free(o.st);
	free(o.text);
	free(o.dsn);
	free(o.tried);
	free(o.relay);
	free(o.decided);
	free(idx);
	free(gidx);
	free(dest);
	spool_record_free(rec);
	return result;
}

/* ---- reclaim and relocation ---- */

struct relay_relocation {
	struct relay_wait wait;
	struct spool_msg_entry *moved;
};

static void relay_relocated(void *arg, int rc, struct spool_msg_entry *moved)
{
	struct relay_relocation *rl = arg;
	pthread_mutex_lock(&rl->wait.mu);
	rl->moved = moved;
	pthread_mutex_unlock(&rl->wait.mu);
	relay_wait_done(&rl->wait, rc);
}

static void relay_apply_wants(struct relay *r, struct relay_msg *m);

/* The segments below the newest two mostly hold dead bytes while live messages pin them:
 * copy those messages forward so the segments can go. Only messages that are waiting
 * (deferred, held, for a slot, for their DSN) qualify: the others leave by themselves.
 * Relay thread, r->mu not held. */
static void relay_relocate_old(struct relay_thread *t, uint64_t floor)
{
	struct relay *r = t->r;
	uint64_t cur = spool_current_segment(r->p.spool);
	if (cur < floor + 2)
		return;
	uint64_t old_bytes = (cur - 1 - floor) * spool_segment_size(r->p.spool), live = 0;
	enum { BATCH = 256 };
	struct relay_msg *pick[BATCH];
	size_t npick = 0;
	pthread_mutex_lock(&r->mu);
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->min_seg + 1 < cur)
			live += m->e.size + 4096;
	bool skipped = false;
	if (live && old_bytes >= RELAY_RELOCATE_RATIO * live) {
		for (struct relay_msg *m = r->all; m && npick < BATCH; m = m->next) {
			if (m->min_seg + 1 >= cur)
				continue;
			if (m->busy || m->in_ready) {
				skipped = true;
				continue;
			}
			m->busy = true;
			pick[npick++] = m;
		}
	}
	/* A message being tried now (or about to be) cannot move; if it stays, it must be
	 * moved later, and nothing else may ask for another pass once the traffic stops: ask
	 * for one now (at most one a second, RELAY_RECLAIM_MS). */
	if (skipped)
		r->reclaim_wanted = true;
	pthread_mutex_unlock(&r->mu);
	for (size_t k = 0; k < npick; k++) {
		struct relay_msg *m = pick[k];
		struct relay_relocation rl = { .moved = NULL };
		relay_wait_init(&rl.wait);
		relay_wait_add(&rl.wait, 0);
		int rc = spool_relocate(r->p.spool, &m->e, relay_relocated, &rl);
		if (rc < 0)
			relay_wait_done(&rl.wait, rc);
		rc = relay_wait_end(&rl.wait);
		relay_wait_destroy(&rl.wait);
		pthread_mutex_lock(&r->mu);
		if (rc == 0 && rl.moved) {
			spool_msg_entry_clear(&m->e);
			m->e = *rl.moved;
			free(rl.moved);
			m->min_seg = spool_msg_entry_min_seg(&m->e);
			atomic_fetch_add(&r->relocated, 1);
		} else if (rc < 0) {
			mx_log(MX_LOG_WARNING, "%s: cannot relocate the message to a newer segment: "
					       "%s; it stays where it is",
			       m->e.id, strerror(-rc));
		}
		m->busy = false;
		relay_apply_wants(r, m); /* may remove it */
		pthread_mutex_unlock(&r->mu);
	}
	if (npick)
		mx_log(MX_LOG_INFO, "spool: %zu waiting message(s) moved to segment %" PRIu64
				    " so older segments can be deleted",
		       npick, cur);
}

/* The lowest segment a live message needs (or the writer's floor). */
static uint64_t relay_floor(struct relay *r)
{
	/* the writer's floor first (spool_reclaim_floor()), then ours */
	uint64_t floor = spool_reclaim_floor(r->p.spool);
	pthread_mutex_lock(&r->mu);
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->min_seg < floor)
			floor = m->min_seg;
	pthread_mutex_unlock(&r->mu);
	return floor;
}

/* Delete segments no live message needs. Relay thread, r->mu not held. */
static void relay_reclaim(struct relay_thread *t)
{
	struct relay *r = t->r;
	pthread_mutex_lock(&r->mu);
	r->last_reclaim_ms = relay_now_ms();
	r->reclaim_wanted = false;
	pthread_mutex_unlock(&r->mu);
	relay_relocate_old(t, relay_floor(r));
	uint64_t floor = relay_floor(r);
	unsigned removed;
	uint64_t freed;
	int rc = spool_reclaim(r->p.spool, floor, &removed, &freed);
	if (rc < 0)
		mx_log(MX_LOG_WARNING, "spool: cannot remove delivered segments: %s", strerror(-rc));
	if (removed) {
		atomic_fetch_add(&r->reclaimed, removed);
		mx_log(MX_LOG_INFO, "spool: %u delivered segment(s) removed, %" PRIu64 " bytes freed",
		       removed, freed);
	}
}

/* ---- operator changes (relay_admin) ---- */

/* Write the records an operator change needs for the messages ms[0..n) (all marked busy
 * by the caller), wait until they are durable, and apply the change. */
static int relay_admin_apply(struct relay *r, enum relay_op op, struct relay_msg **ms,
			     size_t n)
{
	struct relay_wait w;
	relay_wait_init(&w);
	for (size_t k = 0; k < n; k++) {
		struct relay_msg *m = ms[k];
		if (op == RELAY_HOLD)
			relay_record_hold(r, &w, m->e.id, true, "mxgate-queue hold");
		else if (op == RELAY_RELEASE)
			relay_record_hold(r, &w, m->e.id, false, "mxgate-queue release");
		else if (op == RELAY_DELETE)
			relay_record(r, &w, SPOOL_REC_RETIRE, m->e.id, 0, SPOOL_RCPT_SENT, NULL);
	}
	int rc = relay_wait_end(&w);
	relay_wait_destroy(&w);
	pthread_mutex_lock(&r->mu);
	uint64_t now = relay_now_ms();
	for (size_t k = 0; k < n; k++) {
		struct relay_msg *m = ms[k];
		m->busy = false;
		if (rc < 0) {
			relay_apply_wants(r, m);
			continue;
		}
		switch (op) {
		case RELAY_HOLD:
			m->e.held = true;
			free(m->e.hold_reason);
			m->e.hold_reason = strdup("mxgate-queue hold");
			mx_log(MX_LOG_INFO, "%s: placed on hold", m->e.id);
			relay_ready_unlink(r, m);
			break;
		case RELAY_RELEASE:
			m->e.held = false;
			free(m->e.hold_reason);
			m->e.hold_reason = NULL;
			mx_log(MX_LOG_INFO, "%s: released from hold", m->e.id);
			m->attempts = 0;
			relay_ready_push(r, m);
			break;
		case RELAY_DELETE:
			mx_log(MX_LOG_INFO, "%s: removed", m->e.id);
			atomic_fetch_add(&r->removed, 1);
			relay_remove(r, m);
			r->reclaim_wanted = true;
			continue;
		case RELAY_REQUEUE:
			m->attempts = 0;
			/* fall through */
		case RELAY_FLUSH:
			m->next_try_ms = now;
			relay_ready_push(r, m);
			break;
		case RELAY_OP_MAX:
			break;
		}
		relay_apply_wants(r, m);
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* Apply operator changes asked for while m was busy. Under r->mu; m not busy. May remove
 * m. The records are written on this thread, with r->mu released meanwhile. */
static void relay_apply_wants(struct relay *r, struct relay_msg *m)
{
	enum relay_op op;
	if (m->want_delete)
		op = RELAY_DELETE;
	else if (m->want_hold && !m->e.held)
		op = RELAY_HOLD;
	else if (m->want_release && m->e.held)
		op = RELAY_RELEASE;
	else {
		m->want_hold = m->want_release = false;
		return;
	}
	m->want_delete = m->want_hold = m->want_release = false;
	m->busy = true;
	relay_ready_unlink(r, m);
	pthread_mutex_unlock(&r->mu);
	(void)relay_admin_apply(r, op, &m, 1);
	pthread_mutex_lock(&r->mu);
}

const char *relay_op_name(enum relay_op op)
{
	switch (op) {
	case RELAY_HOLD: return "hold";
	case RELAY_RELEASE: return "release";
	case RELAY_DELETE: return "delete";
	case RELAY_REQUEUE: return "requeue";
	case RELAY_FLUSH: return "flush";
	case RELAY_OP_MAX: break;
	}
	return "?";
}

/* Does op change m? Under r->mu. */
static bool relay_op_applies(const struct relay_msg *m, enum relay_op op)
{
	switch (op) {
	case RELAY_HOLD: return !m->e.held;
	case RELAY_RELEASE: return m->e.held;
	case RELAY_DELETE: return true;
	case RELAY_REQUEUE:
	case RELAY_FLUSH: return !m->e.held && (m->deferred || m->waiting);
	case RELAY_OP_MAX: break;
	}
	return false;
}

int relay_admin(struct relay *r, enum relay_op op, const char *id)
{
	if ((unsigned)op >= RELAY_OP_MAX)
		return -EINVAL;
	if (r->p.keep_only && (op == RELAY_FLUSH || op == RELAY_REQUEUE))
		return -EDESTADDRREQ; /* nowhere to deliver to: say so, do not pretend */
	pthread_mutex_lock(&r->mu);
	if (op == RELAY_FLUSH || op == RELAY_REQUEUE) {
		/* the operator says the next hops are back: stop skipping them */
		for (struct relay_dest *d = r->dests; d; d = d->next)
			d->dead_until_ms = 0;
	}
	size_t cap = 0, n = 0;
	for (struct relay_msg *m = r->all; m; m = m->next)
		cap++;
	struct relay_msg **ms = calloc(cap ? cap : 1, sizeof(*ms));
	if (!ms) {
		pthread_mutex_unlock(&r->mu);
		return -ENOMEM;
	}
	int changed = 0;
	bool found = id == NULL;
	for (struct relay_msg *m = r->all; m; m = m->next) {
		if (id && strcmp(m->e.id, id) != 0)
			continue;
		found = true;
		if (!relay_op_applies(m, op))
			continue;
		changed++;
		if (m->busy) {
			/* a delivery attempt runs: its outcome counts; the change follows */
			m->want_delete |= op == RELAY_DELETE;
			m->want_hold |= op == RELAY_HOLD;
			m->want_release |= op == RELAY_RELEASE;
			if (op == RELAY_HOLD)
				m->want_release = false;
			if (op == RELAY_RELEASE)
				m->want_hold = false;
			continue;
		}
		m->busy = true;
		relay_ready_unlink(r, m);
		ms[n++] = m;
	}
	pthread_mutex_unlock(&r->mu);
	int rc = n ? relay_admin_apply(r, op, ms, n) : 0;
	free(ms);
	if (!found)
		return -ENOENT;
	return rc < 0 ? rc : changed;
}

/* The envelope of an indexed message, without its bytes. */
static int relay_read_envelope(struct relay *r, const struct spool_msg_entry *e,
			       struct spool_record **out, char *err, size_t errlen)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(e->commit_seg, name);
	int fd = openat(r->seg_dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mx_errf(err, errlen, -errno, "segment %s: %s", name, strerror(errno));
	char *buf = malloc(e->env_len ? e->env_len : 1);
	if (!buf) {
		close(fd);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	int rc = spool_pread_all(fd, buf, e->env_len, e->env_off);
	close(fd);
	if (rc < 0)
		rc = mx_errf(err, errlen, rc, "segment %s: %s", name, strerror(-rc));
	else
		rc = spool_envelope_parse(buf, e->env_len, out, err, errlen);
	free(buf);
	return rc;
}

/* One message of a listing: a snapshot taken under the lock. */
struct relay_list_item {
	struct relay_msg_info info;
	struct spool_msg_entry e;
	char *reason;
};

static int relay_list_item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct relay_list_item *)a)->info.id,
		      ((const struct relay_list_item *)b)->info.id);
}

int relay_list(struct relay *r, relay_list_fn *fn, void *ctx)
{
	/* a snapshot, then the envelopes without the lock */
	pthread_mutex_lock(&r->mu);
	size_t n = 0;
	for (struct relay_msg *m = r->all; m; m = m->next)
		n++;
	struct relay_list_item *items = calloc(n ? n : 1, sizeof(*items));
	if (!items) {
		pthread_mutex_unlock(&r->mu);
		return -ENOMEM;
	}
	size_t k = 0;
	int64_t wall_now = (int64_t)time(NULL);
	uint64_t now = relay_now_ms();
	for (struct relay_msg *m = r->all; m; m = m->next) {
		struct relay_list_item *it = &items[k];
		if (spool_msg_entry_copy(&it->e, &m->e) < 0)
			continue;
		bool bounce_pending = false;
		if (!m->e.held) {
			bool any_pending = m->e.nrstate == 0;
			for (uint32_t i = 0; i < m->e.nrstate; i++)
				any_pending |= m->e.rstate[i] == SPOOL_RCPT_PENDING;
			bounce_pending = !any_pending;
		}
		const char *why = m->e.held ? m->e.hold_reason : m->reason;
		it->reason = why ? strdup(why) : NULL;
		it->info = (struct relay_msg_info){
			.size = m->e.size,
			.active = m->busy,
			.held = m->e.held,
			.deferred = m->deferred || m->waiting,
			.bounce_pending = bounce_pending,
			.attempts = m->attempts,
			.next_attempt = m->deferred && m->next_try_ms > now
						? wall_now + (int64_t)((m->next_try_ms - now) / 1000u)
						: 0,
		};
		snprintf(it->info.id, sizeof(it->info.id), "%s", m->e.id);
		k++;
	}
	pthread_mutex_unlock(&r->mu);
	/* ID order is arrival order; a queue of a million must list in n log n */
	qsort(items, k, sizeof(*items), relay_list_item_cmp);
	int rc = 0;
	for (size_t i = 0; i < k; i++) {
		struct relay_list_item *it = &items[i];
		it->info.reason = it->reason;
		it->info.entry = &it->e;
		struct spool_record *rec = NULL;
		char err[256];
		if (rc == 0 && relay_read_envelope(r, &it->e, &rec, err, sizeof(err)) == 0) {
			if (fn(ctx, &it->info, rec) != 0)
				rc = 1;
			spool_record_free(rec);
		}
		spool_msg_entry_clear(&it->e);
		free(it->reason);
	}
	free(items);
	return 0;
}

int relay_read(struct relay *r, const char *id, struct spool_record **out,
		     char *err, size_t errlen)
{
	struct spool_msg_entry e;
	pthread_mutex_lock(&r->mu);
	struct relay_msg *m = relay_find(r, id);
	int rc = m ? spool_msg_entry_copy(&e, &m->e) : -ENOENT;
	pthread_mutex_unlock(&r->mu);
	if (rc == -ENOENT)
		return mx_errf(err, errlen, rc, "%s: no such message in the queue", id);
	if (rc < 0)
		return mx_errf(err, errlen, rc, "out of memory");
	rc = spool_index_read(r->seg_dir_fd, &e, out, err, errlen);
	spool_msg_entry_clear(&e);
	return rc;
}

/* ---- the threads ---- */

static void *relay_main(void *arg)
{
	struct relay_thread *t = arg;
	struct relay *r = t->r;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->stop)
			break;
		uint64_t now = relay_now_ms();
		relay_queue_run(r, now);
		/* A new segment: the older ones may hold nothing live any more (messages
		 * delivered, or given up by their clients), whether or not we delivered. */
		uint64_t cur = spool_current_segment(r->p.spool);
		if (cur != r->reclaim_seg) {
			r->reclaim_seg = cur;
			r->reclaim_wanted = true;
		}
		if (r->reclaim_wanted && now >= r->last_reclaim_ms + RELAY_RECLAIM_MS) {
			r->reclaim_wanted = false;
			pthread_mutex_unlock(&r->mu);
			relay_reclaim(t);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		struct relay_msg *m = relay_ready_pop(r);
		if (!m) {
			/* nothing to do: close idle cached connections, wait for work, the next
			 * queue run, or a reclaim */
			pthread_mutex_unlock(&r->mu);
			uint64_t idle = relay_close_idle(t);
			pthread_mutex_lock(&r->mu);
			if (r->ready_head || r->stop)
				continue;
			uint64_t wait = (uint64_t)r->p.queue_run_delay * 1000u;
			if (idle < wait)
				wait = idle;
			/* look for a new segment (above) at least this often */
			if (RELAY_RECLAIM_MS < wait)
				wait = RELAY_RECLAIM_MS;
			if (wait == 0)
				wait = 1;
			struct timespec until;
			relay_deadline(&until, wait);
			pthread_cond_timedwait(&r->cv, &r->mu, &until);
			continue;
		}
		if (m->busy || m->e.held)
			continue; /* an operator got to it first */
		m->busy = true;
		pthread_mutex_unlock(&r->mu);

		enum relay_result res = relay_deliver(t, m);

		pthread_mutex_lock(&r->mu);
		m->busy = false;
		if (res == RELAY_DONE) {
			relay_remove(r, m);
			r->reclaim_wanted = true;
			continue;
		}
		if (!r->stop) {
			if (res == RELAY_WAITING) {
				relay_set_waiting(r, m, true);
			} else {
				m->attempts++;
				m->deferred = true;
				m->next_try_ms = relay_now_ms() + relay_backoff_ms(r, m->attempts);
			}
		}
		relay_apply_wants(r, m);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* ---- set-up ---- */

static int relay_split_maps(struct relay *r, char *err, size_t errlen)
{
	if (!r->transport_maps)
		return 0;
	const char *p = r->transport_maps;
	for (;;) {
		p += strspn(p, ", \t\r\n");
		if (!*p)
			return 0;
		size_t len = strcspn(p, ", \t\r\n");
		if (r->nmaps == RELAY_MAX_MAPS)
			return mx_errf(err, errlen, -EINVAL, "transport_maps: more than %d tables",
				       RELAY_MAX_MAPS);
		if (len >= sizeof(r->map_specs[0]))
			return mx_errf(err, errlen, -EINVAL, "transport_maps: \"%.*s\" is too long",
				       (int)len, p);
		memcpy(r->map_specs[r->nmaps], p, len);
		r->map_specs[r->nmaps][len] = '\0';
		r->nmaps++;
		p += len;
	}
}

static int relay_thread_init(struct relay *r, struct relay_thread *t, char *err,
			     size_t errlen)
{
	t->r = r;
	t->wake_fd = -1;
	relay_wait_init(&t->wait);
	t->out = malloc(RELAY_OUT_SIZE);
	if (!t->out)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->wake_fd < 0)
		return mx_errf(err, errlen, -errno, "eventfd: %s", strerror(errno));
	t->client = spool_client_new(r->p.spool, t->wake_fd);
	if (!t->client)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	if (r->nmaps) {
		int rc = tables_reader_open(r->p.tables, &t->reader);
		if (rc < 0)
			return mx_errf(err, errlen, rc, "transport_maps: cannot open a table reader: %s",
				       strerror(-rc));
		for (size_t i = 0; i < r->nmaps; i++) {
			rc = table_open(t->reader, r->map_specs[i], &t->maps[i], err, errlen);
			if (rc < 0)
				return rc;
			t->nmaps = i + 1;
		}
	}
	return 0;
}

static void relay_thread_fini(struct relay_thread *t)
{
	if (!t->r)
		return;
	if (t->conn) {
		relay_close(t->conn);
		free(t->conn);
		t->conn = NULL;
	}
	for (size_t i = 0; i < t->nmaps; i++)
		table_close(t->maps[i]);
	if (t->reader)
		tables_reader_close(t->reader);
	free(t->out);
	relay_wait_destroy(&t->wait);
	t->r = NULL;
}

int relay_create(struct relay **out, const struct relay_params *p, char *err,
		       size_t errlen)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	r->p = *p;
	r->seg_dir_fd = -1;
	r->helo_name = strdup(p->helo_name);
	r->transport_maps = p->transport_maps ? strdup(p->transport_maps) : NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc;
	if (!r->helo_name || (p->transport_maps && !r->transport_maps)) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	r->p.helo_name = r->helo_name;
	r->p.transport_maps = r->transport_maps;
	if ((rc = relay_split_maps(r, err, errlen)) < 0)
		goto fail;
	if (r->nmaps && !p->tables) {
		rc = mx_errf(err, errlen, -EINVAL, "transport_maps needs the table store "
						   "(mxgate_table_directory)");
		goto fail;
	}
	if (r->p.concurrency == 0)
		r->p.concurrency = 1;
	if (r->p.concurrency > RELAY_MAX_THREADS)
		r->p.concurrency = RELAY_MAX_THREADS;
	if (r->p.threads == 0)
		r->p.threads = r->p.keep_only ? 1 : 2 * r->p.concurrency;
	if (r->p.threads > RELAY_MAX_THREADS)
		r->p.threads = RELAY_MAX_THREADS;
	if (r->p.queue_run_delay == 0)
		r->p.queue_run_delay = 1;
	if (r->p.min_backoff == 0)
		r->p.min_backoff = 1;
	if (r->p.max_backoff < r->p.min_backoff)
		r->p.max_backoff = r->p.min_backoff;
	r->seg_dir_fd = spool_seg_dir_fd(p->spool);
	r->last_run_ms = relay_now_ms();
	r->reclaim_wanted = true; /* segments recovery found fully delivered */
	/* notifications get IDs of their own "worker", after everything in the spool */
	assert(p->spool_index < QUEUE_ID_MAX_WORKERS / 2);
	queue_id_gen_init(&r->idgen, QUEUE_ID_MAX_WORKERS - 1 - p->spool_index,
			  spool_newest_id_us(p->spool));

	r->threads = calloc(r->p.threads, sizeof(*r->threads));
	if (!r->threads) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < r->p.threads; i++)
		if ((rc = relay_thread_init(r, &r->threads[i], err, errlen)) < 0)
			goto fail;

	/* recovered messages: only what is still pending */
	const struct spool_index *idx = spool_recovered(p->spool);
	for (size_t i = 0; i < idx->n; i++) {
		struct relay_msg *m = calloc(1, sizeof(*m));
		if (!m || spool_msg_entry_copy(&m->e, &idx->msgs[i]) < 0) {
			free(m);
			rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
			goto fail;
		}
		/* a message whose every recipient is decided (a failed one awaits its DSN) is
		 * found so at its first turn: the notification, then the retirement */
		pthread_mutex_lock(&r->mu);
		relay_add(r, m);
		pthread_mutex_unlock(&r->mu);
	}
	spool_set_committed_hook(p->spool, relay_committed, r);
	*out = r;
	return 0;
fail:
	relay_free(r);
	return rc;
}

int relay_start(struct relay *r)
{
	for (unsigned i = 0; i < r->p.threads; i++) {
		struct relay_thread *t = &r->threads[i];
		int rc = pthread_create(&t->tid, NULL, relay_main, t);
		if (rc != 0)
			return -rc;
		pthread_setname_np(t->tid, "mxgate-relay");
		t->started = true;
		r->nthreads = i + 1;
	}
	return 0;
}

void relay_stop(struct relay *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	__atomic_store_n(&r->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < r->nthreads; i++) {
		if (r->threads[i].started) {
			pthread_join(r->threads[i].tid, NULL);
			r->threads[i].started = false;
		}
	}
	/* cached connections: QUIT, politely */
	if (r->threads && r->p.threads) {
		struct relay_thread *t = &r->threads[0];
		for (struct relay_dest *d = r->dests; d; d = d->next) {
			while (d->idle) {
				struct relay_conn *c = d->idle;
				d->idle = c->next;
				d->nconn--;
				/* relay_poll() sees stop: QUIT is written without waiting */
				struct relay_conn *mine = t->conn;
				t->conn = c;
				relay_quit(t);
				t->conn = mine;
				free(c);
			}
		}
	}
}

/* After spool_stop(): the writer no longer hands messages over. */
void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->threads) {
		for (unsigned i = 0; i < r->p.threads; i++) {
			relay_thread_fini(&r->threads[i]);
			spool_client_free(r->threads[i].client);
			if (r->threads[i].wake_fd >= 0)
				close(r->threads[i].wake_fd);
		}
		free(r->threads);
	}
	while (r->all)
		relay_remove(r, r->all);
	while (r->dests) {
		struct relay_dest *d = r->dests;
		r->dests = d->next;
		while (d->idle) {
			struct relay_conn *c = d->idle;
			d->idle = c->next;
			relay_close(c);
			free(c);
		}
		free(d);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->helo_name);
	free(r->transport_maps);
	free(r);
}

void relay_stats(struct relay *r, struct relay_stats *out)
{
	out->queued = atomic_load(&r->queued);
	out->sent = atomic_load(&r->sent);
	out->deferred = atomic_load(&r->deferred);
	out->bounced = atomic_load(&r->bounced);
	out->removed = atomic_load(&r->removed);
	out->reclaimed = atomic_load(&r->reclaimed);
	out->expired = atomic_load(&r->expired);
	out->notified = atomic_load(&r->notified);
	out->relocated = atomic_load(&r->relocated);
}
