/* memcache_table(5) configuration files (memcache_conf.h): the parameters of the manual's
 * MEMCACHE MAIN, KEY and ERROR CONTROLS sections, with its defaults, and the key
 * expansion of its key_format and domain parameters (as Postfix's db_common(3)). */
#include "tables/memcache_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "tables/memcache_proto.h"

void memcache_conf_init(struct memcache_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->memcache, sizeof(c->memcache), "inet:localhost:11211");
	c->ttl = 3600;
	snprintf(c->key_format, sizeof(c->key_format), "%%s");
	c->data_size_limit = 10240;
	c->line_size_limit = 1024;
	c->max_try = 2;
	c->retry_pause = 1;
	c->timeout = 2;
}

static bool memcache_conf_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* A number in [min, max]: 0 or -EINVAL with err. */
static int memcache_conf_number(const char *name, const char *v, uint32_t min, uint32_t max,
				uint32_t *out, unsigned line, char *err, size_t errlen)
{
	uint64_t n = 0;
	if (!*v)
		return mx_errf(err, errlen, -EINVAL, "line %u: %s: empty value", line, name);
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9' || n > UINT32_MAX)
			return mx_errf(err, errlen, -EINVAL, "line %u: %s: bad number \"%s\"",
				       line, name, v);
		n = n * 10 + (unsigned)(*p - '0');
	}
	if (n < min || n > max)
		return mx_errf(err, errlen, -EINVAL,
			       "line %u: %s = %s: out of range (%u..%u)", line, name, v, min, max);
	*out = (uint32_t)n;
	return 0;
}

/* key_format's expansions (memcache_table(5)): %%, %s, %u, %d, %S, %U, %D, %1..%9. */
static int memcache_conf_check_format(const char *f, unsigned line, char *err, size_t errlen)
{
	for (const char *p = f; *p; p++) {
		if (*p != '%')
			continue;
		p++;
		if (!*p || !strchr("%suSdUD123456789", *p))
			return mx_errf(err, errlen, -EINVAL,
				       "line %u: key_format: invalid expansion in \"%s\"", line, f);
	}
	return 0;
}

/* The domain list: names separated by commas or white space (as Postfix's match lists),
 * each possibly "!"-negated. Files and tables are refused. */
static int memcache_conf_domains(struct memcache_conf *c, const char *v, unsigned line,
				 char *err, size_t errlen)
{
	c->ndomains = 0;
	const char *p = v;
	while (*p) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		const char *start = p;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		size_t n = (size_t)(p - start);
		bool negate = false;
		if (*start == '!') {
			negate = true;
			start++;
			n--;
		}
		if (n == 0)
			return mx_errf(err, errlen, -EINVAL, "line %u: domain: empty entry", line);
		if (memchr(start, '/', n) || memchr(start, ':', n))
			return mx_errf(err, errlen, -EINVAL,
				       "line %u: domain: \"%.*s\": only domain names are supported "
				       "(not files or tables)", line, (int)n, start);
		if (n > MEMCACHE_CONF_DOMAIN_MAX)
			return mx_errf(err, errlen, -EINVAL, "line %u: domain: name too long",
				       line);
		if (c->ndomains == MEMCACHE_CONF_DOMAINS_MAX)
			return mx_errf(err, errlen, -E2BIG, "line %u: domain: more than %u names",
				       line, MEMCACHE_CONF_DOMAINS_MAX);
		struct memcache_conf_domain *d = &c->domain[c->ndomains++];
		d->negate = negate;
		memcpy(d->name, start, n);
		d->name[n] = '\0';
	}
	return 0;
}

/* Copy a string value with its bound. */
static int memcache_conf_string(char *dst, size_t cap, const char *name, const char *v,
				unsigned line, char *err, size_t errlen)
{
	size_t n = strlen(v);
	if (n >= cap)
		return mx_errf(err, errlen, -EINVAL, "line %u: %s: value longer than %zu bytes",
			       line, name, cap - 1);
	memcpy(dst, v, n + 1);
	return 0;
}

static int memcache_conf_set(struct memcache_conf *c, const char *name, const char *v,
			     unsigned line, char *err, size_t errlen)
{
	if (strcmp(name, "memcache") == 0) {
		if (!*v)
			return mx_errf(err, errlen, -EINVAL, "line %u: memcache: empty value",
				       line);
		return memcache_conf_string(c->memcache, sizeof(c->memcache), name, v, line,
					    err, errlen);
	}
	if (strcmp(name, "backup") == 0)
		return memcache_conf_string(c->backup, sizeof(c->backup), name, v, line, err,
					    errlen);
	if (strcmp(name, "key_format") == 0) {
		int rc = memcache_conf_check_format(v, line, err, errlen);
		if (rc < 0)
			return rc;
		if (!*v)
			return mx_errf(err, errlen, -EINVAL, "line %u: key_format: empty value",
				       line);
		return memcache_conf_string(c->key_format, sizeof(c->key_format), name, v, line,
					    err, errlen);
	}
	if (strcmp(name, "domain") == 0)
		return memcache_conf_domains(c, v, line, err, errlen);
	if (strcmp(name, "key_digest") == 0) {
		if (*v)
			return mx_errf(err, errlen, -EINVAL,
				       "line %u: key_digest is not supported", line);
		return 0;
	}
	static const struct {
		const char *name;
		size_t off;
		uint32_t min, max;
	} nums[] = {
		{ "flags", offsetof(struct memcache_conf, flags), 0, UINT32_MAX },
		/* over 30 days memcached takes an absolute time: sent as one */
		{ "ttl", offsetof(struct memcache_conf, ttl), 0, UINT32_MAX / 2 },
		{ "data_size_limit", offsetof(struct memcache_conf, data_size_limit), 1,
		  MEMCACHE_DATA_LIMIT },
		{ "line_size_limit", offsetof(struct memcache_conf, line_size_limit),
		  MEMCACHE_LINE_MIN, MEMCACHE_LINE_LIMIT },
		{ "max_try", offsetof(struct memcache_conf, max_try), 1, 100 },
		{ "retry_pause", offsetof(struct memcache_conf, retry_pause), 1, 3600 },
		{ "timeout", offsetof(struct memcache_conf, timeout), 1, 3600 },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		if (strcmp(name, nums[i].name) == 0)
			return memcache_conf_number(name, v, nums[i].min, nums[i].max,
						    (uint32_t *)(void *)((char *)c + nums[i].off),
						    line, err, errlen);
	return mx_errf(err, errlen, -EINVAL, "line %u: unknown parameter \"%s\"", line, name);
}

/* One logical line (comment and continuation lines already folded): "name = value". */
static int memcache_conf_entry(struct memcache_conf *c, char *s, unsigned line, char *err,
			       size_t errlen)
{
	char *eq = strchr(s, '=');
	if (!eq)
		return mx_errf(err, errlen, -EINVAL, "line %u: missing '=' after parameter name",
			       line);
	char *ne = eq;
	while (ne > s && memcache_conf_space(ne[-1]))
		ne--;
	*ne = '\0';
	char *v = eq + 1;
	while (memcache_conf_space(*v))
		v++;
	size_t vl = strlen(v);
	while (vl > 0 && memcache_conf_space(v[vl - 1]))
		v[--vl] = '\0';
	if (!*s)
		return mx_errf(err, errlen, -EINVAL, "line %u: missing parameter name", line);
	for (char *p = s; *p; p++)
		if (!mx_ctype_is_alnum((unsigned char)*p) && *p != '_')
			return mx_errf(err, errlen, -EINVAL, "line %u: bad parameter name \"%s\"",
				       line, s);
	return memcache_conf_set(c, s, v, line, err, errlen);
}

int memcache_conf_parse(struct memcache_conf *c, const char *text, size_t len, char *err,
			size_t errlen)
{
	if (len > MEMCACHE_CONF_TEXT_MAX)
		return mx_errf(err, errlen, -E2BIG, "file longer than %u bytes",
			       MEMCACHE_CONF_TEXT_MAX);
	if (memchr(text, '\0', len))
		return mx_errf(err, errlen, -EINVAL, "file holds a NUL byte");
	/* a logical line: at most a value's bound plus a name and its '=' */
	enum { LOGICAL_MAX = MEMCACHE_CONF_VALUE_MAX + 128 };
	char logical[LOGICAL_MAX + 1];
	size_t ll = 0;
	unsigned start_line = 0, lineno = 0;
	bool have = false;
	size_t pos = 0;
	while (pos <= len) {
		/* the physical line [pos, end) */
		const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
		size_t end = nl ? (size_t)(nl - text) : len;
		const char *p = text + pos;
		size_t n = end - pos;
		bool last = !nl;
		pos = end + 1;
		lineno++;
		if (last && n == 0)
			break;
		size_t i = 0;
		while (i < n && memcache_conf_space(p[i]))
			i++;
		bool blank = i == n;
		bool comment = !blank && p[i] == '#';
		if (blank || comment)
			continue; /* Postfix: they neither start nor end a logical line */
		if (i > 0 && have) {
			/* continuation: joined with one space */
			if (ll + 1 + (n - i) > LOGICAL_MAX)
				return mx_errf(err, errlen, -EINVAL, "line %u: line too long",
					       start_line);
			logical[ll++] = ' ';
			memcpy(logical + ll, p + i, n - i);
			ll += n - i;
			continue;
		}
		if (i > 0)
			return mx_errf(err, errlen, -EINVAL,
				       "line %u: continuation line without a parameter before it",
				       lineno);
		if (have) {
			logical[ll] = '\0';
			int rc = memcache_conf_entry(c, logical, start_line, err, errlen);
			if (rc < 0)
				return rc;
		}
		if (n > LOGICAL_MAX)
			return mx_errf(err, errlen, -EINVAL, "line %u: line too long", lineno);
		memcpy(logical, p, n);
		ll = n;
		have = true;
		start_line = lineno;
		if (last)
			break;
	}
	if (have) {
		logical[ll] = '\0';
		return memcache_conf_entry(c, logical, start_line, err, errlen);
	}
	return 0;
}

/* ---- keys ---- */

static bool memcache_conf_domain_listed(const struct memcache_conf *c, const char *domain)
{
	/* as a Postfix match list: the first entry that matches decides */
	for (unsigned i = 0; i < c->ndomains; i++)
		if (strcasecmp(c->domain[i].name, domain) == 0)
			return !c->domain[i].negate;
	return false;
}

/* Append n bytes; false when out of room. */
static bool memcache_conf_put(char *out, size_t cap, size_t *ol, const char *s, size_t n)
{
	if (*ol + n >= cap)
		return false;
	memcpy(out + *ol, s, n);
	*ol += n;
	return true;
}

long memcache_conf_key(const struct memcache_conf *c, const char *key, char *out, size_t cap)
{
	if (cap == 0)
		return -ENOBUFS;
	out[0] = '\0';
	size_t kl = strlen(key);
	if (kl == 0)
		return 0; /* "empty lookup key" */
	const char *at = strrchr(key, '@');
	const char *domain = at ? at + 1 : NULL;
	bool empty_user = at == key;
	if (c->ndomains) {
		/* db_common_check_domain(): user@domain, a user, a listed domain */
		if (!domain || empty_user || !memcache_conf_domain_listed(c, domain))
			return 0;
	}
	/* what the format needs of the key (db_common_parse(), db_common_expand()) */
	bool need_domain = false, need_user = false;
	unsigned nparts = 0;
	for (const char *p = c->key_format; *p; p++) {
		if (*p != '%' || !p[1])
			continue;
		char e = *++p;
		if (e == 'd' || e == 'D')
			need_domain = true;
		else if (e == 'u' || e == 'U')
			need_user = true;
		else if (e >= '1' && e <= '9') {
			need_domain = true;
			if (nparts < (unsigned)(e - '0'))
				nparts = (unsigned)(e - '0');
		}
	}
	if (need_domain && (!domain || !*domain))
		return 0;
	if (need_user && empty_user)
		return 0;
	/* the domain's labels, from the right: %1 is the last */
	const char *label[9];
	size_t label_len[9];
	if (nparts) {
		size_t dl = strlen(domain);
		unsigned got = 0;
		size_t e = dl;
		while (got < nparts) {
			size_t s = e;
			while (s > 0 && domain[s - 1] != '.')
				s--;
			if (s == e)
				return 0; /* an empty label among those needed */
			label[got] = domain + s;
			label_len[got] = e - s;
			got++;
			if (s == 0)
				break;
			e = s - 1;
		}
		if (got < nparts)
			return 0;
	}
	size_t ol = 0;
	for (const char *p = c->key_format; *p; p++) {
		bool ok;
		if (*p != '%' || !p[1]) {
			ok = memcache_conf_put(out, cap, &ol, p, 1);
		} else {
			char e = *++p;
			switch (e) {
			case '%':
				ok = memcache_conf_put(out, cap, &ol, "%", 1);
				break;
			case 's':
			case 'S':
				ok = memcache_conf_put(out, cap, &ol, key, kl);
				break;
			case 'u':
			case 'U':
				ok = memcache_conf_put(out, cap, &ol, key,
						       at ? (size_t)(at - key) : kl);
				break;
			case 'd':
			case 'D':
				ok = memcache_conf_put(out, cap, &ol, domain, strlen(domain));
				break;
			default: /* '1'..'9' (the parser let nothing else through) */
				if (e < '1' || e > '9')
					return 0;
				ok = memcache_conf_put(out, cap, &ol, label[e - '1'],
						       label_len[e - '1']);
				break;
			}
		}
		if (!ok)
			return cap > MEMCACHE_KEY_MAX ? 0 : -ENOBUFS; /* too long a key */
	}
	out[ol] = '\0';
	if (!memcache_key_valid(out, ol))
		return 0;
	return (long)ol;
}
