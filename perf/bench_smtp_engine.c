/* The SMTP engine alone: no sockets, no spool. Measures what one core spends in
 * smtp_session_step() and friends, the ceiling any transport can reach.
 *
 *   1. pipelined sessions: EHLO, then transactions of MAIL, RCPT, DATA and a 4 KiB
 *      message (headers, 76-column body lines, a few dot-stuffed lines), pipelined as
 *      PIPELINING allows, read in 16 KiB pieces; every verdict accepted at once.
 *   2. the same transactions with BDAT (one chunk, LAST).
 *   3. one large message (64 MiB body) through DATA, read in 64 KiB pieces.
 *   4. session setup: greeting, EHLO, QUIT (connections/s the engine could take).
 * Prints bytes/s, transactions/s and cycles per transaction (rdtsc where the CPU has it,
 * otherwise nanoseconds at the measured clock).
 *
 *     bench_smtp_engine [seconds-per-run]   (default 2)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_RDTSC 1
#endif

#include "smtp/smtp_session.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cycles(void)
{
#ifdef HAVE_RDTSC
	return __rdtsc();
#else
	return now_ns();
#endif
}

struct growbuf {
	char *p;
	size_t len, cap;
};

static void add(struct growbuf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p) {
			perror("realloc");
			exit(1);
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void adds(struct growbuf *b, const char *s)
{
	add(b, s, strlen(s));
}

/* A realistic 4 KiB message: a dozen headers, 76-column lines, some starting with '.'. */
static void message_4k(struct growbuf *b, unsigned seq, bool dot_stuff)
{
	char line[200];
	size_t start = b->len;
	snprintf(line, sizeof(line),
		 "Received: from relay.example.org (relay.example.org [192.0.2.7])\r\n"
		 "\tby mx.example.net with ESMTP id %u; Sun, 22 Nov 2026 10:00:00 +0000\r\n",
		 seq);
	adds(b, line);
	adds(b, "From: Alice Example <alice@example.org>\r\n"
		"To: Bob Example <bob@example.net>\r\n"
		"Subject: quarterly report and a somewhat long subject line for realism\r\n"
		"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n");
	snprintf(line, sizeof(line), "Message-ID: <%u.bench@example.org>\r\n", seq);
	adds(b, line);
	adds(b, "MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n\r\n");
	unsigned n = 0;
	while (b->len - start < 4096 - 80) {
		if (dot_stuff && n % 16 == 5)
			adds(b, "..a line that starts with a dot, stuffed by the client as RFC 5321 says\r\n");
		else
			adds(b, "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n");
		n++;
	}
}

struct result {
	uint64_t bytes, transactions, ns, cyc, body_bytes;
};

/* Drive one session over `in`, fed in pieces of `piece` bytes; answers every verdict. */
static void run_session(const struct smtp_config *cfg, const struct growbuf *in, size_t piece,
			struct result *r)
{
	static const struct smtp_client_info client = { .addr = "192.0.2.7", .port = 4000 };
	struct smtp_session *s = smtp_session_new(cfg, &client);
	if (!s) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	smtp_session_greet(s);
	static char pend[1 << 20];
	size_t pend_len = 0, off = 0;
	while (off < in->len || pend_len) {
		size_t k = in->len - off < piece ? in->len - off : piece;
		if (k > sizeof(pend) - pend_len)
			k = sizeof(pend) - pend_len;
		memcpy(pend + pend_len, in->p + off, k);
		pend_len += k;
		off += k;
		size_t pos = 0;
		for (;;) {
			size_t used;
			struct smtp_event ev = smtp_session_step(s, pend + pos, pend_len - pos, &used);
			pos += used;
			if (ev.type == SMTP_EV_NONE)
				break;
			if (ev.type == SMTP_EV_BLOCKED) {
				smtp_session_output_done(s, smtp_session_output(s).len);
				continue;
			}
			if (ev.type == SMTP_EV_BODY)
				r->body_bytes += ev.u.body.len;
			else if (ev.type == SMTP_EV_HEADER)
				r->body_bytes += ev.u.header.text.len;
			if (ev.type == SMTP_EV_MESSAGE_END)
				r->transactions++;
			if (ev.type == SMTP_EV_PROTOCOL_ERROR) {
				fprintf(stderr, "unexpected protocol error %s (%u)\n",
					smtp_error_kind_name(ev.u.error.kind), ev.u.error.code);
				exit(1);
			}
			if (ev.needs_verdict) {
				struct smtp_verdict v = { .queue_id = "4XyZ1aB2cD" };
				smtp_session_verdict(s, &v);
			}
		}
		/* the transport writes the replies out */
		smtp_session_output_done(s, smtp_session_output(s).len);
		memmove(pend, pend + pos, pend_len - pos);
		pend_len -= pos;
		if (smtp_session_closed(s))
			break;
	}
	r->bytes += in->len;
	smtp_session_free(s);
}

static void report(const char *name, const struct result *r, const char *unit)
{
	double secs = (double)r->ns / 1e9;
	printf("%-34s %9.1f MB/s  %11.0f %s/s  %8.0f cycles/%s  (%" PRIu64 " in %.2f s)\n", name,
	       (double)r->bytes / secs / 1e6, (double)r->transactions / secs, unit,
	       r->transactions ? (double)r->cyc / (double)r->transactions : 0.0, unit,
	       r->transactions, secs);
}

static void bench(const char *name, const struct smtp_config *cfg, const struct growbuf *in,
		  size_t piece, double seconds, const char *unit, bool count_sessions)
{
	struct result r = { 0 };
	uint64_t t0 = now_ns(), c0 = cycles();
	do {
		uint64_t before = r.transactions;
		run_session(cfg, in, piece, &r);
		if (count_sessions && r.transactions == before)
			r.transactions++;
	} while ((double)(now_ns() - t0) / 1e9 < seconds);
	r.ns = now_ns() - t0;
	r.cyc = cycles() - c0;
	report(name, &r, unit);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	if (seconds <= 0)
		seconds = 2.0;
	struct smtp_config cfg;
	smtp_config_defaults(&cfg);
	cfg.myhostname = "mx.example.net";
	cfg.banner = "mx.example.net ESMTP mxgate";

	/* 1. 100 pipelined DATA transactions per session */
	struct growbuf data = { 0 };
	adds(&data, "EHLO client.example.org\r\n");
	for (unsigned i = 0; i < 100; i++) {
		adds(&data, "MAIL FROM:<alice@example.org> SIZE=4096 BODY=8BITMIME\r\n"
			    "RCPT TO:<bob@example.net>\r\nDATA\r\n");
		message_4k(&data, i, true);
		adds(&data, ".\r\n");
	}
	adds(&data, "QUIT\r\n");
	/* the pipelining rules: EHLO and DATA end a group, so a real client sends in flights;
	 * the engine sees them in one buffer here only if the forbid check is off */
	cfg.forbid_unauth_pipelining = false;
	printf("SMTP engine benchmark (one core, no I/O), %.1f s per run\n", seconds);
	bench("DATA, 4 KiB messages, pipelined", &cfg, &data, 16384, seconds, "txn", false);

	/* 2. the same with BDAT */
	struct growbuf bdat = { 0 };
	adds(&bdat, "EHLO client.example.org\r\n");
	for (unsigned i = 0; i < 100; i++) {
		struct growbuf m = { 0 };
		message_4k(&m, i, false);
		char cmd[160];
		snprintf(cmd, sizeof(cmd),
			 "MAIL FROM:<alice@example.org> SIZE=%zu\r\nRCPT TO:<bob@example.net>\r\n"
			 "BDAT %zu LAST\r\n",
			 m.len, m.len);
		adds(&bdat, cmd);
		add(&bdat, m.p, m.len);
		free(m.p);
	}
	adds(&bdat, "QUIT\r\n");
	bench("BDAT, 4 KiB messages, pipelined", &cfg, &bdat, 16384, seconds, "txn", false);

	/* 3. one 64 MiB message */
	struct growbuf big = { 0 };
	adds(&big, "EHLO client.example.org\r\nMAIL FROM:<alice@example.org>\r\n"
		   "RCPT TO:<bob@example.net>\r\nDATA\r\nSubject: big\r\n\r\n");
	while (big.len < (64u << 20))
		adds(&big, "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n");
	adds(&big, ".\r\nQUIT\r\n");
	struct smtp_config bigcfg = cfg;
	bigcfg.message_size_limit = 128u << 20;
	bench("DATA, one 64 MiB message", &bigcfg, &big, 65536, seconds, "msg", false);

	/* 4. sessions: greeting, EHLO, QUIT */
	struct growbuf sess = { 0 };
	adds(&sess, "EHLO client.example.org\r\nQUIT\r\n");
	bench("sessions (220, EHLO, QUIT)", &cfg, &sess, 16384, seconds, "session", true);

	free(data.p);
	free(bdat.p);
	free(big.p);
	free(sess.p);
	return 0;
}
