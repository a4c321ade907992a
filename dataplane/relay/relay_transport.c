/* transport(5) lookups and next-hop parsing; see relay_transport.h.
 *
 * Sources of the rules below (Postfix 3.x, as Debian ships it):
 * - trivial-rewrite/transport.c, transport_lookup(): mail_addr_find_strategy() with
 *   MA_FIND_FULL | MA_FIND_NOEXT | MA_FIND_DOMAIN and MA_FIND_PDMS or MA_FIND_PDDMDS
 *   (match_parent_style(transport_maps)), then the `*` wildcard; no `user@` lookup.
 * - global/mail_addr_find.c, mail_addr_find_opt(): the full address is looked up FULL (every
 *   table), the extension-stripped address and the domain keys PARTIAL (DICT_FLAG_FIXED:
 *   tables whose keys are fixed strings only, so never regexp/pcre/cidr). transport.c looks
 *   `*` up FULL. transport(5): "Each pattern is a regular expression that is applied to the
 *   entire address being looked up. Thus, some.domain.hierarchy is not looked up via its
 *   parent domains, nor is user+foo@domain looked up as user@domain."
 * - util/maps.c, maps_find(): each KEY is tried in every table of the list before the next
 *   (shorter) key, so a `user@domain` entry of the second table beats a `domain` entry of the
 *   first; a table error stops the search; an empty result is an error ("... should return
 *   NO RESULT in case of NOT FOUND"), not a match and not "not found".
 * - transport.c, update_entry(): an `error`/`retry` result with an empty next hop gets the
 *   text "Address is undeliverable".
 * - error/error.c: the next hop is the reason, with an optional RFC 3463 status in front
 *   (global/dsn_util.c, dsn_split()/dsn_valid()); default 5.0.0 for error, 4.0.0 for retry.
 *   discard/discard.c does the same with 2.0.0.
 * - smtp(8) "SMTP DESTINATION SYNTAX" / "LMTP DESTINATION SYNTAX": [address]:port, IPv6 as
 *   [ipv6:address]; lmtp takes inet:host[:port] or unix:pathname; default ports smtp and
 *   lmtp (24, lmtp_tcp_port); known_tcp_ports (Postfix 3.6) maps lmtp=24, smtp=25,
 *   smtps=submissions=465, submission=587 before asking services(5).
 */
#include "dataplane/relay/relay_transport.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mxgate/errf.h"
#include "mxgate/inet.h"
#include "tables/table_access.h"

static const char *const relay_transport_kind_names[RELAY_TRANSPORT_KIND_MAX] = {
	[RELAY_TRANSPORT_SMTP] = "smtp",
	[RELAY_TRANSPORT_LMTP] = "lmtp",
	[RELAY_TRANSPORT_ERROR] = "error",
	[RELAY_TRANSPORT_RETRY] = "retry",
	[RELAY_TRANSPORT_DISCARD] = "discard",
};

const char *relay_transport_kind_name(enum relay_transport_kind k)
{
	return (unsigned)k < RELAY_TRANSPORT_KIND_MAX ? relay_transport_kind_names[k] : "unknown";
}

/* Transport names of master.cf that this gateway implements. `relay` is Postfix's stock
 * second smtp(8) entry (relay_transport), so it means SMTP too. Case matters, as it does for
 * master.cf service names. */
static const struct {
	const char *name;
	enum relay_transport_kind kind;
} relay_transport_names[] = {
	{ "smtp", RELAY_TRANSPORT_SMTP },	{ "relay", RELAY_TRANSPORT_SMTP },
	{ "lmtp", RELAY_TRANSPORT_LMTP },	{ "error", RELAY_TRANSPORT_ERROR },
	{ "retry", RELAY_TRANSPORT_RETRY },	{ "discard", RELAY_TRANSPORT_DISCARD },
};

/* Postfix's update_entry() text for an error/retry result without a reason. */
#define RELAY_TRANSPORT_DEFAULT_REASON "Address is undeliverable"

#define SPOOL_SMTP_PORT 25
#define SPOOL_LMTP_PORT 24 /* lmtp_tcp_port */
#define SPOOL_HOST_MAX 255 /* a next-hop host, brackets excluded */

static bool spool_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Postfix's dsn_valid(): "x.y.z" with x in {2,4,5}, y and z 1-3 digits, followed by the end
 * or white space. Returns its length or 0. */
static size_t relay_dsn_valid(const char *s)
{
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	size_t i = 2, n = 0;
	while (isdigit((unsigned char)s[i]) && n < 4)
		i++, n++;
	if (n < 1 || n > 3 || s[i] != '.')
		return 0;
	i++;
	n = 0;
	while (isdigit((unsigned char)s[i]) && n < 4)
		i++, n++;
	if (n < 1 || n > 3 || (s[i] != '\0' && !spool_is_space(s[i])))
		return 0;
	return i;
}

/* Copy at most dstlen - 1 bytes of src, never ending in the middle of a UTF-8 sequence. */
static void spool_copy_text(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);
	if (n >= dstlen) {
		n = dstlen - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* error/retry/discard: "[x.y.z] text" as dsn_split() reads it. An empty reason becomes
 * Postfix's "Address is undeliverable" for error and retry (update_entry() does that for an
 * empty next hop; we also do it for a bare status such as "error:5.1.1", where Postfix would
 * bounce with an empty text). A reason longer than the field is cut (it is only text). */
static void relay_nexthop_reason(struct relay_nexthop *out, const char *hop)
{
	const char *def = out->kind == RELAY_TRANSPORT_ERROR ? "5.0.0"
			  : out->kind == RELAY_TRANSPORT_RETRY ? "4.0.0"
							       : "2.0.0";
	while (spool_is_space(*hop))
		hop++;
	size_t n = relay_dsn_valid(hop);
	if (n) {
		memcpy(out->status, hop, n);
		out->status[n] = '\0';
		hop += n;
	} else {
		snprintf(out->status, sizeof(out->status), "%s", def);
	}
	while (spool_is_space(*hop))
		hop++;
	if (!*hop && out->kind != RELAY_TRANSPORT_DISCARD)
		hop = RELAY_TRANSPORT_DEFAULT_REASON;
	spool_copy_text(out->text, sizeof(out->text), hop);
	snprintf(out->name, sizeof(out->name), "none");
	snprintf(out->key, sizeof(out->key), "%s", relay_transport_kind_name(out->kind));
}

/* A port: decimal 1-65535, or a service name (known_tcp_ports first, as Postfix 3.6+ does,
 * then services(5) through getservbyname_r, which unlike getservbyname is thread-safe). */
static int spool_port_parse(const char *s, size_t len, uint16_t *port, char *err, size_t errlen)
{
	if (len == 0)
		return mx_errf(err, errlen, -EINVAL, "empty port after ':'");
	if (len > 32)
		return mx_errf(err, errlen, -EINVAL, "port \"%.32s...\" is too long", s);
	char name[33];
	memcpy(name, s, len);
	name[len] = '\0';
	bool digits = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!isdigit(c))
			digits = false;
		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return mx_errf(err, errlen, -EINVAL, "bad port \"%s\"", name);
	}
	if (!digits && !isalpha((unsigned char)name[0]))
		return mx_errf(err, errlen, -EINVAL, "bad port \"%s\"", name);
	if (digits) {
		unsigned long v = 0;
		for (size_t i = 0; i < len && v <= 65535; i++)
			v = v * 10 + (unsigned long)(name[i] - '0');
		if (v < 1 || v > 65535)
			return mx_errf(err, errlen, -EINVAL, "port %s is out of range (1-65535)",
				       name);
		*port = (uint16_t)v;
		return 0;
	}
	static const struct {
		const char *name;
		uint16_t port;
	} known[] = {
		{ "lmtp", 24 },	       { "smtp", 25 },	      { "smtps", 465 },
		{ "submissions", 465 }, { "submission", 587 },
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(name, known[i].name) == 0) {
			*port = known[i].port;
			return 0;
		}
	}
	struct servent se, *res = NULL;
	char buf[1024];
	if (getservbyname_r(name, "tcp", &se, buf, sizeof(buf), &res) == 0 && res) {
		*port = ntohs((uint16_t)res->s_port);
		if (*port)
			return 0;
	}
	return mx_errf(err, errlen, -EINVAL, "unknown service \"%s\" (not a number, not in "
		       "/etc/services)", name);
}

/* Name and key of an SMTP/LMTP destination from kind and addr (see the header). */
static void relay_nexthop_describe(struct relay_nexthop *out)
{
	const char *proto = relay_transport_kind_name(out->kind);
	if (out->addr.ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&out->addr;
		snprintf(out->name, sizeof(out->name), "%s", un->sun_path);
		snprintf(out->key, sizeof(out->key), "%s:unix:%s", proto, un->sun_path);
		return;
	}
	char a[INET6_ADDRSTRLEN];
	unsigned port;
	if (out->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&out->addr;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		port = ntohs(s6->sin6_port);
		snprintf(out->key, sizeof(out->key), "%s:[%s]:%u", proto, a, port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&out->addr;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		port = ntohs(s4->sin_port);
		snprintf(out->key, sizeof(out->key), "%s:%s:%u", proto, a, port);
	}
	/* Postfix's relay= form, host[address]:port; our host is the address itself. */
	snprintf(out->name, sizeof(out->name), "%s[%s]:%u", a, a, port);
}

static void relay_nexthop_set_inet(struct relay_nexthop *out, const struct mx_inet_addr *a,
				   uint16_t port)
{
	memset(&out->addr, 0, sizeof(out->addr));
	if (a->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		memcpy(&s4->sin_addr, a->bytes, 4);
		out->addrlen = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->bytes, 16);
		out->addrlen = sizeof(*s6);
	}
	relay_nexthop_describe(out);
}

/* Could s be a host name (letters, digits, '-', '_', '.')? Then it is refused because it
 * needs DNS, not because it is malformed. */
static bool spool_hostname_like(const char *s, size_t len)
{
	if (len == 0)
		return false;
	bool alpha = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalpha(c))
			alpha = true;
		else if (!isdigit(c) && c != '-' && c != '.' && c != '_')
			return false;
	}
	return alpha;
}

/* A TCP destination: [address], [address]:port, [ipv6:address][:port], address[:port]
 * (IPv4 only without brackets: "2001:db8::1:25" has no unambiguous port). */
static int spool_hop_inet(const char *hop, size_t len, uint16_t dflt_port,
			  struct relay_nexthop *out, char *err, size_t errlen)
{
	const char *host, *rest;
	size_t hlen, rlen;
	bool bracket = len > 0 && hop[0] == '[';
	if (bracket) {
		const char *close = memchr(hop, ']', len);
		if (!close)
			return mx_errf(err, errlen, -EINVAL, "next hop \"%.*s\": '[' without ']'",
				       (int)len, hop);
		host = hop + 1;
		hlen = (size_t)(close - host);
		rest = close + 1;
		rlen = len - (size_t)(rest - hop);
		if (hlen >= 5 && strncasecmp(host, "ipv6:", 5) == 0)
			host += 5, hlen -= 5;
		if (rlen > 0 && rest[0] != ':')
			return mx_errf(err, errlen, -EINVAL,
				       "next hop \"%.*s\": only \":port\" may follow ']'", (int)len,
				       hop);
	} else {
		const char *colon = memchr(hop, ':', len);
		if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - hop)))
			return mx_errf(err, errlen, -EINVAL,
				       "next hop \"%.*s\": an IPv6 address must be in brackets, "
				       "[ipv6:address] or [address]",
				       (int)len, hop);
		host = hop;
		hlen = colon ? (size_t)(colon - hop) : len;
		rest = colon ? colon : hop + len;
		rlen = len - hlen;
	}
	if (hlen == 0)
		return mx_errf(err, errlen, -EINVAL, "next hop \"%.*s\": no host", (int)len, hop);
	if (hlen > SPOOL_HOST_MAX)
		return mx_errf(err, errlen, -EINVAL, "next hop \"%.64s...\": host is too long",
			       hop);
	uint16_t port = dflt_port;
	if (rlen > 0) {
		int rc = spool_port_parse(rest + 1, rlen - 1, &port, err, errlen);
		if (rc < 0)
			return rc;
	}
	char h[SPOOL_HOST_MAX + 1];
	memcpy(h, host, hlen);
	h[hlen] = '\0';
	struct mx_inet_addr a;
	if (!mx_inet_parse(h, &a) || (!bracket && a.family != AF_INET)) {
		if (spool_hostname_like(h, hlen))
			return mx_errf(err, errlen, -EINVAL,
				       "next hop \"%.*s\" is a host name: it needs DNS (%s), "
				       "which mxgate does not do; give a numeric address such "
				       "as [192.0.2.1]:25",
				       (int)len, hop,
				       bracket ? "an address lookup" : "an MX lookup");
		return mx_errf(err, errlen, -EINVAL, "next hop \"%.*s\": \"%s\" is not a numeric "
			       "IPv4 or IPv6 address", (int)len, hop, h);
	}
	relay_nexthop_set_inet(out, &a, port);
	return 0;
}

/* lmtp:unix:/path. Postfix takes a path relative to its queue directory; mxgate has none,
 * so the path must be absolute. */
static int spool_hop_unix(const char *path, size_t len, struct relay_nexthop *out, char *err,
			  size_t errlen)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&out->addr;
	if (len == 0)
		return mx_errf(err, errlen, -EINVAL, "unix: next hop without a path");
	if (path[0] != '/')
		return mx_errf(err, errlen, -EINVAL, "unix:%.*s: the socket path must be absolute",
			       (int)(len > 64 ? 64 : len), path);
	if (len >= sizeof(un->sun_path))
		return mx_errf(err, errlen, -EINVAL,
			       "unix:%.64s...: the socket path is longer than %zu bytes", path,
			       sizeof(un->sun_path) - 1);
	memset(&out->addr, 0, sizeof(out->addr));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, len);
	un->sun_path[len] = '\0';
	out->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	relay_nexthop_describe(out);
	return 0;
}

/* An SMTP or LMTP next hop (trimmed, non-empty). */
static int spool_hop_parse(enum relay_transport_kind kind, const char *hop, size_t len,
			   struct relay_nexthop *out, char *err, size_t errlen)
{
	for (size_t i = 0; i < len; i++) {
		if (hop[i] == ',' || spool_is_space(hop[i]))
			return mx_errf(err, errlen, -EINVAL,
				       "next hop \"%.*s\": a list of destinations is not supported "
				       "(give one)",
				       (int)(len > 128 ? 128 : len), hop);
	}
	bool unix_prefix = len >= 5 && strncmp(hop, "unix:", 5) == 0;
	bool inet_prefix = len >= 5 && strncmp(hop, "inet:", 5) == 0;
	if (kind == RELAY_TRANSPORT_SMTP && (unix_prefix || inet_prefix))
		return mx_errf(err, errlen, -EINVAL,
			       "next hop \"%.*s\": unix: and inet: are LMTP syntax (lmtp:%.*s)",
			       (int)(len > 128 ? 128 : len), hop, (int)(len > 128 ? 128 : len), hop);
	if (unix_prefix)
		return spool_hop_unix(hop + 5, len - 5, out, err, errlen);
	if (inet_prefix)
		hop += 5, len -= 5;
	return spool_hop_inet(hop, len, kind == RELAY_TRANSPORT_LMTP ? SPOOL_LMTP_PORT
								     : SPOOL_SMTP_PORT,
			      out, err, errlen);
}

static bool spool_kind_connects(enum relay_transport_kind k)
{
	return k == RELAY_TRANSPORT_SMTP || k == RELAY_TRANSPORT_LMTP;
}

int relay_nexthop_parse(const char *value, const struct relay_nexthop *dflt,
			struct relay_nexthop *out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!value)
		return mx_errf(err, errlen, -EINVAL, "no value");
	size_t vlen = strnlen(value, TABLE_VALUE_MAX + 1);
	if (vlen > TABLE_VALUE_MAX)
		return mx_errf(err, errlen, -EINVAL, "value longer than %u bytes", TABLE_VALUE_MAX);
	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)value[i];
		/* The reason of error/retry goes into logs and DSNs: no CR, LF or other control
		 * characters may ride along. */
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return mx_errf(err, errlen, -EINVAL,
				       "control character 0x%02x at offset %zu (not printed)", c, i);
	}
	/* transport(5): "transport:nexthop", split at the first ':' (transport.c,
	 * parse_transport_entry()); no ':' is a transport with an empty next hop. */
	const char *colon = memchr(value, ':', vlen);
	size_t tlen = colon ? (size_t)(colon - value) : vlen;
	const char *hop = colon ? colon + 1 : value + vlen;

	enum relay_transport_kind kind;
	if (tlen == 0) {
		if (!dflt)
			return mx_errf(err, errlen, -EINVAL,
				       "\"%.64s\": no transport and no default destination", value);
		kind = dflt->kind;
	} else {
		size_t i, n = sizeof(relay_transport_names) / sizeof(relay_transport_names[0]);
		for (i = 0; i < n; i++) {
			if (strlen(relay_transport_names[i].name) == tlen &&
			    memcmp(relay_transport_names[i].name, value, tlen) == 0)
				break;
		}
		if (i == n)
			return mx_errf(err, errlen, -EINVAL,
				       "unknown transport \"%.*s\" (mxgate delivers with smtp, relay, "
				       "lmtp, error, retry and discard only)",
				       (int)(tlen > 64 ? 64 : tlen), value);
		kind = relay_transport_names[i].kind;
	}

	/* ":" (or nothing after it) is transport(5)'s "do not change". */
	if (tlen == 0 && !hop[strspn(hop, " \t")]) {
		*out = *dflt;
		return 0;
	}
	struct relay_nexthop tmp;
	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = kind;
	if (!spool_kind_connects(kind)) {
		relay_nexthop_reason(&tmp, hop);
		*out = tmp;
		return 0;
	}

	/* SMTP/LMTP: trim the next hop (table values may carry blanks after the ':'). */
	size_t hlen = vlen - (size_t)(hop - value);
	while (hlen && spool_is_space(*hop))
		hop++, hlen--;
	while (hlen && spool_is_space(hop[hlen - 1]))
		hlen--;
	if (hlen == 0) {
		/* "smtp:" changes only the transport. Postfix would then use the recipient
		 * domain (MX lookups); we have no DNS, so the default destination's address
		 * stands in for it. */
		if (!dflt || !spool_kind_connects(dflt->kind) || dflt->addrlen == 0)
			return mx_errf(err, errlen, -EINVAL,
				       "\"%.64s\" has no next hop and there is no default address "
				       "(Postfix would look up the recipient domain, which needs "
				       "DNS; mxgate does not do DNS)",
				       value);
		if (kind == RELAY_TRANSPORT_SMTP && dflt->addr.ss_family == AF_UNIX)
			return mx_errf(err, errlen, -EINVAL,
				       "\"%.64s\": the default destination is a UNIX-domain socket, "
				       "which only lmtp can use",
				       value);
		tmp.addr = dflt->addr;
		tmp.addrlen = dflt->addrlen;
		relay_nexthop_describe(&tmp);
		*out = tmp;
		return 0;
	}
	int rc = spool_hop_parse(kind, hop, hlen, &tmp, err, errlen);
	if (rc < 0)
		return rc;
	*out = tmp;
	return 0;
}

int relay_nexthop_from_relayhost(const char *relayhost, bool lmtp, struct relay_nexthop *out,
				 char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!relayhost)
		return mx_errf(err, errlen, -EINVAL, "relayhost is not set");
	size_t len = strnlen(relayhost, TABLE_VALUE_MAX + 1);
	if (len > TABLE_VALUE_MAX)
		return mx_errf(err, errlen, -EINVAL, "relayhost is longer than %u bytes",
			       TABLE_VALUE_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)relayhost[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return mx_errf(err, errlen, -EINVAL, "relayhost: control character 0x%02x",
				       c);
	}
	const char *hop = relayhost;
	while (len && spool_is_space(*hop))
		hop++, len--;
	while (len && spool_is_space(hop[len - 1]))
		len--;
	if (len == 0)
		return mx_errf(err, errlen, -EINVAL, "relayhost is empty");
	struct relay_nexthop tmp;
	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = lmtp ? RELAY_TRANSPORT_LMTP : RELAY_TRANSPORT_SMTP;
	int rc = spool_hop_parse(tmp.kind, hop, len, &tmp, err, errlen);
	if (rc < 0)
		return rc;
	*out = tmp;
	return 0;
}

static bool spool_table_is_pattern(const struct table *t)
{
	enum table_kind k = table_get_kind(t);
	return k == TABLE_KIND_REGEXP || k == TABLE_KIND_PCRE || k == TABLE_KIND_CIDR;
}

/* maps_find(): one key in every table, in order. partial keys skip pattern tables. */
static int relay_transport_find(struct table *const *maps, size_t nmaps, const char *key,
				bool partial, char *val, size_t vallen, char *matched,
				size_t matchedlen)
{
	if (!*key)
		return 0; /* maps_find() never looks up an empty key */
	for (size_t i = 0; i < nmaps; i++) {
		if (partial && spool_table_is_pattern(maps[i]))
			continue;
		int rc = table_lookup(maps[i], key, val, vallen);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		/* maps_find(): an empty result is a configuration error, the lookup is
		 * retried later (never "found", never "not found"). */
		if (!val[0])
			return -EBADMSG;
		if (matched && matchedlen)
			snprintf(matched, matchedlen, "%s", key);
		return 1;
	}
	return 0;
}

int relay_transport_lookup(struct table *const *maps, size_t nmaps, const char *rcpt,
			   const struct relay_transport_opts *o, char *val, size_t vallen,
			   char *matched, size_t matchedlen)
{
	if (matched && matchedlen)
		matched[0] = '\0';
	/* transport_lookup(): the null address is never looked up. */
	if (!rcpt || !*rcpt || nmaps == 0)
		return 0;
	const char *delim = o ? o->recipient_delimiter : NULL;
	bool parent = o ? o->parent_matches_subdomains : true;
	int rc;

	/* 1. user+ext@domain: every table, patterns included (FULL). */
	if ((rc = relay_transport_find(maps, nmaps, rcpt, false, val, vallen, matched,
				       matchedlen)) != 0)
		return rc;

	/* 2. user@domain without the extension (PARTIAL); Postfix's split_addr() rules. */
	const char *at = strrchr(rcpt, '@');
	size_t alen = strlen(rcpt);
	size_t llen = at ? (size_t)(at - rcpt) : alen;
	size_t base = table_access_split(rcpt, llen, delim);
	if (base && alen - (llen - base) <= TABLE_KEY_MAX) {
		char key[TABLE_KEY_MAX + 1];
		snprintf(key, sizeof(key), "%.*s%s", (int)base, rcpt, at ? at : "");
		if ((rc = relay_transport_find(maps, nmaps, key, true, val, vallen, matched,
					       matchedlen)) != 0)
			return rc;
	}

	/* 3. domain, then parent domains (PARTIAL): "example.com" for sub.example.com when
	 * parent_domain_matches_subdomains lists transport_maps (MA_FIND_PDMS), otherwise
	 * ".example.com" (MA_FIND_PDDMDS); the loop of mail_addr_find_opt(). */
	if (at && at[1]) {
		const char *name = at + 1;
		while (*name) {
			if ((rc = relay_transport_find(maps, nmaps, name, true, val, vallen, matched,
						       matchedlen)) != 0)
				return rc;
			const char *next = strchr(name + 1, '.');
			if (!next)
				break;
			name = parent ? next + 1 : next;
		}
	}

	/* 4. the wildcard, looked up FULL by transport_wildcard_init(). */
	return relay_transport_find(maps, nmaps, "*", false, val, vallen, matched, matchedlen);
}
