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

uint32_t net_csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 1) {
		sum += (uint32_t)(p[0] << 8 | p[1]);
		p += 2;
		len -= 2;
		if (sum & 0x80000000u)
			sum = (sum & 0xffff) + (sum >> 16);
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
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
