/* A service's screen, compiled from its postscreen_* parameters (mgmt/screen.h). */
#include "mgmt/screen.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"
#include "tables/netlist.h"
#include "tables/table_cidr.h"

#define SCREEN_FILE_MAX (16u << 20) /* a cidr or texthash table file */

/* A validated time value (N with an optional s/m/h/d/w unit) in seconds. */
static uint32_t screen_time(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	uint64_t n = 0;
	while (v && mx_ctype_is_digit(*v))
		n = n * 10 + (uint64_t)(*v++ - '0');
	switch (v ? *v : 's') {
	case 'm': n *= 60; break;
	case 'h': n *= 3600; break;
	case 'd': n *= 86400; break;
	case 'w': n *= 7 * 86400; break;
	default: break;
	}
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static long screen_int(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	return v ? strtol(v, NULL, 10) : 0;
}

static bool screen_bool(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	return v && strcasecmp(v, "yes") == 0;
}

/* A whole small file, NUL-terminated. */
static int screen_read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size > SCREEN_FILE_MAX) {
		int rc = st.st_size > SCREEN_FILE_MAX ? -EFBIG : -errno;
		close(fd);
		return rc;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

static int screen_acl_parse(struct mx_screen *s, const char *list, char *err, size_t errlen)
{
	const char *cur = list, *word;
	size_t n;
	while ((n = mx_list_next(&cur, &word)) > 0) {
		if (s->nacl == MX_SCREEN_ACL_MAX)
			return mx_errf(err, errlen, -EINVAL, "postscreen_access_list: more than %d "
				       "elements", MX_SCREEN_ACL_MAX);
		struct mx_screen_acl *a = &s->acl[s->nacl];
		if (n >= sizeof(a->name))
			return mx_errf(err, errlen, -EINVAL, "postscreen_access_list: \"%.40s...\" "
				       "is too long", word);
		memcpy(a->name, word, n);
		a->name[n] = '\0';
		if (!strcmp(a->name, "permit")) {
			a->kind = MX_SCREEN_ACL_PERMIT;
		} else if (!strcmp(a->name, "reject")) {
			a->kind = MX_SCREEN_ACL_REJECT;
		} else if (!strcmp(a->name, "dunno")) {
			a->kind = MX_SCREEN_ACL_DUNNO;
		} else if (!strcmp(a->name, "permit_mynetworks")) {
			a->kind = MX_SCREEN_ACL_MYNETWORKS;
		} else if (!strncmp(a->name, "cidr:", 5)) {
			char *text;
			size_t len;
			int rc = screen_read_file(a->name + 5, &text, &len);
			if (rc < 0)
				return mx_errf(err, errlen, rc, "postscreen_access_list: %s: %s",
					       a->name, strerror(-rc));
			char why[256];
			rc = table_cidr_parse(text, len, &a->cidr, why, sizeof(why));
			free(text);
			if (rc < 0)
				return mx_errf(err, errlen, rc, "postscreen_access_list: %s: %s",
					       a->name, why);
			a->kind = MX_SCREEN_ACL_CIDR;
		} else if (strchr(a->name, ':')) {
			return mx_errf(err, errlen, -EINVAL, "postscreen_access_list: %s: only "
				       "cidr: tables are supported", a->name);
		} else {
			return mx_errf(err, errlen, -EINVAL, "postscreen_access_list: unknown "
				       "element \"%s\" (permit_mynetworks, permit, reject, dunno, "
				       "cidr:file)", a->name);
		}
		s->nacl++;
	}
	return 0;
}

/* postscreen_dnsbl_reply_map: texthash:/file ("domain name" lines, # comments) or
 * inline:{ domain=name, ... }; each domain of postscreen_dnsbl_sites it names is shown
 * with that name. */
static int screen_reply_map(struct mx_screen *s, const char *map, char *err, size_t errlen)
{
	if (!*map)
		return 0;
	if (!strncmp(map, "inline:{", 8) && map[strlen(map) - 1] == '}') {
		char *body = strndup(map + 8, strlen(map) - 9);
		if (!body)
			return -ENOMEM;
		const char *cur = body, *word;
		size_t n;
		while ((n = mx_list_next(&cur, &word)) > 0) {
			char item[600];
			if (n >= sizeof(item))
				continue;
			memcpy(item, word, n);
			item[n] = '\0';
			char *eq = strchr(item, '=');
			if (eq) {
				*eq = '\0';
				(void)smtp_screen_config_set_shown(s->cfg, item, eq + 1);
			}
		}
		free(body);
		return 0;
	}
	if (strncmp(map, "texthash:", 9) != 0)
		return mx_errf(err, errlen, -EINVAL, "postscreen_dnsbl_reply_map: %s: only "
			       "texthash: and inline: tables are supported", map);
	char *text;
	size_t len;
	int rc = screen_read_file(map + 9, &text, &len);
	if (rc < 0)
		return mx_errf(err, errlen, rc, "postscreen_dnsbl_reply_map: %s: %s", map,
			       strerror(-rc));
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '#' || !*line)
			continue;
		char *sp = line + strcspn(line, " \t");
		if (!*sp)
			continue;
		*sp++ = '\0';
		while (*sp == ' ' || *sp == '\t')
			sp++;
		size_t vl = strlen(sp);
		while (vl && (sp[vl - 1] == ' ' || sp[vl - 1] == '\t' || sp[vl - 1] == '\r'))
			sp[--vl] = '\0';
		(void)smtp_screen_config_set_shown(s->cfg, line, sp);
	}
	free(text);
	return 0;
}

/* The per-site counters, named by the sites as written: smtp_screen_sites_parse() made
 * one site of each word of the list, in order. */
static int screen_sites(struct mx_screen *s, const char *list, char *err, size_t errlen)
{
	unsigned n = s->cfg->nsites;
	if (n == 0)
		return 0;
	s->sites = calloc(n, sizeof(*s->sites));
	if (!s->sites)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	const char *cur = list, *word;
	size_t len;
	unsigned k = 0;
	while ((len = mx_list_next(&cur, &word)) > 0 && k < n) {
		struct mx_screen_site_stat *st = &s->sites[k++];
		if (len >= sizeof(st->text))
			len = sizeof(st->text) - 1;
		memcpy(st->text, word, len);
		st->text[len] = '\0';
		atomic_init(&st->listed, 0);
	}
	assert(k == n); /* the codec made one site per word */
	return 0;
}

void mx_screen_count_listed(const struct mx_screen *s, uint64_t listed)
{
	for (unsigned k = 0; listed && s->sites && k < s->cfg->nsites; k++, listed >>= 1)
		if (listed & 1u)
			atomic_fetch_add_explicit(&s->sites[k].listed, 1, memory_order_relaxed);
}

int mx_screen_build(const struct mx_config *cfg, struct mx_screen **out, char *err,
		    size_t errlen)
{
	*out = NULL;
	struct mx_screen *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	struct smtp_screen_params p = {
		.greet_banner = mx_config_get(cfg, "postscreen_greet_banner"),
		.smtpd_banner = cfg->smtpd_banner,
		.myhostname = cfg->myhostname,
		.greet_wait_s = screen_time(cfg, "postscreen_greet_wait"),
		.greet_action = mx_config_get(cfg, "postscreen_greet_action"),
		.dnsbl_action = mx_config_get(cfg, "postscreen_dnsbl_action"),
		.denylist_action = mx_config_get(cfg, "postscreen_denylist_action"),
		.pipelining_action = mx_config_get(cfg, "postscreen_pipelining_action"),
		.non_smtp_action = mx_config_get(cfg, "postscreen_non_smtp_command_action"),
		.bare_newline_action = mx_config_get(cfg, "postscreen_bare_newline_action"),
		.greet_ttl_s = screen_time(cfg, "postscreen_greet_ttl"),
		.dnsbl_min_ttl_s = screen_time(cfg, "postscreen_dnsbl_min_ttl"),
		.dnsbl_max_ttl_s = screen_time(cfg, "postscreen_dnsbl_max_ttl"),
		.dnsbl_timeout_s = screen_time(cfg, "postscreen_dnsbl_timeout"),
		.dnsbl_threshold = (int)screen_int(cfg, "postscreen_dnsbl_threshold"),
		.dnsbl_allowlist_threshold =
			(int)screen_int(cfg, "postscreen_dnsbl_allowlist_threshold"),
		.dnsbl_sites = mx_config_get(cfg, "postscreen_dnsbl_sites"),
		.pipelining_enable = screen_bool(cfg, "postscreen_pipelining_enable"),
		.non_smtp_enable = screen_bool(cfg, "postscreen_non_smtp_command_enable"),
		.bare_newline_enable = screen_bool(cfg, "postscreen_bare_newline_enable"),
		.pipelining_ttl_s = screen_time(cfg, "postscreen_pipelining_ttl"),
		.non_smtp_ttl_s = screen_time(cfg, "postscreen_non_smtp_command_ttl"),
		.bare_newline_ttl_s = screen_time(cfg, "postscreen_bare_newline_ttl"),
		.forbidden_commands = mx_config_get(cfg, "postscreen_forbidden_commands"),
		.command_count_limit = (unsigned)screen_int(cfg, "postscreen_command_count_limit"),
		.client_connection_count_limit =
			(unsigned)screen_int(cfg, "postscreen_client_connection_count_limit"),
		.command_time_limit_s = screen_time(cfg, "postscreen_command_time_limit"),
		.cache_retention_s = screen_time(cfg, "postscreen_cache_retention_time"),
		.helo_required = screen_bool(cfg, "postscreen_helo_required"),
		.disable_vrfy = screen_bool(cfg, "postscreen_disable_vrfy_command"),
		/* smtputf8_enable alone: smtpd_discard_ehlo_keywords reaches the screen only
		 * through postscreen_discard_ehlo_keywords's default */
		.smtputf8 = screen_bool(cfg, "smtputf8_enable"),
		.discard_ehlo_keywords = mx_config_get(cfg, "postscreen_discard_ehlo_keywords"),
		.message_size_limit = cfg->smtp.message_size_limit,
		.line_limit = (unsigned)cfg->smtp.line_length_limit,
	};
	int rc = smtp_screen_config_new(&p, &s->cfg, err, errlen);
	if (rc < 0)
		goto fail;
	if ((rc = screen_acl_parse(s, mx_config_get(cfg, "postscreen_access_list"), err,
				   errlen)) < 0 ||
	    (rc = screen_reply_map(s, mx_config_get(cfg, "postscreen_dnsbl_reply_map"), err,
				   errlen)) < 0)
		goto fail;
	const char *ifs = mx_config_get(cfg, "postscreen_allowlist_interfaces");
	if (strcmp(ifs, "static:all") != 0) {
		rc = mx_errf(err, errlen, -EINVAL, "postscreen_allowlist_interfaces = %s: only "
			     "static:all is supported (every local address may allowlist)", ifs);
		goto fail;
	}
	const char *map = mx_config_get(cfg, "postscreen_cache_map");
	if (strlen(map) >= sizeof(s->cache_map)) {
		rc = mx_errf(err, errlen, -EINVAL, "postscreen_cache_map: longer than %zu bytes",
			     sizeof(s->cache_map) - 1);
		goto fail;
	}
	if (*map && strncmp(map, "btree:", 6) && strncmp(map, "hash:", 5) &&
	    strncmp(map, "lmdb:", 5) && strncmp(map, "memcache:", 9)) {
		rc = mx_errf(err, errlen, -EINVAL, "postscreen_cache_map = %s: btree:, hash:, "
			     "lmdb: or memcache: only", map);
		goto fail;
	}
	memcpy(s->cache_map, map, strlen(map) + 1);
	s->dnsbl_timeout_ms = p.dnsbl_timeout_s * 1000u;
	s->proxy_haproxy =
		strcasecmp(mx_config_get(cfg, "postscreen_upstream_proxy_protocol"), "haproxy") == 0;
	s->proxy_timeout_ms = screen_time(cfg, "postscreen_upstream_proxy_timeout") * 1000u;
	if ((rc = screen_sites(s, p.dnsbl_sites ? p.dnsbl_sites : "", err, errlen)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	mx_screen_free(s);
	return rc;
}

void mx_screen_free(struct mx_screen *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nacl; i++)
		table_cidr_free(s->acl[i].cidr);
	smtp_screen_config_free(s->cfg);
	free(s->sites);
	free(s);
}

/* A table's value: a list of permit/reject/dunno. 1 permit, -1 reject, 0 dunno (go on),
 * -2 an unknown word (warning). */
static int screen_acl_value(const char *v, const char *table, char *warn, size_t warnlen)
{
	const char *cur = v, *word;
	size_t n;
	while ((n = mx_list_next(&cur, &word)) > 0) {
		if (n == 6 && !memcmp(word, "permit", 6))
			return 1;
		if (n == 6 && !memcmp(word, "reject", 6))
			return -1;
		if (n == 5 && !memcmp(word, "dunno", 5))
			return 0;
		snprintf(warn, warnlen, "%s: unknown command: %.*s -- ignoring the remainder of "
			 "this access list", table, (int)(n > 64 ? 64 : n), word);
		return -2;
	}
	return 0;
}

enum smtp_screen_acl mx_screen_access_entry(const struct mx_screen *s,
					    const struct mx_config *cfg,
					    const struct mx_inet_addr *addr, int *entry,
					    char *warn, size_t warnlen)
{
	*entry = -1;
	if (warnlen)
		warn[0] = '\0';
	struct mx_inet_addr a = mx_inet_unmap(addr);
	for (unsigned i = 0; i < s->nacl; i++) {
		const struct mx_screen_acl *e = &s->acl[i];
		*entry = (int)i; /* until it says nothing */
		switch (e->kind) {
		case MX_SCREEN_ACL_PERMIT:
			return SMTP_SCREEN_ACL_PERMIT;
		case MX_SCREEN_ACL_REJECT:
			return SMTP_SCREEN_ACL_REJECT;
		case MX_SCREEN_ACL_DUNNO:
			return SMTP_SCREEN_ACL_DUNNO;
		case MX_SCREEN_ACL_MYNETWORKS:
			if (cfg->mynetworks && netlist_match(cfg->mynetworks, &a))
				return SMTP_SCREEN_ACL_PERMIT;
			break;
		case MX_SCREEN_ACL_CIDR: {
			const char *v = table_cidr_scan(e->cidr, &a);
			if (!v)
				break;
			int r = screen_acl_value(v, e->name, warn, warnlen);
			if (r == 1)
				return SMTP_SCREEN_ACL_PERMIT;
			if (r == -1)
				return SMTP_SCREEN_ACL_REJECT;
			if (r == -2)
				return SMTP_SCREEN_ACL_DUNNO;
			break;
		}
		case MX_SCREEN_ACL_KIND_MAX:
			break;
		}
	}
	*entry = -1;
	return SMTP_SCREEN_ACL_DUNNO;
}

enum smtp_screen_acl mx_screen_access(const struct mx_screen *s, const struct mx_config *cfg,
				      const struct mx_inet_addr *addr, char *warn,
				      size_t warnlen)
{
	int entry;
	return mx_screen_access_entry(s, cfg, addr, &entry, warn, warnlen);
}
