/* The tests' way into mxgate-loadgen's option parser: the arguments after the program's
 * name, NULL-terminated, parsed from the defaults with the usage text thrown away. Shared
 * by test_loadgen.c and test_loadgen_mix.c. */
#ifndef MXGATE_TESTS_UNIT_PERF_LOADGEN_PARSE_H
#define MXGATE_TESTS_UNIT_PERF_LOADGEN_PARSE_H

#include <stdarg.h>
#include <stdio.h>

#include "loadgen.h"

static int parse(struct loadgen_config *cfg, char *err, size_t errlen, ...)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = (char *)"mxgate-loadgen";
	va_list ap;
	va_start(ap, errlen);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	loadgen_config_defaults(cfg);
	FILE *devnull = fopen("/dev/null", "w");
	int rc = loadgen_args_parse(cfg, argc, argv, devnull, err, errlen);
	fclose(devnull);
	return rc;
}

#endif
