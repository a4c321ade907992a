/* Where the relay sends a recipient: Postfix's transport(5) tables and next-hop syntax.
 *
 * The relay's default destination is `relayhost` (over SMTP, or LMTP with
 * mxgate_relay_protocol = lmtp). `transport_maps` overrides it per recipient with
 * transport(5) entries, looked up in transport(5)'s order:
 *     user+extension@domain, user@domain (recipient_delimiter), domain, then its parent
 *     domains (`example.com` matches `sub.example.com` only when
 *     parent_domain_matches_subdomains lists transport_maps, which Postfix's default does
 *     not; `.example.com` matches subdomains otherwise), then `*` (the catch-all). As
 *     Postfix's maps_find() does, each key is tried in every table before the next,
 *     shorter key: `user@domain` in the second table beats `domain` in the first.
 *     (Postfix 3.x has no `user@` lookup in transport maps.)
 * Only the full address and `*` are given to pattern tables (regexp, pcre, cidr); the
 * address without its extension and the domain keys go to exact tables only
 * (mail_addr_find.c; transport(5): "some.domain.hierarchy is not looked up via its parent
 * domains" in pattern tables). An empty value is a table error, as in Postfix.
 *
 * A result is `transport:nexthop`, either part empty meaning "the default":
 *     smtp:[192.0.2.1]:25   smtp:192.0.2.1   relay:[2001:db8::1]:2525   smtp:   :[192.0.2.1]
 *     lmtp:inet:[127.0.0.1]:24   lmtp:unix:/run/dovecot/lmtp   lmtp:[127.0.0.1]:24
 *     error:5.1.1 No such user   error:   retry:4.3.2 try later   discard:   discard:reason
 * `smtp` and `relay` deliver over SMTP, `lmtp` over LMTP (TCP or a UNIX-domain socket);
 * `error` bounces the recipient with the text (status from a leading x.y.z; 5.0.0 when none;
 * Postfix's "Address is undeliverable" when empty), `retry` defers it
 * likewise (4.0.0), `discard` reports it delivered without sending anything (Postfix logs
 * "status=sent (discarded)"). Any other transport name is refused: the gateway has no
 * other delivery agents.
 * A next hop must be numeric: `[addr]`, `[addr]:port` or `addr` / `addr:port` (IPv4), or
 * `[ipv6]` / `[ipv6]:port`; a host name would need DNS (MX or A lookups), which this
 * version has not, so it is refused with a message saying so (for relayhost at start-up
 * and by mxgate --check; a transport_maps entry naming one defers its recipients with
 * that reason, logged and shown by mxgate-queue list).
 * Ports: numeric or a service name of /etc/services (getservbyname, at parse time).
 * The default port is 25 for smtp/relay and 24 for lmtp. */
#ifndef MXGATE_DATAPLANE_RELAY_RELAY_TRANSPORT_H
#define MXGATE_DATAPLANE_RELAY_RELAY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tables/tables_env.h"

enum relay_transport_kind {
	RELAY_TRANSPORT_SMTP,
	RELAY_TRANSPORT_LMTP,
	RELAY_TRANSPORT_ERROR,   /* bounce */
	RELAY_TRANSPORT_RETRY,   /* defer */
	RELAY_TRANSPORT_DISCARD, /* pretend delivered */
	RELAY_TRANSPORT_KIND_MAX
};

const char *relay_transport_kind_name(enum relay_transport_kind k);

#define SPOOL_NEXTHOP_TEXT_MAX 512

/* A parsed destination. Two recipients with equal `key` share connections and a
 * concurrency limit. */
struct relay_nexthop {
	enum relay_transport_kind kind;
	/* SMTP and LMTP: where to connect. addr.ss_family AF_INET, AF_INET6 or AF_UNIX */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* For logs, as Postfix writes relay=: "192.0.2.1[192.0.2.1]:25",
	 * "[2001:db8::1]" style hosts as "2001:db8::1[2001:db8::1]:25",
	 * "/run/dovecot/lmtp" for a UNIX socket. */
	char name[160];
	/* The identity of the destination: "smtp:192.0.2.1:25", "lmtp:unix:/run/x". */
	char key[160];
	/* ERROR and RETRY: the status ("5.1.1") and the text; DISCARD: the reason (may be
	 * empty). */
	char status[16];
	char text[SPOOL_NEXTHOP_TEXT_MAX];
};

/* Parse a `transport:nexthop` value (a transport(5) result, `content_filter`-like FILTER
 * actions, the relay's default built from relayhost). Empty parts are taken from dflt
 * (its kind when the transport is empty, its address when the next hop is empty); dflt
 * may be NULL only when value names both. Returns 0, or -EINVAL with the reason in err
 * (unknown transport, a host name that needs DNS, a bad port, a UNIX path too long). */
int relay_nexthop_parse(const char *value, const struct relay_nexthop *dflt,
			struct relay_nexthop *out, char *err, size_t errlen);

/* The default destination from main.cf's `relayhost` (e.g. "[192.0.2.1]:25",
 * "192.0.2.1", "[::1]:2525") and whether to speak LMTP. Returns 0 or -EINVAL with err. */
int relay_nexthop_from_relayhost(const char *relayhost, bool lmtp, struct relay_nexthop *out,
				 char *err, size_t errlen);

struct relay_transport_opts {
	const char *recipient_delimiter;  /* NULL or "" for none */
	bool parent_matches_subdomains;   /* parent_domain_matches_subdomains has transport_maps */
};

/* Look the recipient up in maps[0..nmaps) in transport(5) order. Returns 1 with the value
 * (TABLE_VALUE_MAX + 1 bytes always fit) and the key that matched (may be NULL), 0 when no
 * table has an entry (use the default destination), or a negative errno from the table
 * (the relay defers the recipient: a broken table must never reroute mail). */
int relay_transport_lookup(struct table *const *maps, size_t nmaps, const char *rcpt,
			   const struct relay_transport_opts *o, char *val, size_t vallen,
			   char *matched, size_t matchedlen);

#endif
