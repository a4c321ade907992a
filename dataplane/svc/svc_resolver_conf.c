/* The resolver's settings: defaults, the mxgate_dns_servers list, resolv.conf(5), and the
 * two merged into what the service runs with (svc_resolver.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/svc/svc_resolver.h"
#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"


void svc_resolver_params_default(struct svc_resolver_params *p)
{
	memset(p, 0, sizeof(*p));
	p->edns_udp_size = 1232;
	p->cache_max_entries = 65536;
	p->cache_max_bytes = 32u << 20;
	p->negative_ttl_floor = 0;
	p->max_ttl = 3600;
	p->max_in_flight = 16384;
	p->max_tcp = 64;
	p->udp_sockets_per_server = 8;
	p->udp_socket_uses = 128;
}

int svc_resolver_config_resolve(const struct svc_resolver_params *in,
				struct svc_resolver_config *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->p = *in;
	struct svc_resolver_params *p = &out->p;
	if (p->nservers > DNS_CONF_SERVERS_MAX)
		return mx_errf(err, errlen, -EINVAL, "more than %u DNS servers",
			       DNS_CONF_SERVERS_MAX);
	if (p->nservers == 0) {
		struct dns_resolv_conf rc;
		const char *path = p->resolv_conf ? p->resolv_conf : "/etc/resolv.conf";
		int r = dns_resolv_conf_read(path, &rc, err, errlen);
		if (r < 0)
			return r;
		memcpy(p->servers, rc.servers, rc.nservers * sizeof(rc.servers[0]));
		p->nservers = rc.nservers;
		if (p->timeout_ms == 0)
			p->timeout_ms = rc.timeout_ms;
		if (p->attempts == 0)
			p->attempts = rc.attempts;
		p->rotate = p->rotate || rc.rotate;
		out->from_resolv_conf = true;
	}
	if (p->timeout_ms == 0)
		p->timeout_ms = DNS_CONF_DEFAULT_TIMEOUT_MS;
	if (p->attempts == 0)
		p->attempts = DNS_CONF_DEFAULT_ATTEMPTS;
	for (unsigned i = 0; i < p->nservers; i++)
		if (p->servers[i].port == 0 || (p->servers[i].addr.family != AF_INET &&
						 p->servers[i].addr.family != AF_INET6))
			return mx_errf(err, errlen, -EINVAL, "DNS server %u: no address or port",
				       i + 1);
	if (p->timeout_ms > DNS_CONF_TIMEOUT_MAX_MS)
		return mx_errf(err, errlen, -EINVAL, "DNS timeout %u ms: at most %u",
			       p->timeout_ms, DNS_CONF_TIMEOUT_MAX_MS);
	if (p->attempts > DNS_CONF_ATTEMPTS_MAX)
		return mx_errf(err, errlen, -EINVAL, "DNS attempts %u: at most %u", p->attempts,
			       DNS_CONF_ATTEMPTS_MAX);
	if (p->edns_udp_size != 0 && p->edns_udp_size < 512)
		return mx_errf(err, errlen, -EINVAL,
			       "EDNS UDP size %u: 0 (no EDNS) or at least 512 (RFC 6891 6.2.5)",
			       p->edns_udp_size);
	if (p->max_in_flight == 0 || p->max_in_flight > (1u << 24))
		return mx_errf(err, errlen, -EINVAL,
			       "DNS questions in flight %u: 1 to 16777216", p->max_in_flight);
	if (p->max_tcp == 0 || p->max_tcp > 4096)
		return mx_errf(err, errlen, -EINVAL, "DNS TCP connections %u: 1 to 4096",
			       p->max_tcp);
	if (p->udp_sockets_per_server == 0 || p->udp_sockets_per_server > 256)
		return mx_errf(err, errlen, -EINVAL, "DNS UDP sockets per server %u: 1 to 256",
			       p->udp_sockets_per_server);
	if (p->udp_socket_uses == 0)
		return mx_errf(err, errlen, -EINVAL, "DNS UDP socket uses: at least 1");
	if (p->cache_max_entries > (1u << 26))
		return mx_errf(err, errlen, -EINVAL, "DNS cache entries %u: at most 67108864",
			       p->cache_max_entries);
	return 0;
}
