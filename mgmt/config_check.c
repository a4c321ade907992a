/* Validation of each known parameter by its registry row (config_params.c): the check of
 * its type (with Postfix's messages: mail_conf_int, conv_time, mail_conf_bool,
 * valid_hostname...), the row's parse hook for the parameters that need more, and the
 * store of the validated value into its field of struct mx_config. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mgmt/config_internal.h"
#include "smtp/smtp_dovecot_auth.h"


void mx_param_report(const struct mx_param_value *r, bool warning, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const struct cfg_var *var = &r->c->vars[r->var];
	/* The famous main.cf trap: "name = value # comment" keeps the comment. */
	const char *hint = !warning && var->raw && strstr(var->raw, " #")
				   ? " (a '#' after a value is not a comment in main.cf syntax)"
				   : "";
	const char *src = var->line ? "" : " (the default)";
	cfg_diag_add(r->c, var->line, warning, "%s%s%s", msg, hint, warning ? "" : src);
}

static int cfg_parse_int(const struct mx_param_value *r, int64_t max_default, int64_t *out)
{
	const char *s = r->value;
	const char *d = s + (*s == '-' || *s == '+');
	size_t n = strspn(d, "0123456789");
	size_t zeros = strspn(d, "0");
	if (n == 0 || d[n] != '\0' || n - (zeros < n ? zeros : n - 1) > 18) {
		mx_param_report(r, false, "bad numerical configuration: %s = %.*s%s", r->def->name,
				CFG_SHOW(s));
		return -1;
	}
	int64_t v = strtoll(d + (zeros < n ? zeros : n - 1), NULL, 10);
	if (*s == '-')
		v = -v;
	int64_t max = r->def->max ? r->def->max : max_default;
	if (v > max_default) {
		mx_param_report(r, false, "bad numerical configuration: %s = %.*s%s", r->def->name,
				CFG_SHOW(s));
		return -1;
	}
	if (v < r->def->min) {
		mx_param_report(r, false, "invalid %s parameter value %lld < %lld", r->def->name,
				(long long)v, (long long)r->def->min);
		return -1;
	}
	if (v > max) {
		mx_param_report(r, false, "invalid %s parameter value %lld > %lld", r->def->name,
				(long long)v, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* Postfix's conv_time(): digits and at most one unit letter (s m h d w). */
static int cfg_parse_time(const struct mx_param_value *r, int64_t *out)
{
	const char *s = r->value;
	size_t n = strspn(s, "0123456789");
	char unit = s[n] ? s[n] : 's';
	int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600
		     : unit == 'd' ? 86400 : unit == 'w' ? 604800 : 0;
	if (n == 0 || n > 10 || (s[n] && s[n + 1]) || mult == 0 ||
	    strtoll(s, NULL, 10) > INT_MAX / mult) {
		mx_param_report(r, false, "parameter %s: bad time value or unit: %.*s%s",
				r->def->name, CFG_SHOW(s));
		return -1;
	}
	int64_t v = strtoll(s, NULL, 10) * mult;
	if (v < r->def->min) {
		mx_param_report(r, false, "invalid %s: %lld (min %lld)", r->def->name,
				(long long)v, (long long)r->def->min);
		return -1;
	}
	if (r->def->max && v > r->def->max) {
		mx_param_report(r, false, "invalid %s: %lld (max %lld)", r->def->name,
				(long long)v, (long long)r->def->max);
		return -1;
	}
	*out = v;
	return 0;
}

static int cfg_parse_bool(const struct mx_param_value *r, bool *out)
{
	if (strcasecmp(r->value, "yes") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(r->value, "no") == 0) {
		*out = false;
		return 0;
	}
	mx_param_report(r, false, "bad boolean configuration: %s = %.*s%s", r->def->name,
			CFG_SHOW(r->value));
	return -1;
}

/* Postfix's valid_hostname(), without the trailing-dot allowance. */
static const char *cfg_hostname_problem(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool non_numeric = false;
	if (len > 255)
		return "longer than 255 characters";
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0)
				return "empty label";
			if (label > 63)
				return "label longer than 63 characters";
			if (s[i - 1] == '-')
				return "label ends with '-'";
			label = 0;
			continue;
		}
		if (ch == '-' && label == 0)
			return "label starts with '-'";
		if (!mx_ctype_is_hostname(ch))
			return "invalid character";
		if (!mx_ctype_is_digit(ch))
			non_numeric = true;
		label++;
	}
	return non_numeric ? NULL : "numeric name (an address is not a host name)";
}

static int cfg_check_string_length(const struct mx_param_value *r)
{
	size_t len = strlen(r->value);
	if (r->def->min && len < (size_t)r->def->min) {
		mx_param_report(r, false, "bad string length %zu < %lld: %s = %.*s%s", len,
				(long long)r->def->min, r->def->name, CFG_SHOW(r->value));
		return -1;
	}
	if (r->def->max && len > (size_t)r->def->max) {
		mx_param_report(r, false, "bad string length %zu > %lld: %s = %.*s%s", len,
				(long long)r->def->max, r->def->name, CFG_SHOW(r->value));
		return -1;
	}
	return 0;
}

int cfg_parse_listen(const struct mx_param_value *r, struct mx_config *cfg)
{
	const char *cur = r->value, *p;
	size_t n;
	cfg->listen_count = 0;
	while ((n = mx_list_next(&cur, &p)) > 0) {
		char tok[128];
		if (n >= sizeof(tok)) {
			mx_param_report(r, false, "parameter %s: bad address \"%.40s...\"",
					r->def->name, p);
			return -1;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		char orig[128];
		memcpy(orig, tok, n + 1);

		char *host = tok, *port;
		if (tok[0] == '[') {
			char *close = strchr(tok, ']');
			if (!close || close[1] != ':') {
				mx_param_report(r, false,
						"parameter %s: bad address \"%s\": expected "
						"[IPV6]:PORT",
						r->def->name, tok);
				return -1;
			}
			*close = '\0';
			host = tok + 1;
			port = close + 2;
		} else {
			char *colon = strrchr(tok, ':');
			if (!colon || strchr(tok, ':') != colon) {
				mx_param_report(r, false,
						"parameter %s: bad address \"%s\": expected "
						"ADDRESS:PORT or [IPV6]:PORT",
						r->def->name, tok);
				return -1;
			}
			*colon = '\0';
			port = colon + 1;
		}
		struct mx_inet_addr a;
		bool v6 = tok[0] == '[';
		if (!mx_inet_parse(host, &a) || (a.family == AF_INET6) != v6) {
			mx_param_report(r, false,
					"parameter %s: bad address \"%s\" in \"%s\": a numeric "
					"%s address is required%s",
					r->def->name, host, orig, v6 ? "IPv6" : "IPv4",
					!v6 && strchr(host, ':') ? " (write IPv6 as [ADDR]:PORT)"
					: !v6 && (!*host || !strcmp(host, "*"))
						? " (0.0.0.0 or [::] means every address)"
						: "");
			return -1;
		}
		size_t pl = strlen(port);
		long pv = pl && pl <= 5 && strspn(port, "0123456789") == pl ? atol(port) : 0;
		if (pv < 1 || pv > 65535) {
			mx_param_report(r, false, "parameter %s: bad port \"%s\" for %s%s%s",
					r->def->name, port, v6 ? "[" : "", host, v6 ? "]" : "");
			return -1;
		}
		for (unsigned i = 0; i < cfg->listen_count; i++) {
			struct mx_inet_addr b;
			mx_inet_parse(cfg->listen[i].host, &b);
			if (cfg->listen[i].port == pv && b.family == a.family &&
			    memcmp(a.bytes, b.bytes, sizeof(a.bytes)) == 0) {
				mx_param_report(r, false, "parameter %s: %s%s%s:%ld is listed twice",
						r->def->name, v6 ? "[" : "", host, v6 ? "]" : "",
						pv);
				return -1;
			}
		}
		if (cfg->listen_count == MX_CONFIG_MAX_LISTEN) {
			mx_param_report(r, false, "parameter %s: more than %d addresses",
					r->def->name, MX_CONFIG_MAX_LISTEN);
			return -1;
		}
		struct mx_listen_addr *la = &cfg->listen[cfg->listen_count++];
		/* inet_pton() took it, so it is at most INET6_ADDRSTRLEN - 1 bytes. */
		size_t hl = strlen(host);
		assert(hl < sizeof(la->host));
		memcpy(la->host, host, hl + 1);
		la->port = (uint16_t)pv;
	}
	if (cfg->listen_count == 0) {
		mx_param_report(r, false, "parameter %s: at least one address is required",
				r->def->name);
		return -1;
	}
	return 0;
}

bool cfg_word_in_list(const char *list, const char *word)
{
	size_t wl = strlen(word), n;
	const char *p;
	while ((n = mx_list_next(&list, &p)) > 0)
		if (n == wl && strncasecmp(p, word, n) == 0)
			return true;
	return false;
}

int cfg_parse_discard_ehlo(const struct mx_param_value *r, struct mx_config *cfg)
{
	struct smtp_config *smtp = &cfg->smtp;
	const char *cur = r->value, *p;
	size_t n;
	while ((n = mx_list_next(&cur, &p)) > 0) {
		if (n == 10 && strncasecmp(p, "pipelining", n) == 0)
			smtp->enable_pipelining = false;
		else if (n == 8 && strncasecmp(p, "chunking", n) == 0)
			smtp->enable_chunking = false;
		else if (n == 8 && strncasecmp(p, "smtputf8", n) == 0)
			smtp->enable_smtputf8 = false;
		else if (n == 8 && strncasecmp(p, "8bitmime", n) == 0)
			smtp->enable_8bitmime = false;
		else if (n == 3 && strncasecmp(p, "dsn", n) == 0)
			smtp->enable_dsn = false;
		else if (!(n == 14 && strncasecmp(p, "silent-discard", n) == 0))
			mx_param_report(r, true,
					"%s: \"%.*s\" has no effect in mxgate (it can discard "
					"pipelining, chunking, smtputf8, 8bitmime and dsn)",
					r->def->name, (int)(n > 40 ? 40 : n), p);
	}
	return 0;
}

/* relayhost (Postfix's nexthop syntax): [ADDRESS]:PORT, ADDRESS:PORT, [ADDRESS], ADDRESS,
 * [IPV6]:PORT, [IPV6]; empty means no relay. mxgate resolves no names: a host name is
 * refused here rather than failing at the first delivery. */
int cfg_parse_relayhost(const struct mx_param_value *r, struct mx_config *cfg)
{
	const char *v = r->value;
	cfg->relayhost_addr[0] = '\0';
	cfg->relayhost_port = 25;
	if (!*v)
		return 0;
	char host[64];
	const char *port = NULL;
	size_t hl;
	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (!close || (close[1] != '\0' && close[1] != ':')) {
			mx_param_report(r, false,
					"parameter relayhost: bad value \"%.*s%s\": expected "
					"[ADDRESS]:PORT, ADDRESS:PORT or [IPV6]:PORT",
					CFG_SHOW(v));
			return -1;
		}
		hl = (size_t)(close - v - 1);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v + 1, hl);
		host[hl] = '\0';
		if (strncasecmp(host, "ipv6:", 5) == 0)
			memmove(host, host + 5, strlen(host + 5) + 1);
		port = close[1] == ':' ? close + 2 : NULL;
	} else {
		const char *colon = strchr(v, ':');
		if (colon && strchr(colon + 1, ':')) {
			mx_param_report(r, false,
					"parameter relayhost: bad value \"%.*s%s\": an IPv6 address "
					"is written in brackets: [IPV6]:PORT",
					CFG_SHOW(v));
			return -1;
		}
		hl = colon ? (size_t)(colon - v) : strlen(v);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v, hl);
		host[hl] = '\0';
		port = colon ? colon + 1 : NULL;
	}
	unsigned char buf[16];
	if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
		mx_param_report(r, false,
				"parameter relayhost: \"%.*s%s\" is not a numeric IP address: "
				"mxgate does no DNS lookups; write [192.0.2.25]:25 or [2001:db8::25]:25",
				CFG_SHOW(host));
		return -1;
	}
	if (port) {
		char *end = NULL;
		unsigned long p = strtoul(port, &end, 10);
		if (!*port || *end || p == 0 || p > 65535 || *port < '0' || *port > '9') {
			mx_param_report(r, false, "parameter relayhost: bad port \"%.*s%s\"",
					CFG_SHOW(port));
			return -1;
		}
		cfg->relayhost_port = (uint16_t)p;
	}
	snprintf(cfg->relayhost_addr, sizeof(cfg->relayhost_addr), "%s", host);
	return 0;
}

/* An absolute path without control characters, shorter than PATH_MAX. */
static int cfg_check_path(const struct mx_param_value *r, const char *path, size_t len)
{
	if (len == 0 || path[0] != '/') {
		mx_param_report(r, false, "parameter %s: not an absolute path: \"%.*s%s\"",
				r->def->name, CFG_SHOW(path));
		return -1;
	}
	if (len >= PATH_MAX) {
		mx_param_report(r, false, "parameter %s: path longer than %d bytes", r->def->name,
				PATH_MAX - 1);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)path[i];
		if (ch < 0x20 || ch == 0x7f) {
			mx_param_report(r, false, "parameter %s: control character in path",
					r->def->name);
			return -1;
		}
	}
	return 0;
}

/* mxgate_spool_directory: one or more spool directories (commas and/or white space between
 * them), each with its own writer thread, for throughput across devices. The strings are
 * copies owned by the config (freed with it). */
int cfg_parse_spool_dirs(const struct mx_param_value *r, struct mx_config *cfg)
{
	const char *cur = r->value, *p;
	size_t len;
	cfg->spool_dir_count = 0;
	while ((len = mx_list_next(&cur, &p)) > 0) {
		if (cfg_check_path(r, p, len) != 0)
			return -1;
		if (cfg->spool_dir_count == MX_CONFIG_MAX_SPOOLS) {
			mx_param_report(r, false, "parameter %s: more than %d spool directories",
					r->def->name, MX_CONFIG_MAX_SPOOLS);
			return -1;
		}
		for (unsigned i = 0; i < cfg->spool_dir_count; i++) {
			if (strlen(cfg->spool_dirs[i]) == len && memcmp(cfg->spool_dirs[i], p, len) == 0) {
				mx_param_report(r, false, "parameter %s: %.*s is listed twice",
						r->def->name, (int)len, p);
				return -1;
			}
		}
		char *dir = strndup(p, len);
		if (!dir) {
			r->c->oom = true;
			return -1;
		}
		cfg->spool_dirs[cfg->spool_dir_count++] = dir;
	}
	if (cfg->spool_dir_count == 0)
		return cfg_check_path(r, r->value, 0); /* "not an absolute path" */
	cfg->spool_directory = cfg->spool_dirs[0];
	return 0;
}

/* Debian's Postfix (MYORIGIN_FROM_FILE, mail_params.c) takes "myorigin = /etc/mailname"
 * as the first line of that file, blanks trimmed. Returns the name (malloc'd) or NULL
 * after reporting why. */
static char *cfg_myorigin_from_file(const struct mx_param_value *r)
{
	char line[512];
	FILE *f = fopen(r->value, "re");
	if (!f) {
		mx_param_report(r, false, "parameter myorigin: %s: %s", r->value, strerror(errno));
		return NULL;
	}
	bool got = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	const char *p = got ? line : "";
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strcspn(p, "\r\n");
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0) {
		mx_param_report(r, false, "parameter myorigin: file %s is empty", r->value);
		return NULL;
	}
	char *name = strndup(p, n);
	if (!name)
		r->c->oom = true;
	return name;
}


/* ---------------------------------------------------------------------------------------
 * The parse hooks of rows that need more than their type's check. */

int cfg_parse_banner(const struct mx_param_value *pv, struct mx_config *cfg)
{
	/* RFC 5321 4.2: Greeting = "220 " (Domain / address-literal) [ SP text ]. */
	const char *host = cfg->myhostname, *value = pv->value;
	size_t hl = host ? strlen(host) : 0;
	if (host && (strncasecmp(value, host, hl) != 0 || (value[hl] != '\0' && value[hl] != ' ')))
		mx_param_report(pv, true,
				"parameter %s does not start with $myhostname (%s); RFC 5321 "
				"section 4.2 wants the server's name first",
				pv->def->name, host);
	return 0;
}

/* smtpd_client_connection_limit_exceptions, the Postfix 2.2 name of
 * smtpd_client_event_limit_exceptions. Postfix keeps it only for the new name's default,
 * ${smtpd_client_connection_limit_exceptions:$mynetworks}, which becomes empty when the
 * old name is set -- no exceptions at all, never what its writer meant. Refused when set,
 * naming the parameter to set instead. */
int cfg_parse_renamed_exceptions(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	if (pv->value[0] == '\0')
		return 0;
	mx_param_report(pv, false, "%s: not implemented by mxgate: the Postfix 2.2 name of "
				   "smtpd_client_event_limit_exceptions, which Postfix then leaves "
				   "empty; set smtpd_client_event_limit_exceptions instead",
			pv->def->name);
	return -1;
}

int cfg_parse_compat_level(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	uint64_t lv[3];
	if (!cfg_parse_level(pv->value, lv)) {
		mx_param_report(pv, false,
				"parameter %s: malformed compatibility level syntax: \"%.*s%s\"",
				pv->def->name, CFG_SHOW(pv->value));
		return -1;
	}
	size_t mn = cfg_find(pv->c, "mynetworks", 10);
	if (lv[0] < 2 && mn != SIZE_MAX && !pv->c->vars[mn].line)
		mx_param_report(pv, true,
				"%s = %s: mynetworks stays \"%s\" (mxgate computes no "
				"mynetworks_style networks); set mynetworks if you rely on the old "
				"subnet default",
				pv->def->name, pv->value, mx_params[MX_P_MYNETWORKS].def);
	return 0;
}

/* smtputf8_enable = no, and smtpd_discard_ehlo_keywords = smtputf8, both turn it off. */
int cfg_parse_smtputf8(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->smtp.enable_smtputf8 = cfg->smtp.enable_smtputf8 && pv->b;
	return 0;
}

/* Postfix 3.9: yes is the old name of normalize ("no" is refused by the row). */
int cfg_parse_bare_newline(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->smtp.bare_newline = strcasecmp(pv->value, "reject") == 0
					 ? SMTP_BARE_NEWLINE_REJECT
					 : SMTP_BARE_NEWLINE_NORMALIZE;
	return 0;
}

int cfg_parse_transport(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->transport = strcasecmp(pv->value, "dpdk") == 0 ? MX_TRANSPORT_DPDK
							    : MX_TRANSPORT_KERNEL;
	return 0;
}

/* smtpd_upstream_proxy_protocol: "haproxy" (the only protocol Postfix knows) or empty. */
int cfg_parse_upstream_proxy(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->smtpd_upstream_proxy_haproxy = strcasecmp(pv->value, "haproxy") == 0;
	return 0;
}

/* smtpd_sasl_type: mxgate is a Dovecot auth client only. Refused (with smtpd_sasl_auth_enable)
 * rather than taken for Dovecot: a Cyrus site's smtpd_sasl_path names a Cyrus application,
 * and AUTH would silently never work. */
int cfg_parse_sasl_type(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->sasl_type_dovecot = strcasecmp(pv->value, "dovecot") == 0;
	return 0;
}

int cfg_parse_sasl_enable(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->sasl_auth_enable = pv->b;
	if (pv->b && !cfg->sasl_type_dovecot) {
		mx_param_report(pv, false, "smtpd_sasl_auth_enable = yes needs smtpd_sasl_type = "
					   "dovecot: mxgate does not implement Cyrus SASL "
					   "(saslauthd); point smtpd_sasl_path at Dovecot's auth "
					   "socket");
		return -EINVAL;
	}
	return 0;
}

/* smtpd_sasl_path as Postfix's Dovecot client takes it (xsasl_dovecot_server.c): a
 * "type:name" endpoint, or a UNIX socket path relative to queue_directory. */
int cfg_parse_sasl_path(const struct mx_param_value *pv, struct mx_config *cfg)
{
	const char *v = pv->value;
	char buf[512];
	if (strncmp(v, "inet:", 5) == 0)
		snprintf(buf, sizeof(buf), "%s", v);
	else if (strncmp(v, "unix:", 5) == 0 && v[5] == '/')
		snprintf(buf, sizeof(buf), "%s", v);
	else if (strncmp(v, "unix:", 5) == 0)
		snprintf(buf, sizeof(buf), "unix:%s/%s", cfg->queue_directory, v + 5);
	else if (v[0] == '/')
		snprintf(buf, sizeof(buf), "unix:%s", v);
	else if (strchr(v, ':')) {
		mx_param_report(pv, false, "%s: unsupported endpoint \"%s\" (inet:host:port, "
					   "unix:path or a path)", pv->def->name, v);
		return -EINVAL;
	} else
		snprintf(buf, sizeof(buf), "unix:%s/%s", cfg->queue_directory, v);
	free(cfg->sasl_endpoint);
	if (!(cfg->sasl_endpoint = strdup(buf)))
		return -ENOMEM;
	return 0;
}

/* smtpd_sasl_security_options and smtpd_sasl_tls_security_options. */
int cfg_parse_sasl_sec(const struct mx_param_value *pv, struct mx_config *cfg)
{
	unsigned opts;
	char why[200];
	if (smtp_dovecot_sec_opts_parse(pv->value, &opts, why, sizeof(why)) < 0) {
		mx_param_report(pv, false, "%s: %s", pv->def->name, why);
		return -EINVAL;
	}
	if (pv->def->id == MX_P_SMTPD_SASL_SECURITY_OPTIONS)
		cfg->sasl_sec_opts = opts;
	else
		cfg->sasl_tls_sec_opts = opts;
	return 0;
}

int cfg_parse_relay_protocol(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->relay_lmtp = strcasecmp(pv->value, "lmtp") == 0;
	return 0;
}

/* `stress` is mxgate's to set (the stress variant of a configuration has it at line 0);
 * in main.cf or a -o override it would hold every session in or out of stress. Postfix's
 * master(8) overrides such a main.cf value with its own -o stress=...; mxgate says so
 * rather than ignore it. */
int cfg_parse_stress(const struct mx_param_value *pv, struct mx_config *cfg)
{
	if (pv->c->vars[pv->var].line) {
		mx_param_report(pv, false,
				"parameter stress: is set by mxgate itself while the open "
				"connections near mxgate_max_connections (as Postfix's master(8) "
				"sets it); remove it");
		return -1;
	}
	cfg->stress = strcasecmp(pv->value, "yes") == 0;
	return 0;
}

/* Hysteresis: stress must be able to end before it begins again. */
int cfg_parse_stress_leave(const struct mx_param_value *pv, struct mx_config *cfg)
{
	/* called before the value is stored; mxgate_stress_enter_percent was (its row
	 * comes first) */
	size_t e = cfg_find(pv->c, "mxgate_stress_enter_percent", 27);
	if (e != SIZE_MAX && pv->c->vars[e].bad)
		return 0; /* its own message says what is wrong */
	if (pv->n >= (int64_t)cfg->stress_enter_percent) {
		mx_param_report(pv, false,
				"parameter mxgate_stress_leave_percent: %lld is not below "
				"mxgate_stress_enter_percent (%u)",
				(long long)pv->n, cfg->stress_enter_percent);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * The type checks, and the store by the row's field. */

static int cfg_check_type(struct mx_param_value *pv, struct mx_config *cfg)
{
	const struct mx_param_def *def = pv->def;
	const char *value = pv->value;
	struct cfg_ctx *c = pv->c;
	char err[512];

	switch (def->type) {
	case MX_PT_HOSTNAME: {
		if (cfg_check_string_length(pv) != 0)
			return -1;
		const char *why = cfg_hostname_problem(value);
		if (why) {
			mx_param_report(pv, false, "parameter %s: bad parameter value: %.*s%s: %s",
					def->name, CFG_SHOW(value), why);
			return -1;
		}
		return 0;
	}
	case MX_PT_TEXT:
		if (cfg_check_string_length(pv) != 0)
			return -1;
		for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
			/* RFC 5321 4.2: reply text is 1*(%d09 / %d32-126); the greeting
			 * comes before SMTPUTF8 could be negotiated. */
			if (*p != '\t' && (*p < 0x20 || *p > 0x7e)) {
				mx_param_report(pv, false,
						"parameter %s: character 0x%02x is not printable "
						"ASCII",
						def->name, *p);
				return -1;
			}
		}
		return 0;
	case MX_PT_LEVEL:
		return 0; /* its hook checks it */
	case MX_PT_BOOL:
		return cfg_parse_bool(pv, &pv->b);
	case MX_PT_INT:
		return cfg_parse_int(pv, INT_MAX, &pv->n);
	case MX_PT_SIZE:
		return cfg_parse_int(pv, LONG_MAX < INT64_MAX ? LONG_MAX : INT64_MAX, &pv->n);
	case MX_PT_TIME:
		return cfg_parse_time(pv, &pv->n);
	case MX_PT_NETLIST: {
		struct netlist *nl = NULL;
		int rc = netlist_parse(value, &nl, err, sizeof(err));
		if (rc == -ENOMEM) {
			c->oom = true;
			return -1;
		}
		if (rc != 0) {
			mx_param_report(pv, false, "parameter %s: %s", def->name, err);
			return -1;
		}
		assert(def->field == MX_FIELD_NETLIST);
		memcpy((char *)cfg + def->offset, &nl, sizeof(nl));
		return 0;
	}
	case MX_PT_DOMAINS: {
		bool parent = def->parent_style && cfg_word_in_list(pv->pdms, def->name);
		struct domain_list *dl = NULL;
		int rc = domain_list_parse(value, parent, &dl, err, sizeof(err));
		if (rc == -ENOMEM) {
			c->oom = true;
			return -1;
		}
		if (rc != 0) {
			mx_param_report(pv, false, "parameter %s: %s", def->name, err);
			return -1;
		}
		assert(def->field == MX_FIELD_DOMAINS);
		memcpy((char *)cfg + def->offset, &dl, sizeof(dl));
		return 0;
	}
	case MX_PT_WORDS:
		return 0;
	case MX_PT_PATH:
		if ((!*value && def->min == 0) || def->parse)
			return 0; /* a hook checks its own paths */
		return cfg_check_path(pv, value, strlen(value));
	case MX_PT_CHOICE: {
		if (def->refused_choice && strcasecmp(value, def->refused_choice) == 0) {
			mx_param_report(pv, false, "parameter %s: \"%s\" is not supported: %s",
					def->name, def->refused_choice, def->refused_why);
			return -1;
		}
		bool ok = false;
		for (const char *p = def->choices; *p;) {
			size_t len = strcspn(p, "|");
			if (len == strlen(value) && strncasecmp(p, value, len) == 0)
				ok = true;
			p += len + (p[len] == '|');
		}
		if (!ok) {
			char expected[128];
			snprintf(expected, sizeof(expected), "%s", def->choices);
			for (char *p = expected; *p; p++)
				if (*p == '|')
					*p = ' ';
			mx_param_report(pv, false,
					"parameter %s: bad value \"%.*s%s\" (expected one of: %s)",
					def->name, CFG_SHOW(value), expected);
			return -1;
		}
		return 0;
	}
	case MX_PT_LISTEN:
		return 0; /* its hook parses it */
	case MX_PT_TYPE_MAX:
		break;
	}
	return 0;
}

/* Store the validated value in the row's field. */
static void cfg_store(const struct mx_param_value *pv, struct mx_config *cfg)
{
	const struct mx_param_def *def = pv->def;
	char *at = (char *)cfg + def->offset;
	switch (def->field) {
	case MX_FIELD_STRING: {
		const char *s = pv->value;
		memcpy(at, &s, sizeof(s));
		break;
	}
	case MX_FIELD_UNSIGNED: {
		unsigned u = (unsigned)pv->n;
		memcpy(at, &u, sizeof(u));
		break;
	}
	case MX_FIELD_MS: {
		unsigned u = (unsigned)pv->n * 1000u;
		memcpy(at, &u, sizeof(u));
		break;
	}
	case MX_FIELD_SIZE: {
		size_t z = (size_t)pv->n;
		memcpy(at, &z, sizeof(z));
		break;
	}
	case MX_FIELD_U64: {
		uint64_t q = (uint64_t)pv->n;
		memcpy(at, &q, sizeof(q));
		break;
	}
	case MX_FIELD_BOOL:
		memcpy(at, &pv->b, sizeof(pv->b));
		break;
	case MX_FIELD_NONE:
	case MX_FIELD_NETLIST: /* stored by the check, which built it */
	case MX_FIELD_DOMAINS:
	case MX_FIELD_MAX:
		break;
	}
}

int cfg_apply(struct cfg_ctx *c, size_t v, struct mx_config_impl *impl, const char *pdms)
{
	struct mx_config *cfg = &impl->pub;
	const struct mx_param_def *def = c->vars[v].def;
	struct mx_param_value pv = {
		.c = c, .var = v, .def = def, .value = impl->values[def->id], .pdms = pdms,
	};

	if (def->from_file && pv.value[0] == '/') {
		char *name = cfg_myorigin_from_file(&pv);
		if (!name)
			return -1;
		free(cfg->myorigin_from_file);
		cfg->myorigin_from_file = name;
		pv.value = name;
	}
	if (cfg_check_type(&pv, cfg) != 0)
		return -1;
	if (def->parse && def->parse(&pv, cfg) != 0)
		return -1;
	cfg_store(&pv, cfg);
	return 0;
}

/* syslog_name: the NAME in "NAME/smtpd[pid]:". Log readers split the tag at '/', '[' and
 * ':' (pflogsumm's m#^NAME/([^\[:]*)#), and syslog ends the tag at a blank, so only
 * letters, digits, '.', '_', '-' and '/' (Postfix's "postfix-out/submission" style) are
 * taken. */
int cfg_parse_syslog_name(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	for (const char *p = pv->value; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '.' || ch == '_' || ch == '-' || ch == '/')
			continue;
		mx_param_report(pv, false,
				"parameter %s: character '%c' (0x%02x) in \"%s\": a syslog tag takes "
				"letters, digits, '.', '_', '-' and '/'",
				pv->def->name, ch >= 0x20 && ch < 0x7f ? ch : '?', ch, pv->value);
		return -1;
	}
	return 0;
}

/* mail_owner: a user name, looked up (and refused when missing or root) at start by
 * dataplane/privdrop.c, since the configuration may be checked on another machine. Here
 * only its form: the portable user name characters of POSIX (3.437) that useradd(8)
 * accepts by default, not starting with '-'. */
int cfg_parse_mail_owner(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	const char *v = pv->value;
	if (v[0] == '-') {
		mx_param_report(pv, false, "parameter %s: user name \"%s\" starts with '-'",
				pv->def->name, v);
		return -1;
	}
	for (const char *p = v; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')) {
			mx_param_report(pv, false,
					"parameter %s: \"%s\" is not a user name (letters, digits, "
					"'.', '_' and '-' only)",
					pv->def->name, v);
			return -1;
		}
	}
	if (strspn(v, "0123456789") == strlen(v)) {
		mx_param_report(pv, false,
				"parameter %s: \"%s\" is a number: name the user, as Postfix does",
				pv->def->name, v);
		return -1;
	}
	return 0;
}
