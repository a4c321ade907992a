/* ASCII character classes. <ctype.h> depends on the locale and wants its argument cast to
 * unsigned char; protocol and configuration text is ASCII, so these compare byte values and
 * take any char (a byte above 0x7f is in no class and is left alone by the case mapping). */
#ifndef MXGATE_CTYPE_H
#define MXGATE_CTYPE_H

#include <stdbool.h>
#include <stddef.h>

static inline bool mx_ctype_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool mx_ctype_is_upper(unsigned char c)
{
	return c >= 'A' && c <= 'Z';
}

static inline bool mx_ctype_is_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static inline bool mx_ctype_is_alpha(unsigned char c)
{
	return mx_ctype_is_lower(c) || mx_ctype_is_upper(c);
}

static inline bool mx_ctype_is_alnum(unsigned char c)
{
	return mx_ctype_is_alpha(c) || mx_ctype_is_digit(c);
}

/* A character of a host name label as Postfix's valid_hostname() takes it: letters, digits,
 * '-' and '_'. */
static inline bool mx_ctype_is_hostname(unsigned char c)
{
	return mx_ctype_is_alnum(c) || c == '-' || c == '_';
}

/* Blank: space and tab (RFC 5234 WSP; Postfix's separators inside a line). */
static inline bool mx_ctype_is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* White space as isspace() in the C locale (Postfix's ISSPACE): space, \t \n \v \f \r. */
static inline bool mx_ctype_is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static inline char mx_ctype_lower(char c)
{
	return mx_ctype_is_upper((unsigned char)c) ? (char)(c - 'A' + 'a') : c;
}

static inline char mx_ctype_upper(char c)
{
	return mx_ctype_is_lower((unsigned char)c) ? (char)(c - 'a' + 'A') : c;
}

/* Lower-case n bytes in place. */
static inline void mx_ctype_lower_mem(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s[i] = mx_ctype_lower(s[i]);
}

/* The value of a hexadecimal digit of either case, or -1. */
static inline int mx_ctype_hex_value(unsigned char c)
{
	if (mx_ctype_is_digit(c))
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Is s a non-empty string of decimal digits? */
static inline bool mx_ctype_all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!mx_ctype_is_digit((unsigned char)*s))
			return false;
	return true;
}

#endif
