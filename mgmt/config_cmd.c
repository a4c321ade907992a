/* `mxgate config`: the parameters of mxgate.cf as postconf(1) prints main.cf's.
 *
 *   mxgate config [-c FILE] [-n | -d] [-h] [-x] [NAME ...]
 *   mxgate config [-c FILE] -M [SERVICE[/TYPE] ...]
 *
 * Without options every parameter mxgate knows, sorted by name, as `name = value` with the
 * value as written (or its default), not expanded; -n only those the file sets; -d the
 * defaults; -h the values alone; -x expanded; NAME... only those (an unknown one is warned
 * about, as postconf does). Values are printed as postconf prints them: whitespace runs
 * folded to one blank. -M prints the entries of mxgate_master_file as `postconf -M` does.
 *
 * This is a viewer: it reads the file and expands what it prints, but does not validate
 * (`mxgate --check` does). Exit status as postconf's: 0, or 1 when the file cannot be
 * read, a line cannot be parsed, a value cannot be expanded, or the options are wrong. */
#include "mgmt/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/config_internal.h"
#include "mgmt/master.h"

static void config_cmd_usage(FILE *f, const char *default_path)
{
	fprintf(f,
		"usage: mxgate config [-c FILE] [-n | -d] [-h] [-x] [NAME ...]\n"
		"       mxgate config [-c FILE] -M [SERVICE[/TYPE] ...]\n"
		"  -c FILE  the configuration (default %s)\n"
		"  -n       only the parameters the file sets\n"
		"  -d       the defaults\n"
		"  -h       values only, without \"name = \"\n"
		"  -x       expand $name in the values\n"
		"  -M       the services of mxgate_master_file, as postconf -M prints them\n",
		default_path);
}

/* A value as postconf prints it: whitespace runs folded to one blank, none at the ends. */
static void config_cmd_put_value(FILE *f, const char *v)
{
	bool space = false, any = false;
	for (const char *p = v; *p; p++) {
		if (mx_ctype_is_space(*p)) {
			space = true;
			continue;
		}
		if (space && any)
			fputc(' ', f);
		fputc(*p, f);
		space = false;
		any = true;
	}
}

static int config_cmd_name_cmp(const void *a, const void *b)
{
	const struct mx_param_def *x = *(const struct mx_param_def *const *)a;
	const struct mx_param_def *y = *(const struct mx_param_def *const *)b;
	return strcmp(x->name, y->name);
}

struct config_cmd {
	struct cfg_ctx *c;    /* the file, with every known parameter */
	struct cfg_ctx *defs; /* no file: the defaults */
	bool set_only, defaults, value_only, expand;
};

/* Print one parameter; returns -1 when its expansion failed (reported). */
static int config_cmd_print(struct config_cmd *cc, const struct mx_param_def *def)
{
	struct cfg_ctx *c = cc->defaults ? cc->defs : cc->c;
	size_t v = cfg_find(c, def->name, strlen(def->name));
	if (v == SIZE_MAX)
		return 0;
	if (cc->set_only && !c->vars[v].line)
		return 0;
	const char *value = c->vars[v].raw;
	/* Postfix prints computed defaults (myhostname, mydomain) computed; -x expands all
	 * but the values mxgate itself never expands (default_rbl_reply). */
	if (!value || (cc->expand && !def->raw)) {
		value = cfg_resolve(c, v);
		if (!value)
			return -1;
	}
	/* "name =" for an empty value, as postconf prints it */
	if (!cc->value_only)
		printf("%s =%s", def->name, value[strspn(value, CFG_WHITESPACE)] ? " " : "");
	config_cmd_put_value(stdout, value);
	putchar('\n');
	return 0;
}

static int config_cmd_master(struct cfg_ctx *c, char **names, int nnames)
{
	size_t v = cfg_find(c, "mxgate_master_file", 18);
	const char *path = cfg_resolve(c, v);
	if (!path)
		return 1;
	if (!*path) {
		fprintf(stderr, "mxgate config: fatal: %s: mxgate_master_file is not set\n",
			c->file);
		return 1;
	}
	struct mx_master *m = NULL;
	int rc = mx_master_load(path, &m, stderr);
	if (rc < 0) {
		fprintf(stderr, "mxgate config: fatal: %s: %s\n", path,
			rc == -EINVAL ? "master file has errors" : strerror(-rc));
		return 1;
	}
	const char **want = calloc((size_t)nnames + 1, sizeof(*want));
	if (!want) {
		mx_master_free(m);
		return 1;
	}
	for (int i = 0; i < nnames; i++)
		want[i] = names[i];
	size_t unmatched = mx_master_print(stdout, m, want);
	for (int i = 0; unmatched && i < nnames; i++) {
		const char *one[2] = { names[i], NULL };
		FILE *null = fopen("/dev/null", "w");
		if (null && mx_master_print(null, m, one))
			fprintf(stderr, "mxgate config: warning: unmatched request: \"%s\"\n",
				names[i]);
		if (null)
			fclose(null);
	}
	free(want);
	mx_master_free(m);
	return 0;
}

int mx_config_main(int argc, char **argv, const char *default_path)
{
	const char *path = default_path;
	struct config_cmd cc = { 0 };
	bool master = false;
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, "c:ndhxM")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			cc.set_only = true;
			break;
		case 'd':
			cc.defaults = true;
			break;
		case 'h':
			cc.value_only = true;
			break;
		case 'x':
			cc.expand = true;
			break;
		case 'M':
			master = true;
			break;
		default:
			config_cmd_usage(stderr, default_path);
			return 1;
		}
	}
	if (cc.set_only && cc.defaults) {
		fprintf(stderr, "mxgate config: fatal: specify one of -d -n\n");
		return 1;
	}

	char *text = NULL;
	size_t len = 0;
	int rc = cfg_read_file(path, &text, &len, stderr);
	if (rc < 0) {
		fprintf(stderr, "mxgate config: fatal: open %s: %s\n", path, strerror(-rc));
		return 1;
	}
	struct cfg_ctx c = { .file = path }, defs = { .file = path };
	cfg_read(&c, text, len);
	free(text);
	int status = 0;
	if (cfg_add_defaults(&c) != 0 || cfg_add_defaults(&defs) != 0) {
		fprintf(stderr, "mxgate config: fatal: out of memory\n");
		status = 1;
		goto out;
	}
	if (c.errors) {
		/* what postconf calls fatal: a line that is not name = value */
		cfg_diag_flush(&c, stderr);
		status = 1;
		goto out;
	}
	cc.c = &c;
	cc.defs = &defs;
	if (master) {
		status = config_cmd_master(&c, argv + optind, argc - optind);
		goto out;
	}
	if (optind < argc) {
		for (int i = optind; i < argc; i++) {
			const struct mx_param_def *def = mx_param_find(argv[i], strlen(argv[i]));
			if (!def)
				fprintf(stderr, "mxgate config: warning: %s: unknown parameter\n",
					argv[i]);
			else if (config_cmd_print(&cc, def) < 0)
				status = 1;
		}
	} else {
		const struct mx_param_def *sorted[MX_P_MAX];
		for (size_t i = 0; i < MX_P_MAX; i++)
			sorted[i] = &mx_params[i];
		qsort(sorted, MX_P_MAX, sizeof(sorted[0]), config_cmd_name_cmp);
		for (size_t i = 0; i < MX_P_MAX; i++)
			if (config_cmd_print(&cc, sorted[i]) < 0)
				status = 1;
	}
	fflush(stdout);
	/* what reading and expanding found (warnings; an expansion error is fatal) */
	cfg_diag_flush(&c, stderr);
	cfg_diag_flush(&defs, stderr);
out:
	cfg_ctx_free(&c);
	cfg_ctx_free(&defs);
	return status;
}
