#include "tables/dns_result.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"

const char *dns_result_status_name(enum dns_result_status s)
{
	static const char *const names[DNS_RESULT_STATUS_MAX] = {
		[DNS_RESULT_OK] = "ok",
		[DNS_RESULT_NODATA] = "nodata",
		[DNS_RESULT_NXDOMAIN] = "nxdomain",
		[DNS_RESULT_TEMPFAIL] = "tempfail",
	};
	return (unsigned)s < DNS_RESULT_STATUS_MAX ? names[s] : "?";
}

/* One allocation: the struct, the records, the text. */
static struct dns_result *dns_result_alloc(unsigned nrecords, size_t text_len)
{
	size_t size = sizeof(struct dns_result) + nrecords * sizeof(struct dns_result_record) +
		      text_len;
	struct dns_result *r = calloc(1, size);
	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->records = (struct dns_result_record *)(r + 1);
	r->text = (char *)(r->records + nrecords);
	return r;
}

struct dns_result *dns_result_tempfail(enum dns_type type, const char *why)
{
	struct dns_result *r = dns_result_alloc(0, 1);
	if (!r)
		return NULL;
	r->status = DNS_RESULT_TEMPFAIL;
	r->type = type;
	snprintf(r->why, sizeof(r->why), "%s", why ? why : "temporary failure");
	return r;
}

struct dns_result *dns_result_from_answer(const struct dns_answer *a, enum dns_type type,
					  uint32_t negative_ttl_floor)
{
	enum dns_result_status st;
	switch (a->status) {
	case DNS_STATUS_OK:
		/* records counted but none kept (all dropped) cannot be used: a failure */
		st = a->count ? DNS_RESULT_OK : DNS_RESULT_TEMPFAIL;
		break;
	case DNS_STATUS_NODATA:
		st = DNS_RESULT_NODATA;
		break;
	case DNS_STATUS_NXDOMAIN:
		st = DNS_RESULT_NXDOMAIN;
		break;
	default:
		st = DNS_RESULT_TEMPFAIL;
		break;
	}
	if (st == DNS_RESULT_TEMPFAIL) {
		char why[96];
		snprintf(why, sizeof(why), "%s%s", dns_status_name(a->status),
			 a->status == DNS_STATUS_OK ? " with no usable record" : "");
		return dns_result_tempfail(type, why);
	}
	unsigned n = st == DNS_RESULT_OK ? a->count : 0;
	size_t text = 1;
	for (unsigned i = 0; i < n; i++) {
		const struct dns_record *rec = &a->records[i];
		text += rec->name.len + 1;
		if (rec->type == DNS_TYPE_TXT) {
			size_t len = 0;
			if (rec->txt_count)
				dns_answer_txt_string(a, rec, 0, &len);
			text += len + 1;
		}
	}
	struct dns_result *r = dns_result_alloc(n, text);
	if (!r)
		return NULL;
	r->status = st;
	r->type = type;
	r->ttl = st == DNS_RESULT_OK || a->ttl_valid ? a->ttl : negative_ttl_floor;
	r->nrecords = (uint16_t)n;
	uint32_t used = 1; /* text[0] is the empty string: offset 0, length 0 */
	for (unsigned i = 0; i < n; i++) {
		const struct dns_record *rec = &a->records[i];
		struct dns_result_record *out = &r->records[i];
		out->addr = rec->addr;
		out->pref = rec->pref;
		if (rec->name.len) {
			memcpy(r->text + used, dns_answer_text(a, rec->name), rec->name.len);
			out->name_off = used;
			out->name_len = rec->name.len;
			used += rec->name.len + 1;
		}
		if (rec->type == DNS_TYPE_TXT && rec->txt_count) {
			size_t len = 0;
			const char *s = dns_answer_txt_string(a, rec, 0, &len);
			memcpy(r->text + used, s, len);
			out->txt_off = used;
			out->txt_len = (uint32_t)len;
			used += (uint32_t)len + 1;
		}
	}
	r->text_len = used;
	return r;
}

struct dns_result *dns_result_get(struct dns_result *r)
{
	if (r)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void dns_result_put(struct dns_result *r)
{
	if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		free(r);
}

const char *dns_result_name(const struct dns_result *r, const struct dns_result_record *rec)
{
	return r->text + rec->name_off;
}

const char *dns_result_txt(const struct dns_result *r, const struct dns_result_record *rec)
{
	return r->text + rec->txt_off;
}

size_t dns_result_size(const struct dns_result *r)
{
	return sizeof(*r) + r->nrecords * sizeof(*r->records) + r->text_len;
}

bool dns_result_reverse_name_usable(const char *name, bool *numeric)
{
	*numeric = false;
	size_t len = strlen(name);
	if (len == 0 || len > 255 || !dns_name_valid(name, len))
		return false;
	struct mx_inet_addr a;
	if (mx_inet_parse(name, &a)) {
		*numeric = true;
		return false;
	}
	bool non_numeric = false;
	for (const char *p = name; *p; p++) {
		if (*p == '-' && (p == name || p[-1] == '.' || p[1] == '.' || p[1] == '\0'))
			return false;
		if (!mx_ctype_is_digit((unsigned char)*p) && *p != '.')
			non_numeric = true;
	}
	return non_numeric;
}

const char *dns_result_gai_text(enum dns_result_status st)
{
	switch (st) {
	case DNS_RESULT_TEMPFAIL:
		return "Temporary failure in name resolution";
	case DNS_RESULT_NODATA:
		return "No address associated with hostname";
	default:
		return "Name or service not known";
	}
}
