/* The sans-I/O SMTP server engine (RFC 5321, RFC 1870 SIZE, RFC 2920 PIPELINING,
 * RFC 3030 CHUNKING, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2034 ENHANCEDSTATUSCODES,
 * RFC 3461 DSN), and Postfix's XCLIENT for authorized proxies (XCLIENT_README).
 *
 * Bytes in, events and reply bytes out. The engine owns no socket, reads no clock, does no
 * logging and does not allocate per byte: a session allocates its state once, and its header
 * buffer lazily (grown up to header_size_limit, then reused).
 *
 * Driving a session (what a transport does):
 *
 *     s = smtp_session_new(&cfg, &client);
 *     smtp_session_greet(s);                       // queues the 220 banner
 *     on readable:
 *         off = 0;
 *         for (;;) {
 *             ev = smtp_session_step(s, buf + off, len - off, &used); off += used;
 *             if (ev.type == SMTP_EV_NONE) break;          // all input consumed
 *             if (ev.type == SMTP_EV_BLOCKED) break;       // verdict pending or output full
 *             handle(ev);  // may call smtp_session_verdict() now, or later (spool commit)
 *         }
 *         keep buf[off..len) for the next call if off < len;
 *     write smtp_session_output() bytes; smtp_session_output_done(n);
 *     close when smtp_session_closed(s) and the output is drained.
 *
 * Events that carry `needs_verdict` stop the engine: until smtp_session_verdict() answers
 * them, smtp_session_step() consumes nothing and returns SMTP_EV_BLOCKED. That is what keeps
 * replies in command order under PIPELINING even when a verdict comes later (the spool commit
 * answers end-of-message asynchronously).
 *
 * Spans inside an event point into the input given to that smtp_session_step() call, into
 * the engine's own buffers, or into static strings; they are valid until the next call on
 * the session. */
#ifndef MXGATE_SMTP_SESSION_H
#define MXGATE_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/span.h"

struct smtp_session;

/* What smtpd_forbid_bare_newline may say. mxgate offers no mode that lets a bare LF end a
 * message: LF . LF and friends never end DATA in any mode. */
enum smtp_bare_newline_mode {
	SMTP_BARE_NEWLINE_NORMALIZE, /* bare LF is taken as CRLF (default, as Postfix 3.9+) */
	SMTP_BARE_NEWLINE_REJECT,    /* bare LF: 550 5.5.2 Error: bare <LF> received, close */
	SMTP_BARE_NEWLINE_MODE_MAX,
};

/* Engine configuration; the transport maps mxgate.cf (Postfix parameter names) onto it.
 * Strings are borrowed and must outlive every session that uses the config. */
struct smtp_config {
	const char *myhostname;     /* for EHLO, Received:, 421 texts */
	const char *banner;         /* smtpd_banner, already $-expanded, without "220 " */
	const char *mail_name;      /* "mxgate", shown in Received: "by host (mail_name)" */
	size_t line_length_limit;   /* longest command line incl. CRLF (Postfix 2048) */
	size_t message_size_limit;  /* 0 = unlimited; counts the message as it is stored */
	size_t header_size_limit;   /* one logical header; the excess is discarded */
	unsigned hopcount_limit;    /* Received: headers before 554 5.4.0 too many hops */
	unsigned recipient_limit;   /* smtpd_recipient_limit */
	/* smtpd_recipient_overshoot_limit: this many "452 too many recipients" replies per
	 * transaction are not errors (a client may send its whole list at once and send the
	 * rest later); past them each one counts toward the error limits (Postfix 2.8+) */
	unsigned recipient_overshoot_limit;
	unsigned soft_error_limit;  /* smtpd_soft_error_limit: past it, errors are delayed */
	unsigned hard_error_limit;  /* smtpd_hard_error_limit: past it, 421 and close */
	unsigned junk_command_limit; /* smtpd_junk_command_limit (NOOP, VRFY, RSET, HELP...) */
	unsigned error_sleep_ms;    /* smtpd_error_sleep_time, reported to the transport */
	enum smtp_bare_newline_mode bare_newline;
	bool forbid_unauth_pipelining; /* smtpd_forbid_unauth_pipelining */
	bool helo_required;         /* smtpd_helo_required */
	bool disable_vrfy_command;  /* disable_vrfy_command: 502 instead of 252 */
	bool strict_rfc821_envelopes; /* require <> around MAIL/RCPT addresses */
	bool enable_pipelining;     /* advertise PIPELINING */
	bool enable_chunking;       /* advertise CHUNKING and accept BDAT */
	bool enable_smtputf8;       /* advertise SMTPUTF8 */
	bool enable_8bitmime;       /* advertise 8BITMIME */
	bool enable_dsn;            /* advertise DSN and accept RET ENVID NOTIFY ORCPT */
	bool soft_bounce;           /* soft_bounce: every 5xx reply is sent as 4xx */
	size_t sasl_response_limit; /* smtpd_sasl_response_limit: longest AUTH response line */
};

/* Fill *cfg with Postfix's defaults (and mxgate's hardened ones); hostname etc. are set to
 * "localhost"-style placeholders the caller is expected to replace. */
void smtp_config_defaults(struct smtp_config *cfg);

/* Who is on the other end, as the transport knows it. Strings are copied. */
struct smtp_client_info {
	const char *addr;        /* numeric address, "192.0.2.1" or "2001:db8::1" */
	const char *name;        /* verified reverse name or NULL ("unknown") */
	uint16_t port;
	bool bare_newline_excluded; /* in smtpd_forbid_bare_newline_exclusions: normalize even
	                               when the mode is reject */
	bool xclient_authorized; /* matches smtpd_authorized_xclient_hosts: EHLO offers XCLIENT
	                            and the XCLIENT command is taken */
};

enum smtp_event_type {
	SMTP_EV_NONE,          /* all given input consumed; nothing to report */
	SMTP_EV_BLOCKED,       /* a verdict is pending, or the output buffer is full */
	SMTP_EV_HELO,          /* HELO/EHLO (needs verdict) */
	SMTP_EV_MAIL,          /* MAIL FROM (needs verdict) */
	SMTP_EV_RCPT,          /* RCPT TO (needs verdict) */
	SMTP_EV_DATA,          /* DATA, or the first BDAT of a transaction (needs verdict) */
	SMTP_EV_HEADER,        /* one logical header of the message, CRLFs included */
	SMTP_EV_HEADERS_END,   /* the header section is over; body follows */
	SMTP_EV_BODY,          /* a piece of the body, dot-unstuffed, line ends normalized */
	SMTP_EV_MESSAGE_END,   /* final dot / BDAT LAST: whole message seen (needs verdict) */
	SMTP_EV_MESSAGE_ABORT, /* the message in progress is dropped; discard what you have */
	SMTP_EV_RSET,          /* RSET, or an implicit reset (EHLO/HELO mid-transaction) */
	SMTP_EV_PROTOCOL_ERROR,/* informational: a command was refused by the engine */
	SMTP_EV_QUIT,          /* QUIT: 221 is queued; the session closes after it */
	SMTP_EV_CLOSE,         /* the engine ended the session (421/554/221 queued) */
	SMTP_EV_XCLIENT,       /* XCLIENT from an authorized client, attributes checked
	                          (needs verdict) */
	SMTP_EV_AUTH,          /* AUTH mech [initial-response], the engine's checks passed
	                          (needs verdict; see smtp_session_set_auth()) */
	SMTP_EV_AUTH_RESPONSE, /* the client's line after a 334 challenge (needs verdict) */
	SMTP_EV_STARTTLS,      /* STARTTLS taken (RFC 3207): "220 2.0.0 Ready to start TLS"
	                          is the last plaintext output, every input byte after the
	                          command was discarded, HELO and the transaction are
	                          forgotten; what comes next is TLS (smtp_session_set_tls()) */
	SMTP_EV_MAX,
};

const char *smtp_event_name(enum smtp_event_type t);

/* Why the engine refused something (for logs and counters). */
enum smtp_error_kind {
	SMTP_ERR_NONE,
	SMTP_ERR_UNKNOWN_COMMAND,
	SMTP_ERR_SYNTAX,
	SMTP_ERR_BAD_SEQUENCE,
	SMTP_ERR_LINE_TOO_LONG,
	SMTP_ERR_BAD_ADDRESS,
	SMTP_ERR_BAD_PARAMETER,
	SMTP_ERR_MESSAGE_TOO_BIG,
	SMTP_ERR_TOO_MANY_RECIPIENTS, /* past smtpd_recipient_overshoot_limit: an error */
	SMTP_ERR_RECIPIENT_OVERSHOOT, /* the 452 within the overshoot limit: not an error */
	SMTP_ERR_TOO_MANY_HOPS,
	SMTP_ERR_BARE_NEWLINE,
	SMTP_ERR_UNAUTH_PIPELINING, /* includes talking before the greeting */
	SMTP_ERR_HARD_ERROR_LIMIT,
	SMTP_ERR_JUNK_COMMAND_LIMIT,
	SMTP_ERR_ACCESS_DENIED,     /* a command after smtp_session_greet_deny() */
	SMTP_ERR_NO_VALID_RECIPIENTS,
	SMTP_ERR_RATE_LIMIT,        /* the rate hook said the client is over its limit */
	SMTP_ERR_KIND_MAX,
};

const char *smtp_error_kind_name(enum smtp_error_kind k);

enum smtp_body_type {
	SMTP_BODY_UNSPECIFIED,
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME, /* only with BDAT (RFC 3030) */
	SMTP_BODY_TYPE_MAX,
};

/* The attributes of XCLIENT (Postfix XCLIENT_README, as Postfix 3.7 takes them). */
enum smtp_xclient_attr {
	SMTP_XCLIENT_NAME,         /* verified client name */
	SMTP_XCLIENT_REVERSE_NAME, /* the client's reverse name (unverified) */
	SMTP_XCLIENT_ADDR,         /* client address */
	SMTP_XCLIENT_PORT,         /* client port */
	SMTP_XCLIENT_PROTO,        /* SMTP or ESMTP */
	SMTP_XCLIENT_HELO,         /* the HELO name */
	SMTP_XCLIENT_LOGIN,        /* SASL login name */
	SMTP_XCLIENT_DESTADDR,     /* the address the client connected to */
	SMTP_XCLIENT_DESTPORT,     /* the port the client connected to */
	SMTP_XCLIENT_ATTR_MAX,
};

/* The attribute's name as XCLIENT spells it ("NAME", "REVERSE_NAME"...). */
const char *smtp_xclient_attr_name(enum smtp_xclient_attr a);

/* One XCLIENT attribute. `value` is the value after xtext decoding (RFC 1891 xtext, as
 * Postfix's xtext_unquote: the raw text when it does not decode, cut at a decoded NUL),
 * with control characters (and 8-bit bytes unless SMTPUTF8 is enabled and the value is
 * UTF-8) turned into '?'. Checked as Postfix checks it: NAME and REVERSE_NAME are host
 * names (valid_hostname), ADDR and DESTADDR numeric addresses (IPv4, or "IPv6:" and an
 * IPv6 address; `value` is the address without the prefix), PORT and DESTPORT 1 to 5
 * digits (Postfix does not check the range: 99999 passes), PROTO SMTP or ESMTP (upper
 * case here), HELO neutered as for Received: (" <>()\\\";@" and controls become '?'),
 * LOGIN anything. `unavailable`: the value was [UNAVAILABLE], or for NAME and
 * REVERSE_NAME also [TEMPUNAVAIL] (then `tempunavail` is set too): the attribute is
 * known to be unknown ("unknown" in Received:), `value` then holds the literal text. */
struct smtp_xclient_value {
	bool present;
	bool unavailable;
	bool tempunavail;
	struct mx_span value;
};

struct smtp_xclient {
	struct smtp_xclient_value attr[SMTP_XCLIENT_ATTR_MAX];
};

struct smtp_event {
	enum smtp_event_type type;
	bool needs_verdict;
	/* Postfix's SMTPD_FLAG_ILL_PIPELINING, which reject_unauth_pipelining tests: at some
	 * point in this session, up to and including this command, the client sent a command
	 * ahead of our reply where RFC 2920 does not allow it (before the greeting; any
	 * command without PIPELINING negotiated; or HELO, EHLO, DATA, NOOP, VRFY, QUIT,
	 * STARTTLS, or a BDAT chunk, followed by more input). Like Postfix's flag it stays set
	 * for the rest of the session. Only seen with forbid_unauth_pipelining off (on, the
	 * engine answers 554 and closes instead). Set on every event. */
	bool unauth_pipelining;
	union {
		struct {
			struct mx_span name; /* the HELO/EHLO argument */
			bool esmtp;          /* EHLO */
		} helo;
		struct {
			struct mx_span addr;   /* without <>, source route stripped; empty = null sender */
			struct mx_span params; /* the raw ESMTP parameter text after the address
			                          (SIZE, BODY, SMTPUTF8, RET, ENVID), all checked */
			uint64_t size;         /* SIZE=, 0 if absent */
			enum smtp_body_type body;
			bool smtputf8;
			struct mx_span auth;   /* AUTH= as sent (xtext), empty when absent; only
			                          taken while AUTH is enabled (RFC 4954 5) */
		} mail;
		struct {
			struct mx_span addr;   /* without <>, source route stripped */
			struct mx_span params; /* raw ESMTP parameter text (NOTIFY, ORCPT), checked */
		} rcpt;
		struct {
			bool bdat;             /* the transaction uses BDAT rather than DATA */
		} data;
		struct {
			struct mx_span text;   /* "Name: value\r\n\tmore\r\n" as received (normalized) */
			bool truncated;        /* header_size_limit cut it */
		} header;
		struct mx_span body;
		struct {
			uint64_t size;         /* bytes of message content seen (what was stored) */
			unsigned recipients;   /* accepted recipients in this transaction */
		} message;
		/* The attributes given, all checked. Valid until the verdict (engine memory). */
		const struct smtp_xclient *xclient;
		/* AUTH: the mechanism and the initial response as written (not decoded; "="
		 * is the empty response). AUTH_RESPONSE: the line in `response` (without its
		 * line end), or too_long when it was longer than sasl_response_limit (its
		 * bytes were skipped). */
		struct {
			struct mx_span mech;
			struct mx_span response;
			bool has_response;
			bool too_long;
		} auth;
		struct {
			enum smtp_error_kind kind;
			uint16_t code;         /* the reply code the engine sent */
			bool closing;          /* the engine is closing the session */
			uint32_t delay_ms;     /* hold the output this long (past soft_error_limit) */
		} error;
	} u;
};

/* A verdict for an event that needs one.
 * code == 0 takes the engine's default success reply for that event ("250 2.1.0 Ok" for
 * MAIL, "250 2.1.5 Ok" for RCPT, "354 End data with <CR><LF>.<CR><LF>" for DATA, the EHLO
 * capability list, and for MESSAGE_END "250 2.0.0 Ok: queued as <queue_id>").
 * Otherwise `code` and `text` ("5.7.1 <a@b>: Relay access denied", without the code) form
 * the reply; a 2xx code counts as acceptance, anything else as refusal. `disconnect` closes
 * the session after the reply (421, 521).
 *
 * XCLIENT: code 0 takes the new identity and answers with a fresh "220 <banner>", as
 * Postfix does; a 2xx code takes it too but answers with `text`; anything else keeps the
 * old identity and sends the reply. Taking it means, as Postfix's xclient_cmd(): NAME and
 * ADDR become the client name and address (Received:, logs), HELO the HELO name (or no
 * HELO was given if HELO= was absent or [UNAVAILABLE]), PROTO the protocol (SMTP if
 * absent), the transaction and the HELO state are reset, and `xclient_authorized` says
 * whether the new identity still matches smtpd_authorized_xclient_hosts (Postfix
 * matches the list again). */
struct smtp_verdict {
	uint16_t code;
	const char *text;
	const char *queue_id; /* MESSAGE_END with code 0 */
	bool disconnect;
	bool xclient_authorized; /* XCLIENT accepted: the new identity may send XCLIENT */
	/* XCLIENT only: take the new identity, answer with code and text (the client
	 * restrictions' refusal), and from then on deny every command as
	 * smtp_session_greet_deny() does (Postfix with smtpd_delay_reject = no). */
	bool access_denied;
};

/* Allocate a session. Returns NULL on allocation failure. */
struct smtp_session *smtp_session_new(const struct smtp_config *cfg,
				      const struct smtp_client_info *client);
void smtp_session_free(struct smtp_session *s);
/* The client is someone else than the transport said at smtp_session_new() (a PROXY
 * protocol header named it before any byte reached the session): the same fields again. */
void smtp_session_set_client(struct smtp_session *s, const struct smtp_client_info *client);

/* Postfix's per-client rate limits (anvil(8)) are asked where Postfix's smtpd asks anvil:
 * MAIL right after its "FROM:" syntax check, RCPT after "TO:", VRFY after its argument
 * check -- before the address and parameters are parsed, so a command refused later still
 * counts ("regardless of whether or not Postfix actually accepts those messages",
 * postconf(5)). The engine asks the transport's hook, which counts the event and says
 * whether the client is over its limit (the counting is shared by every worker and
 * outside the engine); over, the engine answers as Postfix's mail_cmd() and rcpt_cmd()
 * ("450 4.7.1 Error: too much mail from ADDR", "450 4.7.1 Error: too many recipients from
 * ADDR", ADDR the client's address) and counts an error (SMTP_ERR_RATE_LIMIT). */
enum smtp_rate_event {
	SMTP_RATE_MESSAGE,   /* MAIL: smtpd_client_message_rate_limit */
	SMTP_RATE_RECIPIENT, /* RCPT and VRFY: smtpd_client_recipient_rate_limit */
	SMTP_RATE_AUTH,      /* AUTH, before any of its checks: smtpd_client_auth_rate_limit */
	/* STARTTLS, before its 220: smtpd_client_new_tls_session_rate_limit. The hook only
	 * looks (anvil's newtls_stat): a session is counted after its handshake, by the
	 * transport, unless it was resumed. Over the limit: "454 4.7.0 Error: too many new
	 * TLS sessions from NAME[ADDR]" (Postfix's starttls_cmd()), no TLS. */
	SMTP_RATE_NEWTLS,
	SMTP_RATE_EVENT_MAX,
};

const char *smtp_rate_event_name(enum smtp_rate_event e);

/* over(arg, event): count the event, and return true when the client is now over its
 * limit. NULL (the default): no rate limits. */
void smtp_session_set_rate_hook(struct smtp_session *s,
				bool (*over)(void *arg, enum smtp_rate_event event), void *arg);

/* Queue the greeting. Input given before this is "talking before the greeting": with
 * forbid_unauth_pipelining the session answers 554 5.5.0 and closes. */
void smtp_session_greet(struct smtp_session *s);
/* The client's verified name learned after the session was made (the reverse lookup at
 * connect finishes before the greeting): Received: and the protocol show it. NULL:
 * "unknown". */
void smtp_session_set_client_name(struct smtp_session *s, const char *name);

/* SMTP AUTH (RFC 4954) as Postfix's smtpd_sasl_proto.c: whether AUTH is enabled for this
 * session (smtpd_sasl_auth_enable, and not a client of smtpd_sasl_exceptions_networks),
 * and the mechanisms EHLO offers ("PLAIN LOGIN"; NULL or "" offers none: the backend's
 * list is not known yet). With SMTP_AUTH_NEED_TLS (smtpd_tls_auth_only outside TLS) EHLO
 * offers nothing and AUTH gets Postfix's 503 (SASL is off outside TLS); SMTP_AUTH_BROKEN_CLIENTS adds Postfix's
 * "AUTH=mechs" line for Outlook 2003 and friends (broken_sasl_auth_clients). The engine
 * checks the command as Postfix's auth_cmd() (HELO first if smtpd_helo_required, enabled,
 * not in a transaction, TLS if needed, not authenticated twice, syntax) and hands the
 * rest to the transport as SMTP_EV_AUTH. The verdict of AUTH and AUTH_RESPONSE is:
 *   334 and the challenge (base64) as text: "334 <text>", the next line is the client's
 *       response (SMTP_EV_AUTH_RESPONSE);
 *   235 (text "2.7.0 Authentication successful"): the session is authenticated;
 *   anything else (535, 454, 501, 500): the reply, counted as an error.
 * Call before the EHLO verdict; mechs is copied (at most 255 bytes). */
#define SMTP_AUTH_NEED_TLS 0x1u
#define SMTP_AUTH_BROKEN_CLIENTS 0x2u
void smtp_session_set_auth(struct smtp_session *s, bool enabled, const char *mechs,
			   unsigned flags);
/* smtpd_sasl_authenticated_header: Received: gets "(Authenticated sender: NAME)" (copied;
 * NULL: no such line). Returns 0 or -ENOMEM. */
int smtp_session_set_auth_header(struct smtp_session *s, const char *name);
/* True once an AUTH exchange ended in 235. */
bool smtp_session_authenticated(const struct smtp_session *s);

/* Refuse the connection at greeting time instead (e.g. a 421 or 554 from a client
 * restriction); the session closes after the reply. */
void smtp_session_greet_reject(struct smtp_session *s, uint16_t code, const char *text);

/* The client restrictions refused the client at connect (smtpd_delay_reject = no): send
 * this reply instead of the greeting and keep the session, answering every later command
 * but QUIT (XCLIENT and unknown verbs too) with "503 5.7.0 Error: access denied for
 * NAME[ADDR]", each counted as an error, as Postfix does. */
void smtp_session_greet_deny(struct smtp_session *s, uint16_t code, const char *text);

/* Feed bytes. Consumes at most len bytes (*used says how many) and returns the next event.
 * Returns SMTP_EV_NONE with *used == len when everything was consumed and nothing happened,
 * SMTP_EV_BLOCKED (possibly with *used < len) while a verdict is pending or the output
 * buffer is above its high-water mark.
 * The transport passes everything it has read and not yet had consumed, so bytes after a
 * command in buf are bytes the client sent before seeing our reply: that is what the
 * pipelining checks look at (RFC 2920: a command that must end a group, or any command when
 * PIPELINING was not negotiated, followed by more input -> 554 5.5.0 and close when
 * forbid_unauth_pipelining is set). */
struct smtp_event smtp_session_step(struct smtp_session *s, const char *buf, size_t len,
				    size_t *used);

/* Answer the pending event. Returns 0, or -EINVAL if no verdict is pending. */
int smtp_session_verdict(struct smtp_session *s, const struct smtp_verdict *v);

/* The transport's idle/command timer fired: queue "421 4.4.2 <host> Error: timeout
 * exceeded" and close. */
void smtp_session_timeout(struct smtp_session *s);

/* The gateway is shutting down: queue "421 4.3.2 <host> Service shutting down" and close. */
void smtp_session_shutdown(struct smtp_session *s);

/* The peer went away (EOF or reset): a message in progress is aborted (the next step()
 * returns SMTP_EV_MESSAGE_ABORT if one was), nothing more is queued. */
void smtp_session_peer_closed(struct smtp_session *s);

/* Reply bytes waiting to be sent, and how many of them were sent. */
struct mx_span smtp_session_output(const struct smtp_session *s);
void smtp_session_output_done(struct smtp_session *s, size_t n);

/* True once the session has ended (after QUIT, a closing error or a disconnect verdict);
 * the transport closes after draining the output. */
bool smtp_session_closed(const struct smtp_session *s);

/* True while the engine waits for smtp_session_verdict(). */
bool smtp_session_verdict_pending(const struct smtp_session *s);

/* True between the 354 (or first BDAT) and the end of the message: transports use a
 * different timeout or buffer policy there. */
bool smtp_session_in_data(const struct smtp_session *s);

/* How many requests the client completed: command lines (too long ones included),
 * message contents (the final dot) and BDAT chunks. A transport that bounds each request
 * in time (smtpd_per_request_deadline) restarts its clock when this moves. */
uint64_t smtp_session_requests(const struct smtp_session *s);

/* The protocol name for Received: and logs: SMTP, ESMTP, UTF8SMTP. */
const char *smtp_session_protocol(const struct smtp_session *s);

/* The HELO/EHLO name the client gave (empty span before HELO), as Postfix keeps it for
 * Received: and logs: at most 255 octets, control characters and " <>()\\\";@" turned
 * into '?'. The HELO event carries the name exactly as sent. */
struct mx_span smtp_session_helo(const struct smtp_session *s);

/* The last command the session saw, for logs as Postfix writes them ("lost connection
 * after DATA"): "CONNECT" before any, then "EHLO", "MAIL", "RCPT", "DATA", "BDAT",
 * "END-OF-MESSAGE" once a message ended, "UNKNOWN" after an unrecognized verb. Static. */
const char *smtp_session_where(const struct smtp_session *s);

/* The engine's state, for logs: "PREGREET" (before the greeting), "COMMAND" (reading
 * command lines), "DATA" (message content after the 354), "CHUNK" (the octets of a BDAT
 * chunk), "CLOSED". Static. */
const char *smtp_session_state_name(const struct smtp_session *s);

/* TLS (RFC 3207), as the transport's TLS layer sees it. offer: EHLO offers STARTTLS and
 * the command is taken (Postfix's smtpd_tls_security_level may or encrypt); required:
 * every command but HELO, EHLO, XCLIENT, STARTTLS, NOOP, HELP and QUIT is answered "530
 * 5.7.0 Must issue a STARTTLS command first" (and counts as an error) until TLS is
 * active, as Postfix's enforce level. Set before the first input. */
void smtp_session_set_tls(struct smtp_session *s, bool offer, bool required);

/* The session runs over TLS from now on (wrappermode: from the start; after STARTTLS the
 * engine sets it itself): STARTTLS is no longer offered (554 5.5.1 Error: TLS already
 * active), required commands are allowed, and Received: says ESMTPS (RFC 3848). */
void smtp_session_tls_begin(struct smtp_session *s);
bool smtp_session_tls_active(const struct smtp_session *s);

/* smtpd_tls_req_ccert: the client's certificate is missing or not trusted. As Postfix's
 * smtpd, the next command line is read and answered "421 4.7.1 <myhostname> Error:
 * <why>" (why: "Client certificate not trusted" or "No client certificate presented",
 * copied, at most 200 bytes), and the session closes; the line is not a command. */
void smtp_session_tls_refuse(struct smtp_session *s, const char *why);
/* The same with another enhanced status than 4.7.1 (dsn: "4.7.0", at most 7 bytes):
 * smtpd_client_new_tls_session_rate_limit's "421 4.7.0 <myhostname> Error: too many new
 * TLS sessions from NAME[ADDR]" after the handshake that went over the limit. */
void smtp_session_tls_refuse_as(struct smtp_session *s, const char *dsn, const char *why);

/* The TLS lines of Received: (smtpd_tls_received_header), each "\t(...)" with CRLFs
 * between, without the last CRLF; copied (at most 1024 bytes, control characters but
 * TAB, CR and LF in line breaks turned into '?'). NULL: none. -ENOMEM or 0. */
int smtp_session_set_tls_received(struct smtp_session *s, const char *clause);

/* Format the Received: header mxgate prepends, in Postfix's form:
 *   Received: from HELO (NAME [ADDR])\r\n
 *   \tby MYHOSTNAME (MAIL_NAME) with PROTO id QUEUE_ID\r\n
 *   \tfor <RCPT>; DATE\r\n            ("for" only when there is exactly one recipient)
 * `now` is wall-clock seconds, `tz_offset_min` the local offset for the RFC 5322 date.
 * Writes at most cap bytes; returns the length it needed (like snprintf). */
size_t smtp_received_header(char *out, size_t cap, const struct smtp_session *s,
			    const char *queue_id, const char *single_rcpt, int64_t now,
			    int tz_offset_min);

/* Bytes of state a session holds now (struct plus buffers), for the memory report. */
size_t smtp_session_memory(const struct smtp_session *s);

#endif
