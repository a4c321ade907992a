/* The engine's API contract (smtp/smtp_session.h) where the golden transcripts cannot
 * look: output backpressure, spans and their lifetime, verdict bookkeeping, memory, the
 * defaults, and the names of every enum value. Conversations themselves are in
 * tests/golden/. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "smtp/smtp_session.h"
#include "testing.h"

static struct smtp_config cfg;
static const struct smtp_client_info client = { .addr = "192.0.2.1", .port = 1025 };

static struct smtp_session *greeted(void)
{
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	CHECK(s != NULL);
	smtp_session_greet(s);
	return s;
}

/* Take the output as a string (and mark it sent). */
static char *take_output(struct smtp_session *s)
{
	struct mx_span out = smtp_session_output(s);
	char *p = malloc(out.len + 1);
	memcpy(p, out.ptr, out.len);
	p[out.len] = '\0';
	smtp_session_output_done(s, out.len);
	return p;
}

static void expect_output(struct smtp_session *s, const char *want)
{
	char *got = take_output(s);
	CHECK_STR_EQ(got, want);
	free(got);
}

/* Feed `text` whole, accepting every verdict; returns the events' names joined by ' '. */
static void feed_accepting(struct smtp_session *s, const char *text, char *names, size_t cap)
{
	size_t off = 0, len = strlen(text);
	names[0] = '\0';
	for (;;) {
		size_t used;
		struct smtp_event ev = smtp_session_step(s, text + off, len - off, &used);
		off += used;
		if (ev.type == SMTP_EV_NONE)
			break;
		CHECK(ev.type != SMTP_EV_BLOCKED);
		if (ev.type == SMTP_EV_BLOCKED)
			break;
		snprintf(names + strlen(names), cap - strlen(names), "%s%s", names[0] ? " " : "",
			 smtp_event_name(ev.type));
		if (ev.needs_verdict) {
			struct smtp_verdict v = { .queue_id = "QID" };
			CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
		}
	}
}

static void test_defaults_are_postfix(void)
{
	struct smtp_config d;
	smtp_config_defaults(&d);
	/* postconf -d (Postfix 3.7), and the 3.9 anti-smuggling defaults */
	CHECK_INT_EQ(d.line_length_limit, 2048);
	CHECK_INT_EQ(d.message_size_limit, 10240000);
	CHECK_INT_EQ(d.header_size_limit, 102400);
	CHECK_INT_EQ(d.hopcount_limit, 50);
	CHECK_INT_EQ(d.recipient_limit, 1000);
	CHECK_INT_EQ(d.soft_error_limit, 10);
	CHECK_INT_EQ(d.hard_error_limit, 20);
	CHECK_INT_EQ(d.junk_command_limit, 100);
	CHECK_INT_EQ(d.error_sleep_ms, 1000);
	CHECK_INT_EQ(d.bare_newline, SMTP_BARE_NEWLINE_NORMALIZE);
	CHECK(d.forbid_unauth_pipelining && !d.helo_required && !d.disable_vrfy_command &&
	      !d.strict_rfc821_envelopes);
	CHECK(d.enable_pipelining && d.enable_chunking && d.enable_smtputf8 && d.enable_8bitmime);
	CHECK(d.enable_dsn); /* Postfix offers DSN unless smtpd_discard_ehlo_keywords has dsn */
	CHECK(d.myhostname && d.banner && d.mail_name);

	/* and against Debian's Postfix: without it this fails, naming the package */
	if (access("/usr/sbin/postconf", X_OK) != 0) {
		fprintf(stderr, "  FAIL: /usr/sbin/postconf is missing: install Debian package "
				"'postfix' (deploy/install-deps.sh installs it)\n");
		CHECK(false);
		return;
	}
	FILE *p = popen("/usr/sbin/postconf -d line_length_limit message_size_limit "
			"header_size_limit hopcount_limit smtpd_recipient_limit smtpd_soft_error_limit "
			"2>/dev/null",
			"r");
	char line[256];
	int seen = 0;
	while (p && fgets(line, sizeof(line), p)) {
		char name[64];
		unsigned long long v;
		if (sscanf(line, "%63s = %llu", name, &v) != 2)
			continue;
		seen++;
		if (strcmp(name, "line_length_limit") == 0)
			CHECK_INT_EQ(d.line_length_limit, v);
		else if (strcmp(name, "message_size_limit") == 0)
			CHECK_INT_EQ(d.message_size_limit, v);
		else if (strcmp(name, "header_size_limit") == 0)
			CHECK_INT_EQ(d.header_size_limit, v);
		else if (strcmp(name, "hopcount_limit") == 0)
			CHECK_INT_EQ(d.hopcount_limit, v);
		else if (strcmp(name, "smtpd_recipient_limit") == 0)
			CHECK_INT_EQ(d.recipient_limit, v);
		else if (strcmp(name, "smtpd_soft_error_limit") == 0)
			CHECK_INT_EQ(d.soft_error_limit, v);
	}
	CHECK(p && pclose(p) == 0);
	CHECK_INT_EQ(seen, 6); /* every default asked for was compared */
	printf("     (compared %d defaults with the installed postconf)\n", seen);
}

static void test_names(void)
{
	for (int t = 0; t < SMTP_EV_MAX; t++)
		CHECK(strcmp(smtp_event_name((enum smtp_event_type)t), "?") != 0);
	CHECK_STR_EQ(smtp_event_name(SMTP_EV_MAX), "?");
	for (int k = 0; k < SMTP_ERR_KIND_MAX; k++)
		CHECK(strcmp(smtp_error_kind_name((enum smtp_error_kind)k), "?") != 0);
	CHECK_STR_EQ(smtp_error_kind_name(SMTP_ERR_KIND_MAX), "?");
}

static void test_spans_point_into_input(void)
{
	struct smtp_session *s = greeted();
	char names[256];
	expect_output(s, "220 mx.example.net ESMTP mxgate\r\n");
	feed_accepting(s, "EHLO c.example\r\n", names, sizeof(names));
	const char *in = "MAIL FROM:<a@example.org> BODY=7BIT\r\n";
	size_t used;
	struct smtp_event ev = smtp_session_step(s, in, strlen(in), &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_MAIL);
	CHECK_INT_EQ(used, strlen(in));
	CHECK(ev.u.mail.addr.ptr == in + 11);
	CHECK_MEM_EQ(ev.u.mail.addr.ptr, ev.u.mail.addr.len, "a@example.org", 13);
	CHECK_MEM_EQ(ev.u.mail.params.ptr, ev.u.mail.params.len, "BODY=7BIT", 9);
	CHECK_INT_EQ(ev.u.mail.body, SMTP_BODY_7BIT);
	CHECK(smtp_session_verdict_pending(s));

	/* while the verdict is pending nothing moves, whatever arrives */
	ev = smtp_session_step(s, "RCPT TO:<b@c>\r\n", 15, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_BLOCKED);
	CHECK_INT_EQ(used, 0);
	struct smtp_verdict v = { 0 };
	CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	CHECK_INT_EQ(smtp_session_verdict(s, &v), -EINVAL);
	CHECK(!smtp_session_verdict_pending(s));
	expect_output(s, "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
			 "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
			 "250 CHUNKING\r\n250 2.1.0 Ok\r\n");

	/* a command line that arrives in pieces is assembled in the engine's buffer */
	ev = smtp_session_step(s, "RCPT TO:<b@", 11, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	CHECK_INT_EQ(used, 11);
	const char *tail = "example.net>\r\n";
	ev = smtp_session_step(s, tail, strlen(tail), &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_RCPT);
	CHECK_MEM_EQ(ev.u.rcpt.addr.ptr, ev.u.rcpt.addr.len, "b@example.net", 13);
	CHECK(!(ev.u.rcpt.addr.ptr >= tail && ev.u.rcpt.addr.ptr < tail + strlen(tail)));
	smtp_session_free(s);
}

static void test_verdict_without_event(void)
{
	struct smtp_session *s = greeted();
	struct smtp_verdict v = { 0 };
	CHECK_INT_EQ(smtp_session_verdict(s, &v), -EINVAL);
	size_t used = 99;
	struct smtp_event ev = smtp_session_step(s, NULL, 0, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	CHECK_INT_EQ(used, 0);
	smtp_session_free(s);
}

static void test_output_backpressure(void)
{
	/* 1000 pipelined recipients produce 14 KB of replies; the engine holds the input
	 * while its output is above the high-water mark, and no reply is lost or reordered */
	struct smtp_session *s = greeted();
	char names[256];
	feed_accepting(s, "EHLO c.example\r\nX", names, sizeof(names)); /* (X: bad on purpose) */
	free(take_output(s));
	/* that EHLO was followed by more bytes: a pipelining violation, session over */
	CHECK(smtp_session_closed(s));
	smtp_session_free(s);

	s = greeted();
	feed_accepting(s, "EHLO c.example\r\n", names, sizeof(names));
	feed_accepting(s, "MAIL FROM:<a@b>\r\n", names, sizeof(names));
	free(take_output(s));
	size_t n = 1000, len = 0;
	char *in = malloc(n * 32);
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(in + len, "RCPT TO:<r%zu@example.net>\r\n", i);
	size_t off = 0, blocked = 0, rcpts = 0, replies = 0;
	while (off < len || smtp_session_output(s).len) {
		size_t used;
		struct smtp_event ev = smtp_session_step(s, in + off, len - off, &used);
		off += used;
		if (ev.type == SMTP_EV_RCPT) {
			struct smtp_verdict v = { 0 };
			smtp_session_verdict(s, &v);
			rcpts++;
			CHECK(smtp_session_output(s).len <= 4096);
			continue;
		}
		if (ev.type == SMTP_EV_BLOCKED)
			blocked++;
		/* drain: the transport writes what it can */
		char *out = take_output(s);
		for (char *p = out; (p = strstr(p, "250 2.1.5 Ok\r\n")); p += 14)
			replies++;
		free(out);
		if (ev.type == SMTP_EV_NONE && off == len)
			continue;
	}
	CHECK_INT_EQ(rcpts, n);
	CHECK_INT_EQ(replies, n);
	CHECK(blocked > 0);
	free(in);
	smtp_session_free(s);
}

static void test_in_data_where_and_memory(void)
{
	struct smtp_session *s = greeted();
	char names[512];
	CHECK_STR_EQ(smtp_session_where(s), "CONNECT");
	size_t before = smtp_session_memory(s);
	feed_accepting(s, "EHLO c.example\r\n", names, sizeof(names));
	feed_accepting(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "MAIL RCPT DATA");
	CHECK(smtp_session_in_data(s));
	CHECK_STR_EQ(smtp_session_where(s), "DATA");

	/* a 30 KB header grows the header buffer (and no more than the limit allows) */
	size_t hlen = 30000;
	char *h = malloc(hlen + 64);
	size_t k = (size_t)sprintf(h, "X-Big: ");
	memset(h + k, 'v', hlen);
	k += hlen;
	k += (size_t)sprintf(h + k, "\r\n\r\nbody\r\n");
	h[k] = '\0';
	feed_accepting(s, h, names, sizeof(names));
	/* the body may come in several pieces */
	CHECK(strncmp(names, "HEADER HEADERS_END BODY", 23) == 0);
	CHECK(strstr(names, "HEADER HEADERS_END") == names && !strstr(names + 7, "HEADER "));
	size_t during = smtp_session_memory(s);
	CHECK(during >= before + hlen);
	CHECK(during <= before + cfg.header_size_limit + 64);
	feed_accepting(s, ".\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "MESSAGE_END");
	CHECK(!smtp_session_in_data(s));
	CHECK_STR_EQ(smtp_session_where(s), "END-OF-MESSAGE");
	/* the buffer is kept for the next message, not grown again */
	CHECK_INT_EQ(smtp_session_memory(s), during);
	free(h);
	free(take_output(s));
	feed_accepting(s, "QUIT\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "QUIT");
	CHECK(smtp_session_closed(s));
	expect_output(s, "221 2.0.0 Bye\r\n");
	/* input after the end of the session is taken and ignored */
	size_t used;
	struct smtp_event ev = smtp_session_step(s, "NOOP\r\n", 6, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	CHECK_INT_EQ(used, 6);
	CHECK_INT_EQ(smtp_session_output(s).len, 0);
	smtp_session_free(s);
}

/* smtp_session_state_name() follows the engine through every state it has. */
static void test_state_names(void)
{
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	char names[512];
	CHECK_STR_EQ(smtp_session_state_name(s), "PREGREET");
	smtp_session_greet(s);
	CHECK_STR_EQ(smtp_session_state_name(s), "COMMAND");
	feed_accepting(s, "EHLO c.example\r\n", names, sizeof(names));
	feed_accepting(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", names, sizeof(names));
	feed_accepting(s, "DATA\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "DATA");
	CHECK_STR_EQ(smtp_session_state_name(s), "DATA");
	feed_accepting(s, "\r\nbody\r\n.\r\n", names, sizeof(names));
	CHECK_STR_EQ(smtp_session_state_name(s), "COMMAND");
	feed_accepting(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", names, sizeof(names));
	feed_accepting(s, "BDAT 10\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "DATA");
	CHECK_STR_EQ(smtp_session_state_name(s), "CHUNK");
	feed_accepting(s, "0123456789", names, sizeof(names));
	CHECK_STR_EQ(smtp_session_state_name(s), "COMMAND");
	feed_accepting(s, "QUIT\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "MESSAGE_ABORT QUIT");
	CHECK_STR_EQ(smtp_session_state_name(s), "CLOSED");
	smtp_session_free(s);

	s = smtp_session_new(&cfg, &client);
	smtp_session_greet_reject(s, 554, "5.7.1 go away");
	CHECK_STR_EQ(smtp_session_state_name(s), "CLOSED");
	smtp_session_free(s);
}

static void test_peer_closed_mid_message(void)
{
	struct smtp_session *s = greeted();
	char names[256];
	feed_accepting(s, "EHLO c\r\n", names, sizeof(names));
	feed_accepting(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", names, sizeof(names));
	feed_accepting(s, "Subject: x\r\n\r\npart", names, sizeof(names));
	smtp_session_peer_closed(s);
	CHECK(smtp_session_closed(s));
	CHECK_INT_EQ(smtp_session_output(s).len, 0); /* nothing is sent to nobody */
	size_t used;
	struct smtp_event ev = smtp_session_step(s, NULL, 0, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_MESSAGE_ABORT);
	ev = smtp_session_step(s, NULL, 0, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	smtp_session_free(s);
}

static void test_close_waits_for_the_pending_reply(void)
{
	/* a timeout while the end of a message waits for the spool: the 250 goes first */
	struct smtp_session *s = greeted();
	char names[256];
	feed_accepting(s, "EHLO c\r\n", names, sizeof(names));
	feed_accepting(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", names, sizeof(names));
	free(take_output(s));
	size_t used, off = 0;
	const char *end = "\r\n.\r\n";
	struct smtp_event ev;
	do {
		ev = smtp_session_step(s, end + off, strlen(end) - off, &used);
		off += used;
	} while (ev.type != SMTP_EV_MESSAGE_END && ev.type != SMTP_EV_NONE);
	CHECK_INT_EQ(ev.type, SMTP_EV_MESSAGE_END);
	smtp_session_timeout(s);
	CHECK(!smtp_session_closed(s));
	CHECK_INT_EQ(smtp_session_output(s).len, 0);
	struct smtp_verdict v = { .queue_id = "ABC" };
	CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	CHECK(smtp_session_closed(s));
	expect_output(s, "250 2.0.0 Ok: queued as ABC\r\n"
			 "421 4.4.2 mx.example.net Error: timeout exceeded\r\n");
	ev = smtp_session_step(s, NULL, 0, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_CLOSE);
	smtp_session_free(s);
}

static void test_idle_session_holds_no_output(void)
{
	/* millions of idle sessions: the reply buffer is given back once it is sent */
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	size_t idle = smtp_session_memory(s);
	smtp_session_greet(s);
	size_t talking = smtp_session_memory(s);
	CHECK(talking > idle);
	struct mx_span out = smtp_session_output(s);
	smtp_session_output_done(s, 3);
	CHECK_INT_EQ(smtp_session_memory(s), talking);
	smtp_session_output_done(s, out.len - 3);
	CHECK_INT_EQ(smtp_session_memory(s), idle);
	CHECK_INT_EQ(smtp_session_output(s).len, 0);
	CHECK(idle < 2048);
	smtp_session_free(s);
}

static void test_greeting_calls(void)
{
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	size_t used;
	/* nothing said yet, nothing to do */
	struct smtp_event ev = smtp_session_step(s, NULL, 0, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	smtp_session_greet(s);
	smtp_session_greet(s);
	smtp_session_greet_reject(s, 554, "5.7.1 no");
	expect_output(s, "220 mx.example.net ESMTP mxgate\r\n");
	CHECK(!smtp_session_closed(s));
	smtp_session_free(s);

	/* without forbid_unauth_pipelining, early input waits for the greeting */
	struct smtp_config lax = cfg;
	lax.forbid_unauth_pipelining = false;
	s = smtp_session_new(&lax, &client);
	ev = smtp_session_step(s, "NOOP\r\n", 6, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_BLOCKED);
	CHECK_INT_EQ(used, 0);
	smtp_session_greet(s);
	ev = smtp_session_step(s, "NOOP\r\n", 6, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
	expect_output(s, "220 mx.example.net ESMTP mxgate\r\n250 2.0.0 Ok\r\n");
	smtp_session_free(s);
	smtp_session_free(NULL);
}

/* The reply a session gives to `cmd` after EHLO and `setup` (both accepted, whatever they
 * are), fed in one piece or one byte at a time; the last event's params go to *params. */
static char *reply_to(const struct smtp_config *c, const char *setup, const char *cmd,
		      bool bytewise, char *params, size_t pcap)
{
	struct smtp_session *s = smtp_session_new(c, &client);
	CHECK(s != NULL);
	smtp_session_greet(s);
	char names[256];
	feed_accepting(s, "EHLO client.example\r\n", names, sizeof(names));
	feed_accepting(s, setup, names, sizeof(names));
	free(take_output(s));
	params[0] = '\0';
	size_t len = strlen(cmd), off = 0;
	while (off < len) {
		size_t used, give = bytewise ? 1 : len - off;
		struct smtp_event ev = smtp_session_step(s, cmd + off, give, &used);
		off += used;
		if (ev.type == SMTP_EV_NONE || ev.type == SMTP_EV_PROTOCOL_ERROR) {
			CHECK(used > 0 || ev.type == SMTP_EV_PROTOCOL_ERROR);
			continue;
		}
		CHECK(ev.type == SMTP_EV_MAIL || ev.type == SMTP_EV_RCPT || ev.type == SMTP_EV_HELO);
		struct mx_span pr = ev.type == SMTP_EV_MAIL   ? ev.u.mail.params
				    : ev.type == SMTP_EV_RCPT ? ev.u.rcpt.params
							      : mx_span_make("", 0);
		snprintf(params, pcap, "%.*s", (int)pr.len, pr.ptr);
		struct smtp_verdict v = { 0 };
		CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	}
	char *out = take_output(s);
	smtp_session_free(s);
	return out;
}

/* RFC 3461 parameters: what is taken (and handed on byte for byte, as the envelope stores
 * it), and Postfix's reply to each refusal; with DSN discarded, Postfix's 501 5.7.1 first. */
static void test_dsn_parameters(void)
{
	static const char mail[] = "MAIL FROM:<a@example.org>\r\n";
	static const char utf8[] = "MAIL FROM:<a@example.org> SMTPUTF8\r\n";
	static const char ok_mail[] = "250 2.1.0 Ok\r\n", ok_rcpt[] = "250 2.1.5 Ok\r\n";
	static const char ret[] = "501 5.5.4 Bad RET parameter syntax\r\n";
	static const char envid[] = "501 5.5.4 Bad ENVID parameter syntax\r\n";
	static const char notify[] = "501 5.5.4 Error: Bad NOTIFY parameter syntax\r\n";
	static const char orcpt[] = "501 5.5.4 Error: Bad ORCPT parameter syntax\r\n";
	static const char off[] = "501 5.7.1 DSN support is disabled\r\n";
	static const char unsup[] = "555 5.5.4 Unsupported option: ";
	char a100[101], a101[102], o500[600], o501[600], h500[1600];
	memset(a100, 'A', 100), a100[100] = '\0';
	memset(a101, 'A', 101), a101[101] = '\0';
	snprintf(o500, sizeof(o500), "rfc822;%0489d+40example.ne", 0); /* 489+1+10 decoded */
	snprintf(o501, sizeof(o501), "rfc822;%0490d+40example.ne", 0);
	strcpy(h500, "rfc822;");
	for (int i = 0; i < 500; i++)
		strcat(h500, "+41"); /* 1500 bytes on the wire, 500 decoded */
	struct {
		const char *setup, *args, *want; /* args: after MAIL FROM:<a@example.org> or
		                                     RCPT TO:<b@example.net>, by setup */
		bool ok_when_off;                /* not a DSN parameter: same reply without DSN */
	} cases[] = {
		{ "", "RET=FULL", ok_mail, false },
		{ "", "RET=hdrs", ok_mail, false },
		{ "", "ret=Full SIZE=10 BODY=8BITMIME", ok_mail, false },
		{ "", "RET=FULL RET=FULL", ret, false },
		{ "", "RET=FULL RET=HDRS", ret, false },
		{ "", "RET=FULLY", ret, false },
		{ "", "RET=", ret, false },
		{ "", "RET=NEVER", ret, false },
		{ "", "RET", "555", true },
		{ "", "ENVID=QQ+2B123", ok_mail, false },
		{ "", "ENVID=a+2bb", ok_mail, false },  /* lowercase hex: Postfix takes it */
		{ "", "ENVID=+20+7E", ok_mail, false }, /* the printable range's ends */
		{ "", "ENVID=x ENVID=y", envid, false },
		{ "", "ENVID=", envid, false },
		{ "", "ENVID=a+0Db", envid, false }, /* a CR inside would break the DSN */
		{ "", "ENVID=a+1F", envid, false },
		{ "", "ENVID=a+7F", envid, false },
		{ "", "ENVID=a+C3+BC", envid, false },
		{ "", "ENVID=a+2", envid, false },
		{ "", "ENVID=a+", envid, false },
		{ "", "ENVID=a+zz", envid, false },
		{ "", "ENVID=a=b", envid, false },
		{ "", "ENVID=a\xc3\xbc", envid, false },
		{ "", a100, ok_mail, false },  /* ENVID= prefixed below */
		{ "", a101, envid, false },
		{ "", "RET=HDRS ENVID=x BOGUS=1", "555", false },
		{ mail, "NOTIFY=NEVER", ok_rcpt, false },
		{ mail, "NOTIFY=never", ok_rcpt, false },
		{ mail, "NOTIFY=SUCCESS", ok_rcpt, false },
		{ mail, "NOTIFY=FAILURE,DELAY", ok_rcpt, false },
		{ mail, "NOTIFY=delay,Success,failure", ok_rcpt, false },
		{ mail, "NOTIFY=NEVER,DELAY", notify, false },
		{ mail, "NOTIFY=DELAY,NEVER", notify, false },
		{ mail, "NOTIFY=NEVER,NEVER", notify, false },
		{ mail, "NOTIFY=SUCCESS,SUCCESS", notify, false },
		{ mail, "NOTIFY=SUCCESS,", notify, false },
		{ mail, "NOTIFY=,SUCCESS", notify, false },
		{ mail, "NOTIFY=SUCCESS,,DELAY", notify, false },
		{ mail, "NOTIFY=", notify, false },
		{ mail, "NOTIFY=BOGUS", notify, false },
		{ mail, "NOTIFY=SUCCESSFUL", notify, false },
		{ mail, "NOTIFY=NEVER NOTIFY=NEVER", notify, false },
		{ mail, "NOTIFY", "555", true },
		{ mail, "ORCPT=rfc822;b@example.net", ok_rcpt, false },
		{ mail, "ORCPT=rfc822;b+40example.net", ok_rcpt, false },
		{ mail, "ORCPT=RFC822;", ok_rcpt, false },
		{ mail, "ORCPT=x-local;b+20c", ok_rcpt, false },
		{ mail, o500, ok_rcpt, false },  /* ORCPT= prefixed below */
		{ mail, h500, ok_rcpt, false },
		{ mail, o501, orcpt, false },
		{ mail, "ORCPT=rfc822", orcpt, false },
		{ mail, "ORCPT=;b@example.net", orcpt, false },
		{ mail, "ORCPT=r(x;b", orcpt, false },
		{ mail, "ORCPT=rfc822;b+zz", orcpt, false },
		{ mail, "ORCPT=rfc822;b+0Dx", orcpt, false },
		{ mail, "ORCPT=rfc822;b+00", orcpt, false },
		{ mail, "ORCPT=rfc822;b=c", orcpt, false },
		{ mail, "ORCPT=rfc822;b ORCPT=rfc822;c", orcpt, false },
		{ mail, "ORCPT=rfc822;\xc3\xbc@example.net", orcpt, false },
		{ utf8, "ORCPT=utf-8;\xc3\xbc@example.net", ok_rcpt, false },
		{ mail, "NOTIFY=FAILURE ORCPT=rfc822;b+40example.net", ok_rcpt, false },
		{ mail, "ORCPT=rfc822;b NOTIFY=BOGUS", notify, false },
		{ mail, "NOTIFY=NEVER SIZE=1", "555", false },
		{ mail, "SIZE=1 NOTIFY=NEVER", "555", true },
	};
	for (int dsn = 1; dsn >= 0; dsn--) {
		struct smtp_config c = cfg;
		c.enable_dsn = dsn;
		c.hard_error_limit = c.soft_error_limit = 1000;
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char cmd[2100], params[2100];
			const char *args = cases[i].args;
			const char *pfx = args == a100 || args == a101 ? "ENVID="
					  : args == o500 || args == o501 || args == h500 ? "ORCPT="
											 : "";
			int n = snprintf(cmd, sizeof(cmd), "%s %s%s\r\n",
					 cases[i].setup[0] ? "RCPT TO:<b@example.net>"
							   : "MAIL FROM:<a@example.org>",
					 pfx, args);
			CHECK(n > 0 && (size_t)n < sizeof(cmd));
			for (int bytewise = 0; bytewise <= 1; bytewise++) {
				char *got = reply_to(&c, cases[i].setup, cmd, bytewise, params,
						     sizeof(params));
				const char *want = cases[i].want;
				if (!dsn && !cases[i].ok_when_off)
					want = off;
				bool ok = strcmp(want, "555") == 0 ? strncmp(got, unsup, strlen(unsup)) == 0
								  : strcmp(got, want) == 0;
				if (!ok)
					printf("     dsn=%d bytewise=%d %s-> %s", dsn, bytewise, cmd, got);
				CHECK(ok);
				/* accepted: the event hands on the parameter text exactly */
				if (want[0] == '2') {
					char expect[2100];
					snprintf(expect, sizeof(expect), "%s%s", pfx, args);
					CHECK_STR_EQ(params, expect);
				} else {
					CHECK_STR_EQ(params, "");
				}
				free(got);
			}
		}
	}
}

/* DSN sits between 8BITMIME and SMTPUTF8, as Postfix lists it, whatever else is off. */
static void test_dsn_in_ehlo(void)
{
	struct smtp_config c = cfg;
	char params[16];
	char *got = reply_to(&c, "", "EHLO client.example\r\n", false, params, sizeof(params));
	CHECK(strstr(got, "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n") != NULL);
	free(got);
	c.enable_8bitmime = c.enable_smtputf8 = c.enable_chunking = false;
	got = reply_to(&c, "", "EHLO client.example\r\n", false, params, sizeof(params));
	CHECK(strstr(got, "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n") != NULL);
	free(got);
	c.enable_dsn = false;
	got = reply_to(&c, "", "EHLO client.example\r\n", false, params, sizeof(params));
	CHECK(strstr(got, "DSN") == NULL);
	CHECK(strstr(got, "250 ENHANCEDSTATUSCODES\r\n") != NULL);
	free(got);
}

/* ---- XCLIENT and the pipelining flag ---- */

static const struct smtp_client_info xclient_client = {
	.addr = "127.0.0.1", .port = 1025, .xclient_authorized = true
};

/* Feed `text` whole; the first event must be `want`; returns it (spans valid until the
 * next call on s). */
static struct smtp_event step_one(struct smtp_session *s, const char *text,
				  enum smtp_event_type want)
{
	size_t used;
	struct smtp_event ev = smtp_session_step(s, text, strlen(text), &used);
	CHECK_STR_EQ(smtp_event_name(ev.type), smtp_event_name(want));
	return ev;
}

static void received(struct smtp_session *s, char *buf, size_t cap)
{
	smtp_received_header(buf, cap, s, "Q1", NULL, 1795343161, 0);
}

static void test_xclient_names(void)
{
	static const char *want[] = { "NAME", "REVERSE_NAME", "ADDR", "PORT", "PROTO",
				      "HELO", "LOGIN", "DESTADDR", "DESTPORT" };
	CHECK_INT_EQ(sizeof(want) / sizeof(want[0]), SMTP_XCLIENT_ATTR_MAX);
	for (int a = 0; a < SMTP_XCLIENT_ATTR_MAX; a++)
		CHECK_STR_EQ(smtp_xclient_attr_name((enum smtp_xclient_attr)a), want[a]);
	CHECK_STR_EQ(smtp_xclient_attr_name(SMTP_XCLIENT_ATTR_MAX), "?");
	CHECK_STR_EQ(smtp_event_name(SMTP_EV_XCLIENT), "XCLIENT");
}

/* An accepted XCLIENT changes what Received: says (Postfix's xclient_cmd() changes name,
 * addr, helo_name and protocol); a refused one changes nothing. */
static void test_xclient_identity(void)
{
	char before[512], buf[512];
	struct smtp_session *s = smtp_session_new(&cfg, &xclient_client);
	CHECK(s != NULL);
	smtp_session_greet(s);
	free(take_output(s));
	char names[256];
	feed_accepting(s, "EHLO client.example\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "HELO");
	char *ehlo = take_output(s);
	CHECK(strstr(ehlo, "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR "
			   "DESTPORT\r\n") != NULL);
	free(ehlo);
	received(s, before, sizeof(before));
	CHECK(strstr(before, "from client.example (unknown [127.0.0.1])") != NULL);
	CHECK(strstr(before, "with ESMTP") != NULL);

	/* refused: identity kept, the buffer of the attributes given back */
	size_t idle = smtp_session_memory(s);
	struct smtp_event ev = step_one(
		s, "XCLIENT NAME=relay.example ADDR=IPV6:2001:DB8::7 HELO=h<x> PROTO=smtp\r\n",
		SMTP_EV_XCLIENT);
	CHECK(ev.needs_verdict && !ev.unauth_pipelining);
	const struct smtp_xclient *x = ev.u.xclient;
	CHECK(x->attr[SMTP_XCLIENT_NAME].present && !x->attr[SMTP_XCLIENT_PORT].present);
	CHECK(mx_span_eq(x->attr[SMTP_XCLIENT_ADDR].value, mx_span_cstr("2001:DB8::7")));
	CHECK(mx_span_eq(x->attr[SMTP_XCLIENT_HELO].value, mx_span_cstr("h?x?")));
	CHECK(mx_span_eq(x->attr[SMTP_XCLIENT_PROTO].value, mx_span_cstr("SMTP")));
	CHECK(smtp_session_memory(s) > idle);
	struct smtp_verdict no = { .code = 550, .text = "5.7.1 no" };
	CHECK_INT_EQ(smtp_session_verdict(s, &no), 0);
	expect_output(s, "550 5.7.1 no\r\n");
	CHECK_INT_EQ(smtp_session_memory(s), idle);
	received(s, buf, sizeof(buf));
	CHECK_STR_EQ(buf, before);

	/* accepted: name, address, HELO and protocol change; the greeting is sent again */
	step_one(s, "XCLIENT NAME=relay.example ADDR=IPV6:2001:DB8::7 HELO=h<x> PROTO=smtp\r\n",
		 SMTP_EV_XCLIENT);
	struct smtp_verdict yes = { .code = 0, .xclient_authorized = true };
	CHECK_INT_EQ(smtp_session_verdict(s, &yes), 0);
	expect_output(s, "220 mx.example.net ESMTP mxgate\r\n");
	received(s, buf, sizeof(buf));
	CHECK(strstr(buf, "from h?x? (relay.example [IPv6:2001:DB8::7])") != NULL);
	CHECK(strstr(buf, "with SMTP") != NULL);
	CHECK(mx_span_eq(smtp_session_helo(s), mx_span_cstr("h?x?")));

	/* [UNAVAILABLE] is "unknown"; no HELO= forgets the HELO name; PROTO=ESMTP */
	step_one(s, "XCLIENT NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PROTO=esmtp\r\n",
		 SMTP_EV_XCLIENT);
	CHECK_INT_EQ(smtp_session_verdict(s, &yes), 0);
	free(take_output(s));
	received(s, buf, sizeof(buf));
	CHECK(strstr(buf, "from unknown (unknown [unknown])") != NULL);
	CHECK_STR_EQ(smtp_session_protocol(s), "ESMTP");
	CHECK_INT_EQ(smtp_session_helo(s).len, 0);

	/* accepted without xclient_authorized: EHLO stops offering it, XCLIENT is refused */
	step_one(s, "XCLIENT ADDR=198.51.100.7\r\n", SMTP_EV_XCLIENT);
	struct smtp_verdict yes_only = { .code = 0 };
	CHECK_INT_EQ(smtp_session_verdict(s, &yes_only), 0);
	free(take_output(s));
	feed_accepting(s, "EHLO again.example\r\n", names, sizeof(names));
	ehlo = take_output(s);
	CHECK(strstr(ehlo, "XCLIENT") == NULL);
	free(ehlo);
	step_one(s, "XCLIENT ADDR=198.51.100.8\r\n", SMTP_EV_PROTOCOL_ERROR);
	expect_output(s, "550 5.7.0 Error: insufficient authorization\r\n");
	smtp_session_free(s);
}

/* A session freed while its XCLIENT waits for a verdict frees the attributes (ASan). */
static void test_xclient_freed_pending(void)
{
	struct smtp_session *s = smtp_session_new(&cfg, &xclient_client);
	smtp_session_greet(s);
	free(take_output(s));
	struct smtp_event ev = step_one(s, "XCLIENT LOGIN=someone+40example.org NAME=ab+00cd\r\n",
					SMTP_EV_XCLIENT);
	CHECK(mx_span_eq(ev.u.xclient->attr[SMTP_XCLIENT_LOGIN].value,
			 mx_span_cstr("someone@example.org")));
	/* a decoded NUL ends the value, as it ends Postfix's C string */
	CHECK(mx_span_eq(ev.u.xclient->attr[SMTP_XCLIENT_NAME].value, mx_span_cstr("ab")));
	smtp_session_peer_closed(s);
	smtp_session_free(s);
}

/* reject_unauth_pipelining's flag with forbid_unauth_pipelining off. */
static void test_unauth_pipelining_flag(void)
{
	struct smtp_config c = cfg;
	c.forbid_unauth_pipelining = false;
	size_t used;

	/* an orderly client: never set */
	struct smtp_session *s = smtp_session_new(&c, &client);
	smtp_session_greet(s);
	struct smtp_event ev = step_one(s, "EHLO a.example\r\n", SMTP_EV_HELO);
	CHECK(!ev.unauth_pipelining);
	struct smtp_verdict ok = { 0 };
	smtp_session_verdict(s, &ok);
	const char *two = "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";
	ev = smtp_session_step(s, two, strlen(two), &used);
	CHECK(ev.type == SMTP_EV_MAIL && !ev.unauth_pipelining);
	smtp_session_verdict(s, &ok);
	ev = smtp_session_step(s, two + used, strlen(two) - used, &used);
	CHECK(ev.type == SMTP_EV_RCPT && !ev.unauth_pipelining);
	smtp_session_free(s);

	/* talking before the greeting: kept until the greeting, then flagged for good */
	s = smtp_session_new(&c, &client);
	ev = smtp_session_step(s, "EHLO a.example\r\n", 16, &used);
	CHECK(ev.type == SMTP_EV_BLOCKED && used == 0);
	smtp_session_greet(s);
	ev = step_one(s, "EHLO a.example\r\n", SMTP_EV_HELO);
	CHECK(ev.unauth_pipelining);
	smtp_session_verdict(s, &ok);
	ev = step_one(s, "MAIL FROM:<a@b.example>\r\n", SMTP_EV_MAIL);
	CHECK(ev.unauth_pipelining);
	smtp_session_free(s);

	/* with forbid_unauth_pipelining the same client is cut off instead */
	s = smtp_session_new(&cfg, &client);
	ev = smtp_session_step(s, "EHLO a.example\r\n", 16, &used);
	CHECK(ev.type == SMTP_EV_PROTOCOL_ERROR && !ev.unauth_pipelining);
	smtp_session_free(s);
}

/* smtpd_delay_reject = no and the client restrictions refused: the refusal stands for the
 * greeting, then every command but QUIT gets Postfix's 503 5.7.0 (counted as an error):
 * XCLIENT from an authorized client and unknown verbs too, and before any pipelining
 * check (Postfix's smtpd_proto() tests access_denied first; checked against Postfix 3.7.11
 * by tests/e2e/test_policy_diff.py, variant dns+delay_reject=no). An XCLIENT taken while
 * the client was not denied may be refused as a new identity, which denies it again. */
static void test_access_denied(void)
{
	struct smtp_session *s = smtp_session_new(&cfg, &xclient_client);
	smtp_session_greet_deny(s, 554, "5.7.1 <unknown[127.0.0.1]>: Client host rejected: "
					"Access denied");
	smtp_session_greet(s); /* too late: no second greeting */
	expect_output(s, "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access "
			 "denied\r\n");
	CHECK(!smtp_session_closed(s));
	char names[256];
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	feed_accepting(s, "MAIL FROM:<a@b.example>\r\n", names, sizeof(names));
	feed_accepting(s, "NOOP\r\n", names, sizeof(names));
	expect_output(s, "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n"
			 "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n"
			 "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n");
	/* XCLIENT from an authorized client: denied like the rest, no identity taken */
	feed_accepting(s, "XCLIENT NAME=x.example ADDR=192.0.2.9\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	/* an unknown verb: denied, not "command not recognized" */
	feed_accepting(s, "FOO bar\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	/* pipelined without PIPELINING (forbid_unauth_pipelining is on): denied, not cut off */
	CHECK(cfg.forbid_unauth_pipelining);
	feed_accepting(s, "RSET\r\nHELO a.example\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "PROTOCOL_ERROR PROTOCOL_ERROR");
	CHECK(!smtp_session_closed(s));
	expect_output(s, "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n"
			 "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n"
			 "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n"
			 "503 5.7.0 Error: access denied for unknown[127.0.0.1]\r\n");
	/* a header-like or forbidden verb still ends the session first */
	feed_accepting(s, "Subject: x\r\n", names, sizeof(names));
	expect_output(s, "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n");
	CHECK(smtp_session_closed(s));
	smtp_session_free(s);

	/* not denied at connect: XCLIENT is taken, and the new identity refused */
	s = smtp_session_new(&cfg, &xclient_client);
	smtp_session_greet(s);
	free(take_output(s));
	step_one(s, "XCLIENT NAME=x.example ADDR=192.0.2.9\r\n", SMTP_EV_XCLIENT);
	struct smtp_verdict v = { .code = 554, .text = "5.7.1 <x.example[192.0.2.9]>: Client "
						       "host rejected: Access denied",
				  .access_denied = true, .xclient_authorized = true };
	CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	feed_accepting(s, "HELO a.example\r\n", names, sizeof(names));
	/* ... and from then on even XCLIENT is denied (the identity stays the refused one) */
	feed_accepting(s, "XCLIENT ADDR=192.0.2.10\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	feed_accepting(s, "QUIT\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "QUIT");
	expect_output(s, "554 5.7.1 <x.example[192.0.2.9]>: Client host rejected: Access "
			 "denied\r\n503 5.7.0 Error: access denied for x.example[192.0.2.9]\r\n"
			 "503 5.7.0 Error: access denied for x.example[192.0.2.9]\r\n"
			 "221 2.0.0 Bye\r\n");
	smtp_session_free(s);

	/* QUIT always works */
	s = smtp_session_new(&cfg, &client);
	smtp_session_greet_deny(s, 450, "4.7.1 try later");
	feed_accepting(s, "QUIT\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "QUIT");
	expect_output(s, "450 4.7.1 try later\r\n221 2.0.0 Bye\r\n");
	smtp_session_free(s);
}

/* soft_bounce = yes: every 5xx reply line, and its 5.x.x enhanced code, leaves as 4xx,
 * whoever wrote it (the engine's own refusals, verdicts), in every line of a multi-line
 * reply; 2xx and a 5 elsewhere in the text are untouched. */
static void test_soft_bounce(void)
{
	struct smtp_config soft = cfg;
	soft.soft_bounce = true;
	struct smtp_session *s = smtp_session_new(&soft, &client);
	smtp_session_greet(s);
	char names[256];
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	free(take_output(s));
	feed_accepting(s, "FOO 5.5.5\r\nDATA\r\n", names, sizeof(names));
	expect_output(s, "400 4.5.2 Error: command not recognized\r\n"
			 "403 4.5.1 Error: need RCPT command\r\n");
	size_t used;
	struct smtp_event ev = smtp_session_step(s, "MAIL FROM:<a@b.example>\r\n", 25, &used);
	CHECK_INT_EQ(ev.type, SMTP_EV_MAIL);
	struct smtp_verdict v = { .code = 554, .text = "5.7.1 no\n5.7.1 really 555" };
	CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	expect_output(s, "454-4.7.1 no\r\n454 4.7.1 really 555\r\n");
	smtp_session_free(s);
}

/* The rate hook (anvil's limits): asked where Postfix's smtpd asks anvil, after the
 * command's own syntax check and before its address is parsed; over the limit, Postfix's
 * 450 and an error. */
struct fake_rate {
	unsigned calls[SMTP_RATE_EVENT_MAX];
	bool over;
};

static bool fake_rate_over(void *arg, enum smtp_rate_event event)
{
	struct fake_rate *f = arg;
	f->calls[event]++;
	return f->over;
}

/* Feed cmd (after EHLO and setup) with the hook; the reply, the kinds of the engine's
 * errors, and the hook's calls. */
static char *rate_reply(const struct smtp_config *c, struct fake_rate *f, const char *setup,
			const char *cmd, char *errors, size_t ecap)
{
	struct smtp_session *s = smtp_session_new(c, &client);
	smtp_session_set_rate_hook(s, fake_rate_over, f);
	smtp_session_greet(s);
	char names[256];
	bool over = f->over;
	f->over = false;
	feed_accepting(s, "EHLO client.example\r\n", names, sizeof(names));
	feed_accepting(s, setup, names, sizeof(names));
	free(take_output(s));
	f->over = over;
	memset(f->calls, 0, sizeof(f->calls));
	errors[0] = '\0';
	size_t off = 0, len = strlen(cmd);
	for (;;) {
		size_t used;
		struct smtp_event ev = smtp_session_step(s, cmd + off, len - off, &used);
		off += used;
		if (ev.type == SMTP_EV_NONE)
			break;
		if (ev.type == SMTP_EV_PROTOCOL_ERROR)
			snprintf(errors + strlen(errors), ecap - strlen(errors), "%s%s/%u",
				 errors[0] ? " " : "", smtp_error_kind_name(ev.u.error.kind),
				 ev.u.error.code);
		if (ev.needs_verdict) {
			struct smtp_verdict v = { 0 };
			CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
		}
	}
	char *out = take_output(s);
	smtp_session_free(s);
	return out;
}

static void test_rate_hook(void)
{
	struct fake_rate f = { .over = true };
	char errors[256];
	char *out;
	/* MAIL over the message rate: smtpd.c mail_cmd()'s reply, an error */
	out = rate_reply(&cfg, &f, "", "MAIL FROM:<a@example.org>\r\n", errors, sizeof(errors));
	CHECK_STR_EQ(out, "450 4.7.1 Error: too much mail from 192.0.2.1\r\n");
	CHECK_STR_EQ(errors, "rate-limit/450");
	CHECK_INT_EQ(f.calls[SMTP_RATE_MESSAGE], 1);
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 0);
	free(out);
	/* counted before the address is parsed: a bad address is refused by the limit... */
	out = rate_reply(&cfg, &f, "", "MAIL FROM:<a@@b\r\n", errors, sizeof(errors));
	CHECK_STR_EQ(out, "450 4.7.1 Error: too much mail from 192.0.2.1\r\n");
	free(out);
	/* ... and under the limit still counts */
	f.over = false;
	out = rate_reply(&cfg, &f, "", "MAIL FROM:<a@@b\r\nMAIL FROM:<a@b> SIZE=x\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "501 5.1.7 Bad sender address syntax\r\n"
			  "501 5.5.4 Bad message size syntax\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_MESSAGE], 2);
	free(out);
	/* but not before the command's own checks: syntax, sequence */
	f.over = true;
	out = rate_reply(&cfg, &f, "", "MAIL TO:<a@b>\r\nRCPT TO:<c@d>\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
			  "503 5.5.1 Error: need MAIL command\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_MESSAGE] + f.calls[SMTP_RATE_RECIPIENT], 0);
	free(out);
	out = rate_reply(&cfg, &f, "MAIL FROM:<a@b>\r\n", "MAIL FROM:<a@b>\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "503 5.5.1 Error: nested MAIL command\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_MESSAGE], 0);
	free(out);

	/* RCPT over the recipient rate: rcpt_cmd()'s reply; the transaction goes on */
	f.over = true;
	out = rate_reply(&cfg, &f, "MAIL FROM:<a@b>\r\n",
			 "RCPT TO:<c@d>\r\nRCPT TO:<bad\r\nRCPT <c@d>\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "450 4.7.1 Error: too many recipients from 192.0.2.1\r\n"
			  "450 4.7.1 Error: too many recipients from 192.0.2.1\r\n"
			  "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
	CHECK_STR_EQ(errors, "rate-limit/450 rate-limit/450 syntax/501");
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 2);
	CHECK_INT_EQ(f.calls[SMTP_RATE_MESSAGE], 0);
	free(out);
	/* under it: asked before the recipient limit and the address */
	f.over = false;
	struct smtp_config one = cfg;
	one.recipient_limit = 1;
	out = rate_reply(&one, &f, "MAIL FROM:<a@b>\r\n",
			 "RCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nRCPT TO:<bad\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n"
			  "501 5.1.3 Bad recipient address syntax\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 3);
	free(out);

	/* VRFY counts as a recipient (vrfy_cmd()), after its argument check (one command
	 * per call: VRFY ends a pipelined group) */
	f.over = true;
	out = rate_reply(&cfg, &f, "", "VRFY\r\n", errors, sizeof(errors));
	CHECK_STR_EQ(out, "501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 0);
	free(out);
	out = rate_reply(&cfg, &f, "", "VRFY u@example.org\r\n", errors, sizeof(errors));
	CHECK_STR_EQ(out, "450 4.7.1 Error: too many recipients from 192.0.2.1\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 1);
	free(out);
	f.over = false;
	out = rate_reply(&cfg, &f, "", "VRFY u@example.org\r\n", errors, sizeof(errors));
	CHECK_STR_EQ(out, "252 2.0.0 u@example.org\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_RECIPIENT], 1);
	free(out);

	/* the refusals are errors: smtpd_hard_error_limit closes the session */
	f.over = true;
	struct smtp_config two = cfg;
	two.hard_error_limit = 2;
	out = rate_reply(&two, &f, "", "MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nNOOP\r\n", errors,
			 sizeof(errors));
	CHECK_STR_EQ(out, "450 4.7.1 Error: too much mail from 192.0.2.1\r\n"
			  "450 4.7.1 Error: too much mail from 192.0.2.1\r\n"
			  "421 4.7.0 mx.example.net Error: too many errors\r\n");
	free(out);
	CHECK_STR_EQ(smtp_rate_event_name(SMTP_RATE_MESSAGE), "message");
	CHECK_STR_EQ(smtp_rate_event_name(SMTP_RATE_RECIPIENT), "recipient");
	CHECK_STR_EQ(smtp_rate_event_name(SMTP_RATE_EVENT_MAX), "?");
}

/* STARTTLS (RFC 3207) as the engine sees it: offered only when the transport says so and
 * not over TLS; the 220, then nothing more of that input is read (CVE-2011-0411: commands
 * pipelined behind STARTTLS were sent before TLS and are dropped); HELO and the
 * transaction are forgotten; the encrypt level's 530; Received: says ESMTPS with the TLS
 * lines. */
static void test_starttls(void)
{
	char names[256];
	struct smtp_config c = cfg;
	c.forbid_unauth_pipelining = false;

	/* not set up: not offered, 502 */
	struct smtp_session *s = smtp_session_new(&c, &client);
	smtp_session_greet(s);
	free(take_output(s));
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	char *out = take_output(s);
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	expect_output(s, "502 5.5.1 Error: command not implemented\r\n");
	smtp_session_free(s);

	/* offered; the injection behind it is discarded, whole and split at every offset */
	static const char inject[] = "STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<a@b>\r\n";
	for (size_t cut = 0; cut <= sizeof(inject) - 1; cut++) {
		s = smtp_session_new(&c, &client);
		smtp_session_set_tls(s, true, false);
		smtp_session_greet(s);
		free(take_output(s));
		feed_accepting(s, "EHLO a.example\r\nMAIL FROM:<x@y>\r\n", names, sizeof(names));
		out = take_output(s);
		CHECK(strstr(out, "250-VRFY\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES") != NULL);
		free(out);
		size_t total = sizeof(inject) - 1, off = 0;
		bool seen = false;
		while (off < total) {
			/* the first piece ends at cut, the second is the rest: each in a heap
			 * buffer of exactly its size */
			size_t end = off < cut ? cut : total;
			size_t len = end - off;
			char *piece = malloc(len ? len : 1);
			memcpy(piece, inject + off, len);
			size_t used = 0;
			struct smtp_event ev = smtp_session_step(s, piece, len, &used);
			free(piece);
			off += used;
			if (ev.type == SMTP_EV_STARTTLS) {
				seen = true;
				/* the rest of that input is consumed, never read */
				CHECK_INT_EQ(off, end);
				break;
			}
			CHECK(ev.type == SMTP_EV_NONE);
			if (used == 0)
				break;
		}
		CHECK(seen);
		CHECK(smtp_session_tls_active(s));
		expect_output(s, "220 2.0.0 Ready to start TLS\r\n");
		/* nothing else came of the injected bytes */
		size_t used;
		struct smtp_event ev = smtp_session_step(s, NULL, 0, &used);
		CHECK_INT_EQ(ev.type, SMTP_EV_NONE);
		/* the transaction was forgotten: RCPT needs a new MAIL */
		feed_accepting(s, "RCPT TO:<a@b>\r\n", names, sizeof(names));
		expect_output(s, "503 5.5.1 Error: need MAIL command\r\n");
		smtp_session_free(s);
	}

	/* over TLS: not offered again; a second STARTTLS is 554; Received: says ESMTPS */
	s = smtp_session_new(&c, &client);
	smtp_session_set_tls(s, true, false);
	smtp_session_greet(s);
	free(take_output(s));
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "STARTTLS");
	free(take_output(s));
	feed_accepting(s, "STARTTLS now\r\n", names, sizeof(names));
	expect_output(s, "501 5.5.4 Syntax: STARTTLS\r\n");
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "HELO");
	out = take_output(s);
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	expect_output(s, "554 5.5.1 Error: TLS already active\r\n");
	CHECK_INT_EQ(smtp_session_set_tls_received(s, "\t(using TLSv1.3 with cipher X (256/256 "
						      "bits)\r\n\t key-exchange X25519)\n\x01"),
		     0);
	char hdr[1024];
	smtp_received_header(hdr, sizeof(hdr), s, "QID", NULL, 0, 0);
	CHECK(strstr(hdr, "Received: from a.example (unknown [192.0.2.1])\r\n\t(using TLSv1.3 "
			  "with cipher X (256/256 bits)\r\n\t key-exchange X25519)??\r\n\tby ") !=
	      NULL);
	CHECK(strstr(hdr, "with ESMTPS id QID") != NULL);
	smtp_session_free(s);

	/* encrypt: 530 before STARTTLS for all but HELO EHLO NOOP HELP QUIT (and STARTTLS) */
	s = smtp_session_new(&c, &client);
	smtp_session_set_tls(s, true, true);
	smtp_session_greet(s);
	free(take_output(s));
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	free(take_output(s));
	feed_accepting(s, "MAIL FROM:<a@b>\r\n", names, sizeof(names));
	expect_output(s, "530 5.7.0 Must issue a STARTTLS command first\r\n");
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	feed_accepting(s, "RCPT TO:<a@b>\r\nVRFY a\r\nRSET\r\nDATA\r\n", names, sizeof(names));
	expect_output(s, "530 5.7.0 Must issue a STARTTLS command first\r\n"
			 "530 5.7.0 Must issue a STARTTLS command first\r\n"
			 "530 5.7.0 Must issue a STARTTLS command first\r\n"
			 "530 5.7.0 Must issue a STARTTLS command first\r\n");
	feed_accepting(s, "NOOP\r\n", names, sizeof(names));
	expect_output(s, "250 2.0.0 Ok\r\n");
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	free(take_output(s));
	feed_accepting(s, "MAIL FROM:<a@b>\r\n", names, sizeof(names));
	CHECK_STR_EQ(names, "MAIL");
	expect_output(s, "250 2.1.0 Ok\r\n");
	smtp_session_free(s);

	/* smtpd_tls_req_ccert: the next line after TLS gets 421 and the session ends */
	s = smtp_session_new(&c, &client);
	smtp_session_set_tls(s, true, true);
	smtp_session_greet(s);
	free(take_output(s));
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	free(take_output(s));
	smtp_session_tls_refuse(s, "No client certificate presented");
	feed_accepting(s, "EHLO a.example\r\nMAIL FROM:<a@b>\r\n", names, sizeof(names));
	out = take_output(s);
	CHECK(strncmp(out, "421 4.7.1 ", 10) == 0);
	CHECK(strstr(out, " Error: No client certificate presented\r\n") != NULL);
	CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one reply, the MAIL unread */
	free(out);
	CHECK(smtp_session_closed(s));
	CHECK(strstr(names, "HELO") == NULL);
	smtp_session_free(s);

	/* smtpd_client_new_tls_session_rate_limit: over it STARTTLS gets Postfix's 454 (the
	 * client's name and address), an error, and no TLS; the hook is asked after the
	 * command's own checks only */
	struct fake_rate f = { .over = true };
	s = smtp_session_new(&c, &client);
	smtp_session_set_rate_hook(s, fake_rate_over, &f);
	smtp_session_set_tls(s, true, false);
	smtp_session_greet(s);
	free(take_output(s));
	feed_accepting(s, "STARTTLS now\r\n", names, sizeof(names));
	expect_output(s, "501 5.5.4 Syntax: STARTTLS\r\n");
	CHECK_INT_EQ(f.calls[SMTP_RATE_NEWTLS], 0);
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	expect_output(s, "454 4.7.0 Error: too many new TLS sessions from unknown[192.0.2.1]\r\n");
	CHECK_STR_EQ(names, "PROTOCOL_ERROR");
	CHECK_INT_EQ(f.calls[SMTP_RATE_NEWTLS], 1);
	CHECK(!smtp_session_tls_active(s));
	CHECK(!smtp_session_closed(s));
	/* under it: the 220 */
	f.over = false;
	feed_accepting(s, "STARTTLS\r\n", names, sizeof(names));
	expect_output(s, "220 2.0.0 Ready to start TLS\r\n");
	CHECK(smtp_session_tls_active(s));
	CHECK_INT_EQ(f.calls[SMTP_RATE_NEWTLS], 2);
	/* the session that went over after its handshake: 421 4.7.0 to the next line */
	smtp_session_tls_refuse_as(s, "4.7.0", "too many new TLS sessions from "
					       "unknown[192.0.2.1]");
	feed_accepting(s, "EHLO a.example\r\n", names, sizeof(names));
	out = take_output(s);
	CHECK(strncmp(out, "421 4.7.0 ", 10) == 0);
	CHECK(strstr(out, " Error: too many new TLS sessions from unknown[192.0.2.1]\r\n") !=
	      NULL);
	free(out);
	CHECK(smtp_session_closed(s));
	smtp_session_free(s);
	CHECK_STR_EQ(smtp_rate_event_name(SMTP_RATE_NEWTLS), "newtls");

	/* with smtpd_forbid_unauth_pipelining (the default) a pipelined STARTTLS closes */
	s = greeted();
	smtp_session_set_tls(s, true, false);
	free(take_output(s));
	feed_accepting(s, "STARTTLS\r\nMAIL FROM:<evil@x>\r\n", names, sizeof(names));
	expect_output(s, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
	CHECK(smtp_session_closed(s));
	CHECK(!smtp_session_tls_active(s));
	smtp_session_free(s);
}

int main(void)
{
	smtp_config_defaults(&cfg);
	cfg.myhostname = "mx.example.net";
	cfg.banner = "mx.example.net ESMTP mxgate";
	RUN_TEST(test_defaults_are_postfix);
	RUN_TEST(test_names);
	RUN_TEST(test_spans_point_into_input);
	RUN_TEST(test_verdict_without_event);
	RUN_TEST(test_output_backpressure);
	RUN_TEST(test_in_data_where_and_memory);
	RUN_TEST(test_state_names);
	RUN_TEST(test_peer_closed_mid_message);
	RUN_TEST(test_close_waits_for_the_pending_reply);
	RUN_TEST(test_idle_session_holds_no_output);
	RUN_TEST(test_greeting_calls);
	RUN_TEST(test_dsn_parameters);
	RUN_TEST(test_dsn_in_ehlo);
	RUN_TEST(test_xclient_names);
	RUN_TEST(test_xclient_identity);
	RUN_TEST(test_xclient_freed_pending);
	RUN_TEST(test_unauth_pipelining_flag);
	RUN_TEST(test_access_denied);
	RUN_TEST(test_soft_bounce);
	RUN_TEST(test_rate_hook);
	RUN_TEST(test_starttls);
	return TEST_RESULT();
}
