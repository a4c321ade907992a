/* access(5) lookup order; see table_access.h. */
#include "tables/table_access.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mxgate/inet.h"

static bool table_access_pattern_kind(const struct table *t)
{
	enum table_kind k = table_get_kind(t);
	return k == TABLE_KIND_CIDR || k == TABLE_KIND_REGEXP || k == TABLE_KIND_PCRE;
}

/* One lookup; partial keys are skipped on pattern tables. */
static int table_access_try(struct table *t, const char *key, bool partial,
			    const struct table_access_query *q)
{
	if (partial && table_access_pattern_kind(t))
		return 0;
	int rc = table_lookup(t, key, q->val, q->vallen);
	if (q->trace)
		q->trace(q->trace_ctx, key, rc, rc == 1 ? q->val : NULL);
	if (rc == 1 && q->matched && q->matchedlen)
		snprintf(q->matched, q->matchedlen, "%s", key);
	return rc;
}

/* The domain (first key `partial`), then its parents: Postfix's check_domain_access() loop,
 * so "mail.example.com" tries "example.com" and "com" with parent matching, ".example.com" and
 * ".com" without. */
static int table_access_domain_keys(struct table *t, const char *domain, bool partial,
				    const struct table_access_query *q)
{
	bool parent = q->opts ? q->opts->parent_matches_subdomains : true;
	const char *name = domain;
	while (*name) {
		int rc = table_access_try(t, name, partial, q);
		if (rc != 0)
			return rc;
		partial = true;
		const char *next = strchr(name + 1, '.');
		if (!next)
			break;
		name = parent ? next + 1 : next;
	}
	return 0;
}

int table_access_domain(struct table *t, const char *domain, const struct table_access_query *q)
{
	if (!domain || !*domain || strlen(domain) > TABLE_KEY_MAX)
		return 0;
	return table_access_domain_keys(t, domain, false, q);
}

size_t table_access_split(const char *local, size_t len, const char *delimiters)
{
	if (!delimiters || !*delimiters)
		return 0;
	if ((len == 10 && strncasecmp(local, "postmaster", 10) == 0) ||
	    (len == 13 && strncasecmp(local, "mailer-daemon", 13) == 0) ||
	    (len == 13 && strncasecmp(local, "double-bounce", 13) == 0))
		return 0;
	if (strchr(delimiters, '-')) {
		if (len >= 6 && strncasecmp(local, "owner-", 6) == 0)
			return 0;
		if (len > 8 && strncasecmp(local + len - 8, "-request", 8) == 0)
			return 0;
	}
	size_t n = 0;
	while (n < len && !strchr(delimiters, local[n]))
		n++;
	return n == 0 || n == len ? 0 : n;
}

int table_access_address(struct table *t, const char *address, const struct table_access_query *q)
{
	char key[TABLE_KEY_MAX + 2];
	if (!address || !*address) {
		const char *nk = q->opts && q->opts->null_key ? q->opts->null_key : "<>";
		return table_access_try(t, nk, false, q);
	}
	size_t alen = strlen(address);
	if (alen > TABLE_KEY_MAX - 1)
		return 0; /* no table key can be this long (the "user@" form adds nothing) */
	const char *at = strrchr(address, '@');
	size_t llen = at ? (size_t)(at - address) : alen;
	size_t base = table_access_split(address, llen, q->opts ? q->opts->recipient_delimiter : NULL);

	/* user+ext@domain (or the whole address) */
	int rc = table_access_try(t, address, false, q);
	if (rc != 0)
		return rc;
	/* user@domain */
	if (base) {
		snprintf(key, sizeof(key), "%.*s%s", (int)base, address, at ? at : "");
		if ((rc = table_access_try(t, key, true, q)) != 0)
			return rc;
	}
	/* domain and parents */
	if (at && at[1]) {
		if ((rc = table_access_domain_keys(t, at + 1, true, q)) != 0)
			return rc;
	}
	/* user+ext@, user@ */
	if (at) {
		snprintf(key, sizeof(key), "%.*s@", (int)llen, address);
		if ((rc = table_access_try(t, key, true, q)) != 0)
			return rc;
		if (base) {
			snprintf(key, sizeof(key), "%.*s@", (int)base, address);
			if ((rc = table_access_try(t, key, true, q)) != 0)
				return rc;
		}
	}
	return 0;
}

int table_access_client(struct table *t, const char *name, const char *addr,
			const struct table_access_query *q)
{
	int rc;
	if (name && *name && strlen(name) <= TABLE_KEY_MAX) {
		if ((rc = table_access_domain_keys(t, name, false, q)) != 0)
			return rc;
	}
	if (!addr || !*addr)
		return 0;
	struct mx_inet_addr a;
	char key[INET6_ADDRSTRLEN + 1];
	if (mx_inet_parse(addr, &a)) {
		a = mx_inet_unmap(&a);
		mx_inet_format(&a, key, sizeof(key));
	} else {
		/* Not numeric (should not happen for a client): look it up as given. */
		if (strlen(addr) >= sizeof(key))
			return 0;
		snprintf(key, sizeof(key), "%s", addr);
		a.family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	}
	char delim = a.family == AF_INET6 ? ':' : '.';
	bool partial = false;
	for (;;) {
		if ((rc = table_access_try(t, key, partial, q)) != 0)
			return rc;
		partial = true;
		char *cut = strrchr(key, delim);
		if (!cut)
			return 0;
		*cut = '\0';
		if (!key[0])
			return 0;
	}
}
