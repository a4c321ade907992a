/* Evaluating the restriction lists as Postfix 3.7's smtpd_check.c does: the stage drivers
 * (which lists run at which command, in Postfix's order, and smtpd_delay_reject),
 * generic_checks() over a list or class with warn_if_reject and defer_if_permit /
 * defer_if_reject, one restriction at a time, and the built-in checks of names and
 * addresses (HELO syntax, FQDN, relay authorization, recipient maps). A restriction that
 * waits for an answer stops the run (ST_PENDING); smtp_policy_check() then drops what the
 * run buffered and returns PENDING, and the caller's next call replays the stage from its
 * start (see smtp_restrictions.h). Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions_internal.h"

/* ---------------------------------------------------------------------------------------
 * Name and address checks */

/* Postfix's valid_hostname(): labels of letters, digits, '-' and '_', no label starts or
 * ends with '-', at most 63 octets per label and 255 in all, and not all-numeric. */
bool smtp_policy_valid_hostname(const char *name, size_t len)
{
	if (len == 0 || len > 255)
		return false;
	size_t label = 0;
	bool non_numeric = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (mx_ctype_is_digit(c)) {
			label++;
		} else if (mx_ctype_is_alpha(c)) {
			label++;
			non_numeric = true;
		} else if (c == '-' || c == '_') {
			if (label == 0 && c == '-')
				return false;
			label++;
			non_numeric = true;
		} else {
			return false;
		}
		if (label > 63)
			return false;
	}
	if (label == 0 || name[len - 1] == '-')
		return false;
	return non_numeric;
}

bool smtp_policy_valid_hostaddr(const char *s)
{
	struct mx_inet_addr a;
	return mx_inet_parse(s, &a);
}

static bool valid_hostaddr(const char *s)
{
	struct mx_inet_addr a;
	if (strncasecmp(s, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, s + 5, a.bytes) == 1;
	return mx_inet_parse(s, &a);
}

/* Truncate a name ending in one dot (not two): Postfix's dup_if_truncate(). */
static size_t truncated_len(const char *s)
{
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '.' && s[n - 2] != '.')
		n--;
	return n;
}

static int reject_invalid_hostaddr(struct ev *e, const char *addr, const char *rn,
				   const char *rc)
{
	char tmp[300];
	size_t n = strlen(addr);
	if (addr[0] == '[' && n > 2 && addr[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, addr + 1, n - 2);
		tmp[n - 2] = '\0';
	} else {
		smtp_policy_scopy(tmp, sizeof(tmp), addr);
	}
	/* valid_mailhost_addr(): IPv4, or IPv6 with the "IPv6:" tag (RFC 5321 4.1.3). */
	struct mx_inet_addr a;
	bool ok = strncasecmp(tmp, "IPv6:", 5) == 0 ? inet_pton(AF_INET6, tmp + 5, a.bytes) == 1
						    : inet_pton(AF_INET, tmp, a.bytes) == 1;
	if (!ok)
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.invalid_hostname_reject_code,
					  "5.5.2", "<%s>: %s rejected: invalid ip address", rn, rc);
	return ST_DUNNO;
}

static int reject_invalid_hostname(struct ev *e, const char *name, const char *rn,
				   const char *rc)
{
	size_t n = truncated_len(name);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 299 ? n : 299), name);
	if (!smtp_policy_valid_hostname(name, n) && (n >= sizeof(tmp) || !valid_hostaddr(tmp)))
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.invalid_hostname_reject_code,
					  "5.5.2", "<%s>: %s rejected: Invalid name", rn, rc);
	return ST_DUNNO;
}

static int reject_non_fqdn_hostname(struct ev *e, const char *name, const char *rn,
				    const char *rc)
{
	size_t n = truncated_len(name);
	if (!smtp_policy_valid_hostname(name, n) || !memchr(name, '.', n))
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.non_fqdn_reject_code, "5.5.2",
					  "<%s>: %s rejected: need fully-qualified hostname", rn,
					  rc);
	return ST_DUNNO;
}

static int reject_non_fqdn_address(struct ev *e, const char *addr, const char *rn,
				   const char *rc)
{
	const char *at = strrchr(addr, '@');
	const char *dom = at ? at + 1 : "";
	size_t dl = strlen(dom);
	if (dom[0] == '[' && dom[dl - 1] == ']')
		return ST_DUNNO;
	size_t n = truncated_len(dom);
	if (!*dom || !smtp_policy_valid_hostname(dom, n) || !memchr(dom, '.', n))
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.non_fqdn_reject_code, "4.5.2",
					  "<%s>: %s rejected: need fully-qualified address", rn,
					  rc);
	return ST_DUNNO;
}

/* The domain of an address as trivial-rewrite would resolve it: after the last '@',
 * else $myorigin; one trailing dot dropped. */
struct mx_span smtp_policy_addr_domain(const struct ev *e, const char *addr)
{
	const char *at = strrchr(addr, '@');
	struct mx_span d = at ? mx_span_cstr(at + 1) : mx_span_cstr(e->p->myorigin);
	if (d.len > 1 && d.ptr[d.len - 1] == '.')
		d.len--;
	return d;
}

enum addr_class { AC_DEFAULT, AC_LOCAL, AC_RELAY };

static enum addr_class addr_class_of(const struct ev *e, const char *addr)
{
	struct mx_span d = smtp_policy_addr_domain(e, addr);
	if (d.len && e->p->mydestination && domain_list_match(e->p->mydestination, d))
		return AC_LOCAL;
	if (d.len && e->p->relay_domains && domain_list_match(e->p->relay_domains, d))
		return AC_RELAY;
	return AC_DEFAULT;
}

bool smtp_policy_addr_is_local(const struct ev *e, const char *addr)
{
	return addr_class_of(e, addr) == AC_LOCAL;
}

/* Postfix's permit_auth_destination(): final delivery here (mydestination) or a relay
 * domain. A source-routed address (user%host@, host!user@ or "a@b"@) is never authorized
 * (allow_untrusted_routing = no). */
bool smtp_policy_auth_destination(const struct ev *e, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	size_t ll = at ? (size_t)(at - rcpt) : strlen(rcpt);
	for (size_t i = 0; i < ll; i++)
		if (rcpt[i] == '%' || rcpt[i] == '!' || rcpt[i] == '@')
			return false;
	return addr_class_of(e, rcpt) != AC_DEFAULT;
}

/* mail_addr_find() over the tables of a recipient map list: the address, the address
 * without its extension, then "@domain"; a local address also by its local part. Returns
 * 1 found, 0 not, <0 error. */
static int maps_find_addr(struct ev *e, const uint32_t *idx, size_t n, const char *addr,
			  bool local)
{
	char key[TABLE_KEY_MAX + 2];
	char *val = e->ctx->lookup[0];
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : strlen(addr);
	size_t base = table_access_split(addr, ll, e->p->recipient_delimiter);
	for (size_t i = 0; i < n; i++) {
		struct table *t = e->ctx->tables[idx[i]];
		int rc;
		const char *keys[5];
		size_t nk = 0;
		char k2[TABLE_KEY_MAX + 2], k3[TABLE_KEY_MAX + 2], k4[TABLE_KEY_MAX + 2],
			k5[TABLE_KEY_MAX + 2];
		if (strlen(addr) > TABLE_KEY_MAX)
			continue;
		keys[nk++] = addr;
		if (base) {
			snprintf(k2, sizeof(k2), "%.*s%s", (int)base, addr, at ? at : "");
			keys[nk++] = k2;
		}
		if (at) {
			smtp_policy_scopy(k3, sizeof(k3), at);
			keys[nk++] = k3;
		}
		if (local) {
			snprintf(k4, sizeof(k4), "%.*s", (int)ll, addr);
			keys[nk++] = k4;
			if (base) {
				snprintf(k5, sizeof(k5), "%.*s", (int)base, addr);
				keys[nk++] = k5;
			}
		}
		for (size_t k = 0; k < nk; k++) {
			smtp_policy_scopy(key, sizeof(key), keys[k]);
			rc = table_lookup(t, key, val, TABLE_VALUE_MAX + 1);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Postfix's check_rcpt_maps() for the classes mxgate has: local (mydestination,
 * local_recipient_maps) and relay (relay_domains, relay_recipient_maps). */
static int check_rcpt_maps(struct ev *e, const char *addr, const char *cls)
{
	bool snd = strcmp(cls, NAME_SENDER) == 0;
	enum addr_class ac = addr_class_of(e, addr);
	const char *dsn = snd ? "5.1.0" : "5.1.1";
	if (ac == AC_LOCAL && e->p->nlocal_maps) {
		/* postmaster, MAILER-DAEMON and double-bounce always exist (qmgr and bounce
		 * absorb or generate them) */
		static const char *const always[] = { "postmaster", "mailer-daemon",
						      "double-bounce" };
		const char *at = strrchr(addr, '@');
		size_t ll = at ? (size_t)(at - addr) : strlen(addr);
		for (size_t i = 0; i < COUNT(always); i++)
			if (strlen(always[i]) == ll && strncasecmp(addr, always[i], ll) == 0)
				return ST_DUNNO;
		int rc = maps_find_addr(e, e->p->local_maps, e->p->nlocal_maps, addr, true);
		if (rc < 0)
			return smtp_policy_server_error(e, "local_recipient_maps lookup error");
		if (rc == 0)
			return smtp_policy_reject(
				e, EC_BOUNCE, e->p->codes.unknown_local_recipient_reject_code, dsn,
				"<%s>: %s rejected: User unknown in local recipient table", addr, cls);
	} else if (ac == AC_RELAY && e->p->nrelay_maps) {
		int rc = maps_find_addr(e, e->p->relay_maps, e->p->nrelay_maps, addr, false);
		if (rc < 0)
			return smtp_policy_server_error(e, "relay_recipient_maps lookup error");
		if (rc == 0)
			return smtp_policy_reject(
				e, EC_BOUNCE, e->p->codes.unknown_relay_recipient_reject_code, dsn,
				"<%s>: %s rejected: User unknown in relay recipient table", addr, cls);
	}
	return ST_DUNNO;
}

static int check_recipient_rcpt_maps(struct ev *e, const char *rcpt)
{
	if (e->rcpt_checked)
		return ST_DUNNO;
	if (!e->warn_if_reject)
		e->rcpt_checked = true;
	return check_rcpt_maps(e, rcpt, NAME_RECIPIENT);
}

static int check_sender_rcpt_maps(struct ev *e, const char *sender)
{
	if (e->sender_checked)
		return ST_DUNNO;
	if (!e->warn_if_reject)
		e->sender_checked = true;
	return check_rcpt_maps(e, sender, NAME_SENDER);
}

/* ---------------------------------------------------------------------------------------
 * generic_checks */

/* smtpd_sender_login_maps: the owners of sender (mail_addr_find() order: the address,
 * without its extension, @domain, and the local part for local domains), comma or blank
 * separated. Returns 1 with the list in e->ctx->lookup[0], 0 when none, <0 error. */
static int login_owners(struct ev *e, const char *sender)
{
	if (!e->p->nlogin_maps)
		return 0;
	return maps_find_addr(e, e->p->login_maps, e->p->nlogin_maps, sender,
			      addr_class_of(e, sender) == AC_LOCAL);
}

/* Postfix's reject_auth_sender_login_mismatch(): a logged-in client must own the sender;
 * allow_unknown: a sender nobody owns passes (reject_known_sender_login_mismatch). */
static int auth_login_mismatch(struct ev *e, const char *sender, bool allow_unknown)
{
	const char *user = e->req->sasl_username;
	if (!e->p->nlogin_maps || !user)
		return ST_DUNNO;
	int rc = login_owners(e, sender);
	if (rc < 0)
		return smtp_policy_server_error(e, "smtpd_sender_login_maps lookup error");
	if (rc == 0 && allow_unknown)
		return ST_DUNNO;
	if (rc > 0) {
		/* a copy: the owners list may be long and the buffer is reused */
		char owners[TABLE_VALUE_MAX + 1];
		smtp_policy_scopy(owners, sizeof(owners), e->ctx->lookup[0]);
		char *save = NULL;
		for (char *w = strtok_r(owners, ", \t\r\n", &save); w;
		     w = strtok_r(NULL, ", \t\r\n", &save))
			if (strcasecmp(w, user) == 0) {
				snprintf(e->detail, sizeof(e->detail), "%s is owned by %s", sender, w);
				return ST_DUNNO;
			}
	}
	return smtp_policy_reject(e, EC_POLICY, 553, "5.7.1",
				  "<%s>: Sender address rejected: not owned by user %s", sender,
				  user);
}

/* reject_unauth_sender_login_mismatch(): a client that is not logged in may not use a
 * sender that someone owns. */
static int unauth_login_mismatch(struct ev *e, const char *sender)
{
	if (!e->p->nlogin_maps || e->req->sasl_username)
		return ST_DUNNO;
	int rc = login_owners(e, sender);
	if (rc < 0)
		return smtp_policy_server_error(e, "smtpd_sender_login_maps lookup error");
	if (rc == 0)
		return ST_DUNNO;
	return smtp_policy_reject(e, EC_POLICY, 553, "5.7.1",
				  "<%s>: Sender address rejected: not logged in", sender);
}

/* check_sasl_access and the sender login restrictions (smtpd_check.c): nothing without
 * smtpd_sasl_auth_enable (and Postfix's warning), nothing for the null sender. */
static int sasl_checks(struct ev *e, int id, uint32_t arg, const char *rn, int def_acl)
{
	if (!e->p->sasl_enabled) {
		smtp_policy_warn(e, "restriction `%s' ignored: no SASL support",
				 smtp_restriction_id_name((enum smtp_restriction_id)id));
		return ST_DUNNO;
	}
	const char *user = e->req->sasl_username;
	if (id == R_CHECK_SASL_ACCESS) {
		if (!user || !user[0])
			return ST_DUNNO;
		/* the reply names the login: "<bob>: SASL login name rejected: ..." */
		(void)rn;
		return smtp_policy_access_key(e, arg, user, user, NAME_SASL_USER, def_acl);
	}
	const char *snd = e->sender;
	if (!snd || !snd[0])
		return ST_DUNNO;
	int st;
	switch (id) {
	case R_REJECT_SENDER_LOGIN_MISMATCH:
		/* Postfix's built-in class of the two below */
		st = auth_login_mismatch(e, snd, false);
		return st != ST_DUNNO ? st : unauth_login_mismatch(e, snd);
	case R_REJECT_AUTH_SENDER_LOGIN_MISMATCH:
		return auth_login_mismatch(e, snd, false);
	case R_REJECT_KNOWN_SENDER_LOGIN_MISMATCH:
		return user ? auth_login_mismatch(e, snd, true) : unauth_login_mismatch(e, snd);
	default:
		return unauth_login_mismatch(e, snd);
	}
}

static void item_name(const struct ev *e, const struct pitem *it, char *buf, size_t cap)
{
	const char *n = smtp_restriction_id_name((enum smtp_restriction_id)it->id);
	switch (it->id) {
	case R_IMPLICIT_ACCESS:
		smtp_policy_scopy(buf, cap, e->p->tables[it->arg]);
		return;
	case R_CLASS:
		smtp_policy_scopy(buf, cap, e->p->class_names[it->arg]);
		return;
	case R_CHECK_CLIENT_ACCESS:
	case R_CHECK_REVERSE_CLIENT_ACCESS:
	case R_CHECK_HELO_ACCESS:
	case R_CHECK_SENDER_ACCESS:
	case R_CHECK_RECIPIENT_ACCESS:
	case R_CHECK_CCERT_ACCESS:
		snprintf(buf, cap, "%s %s", n, e->p->tables[it->arg]);
		return;
	case R_CHECK_POLICY_SERVICE:
		snprintf(buf, cap, "%s %s", n, e->p->services[it->arg].s.name);
		return;
	case R_CHECK_SASL_ACCESS:
		snprintf(buf, cap, "%s %s", n, e->p->tables[it->arg]);
		return;
	case R_REJECT_RBL_CLIENT:
	case R_REJECT_RHSBL_CLIENT:
	case R_REJECT_RHSBL_REVERSE_CLIENT:
	case R_REJECT_RHSBL_HELO:
	case R_REJECT_RHSBL_SENDER:
	case R_REJECT_RHSBL_RECIPIENT:
	case R_PERMIT_DNSWL_CLIENT:
	case R_PERMIT_RHSWL_CLIENT:
		snprintf(buf, cap, "%s %s", n, e->p->rbls[it->arg].spec);
		return;
	default:
		if (smtp_policy_is_server_access(it->id))
			snprintf(buf, cap, "%s %s", n, e->p->tables[it->arg]);
		else
			smtp_policy_scopy(buf, cap, n);
	}
}

static bool known(const char *s)
{
	return s && strcasecmp(s, "unknown") != 0;
}

static int eval_item(struct ev *e, const struct pitem *it, const char *rn, const char *rc,
		     int def_acl)
{
	const struct smtp_policy *p = e->p;
	int id = it->id;
	if (id == R_IMPLICIT_ACCESS) {
		if (def_acl < 0)
			return smtp_policy_server_error(e, "specify a check_*_access restriction before a table in this list");
		id = def_acl;
	}
	switch (id) {
	case R_PERMIT:
		return ST_OK;
	case R_REJECT:
		return smtp_policy_reject(e, EC_POLICY, p->codes.reject_code, "5.7.1",
					  "<%s>: %s rejected: Access denied", rn, rc);
	case R_DEFER:
		return smtp_policy_reject(e, EC_POLICY, p->codes.defer_code, "4.3.2",
					  "<%s>: %s rejected: Try again later", rn, rc);
	case R_DEFER_IF_PERMIT:
		return smtp_policy_defer_if(&e->dip, EC_POLICY, 450, "4.7.0",
					    "<%s>: %s rejected: defer_if_permit requested", rn, rc);
	case R_DEFER_IF_REJECT:
		return smtp_policy_defer_if(&e->dir, EC_POLICY, 450, "4.7.0",
					    "<%s>: %s rejected: defer_if_reject requested", rn, rc);
	case R_PERMIT_MYNETWORKS: {
		struct mx_inet_addr a;
		if (p->mynetworks && e->req->client_addr && mx_inet_parse(e->req->client_addr, &a)) {
			struct mx_inet_addr u = mx_inet_unmap(&a);
			if (netlist_match(p->mynetworks, &u))
				return ST_OK;
		}
		e->note = "no match";
		return ST_DUNNO;
	}
	case R_PERMIT_SASL_AUTH:
		/* Postfix's permit_sasl_auth(): only with smtpd_sasl_auth_enable */
		if (!p->sasl_enabled) {
			e->note = "no match (smtpd_sasl_auth_enable = no)";
			return ST_DUNNO;
		}
		if (!e->req->sasl_username || !e->req->sasl_username[0]) {
			e->note = "no match (not authenticated)";
			return ST_DUNNO;
		}
		return ST_OK;
	case R_REJECT_UNAUTH_DEST:
	case R_DEFER_UNAUTH_DEST:
		if (!e->recipient)
			return ST_DUNNO;
		if (smtp_policy_auth_destination(e, e->recipient))
			return ST_DUNNO;
		if (id == R_REJECT_UNAUTH_DEST)
			return smtp_policy_reject(e, EC_POLICY, p->codes.relay_domains_reject_code,
						  "5.7.1", "<%s>: Relay access denied", e->recipient);
		return smtp_policy_reject(e, EC_POLICY, p->codes.relay_domains_reject_code - 100,
					  "4.7.1", "<%s>: Relay access denied", e->recipient);
	case R_PERMIT_AUTH_DEST:
		if (e->recipient && smtp_policy_auth_destination(e, e->recipient))
			return ST_OK;
		return ST_DUNNO;
	case R_REJECT_UNAUTH_PIPELINING:
		if (e->req->unauth_pipelining)
			return smtp_policy_reject(
				e, EC_PROTOCOL, 503, "5.5.0",
				"<%s>: %s rejected: Improper use of SMTP command pipelining", rn, rc);
		return ST_DUNNO;
	case R_REJECT_PLAINTEXT_SESSION:
		/* Postfix's reject_plaintext_session (smtpd_check.c) */
		if (!e->req->tls)
			return smtp_policy_reject(e, EC_POLICY, p->codes.plaintext_reject_code,
						  "4.7.1", "Session encryption is required");
		return ST_DUNNO;
	case R_PERMIT_TLS_ALL_CLIENTCERTS:
	case R_PERMIT_TLS_CLIENTCERTS: {
		/* Postfix 3.7 permit_tls_clientcerts(): all verified certificates, or a
		 * fingerprint (of the certificate, then of its key) in relay_clientcerts,
		 * trusted or not */
		const struct smtp_policy_ccert *cc = e->req->ccert;
		if (!cc) {
			e->note = "no client certificate";
			return ST_DUNNO;
		}
		if (id == R_PERMIT_TLS_ALL_CLIENTCERTS)
			return cc->trusted ? ST_OK : ST_DUNNO;
		const char *prints[2] = { cc->fingerprint, cc->pkey_fingerprint };
		for (int k = 0; k < 2; k++) {
			for (size_t i = 0; prints[k] && i < p->nrelay_ccert_maps; i++) {
				int found = table_lookup(e->ctx->tables[p->relay_ccert_maps[i]],
							 prints[k], e->ctx->lookup[0],
							 TABLE_VALUE_MAX + 1);
				if (found < 0)
					return smtp_policy_server_error(e, "relay_clientcerts lookup "
									   "error");
				if (found > 0) {
					snprintf(e->detail, sizeof(e->detail), "relay_clientcerts: %s",
						 prints[k]);
					return ST_OK;
				}
			}
		}
		e->note = "no match";
		return ST_DUNNO;
	}
	case R_CHECK_CCERT_ACCESS: {
		/* Postfix 3.7 check_ccert_access(): the certificate's fingerprint, then its
		 * public key's, trusted or not */
		const struct smtp_policy_ccert *cc = e->req->ccert;
		if (!cc)
			return ST_DUNNO;
		int st = smtp_policy_access_key(e, it->arg, cc->fingerprint, e->namaddr, NAME_CCERT,
						def_acl);
		if (st != ST_DUNNO)
			return st;
		return smtp_policy_access_key(e, it->arg, cc->pkey_fingerprint, e->namaddr,
					      NAME_CCERT, def_acl);
	}
	case R_REJECT_INVALID_HELO:
		if (!e->helo)
			return ST_DUNNO;
		return e->helo[0] != '['
			       ? reject_invalid_hostname(e, e->helo, e->helo, NAME_HELO)
			       : reject_invalid_hostaddr(e, e->helo, e->helo, NAME_HELO);
	case R_REJECT_NON_FQDN_HELO:
		if (!e->helo)
			return ST_DUNNO;
		return e->helo[0] != '['
			       ? reject_non_fqdn_hostname(e, e->helo, e->helo, NAME_HELO)
			       : reject_invalid_hostaddr(e, e->helo, e->helo, NAME_HELO);
	case R_REJECT_NON_FQDN_SENDER:
		if (e->sender && *e->sender)
			return reject_non_fqdn_address(e, e->sender, e->sender, NAME_SENDER);
		return ST_DUNNO;
	case R_REJECT_NON_FQDN_RCPT:
		if (e->recipient)
			return reject_non_fqdn_address(e, e->recipient, e->recipient, NAME_RECIPIENT);
		return ST_DUNNO;
	case R_REJECT_UNLISTED_RCPT:
		if (e->recipient && *e->recipient)
			return check_recipient_rcpt_maps(e, e->recipient);
		return ST_DUNNO;
	case R_REJECT_UNLISTED_SENDER:
		if (e->sender && *e->sender)
			return check_sender_rcpt_maps(e, e->sender);
		return ST_DUNNO;
	case R_REJECT_MULTI_RCPT_BOUNCE:
		if (e->sender && !*e->sender &&
		    e->req->recipient_count > (e->req->stage != SMTP_STAGE_RCPT ? 1u : 0u))
			return smtp_policy_reject(e, EC_POLICY,
						  p->codes.multi_recipient_bounce_reject_code, "5.5.3",
						  "<%s>: %s rejected: Multi-recipient bounce", rn, rc);
		return ST_DUNNO;
	case R_CHECK_CLIENT_ACCESS:
		return smtp_policy_access_client(e, it->arg, e->req->client_name, e->namaddr,
						 NAME_CLIENT, def_acl);
	case R_CHECK_REVERSE_CLIENT_ACCESS: {
		const char *rev = e->req->reverse_name ? e->req->reverse_name : "unknown";
		int st = smtp_policy_access_client(e, it->arg, rev, rev, NAME_REV_CLIENT, def_acl);
		/* forbid_allowlist(): an unverified name must never allowlist a client. */
		return smtp_policy_forbid_allowlist(e, "check_reverse_client_hostname_access", st,
						    rev);
	}
	case R_CHECK_HELO_ACCESS:
		if (e->helo)
			return smtp_policy_access_domain(e, it->arg, e->helo, e->helo, NAME_HELO,
							 def_acl);
		return ST_DUNNO;
	case R_CHECK_SENDER_ACCESS:
		if (e->sender)
			return smtp_policy_access_address(e, it->arg, e->sender, e->sender,
							  NAME_SENDER, def_acl);
		return ST_DUNNO;
	case R_CHECK_RECIPIENT_ACCESS:
		if (e->recipient)
			return smtp_policy_access_address(e, it->arg, e->recipient, e->recipient,
							  NAME_RECIPIENT, def_acl);
		return ST_DUNNO;
	case R_REJECT_RBL_CLIENT:
		if (!e->req->client_addr)
			return ST_DUNNO;
		return smtp_policy_reject_rbl(e, it->arg, e->req->client_addr, NULL, NAME_CLIENT);
	case R_PERMIT_DNSWL_CLIENT:
		if (!e->req->client_addr)
			return ST_DUNNO;
		return smtp_policy_permit_dnswl(e, it->arg, e->req->client_addr, NULL);
	case R_REJECT_RHSBL_CLIENT:
	case R_REJECT_RHSBL_REVERSE_CLIENT:
	case R_REJECT_RHSBL_HELO:
	case R_REJECT_RHSBL_SENDER:
	case R_REJECT_RHSBL_RECIPIENT:
	case R_PERMIT_RHSWL_CLIENT: {
		const char *what = NULL, *cls = NAME_CLIENT;
		if (id == R_REJECT_RHSBL_CLIENT || id == R_PERMIT_RHSWL_CLIENT)
			what = known(e->req->client_name) ? e->req->client_name : NULL;
		else if (id == R_REJECT_RHSBL_REVERSE_CLIENT)
			what = known(e->req->reverse_name) ? e->req->reverse_name : NULL,
			cls = NAME_REV_CLIENT;
		else if (id == R_REJECT_RHSBL_HELO)
			what = e->helo, cls = NAME_HELO;
		else if (id == R_REJECT_RHSBL_SENDER)
			what = e->sender && *e->sender ? e->sender : NULL, cls = NAME_SENDER;
		else
			what = e->recipient, cls = NAME_RECIPIENT;
		if (!what)
			return ST_DUNNO;
		return smtp_policy_rhsbl(e, it->arg, what, cls, id == R_PERMIT_RHSWL_CLIENT);
	}
	case R_REJECT_UNKNOWN_CLIENT:
		return smtp_policy_unknown_client(e);
	case R_REJECT_UNKNOWN_REVERSE_CLIENT:
		return smtp_policy_unknown_reverse_client(e);
	case R_REJECT_UNKNOWN_HELO:
		if (!e->helo)
			return ST_DUNNO;
		if (e->helo[0] == '[')
			return reject_invalid_hostaddr(e, e->helo, e->helo, NAME_HELO);
		return smtp_policy_unknown_helo(e);
	case R_REJECT_UNKNOWN_SENDER_DOMAIN:
		if (e->sender && *e->sender)
			return smtp_policy_unknown_address(e, e->sender, NAME_SENDER);
		return ST_DUNNO;
	case R_REJECT_UNKNOWN_RCPT_DOMAIN:
		if (e->recipient)
			return smtp_policy_unknown_address(e, e->recipient, NAME_RECIPIENT);
		return ST_DUNNO;
	case R_CHECK_POLICY_SERVICE:
		return smtp_policy_service_check(e, it->arg, rn, rc, def_acl);
	case R_CHECK_SASL_ACCESS:
	case R_REJECT_SENDER_LOGIN_MISMATCH:
	case R_REJECT_AUTH_SENDER_LOGIN_MISMATCH:
	case R_REJECT_KNOWN_SENDER_LOGIN_MISMATCH:
	case R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH:
		return sasl_checks(e, id, it->arg, rn, def_acl);
	case R_CHECK_GREYLIST:
		return smtp_policy_greylist_check(e, rn, rc, def_acl);
	case R_CLASS: {
		const struct plist *c = &p->classes[it->arg];
		if (e->recursion > EVAL_DEPTH_MAX - 1)
			return smtp_policy_server_error(e, "restriction class causes unreasonable recursion");
		int st = smtp_policy_generic_checks(e, c->items, c->n, rn, rc, def_acl);
		/* the innermost class returns first: the one whose item refused */
		if (st == ST_REJECT && !e->rclass)
			e->rclass = p->class_names[it->arg];
		return st;
	}
	default:
		if (smtp_policy_is_server_access(id))
			return smtp_policy_server_access(e, id, it->arg, rn, rc, def_acl);
		return smtp_policy_server_error(e, "internal: unknown restriction id");
	}
}

int smtp_policy_generic_checks(struct ev *e, const struct pitem *items, size_t n,
			       const char *rn, const char *rc, int def_acl)
{
	int status = ST_DUNNO;
	int saved = e->recursion++;
	char name[SMTP_POLICY_TEXT_MAX];
	for (size_t i = 0; i < n; i++) {
		if (e->discard)
			break;
		const struct pitem *it = &items[i];
		if (e->recursion <= (int)COUNT(e->path))
			e->path[e->recursion - 1] = (uint16_t)(i < UINT16_MAX ? i : UINT16_MAX);
		item_name(e, it, name, sizeof(name));
		if (it->id == R_WARN_IF_REJECT) {
			if (!e->warn_if_reject)
				e->warn_if_reject = e->recursion;
			smtp_policy_trace(e, name, "armed", "");
			continue;
		}
		e->note = NULL;
		e->detail[0] = '\0';
		e->warned = false;
		status = eval_item(e, it, rn, rc, def_acl);
		if (status == ST_PENDING) {
			/* waiting for an answer: this run ends here, delivers nothing */
			e->recursion = saved;
			return ST_PENDING;
		}
		if (e->cb && e->cb->trace) {
			const char *outcome;
			if (status == ST_OK)
				outcome = "PERMIT";
			else if (status == ST_REJECT && e->note &&
				 (strcmp(e->note, "lookup error") == 0 ||
				  strcmp(e->note, "server configuration error") == 0))
				outcome = e->note;
			else if (status == ST_REJECT)
				outcome = e->reply[0] == '5' || e->reply_hard ? "REJECT" : "DEFER";
			else if (e->warned)
				outcome = "reject_warning";
			else
				outcome = e->note ? e->note : "DUNNO";
			const char *detail = e->detail;
			if (status == ST_REJECT && !*detail)
				detail = e->reply;
			smtp_policy_trace(e, name, outcome, detail);
		}
		if (status == ST_REJECT && !e->rname[0])
			smtp_policy_scopy(e->rname, sizeof(e->rname), name);
		if (e->warn_if_reject >= e->recursion)
			e->warn_if_reject = 0;
		if (status != ST_DUNNO)
			break;
		if (e->dip.active && e->dir.active)
			break;
	}
	e->recursion = saved;
	if (e->warn_if_reject >= e->recursion)
		e->warn_if_reject = 0;
	return status;
}

/* ---------------------------------------------------------------------------------------
 * Stage drivers: smtpd_check_client / _helo / _mail / _rcpt / _data / _eod */

static void check_reset(struct ev *e)
{
	e->recursion = 0;
	e->warn_if_reject = 0;
	e->dir.active = false;
}

static int run_list(struct ev *e, enum smtp_restriction_list l, const char *rn,
		    const char *rc, int def_acl)
{
	const struct plist *pl = &e->p->lists[l];
	e->list = l;
	check_reset(e);
	if (!pl->n)
		return ST_DUNNO;
	return smtp_policy_generic_checks(e, pl->items, pl->n, rn, rc, def_acl);
}

static int check_client(struct ev *e, bool *dip_client)
{
	e->dip.active = false;
	int st = run_list(e, SMTP_LIST_CLIENT, e->namaddr, NAME_CLIENT, R_CHECK_CLIENT_ACCESS);
	*dip_client = e->dip.active;
	return st;
}

static int check_helo(struct ev *e, bool dip_client, bool *dip_helo)
{
	if (!e->helo) {
		*dip_helo = false;
		return ST_DUNNO;
	}
	e->dip.active = dip_client;
	int st = run_list(e, SMTP_LIST_HELO, e->helo, NAME_HELO, R_CHECK_HELO_ACCESS);
	*dip_helo = e->dip.active;
	return st;
}

static int check_mail(struct ev *e, bool dip_client, bool dip_helo, bool *dip_sender)
{
	if (!e->sender) {
		*dip_sender = false;
		return ST_DUNNO;
	}
	e->dip.active = dip_client || dip_helo;
	e->sender_checked = false;
	int st = run_list(e, SMTP_LIST_SENDER, e->sender, NAME_SENDER, R_CHECK_SENDER_ACCESS);
	if (st == ST_PENDING)
		return st;
	*dip_sender = e->dip.active;
	/* smtpd_reject_unlisted_sender: the implicit reject_unlisted_sender at the end. */
	if (e->p->reject_unlisted_sender && st != ST_REJECT && !e->sender_checked &&
	    !e->discard && *e->sender) {
		e->list = SMTP_LIST_SENDER;
		int s2 = check_sender_rcpt_maps(e, e->sender);
		if (s2 == ST_REJECT && !e->rname[0])
			snprintf(e->rname, sizeof(e->rname), "smtpd_reject_unlisted_sender");
		if (s2 != ST_DUNNO)
			st = s2;
	}
	return st;
}

/* Turn a permit into the remembered defer_if_permit reply. */
static int apply_dip(struct ev *e, int st)
{
	if (st != ST_REJECT && e->dip.active) {
		e->dip.active = false;
		int w = e->warn_if_reject;
		e->warn_if_reject = 0;
		st = smtp_policy_reject(e, e->dip.cls, e->dip.code, e->dip.dsn, "%s",
					e->dip.reason);
		e->warn_if_reject = w;
		if (st == ST_REJECT && !e->rname[0])
			snprintf(e->rname, sizeof(e->rname), "defer_if_permit");
	}
	return st;
}

static void save_session_dip(struct ev *e, struct smtp_policy_session *s)
{
	if (!s)
		return;
	s->dip_active = e->dip.active;
	s->dip_code = (uint16_t)e->dip.code;
	smtp_policy_scopy(s->dip_dsn, sizeof(s->dip_dsn), e->dip.dsn);
	smtp_policy_scopy(s->dip_reason, sizeof(s->dip_reason), e->dip.reason);
}

static void load_session_dip(struct ev *e, const struct smtp_policy_session *s)
{
	if (!s || !s->dip_reason[0])
		return;
	e->dip.cls = EC_POLICY;
	e->dip.code = s->dip_code;
	smtp_policy_scopy(e->dip.dsn, sizeof(e->dip.dsn), s->dip_dsn);
	smtp_policy_scopy(e->dip.reason, sizeof(e->dip.reason), s->dip_reason);
}

/* Evaluate the stage's lists (smtpd_check_client/helo/mail/rcpt/data/eod). s is the
 * run's copy of the session (NULL without one); the caller keeps it only when the run
 * completes. Returns ST_DUNNO/ST_OK (accepted), ST_REJECT (e->reply) or ST_PENDING. */
static int check_stage(struct ev *e, struct smtp_policy_session *s)
{
	const struct smtp_policy_request *req = e->req;
	int st = ST_DUNNO;
	bool dc = false, dh = false, ds = false;
	if (s)
		load_session_dip(e, s);
	switch (req->stage) {
	case SMTP_STAGE_CONNECT:
		/* Only without delay_reject: with it the caller asks at RCPT. */
		st = check_client(e, &dc);
		if (st != ST_PENDING && s) {
			s->dip_client = dc;
			save_session_dip(e, s);
		}
		return st;
	case SMTP_STAGE_HELO:
		st = check_helo(e, s ? s->dip_client : false, &dh);
		if (st != ST_PENDING && s) {
			s->dip_helo = dh;
			save_session_dip(e, s);
		}
		return st;
	case SMTP_STAGE_MAIL:
		st = check_mail(e, s ? s->dip_client : false, s ? s->dip_helo : false, &ds);
		if (st != ST_PENDING && s) {
			s->dip_sender = ds;
			save_session_dip(e, s);
		}
		return st;
	case SMTP_STAGE_RCPT:
		/* RFC 5321 4.5.1: "postmaster" must be accepted; Postfix accepts it before
		 * any restriction. */
		if (strcasecmp(req->recipient, "postmaster") == 0)
			return ST_DUNNO;
		if (e->p->delay_reject) {
			st = check_client(e, &dc);
			if (st != ST_REJECT && st != ST_PENDING)
				st = check_helo(e, dc, &dh);
			if (st != ST_REJECT && st != ST_PENDING)
				st = check_mail(e, dc, dh, &ds);
			if (st == ST_REJECT || st == ST_PENDING)
				return st;
		} else {
			ds = s ? s->dip_sender : false;
		}
		e->dip.active = ds;
		e->rcpt_checked = false;
		st = run_list(e, SMTP_LIST_RELAY, e->recipient, NAME_RECIPIENT,
			      R_CHECK_RECIPIENT_ACCESS);
		if (st != ST_REJECT && st != ST_PENDING)
			st = run_list(e, SMTP_LIST_RECIPIENT, e->recipient, NAME_RECIPIENT,
				      R_CHECK_RECIPIENT_ACCESS);
		if (st == ST_PENDING)
			return st;
		st = apply_dip(e, st);
		/* smtpd_reject_unlisted_recipient: the implicit reject_unlisted_recipient
		 * after both lists. */
		if (e->p->reject_unlisted_recipient && st != ST_REJECT && !e->rcpt_checked &&
		    !e->discard) {
			e->list = SMTP_LIST_RECIPIENT;
			int s2 = check_recipient_rcpt_maps(e, e->recipient);
			if (s2 == ST_REJECT && !e->rname[0])
				snprintf(e->rname, sizeof(e->rname), "smtpd_reject_unlisted_recipient");
			if (s2 != ST_DUNNO)
				st = s2;
		}
		return st;
	case SMTP_STAGE_DATA:
	case SMTP_STAGE_END_OF_DATA: {
		bool data = req->stage == SMTP_STAGE_DATA;
		e->dip.active = false;
		st = run_list(e, data ? SMTP_LIST_DATA : SMTP_LIST_END_OF_DATA,
			      data ? "DATA" : "END-OF-MESSAGE", data ? NAME_DATA : NAME_EOD, -1);
		if (st == ST_PENDING)
			return st;
		return apply_dip(e, st);
	}
	default:
		return ST_DUNNO;
	}
}

/* The run's outcome in *res (a refusal, or an acceptance). */
static void fill_result(struct ev *e, int st, struct smtp_policy_result *res)
{
	memset(res, 0, sizeof(*res));
	res->list = SMTP_LIST_MAX;
	if (st != ST_REJECT) {
		res->decision = SMTP_POLICY_ACCEPT;
		return;
	}
	res->code = (uint16_t)atoi(e->reply);
	smtp_policy_scopy(res->text, sizeof(res->text), e->reply + 4);
	res->decision = e->reply[0] == '5' || e->reply_hard ? SMTP_POLICY_REJECT
							    : SMTP_POLICY_DEFER;
	res->disconnect = e->disconnect || e->hangup;
	res->hangup = e->hangup;
	res->list = e->list;
	res->class_name = e->rclass;
	smtp_policy_scopy(res->restriction, sizeof(res->restriction), e->rname);
}

/* One text of the actions: its bytes up to and with the NUL (all of it without one); what
 * follows the NUL is never read. */
static void smtp_policy_text_copy(char *dst, const char *src)
{
	size_t n = strnlen(src, SMTP_POLICY_TEXT_MAX);
	memcpy(dst, src, n < SMTP_POLICY_TEXT_MAX ? n + 1 : n);
}

/* *dst = *src as far as anyone reads it: the struct is 6.6 KB of mostly empty texts and a
 * run copies it in and out at every command, which was most of a run's own cost. */
static void smtp_policy_actions_copy(struct smtp_policy_actions *dst,
				     const struct smtp_policy_actions *src)
{
	dst->hold = src->hold;
	dst->discard = src->discard;
	smtp_policy_text_copy(dst->hold_reason, src->hold_reason);
	smtp_policy_text_copy(dst->discard_reason, src->discard_reason);
	smtp_policy_text_copy(dst->filter, src->filter);
	smtp_policy_text_copy(dst->redirect, src->redirect);
	smtp_policy_text_copy(dst->bcc, src->bcc);
	dst->nprepend = src->nprepend;
	for (unsigned i = 0; i < src->nprepend && i < SMTP_POLICY_PREPEND_MAX; i++)
		smtp_policy_text_copy(dst->prepend[i], src->prepend[i]);
}

void smtp_policy_actions_reset(struct smtp_policy_actions *a)
{
	a->hold = a->discard = false;
	a->hold_reason[0] = a->discard_reason[0] = a->filter[0] = a->redirect[0] = a->bcc[0] = '\0';
	a->nprepend = 0;
}

int smtp_policy_check(struct smtp_policy_ctx *ctx, const struct smtp_policy_request *req,
		      struct smtp_policy_actions *actions, const struct smtp_policy_callbacks *cb,
		      struct smtp_policy_result *res)
{
	if (!ctx || !req || !res || (unsigned)req->stage >= SMTP_STAGE_MAX)
		return -EINVAL;
	if (req->stage == SMTP_STAGE_RCPT && !req->recipient)
		return -EINVAL;
	static const struct smtp_policy_callbacks nocb;
	struct ev *e = &(struct ev){ 0 };
	e->ctx = ctx;
	e->p = ctx->p;
	e->req = req;
	e->cb = cb ? cb : &nocb;
	/* Waiting is possible only with lookups; then everything the run would deliver
	 * waits in the context until it completes. */
	e->buffered = e->cb->lookups != NULL;
	if (e->buffered && e->cb->trace && ctx->caprecs < PREC_TRACED) {
		/* mxgate explain: room for a trace line per restriction (kept if it fails:
		 * the lines past the buffer are dropped and counted) */
		struct prec *r = realloc(ctx->recs, PREC_TRACED * sizeof(*r));
		if (r) {
			ctx->recs = r;
			ctx->caprecs = PREC_TRACED;
		}
	}
	ctx->nrecs = 0;
	ctx->dropped = 0;
	/* Postfix's namaddr: "name[addr]" */
	{
		char *o = e->namaddr;
		size_t cap = sizeof(e->namaddr);
		smtp_policy_scopy(o, cap - 60, req->client_name ? req->client_name : "unknown");
		size_t l = strlen(o);
		o[l++] = '[';
		smtp_policy_scopy(o + l, cap - l - 1,
				  req->client_addr ? req->client_addr : "unknown");
		l += strlen(o + l);
		o[l++] = ']';
		o[l] = '\0';
	}
	e->helo = req->helo;
	e->sender = req->sender;
	e->recipient = req->stage == SMTP_STAGE_RCPT ? req->recipient : NULL;
	if (req->stage == SMTP_STAGE_DATA || req->stage == SMTP_STAGE_END_OF_DATA)
		e->recipient = req->recipient_count > 1 ? NULL : req->recipient;

	/* smtpd.c evaluates the client, helo and sender lists at their own commands only when
	 * smtpd_delay_reject is off; with it they wait for RCPT. */
	if (e->p->delay_reject && (req->stage == SMTP_STAGE_CONNECT ||
				   req->stage == SMTP_STAGE_HELO || req->stage == SMTP_STAGE_MAIL)) {
		memset(res, 0, sizeof(*res));
		res->decision = SMTP_POLICY_ACCEPT;
		res->list = SMTP_LIST_MAX;
		ctx->stats.checks++;
		return 0;
	}
	e->discard = actions && actions->discard;
	if (e->buffered && actions) {
		smtp_policy_actions_copy(&ctx->act, actions);
		e->act = &ctx->act;
	} else {
		e->act = actions;
	}
	/* The session changes only when the run completes: the run works on a copy. */
	struct smtp_policy_session *sess = req->session, scopy;
	struct smtp_policy_pending replay = { 0 };
	if (sess) {
		scopy = *sess;
		replay = sess->pending;
	}
	if (replay.active) {
		e->replay = &replay;
		ctx->stats.replays++;
	}
	int st = check_stage(e, sess ? &scopy : NULL);
	ctx->stats.checks++;
	if (e->replay && (!e->replay_reached || replay.stage != req->stage))
		ctx->stats.replay_diverged++;
	if (st == ST_PENDING) {
		smtp_policy_deliver(e, false);
		if (sess)
			sess->pending = e->stop;
		ctx->stats.pending++;
		memset(res, 0, sizeof(*res));
		res->decision = SMTP_POLICY_PENDING;
		res->list = e->list;
		return 0;
	}
	if (sess) {
		scopy.pending = (struct smtp_policy_pending){ 0 };
		*sess = scopy;
	}
	if (e->buffered && actions)
		smtp_policy_actions_copy(actions, &ctx->act);
	if (e->buffered)
		smtp_policy_deliver(e, true);
	fill_result(e, st, res);
	return 0;
}
