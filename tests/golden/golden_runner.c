/* Runs one golden SMTP transcript (a tests/golden/NAME.smtp file, format in README.md) against
 * the engine the way a transport drives it, in every feeding mode:
 *   whole    each client flight in one piece
 *   bytewise each flight one byte at a time
 *   split    for every offset k, each flight longer than k cut in two at k
 * A flight marked "send atomic" is always fed whole (what the engine may conclude from it
 * depends on it arriving in one piece, e.g. a pipelining violation). The replies and events
 * collected after each action must equal the transcript's in every mode, so the accepted
 * message bytes are identical however the input was cut.
 *
 *     golden_runner FILE            run every mode, exit 1 on the first difference
 *     golden_runner --record FILE   run whole and print FILE with the observed results
 *                                   (for writing transcripts; review before committing)
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_text.h"
#include "smtp/smtp_session.h"

#define MAX_LINES 20000
#define MAX_SCRIPT 64

/* ---- the transcript ---- */

enum action_kind { A_START, A_SEND, A_RELEASE, A_TIMEOUT, A_SHUTDOWN, A_PEER_CLOSED };

struct verdict_script {
	char type[16];
	int code; /* -1: defer */
	bool disconnect;
	bool xclient_authorized;
	char queue[64];
	char text[512];
};

struct action {
	enum action_kind kind;
	struct golden_buf flight; /* A_SEND */
	bool atomic;
	struct verdict_script release; /* A_RELEASE */
	struct golden_buf want_replies, want_events;
	int want_closed; /* -1 unchecked, 0/1 */
	int first_line, last_line; /* in the file, for --record */
	/* verdict directives that become active when this action starts */
	struct verdict_script scripts[MAX_SCRIPT];
	int nscripts;
};

struct transcript {
	const char *path;
	struct smtp_config cfg;
	char cfg_strings[8][256];
	struct smtp_client_info client;
	char client_addr[64], client_name[256];
	bool nogreet;
	int greet_reject_code;
	char greet_reject_text[512];
	struct action *actions;
	int nactions;
	char **lines;
	int nlines;
};

static void die(const struct transcript *t, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
static void die(const struct transcript *t, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: ", t->path, line + 1);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static bool parse_bool(const char *v)
{
	return strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0;
}

static void set_config(struct transcript *t, int line, char *kv)
{
	char *eq = strchr(kv, '=');
	if (!eq)
		die(t, line, "config wants name=value");
	*eq = '\0';
	const char *k = kv, *v = eq + 1;
	struct smtp_config *c = &t->cfg;
	static int nstr;
	if (strcmp(k, "myhostname") == 0 || strcmp(k, "banner") == 0 || strcmp(k, "mail_name") == 0) {
		char *dst = t->cfg_strings[nstr++ % 8];
		snprintf(dst, 256, "%s", v);
		if (k[0] == 'm' && k[1] == 'y')
			c->myhostname = dst;
		else if (k[0] == 'b')
			c->banner = dst;
		else
			c->mail_name = dst;
	} else if (strcmp(k, "line_length_limit") == 0)
		c->line_length_limit = strtoull(v, NULL, 10);
	else if (strcmp(k, "message_size_limit") == 0)
		c->message_size_limit = strtoull(v, NULL, 10);
	else if (strcmp(k, "header_size_limit") == 0)
		c->header_size_limit = strtoull(v, NULL, 10);
	else if (strcmp(k, "hopcount_limit") == 0)
		c->hopcount_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "recipient_limit") == 0)
		c->recipient_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "recipient_overshoot_limit") == 0)
		c->recipient_overshoot_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "soft_error_limit") == 0)
		c->soft_error_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "hard_error_limit") == 0)
		c->hard_error_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "junk_command_limit") == 0)
		c->junk_command_limit = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "error_sleep_ms") == 0)
		c->error_sleep_ms = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "bare_newline") == 0)
		c->bare_newline = strcmp(v, "reject") == 0 ? SMTP_BARE_NEWLINE_REJECT
							   : SMTP_BARE_NEWLINE_NORMALIZE;
	else if (strcmp(k, "forbid_unauth_pipelining") == 0)
		c->forbid_unauth_pipelining = parse_bool(v);
	else if (strcmp(k, "helo_required") == 0)
		c->helo_required = parse_bool(v);
	else if (strcmp(k, "disable_vrfy_command") == 0)
		c->disable_vrfy_command = parse_bool(v);
	else if (strcmp(k, "strict_rfc821_envelopes") == 0)
		c->strict_rfc821_envelopes = parse_bool(v);
	else if (strcmp(k, "enable_pipelining") == 0)
		c->enable_pipelining = parse_bool(v);
	else if (strcmp(k, "enable_chunking") == 0)
		c->enable_chunking = parse_bool(v);
	else if (strcmp(k, "enable_smtputf8") == 0)
		c->enable_smtputf8 = parse_bool(v);
	else if (strcmp(k, "enable_8bitmime") == 0)
		c->enable_8bitmime = parse_bool(v);
	else if (strcmp(k, "enable_dsn") == 0)
		c->enable_dsn = parse_bool(v);
	else
		die(t, line, "unknown config %s", k);
}

/* "CODE|defer [disconnect] [queue=ID] [text...]" */
static void parse_verdict_args(struct transcript *t, int line, char *p, struct verdict_script *v)
{
	char *tok = strtok(p, " ");
	if (!tok)
		die(t, line, "verdict wants a code");
	v->code = strcmp(tok, "defer") == 0 ? -1 : atoi(tok);
	char *rest = strtok(NULL, "");
	while (rest && *rest) {
		while (*rest == ' ')
			rest++;
		if (strncmp(rest, "disconnect", 10) == 0 && (rest[10] == ' ' || !rest[10])) {
			v->disconnect = true;
			rest += 10;
		} else if (strncmp(rest, "xclient-authorized", 18) == 0 &&
			   (rest[18] == ' ' || !rest[18])) {
			v->xclient_authorized = true;
			rest += 18;
		} else if (strncmp(rest, "queue=", 6) == 0) {
			size_t n = strcspn(rest + 6, " ");
			snprintf(v->queue, sizeof(v->queue), "%.*s", (int)n, rest + 6);
			rest += 6 + n;
		} else {
			size_t n = golden_unescape(rest, strlen(rest));
			rest[n] = '\0';
			snprintf(v->text, sizeof(v->text), "%s", rest);
			break;
		}
	}
}

static struct action *new_action(struct transcript *t, enum action_kind kind, int line)
{
	t->actions = realloc(t->actions, sizeof(*t->actions) * (size_t)(t->nactions + 1));
	struct action *a = &t->actions[t->nactions++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->want_closed = -1;
	a->first_line = a->last_line = line;
	return a;
}

static void load(struct transcript *t, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	memset(t, 0, sizeof(*t));
	t->path = path;
	smtp_config_defaults(&t->cfg);
	t->cfg.myhostname = "mx.example.net";
	t->cfg.banner = "mx.example.net ESMTP mxgate";
	t->cfg.error_sleep_ms = 1000;
	snprintf(t->client_addr, sizeof(t->client_addr), "192.0.2.1");
	t->client.addr = t->client_addr;
	t->client.port = 40000;
	t->lines = calloc(MAX_LINES, sizeof(char *));

	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct golden_buf flight = { 0 };
	struct verdict_script pending_scripts[MAX_SCRIPT];
	int npending = 0;
	struct action *cur = NULL; /* expectations attach here */

	while ((n = getline(&line, &cap, f)) >= 0) {
		int ln = t->nlines;
		if (t->nlines >= MAX_LINES)
			die(t, ln, "too many lines");
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		t->lines[t->nlines++] = strdup(line);
		if (n == 0 || line[0] == '#')
			continue;

		if (strncmp(line, "config ", 7) == 0) {
			if (cur)
				die(t, ln, "config after the session started");
			set_config(t, ln, line + 7);
			continue;
		}
		if (strncmp(line, "client ", 7) == 0) {
			if (cur)
				die(t, ln, "client after the session started");
			for (char *tok = strtok(line + 7, " "); tok; tok = strtok(NULL, " ")) {
				if (strncmp(tok, "addr=", 5) == 0)
					snprintf(t->client_addr, sizeof(t->client_addr), "%s", tok + 5);
				else if (strncmp(tok, "name=", 5) == 0) {
					snprintf(t->client_name, sizeof(t->client_name), "%s", tok + 5);
					t->client.name = t->client_name;
				} else if (strcmp(tok, "excluded") == 0)
					t->client.bare_newline_excluded = true;
				else if (strcmp(tok, "xclient") == 0)
					t->client.xclient_authorized = true;
				else
					die(t, ln, "bad client option %s", tok);
			}
			continue;
		}
		if (strcmp(line, "nogreet") == 0) {
			t->nogreet = true;
			continue;
		}
		if (strncmp(line, "greet-reject ", 13) == 0) {
			char *sp = strchr(line + 13, ' ');
			t->greet_reject_code = atoi(line + 13);
			snprintf(t->greet_reject_text, sizeof(t->greet_reject_text), "%s",
				 sp ? sp + 1 : "");
			continue;
		}
		if (!cur)
			cur = new_action(t, A_START, ln);

		if (strncmp(line, "verdict ", 8) == 0) {
			if (npending >= MAX_SCRIPT)
				die(t, ln, "too many verdicts");
			struct verdict_script *v = &pending_scripts[npending++];
			memset(v, 0, sizeof(*v));
			char *p = line + 8;
			size_t k = strcspn(p, " ");
			snprintf(v->type, sizeof(v->type), "%.*s", (int)k, p);
			if (!p[k])
				die(t, ln, "verdict wants TYPE CODE");
			parse_verdict_args(t, ln, p + k + 1, v);
			continue;
		}
		if (line[0] == '>') {
			bool raw = line[1] == '>';
			char *p = line + (raw ? 2 : 1);
			if (*p == ' ')
				p++;
			size_t m = golden_unescape(p, strlen(p));
			golden_buf_add(&flight, p, m);
			if (!raw)
				golden_buf_add(&flight, "\r\n", 2);
			continue;
		}
		if (line[0] == '<' || line[0] == '=') {
			char *p = line + 1;
			if (*p == ' ')
				p++;
			struct golden_buf *b = line[0] == '<' ? &cur->want_replies : &cur->want_events;
			golden_buf_add(b, p, strlen(p));
			golden_buf_add(b, "\n", 1);
			cur->last_line = ln;
			continue;
		}
		if (strcmp(line, "closed") == 0 || strcmp(line, "open") == 0) {
			cur->want_closed = line[0] == 'c';
			cur->last_line = ln;
			continue;
		}

		struct action *a;
		if (strcmp(line, "send") == 0 || strcmp(line, "send atomic") == 0) {
			a = new_action(t, A_SEND, ln);
			a->flight = flight;
			memset(&flight, 0, sizeof(flight));
			a->atomic = strcmp(line, "send atomic") == 0;
		} else if (strncmp(line, "release ", 8) == 0) {
			a = new_action(t, A_RELEASE, ln);
			parse_verdict_args(t, ln, line + 8, &a->release);
		} else if (strcmp(line, "timeout") == 0) {
			a = new_action(t, A_TIMEOUT, ln);
		} else if (strcmp(line, "shutdown") == 0) {
			a = new_action(t, A_SHUTDOWN, ln);
		} else if (strcmp(line, "peer-closed") == 0) {
			a = new_action(t, A_PEER_CLOSED, ln);
		} else {
			die(t, ln, "cannot parse: %s", line);
		}
		memcpy(a->scripts, pending_scripts, sizeof(pending_scripts[0]) * (size_t)npending);
		a->nscripts = npending;
		npending = 0;
		cur = a;
	}
	if (flight.len)
		die(t, t->nlines - 1, "client bytes after the last send");
	if (!cur)
		new_action(t, A_START, 0);
	free(line);
	fclose(f);
}

/* ---- running ---- */

struct runner {
	const struct transcript *t;
	struct smtp_session *s;
	struct golden_buf pend; /* bytes read and not yet consumed */
	size_t pend_off;
	struct golden_buf replies, events;
	struct golden_buf body; /* coalescing BODY events */
	bool in_body;
	struct golden_buf message; /* the current message, HEADER + BODY bytes */
	struct verdict_script fifo[MAX_SCRIPT * 4];
	int nfifo;
	bool deferred;
	unsigned messages;
	const char *mode;
	int failures;
};

static void flush_body(struct runner *r)
{
	if (!r->in_body)
		return;
	golden_buf_add(&r->events, "BODY \"", 6);
	golden_buf_escaped(&r->events, r->body.p, r->body.len);
	golden_buf_add(&r->events, "\"\n", 2);
	r->body.len = 0;
	r->in_body = false;
}

static void fail_invariant(struct runner *r, const char *what)
{
	fprintf(stderr, "%s [%s]: invariant broken: %s\n", r->t->path, r->mode, what);
	exit(1);
}

static void collect_output(struct runner *r)
{
	struct mx_span out = smtp_session_output(r->s);
	if (out.len == 0)
		return;
	/* every reply line: three digits, ' ' or '-', text, CRLF */
	size_t i = 0;
	while (i < out.len) {
		const char *nl = memchr(out.ptr + i, '\n', out.len - i);
		if (!nl)
			fail_invariant(r, "reply without CRLF");
		size_t n = (size_t)(nl - (out.ptr + i)) + 1;
		const char *l = out.ptr + i;
		if (n < 6 || l[n - 2] != '\r' || l[0] < '2' || l[0] > '5' || !isdigit((unsigned char)l[1]) ||
		    !isdigit((unsigned char)l[2]) || (l[3] != ' ' && l[3] != '-'))
			fail_invariant(r, "malformed reply line");
		for (size_t k = 0; k + 2 < n; k++)
			if ((unsigned char)l[k] < 32 && l[k] != '\t')
				fail_invariant(r, "control character in a reply");
		golden_buf_add(&r->replies, l, n - 2);
		golden_buf_add(&r->replies, "\n", 1);
		i += n;
	}
	/* drain in two steps, to exercise partial writes */
	size_t half = out.len / 2;
	smtp_session_output_done(r->s, half);
	smtp_session_output_done(r->s, out.len - half);
}

static void answer(struct runner *r, const struct verdict_script *v)
{
	struct smtp_verdict vd = {
		.code = (uint16_t)v->code,
		.text = v->text[0] ? v->text : NULL,
		.disconnect = v->disconnect,
		.xclient_authorized = v->xclient_authorized,
	};
	char qid[64];
	if (v->queue[0]) {
		vd.queue_id = v->queue;
	} else {
		snprintf(qid, sizeof(qid), "Q%u", r->messages);
		vd.queue_id = qid;
	}
	if (smtp_session_verdict(r->s, &vd) != 0)
		fail_invariant(r, "verdict refused");
	if (smtp_session_verdict(r->s, &vd) != -EINVAL)
		fail_invariant(r, "a second verdict was taken");
}

static void record_event(struct runner *r, const struct smtp_event *ev)
{
	struct golden_buf *e = &r->events;
	if (ev->type == SMTP_EV_BODY) {
		golden_buf_add(&r->body, ev->u.body.ptr, ev->u.body.len);
		golden_buf_add(&r->message, ev->u.body.ptr, ev->u.body.len);
		r->in_body = true;
		return;
	}
	flush_body(r);
	switch (ev->type) {
	case SMTP_EV_HELO:
		golden_buf_add(e, "HELO name=\"", 11);
		golden_buf_escaped(e, ev->u.helo.name.ptr, ev->u.helo.name.len);
		golden_buf_addf(e, "\" esmtp=%d\n", ev->u.helo.esmtp);
		break;
	case SMTP_EV_MAIL: {
		static const char *bodies[] = { "UNSPECIFIED", "7BIT", "8BITMIME", "BINARYMIME" };
		golden_buf_add(e, "MAIL from=\"", 11);
		golden_buf_escaped(e, ev->u.mail.addr.ptr, ev->u.mail.addr.len);
		golden_buf_add(e, "\" params=\"", 10);
		golden_buf_escaped(e, ev->u.mail.params.ptr, ev->u.mail.params.len);
		golden_buf_addf(e, "\" size=%" PRIu64 " body=%s utf8=%d\n", ev->u.mail.size,
			 bodies[ev->u.mail.body % 4], ev->u.mail.smtputf8);
		break;
	}
	case SMTP_EV_RCPT:
		golden_buf_add(e, "RCPT to=\"", 9);
		golden_buf_escaped(e, ev->u.rcpt.addr.ptr, ev->u.rcpt.addr.len);
		golden_buf_add(e, "\" params=\"", 10);
		golden_buf_escaped(e, ev->u.rcpt.params.ptr, ev->u.rcpt.params.len);
		golden_buf_add(e, "\"\n", 2);
		break;
	case SMTP_EV_DATA:
		golden_buf_addf(e, "DATA bdat=%d\n", ev->u.data.bdat);
		r->message.len = 0;
		break;
	case SMTP_EV_HEADER:
		golden_buf_add(e, "HEADER \"", 8);
		golden_buf_escaped(e, ev->u.header.text.ptr, ev->u.header.text.len);
		golden_buf_addf(e, "\"%s\n", ev->u.header.truncated ? " truncated" : "");
		golden_buf_add(&r->message, ev->u.header.text.ptr, ev->u.header.text.len);
		break;
	case SMTP_EV_MESSAGE_END:
		golden_buf_addf(e, "MESSAGE_END size=%" PRIu64 " rcpts=%u\n", ev->u.message.size,
			 ev->u.message.recipients);
		if (ev->u.message.size != r->message.len)
			fail_invariant(r, "MESSAGE_END size is not the bytes handed out");
		r->messages++;
		break;
	case SMTP_EV_PROTOCOL_ERROR:
		golden_buf_addf(e, "PROTOCOL_ERROR kind=%s code=%u closing=%d delay=%u\n",
			 smtp_error_kind_name(ev->u.error.kind), ev->u.error.code,
			 ev->u.error.closing, ev->u.error.delay_ms);
		break;
	case SMTP_EV_XCLIENT:
		golden_buf_add(e, "XCLIENT", 7);
		for (unsigned i = 0; i < SMTP_XCLIENT_ATTR_MAX; i++) {
			const struct smtp_xclient_value *a = &ev->u.xclient->attr[i];
			if (!a->present)
				continue;
			golden_buf_addf(e, " %s=", smtp_xclient_attr_name((enum smtp_xclient_attr)i));
			if (a->tempunavail) {
				golden_buf_add(e, "TEMPUNAVAIL", 11);
			} else if (a->unavailable) {
				golden_buf_add(e, "UNAVAILABLE", 11);
			} else {
				golden_buf_add(e, "\"", 1);
				golden_buf_escaped(e, a->value.ptr, a->value.len);
				golden_buf_add(e, "\"", 1);
			}
		}
		golden_buf_add(e, "\n", 1);
		break;
	default:
		golden_buf_addf(e, "%s\n", smtp_event_name(ev->type));
		break;
	}
	if (ev->unauth_pipelining) {
		/* the flag goes on the line just written: " unauth_pipelining" before its
		 * newline */
		e->len--;
		golden_buf_add(e, " unauth_pipelining\n", 19);
	}
}

static struct verdict_script *take_script(struct runner *r, const char *type)
{
	for (int i = 0; i < r->nfifo; i++) {
		if (strcmp(r->fifo[i].type, type) == 0) {
			static struct verdict_script v;
			v = r->fifo[i];
			memmove(&r->fifo[i], &r->fifo[i + 1], sizeof(r->fifo[0]) * (size_t)(r->nfifo - i - 1));
			r->nfifo--;
			return &v;
		}
	}
	return NULL;
}

/* The transport's loop: step until the input is used up or the engine waits. */
static void drive(struct runner *r)
{
	for (int guard = 0; guard < 10000000; guard++) {
		size_t used = 0;
		size_t len = r->pend.len - r->pend_off;
		/* Each call gets its own copy of the input, freed once the event is handled:
		 * a span that outlives its call is a use-after-free ASan reports. */
		char *p = malloc(len ? len : 1);
		if (len)
			memcpy(p, r->pend.p + r->pend_off, len);
		struct smtp_event ev = smtp_session_step(r->s, p, len, &used);
		if (used > len)
			fail_invariant(r, "used > len");
		if (ev.type == SMTP_EV_NONE && used != len)
			fail_invariant(r, "NONE without consuming everything");
		if (ev.type != SMTP_EV_NONE && ev.type != SMTP_EV_BLOCKED)
			record_event(r, &ev);
		free(p);
		r->pend_off += used;
		if (ev.needs_verdict) {
			if (!smtp_session_verdict_pending(r->s))
				fail_invariant(r, "no verdict pending after an event that needs one");
			struct verdict_script *v = take_script(r, smtp_event_name(ev.type));
			if (v && v->code < 0) {
				r->deferred = true;
			} else {
				struct verdict_script dflt = { .code = 0 };
				answer(r, v ? v : &dflt);
			}
		}
		if (ev.type == SMTP_EV_NONE)
			break;
		if (ev.type == SMTP_EV_BLOCKED) {
			if (smtp_session_verdict_pending(r->s)) {
				if (!r->deferred)
					fail_invariant(r, "blocked on a verdict nobody deferred");
				break;
			}
			if (smtp_session_output(r->s).len == 0)
				fail_invariant(r, "blocked with no verdict pending and no output");
			collect_output(r);
		}
	}
	if (r->pend_off == r->pend.len)
		r->pend.len = r->pend_off = 0;
}

static void feed(struct runner *r, const char *p, size_t n)
{
	golden_buf_add(&r->pend, p, n);
	drive(r);
}

static bool compare(struct runner *r, const struct action *a, const char *what,
		    const struct golden_buf *want, const struct golden_buf *got)
{
	const char *w = want->p ? want->p : "", *g = got->p ? got->p : "";
	if (strcmp(w, g) == 0)
		return true;
	fprintf(stderr, "%s:%d [%s]: %s differ\n--- expected\n%s--- got\n%s---\n", r->t->path,
		a->last_line + 1, r->mode, what, w, g);
	r->failures++;
	return false;
}

/* Run the whole transcript; split_at: 0 whole, SIZE_MAX bytewise, else the offset. */
static int run_mode(const struct transcript *t, size_t split_at, const char *mode,
		    struct golden_buf *record_replies, struct golden_buf *record_events, int *record_closed)
{
	struct runner r = { .t = t, .mode = mode };
	r.s = smtp_session_new(&t->cfg, &t->client);
	if (!r.s) {
		fprintf(stderr, "smtp_session_new failed\n");
		exit(2);
	}

	for (int ai = 0; ai < t->nactions; ai++) {
		const struct action *a = &t->actions[ai];
		for (int k = 0; k < a->nscripts; k++)
			r.fifo[r.nfifo++] = a->scripts[k];
		r.replies.len = 0;
		r.events.len = 0;
		if (r.replies.p)
			r.replies.p[0] = '\0';
		if (r.events.p)
			r.events.p[0] = '\0';

		switch (a->kind) {
		case A_START:
			if (t->greet_reject_code)
				smtp_session_greet_reject(r.s, (uint16_t)t->greet_reject_code,
							  t->greet_reject_text);
			else if (!t->nogreet)
				smtp_session_greet(r.s);
			drive(&r);
			break;
		case A_SEND: {
			const char *p = a->flight.p;
			size_t n = a->flight.len;
			if (a->atomic || split_at == 0 || (split_at != SIZE_MAX && split_at >= n)) {
				feed(&r, p, n);
			} else if (split_at == SIZE_MAX) {
				for (size_t i = 0; i < n; i++)
					feed(&r, p + i, 1);
			} else {
				feed(&r, p, split_at);
				feed(&r, p + split_at, n - split_at);
			}
			break;
		}
		case A_RELEASE:
			if (!r.deferred || !smtp_session_verdict_pending(r.s)) {
				fprintf(stderr, "%s:%d [%s]: release without a deferred verdict\n",
					t->path, a->first_line + 1, mode);
				return 1;
			}
			r.deferred = false;
			answer(&r, &a->release);
			drive(&r);
			break;
		case A_TIMEOUT:
			smtp_session_timeout(r.s);
			drive(&r);
			break;
		case A_SHUTDOWN:
			smtp_session_shutdown(r.s);
			drive(&r);
			break;
		case A_PEER_CLOSED:
			smtp_session_peer_closed(r.s);
			drive(&r);
			break;
		}
		flush_body(&r);
		collect_output(&r);
		if (record_replies) {
			golden_buf_add(&record_replies[ai], r.replies.p ? r.replies.p : "", r.replies.len);
			golden_buf_add(&record_events[ai], r.events.p ? r.events.p : "", r.events.len);
			record_closed[ai] = smtp_session_closed(r.s);
			continue;
		}
		if (!compare(&r, a, "replies", &a->want_replies, &r.replies) ||
		    !compare(&r, a, "events", &a->want_events, &r.events))
			break;
		if (a->want_closed >= 0 && a->want_closed != (int)smtp_session_closed(r.s)) {
			fprintf(stderr, "%s:%d [%s]: session %s, expected %s\n", t->path,
				a->last_line + 1, mode, smtp_session_closed(r.s) ? "closed" : "open",
				a->want_closed ? "closed" : "open");
			r.failures++;
			break;
		}
	}
	if (smtp_session_memory(r.s) < 100)
		fail_invariant(&r, "implausible memory report");
	smtp_session_free(r.s);
	free(r.pend.p);
	free(r.replies.p);
	free(r.events.p);
	free(r.body.p);
	free(r.message.p);
	return r.failures ? 1 : 0;
}

static void print_record(const struct transcript *t, struct golden_buf *replies, struct golden_buf *events,
			 int *closed)
{
	int ai = 0;
	for (int ln = 0; ln < t->nlines; ln++) {
		const char *l = t->lines[ln];
		if (l[0] == '<' || l[0] == '=' || strcmp(l, "closed") == 0 || strcmp(l, "open") == 0)
			continue;
		/* the action that starts on this line, if any */
		int found = -1;
		for (int k = ai; k < t->nactions; k++)
			if (t->actions[k].first_line == ln && t->actions[k].kind != A_START) {
				found = k;
				break;
			}
		bool starts_session = ai == 0 && t->actions[0].kind == A_START &&
				      t->actions[0].first_line == ln;
		if (starts_session) {
			/* expectations of the greeting go before the first real line */
			for (char *p = replies[0].p; p && *p;) {
				char *nl = strchr(p, '\n');
				printf("< %.*s\n", (int)(nl - p), p);
				p = nl + 1;
			}
			for (char *p = events[0].p; p && *p;) {
				char *nl = strchr(p, '\n');
				printf("= %.*s\n", (int)(nl - p), p);
				p = nl + 1;
			}
			if (closed[0])
				printf("closed\n");
			ai = 1;
		}
		printf("%s\n", l);
		if (found >= 0) {
			for (char *p = replies[found].p; p && *p;) {
				char *nl = strchr(p, '\n');
				printf("< %.*s\n", (int)(nl - p), p);
				p = nl + 1;
			}
			for (char *p = events[found].p; p && *p;) {
				char *nl = strchr(p, '\n');
				printf("= %.*s\n", (int)(nl - p), p);
				p = nl + 1;
			}
			if (closed[found])
				printf("closed\n");
			ai = found + 1;
		}
	}
}

static void free_transcript(struct transcript *t)
{
	for (int i = 0; i < t->nactions; i++) {
		free(t->actions[i].flight.p);
		free(t->actions[i].want_replies.p);
		free(t->actions[i].want_events.p);
	}
	free(t->actions);
	for (int i = 0; i < t->nlines; i++)
		free(t->lines[i]);
	free(t->lines);
}

int main(int argc, char **argv)
{
	bool record = argc == 3 && strcmp(argv[1], "--record") == 0;
	if (argc != 2 && !record) {
		fprintf(stderr, "usage: golden_runner [--record] FILE\n");
		return 2;
	}
	struct transcript t;
	load(&t, argv[argc - 1]);

	if (record) {
		struct golden_buf *rep = calloc((size_t)t.nactions, sizeof(*rep));
		struct golden_buf *evs = calloc((size_t)t.nactions, sizeof(*evs));
		int *closed = calloc((size_t)t.nactions, sizeof(int));
		run_mode(&t, 0, "whole", rep, evs, closed);
		print_record(&t, rep, evs, closed);
		for (int i = 0; i < t.nactions; i++) {
			free(rep[i].p);
			free(evs[i].p);
		}
		free(rep);
		free(evs);
		free(closed);
		free_transcript(&t);
		return 0;
	}

	size_t longest = 0;
	for (int i = 0; i < t.nactions; i++)
		if (t.actions[i].kind == A_SEND && !t.actions[i].atomic &&
		    t.actions[i].flight.len > longest)
			longest = t.actions[i].flight.len;

	int rc = run_mode(&t, 0, "whole", NULL, NULL, NULL);
	if (rc == 0)
		rc = run_mode(&t, SIZE_MAX, "bytewise", NULL, NULL, NULL);
	for (size_t k = 1; rc == 0 && k < longest; k++) {
		char mode[48];
		snprintf(mode, sizeof(mode), "split at %zu", k);
		rc = run_mode(&t, k, mode, NULL, NULL, NULL);
	}
	if (rc == 0)
		printf("ok %s: %d actions, whole, bytewise and %zu split offsets\n", t.path,
		       t.nactions, longest > 1 ? longest - 1 : 0);
	free_transcript(&t);
	return rc;
}
