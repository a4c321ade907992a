/* Flow hashing for steering packets between lcores: which lcore owns a frame is decided
 * before any stack sees it, from the raw bytes, so this parser faces the wire first.
 *
 * net_flow_hash() keys a 64-bit mix of a TCP segment's addresses and ports (IPv4 or IPv6
 * without extension headers): the same for every segment of one direction of a flow, and
 * unpredictable without the key, so a sender cannot aim its flows at one lcore. Anything
 * else (ARP, ICMP, UDP, IPv4 fragments, IPv6 extension headers, short frames) hashes to 0:
 * the lcore that polled it handles it. Nothing is validated beyond what the hash reads;
 * the owning stack validates the rest. */
#ifndef MXGATE_DATAPLANE_NET_FLOW_H
#define MXGATE_DATAPLANE_NET_FLOW_H

#include <stddef.h>
#include <stdint.h>

/* The hash (never 0 for a TCP segment), or 0; *tcp_flags gets the TCP flags byte of a
 * segment (untouched otherwise). */
uint64_t net_flow_hash(const uint64_t key[2], const uint8_t *frame, size_t len,
		       uint8_t *tcp_flags);

/* The owner among n lcores of a flow hash (n >= 1): an even spread without a division. */
static inline unsigned net_flow_pick(uint64_t hash, unsigned n)
{
	return (unsigned)(((hash >> 32) * n) >> 32);
}

#endif
