/* Postfix parameters mxgate does not implement (postconf(5), Postfix 3.7 as Debian 12 ships
 * it): one row each, or one row for a family (a prefix "tls_*" or a Postfix per-transport
 * suffix "*_destination_rate_delay").
 *
 * The rule (issue 12): a parameter that, set in main.cf or in a service's -o, would change
 * what is accepted, encrypted, filtered, rewritten or where mail goes is REFUSED (an error:
 * an operator must not believe a gateway does what it does not); one about what a gateway
 * does not do at all (local delivery, biff, aliases, Postfix's own daemons, directories,
 * queue manager tuning, logging) is WARNED about and ignored. A refused row names the values
 * that ask for what mxgate does anyway (empty, no, 0, the Postfix default mxgate follows):
 * those pass in silence. Decisions by family:
 *   - content inspection and rewriting by other programs or tables: milters, content_filter,
 *     smtpd_proxy_filter, receive_override_options, canonical/generic/masquerade, bcc maps,
 *     virtual aliases and mailboxes, relocated_maps, message_*_characters/headers: refused
 *     when non-empty;
 *   - TLS: the server's is implemented (mgmt/tls_conf.c), client certificates asked for
 *     (ask_ccert) and required (req_ccert) too, and SNI maps; DSA certificates, other
 *     cipher lists, eecdh grades and OpenSSL options are refused; the relay does not encrypt:
 *     smtp_tls_security_level = may (Debian's default) is a warning (opportunistic TLS
 *     allows plaintext), anything stronger and the relay's per-site TLS policy are
 *     refused;
 *   - SASL: AUTH through Dovecot is implemented (smtpd_sasl_*); Cyrus SASL's own settings
 *     are warnings, smtpd_sasl_mechanism_filter is refused when set;
 *   - anvil limits: the connection, message and recipient limits are implemented
 *     (config_params.c); the new TLS session and AUTH rate limits are refused when
 *     non-zero (not counted yet); postscreen: its tests are implemented
 *     (config_params.c), its connection limit, TLS, PROXY protocol, command filter and
 *     EHLO keyword discarding are refused when set, its footers and queue limits
 *     warned about;
 *   - routing: default_transport/relay_transport other than Postfix's defaults,
 *     sender_dependent_*, defer_transports, smtp_fallback_relay, smtp_bind_address,
 *     smtp_tcp_port other than 25, master_service_disable: refused;
 *   - stricter acceptance mxgate does not apply (strict_7bit_headers, strict_8bitmime...,
 *     smtpd_command_filter, allow_untrusted_routing = yes): refused;
 *   - restrictions' helpers whose restrictions the policy compiler already refuses
 *     (address verification, permit_mx_backup, login maps): warnings;
 *   - the relay client's tuning (smtp_*, lmtp_*) beyond what mxgate reads (relayhost, the
 *     timeouts, connection cache time): warnings, except where noted above.
 * Every name `postconf -d` prints for Debian 12 (with its stock master.cf) is either a
 * parameter mxgate knows or matched here (tests/unit/mgmt/test_config_refused.c). */
#include "mgmt/config_refused.h"

#include "mgmt/config_internal.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define W(n_, w_) { .name = (n_), .pred = MX_REFUSED_NEVER, .why = (w_) }
#define NONEMPTY(n_, w_) { .name = (n_), .pred = MX_REFUSED_NONEMPTY, .why = (w_) }
#define YES(n_, w_) { .name = (n_), .pred = MX_REFUSED_YES, .why = (w_) }
#define NONZERO(n_, w_) { .name = (n_), .pred = MX_REFUSED_NONZERO, .why = (w_) }
#define ALWAYS(n_, w_) { .name = (n_), .pred = MX_REFUSED_ALWAYS, .why = (w_) }
#define NOT_IN(n_, ok_, w_) { .name = (n_), .pred = MX_REFUSED_NOT_IN, .harmless = (ok_), \
			      .why = (w_) }
#define TLS_LEVEL(n_, ok_, w_, ww_) { .name = (n_), .pred = MX_REFUSED_NOT_IN, \
				      .harmless = (ok_), .warn = "may", .warn_why = (ww_), \
				      .why = (w_) }

#define NO_LOCAL "mxgate delivers nothing locally; it relays every message"
#define NO_DAEMON "a setting of Postfix's own daemons, programs or files"
#define NO_QMGR "Postfix queue manager tuning; mxgate's relay has its own scheduling"
#define NO_LOG "logging: mxgate logs to maillog_file or syslog"
#define NO_TLS_YET "the relay does not speak TLS yet; this matters only once it does"
#define CYRUS_ONLY "used only by Cyrus SASL; mxgate speaks Dovecot's auth protocol"
#define NO_RELAY_TUNING "a Postfix SMTP/LMTP client setting mxgate's relay does not read"
#define NO_DNS "a setting of Postfix's DNS client; mxgate's resolver is set with mxgate_dns_servers (its relay uses a numeric relayhost)"
#define REFUSED_RESTRICTION "used only by restrictions that mxgate --check refuses"
#define NO_TRANSPORT "a Postfix per-transport setting; mxgate has one relay transport"
#define NO_MILTER "mxgate has no milter client yet: mail would not be filtered"
#define NO_REWRITE "mxgate does not rewrite addresses: mail would go out unrewritten"
#define NO_BCC "mxgate adds no recipients: the copies would not be sent"
#define NO_VIRTUAL "mxgate has no virtual alias or mailbox tables: recipients would not " \
		   "be validated, rewritten or routed as configured"

const struct mx_refused_def mx_refused[] = {
	/* --- Mail is filtered elsewhere ------------------------------------------------ */
	NONEMPTY("smtpd_milters", NO_MILTER),
	NONEMPTY("non_smtpd_milters", NO_MILTER),
	NONEMPTY("smtpd_milter_maps", NO_MILTER),
	NONEMPTY("milter_header_checks", NO_MILTER),
	W("milter_*", "settings of milters, which are refused when configured"),
	NONEMPTY("content_filter", "mxgate does not hand mail to a content filter: it would "
				   "go out unfiltered"),
	W("default_filter_nexthop", "used only with content_filter, which is refused"),
	NONEMPTY("smtpd_sasl_mechanism_filter", "mxgate offers the mechanisms Dovecot offers "
						"(its auth_mechanisms) as smtpd_sasl_security_options "
						"allow; a filter on top is not implemented"),
	NONEMPTY("smtpd_proxy_filter", "mxgate has no before-queue proxy filter: mail would "
				       "not be filtered"),
	W("smtpd_proxy_ehlo", "used only with smtpd_proxy_filter, which is refused"),
	W("smtpd_proxy_options", "used only with smtpd_proxy_filter, which is refused"),
	W("smtpd_proxy_timeout", "used only with smtpd_proxy_filter, which is refused"),
	NONEMPTY("receive_override_options", "mxgate always applies its checks and does no "
					     "address mapping; the overrides would not apply"),
	NONEMPTY("smtp_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("smtp_mime_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("smtp_nested_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("smtp_body_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("lmtp_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("lmtp_mime_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("lmtp_nested_header_checks", "the relay does not filter outgoing mail"),
	NONEMPTY("lmtp_body_checks", "the relay does not filter outgoing mail"),
	YES("disable_mime_input_processing", "mxgate always parses MIME: mime_header_checks "
					     "and nested_header_checks would still apply"),

	/* --- Addresses are rewritten elsewhere ----------------------------------------- */
	NONEMPTY("canonical_maps", NO_REWRITE),
	NONEMPTY("sender_canonical_maps", NO_REWRITE),
	NONEMPTY("recipient_canonical_maps", NO_REWRITE),
	W("canonical_classes", "used only with canonical maps, which are refused"),
	W("sender_canonical_classes", "used only with canonical maps, which are refused"),
	W("recipient_canonical_classes", "used only with canonical maps, which are refused"),
	NONEMPTY("masquerade_domains", NO_REWRITE),
	W("masquerade_classes", "used only with masquerade_domains, which is refused"),
	W("masquerade_exceptions", "used only with masquerade_domains, which is refused"),
	NONEMPTY("smtp_generic_maps", NO_REWRITE),
	NONEMPTY("lmtp_generic_maps", NO_REWRITE),
	NONEMPTY("remote_header_rewrite_domain", NO_REWRITE),
	W("local_header_rewrite_clients", "mxgate rewrites no headers for any client"),
	W("append_at_myorigin", "applies to locally submitted mail; mxgate accepts none"),
	W("append_dot_mydomain", "applies to locally submitted mail; mxgate accepts none"),
	NOT_IN("allow_percent_hack", "no", "mxgate does not rewrite user%domain addresses"),
	NOT_IN("swap_bangpath", "no", "mxgate does not rewrite site!user addresses"),
	W("resolve_dequoted_address", "mxgate resolves the address as written"),
	W("resolve_null_domain", "mxgate resolves the address as written"),
	W("resolve_numeric_domain", "mxgate resolves the address as written"),
	NONEMPTY("message_drop_headers", "mxgate removes no headers"),
	NONEMPTY("message_reject_characters", "mxgate does not reject mail by its characters"),
	NONEMPTY("message_strip_characters", "mxgate does not strip characters from mail"),
	YES("always_add_missing_headers", "mxgate adds no missing headers (Date:, "
					  "Message-ID:, From:, To:)"),
	W("header_from_format", "applies to mail whose From: Postfix generates; mxgate "
				"generates none"),
	W("undisclosed_recipients_header", "applies to locally submitted mail"),
	W("propagate_unmatched_extensions", "used only with aliases and canonical maps"),
	W("enable_original_recipient", "mxgate keeps the recipient as received"),
	W("cleanup_replace_stray_cr_lf", "mxgate handles bare CR and LF as "
					 "smtpd_forbid_bare_newline says"),
	W("detect_8bit_encoding_header", "mxgate does no MIME conversion"),
	W("disable_mime_output_conversion", "mxgate does no MIME conversion"),
	W("mime_boundary_length_limit", "mxgate's MIME parser has its own bounds"),
	W("mime_nesting_limit", "mxgate's MIME parser has its own bounds"),
	W("header_address_token_limit", "mxgate does not parse header addresses"),
	W("smtputf8_autodetect_classes", "applies to mail Postfix generates"),
	W("internal_mail_filter_classes", "applies to mail Postfix generates"),

	/* --- Recipients are added, validated or routed elsewhere ------------------------ */
	NONEMPTY("always_bcc", NO_BCC),
	NONEMPTY("sender_bcc_maps", NO_BCC),
	NONEMPTY("recipient_bcc_maps", NO_BCC),
	NONEMPTY("virtual_alias_domains", NO_VIRTUAL),
	NONEMPTY("virtual_alias_maps", NO_VIRTUAL),
	NONEMPTY("virtual_maps", NO_VIRTUAL),
	NONEMPTY("virtual_mailbox_domains", NO_VIRTUAL),
	NONEMPTY("virtual_mailbox_maps", NO_VIRTUAL),
	W("virtual_*", "settings of Postfix's virtual delivery agent and alias expansion, "
		       "which mxgate does not do"),
	NONEMPTY("relocated_maps", "mxgate gives no \"user has moved\" replies: mail for "
				   "moved users would be accepted"),
	NONEMPTY("sender_dependent_default_transport_maps", "mxgate routes by recipient "
							    "only (transport_maps)"),
	NONEMPTY("sender_dependent_relayhost_maps", "mxgate routes by recipient only "
						    "(transport_maps)"),
	NONEMPTY("defer_transports", "mxgate does not hold mail by transport"),
	NOT_IN("default_transport", "smtp", "mxgate relays all mail to relayhost or as "
					    "transport_maps says"),
	NOT_IN("relay_transport", "relay", "mxgate relays all mail to relayhost or as "
					   "transport_maps says"),
	NONEMPTY("smtp_fallback_relay", "the relay has no fallback next hop"),
	NONEMPTY("lmtp_fallback_relay", "the relay has no fallback next hop"),
	NONEMPTY("smtp_bind_address", "the relay connects from the address the kernel picks"),
	NONEMPTY("smtp_bind_address6", "the relay connects from the address the kernel "
				       "picks"),
	NONEMPTY("lmtp_bind_address", "the relay connects from the address the kernel picks"),
	NONEMPTY("lmtp_bind_address6", "the relay connects from the address the kernel "
				       "picks"),
	NOT_IN("smtp_tcp_port", "smtp|25", "the relay's default port is 25; write the port "
					   "in relayhost"),
	NOT_IN("lmtp_tcp_port", "24", "the relay's default port is 25; write the port in "
				      "relayhost"),
	NONEMPTY("master_service_disable", "mxgate runs its listeners regardless"),
	W("local_transport", NO_LOCAL),
	W("mailbox_transport", NO_LOCAL),
	W("mailbox_transport_maps", NO_LOCAL),
	W("fallback_transport", NO_LOCAL),
	W("fallback_transport_maps", NO_LOCAL),
	W("luser_relay", NO_LOCAL),
	W("best_mx_transport", NO_DNS),
	W("empty_address_relayhost_maps_lookup_key", "used only with "
						     "sender_dependent_relayhost_maps"),
	W("empty_address_default_transport_maps_lookup_key", "used only with "
							     "sender_dependent_default_"
							     "transport_maps"),

	/* --- What is accepted ---------------------------------------------------------- */
	W("anvil_*", NO_DAEMON),
	/* postscreen: the screen implements the tests (config_params.c); these are what
	 * it does not */
	W("postscreen_pre_queue_limit", "the screen's connections count toward "
					"mxgate_max_connections"),
	W("postscreen_post_queue_limit", "the screen's connections count toward "
					 "mxgate_max_connections"),
	W("postscreen_watchdog_timeout", "every wait of the screen has its own deadline"),
	NONEMPTY("postscreen_command_filter", "the screen does not rewrite SMTP commands"),
	NONEMPTY("postscreen_discard_ehlo_keyword_address_maps", "the screen's EHLO reply "
		 "offers every keyword postscreen offers"),
	W("postscreen_reject_footer", "the screen adds no text to its replies"),
	W("postscreen_reject_footer_maps", "the screen adds no text to its replies"),
	W("postscreen_expansion_filter", "the screen adds no text to its replies"),
	TLS_LEVEL("postscreen_tls_security_level", "|none",
		  "the screen does not offer STARTTLS: clients could not encrypt",
		  "the screen does not offer STARTTLS: clients send in plaintext, which "
		  "\"may\" allows"),
	YES("postscreen_use_tls", "the screen does not offer STARTTLS"),
	YES("postscreen_enforce_tls", "the screen does not offer STARTTLS: mail would be "
				      "accepted in plaintext"),
	W("postscreen_greet_enable", "Postfix 2.8's test switch: a non-empty "
				     "postscreen_greet_banner runs the pregreet test"),
	W("postscreen_dnsbl_enable", "Postfix 2.8's test switch: a non-empty "
				     "postscreen_dnsbl_sites runs the DNSBL test"),
	ALWAYS("postscreen_*", "a postscreen parameter mxgate's screen does not implement"),
	NONEMPTY("smtpd_command_filter", "mxgate does not rewrite SMTP commands"),
	NONEMPTY("smtpd_discard_ehlo_keyword_address_maps", "mxgate offers the same EHLO "
							    "keywords to every client "
							    "(smtpd_discard_ehlo_keywords)"),
	NONEMPTY("smtpd_authorized_verp_clients", "mxgate does not accept XVERP"),
	NONEMPTY("authorized_verp_clients", "mxgate does not accept XVERP"),
	NONEMPTY("smtpd_authorized_xforward_hosts", "mxgate does not accept XFORWARD"),
	NOT_IN("smtpd_relay_before_recipient_restrictions", "yes|${{$compatibility_level} "
		"<level {3.6} ? {no} : {yes}}", "mxgate evaluates smtpd_relay_restrictions "
						"before smtpd_recipient_restrictions"),
	NOT_IN("smtpd_forbid_bare_newline_reject_code", "550", "mxgate rejects a bare <LF> "
							       "with 550"),
	NOT_IN("allow_untrusted_routing", "no", "mxgate never relays sender-specified routes "
						"(user@domain@domain, %, !) for untrusted "
						"clients"),
	YES("strict_7bit_headers", "mxgate does not reject 8-bit headers"),
	YES("strict_8bitmime", "mxgate does not reject 8-bit content"),
	YES("strict_8bitmime_body", "mxgate does not reject 8-bit content"),
	YES("strict_smtputf8", "mxgate does not reject UTF-8 envelopes without SMTPUTF8"),
	NONEMPTY("strict_mime_encoding_domain", "mxgate does not reject mail by its MIME "
						"encoding"),
	W("smtpd_forbidden_commands", "mxgate closes the session on CONNECT, GET, POST and "
				      "commands that do not start with a letter (Postfix's "
				      "default)"),
	W("smtpd_reject_footer", "mxgate adds no text to its replies"),
	W("smtpd_reject_footer_maps", "mxgate adds no text to its replies"),
	W("smtpd_noop_commands", "mxgate answers NOOP only"),
	W("smtpd_etrn_restrictions", "mxgate keeps no deferred queue for ETRN"),
	W("smtpd_delay_open_until_valid_rcpt", "mxgate opens no queue file per session"),
	W("smtpd_dns_reply_filter", "mxgate applies no filter to DNS replies"),
	W("smtpd_expansion_filter", "mxgate's reply texts have their own character rules"),
	W("smtpd_history_flush_threshold", "mxgate sends no postmaster notices"),
	W("smtpd_log_access_permit_actions", NO_LOG),
	W("smtpd_client_port_logging", NO_LOG),
	W("smtpd_service_name", NO_DAEMON),
	W("local_login_sender_maps", "applies to locally submitted mail"),
	W("empty_address_local_login_sender_maps_lookup_key", "applies to locally submitted "
							      "mail"),
	W("permit_mx_backup_networks", REFUSED_RESTRICTION),
	W("maps_rbl_domains", REFUSED_RESTRICTION),
	W("address_verify_*", REFUSED_RESTRICTION),
	W("unverified_*", REFUSED_RESTRICTION),
	W("unknown_virtual_alias_reject_code", "used only with virtual aliases, which are "
					       "refused"),
	W("unknown_virtual_mailbox_reject_code", "used only with virtual mailboxes, which "
						 "are refused"),
	W("show_user_unknown_table_name", "mxgate's reply to an unknown user names no table"),
	W("mynetworks_style", "mxgate computes no networks: mynetworks is loopback unless "
			      "set (fewer clients are trusted, never more)"),
	W("inet_interfaces", "mxgate listens where mxgate_listen or mxgate_master_file say"),
	W("inet_protocols", "mxgate listens where mxgate_listen or mxgate_master_file say"),
	W("proxy_interfaces", "mxgate listens where mxgate_listen or mxgate_master_file say"),
	W("known_tcp_ports", "mxgate takes service ports from /etc/services"),
	W("qmqpd_*", "mxgate does not accept QMQP"),

	/* --- TLS ------------------------------------------------------------------------ */
	/* The server's TLS is implemented (mgmt/tls_conf.c): the security level, wrappermode,
	 * certificates, protocols, ciphers, log level, Received: and the timeouts are known
	 * parameters. What follows is what it does not do. */
	NONEMPTY("smtpd_tls_dcert_file", "mxgate has no DSA certificates (OpenSSL 3 and "
					 "Postfix 3.7 deprecate them): use RSA or ECDSA"),
	W("smtpd_tls_dkey_file", "used only with smtpd_tls_dcert_file, which is refused"),
	NOT_IN("smtpd_tls_eecdh_grade", "auto", "mxgate offers OpenSSL's default key-exchange "
						"groups (Postfix's \"auto\"); another grade would "
						"not apply"),
	NOT_IN("tls_high_cipherlist", "aNULL:-aNULL:HIGH:@STRENGTH",
	       "mxgate's cipher grades are Postfix's default lists"),
	NOT_IN("tls_medium_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
	       "mxgate's cipher grades are Postfix's default lists"),
	NOT_IN("tls_low_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
	       "mxgate's cipher grades are Postfix's default lists"),
	NOT_IN("tls_export_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
	       "mxgate's cipher grades are Postfix's default lists"),
	NOT_IN("tls_null_cipherlist", "eNULL:!aNULL",
	       "mxgate's cipher grades are Postfix's default lists"),
	NONEMPTY("tls_ssl_options", "mxgate sets no extra OpenSSL options: they would not "
				    "apply"),
	NOT_IN("tls_session_ticket_cipher", "aes-256-cbc", "mxgate's session tickets are "
							   "encrypted with aes-256-cbc"),
	W("smtpd_tls_CApath", "mxgate verifies client certificates against "
			      "smtpd_tls_CAfile only: certificates of these CAs are not "
			      "trusted"),
	W("smtpd_tls_session_cache_database", "mxgate resumes TLS sessions with tickets "
					      "whose keys every worker shares; it keeps no "
					      "session cache database"),
	W("smtpd_tls_always_issue_session_ids", "mxgate resumes TLS sessions with tickets "
						"only"),
	W("smtpd_tls_dh1024_param_file", "mxgate uses OpenSSL's built-in (RFC 7919) DH "
					 "groups"),
	W("smtpd_tls_dh512_param_file", "mxgate uses OpenSSL's built-in (RFC 7919) DH "
					"groups"),
	W("smtpd_tls_*", "a TLS setting of Postfix's SMTP server that mxgate does not read"),
	TLS_LEVEL("smtp_tls_security_level", "|none",
		  "the relay does not encrypt: mail would go out in plaintext",
		  "the relay does not encrypt yet: mail goes out in plaintext, which \"may\" "
		  "allows"),
	TLS_LEVEL("lmtp_tls_security_level", "|none",
		  "the relay does not encrypt: mail would go out in plaintext",
		  "the relay does not encrypt yet: mail goes out in plaintext, which \"may\" "
		  "allows"),
	YES("smtp_enforce_tls", "the relay does not encrypt: mail would go out in plaintext"),
	YES("lmtp_enforce_tls", "the relay does not encrypt: mail would go out in plaintext"),
	{ .name = "smtp_use_tls", .pred = MX_REFUSED_NOT_IN, .harmless = "no", .warn = "yes",
	  .warn_why = "the relay does not encrypt yet: mail goes out in plaintext",
	  .why = "the relay does not encrypt" },
	{ .name = "lmtp_use_tls", .pred = MX_REFUSED_NOT_IN, .harmless = "no", .warn = "yes",
	  .warn_why = "the relay does not encrypt yet: mail goes out in plaintext",
	  .why = "the relay does not encrypt" },
	YES("smtp_tls_wrappermode", "the relay does not encrypt: mail would go out in "
				    "plaintext"),
	YES("lmtp_tls_wrappermode", "the relay does not encrypt: mail would go out in "
				    "plaintext"),
	NONEMPTY("smtp_tls_policy_maps", "the relay does not encrypt: per-destination TLS "
					 "policy would not apply"),
	NONEMPTY("lmtp_tls_policy_maps", "the relay does not encrypt: per-destination TLS "
					 "policy would not apply"),
	NONEMPTY("smtp_tls_per_site", "the relay does not encrypt: per-destination TLS "
				      "policy would not apply"),
	NONEMPTY("lmtp_tls_per_site", "the relay does not encrypt: per-destination TLS "
				      "policy would not apply"),
	W("smtp_tls_*", NO_TLS_YET),
	W("lmtp_tls_*", NO_TLS_YET),
	W("tls_*", "a setting of Postfix's TLS library that mxgate does not read (it uses "
		   "OpenSSL's defaults; its TLS settings are the smtpd_tls_* parameters)"),
	W("tlsproxy_*", NO_DAEMON),
	W("tlsmgr_service_name", NO_DAEMON),
	W("openssl_path", NO_DAEMON),

	/* --- SASL ----------------------------------------------------------------------- */
	YES("smtp_sasl_auth_enable", "the relay does not authenticate to the next hop"),
	YES("lmtp_sasl_auth_enable", "the relay does not authenticate to the next hop"),
	W("smtp_sasl_*", "used only with smtp_sasl_auth_enable, which is refused"),
	W("lmtp_sasl_*", "used only with lmtp_sasl_auth_enable, which is refused"),
	W("smtp_sender_dependent_authentication", "used only with smtp_sasl_auth_enable"),
	W("lmtp_sender_dependent_authentication", "used only with lmtp_sasl_auth_enable"),
	W("cyrus_sasl_config_path", CYRUS_ONLY),
	W("send_cyrus_sasl_authzid", CYRUS_ONLY),

	/* --- The relay client's tuning --------------------------------------------------- */
	W("smtp_*", NO_RELAY_TUNING),
	W("lmtp_*", NO_RELAY_TUNING),
	W("default_*", NO_QMGR),
	W("*_destination_concurrency_limit", NO_TRANSPORT),
	W("*_destination_concurrency_failed_cohort_limit", NO_TRANSPORT),
	W("*_destination_concurrency_negative_feedback", NO_TRANSPORT),
	W("*_destination_concurrency_positive_feedback", NO_TRANSPORT),
	W("*_destination_rate_delay", NO_TRANSPORT),
	W("*_destination_recipient_limit", NO_TRANSPORT),
	W("*_initial_destination_concurrency", NO_TRANSPORT),
	W("*_extra_recipient_limit", NO_TRANSPORT),
	W("*_minimum_delivery_slots", NO_TRANSPORT),
	W("*_recipient_limit", NO_TRANSPORT),
	W("*_recipient_refill_limit", NO_TRANSPORT),
	W("*_recipient_refill_delay", NO_TRANSPORT),
	W("*_delivery_slot_cost", NO_TRANSPORT),
	W("*_delivery_slot_discount", NO_TRANSPORT),
	W("*_delivery_slot_loan", NO_TRANSPORT),
	W("*_transport_rate_delay", NO_TRANSPORT),
	W("*_time_limit", NO_TRANSPORT),
	W("*_delivery_status_filter", NO_TRANSPORT),
	W("qmgr_*", NO_QMGR),
	W("initial_destination_concurrency", NO_QMGR),
	W("destination_concurrency_feedback_debug", NO_QMGR),
	W("transport_retry_time", NO_QMGR),
	W("delay_warning_time", "mxgate sends no delay notices"),
	W("connection_cache_*", NO_DAEMON),

	/* --- Notices to the postmaster and bounces --------------------------------------- */
	W("bounce_notice_recipient", "mxgate sends no postmaster notices"),
	W("2bounce_notice_recipient", "mxgate sends no postmaster notices"),
	W("delay_notice_recipient", "mxgate sends no postmaster notices"),
	W("error_notice_recipient", "mxgate sends no postmaster notices"),
	W("notify_classes", "mxgate sends no postmaster notices"),
	W("bounce_template_file", "mxgate's delivery status notifications have a fixed text"),
	W("backwards_bounce_logfile_compatibility", NO_DAEMON),
	W("double_bounce_sender", "mxgate drops a bounce that cannot be delivered"),
	W("empty_address_recipient", "mxgate drops a bounce that cannot be delivered"),
	W("enable_threaded_bounces", "mxgate's bounces are never threaded"),
	W("disable_verp_bounces", "mxgate does not accept XVERP"),
	W("default_verp_delimiters", "mxgate does not accept XVERP"),
	W("verp_delimiter_filter", "mxgate does not accept XVERP"),

	/* --- Local delivery and aliases --------------------------------------------------- */
	W("biff", NO_LOCAL),
	W("alias_maps", NO_LOCAL),
	W("alias_database", NO_LOCAL),
	W("allow_mail_to_commands", NO_LOCAL),
	W("allow_mail_to_files", NO_LOCAL),
	W("allow_min_user", NO_LOCAL),
	W("command_directory", NO_DAEMON),
	W("command_execution_directory", NO_LOCAL),
	W("command_expansion_filter", NO_LOCAL),
	W("command_time_limit", NO_LOCAL),
	W("execution_directory_expansion_filter", NO_LOCAL),
	W("expand_owner_alias", NO_LOCAL),
	W("forward_expansion_filter", NO_LOCAL),
	W("forward_path", NO_LOCAL),
	W("frozen_delivered_to", NO_LOCAL),
	W("home_mailbox", NO_LOCAL),
	W("local_*", NO_LOCAL),
	W("mail_spool_directory", NO_LOCAL),
	W("mailbox_*", NO_LOCAL),
	W("owner_request_special", NO_LOCAL),
	W("prepend_delivered_header", NO_LOCAL),
	W("require_home_directory", NO_LOCAL),
	W("reset_owner_alias", NO_LOCAL),
	W("strict_mailbox_ownership", NO_LOCAL),
	W("sun_mailtool_compatibility", NO_LOCAL),
	W("deliver_lock_attempts", NO_LOCAL),
	W("deliver_lock_delay", NO_LOCAL),
	W("stale_lock_time", NO_LOCAL),
	W("sendmail_fix_line_endings", NO_LOCAL),
	W("authorized_submit_users", "mxgate accepts no local submissions"),
	W("authorized_mailq_users", NO_DAEMON),
	W("authorized_flush_users", NO_DAEMON),
	W("fast_flush_*", "mxgate keeps no deferred queue for ETRN"),

	/* --- Postfix's own daemons, programs, files and logs ------------------------------ */
	W("alternate_config_directories", NO_DAEMON),
	W("application_event_drain_time", NO_DAEMON),
	W("berkeley_db_*", NO_DAEMON),
	W("config_directory", NO_DAEMON),
	W("confirm_delay_cleared", NO_DAEMON),
	W("daemon_*", NO_DAEMON),
	W("debug_peer_level", NO_LOG),
	W("debug_peer_list", NO_LOG),
	W("debugger_command", NO_DAEMON),
	W("delay_logging_resolution_limit", NO_LOG),
	W("disable_dns_lookups", NO_DNS),
	W("dns_ncache_ttl_fix_enable", NO_DNS),
	W("dnssec_probe", NO_DNS),
	W("dnsblog_*", NO_DNS),
	W("ignore_mx_lookup_error", NO_DNS),
	W("dont_remove", NO_DAEMON),
	W("duplicate_filter_limit", NO_LOCAL),
	W("enable_idna2003_compatibility", "mxgate compares domain names as written"),
	W("enable_long_queue_ids", NO_DAEMON),
	W("export_environment", NO_DAEMON),
	W("import_environment", NO_DAEMON),
	W("fault_injection_code", NO_DAEMON),
	W("fork_attempts", NO_DAEMON),
	W("fork_delay", NO_DAEMON),
	W("hash_queue_depth", NO_DAEMON),
	W("hash_queue_names", NO_DAEMON),
	W("helpful_warnings", NO_LOG),
	W("html_directory", NO_DAEMON),
	W("in_flow_delay", NO_DAEMON),
	W("info_log_address_format", NO_LOG),
	W("ipc_*", NO_DAEMON),
	W("lmdb_map_size", "mxgate's tables live in mxgate_table_directory"),
	W("default_database_type", "mxgate's tables live in mxgate_table_directory"),
	W("mail_release_date", NO_DAEMON),
	W("mail_version", NO_DAEMON),
	W("mailq_path", NO_DAEMON),
	W("maillog_file_*", NO_LOG),
	W("manpage_directory", NO_DAEMON),
	W("max_idle", NO_DAEMON),
	W("max_use", NO_DAEMON),
	W("meta_directory", NO_DAEMON),
	W("multi_instance_*", NO_DAEMON),
	W("newaliases_path", NO_DAEMON),
	W("postlogd_watchdog_timeout", NO_LOG),
	W("postmulti_*", NO_DAEMON),
	W("process_id", NO_DAEMON),
	W("process_id_directory", NO_DAEMON),
	W("process_name", NO_DAEMON),
	W("proxy_read_maps", NO_DAEMON),
	W("proxy_write_maps", NO_DAEMON),
	W("queue_file_attribute_count_limit", NO_DAEMON),
	W("queue_minfree", "mxgate's spool limit is mxgate_spool_quota"),
	W("readme_directory", NO_DAEMON),
	W("respectful_logging", NO_LOG),
	W("sample_directory", NO_DAEMON),
	W("sendmail_path", NO_DAEMON),
	W("service_name", NO_DAEMON),
	W("service_throttle_time", NO_DAEMON),
	W("setgid_group", NO_DAEMON),
	W("shlib_directory", NO_DAEMON),
	W("tcp_windowsize", NO_DAEMON),
	W("trigger_timeout", NO_DAEMON),
	W("*_service_name", NO_DAEMON),
};

const size_t mx_refused_count = sizeof(mx_refused) / sizeof(mx_refused[0]);

static bool mx_refused_matches(const char *pattern, const char *name, size_t *specificity)
{
	size_t pl = strlen(pattern), nl = strlen(name);
	if (pl && pattern[pl - 1] == '*') {
		*specificity = pl - 1;
		return nl >= pl - 1 && strncmp(name, pattern, pl - 1) == 0;
	}
	if (pattern[0] == '*') {
		*specificity = pl - 1;
		return nl >= pl - 1 && strcmp(name + nl - (pl - 1), pattern + 1) == 0;
	}
	*specificity = SIZE_MAX;
	return strcmp(pattern, name) == 0;
}

const struct mx_refused_def *mx_refused_find(const char *name)
{
	const struct mx_refused_def *best = NULL;
	size_t best_spec = 0;
	for (size_t i = 0; i < mx_refused_count; i++) {
		size_t spec;
		if (mx_refused_matches(mx_refused[i].name, name, &spec) &&
		    (!best || spec > best_spec)) {
			best = &mx_refused[i];
			best_spec = spec;
		}
	}
	return best;
}

/* Is `value` one of the |-separated `list` (any case; an empty item is the empty value)? */
static bool mx_refused_in(const char *list, const char *value)
{
	if (!list)
		return false;
	size_t vl = strlen(value);
	for (const char *p = list;;) {
		size_t n = strcspn(p, "|");
		if (n == vl && strncasecmp(p, value, n) == 0)
			return true;
		if (!p[n])
			return false;
		p += n + 1;
	}
}

enum mx_refused_verdict mx_refused_judge(const struct mx_refused_def *row, const char *value)
{
	if (row->warn && mx_refused_in(row->warn, value))
		return MX_REFUSED_WARN;
	switch (row->pred) {
	case MX_REFUSED_NEVER:
		return MX_REFUSED_WARN;
	case MX_REFUSED_NONEMPTY:
		return *value ? MX_REFUSED_REFUSE : MX_REFUSED_OK;
	case MX_REFUSED_YES:
		return strcasecmp(value, "yes") == 0 ? MX_REFUSED_REFUSE : MX_REFUSED_OK;
	case MX_REFUSED_NONZERO: {
		/* Postfix reads these with mail_conf_int(): "0", "00" are zero; anything
		 * else (a limit, or a value Postfix itself would refuse) is not. */
		size_t n = strspn(value, "0");
		return n > 0 && value[n] == '\0' ? MX_REFUSED_OK : MX_REFUSED_REFUSE;
	}
	case MX_REFUSED_ALWAYS:
		return MX_REFUSED_REFUSE;
	case MX_REFUSED_NOT_IN:
		return mx_refused_in(row->harmless, value) ? MX_REFUSED_OK : MX_REFUSED_REFUSE;
	case MX_REFUSED_PRED_MAX:
		break;
	}
	return MX_REFUSED_REFUSE;
}

void cfg_check_refused(struct cfg_ctx *c, bool over_only)
{
	for (size_t v = 0; v < c->nvars; v++) {
		struct cfg_var *var = &c->vars[v];
		if (!var->line || var->def || (over_only && var->line <= CFG_OVER_BASE))
			continue;
		const struct mx_refused_def *row = mx_refused_find(var->name);
		if (!row)
			continue;
		var->classified = true;
		const char *value = var->raw ? var->raw : "";
		if (row->pred != MX_REFUSED_NEVER && row->pred != MX_REFUSED_ALWAYS &&
		    strchr(value, '$')) {
			value = cfg_resolve(c, v);
			if (!value)
				continue; /* the expansion error is reported */
			var = &c->vars[v]; /* expanding may have moved the vars */
		}
		switch (mx_refused_judge(row, value)) {
		case MX_REFUSED_OK:
			break;
		case MX_REFUSED_WARN:
			if (row->pred != MX_REFUSED_NEVER)
				cfg_diag_add(c, var->line, true, "%s = %.*s%s: %s", var->name,
					     CFG_SHOW(value), row->warn_why);
			else if (!var->used) /* a name in use is the operator's own */
				cfg_diag_add(c, var->line, true,
					     "%s: not implemented by mxgate, ignored: %s", var->name,
					     row->why);
			break;
		case MX_REFUSED_REFUSE:
			cfg_diag_add(c, var->line, false, "%s: not implemented by mxgate: %s",
				     var->name, row->why);
			break;
		case MX_REFUSED_VERDICT_MAX:
			break;
		}
	}
}
