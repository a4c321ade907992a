/* State shared by the files of the configuration loader (private to mgmt/config*.c):
 *   config_read.c    reading main.cf syntax, $-expansion, diagnostics
 *   config_check.c   validation of each known parameter by its registry row
 *   config_refused.c Postfix parameters mxgate does not implement
 *   config.c         the load itself, services, the public accessors */
#ifndef MXGATE_MGMT_CONFIG_INTERNAL_H
#define MXGATE_MGMT_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/config.h"
#include "mgmt/config_params.h"
#include "mxgate/ctype.h"
#include "mxgate/list.h"

#define CFG_FILE_MAX (4u << 20)       /* bytes of mxgate.cf */
#define CFG_VALUE_MAX (1u << 20)      /* bytes of one expanded value */
#define CFG_EXPAND_TOTAL (16u << 20)  /* bytes of all expanded values together */
#define CFG_DEPTH_MAX 100             /* Postfix's "unreasonable macro call nesting" */
#define CFG_SHOW_MAX 200              /* bytes of a value quoted in a message */
#define CFG_WHITESPACE " \t\r\n"
/* Lines of the second file of a load (a master.cf whose -o overrides apply) are numbered
 * from here, so every message and every parameter's line says which file it is in: a
 * file of CFG_FILE_MAX bytes has fewer lines. */
#define CFG_OVER_BASE (1u << 24)

/* How a value is shown in a message: cut at CFG_SHOW_MAX bytes. */
#define CFG_SHOW(s) (int)(strlen(s) > CFG_SHOW_MAX ? CFG_SHOW_MAX : strlen(s)), (s), \
		    (strlen(s) > CFG_SHOW_MAX ? "..." : "")

/* Growable byte buffer with a hard cap. Appending past the cap sets `too_long` and keeps
 * what fit; running out of memory sets `oom`. */
struct cfg_buf {
	char *p;
	size_t len, cap;
	bool too_long, oom;
};

void cfg_buf_add(struct cfg_buf *b, const char *s, size_t n);
void cfg_buf_str(struct cfg_buf *b, const char *s);
char *cfg_buf_take(struct cfg_buf *b);
void cfg_buf_free(struct cfg_buf *b);

enum cfg_var_state {
	CFG_VAR_NEW,
	CFG_VAR_BUSY, /* being expanded: meeting it again is a loop */
	CFG_VAR_DONE,
	CFG_VAR_FAILED,
	CFG_VAR_STATE_MAX,
};

/* A name: a known parameter (configured or not) or a name=value line of the file. */
struct cfg_var {
	char *name;
	char *raw;          /* as written, or the default; NULL: computed (myhostname, mydomain) */
	bool raw_owned;     /* raw was allocated (read from the file) */
	unsigned line;      /* where it was set; 0 = not set in the file */
	const struct mx_param_def *def; /* NULL for a name mxgate does not know */
	enum cfg_var_state state;
	char *value;        /* expanded, once state is DONE */
	bool used;          /* some value of the file says $name */
	bool bad;           /* its value failed validation */
	bool dep_visit;     /* scratch for cfg_refers_to_bad() */
	bool classified;    /* a Postfix parameter of the refused table (config_refused.c) */
};

struct cfg_diag {
	unsigned line;
	size_t seq;
	char *text;
};

struct cfg_ctx {
	const char *file;
	const char *over_file; /* where lines from CFG_OVER_BASE on are; NULL: none */

	struct cfg_var *vars;
	size_t nvars, capvars;
	size_t *slots; /* open-addressing index of vars by name; SIZE_MAX = empty */
	size_t nslots;

	struct cfg_diag *diags;
	size_t ndiags, capdiags;
	unsigned errors;

	size_t expanded_total;
	unsigned depth;
	size_t stack[CFG_DEPTH_MAX + 8]; /* vars being expanded, for loop messages */
	size_t stack_len;
	bool oom;
};

void cfg_diag_add(struct cfg_ctx *c, unsigned line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void cfg_diag_flush(struct cfg_ctx *c, FILE *diag);
void cfg_diag_drop_unlined(struct cfg_ctx *c, size_t mark);
/* The file and line number a stored line stands for (see CFG_OVER_BASE). */
const char *cfg_line_file(const char *file, const char *over_file, unsigned line,
			  unsigned *shown);

size_t cfg_find(const struct cfg_ctx *c, const char *name, size_t n);
size_t cfg_add_var(struct cfg_ctx *c, const char *name, size_t n);
void cfg_ctx_free(struct cfg_ctx *c);

/* Read a whole config file: *len bytes (at most CFG_FILE_MAX) in a malloc'd *text. Returns 0 or a negative errno, said on diag except
 * -ENOENT. */
int cfg_read_file(const char *path, char **text, size_t *len, FILE *diag);
/* Give every known parameter not in the file a var holding its default. */
int cfg_add_defaults(struct cfg_ctx *c);

bool cfg_is_name_char(char ch);
void cfg_read(struct cfg_ctx *c, const char *text, size_t len);
/* Set var `name` to `value` as if written at `line` (a -o override). Returns the var or
 * SIZE_MAX when out of memory. */
size_t cfg_set(struct cfg_ctx *c, const char *name, size_t n, const char *value,
	       unsigned line);
bool cfg_parse_level(const char *s, uint64_t lv[3]);
const char *cfg_resolve(struct cfg_ctx *c, size_t v);
void cfg_scan_refs(struct cfg_ctx *c, const char *text,
		   void (*fn)(struct cfg_ctx *, size_t, void *), void *arg);
void cfg_mark_used(struct cfg_ctx *c, size_t v, void *arg);
bool cfg_refers_to_bad(struct cfg_ctx *c, size_t v);
bool cfg_word_in_list(const char *list, const char *word);

struct mx_master;

struct mx_config_impl {
	struct mx_config pub; /* first: the public view is the same pointer */
	char *values[MX_P_MAX];
	unsigned lines[MX_P_MAX]; /* where each was set; 0: its default */
	/* The parameters smtpd_restriction_classes names (user-defined, so not in
	 * mx_params): name and expanded value, for mx_config_get_any(), and their lines. */
	char **class_names, **class_values;
	unsigned *class_lines;
	size_t nclasses;
	/* The file as read (for the effective configuration of each service), and the
	 * services of mxgate_master_file (NULL when it is empty). */
	char *text;
	size_t text_len;
	struct mx_master *master;
	char *over_path;         /* a service's configuration: the master file */
	const struct mx_master_service *service; /* ... and the service (in pub's master) */
	/* The same configuration with stress = yes (owned); NULL when no value differs. */
	struct mx_config *stress;
};

/* One parameter's value on its way into struct mx_config (config_check.c). */
struct mx_param_value {
	struct cfg_ctx *c;
	size_t var;
	const struct mx_param_def *def;
	const char *value; /* expanded; for a from_file row, the file's first line */
	int64_t n;         /* INT, SIZE, TIME (seconds) */
	bool b;            /* BOOL */
	const char *pdms;  /* parent_domain_matches_subdomains, expanded */
};

/* "FILE:LINE: message" at the parameter's line ("(the default)" when it has none). */
void mx_param_report(const struct mx_param_value *pv, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Validate known parameter var v (its expanded value is impl->values[id]) and store it.
 * Returns 0 or -1 after reporting. */
int cfg_apply(struct cfg_ctx *c, size_t v, struct mx_config_impl *impl, const char *pdms);

/* The parse hooks of the registry rows (config_check.c). */
int cfg_parse_banner(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_syslog_name(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_renamed_exceptions(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_compat_level(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_smtputf8(const struct mx_param_value *pv, struct mx_config *cfg);
/* config_tls.c: smtpd_tls_[mandatory_]protocols, smtpd_tls_[mandatory_]exclude_ciphers */
int cfg_parse_tls_protocols(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_tls_exclude(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_discard_ehlo(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_bare_newline(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_transport(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_listen(const struct mx_param_value *pv, struct mx_config *cfg);
/* mxgate_metrics_listen: empty, or one address as mxgate_listen writes them
 * (mgmt/config_metrics.c). */
int cfg_parse_metrics_listen(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_spool_dirs(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_relayhost(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_upstream_proxy(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_sasl_type(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_sasl_enable(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_sasl_path(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_sasl_sec(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_relay_protocol(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_stress(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_stress_leave(const struct mx_param_value *pv, struct mx_config *cfg);
int cfg_parse_mail_owner(const struct mx_param_value *pv, struct mx_config *cfg);

/* Postfix parameters mxgate does not implement (config_refused.c): for each name set in
 * the file (or, with over_only, in the override file) that is neither known nor a
 * restriction class, a warning or an error as its row says; such names are marked
 * classified (no "unused parameter" warning). */
void cfg_check_refused(struct cfg_ctx *c, bool over_only);

#endif
