#include "dataplane/net/net_flow.h"

#include <string.h>

/* murmur3's 64-bit finaliser: every input bit reaches every output bit. */
static inline uint64_t net_flow_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

uint64_t net_flow_hash(const uint64_t key[2], const uint8_t *f, size_t len, uint8_t *tcp_flags)
{
	if (len < 14)
		return 0;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	const uint8_t *ip = f + 14;
	size_t iplen = len - 14;
	uint64_t a, b;
	const uint8_t *tcp;
	if (type == 0x0800) {
		if (iplen < 20 || (ip[0] >> 4) != 4 || ip[9] != 6)
			return 0;
		size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
		/* a fragment (MF or an offset), or too short for the ports and the flags */
		if ((ip[6] & 0x3f) || ip[7] || ihl < 20 || iplen < ihl + 14)
			return 0;
		uint32_t s, d;
		memcpy(&s, ip + 12, 4);
		memcpy(&d, ip + 16, 4);
		a = (uint64_t)s << 32 | d;
		b = 0;
		tcp = ip + ihl;
	} else if (type == 0x86dd) {
		/* next header TCP right after the fixed header, and room for ports and flags */
		if (iplen < 40 + 14 || ip[6] != 6)
			return 0;
		uint64_t w[4];
		memcpy(w, ip + 8, 32);
		a = w[0] ^ net_flow_mix(w[1] ^ key[1]);
		b = w[2] ^ net_flow_mix(w[3] ^ key[1]);
		tcp = ip + 40;
	} else {
		return 0;
	}
	uint32_t ports;
	memcpy(&ports, tcp, 4);
	*tcp_flags = tcp[13];
	uint64_t h = net_flow_mix(a ^ key[0]);
	h = net_flow_mix(h ^ b ^ ((uint64_t)ports << 17) ^ key[1]);
	return h ? h : 1;
}
