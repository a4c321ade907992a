/* header/body checks over a streaming message; see smtp_checks.h. */
#include "smtp/smtp_checks.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum smtp_checks_state {
	SC_TOP_HEADERS, /* top-level headers come through smtp_checks_header() */
	SC_TOP_SEP,     /* first body line: the empty line that ends the headers, if any */
	SC_HEADERS,     /* headers of a MIME part or of a message/rfc822 body */
	SC_BODY,
};

enum smtp_checks_ctype { SC_CT_OTHER, SC_CT_MULTIPART, SC_CT_RFC822 };

struct smtp_checks_block { /* what a header block says its body is */
	enum smtp_checks_ctype ct;
	size_t blen;
	char boundary[SMTP_CHECKS_BOUNDARY_MAX];
};

#define SC_ADDR_MAX 512u

struct smtp_checks {
	struct smtp_checks_config cfg;
	struct checks_scratch *scratch;
	const struct smtp_checks_ops *ops;
	void *ctx;
	/* Buffers grow on demand (doubling, up to their bound) and are kept for the next
	 * message: a connection whose headers are short holds a few KB, not the bounds. */
	char *hdr; /* a part/nested header being assembled, raw with CRLFs */
	size_t hdr_len, hdr_cap, hdr_max;
	bool pending, hdr_trunc;
	char *subj; /* the unfolded subject handed to the checks */
	size_t subj_cap;
	char *line; /* a body line being assembled */
	size_t line_len;
	bool line_cont;
	bool cr_pending; /* a CR came after a full line buffer: the line may end with it */
	char result[CHECKS_RESULT_MAX + 1];

	/* per message */
	enum smtp_checks_state st;
	enum smtp_checks_class cur; /* class of the SC_HEADERS block */
	struct smtp_checks_block top, blk;
	struct {
		size_t len;
		char b[SMTP_CHECKS_BOUNDARY_MAX];
	} stack[SMTP_CHECKS_MIME_DEPTH];
	unsigned depth;
	size_t body_offset;
	bool inspect, reject, discard, hold, tempfail;
	int code;
	char reply[CHECKS_RESULT_MAX + 16];
	char hold_reason[CHECKS_RESULT_MAX + 1];
	char redirect[SC_ADDR_MAX], filter[SC_ADDR_MAX];
	bool has_redirect, has_filter;
	char bcc[SMTP_CHECKS_BCC_MAX][SC_ADDR_MAX];
	unsigned nbcc;
};

const char *smtp_checks_class_name(enum smtp_checks_class c)
{
	static const char *const n[SMTP_CHECKS_CLASS_MAX] = {
		"header_checks", "mime_header_checks", "nested_header_checks", "body_checks"
	};
	return (unsigned)c < SMTP_CHECKS_CLASS_MAX ? n[c] : "?";
}

const char *smtp_checks_outcome_name(enum smtp_checks_outcome o)
{
	static const char *const n[SMTP_CHECKS_OUTCOME_MAX] = { "accept", "reject", "discard",
								 "tempfail" };
	return (unsigned)o < SMTP_CHECKS_OUTCOME_MAX ? n[o] : "?";
}

int smtp_checks_new(const struct smtp_checks_config *cfg, struct checks_scratch *scratch,
		    const struct smtp_checks_ops *ops, void *ctx, struct smtp_checks **out)
{
	if (!cfg->line_length_limit || !cfg->header_size_limit || !ops || !ops->emit ||
	    cfg->header_size_limit > CHECKS_SUBJECT_MAX)
		return -EINVAL;
	struct smtp_checks *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->scratch = scratch;
	m->ops = ops;
	m->ctx = ctx;
	/* raw header: the subject plus a CR per line, bounded by twice the subject */
	m->hdr_max = 2 * cfg->header_size_limit + 4;
	m->line = malloc(cfg->line_length_limit + 1);
	if (!m->line) {
		smtp_checks_free(m);
		return -ENOMEM;
	}
	smtp_checks_begin(m);
	*out = m;
	return 0;
}

int smtp_checks_rebind(struct smtp_checks *m, const struct smtp_checks_config *cfg,
		       struct checks_scratch *scratch, const struct smtp_checks_ops *ops,
		       void *ctx)
{
	if (!cfg->line_length_limit || !cfg->header_size_limit || !ops || !ops->emit ||
	    cfg->header_size_limit > CHECKS_SUBJECT_MAX)
		return -EINVAL;
	if (cfg->line_length_limit != m->cfg.line_length_limit) {
		char *line = malloc(cfg->line_length_limit + 1);
		if (!line)
			return -ENOMEM;
		free(m->line);
		m->line = line;
	}
	if (cfg->header_size_limit < m->cfg.header_size_limit) {
		/* what grew under the larger bound is given back, as a new object holds none */
		free(m->hdr);
		free(m->subj);
		m->hdr = m->subj = NULL;
		m->hdr_cap = m->subj_cap = 0;
	}
	m->cfg = *cfg;
	m->scratch = scratch;
	m->ops = ops;
	m->ctx = ctx;
	m->hdr_max = 2 * cfg->header_size_limit + 4;
	m->hdr_trunc = false;
	return 0;
}

void smtp_checks_free(struct smtp_checks *m)
{
	if (!m)
		return;
	free(m->hdr);
	free(m->subj);
	free(m->line);
	free(m);
}

void smtp_checks_begin(struct smtp_checks *m)
{
	m->st = SC_TOP_HEADERS;
	m->top.ct = SC_CT_OTHER;
	m->top.blen = 0;
	m->depth = 0;
	m->body_offset = 0;
	m->pending = false;
	m->hdr_len = m->line_len = 0;
	m->line_cont = false;
	m->cr_pending = false;
	m->inspect = true;
	m->reject = m->discard = m->hold = m->tempfail = false;
	m->has_redirect = m->has_filter = false;
	m->nbcc = 0;
	m->code = 0;
	m->reply[0] = m->hold_reason[0] = '\0';
}

/* Make *buf hold need bytes (need <= max). Returns 0 or -ENOMEM. */
static int sc_grow(char **buf, size_t *cap, size_t need, size_t max)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 512;
	while (c < need)
		c *= 2;
	if (c > max)
		c = max;
	char *nb = realloc(*buf, c);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = c;
	return 0;
}

static int sc_emit(struct smtp_checks *m, const char *p, size_t n)
{
	return n ? m->ops->emit(m->ctx, p, n) : 0;
}

static void sc_log(struct smtp_checks *m, const char *action, const char *class,
		   const char *content, size_t clen, const char *text,
		   const struct checks_result *res)
{
	if (!m->ops->log)
		return;
	struct smtp_checks_log ev = { action, class, content, clen > 200 ? 200 : clen, text, res };
	m->ops->log(m->ctx, &ev);
}

__attribute__((format(printf, 3, 4))) static void
sc_warn(struct smtp_checks *m, const struct checks_result *res, const char *fmt, ...)
{
	char msg[CHECKS_RESULT_MAX + 128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sc_log(m, "warning", NULL, NULL, 0, msg, res);
}

/* is_header(3) of Postfix: a name of printable non-blank characters other than ':', blanks
 * allowed before the colon. */
static bool sc_is_header(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i < n && p[i] == ':';
}

static bool sc_name_is(const char *p, size_t n, const char *name)
{
	size_t l = strlen(name);
	if (n < l || strncasecmp(p, name, l) != 0)
		return false;
	for (size_t i = l; i < n; i++) {
		if (p[i] == ':')
			return true;
		if (p[i] != ' ' && p[i] != '\t')
			return false;
	}
	return false;
}

/* Headers with Postfix's HDR_OPT_MIME (header_opts.c): they always go to mime_header_checks. */
static bool sc_is_mime_header(const char *p, size_t n)
{
	static const char *const names[] = { "Content-Description", "Content-Disposition",
					     "Content-ID", "Content-Transfer-Encoding",
					     "Content-Type", "MIME-Version" };
	if (n < 10 || (p[0] != 'c' && p[0] != 'C' && p[0] != 'm' && p[0] != 'M'))
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (sc_name_is(p, n, names[i]))
			return true;
	return false;
}

/* RFC 2045 5.1 Content-Type: type "/" subtype *(";" parameter); only the type and the
 * boundary parameter (RFC 2046 5.1.1) matter here. */
static void sc_content_type(const char *s, size_t n, struct smtp_checks_block *b)
{
	b->ct = SC_CT_OTHER;
	b->blen = 0;
	const char *e = s + n, *p = memchr(s, ':', n);
	if (!p)
		return;
	p++;
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if ((size_t)(e - p) >= 10 && strncasecmp(p, "multipart/", 10) == 0)
		b->ct = SC_CT_MULTIPART;
	else if ((size_t)(e - p) >= 14 && strncasecmp(p, "message/rfc822", 14) == 0 &&
		 (e - p == 14 || strchr(" \t\r\n;", p[14])))
		b->ct = SC_CT_RFC822;
	if (b->ct != SC_CT_MULTIPART)
		return;
	for (; p + 8 < e; p++) {
		if (strncasecmp(p, "boundary", 8) != 0 || (p[-1] != ';' && p[-1] != ' ' &&
							   p[-1] != '\t' && p[-1] != '\n'))
			continue;
		const char *q = p + 8;
		while (q < e && (*q == ' ' || *q == '\t'))
			q++;
		if (q >= e || *q != '=')
			continue;
		q++;
		while (q < e && (*q == ' ' || *q == '\t'))
			q++;
		const char *v = q;
		if (q < e && *q == '"') {
			v = ++q;
			while (q < e && *q != '"')
				q++;
		} else {
			while (q < e && !strchr(" \t\r\n;", *q))
				q++;
		}
		size_t l = (size_t)(q - v);
		if (l > 0 && l <= sizeof(b->boundary)) {
			memcpy(b->boundary, v, l);
			b->blen = l;
		}
		return;
	}
}

static bool sc_dsn_valid(const char *t)
{
	/* RFC 3463: class "." subject "." detail, each up to 3 digits, class 2, 4 or 5 */
	if (t[0] != '2' && t[0] != '4' && t[0] != '5')
		return false;
	if (t[1] != '.')
		return false;
	const char *p = t + 2;
	for (int part = 0; part < 2; part++) {
		size_t d = strspn(p, "0123456789");
		if (d < 1 || d > 3)
			return false;
		p += d;
		if (part == 0 && *p++ != '.')
			return false;
	}
	return *p == ' ' || *p == '\0';
}

static void sc_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* Run a set on one subject and act as cleanup_act() does. raw/rawlen is the line as stored;
 * *drop, *repl, *prep tell the caller what to write. Returns 0 (errors of the lookup are
 * recorded as a temporary failure of the message). */
static void sc_act(struct smtp_checks *m, enum smtp_checks_class cls, const char *subj,
		   size_t slen, bool *drop, const char **repl, const char **prep)
{
	const struct checks *set = m->cfg.set[cls];
	*drop = false;
	*repl = *prep = NULL;
	if (!set || !m->inspect)
		return;
	struct checks_result res;
	int rc = checks_match(set, m->scratch, subj, slen, m->result, sizeof(m->result), &res);
	if (rc < 0) {
		/* cleanup: "map lookup problem -- message not accepted, try again later" */
		m->tempfail = true;
		m->inspect = false;
		sc_log(m, "warning", NULL, NULL, 0,
		       rc == -ERANGE ? "pattern match limit reached: message not accepted, try again later"
				     : "lookup error: message not accepted, try again later",
		       NULL);
		return;
	}
	if (rc == 0)
		return;
	if (m->ops->lookup)
		m->ops->lookup(m->ctx, cls, subj, slen, &res);
	const char *ctx = cls == SMTP_CHECKS_BODY ? "body" : "header";
	const char *t = res.text;
	switch (res.action) {
	case CHECKS_REJECT: {
		if (*t && sc_dsn_valid(t))
			sc_copy(m->reply, sizeof(m->reply), t);
		else
			snprintf(m->reply, sizeof(m->reply), "5.7.1 %s",
				 *t ? t : "message content rejected");
		if (m->reply[0] != '4' && m->reply[0] != '5')
			m->reply[0] = '4'; /* Postfix: "need 4.x.x or 5.x.x" */
		m->code = m->reply[0] == '4' ? 451 : 550;
		m->reject = true;
		m->inspect = false;
		sc_log(m, "reject", ctx, subj, slen, m->reply, &res);
		return;
	}
	case CHECKS_WARN:
		sc_log(m, "warning", ctx, subj, slen, t, &res);
		return;
	case CHECKS_INFO:
		sc_log(m, "info", ctx, subj, slen, t, &res);
		return;
	case CHECKS_FILTER:
		if (!*t)
			sc_warn(m, &res, "missing FILTER command argument in %s map", smtp_checks_class_name(cls));
		else if (!strchr(t, ':') || strlen(t) >= SC_ADDR_MAX)
			sc_warn(m, &res, "bad FILTER command %s in %s -- need transport:destination",
				t, smtp_checks_class_name(cls));
		else {
			sc_copy(m->filter, sizeof(m->filter), t);
			m->has_filter = true;
			sc_log(m, "filter", ctx, subj, slen, t, &res);
		}
		return;
	case CHECKS_DISCARD:
		sc_log(m, "discard", ctx, subj, slen, t, &res);
		m->discard = true;
		m->inspect = false;
		return;
	case CHECKS_HOLD:
		if (!m->hold && !m->discard) {
			sc_log(m, "hold", ctx, subj, slen, t, &res);
			m->hold = true;
			sc_copy(m->hold_reason, sizeof(m->hold_reason), t);
		}
		return;
	case CHECKS_PREPEND:
	case CHECKS_REPLACE: {
		const char *w = res.action == CHECKS_PREPEND ? "PREPEND" : "REPLACE";
		if (!*t) {
			sc_warn(m, &res, "%s action without text in %s map", w, smtp_checks_class_name(cls));
		} else if (cls != SMTP_CHECKS_BODY && !sc_is_header(t, strlen(t))) {
			sc_warn(m, &res,
				"bad %s header text \"%s\" in %s map -- need \"headername: headervalue\"",
				w, t, smtp_checks_class_name(cls));
		} else {
			sc_log(m, res.action == CHECKS_PREPEND ? "prepend" : "replace", ctx, subj,
			       slen, t, &res);
			if (res.action == CHECKS_PREPEND)
				*prep = t;
			else
				*repl = t;
		}
		return;
	}
	case CHECKS_REDIRECT:
		if (!strchr(t, '@') || strlen(t) >= SC_ADDR_MAX) {
			sc_warn(m, &res, "bad REDIRECT target \"%s\" in %s map -- need user@domain",
				t, smtp_checks_class_name(cls));
		} else {
			sc_copy(m->redirect, sizeof(m->redirect), t);
			m->has_redirect = true;
			sc_log(m, "redirect", ctx, subj, slen, t, &res);
			m->inspect = false;
		}
		return;
	case CHECKS_BCC:
		if (!strchr(t, '@') || strlen(t) >= SC_ADDR_MAX) {
			sc_warn(m, &res, "bad BCC address \"%s\" in %s map -- need user@domain", t,
				smtp_checks_class_name(cls));
		} else if (m->nbcc == SMTP_CHECKS_BCC_MAX) {
			sc_warn(m, &res, "BCC %s in %s map: too many BCC recipients, ignored", t,
				smtp_checks_class_name(cls));
		} else {
			sc_copy(m->bcc[m->nbcc++], SC_ADDR_MAX, t);
			sc_log(m, "bcc", ctx, subj, slen, t, &res);
		}
		return;
	case CHECKS_STRIP:
		sc_log(m, "strip", ctx, subj, slen, t, &res);
		*drop = true;
		return;
	case CHECKS_IGNORE:
		*drop = true;
		return;
	case CHECKS_PASS:
		sc_log(m, "pass", ctx, subj, slen, t, &res);
		m->inspect = false;
		return;
	case CHECKS_DUNNO:
		return;
	case CHECKS_UNKNOWN:
	case CHECKS_ACTION_MAX:
		sc_warn(m, &res, "unknown command in %s map: %s", smtp_checks_class_name(cls),
			res.value);
		return;
	}
}

/* Check one logical header (raw: lines with CRLF) of class cls and write it out. */
static int sc_header(struct smtp_checks *m, enum smtp_checks_class cls, const char *raw,
		     size_t n, struct smtp_checks_block *blk)
{
	/* Postfix's header buffer: lines joined by "\n", no CR, no final newline. */
	size_t w = 0, lim = m->cfg.header_size_limit;
	if (sc_grow(&m->subj, &m->subj_cap, (n < lim ? n : lim) + 1, lim + 1) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n && w < m->cfg.header_size_limit; i++) {
		if (raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n')
			continue;
		m->subj[w++] = raw[i];
	}
	while (w > 0 && (m->subj[w - 1] == '\n' || m->subj[w - 1] == '\r'))
		w--;
	if (sc_is_mime_header(m->subj, w)) {
		cls = SMTP_CHECKS_MIME_HEADER;
		if (blk && sc_name_is(m->subj, w, "Content-Type"))
			sc_content_type(m->subj, w, blk);
	}
	bool drop;
	const char *repl, *prep;
	sc_act(m, cls, m->subj, w, &drop, &repl, &prep);
	int rc;
	if (drop)
		return 0;
	if (prep && ((rc = sc_emit(m, prep, strlen(prep))) < 0 || (rc = sc_emit(m, "\r\n", 2)) < 0))
		return rc;
	if (repl) {
		if ((rc = sc_emit(m, repl, strlen(repl))) < 0)
			return rc;
		return sc_emit(m, "\r\n", 2);
	}
	return sc_emit(m, raw, n);
}

int smtp_checks_header(struct smtp_checks *m, const char *p, size_t n)
{
	return sc_header(m, SMTP_CHECKS_HEADER, p, n, &m->top);
}

int smtp_checks_headers_end(struct smtp_checks *m)
{
	if (m->st == SC_TOP_HEADERS)
		m->st = SC_TOP_SEP;
	return 0;
}

static int sc_flush_header(struct smtp_checks *m)
{
	if (!m->pending)
		return 0;
	m->pending = false;
	if (m->hdr_trunc && (m->hdr_len < 2 || m->hdr[m->hdr_len - 1] != '\n')) {
		if (sc_grow(&m->hdr, &m->hdr_cap, m->hdr_len + 2, m->hdr_max) < 0)
			return -ENOMEM;
		memcpy(m->hdr + m->hdr_len, "\r\n", 2);
		m->hdr_len += 2;
	}
	return sc_header(m, m->cur, m->hdr, m->hdr_len, &m->blk);
}

static int sc_hdr_append(struct smtp_checks *m, const char *p, size_t n, bool nl)
{
	/* header_size_limit: the excess is neither inspected nor stored; 2 bytes stay free for
	 * the CRLF that ends a truncated header */
	if (m->hdr_len + 4 > m->hdr_max) {
		m->hdr_trunc = true;
		return 0;
	}
	size_t room = m->hdr_max - 4 - m->hdr_len;
	if (n > room) {
		n = room;
		m->hdr_trunc = true;
	}
	if (sc_grow(&m->hdr, &m->hdr_cap, m->hdr_len + n + 2, m->hdr_max) < 0)
		return -ENOMEM;
	memcpy(m->hdr + m->hdr_len, p, n);
	m->hdr_len += n;
	if (nl) {
		memcpy(m->hdr + m->hdr_len, "\r\n", 2);
		m->hdr_len += 2;
	}
	return 0;
}

/* The header block of a part or nested message is over: its body follows. */
static void sc_enter_body(struct smtp_checks *m, const struct smtp_checks_block *b)
{
	m->body_offset = 0;
	if (b->ct == SC_CT_RFC822) {
		m->st = SC_HEADERS;
		m->cur = SMTP_CHECKS_NESTED_HEADER;
		m->blk.ct = SC_CT_OTHER;
		m->blk.blen = 0;
		return;
	}
	if (b->ct == SC_CT_MULTIPART && b->blen && m->depth < SMTP_CHECKS_MIME_DEPTH) {
		memcpy(m->stack[m->depth].b, b->boundary, b->blen);
		m->stack[m->depth].len = b->blen;
		m->depth++;
	}
	m->st = SC_BODY;
}

static int sc_body_line(struct smtp_checks *m, const char *p, size_t n, bool nl)
{
	bool drop = false;
	const char *repl = NULL, *prep = NULL;
	if (m->cfg.body_checks_size_limit == 0 || m->body_offset < m->cfg.body_checks_size_limit)
		sc_act(m, SMTP_CHECKS_BODY, p, n, &drop, &repl, &prep);
	m->body_offset += n + (nl ? 1 : 0);
	int rc;
	if (drop)
		return 0;
	if (prep && ((rc = sc_emit(m, prep, strlen(prep))) < 0 || (rc = sc_emit(m, "\r\n", 2)) < 0))
		return rc;
	if (repl) {
		if ((rc = sc_emit(m, repl, strlen(repl))) < 0)
			return rc;
		return sc_emit(m, "\r\n", 2);
	}
	if ((rc = sc_emit(m, p, n)) < 0)
		return rc;
	return nl ? sc_emit(m, "\r\n", 2) : 0;
}

/* A boundary line (RFC 2046 5.1.1: "--" boundary, "--" boundary "--" for the last one;
 * trailing blanks allowed)? Returns the level (index in the stack) or -1. */
static int sc_boundary(const struct smtp_checks *m, const char *p, size_t n, bool *close)
{
	if (n < 3 || p[0] != '-' || p[1] != '-')
		return -1;
	for (int l = (int)m->depth - 1; l >= 0; l--) {
		size_t bl = m->stack[l].len;
		if (n - 2 < bl || memcmp(p + 2, m->stack[l].b, bl) != 0)
			continue;
		*close = n - 2 - bl >= 2 && p[2 + bl] == '-' && p[3 + bl] == '-';
		return l;
	}
	return -1;
}

static int sc_line(struct smtp_checks *m, const char *p, size_t n, bool nl, bool cont)
{
	int rc;
	for (;;) {
		switch (m->st) {
		case SC_TOP_HEADERS: /* body before HEADERS_END: take it as the body */
		case SC_TOP_SEP:
			if (!cont && n == 0 && nl) {
				/* the empty line is the first body line (mime_state) */
				sc_enter_body(m, &m->top);
				m->body_offset = 0;
				return sc_body_line(m, p, 0, true);
			}
			/* no empty line: mime_state inserts one, and a nested message cannot
			 * start here */
			sc_enter_body(m, &m->top);
			if (m->st == SC_HEADERS)
				m->st = SC_BODY;
			if ((rc = sc_body_line(m, "", 0, true)) < 0)
				return rc;
			continue;
		case SC_HEADERS: {
			bool close;
			if (cont) {
				if (m->pending)
					return sc_hdr_append(m, p, n, nl);
				return sc_body_line(m, p, n, nl);
			}
			int l = sc_boundary(m, p, n, &close);
			if (l < 0 && m->pending && n > 0 && (p[0] == ' ' || p[0] == '\t'))
				return sc_hdr_append(m, p, n, nl);
			if ((rc = sc_flush_header(m)) < 0)
				return rc;
			if (l >= 0) {
				m->st = SC_BODY;
				continue;
			}
			if (n == 0 && nl) {
				struct smtp_checks_block b = m->blk;
				sc_enter_body(m, &b);
				return sc_body_line(m, p, 0, true);
			}
			if (sc_is_header(p, n)) {
				m->hdr_len = 0;
				m->hdr_trunc = false;
				m->pending = true;
				return sc_hdr_append(m, p, n, nl);
			}
			/* not a header: the header block ends without an empty line, which
			 * mime_state inserts */
			struct smtp_checks_block b = m->blk;
			sc_enter_body(m, &b);
			if (m->st == SC_HEADERS)
				m->st = SC_BODY;
			if ((rc = sc_body_line(m, "", 0, true)) < 0)
				return rc;
			continue;
		}
		case SC_BODY: {
			bool close = false;
			int l = cont ? -1 : sc_boundary(m, p, n, &close);
			if ((rc = sc_body_line(m, p, n, nl)) < 0)
				return rc;
			if (l >= 0) {
				m->body_offset = 0;
				if (close) {
					m->depth = (unsigned)l;
				} else {
					m->depth = (unsigned)l + 1;
					m->st = SC_HEADERS;
					m->cur = SMTP_CHECKS_MIME_HEADER;
					m->blk.ct = SC_CT_OTHER;
					m->blk.blen = 0;
				}
			}
			return 0;
		}
		}
		return 0;
	}
}

/* Whether the rest of the body is only stored: the top-level body of a message that is not
 * multipart (in SC_BODY at depth 0 no boundary can match and no part header follows), with
 * no body_checks to apply to it (none, the message already decided, or past
 * body_checks_size_limit), between lines. */
static bool sc_body_plain(const struct smtp_checks *m)
{
	size_t lim = m->cfg.body_checks_size_limit;
	return m->st == SC_BODY && m->depth == 0 && !m->line_len && !m->cr_pending &&
	       !m->line_cont &&
	       (!m->cfg.set[SMTP_CHECKS_BODY] || !m->inspect || (lim && m->body_offset >= lim));
}

/* The whole lines at the start of p[n] stored as sc_line() would store them (a line ends
 * in CRLF whether it came with CR LF or a bare LF; a long line is stored in pieces with
 * nothing added), in runs instead of two emits a line. Returns the bytes taken (up to the
 * last LF) or an emit error. */
static long sc_body_pass(struct smtp_checks *m, const char *p, size_t n)
{
	size_t pos = 0, run = 0;
	int rc;
	for (;;) {
		const char *lf = memchr(p + pos, '\n', n - pos);
		if (!lf)
			break;
		size_t i = (size_t)(lf - p);
		/* between lines, the byte before p[0] was an LF */
		if (i == 0 || p[i - 1] != '\r') {
			if ((rc = sc_emit(m, p + run, i - run)) < 0 || (rc = sc_emit(m, "\r\n", 2)) < 0)
				return rc;
			run = i + 1;
		}
		pos = i + 1;
	}
	if ((rc = sc_emit(m, p + run, pos - run)) < 0)
		return rc;
	m->body_offset += pos;
	return (long)pos;
}

int smtp_checks_body(struct smtp_checks *m, const char *p, size_t n)
{
	size_t cap = m->cfg.line_length_limit;
	int rc;
	while (n > 0) {
		/* checked between lines: the piece that ends the headers turns plain after its
		 * first line */
		if (!m->line_len && sc_body_plain(m)) {
			long took = sc_body_pass(m, p, n);
			if (took < 0)
				return (int)took;
			p += took;
			n -= (size_t)took;
			if (!n)
				break;
		}
		if (m->cr_pending) {
			m->cr_pending = false;
			if (*p == '\n') { /* the line fits exactly: CR LF ends it */
				p++;
				n--;
				rc = sc_line(m, m->line, m->line_len, true, m->line_cont);
				m->line_len = 0;
				m->line_cont = false;
				if (rc < 0)
					return rc;
				continue;
			}
			rc = sc_line(m, m->line, m->line_len, false, m->line_cont);
			m->line_cont = true;
			m->line[0] = '\r';
			m->line_len = 1;
			if (rc < 0)
				return rc;
			continue;
		}
		if (*p == '\n') {
			size_t l = m->line_len;
			if (l > 0 && m->line[l - 1] == '\r')
				l--;
			p++;
			n--;
			rc = sc_line(m, m->line, l, true, m->line_cont);
			m->line_len = 0;
			m->line_cont = false;
			if (rc < 0)
				return rc;
			continue;
		}
		if (m->line_len == cap) {
			/* line_length_limit: a longer line is checked in pieces, as smtpd(8)
			 * hands it to cleanup. A full buffer waits for the next bytes: when they
			 * are the line end, the line just fits. */
			if (*p == '\r') {
				m->cr_pending = true;
				p++;
				n--;
				continue;
			}
			rc = sc_line(m, m->line, m->line_len, false, m->line_cont);
			m->line_cont = true;
			m->line_len = 0;
			if (rc < 0)
				return rc;
			continue;
		}
		const char *lf = memchr(p, '\n', n);
		size_t take = lf ? (size_t)(lf - p) : n, room = cap - m->line_len;
		if (take > room)
			take = room;
		memcpy(m->line + m->line_len, p, take);
		m->line_len += take;
		p += take;
		n -= take;
	}
	return 0;
}

int smtp_checks_end(struct smtp_checks *m, struct smtp_checks_verdict *v)
{
	int rc = 0;
	if (m->line_len > 0) {
		rc = sc_line(m, m->line, m->line_len, false, m->line_cont);
		m->line_len = 0;
		if (rc == 0 && m->cr_pending)
			rc = sc_line(m, "\r", 1, false, true);
		m->cr_pending = false;
	}
	if (rc == 0 && m->st == SC_HEADERS)
		rc = sc_flush_header(m);
	memset(v, 0, sizeof(*v));
	if (m->tempfail) {
		v->outcome = SMTP_CHECKS_TEMPFAIL;
		v->code = 451;
		v->reply = "4.3.0 Error: queue file write error";
	} else if (m->reject) {
		v->outcome = SMTP_CHECKS_REJECT;
		v->code = m->code;
		v->reply = m->reply;
	} else if (m->discard) {
		v->outcome = SMTP_CHECKS_DISCARD;
	}
	v->hold = m->hold;
	v->hold_reason = m->hold_reason;
	v->redirect = m->has_redirect ? m->redirect : NULL;
	v->filter = m->has_filter ? m->filter : NULL;
	for (unsigned i = 0; i < m->nbcc; i++)
		v->bcc[i] = m->bcc[i];
	v->nbcc = m->nbcc;
	return rc;
}

size_t smtp_checks_log_format(char *out, size_t cap, const struct smtp_checks_log *ev,
			      const char *queue_id, const char *client, const char *sender,
			      const char *rcpt, const char *proto, const char *helo)
{
	if (cap == 0)
		return 0;
	int n;
	if (!ev->content) /* a configuration warning */
		n = snprintf(out, cap, "warning: %s", ev->text ? ev->text : "");
	else
		n = snprintf(out, cap, "%s: %s: %s %.*s from %s;%s%s%s%s%s%s%s%s%s%s%s%s%s",
			     queue_id, ev->action, ev->class, (int)ev->content_len, ev->content,
			     client ? client : "unknown", sender ? " from=<" : "",
			     sender ? sender : "", sender ? ">" : "", rcpt ? " to=<" : "",
			     rcpt ? rcpt : "", rcpt ? ">" : "", proto ? " proto=" : "",
			     proto ? proto : "", helo ? " helo=<" : "", helo ? helo : "",
			     helo ? ">" : "", ev->text && *ev->text ? ": " : "",
			     ev->text && *ev->text ? ev->text : "");
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
