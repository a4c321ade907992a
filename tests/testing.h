/* A minimal unit-test harness: CHECK() records a failure and goes on, so one run shows
 * every broken expectation; TEST_MAIN() runs the listed tests and exits 1 on any failure. */
#ifndef MXGATE_TESTING_H
#define MXGATE_TESTING_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int testing_failures;
static const char *testing_current;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__,  \
				testing_current, #cond);                                   \
			testing_failures++;                                                \
		}                                                                          \
	} while (0)

#define CHECK_INT_EQ(a, b)                                                                 \
	do {                                                                               \
		long long testing_a_ = (long long)(a), testing_b_ = (long long)(b);        \
		if (testing_a_ != testing_b_) {                                            \
			fprintf(stderr, "%s:%d: %s: %s == %s failed: %lld != %lld\n",         \
				__FILE__, __LINE__, testing_current, #a, #b, testing_a_,   \
				testing_b_);                                               \
			testing_failures++;                                                \
		}                                                                          \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                 \
	do {                                                                               \
		const char *testing_a_ = (a), *testing_b_ = (b);                           \
		if (!testing_a_ || !testing_b_ || strcmp(testing_a_, testing_b_) != 0) {   \
			fprintf(stderr, "%s:%d: %s: %s == %s failed:\n  got:      \"%s\"\n" \
					"  expected: \"%s\"\n",                            \
				__FILE__, __LINE__, testing_current, #a, #b,               \
				testing_a_ ? testing_a_ : "(null)",                        \
				testing_b_ ? testing_b_ : "(null)");                       \
			testing_failures++;                                                \
		}                                                                          \
	} while (0)

/* Compare bytes that may hold NULs or CRLFs; prints both with C escapes on mismatch. */
static inline void testing_print_escaped(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n", stderr);
		else if (c < 32 || c >= 127)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
}

#define CHECK_MEM_EQ(ap, an, bp, bn)                                                       \
	do {                                                                               \
		const char *testing_ap_ = (const char *)(ap), *testing_bp_ = (const char *)(bp); \
		size_t testing_an_ = (an), testing_bn_ = (bn);                             \
		if (testing_an_ != testing_bn_ ||                                          \
		    (testing_an_ && memcmp(testing_ap_, testing_bp_, testing_an_) != 0)) {    \
			fprintf(stderr, "%s:%d: %s: bytes differ\n  got:      \"",            \
				__FILE__, __LINE__, testing_current);                      \
			testing_print_escaped(testing_ap_, testing_an_);                   \
			fputs("\"\n  expected: \"", stderr);                               \
			testing_print_escaped(testing_bp_, testing_bn_);                   \
			fputs("\"\n", stderr);                                             \
			testing_failures++;                                                \
		}                                                                          \
	} while (0)

#define RUN_TEST(fn)                                                                       \
	do {                                                                               \
		testing_current = #fn;                                                     \
		int testing_before_ = testing_failures;                                    \
		fn();                                                                      \
		printf("%s %s\n", testing_failures == testing_before_ ? "ok  " : "FAIL", #fn); \
	} while (0)

#define TEST_RESULT() (testing_failures ? (fprintf(stderr, "%d check(s) failed\n", \
							testing_failures), 1) : 0)

#endif
