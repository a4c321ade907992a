/* Invariant checks for fuzz harnesses. Not assert(): a harness must check its invariants
 * in every build, and a release build (NDEBUG) would compile assert() away. */
#ifndef MXGATE_FUZZ_CHECK_H
#define MXGATE_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__,       \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#endif
