/* The dpdk transport's settings: port specifications, EAL argument splitting, listen
 * addresses that must belong to a port, steering, and the fault specification with the
 * environment's override. Parsed without DPDK, as `mxgate --check` does. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dpdk/dpdk_config.h"
#include "testing.h"

static int parse_cf(const char *extra, const char *env, struct dpdk_config *dc, char *err,
		    size_t errlen)
{
	char text[4096];
	snprintf(text, sizeof(text),
		 "mxgate_transport = dpdk\n"
		 "mxgate_spool_directory = /nonexistent\n%s",
		 extra);
	struct mx_config *cfg = NULL;
	FILE *diag = fopen("/dev/null", "w");
	int rc = mx_config_load_string(text, "test.cf", &cfg, diag);
	fclose(diag);
	if (rc < 0) {
		snprintf(err, errlen, "config did not load");
		return -1000;
	}
	rc = dpdk_config_parse(cfg, env, dc, err, errlen);
	mx_config_free(cfg);
	return rc;
}

static void test_port_spec(void)
{
	struct dpdk_port_config p;
	char err[256];
	CHECK_INT_EQ(dpdk_port_parse("net_af_packet0 address=10.77.0.2/24 gateway=10.77.0.1 "
				     "address6=fd77::2/64 gateway6=fe80::1 mtu=9000",
				     &p, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(p.name, "net_af_packet0");
	CHECK_INT_EQ(p.ipv4, inet_addr("10.77.0.2"));
	CHECK_INT_EQ(p.ipv4_prefix, 24);
	CHECK_INT_EQ(p.ipv4_gateway, inet_addr("10.77.0.1"));
	CHECK_INT_EQ(p.ipv6[0], 0xfd);
	CHECK_INT_EQ(p.ipv6[15], 2);
	CHECK_INT_EQ(p.ipv6_gateway[0], 0xfe);
	CHECK_INT_EQ(p.mtu, 9000);

	/* IPv6 only is a port too */
	CHECK_INT_EQ(dpdk_port_parse("0000:03:00.0 address6=2001:db8::25", &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(p.ipv4, 0);
	CHECK_INT_EQ(p.mtu, 0);

	static const struct {
		const char *spec, *msg;
	} bad[] = {
		{ "", "empty" },
		{ "address=10.0.0.1/24", "starts with its DPDK device name" },
		{ "net_tap0", "no address" },
		{ "net_tap0 address=10.0.0.1", "want A.B.C.D/LEN" },
		{ "net_tap0 address=10.0.0.1/33", "bad address" },
		{ "net_tap0 address=10.0.0.300/24", "bad address" },
		{ "net_tap0 address=10.0.0.1/24 gateway=10.0.1.1", "not inside" },
		{ "net_tap0 address=10.0.0.1/24 mtu=100", "576..9000" },
		{ "net_tap0 address=10.0.0.1/24 mtu=9001", "576..9000" },
		{ "net_tap0 address=10.0.0.1/24 mtu=15x", "576..9000" },
		{ "net_tap0 address=10.0.0.1/24 speed=10", "unknown key 'speed'" },
		{ "net_tap0 address=10.0.0.1/24 gateway", "not key=value" },
		{ "net_tap0 address6=fd00::1/129", "bad address6" },
		{ "net_tap0 address6=fd00::g", "bad address6" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_INT_EQ(dpdk_port_parse(bad[i].spec, &p, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			CHECK_STR_EQ(err, bad[i].msg);
	}
}

static void test_config(void)
{
	struct dpdk_config *dc = malloc(sizeof(*dc));
	char err[512];
	CHECK(dc != NULL);
	CHECK_INT_EQ(parse_cf("mxgate_dpdk_eal_args = --lcores=0@(0-1),1@(0-1) --no-huge\n"
			      "  -m 512 --vdev=net_af_packet0,iface=v0,qpairs=2\n"
			      "mxgate_dpdk_ports = net_af_packet0 address=10.77.0.2/24,\n"
			      "  net_tap0 address=10.78.0.2/24 address6=fd78::2\n"
			      "mxgate_listen = 0.0.0.0:25, [fd78::2]:25, 10.77.0.2:587\n"
			      "mxgate_dpdk_steering = software\n"
			      "mxgate_dpdk_mbufs = 4095\n"
			      "mxgate_dpdk_idle_sleep_us = 0\n",
			      NULL, dc, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(dc->eal_argc, 6);
	CHECK_STR_EQ(dc->eal_argv[0], "mxgate");
	CHECK_STR_EQ(dc->eal_argv[1], "--lcores=0@(0-1),1@(0-1)");
	CHECK_STR_EQ(dc->eal_argv[3], "-m");
	CHECK_STR_EQ(dc->eal_argv[5], "--vdev=net_af_packet0,iface=v0,qpairs=2");
	CHECK(dc->eal_argv[6] == NULL);
	CHECK_INT_EQ(dc->nports, 2);
	CHECK_STR_EQ(dc->port[1].name, "net_tap0");
	CHECK_INT_EQ(dc->nlisten, 2); /* 25 once, and 587 */
	CHECK_INT_EQ(dc->listen_port[0], 25);
	CHECK_INT_EQ(dc->listen_port[1], 587);
	CHECK_INT_EQ(dc->steering, DPDK_STEERING_SOFTWARE);
	CHECK_INT_EQ(dc->mbufs, 4095);
	CHECK_INT_EQ(dc->idle_sleep_us, 0);
	CHECK(!dc->fault_on);

	/* the defaults */
	CHECK_INT_EQ(parse_cf("mxgate_dpdk_ports = p0 address=192.0.2.1/24\n", NULL, dc, err,
			      sizeof(err)),
		     0);
	CHECK_INT_EQ(dc->eal_argc, 1);
	CHECK_INT_EQ(dc->steering, DPDK_STEERING_AUTO);
	CHECK_INT_EQ(dc->mbufs, 16383);
	CHECK_INT_EQ(dc->idle_sleep_us, 100);
	CHECK_INT_EQ(dc->nlisten, 1);

	/* fault injection: the configuration, and the environment winning over it */
	CHECK_INT_EQ(parse_cf("mxgate_dpdk_ports = p0 address=192.0.2.1/24\n"
			      "mxgate_dpdk_fault = seed=7,drop=5,reorder=5,dup=1\n",
			      NULL, dc, err, sizeof(err)),
		     0);
	CHECK(dc->fault_on);
	CHECK_INT_EQ(dc->fault.seed, 7);
	CHECK_INT_EQ(dc->fault.rx_drop_pct, 5);
	CHECK_INT_EQ(dc->fault.tx_dup_pct, 1);
	CHECK_INT_EQ(parse_cf("mxgate_dpdk_ports = p0 address=192.0.2.1/24\n"
			      "mxgate_dpdk_fault = seed=7,drop=5\n",
			      "seed=9,tx_drop=3", dc, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(dc->fault.seed, 9);
	CHECK_INT_EQ(dc->fault.rx_drop_pct, 0);
	CHECK_INT_EQ(dc->fault.tx_drop_pct, 3);

	static const struct {
		const char *cf, *env, *msg;
	} bad[] = {
		{ "", NULL, "mxgate_dpdk_ports: no port" },
		{ "mxgate_dpdk_ports = , ,\n", NULL, "no port" },
		{ "mxgate_dpdk_ports = p0 address=192.0.2.1/24, p0 address=192.0.2.2/24\n", NULL,
		  "listed twice" },
		{ "mxgate_dpdk_ports = p0 address=192.0.2.1/24\nmxgate_listen = 192.0.2.9:25\n",
		  NULL, "neither a wildcard nor an address" },
		{ "mxgate_dpdk_ports = p0 address=192.0.2.1/24\nmxgate_listen = [::1]:25\n", NULL,
		  "neither a wildcard" },
		{ "mxgate_dpdk_ports = p0 address=192.0.2.1/24\nmxgate_dpdk_fault = drop=500\n",
		  NULL, "mxgate_dpdk_fault: bad fault" },
		{ "mxgate_dpdk_ports = p0 address=192.0.2.1/24\n", "colour=red",
		  "MXGATE_NET_FAULT: bad fault" },
		{ "mxgate_dpdk_ports = p0 mtu=1500\n", NULL, "no address" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_INT_EQ(parse_cf(bad[i].cf, bad[i].env, dc, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			CHECK_STR_EQ(err, bad[i].msg);
	}

	/* too many EAL words is an error, not a silent truncation */
	char many[2048] = "mxgate_dpdk_ports = p0 address=192.0.2.1/24\nmxgate_dpdk_eal_args =";
	for (int i = 0; i < DPDK_MAX_EAL_ARGS + 1; i++)
		strcat(many, " -v");
	strcat(many, "\n");
	CHECK_INT_EQ(parse_cf(many, NULL, dc, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "more than") != NULL);
	free(dc);
}

int main(void)
{
	RUN_TEST(test_port_spec);
	RUN_TEST(test_config);
	return TEST_RESULT();
}
