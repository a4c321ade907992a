/* Domain lists as Postfix's mydestination and relay_domains (postconf(5), match_list(3)
 * with match_hostname()).
 *
 * Entries, separated by commas and/or whitespace, compared without regard to case:
 *   example.com      that domain; with parent_matches_subdomains also every subdomain
 *   .example.com     every subdomain of example.com (not example.com itself)
 *   !example.com     an exclusion: a match here means "not in the list"
 * The first entry that matches decides, as in Postfix. A trailing dot on an entry or on the
 * looked-up name is ignored ("example.com." is "example.com").
 *
 * Entries must be host names (letters, digits, '-', '_' as Postfix's valid_hostname()
 * allows; labels of 1..63 characters; at most 255 in all). Internationalized names are
 * written in their ASCII (xn--) form. Lookup tables and /file/name inclusions arrive with
 * the table engine and are refused with a message that says so. */
#include "tables/domain_list.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"

struct domain_list_entry {
	char *name;           /* lower case, no leading or trailing dot */
	size_t len;
	bool subdomains_only; /* ".example.com" */
	bool negate;
};

struct domain_list {
	bool parent_matches_subdomains;
	size_t count;
	struct domain_list_entry *entries;
};

#define DOMAIN_NAME_MAX 255 /* as Postfix's VALID_HOSTNAME_LEN */
#define DOMAIN_LABEL_MAX 63 /* RFC 1035 2.3.4 */

/* Check a name (no leading dot, trailing dot already removed). Returns NULL when it is a
 * valid host name, otherwise why not. */
static const char *domain_name_problem(const char *name, size_t len, char *why, size_t whylen)
{
	if (len == 0)
		return "empty domain name";
	if (len > DOMAIN_NAME_MAX) {
		snprintf(why, whylen, "domain name longer than %d characters", DOMAIN_NAME_MAX);
		return why;
	}
	size_t label_start = 0;
	bool all_numeric = true;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '.') {
			size_t llen = i - label_start;
			if (llen == 0)
				return "empty label (\"..\" or a leading dot in the wrong place)";
			if (llen > DOMAIN_LABEL_MAX) {
				snprintf(why, whylen, "label longer than %d characters",
					 DOMAIN_LABEL_MAX);
				return why;
			}
			if (name[label_start] == '-' || name[i - 1] == '-')
				return "label starts or ends with '-'";
			label_start = i + 1;
			continue;
		}
		unsigned char c = (unsigned char)name[i];
		if (c >= 0x80)
			return "non-ASCII character (write internationalized names in their "
			       "xn-- form)";
		if (!mx_ctype_is_hostname(c)) {
			if (c < 0x20 || c == 0x7f)
				snprintf(why, whylen, "invalid character 0x%02x", c);
			else
				snprintf(why, whylen, "invalid character '%c'", c);
			return why;
		}
		if (!mx_ctype_is_digit(c))
			all_numeric = false;
	}
	/* Postfix's valid_hostname() refuses all-numeric names: they are addresses. */
	if (all_numeric)
		return "numeric name (an address is not a domain)";
	return NULL;
}

/* "hash:/etc/postfix/relay_domains": a table reference, as Postfix's match_list sees it. */
static bool domain_is_table(const char *tok, size_t len)
{
	const char *colon = memchr(tok, ':', len);
	if (!colon || colon == tok)
		return false;
	for (const char *p = tok; p < colon; p++)
		if (!mx_ctype_is_hostname(*p))
			return false;
	return true;
}

void domain_list_free(struct domain_list *dl)
{
	if (!dl)
		return;
	for (size_t i = 0; i < dl->count; i++)
		free(dl->entries[i].name);
	free(dl->entries);
	free(dl);
}

int domain_list_parse(const char *text, bool parent_matches_subdomains,
		      struct domain_list **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	struct domain_list *dl = calloc(1, sizeof(*dl));
	if (!dl)
		return -ENOMEM;
	dl->parent_matches_subdomains = parent_matches_subdomains;
	if (!text)
		text = "";

	size_t cap = 0;
	const char *p = text, *tok;
	size_t len;
	while ((len = mx_list_next(&p, &tok)) > 0) {
		/* For messages: long junk is shown cut short. */
		int shown = len > 80 ? 80 : (int)len;
		const char *more = len > 80 ? "..." : "";

		const char *name = tok;
		size_t nlen = len;
		bool negate = false;
		while (nlen > 0 && *name == '!') {
			negate = !negate;
			name++;
			nlen--;
		}
		if (nlen == 0) {
			mx_errf(err, errlen, -EINVAL, "no pattern after \"%.*s\"", shown, tok);
			goto fail;
		}
		if (*name == '/') {
			mx_errf(err, errlen, -EINVAL,
					 "\"%.*s%s\": /file/name patterns are not supported; list "
					 "the domains inline",
					 shown, tok, more);
			goto fail;
		}
		if (domain_is_table(name, nlen)) {
			mx_errf(err, errlen, -EINVAL,
					 "\"%.*s%s\": table lookups (type:name) arrive with the "
					 "table engine; list the domains inline for now",
					 shown, tok, more);
			goto fail;
		}
		bool subdomains_only = false;
		if (*name == '.') {
			subdomains_only = true;
			name++;
			nlen--;
		}
		if (nlen > 0 && name[nlen - 1] == '.')
			nlen--;

		char why[96];
		const char *problem = domain_name_problem(name, nlen, why, sizeof(why));
		if (problem) {
			mx_errf(err, errlen, -EINVAL, "bad domain \"%.*s%s\": %s", shown, tok, more,
					 problem);
			goto fail;
		}

		if (dl->count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct domain_list_entry *ne = realloc(dl->entries, ncap * sizeof(*ne));
			if (!ne)
				goto nomem;
			dl->entries = ne;
			cap = ncap;
		}
		char *copy = malloc(nlen + 1);
		if (!copy)
			goto nomem;
		for (size_t i = 0; i < nlen; i++)
			copy[i] = mx_ctype_lower(name[i]);
		copy[nlen] = '\0';
		dl->entries[dl->count++] = (struct domain_list_entry){
			.name = copy,
			.len = nlen,
			.subdomains_only = subdomains_only,
			.negate = negate,
		};
	}
	*out = dl;
	return 0;

nomem:
	domain_list_free(dl);
	return -ENOMEM;
fail:
	domain_list_free(dl);
	return -EINVAL;
}

static bool domain_tail_eq(const char *d, size_t dlen, const char *name, size_t nlen)
{
	if (dlen < nlen)
		return false;
	const char *tail = d + dlen - nlen;
	for (size_t i = 0; i < nlen; i++)
		if (mx_ctype_lower(tail[i]) != name[i])
			return false;
	return true;
}

bool domain_list_match(const struct domain_list *dl, struct mx_span domain)
{
	if (!dl || !domain.ptr)
		return false;
	/* One trailing dot names the same domain; two, or an empty name, name nothing (as
	 * Postfix's resolve_local()). */
	size_t len = domain.len;
	if (len > 0 && domain.ptr[len - 1] == '.')
		len--;
	if (len == 0 || domain.ptr[len - 1] == '.')
		return false;

	for (size_t i = 0; i < dl->count; i++) {
		const struct domain_list_entry *e = &dl->entries[i];
		bool exact = len == e->len && domain_tail_eq(domain.ptr, len, e->name, e->len);
		/* "sub.example.com" ends with ".example.com", with at least one character
		 * before the dot. */
		bool sub = len > e->len + 1 && domain.ptr[len - e->len - 1] == '.' &&
			   domain_tail_eq(domain.ptr, len, e->name, e->len);
		bool hit = e->subdomains_only ? sub
					      : (exact || (dl->parent_matches_subdomains && sub));
		if (hit)
			return !e->negate;
	}
	return false;
}

size_t domain_list_count(const struct domain_list *dl)
{
	return dl ? dl->count : 0;
}
