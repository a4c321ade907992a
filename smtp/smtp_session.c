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
 * engine rewrites comes from static strings or the header buffer. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "mxgate/ctype.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_internal.h"

#define OUT_CAP 4096
#define REPLY_MAX 1024                     /* longest reply one command or verdict makes */
#define OUT_HIGH_WATER (OUT_CAP - 2 * REPLY_MAX) /* room for a reply and a closing 421 */
#define REPLY_LINE_MAX 510                 /* RFC 5321 4.5.3.1.5: 512 with CRLF */
#define EVQ_CAP 8 /* the most one step queues is 4; a timeout adds 2 */
#define HOST_MAX 255
#define ADDR_MAX 63
#define HDR_INITIAL 512
#define HDR_SLACK 16 /* a folded CRLF, a truncation CRLF and one byte group past the limit */
#define XCLIENT_VALUE_MAX 255 /* Postfix: "attribute value too long" past it */

enum session_state {
	ST_PREGREET, /* before smtp_session_greet() */
	ST_COMMAND,  /* reading command lines */
	ST_DATA,     /* DATA content, until CR LF . CR LF */
	ST_CHUNK,    /* the octets of a BDAT chunk */
	ST_CLOSED,
	ST_MAX,
};

enum content_state {
	CS_BOL,    /* at the start of a line */
	CS_MID,    /* inside a line */
	CS_CR,     /* inside a line, the last byte was a CR (already passed on) */
	CS_DOT,    /* DATA: a line started with '.' (held back) */
	CS_DOT_CR, /* DATA: ".\r" at the start of a line (both held back) */
	CS_MAX,
};

enum header_state {
	HS_BOL,     /* at the start of a line of the header section */
	HS_NAME,    /* reading what may be a field name */
	HS_NAME_WS, /* blanks between a field name and its colon (RFC 5322 obs-optional) */
	HS_VALUE,   /* inside a header field */
	HS_BODY,    /* the header section is over */
	HS_MAX,
};

enum msg_failure {
	MF_NONE,
	MF_TOO_BIG, /* message_size_limit */
	MF_HOPS,    /* hopcount_limit */
	MF_NOMEM,   /* the header buffer could not grow */
	MF_MAX,
};

enum close_reason {
	CLOSE_NONE,
	CLOSE_TIMEOUT,
	CLOSE_SHUTDOWN,
	CLOSE_MAX,
};

struct smtp_session {
	const struct smtp_config *cfg;
	enum session_state state;
	const char *where; /* the last command, as Postfix logs "lost connection after X" */

	char client_addr[ADDR_MAX + 1];
	char client_name[HOST_MAX + 1];
	bool normalize_bare_lf; /* bare LF is taken as CRLF (normalize mode, or excluded) */
	bool peer_gone;
	bool xclient_authorized; /* smtpd_authorized_xclient_hosts matches the client */
	bool ill_pipelining;     /* Postfix's SMTPD_FLAG_ILL_PIPELINING (sticky) */
	bool access_denied;      /* smtp_session_greet_deny(): only QUIT (and XCLIENT) work */
	struct xclient_buf *xcl; /* the XCLIENT awaiting its verdict (taken lazily) */

	/* HELO/EHLO: the accepted name (neutered for Received:) and the one being decided */
	char helo[HOST_MAX + 1];
	size_t helo_len;
	bool helo_seen, esmtp;
	char helo_next[HOST_MAX + 1];
	size_t helo_next_len;
	bool helo_next_esmtp;

	/* The verdict being waited for and what applying it needs. */
	enum smtp_event_type pending;
	uint64_t mail_next_size;
	enum smtp_body_type mail_next_body;
	bool mail_next_utf8;
	bool data_next_bdat;
	enum close_reason close_deferred; /* timeout/shutdown after the pending reply */

	/* The mail transaction. */
	bool mail_given;
	bool smtputf8;
	enum smtp_body_type body;
	uint64_t declared_size;
	unsigned rcpt_count;
	unsigned rcpt_overshoot; /* 452s past recipient_limit in this transaction */
	uint64_t requests;       /* command lines and message contents read in full */
	bool bdat_used;   /* this transaction sends its message with BDAT */
	bool bdat_failed; /* BDAT error state: chunks are discarded until LAST */
	bool msg_open;    /* DATA accepted; MESSAGE_END or MESSAGE_ABORT still owed */

	/* Postfix's error_count and junk_cmds. */
	unsigned error_count, junk_count;

	/* A command line that arrived in pieces. */
	char *line;
	size_t line_len;
	bool line_skip; /* over line_length_limit: skipping to its end */

	/* The BDAT chunk being read. */
	uint64_t chunk_size, chunk_left;
	bool chunk_last, chunk_discard;

	/* Message content. */
	enum content_state cs;
	bool bol_crlf; /* the current line began after a real CRLF (or at the 354) */
	enum header_state hs;
	char *hdr;
	size_t hdr_cap, hdr_len, hdr_start, hdr_drop;
	bool hdr_have, hdr_trunc, headers_end_sent;
	uint64_t msg_bytes;  /* content after unstuffing and normalizing: the size limit */
	uint64_t msg_stored; /* what HEADER and BODY events handed out */
	unsigned hops;
	enum msg_failure fail;

	struct smtp_event evq[EVQ_CAP];
	unsigned evq_head, evq_len;

	/* Replies waiting to be sent. Taken when a reply is made and given back once all of
	 * it was sent, so an idle session holds none. */
	char *out;
	size_t out_off, out_len;
	bool out_failed; /* a reply could not be kept (no memory): the session ends */
	/* soft_bounce: where the reply being written is in its line, and whether its code
	 * was turned from 5xx into 4xx (then a 5.x.x enhanced code follows suit). */
	unsigned out_col;
	bool out_softened;
};

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

const char *smtp_xclient_attr_name(enum smtp_xclient_attr a)
{
	switch (a) {
	case SMTP_XCLIENT_NAME:
		return "NAME";
	case SMTP_XCLIENT_REVERSE_NAME:
		return "REVERSE_NAME";
	case SMTP_XCLIENT_ADDR:
		return "ADDR";
	case SMTP_XCLIENT_PORT:
		return "PORT";
	case SMTP_XCLIENT_PROTO:
		return "PROTO";
	case SMTP_XCLIENT_HELO:
		return "HELO";
	case SMTP_XCLIENT_LOGIN:
		return "LOGIN";
	case SMTP_XCLIENT_DESTADDR:
		return "DESTADDR";
	case SMTP_XCLIENT_DESTPORT:
		return "DESTPORT";
	case SMTP_XCLIENT_ATTR_MAX:
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
	};
}

/* ---- small helpers ---- */

static bool span_eq_cstr_nocase(struct mx_span a, const char *b)
{
	return mx_span_eq_nocase(a, mx_span_cstr(b));
}

/* True when `s` starts with `prefix` (ASCII, any case); *rest is what follows. */
static bool span_prefix_nocase(struct mx_span s, const char *prefix, struct mx_span *rest)
{
	size_t n = strlen(prefix);
	if (s.len < n || !mx_span_eq_nocase(mx_span_make(s.ptr, n), mx_span_make(prefix, n)))
		return false;
	*rest = mx_span_make(s.ptr + n, s.len - n);
	return true;
}

static struct mx_span span_trim(struct mx_span s)
{
	while (s.len && mx_ctype_is_blank(s.ptr[0])) {
		s.ptr++;
		s.len--;
	}
	while (s.len && mx_ctype_is_blank(s.ptr[s.len - 1]))
		s.len--;
	return s;
}

/* Client text echoed in a reply or header: control characters become '?', and so do
 * 8-bit bytes unless `utf8` (the caller checked the text is UTF-8). Always terminated. */
static const char *printable(char *dst, size_t cap, struct mx_span src, bool utf8)
{
	size_t n = src.len < cap - 1 ? src.len : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src.ptr[i];
		dst[i] = (c < 32 || c == 127 || (c >= 128 && !utf8)) ? '?' : (char)c;
	}
	dst[n] = '\0';
	return dst;
}

static const char *myhostname(const struct smtp_session *s, char *buf, size_t cap)
{
	return printable(buf, cap, mx_span_cstr(s->cfg->myhostname), false);
}

/* ---- events ---- */

static struct smtp_event *evq_tail(struct smtp_session *s)
{
	assert(s->evq_len > 0);
	return &s->evq[(s->evq_head + s->evq_len - 1) % EVQ_CAP];
}

static void evq_push(struct smtp_session *s, struct smtp_event ev)
{
	/* An event that needs a verdict is always the last: the engine stops at it. */
	assert(s->evq_len == 0 || !evq_tail(s)->needs_verdict);
	assert(s->evq_len < EVQ_CAP);
	if (s->evq_len >= EVQ_CAP)
		return;
	ev.unauth_pipelining = s->ill_pipelining;
	s->evq[(s->evq_head + s->evq_len) % EVQ_CAP] = ev;
	s->evq_len++;
}

static struct smtp_event evq_pop(struct smtp_session *s)
{
	struct smtp_event ev = s->evq[s->evq_head];
	s->evq_head = (s->evq_head + 1) % EVQ_CAP;
	s->evq_len--;
	if (ev.needs_verdict)
		s->pending = ev.type;
	if (ev.type == SMTP_EV_MESSAGE_END)
		s->msg_open = false;
	return ev;
}

/* A queued event that needs a verdict but was never handed out cannot be answered once
 * the session closes: it is withdrawn (its command simply gets no reply). */
static void evq_withdraw_unanswerable(struct smtp_session *s)
{
	if (s->evq_len > 0 && evq_tail(s)->needs_verdict)
		s->evq_len--;
}

static void push_simple(struct smtp_session *s, enum smtp_event_type type)
{
	evq_push(s, (struct smtp_event){ .type = type });
}

static void push_error(struct smtp_session *s, enum smtp_error_kind kind, uint16_t code,
		       bool closing, uint32_t delay_ms)
{
	struct smtp_event ev = { .type = SMTP_EV_PROTOCOL_ERROR };
	ev.u.error.kind = kind;
	ev.u.error.code = code;
	ev.u.error.closing = closing;
	ev.u.error.delay_ms = delay_ms;
	evq_push(s, ev);
}

/* ---- replies ---- */

static size_t out_pending(const struct smtp_session *s)
{
	return s->out_len - s->out_off;
}

/* soft_bounce = yes: every 5xx reply line leaves as the matching 4xx, and its 5.x.x
 * enhanced code as 4.x.x, as Postfix's smtpd_chat_reply() rewrites them; whatever wrote
 * the reply (the engine, a policy verdict, header_checks). */
static void out_soften(struct smtp_session *s, char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s->out_col == 0) {
			s->out_softened = p[i] == '5';
			if (s->out_softened)
				p[i] = '4';
		} else if (s->out_col == 4 && s->out_softened && p[i] == '5') {
			p[i] = '4';
		}
		s->out_col = p[i] == '\n' ? 0 : s->out_col + 1;
	}
}

static void out_write(struct smtp_session *s, const char *p, size_t n)
{
	if (s->peer_gone)
		return; /* nobody will read it */
	if (!s->out && !(s->out = malloc(OUT_CAP))) {
		s->out_failed = true;
		return;
	}
	if (s->out_len + n > OUT_CAP && s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	/* The high-water mark leaves room for every reply one step can make. */
	assert(s->out_len + n <= OUT_CAP);
	if (s->out_len + n > OUT_CAP)
		n = OUT_CAP - s->out_len;
	memcpy(s->out + s->out_len, p, n);
	if (s->cfg->soft_bounce)
		out_soften(s, s->out + s->out_len, n);
	s->out_len += n;
}

/* One reply line; CRLF is appended. */
static void replyf(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void replyf(struct smtp_session *s, const char *fmt, ...)
{
	char line[REPLY_LINE_MAX + 3];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, REPLY_LINE_MAX + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > REPLY_LINE_MAX)
		n = REPLY_LINE_MAX;
	line[n++] = '\r';
	line[n++] = '\n';
	out_write(s, line, (size_t)n);
}

/* A fixed reply line (with its CRLF). */
#define reply_lit(s, text) out_write((s), text "\r\n", sizeof(text "\r\n") - 1)

/* A reply chosen by the transport: `text` may hold several lines separated by "\n" or
 * "\r\n" (a multi-line reply, RFC 5321 4.2.1); control characters become '?'. */
static void reply_text(struct smtp_session *s, uint16_t code, const char *text)
{
	assert(code >= 200 && code <= 599);
	if (code < 200 || code > 599)
		code = 451;
	if (!text) {
		switch (code / 100) {
		case 2:
			text = "2.0.0 Ok";
			break;
		case 3:
			text = "End data with <CR><LF>.<CR><LF>";
			break;
		case 4:
			text = "4.7.1 Service unavailable - try again later";
			break;
		default:
			text = "5.7.1 Service unavailable";
			break;
		}
	}
	size_t total = 0;
	const char *p = text;
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > REPLY_LINE_MAX - 4)
			n = REPLY_LINE_MAX - 4;
		bool last = !nl || nl[1] == '\0' || total + n + 6 > REPLY_MAX - REPLY_LINE_MAX;
		char line[REPLY_LINE_MAX + 3];
		int k = snprintf(line, sizeof(line), "%03u%c", (unsigned)code, last ? ' ' : '-');
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			line[k++] = (c < 32 || c == 127) ? '?' : (char)c;
		}
		line[k++] = '\r';
		line[k++] = '\n';
		out_write(s, line, (size_t)k);
		total += (size_t)k;
		if (last)
			break;
		p = nl + 1;
	}
}

/* ---- error accounting (Postfix smtpd_proto(): error_count, junk_cmds) ---- */

static uint32_t error_delay(const struct smtp_session *s)
{
	/* Postfix sleeps before replying once error_count reached the soft limit. */
	return s->error_count >= s->cfg->soft_error_limit ? s->cfg->error_sleep_ms : 0;
}

/* The engine refused a command (its reply is already queued). */
static void engine_error(struct smtp_session *s, enum smtp_error_kind kind, uint16_t code)
{
	uint32_t delay = error_delay(s);
	s->error_count++;
	push_error(s, kind, code, false, delay);
}

/* A literal refusal: send it and report it. The reported code is read from the text, so
 * the two can never disagree. */
#define refuse_lit(s, kind, text)                                                          \
	do {                                                                               \
		reply_lit((s), text);                                                      \
		engine_error((s), (kind), (uint16_t)(((text)[0] - '0') * 100 +              \
						      ((text)[1] - '0') * 10 + ((text)[2] - '0'))); \
	} while (0)

/* A non-ASCII address without SMTPUTF8 on MAIL (RFC 6531 3.4): Postfix's 553 when we
 * offer SMTPUTF8, else it is plain bad syntax. */
static void refuse_undeclared_utf8(struct smtp_session *s, bool recipient)
{
	if (s->cfg->enable_smtputf8)
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS,
			   "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	else if (recipient)
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
	else
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.7 Bad sender address syntax");
}

static void abort_message(struct smtp_session *s)
{
	if (s->msg_open) {
		s->msg_open = false;
		push_simple(s, SMTP_EV_MESSAGE_ABORT);
	}
}

/* The engine ends the session after the reply it queued. */
static void engine_close(struct smtp_session *s, enum smtp_error_kind kind, uint16_t code)
{
	uint32_t delay = error_delay(s);
	evq_withdraw_unanswerable(s);
	abort_message(s);
	push_error(s, kind, code, true, delay);
	push_simple(s, SMTP_EV_CLOSE);
	s->state = ST_CLOSED;
}

/* HELO, EHLO, RSET, NOOP, VRFY, HELP, ETRN: Postfix counts them, and once a client sent
 * more than smtpd_junk_command_limit of them, each further one counts as an error. */
static void count_junk(struct smtp_session *s)
{
	if (s->junk_count++ > s->cfg->junk_command_limit) {
		uint32_t delay = error_delay(s);
		s->error_count++;
		push_error(s, SMTP_ERR_JUNK_COMMAND_LIMIT, 0, false, delay);
	}
}

static bool pipelining_negotiated(const struct smtp_session *s)
{
	return s->esmtp && s->cfg->enable_pipelining;
}

/* RFC 2920 section 3.1 / Postfix 3.9 smtpd_forbid_unauth_pipelining. */
static void sync_error(struct smtp_session *s)
{
	reply_lit(s, "554 5.5.0 Error: SMTP protocol synchronization");
	engine_close(s, SMTP_ERR_UNAUTH_PIPELINING, 554);
}

/* smtpd_forbid_bare_newline = reject. The reply names the host, as Postfix's does. */
static void bare_lf_reject(struct smtp_session *s)
{
	char host[HOST_MAX + 1];
	replyf(s, "550 5.5.2 %s Error: bare <LF> received", myhostname(s, host, sizeof(host)));
	engine_close(s, SMTP_ERR_BARE_NEWLINE, 550);
}

/* ---- the transaction ---- */

static void txn_reset(struct smtp_session *s)
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

/* ---- message content: the header section (RFC 5322 2.2) ---- */

static bool hdr_reserve(struct smtp_session *s, size_t extra)
{
	size_t need = s->hdr_len + extra;
	if (need <= s->hdr_cap)
		return true;
	size_t limit = s->cfg->header_size_limit;
	size_t max = limit < SIZE_MAX - HDR_SLACK ? limit + HDR_SLACK : SIZE_MAX;
	if (need > max)
		return false;
	size_t cap = s->hdr_cap ? s->hdr_cap : HDR_INITIAL;
	while (cap < need && cap < SIZE_MAX / 2)
		cap *= 2;
	if (cap > max)
		cap = max;
	char *p = realloc(s->hdr, cap);
	if (!p)
		return false;
	s->hdr = p;
	s->hdr_cap = cap;
	return true;
}

static void message_fail(struct smtp_session *s, enum msg_failure f)
{
	if (s->fail == MF_NONE)
		s->fail = f;
}

/* The capacity was reserved before this byte group (spans of queued events may point into
 * the buffer, so it cannot move here). */
static void hdr_put(struct smtp_session *s, char c)
{
	assert(s->hdr_len < s->hdr_cap);
	if (s->hdr_len >= s->hdr_cap) {
		message_fail(s, MF_NOMEM);
		return;
	}
	s->hdr[s->hdr_len++] = c;
}

static bool header_name_is(const char *text, size_t n, const char *name)
{
	size_t k = 0;
	while (k < n && text[k] != ':' && !mx_ctype_is_blank(text[k]))
		k++;
	return mx_span_eq_nocase(mx_span_make(text, k), mx_span_cstr(name));
}

/* Hand out the logical header collected so far (it ends in CRLF). */
static void emit_header(struct smtp_session *s)
{
	char *text = s->hdr + s->hdr_start;
	size_t n = s->hdr_len - s->hdr_start;
	bool truncated = s->hdr_trunc;

	if (truncated) {
		/* Cut to a well-formed field: no dangling fold, one CRLF at the end. The name
		 * and its colon are always kept, so it stays a header. */
		while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' ||
				 text[n - 1] == '\n'))
			n--;
		text[n++] = '\r';
		text[n++] = '\n';
		s->hdr_len = s->hdr_start + n;
	}
	s->hdr_have = false;
	s->hdr_trunc = false;
	s->hdr_start = s->hdr_len;
	s->hdr_drop = s->hdr_len;

	/* Postfix's cleanup counts Received: headers, its own included: a message is too
	 * far travelled when that count reaches hopcount_limit. Ours is prepended by the
	 * transport, hence the +1. */
	if (s->cfg->hopcount_limit && header_name_is(text, n, "Received") &&
	    ++s->hops + 1 >= s->cfg->hopcount_limit) {
		message_fail(s, MF_HOPS);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_HEADER };
	ev.u.header.text = mx_span_make(text, n);
	ev.u.header.truncated = truncated;
	evq_push(s, ev);
	s->msg_stored += n;
}

static void header_value_byte(struct smtp_session *s, char c)
{
	if (s->hdr_len - s->hdr_start < s->cfg->header_size_limit)
		hdr_put(s, c);
	else
		s->hdr_trunc = true; /* header_size_limit: the excess is discarded */
	if (c == '\n') {
		s->hs = HS_BOL;
		s->hdr_have = true;
	}
}

/* One byte of normalized content while the header section lasts. A field is a name of
 * printable characters and a colon; it continues on lines that start with a blank. The
 * first line that is neither ends the section and is the first line of the body (the
 * empty separator line included). */
static void header_byte(struct smtp_session *s, char c)
{
	unsigned char u = (unsigned char)c;
	size_t cur = s->hdr_len - s->hdr_start;
	size_t limit = s->cfg->header_size_limit;
	bool name_char = u > 32 && u < 127 && c != ':';

	switch (s->hs) {
	case HS_BOL:
		if (s->hdr_have && mx_ctype_is_blank(c)) {
			s->hs = HS_VALUE;
			header_value_byte(s, c);
			return;
		}
		if (s->hdr_have) {
			emit_header(s);
			if (s->fail != MF_NONE)
				return;
			cur = 0;
		}
		if (name_char && cur < limit) {
			hdr_put(s, c);
			s->hs = HS_NAME;
			return;
		}
		break;
	case HS_NAME:
		if (name_char && cur < limit) {
			hdr_put(s, c);
			return;
		}
		if (c == ':') {
			hdr_put(s, c);
			s->hs = HS_VALUE;
			return;
		}
		if (mx_ctype_is_blank(c) && cur < limit) {
			hdr_put(s, c);
			s->hs = HS_NAME_WS;
			return;
		}
		break;
	case HS_NAME_WS:
		if (mx_ctype_is_blank(c) && cur < limit) {
			hdr_put(s, c);
			return;
		}
		if (c == ':') {
			hdr_put(s, c);
			s->hs = HS_VALUE;
			return;
		}
		break;
	case HS_VALUE:
		header_value_byte(s, c);
		return;
	case HS_BODY: {
		/* the rest of the byte group that ended the header section */
		struct smtp_event *tail = evq_tail(s);
		assert(tail->type == SMTP_EV_BODY && tail->u.body.ptr + tail->u.body.len ==
							       s->hdr + s->hdr_len);
		hdr_put(s, c);
		tail->u.body.len++;
		s->msg_stored++;
		return;
	}
	case HS_MAX:
		assert(!"bad header state");
		return;
	}

	/* Not a header line: the body starts with it. */
	hdr_put(s, c);
	if (!s->headers_end_sent) {
		s->headers_end_sent = true;
		push_simple(s, SMTP_EV_HEADERS_END);
	}
	struct smtp_event ev = { .type = SMTP_EV_BODY };
	ev.u.body = mx_span_make(s->hdr + s->hdr_start, s->hdr_len - s->hdr_start);
	s->msg_stored += ev.u.body.len;
	evq_push(s, ev);
	s->hs = HS_BODY;
}

/* ---- message content: line ends and dots ---- */

/* Count content toward message_size_limit (RFC 1870; Postfix counts what it stores). */
static bool count_bytes(struct smtp_session *s, size_t n)
{
	s->msg_bytes += n;
	if (s->cfg->message_size_limit && s->msg_bytes > s->cfg->message_size_limit) {
		message_fail(s, MF_TOO_BIG);
		return false;
	}
	return true;
}

/* Content the engine makes up (a CRLF for a bare LF, a held-back dot or CR). */
static void emit_static(struct smtp_session *s, const char *p, size_t n)
{
	if (s->fail != MF_NONE || !count_bytes(s, n))
		return;
	if (s->hs != HS_BODY) {
		for (size_t i = 0; i < n && s->fail == MF_NONE; i++)
			header_byte(s, p[i]);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_BODY };
	ev.u.body = mx_span_make(p, n);
	s->msg_stored += n;
	evq_push(s, ev);
}

static void content_begin(struct smtp_session *s)
{
	s->cs = CS_BOL;
	s->bol_crlf = true; /* the 354 reply stands for the CRLF before a first "." line */
	s->hs = HS_BOL;
	s->hdr_len = s->hdr_start = s->hdr_drop = 0;
	s->hdr_have = s->hdr_trunc = s->headers_end_sent = false;
	s->msg_bytes = s->msg_stored = 0;
	s->hops = 0;
	s->fail = MF_NONE;
	s->msg_open = true;
}

/* End of the message (CR LF . CR LF, or the end of BDAT LAST). */
static void message_end(struct smtp_session *s)
{
	s->requests++;
	s->state = ST_COMMAND;
	s->where = "END-OF-MESSAGE";
	if (s->fail == MF_NONE && s->hs != HS_BODY && s->hdr_have)
		emit_header(s);
	if (s->fail == MF_NONE) {
		if (!s->headers_end_sent) {
			s->headers_end_sent = true;
			push_simple(s, SMTP_EV_HEADERS_END);
		}
		struct smtp_event ev = { .type = SMTP_EV_MESSAGE_END, .needs_verdict = true };
		ev.u.message.size = s->msg_stored;
		ev.u.message.recipients = s->rcpt_count;
		evq_push(s, ev);
		return;
	}
	switch (s->fail) {
	case MF_TOO_BIG:
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Error: message file too big");
		break;
	case MF_HOPS:
		refuse_lit(s, SMTP_ERR_TOO_MANY_HOPS, "554 5.4.0 Error: too many hops");
		break;
	case MF_NOMEM:
	case MF_NONE:
	case MF_MAX:
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "452 4.3.1 Insufficient system storage");
		break;
	}
	/* The refusal is reported first, while the transport still has the message open. */
	abort_message(s);
	txn_reset(s);
}

/* The octets of a BDAT chunk are all read. `more_after`: the client sent more before our
 * reply. */
static void chunk_end(struct smtp_session *s, bool more_after)
{
	s->requests++;
	s->state = ST_COMMAND;
	if (more_after && !pipelining_negotiated(s)) {
		if (s->cfg->forbid_unauth_pipelining) {
			sync_error(s);
			return;
		}
		s->ill_pipelining = true;
	}
	if (s->chunk_discard) {
		if (s->chunk_last && s->mail_given) {
			abort_message(s);
			txn_reset(s);
		}
		return;
	}
	if (!s->chunk_last) {
		replyf(s, "250 2.0.0 Ok: %" PRIu64 " bytes", s->chunk_size);
		return;
	}
	/* RFC 3030: the message is whatever the chunks held; its last line is completed. */
	if (s->fail == MF_NONE && s->hs != HS_BODY && !hdr_reserve(s, 8))
		message_fail(s, MF_NOMEM);
	if (s->cs == CS_MID)
		emit_static(s, "\r\n", 2);
	else if (s->cs == CS_CR)
		emit_static(s, "\n", 1);
	s->cs = CS_BOL;
	message_end(s);
}

/* Body bytes buf[i..i+n) that go out as they came: they extend the run. At
 * message_size_limit the run stops at the limit, wherever the input was cut, and the
 * message fails (its end is refused). */
static void body_bytes(struct smtp_session *s, size_t *run, size_t *run_end, size_t i, size_t n)
{
	uint64_t limit = s->cfg->message_size_limit;
	if (*run == SIZE_MAX)
		*run = *run_end = i;
	assert(*run_end == i);
	if (limit && s->msg_bytes + n > limit) {
		size_t room = s->msg_bytes < limit ? (size_t)(limit - s->msg_bytes) : 0;
		*run_end = i + room;
		s->msg_bytes += n;
		message_fail(s, MF_TOO_BIG);
		return;
	}
	s->msg_bytes += n;
	*run_end = i + n;
}

/* DATA content or BDAT chunk octets in buf[*pos..len). Returns a BODY event that points
 * into buf, or NONE when the input is used up or events were queued. */
static struct smtp_event content_input(struct smtp_session *s, const char *buf, size_t len,
				       size_t *pos)
{
	const bool bdat = s->state == ST_CHUNK;
	size_t i = *pos, end = len;
	/* buf[run..run_end): body bytes handed out as they are (run_end < i only when the
	 * size limit cut the run short) */
	size_t run = SIZE_MAX, run_end = 0;
	struct smtp_event ev = { .type = SMTP_EV_NONE };

	if (bdat && s->chunk_left < end - i)
		end = i + (size_t)s->chunk_left;
	if (s->hdr_drop) {
		memmove(s->hdr, s->hdr + s->hdr_drop, s->hdr_len - s->hdr_drop);
		s->hdr_len -= s->hdr_drop;
		s->hdr_start -= s->hdr_drop;
		s->hdr_drop = 0;
	}

	while (i < end && s->evq_len == 0 && s->state != ST_CLOSED) {
		if (bdat && s->chunk_discard) {
			i = end;
			break;
		}
		const bool sink_header = s->fail == MF_NONE && s->hs != HS_BODY;
		const bool sink_body = s->fail == MF_NONE && s->hs == HS_BODY;
		if (sink_header && !hdr_reserve(s, 8)) {
			message_fail(s, MF_NOMEM);
			continue;
		}
		const char c = buf[i];

		switch (s->cs) {
		case CS_BOL:
			if (c == '.' && !bdat) {
				if (run != SIZE_MAX)
					goto flush;
				s->cs = CS_DOT;
				i++;
				continue;
			}
			/* FALLTHROUGH */
		case CS_MID:
			if (c == '\n') {
				/* a bare LF: RFC 5321 2.3.8 allows only CRLF. What came before it
				 * is handed out first, however the input was cut. */
				if (run != SIZE_MAX)
					goto flush;
				if (!s->normalize_bare_lf) {
					bare_lf_reject(s);
					i++;
					goto out;
				}
				emit_static(s, "\r\n", 2);
				s->cs = CS_BOL;
				s->bol_crlf = false;
				i++;
				continue;
			}
			if (!sink_header) {
				/* Fast path: the rest of the line goes out untouched. */
				const char *lf = memchr(buf + i, '\n', end - i);
				size_t stop = lf ? (size_t)(lf - buf) : end, take;
				if (lf && buf[stop - 1] == '\r') {
					take = stop + 1 - i;
					s->cs = CS_BOL;
					s->bol_crlf = true;
				} else {
					take = stop - i;
					s->cs = (!lf && buf[end - 1] == '\r') ? CS_CR : CS_MID;
				}
				if (sink_body)
					body_bytes(s, &run, &run_end, i, take);
				i += take;
				continue;
			}
			if (s->hs == HS_VALUE) {
				/* Fast path inside a header field: the rest of the line up to its
				 * LF is stored (up to header_size_limit) in one copy. */
				const char *lf = memchr(buf + i, '\n', end - i);
				size_t stop = lf ? (size_t)(lf - buf) : end, n = stop - i;
				size_t have = s->hdr_len - s->hdr_start;
				size_t limit = s->cfg->header_size_limit;
				size_t keep = have < limit ? limit - have : 0;
				if (keep > n)
					keep = n;
				if (count_bytes(s, n)) {
					if (keep && !hdr_reserve(s, keep + 8)) {
						message_fail(s, MF_NOMEM);
						continue;
					}
					memcpy(s->hdr + s->hdr_len, buf + i, keep);
					s->hdr_len += keep;
					if (keep < n)
						s->hdr_trunc = true;
				}
				s->cs = buf[stop - 1] == '\r' ? CS_CR : CS_MID;
				i = stop;
				continue;
			}
			if (count_bytes(s, 1))
				header_byte(s, c);
			s->cs = c == '\r' ? CS_CR : CS_MID;
			i++;
			continue;
		case CS_CR:
			if (c != '\n') {
				s->cs = CS_MID; /* the CR was data; look at c again */
				continue;
			}
			if (sink_body) {
				body_bytes(s, &run, &run_end, i, 1);
			} else if (sink_header && count_bytes(s, 1)) {
				header_byte(s, c);
			}
			s->cs = CS_BOL;
			s->bol_crlf = true;
			i++;
			continue;
		case CS_DOT:
			if (c == '\r') {
				s->cs = CS_DOT_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				/* "." ended by a bare LF never ends the message (SMTP smuggling);
				 * normalized, it is a line holding one dot. */
				if (!s->normalize_bare_lf) {
					bare_lf_reject(s);
					i++;
					goto out;
				}
				emit_static(s, ".\r\n", 3);
				s->cs = CS_BOL;
				s->bol_crlf = false;
				i++;
				continue;
			}
			/* RFC 5321 4.5.2: a leading dot followed by more is removed */
			s->cs = CS_MID;
			continue;
		case CS_DOT_CR:
			if (c == '\n') {
				i++;
				if (s->bol_crlf) {
					/* CR LF . CR LF: the end of the data (RFC 5321 4.1.1.4) */
					message_end(s);
					goto out;
				}
				/* LF . CR LF: the preceding line end was a bare LF, so this is
				 * no end of data; the line is kept as one dot */
				emit_static(s, ".\r\n", 3);
				s->cs = CS_BOL;
				s->bol_crlf = true;
				continue;
			}
			/* ". CR x": the dot is removed, the CR is data; look at c again */
			emit_static(s, "\r", 1);
			s->cs = CS_CR;
			continue;
		case CS_MAX:
			assert(!"bad content state");
			i = end;
			break;
		}
	}
	goto out;

flush:
	/* run is open and the next byte needs rewriting: hand out the run first */
	assert(run != SIZE_MAX);
out:
	if (run != SIZE_MAX && run_end > run && s->state != ST_CLOSED) {
		ev.type = SMTP_EV_BODY;
		ev.u.body = mx_span_make(buf + run, run_end - run);
		s->msg_stored += ev.u.body.len;
	}
	if (bdat) {
		s->chunk_left -= i - *pos;
		/* When the chunk ends with the run handed out now, its end is dealt with now
		 * too: the events it queues follow the run (otherwise run() does it next). */
		if (s->state == ST_CHUNK && s->chunk_left == 0 && ev.type == SMTP_EV_BODY)
			chunk_end(s, i < len);
	}
	*pos = i;
	return ev;
}

/* ---- commands ---- */

enum command {
	CMD_HELO,
	CMD_EHLO,
	CMD_MAIL,
	CMD_RCPT,
	CMD_DATA,
	CMD_BDAT,
	CMD_RSET,
	CMD_NOOP,
	CMD_QUIT,
	CMD_VRFY,
	CMD_HELP,
	CMD_STARTTLS,
	CMD_AUTH,
	CMD_ETRN,
	CMD_XCLIENT,
	CMD_XFORWARD,
	CMD_MAX,
};

#define CMD_LAST 0x1u /* must end a pipelined group (RFC 2920 3.1, RFC 3207 4) */
#define CMD_JUNK 0x2u /* counts toward smtpd_junk_command_limit */

static const struct {
	const char *name;
	unsigned flags;
} commands[CMD_MAX] = {
	[CMD_HELO] = { "HELO", CMD_LAST | CMD_JUNK },
	[CMD_EHLO] = { "EHLO", CMD_LAST | CMD_JUNK },
	[CMD_MAIL] = { "MAIL", 0 },
	[CMD_RCPT] = { "RCPT", 0 },
	[CMD_DATA] = { "DATA", CMD_LAST },
	[CMD_BDAT] = { "BDAT", 0 }, /* checked after its chunk */
	[CMD_RSET] = { "RSET", CMD_JUNK },
	[CMD_NOOP] = { "NOOP", CMD_LAST | CMD_JUNK },
	[CMD_QUIT] = { "QUIT", CMD_LAST },
	[CMD_VRFY] = { "VRFY", CMD_LAST | CMD_JUNK },
	[CMD_HELP] = { "HELP", CMD_JUNK },
	[CMD_STARTTLS] = { "STARTTLS", CMD_LAST },
	[CMD_AUTH] = { "AUTH", 0 },
	[CMD_ETRN] = { "ETRN", CMD_JUNK },
	[CMD_XCLIENT] = { "XCLIENT", 0 },
	[CMD_XFORWARD] = { "XFORWARD", 0 },
};

/* Postfix's smtpd_forbidden_commands (CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}) and
 * its is_header() check: a proxy or a web client, or a message sent without DATA. */
static bool forbidden_command(struct mx_span verb)
{
	if (!mx_ctype_is_alpha(verb.ptr[0]))
		return true;
	if (span_eq_cstr_nocase(verb, "CONNECT") || span_eq_cstr_nocase(verb, "GET") ||
	    span_eq_cstr_nocase(verb, "POST"))
		return true;
	size_t i = 0;
	while (i < verb.len && (unsigned char)verb.ptr[i] > 32 && (unsigned char)verb.ptr[i] < 127 &&
	       verb.ptr[i] != ':')
		i++;
	return i > 0 && i < verb.len && verb.ptr[i] == ':';
}

/* The HELO name as Received: shows it: Postfix's printable() and neuter(" <>()\\\";@"). */
static void helo_neuter(struct smtp_session *s, struct mx_span name)
{
	size_t n = name.len < HOST_MAX ? name.len : HOST_MAX;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name.ptr[i];
		bool bad = c < 32 || c == 127 || (c >= 128 && !s->cfg->enable_smtputf8) ||
			   strchr(" <>()\\\";@", c) != NULL;
		s->helo_next[i] = bad ? '?' : (char)c;
	}
	s->helo_next[n] = '\0';
	s->helo_next_len = n;
}

static void cmd_helo(struct smtp_session *s, struct mx_span args, bool esmtp)
{
	if (args.len == 0) {
		/* Postfix answers before any extension is known: no enhanced code here */
		replyf(s, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		engine_error(s, SMTP_ERR_SYNTAX, 501);
		return;
	}
	helo_neuter(s, args);
	s->helo_next_esmtp = esmtp;
	struct smtp_event ev = { .type = SMTP_EV_HELO, .needs_verdict = true };
	ev.u.helo.name = args;
	ev.u.helo.esmtp = esmtp;
	evq_push(s, ev);
}

/* ---- RFC 3461 DSN parameters ---- */

/* RFC 3461 4.4 and 4.2: the longest ENVID esmtp-value, and the longest original recipient
 * address once its xtext is decoded. Postfix bounds neither (only the command line); the
 * DSN that carries them back is built from them, so they get the RFC's bounds here. */
#define DSN_ENVID_MAX 100
#define DSN_ORCPT_MAX 500

/* RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=",
 * hexchar = "+" 2HEXDIG. Every decoded octet must be printable ASCII (graphic or space:
 * RFC 3461 4.2 and 4.4, Postfix's allprint() for ENVID), so a "+0D+0A" can never put a
 * line break into the DSN built from it. `utf8` also lets raw UTF-8 through (RFC 6533 3,
 * ORCPT in an SMTPUTF8 transaction; the command line was checked as UTF-8). Returns
 * the decoded length, or -1. RFC 3461 4 says HEXDIG is upper case; Postfix decodes both, so do
 * we. */
static long dsn_xtext_len(struct mx_span v, bool utf8)
{
	long n = 0;
	for (size_t i = 0; i < v.len; i++, n++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c == '+') {
			if (v.len - i < 3)
				return -1;
			int hi = mx_ctype_hex_value(v.ptr[i + 1]);
			int lo = mx_ctype_hex_value(v.ptr[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			int d = hi * 16 + lo;
			if (d < 32 || d > 126)
				return -1;
			i += 2;
		} else if (c >= 128) {
			if (!utf8)
				return -1;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
	}
	return n;
}

/* RET=FULL|HDRS (RFC 3461 4.3), any case. */
static bool dsn_ret_valid(struct mx_span v)
{
	return span_eq_cstr_nocase(v, "FULL") || span_eq_cstr_nocase(v, "HDRS");
}

/* ENVID=xtext (RFC 3461 4.4): not empty (RFC 5321 esmtp-value is 1*), at most 100. */
static bool dsn_envid_valid(struct mx_span v)
{
	return v.len > 0 && v.len <= DSN_ENVID_MAX && dsn_xtext_len(v, false) >= 0;
}

/* NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ) (RFC 3461 4.1), any case, each
 * keyword once: a list that names one twice or mixes NEVER in is refused. */
static bool dsn_notify_valid(struct mx_span v)
{
	static const char *const words[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	unsigned seen = 0, count = 0;
	size_t start = 0;
	for (size_t i = 0; i <= v.len; i++) {
		if (i < v.len && v.ptr[i] != ',')
			continue;
		struct mx_span w = mx_span_make(v.ptr + start, i - start);
		unsigned k = 0;
		while (k < 4 && !span_eq_cstr_nocase(w, words[k]))
			k++;
		if (k == 4 || (seen & (1u << k)))
			return false;
		seen |= 1u << k;
		count++;
		start = i + 1;
	}
	return !((seen & 1u) && count > 1);
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2): addr-type is an RFC 5322 atom ("rfc822",
 * "utf-8"); the address may be empty, as Postfix takes it. */
static bool dsn_orcpt_valid(struct mx_span v, bool utf8)
{
	const char *semi = memchr(v.ptr, ';', v.len);
	if (!semi || semi == v.ptr)
		return false;
	for (const char *p = v.ptr; p < semi; p++) {
		unsigned char c = (unsigned char)*p;
		/* atext (RFC 5322 3.2.3) */
		if (!(mx_ctype_is_alnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c)))
			return false;
	}
	struct mx_span addr = mx_span_make(semi + 1, v.len - (size_t)(semi + 1 - v.ptr));
	long n = dsn_xtext_len(addr, utf8);
	return n >= 0 && n <= DSN_ORCPT_MAX;
}

/* ---- XCLIENT (Postfix XCLIENT_README; smtpd.c xclient_cmd() of Postfix 3.7) ---- */

/* The decoded attribute values of the XCLIENT being decided; the event points here. */
struct xclient_buf {
	struct smtp_xclient pub;
	char val[SMTP_XCLIENT_ATTR_MAX][XCLIENT_VALUE_MAX + 1];
};

/* Postfix's xtext_unquote(): "+" and two hex digits (either case) is one octet, anything
 * else stands for itself. Returns the decoded length, or -1 when a "+" is not followed
 * by two hex digits (Postfix then takes the raw text). A decoded NUL ends the value, as
 * it ends Postfix's C string. */
static long xclient_xtext(struct mx_span v, char *out)
{
	size_t n = 0;
	bool cut = false; /* a decoded NUL was seen: the rest is checked, not kept */
	for (size_t i = 0; i < v.len; i++) {
		char c = v.ptr[i];
		if (c == '+') {
			if (v.len - i < 3)
				return -1;
			int hi = mx_ctype_hex_value(v.ptr[i + 1]);
			int lo = mx_ctype_hex_value(v.ptr[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0')
			cut = true;
		if (!cut)
			out[n++] = c;
	}
	return (long)n;
}

/* Postfix's valid_hostname(): at most 255 octets of labels of letters, digits, '-' and
 * '_', each 1 to 63 long, not starting or ending with '-', and not all digits and dots. */
static bool xclient_valid_hostname(struct mx_span v)
{
	size_t label = 0;
	bool non_numeric = false;

	if (v.len == 0 || v.len > HOST_MAX)
		return false;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c == '.') {
			if (label == 0 || v.ptr[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!mx_ctype_is_hostname(c))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!mx_ctype_is_digit(c))
			non_numeric = true;
		if (++label > 63)
			return false;
	}
	return label > 0 && v.ptr[v.len - 1] != '-' && non_numeric;
}

/* Postfix's valid_ipv4_hostaddr(): four decimal octets, each at most 255 (leading zeros
 * allowed), the first not 0. */
static bool xclient_valid_ipv4(struct mx_span v)
{
	unsigned parts = 0, val = 0, digits = 0;
	for (size_t i = 0; i <= v.len; i++) {
		if (i == v.len || v.ptr[i] == '.') {
			if (digits == 0 || (parts == 0 && val == 0))
				return false;
			parts++;
			val = digits = 0;
			continue;
		}
		if (v.ptr[i] < '0' || v.ptr[i] > '9')
			return false;
		val = val * 10 + (unsigned)(v.ptr[i] - '0');
		digits++;
		if (val > 255)
			return false;
	}
	return parts == 4;
}

/* Postfix's valid_mailhost_addr(): IPv4, or "IPv6:" (any case) and an IPv6 address.
 * On success *bare is the address without the prefix. (Postfix built for IPv4 only
 * refuses every IPv6 form; mxgate speaks IPv6.) */
static bool xclient_valid_addr(struct mx_span v, struct mx_span *bare)
{
	struct mx_span rest;
	if (span_prefix_nocase(v, "IPv6:", &rest)) {
		char tmp[INET6_ADDRSTRLEN + 1];
		unsigned char bin[16];
		if (rest.len == 0 || rest.len >= sizeof(tmp))
			return false;
		memcpy(tmp, rest.ptr, rest.len);
		tmp[rest.len] = '\0';
		if (inet_pton(AF_INET6, tmp, bin) != 1)
			return false;
		*bare = rest;
		return true;
	}
	*bare = v;
	return xclient_valid_ipv4(v);
}

/* PORT, DESTPORT: Postfix's alldig() and at most five digits (no range check). */
static bool xclient_valid_port(struct mx_span v)
{
	if (v.len == 0 || v.len > 5)
		return false;
	for (size_t i = 0; i < v.len; i++)
		if (v.ptr[i] < '0' || v.ptr[i] > '9')
			return false;
	return true;
}

static void xclient_bad_syntax(struct smtp_session *s, enum smtp_xclient_attr a,
			       struct mx_span value)
{
	replyf(s, "501 5.5.4 Bad %s syntax: %.*s", smtp_xclient_attr_name(a), (int)value.len,
	       value.ptr);
	engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
}

/* One attribute=value token. Returns false after replying. */
static bool xclient_attr(struct smtp_session *s, struct xclient_buf *x, struct mx_span tok)
{
	const char *eq = memchr(tok.ptr, '=', tok.len);
	if (!eq || eq + 1 == tok.ptr + tok.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Error: attribute=value expected");
		return false;
	}
	struct mx_span name = mx_span_make(tok.ptr, (size_t)(eq - tok.ptr));
	struct mx_span raw = mx_span_make(eq + 1, tok.len - name.len - 1);
	if (raw.len > XCLIENT_VALUE_MAX) {
		refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Error: attribute value too long");
		return false;
	}
	enum smtp_xclient_attr a = SMTP_XCLIENT_ATTR_MAX;
	for (unsigned i = 0; i < SMTP_XCLIENT_ATTR_MAX; i++) {
		if (span_eq_cstr_nocase(name, smtp_xclient_attr_name((enum smtp_xclient_attr)i))) {
			a = (enum smtp_xclient_attr)i;
			break;
		}
	}
	/* Decoded into the attribute's slot (a scratch slot for an unknown name, whose
	 * reply shows only the name). A repeated attribute: the last one counts. */
	char scratch[XCLIENT_VALUE_MAX + 1];
	char *buf = a == SMTP_XCLIENT_ATTR_MAX ? scratch : x->val[a];
	long n = xclient_xtext(raw, buf);
	if (n < 0) {
		memcpy(buf, raw.ptr, raw.len);
		n = (long)raw.len;
	}
	/* Postfix's printable(): controls become '?', 8-bit bytes too unless UTF-8 is on
	 * and the value is UTF-8 */
	bool utf8 = s->cfg->enable_smtputf8 && smtp_utf8_valid(buf, (size_t)n);
	for (long i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < 32 || c == 127 || (c >= 128 && !utf8))
			buf[i] = '?';
	}
	buf[n] = '\0';
	struct mx_span v = mx_span_make(buf, (size_t)n);

	if (a == SMTP_XCLIENT_ATTR_MAX) {
		char echo[REPLY_LINE_MAX - 40];
		replyf(s, "501 5.5.4 Bad XCLIENT attribute name: %s",
		       printable(echo, sizeof(echo), name, s->cfg->enable_smtputf8));
		engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
		return false;
	}
	struct smtp_xclient_value *out = &x->pub.attr[a];
	bool unavailable = span_eq_cstr_nocase(v, "[UNAVAILABLE]");
	bool tempunavail = span_eq_cstr_nocase(v, "[TEMPUNAVAIL]");
	struct mx_span bare = v;

	switch (a) {
	case SMTP_XCLIENT_NAME:
	case SMTP_XCLIENT_REVERSE_NAME:
		unavailable = unavailable || tempunavail;
		if (!unavailable && !xclient_valid_hostname(v)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_ADDR:
	case SMTP_XCLIENT_DESTADDR:
		tempunavail = false;
		if (!unavailable && !xclient_valid_addr(v, &bare)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_PORT:
	case SMTP_XCLIENT_DESTPORT:
		tempunavail = false;
		if (!unavailable && !xclient_valid_port(v)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_PROTO:
		/* [UNAVAILABLE] is no protocol name */
		unavailable = tempunavail = false;
		if (!span_eq_cstr_nocase(v, "SMTP") && !span_eq_cstr_nocase(v, "ESMTP")) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		for (long i = 0; i < n; i++)
			buf[i] = mx_ctype_upper(buf[i]);
		break;
	case SMTP_XCLIENT_HELO:
		/* never longer than 255 (the raw value is not), so never Postfix's "Bad
		 * HELO syntax"; neutered as Received: wants it */
		tempunavail = false;
		if (!unavailable)
			for (long i = 0; i < n; i++)
				if (strchr(" <>()\\\";@", buf[i]))
					buf[i] = '?';
		break;
	case SMTP_XCLIENT_LOGIN:
		tempunavail = false;
		break;
	case SMTP_XCLIENT_ATTR_MAX:
		assert(!"unknown attribute");
		return false;
	}
	out->present = true;
	out->unavailable = unavailable;
	out->tempunavail = tempunavail;
	out->value = bare;
	return true;
}

static void cmd_xclient(struct smtp_session *s, struct mx_span args)
{
	/* Postfix's order of checks: transaction, syntax, authorization. */
	if (s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (args.len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: XCLIENT attribute=value...");
		return;
	}
	if (!s->xclient_authorized) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "550 5.7.0 Error: insufficient authorization");
		return;
	}
	if (!s->xcl && !(s->xcl = malloc(sizeof(*s->xcl)))) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	memset(&s->xcl->pub, 0, sizeof(s->xcl->pub));
	size_t i = 0;
	while (i < args.len) {
		while (i < args.len && mx_ctype_is_blank(args.ptr[i]))
			i++;
		size_t start = i;
		while (i < args.len && !mx_ctype_is_blank(args.ptr[i]))
			i++;
		if (i > start && !xclient_attr(s, s->xcl, mx_span_make(args.ptr + start, i - start)))
			return;
	}
	struct smtp_event ev = { .type = SMTP_EV_XCLIENT, .needs_verdict = true };
	ev.u.xclient = &s->xcl->pub;
	evq_push(s, ev);
}

/* An accepted XCLIENT: the engine takes the new identity and goes back to the greeting
 * stage, as Postfix's xclient_cmd() does (HELO reset unless HELO= was given, protocol
 * SMTP unless PROTO= was given, transaction reset). */
static void xclient_apply(struct smtp_session *s, bool authorized)
{
	const struct smtp_xclient_value *a = s->xcl->pub.attr;
	const struct smtp_xclient_value *v;

	v = &a[SMTP_XCLIENT_NAME];
	if (v->present)
		printable(s->client_name, sizeof(s->client_name),
			  v->unavailable ? mx_span_cstr("unknown") : v->value, false);
	v = &a[SMTP_XCLIENT_ADDR];
	if (v->present)
		printable(s->client_addr, sizeof(s->client_addr),
			  v->unavailable ? mx_span_cstr("unknown") : v->value, false);
	v = &a[SMTP_XCLIENT_HELO];
	if (v->present && !v->unavailable) {
		helo_neuter(s, v->value);
		memcpy(s->helo, s->helo_next, s->helo_next_len + 1);
		s->helo_len = s->helo_next_len;
		s->helo_seen = true;
	} else {
		s->helo[0] = '\0';
		s->helo_len = 0;
		s->helo_seen = false;
	}
	v = &a[SMTP_XCLIENT_PROTO];
	s->esmtp = v->present && span_eq_cstr_nocase(v->value, "ESMTP");
	s->xclient_authorized = authorized;
	txn_reset(s);
}

static void reply_ehlo(struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	char host[HOST_MAX + 1];
	const char *kw[12];
	char size[40];
	unsigned n = 0;

	/* Postfix's order: PIPELINING SIZE VRFY ETRN STARTTLS AUTH XCLIENT XFORWARD
	 * ENHANCEDSTATUSCODES 8BITMIME DSN SMTPUTF8 CHUNKING (ETRN, STARTTLS, AUTH and
	 * XFORWARD are not offered; XCLIENT only to smtpd_authorized_xclient_hosts) */
	if (c->enable_pipelining)
		kw[n++] = "PIPELINING";
	if (c->message_size_limit)
		snprintf(size, sizeof(size), "SIZE %zu", c->message_size_limit);
	else
		snprintf(size, sizeof(size), "SIZE");
	kw[n++] = size;
	if (!c->disable_vrfy_command)
		kw[n++] = "VRFY";
	if (s->xclient_authorized)
		kw[n++] = "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT";
	kw[n++] = "ENHANCEDSTATUSCODES";
	if (c->enable_8bitmime)
		kw[n++] = "8BITMIME";
	if (c->enable_dsn)
		kw[n++] = "DSN";
	if (c->enable_smtputf8)
		kw[n++] = "SMTPUTF8";
	if (c->enable_chunking)
		kw[n++] = "CHUNKING";
	replyf(s, "250-%s", myhostname(s, host, sizeof(host)));
	for (unsigned i = 0; i < n; i++)
		replyf(s, "250%c%s", i + 1 == n ? ' ' : '-', kw[i]);
}

/* The ESMTP parameters of MAIL FROM (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8),
 * checked in order as Postfix's mail_cmd() does. Returns false after replying. */
static bool mail_params(struct smtp_session *s, struct mx_span text)
{
	const struct smtp_config *c = s->cfg;
	struct smtp_param p;
	size_t pos = 0;
	bool have_size = false, have_body = false, have_utf8 = false;
	bool have_ret = false, have_envid = false;
	char tok[REPLY_LINE_MAX - 40];

	s->mail_next_size = 0;
	s->mail_next_body = SMTP_BODY_UNSPECIFIED;
	s->mail_next_utf8 = false;
	while (smtp_param_next(text, &pos, &p)) {
		printable(tok, sizeof(tok), p.text, c->enable_smtputf8);
		bool is_size = span_eq_cstr_nocase(p.keyword, "SIZE");
		bool is_body = span_eq_cstr_nocase(p.keyword, "BODY");
		bool is_utf8 = span_eq_cstr_nocase(p.keyword, "SMTPUTF8");
		if (p.keyword_valid && ((is_size && have_size) || (is_body && have_body) ||
					(is_utf8 && have_utf8))) {
			/* Postfix takes the last; two answers to one question are refused
			 * here, so no two readers of the envelope can disagree. */
			replyf(s, "501 5.5.4 Error: duplicate parameter: %s", tok);
			engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
			return false;
		}
		if (p.keyword_valid && is_size && p.has_value) {
			uint64_t v = 0;
			int rc = smtp_param_size(p.value, &v);
			if (rc == -ERANGE) {
				refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Message size exceeds file system imposed limit");
				return false;
			}
			if (rc < 0) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad message size syntax");
				return false;
			}
			have_size = true;
			s->mail_next_size = v;
			continue;
		}
		if (p.keyword_valid && is_body && p.has_value) {
			if (span_eq_cstr_nocase(p.value, "7BIT")) {
				s->mail_next_body = SMTP_BODY_7BIT;
				have_body = true;
				continue;
			}
			if (c->enable_8bitmime && span_eq_cstr_nocase(p.value, "8BITMIME")) {
				s->mail_next_body = SMTP_BODY_8BITMIME;
				have_body = true;
				continue;
			}
			/* BINARYMIME is not offered (RFC 3030 section 3) */
		}
		if (p.keyword_valid && is_utf8 && !p.has_value && c->enable_smtputf8) {
			have_utf8 = true;
			s->mail_next_utf8 = true;
			continue;
		}
		bool is_ret = span_eq_cstr_nocase(p.keyword, "RET");
		if (p.keyword_valid && p.has_value && (is_ret || span_eq_cstr_nocase(p.keyword, "ENVID"))) {
			/* RFC 3461 4.3, 4.4; Postfix's mail_cmd() checks and texts: the
			 * discarded keyword first, then a repeat or a bad value alike. */
			if (!c->enable_dsn) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.7.1 DSN support is disabled");
				return false;
			}
			if (is_ret ? (have_ret || !dsn_ret_valid(p.value))
				   : (have_envid || !dsn_envid_valid(p.value))) {
				if (is_ret)
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad RET parameter syntax");
				else
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad ENVID parameter syntax");
				return false;
			}
			*(is_ret ? &have_ret : &have_envid) = true;
			continue;
		}
		replyf(s, "555 5.5.4 Unsupported option: %s", tok);
		engine_error(s, SMTP_ERR_BAD_PARAMETER, 555);
		return false;
	}
	return true;
}

static void cmd_mail(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct mx_span rest;
	struct smtp_path path;

	if (c->helo_required && !s->helo_seen) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (!span_prefix_nocase(args, "FROM:", &rest) || span_trim(rest).len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	unsigned flags = SMTP_PATH_ALLOW_NULL | (c->strict_rfc821_envelopes ? SMTP_PATH_STRICT : 0);
	if (smtp_path_parse(rest, flags, &path) != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (!mail_params(s, path.rest))
		return;
	if (c->message_size_limit && s->mail_next_size > c->message_size_limit) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (path.non_ascii && !s->mail_next_utf8) {
		/* RFC 6531 3.4; Postfix with strict_smtputf8 */
		refuse_undeclared_utf8(s, false);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_MAIL, .needs_verdict = true };
	ev.u.mail.addr = path.mailbox;
	ev.u.mail.params = path.rest;
	ev.u.mail.size = s->mail_next_size;
	ev.u.mail.body = s->mail_next_body;
	ev.u.mail.smtputf8 = s->mail_next_utf8;
	evq_push(s, ev);
}

static void cmd_rcpt(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct mx_span rest;
	struct smtp_path path;
	struct smtp_param p;
	size_t pos = 0;

	if (!s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->bdat_used) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	if (!span_prefix_nocase(args, "TO:", &rest) || span_trim(rest).len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	unsigned flags = c->strict_rfc821_envelopes ? SMTP_PATH_STRICT : 0;
	if (smtp_path_parse(rest, flags, &path) != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	bool have_notify = false, have_orcpt = false;
	while (smtp_param_next(path.rest, &pos, &p)) {
		char tok[REPLY_LINE_MAX - 40];
		bool is_notify = span_eq_cstr_nocase(p.keyword, "NOTIFY");
		if (p.keyword_valid && p.has_value && (is_notify || span_eq_cstr_nocase(p.keyword, "ORCPT"))) {
			/* RFC 3461 4.1, 4.2; Postfix's rcpt_cmd() checks and texts */
			if (!c->enable_dsn) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.7.1 DSN support is disabled");
				return;
			}
			if (is_notify ? (have_notify || !dsn_notify_valid(p.value))
				      : (have_orcpt || !dsn_orcpt_valid(p.value, s->smtputf8))) {
				if (is_notify)
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER,
						   "501 5.5.4 Error: Bad NOTIFY parameter syntax");
				else
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER,
						   "501 5.5.4 Error: Bad ORCPT parameter syntax");
				return;
			}
			*(is_notify ? &have_notify : &have_orcpt) = true;
			continue;
		}
		replyf(s, "555 5.5.4 Unsupported option: %s",
		       printable(tok, sizeof(tok), p.text, c->enable_smtputf8));
		engine_error(s, SMTP_ERR_BAD_PARAMETER, 555);
		return;
	}
	if (c->recipient_limit && s->rcpt_count >= c->recipient_limit) {
		/* Postfix's rcpt_cmd(): the first smtpd_recipient_overshoot_limit of these in a
		 * transaction are not errors, so a client that sends 1,100 recipients keeps the
		 * first 1,000 and its session */
		if (s->rcpt_overshoot++ < c->recipient_overshoot_limit) {
			reply_lit(s, "452 4.5.3 Error: too many recipients");
			push_error(s, SMTP_ERR_RECIPIENT_OVERSHOOT, 452, false, 0);
			return;
		}
		refuse_lit(s, SMTP_ERR_TOO_MANY_RECIPIENTS, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (path.non_ascii && !s->smtputf8) {
		refuse_undeclared_utf8(s, true);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_RCPT, .needs_verdict = true };
	ev.u.rcpt.addr = path.mailbox;
	ev.u.rcpt.params = path.rest;
	evq_push(s, ev);
}

/* Postfix's data_cmd()/bdat_cmd(): no recipient yet is "need RCPT" outside a transaction
 * and "no valid recipients" inside one. Returns false after replying. */
static bool have_recipients(struct smtp_session *s)
{
	if (s->rcpt_count > 0)
		return true;
	if (!s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: need RCPT command");
	} else {
		refuse_lit(s, SMTP_ERR_NO_VALID_RECIPIENTS, "554 5.5.1 Error: no valid recipients");
	}
	return false;
}

static void cmd_data(struct smtp_session *s, struct mx_span args)
{
	if (!have_recipients(s))
		return;
	if (args.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->bdat_used) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	s->data_next_bdat = false;
	struct smtp_event ev = { .type = SMTP_EV_DATA, .needs_verdict = true };
	ev.u.data.bdat = false;
	evq_push(s, ev);
}

/* BDAT chunk-size [LAST] (RFC 3030 section 2). */
static bool bdat_args(struct mx_span args, uint64_t *size, bool *last)
{
	struct smtp_param tok;
	size_t pos = 0;

	if (!smtp_param_next(args, &pos, &tok) || tok.has_value)
		return false;
	/* A count off_t cannot hold is malformed, as Postfix's off_cvt_string() finds it: the
	 * session cannot stay in step with a chunk it could never finish reading. */
	if (smtp_param_size(tok.text, size) != 0 || *size > (uint64_t)INT64_MAX)
		return false;
	*last = false;
	if (smtp_param_next(args, &pos, &tok)) {
		if (!span_eq_cstr_nocase(tok.text, "LAST"))
			return false;
		*last = true;
	}
	return !smtp_param_next(args, &pos, &tok);
}

static void cmd_bdat(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	uint64_t size;
	bool last;

	if (!c->enable_chunking) {
		/* the chunk that follows cannot be told from commands: hang up, as Postfix */
		reply_lit(s, "521 5.5.1 Error: command not implemented");
		engine_close(s, SMTP_ERR_UNKNOWN_COMMAND, 521);
		return;
	}
	if (!bdat_args(args, &size, &last)) {
		reply_lit(s, "521 5.5.4 Syntax: BDAT count [LAST]");
		engine_close(s, SMTP_ERR_SYNTAX, 521);
		return;
	}
	/* Whatever the answer, the chunk's octets are read (RFC 3030 section 2). */
	s->chunk_size = s->chunk_left = size;
	s->chunk_last = last;
	s->chunk_discard = true;
	s->state = ST_CHUNK;

	uint64_t so_far = s->bdat_used ? s->msg_bytes : 0;
	if (s->bdat_failed) {
		replyf(s, "551 5.0.0 Discarded %" PRIu64 " bytes after earlier error", size);
		engine_error(s, SMTP_ERR_BAD_SEQUENCE, 551);
	} else if (!have_recipients(s)) {
		if (s->mail_given)
			s->bdat_used = s->bdat_failed = true;
	} else if (size == 0 && !last) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "551 5.7.1 Null BDAT request");
		s->bdat_used = s->bdat_failed = true;
		abort_message(s);
	} else if (c->message_size_limit && (size > c->message_size_limit ||
					     so_far + size > c->message_size_limit)) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Chunk exceeds message size limit");
		s->bdat_used = s->bdat_failed = true;
		abort_message(s);
	} else if (!s->bdat_used) {
		/* The first chunk opens the message: DATA's verdict decides it. */
		s->bdat_used = true;
		s->state = ST_COMMAND;
		s->data_next_bdat = true;
		struct smtp_event ev = { .type = SMTP_EV_DATA, .needs_verdict = true };
		ev.u.data.bdat = true;
		evq_push(s, ev);
	} else {
		s->chunk_discard = false;
	}
}

static void cmd_vrfy(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct smtp_path path;
	char echo[REPLY_LINE_MAX - 20];

	if (c->disable_vrfy_command) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "502 5.5.1 VRFY command is disabled");
		return;
	}
	if (args.len == 0) {
		replyf(s, "501 5.5.4 Syntax: VRFY address%s", c->enable_smtputf8 ? " [SMTPUTF8]" : "");
		engine_error(s, SMTP_ERR_SYNTAX, 501);
		return;
	}
	enum smtp_path_result r = smtp_path_parse(args, 0, &path);
	bool utf8 = false;
	if (r == SMTP_PATH_OK && path.rest.len) {
		utf8 = c->enable_smtputf8 && span_eq_cstr_nocase(path.rest, "SMTPUTF8");
		if (!utf8)
			r = SMTP_PATH_SYNTAX;
	}
	if (r != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (path.non_ascii && !utf8) {
		refuse_undeclared_utf8(s, true);
		return;
	}
	/* RFC 5321 3.5.3: 252, we cannot verify here; Postfix echoes what the client wrote */
	struct mx_span written = span_trim(mx_span_make(args.ptr, (size_t)(path.rest.ptr - args.ptr)));
	replyf(s, "252 2.0.0 %s", printable(echo, sizeof(echo), written, c->enable_smtputf8));
}

static void cmd_help(struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	/* RFC 5321 4.1.1.8; Postfix has no HELP, this lists what mxgate implements */
	replyf(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA%s RSET NOOP QUIT%s HELP",
	       c->enable_chunking ? " BDAT" : "", c->disable_vrfy_command ? "" : " VRFY");
}

/* One complete command line (terminator removed). `more_after`: the client sent more
 * bytes after it without waiting for our reply. */
static void process_command(struct smtp_session *s, const char *text, size_t n, bool more_after)
{
	const struct smtp_config *c = s->cfg;

	s->requests++;
	if (memchr(text, '\0', n) || memchr(text, '\r', n)) {
		/* RFC 5321 2.3.8: CR only before LF; NUL never belongs in a command */
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad syntax");
		return;
	}
	struct mx_span line = span_trim(mx_span_make(text, n));
	if (line.len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad syntax");
		return;
	}
	if (c->enable_smtputf8 && !smtp_utf8_valid(line.ptr, line.len)) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad UTF-8 syntax");
		return;
	}
	size_t vlen = 0;
	while (vlen < line.len && !mx_ctype_is_blank(line.ptr[vlen]))
		vlen++;
	struct mx_span verb = mx_span_make(line.ptr, vlen);
	struct mx_span args = span_trim(mx_span_make(line.ptr + vlen, line.len - vlen));

	enum command cmd = CMD_MAX;
	for (unsigned i = 0; i < CMD_MAX; i++) {
		if (span_eq_cstr_nocase(verb, commands[i].name)) {
			cmd = (enum command)i;
			break;
		}
	}
	if (cmd == CMD_MAX) {
		s->where = "UNKNOWN";
		if (forbidden_command(verb)) {
			reply_lit(s, "221 2.7.0 Error: I can break rules, too. Goodbye.");
			engine_close(s, SMTP_ERR_UNKNOWN_COMMAND, 221);
			return;
		}
		/* Postfix checks no pipelining for a verb it does not know */
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "500 5.5.2 Error: command not recognized");
		return;
	}

	/* RFC 2920 3.1: without PIPELINING every command waits for its reply, and EHLO,
	 * DATA, VRFY, NOOP, QUIT... always end a group. Checked before the command runs,
	 * as Postfix does. BDAT is checked after its chunk. */
	if (cmd != CMD_BDAT && more_after &&
	    ((commands[cmd].flags & CMD_LAST) || !pipelining_negotiated(s))) {
		if (c->forbid_unauth_pipelining) {
			sync_error(s);
			return;
		}
		/* Postfix 3.7 smtpd_proto(): noted for reject_unauth_pipelining */
		s->ill_pipelining = true;
	}
	s->where = commands[cmd].name;

	/* The client restrictions refused this client at connect (smtpd_delay_reject = no):
	 * as Postfix's smtpd_proto(), every command but QUIT, and XCLIENT from a client that
	 * may use it, is answered this way and counts as an error. */
	if (s->access_denied && cmd != CMD_QUIT && !(cmd == CMD_XCLIENT && s->xclient_authorized)) {
		replyf(s, "503 5.7.0 Error: access denied for %s[%s]", s->client_name,
		       s->client_addr);
		engine_error(s, SMTP_ERR_ACCESS_DENIED, 503);
		return;
	}

	switch (cmd) {
	case CMD_HELO:
	case CMD_EHLO:
		cmd_helo(s, args, cmd == CMD_EHLO);
		break;
	case CMD_MAIL:
		cmd_mail(s, args);
		break;
	case CMD_RCPT:
		cmd_rcpt(s, args);
		break;
	case CMD_DATA:
		cmd_data(s, args);
		break;
	case CMD_BDAT:
		cmd_bdat(s, args);
		break;
	case CMD_RSET:
		if (args.len) {
			refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: RSET");
			break;
		}
		abort_message(s);
		txn_reset(s);
		push_simple(s, SMTP_EV_RSET);
		reply_lit(s, "250 2.0.0 Ok");
		break;
	case CMD_NOOP:
		/* RFC 5321 4.1.1.9: a parameter is ignored */
		reply_lit(s, "250 2.0.0 Ok");
		break;
	case CMD_QUIT:
		reply_lit(s, "221 2.0.0 Bye");
		evq_withdraw_unanswerable(s);
		abort_message(s);
		push_simple(s, SMTP_EV_QUIT);
		s->state = ST_CLOSED;
		break;
	case CMD_VRFY:
		cmd_vrfy(s, args);
		break;
	case CMD_HELP:
		cmd_help(s);
		break;
	case CMD_STARTTLS:
	case CMD_ETRN:
		/* not offered in this version (Postfix: TLS or fast flush not configured) */
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "502 5.5.1 Error: command not implemented");
		break;
	case CMD_AUTH:
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "503 5.5.1 Error: authentication not enabled");
		break;
	case CMD_XCLIENT:
		cmd_xclient(s, args);
		break;
	case CMD_XFORWARD:
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "550 5.7.0 Error: insufficient authorization");
		break;
	case CMD_MAX:
		break;
	}
	/* Counted after the command, as Postfix does. A HELO/EHLO that went to the
	 * transport is counted with its verdict: its event must stay first in the queue
	 * (it points into this call's input). */
	if ((commands[cmd].flags & CMD_JUNK) && s->state != ST_CLOSED &&
	    !(s->evq_len && evq_tail(s)->type == SMTP_EV_HELO))
		count_junk(s);
}

/* Read one command line from buf[*pos..len), or keep what there is of it. */
static void command_input(struct smtp_session *s, const char *buf, size_t len, size_t *pos)
{
	const size_t limit = s->cfg->line_length_limit;
	const char *p = buf + *pos;
	size_t avail = len - *pos;
	const char *lf = memchr(p, '\n', avail);

	if (s->line_skip) {
		if (!lf) {
			*pos = len;
			return;
		}
		*pos += (size_t)(lf - p) + 1;
		s->line_skip = false;
		goto too_long;
	}
	if (!lf) {
		/* a partial line: keep it, never more than line_length_limit */
		if (s->line_len + avail >= limit) {
			s->line_len = 0;
			s->line_skip = true;
			*pos = len;
			return;
		}
		if (!s->line && !(s->line = malloc(limit))) {
			char host[HOST_MAX + 1];
			replyf(s, "421 4.3.0 %s Server local error", myhostname(s, host, sizeof(host)));
			engine_close(s, SMTP_ERR_LINE_TOO_LONG, 421);
			*pos = len;
			return;
		}
		memcpy(s->line + s->line_len, p, avail);
		s->line_len += avail;
		*pos = len;
		return;
	}

	size_t seg = (size_t)(lf - p) + 1;
	*pos += seg;
	if (s->line_len + seg > limit) {
		s->line_len = 0;
		goto too_long;
	}
	const char *text = p;
	size_t n = seg;
	if (s->line_len) {
		memcpy(s->line + s->line_len, p, seg);
		text = s->line;
		n = s->line_len + seg;
		s->line_len = 0;
	}
	/* RFC 5321 2.3.8: lines end in CRLF. A bare LF ends a line only in normalize mode. */
	if (n >= 2 && text[n - 2] == '\r') {
		n -= 2;
	} else {
		if (!s->normalize_bare_lf) {
			bare_lf_reject(s);
			return;
		}
		n -= 1;
	}
	process_command(s, text, n, *pos < len);
	return;

too_long:
	/* RFC 5321 4.5.3.1.4 "500 Line too long"; the rest of the line was skipped */
	s->requests++;
	refuse_lit(s, SMTP_ERR_LINE_TOO_LONG, "500 5.5.2 Error: line too long");
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
				replyf(s, "421 4.7.0 %s Error: too many errors",
				       myhostname(s, host, sizeof(host)));
				engine_close(s, SMTP_ERR_HARD_ERROR_LIMIT, 421);
				continue;
			}
			if (*pos >= len)
				return ev;
			if (out_pending(s) > OUT_HIGH_WATER) {
				ev.type = SMTP_EV_BLOCKED;
				return ev;
			}
			command_input(s, buf, len, pos);
			continue;
		case ST_DATA:
		case ST_CHUNK:
			if (s->state == ST_CHUNK && s->chunk_left == 0) {
				chunk_end(s, *pos < len);
				continue;
			}
			if (*pos >= len)
				return ev;
			ev = content_input(s, buf, len, pos);
			if (ev.type != SMTP_EV_NONE)
				return ev;
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

struct smtp_event smtp_session_step(struct smtp_session *s, const char *buf, size_t len,
				    size_t *used)
{
	struct smtp_event ev = { .type = SMTP_EV_NONE };

	*used = 0;
	if (s->out_failed && s->state != ST_CLOSED) {
		/* a reply was lost for want of memory: the conversation cannot go on */
		evq_withdraw_unanswerable(s);
		abort_message(s);
		push_simple(s, SMTP_EV_CLOSE);
		s->state = ST_CLOSED;
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
		sync_error(s);
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

/* ---- verdicts ---- */

/* timeout()/shutdown(): the 421 and the end of the session. */
static void close_now(struct smtp_session *s, enum close_reason why)
{
	char host[HOST_MAX + 1];

	evq_withdraw_unanswerable(s);
	if (why == CLOSE_TIMEOUT)
		replyf(s, "421 4.4.2 %s Error: timeout exceeded", myhostname(s, host, sizeof(host)));
	else
		replyf(s, "421 4.3.2 %s Service shutting down", myhostname(s, host, sizeof(host)));
	abort_message(s);
	push_simple(s, SMTP_EV_CLOSE);
	s->state = ST_CLOSED;
}

int smtp_session_verdict(struct smtp_session *s, const struct smtp_verdict *v)
{
	if (s->pending == SMTP_EV_NONE)
		return -EINVAL;
	enum smtp_event_type type = s->pending;
	unsigned code = v->code;
	bool accept = code == 0 || code / 100 == 2 || (type == SMTP_EV_DATA && code / 100 == 3);
	char host[HOST_MAX + 1];

	s->pending = SMTP_EV_NONE;
	if (s->state == ST_CLOSED) {
		/* The peer left while we waited: nothing is sent, but an accepted DATA opened
		 * a message the transport must drop. */
		if (type == SMTP_EV_DATA && accept)
			push_simple(s, SMTP_EV_MESSAGE_ABORT);
		return 0;
	}

	switch (type) {
	case SMTP_EV_HELO:
		count_junk(s);
		if (!accept) {
			reply_text(s, (uint16_t)code, v->text);
			break;
		}
		memcpy(s->helo, s->helo_next, s->helo_next_len + 1);
		s->helo_len = s->helo_next_len;
		s->helo_seen = true;
		s->esmtp = s->helo_next_esmtp;
		if (s->mail_given || s->msg_open) {
			/* RFC 5321 4.1.4: an accepted EHLO/HELO resets the transaction */
			abort_message(s);
			txn_reset(s);
			push_simple(s, SMTP_EV_RSET);
		}
		if (code != 0)
			reply_text(s, (uint16_t)code, v->text);
		else if (s->esmtp)
			reply_ehlo(s);
		else
			replyf(s, "250 %s", myhostname(s, host, sizeof(host)));
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
			reply_text(s, (uint16_t)code, v->text);
		break;
	case SMTP_EV_RCPT:
		if (accept)
			s->rcpt_count++;
		if (code == 0)
			reply_lit(s, "250 2.1.5 Ok");
		else
			reply_text(s, (uint16_t)code, v->text);
		break;
	case SMTP_EV_DATA:
		if (s->data_next_bdat) {
			/* the BDAT chunk is read either way; its reply comes after it */
			s->state = ST_CHUNK;
			if (accept) {
				content_begin(s);
				s->chunk_discard = false;
			} else {
				s->chunk_discard = true;
				s->bdat_failed = true;
				reply_text(s, (uint16_t)code, v->text);
			}
			break;
		}
		if (!accept) {
			reply_text(s, (uint16_t)code, v->text);
			break;
		}
		content_begin(s);
		s->state = ST_DATA;
		if (code / 100 == 3)
			reply_text(s, (uint16_t)code, v->text);
		else
			reply_lit(s, "354 End data with <CR><LF>.<CR><LF>");
		break;
	case SMTP_EV_XCLIENT:
		if (v->access_denied && s->xcl) {
			/* the new identity, refused by the client restrictions */
			xclient_apply(s, v->xclient_authorized);
			reply_text(s, (uint16_t)code, v->text);
			s->access_denied = true;
		} else if (accept && s->xcl) {
			xclient_apply(s, v->xclient_authorized);
			s->access_denied = false;
			if (code == 0) {
				char banner[REPLY_LINE_MAX - 4];
				replyf(s, "220 %s", printable(banner, sizeof(banner),
							  mx_span_cstr(s->cfg->banner), false));
			} else {
				reply_text(s, (uint16_t)code, v->text);
			}
		} else {
			reply_text(s, (uint16_t)code, v->text);
		}
		free(s->xcl);
		s->xcl = NULL;
		break;
	case SMTP_EV_MESSAGE_END:
		if (code == 0 && v->queue_id) {
			char line[100] = "250 2.0.0 Ok: queued as ";
			size_t k = strlen(line), n = strlen(v->queue_id);
			if (n > 64)
				n = 64;
			printable(line + k, sizeof(line) - k, mx_span_make(v->queue_id, n), false);
			k += n;
			line[k++] = '\r';
			line[k++] = '\n';
			out_write(s, line, k);
		} else {
			reply_text(s, code ? (uint16_t)code : 250, v->text);
		}
		if (accept) {
			/* Postfix forgives earlier errors once a message got through */
			s->error_count = 0;
			s->junk_count = 0;
		}
		txn_reset(s);
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
		abort_message(s);
		push_simple(s, SMTP_EV_CLOSE);
		s->state = ST_CLOSED;
	} else if (s->close_deferred != CLOSE_NONE) {
		close_now(s, s->close_deferred);
	}
	return 0;
}

/* ---- lifecycle ---- */

struct smtp_session *smtp_session_new(const struct smtp_config *cfg,
				      const struct smtp_client_info *client)
{
	struct smtp_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = cfg;
	s->state = ST_PREGREET;
	s->where = "CONNECT";
	s->pending = SMTP_EV_NONE;
	printable(s->client_addr, sizeof(s->client_addr), mx_span_cstr(client->addr), false);
	printable(s->client_name, sizeof(s->client_name),
		  mx_span_cstr(client->name ? client->name : "unknown"), false);
	s->normalize_bare_lf = cfg->bare_newline == SMTP_BARE_NEWLINE_NORMALIZE ||
			       client->bare_newline_excluded;
	s->xclient_authorized = client->xclient_authorized;
	return s;
}

void smtp_session_free(struct smtp_session *s)
{
	if (!s)
		return;
	free(s->line);
	free(s->hdr);
	free(s->out);
	free(s->xcl);
	free(s);
}

void smtp_session_greet(struct smtp_session *s)
{
	if (s->state != ST_PREGREET)
		return;
	char banner[REPLY_LINE_MAX - 4];
	replyf(s, "220 %s", printable(banner, sizeof(banner), mx_span_cstr(s->cfg->banner), false));
	s->state = ST_COMMAND;
}

void smtp_session_greet_reject(struct smtp_session *s, uint16_t code, const char *text)
{
	if (s->state != ST_PREGREET)
		return;
	reply_text(s, code, text);
	push_simple(s, SMTP_EV_CLOSE);
	s->state = ST_CLOSED;
}

void smtp_session_greet_deny(struct smtp_session *s, uint16_t code, const char *text)
{
	if (s->state != ST_PREGREET)
		return;
	reply_text(s, code, text);
	s->state = ST_COMMAND;
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
	evq_withdraw_unanswerable(s);
	abort_message(s);
	s->state = ST_CLOSED;
}

struct mx_span smtp_session_output(const struct smtp_session *s)
{
	if (!s->out)
		return mx_span_make("", 0);
	return mx_span_make(s->out + s->out_off, s->out_len - s->out_off);
}

void smtp_session_output_done(struct smtp_session *s, size_t n)
{
	assert(n <= out_pending(s));
	if (n > out_pending(s))
		n = out_pending(s);
	s->out_off += n;
	if (s->out_off == s->out_len) {
		s->out_off = s->out_len = 0;
		free(s->out);
		s->out = NULL;
	}
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
	return mx_span_make(s->helo, s->helo_len);
}

const char *smtp_session_where(const struct smtp_session *s)
{
	return s->where;
}

size_t smtp_session_memory(const struct smtp_session *s)
{
	return sizeof(*s) + (s->line ? s->cfg->line_length_limit : 0) + s->hdr_cap +
	       (s->out ? OUT_CAP : 0) + (s->xcl ? sizeof(*s->xcl) : 0);
}

void smtp_session_received_info(const struct smtp_session *s, struct smtp_received_info *out)
{
	out->helo = mx_span_make(s->helo, s->helo_len);
	out->client_name = s->client_name;
	out->client_addr = s->client_addr;
	out->myhostname = s->cfg->myhostname;
	out->mail_name = s->cfg->mail_name;
	out->protocol = smtp_session_protocol(s);
}
