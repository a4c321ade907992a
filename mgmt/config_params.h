/* The registry: every parameter mxgate knows, one row each (private to mgmt/config*.c and
 * their tests). config.c reads mxgate.cf and expands values; config_check.c validates each
 * known parameter by its row: its type and bounds, where the validated value goes in struct
 * mx_config (and so in its struct smtp_config), whether a master.cf service may override it
 * with -o (scope), and whether a changed value can take effect without a restart (reload).
 * Defaults are as `postconf -d` prints them for Postfix's own parameters.
 *
 * Adding a parameter: an id below (its place is its validation order), one row in
 * config_params.c, the field in struct mx_config if the gateway reads it from there, a line
 * in deploy/mxgate.cf.example and a bad-value case in tests/unit/mgmt/test_config.c. */
#ifndef MXGATE_MGMT_CONFIG_PARAMS_H
#define MXGATE_MGMT_CONFIG_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One id per parameter; the table in config_params.c is indexed by it. The order is the
 * order of validation: a parameter whose default refers to another ($mynetworks) comes
 * after it, so an error is reported once, at its source. */
enum mx_param_id {
	MX_P_COMPATIBILITY_LEVEL,
	MX_P_MYHOSTNAME,
	MX_P_MYDOMAIN,
	MX_P_MYORIGIN,
	MX_P_MAIL_NAME,
	MX_P_SMTPD_BANNER,
	MX_P_MYNETWORKS,
	MX_P_MYDESTINATION,
	MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
	MX_P_RELAY_DOMAINS,
	MX_P_MESSAGE_SIZE_LIMIT,
	MX_P_HEADER_SIZE_LIMIT,
	MX_P_LINE_LENGTH_LIMIT,
	MX_P_HOPCOUNT_LIMIT,
	MX_P_SMTPD_RECIPIENT_LIMIT,
	MX_P_SMTPD_SOFT_ERROR_LIMIT,
	MX_P_SMTPD_HARD_ERROR_LIMIT,
	MX_P_SMTPD_JUNK_COMMAND_LIMIT,
	MX_P_SMTPD_ERROR_SLEEP_TIME,
	MX_P_SMTPD_TIMEOUT,
	MX_P_SMTPD_PER_RECORD_DEADLINE,
	MX_P_SMTPD_PER_REQUEST_DEADLINE,
	MX_P_SMTPD_MIN_DATA_RATE,
	MX_P_SMTPD_RECIPIENT_OVERSHOOT_LIMIT,
	MX_P_SMTPD_FORBID_BARE_NEWLINE,
	MX_P_SMTPD_FORBID_BARE_NEWLINE_EXCLUSIONS,
	MX_P_SMTPD_FORBID_UNAUTH_PIPELINING,
	MX_P_SMTPD_HELO_REQUIRED,
	MX_P_SMTPD_PEERNAME_LOOKUP,
	MX_P_SMTPD_UPSTREAM_PROXY_PROTOCOL,
	MX_P_SMTPD_UPSTREAM_PROXY_TIMEOUT,
	MX_P_QUEUE_DIRECTORY,
	MX_P_SMTPD_SASL_TYPE,
	MX_P_SMTPD_SASL_AUTH_ENABLE,
	MX_P_SMTPD_SASL_PATH,
	MX_P_SMTPD_SASL_SERVICE,
	MX_P_SMTPD_SASL_SECURITY_OPTIONS,
	MX_P_SMTPD_SASL_TLS_SECURITY_OPTIONS,
	MX_P_SMTPD_SASL_LOCAL_DOMAIN,
	MX_P_SMTPD_SASL_EXCEPTIONS_NETWORKS,
	MX_P_SMTPD_SASL_AUTHENTICATED_HEADER,
	MX_P_SMTPD_SASL_RESPONSE_LIMIT,
	MX_P_BROKEN_SASL_AUTH_CLIENTS,
	MX_P_SMTPD_TLS_AUTH_ONLY,
	MX_P_SMTPD_SENDER_LOGIN_MAPS,
	MX_P_DISABLE_VRFY_COMMAND,
	MX_P_STRICT_RFC821_ENVELOPES,
	MX_P_SMTPUTF8_ENABLE,
	MX_P_SMTPD_DISCARD_EHLO_KEYWORDS,
	MX_P_MAILLOG_FILE,
	MX_P_DATA_DIRECTORY,
	MX_P_DATAPLANE,
	MX_P_MXGATE_TRANSPORT,
	MX_P_MXGATE_LISTEN,
	MX_P_MXGATE_WORKERS,
	MX_P_MXGATE_DPDK_EAL_ARGS,
	MX_P_MXGATE_DPDK_PORTS,
	MX_P_MXGATE_DPDK_STEERING,
	MX_P_MXGATE_DPDK_MBUFS,
	MX_P_MXGATE_DPDK_IDLE_SLEEP_US,
	MX_P_MXGATE_DPDK_IDLE_SLEEP_MAX_US,
	MX_P_MXGATE_DPDK_FAULT,
	MX_P_MXGATE_SPOOL_DIRECTORY,
	MX_P_MXGATE_MAX_CONNECTIONS,
	MX_P_STRESS,
	MX_P_MXGATE_STRESS_ENTER_PERCENT,
	MX_P_MXGATE_STRESS_LEAVE_PERCENT,
	MX_P_MXGATE_STRESS_MINIMUM_TIME,
	MX_P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT,
	MX_P_SMTPD_CLIENT_CONNECTION_RATE_LIMIT,
	MX_P_SMTPD_CLIENT_MESSAGE_RATE_LIMIT,
	MX_P_SMTPD_CLIENT_RECIPIENT_RATE_LIMIT,
	MX_P_SMTPD_CLIENT_AUTH_RATE_LIMIT,
	MX_P_SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT,
	MX_P_SMTPD_CLIENT_CONNECTION_LIMIT_EXCEPTIONS,
	MX_P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
	MX_P_SMTPD_CLIENT_IPV4_PREFIX_LENGTH,
	MX_P_SMTPD_CLIENT_IPV6_PREFIX_LENGTH,
	MX_P_ANVIL_RATE_TIME_UNIT,
	MX_P_MXGATE_ANVIL_TABLE_SIZE,
	MX_P_MXGATE_SPOOL_COMMIT_DELAY,
	MX_P_MXGATE_SPOOL_QUOTA,
	MX_P_RELAYHOST,
	MX_P_MXGATE_RELAY_PROTOCOL,
	MX_P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT,
	MX_P_SMTP_CONNECT_TIMEOUT,
	MX_P_SMTP_HELO_TIMEOUT,
	MX_P_SMTP_MAIL_TIMEOUT,
	MX_P_SMTP_RCPT_TIMEOUT,
	MX_P_SMTP_DATA_INIT_TIMEOUT,
	MX_P_SMTP_DATA_XFER_TIMEOUT,
	MX_P_SMTP_DATA_DONE_TIMEOUT,
	MX_P_SMTP_QUIT_TIMEOUT,
	MX_P_SMTP_CONNECTION_CACHE_TIME_LIMIT,
	MX_P_MINIMAL_BACKOFF_TIME,
	MX_P_MAXIMAL_BACKOFF_TIME,
	MX_P_QUEUE_RUN_DELAY,
	MX_P_MAXIMAL_QUEUE_LIFETIME,
	MX_P_BOUNCE_QUEUE_LIFETIME,
	MX_P_BOUNCE_SIZE_LIMIT,
	MX_P_TRANSPORT_MAPS,
	MX_P_RECIPIENT_DELIMITER,
	MX_P_MXGATE_TABLE_DIRECTORY,
	MX_P_MXGATE_CONTROL_SOCKET,
	MX_P_MXGATE_SPOOL_SEGMENT_SIZE,
	MX_P_SMTPD_RESTRICTION_CLASSES,
	MX_P_SMTPD_CLIENT_RESTRICTIONS,
	MX_P_SMTPD_HELO_RESTRICTIONS,
	MX_P_SMTPD_SENDER_RESTRICTIONS,
	MX_P_SMTPD_RELAY_RESTRICTIONS,
	MX_P_SMTPD_RECIPIENT_RESTRICTIONS,
	MX_P_SMTPD_DATA_RESTRICTIONS,
	MX_P_SMTPD_END_OF_DATA_RESTRICTIONS,
	MX_P_SMTPD_DELAY_REJECT,
	MX_P_SOFT_BOUNCE,
	MX_P_REJECT_CODE,
	MX_P_DEFER_CODE,
	MX_P_ACCESS_MAP_REJECT_CODE,
	MX_P_ACCESS_MAP_DEFER_CODE,
	MX_P_INVALID_HOSTNAME_REJECT_CODE,
	MX_P_NON_FQDN_REJECT_CODE,
	MX_P_RELAY_DOMAINS_REJECT_CODE,
	MX_P_MAPS_RBL_REJECT_CODE,
	MX_P_UNKNOWN_RELAY_RECIPIENT_REJECT_CODE,
	MX_P_UNKNOWN_LOCAL_RECIPIENT_REJECT_CODE,
	MX_P_MULTI_RECIPIENT_BOUNCE_REJECT_CODE,
	MX_P_DEFAULT_RBL_REPLY,
	MX_P_SMTPD_REJECT_UNLISTED_RECIPIENT,
	MX_P_SMTPD_REJECT_UNLISTED_SENDER,
	MX_P_RELAY_RECIPIENT_MAPS,
	MX_P_LOCAL_RECIPIENT_MAPS,
	MX_P_SMTPD_NULL_ACCESS_LOOKUP_KEY,
	MX_P_SMTPD_AUTHORIZED_XCLIENT_HOSTS,
	MX_P_HEADER_CHECKS,
	MX_P_MIME_HEADER_CHECKS,
	MX_P_NESTED_HEADER_CHECKS,
	MX_P_BODY_CHECKS,
	MX_P_BODY_CHECKS_SIZE_LIMIT,
	MX_P_MXGATE_CHECKS_CACHE_DIRECTORY,
	MX_P_MXGATE_MASTER_FILE,
	MX_P_UNKNOWN_CLIENT_REJECT_CODE,
	MX_P_UNKNOWN_HOSTNAME_REJECT_CODE,
	MX_P_UNKNOWN_ADDRESS_REJECT_CODE,
	MX_P_REJECT_TEMPFAIL_ACTION,
	MX_P_UNKNOWN_HELO_HOSTNAME_TEMPFAIL_ACTION,
	MX_P_UNKNOWN_ADDRESS_TEMPFAIL_ACTION,
	MX_P_RBL_REPLY_MAPS,
	MX_P_SMTPD_POLICY_SERVICE_TIMEOUT,
	MX_P_SMTPD_POLICY_SERVICE_MAX_IDLE,
	MX_P_SMTPD_POLICY_SERVICE_MAX_TTL,
	MX_P_SMTPD_POLICY_SERVICE_RETRY_DELAY,
	MX_P_SMTPD_POLICY_SERVICE_TRY_LIMIT,
	MX_P_SMTPD_POLICY_SERVICE_REQUEST_LIMIT,
	MX_P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION,
	MX_P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT,
	MX_P_MXGATE_GREYLIST_MAP,
	MX_P_MXGATE_GREYLIST_DELAY,
	MX_P_MXGATE_GREYLIST_MAX_AGE,
	MX_P_MXGATE_GREYLIST_RETRY_WINDOW,
	MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_CLIENTS,
	MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_INTERVAL,
	MX_P_MXGATE_GREYLIST_IPV4_PREFIX_LENGTH,
	MX_P_MXGATE_GREYLIST_IPV6_PREFIX_LENGTH,
	MX_P_MXGATE_GREYLIST_CLIENT_ALLOWLIST,
	MX_P_MXGATE_GREYLIST_RECIPIENT_ALLOWLIST,
	MX_P_MXGATE_GREYLIST_ACTION,
	MX_P_MXGATE_GREYLIST_TEXT,
	MX_P_MXGATE_GREYLIST_HEADER,
	MX_P_MXGATE_GREYLIST_DEFAULT_ACTION,
	MX_P_MXGATE_DNS_SERVERS,
	MX_P_POSTSCREEN_ACCESS_LIST,
	MX_P_POSTSCREEN_BLACKLIST_ACTION,
	MX_P_POSTSCREEN_DENYLIST_ACTION,
	MX_P_POSTSCREEN_WHITELIST_INTERFACES,
	MX_P_POSTSCREEN_ALLOWLIST_INTERFACES,
	MX_P_POSTSCREEN_GREET_BANNER,
	MX_P_POSTSCREEN_GREET_WAIT,
	MX_P_POSTSCREEN_GREET_ACTION,
	MX_P_POSTSCREEN_GREET_TTL,
	MX_P_POSTSCREEN_DNSBL_SITES,
	MX_P_POSTSCREEN_DNSBL_THRESHOLD,
	MX_P_POSTSCREEN_DNSBL_WHITELIST_THRESHOLD,
	MX_P_POSTSCREEN_DNSBL_ALLOWLIST_THRESHOLD,
	MX_P_POSTSCREEN_DNSBL_ACTION,
	MX_P_POSTSCREEN_DNSBL_REPLY_MAP,
	MX_P_POSTSCREEN_DNSBL_TTL,
	MX_P_POSTSCREEN_DNSBL_MIN_TTL,
	MX_P_POSTSCREEN_DNSBL_MAX_TTL,
	MX_P_POSTSCREEN_DNSBL_TIMEOUT,
	MX_P_POSTSCREEN_PIPELINING_ENABLE,
	MX_P_POSTSCREEN_PIPELINING_ACTION,
	MX_P_POSTSCREEN_PIPELINING_TTL,
	MX_P_POSTSCREEN_NON_SMTP_COMMAND_ENABLE,
	MX_P_POSTSCREEN_NON_SMTP_COMMAND_ACTION,
	MX_P_POSTSCREEN_NON_SMTP_COMMAND_TTL,
	MX_P_POSTSCREEN_BARE_NEWLINE_ENABLE,
	MX_P_POSTSCREEN_BARE_NEWLINE_ACTION,
	MX_P_POSTSCREEN_BARE_NEWLINE_TTL,
	MX_P_POSTSCREEN_FORBIDDEN_COMMANDS,
	MX_P_POSTSCREEN_COMMAND_COUNT_LIMIT,
	MX_P_POSTSCREEN_CLIENT_CONNECTION_COUNT_LIMIT,
	MX_P_POSTSCREEN_DISCARD_EHLO_KEYWORDS,
	MX_P_POSTSCREEN_UPSTREAM_PROXY_PROTOCOL,
	MX_P_POSTSCREEN_UPSTREAM_PROXY_TIMEOUT,
	MX_P_POSTSCREEN_COMMAND_TIME_LIMIT,
	MX_P_POSTSCREEN_HELO_REQUIRED,
	MX_P_POSTSCREEN_DISABLE_VRFY_COMMAND,
	MX_P_POSTSCREEN_CACHE_MAP,
	MX_P_POSTSCREEN_CACHE_RETENTION_TIME,
	MX_P_POSTSCREEN_CACHE_CLEANUP_INTERVAL,
	MX_P_SMTPD_TLS_SECURITY_LEVEL,
	MX_P_SMTPD_USE_TLS,
	MX_P_SMTPD_ENFORCE_TLS,
	MX_P_SMTPD_TLS_WRAPPERMODE,
	MX_P_SMTPD_TLS_CERT_FILE,
	MX_P_SMTPD_TLS_KEY_FILE,
	MX_P_SMTPD_TLS_ECCERT_FILE,
	MX_P_SMTPD_TLS_ECKEY_FILE,
	MX_P_SMTPD_TLS_CHAIN_FILES,
	MX_P_SMTPD_TLS_PROTOCOLS,
	MX_P_SMTPD_TLS_MANDATORY_PROTOCOLS,
	MX_P_SMTPD_TLS_CIPHERS,
	MX_P_SMTPD_TLS_MANDATORY_CIPHERS,
	MX_P_SMTPD_TLS_EXCLUDE_CIPHERS,
	MX_P_SMTPD_TLS_MANDATORY_EXCLUDE_CIPHERS,
	MX_P_TLS_PREEMPT_CIPHERLIST,
	MX_P_SMTPD_TLS_RECEIVED_HEADER,
	MX_P_SMTPD_TLS_LOGLEVEL,
	MX_P_SMTPD_STARTTLS_TIMEOUT,
	MX_P_SMTPD_TLS_SESSION_CACHE_TIMEOUT,
	MX_P_PLAINTEXT_REJECT_CODE,
	MX_P_SMTPD_TLS_ASK_CCERT,
	MX_P_SMTPD_TLS_CAFILE,
	MX_P_SMTPD_TLS_CCERT_VERIFYDEPTH,
	MX_P_SMTPD_TLS_FINGERPRINT_DIGEST,
	MX_P_RELAY_CLIENTCERTS,
	MX_P_SMTPD_TLS_REQ_CCERT,
	MX_P_TLS_SERVER_SNI_MAPS,
	MX_P_MXGATE_ANVIL_RATE_MAP,
	MX_P_MXGATE_METRICS_LISTEN,
	MX_P_SYSLOG_FACILITY,
	MX_P_SYSLOG_NAME,
	MX_P_MXGATE_SYSLOG_SOCKET,
	MX_P_MAIL_OWNER,
	MX_P_MXGATE_CHROOT,
	MX_P_MAX,
};

/* How a value is parsed and checked. */
enum mx_param_type {
	MX_PT_HOSTNAME, /* a host or domain name (myhostname, mydomain, myorigin) */
	MX_PT_TEXT,     /* printable text, sent to clients (mail_name, smtpd_banner) */
	MX_PT_LEVEL,    /* a Postfix compatibility level: major[.minor[.patch]] */
	MX_PT_BOOL,     /* yes | no, any case (Postfix's mail_conf_bool) */
	MX_PT_INT,      /* decimal int within [min, max] (Postfix's mail_conf_int) */
	MX_PT_SIZE,     /* decimal byte count within [min, max] (mail_conf_long) */
	MX_PT_TIME,     /* N[s|m|h|d|w] within [min, max] seconds (Postfix's conv_time) */
	MX_PT_NETLIST,  /* tables/netlist.h */
	MX_PT_DOMAINS,  /* tables/domain_list.h */
	MX_PT_WORDS,    /* a list of words separated by commas and/or whitespace */
	MX_PT_PATH,     /* an absolute path, or empty where `min` is 0 */
	MX_PT_CHOICE,   /* one of `choices`, any case */
	MX_PT_LISTEN,   /* ADDR:PORT and [IPV6]:PORT, separated by commas and/or whitespace */
	MX_PT_TYPE_MAX,
};

const char *mx_param_type_name(enum mx_param_type t);

/* Where a parameter may be set. */
enum mx_param_scope {
	MX_SCOPE_GLOBAL,  /* main.cf only: the process, its transport, spool and relay */
	MX_SCOPE_SERVICE, /* also per master.cf service with -o (policy, limits, banner) */
	MX_SCOPE_MAX,
};

/* When a changed value takes effect. */
enum mx_param_reload {
	MX_RELOAD_LIVE,    /* with the next configuration generation (new connections) */
	MX_RELOAD_RESTART, /* read once at start (ports, threads, spool, relay, log file) */
	MX_RELOAD_MAX,
};

const char *mx_param_scope_name(enum mx_param_scope s);
const char *mx_param_reload_name(enum mx_param_reload r);

/* The C type of the struct mx_config field a validated value is stored in (at `offset`,
 * which may point into cfg->smtp). */
enum mx_param_field {
	MX_FIELD_NONE,     /* no field: read with mx_config_get() (lists, codes, checks) */
	MX_FIELD_STRING,   /* char * or const char *: the expanded value, owned by the config */
	MX_FIELD_UNSIGNED, /* unsigned: an INT, or a TIME in seconds */
	MX_FIELD_MS,       /* unsigned: a TIME in milliseconds */
	MX_FIELD_SIZE,     /* size_t: an INT or SIZE */
	MX_FIELD_U64,      /* uint64_t: an INT or SIZE */
	MX_FIELD_BOOL,     /* bool: a BOOL */
	MX_FIELD_NETLIST,  /* struct netlist *, owned by the config */
	MX_FIELD_DOMAINS,  /* struct domain_list *, owned by the config */
	MX_FIELD_MAX,
};

struct mx_config;
struct mx_param_value;

struct mx_param_def {
	enum mx_param_id id;
	const char *name;
	enum mx_param_type type;
	/* The raw default, $-expanded like a configured value. NULL for the two defaults
	 * that are computed (myhostname from the system's host name, mydomain from
	 * myhostname). */
	const char *def;
	/* INT, SIZE, TIME: bounds (0 = no bound, as in Postfix's tables). PATH: min 1 means
	 * a value is required. */
	int64_t min, max;
	const char *choices; /* MX_PT_CHOICE: "a|b|c" */
	bool postfix;        /* a Postfix parameter (same name and meaning) */
	/* Taken as written, never $-expanded at load (Postfix's raw parameters, such as
	 * default_rbl_reply, whose $rbl_code is expanded per reply). */
	bool raw;
	const char *doc;     /* one line for the example config and --help */

	enum mx_param_scope scope;
	enum mx_param_reload reload;
	enum mx_param_field field;
	size_t offset;       /* of the field in struct mx_config (MX_FIELD_NONE: unused) */
	/* A parameter that needs more than its type's check: called after the type's check
	 * passed (for MX_PT_PATH instead of it), it validates further and stores what the
	 * value means (config_check.c). Returns 0, or -1 after reporting. NULL: the type's
	 * check and the field say it all. */
	int (*parse)(const struct mx_param_value *pv, struct mx_config *cfg);
	/* MX_PT_HOSTNAME: a value starting with '/' names a file whose first line is the
	 * value (Debian's Postfix: myorigin = /etc/mailname). */
	bool from_file;
	/* MX_PT_DOMAINS: subdomains match when parent_domain_matches_subdomains lists the
	 * parameter (Postfix's parent style; mydestination never has it). */
	bool parent_style;
	/* MX_PT_CHOICE: a value Postfix has that mxgate refuses, and why. */
	const char *refused_choice, *refused_why;
};

extern const struct mx_param_def mx_params[MX_P_MAX];

/* The definition of `name`, or NULL if mxgate does not know it. */
const struct mx_param_def *mx_param_find(const char *name, size_t len);

#endif
