/* Where mxgate's DNS lookups go: the server list of mxgate_dns_servers and resolv.conf(5)
 * read as glibc reads it (the first three nameserver lines, options timeout:, attempts:,
 * rotate). Shared by the resolver service (dataplane/svc/svc_resolver.h), the
 * configuration check (mgmt/policy.c) and `mxgate explain`. */
#ifndef MXGATE_TABLES_DNS_CONF_H
#define MXGATE_TABLES_DNS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"

#define DNS_CONF_SERVERS_MAX 8   /* mxgate_dns_servers entries */
#define DNS_CONF_RESOLV_NS_MAX 3 /* nameserver lines used from resolv.conf (glibc's
					MAXNS: later lines are ignored, as the libc does) */
#define DNS_CONF_TIMEOUT_MAX_MS 30000 /* glibc caps timeout:N at 30 s */
#define DNS_CONF_ATTEMPTS_MAX 5       /* glibc caps attempts:N at 5 */
#define DNS_CONF_RESOLV_CONF_MAX 65536 /* bytes of resolv.conf read */
#define DNS_CONF_DEFAULT_TIMEOUT_MS 5000 /* resolv.conf(5): RES_TIMEOUT */
#define DNS_CONF_DEFAULT_ATTEMPTS 2      /* resolv.conf(5): RES_DFLRETRY */

struct dns_server {
	struct mx_inet_addr addr;
	uint16_t port;
};

/* Parse mxgate_dns_servers: numeric addresses separated by commas and/or white space,
 * each "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]" or
 * "[2001:db8::1]:5353" (no names: the resolver cannot ask for its own servers). Returns 0
 * with *n servers (0 for an empty list), -EINVAL (syntax, port 0 or over 65535) or -E2BIG
 * (more than cap), with err. */
int dns_servers_parse(const char *text, struct dns_server *out, unsigned cap, unsigned *n,
		      char *err, size_t errlen);

/* What resolv.conf(5) says that this resolver uses. */
struct dns_resolv_conf {
	struct dns_server servers[DNS_CONF_RESOLV_NS_MAX];
	unsigned nservers;     /* 0 lines: 127.0.0.1 (resolv.conf(5): the local machine) */
	uint32_t timeout_ms;   /* timeout:N, default 5 s, at most 30 s */
	unsigned attempts;     /* attempts:N, default 2, at most 5 */
	bool rotate;           /* options rotate */
	bool edns0;            /* options edns0 (noted: mxgate sends EDNS per edns_udp_size,
				  since its expected servers all speak it) */
	unsigned ignored;      /* nameserver lines past the third, or not numeric (a
				  link-local address with a %scope), and unknown options */
	bool defaulted;        /* no usable nameserver line: servers holds 127.0.0.1 */
};

/* Parse resolv.conf text (len bytes, not NUL-terminated). Lines starting with '#' or ';'
 * are comments; "nameserver ADDR" and "options ..." are read when the keyword starts the
 * line (as glibc's res_init reads them); domain, search, sortlist
 * and unknown options are ignored (mxgate always asks absolute names, as Postfix's
 * dns_lookup() does). Never fails: bad lines are counted in `ignored`. */
void dns_resolv_conf_parse(const char *text, size_t len, struct dns_resolv_conf *out);

/* Read and parse a resolv.conf file; a missing file is the defaults (as the libc).
 * Returns 0, or a negative errno (unreadable other than missing) with err. */
int dns_resolv_conf_read(const char *path, struct dns_resolv_conf *out, char *err,
			 size_t errlen);

#endif
