/* The session engine's private state, shared by its files; nothing outside smtp/ includes
 * this. smtp_session.c holds the lifecycle, the event queue, the state machine and the
 * verdicts; smtp_session_reply.c the replies and the output buffer; smtp_session_cmd.c the
 * commands; smtp_session_data.c the message content; smtp_session_xclient.c XCLIENT. */
#ifndef MXGATE_SMTP_SESSION_INTERNAL_H
#define MXGATE_SMTP_SESSION_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/span.h"
#include "smtp/smtp_internal.h"
#include "smtp/smtp_session.h"

#define OUT_CAP 4096
#define REPLY_MAX 1024                     /* longest reply one command or verdict makes */
#define OUT_HIGH_WATER (OUT_CAP - 2 * REPLY_MAX) /* room for a reply and a closing 421 */
#define REPLY_LINE_MAX 510                 /* RFC 5321 4.5.3.1.5: 512 with CRLF */
#define EVQ_CAP 8 /* the most one step queues is 4; a timeout adds 2 */
#define HOST_MAX 255
#define ADDR_MAX 63
#define XCLIENT_VALUE_MAX 255 /* Postfix: "attribute value too long" past it */

enum session_state {
	ST_PREGREET, /* before smtp_session_greet() */
	ST_COMMAND,  /* reading command lines */
	ST_DATA,     /* DATA content, until CR LF . CR LF */
	ST_CHUNK,    /* the octets of a BDAT chunk */
	ST_AUTH,     /* an AUTH response line after a 334 challenge */
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

/* The HELO/EHLO names: the accepted one and the one awaiting its verdict. */
struct session_names {
	char helo[HOST_MAX + 1];
	char helo_next[HOST_MAX + 1];
};

/* smtp_session_tls_refuse_as(): the 421 every command gets. */
struct session_tls_refuse {
	char dsn[8];    /* its enhanced status ("4.7.1") */
	char text[201];
};

/* The decoded attribute values of the XCLIENT being decided; the event points here. */
struct xclient_buf {
	struct smtp_xclient pub;
	char val[SMTP_XCLIENT_ATTR_MAX][XCLIENT_VALUE_MAX + 1];
};

/* Fields are grouped by size (pointers and 64-bit counters, then 32-bit, then 16-bit, then
 * flags) so the struct has no holes: a gateway holds one per connection, a million at
 * once (perf/loadgen/README.md, memory). */
struct smtp_session {
	const struct smtp_config *cfg;
	const char *where; /* the last command, as Postfix logs "lost connection after X" */
	/* the client's name as shown in replies and Received:, NULL for "unknown" (most
	 * clients: heap only for a name, so an idle session does not carry 256 bytes) */
	char *client_name;
	/* the client's address as shown in replies and Received: (XCLIENT may change it), at
	 * its length (smtp_session_store_client_addr()); NULL only without memory */
	char *client_addr;
	char *tls_received;      /* Received:'s TLS lines (smtp_session_set_tls_received()) */
	struct session_tls_refuse *tls_refuse; /* smtp_session_tls_refuse(); NULL: none */
	struct xclient_buf *xcl; /* the XCLIENT awaiting its verdict (taken lazily) */
	/* smtp_session_set_rate_hook() */
	bool (*rate_over)(void *arg, enum smtp_rate_event event);
	void *rate_arg;
	/* HELO/EHLO: the accepted name (neutered for Received:) and the one being decided,
	 * taken with the first name (NULL before: an idle session holds none) */
	struct session_names *names;

	/* The verdict being waited for and what applying it needs (and pending, below). */
	uint64_t mail_next_size;
	struct mx_span mail_next_auth; /* MAIL's AUTH= value (into the command line) */

	/* The mail transaction (and its flags, below). */
	uint64_t declared_size;
	uint64_t requests;       /* command lines and message contents read in full */

	/* SMTP AUTH (smtp_session_auth.c): enabled, what EHLO offers, authenticated; the
	 * response line being read (taken when a 334 is sent, freed when the exchange ends) */
	char *auth_mechs; /* EHLO's list, NULL: none (heap: most sessions never AUTH) */
	char *auth_line;
	size_t auth_line_len;
	char *auth_header_user; /* smtp_session_set_auth_header(): Received: names it */

	/* A command line that arrived in pieces. */
	char *line;
	size_t line_len;

	/* The BDAT chunk being read. */
	uint64_t chunk_size, chunk_left;

	/* Message content. */
	char *hdr;
	size_t hdr_cap, hdr_len, hdr_start, hdr_drop;
	uint64_t msg_bytes;  /* content after unstuffing and normalizing: the size limit */
	uint64_t msg_stored; /* what HEADER and BODY events handed out */

	/* The events not handed out yet: EVQ_CAP of them, taken with the first event of a
	 * step() and given back when step() has consumed its input and handed them all out,
	 * so a session waiting for its client holds none (a gateway holds a million such:
	 * 576 bytes each). NULL while empty. */
	struct smtp_event *evq;

	/* Replies waiting to be sent. Taken when a reply is made and given back once all of
	 * it was sent, so an idle session holds none. */
	char *out;
	size_t out_off, out_len;

	/* 32 bits */
	enum session_state state;
	enum smtp_event_type pending;
	enum smtp_body_type mail_next_body;
	enum close_reason close_deferred; /* timeout/shutdown after the pending reply */
	enum smtp_body_type body;
	unsigned rcpt_count;
	unsigned rcpt_overshoot; /* 452s past recipient_limit in this transaction */
	unsigned auth_flags;
	/* Postfix's error_count and junk_cmds. */
	unsigned error_count, junk_count;
	enum content_state cs;
	enum header_state hs;
	unsigned hops;
	enum msg_failure fail;
	unsigned evq_head, evq_len;
	/* soft_bounce: where the reply being written is in its line, and whether its code
	 * was turned from 5xx into 4xx (then a 5.x.x enhanced code follows suit). */
	unsigned out_col;

	/* 16 bits */
	uint16_t helo_len, helo_next_len;

	/* flags */
	bool normalize_bare_lf; /* bare LF is taken as CRLF (normalize mode, or excluded) */
	bool peer_gone;
	bool xclient_authorized; /* smtpd_authorized_xclient_hosts matches the client */
	bool ill_pipelining;     /* Postfix's SMTPD_FLAG_ILL_PIPELINING (sticky) */
	bool access_denied;      /* smtp_session_greet_deny(): only QUIT works */
	bool tls_offer;          /* smtp_session_set_tls() */
	bool tls_required;
	bool tls_active;         /* TLS began (wrappermode, or after STARTTLS) */
	bool discard_input;      /* STARTTLS: the rest of this input is never read */
	bool helo_seen, esmtp;
	bool helo_next_esmtp;
	bool mail_next_utf8;
	bool data_next_bdat;
	bool mail_given;
	bool smtputf8;
	bool bdat_used;   /* this transaction sends its message with BDAT */
	bool bdat_failed; /* BDAT error state: chunks are discarded until LAST */
	bool msg_open;    /* DATA accepted; MESSAGE_END or MESSAGE_ABORT still owed */
	bool auth_enabled, auth_authenticated;
	bool auth_line_skip;
	bool line_skip; /* over line_length_limit: skipping to its end */
	bool chunk_last, chunk_discard;
	bool bol_crlf; /* the current line began after a real CRLF (or at the 354) */
	bool hdr_have, hdr_trunc, headers_end_sent;
	bool out_failed; /* a reply could not be kept (no memory): the session ends */
	bool out_softened;
};

/* ---- smtp_session.c: states, events, error accounting, the transaction ---- */

/* Every change of s->state goes through here. */
void smtp_session_enter_state(struct smtp_session *s, enum session_state next);

struct smtp_event *smtp_session_evq_tail(struct smtp_session *s);
void smtp_session_evq_push(struct smtp_session *s, struct smtp_event ev);
void smtp_session_evq_withdraw_unanswerable(struct smtp_session *s);
void smtp_session_push_simple(struct smtp_session *s, enum smtp_event_type type);
void smtp_session_push_error(struct smtp_session *s, enum smtp_error_kind kind, uint16_t code,
			     bool closing, uint32_t delay_ms);

void smtp_session_engine_error(struct smtp_session *s, enum smtp_error_kind kind,
			       uint16_t code);
void smtp_session_abort_message(struct smtp_session *s);
void smtp_session_engine_close(struct smtp_session *s, enum smtp_error_kind kind,
			       uint16_t code);
void smtp_session_count_junk(struct smtp_session *s);
bool smtp_session_pipelining_negotiated(const struct smtp_session *s);
void smtp_session_sync_error(struct smtp_session *s);
void smtp_session_bare_lf_reject(struct smtp_session *s);
void smtp_session_txn_reset(struct smtp_session *s);

/* ---- smtp_session_auth.c: AUTH ---- */

void smtp_session_cmd_auth(struct smtp_session *s, struct mx_span args);
void smtp_session_auth_input(struct smtp_session *s, const char *buf, size_t len, size_t *pos);
void smtp_session_auth_verdict(struct smtp_session *s, uint16_t code, const char *text);
void smtp_session_auth_ehlo(const struct smtp_session *s, const char **kw, unsigned *n,
			    char *buf, size_t cap, char *broken, size_t broken_cap);

/* ---- smtp_session_reply.c: replies and the output buffer ---- */

size_t smtp_session_out_pending(const struct smtp_session *s);
void smtp_session_out_write(struct smtp_session *s, const char *p, size_t n);
void smtp_session_replyf(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A fixed reply line (with its CRLF). */
#define reply_lit(s, text) smtp_session_out_write((s), text "\r\n", sizeof(text "\r\n") - 1)

void smtp_session_reply_text(struct smtp_session *s, uint16_t code, const char *text);
const char *smtp_session_printable(char *dst, size_t cap, struct mx_span src, bool utf8);
const char *smtp_session_myhostname(const struct smtp_session *s, char *buf, size_t cap);

/* A literal refusal: send it and report it. The reported code is read from the text, so
 * the two can never disagree. */
#define refuse_lit(s, kind, text)                                                          \
	do {                                                                               \
		reply_lit((s), text);                                                      \
		smtp_session_engine_error((s), (kind),                                     \
					  (uint16_t)(((text)[0] - '0') * 100 +             \
						     ((text)[1] - '0') * 10 + ((text)[2] - '0'))); \
	} while (0)

/* ---- smtp_session_cmd.c: command lines ---- */

void smtp_session_command_input(struct smtp_session *s, const char *buf, size_t len,
				size_t *pos);
/* false: no memory for the names (the session ends, as for a lost reply) */
bool smtp_session_helo_neuter(struct smtp_session *s, struct mx_span name);
/* The accepted HELO name ("" before one) */
static inline const char *smtp_session_helo_str(const struct smtp_session *s)
{
	return s->names ? s->names->helo : "";
}
/* Keep the verdict's name (helo_next) as the accepted one. */
void smtp_session_helo_accept(struct smtp_session *s);
void smtp_session_helo_forget(struct smtp_session *s);
/* Set the client's name (printable; "unknown" and no memory keep none). */
void smtp_session_store_client_name(struct smtp_session *s, struct mx_span name);
void smtp_session_store_client_addr(struct smtp_session *s, struct mx_span addr);
static inline const char *smtp_session_client_addr_str(const struct smtp_session *s)
{
	return s->client_addr ? s->client_addr : "unknown";
}
static inline const char *smtp_session_client_name_str(const struct smtp_session *s)
{
	return s->client_name ? s->client_name : "unknown";
}
void smtp_session_reply_ehlo(struct smtp_session *s);

/* ---- smtp_session_data.c: message content ---- */

void smtp_session_content_begin(struct smtp_session *s);
void smtp_session_chunk_end(struct smtp_session *s, bool more_after);
struct smtp_event smtp_session_content_input(struct smtp_session *s, const char *buf,
					     size_t len, size_t *pos);

/* ---- smtp_session_xclient.c ---- */

void smtp_session_cmd_xclient(struct smtp_session *s, struct mx_span args);
void smtp_session_xclient_apply(struct smtp_session *s, bool authorized);

#endif
