/* The screen's dummy SMTP engine (postscreen_smtpd.c): what a client sees after the
 * greeting while it is screened. It answers HELO/EHLO/MAIL/RSET/NOOP/ETRN, rejects every
 * RCPT and VRFY (with the enforced test's 550, or 450 4.3.2 for a client that is only
 * being tested), ends at DATA, BDAT and QUIT, and runs the deep tests on the way: command
 * pipelining (PIPELINING is not announced), non-SMTP commands (header-like commands and
 * postscreen_forbidden_commands), bare newlines; with a command count and a time limit
 * for each command (postscreen_command_count_limit, postscreen_command_time_limit).
 * A client that passes the deep tests still ends here: it must come back, and is then
 * PASS OLD. */
#include "smtp/smtp_screen_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum scr_cmd {
	SCR_CMD_HELO, SCR_CMD_EHLO, SCR_CMD_STARTTLS, SCR_CMD_XCLIENT, SCR_CMD_XFORWARD,
	SCR_CMD_AUTH, SCR_CMD_MAIL, SCR_CMD_RCPT, SCR_CMD_DATA, SCR_CMD_BDAT, SCR_CMD_RSET,
	SCR_CMD_NOOP, SCR_CMD_VRFY, SCR_CMD_ETRN, SCR_CMD_QUIT, SCR_CMD_NONE, SCR_CMD_MAX
};

/* postscreen's command table: names, and the ones it does not enable */
static const char *const scr_cmd_names[SCR_CMD_NONE] = {
	"HELO", "EHLO", "STARTTLS", "XCLIENT", "XFORWARD", "AUTH", "MAIL", "RCPT", "DATA",
	"BDAT", "RSET", "NOOP", "VRFY", "ETRN", "QUIT",
};

int scr_smtpd_start(struct smtp_screen *s, uint64_t now_ms)
{
	struct scr_smtpd *d = calloc(1, sizeof(*d) + s->cfg->line_limit + 2);
	if (!d)
		return -ENOMEM;
	s->d = d;
	d->where = "CONNECT";
	scr_enter_state(s, SMTP_SCREEN_ST_SMTPD);
	s->test_name = "tests after SMTP handshake";
	s->start_ms = now_ms;
	if (s->flags & SCR_F_X21)
		s->flags &= ~SCR_SMTPD(2);
	else if (s->flags & SCR_ANY_FAIL)
		/* a client that failed a test before the greeting gets every deep test */
		s->flags |= SCR_SMTPD(2);
	/* no banner for a client that pregreeted */
	if ((s->flags & SCR_FAIL(SMTP_SCREEN_PREGREET)) == 0) {
		char greet[SMTP_SCREEN_TEXT_MAX + 8];
		snprintf(greet, sizeof(greet), "220 %s\r\n", s->cfg->smtpd_banner);
		scr_send(s, greet);
	}
	s->deadline_ms = now_ms + s->cfg->command_time_limit_ms;
	return 0;
}

/* The engine ends the session with reply (postscreen's PSC_CLEAR_EVENT_DROP_SESSION_STATE). */
static void scr_smtpd_drop(struct smtp_screen *s, const char *reply, uint64_t now_ms)
{
	scr_drop(s, reply, scr_now_s(s, now_ms));
}

static const char *scr_421(struct smtp_screen *s, char *buf, size_t cap)
{
	snprintf(buf, cap, "421 %s Service unavailable - try again later\r\n",
		 s->cfg->myhostname);
	return buf;
}

/* Postfix's mystrtok(&p, " "): the next space-separated token, or NULL. */
static char *scr_token(char **p)
{
	char *start = *p;
	while (*start == ' ')
		start++;
	if (!*start) {
		*p = start;
		return NULL;
	}
	char *end = start;
	while (*end && *end != ' ')
		end++;
	if (*end)
		*end++ = '\0';
	*p = end;
	return start;
}

/* psc_extract_addr(): the address of "MAIL FROM:" or "RCPT TO:", unquoted, leniently
 * (never refused), without a source route, into out. */
static void scr_extract_addr(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	bool inquote = false;
	while (*in == ' ')
		in++;
	char stop = ' ';
	if (*in == '<') {
		in++;
		stop = '>';
	}
	for (; *in; in++) {
		if (!inquote && *in == stop)
			break;
		if (*in == '"') {
			inquote = !inquote;
			continue;
		}
		if (*in == '\\' && *++in == '\0')
			break;
		if (o + 1 < cap)
			out[o++] = *in;
	}
	out[o] = '\0';
	if (out[0] == '@') {
		char *colon = strchr(out, ':');
		if (colon)
			memmove(out, colon + 1, strlen(colon + 1) + 1);
	}
}

/* is_header(): "Name:" with optional blanks before the colon. */
static bool scr_is_header(const char *s)
{
	size_t n = 0;
	while (s[n] && (unsigned char)s[n] > 32 && (unsigned char)s[n] < 127 && s[n] != ':')
		n++;
	if (n == 0)
		return false;
	while (s[n] == ' ' || s[n] == '\t')
		n++;
	return s[n] == ':';
}

/* A well-formed UTF-8 string (valid_utf8_string(): no overlongs, surrogates or values
 * past U+10FFFF). */
static bool scr_utf8_ok(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t k;
		unsigned min, v;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, min = 0x80, v = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, min = 0x800, v = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, min = 0x10000, v = c & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return false;
			v = (v << 6) | (p[i + j] & 0x3f);
		}
		if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static bool scr_forbidden(const struct smtp_screen_config *c, const char *cmd)
{
	for (unsigned i = 0; i < c->nforbidden; i++)
		if (strcasecmp(c->forbidden[i], cmd) == 0)
			return true;
	for (unsigned i = 0; i < c->nforbidden_re; i++)
		if (regexec(&c->forbidden_re[i], cmd, 0, NULL, 0) == 0)
			return true;
	return false;
}

/* printable(command, '?') */
static void scr_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

/* A deep test failed: log was written; apply its action. Returns true when the session
 * ended (drop). */
static bool scr_deep_fail(struct smtp_screen *s, int t, enum smtp_screen_action a,
			  const char *drop_reply, uint64_t now_ms)
{
	uint32_t ttl = s->cfg->greet_ttl_s;
	const struct smtp_screen_config *c = s->cfg;
	/* postscreen's psc_min_ttl: the least of the tests' TTLs */
	uint32_t t2[] = { c->dnsbl_min_ttl_s, c->pipelining_ttl_s, c->non_smtp_ttl_s,
			  c->bare_newline_ttl_s };
	for (size_t i = 0; i < sizeof(t2) / sizeof(t2[0]); i++)
		if (t2[i] < ttl)
			ttl = t2[i];
	s->flags |= SCR_FAIL(t);
	s->flags &= ~SCR_PASS(t);
	s->expire[t] = SCR_STAMP_DISABLED;
	s->flags |= SCR_DONE(t); /* SKIP: the rest of this session */
	if (t == SMTP_SCREEN_PIPELINING)
		s->outcome.pipelining_fail = true;
	else if (t == SMTP_SCREEN_NON_SMTP)
		s->outcome.non_smtp_fail = true;
	else
		s->outcome.bare_newline_fail = true;
	switch (a) {
	case SMTP_SCREEN_DROP:
		scr_smtpd_drop(s, drop_reply, now_ms);
		return true;
	case SMTP_SCREEN_ENFORCE:
		scr_enforce(s, "550 5.5.1 Protocol error\r\n");
		break;
	case SMTP_SCREEN_IGNORE:
	case SMTP_SCREEN_ACTION_MAX:
		s->flags &= ~SCR_FAIL(t);
		s->flags |= SCR_PASS(t);
		s->expire[t] = scr_now_s(s, now_ms) + ttl;
		break;
	}
	return false;
}

static bool scr_deep_todo(const struct smtp_screen *s, int t)
{
	return (s->flags & (SCR_TODO(t) | SCR_DONE(t))) == SCR_TODO(t);
}

/* postscreen's psc_smtpd_format_ehlo_reply(): its keywords in its order, less the
 * discarded ones; the last line that remains gets the space. */
static void scr_ehlo_reply(struct smtp_screen *s)
{
	const struct smtp_screen_config *c = s->cfg;
	uint32_t off = c->ehlo_discard;
	char buf[512 + 200];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "250-%s\r\n", c->myhostname);
	size_t last = 0; /* where the last line begins */
#define SCR_EHLO_ADD(...) \
	do { \
		last = n; \
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, __VA_ARGS__); \
	} while (0)
	if (!(off & SMTP_SCREEN_EHLO_SIZE)) {
		if (c->message_size_limit)
			SCR_EHLO_ADD("250-SIZE %llu\r\n",
				     (unsigned long long)c->message_size_limit);
		else
			SCR_EHLO_ADD("250-SIZE\r\n");
	}
	if (!(off & SMTP_SCREEN_EHLO_VRFY) && !c->disable_vrfy)
		SCR_EHLO_ADD("250-VRFY\r\n");
	if (!(off & SMTP_SCREEN_EHLO_ETRN))
		SCR_EHLO_ADD("250-ETRN\r\n");
	if (!(off & SMTP_SCREEN_EHLO_ENHANCEDSTATUSCODES))
		SCR_EHLO_ADD("250-ENHANCEDSTATUSCODES\r\n");
	if (!(off & SMTP_SCREEN_EHLO_8BITMIME))
		SCR_EHLO_ADD("250-8BITMIME\r\n");
	if (!(off & SMTP_SCREEN_EHLO_DSN))
		SCR_EHLO_ADD("250-DSN\r\n");
	if (!(off & SMTP_SCREEN_EHLO_SMTPUTF8) && c->smtputf8)
		SCR_EHLO_ADD("250-SMTPUTF8\r\n");
	if (!(off & SMTP_SCREEN_EHLO_CHUNKING))
		SCR_EHLO_ADD("250-CHUNKING\r\n");
#undef SCR_EHLO_ADD
	assert(n < sizeof(buf));
	buf[last + 3] = ' ';
	scr_send(s, buf);
}

/* Run one command; returns true when the session ended. */
static bool scr_smtpd_command(struct smtp_screen *s, enum scr_cmd cmd, char *args,
			      uint64_t now_ms)
{
	struct scr_smtpd *d = s->d;
	const struct smtp_screen_config *c = s->cfg;
	char buf[SMTP_SCREEN_TEXT_MAX + 64];
	switch (cmd) {
	case SCR_CMD_HELO:
	case SCR_CMD_EHLO: {
		char *name = scr_token(&args);
		if (!name) {
			scr_send(s, cmd == SCR_CMD_HELO ? "501 Syntax: HELO hostname\r\n"
							: "501 Syntax: EHLO hostname\r\n");
			return false;
		}
		snprintf(d->helo, sizeof(d->helo), "%s", name);
		d->have_helo = true;
		d->have_sender = false;
		if (cmd == SCR_CMD_HELO) {
			snprintf(buf, sizeof(buf), "250 %s\r\n", c->myhostname);
			scr_send(s, buf);
		} else {
			d->esmtp = true;
			/* what BDAT is told below: only after EHLO, as postscreen's mask */
			d->ehlo_discard = c->ehlo_discard;
			scr_ehlo_reply(s);
		}
		return false;
	}
	case SCR_CMD_STARTTLS:
		if (scr_token(&args))
			scr_send(s, "501 Syntax: EHLO hostname\r\n");
		else
			scr_send(s, "502 5.5.1 Error: command not implemented\r\n");
		return false;
	case SCR_CMD_MAIL:
	case SCR_CMD_RCPT: {
		char *colon = strchr(args, ':');
		if (cmd == SCR_CMD_MAIL) {
			if (c->helo_required && !d->have_helo)
				scr_send(s, "503 5.5.1 Error: send HELO/EHLO first\r\n");
			else if (d->have_sender)
				scr_send(s, "503 5.5.1 Error: nested MAIL command\r\n");
			else if (!colon)
				scr_send(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
			else {
				scr_extract_addr(colon + 1, d->sender, sizeof(d->sender));
				d->have_sender = true;
				scr_send(s, "250 2.1.0 Ok\r\n");
			}
			return false;
		}
		if (!d->have_sender) {
			scr_send(s, "503 5.5.1 Error: need MAIL command\r\n");
			return false;
		}
		if (!colon) {
			scr_send(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
			return false;
		}
		char rcpt[256];
		scr_extract_addr(colon + 1, rcpt, sizeof(rcpt));
		size_t rl = strlen(s->rcpt_reply);
		scr_log(s, "NOQUEUE: reject: RCPT from %s: %.*s; from=<%s>, to=<%s>, proto=%s, "
			"helo=<%s>", s->addr_port, (int)(rl >= 2 ? rl - 2 : rl), s->rcpt_reply,
			d->sender, rcpt, d->esmtp ? "ESMTP" : "SMTP", d->helo);
		scr_send(s, s->rcpt_reply);
		return false;
	}
	case SCR_CMD_DATA:
		scr_log(s, "DATA without valid RCPT from %s", s->addr_port);
		if (scr_token(&args))
			scr_smtpd_drop(s, "501 5.5.4 Syntax: DATA\r\n", now_ms);
		else if (!d->have_sender)
			scr_smtpd_drop(s, "503 5.5.1 Error: need RCPT command\r\n", now_ms);
		else
			scr_smtpd_drop(s, "554 5.5.1 Error: no valid recipients\r\n", now_ms);
		return true;
	case SCR_CMD_BDAT:
		scr_log(s, "BDAT without valid RCPT from %s", s->addr_port);
		if (d->ehlo_discard & SMTP_SCREEN_EHLO_CHUNKING)
			scr_smtpd_drop(s, "502 5.5.1 Error: command not implemented\r\n", now_ms);
		else if (!scr_token(&args))
			scr_smtpd_drop(s, "501 5.5.4 Syntax: BDAT count [LAST]\r\n", now_ms);
		else if (!d->have_sender)
			scr_smtpd_drop(s, "554 5.5.1 Error: need MAIL command\r\n", now_ms);
		else
			scr_smtpd_drop(s, "554 5.5.1 Error: no valid recipients\r\n", now_ms);
		return true;
	case SCR_CMD_RSET:
		d->have_sender = false;
		scr_send(s, "250 2.0.0 Ok\r\n");
		return false;
	case SCR_CMD_NOOP:
		scr_send(s, "250 2.0.0 Ok\r\n");
		return false;
	case SCR_CMD_VRFY:
		if (!scr_token(&args))
			scr_send(s, "501 5.5.4 Syntax: VRFY address\r\n");
		else if (c->disable_vrfy)
			scr_send(s, "502 5.5.1 VRFY command is disabled\r\n");
		else
			scr_send(s, s->rcpt_reply);
		return false;
	case SCR_CMD_ETRN:
		if (c->helo_required && !d->have_helo)
			scr_send(s, "503 5.5.1 Error: send HELO/EHLO first\r\n");
		else if (!scr_token(&args))
			scr_send(s, "500 Syntax: ETRN domain\r\n");
		else
			scr_send(s, "458 Unable to queue messages\r\n");
		return false;
	case SCR_CMD_QUIT:
		scr_smtpd_drop(s, "221 2.0.0 Bye\r\n", now_ms);
		return true;
	case SCR_CMD_XCLIENT:
	case SCR_CMD_XFORWARD:
	case SCR_CMD_AUTH:
	case SCR_CMD_NONE:
	case SCR_CMD_MAX:
		break;
	}
	scr_send(s, "502 5.5.2 Error: command not recognized\r\n");
	return false;
}

/* One command line (without its line ending) is in d->line; more: bytes follow it in this
 * input. Returns true when the session ended. */
static bool scr_smtpd_line(struct smtp_screen *s, const char *more, size_t more_len,
			   uint64_t now_ms)
{
	struct scr_smtpd *d = s->d;
	const struct smtp_screen_config *c = s->cfg;
	char esc[4 * 100 + 1], r421[SMTP_SCREEN_TEXT_MAX + 64];
	d->line[d->len] = '\0';
	d->len = 0;
	char *args = d->line;
	char *command = scr_token(&args);
	if (!command)
		command = (char *)"";
	enum scr_cmd cmd = SCR_CMD_NONE;
	for (int i = 0; i < SCR_CMD_NONE; i++)
		if (strcasecmp(command, scr_cmd_names[i]) == 0) {
			cmd = (enum scr_cmd)i;
			break;
		}
	const char *saved_where = d->where;
	d->where = cmd == SCR_CMD_NONE ? "UNIMPLEMENTED" : scr_cmd_names[cmd];
	if ((s->flags & SCR_F_X21) && cmd != SCR_CMD_QUIT) {
		scr_smtpd_drop(s, s->final_reply, now_ms);
		return true;
	}
	const int N = SMTP_SCREEN_NON_SMTP, P = SMTP_SCREEN_PIPELINING;
	if (scr_deep_todo(s, N) && cmd == SCR_CMD_NONE &&
	    (scr_is_header(command) ||
	     (c->smtputf8 && !scr_utf8_ok((const unsigned char *)command, strlen(command))) ||
	     scr_forbidden(c, command))) {
		scr_printable(command);
		size_t al = strlen(args);
		smtp_screen_escape(args, al < 100 ? al : 100, esc, sizeof(esc));
		scr_log(s, "NON-SMTP COMMAND from %s after %s: %.100s %s", s->addr_port,
			saved_where, command, esc);
		if (scr_deep_fail(s, N, c->non_smtp_action,
				  "521 5.7.0 Error: I can break rules, too. Goodbye.\r\n", now_ms))
			return true;
	}
	if (cmd != SCR_CMD_BDAT && scr_deep_todo(s, P) && more_len > 0) {
		scr_printable(command);
		smtp_screen_escape(more, more_len < 100 ? more_len : 100, esc, sizeof(esc));
		scr_log(s, "COMMAND PIPELINING from %s after %.100s: %s", s->addr_port, command,
			esc);
		if (scr_deep_fail(s, P, c->pipelining_action, "521 5.5.1 Protocol error\r\n",
				  now_ms))
			return true;
	}
	if (cmd == SCR_CMD_RCPT) {
		/* a client that got this far passes the deep tests it has not failed */
		static const int order[] = { SMTP_SCREEN_BARE_NEWLINE, SMTP_SCREEN_NON_SMTP,
					     SMTP_SCREEN_PIPELINING };
		for (size_t i = 0; i < 3; i++) {
			int t = order[i];
			uint32_t ttl = t == SMTP_SCREEN_BARE_NEWLINE ? c->bare_newline_ttl_s
				       : t == SMTP_SCREEN_NON_SMTP ? c->non_smtp_ttl_s
								   : c->pipelining_ttl_s;
			if ((s->flags & (SCR_TODO(t) | SCR_PASS(t) | SCR_FAIL(t))) == SCR_TODO(t)) {
				s->flags |= SCR_PASS(t);
				s->expire[t] = scr_now_s(s, now_ms) + ttl;
			}
		}
	}
	if (++d->commands > c->command_count_limit && cmd != SCR_CMD_QUIT) {
		scr_log(s, "COMMAND COUNT LIMIT from %s after %s", s->addr_port, saved_where);
		scr_smtpd_drop(s, scr_421(s, r421, sizeof(r421)), now_ms);
		return true;
	}
	if (scr_smtpd_command(s, cmd, args, now_ms))
		return true;
	s->deadline_ms = now_ms + c->command_time_limit_ms;
	return false;
}

size_t scr_smtpd_input(struct smtp_screen *s, const char *buf, size_t len, uint64_t now_ms)
{
	const struct smtp_screen_config *c = s->cfg;
	size_t i = 0;
	while (i < len && s->state == SMTP_SCREEN_ST_SMTPD && smtp_screen_wants_input(s)) {
		struct scr_smtpd *d = s->d;
		char ch = buf[i];
		if (!d->cr && d->len >= c->line_limit) {
			char r421[SMTP_SCREEN_TEXT_MAX + 64];
			scr_log(s, "COMMAND LENGTH LIMIT from %s after %s", s->addr_port, d->where);
			scr_smtpd_drop(s, scr_421(s, r421, sizeof(r421)), now_ms);
			return i;
		}
		i++;
		d->line[d->len++] = ch;
		bool crlf = d->cr && ch == '\n';
		d->cr = ch == '\r';
		if (crlf) {
			d->len -= 2;
		} else if (ch == '\n') {
			const int B = SMTP_SCREEN_BARE_NEWLINE;
			if (scr_deep_todo(s, B)) {
				char esc[4 * 100 + 1];
				size_t n = d->len - 1;
				smtp_screen_escape(d->line, n < 100 ? n : 100, esc, sizeof(esc));
				scr_log(s, "BARE NEWLINE from %s after %s", s->addr_port, esc);
				if (scr_deep_fail(s, B, c->bare_newline_action,
						  "521 5.5.1 Protocol error\r\n", now_ms))
					return i;
			}
			d->len -= 1;
		} else {
			continue;
		}
		if (scr_smtpd_line(s, buf + i, len - i, now_ms))
			return i;
	}
	return i;
}

void scr_smtpd_timer(struct smtp_screen *s, uint64_t now_ms)
{
	char reply[SMTP_SCREEN_TEXT_MAX + 64];
	scr_log(s, "COMMAND TIME LIMIT from %s after %s", s->addr_port, s->d->where);
	snprintf(reply, sizeof(reply), "421 4.4.2 %s Error: timeout exceeded\r\n",
		 s->cfg->myhostname);
	scr_smtpd_drop(s, reply, now_ms);
}
