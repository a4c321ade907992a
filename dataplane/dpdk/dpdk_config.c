#include "dataplane/dpdk/dpdk_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/errf.h"

const char *dpdk_steering_name(enum dpdk_steering s)
{
	switch (s) {
	case DPDK_STEERING_AUTO:
		return "auto";
	case DPDK_STEERING_SOFTWARE:
		return "software";
	case DPDK_STEERING_MAX:
		break;
	}
	return "?";
}

static bool dpdk_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* "A.B.C.D/LEN" (LEN required: the on-link prefix decides who is asked by ARP). */
static bool dpdk_parse_v4_prefix(char *v, uint32_t *addr, uint8_t *prefix)
{
	char *slash = strchr(v, '/');
	uint32_t len;
	if (!slash || !dpdk_parse_u32(slash + 1, 1, 32, &len))
		return false;
	*slash = '\0';
	bool ok = inet_pton(AF_INET, v, addr) == 1;
	*slash = '/';
	*prefix = (uint8_t)len;
	return ok;
}

/* "2001:db8::1" or "2001:db8::1/64" (the stack treats every IPv6 destination as reached
 * through the router or by neighbour discovery, so the length is accepted and ignored). */
static bool dpdk_parse_v6(char *v, uint8_t out[16])
{
	char *slash = strchr(v, '/');
	uint32_t len;
	if (slash && !dpdk_parse_u32(slash + 1, 1, 128, &len))
		return false;
	if (slash)
		*slash = '\0';
	bool ok = inet_pton(AF_INET6, v, out) == 1;
	if (slash)
		*slash = '/';
	return ok;
}

int dpdk_port_parse(const char *spec, struct dpdk_port_config *out, char *err, size_t errlen)
{
	char buf[512];
	memset(out, 0, sizeof(*out));
	if (strlen(spec) >= sizeof(buf))
		return mx_errf(err, errlen, -EINVAL, "port specification too long");
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char *tok = strtok_r(buf, " \t", &save);
	if (!tok)
		return mx_errf(err, errlen, -EINVAL, "empty port specification");
	if (strchr(tok, '=') || strlen(tok) >= sizeof(out->name))
		return mx_errf(err, errlen, -EINVAL,
			       "'%s': a port starts with its DPDK device name (net_af_packet0, "
			       "0000:03:00.0)", tok);
	snprintf(out->name, sizeof(out->name), "%s", tok);
	bool have_v4 = false, have_v6 = false;
	while ((tok = strtok_r(NULL, " \t", &save))) {
		char *eq = strchr(tok, '=');
		if (!eq)
			return mx_errf(err, errlen, -EINVAL, "port %s: '%s' is not key=value",
				       out->name, tok);
		*eq = '\0';
		char *key = tok, *val = eq + 1;
		bool ok;
		uint32_t n = 0;
		if (strcmp(key, "address") == 0) {
			ok = dpdk_parse_v4_prefix(val, &out->ipv4, &out->ipv4_prefix);
			have_v4 = ok;
		} else if (strcmp(key, "gateway") == 0) {
			ok = inet_pton(AF_INET, val, &out->ipv4_gateway) == 1;
		} else if (strcmp(key, "address6") == 0) {
			ok = dpdk_parse_v6(val, out->ipv6);
			have_v6 = ok;
		} else if (strcmp(key, "gateway6") == 0) {
			ok = inet_pton(AF_INET6, val, out->ipv6_gateway) == 1;
		} else if (strcmp(key, "mtu") == 0) {
			ok = dpdk_parse_u32(val, 576, 9000, &n);
			out->mtu = (uint16_t)n;
		} else {
			return mx_errf(err, errlen, -EINVAL,
				       "port %s: unknown key '%s' (address, gateway, address6, "
				       "gateway6, mtu)", out->name, key);
		}
		if (!ok)
			return mx_errf(err, errlen, -EINVAL, "port %s: bad %s '%s'%s", out->name, key,
				       val,
				       strcmp(key, "address") == 0 ? " (want A.B.C.D/LEN)"
				       : strcmp(key, "mtu") == 0   ? " (576..9000)"
								   : "");
	}
	if (!have_v4 && !have_v6)
		return mx_errf(err, errlen, -EINVAL, "port %s: no address= or address6=", out->name);
	if (have_v4 && out->ipv4_gateway) {
		uint32_t mask = out->ipv4_prefix == 32 ? 0xffffffffu
						       : ~(0xffffffffu >> out->ipv4_prefix);
		if ((ntohl(out->ipv4) & mask) != (ntohl(out->ipv4_gateway) & mask))
			return mx_errf(err, errlen, -EINVAL,
				       "port %s: gateway is not inside address's prefix", out->name);
	}
	return 0;
}

static int dpdk_split_eal(const char *args, struct dpdk_config *out, char *err, size_t errlen)
{
	if (strlen(args) >= sizeof(out->eal_buf) - 8)
		return mx_errf(err, errlen, -EINVAL, "mxgate_dpdk_eal_args: too long");
	/* argv[0] first, then the words of args, all in eal_buf */
	snprintf(out->eal_buf, sizeof(out->eal_buf), "mxgate%c%s", '\0', args);
	out->eal_argv[0] = out->eal_buf;
	out->eal_argc = 1;
	char *save = NULL;
	for (char *tok = strtok_r(out->eal_buf + 7, " \t", &save); tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (out->eal_argc > DPDK_MAX_EAL_ARGS)
			return mx_errf(err, errlen, -EINVAL,
				       "mxgate_dpdk_eal_args: more than %d arguments",
				       DPDK_MAX_EAL_ARGS);
		out->eal_argv[out->eal_argc++] = tok;
	}
	out->eal_argv[out->eal_argc] = NULL;
	return 0;
}

/* The port specifications: commas between ports. */
static int dpdk_parse_ports(const char *ports, struct dpdk_config *out, char *err, size_t errlen)
{
	const char *p = ports;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char spec[512];
		if (n >= sizeof(spec))
			return mx_errf(err, errlen, -EINVAL, "mxgate_dpdk_ports: entry too long");
		memcpy(spec, p, n);
		spec[n] = '\0';
		if (spec[strspn(spec, " \t")] != '\0') {
			if (out->nports == DPDK_MAX_PORTS)
				return mx_errf(err, errlen, -EINVAL,
					       "mxgate_dpdk_ports: more than %d ports", DPDK_MAX_PORTS);
			char why[256];
			if (dpdk_port_parse(spec, &out->port[out->nports], why, sizeof(why)) < 0)
				return mx_errf(err, errlen, -EINVAL, "mxgate_dpdk_ports: %s", why);
			for (unsigned i = 0; i < out->nports; i++)
				if (strcmp(out->port[i].name, out->port[out->nports].name) == 0)
					return mx_errf(err, errlen, -EINVAL,
						       "mxgate_dpdk_ports: %s is listed twice",
						       out->port[i].name);
			out->nports++;
		}
		p += n + (comma ? 1 : 0);
	}
	if (out->nports == 0)
		return mx_errf(err, errlen, -EINVAL,
			       "mxgate_dpdk_ports: no port (mxgate_transport = dpdk needs at "
			       "least one, e.g. \"net_af_packet0 address=192.0.2.25/24\")");
	return 0;
}

/* Is host (as mxgate_listen wrote it) a wildcard or one of the ports' addresses? */
static bool dpdk_listen_host_ok(const struct dpdk_config *c, const char *host)
{
	char h[80];
	snprintf(h, sizeof(h), "%s", host);
	size_t hl = strlen(h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		memmove(h, h + 1, hl - 2);
		h[hl - 2] = '\0';
	}
	uint32_t v4;
	uint8_t v6[16];
	if (inet_pton(AF_INET, h, &v4) == 1) {
		if (v4 == 0)
			return true;
		for (unsigned i = 0; i < c->nports; i++)
			if (c->port[i].ipv4 == v4)
				return true;
		return false;
	}
	if (inet_pton(AF_INET6, h, v6) == 1) {
		static const uint8_t any[16];
		if (memcmp(v6, any, 16) == 0)
			return true;
		for (unsigned i = 0; i < c->nports; i++)
			if (memcmp(c->port[i].ipv6, v6, 16) == 0)
				return true;
	}
	return false;
}

int dpdk_config_parse(const struct mx_config *cfg, const char *fault_env, struct dpdk_config *out,
		      char *err, size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	const char *eal = mx_config_get(cfg, "mxgate_dpdk_eal_args");
	if ((rc = dpdk_split_eal(eal ? eal : "", out, err, errlen)) < 0)
		return rc;
	const char *ports = mx_config_get(cfg, "mxgate_dpdk_ports");
	if ((rc = dpdk_parse_ports(ports ? ports : "", out, err, errlen)) < 0)
		return rc;
	for (unsigned i = 0; i < cfg->listen_count; i++) {
		if (!dpdk_listen_host_ok(out, cfg->listen[i].host))
			return mx_errf(err, errlen, -EINVAL,
				       "mxgate_listen: %s is neither a wildcard nor an address of "
				       "mxgate_dpdk_ports", cfg->listen[i].host);
		bool dup = false;
		for (unsigned j = 0; j < out->nlisten; j++)
			dup |= out->listen_port[j] == cfg->listen[i].port;
		if (dup)
			continue;
		if (out->nlisten == DPDK_MAX_LISTEN_PORTS)
			return mx_errf(err, errlen, -EINVAL,
				       "mxgate_listen: more than %d distinct ports on dpdk",
				       DPDK_MAX_LISTEN_PORTS);
		out->listen_port[out->nlisten++] = cfg->listen[i].port;
	}
	const char *steer = mx_config_get(cfg, "mxgate_dpdk_steering");
	out->steering = steer && strcasecmp(steer, "software") == 0 ? DPDK_STEERING_SOFTWARE
								     : DPDK_STEERING_AUTO;
	const char *v = mx_config_get(cfg, "mxgate_dpdk_mbufs");
	if (!v || !dpdk_parse_u32(v, 1023, 4194303, &out->mbufs))
		out->mbufs = 16383;
	v = mx_config_get(cfg, "mxgate_dpdk_idle_sleep_us");
	if (!v || !dpdk_parse_u32(v, 0, 100000, &out->idle_sleep_us))
		out->idle_sleep_us = 100;
	v = mx_config_get(cfg, "mxgate_dpdk_idle_sleep_max_us");
	if (!v || !dpdk_parse_u32(v, 0, 1000000, &out->idle_sleep_max_us))
		out->idle_sleep_max_us = 10000;

	const char *fault = fault_env && *fault_env ? fault_env : mx_config_get(cfg, "mxgate_dpdk_fault");
	if (fault && *fault) {
		if (net_fault_parse(fault, &out->fault) < 0)
			return mx_errf(err, errlen, -EINVAL, "%s: bad fault specification '%s'",
				       fault == fault_env ? "MXGATE_NET_FAULT" : "mxgate_dpdk_fault",
				       fault);
		out->fault_on = true;
		snprintf(out->fault_spec, sizeof(out->fault_spec), "%s", fault);
	}
	return 0;
}
