/* Next hops: destinations, their connection caches, and one SMTP or LMTP conversation.
 *
 * The protocol is the sans-I/O client codec's (smtp/smtp_client.h): it writes the commands
 * (pipelined when the next hop offers PIPELINING, RFC 2920), dot-stuffs the message, parses
 * and matches the replies; this file owns the socket and the time. Every wait is bounded by
 * Postfix's smtp_*_timeout for the phase it is in, restarted by progress (as Postfix times
 * each read and write), and a stop of the relay ends it within 250 ms. Failures are worded
 * as Postfix words them ("host X said: ... (in reply to RCPT TO command)", "conversation
 * with X timed out while sending message body"), since postmasters grep for them. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/relay/relay_internal.h"
#include "dataplane/spool/queue_id.h"

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

/* A reply as the relay keeps it: "250 2.0.0 Ok: queued as X" (the code, a space, the
 * text of every line joined by spaces), and its RFC 3463 code. */
struct relay_reply {
	int code;
	char dsn[16];
	char text[RELAY_TEXT_MAX];
};

static void relay_reply_of(const struct smtp_client_event *ev, struct relay_reply *rep)
{
	rep->code = ev->code;
	snprintf(rep->text, sizeof(rep->text), "%03u %.*s", (unsigned)ev->code,
		 (int)ev->text.len, ev->text.ptr);
	/* the next hop's enhanced code when it sent one, else the class of its reply */
	if (ev->enhanced[0])
		snprintf(rep->dsn, sizeof(rep->dsn), "%s", ev->enhanced);
	else
		snprintf(rep->dsn, sizeof(rep->dsn), "%d.0.0", ev->code / 100);
}

static void relay_fail_reply(const char *host, struct relay_failure *f,
			     const struct relay_reply *rep, enum relay_phase ph)
{
	f->permanent = rep->code >= 500;
	snprintf(f->dsn, sizeof(f->dsn), "%s", rep->dsn);
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

/* ---- the socket under the codec ---- */

static void relay_close(struct relay_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = 0;
	smtp_client_free(c->cl);
	c->cl = NULL;
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

/* Send what the codec has written. The timeout bounds each wait for progress, as
 * Postfix's per-write timeout. 0, or a negative errno. */
static int relay_flush(struct relay_thread *t, unsigned timeout_s)
{
	struct relay_conn *c = t->conn;
	uint64_t deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
	for (;;) {
		struct mx_span out = smtp_client_output(c->cl);
		if (out.len == 0)
			return 0;
		ssize_t w = send(c->fd, out.ptr, out.len, MSG_NOSIGNAL);
		if (w > 0) {
			smtp_client_output_done(c->cl, (size_t)w);
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
}

/* The codec's next event: send its output, read replies until it has one. Returns 0 and
 * *ev (its text is valid until the next call on the codec), or a negative errno:
 * -ETIMEDOUT, -ECANCELED, a socket error. A peer that closes is the codec's to report
 * (noreply LOST). */
static int relay_next(struct relay_thread *t, unsigned timeout_s, struct smtp_client_event *ev)
{
	struct relay_conn *c = t->conn;
	int rc = relay_flush(t, timeout_s);
	if (rc < 0)
		return rc;
	uint64_t deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
	for (;;) {
		size_t used = 0;
		*ev = smtp_client_step(c->cl, c->in, c->in_len, &used);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (ev->type != SMTP_CLIENT_EV_NONE)
			return 0;
		if ((rc = relay_poll(t, POLLIN, deadline)) < 0)
			return rc;
		ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (n == 0) {
			smtp_client_peer_closed(c->cl);
			continue;
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			if (errno == ECONNRESET || errno == EPIPE) {
				smtp_client_peer_closed(c->cl);
				continue;
			}
			return -errno;
		}
		c->in_len += (size_t)n;
		deadline = relay_now_ms() + (uint64_t)timeout_s * 1000u;
	}
}

/* The reply to the command `cmd` expects next: 0 and *rep, -EPROTO for a malformed one,
 * -ECONNRESET when the connection went before it came, or an I/O errno. */
static int relay_reply(struct relay_thread *t, unsigned timeout_s, struct relay_reply *rep)
{
	struct smtp_client_event ev;
	int rc = relay_next(t, timeout_s, &ev);
	if (rc < 0)
		return rc;
	if (ev.type == SMTP_CLIENT_EV_PROTOCOL_ERROR)
		return -EPROTO;
	if (ev.noreply != SMTP_CLIENT_NOREPLY_NONE)
		return ev.noreply == SMTP_CLIENT_NOREPLY_ERROR ? -EPROTO : -ECONNRESET;
	relay_reply_of(&ev, rep);
	return 0;
}

/* Connect t->conn to its destination, read the greeting, EHLO (or LHLO; HELO when EHLO is
 * refused, RFC 5321 4.1.4). Returns 0, or fills f, closes the socket and returns < 0. */
static int relay_connect(struct relay_thread *t, struct relay_failure *f)
{
	struct relay *r = t->r;
	struct relay_conn *c = t->conn;
	const struct relay_nexthop *nh = &c->dest->nh;
	const char *host = c->dest->host;
	bool lmtp = nh->kind == RELAY_TRANSPORT_LMTP;
	c->in_len = 0;
	struct smtp_client_config cc;
	smtp_client_config_defaults(&cc);
	cc.lmtp = lmtp;
	cc.output_max = RELAY_OUT_SIZE;
	cc.line_max = RELAY_LINE_MAX;
	cc.text_max = RELAY_TEXT_MAX - 8;
	cc.reply_lines_max = RELAY_REPLY_LINES;
	int rc = smtp_client_new(&c->cl, &cc);
	if (rc < 0) {
		snprintf(f->dsn, sizeof(f->dsn), "4.3.0");
		snprintf(f->why, sizeof(f->why), "out of memory");
		f->permanent = false;
		return rc;
	}
	c->fd = socket(nh->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int e = errno;
		snprintf(f->dsn, sizeof(f->dsn), "4.4.1");
		snprintf(f->why, sizeof(f->why), "connect to %s: %s", nh->name, strerror(e));
		f->permanent = false;
		relay_close(c);
		return -e;
	}
	if (nh->addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
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
	if ((rc = relay_reply(t, r->p.helo_timeout, &rep)) < 0) {
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
	rc = smtp_client_ehlo(c->cl, r->helo_name);
	if (rc == 0)
		rc = relay_reply(t, r->p.helo_timeout, &rep);
	if (rc == 0 && rep.code / 100 != 2 && !lmtp) {
		rc = smtp_client_helo(c->cl, r->helo_name);
		if (rc == 0)
			rc = relay_reply(t, r->p.helo_timeout, &rep);
	}
	if (rc < 0) {
		relay_fail_io(host, f, rc == -EINVAL ? -EPROTO : rc, RELAY_PH_HELO);
		relay_close(c);
		return rc;
	}
	if (rep.code / 100 != 2) {
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
	unsigned to = t->r->p.quit_timeout;
	struct relay_reply rep;
	if (c->cl && smtp_client_quit(c->cl) == 0)
		(void)relay_reply(t, to < 5 ? to : 5, &rep);
	relay_close(c);
}

/* ---- destinations and their connections ---- */

struct relay_dest *relay_dest_get(struct relay *r, const struct relay_nexthop *nh)
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
	relay_nexthop_assign(r, d);
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

/* Give t->conn back: cached when still open and idle, else freed. Wakes messages that
 * waited for a connection slot. */
static void relay_conn_release(struct relay_thread *t)
{
	struct relay *r = t->r;
	struct relay_conn *c = t->conn;
	if (!c)
		return;
	t->conn = NULL;
	pthread_mutex_lock(&r->mu);
	struct relay_dest *d = c->dest;
	if (c->fd >= 0 && c->cl && smtp_client_idle(c->cl) && !r->stop) {
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

uint64_t relay_close_idle(struct relay_thread *t)
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

void relay_quit_cached(struct relay_thread *t)
{
	struct relay *r = t->r;
	for (struct relay_dest *d = r->dests; d; d = d->next) {
		while (d->idle) {
			struct relay_conn *c = d->idle;
			d->idle = c->next;
			d->nconn--;
			/* relay_poll() sees the stop: QUIT is written without waiting */
			struct relay_conn *mine = t->conn;
			t->conn = c;
			relay_quit(t);
			t->conn = mine;
			free(c);
		}
	}
}

void relay_conn_discard(struct relay_conn *c)
{
	if (!c)
		return;
	relay_close(c);
	free(c);
}

void relay_free_dests(struct relay *r)
{
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
}

/* ---- one message ---- */

/* The value of the envelope's MAIL parameter `name` ("RET" -> "FULL"), or NULL. */
static const char *relay_param(char *const *params, size_t n, const char *name)
{
	size_t kl = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(params[i], name, kl) == 0 && params[i][kl] == '=')
			return params[i] + kl + 1;
	return NULL;
}

static bool relay_has_param(const struct spool_record *rec, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < rec->nmail_params; i++)
		if (strncasecmp(rec->mail_params[i], prefix, n) == 0)
			return true;
	return false;
}

static void relay_set_all(struct relay_outcome *o, const size_t *idx, size_t n,
			  const struct relay_failure *f)
{
	for (size_t k = 0; k < n; k++)
		relay_set(o, idx[k], f->permanent ? SPOOL_RCPT_FAILED : SPOOL_RCPT_PENDING, f->dsn,
			  f->why);
}

/* Queue MAIL for rec. RFC 3461 5.2: a next hop that offers DSN gets the client's RET and
 * ENVID. */
static int relay_queue_mail(struct relay_conn *c, const struct spool_record *rec, bool utf8)
{
	const struct smtp_client_caps *caps = smtp_client_caps(c->cl);
	struct smtp_client_mail m = {
		.sender = rec->sender,
		.size = caps->size ? rec->size : 0,
		.body = caps->eightbitmime && relay_has_param(rec, "BODY=8BITMIME")
				? SMTP_BODY_8BITMIME
				: SMTP_BODY_UNSPECIFIED,
		.smtputf8 = utf8,
	};
	if (caps->dsn) {
		m.ret = relay_param(rec->mail_params, rec->nmail_params, "RET");
		m.envid = relay_param(rec->mail_params, rec->nmail_params, "ENVID");
	}
	return smtp_client_mail(c->cl, &m);
}

/* Queue the next RCPT (RFC 3461 5.3: NOTIFY and ORCPT along when the next hop offers DSN),
 * or DATA once every recipient is queued, as long as the codec has room (-ENOBUFS: its
 * queue or output is full until replies come). With PIPELINING they leave together (RFC
 * 2920); without, the codec sends each after the reply before it. */
static int relay_queue_rest(struct relay_conn *c, const struct spool_record *rec,
			    const size_t *idx, size_t n, size_t *queued, bool *data_queued)
{
	const struct smtp_client_caps *caps = smtp_client_caps(c->cl);
	while (!*data_queued) {
		int rc;
		if (*queued < n) {
			const struct spool_rcpt *rr = &rec->rcpts[idx[*queued]];
			struct smtp_client_rcpt rcpt = { .addr = rr->addr };
			if (caps->dsn) {
				rcpt.notify = relay_param(rr->params, rr->nparams, "NOTIFY");
				rcpt.orcpt = relay_param(rr->params, rr->nparams, "ORCPT");
			}
			rc = smtp_client_rcpt(c->cl, &rcpt);
			if (rc >= 0)
				(*queued)++;
		} else {
			rc = smtp_client_data(c->cl);
			if (rc == 0)
				*data_queued = true;
		}
		if (rc == -ENOBUFS)
			return 0;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The message itself: the codec dot-stuffs it (RFC 5321 4.5.2), completes its last line
 * and ends it with "."; its output is flushed whenever it fills. */
static int relay_send_body(struct relay_thread *t, const char *msg, size_t size)
{
	struct relay_conn *c = t->conn;
	unsigned to = t->r->p.data_xfer_timeout;
	size_t off = 0;
	while (off < size) {
		ssize_t n = smtp_client_content(c->cl, msg + off, size - off);
		if (n < 0)
			return (int)n;
		off += (size_t)n;
		int rc = relay_flush(t, to);
		if (rc < 0)
			return rc;
	}
	int rc = smtp_client_content_end(c->cl);
	return rc < 0 ? rc : relay_flush(t, to);
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
	const struct smtp_client_caps *caps = smtp_client_caps(c->cl);
	struct relay_reply rep;
	int rc;

	/* RFC 1870: refuse before sending what the next hop will not take */
	if (caps->size && caps->size_limit && rec->size > caps->size_limit) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.3.4");
		snprintf(f->why, sizeof(f->why),
			 "message size %" PRIu64 " exceeds size limit %" PRIu64 " of server %s",
			 rec->size, caps->size_limit, host);
		relay_set_all(o, idx, n, f);
		return 0;
	}
	bool utf8 = relay_has_param(rec, "SMTPUTF8");
	if (utf8 && !caps->smtputf8) {
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.6.7");
		snprintf(f->why, sizeof(f->why), "SMTPUTF8 is required, but was not offered by "
						 "host %s",
			 host);
		relay_set_all(o, idx, n, f);
		return 0;
	}
	size_t *accepted = malloc((n ? n : 1) * sizeof(*accepted));
	if (!accepted)
		return -ENOMEM;
	size_t naccepted = 0, queued = 0;
	bool any_reply = false, mail_ok = false, data_queued = false;
	enum relay_phase ph = RELAY_PH_MAIL;
	if ((rc = relay_queue_mail(c, rec, utf8)) < 0 ||
	    (rc = relay_queue_rest(c, rec, idx, n, &queued, &data_queued)) < 0) {
		/* the codec refused what the envelope holds (a control character in an
		 * address): never sent, so no next hop will take it */
		free(accepted);
		f->permanent = true;
		snprintf(f->dsn, sizeof(f->dsn), "5.5.2");
		snprintf(f->why, sizeof(f->why), "cannot send this envelope to host %s: %s", host,
			 strerror(-rc));
		relay_set_all(o, idx, n, f);
		return 0;
	}

	/* Every queued command gets exactly one event, in order: MAIL, each RCPT, DATA. */
	struct smtp_client_event ev;
	for (;;) {
		if ((rc = relay_queue_rest(c, rec, idx, n, &queued, &data_queued)) < 0) {
			rc = -EPROTO;
			goto io_fail;
		}
		unsigned to = ph == RELAY_PH_MAIL ? r->p.mail_timeout
			      : ph == RELAY_PH_RCPT ? r->p.rcpt_timeout
						    : r->p.data_init_timeout;
		if ((rc = relay_next(t, to, &ev)) < 0)
			goto io_fail;
		if (ev.type == SMTP_CLIENT_EV_PROTOCOL_ERROR) {
			rc = -EPROTO;
			goto io_fail;
		}
		if (ev.noreply == SMTP_CLIENT_NOREPLY_LOST ||
		    ev.noreply == SMTP_CLIENT_NOREPLY_ERROR ||
		    ev.noreply == SMTP_CLIENT_NOREPLY_CLOSED) {
			/* the connection went (or the next hop said 421 to a command before):
			 * what got no reply is deferred */
			rc = ev.noreply == SMTP_CLIENT_NOREPLY_ERROR ? -EPROTO : -ECONNRESET;
			goto io_fail;
		}
		bool replied = ev.noreply == SMTP_CLIENT_NOREPLY_NONE;
		if (replied) {
			any_reply = true;
			relay_reply_of(&ev, &rep);
		}
		if (ev.type == SMTP_CLIENT_EV_MAIL) {
			mail_ok = replied && rep.code / 100 == 2;
			if (!mail_ok && replied) {
				relay_fail_reply(host, f, &rep, RELAY_PH_MAIL);
				relay_set_all(o, idx, n, f);
			} else if (!mail_ok) {
				rc = -ECONNRESET; /* a 421 to an earlier command ended it */
				goto io_fail;
			}
			ph = RELAY_PH_RCPT;
		} else if (ev.type == SMTP_CLIENT_EV_RCPT) {
			size_t k = (size_t)ev.rcpt;
			if (!mail_ok || k >= n)
				continue; /* after a refused MAIL: already decided */
			if (replied && rep.code / 100 == 2) {
				accepted[naccepted++] = idx[k];
			} else if (replied) {
				struct relay_failure rf;
				relay_fail_reply(host, &rf, &rep, RELAY_PH_RCPT);
				relay_set(o, idx[k],
					  rf.permanent ? SPOOL_RCPT_FAILED : SPOOL_RCPT_PENDING,
					  rf.dsn, rf.why);
			}
		} else if (ev.type == SMTP_CLIENT_EV_DATA) {
			ph = RELAY_PH_DATA;
			if (replied && rep.code == 354) {
				break;
			}
			if (replied && naccepted) {
				struct relay_failure rf;
				relay_fail_reply(host, &rf, &rep, RELAY_PH_DATA);
				relay_set_all(o, accepted, naccepted, &rf);
				naccepted = 0;
			}
			goto reset; /* refused, or never sent (no recipient took it) */
		}
	}
	if (naccepted == 0) {
		/* RFC 2920 3.1 says a server refuses DATA without a valid recipient; one that
		 * did not gets an empty message it must not deliver */
		ph = RELAY_PH_DOT;
		if ((rc = smtp_client_content_end(c->cl)) < 0 ||
		    (rc = relay_reply(t, r->p.data_done_timeout, &rep)) < 0)
			goto io_fail;
		goto reset;
	}
	ph = RELAY_PH_BODY;
	if ((rc = relay_send_body(t, rec->message, rec->size)) < 0)
		goto io_fail;
	ph = RELAY_PH_DOT;
	/* RFC 2033 4.2: LMTP answers once per accepted recipient, in order */
	for (size_t k = 0; k < (lmtp ? naccepted : 1); k++) {
		if ((rc = relay_reply(t, r->p.data_done_timeout, &rep)) < 0)
			goto io_fail;
		size_t from = lmtp ? k : 0, to = lmtp ? k + 1 : naccepted;
		for (size_t j = from; j < to; j++) {
			if (rep.code / 100 == 2) {
				relay_set(o, accepted[j], SPOOL_RCPT_SENT, rep.dsn, rep.text);
			} else {
				struct relay_failure rf;
				relay_fail_reply(host, &rf, &rep, RELAY_PH_DOT);
				relay_set(o, accepted[j],
					  rf.permanent ? SPOOL_RCPT_FAILED : SPOOL_RCPT_PENDING,
					  rf.dsn, rf.why);
			}
		}
	}
	free(accepted);
	return 0;

reset:
	/* no message went through: RSET so the connection can be reused (RFC 5321 4.1.1.5) */
	ph = RELAY_PH_RSET;
	if (smtp_client_rset(c->cl) < 0 || relay_reply(t, r->p.mail_timeout, &rep) < 0 ||
	    rep.code != 250)
		relay_close(c);
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
	free(accepted);
	return any_reply ? 0 : rc;
}

/* ---- a group of recipients to one destination ---- */

void relay_deliver_group(struct relay_thread *t, const struct spool_record *rec,
				struct relay_dest *d, const size_t *gidx, size_t gn,
				struct relay_outcome *o, bool *waiting)
{
	struct relay *r = t->r;
	struct relay_failure f = { 0 };
	uint64_t handoff = queue_id_clock_us();
	for (size_t k = 0; k < gn; k++) {
		o->handoff_us[gidx[k]] = handoff;
		o->lmtp[gidx[k]] = d->nh.kind == RELAY_TRANSPORT_LMTP;
	}
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
		uint64_t setup = queue_id_clock_us();
		for (size_t k = 0; k < gn; k++) {
			o->tried[gidx[k]] = false;
			o->relay[gidx[k]] = d->nh.name;
			o->setup_us[gidx[k]] = setup;
		}
		int rc = relay_transaction(t, rec, gidx, gn, o, &f);
		uint64_t done = queue_id_clock_us();
		for (size_t k = 0; k < gn; k++)
			o->done_us[gidx[k]] = done;
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
