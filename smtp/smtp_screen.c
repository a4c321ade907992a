/* The screen (smtp_screen.h): the object, the permanent and temporary allowlists, the
 * tests before the greeting and the conclusion, as postscreen(8) of Postfix 3.7 does them
 * (postscreen.c psc_endpt_lookup_done(), postscreen_early.c, postscreen_misc.c
 * psc_conclude(), postscreen_tests.c for the cache record). */
#include "smtp/smtp_screen_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"

/* postscreen's INT_MAX "no DNSBL score yet" is score_final = false here. */

const char *smtp_screen_action_name(enum smtp_screen_action a)
{
	static const char *const names[SMTP_SCREEN_ACTION_MAX] = { "ignore", "enforce", "drop" };
	return (unsigned)a < SMTP_SCREEN_ACTION_MAX ? names[a] : "?";
}

int smtp_screen_action_parse(const char *s, enum smtp_screen_action *out)
{
	for (int a = 0; a < SMTP_SCREEN_ACTION_MAX; a++)
		if (strcasecmp(s, smtp_screen_action_name((enum smtp_screen_action)a)) == 0) {
			*out = (enum smtp_screen_action)a;
			return 0;
		}
	return -EINVAL;
}

const char *smtp_screen_state_name(enum smtp_screen_state st)
{
	static const char *const names[SMTP_SCREEN_ST_MAX] = {
		"new", "early", "smtpd", "pass", "close",
	};
	return (unsigned)st < SMTP_SCREEN_ST_MAX ? names[st] : "?";
}

/* ---- configuration ---- */

static int scr_copy(char *dst, size_t cap, const char *src, const char *what, char *err,
		    size_t errlen)
{
	size_t n = strlen(src ? src : "");
	if (n >= cap) {
		snprintf(err, errlen, "%s: longer than %zu bytes", what, cap - 1);
		return -EINVAL;
	}
	memcpy(dst, src ? src : "", n + 1);
	return 0;
}

static int scr_action(const char *text, enum smtp_screen_action *out, const char *name,
		      char *err, size_t errlen)
{
	if (smtp_screen_action_parse(text ? text : "", out) == 0)
		return 0;
	snprintf(err, errlen, "%s: unknown action \"%s\" (ignore, enforce or drop)", name,
		 text ? text : "");
	return -EINVAL;
}

/* One inline rule "/re/flags result" of a regexp: or pcre: table (Postfix's
 * regexp_table(5): the first character delimits the pattern; flag i toggles the default
 * case-insensitive match). */
static int scr_forbidden_rule(struct smtp_screen_config *c, const char *r, size_t n,
			      char *err, size_t errlen)
{
	char pat[256];
	if (n < 2 || r[0] != '/') {
		snprintf(err, errlen, "postscreen_forbidden_commands: bad rule \"%.*s\" "
			 "(want /pattern/ result)", (int)(n > 60 ? 60 : n), r);
		return -EINVAL;
	}
	size_t i = 1, o = 0;
	for (; i < n && r[i] != '/'; i++) {
		if (r[i] == '\\' && i + 1 < n && r[i + 1] == '/')
			i++;
		if (o + 1 >= sizeof(pat))
			break;
		pat[o++] = r[i];
	}
	pat[o] = '\0';
	if (i >= n || o + 1 >= sizeof(pat)) {
		snprintf(err, errlen, "postscreen_forbidden_commands: bad rule \"%.*s\" "
			 "(no closing / or too long)", (int)(n > 60 ? 60 : n), r);
		return -EINVAL;
	}
	int flags = REG_EXTENDED | REG_NOSUB | REG_ICASE;
	for (i++; i < n && !mx_list_is_separator(r[i]); i++) {
		if (r[i] == 'i') {
			flags ^= REG_ICASE;
		} else if (r[i] != 'x' && r[i] != 'm') {
			snprintf(err, errlen, "postscreen_forbidden_commands: unknown flag '%c' in "
				 "\"%.*s\"", r[i], (int)(n > 60 ? 60 : n), r);
			return -EINVAL;
		}
	}
	if (c->nforbidden_re == SMTP_SCREEN_FORBID_MAX) {
		snprintf(err, errlen, "postscreen_forbidden_commands: more than %d rules",
			 SMTP_SCREEN_FORBID_MAX);
		return -EINVAL;
	}
	if (regcomp(&c->forbidden_re[c->nforbidden_re], pat, flags) != 0) {
		snprintf(err, errlen, "postscreen_forbidden_commands: bad pattern \"%s\"", pat);
		return -EINVAL;
	}
	c->nforbidden_re++;
	return 0;
}

/* postscreen_discard_ehlo_keywords as Postfix's ehlo_mask() reads it: words separated by
 * commas or white space, in any case; words the screen never offers, silent-discard
 * (the screen logs no discards) and unknown words are ignored. */
static uint32_t scr_ehlo_mask(const char *list)
{
	static const struct {
		const char *word;
		uint32_t bit;
	} words[] = {
		{ "size", SMTP_SCREEN_EHLO_SIZE },
		{ "vrfy", SMTP_SCREEN_EHLO_VRFY },
		{ "etrn", SMTP_SCREEN_EHLO_ETRN },
		{ "enhancedstatuscodes", SMTP_SCREEN_EHLO_ENHANCEDSTATUSCODES },
		{ "8bitmime", SMTP_SCREEN_EHLO_8BITMIME },
		{ "dsn", SMTP_SCREEN_EHLO_DSN },
		{ "smtputf8", SMTP_SCREEN_EHLO_SMTPUTF8 },
		{ "chunking", SMTP_SCREEN_EHLO_CHUNKING },
	};
	uint32_t mask = 0;
	const char *word;
	size_t len;
	while ((len = mx_list_next(&list, &word)) > 0)
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strlen(words[i].word) == len && strncasecmp(words[i].word, word, len) == 0)
				mask |= words[i].bit;
	return mask;
}

/* postscreen_forbidden_commands: command names, and inline regexp:/pcre: tables (their
 * default, Postfix's smtpd_forbidden_commands, is "CONNECT GET POST
 * regexp:{{/^[^A-Z]/ Bogus}}"). Other tables are refused. */
static int scr_forbidden_parse(struct smtp_screen_config *c, const char *list, char *err,
			       size_t errlen)
{
	const char *cur = list, *word;
	long n;
	while ((n = mx_list_next_braced(&cur, &word)) > 0) {
		const char *colon = memchr(word, ':', (size_t)n);
		if (colon) {
			size_t tl = (size_t)(colon - word);
			bool inline_re = (tl == 6 && !memcmp(word, "regexp", 6)) ||
					 (tl == 4 && !memcmp(word, "pcre", 4));
			if (!inline_re || colon[1] != '{' || word[n - 1] != '}') {
				snprintf(err, errlen, "postscreen_forbidden_commands: %.*s: only "
					 "command names and inline regexp:{...} or pcre:{...} tables "
					 "are supported", (int)(n > 60 ? 60 : n), word);
				return -EINVAL;
			}
			/* the body: {rule}, {rule}, ... */
			char body[1024];
			size_t bl = (size_t)(word + n - 1 - (colon + 2));
			if (bl >= sizeof(body)) {
				snprintf(err, errlen, "postscreen_forbidden_commands: table too long");
				return -EINVAL;
			}
			memcpy(body, colon + 2, bl);
			body[bl] = '\0';
			const char *bc = body, *rule;
			long rn;
			while ((rn = mx_list_next_braced(&bc, &rule)) > 0) {
				if (rn < 2 || rule[0] != '{' || rule[rn - 1] != '}') {
					snprintf(err, errlen, "postscreen_forbidden_commands: rule "
						 "\"%.*s\" not in {}", (int)(rn > 60 ? 60 : rn),
						 rule);
					return -EINVAL;
				}
				const char *r = rule + 1;
				size_t rl = (size_t)rn - 2;
				while (rl && mx_list_is_separator(*r))
					r++, rl--;
				int rc = scr_forbidden_rule(c, r, rl, err, errlen);
				if (rc < 0)
					return rc;
			}
			if (rn < 0) {
				snprintf(err, errlen, "postscreen_forbidden_commands: unbalanced {}");
				return -EINVAL;
			}
			continue;
		}
		if (c->nforbidden == SMTP_SCREEN_FORBID_MAX || (size_t)n >= sizeof(c->forbidden[0])) {
			snprintf(err, errlen, "postscreen_forbidden_commands: more than %d "
				 "commands or one longer than %zu bytes", SMTP_SCREEN_FORBID_MAX,
				 sizeof(c->forbidden[0]) - 1);
			return -EINVAL;
		}
		memcpy(c->forbidden[c->nforbidden], word, (size_t)n);
		c->forbidden[c->nforbidden++][n] = '\0';
	}
	if (n < 0) {
		snprintf(err, errlen, "postscreen_forbidden_commands: unbalanced {}");
		return -EINVAL;
	}
	return 0;
}

int smtp_screen_config_new(const struct smtp_screen_params *p, struct smtp_screen_config **out,
			   char *err, size_t errlen)
{
	*out = NULL;
	struct smtp_screen_config *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	if ((rc = scr_copy(c->greet_banner, sizeof(c->greet_banner), p->greet_banner,
			   "postscreen_greet_banner", err, errlen)) < 0 ||
	    (rc = scr_copy(c->smtpd_banner, sizeof(c->smtpd_banner), p->smtpd_banner,
			   "smtpd_banner", err, errlen)) < 0 ||
	    (rc = scr_copy(c->myhostname, sizeof(c->myhostname), p->myhostname, "myhostname",
			   err, errlen)) < 0 ||
	    (rc = scr_action(p->greet_action, &c->greet_action, "postscreen_greet_action", err,
			     errlen)) < 0 ||
	    (rc = scr_action(p->dnsbl_action, &c->dnsbl_action, "postscreen_dnsbl_action", err,
			     errlen)) < 0 ||
	    (rc = scr_action(p->denylist_action, &c->denylist_action,
			     "postscreen_denylist_action", err, errlen)) < 0 ||
	    (rc = scr_action(p->pipelining_action, &c->pipelining_action,
			     "postscreen_pipelining_action", err, errlen)) < 0 ||
	    (rc = scr_action(p->non_smtp_action, &c->non_smtp_action,
			     "postscreen_non_smtp_command_action", err, errlen)) < 0 ||
	    (rc = scr_action(p->bare_newline_action, &c->bare_newline_action,
			     "postscreen_bare_newline_action", err, errlen)) < 0)
		goto fail;
	c->greet_wait_ms = p->greet_wait_s * 1000u;
	c->greet_ttl_s = p->greet_ttl_s;
	c->dnsbl_min_ttl_s = p->dnsbl_min_ttl_s;
	c->dnsbl_max_ttl_s = p->dnsbl_max_ttl_s;
	c->dnsbl_timeout_ms = p->dnsbl_timeout_s * 1000u;
	c->dnsbl_threshold = p->dnsbl_threshold;
	c->dnsbl_allowlist_threshold = p->dnsbl_allowlist_threshold;
	c->pipelining_enable = p->pipelining_enable;
	c->non_smtp_enable = p->non_smtp_enable;
	c->bare_newline_enable = p->bare_newline_enable;
	c->pipelining_ttl_s = p->pipelining_ttl_s;
	c->non_smtp_ttl_s = p->non_smtp_ttl_s;
	c->bare_newline_ttl_s = p->bare_newline_ttl_s;
	c->command_count_limit = p->command_count_limit;
	c->client_connection_count_limit = p->client_connection_count_limit;
	c->command_time_limit_ms = p->command_time_limit_s * 1000u;
	c->cache_retention_s = p->cache_retention_s;
	c->helo_required = p->helo_required;
	c->disable_vrfy = p->disable_vrfy;
	c->smtputf8 = p->smtputf8;
	c->message_size_limit = p->message_size_limit;
	c->line_limit = p->line_limit < 512 ? 512 : p->line_limit > 65536 ? 65536 : p->line_limit;
	if ((rc = smtp_screen_sites_parse(c, p->dnsbl_sites ? p->dnsbl_sites : "", err,
					  errlen)) < 0)
		goto fail;
	if ((rc = scr_forbidden_parse(c, p->forbidden_commands ? p->forbidden_commands : "",
				      err, errlen)) < 0)
		goto fail;
	c->ehlo_discard = scr_ehlo_mask(p->discard_ehlo_keywords ? p->discard_ehlo_keywords : "");
	*out = c;
	return 0;
fail:
	smtp_screen_config_free(c);
	return rc;
}

void smtp_screen_config_free(struct smtp_screen_config *cfg)
{
	if (!cfg)
		return;
	for (unsigned i = 0; i < cfg->nforbidden_re; i++)
		regfree(&cfg->forbidden_re[i]);
	free(cfg->zones);
	free(cfg);
}

int smtp_screen_config_set_shown(struct smtp_screen_config *cfg, const char *domain,
				 const char *shown)
{
	for (unsigned i = 0; i < cfg->nzones; i++)
		if (strcasecmp(cfg->zones[i].domain, domain) == 0) {
			snprintf(cfg->zones[i].shown, sizeof(cfg->zones[i].shown), "%s", shown);
			return 0;
		}
	return -ENOENT;
}

/* ---- small helpers ---- */

const char *smtp_screen_escape(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	assert(cap > 0);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		char tmp[5];
		const char *e = tmp;
		if (ch >= 0x20 && ch < 0x7f) {
			tmp[0] = (char)ch;
			tmp[1] = ch == '\\' ? '\\' : '\0';
			tmp[2] = '\0';
		} else {
			static const char codes[] = "\aa\bb\ff\nn\rr\tt\vv";
			const char *k = ch ? memchr(codes, ch, sizeof(codes) - 1) : NULL;
			/* only at even positions: the escaped byte, not its letter */
			if (k && (k - codes) % 2 == 0)
				snprintf(tmp, sizeof(tmp), "\\%c", k[1]);
			else
				snprintf(tmp, sizeof(tmp), "\\%03o", ch);
		}
		size_t n = strlen(e);
		if (o + n >= cap)
			break;
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

const char *smtp_screen_format_delay(uint64_t ms, char *out, size_t cap)
{
	/* format_tv(sec, usec, 2 significant digits, 2 decimals at most) */
	long sec = (long)(ms / 1000), usec = (long)(ms % 1000) * 1000;
	long ures = 1000000 / 100, wid = 100;
	if (sec > 0) {
		long n;
		for (n = 1; sec >= n && n <= wid / 10; n *= 10)
			;
		ures = (1000000 / wid) * n;
	} else {
		while (usec >= wid * ures)
			ures *= 10;
	}
	if (ures > 1) {
		usec += ures / 2;
		if (usec >= 1000000) {
			sec += 1;
			usec -= 1000000;
		}
	}
	size_t o = (size_t)snprintf(out, cap, "%ld", sec);
	if (usec >= ures && o + 1 < cap) {
		out[o++] = '.';
		for (long rem = usec, n = 100000; rem >= ures && n > 0 && o + 1 < cap; n /= 10) {
			out[o++] = (char)('0' + rem / n);
			rem %= n;
		}
		out[o] = '\0';
	}
	return out;
}

void scr_log(struct smtp_screen *s, const char *fmt, ...)
{
	if (!s->log)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->log(s->log_arg, line);
}

/* Queue reply text. false when it does not fit (the output is bounded: a client that
 * does not read loses what does not fit, as postscreen's non-blocking write would). */
bool scr_send(struct smtp_screen *s, const char *text)
{
	size_t n = strlen(text);
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	if (s->out_len + n > SCR_OUT_MAX)
		return false;
	if (s->out_len + n > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 256;
		while (cap < s->out_len + n)
			cap *= 2;
		if (cap > SCR_OUT_MAX)
			cap = SCR_OUT_MAX;
		char *p = realloc(s->out, cap);
		if (!p)
			return false;
		s->out = p;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, text, n);
	s->out_len += n;
	return true;
}

int64_t scr_now_s(const struct smtp_screen *s, uint64_t now_ms)
{
	/* the wall clock moved as the monotonic one did since start */
	return s->wall0_s + (int64_t)((now_ms - s->start_ms) / 1000);
}

/* ---- the object ---- */

struct smtp_screen *smtp_screen_new(const struct smtp_screen_config *cfg,
				    const struct smtp_screen_client *client,
				    smtp_screen_log_fn *log, void *log_arg)
{
	struct smtp_screen *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = cfg;
	s->log = log;
	s->log_arg = log_arg;
	smtp_screen_set_client(s, client);
	s->final_reply = "421 4.3.2 Service currently unavailable\r\n";
	s->rcpt_reply = "450 4.3.2 Service currently unavailable\r\n";
	s->dnsbl_name = -1;
	s->pass_ttl = s->fail_ttl = -1;
	s->deadline_ms = UINT64_MAX;
	return s;
}

void smtp_screen_set_client(struct smtp_screen *s, const struct smtp_screen_client *client)
{
	assert(s->state == SMTP_SCREEN_ST_NEW);
	s->client = *client;
	s->client.addr = mx_inet_unmap(&client->addr);
	s->client.server = mx_inet_unmap(&client->server);
	mx_inet_format(&s->client.addr, s->addr_str, sizeof(s->addr_str));
	snprintf(s->addr_port, sizeof(s->addr_port), "[%s]:%u", s->addr_str, client->port);
}

void smtp_screen_refuse(struct smtp_screen *s, const char *reply)
{
	assert(s->state == SMTP_SCREEN_ST_NEW);
	s->flags |= SCR_F_NOFORWARD;
	scr_send(s, reply);
	scr_enter_state(s, SMTP_SCREEN_ST_CLOSE);
}

void smtp_screen_free(struct smtp_screen *s)
{
	if (!s)
		return;
	free(s->dnsbl_reply);
	free(s->out);
	free(s->d);
	free(s);
}

size_t smtp_screen_memory(const struct smtp_screen *s)
{
	return sizeof(*s) + s->out_cap + (s->d ? sizeof(*s->d) + s->cfg->line_limit + 2 : 0);
}

enum smtp_screen_state smtp_screen_state(const struct smtp_screen *s)
{
	return s->state;
}

struct smtp_screen_outcome smtp_screen_outcome(const struct smtp_screen *s)
{
	return s->outcome;
}

struct mx_span smtp_screen_output(const struct smtp_screen *s)
{
	return mx_span_make(s->out ? s->out + s->out_off : "", s->out_len - s->out_off);
}

void smtp_screen_output_done(struct smtp_screen *s, size_t n)
{
	assert(n <= s->out_len - s->out_off);
	s->out_off += n;
	if (s->out_off == s->out_len) {
		/* a screened connection mostly waits with nothing to send: it holds no
		 * buffer then */
		s->out_off = s->out_len = 0;
		free(s->out);
		s->out = NULL;
		s->out_cap = 0;
	}
}

/* ---- tests to do (postscreen_tests.c) ---- */

static bool scr_enabled(const struct smtp_screen_config *c, int t)
{
	switch (t) {
	case SMTP_SCREEN_PREGREET: return c->greet_banner[0] != '\0';
	case SMTP_SCREEN_DNSBL: return c->nsites > 0;
	case SMTP_SCREEN_PIPELINING: return c->pipelining_enable;
	case SMTP_SCREEN_NON_SMTP: return c->non_smtp_enable;
	case SMTP_SCREEN_BARE_NEWLINE: return c->bare_newline_enable;
	default: return false;
	}
}

/* psc_todo_tests(): flags from the expiry times at time_value (flags are reset). */
static void scr_todo_tests(struct smtp_screen *s, int64_t time_value)
{
	s->flags = 0;
	for (int t = 0; t < SMTP_SCREEN_TEST_MAX; t++) {
		if (s->expire[t] == SCR_STAMP_NEW)
			s->flags |= SCR_F_NEW;
		if (scr_enabled(s->cfg, t) && time_value > s->expire[t])
			s->flags |= SCR_TODO(t);
	}
}

/* psc_parse_tests(): a cache record, read as leniently as postscreen does (an older record
 * with fewer fields, or a malformed field: that test counts as disabled). */
static void scr_parse_tests(struct smtp_screen *s, const char *rec, int64_t time_value)
{
	const char *start = rec;
	for (int t = 0; t < SMTP_SCREEN_TEST_MAX; t++) {
		const char *cp = start;
		while (*cp == ' ' || *cp == '\t')
			cp++;
		if (*cp == '+')
			cp++;
		uint64_t v = 0;
		bool digits = false, range = false;
		while (mx_ctype_is_digit(*cp)) {
			if (v > ((uint64_t)INT64_MAX - 9) / 10)
				range = true;
			else
				v = v * 10 + (uint64_t)(*cp - '0');
			digits = true;
			cp++;
		}
		if (!digits)
			cp = start, v = 0; /* strtoul(): nothing converted */
		if (*start == '\0' || (*cp != '\0' && *cp != ';') || range)
			s->expire[t] = SCR_STAMP_DISABLED;
		else
			s->expire[t] = (int64_t)v;
		start = *cp == ';' ? cp + 1 : cp;
	}
	scr_todo_tests(s, time_value);
}

bool smtp_screen_cache_record(const struct smtp_screen *s, int64_t wall_s, char *out,
			      size_t cap, uint32_t *keep_s)
{
	if (s->state != SMTP_SCREEN_ST_PASS && s->state != SMTP_SCREEN_ST_CLOSE)
		return false;
	if ((s->flags & SCR_ANY_PASS) == 0)
		return false;
	int64_t e[SMTP_SCREEN_TEST_MAX], latest = 0;
	for (int t = 0; t < SMTP_SCREEN_TEST_MAX; t++) {
		e[t] = s->expire[t];
		/* psc_print_tests(): a new test that is disabled is stored as disabled, so
		 * the client is not "PASS NEW" again when it is turned on */
		if (!scr_enabled(s->cfg, t) && e[t] == SCR_STAMP_NEW)
			e[t] = SCR_STAMP_DISABLED;
		if (e[t] > latest)
			latest = e[t];
	}
	int n = snprintf(out, cap, "%" PRId64 ";%" PRId64 ";%" PRId64 ";%" PRId64 ";%" PRId64,
			 e[0], e[1], e[2], e[3], e[4]);
	if (n < 0 || (size_t)n >= cap)
		return false;
	/* postscreen's cache cleanup deletes a record once every test expired longer than
	 * postscreen_cache_retention_time ago */
	int64_t keep = latest - wall_s + (int64_t)s->cfg->cache_retention_s;
	*keep_s = keep <= 0 ? 0 : keep > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)keep;
	return true;
}

/* ---- the conclusion (postscreen_misc.c) ---- */

void scr_conclude(struct smtp_screen *s, int64_t now_s)
{
	(void)now_s;
	if (s->flags & SCR_ANY_FAIL)
		s->flags &= ~SCR_ANY_PASS;
	uint32_t pass = s->flags & SCR_ANY_PASS;
	if (pass && pass == SCR_TODO_TO_PASS(s->flags & SCR_ANY_TODO)) {
		bool is_new = (s->flags & SCR_F_NEW) != 0;
		scr_log(s, "PASS %s %s", is_new ? "NEW" : "OLD", s->addr_port);
		if (is_new)
			s->outcome.pass_new = true;
		else
			s->outcome.pass_old = true;
	}
	if ((s->flags & SCR_F_NOFORWARD) == 0) {
		scr_enter_state(s, SMTP_SCREEN_ST_PASS);
	} else {
		if ((s->flags & SCR_F_HANGUP) == 0)
			scr_send(s, s->final_reply);
		scr_log(s, "DISCONNECT %s", s->addr_port);
		scr_enter_state(s, SMTP_SCREEN_ST_CLOSE);
	}
}

void scr_enter_state(struct smtp_screen *s, enum smtp_screen_state st)
{
	assert(s->state != SMTP_SCREEN_ST_PASS && s->state != SMTP_SCREEN_ST_CLOSE);
	assert(st > s->state || (st == SMTP_SCREEN_ST_EARLY && s->state == st));
	s->state = st;
	if (st == SMTP_SCREEN_ST_PASS || st == SMTP_SCREEN_ST_CLOSE) {
		s->deadline_ms = UINT64_MAX;
		free(s->d);
		s->d = NULL;
	}
}

void scr_drop(struct smtp_screen *s, const char *reply, int64_t now_s)
{
	s->flags |= SCR_F_NOFORWARD;
	s->final_reply = reply;
	scr_conclude(s, now_s);
}

void scr_enforce(struct smtp_screen *s, const char *reply)
{
	s->rcpt_reply = reply;
	s->flags |= SCR_F_NOFORWARD;
}

void scr_hangup(struct smtp_screen *s, uint64_t now_ms)
{
	char d[32];
	s->flags |= SCR_F_HANGUP;
	scr_log(s, "HANGUP after %s from %s in %s",
		smtp_screen_format_delay(now_ms - s->start_ms, d, sizeof(d)), s->addr_port,
		s->test_name ? s->test_name : "tests before SMTP handshake");
	s->flags |= SCR_F_NOFORWARD;
	scr_conclude(s, scr_now_s(s, now_ms));
}

/* ---- the tests before the greeting (postscreen_early.c) ---- */

/* psc_allowlist_non_dnsbl(): a score at or below postscreen_dnsbl_allowlist_threshold
 * (when negative) passes the other tests for as long as the DNSBL answer lives. */
static void scr_allowlist_non_dnsbl(struct smtp_screen *s, int64_t now_s)
{
	const struct smtp_screen_config *c = s->cfg;
	if ((s->flags & SCR_ANY_FAIL) || s->score >= c->dnsbl_threshold ||
	    c->dnsbl_allowlist_threshold >= 0 || s->score > c->dnsbl_allowlist_threshold)
		return;
	for (int t = 0; t < SMTP_SCREEN_TEST_MAX; t++) {
		if (t == SMTP_SCREEN_DNSBL)
			continue;
		if ((s->flags & SCR_TODO(t)) && !(s->flags & SCR_PASS(t)))
			s->flags |= SCR_DONE(t) | SCR_PASS(t);
		if (s->expire[t] < now_s + s->dnsbl_ttl)
			s->expire[t] = now_s + s->dnsbl_ttl;
	}
}

static void scr_score(struct smtp_screen *s, int64_t now_s)
{
	if (s->score_final)
		return;
	scr_dnsbl_retrieve(s);
	if (s->cfg->dnsbl_allowlist_threshold < 0)
		scr_allowlist_non_dnsbl(s, now_s);
}

/* psc_early_event(EVENT_TIME): the greet wait is over, or every early test is done. */
static void scr_early_done(struct smtp_screen *s, uint64_t now_ms)
{
	const struct smtp_screen_config *c = s->cfg;
	int64_t now_s = scr_now_s(s, now_ms);
	const int P = SMTP_SCREEN_PREGREET, D = SMTP_SCREEN_DNSBL;
	if ((s->flags & SCR_TODO(P)) && !(s->flags & (SCR_FAIL(P) | SCR_DONE(P)))) {
		s->expire[P] = now_s + c->greet_ttl_s;
		s->flags |= SCR_PASS(P);
	}
	if ((s->flags & SCR_FAIL(P)) && c->greet_action == SMTP_SCREEN_IGNORE)
		s->flags &= ~SCR_FAIL(P); /* not a pass: the test is repeated next time */
	if (s->flags & SCR_TODO(D)) {
		scr_score(s, now_s);
		if (s->score < c->dnsbl_threshold) {
			s->expire[D] = now_s + s->dnsbl_ttl;
			s->flags |= SCR_PASS(D);
		} else {
			scr_log(s, "DNSBL rank %d for %s", s->score, s->addr_port);
			s->flags |= SCR_FAIL(D);
			s->outcome.dnsbl_fail = true;
			const char *name = s->dnsbl_name >= 0 ? c->zones[s->dnsbl_name].shown : "";
			char reply[SMTP_SCREEN_TEXT_MAX + 128];
			switch (c->dnsbl_action) {
			case SMTP_SCREEN_DROP:
			case SMTP_SCREEN_ENFORCE:
				snprintf(reply, sizeof(reply),
					 "%s 5.7.1 Service unavailable; client [%s] blocked using "
					 "%s\r\n", c->dnsbl_action == SMTP_SCREEN_DROP ? "521" : "550",
					 s->addr_str, name);
				free(s->dnsbl_reply);
				s->dnsbl_reply = strdup(reply);
				if (c->dnsbl_action == SMTP_SCREEN_DROP) {
					scr_drop(s, s->dnsbl_reply ? s->dnsbl_reply
						 : "521 5.7.1 Service unavailable\r\n", now_s);
					return;
				}
				scr_enforce(s, s->dnsbl_reply ? s->dnsbl_reply
					    : "550 5.7.1 Service unavailable\r\n");
				break;
			case SMTP_SCREEN_IGNORE:
			case SMTP_SCREEN_ACTION_MAX:
				s->flags &= ~SCR_FAIL(D);
				break;
			}
		}
	}
	if ((s->flags & SCR_F_NOFORWARD) ||
	    (s->flags & SCR_SMTPD(1)) != SCR_TODO_TO_PASS(s->flags & SCR_SMTPD(2))) {
		if (scr_smtpd_start(s, now_ms) < 0)
			scr_drop(s, "421 4.3.2 No system resources\r\n", now_s);
	} else {
		scr_conclude(s, now_s);
	}
}

static bool scr_early_all_done(const struct smtp_screen *s)
{
	return (s->flags & SCR_EARLY(3)) == SCR_TODO_TO_DONE(s->flags & SCR_EARLY(2));
}

static void scr_early_tests(struct smtp_screen *s, uint64_t now_ms)
{
	scr_enter_state(s, SMTP_SCREEN_ST_EARLY);
	s->test_name = "tests before SMTP handshake";
	s->start_ms = now_ms;
	if ((s->flags & SCR_TODO(SMTP_SCREEN_PREGREET)) && s->cfg->greet_banner[0]) {
		char teaser[SMTP_SCREEN_TEXT_MAX + 8];
		snprintf(teaser, sizeof(teaser), "220-%s\r\n", s->cfg->greet_banner);
		scr_send(s, teaser);
	}
	s->score_final = false;
	s->score = 0;
	s->deadline_ms = now_ms + s->cfg->greet_wait_ms;
}

void smtp_screen_start(struct smtp_screen *s, enum smtp_screen_acl acl, const char *cache,
		       uint64_t now_ms, int64_t wall_s)
{
	assert(s->state == SMTP_SCREEN_ST_NEW);
	const struct smtp_screen_config *c = s->cfg;
	char server[INET6_ADDRSTRLEN];
	mx_inet_format(&s->client.server, server, sizeof(server));
	s->start_ms = now_ms;
	s->wall0_s = wall_s;
	scr_enter_state(s, SMTP_SCREEN_ST_EARLY);
	scr_log(s, "CONNECT from %s to [%s]:%u", s->addr_port, server, s->client.server_port);
	/* postscreen_client_connection_count_limit, before anything else is looked at
	 * (psc_endpt_lookup_done(): every client, allowlisted ones too) */
	if (c->client_connection_count_limit &&
	    s->client.concurrency > c->client_connection_count_limit) {
		scr_log(s, "NOQUEUE: reject: CONNECT from %s: too many connections", s->addr_port);
		s->outcome.too_many = true;
		scr_drop(s, "421 4.7.0 Error: too many connections\r\n", wall_s);
		return;
	}
	/* the permanent allow/denylist first (postscreen_access_list) */
	if (acl == SMTP_SCREEN_ACL_REJECT) {
		scr_log(s, "DENYLISTED %s", s->addr_port);
		s->outcome.denylisted = true;
		s->flags |= SCR_F_DNLIST_FAIL;
		switch (c->denylist_action) {
		case SMTP_SCREEN_DROP:
			scr_drop(s, "521 5.3.2 Service currently unavailable\r\n", wall_s);
			return;
		case SMTP_SCREEN_ENFORCE:
			scr_enforce(s, "550 5.3.2 Service currently unavailable\r\n");
			break;
		case SMTP_SCREEN_IGNORE:
		case SMTP_SCREEN_ACTION_MAX:
			s->flags &= ~SCR_F_DNLIST_FAIL; /* and the test is repeated next time */
			break;
		}
	} else if (acl == SMTP_SCREEN_ACL_PERMIT) {
		scr_log(s, "ALLOWLISTED %s", s->addr_port);
		s->outcome.allowlisted = true;
		scr_conclude(s, wall_s);
		return;
	}
	/* then the temporary allowlist: every enabled test still valid is PASS OLD */
	uint32_t saved = s->flags;
	if ((s->flags & SCR_ANY_FAIL) == 0 && cache) {
		scr_parse_tests(s, cache, wall_s);
		s->flags |= saved;
		if ((s->flags & (SCR_ANY_TODO | SCR_ANY_FAIL)) == 0) {
			scr_log(s, "PASS OLD %s", s->addr_port);
			s->outcome.pass_old = true;
			scr_conclude(s, wall_s);
			return;
		}
	} else {
		for (int t = 0; t < SMTP_SCREEN_TEST_MAX; t++)
			s->expire[t] = SCR_STAMP_NEW;
		scr_todo_tests(s, SCR_STAMP_NEW + 1);
		s->flags |= saved;
	}
	if (s->flags & SCR_EARLY(2)) {
		scr_early_tests(s, now_ms);
	} else if (s->flags & (SCR_SMTPD(2) | SCR_F_NOFORWARD)) {
		if (scr_smtpd_start(s, now_ms) < 0)
			scr_drop(s, "421 4.3.2 No system resources\r\n", wall_s);
	} else {
		scr_conclude(s, wall_s);
	}
}

/* ---- DNS ---- */

unsigned smtp_screen_queries(const struct smtp_screen *s)
{
	return (s->flags & SCR_TODO(SMTP_SCREEN_DNSBL)) ? s->cfg->nzones : 0;
}

int smtp_screen_query_name(const struct smtp_screen *s, unsigned i, char *out, size_t cap)
{
	if (i >= smtp_screen_queries(s))
		return -EINVAL;
	return dns_name_dnsbl(&s->client.addr, s->cfg->zones[i].domain, out, cap);
}

void smtp_screen_dns_answer(struct smtp_screen *s, unsigned i, const struct dns_result *res,
			    uint64_t now_ms)
{
	if (i >= smtp_screen_queries(s) || (s->answered & (1ull << i)) ||
	    s->state != SMTP_SCREEN_ST_EARLY || s->score_final)
		return;
	s->answered |= 1ull << i;
	scr_dnsbl_answer(s, i, res);
	if (s->answered != (1ull << s->cfg->nzones) - 1)
		return;
	/* psc_early_dnsbl_event(): every answer is in */
	scr_score(s, scr_now_s(s, now_ms));
	s->flags |= SCR_DONE(SMTP_SCREEN_DNSBL);
	if (scr_early_all_done(s))
		scr_early_done(s, now_ms);
}

/* ---- input, time, the end ---- */

bool smtp_screen_wants_input(const struct smtp_screen *s)
{
	if (s->state == SMTP_SCREEN_ST_EARLY)
		return (s->flags & SCR_TODO(SMTP_SCREEN_PREGREET)) && !s->pregreet_seen;
	return s->state == SMTP_SCREEN_ST_SMTPD && s->out_len - s->out_off <= SCR_OUT_HIWAT;
}

/* The client spoke before its turn (psc_early_event's read branch). Nothing is consumed:
 * postscreen peeks, and the bytes are read later by whoever takes the connection. */
static void scr_pregreet(struct smtp_screen *s, const char *buf, size_t len, uint64_t now_ms)
{
	const struct smtp_screen_config *c = s->cfg;
	const int P = SMTP_SCREEN_PREGREET;
	char esc[SCR_PEEK_MAX * 4 + 1], d[32];
	size_t n = len < SCR_PEEK_MAX ? len : SCR_PEEK_MAX;
	uint64_t elapsed = now_ms - s->start_ms;
	s->pregreet_seen = true;
	smtp_screen_escape(buf, n, esc, sizeof(esc));
	scr_log(s, "PREGREET %zu after %s from %s: %.100s", n,
		smtp_screen_format_delay(elapsed, d, sizeof(d)), s->addr_port, esc);
	s->flags |= SCR_FAIL(P);
	s->outcome.pregreet_fail = true;
	switch (c->greet_action) {
	case SMTP_SCREEN_DROP:
		scr_drop(s, "521 5.5.1 Protocol error\r\n", scr_now_s(s, now_ms));
		return;
	case SMTP_SCREEN_ENFORCE:
		scr_enforce(s, "550 5.5.1 Protocol error\r\n");
		break;
	case SMTP_SCREEN_IGNORE:
	case SMTP_SCREEN_ACTION_MAX:
		break;
	}
	s->flags |= SCR_DONE(P);
	/* postscreen counts whole seconds here: the rest of the wait is what is left of
	 * greet_wait after the whole seconds elapsed */
	uint64_t wait_s = c->greet_wait_ms / 1000, el_s = elapsed / 1000;
	if (el_s >= wait_s || scr_early_all_done(s))
		scr_early_done(s, now_ms);
	else
		s->deadline_ms = now_ms + (wait_s - el_s) * 1000;
}

size_t smtp_screen_input(struct smtp_screen *s, const char *buf, size_t len, uint64_t now_ms)
{
	if (len == 0)
		return 0;
	if (s->state == SMTP_SCREEN_ST_EARLY) {
		if (smtp_screen_wants_input(s))
			scr_pregreet(s, buf, len, now_ms);
		return 0;
	}
	if (s->state == SMTP_SCREEN_ST_SMTPD)
		return scr_smtpd_input(s, buf, len, now_ms);
	return 0;
}

uint64_t smtp_screen_deadline(const struct smtp_screen *s)
{
	return s->state == SMTP_SCREEN_ST_EARLY || s->state == SMTP_SCREEN_ST_SMTPD
		       ? s->deadline_ms : UINT64_MAX;
}

void smtp_screen_timer(struct smtp_screen *s, uint64_t now_ms)
{
	if (now_ms < smtp_screen_deadline(s))
		return;
	if (s->state == SMTP_SCREEN_ST_EARLY)
		scr_early_done(s, now_ms);
	else if (s->state == SMTP_SCREEN_ST_SMTPD)
		scr_smtpd_timer(s, now_ms);
}

void smtp_screen_peer_closed(struct smtp_screen *s, uint64_t now_ms)
{
	if (s->state == SMTP_SCREEN_ST_EARLY || s->state == SMTP_SCREEN_ST_SMTPD)
		scr_hangup(s, now_ms);
}

void smtp_screen_shutdown(struct smtp_screen *s, uint64_t now_ms)
{
	if (s->state == SMTP_SCREEN_ST_EARLY || s->state == SMTP_SCREEN_ST_SMTPD)
		scr_drop(s, "421 4.3.2 Service shutting down\r\n", scr_now_s(s, now_ms));
}
