/* Network lists as Postfix's mynetworks (postconf(5) "mynetworks", match_list(3) with
 * cidr_match(3) patterns).
 *
 * Accepted entries, separated by commas and/or whitespace:
 *   192.0.2.7            one IPv4 address (/32)
 *   192.0.2.0/24         an IPv4 network
 *   [2001:db8::1]        one IPv6 address (/128), Postfix's bracket form
 *   [2001:db8::]/32      an IPv6 network, Postfix's form (also [2001:db8::/32])
 *   2001:db8::/32        the same without brackets (Postfix would take this for a table)
 *   !192.0.2.0/28        an exclusion: a match here means "not in the list"
 * As in Postfix, the first entry that matches decides, and an entry whose address has bits
 * set past the prefix length is an error ("non-null host address bits"), not silently
 * masked: 10.1.2.3/8 is almost always a typo for a /24 or /32.
 *
 * Host names, /file/name inclusions and type:table lookups need DNS or the table engine
 * and are refused with a message that says so. */
#include "tables/netlist.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"

struct netlist_entry {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix; /* 0..32 or 0..128 */
	bool negate;
	uint8_t net[16]; /* network order, host bits zero */
};

struct netlist {
	size_t count;
	struct netlist_entry *entries;
};

/* Longer than any address with brackets, a scope-free IPv6 text and a /128. */
#define NETLIST_TOKEN_MAX 128

/* "hash:/etc/postfix/x", "cidr:/x", "inline:{...}": a lookup table reference, as Postfix's
 * match_list recognizes it (a name of letters, digits, '_' or '-' before the first ':').
 * Only called for tokens that did not parse as an address, so "2001:db8::" never gets
 * here. */
static bool netlist_is_table(const char *tok)
{
	const char *colon = strchr(tok, ':');
	if (!colon || colon == tok)
		return false;
	for (const char *p = tok; p < colon; p++) {
		if (!mx_ctype_is_hostname(*p))
			return false;
	}
	return true;
}

static void netlist_mask(uint8_t *bytes, unsigned nbytes, unsigned prefix)
{
	for (unsigned i = 0; i < nbytes; i++) {
		unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
		bytes[i] &= (uint8_t)(bits == 0 ? 0 : 0xffu << (8 - bits));
	}
}

/* Parse one entry (without its '!'s). `tok` is a writable copy. */
static int netlist_parse_entry(char *tok, struct netlist_entry *e, char *err, size_t errlen)
{
	char *addr = tok;
	char *mask = NULL;
	char shown[NETLIST_TOKEN_MAX + 8];

	snprintf(shown, sizeof(shown), "%s", tok);
	if (*addr == '[') {
		char *close = strchr(addr, ']');
		if (!close)
			return mx_errf(err, errlen, -EINVAL, "missing ']' character after \"%s\"",
					    shown);
		*close = '\0';
		addr++;
		if (close[1] == '/') {
			mask = close + 2;
		} else if (close[1] != '\0') {
			return mx_errf(err, errlen, -EINVAL, "garbage after \"[%s]\"", addr);
		} else {
			/* [2001:db8::/32], the other bracket placement Postfix accepts. */
			char *slash = strchr(addr, '/');
			if (slash) {
				*slash = '\0';
				mask = slash + 1;
			}
		}
	} else {
		char *slash = strchr(addr, '/');
		if (slash) {
			*slash = '\0';
			mask = slash + 1;
		}
	}

	/* The family follows from the text as in Postfix: a ':' means IPv6. */
	bool v6 = strchr(addr, ':') != NULL;
	e->family = v6 ? AF_INET6 : AF_INET;
	unsigned bits = v6 ? 128 : 32;
	memset(e->net, 0, sizeof(e->net));

	if (*addr == '\0' || inet_pton(e->family, addr, e->net) != 1) {
		if (mask)
			return mx_errf(err, errlen, -EINVAL, "bad net/mask pattern: \"%s\"", shown);
		return mx_errf(err, errlen, -EINVAL, "bad address pattern: \"%s\"", shown);
	}

	if (!mask) {
		e->prefix = (uint8_t)bits;
		return 0;
	}
	/* Digits only (Postfix's alldig()); leading zeros aside, at most three of them, so
	 * the value cannot overflow. */
	size_t mlen = strlen(mask);
	const char *sig = mask + strspn(mask, "0");
	if (mlen == 0 || strspn(mask, "0123456789") != mlen || strlen(sig) > 3 ||
	    (unsigned)atoi(sig) > bits)
		return mx_errf(err, errlen, -EINVAL, "bad net/mask pattern: \"%s\"", shown);
	e->prefix = (uint8_t)atoi(sig);

	uint8_t masked[16];
	memcpy(masked, e->net, sizeof(masked));
	netlist_mask(masked, bits / 8, e->prefix);
	if (memcmp(masked, e->net, bits / 8) != 0) {
		char net[INET6_ADDRSTRLEN];
		inet_ntop(e->family, masked, net, sizeof(net));
		return mx_errf(err, errlen, -EINVAL,
				    "non-null host address bits in \"%s/%s\", "
				    "perhaps you should use \"%s%s%s/%u\" instead",
				    addr, mask, v6 ? "[" : "", net, v6 ? "]" : "",
				    (unsigned)e->prefix);
	}
	return 0;
}

int netlist_parse(const char *text, struct netlist **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	struct netlist *nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	if (!text)
		text = "";

	size_t cap = 0;
	const char *p = text, *start;
	size_t len;
	while ((len = mx_list_next(&p, &start)) > 0) {

		if (len > NETLIST_TOKEN_MAX) {
			mx_errf(err, errlen, -EINVAL, "bad address pattern: \"%.40s...\"", start);
			netlist_free(nl);
			return -EINVAL;
		}
		char tok[NETLIST_TOKEN_MAX + 1];
		memcpy(tok, start, len);
		tok[len] = '\0';

		bool negate = false;
		char *t = tok;
		while (*t == '!') {
			negate = !negate;
			t++;
		}

		int rc;
		struct netlist_entry e = { 0 };
		if (*t == '\0') {
			rc = mx_errf(err, errlen, -EINVAL, "no pattern after \"%s\"", tok);
		} else if (*t == '/') {
			rc = mx_errf(err, errlen, -EINVAL,
					  "\"%s\": /file/name patterns are not supported; "
					  "list the networks inline",
					  tok);
		} else {
			rc = netlist_parse_entry(t, &e, err, errlen);
			if (rc != 0) {
				/* Explain the common non-address forms better than "bad
				 * address". The entry parser wrote into t; rebuild it. */
				memcpy(tok, start, len);
				tok[len] = '\0';
				t = tok + strspn(tok, "!");
				if (*t != '[' && netlist_is_table(t))
					mx_errf(err, errlen, -EINVAL,
						     "\"%s\": table lookups (type:name) arrive "
						     "with the table engine; list the networks "
						     "inline for now",
						     t);
				else if (*t != '[' && !strchr(t, '/') &&
					 strspn(t, "0123456789.") != strlen(t) &&
					 strspn(t, "abcdefghijklmnopqrstuvwxyz"
						   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						   "0123456789.-_") == strlen(t))
					mx_errf(err, errlen, -EINVAL,
						     "\"%s\": host name patterns need DNS and are "
						     "not supported; use network addresses",
						     t);
			}
		}
		if (rc != 0) {
			netlist_free(nl);
			return rc;
		}
		e.negate = negate;

		if (nl->count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct netlist_entry *ne = realloc(nl->entries, ncap * sizeof(*ne));
			if (!ne) {
				netlist_free(nl);
				return -ENOMEM;
			}
			nl->entries = ne;
			cap = ncap;
		}
		nl->entries[nl->count++] = e;
	}
	*out = nl;
	return 0;
}

static bool netlist_entry_match(const struct netlist_entry *e, const struct mx_inet_addr *a)
{
	if (e->family != a->family)
		return false;
	unsigned full = e->prefix / 8, rest = e->prefix % 8;
	if (memcmp(e->net, a->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t m = (uint8_t)(0xffu << (8 - rest));
	return (a->bytes[full] & m) == e->net[full];
}

bool netlist_match(const struct netlist *nl, const struct mx_inet_addr *addr)
{
	if (!nl || !addr)
		return false;
	/* A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; Postfix matches them
	 * as the IPv4 address they carry. */
	struct mx_inet_addr a = mx_inet_unmap(addr);
	for (size_t i = 0; i < nl->count; i++)
		if (netlist_entry_match(&nl->entries[i], &a))
			return !nl->entries[i].negate;
	return false;
}

size_t netlist_count(const struct netlist *nl)
{
	return nl ? nl->count : 0;
}

void netlist_free(struct netlist *nl)
{
	if (!nl)
		return;
	free(nl->entries);
	free(nl);
}
