/* mxgate.cf reading and $-expansion (Postfix main.cf syntax).
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
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgmt/config_internal.h"


void cfg_buf_add(struct cfg_buf *b, const char *s, size_t n)
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

void cfg_buf_str(struct cfg_buf *b, const char *s)
{
	cfg_buf_add(b, s, strlen(s));
}

/* The contents as a C string the caller owns ("" when nothing was added). */
char *cfg_buf_take(struct cfg_buf *b)
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

void cfg_buf_free(struct cfg_buf *b)
{
	free(b->p);
	*b = (struct cfg_buf){ 0 };
}

/* ---------------------------------------------------------------------------------------
 * Diagnostics, collected and printed sorted by line. */

void cfg_diag_add(struct cfg_ctx *c, unsigned line, bool warning, const char *fmt, ...)
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

const char *cfg_line_file(const char *file, const char *over_file, unsigned line,
			  unsigned *shown)
{
	if (over_file && line > CFG_OVER_BASE) {
		*shown = line - CFG_OVER_BASE;
		return over_file;
	}
	*shown = line;
	return file;
}

void cfg_diag_flush(struct cfg_ctx *c, FILE *diag)
{
	if (c->ndiags > 1)
		qsort(c->diags, c->ndiags, sizeof(*c->diags), cfg_diag_cmp);
	for (size_t i = 0; i < c->ndiags; i++) {
		if (!diag)
			continue;
		unsigned line;
		const char *file = cfg_line_file(c->file, c->over_file, c->diags[i].line, &line);
		if (line)
			fprintf(diag, "%s:%u: %s\n", file, line, c->diags[i].text);
		else
			fprintf(diag, "%s: %s\n", c->file, c->diags[i].text);
	}
	if (diag && c->oom)
		fprintf(diag, "%s: out of memory\n", c->file);
}

/* Forget the messages without a line number added since diags[mark]. */
void cfg_diag_drop_unlined(struct cfg_ctx *c, size_t mark)
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


static size_t cfg_hash(const char *s, size_t n)
{
	size_t h = 1469598103934665603u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return h;
}

/* The index of `name`, or SIZE_MAX. */
size_t cfg_find(const struct cfg_ctx *c, const char *name, size_t n)
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
size_t cfg_add_var(struct cfg_ctx *c, const char *name, size_t n)
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

void cfg_ctx_free(struct cfg_ctx *c)
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
	if (v != SIZE_MAX) {
		/* Postfix's wording: the line of the new entry, the value it replaces. */
		cfg_diag_add(c, line, true, "overriding earlier entry: %s=%.*s%s", c->vars[v].name,
			     CFG_SHOW(c->vars[v].raw ? c->vars[v].raw : ""));
	}
	cfg_set(c, name, name_len, p, line);
}

size_t cfg_set(struct cfg_ctx *c, const char *name, size_t n, const char *value,
	       unsigned line)
{
	size_t v = cfg_find(c, name, n);
	if (v == SIZE_MAX) {
		v = cfg_add_var(c, name, n);
		if (v == SIZE_MAX) {
			c->oom = true;
			return SIZE_MAX;
		}
	} else if (c->vars[v].raw_owned) {
		free(c->vars[v].raw);
	}
	char *copy = strdup(value);
	if (!copy) {
		c->vars[v].raw = NULL;
		c->vars[v].raw_owned = false;
		c->oom = true;
		return SIZE_MAX;
	}
	c->vars[v].raw = copy;
	c->vars[v].raw_owned = true;
	c->vars[v].line = line;
	return v;
}

void cfg_read(struct cfg_ctx *c, const char *text, size_t len)
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

bool cfg_is_name_char(char ch)
{
	return mx_ctype_is_alnum(ch) || ch == '_';
}


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
bool cfg_parse_level(const char *s, uint64_t lv[3])
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
const char *cfg_resolve(struct cfg_ctx *c, size_t v)
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
void cfg_scan_refs(struct cfg_ctx *c, const char *text,
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

void cfg_mark_used(struct cfg_ctx *c, size_t v, void *arg)
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
bool cfg_refers_to_bad(struct cfg_ctx *c, size_t v)
{
	for (size_t k = 0; k < c->nvars; k++)
		c->vars[k].dep_visit = false;
	bool found = false;
	cfg_dep_walk(c, v, &found, 0);
	return found;
}

