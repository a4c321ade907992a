/* Runs one golden SMTP client transcript (a tests/golden_client/NAME.smtpc file, format in
 * README.md here) against the client codec the way a transport drives it, in every feeding
 * mode:
 *   whole    each server flight, and each piece of message content, in one call
 *   bytewise one byte per call
 *   split    for every offset k, each flight and each content longer than k cut in two at k
 * The client's output and events after each action must equal the transcript's in every
 * mode. The runner also checks invariants in every mode: NONE means all input was used;
 * the output never holds a bare CR or LF (until BDAT octets went out, which are sent as
 * they are); without pipelining at most one command is out;
 * event texts are printable and bounded; every queued command gets its events.
 *
 *     golden_client_runner FILE            run every mode, exit 1 on the first difference
 *     golden_client_runner --record FILE   run whole and print FILE with the observed output
 *                                          and events (review before committing)
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
#include "smtp/smtp_client.h"

/* ---- the transcript ---- */

enum action_kind {
	A_START, /* smtp_client_new(); what is expected before the first action */
	A_RECV,
	A_CONTENT,
	A_CALL,  /* a command function: ehlo, mail, rcpt... */
	A_PEER_CLOSED,
};

struct action {
	enum action_kind kind;
	char call[8192];       /* A_CALL: the line without "=> RC" */
	bool want_rc_given;
	long want_rc;
	struct golden_buf bytes;      /* A_RECV: the flight; A_CONTENT: the content */
	struct golden_buf want_out, want_events;
	struct golden_buf checks;     /* "state X\nidle yes\n..." */
	int line;              /* the action's line in the file (START: the last config
	                          line, or -1) */
};

struct transcript {
	const char *path;
	struct smtp_client_config cfg;
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
	struct smtp_client_config *c = &t->cfg;
	if (strcmp(k, "lmtp") == 0)
		c->lmtp = parse_bool(v);
	else if (strcmp(k, "pipelining") == 0)
		c->pipelining = parse_bool(v);
	else if (strcmp(k, "send_after_refusal") == 0)
		c->send_after_refusal = parse_bool(v);
	else if (strcmp(k, "output_max") == 0)
		c->output_max = strtoull(v, NULL, 10);
	else if (strcmp(k, "line_max") == 0)
		c->line_max = strtoull(v, NULL, 10);
	else if (strcmp(k, "line_hard_max") == 0)
		c->line_hard_max = strtoull(v, NULL, 10);
	else if (strcmp(k, "text_max") == 0)
		c->text_max = strtoull(v, NULL, 10);
	else if (strcmp(k, "reply_lines_max") == 0)
		c->reply_lines_max = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "queue_max") == 0)
		c->queue_max = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "inflight_max") == 0)
		c->inflight_max = (unsigned)strtoul(v, NULL, 10);
	else if (strcmp(k, "rcpt_max") == 0)
		c->rcpt_max = (unsigned)strtoul(v, NULL, 10);
	else
		die(t, line, "unknown config %s", k);
}

static bool is_check(const char *l)
{
	return strncmp(l, "state ", 6) == 0 || strncmp(l, "idle ", 5) == 0 ||
	       strncmp(l, "inflight ", 9) == 0 || strncmp(l, "pending ", 8) == 0;
}

static struct action *new_action(struct transcript *t, enum action_kind kind, int line)
{
	t->actions = realloc(t->actions, sizeof(*t->actions) * (size_t)(t->nactions + 1));
	if (!t->actions)
		exit(2);
	struct action *a = &t->actions[t->nactions++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->line = line;
	return a;
}

static long parse_rc(const struct transcript *t, int line, const char *s)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {
		{ "-EPIPE", -EPIPE }, { "-EBUSY", -EBUSY }, { "-ENOBUFS", -ENOBUFS },
		{ "-EAGAIN", -EAGAIN }, { "-EINVAL", -EINVAL }, { "-E2BIG", -E2BIG },
		{ "-EOPNOTSUPP", -EOPNOTSUPP }, { "-EMSGSIZE", -EMSGSIZE },
		{ "-ECANCELED", -ECANCELED },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].value;
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0')
		die(t, line, "bad return value '%s'", s);
	return v;
}

static void add_expected_line(struct golden_buf *b, char *text, bool crlf)
{
	size_t n = golden_unescape(text, strlen(text));
	golden_buf_add(b, text, n);
	if (crlf)
		golden_buf_add(b, "\r\n", 2);
}

static void load(struct transcript *t, const char *path)
{
	memset(t, 0, sizeof(*t));
	t->path = path;
	smtp_client_config_defaults(&t->cfg);
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	char raw[8192];
	while (fgets(raw, sizeof(raw), f)) {
		size_t n = strlen(raw);
		while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
			raw[--n] = '\0';
		t->lines = realloc(t->lines, sizeof(char *) * (size_t)(t->nlines + 1));
		t->lines[t->nlines++] = strdup(raw);
	}
	fclose(f);

	struct action *cur = new_action(t, A_START, -1);
	struct golden_buf flight = { 0 };
	for (int ln = 0; ln < t->nlines; ln++) {
		char line[8192];
		snprintf(line, sizeof(line), "%s", t->lines[ln]);
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (strncmp(line, "config ", 7) == 0) {
			if (t->nactions > 1)
				die(t, ln, "config after the first action");
			set_config(t, ln, line + 7);
			t->actions[0].line = ln;
			continue;
		}
		if (strncmp(line, "<< ", 3) == 0 || strcmp(line, "<<") == 0) {
			char *s = line + (line[2] ? 3 : 2);
			golden_buf_add(&flight, s, golden_unescape(s, strlen(s)));
			continue;
		}
		if (strncmp(line, "< ", 2) == 0 || strcmp(line, "<") == 0) {
			char *s = line + (line[1] ? 2 : 1);
			golden_buf_add(&flight, s, golden_unescape(s, strlen(s)));
			golden_buf_add(&flight, "\r\n", 2);
			continue;
		}
		if (strncmp(line, ">> ", 3) == 0 || strcmp(line, ">>") == 0) {
			add_expected_line(&cur->want_out, line + (line[2] ? 3 : 2), false);
			continue;
		}
		if (strncmp(line, "> ", 2) == 0 || strcmp(line, ">") == 0) {
			add_expected_line(&cur->want_out, line + (line[1] ? 2 : 1), true);
			continue;
		}
		if (strncmp(line, "= ", 2) == 0) {
			golden_buf_addf(&cur->want_events, "%s\n", line + 2);
			continue;
		}
		if (is_check(line)) {
			golden_buf_addf(&cur->checks, "%s\n", line);
			continue;
		}
		/* an action */
		if (strcmp(line, "recv") == 0) {
			cur = new_action(t, A_RECV, ln);
			cur->bytes = flight;
			memset(&flight, 0, sizeof(flight));
		} else if (flight.len) {
			die(t, ln, "server lines not followed by recv");
		} else if (strncmp(line, "content ", 8) == 0 || strcmp(line, "content") == 0) {
			cur = new_action(t, A_CONTENT, ln);
			char *s = line + (line[7] ? 8 : 7);
			golden_buf_add(&cur->bytes, s, golden_unescape(s, strlen(s)));
		} else if (strcmp(line, "peer-closed") == 0) {
			cur = new_action(t, A_PEER_CLOSED, ln);
		} else {
			cur = new_action(t, A_CALL, ln);
			char *arrow = strstr(line, " => ");
			if (arrow) {
				*arrow = '\0';
				cur->want_rc_given = true;
				cur->want_rc = parse_rc(t, ln, arrow + 4);
			}
			snprintf(cur->call, sizeof(cur->call), "%s", line);
		}
	}
	if (flight.len)
		die(t, t->nlines - 1, "server lines at the end without recv");
	free(flight.p);
}

/* ---- running it ---- */

struct runner {
	const struct transcript *t;
	const char *mode;
	struct smtp_client *c;
	struct golden_buf out, events;
	int failures;
	bool raw_out; /* BDAT octets went out: they are sent as they are, CRLF or not */
};

static void fail_invariant(struct runner *r, int line, const char *what)
{
	fprintf(stderr, "%s:%d [%s]: invariant broken: %s\n", r->t->path, line + 1, r->mode, what);
	r->failures++;
}

static void collect_output(struct runner *r, int line)
{
	struct mx_span o = smtp_client_output(r->c);
	/* the stream is CRLF lines: no CR without LF, no LF without CR (a line may be cut
	 * between two calls, so look at what came before too) */
	for (size_t i = 0; i < o.len && !r->raw_out; i++) {
		char ch = o.ptr[i];
		char prev = i ? o.ptr[i - 1] : r->out.len ? r->out.p[r->out.len - 1] : 0;
		if (ch == '\n' && prev != '\r')
			fail_invariant(r, line, "a bare LF in the output");
		if (prev == '\r' && ch != '\n')
			fail_invariant(r, line, "a bare CR in the output");
	}
	golden_buf_add(&r->out, o.ptr, o.len);
	smtp_client_output_done(r->c, o.len);
}

static void format_caps(struct golden_buf *e, const struct smtp_client_caps *c)
{
	golden_buf_add(e, " caps=", 6);
	size_t start = e->len;
	if (c->pipelining)
		golden_buf_add(e, "PIPELINING,", 11);
	if (c->size)
		golden_buf_addf(e, "SIZE=%" PRIu64 ",", c->size_limit);
	if (c->eightbitmime)
		golden_buf_add(e, "8BITMIME,", 9);
	if (c->binarymime)
		golden_buf_add(e, "BINARYMIME,", 11);
	if (c->smtputf8)
		golden_buf_add(e, "SMTPUTF8,", 9);
	if (c->dsn)
		golden_buf_add(e, "DSN,", 4);
	if (c->chunking)
		golden_buf_add(e, "CHUNKING,", 9);
	if (c->enhancedstatuscodes)
		golden_buf_add(e, "ENHANCEDSTATUSCODES,", 20);
	if (c->starttls)
		golden_buf_add(e, "STARTTLS,", 9);
	if (c->auth) {
		golden_buf_add(e, "AUTH", 4);
		for (unsigned m = 0; m < SMTP_CLIENT_AUTH_MECH_MAX; m++)
			if (c->auth_mechs & (1u << m))
				golden_buf_addf(e, ":%s", smtp_client_auth_mech_name((enum smtp_client_auth_mech)m));
		golden_buf_add(e, ",", 1);
	}
	if (c->xclient) {
		golden_buf_add(e, "XCLIENT", 7);
		for (unsigned a = 0; a < SMTP_XCLIENT_ATTR_MAX; a++)
			if (c->xclient_attrs & (1u << a))
				golden_buf_addf(e, ":%s", smtp_xclient_attr_name((enum smtp_xclient_attr)a));
		golden_buf_add(e, ",", 1);
	}
	if (e->len > start)
		e->p[--e->len] = '\0'; /* the last comma */
	else
		golden_buf_add(e, "none", 4);
}

static void record_event(struct runner *r, int line, const struct smtp_client_event *ev)
{
	struct golden_buf *e = &r->events;
	golden_buf_addf(e, "%s %s", smtp_client_event_name(ev->type), smtp_client_cmd_name(ev->cmd));
	if (ev->rcpt >= 0)
		golden_buf_addf(e, " rcpt=%d", ev->rcpt);
	if (ev->type == SMTP_CLIENT_EV_DATA || ev->type == SMTP_CLIENT_EV_BDAT ||
	    ev->type == SMTP_CLIENT_EV_MESSAGE)
		golden_buf_addf(e, " accepted=%u", ev->rcpt_accepted);
	if (ev->error)
		golden_buf_addf(e, " error=%s", smtp_client_error_name(ev->error));
	if (ev->noreply) {
		golden_buf_addf(e, " noreply=%s", smtp_client_noreply_name(ev->noreply));
		if (ev->code || ev->text.len || ev->enhanced[0])
			fail_invariant(r, line, "a noreply event with a reply");
	} else {
		golden_buf_addf(e, " code=%u", ev->code);
		if (ev->enhanced[0])
			golden_buf_addf(e, " enh=%s", ev->enhanced);
		if (ev->lines > 1)
			golden_buf_addf(e, " lines=%u", ev->lines);
		if (ev->truncated)
			golden_buf_add(e, " truncated", 10);
		golden_buf_add(e, " \"", 2);
		golden_buf_escaped(e, ev->text.ptr, ev->text.len);
		golden_buf_add(e, "\"", 1);
	}
	if (ev->type == SMTP_CLIENT_EV_HELO && !ev->noreply && ev->code / 100 == 2 &&
	    ev->cmd != SMTP_CLIENT_CMD_HELO)
		format_caps(e, smtp_client_caps(r->c));
	golden_buf_add(e, "\n", 1);

	/* the text is for logs: printable, bounded */
	if (ev->text.len > r->t->cfg.text_max)
		fail_invariant(r, line, "event text over text_max");
	for (size_t i = 0; i < ev->text.len; i++)
		if ((unsigned char)ev->text.ptr[i] < 0x20 || ev->text.ptr[i] == 0x7f)
			fail_invariant(r, line, "a control character in an event text");
}

static void check_lockstep(struct runner *r, int line)
{
	if (!smtp_client_pipelining(r->c) && smtp_client_inflight(r->c) > 1)
		fail_invariant(r, line, "more than one command out without pipelining");
	if (smtp_client_inflight(r->c) > smtp_client_pending(r->c))
		fail_invariant(r, line, "more commands out than owed events");
}

/* One step() over buf[0..len); returns false once it says NONE. */
static bool step_once(struct runner *r, int line, const char *buf, size_t len, size_t *used)
{
	*used = 0;
	struct smtp_client_event ev = smtp_client_step(r->c, buf, len, used);
	if (*used > len)
		fail_invariant(r, line, "used > len");
	if (ev.type == SMTP_CLIENT_EV_NONE && *used != len)
		fail_invariant(r, line, "NONE without using all input");
	if (ev.type != SMTP_CLIENT_EV_NONE)
		record_event(r, line, &ev);
	check_lockstep(r, line);
	return ev.type != SMTP_CLIENT_EV_NONE;
}

/* The transport's loop: step until the piece is used up. Each call gets a private copy
 * of what is left, freed after its event: a span that outlives its call is a
 * use-after-free ASan reports. */
static void feed(struct runner *r, int line, const char *p, size_t n)
{
	size_t off = 0;
	for (int guard = 0; guard < 1000000; guard++) {
		size_t len = n - off, used;
		char *copy = malloc(len + 1);
		if (!copy)
			exit(2);
		memcpy(copy, p + off, len);
		bool more = step_once(r, line, copy, len, &used);
		free(copy);
		off += used < len ? used : len;
		if (!more)
			return;
	}
	fail_invariant(r, line, "step() does not make progress");
}

/* Hand out events owed without input (skipped commands, a closed session). */
static void drain_events(struct runner *r, int line)
{
	static const char none[1];
	size_t used;
	for (int guard = 0; guard < 1000000; guard++)
		if (!step_once(r, line, none, 0, &used))
			return;
	fail_invariant(r, line, "step() does not make progress");
}

static void content(struct runner *r, int line, const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);
	if (n)
		memcpy(copy, p, n);
	size_t off = 0;
	for (int guard = 0; off < n; guard++) {
		ssize_t k = smtp_client_content(r->c, copy + off, n - off);
		if (k < 0) {
			fprintf(stderr, "%s:%d [%s]: content: %s\n", r->t->path, line + 1, r->mode,
				strerror((int)-k));
			r->failures++;
			break;
		}
		off += (size_t)k;
		if (off < n) {
			/* the output is full: the transport sends, then writes the rest */
			if (k == 0 && smtp_client_output(r->c).len == 0 && guard > 0) {
				fail_invariant(r, line, "content makes no progress");
				break;
			}
			collect_output(r, line);
		}
	}
	free(copy);
}

static bool word_arg(char **s, char *out, size_t cap)
{
	while (**s == ' ')
		(*s)++;
	if (!**s)
		return false;
	size_t n = strcspn(*s, " ");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, *s, n);
	out[golden_unescape(out, n)] = '\0';
	*s += strcspn(*s, " ");
	return true;
}

/* "<addr>" -> addr */
static const char *path_arg(const struct transcript *t, int line, char *w)
{
	size_t n = strlen(w);
	if (n < 2 || w[0] != '<' || w[n - 1] != '>')
		die(t, line, "a path is written <addr>: %s", w);
	w[n - 1] = '\0';
	return w + 1;
}

/* key=value options after the path; returns false on an unknown key */
static const char *opt_value(char *w, const char *key)
{
	size_t k = strlen(key);
	if (strncmp(w, key, k) == 0 && w[k] == '=')
		return w + k + 1;
	return NULL;
}

static long call(struct runner *r, const struct action *a)
{
	const struct transcript *t = r->t;
	char line[8192], verb[64], w[32][2048];
	snprintf(line, sizeof(line), "%s", a->call);
	char *s = line;
	word_arg(&s, verb, sizeof(verb));
	int nw = 0;
	while (nw < 32 && word_arg(&s, w[nw], sizeof(w[nw])))
		nw++;
	if (strcmp(verb, "ehlo") == 0 || strcmp(verb, "helo") == 0) {
		const char *name = nw ? w[0] : "";
		return verb[0] == 'e' ? smtp_client_ehlo(r->c, name) : smtp_client_helo(r->c, name);
	}
	if (strcmp(verb, "mail") == 0) {
		if (nw < 1)
			die(t, a->line, "mail <sender> [options]");
		struct smtp_client_mail m = { .sender = path_arg(t, a->line, w[0]) };
		for (int i = 1; i < nw; i++) {
			const char *v;
			if ((v = opt_value(w[i], "size")))
				m.size = strtoull(v, NULL, 10);
			else if ((v = opt_value(w[i], "body")))
				m.body = strcmp(v, "7BIT") == 0	      ? SMTP_BODY_7BIT
					 : strcmp(v, "8BITMIME") == 0 ? SMTP_BODY_8BITMIME
								      : SMTP_BODY_BINARYMIME;
			else if (strcmp(w[i], "smtputf8") == 0)
				m.smtputf8 = true;
			else if ((v = opt_value(w[i], "ret")))
				m.ret = v;
			else if ((v = opt_value(w[i], "envid")))
				m.envid = v;
			else if ((v = opt_value(w[i], "extra")))
				m.extra = v;
			else
				die(t, a->line, "unknown mail option %s", w[i]);
		}
		return smtp_client_mail(r->c, &m);
	}
	if (strcmp(verb, "rcpt") == 0) {
		if (nw < 1)
			die(t, a->line, "rcpt <addr> [options]");
		struct smtp_client_rcpt rc = { .addr = path_arg(t, a->line, w[0]) };
		for (int i = 1; i < nw; i++) {
			const char *v;
			if ((v = opt_value(w[i], "notify")))
				rc.notify = v;
			else if ((v = opt_value(w[i], "orcpt")))
				rc.orcpt = v;
			else if ((v = opt_value(w[i], "extra")))
				rc.extra = v;
			else
				die(t, a->line, "unknown rcpt option %s", w[i]);
		}
		return smtp_client_rcpt(r->c, &rc);
	}
	if (strcmp(verb, "bdat") == 0) {
		if (nw < 1)
			die(t, a->line, "bdat SIZE [last]");
		r->raw_out = true;
		return smtp_client_bdat(r->c, strtoull(w[0], NULL, 10),
					nw > 1 && strcmp(w[1], "last") == 0);
	}
	if (nw)
		die(t, a->line, "%s takes no argument", verb);
	if (strcmp(verb, "data") == 0)
		return smtp_client_data(r->c);
	if (strcmp(verb, "end") == 0)
		return smtp_client_content_end(r->c);
	if (strcmp(verb, "rset") == 0)
		return smtp_client_rset(r->c);
	if (strcmp(verb, "noop") == 0)
		return smtp_client_noop(r->c);
	if (strcmp(verb, "quit") == 0)
		return smtp_client_quit(r->c);
	die(t, a->line, "unknown action %s", verb);
}

static bool compare(struct runner *r, const struct action *a, const char *what,
		    const struct golden_buf *want, const struct golden_buf *got)
{
	if (want->len == got->len && (want->len == 0 || memcmp(want->p, got->p, want->len) == 0))
		return true;
	struct golden_buf w = { 0 }, g = { 0 };
	golden_buf_escaped(&w, want->p ? want->p : "", want->len);
	golden_buf_escaped(&g, got->p ? got->p : "", got->len);
	fprintf(stderr, "%s:%d [%s]: %s differ\n--- expected\n%s\n--- got\n%s\n---\n", r->t->path,
		a->line + 1, r->mode, what, w.p ? w.p : "", g.p ? g.p : "");
	free(w.p);
	free(g.p);
	r->failures++;
	return false;
}

static void observed_checks(struct runner *r, struct golden_buf *out)
{
	golden_buf_addf(out, "state %s\n", smtp_client_state_name(smtp_client_state(r->c)));
	golden_buf_addf(out, "idle %s\n", smtp_client_idle(r->c) ? "yes" : "no");
	golden_buf_addf(out, "inflight %u\n", smtp_client_inflight(r->c));
	golden_buf_addf(out, "pending %u\n", smtp_client_pending(r->c));
}

/* Each check line of the action against what the client says now. */
static bool run_checks(struct runner *r, const struct action *a)
{
	if (!a->checks.len)
		return true;
	struct golden_buf now = { 0 };
	observed_checks(r, &now);
	bool ok = true;
	for (char *p = a->checks.p; *p;) {
		char *nl = strchr(p, '\n');
		size_t n = (size_t)(nl - p);
		/* the same key's line in `now` */
		size_t key = strcspn(p, " ");
		bool found = false;
		for (char *q = now.p; *q;) {
			char *qn = strchr(q, '\n');
			if (strncmp(q, p, key + 1) == 0) {
				found = (size_t)(qn - q) == n && strncmp(q, p, n) == 0;
				if (!found)
					fprintf(stderr, "%s:%d [%s]: expected '%.*s', got '%.*s'\n",
						r->t->path, a->line + 1, r->mode, (int)n, p,
						(int)(qn - q), q);
				break;
			}
			q = qn + 1;
		}
		if (!found)
			ok = false;
		p = nl + 1;
	}
	free(now.p);
	if (!ok)
		r->failures++;
	return ok;
}

/* The observed values of the checks the action asks for. */
static void record_checks(struct runner *r, const struct action *a, struct golden_buf *out)
{
	struct golden_buf now = { 0 };
	observed_checks(r, &now);
	for (char *p = a->checks.p; p && *p;) {
		char *nl = strchr(p, '\n');
		size_t key = strcspn(p, " ");
		for (char *q = now.p; *q;) {
			char *qn = strchr(q, '\n');
			if (strncmp(q, p, key + 1) == 0)
				golden_buf_add(out, q, (size_t)(qn - q) + 1);
			q = qn + 1;
		}
		p = nl + 1;
	}
	free(now.p);
}

/* Run the whole transcript; split_at: 0 whole, SIZE_MAX bytewise, else the offset. */
static int run_mode(const struct transcript *t, size_t split_at, const char *mode,
		    struct golden_buf *rec_out, struct golden_buf *rec_events, struct golden_buf *rec_checks)
{
	struct runner r = { .t = t, .mode = mode };
	int rc = smtp_client_new(&r.c, &t->cfg);
	if (rc < 0) {
		fprintf(stderr, "%s: smtp_client_new: %s\n", t->path, strerror(-rc));
		exit(2);
	}
	for (int ai = 0; ai < t->nactions; ai++) {
		const struct action *a = &t->actions[ai];
		r.out.len = 0;
		r.events.len = 0;
		if (r.out.p)
			r.out.p[0] = '\0';
		if (r.events.p)
			r.events.p[0] = '\0';
		switch (a->kind) {
		case A_START:
			break;
		case A_RECV:
		case A_CONTENT: {
			const char *p = a->bytes.p ? a->bytes.p : "";
			size_t n = a->bytes.len;
			void (*fn)(struct runner *, int, const char *, size_t) =
				a->kind == A_RECV ? feed : content;
			if (split_at == 0 || (split_at != SIZE_MAX && split_at >= n)) {
				fn(&r, a->line, p, n);
			} else if (split_at == SIZE_MAX) {
				for (size_t i = 0; i < n; i++)
					fn(&r, a->line, p + i, 1);
			} else {
				fn(&r, a->line, p, split_at);
				fn(&r, a->line, p + split_at, n - split_at);
			}
			break;
		}
		case A_CALL: {
			long got = call(&r, a);
			bool ok = a->want_rc_given ? got == a->want_rc : got >= 0;
			if (!ok && !rec_out) {
				fprintf(stderr, "%s:%d [%s]: '%s' returned %ld (%s)\n", t->path,
					a->line + 1, mode, a->call, got,
					got < 0 ? strerror((int)-got) : "ok");
				r.failures++;
			}
			break;
		}
		case A_PEER_CLOSED:
			smtp_client_peer_closed(r.c);
			break;
		}
		drain_events(&r, a->line);
		collect_output(&r, a->line);
		check_lockstep(&r, a->line);
		if (rec_out) {
			golden_buf_add(&rec_out[ai], r.out.p ? r.out.p : "", r.out.len);
			golden_buf_add(&rec_events[ai], r.events.p ? r.events.p : "", r.events.len);
			record_checks(&r, a, &rec_checks[ai]);
			continue;
		}
		if (!compare(&r, a, "output", &a->want_out, &r.out) ||
		    !compare(&r, a, "events", &a->want_events, &r.events) || !run_checks(&r, a))
			break;
		if (r.failures)
			break;
	}
	if (smtp_client_memory(r.c) < 100)
		fail_invariant(&r, 0, "implausible memory report");
	smtp_client_free(r.c);
	free(r.out.p);
	free(r.events.p);
	return r.failures ? 1 : 0;
}

static void print_output(const struct golden_buf *o)
{
	struct golden_buf line = { 0 };
	size_t i = 0;
	while (i < o->len) {
		const char *crlf = NULL;
		for (size_t k = i; k + 1 < o->len; k++)
			if (o->p[k] == '\r' && o->p[k + 1] == '\n') {
				crlf = o->p + k;
				break;
			}
		line.len = 0;
		if (crlf) {
			golden_buf_escaped(&line, o->p + i, (size_t)(crlf - (o->p + i)));
			if (line.len)
				printf("> %.*s\n", (int)line.len, line.p);
			else
				printf(">\n"); /* an empty line */
			i = (size_t)(crlf - o->p) + 2;
		} else {
			golden_buf_escaped(&line, o->p + i, o->len - i);
			printf(">> %.*s\n", (int)line.len, line.p ? line.p : "");
			i = o->len;
		}
	}
	free(line.p);
}

static bool is_expectation(const char *l)
{
	return l[0] == '>' || l[0] == '=' || is_check(l);
}

/* The transcript with every expectation replaced by what was observed: for each action, the
 * lines before it (comments, server lines), its line, then its output, events and checks
 * (the checks as observed). */
static void print_record(const struct transcript *t, struct golden_buf *out, struct golden_buf *events,
			 struct golden_buf *checks)
{
	int prev = -1;
	for (int ai = 0; ai < t->nactions; ai++) {
		const struct action *a = &t->actions[ai];
		for (int ln = prev + 1; ln <= a->line; ln++)
			if (ln == a->line || !is_expectation(t->lines[ln]))
				printf("%s\n", t->lines[ln]);
		if (a->line > prev)
			prev = a->line;
		print_output(&out[ai]);
		for (char *p = events[ai].p; p && *p;) {
			char *nl = strchr(p, '\n');
			printf("= %.*s\n", (int)(nl - p), p);
			p = nl + 1;
		}
		if (checks[ai].p)
			printf("%s", checks[ai].p);
	}
	for (int ln = prev + 1; ln < t->nlines; ln++)
		if (!is_expectation(t->lines[ln]))
			printf("%s\n", t->lines[ln]);
}

static void free_transcript(struct transcript *t)
{
	for (int i = 0; i < t->nactions; i++) {
		free(t->actions[i].bytes.p);
		free(t->actions[i].want_out.p);
		free(t->actions[i].want_events.p);
		free(t->actions[i].checks.p);
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
		fprintf(stderr, "usage: golden_client_runner [--record] FILE\n");
		return 2;
	}
	struct transcript t;
	load(&t, argv[argc - 1]);

	if (record) {
		struct golden_buf *out = calloc((size_t)t.nactions, sizeof(*out));
		struct golden_buf *evs = calloc((size_t)t.nactions, sizeof(*evs));
		struct golden_buf *chk = calloc((size_t)t.nactions, sizeof(*chk));
		run_mode(&t, 0, "whole", out, evs, chk);
		print_record(&t, out, evs, chk);
		for (int i = 0; i < t.nactions; i++) {
			free(out[i].p);
			free(evs[i].p);
			free(chk[i].p);
		}
		free(out);
		free(evs);
		free(chk);
		free_transcript(&t);
		return 0;
	}

	size_t longest = 0;
	for (int i = 0; i < t.nactions; i++)
		if ((t.actions[i].kind == A_RECV || t.actions[i].kind == A_CONTENT) &&
		    t.actions[i].bytes.len > longest)
			longest = t.actions[i].bytes.len;

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
