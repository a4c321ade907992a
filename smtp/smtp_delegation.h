/* Postfix's policy delegation protocol (SMTPD_POLICY_README; check_policy_service), the
 * client side, sans-I/O: a request struct to bytes, reply bytes to an action, and the
 * action classified as smtpd's check_table_result() reads it.
 *
 * Request: "name=value\n" lines and an empty line. The attributes, their order and the
 * values sent for what is not known are those of Debian's Postfix 3.7.11 (smtpd_check.c
 * check_policy_service(), smtpd_peer.c): client_address, client_name, reverse_client_name,
 * client_port, server_address and server_port are "unknown" when unknown; every other
 * string is empty; numbers are 0. Postfix 3.8 added compatibility_level and mail_version at
 * the end; they are sent only when set (Postfix 3.7 never sends them; policy servers ignore
 * attributes they do not know). Postfix's attr_print_plain() escapes nothing, so a value
 * with a newline would end its line early and inject attributes (Postfix relies on its
 * sources: SMTP command lines hold no LF, certificate names are xtext-encoded). This
 * encoder refuses a value holding LF, CR or NUL (-EINVAL): the caller treats that like a
 * failed query (smtpd_policy_service_default_action). Values are bounded
 * (SMTP_DELEGATION_VALUE_MAX).
 *
 * Reply: "name=value\n" lines up to an empty line; "action" is the result. As in Postfix's
 * attr_scan_plain(): the value is everything after the first '=' (it may hold '=' and
 * blanks), the first action wins (later ones are counted), other attributes are ignored,
 * and a reply without action is a failure. Stricter than Postfix, for a broken or hostile
 * server: a non-empty line without '=' (Postfix skips it, unless it is "action" alone) or
 * with an empty name, a NUL or CR anywhere (Postfix would keep the CR in the action and then
 * wait for an empty line that, with CRLF line ends, never comes), a line longer than
 * SMTP_DELEGATION_LINE_MAX and more than SMTP_DELEGATION_LINES_MAX lines (Postfix has no
 * bound) are errors. With SMTP_DELEGATION_UTF8 (smtputf8_enable = yes, the default) an
 * action that is not valid UTF-8 is an error too, as Postfix's valid_utf8_action() makes
 * it. Every error is what smtpd answers with smtpd_policy_service_default_action
 * ("451 4.3.5 Server configuration problem"); the caller should also close the connection,
 * since the stream may be out of step.
 *
 * The request bytes, the reply handling and the classification below were checked against
 * Debian's Postfix 3.7.11 smtpd on loopback with a scripted policy server: a bare "550" or
 * "450" and an empty or blank action were accepted (250); "5.7.2", "4.7.1 Try later",
 * "550 " (code, blank, no text), "250 fine" and "OK:" gave 451 4.3.5 Server configuration
 * error; a reply without action, a lone "action" line, a CRLF reply and a non-UTF-8 action
 * gave the default action; "554 4.7.2 mixed" gave 554 5.7.2. */
#ifndef MXGATE_SMTP_SMTP_DELEGATION_H
#define MXGATE_SMTP_SMTP_DELEGATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/span.h"

#define SMTP_DELEGATION_VALUE_MAX 4096 /* one request value (> line_length_limit 2048) */
#define SMTP_DELEGATION_LINE_MAX 4096  /* one reply line, "name=value" without the LF */
#define SMTP_DELEGATION_LINES_MAX 64   /* attribute lines in one reply */
#define SMTP_DELEGATION_ACTION_MAX (SMTP_DELEGATION_LINE_MAX - 7) /* after "action=" */
#define SMTP_DELEGATION_NAME_MAX 32    /* reply attribute name octets kept (longer names are
                                          never "action" and are skipped) */

/* protocol_state: where smtpd is (state->where). BDAT is sent as DATA, as Postfix does. */
enum smtp_delegation_state {
	SMTP_DELEGATION_CONNECT,
	SMTP_DELEGATION_EHLO,
	SMTP_DELEGATION_HELO,
	SMTP_DELEGATION_MAIL,
	SMTP_DELEGATION_RCPT,
	SMTP_DELEGATION_DATA,
	SMTP_DELEGATION_END_OF_MESSAGE,
	SMTP_DELEGATION_VRFY,
	SMTP_DELEGATION_ETRN,
	SMTP_DELEGATION_STATE_MAX
};

/* "CONNECT", "EHLO", ..., "END-OF-MESSAGE": the value sent. */
const char *smtp_delegation_state_name(enum smtp_delegation_state s);

/* One query. Strings are borrowed for the encode call; NULL means "not known" and sends
 * what Postfix sends then (in the comments). */
struct smtp_delegation_request {
	enum smtp_delegation_state protocol_state;
	const char *protocol_name;       /* "SMTP" or "ESMTP"; NULL: "SMTP" (before EHLO) */
	const char *client_address;      /* NULL: "unknown" */
	const char *client_name;         /* verified name; NULL: "unknown" */
	int32_t client_port;             /* < 0: "unknown" */
	const char *reverse_client_name; /* NULL: "unknown" */
	const char *server_address;      /* NULL: "unknown" */
	int32_t server_port;             /* < 0: "unknown" */
	const char *helo_name;           /* NULL: "" */
	const char *sender;              /* NULL or the null sender: "" */
	const char *recipient;           /* NULL: "" */
	unsigned recipient_count;        /* sent as given only at DATA and END-OF-MESSAGE;
	                                    Postfix sends 0 at every other state */
	const char *queue_id;            /* NULL: "" */
	const char *instance;            /* per-transaction ID; NULL: "" */
	uint64_t size;                   /* SIZE= or the message size; 0 when unknown */
	const char *etrn_domain;         /* NULL: "" */
	bool stress;                     /* "yes", else "" */
	const char *sasl_method;         /* NULL: "" */
	const char *sasl_username;       /* NULL: "" */
	const char *sasl_sender;         /* NULL: "" */
	const char *ccert_subject;       /* xtext-encoded CN of a trusted client cert, or NULL */
	const char *ccert_issuer;        /* likewise */
	const char *ccert_fingerprint;   /* NULL: "" */
	const char *ccert_pubkey_fingerprint; /* NULL: "" */
	const char *encryption_protocol; /* "TLSv1.3"; NULL (plaintext): "" */
	const char *encryption_cipher;   /* NULL: "" */
	unsigned encryption_keysize;     /* 0 in plaintext */
	const char *policy_context;      /* the service's policy_context; NULL: "" */
	const char *compatibility_level; /* Postfix 3.8+; NULL: not sent */
	const char *mail_version;        /* Postfix 3.8+; NULL: not sent */
};

/* Zero *r, with both ports unknown (-1) and protocol_state CONNECT. */
void smtp_delegation_request_init(struct smtp_delegation_request *r);

/* Write the request into buf. Returns 0 with *len set; -ENOSPC (then *len is the size
 * needed; call again with a larger buffer); -EINVAL for a value with LF, CR or NUL or a
 * bad protocol_state; -EMSGSIZE for a value over SMTP_DELEGATION_VALUE_MAX. buf may be
 * NULL with cap 0 to learn the size. */
int smtp_delegation_request_encode(const struct smtp_delegation_request *r, char *buf,
				   size_t cap, size_t *len);

/* ---- Replies ---- */

#define SMTP_DELEGATION_UTF8 0x1u /* the action must be valid UTF-8 (smtputf8_enable) */

enum smtp_delegation_reader_state {
	SMTP_DELEGATION_READ_NAME,  /* in a line's name, or at a line's start */
	SMTP_DELEGATION_READ_VALUE, /* after the '=' */
	SMTP_DELEGATION_READ_DONE,  /* the empty line was read: the reply is complete */
	SMTP_DELEGATION_READ_FAILED,
	SMTP_DELEGATION_READ_STATE_MAX
};

const char *smtp_delegation_reader_state_name(enum smtp_delegation_reader_state s);

/* One reply being read (about 4 KiB; one per connection, init before each request). */
struct smtp_delegation_reader {
	enum smtp_delegation_reader_state state;
	unsigned flags;
	int error;                 /* FAILED: the negative errno returned */
	unsigned lines;            /* attribute lines read */
	size_t line_len;           /* octets of the current line so far */
	size_t name_len;           /* octets of the current name (only the first
	                              SMTP_DELEGATION_NAME_MAX kept) */
	char name[SMTP_DELEGATION_NAME_MAX];
	bool capture;              /* this line's value is the action */
	bool have_action;
	unsigned duplicate_actions; /* later action lines, ignored as Postfix ignores them */
	unsigned ignored;          /* other attributes */
	size_t trailing;           /* DONE: octets after the empty line in the last feed call */
	size_t action_len;
	char action[SMTP_DELEGATION_ACTION_MAX + 1]; /* NUL-terminated */
};

void smtp_delegation_reader_init(struct smtp_delegation_reader *r, unsigned flags);

/* Consume reply bytes. Returns:
 *   0   need more input (all len bytes used);
 *   1   the reply is complete: *used bytes (up to and including the empty line) were taken;
 *       r->trailing = len - *used octets followed it in this input. A server that sends
 *       anything after its reply is broken: use the action, then close the connection
 *       (Postfix would read those bytes as the start of its next reply);
 *   -EBADMSG   a malformed line (see the file comment), or an action that is not UTF-8
 *              under SMTP_DELEGATION_UTF8;
 *   -EMSGSIZE  a line over SMTP_DELEGATION_LINE_MAX, or more than SMTP_DELEGATION_LINES_MAX
 *              lines;
 *   -ENOMSG    the reply ended (empty line) without an action.
 * After an error the reader stays failed and returns it again. Must not be called once
 * complete (init it for the next request). Any split of the input gives the same result. */
int smtp_delegation_reader_feed(struct smtp_delegation_reader *r, const char *data,
				size_t len, size_t *used);

/* The action of a complete reply, as the server sent it (may be empty). */
struct mx_span smtp_delegation_reader_action(const struct smtp_delegation_reader *r);

/* ---- What an action means (smtpd_check.c check_table_result(), Postfix 3.7) ---- */

enum smtp_delegation_action_kind {
	SMTP_DELEGATION_ACTION_OK,            /* OK or RELAY (text ignored); also an all-numeric
	                                         action (Postfix: an out-of-band time stamp, so a
	                                         bare "550" PERMITS) and an empty one (no word at
	                                         all: Postfix warns "has empty value" and permits) */
	SMTP_DELEGATION_ACTION_DUNNO,         /* text ignored */
	SMTP_DELEGATION_ACTION_REJECT,        /* access_map_reject_code, dsn (5.7.1), text */
	SMTP_DELEGATION_ACTION_DEFER,         /* access_map_defer_code, dsn (4.7.1), text */
	SMTP_DELEGATION_ACTION_DEFER_IF_REJECT, /* access_map_defer_code, dsn (4.7.1), text */
	SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT, /* likewise */
	SMTP_DELEGATION_ACTION_CODE,          /* "4NN text" / "5NN text": code, dsn, text; a code
	                                         without text is not this (see OK, RESTRICTIONS) */
	SMTP_DELEGATION_ACTION_DISCARD,       /* args: optional text */
	SMTP_DELEGATION_ACTION_HOLD,          /* args: optional text */
	SMTP_DELEGATION_ACTION_FILTER,        /* args: transport:destination (else ignored) */
	SMTP_DELEGATION_ACTION_REDIRECT,      /* args: user@domain (else ignored) */
	SMTP_DELEGATION_ACTION_BCC,           /* args: user@domain (else ignored) */
	SMTP_DELEGATION_ACTION_PREPEND,       /* args: "header: text" (else ignored) */
	SMTP_DELEGATION_ACTION_INFO,          /* args: optional text to log; then DUNNO */
	SMTP_DELEGATION_ACTION_WARN,          /* likewise */
	SMTP_DELEGATION_ACTION_HANGUP,        /* Postfix's unsupported test feature: drop the
	                                         connection without a reply */
	SMTP_DELEGATION_ACTION_LOOKUP_TABLE,  /* holds ':' (a type:table): Postfix answers
	                                         451 4.3.5 Server configuration error */
	SMTP_DELEGATION_ACTION_RESTRICTIONS,  /* anything else: evaluated as a restriction list
	                                         (restriction and class names, blank- or comma-
	                                         separated). A word that is neither, such as a
	                                         bare "5.7.2", "4.7.1 text" or "550 " (a code,
	                                         a blank, no text), gets 451 4.3.5 Server
	                                         configuration error */
	SMTP_DELEGATION_ACTION_KIND_MAX
};

const char *smtp_delegation_action_kind_name(enum smtp_delegation_action_kind k);

struct smtp_delegation_action {
	enum smtp_delegation_action_kind kind;
	struct mx_span word;  /* the first word, up to a blank or tab (may be empty) */
	struct mx_span args;  /* what follows the word and its blanks */
	/* REJECT, DEFER, DEFER_IF_*, CODE: Postfix's dsn_split() of args: a leading RFC 3463
	 * code (X.Y.Z, X in 2 4 5) or the default, and the text after it (empty: the caller
	 * writes default_text). For CODE, dsn's class follows the code's first digit, as
	 * smtpd_check_reject() forces it; for the others it is as given (the caller's code is
	 * access_map_*_code, and the same rule applies once it is known). A code with nothing
	 * after it ("450 4.7.1", "REJECT 5.7.2") has an empty text: Postfix 3.7.11 reads one
	 * octet past the string there and shows stale bytes (seen: "...rejected: later"), later
	 * Postfix versions the default text, as here. */
	unsigned code;        /* CODE only: 400..599 */
	bool disconnect;      /* CODE 421 or 521: smtpd closes the session after the reply */
	char dsn[16];
	struct mx_span text;
	const char *default_text; /* "Access denied" (REJECT, DEFER, CODE) or "Service
	                             unavailable" (DEFER_IF_*); "" otherwise */
	bool numeric;         /* OK because the action is all digits */
	bool empty;           /* OK because the action has no word */
};

/* Classify an action (any bytes; spans in *out point into it). Never fails. */
void smtp_delegation_action_classify(struct mx_span action, struct smtp_delegation_action *out);

#endif
