/* mxgate-loadgen's traffic classes (perf/loadgen/loadgen_mix.c) and SYN flood
 * (loadgen_synflood.c): the --also specs (every key, every bound, every error), the options
 * that go with them, each class's configuration, the stack's source cover, the per-class
 * JSON paths; the SYN frames (fields and both checksums verified independently, sources
 * within the range), the rate, and what the observer learns and counts from received
 * frames, cut at every length (heap buffers of exactly that length). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"
#include "loadgen_mix.h"
#include "loadgen_parse.h"
#include "testing.h"

static uint32_t ip(const char *s)
{
	return inet_addr(s);
}

static void test_spec_ok(void)
{
	struct loadgen_class_spec sp;
	char err[128];
	CHECK_INT_EQ(loadgen_class_spec_parse("pregreet:src=10.1.0.0/16", &sp, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(sp.kind, LOADGEN_CLASS_PREGREET);
	CHECK_INT_EQ(sp.src_base, ip("10.1.0.1"));
	CHECK_INT_EQ(sp.src_count, 65534);
	CHECK_INT_EQ(sp.concurrency, 1000); /* the default */
	CHECK(sp.rate == 0);
	CHECK_INT_EQ(loadgen_class_spec_parse("listed:concurrency=7,src=10.2.0.1-10.2.3.232,"
					      "rate=12.5",
					      &sp, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(sp.kind, LOADGEN_CLASS_LISTED);
	CHECK_INT_EQ(sp.src_count, 1000);
	CHECK_INT_EQ(sp.concurrency, 7);
	CHECK(sp.rate == 12.5);
	CHECK_INT_EQ(loadgen_class_spec_parse("synflood:src=172.16.0.0/12,rate=50000", &sp, err,
					      sizeof(err)),
		     0);
	CHECK_INT_EQ(sp.kind, LOADGEN_CLASS_SYNFLOOD);
	CHECK_INT_EQ(sp.src_count, (1u << 20) - 2);
	CHECK(sp.rate == 50000);
	CHECK_STR_EQ(loadgen_class_kind_name(LOADGEN_CLASS_SYNFLOOD), "synflood");
	CHECK_STR_EQ(loadgen_class_kind_name(LOADGEN_CLASS_MAX), "?");
}

static void test_spec_bad(void)
{
	static const char *const bad[] = {
		"",
		"pregreet",
		"pregreet:",
		"bots:src=10.1.0.0/16",
		"pregreet:rate=5",                      /* no src */
		"pregreet:src=10.1.0.0/16,",            /* empty item */
		"pregreet:src=",                        /* empty value */
		"pregreet:=10.1.0.0/16",
		"pregreet:src=10.1.0.0/4",              /* too wide */
		"pregreet:src=127.0.0.0/16",            /* reserved */
		"pregreet:src=10.1.0.0/16,concurrency=0",
		"pregreet:src=10.1.0.0/16,concurrency=16777217",
		"pregreet:src=10.1.0.0/16,concurrency=-1",
		"pregreet:src=10.1.0.0/16,concurrency=1x",
		"pregreet:src=10.1.0.0/16,rate=-1",
		"pregreet:src=10.1.0.0/16,rate=nan",
		"pregreet:src=10.1.0.0/16,rate=2e9",
		"pregreet:src=10.1.0.0/16,color=red",
		"synflood:src=172.16.0.0/12",           /* no rate */
		"synflood:src=172.16.0.0/12,rate=0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct loadgen_class_spec sp;
		char err[128] = "";
		int rc = loadgen_class_spec_parse(bad[i], &sp, err, sizeof(err));
		if (rc != -EINVAL || !err[0])
			fprintf(stderr, "accepted or no reason: \"%s\"\n", bad[i]);
		CHECK_INT_EQ(rc, -EINVAL);
		CHECK(err[0] != 0);
	}
	/* too long for the bounded copy */
	char *lng = malloc(LOADGEN_NAME_MAX + 10);
	memset(lng, 'a', LOADGEN_NAME_MAX + 9);
	lng[LOADGEN_NAME_MAX + 9] = 0;
	memcpy(lng, "listed:src=", 11);
	struct loadgen_class_spec sp;
	char err[128];
	CHECK_INT_EQ(loadgen_class_spec_parse(lng, &sp, err, sizeof(err)), -EINVAL);
	free(lng);
}

static void test_args(void)
{
	struct loadgen_config cfg;
	char err[256];
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--src", "10.3.0.1-10.3.0.100", "--duration", "5",
			   "--sessions", "0", "--also", "pregreet:src=10.1.0.1-10.1.3.232",
			   "--also", "listed:src=10.2.0.1-10.2.3.232,concurrency=10", "--also",
			   "synflood:src=172.16.0.0/12,rate=1000", NULL),
		     0);
	CHECK_INT_EQ(cfg.nalso, 3);
	CHECK_INT_EQ(cfg.also[1].kind, LOADGEN_CLASS_LISTED);
	CHECK_INT_EQ(cfg.also[1].concurrency, 10);
	/* a fifth class */
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--duration", "5", "--also", "pregreet:src=10.1.0.1",
			   "--also", "pregreet:src=10.1.0.2", "--also", "pregreet:src=10.1.0.3",
			   "--also", "pregreet:src=10.1.0.4", "--also", "pregreet:src=10.1.0.5",
			   NULL),
		     -EINVAL);
	CHECK(strstr(err, "--also") != NULL);
	/* a bad spec names the option and says why */
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--duration", "5", "--also", "storm:src=10.1.0.1",
			   NULL),
		     -EINVAL);
	CHECK(strstr(err, "--also") != NULL && strstr(err, "kind") != NULL);
	/* classes run for the main class's duration */
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--sessions", "10", "--also", "pregreet:src=10.1.0.1",
			   NULL),
		     -EINVAL);
	CHECK(strstr(err, "--duration") != NULL);
	/* --listed is a mode of its own */
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--listed", NULL),
		     0);
	CHECK(cfg.listed);
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--listed", "--pregreet", NULL),
		     -EINVAL);
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2", "--local",
			   "10.88.0.1/24", "--listed", "--idle", NULL),
		     -EINVAL);
}

static void test_class_config_and_cover(void)
{
	struct loadgen_config cfg;
	char err[256];
	CHECK_INT_EQ(parse(&cfg, err, sizeof(err), "--server", "10.88.0.2:2525", "--local",
			   "10.88.0.1/24", "--src", "10.3.0.1-10.3.0.100", "--duration", "5",
			   "--sessions", "0", "--messages", "10", "--rate", "2000", "--rate-of",
			   "messages", "--bad-rcpt", "x@y", "--bad-rcpt-every", "3", "--label",
			   "run", "--json", "out.json", "--also",
			   "pregreet:src=10.1.0.1-10.1.3.232,concurrency=500,rate=20000", "--also",
			   "synflood:src=172.16.0.0/12,rate=1000", "--also",
			   "listed:src=10.2.0.1-10.2.3.232", NULL),
		     0);
	struct loadgen_config c;
	loadgen_class_config(&cfg, &cfg.also[0], &c);
	CHECK(c.pregreet && !c.listed && !c.idle);
	CHECK_INT_EQ(c.src_base, ip("10.1.0.1"));
	CHECK_INT_EQ(c.src_count, 1000);
	CHECK_INT_EQ(c.concurrency, 500);
	CHECK_INT_EQ(c.handshakes, 500);
	CHECK(c.rate == 20000);
	CHECK_INT_EQ(c.rate_of, LOADGEN_RATE_SESSIONS);
	CHECK_INT_EQ(c.sessions, 0);
	CHECK(c.duration_s == 5);
	CHECK_INT_EQ(c.server, ip("10.88.0.2"));
	CHECK_INT_EQ(c.server_port, 2525);
	CHECK_INT_EQ(c.messages, 1);
	CHECK_INT_EQ(c.bad_rcpt_every, 0);
	CHECK_INT_EQ(c.nalso, 0);
	CHECK_STR_EQ(c.json, "");
	CHECK_STR_EQ(c.label, "run pregreet");
	CHECK_STR_EQ(c.helo, "pregreet.example");
	loadgen_class_config(&cfg, &cfg.also[2], &c);
	CHECK(c.listed && !c.pregreet);
	CHECK_INT_EQ(c.concurrency, 1000);
	CHECK(c.rate == 0);

	/* the cover: 10.1.0.1 .. 10.3.0.100, the flood's 172.16/12 left out */
	uint32_t base, count;
	CHECK_INT_EQ(loadgen_mix_src_cover(&cfg, &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.1.0.1"));
	CHECK_INT_EQ(count, ntohl(ip("10.3.0.100")) - ntohl(ip("10.1.0.1")) + 1);
	/* a class on the other side of the server: the cover would take its address */
	cfg.also[1].kind = LOADGEN_CLASS_LISTED;
	cfg.also[1].src_base = ip("10.99.0.1");
	cfg.also[1].src_count = 10;
	CHECK_INT_EQ(loadgen_mix_src_cover(&cfg, &base, &count), -EINVAL);
	/* ... or of the next hop */
	cfg.also[1].src_base = ip("10.2.5.1");
	cfg.next_hop = ip("10.2.4.1");
	CHECK_INT_EQ(loadgen_mix_src_cover(&cfg, &base, &count), -EINVAL);
	cfg.next_hop = 0;
	CHECK_INT_EQ(loadgen_mix_src_cover(&cfg, &base, &count), 0);
	/* without --src the main class is --local alone */
	cfg.src_count = 0;
	cfg.nalso = 0;
	CHECK_INT_EQ(loadgen_mix_src_cover(&cfg, &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.88.0.1"));
	CHECK_INT_EQ(count, 1);
}

static void test_json_path(void)
{
	char p[64];
	CHECK_INT_EQ(loadgen_mix_json_path(p, sizeof(p), "/r/run.json", "pregreet"), 0);
	CHECK_STR_EQ(p, "/r/run.pregreet.json");
	CHECK_INT_EQ(loadgen_mix_json_path(p, sizeof(p), "run", "listed"), 0);
	CHECK_STR_EQ(p, "run.listed.json");
	CHECK_INT_EQ(loadgen_mix_json_path(p, sizeof(p), ".json", "synflood"), 0);
	CHECK_STR_EQ(p, ".synflood.json");
	CHECK_INT_EQ(loadgen_mix_json_path(p, 16, "a-long-name.json", "synflood"),
		     -ENAMETOOLONG);
}

/* ---- the SYN flood ---- */

static const uint8_t SMAC[6] = { 2, 0, 0, 0, 0, 1 }, DMAC[6] = { 2, 0, 0, 0, 0, 2 };

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* An ARP reply from ip with mac (RFC 826), a heap buffer of exactly its length. */
static uint8_t *arp_frame(uint32_t from_ip, const uint8_t mac[6], size_t *len)
{
	*len = 42;
	uint8_t *f = calloc(1, *len);
	memcpy(f, SMAC, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08;
	f[13] = 0x06;
	uint8_t *a = f + 14;
	a[1] = 1;
	a[2] = 0x08;
	a[4] = 6;
	a[5] = 4;
	a[7] = 2;
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, &from_ip, 4);
	return f;
}

/* A TCP segment from `from` to `to` with flags, as the server would answer. */
static uint8_t *tcp_frame(uint32_t from, uint32_t to, uint8_t flags, size_t *len)
{
	*len = 54;
	uint8_t *f = calloc(1, *len);
	memcpy(f, SMAC, 6);
	memcpy(f + 6, DMAC, 6);
	f[12] = 0x08;
	uint8_t *iph = f + 14;
	iph[0] = 0x45;
	iph[3] = 40;
	iph[9] = 6;
	memcpy(iph + 12, &from, 4);
	memcpy(iph + 16, &to, 4);
	iph[20 + 12] = 0x50;
	iph[20 + 13] = flags;
	return f;
}

static void test_synflood_frames(void)
{
	struct loadgen_class_spec sp;
	char err[128];
	CHECK_INT_EQ(loadgen_class_spec_parse("synflood:src=172.16.0.0/12,rate=1000", &sp, err,
					      sizeof(err)),
		     0);
	struct loadgen_synflood sf;
	loadgen_synflood_init(&sf, &sp, ip("10.88.0.2"), 25, SMAC, 42, 1000000);
	/* nothing is due before the server's MAC is known */
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 2000000, 64), 0);
	size_t n;
	uint8_t *arp = arp_frame(ip("10.88.0.2"), DMAC, &n);
	/* every cut of the ARP reply: read within bounds, learned only when whole enough */
	for (size_t cut = 0; cut < n; cut++) {
		uint8_t *c = malloc(cut ? cut : 1);
		memcpy(c, arp, cut);
		loadgen_synflood_observe(&sf, c, cut);
		free(c);
		CHECK(!sf.have_dmac);
	}
	/* an ARP reply from another address teaches nothing */
	uint8_t *other = arp_frame(ip("10.88.0.9"), SMAC, &n);
	loadgen_synflood_observe(&sf, other, n);
	CHECK(!sf.have_dmac);
	free(other);
	loadgen_synflood_observe(&sf, arp, n);
	CHECK(sf.have_dmac);
	CHECK_MEM_EQ(sf.dmac, 6, DMAC, 6);
	free(arp);

	/* the rate: 1,000/s from the last look without the MAC (2 s): a second's worth is
	 * capped at a 10 ms burst; then 5 ms later, 5 SYNs */
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 3000000, 64), 10);
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 3005000, 64), 5);
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 3005000, 64), 0);
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 4000000, 64), 10);
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 4003000, 2), 2); /* max */

	uint8_t small[LOADGEN_SYN_FRAME_LEN - 1];
	CHECK_INT_EQ(loadgen_synflood_frame(&sf, small, sizeof(small), 4003000), 0);
	CHECK_INT_EQ(sf.sent, 0);
	uint32_t lo = ntohl(ip("172.16.0.1")), hi = ntohl(ip("172.31.255.254"));
	uint32_t seen_lo = 0xffffffffu, seen_hi = 0;
	uint16_t ports[8];
	for (int i = 0; i < 2000; i++) {
		uint8_t *f = malloc(LOADGEN_SYN_FRAME_LEN);
		size_t len = loadgen_synflood_frame(&sf, f, LOADGEN_SYN_FRAME_LEN,
						    4003000 + (uint64_t)i);
		CHECK_INT_EQ(len, LOADGEN_SYN_FRAME_LEN);
		CHECK_MEM_EQ(f, 6, DMAC, 6);
		CHECK_MEM_EQ(f + 6, 6, SMAC, 6);
		CHECK(f[12] == 0x08 && f[13] == 0x00);
		const uint8_t *iph = f + 14, *t = iph + 20;
		CHECK_INT_EQ(iph[0], 0x45);
		CHECK_INT_EQ(iph[2] << 8 | iph[3], 44);
		CHECK_INT_EQ(iph[9], 6);
		CHECK_INT_EQ(fold(sum16(iph, 20, 0)), 0xffff); /* RFC 791 header checksum */
		uint32_t src, dst;
		memcpy(&src, iph + 12, 4);
		memcpy(&dst, iph + 16, 4);
		CHECK_INT_EQ(dst, ip("10.88.0.2"));
		uint32_t h = ntohl(src);
		CHECK(h >= lo && h <= hi);
		seen_lo = h < seen_lo ? h : seen_lo;
		seen_hi = h > seen_hi ? h : seen_hi;
		/* the TCP checksum over the pseudo header (RFC 9293 3.1) */
		uint32_t ph = sum16(iph + 12, 8, 0) + 6 + 24;
		CHECK_INT_EQ(fold(sum16(t, 24, ph)), 0xffff);
		CHECK_INT_EQ(t[2] << 8 | t[3], 25);
		CHECK_INT_EQ(t[13], 0x02); /* SYN alone */
		CHECK_INT_EQ(t[12] >> 4, 6);
		CHECK(t[20] == 2 && t[21] == 4);
		uint16_t sport = (uint16_t)(t[0] << 8 | t[1]);
		CHECK(sport >= 1024);
		if (i < 8)
			ports[i] = sport;
		free(f);
	}
	CHECK_INT_EQ(sf.sent, 2000);
	CHECK_INT_EQ(sf.start_us, 4003000);
	CHECK_INT_EQ(sf.end_us, 4003000 + 1999);
	/* spread over the range (2,000 draws from a million: both ends within a few %) */
	CHECK(seen_lo - lo < (hi - lo) / 20 && hi - seen_hi < (hi - lo) / 20);
	CHECK(ports[0] != ports[1] || ports[1] != ports[2]);

	/* the server's answers to flood addresses are counted, others not; cut frames read
	 * nothing beyond their end */
	size_t len;
	uint8_t *synack = tcp_frame(ip("10.88.0.2"), ip("172.20.1.2"), 0x12, &len);
	uint8_t *rst = tcp_frame(ip("10.88.0.2"), ip("172.20.1.3"), 0x14, &len);
	uint8_t *mine = tcp_frame(ip("10.88.0.2"), ip("10.3.0.1"), 0x12, &len);
	uint8_t *stranger = tcp_frame(ip("10.88.0.7"), ip("172.20.1.2"), 0x12, &len);
	/* cut before the TCP flags (14 + 20 + 13): nothing counted; from there on the flags
	 * are read (and nothing beyond the cut) */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *c = malloc(cut ? cut : 1);
		memcpy(c, synack, cut);
		loadgen_synflood_observe(&sf, c, cut);
		free(c);
		CHECK_INT_EQ(sf.synack_seen, cut < 48 ? 0 : cut - 47);
	}
	sf.synack_seen = 0;
	loadgen_synflood_observe(&sf, synack, len);
	loadgen_synflood_observe(&sf, synack, len);
	loadgen_synflood_observe(&sf, rst, len);
	loadgen_synflood_observe(&sf, mine, len);
	loadgen_synflood_observe(&sf, stranger, len);
	CHECK_INT_EQ(sf.synack_seen, 2);
	CHECK_INT_EQ(sf.rst_seen, 1);
	free(synack);
	free(rst);
	free(mine);
	free(stranger);

	/* stopped: nothing more is due */
	loadgen_synflood_stop(&sf, 5000000);
	CHECK(sf.stopped);
	CHECK_INT_EQ(sf.end_us, 5000000);
	CHECK_INT_EQ(loadgen_synflood_due(&sf, 9000000, 64), 0);
}

/* The dmac is also learned from any IPv4 frame of the server (an ARP entry learned
 * before the flood started: the first SYN-ACK of a session). */
static void test_synflood_learn_ipv4(void)
{
	struct loadgen_class_spec sp;
	char err[128];
	CHECK_INT_EQ(loadgen_class_spec_parse("synflood:src=172.16.0.1,rate=10", &sp, err,
					      sizeof(err)),
		     0);
	struct loadgen_synflood sf;
	loadgen_synflood_init(&sf, &sp, ip("10.88.0.2"), 25, SMAC, 0, 0);
	size_t len;
	uint8_t *f = tcp_frame(ip("10.88.0.3"), ip("10.3.0.1"), 0x10, &len);
	loadgen_synflood_observe(&sf, f, len);
	CHECK(!sf.have_dmac);
	free(f);
	f = tcp_frame(ip("10.88.0.2"), ip("10.3.0.1"), 0x10, &len);
	loadgen_synflood_observe(&sf, f, len);
	CHECK(sf.have_dmac);
	CHECK_MEM_EQ(sf.dmac, 6, DMAC, 6);
	free(f);
	/* one source address: every SYN from it */
	uint8_t buf[LOADGEN_SYN_FRAME_LEN];
	CHECK_INT_EQ(loadgen_synflood_frame(&sf, buf, sizeof(buf), 1), LOADGEN_SYN_FRAME_LEN);
	uint32_t src;
	memcpy(&src, buf + 14 + 12, 4);
	CHECK_INT_EQ(src, ip("172.16.0.1"));
}

int main(void)
{
	RUN_TEST(test_spec_ok);
	RUN_TEST(test_spec_bad);
	RUN_TEST(test_args);
	RUN_TEST(test_class_config_and_cover);
	RUN_TEST(test_json_path);
	RUN_TEST(test_synflood_frames);
	RUN_TEST(test_synflood_learn_ipv4);
	return TEST_RESULT();
}
