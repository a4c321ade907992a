/* mxgate_dns_servers and resolv.conf(5) (tables/dns_conf.h). */
#include "tables/dns_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"

#define DNS_CONF_WORD_MAX 64             /* "[v6 address]:port" with room to spare */

/* A port: 1 to 65535, decimal digits only. */
static bool dns_conf_port_parse(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;
	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!mx_ctype_is_digit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* A numeric address of len bytes (no brackets). */
static bool dns_conf_addr_parse(const char *s, size_t len, struct mx_inet_addr *out)
{
	char buf[DNS_CONF_WORD_MAX];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return mx_inet_parse(buf, out);
}

/* One word of mxgate_dns_servers. */
static int dns_conf_server_word(const char *w, size_t len, struct dns_server *out)
{
	out->port = 53;
	if (len >= DNS_CONF_WORD_MAX)
		return -EINVAL;
	if (w[0] == '[') {
		const char *close = memchr(w, ']', len);
		if (!close)
			return -EINVAL;
		size_t alen = (size_t)(close - w - 1);
		if (!dns_conf_addr_parse(w + 1, alen, &out->addr) ||
		    out->addr.family != AF_INET6)
			return -EINVAL;
		size_t rest = len - alen - 2;
		if (rest == 0)
			return 0;
		if (close[1] != ':' || !dns_conf_port_parse(close + 2, rest - 1, &out->port))
			return -EINVAL;
		return 0;
	}
	const char *colon = memchr(w, ':', len);
	if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - w))) {
		/* exactly one colon: IPv4 with a port */
		size_t alen = (size_t)(colon - w);
		if (!dns_conf_addr_parse(w, alen, &out->addr) || out->addr.family != AF_INET)
			return -EINVAL;
		return dns_conf_port_parse(colon + 1, len - alen - 1, &out->port) ? 0
											 : -EINVAL;
	}
	return dns_conf_addr_parse(w, len, &out->addr) ? 0 : -EINVAL;
}

int dns_servers_parse(const char *text, struct dns_server *out, unsigned cap, unsigned *n,
		      char *err, size_t errlen)
{
	*n = 0;
	const char *cur = text ? text : "";
	const char *w;
	size_t len;
	while ((len = mx_list_next(&cur, &w)) > 0) {
		struct dns_server s;
		int shown = (int)(len < DNS_CONF_WORD_MAX ? len : DNS_CONF_WORD_MAX);
		if (dns_conf_server_word(w, len, &s) < 0)
			return mx_errf(err, errlen, -EINVAL,
				       "'%.*s' is not a numeric address with an optional port "
				       "(192.0.2.1:53, [2001:db8::1]:53)",
				       shown, w);
		if (*n >= cap)
			return mx_errf(err, errlen, -E2BIG, "more than %u servers", cap);
		out[(*n)++] = s;
	}
	return 0;
}

/* A decimal option value ("timeout:N"), saturating at 9 digits; false without digits. */
static bool dns_conf_option_number(const char *s, size_t len, unsigned *out)
{
	unsigned v = 0;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!mx_ctype_is_digit((unsigned char)s[i]))
			return false;
		if (v < 100000000u)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* The next blank-separated token of [*p, end): its length, 0 at the end of the line. */
static size_t dns_conf_token(const char **p, const char *end, const char **tok)
{
	const char *s = *p;
	while (s < end && mx_ctype_is_blank((unsigned char)*s))
		s++;
	const char *t = s;
	while (s < end && !mx_ctype_is_blank((unsigned char)*s))
		s++;
	*p = s;
	*tok = t;
	return (size_t)(s - t);
}

static bool dns_conf_token_is(const char *t, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(t, word, len) == 0;
}

/* resolv.conf(5) "options" words: timeout:N (at most 30, as glibc's RES_MAXRETRANS; 0 is
 * taken as 1 s, as glibc's res_send() does), attempts:N (at most 5, RES_MAXRETRY; 0 as 1:
 * a resolver that never asks is no resolver), rotate, edns0. */
static void dns_conf_options(const char *p, const char *end,
				 struct dns_resolv_conf *out)
{
	const char *t;
	size_t len;
	while ((len = dns_conf_token(&p, end, &t)) > 0) {
		unsigned v;
		if (len > 8 && memcmp(t, "timeout:", 8) == 0 &&
		    dns_conf_option_number(t + 8, len - 8, &v)) {
			v = v == 0 ? 1 : v > 30 ? 30 : v;
			out->timeout_ms = v * 1000;
		} else if (len > 9 && memcmp(t, "attempts:", 9) == 0 &&
			   dns_conf_option_number(t + 9, len - 9, &v)) {
			out->attempts = v == 0 ? 1 : v > DNS_CONF_ATTEMPTS_MAX
							     ? DNS_CONF_ATTEMPTS_MAX
							     : v;
		} else if (dns_conf_token_is(t, len, "rotate")) {
			out->rotate = true;
		} else if (dns_conf_token_is(t, len, "edns0")) {
			out->edns0 = true;
		} else {
			out->ignored++;
		}
	}
}

void dns_resolv_conf_parse(const char *text, size_t len, struct dns_resolv_conf *out)
{
	memset(out, 0, sizeof(*out));
	out->timeout_ms = DNS_CONF_DEFAULT_TIMEOUT_MS;
	out->attempts = DNS_CONF_DEFAULT_ATTEMPTS;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		const char *cur = p;
		p = nl ? nl + 1 : end;
		if (eol > cur && eol[-1] == '\r')
			eol--;
		/* glibc's res_init reads keywords at the very start of a line only */
		if (cur < eol &&
		    (*cur == '#' || *cur == ';' || mx_ctype_is_blank((unsigned char)*cur)))
			continue;
		const char *kw;
		size_t kwlen = dns_conf_token(&cur, eol, &kw);
		if (dns_conf_token_is(kw, kwlen, "nameserver")) {
			const char *a;
			size_t alen = dns_conf_token(&cur, eol, &a);
			struct dns_server s = { .port = 53 };
			if (out->nservers >= DNS_CONF_RESOLV_NS_MAX ||
			    !dns_conf_addr_parse(a, alen, &s.addr))
				out->ignored++;
			else
				out->servers[out->nservers++] = s;
		} else if (dns_conf_token_is(kw, kwlen, "options")) {
			dns_conf_options(cur, eol, out);
		}
		/* domain, search, sortlist: mxgate asks absolute names only */
	}
	if (out->nservers == 0) {
		/* resolv.conf(5): with no nameserver line, the server on the local machine */
		out->defaulted = true;
		struct dns_server s = { .port = 53 };
		mx_inet_parse("127.0.0.1", &s.addr);
		out->servers[out->nservers++] = s;
	}
}

int dns_resolv_conf_read(const char *path, struct dns_resolv_conf *out, char *err,
			 size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT) {
			dns_resolv_conf_parse("", 0, out);
			return 0;
		}
		return mx_errf(err, errlen, -e, "%s: %s", path, strerror(e));
	}
	char *buf = malloc(DNS_CONF_RESOLV_CONF_MAX);
	if (!buf) {
		close(fd);
		return mx_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	size_t have = 0;
	while (have < DNS_CONF_RESOLV_CONF_MAX) {
		ssize_t n = read(fd, buf + have, DNS_CONF_RESOLV_CONF_MAX - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return mx_errf(err, errlen, -e, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	/* past the bound: the text read so far (a resolv.conf is a few lines) */
	dns_resolv_conf_parse(buf, have, out);
	free(buf);
	return 0;
}

