/* The generator's sessions: opened at the target rate up to the concurrency, each driving
 * the SMTP client codec (smtp/smtp_client.h) over one connection of mxgate's stack, and
 * every reply checked against what the session expects (RFC 5321 4.3.2 lists the codes
 * each command may get; this is the narrower set a healthy server gives a well-formed
 * session: 220 greeting, 250 EHLO, 2xx MAIL and RCPT, 354 DATA, 2xx end of data, 221
 * QUIT; and 4xx/5xx for a recipient the run says must be refused).
 *
 * A session: connect (from the next source address and port) -> greeting -> EHLO ->
 * messages (MAIL, RCPT..., DATA, content, ".": pipelined as one group when the server
 * offers PIPELINING and the run allows it) -> QUIT -> close. In idle mode it stops after
 * the greeting and waits for loadgen_release(). In pregreet mode (a bot, as postscreen(8)
 * sees one: "PREGREET ... after 0.00 from [addr]") it writes "EHLO helo" right after the
 * handshake, before the greeting, and expects the screen's 521 (Postfix and mxgate send
 * "521 5.5.1 Protocol error" with postscreen_greet_action = drop), after the teaser lines
 * "220-..." the screen may have sent (postscreen_greet_banner), and then the close; any
 * other reply, a close without it, or no close is an error of the session. That path has
 * no codec: its replies are a multi-line greeting cut short, which the codec (rightly)
 * calls a protocol error, and a bot needs only the reply codes.
 *
 * No DPDK here: the main loop feeds the stack and hands its events to loadgen_event(). */
#include "loadgen.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_stack.h"
#include "dataplane/net/net_timer.h"
#include "smtp/smtp_client.h"

enum loadgen_sess_state {
	LOADGEN_SS_FREE,       /* a slot without a session */
	LOADGEN_SS_CONNECTING, /* SYN out */
	LOADGEN_SS_OPEN,       /* connected: the codec drives it */
	LOADGEN_SS_IDLE,       /* idle mode: greeted, silent */
	LOADGEN_SS_WAIT_TOKEN, /* wants to start a message; the message rate holds it */
	LOADGEN_SS_MAX
};

static const char *loadgen_sess_state_name(enum loadgen_sess_state st)
{
	switch (st) {
	case LOADGEN_SS_FREE:
		return "FREE";
	case LOADGEN_SS_CONNECTING:
		return "CONNECTING";
	case LOADGEN_SS_OPEN:
		return "OPEN";
	case LOADGEN_SS_IDLE:
		return "IDLE";
	case LOADGEN_SS_WAIT_TOKEN:
		return "WAIT_TOKEN";
	case LOADGEN_SS_MAX:
		break;
	}
	return "?";
}

struct loadgen_session {
	struct net_conn *nc;
	struct smtp_client *cl;
	struct net_timer timer;     /* reply or connect timeout */
	struct loadgen_session *next; /* free list, token wait list, release list */
	uint64_t t_cmd[LOADGEN_LAT_MAX]; /* when the awaited command of each kind went out */
	uint64_t rcpt_seq;          /* the global number of this transaction's first rcpt */
	uint32_t msgs_done;         /* transactions finished */
	uint32_t content_off;       /* bytes of the message given to the codec */
	uint8_t state;              /* enum loadgen_sess_state */
	bool in_content;            /* between 354 and content_end() */
	bool failed;                /* an error was counted for this session */
	bool lost_counted;
	bool quitting;              /* QUIT queued */
	bool handshaking;           /* counted in loadgen.handshaking (connect to greeting) */
	bool rejected;              /* pregreet: the 521 came; the close is awaited */
	uint16_t pg_pos;            /* pregreet: bytes of the reply line so far */
	char pg_code[4];            /* pregreet: its first four bytes ("521 ", "220-") */
};

/* A pregreeting bot's reply line: at most this long (RFC 5321 4.5.3.1.5: 512 with CRLF) */
#define LOADGEN_PG_LINE_MAX 512

struct loadgen {
	struct loadgen_config cfg;
	struct loadgen_stats *st;
	struct net_stack *s;
	struct loadgen_session *sess; /* concurrency slots */
	struct loadgen_session *free_list;
	struct loadgen_session *wait_head, *wait_tail; /* LOADGEN_SS_WAIT_TOKEN, FIFO */
	struct net_timer_wheel *wheel;
	struct smtp_client_config ccfg;
	char *msg;                  /* the message content, shared by all sessions */
	size_t msg_len;
	uint32_t active;            /* slots in use */
	uint32_t handshaking;       /* sessions between connect and greeting (or, released
				       from idle, between QUIT and close) */
	uint64_t opened;            /* sessions opened so far */
	uint64_t next_src;          /* the next (address, port) pair, counted */
	uint64_t rcpt_counter;      /* recipients numbered across the run */
	uint64_t now_us;
	double tokens;              /* rate: tokens on hand */
	uint64_t tokens_at_us;
	uint64_t connect_retry_us;  /* ARP for the next hop pending: retry then */
	uint64_t hold_until_us;     /* idle: QUIT everyone then (0: not yet set / never) */
	bool stop_opening;
	bool released;              /* idle: QUIT sent to the held sessions */
	struct loadgen_session *release_next; /* idle: the next slot to release */
	uint32_t release_pos;
	size_t client_memory;       /* the codec's size, measured on the first session */
};

static uint32_t ms_of(uint64_t us)
{
	return (uint32_t)(us / 1000);
}

/* ---- the message ---- */

/* One message for the whole run: headers, then lines of 78 characters up to cfg.size
 * bytes. The codec dot-stuffs, so content may be any text. */
static int build_message(struct loadgen *lg)
{
	size_t size = lg->cfg.size;
	lg->msg = malloc(size);
	if (!lg->msg)
		return -ENOMEM;
	int h = snprintf(lg->msg, size,
			 "From: <%s>\r\nTo: <loadgen@%s>\r\nSubject: mxgate-loadgen\r\n"
			 "Message-ID: <loadgen.%u@%s>\r\n\r\n",
			 lg->cfg.sender, lg->cfg.rcpt_domain, (unsigned)size, lg->cfg.helo);
	if (h < 0 || (size_t)h >= size) {
		/* the headers alone overflow: just body lines (size >= 200 is enforced) */
		h = 0;
	}
	size_t o = (size_t)h;
	unsigned line = 0;
	while (o < size) {
		size_t left = size - o;
		if (left <= 2) {
			memcpy(lg->msg + o, "\r\n", left);
			o += left;
			break;
		}
		size_t n = left < 80 ? left - 2 : 78;
		for (size_t i = 0; i < n; i++)
			lg->msg[o + i] = i == 0 ? (char)('0' + line % 10) : 'x';
		o += n;
		memcpy(lg->msg + o, "\r\n", 2);
		o += 2;
		line++;
	}
	lg->msg_len = size;
	return 0;
}

/* ---- errors ---- */

static void sess_error(struct loadgen *lg, struct loadgen_session *se, enum loadgen_err kind,
		       const struct smtp_client_event *ev, const char *what)
{
	if (!se->failed) {
		se->failed = true;
		lg->st->sessions_failed++;
	}
	if (ev && ev->noreply == SMTP_CLIENT_NOREPLY_NONE) {
		loadgen_stats_error(lg->st, kind, ev->code, "%s, got %u %.*s", what,
				    ev->code, (int)(ev->text.len > 150 ? 150 : ev->text.len),
				    (const char *)ev->text.ptr);
	} else if (ev) {
		loadgen_stats_error(lg->st, kind, 0, "%s: %s (%s)", smtp_client_cmd_name(ev->cmd),
				    what, smtp_client_noreply_name(ev->noreply));
	} else {
		loadgen_stats_error(lg->st, kind, 0, "%s", what);
	}
}

/* ---- slots ---- */

static void sess_timer_off(struct loadgen *lg, struct loadgen_session *se)
{
	if (net_timer_armed(&se->timer))
		net_timer_cancel(lg->wheel, &se->timer);
}

static void wait_unlink(struct loadgen *lg, struct loadgen_session *se)
{
	struct loadgen_session **pp = &lg->wait_head, *prev = NULL;
	while (*pp && *pp != se) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp) {
		*pp = se->next;
		if (lg->wait_tail == se)
			lg->wait_tail = prev;
	}
	se->next = NULL;
}

/* The session is over: close (or abort) its connection, free the codec, free the slot. */
static void sess_handshake_done(struct loadgen *lg, struct loadgen_session *se)
{
	if (se->handshaking) {
		se->handshaking = false;
		lg->handshaking--;
	}
}

/* The one place a session changes state: keeps the idle gauge (idle_held, idle_max). */
static void sess_enter_state(struct loadgen *lg, struct loadgen_session *se,
			     enum loadgen_sess_state to)
{
	assert(to < LOADGEN_SS_MAX);
	struct loadgen_stats *st = lg->st;
	if (se->state == LOADGEN_SS_IDLE && to != LOADGEN_SS_IDLE) {
		assert(st->idle_held > 0);
		st->idle_held--;
	}
	if (to == LOADGEN_SS_IDLE && se->state != LOADGEN_SS_IDLE) {
		st->idle_held++;
		if (st->idle_held > st->idle_max)
			st->idle_max = st->idle_held;
	}
	se->state = (uint8_t)to;
}

static void sess_end(struct loadgen *lg, struct loadgen_session *se, bool abort_conn)
{
	assert(se->state != LOADGEN_SS_FREE);
	sess_handshake_done(lg, se);
	if (se->state == LOADGEN_SS_WAIT_TOKEN)
		wait_unlink(lg, se);
	sess_timer_off(lg, se);
	if (se->nc) {
		net_conn_set_user(se->nc, NULL);
		if (abort_conn)
			net_conn_abort(se->nc);
		else
			net_conn_close(se->nc);
		se->nc = NULL;
	}
	if (se->cl) {
		smtp_client_free(se->cl);
		se->cl = NULL;
	}
	sess_enter_state(lg, se, LOADGEN_SS_FREE);
	se->next = lg->free_list;
	lg->free_list = se;
	lg->active--;
}

/* ---- tokens (the target rate) ---- */

static void tokens_refill(struct loadgen *lg)
{
	if (lg->cfg.rate <= 0)
		return;
	uint64_t dt = lg->now_us - lg->tokens_at_us;
	lg->tokens_at_us = lg->now_us;
	lg->tokens += lg->cfg.rate * (double)dt / 1e6;
	/* a burst of at most 10 ms worth (and at least one token) */
	double cap = lg->cfg.rate / 100 > 1 ? lg->cfg.rate / 100 : 1;
	if (lg->tokens > cap)
		lg->tokens = cap;
}

static bool token_take(struct loadgen *lg, enum loadgen_rate_of what)
{
	if (lg->cfg.rate <= 0 || lg->cfg.rate_of != what)
		return true;
	if (lg->tokens < 1)
		return false;
	lg->tokens -= 1;
	return true;
}

/* ---- driving one session ---- */

static void sess_pump(struct loadgen *lg, struct loadgen_session *se);

/* Queue QUIT (its reply ends the session). */
static void sess_quit(struct loadgen *lg, struct loadgen_session *se)
{
	if (se->quitting)
		return;
	se->quitting = true;
	se->t_cmd[LOADGEN_LAT_QUIT] = lg->now_us;
	if (smtp_client_quit(se->cl) < 0)
		se->quitting = false; /* over already (closed): sess_pump ends it */
}

/* Queue one transaction: MAIL, its RCPTs, DATA (pipelined as one group where offered). */
static void sess_start_message(struct loadgen *lg, struct loadgen_session *se)
{
	struct smtp_client_mail m = { .sender = lg->cfg.sender };
	if (smtp_client_mail(se->cl, &m) < 0) {
		sess_error(lg, se, LOADGEN_ERR_LOCAL, NULL, "MAIL could not be queued");
		sess_quit(lg, se);
		return;
	}
	lg->st->messages_started++;
	se->t_cmd[LOADGEN_LAT_MAIL] = se->t_cmd[LOADGEN_LAT_RCPT] =
		se->t_cmd[LOADGEN_LAT_DATA] = lg->now_us;
	se->rcpt_seq = lg->rcpt_counter;
	for (uint32_t i = 0; i < lg->cfg.rcpts; i++) {
		uint64_t n = lg->rcpt_counter++;
		char addr[LOADGEN_NAME_MAX + 24];
		struct smtp_client_rcpt r = { .addr = addr };
		if (lg->cfg.bad_rcpt_every && n % lg->cfg.bad_rcpt_every == lg->cfg.bad_rcpt_every - 1)
			r.addr = lg->cfg.bad_rcpt;
		else
			snprintf(addr, sizeof(addr), "u%llu@%s", (unsigned long long)n,
				 lg->cfg.rcpt_domain);
		if (smtp_client_rcpt(se->cl, &r) < 0) {
			sess_error(lg, se, LOADGEN_ERR_LOCAL, NULL, "RCPT could not be queued");
			break;
		}
		lg->st->rcpts_sent++;
	}
	if (smtp_client_data(se->cl) < 0)
		sess_error(lg, se, LOADGEN_ERR_LOCAL, NULL, "DATA could not be queued");
	se->content_off = 0;
}

/* A transaction is over (its end of data answered, or DATA not taken): the next one, or
 * QUIT. */
static void sess_next(struct loadgen *lg, struct loadgen_session *se)
{
	se->msgs_done++;
	if (se->msgs_done >= lg->cfg.messages || se->failed) {
		sess_quit(lg, se);
		return;
	}
	if (!token_take(lg, LOADGEN_RATE_MESSAGES)) {
		sess_enter_state(lg, se, LOADGEN_SS_WAIT_TOKEN);
		se->next = NULL;
		if (lg->wait_tail)
			lg->wait_tail->next = se;
		else
			lg->wait_head = se;
		lg->wait_tail = se;
		return;
	}
	sess_start_message(lg, se);
}

static bool is_bad_rcpt(const struct loadgen *lg, const struct loadgen_session *se, int idx)
{
	if (lg->cfg.listed)
		return true; /* a listed client: the screen refuses every recipient */
	if (!lg->cfg.bad_rcpt_every || idx < 0)
		return false;
	uint64_t n = se->rcpt_seq + (uint64_t)idx;
	return n % lg->cfg.bad_rcpt_every == lg->cfg.bad_rcpt_every - 1;
}

static void lat(struct loadgen *lg, struct loadgen_session *se, enum loadgen_lat k)
{
	uint64_t t = se->t_cmd[k];
	loadgen_hist_add(&lg->st->lat[k], lg->now_us > t ? lg->now_us - t : 0);
}

/* One event of the codec: check it against what the session expects, and go on. */
static void sess_event(struct loadgen *lg, struct loadgen_session *se,
		       const struct smtp_client_event *ev)
{
	struct loadgen_stats *st = lg->st;
	bool replied = ev->noreply == SMTP_CLIENT_NOREPLY_NONE;
	unsigned cls = ev->code / 100;
	if (!replied && ev->type != SMTP_CLIENT_EV_PROTOCOL_ERROR) {
		if (ev->noreply == SMTP_CLIENT_NOREPLY_SKIPPED) {
			/* not sent because an earlier refusal doomed it; that refusal was
			 * judged already. DATA skipped ends the transaction. */
			if (ev->type == SMTP_CLIENT_EV_DATA) {
				st->messages_refused++;
				sess_next(lg, se);
			}
			return;
		}
		/* after a protocol error (counted) or the server's 421 (judged as a reply), the
		 * commands left get no reply: not another error */
		if (ev->noreply == SMTP_CLIENT_NOREPLY_ERROR ||
		    ev->noreply == SMTP_CLIENT_NOREPLY_CLOSED)
			return;
		if (!se->lost_counted) {
			se->lost_counted = true;
			sess_error(lg, se, LOADGEN_ERR_LOST, ev, "no reply");
		}
		return;
	}
	switch (ev->type) {
	case SMTP_CLIENT_EV_GREETING:
		lat(lg, se, LOADGEN_LAT_CONNECT);
		sess_handshake_done(lg, se);
		if (ev->code != 220) {
			sess_error(lg, se, LOADGEN_ERR_GREETING, ev, "greeting: expected 220");
			sess_quit(lg, se);
			return;
		}
		st->sessions_greeted++;
		se->t_cmd[LOADGEN_LAT_EHLO] = lg->now_us;
		if (lg->cfg.idle) {
			sess_enter_state(lg, se, LOADGEN_SS_IDLE);
			if (st->sessions_greeted == 1)
				st->first_greeting_us = lg->now_us;
			if (st->idle_held >= lg->cfg.concurrency && !st->all_greeted_us) {
				st->all_greeted_us = lg->now_us;
				if (lg->cfg.idle_hold_s > 0)
					lg->hold_until_us =
						lg->now_us + (uint64_t)(lg->cfg.idle_hold_s * 1e6);
			}
			return;
		}
		return;
	case SMTP_CLIENT_EV_HELO:
		lat(lg, se, LOADGEN_LAT_EHLO);
		if (ev->code != 250) {
			sess_error(lg, se, LOADGEN_ERR_EHLO, ev, "EHLO: expected 250");
			sess_quit(lg, se);
			return;
		}
		se->msgs_done = 0;
		if (lg->cfg.messages == 0) {
			sess_quit(lg, se);
			return;
		}
		se->msgs_done = (uint32_t)-1; /* sess_next() counts up to 0 */
		sess_next(lg, se);
		return;
	case SMTP_CLIENT_EV_MAIL:
		lat(lg, se, LOADGEN_LAT_MAIL);
		if (cls != 2)
			sess_error(lg, se, LOADGEN_ERR_MAIL, ev, "MAIL: expected 2xx");
		return;
	case SMTP_CLIENT_EV_RCPT:
		lat(lg, se, LOADGEN_LAT_RCPT);
		if (cls == 2)
			st->rcpts_accepted++;
		else
			st->rcpts_refused++;
		if (lg->cfg.listed) {
			/* postscreen's enforce: "550 5.7.1 Service unavailable; client [ip]
			 * blocked using ZONE" (postscreen(8), postscreen_dnsbl_action) */
			if (ev->code == 550)
				st->sessions_rejected++;
			else
				sess_error(lg, se, LOADGEN_ERR_RCPT, ev,
					   "RCPT of a listed client: expected 550");
		} else if (is_bad_rcpt(lg, se, ev->rcpt)) {
			if (cls != 4 && cls != 5)
				sess_error(lg, se, LOADGEN_ERR_RCPT, ev,
					   "RCPT of the refused address: expected 4xx/5xx");
		} else if (cls != 2) {
			sess_error(lg, se, LOADGEN_ERR_RCPT, ev, "RCPT: expected 2xx");
		}
		return;
	case SMTP_CLIENT_EV_DATA:
		lat(lg, se, LOADGEN_LAT_DATA);
		if (ev->code == 354) {
			if (ev->rcpt_accepted == 0)
				sess_error(lg, se, LOADGEN_ERR_DATA, ev,
					   "DATA without an accepted recipient: expected 5xx");
			se->in_content = true;
			se->content_off = ev->rcpt_accepted == 0 ? (uint32_t)lg->msg_len : 0;
			return;
		}
		if (ev->rcpt_accepted > 0)
			sess_error(lg, se, LOADGEN_ERR_DATA, ev, "DATA: expected 354");
		else if (cls != 5 && cls != 4)
			sess_error(lg, se, LOADGEN_ERR_DATA, ev,
				   "DATA without recipients: expected 4xx/5xx");
		st->messages_refused++;
		sess_next(lg, se);
		return;
	case SMTP_CLIENT_EV_MESSAGE:
		lat(lg, se, LOADGEN_LAT_DOT);
		if (cls == 2) {
			st->messages_accepted++;
		} else {
			st->messages_refused++;
			sess_error(lg, se, LOADGEN_ERR_DOT, ev, "end of data: expected 2xx");
		}
		sess_next(lg, se);
		return;
	case SMTP_CLIENT_EV_QUIT:
		lat(lg, se, LOADGEN_LAT_QUIT);
		if (ev->code != 221)
			sess_error(lg, se, LOADGEN_ERR_QUIT, ev, "QUIT: expected 221");
		else if (!se->failed)
			st->sessions_done++;
		return;
	case SMTP_CLIENT_EV_PROTOCOL_ERROR: {
		char what[96];
		snprintf(what, sizeof(what), "%s: protocol error %s", smtp_client_cmd_name(ev->cmd),
			 smtp_client_error_name(ev->error));
		if (!se->failed) {
			se->failed = true;
			st->sessions_failed++;
		}
		loadgen_stats_error(st, LOADGEN_ERR_PROTOCOL, ev->code, "%s: %.*s", what,
				    (int)(ev->text.len > 150 ? 150 : ev->text.len),
				    ev->text.len ? (const char *)ev->text.ptr : "");
		return;
	}
	case SMTP_CLIENT_EV_BDAT:
	case SMTP_CLIENT_EV_RSET:
	case SMTP_CLIENT_EV_NOOP:
	case SMTP_CLIENT_EV_NONE:
	case SMTP_CLIENT_EV_MAX:
		break;
	}
	sess_error(lg, se, LOADGEN_ERR_PROTOCOL, ev, "an event for a command never sent");
}

/* Move the codec's output into the connection. False when TCP took less (WRITABLE will
 * come). */
static bool sess_flush(struct loadgen_session *se)
{
	if (!se->nc)
		return false;
	for (;;) {
		struct mx_span o = smtp_client_output(se->cl);
		if (o.len == 0)
			return true;
		size_t n = net_conn_write(se->nc, o.ptr, o.len);
		smtp_client_output_done(se->cl, n);
		if (n < o.len)
			return false;
	}
}

/* Give the codec message content while the connection takes it; end it when all is in. */
static void sess_content(struct loadgen *lg, struct loadgen_session *se)
{
	while (se->in_content) {
		if (!sess_flush(se))
			return;
		if (se->content_off < lg->msg_len) {
			ssize_t n = smtp_client_content(se->cl, lg->msg + se->content_off,
							lg->msg_len - se->content_off);
			if (n < 0) {
				se->in_content = false; /* the session is over: events say why */
				return;
			}
			se->content_off += (uint32_t)n;
			lg->st->bytes_content += (uint64_t)n;
			continue;
		}
		int rc = smtp_client_content_end(se->cl);
		if (rc == -ENOBUFS)
			continue;
		se->in_content = false;
		se->t_cmd[LOADGEN_LAT_DOT] = lg->now_us;
	}
}

/* Everything a session can do now: write, read replies, act on them; then arm its timer
 * (a reply is awaited) or end it (the codec is closed). */
static void sess_pump(struct loadgen *lg, struct loadgen_session *se)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		sess_content(lg, se);
		if (!se->in_content)
			sess_flush(se);
		if (se->state == LOADGEN_SS_FREE)
			return;
		bool progress = false;
		for (;;) {
			size_t len = 0;
			static const uint8_t none[1];
			const uint8_t *p = se->nc ? net_conn_peek(se->nc, &len) : none;
			if (!p)
				p = none;
			size_t used = 0;
			struct smtp_client_event ev = smtp_client_step(se->cl, (const char *)p,
								       len, &used);
			if (used && se->nc)
				net_conn_consume(se->nc, used);
			if (ev.type == SMTP_CLIENT_EV_NONE) {
				if (len == 0 || used == 0)
					break;
				continue;
			}
			progress = true;
			sess_event(lg, se, &ev);
			if (se->state == LOADGEN_SS_FREE)
				return;
		}
		if (se->nc && net_conn_eof(se->nc) && !smtp_client_closed(se->cl)) {
			smtp_client_peer_closed(se->cl);
			progress = true;
			continue;
		}
		if (!progress)
			break;
	}
	if (smtp_client_closed(se->cl)) {
		if (!se->quitting && !se->failed)
			sess_error(lg, se, LOADGEN_ERR_LOST, NULL, "the server closed the session");
		sess_end(lg, se, false);
		return;
	}
	bool waiting = smtp_client_awaiting(se->cl) != SMTP_CLIENT_CMD_NONE || se->in_content;
	if (waiting && se->state != LOADGEN_SS_IDLE)
		net_timer_arm(lg->wheel, &se->timer,
			      ms_of(lg->now_us) + (uint32_t)(lg->cfg.timeout_s * 1000));
	else
		sess_timer_off(lg, se);
}

/* ---- pregreeting bots ---- */

/* One reply line of the screen, complete: its code and separator in se->pg_code. The
 * teaser ("220-") is skipped, 521 is the verdict awaited; 0, or -EPROTO with the error
 * counted. */
static int pregreet_line(struct loadgen *lg, struct loadgen_session *se)
{
	const char *c = se->pg_code;
	if (se->pg_pos >= 4 && memcmp(c, "220-", 4) == 0 && !se->rejected)
		return 0; /* postscreen_greet_banner: the greeting's first line */
	if (se->pg_pos >= 4 && memcmp(c, "521", 3) == 0 && (c[3] == ' ' || c[3] == '-')) {
		if (!se->rejected) {
			se->rejected = true; /* the close is awaited now */
			lat(lg, se, LOADGEN_LAT_CONNECT);
			sess_handshake_done(lg, se);
		}
		return 0;
	}
	char code[5];
	for (int i = 0; i < 4; i++)
		code[i] = i < se->pg_pos && c[i] >= 0x20 && c[i] < 0x7f ? c[i] : '?';
	code[4] = 0;
	if (!se->failed) {
		se->failed = true;
		lg->st->sessions_failed++;
	}
	uint16_t n = (uint16_t)((c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0'));
	bool numeric = se->pg_pos >= 3 && c[0] >= '2' && c[0] <= '5' && c[1] >= '0' &&
		       c[1] <= '9' && c[2] >= '0' && c[2] <= '9';
	loadgen_stats_error(lg->st, numeric ? LOADGEN_ERR_GREETING : LOADGEN_ERR_PROTOCOL,
			    numeric ? n : 0, "pregreet: expected the screen's 521, got \"%s\"%s",
			    code, se->rejected ? " after it" : "");
	return -EPROTO;
}

/* Read what the screen sent on c (the session's connection, or one being reset): whole
 * lines through pregreet_line(). 0, or -EPROTO (counted). */
static int pregreet_scan(struct loadgen *lg, struct loadgen_session *se, struct net_conn *c)
{
	size_t len;
	const uint8_t *p;
	while ((p = net_conn_peek(c, &len)) != NULL && len) {
		for (size_t i = 0; i < len; i++) {
			if (p[i] == '\n') {
				int rc = pregreet_line(lg, se);
				se->pg_pos = 0;
				if (rc < 0)
					return rc;
				continue;
			}
			if (se->pg_pos < 4)
				se->pg_code[se->pg_pos] = (char)p[i];
			if (++se->pg_pos > LOADGEN_PG_LINE_MAX) {
				if (!se->failed) {
					se->failed = true;
					lg->st->sessions_failed++;
				}
				loadgen_stats_error(lg->st, LOADGEN_ERR_PROTOCOL, 0,
						    "pregreet: a reply line over %d bytes",
						    LOADGEN_PG_LINE_MAX);
				return -EPROTO;
			}
		}
		net_conn_consume(c, len);
	}
	return 0;
}

/* The connection ended (FIN, or reset: `reset`): a reject when the 521 came before. */
static void pregreet_closed(struct loadgen *lg, struct loadgen_session *se, bool reset)
{
	if (se->failed)
		return;
	if (se->rejected) {
		lg->st->sessions_rejected++;
		return;
	}
	sess_error(lg, se, LOADGEN_ERR_LOST, NULL,
		   reset ? "pregreet: reset without the 521"
			 : "pregreet: the server closed without the 521");
}

/* Readable or the peer's FIN: the replies, then the close; else wait (the timer runs
 * from the connect to the close). */
static void pregreet_pump(struct loadgen *lg, struct loadgen_session *se)
{
	if (pregreet_scan(lg, se, se->nc) < 0) {
		sess_end(lg, se, true); /* a bot does not stay to hear more */
		return;
	}
	if (net_conn_eof(se->nc)) {
		pregreet_closed(lg, se, false);
		sess_end(lg, se, false);
	}
}

/* Connected: the EHLO at once, before any greeting. */
static void pregreet_connected(struct loadgen *lg, struct loadgen_session *se)
{
	char cmd[LOADGEN_NAME_MAX + 8];
	int n = snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", lg->cfg.helo);
	assert(n > 0 && (size_t)n < sizeof(cmd));
	sess_enter_state(lg, se, LOADGEN_SS_OPEN);
	if (net_conn_write(se->nc, cmd, (size_t)n) != (size_t)n) {
		sess_error(lg, se, LOADGEN_ERR_LOCAL, NULL,
			   "pregreet: the EHLO did not fit the send buffer");
		sess_end(lg, se, true);
		return;
	}
	pregreet_pump(lg, se);
}

/* ---- opening sessions ---- */

static int sess_open(struct loadgen *lg)
{
	struct loadgen_session *se = lg->free_list;
	assert(se);
	uint32_t nsrc = lg->cfg.src_count ? lg->cfg.src_count : 1;
	uint32_t base = lg->cfg.src_count ? ntohl(lg->cfg.src_base) : ntohl(lg->cfg.local);
	/* the next (address, port): addresses first, so consecutive sessions come from
	 * different clients (per-client limits stay out of the way); ports 10000..64999 */
	uint64_t k = lg->next_src;
	uint32_t src = htonl(base + (uint32_t)(k % nsrc));
	uint16_t lport = (uint16_t)(10000 + (k / nsrc) % 55000);
	struct net_conn *nc = net_conn_connect_from(lg->s, src, lg->cfg.server,
						    lg->cfg.server_port, lport, lg->now_us);
	if (!nc) {
		int e = errno;
		if (e == EHOSTUNREACH)
			return -EHOSTUNREACH; /* ARP for the next hop is under way */
		if (e == ENOMEM) {
			/* the stack's connection table is full of connections still closing:
			 * back-pressure, not a failed session; the next tick tries again */
			lg->st->connect_deferred++;
			return -ENOBUFS;
		}
		lg->next_src++;
		if (e == EADDRINUSE)
			return -EAGAIN; /* that pair is still busy: the next one */
		lg->opened++;
		lg->st->sessions_started++;
		lg->st->sessions_failed++;
		loadgen_stats_error(lg->st, e == ENOMEM ? LOADGEN_ERR_LOCAL : LOADGEN_ERR_CONNECT,
				    0, "connect: %s", strerror(e));
		return -e;
	}
	lg->next_src++;
	if (lg->opened == 0)
		lg->st->start_us = lg->now_us; /* the run starts with its first SYN, after ARP */
	lg->free_list = se->next;
	memset(se, 0, sizeof(*se));
	se->nc = nc;
	sess_enter_state(lg, se, LOADGEN_SS_CONNECTING);
	se->handshaking = true;
	lg->handshaking++;
	se->t_cmd[LOADGEN_LAT_CONNECT] = lg->now_us;
	net_conn_set_user(nc, se);
	net_timer_arm(lg->wheel, &se->timer,
		      ms_of(lg->now_us) + (uint32_t)(lg->cfg.timeout_s * 1000));
	lg->active++;
	lg->opened++;
	lg->st->sessions_started++;
	return 0;
}

static void sess_connected(struct loadgen *lg, struct loadgen_session *se)
{
	lg->st->sessions_connected++;
	if (lg->cfg.pregreet) {
		pregreet_connected(lg, se);
		return;
	}
	int rc = smtp_client_new(&se->cl, &lg->ccfg);
	if (rc < 0) {
		sess_error(lg, se, LOADGEN_ERR_LOCAL, NULL, "no memory for the client codec");
		sess_end(lg, se, true);
		return;
	}
	if (!lg->client_memory)
		lg->client_memory = smtp_client_memory(se->cl);
	sess_enter_state(lg, se, LOADGEN_SS_OPEN);
	if (!lg->cfg.idle)
		smtp_client_ehlo(se->cl, lg->cfg.helo); /* goes out after the greeting */
	sess_pump(lg, se);
}

/* ---- the engine ---- */

static void timer_fire(void *arg, struct net_timer *t)
{
	struct loadgen *lg = arg;
	struct loadgen_session *se =
		(struct loadgen_session *)((char *)t - offsetof(struct loadgen_session, timer));
	if (se->state == LOADGEN_SS_FREE)
		return;
	if (se->state == LOADGEN_SS_CONNECTING) {
		sess_error(lg, se, LOADGEN_ERR_CONNECT, NULL, "connect: timed out");
	} else {
		char what[96];
		snprintf(what, sizeof(what), "no reply to %s within %.3g s (state %s)",
			 se->cl ? smtp_client_cmd_name(smtp_client_awaiting(se->cl)) : "-",
			 lg->cfg.timeout_s, loadgen_sess_state_name(se->state));
		sess_error(lg, se, LOADGEN_ERR_TIMEOUT, NULL, what);
	}
	sess_end(lg, se, true);
}

void loadgen_event(void *ctx, struct net_conn *c, int ev)
{
	struct loadgen *lg = ctx;
	struct loadgen_session *se = net_conn_user(c);
	if (!se)
		return; /* a connection we let go of */
	switch ((enum net_event)ev) {
	case NET_EV_CONNECTED:
		sess_connected(lg, se);
		return;
	case NET_EV_READABLE:
	case NET_EV_WRITABLE:
		if (se->cl)
			sess_pump(lg, se);
		else if (lg->cfg.pregreet && se->state == LOADGEN_SS_OPEN)
			pregreet_pump(lg, se);
		return;
	case NET_EV_ABORT: {
		int err = net_conn_error(c);
		if (lg->cfg.pregreet && se->state == LOADGEN_SS_OPEN) {
			/* what came before the reset still counts (the handle lives until we
			 * return) */
			if (pregreet_scan(lg, se, c) == 0)
				pregreet_closed(lg, se, true);
			se->nc = NULL;
			sess_end(lg, se, false);
			return;
		}
		se->nc = NULL; /* the handle dies when we return */
		if (se->state == LOADGEN_SS_CONNECTING || !se->cl) {
			if (!se->failed) {
				se->failed = true;
				lg->st->sessions_failed++;
			}
			loadgen_stats_error(lg->st, LOADGEN_ERR_CONNECT, 0, "connect: %s",
					    strerror(err < 0 ? -err : err));
			sess_end(lg, se, false);
			return;
		}
		smtp_client_peer_closed(se->cl);
		sess_pump(lg, se);
		if (se->state != LOADGEN_SS_FREE) {
			if (!se->quitting && !se->lost_counted)
				sess_error(lg, se, LOADGEN_ERR_LOST, NULL, "connection reset");
			sess_end(lg, se, false);
		}
		return;
	}
	case NET_EV_ACCEPT:
	case NET_EV_MAX:
		break;
	}
}

struct loadgen *loadgen_new(const struct loadgen_config *cfg, struct loadgen_stats *st,
			    uint64_t now_us)
{
	if (cfg->concurrency == 0 || cfg->concurrency > (1u << 24)) {
		errno = EINVAL;
		return NULL;
	}
	struct loadgen *lg = calloc(1, sizeof(*lg));
	if (!lg)
		return NULL;
	lg->cfg = *cfg;
	lg->st = st;
	lg->now_us = now_us;
	lg->tokens_at_us = now_us;
	lg->tokens = 1;
	lg->sess = calloc(cfg->concurrency, sizeof(*lg->sess));
	lg->wheel = calloc(1, sizeof(*lg->wheel));
	if (!lg->sess || !lg->wheel || build_message(lg) < 0) {
		loadgen_free(lg);
		errno = ENOMEM;
		return NULL;
	}
	net_timer_wheel_init(lg->wheel, ms_of(now_us));
	for (uint32_t i = cfg->concurrency; i-- > 0;) {
		lg->sess[i].next = lg->free_list;
		lg->free_list = &lg->sess[i];
	}
	/* Small bounds: a load generator needs few commands in flight (a transaction is
	 * rcpts + 3) and short reply texts; what matters is the memory per idle session. */
	smtp_client_config_defaults(&lg->ccfg);
	lg->ccfg.pipelining = cfg->pipelining;
	lg->ccfg.output_max = 16384;
	lg->ccfg.line_max = 512;
	lg->ccfg.text_max = 256;
	lg->ccfg.reply_lines_max = 64;
	lg->ccfg.queue_max = cfg->rcpts + 8 < 4 ? 4 : cfg->rcpts + 8;
	lg->ccfg.rcpt_max = cfg->rcpts;
	st->start_us = now_us;
	return lg;
}

void loadgen_attach(struct loadgen *lg, struct net_stack *s)
{
	lg->s = s;
}

void loadgen_free(struct loadgen *lg)
{
	if (!lg)
		return;
	if (lg->sess)
		for (uint32_t i = 0; i < lg->cfg.concurrency; i++)
			if (lg->sess[i].cl)
				smtp_client_free(lg->sess[i].cl);
	free(lg->sess);
	free(lg->wheel);
	free(lg->msg);
	free(lg);
}

void loadgen_stop_opening(struct loadgen *lg)
{
	lg->stop_opening = true;
}

void loadgen_release(struct loadgen *lg)
{
	lg->stop_opening = true;
	if (lg->cfg.idle && !lg->released) {
		lg->released = true;
		lg->release_pos = 0;
	}
}

/* Idle mode's release: QUIT on held sessions, at most a receive burst (32) per tick and
 * --handshakes of them between QUIT and close (counted as handshaking: opening has
 * stopped), as the ramp is paced. A burst of thousands of QUITs overflows a ring between
 * two polling processes (about a thousand frames), and every QUIT or 221 dropped there
 * costs a retransmission timeout: 100,000 sessions took minutes to release instead of
 * seconds. */
static void release_some(struct loadgen *lg)
{
	uint32_t budget = 32;
	while (budget && lg->release_pos < lg->cfg.concurrency &&
	       lg->handshaking < lg->cfg.handshakes) {
		struct loadgen_session *se = &lg->sess[lg->release_pos++];
		if (se->state != LOADGEN_SS_IDLE)
			continue;
		budget--;
		se->handshaking = true;
		lg->handshaking++;
		sess_enter_state(lg, se, LOADGEN_SS_OPEN);
		sess_quit(lg, se);
		sess_pump(lg, se);
	}
}

void loadgen_tick(struct loadgen *lg, uint64_t now_us)
{
	lg->now_us = now_us;
	net_timer_advance(lg->wheel, ms_of(now_us), timer_fire, lg);
	tokens_refill(lg);
	/* sessions waiting for a message token, oldest first */
	while (lg->wait_head && token_take(lg, LOADGEN_RATE_MESSAGES)) {
		struct loadgen_session *se = lg->wait_head;
		lg->wait_head = se->next;
		if (!lg->wait_head)
			lg->wait_tail = NULL;
		se->next = NULL;
		sess_enter_state(lg, se, LOADGEN_SS_OPEN);
		sess_start_message(lg, se);
		sess_pump(lg, se);
	}
	if (lg->cfg.duration_s > 0 &&
	    now_us - lg->st->start_us >= (uint64_t)(lg->cfg.duration_s * 1e6))
		lg->stop_opening = true;
	if (lg->cfg.idle && lg->hold_until_us && now_us >= lg->hold_until_us)
		loadgen_release(lg);
	if (lg->released)
		release_some(lg);
	if (lg->stop_opening || now_us < lg->connect_retry_us)
		return;
	/* at most a burst of 32 opens per tick (the receive burst), so that the answers to
	 * them are read before more go out: a ring between two polling processes holds
	 * about a thousand frames, and a SYN-ACK dropped there costs a second-long RTO */
	for (unsigned burst = 0; burst < 32; burst++) {
		if (lg->free_list == NULL || (lg->cfg.sessions && lg->opened >= lg->cfg.sessions))
			break;
		/* a window of handshakes: a server whose SYN backlog overflows answers with
		 * SYN cookies, and a cookie connection whose last ACK is lost hangs silent
		 * (the server speaks first in SMTP); the window keeps the ramp at the pace
		 * the server greets */
		if (lg->handshaking >= lg->cfg.handshakes)
			break;
		if (lg->cfg.rate > 0 && lg->cfg.rate_of == LOADGEN_RATE_SESSIONS && lg->tokens < 1)
			break;
		int rc = sess_open(lg);
		if (rc == -EHOSTUNREACH) {
			lg->connect_retry_us = now_us + 20000;
			if (now_us - lg->st->start_us > (uint64_t)(lg->cfg.timeout_s * 1e6)) {
				loadgen_stats_error(lg->st, LOADGEN_ERR_CONNECT, 0,
						    "connect: the next hop does not answer ARP");
				lg->stop_opening = true;
			}
			return;
		}
		if (rc == -ENOBUFS)
			return;
		if (rc == 0)
			token_take(lg, LOADGEN_RATE_SESSIONS);
	}
}

bool loadgen_done(const struct loadgen *lg)
{
	if (lg->active)
		return false;
	if (lg->stop_opening)
		return true;
	return lg->cfg.sessions && lg->opened >= lg->cfg.sessions;
}

uint32_t loadgen_active(const struct loadgen *lg)
{
	return lg->active;
}

bool loadgen_owns(const struct loadgen *lg, const struct net_conn *c)
{
	const struct loadgen_session *se = net_conn_user(c);
	uintptr_t p = (uintptr_t)se, lo = (uintptr_t)lg->sess;
	return se && p >= lo && p < lo + (uintptr_t)lg->cfg.concurrency * sizeof(*se);
}

size_t loadgen_session_memory(const struct loadgen *lg)
{
	return sizeof(struct loadgen_session) + net_conn_size() + lg->client_memory;
}
