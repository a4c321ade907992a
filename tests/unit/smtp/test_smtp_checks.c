/* smtp/smtp_checks.c: the four check sets applied to a streaming message. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "smtp/smtp_checks.h"
#include "testing.h"

static struct checks_scratch *scratch;

static struct checks *set_of(const char *text)
{
	struct checks_source src = { "pcre:test", true, text, strlen(text) };
	struct checks *c = NULL;
	char err[256] = "";
	int rc = checks_compile(&src, 1, &c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  compile: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(checks_scratch_alloc(c, &scratch), 0);
	return c;
}

struct out {
	char stored[65536];
	size_t n;
	char log[16384];
	size_t logn;
	char hits[16384]; /* "class:subject=value\n" */
	size_t hitn;
};

static int on_emit(void *ctx, const char *p, size_t n)
{
	struct out *o = ctx;
	if (o->n + n > sizeof(o->stored))
		return -ENOSPC;
	memcpy(o->stored + o->n, p, n);
	o->n += n;
	return 0;
}

static void on_log(void *ctx, const struct smtp_checks_log *ev)
{
	struct out *o = ctx;
	char line[1024];
	size_t n = smtp_checks_log_format(line, sizeof(line), ev, "QID", "host[192.0.2.1]",
					  "s@example.com", "r@example.net", "ESMTP", "helo.test");
	if (o->logn + n + 1 < sizeof(o->log)) {
		memcpy(o->log + o->logn, line, n);
		o->logn += n;
		o->log[o->logn++] = '\n';
		o->log[o->logn] = '\0';
	}
}

static void on_lookup(void *ctx, enum smtp_checks_class cls, const char *s, size_t n,
		      const struct checks_result *res)
{
	struct out *o = ctx;
	int w = snprintf(o->hits + o->hitn, sizeof(o->hits) - o->hitn, "%d:%.*s=%s\n", (int)cls,
			 (int)n, s, res->value);
	if (w > 0 && (size_t)w < sizeof(o->hits) - o->hitn)
		o->hitn += (size_t)w;
}

static const struct smtp_checks_ops ops = { on_emit, on_log, on_lookup };

struct msg_result {
	struct out o;
	struct smtp_checks_verdict v;
	char reply[256], hold[256], redirect[256], filter[256];
	char bcc[SMTP_CHECKS_BCC_MAX][256];
};

/* An object that checked earlier messages (of other tests, other configurations, some cut
 * off mid-way): run() with reuse rebinds it instead of making a new one, as a worker's pool
 * does, and keeps it after the message. */
static struct smtp_checks *pooled;

/* Feed a message (CRLF text): headers are split here as the engine does, the body is given
 * in pieces of `piece` bytes (0 = whole). */
static void run_as(const struct smtp_checks_config *cfg, const char *msg, size_t piece,
		   struct msg_result *r, bool reuse)
{
	memset(r, 0, sizeof(*r));
	struct smtp_checks *m = NULL;
	if (reuse && pooled) {
		CHECK_INT_EQ(smtp_checks_rebind(pooled, cfg, scratch, &ops, &r->o), 0);
		m = pooled;
		pooled = NULL;
	} else {
		CHECK_INT_EQ(smtp_checks_new(cfg, scratch, &ops, &r->o, &m), 0);
	}
	if (!m)
		return;
	smtp_checks_begin(m);
	size_t len = strlen(msg), pos = 0;
	while (pos < len && !(msg[pos] == '\r' && msg[pos + 1] == '\n')) {
		size_t name = strcspn(msg + pos, ": \t\r\n");
		if (name == 0 || msg[pos + name] != ':')
			break; /* not a header: the engine starts the body here */
		size_t end = pos;
		do {
			const char *e = strstr(msg + end, "\r\n");
			end = e ? (size_t)(e - msg) + 2 : len;
		} while (end < len && (msg[end] == ' ' || msg[end] == '\t'));
		CHECK_INT_EQ(smtp_checks_header(m, msg + pos, end - pos), 0);
		pos = end;
	}
	CHECK_INT_EQ(smtp_checks_headers_end(m), 0);
	while (pos < len) {
		size_t n = len - pos;
		if (piece && n > piece)
			n = piece;
		CHECK_INT_EQ(smtp_checks_body(m, msg + pos, n), 0);
		pos += n;
	}
	CHECK_INT_EQ(smtp_checks_end(m, &r->v), 0);
	snprintf(r->reply, sizeof(r->reply), "%s", r->v.reply ? r->v.reply : "");
	snprintf(r->hold, sizeof(r->hold), "%s", r->v.hold_reason ? r->v.hold_reason : "");
	snprintf(r->redirect, sizeof(r->redirect), "%s", r->v.redirect ? r->v.redirect : "");
	snprintf(r->filter, sizeof(r->filter), "%s", r->v.filter ? r->v.filter : "");
	for (unsigned i = 0; i < r->v.nbcc; i++)
		snprintf(r->bcc[i], sizeof(r->bcc[i]), "%s", r->v.bcc[i]);
	/* the verdict's strings die with it (or with its next message): use the copies */
	if (reuse && !pooled)
		pooled = m;
	else
		smtp_checks_free(m);
}

static void run(const struct smtp_checks_config *cfg, const char *msg, size_t piece,
		struct msg_result *r)
{
	run_as(cfg, msg, piece, r, false);
}

/* Whole, byte by byte and in every piece size up to 64: the same result, with a new object
 * and (odd pieces) with one that served earlier messages. */
static void run_all_ways(const struct smtp_checks_config *cfg, const char *msg,
			 struct msg_result *whole)
{
	static struct msg_result r;
	run(cfg, msg, 0, whole);
	for (size_t piece = 1; piece <= 64; piece++) {
		run_as(cfg, msg, piece, &r, piece % 2 == 1);
		CHECK_MEM_EQ(r.o.stored, r.o.n, whole->o.stored, whole->o.n);
		CHECK_MEM_EQ(r.o.hits, r.o.hitn, whole->o.hits, whole->o.hitn);
		CHECK_MEM_EQ(r.o.log, r.o.logn, whole->o.log, whole->o.logn);
		CHECK_INT_EQ(r.v.outcome, whole->v.outcome);
	}
}

static struct smtp_checks_config cfg_all(struct checks *h, struct checks *mh, struct checks *nh,
					 struct checks *b)
{
	struct smtp_checks_config cfg = { .set = { h, mh, nh, b },
					  .body_checks_size_limit = 51200,
					  .line_length_limit = 2048,
					  .header_size_limit = 102400 };
	return cfg;
}

static void test_header_actions(void)
{
	struct checks *h = set_of("/^Subject: drop/ IGNORE\n"
				  "/^Subject: strip/ STRIP stripped\n"
				  "/^Subject: replace (.*)/ REPLACE X-Old-Subject: $1\n"
				  "/^Subject: prepend/ PREPEND X-Seen: yes\n"
				  "/^Subject: warn/ WARN careful\n"
				  "/^Subject: info/ INFO noted\n"
				  "/^Subject: bad-prepend/ PREPEND not a header\n"
				  "/^Subject: frob/ FROB it\n"
				  "/^X-Hold/ HOLD held here\n"
				  "/^X-Hold2/ HOLD second\n"
				  "/^X-Filter: (\\S+)/ FILTER $1\n"
				  "/^X-Bcc: (\\S+)/ BCC $1\n"
				  "/^X-Bad-Bcc/ BCC nobody\n");
	struct smtp_checks_config cfg = cfg_all(h, h, h, NULL);
	static struct msg_result r;
	run_all_ways(&cfg,
		     "Subject: drop me\r\nSubject: strip me\r\nSubject: replace old\r\n"
		     "Subject: prepend\r\n\tfolded\r\nSubject: warn\r\nSubject: info\r\n"
		     "Subject: bad-prepend\r\nSubject: frob\r\nX-Hold: 1\r\nX-Hold2: 2\r\n"
		     "X-Filter: smtp:[10.0.0.1]:10025\r\nX-Bcc: a@b.test\r\nX-Bcc: c@d.test\r\n"
		     "X-Bad-Bcc: 1\r\n\r\nbody\r\n",
		     &r);
	CHECK_STR_EQ(r.o.stored,
		     "X-Old-Subject: old\r\nX-Seen: yes\r\nSubject: prepend\r\n\tfolded\r\n"
		     "Subject: warn\r\nSubject: info\r\nSubject: bad-prepend\r\nSubject: frob\r\n"
		     "X-Hold: 1\r\nX-Hold2: 2\r\nX-Filter: smtp:[10.0.0.1]:10025\r\n"
		     "X-Bcc: a@b.test\r\nX-Bcc: c@d.test\r\nX-Bad-Bcc: 1\r\n\r\nbody\r\n");
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_ACCEPT);
	CHECK(r.v.hold);
	CHECK_STR_EQ(r.hold, "held here");
	CHECK_STR_EQ(r.filter, "smtp:[10.0.0.1]:10025");
	CHECK_INT_EQ(r.v.nbcc, 2);
	if (r.v.nbcc == 2) {
		CHECK_STR_EQ(r.bcc[0], "a@b.test");
		CHECK_STR_EQ(r.bcc[1], "c@d.test");
	}
	/* the subject of a folded header keeps its newline (no CR) */
	CHECK(strstr(r.o.hits, "0:Subject: prepend\n\tfolded=PREPEND X-Seen: yes\n") != NULL);
	/* Postfix's log lines */
	CHECK(strstr(r.o.log, "QID: strip: header Subject: strip me from host[192.0.2.1]; "
			      "from=<s@example.com> to=<r@example.net> proto=ESMTP "
			      "helo=<helo.test>: stripped\n") != NULL);
	CHECK(strstr(r.o.log, "QID: warning: header Subject: warn from host[192.0.2.1];") != NULL);
	CHECK(strstr(r.o.log, "QID: info: header Subject: info from ") != NULL);
	CHECK(strstr(r.o.log, "QID: hold: header X-Hold: 1 from ") != NULL);
	CHECK(strstr(r.o.log, "hold: header X-Hold2") == NULL); /* HOLD counts once */
	CHECK(strstr(r.o.log, "warning: unknown command in header_checks map: FROB it") != NULL);
	CHECK(strstr(r.o.log, "warning: bad PREPEND header text \"not a header\"") != NULL);
	CHECK(strstr(r.o.log, "warning: bad BCC address \"nobody\"") != NULL);
	CHECK(strstr(r.o.log, "ignore") == NULL); /* IGNORE does not log */
	checks_free(h);
}

static void test_verdicts(void)
{
	static struct msg_result r;
	struct checks *h = set_of("/^Subject: (spam)/ REJECT go away $1\n"
				  "/^Subject: dsn/ REJECT 4.7.0 try later\n"
				  "/^Subject: plain/ REJECT\n"
				  "/^Subject: discard/ DISCARD dropped\n"
				  "/^Subject: redirect/ REDIRECT x@y.test\n"
				  "/^Subject: pass/ PASS\n"
				  "/^X-After/ REJECT after\n");
	struct checks *b = set_of("/^bad body/ REJECT body says no\n");
	struct smtp_checks_config cfg = cfg_all(h, h, h, b);
	run_all_ways(&cfg, "Subject: spam\r\nX-After: 1\r\n\r\nok\r\n", &r);
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_REJECT);
	CHECK_INT_EQ(r.v.code, 550);
	CHECK_STR_EQ(r.reply, "5.7.1 go away spam");
	CHECK(strstr(r.o.log, "QID: reject: header Subject: spam from host[192.0.2.1]; "
			      "from=<s@example.com> to=<r@example.net> proto=ESMTP "
			      "helo=<helo.test>: 5.7.1 go away spam\n") != NULL);
	CHECK(strstr(r.o.hits, "X-After") == NULL); /* REJECT stops inspection */
	run(&cfg, "Subject: dsn\r\n\r\n", 0, &r);
	CHECK_INT_EQ(r.v.code, 451);
	CHECK_STR_EQ(r.reply, "4.7.0 try later");
	run(&cfg, "Subject: plain\r\n\r\n", 0, &r);
	CHECK_INT_EQ(r.v.code, 550);
	CHECK_STR_EQ(r.reply, "5.7.1 message content rejected");
	run(&cfg, "Subject: discard\r\nX-After: 1\r\n\r\n", 0, &r);
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_DISCARD);
	run(&cfg, "Subject: redirect\r\nX-After: 1\r\n\r\n", 0, &r);
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_ACCEPT);
	CHECK_STR_EQ(r.redirect, "x@y.test");
	run(&cfg, "Subject: pass\r\nX-After: 1\r\n\r\nbad body\r\n", 0, &r);
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_ACCEPT);
	CHECK(strstr(r.o.log, "QID: pass: header Subject: pass") != NULL);
	run_all_ways(&cfg, "Subject: x\r\n\r\nfine\r\nbad body here\r\n", &r);
	CHECK_INT_EQ(r.v.outcome, SMTP_CHECKS_REJECT);
	CHECK(strstr(r.o.log, "QID: reject: body bad body here from ") != NULL);
	checks_free(h);
	checks_free(b);
}

static void test_body_actions_and_limits(void)
{
	static struct msg_result r;
	struct checks *b = set_of("/^drop/ IGNORE\n/^repl/ REPLACE replaced\n"
				  "/^pre/ PREPEND before\n/^count/ WARN seen\n/^x{10}$/ WARN piece\n"
				  "/^$/ INFO b-empty\n");
	struct smtp_checks_config cfg = cfg_all(NULL, NULL, NULL, b);
	run_all_ways(&cfg, "Subject: a\r\n\r\ndrop\r\nrepl\r\npre\r\nkeep\r\nlast-no-crlf", &r);
	CHECK_STR_EQ(r.o.stored,
		     "Subject: a\r\n\r\nreplaced\r\nbefore\r\npre\r\nkeep\r\nlast-no-crlf");
	/* body_checks_size_limit: lines that start past the limit are not inspected */
	cfg.body_checks_size_limit = 30;
	run(&cfg, "\r\ncount 1 (starts at 2)\r\ncount 2 (at 24)\r\ncount 3 (past)\r\n", 0, &r);
	CHECK(strstr(r.o.log, "count 1") && strstr(r.o.log, "count 2"));
	CHECK(strstr(r.o.log, "count 3") == NULL);
	/* line_length_limit: a long line is inspected in pieces */
	cfg.body_checks_size_limit = 0;
	cfg.line_length_limit = 10;
	run_all_ways(&cfg, "\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", &r);
	CHECK_STR_EQ(r.o.stored, "\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
	CHECK(strstr(r.o.hits, "3:xxxxxxxxxx=WARN piece\n3:xxxxxxxxxx=WARN piece\n3:xxxxxxxxxx=WARN piece\n") != NULL);
	/* a line of exactly line_length_limit bytes is one line, however it is split */
	run_all_ways(&cfg, "\r\nxxxxxxxxxx\r\nxxxxxxxxx\r\nxxxxxxxxxx\r", &r);
	CHECK_STR_EQ(r.o.hits, "3:=INFO b-empty\n3:xxxxxxxxxx=WARN piece\n3:xxxxxxxxxx=WARN piece\n");
	CHECK_STR_EQ(r.o.stored, "\r\nxxxxxxxxxx\r\nxxxxxxxxx\r\nxxxxxxxxxx\r");
	checks_free(b);
}

/* A body nothing inspects is stored in runs (sc_body_pass): byte for byte what the line by
 * line path stores (forced here by a body_checks set that never matches), bare LFs made
 * CRLF, lone CRs and long lines kept, in every split; and a message that turns plain only
 * mid-way (a reject stops the inspection) or is multipart stays on the line path. */
static void test_plain_body(void)
{
	static struct msg_result fast, slow;
	struct checks *h = set_of("/^Subject: reject me/ REJECT no\n");
	struct checks *never = set_of("/^NEVER-MATCHES-ANY-LINE$/ REJECT no\n");
	static const char *const msgs[] = {
		"Subject: a\r\n\r\nline 1\r\nbare lf\nlone\rcr\r\n\n\r\n\r\r\nlast",
		"Subject: a\r\n\r\n\nx\n\n",
		"Subject: a\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxx\r\nxxxxxxxxx\r\r\nyyyyyyyyyy\r\n"
		"zzzzzzzzzzzzzzzzzzzz\nend\r",
		"Subject: reject me\r\n\r\nbody\nbare\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\n--b\r\nX: y\n\nin part\n"
		"--b--\nafter\n",
		"Subject: no body",
	};
	for (size_t limit = 10; limit <= 2048; limit += 2038) {
		for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
			struct smtp_checks_config fc = cfg_all(h, NULL, NULL, NULL);
			struct smtp_checks_config sc = cfg_all(h, NULL, NULL, never);
			fc.line_length_limit = sc.line_length_limit = limit;
			run(&sc, msgs[i], 0, &slow);
			run_all_ways(&fc, msgs[i], &fast);
			CHECK_MEM_EQ(fast.o.stored, fast.o.n, slow.o.stored, slow.o.n);
			CHECK_INT_EQ(fast.v.outcome, slow.v.outcome);
			for (size_t piece = 1; piece <= 7; piece++) {
				run_as(&fc, msgs[i], piece, &fast, piece % 2 == 0);
				CHECK_MEM_EQ(fast.o.stored, fast.o.n, slow.o.stored, slow.o.n);
			}
		}
	}
	checks_free(h);
	checks_free(never);
}

/* Which set sees which header: top-level, MIME parts, message/rfc822, MIME headers. */
static void test_mime_classes(void)
{
	static struct msg_result r;
	struct checks *h = set_of("/^(.*)$/ INFO h\n");
	struct checks *mh = set_of("/^(.*)$/ INFO m\n");
	struct checks *nh = set_of("/^(.*)$/ INFO n\n");
	struct checks *b = set_of("/^(.*)$/ INFO b\n");
	struct smtp_checks_config cfg = cfg_all(h, mh, nh, b);
	const char *msg =
		"From: a@example.com\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n\r\n"
		"preamble\r\n--XX\r\nContent-Type: text/plain\r\nX-Part: 1\r\n\r\nhello\r\n"
		"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: nested\r\n"
		"Content-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nX-Inner: 1\r\n\r\n"
		"inner\r\n--YY--\r\n--XX--\r\nepilogue\r\n";
	run_all_ways(&cfg, msg, &r);
	CHECK_STR_EQ(r.o.hits,
		     "0:From: a@example.com=INFO h\n"
		     "1:MIME-Version: 1.0=INFO m\n"
		     "1:Content-Type: multipart/mixed;\n boundary=\"XX\"=INFO m\n"
		     "3:=INFO b\n3:preamble=INFO b\n3:--XX=INFO b\n"
		     "1:Content-Type: text/plain=INFO m\n1:X-Part: 1=INFO m\n"
		     "3:=INFO b\n3:hello=INFO b\n3:--XX=INFO b\n"
		     "1:Content-Type: message/rfc822=INFO m\n3:=INFO b\n"
		     "2:Subject: nested=INFO n\n"
		     "1:Content-Type: multipart/alternative; boundary=YY=INFO m\n3:=INFO b\n"
		     "3:--YY=INFO b\n1:X-Inner: 1=INFO m\n3:=INFO b\n3:inner=INFO b\n"
		     "3:--YY--=INFO b\n3:--XX--=INFO b\n3:epilogue=INFO b\n");
	CHECK_STR_EQ(r.o.stored, msg); /* INFO changes nothing */
	/* a header block that ends without an empty line gets one, as mime_state inserts */
	run_all_ways(&cfg, "Subject: x\r\nnot a header\r\n", &r);
	CHECK_STR_EQ(r.o.hits, "0:Subject: x=INFO h\n3:=INFO b\n3:not a header=INFO b\n");
	CHECK_STR_EQ(r.o.stored, "Subject: x\r\n\r\nnot a header\r\n");
	checks_free(h);
	checks_free(mh);
	checks_free(nh);
	checks_free(b);
}

/* header_size_limit on the headers of a MIME part: checked and stored truncated, with a
 * line end, whatever the number of continuation lines. */
static void test_part_header_limit(void)
{
	static struct msg_result r;
	static char msg[4096];
	struct checks *mh = set_of("/^X-Long: (.*)$/ INFO [$1]\n");
	struct smtp_checks_config cfg = cfg_all(NULL, mh, NULL, NULL);
	cfg.header_size_limit = 48;
	size_t w = (size_t)snprintf(msg, sizeof(msg), "Content-Type: multipart/mixed; boundary=b\r\n"
				    "\r\n--b\r\nX-Long: 0123456789abcdef\r\n");
	for (int i = 1; i <= 40; i++)
		w += (size_t)snprintf(msg + w, sizeof(msg) - w, " %d\r\n", i);
	snprintf(msg + w, sizeof(msg) - w, "\r\nbody\r\n--b--\r\n");
	run_all_ways(&cfg, msg, &r);
	/* the subject: the first 48 bytes of the unfolded header */
	CHECK(strstr(r.o.hits, "1:X-Long: 0123456789abcdef\n 1\n 2\n 3\n 4\n 5\n 6\n 7\n 8=INFO "
			       "[0123456789abcdef\n 1\n 2\n 3\n 4\n 5\n 6\n 7\n 8]\n") != NULL);
	/* stored: at most 2 * 48 + 4 bytes of it, ending in CRLF, then the rest intact */
	const char *h = strstr(r.o.stored, "X-Long: "), *e = h ? strstr(h, "\r\n\r\nbody\r\n--b--\r\n") : NULL;
	CHECK(h && e);
	if (h && e) {
		CHECK((size_t)(e + 2 - h) <= 2 * 48 + 4);
		CHECK(strstr(h, " 9\r\n") != NULL);
		CHECK(strstr(h, " 40\r\n") == NULL);
	}
	checks_free(mh);
}

static void test_new_rejects_bad_config(void)
{
	struct smtp_checks *m = NULL;
	struct smtp_checks_config cfg = cfg_all(NULL, NULL, NULL, NULL);
	cfg.line_length_limit = 0;
	struct out o;
	CHECK_INT_EQ(smtp_checks_new(&cfg, scratch, &ops, &o, &m), -EINVAL);
	/* a rebind to bad limits changes nothing: the object still checks for its old ones */
	struct smtp_checks_config good = cfg_all(NULL, NULL, NULL, NULL);
	CHECK_INT_EQ(smtp_checks_new(&good, scratch, &ops, &o, &m), 0);
	CHECK_INT_EQ(smtp_checks_rebind(m, &cfg, scratch, &ops, &o), -EINVAL);
	smtp_checks_free(m);
	CHECK_STR_EQ(smtp_checks_class_name(SMTP_CHECKS_NESTED_HEADER), "nested_header_checks");
	CHECK_STR_EQ(smtp_checks_outcome_name(SMTP_CHECKS_DISCARD), "discard");
	CHECK_STR_EQ(smtp_checks_outcome_name(SMTP_CHECKS_OUTCOME_MAX), "?");
}

int main(void)
{
	RUN_TEST(test_header_actions);
	RUN_TEST(test_verdicts);
	RUN_TEST(test_body_actions_and_limits);
	RUN_TEST(test_mime_classes);
	RUN_TEST(test_part_header_limit);
	RUN_TEST(test_new_rejects_bad_config);
	RUN_TEST(test_plain_body);
	/* a reused object: the tests again, each message on the one that served the last */
	RUN_TEST(test_header_actions);
	RUN_TEST(test_part_header_limit);
	RUN_TEST(test_mime_classes);
	smtp_checks_free(pooled);
	checks_scratch_free(scratch);
	return TEST_RESULT();
}
