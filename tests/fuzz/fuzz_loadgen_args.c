/* libFuzzer harness for mxgate-loadgen's option parser (perf/loadgen/loadgen_args.c).
 *
 * Input: arguments separated by NUL bytes (at most 40 of them), each copied into a heap
 * buffer of exactly its length. Each is also tried as a source range and an address with
 * a prefix. Invariants (abort on violation):
 * - the parser returns 0, 1 (--help) or -EINVAL; on -EINVAL the message is a terminated
 *   string within its buffer and not empty;
 * - on 0 every value is within its documented bound (concurrency 1..2^24, size >= 200,
 *   rcpts 1..1000, a server and a local address set, errors_kept <= the maximum; never
 *   --pregreet together with --idle);
 * - a range that parses is non-empty and does not run past 255.255.255.255. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "loadgen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	argv[argc++] = strdup("mxgate-loadgen");
	size_t start = 0;
	for (size_t i = 0; i <= size && argc <= MAX_ARGS; i++) {
		if (i < size && data[i] != 0)
			continue;
		size_t n = i - start;
		char *a = malloc(n + 1);
		memcpy(a, data + start, n);
		a[n] = 0;
		argv[argc++] = a;
		start = i + 1;
	}
	argv[argc] = NULL;
	for (int i = 1; i < argc; i++) {
		uint32_t base, count, addr;
		uint8_t plen;
		int rc = loadgen_args_range(argv[i], &base, &count);
		FUZZ_CHECK(rc == 0 || rc == -EINVAL);
		if (rc == 0)
			FUZZ_CHECK(count >= 1 &&
				   (uint64_t)ntohl(base) + count <= 0xffffffffull);
		rc = loadgen_args_addr_prefix(argv[i], &addr, &plen);
		FUZZ_CHECK(rc == 0 || rc == -EINVAL);
		if (rc == 0)
			FUZZ_CHECK(plen <= 32 && addr != 0);
	}
	struct loadgen_config cfg;
	loadgen_config_defaults(&cfg);
	char err[128];
	memset(err, 'x', sizeof(err));
	FILE *devnull = fopen("/dev/null", "w");
	int rc = loadgen_args_parse(&cfg, argc, argv, devnull, err, sizeof(err));
	fclose(devnull);
	FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EINVAL);
	if (rc == -EINVAL)
		FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
	if (rc == 0) {
		FUZZ_CHECK(cfg.concurrency >= 1 && cfg.concurrency <= (1u << 24));
		FUZZ_CHECK(cfg.size >= 200 && cfg.rcpts >= 1 && cfg.rcpts <= 1000);
		FUZZ_CHECK(cfg.server != 0 && cfg.local != 0 && cfg.server_port != 0);
		FUZZ_CHECK(cfg.errors_kept <= LOADGEN_ERRORS_KEPT_MAX);
		FUZZ_CHECK(cfg.timeout_s >= 0.01 && cfg.mbufs >= 1023);
		FUZZ_CHECK(memchr(cfg.helo, 0, sizeof(cfg.helo)) && cfg.helo[0]);
		FUZZ_CHECK(!(cfg.pregreet && cfg.idle)); /* they exclude each other */
		FUZZ_CHECK(!(cfg.listed && (cfg.pregreet || cfg.idle)));
		FUZZ_CHECK(cfg.nalso <= LOADGEN_ALSO_MAX);
		FUZZ_CHECK(cfg.nalso == 0 || cfg.duration_s > 0);
	}
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return 0;
}
