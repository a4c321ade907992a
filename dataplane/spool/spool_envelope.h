/* The envelope of a spooled message: who sent it, to whom, from where. It is stored as
 * text inside the message's COMMIT record (spool_segment.h), so a human with
 * mxgate-spoolcat, and the relay, read the same thing.
 *
 * Format, version 1: one "key value" per line, lines end in LF, the first line is the
 * magic:
 *
 *     MXGATE-ENVELOPE 1
 *     queue-id 4ZhQ5N0Bc9z01
 *     arrival 1732270495                  wall-clock seconds since the epoch (UTC)
 *     client-address 192.0.2.1            numeric, IPv4-mapped IPv6 shown as IPv4
 *     client-port 54321
 *     client-name unknown                 "unknown": no reverse DNS in this version
 *     helo mail.example.com               empty when the client sent none
 *     protocol ESMTP                      SMTP, ESMTP or UTF8SMTP (as in Received:)
 *     sender a@example.com                empty for the null sender <>
 *     mail-parameter SIZE=1234            zero or more, in the order given
 *     recipient x@example.net             one or more, in the order accepted
 *     recipient-parameter NOTIFY=NEVER    zero or more, for the recipient above
 *     hold REASON                         optional: policy said HOLD (the reason is the
 *                                         text Postfix logs, e.g. "<a@b>: Sender address
 *                                         triggers HOLD action")
 *     filter TRANSPORT:NEXTHOP            optional: policy said FILTER; the relay delivers
 *                                         every recipient there instead (transport(5)
 *                                         syntax, e.g. "smtp:[127.0.0.1]:10025")
 *
 * The optional lines come after the head and before the first recipient. A parser meeting
 * an unknown key refuses the envelope, so adding a key is an incompatible change only for
 * older readers (this version reads envelopes without the optional lines).
 * Values run to the end of their line. Bytes below 0x20, 0x7f and '%' are written as %XX
 * (upper-case hex), so a value can never break a line; other bytes (UTF-8) are written
 * as they are. An incompatible change changes the version on the first line. */
#ifndef MXGATE_DATAPLANE_SPOOL_ENVELOPE_H
#define MXGATE_DATAPLANE_SPOOL_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/spool/queue_id.h"
#include "mxgate/span.h"

#define SPOOL_ENVELOPE_MAGIC "MXGATE-ENVELOPE 1"
/* A bound on the envelope text: 1000 recipients (smtpd_recipient_limit) of 512 bytes
 * with parameters fit well below it. A longer envelope fails with -E2BIG. */
#define SPOOL_ENVELOPE_MAX (4u << 20)

/* The connection-independent part of an envelope, known at the first accepted recipient.
 * Everything is copied. */
struct spool_envelope {
	const char *queue_id;
	int64_t arrival;
	const char *client_addr;
	uint16_t client_port;
	const char *client_name;
	struct mx_span helo;
	const char *protocol;
	struct mx_span sender;
	struct mx_span mail_params; /* raw "SIZE=1 BODY=8BITMIME"; split on white space */
	const char *hold_reason; /* NULL: not held */
	const char *filter;      /* NULL: none */
};

/* The envelope text being built. Errors are sticky: after the first one, every call
 * returns it. */
struct spool_envbuf {
	char *p;
	size_t len, cap;
	size_t head_len;               /* where the recipients start */
	bool head_hold, head_filter;   /* the head has a hold / filter line */
	unsigned nrcpt;
	int error;
};

/* Policy's envelope actions (smtp/smtp_restrictions.h, header_checks), known only once the
 * message is complete. NULL or "" fields do nothing. */
struct spool_envelope_actions {
	const char *hold_reason; /* add the hold line (unless the head has one) */
	const char *filter;      /* add the filter line (unless the head has one) */
	const char *redirect;    /* replace every recipient by this one */
	const char *const *bcc;  /* add these recipients, with NOTIFY=NEVER */
	unsigned nbcc;
};

/* Start the text with the head of env. Returns 0 or a negative errno. */
int spool_envbuf_begin(struct spool_envbuf *b, const struct spool_envelope *env);
/* Add an accepted recipient with its raw ESMTP parameters. Returns 0 or a negative
 * errno. */
int spool_envbuf_add_rcpt(struct spool_envbuf *b, struct mx_span addr, struct mx_span params);
/* Apply actions to the finished envelope (after the last recipient, before the commit).
 * Returns 0 or a negative errno (sticky, as the others). */
int spool_envbuf_finish(struct spool_envbuf *b, const struct spool_envelope_actions *a);
void spool_envbuf_free(struct spool_envbuf *b);

/* A message read back from the spool (tools, tests, the relay). */
struct spool_rcpt {
	char *addr;
	char **params;
	size_t nparams;
};

struct spool_record {
	char queue_id[QUEUE_ID_SIZE];
	int64_t arrival;
	char *client_addr;
	uint16_t client_port;
	char *client_name;
	char *helo;
	char *protocol;
	char *sender;
	char **mail_params;
	size_t nmail_params;
	char *hold_reason; /* NULL: the envelope has no "hold" line */
	char *filter;      /* NULL: no "filter" line */
	struct spool_rcpt *rcpts;
	size_t nrcpt;
	uint64_t size;
	char *message; /* `size` bytes, NUL-terminated for convenience; NULL until read */
};

/* Parse envelope text into a new record (message NULL, size 0). Returns 0 and *out, or
 * -EINVAL with the reason in err (-ENOMEM). */
int spool_envelope_parse(const char *p, size_t n, struct spool_record **out, char *err,
			 size_t errlen);
void spool_record_free(struct spool_record *r);

/* The "hold" line of envelope text, without parsing the rest (recovery and the writer
 * need only this). Returns 1 and *reason (malloc'd, decoded) when there is one, 0 when
 * there is none, -EINVAL for a bad escape or -ENOMEM. */
int spool_envelope_hold(const char *p, size_t n, char **reason);

#endif
