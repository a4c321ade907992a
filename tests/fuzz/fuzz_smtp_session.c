/* libFuzzer harness for the SMTP engine: a whole session from fuzz bytes.
 *
 * Input layout:
 *   [0] config switches   [1] limit switches   [2] flight separator   [3] verdict seed
 *   (bit 0x08 of [3]: the client is in smtpd_authorized_xclient_hosts; bit 0x10: a rate
 *   hook says "over the limit" to one MAIL, RCPT or VRFY in four)
 *   [4..] client bytes, cut into flights at each separator byte. A flight that starts
 *         with 0xff and one of 'T' 'S' 'P' 'G' calls timeout(), shutdown(), peer_closed()
 *         or greet() instead of sending; 'L' and 'E' set STARTTLS up (offered; and
 *         required, the encrypt level), 'W' begins TLS (wrappermode), 'R' refuses the
 *         client's certificate (smtpd_tls_req_ccert: 421 at the next line). Each flight is fed in pieces whose sizes come from
 *         a generator seeded by the input, so cuts land everywhere.
 * Verdicts vary with the seed: accept, custom 2xx/3xx, 4xx/5xx refusals (some multi-line,
 * some with control characters), 421 and disconnects, and verdicts held back until the
 * next flight (what a spool commit does).
 *
 * Invariants (abort on violation): every reply line is three digits, ' ' or '-', text
 * without control characters, CRLF, and the lines of one reply share their code; the
 * output never exceeds its buffer; step() never claims more input than it was given and
 * NONE means all of it; every span of every event is readable (copied); HEADER text ends
 * in CRLF and stays within header_size_limit; events come in a sane order (HEADER and BODY
 * only inside an accepted message, HEADERS_END once before MESSAGE_END); MESSAGE_END's size
 * is the bytes handed out and stays within message_size_limit; the session's memory stays
 * bounded by its limits; STARTTLS comes only where offered and not over TLS, outside a
 * message, with all of its input consumed (nothing after it is read in plaintext) and the
 * 220 last in the output. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_session.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct state {
	struct smtp_session *s;
	const struct smtp_config *cfg;
	uint32_t rng;
	uint8_t verdict_seed;
	bool deferred;
	enum smtp_event_type deferred_type;
	bool in_message;     /* DATA accepted, no END/ABORT yet */
	bool greeted;        /* greet() or greet_reject() was called */
	bool headers_ended;
	bool tls_offered;    /* smtp_session_set_tls() offered STARTTLS */
	bool tls_was_active; /* TLS began (STARTTLS or 'W') */
	uint64_t message_bytes;
	char pend[1 << 16];
	size_t pend_len;
};

static uint32_t next_rand(struct state *st)
{
	st->rng = st->rng * 1103515245u + 12345u;
	return st->rng >> 8;
}

/* anvil's rate hook: over for one event in four, as the generator says. */
static bool fuzz_rate_over(void *arg, enum smtp_rate_event event)
{
	struct state *st = arg;
	FUZZ_CHECK((unsigned)event < SMTP_RATE_EVENT_MAX);
	return (next_rand(st) & 3) == 0;
}

/* Every span byte is read, so ASan sees a span that points where it should not. */
static volatile unsigned char sink;

static void touch(struct state *st, struct mx_span sp)
{
	(void)st;
	for (size_t i = 0; i < sp.len; i++)
		sink ^= (unsigned char)sp.ptr[i];
}

static void check_output(struct state *st)
{
	struct mx_span out = smtp_session_output(st->s);
	FUZZ_CHECK(out.len <= 4096);
	size_t i = 0;
	char code[3] = { 0 };
	bool continued = false;
	while (i < out.len) {
		const char *l = out.ptr + i;
		const char *nl = memchr(l, '\n', out.len - i);
		FUZZ_CHECK(nl != NULL);
		size_t n = (size_t)(nl - l) + 1;
		FUZZ_CHECK(n >= 6 && l[n - 2] == '\r');
		FUZZ_CHECK(l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' &&
			       l[2] >= '0' && l[2] <= '9');
		FUZZ_CHECK(l[3] == ' ' || l[3] == '-');
		if (continued)
			FUZZ_CHECK(memcmp(code, l, 3) == 0);
		memcpy(code, l, 3);
		continued = l[3] == '-';
		for (size_t k = 4; k + 2 < n; k++)
			FUZZ_CHECK((unsigned char)l[k] >= 32 && l[k] != 127);
		i += n;
	}
	FUZZ_CHECK(!continued); /* a reply is always complete */
	/* drain in a random number of writes */
	while (out.len) {
		size_t k = 1 + next_rand(st) % out.len;
		smtp_session_output_done(st->s, k);
		out = smtp_session_output(st->s);
	}
}

static void give_verdict(struct state *st, enum smtp_event_type type)
{
	static const char *texts[] = {
		NULL,
		"5.7.1 <x@y>: Relay access denied",
		"4.7.1 Try again later\nsecond line\r\nthird",
		"5.7.1 bad\x01\x7f control",
		"",
		"4.2.0 line ending\n",
	};
	uint32_t r = next_rand(st) ^ st->verdict_seed;
	struct smtp_verdict v = { 0 };
	char qid[32];
	switch (r % 11) {
	case 0:
	case 1:
	case 2:
	case 3:
		break; /* the default reply */
	case 4:
		v.code = type == SMTP_EV_DATA ? 354 : 250;
		v.text = type == SMTP_EV_DATA ? "Go ahead" : "2.0.0 fine";
		break;
	case 5:
		v.code = 450;
		v.text = texts[r % 6];
		break;
	case 6:
		v.code = 554;
		v.text = texts[(r >> 4) % 6];
		break;
	case 7:
		v.code = 550;
		v.text = texts[(r >> 3) % 6];
		v.disconnect = (r & 0x100) != 0;
		break;
	case 8:
		v.code = 421;
		v.text = "4.3.2 going away";
		break;
	case 10:
		if (type == SMTP_EV_AUTH || type == SMTP_EV_AUTH_RESPONSE) {
			/* the exchange goes on: a challenge, and the next line is a response */
			v.code = 334;
			v.text = (r & 0x400) ? "" : "VXNlcm5hbWU6";
			break;
		}
		v.code = 0;
		v.queue_id = NULL;
		break;
	case 9:
		v.code = 521;
		break;
	default:
		v.code = 0;
		v.queue_id = NULL;
		break;
	}
	snprintf(qid, sizeof(qid), "QID%u", r % 1000);
	if (v.code == 0 && (r & 1))
		v.queue_id = qid;
	v.xclient_authorized = (r & 0x200) != 0;
	bool accept = v.code == 0 || v.code / 100 == 2 || (type == SMTP_EV_DATA && v.code / 100 == 3);
	if (type == SMTP_EV_DATA) {
		if (accept) {
			st->in_message = true;
			st->headers_ended = false;
			st->message_bytes = 0;
		}
	}
	FUZZ_CHECK(smtp_session_verdict(st->s, &v) == 0);
	FUZZ_CHECK(!smtp_session_verdict_pending(st->s));
	FUZZ_CHECK(smtp_session_verdict(st->s, &v) < 0);
}

static void on_event(struct state *st, const struct smtp_event *ev)
{
	const struct smtp_config *cfg = st->cfg;
	switch (ev->type) {
	case SMTP_EV_HELO:
		touch(st, ev->u.helo.name);
		FUZZ_CHECK(ev->u.helo.name.len > 0);
		break;
	case SMTP_EV_MAIL:
		touch(st, ev->u.mail.addr);
		touch(st, ev->u.mail.params);
		FUZZ_CHECK(!st->in_message);
		break;
	case SMTP_EV_RCPT:
		touch(st, ev->u.rcpt.addr);
		touch(st, ev->u.rcpt.params);
		FUZZ_CHECK(ev->u.rcpt.addr.len > 0 && ev->u.rcpt.addr.len <= 256);
		break;
	case SMTP_EV_DATA:
		FUZZ_CHECK(!st->in_message);
		break;
	case SMTP_EV_HEADER:
		FUZZ_CHECK(st->in_message && !st->headers_ended);
		touch(st, ev->u.header.text);
		FUZZ_CHECK(ev->u.header.text.len >= 3);
		FUZZ_CHECK(ev->u.header.text.ptr[ev->u.header.text.len - 2] == '\r' &&
			       ev->u.header.text.ptr[ev->u.header.text.len - 1] == '\n');
		FUZZ_CHECK(ev->u.header.text.len <= cfg->header_size_limit + 3);
		st->message_bytes += ev->u.header.text.len;
		break;
	case SMTP_EV_HEADERS_END:
		FUZZ_CHECK(st->in_message && !st->headers_ended);
		st->headers_ended = true;
		break;
	case SMTP_EV_BODY:
		FUZZ_CHECK(st->in_message && st->headers_ended);
		FUZZ_CHECK(ev->u.body.len > 0);
		touch(st, ev->u.body);
		st->message_bytes += ev->u.body.len;
		break;
	case SMTP_EV_MESSAGE_END:
		FUZZ_CHECK(st->in_message && st->headers_ended);
		FUZZ_CHECK(ev->u.message.size == st->message_bytes);
		FUZZ_CHECK(ev->u.message.recipients > 0);
		if (cfg->message_size_limit)
			FUZZ_CHECK(ev->u.message.size <= cfg->message_size_limit);
		st->in_message = false;
		break;
	case SMTP_EV_MESSAGE_ABORT:
		FUZZ_CHECK(st->in_message);
		st->in_message = false;
		break;
	case SMTP_EV_XCLIENT:
		/* only outside a transaction; every value was checked and is bounded */
		FUZZ_CHECK(!st->in_message);
		for (unsigned i = 0; i < SMTP_XCLIENT_ATTR_MAX; i++) {
			const struct smtp_xclient_value *a = &ev->u.xclient->attr[i];
			if (!a->present)
				continue;
			touch(st, a->value);
			FUZZ_CHECK(a->value.len <= 255);
			for (size_t k = 0; k < a->value.len; k++)
				FUZZ_CHECK((unsigned char)a->value.ptr[k] >= 32 &&
					   a->value.ptr[k] != 127);
		}
		break;
	case SMTP_EV_STARTTLS: {
		FUZZ_CHECK(st->tls_offered && !st->tls_was_active && !st->in_message);
		FUZZ_CHECK(smtp_session_tls_active(st->s));
		st->tls_was_active = true;
		static const char ready[] = "220 2.0.0 Ready to start TLS\r\n";
		struct mx_span out = smtp_session_output(st->s);
		FUZZ_CHECK(out.len >= sizeof(ready) - 1 &&
			   memcmp(out.ptr + out.len - (sizeof(ready) - 1), ready,
				  sizeof(ready) - 1) == 0);
		break;
	}
	case SMTP_EV_PROTOCOL_ERROR:
		FUZZ_CHECK(ev->u.error.kind > SMTP_ERR_NONE && ev->u.error.kind < SMTP_ERR_KIND_MAX);
		FUZZ_CHECK(ev->u.error.delay_ms <= cfg->error_sleep_ms);
		break;
	default:
		break;
	}
	FUZZ_CHECK(smtp_session_memory(st->s) <=
		       8192 + cfg->line_length_limit + cfg->header_size_limit + 64 +
			       4096 /* the XCLIENT being decided */ +
			       cfg->sasl_response_limit + 2 /* an AUTH response being read */);
}

static void drive(struct state *st)
{
	for (int guard = 0;; guard++) {
		FUZZ_CHECK(guard < 1000000);
		size_t used = 0;
		/* a private copy per call, freed after the event: a span that outlives its
		 * call is a use-after-free */
		char *in = malloc(st->pend_len ? st->pend_len : 1);
		FUZZ_CHECK(in != NULL);
		memcpy(in, st->pend, st->pend_len);
		struct smtp_event ev = smtp_session_step(st->s, in, st->pend_len, &used);
		FUZZ_CHECK(used <= st->pend_len);
		FUZZ_CHECK(ev.type != SMTP_EV_NONE || used == st->pend_len);
		/* nothing after STARTTLS is read as plaintext */
		FUZZ_CHECK(ev.type != SMTP_EV_STARTTLS || used == st->pend_len);
		on_event(st, &ev);
		free(in);
		memmove(st->pend, st->pend + used, st->pend_len - used);
		st->pend_len -= used;
		if (ev.needs_verdict) {
			FUZZ_CHECK(smtp_session_verdict_pending(st->s));
			/* one verdict in eight waits for the next flight (a spool commit) */
			if ((next_rand(st) & 7) == 0) {
				st->deferred = true;
				st->deferred_type = ev.type;
			} else
				give_verdict(st, ev.type);
		}
		if (ev.type == SMTP_EV_NONE)
			break;
		if (ev.type == SMTP_EV_BLOCKED) {
			if (smtp_session_verdict_pending(st->s))
				break;
			if (!st->greeted) {
				/* input before the greeting, which is allowed to wait for it */
				FUZZ_CHECK(!st->cfg->forbid_unauth_pipelining && used == 0);
				break;
			}
			FUZZ_CHECK(smtp_session_output(st->s).len > 0);
			check_output(st);
		}
	}
	check_output(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct smtp_config cfg;
	smtp_config_defaults(&cfg);
	uint8_t c0 = data[0], c1 = data[1], sep = data[2];
	cfg.myhostname = "mx.example.net";
	cfg.banner = "mx.example.net ESMTP mxgate";
	cfg.bare_newline = (c0 & 1) ? SMTP_BARE_NEWLINE_REJECT : SMTP_BARE_NEWLINE_NORMALIZE;
	cfg.forbid_unauth_pipelining = !(c0 & 2);
	cfg.enable_pipelining = !(c0 & 4);
	cfg.enable_chunking = !(c0 & 8);
	cfg.strict_rfc821_envelopes = (c0 & 16) != 0;
	cfg.helo_required = (c0 & 32) != 0;
	cfg.disable_vrfy_command = (c0 & 64) != 0;
	cfg.enable_smtputf8 = !(c0 & 128);
	cfg.line_length_limit = (c1 & 1) ? 64 : 2048;
	cfg.message_size_limit = (c1 & 6) == 2 ? 0 : (c1 & 6) == 4 ? 300 : 10240000;
	cfg.header_size_limit = (c1 & 8) ? 40 : 102400;
	cfg.recipient_limit = (c1 & 16) ? 3 : 1000;
	cfg.hard_error_limit = (c1 & 32) ? 4 : 20;
	cfg.soft_error_limit = (c1 & 32) ? 2 : 10;
	cfg.junk_command_limit = (c1 & 64) ? 3 : 100;
	cfg.hopcount_limit = (c1 & 128) ? 3 : 50;
	cfg.enable_8bitmime = (c1 & 3) != 3;
	cfg.enable_dsn = (c0 & 12) != 12;

	struct smtp_client_info client = {
		.addr = (c1 & 1) ? "2001:db8::25" : "192.0.2.25",
		.name = (c0 & 3) == 3 ? "client.example" : NULL,
		.port = 2525,
		.bare_newline_excluded = (c1 & 0x81) == 0x81,
		.xclient_authorized = (data[3] & 0x08) != 0,
	};
	static struct state st; /* big buffer: keep it off the stack */
	memset(&st, 0, offsetof(struct state, pend));
	st.pend_len = 0;
	st.cfg = &cfg;
	st.rng = (uint32_t)size * 2654435761u ^ data[3];
	st.verdict_seed = data[3];
	st.s = smtp_session_new(&cfg, &client);
	if (!st.s)
		return 0;
	if (data[3] & 0x10)
		smtp_session_set_rate_hook(st.s, fuzz_rate_over, &st);
	/* SMTP AUTH: enabled with a list, enabled without one, off; TLS required or not */
	if (data[3] & 0x04)
		smtp_session_set_auth(st.s, true, (data[3] & 0x02) ? "PLAIN LOGIN" : NULL,
				      (data[3] & 0x01) ? SMTP_AUTH_NEED_TLS
						       : SMTP_AUTH_BROKEN_CLIENTS);
	if (data[3] & 0x80) {
		smtp_session_greet(st.s);
		st.greeted = true;
	} else if ((data[3] & 0x60) == 0x60) {
		smtp_session_greet_reject(st.s, 554, "5.7.1 go away");
		st.greeted = true;
	}
	drive(&st);

	size_t i = 4;
	while (i <= size) {
		const uint8_t *f = data + i;
		const uint8_t *end = memchr(f, sep, size - i);
		size_t n = end ? (size_t)(end - f) : size - i;
		i += n + 1;
		if (st.deferred && smtp_session_verdict_pending(st.s)) {
			st.deferred = false;
			give_verdict(&st, st.deferred_type);
			drive(&st);
		}
		if (n >= 2 && f[0] == 0xff) {
			switch (f[1]) {
			case 'T':
				smtp_session_timeout(st.s);
				break;
			case 'S':
				smtp_session_shutdown(st.s);
				break;
			case 'P':
				smtp_session_peer_closed(st.s);
				break;
			case 'G':
				if (!st.greeted)
					smtp_session_greet(st.s);
				st.greeted = true;
				break;
			case 'L':
			case 'E':
				smtp_session_set_tls(st.s, true, f[1] == 'E');
				st.tls_offered = true;
				break;
			case 'W':
				smtp_session_tls_begin(st.s);
				st.tls_was_active = true;
				break;
			case 'R':
				smtp_session_tls_refuse(st.s, "Client certificate not trusted");
				break;
			default:
				break;
			}
			drive(&st);
			continue;
		}
		if (!st.greeted && !(data[3] & 0x10)) {
			smtp_session_greet(st.s);
			st.greeted = true;
		}
		for (size_t off = 0; off < n;) {
			size_t k = 1 + next_rand(&st) % (n - off);
			if (next_rand(&st) & 1)
				k = n - off;
			if (k > sizeof(st.pend) - st.pend_len)
				k = sizeof(st.pend) - st.pend_len;
			if (k == 0) {
				/* a transport with a full buffer and a pending verdict waits */
				if (smtp_session_verdict_pending(st.s) && st.deferred) {
					st.deferred = false;
					give_verdict(&st, st.deferred_type);
					drive(&st);
					continue;
				}
				break;
			}
			memcpy(st.pend + st.pend_len, f + off, k);
			st.pend_len += k;
			off += k;
			drive(&st);
		}
	}
	if (smtp_session_verdict_pending(st.s)) {
		st.deferred = false;
		give_verdict(&st, st.deferred_type);
		drive(&st);
	}
	smtp_session_peer_closed(st.s);
	drive(&st);
	FUZZ_CHECK(smtp_session_closed(st.s));
	FUZZ_CHECK(!st.in_message);
	smtp_session_free(st.s);
	return 0;
}
