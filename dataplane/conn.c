#include "dataplane/conn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "smtp/smtp_session.h"
#include "tables/netlist.h"

/* Postfix's wording for every failure to store a message (cleanup's "queue file write
 * error"), with the 4.3.0 enhanced code it sends. */
#define CONN_SPOOL_ERROR_TEXT "4.3.0 Error: queue file write error"
/* Postfix's smtpd refuses with this when the queue file system is short of space
 * (smtpd_check.c, "Insufficient system storage"); we send it for a full disk and for a
 * spool over mxgate_spool_quota. */
#define CONN_SPOOL_FULL_TEXT "4.3.1 Insufficient system storage"

/* The commands the disconnect line counts, in the order of Postfix's command table
 * (smtpd_cmd_table), "unknown" last. */
enum conn_cmd {
	CONN_CMD_HELO,
	CONN_CMD_EHLO,
	CONN_CMD_XCLIENT,
	CONN_CMD_XFORWARD,
	CONN_CMD_STARTTLS,
	CONN_CMD_AUTH,
	CONN_CMD_MAIL,
	CONN_CMD_RCPT,
	CONN_CMD_DATA,
	CONN_CMD_BDAT,
	CONN_CMD_RSET,
	CONN_CMD_NOOP,
	CONN_CMD_VRFY,
	CONN_CMD_HELP,
	CONN_CMD_ETRN,
	CONN_CMD_QUIT,
	CONN_CMD_UNKNOWN,
	CONN_CMD_MAX,
};

static const char *const conn_cmd_names[CONN_CMD_MAX] = {
	"helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data",
	"bdat", "rset", "noop", "vrfy", "help", "etrn", "quit", "unknown",
};

struct conn_cmd_count {
	unsigned ok, total;
};

struct conn {
	struct conn_worker *w;
	struct smtp_session *s;
	struct mx_inet_addr addr;      /* unmapped */
	uint16_t port;
	char addr_str[INET6_ADDRSTRLEN];
	char client[INET6_ADDRSTRLEN + 16]; /* "unknown[192.0.2.1]" */

	/* The transaction. */
	char *helo;                    /* as given; NULL before HELO/EHLO */
	char *sender;                  /* NULL before MAIL; "" for <> */
	char *mail_params;
	char *first_rcpt;              /* for Received: "for <rcpt>" */
	unsigned nrcpt;                /* accepted recipients */
	char queue_id[QUEUE_ID_SIZE];  /* "" until the first accepted recipient */
	struct spool_msg *msg;         /* from the first accepted recipient to the end */
	bool message_open;             /* between the DATA verdict and the end */
	bool commit_pending;           /* handed to the spool writer, result not back yet */
	bool shutdown_deferred;        /* a stop arrived while a commit was pending */
	void *owner;                   /* the transport's handle */
	enum conn_cmd data_cmd;        /* DATA or BDAT: which counts the message */

	/* For the log. */
	struct conn_cmd_count cmds[CONN_CMD_MAX];
	bool helo_answered;            /* an RSET event right after is EHLO's implicit one */
	uint32_t delay_ms;
	bool lost_logged;
};

/* ---- small helpers ---- */

static char *conn_dup(struct mx_span v)
{
	char *p = malloc(v.len + 1);
	if (p) {
		memcpy(p, v.ptr, v.len);
		p[v.len] = '\0';
	}
	return p;
}

/* A span for a log line: control bytes would let a client forge log lines, so they
 * are shown as '?', and the length is bounded (Postfix bounds its log values too). */
static const char *conn_printable(struct mx_span v, char *buf, size_t cap)
{
	size_t n = v.len < cap - 1 ? v.len : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v.ptr[i];
		buf[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	buf[n] = '\0';
	return buf;
}

static const char *conn_printable_str(const char *s, char *buf, size_t cap)
{
	return conn_printable(mx_span_cstr(s ? s : ""), buf, cap);
}

static void conn_count(struct conn *c, enum conn_cmd cmd, bool ok)
{
	c->cmds[cmd].total++;
	if (ok)
		c->cmds[cmd].ok++;
	c->w->counters.commands++;
}

/* The last reply line the engine queued (its output ends with it), without CRLF; used to
 * log the engine's own refusals with the exact text the client saw. */
static const char *conn_last_reply(const struct conn *c, char *buf, size_t cap)
{
	struct mx_span out = smtp_session_output(c->s);
	size_t end = out.len;
	if (end >= 2 && out.ptr[end - 2] == '\r' && out.ptr[end - 1] == '\n')
		end -= 2;
	size_t start = end;
	while (start > 0 && out.ptr[start - 1] != '\n')
		start--;
	return conn_printable(mx_span_make(out.ptr + start, end - start), buf, cap);
}

/* "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@y>: Relay access denied;
 * from=<a@b> to=<x@y> proto=ESMTP helo=<h>", exactly as Postfix's smtpd logs a
 * restriction's refusal (the from= and to= parts only when known). */
static void conn_log_reject(struct conn *c, const char *cmd, const char *reply,
			    const char *rcpt)
{
	char from[600] = "", to[600] = "", helo[300], tmp[520];
	if (c->sender)
		snprintf(from, sizeof(from), " from=<%s>",
			 conn_printable_str(c->sender, tmp, sizeof(tmp)));
	if (rcpt)
		snprintf(to, sizeof(to), " to=<%s>", conn_printable_str(rcpt, tmp, sizeof(tmp)));
	mx_log(MX_LOG_INFO, "%s: reject: %s from %s: %s;%s%s proto=%s helo=<%s>",
	       c->queue_id[0] ? c->queue_id : "NOQUEUE", cmd, c->client, reply, from, to,
	       smtp_session_protocol(c->s), conn_printable_str(c->helo, helo, sizeof(helo)));
}

static void conn_txn_reset(struct conn *c)
{
	spool_msg_release(c->msg);
	c->msg = NULL;
	c->commit_pending = false;
	free(c->sender);
	free(c->mail_params);
	free(c->first_rcpt);
	c->sender = c->mail_params = c->first_rcpt = NULL;
	c->nrcpt = 0;
	c->queue_id[0] = '\0';
	c->message_open = false;
}

static int conn_verdict(struct conn *c, uint16_t code, const char *text, bool disconnect)
{
	struct smtp_verdict v = { .code = code, .text = text, .disconnect = disconnect };
	int rc = smtp_session_verdict(c->s, &v);
	assert(rc == 0);
	return rc;
}

static void conn_accept(struct conn *c)
{
	conn_verdict(c, 0, NULL, false);
}

/* ---- lifecycle ---- */

struct conn *conn_new(struct conn_worker *w, const struct mx_inet_addr *peer, uint16_t port)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	c->addr = mx_inet_unmap(peer);
	c->port = port;
	mx_inet_format(&c->addr, c->addr_str, sizeof(c->addr_str));
	/* No reverse DNS in this version: Postfix shows such a client as unknown[addr]. */
	snprintf(c->client, sizeof(c->client), "unknown[%s]", c->addr_str);

	struct smtp_client_info info = {
		.addr = c->addr_str,
		.name = NULL,
		.port = port,
		.bare_newline_excluded = w->cfg->bare_newline_exclusions &&
					 netlist_match(w->cfg->bare_newline_exclusions, &c->addr),
	};
	c->s = smtp_session_new(&w->cfg->smtp, &info);
	if (!c->s) {
		free(c);
		return NULL;
	}
	w->counters.connections_accepted++;
	mx_log(MX_LOG_INFO, "connect from %s", c->client);
	return c;
}

void conn_greet(struct conn *c)
{
	smtp_session_greet(c->s);
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	/* "disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4":
	 * each command used, as ok/total when some failed (Postfix 3.0+). */
	char line[512];
	size_t n = 0;
	unsigned ok = 0, total = 0;
	for (int i = 0; i < CONN_CMD_MAX; i++) {
		const struct conn_cmd_count *k = &c->cmds[i];
		ok += k->ok;
		total += k->total;
		if (k->total == 0)
			continue;
		if (k->ok == k->total)
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u", conn_cmd_names[i],
					      k->total);
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u/%u",
					      conn_cmd_names[i], k->ok, k->total);
	}
	if (ok == total)
		snprintf(line + n, sizeof(line) - n, " commands=%u", total);
	else
		snprintf(line + n, sizeof(line) - n, " commands=%u/%u", ok, total);
	mx_log(MX_LOG_INFO, "disconnect from %s%s", c->client, line);

	conn_txn_reset(c);
	free(c->helo);
	smtp_session_free(c->s);
	c->w->counters.connections_closed++;
	free(c);
}

const char *conn_client(const struct conn *c)
{
	return c->client;
}

size_t conn_memory(const struct conn *c)
{
	size_t n = sizeof(*c) + smtp_session_memory(c->s);
	if (c->message_open)
		n += SPOOL_FRAGMENT_SIZE;
	return n;
}

void conn_set_owner(struct conn *c, void *owner)
{
	c->owner = owner;
}

void *conn_owner(const struct conn *c)
{
	return c->owner;
}

/* The reply for a spool error: 452 4.3.1 when storage ran out, else 451 4.3.0. */
static void conn_spool_refusal(struct conn *c, int rc)
{
	if (rc == -ENOSPC || rc == -EDQUOT)
		conn_verdict(c, 452, CONN_SPOOL_FULL_TEXT, false);
	else
		conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
}

/* Refuse a new transaction (at MAIL) or a message (at DATA) when the spool is full or
 * over its quota, before the client sends anything big. Returns true when refused. */
static bool conn_storage_refused(struct conn *c, const char *cmd)
{
	int rc = spool_storage_check(c->w->spool);
	if (rc == 0)
		return false;
	char reply[128];
	snprintf(reply, sizeof(reply), "452 %s", CONN_SPOOL_FULL_TEXT);
	mx_log(MX_LOG_WARNING, "%s: spool %s", c->queue_id[0] ? c->queue_id : "NOQUEUE",
	       rc == -EDQUOT ? "is over mxgate_spool_quota" : "file system is full");
	conn_log_reject(c, cmd, reply, NULL);
	conn_verdict(c, 452, CONN_SPOOL_FULL_TEXT, false);
	return true;
}

/* ---- events ---- */

static void conn_on_helo(struct conn *c, const struct smtp_event *ev)
{
	char *h = conn_dup(ev->u.helo.name);
	if (!h) {
		/* Out of memory: refuse this command, keep the session. */
		conn_count(c, ev->u.helo.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	free(c->helo);
	c->helo = h;
	conn_count(c, ev->u.helo.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO, true);
	conn_accept(c);
	/* an accepted EHLO in a transaction makes the engine queue an RSET event now */
	c->helo_answered = true;
}

static void conn_on_mail(struct conn *c, const struct smtp_event *ev)
{
	conn_txn_reset(c);
	if (conn_storage_refused(c, "MAIL")) {
		conn_count(c, CONN_CMD_MAIL, false);
		return;
	}
	c->sender = conn_dup(ev->u.mail.addr);
	c->mail_params = conn_dup(ev->u.mail.params);
	if (!c->sender || !c->mail_params) {
		conn_txn_reset(c);
		conn_count(c, CONN_CMD_MAIL, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	conn_count(c, CONN_CMD_MAIL, true);
	conn_accept(c);
}

/* The first accepted recipient opens the queue file, as Postfix's smtpd does: the queue
 * ID is assigned here and logged with the client. */
static int conn_open_message(struct conn *c)
{
	queue_id_next(&c->w->qid, queue_id_clock_us(), c->queue_id);
	struct spool_envelope env = {
		.queue_id = c->queue_id,
		.arrival = mx_clock_wall_s(),
		.client_addr = c->addr_str,
		.client_port = c->port,
		.client_name = "unknown",
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
	mx_log(MX_LOG_INFO, "%s: client=%s", c->queue_id, c->client);
	return 0;
}

static void conn_on_rcpt(struct conn *c, const struct smtp_event *ev)
{
	char text[600];
	struct smtp_verdict v;

	if (!smtp_relay_policy_check(c->w->policy, &c->addr, ev->u.rcpt.addr, &v, text,
				     sizeof(text))) {
		char reply[700], rcpt[520];
		snprintf(reply, sizeof(reply), "%u %s", v.code, v.text);
		conn_log_reject(c, "RCPT", reply,
				conn_printable(ev->u.rcpt.addr, rcpt, sizeof(rcpt)));
		c->w->counters.recipients_rejected++;
		conn_count(c, CONN_CMD_RCPT, false);
		smtp_session_verdict(c->s, &v);
		return;
	}

	/* Order matters: nothing may fail after the recipient is in the envelope, or a
	 * recipient the client saw refused would still get the message. */
	int rc = 0;
	if (!c->first_rcpt && !(c->first_rcpt = conn_dup(ev->u.rcpt.addr)))
		rc = -ENOMEM;
	if (rc == 0 && !c->msg)
		rc = conn_open_message(c);
	/* An envelope error is sticky: once one recipient could not be recorded, every
	 * later one and DATA fail too, so no message goes out with part of its envelope. */
	if (rc == 0)
		rc = spool_msg_add_rcpt(c->msg, ev->u.rcpt.addr, ev->u.rcpt.params);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: queue file write error: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.recipients_rejected++;
		conn_count(c, CONN_CMD_RCPT, false);
		conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
		if (c->nrcpt == 0) {
			/* nothing accepted yet: the next recipient may start afresh */
			spool_msg_release(c->msg);
			c->msg = NULL;
			free(c->first_rcpt);
			c->first_rcpt = NULL;
			c->queue_id[0] = '\0';
		}
		return;
	}
	c->nrcpt++;
	c->w->counters.recipients_accepted++;
	conn_count(c, CONN_CMD_RCPT, true);
	conn_accept(c);
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
		return spool_msg_append(c->msg, stack, need);
	char *big = malloc(need + 1);
	if (!big)
		return -ENOMEM;
	smtp_received_header(big, need + 1, c->s, c->queue_id, single, now, tz);
	int rc = spool_msg_append(c->msg, big, need);
	free(big);
	return rc;
}

static void conn_on_data(struct conn *c, const struct smtp_event *ev)
{
	enum conn_cmd cmd = ev->u.data.bdat ? CONN_CMD_BDAT : CONN_CMD_DATA;
	/* The engine refuses DATA without an accepted recipient itself, so the message
	 * exists here. */
	int rc = c->msg && spool_msg_nrcpt(c->msg) > 0 && !c->message_open ? 0 : -EINVAL;
	if (rc == 0 && spool_storage_check(c->w->spool) < 0) {
		c->cmds[cmd].total++;
		c->w->counters.commands++;
		c->w->counters.messages_rejected++;
		conn_storage_refused(c, "DATA");
		conn_txn_reset(c);
		return;
	}
	if (rc == 0)
		rc = conn_write_received(c);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: queue file write error: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.messages_rejected++;
		/* data stays "not ok" in the disconnect counts */
		c->cmds[cmd].total++;
		c->w->counters.commands++;
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	/* Counted as ok only once the message is queued (Postfix counts data=1 for a
	 * message it accepted, data=0/1 for one it refused at the end). */
	c->cmds[cmd].total++;
	c->w->counters.commands++;
	c->message_open = true;
	c->data_cmd = cmd;
	conn_accept(c);
}

static bool conn_header_is(struct mx_span text, const char *name)
{
	size_t n = strlen(name);
	return text.len > n && text.ptr[n] == ':' && mx_span_eq_nocase(mx_span_make(text.ptr, n),
									mx_span_cstr(name));
}

/* Postfix's cleanup logs "ID: message-id=<...>"; postmasters trace mail by it. */
static void conn_log_message_id(struct conn *c, struct mx_span text)
{
	size_t i = strlen("Message-ID:"), end = text.len;
	while (i < end && (text.ptr[i] == ' ' || text.ptr[i] == '\t' || text.ptr[i] == '\r' ||
			   text.ptr[i] == '\n'))
		i++;
	while (end > i && (text.ptr[end - 1] == '\r' || text.ptr[end - 1] == '\n' ||
			   text.ptr[end - 1] == ' ' || text.ptr[end - 1] == '\t'))
		end--;
	char buf[256];
	mx_log(MX_LOG_INFO, "%s: message-id=%s", c->queue_id,
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
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	char sender[520];
	mx_log(MX_LOG_INFO, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (queued as %s)",
	       c->queue_id, conn_printable_str(c->sender, sender, sizeof(sender)), size,
	       c->nrcpt, c->queue_id);
	c->w->counters.messages_accepted++;
	c->cmds[c->data_cmd].ok++;
	struct smtp_verdict v = { .code = 0, .queue_id = c->queue_id };
	smtp_session_verdict(c->s, &v); /* formats the reply now: the ID may go */
	/* The transaction is over; the next one gets a new ID at its first recipient. */
	conn_txn_reset(c);
}

static void conn_on_message_end(struct conn *c, const struct smtp_event *ev)
{
	(void)ev;
	c->message_open = false;
	/* The durable commit runs on the spool writer thread (group commit); the verdict
	 * follows in conn_spool_news(), and the engine holds the pipeline until then. */
	int rc = spool_msg_commit(c->msg);
	if (rc < 0) {
		conn_commit_done(c, rc);
		return;
	}
	c->commit_pending = true;
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
	if (c->commit_pending)
		return true;
	return c->message_open && c->msg && spool_msg_busy(c->msg);
}

/* Count a command the engine refused, by the verb it says it last saw. */
static void conn_count_refused(struct conn *c, const struct smtp_event *ev)
{
	const char *where = smtp_session_where(c->s);
	/* 500: a line that is no command at all (unknown verb, bad syntax, too long) */
	if (ev->u.error.kind == SMTP_ERR_UNKNOWN_COMMAND || ev->u.error.code == 500) {
		conn_count(c, CONN_CMD_UNKNOWN, false);
		return;
	}
	if (ev->u.error.code == 0)
		return; /* no reply of its own (junk command limit) */
	for (int i = 0; i < CONN_CMD_UNKNOWN; i++) {
		if (strcasecmp(where, conn_cmd_names[i]) == 0) {
			conn_count(c, (enum conn_cmd)i, false);
			return;
		}
	}
	/* "END-OF-MESSAGE": the message was counted at DATA and stays "not ok" */
	c->w->counters.commands++;
}

static void conn_on_error(struct conn *c, const struct smtp_event *ev)
{
	char reply[600];
	const char *where = smtp_session_where(c->s);
	enum smtp_error_kind kind = ev->u.error.kind;

	c->w->counters.protocol_errors++;
	switch (kind) {
	case SMTP_ERR_UNAUTH_PIPELINING:
		/* Postfix 3.9: "improper command pipelining after CONNECT from ..." */
		c->w->counters.pipelining_violations++;
		mx_log(MX_LOG_INFO, "improper command pipelining after %s from %s", where,
		       c->client);
		return;
	case SMTP_ERR_BARE_NEWLINE:
		c->w->counters.bare_newlines++;
		mx_log(MX_LOG_INFO, "bare <LF> received after %s from %s", where, c->client);
		return;
	case SMTP_ERR_HARD_ERROR_LIMIT:
		mx_log(MX_LOG_INFO, "too many errors after %s from %s", where, c->client);
		return;
	case SMTP_ERR_TOO_MANY_RECIPIENTS:
		conn_log_reject(c, "RCPT", conn_last_reply(c, reply, sizeof(reply)), NULL);
		c->w->counters.recipients_rejected++;
		break;
	case SMTP_ERR_NO_VALID_RECIPIENTS:
		conn_log_reject(c, "DATA", conn_last_reply(c, reply, sizeof(reply)), NULL);
		break;
	case SMTP_ERR_MESSAGE_TOO_BIG:
	case SMTP_ERR_TOO_MANY_HOPS:
		if (strcmp(where, "MAIL") == 0) {
			/* MAIL FROM with a SIZE= above message_size_limit */
			conn_log_reject(c, "MAIL", conn_last_reply(c, reply, sizeof(reply)), NULL);
		} else {
			conn_log_reject(c, "END-OF-MESSAGE",
					conn_last_reply(c, reply, sizeof(reply)), NULL);
			c->w->counters.messages_rejected++;
		}
		break;
	default:
		break;
	}
	conn_count_refused(c, ev);
}

size_t conn_input(struct conn *c, const char *buf, size_t len)
{
	size_t off = 0;

	for (;;) {
		if (conn_waiting(c))
			return off;
		size_t used = 0;
		bool helo_answered = c->helo_answered;
		c->helo_answered = false;
		struct smtp_event ev = smtp_session_step(c->s, buf + off, len - off, &used);
		assert(used <= len - off);
		off += used;
		switch (ev.type) {
		case SMTP_EV_NONE:
			return off;
		case SMTP_EV_BLOCKED:
			/* Every verdict but a pending commit's is given before step() is called
			 * again, so this is the output buffer at its high-water mark (the
			 * transport flushes it) or a commit the spool has not answered yet. */
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending);
			return off;
		case SMTP_EV_HELO:
			conn_on_helo(c, &ev);
			break;
		case SMTP_EV_MAIL:
			conn_on_mail(c, &ev);
			break;
		case SMTP_EV_RCPT:
			conn_on_rcpt(c, &ev);
			break;
		case SMTP_EV_DATA:
			conn_on_data(c, &ev);
			break;
		case SMTP_EV_HEADER:
			if (c->message_open) {
				spool_msg_append(c->msg, ev.u.header.text.ptr, ev.u.header.text.len);
				if (conn_header_is(ev.u.header.text, "Message-ID"))
					conn_log_message_id(c, ev.u.header.text);
			}
			break;
		case SMTP_EV_HEADERS_END:
			break;
		case SMTP_EV_BODY:
			if (c->message_open)
				spool_msg_append(c->msg, ev.u.body.ptr, ev.u.body.len);
			break;
		case SMTP_EV_MESSAGE_END:
			if (c->message_open) {
				conn_on_message_end(c, &ev);
			} else {
				/* DATA was refused by us (spool), so the engine cannot be here;
				 * answer with the same refusal rather than pretend. */
				conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
			}
			break;
		case SMTP_EV_MESSAGE_ABORT:
			conn_txn_reset(c);
			break;
		case SMTP_EV_RSET:
			conn_txn_reset(c);
			if (!helo_answered)
				conn_count(c, CONN_CMD_RSET, true);
			break;
		case SMTP_EV_PROTOCOL_ERROR:
			conn_on_error(c, &ev);
			if (ev.u.error.delay_ms > c->delay_ms)
				c->delay_ms = ev.u.error.delay_ms;
			if (ev.u.error.closing || c->delay_ms)
				return off;
			break;
		case SMTP_EV_QUIT:
			conn_count(c, CONN_CMD_QUIT, true);
			return off;
		case SMTP_EV_CLOSE:
			return off;
		case SMTP_EV_MAX:
			assert(!"SMTP_EV_MAX is not an event");
			return off;
		}
		if (ev.needs_verdict)
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending);
	}
}

struct mx_span conn_output(const struct conn *c)
{
	return smtp_session_output(c->s);
}

void conn_output_done(struct conn *c, size_t n)
{
	smtp_session_output_done(c->s, n);
}

uint32_t conn_take_delay_ms(struct conn *c)
{
	uint32_t d = c->delay_ms;
	c->delay_ms = 0;
	return d;
}

bool conn_closed(const struct conn *c)
{
	return smtp_session_closed(c->s);
}

bool conn_in_data(const struct conn *c)
{
	return smtp_session_in_data(c->s);
}

/* Drain the events the engine has after a timeout, shutdown or lost peer (the abort of a
 * message in progress) without feeding it input. */
static void conn_drain(struct conn *c)
{
	for (int i = 0; i < 16; i++) {
		size_t used;
		struct smtp_event ev = smtp_session_step(c->s, NULL, 0, &used);
		if (ev.type == SMTP_EV_NONE || ev.type == SMTP_EV_BLOCKED)
			break;
		if (ev.type == SMTP_EV_MESSAGE_ABORT || ev.type == SMTP_EV_RSET)
			conn_txn_reset(c);
		if (ev.needs_verdict && smtp_session_verdict_pending(c->s))
			conn_verdict(c, 421, "4.3.2 Service shutting down", true);
	}
	/* Whatever the engine said, nothing of an unfinished message may stay behind. */
	if (c->message_open || c->msg)
		conn_txn_reset(c);
}

/* "timeout after DATA (1234 bytes) from unknown[192.0.2.1]" as Postfix. */
static void conn_log_after(struct conn *c, const char *what)
{
	char bytes[48] = "";
	if (c->message_open)
		snprintf(bytes, sizeof(bytes), " (%" PRIu64 " bytes)",
			 spool_msg_size(c->msg));
	mx_log(MX_LOG_INFO, "%s after %s%s from %s", what, smtp_session_where(c->s), bytes,
	       c->client);
}

void conn_timeout(struct conn *c)
{
	if (smtp_session_closed(c->s))
		return;
	conn_log_after(c, "timeout");
	c->w->counters.connections_timed_out++;
	smtp_session_timeout(c->s);
	conn_drain(c);
}

void conn_shutdown(struct conn *c)
{
	if (smtp_session_closed(c->s))
		return;
	if (c->commit_pending) {
		/* its 250 (or 451) first, then the 421: conn_spool_news() */
		c->shutdown_deferred = true;
		return;
	}
	smtp_session_shutdown(c->s);
	conn_drain(c);
}

void conn_peer_closed(struct conn *c)
{
	if (!smtp_session_closed(c->s) && !c->lost_logged) {
		conn_log_after(c, "lost connection");
		c->lost_logged = true;
	}
	smtp_session_peer_closed(c->s);
	conn_drain(c);
}
