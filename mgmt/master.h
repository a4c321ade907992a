/* Services, as Postfix's master.cf (master(5)): the file mxgate_master_file names.
 *
 * Syntax: one entry per logical line (a line that starts with whitespace continues the one
 * before; empty lines and lines whose first non-blank is '#' are skipped, also inside an
 * entry), eight columns separated by whitespace:
 *     service type private unpriv chroot wakeup maxproc command [arguments...]
 * An argument may be a {braced group} holding whitespace (Postfix 3.0); `-o name=value`,
 * `-o { name = value }` and `-oname=value` set a parameter for that service alone.
 *
 * What mxgate makes of it: each `inet` entry whose command is `smtpd` is a listener (a
 * *service*), named `smtp`, `submission`, `smtps` (or any name /etc/services knows),
 * `PORT`, `HOST:PORT`, `[IPV6]:PORT` or `*:PORT`, on every transport; its -o overrides
 * apply to it alone (mx_config_load_service()). An override of a parameter whose scope is
 * global (config_params.h) is an error. Every other entry is reported: a warning for what a
 * gateway does not need (Postfix's internal and delivery services), an error where
 * skipping it would change what is accepted (postscreen, an smtpd that is not an inet
 * listener, a content filter's re-injection listener). */
#ifndef MXGATE_MGMT_MASTER_H
#define MXGATE_MGMT_MASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mgmt/config.h"

#define MX_MASTER_FILE_MAX (1u << 20) /* bytes of a master.cf */
#define MX_MASTER_ENTRIES_MAX 1024    /* entries of a master.cf */
#define MX_MASTER_ARGS_MAX 256        /* command and arguments of one entry */
#define MX_MASTER_SERVICES_MAX MX_CONFIG_MAX_LISTEN

/* The seven columns before the command. */
enum mx_master_column {
	MX_MASTER_SERVICE,
	MX_MASTER_TYPE,
	MX_MASTER_PRIVATE,
	MX_MASTER_UNPRIV,
	MX_MASTER_CHROOT,
	MX_MASTER_WAKEUP,
	MX_MASTER_MAXPROC,
	MX_MASTER_COLUMN_MAX,
};

/* One entry, for `mxgate config -M` (as `postconf -M` prints it). */
struct mx_master_entry {
	char *column[MX_MASTER_COLUMN_MAX];
	char **argv;   /* the command and its arguments, a {group} as postconf -M shows it */
	size_t argc;
	unsigned line; /* where the entry starts */
};

/* -o name=value of a service. */
struct mx_master_override {
	char *name;
	char *value;
	unsigned line; /* the line of the -o */
};

/* An inet smtpd entry: a listener with its overrides. */
struct mx_master_service {
	char *name;    /* as written: "smtp", "127.0.0.1:10025", "[::1]:2525" */
	unsigned line;
	/* Where it listens: a name without a host listens on every address, as two
	 * entries 0.0.0.0 and :: (the kernel transport binds :: with IPV6_V6ONLY). */
	struct mx_listen_addr listen[2];
	unsigned listen_count;
	struct mx_master_override *overrides;
	size_t noverrides;
	/* A postscreen(8) inet line: the screen runs in front of this service. Its
	 * overrides are the postscreen line's, then the `smtpd pass` line's (postscreen
	 * hands a client that passed to that smtpd: mxgate keeps it on the same
	 * connection, so the two lines are one service). */
	bool screen;
};

struct mx_master {
	char *path;
	struct mx_master_entry *entries;
	size_t nentries;
	struct mx_master_service *services;
	size_t nservices;
	/* The `smtpd pass` line postscreen services hand clients to (its -o overrides);
	 * pass.name is NULL when there is none. */
	struct mx_master_service pass;
};

/* Parse master.cf text (`name` stands for the file in messages). Every problem is written
 * to diag (may be NULL) as "NAME:LINE: problem" or "NAME:LINE: warning: problem". Returns 0
 * and *out (also when there are warnings), -EINVAL after errors, -EFBIG for a text over
 * MX_MASTER_FILE_MAX, -ENOMEM. */
int mx_master_parse(const char *text, size_t len, const char *name, struct mx_master **out,
		    FILE *diag);

/* The same from a file; -ENOENT etc. when it cannot be read (said on diag). */
int mx_master_load(const char *path, struct mx_master **out, FILE *diag);

void mx_master_free(struct mx_master *m);

/* The service named `name` exactly as written, or NULL. */
const struct mx_master_service *mx_master_find(const struct mx_master *m, const char *name);

/* Print the entries as `postconf -M` does (one line each, columns aligned, {groups}
 * normalised); with `names` (NULL-terminated, each "service" or "service/type"), only
 * those. Returns how many names matched nothing ("unmatched request"). */
size_t mx_master_print(FILE *f, const struct mx_master *m, const char *const *names);

#endif
