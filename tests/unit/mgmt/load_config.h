/* The mgmt tests' way to load a configuration text: its status, the configuration and
 * everything it said on its diagnostics stream. */
#ifndef MXGATE_TESTS_UNIT_MGMT_LOAD_CONFIG_H
#define MXGATE_TESTS_UNIT_MGMT_LOAD_CONFIG_H

#include <stdio.h>
#include <stdlib.h>

#include "mgmt/config.h"

struct load {
	int rc;
	struct mx_config *cfg;
	char *diag;
};

/* text as the file "t.cf" */
static inline struct load load(const char *text)
{
	struct load l = { 0 };
	size_t n = 0;
	FILE *f = open_memstream(&l.diag, &n);
	l.rc = mx_config_load_string(text, "t.cf", &l.cfg, f);
	fclose(f);
	return l;
}

static inline void load_free(struct load *l)
{
	mx_config_free(l->cfg);
	free(l->diag);
	*l = (struct load){ 0 };
}

#endif
