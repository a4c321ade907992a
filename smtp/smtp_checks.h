/* Applying header_checks, mime_header_checks, nested_header_checks and body_checks to a message
 * as it streams in (Postfix cleanup(8), cleanup_message.c, header_checks(5)), sans-I/O: the
 * caller feeds the engine's SMTP_EV_HEADER / SMTP_EV_HEADERS_END / SMTP_EV_BODY events and gets
 *  - the bytes to store, through ops->emit (headers deleted, replaced, prepended as the
 *    actions say; CRLF line ends);
 *  - log events through ops->log (no logging here; smtp_checks_log_format() builds Postfix's
 *    line "QID: warning: header Subject: x from host[addr]; from=<s> to=<r> proto=ESMTP
 *    helo=<h>: text");
 *  - a verdict at the end of the message (smtp_checks_end()).
 *
 * What goes to which set, as Postfix's mime_state and cleanup_header_callback():
 *  - top-level headers -> header_checks, except the MIME headers (Content-*, MIME-Version)
 *    which go to mime_header_checks, at every level;
 *  - headers of the parts of a multipart (RFC 2046 5.1 boundaries, nested up to
 *    SMTP_CHECKS_MIME_DEPTH) -> mime_header_checks;
 *  - headers of a message/rfc822 body (top-level or part) -> nested_header_checks;
 *  - body lines (boundary lines and the empty line that ends each header block included,
 *    as postmap -b shows) -> body_checks while the line starts before
 *    body_checks_size_limit bytes of the current body segment; a line longer than
 *    line_length_limit is checked in pieces of that size, as smtpd(8) hands it to cleanup.
 * mime_header_checks and nested_header_checks default to $header_checks: the caller passes
 * the same set for them when they are not configured. A NULL set means no checks.
 *
 * Actions (cleanup_act()): REJECT, DISCARD, REDIRECT and PASS stop all inspection of the
 * message (the rest is stored as it comes); HOLD counts once; FILTER: the last one wins;
 * BCC: up to SMTP_CHECKS_BCC_MAX; DUNNO/OK: nothing; unknown words and malformed arguments
 * (REDIRECT/BCC without '@', FILTER without ':', PREPEND/REPLACE of a header that is not
 * "name: value", either without text) are reported as a "warning" log event with a NULL
 * content and change nothing, as Postfix warns and goes on.
 *
 * Memory: smtp_checks_new() allocates a line buffer of line_length_limit; the buffers for a
 * header (the unfolded subject, and a MIME part's raw header) grow by doubling as long headers
 * need, up to header_size_limit (twice that for the raw form), and are kept for the next
 * message. Nothing is allocated per byte. */
#ifndef MXGATE_SMTP_SMTP_CHECKS_H
#define MXGATE_SMTP_SMTP_CHECKS_H

#include <stdbool.h>
#include <stddef.h>

#include "tables/checks.h"

#define SMTP_CHECKS_MIME_DEPTH 32u /* multipart nesting followed; deeper is plain body */
#define SMTP_CHECKS_BOUNDARY_MAX 200u
#define SMTP_CHECKS_BCC_MAX 16u

enum smtp_checks_class {
	SMTP_CHECKS_HEADER,        /* header_checks */
	SMTP_CHECKS_MIME_HEADER,   /* mime_header_checks */
	SMTP_CHECKS_NESTED_HEADER, /* nested_header_checks */
	SMTP_CHECKS_BODY,          /* body_checks */
	SMTP_CHECKS_CLASS_MAX,
};
const char *smtp_checks_class_name(enum smtp_checks_class c);

struct smtp_checks_config {
	const struct checks *set[SMTP_CHECKS_CLASS_MAX];
	size_t body_checks_size_limit; /* 51200; 0 = no limit (Postfix's meaning of 0) */
	size_t line_length_limit;      /* 2048 */
	size_t header_size_limit;      /* 102400: a longer header is checked truncated */
};

/* One log event. action is Postfix's word: "reject", "warning", "info", "hold", "discard",
 * "filter", "redirect", "bcc", "prepend", "replace", "strip", "pass"; class "header" or
 * "body"; content the inspected line (first 200 bytes at most, inner newlines kept), NULL for
 * a configuration warning (then text says what is wrong). */
struct smtp_checks_log {
	const char *action;
	const char *class;
	const char *content;
	size_t content_len;
	const char *text;
	const struct checks_result *rule; /* the rule that acted */
};

struct smtp_checks_ops {
	/* Bytes to store. Returns 0 or a negative errno (which smtp_checks_* then returns). */
	int (*emit)(void *ctx, const char *p, size_t n);
	void (*log)(void *ctx, const struct smtp_checks_log *ev); /* may be NULL */
	/* Every rule hit, before it acts (tracing and tests; may be NULL). */
	void (*lookup)(void *ctx, enum smtp_checks_class cls, const char *subject, size_t len,
		       const struct checks_result *res);
};

enum smtp_checks_outcome {
	SMTP_CHECKS_ACCEPT,
	SMTP_CHECKS_REJECT,   /* reply with code and reply text */
	SMTP_CHECKS_DISCARD,  /* answer 250, store nothing */
	SMTP_CHECKS_TEMPFAIL, /* a lookup failed: 451 4.3.0, as cleanup's write error */
	SMTP_CHECKS_OUTCOME_MAX,
};
const char *smtp_checks_outcome_name(enum smtp_checks_outcome o);

struct smtp_checks_verdict {
	enum smtp_checks_outcome outcome;
	int code;            /* REJECT: 550 (451 when the text's DSN starts with 4); TEMPFAIL 451 */
	const char *reply;   /* "5.7.1 text" (without the code), for REJECT/TEMPFAIL */
	bool hold;
	const char *hold_reason; /* the HOLD text ("" when none) */
	const char *redirect;    /* NULL or user@domain */
	const char *filter;      /* NULL or transport:destination */
	const char *bcc[SMTP_CHECKS_BCC_MAX];
	unsigned nbcc;
};

struct smtp_checks;

/* scratch: the worker thread's checks scratch, grown (checks_scratch_alloc) for every set in
 * cfg. Returns 0 and *out, -EINVAL (bad limits), -ENOMEM. */
int smtp_checks_new(const struct smtp_checks_config *cfg, struct checks_scratch *scratch,
		    const struct smtp_checks_ops *ops, void *ctx, struct smtp_checks **out);
void smtp_checks_free(struct smtp_checks *m);
/* Make m, from smtp_checks_new() for any configuration, as smtp_checks_new() would have made
 * it for cfg, scratch, ops and ctx, keeping its buffers where their bounds allow: a worker
 * keeps objects of messages that ended for the next ones instead of allocating about 30 KB
 * per message (and the allocator's page faults). Call smtp_checks_begin() next. Returns 0,
 * -EINVAL (bad limits; m is unchanged) or -ENOMEM (m stays valid for its old cfg). */
int smtp_checks_rebind(struct smtp_checks *m, const struct smtp_checks_config *cfg,
		       struct checks_scratch *scratch, const struct smtp_checks_ops *ops,
		       void *ctx);

/* Start a message (also after an aborted one). */
void smtp_checks_begin(struct smtp_checks *m);
/* One top-level logical header as SMTP_EV_HEADER gives it ("Name: v\r\n\tmore\r\n"). */
int smtp_checks_header(struct smtp_checks *m, const char *p, size_t n);
/* SMTP_EV_HEADERS_END. */
int smtp_checks_headers_end(struct smtp_checks *m);
/* A piece of body as SMTP_EV_BODY gives it (it begins with the empty line that ends the
 * headers, when there is one); any split. */
int smtp_checks_body(struct smtp_checks *m, const char *p, size_t n);
/* SMTP_EV_MESSAGE_END: flushes what is buffered and fills *v (strings valid until the next
 * smtp_checks_begin()). Returns 0 or an emit error. */
int smtp_checks_end(struct smtp_checks *m, struct smtp_checks_verdict *v);

/* Postfix's cleanup log line for ev (cleanup_act_log()). Returns the length (truncated to
 * cap - 1 like snprintf). */
size_t smtp_checks_log_format(char *out, size_t cap, const struct smtp_checks_log *ev,
			      const char *queue_id, const char *client, const char *sender,
			      const char *rcpt, const char *proto, const char *helo);

#endif
