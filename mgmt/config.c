/* mxgate.cf: Postfix main.cf syntax, Postfix parameter semantics.
 *
 * Reading follows Postfix's readlline(3) and split_nameval(3): a logical line starts with
 * non-whitespace and continues on lines that start with whitespace (joined as they are,
 * the leading whitespace kept); empty lines, blank lines and lines whose first non-blank
 * is '#' are skipped, also inside a continued line; '#' after a value is part of the
 * value. Line ends may be LF or CRLF.
 *
 * Expansion follows Postfix's mac_parse(3)/mac_expand(3) as Postfix 3.7 does it:
 *   $name ${name} $(name)         the value of name (empty when undefined)
 *   ${name?text} ${name?{text}}   text when name's value as written is non-empty
 *   ${name:text} ${name:{text}}   text when name is undefined or written empty
 *   ${name?{t1}:{t2}}             t1 or t2
 *   ${{a} OP {b}?{t1}:{t2}}       OP: == != < <= > >= (numbers compare as numbers when
 *                                 both sides are all digits) and ==level !=level <level
 *                                 <=level >level >=level (compatibility levels)
 *   $$                            a literal $
 * Expansion is lazy (a value may name a parameter defined later or only by default) and
 * recursive; each parameter is expanded once and remembered, a cycle is reported with the
 * chain of names, and nesting deeper than Postfix's 100 levels is an error. Every input
 * has a bound: the file size, each expanded value and the sum of all of them.
 *
 * Diagnostics are collected, not stopped at: every problem of the file is reported, sorted
 * by line, as "FILE:LINE: problem" or "FILE:LINE: warning: problem". */
#include "mgmt/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt/config_params.h"
#include "mxgate/ctype.h"
#include "mxgate/list.h"

#define CFG_FILE_MAX (4u << 20)       /* bytes of mxgate.cf */
#define CFG_VALUE_MAX (1u << 20)      /* bytes of one expanded value */
#define CFG_EXPAND_TOTAL (16u << 20)  /* bytes of all expanded values together */
#define CFG_DEPTH_MAX 100             /* Postfix's "unreasonable macro call nesting" */
#define CFG_SHOW_MAX 200              /* bytes of a value quoted in a message */
#define CFG_WHITESPACE " \t\r\n"

const char *mx_transport_name(enum mx_transport t)
{
	switch (t) {
	case MX_TRANSPORT_KERNEL:
		return "kernel";
	case MX_TRANSPORT_DPDK:
		return "dpdk";
	case MX_TRANSPORT_MAX:
		break;
	}
	return "?";
}

/* ---------------------------------------------------------------------------------------
 * Growable byte buffer with a hard cap. Appending past the cap sets `too_long` and keeps
 * what fit; running out of memory sets `oom`. */

struct cfg_buf {
	char *p;
	size_t len, cap;
	bool too_long, oom;
};

static void cfg_buf_add(struct cfg_buf *b, const char *s, size_t n)
{
	if (b->too_long || b->oom)
		return;
	if (n > CFG_VALUE_MAX - b->len) {
		b->too_long = true;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 64;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void cfg_buf_str(struct cfg_buf *b, const char *s)
{
	cfg_buf_add(b, s, strlen(s));
}

/* The contents as a C string the caller owns ("" when nothing was added). */
static char *cfg_buf_take(struct cfg_buf *b)
{
	if (!b->p) {
		b->p = malloc(1);
		if (!b->p) {
			b->oom = true;
			return NULL;
		}
		b->p[0] = '\0';
	}
	char *p = b->p;
	*b = (struct cfg_buf){ 0 };
	return p;
}

static void cfg_buf_free(struct cfg_buf *b)
{
	free(b->p);
	*b = (struct cfg_buf){ 0 };
}

/* ---------------------------------------------------------------------------------------
 * Load state. */

enum cfg_var_state {
	CFG_VAR_NEW,
	CFG_VAR_BUSY, /* being expanded: meeting it again is a loop */
	CFG_VAR_DONE,
	CFG_VAR_FAILED,
	CFG_VAR_STATE_MAX,
};

/* A name: a known parameter (configured or not) or a name=value line of the file. */
struct cfg_var {
	char *name;
	char *raw;          /* as written, or the default; NULL: computed (myhostname, mydomain) */
	bool raw_owned;     /* raw was allocated (read from the file) */
	unsigned line;      /* where it was set; 0 = not set in the file */
	const struct mx_param_def *def; /* NULL for a name mxgate does not know */
	enum cfg_var_state state;
	char *value;        /* expanded, once state is DONE */
	bool used;          /* some value of the file says $name */
	bool bad;           /* its value failed validation */
	bool dep_visit;     /* scratch for cfg_refers_to_bad() */
};

struct cfg_diag {
	unsigned line;
	size_t seq;
	char *text;
};

struct cfg_ctx {
	const char *file;

	struct cfg_var *vars;
	size_t nvars, capvars;
	size_t *slots; /* open-addressing index of vars by name; SIZE_MAX = empty */
	size_t nslots;

	struct cfg_diag *diags;
	size_t ndiags, capdiags;
	unsigned errors;

	size_t expanded_total;
	unsigned depth;
	size_t stack[CFG_DEPTH_MAX + 8]; /* vars being expanded, for loop messages */
	size_t stack_len;
	bool oom;
};

static void cfg_diag_add(struct cfg_ctx *c, unsigned line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void cfg_diag_add(struct cfg_ctx *c, unsigned line, bool warning, const char *fmt, ...)
{
	if (!warning)
		c->errors++;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote what the file says; keep control characters off the terminal. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';

	if (c->ndiags == c->capdiags) {
		size_t ncap = c->capdiags ? c->capdiags * 2 : 16;
		struct cfg_diag *nd = realloc(c->diags, ncap * sizeof(*nd));
		if (!nd) {
			c->oom = true;
			return;
		}
		c->diags = nd;
		c->capdiags = ncap;
	}
	size_t n = strlen(msg) + (warning ? 9 : 0) + 1;
	char *text = malloc(n);
	if (!text) {
		c->oom = true;
		return;
	}
	snprintf(text, n, "%s%s", warning ? "warning: " : "", msg);
	c->diags[c->ndiags] = (struct cfg_diag){ .line = line, .seq = c->ndiags, .text = text };
	c->ndiags++;
}

static int cfg_diag_cmp(const void *a, const void *b)
{
	const struct cfg_diag *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void cfg_diag_flush(struct cfg_ctx *c, FILE *diag)
{
	if (c->ndiags > 1)
		qsort(c->diags, c->ndiags, sizeof(*c->diags), cfg_diag_cmp);
	for (size_t i = 0; i < c->ndiags; i++) {
		if (!diag)
			continue;
		if (c->diags[i].line)
			fprintf(diag, "%s:%u: %s\n", c->file, c->diags[i].line, c->diags[i].text);
		else
			fprintf(diag, "%s: %s\n", c->file, c->diags[i].text);
	}
	if (diag && c->oom)
		fprintf(diag, "%s: out of memory\n", c->file);
}

/* Forget the messages without a line number added since diags[mark]. */
static void cfg_diag_drop_unlined(struct cfg_ctx *c, size_t mark)
{
	size_t w = mark;
	for (size_t r = mark; r < c->ndiags; r++) {
		if (c->diags[r].line == 0) {
			if (strncmp(c->diags[r].text, "warning: ", 9) != 0)
				c->errors--;
			free(c->diags[r].text);
		} else {
			c->diags[w++] = c->diags[r];
		}
	}
	c->ndiags = w;
}

/* How a value is shown in a message: cut at CFG_SHOW_MAX bytes. */
#define CFG_SHOW(s) (int)(strlen(s) > CFG_SHOW_MAX ? CFG_SHOW_MAX : strlen(s)), (s), \
		    (strlen(s) > CFG_SHOW_MAX ? "..." : "")

static size_t cfg_hash(const char *s, size_t n)
{
	size_t h = 1469598103934665603u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return h;
}

/* The index of `name`, or SIZE_MAX. */
static size_t cfg_find(const struct cfg_ctx *c, const char *name, size_t n)
{
	if (!c->nslots)
		return SIZE_MAX;
	size_t mask = c->nslots - 1;
	for (size_t i = cfg_hash(name, n) & mask;; i = (i + 1) & mask) {
		size_t v = c->slots[i];
		if (v == SIZE_MAX)
			return SIZE_MAX;
		if (strlen(c->vars[v].name) == n && memcmp(c->vars[v].name, name, n) == 0)
			return v;
	}
}

static int cfg_index_grow(struct cfg_ctx *c)
{
	size_t nslots = c->nslots ? c->nslots * 2 : 128;
	size_t *slots = malloc(nslots * sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < nslots; i++)
		slots[i] = SIZE_MAX;
	for (size_t v = 0; v < c->nvars; v++) {
		size_t i = cfg_hash(c->vars[v].name, strlen(c->vars[v].name)) & (nslots - 1);
		while (slots[i] != SIZE_MAX)
			i = (i + 1) & (nslots - 1);
		slots[i] = v;
	}
	free(c->slots);
	c->slots = slots;
	c->nslots = nslots;
	return 0;
}

/* Add a new var (the name must not be there yet). Returns its index or SIZE_MAX. */
static size_t cfg_add_var(struct cfg_ctx *c, const char *name, size_t n)
{
	if ((c->nvars + 1) * 2 > c->nslots && cfg_index_grow(c) != 0)
		return SIZE_MAX;
	if (c->nvars == c->capvars) {
		size_t ncap = c->capvars ? c->capvars * 2 : 64;
		struct cfg_var *nv = realloc(c->vars, ncap * sizeof(*nv));
		if (!nv)
			return SIZE_MAX;
		c->vars = nv;
		c->capvars = ncap;
	}
	char *copy = malloc(n + 1);
	if (!copy)
		return SIZE_MAX;
	memcpy(copy, name, n);
	copy[n] = '\0';
	size_t v = c->nvars++;
	c->vars[v] = (struct cfg_var){ .name = copy, .def = mx_param_find(name, n) };
	size_t i = cfg_hash(name, n) & (c->nslots - 1);
	while (c->slots[i] != SIZE_MAX)
		i = (i + 1) & (c->nslots - 1);
	c->slots[i] = v;
	return v;
}

static void cfg_ctx_free(struct cfg_ctx *c)
{
	for (size_t i = 0; i < c->nvars; i++) {
		free(c->vars[i].name);
		if (c->vars[i].raw_owned)
			free(c->vars[i].raw);
		free(c->vars[i].value);
	}
	free(c->vars);
	free(c->slots);
	for (size_t i = 0; i < c->ndiags; i++)
		free(c->diags[i].text);
	free(c->diags);
}

/* ---------------------------------------------------------------------------------------
 * Reading: physical lines -> logical lines -> name = value. */

/* One logical line (split_nameval(3)): "name = value", blanks around both trimmed. */
static void cfg_logical_line(struct cfg_ctx *c, char *buf, size_t len, unsigned line)
{
	char *p = buf, *end = buf + len;
	while (p < end && mx_ctype_is_space(*p))
		p++;
	if (p == end || *p == '=') {
		cfg_diag_add(c, line, false, "missing attribute name: \"%.*s%s\"", CFG_SHOW(buf));
		return;
	}
	char *name = p;
	while (p < end && !mx_ctype_is_space(*p) && *p != '=')
		p++;
	size_t name_len = (size_t)(p - name);
	while (p < end && mx_ctype_is_space(*p))
		p++;
	if (p == end || *p != '=') {
		cfg_diag_add(c, line, false, "missing '=' after attribute name: \"%.*s%s\"",
			     CFG_SHOW(buf));
		return;
	}
	p++;
	while (p < end && mx_ctype_is_space(*p))
		p++;
	char *vend = end;
	while (vend > p && mx_ctype_is_space(vend[-1]))
		vend--;
	*vend = '\0';

	size_t v = cfg_find(c, name, name_len);
	if (v == SIZE_MAX) {
		v = cfg_add_var(c, name, name_len);
		if (v == SIZE_MAX) {
			c->oom = true;
			return;
		}
	} else {
		/* Postfix's wording: the line of the new entry, the value it replaces. */
		cfg_diag_add(c, line, true, "overriding earlier entry: %s=%.*s%s", c->vars[v].name,
			     CFG_SHOW(c->vars[v].raw ? c->vars[v].raw : ""));
		if (c->vars[v].raw_owned)
			free(c->vars[v].raw);
	}
	char *value = strdup(p);
	if (!value) {
		c->vars[v].raw = NULL;
		c->vars[v].raw_owned = false;
		c->oom = true;
		return;
	}
	c->vars[v].raw = value;
	c->vars[v].raw_owned = true;
	c->vars[v].line = line;
}

static void cfg_read(struct cfg_ctx *c, const char *text, size_t len)
{
	struct cfg_buf logical = { 0 };
	unsigned logical_line = 0;   /* 0: no logical line open */
	bool discarding = false;     /* the open logical line started with whitespace */
	bool broken = false;         /* the open logical line had a bad character */
	unsigned line = 0;
	size_t pos = 0;

	for (;;) {
		bool at_end = pos >= len;
		size_t start = pos, stop = pos;
		if (!at_end) {
			const char *nl = memchr(text + pos, '\n', len - pos);
			stop = nl ? (size_t)(nl - text) : len;
			pos = nl ? stop + 1 : len;
			line++;
		}
		size_t plen = stop - start;
		const char *phys = text + start;
		if (!at_end && plen > 0 && phys[plen - 1] == '\r')
			plen--; /* CRLF line end */

		bool skip = true;
		bool continuation = false;
		if (!at_end) {
			size_t i = 0;
			while (i < plen && mx_ctype_is_space(phys[i]))
				i++;
			skip = i == plen || phys[i] == '#';
			continuation = !skip && mx_ctype_is_space(phys[0]);
		}
		if (skip && !at_end)
			continue;

		if (!at_end && continuation && (logical_line || discarding)) {
			/* Goes on with the open logical line. */
		} else {
			/* A new logical line starts here (or the input ended): finish the open
			 * one. */
			if (logical_line && !discarding && !broken && !logical.oom)
				cfg_logical_line(c, logical.p ? logical.p : (char[]){ 0 },
						 logical.len, logical_line);
			if (logical.oom)
				c->oom = true;
			cfg_buf_free(&logical);
			logical_line = 0;
			discarding = false;
			broken = false;
			if (at_end)
				break;
			if (continuation) {
				/* Postfix: "logical line must not start with whitespace"; the text
				 * and its continuations are ignored. */
				cfg_diag_add(c, line, true,
					     "logical line must not start with whitespace: "
					     "\"%.*s%s\"",
					     (int)(plen > 30 ? 30 : plen), phys,
					     plen > 30 ? "..." : "");
				discarding = true;
				continue;
			}
			logical_line = line;
		}

		for (size_t i = 0; i < plen; i++) {
			unsigned char ch = (unsigned char)phys[i];
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
				if (!discarding && !broken)
					cfg_diag_add(c, line, false,
						     "control character 0x%02x in the text "
						     "(column %zu)",
						     ch, i + 1);
				broken = true;
				break;
			}
		}
		if (!discarding && !broken) {
			cfg_buf_add(&logical, phys, plen);
			if (logical.too_long) {
				/* Cannot happen below CFG_FILE_MAX, but stay bounded. */
				cfg_diag_add(c, logical_line, false, "logical line too long");
				broken = true;
			}
		}
	}
	cfg_buf_free(&logical);
}

/* ---------------------------------------------------------------------------------------
 * Expansion. */

static bool cfg_is_name_char(char ch)
{
	return mx_ctype_is_alnum(ch) || ch == '_';
}

static const char *cfg_resolve(struct cfg_ctx *c, size_t v);

/* The var a message about the text being expanded is filed under. */
struct cfg_owner {
	size_t var;
};

static void cfg_expand_error(struct cfg_ctx *c, struct cfg_owner o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cfg_expand_error(struct cfg_ctx *c, struct cfg_owner o, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg_diag_add(c, c->vars[o.var].line, false, "parameter %s: %s", c->vars[o.var].name, msg);
}

static int cfg_expand(struct cfg_ctx *c, struct cfg_owner o, const char *text, size_t len,
		      struct cfg_buf *out);

/* After '{' at *pp: the text up to the matching '}', braces balanced; *pp moves past the
 * '}' and any whitespace after it (mac_exp_extract_curly_payload()). */
static bool cfg_payload(struct cfg_ctx *c, struct cfg_owner o, const char **pp, const char *end,
			const char **start, size_t *len)
{
	const char *p = *pp + 1;
	int level = 1;
	for (const char *q = p; q < end; q++) {
		if (*q == '{') {
			level++;
		} else if (*q == '}' && --level == 0) {
			*start = p;
			*len = (size_t)(q - p);
			q++;
			while (q < end && mx_ctype_is_space(*q))
				q++;
			*pp = q;
			return true;
		}
	}
	cfg_expand_error(c, o, "unbalanced {} in attribute expression: \"%.*s\"",
			 (int)(end - *pp > CFG_SHOW_MAX ? CFG_SHOW_MAX : end - *pp), *pp);
	return false;
}

static const char *cfg_skip_space(const char *p, const char *end)
{
	while (p < end && mx_ctype_is_space(*p))
		p++;
	return p;
}

/* The text of a ${name?...} or ${name:...} branch at *pp: a {braced} payload, or else
 * the rest of the expression, ':' and blanks included (the Postfix 2.2 form). Blanks are
 * skipped only before a '{' (MAC_EXP_FIND_LEFT_CURLY). */
static bool cfg_branch_text(struct cfg_ctx *c, struct cfg_owner o, const char **pp,
			    const char *end, const char **start, size_t *len)
{
	const char *q = cfg_skip_space(*pp, end);
	if (q < end && *q == '{') {
		*pp = q;
		return cfg_payload(c, o, pp, end, start, len);
	}
	*start = *pp;
	*len = (size_t)(end - *pp);
	*pp = end;
	return true;
}

/* Postfix compatibility level "major[.minor[.patch]]" as three numbers. */
static bool cfg_parse_level(const char *s, uint64_t lv[3])
{
	lv[0] = lv[1] = lv[2] = 0;
	for (int part = 0; part < 3; part++) {
		size_t n = strspn(s, "0123456789");
		if (n == 0 || n > 18)
			return false;
		uint64_t x = 0;
		for (size_t i = 0; i < n; i++)
			x = x * 10 + (uint64_t)(s[i] - '0');
		lv[part] = x;
		s += n;
		if (*s == '\0')
			return true;
		if (*s != '.')
			return false;
		s++;
	}
	return false;
}

/* Evaluate {left} OP {right}. Returns 1 (true), 0 (false) or -1 (error reported). */
static int cfg_compare(struct cfg_ctx *c, struct cfg_owner o, const char *left, const char *op,
		       size_t oplen, bool level, const char *right)
{
	int cmp;
	if (level) {
		uint64_t a[3], b[3];
		if (!cfg_parse_level(left, a) || !cfg_parse_level(right, b)) {
			cfg_expand_error(c, o, "malformed compatibility level syntax: \"%.*s%s\"",
					 CFG_SHOW(cfg_parse_level(left, a) ? right : left));
			return -1;
		}
		cmp = 0;
		for (int i = 0; i < 3 && cmp == 0; i++)
			cmp = a[i] < b[i] ? -1 : a[i] > b[i];
	} else if (mx_ctype_all_digits(left) && mx_ctype_all_digits(right)) {
		/* Both numbers: compare their values ("07" == "7"), as Postfix does. */
		const char *a = left + strspn(left, "0"), *b = right + strspn(right, "0");
		size_t al = strlen(a), bl = strlen(b);
		if (al > 18 || bl > 18) {
			cfg_expand_error(c, o, "bad number in expression: \"%.*s%s\"",
					 CFG_SHOW(al > 18 ? left : right));
			return -1;
		}
		cmp = al != bl ? (al < bl ? -1 : 1) : strcmp(a, b);
	} else {
		cmp = strcmp(left, right);
	}

	if (oplen == 2 && memcmp(op, "==", 2) == 0)
		return cmp == 0;
	if (oplen == 2 && memcmp(op, "!=", 2) == 0)
		return cmp != 0;
	if (oplen == 1 && op[0] == '<')
		return cmp < 0;
	if (oplen == 2 && memcmp(op, "<=", 2) == 0)
		return cmp <= 0;
	if (oplen == 1 && op[0] == '>')
		return cmp > 0;
	return cmp >= 0; /* ">=", the only operator left after cfg_expr()'s check */
}

/* Expand into a fresh string (for the operands of a comparison). */
static char *cfg_expand_str(struct cfg_ctx *c, struct cfg_owner o, const char *text, size_t len)
{
	struct cfg_buf b = { 0 };
	if (cfg_expand(c, o, text, len, &b) != 0) {
		cfg_buf_free(&b);
		return NULL;
	}
	if (b.too_long || b.oom) {
		if (b.oom)
			c->oom = true;
		else
			cfg_expand_error(c, o, "value longer than %u bytes after expansion",
					 CFG_VALUE_MAX);
		cfg_buf_free(&b);
		return NULL;
	}
	return cfg_buf_take(&b);
}

static void cfg_warn_undefined(struct cfg_ctx *c, struct cfg_owner o, const char *name,
			       size_t n)
{
	/* Postfix's postconf says "undefined parameter: NAME"; the value expands to empty.
	 * Once per name: remember it as a var with no value. */
	size_t v = cfg_add_var(c, name, n);
	if (v == SIZE_MAX) {
		c->oom = true;
		return;
	}
	c->vars[v].state = CFG_VAR_DONE;
	cfg_diag_add(c, c->vars[o.var].line, true, "undefined parameter: %s", c->vars[v].name);
}

/* One $-expression: `e` is the text of ${...} or $(...) without the delimiters, or a bare
 * $name (mac_expand_callback()). */
static int cfg_expr(struct cfg_ctx *c, struct cfg_owner o, const char *e, size_t elen,
		    struct cfg_buf *out)
{
	const char *p = e, *end = e + elen;
	/* As mac_expand_callback(): an expression may sit inside at most 100 others. */
	if (c->depth > CFG_DEPTH_MAX) {
		cfg_expand_error(c, o, "unreasonable macro call nesting: \"%.*s\"",
				 (int)(elen > 60 ? 60 : elen), e);
		return -1;
	}
	c->depth++;
	int rc = -1;
	char *left = NULL, *right = NULL;
	bool logical = false;
	bool test = false;       /* the value as written is non-empty / the comparison held */
	size_t var = SIZE_MAX;   /* $name: the var, SIZE_MAX when undefined */
	char ch = 0;

	p = cfg_skip_space(p, end);
	if (p < end && *p == '{') {
		/* {left} OP {right} */
		logical = true;
		const char *ls, *rs;
		size_t ll, rl;
		if (!cfg_payload(c, o, &p, end, &ls, &ll))
			goto out;
		const char *op = p;
		while (p < end && *p && strchr("<>!=?+-*/~&|%", *p))
			p++;
		size_t oplen = (size_t)(p - op);
		const char *suffix = p;
		while (p < end && cfg_is_name_char(*p))
			p++;
		size_t slen = (size_t)(p - suffix);
		bool op_ok = (oplen == 2 && (memcmp(op, "==", 2) == 0 || memcmp(op, "!=", 2) == 0 ||
					     memcmp(op, "<=", 2) == 0 || memcmp(op, ">=", 2) == 0)) ||
			     (oplen == 1 && (*op == '<' || *op == '>'));
		if (!op_ok) {
			cfg_expand_error(c, o,
					 "\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" "
					 "expected at: \"...%.*s}>>>%.*s\"",
					 (int)(ll > 40 ? 40 : ll), ls,
					 (int)(end - op > 20 ? 20 : end - op), op);
			goto out;
		}
		if (slen && !(slen == 5 && memcmp(suffix, "level", 5) == 0)) {
			cfg_expand_error(c, o, "bad operator suffix at: \"...%.*s>>>%.*s\"",
					 (int)oplen, op, (int)(slen > 20 ? 20 : slen), suffix);
			goto out;
		}
		p = cfg_skip_space(p, end);
		if (p >= end || *p != '{') {
			cfg_expand_error(c, o,
					 "\"{expression}\" expected at: \"...{%.*s} %.*s>>>%.*s\"",
					 (int)(ll > 40 ? 40 : ll), ls, (int)oplen, op,
					 (int)(end - p > 20 ? 20 : end - p), p);
			goto out;
		}
		if (!cfg_payload(c, o, &p, end, &rs, &rl))
			goto out;
		left = cfg_expand_str(c, o, ls, ll);
		if (!left)
			goto out;
		right = cfg_expand_str(c, o, rs, rl);
		if (!right)
			goto out;
		int truth = cfg_compare(c, o, left, op, oplen, slen != 0, right);
		if (truth < 0)
			goto out;
		test = truth;
		if (p < end) {
			if (*p != '?' && *p != ':') {
				cfg_expand_error(c, o, "\"?\" or \":\" expected at: \"...}>>>%.*s\"",
						 (int)(end - p > 20 ? 20 : end - p), p);
				goto out;
			}
			ch = *p++;
		}
	} else {
		/* name, name?text, name:text (3.7 allows blanks around the name) */
		const char *name = p;
		while (p < end && cfg_is_name_char(*p))
			p++;
		size_t nlen = (size_t)(p - name);
		p = cfg_skip_space(p, end);
		if (p < end && *p != '?' && *p != ':') {
			cfg_expand_error(c, o, "attribute name syntax error at: \"...%.*s>>>%.*s\"",
					 (int)(p - e > 40 ? 40 : p - e), e,
					 (int)(end - p > 20 ? 20 : end - p), p);
			goto out;
		}
		if (nlen == 0) {
			cfg_expand_error(c, o, "empty macro name: \"%.*s\"",
					 (int)(elen > 60 ? 60 : elen), e);
			goto out;
		}
		if (p < end)
			ch = *p++;
		var = cfg_find(c, name, nlen);
		if (var == SIZE_MAX) {
			cfg_warn_undefined(c, o, name, nlen);
		} else if (c->vars[var].raw == NULL && c->vars[var].def == NULL) {
			var = SIZE_MAX; /* an undefined name seen before */
		}
		/* ${name?..} and ${name:..} look at the value as written, not at what it
		 * expands to (Postfix: "b = $empty" makes ${b?x} give x). Computed defaults
		 * are never empty. */
		if (var != SIZE_MAX) {
			const struct cfg_var *cv = &c->vars[var];
			test = cv->raw ? cv->raw[0] != '\0' : cv->def != NULL;
		}
	}

	const char *t;
	size_t tlen;
	switch (ch) {
	case '?':
		if (!cfg_branch_text(c, o, &p, end, &t, &tlen))
			goto out;
		if (test && cfg_expand(c, o, t, tlen, out) != 0)
			goto out;
		if (p == end)
			break;
		if (*p != ':') {
			cfg_expand_error(c, o, "\":\" expected at: \"...%.*s}>>>%.*s\"",
					 (int)(tlen > 40 ? 40 : tlen), t,
					 (int)(end - p > 20 ? 20 : end - p), p);
			goto out;
		}
		p++;
		/* FALLTHROUGH */
	case ':':
		if (!cfg_branch_text(c, o, &p, end, &t, &tlen))
			goto out;
		if (!test && cfg_expand(c, o, t, tlen, out) != 0)
			goto out;
		if (p != end) {
			cfg_expand_error(c, o, "unexpected input at: \"...%.*s}>>>%.*s\"",
					 (int)(tlen > 40 ? 40 : tlen), t,
					 (int)(end - p > 20 ? 20 : end - p), p);
			goto out;
		}
		break;
	default:
		if (logical) {
			if (test)
				cfg_buf_str(out, "true");
		} else if (var != SIZE_MAX) {
			const char *val = cfg_resolve(c, var);
			if (!val)
				goto out;
			cfg_buf_str(out, val);
		}
		break;
	}
	rc = 0;
out:
	free(left);
	free(right);
	c->depth--;
	return rc;
}

/* mac_parse(): literal text, $$, and $-expressions. Returns 0, or -1 after an error was
 * reported (here or where a referenced value failed). */
static int cfg_expand(struct cfg_ctx *c, struct cfg_owner o, const char *text, size_t len,
		      struct cfg_buf *out)
{
	size_t i = 0;
	while (i < len) {
		const char *dollar = memchr(text + i, '$', len - i);
		size_t lit = dollar ? (size_t)(dollar - (text + i)) : len - i;
		/* Postfix counts literal text as one more nesting level. */
		bool dollars = dollar && i + lit + 1 < len && text[i + lit + 1] == '$';
		if ((lit > 0 || dollars) && c->depth > CFG_DEPTH_MAX) {
			cfg_expand_error(c, o, "unreasonable macro call nesting: \"%.*s%s\"",
					 (int)(len > 60 ? 60 : len), text, len > 60 ? "..." : "");
			return -1;
		}
		cfg_buf_add(out, text + i, lit);
		i += lit;
		if (i >= len)
			break;
		if (i + 1 < len && text[i + 1] == '$') {
			cfg_buf_add(out, "$", 1);
			i += 2;
			continue;
		}
		i++;
		const char *e;
		size_t elen;
		if (i < len && (text[i] == '{' || text[i] == '(')) {
			/* Only the bracket that opened counts for nesting, as in mac_parse(). */
			char open = text[i], close = open == '{' ? '}' : ')';
			int level = 1;
			size_t j = i + 1;
			for (; j < len; j++) {
				if (text[j] == open)
					level++;
				else if (text[j] == close && --level == 0)
					break;
			}
			if (level > 0) {
				cfg_expand_error(c, o, "truncated macro reference: \"%.*s%s\"",
						 (int)(len > 60 ? 60 : len), text,
						 len > 60 ? "..." : "");
				return -1;
			}
			e = text + i + 1;
			elen = j - i - 1;
			i = j + 1;
		} else {
			size_t j = i;
			while (j < len && cfg_is_name_char(text[j]))
				j++;
			e = text + i;
			elen = j - i;
			i = j;
		}
		if (elen == 0) {
			cfg_expand_error(c, o, "empty macro name: \"%.*s%s\"",
					 (int)(len > 60 ? 60 : len), text, len > 60 ? "..." : "");
			return -1;
		}
		if (cfg_expr(c, o, e, elen, out) != 0)
			return -1;
		if (out->too_long || out->oom)
			return 0; /* the caller reports it */
	}
	return 0;
}

/* The expanded value of var v, or NULL after an error was reported (here, or where a value
 * it refers to failed). Expanding may add vars (undefined names) and so move c->vars:
 * this function holds indexes, never pointers, across calls. */
static const char *cfg_resolve(struct cfg_ctx *c, size_t v)
{
	switch (c->vars[v].state) {
	case CFG_VAR_DONE:
		return c->vars[v].value ? c->vars[v].value : "";
	case CFG_VAR_FAILED:
		return NULL;
	case CFG_VAR_BUSY: {
		/* A cycle: report the chain once, at the first of its names set in the
		 * file. */
		size_t from = 0;
		while (from < c->stack_len && c->stack[from] != v)
			from++;
		char chain[512] = "";
		size_t used = 0, at = v;
		for (size_t k = from; k <= c->stack_len; k++) {
			size_t w = k < c->stack_len ? c->stack[k] : v;
			int n = snprintf(chain + used, sizeof(chain) - used, "%s$%s",
					 k == from ? "" : " -> ", c->vars[w].name);
			if (n > 0 && (size_t)n < sizeof(chain) - used)
				used += (size_t)n;
			if (!c->vars[at].line && c->vars[w].line)
				at = w;
		}
		cfg_diag_add(c, c->vars[at].line, false,
			     "parameter %s: recursive expansion loop: %s", c->vars[at].name,
			     chain);
		return NULL;
	}
	case CFG_VAR_NEW:
	case CFG_VAR_STATE_MAX:
		break;
	}
	if (c->stack_len >= CFG_DEPTH_MAX + 6) {
		cfg_diag_add(c, c->vars[v].line, false,
			     "parameter %s: unreasonable macro call nesting: \"%s\"",
			     c->vars[v].name, c->vars[v].name);
		c->vars[v].state = CFG_VAR_FAILED;
		return NULL;
	}

	c->vars[v].state = CFG_VAR_BUSY;
	c->stack[c->stack_len++] = v;
	struct cfg_owner o = { v };
	struct cfg_buf b = { 0 };
	int rc = 0;
	const char *raw = c->vars[v].raw; /* owned by the var; vars move, strings do not */
	enum mx_param_id id = c->vars[v].def ? c->vars[v].def->id : MX_P_MAX;

	if (raw) {
		rc = cfg_expand(c, o, raw, strlen(raw), &b);
	} else if (id == MX_P_MYHOSTNAME) {
		/* Postfix's check_myhostname(): the system's name; without a dot, add the
		 * configured mydomain, or "localdomain". */
		char host[HOST_NAME_MAX + 2] = "";
		if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
			cfg_diag_add(c, 0, false,
				     "parameter myhostname: cannot find the system's host name "
				     "(%s); set myhostname",
				     strerror(errno ? errno : ENOENT));
			rc = -1;
		} else {
			cfg_buf_str(&b, host);
			if (!strchr(host, '.')) {
				size_t d = cfg_find(c, "mydomain", 8);
				const char *dom = "localdomain";
				if (d != SIZE_MAX && c->vars[d].line)
					dom = cfg_resolve(c, d);
				if (!dom)
					rc = -1;
				cfg_buf_add(&b, ".", 1);
				cfg_buf_str(&b, dom ? dom : "");
			}
		}
	} else if (id == MX_P_MYDOMAIN) {
		/* Postfix's check_mydomainname(): myhostname minus its first label. */
		size_t h = cfg_find(c, "myhostname", 10);
		const char *host = h == SIZE_MAX ? NULL : cfg_resolve(c, h);
		if (!host) {
			rc = -1;
		} else {
			const char *dot = strchr(host, '.');
			cfg_buf_str(&b, dot ? dot + 1 : "localdomain");
		}
	}

	c->stack_len--;
	if (rc == 0 && b.oom) {
		c->oom = true;
		rc = -1;
	}
	if (rc == 0 && b.too_long) {
		cfg_diag_add(c, c->vars[v].line, false,
			     "parameter %s: value longer than %u bytes after expansion",
			     c->vars[v].name, CFG_VALUE_MAX);
		rc = -1;
	}
	if (rc == 0 && b.len > CFG_EXPAND_TOTAL - c->expanded_total) {
		cfg_diag_add(c, c->vars[v].line, false,
			     "parameter %s: all values together are longer than %u bytes after "
			     "expansion",
			     c->vars[v].name, CFG_EXPAND_TOTAL);
		rc = -1;
	}
	char *value = rc == 0 ? cfg_buf_take(&b) : NULL;
	if (rc == 0 && !value)
		c->oom = true;
	cfg_buf_free(&b);
	if (!value) {
		c->vars[v].state = CFG_VAR_FAILED;
		return NULL;
	}
	c->expanded_total += strlen(value);
	c->vars[v].value = value;
	c->vars[v].state = CFG_VAR_DONE;
	return value;
}

/* Call fn for every $name, ${name and $(name in text, in taken and untaken branches alike
 * (Postfix's MAC_EXP_FLAG_SCAN view, for "unused parameter"). */
static void cfg_scan_refs(struct cfg_ctx *c, const char *text,
			  void (*fn)(struct cfg_ctx *, size_t, void *), void *arg)
{
	for (const char *p = text; (p = strchr(p, '$')) != NULL;) {
		p++;
		if (*p == '$') {
			p++;
			continue;
		}
		if (*p == '{' || *p == '(') {
			p++;
			while (mx_ctype_is_space(*p))
				p++;
		}
		const char *name = p;
		while (cfg_is_name_char(*p))
			p++;
		size_t v = p > name ? cfg_find(c, name, (size_t)(p - name)) : SIZE_MAX;
		if (v != SIZE_MAX)
			fn(c, v, arg);
	}
}

static void cfg_mark_used(struct cfg_ctx *c, size_t v, void *arg)
{
	(void)arg;
	c->vars[v].used = true;
}

struct cfg_dep_arg {
	bool *found;
	unsigned depth;
};

static void cfg_dep_visit(struct cfg_ctx *c, size_t v, void *arg);

/* Walk what var v refers to (its $names, or for a computed default the parameter it is
 * computed from); *found is set when one of them, directly or not, failed. */
static void cfg_dep_walk(struct cfg_ctx *c, size_t v, bool *found, unsigned depth)
{
	struct cfg_var *var = &c->vars[v];
	if (*found || var->dep_visit || depth > CFG_DEPTH_MAX)
		return;
	var->dep_visit = true;
	size_t next = SIZE_MAX;
	if (var->raw) {
		struct cfg_dep_arg arg = { found, depth + 1 };
		cfg_scan_refs(c, var->raw, cfg_dep_visit, &arg);
		return;
	} else if (var->def && var->def->id == MX_P_MYDOMAIN) {
		next = cfg_find(c, "myhostname", 10);
	} else if (var->def && var->def->id == MX_P_MYHOSTNAME) {
		next = cfg_find(c, "mydomain", 8);
		if (next != SIZE_MAX && !c->vars[next].line)
			next = SIZE_MAX;
	}
	if (next != SIZE_MAX) {
		if (c->vars[next].bad || c->vars[next].state == CFG_VAR_FAILED)
			*found = true;
		else
			cfg_dep_walk(c, next, found, depth + 1);
	}
}

static void cfg_dep_visit(struct cfg_ctx *c, size_t v, void *argp)
{
	struct cfg_dep_arg *arg = argp;
	if (c->vars[v].bad || c->vars[v].state == CFG_VAR_FAILED)
		*arg->found = true;
	else
		cfg_dep_walk(c, v, arg->found, arg->depth);
}

/* Does var v refer, directly or not, to a value that already failed? Then a failure of its
 * default is a consequence, reported at the source. */
static bool cfg_refers_to_bad(struct cfg_ctx *c, size_t v)
{
	for (size_t k = 0; k < c->nvars; k++)
		c->vars[k].dep_visit = false;
	bool found = false;
	cfg_dep_walk(c, v, &found, 0);
	return found;
}

/* ---------------------------------------------------------------------------------------
 * Validation and the struct. */

struct mx_config_impl {
	struct mx_config pub; /* first: the public view is the same pointer */
	char *values[MX_P_MAX];
	unsigned lines[MX_P_MAX]; /* where each was set; 0: its default */
	/* The parameters smtpd_restriction_classes names (user-defined, so not in
	 * mx_params): name and expanded value, for mx_config_get_any(), and their lines. */
	char **class_names, **class_values;
	unsigned *class_lines;
	size_t nclasses;
};

/* Where a message about known parameter `id` goes. */
struct cfg_param_ref {
	struct cfg_ctx *c;
	size_t var;
	const struct mx_param_def *def;
	const char *value;
};

static void cfg_param_error(const struct cfg_param_ref *r, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cfg_param_error(const struct cfg_param_ref *r, bool warning, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const struct cfg_var *var = &r->c->vars[r->var];
	/* The famous main.cf trap: "name = value # comment" keeps the comment. */
	const char *hint = !warning && var->raw && strstr(var->raw, " #")
				   ? " (a '#' after a value is not a comment in main.cf syntax)"
				   : "";
	const char *src = var->line ? "" : " (the default)";
	cfg_diag_add(r->c, var->line, warning, "%s%s%s", msg, hint, warning ? "" : src);
}

static int cfg_parse_int(const struct cfg_param_ref *r, int64_t max_default, int64_t *out)
{
	const char *s = r->value;
	const char *d = s + (*s == '-' || *s == '+');
	size_t n = strspn(d, "0123456789");
	size_t zeros = strspn(d, "0");
	if (n == 0 || d[n] != '\0' || n - (zeros < n ? zeros : n - 1) > 18) {
		cfg_param_error(r, false, "bad numerical configuration: %s = %.*s%s", r->def->name,
				CFG_SHOW(s));
		return -1;
	}
	int64_t v = strtoll(d + (zeros < n ? zeros : n - 1), NULL, 10);
	if (*s == '-')
		v = -v;
	int64_t max = r->def->max ? r->def->max : max_default;
	if (v > max_default) {
		cfg_param_error(r, false, "bad numerical configuration: %s = %.*s%s", r->def->name,
				CFG_SHOW(s));
		return -1;
	}
	if (v < r->def->min) {
		cfg_param_error(r, false, "invalid %s parameter value %lld < %lld", r->def->name,
				(long long)v, (long long)r->def->min);
		return -1;
	}
	if (v > max) {
		cfg_param_error(r, false, "invalid %s parameter value %lld > %lld", r->def->name,
				(long long)v, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* Postfix's conv_time(): digits and at most one unit letter (s m h d w). */
static int cfg_parse_time(const struct cfg_param_ref *r, int64_t *out)
{
	const char *s = r->value;
	size_t n = strspn(s, "0123456789");
	char unit = s[n] ? s[n] : 's';
	int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600
		     : unit == 'd' ? 86400 : unit == 'w' ? 604800 : 0;
	if (n == 0 || n > 10 || (s[n] && s[n + 1]) || mult == 0 ||
	    strtoll(s, NULL, 10) > INT_MAX / mult) {
		cfg_param_error(r, false, "parameter %s: bad time value or unit: %.*s%s",
				r->def->name, CFG_SHOW(s));
		return -1;
	}
	int64_t v = strtoll(s, NULL, 10) * mult;
	if (v < r->def->min) {
		cfg_param_error(r, false, "invalid %s: %lld (min %lld)", r->def->name,
				(long long)v, (long long)r->def->min);
		return -1;
	}
	if (r->def->max && v > r->def->max) {
		cfg_param_error(r, false, "invalid %s: %lld (max %lld)", r->def->name,
				(long long)v, (long long)r->def->max);
		return -1;
	}
	*out = v;
	return 0;
}

static int cfg_parse_bool(const struct cfg_param_ref *r, bool *out)
{
	if (strcasecmp(r->value, "yes") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(r->value, "no") == 0) {
		*out = false;
		return 0;
	}
	cfg_param_error(r, false, "bad boolean configuration: %s = %.*s%s", r->def->name,
			CFG_SHOW(r->value));
	return -1;
}

/* Postfix's valid_hostname(), without the trailing-dot allowance. */
static const char *cfg_hostname_problem(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool non_numeric = false;
	if (len > 255)
		return "longer than 255 characters";
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0)
				return "empty label";
			if (label > 63)
				return "label longer than 63 characters";
			if (s[i - 1] == '-')
				return "label ends with '-'";
			label = 0;
			continue;
		}
		if (ch == '-' && label == 0)
			return "label starts with '-'";
		if (!mx_ctype_is_hostname(ch))
			return "invalid character";
		if (!mx_ctype_is_digit(ch))
			non_numeric = true;
		label++;
	}
	return non_numeric ? NULL : "numeric name (an address is not a host name)";
}

static int cfg_check_string_length(const struct cfg_param_ref *r)
{
	size_t len = strlen(r->value);
	if (r->def->min && len < (size_t)r->def->min) {
		cfg_param_error(r, false, "bad string length %zu < %lld: %s = %.*s%s", len,
				(long long)r->def->min, r->def->name, CFG_SHOW(r->value));
		return -1;
	}
	if (r->def->max && len > (size_t)r->def->max) {
		cfg_param_error(r, false, "bad string length %zu > %lld: %s = %.*s%s", len,
				(long long)r->def->max, r->def->name, CFG_SHOW(r->value));
		return -1;
	}
	return 0;
}

static int cfg_parse_listen(const struct cfg_param_ref *r, struct mx_config *cfg)
{
	const char *cur = r->value, *p;
	size_t n;
	cfg->listen_count = 0;
	while ((n = mx_list_next(&cur, &p)) > 0) {
		char tok[128];
		if (n >= sizeof(tok)) {
			cfg_param_error(r, false, "parameter %s: bad address \"%.40s...\"",
					r->def->name, p);
			return -1;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		char orig[128];
		memcpy(orig, tok, n + 1);

		char *host = tok, *port;
		if (tok[0] == '[') {
			char *close = strchr(tok, ']');
			if (!close || close[1] != ':') {
				cfg_param_error(r, false,
						"parameter %s: bad address \"%s\": expected "
						"[IPV6]:PORT",
						r->def->name, tok);
				return -1;
			}
			*close = '\0';
			host = tok + 1;
			port = close + 2;
		} else {
			char *colon = strrchr(tok, ':');
			if (!colon || strchr(tok, ':') != colon) {
				cfg_param_error(r, false,
						"parameter %s: bad address \"%s\": expected "
						"ADDRESS:PORT or [IPV6]:PORT",
						r->def->name, tok);
				return -1;
			}
			*colon = '\0';
			port = colon + 1;
		}
		struct mx_inet_addr a;
		bool v6 = tok[0] == '[';
		if (!mx_inet_parse(host, &a) || (a.family == AF_INET6) != v6) {
			cfg_param_error(r, false,
					"parameter %s: bad address \"%s\" in \"%s\": a numeric "
					"%s address is required%s",
					r->def->name, host, orig, v6 ? "IPv6" : "IPv4",
					!v6 && strchr(host, ':') ? " (write IPv6 as [ADDR]:PORT)"
					: !v6 && (!*host || !strcmp(host, "*"))
						? " (0.0.0.0 or [::] means every address)"
						: "");
			return -1;
		}
		size_t pl = strlen(port);
		long pv = pl && pl <= 5 && strspn(port, "0123456789") == pl ? atol(port) : 0;
		if (pv < 1 || pv > 65535) {
			cfg_param_error(r, false, "parameter %s: bad port \"%s\" for %s%s%s",
					r->def->name, port, v6 ? "[" : "", host, v6 ? "]" : "");
			return -1;
		}
		for (unsigned i = 0; i < cfg->listen_count; i++) {
			struct mx_inet_addr b;
			mx_inet_parse(cfg->listen[i].host, &b);
			if (cfg->listen[i].port == pv && b.family == a.family &&
			    memcmp(a.bytes, b.bytes, sizeof(a.bytes)) == 0) {
				cfg_param_error(r, false, "parameter %s: %s%s%s:%ld is listed twice",
						r->def->name, v6 ? "[" : "", host, v6 ? "]" : "",
						pv);
				return -1;
			}
		}
		if (cfg->listen_count == MX_CONFIG_MAX_LISTEN) {
			cfg_param_error(r, false, "parameter %s: more than %d addresses",
					r->def->name, MX_CONFIG_MAX_LISTEN);
			return -1;
		}
		struct mx_listen_addr *la = &cfg->listen[cfg->listen_count++];
		/* inet_pton() took it, so it is at most INET6_ADDRSTRLEN - 1 bytes. */
		size_t hl = strlen(host);
		assert(hl < sizeof(la->host));
		memcpy(la->host, host, hl + 1);
		la->port = (uint16_t)pv;
	}
	if (cfg->listen_count == 0) {
		cfg_param_error(r, false, "parameter %s: at least one address is required",
				r->def->name);
		return -1;
	}
	return 0;
}

static bool cfg_word_in_list(const char *list, const char *word)
{
	size_t wl = strlen(word), n;
	const char *p;
	while ((n = mx_list_next(&list, &p)) > 0)
		if (n == wl && strncasecmp(p, word, n) == 0)
			return true;
	return false;
}

static int cfg_apply_discard_ehlo(const struct cfg_param_ref *r, struct smtp_config *smtp)
{
	const char *cur = r->value, *p;
	size_t n;
	while ((n = mx_list_next(&cur, &p)) > 0) {
		if (n == 10 && strncasecmp(p, "pipelining", n) == 0)
			smtp->enable_pipelining = false;
		else if (n == 8 && strncasecmp(p, "chunking", n) == 0)
			smtp->enable_chunking = false;
		else if (n == 8 && strncasecmp(p, "smtputf8", n) == 0)
			smtp->enable_smtputf8 = false;
		else if (n == 8 && strncasecmp(p, "8bitmime", n) == 0)
			smtp->enable_8bitmime = false;
		else if (n == 3 && strncasecmp(p, "dsn", n) == 0)
			smtp->enable_dsn = false;
		else if (!(n == 14 && strncasecmp(p, "silent-discard", n) == 0))
			cfg_param_error(r, true,
					"%s: \"%.*s\" has no effect in mxgate (it can discard "
					"pipelining, chunking, smtputf8, 8bitmime and dsn)",
					r->def->name, (int)(n > 40 ? 40 : n), p);
	}
	return 0;
}

/* relayhost (Postfix's nexthop syntax): [ADDRESS]:PORT, ADDRESS:PORT, [ADDRESS], ADDRESS,
 * [IPV6]:PORT, [IPV6]; empty means no relay. mxgate resolves no names: a host name is
 * refused here rather than failing at the first delivery. */
static int cfg_parse_relayhost(const struct cfg_param_ref *r, struct mx_config *cfg)
{
	const char *v = r->value;
	cfg->relayhost_addr[0] = '\0';
	cfg->relayhost_port = 25;
	if (!*v)
		return 0;
	char host[64];
	const char *port = NULL;
	size_t hl;
	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (!close || (close[1] != '\0' && close[1] != ':')) {
			cfg_param_error(r, false,
					"parameter relayhost: bad value \"%.*s%s\": expected "
					"[ADDRESS]:PORT, ADDRESS:PORT or [IPV6]:PORT",
					CFG_SHOW(v));
			return -1;
		}
		hl = (size_t)(close - v - 1);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v + 1, hl);
		host[hl] = '\0';
		if (strncasecmp(host, "ipv6:", 5) == 0)
			memmove(host, host + 5, strlen(host + 5) + 1);
		port = close[1] == ':' ? close + 2 : NULL;
	} else {
		const char *colon = strchr(v, ':');
		if (colon && strchr(colon + 1, ':')) {
			cfg_param_error(r, false,
					"parameter relayhost: bad value \"%.*s%s\": an IPv6 address "
					"is written in brackets: [IPV6]:PORT",
					CFG_SHOW(v));
			return -1;
		}
		hl = colon ? (size_t)(colon - v) : strlen(v);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v, hl);
		host[hl] = '\0';
		port = colon ? colon + 1 : NULL;
	}
	unsigned char buf[16];
	if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
		cfg_param_error(r, false,
				"parameter relayhost: \"%.*s%s\" is not a numeric IP address: "
				"mxgate does no DNS lookups; write [192.0.2.25]:25 or [2001:db8::25]:25",
				CFG_SHOW(host));
		return -1;
	}
	if (port) {
		char *end = NULL;
		unsigned long p = strtoul(port, &end, 10);
		if (!*port || *end || p == 0 || p > 65535 || *port < '0' || *port > '9') {
			cfg_param_error(r, false, "parameter relayhost: bad port \"%.*s%s\"",
					CFG_SHOW(port));
			return -1;
		}
		cfg->relayhost_port = (uint16_t)p;
	}
	snprintf(cfg->relayhost_addr, sizeof(cfg->relayhost_addr), "%s", host);
	return 0;
}

/* Check one known parameter's expanded value and store what it means. */
/* An absolute path without control characters, shorter than PATH_MAX. */
static int cfg_check_path(const struct cfg_param_ref *r, const char *path, size_t len)
{
	if (len == 0 || path[0] != '/') {
		cfg_param_error(r, false, "parameter %s: not an absolute path: \"%.*s%s\"",
				r->def->name, CFG_SHOW(path));
		return -1;
	}
	if (len >= PATH_MAX) {
		cfg_param_error(r, false, "parameter %s: path longer than %d bytes", r->def->name,
				PATH_MAX - 1);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)path[i];
		if (ch < 0x20 || ch == 0x7f) {
			cfg_param_error(r, false, "parameter %s: control character in path",
					r->def->name);
			return -1;
		}
	}
	return 0;
}

/* mxgate_spool_directory: one or more spool directories (commas and/or white space between
 * them), each with its own writer thread, for throughput across devices. The strings are
 * copies owned by the config (freed with it). */
static int cfg_parse_spool_dirs(const struct cfg_param_ref *r, struct mx_config *cfg)
{
	const char *cur = r->value, *p;
	size_t len;
	cfg->spool_dir_count = 0;
	while ((len = mx_list_next(&cur, &p)) > 0) {
		if (cfg_check_path(r, p, len) != 0)
			return -1;
		if (cfg->spool_dir_count == MX_CONFIG_MAX_SPOOLS) {
			cfg_param_error(r, false, "parameter %s: more than %d spool directories",
					r->def->name, MX_CONFIG_MAX_SPOOLS);
			return -1;
		}
		for (unsigned i = 0; i < cfg->spool_dir_count; i++) {
			if (strlen(cfg->spool_dirs[i]) == len && memcmp(cfg->spool_dirs[i], p, len) == 0) {
				cfg_param_error(r, false, "parameter %s: %.*s is listed twice",
						r->def->name, (int)len, p);
				return -1;
			}
		}
		char *dir = strndup(p, len);
		if (!dir) {
			r->c->oom = true;
			return -1;
		}
		cfg->spool_dirs[cfg->spool_dir_count++] = dir;
	}
	if (cfg->spool_dir_count == 0)
		return cfg_check_path(r, r->value, 0); /* "not an absolute path" */
	cfg->spool_directory = cfg->spool_dirs[0];
	return 0;
}

/* Debian's Postfix (MYORIGIN_FROM_FILE, mail_params.c) takes "myorigin = /etc/mailname"
 * as the first line of that file, blanks trimmed. Returns the name (malloc'd) or NULL
 * after reporting why. */
static char *cfg_myorigin_from_file(const struct cfg_param_ref *r)
{
	char line[512];
	FILE *f = fopen(r->value, "re");
	if (!f) {
		cfg_param_error(r, false, "parameter myorigin: %s: %s", r->value, strerror(errno));
		return NULL;
	}
	bool got = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	const char *p = got ? line : "";
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strcspn(p, "\r\n");
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0) {
		cfg_param_error(r, false, "parameter myorigin: file %s is empty", r->value);
		return NULL;
	}
	char *name = strndup(p, n);
	if (!name)
		r->c->oom = true;
	return name;
}

static int cfg_apply(struct cfg_ctx *c, size_t v, struct mx_config_impl *impl,
		     const char *pdms)
{
	struct mx_config *cfg = &impl->pub;
	const struct mx_param_def *def = c->vars[v].def;
	const char *value = impl->values[def->id];
	struct cfg_param_ref r = { .c = c, .var = v, .def = def, .value = value };
	char err[512];
	int64_t n = 0;
	bool b = false;

	if (def->id == MX_P_MYORIGIN && value && value[0] == '/') {
		char *name = cfg_myorigin_from_file(&r);
		if (!name)
			return -1;
		free(impl->pub.myorigin_from_file);
		impl->pub.myorigin_from_file = name;
		value = r.value = name;
	}
	switch (def->type) {
	case MX_PT_HOSTNAME: {
		if (cfg_check_string_length(&r) != 0)
			return -1;
		const char *why = cfg_hostname_problem(value);
		if (why) {
			cfg_param_error(&r, false, "parameter %s: bad parameter value: %.*s%s: %s",
					def->name, CFG_SHOW(value), why);
			return -1;
		}
		break;
	}
	case MX_PT_TEXT:
		if (cfg_check_string_length(&r) != 0)
			return -1;
		for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
			/* RFC 5321 4.2: reply text is 1*(%d09 / %d32-126); the greeting
			 * comes before SMTPUTF8 could be negotiated. */
			if (*p != '\t' && (*p < 0x20 || *p > 0x7e)) {
				cfg_param_error(&r, false,
						"parameter %s: character 0x%02x is not printable "
						"ASCII",
						def->name, *p);
				return -1;
			}
		}
		break;
	case MX_PT_LEVEL: {
		uint64_t lv[3];
		if (!cfg_parse_level(value, lv)) {
			cfg_param_error(&r, false,
					"parameter %s: malformed compatibility level syntax: "
					"\"%.*s%s\"",
					def->name, CFG_SHOW(value));
			return -1;
		}
		size_t mn = cfg_find(c, "mynetworks", 10);
		if (lv[0] < 2 && mn != SIZE_MAX && !c->vars[mn].line)
			cfg_param_error(&r, true,
					"%s = %s: mynetworks stays \"%s\" (mxgate computes no "
					"mynetworks_style networks); set mynetworks if you rely on "
					"the old subnet default",
					def->name, value, mx_params[MX_P_MYNETWORKS].def);
		break;
	}
	case MX_PT_BOOL:
		if (cfg_parse_bool(&r, &b) != 0)
			return -1;
		break;
	case MX_PT_INT:
		if (cfg_parse_int(&r, INT_MAX, &n) != 0)
			return -1;
		break;
	case MX_PT_SIZE:
		if (cfg_parse_int(&r, LONG_MAX < INT64_MAX ? LONG_MAX : INT64_MAX, &n) != 0)
			return -1;
		break;
	case MX_PT_TIME:
		if (cfg_parse_time(&r, &n) != 0)
			return -1;
		break;
	case MX_PT_NETLIST: {
		struct netlist *nl = NULL;
		int rc = netlist_parse(value, &nl, err, sizeof(err));
		if (rc == -ENOMEM) {
			c->oom = true;
			return -1;
		}
		if (rc != 0) {
			cfg_param_error(&r, false, "parameter %s: %s", def->name, err);
			return -1;
		}
		if (def->id == MX_P_MYNETWORKS)
			cfg->mynetworks = nl;
		else if (def->id == MX_P_SMTPD_AUTHORIZED_XCLIENT_HOSTS)
			cfg->xclient_hosts = nl;
		else
			cfg->bare_newline_exclusions = nl;
		break;
	}
	case MX_PT_DOMAINS: {
		/* mydestination never matches subdomains in Postfix (resolve_local() uses
		 * no parent style); relay_domains does while it is listed in
		 * parent_domain_matches_subdomains. */
		bool parent = def->id == MX_P_RELAY_DOMAINS && cfg_word_in_list(pdms, def->name);
		struct domain_list *dl = NULL;
		int rc = domain_list_parse(value, parent, &dl, err, sizeof(err));
		if (rc == -ENOMEM) {
			c->oom = true;
			return -1;
		}
		if (rc != 0) {
			cfg_param_error(&r, false, "parameter %s: %s", def->name, err);
			return -1;
		}
		if (def->id == MX_P_MYDESTINATION)
			cfg->mydestination = dl;
		else
			cfg->relay_domains = dl;
		break;
	}
	case MX_PT_WORDS:
		break;
	case MX_PT_PATH:
		if (!*value && def->min == 0)
			break;
		if (def->id == MX_P_MXGATE_SPOOL_DIRECTORY)
			return cfg_parse_spool_dirs(&r, cfg);
		if (cfg_check_path(&r, value, strlen(value)) != 0)
			return -1;
		break;
	case MX_PT_CHOICE: {
		if (def->id == MX_P_SMTPD_FORBID_BARE_NEWLINE && strcasecmp(value, "no") == 0) {
			cfg_param_error(&r, false,
					"parameter %s: \"no\" is not supported: mxgate never lets a "
					"bare <LF> end the message (SMTP smuggling); use normalize "
					"(the default) or reject",
					def->name);
			return -1;
		}
		bool ok = false;
		for (const char *p = def->choices; *p;) {
			size_t len = strcspn(p, "|");
			if (len == strlen(value) && strncasecmp(p, value, len) == 0)
				ok = true;
			p += len + (p[len] == '|');
		}
		if (!ok) {
			char expected[128];
			snprintf(expected, sizeof(expected), "%s", def->choices);
			for (char *p = expected; *p; p++)
				if (*p == '|')
					*p = ' ';
			cfg_param_error(&r, false,
					"parameter %s: bad value \"%.*s%s\" (expected one of: %s)",
					def->name, CFG_SHOW(value), expected);
			return -1;
		}
		break;
	}
	case MX_PT_LISTEN:
		return cfg_parse_listen(&r, cfg);
	case MX_PT_TYPE_MAX:
		break;
	}

	struct smtp_config *smtp = &cfg->smtp;
	switch (def->id) {
	case MX_P_MYHOSTNAME:
		cfg->myhostname = impl->values[def->id];
		break;
	case MX_P_MYDOMAIN:
		cfg->mydomain = impl->values[def->id];
		break;
	case MX_P_MYORIGIN:
		cfg->myorigin = cfg->myorigin_from_file ? cfg->myorigin_from_file
							: impl->values[def->id];
		break;
	case MX_P_MAIL_NAME:
		cfg->mail_name = impl->values[def->id];
		break;
	case MX_P_SMTPD_BANNER: {
		cfg->smtpd_banner = impl->values[def->id];
		/* RFC 5321 4.2: Greeting = "220 " (Domain / address-literal) [ SP text ]. */
		const char *host = impl->values[MX_P_MYHOSTNAME];
		size_t hl = host ? strlen(host) : 0;
		if (host && (strncasecmp(value, host, hl) != 0 ||
			     (value[hl] != '\0' && value[hl] != ' ')))
			cfg_param_error(&r, true,
					"parameter %s does not start with $myhostname (%s); RFC "
					"5321 section 4.2 wants the server's name first",
					def->name, host);
		break;
	}
	case MX_P_MESSAGE_SIZE_LIMIT:
		smtp->message_size_limit = (size_t)n;
		break;
	case MX_P_HEADER_SIZE_LIMIT:
		smtp->header_size_limit = (size_t)n;
		break;
	case MX_P_LINE_LENGTH_LIMIT:
		smtp->line_length_limit = (size_t)n;
		break;
	case MX_P_HOPCOUNT_LIMIT:
		smtp->hopcount_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_RECIPIENT_LIMIT:
		smtp->recipient_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_SOFT_ERROR_LIMIT:
		smtp->soft_error_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_HARD_ERROR_LIMIT:
		smtp->hard_error_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_JUNK_COMMAND_LIMIT:
		smtp->junk_command_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_ERROR_SLEEP_TIME:
		smtp->error_sleep_ms = (unsigned)n * 1000u;
		break;
	case MX_P_SMTPD_TIMEOUT:
		cfg->smtpd_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTPD_PER_REQUEST_DEADLINE:
		cfg->smtpd_per_request_deadline = b;
		break;
	case MX_P_SMTPD_MIN_DATA_RATE:
		cfg->smtpd_min_data_rate = (unsigned)n;
		break;
	case MX_P_SMTPD_RECIPIENT_OVERSHOOT_LIMIT:
		smtp->recipient_overshoot_limit = (unsigned)n;
		break;
	case MX_P_SMTPD_FORBID_BARE_NEWLINE:
		smtp->bare_newline = strcasecmp(value, "reject") == 0
					     ? SMTP_BARE_NEWLINE_REJECT
					     : SMTP_BARE_NEWLINE_NORMALIZE;
		break;
	case MX_P_SMTPD_FORBID_UNAUTH_PIPELINING:
		smtp->forbid_unauth_pipelining = b;
		break;
	case MX_P_SMTPD_HELO_REQUIRED:
		smtp->helo_required = b;
		break;
	case MX_P_SOFT_BOUNCE:
		smtp->soft_bounce = b;
		break;
	case MX_P_DISABLE_VRFY_COMMAND:
		smtp->disable_vrfy_command = b;
		break;
	case MX_P_STRICT_RFC821_ENVELOPES:
		smtp->strict_rfc821_envelopes = b;
		break;
	case MX_P_SMTPUTF8_ENABLE:
		smtp->enable_smtputf8 = smtp->enable_smtputf8 && b;
		break;
	case MX_P_SMTPD_DISCARD_EHLO_KEYWORDS:
		return cfg_apply_discard_ehlo(&r, smtp);
	case MX_P_MAILLOG_FILE:
		cfg->maillog_file = impl->values[def->id];
		break;
	case MX_P_MXGATE_TRANSPORT:
		cfg->transport = strcasecmp(value, "dpdk") == 0 ? MX_TRANSPORT_DPDK
								 : MX_TRANSPORT_KERNEL;
		break;
	case MX_P_MXGATE_WORKERS:
		cfg->workers = (unsigned)n;
		break;
	case MX_P_MXGATE_MAX_CONNECTIONS:
		cfg->max_connections = (unsigned)n;
		break;
	case MX_P_MXGATE_SPOOL_COMMIT_DELAY:
		cfg->spool_commit_delay_ms = (unsigned)n;
		break;
	case MX_P_MXGATE_SPOOL_QUOTA:
		cfg->spool_quota = (uint64_t)n;
		break;
	case MX_P_RELAYHOST:
		return cfg_parse_relayhost(&r, cfg);
	case MX_P_MXGATE_RELAY_PROTOCOL:
		cfg->relay_lmtp = strcasecmp(value, "lmtp") == 0;
		break;
	case MX_P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT:
		cfg->relay_concurrency = (unsigned)n;
		break;
	case MX_P_SMTP_CONNECT_TIMEOUT:
		cfg->smtp_connect_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_HELO_TIMEOUT:
		cfg->smtp_helo_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_MAIL_TIMEOUT:
		cfg->smtp_mail_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_RCPT_TIMEOUT:
		cfg->smtp_rcpt_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_DATA_INIT_TIMEOUT:
		cfg->smtp_data_init_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_DATA_XFER_TIMEOUT:
		cfg->smtp_data_xfer_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_DATA_DONE_TIMEOUT:
		cfg->smtp_data_done_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_QUIT_TIMEOUT:
		cfg->smtp_quit_timeout_s = (unsigned)n;
		break;
	case MX_P_SMTP_CONNECTION_CACHE_TIME_LIMIT:
		cfg->smtp_connection_cache_time_s = (unsigned)n;
		break;
	case MX_P_MINIMAL_BACKOFF_TIME:
		cfg->minimal_backoff_s = (unsigned)n;
		break;
	case MX_P_MAXIMAL_BACKOFF_TIME:
		cfg->maximal_backoff_s = (unsigned)n;
		break;
	case MX_P_QUEUE_RUN_DELAY:
		cfg->queue_run_delay_s = (unsigned)n;
		break;
	case MX_P_MAXIMAL_QUEUE_LIFETIME:
		cfg->maximal_queue_lifetime_s = (unsigned)n;
		break;
	case MX_P_BOUNCE_QUEUE_LIFETIME:
		cfg->bounce_queue_lifetime_s = (unsigned)n;
		break;
	case MX_P_BOUNCE_SIZE_LIMIT:
		cfg->bounce_size_limit = (uint64_t)n;
		break;
	case MX_P_TRANSPORT_MAPS:
		cfg->transport_maps = impl->values[def->id];
		break;
	case MX_P_RECIPIENT_DELIMITER:
		cfg->recipient_delimiter = impl->values[def->id];
		break;
	case MX_P_MXGATE_TABLE_DIRECTORY:
		cfg->table_directory = impl->values[def->id];
		break;
	case MX_P_MXGATE_CONTROL_SOCKET:
		cfg->control_socket = impl->values[def->id];
		break;
	case MX_P_MXGATE_SPOOL_SEGMENT_SIZE:
		cfg->spool_segment_size = (uint64_t)n;
		break;
	default:
		break;
	}
	return 0;
}

void mx_config_free(struct mx_config *cfg)
{
	if (!cfg)
		return;
	struct mx_config_impl *impl = (struct mx_config_impl *)cfg;
	netlist_free(cfg->mynetworks);
	netlist_free(cfg->bare_newline_exclusions);
	netlist_free(cfg->xclient_hosts);
	for (size_t i = 0; i < impl->nclasses; i++) {
		free(impl->class_names[i]);
		free(impl->class_values[i]);
	}
	free(impl->class_names);
	free(impl->class_values);
	free(impl->class_lines);
	domain_list_free(cfg->mydestination);
	domain_list_free(cfg->relay_domains);
	for (unsigned i = 0; i < cfg->spool_dir_count; i++)
		free(cfg->spool_dirs[i]);
	free(cfg->control_socket_default);
	free(cfg->myorigin_from_file);
	for (size_t i = 0; i < MX_P_MAX; i++)
		free(impl->values[i]);
	free(cfg->source_path);
	free(impl);
}

bool mx_config_word_listed(const struct mx_config *cfg, const char *param, const char *word)
{
	const char *list = mx_config_get(cfg, param);
	return list && cfg_word_in_list(list, word);
}

const char *mx_config_get(const struct mx_config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	const struct mx_param_def *def = mx_param_find(name, strlen(name));
	if (!def)
		return NULL;
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	return impl->values[def->id];
}

/* smtpd_restriction_classes = name1, name2: each name is a parameter of the file whose
 * value is a restriction list. A name without a definition is left out here; compiling the
 * policy reports it ("class has no definition"). */
static void cfg_load_classes(struct cfg_ctx *c, struct mx_config_impl *impl)
{
	const char *p = impl->values[MX_P_SMTPD_RESTRICTION_CLASSES], *w;
	size_t wn;
	while ((wn = mx_list_next(&p, &w)) > 0) {
		size_t v = cfg_find(c, w, wn);
		if (v == SIZE_MAX || !c->vars[v].line)
			continue;
		c->vars[v].used = true;
		const char *value = cfg_resolve(c, v);
		if (!value)
			continue; /* the expansion error is reported */
		char **names = realloc(impl->class_names, (impl->nclasses + 1) * sizeof(*names));
		if (names)
			impl->class_names = names;
		char **values = realloc(impl->class_values, (impl->nclasses + 1) * sizeof(*values));
		if (values)
			impl->class_values = values;
		unsigned *lines = realloc(impl->class_lines, (impl->nclasses + 1) * sizeof(*lines));
		if (lines)
			impl->class_lines = lines;
		char *n = strndup(w, (size_t)(p - w)), *val = strdup(value);
		if (!names || !values || !lines || !n || !val) {
			free(n);
			free(val);
			c->oom = true;
			return;
		}
		impl->class_names[impl->nclasses] = n;
		impl->class_values[impl->nclasses] = val;
		impl->class_lines[impl->nclasses] = c->vars[v].line;
		impl->nclasses++;
	}
}

unsigned mx_config_line(const struct mx_config *cfg, const char *name)
{
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	const struct mx_param_def *def = mx_param_find(name, strlen(name));
	if (def)
		return impl->lines[def->id];
	for (size_t i = 0; i < impl->nclasses; i++)
		if (strcmp(impl->class_names[i], name) == 0)
			return impl->class_lines[i];
	return 0;
}

const char *mx_config_get_any(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	if (v || !cfg || !name)
		return v;
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	for (size_t i = 0; i < impl->nclasses; i++)
		if (strcmp(impl->class_names[i], name) == 0)
			return impl->class_values[i];
	return NULL;
}

static int cfg_load(const char *text, size_t len, const char *name, struct mx_config **out,
		    FILE *diag, struct cfg_ctx *c)
{
	c->file = name;
	cfg_read(c, text, len);

	/* Every known parameter gets a var: its file value or its default. */
	for (size_t i = 0; i < MX_P_MAX; i++) {
		size_t v = cfg_find(c, mx_params[i].name, strlen(mx_params[i].name));
		if (v == SIZE_MAX) {
			v = cfg_add_var(c, mx_params[i].name, strlen(mx_params[i].name));
			if (v == SIZE_MAX) {
				c->oom = true;
				break;
			}
			c->vars[v].raw = (char *)mx_params[i].def;
		}
	}
	if (c->oom)
		return -ENOMEM;

	/* Names that some value of the file refers to are in use (Postfix's rule for
	 * user-defined parameters). */
	size_t nfile = c->nvars;
	for (size_t v = 0; v < nfile; v++)
		if (c->vars[v].line && c->vars[v].raw)
			cfg_scan_refs(c, c->vars[v].raw, cfg_mark_used, NULL);

	struct mx_config_impl *impl = calloc(1, sizeof(*impl));
	if (!impl)
		return -ENOMEM;
	struct mx_config *cfg = &impl->pub;
	cfg->source_path = strdup(name);
	if (!cfg->source_path)
		c->oom = true;

	/* The engine's flags that several parameters combine into. */
	cfg->smtp.enable_pipelining = true;
	cfg->smtp.enable_chunking = true;
	cfg->smtp.enable_smtputf8 = true;
	cfg->smtp.enable_8bitmime = true;
	cfg->smtp.enable_dsn = true;

	/* Expand and check every known parameter, in table order. */
	const char *pdms = "";
	for (size_t i = 0; i < MX_P_MAX && !c->oom; i++) {
		size_t v = cfg_find(c, mx_params[i].name, strlen(mx_params[i].name));
		size_t mark = c->ndiags;
		const char *value = mx_params[i].raw ? (c->vars[v].raw ? c->vars[v].raw : "")
						     : cfg_resolve(c, v);
		bool ok = value != NULL;
		if (ok) {
			impl->lines[i] = c->vars[v].line;
			impl->values[i] = strdup(value);
			if (!impl->values[i]) {
				c->oom = true;
				break;
			}
			if (i == MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS)
				pdms = impl->values[i];
			ok = cfg_apply(c, v, impl, pdms) == 0;
		}
		if (ok)
			continue;
		/* A default that is wrong only because a configured value it refers to is
		 * wrong ($mynetworks in smtpd_forbid_bare_newline_exclusions, $compatibility_
		 * level in relay_domains): that value's message says it all. Its own messages
		 * are the ones without a line; others (a configured name expanded here for
		 * the first time) stay. */
		if (!c->vars[v].line && cfg_refers_to_bad(c, v))
			cfg_diag_drop_unlined(c, mark);
		c->vars[v].bad = true;
		/* Every failure was reported somewhere. */
		assert(c->errors > 0 || c->oom);
	}

	/* The restriction classes: user-defined parameters, in use because a list names
	 * them. Their values are expanded like any other. */
	if (!c->oom && impl->values[MX_P_SMTPD_RESTRICTION_CLASSES])
		cfg_load_classes(c, impl);

	/* Names mxgate does not know and nothing refers to. */
	for (size_t v = 0; v < nfile; v++) {
		struct cfg_var *var = &c->vars[v];
		if (var->line && !var->def && !var->used)
			cfg_diag_add(c, var->line, true, "unused parameter: %s=%.*s%s", var->name,
				     CFG_SHOW(var->raw ? var->raw : ""));
	}

	/* The control socket lives in the (first) spool directory unless placed elsewhere. */
	if ((!cfg->control_socket || !*cfg->control_socket) && cfg->spool_directory) {
		if (asprintf(&cfg->control_socket_default, "%s/control", cfg->spool_directory) < 0) {
			cfg->control_socket_default = NULL;
			c->oom = true;
		}
		cfg->control_socket = cfg->control_socket_default;
	}

	/* Strings the engine borrows. */
	cfg->smtp.myhostname = cfg->myhostname;
	cfg->smtp.banner = cfg->smtpd_banner;
	cfg->smtp.mail_name = cfg->mail_name;

	cfg_diag_flush(c, diag);
	if (c->oom) {
		mx_config_free(cfg);
		return -ENOMEM;
	}
	if (c->errors) {
		mx_config_free(cfg);
		return -EINVAL;
	}
	*out = cfg;
	return 0;
}

int mx_config_load_string(const char *text, const char *name, struct mx_config **out,
			  FILE *diag)
{
	*out = NULL;
	struct cfg_ctx c = { 0 };
	size_t len = text ? strlen(text) : 0;
	int rc;
	if (len > CFG_FILE_MAX) {
		if (diag)
			fprintf(diag, "%s: file is larger than %u bytes\n", name, CFG_FILE_MAX);
		rc = -EFBIG;
	} else {
		rc = cfg_load(text ? text : "", len, name ? name : "(string)", out, diag, &c);
	}
	cfg_ctx_free(&c);
	return rc;
}

void mx_config_report_failure(FILE *f, const char *prog, const char *path, int rc)
{
	if (rc == -ENOENT)
		fprintf(f, "%s: %s: no such file (name the configuration with -c FILE)\n", prog,
			path);
	else if (rc == -EINVAL)
		fprintf(f, "%s: %s: configuration has errors\n", prog, path);
	else
		fprintf(f, "%s: %s: %s\n", prog, path, strerror(-rc));
}

int mx_config_load(const char *path, struct mx_config **out, FILE *diag)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (diag && e != ENOENT) /* mx_config_report_failure() says that one */
			fprintf(diag, "open %s: %s\n", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		if (diag)
			fprintf(diag, "stat %s: %s\n", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		if (diag)
			fprintf(diag, "%s: not a regular file\n", path);
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	char *buf = malloc(CFG_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, CFG_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			if (diag)
				fprintf(diag, "read %s: %s\n", path, strerror(e));
			free(buf);
			close(fd);
			return -e;
		}
		if (n == 0 || (len += (size_t)n) > CFG_FILE_MAX)
			break;
	}
	close(fd);
	if (len > CFG_FILE_MAX) {
		if (diag)
			fprintf(diag, "%s: file is larger than %u bytes\n", path, CFG_FILE_MAX);
		free(buf);
		return -EFBIG;
	}
	struct cfg_ctx c = { 0 };
	int rc = cfg_load(buf, len, path, out, diag, &c);
	cfg_ctx_free(&c);
	free(buf);
	return rc;
}
