/* SMTP AUTH over Dovecot's authentication client protocol (what Postfix speaks with
 * smtpd_sasl_type = dovecot), sans-I/O.
 *
 * Two halves:
 *
 * 1. The Dovecot side (smtp_dovecot_auth.c): one `struct smtp_dovecot` per connection to
 *    Dovecot's auth-client socket. It writes the client's lines into caller buffers
 *    (VERSION/CPID, AUTH, CONT, CANCEL), takes the server's bytes and turns them into events
 *    (handshake done, OK, CONT, FAIL), keeps the list of offered mechanisms and matches
 *    replies to the requests in flight. Many SMTP sessions may share one connection: every
 *    request has its own id. Facts come from Dovecot's "Authentication Protocol" document
 *    (doc.dovecot.org, developers/design/auth_protocol) and from what Dovecot 2.3/2.4 and
 *    Postfix's xsasl_dovecot_server.c actually send and accept.
 *
 * 2. The SMTP side (smtp_dovecot_sasl.c): RFC 4954 AUTH command arguments, the client's
 *    response lines, strict RFC 4648 base64, the AUTH= parameter of MAIL FROM (RFC 4954
 *    section 5, xtext of RFC 3461 section 4) and the reply texts Postfix's smtpd uses
 *    around all this.
 *
 * Neither half owns a socket, reads a clock or logs. A connection allocates its state once
 * (a line buffer of SMTP_DOVECOT_LINE_MAX and the request table) in smtp_dovecot_new().
 *
 * Driving a connection (what the SASL service thread does):
 *
 *     smtp_dovecot_new(max_requests, &c);
 *     n = smtp_dovecot_hello(getpid(), buf, sizeof(buf)); write(buf, n);
 *     on readable:
 *         off = 0;
 *         while ((t = smtp_dovecot_step(c, in + off, len - off, &used, &ev)) != NONE) {
 *             off += used;
 *             READY: smtp_dovecot_mech_list() for EHLO; requests may be sent now
 *             OK / FAIL / CONT: hand ev to the session that owns ev.id
 *             CANCEL_NEEDED: write smtp_dovecot_cancel(c, ev.id, ...)
 *             ERROR: close the connection; fail every request in flight with 454
 *                    (SMTP_DOVECOT_REASON_CONN_LOST), reconnect with a new object
 *         }
 *     per session: smtp_dovecot_auth() -> write; on CONT send "334 <challenge>", read the
 *     client's line, smtp_dovecot_response_parse(), then smtp_dovecot_cont() -> write;
 *     session gone or timed out: smtp_dovecot_cancel().
 *
 * Spans in an event point into the connection's line buffer and stay valid until the next
 * call on the connection. */
#ifndef MXGATE_SMTP_DOVECOT_AUTH_H
#define MXGATE_SMTP_DOVECOT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mxgate/inet.h"
#include "mxgate/span.h"

/* The protocol version we speak. Major must match the server's; minor 1 keeps the
 * semantics Postfix relies on (Postfix sends 1.0): no channel-binding mechanisms (1.3),
 * no CANCELLED replies (1.4). With a minor below 2, an empty "resp=" means "no initial
 * response", so an empty initial response is sent as "resp==" (Dovecot takes "=" as
 * empty, src/auth/auth-request-handler.c). */
#define SMTP_DOVECOT_VERSION_MAJOR 1
#define SMTP_DOVECOT_VERSION_MINOR 1

/* Longest line in either direction, LF included: Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH
 * (src/lib-auth-client/auth-client-interface.h), the size of the input buffer of both the
 * auth server and its clients; a longer line makes Dovecot drop the connection. */
#define SMTP_DOVECOT_LINE_MAX 16384
/* Most TAB-separated fields in one server line (an OK carries user= and the passdb's
 * extra fields; a few dozen at most in practice). More is a protocol error. */
#define SMTP_DOVECOT_FIELDS_MAX 256
/* Most mechanisms kept from the handshake (Dovecot has about twenty). */
#define SMTP_DOVECOT_MECH_MAX 32
/* RFC 4422 section 3.1: 1 to 20 characters of A-Z 0-9 - _. */
#define SMTP_DOVECOT_MECH_NAME_MAX 20
/* Largest request table smtp_dovecot_new() accepts. */
#define SMTP_DOVECOT_REQUESTS_MAX 65536u

/* Mechanism properties from the MECH line (Dovecot protocol "Authentication
 * Mechanisms"). */
#define SMTP_DOVECOT_MECH_ANONYMOUS 0x01u       /* "anonymous" */
#define SMTP_DOVECOT_MECH_PLAINTEXT 0x02u       /* "plaintext" */
#define SMTP_DOVECOT_MECH_DICTIONARY 0x04u      /* "dictionary" */
#define SMTP_DOVECOT_MECH_ACTIVE 0x08u          /* "active" */
#define SMTP_DOVECOT_MECH_FORWARD_SECRECY 0x10u /* "forward-secrecy" */
#define SMTP_DOVECOT_MECH_MUTUAL_AUTH 0x20u     /* "mutual-auth" */
#define SMTP_DOVECOT_MECH_PRIVATE 0x40u         /* "private": never advertised (APOP) */
#define SMTP_DOVECOT_MECH_CHANNEL_BINDING 0x80u /* "channel-binding" (protocol 1.3+) */

struct smtp_dovecot_mech {
	char name[SMTP_DOVECOT_MECH_NAME_MAX + 1]; /* as Dovecot announced it, NUL-terminated */
	unsigned flags;                            /* SMTP_DOVECOT_MECH_* */
};

/* smtpd_sasl_security_options (and smtpd_sasl_tls_security_options), Postfix's names:
 * the no* options drop mechanisms with that property, forward_secrecy and mutual_auth
 * keep only mechanisms with it (xsasl_dovecot_server.c, xsasl_dovecot_server_mech_filter).
 * Postfix's default is "noanonymous". */
#define SMTP_DOVECOT_SEC_NOPLAINTEXT 0x01u
#define SMTP_DOVECOT_SEC_NOACTIVE 0x02u
#define SMTP_DOVECOT_SEC_NODICTIONARY 0x04u
#define SMTP_DOVECOT_SEC_NOANONYMOUS 0x08u
#define SMTP_DOVECOT_SEC_FORWARD_SECRECY 0x10u
#define SMTP_DOVECOT_SEC_MUTUAL_AUTH 0x20u

/* Parse a security options value ("noanonymous, noplaintext"; separators are commas and
 * blanks, names case-insensitive, empty means none). Returns 0 and *out, or -EINVAL for
 * an unknown name (Postfix: fatal configuration error), explained in err. */
int smtp_dovecot_sec_opts_parse(const char *text, unsigned *out, char *err, size_t errlen);

/* Whether a mechanism passes the security options (never for a private one). */
bool smtp_dovecot_mech_allowed(const struct smtp_dovecot_mech *m, unsigned sec_opts);

/* ---- The Dovecot connection ---- */

struct smtp_dovecot;

enum smtp_dovecot_state {
	SMTP_DOVECOT_ST_VERSION,   /* waiting for the server's VERSION line */
	SMTP_DOVECOT_ST_HANDSHAKE, /* MECH, SPID, CUID, COOKIE until DONE */
	SMTP_DOVECOT_ST_READY,     /* requests may be sent, replies are matched */
	SMTP_DOVECOT_ST_FAILED,    /* protocol error: the connection must be closed */
	SMTP_DOVECOT_ST_MAX,
};

const char *smtp_dovecot_state_name(enum smtp_dovecot_state s);

enum smtp_dovecot_event_type {
	SMTP_DOVECOT_EV_NONE,          /* all input consumed, nothing to report */
	SMTP_DOVECOT_EV_READY,         /* handshake done: mechanisms known */
	SMTP_DOVECOT_EV_OK,            /* request ev.id succeeded as ev.user */
	SMTP_DOVECOT_EV_CONT,          /* request ev.id needs the client: 334 ev.challenge */
	SMTP_DOVECOT_EV_FAIL,          /* request ev.id failed: 535, or 454 when ev.temp */
	SMTP_DOVECOT_EV_CANCEL_NEEDED, /* a cancelled request wants more data: write
	                                  smtp_dovecot_cancel(ev.id) */
	SMTP_DOVECOT_EV_ERROR,         /* protocol error (ev.error); sticky */
	SMTP_DOVECOT_EV_MAX,
};

const char *smtp_dovecot_event_name(enum smtp_dovecot_event_type t);

struct smtp_dovecot_event {
	enum smtp_dovecot_event_type type;
	uint32_t id;              /* OK, CONT, FAIL, CANCEL_NEEDED */
	/* OK, FAIL: "user=", tab-unescaped, then made printable as Postfix's printable()
	 * does (control characters and invalid UTF-8 become '?'); empty when absent. */
	struct mx_span user;
	/* FAIL: "reason=", same treatment; empty when absent (Postfix then says
	 * SMTP_DOVECOT_REASON_UNAVAILABLE). Meant for the client, after "535 5.7.8 ...". */
	struct mx_span reason;
	/* CONT: the server's challenge, strict base64 (possibly empty), for "334 ". */
	struct mx_span challenge;
	bool temp;     /* FAIL: "temp" (Dovecot 2.0/2.1) or "code=temp_fail": answer 454 */
	/* FAIL made from an OK that carried "nologin" or "proxy": Dovecot's protocol document
	 * says such an OK only verified the credentials and MUST be refused like a FAIL.
	 * Postfix (3.12) does not check this; mxgate does. */
	bool nologin;
	const char *error; /* ERROR: what was wrong (static text) */
};

/* Allocate a connection able to hold `max_requests` requests in flight (1 ..
 * SMTP_DOVECOT_REQUESTS_MAX). Returns 0, -EINVAL or -ENOMEM. */
int smtp_dovecot_new(unsigned max_requests, struct smtp_dovecot **out);
void smtp_dovecot_free(struct smtp_dovecot *c);

/* The client handshake, "VERSION\t1\t1\nCPID\t<pid>\n", written to out. The server's own
 * handshake may come before or after it (Dovecot 2.3 sends at connect, 2.4 waits for our
 * VERSION). Returns the byte count or -ENOSPC. */
ssize_t smtp_dovecot_hello(uint32_t pid, char *out, size_t cap);

/* Feed server bytes. Consumes input up to and including the line that produced the
 * returned event (*used says how much) or all of it (NONE: need more; a partial line is
 * kept inside). Lines of no interest (unknown commands, replies to cancelled requests)
 * are consumed silently. After ERROR every call returns ERROR again and consumes nothing. */
enum smtp_dovecot_event_type smtp_dovecot_step(struct smtp_dovecot *c, const char *in,
					       size_t len, size_t *used,
					       struct smtp_dovecot_event *ev);

enum smtp_dovecot_state smtp_dovecot_get_state(const struct smtp_dovecot *c);
/* The server's minor protocol version (valid from SMTP_DOVECOT_ST_HANDSHAKE). */
unsigned smtp_dovecot_server_minor(const struct smtp_dovecot *c);
/* Requests in flight (including cancelled ones still waiting for their reply). */
size_t smtp_dovecot_pending(const struct smtp_dovecot *c);

/* Where one request stands. */
enum smtp_dovecot_req_state {
	SMTP_DOVECOT_REQ_NONE,        /* no such request (finished, or never sent) */
	SMTP_DOVECOT_REQ_WAIT_SERVER, /* AUTH or CONT sent, no reply yet */
	SMTP_DOVECOT_REQ_WAIT_CLIENT, /* the server sent CONT: smtp_dovecot_cont() next */
	SMTP_DOVECOT_REQ_CANCELLED,   /* cancelled while the server works on it */
	SMTP_DOVECOT_REQ_CANCEL_DUE,  /* cancelled, and the server wants data: send CANCEL */
	SMTP_DOVECOT_REQ_STATE_MAX,
};

const char *smtp_dovecot_req_state_name(enum smtp_dovecot_req_state s);
enum smtp_dovecot_req_state smtp_dovecot_request_state(const struct smtp_dovecot *c,
						       uint32_t id);

/* The mechanisms of the handshake in the server's order, private ones included.
 * Mechanisms whose names are not RFC 4422 names and duplicates are left out. */
size_t smtp_dovecot_mech_count(const struct smtp_dovecot *c);
const struct smtp_dovecot_mech *smtp_dovecot_mech_at(const struct smtp_dovecot *c, size_t i);
/* The offered mechanism named `name` (ASCII case-insensitive, as Postfix's strcasecmp)
 * if it passes sec_opts; NULL otherwise. */
const struct smtp_dovecot_mech *smtp_dovecot_mech_find(const struct smtp_dovecot *c,
						       struct mx_span name, unsigned sec_opts);
/* The EHLO AUTH list ("PLAIN LOGIN"): the mechanisms that pass sec_opts, in order,
 * separated by spaces. Returns its length (0: offer no AUTH) or -ENOSPC. */
ssize_t smtp_dovecot_mech_list(const struct smtp_dovecot *c, unsigned sec_opts, char *out,
			       size_t cap);

/* One authentication request. What Postfix sends, and when (xsasl_dovecot_server.c):
 *   AUTH <id> <mech> service=<service> nologin lip=<server> rip=<client>
 *        [secured: TLS is active] [resp=<initial response>: the client gave one]
 * Postfix never sends lport, rport or valid-client-cert; they are sent here when set
 * (Dovecot uses them for logging, penalties and client certificates). "nologin" is
 * ignored by current Dovecot and kept for servers that still read it. */
struct smtp_dovecot_auth_request {
	struct mx_span mech;       /* as the client named it; must be offered and pass sec_opts */
	unsigned sec_opts;         /* SMTP_DOVECOT_SEC_* of this service */
	const char *service;       /* "smtp" (Postfix: smtpd_sasl_service); tab-escaped */
	const struct mx_inet_addr *local;  /* lip=, the server address; NULL: left out */
	const struct mx_inet_addr *remote; /* rip=, the client address; NULL: left out */
	uint16_t local_port;       /* lport=; 0: left out */
	uint16_t remote_port;      /* rport=; 0: left out */
	bool secured;              /* "secured": the SMTP session runs over TLS */
	bool valid_client_cert;    /* "valid-client-cert": the client's certificate verified */
	bool has_initial_response; /* the AUTH command carried one */
	struct mx_span initial_response; /* base64 as sent by the client; empty or "=" is the
	                                    empty response */
};

/* Write an AUTH line for a new request; *id identifies it in replies. Returns the byte
 * count, or: -ENOTCONN before READY (or after ERROR), -ENOENT when the mechanism is not
 * offered or not allowed (Postfix: 535 Invalid authentication mechanism), -EINVAL for an
 * initial response that is not strict base64 or a missing service, -EBUSY when the
 * request table is full, -EMSGSIZE when the line would exceed SMTP_DOVECOT_LINE_MAX,
 * -ENOSPC when out is too small. Nothing changes on failure. */
ssize_t smtp_dovecot_auth(struct smtp_dovecot *c, const struct smtp_dovecot_auth_request *r,
			  uint32_t *id, char *out, size_t cap);

/* Write "CONT\t<id>\t<response>\n" for a request whose last event was CONT; the response
 * is the client's base64 line (possibly empty). Returns the byte count, or -ENOENT (no
 * such request), -EPROTO (the request is not waiting for the client), -EINVAL (not strict
 * base64), -EMSGSIZE, -ENOSPC. */
ssize_t smtp_dovecot_cont(struct smtp_dovecot *c, uint32_t id, struct mx_span response,
			  char *out, size_t cap);

/* Give up on a request (the session went away or timed out; "*" from the client is
 * different: answer 501 and cancel too). When the request waits for the client, writes
 * "CANCEL\t<id>\n" (Dovecot forgets the request and, below protocol 1.4, sends nothing
 * back) and frees it; when the server is still working on it, writes nothing (returns 0),
 * and its reply will be swallowed, or turned into CANCEL_NEEDED if it is a CONT. Returns
 * the byte count, 0, -ENOENT for an unknown id, or -ENOSPC. */
ssize_t smtp_dovecot_cancel(struct smtp_dovecot *c, uint32_t id, char *out, size_t cap);

/* Dovecot's tab escaping (src/lib/strescape.c, str_append_tabescaped): \001 -> \001 '1',
 * TAB -> \001 't', CR -> \001 'r', LF -> \001 'n', and NUL -> \001 '0'. Returns the byte
 * count or -ENOSPC. */
ssize_t smtp_dovecot_escape(const char *in, size_t n, char *out, size_t cap);
/* The reverse, in place: \001 and a character; '0' '1' 't' 'r' 'n' as above, anything
 * else stands for itself; a lone \001 at the end is dropped (str_tabunescape). Returns the
 * new length. */
size_t smtp_dovecot_unescape(char *s, size_t n);

/* ---- The SMTP side (smtp_dovecot_sasl.c) ---- */

/* Replies and reasons of Postfix's smtpd around SASL. Sources: smtpd/smtpd_sasl_proto.c
 * (AUTH command checks, AUTH= option), smtpd/smtpd_sasl_glue.c (the exchange),
 * xsasl/xsasl_dovecot_server.c (reasons). A bad base64 response is not the RFC 4954
 * section 4 "501 5.5.2": Postfix answers 535 5.7.8 with the reason below. */
#define SMTP_DOVECOT_REPLY_SUCCESS "235 2.7.0 Authentication successful"
#define SMTP_DOVECOT_REPLY_ABORTED "501 5.7.0 Authentication aborted"        /* "*" */
#define SMTP_DOVECOT_REPLY_RESP_LIMIT "500 5.5.6 SASL response limit exceeded"
#define SMTP_DOVECOT_REPLY_SYNTAX "501 5.5.4 Syntax: AUTH mechanism"
#define SMTP_DOVECOT_REPLY_NOT_ENABLED "503 5.5.1 Error: authentication not enabled"
#define SMTP_DOVECOT_REPLY_IN_TRANSACTION "503 5.5.1 Error: MAIL transaction in progress"
#define SMTP_DOVECOT_REPLY_ALREADY "503 5.5.1 Error: already authenticated"
#define SMTP_DOVECOT_REPLY_NEED_TLS \
	"504 5.5.4 Encryption required for requested authentication mechanism"
#define SMTP_DOVECOT_REPLY_MULTIPLE_AUTH_PARAM "503 5.5.4 Error: multiple AUTH= options"
#define SMTP_DOVECOT_REPLY_FAIL_PREFIX "535 5.7.8 Error: authentication failed: "
#define SMTP_DOVECOT_REPLY_TEMP_PREFIX "454 4.7.0 Temporary authentication failure: "
#define SMTP_DOVECOT_REASON_BAD_INITIAL "Invalid base64 data in initial response"
#define SMTP_DOVECOT_REASON_BAD_CONT "Invalid base64 data in continued response"
#define SMTP_DOVECOT_REASON_BACKEND "Authentication backend error" /* OK without user= */
#define SMTP_DOVECOT_REASON_CONN_LOST "Connection lost to authentication server" /* 454 */
#define SMTP_DOVECOT_REASON_NO_SERVER "Can't connect to authentication server"   /* 454 */
#define SMTP_DOVECOT_REASON_UNAVAILABLE "(reason unavailable)" /* FAIL without reason= */
/* smtpd_sasl_response_limit default (mail_params.h DEF_SMTPD_SASL_RESP_LIMIT). */
#define SMTP_DOVECOT_RESPONSE_LIMIT 12288

/* "535 5.7.8 Error: authentication failed: <reason>" or, when temp, "454 4.7.0 Temporary
 * authentication failure: <reason>", with SMTP_DOVECOT_REASON_UNAVAILABLE for an empty
 * reason, into out (NUL-terminated, no CRLF). Bytes that could break the reply line
 * (controls, non-ASCII) become '?'; the text is cut to fit. Returns the length.
 * cap must be at least 64. */
size_t smtp_dovecot_fail_reply(bool temp, struct mx_span reason, char *out, size_t cap);
/* "535 5.7.8 Error: authentication failed: Invalid authentication mechanism: '<mech>'",
 * as Postfix answers an AUTH with a mechanism it does not offer; same rules. */
size_t smtp_dovecot_bad_mech_reply(struct mx_span mech, char *out, size_t cap);

/* RFC 4954 section 4: "AUTH" SP sasl-mech [SP initial-response]. */
enum smtp_dovecot_cmd_result {
	SMTP_DOVECOT_CMD_OK,
	SMTP_DOVECOT_CMD_SYNTAX,     /* not 1 or 2 arguments: SMTP_DOVECOT_REPLY_SYNTAX */
	SMTP_DOVECOT_CMD_BAD_MECH,   /* not an RFC 4422 name: smtp_dovecot_bad_mech_reply() */
	SMTP_DOVECOT_CMD_BAD_BASE64, /* 535 with SMTP_DOVECOT_REASON_BAD_INITIAL */
	SMTP_DOVECOT_CMD_RESULT_MAX,
};

const char *smtp_dovecot_cmd_result_name(enum smtp_dovecot_cmd_result r);

struct smtp_dovecot_auth_cmd {
	struct mx_span mech;             /* the mechanism as the client wrote it */
	bool has_initial_response;
	struct mx_span initial_response; /* strict base64; empty for "=" (empty response) */
};

/* Parse what follows "AUTH" (leading and trailing blanks allowed; arguments separated by
 * blanks, as Postfix's smtpd_token splits them). A mechanism name is 1 to 20 of A-Z a-z
 * 0-9 - _ (RFC 4422 3.1 names are upper case; clients are not always, and Postfix
 * compares without case). On SMTP_DOVECOT_CMD_BAD_BASE64 out->mech is still set. */
enum smtp_dovecot_cmd_result smtp_dovecot_auth_cmd_parse(struct mx_span args,
							 struct smtp_dovecot_auth_cmd *out);

/* RFC 4954 section 4: the client's answer to a 334 challenge. */
enum smtp_dovecot_resp_result {
	SMTP_DOVECOT_RESP_DATA,       /* base64 (possibly empty): smtp_dovecot_cont() */
	SMTP_DOVECOT_RESP_CANCEL,     /* exactly "*": SMTP_DOVECOT_REPLY_ABORTED */
	SMTP_DOVECOT_RESP_BAD_BASE64, /* 535 with SMTP_DOVECOT_REASON_BAD_CONT */
	SMTP_DOVECOT_RESP_TOO_LONG,   /* longer than the limit: SMTP_DOVECOT_REPLY_RESP_LIMIT */
	SMTP_DOVECOT_RESP_RESULT_MAX,
};

const char *smtp_dovecot_resp_result_name(enum smtp_dovecot_resp_result r);

/* `line` is the response without its CRLF; `limit` is smtpd_sasl_response_limit. */
enum smtp_dovecot_resp_result smtp_dovecot_response_parse(struct mx_span line, size_t limit);

/* RFC 4648 base64 (section 4 alphabet, with padding), strict: length a multiple of 4,
 * '=' only as one or two final pad characters, zero pad bits (section 3.5), nothing
 * outside the alphabet (section 3.3). */
#define SMTP_DOVECOT_B64_LEN(n) ((((n) + 2) / 3) * 4)
/* Encode n bytes. Returns the length written (no NUL) or -ENOSPC. */
ssize_t smtp_dovecot_b64_encode(const void *in, size_t n, char *out, size_t cap);
/* Decode into out (NULL: only validate). Returns the decoded length, -EINVAL for input
 * that is not strict base64, -ENOSPC when out is too small. */
ssize_t smtp_dovecot_b64_decode(struct mx_span in, void *out, size_t cap);

/* RFC 4954 section 5: MAIL FROM's AUTH=<xtext> names the original submitter, an addr-spec
 * or "<>". Postfix keeps the raw value (made printable) as sasl_sender, "<>" as none,
 * answers a second AUTH= with SMTP_DOVECOT_REPLY_MULTIPLE_AUTH_PARAM, and accepts the
 * parameter from unauthenticated clients too (smtpd_sasl_proto.c). This decodes the xtext
 * strictly (RFC 3461 section 4: xchar is '!'..'~' but '+' and '='; hexchar is '+' and two
 * upper-case hex digits; lower case is accepted too, as Postfix's xtext_unquote does).
 * The decoded value may not hold controls or be longer than 256 (RFC 5321 4.5.3.1.3).
 * Returns 0 with out/out_len (not NUL-terminated) and *is_null for "<>", -EINVAL for a
 * bad value, -ENOSPC when out is too small. */
int smtp_dovecot_mail_auth_param(struct mx_span value, char *out, size_t cap, size_t *out_len,
				 bool *is_null);

#endif
