#include "dataplane/spool/spool_relay.h"

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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/log.h"

#include "mxgate/errf.h"

/* Bounds on what the next hop may send us. */
#define RELAY_LINE_MAX 2048   /* one reply line (RFC 5321 4.5.3.1.5 says 512) */
#define RELAY_REPLY_LINES 100 /* lines of one multi-line reply */
#define RELAY_TEXT_MAX 1024   /* reply text kept for logs and DELIVERY records */
#define RELAY_OUT_SIZE 65536  /* body output buffer */
#define RELAY_RECLAIM_MS 1000 /* at most one reclaim pass a second */

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

struct relay_msg {
	struct spool_msg_entry e; /* e.rstate: per recipient state, grown as needed */
	uint64_t min_seg;
	uint64_t next_try_ms;
	unsigned attempts;
	bool busy;
	bool final; /* nothing left to deliver (a failed recipient awaits its DSN) */
	bool deferred;
	struct relay_msg *prev, *next;   /* all live messages */
	struct relay_msg *qnext;         /* ready queue */
};

struct relay_conn {
	int fd;
	bool pipelining, eightbitmime, smtputf8, has_size;
	uint64_t size_limit;
	uint64_t idle_since_ms;
	char in[RELAY_LINE_MAX * 2];
	size_t in_len;
};

struct relay_reply {
	int code;
	char text[RELAY_TEXT_MAX]; /* the lines joined by a space, as Postfix logs them */
};

struct relay_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned pending;
	int rc;
};

struct relay_thread {
	struct spool_relay *r;
	pthread_t tid;
	bool started;
	struct relay_conn conn;
	struct relay_wait wait;
	char *out;
	size_t out_len;
};

struct spool_relay {
	struct spool_relay_params p;
	char *host;
	char *helo_name;
	char peer[96]; /* 127.0.0.1[127.0.0.1]:25 */
	char name[72]; /* 127.0.0.1[127.0.0.1] */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int seg_dir_fd;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct relay_msg *all;
	struct relay_msg *ready_head, *ready_tail;
	uint64_t last_run_ms;
	uint64_t dead_until_ms; /* the next hop failed: defer without trying until then */
	char dead_reason[RELAY_TEXT_MAX + 160];
	uint64_t last_reclaim_ms;
	bool reclaim_wanted;

	unsigned nthreads;
	struct relay_thread *threads;

	atomic_uint_fast64_t queued, sent, deferred, bounced, removed, reclaimed;
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

/* ---- the queue ---- */

static void relay_ready_push(struct spool_relay *r, struct relay_msg *m)
{
	m->qnext = NULL;
	m->deferred = false;
	if (r->ready_tail)
		r->ready_tail->qnext = m;
	else
		r->ready_head = m;
	r->ready_tail = m;
}

/* Under r->mu. */
static void relay_add(struct spool_relay *r, struct relay_msg *m)
{
	m->min_seg = spool_msg_entry_min_seg(&m->e);
	m->prev = NULL;
	m->next = r->all;
	if (r->all)
		r->all->prev = m;
	r->all = m;
	atomic_fetch_add(&r->queued, 1);
	relay_ready_push(r, m);
	pthread_cond_signal(&r->cv);
}

static void relay_remove(struct spool_relay *r, struct relay_msg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		r->all = m->next;
	if (m->next)
		m->next->prev = m->prev;
	atomic_fetch_sub(&r->queued, 1);
	spool_msg_entry_clear(&m->e);
	free(m);
}

static void relay_committed(void *ctx, struct spool_msg_entry *e)
{
	struct spool_relay *r = ctx;
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
	pthread_mutex_lock(&r->mu);
	relay_add(r, m);
	pthread_mutex_unlock(&r->mu);
}

/* A queue run: deferred messages whose time has come become ready (Postfix's qmgr scans
 * the deferred queue every queue_run_delay). Under r->mu. */
static void relay_queue_run(struct spool_relay *r, uint64_t now)
{
	if (now < r->last_run_ms + (uint64_t)r->p.queue_run_delay * 1000u)
		return;
	r->last_run_ms = now;
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->deferred && !m->busy && !m->final && m->next_try_ms <= now)
			relay_ready_push(r, m);
}

/* ---- waiting for the writer ---- */

static void relay_status_done(void *arg, int rc)
{
	struct relay_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	if (rc < 0 && w->rc == 0)
		w->rc = rc;
	w->pending--;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int relay_status(struct relay_thread *t, enum spool_rec_type type, const char *id,
			uint32_t rcpt, enum spool_rcpt_state st, const char *text)
{
	pthread_mutex_lock(&t->wait.mu);
	t->wait.pending++;
	pthread_mutex_unlock(&t->wait.mu);
	int rc = spool_status_append(t->r->p.spool, type, id, rcpt, st, text, relay_status_done,
				     &t->wait);
	if (rc < 0) {
		pthread_mutex_lock(&t->wait.mu);
		t->wait.pending--;
		if (t->wait.rc == 0)
			t->wait.rc = rc;
		pthread_mutex_unlock(&t->wait.mu);
	}
	return rc;
}

/* Wait until every record handed over is durable. Returns 0 or the first error. */
static int relay_status_wait(struct relay_thread *t)
{
	pthread_mutex_lock(&t->wait.mu);
	while (t->wait.pending)
		pthread_cond_wait(&t->wait.cv, &t->wait.mu);
	int rc = t->wait.rc;
	t->wait.rc = 0;
	pthread_mutex_unlock(&t->wait.mu);
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
		struct pollfd pfd = { .fd = t->conn.fd, .events = events };
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
		ssize_t w = send(t->conn.fd, p, n, MSG_NOSIGNAL);
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
	struct relay_conn *c = &t->conn;
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
	c->pipelining = c->eightbitmime = c->smtputf8 = c->has_size = false;
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
	char why[RELAY_TEXT_MAX + 160];
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

static void relay_fail_reply(struct spool_relay *r, struct relay_failure *f,
			     const struct relay_reply *rep, enum relay_phase ph)
{
	f->permanent = rep->code >= 500;
	relay_dsn_of(rep, f->dsn, sizeof(f->dsn));
	snprintf(f->why, sizeof(f->why), "host %s said: %s (in reply to %s command)", r->name,
		 rep->text, relay_phase_name(ph));
}

static void relay_fail_io(struct spool_relay *r, struct relay_failure *f, int rc,
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
			 r->name, verb, relay_phase_name(ph));
	} else if (rc == -EPROTO) {
		snprintf(f->dsn, sizeof(f->dsn), "4.5.0");
		snprintf(f->why, sizeof(f->why), "host %s sent a malformed reply while %s%s",
			 r->name, verb, relay_phase_name(ph));
	} else if (rc == -ECANCELED) {
		snprintf(f->dsn, sizeof(f->dsn), "4.3.0");
		snprintf(f->why, sizeof(f->why), "mail system is shutting down");
	} else {
		snprintf(f->why, sizeof(f->why), "lost connection with %s while %s%s", r->name,
			 verb, relay_phase_name(ph));
	}
}

/* Connect, read the greeting, EHLO (or LHLO). Returns 0, or fills f and returns < 0. */
static int relay_connect(struct relay_thread *t, struct relay_failure *f)
{
	struct spool_relay *r = t->r;
	struct relay_conn *c = &t->conn;
	c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int e = errno;
		snprintf(f->dsn, sizeof(f->dsn), "4.4.1");
		snprintf(f->why, sizeof(f->why), "connect to %s: %s", r->peer, strerror(e));
		f->permanent = false;
		return -e;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int rc = 0;
	if (connect(c->fd, (const struct sockaddr *)&r->addr, r->addrlen) != 0) {
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
		snprintf(f->why, sizeof(f->why), "connect to %s: %s", r->peer,
			 rc == -ETIMEDOUT ? "Connection timed out" : strerror(-rc));
		f->permanent = false;
		relay_close(c);
		return rc;
	}
	struct relay_reply rep;
	if ((rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
		relay_fail_io(r, f, rc, RELAY_PH_GREETING);
		relay_close(c);
		return rc;
	}
	if (rep.code != 220) {
		relay_fail_reply(r, f, &rep, RELAY_PH_GREETING);
		snprintf(f->why, sizeof(f->why), "host %s refused to talk to me: %s", r->name,
			 rep.text);
		f->permanent = false; /* Postfix defers on a 5xx greeting too (another MX) */
		relay_close(c);
		return -EPROTO;
	}
	char cmd[512];
	int n = snprintf(cmd, sizeof(cmd), "%s %s\r\n", r->p.lmtp ? "LHLO" : "EHLO",
			 r->helo_name);
	if ((rc = relay_write(t, cmd, (size_t)n, r->p.helo_timeout)) < 0 ||
	    (rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
		relay_fail_io(r, f, rc, RELAY_PH_HELO);
		relay_close(c);
		return rc;
	}
	if (rep.code != 250 && !r->p.lmtp) {
		/* RFC 5321 4.1.4: a server that does not know EHLO gets HELO */
		n = snprintf(cmd, sizeof(cmd), "HELO %s\r\n", r->helo_name);
		if ((rc = relay_write(t, cmd, (size_t)n, r->p.helo_timeout)) < 0 ||
		    (rc = relay_read_reply(t, r->p.helo_timeout, &rep)) < 0) {
			relay_fail_io(r, f, rc, RELAY_PH_HELO);
			relay_close(c);
			return rc;
		}
		c->pipelining = c->eightbitmime = c->smtputf8 = c->has_size = false;
	} else if (rep.code == 250) {
		relay_parse_ehlo(c, rep.text);
	}
	if (rep.code != 250) {
		relay_fail_reply(r, f, &rep, RELAY_PH_HELO);
		f->permanent = false;
		relay_close(c);
		return -EPROTO;
	}
	return 0;
}

static void relay_quit(struct relay_thread *t)
{
	if (t->conn.fd < 0)
		return;
	struct relay_reply rep;
	if (relay_write(t, "QUIT\r\n", 6, t->r->p.quit_timeout) == 0)
		(void)relay_read_reply(t, t->r->p.quit_timeout < 5 ? t->r->p.quit_timeout : 5, &rep);
	relay_close(&t->conn);
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
	char (*text)[RELAY_TEXT_MAX + 160];
	char (*dsn)[16];
	bool *tried;
};

static void relay_set(struct relay_outcome *o, size_t i, enum spool_rcpt_state st,
		      const char *dsn, const char *text)
{
	o->st[i] = st;
	o->tried[i] = true;
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
	struct spool_relay *r = t->r;
	struct relay_conn *c = &t->conn;
	struct relay_reply rep;
	int rc;

	/* RFC 1870: refuse before sending what the next hop will not take */
	if (c->has_size && c->size_limit && rec->size > c->size_limit) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.3.4");
		snprintf(f->why, sizeof(f->why),
			 "message size %" PRIu64 " exceeds size limit %" PRIu64 " of server %s",
			 rec->size, c->size_limit, r->name);
		relay_set_all(o, idx, n, f);
		return 0;
	}
	bool utf8 = relay_has_param(rec, "SMTPUTF8");
	if (utf8 && !c->smtputf8) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.6.7");
		snprintf(f->why, sizeof(f->why), "SMTPUTF8 is required, but was not offered by "
						 "host %s",
			 r->name);
		relay_set_all(o, idx, n, f);
		return 0;
	}

	/* MAIL, RCPT..., DATA: one write with PIPELINING (RFC 2920), else one at a time */
	size_t cap = 1024 + strlen(rec->sender), len = 0;
	for (size_t k = 0; k < n; k++)
		cap += strlen(rec->rcpts[idx[k]].addr) + 16;
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
		len += (size_t)snprintf(cmds + len, cap - len, "RCPT TO:<%s>\r\n",
					rec->rcpts[idx[k]].addr);
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
		relay_fail_reply(r, f, &rep, RELAY_PH_MAIL);
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
			relay_fail_reply(r, &rf, &rep, RELAY_PH_RCPT);
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
			relay_fail_reply(r, &rf, &rep, RELAY_PH_DATA);
			relay_set_all(o, accepted, naccepted, &rf);
			naccepted = 0;
		}
		if (rep.code == 354 && naccepted) {
			ph = RELAY_PH_BODY;
			if ((rc = relay_send_body(t, rec->message, rec->size)) < 0)
				goto io_fail;
			ph = RELAY_PH_DOT;
			/* RFC 2033 4.2: LMTP answers once per accepted recipient */
			size_t replies = r->p.lmtp ? naccepted : 1;
			for (size_t k = 0; k < replies; k++) {
				if ((rc = relay_read_reply(t, r->p.data_done_timeout, &rep)) < 0)
					goto io_fail;
				size_t from = r->p.lmtp ? k : 0, to = r->p.lmtp ? k + 1 : naccepted;
				for (size_t j = from; j < to; j++) {
					if (rep.code / 100 == 2) {
						char dsn[16];
						relay_dsn_of(&rep, dsn, sizeof(dsn));
						relay_set(o, accepted[j], SPOOL_RCPT_SENT, dsn,
							  rep.text);
					} else {
						struct relay_failure rf;
						relay_fail_reply(r, &rf, &rep, RELAY_PH_DOT);
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
	relay_fail_io(r, f, rc, ph);
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

static uint64_t relay_backoff_ms(const struct spool_relay *r, unsigned attempts)
{
	uint64_t d = (uint64_t)r->p.min_backoff * 1000u;
	for (unsigned i = 1; i < attempts && d < (uint64_t)r->p.max_backoff * 1000u; i++)
		d *= 2;
	if (d > (uint64_t)r->p.max_backoff * 1000u)
		d = (uint64_t)r->p.max_backoff * 1000u;
	return d;
}

/* Try to deliver m. Returns true when nothing is left to deliver. */
static bool relay_deliver(struct relay_thread *t, struct relay_msg *m)
{
	struct spool_relay *r = t->r;
	struct spool_record *rec = NULL;
	char err[256];
	int rc = spool_index_read(r->seg_dir_fd, &m->e, &rec, err, sizeof(err));
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: cannot read the message from the spool: %s; retrying "
				       "later",
		       m->e.id, err);
		return false;
	}
	size_t n = rec->nrcpt;
	struct relay_outcome o = {
		.st = calloc(n, sizeof(*o.st)),
		.text = calloc(n, sizeof(*o.text)),
		.dsn = calloc(n, sizeof(*o.dsn)),
		.tried = calloc(n, sizeof(*o.tried)),
	};
	size_t *idx = calloc(n, sizeof(*idx));
	bool done = false;
	if (!o.st || !o.text || !o.dsn || !o.tried || !idx) {
		mx_log(MX_LOG_WARNING, "%s: out of memory; retrying later", m->e.id);
		goto out;
	}
	size_t np = 0;
	bool any_failed = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t st = i < m->e.nrstate ? m->e.rstate[i] : SPOOL_RCPT_PENDING;
		o.st[i] = (enum spool_rcpt_state)st;
		if (st == SPOOL_RCPT_PENDING)
			idx[np++] = i;
		any_failed |= st == SPOOL_RCPT_FAILED;
	}

	struct relay_failure f = { 0 };
	bool connected = false;
	if (np) {
		uint64_t now = relay_now_ms();
		pthread_mutex_lock(&r->mu);
		bool dead = now < r->dead_until_ms;
		if (dead)
			snprintf(f.why, sizeof(f.why), "%s", r->dead_reason);
		pthread_mutex_unlock(&r->mu);
		if (dead) {
			snprintf(f.dsn, sizeof(f.dsn), "4.4.1");
			relay_set_all(&o, idx, np, &f);
		} else {
			for (int attempt = 0; attempt < 2; attempt++) {
				bool reused = t->conn.fd >= 0;
				if (!reused && relay_connect(t, &f) < 0) {
					relay_set_all(&o, idx, np, &f);
					if (f.dsn[0] == '4' && strncmp(f.why, "connect to", 10) == 0) {
						/* the next hop is down: the rest waits too */
						pthread_mutex_lock(&r->mu);
						r->dead_until_ms =
							relay_now_ms() +
							(uint64_t)r->p.min_backoff * 1000u;
						snprintf(r->dead_reason, sizeof(r->dead_reason),
							 "%s", f.why);
						pthread_mutex_unlock(&r->mu);
					}
					break;
				}
				connected = true;
				memset(o.tried, 0, n * sizeof(*o.tried));
				rc = relay_transaction(t, rec, idx, np, &o, &f);
				/* a cached connection the next hop closed meanwhile: once more on
				 * a fresh one */
				if (rc < 0 && reused && rc != -ECANCELED)
					continue;
				if (rc < 0)
					relay_set_all(&o, idx, np, &f);
				break;
			}
		}
	}
	t->conn.idle_since_ms = relay_now_ms();

	/* log and record each decided recipient; durable before it counts */
	double delay = relay_wall() - (double)rec->arrival;
	if (delay < 0)
		delay = 0;
	char relay_name[128];
	snprintf(relay_name, sizeof(relay_name), "%s", connected ? r->peer : "none");
	size_t pending = 0;
	for (size_t k = 0; k < np; k++) {
		size_t i = idx[k];
		const char *status = o.st[i] == SPOOL_RCPT_SENT     ? "sent"
				     : o.st[i] == SPOOL_RCPT_FAILED ? "bounced"
								    : "deferred";
		/* Postfix's precision: delay=0.25, delay=1.2, delay=51 */
		mx_log(MX_LOG_INFO, "%s: to=<%s>, relay=%s, delay=%.*f, dsn=%s, status=%s (%s)",
		       m->e.id, rec->rcpts[i].addr, relay_name,
		       delay < 1 ? 2 : delay < 10 ? 1 : 0, delay,
		       o.dsn[i][0] ? o.dsn[i] : "4.0.0", status,
		       o.text[i][0] ? o.text[i] : "delivery temporarily suspended");
		if (o.st[i] == SPOOL_RCPT_PENDING) {
			pending++;
			continue;
		}
		if (o.st[i] == SPOOL_RCPT_SENT)
			atomic_fetch_add(&r->sent, 1);
		else {
			atomic_fetch_add(&r->bounced, 1);
			any_failed = true;
		}
		/* a failed hand-over shows in relay_status_wait() */
		(void)relay_status(t, SPOOL_REC_DELIVERY, m->e.id, (uint32_t)i, o.st[i], o.text[i]);
	}
	int wrc = relay_status_wait(t);
	if (wrc < 0) {
		mx_log(MX_LOG_WARNING,
		       "%s: cannot record the delivery status in the spool: %s; recipients may "
		       "be sent again after a restart",
		       m->e.id, strerror(-wrc));
	}
	/* the in-memory state follows what was decided, even if the record failed: we do
	 * not send twice in this run */
	for (size_t k = 0; k < np; k++) {
		size_t i = idx[k];
		if (o.st[i] == SPOOL_RCPT_PENDING)
			continue;
		if (m->e.nrstate < n) {
			uint8_t *ns = realloc(m->e.rstate, n);
			if (!ns)
				continue;
			memset(ns + m->e.nrstate, SPOOL_RCPT_PENDING, n - m->e.nrstate);
			m->e.rstate = ns;
			m->e.nrstate = (uint32_t)n;
		}
		m->e.rstate[i] = (uint8_t)o.st[i];
	}
	if (pending) {
		atomic_fetch_add(&r->deferred, 1);
		goto out;
	}
	done = true;
	if (!any_failed) {
		if (relay_status(t, SPOOL_REC_RETIRE, m->e.id, 0, SPOOL_RCPT_SENT, NULL) == 0 &&
		    (wrc = relay_status_wait(t)) == 0) {
			mx_log(MX_LOG_INFO, "%s: removed", m->e.id);
			atomic_fetch_add(&r->removed, 1);
		} else {
			mx_log(MX_LOG_WARNING,
			       "%s: cannot record the message as delivered; it may be delivered "
			       "again after a restart",
			       m->e.id);
		}
	}
out:
	free(o.st);
	free(o.text);
	free(o.dsn);
	free(o.tried);
	free(idx);
	spool_record_free(rec);
	return done;
}

/* Delete segments no live message needs. Relay thread, r->mu not held. */
static void relay_reclaim(struct spool_relay *r)
{
	/* the writer's floor first (spool_reclaim_floor()), then ours */
	uint64_t floor = spool_reclaim_floor(r->p.spool);
	pthread_mutex_lock(&r->mu);
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->min_seg < floor)
			floor = m->min_seg;
	r->last_reclaim_ms = relay_now_ms();
	r->reclaim_wanted = false;
	pthread_mutex_unlock(&r->mu);
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

static void *relay_main(void *arg)
{
	struct relay_thread *t = arg;
	struct spool_relay *r = t->r;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->stop)
			break;
		uint64_t now = relay_now_ms();
		relay_queue_run(r, now);
		if (r->reclaim_wanted && now >= r->last_reclaim_ms + RELAY_RECLAIM_MS) {
			r->reclaim_wanted = false;
			pthread_mutex_unlock(&r->mu);
			relay_reclaim(r);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		struct relay_msg *m = r->ready_head;
		if (!m) {
			/* nothing to do: close an idle cached connection, wait for work, the
			 * next queue run, or a reclaim */
			uint64_t wait = (uint64_t)r->p.queue_run_delay * 1000u;
			if (t->conn.fd >= 0) {
				uint64_t idle_end =
					t->conn.idle_since_ms + (uint64_t)r->p.cache_time_limit * 1000u;
				if (now >= idle_end) {
					pthread_mutex_unlock(&r->mu);
					relay_quit(t);
					pthread_mutex_lock(&r->mu);
					continue;
				}
				if (idle_end - now < wait)
					wait = idle_end - now;
			}
			if (r->reclaim_wanted && RELAY_RECLAIM_MS < wait)
				wait = RELAY_RECLAIM_MS;
			if (wait == 0)
				wait = 1;
			struct timespec until;
			relay_deadline(&until, wait);
			pthread_cond_timedwait(&r->cv, &r->mu, &until);
			continue;
		}
		r->ready_head = m->qnext;
		if (!r->ready_head)
			r->ready_tail = NULL;
		m->busy = true;
		pthread_mutex_unlock(&r->mu);

		bool done = relay_deliver(t, m);

		pthread_mutex_lock(&r->mu);
		m->busy = false;
		m->attempts++;
		if (done) {
			if (m->e.nrstate && memchr(m->e.rstate, SPOOL_RCPT_FAILED, m->e.nrstate)) {
				/* kept for the DSN generator; pins its segments */
				m->final = true;
			} else {
				relay_remove(r, m);
				r->reclaim_wanted = true;
			}
		} else if (__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
			/* shutting down: it stays in the spool */
		} else {
			m->deferred = true;
			m->next_try_ms = relay_now_ms() + relay_backoff_ms(r, m->attempts);
		}
	}
	pthread_mutex_unlock(&r->mu);
	relay_quit(t);
	return NULL;
}

/* ---- set-up ---- */

int spool_relay_create(struct spool_relay **out, const struct spool_relay_params *p, char *err,
		       size_t errlen)
{
	struct spool_relay *r = calloc(1, sizeof(*r));
	if (!r)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	r->p = *p;
	r->host = strdup(p->host);
	r->helo_name = strdup(p->helo_name);
	if (!r->host || !r->helo_name) {
		free(r->host);
		free(r->helo_name);
		free(r);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	r->p.host = r->host;
	r->p.helo_name = r->helo_name;
	if (r->p.concurrency == 0)
		r->p.concurrency = 1;
	if (r->p.concurrency > SPOOL_RELAY_MAX_THREADS)
		r->p.concurrency = SPOOL_RELAY_MAX_THREADS;
	if (r->p.queue_run_delay == 0)
		r->p.queue_run_delay = 1;
	if (r->p.min_backoff == 0)
		r->p.min_backoff = 1;
	if (r->p.max_backoff < r->p.min_backoff)
		r->p.max_backoff = r->p.min_backoff;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addr;
	if (inet_pton(AF_INET, p->host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(p->port);
		r->addrlen = sizeof(*a4);
	} else if (inet_pton(AF_INET6, p->host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(p->port);
		r->addrlen = sizeof(*a6);
	} else {
		free(r->host);
		free(r->helo_name);
		free(r);
		return mx_errf(err, errlen, -EINVAL, "relayhost: \"%s\" is not a numeric address",
				  p->host);
	}
	snprintf(r->name, sizeof(r->name), "%s[%s]", p->host, p->host);
	snprintf(r->peer, sizeof(r->peer), "%s:%u", r->name, (unsigned)p->port);
	r->seg_dir_fd = spool_seg_dir_fd(p->spool);
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	r->last_run_ms = relay_now_ms();
	r->reclaim_wanted = true; /* segments recovery found fully delivered */

	/* recovered messages: only what is still pending */
	const struct spool_index *idx = spool_recovered(p->spool);
	for (size_t i = 0; i < idx->n; i++) {
		const struct spool_msg_entry *e = &idx->msgs[i];
		struct relay_msg *m = calloc(1, sizeof(*m));
		if (!m)
			goto oom;
		m->e = *e;
		m->e.frags = malloc((e->nfrag ? e->nfrag : 1) * sizeof(*e->frags));
		m->e.rstate = e->nrstate ? malloc(e->nrstate) : NULL;
		if (!m->e.frags || (e->nrstate && !m->e.rstate)) {
			spool_msg_entry_clear(&m->e);
			free(m);
			goto oom;
		}
		memcpy(m->e.frags, e->frags, e->nfrag * sizeof(*e->frags));
		if (e->nrstate)
			memcpy(m->e.rstate, e->rstate, e->nrstate);
		/* a message whose every recipient is decided (a failed one awaits its DSN) is
		 * found so at its first turn, and kept without delivering anything */
		relay_add(r, m);
	}
	spool_set_committed_hook(p->spool, relay_committed, r);
	*out = r;
	return 0;
oom:
	spool_relay_free(r);
	return mx_errf(err, errlen, -ENOMEM, "out of memory");
}

int spool_relay_start(struct spool_relay *r)
{
	r->threads = calloc(r->p.concurrency, sizeof(*r->threads));
	if (!r->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < r->p.concurrency; i++) {
		struct relay_thread *t = &r->threads[i];
		t->r = r;
		t->conn.fd = -1;
		pthread_mutex_init(&t->wait.mu, NULL);
		pthread_cond_init(&t->wait.cv, NULL);
		t->out = malloc(RELAY_OUT_SIZE);
		if (!t->out)
			return -ENOMEM;
		int rc = pthread_create(&t->tid, NULL, relay_main, t);
		if (rc != 0)
			return -rc;
		pthread_setname_np(t->tid, "mxgate-relay");
		t->started = true;
		r->nthreads = i + 1;
	}
	return 0;
}

void spool_relay_stop(struct spool_relay *r)
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
}

void spool_relay_free(struct spool_relay *r)
{
	if (!r)
		return;
	if (r->threads) {
		for (unsigned i = 0; i < r->p.concurrency; i++) {
			struct relay_thread *t = &r->threads[i];
			if (!t->r)
				continue;
			relay_close(&t->conn);
			free(t->out);
			pthread_mutex_destroy(&t->wait.mu);
			pthread_cond_destroy(&t->wait.cv);
		}
		free(r->threads);
	}
	while (r->all)
		relay_remove(r, r->all);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->host);
	free(r->helo_name);
	free(r);
}

void spool_relay_stats(struct spool_relay *r, struct spool_relay_stats *out)
{
	out->queued = atomic_load(&r->queued);
	out->sent = atomic_load(&r->sent);
	out->deferred = atomic_load(&r->deferred);
	out->bounced = atomic_load(&r->bounced);
	out->removed = atomic_load(&r->removed);
	out->reclaimed = atomic_load(&r->reclaimed);
}
