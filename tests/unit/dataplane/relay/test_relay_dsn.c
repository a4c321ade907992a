/* Delivery status notifications (relay_dsn.c): the whole message for one failed
 * recipient against the text Postfix's bounce(8) writes, and then the cases that change
 * it: several recipients with different statuses, NOTIFY filtering, no notification
 * owed, RET=HDRS and bounce_size_limit, ENVID, ORCPT xtext, a boundary planted in the
 * original, expired recipients, an original without header/body separator, a long
 * diagnostic, SMTPUTF8 and control characters in replies. Every output is checked for
 * CR LF line ends and the 998-octet line limit.
 *
 * With "--dump DIR" it writes the notifications of these cases to DIR as *.eml instead,
 * for test_relay_dsn.py, which parses them with Python's email package (an independent
 * MIME parser). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/relay/relay_dsn.h"
#include "dataplane/spool/spool_envelope.h"
#include "testing.h"

#define QID "4ZhQ5N0Bc9z01"
#define NOW 1732270600 /* Fri, 22 Nov 2024 10:16:40 UTC */

static const char msg_plain[] = "From: Alice <a@example.org>\r\n"
				"To: bob@example.net\r\n"
				"Subject: hello\r\n"
				"Message-ID: <m1@example.org>\r\n"
				"\r\n"
				"Hi Bob.\r\n"
				"\r\n"
				"-- \r\n"
				"Alice\r\n";

static const struct relay_dsn_params params = {
	.myhostname = "mx.example.com",
	.bounce_size_limit = 50000,
	.now = NOW,
	.dsn_queue_id = "4ZhQ5N0Bd0z02",
};

/* A record from envelope text lines after the head (sender, parameters, recipients),
 * with message bytes msg. */
static struct spool_record *record(const char *lines, const char *msg, size_t msglen)
{
	char env[8192], err[128];
	int n = snprintf(env, sizeof(env),
			 "MXGATE-ENVELOPE 1\nqueue-id " QID "\narrival 1732270495\n"
			 "client-address 192.0.2.1\nclient-port 54321\nclient-name unknown\n"
			 "helo client.example.org\nprotocol ESMTP\n%s",
			 lines);
	if (n < 0 || (size_t)n >= sizeof(env))
		abort();
	struct spool_record *r = NULL;
	int rc = spool_envelope_parse(env, (size_t)n, &r, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "envelope: %s\n", err);
		abort();
	}
	if (msg) {
		r->message = malloc(msglen + 1);
		if (!r->message)
			abort();
		memcpy(r->message, msg, msglen);
		r->message[msglen] = 0;
		r->size = msglen;
	}
	return r;
}

/* Every line ends in CR LF and none is longer than 998 octets (RFC 5322 2.1.1). */
static void check_lines(const char *p, size_t n)
{
	size_t start = 0;
	CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			CHECK(i > 0 && p[i - 1] == '\r');
			CHECK(i - start - 1 <= 998);
			start = i + 1;
		} else if (p[i] == '\r') {
			CHECK(i + 1 < n && p[i + 1] == '\n');
		}
	}
}

static bool contains(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* Position of needle in hay, or -1. */
static long pos(const char *hay, const char *needle)
{
	const char *p = strstr(hay, needle);
	return p ? (long)(p - hay) : -1;
}

static char *build(const struct relay_dsn_params *p, const struct spool_record *r,
		   const struct relay_dsn_rcpt *d, size_t n)
{
	char *out = NULL;
	size_t len = 0;
	int rc = relay_dsn_build(p, r, d, n, &out, &len);
	CHECK_INT_EQ(rc, 0);
	if (rc != 0)
		return NULL;
	char *s = malloc(len + 1);
	if (!s)
		abort();
	memcpy(s, out, len);
	s[len] = 0;
	check_lines(s, len);
	free(out);
	return s;
}

/* The boundary from the top-level Content-Type. */
static void boundary_of(const char *dsn, char *bd, size_t cap)
{
	const char *b = strstr(dsn, "boundary=\"");
	bd[0] = 0;
	if (!b)
		return;
	b += strlen("boundary=\"");
	const char *e = strchr(b, '"');
	if (e && (size_t)(e - b) < cap) {
		memcpy(bd, b, (size_t)(e - b));
		bd[e - b] = 0;
	}
}

static const char golden_one[] =
	"Received: by mx.example.com (mxgate)\r\n"
	"\tid 4ZhQ5N0Bd0z02; Fri, 22 Nov 2024 10:16:40 +0000 (UTC)\r\n"
	"Date: Fri, 22 Nov 2024 10:16:40 +0000 (UTC)\r\n"
	"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
	"Subject: Undelivered Mail Returned to Sender\r\n"
	"To: a@example.org\r\n"
	"Auto-Submitted: auto-replied\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/report; report-type=delivery-status;\r\n"
	"\tboundary=\"4ZhQ5N0Bc9z01.1732270600/mx.example.com\"\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"Message-Id: <20241122101640.4ZhQ5N0Bd0z02@mx.example.com>\r\n"
	"\r\n"
	"This is a MIME-encapsulated message.\r\n"
	"\r\n"
	"--4ZhQ5N0Bc9z01.1732270600/mx.example.com\r\n"
	"Content-Description: Notification\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"This is the mail system at host mx.example.com.\r\n"
	"\r\n"
	"I'm sorry to have to inform you that your message could not\r\n"
	"be delivered to one or more recipients. It's attached below.\r\n"
	"\r\n"
	"For further assistance, please send mail to postmaster.\r\n"
	"\r\n"
	"If you do so, please include this problem report. You can\r\n"
	"delete your own text from the attached returned message.\r\n"
	"\r\n"
	"                   The mail system\r\n"
	"\r\n"
	"<bob@example.net>: host mail.example.net[192.0.2.25] said: 550 5.1.1\r\n"
	"    <bob@example.net>: Recipient address rejected: User unknown (in reply to\r\n"
	"    RCPT TO command)\r\n"
	"\r\n"
	"--4ZhQ5N0Bc9z01.1732270600/mx.example.com\r\n"
	"Content-Description: Delivery report\r\n"
	"Content-Type: message/delivery-status\r\n"
	"\r\n"
	"Reporting-MTA: dns; mx.example.com\r\n"
	"X-Postfix-Queue-ID: 4ZhQ5N0Bc9z01\r\n"
	"X-Postfix-Sender: rfc822; a@example.org\r\n"
	"Arrival-Date: Fri, 22 Nov 2024 10:14:55 +0000 (UTC)\r\n"
	"\r\n"
	"Final-Recipient: rfc822; bob@example.net\r\n"
	"Original-Recipient: rfc822;bob@example.net\r\n"
	"Action: failed\r\n"
	"Status: 5.1.1\r\n"
	"Remote-MTA: dns; mail.example.net\r\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected:\r\n"
	"    User unknown\r\n"
	"\r\n"
	"--4ZhQ5N0Bc9z01.1732270600/mx.example.com\r\n"
	"Content-Description: Undelivered Message\r\n"
	"Content-Type: message/rfc822\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"Return-Path: <a@example.org>\r\n"
	"From: Alice <a@example.org>\r\n"
	"To: bob@example.net\r\n"
	"Subject: hello\r\n"
	"Message-ID: <m1@example.org>\r\n"
	"\r\n"
	"Hi Bob.\r\n"
	"\r\n"
	"-- \r\n"
	"Alice\r\n"
	"\r\n"
	"--4ZhQ5N0Bc9z01.1732270600/mx.example.com--\r\n";

static const struct relay_dsn_rcpt bob_550 = {
	.index = 0,
	.status = "5.1.1",
	.reason = "host mail.example.net[192.0.2.25] said: 550 5.1.1 <bob@example.net>: "
		  "Recipient address rejected: User unknown (in reply to RCPT TO command)",
	.remote_mta = "mail.example.net[192.0.2.25]",
	.diagnostic = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown",
};

static struct spool_record *one_record(void)
{
	return record("sender a@example.org\nmail-parameter SIZE=200\n"
		      "recipient bob@example.net\nrecipient-parameter ORCPT=rfc822;bob@example.net\n",
		      msg_plain, strlen(msg_plain));
}

static void test_one_failed_golden(void)
{
	struct spool_record *r = one_record();
	CHECK(relay_dsn_owed(r, &bob_550, 1));
	char *s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK_MEM_EQ(s, strlen(s), golden_one, strlen(golden_one));
	free(s);
	spool_record_free(r);
}

static struct spool_record *multi_record(void)
{
	return record("sender a@example.org\n"
		      "recipient bob@example.net\n"
		      "recipient carol@example.net\n"
		      "recipient-parameter NOTIFY=FAILURE,DELAY\n"
		      "recipient dave@example.com\n"
		      "recipient erin@example.com\n"
		      "recipient-parameter NOTIFY=NEVER\n"
		      "recipient frank@example.com\n"
		      "recipient-parameter NOTIFY=SUCCESS\n",
		      msg_plain, strlen(msg_plain));
}

static const struct relay_dsn_rcpt multi[] = {
	{ .index = 0,
	  .status = "5.1.1",
	  .reason = "host mail.example.net[192.0.2.25] said: 550 5.1.1 no such user (in reply "
		    "to RCPT TO command)",
	  .remote_mta = "mail.example.net[192.0.2.25]",
	  .diagnostic = "550 5.1.1 no such user" },
	{ .index = 1,
	  .status = "5.7.1",
	  .reason = "host mail.example.net[192.0.2.25] said: 554 5.7.1 spam (in reply to end "
		    "of DATA command)",
	  .remote_mta = "mail.example.net[192.0.2.25]",
	  .diagnostic = "554 5.7.1 spam" },
	{ .index = 2,
	  .status = "5.4.4",
	  .reason = "Host or domain name not found. Name service error for name=example.com "
		    "type=MX: Host not found" },
	{ .index = 3, .status = "5.1.1", .reason = "erin is never reported" },
	{ .index = 4, .status = "5.1.1", .reason = "frank wants only success" },
};

static void test_several_statuses(void)
{
	struct spool_record *r = multi_record();
	char *s = build(&params, r, multi, 5);
	if (s) {
		long b = pos(s, "Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\n"
				"Status: 5.1.1\r\nRemote-MTA: dns; mail.example.net\r\n"
				"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n");
		long c = pos(s, "Final-Recipient: rfc822; carol@example.net\r\nAction: failed\r\n"
				"Status: 5.7.1\r\nRemote-MTA: dns; mail.example.net\r\n"
				"Diagnostic-Code: smtp; 554 5.7.1 spam\r\n");
		long d = pos(s, "Final-Recipient: rfc822; dave@example.com\r\nAction: failed\r\n"
				"Status: 5.4.4\r\nDiagnostic-Code: X-Postfix; Host or domain name "
				"not found. Name service error\r\n    for name=example.com "
				"type=MX: Host not found\r\n");
		CHECK(b > 0 && c > b && d > c);
		/* text part, in the same order, before the delivery report */
		long tb = pos(s, "\r\n\r\n<bob@example.net>: host mail.example.net[192.0.2.25] "
				 "said: 550 5.1.1 no such\r\n    user (in reply to RCPT TO "
				 "command)\r\n");
		long tc = pos(s, "\r\n\r\n<carol@example.net>: host");
		long td = pos(s, "\r\n\r\n<dave@example.com>: Host or domain name not found.");
		long dr = pos(s, "Content-Description: Delivery report");
		CHECK(tb > 0 && tc > tb && td > tc && dr > td);
		/* NOTIFY=NEVER and NOTIFY=SUCCESS recipients are not reported at all */
		CHECK(!contains(s, "erin"));
		CHECK(!contains(s, "frank"));
	}
	free(s);
	spool_record_free(r);
}

static void test_none_owed(void)
{
	char *out = (char *)"untouched";
	size_t len = 7;
	/* null sender: a bounce is never bounced */
	struct spool_record *r = record("sender \nrecipient bob@example.net\n", msg_plain,
					strlen(msg_plain));
	CHECK(!relay_dsn_owed(r, &bob_550, 1));
	CHECK_INT_EQ(relay_dsn_build(&params, r, &bob_550, 1, &out, &len), -EINVAL);
	CHECK(out == NULL);
	CHECK_INT_EQ(len, 0);
	spool_record_free(r);

	/* every recipient opted out of failure reports */
	r = record("sender a@example.org\n"
		   "recipient bob@example.net\nrecipient-parameter NOTIFY=NEVER\n"
		   "recipient carol@example.net\nrecipient-parameter NOTIFY=SUCCESS,DELAY\n",
		   msg_plain, strlen(msg_plain));
	struct relay_dsn_rcpt d[2] = { bob_550, bob_550 };
	d[1].index = 1;
	CHECK(!relay_dsn_owed(r, d, 2));
	CHECK_INT_EQ(relay_dsn_build(&params, r, d, 2, &out, &len), -EINVAL);
	/* the default (no NOTIFY) and lower-case keywords are owed */
	CHECK(!relay_dsn_owed(r, d, 0));
	spool_record_free(r);
	r = record("sender a@example.org\n"
		   "recipient bob@example.net\nrecipient-parameter notify=delay,failure\n",
		   msg_plain, strlen(msg_plain));
	CHECK(relay_dsn_owed(r, &bob_550, 1));
	spool_record_free(r);
}

static void test_ret_hdrs(void)
{
	struct spool_record *r = record("sender a@example.org\nmail-parameter RET=HDRS\n"
					"recipient bob@example.net\n",
					msg_plain, strlen(msg_plain));
	char *s = build(&params, r, &bob_550, 1);
	if (s) {
		CHECK(contains(s, "Content-Description: Undelivered Message Headers\r\n"
				  "Content-Type: text/rfc822-headers\r\n"
				  "Content-Transfer-Encoding: 8bit\r\n\r\n"
				  "Return-Path: <a@example.org>\r\nFrom: Alice <a@example.org>\r\n"
				  "To: bob@example.net\r\nSubject: hello\r\n"
				  "Message-ID: <m1@example.org>\r\n\r\n"
				  "--4ZhQ5N0Bc9z01.1732270600/mx.example.com--\r\n"));
		CHECK(!contains(s, "Hi Bob"));
		CHECK(!contains(s, "message/rfc822"));
	}
	free(s);
	spool_record_free(r);
}

static void test_size_limit(void)
{
	struct spool_record *r = one_record();
	struct relay_dsn_params p = params;
	p.bounce_size_limit = r->size - 1;
	char *s = build(&p, r, &bob_550, 1);
	if (s) {
		CHECK(contains(s, "Content-Type: text/rfc822-headers\r\n"));
		CHECK(!contains(s, "Hi Bob"));
	}
	free(s);
	p.bounce_size_limit = r->size; /* at the limit: returned whole */
	s = build(&p, r, &bob_550, 1);
	if (s) {
		CHECK(contains(s, "Content-Type: message/rfc822\r\n"));
		CHECK(contains(s, "Hi Bob"));
	}
	free(s);
	p.bounce_size_limit = 0; /* no limit */
	s = build(&p, r, &bob_550, 1);
	if (s)
		CHECK(contains(s, "Hi Bob"));
	free(s);
	spool_record_free(r);
}

static void test_envid(void)
{
	struct spool_record *r = record("sender a@example.org\n"
					"mail-parameter ENVID=QQ314159+2Bx\nmail-parameter RET=FULL\n"
					"recipient bob@example.net\n",
					msg_plain, strlen(msg_plain));
	char *s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK(contains(s, "Reporting-MTA: dns; mx.example.com\r\n"
				  "Original-Envelope-Id: QQ314159+x\r\n"
				  "X-Postfix-Queue-ID: 4ZhQ5N0Bc9z01\r\n"));
	free(s);
	spool_record_free(r);
	/* a malformed ENVID is left out rather than reported garbled */
	r = record("sender a@example.org\nmail-parameter ENVID=bad+2\n"
		   "recipient bob@example.net\n",
		   msg_plain, strlen(msg_plain));
	s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK(!contains(s, "Original-Envelope-Id"));
	free(s);
	spool_record_free(r);
}

static void test_orcpt(void)
{
	struct spool_record *r = record("sender a@example.org\n"
					"recipient bob@example.net\n"
					"recipient-parameter ORCPT=rfc822;a+2Bb@x.example\n"
					"recipient carol@example.net\n"
					"recipient-parameter ORCPT=rfc822;c+3Dd+20e@x.example\n"
					"recipient dave@example.net\n"
					"recipient-parameter ORCPT=rfc822;broken+2\n"
					"recipient erin@example.net\n"
					"recipient-parameter ORCPT=rfc822;ctl+0Dx\n",
					msg_plain, strlen(msg_plain));
	struct relay_dsn_rcpt d[4];
	for (size_t i = 0; i < 4; i++) {
		d[i] = bob_550;
		d[i].index = i;
	}
	char *s = build(&params, r, d, 4);
	if (s) {
		CHECK(contains(s, "Final-Recipient: rfc822; bob@example.net\r\n"
				  "Original-Recipient: rfc822;a+b@x.example\r\nAction: failed\r\n"));
		CHECK(contains(s, "Final-Recipient: rfc822; carol@example.net\r\n"
				  "Original-Recipient: rfc822;c=d e@x.example\r\n"));
		CHECK(contains(s, "Final-Recipient: rfc822; dave@example.net\r\nAction: failed"));
		CHECK(contains(s, "Final-Recipient: rfc822; erin@example.net\r\nAction: failed"));
		CHECK(!contains(s, "broken"));
	}
	free(s);
	spool_record_free(r);
}

static void test_boundary_in_original(void)
{
	const char *bd = "4ZhQ5N0Bc9z01.1732270600/mx.example.com";
	char msg[1024];
	snprintf(msg, sizeof(msg),
		 "Subject: trap\r\nContent-Type: text/plain\r\n\r\n--%s\r\nContent-Type: "
		 "text/plain\r\n\r\nspoofed part\r\n--%s--\r\n",
		 bd, bd);
	struct spool_record *r = record("sender a@example.org\nrecipient bob@example.net\n", msg,
					strlen(msg));
	char *s = build(&params, r, &bob_550, 1);
	if (s) {
		char got[128];
		boundary_of(s, got, sizeof(got));
		CHECK(got[0] != 0);
		CHECK(strcmp(got, bd) != 0);
		CHECK(strlen(got) <= 70);
		CHECK(!contains(msg, got));
		/* the original is still returned whole, with the planted lines */
		CHECK(contains(s, "spoofed part\r\n"));
		char closing[160];
		snprintf(closing, sizeof(closing), "\r\n--%s--\r\n", got);
		size_t sl = strlen(s), cl = strlen(closing);
		CHECK(sl > cl && strcmp(s + sl - cl, closing) == 0);
	}
	free(s);
	spool_record_free(r);
}

static void test_expired(void)
{
	struct spool_record *r = record("sender a@example.org\n"
					"recipient bob@example.net\nrecipient carol@example.net\n",
					msg_plain, strlen(msg_plain));
	const struct relay_dsn_rcpt d[2] = {
		{ .index = 0,
		  .status = "4.4.1",
		  .reason = "connect to mail.example.net[192.0.2.25]:25: Connection timed out",
		  .expired = true },
		{ .index = 1, .expired = true },
	};
	char *s = build(&params, r, d, 2);
	if (s) {
		/* Postfix reports the last deferral reason with its 4.X.X status */
		CHECK(contains(s, "\r\n\r\n<bob@example.net>: connect to "
				  "mail.example.net[192.0.2.25]:25: Connection timed\r\n"
				  "    out\r\n"));
		CHECK(contains(s, "Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\n"
				  "Status: 4.4.1\r\nDiagnostic-Code: X-Postfix; connect to "
				  "mail.example.net[192.0.2.25]:25:\r\n    Connection timed out\r\n"));
		/* never attempted: RFC 3463 X.4.7, delivery time expired */
		CHECK(contains(s, "\r\n\r\n<carol@example.net>: delivery time expired\r\n"));
		CHECK(contains(s, "Final-Recipient: rfc822; carol@example.net\r\nAction: failed\r\n"
				  "Status: 4.4.7\r\nDiagnostic-Code: X-Postfix; delivery time "
				  "expired\r\n"));
	}
	free(s);
	spool_record_free(r);
}

static void test_no_separator(void)
{
	const char msg[] = "Subject: no body\r\nFrom: a@example.org\r\n";
	struct spool_record *r = record("sender a@example.org\nrecipient bob@example.net\n", msg,
					strlen(msg));
	char *s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK(contains(s, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
				  "8bit\r\n\r\nReturn-Path: <a@example.org>\r\nSubject: no "
				  "body\r\nFrom: a@example.org\r\n\r\n--4ZhQ5N0Bc9z01.1732270600/"
				  "mx.example.com--\r\n"));
	free(s);
	spool_record_free(r);

	/* headers only, and a last line without CR LF */
	const char msg2[] = "Subject: x\r\nX-Long: a\r\n\tb\r\nbody without separator";
	r = record("sender a@example.org\nmail-parameter RET=HDRS\nrecipient bob@example.net\n",
		   msg2, strlen(msg2));
	s = build(&params, r, &bob_550, 1);
	if (s) {
		CHECK(contains(s, "Return-Path: <a@example.org>\r\nSubject: x\r\nX-Long: "
				  "a\r\n\tb\r\n\r\n--"));
		CHECK(!contains(s, "body without"));
	}
	free(s);
	spool_record_free(r);

	/* full, and a last line without CR LF: it gets one */
	r = record("sender a@example.org\nrecipient bob@example.net\n", msg2, strlen(msg2));
	s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK(contains(s, "\r\nbody without separator\r\n\r\n--"));
	free(s);
	spool_record_free(r);
}

static char *long_diag(void)
{
	/* words with spaces, then one 2000-byte word: wrapping, then a hard split */
	size_t n = 6000;
	char *d = malloc(n + 1);
	if (!d)
		abort();
	size_t o = 0;
	o += (size_t)snprintf(d, n, "550 5.7.1");
	while (o < 3000)
		o += (size_t)snprintf(d + o, n - o, " word%zu", o);
	d[o++] = ' ';
	for (size_t i = 0; i < 2000; i++)
		d[o++] = (char)('a' + i % 26);
	d[o] = 0;
	return d;
}

static void test_long_diagnostic(void)
{
	struct spool_record *r = record("sender a@example.org\nrecipient bob@example.net\n",
					msg_plain, strlen(msg_plain));
	char *diag = long_diag();
	size_t rl = strlen(diag) + 64;
	char *reason = malloc(rl);
	if (!reason)
		abort();
	snprintf(reason, rl, "host x[192.0.2.1] said: %s (in reply to RCPT TO command)", diag);
	struct relay_dsn_rcpt d = { .index = 0,
				    .status = "5.7.1",
				    .reason = reason,
				    .remote_mta = "x[192.0.2.1]",
				    .diagnostic = diag };
	char *s = build(&params, r, &d, 1); /* build() checks every line <= 998 */
	if (s) {
		/* unfold the field (RFC 5322 2.2.3): the words come back in order, and the
		 * word that had to be split comes back whole when the folds are removed */
		const char *f = strstr(s, "Diagnostic-Code: smtp; ");
		const char *e = f ? strstr(f, "\r\n\r\n") : NULL;
		CHECK(f && e);
		if (f && e) {
			f += strlen("Diagnostic-Code: smtp; ");
			char *spaced = strndup(f, (size_t)(e - f));
			char *joined = strndup(f, (size_t)(e - f));
			if (!spaced || !joined)
				abort();
			size_t a = 0, j = 0;
			for (const char *q = f; q < e; q++) {
				if (q[0] == '\r' && q[1] == '\n') {
					q += 2;
					while (q < e && *q == ' ')
						q++;
					q--;
					spaced[a++] = ' ';
					continue;
				}
				spaced[a++] = *q;
				joined[j++] = *q;
			}
			spaced[a] = 0;
			joined[j] = 0;
			const char *at = spaced;
			char *copy = strdup(diag);
			char *longword = NULL;
			for (char *w = strtok(copy, " "); w && at; w = strtok(NULL, " ")) {
				if (strlen(w) > 900) {
					longword = w;
					continue;
				}
				at = strstr(at, w);
				if (at)
					at += strlen(w);
			}
			CHECK(at != NULL);
			CHECK(longword != NULL && strstr(joined, longword) != NULL);
			free(copy);
			free(spaced);
			free(joined);
		}
	}
	free(s);
	free(reason);
	free(diag);
	spool_record_free(r);
}

static void test_smtputf8(void)
{
	const char msg[] = "From: J\xc3\xb6rg <j\xc3\xb6rg@example.org>\r\nSubject: gr\xc3\xbc\xc3\x9f"
			   "e\r\n\r\nHall\xc3\xb6\r\n";
	struct spool_record *r = record(
		"sender j\xc3\xb6rg@example.org\nmail-parameter SMTPUTF8\n"
		"mail-parameter BODY=8BITMIME\n"
		"recipient \xc3\xa9t\xc3\xa9@example.net\n"
		"recipient-parameter ORCPT=utf-8;\\x{E9}t\\x{E9}+2B1@example.net\n",
		msg, strlen(msg));
	char *s = build(&params, r, &bob_550, 1);
	if (s) {
		CHECK(contains(s, "To: j\xc3\xb6rg@example.org\r\n"));
		CHECK(contains(s, "Content-Type: message/global-delivery-status\r\n"
				  "Content-Transfer-Encoding: 8bit\r\n"));
		CHECK(contains(s, "X-Postfix-Sender: utf-8; j\xc3\xb6rg@example.org\r\n"));
		CHECK(contains(s, "Final-Recipient: utf-8; \xc3\xa9t\xc3\xa9@example.net\r\n"
				  "Original-Recipient: utf-8;\xc3\xa9t\xc3\xa9+1@example.net\r\n"));
		CHECK(contains(s, "Content-Description: Undelivered Message\r\n"
				  "Content-Type: message/global\r\n"));
		CHECK(contains(s, "Hall\xc3\xb6\r\n"));
	}
	free(s);
	spool_record_free(r);
	/* RET=HDRS: message/global-headers (RFC 6533 6.3) */
	r = record("sender j@example.org\nmail-parameter SMTPUTF8\nmail-parameter RET=HDRS\n"
		   "recipient bob@example.net\n",
		   msg, strlen(msg));
	s = build(&params, r, &bob_550, 1);
	if (s)
		CHECK(contains(s, "Content-Type: message/global-headers\r\n"));
	free(s);
	spool_record_free(r);
}

static void test_control_characters(void)
{
	struct spool_record *r = record("sender a@example.org\nrecipient bob@example.net\n",
					msg_plain, strlen(msg_plain));
	struct relay_dsn_rcpt d = bob_550;
	d.reason = "host x said: 550 evil\r\nX-Injected: yes\x01\xff";
	d.diagnostic = "550 evil\r\nX-Injected: yes";
	char *s = build(&params, r, &d, 1);
	if (s) {
		CHECK(!contains(s, "\r\nX-Injected"));
		CHECK(contains(s, "<bob@example.net>: host x said: 550 evil??X-Injected: yes??\r\n"));
		CHECK(contains(s, "Diagnostic-Code: smtp; 550 evil??X-Injected: yes\r\n"));
	}
	free(s);
	spool_record_free(r);
}

static void test_long_hostname(void)
{
	/* a 600-byte myhostname (DNS allows 253; the configuration may not check): the
	 * boundary stays within 70 characters and every line within 998 octets */
	static char host[601];
	memset(host, 'h', 600);
	host[600] = 0;
	struct relay_dsn_params p = params;
	p.myhostname = host;
	struct spool_record *r = one_record();
	char *s = build(&p, r, &bob_550, 1);
	if (s) {
		char bd[128];
		boundary_of(s, bd, sizeof(bd));
		CHECK(strlen(bd) > 0 && strlen(bd) <= 70);
		CHECK(contains(s, "Reporting-MTA: dns; hhhh"));
	}
	free(s);
	spool_record_free(r);
}

/* Random replies, parameters and originals (fixed seed): every build succeeds, every
 * line ends in CR LF within 998 octets, the boundary is not in the original, and the
 * three parts are delimited exactly once each. */
static uint64_t rng_state = 0x853c49e6748fea9bull;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static void rnd_text(char *out, size_t max)
{
	static const char *const pieces[] = { " ",	 "\t",	   "\r\n", "\n",	 "\r",
					      "+",	 "+2B",	   "+0",   "\\x{E9}", "\\x{",
					      "\xc3\xa9", "\xff",  "\x01", "550",	 "5.1.1",
					      "<a@b>",	 "word",   ";",	   "=",	 "--",
					      "4ZhQ5N0Bc9z01.1732270600/mx.example.com" };
	size_t o = 0;
	unsigned n = rnd(40);
	for (unsigned i = 0; i < n; i++) {
		const char *pc = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
		size_t l = strlen(pc);
		if (rnd(20) == 0) { /* a long run without blanks */
			size_t run = 500 + rnd(1500);
			for (size_t k = 0; k < run && o + 1 < max; k++)
				out[o++] = (char)('a' + rnd(26));
		}
		if (o + l + 1 >= max)
			break;
		memcpy(out + o, pc, l);
		o += l;
	}
	out[o] = 0;
}

/* An envelope value: no LF (the envelope escapes it; the test writes it raw). */
static void rnd_value(char *out, size_t max)
{
	rnd_text(out, max);
	for (char *c = out; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '%')
			*c = '_';
}

static void test_random(void)
{
	static char reason[8192], diag[8192], mta[256], orcpt[512], envid[512], msg[16384];
	for (int iter = 0; iter < 600; iter++) {
		char lines[2048];
		rnd_value(orcpt, 300);
		rnd_value(envid, 300);
		snprintf(lines, sizeof(lines),
			 "sender a@example.org\nmail-parameter ENVID=%s\n%s%s"
			 "recipient bob@example.net\nrecipient-parameter ORCPT=%s;%s\n"
			 "recipient-parameter NOTIFY=%s\n",
			 envid, rnd(3) == 0 ? "mail-parameter SMTPUTF8\n" : "",
			 rnd(3) == 0 ? "mail-parameter RET=HDRS\n" : "",
			 rnd(2) ? "rfc822" : "utf-8", orcpt,
			 rnd(2) ? "FAILURE" : "DELAY,FAILURE");
		rnd_text(msg, sizeof(msg) / 2);
		/* the SMTP layer accepted it: no line above 998 octets (RFC 5321 4.5.3.1.6) */
		for (size_t i = 0, col = 0, n = strlen(msg); i < n; i++, col++) {
			if (msg[i] == '\n' || msg[i] == '\r')
				col = 0;
			else if (col >= 990) {
				memmove(msg + i + 2, msg + i, n - i + 1);
				memcpy(msg + i, "\r\n", 2);
				n += 2;
				col = 0;
				i++;
			}
		}
		struct spool_record *r = record(lines, msg, strlen(msg));
		rnd_text(reason, sizeof(reason));
		rnd_text(diag, sizeof(diag));
		rnd_text(mta, sizeof(mta));
		struct relay_dsn_rcpt d = { .index = 0,
					    .status = "5.1.1",
					    .reason = reason,
					    .remote_mta = rnd(2) ? mta : NULL,
					    .diagnostic = rnd(2) ? diag : NULL,
					    .expired = rnd(2) };
		char *s = build(&params, r, &d, 1);
		if (s) {
			char bd[128], delim[160];
			boundary_of(s, bd, sizeof(bd));
			CHECK(bd[0] != 0 && !contains(msg, bd));
			snprintf(delim, sizeof(delim), "\r\n--%s\r\n", bd);
			int count = 0;
			for (const char *q = s; (q = strstr(q, delim)) != NULL; q++)
				count++;
			CHECK_INT_EQ(count, 3);
			snprintf(delim, sizeof(delim), "\r\n--%s--\r\n", bd);
			size_t sl = strlen(s), dl = strlen(delim);
			CHECK(sl > dl && strcmp(s + sl - dl, delim) == 0);
		}
		free(s);
		spool_record_free(r);
	}
}

/* Cases for the Python parser, named as test_relay_dsn.py expects them. */
static int dump(const char *dir)
{
	struct {
		const char *name;
		struct spool_record *r;
		const struct relay_dsn_rcpt *d;
		size_t n;
	} cases[8];
	size_t nc = 0;
	static struct relay_dsn_rcpt orcpt_d, exp_d[1], long_d;
	cases[nc++] = (typeof(cases[0])){ "one", one_record(), &bob_550, 1 };
	cases[nc++] = (typeof(cases[0])){ "multi", multi_record(), multi, 5 };
	cases[nc++] = (typeof(cases[0])){
		"hdrs",
		record("sender a@example.org\nmail-parameter RET=HDRS\nmail-parameter "
		       "ENVID=env+2B1\nrecipient bob@example.net\nrecipient-parameter "
		       "ORCPT=rfc822;a+2Bb@x.example\n",
		       msg_plain, strlen(msg_plain)),
		&bob_550, 1
	};
	orcpt_d = bob_550;
	const char *bd = "4ZhQ5N0Bc9z01.1732270600/mx.example.com";
	static char trap[512];
	snprintf(trap, sizeof(trap),
		 "Subject: trap\r\n\r\n--%s\r\nContent-Type: text/plain\r\n\r\nspoofed\r\n--%s--\r\n",
		 bd, bd);
	cases[nc++] = (typeof(cases[0])){
		"boundary",
		record("sender a@example.org\nrecipient bob@example.net\n", trap, strlen(trap)),
		&orcpt_d, 1
	};
	exp_d[0] = (struct relay_dsn_rcpt){ .index = 0,
					    .status = "4.4.1",
					    .reason = "connect to mail.example.net[192.0.2.25]:25: "
						      "Connection timed out",
					    .expired = true };
	static const char nosep[] = "Subject: no body\r\nFrom: a@example.org\r\n";
	cases[nc++] = (typeof(cases[0])){
		"expired_nosep",
		record("sender a@example.org\nrecipient bob@example.net\n", nosep, strlen(nosep)),
		exp_d, 1
	};
	char *diag = long_diag();
	long_d = (struct relay_dsn_rcpt){ .index = 0,
					  .status = "5.7.1",
					  .reason = diag,
					  .remote_mta = "x[192.0.2.1]",
					  .diagnostic = diag };
	cases[nc++] = (typeof(cases[0])){
		"long",
		record("sender a@example.org\nrecipient bob@example.net\n", msg_plain,
		       strlen(msg_plain)),
		&long_d, 1
	};
	static const char umsg[] = "From: j\xc3\xb6rg@example.org\r\nSubject: gr\xc3\xbc\xc3\x9f"
				   "e\r\n\r\nHall\xc3\xb6\r\n";
	cases[nc++] = (typeof(cases[0])){
		"utf8",
		record("sender j\xc3\xb6rg@example.org\nmail-parameter SMTPUTF8\n"
		       "recipient \xc3\xa9t\xc3\xa9@example.net\n",
		       umsg, strlen(umsg)),
		&bob_550, 1
	};
	int rc = 0;
	for (size_t i = 0; i < nc; i++) {
		char *out = NULL;
		size_t len = 0;
		if (relay_dsn_build(&params, cases[i].r, cases[i].d, cases[i].n, &out, &len) != 0) {
			fprintf(stderr, "%s: build failed\n", cases[i].name);
			rc = 1;
		} else {
			char path[1024];
			snprintf(path, sizeof(path), "%s/%s.eml", dir, cases[i].name);
			FILE *f = fopen(path, "wb");
			if (!f || fwrite(out, 1, len, f) != len || fclose(f) != 0) {
				fprintf(stderr, "%s: cannot write\n", path);
				rc = 1;
			}
		}
		free(out);
		spool_record_free(cases[i].r);
	}
	free(diag);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--dump") == 0)
		return dump(argv[2]);
	RUN_TEST(test_one_failed_golden);
	RUN_TEST(test_several_statuses);
	RUN_TEST(test_none_owed);
	RUN_TEST(test_ret_hdrs);
	RUN_TEST(test_size_limit);
	RUN_TEST(test_envid);
	RUN_TEST(test_orcpt);
	RUN_TEST(test_boundary_in_original);
	RUN_TEST(test_expired);
	RUN_TEST(test_no_separator);
	RUN_TEST(test_long_diagnostic);
	RUN_TEST(test_smtputf8);
	RUN_TEST(test_control_characters);
	RUN_TEST(test_long_hostname);
	RUN_TEST(test_random);
	return TEST_RESULT();
}
