/* libFuzzer harness for the SMTP/LMTP client codec: a whole session from fuzz bytes, the
 * server's bytes and the caller's commands interleaved.
 *
 * Input layout:
 *   [0] config switches: 0x01 LMTP, 0x02 pipelining off, 0x04 send_after_refusal,
 *       0x08 small reply bounds (line_max 16, line_hard_max 64, text_max 64, 3 lines),
 *       0x10 small queue (queue_max 4, inflight_max 2, rcpt_max 3), 0x20 output_max 4096
 *       (else 65536), 0x40 the transport sends only when told ('o'/'h'), not before each
 *       server flight
 *   [1] flight separator
 *   [2..] flights, cut at each separator byte. A flight that starts with 0xff is a script of
 *       caller operations, one letter each (others are skipped):
 *         E ehlo  H helo  M<flags> mail  R<flags> rcpt  D data  C<len><bytes> content
 *         Z content_end  B<size><last> bdat  S rset  N noop  Q quit  P peer_closed
 *         o send all output  h send half of it  s step with no input
 *       Any other flight is server bytes, fed in pieces whose sizes come from a generator
 *       seeded by the input.
 *
 * Invariants (abort on violation): step() never claims more input than it got and NONE
 * means all of it; every event is well formed (enums in range, a noreply event carries no
 * reply, texts printable and within text_max, codes 200-559, recipient indices below what
 * was queued); a PROTOCOL_ERROR leaves the client in ERROR; without pipelining at most one
 * command is out; what is out never exceeds what is owed, nor the queue; the output stays
 * within output_max and is empty once the session is over; the output is CRLF lines (no
 * bare CR or LF) as long as no raw BDAT octets went out; every DATA content that went out
 * is exactly the oracle's dot-stuffed, CRLF-normalised form of what was given; at the end,
 * every queued command got its events. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_MAX (1u << 20)

struct state {
	struct smtp_client *c;
	struct smtp_client_config cfg;
	uint32_t rng;
	bool auto_send;
	bool raw_out;        /* BDAT octets went out: the output may hold anything */
	char prev_out;       /* the last byte sent, for the CRLF check */
	uint64_t sent_total;
	/* event accounting */
	unsigned queued;     /* commands queued, greeting included */
	unsigned ends;       /* of which DOT and BDAT LAST */
	unsigned events;     /* events but MESSAGE and PROTOCOL_ERROR */
	unsigned messages;   /* MESSAGE events */
	unsigned rcpts_queued; /* RCPTs queued in the current transaction */
	/* the DATA content being written, and what went out for it */
	bool in_msg;
	bool msg_overflow;
	char *msg_in, *msg_out;
	size_t msg_in_len, msg_out_len;
};

static uint32_t next_rand(struct state *st)
{
	st->rng = st->rng * 1103515245u + 12345u;
	return st->rng >> 8;
}

static volatile unsigned char sink;

static void touch(struct mx_span sp)
{
	for (size_t i = 0; i < sp.len; i++)
		sink ^= (unsigned char)sp.ptr[i];
}

/* The transport sends n bytes of the output. */
static void send_out(struct state *st, size_t n)
{
	struct mx_span o = smtp_client_output(st->c);
	FUZZ_CHECK(o.len <= st->cfg.output_max);
	if (n > o.len)
		n = o.len;
	for (size_t i = 0; i < n; i++) {
		char ch = o.ptr[i];
		if (!st->raw_out) {
			FUZZ_CHECK(ch != '\n' || st->prev_out == '\r');
			FUZZ_CHECK(st->prev_out != '\r' || ch == '\n');
		}
		st->prev_out = ch;
	}
	smtp_client_output_done(st->c, n);
	st->sent_total += n;
}

static void check_client(struct state *st)
{
	struct smtp_client *c = st->c;
	unsigned inflight = smtp_client_inflight(c), pending = smtp_client_pending(c);
	FUZZ_CHECK(inflight <= pending);
	FUZZ_CHECK((smtp_client_awaiting(c) != SMTP_CLIENT_CMD_NONE) == (inflight > 0));
	FUZZ_CHECK(pending <= st->cfg.queue_max);
	if (!smtp_client_pipelining(c))
		FUZZ_CHECK(inflight <= 1);
	if (smtp_client_closed(c)) {
		FUZZ_CHECK(smtp_client_output(c).len == 0);
		FUZZ_CHECK(inflight == 0);
	}
	FUZZ_CHECK(smtp_client_output(c).len <= st->cfg.output_max);
	FUZZ_CHECK(smtp_client_memory(c) <= 64 * 1024 + st->cfg.queue_max * 64u +
						    st->cfg.rcpt_max / 8 + st->cfg.line_max +
						    st->cfg.text_max + st->cfg.output_max);
	if (smtp_client_idle(c))
		FUZZ_CHECK(pending == 0 && smtp_client_state(c) == SMTP_CLIENT_ST_COMMANDS);
}

static void on_event(struct state *st, const struct smtp_client_event *ev)
{
	FUZZ_CHECK(ev->type > SMTP_CLIENT_EV_NONE && ev->type < SMTP_CLIENT_EV_MAX);
	FUZZ_CHECK(ev->cmd < SMTP_CLIENT_CMD_MAX);
	FUZZ_CHECK(ev->noreply < SMTP_CLIENT_NOREPLY_MAX);
	FUZZ_CHECK(ev->error < SMTP_CLIENT_ERR_MAX);
	touch(ev->text);
	FUZZ_CHECK(ev->text.len <= st->cfg.text_max);
	for (size_t i = 0; i < ev->text.len; i++)
		FUZZ_CHECK((unsigned char)ev->text.ptr[i] >= 0x20 && ev->text.ptr[i] != 0x7f);
	FUZZ_CHECK(strlen(ev->enhanced) < sizeof(ev->enhanced));
	if (ev->enhanced[0])
		FUZZ_CHECK(ev->enhanced[0] == (char)('0' + ev->code / 100));
	if (ev->noreply) {
		FUZZ_CHECK(ev->code == 0 && ev->text.len == 0 && ev->enhanced[0] == '\0');
		FUZZ_CHECK(ev->type != SMTP_CLIENT_EV_PROTOCOL_ERROR);
	} else if (ev->type != SMTP_CLIENT_EV_PROTOCOL_ERROR || ev->code) {
		FUZZ_CHECK(ev->code >= 200 && ev->code <= 559);
	}
	if (ev->type == SMTP_CLIENT_EV_RCPT)
		FUZZ_CHECK(ev->rcpt >= 0 && (unsigned)ev->rcpt < st->cfg.rcpt_max);
	else if (ev->type != SMTP_CLIENT_EV_MESSAGE)
		FUZZ_CHECK(ev->rcpt == -1);
	if (ev->type == SMTP_CLIENT_EV_PROTOCOL_ERROR) {
		FUZZ_CHECK(ev->error != SMTP_CLIENT_ERR_NONE);
		FUZZ_CHECK(smtp_client_state(st->c) == SMTP_CLIENT_ST_ERROR);
	} else {
		FUZZ_CHECK(ev->error == SMTP_CLIENT_ERR_NONE);
	}
	if (ev->type == SMTP_CLIENT_EV_MESSAGE)
		st->messages++;
	else if (ev->type != SMTP_CLIENT_EV_PROTOCOL_ERROR)
		st->events++;
	if (ev->type == SMTP_CLIENT_EV_DATA && ev->code / 100 == 3) {
		FUZZ_CHECK(smtp_client_state(st->c) == SMTP_CLIENT_ST_CONTENT);
		st->in_msg = true;
		st->msg_overflow = false;
		st->msg_in_len = st->msg_out_len = 0;
	}
}

/* One step() over buf[0..len); returns false once it says NONE. */
static bool step_once(struct state *st, const char *buf, size_t len, size_t *used)
{
	*used = 0;
	struct smtp_client_event ev = smtp_client_step(st->c, buf, len, used);
	FUZZ_CHECK(*used <= len);
	FUZZ_CHECK(ev.type != SMTP_CLIENT_EV_NONE || *used == len);
	if (ev.type != SMTP_CLIENT_EV_NONE)
		on_event(st, &ev);
	check_client(st);
	return ev.type != SMTP_CLIENT_EV_NONE;
}

static void drive(struct state *st, const char *p, size_t n)
{
	size_t off = 0;
	for (int guard = 0;; guard++) {
		FUZZ_CHECK(guard < 1000000);
		size_t len = n - off, used;
		/* a private copy per call, freed after the event: a span that outlives its
		 * call is a use-after-free */
		char *in = malloc(len + 1);
		FUZZ_CHECK(in != NULL);
		memcpy(in, p + off, len);
		bool more = step_once(st, in, len, &used);
		free(in);
		off += used;
		if (!more)
			break;
	}
}

/* The events owed without input (skipped commands, a session that ended). */
static void drain_events(struct state *st)
{
	static const char none[1];
	size_t used;
	for (int guard = 0; step_once(st, none, 0, &used); guard++)
		FUZZ_CHECK(guard < 1000000);
}

/* RFC 5321 4.5.2 / 2.3.8 as the codec documents it, written line by line. */
static size_t oracle(const char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && in[j] != '\r' && in[j] != '\n')
			j++;
		if (j > i && in[i] == '.')
			out[o++] = '.';
		memcpy(out + o, in + i, j - i);
		o += j - i;
		if (j < n) {
			if (in[j] == '\r' && j + 1 < n && in[j + 1] == '\n')
				j++;
			j++;
		}
		out[o++] = '\r';
		out[o++] = '\n';
		i = j;
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* What a content call appended to the output: the last `added` bytes of it. */
static void capture(struct state *st, uint64_t before)
{
	struct mx_span o = smtp_client_output(st->c);
	uint64_t after = st->sent_total + o.len;
	FUZZ_CHECK(after >= before);
	size_t added = (size_t)(after - before);
	FUZZ_CHECK(added <= o.len);
	if (st->msg_out_len + added > MSG_MAX) {
		st->msg_overflow = true;
		return;
	}
	memcpy(st->msg_out + st->msg_out_len, o.ptr + o.len - added, added);
	st->msg_out_len += added;
}

static void do_content(struct state *st, const char *p, size_t n)
{
	enum smtp_client_state before_state = smtp_client_state(st->c);
	uint64_t before = st->sent_total + smtp_client_output(st->c).len;
	ssize_t r = smtp_client_content(st->c, p, n);
	if (before_state == SMTP_CLIENT_ST_CONTENT) {
		FUZZ_CHECK(r >= 0 && (size_t)r <= n);
		FUZZ_CHECK(st->in_msg);
		capture(st, before);
		if (st->msg_in_len + (size_t)r > MSG_MAX)
			st->msg_overflow = true;
		else {
			memcpy(st->msg_in + st->msg_in_len, p, (size_t)r);
			st->msg_in_len += (size_t)r;
		}
	} else if (before_state == SMTP_CLIENT_ST_CHUNK) {
		FUZZ_CHECK(r >= 0 && (size_t)r <= n);
		if (r > 0)
			st->raw_out = true;
	} else if (before_state == SMTP_CLIENT_ST_CLOSED || before_state == SMTP_CLIENT_ST_ERROR) {
		FUZZ_CHECK(r == -EPIPE);
	} else {
		FUZZ_CHECK(r == -EINVAL);
	}
}

static void do_content_end(struct state *st)
{
	bool was_content = smtp_client_state(st->c) == SMTP_CLIENT_ST_CONTENT;
	uint64_t before = st->sent_total + smtp_client_output(st->c).len;
	int rc = smtp_client_content_end(st->c);
	if (!was_content) {
		FUZZ_CHECK(rc == -EINVAL || rc == -EPIPE);
		return;
	}
	if (rc == -ENOBUFS)
		return;
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(smtp_client_state(st->c) == SMTP_CLIENT_ST_COMMANDS);
	st->queued++;
	st->ends++;
	capture(st, before);
	if (!st->msg_overflow) {
		char *want = malloc(2 * st->msg_in_len + 8);
		FUZZ_CHECK(want != NULL);
		size_t wn = oracle(st->msg_in, st->msg_in_len, want);
		FUZZ_CHECK(wn == st->msg_out_len && memcmp(want, st->msg_out, wn) == 0);
		free(want);
	}
	st->in_msg = false;
}

/* Count a queueing call's success, and check its errors are among the documented ones. */
static void queued(struct state *st, int rc)
{
	FUZZ_CHECK(rc >= 0 || rc == -EPIPE || rc == -EBUSY || rc == -ENOBUFS || rc == -EAGAIN ||
		   rc == -EINVAL || rc == -E2BIG || rc == -EOPNOTSUPP || rc == -EMSGSIZE ||
		   rc == -ECANCELED);
	if (rc >= 0)
		st->queued++;
}

static void do_mail(struct state *st, uint8_t f)
{
	static const char *const extras[] = { "X-A=1", "X-B=2 X-C", "\r\nRSET" };
	struct smtp_client_mail m = {
		.sender = (f & 0x80) ? "" : "alice@example.org",
		.size = (f & 0x20) ? UINT64_MAX : (f & 1) ? 100 : 0,
		.body = (f & 0x40) ? SMTP_BODY_BINARYMIME : (f & 2) ? SMTP_BODY_8BITMIME
								     : SMTP_BODY_UNSPECIFIED,
		.smtputf8 = (f & 4) != 0,
		.ret = (f & 8) ? "HDRS" : NULL,
		.envid = (f & 8) ? "Q+2B1" : NULL,
		.extra = (f & 0x10) ? extras[f % 3] : NULL,
	};
	int rc = smtp_client_mail(st->c, &m);
	queued(st, rc);
	if (rc >= 0) {
		FUZZ_CHECK(rc == 0);
		st->rcpts_queued = 0;
	}
}

static void do_rcpt(struct state *st, uint8_t f)
{
	struct smtp_client_rcpt r = {
		.addr = (f & 8) ? "bad\r\n@example.net" : (f & 16) ? "\"a b\"@example.net"
								   : "bob@example.net",
		.notify = (f & 1) ? "SUCCESS,FAILURE" : NULL,
		.orcpt = (f & 2) ? "rfc822;bob@example.net" : NULL,
		.extra = (f & 4) ? "X-R=1" : NULL,
	};
	int rc = smtp_client_rcpt(st->c, &r);
	queued(st, rc);
	if (rc >= 0) {
		FUZZ_CHECK((unsigned)rc == st->rcpts_queued);
		st->rcpts_queued++;
	}
}

static void do_bdat(struct state *st, uint8_t size, bool last)
{
	int rc = smtp_client_bdat(st->c, size, last);
	queued(st, rc);
	if (rc >= 0 && last)
		st->ends++;
	if (rc >= 0)
		FUZZ_CHECK(smtp_client_state(st->c) ==
			   (size ? SMTP_CLIENT_ST_CHUNK : SMTP_CLIENT_ST_COMMANDS));
}

static void script(struct state *st, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (p[i]) {
		case 'E':
			queued(st, smtp_client_ehlo(st->c, "client.example"));
			break;
		case 'H':
			queued(st, smtp_client_helo(st->c, "client.example"));
			break;
		case 'M':
			do_mail(st, i + 1 < n ? p[++i] : 0);
			break;
		case 'R':
			do_rcpt(st, i + 1 < n ? p[++i] : 0);
			break;
		case 'D': {
			int rc = smtp_client_data(st->c);
			queued(st, rc);
			if (rc == 0)
				FUZZ_CHECK(smtp_client_state(st->c) == SMTP_CLIENT_ST_DATA_WAIT ||
					   smtp_client_state(st->c) == SMTP_CLIENT_ST_COMMANDS);
			break;
		}
		case 'C': {
			size_t len = i + 1 < n ? p[++i] : 0;
			if (len > n - i - 1)
				len = n - i - 1;
			const char *bytes = (const char *)p + i + 1;
			i += len;
			/* what the output has no room for is not taken (the piece is dropped) */
			do_content(st, bytes, len);
			break;
		}
		case 'Z':
			do_content_end(st);
			break;
		case 'B': {
			uint8_t sz = i + 1 < n ? p[++i] : 0;
			bool last = i + 1 < n ? (p[++i] & 1) != 0 : false;
			do_bdat(st, sz, last);
			break;
		}
		case 'S':
			queued(st, smtp_client_rset(st->c));
			break;
		case 'N':
			queued(st, smtp_client_noop(st->c));
			break;
		case 'Q':
			queued(st, smtp_client_quit(st->c));
			break;
		case 'P':
			smtp_client_peer_closed(st->c);
			FUZZ_CHECK(smtp_client_closed(st->c));
			break;
		case 'o':
			send_out(st, SIZE_MAX);
			break;
		case 'h':
			send_out(st, (smtp_client_output(st->c).len + 1) / 2);
			break;
		case 's':
			drain_events(st);
			break;
		default:
			break;
		}
		check_client(st);
		drain_events(st);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static struct state st; /* big buffers: keep them off the stack and reuse them */
	char *msg_in = st.msg_in, *msg_out = st.msg_out;
	memset(&st, 0, sizeof(st));
	st.msg_in = msg_in ? msg_in : malloc(MSG_MAX);
	st.msg_out = msg_out ? msg_out : malloc(MSG_MAX);
	FUZZ_CHECK(st.msg_in && st.msg_out);

	uint8_t c0 = data[0], sep = data[1];
	smtp_client_config_defaults(&st.cfg);
	st.cfg.lmtp = (c0 & 0x01) != 0;
	st.cfg.pipelining = !(c0 & 0x02);
	st.cfg.send_after_refusal = (c0 & 0x04) != 0;
	if (c0 & 0x08) {
		st.cfg.line_max = 16;
		st.cfg.line_hard_max = 64;
		st.cfg.text_max = 64;
		st.cfg.reply_lines_max = 3;
	}
	if (c0 & 0x10) {
		st.cfg.queue_max = 4;
		st.cfg.inflight_max = 2;
		st.cfg.rcpt_max = 3;
	}
	st.cfg.output_max = (c0 & 0x20) ? 4096 : 65536;
	st.auto_send = !(c0 & 0x40);
	st.rng = (uint32_t)size * 2654435761u ^ c0;
	FUZZ_CHECK(smtp_client_new(&st.c, &st.cfg) == 0);
	st.queued = 1; /* the greeting */

	size_t i = 2;
	while (i <= size) {
		const uint8_t *f = data + i;
		const uint8_t *end = memchr(f, sep, size - i);
		size_t n = end ? (size_t)(end - f) : size - i;
		i += n + 1;
		if (n >= 1 && f[0] == 0xff) {
			script(&st, f + 1, n - 1);
			continue;
		}
		if (st.auto_send)
			send_out(&st, SIZE_MAX);
		for (size_t off = 0; off < n;) {
			size_t k = 1 + next_rand(&st) % (n - off);
			if (next_rand(&st) & 1)
				k = n - off;
			drive(&st, (const char *)f + off, k);
			off += k;
		}
	}
	/* the end of the connection: every command still owed gets its event */
	smtp_client_peer_closed(st.c);
	drain_events(&st);
	FUZZ_CHECK(smtp_client_closed(st.c));
	FUZZ_CHECK(smtp_client_pending(st.c) == 0);
	FUZZ_CHECK(st.events == st.queued - st.ends);
	if (st.cfg.lmtp)
		FUZZ_CHECK(st.messages >= st.ends);
	else
		FUZZ_CHECK(st.messages == st.ends);
	smtp_client_free(st.c);
	return 0;
}
