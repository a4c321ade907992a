/* The generator's SYN flood: TCP SYNs (RFC 9293 3.1 header, with the MSS option of
 * 3.7.1) to the server from random addresses and ports of a range, at a set rate, that no
 * one ever completes: what a spoofed flood looks like to the server (RFC 4987 section 2).
 * The frames are built here, checksums included (RFC 791 3.1, RFC 9293 3.1's pseudo
 * header), and sent by the main loop beside the stack's; they never enter our stack, and
 * the server's answers (SYN-ACKs, or RSTs) are addressed to no address of ours, so the
 * stack drops them; they are counted here, from the received frames.
 *
 * No DPDK, no clock reads (time is passed in). */
#include "loadgen_mix.h"

#include <arpa/inet.h>
#include <string.h>

#define ETH_HLEN 14
#define IP_HLEN 20
#define TCP_HLEN 24 /* 20 + MSS option */

static uint64_t sf_rand(struct loadgen_synflood *sf)
{
	/* xorshift64* (Vigna 2014): fast, and plenty for spreading sources */
	uint64_t x = sf->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sf->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void loadgen_synflood_init(struct loadgen_synflood *sf, const struct loadgen_class_spec *sp,
			   uint32_t server, uint16_t server_port, const uint8_t smac[6],
			   uint64_t seed, uint64_t now_us)
{
	memset(sf, 0, sizeof(*sf));
	sf->rate = sp->rate;
	sf->src_base = ntohl(sp->src_base);
	sf->src_count = sp->src_count ? sp->src_count : 1;
	sf->dst = server;
	sf->dport = server_port;
	memcpy(sf->smac, smac, 6);
	sf->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
	sf->tokens_at_us = now_us;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32n(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4); /* stays in network order */
	return v;
}

void loadgen_synflood_observe(struct loadgen_synflood *sf, const uint8_t *frame, size_t len)
{
	if (len < ETH_HLEN)
		return;
	uint16_t type = get16(frame + 12);
	if (type == 0x0806) {
		/* ARP (RFC 826) over Ethernet/IPv4: sha at 8, spa at 14 of the payload */
		if (!sf->have_dmac && len >= ETH_HLEN + 28 && get32n(frame + ETH_HLEN + 14) == sf->dst) {
			memcpy(sf->dmac, frame + ETH_HLEN + 8, 6);
			sf->have_dmac = true;
		}
		return;
	}
	if (type != 0x0800 || len < ETH_HLEN + IP_HLEN)
		return;
	const uint8_t *ip = frame + ETH_HLEN;
	if ((ip[0] >> 4) != 4 || get32n(ip + 12) != sf->dst)
		return;
	if (!sf->have_dmac) {
		memcpy(sf->dmac, frame + 6, 6);
		sf->have_dmac = true;
	}
	size_t ihl = (size_t)(ip[0] & 15) * 4;
	if (ip[9] != 6 || ihl < IP_HLEN || len < ETH_HLEN + ihl + 14)
		return;
	uint32_t to = ntohl(get32n(ip + 16));
	if (to - sf->src_base >= sf->src_count)
		return;
	uint8_t flags = ip[ihl + 13];
	if (flags & 0x04)
		sf->rst_seen++;
	else if ((flags & 0x12) == 0x12)
		sf->synack_seen++;
}

uint32_t loadgen_synflood_due(struct loadgen_synflood *sf, uint64_t now_us, uint32_t max)
{
	if (sf->stopped || !sf->have_dmac || sf->rate <= 0) {
		sf->tokens_at_us = now_us;
		return 0;
	}
	if (now_us > sf->tokens_at_us) {
		sf->tokens += sf->rate * (double)(now_us - sf->tokens_at_us) / 1e6;
		sf->tokens_at_us = now_us;
	}
	/* a burst of at most 10 ms worth (at least one) */
	double cap = sf->rate / 100 > 1 ? sf->rate / 100 : 1;
	if (sf->tokens > cap)
		sf->tokens = cap;
	uint32_t n = sf->tokens >= (double)max ? max : (uint32_t)sf->tokens;
	sf->tokens -= n;
	return n;
}

/* The Internet checksum's sum (RFC 1071) of len bytes, added to sum. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

size_t loadgen_synflood_frame(struct loadgen_synflood *sf, uint8_t *buf, size_t cap,
			      uint64_t now_us)
{
	if (cap < LOADGEN_SYN_FRAME_LEN)
		return 0;
	uint64_t r1 = sf_rand(sf), r2 = sf_rand(sf);
	uint32_t src = htonl(sf->src_base + (uint32_t)(r1 % sf->src_count));
	uint16_t sport = (uint16_t)(1024 + (r1 >> 32) % 64512);
	memset(buf, 0, LOADGEN_SYN_FRAME_LEN);
	memcpy(buf, sf->dmac, 6);
	memcpy(buf + 6, sf->smac, 6);
	put16(buf + 12, 0x0800);
	uint8_t *ip = buf + ETH_HLEN;
	ip[0] = 0x45;
	put16(ip + 2, IP_HLEN + TCP_HLEN);
	put16(ip + 4, (uint16_t)(r2 >> 48)); /* identification */
	put16(ip + 6, 0x4000);              /* DF */
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &sf->dst, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
	uint8_t *t = ip + IP_HLEN;
	put16(t, sport);
	put16(t + 2, sf->dport);
	uint32_t seq = htonl((uint32_t)r2);
	memcpy(t + 4, &seq, 4);
	t[12] = (TCP_HLEN / 4) << 4;
	t[13] = 0x02; /* SYN */
	put16(t + 14, 64240);
	t[20] = 2; /* MSS, RFC 9293 3.2 */
	t[21] = 4;
	put16(t + 22, 1460);
	uint32_t ph = csum_add(0, ip + 12, 8) + 6 + TCP_HLEN;
	put16(t + 16, csum_fold(csum_add(ph, t, TCP_HLEN)));
	if (sf->sent++ == 0)
		sf->start_us = now_us;
	sf->end_us = now_us;
	return LOADGEN_SYN_FRAME_LEN;
}

void loadgen_synflood_stop(struct loadgen_synflood *sf, uint64_t now_us)
{
	if (!sf->stopped && sf->sent)
		sf->end_us = now_us;
	sf->stopped = true;
}
