/* Delivery status notifications: the bounce a sender gets when the gateway cannot deliver
 * a message it accepted (RFC 5321 6.1: having said 250, we either deliver or tell the
 * sender).
 *
 * relay_dsn_build() writes the whole notification message as Postfix's bounce(8) does
 * with its default templates (`postconf -b`): a multipart/report (RFC 6522) with
 * report-type=delivery-status and three parts:
 *   1. text/plain: the human-readable explanation ("This is the mail system at host
 *      ...", "I'm sorry to have to inform you ...", "The mail system", then one
 *      "<rcpt>: reason" paragraph per failed recipient);
 *   2. message/delivery-status (RFC 3464): per-message fields (Reporting-MTA: dns;
 *      myhostname, X-Postfix-Queue-ID, X-Postfix-Sender: rfc822; sender, Arrival-Date,
 *      Original-Envelope-Id when ENVID was given), then per-recipient fields
 *      (Final-Recipient, Original-Recipient from ORCPT, Action: failed, Status,
 *      Remote-MTA and Diagnostic-Code: smtp; ... when a next hop answered);
 *   3. the original: message/rfc822 (the whole message) or, with RET=HDRS or when the
 *      message exceeds bounce_size_limit, text/rfc822-headers (its header only), as
 *      Postfix does.
 * Header lines: From: MAILER-DAEMON@myhostname (Mail Delivery System), To: the original
 * sender, Subject: Undelivered Mail Returned to Sender, Auto-Submitted: auto-replied
 * (RFC 3834), Date, Message-Id, MIME-Version, Content-Type with a boundary that does not
 * occur in the original. Lines end in CR LF; no line exceeds 998 octets (RFC 5322 2.1.1):
 * long fields are folded, and the original's lines are copied as they are (they were
 * accepted under the same bound).
 *
 * Recipients with NOTIFY= that does not include FAILURE (e.g. NOTIFY=NEVER, or BCC
 * recipients that policy added) are not reported; when none is left, or the sender is the
 * null sender (a bounce is never bounced, RFC 3464 2 / RFC 5321 6.1), no notification is
 * owed: relay_dsn_owed() says so and the caller only logs. */
#ifndef MXGATE_DATAPLANE_RELAY_RELAY_DSN_H
#define MXGATE_DATAPLANE_RELAY_RELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/spool/spool_envelope.h"

/* One failed recipient of the original message. */
struct relay_dsn_rcpt {
	size_t index;           /* in orig->rcpts: its address and NOTIFY/ORCPT parameters */
	const char *status;     /* enhanced status code, e.g. "5.1.1", "4.4.1" (expired) */
	/* The reason, as logged: the next hop's reply ("host 192.0.2.1[192.0.2.1] said: 550
	 * 5.1.1 <x@y>: Recipient address rejected: User unknown (in reply to RCPT TO
	 * command)"), or our own text ("connect to ...: Connection refused"). */
	const char *reason;
	/* When a next hop answered: its name ("192.0.2.1[192.0.2.1]") for Remote-MTA and its
	 * reply ("550 5.1.1 <x@y>: ...") for Diagnostic-Code; else NULL. */
	const char *remote_mta;
	const char *diagnostic;
	bool expired; /* maximal_queue_lifetime / bounce_queue_lifetime ran out */
};

struct relay_dsn_params {
	const char *myhostname;
	uint64_t bounce_size_limit; /* bytes of the original returned whole; Postfix 50000 */
	int64_t now;                /* wall-clock seconds, for Date: */
	const char *dsn_queue_id;   /* the notification's own queue ID, for Message-Id: */
};

/* True when a notification is owed for these recipients of orig: the sender is not the
 * null sender and at least one recipient's NOTIFY includes FAILURE (or has no NOTIFY). */
bool relay_dsn_owed(const struct spool_record *orig, const struct relay_dsn_rcpt *rcpts,
		    size_t n);

/* Build the notification for the failed recipients rcpts[0..n) of orig (whose message
 * bytes are loaded: orig->message, orig->size). The envelope of the notification is the
 * null sender to orig->sender. Returns 0 with *out (malloc'd, *outlen bytes, CR LF lines)
 * or a negative errno (-ENOMEM; -EINVAL when no notification is owed). */
int relay_dsn_build(const struct relay_dsn_params *p, const struct spool_record *orig,
		    const struct relay_dsn_rcpt *rcpts, size_t n, char **out, size_t *outlen);

#endif
