/* The session engine's message content: DATA's line ends and dot-stuffing (RFC 5321
 * 4.5.2, the end only at CR LF . CR LF, bare LF normalized or refused), BDAT chunks
 * (RFC 3030), the split into logical headers and body (RFC 5322 2.2), header_size_limit,
 * message_size_limit and hopcount_limit. Part of the engine split across
 * smtp_session*.c. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_session_internal.h"

#define HDR_INITIAL 512
#define HDR_SLACK 16 /* a folded CRLF, a truncation CRLF and one byte group past the limit */

/* ---- message content: the header section (RFC 5322 2.2) ---- */

static bool hdr_reserve(struct smtp_session *s, size_t extra)
{
	size_t need = s->hdr_len + extra;
	if (need <= s->hdr_cap)
		return true;
	size_t limit = s->cfg->header_size_limit;
	size_t max = limit < SIZE_MAX - HDR_SLACK ? limit + HDR_SLACK : SIZE_MAX;
	if (need > max)
		return false;
	size_t cap = s->hdr_cap ? s->hdr_cap : HDR_INITIAL;
	while (cap < need && cap < SIZE_MAX / 2)
		cap *= 2;
	if (cap > max)
		cap = max;
	char *p = realloc(s->hdr, cap);
	if (!p)
		return false;
	s->hdr = p;
	s->hdr_cap = cap;
	return true;
}

static void message_fail(struct smtp_session *s, enum msg_failure f)
{
	if (s->fail == MF_NONE)
		s->fail = f;
}

/* The capacity was reserved before this byte group (spans of queued events may point into
 * the buffer, so it cannot move here). */
static void hdr_put(struct smtp_session *s, char c)
{
	assert(s->hdr_len < s->hdr_cap);
	if (s->hdr_len >= s->hdr_cap) {
		message_fail(s, MF_NOMEM);
		return;
	}
	s->hdr[s->hdr_len++] = c;
}

static bool header_name_is(const char *text, size_t n, const char *name)
{
	size_t k = 0;
	while (k < n && text[k] != ':' && !mx_ctype_is_blank(text[k]))
		k++;
	return mx_span_eq_nocase(mx_span_make(text, k), mx_span_cstr(name));
}

/* Hand out the logical header collected so far (it ends in CRLF). */
static void emit_header(struct smtp_session *s)
{
	char *text = s->hdr + s->hdr_start;
	size_t n = s->hdr_len - s->hdr_start;
	bool truncated = s->hdr_trunc;

	if (truncated) {
		/* Cut to a well-formed field: no dangling fold, one CRLF at the end. The name
		 * and its colon are always kept, so it stays a header. */
		while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' ||
				 text[n - 1] == '\n'))
			n--;
		text[n++] = '\r';
		text[n++] = '\n';
		s->hdr_len = s->hdr_start + n;
	}
	s->hdr_have = false;
	s->hdr_trunc = false;
	s->hdr_start = s->hdr_len;
	s->hdr_drop = s->hdr_len;

	/* Postfix's cleanup counts Received: headers, its own included: a message is too
	 * far travelled when that count reaches hopcount_limit. Ours is prepended by the
	 * transport, hence the +1. */
	if (s->cfg->hopcount_limit && header_name_is(text, n, "Received") &&
	    ++s->hops + 1 >= s->cfg->hopcount_limit) {
		message_fail(s, MF_HOPS);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_HEADER };
	ev.u.header.text = mx_span_make(text, n);
	ev.u.header.truncated = truncated;
	smtp_session_evq_push(s, ev);
	s->msg_stored += n;
}

static void header_value_byte(struct smtp_session *s, char c)
{
	if (s->hdr_len - s->hdr_start < s->cfg->header_size_limit)
		hdr_put(s, c);
	else
		s->hdr_trunc = true; /* header_size_limit: the excess is discarded */
	if (c == '\n') {
		s->hs = HS_BOL;
		s->hdr_have = true;
	}
}

/* One byte of normalized content while the header section lasts. A field is a name of
 * printable characters and a colon; it continues on lines that start with a blank. The
 * first line that is neither ends the section and is the first line of the body (the
 * empty separator line included). */
static void header_byte(struct smtp_session *s, char c)
{
	unsigned char u = (unsigned char)c;
	size_t cur = s->hdr_len - s->hdr_start;
	size_t limit = s->cfg->header_size_limit;
	bool name_char = u > 32 && u < 127 && c != ':';

	switch (s->hs) {
	case HS_BOL:
		if (s->hdr_have && mx_ctype_is_blank(c)) {
			s->hs = HS_VALUE;
			header_value_byte(s, c);
			return;
		}
		if (s->hdr_have) {
			emit_header(s);
			if (s->fail != MF_NONE)
				return;
			cur = 0;
		}
		if (name_char && cur < limit) {
			hdr_put(s, c);
			s->hs = HS_NAME;
			return;
		}
		break;
	case HS_NAME:
		if (name_char && cur < limit) {
			hdr_put(s, c);
			return;
		}
		if (c == ':') {
			hdr_put(s, c);
			s->hs = HS_VALUE;
			return;
		}
		if (mx_ctype_is_blank(c) && cur < limit) {
			hdr_put(s, c);
			s->hs = HS_NAME_WS;
			return;
		}
		break;
	case HS_NAME_WS:
		if (mx_ctype_is_blank(c) && cur < limit) {
			hdr_put(s, c);
			return;
		}
		if (c == ':') {
			hdr_put(s, c);
			s->hs = HS_VALUE;
			return;
		}
		break;
	case HS_VALUE:
		header_value_byte(s, c);
		return;
	case HS_BODY: {
		/* the rest of the byte group that ended the header section */
		struct smtp_event *tail = smtp_session_evq_tail(s);
		assert(tail->type == SMTP_EV_BODY && tail->u.body.ptr + tail->u.body.len ==
							       s->hdr + s->hdr_len);
		hdr_put(s, c);
		tail->u.body.len++;
		s->msg_stored++;
		return;
	}
	case HS_MAX:
		assert(!"bad header state");
		return;
	}

	/* Not a header line: the body starts with it. */
	hdr_put(s, c);
	if (!s->headers_end_sent) {
		s->headers_end_sent = true;
		smtp_session_push_simple(s, SMTP_EV_HEADERS_END);
	}
	struct smtp_event ev = { .type = SMTP_EV_BODY };
	ev.u.body = mx_span_make(s->hdr + s->hdr_start, s->hdr_len - s->hdr_start);
	s->msg_stored += ev.u.body.len;
	smtp_session_evq_push(s, ev);
	s->hs = HS_BODY;
}

/* ---- message content: line ends and dots ---- */

/* Count content toward message_size_limit (RFC 1870; Postfix counts what it stores). */
static bool count_bytes(struct smtp_session *s, size_t n)
{
	s->msg_bytes += n;
	if (s->cfg->message_size_limit && s->msg_bytes > s->cfg->message_size_limit) {
		message_fail(s, MF_TOO_BIG);
		return false;
	}
	return true;
}

/* Content the engine makes up (a CRLF for a bare LF, a held-back dot or CR). */
static void emit_static(struct smtp_session *s, const char *p, size_t n)
{
	if (s->fail != MF_NONE || !count_bytes(s, n))
		return;
	if (s->hs != HS_BODY) {
		for (size_t i = 0; i < n && s->fail == MF_NONE; i++)
			header_byte(s, p[i]);
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_BODY };
	ev.u.body = mx_span_make(p, n);
	s->msg_stored += n;
	smtp_session_evq_push(s, ev);
}

void smtp_session_content_begin(struct smtp_session *s)
{
	s->cs = CS_BOL;
	s->bol_crlf = true; /* the 354 reply stands for the CRLF before a first "." line */
	s->hs = HS_BOL;
	s->hdr_len = s->hdr_start = s->hdr_drop = 0;
	s->hdr_have = s->hdr_trunc = s->headers_end_sent = false;
	s->msg_bytes = s->msg_stored = 0;
	s->hops = 0;
	s->fail = MF_NONE;
	s->msg_open = true;
}

/* End of the message (CR LF . CR LF, or the end of BDAT LAST). */
static void message_end(struct smtp_session *s)
{
	s->requests++;
	smtp_session_enter_state(s, ST_COMMAND);
	s->where = "END-OF-MESSAGE";
	if (s->fail == MF_NONE && s->hs != HS_BODY && s->hdr_have)
		emit_header(s);
	if (s->fail == MF_NONE) {
		if (!s->headers_end_sent) {
			s->headers_end_sent = true;
			smtp_session_push_simple(s, SMTP_EV_HEADERS_END);
		}
		struct smtp_event ev = { .type = SMTP_EV_MESSAGE_END, .needs_verdict = true };
		ev.u.message.size = s->msg_stored;
		ev.u.message.recipients = s->rcpt_count;
		smtp_session_evq_push(s, ev);
		return;
	}
	switch (s->fail) {
	case MF_TOO_BIG:
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "552 5.3.4 Error: message file too big");
		break;
	case MF_HOPS:
		refuse_lit(s, SMTP_ERR_TOO_MANY_HOPS, "554 5.4.0 Error: too many hops");
		break;
	case MF_NOMEM:
	case MF_NONE:
	case MF_MAX:
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "452 4.3.1 Insufficient system storage");
		break;
	}
	/* The refusal is reported first, while the transport still has the message open. */
	smtp_session_abort_message(s);
	smtp_session_txn_reset(s);
}

/* The octets of a BDAT chunk are all read. `more_after`: the client sent more before our
 * reply. */
void smtp_session_chunk_end(struct smtp_session *s, bool more_after)
{
	s->requests++;
	smtp_session_enter_state(s, ST_COMMAND);
	if (more_after && !smtp_session_pipelining_negotiated(s)) {
		if (s->cfg->forbid_unauth_pipelining) {
			smtp_session_sync_error(s);
			return;
		}
		s->ill_pipelining = true;
	}
	if (s->chunk_discard) {
		if (s->chunk_last && s->mail_given) {
			smtp_session_abort_message(s);
			smtp_session_txn_reset(s);
		}
		return;
	}
	if (!s->chunk_last) {
		smtp_session_replyf(s, "250 2.0.0 Ok: %" PRIu64 " bytes", s->chunk_size);
		return;
	}
	/* RFC 3030: the message is whatever the chunks held; its last line is completed. */
	if (s->fail == MF_NONE && s->hs != HS_BODY && !hdr_reserve(s, 8))
		message_fail(s, MF_NOMEM);
	if (s->cs == CS_MID)
		emit_static(s, "\r\n", 2);
	else if (s->cs == CS_CR)
		emit_static(s, "\n", 1);
	s->cs = CS_BOL;
	message_end(s);
}

/* Body bytes buf[i..i+n) that go out as they came: they extend the run. At
 * message_size_limit the run stops at the limit, wherever the input was cut, and the
 * message fails (its end is refused). */
static void body_bytes(struct smtp_session *s, size_t *run, size_t *run_end, size_t i, size_t n)
{
	uint64_t limit = s->cfg->message_size_limit;
	if (*run == SIZE_MAX)
		*run = *run_end = i;
	assert(*run_end == i);
	if (limit && s->msg_bytes + n > limit) {
		size_t room = s->msg_bytes < limit ? (size_t)(limit - s->msg_bytes) : 0;
		*run_end = i + room;
		s->msg_bytes += n;
		message_fail(s, MF_TOO_BIG);
		return;
	}
	s->msg_bytes += n;
	*run_end = i + n;
}

/* DATA content or BDAT chunk octets in buf[*pos..len). Returns a BODY event that points
 * into buf, or NONE when the input is used up or events were queued. */
struct smtp_event smtp_session_content_input(struct smtp_session *s, const char *buf,
					     size_t len, size_t *pos)
{
	const bool bdat = s->state == ST_CHUNK;
	size_t i = *pos, end = len;
	/* buf[run..run_end): body bytes handed out as they are (run_end < i only when the
	 * size limit cut the run short) */
	size_t run = SIZE_MAX, run_end = 0;
	struct smtp_event ev = { .type = SMTP_EV_NONE };

	if (bdat && s->chunk_left < end - i)
		end = i + (size_t)s->chunk_left;
	if (s->hdr_drop) {
		memmove(s->hdr, s->hdr + s->hdr_drop, s->hdr_len - s->hdr_drop);
		s->hdr_len -= s->hdr_drop;
		s->hdr_start -= s->hdr_drop;
		s->hdr_drop = 0;
	}

	while (i < end && s->evq_len == 0 && s->state != ST_CLOSED) {
		if (bdat && s->chunk_discard) {
			i = end;
			break;
		}
		const bool sink_header = s->fail == MF_NONE && s->hs != HS_BODY;
		const bool sink_body = s->fail == MF_NONE && s->hs == HS_BODY;
		if (sink_header && !hdr_reserve(s, 8)) {
			message_fail(s, MF_NOMEM);
			continue;
		}
		const char c = buf[i];

		switch (s->cs) {
		case CS_BOL:
			if (c == '.' && !bdat) {
				if (run != SIZE_MAX)
					goto flush;
				s->cs = CS_DOT;
				i++;
				continue;
			}
			/* FALLTHROUGH */
		case CS_MID:
			if (c == '\n') {
				/* a bare LF: RFC 5321 2.3.8 allows only CRLF. What came before it
				 * is handed out first, however the input was cut. */
				if (run != SIZE_MAX)
					goto flush;
				if (!s->normalize_bare_lf) {
					smtp_session_bare_lf_reject(s);
					i++;
					goto out;
				}
				emit_static(s, "\r\n", 2);
				s->cs = CS_BOL;
				s->bol_crlf = false;
				i++;
				continue;
			}
			if (!sink_header) {
				/* Fast path: the rest of the line goes out untouched. */
				const char *lf = memchr(buf + i, '\n', end - i);
				size_t stop = lf ? (size_t)(lf - buf) : end, take;
				if (lf && buf[stop - 1] == '\r') {
					take = stop + 1 - i;
					s->cs = CS_BOL;
					s->bol_crlf = true;
				} else {
					take = stop - i;
					s->cs = (!lf && buf[end - 1] == '\r') ? CS_CR : CS_MID;
				}
				if (sink_body)
					body_bytes(s, &run, &run_end, i, take);
				i += take;
				continue;
			}
			if (s->hs == HS_VALUE) {
				/* Fast path inside a header field: the rest of the line up to its
				 * LF is stored (up to header_size_limit) in one copy. */
				const char *lf = memchr(buf + i, '\n', end - i);
				size_t stop = lf ? (size_t)(lf - buf) : end, n = stop - i;
				size_t have = s->hdr_len - s->hdr_start;
				size_t limit = s->cfg->header_size_limit;
				size_t keep = have < limit ? limit - have : 0;
				if (keep > n)
					keep = n;
				if (count_bytes(s, n)) {
					if (keep && !hdr_reserve(s, keep + 8)) {
						message_fail(s, MF_NOMEM);
						continue;
					}
					memcpy(s->hdr + s->hdr_len, buf + i, keep);
					s->hdr_len += keep;
					if (keep < n)
						s->hdr_trunc = true;
				}
				s->cs = buf[stop - 1] == '\r' ? CS_CR : CS_MID;
				i = stop;
				continue;
			}
			if (count_bytes(s, 1))
				header_byte(s, c);
			s->cs = c == '\r' ? CS_CR : CS_MID;
			i++;
			continue;
		case CS_CR:
			if (c != '\n') {
				s->cs = CS_MID; /* the CR was data; look at c again */
				continue;
			}
			if (sink_body) {
				body_bytes(s, &run, &run_end, i, 1);
			} else if (sink_header && count_bytes(s, 1)) {
				header_byte(s, c);
			}
			s->cs = CS_BOL;
			s->bol_crlf = true;
			i++;
			continue;
		case CS_DOT:
			if (c == '\r') {
				s->cs = CS_DOT_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				/* "." ended by a bare LF never ends the message (SMTP smuggling);
				 * normalized, it is a line holding one dot. */
				if (!s->normalize_bare_lf) {
					smtp_session_bare_lf_reject(s);
					i++;
					goto out;
				}
				emit_static(s, ".\r\n", 3);
				s->cs = CS_BOL;
				s->bol_crlf = false;
				i++;
				continue;
			}
			/* RFC 5321 4.5.2: a leading dot followed by more is removed */
			s->cs = CS_MID;
			continue;
		case CS_DOT_CR:
			if (c == '\n') {
				i++;
				if (s->bol_crlf) {
					/* CR LF . CR LF: the end of the data (RFC 5321 4.1.1.4) */
					message_end(s);
					goto out;
				}
				/* LF . CR LF: the preceding line end was a bare LF, so this is
				 * no end of data; the line is kept as one dot */
				emit_static(s, ".\r\n", 3);
				s->cs = CS_BOL;
				s->bol_crlf = true;
				continue;
			}
			/* ". CR x": the dot is removed, the CR is data; look at c again */
			emit_static(s, "\r", 1);
			s->cs = CS_CR;
			continue;
		case CS_MAX:
			assert(!"bad content state");
			i = end;
			break;
		}
	}
	goto out;

flush:
	/* run is open and the next byte needs rewriting: hand out the run first */
	assert(run != SIZE_MAX);
out:
	if (run != SIZE_MAX && run_end > run && s->state != ST_CLOSED) {
		ev.type = SMTP_EV_BODY;
		ev.u.body = mx_span_make(buf + run, run_end - run);
		s->msg_stored += ev.u.body.len;
	}
	if (bdat) {
		s->chunk_left -= i - *pos;
		/* When the chunk ends with the run handed out now, its end is dealt with now
		 * too: the events it queues follow the run (otherwise run() does it next). */
		if (s->state == ST_CHUNK && s->chunk_left == 0 && ev.type == SMTP_EV_BODY)
			smtp_session_chunk_end(s, i < len);
	}
	*pos = i;
	return ev;
}
