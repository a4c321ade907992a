/* mxgate-loadgen's options: every value is checked against an explicit bound, and an error
 * names the option. No DPDK here (the EAL's arguments come before "--" and are the EAL's). */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void loadgen_config_defaults(struct loadgen_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->server_port = 25;
	cfg->concurrency = 10;
	cfg->handshakes = 512;
	cfg->sessions = 1;
	cfg->messages = 1;
	cfg->size = 1024;
	cfg->rcpts = 1;
	cfg->rate_of = LOADGEN_RATE_SESSIONS;
	cfg->pipelining = true;
	snprintf(cfg->helo, sizeof(cfg->helo), "loadgen.example");
	snprintf(cfg->sender, sizeof(cfg->sender), "loadgen@loadgen.example");
	snprintf(cfg->rcpt_domain, sizeof(cfg->rcpt_domain), "relay.example");
	cfg->timeout_s = 30;
	cfg->errors_kept = 10;
	cfg->mbufs = 16383;
	cfg->sndbuf = 65536;
	cfg->rcvbuf = 16384;
	cfg->progress_s = 1;
}

const char *loadgen_rate_of_name(enum loadgen_rate_of r)
{
	switch (r) {
	case LOADGEN_RATE_SESSIONS:
		return "sessions";
	case LOADGEN_RATE_MESSAGES:
		return "messages";
	case LOADGEN_RATE_OF_MAX:
		break;
	}
	return "?";
}

void loadgen_args_usage(FILE *out)
{
	fputs("usage: mxgate-loadgen [EAL options] -- --server ADDR[:PORT] --local ADDR/PLEN "
	      "[options]\n"
	      "link:\n"
	      "  --port NAME           DPDK port (default: the first)\n"
	      "  --local ADDR/PLEN     our own address and on-link prefix (ARP)\n"
	      "  --src RANGE           source addresses: A.B.C.D/N (its hosts), A-B, or one\n"
	      "                        address (default: --local); ARP is answered for all\n"
	      "  --next-hop ADDR       router towards an off-link server\n"
	      "  --mbufs N             mbuf pool (default 16383)\n"
	      "  --sndbuf N, --rcvbuf N  TCP buffers per connection (default 65536, 16384)\n"
	      "load:\n"
	      "  --server ADDR[:PORT]  the SMTP server (port 25)\n"
	      "  --concurrency N       sessions open at once (default 10)\n"
	      "  --handshakes N        sessions between connect and greeting at once (512)\n"
	      "  --sessions N          sessions in all (default 1; 0: until --duration)\n"
	      "  --duration SECS       stop opening sessions after this (0: no limit)\n"
	      "  --messages N          messages per session (default 1; 0: EHLO, QUIT)\n"
	      "  --size BYTES          message size, headers included (default 1024, >= 200)\n"
	      "  --rcpts N             recipients per message (default 1)\n"
	      "  --rate R              target rate per second (0: as fast as possible)\n"
	      "  --rate-of sessions|messages  what --rate counts (default sessions)\n"
	      "  --no-pipelining       one command at a time even if PIPELINING is offered\n"
	      "  --idle                connect, read the greeting, stay silent until told to QUIT\n"
	      "  --idle-hold SECS      idle: QUIT this long after all are greeted (0: SIGUSR2)\n"
	      "  --pregreet            a pregreeting bot: EHLO before the greeting; the server's\n"
	      "                        screen must answer 521 and close (counted as rejected)\n"
	      "  --listed              a DNSBL-listed client: greeted (after the greet wait),\n"
	      "                        every RCPT must get 550 (counted as rejected)\n"
	      "  --also KIND:src=RANGE[,concurrency=N][,rate=R]  a traffic class beside this\n"
	      "                        one, with its own sources and counters (up to 4):\n"
	      "                        pregreet, listed, synflood (rate= SYNs/s, required)\n"
	      "  --helo NAME, --sender ADDR, --rcpt-domain DOMAIN (recipients u<N>@DOMAIN)\n"
	      "  --bad-rcpt ADDR --bad-rcpt-every N  every Nth recipient is ADDR, which the\n"
	      "                        server must refuse (a 2xx to it is an error)\n"
	      "  --timeout SECS        per reply and per connect (default 30)\n"
	      "report:\n"
	      "  --json PATH           the result as JSON\n"
	      "  --errors-kept N       error texts kept (default 10)\n"
	      "  --progress SECS       a progress line this often (default 1; 0: none)\n"
	      "  --label TEXT          copied into the JSON result\n",
	      out);
}

static int bad(char *err, size_t errlen, const char *opt, const char *val, const char *why)
{
	snprintf(err, errlen, "--%s %s: %s", opt, val, why);
	return -EINVAL;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	if (!*s)
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_ip(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*out = a.s_addr;
	return 0;
}

/* Whether host-order [lo, hi] touches addresses no host may use as its own (RFC 1122
 * 3.2.1.3, RFC 5735): "this network" 0/8, loopback 127/8, multicast and reserved from 224/3
 * up (the limited broadcast with them). */
static bool range_reserved(uint32_t lo, uint32_t hi)
{
	static const uint32_t blocks[][2] = {
		{ 0x00000000u, 0x00ffffffu },
		{ 0x7f000000u, 0x7fffffffu },
		{ 0xe0000000u, 0xffffffffu },
	};
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
		if (lo <= blocks[i][1] && hi >= blocks[i][0])
			return true;
	return false;
}

int loadgen_args_addr_prefix(const char *s, uint32_t *addr, uint8_t *prefix)
{
	char buf[32];
	size_t n = strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n + 1);
	uint64_t plen = 32;
	char *slash = strchr(buf, '/');
	if (slash) {
		*slash = 0;
		if (parse_u64(slash + 1, 0, 32, &plen) < 0)
			return -EINVAL;
	}
	if (parse_ip(buf, addr) < 0 || range_reserved(ntohl(*addr), ntohl(*addr)))
		return -EINVAL;
	*prefix = (uint8_t)plen;
	return 0;
}

int loadgen_args_range(const char *s, uint32_t *base, uint32_t *count)
{
	char buf[40];
	size_t n = strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n + 1);
	char *dash = strchr(buf, '-');
	uint32_t a, b;
	if (dash) {
		*dash = 0;
		if (parse_ip(buf, &a) < 0 || parse_ip(dash + 1, &b) < 0)
			return -EINVAL;
		uint32_t ha = ntohl(a), hb = ntohl(b);
		if (hb < ha || range_reserved(ha, hb))
			return -EINVAL;
		*base = a;
		*count = hb - ha + 1;
		return 0;
	}
	uint8_t plen;
	if (loadgen_args_addr_prefix(s, &a, &plen) < 0)
		return -EINVAL;
	uint32_t ha = ntohl(a);
	if (plen >= 31) {
		/* RFC 3021: both addresses of a /31 are hosts; /32 is the one address */
		uint32_t size = plen == 32 ? 1 : 2;
		ha &= plen == 32 ? ~0u : ~1u;
		if (range_reserved(ha, ha + size - 1))
			return -EINVAL;
		*base = htonl(ha);
		*count = size;
		return 0;
	}
	if (plen < 8)
		return -EINVAL; /* 2^24 sources is more than any run needs */
	uint32_t host = ~0u >> plen;
	uint32_t net = ha & ~host;
	if (range_reserved(net, net + host))
		return -EINVAL;
	*base = htonl(net + 1);
	*count = host - 1; /* without the network and the broadcast address */
	return 0;
}

enum {
	OPT_PORT = 256, OPT_LOCAL, OPT_SRC, OPT_NEXT_HOP, OPT_MBUFS, OPT_SNDBUF, OPT_RCVBUF,
	OPT_SERVER, OPT_CONCURRENCY, OPT_HANDSHAKES, OPT_SESSIONS, OPT_DURATION, OPT_MESSAGES, OPT_SIZE,
	OPT_RCPTS, OPT_RATE, OPT_RATE_OF, OPT_NO_PIPELINING, OPT_IDLE, OPT_IDLE_HOLD, OPT_PREGREET, OPT_HELO,
	OPT_SENDER, OPT_RCPT_DOMAIN, OPT_BAD_RCPT, OPT_BAD_RCPT_EVERY, OPT_TIMEOUT, OPT_JSON,
	OPT_ERRORS_KEPT, OPT_PROGRESS, OPT_LABEL, OPT_HELP, OPT_LISTED, OPT_ALSO,
};

static const struct option loadgen_options[] = {
	{ "port", required_argument, NULL, OPT_PORT },
	{ "local", required_argument, NULL, OPT_LOCAL },
	{ "src", required_argument, NULL, OPT_SRC },
	{ "next-hop", required_argument, NULL, OPT_NEXT_HOP },
	{ "mbufs", required_argument, NULL, OPT_MBUFS },
	{ "sndbuf", required_argument, NULL, OPT_SNDBUF },
	{ "rcvbuf", required_argument, NULL, OPT_RCVBUF },
	{ "server", required_argument, NULL, OPT_SERVER },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "handshakes", required_argument, NULL, OPT_HANDSHAKES },
	{ "sessions", required_argument, NULL, OPT_SESSIONS },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "messages", required_argument, NULL, OPT_MESSAGES },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "rcpts", required_argument, NULL, OPT_RCPTS },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "rate-of", required_argument, NULL, OPT_RATE_OF },
	{ "no-pipelining", no_argument, NULL, OPT_NO_PIPELINING },
	{ "idle", no_argument, NULL, OPT_IDLE },
	{ "idle-hold", required_argument, NULL, OPT_IDLE_HOLD },
	{ "pregreet", no_argument, NULL, OPT_PREGREET },
	{ "helo", required_argument, NULL, OPT_HELO },
	{ "sender", required_argument, NULL, OPT_SENDER },
	{ "rcpt-domain", required_argument, NULL, OPT_RCPT_DOMAIN },
	{ "bad-rcpt", required_argument, NULL, OPT_BAD_RCPT },
	{ "bad-rcpt-every", required_argument, NULL, OPT_BAD_RCPT_EVERY },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "errors-kept", required_argument, NULL, OPT_ERRORS_KEPT },
	{ "progress", required_argument, NULL, OPT_PROGRESS },
	{ "label", required_argument, NULL, OPT_LABEL },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "listed", no_argument, NULL, OPT_LISTED },
	{ "also", required_argument, NULL, OPT_ALSO },
	{ NULL, 0, NULL, 0 },
};

/* A name or address the codec will put into a command line: printable ASCII without
 * spaces or angle brackets, bounded by the field. */
static int copy_name(char *dst, size_t cap, const char *s, bool empty_ok)
{
	size_t n = strlen(s);
	if ((!empty_ok && n == 0) || n >= cap)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 127 || c == '<' || c == '>')
			return -EINVAL;
	}
	memcpy(dst, s, n + 1);
	return 0;
}

static int parse_one(struct loadgen_config *cfg, int opt, const char *name, const char *v,
		     char *err, size_t errlen)
{
	uint64_t u;
	double d;
	switch (opt) {
	case OPT_PORT:
		if (copy_name(cfg->port, sizeof(cfg->port), v, false) < 0)
			return bad(err, errlen, name, v, "not a port name");
		return 0;
	case OPT_LOCAL:
		if (loadgen_args_addr_prefix(v, &cfg->local, &cfg->local_prefix) < 0)
			return bad(err, errlen, name, v, "not an IPv4 address[/prefix]");
		return 0;
	case OPT_SRC:
		if (loadgen_args_range(v, &cfg->src_base, &cfg->src_count) < 0)
			return bad(err, errlen, name, v,
				   "not an address, A.B.C.D/N (N >= 8) or A.B.C.D-E.F.G.H");
		return 0;
	case OPT_NEXT_HOP:
		if (parse_ip(v, &cfg->next_hop) < 0 || cfg->next_hop == 0)
			return bad(err, errlen, name, v, "not an IPv4 address");
		return 0;
	case OPT_SERVER: {
		char buf[32];
		size_t n = strlen(v);
		if (n == 0 || n >= sizeof(buf))
			return bad(err, errlen, name, v, "not ADDR[:PORT]");
		memcpy(buf, v, n + 1);
		char *colon = strchr(buf, ':');
		if (colon) {
			*colon = 0;
			if (parse_u64(colon + 1, 1, 65535, &u) < 0)
				return bad(err, errlen, name, v, "port not 1..65535");
			cfg->server_port = (uint16_t)u;
		}
		if (parse_ip(buf, &cfg->server) < 0 || cfg->server == 0)
			return bad(err, errlen, name, v, "not an IPv4 address");
		return 0;
	}
	case OPT_MBUFS:
		if (parse_u64(v, 1023, 1u << 24, &u) < 0)
			return bad(err, errlen, name, v, "not 1023..16777216");
		cfg->mbufs = (uint32_t)u;
		return 0;
	case OPT_SNDBUF:
	case OPT_RCVBUF:
		if (parse_u64(v, 1024, 1u << 20, &u) < 0)
			return bad(err, errlen, name, v, "not 1024..1048576");
		*(opt == OPT_SNDBUF ? &cfg->sndbuf : &cfg->rcvbuf) = (uint32_t)u;
		return 0;
	case OPT_CONCURRENCY:
	case OPT_HANDSHAKES:
		if (parse_u64(v, 1, 1u << 24, &u) < 0)
			return bad(err, errlen, name, v, "not 1..16777216");
		*(opt == OPT_CONCURRENCY ? &cfg->concurrency : &cfg->handshakes) = (uint32_t)u;
		return 0;
	case OPT_SESSIONS:
		if (parse_u64(v, 0, UINT64_MAX / 2, &cfg->sessions) < 0)
			return bad(err, errlen, name, v, "not a count");
		return 0;
	case OPT_DURATION:
		if (parse_double(v, 0, 86400 * 365, &cfg->duration_s) < 0)
			return bad(err, errlen, name, v, "not seconds");
		return 0;
	case OPT_MESSAGES:
		if (parse_u64(v, 0, 1u << 30, &u) < 0)
			return bad(err, errlen, name, v, "not 0..2^30");
		cfg->messages = (uint32_t)u;
		return 0;
	case OPT_SIZE:
		if (parse_u64(v, 200, 1u << 30, &u) < 0)
			return bad(err, errlen, name, v, "not 200..2^30 bytes");
		cfg->size = (uint32_t)u;
		return 0;
	case OPT_RCPTS:
		if (parse_u64(v, 1, 1000, &u) < 0)
			return bad(err, errlen, name, v, "not 1..1000");
		cfg->rcpts = (uint32_t)u;
		return 0;
	case OPT_RATE:
		if (parse_double(v, 0, 1e9, &cfg->rate) < 0)
			return bad(err, errlen, name, v, "not 0..1e9 per second");
		return 0;
	case OPT_RATE_OF:
		if (strcmp(v, "sessions") == 0)
			cfg->rate_of = LOADGEN_RATE_SESSIONS;
		else if (strcmp(v, "messages") == 0)
			cfg->rate_of = LOADGEN_RATE_MESSAGES;
		else
			return bad(err, errlen, name, v, "not sessions or messages");
		return 0;
	case OPT_NO_PIPELINING:
		cfg->pipelining = false;
		return 0;
	case OPT_IDLE:
		cfg->idle = true;
		return 0;
	case OPT_IDLE_HOLD:
		if (parse_double(v, 0, 86400 * 365, &cfg->idle_hold_s) < 0)
			return bad(err, errlen, name, v, "not seconds");
		return 0;
	case OPT_PREGREET:
		cfg->pregreet = true;
		return 0;
	case OPT_LISTED:
		cfg->listed = true;
		return 0;
	case OPT_ALSO: {
		if (cfg->nalso >= LOADGEN_ALSO_MAX)
			return bad(err, errlen, name, v, "more than 4 classes");
		char why[128];
		if (loadgen_class_spec_parse(v, &cfg->also[cfg->nalso], why, sizeof(why)) < 0)
			return bad(err, errlen, name, v, why);
		cfg->nalso++;
		return 0;
	}
	case OPT_HELO:
		if (copy_name(cfg->helo, sizeof(cfg->helo), v, false) < 0)
			return bad(err, errlen, name, v, "not a host name");
		return 0;
	case OPT_SENDER:
		if (copy_name(cfg->sender, sizeof(cfg->sender), v, true) < 0)
			return bad(err, errlen, name, v, "not an address");
		return 0;
	case OPT_RCPT_DOMAIN:
		if (copy_name(cfg->rcpt_domain, sizeof(cfg->rcpt_domain) - 24, v, false) < 0)
			return bad(err, errlen, name, v, "not a domain");
		return 0;
	case OPT_BAD_RCPT:
		if (copy_name(cfg->bad_rcpt, sizeof(cfg->bad_rcpt), v, false) < 0)
			return bad(err, errlen, name, v, "not an address");
		return 0;
	case OPT_BAD_RCPT_EVERY:
		if (parse_u64(v, 0, 1u << 30, &u) < 0)
			return bad(err, errlen, name, v, "not a count");
		cfg->bad_rcpt_every = (uint32_t)u;
		return 0;
	case OPT_TIMEOUT:
		if (parse_double(v, 0.01, 86400, &cfg->timeout_s) < 0)
			return bad(err, errlen, name, v, "not 0.01..86400 seconds");
		return 0;
	case OPT_JSON:
		if (!*v || strlen(v) >= sizeof(cfg->json))
			return bad(err, errlen, name, v, "not a path");
		memcpy(cfg->json, v, strlen(v) + 1);
		return 0;
	case OPT_ERRORS_KEPT:
		if (parse_u64(v, 0, LOADGEN_ERRORS_KEPT_MAX, &u) < 0)
			return bad(err, errlen, name, v, "not 0..1000");
		cfg->errors_kept = (uint32_t)u;
		return 0;
	case OPT_PROGRESS:
		if (parse_double(v, 0, 3600, &d) < 0)
			return bad(err, errlen, name, v, "not 0..3600 seconds");
		cfg->progress_s = d;
		return 0;
	case OPT_LABEL:
		if (strlen(v) >= sizeof(cfg->label))
			return bad(err, errlen, name, v, "too long");
		memcpy(cfg->label, v, strlen(v) + 1);
		return 0;
	default:
		break;
	}
	snprintf(err, errlen, "unknown option");
	return -EINVAL;
}

int loadgen_args_parse(struct loadgen_config *cfg, int argc, char **argv, FILE *out, char *err,
		       size_t errlen)
{
	/* getopt keeps its position in globals: start over, and say nothing itself */
	optind = 1;
	opterr = 0;
	int opt, idx;
	while ((opt = getopt_long(argc, argv, "", loadgen_options, &idx)) != -1) {
		if (opt == OPT_HELP) {
			loadgen_args_usage(out);
			return 1;
		}
		if (opt == '?' || opt == ':') {
			snprintf(err, errlen, "%s: unknown option or missing value",
				 argv[optind - 1] ? argv[optind - 1] : "?");
			return -EINVAL;
		}
		int rc = parse_one(cfg, opt, loadgen_options[idx].name, optarg ? optarg : "", err,
				   errlen);
		if (rc < 0)
			return rc;
	}
	if (optind < argc) {
		snprintf(err, errlen, "%s: unexpected argument", argv[optind]);
		return -EINVAL;
	}
	if (!cfg->server) {
		snprintf(err, errlen, "--server is required");
		return -EINVAL;
	}
	if (!cfg->local) {
		if (!cfg->src_count) {
			snprintf(err, errlen, "--local (or --src) is required");
			return -EINVAL;
		}
		cfg->local = cfg->src_base;
		cfg->local_prefix = 32;
	}
	if (cfg->sessions == 0 && cfg->duration_s == 0 && !cfg->idle) {
		snprintf(err, errlen, "--sessions 0 needs --duration");
		return -EINVAL;
	}
	if (cfg->bad_rcpt_every && !cfg->bad_rcpt[0]) {
		snprintf(err, errlen, "--bad-rcpt-every needs --bad-rcpt");
		return -EINVAL;
	}
	if (cfg->pregreet && cfg->idle) {
		snprintf(err, errlen, "--pregreet and --idle exclude each other");
		return -EINVAL;
	}
	if ((cfg->pregreet || cfg->idle) && cfg->listed) {
		snprintf(err, errlen, "--listed excludes --pregreet and --idle");
		return -EINVAL;
	}
	if (cfg->nalso && (cfg->duration_s == 0 || cfg->idle)) {
		snprintf(err, errlen, "--also needs --duration (and no --idle)");
		return -EINVAL;
	}
	if (cfg->idle && cfg->sessions < cfg->concurrency)
		cfg->sessions = cfg->concurrency; /* idle: the concurrency is the point */
	return 0;
}
