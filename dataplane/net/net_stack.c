/* The stack object: creating and destroying it, its configuration and statistics, and the
 * entry points the poll loop calls (frames in, timers). Everything below is reached from
 * here: fault injection (net_fault.c), frame input (net_ip.c), TCP's timers (net_tcp*.c),
 * the neighbour caches (net_link.c, net_ip.c). */
#include "net_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net_timer.h"

const char *net_event_name(enum net_event ev)
{
	static const char *const names[NET_EV_MAX] = { "accept", "connected", "readable",
						       "writable", "abort" };
	return (unsigned)ev < NET_EV_MAX ? names[ev] : "?";
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

struct net_stack *net_stack_create(const struct net_config *cfg, const struct net_ops *ops,
				   uint64_t now_us)
{
	if (!cfg || !ops || !ops->tx_alloc || !ops->tx_send || !ops->event) {
		errno = EINVAL;
		return NULL;
	}
	struct net_config c = *cfg;
	if (!c.mtu)
		c.mtu = 1500;
	if (!c.max_conns)
		c.max_conns = 65536;
	if (!c.syn_backlog)
		c.syn_backlog = 1024;
	if (!c.time_wait_max)
		c.time_wait_max = 65536;
	if (!c.rcvbuf)
		c.rcvbuf = 65536;
	if (!c.sndbuf)
		c.sndbuf = 65536;
	if (!c.time_wait_ms)
		c.time_wait_ms = 60000;
	if (!c.rst_per_sec)
		c.rst_per_sec = 1000;
	if (!c.icmp_per_sec)
		c.icmp_per_sec = 100;
	if (!c.delack_ms)
		c.delack_ms = 40;
	if (c.mtu < 576 || c.mtu > 9000 || c.ipv4_prefix > 32 || c.rcvbuf < 1024 ||
	    c.rcvbuf > (1u << 20) || c.sndbuf < 1024 || c.sndbuf > (1u << 20) ||
	    c.max_conns > (1u << 24) || c.time_wait_max > (1u << 24) || c.delack_ms >= 500 ||
	    (uint64_t)__builtin_bswap32(c.ipv4_src_base) + c.ipv4_src_count > (1ull << 32)) {
		/* RFC 1122 4.2.3.2: an ACK must not be delayed 500 ms or more. */
		errno = EINVAL;
		return NULL;
	}
	struct net_stack *s = calloc(1, sizeof(*s));
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	s->cfg = c;
	s->ops = *ops;
	s->now_us = now_us;
	s->now_ms = (uint32_t)(now_us / 1000);
	s->mss_local = (uint16_t)(c.mtu - NET_IP_HLEN - NET_TCP_HLEN);
	while ((c.rcvbuf >> s->rcv_wscale) > 65535)
		s->rcv_wscale++;
	uint32_t nb = pow2_at_least(c.max_conns);
	s->hash = calloc(nb, sizeof(*s->hash));
	s->hash_mask = nb - 1;
	uint32_t tb = pow2_at_least(c.time_wait_max);
	s->tw = calloc(c.time_wait_max, sizeof(*s->tw));
	s->tw_hash = calloc(tb, sizeof(*s->tw_hash));
	s->tw_mask = tb - 1;
	if (!s->hash || !s->tw || !s->tw_hash) {
		net_stack_destroy(s);
		errno = ENOMEM;
		return NULL;
	}
	net_timer_wheel_init(&s->wheel, s->now_ms);
	s->rst_tb = (struct net_token_bucket){ c.rst_per_sec, c.rst_per_sec, s->now_ms };
	s->icmp_tb = (struct net_token_bucket){ c.icmp_per_sec, c.icmp_per_sec, s->now_ms };
	s->next_port = (uint16_t)(32768 + (net_siphash(c.secret, "port", 4) % 28000));
	static const uint8_t zero16[16];
	if (memcmp(c.ipv6, zero16, 16) != 0) {
		/* RFC 4291 2.5.1 / appendix A: fe80::, then the MAC as modified EUI-64. */
		s->has_ipv6 = true;
		s->ll6[0] = 0xfe;
		s->ll6[1] = 0x80;
		s->ll6[8] = c.mac[0] ^ 2;
		s->ll6[9] = c.mac[1];
		s->ll6[10] = c.mac[2];
		s->ll6[11] = 0xff;
		s->ll6[12] = 0xfe;
		s->ll6[13] = c.mac[3];
		s->ll6[14] = c.mac[4];
		s->ll6[15] = c.mac[5];
	}
	if (c.ipv4_gateway)
		net_arp_request(s, c.ipv4_gateway);
	if (s->has_ipv6 && memcmp(c.ipv6_gateway, zero16, 16) != 0)
		net_nd_solicit(s, c.ipv6_gateway);
	return s;
}

void net_stack_destroy(struct net_stack *s)
{
	if (!s)
		return;
	if (s->hash)
		net_tcp_free_all(s);
	net_fault_free(s);
	for (void *p = s->free_rbuf; p;) {
		void *next = *(void **)p;
		free(p);
		p = next;
	}
	for (void *p = s->free_sbuf; p;) {
		void *next = *(void **)p;
		free(p);
		p = next;
	}
	free(s->hash);
	free(s->tw);
	free(s->tw_hash);
	free(s);
}

int net_stack_listen(struct net_stack *s, uint16_t port)
{
	for (unsigned i = 0; i < s->nlisten; i++)
		if (s->listen[i] == port)
			return -EEXIST;
	if (s->nlisten == NET_MAX_LISTEN)
		return -ENOSPC;
	s->listen[s->nlisten++] = port;
	return 0;
}

int net_stack_unlisten(struct net_stack *s, uint16_t port)
{
	for (unsigned i = 0; i < s->nlisten; i++)
		if (s->listen[i] == port) {
			s->listen[i] = s->listen[--s->nlisten];
			net_tcp_reset_half_open(s, port);
			return 0;
		}
	return -ENOENT;
}

void net_stack_set_pressure(struct net_stack *s, bool low)
{
	s->pressure = low;
}

const struct net_counters *net_stack_counters(const struct net_stack *s)
{
	return &s->cnt;
}

uint32_t net_stack_conn_count(const struct net_stack *s)
{
	return s->nconns;
}

uint32_t net_stack_time_wait_count(const struct net_stack *s)
{
	return s->tw_live;
}

uint32_t net_stack_buffers_in_use(const struct net_stack *s)
{
	return s->bufs_in_use;
}

static void stack_clock(struct net_stack *s, uint64_t now_us)
{
	if (now_us > s->now_us) {
		s->now_us = now_us;
		s->now_ms = (uint32_t)(now_us / 1000);
	}
}

void net_stack_input(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags,
		     uint64_t now_us)
{
	stack_clock(s, now_us);
	s->depth++;
	if (__builtin_expect(s->fault != NULL, 0))
		net_fault_rx(s, frame, len, rx_flags, net_input_frame);
	else
		net_input_frame(s, frame, len, rx_flags);
	if (--s->depth == 0)
		net_tcp_reap(s);
}

void net_stack_poll(struct net_stack *s, uint64_t now_us)
{
	stack_clock(s, now_us);
	s->depth++;
	if (__builtin_expect(s->fault != NULL, 0))
		net_fault_poll(s, net_input_frame);
	net_timer_advance(&s->wheel, s->now_ms, net_tcp_timer_fire, s);
	net_tcp_poll(s);
	/* Keep trying to resolve the gateway, once a second (RFC 1122 2.3.2.1 limits ARP
	 * requests for one address to one per second). */
	uint8_t mac[6];
	if (s->cfg.ipv4_gateway && !net_arp_lookup(s, s->cfg.ipv4_gateway, mac) &&
	    net_tick_le(s->arp_next_try, s->now_ms))
		net_arp_request(s, s->cfg.ipv4_gateway);
	/* The same for the IPv6 router (RFC 4861 7.2.2: RetransTimer, 1 s). */
	static const uint8_t zero16[16];
	if (s->has_ipv6 && memcmp(s->cfg.ipv6_gateway, zero16, 16) != 0 &&
	    !net_nd_lookup(s, s->cfg.ipv6_gateway, mac) && net_tick_le(s->nd_next_try, s->now_ms))
		net_nd_solicit(s, s->cfg.ipv6_gateway);
	if (--s->depth == 0)
		net_tcp_reap(s);
}
