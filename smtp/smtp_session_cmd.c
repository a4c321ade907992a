/* The session engine's commands (RFC 5321 4.1): reading command lines, the command table
 * with its pipelining and junk flags, and the handlers of HELO/EHLO, MAIL (SIZE, BODY,
 * SMTPUTF8, RFC 3461 DSN parameters), RCPT, DATA, BDAT, RSET, NOOP, QUIT, VRFY, HELP and
 * the commands mxgate refuses. Part of the engine split across smtp_session*.c. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_address.h"
#include "smtp/smtp_internal.h"
#include "smtp/smtp_session_internal.h"

/* ---- commands ---- */

enum command {
	CMD_HELO,
	CMD_EHLO,
	CMD_MAIL,
	CMD_RCPT,
	CMD_DATA,
	CMD_BDAT,
	CMD_RSET,
	CMD_NOOP,
	CMD_QUIT,
	CMD_VRFY,
	CMD_HELP,
	CMD_STARTTLS,
	CMD_AUTH,
	CMD_ETRN,
	CMD_XCLIENT,
	CMD_XFORWARD,
	CMD_MAX,
};

#define CMD_LAST 0x1u /* must end a pipelined group (RFC 2920 3.1, RFC 3207 4) */
#define CMD_JUNK 0x2u /* counts toward smtpd_junk_command_limit */
#define CMD_PRE_TLS 0x4u /* allowed before STARTTLS where TLS is required (Postfix's
			    SMTPD_CMD_FLAG_PRE_TLS) */

static const struct {
	const char *name;
	unsigned flags;
} commands[CMD_MAX] = {
	[CMD_HELO] = { "HELO", CMD_LAST | CMD_JUNK | CMD_PRE_TLS },
	[CMD_EHLO] = { "EHLO", CMD_LAST | CMD_JUNK | CMD_PRE_TLS },
	[CMD_MAIL] = { "MAIL", 0 },
	[CMD_RCPT] = { "RCPT", 0 },
	[CMD_DATA] = { "DATA", CMD_LAST },
	[CMD_BDAT] = { "BDAT", 0 }, /* checked after its chunk */
	[CMD_RSET] = { "RSET", CMD_JUNK },
	[CMD_NOOP] = { "NOOP", CMD_LAST | CMD_JUNK | CMD_PRE_TLS },
	[CMD_QUIT] = { "QUIT", CMD_LAST | CMD_PRE_TLS },
	[CMD_VRFY] = { "VRFY", CMD_LAST | CMD_JUNK },
	[CMD_HELP] = { "HELP", CMD_JUNK | CMD_PRE_TLS },
	[CMD_STARTTLS] = { "STARTTLS", CMD_LAST | CMD_PRE_TLS },
	[CMD_AUTH] = { "AUTH", 0 },
	[CMD_ETRN] = { "ETRN", CMD_JUNK },
	[CMD_XCLIENT] = { "XCLIENT", CMD_PRE_TLS },
	[CMD_XFORWARD] = { "XFORWARD", 0 },
};

/* Postfix's smtpd_forbidden_commands (CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}) and
 * its is_header() check: a proxy or a web client, or a message sent without DATA. */
static bool forbidden_command(struct mx_span verb)
{
	if (!mx_ctype_is_alpha(verb.ptr[0]))
		return true;
	if (smtp_span_eq_cstr_nocase(verb, "CONNECT") || smtp_span_eq_cstr_nocase(verb, "GET") ||
	    smtp_span_eq_cstr_nocase(verb, "POST"))
		return true;
	size_t i = 0;
	while (i < verb.len && (unsigned char)verb.ptr[i] > 32 && (unsigned char)verb.ptr[i] < 127 &&
	       verb.ptr[i] != ':')
		i++;
	return i > 0 && i < verb.len && verb.ptr[i] == ':';
}

/* The HELO name as Received: shows it: Postfix's printable() and neuter(" <>()\\\";@"). */
bool smtp_session_helo_neuter(struct smtp_session *s, struct mx_span name)
{
	if (!s->names && !(s->names = calloc(1, sizeof(*s->names)))) {
		s->out_failed = true; /* smtp_session_step() ends the session */
		return false;
	}
	size_t n = name.len < HOST_MAX ? name.len : HOST_MAX;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name.ptr[i];
		bool bad = c < 32 || c == 127 || (c >= 128 && !s->cfg->enable_smtputf8) ||
			   strchr(" <>()\\\";@", c) != NULL;
		s->names->helo_next[i] = bad ? '?' : (char)c;
	}
	s->names->helo_next[n] = '\0';
	s->helo_next_len = (uint16_t)n;
	return true;
}

void smtp_session_helo_accept(struct smtp_session *s)
{
	assert(s->names);
	memcpy(s->names->helo, s->names->helo_next, s->helo_next_len + 1u);
	s->helo_len = s->helo_next_len;
}

void smtp_session_helo_forget(struct smtp_session *s)
{
	if (s->names)
		s->names->helo[0] = '\0';
	s->helo_len = 0;
}

static void cmd_helo(struct smtp_session *s, struct mx_span args, bool esmtp)
{
	if (args.len == 0) {
		/* Postfix answers before any extension is known: no enhanced code here */
		smtp_session_replyf(s, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		smtp_session_engine_error(s, SMTP_ERR_SYNTAX, 501);
		return;
	}
	if (!smtp_session_helo_neuter(s, args))
		return;
	s->helo_next_esmtp = esmtp;
	struct smtp_event ev = { .type = SMTP_EV_HELO, .needs_verdict = true };
	ev.u.helo.name = args;
	ev.u.helo.esmtp = esmtp;
	smtp_session_evq_push(s, ev);
}

/* A non-ASCII address without SMTPUTF8 on MAIL (RFC 6531 3.4): Postfix's 553 when we
 * offer SMTPUTF8, else it is plain bad syntax. */
static void refuse_undeclared_utf8(struct smtp_session *s, bool recipient)
{
	if (s->cfg->enable_smtputf8)
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS,
			   "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	else if (recipient)
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
	else
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.7 Bad sender address syntax");
}

/* ---- RFC 3461 DSN parameters ---- */

/* RFC 3461 4.4 and 4.2: the longest ENVID esmtp-value, and the longest original recipient
 * address once its xtext is decoded. Postfix bounds neither (only the command line); the
 * DSN that carries them back is built from them, so they get the RFC's bounds here. */
#define DSN_ENVID_MAX 100
#define DSN_ORCPT_MAX 500

/* RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=",
 * hexchar = "+" 2HEXDIG. Every decoded octet must be printable ASCII (graphic or space:
 * RFC 3461 4.2 and 4.4, Postfix's allprint() for ENVID), so a "+0D+0A" can never put a
 * line break into the DSN built from it. `utf8` also lets raw UTF-8 through (RFC 6533 3,
 * ORCPT in an SMTPUTF8 transaction; the command line was checked as UTF-8). Returns
 * the decoded length, or -1. */
static long dsn_xtext_len(struct mx_span v, bool utf8)
{
	long n = 0;
	for (size_t i = 0; i < v.len; i++, n++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c == '+') {
			if (v.len - i < 3)
				return -1;
			int hi = mx_ctype_hex_value(v.ptr[i + 1]);
			int lo = mx_ctype_hex_value(v.ptr[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			int d = hi * 16 + lo;
			if (d < 32 || d > 126)
				return -1;
			i += 2;
		} else if (c >= 128) {
			if (!utf8)
				return -1;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
	}
	return n;
}

/* RET=FULL|HDRS (RFC 3461 4.3), any case. */
static bool dsn_ret_valid(struct mx_span v)
{
	return smtp_span_eq_cstr_nocase(v, "FULL") || smtp_span_eq_cstr_nocase(v, "HDRS");
}

/* ENVID=xtext (RFC 3461 4.4): not empty (RFC 5321 esmtp-value is 1*), at most 100. */
static bool dsn_envid_valid(struct mx_span v)
{
	return v.len > 0 && v.len <= DSN_ENVID_MAX && dsn_xtext_len(v, false) >= 0;
}

/* NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ) (RFC 3461 4.1), any case, each
 * keyword once: a list that names one twice or mixes NEVER in is refused. */
static bool dsn_notify_valid(struct mx_span v)
{
	static const char *const words[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	unsigned seen = 0, count = 0;
	size_t start = 0;
	for (size_t i = 0; i <= v.len; i++) {
		if (i < v.len && v.ptr[i] != ',')
			continue;
		struct mx_span w = mx_span_make(v.ptr + start, i - start);
		unsigned k = 0;
		while (k < 4 && !smtp_span_eq_cstr_nocase(w, words[k]))
			k++;
		if (k == 4 || (seen & (1u << k)))
			return false;
		seen |= 1u << k;
		count++;
		start = i + 1;
	}
	return !((seen & 1u) && count > 1);
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2): addr-type is an RFC 5322 atom ("rfc822",
 * "utf-8"); the address may be empty, as Postfix takes it. */
static bool dsn_orcpt_valid(struct mx_span v, bool utf8)
{
	const char *semi = memchr(v.ptr, ';', v.len);
	if (!semi || semi == v.ptr)
		return false;
	for (const char *p = v.ptr; p < semi; p++) {
		unsigned char c = (unsigned char)*p;
		/* atext (RFC 5322 3.2.3) */
		if (!(mx_ctype_is_alnum(c) ||
		      strchr("!#$%&'*+-/=?^_`{|}~", c)))
			return false;
	}
	struct mx_span addr = mx_span_make(semi + 1, v.len - (size_t)(semi + 1 - v.ptr));
	long n = dsn_xtext_len(addr, utf8);
	return n >= 0 && n <= DSN_ORCPT_MAX;
}

void smtp_session_reply_ehlo(struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	char host[HOST_MAX + 1];
	const char *kw[16];
	char size[40];
	char auth[256 + 8], auth_broken[256 + 8];
	unsigned n = 0;

	/* Postfix's order: PIPELINING SIZE VRFY ETRN STARTTLS AUTH XCLIENT XFORWARD
	 * ENHANCEDSTATUSCODES 8BITMIME DSN SMTPUTF8 CHUNKING (ETRN and XFORWARD are not
	 * offered; STARTTLS where TLS is set up and not yet active; AUTH as
	 * smtp_session_set_auth() says; XCLIENT only to
	 * smtpd_authorized_xclient_hosts) */
	if (c->enable_pipelining)
		kw[n++] = "PIPELINING";
	if (c->message_size_limit)
		snprintf(size, sizeof(size), "SIZE %zu", c->message_size_limit);
	else
		snprintf(size, sizeof(size), "SIZE");
	kw[n++] = size;
	if (!c->disable_vrfy_command)
		kw[n++] = "VRFY";
	if (s->tls_offer && !s->tls_active)
		kw[n++] = "STARTTLS";
	smtp_session_auth_ehlo(s, kw, &n, auth, sizeof(auth), auth_broken, sizeof(auth_broken));
	if (s->xclient_authorized)
		kw[n++] = "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT";
	kw[n++] = "ENHANCEDSTATUSCODES";
	if (c->enable_8bitmime)
		kw[n++] = "8BITMIME";
	if (c->enable_dsn)
		kw[n++] = "DSN";
	if (c->enable_smtputf8)
		kw[n++] = "SMTPUTF8";
	if (c->enable_chunking)
		kw[n++] = "CHUNKING";
	smtp_session_replyf(s, "250-%s", smtp_session_myhostname(s, host, sizeof(host)));
	for (unsigned i = 0; i < n; i++)
		smtp_session_replyf(s, "250%c%s", i + 1 == n ? ' ' : '-', kw[i]);
}

/* The ESMTP parameters of MAIL FROM (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8),
 * checked in order as Postfix's mail_cmd() does. Returns false after replying. */
static bool mail_params(struct smtp_session *s, struct mx_span text)
{
	const struct smtp_config *c = s->cfg;
	struct smtp_param p;
	size_t pos = 0;
	bool have_size = false, have_body = false, have_utf8 = false;
	bool have_ret = false, have_envid = false, have_auth = false;
	char tok[REPLY_LINE_MAX - 40];

	s->mail_next_size = 0;
	s->mail_next_body = SMTP_BODY_UNSPECIFIED;
	s->mail_next_utf8 = false;
	s->mail_next_auth = mx_span_make(NULL, 0);
	while (smtp_param_next(text, &pos, &p)) {
		smtp_session_printable(tok, sizeof(tok), p.text, c->enable_smtputf8);
		bool is_size = smtp_span_eq_cstr_nocase(p.keyword, "SIZE");
		bool is_body = smtp_span_eq_cstr_nocase(p.keyword, "BODY");
		bool is_utf8 = smtp_span_eq_cstr_nocase(p.keyword, "SMTPUTF8");
		if (p.keyword_valid && ((is_size && have_size) || (is_body && have_body) ||
					(is_utf8 && have_utf8))) {
			/* Postfix takes the last; two answers to one question are refused
			 * here, so no two readers of the envelope can disagree. */
			smtp_session_replyf(s, "501 5.5.4 Error: duplicate parameter: %s", tok);
			smtp_session_engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
			return false;
		}
		if (p.keyword_valid && is_size && p.has_value) {
			uint64_t v = 0;
			int rc = smtp_param_size(p.value, &v);
			if (rc == -ERANGE) {
				refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Message size exceeds file system imposed limit");
				return false;
			}
			if (rc < 0) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad message size syntax");
				return false;
			}
			have_size = true;
			s->mail_next_size = v;
			continue;
		}
		if (p.keyword_valid && is_body && p.has_value) {
			if (smtp_span_eq_cstr_nocase(p.value, "7BIT")) {
				s->mail_next_body = SMTP_BODY_7BIT;
				have_body = true;
				continue;
			}
			if (c->enable_8bitmime && smtp_span_eq_cstr_nocase(p.value, "8BITMIME")) {
				s->mail_next_body = SMTP_BODY_8BITMIME;
				have_body = true;
				continue;
			}
			/* BINARYMIME is not offered (RFC 3030 section 3) */
		}
		if (p.keyword_valid && is_utf8 && !p.has_value && c->enable_smtputf8) {
			have_utf8 = true;
			s->mail_next_utf8 = true;
			continue;
		}
		bool is_ret = smtp_span_eq_cstr_nocase(p.keyword, "RET");
		if (p.keyword_valid && p.has_value &&
		    (is_ret || smtp_span_eq_cstr_nocase(p.keyword, "ENVID"))) {
			/* RFC 3461 4.3, 4.4; Postfix's mail_cmd() checks and texts: the
			 * discarded keyword first, then a repeat or a bad value alike. */
			if (!c->enable_dsn) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.7.1 DSN support is disabled");
				return false;
			}
			if (is_ret ? (have_ret || !dsn_ret_valid(p.value))
				   : (have_envid || !dsn_envid_valid(p.value))) {
				if (is_ret)
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad RET parameter syntax");
				else
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Bad ENVID parameter syntax");
				return false;
			}
			*(is_ret ? &have_ret : &have_envid) = true;
			continue;
		}
		if (p.keyword_valid && p.has_value && s->auth_enabled &&
		    smtp_span_eq_cstr_nocase(p.keyword, "AUTH")) {
			/* RFC 4954 section 5, as Postfix's smtpd_sasl_mail_opt(): taken from
			 * anyone while AUTH is enabled, once; "<>" is no submitter */
			if (have_auth) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER,
					   "503 5.5.4 Error: multiple AUTH= options");
				return false;
			}
			have_auth = true;
			s->mail_next_auth = p.value;
			continue;
		}
		smtp_session_replyf(s, "555 5.5.4 Unsupported option: %s", tok);
		smtp_session_engine_error(s, SMTP_ERR_BAD_PARAMETER, 555);
		return false;
	}
	return true;
}

/* Postfix's anvil rate checks in mail_cmd(), rcpt_cmd() and vrfy_cmd(): the hook counts
 * the event; over the limit the command is refused, as an error. Returns true after
 * replying. */
static bool rate_refused(struct smtp_session *s, enum smtp_rate_event ev)
{
	if (!s->rate_over || !s->rate_over(s->rate_arg, ev))
		return false;
	if (ev == SMTP_RATE_MESSAGE)
		smtp_session_replyf(s, "450 4.7.1 Error: too much mail from %s", smtp_session_client_addr_str(s));
	else if (ev == SMTP_RATE_AUTH)
		smtp_session_replyf(s, "450 4.7.1 Error: too many AUTH commands from %s",
				    smtp_session_client_addr_str(s));
	else if (ev == SMTP_RATE_NEWTLS) {
		/* Postfix's starttls_cmd(): the client's name and address */
		smtp_session_replyf(s, "454 4.7.0 Error: too many new TLS sessions from %s[%s]",
				    smtp_session_client_name_str(s), smtp_session_client_addr_str(s));
		smtp_session_engine_error(s, SMTP_ERR_RATE_LIMIT, 454);
		return true;
	}
	else
		smtp_session_replyf(s, "450 4.7.1 Error: too many recipients from %s",
				    smtp_session_client_addr_str(s));
	smtp_session_engine_error(s, SMTP_ERR_RATE_LIMIT, 450);
	return true;
}

static void cmd_mail(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct mx_span rest;
	struct smtp_path path;

	if (c->helo_required && !s->helo_seen) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (!smtp_span_prefix_nocase(args, "FROM:", &rest) || smtp_span_trim(rest).len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (rate_refused(s, SMTP_RATE_MESSAGE))
		return;
	unsigned flags = SMTP_PATH_ALLOW_NULL | (c->strict_rfc821_envelopes ? SMTP_PATH_STRICT : 0);
	if (smtp_path_parse(rest, flags, &path) != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (!mail_params(s, path.rest))
		return;
	if (c->message_size_limit && s->mail_next_size > c->message_size_limit) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (path.non_ascii && !s->mail_next_utf8) {
		/* RFC 6531 3.4; Postfix with strict_smtputf8 */
		refuse_undeclared_utf8(s, false);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_MAIL, .needs_verdict = true };
	ev.u.mail.addr = path.mailbox;
	ev.u.mail.params = path.rest;
	ev.u.mail.size = s->mail_next_size;
	ev.u.mail.body = s->mail_next_body;
	ev.u.mail.smtputf8 = s->mail_next_utf8;
	ev.u.mail.auth = s->mail_next_auth;
	smtp_session_evq_push(s, ev);
}

static void cmd_rcpt(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct mx_span rest;
	struct smtp_path path;
	struct smtp_param p;
	size_t pos = 0;

	if (!s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->bdat_used) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	if (!smtp_span_prefix_nocase(args, "TO:", &rest) || smtp_span_trim(rest).len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (rate_refused(s, SMTP_RATE_RECIPIENT))
		return;
	unsigned flags = c->strict_rfc821_envelopes ? SMTP_PATH_STRICT : 0;
	if (smtp_path_parse(rest, flags, &path) != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	bool have_notify = false, have_orcpt = false;
	while (smtp_param_next(path.rest, &pos, &p)) {
		char tok[REPLY_LINE_MAX - 40];
		bool is_notify = smtp_span_eq_cstr_nocase(p.keyword, "NOTIFY");
		if (p.keyword_valid && p.has_value &&
		    (is_notify || smtp_span_eq_cstr_nocase(p.keyword, "ORCPT"))) {
			/* RFC 3461 4.1, 4.2; Postfix's rcpt_cmd() checks and texts */
			if (!c->enable_dsn) {
				refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.7.1 DSN support is disabled");
				return;
			}
			if (is_notify ? (have_notify || !dsn_notify_valid(p.value))
				      : (have_orcpt || !dsn_orcpt_valid(p.value, s->smtputf8))) {
				if (is_notify)
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER,
						   "501 5.5.4 Error: Bad NOTIFY parameter syntax");
				else
					refuse_lit(s, SMTP_ERR_BAD_PARAMETER,
						   "501 5.5.4 Error: Bad ORCPT parameter syntax");
				return;
			}
			*(is_notify ? &have_notify : &have_orcpt) = true;
			continue;
		}
		smtp_session_replyf(s, "555 5.5.4 Unsupported option: %s",
				    smtp_session_printable(tok, sizeof(tok), p.text,
							   c->enable_smtputf8));
		smtp_session_engine_error(s, SMTP_ERR_BAD_PARAMETER, 555);
		return;
	}
	if (c->recipient_limit && s->rcpt_count >= c->recipient_limit) {
		/* Postfix's rcpt_cmd(): the first smtpd_recipient_overshoot_limit of these in a
		 * transaction are not errors, so a client that sends 1,100 recipients keeps the
		 * first 1,000 and its session */
		if (s->rcpt_overshoot++ < c->recipient_overshoot_limit) {
			reply_lit(s, "452 4.5.3 Error: too many recipients");
			smtp_session_push_error(s, SMTP_ERR_RECIPIENT_OVERSHOOT, 452, false, 0);
			return;
		}
		refuse_lit(s, SMTP_ERR_TOO_MANY_RECIPIENTS, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (path.non_ascii && !s->smtputf8) {
		refuse_undeclared_utf8(s, true);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_RCPT, .needs_verdict = true };
	ev.u.rcpt.addr = path.mailbox;
	ev.u.rcpt.params = path.rest;
	smtp_session_evq_push(s, ev);
}

/* Postfix's data_cmd()/bdat_cmd(): no recipient yet is "need RCPT" outside a transaction
 * and "no valid recipients" inside one. Returns false after replying. */
static bool have_recipients(struct smtp_session *s)
{
	if (s->rcpt_count > 0)
		return true;
	if (!s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: need RCPT command");
	} else {
		refuse_lit(s, SMTP_ERR_NO_VALID_RECIPIENTS, "554 5.5.1 Error: no valid recipients");
	}
	return false;
}

static void cmd_data(struct smtp_session *s, struct mx_span args)
{
	if (!have_recipients(s))
		return;
	if (args.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->bdat_used) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	s->data_next_bdat = false;
	struct smtp_event ev = { .type = SMTP_EV_DATA, .needs_verdict = true };
	ev.u.data.bdat = false;
	smtp_session_evq_push(s, ev);
}

/* BDAT chunk-size [LAST] (RFC 3030 section 2). */
static bool bdat_args(struct mx_span args, uint64_t *size, bool *last)
{
	struct smtp_param tok;
	size_t pos = 0;

	if (!smtp_param_next(args, &pos, &tok) || tok.has_value)
		return false;
	/* A count off_t cannot hold is malformed, as Postfix's off_cvt_string() finds it: the
	 * session cannot stay in step with a chunk it could never finish reading. */
	if (smtp_param_size(tok.text, size) != 0 || *size > (uint64_t)INT64_MAX)
		return false;
	*last = false;
	if (smtp_param_next(args, &pos, &tok)) {
		if (!smtp_span_eq_cstr_nocase(tok.text, "LAST"))
			return false;
		*last = true;
	}
	return !smtp_param_next(args, &pos, &tok);
}

static void cmd_bdat(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	uint64_t size;
	bool last;

	if (!c->enable_chunking) {
		/* the chunk that follows cannot be told from commands: hang up, as Postfix */
		reply_lit(s, "521 5.5.1 Error: command not implemented");
		smtp_session_engine_close(s, SMTP_ERR_UNKNOWN_COMMAND, 521);
		return;
	}
	if (!bdat_args(args, &size, &last)) {
		reply_lit(s, "521 5.5.4 Syntax: BDAT count [LAST]");
		smtp_session_engine_close(s, SMTP_ERR_SYNTAX, 521);
		return;
	}
	/* Whatever the answer, the chunk's octets are read (RFC 3030 section 2). */
	s->chunk_size = s->chunk_left = size;
	s->chunk_last = last;
	s->chunk_discard = true;
	smtp_session_enter_state(s, ST_CHUNK);

	uint64_t so_far = s->bdat_used ? s->msg_bytes : 0;
	if (s->bdat_failed) {
		smtp_session_replyf(s, "551 5.0.0 Discarded %" PRIu64 " bytes after earlier error",
				    size);
		smtp_session_engine_error(s, SMTP_ERR_BAD_SEQUENCE, 551);
	} else if (!have_recipients(s)) {
		if (s->mail_given)
			s->bdat_used = s->bdat_failed = true;
	} else if (size == 0 && !last) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "551 5.7.1 Null BDAT request");
		s->bdat_used = s->bdat_failed = true;
		smtp_session_abort_message(s);
	} else if (c->message_size_limit && (size > c->message_size_limit ||
					     so_far + size > c->message_size_limit)) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Chunk exceeds message size limit");
		s->bdat_used = s->bdat_failed = true;
		smtp_session_abort_message(s);
	} else if (!s->bdat_used) {
		/* The first chunk opens the message: DATA's verdict decides it. */
		s->bdat_used = true;
		smtp_session_enter_state(s, ST_COMMAND);
		s->data_next_bdat = true;
		struct smtp_event ev = { .type = SMTP_EV_DATA, .needs_verdict = true };
		ev.u.data.bdat = true;
		smtp_session_evq_push(s, ev);
	} else {
		s->chunk_discard = false;
	}
}

static void cmd_vrfy(struct smtp_session *s, struct mx_span args)
{
	const struct smtp_config *c = s->cfg;
	struct smtp_path path;
	char echo[REPLY_LINE_MAX - 20];

	if (c->disable_vrfy_command) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "502 5.5.1 VRFY command is disabled");
		return;
	}
	if (args.len == 0) {
		smtp_session_replyf(s, "501 5.5.4 Syntax: VRFY address%s",
				    c->enable_smtputf8 ? " [SMTPUTF8]" : "");
		smtp_session_engine_error(s, SMTP_ERR_SYNTAX, 501);
		return;
	}
	if (rate_refused(s, SMTP_RATE_RECIPIENT))
		return;
	enum smtp_path_result r = smtp_path_parse(args, 0, &path);
	bool utf8 = false;
	if (r == SMTP_PATH_OK && path.rest.len) {
		utf8 = c->enable_smtputf8 && smtp_span_eq_cstr_nocase(path.rest, "SMTPUTF8");
		if (!utf8)
			r = SMTP_PATH_SYNTAX;
	}
	if (r != SMTP_PATH_OK) {
		refuse_lit(s, SMTP_ERR_BAD_ADDRESS, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (path.non_ascii && !utf8) {
		refuse_undeclared_utf8(s, true);
		return;
	}
	/* RFC 5321 3.5.3: 252, we cannot verify here; Postfix echoes what the client wrote */
	struct mx_span written =
		smtp_span_trim(mx_span_make(args.ptr, (size_t)(path.rest.ptr - args.ptr)));
	smtp_session_replyf(s, "252 2.0.0 %s", smtp_session_printable(echo, sizeof(echo), written,
								c->enable_smtputf8));
}

static void cmd_help(struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	/* RFC 5321 4.1.1.8; Postfix has no HELP, this lists what mxgate implements */
	smtp_session_replyf(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA%s RSET NOOP QUIT%s HELP",
			    c->enable_chunking ? " BDAT" : "",
			    c->disable_vrfy_command ? "" : " VRFY");
}

/* STARTTLS (RFC 3207 4, Postfix's starttls_cmd()). Taken: the 220 is the last plaintext
 * reply, every byte the client sent after the command is thrown away (it was sent before
 * the 220 and so before TLS: an attacker's injection, CVE-2011-0411), and the session
 * starts over as RFC 3207 4.2 says: no HELO, no transaction. */
static void cmd_starttls(struct smtp_session *s, struct mx_span args)
{
	if (args.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls_active) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (!s->tls_offer) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "502 5.5.1 Error: command not implemented");
		return;
	}
	/* smtpd_client_new_tls_session_rate_limit: refused before the handshake */
	if (rate_refused(s, SMTP_RATE_NEWTLS))
		return;
	reply_lit(s, "220 2.0.0 Ready to start TLS");
	s->discard_input = true;
	s->tls_active = true;
	smtp_session_abort_message(s);
	smtp_session_txn_reset(s);
	s->helo_seen = s->esmtp = false;
	smtp_session_helo_forget(s);
	/* and AUTH (Postfix's smtpd_start_tls() resets SASL) */
	s->auth_authenticated = false;
	free(s->auth_header_user);
	s->auth_header_user = NULL;
	smtp_session_push_simple(s, SMTP_EV_STARTTLS);
}

/* A command while the client restrictions deny this client: Postfix's 503 for the client
 * the restrictions saw (smtpd_proto(), "RFC 2821 Sec 3.1"). */
static void refuse_denied(struct smtp_session *s)
{
	smtp_session_replyf(s, "503 5.7.0 Error: access denied for %s[%s]",
			    smtp_session_client_name_str(s), smtp_session_client_addr_str(s));
	smtp_session_engine_error(s, SMTP_ERR_ACCESS_DENIED, 503);
}

/* One complete command line (terminator removed). `more_after`: the client sent more
 * bytes after it without waiting for our reply. */
static void process_command(struct smtp_session *s, const char *text, size_t n, bool more_after)
{
	const struct smtp_config *c = s->cfg;

	s->requests++;
	if (s->tls_refuse) {
		/* smtpd_tls_req_ccert: whatever the line says (Postfix's smtpd_start_tls()) */
		char host[HOST_MAX + 1];
		smtp_session_replyf(s, "421 %s %s Error: %s", s->tls_refuse->dsn,
				    smtp_session_myhostname(s, host, sizeof(host)),
				    s->tls_refuse->text);
		smtp_session_engine_close(s, SMTP_ERR_ACCESS_DENIED, 0);
		return;
	}
	if (memchr(text, '\0', n) || memchr(text, '\r', n)) {
		/* RFC 5321 2.3.8: CR only before LF; NUL never belongs in a command */
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad syntax");
		return;
	}
	struct mx_span line = smtp_span_trim(mx_span_make(text, n));
	if (line.len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad syntax");
		return;
	}
	if (c->enable_smtputf8 && !smtp_utf8_valid(line.ptr, line.len)) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "500 5.5.2 Error: bad UTF-8 syntax");
		return;
	}
	size_t vlen = 0;
	while (vlen < line.len && !mx_ctype_is_blank(line.ptr[vlen]))
		vlen++;
	struct mx_span verb = mx_span_make(line.ptr, vlen);
	struct mx_span args = smtp_span_trim(mx_span_make(line.ptr + vlen, line.len - vlen));

	enum command cmd = CMD_MAX;
	for (unsigned i = 0; i < CMD_MAX; i++) {
		if (smtp_span_eq_cstr_nocase(verb, commands[i].name)) {
			cmd = (enum command)i;
			break;
		}
	}
	if (cmd == CMD_MAX) {
		s->where = "UNKNOWN";
		if (forbidden_command(verb)) {
			reply_lit(s, "221 2.7.0 Error: I can break rules, too. Goodbye.");
			smtp_session_engine_close(s, SMTP_ERR_UNKNOWN_COMMAND, 221);
			return;
		}
		if (s->access_denied) {
			refuse_denied(s);
			return;
		}
		/* Postfix checks no pipelining for a verb it does not know */
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "500 5.5.2 Error: command not recognized");
		return;
	}

	/* The client restrictions refused this client (smtpd_delay_reject = no): as Postfix's
	 * smtpd_proto(), every command but QUIT is answered this way and counts as an error,
	 * XCLIENT too (the identity it would set is never looked at), before any pipelining
	 * check. */
	if (s->access_denied && cmd != CMD_QUIT) {
		refuse_denied(s);
		return;
	}

	/* Where TLS is required, only a few commands come before it (Postfix's
	 * smtpd_proto(): 530 and an error, before the pipelining check). */
	if (s->tls_required && !s->tls_active && !(commands[cmd].flags & CMD_PRE_TLS)) {
		s->where = commands[cmd].name;
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}

	/* RFC 2920 3.1: without PIPELINING every command waits for its reply, and EHLO,
	 * DATA, VRFY, NOOP, QUIT... always end a group. Checked before the command runs,
	 * as Postfix does. BDAT is checked after its chunk. */
	if (cmd != CMD_BDAT && more_after &&
	    ((commands[cmd].flags & CMD_LAST) || !smtp_session_pipelining_negotiated(s))) {
		if (c->forbid_unauth_pipelining) {
			smtp_session_sync_error(s);
			return;
		}
		/* Postfix 3.7 smtpd_proto(): noted for reject_unauth_pipelining */
		s->ill_pipelining = true;
	}
	s->where = commands[cmd].name;

	switch (cmd) {
	case CMD_HELO:
	case CMD_EHLO:
		cmd_helo(s, args, cmd == CMD_EHLO);
		break;
	case CMD_MAIL:
		cmd_mail(s, args);
		break;
	case CMD_RCPT:
		cmd_rcpt(s, args);
		break;
	case CMD_DATA:
		cmd_data(s, args);
		break;
	case CMD_BDAT:
		cmd_bdat(s, args);
		break;
	case CMD_RSET:
		if (args.len) {
			refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: RSET");
			break;
		}
		smtp_session_abort_message(s);
		smtp_session_txn_reset(s);
		smtp_session_push_simple(s, SMTP_EV_RSET);
		reply_lit(s, "250 2.0.0 Ok");
		break;
	case CMD_NOOP:
		/* RFC 5321 4.1.1.9: a parameter is ignored */
		reply_lit(s, "250 2.0.0 Ok");
		break;
	case CMD_QUIT:
		reply_lit(s, "221 2.0.0 Bye");
		smtp_session_evq_withdraw_unanswerable(s);
		smtp_session_abort_message(s);
		smtp_session_push_simple(s, SMTP_EV_QUIT);
		smtp_session_enter_state(s, ST_CLOSED);
		break;
	case CMD_VRFY:
		cmd_vrfy(s, args);
		break;
	case CMD_HELP:
		cmd_help(s);
		break;
	case CMD_STARTTLS:
		cmd_starttls(s, args);
		break;
	case CMD_ETRN:
		/* not offered in this version (Postfix: fast flush not configured) */
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "502 5.5.1 Error: command not implemented");
		break;
	case CMD_AUTH:
		/* Postfix's smtpd_sasl_auth_cmd_wrapper(): the rate first, then the rest */
		if (!rate_refused(s, SMTP_RATE_AUTH))
			smtp_session_cmd_auth(s, args);
		break;
	case CMD_XCLIENT:
		smtp_session_cmd_xclient(s, args);
		break;
	case CMD_XFORWARD:
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "550 5.7.0 Error: insufficient authorization");
		break;
	case CMD_MAX:
		break;
	}
	/* Counted after the command, as Postfix does. A HELO/EHLO that went to the
	 * transport is counted with its verdict: its event must stay first in the queue
	 * (it points into this call's input). */
	if ((commands[cmd].flags & CMD_JUNK) && s->state != ST_CLOSED &&
	    !(s->evq_len && smtp_session_evq_tail(s)->type == SMTP_EV_HELO))
		smtp_session_count_junk(s);
}

/* Read one command line from buf[*pos..len), or keep what there is of it. */
void smtp_session_command_input(struct smtp_session *s, const char *buf, size_t len,
				size_t *pos)
{
	const size_t limit = s->cfg->line_length_limit;
	const char *p = buf + *pos;
	size_t avail = len - *pos;
	const char *lf = memchr(p, '\n', avail);

	if (s->line_skip) {
		if (!lf) {
			*pos = len;
			return;
		}
		*pos += (size_t)(lf - p) + 1;
		s->line_skip = false;
		goto too_long;
	}
	if (!lf) {
		/* a partial line: keep it, never more than line_length_limit */
		if (s->line_len + avail >= limit) {
			s->line_len = 0;
			s->line_skip = true;
			*pos = len;
			return;
		}
		if (!s->line && !(s->line = malloc(limit))) {
			char host[HOST_MAX + 1];
			smtp_session_replyf(s, "421 4.3.0 %s Server local error",
					    smtp_session_myhostname(s, host, sizeof(host)));
			smtp_session_engine_close(s, SMTP_ERR_LINE_TOO_LONG, 421);
			*pos = len;
			return;
		}
		memcpy(s->line + s->line_len, p, avail);
		s->line_len += avail;
		*pos = len;
		return;
	}

	size_t seg = (size_t)(lf - p) + 1;
	*pos += seg;
	if (s->line_len + seg > limit) {
		s->line_len = 0;
		goto too_long;
	}
	const char *text = p;
	size_t n = seg;
	if (s->line_len) {
		memcpy(s->line + s->line_len, p, seg);
		text = s->line;
		n = s->line_len + seg;
		s->line_len = 0;
	}
	/* RFC 5321 2.3.8: lines end in CRLF. A bare LF ends a line only in normalize mode. */
	if (n >= 2 && text[n - 2] == '\r') {
		n -= 2;
	} else {
		if (!s->normalize_bare_lf) {
			smtp_session_bare_lf_reject(s);
			return;
		}
		n -= 1;
	}
	process_command(s, text, n, *pos < len);
	if (s->discard_input) {
		/* STARTTLS: nothing after it in this input is read as plaintext */
		s->discard_input = false;
		*pos = len;
	}
	return;

too_long:
	/* RFC 5321 4.5.3.1.4 "500 Line too long"; the rest of the line was skipped */
	s->requests++;
	refuse_lit(s, SMTP_ERR_LINE_TOO_LONG, "500 5.5.2 Error: line too long");
}
