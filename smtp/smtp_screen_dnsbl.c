/* The screen's DNSBL score (postscreen_dnsbl.c): postscreen_dnsbl_sites entries
 * "domain[=filter][*weight]", one query per distinct domain, each answer's A records run
 * through every filter of that domain, the weights of the matches added up; the TTL of the
 * result is the least TTL of the answers that decided it, as dnsblog(8) reports them
 * (the A records' least TTL, a negative answer's SOA TTL, none for a failure), bounded by
 * postscreen_dnsbl_min_ttl and postscreen_dnsbl_max_ttl. */
#include "smtp/smtp_screen_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "smtp/smtp_restrictions_internal.h"
#include "tables/dns_message.h"

bool scr_dnsbl_filter_parse(const char *f, uint8_t filter[4][32])
{
	memset(filter, 0, 4 * 32);
	return smtp_policy_rbl_filter_parse(f, filter);
}

/* sscanf("%d%c") == 1: an optional sign, digits, nothing after (leading blanks allowed). */
static bool scr_weight_parse(const char *w, int *out)
{
	while (*w == ' ' || *w == '\t')
		w++;
	bool neg = *w == '-';
	if (*w == '-' || *w == '+')
		w++;
	if (!mx_ctype_is_digit(*w))
		return false;
	long v = 0;
	while (mx_ctype_is_digit(*w)) {
		v = v * 10 + (*w++ - '0');
		if (v > INT_MAX)
			return false;
	}
	if (*w)
		return false;
	*out = neg ? (int)-v : (int)v;
	return true;
}

static int scr_site_add(struct smtp_screen_config *cfg, const char *site, char *err,
			size_t errlen)
{
	char buf[600];
	if (strlen(site) >= sizeof(buf)) {
		snprintf(err, errlen, "bad DNSBL domain name \"%.60s...\": too long", site);
		return -EINVAL;
	}
	strcpy(buf, site);
	struct smtp_screen_site ns = { .weight = 1 };
	char *star = strchr(buf, '*');
	if (star) {
		*star = '\0';
		if (!scr_weight_parse(star + 1, &ns.weight)) {
			snprintf(err, errlen, "bad DNSBL weight factor \"%s\" in \"%s\"", star + 1,
				 site);
			return -EINVAL;
		}
	}
	char *eq = strchr(buf, '=');
	if (eq) {
		*eq = '\0';
		if (!scr_dnsbl_filter_parse(eq + 1, ns.filter)) {
			snprintf(err, errlen, "bad DNSBL filter syntax: \"%s\" in \"%s\"", eq + 1,
				 site);
			return -EINVAL;
		}
		ns.has_filter = true;
	}
	char norm[DNS_HOSTNAME_MAX + 1];
	size_t nlen;
	if (!buf[0] || dns_name_normalize(buf, strlen(buf), norm, sizeof(norm), &nlen) < 0 ||
	    nlen == 0 || strlen(buf) >= sizeof(cfg->zones[0].domain)) {
		snprintf(err, errlen, "bad DNSBL domain name \"%s\" in \"%s\"", buf, site);
		return -EINVAL;
	}
	if (cfg->nsites == SMTP_SCREEN_SITES_MAX) {
		snprintf(err, errlen, "postscreen_dnsbl_sites: more than %d sites",
			 SMTP_SCREEN_SITES_MAX);
		return -EINVAL;
	}
	unsigned z;
	for (z = 0; z < cfg->nzones; z++)
		if (strcmp(cfg->zones[z].domain, norm) == 0)
			break;
	if (z == cfg->nzones) {
		if (cfg->nzones == SMTP_SCREEN_ZONES_MAX) {
			snprintf(err, errlen, "postscreen_dnsbl_sites: more than %d domains",
				 SMTP_SCREEN_ZONES_MAX);
			return -EINVAL;
		}
		struct smtp_screen_zone *zs = realloc(cfg->zones, (z + 1) * sizeof(*zs));
		if (!zs) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		cfg->zones = zs;
		snprintf(zs[z].domain, sizeof(zs[z].domain), "%s", norm);
		/* the reply names the domain as written, unless the reply map renames it */
		memcpy(zs[z].shown, buf, strlen(buf) + 1); /* < 256 bytes: checked above */
		cfg->nzones++;
	}
	ns.zone = z;
	cfg->sites[cfg->nsites++] = ns;
	return 0;
}

int smtp_screen_sites_parse(struct smtp_screen_config *cfg, const char *list, char *err,
			    size_t errlen)
{
	const char *cur = list, *word;
	size_t n;
	while ((n = mx_list_next(&cur, &word)) > 0) {
		char site[600];
		if (n >= sizeof(site)) {
			snprintf(err, errlen, "bad DNSBL domain name \"%.60s...\": too long", word);
			return -EINVAL;
		}
		memcpy(site, word, n);
		site[n] = '\0';
		int rc = scr_site_add(cfg, site, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static bool scr_filter_match(const struct smtp_screen_site *site, const uint8_t ip[4])
{
	if (!site->has_filter)
		return true;
	for (int o = 0; o < 4; o++)
		if (!(site->filter[o][ip[o] / 8] & (1u << (ip[o] % 8))))
			return false;
	return true;
}

static void scr_ttl_min(int *slot, int ttl)
{
	if (*slot < 0 || *slot > ttl)
		*slot = ttl;
}

/* psc_dnsbl_receive(): one domain's answer. */
void scr_dnsbl_answer(struct smtp_screen *s, unsigned zone, const struct dns_result *res)
{
	const struct smtp_screen_config *c = s->cfg;
	/* dnsblog(8): a failure has no TTL (-1); the rest carry theirs */
	int ttl = -1;
	bool listed = false;
	if (res && res->status != DNS_RESULT_TEMPFAIL)
		ttl = res->ttl > INT_MAX ? INT_MAX : (int)res->ttl;
	if (res && res->status == DNS_RESULT_OK)
		for (unsigned i = 0; i < res->nrecords; i++)
			if (res->records[i].addr.family == AF_INET)
				listed = true;
	for (unsigned k = 0; k < c->nsites; k++) {
		const struct smtp_screen_site *site = &c->sites[k];
		if (site->zone != zone)
			continue;
		if (listed) {
			bool match = false;
			for (unsigned i = 0; i < res->nrecords && !match; i++) {
				const struct mx_inet_addr *a = &res->records[i].addr;
				match = a->family == AF_INET && scr_filter_match(site, a->bytes);
			}
			if (match) {
				_Static_assert(SMTP_SCREEN_SITES_MAX <= 64, "a bit per site");
				s->outcome.dnsbl_listed |= 1ull << k;
				if (s->dnsbl_name < 0 || s->dnsbl_weight < site->weight) {
					s->dnsbl_name = (int)zone;
					s->dnsbl_weight = site->weight;
				}
				s->score += site->weight;
			}
			scr_ttl_min(site->weight > 0 ? &s->fail_ttl : &s->pass_ttl, ttl);
		} else {
			scr_ttl_min(site->weight > 0 ? &s->pass_ttl : &s->fail_ttl, ttl);
		}
	}
}

/* psc_dnsbl_retrieve(): the score is final; its TTL, bounded. Answers not in by now do
 * not count (postscreen's score is partial when the greet wait ends first). */
void scr_dnsbl_retrieve(struct smtp_screen *s)
{
	const struct smtp_screen_config *c = s->cfg;
	int ttl = s->score > 0 ? s->fail_ttl : s->pass_ttl;
	if (ttl < (int)c->dnsbl_min_ttl_s)
		ttl = (int)c->dnsbl_min_ttl_s;
	if (ttl > (int)c->dnsbl_max_ttl_s)
		ttl = (int)c->dnsbl_max_ttl_s;
	s->dnsbl_ttl = ttl;
	s->score_final = true;
	s->outcome.dnsbl_scored = true;
	s->outcome.dnsbl_score = s->score;
}
