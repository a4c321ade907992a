#include "dataplane/relay/relay.h"
#include "dataplane/relay/relay_internal.h"

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
#include "dataplane/relay/relay_log.h"
#include "mgmt/log.h"

#include "mxgate/errf.h"

static void relay_count_delay(struct relay *r, double delay);


uint64_t relay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double relay_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void relay_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000u);
	ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void relay_set_reason(struct relay_msg *m, const char *why)
{
	char *s = why ? strdup(why) : NULL;
	if (why && !s)
		return; /* keep the old one: it is only for mailq */
	free(m->reason);
	m->reason = s;
}

/* ---- the queue (all under r->mu) ---- */

void relay_set_waiting(struct relay *r, struct relay_msg *m, bool waiting)
{
	if (m->waiting != waiting)
		r->nwaiting = waiting ? r->nwaiting + 1 : r->nwaiting - 1;
	m->waiting = waiting;
}

/* What mailq says of a message while no next hop is configured. */
#define RELAY_KEEP_REASON "mail transport unavailable: relayhost and transport_maps are empty"

void relay_ready_push(struct relay *r, struct relay_msg *m)
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
void relay_ready_unlink(struct relay *r, struct relay_msg *m)
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
	if (queue_id_time_us(m->e.id, &m->arrival_us) < 0)
		m->arrival_us = queue_id_clock_us();
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

void relay_remove(struct relay *r, struct relay_msg *m)
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

struct relay_msg *relay_find(struct relay *r, const char *id)
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
void relay_wake_waiting(struct relay *r)
{
	/* every delivery releases a connection: no scan of the queue unless someone waits */
	for (struct relay_msg *m = r->nwaiting ? r->all : NULL; m; m = m->next)
		if (m->waiting)
			relay_ready_push(r, m);
}

/* ---- waiting for the writer ---- */

void relay_wait_init(struct relay_wait *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->pending = 0;
	w->rc = 0;
}

void relay_wait_destroy(struct relay_wait *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

void relay_wait_done(void *arg, int rc)
{
	struct relay_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	if (rc < 0 && w->rc == 0)
		w->rc = rc;
	w->pending--;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void relay_wait_add(struct relay_wait *w, int rc)
{
	pthread_mutex_lock(&w->mu);
	if (rc == 0)
		w->pending++;
	else if (w->rc == 0)
		w->rc = rc;
	pthread_mutex_unlock(&w->mu);
}

/* Hand a DELIVERY or RETIRE record to the writer; relay_wait_end() waits for it. */
void relay_record(struct relay *r, struct relay_wait *w, enum spool_rec_type type,
			 const char *id, uint32_t rcpt, enum spool_rcpt_state st, const char *text)
{
	/* count it first: the writer may call back before append returns */
	relay_wait_add(w, 0);
	int rc = spool_status_append(r->p.spool, type, id, rcpt, st, text, relay_wait_done, w);
	if (rc < 0)
		relay_wait_done(w, rc);
}

void relay_record_hold(struct relay *r, struct relay_wait *w, const char *id,
			      bool held, const char *reason)
{
	relay_wait_add(w, 0);
	int rc = spool_hold_append(r->p.spool, id, held, reason, relay_wait_done, w);
	if (rc < 0)
		relay_wait_done(w, rc);
}

/* Wait until every record handed over is durable. Returns 0 or the first error. */
int relay_wait_end(struct relay_wait *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->pending)
		pthread_cond_wait(&w->cv, &w->mu);
	int rc = w->rc;
	w->rc = 0;
	pthread_mutex_unlock(&w->mu);
	return rc;
}

/* ---- outcomes ---- */

void relay_set(struct relay_outcome *o, size_t i, enum spool_rcpt_state st,
		      const char *dsn, const char *text)
{
	o->st[i] = st;
	o->tried[i] = true;
	o->decided[i] = true;
	snprintf(o->dsn[i], sizeof(o->dsn[i]), "%s", dsn);
	snprintf(o->text[i], sizeof(o->text[i]), "%s", text);
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
		mx_log_as(MX_LOG_BOUNCE, MX_LOG_INFO,
			  "%s: sender non-delivery notification not sent: %s", m->e.id,
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
		/* Postfix's order: the notification passes cleanup (its Message-Id), bounce
		 * names it, qmgr takes it */
		const char *mid = memmem(msg, len, "\r\nMessage-Id: ", 14);
		const char *eol = mid ? memchr(mid + 14, '\r', len - (size_t)(mid + 14 - msg)) : NULL;
		if (eol)
			mx_log_as(MX_LOG_CLEANUP, MX_LOG_INFO, "%s: message-id=%.*s", nid,
				  (int)(eol - (mid + 14)), mid + 14);
		mx_log_as(MX_LOG_BOUNCE, MX_LOG_INFO, "%s: sender non-delivery notification: %s",
			  m->e.id, nid);
		mx_log(MX_LOG_INFO, "%s: from=<>, size=%zu, nrcpt=1 (queue active)", nid, len);
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

/* Postfix's smtp (or lmtp) delivery agent logs the status line (log_adhoc()). */
static void relay_log_rcpt(const struct relay_msg *m, const char *addr, const char *relay,
			   const struct relay_log_times *lt, bool lmtp, const char *dsn,
			   const char *status, const char *text)
{
	char line[RELAY_WHY_MAX + 1024];
	relay_log_delivery(line, sizeof(line), m->e.id, addr, relay, lt, dsn, status, text);
	mx_log_as(lmtp ? MX_LOG_LMTP : MX_LOG_SMTP, MX_LOG_INFO, "%s", line);
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
		.handoff_us = calloc(n, sizeof(*o.handoff_us)),
		.setup_us = calloc(n, sizeof(*o.setup_us)),
		.done_us = calloc(n, sizeof(*o.done_us)),
		.lmtp = calloc(n, sizeof(*o.lmtp)),
	};
	size_t *idx = calloc(n, sizeof(*idx)), *gidx = calloc(n, sizeof(*gidx));
	struct relay_dest **dest = calloc(n, sizeof(*dest));
	enum relay_result result = RELAY_DEFERRED;
	uint64_t active_us = queue_id_clock_us();
	if (!o.st || !o.text || !o.dsn || !o.tried || !o.relay || !o.decided || !o.handoff_us ||
	    !o.setup_us || !o.done_us || !o.lmtp || !idx || !gidx || !dest ||
	    relay_entry_grow(&m->e, n) < 0) {
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
			relay_nexthop_count(r, d, &o, gidx, gn);
		}
	}

	/* log and record each decided recipient; durable before it counts. The message
	 * arrived when its queue ID was made (Postfix: when its queue file was opened). */
	uint64_t arrival_us = 0, now_us = queue_id_clock_us();
	if (queue_id_time_us(m->e.id, &arrival_us) < 0 || arrival_us > now_us)
		arrival_us = rec->arrival > 0 ? (uint64_t)rec->arrival * 1000000u : now_us;
	size_t deferred = 0;
	struct relay_wait *w = &t->wait;
	for (size_t k = 0; k < np; k++) {
		size_t i = idx[k];
		if (!o.decided[i])
			continue; /* waiting for a connection slot: not tried */
		const char *text = o.text[i][0] ? o.text[i] : "delivery temporarily suspended";
		struct relay_log_times lt = {
			.arrival_us = arrival_us,
			.active_us = active_us,
			.handoff_us = o.handoff_us[i],
			.setup_us = o.setup_us[i],
			.done_us = o.done_us[i] ? o.done_us[i] : now_us,
		};
		relay_log_rcpt(m, rec->rcpts[i].addr, o.relay[i] ? o.relay[i] : "none", &lt,
			       o.lmtp[i], o.dsn[i][0] ? o.dsn[i] : "4.0.0",
			       relay_status_name(o.st[i]), text);
		if (o.st[i] == SPOOL_RCPT_PENDING) {
			deferred++;
			relay_set_reason(m, text);
			continue;
		}
		char stored[RELAY_WHY_MAX + 20];
		/* the histogram's delay is the log line's: arrival to this recipient's status */
		relay_count_delay(r, (double)(lt.done_us > lt.arrival_us
						      ? lt.done_us - lt.arrival_us : 0) / 1e6);
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
	free(o.handoff_us);
	free(o.setup_us);
	free(o.done_us);
	free(o.lmtp);
	free(idx);
	free(gidx);
	free(dest);
	spool_record_free(rec);
	return result;
}

/* ---- the threads ---- */

static void *relay_main(void *arg)
{
	struct relay_thread *t = arg;
	struct relay *r = t->r;
	mx_log_set_process(MX_LOG_QMGR); /* its lines are qmgr's; deliveries say smtp */
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
	relay_conn_discard(t->conn);
	t->conn = NULL;
	for (size_t i = 0; i < t->nmaps; i++)
		table_close(t->maps[i]);
	if (t->reader)
		tables_reader_close(t->reader);
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
	if (r->threads && r->p.threads)
		relay_quit_cached(&r->threads[0]);
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
	relay_free_dests(r);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->helo_name);
	free(r->transport_maps);
	free(r);
}

/* A recipient's final status came delay seconds after its message arrived: into the
 * delivery-delay histogram (several delivery threads: atomic adds; off the fast path). */
static void relay_count_delay(struct relay *r, double delay)
{
	static const uint64_t bound[MX_LATENCY_NBOUNDS] = MX_LATENCY_BOUNDS_US;
	uint64_t us = (uint64_t)(delay * 1e6);
	unsigned b = 0;
	while (b < MX_LATENCY_NBOUNDS && us > bound[b])
		b++;
	atomic_fetch_add(&r->delay_hist[b], 1);
	atomic_fetch_add(&r->delay_sum_us, us);
}

void relay_delivery_delays(struct relay *r, uint64_t counts[MX_LATENCY_NBOUNDS + 1],
			   uint64_t *sum_us)
{
	for (unsigned b = 0; b <= MX_LATENCY_NBOUNDS; b++)
		counts[b] = atomic_load(&r->delay_hist[b]);
	*sum_us = atomic_load(&r->delay_sum_us);
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
