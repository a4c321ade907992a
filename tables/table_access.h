/* The access(5) lookup order on top of a table (what smtpd's check_*_access do):
 *
 * address `user+ext@domain`: `user+ext@domain`, `user@domain`, `domain` and its parent
 *   domains (`example.com` for `mail.example.com` with parent_domain_matches_subdomains, which
 *   lists smtpd_access_maps by default; `.example.com` without it), `user+ext@`, `user@`.
 *   The null sender is looked up as `<>` (smtpd_null_access_lookup_key).
 * domain: the domain, then its parents as above.
 * client: the host name and its parents, then the address: IPv4 `a.b.c.d`, `a.b.c`, `a.b`, `a`;
 *   IPv6 in compressed form, dropping the last `:` group each time (`2001:db8::1`,
 *   `2001:db8:`, `2001:db8`, `2001`).
 *
 * Only the first key of each kind (the whole address, the whole domain, the whole name, the
 * whole client address) is given to pattern tables (cidr, regexp, pcre); the partial keys go to
 * exact tables only (hash, inline, static), as Postfix's FULL/PARTIAL lookup flags do.
 * The first key found ends the search, whatever its value: a matched DUNNO is returned like
 * any other value, so the caller stops looking at shorter keys.
 *
 * Returns 1 (value in val, matched key in matched), 0 (no key matched) or a negative errno
 * from table_lookup() (an error stops the search: it must never become "not found"). */
#ifndef MXGATE_TABLES_TABLE_ACCESS_H
#define MXGATE_TABLES_TABLE_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "tables/tables_env.h"

struct table_access_opts {
	/* recipient_delimiter: a set of characters, any of which starts the extension; NULL or
	 * "" for none (Postfix's default). */
	const char *recipient_delimiter;
	/* parent_domain_matches_subdomains lists smtpd_access_maps (Postfix's default: true). */
	bool parent_matches_subdomains;
	/* smtpd_null_access_lookup_key; NULL means "<>". */
	const char *null_key;
};

/* Called for every key tried, with its result (1, 0 or <0) and value (NULL unless 1). */
typedef void table_access_trace_fn(void *ctx, const char *key, int result, const char *value);

struct table_access_query {
	const struct table_access_opts *opts;
	char *val; /* TABLE_VALUE_MAX + 1 bytes fit every value */
	size_t vallen;
	char *matched; /* may be NULL; TABLE_KEY_MAX + 1 bytes fit every key */
	size_t matchedlen;
	table_access_trace_fn *trace; /* may be NULL */
	void *trace_ctx;
};

int table_access_address(struct table *t, const char *address, const struct table_access_query *q);
int table_access_domain(struct table *t, const char *domain, const struct table_access_query *q);
/* name may be NULL or empty (no name); addr a numeric IPv4/IPv6 address (an IPv4-mapped IPv6
 * address is looked up as the IPv4 address, as smtpd sees such clients), or NULL. */
int table_access_client(struct table *t, const char *name, const char *addr,
			const struct table_access_query *q);

/* Postfix's split_addr(): the length of the local part before its extension, or 0 when the
 * local part is not split (no delimiter, a delimiter first, postmaster, mailer-daemon,
 * owner-* and *-request with '-' as a delimiter). */
size_t table_access_split(const char *local, size_t len, const char *delimiters);

#endif
