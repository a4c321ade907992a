/* Two stacks wired back to back (A listens, B connects), a virtual clock, and both
 * directions of bulk data; then again with loss, duplication and reordering injected on
 * every side. Every byte must arrive, in order, exactly once, and both ends must close
 * cleanly with no buffer left taken. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_stack.h"
#include "testing.h"

struct frame {
	uint8_t *d;
	size_t len;
};

struct side {
	const char *name;
	struct net_stack *s;
	struct net_conn *c;
	struct side *peer;
	struct frame *inbox; /* frames on the wire towards this side */
	size_t nin, capin;
	const uint8_t *out;
	size_t outlen, sent;
	uint8_t *in;
	size_t inlen, expect;
	bool closed, aborted, connected;
};

static void *bulk_alloc(void *ctx, uint8_t **data, size_t cap)
{
	(void)ctx;
	struct frame *f = malloc(sizeof(*f));
	f->d = malloc(cap);
	f->len = cap;
	*data = f->d;
	return f;
}

static void bulk_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	(void)meta;
	struct side *me = ctx;
	struct side *to = me->peer;
	struct frame *f = frame;
	if (!len || len > f->len) {
		free(f->d);
		free(f);
		return;
	}
	if (to->nin == to->capin) {
		to->capin = to->capin ? to->capin * 2 : 256;
		to->inbox = realloc(to->inbox, to->capin * sizeof(*to->inbox));
	}
	to->inbox[to->nin++] = (struct frame){ f->d, len };
	free(f);
}

static void bulk_read(struct side *x)
{
	size_t n;
	const uint8_t *p;
	while (x->c && (p = net_conn_peek(x->c, &n)) != NULL && n) {
		if (x->inlen + n > x->expect) {
			fprintf(stderr, "%s: more bytes than sent\n", x->name);
			testing_failures++;
			n = x->expect - x->inlen;
		}
		memcpy(x->in + x->inlen, p, n);
		x->inlen += n;
		net_conn_consume(x->c, n);
	}
}

static void bulk_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	struct side *x = ctx;
	switch (ev) {
	case NET_EV_ACCEPT:
	case NET_EV_CONNECTED:
		x->c = c;
		x->connected = true;
		break;
	case NET_EV_READABLE:
		bulk_read(x);
		break;
	case NET_EV_ABORT:
		fprintf(stderr, "%s: abort %d\n", x->name, net_conn_error(c));
		x->aborted = true;
		x->c = NULL;
		break;
	default:
		break;
	}
}

static void pump(struct side *x)
{
	if (!x->c || x->closed)
		return;
	while (x->sent < x->outlen) {
		size_t n = net_conn_write(x->c, x->out + x->sent, x->outlen - x->sent);
		if (!n)
			break;
		x->sent += n;
	}
	bulk_read(x);
	/* B closes once it has sent all and received all; A when it has sent all and seen
	 * B's FIN. */
	bool done = x->sent == x->outlen && x->inlen == x->expect &&
		    (x->name[0] == 'B' || net_conn_eof(x->c));
	if (done && net_conn_unacked(x->c) == 0) {
		net_conn_close(x->c);
		x->c = NULL;
		x->closed = true;
	}
}

static void deliver_all(struct side *x, uint64_t now)
{
	size_t n = x->nin;
	struct frame *batch = x->inbox;
	x->inbox = NULL;
	x->nin = x->capin = 0;
	for (size_t i = 0; i < n; i++) {
		net_stack_input(x->s, batch[i].d, batch[i].len, 0, now);
		free(batch[i].d);
	}
	free(batch);
}

static struct net_stack *mk(struct side *x, const char *ip, const char *gw, uint8_t id)
{
	struct net_config cfg = { .mac = { 2, 0, 0, 0, 0, id }, .ipv4_prefix = 24 };
	inet_pton(AF_INET, ip, &cfg.ipv4);
	inet_pton(AF_INET, gw, &cfg.ipv4_gateway);
	memset(cfg.secret, id, 16);
	struct net_ops ops = { x, bulk_alloc, bulk_send, bulk_event };
	return net_stack_create(&cfg, &ops, 1000000);
}

static void run(const struct net_fault_config *fault, size_t a_bytes, size_t b_bytes)
{
	struct side A = { .name = "A" }, B = { .name = "B" };
	A.peer = &B;
	B.peer = &A;
	uint64_t now = 1000000;
	A.s = mk(&A, "10.0.0.1", "10.0.0.2", 1);
	B.s = mk(&B, "10.0.0.2", "10.0.0.1", 2);
	CHECK(A.s && B.s);
	net_stack_listen(A.s, 25);
	uint8_t *adata = malloc(a_bytes), *bdata = malloc(b_bytes);
	srand(42);
	for (size_t i = 0; i < a_bytes; i++)
		adata[i] = (uint8_t)rand();
	for (size_t i = 0; i < b_bytes; i++)
		bdata[i] = (uint8_t)rand();
	A.out = adata;
	A.outlen = a_bytes;
	B.out = bdata;
	B.outlen = b_bytes;
	A.in = malloc(b_bytes + 1);
	A.expect = b_bytes;
	B.in = malloc(a_bytes + 1);
	B.expect = a_bytes;
	/* ARP both ways (each asked for the other as its gateway at creation). */
	deliver_all(&A, now);
	deliver_all(&B, now);
	deliver_all(&A, now);
	if (fault) {
		struct net_fault_config fa = *fault, fb = *fault;
		fb.seed ^= 0x5555;
		net_stack_set_fault(A.s, &fa);
		net_stack_set_fault(B.s, &fb);
	}
	struct net_conn *c = NULL;
	for (int tries = 0; !c && tries < 100; tries++) {
		c = net_conn_connect(B.s, inet_addr("10.0.0.1"), 25, 0, now);
		deliver_all(&A, now);
		deliver_all(&B, now);
	}
	CHECK(c != NULL);
	uint64_t limit = now + 3600ull * 1000000; /* an hour of virtual time */
	while (now < limit && !A.aborted && !B.aborted) {
		deliver_all(&A, now);
		deliver_all(&B, now);
		pump(&A);
		pump(&B);
		net_stack_poll(A.s, now);
		net_stack_poll(B.s, now);
		if (A.closed && B.closed && net_stack_conn_count(A.s) == 0 &&
		    net_stack_conn_count(B.s) == 0)
			break;
		now += 200;
	}
	CHECK(!A.aborted && !B.aborted);
	CHECK(A.closed && B.closed);
	CHECK_INT_EQ(A.inlen, b_bytes);
	CHECK_INT_EQ(B.inlen, a_bytes);
	CHECK(A.inlen == b_bytes && memcmp(A.in, bdata, b_bytes) == 0);
	CHECK(B.inlen == a_bytes && memcmp(B.in, adata, a_bytes) == 0);
	CHECK_INT_EQ(net_stack_conn_count(A.s), 0);
	CHECK_INT_EQ(net_stack_conn_count(B.s), 0);
	CHECK_INT_EQ(net_stack_time_wait_count(B.s), 1); /* B closed first */
	CHECK_INT_EQ(net_stack_buffers_in_use(A.s), 0);
	CHECK_INT_EQ(net_stack_buffers_in_use(B.s), 0);
	const struct net_counters *ka = net_stack_counters(A.s), *kb = net_stack_counters(B.s);
	printf("  %zu+%zu bytes in %.1f s virtual; retransmits A %llu B %llu, fast %llu/%llu, "
	       "rto %llu/%llu, ooo %llu/%llu, dropped %llu/%llu\n",
	       a_bytes, b_bytes, (double)(now - 1000000) / 1e6,
	       (unsigned long long)ka->tcp_retransmits, (unsigned long long)kb->tcp_retransmits,
	       (unsigned long long)ka->tcp_fast_retransmit,
	       (unsigned long long)kb->tcp_fast_retransmit, (unsigned long long)ka->tcp_rto,
	       (unsigned long long)kb->tcp_rto, (unsigned long long)ka->tcp_ooo_segs,
	       (unsigned long long)kb->tcp_ooo_segs, (unsigned long long)ka->fault_drop,
	       (unsigned long long)kb->fault_drop);
	printf("  paws %llu/%llu oow %llu/%llu dup %llu/%llu ooodrop %llu/%llu chal %llu/%llu\n",
	       (unsigned long long)ka->tcp_paws_drop, (unsigned long long)kb->tcp_paws_drop,
	       (unsigned long long)ka->tcp_out_of_window, (unsigned long long)kb->tcp_out_of_window,
	       (unsigned long long)ka->tcp_dup_segs, (unsigned long long)kb->tcp_dup_segs,
	       (unsigned long long)ka->tcp_ooo_drop, (unsigned long long)kb->tcp_ooo_drop,
	       (unsigned long long)ka->tcp_challenge_ack,
	       (unsigned long long)kb->tcp_challenge_ack);
	if (fault)
		CHECK(ka->fault_drop + kb->fault_drop > 0 &&
		      ka->tcp_retransmits + kb->tcp_retransmits > 0);
	deliver_all(&A, now);
	deliver_all(&B, now);
	net_stack_destroy(A.s);
	net_stack_destroy(B.s);
	free(A.inbox);
	free(B.inbox);
	free(adata);
	free(bdata);
	free(A.in);
	free(B.in);
}

static void test_bulk_clean(void)
{
	run(NULL, 1 << 20, 3 << 20);
}

static void test_bulk_lossy(void)
{
	struct net_fault_config f = { .seed = 1234,
				      .rx_drop_pct = 5, .rx_dup_pct = 1, .rx_reorder_pct = 5,
				      .tx_drop_pct = 5, .tx_dup_pct = 1, .tx_reorder_pct = 5,
				      .delay_us = 3000 };
	run(&f, 1 << 20, 1 << 20);
}

static void test_bulk_lossy_seeds(void)
{
	for (uint64_t seed = 1; seed <= 5; seed++) {
		struct net_fault_config f = { .seed = seed };
		f.rx_drop_pct = f.tx_drop_pct = 10;
		f.rx_dup_pct = f.tx_dup_pct = 2;
		f.rx_reorder_pct = f.tx_reorder_pct = 10;
		run(&f, 200000 + (size_t)seed * 7777, 300000);
	}
}

int main(void)
{
	RUN_TEST(test_bulk_clean);
	RUN_TEST(test_bulk_lossy);
	RUN_TEST(test_bulk_lossy_seeds);
	return TEST_RESULT();
}
