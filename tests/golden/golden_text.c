#include "golden_text.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void golden_buf_add(struct golden_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void golden_buf_addf(struct golden_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	golden_buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

void golden_buf_escaped(struct golden_buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r')
			golden_buf_add(b, "\\r", 2);
		else if (c == '\n')
			golden_buf_add(b, "\\n", 2);
		else if (c == '\t')
			golden_buf_add(b, "\\t", 2);
		else if (c == '\\')
			golden_buf_add(b, "\\\\", 2);
		else if (c == '"')
			golden_buf_add(b, "\\\"", 2);
		else if (c < 32 || c >= 127)
			golden_buf_addf(b, "\\x%02x", c);
		else
			golden_buf_add(b, &p[i], 1);
	}
}

size_t golden_unescape(char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			s[o++] = s[i];
			continue;
		}
		char c = s[++i];
		if (c == 'r')
			s[o++] = '\r';
		else if (c == 'n')
			s[o++] = '\n';
		else if (c == 't')
			s[o++] = '\t';
		else if (c == '0')
			s[o++] = '\0';
		else if (c == 'x' && i + 2 < n + 1 && isxdigit((unsigned char)s[i + 1]) &&
			 isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = { s[i + 1], s[i + 2], 0 };
			s[o++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else
			s[o++] = c;
	}
	return o;
}
