/* Pointer+length views of bytes that someone else owns. */
#ifndef MXGATE_SPAN_H
#define MXGATE_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct mx_span {
	const char *ptr;
	size_t len;
};

#define MX_SPAN_LIT(s) ((struct mx_span){ (s), sizeof(s) - 1 })

static inline struct mx_span mx_span_make(const char *p, size_t n)
{
	return (struct mx_span){ p, n };
}

static inline struct mx_span mx_span_cstr(const char *s)
{
	return (struct mx_span){ s, s ? strlen(s) : 0 };
}

static inline bool mx_span_eq(struct mx_span a, struct mx_span b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ASCII case-insensitive comparison; SMTP verbs, domains and parameter names are ASCII. */
static inline bool mx_span_eq_nocase(struct mx_span a, struct mx_span b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)b.ptr[i];
		if (x >= 'A' && x <= 'Z')
			x += 'a' - 'A';
		if (y >= 'A' && y <= 'Z')
			y += 'a' - 'A';
		if (x != y)
			return false;
	}
	return true;
}

#endif
