/* Every parameter mxgate knows, with its default and bounds.
 *
 * Postfix parameters keep Postfix's names, meanings, bounds (the min/max of Postfix's own
 * CONFIG_*_TABLEs) and defaults as Debian's Postfix 3.7 prints them with `postconf -d`,
 * evaluated at compatibility_level 3.6 (what Debian's main.cf sets), with these deliberate
 * differences:
 *   compatibility_level             3.6, not 0: mxgate has no pre-3.6 behaviours to keep
 *   mail_name                       mxgate
 *   mynetworks                      127.0.0.0/8 [::1]/128: the loopback networks only, a
 *                                   fixed value rather than a list computed from the
 *                                   machine's interfaces (mynetworks_style), so the same
 *                                   file means the same thing on every box of a tier
 *   smtpd_forbid_bare_newline       normalize (Postfix 3.9+), never "no"
 *   smtpd_forbid_unauth_pipelining  yes (Postfix 3.9+)
 *   smtpd_per_request_deadline      yes: smtpd_timeout bounds a whole request, so a client
 *                                   that trickles a byte at a time cannot hold a session
 *                                   (Postfix: ${stress?{yes}:{no}}, on only under stress)
 *   local_recipient_maps            empty: mxgate has no local users (Postfix: the passwd
 *                                   file and $alias_maps), so it checks no local recipients
 *   data_directory                  /var/lib/mxgate (Postfix: /var/lib/postfix): mxgate's
 *                                   own writable state (postscreen_cache, greylisting)
 *   smtpd_relay_restrictions        written as its level-1+ value: below level 1 Postfix
 *                                   has no relay restrictions, mxgate never goes without
 *   mail_owner                      mxgate (Postfix: postfix): the user the gateway
 *                                   runs as after start-up (dataplane/privdrop.h)
 *   postscreen_forbidden_commands   the value of Postfix's $smtpd_forbidden_commands
 *                                   default, written out (mxgate has no
 *                                   smtpd_forbidden_commands parameter)
 *   syslog_name                     mxgate (Postfix: postfix): the gateway's lines stay
 *                                   apart from a Postfix's on the same host; pflogsumm
 *                                   --syslog-name=mxgate reads them
 *
 * The stress-adapting defaults are Postfix's: smtpd_timeout = ${stress?{10}:{300}}s,
 * smtpd_hard_error_limit = ${stress?{1}:{20}}, smtpd_junk_command_limit =
 * ${stress?{1}:{100}}; mxgate sets `stress` as Postfix's master(8) does, but when the open
 * connections near mxgate_max_connections (mxgate_stress_*), and a configuration holds
 * both variants (mx_config_stress()).
 *
 * Each row also says where a value may be set (scope: global, main.cf only; or service,
 * also a master.cf service's -o), when a change takes effect (reload: live, with a new
 * configuration generation; or restart, read once at start by threads and ports), and the
 * struct mx_config field its validated value is stored in (config_check.c).
 * mxgate's own parameters start with mxgate_. */
#include "mgmt/config_params.h"

#include <stddef.h>

#include <limits.h>
#include <string.h>

#include "mgmt/config_internal.h"

/* Scope and reload class (config_params.h), and the field a value is stored in. */
#define P_SERVICE_LIVE .scope = MX_SCOPE_SERVICE, .reload = MX_RELOAD_LIVE
#define P_GLOBAL_LIVE .scope = MX_SCOPE_GLOBAL, .reload = MX_RELOAD_LIVE
#define P_GLOBAL_RESTART .scope = MX_SCOPE_GLOBAL, .reload = MX_RELOAD_RESTART
#define P_FIELD(kind, member) .field = MX_FIELD_##kind, .offset = offsetof(struct mx_config, member)

/* mxgate_anvil_rate_map: empty, or memcache: with an absolute memcache_table(5) file
 * (the file itself is read when the sync thread starts: dataplane/svc/svc_anvil.c). */
static int cfg_parse_anvil_rate_map(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	const char *v = pv->value;
	if (!*v || (strncmp(v, "memcache:/", 10) == 0 && !strpbrk(v, " \t,")))
		return 0;
	mx_param_report(pv, false,
			"parameter mxgate_anvil_rate_map: bad value \"%.*s%s\": expected "
			"memcache:/path/to/file.cf (a memcache_table(5) file) or nothing",
			CFG_SHOW(v));
	return -1;
}

const struct mx_param_def mx_params[MX_P_MAX] = {
	[MX_P_COMPATIBILITY_LEVEL] = {
		.id = MX_P_COMPATIBILITY_LEVEL, .name = "compatibility_level",
		.type = MX_PT_LEVEL, .def = "3.6", .postfix = true,
		.doc = "Postfix defaults to follow; mxgate implements level 3.6 and later",
		P_GLOBAL_LIVE, .parse = cfg_parse_compat_level,
	},
	[MX_P_MYHOSTNAME] = {
		.id = MX_P_MYHOSTNAME, .name = "myhostname", .type = MX_PT_HOSTNAME,
		.def = NULL, .min = 1, .postfix = true,
		.doc = "this host's FQDN (default: the system host name, plus "
		       ".$mydomain if it has no dot)",
		P_SERVICE_LIVE, P_FIELD(STRING, myhostname),
	},
	[MX_P_MYDOMAIN] = {
		.id = MX_P_MYDOMAIN, .name = "mydomain", .type = MX_PT_HOSTNAME,
		.def = NULL, .min = 1, .postfix = true,
		.doc = "this host's domain (default: $myhostname minus its first label, "
		       "or localdomain)",
		P_SERVICE_LIVE, P_FIELD(STRING, mydomain),
	},
	[MX_P_MYORIGIN] = {
		.id = MX_P_MYORIGIN, .name = "myorigin", .type = MX_PT_HOSTNAME,
		.def = "$myhostname", .min = 1, .postfix = true,
		.doc = "the domain that unqualified addresses (\"postmaster\") belong to",
		P_SERVICE_LIVE, P_FIELD(STRING, myorigin), .from_file = true,
	},
	[MX_P_MAIL_NAME] = {
		.id = MX_P_MAIL_NAME, .name = "mail_name", .type = MX_PT_TEXT,
		.def = "mxgate", .min = 1, .max = 64, .postfix = true,
		.doc = "the name in the banner and in Received: headers",
		P_SERVICE_LIVE, P_FIELD(STRING, mail_name),
	},
	[MX_P_SMTPD_BANNER] = {
		.id = MX_P_SMTPD_BANNER, .name = "smtpd_banner", .type = MX_PT_TEXT,
		.def = "$myhostname ESMTP $mail_name", .min = 1, .max = 500,
		.postfix = true,
		.doc = "the text after \"220 \" in the greeting; must start with $myhostname",
		P_SERVICE_LIVE, P_FIELD(STRING, smtpd_banner), .parse = cfg_parse_banner,
	},
	[MX_P_MYNETWORKS] = {
		.id = MX_P_MYNETWORKS, .name = "mynetworks", .type = MX_PT_NETLIST,
		.def = "127.0.0.0/8 [::1]/128", .postfix = true,
		.doc = "trusted client networks, allowed to relay",
		P_SERVICE_LIVE, P_FIELD(NETLIST, mynetworks),
	},
	[MX_P_MYDESTINATION] = {
		.id = MX_P_MYDESTINATION, .name = "mydestination", .type = MX_PT_DOMAINS,
		.def = "$myhostname, localhost.$mydomain, localhost", .postfix = true,
		.doc = "domains this gateway is the final destination for",
		P_SERVICE_LIVE, P_FIELD(DOMAINS, mydestination),
	},
	[MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS] = {
		.id = MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
		.name = "parent_domain_matches_subdomains", .type = MX_PT_WORDS,
		.def = "debug_peer_list,fast_flush_domains,mynetworks,"
		       "permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,"
		       "smtpd_access_maps",
		.postfix = true,
		.doc = "features where example.com also matches sub.example.com",
		P_SERVICE_LIVE,
	},
	[MX_P_RELAY_DOMAINS] = {
		.id = MX_P_RELAY_DOMAINS, .name = "relay_domains", .type = MX_PT_DOMAINS,
		.def = "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
		.postfix = true,
		.doc = "domains accepted from anyone and relayed to the next hop",
		P_SERVICE_LIVE, P_FIELD(DOMAINS, relay_domains), .parent_style = true,
	},
	[MX_P_MESSAGE_SIZE_LIMIT] = {
		.id = MX_P_MESSAGE_SIZE_LIMIT, .name = "message_size_limit", .type = MX_PT_SIZE,
		.def = "10240000", .min = 0, .max = LONG_MAX, .postfix = true,
		.doc = "largest message in bytes (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(SIZE, smtp.message_size_limit),
	},
	[MX_P_HEADER_SIZE_LIMIT] = {
		.id = MX_P_HEADER_SIZE_LIMIT, .name = "header_size_limit", .type = MX_PT_INT,
		.def = "102400", .min = 1, .max = 0, .postfix = true,
		.doc = "largest message header in bytes; the excess is discarded",
		P_SERVICE_LIVE, P_FIELD(SIZE, smtp.header_size_limit),
	},
	[MX_P_LINE_LENGTH_LIMIT] = {
		.id = MX_P_LINE_LENGTH_LIMIT, .name = "line_length_limit", .type = MX_PT_INT,
		.def = "2048", .min = 512, .max = 0, .postfix = true,
		.doc = "longest SMTP command line in bytes",
		P_SERVICE_LIVE, P_FIELD(SIZE, smtp.line_length_limit),
	},
	[MX_P_HOPCOUNT_LIMIT] = {
		.id = MX_P_HOPCOUNT_LIMIT, .name = "hopcount_limit", .type = MX_PT_INT,
		.def = "50", .min = 1, .max = 0, .postfix = true,
		.doc = "most Received: headers before a message is refused as looping",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.hopcount_limit),
	},
	[MX_P_SMTPD_RECIPIENT_LIMIT] = {
		.id = MX_P_SMTPD_RECIPIENT_LIMIT, .name = "smtpd_recipient_limit",
		.type = MX_PT_INT, .def = "1000", .min = 1, .max = 0, .postfix = true,
		.doc = "most recipients per message",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.recipient_limit),
	},
	[MX_P_SMTPD_SOFT_ERROR_LIMIT] = {
		.id = MX_P_SMTPD_SOFT_ERROR_LIMIT, .name = "smtpd_soft_error_limit",
		.type = MX_PT_INT, .def = "10", .min = 1, .max = 0, .postfix = true,
		.doc = "errors per session before replies are delayed",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.soft_error_limit),
	},
	[MX_P_SMTPD_HARD_ERROR_LIMIT] = {
		.id = MX_P_SMTPD_HARD_ERROR_LIMIT, .name = "smtpd_hard_error_limit",
		.type = MX_PT_INT, .def = "${stress?{1}:{20}}", .min = 1, .max = 0, .postfix = true,
		.doc = "errors per session before it is closed",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.hard_error_limit),
	},
	[MX_P_SMTPD_JUNK_COMMAND_LIMIT] = {
		.id = MX_P_SMTPD_JUNK_COMMAND_LIMIT, .name = "smtpd_junk_command_limit",
		.type = MX_PT_INT, .def = "${stress?{1}:{100}}", .min = 1, .max = 0, .postfix = true,
		.doc = "NOOP/VRFY/RSET/HELP/ETRN commands per session",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.junk_command_limit),
	},
	[MX_P_SMTPD_ERROR_SLEEP_TIME] = {
		.id = MX_P_SMTPD_ERROR_SLEEP_TIME, .name = "smtpd_error_sleep_time",
		.type = MX_PT_TIME, .def = "1s", .min = 0, .max = 86400, .postfix = true,
		.doc = "delay of an error reply once the soft error limit is passed",
		P_SERVICE_LIVE, P_FIELD(MS, smtp.error_sleep_ms),
	},
	[MX_P_SMTPD_TIMEOUT] = {
		.id = MX_P_SMTPD_TIMEOUT, .name = "smtpd_timeout", .type = MX_PT_TIME,
		.def = "${stress?{10}:{300}}s", .min = 1, .max = 0, .postfix = true,
		.doc = "how long to wait for the client's next command or data",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtpd_timeout_s),
	},
	[MX_P_SMTPD_PER_RECORD_DEADLINE] = {
		/* Postfix 2.9's name: not a parameter of its own any more, but when set it is
		 * smtpd_per_request_deadline's default (as in Postfix 3.7) */
		.id = MX_P_SMTPD_PER_RECORD_DEADLINE, .name = "smtpd_per_record_deadline",
		.type = MX_PT_CHOICE, .def = "", .choices = "|yes|no", .postfix = true,
		.doc = "the old name of smtpd_per_request_deadline (yes or no when set)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_PER_REQUEST_DEADLINE] = {
		.id = MX_P_SMTPD_PER_REQUEST_DEADLINE, .name = "smtpd_per_request_deadline",
		.type = MX_PT_BOOL,
		.def = "${smtpd_per_record_deadline?{$smtpd_per_record_deadline}:{yes}}",
		.postfix = true,
		.doc = "smtpd_timeout bounds each whole command line and message (yes), not "
		       "each read (no); smtpd_per_record_deadline is its Postfix 2.9 name",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtpd_per_request_deadline),
	},
	[MX_P_SMTPD_MIN_DATA_RATE] = {
		.id = MX_P_SMTPD_MIN_DATA_RATE, .name = "smtpd_min_data_rate", .type = MX_PT_INT,
		.def = "500", .min = 1, .max = 0, .postfix = true,
		.doc = "bytes/s of message content that extend a DATA or BDAT deadline",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtpd_min_data_rate),
	},
	[MX_P_SMTPD_RECIPIENT_OVERSHOOT_LIMIT] = {
		.id = MX_P_SMTPD_RECIPIENT_OVERSHOOT_LIMIT,
		.name = "smtpd_recipient_overshoot_limit", .type = MX_PT_INT, .def = "1000",
		.min = 0, .max = 0, .postfix = true,
		.doc = "452 replies past smtpd_recipient_limit that are not errors",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtp.recipient_overshoot_limit),
	},
	[MX_P_SMTPD_FORBID_BARE_NEWLINE] = {
		.id = MX_P_SMTPD_FORBID_BARE_NEWLINE, .name = "smtpd_forbid_bare_newline",
		.type = MX_PT_CHOICE, .def = "normalize", .choices = "normalize|yes|reject",
		.postfix = true,
		.doc = "normalize: a bare LF counts as CRLF; reject: 550 and close",
		P_SERVICE_LIVE, .parse = cfg_parse_bare_newline, .refused_choice = "no",
		.refused_why = "mxgate never lets a bare <LF> end the message (SMTP smuggling); "
			       "use normalize (the default) or reject",
	},
	[MX_P_SMTPD_FORBID_BARE_NEWLINE_EXCLUSIONS] = {
		.id = MX_P_SMTPD_FORBID_BARE_NEWLINE_EXCLUSIONS,
		.name = "smtpd_forbid_bare_newline_exclusions", .type = MX_PT_NETLIST,
		.def = "$mynetworks", .postfix = true,
		.doc = "clients that get normalize even when the setting is reject",
		P_SERVICE_LIVE, P_FIELD(NETLIST, bare_newline_exclusions),
	},
	[MX_P_SMTPD_FORBID_UNAUTH_PIPELINING] = {
		.id = MX_P_SMTPD_FORBID_UNAUTH_PIPELINING,
		.name = "smtpd_forbid_unauth_pipelining", .type = MX_PT_BOOL, .def = "yes",
		.postfix = true,
		.doc = "close sessions that send commands ahead of replies without PIPELINING",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtp.forbid_unauth_pipelining),
	},
	[MX_P_SMTPD_PEERNAME_LOOKUP] = {
		.id = MX_P_SMTPD_PEERNAME_LOOKUP, .name = "smtpd_peername_lookup",
		.type = MX_PT_BOOL, .def = "yes", .postfix = true,
		.doc = "look up the client's name (PTR, confirmed by its addresses) before the "
		       "greeting",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtpd_peername_lookup),
	},
	[MX_P_SMTPD_UPSTREAM_PROXY_PROTOCOL] = {
		.id = MX_P_SMTPD_UPSTREAM_PROXY_PROTOCOL, .name = "smtpd_upstream_proxy_protocol",
		.type = MX_PT_CHOICE, .def = "", .choices = "|haproxy", .postfix = true,
		.doc = "haproxy: read a PROXY protocol v1 or v2 header before the greeting and "
		       "take the client from it (behind a load balancer)",
		P_SERVICE_LIVE, .parse = cfg_parse_upstream_proxy,
	},
	[MX_P_SMTPD_UPSTREAM_PROXY_TIMEOUT] = {
		.id = MX_P_SMTPD_UPSTREAM_PROXY_TIMEOUT, .name = "smtpd_upstream_proxy_timeout",
		.type = MX_PT_TIME, .def = "5s", .min = 1, .max = 3600, .postfix = true,
		.doc = "how long to wait for the PROXY header",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, smtpd_upstream_proxy_timeout_s),
	},
	[MX_P_QUEUE_DIRECTORY] = {
		.id = MX_P_QUEUE_DIRECTORY, .name = "queue_directory", .type = MX_PT_PATH,
		.def = "/var/spool/postfix", .postfix = true,
		.doc = "where a relative smtpd_sasl_path is found (Dovecot's Postfix socket is "
		       "$queue_directory/private/auth); mxgate's own spool is "
		       "mxgate_spool_directory",
		P_SERVICE_LIVE, P_FIELD(STRING, queue_directory),
	},
	[MX_P_SMTPD_SASL_TYPE] = {
		.id = MX_P_SMTPD_SASL_TYPE, .name = "smtpd_sasl_type", .type = MX_PT_CHOICE,
		.def = "cyrus", .choices = "cyrus|dovecot", .postfix = true,
		.doc = "the SASL implementation: mxgate speaks Dovecot's auth protocol only "
		       "(dovecot); cyrus is refused once AUTH is enabled",
		P_SERVICE_LIVE, .parse = cfg_parse_sasl_type,
	},
	[MX_P_SMTPD_SASL_AUTH_ENABLE] = {
		.id = MX_P_SMTPD_SASL_AUTH_ENABLE, .name = "smtpd_sasl_auth_enable",
		.type = MX_PT_BOOL, .def = "no", .postfix = true,
		.doc = "offer SMTP AUTH (RFC 4954) through the Dovecot auth server at "
		       "smtpd_sasl_path",
		P_SERVICE_LIVE, .parse = cfg_parse_sasl_enable,
	},
	[MX_P_SMTPD_SASL_PATH] = {
		.id = MX_P_SMTPD_SASL_PATH, .name = "smtpd_sasl_path", .type = MX_PT_TEXT,
		.def = "smtpd", .min = 1, .max = 200, .postfix = true,
		.doc = "Dovecot's auth socket: inet:host:port, unix:path, /absolute/path, or a "
		       "path relative to queue_directory (private/auth)",
		P_SERVICE_LIVE, .parse = cfg_parse_sasl_path,
	},
	[MX_P_SMTPD_SASL_SERVICE] = {
		.id = MX_P_SMTPD_SASL_SERVICE, .name = "smtpd_sasl_service", .type = MX_PT_TEXT,
		.def = "smtp", .min = 1, .max = 31, .postfix = true,
		.doc = "the service name Dovecot is told (its protocol for passdb lookups)",
		P_SERVICE_LIVE, P_FIELD(STRING, sasl_service),
	},
	[MX_P_SMTPD_SASL_SECURITY_OPTIONS] = {
		.id = MX_P_SMTPD_SASL_SECURITY_OPTIONS, .name = "smtpd_sasl_security_options",
		.type = MX_PT_WORDS, .def = "noanonymous", .postfix = true,
		.doc = "mechanisms offered outside TLS: noplaintext, noactive, nodictionary, "
		       "noanonymous, forward_secrecy, mutual_auth",
		P_SERVICE_LIVE, .parse = cfg_parse_sasl_sec,
	},
	[MX_P_SMTPD_SASL_TLS_SECURITY_OPTIONS] = {
		.id = MX_P_SMTPD_SASL_TLS_SECURITY_OPTIONS,
		.name = "smtpd_sasl_tls_security_options", .type = MX_PT_WORDS,
		.def = "$smtpd_sasl_security_options", .postfix = true,
		.doc = "the same inside TLS",
		P_SERVICE_LIVE, .parse = cfg_parse_sasl_sec,
	},
	[MX_P_SMTPD_SASL_LOCAL_DOMAIN] = {
		.id = MX_P_SMTPD_SASL_LOCAL_DOMAIN, .name = "smtpd_sasl_local_domain",
		.type = MX_PT_TEXT, .def = "", .min = 0, .max = 255, .postfix = true,
		.doc = "Cyrus SASL's realm; Postfix's Dovecot client does not send it, nor does "
		       "mxgate",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_SASL_EXCEPTIONS_NETWORKS] = {
		.id = MX_P_SMTPD_SASL_EXCEPTIONS_NETWORKS,
		.name = "smtpd_sasl_exceptions_networks", .type = MX_PT_NETLIST, .def = "",
		.postfix = true,
		.doc = "clients that are not offered AUTH in EHLO (AUTH still works, as in Postfix)",
		P_SERVICE_LIVE, P_FIELD(NETLIST, sasl_exceptions_networks),
	},
	[MX_P_SMTPD_SASL_AUTHENTICATED_HEADER] = {
		.id = MX_P_SMTPD_SASL_AUTHENTICATED_HEADER,
		.name = "smtpd_sasl_authenticated_header", .type = MX_PT_BOOL, .def = "no",
		.postfix = true,
		.doc = "name the login in Received: (\"(Authenticated sender: NAME)\")",
		P_SERVICE_LIVE, P_FIELD(BOOL, sasl_authenticated_header),
	},
	[MX_P_SMTPD_SASL_RESPONSE_LIMIT] = {
		.id = MX_P_SMTPD_SASL_RESPONSE_LIMIT, .name = "smtpd_sasl_response_limit",
		.type = MX_PT_INT, .def = "12288", .min = 1, .max = 16000, .postfix = true,
		.doc = "longest AUTH response line (500 5.5.6 beyond)",
		P_SERVICE_LIVE, P_FIELD(SIZE, smtp.sasl_response_limit),
	},
	[MX_P_BROKEN_SASL_AUTH_CLIENTS] = {
		.id = MX_P_BROKEN_SASL_AUTH_CLIENTS, .name = "broken_sasl_auth_clients",
		.type = MX_PT_BOOL, .def = "no", .postfix = true,
		.doc = "also say AUTH=mechs in EHLO, for Outlook 2003 and older clients",
		P_SERVICE_LIVE, P_FIELD(BOOL, broken_sasl_auth_clients),
	},
	[MX_P_SMTPD_TLS_AUTH_ONLY] = {
		.id = MX_P_SMTPD_TLS_AUTH_ONLY, .name = "smtpd_tls_auth_only", .type = MX_PT_BOOL,
		.def = "no", .postfix = true,
		.doc = "offer AUTH only inside TLS (outside: not in EHLO, and AUTH gets 504 5.5.4)",
		P_SERVICE_LIVE, P_FIELD(BOOL, tls_auth_only),
	},
	[MX_P_SMTPD_SENDER_LOGIN_MAPS] = {
		.id = MX_P_SMTPD_SENDER_LOGIN_MAPS, .name = "smtpd_sender_login_maps",
		.type = MX_PT_WORDS, .def = "", .postfix = true,
		.doc = "tables of who may use a MAIL FROM address (the owner login names), for "
		       "reject_*_sender_login_mismatch",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_HELO_REQUIRED] = {
		.id = MX_P_SMTPD_HELO_REQUIRED, .name = "smtpd_helo_required",
		.type = MX_PT_BOOL, .def = "no", .postfix = true,
		.doc = "require HELO or EHLO before MAIL FROM",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtp.helo_required),
	},
	[MX_P_DISABLE_VRFY_COMMAND] = {
		.id = MX_P_DISABLE_VRFY_COMMAND, .name = "disable_vrfy_command",
		.type = MX_PT_BOOL, .def = "no", .postfix = true,
		.doc = "answer VRFY with 502",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtp.disable_vrfy_command),
	},
	[MX_P_STRICT_RFC821_ENVELOPES] = {
		.id = MX_P_STRICT_RFC821_ENVELOPES, .name = "strict_rfc821_envelopes",
		.type = MX_PT_BOOL, .def = "no", .postfix = true,
		.doc = "require <> around MAIL FROM and RCPT TO addresses",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtp.strict_rfc821_envelopes),
	},
	[MX_P_SMTPUTF8_ENABLE] = {
		.id = MX_P_SMTPUTF8_ENABLE, .name = "smtputf8_enable", .type = MX_PT_BOOL,
		.def = "${{$compatibility_level} <level {1} ? {no} : {yes}}", .postfix = true,
		.doc = "offer SMTPUTF8 (RFC 6531)",
		P_SERVICE_LIVE, .parse = cfg_parse_smtputf8,
	},
	[MX_P_SMTPD_DISCARD_EHLO_KEYWORDS] = {
		.id = MX_P_SMTPD_DISCARD_EHLO_KEYWORDS, .name = "smtpd_discard_ehlo_keywords",
		.type = MX_PT_WORDS, .def = "", .postfix = true,
		.doc = "EHLO keywords not to offer: pipelining, chunking, smtputf8, 8bitmime, dsn",
		P_SERVICE_LIVE, .parse = cfg_parse_discard_ehlo,
	},
	[MX_P_MAILLOG_FILE] = {
		.id = MX_P_MAILLOG_FILE, .name = "maillog_file", .type = MX_PT_PATH,
		.def = "", .min = 0, .postfix = true,
		.doc = "log file (empty: syslog, as syslog_facility and syslog_name say)",
		P_GLOBAL_RESTART, P_FIELD(STRING, maillog_file),
	},
	[MX_P_DATA_DIRECTORY] = {
		.id = MX_P_DATA_DIRECTORY, .name = "data_directory", .type = MX_PT_PATH,
		.def = "/var/lib/mxgate", .min = 1, .postfix = true,
		.doc = "writable state kept across restarts: LMDB caches such as "
		       "postscreen_cache_map = btree:$data_directory/postscreen_cache (mxgate's "
		       "default; Postfix's is /var/lib/postfix)",
		P_GLOBAL_RESTART,
	},
	[MX_P_DATAPLANE] = {
		.id = MX_P_DATAPLANE, .name = "dataplane", .type = MX_PT_CHOICE,
		.def = "kernel", .choices = "kernel|dpdk",
		.doc = "the default of mxgate_transport (either name may be set)",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_TRANSPORT] = {
		.id = MX_P_MXGATE_TRANSPORT, .name = "mxgate_transport", .type = MX_PT_CHOICE,
		.def = "$dataplane", .choices = "kernel|dpdk",
		.doc = "kernel: Linux sockets and epoll; dpdk: DPDK ports, own TCP/IP stack",
		P_GLOBAL_RESTART, .parse = cfg_parse_transport,
	},
	[MX_P_MXGATE_LISTEN] = {
		.id = MX_P_MXGATE_LISTEN, .name = "mxgate_listen", .type = MX_PT_LISTEN,
		.def = "0.0.0.0:25",
		.doc = "addresses to accept SMTP on: ADDR:PORT or [IPV6]:PORT, up to 16",
		P_GLOBAL_RESTART, .parse = cfg_parse_listen,
	},
	[MX_P_MXGATE_WORKERS] = {
		.id = MX_P_MXGATE_WORKERS, .name = "mxgate_workers", .type = MX_PT_INT,
		.def = "0", .min = 0, .max = 1024,
		.doc = "worker threads (0: one per online CPU core)",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, workers),
	},
	[MX_P_MXGATE_DPDK_EAL_ARGS] = {
		.id = MX_P_MXGATE_DPDK_EAL_ARGS, .name = "mxgate_dpdk_eal_args", .type = MX_PT_TEXT,
		.def = "", .min = 0, .max = 4096,
		.doc = "DPDK EAL arguments, split on white space (lcores, memory, devices); every "
		       "EAL lcore but the main one runs a worker poll loop",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_PORTS] = {
		.id = MX_P_MXGATE_DPDK_PORTS, .name = "mxgate_dpdk_ports", .type = MX_PT_TEXT,
		.def = "", .min = 0, .max = 4096,
		.doc = "DPDK ports, comma separated: NAME address=A/LEN [gateway=G] [address6=A6] "
		       "[gateway6=G6] [mtu=N]",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_STEERING] = {
		.id = MX_P_MXGATE_DPDK_STEERING, .name = "mxgate_dpdk_steering", .type = MX_PT_CHOICE,
		.def = "auto", .choices = "auto|software",
		.doc = "auto: RSS or af_packet fanout puts a flow on its lcore's queue (strays are "
		       "handed over); software: every packet goes to the lcore our own flow hash "
		       "names, over a ring",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_MBUFS] = {
		.id = MX_P_MXGATE_DPDK_MBUFS, .name = "mxgate_dpdk_mbufs", .type = MX_PT_INT,
		.def = "16383", .min = 1023, .max = 4194303,
		.doc = "packet buffers in each port's pool",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_IDLE_SLEEP_US] = {
		.id = MX_P_MXGATE_DPDK_IDLE_SLEEP_US, .name = "mxgate_dpdk_idle_sleep_us",
		.type = MX_PT_INT, .def = "100", .min = 0, .max = 100000,
		.doc = "microseconds an idle poll loop sleeps (0: busy-poll, for dedicated cores)",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_IDLE_SLEEP_MAX_US] = {
		.id = MX_P_MXGATE_DPDK_IDLE_SLEEP_MAX_US, .name = "mxgate_dpdk_idle_sleep_max_us",
		.type = MX_PT_INT, .def = "10000", .min = 0, .max = 1000000,
		.doc = "longest idle sleep once a poll loop has idled a while (a hundredth of the "
		       "idle time, at most this)",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_DPDK_FAULT] = {
		.id = MX_P_MXGATE_DPDK_FAULT, .name = "mxgate_dpdk_fault", .type = MX_PT_TEXT,
		.def = "", .min = 0, .max = 256,
		.doc = "test only: seeded packet loss, duplication and reordering, e.g. "
		       "seed=7,drop=5,reorder=5,dup=1 (MXGATE_NET_FAULT overrides it)",
		P_GLOBAL_RESTART,
	},
	[MX_P_MXGATE_SPOOL_DIRECTORY] = {
		.id = MX_P_MXGATE_SPOOL_DIRECTORY, .name = "mxgate_spool_directory",
		.type = MX_PT_PATH, .def = "/var/spool/mxgate", .min = 1,
		.doc = "where accepted mail is stored until the next hop takes it; several "
		       "directories (commas or spaces between them) get one writer each, for "
		       "throughput across devices",
		P_GLOBAL_RESTART, .parse = cfg_parse_spool_dirs,
	},
	[MX_P_MXGATE_MAX_CONNECTIONS] = {
		.id = MX_P_MXGATE_MAX_CONNECTIONS, .name = "mxgate_max_connections",
		.type = MX_PT_INT, .def = "10000", .min = 1, .max = 10000000,
		.doc = "concurrent SMTP sessions per worker; beyond it a client gets 421 4.3.2 and is closed",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, max_connections),
	},
	/* Stress (Postfix's STRESS_README): `stress` is "yes" in the configuration that new
	 * sessions get while the gateway is under stress, empty otherwise, so a value
	 * written ${stress?{X}:{Y}} (or ${stress?X}${stress:Y}) is X under stress. Postfix's
	 * master(8) sets it (-o stress=yes) for an internet service that reached its
	 * process limit; mxgate sets it while the open connections are near
	 * mxgate_max_connections (the mxgate_stress_* thresholds below; dataplane/reload.c
	 * decides, mgmt/stress.c is the state machine). */
	[MX_P_STRESS] = {
		.id = MX_P_STRESS, .name = "stress", .type = MX_PT_CHOICE, .def = "",
		.choices = "|yes", .postfix = true,
		.doc = "set by mxgate, never in main.cf: \"yes\" in the values new sessions get "
		       "under stress (${stress?{under stress}:{otherwise}})",
		P_SERVICE_LIVE, .parse = cfg_parse_stress,
	},
	[MX_P_MXGATE_STRESS_ENTER_PERCENT] = {
		.id = MX_P_MXGATE_STRESS_ENTER_PERCENT, .name = "mxgate_stress_enter_percent",
		.type = MX_PT_INT, .def = "90", .min = 1, .max = 100,
		.doc = "stress begins when this percentage of mxgate_max_connections (of all "
		       "workers together) is in use",
		P_GLOBAL_LIVE, P_FIELD(UNSIGNED, stress_enter_percent),
	},
	[MX_P_MXGATE_STRESS_LEAVE_PERCENT] = {
		.id = MX_P_MXGATE_STRESS_LEAVE_PERCENT, .name = "mxgate_stress_leave_percent",
		.type = MX_PT_INT, .def = "70", .min = 0, .max = 99,
		.doc = "stress ends when no more than this percentage is in use (below "
		       "mxgate_stress_enter_percent) and mxgate_stress_minimum_time has passed",
		P_GLOBAL_LIVE, P_FIELD(UNSIGNED, stress_leave_percent),
		.parse = cfg_parse_stress_leave,
	},
	[MX_P_MXGATE_STRESS_MINIMUM_TIME] = {
		.id = MX_P_MXGATE_STRESS_MINIMUM_TIME, .name = "mxgate_stress_minimum_time",
		.type = MX_PT_TIME, .def = "60s", .min = 0, .max = 86400,
		.doc = "the least time stress lasts once begun (Postfix keeps it 1000s after "
		       "the limit was last reached)",
		P_GLOBAL_LIVE, P_FIELD(UNSIGNED, stress_minimum_time_s),
	},
	/* anvil(8)'s limits (Postfix smtpd.c, anvil.c), enforced by the connection glue
	 * (dataplane/session/conn_anvil.c) over one table all workers share (tables/anvil.h).
	 * Bounds as Postfix's CONFIG_INT_TABLE (0, 0), but mxgate refuses a negative value
	 * where Postfix would take it as "no limit". */
	[MX_P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT,
		.name = "smtpd_client_connection_count_limit", .type = MX_PT_INT,
		.def = "50", .min = 0, .max = 0, .postfix = true,
		.doc = "connections one client (or prefix) may have open to this service at once; "
		       "beyond it 421 4.7.0 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_connection_count_limit),
	},
	[MX_P_SMTPD_CLIENT_CONNECTION_RATE_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_CONNECTION_RATE_LIMIT,
		.name = "smtpd_client_connection_rate_limit", .type = MX_PT_INT,
		.def = "0", .min = 0, .max = 0, .postfix = true,
		.doc = "connection attempts one client may make per anvil_rate_time_unit; beyond "
		       "it 421 4.7.0 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_connection_rate_limit),
	},
	[MX_P_SMTPD_CLIENT_MESSAGE_RATE_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_MESSAGE_RATE_LIMIT,
		.name = "smtpd_client_message_rate_limit", .type = MX_PT_INT,
		.def = "0", .min = 0, .max = 0, .postfix = true,
		.doc = "MAIL commands one client may send per anvil_rate_time_unit; beyond it "
		       "450 4.7.1 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_message_rate_limit),
	},
	[MX_P_SMTPD_CLIENT_RECIPIENT_RATE_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_RECIPIENT_RATE_LIMIT,
		.name = "smtpd_client_recipient_rate_limit", .type = MX_PT_INT,
		.def = "0", .min = 0, .max = 0, .postfix = true,
		.doc = "RCPT and VRFY commands one client may send per anvil_rate_time_unit; "
		       "beyond it 450 4.7.1 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_recipient_rate_limit),
	},
	[MX_P_SMTPD_CLIENT_AUTH_RATE_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_AUTH_RATE_LIMIT, .name = "smtpd_client_auth_rate_limit",
		.type = MX_PT_INT, .def = "0", .min = 0, .max = 0, .postfix = true,
		.doc = "AUTH commands one client may send per anvil_rate_time_unit; beyond it "
		       "450 4.7.1 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_auth_rate_limit),
	},
	[MX_P_SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT] = {
		.id = MX_P_SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT,
		.name = "smtpd_client_new_tls_session_rate_limit", .type = MX_PT_INT,
		.def = "0", .min = 0, .max = 0, .postfix = true,
		.doc = "new (not resumed) TLS sessions one client may negotiate per "
		       "anvil_rate_time_unit; beyond it STARTTLS gets 454 4.7.0, the session "
		       "that went over 421 4.7.0 (0 = no limit)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_new_tls_session_rate_limit),
	},
	[MX_P_SMTPD_CLIENT_CONNECTION_LIMIT_EXCEPTIONS] = {
		/* known (as Postfix knows it) so that the next one's default can test it;
		 * refused when set */
		.id = MX_P_SMTPD_CLIENT_CONNECTION_LIMIT_EXCEPTIONS,
		.name = "smtpd_client_connection_limit_exceptions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "the Postfix 2.2 name of smtpd_client_event_limit_exceptions: refused when "
		       "set",
		P_SERVICE_LIVE, .parse = cfg_parse_renamed_exceptions,
	},
	[MX_P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS] = {
		/* Postfix's default names the Postfix 2.2 parameter, which mxgate refuses
		 * when set: the value is $mynetworks */
		.id = MX_P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
		.name = "smtpd_client_event_limit_exceptions", .type = MX_PT_NETLIST,
		.def = "${smtpd_client_connection_limit_exceptions:$mynetworks}", .postfix = true,
		.doc = "clients neither counted nor limited by the smtpd_client_*_limit parameters",
		P_SERVICE_LIVE, P_FIELD(NETLIST, event_limit_exceptions),
	},
	[MX_P_SMTPD_CLIENT_IPV4_PREFIX_LENGTH] = {
		.id = MX_P_SMTPD_CLIENT_IPV4_PREFIX_LENGTH,
		.name = "smtpd_client_ipv4_prefix_length", .type = MX_PT_INT,
		.def = "32", .min = 0, .max = 32, .postfix = true,
		.doc = "IPv4 clients are counted per network of this many bits (Postfix 3.8)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_ipv4_prefix_length),
	},
	[MX_P_SMTPD_CLIENT_IPV6_PREFIX_LENGTH] = {
		.id = MX_P_SMTPD_CLIENT_IPV6_PREFIX_LENGTH,
		.name = "smtpd_client_ipv6_prefix_length", .type = MX_PT_INT,
		.def = "84", .min = 0, .max = 128, .postfix = true,
		.doc = "IPv6 clients are counted per network of this many bits (Postfix 3.8)",
		P_SERVICE_LIVE, P_FIELD(UNSIGNED, client_ipv6_prefix_length),
	},
	[MX_P_ANVIL_RATE_TIME_UNIT] = {
		/* anvil(8)'s parameter: one value for every service */
		.id = MX_P_ANVIL_RATE_TIME_UNIT, .name = "anvil_rate_time_unit",
		.type = MX_PT_TIME, .def = "60s", .min = 1, .max = 0, .postfix = true,
		.doc = "the window the smtpd_client_*_rate_limit parameters count in (a fixed "
		       "window per client, restarted by its first event after it ends)",
		P_GLOBAL_LIVE, P_FIELD(UNSIGNED, anvil_rate_time_unit_s),
	},
	[MX_P_MXGATE_ANVIL_TABLE_SIZE] = {
		.id = MX_P_MXGATE_ANVIL_TABLE_SIZE, .name = "mxgate_anvil_table_size",
		.type = MX_PT_INT, .def = "131072", .min = 1024, .max = 67108864,
		.doc = "clients (or prefixes) the per-client limits track at once; past it idle "
		       "ones are forgotten early, and a client that finds no room is not limited",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, anvil_table_size),
	},
	[MX_P_MXGATE_SPOOL_COMMIT_DELAY] = {
		.id = MX_P_MXGATE_SPOOL_COMMIT_DELAY, .name = "mxgate_spool_commit_delay",
		.type = MX_PT_INT, .def = "0", .min = 0, .max = 1000,
		.doc = "milliseconds a spool batch may wait for more messages before its fdatasync "
		       "(0: sync as soon as the writer's queue is empty; batches still form under load)",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, spool_commit_delay_ms),
	},
	[MX_P_MXGATE_SPOOL_QUOTA] = {
		.id = MX_P_MXGATE_SPOOL_QUOTA, .name = "mxgate_spool_quota", .type = MX_PT_SIZE,
		.def = "0", .min = 0, .max = LONG_MAX,
		.doc = "bytes the spool may hold; above it MAIL and DATA get 452 4.3.1 (0: no quota)",
		P_GLOBAL_RESTART, P_FIELD(U64, spool_quota),
	},
	[MX_P_RELAYHOST] = {
		.id = MX_P_RELAYHOST, .name = "relayhost", .type = MX_PT_TEXT,
		.def = "", .min = 0, .max = 300, .postfix = true,
		.doc = "the next hop for all accepted mail: [ADDRESS]:PORT, ADDRESS:PORT or "
		       "[IPV6]:PORT (numeric: no DNS); empty: no relay, mail stays in the spool",
		P_GLOBAL_RESTART, .parse = cfg_parse_relayhost,
	},
	[MX_P_MXGATE_RELAY_PROTOCOL] = {
		.id = MX_P_MXGATE_RELAY_PROTOCOL, .name = "mxgate_relay_protocol",
		.type = MX_PT_CHOICE, .def = "smtp", .choices = "smtp|lmtp",
		.doc = "how the relay talks to relayhost: smtp (EHLO) or lmtp (LHLO, RFC 2033)",
		P_GLOBAL_RESTART, .parse = cfg_parse_relay_protocol,
	},
	[MX_P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT] = {
		.id = MX_P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT,
		.name = "default_destination_concurrency_limit", .type = MX_PT_INT,
		.def = "20", .min = 1, .max = 256, .postfix = true,
		.doc = "parallel connections (relay threads) to relayhost",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, relay_concurrency),
	},
	[MX_P_SMTP_CONNECT_TIMEOUT] = {
		.id = MX_P_SMTP_CONNECT_TIMEOUT, .name = "smtp_connect_timeout", .type = MX_PT_TIME,
		.def = "30s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for the relay's TCP connection to relayhost",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_connect_timeout_s),
	},
	[MX_P_SMTP_HELO_TIMEOUT] = {
		.id = MX_P_SMTP_HELO_TIMEOUT, .name = "smtp_helo_timeout", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for the next hop's greeting and its EHLO/LHLO reply",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_helo_timeout_s),
	},
	[MX_P_SMTP_MAIL_TIMEOUT] = {
		.id = MX_P_SMTP_MAIL_TIMEOUT, .name = "smtp_mail_timeout", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for sending MAIL FROM and its reply",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_mail_timeout_s),
	},
	[MX_P_SMTP_RCPT_TIMEOUT] = {
		.id = MX_P_SMTP_RCPT_TIMEOUT, .name = "smtp_rcpt_timeout", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for sending RCPT TO and its reply",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_rcpt_timeout_s),
	},
	[MX_P_SMTP_DATA_INIT_TIMEOUT] = {
		.id = MX_P_SMTP_DATA_INIT_TIMEOUT, .name = "smtp_data_init_timeout", .type = MX_PT_TIME,
		.def = "120s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for sending DATA and its reply",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_data_init_timeout_s),
	},
	[MX_P_SMTP_DATA_XFER_TIMEOUT] = {
		.id = MX_P_SMTP_DATA_XFER_TIMEOUT, .name = "smtp_data_xfer_timeout", .type = MX_PT_TIME,
		.def = "180s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for each write of the message content",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_data_xfer_timeout_s),
	},
	[MX_P_SMTP_DATA_DONE_TIMEOUT] = {
		.id = MX_P_SMTP_DATA_DONE_TIMEOUT, .name = "smtp_data_done_timeout", .type = MX_PT_TIME,
		.def = "600s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for the reply to the final \".\"",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_data_done_timeout_s),
	},
	[MX_P_SMTP_QUIT_TIMEOUT] = {
		.id = MX_P_SMTP_QUIT_TIMEOUT, .name = "smtp_quit_timeout", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 3600, .postfix = true,
		.doc = "time limit for sending QUIT and its reply",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_quit_timeout_s),
	},
	[MX_P_SMTP_CONNECTION_CACHE_TIME_LIMIT] = {
		.id = MX_P_SMTP_CONNECTION_CACHE_TIME_LIMIT, .name = "smtp_connection_cache_time_limit", .type = MX_PT_TIME,
		.def = "2s", .min = 1, .max = 300, .postfix = true,
		.doc = "how long an idle relay connection stays open for the next message",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, smtp_connection_cache_time_s),
	},
	[MX_P_MINIMAL_BACKOFF_TIME] = {
		.id = MX_P_MINIMAL_BACKOFF_TIME, .name = "minimal_backoff_time", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 604800, .postfix = true,
		.doc = "the first retry delay of a deferred message; it doubles at each attempt",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, minimal_backoff_s),
	},
	[MX_P_MAXIMAL_BACKOFF_TIME] = {
		.id = MX_P_MAXIMAL_BACKOFF_TIME, .name = "maximal_backoff_time", .type = MX_PT_TIME,
		.def = "4000s", .min = 1, .max = 604800, .postfix = true,
		.doc = "the longest retry delay of a deferred message",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, maximal_backoff_s),
	},
	[MX_P_QUEUE_RUN_DELAY] = {
		.id = MX_P_QUEUE_RUN_DELAY, .name = "queue_run_delay", .type = MX_PT_TIME,
		.def = "300s", .min = 1, .max = 604800, .postfix = true,
		.doc = "how often deferred messages are checked for a retry",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, queue_run_delay_s),
	},
	[MX_P_MAXIMAL_QUEUE_LIFETIME] = {
		.id = MX_P_MAXIMAL_QUEUE_LIFETIME, .name = "maximal_queue_lifetime",
		.type = MX_PT_TIME, .def = "5d", .min = 0, .max = 8640000, .postfix = true,
		.doc = "how long a deferred message is retried before it is returned to its "
		       "sender (0: one attempt only)",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, maximal_queue_lifetime_s),
	},
	[MX_P_BOUNCE_QUEUE_LIFETIME] = {
		.id = MX_P_BOUNCE_QUEUE_LIFETIME, .name = "bounce_queue_lifetime",
		.type = MX_PT_TIME, .def = "5d", .min = 0, .max = 8640000, .postfix = true,
		.doc = "maximal_queue_lifetime for bounces (null-sender mail); when it runs out "
		       "the bounce is dropped (logged)",
		P_GLOBAL_RESTART, P_FIELD(UNSIGNED, bounce_queue_lifetime_s),
	},
	[MX_P_BOUNCE_SIZE_LIMIT] = {
		.id = MX_P_BOUNCE_SIZE_LIMIT, .name = "bounce_size_limit", .type = MX_PT_INT,
		.def = "50000", .min = 1, .max = 0, .postfix = true,
		.doc = "bytes of the original message a delivery status notification returns "
		       "whole; a larger one is returned as its header only",
		P_GLOBAL_RESTART, P_FIELD(U64, bounce_size_limit),
	},
	[MX_P_TRANSPORT_MAPS] = {
		.id = MX_P_TRANSPORT_MAPS, .name = "transport_maps", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "transport(5) tables (in mxgate_table_directory, built with mxgate-map): "
		       "per recipient or domain next hops that override relayhost",
		P_GLOBAL_RESTART, P_FIELD(STRING, transport_maps),
	},
	[MX_P_RECIPIENT_DELIMITER] = {
		.id = MX_P_RECIPIENT_DELIMITER, .name = "recipient_delimiter", .type = MX_PT_TEXT,
		.def = "", .min = 0, .max = 32, .postfix = true,
		.doc = "characters that start an address extension (user+ext@domain)",
		P_GLOBAL_RESTART, P_FIELD(STRING, recipient_delimiter),
	},
	[MX_P_MXGATE_TABLE_DIRECTORY] = {
		.id = MX_P_MXGATE_TABLE_DIRECTORY, .name = "mxgate_table_directory",
		.type = MX_PT_PATH, .def = "/var/lib/mxgate/tables", .min = 1,
		.doc = "the LMDB environment that holds every table (mxgate-map -d)",
		P_GLOBAL_RESTART, P_FIELD(STRING, table_directory),
	},
	[MX_P_MXGATE_CONTROL_SOCKET] = {
		.id = MX_P_MXGATE_CONTROL_SOCKET, .name = "mxgate_control_socket",
		.type = MX_PT_PATH, .def = "", .min = 0,
		.doc = "the UNIX socket operator tools (mxgate-queue) use; empty: \"control\" in "
		       "the first spool directory",
		P_GLOBAL_RESTART, P_FIELD(STRING, control_socket),
	},
	[MX_P_MXGATE_SPOOL_SEGMENT_SIZE] = {
		.id = MX_P_MXGATE_SPOOL_SEGMENT_SIZE, .name = "mxgate_spool_segment_size",
		.type = MX_PT_SIZE, .def = "67108864", .min = 1048576, .max = 4294967296,
		.doc = "bytes after which the spool writer starts a new segment file; delivered "
		       "segments are deleted whole",
		P_GLOBAL_RESTART, P_FIELD(U64, spool_segment_size),
	},
	[MX_P_SMTPD_RESTRICTION_CLASSES] = {
		.id = MX_P_SMTPD_RESTRICTION_CLASSES, .name = "smtpd_restriction_classes", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "names of parameters that hold restriction lists, usable in lists and as access(5) values",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_CLIENT_RESTRICTIONS] = {
		.id = MX_P_SMTPD_CLIENT_RESTRICTIONS, .name = "smtpd_client_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions on the client address and name (at RCPT with smtpd_delay_reject)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_HELO_RESTRICTIONS] = {
		.id = MX_P_SMTPD_HELO_RESTRICTIONS, .name = "smtpd_helo_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions on the HELO/EHLO name (at RCPT with smtpd_delay_reject)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_SENDER_RESTRICTIONS] = {
		.id = MX_P_SMTPD_SENDER_RESTRICTIONS, .name = "smtpd_sender_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions on the MAIL FROM address (at RCPT with smtpd_delay_reject)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_RELAY_RESTRICTIONS] = {
		.id = MX_P_SMTPD_RELAY_RESTRICTIONS, .name = "smtpd_relay_restrictions",
		.type = MX_PT_WORDS,
		.def = "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
		.postfix = true,
		.doc = "mail relay control at RCPT, before smtpd_recipient_restrictions",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_RECIPIENT_RESTRICTIONS] = {
		.id = MX_P_SMTPD_RECIPIENT_RESTRICTIONS, .name = "smtpd_recipient_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions at RCPT TO, after smtpd_relay_restrictions",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_DATA_RESTRICTIONS] = {
		.id = MX_P_SMTPD_DATA_RESTRICTIONS, .name = "smtpd_data_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions at DATA",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_END_OF_DATA_RESTRICTIONS] = {
		.id = MX_P_SMTPD_END_OF_DATA_RESTRICTIONS, .name = "smtpd_end_of_data_restrictions", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "restrictions at the end of the message",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_DELAY_REJECT] = {
		.id = MX_P_SMTPD_DELAY_REJECT, .name = "smtpd_delay_reject", .type = MX_PT_BOOL,
		.def = "yes", .postfix = true,
		.doc = "evaluate client, helo and sender restrictions at RCPT TO",
		P_SERVICE_LIVE,
	},
	[MX_P_SOFT_BOUNCE] = {
		.id = MX_P_SOFT_BOUNCE, .name = "soft_bounce", .type = MX_PT_BOOL,
		.def = "no", .postfix = true,
		.doc = "turn every 5xx policy reply into the matching 4xx",
		P_SERVICE_LIVE, P_FIELD(BOOL, smtp.soft_bounce),
	},
	[MX_P_REJECT_CODE] = {
		.id = MX_P_REJECT_CODE, .name = "reject_code", .type = MX_PT_INT,
		.def = "554", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of the reject restriction",
		P_SERVICE_LIVE,
	},
	[MX_P_DEFER_CODE] = {
		.id = MX_P_DEFER_CODE, .name = "defer_code", .type = MX_PT_INT,
		.def = "450", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of the defer restriction",
		P_SERVICE_LIVE,
	},
	[MX_P_ACCESS_MAP_REJECT_CODE] = {
		.id = MX_P_ACCESS_MAP_REJECT_CODE, .name = "access_map_reject_code", .type = MX_PT_INT,
		.def = "554", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of REJECT in an access(5) table",
		P_SERVICE_LIVE,
	},
	[MX_P_ACCESS_MAP_DEFER_CODE] = {
		.id = MX_P_ACCESS_MAP_DEFER_CODE, .name = "access_map_defer_code", .type = MX_PT_INT,
		.def = "450", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of DEFER in an access(5) table",
		P_SERVICE_LIVE,
	},
	[MX_P_INVALID_HOSTNAME_REJECT_CODE] = {
		.id = MX_P_INVALID_HOSTNAME_REJECT_CODE, .name = "invalid_hostname_reject_code", .type = MX_PT_INT,
		.def = "501", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_invalid_helo_hostname",
		P_SERVICE_LIVE,
	},
	[MX_P_NON_FQDN_REJECT_CODE] = {
		.id = MX_P_NON_FQDN_REJECT_CODE, .name = "non_fqdn_reject_code", .type = MX_PT_INT,
		.def = "504", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of the reject_non_fqdn_* restrictions",
		P_SERVICE_LIVE,
	},
	[MX_P_RELAY_DOMAINS_REJECT_CODE] = {
		.id = MX_P_RELAY_DOMAINS_REJECT_CODE, .name = "relay_domains_reject_code", .type = MX_PT_INT,
		.def = "554", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_unauth_destination",
		P_SERVICE_LIVE,
	},
	[MX_P_MAPS_RBL_REJECT_CODE] = {
		.id = MX_P_MAPS_RBL_REJECT_CODE, .name = "maps_rbl_reject_code", .type = MX_PT_INT,
		.def = "554", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_rbl_client and reject_rhsbl_*",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_RELAY_RECIPIENT_REJECT_CODE] = {
		.id = MX_P_UNKNOWN_RELAY_RECIPIENT_REJECT_CODE, .name = "unknown_relay_recipient_reject_code", .type = MX_PT_INT,
		.def = "550", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code for a relay_domains recipient missing from relay_recipient_maps",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_LOCAL_RECIPIENT_REJECT_CODE] = {
		.id = MX_P_UNKNOWN_LOCAL_RECIPIENT_REJECT_CODE, .name = "unknown_local_recipient_reject_code", .type = MX_PT_INT,
		.def = "550", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code for a mydestination recipient missing from local_recipient_maps",
		P_SERVICE_LIVE,
	},
	[MX_P_MULTI_RECIPIENT_BOUNCE_REJECT_CODE] = {
		.id = MX_P_MULTI_RECIPIENT_BOUNCE_REJECT_CODE, .name = "multi_recipient_bounce_reject_code", .type = MX_PT_INT,
		.def = "550", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_multi_recipient_bounce",
		P_SERVICE_LIVE,
	},
	[MX_P_DEFAULT_RBL_REPLY] = {
		.id = MX_P_DEFAULT_RBL_REPLY, .name = "default_rbl_reply", .type = MX_PT_WORDS,
		.def = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
		       "$rbl_domain${rbl_reason?; $rbl_reason}",
		.postfix = true, .raw = true,
		.doc = "the reply of reject_rbl_client and friends ($rbl_code, $rbl_class, "
		       "$rbl_what, $rbl_domain, $rbl_reason expanded per reply)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_REJECT_UNLISTED_RECIPIENT] = {
		.id = MX_P_SMTPD_REJECT_UNLISTED_RECIPIENT, .name = "smtpd_reject_unlisted_recipient", .type = MX_PT_BOOL,
		.def = "yes", .postfix = true,
		.doc = "reject a recipient in a local or relay domain that no recipient table lists",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_REJECT_UNLISTED_SENDER] = {
		.id = MX_P_SMTPD_REJECT_UNLISTED_SENDER, .name = "smtpd_reject_unlisted_sender", .type = MX_PT_BOOL,
		.def = "no", .postfix = true,
		.doc = "the same for the sender address",
		P_SERVICE_LIVE,
	},
	[MX_P_RELAY_RECIPIENT_MAPS] = {
		.id = MX_P_RELAY_RECIPIENT_MAPS, .name = "relay_recipient_maps", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "tables of the valid recipients in relay_domains (empty: every one is valid)",
		P_SERVICE_LIVE,
	},
	[MX_P_LOCAL_RECIPIENT_MAPS] = {
		.id = MX_P_LOCAL_RECIPIENT_MAPS, .name = "local_recipient_maps", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "tables of the valid recipients in mydestination; empty (mxgate's default, as it has no local users): not checked",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_NULL_ACCESS_LOOKUP_KEY] = {
		.id = MX_P_SMTPD_NULL_ACCESS_LOOKUP_KEY, .name = "smtpd_null_access_lookup_key",
		.type = MX_PT_TEXT, .def = "<>", .min = 1, .max = 255, .postfix = true,
		.doc = "the key check_sender_access looks the null sender up as",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_AUTHORIZED_XCLIENT_HOSTS] = {
		.id = MX_P_SMTPD_AUTHORIZED_XCLIENT_HOSTS, .name = "smtpd_authorized_xclient_hosts",
		.type = MX_PT_NETLIST, .def = "", .postfix = true,
		.doc = "clients allowed to use XCLIENT (to act as another client, for tests and "
		       "proxies)",
		P_SERVICE_LIVE, P_FIELD(NETLIST, xclient_hosts),
	},
	[MX_P_HEADER_CHECKS] = {
		.id = MX_P_HEADER_CHECKS, .name = "header_checks", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "regexp:/pcre: check files for the message headers (read at start)",
		P_SERVICE_LIVE,
	},
	[MX_P_MIME_HEADER_CHECKS] = {
		.id = MX_P_MIME_HEADER_CHECKS, .name = "mime_header_checks", .type = MX_PT_WORDS,
		.def = "$header_checks", .postfix = true,
		.doc = "check files for MIME part headers",
		P_SERVICE_LIVE,
	},
	[MX_P_NESTED_HEADER_CHECKS] = {
		.id = MX_P_NESTED_HEADER_CHECKS, .name = "nested_header_checks", .type = MX_PT_WORDS,
		.def = "$header_checks", .postfix = true,
		.doc = "check files for the headers of attached messages",
		P_SERVICE_LIVE,
	},
	[MX_P_BODY_CHECKS] = {
		.id = MX_P_BODY_CHECKS, .name = "body_checks", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "check files for body lines",
		P_SERVICE_LIVE,
	},
	[MX_P_BODY_CHECKS_SIZE_LIMIT] = {
		.id = MX_P_BODY_CHECKS_SIZE_LIMIT, .name = "body_checks_size_limit",
		.type = MX_PT_INT, .def = "51200", .min = 0, .max = 0, .postfix = true,
		.doc = "bytes of each body part that body_checks inspect",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_CHECKS_CACHE_DIRECTORY] = {
		.id = MX_P_MXGATE_CHECKS_CACHE_DIRECTORY,
		.name = "mxgate_checks_cache_directory", .type = MX_PT_PATH,
		.def = "/var/cache/mxgate/checks", .min = 0,
		.doc = "compiled Hyperscan databases of the *_checks sets, so a start or reload "
		       "with unchanged rules skips the compile (empty: no cache)",
		P_GLOBAL_LIVE,
	},
	[MX_P_MXGATE_MASTER_FILE] = {
		.id = MX_P_MXGATE_MASTER_FILE, .name = "mxgate_master_file", .type = MX_PT_PATH,
		.def = "", .min = 0,
		.doc = "services in master.cf syntax: each inet smtpd line is a listener with its "
		       "own -o overrides (empty: one service on mxgate_listen)",
		P_GLOBAL_RESTART,
	},
	/* --- DNS-backed restrictions and policy delegation (issue 13) --- */
	[MX_P_UNKNOWN_CLIENT_REJECT_CODE] = {
		.id = MX_P_UNKNOWN_CLIENT_REJECT_CODE, .name = "unknown_client_reject_code",
		.type = MX_PT_INT, .def = "450", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_unknown_client_hostname and "
		       "reject_unknown_reverse_client_hostname when the name does not exist",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_HOSTNAME_REJECT_CODE] = {
		.id = MX_P_UNKNOWN_HOSTNAME_REJECT_CODE, .name = "unknown_hostname_reject_code",
		.type = MX_PT_INT, .def = "450", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_unknown_helo_hostname",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_ADDRESS_REJECT_CODE] = {
		.id = MX_P_UNKNOWN_ADDRESS_REJECT_CODE, .name = "unknown_address_reject_code",
		.type = MX_PT_INT, .def = "450", .min = 400, .max = 599, .postfix = true,
		.doc = "reply code of reject_unknown_sender_domain and "
		       "reject_unknown_recipient_domain",
		P_SERVICE_LIVE,
	},
	[MX_P_REJECT_TEMPFAIL_ACTION] = {
		.id = MX_P_REJECT_TEMPFAIL_ACTION, .name = "reject_tempfail_action",
		.type = MX_PT_CHOICE, .def = "defer_if_permit", .choices = "defer_if_permit|defer",
		.postfix = true,
		.doc = "what a temporary DNS failure in a reject_unknown_* check does (the "
		       "default of the *_tempfail_action parameters)",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_HELO_HOSTNAME_TEMPFAIL_ACTION] = {
		.id = MX_P_UNKNOWN_HELO_HOSTNAME_TEMPFAIL_ACTION,
		.name = "unknown_helo_hostname_tempfail_action", .type = MX_PT_CHOICE,
		.def = "$reject_tempfail_action", .choices = "defer_if_permit|defer",
		.postfix = true,
		.doc = "what a temporary DNS failure in reject_unknown_helo_hostname does",
		P_SERVICE_LIVE,
	},
	[MX_P_UNKNOWN_ADDRESS_TEMPFAIL_ACTION] = {
		.id = MX_P_UNKNOWN_ADDRESS_TEMPFAIL_ACTION, .name = "unknown_address_tempfail_action",
		.type = MX_PT_CHOICE, .def = "$reject_tempfail_action",
		.choices = "defer_if_permit|defer", .postfix = true,
		.doc = "what a temporary DNS failure in reject_unknown_{sender,recipient}_domain "
		       "does",
		P_SERVICE_LIVE,
	},
	[MX_P_RBL_REPLY_MAPS] = {
		.id = MX_P_RBL_REPLY_MAPS, .name = "rbl_reply_maps", .type = MX_PT_WORDS,
		.def = "", .postfix = true,
		.doc = "tables of reply templates per DNS blocklist, keyed by the list as written "
		       "after reject_rbl_client and friends (default: default_rbl_reply)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_TIMEOUT] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_TIMEOUT, .name = "smtpd_policy_service_timeout",
		.type = MX_PT_TIME, .def = "100s", .min = 1, .max = 0, .postfix = true,
		.doc = "how long a check_policy_service query may take",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_MAX_IDLE] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_MAX_IDLE, .name = "smtpd_policy_service_max_idle",
		.type = MX_PT_TIME, .def = "300s", .min = 1, .max = 0, .postfix = true,
		.doc = "an idle policy server connection is closed after this",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_MAX_TTL] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_MAX_TTL, .name = "smtpd_policy_service_max_ttl",
		.type = MX_PT_TIME, .def = "1000s", .min = 1, .max = 0, .postfix = true,
		.doc = "a policy server connection is closed after this long",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_RETRY_DELAY] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_RETRY_DELAY,
		.name = "smtpd_policy_service_retry_delay", .type = MX_PT_TIME, .def = "1s",
		.min = 1, .max = 0, .postfix = true,
		.doc = "the pause before a failed policy query is tried again",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_TRY_LIMIT] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_TRY_LIMIT, .name = "smtpd_policy_service_try_limit",
		.type = MX_PT_INT, .def = "2", .min = 1, .max = 0, .postfix = true,
		.doc = "how many times a policy query is tried",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_REQUEST_LIMIT] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_REQUEST_LIMIT,
		.name = "smtpd_policy_service_request_limit", .type = MX_PT_INT, .def = "0",
		.min = 0, .max = 0, .postfix = true,
		.doc = "queries per policy server connection before it is closed (0: no limit)",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION,
		.name = "smtpd_policy_service_default_action", .type = MX_PT_TEXT,
		.def = "451 4.3.5 Server configuration problem", .min = 1, .max = 512,
		.postfix = true,
		.doc = "the access(5) action when a policy server cannot be asked",
		P_SERVICE_LIVE,
	},
	[MX_P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT] = {
		.id = MX_P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT,
		.name = "smtpd_policy_service_policy_context", .type = MX_PT_TEXT, .def = "",
		.min = 0, .max = 512, .postfix = true,
		.doc = "the policy_context attribute sent to policy servers",
		P_SERVICE_LIVE,
	},
	/* check_greylist: postgrey built in (tables/greylist.h); postgrey's option in ( ) */
	[MX_P_MXGATE_GREYLIST_MAP] = {
		.id = MX_P_MXGATE_GREYLIST_MAP, .name = "mxgate_greylist_map", .type = MX_PT_TEXT,
		.def = "btree:$data_directory/greylist", .min = 0, .max = 255,
		.doc = "check_greylist's state (triplets, auto-allowlisted clients): lmdb:/path or "
		       "btree:/path (this gateway), memcache:/etc/mxgate/greylist.cf (shared by "
		       "gateways, memcache_table(5))",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_DELAY] = {
		.id = MX_P_MXGATE_GREYLIST_DELAY, .name = "mxgate_greylist_delay",
		.type = MX_PT_TIME, .def = "300s", .min = 1, .max = 0,
		.doc = "how long a new triplet is greylisted (postgrey --delay)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_MAX_AGE] = {
		.id = MX_P_MXGATE_GREYLIST_MAX_AGE, .name = "mxgate_greylist_max_age",
		.type = MX_PT_TIME, .def = "35d", .min = 1, .max = 0,
		.doc = "a triplet that passed, or an auto-allowlisted client, is forgotten this "
		       "long after it was last seen (postgrey --max-age)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_RETRY_WINDOW] = {
		.id = MX_P_MXGATE_GREYLIST_RETRY_WINDOW, .name = "mxgate_greylist_retry_window",
		.type = MX_PT_TIME, .def = "2d", .min = 1, .max = 0,
		.doc = "a retry this long after the first attempt starts greylisting over "
		       "(postgrey --retry-window)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_CLIENTS] = {
		.id = MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_CLIENTS,
		.name = "mxgate_greylist_auto_allowlist_clients", .type = MX_PT_INT, .def = "5",
		.min = 0, .max = 0,
		.doc = "a client is no longer greylisted after this many passed triplets, 0 to "
		       "never (postgrey --auto-whitelist-clients)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_INTERVAL] = {
		.id = MX_P_MXGATE_GREYLIST_AUTO_ALLOWLIST_INTERVAL,
		.name = "mxgate_greylist_auto_allowlist_interval", .type = MX_PT_TIME,
		.def = "1h", .min = 0, .max = 0,
		.doc = "passes of one client closer together than this count once (postgrey's "
		       "fixed hour)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_IPV4_PREFIX_LENGTH] = {
		.id = MX_P_MXGATE_GREYLIST_IPV4_PREFIX_LENGTH,
		.name = "mxgate_greylist_ipv4_prefix_length", .type = MX_PT_INT, .def = "24",
		.min = 0, .max = 32,
		.doc = "IPv4 clients are greylisted per network of this many bits, 32 per host "
		       "(postgrey --ipv4cidr, --lookup-by-host)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_IPV6_PREFIX_LENGTH] = {
		.id = MX_P_MXGATE_GREYLIST_IPV6_PREFIX_LENGTH,
		.name = "mxgate_greylist_ipv6_prefix_length", .type = MX_PT_INT, .def = "64",
		.min = 0, .max = 128,
		.doc = "IPv6 clients are greylisted per network of this many bits, 128 per host "
		       "(postgrey --ipv6cidr)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_CLIENT_ALLOWLIST] = {
		.id = MX_P_MXGATE_GREYLIST_CLIENT_ALLOWLIST,
		.name = "mxgate_greylist_client_allowlist", .type = MX_PT_WORDS, .def = "",
		.doc = "files of clients never greylisted, in postgrey's whitelist_clients format "
		       "(Debian: /etc/postgrey/whitelist_clients; postgrey --whitelist-clients)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_RECIPIENT_ALLOWLIST] = {
		.id = MX_P_MXGATE_GREYLIST_RECIPIENT_ALLOWLIST,
		.name = "mxgate_greylist_recipient_allowlist", .type = MX_PT_WORDS, .def = "",
		.doc = "files of recipients never greylisted, in postgrey's whitelist_recipients "
		       "format (postgrey --whitelist-recipients)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_ACTION] = {
		.id = MX_P_MXGATE_GREYLIST_ACTION, .name = "mxgate_greylist_action",
		.type = MX_PT_TEXT, .def = "DEFER_IF_PERMIT", .min = 1, .max = 64,
		.doc = "the access(5) action of a greylisted triplet (postgrey --greylist-action)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_TEXT] = {
		.id = MX_P_MXGATE_GREYLIST_TEXT, .name = "mxgate_greylist_text", .type = MX_PT_TEXT,
		.def = "Greylisted, see http://postgrey.schweikert.ch/help/%r.html", .min = 1,
		.max = 400,
		.doc = "the text of a greylisted triplet: %s the seconds left, %r the recipient's "
		       "domain (postgrey --greylist-text)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_HEADER] = {
		.id = MX_P_MXGATE_GREYLIST_HEADER, .name = "mxgate_greylist_header",
		.type = MX_PT_TEXT, .def = "X-Greylist: delayed %t seconds by mxgate-%v at %h; %d",
		.min = 0, .max = 400,
		.doc = "the header prepended to a message that was greylisted: %t seconds, %v "
		       "mxgate's version, %h myhostname, %d the date; empty for none (postgrey "
		       "--x-greylist-header)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_GREYLIST_DEFAULT_ACTION] = {
		.id = MX_P_MXGATE_GREYLIST_DEFAULT_ACTION, .name = "mxgate_greylist_default_action",
		.type = MX_PT_TEXT, .def = "451 4.3.5 Server configuration problem", .min = 1,
		.max = 512,
		.doc = "the access(5) action when the greylist state cannot be read or written "
		       "(as smtpd_policy_service_default_action for postgrey)",
		P_SERVICE_LIVE,
	},
	[MX_P_MXGATE_DNS_SERVERS] = {
		.id = MX_P_MXGATE_DNS_SERVERS, .name = "mxgate_dns_servers", .type = MX_PT_WORDS,
		.def = "",
		.doc = "recursive resolvers for the gateway's DNS lookups: addresses, optionally "
		       "[address]:port (empty: the nameserver lines of /etc/resolv.conf). Use a "
		       "local resolver such as unbound: DNS blocklists refuse queries that come "
		       "through public resolvers",
		P_GLOBAL_LIVE,
	},
	[MX_P_MXGATE_ANVIL_RATE_MAP] = {
		/* rates only: a connection count needs the decrement of every connection's
		 * end, which a node that died or lost the store never sends */
		.id = MX_P_MXGATE_ANVIL_RATE_MAP, .name = "mxgate_anvil_rate_map",
		.type = MX_PT_WORDS, .def = "",
		.doc = "memcache:/path.cf (a memcache_table(5) file): the smtpd_client_*_rate_limit "
		       "counters are shared with the other gateways using it, in windows aligned "
		       "on anvil_rate_time_unit (empty: counted per gateway; the connection "
		       "count limit is always per gateway)",
		P_GLOBAL_RESTART, P_FIELD(STRING, anvil_rate_map),
		.parse = cfg_parse_anvil_rate_map,
	},
#include "mgmt/config_params_screen.inc"
#include "mgmt/config_params_tls.inc"
	[MX_P_MXGATE_METRICS_LISTEN] = {
		.id = MX_P_MXGATE_METRICS_LISTEN, .name = "mxgate_metrics_listen",
		.type = MX_PT_LISTEN, .def = "",
		.doc = "where the Prometheus endpoint (GET /metrics) listens: one ADDR:PORT or "
		       "[IPV6]:PORT, e.g. 127.0.0.1:9465; empty: no endpoint",
		P_GLOBAL_RESTART, .parse = cfg_parse_metrics_listen,
	},
#include "mgmt/config_params_log.inc"
	/* --- unprivileged running (issue 16; dataplane/privdrop.h) --- */
	[MX_P_MAIL_OWNER] = {
		.id = MX_P_MAIL_OWNER, .name = "mail_owner", .type = MX_PT_TEXT,
		.def = "mxgate", .min = 1, .max = 32, .postfix = true,
		.doc = "the user that owns the spool, the table store and the control socket, "
		       "and that the gateway runs as once its listeners (and DPDK ports) are "
		       "set up; it must exist and must not be root (Postfix: postfix)",
		P_GLOBAL_RESTART, .parse = cfg_parse_mail_owner,
	},
	[MX_P_MXGATE_CHROOT] = {
		.id = MX_P_MXGATE_CHROOT, .name = "mxgate_chroot", .type = MX_PT_PATH,
		.def = "", .min = 0,
		.doc = "a directory to chroot into after start-up, as master.cf's chroot column "
		       "(empty: none); what is read later (reloads: the configuration, master "
		       "file, checks files, certificates) is found at the same path inside it",
		P_GLOBAL_RESTART,
	},
};

const char *mx_param_scope_name(enum mx_param_scope s)
{
	static const char *const names[MX_SCOPE_MAX] = {
		[MX_SCOPE_GLOBAL] = "global",
		[MX_SCOPE_SERVICE] = "service",
	};
	return (unsigned)s < MX_SCOPE_MAX ? names[s] : "?";
}

const char *mx_param_reload_name(enum mx_param_reload r)
{
	static const char *const names[MX_RELOAD_MAX] = {
		[MX_RELOAD_LIVE] = "live",
		[MX_RELOAD_RESTART] = "restart",
	};
	return (unsigned)r < MX_RELOAD_MAX ? names[r] : "?";
}

const char *mx_param_type_name(enum mx_param_type t)
{
	static const char *const names[MX_PT_TYPE_MAX] = {
		[MX_PT_HOSTNAME] = "hostname", [MX_PT_TEXT] = "text",
		[MX_PT_LEVEL] = "level",       [MX_PT_BOOL] = "bool",
		[MX_PT_INT] = "int",           [MX_PT_SIZE] = "size",
		[MX_PT_TIME] = "time",         [MX_PT_NETLIST] = "netlist",
		[MX_PT_DOMAINS] = "domains",   [MX_PT_WORDS] = "words",
		[MX_PT_PATH] = "path",         [MX_PT_CHOICE] = "choice",
		[MX_PT_LISTEN] = "listen",
	};
	return (unsigned)t < MX_PT_TYPE_MAX ? names[t] : "?";
}

const struct mx_param_def *mx_param_find(const char *name, size_t len)
{
	for (size_t i = 0; i < MX_P_MAX; i++)
		if (strlen(mx_params[i].name) == len && memcmp(mx_params[i].name, name, len) == 0)
			return &mx_params[i];
	return NULL;
}
