/* The stack at packet level with a virtual clock: scripted segments in, the segments it
 * sends checked field by field (RFC 9293 and the RFCs net_stack.h lists). */
#include <errno.h>

#include "net_test.h"

static uint32_t t_pseq; /* the peer's next sequence number */
static uint32_t t_sseq; /* the stack's next sequence number */
static uint32_t t_tsv = 5000; /* the peer's timestamp clock */
static bool t_use_ts;

static size_t syn_opts(uint8_t *o, bool ts, int ws)
{
	size_t n = 0;
	o[n++] = 2;
	o[n++] = 4;
	o[n++] = 0x05;
	o[n++] = 0xb4; /* 1460 */
	if (ws >= 0) {
		o[n++] = 1;
		o[n++] = 3;
		o[n++] = 3;
		o[n++] = (uint8_t)ws;
	}
	if (ts) {
		o[n++] = 4;
		o[n++] = 2;
		o[n++] = 8;
		o[n++] = 10;
		for (int i = 0; i < 4; i++)
			o[n++] = (uint8_t)(t_tsv >> (24 - 8 * i));
		for (int i = 0; i < 4; i++)
			o[n++] = 0;
	} else {
		o[n++] = 1;
		o[n++] = 1;
		o[n++] = 4;
		o[n++] = 2;
	}
	return n;
}

/* A segment from the peer on the established connection. */
static void peer(struct net_stack *s, uint8_t flags, const void *data, size_t len)
{
	uint8_t o[12];
	struct tseg t = { .seq = t_pseq, .ack = t_sseq, .flags = flags, .win = 65535,
			  .data = data, .len = len };
	if (t_use_ts) {
		t.optlen = t_opt_ts(o, ++t_tsv, 0);
		t.opt = o;
	}
	t_in(s, &t);
	t_pseq += (uint32_t)len + ((flags & (F_SYN | F_FIN)) ? 1u : 0u);
}

/* SYN, SYN-ACK, ACK; the connection is t_conn. */
static void handshake(struct net_stack *s, uint32_t isn, bool ts, int ws)
{
	uint8_t o[40];
	t_use_ts = ts;
	struct tseg syn = { .seq = isn, .flags = F_SYN, .win = 65535, .opt = o,
			    .optlen = syn_opts(o, ts, ws) };
	int before = t_ntx;
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, before + 1);
	struct pseg sa = t_last();
	CHECK(sa.ok && sa.csum_ok);
	CHECK_INT_EQ(sa.flags, F_SYN | F_ACK);
	CHECK_INT_EQ(sa.ack, isn + 1);
	t_pseq = isn + 1;
	t_sseq = sa.seq + 1;
	peer(s, F_ACK, NULL, 0);
	CHECK(t_conn != NULL);
}

static void test_handshake(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t o[40];
	t_use_ts = true;
	struct tseg syn = { .seq = 1000, .flags = F_SYN, .win = 65535, .opt = o,
			    .optlen = syn_opts(o, true, 7) };
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, 1);
	struct pseg sa = t_last();
	CHECK(sa.ok && sa.csum_ok);
	CHECK_INT_EQ(sa.flags, F_SYN | F_ACK);
	CHECK_INT_EQ(sa.ack, 1001);
	CHECK_INT_EQ(sa.sport, T_PORT);
	CHECK_INT_EQ(sa.dport, T_PEER_PORT);
	CHECK_INT_EQ(sa.mss, 1460);
	CHECK(sa.sackok);
	CHECK(sa.ts);
	CHECK_INT_EQ(sa.tsecr, t_tsv);
	CHECK_INT_EQ(sa.ws, 1); /* 64 KiB buffer: shift 1 */
	CHECK_INT_EQ(memcmp(t_tx[0].d, t_peer_mac, 6), 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), T_PORT, t_ip(T_PEER_IP),
					    T_PEER_PORT),
		     NET_TCP_SYN_RCVD);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 0);
	t_pseq = 1001;
	t_sseq = sa.seq + 1;
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 1);
	CHECK(t_conn && net_conn_state(t_conn) == NET_TCP_ESTABLISHED);
	CHECK_INT_EQ(t_ntx, 1); /* nothing answers a bare ACK */

	/* A command: READABLE, no ACK at once (delayed), an ACK within 40 ms. */
	peer(s, F_ACK | F_PSH, "EHLO x\r\n", 8);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], 1);
	size_t n;
	const uint8_t *p = net_conn_peek(t_conn, &n);
	CHECK_MEM_EQ(p, n, "EHLO x\r\n", 8);
	net_conn_consume(t_conn, n);
	CHECK_INT_EQ(t_ntx, 1);
	t_advance(s, 39);
	CHECK_INT_EQ(t_ntx, 1);
	t_advance(s, 2);
	CHECK_INT_EQ(t_ntx, 2);
	struct pseg a = t_last();
	CHECK_INT_EQ(a.flags, F_ACK);
	CHECK_INT_EQ(a.ack, 1009);
	CHECK_INT_EQ(a.seq, t_sseq);
	CHECK(a.ts && a.tsecr == t_tsv);
	/* Our TSval is a 1 ms clock: the delayed ACK left 40 ms after the SYN-ACK. */
	CHECK_INT_EQ(a.tsval - sa.tsval, 40);

	/* A reply: one segment carrying the data and the ACK. */
	peer(s, F_ACK | F_PSH, "NOOP\r\n", 6);
	CHECK_INT_EQ(net_conn_write(t_conn, "250 ok\r\n", 8), 8);
	struct pseg d = t_last();
	CHECK_INT_EQ(d.flags & (F_ACK | F_PSH), F_ACK | F_PSH);
	CHECK_MEM_EQ(d.data, d.len, "250 ok\r\n", 8);
	CHECK_INT_EQ(d.ack, 1015);
	CHECK_INT_EQ(d.seq, t_sseq);
	CHECK_INT_EQ(net_conn_unacked(t_conn), 8);
	t_sseq += 8;
	int before = t_ntx;
	t_advance(s, 100);
	CHECK_INT_EQ(t_ntx, before); /* the ACK rode on the data: no delayed ACK */
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(net_conn_unacked(t_conn), 0);
	/* Idle again: no buffer held, only the control block. */
	CHECK_INT_EQ(net_stack_buffers_in_use(s), 1); /* "NOOP\r\n" unread */
	p = net_conn_peek(t_conn, &n);
	CHECK_MEM_EQ(p, n, "NOOP\r\n", 6);
	net_conn_consume(t_conn, n);
	CHECK_INT_EQ(net_stack_buffers_in_use(s), 0);
	CHECK(net_conn_size() < 512);
	printf("  sizeof(struct net_conn) = %zu\n", net_conn_size());
	net_stack_destroy(s);
}

static void test_closed_port_rst(void)
{
	struct net_stack *s = t_stack(NULL);
	struct tseg syn = { .seq = 77, .flags = F_SYN, .win = 1000, .dport = 80 };
	t_in(s, &syn);
	struct pseg r = t_last();
	CHECK_INT_EQ(t_ntx, 1);
	CHECK_INT_EQ(r.flags, F_RST | F_ACK);
	CHECK_INT_EQ(r.seq, 0);
	CHECK_INT_EQ(r.ack, 78);
	struct tseg ack = { .seq = 5, .ack = 12345, .flags = F_ACK, .win = 1000, .dport = 80 };
	t_in(s, &ack);
	r = t_last();
	CHECK_INT_EQ(t_ntx, 2);
	CHECK_INT_EQ(r.flags, F_RST);
	CHECK_INT_EQ(r.seq, 12345);
	struct tseg rst = { .seq = 5, .flags = F_RST, .dport = 80 };
	t_in(s, &rst);
	CHECK_INT_EQ(t_ntx, 2); /* never an RST for an RST */
	/* A bad checksum is dropped without an answer. */
	uint8_t f[128];
	size_t n = t_build(f, &syn);
	f[n - 1] ^= 1;
	f[50] ^= 0x40;
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 2);
	CHECK(net_stack_counters(s)->rx_bad_csum >= 1);
	net_stack_destroy(s);
}

static void test_rst_rate_limit(void)
{
	struct net_config cfg = { .rst_per_sec = 10 };
	struct net_stack *s = t_stack(&cfg);
	for (int i = 0; i < 50; i++) {
		struct tseg syn = { .seq = (uint32_t)i, .flags = F_SYN, .win = 1000, .dport = 80 };
		t_in(s, &syn);
	}
	CHECK_INT_EQ(t_ntx, 10);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_rst_limited, 40);
	t_advance(s, 1000);
	struct tseg syn = { .seq = 99, .flags = F_SYN, .win = 1000, .dport = 80 };
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, 11);
	net_stack_destroy(s);
}

static void test_syn_cookie(void)
{
	struct net_config cfg = { .syn_backlog = 1 };
	struct net_stack *s = t_stack(&cfg);
	uint8_t o[40];
	t_tsv = 7000;
	struct tseg syn1 = { .seq = 100, .flags = F_SYN, .win = 65535, .opt = o,
			     .optlen = syn_opts(o, true, 5), .sport = 1111 };
	t_in(s, &syn1);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);
	/* The backlog is full: the next SYN is answered by cookie and keeps no state. */
	struct tseg syn2 = { .seq = 5000, .flags = F_SYN, .win = 65535, .opt = o,
			     .optlen = syn_opts(o, true, 5), .sport = 2222 };
	t_in(s, &syn2);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_sent, 1);
	struct pseg sa = t_last();
	CHECK_INT_EQ(sa.flags, F_SYN | F_ACK);
	CHECK_INT_EQ(sa.ack, 5001);
	CHECK(sa.ts && sa.sackok && sa.ws == 1);
	CHECK_INT_EQ(sa.tsval & 31, 5 | 16); /* WS 5 and SACK-permitted ride in TSval */

	/* A forged ACK (wrong cookie) gets an RST, no connection. */
	uint8_t to[12];
	t_opt_ts(to, 7001, sa.tsval);
	struct tseg bad = { .seq = 5001, .ack = sa.seq + 2, .flags = F_ACK, .win = 1000,
			    .opt = to, .optlen = 12, .sport = 2222 };
	t_in(s, &bad);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_bad, 1);
	CHECK_INT_EQ(t_last().flags, F_RST);

	/* The right ACK, 10 s later, with data: the connection exists with the options the
	 * SYN asked for, and the data is delivered. */
	t_advance(s, 10000);
	struct tseg good = { .seq = 5001, .ack = sa.seq + 1, .flags = F_ACK | F_PSH,
			     .win = 1000, .opt = to, .optlen = 12, .sport = 2222,
			     .data = "HELO a\r\n", .len = 8 };
	t_in(s, &good);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_ok, 1);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 1);
	CHECK(t_conn != NULL);
	if (t_conn) {
		size_t n;
		const uint8_t *p = net_conn_peek(t_conn, &n);
		CHECK_MEM_EQ(p, n, "HELO a\r\n", 8);
		net_conn_consume(t_conn, n);
		/* The peer's window scale (5) came back through TSecr: 1000 << 5. */
		CHECK_INT_EQ(net_conn_write(t_conn, "x", 1), 1);
		struct pseg d = t_last();
		CHECK_INT_EQ(d.seq, sa.seq + 1);
		CHECK_INT_EQ(d.ack, 5009);
		CHECK(d.ts);
	}
	/* A cookie older than its lifetime is refused. */
	struct tseg syn3 = { .seq = 9000, .flags = F_SYN, .win = 65535, .sport = 3333 };
	t_in(s, &syn3);
	struct pseg sa3 = t_last();
	t_advance(s, 4 * 64000);
	struct tseg late = { .seq = 9001, .ack = sa3.seq + 1, .flags = F_ACK, .win = 1000,
			     .sport = 3333 };
	t_in(s, &late);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_ok, 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_bad, 2);
	net_stack_destroy(s);
}

static void test_pressure_cookies(void)
{
	struct net_stack *s = t_stack(NULL);
	net_stack_set_pressure(s, true);
	struct tseg syn = { .seq = 1, .flags = F_SYN, .win = 65535 };
	t_in(s, &syn);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_sent, 1);
	/* The window of a cookie SYN-ACK shrinks too. */
	CHECK(t_last().win <= 2 * 1460);
	net_stack_set_pressure(s, false);
	struct tseg syn2 = { .seq = 1, .flags = F_SYN, .win = 65535, .sport = 999 };
	t_in(s, &syn2);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);
	net_stack_destroy(s);
	/* An established connection: under pressure its window stops growing (the right
	 * edge already promised stays, 3.8.6.2.2), and grows again afterwards. */
	s = t_stack(NULL);
	handshake(s, 10, false, -1);
	CHECK_INT_EQ(t_last().win, 65535);
	static uint8_t blob[8000];
	peer(s, F_ACK, blob, 1460);
	peer(s, F_ACK, blob, 1460);
	CHECK_INT_EQ(t_last().win, 65535 - 2920); /* not scaled: no WS option */
	net_stack_set_pressure(s, true);
	size_t n;
	net_conn_peek(t_conn, &n);
	net_conn_consume(t_conn, n);
	peer(s, F_ACK, blob, 1460);
	peer(s, F_ACK, blob, 1460);
	/* Only the promised edge (65535 beyond the first byte), not the freed space. */
	CHECK_INT_EQ(t_last().win, 65535 - 4 * 1460);
	net_conn_peek(t_conn, &n);
	net_conn_consume(t_conn, n);
	net_stack_set_pressure(s, false);
	peer(s, F_ACK, blob, 1460);
	peer(s, F_ACK, blob, 1460);
	CHECK_INT_EQ(t_last().win, 65536 - 2 * 1460); /* reopened: all the free space */
	net_stack_destroy(s);
}

/* A full connection table answers SYNs by cookie too (never silence); the cookie's ACK
 * finds no room and is dropped without a connection or a crash. */
static void test_table_full_cookies(void)
{
	struct net_config cfg = { .max_conns = 1 };
	struct net_stack *s = t_stack(&cfg);
	handshake(s, 10, false, -1);
	struct tseg syn = { .seq = 1, .flags = F_SYN, .win = 65535, .sport = 999 };
	t_in(s, &syn);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_sent, 1);
	CHECK_INT_EQ(t_last().flags, F_SYN | F_ACK);
	struct tseg ack = { .seq = 2, .ack = t_last().seq + 1, .flags = F_ACK, .win = 100,
			    .sport = 999 };
	t_in(s, &ack);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_ok, 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_conn_full, 1);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);
	net_stack_destroy(s);
}

/* Our close, then theirs: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT; the compact table holds it
 * and a retransmitted FIN is ACKed again; it expires after 2 MSL. */
static void test_active_close_time_wait(void)
{
	struct net_config cfg = { .time_wait_ms = 5000 };
	struct net_stack *s = t_stack(&cfg);
	handshake(s, 50, true, 7);
	net_conn_close(t_conn);
	t_conn = NULL;
	struct pseg f = t_last();
	CHECK_INT_EQ(f.flags, F_FIN | F_ACK);
	CHECK_INT_EQ(f.seq, t_sseq);
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_FIN_WAIT_1);
	t_sseq++;
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_FIN_WAIT_2);
	int before = t_ntx;
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_INT_EQ(t_last().flags, F_ACK);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_TIME_WAIT);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 1);
	/* The FIN again (our ACK was lost): ACKed again. An RST does nothing (RFC 1337). */
	t_pseq--;
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(t_ntx, before + 2);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	peer(s, F_RST, NULL, 0);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 1);
	/* The FIN again at 3 s restarts the 5 s wait: still there at 6 s, gone after 8 s. */
	t_advance(s, 3000);
	t_pseq--;
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(t_ntx, before + 3);
	t_advance(s, 3000);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 1);
	t_advance(s, 2001);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_CLOSED);
	CHECK_INT_EQ(net_stack_buffers_in_use(s), 0);
	net_stack_destroy(s);
}

/* The steering glue's question: is this segment of a flow this stack knows? Yes for its
 * connection and for that connection in TIME-WAIT, no for another flow, and yes for what
 * is not a TCP segment (the stack judges those itself). */
static void test_knows_segment(void)
{
	struct net_config cfg = { .time_wait_ms = 5000 };
	struct net_stack *s = t_stack(&cfg);
	uint8_t f[2048];
	struct tseg seg = { .seq = 1, .ack = 1, .flags = F_ACK, .win = 1000 };
	size_t n = t_build(f, &seg);
	CHECK(!net_stack_knows_segment(s, f, n)); /* nothing yet */
	handshake(s, 70, true, 7);
	CHECK(net_stack_knows_segment(s, f, n));
	struct tseg other = { .seq = 1, .ack = 1, .flags = F_ACK, .win = 1000, .sport = 5555 };
	size_t on = t_build(f, &other);
	CHECK(!net_stack_knows_segment(s, f, on));
	struct tseg from = { .seq = 1, .ack = 1, .flags = F_ACK, .win = 1000,
			     .src = t_ip("198.51.100.9") };
	on = t_build(f, &from);
	CHECK(!net_stack_knows_segment(s, f, on));
	/* into TIME-WAIT: still known (the peer's FIN retransmissions must reach it) */
	net_conn_close(t_conn);
	t_conn = NULL;
	t_sseq++;
	peer(s, F_ACK, NULL, 0);
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 1);
	n = t_build(f, &seg);
	CHECK(net_stack_knows_segment(s, f, n));
	/* not TCP, or too short to say: the stack's own business */
	f[12] = 0x08;
	f[13] = 0x06;
	CHECK(net_stack_knows_segment(s, f, n));
	n = t_build(f, &other);
	CHECK(net_stack_knows_segment(s, f, 14 + 20 + 3));
	f[14 + 9] = 17;
	CHECK(net_stack_knows_segment(s, f, n));
	net_stack_destroy(s);
}

/* RFC 9293 3.6 simultaneous close: FIN crosses FIN; CLOSING, then TIME-WAIT. */
static void test_simultaneous_close(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 3000, false, -1);
	net_conn_close(t_conn);
	struct pseg f = t_last();
	CHECK_INT_EQ(f.flags, F_FIN | F_ACK);
	/* Their FIN, not acknowledging ours. */
	peer(s, F_FIN | F_ACK, NULL, 0);
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_CLOSING);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	t_sseq++;
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_TIME_WAIT);
	net_stack_destroy(s);
}

/* Passive close: CLOSE-WAIT, LAST-ACK, CLOSED. */
static void test_passive_close(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 3000, true, 7);
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(net_conn_state(t_conn), NET_TCP_CLOSE_WAIT);
	CHECK(net_conn_eof(t_conn));
	CHECK_INT_EQ(t_last().ack, t_pseq); /* a FIN is ACKed at once */
	CHECK_INT_EQ(net_conn_write(t_conn, "221 bye\r\n", 9), 9);
	net_conn_close(t_conn);
	t_conn = NULL;
	struct pseg f = t_last();
	CHECK_INT_EQ(f.flags & F_FIN, F_FIN);
	t_sseq += 9 + 1;
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	CHECK_INT_EQ(net_stack_time_wait_count(s), 0);
	net_stack_destroy(s);
}

/* Bring the connection to a state, for the RST tests. Returns false if it cannot. */
static bool to_state(struct net_stack *s, enum net_tcp_state st)
{
	if (st == NET_TCP_SYN_RCVD) {
		uint8_t o[40];
		t_use_ts = false;
		struct tseg syn = { .seq = 500, .flags = F_SYN, .win = 65535, .opt = o,
				    .optlen = syn_opts(o, false, -1) };
		t_in(s, &syn);
		t_pseq = 501;
		t_sseq = t_last().seq + 1;
		return true;
	}
	handshake(s, 500, false, -1);
	switch (st) {
	case NET_TCP_ESTABLISHED:
		return true;
	case NET_TCP_FIN_WAIT_1:
		net_conn_close(t_conn);
		return true;
	case NET_TCP_FIN_WAIT_2:
		net_conn_close(t_conn);
		t_sseq++;
		peer(s, F_ACK, NULL, 0);
		return true;
	case NET_TCP_CLOSE_WAIT:
		peer(s, F_FIN | F_ACK, NULL, 0);
		return true;
	case NET_TCP_CLOSING:
		net_conn_close(t_conn);
		peer(s, F_FIN | F_ACK, NULL, 0);
		return true;
	case NET_TCP_LAST_ACK:
		peer(s, F_FIN | F_ACK, NULL, 0);
		net_conn_close(t_conn);
		return true;
	default:
		return false;
	}
}

/* RFC 5961 3.2 in every state: an RST at exactly rcv_nxt resets; one inside the window
 * gets a challenge ACK and changes nothing; one outside is ignored. */
static void test_rst_every_state(void)
{
	static const enum net_tcp_state states[] = {
		NET_TCP_SYN_RCVD,   NET_TCP_ESTABLISHED, NET_TCP_FIN_WAIT_1, NET_TCP_FIN_WAIT_2,
		NET_TCP_CLOSE_WAIT, NET_TCP_CLOSING,     NET_TCP_LAST_ACK,
	};
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		for (int kind = 0; kind < 3; kind++) {
			struct net_stack *s = t_stack(NULL);
			CHECK(to_state(s, states[i]));
			CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT),
				     states[i]);
			/* Does the app still hold the connection (is it told)? */
			bool app = t_conn != NULL && (states[i] == NET_TCP_ESTABLISHED ||
						      states[i] == NET_TCP_CLOSE_WAIT);
			int before = t_ntx, failed = testing_failures;
			static const uint32_t off[3] = { 0, 100, 200000 };
			uint32_t seq = t_pseq + off[kind];
			struct tseg rst = { .seq = seq, .flags = F_RST };
			t_in(s, &rst);
			enum net_tcp_state now =
				net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT);
			if (kind == 0) {
				CHECK_INT_EQ(now, NET_TCP_CLOSED);
				CHECK_INT_EQ(t_ntx, before);
				CHECK_INT_EQ(t_events[NET_EV_ABORT], app ? 1 : 0);
				if (app)
					CHECK_INT_EQ(t_abort_err, -ECONNRESET);
			} else if (kind == 1) {
				CHECK_INT_EQ(now, states[i]);
				CHECK_INT_EQ(t_ntx, before + 1);
				struct pseg a = t_last();
				CHECK_INT_EQ(a.flags & (F_ACK | F_RST), F_ACK);
				CHECK_INT_EQ(a.ack, t_pseq);
				CHECK_INT_EQ(net_stack_counters(s)->tcp_challenge_ack, 1);
			} else {
				CHECK_INT_EQ(now, states[i]);
				CHECK_INT_EQ(t_ntx, before);
			}
			if (testing_failures != failed)
				fprintf(stderr, "  (state %s, kind %d)\n",
					net_tcp_state_name(states[i]), kind);
			net_stack_destroy(s);
		}
	}
}

/* RFC 5961 4.2: a SYN on an established connection gets a challenge ACK, not a reset. */
static void test_challenge_ack_syn(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	int before = t_ntx;
	struct tseg syn = { .seq = 123456, .flags = F_SYN, .win = 1000 };
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, before + 1);
	struct pseg a = t_last();
	CHECK_INT_EQ(a.flags, F_ACK);
	CHECK_INT_EQ(a.ack, t_pseq);
	CHECK_INT_EQ(a.seq, t_sseq);
	CHECK(t_conn && net_conn_state(t_conn) == NET_TCP_ESTABLISHED);
	/* RFC 5961 5.2: an ACK for data far behind gets a challenge ACK too; one ahead of
	 * what we sent gets an ACK and is dropped. */
	struct tseg old = { .seq = t_pseq, .ack = t_sseq - 1000000, .flags = F_ACK, .win = 1000,
			    .data = "x", .len = 1 };
	t_in(s, &old);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_challenge_ack, 2);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], 0);
	struct tseg ahead = { .seq = t_pseq, .ack = t_sseq + 1000, .flags = F_ACK, .win = 1000,
			      .data = "y", .len = 1 };
	before = t_ntx;
	t_in(s, &ahead);
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], 0);
	net_stack_destroy(s);
}

/* RFC 7323 5: a segment whose TSval is older than TS.Recent is dropped and ACKed. */
static void test_paws(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, true, 7);
	peer(s, F_ACK | F_PSH, "ab", 2);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], 1);
	uint8_t o[12];
	t_opt_ts(o, t_tsv - 100, 0);
	struct tseg old = { .seq = t_pseq, .ack = t_sseq, .flags = F_ACK | F_PSH, .win = 1000,
			    .opt = o, .optlen = 12, .data = "cd", .len = 2 };
	int before = t_ntx;
	t_in(s, &old);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_paws_drop, 1);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], 1);
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	size_t n;
	net_conn_peek(t_conn, &n);
	CHECK_INT_EQ(n, 2);
	/* The same bytes with a current timestamp are taken. */
	peer(s, F_ACK | F_PSH, "cd", 2);
	net_conn_peek(t_conn, &n);
	CHECK_INT_EQ(n, 4);
	net_stack_destroy(s);
}

/* RFC 6298: RTO from the handshake's sample (0 on the virtual clock), floored at 200 ms
 * (RTO_MIN_MS, Linux's floor), doubling on each expiry up to 60 s (Karn: no sample from a
 * resend). */
static void test_retransmit_backoff(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	CHECK_INT_EQ(net_conn_write(t_conn, "hello", 5), 5);
	int sent = t_ntx;
	uint32_t expect[] = { 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000 };
	for (int k = 0; k < 10; k++) {
		t_advance(s, expect[k] - 1);
		CHECK_INT_EQ(t_ntx, sent);
		t_advance(s, 1);
		CHECK_INT_EQ(t_ntx, sent + 1);
		struct pseg r = t_last();
		CHECK_INT_EQ(r.seq, t_sseq);
		CHECK_MEM_EQ(r.data, r.len, "hello", 5);
		sent = t_ntx;
	}
	CHECK_INT_EQ(net_stack_counters(s)->tcp_rto, 10);
	/* The ACK stops the timer. */
	t_sseq += 5;
	peer(s, F_ACK, NULL, 0);
	t_advance(s, 120000);
	CHECK_INT_EQ(t_ntx, sent);
	/* Giving up: after RTX_MAX expiries the app is told ETIMEDOUT. */
	CHECK_INT_EQ(net_conn_write(t_conn, "again", 5), 5);
	t_advance(s, 15 * 60000);
	CHECK_INT_EQ(t_events[NET_EV_ABORT], 1);
	CHECK_INT_EQ(t_abort_err, -ETIMEDOUT);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	net_stack_destroy(s);
}

/* RFC 6298 2.2: the handshake times the path. SYN-ACK answered after 300 ms: SRTT 300,
 * RTTVAR 150, so the first data RTO is 300 + 4 * 150 = 900 ms. */
static void test_handshake_rtt_sample(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t o[40];
	t_use_ts = false;
	struct tseg syn = { .seq = 500, .flags = F_SYN, .win = 65535, .opt = o,
			    .optlen = syn_opts(o, false, -1) };
	t_in(s, &syn);
	struct pseg sa = t_last();
	t_pseq = 501;
	t_sseq = sa.seq + 1;
	t_advance(s, 300);
	peer(s, F_ACK, NULL, 0);
	CHECK(t_conn != NULL);
	CHECK_INT_EQ(net_conn_write(t_conn, "x", 1), 1);
	int sent = t_ntx;
	t_advance(s, 899);
	CHECK_INT_EQ(t_ntx, sent);
	t_advance(s, 1);
	CHECK_INT_EQ(t_ntx, sent + 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_rto, 1);
	net_stack_destroy(s);
}

/* RFC 5681 3.2: three duplicate ACKs retransmit before the timer. */
static void test_fast_retransmit(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	static uint8_t big[6000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	int before = t_ntx;
	CHECK_INT_EQ(net_conn_write(t_conn, big, sizeof(big)), sizeof(big));
	CHECK(t_ntx - before >= 4); /* 1460-byte segments within the initial window */
	uint32_t first = t_sseq;
	for (int i = 0; i < 3; i++)
		peer(s, F_ACK, NULL, 0); /* all ack `first`: duplicates */
	struct pseg r = t_last();
	CHECK_INT_EQ(r.seq, first);
	CHECK_INT_EQ(r.len, 1460);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_fast_retransmit, 1);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_rto, 0);
	net_stack_destroy(s);
}

/* 3.8.6.1: a zero window: nothing sent, probes backing off, data once it opens. */
static void test_zero_window_persist(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	struct tseg z = { .seq = t_pseq, .ack = t_sseq, .flags = F_ACK, .win = 0 };
	t_in(s, &z);
	int before = t_ntx;
	CHECK_INT_EQ(net_conn_write(t_conn, "0123456789", 10), 10);
	CHECK_INT_EQ(t_ntx, before);
	/* the first probe after one RTO (the handshake's sample, floored at 200 ms) */
	t_advance(s, 199);
	CHECK_INT_EQ(t_ntx, before);
	t_advance(s, 1);
	CHECK_INT_EQ(t_ntx, before + 1);
	struct pseg p = t_last();
	CHECK_INT_EQ(p.seq, t_sseq);
	CHECK_INT_EQ(p.len, 1); /* one byte of new data probes the window */
	CHECK_INT_EQ(net_stack_counters(s)->tcp_persist_probes, 1);
	/* The peer still says 0 without taking the byte: the next probe backs off to 400 ms. */
	t_in(s, &z);
	t_advance(s, 399);
	CHECK_INT_EQ(t_ntx, before + 1);
	t_advance(s, 1);
	CHECK_INT_EQ(t_ntx, before + 2);
	t_in(s, &z);
	/* Window opens: all ten bytes go. */
	struct tseg open = { .seq = t_pseq, .ack = t_sseq, .flags = F_ACK, .win = 1000 };
	t_in(s, &open);
	struct pseg d = t_last();
	CHECK_INT_EQ(d.seq, t_sseq);
	CHECK_MEM_EQ(d.data, d.len, "0123456789", 10);
	/* Never gives up while probing: an hour of zero window keeps the connection. */
	t_sseq += 10;
	struct tseg z2 = { .seq = t_pseq, .ack = t_sseq, .flags = F_ACK, .win = 0 };
	t_in(s, &z2);
	CHECK_INT_EQ(net_conn_write(t_conn, "more", 4), 4);
	for (int i = 0; i < 60; i++) {
		t_advance(s, 60000);
		t_in(s, &z2);
	}
	CHECK_INT_EQ(t_events[NET_EV_ABORT], 0);
	CHECK(net_stack_counters(s)->tcp_persist_probes > 60);
	net_stack_destroy(s);
}

/* Our receive window closes when the app does not read, and reopens with an update. */
static void test_our_zero_window(void)
{
	struct net_config cfg = { .rcvbuf = 4096 };
	struct net_stack *s = t_stack(&cfg);
	handshake(s, 10, false, -1);
	static uint8_t blob[1000];
	for (int i = 0; i < 4; i++)
		peer(s, F_ACK, blob, 1000);
	peer(s, F_ACK, blob, 96);
	t_advance(s, 50); /* a small segment: the delayed ACK */
	CHECK_INT_EQ(t_last().win, 0);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	/* Beyond the window: not taken, ACKed. */
	int before = t_ntx;
	peer(s, F_ACK, blob, 100);
	t_pseq -= 100;
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	size_t n;
	net_conn_peek(t_conn, &n);
	net_conn_consume(t_conn, n);
	struct pseg u = t_last();
	CHECK_INT_EQ(t_ntx, before + 2);
	CHECK_INT_EQ(u.win, 4096);
	net_stack_destroy(s);
}

/* RFC 2018 / RFC 5681 4.2: out-of-order data is kept, ACKed at once with SACK blocks,
 * and delivered in order when the hole fills; duplicates are not delivered twice. */
static void test_out_of_order(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 0x1000, true, 7);
	uint32_t base = t_pseq;
	t_autoread = true;
	/* Segments 2 and 4 of "AAAABBBBCCCCDDDD" first. */
	t_pseq = base + 4;
	peer(s, F_ACK, "BBBB", 4);
	struct pseg a = t_last();
	CHECK_INT_EQ(a.ack, base);
	CHECK_INT_EQ(a.nsack, 1);
	CHECK_INT_EQ(a.sack[0][0], base + 4);
	CHECK_INT_EQ(a.sack[0][1], base + 8);
	t_pseq = base + 12;
	peer(s, F_ACK, "DDDD", 4);
	a = t_last();
	CHECK_INT_EQ(a.nsack, 2);
	CHECK_INT_EQ(a.sack[0][0], base + 12); /* the latest first */
	CHECK_INT_EQ(a.sack[1][0], base + 4);
	CHECK_INT_EQ(t_rxlen, 0);
	/* A duplicate of an out-of-order one. */
	t_pseq = base + 4;
	peer(s, F_ACK, "BBBB", 4);
	t_pseq = base;
	peer(s, F_ACK, "AAAA", 4);
	a = t_last();
	CHECK_INT_EQ(a.ack, base + 8);
	CHECK_INT_EQ(a.nsack, 1);
	t_pseq = base + 8;
	peer(s, F_ACK, "CCCC", 4);
	a = t_last();
	CHECK_INT_EQ(a.ack, base + 16);
	CHECK_INT_EQ(a.nsack, 0);
	CHECK_MEM_EQ(t_rx, t_rxlen, "AAAABBBBCCCCDDDD", 16);
	/* An old duplicate: ACKed, not delivered. */
	int before = t_ntx;
	t_pseq = base;
	peer(s, F_ACK, "AAAA", 4);
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_INT_EQ(t_last().ack, base + 16);
	CHECK_INT_EQ(t_rxlen, 16);
	CHECK(net_stack_counters(s)->tcp_dup_segs >= 1);
	/* An overlapping one: only the new part. */
	t_pseq = base + 14;
	peer(s, F_ACK, "DDEE", 4);
	CHECK_MEM_EQ(t_rx, t_rxlen, "AAAABBBBCCCCDDDDEE", 18);
	net_stack_destroy(s);
}

/* More holes than we track: the extra segment is dropped (bounded), the rest works. */
static void test_ooo_bound(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 0x2000, false, -1);
	uint32_t base = t_pseq;
	t_autoread = true;
	for (int i = 0; i < 6; i++) {
		t_pseq = base + 2 + 4 * (uint32_t)i;
		peer(s, F_ACK, "xy", 2);
	}
	CHECK_INT_EQ(net_stack_counters(s)->tcp_ooo_drop, 2);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_ooo_segs, 4);
	net_stack_destroy(s);
}

/* RFC 7323 2: windows scale both ways; a SYN's window is never scaled. */
static void test_window_scaling(void)
{
	struct net_config cfg = { .rcvbuf = 1 << 20 };
	struct net_stack *s = t_stack(&cfg);
	uint8_t o[40];
	t_use_ts = false;
	struct tseg syn = { .seq = 1, .flags = F_SYN, .win = 100, .opt = o,
			    .optlen = syn_opts(o, false, 3) };
	t_in(s, &syn);
	struct pseg sa = t_last();
	CHECK_INT_EQ(sa.ws, 5); /* 1 MiB needs a shift of 5 */
	CHECK_INT_EQ(sa.win, 65535);
	t_pseq = 2;
	t_sseq = sa.seq + 1;
	struct tseg ack = { .seq = 2, .ack = t_sseq, .flags = F_ACK, .win = 100 };
	t_in(s, &ack);
	CHECK(t_conn != NULL);
	/* 100 << 3 = 800 bytes of window. */
	static uint8_t big[2000];
	int before = t_ntx;
	net_conn_write(t_conn, big, sizeof(big));
	size_t total = 0;
	for (int i = before; i < t_ntx; i++)
		total += t_parse(i).len;
	CHECK_INT_EQ(total, 800);
	/* Our window, scaled by 5: 1 MiB >> 5. */
	CHECK_INT_EQ(t_last().win, (1 << 20) >> 5);
	/* Without the option on the SYN, no scaling either way. */
	struct tseg syn2 = { .seq = 1, .flags = F_SYN, .win = 100, .sport = 4444 };
	t_in(s, &syn2);
	CHECK_INT_EQ(t_last().ws, -1);
	CHECK_INT_EQ(t_last().win, 65535);
	net_stack_destroy(s);
}

/* RFC 6191: a SYN with a higher sequence number (no timestamps) or a newer timestamp
 * takes over a TIME-WAIT 4-tuple; an older one gets an ACK. */
static void test_time_wait_reuse(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 100, false, -1);
	net_conn_close(t_conn);
	t_sseq++;
	peer(s, F_ACK, NULL, 0);
	peer(s, F_FIN | F_ACK, NULL, 0);
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_TIME_WAIT);
	struct tseg old = { .seq = 50, .flags = F_SYN, .win = 1000 };
	t_in(s, &old);
	CHECK_INT_EQ(t_last().flags, F_ACK);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_TIME_WAIT);
	struct tseg fresh = { .seq = t_pseq + 100000, .flags = F_SYN, .win = 1000 };
	t_in(s, &fresh);
	CHECK_INT_EQ(t_last().flags, F_SYN | F_ACK);
	CHECK_INT_EQ(t_last().ack, t_pseq + 100001);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, T_PEER_PORT), NET_TCP_SYN_RCVD);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_time_wait_reuse, 1);
	net_stack_destroy(s);
}

/* A full TIME-WAIT table drops its oldest entry, never refuses. */
static void test_time_wait_full(void)
{
	struct net_config cfg = { .time_wait_max = 4 };
	struct net_stack *s = t_stack(&cfg);
	for (int i = 0; i < 6; i++) {
		struct tseg syn = { .seq = 1, .flags = F_SYN, .win = 1000,
				    .sport = (uint16_t)(2000 + i) };
		t_in(s, &syn);
		uint32_t iss = t_last().seq;
		struct tseg ack = { .seq = 2, .ack = iss + 1, .flags = F_ACK, .win = 1000,
				    .sport = (uint16_t)(2000 + i) };
		t_in(s, &ack);
		net_conn_close(t_conn);
		struct tseg fin = { .seq = 2, .ack = iss + 2, .flags = F_ACK | F_FIN, .win = 1000,
				    .sport = (uint16_t)(2000 + i) };
		t_in(s, &fin);
	}
	CHECK_INT_EQ(net_stack_time_wait_count(s), 4);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_time_wait_evict, 2);
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 2000), NET_TCP_CLOSED);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 2005), NET_TCP_TIME_WAIT);
	net_stack_destroy(s);
}

/* Sequence numbers wrap: the peer's ISN just below 2^32, data across the wrap. */
static void test_wraparound(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 0xfffffff0u, true, 7);
	t_autoread = true;
	static uint8_t data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (uint8_t)('a' + i % 26);
	/* Out of order across the wrap too. */
	uint32_t base = t_pseq;
	t_pseq = base + 50;
	peer(s, F_ACK, data + 50, 50);
	CHECK_INT_EQ(t_last().nsack, 1);
	CHECK_INT_EQ(t_last().sack[0][0], base + 50);
	t_pseq = base;
	peer(s, F_ACK, data, 50);
	CHECK_MEM_EQ(t_rx, t_rxlen, data, 100);
	CHECK_INT_EQ(t_last().ack, base + 100);
	CHECK(base + 100 < base); /* it really wrapped */
	net_stack_destroy(s);
}

/* A pool without buffers: frames are not sent (counted), nothing crashes, and the
 * connection recovers by retransmission when the pool does. */
static void test_pool_empty(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	t_pool_empty = true;
	CHECK_INT_EQ(net_conn_write(t_conn, "abc", 3), 3);
	CHECK(net_stack_counters(s)->tx_alloc_fail >= 1);
	int before = t_ntx;
	t_pool_empty = false;
	t_advance(s, 200); /* the RTO: the handshake's sample floored at RTO_MIN_MS */
	CHECK_INT_EQ(t_ntx, before + 1);
	CHECK_MEM_EQ(t_last().data, t_last().len, "abc", 3);
	net_stack_destroy(s);
}

/* Closing with unread data resets (RFC 2525 2.17). */
static void test_close_unread_resets(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	peer(s, F_ACK, "junk", 4);
	net_conn_close(t_conn);
	CHECK_INT_EQ(t_last().flags, F_RST);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	CHECK_INT_EQ(net_stack_buffers_in_use(s), 0);
	net_stack_destroy(s);
}

/* SYN-ACK retransmission, then the half-open connection is dropped. */
/* 10,000 idle connections after a command and its reply: each holds its control block
 * only (no buffer). */
static void test_many_idle(void)
{
	struct net_stack *s = t_stack(NULL);
	t_autoread = true;
	for (uint32_t i = 0; i < 10000; i++) {
		uint16_t port = (uint16_t)(1024 + i);
		uint32_t src = t_ip(T_PEER_IP) + ((i / 50000) << 24);
		struct tseg syn = { .seq = i, .flags = F_SYN, .win = 65535, .sport = port,
				    .src = src };
		t_in(s, &syn);
		uint32_t iss = t_last().seq;
		struct tseg ack = { .seq = i + 1, .ack = iss + 1, .flags = F_ACK | F_PSH,
				    .win = 65535, .sport = port, .src = src,
				    .data = "EHLO a\r\n", .len = 8 };
		t_in(s, &ack);
		if (t_conn)
			net_conn_write(t_conn, "250 ok\r\n", 8);
		struct tseg ack2 = { .seq = i + 9, .ack = iss + 9, .flags = F_ACK, .win = 65535,
				     .sport = port, .src = src };
		t_in(s, &ack2);
		t_clear_tx();
	}
	CHECK_INT_EQ(net_stack_conn_count(s), 10000);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 10000);
	CHECK_INT_EQ(t_rxlen, 80000);
	CHECK_INT_EQ(net_stack_buffers_in_use(s), 0);
	printf("  10000 idle connections: %zu bytes of control block each, no buffers\n",
	       net_conn_size());
	net_stack_destroy(s);
}

/* The app may write and close from inside NET_EV_ABORT: nothing goes out, nothing leaks. */
static void test_close_in_abort(void)
{
	struct net_stack *s = t_stack(NULL);
	handshake(s, 10, false, -1);
	t_close_on_abort = true;
	int before = t_ntx;
	peer(s, F_RST, NULL, 0);
	CHECK_INT_EQ(t_events[NET_EV_ABORT], 1);
	CHECK_INT_EQ(t_ntx, before);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	net_stack_destroy(s);
}

static void test_synack_retransmit(void)
{
	struct net_stack *s = t_stack(NULL);
	struct tseg syn = { .seq = 1, .flags = F_SYN, .win = 1000 };
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, 1);
	t_advance(s, 1000);
	CHECK_INT_EQ(t_ntx, 2);
	CHECK_INT_EQ(t_last().flags, F_SYN | F_ACK);
	t_advance(s, 2000);
	CHECK_INT_EQ(t_ntx, 3);
	t_advance(s, 200000);
	CHECK_INT_EQ(net_stack_conn_count(s), 0);
	CHECK_INT_EQ(t_events[NET_EV_ABORT], 0);
	net_stack_destroy(s);
}

/* The half-open count behind the SYN backlog follows every way out of SYN-RECEIVED: the
 * handshake completing, an RST, the SYN-ACK retransmissions giving up. With a backlog of
 * one, each of those must leave room for the next SYN to get full state, not a cookie. */
static void test_syn_backlog_count(void)
{
	struct net_config cfg = { .syn_backlog = 1 };
	struct net_stack *s = t_stack(&cfg);
	const struct net_counters *cnt = net_stack_counters(s);
	uint32_t lip = t_ip(T_OUR_IP), rip = t_ip(T_PEER_IP);
	/* Half-open, then established. */
	struct tseg syn = { .seq = 100, .flags = F_SYN, .win = 65535, .sport = 1111 };
	t_in(s, &syn);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 1111), NET_TCP_SYN_RCVD);
	struct tseg ack = { .seq = 101, .ack = t_last().seq + 1, .flags = F_ACK, .win = 65535,
			    .sport = 1111 };
	t_in(s, &ack);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 1111), NET_TCP_ESTABLISHED);
	/* Half-open, then reset. */
	syn.sport = 2222;
	t_in(s, &syn);
	CHECK_INT_EQ(cnt->tcp_syn_cookie_sent, 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 2222), NET_TCP_SYN_RCVD);
	struct tseg rst = { .seq = 101, .flags = F_RST, .sport = 2222 };
	t_in(s, &rst);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 2222), NET_TCP_CLOSED);
	/* Half-open, then given up. */
	syn.sport = 3333;
	t_in(s, &syn);
	CHECK_INT_EQ(cnt->tcp_syn_cookie_sent, 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 3333), NET_TCP_SYN_RCVD);
	t_advance(s, 200000);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 3333), NET_TCP_CLOSED);
	/* Room again; and once that one is half-open the backlog is full. */
	syn.sport = 4444;
	t_in(s, &syn);
	CHECK_INT_EQ(cnt->tcp_syn_cookie_sent, 0);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 4444), NET_TCP_SYN_RCVD);
	syn.sport = 5555;
	t_in(s, &syn);
	CHECK_INT_EQ(cnt->tcp_syn_cookie_sent, 1);
	CHECK_INT_EQ(net_stack_lookup_state(s, lip, T_PORT, rip, 5555), NET_TCP_CLOSED);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);
	net_stack_destroy(s);
}

/* The frame sent since index `from` that goes to peer port dport, or !ok. */
static struct pseg sent_to(int from, uint16_t dport)
{
	for (int i = t_ntx - 1; i >= from; i--) {
		struct pseg p = t_parse(i);
		if (p.ok && p.dport == dport)
			return p;
	}
	return t_parse(-1);
}

/* net_stack_unlisten: a SYN to the port is answered as on a closed port, a cookie issued
 * before is no longer taken, half-open passive opens there are reset; an established
 * connection on the port transfers data and closes as usual; other ports do not notice,
 * and listening again works. */
static void test_unlisten(void)
{
	struct net_stack *s = t_stack(NULL);
	CHECK_INT_EQ(net_stack_listen(s, 587), 0);
	handshake(s, 1000, false, -1);
	struct net_conn *est = t_conn;
	CHECK(est != NULL);
	/* Half-open: one on the port that goes away, one on 587. */
	struct tseg syn25 = { .seq = 200, .flags = F_SYN, .win = 65535, .sport = 2222 };
	t_in(s, &syn25);
	struct pseg sa25 = t_last();
	CHECK_INT_EQ(sa25.flags, F_SYN | F_ACK);
	struct tseg syn587 = { .seq = 300, .flags = F_SYN, .win = 65535, .sport = 3333,
			       .dport = 587 };
	t_in(s, &syn587);
	struct pseg sa587 = t_last();
	CHECK_INT_EQ(sa587.flags, F_SYN | F_ACK);
	/* Two cookies issued while listening. */
	net_stack_set_pressure(s, true);
	struct tseg csyn1 = { .seq = 400, .flags = F_SYN, .win = 65535, .sport = 5555 };
	t_in(s, &csyn1);
	struct pseg cookie1 = t_last();
	struct tseg csyn2 = { .seq = 500, .flags = F_SYN, .win = 65535, .sport = 6666 };
	t_in(s, &csyn2);
	struct pseg cookie2 = t_last();
	net_stack_set_pressure(s, false);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_sent, 2);
	CHECK_INT_EQ(cookie1.flags, F_SYN | F_ACK);
	CHECK_INT_EQ(cookie2.flags, F_SYN | F_ACK);
	CHECK_INT_EQ(net_stack_conn_count(s), 3);

	int before = t_ntx;
	CHECK_INT_EQ(net_stack_unlisten(s, T_PORT), 0);
	CHECK_INT_EQ(net_stack_unlisten(s, T_PORT), -ENOENT);
	CHECK_INT_EQ(net_stack_unlisten(s, 80), -ENOENT);
	/* The half-open on 25 was reset (RST at the sequence its SYN-ACK promised), the
	 * one on 587 was not. */
	CHECK_INT_EQ(t_ntx, before + 1);
	struct pseg r = sent_to(before, 2222);
	CHECK(r.ok && r.csum_ok);
	CHECK_INT_EQ(r.flags, F_RST);
	CHECK_INT_EQ(r.sport, T_PORT);
	CHECK_INT_EQ(r.seq, sa25.seq + 1);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), T_PORT, t_ip(T_PEER_IP), 2222),
		     NET_TCP_CLOSED);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), 587, t_ip(T_PEER_IP), 3333),
		     NET_TCP_SYN_RCVD);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), T_PORT, t_ip(T_PEER_IP),
					    T_PEER_PORT),
		     NET_TCP_ESTABLISHED);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);

	/* A new SYN: RST|ACK as on any closed port, no state. */
	before = t_ntx;
	struct tseg syn = { .seq = 777, .flags = F_SYN, .win = 65535, .sport = 4444 };
	t_in(s, &syn);
	CHECK_INT_EQ(t_ntx, before + 1);
	r = t_last();
	CHECK_INT_EQ(r.flags, F_RST | F_ACK);
	CHECK_INT_EQ(r.seq, 0);
	CHECK_INT_EQ(r.ack, 778);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);
	/* Under pressure too: no cookie for a port nobody listens on. */
	net_stack_set_pressure(s, true);
	t_in(s, &syn);
	CHECK_INT_EQ(t_last().flags, F_RST | F_ACK);
	net_stack_set_pressure(s, false);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_sent, 2);
	/* The reset half-open's ACK finds nothing: RST, no connection. */
	struct tseg ack25 = { .seq = 201, .ack = sa25.seq + 1, .flags = F_ACK, .win = 1000,
			      .sport = 2222 };
	t_in(s, &ack25);
	CHECK_INT_EQ(t_last().flags, F_RST);
	CHECK_INT_EQ(t_last().seq, sa25.seq + 1);
	/* A valid cookie's ACK is no longer taken. */
	struct tseg cack1 = { .seq = 401, .ack = cookie1.seq + 1, .flags = F_ACK, .win = 1000,
			      .sport = 5555 };
	t_in(s, &cack1);
	CHECK_INT_EQ(t_last().flags, F_RST);
	CHECK_INT_EQ(t_last().dport, 5555);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_ok, 0);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 1);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);

	/* The other port's half-open completes. */
	struct tseg ack587 = { .seq = 301, .ack = sa587.seq + 1, .flags = F_ACK, .win = 1000,
			       .sport = 3333, .dport = 587 };
	t_in(s, &ack587);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 2);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), 587, t_ip(T_PEER_IP), 3333),
		     NET_TCP_ESTABLISHED);
	struct net_conn *other = t_conn;
	t_conn = est;

	/* The established connection on the unlistened port goes on: data both ways. */
	int readable = t_events[NET_EV_READABLE];
	peer(s, F_ACK | F_PSH, "QUIT\r\n", 6);
	CHECK_INT_EQ(t_events[NET_EV_READABLE], readable + 1);
	size_t n;
	const uint8_t *p = net_conn_peek(est, &n);
	CHECK_MEM_EQ(p, n, "QUIT\r\n", 6);
	net_conn_consume(est, n);
	CHECK_INT_EQ(net_conn_write(est, "221 bye\r\n", 9), 9);
	struct pseg d = t_last();
	CHECK_INT_EQ(d.sport, T_PORT);
	CHECK_INT_EQ(d.dport, T_PEER_PORT);
	CHECK_MEM_EQ(d.data, d.len, "221 bye\r\n", 9);
	CHECK_INT_EQ(d.seq, t_sseq);
	CHECK_INT_EQ(d.ack, t_pseq);
	t_sseq += 9;
	peer(s, F_ACK, NULL, 0);
	CHECK_INT_EQ(net_conn_unacked(est), 0);
	/* ... and closes cleanly: our FIN, their FIN and ACK, TIME-WAIT. */
	net_conn_close(est);
	t_conn = NULL;
	struct pseg f = t_last();
	CHECK_INT_EQ(f.flags, F_FIN | F_ACK);
	CHECK_INT_EQ(f.seq, t_sseq);
	t_sseq++;
	peer(s, F_FIN | F_ACK, NULL, 0);
	CHECK_INT_EQ(t_last().flags, F_ACK);
	CHECK_INT_EQ(t_last().ack, t_pseq);
	CHECK_INT_EQ(net_stack_lookup_state(s, t_ip(T_OUR_IP), T_PORT, t_ip(T_PEER_IP),
					    T_PEER_PORT),
		     NET_TCP_TIME_WAIT);
	CHECK_INT_EQ(t_events[NET_EV_ABORT], 0);
	CHECK_INT_EQ(net_stack_conn_count(s), 1);

	/* Listening again: the other cookie, issued before, is taken; new SYNs get SYN-ACK. */
	CHECK_INT_EQ(net_stack_listen(s, T_PORT), 0);
	struct tseg cack2 = { .seq = 501, .ack = cookie2.seq + 1, .flags = F_ACK, .win = 1000,
			      .sport = 6666 };
	t_in(s, &cack2);
	CHECK_INT_EQ(net_stack_counters(s)->tcp_syn_cookie_ok, 1);
	CHECK_INT_EQ(t_events[NET_EV_ACCEPT], 3);
	struct tseg syn2 = { .seq = 900, .flags = F_SYN, .win = 65535, .sport = 7777 };
	t_in(s, &syn2);
	CHECK_INT_EQ(t_last().flags, F_SYN | F_ACK);
	CHECK_INT_EQ(net_stack_conn_count(s), 3);
	net_conn_close(other);
	net_stack_destroy(s);
}

/* Every state has its own name for the logs; a value out of range is not a crash. */
static void test_state_names(void)
{
	for (int i = 0; i < NET_TCP_STATE_MAX; i++) {
		const char *a = net_tcp_state_name((enum net_tcp_state)i);
		CHECK(strcmp(a, "?") != 0);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(a, net_tcp_state_name((enum net_tcp_state)j)) != 0);
	}
	CHECK_STR_EQ(net_tcp_state_name(NET_TCP_ESTABLISHED), "ESTABLISHED");
	CHECK_STR_EQ(net_tcp_state_name(NET_TCP_STATE_MAX), "?");
}

int main(void)
{
	RUN_TEST(test_handshake);
	RUN_TEST(test_closed_port_rst);
	RUN_TEST(test_unlisten);
	RUN_TEST(test_knows_segment);
	RUN_TEST(test_rst_rate_limit);
	RUN_TEST(test_syn_cookie);
	RUN_TEST(test_pressure_cookies);
	RUN_TEST(test_table_full_cookies);
	RUN_TEST(test_active_close_time_wait);
	RUN_TEST(test_simultaneous_close);
	RUN_TEST(test_passive_close);
	RUN_TEST(test_rst_every_state);
	RUN_TEST(test_challenge_ack_syn);
	RUN_TEST(test_paws);
	RUN_TEST(test_retransmit_backoff);
	RUN_TEST(test_handshake_rtt_sample);
	RUN_TEST(test_fast_retransmit);
	RUN_TEST(test_zero_window_persist);
	RUN_TEST(test_our_zero_window);
	RUN_TEST(test_out_of_order);
	RUN_TEST(test_ooo_bound);
	RUN_TEST(test_window_scaling);
	RUN_TEST(test_time_wait_reuse);
	RUN_TEST(test_time_wait_full);
	RUN_TEST(test_wraparound);
	RUN_TEST(test_pool_empty);
	RUN_TEST(test_close_unread_resets);
	RUN_TEST(test_synack_retransmit);
	RUN_TEST(test_syn_backlog_count);
	RUN_TEST(test_state_names);
	RUN_TEST(test_close_in_abort);
	RUN_TEST(test_many_idle);
	t_clear_tx();
	return TEST_RESULT();
}
