/* Small helpers: SipHash-2-4 (keys SYN cookies, ISNs, the connection hash: an attacker
 * who cannot guess the secret can neither forge a cookie nor aim at one hash bucket), the
 * Internet checksum, a token bucket. */
#include "net_internal.h"

#include <string.h>
#include <sys/socket.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                           \
	do {                                                                               \
		v0 += v1;                                                                  \
		v1 = ROTL(v1, 13);                                                         \
		v1 ^= v0;                                                                  \
		v0 = ROTL(v0, 32);                                                         \
		v2 += v3;                                                                  \
		v3 = ROTL(v3, 16);                                                         \
		v3 ^= v2;                                                                  \
		v0 += v3;                                                                  \
		v3 = ROTL(v3, 21);                                                         \
		v3 ^= v0;                                                                  \
		v2 += v1;                                                                  \
		v1 = ROTL(v1, 17);                                                         \
		v1 ^= v2;                                                                  \
		v2 = ROTL(v2, 32);                                                         \
	} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* SipHash-2-4 (Aumasson and Bernstein, 2012). */
uint64_t net_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	size_t end = len - (len % 8);
	for (size_t i = 0; i < end; i += 8) {
		uint64_t m = le64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)in[end + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* End-around carry down to 16 bits; a sum that was not zero never becomes zero, so the
 * folded form stays interchangeable with the unfolded one under net_csum_fold(). */
static uint32_t net_csum_fold16(uint64_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint32_t)acc;
}

/* The Internet checksum's sum (RFC 1071): 16-bit big-endian words, a last odd byte as the
 * high half of a word. It is added eight bytes at a time in the machine's own byte order
 * into 64 bits (RFC 1071 2.(B): the one's complement sum is independent of byte order up
 * to a swap of the result, and 2.(C): deferred carries), then folded and swapped: every
 * received and sent TCP segment goes through here (memif and af_packet offer no checksum
 * offload), a 16-bit loop cost about 1.5 cycles a byte. */
uint32_t net_csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t acc = 0;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		acc += (v & 0xffffffffu) + (v >> 32); /* < 2^33 a step: no overflow below 2^31 steps */
		p += 8;
		len -= 8;
	}
	if (len >= 4) {
		uint32_t v;
		memcpy(&v, p, 4);
		acc += v;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t v;
		memcpy(&v, p, 2);
		acc += v;
		p += 2;
		len -= 2;
	}
	if (len) {
		/* the odd byte, at an even offset: the high half of a big-endian word */
		uint8_t last[2] = { p[0], 0 };
		uint16_t v;
		memcpy(&v, last, 2);
		acc += v;
	}
	uint32_t s = net_csum_fold16(acc);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	s = ((s >> 8) | (s << 8)) & 0xffff;
#endif
	return net_csum_fold16((uint64_t)sum + s);
}

uint16_t net_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* rate tokens per second, burst of one second's worth. */
bool net_tb_take(struct net_token_bucket *tb, uint32_t now_ms)
{
	uint32_t elapsed = now_ms - tb->last_ms;
	if (elapsed) {
		uint64_t add = (uint64_t)elapsed * tb->rate / 1000;
		if (add) {
			uint64_t t = tb->tokens + add;
			tb->tokens = (uint32_t)(t > tb->rate ? tb->rate : t);
			tb->last_ms = now_ms;
		}
	}
	if (!tb->tokens)
		return false;
	tb->tokens--;
	return true;
}

/* The connection's own end, as net_conn_peer() gives the other (IPv4 addresses sit in the
 * last four bytes of laddr). */
void net_conn_local(const struct net_conn *c, int *family, uint8_t addr[16], uint16_t *port)
{
	*family = (c->flags & CF_IPV6) ? AF_INET6 : AF_INET;
	memset(addr, 0, 16);
	if (c->flags & CF_IPV6)
		memcpy(addr, c->laddr, 16);
	else
		memcpy(addr, c->laddr + 12, 4);
	*port = c->lport;
}
