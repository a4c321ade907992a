/* The engine's side of SMTP AUTH (smtp/smtp_session_auth.c): what EHLO offers, Postfix's
 * checks of the AUTH command in its order, the 334 / response-line exchange fed whole, byte
 * by byte and split at every offset, the response limit, the authenticated state (ESMTPA,
 * the Authenticated sender line) and MAIL's AUTH= parameter. The exchange with Dovecot is
 * the connection's (tests/e2e/test_auth.py). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_session.h"
#include "testing.h"

static struct smtp_config cfg;
static const struct smtp_client_info client = { .addr = "192.0.2.1", .port = 1025 };

static char *take_output(struct smtp_session *s)
{
	struct mx_span out = smtp_session_output(s);
	char *p = malloc(out.len + 1);
	memcpy(p, out.ptr, out.len);
	p[out.len] = '\0';
	smtp_session_output_done(s, out.len);
	return p;
}

/* What the test's Dovecot says: "AUTH PLAIN <ir>" and a LOGIN exchange of two 334s. */
struct script {
	unsigned responses; /* AUTH_RESPONSE events seen */
	char last[64];      /* the last AUTH_RESPONSE line, or "too long" */
	char mech[16];
	char mail_auth[64];
};

/* Feed buf[0..len) in pieces of `step` bytes (0: whole), answering verdicts as the
 * script's server would; returns the output. */
static char *converse(struct smtp_session *s, const char *buf, size_t len, size_t step,
		      struct script *sc)
{
	size_t off = 0;
	char *out = calloc(1, 1);
	for (;;) {
		size_t end = step && off + step < len ? off + step : len;
		size_t used;
		struct smtp_event ev = smtp_session_step(s, buf + off, end - off, &used);
		off += used;
		if (ev.type == SMTP_EV_NONE) {
			if (off >= len)
				break;
			continue;
		}
		CHECK(ev.type != SMTP_EV_BLOCKED);
		if (ev.type == SMTP_EV_BLOCKED)
			break;
		struct smtp_verdict v = { .queue_id = "QID" };
		if (ev.type == SMTP_EV_AUTH) {
			snprintf(sc->mech, sizeof(sc->mech), "%.*s", (int)ev.u.auth.mech.len,
				 ev.u.auth.mech.ptr);
			bool plain = ev.u.auth.mech.len == 5 &&
				     strncmp(ev.u.auth.mech.ptr, "PLAIN", 5) == 0;
			if (plain && ev.u.auth.has_response) {
				v.code = 235;
				v.text = "2.7.0 Authentication successful";
			} else {
				v.code = 334;
				v.text = "VXNlcm5hbWU6";
			}
		} else if (ev.type == SMTP_EV_AUTH_RESPONSE) {
			sc->responses++;
			if (ev.u.auth.too_long)
				snprintf(sc->last, sizeof(sc->last), "too long");
			else
				snprintf(sc->last, sizeof(sc->last), "%.*s",
					 (int)ev.u.auth.response.len, ev.u.auth.response.ptr);
			if (ev.u.auth.too_long) {
				v.code = 500;
				v.text = "5.5.6 SASL response limit exceeded";
			} else if (strcmp(sc->last, "*") == 0) {
				v.code = 501;
				v.text = "5.7.0 Authentication aborted";
			} else if (sc->responses == 1) {
				v.code = 334;
				v.text = "UGFzc3dvcmQ6";
			} else if (strcmp(sc->last, "cGFzcw==") == 0) {
				v.code = 235;
				v.text = "2.7.0 Authentication successful";
			} else {
				v.code = 535;
				v.text = "5.7.8 Error: authentication failed: (reason unavailable)";
			}
		} else if (ev.type == SMTP_EV_MAIL) {
			snprintf(sc->mail_auth, sizeof(sc->mail_auth), "%.*s",
				 (int)ev.u.mail.auth.len, ev.u.mail.auth.ptr);
		}
		if (ev.needs_verdict)
			CHECK_INT_EQ(smtp_session_verdict(s, &v), 0);
		char *o = take_output(s);
		char *n = malloc(strlen(out) + strlen(o) + 1);
		strcpy(n, out);
		strcat(n, o);
		free(out);
		free(o);
		out = n;
	}
	char *o = take_output(s);
	char *n = malloc(strlen(out) + strlen(o) + 1);
	strcpy(n, out);
	strcat(n, o);
	free(out);
	free(o);
	return n;
}

static struct smtp_session *session(bool enabled, const char *mechs, unsigned flags)
{
	struct smtp_session *s = smtp_session_new(&cfg, &client);
	smtp_session_set_auth(s, enabled, mechs, flags);
	smtp_session_greet(s);
	free(take_output(s));
	return s;
}

/* The LOGIN exchange, in one heap buffer of exactly its length, at every split. */
static void test_login_exchange_split(void)
{
	static const char in[] = "EHLO c.example\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n"
				 "AUTH PLAIN AHUAcA==\r\nQUIT\r\n";
	static const char want[] =
		"250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
		"250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
		"250-SMTPUTF8\r\n250 CHUNKING\r\n"
		"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
		"503 5.5.1 Error: already authenticated\r\n221 2.0.0 Bye\r\n";
	size_t len = sizeof(in) - 1;
	char *buf = malloc(len);
	memcpy(buf, in, len);
	for (size_t step = 0; step <= len; step++) {
		struct smtp_session *s = session(true, "PLAIN LOGIN", 0);
		struct script sc = { 0 };
		char *out = converse(s, buf, len, step, &sc);
		CHECK_STR_EQ(out, want);
		CHECK_INT_EQ(sc.responses, 2);
		CHECK_STR_EQ(sc.last, "cGFzcw==");
		CHECK(smtp_session_authenticated(s));
		free(out);
		smtp_session_free(s);
	}
	free(buf);
}

/* Postfix's auth_cmd() order of refusals. */
static void test_command_checks(void)
{
	struct smtp_session *s = session(false, NULL, 0);
	struct script sc = { 0 };
	const char *t = "EHLO c\r\nAUTH PLAIN\r\n";
	char *out = converse(s, t, strlen(t), 0, &sc);
	CHECK(strstr(out, "AUTH") == NULL || strstr(out, "503 5.5.1 Error: authentication not "
							  "enabled\r\n") != NULL);
	CHECK(strstr(out, "250-AUTH") == NULL);
	free(out);
	smtp_session_free(s);

	s = session(true, "PLAIN LOGIN", SMTP_AUTH_NEED_TLS);
	t = "EHLO c\r\nAUTH PLAIN\r\n";
	out = converse(s, t, strlen(t), 0, &sc);
	CHECK(strstr(out, "250-AUTH") == NULL);
	CHECK(strstr(out, "503 5.5.1 Error: authentication not enabled\r\n") != NULL);
	free(out);
	smtp_session_free(s);

	s = session(true, "PLAIN LOGIN", SMTP_AUTH_BROKEN_CLIENTS);
	t = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nAUTH PLAIN AHUAcA==\r\nRSET\r\nAUTH\r\n"
	    "AUTH PLAIN x y\r\nAUTH LOGIN\r\n*\r\n";
	out = converse(s, t, strlen(t), 0, &sc);
	CHECK(strstr(out, "250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n") != NULL);
	CHECK(strstr(out, "503 5.5.1 Error: MAIL transaction in progress\r\n") != NULL);
	CHECK(strstr(out, "501 5.5.4 Syntax: AUTH mechanism\r\n501 5.5.4 Syntax: AUTH "
			  "mechanism\r\n") != NULL);
	CHECK(strstr(out, "334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication aborted\r\n") != NULL);
	CHECK(!smtp_session_authenticated(s));
	free(out);
	smtp_session_free(s);
}

/* A response line over smtpd_sasl_response_limit: skipped to its end, then too_long. */
static void test_response_limit(void)
{
	struct smtp_config small = cfg;
	small.sasl_response_limit = 16;
	struct smtp_session *s = smtp_session_new(&small, &client);
	smtp_session_set_auth(s, true, "LOGIN", 0);
	smtp_session_greet(s);
	free(take_output(s));
	struct script sc = { 0 };
	const char *t = "AUTH LOGIN\r\n0123456789abcdef0123456789\r\nQUIT\r\n";
	char *out = converse(s, t, strlen(t), 0, &sc);
	CHECK_STR_EQ(sc.last, "too long");
	CHECK(strstr(out, "500 5.5.6 SASL response limit exceeded\r\n221 2.0.0 Bye\r\n") != NULL);
	free(out);
	smtp_session_free(s);
	/* exactly the limit is fine */
	s = smtp_session_new(&small, &client);
	smtp_session_set_auth(s, true, "LOGIN", 0);
	smtp_session_greet(s);
	free(take_output(s));
	memset(&sc, 0, sizeof(sc));
	t = "AUTH LOGIN\r\n0123456789abcdef\r\n";
	out = converse(s, t, strlen(t), 0, &sc);
	CHECK_STR_EQ(sc.last, "0123456789abcdef");
	free(out);
	smtp_session_free(s);
}

/* ESMTPA and "(Authenticated sender: ...)" in Received:, MAIL's AUTH=. */
static void test_authenticated_session(void)
{
	struct smtp_session *s = session(true, "PLAIN", 0);
	CHECK_INT_EQ(smtp_session_set_auth_header(s, "al(ice)"), 0);
	struct script sc = { 0 };
	const char *t = "EHLO c.example\r\nAUTH PLAIN AHUAcA==\r\n"
			"MAIL FROM:<a@b.example> AUTH=a+40b.example\r\nRSET\r\n"
			"MAIL FROM:<a@b.example> AUTH=<> AUTH=x\r\n";
	char *out = converse(s, t, strlen(t), 0, &sc);
	CHECK(strstr(out, "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n") != NULL);
	CHECK(strstr(out, "503 5.5.4 Error: multiple AUTH= options\r\n") != NULL);
	CHECK_STR_EQ(sc.mail_auth, "a+40b.example");
	char hdr[1024];
	smtp_received_header(hdr, sizeof(hdr), s, "QID", NULL, 0, 0);
	CHECK(strstr(hdr, "\t(Authenticated sender: al\\(ice\\))\r\n\tby localhost (mxgate) with "
			  "ESMTPA id QID") != NULL);
	free(out);
	smtp_session_free(s);
	/* AUTH= is an unknown option while AUTH is off, as Postfix */
	s = session(false, NULL, 0);
	t = "EHLO c\r\nMAIL FROM:<a@b.example> AUTH=<>\r\n";
	out = converse(s, t, strlen(t), 0, &sc);
	CHECK(strstr(out, "555 5.5.4 Unsupported option: AUTH=<>\r\n") != NULL);
	free(out);
	smtp_session_free(s);
}

int main(void)
{
	smtp_config_defaults(&cfg);
	/* the scripts send ahead of the replies: that alone must not end them */
	cfg.forbid_unauth_pipelining = false;
	RUN_TEST(test_login_exchange_split);
	RUN_TEST(test_command_checks);
	RUN_TEST(test_response_limit);
	RUN_TEST(test_authenticated_session);
	return TEST_RESULT();
}
