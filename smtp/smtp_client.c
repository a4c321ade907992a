/* The sans-I/O SMTP/LMTP client codec. smtp_client.h describes the model; this file holds
 * the command queue, the output buffer, the message content writer, the state machine and
 * the matching of replies (read by smtp_client_reply.c) to commands.
 *
 * The command queue is a ring of entries [head, tail), each owed one event (LMTP's end of
 * data: one per accepted recipient). Entries [head, held) are out (SENT: awaiting their
 * reply), or will never get a reply (SKIPPED, ABORTED) and only wait to hand out their
 * event; entries [held, tail) are HELD: formatted, but not allowed out yet.
 *
 * The output buffer holds out[start..rel), bytes that may be sent (smtp_client_output()),
 * then out[rel..len), the bytes of the HELD entries in queue order. Releasing an entry
 * moves `rel` over its bytes; skipping one cuts its bytes out. Positions in the byte
 * stream are also counted absolutely (rel_abs, sent_abs) so that a reply to a command
 * whose bytes were not all reported sent is recognised as premature (unsolicited).
 *
 * Two views of the mail transaction: the queue side (q_*: what the caller has queued, for
 * recipient indices and BINARYMIME), and the reply side (rs_*: what the replies said so
 * far, for skipping doomed commands, LMTP's per-recipient replies and idle()). Replies
 * arrive in command order, so the reply side is exact for the entry being answered. */
#include "smtp/smtp_client.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_client_reply.h"

#define OUT_INITIAL 4096

enum smtp_client_entry_status {
	SMTP_CLIENT_E_HELD,    /* formatted, not out yet */
	SMTP_CLIENT_E_SENT,    /* out, awaiting its reply */
	SMTP_CLIENT_E_SKIPPED, /* never to be sent: an earlier refusal doomed it */
	SMTP_CLIENT_E_ABORTED, /* the session ended first */
	SMTP_CLIENT_E_MAX,
};

struct smtp_client_entry {
	uint8_t cmd;      /* enum smtp_client_cmd */
	uint8_t status;   /* enum smtp_client_entry_status */
	int32_t rcpt;     /* RCPT: its index in the transaction; else -1 */
	uint32_t replies; /* events still owed (0: not counted yet, see smtp_client_owed()) */
	size_t len;       /* HELD: its bytes in out[rel..len) */
	uint64_t end_abs; /* SENT: the absolute stream offset just past its bytes */
};

enum smtp_client_txn {
	SMTP_CLIENT_TXN_NONE,    /* no MAIL answered since the last end of transaction */
	SMTP_CLIENT_TXN_OPEN,    /* MAIL accepted: a transaction is open on the server */
	SMTP_CLIENT_TXN_REFUSED, /* MAIL refused */
	SMTP_CLIENT_TXN_MAX,
};

enum smtp_client_match {
	SMTP_CLIENT_MATCH_NONE,        /* no reply line read yet */
	SMTP_CLIENT_MATCH_HEAD,        /* the reply being read answers the head entry */
	SMTP_CLIENT_MATCH_UNSOLICITED, /* it answers nothing */
	SMTP_CLIENT_MATCH_MAX,
};

struct smtp_client {
	struct smtp_client_config cfg;
	enum smtp_client_state state;
	enum smtp_client_noreply abort_why; /* what ABORTED entries report */

	struct smtp_client_entry *q; /* queue_max entries */
	uint32_t head, held, tail;   /* ring positions, counted up (index = pos % queue_max) */
	unsigned inflight;           /* SENT entries */
	bool youngest_ends_group;    /* the last entry let out must end a group */
	unsigned helo_pending;       /* EHLO/LHLO/HELO queued without their reply */

	char *out;
	size_t out_cap, out_start, out_rel, out_len;
	uint64_t rel_abs, sent_abs;

	struct smtp_client_reply rp;
	enum smtp_client_match match;
	bool caps_reading;           /* the reply being read is a 2xx to EHLO/LHLO */
	struct smtp_client_caps caps, caps_next;
	bool greeted, helo_ok;
	bool greet_refused;          /* the greeting was not 2xx (RFC 5321 3.1: QUIT is due) */

	/* reply side of the transaction */
	enum smtp_client_txn rs_txn;
	unsigned rs_accepted;
	uint32_t rs_rcpt_hi;         /* bitmap bytes that may hold a set bit */
	bool rs_bdat_failed;
	uint32_t lmtp_cursor;        /* next recipient index for LMTP's end-of-data replies */
	uint8_t *accepted;           /* rcpt_max bits: the recipient's RCPT got a 2xx */

	/* queue side of the transaction */
	uint32_t q_rcpts;
	enum smtp_body_type q_body;

	/* the content writer */
	bool bol;                    /* DATA: at the start of a line */
	bool after_cr;               /* DATA: the last byte was a CR, already sent as CRLF */
	uint64_t chunk_left;         /* BDAT: octets of the chunk still to come */
	uint32_t chunk_pos;          /* BDAT: the queue position of the chunk's entry */
	bool chunk_discard;          /* BDAT: the chunk's entry was skipped: drop its octets */

	size_t alloc_size;
};

/* ---- names ---- */

const char *smtp_client_state_name(enum smtp_client_state st)
{
	switch (st) {
	case SMTP_CLIENT_ST_COMMANDS:
		return "COMMANDS";
	case SMTP_CLIENT_ST_DATA_WAIT:
		return "DATA_WAIT";
	case SMTP_CLIENT_ST_CONTENT:
		return "CONTENT";
	case SMTP_CLIENT_ST_CHUNK:
		return "CHUNK";
	case SMTP_CLIENT_ST_QUIT:
		return "QUIT";
	case SMTP_CLIENT_ST_CLOSED:
		return "CLOSED";
	case SMTP_CLIENT_ST_ERROR:
		return "ERROR";
	case SMTP_CLIENT_ST_MAX:
		break;
	}
	return "?";
}

const char *smtp_client_cmd_name(enum smtp_client_cmd cmd)
{
	switch (cmd) {
	case SMTP_CLIENT_CMD_NONE:
		return "NONE";
	case SMTP_CLIENT_CMD_GREETING:
		return "GREETING";
	case SMTP_CLIENT_CMD_EHLO:
		return "EHLO";
	case SMTP_CLIENT_CMD_LHLO:
		return "LHLO";
	case SMTP_CLIENT_CMD_HELO:
		return "HELO";
	case SMTP_CLIENT_CMD_MAIL:
		return "MAIL";
	case SMTP_CLIENT_CMD_RCPT:
		return "RCPT";
	case SMTP_CLIENT_CMD_DATA:
		return "DATA";
	case SMTP_CLIENT_CMD_DOT:
		return "DOT";
	case SMTP_CLIENT_CMD_BDAT:
		return "BDAT";
	case SMTP_CLIENT_CMD_BDAT_LAST:
		return "BDAT-LAST";
	case SMTP_CLIENT_CMD_RSET:
		return "RSET";
	case SMTP_CLIENT_CMD_NOOP:
		return "NOOP";
	case SMTP_CLIENT_CMD_QUIT:
		return "QUIT";
	case SMTP_CLIENT_CMD_MAX:
		break;
	}
	return "?";
}

const char *smtp_client_event_name(enum smtp_client_event_type t)
{
	switch (t) {
	case SMTP_CLIENT_EV_NONE:
		return "NONE";
	case SMTP_CLIENT_EV_GREETING:
		return "GREETING";
	case SMTP_CLIENT_EV_HELO:
		return "HELO";
	case SMTP_CLIENT_EV_MAIL:
		return "MAIL";
	case SMTP_CLIENT_EV_RCPT:
		return "RCPT";
	case SMTP_CLIENT_EV_DATA:
		return "DATA";
	case SMTP_CLIENT_EV_BDAT:
		return "BDAT";
	case SMTP_CLIENT_EV_MESSAGE:
		return "MESSAGE";
	case SMTP_CLIENT_EV_RSET:
		return "RSET";
	case SMTP_CLIENT_EV_NOOP:
		return "NOOP";
	case SMTP_CLIENT_EV_QUIT:
		return "QUIT";
	case SMTP_CLIENT_EV_PROTOCOL_ERROR:
		return "PROTOCOL_ERROR";
	case SMTP_CLIENT_EV_MAX:
		break;
	}
	return "?";
}

const char *smtp_client_noreply_name(enum smtp_client_noreply n)
{
	switch (n) {
	case SMTP_CLIENT_NOREPLY_NONE:
		return "none";
	case SMTP_CLIENT_NOREPLY_SKIPPED:
		return "skipped";
	case SMTP_CLIENT_NOREPLY_CLOSED:
		return "closed";
	case SMTP_CLIENT_NOREPLY_LOST:
		return "lost";
	case SMTP_CLIENT_NOREPLY_ERROR:
		return "error";
	case SMTP_CLIENT_NOREPLY_NONE_DUE:
		return "none-due";
	case SMTP_CLIENT_NOREPLY_MAX:
		break;
	}
	return "?";
}

const char *smtp_client_error_name(enum smtp_client_error e)
{
	switch (e) {
	case SMTP_CLIENT_ERR_NONE:
		return "none";
	case SMTP_CLIENT_ERR_MALFORMED:
		return "malformed";
	case SMTP_CLIENT_ERR_CODE_MISMATCH:
		return "code-mismatch";
	case SMTP_CLIENT_ERR_TOO_MANY_LINES:
		return "too-many-lines";
	case SMTP_CLIENT_ERR_LINE_TOO_LONG:
		return "line-too-long";
	case SMTP_CLIENT_ERR_UNSOLICITED:
		return "unsolicited";
	case SMTP_CLIENT_ERR_UNEXPECTED_CODE:
		return "unexpected-code";
	case SMTP_CLIENT_ERR_MAX:
		break;
	}
	return "?";
}

static enum smtp_client_event_type smtp_client_event_of(enum smtp_client_cmd cmd)
{
	switch (cmd) {
	case SMTP_CLIENT_CMD_GREETING:
		return SMTP_CLIENT_EV_GREETING;
	case SMTP_CLIENT_CMD_EHLO:
	case SMTP_CLIENT_CMD_LHLO:
	case SMTP_CLIENT_CMD_HELO:
		return SMTP_CLIENT_EV_HELO;
	case SMTP_CLIENT_CMD_MAIL:
		return SMTP_CLIENT_EV_MAIL;
	case SMTP_CLIENT_CMD_RCPT:
		return SMTP_CLIENT_EV_RCPT;
	case SMTP_CLIENT_CMD_DATA:
		return SMTP_CLIENT_EV_DATA;
	case SMTP_CLIENT_CMD_BDAT:
		return SMTP_CLIENT_EV_BDAT;
	case SMTP_CLIENT_CMD_DOT:
	case SMTP_CLIENT_CMD_BDAT_LAST:
		return SMTP_CLIENT_EV_MESSAGE;
	case SMTP_CLIENT_CMD_RSET:
		return SMTP_CLIENT_EV_RSET;
	case SMTP_CLIENT_CMD_NOOP:
		return SMTP_CLIENT_EV_NOOP;
	case SMTP_CLIENT_CMD_QUIT:
		return SMTP_CLIENT_EV_QUIT;
	case SMTP_CLIENT_CMD_NONE:
	case SMTP_CLIENT_CMD_MAX:
		break;
	}
	return SMTP_CLIENT_EV_PROTOCOL_ERROR;
}

/* ---- configuration and life cycle ---- */

void smtp_client_config_defaults(struct smtp_client_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->pipelining = true;
	cfg->output_max = 65536;
	cfg->line_max = 2048;
	cfg->line_hard_max = 65536;
	cfg->text_max = 1024;
	cfg->reply_lines_max = 128;
	cfg->queue_max = 256;
	cfg->inflight_max = 0;
	cfg->rcpt_max = 1000;
}

static bool smtp_client_config_valid(const struct smtp_client_config *cfg)
{
	return cfg->output_max >= 4096 && cfg->output_max <= (1u << 30) &&
	       cfg->line_max >= 16 && cfg->line_max <= 65536 &&
	       cfg->line_hard_max >= cfg->line_max && cfg->line_hard_max <= (1u << 24) &&
	       cfg->text_max >= 64 && cfg->text_max <= 65536 && cfg->reply_lines_max >= 1 &&
	       cfg->reply_lines_max <= 10000 && cfg->queue_max >= 4 &&
	       cfg->queue_max <= 65536 && cfg->inflight_max <= cfg->queue_max &&
	       cfg->rcpt_max >= 1 && cfg->rcpt_max <= (1u << 20);
}

int smtp_client_new(struct smtp_client **out, const struct smtp_client_config *cfg)
{
	*out = NULL;
	if (!smtp_client_config_valid(cfg))
		return -EINVAL;
	/* one allocation: the object, the queue, the recipient bitmap, the line and text
	 * buffers of the reply parser */
	size_t qbytes = (size_t)cfg->queue_max * sizeof(struct smtp_client_entry);
	size_t bbytes = ((size_t)cfg->rcpt_max + 7) / 8;
	size_t size = sizeof(struct smtp_client) + qbytes + bbytes + cfg->line_max + cfg->text_max;
	struct smtp_client *c = calloc(1, size);
	if (!c)
		return -ENOMEM;
	c->alloc_size = size;
	c->cfg = *cfg;
	if (c->cfg.inflight_max == 0)
		c->cfg.inflight_max = c->cfg.queue_max;
	char *p = (char *)(c + 1);
	c->q = (struct smtp_client_entry *)(void *)p;
	p += qbytes;
	c->accepted = (uint8_t *)p;
	p += bbytes;
	char *line = p;
	p += cfg->line_max;
	smtp_client_reply_init(&c->rp, line, cfg->line_max, cfg->line_hard_max, p, cfg->text_max,
			       cfg->reply_lines_max);
	c->state = SMTP_CLIENT_ST_COMMANDS;
	c->q_body = SMTP_BODY_UNSPECIFIED;
	c->bol = true;
	/* RFC 5321 3.1/4.3.1: the client waits for the greeting before anything else; it is
	 * the first entry, out from the start and ending a group */
	c->q[0] = (struct smtp_client_entry){
		.cmd = SMTP_CLIENT_CMD_GREETING,
		.status = SMTP_CLIENT_E_SENT,
		.rcpt = -1,
	};
	c->tail = c->held = 1;
	c->inflight = 1;
	c->youngest_ends_group = true;
	*out = c;
	return 0;
}

void smtp_client_free(struct smtp_client *c)
{
	if (!c)
		return;
	free(c->out);
	free(c);
}

/* ---- the queue ---- */

static struct smtp_client_entry *smtp_client_at(const struct smtp_client *c, uint32_t pos)
{
	return &c->q[pos % c->cfg.queue_max];
}

static bool smtp_client_pipelining_now(const struct smtp_client *c)
{
	return c->cfg.pipelining && c->caps.pipelining;
}

/* RFC 2920 3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT and NOOP end a group: what follows
 * waits for their reply. The greeting and HELO (after which pipelining is not
 * negotiated) do too. RSET, MAIL, RCPT, the end of data and BDAT (RFC 3030 4.2) may be
 * followed at once when PIPELINING is in use. */
static bool smtp_client_ends_group(enum smtp_client_cmd cmd)
{
	switch (cmd) {
	case SMTP_CLIENT_CMD_GREETING:
	case SMTP_CLIENT_CMD_EHLO:
	case SMTP_CLIENT_CMD_LHLO:
	case SMTP_CLIENT_CMD_HELO:
	case SMTP_CLIENT_CMD_DATA:
	case SMTP_CLIENT_CMD_NOOP:
	case SMTP_CLIENT_CMD_QUIT:
		return true;
	default:
		return false;
	}
}

/* The next HELD entry may go out now. */
static bool smtp_client_may_release(const struct smtp_client *c)
{
	if (c->inflight == 0)
		return true;
	return smtp_client_pipelining_now(c) && !c->youngest_ends_group &&
	       c->inflight < c->cfg.inflight_max;
}

/* With every earlier reply in (nothing in flight), the entry can only fail: skip it
 * (smtp_client_config.send_after_refusal). */
static bool smtp_client_doomed(const struct smtp_client *c, const struct smtp_client_entry *e)
{
	if (c->cfg.send_after_refusal || c->inflight != 0)
		return false;
	/* RFC 5321 3.1: after a 554 greeting the server answers everything but QUIT with
	 * 503 */
	if (c->greet_refused && e->cmd != SMTP_CLIENT_CMD_QUIT)
		return true;
	switch (e->cmd) {
	case SMTP_CLIENT_CMD_RCPT:
		return c->rs_txn == SMTP_CLIENT_TXN_REFUSED;
	case SMTP_CLIENT_CMD_DATA:
		return c->rs_txn == SMTP_CLIENT_TXN_REFUSED ||
		       (c->rs_txn == SMTP_CLIENT_TXN_OPEN && c->rs_accepted == 0);
	case SMTP_CLIENT_CMD_BDAT:
	case SMTP_CLIENT_CMD_BDAT_LAST:
		return c->rs_txn == SMTP_CLIENT_TXN_REFUSED ||
		       (c->rs_txn == SMTP_CLIENT_TXN_OPEN &&
			(c->rs_accepted == 0 || c->rs_bdat_failed));
	default:
		return false;
	}
}

static void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state st);

/* Let out what may go out, in order; skip what is doomed. */
static void smtp_client_release(struct smtp_client *c)
{
	while (c->held != c->tail && smtp_client_may_release(c)) {
		struct smtp_client_entry *e = smtp_client_at(c, c->held);
		assert(e->status == SMTP_CLIENT_E_HELD);
		if (smtp_client_doomed(c, e)) {
			/* its bytes are the first of the held part: cut them out */
			size_t from = c->out_rel, to = c->out_rel + e->len;
			memmove(c->out + from, c->out + to, c->out_len - to);
			c->out_len -= e->len;
			e->len = 0;
			e->status = SMTP_CLIENT_E_SKIPPED;
			c->held++;
			if (e->cmd == SMTP_CLIENT_CMD_DATA && c->state == SMTP_CLIENT_ST_DATA_WAIT)
				smtp_client_enter_state(c, SMTP_CLIENT_ST_COMMANDS);
			if (c->state == SMTP_CLIENT_ST_CHUNK && c->held - 1 == c->chunk_pos)
				c->chunk_discard = true;
			continue;
		}
		c->out_rel += e->len;
		c->rel_abs += e->len;
		e->end_abs = c->rel_abs;
		e->len = 0;
		e->status = SMTP_CLIENT_E_SENT;
		c->held++;
		c->inflight++;
		c->youngest_ends_group = smtp_client_ends_group((enum smtp_client_cmd)e->cmd);
	}
}

/* ---- the output buffer ---- */

/* Make room for `want` more bytes at the end of the output, compacting and growing (up to
 * output_max) as needed. Returns the room there is, which may be less. */
static size_t smtp_client_out_room(struct smtp_client *c, size_t want)
{
	if (!c->out) {
		size_t cap = OUT_INITIAL < c->cfg.output_max ? OUT_INITIAL : c->cfg.output_max;
		c->out = malloc(cap);
		if (!c->out)
			return 0;
		c->out_cap = cap;
	}
	if (c->out_cap - c->out_len >= want)
		return c->out_cap - c->out_len;
	if (c->out_start) {
		memmove(c->out, c->out + c->out_start, c->out_len - c->out_start);
		c->out_rel -= c->out_start;
		c->out_len -= c->out_start;
		c->out_start = 0;
	}
	if (c->out_cap - c->out_len < want && c->out_cap < c->cfg.output_max) {
		size_t cap = c->out_cap;
		while (cap - c->out_len < want && cap < c->cfg.output_max)
			cap = cap * 2 < c->cfg.output_max ? cap * 2 : c->cfg.output_max;
		char *bigger = realloc(c->out, cap);
		if (bigger) {
			c->out = bigger;
			c->out_cap = cap;
		}
	}
	return c->out_cap - c->out_len;
}

struct mx_span smtp_client_output(const struct smtp_client *c)
{
	if (!c->out)
		return mx_span_make("", 0);
	return mx_span_make(c->out + c->out_start, c->out_rel - c->out_start);
}

void smtp_client_output_done(struct smtp_client *c, size_t n)
{
	assert(n <= c->out_rel - c->out_start);
	c->out_start += n;
	c->sent_abs += n;
	if (c->out_start == c->out_len)
		c->out_start = c->out_rel = c->out_len = 0;
}

/* ---- the state machine ---- */

/* The transaction is over as the replies tell it (end of data, RSET, EHLO/HELO, or a new
 * MAIL's reply). */
static void smtp_client_rs_end_txn(struct smtp_client *c)
{
	c->rs_txn = SMTP_CLIENT_TXN_NONE;
	c->rs_accepted = 0;
	c->rs_bdat_failed = false;
	memset(c->accepted, 0, c->rs_rcpt_hi);
	c->rs_rcpt_hi = 0;
}

/* The one place the state changes. Entering CLOSED or ERROR ends the session: every entry
 * still owed an event reports c->abort_why (set by the caller), nothing more goes out. */
static void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state st)
{
	enum smtp_client_state from = c->state;
	(void)from; /* only the asserts look at it */
	assert(st < SMTP_CLIENT_ST_MAX);
	assert(from != SMTP_CLIENT_ST_CLOSED && from != SMTP_CLIENT_ST_ERROR);
	switch (st) {
	case SMTP_CLIENT_ST_COMMANDS:
		assert(from != SMTP_CLIENT_ST_QUIT);
		break;
	case SMTP_CLIENT_ST_DATA_WAIT:
	case SMTP_CLIENT_ST_QUIT:
		assert(from == SMTP_CLIENT_ST_COMMANDS);
		break;
	case SMTP_CLIENT_ST_CONTENT:
		/* RFC 5321 4.1.1.4: the content starts with a line */
		assert(from == SMTP_CLIENT_ST_DATA_WAIT);
		c->bol = true;
		c->after_cr = false;
		break;
	case SMTP_CLIENT_ST_CHUNK:
		assert(from == SMTP_CLIENT_ST_COMMANDS);
		c->chunk_discard = false;
		break;
	case SMTP_CLIENT_ST_CLOSED:
	case SMTP_CLIENT_ST_ERROR:
		for (uint32_t pos = c->head; pos != c->tail; pos++) {
			struct smtp_client_entry *e = smtp_client_at(c, pos);
			if (e->status != SMTP_CLIENT_E_SKIPPED)
				e->status = SMTP_CLIENT_E_ABORTED;
		}
		c->held = c->tail;
		c->inflight = 0;
		c->out_start = c->out_rel = c->out_len = 0;
		c->match = SMTP_CLIENT_MATCH_NONE;
		c->caps_reading = false;
		smtp_client_reply_reset(&c->rp);
		break;
	case SMTP_CLIENT_ST_MAX:
		break;
	}
	c->state = st;
}

static void smtp_client_end(struct smtp_client *c, enum smtp_client_state st,
			    enum smtp_client_noreply why)
{
	c->abort_why = why;
	smtp_client_enter_state(c, st);
}

/* ---- queueing commands ---- */

/* A command line being formatted (never longer than SMTP_CLIENT_COMMAND_MAX). */
struct smtp_client_line {
	char buf[SMTP_CLIENT_COMMAND_MAX];
	size_t len;
	bool over;
};

static void smtp_client_line_add(struct smtp_client_line *l, const char *p, size_t n)
{
	if (l->over || n > sizeof(l->buf) - l->len) {
		l->over = true;
		return;
	}
	memcpy(l->buf + l->len, p, n);
	l->len += n;
}

static void smtp_client_line_str(struct smtp_client_line *l, const char *s)
{
	smtp_client_line_add(l, s, strlen(s));
}

static void smtp_client_line_u64(struct smtp_client_line *l, uint64_t v)
{
	char tmp[24];
	size_t n = sizeof(tmp);
	do {
		tmp[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	smtp_client_line_add(l, tmp + n, sizeof(tmp) - n);
}

/* An EHLO/HELO argument: a domain or an address literal, printable ASCII without spaces
 * (RFC 5321 4.1.1.1), at most 255 octets. */
static bool smtp_client_valid_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* Text that goes into a command as it is: no control character may break the line (a CR
 * or LF would smuggle in a command); spaces only where `spaces`. */
static bool smtp_client_valid_text(const char *s, bool spaces)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f || (*p == ' ' && !spaces))
			return false;
	return true;
}

/* RFC 5321 4.1.2 esmtp-value = 1*(%d33-60 / %d62-126), and UTF-8 (RFC 6531 3.3). */
static bool smtp_client_valid_value(const char *s)
{
	if (!s || !*s)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == '=' || *p == 0x7f)
			return false;
	return true;
}

/* May a command be queued now? 0 or the negative errno every queueing function shares. */
static int smtp_client_can_queue(const struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_CLIENT_ST_COMMANDS:
		return 0;
	case SMTP_CLIENT_ST_DATA_WAIT:
	case SMTP_CLIENT_ST_CONTENT:
	case SMTP_CLIENT_ST_CHUNK:
		return -EBUSY;
	default:
		return -EPIPE;
	}
}

/* Add a HELD entry with the line's bytes; the caller sets its state, then releases. */
static int smtp_client_enqueue(struct smtp_client *c, enum smtp_client_cmd cmd,
			       const struct smtp_client_line *l, int32_t rcpt)
{
	if (l->over)
		return -E2BIG;
	if (c->tail - c->head >= c->cfg.queue_max)
		return -ENOBUFS;
	if (smtp_client_out_room(c, l->len) < l->len)
		return -ENOBUFS;
	memcpy(c->out + c->out_len, l->buf, l->len);
	c->out_len += l->len;
	*smtp_client_at(c, c->tail) = (struct smtp_client_entry){
		.cmd = (uint8_t)cmd,
		.status = SMTP_CLIENT_E_HELD,
		.rcpt = rcpt,
		.len = l->len,
	};
	c->tail++;
	return 0;
}

static int smtp_client_hello(struct smtp_client *c, const char *name, enum smtp_client_cmd cmd)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	if (!smtp_client_valid_name(name))
		return -EINVAL;
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, smtp_client_cmd_name(cmd));
	smtp_client_line_add(&l, " ", 1);
	smtp_client_line_str(&l, name);
	smtp_client_line_add(&l, "\r\n", 2);
	if ((rc = smtp_client_enqueue(c, cmd, &l, -1)) < 0)
		return rc;
	c->helo_pending++;
	c->q_body = SMTP_BODY_UNSPECIFIED; /* RFC 5321 4.1.4: EHLO resets the transaction */
	smtp_client_release(c);
	return 0;
}

int smtp_client_ehlo(struct smtp_client *c, const char *name)
{
	/* RFC 2033 4.1: LMTP says LHLO */
	return smtp_client_hello(c, name, c->cfg.lmtp ? SMTP_CLIENT_CMD_LHLO : SMTP_CLIENT_CMD_EHLO);
}

int smtp_client_helo(struct smtp_client *c, const char *name)
{
	/* RFC 2033 4.1: an LMTP server must not accept HELO */
	if (c->cfg.lmtp)
		return c->state == SMTP_CLIENT_ST_CLOSED || c->state == SMTP_CLIENT_ST_ERROR
			       ? -EPIPE
			       : -EINVAL;
	return smtp_client_hello(c, name, SMTP_CLIENT_CMD_HELO);
}

int smtp_client_mail(struct smtp_client *c, const struct smtp_client_mail *m)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	if (c->helo_pending)
		return -EAGAIN;
	const char *sender = m->sender ? m->sender : "";
	if (!smtp_client_valid_text(sender, true) || (m->ret && !smtp_client_valid_value(m->ret)) ||
	    (m->envid && !smtp_client_valid_value(m->envid)) ||
	    (m->extra && !smtp_client_valid_text(m->extra, true)) ||
	    (unsigned)m->body >= SMTP_BODY_TYPE_MAX)
		return -EINVAL;
	const struct smtp_client_caps *caps = &c->caps;
	/* RFC 6531 3.4: SMTPUTF8 mail goes only to a server that offers it */
	if (m->smtputf8 && !caps->smtputf8)
		return -EOPNOTSUPP;
	/* RFC 3030 3: BINARYMIME needs BINARYMIME and CHUNKING */
	if (m->body == SMTP_BODY_BINARYMIME && !(caps->binarymime && caps->chunking))
		return -EOPNOTSUPP;
	/* RFC 1870 6.1: do not send what the server said it will not take */
	if (caps->size && caps->size_limit && m->size > caps->size_limit)
		return -EMSGSIZE;

	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, "MAIL FROM:<");
	smtp_client_line_str(&l, sender);
	smtp_client_line_add(&l, ">", 1);
	if (m->size && caps->size) {
		smtp_client_line_str(&l, " SIZE=");
		smtp_client_line_u64(&l, m->size);
	}
	/* RFC 6152 3: BODY= only to a server that offers 8BITMIME; without it the content
	 * goes as it is, as Postfix's smtp client does */
	if (m->body == SMTP_BODY_7BIT && caps->eightbitmime)
		smtp_client_line_str(&l, " BODY=7BIT");
	else if (m->body == SMTP_BODY_8BITMIME && caps->eightbitmime)
		smtp_client_line_str(&l, " BODY=8BITMIME");
	else if (m->body == SMTP_BODY_BINARYMIME)
		smtp_client_line_str(&l, " BODY=BINARYMIME");
	if (m->smtputf8)
		smtp_client_line_str(&l, " SMTPUTF8");
	/* RFC 3461 4.3, 4.4 */
	if (caps->dsn && m->ret) {
		smtp_client_line_str(&l, " RET=");
		smtp_client_line_str(&l, m->ret);
	}
	if (caps->dsn && m->envid) {
		smtp_client_line_str(&l, " ENVID=");
		smtp_client_line_str(&l, m->envid);
	}
	if (m->extra && *m->extra) {
		smtp_client_line_add(&l, " ", 1);
		smtp_client_line_str(&l, m->extra);
	}
	smtp_client_line_add(&l, "\r\n", 2);
	if ((rc = smtp_client_enqueue(c, SMTP_CLIENT_CMD_MAIL, &l, -1)) < 0)
		return rc;
	c->q_rcpts = 0;
	c->q_body = m->body;
	smtp_client_release(c);
	return 0;
}

int smtp_client_rcpt(struct smtp_client *c, const struct smtp_client_rcpt *r)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	if (c->helo_pending)
		return -EAGAIN;
	if (!r->addr || !*r->addr || !smtp_client_valid_text(r->addr, true) ||
	    (r->notify && !smtp_client_valid_value(r->notify)) ||
	    (r->orcpt && !smtp_client_valid_value(r->orcpt)) ||
	    (r->extra && !smtp_client_valid_text(r->extra, true)))
		return -EINVAL;
	if (c->q_rcpts >= c->cfg.rcpt_max)
		return -E2BIG;
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, "RCPT TO:<");
	smtp_client_line_str(&l, r->addr);
	smtp_client_line_add(&l, ">", 1);
	/* RFC 3461 4.1, 4.2 */
	if (c->caps.dsn && r->notify) {
		smtp_client_line_str(&l, " NOTIFY=");
		smtp_client_line_str(&l, r->notify);
	}
	if (c->caps.dsn && r->orcpt) {
		smtp_client_line_str(&l, " ORCPT=");
		smtp_client_line_str(&l, r->orcpt);
	}
	if (r->extra && *r->extra) {
		smtp_client_line_add(&l, " ", 1);
		smtp_client_line_str(&l, r->extra);
	}
	smtp_client_line_add(&l, "\r\n", 2);
	int32_t idx = (int32_t)c->q_rcpts;
	if ((rc = smtp_client_enqueue(c, SMTP_CLIENT_CMD_RCPT, &l, idx)) < 0)
		return rc;
	c->q_rcpts++;
	smtp_client_release(c);
	return idx;
}

int smtp_client_data(struct smtp_client *c)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	/* RFC 3030 3: a BINARYMIME message must be sent with BDAT */
	if (c->q_body == SMTP_BODY_BINARYMIME)
		return -EINVAL;
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, "DATA\r\n");
	if ((rc = smtp_client_enqueue(c, SMTP_CLIENT_CMD_DATA, &l, -1)) < 0)
		return rc;
	c->q_body = SMTP_BODY_UNSPECIFIED;
	smtp_client_enter_state(c, SMTP_CLIENT_ST_DATA_WAIT);
	smtp_client_release(c);
	return 0;
}

int smtp_client_bdat(struct smtp_client *c, uint64_t size, bool last)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	if (c->helo_pending)
		return -EAGAIN;
	if (!c->caps.chunking)
		return -EOPNOTSUPP;
	/* RFC 3030 2: after a refused chunk, no more chunks of this message */
	if (c->rs_txn == SMTP_CLIENT_TXN_OPEN && c->rs_bdat_failed)
		return -ECANCELED;
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, "BDAT ");
	smtp_client_line_u64(&l, size);
	if (last)
		smtp_client_line_str(&l, " LAST");
	smtp_client_line_add(&l, "\r\n", 2);
	enum smtp_client_cmd cmd = last ? SMTP_CLIENT_CMD_BDAT_LAST : SMTP_CLIENT_CMD_BDAT;
	if ((rc = smtp_client_enqueue(c, cmd, &l, -1)) < 0)
		return rc;
	if (last)
		c->q_body = SMTP_BODY_UNSPECIFIED;
	if (size) {
		c->chunk_left = size;
		c->chunk_pos = c->tail - 1;
		smtp_client_enter_state(c, SMTP_CLIENT_ST_CHUNK);
	}
	smtp_client_release(c);
	return 0;
}

static int smtp_client_simple(struct smtp_client *c, enum smtp_client_cmd cmd, const char *text)
{
	int rc = smtp_client_can_queue(c);
	if (rc < 0)
		return rc;
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, text);
	if ((rc = smtp_client_enqueue(c, cmd, &l, -1)) < 0)
		return rc;
	if (cmd == SMTP_CLIENT_CMD_QUIT)
		smtp_client_enter_state(c, SMTP_CLIENT_ST_QUIT);
	if (cmd == SMTP_CLIENT_CMD_RSET)
		c->q_body = SMTP_BODY_UNSPECIFIED;
	smtp_client_release(c);
	return 0;
}

int smtp_client_rset(struct smtp_client *c)
{
	return smtp_client_simple(c, SMTP_CLIENT_CMD_RSET, "RSET\r\n");
}

int smtp_client_noop(struct smtp_client *c)
{
	return smtp_client_simple(c, SMTP_CLIENT_CMD_NOOP, "NOOP\r\n");
}

int smtp_client_quit(struct smtp_client *c)
{
	return smtp_client_simple(c, SMTP_CLIENT_CMD_QUIT, "QUIT\r\n");
}

/* ---- message content ---- */

/* Bytes that go out at once (the content after 354, or a chunk whose BDAT is out). */
static void smtp_client_out_commit(struct smtp_client *c, size_t n)
{
	assert(c->out_rel == c->out_len);
	c->out_len += n;
	c->out_rel += n;
	c->rel_abs += n;
}

/* RFC 5321 4.5.2 dot-stuffing and 2.3.8 line ends, streaming: nothing is held back, the
 * state between pieces is `bol` and `after_cr`. Returns the input bytes taken. */
static size_t smtp_client_stuff(struct smtp_client *c, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t want = n - i < c->cfg.output_max / 2 ? 2 * (n - i) : c->cfg.output_max;
		size_t room = smtp_client_out_room(c, want);
		if (room < 2)
			break; /* every input byte may need two output bytes */
		char *o = c->out + c->out_len;
		size_t w = 0;
		while (i < n && w + 2 <= room) {
			char ch = p[i];
			if (c->after_cr) {
				c->after_cr = false;
				if (ch == '\n') {
					i++; /* the LF of a CR LF already sent */
					continue;
				}
			}
			if (ch == '\r' || ch == '\n') {
				/* CRLF, and a bare CR or LF, each end the line with CRLF */
				o[w++] = '\r';
				o[w++] = '\n';
				c->bol = true;
				c->after_cr = ch == '\r';
				i++;
				continue;
			}
			if (c->bol && ch == '.')
				o[w++] = '.';
			c->bol = false;
			/* the rest of the line, as far as the room goes (at least this byte) */
			size_t j = i, lim = room - w;
			while (j < n && j - i < lim && p[j] != '\r' && p[j] != '\n')
				j++;
			memcpy(o + w, p + i, j - i);
			w += j - i;
			i = j;
		}
		smtp_client_out_commit(c, w);
	}
	return i;
}

/* BDAT octets, as they are. Returns the input bytes taken. */
static size_t smtp_client_chunk(struct smtp_client *c, const char *p, size_t n)
{
	size_t take = n < c->chunk_left ? n : (size_t)c->chunk_left;
	if (!c->chunk_discard) {
		size_t room = smtp_client_out_room(c, take);
		if (take > room)
			take = room;
		struct smtp_client_entry *e = smtp_client_at(c, c->chunk_pos);
		memcpy(c->out + c->out_len, p, take);
		if (e->status == SMTP_CLIENT_E_HELD) {
			/* the chunk's BDAT is the last entry: its bytes end the held part */
			assert(c->chunk_pos == c->tail - 1);
			c->out_len += take;
			e->len += take;
		} else {
			assert(e->status == SMTP_CLIENT_E_SENT);
			smtp_client_out_commit(c, take);
			e->end_abs = c->rel_abs;
		}
	}
	c->chunk_left -= take;
	if (c->chunk_left == 0)
		smtp_client_enter_state(c, SMTP_CLIENT_ST_COMMANDS);
	return take;
}

ssize_t smtp_client_content(struct smtp_client *c, const char *p, size_t n)
{
	switch (c->state) {
	case SMTP_CLIENT_ST_CONTENT:
		return (ssize_t)smtp_client_stuff(c, p, n);
	case SMTP_CLIENT_ST_CHUNK:
		return (ssize_t)smtp_client_chunk(c, p, n);
	case SMTP_CLIENT_ST_CLOSED:
	case SMTP_CLIENT_ST_ERROR:
		return -EPIPE;
	default:
		return -EINVAL;
	}
}

int smtp_client_content_end(struct smtp_client *c)
{
	if (c->state == SMTP_CLIENT_ST_CLOSED || c->state == SMTP_CLIENT_ST_ERROR)
		return -EPIPE;
	if (c->state != SMTP_CLIENT_ST_CONTENT)
		return -EINVAL;
	/* RFC 5321 4.1.1.4: the last line ends with CRLF, then "." CRLF */
	struct smtp_client_line l = { .len = 0 };
	smtp_client_line_str(&l, c->bol ? ".\r\n" : "\r\n.\r\n");
	int rc = smtp_client_enqueue(c, SMTP_CLIENT_CMD_DOT, &l, -1);
	if (rc < 0)
		return rc;
	smtp_client_enter_state(c, SMTP_CLIENT_ST_COMMANDS);
	smtp_client_release(c);
	return 0;
}

/* ---- replies and events ---- */

static bool smtp_client_lmtp_multi(const struct smtp_client *c, enum smtp_client_cmd cmd)
{
	return c->cfg.lmtp && (cmd == SMTP_CLIENT_CMD_DOT || cmd == SMTP_CLIENT_CMD_BDAT_LAST);
}

/* The events the head entry is owed, counted when it first reports: with LMTP the end of
 * the message gets one reply per accepted recipient (RFC 2033 4.2 for DATA, 4.3 for BDAT
 * LAST). By then every RCPT reply of its transaction is in. A server that took DATA
 * without an accepted recipient owes one reply (RFC 2033 4.2 says it must refuse DATA
 * then; for BDAT LAST see smtp_client_none_due()). */
static void smtp_client_owed(struct smtp_client *c, struct smtp_client_entry *e)
{
	if (e->replies)
		return;
	e->replies = 1;
	if (smtp_client_lmtp_multi(c, (enum smtp_client_cmd)e->cmd) && c->rs_accepted > 1)
		e->replies = c->rs_accepted;
	c->lmtp_cursor = 0;
}

/* The next accepted recipient, for LMTP's end-of-data replies; -1 when none is left. */
static int smtp_client_next_accepted(struct smtp_client *c)
{
	while (c->lmtp_cursor < c->rs_rcpt_hi * 8u) {
		uint32_t i = c->lmtp_cursor++;
		if (c->accepted[i / 8] & (1u << (i % 8)))
			return (int)i;
	}
	return -1;
}

static struct smtp_client_event smtp_client_event_for(struct smtp_client *c,
						       const struct smtp_client_entry *e)
{
	enum smtp_client_cmd cmd = (enum smtp_client_cmd)e->cmd;
	struct smtp_client_event ev = {
		.type = smtp_client_event_of(cmd),
		.cmd = cmd,
		.rcpt = e->rcpt,
		.text = mx_span_make(c->rp.text, 0),
	};
	switch (cmd) {
	case SMTP_CLIENT_CMD_DATA:
	case SMTP_CLIENT_CMD_BDAT:
		ev.rcpt_accepted = c->rs_accepted;
		break;
	case SMTP_CLIENT_CMD_DOT:
	case SMTP_CLIENT_CMD_BDAT_LAST:
		ev.rcpt_accepted = c->rs_accepted;
		if (c->cfg.lmtp)
			ev.rcpt = smtp_client_next_accepted(c);
		break;
	default:
		break;
	}
	return ev;
}

/* The head entry has its event: one fewer owed; gone when none is. Returns true when it
 * was the last. */
static bool smtp_client_consume_head(struct smtp_client *c)
{
	struct smtp_client_entry *e = smtp_client_at(c, c->head);
	assert(e->replies > 0);
	if (--e->replies)
		return false;
	if (e->status == SMTP_CLIENT_E_SENT)
		c->inflight--;
	if (e->cmd == SMTP_CLIENT_CMD_EHLO || e->cmd == SMTP_CLIENT_CMD_LHLO ||
	    e->cmd == SMTP_CLIENT_CMD_HELO)
		c->helo_pending--;
	c->head++;
	return true;
}

/* RFC 2033 4.3: with LMTP, a BDAT LAST gets zero replies when no RCPT of its transaction
 * succeeded. True when the head entry is such a one, whole and out, and no reply to it has
 * begun: its event (noreply NONE_DUE) is due without input. */
static bool smtp_client_none_due(const struct smtp_client *c)
{
	if (c->head == c->held || c->match != SMTP_CLIENT_MATCH_NONE)
		return false;
	const struct smtp_client_entry *e = smtp_client_at(c, c->head);
	return c->cfg.lmtp && e->cmd == SMTP_CLIENT_CMD_BDAT_LAST &&
	       e->status == SMTP_CLIENT_E_SENT && c->rs_accepted == 0 &&
	       !(c->state == SMTP_CLIENT_ST_CHUNK && c->head == c->chunk_pos);
}

/* The head entry will never get a reply: its event says why. */
static struct smtp_client_event smtp_client_noreply_event(struct smtp_client *c)
{
	struct smtp_client_entry *e = smtp_client_at(c, c->head);
	smtp_client_owed(c, e);
	struct smtp_client_event ev = smtp_client_event_for(c, e);
	if (e->status == SMTP_CLIENT_E_SKIPPED)
		ev.noreply = SMTP_CLIENT_NOREPLY_SKIPPED;
	else if (e->status == SMTP_CLIENT_E_SENT)
		ev.noreply = SMTP_CLIENT_NOREPLY_NONE_DUE;
	else
		ev.noreply = c->abort_why;
	(void)smtp_client_consume_head(c);
	if (ev.noreply == SMTP_CLIENT_NOREPLY_NONE_DUE)
		smtp_client_release(c); /* as after a reply */
	return ev;
}

static void smtp_client_reply_into(const struct smtp_client *c, struct smtp_client_event *ev)
{
	ev->code = c->rp.code;
	memcpy(ev->enhanced, c->rp.enhanced, sizeof(ev->enhanced));
	ev->text = mx_span_make(c->rp.text, c->rp.text_len);
	ev->lines = c->rp.lines;
	ev->truncated = c->rp.truncated;
}

static struct smtp_client_event smtp_client_protocol_error(struct smtp_client *c,
							   enum smtp_client_error err,
							   enum smtp_client_cmd cmd)
{
	struct smtp_client_event ev = {
		.type = SMTP_CLIENT_EV_PROTOCOL_ERROR,
		.cmd = cmd,
		.error = err,
		.rcpt = -1,
	};
	smtp_client_reply_into(c, &ev);
	smtp_client_end(c, SMTP_CLIENT_ST_ERROR, SMTP_CLIENT_NOREPLY_ERROR);
	return ev;
}

/* The head entry, when a reply can answer it: out, and its bytes all reported sent (a
 * BDAT: its whole chunk). */
static struct smtp_client_entry *smtp_client_answerable(struct smtp_client *c)
{
	if (c->head == c->held)
		return NULL;
	struct smtp_client_entry *e = smtp_client_at(c, c->head);
	if (e->status != SMTP_CLIENT_E_SENT || e->end_abs > c->sent_abs)
		return NULL;
	if (c->state == SMTP_CLIENT_ST_CHUNK && c->head == c->chunk_pos)
		return NULL;
	return e;
}

/* A complete reply to the head entry. */
static struct smtp_client_event smtp_client_dispatch(struct smtp_client *c)
{
	struct smtp_client_entry *e = smtp_client_at(c, c->head);
	enum smtp_client_cmd cmd = (enum smtp_client_cmd)e->cmd;
	uint16_t code = c->rp.code;
	unsigned cls = code / 100u;

	/* RFC 5321 4.2.1, 4.3.2: only DATA gets a positive intermediate (3yz) reply, and
	 * DATA gets no positive completion before its content */
	if (cmd == SMTP_CLIENT_CMD_DATA ? cls == 2 : cls == 3)
		return smtp_client_protocol_error(c, SMTP_CLIENT_ERR_UNEXPECTED_CODE, cmd);

	smtp_client_owed(c, e);
	struct smtp_client_event ev = smtp_client_event_for(c, e);
	smtp_client_reply_into(c, &ev);
	bool ok = cls == 2;
	switch (cmd) {
	case SMTP_CLIENT_CMD_GREETING:
		c->greeted = ok;
		c->greet_refused = !ok;
		break;
	case SMTP_CLIENT_CMD_EHLO:
	case SMTP_CLIENT_CMD_LHLO:
		/* RFC 5321 4.1.4: a refused EHLO leaves the server's state as it was */
		if (ok) {
			c->caps = c->caps_next;
			c->caps.esmtp = true;
			c->helo_ok = true;
			smtp_client_rs_end_txn(c);
		}
		break;
	case SMTP_CLIENT_CMD_HELO:
		if (ok) {
			memset(&c->caps, 0, sizeof(c->caps));
			c->helo_ok = true;
			smtp_client_rs_end_txn(c);
		}
		break;
	case SMTP_CLIENT_CMD_MAIL:
		smtp_client_rs_end_txn(c);
		c->rs_txn = ok ? SMTP_CLIENT_TXN_OPEN : SMTP_CLIENT_TXN_REFUSED;
		break;
	case SMTP_CLIENT_CMD_RCPT:
		if (ok && e->rcpt >= 0 && !(c->accepted[e->rcpt / 8] & (1u << (e->rcpt % 8)))) {
			c->accepted[e->rcpt / 8] |= (uint8_t)(1u << (e->rcpt % 8));
			if ((uint32_t)e->rcpt / 8 + 1 > c->rs_rcpt_hi)
				c->rs_rcpt_hi = (uint32_t)e->rcpt / 8 + 1;
			c->rs_accepted++;
			ev.rcpt_accepted = c->rs_accepted;
		}
		break;
	case SMTP_CLIENT_CMD_DATA:
		smtp_client_enter_state(c, cls == 3 ? SMTP_CLIENT_ST_CONTENT : SMTP_CLIENT_ST_COMMANDS);
		break;
	case SMTP_CLIENT_CMD_BDAT:
		if (!ok)
			c->rs_bdat_failed = true;
		break;
	case SMTP_CLIENT_CMD_RSET:
		if (ok)
			smtp_client_rs_end_txn(c);
		break;
	case SMTP_CLIENT_CMD_DOT:
	case SMTP_CLIENT_CMD_BDAT_LAST:
	case SMTP_CLIENT_CMD_NOOP:
	case SMTP_CLIENT_CMD_QUIT:
	case SMTP_CLIENT_CMD_NONE:
	case SMTP_CLIENT_CMD_MAX:
		break;
	}
	bool last = smtp_client_consume_head(c);
	/* RFC 5321 4.1.1.4: the reply to the end of data ends the transaction, whatever it
	 * says (with LMTP, the last of the replies) */
	if (last && (cmd == SMTP_CLIENT_CMD_DOT || cmd == SMTP_CLIENT_CMD_BDAT_LAST))
		smtp_client_rs_end_txn(c);
	if (cmd == SMTP_CLIENT_CMD_QUIT)
		smtp_client_end(c, SMTP_CLIENT_ST_CLOSED, SMTP_CLIENT_NOREPLY_CLOSED);
	else if (code == 421)
		/* RFC 5321 4.2.2, 3.8: the server is closing the channel */
		smtp_client_end(c, SMTP_CLIENT_ST_CLOSED, SMTP_CLIENT_NOREPLY_CLOSED);
	else
		smtp_client_release(c);
	return ev;
}

struct smtp_client_event smtp_client_step(struct smtp_client *c, const char *buf, size_t len,
					  size_t *used)
{
	struct smtp_client_event none = { .type = SMTP_CLIENT_EV_NONE, .rcpt = -1 };
	*used = 0;
	/* events of commands that will get no reply come first, in command order */
	if (c->head != c->tail) {
		const struct smtp_client_entry *e = smtp_client_at(c, c->head);
		if (e->status == SMTP_CLIENT_E_SKIPPED || e->status == SMTP_CLIENT_E_ABORTED ||
		    smtp_client_none_due(c))
			return smtp_client_noreply_event(c);
	}
	if (c->state == SMTP_CLIENT_ST_CLOSED || c->state == SMTP_CLIENT_ST_ERROR) {
		*used = len; /* nothing the server says matters any more */
		return none;
	}
	while (*used < len) {
		enum smtp_client_rp_status st;
		*used += smtp_client_reply_feed(&c->rp, buf + *used, len - *used, &st);
		if (st == SMTP_CLIENT_RP_MORE)
			continue;
		/* a reply is matched to a command when its first line is complete */
		if (c->match == SMTP_CLIENT_MATCH_NONE) {
			const struct smtp_client_entry *e = smtp_client_answerable(c);
			c->match = e ? SMTP_CLIENT_MATCH_HEAD : SMTP_CLIENT_MATCH_UNSOLICITED;
			c->caps_reading = e && st != SMTP_CLIENT_RP_ERROR && c->rp.code / 100 == 2 &&
					  (e->cmd == SMTP_CLIENT_CMD_EHLO ||
					   e->cmd == SMTP_CLIENT_CMD_LHLO);
			if (c->caps_reading)
				memset(&c->caps_next, 0, sizeof(c->caps_next));
		} else if (c->caps_reading && st != SMTP_CLIENT_RP_ERROR) {
			/* RFC 5321 4.1.1.1: lines after the first are ehlo-lines */
			smtp_client_caps_line(&c->caps_next, c->rp.last_line, c->rp.last_line_cut);
		}
		if (st == SMTP_CLIENT_RP_LINE)
			continue;
		enum smtp_client_match match = c->match;
		c->match = SMTP_CLIENT_MATCH_NONE;
		c->caps_reading = false;
		const struct smtp_client_entry *head = smtp_client_answerable(c);
		enum smtp_client_cmd cmd =
			match == SMTP_CLIENT_MATCH_HEAD && head ? (enum smtp_client_cmd)head->cmd
								: SMTP_CLIENT_CMD_NONE;
		if (st == SMTP_CLIENT_RP_ERROR)
			return smtp_client_protocol_error(c, c->rp.error, cmd);
		if (match != SMTP_CLIENT_MATCH_HEAD)
			return smtp_client_protocol_error(c, SMTP_CLIENT_ERR_UNSOLICITED, cmd);
		assert(head);
		return smtp_client_dispatch(c);
	}
	return none;
}

void smtp_client_peer_closed(struct smtp_client *c)
{
	if (c->state != SMTP_CLIENT_ST_CLOSED && c->state != SMTP_CLIENT_ST_ERROR)
		smtp_client_end(c, SMTP_CLIENT_ST_CLOSED, SMTP_CLIENT_NOREPLY_LOST);
}

/* ---- queries ---- */

enum smtp_client_state smtp_client_state(const struct smtp_client *c)
{
	return c->state;
}

bool smtp_client_closed(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_ST_CLOSED || c->state == SMTP_CLIENT_ST_ERROR;
}

const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c)
{
	return &c->caps;
}

bool smtp_client_pipelining(const struct smtp_client *c)
{
	return smtp_client_pipelining_now(c);
}

unsigned smtp_client_inflight(const struct smtp_client *c)
{
	return c->inflight;
}

enum smtp_client_cmd smtp_client_awaiting(const struct smtp_client *c)
{
	for (uint32_t pos = c->head; pos != c->held; pos++) {
		const struct smtp_client_entry *e = smtp_client_at(c, pos);
		if (e->status == SMTP_CLIENT_E_SENT)
			return (enum smtp_client_cmd)e->cmd;
	}
	return SMTP_CLIENT_CMD_NONE;
}

unsigned smtp_client_pending(const struct smtp_client *c)
{
	return c->tail - c->head;
}

bool smtp_client_idle(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_ST_COMMANDS && c->greeted && c->helo_ok &&
	       c->head == c->tail && c->rs_txn != SMTP_CLIENT_TXN_OPEN && c->out_len == 0 &&
	       !smtp_client_reply_started(&c->rp);
}

size_t smtp_client_memory(const struct smtp_client *c)
{
	return c->alloc_size + c->out_cap;
}
