/* The Received: header (smtp/smtp_received.c), compared with what Debian's Postfix 3.7.11
 * writes for the same session (postcat of a queued message):
 *     Received: from x (localhost [127.0.0.1])
 *             by mx.example.net (Postfix) with ESMTP id CDD55A7223D
 *             for <c@d>; Sun, 22 Nov 2026 10:26:01 +0000 (UTC)
 * and, with two recipients, "... id DB048A720DD;" with the date on the next line. Postfix
 * neuters the HELO name the same way ("EHLO x y(z)<a>" became "x?y?z??a?"). mxgate leaves
 * out the "(UTC)" zone comment: the engine knows the offset, not the zone's name. */
#include <stdlib.h>

#include "smtp/smtp_session.h"
#include "testing.h"

static struct smtp_config cfg;

/* A session that said `helo` (NULL: none) and, with `utf8`, began an SMTPUTF8 mail. */
static struct smtp_session *session(const char *addr, const char *name, const char *helo,
				    bool utf8)
{
	struct smtp_client_info client = { .addr = addr, .name = name, .port = 25 };
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	char line[600];
	size_t used;
	smtp_session_greet(s);
	if (helo) {
		snprintf(line, sizeof(line), "EHLO %s\r\n", helo);
		struct smtp_event ev = smtp_session_step(s, line, strlen(line), &used);
		CHECK_INT_EQ(ev.type, SMTP_EV_HELO);
		struct smtp_verdict v = { 0 };
		CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	}
	if (utf8) {
		const char *mail = "MAIL FROM:<a@b> SMTPUTF8\r\n";
		struct smtp_event ev = smtp_session_step(s, mail, strlen(mail), &used);
		CHECK_INT_EQ(ev.type, SMTP_EV_MAIL);
		struct smtp_verdict v = { 0 };
		CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
	}
	return s;
}

static void test_single_recipient(void)
{
	struct smtp_session *s = session("127.0.0.1", NULL, "x", false);
	char buf[1024];
	/* Sun, 22 Nov 2026 10:26:01 UTC */
	size_t n = smtp_received_header(buf, sizeof(buf), s, "CDD55A7223D", "c@d", 1795343161, 0);
	const char *want = "Received: from x (unknown [127.0.0.1])\r\n"
			   "\tby mx.example.net (mxgate) with ESMTP id CDD55A7223D\r\n"
			   "\tfor <c@d>; Sun, 22 Nov 2026 10:26:01 +0000\r\n";
	CHECK_STR_EQ(buf, want);
	CHECK_INT_EQ(n, strlen(want));
	smtp_session_free(s);
}

static void test_several_recipients(void)
{
	struct smtp_session *s = session("192.0.2.1", "mail.client.example", "mail.client.example",
					 false);
	char buf[1024];
	smtp_received_header(buf, sizeof(buf), s, "4ABC", NULL, 1795343161, 60);
	CHECK_STR_EQ(buf, "Received: from mail.client.example (mail.client.example [192.0.2.1])\r\n"
			  "\tby mx.example.net (mxgate) with ESMTP id 4ABC;\r\n"
			  "\tSun, 22 Nov 2026 11:26:01 +0100\r\n");
	smtp_session_free(s);
}

static void test_ipv6_no_helo_and_zones(void)
{
	struct smtp_session *s = session("2001:db8::25", NULL, NULL, false);
	char buf[1024];
	/* day of month space-padded as Postfix's mail_date(); a negative, odd offset */
	smtp_received_header(buf, sizeof(buf), s, "Q1", "r@x", 1772409600, -(3 * 60 + 30));
	CHECK_STR_EQ(buf, "Received: from unknown (unknown [IPv6:2001:db8::25])\r\n"
			  "\tby mx.example.net (mxgate) with SMTP id Q1\r\n"
			  "\tfor <r@x>; Sun,  1 Mar 2026 20:30:00 -0330\r\n");
	smtp_session_free(s);
}

static void test_neutered_helo_and_utf8(void)
{
	struct smtp_session *s = session("192.0.2.7", NULL, "x y(z)<a>\"q\";@\\", true);
	struct mx_span h = smtp_session_helo(s);
	CHECK_MEM_EQ(h.ptr, h.len, "x?y?z??a??q????", 15);
	char buf[1024];
	smtp_received_header(buf, sizeof(buf), s, "Q2", "z\xc3\xab@x", 0, 0);
	CHECK_STR_EQ(buf, "Received: from x?y?z??a??q???? (unknown [192.0.2.7])\r\n"
			  "\tby mx.example.net (mxgate) with UTF8SMTP id Q2\r\n"
			  "\tfor <z\xc3\xab@x>; Thu,  1 Jan 1970 00:00:00 +0000\r\n");
	smtp_session_free(s);
}

static void test_truncation_like_snprintf(void)
{
	struct smtp_session *s = session("192.0.2.1", NULL, "h", false);
	char full[1024], small[40];
	size_t need = smtp_received_header(full, sizeof(full), s, "Q", "a@b", 1, 0);
	memset(small, 'X', sizeof(small));
	size_t n = smtp_received_header(small, sizeof(small), s, "Q", "a@b", 1, 0);
	CHECK_INT_EQ(n, need);
	CHECK_INT_EQ(strlen(small), sizeof(small) - 1);
	CHECK(strncmp(small, full, sizeof(small) - 1) == 0);
	CHECK_INT_EQ(smtp_received_header(NULL, 0, s, "Q", "a@b", 1, 0), need);
	smtp_session_free(s);
}

static void test_no_header_injection(void)
{
	/* whatever the transport passes, no CR or LF gets into the header */
	struct smtp_session *s = session("192.0.2.1", "evil\r\nX-Injected: 1", "h", false);
	char buf[1024];
	smtp_received_header(buf, sizeof(buf), s, "Q\r\nX: y", "a@b\r\nX: z", 1, 0);
	CHECK(strstr(buf, "\r\nX") == NULL);
	CHECK(strstr(buf, "evil??X-Injected: 1") != NULL);
	/* exactly the three line ends of the format */
	int crlf = 0;
	for (const char *p = buf; (p = strstr(p, "\r\n")); p += 2)
		crlf++;
	CHECK_INT_EQ(crlf, 3);
	smtp_session_free(s);
}

int main(void)
{
	smtp_config_defaults(&cfg);
	cfg.myhostname = "mx.example.net";
	cfg.banner = "mx.example.net ESMTP mxgate";
	RUN_TEST(test_single_recipient);
	RUN_TEST(test_several_recipients);
	RUN_TEST(test_ipv6_no_helo_and_zones);
	RUN_TEST(test_neutered_helo_and_utf8);
	RUN_TEST(test_truncation_like_snprintf);
	RUN_TEST(test_no_header_injection);
	return TEST_RESULT();
}
