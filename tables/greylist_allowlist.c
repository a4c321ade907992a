/* postgrey's static allowlists (greylist.h): whitelist_clients and whitelist_recipients
 * read as postgrey 1.37's read_clients_whitelists() and read_recipients_whitelists() read
 * them, matched as its smtpd_access_policy() matches them. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tables/greylist.h"

#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"

enum gl_kind {
	GL_REGEX,       /* /re/: both lists */
	GL_NAME,        /* a client name and its subdomains: (?:^|\.)NAME$ */
	GL_NET,         /* a client network */
	GL_USER_DOMAIN, /* user@domain, user+ext@domain: ^USER(?:\+[^@]+)?@DOMAIN$ */
	GL_USER,        /* user@: ^USER(?:\+[^@]+)?@ */
	GL_DOMAIN,      /* domain: (?:@|\.)DOMAIN$ */
	GL_KIND_MAX
};

struct gl_entry {
	enum gl_kind kind;
	char *s;            /* NAME, USER, DOMAIN (as written) */
	char *d;            /* GL_USER_DOMAIN: the domain */
	pcre2_code *re;
	struct mx_inet_addr net;
	unsigned prefix;
};

struct gl_list {
	struct gl_entry *e;
	size_t n, cap;
};

struct greylist_allowlist {
	/* read-only once loaded: workers match concurrently (each match makes its own
	 * match data) */
	struct gl_list lists[GREYLIST_LIST_MAX];
};

struct greylist_allowlist *greylist_allowlist_new(void)
{
	return calloc(1, sizeof(struct greylist_allowlist));
}

void greylist_allowlist_free(struct greylist_allowlist *a)
{
	if (!a)
		return;
	for (int l = 0; l < GREYLIST_LIST_MAX; l++) {
		for (size_t i = 0; i < a->lists[l].n; i++) {
			free(a->lists[l].e[i].s);
			free(a->lists[l].e[i].d);
			pcre2_code_free(a->lists[l].e[i].re);
		}
		free(a->lists[l].e);
	}
	free(a);
}

size_t greylist_allowlist_count(const struct greylist_allowlist *a, enum greylist_list list)
{
	return (unsigned)list < GREYLIST_LIST_MAX ? a->lists[list].n : 0;
}

static struct gl_entry *gl_push(struct gl_list *l)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		struct gl_entry *ne = realloc(l->e, nc * sizeof(*ne));
		if (!ne)
			return NULL;
		l->e = ne;
		l->cap = nc;
	}
	struct gl_entry *e = &l->e[l->n];
	memset(e, 0, sizeof(*e));
	return e;
}

/* Perl's \s on bytes (5.18+: \v too). */
static bool perl_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool has_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (perl_space((unsigned char)s[i]))
			return true;
	return false;
}

/* Digits runs separated by dots: count of runs (1..3 digits each), or 0 when s is not
 * that shape. */
static unsigned dotted_shape(const char *s, size_t n)
{
	unsigned parts = 0;
	size_t run = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && mx_ctype_is_digit((unsigned char)s[i])) {
			if (++run > 3)
				return 0;
			continue;
		}
		if (run == 0 || (i < n && s[i] != '.'))
			return 0;
		parts++;
		run = 0;
	}
	return parts;
}

/* One component as inet_aton() reads it: decimal, or octal with a leading zero. */
static bool aton_part(const char *s, size_t n, unsigned *out)
{
	unsigned base = n > 1 && s[0] == '0' ? 8 : 10, v = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (d >= base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

/* "a.b.c.d", "a.b.c" or "a.b" (dotted_shape() says so) into 4 bytes: the parts fill the
 * leading octets, the rest are zero, as NetAddr::IP->new("a.b.c", 24) yields a.b.c.0. */
static bool ipv4_parts(const char *s, size_t n, uint8_t out[4])
{
	memset(out, 0, 4);
	unsigned k = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		unsigned v;
		if (k >= 4 || !aton_part(s + start, i - start, &v) || v > 255)
			return false;
		out[k++] = (uint8_t)v;
		start = i + 1;
	}
	return true;
}

static bool gl_digits(const char *s, size_t n, unsigned maxlen, unsigned *out)
{
	if (n == 0 || n > maxlen)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!mx_ctype_is_digit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* A client line that looks like an address: 1 with the network, 0 when it does not look
 * like one (the next rule applies), -1 when it looks like one that NetAddr::IP rejects
 * (postgrey skips it silently). */
static int client_net(const char *s, size_t n, struct gl_entry *e)
{
	const char *slash = memchr(s, '/', n);
	size_t an = slash ? (size_t)(slash - s) : n;
	unsigned shape = dotted_shape(s, an);
	if (shape >= 2 && shape <= 4) {
		unsigned prefix = shape == 4 ? 32 : 24;
		if (slash) {
			/* only "a.b.c.d/NN" (one or two digits) has a prefix */
			if (shape != 4 || !gl_digits(slash + 1, n - an - 1, 2, &prefix))
				return 0;
		}
		e->net.family = AF_INET;
		if (!ipv4_parts(s, an, e->net.bytes) || prefix > 32)
			return -1;
		e->prefix = prefix;
		return 1;
	}
	/* /^.*\:.*\:.*(?:\/\d{1,3})?$/: two colons anywhere */
	const char *c1 = memchr(s, ':', n);
	if (!c1 || !memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - s)))
		return 0;
	char buf[64];
	unsigned prefix = 128;
	if (slash) {
		if (!gl_digits(slash + 1, n - an - 1, 3, &prefix))
			return -1;
	}
	if (an >= sizeof(buf))
		return -1;
	memcpy(buf, s, an);
	buf[an] = '\0';
	e->net.family = AF_INET6;
	if (inet_pton(AF_INET6, buf, e->net.bytes) != 1 || prefix > 128)
		return -1;
	e->prefix = prefix;
	return 1;
}

static int gl_regex(struct gl_entry *e, const char *s, size_t n, char *err, size_t errlen)
{
	int ec;
	PCRE2_SIZE off;
	e->kind = GL_REGEX;
	e->re = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_CASELESS, &ec, &off, NULL);
	if (e->re) {
		/* matched at every RCPT of every client: compiled to machine code where
		 * PCRE2 can (without JIT the interpreter matches the same) */
		(void)pcre2_jit_compile(e->re, PCRE2_JIT_COMPLETE);
	}
	if (!e->re) {
		PCRE2_UCHAR msg[200];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		return mx_errf(err, errlen, -EINVAL, "/%.*s/: %s at offset %zu", (int)n, s,
			       (const char *)msg, (size_t)off);
	}
	return 0;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* One line, trimmed and without its comment (n > 0). 0, a warning (1, with why), or a
 * negative errno with err. */
static int gl_line(struct greylist_allowlist *a, enum greylist_list list, const char *s,
		   size_t n, const char **why, char *err, size_t errlen)
{
	struct gl_list *l = &a->lists[list];
	struct gl_entry *e = gl_push(l);
	if (!e)
		return -ENOMEM;
	int rc = 0;
	/* /^\/(\S+)\/$/ */
	if (n >= 3 && s[0] == '/' && s[n - 1] == '/' && !has_space(s + 1, n - 2)) {
		rc = gl_regex(e, s + 1, n - 2, err, errlen);
		if (rc == 0)
			l->n++;
		return rc;
	}
	if (list == GREYLIST_LIST_CLIENTS) {
		int got = client_net(s, n, e);
		if (got != 0) {
			if (got > 0) {
				e->kind = GL_NET;
				l->n++;
			}
			return 0;
		}
		if (has_space(s, n)) {
			*why = "doesn't look like a hostname";
			return 1;
		}
		e->kind = GL_NAME;
		if (!(e->s = dupn(s, n)))
			return -ENOMEM;
		l->n++;
		return 0;
	}
	if (has_space(s, n)) {
		*why = "doesn't look like an address";
		return 1;
	}
	const char *at = memchr(s, '@', n);
	if (at && at + 1 < s + n) {
		e->kind = GL_USER_DOMAIN;
		e->s = dupn(s, (size_t)(at - s));
		e->d = dupn(at + 1, (size_t)(s + n - at - 1));
		if (!e->s || !e->d) {
			free(e->s);
			free(e->d);
			return -ENOMEM;
		}
	} else if (at) {
		e->kind = GL_USER;
		if (!(e->s = dupn(s, (size_t)(at - s))))
			return -ENOMEM;
	} else {
		e->kind = GL_DOMAIN;
		if (!(e->s = dupn(s, n)))
			return -ENOMEM;
	}
	l->n++;
	return 0;
}

int greylist_allowlist_add(struct greylist_allowlist *a, enum greylist_list list,
			   const char *text, size_t len,
			   void (*warn)(void *ctx, unsigned line, const char *why), void *ctx,
			   char *err, size_t errlen)
{
	if ((unsigned)list >= GREYLIST_LIST_MAX)
		return mx_errf(err, errlen, -EINVAL, "no such list");
	if (len > GREYLIST_FILE_MAX)
		return mx_errf(err, errlen, -E2BIG, "larger than %u bytes", GREYLIST_FILE_MAX);
	unsigned lineno = 0;
	for (size_t pos = 0; pos < len;) {
		const char *ls = text + pos;
		const char *nl = memchr(ls, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - ls) : len - pos;
		pos += ll + (nl ? 1 : 0);
		lineno++;
		/* s/#.*$//; s/^\s+//; s/\s+$//; next if $_ eq '' */
		const char *hash = memchr(ls, '#', ll);
		if (hash)
			ll = (size_t)(hash - ls);
		while (ll && perl_space((unsigned char)ls[0])) {
			ls++;
			ll--;
		}
		while (ll && perl_space((unsigned char)ls[ll - 1]))
			ll--;
		if (!ll)
			continue;
		const char *why = NULL;
		char e2[300];
		int rc = gl_line(a, list, ls, ll, &why, e2, sizeof(e2));
		if (rc < 0)
			return mx_errf(err, errlen, rc, "line %u: %s", lineno,
				       rc == -ENOMEM ? "out of memory" : e2);
		if (rc > 0 && warn)
			warn(ctx, lineno, why);
	}
	return 0;
}

int greylist_allowlist_load(struct greylist_allowlist *a, enum greylist_list list,
			    const char *path,
			    void (*warn)(void *ctx, unsigned line, const char *why), void *ctx,
			    char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mx_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return mx_errf(err, errlen, -EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > GREYLIST_FILE_MAX) {
		close(fd);
		return mx_errf(err, errlen, -E2BIG, "%s: larger than %u bytes", path,
			       GREYLIST_FILE_MAX);
	}
	size_t size = (size_t)st.st_size, got = 0;
	char *buf = malloc(size + 1);
	if (!buf) {
		close(fd);
		return mx_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	char why[400];
	int rc = greylist_allowlist_add(a, list, buf, got, warn, ctx, why, sizeof(why));
	free(buf);
	if (rc < 0)
		return mx_errf(err, errlen, rc, "%s: %s", path, why);
	return 0;
}

/* ---- matching ---- */

/* md: the caller's match data (one per call of a matcher, shared by its regexps: the
 * allowlist itself is shared by every worker and holds none). */
static bool re_match(const pcre2_code *re, const char *s, size_t n, pcre2_match_data *md)
{
	return md && pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL) >= 0;
}

/* s ends with suffix (ASCII case-insensitive), and the byte before it is `sep1` or `sep2`
 * (0: the start of s also counts). */
static bool ends_with(const char *s, size_t sl, const char *suffix, bool at_start, char sep1,
		      char sep2)
{
	size_t n = strlen(suffix);
	if (n > sl || strcasecmp(s + sl - n, suffix) != 0)
		return false;
	if (n == sl)
		return at_start;
	char c = s[sl - n - 1];
	return c == sep1 || c == sep2;
}

static bool net_within(const struct gl_entry *e, const struct mx_inet_addr *a)
{
	if (a->family != e->net.family)
		return false;
	unsigned bits = e->prefix;
	for (unsigned i = 0; bits > 0; i++) {
		unsigned take = bits >= 8 ? 8 : bits;
		uint8_t mask = (uint8_t)(0xff00u >> take);
		if ((a->bytes[i] & mask) != (e->net.bytes[i] & mask))
			return false;
		bits -= take;
	}
	return true;
}

bool greylist_allowlist_client(const struct greylist_allowlist *a, const char *name,
			       const struct mx_inet_addr *addr)
{
	const struct gl_list *l = &a->lists[GREYLIST_LIST_CLIENTS];
	size_t nl = strlen(name);
	pcre2_match_data *md = NULL;
	bool hit = false;
	for (size_t i = 0; i < l->n && !hit; i++) {
		const struct gl_entry *e = &l->e[i];
		if (e->kind == GL_NAME && ends_with(name, nl, e->s, true, '.', '.'))
			hit = true;
		else if (e->kind == GL_REGEX) {
			if (!md)
				md = pcre2_match_data_create(1, NULL);
			hit = re_match(e->re, name, nl, md);
		}
	}
	pcre2_match_data_free(md);
	if (hit)
		return true;
	for (size_t i = 0; addr && i < l->n; i++)
		if (l->e[i].kind == GL_NET && net_within(&l->e[i], addr))
			return true;
	return false;
}

/* ^USER(?:\+[^@]+)?@ at the start of rcpt; returns where the domain starts, or NULL. */
static const char *user_prefix(const char *rcpt, const char *user)
{
	size_t ul = strlen(user);
	if (strncasecmp(rcpt, user, ul) != 0)
		return NULL;
	const char *p = rcpt + ul;
	if (*p == '+') {
		const char *q = p + 1;
		while (*q && *q != '@')
			q++;
		if (q == p + 1 || *q != '@')
			return NULL;
		p = q;
	}
	return *p == '@' ? p + 1 : NULL;
}

bool greylist_allowlist_recipient(const struct greylist_allowlist *a, const char *rcpt)
{
	const struct gl_list *l = &a->lists[GREYLIST_LIST_RECIPIENTS];
	size_t rl = strlen(rcpt);
	pcre2_match_data *md = NULL;
	bool hit = false;
	for (size_t i = 0; i < l->n && !hit; i++) {
		const struct gl_entry *e = &l->e[i];
		const char *d;
		switch (e->kind) {
		case GL_REGEX:
			if (!md)
				md = pcre2_match_data_create(1, NULL);
			hit = re_match(e->re, rcpt, rl, md);
			break;
		case GL_USER_DOMAIN:
			/* the extension runs to the first '@' after it, so there is one
			 * way to match: the rest must be the domain */
			hit = (d = user_prefix(rcpt, e->s)) && strcasecmp(d, e->d) == 0;
			break;
		case GL_USER:
			hit = user_prefix(rcpt, e->s) != NULL;
			break;
		case GL_DOMAIN:
			hit = ends_with(rcpt, rl, e->s, false, '@', '.');
			break;
		case GL_NAME:
		case GL_NET:
		case GL_KIND_MAX:
			break;
		}
	}
	pcre2_match_data_free(md);
	return hit;
}
