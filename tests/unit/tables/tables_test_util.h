/* Shared helpers of the tables/ unit tests: a throw-away table store. */
#ifndef MXGATE_TESTS_TABLES_TEST_UTIL_H
#define MXGATE_TESTS_TABLES_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tables/tables_env.h"

static inline struct tables_env *tt_env_open(char *dir /* >= 64 bytes, filled */)
{
	snprintf(dir, 64, "/tmp/mxgate-tables-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(2);
	}
	struct tables_env *env;
	char err[256];
	struct tables_env_opts o = { .map_size = (size_t)1 << 30 };
	if (tables_env_open(dir, &o, &env, err, sizeof(err)) < 0) {
		fprintf(stderr, "tables_env_open: %s\n", err);
		exit(2);
	}
	return env;
}

static inline void tt_env_remove(struct tables_env *env, const char *dir)
{
	tables_env_close(env);
	char p[128];
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

static inline int tt_build(struct tables_env *env, const char *spec, const char *text)
{
	char err[512] = "";
	int rc = tables_build(env, spec, text, strlen(text), NULL, NULL, NULL, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "  build %s: %s\n", spec, err);
	return rc;
}

#endif
