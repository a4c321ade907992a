/* mxgate.cf: configuration in Postfix main.cf syntax.
 *
 * Syntax (as postconf(5)): `name = value` logical lines; a line that starts with whitespace
 * continues the previous one; empty lines and lines whose first non-blank is '#' are
 * ignored; `$name`, `${name}`, `$(name)`, `${name?value}`, `${name:value}` expand (lazily,
 * so a value may use a parameter defined later or only by default), `$$` is a literal '$'.
 *
 * Postfix concepts keep Postfix's parameter names and defaults (myhostname, mydomain,
 * mynetworks, mydestination, relay_domains, smtpd_banner, message_size_limit, ...).
 * mxgate's own parameters start with `mxgate_` and are documented in deploy/mxgate.cf.example
 * and in mgmt/config_params.c (the single table of every parameter mxgate knows). */
#ifndef MXGATE_MGMT_CONFIG_H
#define MXGATE_MGMT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "smtp/smtp_session.h"
#include "tables/domain_list.h"
#include "tables/netlist.h"

enum mx_transport {
	MX_TRANSPORT_KERNEL, /* Linux sockets + epoll */
	MX_TRANSPORT_DPDK,   /* DPDK ports, own TCP/IP stack (dataplane issue) */
	MX_TRANSPORT_MAX,
};

const char *mx_transport_name(enum mx_transport t);

#define MX_CONFIG_MAX_LISTEN 16
#define MX_CONFIG_MAX_SPOOLS 16

struct mx_listen_addr {
	char host[64]; /* numeric address as written ("0.0.0.0", "::1") */
	uint16_t port;
};

struct mx_config {
	/* Postfix parameters, resolved ($-expanded, parsed, validated). */
	char *myhostname;
	char *mydomain;
	char *myorigin;      /* for the relay policy: unqualified recipients (added by config) */
	char *myorigin_from_file; /* owns myorigin when it was "/file" (Debian's /etc/mailname) */
	char *mail_name;     /* "mxgate" */
	char *smtpd_banner;  /* default "$myhostname ESMTP $mail_name" */
	struct netlist *mynetworks;
	struct domain_list *mydestination;
	struct domain_list *relay_domains;
	struct netlist *bare_newline_exclusions; /* smtpd_forbid_bare_newline_exclusions */
	struct netlist *xclient_hosts;          /* smtpd_authorized_xclient_hosts */
	unsigned smtpd_timeout_s;               /* smtpd_timeout, Postfix time units allowed */
	bool smtpd_per_request_deadline;        /* smtpd_timeout bounds a whole request */
	bool smtpd_peername_lookup;             /* look the client's name up at connect */
	bool smtpd_upstream_proxy_haproxy;      /* smtpd_upstream_proxy_protocol = haproxy */
	unsigned smtpd_upstream_proxy_timeout_s; /* smtpd_upstream_proxy_timeout */
	/* SMTP AUTH through Dovecot (smtpd_sasl_*) */
	const char *queue_directory;            /* queue_directory: relative smtpd_sasl_path */
	bool sasl_type_dovecot;                 /* smtpd_sasl_type = dovecot */
	bool sasl_auth_enable;                  /* smtpd_sasl_auth_enable */
	char *sasl_endpoint;                    /* smtpd_sasl_path as "unix:/p" or "inet:h:p" */
	const char *sasl_service;               /* smtpd_sasl_service */
	unsigned sasl_sec_opts, sasl_tls_sec_opts; /* SMTP_DOVECOT_SEC_* */
	struct netlist *sasl_exceptions_networks; /* smtpd_sasl_exceptions_networks */
	bool sasl_authenticated_header;         /* smtpd_sasl_authenticated_header */
	bool broken_sasl_auth_clients;          /* broken_sasl_auth_clients */
	bool tls_auth_only;                     /* smtpd_tls_auth_only */
	unsigned smtpd_min_data_rate;           /* bytes/s that extend a DATA deadline */
	char *maillog_file;                     /* empty: log to syslog */
	char *syslog_facility;                  /* syslog_facility: mail, local0... */
	char *syslog_name;                      /* syslog_name: NAME/smtpd[pid] */
	char *mxgate_syslog_socket;             /* mxgate_syslog_socket: /dev/log */
	/* anvil(8)'s per-client limits (0 = no limit), per service */
	unsigned client_connection_count_limit; /* smtpd_client_connection_count_limit */
	unsigned client_connection_rate_limit;  /* smtpd_client_connection_rate_limit */
	unsigned client_message_rate_limit;     /* smtpd_client_message_rate_limit */
	unsigned client_recipient_rate_limit;   /* smtpd_client_recipient_rate_limit */
	unsigned client_auth_rate_limit;        /* smtpd_client_auth_rate_limit */
	unsigned client_new_tls_session_rate_limit; /* smtpd_client_new_tls_session_rate_limit */
	struct netlist *event_limit_exceptions; /* smtpd_client_event_limit_exceptions */
	unsigned client_ipv4_prefix_length;     /* smtpd_client_ipv4_prefix_length */
	unsigned client_ipv6_prefix_length;     /* smtpd_client_ipv6_prefix_length */
	unsigned anvil_rate_time_unit_s;        /* anvil_rate_time_unit (global) */

	/* The engine's view (limits, flags), filled from the parameters above. Its strings
	 * point into this struct. */
	struct smtp_config smtp;

	/* mxgate-specific parameters. */
	enum mx_transport transport;            /* mxgate_transport = kernel | dpdk */
	struct mx_listen_addr listen[MX_CONFIG_MAX_LISTEN]; /* mxgate_listen = addr:port, ... */
	unsigned listen_count;
	unsigned workers;                       /* mxgate_workers (0 = one per core) */
	char *spool_directory;                  /* the first of spool_dirs */
	char *spool_dirs[MX_CONFIG_MAX_SPOOLS]; /* mxgate_spool_directory: one or more */
	unsigned spool_dir_count;
	uint64_t spool_segment_size;            /* mxgate_spool_segment_size, bytes */
	/* mxgate_control_socket; when empty, $first_spool_directory/control */
	const char *control_socket;
	char *control_socket_default;           /* owns the default when used */
	const char *table_directory;            /* mxgate_table_directory (LMDB) */
	unsigned max_connections;               /* mxgate_max_connections per worker */
	/* Stress (mgmt/stress.h): begins at stress_enter_percent of every worker's
	 * max_connections together, ends at stress_leave_percent once it lasted
	 * stress_minimum_time_s. */
	unsigned stress_enter_percent;          /* mxgate_stress_enter_percent */
	unsigned stress_leave_percent;          /* mxgate_stress_leave_percent */
	unsigned stress_minimum_time_s;         /* mxgate_stress_minimum_time */
	bool stress;                            /* this is a stress variant (stress = yes) */
	unsigned anvil_table_size;              /* mxgate_anvil_table_size: entries */
	/* mxgate_anvil_rate_map: "" (rates counted per node) or memcache:/path.cf, where
	 * the rate counters are shared with other nodes (dataplane/svc/svc_anvil.h) */
	const char *anvil_rate_map;
	unsigned postscreen_cache_cleanup_interval_s; /* postscreen_cache_cleanup_interval */
	unsigned spool_commit_delay_ms;         /* mxgate_spool_commit_delay: the most a
						   group commit waits for company */
	uint64_t spool_quota;                   /* mxgate_spool_quota, bytes; 0 = none */

	/* The relay (dataplane/spool/relay.h); off while relayhost is empty. */
	char relayhost_addr[64];                /* relayhost: numeric address, "" = no relay */
	uint16_t relayhost_port;                /* default 25 */
	bool relay_lmtp;                        /* mxgate_relay_protocol = lmtp */
	unsigned relay_concurrency;             /* default_destination_concurrency_limit */
	unsigned smtp_connect_timeout_s, smtp_helo_timeout_s, smtp_mail_timeout_s;
	unsigned smtp_rcpt_timeout_s, smtp_data_init_timeout_s, smtp_data_xfer_timeout_s;
	unsigned smtp_data_done_timeout_s, smtp_quit_timeout_s;
	unsigned smtp_connection_cache_time_s;  /* smtp_connection_cache_time_limit */
	unsigned minimal_backoff_s, maximal_backoff_s, queue_run_delay_s;
	unsigned maximal_queue_lifetime_s;      /* 0: one attempt, then bounce */
	unsigned bounce_queue_lifetime_s;       /* the same for null-sender mail (bounces) */
	uint64_t bounce_size_limit;             /* bytes of the original a DSN returns */
	const char *transport_maps;             /* table specs, commas and/or white space */
	const char *recipient_delimiter;        /* "" for none */

	/* mxgate_metrics_listen: where the Prometheus endpoint listens (mgmt/metrics_http.h);
	 * off when not set. */
	struct mx_listen_addr metrics_listen;
	bool metrics_listen_set;

	char *source_path; /* the file it came from, for messages */
};

/* Load and validate a config file. On success returns 0 and *out. On failure returns a
 * negative errno (-ENOENT, -EINVAL...) and writes one line per problem to `diag` in the form
 * "FILE:LINE: problem" (the line of the parameter whose value is wrong), so `mxgate --check`
 * can print them. Unknown parameter names are reported as warnings ("unused parameter", as
 * Postfix says) without failing. */
int mx_config_load(const char *path, struct mx_config **out, FILE *diag);

/* The line a tool prints after mx_config_load() failed with rc (its diag lines say what
 * is wrong where; this says "no such file", "configuration has errors", ...). */
void mx_config_report_failure(FILE *f, const char *prog, const char *path, int rc);

/* The same from a string, for tests; `name` stands in for the file name in messages. */
int mx_config_load_string(const char *text, const char *name, struct mx_config **out,
			  FILE *diag);

/* True when the list parameter `param` (words separated by commas and/or white space)
 * contains `word`, as Postfix tests parent_domain_matches_subdomains. */
bool mx_config_word_listed(const struct mx_config *cfg, const char *param, const char *word);

/* The value of any known parameter after expansion, as `postconf NAME` would print it;
 * NULL for an unknown name. The string belongs to the config. */
const char *mx_config_get(const struct mx_config *cfg, const char *name);

/* mx_config_get(), and also the user-defined parameters smtpd_restriction_classes names
 * (the restriction lists of those classes, expanded). NULL when neither. */
const char *mx_config_get_any(const struct mx_config *cfg, const char *name);

/* The line of the file where parameter (or restriction class) `name` was set; 0 when it
 * has its default or is unknown. For messages in the "FILE:LINE: problem" form. */
unsigned mx_config_line(const struct mx_config *cfg, const char *name);

/* The same with the file: source_path, or for a service's configuration the master file
 * when `name` is one of the service's -o overrides. */
const char *mx_config_source(const struct mx_config *cfg, const char *name, unsigned *line);

/* Services (mgmt/master.h). With mxgate_master_file set, mx_config_load() also reads that
 * file and loads every service's effective configuration (failing when one fails); the
 * services are then mx_config_master(cfg)->services. NULL without a master file. */
struct mx_master;
struct mx_master_service;
const struct mx_master *mx_config_master(const struct mx_config *cfg);

/* The effective configuration of one service of mx_config_master(cfg): main.cf with the
 * service's -o overrides applied as Postfix applies them (an override replaces the value
 * for that service, and every value that says $name sees it), fully validated; its listen
 * addresses are the service's. Messages at main.cf lines are errors only (main.cf's own
 * warnings were said by mx_config_load()), naming the service. Returns as
 * mx_config_load(); the result is freed with mx_config_free() and does not depend on cfg
 * (svc must stay valid while it is used). */
int mx_config_load_service(const struct mx_config *cfg, const struct mx_master_service *svc,
			   struct mx_config **out, FILE *diag);

/* Stress: every configuration mx_config_load() or mx_config_load_service() returns was
 * expanded twice, with `stress` empty (cfg itself) and with stress = yes (as Postfix's
 * master(8) starts a process under stress with -o stress=yes), and both were validated.
 * The variant with stress = yes, which new sessions get while the gateway is under
 * stress; NULL when no value depends on `stress` (cfg serves both). It lives as long as
 * cfg; its own mx_config_stress() is NULL. */
const struct mx_config *mx_config_stress(const struct mx_config *cfg);

/* The parameters (and restriction classes) whose values differ between cfg and its
 * stress variant: at most max names in names[] (strings of the configuration); returns
 * how many differ (0 when mx_config_stress() is NULL). */
size_t mx_config_stress_changes(const struct mx_config *cfg, const char **names, size_t max);

/* For a service's configuration, its service; NULL for mx_config_load()'s. */
const struct mx_master_service *mx_config_service(const struct mx_config *cfg);

/* The parameters whose reload class is "restart" and whose values differ between a and b
 * (at most max names in names[]; returns how many differ): a reload that changes one of
 * them takes effect only after a restart. */
size_t mx_config_restart_changes(const struct mx_config *a, const struct mx_config *b,
				 const char **names, size_t max);

void mx_config_free(struct mx_config *cfg);

/* `mxgate config [-c FILE] [-n|-d] [-h] [-x] [-M] [NAME...]`: print the parameters as
 * postconf(1) prints main.cf's (mgmt/config_cmd.c). argv[0] is "config". Exit status as
 * postconf's: 0, or 1 after a fatal error (file unreadable or unparsable, a value that
 * cannot be expanded, bad options). */
int mx_config_main(int argc, char **argv, const char *default_path);

#endif
