/* mxgate.cf: Postfix main.cf syntax, Postfix parameter semantics.
 *
 * The load: read the file (config_read.c), give every known parameter its value or its
 * default, refuse or warn about the Postfix parameters mxgate does not implement
 * (config_refused.c), expand and validate every known parameter in registry order
 * (config_check.c), then the restriction classes, the names nothing uses, and the services
 * of mxgate_master_file, each of which must load too (main.cf with its -o overrides).
 * Diagnostics are collected, not stopped at: every problem of the file is reported, sorted
 * by line, as "FILE:LINE: problem" or "FILE:LINE: warning: problem". */
#include "mgmt/config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt/config_internal.h"
#include "mgmt/master.h"

const char *mx_transport_name(enum mx_transport t)
{
	switch (t) {
	case MX_TRANSPORT_KERNEL:
		return "kernel";
	case MX_TRANSPORT_DPDK:
		return "dpdk";
	case MX_TRANSPORT_MAX:
		break;
	}
	return "?";
}

static unsigned cfg_check_services(struct mx_config_impl *impl, FILE *diag);
struct cfg_load_opts;
static int cfg_load_stress(struct mx_config_impl *impl, const struct cfg_load_opts *opts,
			   FILE *diag);

void mx_config_free(struct mx_config *cfg)
{
	if (!cfg)
		return;
	struct mx_config_impl *impl = (struct mx_config_impl *)cfg;
	netlist_free(cfg->mynetworks);
	netlist_free(cfg->bare_newline_exclusions);
	netlist_free(cfg->xclient_hosts);
	netlist_free(cfg->event_limit_exceptions);
	netlist_free(cfg->sasl_exceptions_networks);
	for (size_t i = 0; i < impl->nclasses; i++) {
		free(impl->class_names[i]);
		free(impl->class_values[i]);
	}
	free(impl->class_names);
	free(impl->class_values);
	free(impl->class_lines);
	domain_list_free(cfg->mydestination);
	domain_list_free(cfg->relay_domains);
	for (unsigned i = 0; i < cfg->spool_dir_count; i++)
		free(cfg->spool_dirs[i]);
	free(cfg->control_socket_default);
	free(cfg->myorigin_from_file);
	free(cfg->sasl_endpoint);
	for (size_t i = 0; i < MX_P_MAX; i++)
		free(impl->values[i]);
	free(cfg->source_path);
	free(impl->text);
	free(impl->over_path);
	mx_master_free(impl->master);
	mx_config_free(impl->stress);
	free(impl);
}

bool mx_config_word_listed(const struct mx_config *cfg, const char *param, const char *word)
{
	const char *list = mx_config_get(cfg, param);
	return list && cfg_word_in_list(list, word);
}

const char *mx_config_get(const struct mx_config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	const struct mx_param_def *def = mx_param_find(name, strlen(name));
	if (!def)
		return NULL;
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	return impl->values[def->id];
}

/* smtpd_restriction_classes = name1, name2: each name is a parameter of the file whose
 * value is a restriction list. A name without a definition is left out here; compiling the
 * policy reports it ("class has no definition"). */
static void cfg_load_classes(struct cfg_ctx *c, struct mx_config_impl *impl)
{
	const char *cur = impl->values[MX_P_SMTPD_RESTRICTION_CLASSES], *w;
	size_t wl;
	while ((wl = mx_list_next(&cur, &w)) > 0) {
		size_t v = cfg_find(c, w, wl);
		if (v == SIZE_MAX || !c->vars[v].line)
			continue;
		c->vars[v].used = true;
		const char *value = cfg_resolve(c, v);
		if (!value)
			continue; /* the expansion error is reported */
		char **names = realloc(impl->class_names, (impl->nclasses + 1) * sizeof(*names));
		if (names)
			impl->class_names = names;
		char **values = realloc(impl->class_values, (impl->nclasses + 1) * sizeof(*values));
		if (values)
			impl->class_values = values;
		unsigned *lines = realloc(impl->class_lines, (impl->nclasses + 1) * sizeof(*lines));
		if (lines)
			impl->class_lines = lines;
		char *n = strndup(w, wl), *val = strdup(value);
		if (!names || !values || !lines || !n || !val) {
			free(n);
			free(val);
			c->oom = true;
			return;
		}
		impl->class_names[impl->nclasses] = n;
		impl->class_values[impl->nclasses] = val;
		impl->class_lines[impl->nclasses] = c->vars[v].line;
		impl->nclasses++;
	}
}

const char *mx_config_source(const struct mx_config *cfg, const char *name, unsigned *line)
{
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	const struct mx_param_def *def = mx_param_find(name, strlen(name));
	unsigned at = 0;
	if (def) {
		at = impl->lines[def->id];
	} else {
		for (size_t i = 0; i < impl->nclasses; i++)
			if (strcmp(impl->class_names[i], name) == 0)
				at = impl->class_lines[i];
	}
	return cfg_line_file(cfg->source_path, impl->over_path, at, line);
}

unsigned mx_config_line(const struct mx_config *cfg, const char *name)
{
	unsigned line;
	mx_config_source(cfg, name, &line);
	return line;
}

const char *mx_config_get_any(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	if (v || !cfg || !name)
		return v;
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	for (size_t i = 0; i < impl->nclasses; i++)
		if (strcmp(impl->class_names[i], name) == 0)
			return impl->class_values[i];
	return NULL;
}


int cfg_add_defaults(struct cfg_ctx *c)
{
	for (size_t i = 0; i < MX_P_MAX; i++) {
		size_t v = cfg_find(c, mx_params[i].name, strlen(mx_params[i].name));
		if (v == SIZE_MAX) {
			v = cfg_add_var(c, mx_params[i].name, strlen(mx_params[i].name));
			if (v == SIZE_MAX) {
				c->oom = true;
				return -ENOMEM;
			}
			c->vars[v].raw = (char *)mx_params[i].def;
		}
	}
	return 0;
}

/* What one load is of: main.cf alone, or main.cf with the -o overrides of one service. */
struct cfg_load_opts {
	const struct mx_master *master;          /* the service's master file */
	const struct mx_master_service *service; /* NULL: main.cf alone */
	bool stress;                             /* the variant with stress = yes */
};

/* A service's load: its overrides replace main.cf's values (or add names), as written at
 * their master.cf lines, before anything is expanded, so that $name anywhere sees them. */
static void cfg_apply_overrides(struct cfg_ctx *c, const struct mx_master_service *svc)
{
	for (size_t i = 0; i < svc->noverrides && !c->oom; i++) {
		const struct mx_master_override *o = &svc->overrides[i];
		cfg_set(c, o->name, strlen(o->name), o->value, CFG_OVER_BASE + o->line);
	}
}

/* A service's load repeats main.cf's validation; its warnings were said by the main load
 * and are dropped, and an error at a main.cf line (a value that refers to an override)
 * says which service it is about. */
static void cfg_service_diags(struct cfg_ctx *c, const struct mx_master *m,
			      const struct mx_master_service *svc)
{
	size_t w = 0;
	for (size_t r = 0; r < c->ndiags; r++) {
		struct cfg_diag *d = &c->diags[r];
		bool warning = strncmp(d->text, "warning: ", 9) == 0;
		if (d->line > CFG_OVER_BASE) {
			c->diags[w++] = *d;
			continue;
		}
		if (warning) {
			free(d->text);
			continue;
		}
		char *text = NULL;
		if (asprintf(&text, "%s (with the -o overrides of service %s, %s:%u)", d->text,
			     svc->name, m->path, svc->line) < 0) {
			c->oom = true;
			text = NULL;
		}
		if (text) {
			free(d->text);
			d->text = text;
		}
		c->diags[w++] = *d;
	}
	c->ndiags = w;
}

/* The variant under stress repeats the load: its warnings were said by the normal one and
 * are dropped; an error is one only under stress, and says so. */
static void cfg_stress_diags(struct cfg_ctx *c)
{
	size_t w = 0;
	for (size_t r = 0; r < c->ndiags; r++) {
		struct cfg_diag *d = &c->diags[r];
		if (strncmp(d->text, "warning: ", 9) == 0) {
			free(d->text);
			continue;
		}
		char *text = NULL;
		if (asprintf(&text, "%s (under stress: with stress = yes)", d->text) < 0) {
			c->oom = true;
			text = NULL;
		}
		if (text) {
			free(d->text);
			d->text = text;
		}
		c->diags[w++] = *d;
	}
	c->ndiags = w;
}

static void cfg_mark_override_refs(struct cfg_ctx *c, const struct mx_master *m)
{
	for (size_t s = 0; s < m->nservices; s++)
		for (size_t i = 0; i < m->services[s].noverrides; i++)
			cfg_scan_refs(c, m->services[s].overrides[i].value, cfg_mark_used, NULL);
}

/* mxgate_master_file: read it (its messages go to *master_diag, printed after main.cf's)
 * and keep its services. */
static void cfg_read_master(struct cfg_ctx *c, struct mx_config_impl *impl,
			    char **master_diag)
{
	const char *path = impl->values[MX_P_MXGATE_MASTER_FILE];
	if (!path || !*path || c->errors)
		return;
	size_t n = 0;
	FILE *mem = open_memstream(master_diag, &n);
	if (!mem) {
		c->oom = true;
		return;
	}
	int rc = mx_master_load(path, &impl->master, mem);
	fclose(mem);
	if (rc == -ENOMEM) {
		c->oom = true;
	} else if (rc < 0) {
		size_t v = cfg_find(c, "mxgate_master_file", 18);
		cfg_diag_add(c, c->vars[v].line, false, "parameter mxgate_master_file: %s: %s",
			     path, rc == -EINVAL ? "master file has errors" : strerror(-rc));
	} else {
		cfg_mark_override_refs(c, impl->master);
		size_t v = cfg_find(c, "mxgate_listen", 13);
		if (c->vars[v].line)
			cfg_diag_add(c, c->vars[v].line, true,
				     "mxgate_listen is not used: the services of "
				     "mxgate_master_file %s say where mxgate listens",
				     path);
	}
}

static int cfg_load(const char *text, size_t len, const char *name, struct mx_config **out,
		    FILE *diag, struct cfg_ctx *c, const struct cfg_load_opts *opts)
{
	c->file = name;
	cfg_read(c, text, len);
	if (opts->service) {
		c->over_file = opts->master->path;
		cfg_apply_overrides(c, opts->service);
	}
	/* As Postfix's master(8) runs a process under stress with -o stress=yes: over
	 * main.cf and every -o, at no line (cfg_parse_stress() refuses one from a file). */
	if (opts->stress && cfg_set(c, "stress", 6, "yes", 0) == SIZE_MAX)
		return -ENOMEM;

	/* Every known parameter gets a var: its file value or its default. */
	if (cfg_add_defaults(c) != 0)
		return -ENOMEM;

	/* Names that some value of the file refers to are in use (Postfix's rule for
	 * user-defined parameters). */
	size_t nfile = c->nvars;
	for (size_t v = 0; v < nfile; v++)
		if (c->vars[v].line && c->vars[v].raw)
			cfg_scan_refs(c, c->vars[v].raw, cfg_mark_used, NULL);
	if (opts->service)
		cfg_mark_override_refs(c, opts->master);

	struct mx_config_impl *impl = calloc(1, sizeof(*impl));
	if (!impl)
		return -ENOMEM;
	struct mx_config *cfg = &impl->pub;
	cfg->source_path = strdup(name);
	impl->text = malloc(len + 1);
	if (!cfg->source_path || !impl->text)
		c->oom = true;
	else
		memcpy(impl->text, text, len);
	impl->text_len = len;
	if (impl->text)
		impl->text[len] = '\0';
	if (opts->service) {
		impl->over_path = strdup(opts->master->path);
		if (!impl->over_path)
			c->oom = true;
		impl->service = opts->service;
	}

	/* The engine's flags that several parameters combine into. */
	cfg->smtp.enable_pipelining = true;
	cfg->smtp.enable_chunking = true;
	cfg->smtp.enable_smtputf8 = true;
	cfg->smtp.enable_8bitmime = true;
	cfg->smtp.enable_dsn = true;

	/* Expand and check every known parameter, in table order. */
	const char *pdms = "";
	for (size_t i = 0; i < MX_P_MAX && !c->oom; i++) {
		size_t v = cfg_find(c, mx_params[i].name, strlen(mx_params[i].name));
		size_t mark = c->ndiags;
		const char *value = mx_params[i].raw ? (c->vars[v].raw ? c->vars[v].raw : "")
						     : cfg_resolve(c, v);
		bool ok = value != NULL;
		if (ok) {
			impl->lines[i] = c->vars[v].line;
			impl->values[i] = strdup(value);
			if (!impl->values[i]) {
				c->oom = true;
				break;
			}
			if (i == MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS)
				pdms = impl->values[i];
			ok = cfg_apply(c, v, impl, pdms) == 0;
		}
		if (ok)
			continue;
		/* A default that is wrong only because a configured value it refers to is
		 * wrong ($mynetworks in smtpd_forbid_bare_newline_exclusions, $compatibility_
		 * level in relay_domains): that value's message says it all. Its own messages
		 * are the ones without a line; others (a configured name expanded here for
		 * the first time) stay. */
		if (!c->vars[v].line && cfg_refers_to_bad(c, v))
			cfg_diag_drop_unlined(c, mark);
		c->vars[v].bad = true;
		/* Every failure was reported somewhere. */
		assert(c->errors > 0 || c->oom);
	}

	/* The restriction classes: user-defined parameters, in use because a list names
	 * them. Their values are expanded like any other. */
	if (!c->oom && impl->values[MX_P_SMTPD_RESTRICTION_CLASSES])
		cfg_load_classes(c, impl);

	/* The services of mxgate_master_file. */
	char *master_diag = NULL;
	if (!opts->service && !opts->stress && !c->oom)
		cfg_read_master(c, impl, &master_diag);

	/* Postfix parameters mxgate does not implement: refused or warned about (after the
	 * restriction classes, whose names are the operator's own). */
	if (!c->oom)
		cfg_check_refused(c, opts->service != NULL);

	/* Names mxgate does not know and nothing refers to. */
	for (size_t v = 0; v < nfile; v++) {
		struct cfg_var *var = &c->vars[v];
		if (var->line && !var->def && !var->used && !var->classified)
			cfg_diag_add(c, var->line, true, "unused parameter: %s=%.*s%s", var->name,
				     CFG_SHOW(var->raw ? var->raw : ""));
	}

	/* The control socket lives in the (first) spool directory unless placed elsewhere. */
	if ((!cfg->control_socket || !*cfg->control_socket) && cfg->spool_directory) {
		if (asprintf(&cfg->control_socket_default, "%s/control", cfg->spool_directory) < 0) {
			cfg->control_socket_default = NULL;
			c->oom = true;
		}
		cfg->control_socket = cfg->control_socket_default;
	}

	/* Strings the engine borrows. */
	cfg->smtp.myhostname = cfg->myhostname;
	cfg->smtp.banner = cfg->smtpd_banner;
	cfg->smtp.mail_name = cfg->mail_name;

	/* A service listens where its name says. */
	if (opts->service) {
		memcpy(cfg->listen, opts->service->listen, sizeof(opts->service->listen));
		cfg->listen_count = opts->service->listen_count;
		cfg_service_diags(c, opts->master, opts->service);
	}
	if (opts->stress)
		cfg_stress_diags(c);

	cfg_diag_flush(c, diag);
	if (master_diag && diag)
		fputs(master_diag, diag);
	free(master_diag);
	/* The same under stress: it must load too, and is kept when some value differs. */
	if (!c->oom && !c->errors && !opts->stress) {
		int rc = cfg_load_stress(impl, opts, diag);
		if (rc == -ENOMEM)
			c->oom = true;
		else if (rc < 0)
			c->errors++;
	}
	/* Each service's effective configuration must load too. */
	if (!c->oom && !c->errors && impl->master)
		c->errors += cfg_check_services(impl, diag);
	if (c->oom) {
		mx_config_free(cfg);
		return -ENOMEM;
	}
	if (c->errors) {
		mx_config_free(cfg);
		return -EINVAL;
	}
	*out = cfg;
	return 0;
}

/* Load every service's effective configuration; returns the number that failed. */
static unsigned cfg_check_services(struct mx_config_impl *impl, FILE *diag)
{
	unsigned failed = 0;
	for (size_t i = 0; i < impl->master->nservices; i++) {
		struct mx_config *svc = NULL;
		if (mx_config_load_service(&impl->pub, &impl->master->services[i], &svc, diag) < 0)
			failed++;
		mx_config_free(svc);
	}
	return failed;
}

static int cfg_load_text(const char *text, size_t len, const char *name,
			 struct mx_config **out, FILE *diag, const struct cfg_load_opts *opts)
{
	struct cfg_ctx c = { 0 };
	int rc = cfg_load(text, len, name, out, diag, &c, opts);
	cfg_ctx_free(&c);
	return rc;
}

static bool cfg_str_differ(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

/* The names whose values differ between a and its stress variant b (see
 * mx_config_stress_changes()). */
static size_t cfg_stress_diff(const struct mx_config_impl *a, const struct mx_config_impl *b,
			      const char **names, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < MX_P_MAX; i++) {
		if (i == MX_P_STRESS || !cfg_str_differ(a->values[i], b->values[i]))
			continue;
		if (n < max)
			names[n] = mx_params[i].name;
		n++;
	}
	/* the restriction classes: the same names (smtpd_restriction_classes would differ
	 * otherwise), values that may not be */
	for (size_t i = 0; i < a->nclasses; i++) {
		const char *other = i < b->nclasses ? b->class_values[i] : NULL;
		if (!cfg_str_differ(a->class_values[i], other))
			continue;
		if (n < max)
			names[n] = a->class_names[i];
		n++;
	}
	return n;
}

/* Load the same text with stress = yes; keep it in impl->stress when some value differs.
 * Returns 0, -ENOMEM, or -EINVAL after its errors were said on diag. */
static int cfg_load_stress(struct mx_config_impl *impl, const struct cfg_load_opts *opts,
			   FILE *diag)
{
	struct cfg_load_opts so = *opts;
	so.stress = true;
	struct mx_config *v = NULL;
	int rc = cfg_load_text(impl->text, impl->text_len, impl->pub.source_path, &v, diag, &so);
	if (rc < 0)
		return rc;
	if (cfg_stress_diff(impl, (const struct mx_config_impl *)v, NULL, 0) == 0)
		mx_config_free(v);
	else
		impl->stress = v;
	return 0;
}

const struct mx_config *mx_config_stress(const struct mx_config *cfg)
{
	return cfg ? ((const struct mx_config_impl *)cfg)->stress : NULL;
}

size_t mx_config_stress_changes(const struct mx_config *cfg, const char **names, size_t max)
{
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	if (!impl || !impl->stress)
		return 0;
	return cfg_stress_diff(impl, (const struct mx_config_impl *)impl->stress, names, max);
}

int mx_config_load_service(const struct mx_config *cfg, const struct mx_master_service *svc,
			   struct mx_config **out, FILE *diag)
{
	*out = NULL;
	const struct mx_config_impl *impl = (const struct mx_config_impl *)cfg;
	if (!impl->master || !svc)
		return -EINVAL;
	struct cfg_load_opts opts = { .master = impl->master, .service = svc };
	return cfg_load_text(impl->text, impl->text_len, cfg->source_path, out, diag, &opts);
}

const struct mx_master *mx_config_master(const struct mx_config *cfg)
{
	return cfg ? ((const struct mx_config_impl *)cfg)->master : NULL;
}

const struct mx_master_service *mx_config_service(const struct mx_config *cfg)
{
	return cfg ? ((const struct mx_config_impl *)cfg)->service : NULL;
}

size_t mx_config_restart_changes(const struct mx_config *a, const struct mx_config *b,
				 const char **names, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < MX_P_MAX; i++) {
		if (mx_params[i].reload != MX_RELOAD_RESTART)
			continue;
		if (strcmp(mx_config_get(a, mx_params[i].name), mx_config_get(b, mx_params[i].name)) == 0)
			continue;
		if (n < max)
			names[n] = mx_params[i].name;
		n++;
	}
	return n;
}

int mx_config_load_string(const char *text, const char *name, struct mx_config **out,
			  FILE *diag)
{
	*out = NULL;
	size_t len = text ? strlen(text) : 0;
	if (len > CFG_FILE_MAX) {
		if (diag)
			fprintf(diag, "%s: file is larger than %u bytes\n", name, CFG_FILE_MAX);
		return -EFBIG;
	}
	struct cfg_load_opts opts = { 0 };
	return cfg_load_text(text ? text : "", len, name ? name : "(string)", out, diag, &opts);
}

void mx_config_report_failure(FILE *f, const char *prog, const char *path, int rc)
{
	if (rc == -ENOENT)
		fprintf(f, "%s: %s: no such file (name the configuration with -c FILE)\n", prog,
			path);
	else if (rc == -EINVAL)
		fprintf(f, "%s: %s: configuration has errors\n", prog, path);
	else
		fprintf(f, "%s: %s: %s\n", prog, path, strerror(-rc));
}

int cfg_read_file(const char *path, char **text, size_t *len, FILE *diag)
{
	*text = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (diag && e != ENOENT) /* mx_config_report_failure() says that one */
			fprintf(diag, "open %s: %s\n", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		if (diag)
			fprintf(diag, "stat %s: %s\n", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		if (diag)
			fprintf(diag, "%s: not a regular file\n", path);
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	char *buf = malloc(CFG_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, CFG_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			if (diag)
				fprintf(diag, "read %s: %s\n", path, strerror(e));
			free(buf);
			close(fd);
			return -e;
		}
		if (r == 0 || (n += (size_t)r) > CFG_FILE_MAX)
			break;
	}
	close(fd);
	if (n > CFG_FILE_MAX) {
		if (diag)
			fprintf(diag, "%s: file is larger than %u bytes\n", path, CFG_FILE_MAX);
		free(buf);
		return -EFBIG;
	}
	*text = buf;
	*len = n;
	return 0;
}

int mx_config_load(const char *path, struct mx_config **out, FILE *diag)
{
	*out = NULL;
	char *buf;
	size_t len;
	int rc = cfg_read_file(path, &buf, &len, diag);
	if (rc < 0)
		return rc;
	struct cfg_load_opts opts = { 0 };
	rc = cfg_load_text(buf, len, path, out, diag, &opts);
	free(buf);
	return rc;
}
