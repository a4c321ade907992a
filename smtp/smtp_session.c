/* The sans-I/O SMTP server engine. smtp_session.h describes the event/verdict model; this
 * file follows Postfix 3.7's smtpd for reply texts, the order of checks and the error
 * accounting (error_count, junk_cmds), and hardens what Postfix 3.9 hardened by default
 * (smtpd_forbid_unauth_pipelining, smtpd_forbid_bare_newline).
 *
 * Layout of the work: step() first hands out events queued earlier (they never point into
 * an earlier call's input), then refuses to move while a verdict is pending, then runs the
 * state machine over the input until it has an event: command lines (RFC 5321 4.1),
 * DATA content (RFC 5321 4.5.2 dot-stuffing, end only at CR LF . CR LF) or BDAT chunks
 * (RFC 3030, raw octets). Message content goes through two stages: line ends and dots
 * (content_input), then the split into logical headers and body (header_byte). Body bytes
 * that need no rewriting are handed out as spans of the caller's input; everything the
 * engine rewrites comes from static strings or the header buffer.
 *
 * This file holds the lifecycle, the event queue, the state machine (every change of state
 * goes through smtp_session_enter_state()), the error accounting and the verdicts; the
 * replies, the commands, the message content and XCLIENT live in smtp_session_reply.c,
 * smtp_session_cmd.c, smtp_session_data.c and smtp_session_xclient.c, sharing
 * smtp_session_internal.h. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_internal.h"
#include "smtp/smtp_session_internal.h"

/* ---- names ---- */

const char *smtp_event_name(enum smtp_event_type t)
{
	switch (t) {
	case SMTP_EV_NONE:
		return "NONE";
	case SMTP_EV_BLOCKED:
		return "BLOCKED";
	case SMTP_EV_HELO:
		return "HELO";
	case SMTP_EV_MAIL:
		return "MAIL";
	case SMTP_EV_RCPT:
		return "RCPT";
	case SMTP_EV_DATA:
		return "DATA";
	case SMTP_EV_HEADER:
		return "HEADER";
	case SMTP_EV_HEADERS_END:
		return "HEADERS_END";
	case SMTP_EV_BODY:
		return "BODY";
	case SMTP_EV_MESSAGE_END:
		return "MESSAGE_END";
	case SMTP_EV_MESSAGE_ABORT:
		return "MESSAGE_ABORT";
	case SMTP_EV_RSET:
		return "RSET";
	case SMTP_EV_PROTOCOL_ERROR:
		return "PROTOCOL_ERROR";
	case SMTP_EV_QUIT:
		return "QUIT";
	case SMTP_EV_CLOSE:
		return "CLOSE";
	case SMTP_EV_XCLIENT:
		return "XCLIENT";
	case SMTP_EV_AUTH:
		return "AUTH";
	case SMTP_EV_AUTH_RESPONSE:
		return "AUTH_RESPONSE";
	case SMTP_EV_STARTTLS:
		return "STARTTLS";
	case SMTP_EV_MAX:
		break;
	}
	return "?";
}

const char *smtp_error_kind_name(enum smtp_error_kind k)
{
	switch (k) {
	case SMTP_ERR_NONE:
		return "none";
	case SMTP_ERR_UNKNOWN_COMMAND:
		return "unknown-command";
	case SMTP_ERR_SYNTAX:
		return "syntax";
	case SMTP_ERR_BAD_SEQUENCE:
		return "bad-sequence";
	case SMTP_ERR_LINE_TOO_LONG:
		return "line-too-long";
	case SMTP_ERR_BAD_ADDRESS:
		return "bad-address";
	case SMTP_ERR_BAD_PARAMETER:
		return "bad-parameter";
	case SMTP_ERR_MESSAGE_TOO_BIG:
		return "message-too-big";
	case SMTP_ERR_TOO_MANY_RECIPIENTS:
		return "too-many-recipients";
	case SMTP_ERR_RECIPIENT_OVERSHOOT:
		return "recipient-overshoot";
	case SMTP_ERR_TOO_MANY_HOPS:
		return "too-many-hops";
	case SMTP_ERR_BARE_NEWLINE:
		return "bare-newline";
	case SMTP_ERR_UNAUTH_PIPELINING:
		return "unauth-pipelining";
	case SMTP_ERR_HARD_ERROR_LIMIT:
		return "hard-error-limit";
	case SMTP_ERR_RATE_LIMIT:
		return "rate-limit";
	case SMTP_ERR_JUNK_COMMAND_LIMIT:
		return "junk-command-limit";
	case SMTP_ERR_NO_VALID_RECIPIENTS:
		return "no-valid-recipients";
	case SMTP_ERR_ACCESS_DENIED:
		return "access-denied";
	case SMTP_ERR_KIND_MAX:
		break;
	}
	return "?";
}

const char *smtp_session_state_name(const struct smtp_session *s)
{
	switch (s->state) {
	case ST_PREGREET:
		return "PREGREET";
	case ST_COMMAND:
		return "COMMAND";
	case ST_DATA:
		return "DATA";
	case ST_CHUNK:
		return "CHUNK";
	case ST_AUTH:
		return "AUTH";
	case ST_CLOSED:
		return "CLOSED";
	case ST_MAX:
		break;
	}
	return "?";
}

void smtp_config_defaults(struct smtp_config *cfg)
{
	/* postconf -d of Postfix 3.7, with the 3.9 anti-smuggling defaults. */
	*cfg = (struct smtp_config){
		.myhostname = "localhost",
		.banner = "localhost ESMTP mxgate",
		.mail_name = "mxgate",
		.line_length_limit = 2048,
		.message_size_limit = 10240000,
		.header_size_limit = 102400,
		.hopcount_limit = 50,
		.recipient_limit = 1000,
		.recipient_overshoot_limit = 1000,
		.soft_error_limit = 10,
		.hard_error_limit = 20,
		.junk_command_limit = 100,
		.error_sleep_ms = 1000,
		.bare_newline = SMTP_BARE_NEWLINE_NORMALIZE,
		.forbid_unauth_pipelining = true,
		.helo_required = false,
		.disable_vrfy_command = false,
		.strict_rfc821_envelopes = false,
		.enable_pipelining = true,
		.enable_chunking = true,
		.enable_smtputf8 = true,
		.enable_8bitmime = true,
		.enable_dsn = true,
		.sasl_response_limit = 12288,
	};
}

/* ---- the state machine ---- */

/* The one place the engine's state changes: PREGREET -> COMMAND (greeting) or CLOSED;
 * COMMAND <-> DATA and CHUNK (a message or chunk is read, then commands again); anything ->
 * CLOSED, which is final. */
void smtp_session_enter_state(struct smtp_session *s, enum session_state next)
{
	assert(next < ST_MAX);
	assert(s->state != ST_CLOSED || next == ST_CLOSED);
	s->state = next;
}

/* ---- events ---- */

struct smtp_event *smtp_session_evq_tail(struct smtp_session *s)
{
	assert(s->evq_len > 0);
	return &s->evq[(s->evq_head + s->evq_len - 1) % EVQ_CAP];
}

void smtp_session_evq_push(struct smtp_session *s, struct smtp_event ev)
{
	/* An event that needs a verdict is always the last: the engine stops at it. */
	assert(s->evq_len == 0 || !smtp_session_evq_tail(s)->needs_verdict);
	assert(s->evq_len < EVQ_CAP);
	if (s->evq_len >= EVQ_CAP)
		return;
	if (!s->evq && !(s->evq = malloc(EVQ_CAP * sizeof(*s->evq)))) {
		/* no memory for the event: the session ends (smtp_session_step()); its
		 * state, not an event, tells the transport it is closed */
		s->out_failed = true;
		return;
	}
	ev.unauth_pipelining = s->ill_pipelining;
	s->evq[(s->evq_head + s->evq_len) % EVQ_CAP] = ev;
	s->evq_len++;
}

static struct smtp_event evq_pop(struct smtp_session *s)
{
	if (s->evq_len == 0) /* its push found no memory (out_failed) */
		return (struct smtp_event){ .type = SMTP_EV_NONE };
	struct smtp_event ev = s->evq[s->evq_head];
	s->evq_head = (s->evq_head + 1) % EVQ_CAP;
	s->evq_len--;
	if (ev.needs_verdict)
		s->pending = ev.type;
	if (ev.type == SMTP_EV_MESSAGE_END)
		s->msg_open = false;
	return ev;
}

/* The queue goes back once it is empty at the end of a step() that consumed its input, or
 * of a verdict: a session waiting for its client holds none. */
static void session_evq_release(struct smtp_session *s)
{
	if (s->evq && !s->evq_len) {
		free(s->evq);
		s->evq = NULL;
		s->evq_head = 0;
	}
}

/* A queued event that needs a verdict but was never handed out cannot be answered once
 * the session closes: it is withdrawn (its command simply gets no reply). */
void smtp_session_evq_withdraw_unanswerable(struct smtp_session *s)
{
	if (s->evq_len > 0 && smtp_session_evq_tail(s)->needs_verdict)
		s->evq_len--;
}

void smtp_session_push_simple(struct smtp_session *s, enum smtp_event_type type)
{
	smtp_session_evq_push(s, (struct smtp_event){ .type = type });
}

void smtp_session_push_error(struct smtp_session *s, enum smtp_error_kind kind, uint16_t code,
			     bool closing, uint32_t delay_ms)
{
	struct smtp_event ev = { .type = SMTP_EV_PROTOCOL_ERROR };
	ev.u.error.kind = kind;
	ev.u.error.code = code;
	ev.u.error.closing = closing;
	ev.u.error.delay_ms = delay_ms;
	smtp_session_evq_push(s, ev);
}

/* ---- error accounting (Postfix smtpd_proto(): error_count, junk_cmds) ---- */

static uint32_t error_delay(const struct smtp_session *s)
{
	/* Postfix sleeps before replying once error_count reached the soft limit. */
	return s->error_count >= s->cfg->soft_error_limit ? s->cfg->error_sleep_ms : 0;
}

/* The engine refused a command (its reply is already queued). */
void smtp_session_engine_error(struct smtp_session *s, enum smtp_error_kind kind,
			       uint16_t code)
{
	uint32_t delay = error_delay(s);
	s->error_count++;
	smtp_session_push_error(s, kind, code, false, delay);
}

void smtp_session_abort_message(struct smtp_session *s)
{
	if (s->msg_open) {
		s->msg_open = false;
		smtp_session_push_simple(s, SMTP_EV_MESSAGE_ABORT);
	}
}

/* The engine ends the session after the reply it queued. */
void smtp_session_engine_close(struct smtp_session *s, enum smtp_error_kind kind,
			       uint16_t code)
{
	uint32_t delay = error_delay(s);
	smtp_session_evq_withdraw_unanswerable(s);
	smtp_session_abort_message(s);
	smtp_session_push_error(s, kind, code, true, delay);
	smtp_session_push_simple(s, SMTP_EV_CLOSE);
	smtp_session_enter_state(s, ST_CLOSED);
}

/* HELO, EHLO, RSET, NOOP, VRFY, HELP, ETRN: Postfix counts them, and once a client sent
 * more than smtpd_junk_command_limit of them, each further one counts as an error. */
void smtp_session_count_junk(struct smtp_session *s)
{
	if (s->junk_count++ > s->cfg->junk_command_limit) {
		uint32_t delay = error_delay(s);
		s->error_count++;
		smtp_session_push_error(s, SMTP_ERR_JUNK_COMMAND_LIMIT, 0, false, delay);
	}
}

bool smtp_session_pipelining_negotiated(const struct smtp_session *s)
{
	return s->esmtp && s->cfg->enable_pipelining;
}

/* RFC 2920 section 3.1 / Postfix 3.9 smtpd_forbid_unauth_pipelining. */
void smtp_session_sync_error(struct smtp_session *s)
{
	reply_lit(s, "554 5.5.0 Error: SMTP protocol synchronization");
	smtp_session_engine_close(s, SMTP_ERR_UNAUTH_PIPELINING, 554);
}

/* smtpd_forbid_bare_newline = reject. The reply names the host, as Postfix's does. */
void smtp_session_bare_lf_reject(struct smtp_session *s)
{
	char host[HOST_MAX + 1];
	smtp_session_replyf(s, "550 5.5.2 %s Error: bare <LF> received",
			    smtp_session_myhostname(s, host, sizeof(host)));
	smtp_session_engine_close(s, SMTP_ERR_BARE_NEWLINE, 550);
}

/* ---- the transaction ---- */

void smtp_session_txn_reset(struct smtp_session *s)
{
	s->mail_given = false;
	s->smtputf8 = false;
	s->body = SMTP_BODY_UNSPECIFIED;
	s->declared_size = 0;
	s->rcpt_count = 0;
	s->rcpt_overshoot = 0;
	s->bdat_used = false;
	s->bdat_failed = false;
}

/* ---- driving ---- */

static struct smtp_event run(struct smtp_session *s, const char *buf, size_t len, size_t *pos)
{
	struct smtp_event ev = { .type = SMTP_EV_NONE };

	for (;;) {
		if (s->evq_len)
			return ev;
		switch (s->state) {
		case ST_COMMAND:
			/* Postfix looks at the error count before reading each command. */
			if (s->error_count >= s->cfg->hard_error_limit) {
				char host[HOST_MAX + 1];
				smtp_session_replyf(s, "421 4.7.0 %s Error: too many errors",
						    smtp_session_myhostname(s, host, sizeof(host)));
				smtp_session_engine_close(s, SMTP_ERR_HARD_ERROR_LIMIT, 421);
				continue;
			}
			if (*pos >= len)
				return ev;
			if (smtp_session_out_pending(s) > OUT_HIGH_WATER) {
				ev.type = SMTP_EV_BLOCKED;
				return ev;
			}
			smtp_session_command_input(s, buf, len, pos);
			continue;
		case ST_DATA:
		case ST_CHUNK:
			if (s->state == ST_CHUNK && s->chunk_left == 0) {
				smtp_session_chunk_end(s, *pos < len);
				continue;
			}
			if (*pos >= len)
				return ev;
			ev = smtp_session_content_input(s, buf, len, pos);
			if (ev.type != SMTP_EV_NONE)
				return ev;
			continue;
		case ST_AUTH:
			if (*pos >= len)
				return ev;
			smtp_session_auth_input(s, buf, len, pos);
			continue;
		case ST_CLOSED:
			*pos = len;
			return ev;
		case ST_PREGREET:
		case ST_MAX:
			assert(!"run() in a state without input");
			return ev;
		}
	}
}

static struct smtp_event session_step(struct smtp_session *s, const char *buf, size_t len,
				      size_t *used)
{
	struct smtp_event ev = { .type = SMTP_EV_NONE };

	*used = 0;
	if (s->out_failed && s->state != ST_CLOSED) {
		/* a reply was lost for want of memory: the conversation cannot go on */
		smtp_session_evq_withdraw_unanswerable(s);
		smtp_session_abort_message(s);
		smtp_session_push_simple(s, SMTP_EV_CLOSE);
		smtp_session_enter_state(s, ST_CLOSED);
	}
	if (s->evq_len)
		return evq_pop(s);
	if (s->pending != SMTP_EV_NONE) {
		ev.type = SMTP_EV_BLOCKED;
		return ev;
	}
	switch (s->state) {
	case ST_CLOSED:
		*used = len; /* what follows the end of a session is not read */
		return ev;
	case ST_PREGREET:
		if (len == 0)
			return ev;
		if (!s->cfg->forbid_unauth_pipelining) {
			s->ill_pipelining = true; /* for reject_unauth_pipelining */
			ev.type = SMTP_EV_BLOCKED; /* kept until the greeting is out */
			return ev;
		}
		/* talking before the greeting (Postfix: "improper command pipelining after
		 * CONNECT") */
		smtp_session_sync_error(s);
		*used = len;
		return evq_pop(s);
	default:
		break;
	}
	size_t pos = 0;
	ev = run(s, buf, len, &pos);
	*used = s->state == ST_CLOSED && ev.type == SMTP_EV_NONE ? len : pos;
	if (ev.type == SMTP_EV_NONE && s->evq_len)
		ev = evq_pop(s);
	return ev;
}

struct smtp_event smtp_session_step(struct smtp_session *s, const char *buf, size_t len,
				    size_t *used)
{
	struct smtp_event ev = session_step(s, buf, len, used);
	/* input consumed, every event handed out: the queue goes back until the client
	 * sends more (once per read, not per event) */
	if (ev.type == SMTP_EV_NONE)
		session_evq_release(s);
	return ev;
}

/* ---- verdicts ---- */

/* timeout()/shutdown(): the 421 and the end of the session. */
static void close_now(struct smtp_session *s, enum close_reason why)
{
	char host[HOST_MAX + 1];

	smtp_session_evq_withdraw_unanswerable(s);
	if (why == CLOSE_TIMEOUT)
		smtp_session_replyf(s, "421 4.4.2 %s Error: timeout exceeded",
				    smtp_session_myhostname(s, host, sizeof(host)));
	else
		smtp_session_replyf(s, "421 4.3.2 %s Service shutting down",
				    smtp_session_myhostname(s, host, sizeof(host)));
	smtp_session_abort_message(s);
	smtp_session_push_simple(s, SMTP_EV_CLOSE);
	smtp_session_enter_state(s, ST_CLOSED);
}

static int session_verdict(struct smtp_session *s, const struct smtp_verdict *v)
{
	if (s->pending == SMTP_EV_NONE)
		return -EINVAL;
	enum smtp_event_type type = s->pending;
	unsigned code = v->code;
	bool auth = type == SMTP_EV_AUTH || type == SMTP_EV_AUTH_RESPONSE;
	bool accept = code == 0 || code / 100 == 2 || (type == SMTP_EV_DATA && code / 100 == 3) ||
		      (auth && code == 334);
	char host[HOST_MAX + 1];

	s->pending = SMTP_EV_NONE;
	if (s->state == ST_CLOSED) {
		/* The peer left while we waited: nothing is sent, but an accepted DATA opened
		 * a message the transport must drop. */
		if (type == SMTP_EV_DATA && accept)
			smtp_session_push_simple(s, SMTP_EV_MESSAGE_ABORT);
		return 0;
	}

	switch (type) {
	case SMTP_EV_HELO:
		smtp_session_count_junk(s);
		if (!accept) {
			smtp_session_reply_text(s, (uint16_t)code, v->text);
			break;
		}
		smtp_session_helo_accept(s);
		s->helo_seen = true;
		s->esmtp = s->helo_next_esmtp;
		if (s->mail_given || s->msg_open) {
			/* RFC 5321 4.1.4: an accepted EHLO/HELO resets the transaction */
			smtp_session_abort_message(s);
			smtp_session_txn_reset(s);
			smtp_session_push_simple(s, SMTP_EV_RSET);
		}
		if (code != 0)
			smtp_session_reply_text(s, (uint16_t)code, v->text);
		else if (s->esmtp)
			smtp_session_reply_ehlo(s);
		else
			smtp_session_replyf(s, "250 %s",
					    smtp_session_myhostname(s, host, sizeof(host)));
		break;
	case SMTP_EV_MAIL:
		if (accept) {
			s->mail_given = true;
			s->smtputf8 = s->mail_next_utf8;
			s->body = s->mail_next_body;
			s->declared_size = s->mail_next_size;
			s->rcpt_count = 0;
			s->rcpt_overshoot = 0;
		}
		if (code == 0)
			reply_lit(s, "250 2.1.0 Ok");
		else
			smtp_session_reply_text(s, (uint16_t)code, v->text);
		break;
	case SMTP_EV_RCPT:
		if (accept)
			s->rcpt_count++;
		if (code == 0)
			reply_lit(s, "250 2.1.5 Ok");
		else
			smtp_session_reply_text(s, (uint16_t)code, v->text);
		break;
	case SMTP_EV_DATA:
		if (s->data_next_bdat) {
			/* the BDAT chunk is read either way; its reply comes after it */
			smtp_session_enter_state(s, ST_CHUNK);
			if (accept) {
				smtp_session_content_begin(s);
				s->chunk_discard = false;
			} else {
				s->chunk_discard = true;
				s->bdat_failed = true;
				smtp_session_reply_text(s, (uint16_t)code, v->text);
			}
			break;
		}
		if (!accept) {
			smtp_session_reply_text(s, (uint16_t)code, v->text);
			break;
		}
		smtp_session_content_begin(s);
		smtp_session_enter_state(s, ST_DATA);
		if (code / 100 == 3)
			smtp_session_reply_text(s, (uint16_t)code, v->text);
		else
			reply_lit(s, "354 End data with <CR><LF>.<CR><LF>");
		break;
	case SMTP_EV_XCLIENT:
		if (v->access_denied && s->xcl) {
			/* the new identity, refused by the client restrictions */
			smtp_session_xclient_apply(s, v->xclient_authorized);
			smtp_session_reply_text(s, (uint16_t)code, v->text);
			s->access_denied = true;
		} else if (accept && s->xcl) {
			smtp_session_xclient_apply(s, v->xclient_authorized);
			s->access_denied = false;
			if (code == 0) {
				char banner[REPLY_LINE_MAX - 4];
				struct mx_span b = mx_span_cstr(s->cfg->banner);
				smtp_session_replyf(s, "220 %s",
						    smtp_session_printable(banner, sizeof(banner),
									   b, false));
			} else {
				smtp_session_reply_text(s, (uint16_t)code, v->text);
			}
		} else {
			smtp_session_reply_text(s, (uint16_t)code, v->text);
		}
		free(s->xcl);
		s->xcl = NULL;
		break;
	case SMTP_EV_AUTH:
	case SMTP_EV_AUTH_RESPONSE:
		/* it counts its own errors (a failed exchange is one error however many
		 * lines it took) */
		smtp_session_auth_verdict(s, code ? (uint16_t)code : 235, v->text);
		accept = true;
		break;
	case SMTP_EV_MESSAGE_END:
		if (code == 0 && v->queue_id) {
			char line[100] = "250 2.0.0 Ok: queued as ";
			size_t k = strlen(line), n = strlen(v->queue_id);
			if (n > 64)
				n = 64;
			smtp_session_printable(line + k, sizeof(line) - k,
					       mx_span_make(v->queue_id, n), false);
			k += n;
			line[k++] = '\r';
			line[k++] = '\n';
			smtp_session_out_write(s, line, k);
		} else {
			smtp_session_reply_text(s, code ? (uint16_t)code : 250, v->text);
		}
		if (accept) {
			/* Postfix forgives earlier errors once a message got through */
			s->error_count = 0;
			s->junk_count = 0;
		}
		smtp_session_txn_reset(s);
		break;
	default:
		assert(!"verdict for an event that takes none");
		return -EINVAL;
	}
	if (!accept)
		s->error_count++; /* the command "failed", as in Postfix's smtpd_proto() */

	/* 421 and 521 end the session (Postfix's smtpd_chat_reply()), and so does a
	 * verdict that asks for it. */
	if (v->disconnect || code == 421 || code == 521) {
		smtp_session_abort_message(s);
		smtp_session_push_simple(s, SMTP_EV_CLOSE);
		smtp_session_enter_state(s, ST_CLOSED);
	} else if (s->close_deferred != CLOSE_NONE) {
		close_now(s, s->close_deferred);
	}
	return 0;
}

int smtp_session_verdict(struct smtp_session *s, const struct smtp_verdict *v)
{
	int rc = session_verdict(s, v);
	session_evq_release(s);
	return rc;
}

/* ---- lifecycle ---- */

struct smtp_session *smtp_session_new(const struct smtp_config *cfg,
				      const struct smtp_client_info *client)
{
	struct smtp_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = cfg;
	smtp_session_enter_state(s, ST_PREGREET);
	s->where = "CONNECT";
	s->pending = SMTP_EV_NONE;
	smtp_session_set_client(s, client);
	return s;
}

void smtp_session_set_client(struct smtp_session *s, const struct smtp_client_info *client)
{
	smtp_session_store_client_addr(s, mx_span_cstr(client->addr));
	smtp_session_store_client_name(s, mx_span_cstr(client->name ? client->name : "unknown"));
	s->normalize_bare_lf = s->cfg->bare_newline == SMTP_BARE_NEWLINE_NORMALIZE ||
			       client->bare_newline_excluded;
	s->xclient_authorized = client->xclient_authorized;
}

void smtp_session_set_client_name(struct smtp_session *s, const char *name)
{
	smtp_session_store_client_name(s, mx_span_cstr(name ? name : "unknown"));
}

void smtp_session_store_client_addr(struct smtp_session *s, struct mx_span addr)
{
	char buf[ADDR_MAX + 1];
	smtp_session_printable(buf, sizeof(buf), addr, false);
	size_t n = strlen(buf) + 1;
	char *p = malloc(n);
	if (!p) {
		s->out_failed = true; /* smtp_session_step() ends the session */
		return;
	}
	memcpy(p, buf, n);
	free(s->client_addr);
	s->client_addr = p;
}

void smtp_session_store_client_name(struct smtp_session *s, struct mx_span name)
{
	char buf[HOST_MAX + 1];
	smtp_session_printable(buf, sizeof(buf), name, false);
	free(s->client_name);
	s->client_name = NULL;
	if (strcmp(buf, "unknown") == 0)
		return;
	size_t n = strlen(buf) + 1;
	if (!(s->client_name = malloc(n))) {
		s->out_failed = true; /* smtp_session_step() ends the session */
		return;
	}
	memcpy(s->client_name, buf, n);
}

const char *smtp_rate_event_name(enum smtp_rate_event e)
{
	switch (e) {
	case SMTP_RATE_MESSAGE:
		return "message";
	case SMTP_RATE_RECIPIENT:
		return "recipient";
	case SMTP_RATE_AUTH:
		return "auth";
	case SMTP_RATE_NEWTLS:
		return "newtls";
	case SMTP_RATE_EVENT_MAX:
		break;
	}
	return "?";
}

void smtp_session_set_rate_hook(struct smtp_session *s,
				bool (*over)(void *arg, enum smtp_rate_event event), void *arg)
{
	s->rate_over = over;
	s->rate_arg = arg;
}

void smtp_session_free(struct smtp_session *s)
{
	if (!s)
		return;
	free(s->line);
	free(s->hdr);
	free(s->out);
	free(s->xcl);
	free(s->auth_line);
	free(s->auth_header_user);
	free(s->auth_mechs);
	free(s->tls_received);
	free(s->evq);
	free(s->names);
	free(s->client_name);
	free(s->client_addr);
	free(s->tls_refuse);
	free(s);
}

void smtp_session_set_tls(struct smtp_session *s, bool offer, bool required)
{
	s->tls_offer = offer;
	s->tls_required = required;
}

void smtp_session_tls_begin(struct smtp_session *s)
{
	s->tls_active = true;
}

bool smtp_session_tls_active(const struct smtp_session *s)
{
	return s->tls_active;
}

void smtp_session_tls_refuse(struct smtp_session *s, const char *why)
{
	smtp_session_tls_refuse_as(s, "4.7.1", why);
}

void smtp_session_tls_refuse_as(struct smtp_session *s, const char *dsn, const char *why)
{
	struct session_tls_refuse *r = s->tls_refuse;
	if (!r && !(r = s->tls_refuse = malloc(sizeof(*r)))) {
		s->out_failed = true; /* no refusal to give: the session ends all the same */
		return;
	}
	size_t d = 0;
	for (; dsn[d] && d + 1 < sizeof(r->dsn); d++)
		r->dsn[d] = (dsn[d] >= '0' && dsn[d] <= '9') || dsn[d] == '.' ? dsn[d] : '?';
	r->dsn[d] = '\0';
	size_t n = 0;
	for (; why[n] && n + 1 < sizeof(r->text); n++)
		r->text[n] = (why[n] < 32 || why[n] == 127) ? '?' : why[n];
	r->text[n] = '\0';
}

int smtp_session_set_tls_received(struct smtp_session *s, const char *clause)
{
	free(s->tls_received);
	s->tls_received = NULL;
	if (!clause)
		return 0;
	size_t n = strnlen(clause, 1024);
	if (!(s->tls_received = malloc(n + 1)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)clause[i];
		/* a CR or LF only as a line break followed by a TAB: the header stays one */
		bool fold = (c == '\r' && i + 2 < n && clause[i + 1] == '\n' && clause[i + 2] == '\t') ||
			    (c == '\n' && i > 0 && clause[i - 1] == '\r' && i + 1 < n &&
			     clause[i + 1] == '\t');
		s->tls_received[i] = (c < 32 && c != '\t' && !fold) || c == 127 ? '?' : (char)c;
	}
	s->tls_received[n] = '\0';
	return 0;
}

void smtp_session_greet(struct smtp_session *s)
{
	if (s->state != ST_PREGREET)
		return;
	char banner[REPLY_LINE_MAX - 4];
	struct mx_span b = mx_span_cstr(s->cfg->banner);
	smtp_session_replyf(s, "220 %s", smtp_session_printable(banner, sizeof(banner), b, false));
	smtp_session_enter_state(s, ST_COMMAND);
}

void smtp_session_greet_reject(struct smtp_session *s, uint16_t code, const char *text)
{
	if (s->state != ST_PREGREET)
		return;
	smtp_session_reply_text(s, code, text);
	smtp_session_push_simple(s, SMTP_EV_CLOSE);
	smtp_session_enter_state(s, ST_CLOSED);
}

void smtp_session_greet_deny(struct smtp_session *s, uint16_t code, const char *text)
{
	if (s->state != ST_PREGREET)
		return;
	smtp_session_reply_text(s, code, text);
	smtp_session_enter_state(s, ST_COMMAND);
	s->access_denied = true;
}

static void request_close(struct smtp_session *s, enum close_reason why)
{
	if (s->state == ST_CLOSED)
		return;
	if (s->pending != SMTP_EV_NONE) {
		/* the pending reply goes first; replies stay in command order */
		s->close_deferred = why;
		return;
	}
	close_now(s, why);
}

void smtp_session_timeout(struct smtp_session *s)
{
	request_close(s, CLOSE_TIMEOUT);
}

void smtp_session_shutdown(struct smtp_session *s)
{
	request_close(s, CLOSE_SHUTDOWN);
}

void smtp_session_peer_closed(struct smtp_session *s)
{
	s->peer_gone = true;
	s->out_off = s->out_len = 0;
	free(s->out);
	s->out = NULL;
	if (s->state == ST_CLOSED)
		return;
	smtp_session_evq_withdraw_unanswerable(s);
	smtp_session_abort_message(s);
	smtp_session_enter_state(s, ST_CLOSED);
}

bool smtp_session_closed(const struct smtp_session *s)
{
	return s->state == ST_CLOSED;
}

bool smtp_session_verdict_pending(const struct smtp_session *s)
{
	return s->pending != SMTP_EV_NONE;
}

bool smtp_session_in_data(const struct smtp_session *s)
{
	return s->state == ST_DATA || s->state == ST_CHUNK || s->msg_open;
}

uint64_t smtp_session_requests(const struct smtp_session *s)
{
	return s->requests;
}

const char *smtp_session_protocol(const struct smtp_session *s)
{
	if (!s->esmtp)
		return "SMTP";
	return s->smtputf8 ? "UTF8SMTP" : "ESMTP";
}

struct mx_span smtp_session_helo(const struct smtp_session *s)
{
	return mx_span_make(smtp_session_helo_str(s), s->helo_len);
}

const char *smtp_session_where(const struct smtp_session *s)
{
	return s->where;
}

size_t smtp_session_memory(const struct smtp_session *s)
{
	return sizeof(*s) + (s->line ? s->cfg->line_length_limit : 0) + s->hdr_cap +
	       (s->out ? OUT_CAP : 0) + (s->xcl ? sizeof(*s->xcl) : 0) +
	       (s->auth_line ? s->cfg->sasl_response_limit + 2 : 0) +
	       (s->tls_received ? strlen(s->tls_received) + 1 : 0) +
	       (s->names ? sizeof(*s->names) : 0) + (s->evq ? EVQ_CAP * sizeof(*s->evq) : 0) + (s->tls_refuse ? sizeof(*s->tls_refuse) : 0) +
	       (s->client_name ? strlen(s->client_name) + 1 : 0) +
	       (s->client_addr ? strlen(s->client_addr) + 1 : 0);
}

void smtp_session_received_info(const struct smtp_session *s, struct smtp_received_info *out)
{
	out->helo = mx_span_make(smtp_session_helo_str(s), s->helo_len);
	out->client_name = smtp_session_client_name_str(s);
	out->client_addr = smtp_session_client_addr_str(s);
	out->myhostname = s->cfg->myhostname;
	out->mail_name = s->cfg->mail_name;
	/* Received: RFC 3848's ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA; Postfix: for ESMTP only */
	const char *proto = smtp_session_protocol(s);
	if (strcmp(proto, "ESMTP") == 0 && (s->tls_active || s->auth_authenticated))
		proto = s->tls_active && s->auth_authenticated ? "ESMTPSA"
			: s->tls_active			       ? "ESMTPS"
							       : "ESMTPA";
	out->protocol = proto;
	out->tls_clause = s->tls_active ? s->tls_received : NULL;
	out->auth_sender = s->auth_header_user;
}
