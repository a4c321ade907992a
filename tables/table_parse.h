/* The Postfix table source formats, shared by every table kind: logical lines (postmap(1),
 * cidr_table(5), regexp_table(5): empty lines and lines whose first non-blank character is
 * `#` are ignored; a line that starts with blanks continues the previous logical line, joined
 * without the newline and keeping its blanks; a CR before the newline is dropped), `key value`
 * records, and the `inline:{...}` and `static:` specifications of Postfix 3.7.
 *
 * Every input is bounded: a logical line holds at most TABLE_LINE_MAX bytes, a key
 * TABLE_KEY_MAX, a value TABLE_VALUE_MAX; NUL bytes are refused (they could never be looked up
 * and would truncate what an operator sees). */
#ifndef MXGATE_TABLES_TABLE_PARSE_H
#define MXGATE_TABLES_TABLE_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define TABLE_LINE_MAX 65536u
#define TABLE_KEY_MAX 480u /* LMDB's key limit is 511 */
#define TABLE_VALUE_MAX 4096u
#define TABLE_NAME_MAX 400u /* "type:name" */

/* A reader of logical lines over a buffer. */
struct table_text {
	const char *p, *end;
	unsigned line; /* physical lines consumed */
	char *buf;
	size_t cap;
};

void table_text_init(struct table_text *t, const char *data, size_t len);
void table_text_free(struct table_text *t);

/* The next logical line, NUL-terminated, trailing blanks removed, in *line (valid until the
 * next call), its length in *len and the number of its first physical line in *lineno.
 * Returns 1 for a line, 0 at the end, -EINVAL (too long, NUL byte; reason in err) or -ENOMEM. */
int table_text_next(struct table_text *t, char **line, size_t *len, unsigned *lineno, char *err,
		    size_t errlen);

/* Split a logical line into key and value at the first blank (postmap's source format):
 * both point into `line`, which is modified. Returns 0, or -EINVAL when there is no value
 * (reason in err). */
int table_kv_split(char *line, char **key, char **value, char *err, size_t errlen);

/* Lower-case ASCII in place (Postfix folds keys of exact and cidr tables; not UTF-8 aware,
 * as Postfix without smtputf8). */
void table_fold(char *s, size_t n);

/* Parse the body of inline:{...} (`text` starts at the `{`): entries `key=value` or
 * `{ key = value with blanks }` separated by commas and/or blanks. Calls add() for each entry,
 * key folded; stops at the first non-zero return. Returns 0 or -EINVAL with a reason. */
int table_inline_parse(const char *text, int (*add)(void *ctx, const char *key, const char *value),
		       void *ctx, char *err, size_t errlen);

/* The value of static:TEXT (`{ text }` braces removed, as in Postfix 3.7) into out.
 * Returns 0 or -EINVAL. */
int table_static_value(const char *text, char *out, size_t outlen, char *err, size_t errlen);

#endif
