/* libFuzzer harness for the control socket's request parser (mgmt/control.h): any bytes
 * as the line a client sent before its LF.
 *
 * The parser must never crash or read out of bounds, and must agree with the grammar
 * (words of bytes above 0x20 other than 0x7f, separated by single spaces, at most
 * max_args of them): whatever it accepts, joined again with single spaces, is exactly the
 * input; whatever it refuses breaks a rule of the grammar. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "mgmt/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The grammar, written the slow and obvious way: the number of words, -EINVAL or
 * -E2BIG. */
static int fuzz_reference(const uint8_t *p, size_t n, int max_args)
{
	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && (p[i] <= 0x20 || p[i] == 0x7f))
			return -EINVAL;
	if (p[0] == ' ' || p[n - 1] == ' ')
		return -EINVAL;
	int words = 1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ')
			continue;
		if (p[i + 1] == ' ')
			return -EINVAL;
		words++;
	}
	return words > max_args ? -E2BIG : words;
}

static void fuzz_one(const uint8_t *data, size_t size, int max_args)
{
	char *line = malloc(size + 1);
	char **argv = calloc((size_t)max_args + 1, sizeof(*argv));
	if (!line || !argv) {
		free(line);
		free(argv);
		return;
	}
	memcpy(line, data, size);
	line[size] = 'Z'; /* the parser owns this byte (the LF's place) */
	const char *why = NULL;
	int rc = control_request_parse(line, size, argv, max_args, &why);
	int want = fuzz_reference(data, size, max_args);
	/* an empty word inside a too-long request may be seen first or not: both refuse */
	if (want < 0 && rc < 0)
		FUZZ_CHECK(why != NULL);
	else
		FUZZ_CHECK(rc == want);
	if (rc > 0) {
		FUZZ_CHECK(argv[rc] == NULL);
		size_t off = 0;
		for (int i = 0; i < rc; i++) {
			size_t n = strlen(argv[i]);
			FUZZ_CHECK(n > 0);
			FUZZ_CHECK(argv[i] == line + off);
			FUZZ_CHECK(memcmp(argv[i], data + off, n) == 0);
			off += n;
			FUZZ_CHECK(off == size || data[off] == ' ');
			off++;
		}
		FUZZ_CHECK(off == size + 1);
	}
	free(line);
	free(argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > CONTROL_REQUEST_MAX)
		return 0;
	fuzz_one(data, size, CONTROL_MAX_ARGS);
	fuzz_one(data, size, 1);
	fuzz_one(data, size, 3);
	return 0;
}
