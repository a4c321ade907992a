/* The dpdk transport's settings, parsed from mxgate.cf without touching DPDK, so that
 * `mxgate --check` and unit tests can validate them:
 *
 *     mxgate_dpdk_eal_args  = --lcores=0@(0-1),1@(0-1),2@(0-1) --no-huge -m 512 --no-pci
 *                             --vdev=net_af_packet0,iface=veth0,qpairs=2
 *     mxgate_dpdk_ports     = net_af_packet0 address=10.77.0.2/24 gateway=10.77.0.1
 *                             address6=fd77::2 gateway6=fd77::1 mtu=1500
 *     mxgate_dpdk_steering  = auto | software
 *     mxgate_dpdk_mbufs     = 16383
 *     mxgate_dpdk_idle_sleep_us = 100
 *     mxgate_dpdk_idle_sleep_max_us = 10000
 *     mxgate_dpdk_fault     = seed=7,drop=5,reorder=5,dup=1   (tests; MXGATE_NET_FAULT wins)
 *
 * SMTP is served on the TCP port of every mxgate_listen entry, on every address of every
 * port (an entry's address must be a wildcard or one of the ports' addresses). */
#ifndef MXGATE_DATAPLANE_DPDK_DPDK_CONFIG_H
#define MXGATE_DATAPLANE_DPDK_DPDK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/net/net_stack.h"
#include "mgmt/config.h"

#define DPDK_MAX_PORTS 8
#define DPDK_MAX_EAL_ARGS 64
#define DPDK_MAX_LISTEN_PORTS 8

enum dpdk_steering {
	DPDK_STEERING_AUTO,     /* trust the queue (RSS, af_packet fanout); hand over strays */
	DPDK_STEERING_SOFTWARE, /* our own flow hash names the owner of every packet */
	DPDK_STEERING_MAX
};
const char *dpdk_steering_name(enum dpdk_steering s);

struct dpdk_port_config {
	char name[64]; /* the DPDK device name: "net_af_packet0", "0000:03:00.0" */
	uint32_t ipv4; /* network order; 0: none */
	uint8_t ipv4_prefix;
	uint32_t ipv4_gateway;
	uint8_t ipv6[16]; /* all zero: no IPv6 */
	uint8_t ipv6_gateway[16];
	uint16_t mtu; /* 0: 1500 */
};

struct dpdk_config {
	/* argv for rte_eal_init(): argv[0] is "mxgate", the strings point into eal_buf */
	char *eal_argv[DPDK_MAX_EAL_ARGS + 2];
	int eal_argc;
	char eal_buf[4200];
	struct dpdk_port_config port[DPDK_MAX_PORTS];
	unsigned nports;
	uint16_t listen_port[DPDK_MAX_LISTEN_PORTS];
	unsigned nlisten;
	enum dpdk_steering steering;
	uint32_t mbufs;
	uint32_t idle_sleep_us;
	uint32_t idle_sleep_max_us; /* the sleep a long idle spell grows to */
	bool fault_on;
	struct net_fault_config fault;
	char fault_spec[260]; /* as given, for the start-up log line */
};

/* Parse the mxgate_dpdk_* parameters and the listen ports of cfg; fault_env is
 * MXGATE_NET_FAULT (NULL or empty: use mxgate_dpdk_fault). 0, or -EINVAL with a message
 * naming the parameter in err. */
int dpdk_config_parse(const struct mx_config *cfg, const char *fault_env, struct dpdk_config *out,
		      char *err, size_t errlen);

/* One port specification ("NAME key=value ..."), for the parser above and its tests. */
int dpdk_port_parse(const char *spec, struct dpdk_port_config *out, char *err, size_t errlen);

#endif
