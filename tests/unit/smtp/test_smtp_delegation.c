/* The policy delegation codec (smtp/smtp_delegation.h): golden request bytes, replies fed
 * whole, byte by byte and split at every offset (each piece in a heap buffer of exactly its
 * length), bounds, hostile replies, and the classification of actions as Postfix 3.7's
 * check_table_result() reads them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_delegation.h"
#include "testing.h"

/* ---- requests ---- */

static char *encode(const struct smtp_delegation_request *r, int want_rc, size_t *len)
{
	static char buf[1 << 16];
	int rc = smtp_delegation_request_encode(r, buf, sizeof(buf), len);
	CHECK_INT_EQ(rc, want_rc);
	return rc == 0 ? buf : NULL;
}

/* A RCPT-stage request as Postfix 3.7.11 sends it for a TLS client, attribute for
 * attribute in check_policy_service()'s order. */
static const char golden_rcpt[] =
	"request=smtpd_access_policy\n"
	"protocol_state=RCPT\n"
	"protocol_name=ESMTP\n"
	"client_address=192.0.2.10\n"
	"client_name=mail.example.org\n"
	"client_port=50123\n"
	"reverse_client_name=mail.example.org\n"
	"server_address=198.51.100.25\n"
	"server_port=25\n"
	"helo_name=mail.example.org\n"
	"sender=alice@example.org\n"
	"recipient=bob@example.net\n"
	"recipient_count=0\n"
	"queue_id=\n"
	"instance=1a2b.65f0c1d2.3e4f5.0\n"
	"size=12345\n"
	"etrn_domain=\n"
	"stress=\n"
	"sasl_method=\n"
	"sasl_username=\n"
	"sasl_sender=\n"
	"ccert_subject=\n"
	"ccert_issuer=\n"
	"ccert_fingerprint=\n"
	"ccert_pubkey_fingerprint=\n"
	"encryption_protocol=TLSv1.3\n"
	"encryption_cipher=TLS_AES_256_GCM_SHA384\n"
	"encryption_keysize=256\n"
	"policy_context=\n"
	"\n";

static void fill_rcpt(struct smtp_delegation_request *r)
{
	smtp_delegation_request_init(r);
	r->protocol_state = SMTP_DELEGATION_RCPT;
	r->protocol_name = "ESMTP";
	r->client_address = "192.0.2.10";
	r->client_name = "mail.example.org";
	r->client_port = 50123;
	r->reverse_client_name = "mail.example.org";
	r->server_address = "198.51.100.25";
	r->server_port = 25;
	r->helo_name = "mail.example.org";
	r->sender = "alice@example.org";
	r->recipient = "bob@example.net";
	r->recipient_count = 3; /* not sent at RCPT */
	r->instance = "1a2b.65f0c1d2.3e4f5.0";
	r->size = 12345;
	r->encryption_protocol = "TLSv1.3";
	r->encryption_cipher = "TLS_AES_256_GCM_SHA384";
	r->encryption_keysize = 256;
}

static void test_request_golden(void)
{
	struct smtp_delegation_request r;
	size_t len;
	fill_rcpt(&r);
	char *out = encode(&r, 0, &len);
	if (out)
		CHECK_MEM_EQ(out, len, golden_rcpt, sizeof(golden_rcpt) - 1);

	/* nothing known: what Postfix sends for each unknown value */
	smtp_delegation_request_init(&r);
	out = encode(&r, 0, &len);
	static const char unknown[] =
		"request=smtpd_access_policy\nprotocol_state=CONNECT\nprotocol_name=SMTP\n"
		"client_address=unknown\nclient_name=unknown\nclient_port=unknown\n"
		"reverse_client_name=unknown\nserver_address=unknown\nserver_port=unknown\n"
		"helo_name=\nsender=\nrecipient=\nrecipient_count=0\nqueue_id=\ninstance=\n"
		"size=0\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n"
		"ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
		"encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n"
		"policy_context=\n\n";
	if (out)
		CHECK_MEM_EQ(out, len, unknown, sizeof(unknown) - 1);
}

static void test_request_fields(void)
{
	struct smtp_delegation_request r;
	size_t len;
	/* recipient_count is sent at DATA and END-OF-MESSAGE (BDAT is DATA) */
	fill_rcpt(&r);
	r.protocol_state = SMTP_DELEGATION_DATA;
	char *out = encode(&r, 0, &len);
	CHECK(out && strstr(out, "\nprotocol_state=DATA\n") && strstr(out, "\nrecipient_count=3\n"));
	r.protocol_state = SMTP_DELEGATION_END_OF_MESSAGE;
	out = encode(&r, 0, &len);
	CHECK(out && strstr(out, "\nprotocol_state=END-OF-MESSAGE\n") &&
	      strstr(out, "\nrecipient_count=3\n"));
	r.protocol_state = SMTP_DELEGATION_MAIL;
	out = encode(&r, 0, &len);
	CHECK(out && strstr(out, "\nrecipient_count=0\n"));
	/* the other fields */
	r.protocol_state = SMTP_DELEGATION_ETRN;
	r.etrn_domain = "example.net";
	r.stress = true;
	r.sasl_method = "PLAIN";
	r.sasl_username = "alice";
	r.sasl_sender = "";
	r.ccert_subject = "client+20one";
	r.ccert_issuer = "CA";
	r.ccert_fingerprint = "AB:CD";
	r.ccert_pubkey_fingerprint = "EF:01";
	r.policy_context = "ctx";
	r.queue_id = "4XyZ1";
	r.size = UINT64_MAX;
	out = encode(&r, 0, &len);
	CHECK(out && strstr(out, "\nprotocol_state=ETRN\n") && strstr(out, "\netrn_domain=example.net\n") &&
	      strstr(out, "\nstress=yes\n") && strstr(out, "\nsasl_method=PLAIN\n") &&
	      strstr(out, "\nsasl_username=alice\n") && strstr(out, "\nccert_subject=client+20one\n") &&
	      strstr(out, "\nccert_issuer=CA\n") && strstr(out, "\nccert_fingerprint=AB:CD\n") &&
	      strstr(out, "\nccert_pubkey_fingerprint=EF:01\n") &&
	      strstr(out, "\npolicy_context=ctx\n\n") && strstr(out, "\nqueue_id=4XyZ1\n") &&
	      strstr(out, "\nsize=18446744073709551615\n"));
	/* Postfix 3.8's two, at the end */
	r.compatibility_level = "3.6";
	r.mail_version = "3.8.1";
	out = encode(&r, 0, &len);
	static const char tail[] = "\npolicy_context=ctx\ncompatibility_level=3.6\n"
				   "mail_version=3.8.1\n\n";
	if (out && len > sizeof(tail))
		CHECK_MEM_EQ(out + len - (sizeof(tail) - 1), sizeof(tail) - 1, tail, sizeof(tail) - 1);
	for (unsigned s = 0; s < SMTP_DELEGATION_STATE_MAX; s++)
		CHECK(strcmp(smtp_delegation_state_name((enum smtp_delegation_state)s), "?") != 0);
	CHECK_STR_EQ(smtp_delegation_state_name(SMTP_DELEGATION_STATE_MAX), "?");
}

static void test_request_bounds(void)
{
	struct smtp_delegation_request r;
	size_t len;
	char buf[64];
	/* no newline may reach the server inside a value: it would inject attributes */
	fill_rcpt(&r);
	r.helo_name = "evil\naction=OK";
	encode(&r, -EINVAL, &len);
	r.helo_name = "evil\r";
	encode(&r, -EINVAL, &len);
	fill_rcpt(&r);
	r.policy_context = "a\nb";
	encode(&r, -EINVAL, &len);
	fill_rcpt(&r);
	r.compatibility_level = "\n";
	encode(&r, -EINVAL, &len);
	/* value length */
	static char big[SMTP_DELEGATION_VALUE_MAX + 2];
	memset(big, 'a', SMTP_DELEGATION_VALUE_MAX);
	big[SMTP_DELEGATION_VALUE_MAX] = '\0';
	fill_rcpt(&r);
	r.sender = big;
	encode(&r, 0, &len);
	big[SMTP_DELEGATION_VALUE_MAX] = 'a';
	big[SMTP_DELEGATION_VALUE_MAX + 1] = '\0';
	encode(&r, -EMSGSIZE, &len);
	/* a small buffer: the size needed comes back, and nothing past cap is written */
	fill_rcpt(&r);
	memset(buf, 'Z', sizeof(buf));
	CHECK_INT_EQ(smtp_delegation_request_encode(&r, buf, 10, &len), -ENOSPC);
	CHECK_INT_EQ(len, sizeof(golden_rcpt) - 1);
	CHECK(buf[10] == 'Z');
	CHECK_INT_EQ(smtp_delegation_request_encode(&r, NULL, 0, &len), -ENOSPC);
	CHECK_INT_EQ(len, sizeof(golden_rcpt) - 1);
	char *exact = malloc(len);
	size_t len2;
	CHECK_INT_EQ(smtp_delegation_request_encode(&r, exact, len, &len2), 0);
	CHECK_MEM_EQ(exact, len2, golden_rcpt, sizeof(golden_rcpt) - 1);
	free(exact);
	r.protocol_state = SMTP_DELEGATION_STATE_MAX;
	encode(&r, -EINVAL, &len);
}

/* ---- replies ---- */

struct want {
	int rc;             /* of the last feed */
	const char *action; /* when rc == 1 */
	size_t used;        /* total bytes taken when rc == 1 (0: all of them) */
	unsigned dups, ignored;
};

/* Feed `in` in the pieces given by cuts (offsets, ascending, 0-terminated list of n), each
 * piece in an exact heap buffer. Returns the last rc and the total bytes used. */
static int feed_pieces(struct smtp_delegation_reader *r, const char *in, size_t n,
		       const size_t *cuts, size_t ncuts, size_t *total)
{
	size_t start = 0;
	int rc = 0;
	*total = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : n;
		if (end < start)
			continue;
		char *piece = malloc(end - start ? end - start : 1);
		memcpy(piece, in + start, end - start);
		size_t used;
		rc = smtp_delegation_reader_feed(r, piece, end - start, &used);
		free(piece);
		*total += used;
		if (rc != 0)
			return rc;
		CHECK_INT_EQ(used, end - start); /* need-more always takes everything */
		start = end;
	}
	return rc;
}

static void check_result(struct smtp_delegation_reader *r, int rc, size_t total, size_t n,
			 const struct want *w, const char *in, const char *how, size_t at)
{
	if (rc != w->rc) {
		fprintf(stderr, "  input \"%s\" fed %s (%zu)\n", in, how, at);
		CHECK_INT_EQ(rc, w->rc);
		return;
	}
	if (rc == 1) {
		struct mx_span a = smtp_delegation_reader_action(r);
		CHECK_MEM_EQ(a.ptr, a.len, w->action, strlen(w->action));
		CHECK_INT_EQ(total, w->used ? w->used : n);
		CHECK_INT_EQ(r->duplicate_actions, w->dups);
		CHECK_INT_EQ(r->ignored, w->ignored);
	}
	if (rc < 0) {
		/* the error sticks */
		size_t used;
		CHECK_INT_EQ(smtp_delegation_reader_feed(r, "x", 1, &used), w->rc);
		CHECK_INT_EQ(used, 0);
	}
}

/* Whole, byte by byte, and split in two at every offset. */
static void reply_case(const char *in, size_t n, unsigned flags, const struct want *w)
{
	struct smtp_delegation_reader *r = malloc(sizeof(*r));
	size_t total;
	int rc;
	smtp_delegation_reader_init(r, flags);
	rc = feed_pieces(r, in, n, NULL, 0, &total);
	check_result(r, rc, total, n, w, in, "whole", 0);
	/* the trailing count of a complete reply fed whole */
	if (rc == 1)
		CHECK_INT_EQ(r->trailing, w->used ? n - w->used : 0);

	smtp_delegation_reader_init(r, flags);
	size_t *cuts = calloc(n + 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	rc = feed_pieces(r, in, n, cuts, n ? n - 1 : 0, &total);
	check_result(r, rc, total, n, w, in, "bytewise", 0);
	free(cuts);

	for (size_t k = 1; k < n; k++) {
		smtp_delegation_reader_init(r, flags);
		rc = feed_pieces(r, in, n, &k, 1, &total);
		check_result(r, rc, total, n, w, in, "split", k);
	}
	free(r);
}

#define REPLY(in, flags, ...)                                                              \
	do {                                                                               \
		struct want w_ = { __VA_ARGS__ };                                          \
		reply_case(in, sizeof(in) - 1, flags, &w_);                                \
	} while (0)

static void test_reply_good(void)
{
	REPLY("action=DUNNO\n\n", 0, .rc = 1, .action = "DUNNO");
	/* everything after the first '=' is the value, blanks and '=' included */
	REPLY("action=REJECT a = b  \n\n", 0, .rc = 1, .action = "REJECT a = b  ");
	/* unknown attributes are ignored, before and after */
	REPLY("foo=bar\naction=OK\nx=\n\n", 0, .rc = 1, .action = "OK",
	      .ignored = 2);
	/* the first action wins (attr_scan_plain stops looking after it) */
	REPLY("action=OK\naction=REJECT\n\n", 0, .rc = 1, .action = "OK",
	      .dups = 1);
	/* an empty action is an action (classified below: Postfix permits) */
	REPLY("action=\n\n", 0, .rc = 1, .action = "");
	/* names are case-sensitive: ACTION is some other attribute */
	REPLY("ACTION=REJECT\naction=DUNNO\n\n", 0, .rc = 1, .action = "DUNNO",
	      .ignored = 1);
	/* "actionx", "actio" and long names are not the action */
	REPLY("actionx=1\nactio=2\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=3\n"
	      "action=OK\n\n", 0, .rc = 1, .action = "OK", .ignored = 3);
	/* UTF-8 in the action */
	REPLY("action=REJECT Gr\xc3\xbc\xc3\x9f" "e\n\n", SMTP_DELEGATION_UTF8, .rc = 1,
	      .action = "REJECT Gr\xc3\xbc\xc3\x9f" "e");
	/* without SMTP_DELEGATION_UTF8 any octets but NUL, CR, LF */
	REPLY("action=REJECT \xff\xfe\t\x01\n\n", 0, .rc = 1,
	      .action = "REJECT \xff\xfe\t\x01");
	/* trailing bytes after the reply: reported, not taken */
	REPLY("action=OK\n\nextra", 0, .rc = 1, .action = "OK", .used = 11);
	REPLY("action=OK\n\naction=REJECT\n\n", 0, .rc = 1, .action = "OK", .used = 11);
	/* a reply still coming */
	REPLY("action=OK\n", 0, .rc = 0);
	REPLY("action=OK", 0, .rc = 0);
	REPLY("", 0, .rc = 0);
}

static void test_reply_bad(void)
{
	/* no action */
	REPLY("\n", 0, .rc = -ENOMSG);
	REPLY("foo=bar\n\n", 0, .rc = -ENOMSG);
	/* a line without '=' (Postfix skips these, and fails "action" alone) */
	REPLY("action\n\n", 0, .rc = -EBADMSG);
	REPLY("garbage\naction=OK\n\n", 0, .rc = -EBADMSG);
	REPLY("action=OK\njunk\n\n", 0, .rc = -EBADMSG);
	/* an empty name */
	REPLY("=OK\n\n", 0, .rc = -EBADMSG);
	/* CRLF line ends: CR is refused anywhere */
	REPLY("action=OK\r\n\r\n", 0, .rc = -EBADMSG);
	REPLY("act\rion=OK\n\n", 0, .rc = -EBADMSG);
	/* NUL, and control characters in a name */
	REPLY("action=O\0K\n\n", 0, .rc = -EBADMSG);
	REPLY("ac\ttion=OK\n\n", 0, .rc = -EBADMSG);
	REPLY("\x7f=1\naction=OK\n\n", 0, .rc = -EBADMSG);
	/* not UTF-8, when it must be: overlong, a lone continuation, a surrogate */
	REPLY("action=REJECT \xc0\xaf\n\n", SMTP_DELEGATION_UTF8, .rc = -EBADMSG);
	REPLY("action=\x80\n\n", SMTP_DELEGATION_UTF8, .rc = -EBADMSG);
	REPLY("action=\xed\xa0\x80\n\n", SMTP_DELEGATION_UTF8, .rc = -EBADMSG);
	/* ... but only the action must be */
	REPLY("x=\xff\naction=OK\n\n", SMTP_DELEGATION_UTF8, .rc = 1, .action = "OK",
	      .ignored = 1);
}

static void test_reply_bounds(void)
{
	/* a line of exactly SMTP_DELEGATION_LINE_MAX octets, and one more */
	size_t n = SMTP_DELEGATION_LINE_MAX + 2;
	char *in = malloc(n + 2);
	memcpy(in, "action=", 7);
	memset(in + 7, 'a', SMTP_DELEGATION_LINE_MAX - 7);
	memcpy(in + SMTP_DELEGATION_LINE_MAX, "\n\n", 2);
	struct smtp_delegation_reader *r = malloc(sizeof(*r));
	size_t used;
	smtp_delegation_reader_init(r, 0);
	CHECK_INT_EQ(smtp_delegation_reader_feed(r, in, n, &used), 1);
	CHECK_INT_EQ(smtp_delegation_reader_action(r).len, SMTP_DELEGATION_ACTION_MAX);
	CHECK_INT_EQ(r->action[SMTP_DELEGATION_ACTION_MAX], '\0');
	memcpy(in, "action=", 7);
	memset(in + 7, 'a', SMTP_DELEGATION_LINE_MAX - 6);
	memcpy(in + SMTP_DELEGATION_LINE_MAX + 1, "\n\n", 2);
	smtp_delegation_reader_init(r, 0);
	CHECK_INT_EQ(smtp_delegation_reader_feed(r, in, n + 1, &used), -EMSGSIZE);
	CHECK_INT_EQ(used, SMTP_DELEGATION_LINE_MAX + 1);
	/* a long unknown attribute is bounded the same way, and its name too */
	memset(in, 'n', SMTP_DELEGATION_LINE_MAX + 1);
	smtp_delegation_reader_init(r, 0);
	CHECK_INT_EQ(smtp_delegation_reader_feed(r, in, SMTP_DELEGATION_LINE_MAX + 1, &used),
		     -EMSGSIZE);
	free(in);

	/* SMTP_DELEGATION_LINES_MAX lines, then one more */
	for (unsigned lines = SMTP_DELEGATION_LINES_MAX; lines <= SMTP_DELEGATION_LINES_MAX + 1;
	     lines++) {
		char *text = malloc(lines * 4 + 16);
		size_t len = 0;
		for (unsigned i = 0; i + 1 < lines; i++) {
			memcpy(text + len, "x=1\n", 4);
			len += 4;
		}
		memcpy(text + len, "action=OK\n\n", 11);
		len += 11;
		struct want w = { .rc = lines <= SMTP_DELEGATION_LINES_MAX ? 1 : -EMSGSIZE,
				  .action = "OK", .used = len, .ignored = lines - 1 };
		reply_case(text, len, 0, &w);
		free(text);
	}
	/* an endless stream of empty-valued attributes is stopped too */
	smtp_delegation_reader_init(r, 0);
	int rc = 0;
	unsigned rounds = 0;
	while (rc == 0 && rounds++ < 1000)
		rc = smtp_delegation_reader_feed(r, "a=\n", 3, &used);
	CHECK_INT_EQ(rc, -EMSGSIZE);
	CHECK_STR_EQ(smtp_delegation_reader_state_name(r->state), "failed");
	free(r);
	for (unsigned s = 0; s < SMTP_DELEGATION_READ_STATE_MAX; s++)
		CHECK(strcmp(smtp_delegation_reader_state_name(
				     (enum smtp_delegation_reader_state)s), "?") != 0);
}

/* ---- actions ---- */

static void act(const char *action, enum smtp_delegation_action_kind kind, unsigned code,
		const char *dsn, const char *text)
{
	struct smtp_delegation_action a;
	size_t n = strlen(action);
	char *copy = malloc(n ? n : 1);
	memcpy(copy, action, n);
	smtp_delegation_action_classify(mx_span_make(copy, n), &a);
	if (a.kind != kind)
		fprintf(stderr, "  action \"%s\"\n", action);
	CHECK_STR_EQ(smtp_delegation_action_kind_name(a.kind), smtp_delegation_action_kind_name(kind));
	CHECK_INT_EQ(a.code, code);
	if (dsn) {
		CHECK_STR_EQ(a.dsn, dsn);
		CHECK_MEM_EQ(a.text.ptr, a.text.len, text, strlen(text));
	} else {
		CHECK_STR_EQ(a.dsn, "");
	}
	free(copy);
}

/* The outcomes named in the comments were seen with Debian's Postfix 3.7.11 smtpd and a
 * scripted policy server (smtpd_relay_restrictions = check_policy_service ..., defer). */
static void test_action_classify(void)
{
	/* OK, RELAY; an all-numeric action is OK (Postfix: an out-of-band time stamp), so a
	 * bare reply code PERMITS; an action with no word at all permits ("has empty value") */
	act("OK", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("ok trailing text", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("RELAY", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("1712345678", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("550", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("450", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act("  \t", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	act(" , ,", SMTP_DELEGATION_ACTION_OK, 0, NULL, NULL);
	struct smtp_delegation_action a;
	smtp_delegation_action_classify(MX_SPAN_LIT("550"), &a);
	CHECK(a.numeric && !a.empty);
	smtp_delegation_action_classify(MX_SPAN_LIT(""), &a);
	CHECK(a.empty && !a.numeric);
	smtp_delegation_action_classify(mx_span_make(NULL, 5), &a);
	CHECK(a.empty);

	act("DUNNO", SMTP_DELEGATION_ACTION_DUNNO, 0, NULL, NULL);
	act("dunno whatever", SMTP_DELEGATION_ACTION_DUNNO, 0, NULL, NULL);
	/* REJECT and DEFER: dsn_split() of the text */
	act("REJECT", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.1", "");
	act("reject Go away", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.1", "Go away");
	act("REJECT 5.7.2 Go away", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.2", "Go away");
	act("REJECT\t5.7.2\tGo away", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.2", "Go away");
	act("REJECT 5.7.2", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.2", "");
	act("REJECT 5.7.2x text", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.1", "5.7.2x text");
	act("REJECT 3.7.2 text", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.1", "3.7.2 text");
	act("REJECT 5.1234.1 text", SMTP_DELEGATION_ACTION_REJECT, 0, "5.7.1", "5.1234.1 text");
	act("REJECT 5.123.123 x", SMTP_DELEGATION_ACTION_REJECT, 0, "5.123.123", "x");
	act("DEFER", SMTP_DELEGATION_ACTION_DEFER, 0, "4.7.1", "");
	act("DEFER 4.3.0 later", SMTP_DELEGATION_ACTION_DEFER, 0, "4.3.0", "later");
	act("DEFER_IF_PERMIT", SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT, 0, "4.7.1", "");
	act("defer_if_reject 4.7.0 hmm", SMTP_DELEGATION_ACTION_DEFER_IF_REJECT, 0, "4.7.0", "hmm");
	smtp_delegation_action_classify(MX_SPAN_LIT("DEFER_IF_PERMIT"), &a);
	CHECK_STR_EQ(a.default_text, "Service unavailable");
	smtp_delegation_action_classify(MX_SPAN_LIT("REJECT"), &a);
	CHECK_STR_EQ(a.default_text, "Access denied");

	/* 4NN/5NN text: the class of the DSN follows the code */
	act("550 Go away", SMTP_DELEGATION_ACTION_CODE, 550, "5.7.1", "Go away");
	act("450 4.7.1", SMTP_DELEGATION_ACTION_CODE, 450, "4.7.1", "");
	act("554 4.7.2 mixed", SMTP_DELEGATION_ACTION_CODE, 554, "5.7.2", "mixed");
	act("451 2.0.0 odd", SMTP_DELEGATION_ACTION_CODE, 451, "4.0.0", "odd");
	act("550\t5.1.1 tab", SMTP_DELEGATION_ACTION_CODE, 550, "5.1.1", "tab");
	smtp_delegation_action_classify(MX_SPAN_LIT("421 closing"), &a);
	CHECK(a.disconnect && a.code == 421);
	smtp_delegation_action_classify(MX_SPAN_LIT("521 closing"), &a);
	CHECK(a.disconnect);
	smtp_delegation_action_classify(MX_SPAN_LIT("554 no"), &a);
	CHECK(!a.disconnect);

	/* Not codes, not words: a restriction list to evaluate, where Postfix finds an
	 * unknown restriction and answers 451 4.3.5 Server configuration error */
	act("5.7.2", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("4.7.1 Try later", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("550 ", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("250 Ok", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("650 text", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("55 text", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("5500 text", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("5x0 text", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("permit_mynetworks, reject", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act(" REJECT", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	act("REJECTED", SMTP_DELEGATION_ACTION_RESTRICTIONS, 0, NULL, NULL);
	/* a lookup table anywhere (not behind a word of the table) */
	act("check_client_access hash:/etc/x", SMTP_DELEGATION_ACTION_LOOKUP_TABLE, 0, NULL, NULL);
	act("OK:", SMTP_DELEGATION_ACTION_LOOKUP_TABLE, 0, NULL, NULL);

	/* the words with arguments */
	static const struct {
		const char *action;
		enum smtp_delegation_action_kind kind;
		const char *args;
	} words[] = {
		{ "DISCARD", SMTP_DELEGATION_ACTION_DISCARD, "" },
		{ "discard spam", SMTP_DELEGATION_ACTION_DISCARD, "spam" },
		{ "HOLD  for review", SMTP_DELEGATION_ACTION_HOLD, "for review" },
		{ "FILTER smtp:[127.0.0.1]:10025", SMTP_DELEGATION_ACTION_FILTER,
		  "smtp:[127.0.0.1]:10025" },
		{ "REDIRECT abuse@example.net", SMTP_DELEGATION_ACTION_REDIRECT, "abuse@example.net" },
		{ "BCC archive@example.net", SMTP_DELEGATION_ACTION_BCC, "archive@example.net" },
		{ "PREPEND X-Policy: checked", SMTP_DELEGATION_ACTION_PREPEND, "X-Policy: checked" },
		{ "INFO seen", SMTP_DELEGATION_ACTION_INFO, "seen" },
		{ "WARN odd", SMTP_DELEGATION_ACTION_WARN, "odd" },
		{ "HANGUP", SMTP_DELEGATION_ACTION_HANGUP, "" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		smtp_delegation_action_classify(mx_span_cstr(words[i].action), &a);
		CHECK_STR_EQ(smtp_delegation_action_kind_name(a.kind),
			     smtp_delegation_action_kind_name(words[i].kind));
		CHECK_MEM_EQ(a.args.ptr, a.args.len, words[i].args, strlen(words[i].args));
	}
	for (unsigned k = 0; k < SMTP_DELEGATION_ACTION_KIND_MAX; k++)
		CHECK(strcmp(smtp_delegation_action_kind_name((enum smtp_delegation_action_kind)k),
			     "?") != 0);
}

/* A request's encoding read back by the reply reader: the two speak the same framing. */
static void test_round_trip(void)
{
	struct smtp_delegation_request r;
	size_t len, used;
	fill_rcpt(&r);
	char *out = encode(&r, 0, &len);
	struct smtp_delegation_reader *rd = malloc(sizeof(*rd));
	smtp_delegation_reader_init(rd, SMTP_DELEGATION_UTF8);
	/* a request has no action: the reader says so at its end, having read every line */
	CHECK_INT_EQ(smtp_delegation_reader_feed(rd, out, len, &used), -ENOMSG);
	CHECK_INT_EQ(used, len);
	CHECK_INT_EQ(rd->lines, 29);
	free(rd);
}

int main(void)
{
	RUN_TEST(test_request_golden);
	RUN_TEST(test_request_fields);
	RUN_TEST(test_request_bounds);
	RUN_TEST(test_reply_good);
	RUN_TEST(test_reply_bad);
	RUN_TEST(test_reply_bounds);
	RUN_TEST(test_action_classify);
	RUN_TEST(test_round_trip);
	return TEST_RESULT();
}
