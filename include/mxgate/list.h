/* Postfix parameter lists: words separated by commas and/or white space (Postfix's
 * CHARS_COMMA_SP, ", \t\r\n"), as in "mynetworks = 127.0.0.0/8, [::1]/128" or
 * "smtpd_recipient_restrictions = permit_mynetworks reject_unauth_destination".
 * The list is a NUL-terminated string; a word points into it. */
#ifndef MXGATE_LIST_H
#define MXGATE_LIST_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define MX_LIST_SEPARATORS ", \t\r\n"

static inline bool mx_list_is_separator(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The next word of the list at *cur: returns its length (> 0) with *word at it and *cur just
 * after it, or 0 at the end of the list (*cur then at the NUL). */
static inline size_t mx_list_next(const char **cur, const char **word)
{
	const char *p = *cur + strspn(*cur, MX_LIST_SEPARATORS);
	size_t n = strcspn(p, MX_LIST_SEPARATORS);
	*cur = p + n;
	*word = p;
	return n;
}

/* The same where text inside balanced braces is never split ("inline:{ a=b, c=d }" is one
 * word; Postfix's mystrtokq() with "{}"); the word keeps its braces. Returns its length
 * (> 0), 0 at the end of the list, or -EINVAL for unbalanced braces (*cur is then left
 * where it was). */
static inline long mx_list_next_braced(const char **cur, const char **word)
{
	const char *s = *cur;
	while (mx_list_is_separator(*s))
		s++;
	if (!*s) {
		*cur = s;
		return 0;
	}
	const char *b = s;
	size_t depth = 0;
	while (*s && (depth > 0 || !mx_list_is_separator(*s))) {
		if (*s == '{') {
			depth++;
		} else if (*s == '}') {
			if (depth == 0)
				return -EINVAL;
			depth--;
		}
		s++;
	}
	if (depth != 0)
		return -EINVAL;
	*cur = s;
	*word = b;
	return (long)(s - b);
}

#endif
