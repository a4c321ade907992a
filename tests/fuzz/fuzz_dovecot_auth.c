/* libFuzzer harness for the Dovecot auth client codec and the SMTP AUTH helpers
 * (smtp/smtp_dovecot_auth.c, smtp/smtp_dovecot_sasl.c).
 *
 * Input: byte 0 picks the client's behaviour (bits 0-3: piece size for the second pass,
 * 0 = random sizes; bits 4-5: request table size 1, 2, 3 or 8; bit 6: requests carry an
 * initial response; bit 7: some CONTs are answered with a cancel). The rest is what the
 * Dovecot server sends. A scripted client answers events: READY sends requests, CONT is
 * answered or cancelled, OK and FAIL start new requests (at most 64 in all).
 *
 * Invariants (abort on violation): step() never claims more than it was given and NONE
 * means all of it; events name only requests that are in flight; CONT challenges are
 * strict base64; user and reason hold no control characters; ERROR is sticky; the
 * transcript (events and client lines) is the same whether the server's bytes come whole
 * or in pieces. The same input also drives the SMTP-side parsers: strict base64 decodes
 * only canonical text (encode(decode(s)) == s), escaping round-trips, AUTH arguments and
 * AUTH= values stay within their promises. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_dovecot_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQUESTS_TOTAL 64

struct client {
	struct smtp_dovecot *c;
	uint8_t mode;
	uint64_t hash;
	unsigned sent;
	unsigned conts;
	uint32_t ids[MAX_REQUESTS_TOTAL];
	bool live[MAX_REQUESTS_TOTAL];
	bool failed;
};

static void mix(struct client *cl, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		cl->hash = (cl->hash ^ b[i]) * 1099511628211ull;
}

static void check_text(struct mx_span s)
{
	for (size_t i = 0; i < s.len; i++)
		FUZZ_CHECK((unsigned char)s.ptr[i] >= 0x20 && (unsigned char)s.ptr[i] != 0x7f);
}

static int find_live(struct client *cl, uint32_t id)
{
	for (unsigned i = 0; i < cl->sent; i++)
		if (cl->live[i] && cl->ids[i] == id)
			return (int)i;
	return -1;
}

static void send_request(struct client *cl)
{
	static const char *const mechs[] = { "PLAIN", "login", "CRAM-MD5", "XOAUTH2", "APOP" };
	char out[1024];
	uint32_t id = 0;

	if (cl->sent >= MAX_REQUESTS_TOTAL)
		return;
	struct smtp_dovecot_auth_request q = {
		.mech = mx_span_cstr(mechs[cl->sent % 5]),
		.sec_opts = cl->sent % 3 ? SMTP_DOVECOT_SEC_NOANONYMOUS : 0,
		.service = "smtp",
		.secured = cl->sent % 2,
		.local_port = 25,
	};
	if (cl->mode & 0x40) {
		q.has_initial_response = true;
		q.initial_response = mx_span_cstr(cl->sent % 4 ? "AGFsaWNlAHNlY3JldA==" : "=");
	}
	ssize_t n = smtp_dovecot_auth(cl->c, &q, &id, out, sizeof(out));
	mix(cl, &n, sizeof(n));
	if (n > 0) {
		FUZZ_CHECK((size_t)n <= sizeof(out) && out[n - 1] == '\n');
		FUZZ_CHECK(memchr(out, '\n', (size_t)n) == out + n - 1);
		FUZZ_CHECK(find_live(cl, id) < 0);
		mix(cl, out, (size_t)n);
		cl->ids[cl->sent] = id;
		cl->live[cl->sent] = true;
		cl->sent++;
	} else {
		FUZZ_CHECK(n == -ENOENT || n == -EBUSY || n == -ENOTCONN);
	}
}

static void on_event(struct client *cl, const struct smtp_dovecot_event *ev)
{
	char out[256];
	ssize_t n;
	int i;

	mix(cl, &ev->type, sizeof(ev->type));
	switch (ev->type) {
	case SMTP_DOVECOT_EV_READY: {
		unsigned k = (cl->mode >> 4) & 3;
		for (unsigned j = 0; j <= k + 1; j++)
			send_request(cl);
		break;
	}
	case SMTP_DOVECOT_EV_OK:
	case SMTP_DOVECOT_EV_FAIL:
		i = find_live(cl, ev->id);
		FUZZ_CHECK(i >= 0);
		cl->live[i] = false;
		check_text(ev->user);
		check_text(ev->reason);
		FUZZ_CHECK(ev->type == SMTP_DOVECOT_EV_FAIL || ev->user.len > 0);
		mix(cl, ev->user.ptr, ev->user.len);
		mix(cl, ev->reason.ptr, ev->reason.len);
		mix(cl, &ev->id, sizeof(ev->id));
		send_request(cl);
		break;
	case SMTP_DOVECOT_EV_CONT:
		i = find_live(cl, ev->id);
		FUZZ_CHECK(i >= 0);
		FUZZ_CHECK(smtp_dovecot_b64_decode(ev->challenge, NULL, 0) >= 0);
		mix(cl, ev->challenge.ptr, ev->challenge.len);
		if ((cl->mode & 0x80) && cl->conts++ % 3 == 2) {
			n = smtp_dovecot_cancel(cl->c, ev->id, out, sizeof(out));
			FUZZ_CHECK(n > 0);
			cl->live[i] = false;
		} else {
			n = smtp_dovecot_cont(cl->c, ev->id, MX_SPAN_LIT("YQ=="), out, sizeof(out));
			FUZZ_CHECK(n > 0);
		}
		mix(cl, out, (size_t)n);
		break;
	case SMTP_DOVECOT_EV_CANCEL_NEEDED:
		i = find_live(cl, ev->id);
		FUZZ_CHECK(i >= 0);
		n = smtp_dovecot_cancel(cl->c, ev->id, out, sizeof(out));
		FUZZ_CHECK(n > 0);
		cl->live[i] = false;
		mix(cl, out, (size_t)n);
		break;
	case SMTP_DOVECOT_EV_ERROR:
		FUZZ_CHECK(ev->error != NULL);
		mix(cl, ev->error, strlen(ev->error));
		cl->failed = true;
		break;
	case SMTP_DOVECOT_EV_NONE:
	case SMTP_DOVECOT_EV_MAX:
		FUZZ_CHECK(0);
	}
}

/* Feed one piece from a heap copy of exactly its length. */
static void feed(struct client *cl, const uint8_t *p, size_t n)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	size_t off = 0;
	while (!cl->failed) {
		struct smtp_dovecot_event ev;
		size_t used;
		enum smtp_dovecot_event_type t =
			smtp_dovecot_step(cl->c, copy + off, n - off, &used, &ev);
		FUZZ_CHECK(t == ev.type);
		FUZZ_CHECK(used <= n - off);
		off += used;
		if (t == SMTP_DOVECOT_EV_NONE) {
			FUZZ_CHECK(off == n);
			break;
		}
		on_event(cl, &ev);
	}
	if (cl->failed) {
		struct smtp_dovecot_event ev;
		size_t used = 1;
		FUZZ_CHECK(smtp_dovecot_step(cl->c, "DONE\n", 5, &used, &ev) ==
			   SMTP_DOVECOT_EV_ERROR);
		FUZZ_CHECK(used == 0);
	}
	free(copy);
}

static uint64_t converse(uint8_t mode, const uint8_t *srv, size_t n, bool pieces)
{
	static const unsigned tables[4] = { 1, 2, 3, 8 };
	struct client cl;
	memset(&cl, 0, sizeof(cl));
	cl.mode = mode;
	cl.hash = 1469598103934665603ull;
	FUZZ_CHECK(smtp_dovecot_new(tables[(mode >> 4) & 3], &cl.c) == 0);
	if (!pieces) {
		feed(&cl, srv, n);
	} else {
		uint32_t rng = (uint32_t)n * 2654435761u + mode;
		size_t off = 0;
		while (off < n) {
			size_t k = mode & 0x0f;
			if (k == 0) {
				rng = rng * 1103515245u + 12345u;
				k = 1 + (rng >> 16) % 40;
			}
			if (k > n - off)
				k = n - off;
			feed(&cl, srv + off, k);
			off += k;
		}
	}
	FUZZ_CHECK(smtp_dovecot_pending(cl.c) <= tables[(mode >> 4) & 3]);
	smtp_dovecot_free(cl.c);
	return cl.hash;
}

static void smtp_side(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	struct mx_span in = mx_span_make(copy, size);

	/* base64: strict means canonical */
	uint8_t *dec = malloc(size ? size : 1);
	ssize_t n = smtp_dovecot_b64_decode(in, dec, size);
	FUZZ_CHECK(n == -EINVAL || (n >= 0 && (size_t)n <= size));
	if (n >= 0) {
		FUZZ_CHECK(smtp_dovecot_b64_decode(in, NULL, 0) == n);
		char *enc = malloc(size + 4);
		ssize_t e = smtp_dovecot_b64_encode(dec, (size_t)n, enc, size + 4);
		FUZZ_CHECK(e == (ssize_t)size && memcmp(enc, copy, size) == 0);
		free(enc);
	}
	/* and every byte string survives encode + decode */
	size_t elen = SMTP_DOVECOT_B64_LEN(size);
	char *enc = malloc(elen ? elen : 1);
	FUZZ_CHECK(smtp_dovecot_b64_encode(copy, size, enc, elen) == (ssize_t)elen);
	FUZZ_CHECK(smtp_dovecot_b64_decode(mx_span_make(enc, elen), dec, size) == (ssize_t)size);
	FUZZ_CHECK(size == 0 || memcmp(dec, copy, size) == 0);
	free(enc);
	free(dec);

	/* tab escaping round-trips and leaves no separators */
	char *esc = malloc(2 * size + 1);
	n = smtp_dovecot_escape(copy, size, esc, 2 * size + 1);
	FUZZ_CHECK(n >= (ssize_t)size);
	FUZZ_CHECK(!memchr(esc, '\t', (size_t)n) && !memchr(esc, '\n', (size_t)n) &&
		   !memchr(esc, '\r', (size_t)n) && !memchr(esc, '\0', (size_t)n));
	FUZZ_CHECK(smtp_dovecot_unescape(esc, (size_t)n) == size);
	FUZZ_CHECK(size == 0 || memcmp(esc, copy, size) == 0);
	/* unescaping arbitrary bytes never grows them */
	memcpy(esc, copy, size);
	FUZZ_CHECK(smtp_dovecot_unescape(esc, size) <= size);
	free(esc);

	/* AUTH arguments */
	struct smtp_dovecot_auth_cmd cmd;
	enum smtp_dovecot_cmd_result r = smtp_dovecot_auth_cmd_parse(in, &cmd);
	FUZZ_CHECK(r < SMTP_DOVECOT_CMD_RESULT_MAX);
	if (r == SMTP_DOVECOT_CMD_OK) {
		FUZZ_CHECK(cmd.mech.len >= 1 && cmd.mech.len <= SMTP_DOVECOT_MECH_NAME_MAX);
		FUZZ_CHECK(!cmd.has_initial_response ||
			   smtp_dovecot_b64_decode(cmd.initial_response, NULL, 0) >= 0);
	}
	char reply[128];
	size_t rl = smtp_dovecot_bad_mech_reply(in, reply, sizeof(reply));
	FUZZ_CHECK(rl < sizeof(reply) && reply[rl] == '\0');
	check_text(mx_span_make(reply, rl));
	rl = smtp_dovecot_fail_reply(size & 1, in, reply, sizeof(reply));
	FUZZ_CHECK(rl < sizeof(reply) && reply[rl] == '\0');
	check_text(mx_span_make(reply, rl));

	/* client responses */
	enum smtp_dovecot_resp_result rr = smtp_dovecot_response_parse(in, size / 2 + 1);
	FUZZ_CHECK(rr < SMTP_DOVECOT_RESP_RESULT_MAX);

	/* AUTH= */
	char val[300];
	size_t vlen;
	bool is_null;
	int rc = smtp_dovecot_mail_auth_param(in, val, sizeof(val), &vlen, &is_null);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		FUZZ_CHECK(vlen > 0 && vlen <= 256);
		check_text(mx_span_make(val, vlen));
	}

	unsigned opts;
	char *z = malloc(size + 1);
	memcpy(z, copy, size);
	z[size] = '\0';
	rc = smtp_dovecot_sec_opts_parse(z, &opts, reply, sizeof(reply));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	FUZZ_CHECK(rc != 0 || opts <= 0x3f);
	free(z);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint64_t whole = converse(data[0], data + 1, size - 1, false);
	uint64_t cut = converse(data[0], data + 1, size - 1, true);
	FUZZ_CHECK(whole == cut);
	if (size <= 4096)
		smtp_side(data + 1, size - 1);
	return 0;
}
