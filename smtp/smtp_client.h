/* The sans-I/O SMTP/LMTP client codec: commands out, replies in (RFC 5321; RFC 2033 LMTP;
 * RFC 2920 PIPELINING; RFC 1870 SIZE; RFC 6152 8BITMIME; RFC 6531 SMTPUTF8; RFC 3461 DSN;
 * RFC 3030 CHUNKING/BINARYMIME; RFC 2034/3463 enhanced status codes).
 *
 * The codec owns no socket, reads no clock and does no logging. It is what the relay uses
 * to deliver spooled mail to the next hop and what the load generator uses to drive and
 * verify sessions against a server.
 *
 * Driving a client (what a transport does):
 *
 *     smtp_client_config_defaults(&cfg); cfg.lmtp = ...;
 *     smtp_client_new(&c, &cfg);               // the greeting is awaited from the start
 *     smtp_client_ehlo(c, "relay.example");   // queued now, sent after the greeting
 *     loop:
 *         write smtp_client_output(c) bytes; smtp_client_output_done(c, sent);
 *         on readable:
 *             for (off = 0;;) {
 *                 ev = smtp_client_step(c, buf + off, len - off, &used); off += used;
 *                 if (ev.type == SMTP_CLIENT_EV_NONE) break;    // all input consumed
 *                 handle(ev);   // may queue commands, write message content...
 *             }
 *         on EOF: smtp_client_peer_closed(c), then step() until NONE;
 *         close when smtp_client_closed(c).
 *
 * Commands. The caller queues commands at any time (smtp_client_mail() and friends); the
 * codec formats each into its output buffer at once, and lets its bytes out (makes them
 * part of smtp_client_output()) only when RFC 2920 allows: without PIPELINING (not
 * offered, or cfg.pipelining off) a command goes out only when every earlier one has
 * its reply; with it, a command may follow earlier ones that await replies unless one of
 * those must end a group (RFC 2920 3.1: the greeting, EHLO/LHLO/HELO, DATA, NOOP, QUIT; a
 * BDAT chunk too, without PIPELINING). Message content goes out only after the 354 to
 * DATA. Replies are matched to commands in the order the commands went out.
 *
 * Events. Every queued command gets exactly one event (LMTP's end of data: one per
 * accepted recipient, RFC 2033 4.2), in command order: either with the server's reply, or
 * with `noreply` saying why no reply will come (SKIPPED: not sent because an earlier
 * refusal doomed it - see smtp_client_config.send_after_refusal; CLOSED: the server sent
 * 421 or closed; LOST: smtp_client_peer_closed(); ERROR: after a protocol error;
 * NONE_DUE: LMTP's BDAT LAST when no recipient was accepted, RFC 2033 4.3).
 * PROTOCOL_ERROR events come on top of those: a malformed reply (RFC 5321 4.2 grammar,
 * codes differing between lines, a line or a reply over its bound), a reply when no
 * command awaits one (unsolicited input: a reply to a command whose bytes were not all
 * reported sent through smtp_client_output_done() counts as unsolicited, since the
 * server cannot have seen it), or a reply whose class the command cannot get (3xx to
 * anything but DATA, 2xx to DATA). After a protocol error the client is in the ERROR
 * state and only hands out the remaining `noreply` events.
 *
 * A 421 reply to any command (RFC 5321 4.2.2/3.8) ends the session: its event carries the
 * 421, the commands after it get noreply CLOSED, the client is CLOSED. A QUIT reply ends
 * it too.
 *
 * Spans inside an event point into the client's own buffers and are valid until the next
 * call of smtp_client_step() or smtp_client_free(). */
#ifndef MXGATE_SMTP_CLIENT_H
#define MXGATE_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mxgate/span.h"
#include "smtp/smtp_session.h" /* enum smtp_body_type, enum smtp_xclient_attr */

/* The longest command line the codec writes, CRLF included: Postfix's line_length_limit
 * (2048), which is also what the mxgate server engine takes. RFC 5321 4.5.3.1.4 says 512,
 * and its extensions add to it (RFC 1870 2, RFC 3461 5, RFC 6531 3.4). */
#define SMTP_CLIENT_COMMAND_MAX 2048
/* Room for an RFC 3463 code "5.123.123" and its NUL. */
#define SMTP_CLIENT_ENHANCED_MAX 12

struct smtp_client;

struct smtp_client_config {
	bool lmtp;               /* LMTP (RFC 2033): LHLO, no HELO, one reply per accepted
	                            recipient after the message */
	bool pipelining;         /* pipeline when the server offers PIPELINING (default on);
	                            off: one command at a time */
	/* Off (default): a command not yet sent is not sent, and gets noreply SKIPPED, when
	 * every earlier command has its reply and they doom it: RCPT after a refused MAIL,
	 * DATA or BDAT after a refused MAIL or without an accepted recipient, BDAT after a
	 * refused BDAT (RFC 3030 2), anything but QUIT after a greeting that was not 2xx
	 * (RFC 5321 3.1). That is what happens without PIPELINING; with it the commands are
	 * usually out before the replies come. On: every command is sent (a load generator
	 * that checks the server's 503s). */
	bool send_after_refusal;
	size_t output_max;       /* output buffer bound, bytes (default 65536, at least 4096):
	                            the buffer starts small and doubles up to it */
	size_t line_max;         /* reply line bytes kept (default 2048, 16..65536): a longer
	                            line keeps its start, the rest is dropped (truncated) */
	size_t line_hard_max;    /* a reply line longer than this is a protocol error
	                            (default 65536, line_max..16 MiB) */
	size_t text_max;         /* reply text kept for an event (default 1024, 64..65536) */
	unsigned reply_lines_max; /* lines of one reply (default 128, 1..10000) */
	unsigned queue_max;      /* commands queued and awaiting their event (default 256,
	                            4..65536) */
	unsigned inflight_max;   /* commands out awaiting replies at once (0 = queue_max) */
	unsigned rcpt_max;       /* recipients in one transaction (default 1000, 1..1048576) */
};

/* Fill *cfg with the defaults above (SMTP, pipelining on). */
void smtp_client_config_defaults(struct smtp_client_config *cfg);

enum smtp_client_state {
	SMTP_CLIENT_ST_COMMANDS,  /* commands may be queued */
	SMTP_CLIENT_ST_DATA_WAIT, /* DATA is queued or out: its reply decides what follows */
	SMTP_CLIENT_ST_CONTENT,   /* after 354: message content, until content_end() */
	SMTP_CLIENT_ST_CHUNK,     /* the octets of a BDAT chunk */
	SMTP_CLIENT_ST_QUIT,      /* QUIT is queued: nothing more can be */
	SMTP_CLIENT_ST_CLOSED,    /* the session is over (QUIT answered, 421, peer closed) */
	SMTP_CLIENT_ST_ERROR,     /* a protocol error ended the session */
	SMTP_CLIENT_ST_MAX,
};

const char *smtp_client_state_name(enum smtp_client_state st);

/* The commands a reply can answer. */
enum smtp_client_cmd {
	SMTP_CLIENT_CMD_NONE,     /* unsolicited input */
	SMTP_CLIENT_CMD_GREETING, /* the server's greeting (RFC 5321 4.3.1) */
	SMTP_CLIENT_CMD_EHLO,
	SMTP_CLIENT_CMD_LHLO,
	SMTP_CLIENT_CMD_HELO,
	SMTP_CLIENT_CMD_MAIL,
	SMTP_CLIENT_CMD_RCPT,
	SMTP_CLIENT_CMD_DATA,
	SMTP_CLIENT_CMD_DOT,      /* the end of the message content (".") */
	SMTP_CLIENT_CMD_BDAT,     /* a BDAT chunk but the last */
	SMTP_CLIENT_CMD_BDAT_LAST,
	SMTP_CLIENT_CMD_RSET,
	SMTP_CLIENT_CMD_NOOP,
	SMTP_CLIENT_CMD_QUIT,
	SMTP_CLIENT_CMD_MAX,
};

/* "EHLO", "MAIL", "." (DOT), "BDAT LAST"...; "GREETING", "NONE". */
const char *smtp_client_cmd_name(enum smtp_client_cmd cmd);

enum smtp_client_event_type {
	SMTP_CLIENT_EV_NONE,           /* all given input consumed; nothing to report */
	SMTP_CLIENT_EV_GREETING,
	SMTP_CLIENT_EV_HELO,           /* EHLO/LHLO/HELO; smtp_client_caps() is updated */
	SMTP_CLIENT_EV_MAIL,
	SMTP_CLIENT_EV_RCPT,           /* one per RCPT, with its recipient index */
	SMTP_CLIENT_EV_DATA,           /* 354: write the content now; or the refusal */
	SMTP_CLIENT_EV_BDAT,           /* the reply to a BDAT chunk that is not the last */
	SMTP_CLIENT_EV_MESSAGE,        /* end of data or BDAT LAST: SMTP one, LMTP one per
	                                  accepted recipient in recipient order (RFC 2033
	                                  4.2, 4.3) */
	SMTP_CLIENT_EV_RSET,
	SMTP_CLIENT_EV_NOOP,
	SMTP_CLIENT_EV_QUIT,
	SMTP_CLIENT_EV_PROTOCOL_ERROR, /* see `error`; the client is in the ERROR state */
	SMTP_CLIENT_EV_MAX,
};

const char *smtp_client_event_name(enum smtp_client_event_type t);

/* Why a command gets no reply. */
enum smtp_client_noreply {
	SMTP_CLIENT_NOREPLY_NONE,    /* it got one */
	SMTP_CLIENT_NOREPLY_SKIPPED, /* never sent: an earlier refusal doomed it */
	SMTP_CLIENT_NOREPLY_CLOSED,  /* the server ended the session (421, QUIT's reply) */
	SMTP_CLIENT_NOREPLY_LOST,    /* the connection closed first (peer_closed()) */
	SMTP_CLIENT_NOREPLY_ERROR,   /* a protocol error ended the session first */
	SMTP_CLIENT_NOREPLY_NONE_DUE, /* sent, and the protocol owes no reply: LMTP's BDAT
	                                 LAST without an accepted recipient (RFC 2033 4.3) */
	SMTP_CLIENT_NOREPLY_MAX,
};

const char *smtp_client_noreply_name(enum smtp_client_noreply n);

enum smtp_client_error {
	SMTP_CLIENT_ERR_NONE,
	SMTP_CLIENT_ERR_MALFORMED,       /* a line is no reply line (RFC 5321 4.2) */
	SMTP_CLIENT_ERR_CODE_MISMATCH,   /* a line of a multi-line reply has another code */
	SMTP_CLIENT_ERR_TOO_MANY_LINES,  /* more than reply_lines_max lines */
	SMTP_CLIENT_ERR_LINE_TOO_LONG,   /* a line over line_hard_max */
	SMTP_CLIENT_ERR_UNSOLICITED,     /* a reply when no command (fully sent) awaits one */
	SMTP_CLIENT_ERR_UNEXPECTED_CODE, /* 3xx to a command but DATA, 2xx to DATA */
	SMTP_CLIENT_ERR_MAX,
};

const char *smtp_client_error_name(enum smtp_client_error e);

/* SASL mechanisms an EHLO AUTH line may offer (RFC 4954); others are ignored. */
enum smtp_client_auth_mech {
	SMTP_CLIENT_AUTH_PLAIN,
	SMTP_CLIENT_AUTH_LOGIN,
	SMTP_CLIENT_AUTH_CRAM_MD5,
	SMTP_CLIENT_AUTH_DIGEST_MD5,
	SMTP_CLIENT_AUTH_SCRAM_SHA_1,
	SMTP_CLIENT_AUTH_SCRAM_SHA_256,
	SMTP_CLIENT_AUTH_XOAUTH2,
	SMTP_CLIENT_AUTH_OAUTHBEARER,
	SMTP_CLIENT_AUTH_EXTERNAL,
	SMTP_CLIENT_AUTH_GSSAPI,
	SMTP_CLIENT_AUTH_NTLM,
	SMTP_CLIENT_AUTH_MECH_MAX,
};

/* The mechanism's name as EHLO spells it ("CRAM-MD5"). */
const char *smtp_client_auth_mech_name(enum smtp_client_auth_mech m);

/* What the server offered in its last successful EHLO/LHLO reply (RFC 5321 4.1.1.1;
 * keywords case-insensitive). All false after HELO, a refused EHLO, or before EHLO. */
struct smtp_client_caps {
	bool esmtp;               /* the last EHLO/LHLO succeeded */
	bool pipelining;          /* RFC 2920 */
	bool size;                /* RFC 1870: SIZE= may be given */
	uint64_t size_limit;      /* SIZE's number; 0 = no limit stated */
	bool eightbitmime;        /* RFC 6152 */
	bool binarymime;          /* RFC 3030 */
	bool smtputf8;            /* RFC 6531 */
	bool dsn;                 /* RFC 3461 */
	bool chunking;            /* RFC 3030 */
	bool enhancedstatuscodes; /* RFC 2034 */
	bool starttls;            /* RFC 3207 */
	bool auth;                /* RFC 4954 (also the pre-standard "AUTH=") */
	uint32_t auth_mechs;      /* bit (1u << enum smtp_client_auth_mech) per mechanism */
	bool xclient;             /* Postfix XCLIENT_README */
	uint32_t xclient_attrs;   /* bit (1u << enum smtp_xclient_attr) per attribute */
};

struct smtp_client_event {
	enum smtp_client_event_type type;
	enum smtp_client_cmd cmd;         /* what this answers; NONE for unsolicited input */
	enum smtp_client_noreply noreply; /* NONE: `code` and the rest are the reply */
	enum smtp_client_error error;     /* PROTOCOL_ERROR: what was wrong */
	int rcpt;                /* RCPT, and LMTP MESSAGE: the recipient's index in its
	                            transaction (the value smtp_client_rcpt() returned); -1
	                            otherwise */
	unsigned rcpt_accepted;  /* DATA, BDAT, MESSAGE: recipients of the transaction the
	                            server accepted */
	uint16_t code;           /* the reply code; 0 without one (PROTOCOL_ERROR: the code
	                            of what was read, 0 when not even that parsed) */
	char enhanced[SMTP_CLIENT_ENHANCED_MAX]; /* RFC 3463 "x.y.z" from the start of the
	                            first line when present and its class is the code's first
	                            digit (RFC 2034 3); "" otherwise */
	/* The text after "NNN " / "NNN-" (the enhanced code included), lines joined by one
	 * space, as Postfix logs replies; control characters are '?' (a tab a space), 8-bit
	 * bytes kept. At most text_max bytes. For MALFORMED and CODE_MISMATCH errors: the
	 * offending line, whole, neutralized alike. */
	struct mx_span text;
	unsigned lines;          /* lines of the reply */
	bool truncated;          /* a line over line_max, or the text over text_max, was cut */
};

/* The MAIL FROM command (RFC 5321 4.1.1.2). Parameters that need an extension go out
 * only when the server offered it: SIZE= (RFC 1870), BODY= (RFC 6152: 7BIT and 8BITMIME
 * need 8BITMIME; BINARYMIME needs BINARYMIME and CHUNKING, or the call fails), RET= and
 * ENVID= (RFC 3461, DSN). SMTPUTF8 that is not offered fails the call (RFC 6531 3.4: such
 * mail must not go to this server). Strings are copied into the command at once. */
struct smtp_client_mail {
	const char *sender;      /* the reverse-path without <>; "" or NULL: the null sender */
	uint64_t size;           /* SIZE=n; 0 = omit. Over the server's limit: -EMSGSIZE */
	enum smtp_body_type body; /* SMTP_BODY_UNSPECIFIED = no BODY= */
	bool smtputf8;
	const char *ret;         /* "FULL" / "HDRS", NULL = omit */
	const char *envid;       /* xtext, NULL = omit */
	const char *extra;       /* further parameters as they are ("X=1 Y"), NULL = none;
	                            sent whatever the server offered */
};

/* RCPT TO (RFC 5321 4.1.1.3); NOTIFY= and ORCPT= (RFC 3461 4.1, 4.2) go out only when the
 * server offered DSN. */
struct smtp_client_rcpt {
	const char *addr;        /* the forward-path without <> */
	const char *notify;      /* "SUCCESS,FAILURE", "NEVER"...; NULL = omit */
	const char *orcpt;       /* "rfc822;xtext"; NULL = omit */
	const char *extra;       /* further parameters as they are, NULL = none */
};

/* Allocate a client (one allocation; the output buffer is taken at the first command
 * and grows up to cfg->output_max). The config is copied. The greeting is awaited from
 * the start. Returns 0, -EINVAL (a bound out of range) or -ENOMEM. */
int smtp_client_new(struct smtp_client **out, const struct smtp_client_config *cfg);
void smtp_client_free(struct smtp_client *c);

/* Queue commands. Each returns 0 (smtp_client_rcpt(): the recipient's index, counted from
 * 0 after each smtp_client_mail()), or:
 *   -EPIPE      the session is over or ending (CLOSED, ERROR, QUIT queued)
 *   -EBUSY      message content is due first (DATA queued, 354 received, BDAT chunk)
 *   -ENOBUFS    the command queue or the output buffer is full: drain the output, feed
 *               replies, and try again
 *   -EAGAIN     MAIL/RCPT/BDAT while an EHLO/LHLO/HELO awaits its reply: what goes into
 *               them depends on what the server offers
 *   -EINVAL     a bad argument (a control character in an address or a name, a space
 *               or '=' in a parameter value, HELO with LMTP, DATA after BODY=BINARYMIME)
 *   -E2BIG      the command line would exceed SMTP_CLIENT_COMMAND_MAX, or too many
 *               recipients (rcpt_max)
 *   -EOPNOTSUPP SMTPUTF8, BINARYMIME or BDAT that the server did not offer
 *   -EMSGSIZE   SIZE= beyond the server's SIZE limit (RFC 1870 6.1)
 *   -ECANCELED  BDAT after the server refused a chunk of this message (RFC 3030 2) */
int smtp_client_ehlo(struct smtp_client *c, const char *name); /* EHLO, LHLO with LMTP */
int smtp_client_helo(struct smtp_client *c, const char *name); /* RFC 5321 4.1.4 fallback */
int smtp_client_mail(struct smtp_client *c, const struct smtp_client_mail *m);
int smtp_client_rcpt(struct smtp_client *c, const struct smtp_client_rcpt *r);
int smtp_client_data(struct smtp_client *c);
int smtp_client_rset(struct smtp_client *c);
int smtp_client_noop(struct smtp_client *c);
int smtp_client_quit(struct smtp_client *c);

/* BDAT (RFC 3030): queue "BDAT size[ LAST]"; then exactly `size` octets follow through
 * smtp_client_content(), sent as they are (no dot-stuffing, no line-end change: the
 * caller gives CRLF lines, or binary with BINARYMIME). */
int smtp_client_bdat(struct smtp_client *c, uint64_t size, bool last);

/* Message content, in pieces of any size, after the DATA event with 354 (state CONTENT)
 * or after smtp_client_bdat() (state CHUNK). Returns how many of the n bytes were taken
 * (fewer when the output buffer is full: drain it and call again with the rest), or
 * -EPIPE (session over), -EINVAL (not in CONTENT or CHUNK).
 *
 * DATA content (RFC 5321 4.5.2, 2.3.8): a line starting with '.' gets another '.'; CRLF
 * stays, and a bare LF or a bare CR each become CRLF (so "a\r\r\nb" is two line ends, an
 * empty line between); no byte is held back, a piece may end anywhere (inside a CRLF,
 * after a leading dot). BDAT: bytes are copied as they are, up to the chunk's size. */
ssize_t smtp_client_content(struct smtp_client *c, const char *p, size_t n);

/* End DATA content: complete a last line that lacks its line end, then ".\r\n" (RFC 5321
 * 4.1.1.4). Returns 0, -ENOBUFS (drain the output and call again), -EPIPE, -EINVAL (not
 * in CONTENT). A DATA event with 354 but no accepted recipient (a server that should
 * have refused DATA, RFC 2920 3.1) is best answered with this at once: the empty
 * message is refused or delivered to nobody. */
int smtp_client_content_end(struct smtp_client *c);

/* Feed server bytes. Consumes at most len bytes (*used says how many) and returns the
 * next event. SMTP_CLIENT_EV_NONE means all len bytes were used and nothing is left to
 * report; any other event may leave input unused (feed it again). An incomplete line is
 * kept inside the client (up to line_max bytes of it). */
struct smtp_client_event smtp_client_step(struct smtp_client *c, const char *buf, size_t len,
					  size_t *used);

/* The connection was closed by the peer (EOF or reset): the session is CLOSED and every
 * command still without a reply gets noreply LOST (from the next step()). */
void smtp_client_peer_closed(struct smtp_client *c);

/* Bytes that may be sent now, and how many were sent. After CLOSED or ERROR there are
 * none (what was not sent is dropped). */
struct mx_span smtp_client_output(const struct smtp_client *c);
void smtp_client_output_done(struct smtp_client *c, size_t n);

enum smtp_client_state smtp_client_state(const struct smtp_client *c);

/* The state is CLOSED or ERROR: close the connection (after the remaining events). */
bool smtp_client_closed(const struct smtp_client *c);

/* What the server offered (see struct smtp_client_caps). */
const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c);

/* Commands are pipelined now: the server offered PIPELINING and cfg.pipelining is on. */
bool smtp_client_pipelining(const struct smtp_client *c);

/* Commands out awaiting their reply (the greeting counts until it comes). */
unsigned smtp_client_inflight(const struct smtp_client *c);

/* The command whose reply comes next (the oldest one out), NONE when no reply is awaited:
 * what a transport picks its timeout by (Postfix's smtp_helo_timeout, smtp_mail_timeout,
 * smtp_rcpt_timeout, smtp_data_init_timeout, smtp_data_done_timeout...) and names in "lost
 * connection while ..." texts. In CONTENT and CHUNK the client waits for the caller, not
 * for a reply: NONE (the transport's data_xfer timeout applies to its sending). */
enum smtp_client_cmd smtp_client_awaiting(const struct smtp_client *c);

/* Commands queued whose event has not been handed out yet (out or not). */
unsigned smtp_client_pending(const struct smtp_client *c);

/* Safe to reuse for another transaction (a cached connection): the greeting and an
 * EHLO/LHLO/HELO succeeded, no transaction is open (no accepted MAIL without its end of
 * data or an RSET), nothing is queued or unsent, state COMMANDS. */
bool smtp_client_idle(const struct smtp_client *c);

/* Bytes of memory the client holds (object and output buffer). */
size_t smtp_client_memory(const struct smtp_client *c);

#endif
