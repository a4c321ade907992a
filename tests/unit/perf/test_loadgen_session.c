/* mxgate-loadgen's session engine (perf/loadgen/loadgen_session.c) without DPDK: its stack
 * wired back to back with a second stack that runs a small scripted SMTP server, on a
 * virtual clock. Covers whole runs (pipelined and not, many sources, expected refusals,
 * several messages per session), every reply check against a server that answers wrongly,
 * timeouts of a silent server, the message rate, idle sessions held and released,
 * pregreeting bots against a screen that answers them right and wrongly, and DNSBL-listed
 * clients refused at RCPT (and a server that does not refuse them). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_stack.h"
#include "loadgen.h"
#include "testing.h"

#define SRV_CONNS 4096

enum srv_mode {
	SRV_GOOD,
	SRV_RCPT_ALL,  /* 250 to every RCPT, the bad one too */
	SRV_SILENT,    /* never greets */
	SRV_DOT_451,   /* 451 to every end of data */
	SRV_NO_PIPELINING,
	/* a screen (postscreen's greet wait): no greeting yet; a client that speaks first
	 * gets ... */
	SRV_SCREEN,          /* 521 and the close, as postscreen_greet_action = drop does */
	SRV_SCREEN_RST,      /* 521 and a reset */
	SRV_SCREEN_NO_CLOSE, /* 521, and the connection stays open */
	SRV_SCREEN_CLOSE,    /* the close without a reply */
	SRV_SCREEN_550,      /* 550 (postscreen's enforce), then the close */
	SRV_SCREEN_BARE,     /* 521 and the close, without the "220-" teaser before */
	/* postscreen's dummy engine for a DNSBL-listed client (postscreen_dnsbl_action =
	 * enforce): greeted, no PIPELINING, every RCPT 550 5.7.1, DATA 554 and the close */
	SRV_LISTED,
	SRV_LISTED_450, /* the same, but 450 4.3.2 to RCPT (a client still being tested) */
};

struct frame {
	uint8_t *d;
	size_t len;
	struct frame *next;
};

struct wire {
	struct net_stack *s;
	struct wire *peer;
	struct frame *head, *tail; /* frames towards this side */
};

struct srv_conn {
	struct net_conn *nc;
	char line[1100];
	size_t n;
	bool data;
	bool used;
};

static struct {
	struct wire gen, srv;
	struct loadgen *lg;
	enum srv_mode mode;
	struct srv_conn conns[SRV_CONNS];
	unsigned messages, rcpts_ok, rcpts_refused, sessions, quits, pipelined_batches;
	unsigned pregreets; /* screen modes: clients that spoke before the greeting */
	uint64_t now;
} W;

static void *w_alloc(void *ctx, uint8_t **data, size_t cap)
{
	(void)ctx;
	struct frame *f = calloc(1, sizeof(*f));
	f->d = malloc(cap);
	f->len = cap;
	*data = f->d;
	return f;
}

static void w_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	(void)meta;
	struct wire *me = ctx, *to = me->peer;
	struct frame *f = frame;
	if (!len) {
		free(f->d);
		free(f);
		return;
	}
	f->len = len;
	if (to->tail)
		to->tail->next = f;
	else
		to->head = f;
	to->tail = f;
}

/* Deliver what is on the wire both ways until it is quiet. */
static void w_deliver(void)
{
	for (int rounds = 0; rounds < 10000; rounds++) {
		bool any = false;
		struct wire *sides[2] = { &W.gen, &W.srv };
		for (int i = 0; i < 2; i++) {
			struct wire *x = sides[i];
			struct frame *f = x->head;
			x->head = x->tail = NULL;
			while (f) {
				struct frame *next = f->next;
				net_stack_input(x->s, f->d, f->len, 0, W.now);
				free(f->d);
				free(f);
				f = next;
				any = true;
			}
		}
		if (!any)
			return;
	}
}

static void srv_say(struct srv_conn *k, const char *s)
{
	net_conn_write(k->nc, s, strlen(s));
}

static void srv_line(struct srv_conn *k, const char *l)
{
	if (k->data) {
		if (strcmp(l, ".") == 0) {
			k->data = false;
			if (W.mode == SRV_DOT_451) {
				srv_say(k, "451 4.3.0 later\r\n");
			} else {
				W.messages++;
				srv_say(k, "250 2.0.0 queued\r\n");
			}
		}
		return;
	}
	bool listed = W.mode == SRV_LISTED || W.mode == SRV_LISTED_450;
	if (listed && strncmp(l, "RCPT TO:", 8) == 0) {
		W.rcpts_refused++;
		srv_say(k, W.mode == SRV_LISTED
				   ? "550 5.7.1 Service unavailable; client [10.0.0.100] blocked "
				     "using bl.test\r\n"
				   : "450 4.3.2 Service currently unavailable\r\n");
		return;
	}
	if (listed && strcmp(l, "DATA") == 0) {
		srv_say(k, "554 5.5.1 Error: no valid recipients\r\n");
		net_conn_close(k->nc);
		k->nc = NULL;
		k->used = false;
		return;
	}
	if (strncmp(l, "EHLO ", 5) == 0) {
		srv_say(k, W.mode == SRV_NO_PIPELINING || listed
				   ? "250-srv\r\n250 8BITMIME\r\n"
				   : "250-srv\r\n250 PIPELINING\r\n");
	} else if (strncmp(l, "MAIL FROM:", 10) == 0) {
		srv_say(k, "250 2.1.0 ok\r\n");
	} else if (strncmp(l, "RCPT TO:<bad", 12) == 0 && W.mode != SRV_RCPT_ALL) {
		W.rcpts_refused++;
		srv_say(k, "550 5.1.1 no\r\n");
	} else if (strncmp(l, "RCPT TO:", 8) == 0) {
		W.rcpts_ok++;
		srv_say(k, "250 2.1.5 ok\r\n");
	} else if (strcmp(l, "DATA") == 0) {
		k->data = true;
		srv_say(k, "354 go\r\n");
	} else if (strcmp(l, "QUIT") == 0) {
		W.quits++;
		srv_say(k, "221 bye\r\n");
		net_conn_close(k->nc);
		k->nc = NULL;
		k->used = false;
	} else {
		srv_say(k, "502 what\r\n");
	}
}

static bool srv_screen(void)
{
	return W.mode >= SRV_SCREEN && W.mode <= SRV_SCREEN_BARE;
}

/* The screen's answer to a client that spoke before the greeting: all it sent is read
 * (so the close is a FIN, not a reset: RFC 2525 2.17), then the mode's reply and end. */
static void srv_screen_read(struct srv_conn *k)
{
	size_t n;
	while (k->nc && net_conn_peek(k->nc, &n) != NULL && n)
		net_conn_consume(k->nc, n);
	if (!k->nc || k->data) /* answered already (data: the flag marks it here) */
		return;
	k->data = true;
	W.pregreets++;
	switch (W.mode) {
	case SRV_SCREEN:
	case SRV_SCREEN_BARE:
	case SRV_SCREEN_RST:
	case SRV_SCREEN_NO_CLOSE:
		srv_say(k, "521 5.5.1 Protocol error\r\n");
		break;
	case SRV_SCREEN_550:
		srv_say(k, "550 5.5.1 Protocol error\r\n");
		break;
	default:
		break;
	}
	if (W.mode == SRV_SCREEN_NO_CLOSE)
		return;
	if (W.mode == SRV_SCREEN_RST)
		net_conn_abort(k->nc);
	else
		net_conn_close(k->nc);
	k->nc = NULL;
	k->used = false;
}

static void srv_read(struct srv_conn *k)
{
	size_t n;
	const uint8_t *p;
	unsigned lines = 0;
	if (srv_screen()) {
		srv_screen_read(k);
		return;
	}
	while (k->nc && (p = net_conn_peek(k->nc, &n)) != NULL && n) {
		size_t i;
		for (i = 0; i < n && k->nc; i++) {
			if (p[i] == '\n') {
				if (k->n && k->line[k->n - 1] == '\r')
					k->n--;
				k->line[k->n] = 0;
				k->n = 0;
				if (!k->data)
					lines++; /* commands, not message content */
				srv_line(k, k->line);
			} else if (k->n < sizeof(k->line) - 1) {
				k->line[k->n++] = (char)p[i];
			}
		}
		if (!k->nc)
			return;
		net_conn_consume(k->nc, i);
	}
	if (lines > 1) /* more than one command in one read: the client pipelined */
		W.pipelined_batches++;
	if (k->nc && net_conn_eof(k->nc)) {
		net_conn_close(k->nc);
		k->nc = NULL;
		k->used = false;
	}
}

static void srv_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	(void)ctx;
	struct srv_conn *k = net_conn_user(c);
	switch (ev) {
	case NET_EV_ACCEPT:
		for (unsigned i = 0; i < SRV_CONNS; i++)
			if (!W.conns[i].used) {
				k = &W.conns[i];
				memset(k, 0, sizeof(*k));
				k->used = true;
				k->nc = c;
				net_conn_set_user(c, k);
				break;
			}
		if (!k) {
			net_conn_abort(c);
			return;
		}
		W.sessions++;
		if (W.mode != SRV_SILENT && !srv_screen())
			srv_say(k, "220 srv ESMTP\r\n");
		else if (srv_screen() && W.mode != SRV_SCREEN_BARE)
			srv_say(k, "220-srv ESMTP\r\n"); /* postscreen_greet_banner */
		return;
	case NET_EV_READABLE:
		if (k)
			srv_read(k);
		return;
	case NET_EV_ABORT:
		if (k) {
			k->nc = NULL;
			k->used = false;
		}
		return;
	default:
		return;
	}
}

static void gen_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	(void)ctx;
	loadgen_event(W.lg, c, (int)ev);
}

/* A whole run with these options; returns the stats (the caller frees them). Virtual
 * time advances 1 ms per step; *ms says how long the run took. */
static void run(enum srv_mode mode, struct loadgen_stats *st, uint64_t *ms, ...)
{
	memset(&W, 0, sizeof(W));
	W.mode = mode;
	W.now = 5000000;
	char *argv[40];
	int argc = 0;
	argv[argc++] = (char *)"mxgate-loadgen";
	argv[argc++] = (char *)"--server";
	argv[argc++] = (char *)"10.0.0.1";
	argv[argc++] = (char *)"--local";
	argv[argc++] = (char *)"10.0.0.2/24";
	argv[argc++] = (char *)"--src";
	argv[argc++] = (char *)"10.0.0.100-10.0.0.139";
	va_list ap;
	va_start(ap, ms);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 39)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	struct loadgen_config cfg;
	loadgen_config_defaults(&cfg);
	char err[200];
	int rc = loadgen_args_parse(&cfg, argc, argv, stderr, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(loadgen_stats_init(st, 5), 0);
	W.lg = loadgen_new(&cfg, st, W.now);
	CHECK(W.lg != NULL);

	struct net_ops gops = { &W.gen, w_alloc, w_send, gen_event };
	struct net_ops sops = { &W.srv, w_alloc, w_send, srv_event };
	struct net_config gc = { .mac = { 2, 0, 0, 0, 0, 2 },
				 .ipv4 = cfg.local,
				 .ipv4_prefix = cfg.local_prefix,
				 .ipv4_src_base = cfg.src_base,
				 .ipv4_src_count = cfg.src_count,
				 .max_conns = cfg.concurrency * 2 + 64,
				 .sndbuf = 16384,
				 .rcvbuf = 16384 };
	struct net_config sc = { .mac = { 2, 0, 0, 0, 0, 1 },
				 .ipv4 = inet_addr("10.0.0.1"),
				 .ipv4_prefix = 24,
				 .max_conns = SRV_CONNS,
				 .sndbuf = 16384,
				 .rcvbuf = 16384 };
	memcpy(gc.secret, "0123456789abcdef", 16);
	memcpy(sc.secret, "fedcba9876543210", 16);
	W.gen.peer = &W.srv;
	W.srv.peer = &W.gen;
	W.gen.s = net_stack_create(&gc, &gops, W.now);
	W.srv.s = net_stack_create(&sc, &sops, W.now);
	CHECK(W.gen.s && W.srv.s);
	net_stack_listen(W.srv.s, 25);
	loadgen_attach(W.lg, W.gen.s);
	uint64_t start = W.now;
	for (int step = 0; step < 600000 && !loadgen_done(W.lg); step++) {
		loadgen_tick(W.lg, W.now);
		w_deliver();
		W.now += 1000;
		net_stack_poll(W.gen.s, W.now);
		net_stack_poll(W.srv.s, W.now);
		w_deliver();
		if (cfg.idle && st->idle_held == cfg.concurrency && step % 1000 == 999)
			loadgen_release(W.lg); /* what SIGUSR2 does */
	}
	CHECK(loadgen_done(W.lg));
	st->end_us = W.now;
	*ms = (W.now - start) / 1000;
	/* let the last FINs and ACKs go */
	for (int i = 0; i < 2000; i++) {
		W.now += 1000;
		net_stack_poll(W.gen.s, W.now);
		net_stack_poll(W.srv.s, W.now);
		w_deliver();
	}
	CHECK(loadgen_session_memory(W.lg) > net_conn_size());
	loadgen_free(W.lg);
	net_stack_destroy(W.gen.s);
	net_stack_destroy(W.srv.s);
	for (struct wire *x = &W.gen; x; x = x == &W.gen ? &W.srv : NULL) {
		while (x->head) {
			struct frame *f = x->head;
			x->head = f->next;
			free(f->d);
			free(f);
		}
	}
}

static void test_good_run(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_GOOD, &st, &ms, "--sessions", "60", "--concurrency", "15", "--messages", "3",
	    "--rcpts", "2", "--size", "5000", "--bad-rcpt", "bad@x.example", "--bad-rcpt-every",
	    "4", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_started, 60);
	CHECK_INT_EQ(st.sessions_greeted, 60);
	CHECK_INT_EQ(st.sessions_done, 60);
	CHECK_INT_EQ(st.messages_started, 180);
	CHECK_INT_EQ(st.messages_accepted, 180);
	CHECK_INT_EQ(st.rcpts_sent, 360);
	CHECK_INT_EQ(st.rcpts_refused, 90);
	CHECK_INT_EQ(st.rcpts_accepted, 270);
	/* the server agrees */
	CHECK_INT_EQ(W.messages, 180);
	CHECK_INT_EQ(W.rcpts_refused, 90);
	CHECK_INT_EQ(W.rcpts_ok, 270);
	CHECK_INT_EQ(W.sessions, 60);
	CHECK_INT_EQ(W.quits, 60);
	CHECK(W.pipelined_batches > 0);
	CHECK_INT_EQ(st.lat[LOADGEN_LAT_CONNECT].n, 60);
	CHECK_INT_EQ(st.lat[LOADGEN_LAT_DOT].n, 180);
	CHECK_INT_EQ(st.bytes_content, 180 * 5000);
	loadgen_stats_free(&st);
}

static void test_no_pipelining(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	/* the server does not offer it: one command at a time */
	run(SRV_NO_PIPELINING, &st, &ms, "--sessions", "10", "--concurrency", "5", "--rcpts",
	    "3", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.messages_accepted, 10);
	CHECK_INT_EQ(W.messages, 10);
	CHECK_INT_EQ(W.pipelined_batches, 0);
	loadgen_stats_free(&st);
	/* offered, but turned off */
	run(SRV_GOOD, &st, &ms, "--sessions", "10", "--concurrency", "5", "--rcpts", "3",
	    "--no-pipelining", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.messages_accepted, 10);
	CHECK_INT_EQ(W.pipelined_batches, 0);
	loadgen_stats_free(&st);
}

static void test_wrong_replies(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_RCPT_ALL, &st, &ms, "--sessions", "4", "--concurrency", "4", "--rcpts", "2",
	    "--bad-rcpt", "bad@x.example", "--bad-rcpt-every", "2", NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_RCPT], 4);
	CHECK_INT_EQ(st.errors_total, 4);
	CHECK_INT_EQ(st.sessions_failed, 4);
	CHECK_INT_EQ(st.nkept, 4);
	CHECK(strstr(st.kept[0].text, "expected 4xx/5xx, got 250 2.1.5 ok") != NULL);
	loadgen_stats_free(&st);

	run(SRV_DOT_451, &st, &ms, "--sessions", "3", "--concurrency", "3", "--messages", "2",
	    NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_DOT], 3);
	CHECK_INT_EQ(st.messages_refused, 3);
	CHECK_INT_EQ(st.messages_accepted, 0);
	CHECK_INT_EQ(W.quits, 3); /* a failed session still ends with QUIT */
	loadgen_stats_free(&st);
}

static void test_silent_server(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_SILENT, &st, &ms, "--sessions", "3", "--concurrency", "3", "--timeout", "2",
	    NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_TIMEOUT], 3);
	CHECK_INT_EQ(st.sessions_greeted, 0);
	CHECK(ms >= 2000 && ms < 3000);
	CHECK(strstr(st.kept[0].text, "no reply to GREETING within 2 s") != NULL);
	loadgen_stats_free(&st);
}

static void test_rate(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	/* 100 messages at 50 a second: about two seconds of virtual time */
	run(SRV_GOOD, &st, &ms, "--sessions", "10", "--concurrency", "10", "--messages", "10",
	    "--rate", "50", "--rate-of", "messages", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.messages_accepted, 100);
	CHECK(ms >= 1900 && ms <= 2500);
	loadgen_stats_free(&st);
	/* 40 sessions at 100 a second */
	run(SRV_GOOD, &st, &ms, "--sessions", "40", "--concurrency", "40", "--rate", "100", NULL);
	CHECK_INT_EQ(st.sessions_done, 40);
	CHECK(ms >= 390 && ms <= 700);
	loadgen_stats_free(&st);
}

/* --sessions 0 --duration: sessions are opened for that long, then the open ones finish */
static void test_duration(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_GOOD, &st, &ms, "--sessions", "0", "--duration", "0.5", "--concurrency", "4",
	    "--messages", "2", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK(st.sessions_done > 8);
	CHECK_INT_EQ(st.sessions_done, st.sessions_started);
	CHECK_INT_EQ(st.messages_accepted, 2 * st.sessions_done);
	CHECK(ms >= 500 && ms < 1000);
	/* the generator's table (2 x 4 + 64 here) filled with closing connections: opens
	 * waited, none failed */
	CHECK(st.connect_deferred > 0);
	loadgen_stats_free(&st);
}

static void test_idle(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_GOOD, &st, &ms, "--idle", "--concurrency", "200", "--handshakes", "16", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_greeted, 200);
	CHECK_INT_EQ(st.idle_max, 200);
	CHECK_INT_EQ(st.idle_held, 0);
	CHECK_INT_EQ(st.sessions_done, 200);
	CHECK_INT_EQ(W.quits, 200);
	CHECK_INT_EQ(W.messages, 0);
	CHECK(st.all_greeted_us > st.start_us);
	loadgen_stats_free(&st);
}

/* Pregreeting bots: EHLO before the greeting; the screen's 521 and the close count as a
 * reject, anything else as an error of its kind. */
static void test_pregreet(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_SCREEN, &st, &ms, "--pregreet", "--sessions", "300", "--concurrency", "50",
	    "--helo", "bot.example", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_started, 300);
	CHECK_INT_EQ(st.sessions_rejected, 300);
	CHECK_INT_EQ(st.sessions_failed, 0);
	CHECK_INT_EQ(st.sessions_greeted, 0);
	CHECK_INT_EQ(st.sessions_done, 0);
	CHECK_INT_EQ(W.pregreets, 300); /* each spoke first */
	CHECK_INT_EQ(W.sessions, 300);
	CHECK_INT_EQ(W.quits, 0);
	CHECK_INT_EQ(st.lat[LOADGEN_LAT_CONNECT].n, 300); /* connect to the 521 */
	loadgen_stats_free(&st);

	/* without the teaser */
	run(SRV_SCREEN_BARE, &st, &ms, "--pregreet", "--sessions", "20", "--concurrency", "5",
	    NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_rejected, 20);
	loadgen_stats_free(&st);

	/* a reset after the 521 is a close too */
	run(SRV_SCREEN_RST, &st, &ms, "--pregreet", "--sessions", "20", "--concurrency", "5",
	    NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_rejected, 20);
	loadgen_stats_free(&st);

	/* 521 but no close: the timeout */
	run(SRV_SCREEN_NO_CLOSE, &st, &ms, "--pregreet", "--sessions", "3", "--concurrency",
	    "3", "--timeout", "2", NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_TIMEOUT], 3);
	CHECK_INT_EQ(st.errors_total, 3);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	CHECK(ms >= 2000 && ms < 3000);
	loadgen_stats_free(&st);

	/* the close without the 521 */
	run(SRV_SCREEN_CLOSE, &st, &ms, "--pregreet", "--sessions", "4", "--concurrency", "2",
	    NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_LOST], 4);
	CHECK_INT_EQ(st.errors_total, 4);
	CHECK_INT_EQ(st.sessions_failed, 4);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	loadgen_stats_free(&st);

	/* another reply */
	run(SRV_SCREEN_550, &st, &ms, "--pregreet", "--sessions", "4", "--concurrency", "4",
	    NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_GREETING], 4);
	CHECK_INT_EQ(st.errors_total, 4);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	CHECK(strstr(st.kept[0].text, "expected the screen's 521, got \"550 \"") != NULL);
	loadgen_stats_free(&st);

	/* no screen: the server greets at once; the bot's EHLO gets a 220 first */
	run(SRV_GOOD, &st, &ms, "--pregreet", "--sessions", "5", "--concurrency", "5", NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_GREETING], 5);
	CHECK_INT_EQ(st.errors_total, 5);
	CHECK(strstr(st.kept[0].text, "got \"220 \"") != NULL);
	CHECK_INT_EQ(st.sessions_failed, 5);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	loadgen_stats_free(&st);
}

/* DNSBL-listed clients (--listed): the 550 at RCPT is the expected rejection, counted as
 * such; anything else at RCPT (a 450, or a 250) is an RCPT error. */
static void test_listed(void)
{
	struct loadgen_stats st;
	uint64_t ms;
	run(SRV_LISTED, &st, &ms, "--listed", "--sessions", "20", "--concurrency", "5", NULL);
	CHECK_INT_EQ(st.errors_total, 0);
	CHECK_INT_EQ(st.sessions_failed, 0);
	CHECK_INT_EQ(st.sessions_greeted, 20);
	CHECK_INT_EQ(st.sessions_rejected, 20);
	CHECK_INT_EQ(st.rcpts_refused, 20);
	CHECK_INT_EQ(st.messages_accepted, 0);
	CHECK_INT_EQ(st.messages_refused, 20);
	CHECK_INT_EQ(W.rcpts_refused, 20);
	CHECK_INT_EQ(W.messages, 0);
	loadgen_stats_free(&st);

	run(SRV_LISTED_450, &st, &ms, "--listed", "--sessions", "4", "--concurrency", "4",
	    NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_RCPT], 4);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	CHECK(strstr(st.kept[0].text, "expected 550, got 450 4.3.2") != NULL);
	loadgen_stats_free(&st);

	/* a server that takes the listed client's recipient */
	run(SRV_GOOD, &st, &ms, "--listed", "--sessions", "3", "--concurrency", "3", NULL);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_RCPT], 3);
	CHECK_INT_EQ(st.sessions_rejected, 0);
	CHECK(strstr(st.kept[0].text, "RCPT of a listed client: expected 550, got 250") !=
	      NULL);
	loadgen_stats_free(&st);
}

int main(void)
{
	RUN_TEST(test_good_run);
	RUN_TEST(test_no_pipelining);
	RUN_TEST(test_wrong_replies);
	RUN_TEST(test_silent_server);
	RUN_TEST(test_rate);
	RUN_TEST(test_duration);
	RUN_TEST(test_idle);
	RUN_TEST(test_pregreet);
	RUN_TEST(test_listed);
	return TEST_RESULT();
}
