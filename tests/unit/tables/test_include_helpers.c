/* include/mxgate/ctype.h, list.h and clock.h: the header-only helpers that replaced per-file
 * copies. The character classes are checked against <ctype.h> in the C locale for every byte;
 * the list tokenizers against a strtok_r() reference and on every prefix of odd lists. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/clock.h"
#include "mxgate/ctype.h"
#include "mxgate/inet.h"
#include "mxgate/list.h"
#include "testing.h"

static void test_ctype_against_libc(void)
{
	/* mxgate never calls setlocale(): <ctype.h> is the C locale, the one Postfix's ISxxx
	 * macros mean, so the two must agree on every byte. */
	for (int b = 0; b < 256; b++) {
		unsigned char c = (unsigned char)b;
		CHECK_INT_EQ(mx_ctype_is_digit(c), isdigit(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_upper(c), isupper(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_lower(c), islower(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_alpha(c), isalpha(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_alnum(c), isalnum(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_space(c), isspace(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_blank(c), isblank(b) != 0);
		CHECK_INT_EQ(mx_ctype_is_hostname(c), isalnum(b) || b == '-' || b == '_');
		CHECK_INT_EQ((unsigned char)mx_ctype_lower((char)c), tolower(b));
		CHECK_INT_EQ((unsigned char)mx_ctype_upper((char)c), toupper(b));
		int hv = isxdigit(b) ? (isdigit(b) ? b - '0' : tolower(b) - 'a' + 10) : -1;
		CHECK_INT_EQ(mx_ctype_hex_value(c), hv);
	}
	/* a plain (possibly signed) char above 0x7f is in no class and is kept */
	char high = (char)0xC3;
	CHECK(!mx_ctype_is_alpha(high) && !mx_ctype_is_space(high) && !mx_ctype_is_digit(high));
	CHECK(mx_ctype_lower(high) == high && mx_ctype_upper(high) == high);
}

static void test_ctype_strings(void)
{
	CHECK(!mx_ctype_all_digits(""));
	CHECK(mx_ctype_all_digits("0"));
	CHECK(mx_ctype_all_digits("0123456789"));
	CHECK(!mx_ctype_all_digits("12a"));
	CHECK(!mx_ctype_all_digits(" 1"));
	CHECK(!mx_ctype_all_digits("1\xb9")); /* superscript one in Latin-1 */
	char s[] = "MiXeD Case\xc3\x89 @[`{";
	mx_ctype_lower_mem(s, 5);
	CHECK_STR_EQ(s, "mixed Case\xc3\x89 @[`{");
	mx_ctype_lower_mem(s, strlen(s));
	CHECK_STR_EQ(s, "mixed case\xc3\x89 @[`{");
	mx_ctype_lower_mem(s, 0);
}

/* The words of a list joined with '|', from mx_list_next() or mx_list_next_braced(). */
static const char *words(const char *list, bool braced, long *last)
{
	static char out[4096];
	size_t w = 0;
	const char *cur = list, *word;
	long n;
	out[0] = '\0';
	for (;;) {
		n = braced ? mx_list_next_braced(&cur, &word) : (long)mx_list_next(&cur, &word);
		if (n <= 0)
			break;
		CHECK(word >= list && word + n <= list + strlen(list));
		w += (size_t)snprintf(out + w, sizeof(out) - w, "%.*s|", (int)n, word);
	}
	*last = n;
	return out;
}

static void test_list(void)
{
	long last;
	CHECK_STR_EQ(words("a, b\tc\r\n,,d ", false, &last), "a|b|c|d|");
	CHECK_INT_EQ(last, 0);
	CHECK_STR_EQ(words("", false, &last), "");
	CHECK_STR_EQ(words(" ,\t,\r\n", false, &last), "");
	/* \v and \f are no separators (Postfix's CHARS_COMMA_SP) */
	CHECK_STR_EQ(words("a\vb\fc", false, &last), "a\vb\fc|");
	/* without braces a brace is an ordinary character */
	CHECK_STR_EQ(words("inline:{ a=b, c=d }", false, &last), "inline:{|a=b|c=d|}|");
	/* with braces: never split inside, braces kept, nested */
	CHECK_STR_EQ(words("inline:{ a=b, c=d } x,{y z}", true, &last),
		     "inline:{ a=b, c=d }|x|{y z}|");
	CHECK_INT_EQ(last, 0);
	CHECK_STR_EQ(words("{a {b, c} d}e f", true, &last), "{a {b, c} d}e|f|");
	CHECK_STR_EQ(words("a {b", true, &last), "a|");
	CHECK_INT_EQ(last, -EINVAL);
	CHECK_STR_EQ(words("a} b", true, &last), "");
	CHECK_INT_EQ(last, -EINVAL);
	CHECK_STR_EQ(words("}", true, &last), "");
	CHECK_INT_EQ(last, -EINVAL);
	/* an error leaves the position where it was */
	const char *cur = "  {x", *word = NULL;
	CHECK_INT_EQ(mx_list_next_braced(&cur, &word), -EINVAL);
	CHECK_STR_EQ(cur, "  {x");
	/* at the end the position stays at the NUL */
	cur = "a ,";
	CHECK_INT_EQ(mx_list_next(&cur, &word), 1);
	CHECK_INT_EQ(mx_list_next(&cur, &word), 0);
	CHECK(*cur == '\0');
	CHECK_INT_EQ(mx_list_next(&cur, &word), 0);
	for (int c = 0; c < 256; c++)
		CHECK_INT_EQ(mx_list_is_separator((char)c), c && strchr(MX_LIST_SEPARATORS, c) != NULL);
}

/* Random lists over a small alphabet: mx_list_next() splits as strtok_r() with the same
 * separators, and mx_list_next_braced() as mx_list_next() where there are no braces; every
 * prefix of each list is read from a heap buffer of exactly its size. */
static void test_list_reference(void)
{
	static const char alphabet[] = "ab,, \t\r\n\v{}";
	unsigned seed = 12345;
	for (int round = 0; round < 2000; round++) {
		char text[24];
		size_t len = (size_t)(round % 23);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			text[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		text[len] = '\0';
		for (size_t k = 0; k <= len; k++) {
			char *heap = malloc(k + 1), *ref = malloc(k + 1);
			memcpy(heap, text, k);
			heap[k] = '\0';
			memcpy(ref, heap, k + 1);
			char expect[64] = "", *save = NULL;
			size_t w = 0;
			for (char *t = strtok_r(ref, MX_LIST_SEPARATORS, &save); t;
			     t = strtok_r(NULL, MX_LIST_SEPARATORS, &save))
				w += (size_t)snprintf(expect + w, sizeof(expect) - w, "%s|", t);
			long last;
			CHECK_STR_EQ(words(heap, false, &last), expect);
			if (!strpbrk(heap, "{}"))
				CHECK_STR_EQ(words(heap, true, &last), expect);
			else
				words(heap, true, &last);
			CHECK(last == 0 || last == -EINVAL);
			free(heap);
			free(ref);
		}
	}
}

static void test_clock(void)
{
	uint64_t m0 = mx_clock_monotonic_ms();
	struct timespec d, now;
	mx_clock_monotonic_deadline_us(&d, 2500000);
	clock_gettime(CLOCK_MONOTONIC, &now);
	CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
	int64_t ahead_us = (int64_t)(d.tv_sec - now.tv_sec) * 1000000 +
			   (d.tv_nsec - now.tv_nsec) / 1000;
	CHECK(ahead_us > 2000000 && ahead_us <= 2500000);
	mx_clock_monotonic_deadline_us(&d, 999999); /* the carry into tv_sec */
	CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
	CHECK(mx_clock_monotonic_ms() >= m0);
	int64_t s = mx_clock_wall_s();
	uint64_t us = mx_clock_wall_us();
	CHECK(us / 1000000u >= (uint64_t)s && us / 1000000u <= (uint64_t)s + 1);
}

/* mx_inet_format: IPv4 formatted by hand gives inet_ntop's text for every octet value in
 * every position and a spread of whole addresses; IPv6 and small buffers as inet_ntop. */
static void test_inet_format(void)
{
	struct mx_inet_addr a = { .family = AF_INET };
	char got[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN];
	unsigned bad = 0;
	for (unsigned pos = 0; pos < 4; pos++)
		for (unsigned v = 0; v < 256; v++) {
			static const uint8_t base[4] = { 10, 0, 255, 7 };
			memcpy(a.bytes, base, 4);
			a.bytes[pos] = (uint8_t)v;
			inet_ntop(AF_INET, a.bytes, want, sizeof(want));
			if (strcmp(mx_inet_format(&a, got, sizeof(got)), want) != 0)
				bad++;
		}
	uint32_t x = 12345;
	for (unsigned i = 0; i < 200000; i++) {
		x = x * 1103515245u + 12345u;
		memcpy(a.bytes, &x, 4);
		inet_ntop(AF_INET, a.bytes, want, sizeof(want));
		if (strcmp(mx_inet_format(&a, got, sizeof(got)), want) != 0)
			bad++;
	}
	CHECK_INT_EQ(bad, 0);
	memcpy(a.bytes, "\xff\xff\xff\xff", 4);
	char exact[INET_ADDRSTRLEN];
	CHECK_STR_EQ(mx_inet_format(&a, exact, sizeof(exact)), "255.255.255.255");
	memcpy(a.bytes, "\x00\x00\x00\x00", 4);
	CHECK_STR_EQ(mx_inet_format(&a, exact, sizeof(exact)), "0.0.0.0");
	/* too small for the longest address: inet_ntop's answer (it fits, or "") */
	char small[8];
	CHECK_STR_EQ(mx_inet_format(&a, small, sizeof(small)), "0.0.0.0");
	memcpy(a.bytes, "\xc0\x00\x02\x01", 4);
	CHECK_STR_EQ(mx_inet_format(&a, small, sizeof(small)), "");
	struct mx_inet_addr six;
	CHECK(mx_inet_parse("2001:db8::1", &six));
	CHECK_STR_EQ(mx_inet_format(&six, got, sizeof(got)), "2001:db8::1");
}

int main(void)
{
	RUN_TEST(test_ctype_against_libc);
	RUN_TEST(test_ctype_strings);
	RUN_TEST(test_list);
	RUN_TEST(test_list_reference);
	RUN_TEST(test_clock);
	RUN_TEST(test_inet_format);
	return TEST_RESULT();
}
