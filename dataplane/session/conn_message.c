/* The message of a transaction: the queue file opened at the first recipient, DATA,
 * header_checks and body_checks on the stream, our Received: and PREPEND headers, the end
 * of data and its commit to the spool (the verdict follows the group commit). */
#include "dataplane/session/conn_internal.h"

/* The first accepted recipient opens the queue file, as Postfix's smtpd does: the queue
 * ID is assigned here and logged with the client. */
int conn_open_message(struct conn *c)
{
	queue_id_next(&c->w->qid, queue_id_clock_us(), c->queue_id);
	struct spool_envelope env = {
		.queue_id = c->queue_id,
		.arrival = mx_clock_wall_s(),
		.client_addr = c->addr_str,
		.client_port = c->port,
		.client_name = c->name ? c->name : "unknown",
		.helo = smtp_session_helo(c->s),
		.protocol = smtp_session_protocol(c->s),
		.sender = mx_span_cstr(c->sender),
		.mail_params = mx_span_cstr(c->mail_params),
	};
	c->msg = spool_msg_new(c->w->spool_client, c);
	if (!c->msg)
		return -ENOMEM;
	int rc = spool_msg_begin(c->msg, &env);
	if (rc < 0)
		return rc;
	/* Postfix's smtpd: ", sasl_method=PLAIN, sasl_username=alice" after AUTH, and
	 * ", sasl_sender=..." for MAIL's AUTH= */
	mx_log(MX_LOG_INFO, "%s: client=%s%s%s%s%s%s%s", c->queue_id, c->client,
	       c->sasl_username ? ", sasl_method=" : "", c->sasl_username ? c->sasl_method : "",
	       c->sasl_username ? ", sasl_username=" : "",
	       c->sasl_username ? c->sasl_username : "", c->sasl_sender ? ", sasl_sender=" : "",
	       c->sasl_sender ? c->sasl_sender : "");
	return 0;
}

/* A header of our own making (PREPEND, Received:): like the client's headers it passes
 * header_checks, as smtpd's do in Postfix's cleanup. */
static int conn_store_header(struct conn *c, const char *p, size_t n)
{
	if (c->checks)
		return smtp_checks_header(c->checks, p, n);
	return spool_msg_append(c->msg, p, n);
}

static int conn_checks_emit(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;
	return spool_msg_append(c->msg, p, n);
}

/* "4ZhQ5N0Bc9z01: warning: header Subject: x from unknown[192.0.2.1]; from=<a@b>
 * to=<c@d> proto=ESMTP helo=<h>: text", as Postfix's cleanup logs a check's action. */
static void conn_checks_log(void *ctx, const struct smtp_checks_log *ev)
{
	struct conn *c = ctx;
	char line[1400], sender[520], rcpt[520], helo[300];
	smtp_checks_log_format(line, sizeof(line), ev, c->queue_id, c->client,
			       conn_printable_str(c->sender, sender, sizeof(sender)),
			       conn_printable_str(c->first_rcpt, rcpt, sizeof(rcpt)),
			       smtp_session_protocol(c->s),
			       conn_printable_str(c->helo, helo, sizeof(helo)));
	char shown[1400];
	mx_log_as(MX_LOG_CLEANUP, MX_LOG_INFO, "%s",
		  conn_printable_str(line, shown, sizeof(shown)));
}

/* The checks' state lives only while a message is being received; the worker reuses those
 * of ended messages. */
static int conn_checks_open(struct conn *c)
{
	static const struct smtp_checks_ops ops = { .emit = conn_checks_emit,
						    .log = conn_checks_log };
	struct conn_worker *w = c->w;
	int rc = -ENOENT;
	if (w->checks_pooled) {
		struct smtp_checks *m = w->checks_pool[w->checks_pooled - 1];
		rc = smtp_checks_rebind(m, &c->svc->checks.cfg, w->checks_scratch, &ops, c);
		if (rc == 0) {
			w->checks_pooled--;
			c->checks = m;
		}
	}
	if (rc < 0)
		rc = smtp_checks_new(&c->svc->checks.cfg, w->checks_scratch, &ops, c, &c->checks);
	if (rc < 0)
		return rc;
	smtp_checks_begin(c->checks);
	return 0;
}

void conn_checks_close(struct conn *c)
{
	struct conn_worker *w = c->w;
	if (c->checks && w->checks_pooled < CONN_CHECKS_POOL_MAX)
		w->checks_pool[w->checks_pooled++] = c->checks;
	else
		smtp_checks_free(c->checks);
	c->checks = NULL;
}

/* Our Received: header goes first in the stored message (RFC 5321 4.4). */
static int conn_write_received(struct conn *c)
{
	char stack[1024];
	int64_t now = mx_clock_wall_s();
	time_t tt = (time_t)now;
	struct tm tm;
	int tz = 0;
	if (localtime_r(&tt, &tm))
		tz = (int)(tm.tm_gmtoff / 60);
	const char *single = c->nrcpt == 1 ? c->first_rcpt : NULL;
	size_t need = smtp_received_header(stack, sizeof(stack), c->s, c->queue_id, single, now,
					   tz);
	if (need < sizeof(stack))
		return conn_store_header(c, stack, need);
	char *big = malloc(need + 1);
	if (!big)
		return -ENOMEM;
	smtp_received_header(big, need + 1, c->s, c->queue_id, single, now, tz);
	int rc = conn_store_header(c, big, need);
	free(big);
	return rc;
}

/* PREPEND actions of the restriction lists go above our Received:, as smtpd writes them
 * first. The evaluator keeps them to one header line; a CR or LF that got through would
 * split it, so the line is cut there. */
static int conn_write_prepends(struct conn *c)
{
	for (unsigned i = 0; c->actions && i < c->actions->nprepend; i++) {
		char line[SMTP_POLICY_TEXT_MAX + 2];
		const char *h = c->actions->prepend[i];
		size_t n = strcspn(h, "\r\n");
		memcpy(line, h, n);
		memcpy(line + n, "\r\n", 2);
		int rc = conn_store_header(c, line, n + 2);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void conn_data_finish(struct conn *c, enum conn_cmd cmd, int rc);

void conn_on_data(struct conn *c, const struct smtp_event *ev)
{
	enum conn_cmd cmd = ev->u.data.bdat ? CONN_CMD_BDAT : CONN_CMD_DATA;
	/* The engine refuses DATA without an accepted recipient itself, so the message
	 * exists here. */
	int rc = c->msg && spool_msg_nrcpt(c->msg) > 0 && !c->message_open ? 0 : -EINVAL;
	if (rc < 0) {
		conn_data_finish(c, cmd, rc);
		return;
	}
	c->check = (struct conn_check){ .at = CONN_AT_DATA, .stage = SMTP_STAGE_DATA,
					.cmd = ev->u.data.bdat ? "BDAT" : "DATA",
					.unauth_pipelining = ev->unauth_pipelining,
					.bdat = ev->u.data.bdat };
	conn_check_start(c);
}

void conn_data_decided(struct conn *c, const struct smtp_policy_result *res)
{
	enum conn_cmd cmd = c->check.bdat ? CONN_CMD_BDAT : CONN_CMD_DATA;
	if (res->decision != SMTP_POLICY_ACCEPT) {
		conn_count_add(c, cmd, 1, 0);
		c->w->counters.commands++;
		conn_policy_verdict(c, res);
		return;
	}
	conn_data_finish(c, cmd, 0);
}

/* DATA passed its restriction lists (rc 0), or the message cannot be (rc < 0): open the
 * message for its content, or refuse. */
static void conn_data_finish(struct conn *c, enum conn_cmd cmd, int rc)
{
	if (rc == 0 && spool_storage_check(c->w->spool) < 0) {
		conn_count_add(c, cmd, 1, 0);
		c->w->counters.commands++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_storage_refused(c, "DATA");
		conn_txn_reset(c);
		return;
	}
	if (rc == 0 && c->svc->checks.any)
		rc = conn_checks_open(c);
	if (rc == 0)
		rc = conn_write_prepends(c);
	if (rc == 0)
		rc = conn_write_received(c);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: queue file write error: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		/* data stays "not ok" in the disconnect counts */
		conn_count_add(c, cmd, 1, 0);
		c->w->counters.commands++;
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	/* Counted as ok only once the message is queued (Postfix counts data=1 for a
	 * message it accepted, data=0/1 for one it refused at the end). */
	conn_count_add(c, cmd, 1, 0);
	c->w->counters.commands++;
	c->message_open = true;
	c->data_cmd = cmd;
	conn_accept(c);
}

bool conn_header_is(struct mx_span text, const char *name)
{
	size_t n = strlen(name);
	return text.len > n && text.ptr[n] == ':' && mx_span_eq_nocase(mx_span_make(text.ptr, n),
									mx_span_cstr(name));
}

/* Postfix's cleanup logs "ID: message-id=<...>"; postmasters trace mail by it. */
void conn_log_message_id(struct conn *c, struct mx_span text)
{
	size_t i = strlen("Message-ID:"), end = text.len;
	while (i < end && (text.ptr[i] == ' ' || text.ptr[i] == '\t' || text.ptr[i] == '\r' ||
			   text.ptr[i] == '\n'))
		i++;
	while (end > i && (text.ptr[end - 1] == '\r' || text.ptr[end - 1] == '\n' ||
			   text.ptr[end - 1] == ' ' || text.ptr[end - 1] == '\t'))
		end--;
	char buf[256];
	c->message_id_seen = true;
	mx_log_as(MX_LOG_CLEANUP, MX_LOG_INFO, "%s: message-id=%s", c->queue_id,
	       conn_printable(mx_span_make(text.ptr + i, end - i), buf, sizeof(buf)));
}

/* The commit's result is known: answer the final dot. */
static void conn_commit_done(struct conn *c, int rc)
{
	c->commit_pending = false;
	uint64_t size = spool_msg_size(c->msg);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: %s: %s", c->queue_id,
		       rc == -ENOSPC || rc == -EDQUOT ? "not enough space in the spool"
						       : "queue file write error",
		       strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	/* Postfix's qmgr logs the sender, size and recipient count when the message enters
	 * its active queue; mxgate's spool is that queue, from the commit on. pflogsumm takes
	 * the sender's domain and the size from this line. */
	char sender[520];
	mx_log_as(MX_LOG_QMGR, MX_LOG_INFO,
		  "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (queue active)", c->queue_id,
		  conn_printable_str(c->sender, sender, sizeof(sender)), size, c->nrcpt);
	c->w->counters.messages_accepted++;
	c->gc->messages_accepted++;
	conn_count_add(c, c->data_cmd, 0, 1);
	struct smtp_verdict v = { .code = 0, .queue_id = c->queue_id };
	smtp_session_verdict(c->s, &v); /* formats the reply now: the ID may go */
	/* The transaction is over; the next one gets a new ID at its first recipient. */
	conn_txn_reset(c);
}

/* The message is complete and passed every check, but policy said DISCARD: the client
 * hears "250 ... queued as ID" (as Postfix answers) and nothing is stored. */
static void conn_discard(struct conn *c)
{
	char sender[520];
	mx_log(MX_LOG_INFO, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (discarded)", c->queue_id,
	       conn_printable_str(c->sender, sender, sizeof(sender)), spool_msg_size(c->msg),
	       c->nrcpt);
	c->w->counters.messages_discarded++;
	conn_count_add(c, c->data_cmd, 0, 1);
	struct smtp_verdict v = { .code = 0, .queue_id = c->queue_id };
	smtp_session_verdict(c->s, &v);
	conn_txn_reset(c);
}

/* What header/body checks decided for this message, per worker (metrics): the outcome,
 * and the envelope actions they asked for. */
static void conn_count_checks(struct conn *c, int rc, const struct smtp_checks_verdict *cv)
{
	uint64_t *n = c->w->metrics.checks;
	if (rc < 0) {
		n[MX_CHECKS_TEMPFAIL]++;
		return;
	}
	switch (cv->outcome) {
	case SMTP_CHECKS_ACCEPT: n[MX_CHECKS_ACCEPT]++; break;
	case SMTP_CHECKS_REJECT: n[MX_CHECKS_REJECT]++; break;
	case SMTP_CHECKS_DISCARD: n[MX_CHECKS_DISCARD]++; break;
	case SMTP_CHECKS_TEMPFAIL: n[MX_CHECKS_TEMPFAIL]++; break;
	case SMTP_CHECKS_OUTCOME_MAX: break;
	}
	if (cv->hold)
		n[MX_CHECKS_HOLD]++;
	if (cv->filter)
		n[MX_CHECKS_FILTER]++;
	if (cv->redirect)
		n[MX_CHECKS_REDIRECT]++;
	if (cv->nbcc)
		n[MX_CHECKS_BCC]++;
}

void conn_on_message_end(struct conn *c, const struct smtp_event *ev)
{
	(void)ev;
	c->message_open = false;
	/* header_checks/body_checks: what is still buffered goes out, and the verdict. */
	struct smtp_checks_verdict cv = { .outcome = SMTP_CHECKS_ACCEPT };
	if (c->checks) {
		int rc = smtp_checks_end(c->checks, &cv);
		conn_count_checks(c, rc, &cv);
		if (rc < 0) {
			conn_commit_done(c, rc);
			return;
		}
	}
	if (c->checks) {
		/* kept until the end's restriction lists decided (conn_end_decided()) */
		if (!(c->end_cv = malloc(sizeof(*c->end_cv)))) {
			conn_commit_done(c, -ENOMEM);
			return;
		}
		*c->end_cv = cv;
	}
	c->check = (struct conn_check){ .at = CONN_AT_END, .stage = SMTP_STAGE_END_OF_DATA,
					.cmd = "END-OF-MESSAGE" };
	conn_check_start(c);
}

void conn_end_decided(struct conn *c, const struct smtp_policy_result *res)
{
	/* what the checks said stays valid with them until the transaction ends */
	struct smtp_checks_verdict cv = { .outcome = SMTP_CHECKS_ACCEPT };
	if (c->end_cv)
		cv = *c->end_cv;
	if (res->decision != SMTP_POLICY_ACCEPT) {
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_policy_verdict(c, res);
		conn_txn_reset(c);
		return;
	}
	/* A DISCARD from the restriction lists decided before the content was seen: Postfix
	 * answers 250 whatever header_checks say then. */
	if (c->actions && c->actions->discard) {
		conn_discard(c);
		return;
	}
	if (cv.outcome == SMTP_CHECKS_REJECT || cv.outcome == SMTP_CHECKS_TEMPFAIL) {
		/* cleanup's refusal: the log line was written by the checks' log event */
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_verdict(c, (uint16_t)cv.code, cv.reply, false);
		conn_txn_reset(c);
		return;
	}
	if (cv.outcome == SMTP_CHECKS_DISCARD) {
		conn_discard(c);
		return;
	}
	/* Envelope actions: the restriction lists' (from MAIL and RCPT), then the content
	 * checks'. A FILTER or REDIRECT from the checks comes later, so it wins, as in
	 * Postfix where cleanup applies its own after smtpd's. */
	const char *bcc[1 + SMTP_CHECKS_BCC_MAX];
	unsigned nbcc = 0;
	struct spool_envelope_actions ea = { .bcc = bcc };
	if (c->actions) {
		ea.hold_reason = c->actions->hold ? c->actions->hold_reason : NULL;
		ea.filter = c->actions->filter;
		ea.redirect = c->actions->redirect;
		if (c->actions->bcc[0])
			bcc[nbcc++] = c->actions->bcc;
	}
	if (cv.hold && !ea.hold_reason)
		ea.hold_reason = cv.hold_reason ? cv.hold_reason : "";
	if (cv.filter)
		ea.filter = cv.filter;
	if (cv.redirect)
		ea.redirect = cv.redirect;
	for (unsigned i = 0; i < cv.nbcc && nbcc < 1 + SMTP_CHECKS_BCC_MAX; i++)
		bcc[nbcc++] = cv.bcc[i];
	ea.nbcc = nbcc;
	int rc = spool_msg_finish_envelope(c->msg, &ea);
	if (rc < 0) {
		conn_commit_done(c, rc);
		return;
	}
	/* The durable commit runs on the spool writer thread (group commit); the verdict
	 * follows in conn_spool_news(), and the engine holds the pipeline until then. */
	rc = spool_msg_commit(c->msg);
	if (rc < 0) {
		conn_commit_done(c, rc);
		return;
	}
	c->commit_pending = true;
	/* the envelope holds what the checks said: their state serves the next message
	 * (of any connection) while this one waits for the group commit */
	conn_checks_close(c);
}

void conn_spool_news(struct conn *c)
{
	if (!c->commit_pending || !c->msg)
		return; /* room for more bytes: the transport services us again */
	int rc = spool_msg_result(c->msg);
	if (rc > 0)
		return;
	conn_commit_done(c, rc);
	if (c->shutdown_deferred) {
		/* the stop that arrived while we waited: its 421 follows this reply */
		c->shutdown_deferred = false;
		conn_shutdown(c);
	}
}

bool conn_waiting(struct conn *c)
{
	if (c->commit_pending || c->op)
		return true;
	return c->message_open && c->msg && spool_msg_busy(c->msg);
}

