/* Postfix table source formats; see table_parse.h. */
#include "tables/table_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"

void table_text_init(struct table_text *t, const char *data, size_t len)
{
	t->p = data;
	t->end = data + len;
	t->line = 0;
	t->buf = NULL;
	t->cap = 0;
}

void table_text_free(struct table_text *t)
{
	free(t->buf);
	t->buf = NULL;
	t->cap = 0;
}

/* The physical line at t->p (without its newline) in [*s, *e); advances t->p. */
static void table_text_physical(struct table_text *t, const char **s, const char **e)
{
	const char *nl = memchr(t->p, '\n', (size_t)(t->end - t->p));
	*s = t->p;
	*e = nl ? nl : t->end;
	t->p = nl ? nl + 1 : t->end;
	t->line++;
	/* A CRLF line end is a line end. Postfix keeps the CR when a continuation line follows
	 * ("v1\r  more"); mxgate drops it: a CR inside a value could end up inside an SMTP
	 * reply text. */
	if (*e > *s && (*e)[-1] == '\r')
		(*e)--;
}

/* Is the physical line [s, e) empty, blank or a comment? */
static bool table_text_ignorable(const char *s, const char *e)
{
	while (s < e && mx_ctype_is_space(*s))
		s++;
	return s == e || *s == '#';
}

int table_text_next(struct table_text *t, char **line, size_t *len, unsigned *lineno, char *err,
		    size_t errlen)
{
	const char *s, *e;
	size_t n = 0;

	/* Skip to the start of a logical line. A continuation line with nothing to continue
	 * (blanks first, at the start of the file) is joined to nothing: Postfix treats it as
	 * a logical line of its own after stripping, so do we. */
	for (;;) {
		if (t->p >= t->end)
			return 0;
		table_text_physical(t, &s, &e);
		if (!table_text_ignorable(s, e))
			break;
	}
	*lineno = t->line;
	while (s < e && mx_ctype_is_space(*s))
		s++;
	for (;;) {
		size_t add = (size_t)(e - s);
		if (memchr(s, '\0', add)) {
			snprintf(err, errlen, "line %u: NUL byte in table text", t->line);
			return -EINVAL;
		}
		if (n + add > TABLE_LINE_MAX) {
			snprintf(err, errlen, "line %u: logical line longer than %u bytes", *lineno,
				 TABLE_LINE_MAX);
			return -EINVAL;
		}
		if (n + add + 1 > t->cap) {
			size_t cap = t->cap ? t->cap : 256;
			while (cap < n + add + 1)
				cap *= 2;
			char *nb = realloc(t->buf, cap);
			if (!nb)
				return -ENOMEM;
			t->buf = nb;
			t->cap = cap;
		}
		memcpy(t->buf + n, s, add);
		n += add;
		/* Continuation: the next physical lines that start with a blank, skipping
		 * comment and blank lines in between as Postfix does. */
		const char *save = t->p;
		unsigned save_line = t->line;
		bool more = false;
		while (t->p < t->end) {
			const char *ns, *ne;
			table_text_physical(t, &ns, &ne);
			if (table_text_ignorable(ns, ne))
				continue;
			if (mx_ctype_is_space(*ns)) {
				s = ns;
				e = ne;
				more = true;
			}
			break;
		}
		if (!more) {
			t->p = save;
			t->line = save_line;
			break;
		}
	}
	while (n > 0 && mx_ctype_is_space(t->buf[n - 1]))
		n--;
	t->buf[n] = '\0';
	*line = t->buf;
	*len = n;
	return 1;
}

int table_kv_split(char *line, char **key, char **value, char *err, size_t errlen)
{
	char *p = line;
	while (*p && !mx_ctype_is_space(*p))
		p++;
	*key = line;
	if (!*p) {
		snprintf(err, errlen, "expected format: key whitespace value");
		return -EINVAL;
	}
	*p++ = '\0';
	while (*p && mx_ctype_is_space(*p))
		p++;
	if (!*p) {
		snprintf(err, errlen, "expected format: key whitespace value");
		return -EINVAL;
	}
	*value = p;
	return 0;
}

void table_fold(char *s, size_t n)
{
	mx_ctype_lower_mem(s, n);
}

/* Copy [s, e) trimmed of blanks into out (size outlen). Returns 0 or -EINVAL when too long. */
static int table_copy_trim(const char *s, const char *e, char *out, size_t outlen)
{
	while (s < e && mx_ctype_is_space(*s))
		s++;
	while (e > s && mx_ctype_is_space(e[-1]))
		e--;
	if ((size_t)(e - s) >= outlen)
		return -EINVAL;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	return 0;
}

/* The end of a brace group starting at s ('{'), nesting counted; NULL if unbalanced. */
static const char *table_brace_end(const char *s)
{
	int depth = 0;
	for (; *s; s++) {
		if (*s == '{')
			depth++;
		else if (*s == '}' && --depth == 0)
			return s;
	}
	return NULL;
}

int table_inline_parse(const char *text, int (*add)(void *ctx, const char *key, const char *value),
		       void *ctx, char *err, size_t errlen)
{
	const char *close;
	if (text[0] != '{' || !(close = table_brace_end(text)) || close[1] != '\0') {
		snprintf(err, errlen, "inline table: expected \"{ key=value, ... }\"");
		return -EINVAL;
	}
	char key[TABLE_KEY_MAX + 1], value[TABLE_VALUE_MAX + 1];
	const char *p = text + 1;
	int count = 0;
	while (p < close) {
		while (p < close && (mx_ctype_is_space(*p) || *p == ','))
			p++;
		if (p >= close)
			break;
		const char *s, *e;
		if (*p == '{') {
			const char *ce = table_brace_end(p);
			if (!ce || ce > close) {
				snprintf(err, errlen, "inline table: unbalanced '{'");
				return -EINVAL;
			}
			s = p + 1;
			e = ce;
			p = ce + 1;
		} else {
			s = p;
			while (p < close && !mx_ctype_is_space(*p) && *p != ',' && *p != '{' && *p != '}')
				p++;
			e = p;
			if (p < close && (*p == '{' || *p == '}')) {
				snprintf(err, errlen, "inline table: unexpected '%c'", *p);
				return -EINVAL;
			}
		}
		const char *eq = memchr(s, '=', (size_t)(e - s));
		if (!eq) {
			snprintf(err, errlen, "inline table: expected \"key=value\" in \"%.*s\"",
				 (int)(e - s > 64 ? 64 : e - s), s);
			return -EINVAL;
		}
		if (table_copy_trim(s, eq, key, sizeof(key)) < 0 ||
		    table_copy_trim(eq + 1, e, value, sizeof(value)) < 0) {
			snprintf(err, errlen, "inline table: key or value too long");
			return -EINVAL;
		}
		if (!key[0]) {
			snprintf(err, errlen, "inline table: empty key");
			return -EINVAL;
		}
		table_fold(key, strlen(key));
		int rc = add(ctx, key, value);
		if (rc)
			return rc;
		count++;
	}
	if (count == 0) {
		snprintf(err, errlen, "inline table: no entries");
		return -EINVAL;
	}
	return 0;
}

int table_static_value(const char *text, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t n = strlen(text);
	const char *s = text, *e = text + n;
	if (n && text[0] == '{') {
		const char *close = table_brace_end(text);
		if (!close || close[1] != '\0') {
			snprintf(err, errlen, "static table: unbalanced '{'");
			return -EINVAL;
		}
		s = text + 1;
		e = close;
	}
	if (table_copy_trim(s, e, out, outlen) < 0) {
		snprintf(err, errlen, "static table: value too long");
		return -EINVAL;
	}
	return 0;
}
