/* Text helpers the golden transcript runners share (tests/golden/golden_runner.c and
 * tests/golden_client/golden_client_runner.c): a growing buffer, and the escaping a
 * transcript uses for bytes that are not printable (\r \n \t \0 \\ \" \xHH). Test code:
 * out of memory exits with status 2. */
#ifndef MXGATE_TESTS_GOLDEN_TEXT_H
#define MXGATE_TESTS_GOLDEN_TEXT_H

#include <stddef.h>

/* A NUL-terminated byte buffer that grows as needed. */
struct golden_buf {
	char *p;
	size_t len, cap;
};

void golden_buf_add(struct golden_buf *b, const void *p, size_t n);
void golden_buf_addf(struct golden_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* p[0..n) with \r \n \t \\ \" escaped and other control or non-ASCII bytes as \xHH. */
void golden_buf_escaped(struct golden_buf *b, const char *p, size_t n);
/* Unescape \r \n \t \0 \\ \" \xHH (any other escaped character stands for itself) in
 * place; returns the new length. */
size_t golden_unescape(char *s, size_t n);

#endif
