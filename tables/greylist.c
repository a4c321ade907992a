/* Greylisting with postgrey's semantics: keys, records, the decision, the action and the
 * request codec (greylist.h). The facts come from postgrey 1.37 (/usr/sbin/postgrey:
 * do_sender_substitutions(), do_client_substitutions(), smtpd_access_policy(),
 * is_new_instance(), do_maintenance()). */
#include "tables/greylist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"

#define DAY_S 86400u

void greylist_params_init(struct greylist_params *p)
{
	*p = (struct greylist_params){
		.delay_s = 300,
		.max_age_s = 35 * DAY_S,
		.retry_window_s = 2 * DAY_S,
		.awl_clients = 5,
		.awl_interval_s = 3600,
	};
}

const char *greylist_verdict_name(enum greylist_verdict v)
{
	static const char *const names[GREYLIST_VERDICT_MAX] = {
		[GREYLIST_DEFER] = "greylist",
		[GREYLIST_PASS_DELAYED] = "pass (delayed)",
		[GREYLIST_PASS] = "pass",
		[GREYLIST_PASS_CLIENT] = "pass (client AWL)",
	};
	return (unsigned)v < GREYLIST_VERDICT_MAX ? names[v] : "?";
}

/* ---------------------------------------------------------------------------------------
 * Keys */

/* Perl's \w on a byte string (no locale, no Unicode semantics): ASCII only. */
static bool perl_word(unsigned char c)
{
	return mx_ctype_is_alnum(c) || c == '_';
}

static bool lower_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

/* /^[0-9a-z]{10}/ */
static bool batv_tag(const char *s, size_t n)
{
	if (n < 10)
		return false;
	for (size_t i = 0; i < 10; i++)
		if (!lower_alnum((unsigned char)s[i]))
			return false;
	return true;
}

long greylist_sender_normalize(const char *sender, char *out, size_t cap)
{
	const char *at = strchr(sender, '@');
	size_t slen = strlen(sender);
	if (!at) {
		/* split(/@/, $addr, 2) gives no domain: the address unchanged */
		if (slen + 1 > cap)
			return -ENOSPC;
		memcpy(out, sender, slen + 1);
		return (long)slen;
	}
	const char *user = sender;
	size_t ulen = (size_t)(at - sender);
	const char *domain = at + 1;
	size_t dlen = slen - ulen - 1;

	/* BATV: prvs=tag-val=loc-core@, sometimes prvs=loc-core=tag-val@. Perl's split(/=/)
	 * drops trailing empty fields; exactly three fields are wanted. */
	if (ulen >= 5 && memcmp(user, "prvs=", 5) == 0) {
		const char *f[3] = { 0 };
		size_t fl[3] = { 0 };
		size_t nf = 0, last_nonempty = 0, start = 0;
		bool any = false;
		for (size_t i = 0; i <= ulen; i++) {
			if (i < ulen && user[i] != '=')
				continue;
			if (nf < 3) {
				f[nf] = user + start;
				fl[nf] = i - start;
			}
			if (i > start) {
				last_nonempty = nf;
				any = true;
			}
			nf++;
			start = i + 1;
		}
		if (any && last_nonempty == 2) {
			bool t1 = batv_tag(f[1], fl[1]), t2 = batv_tag(f[2], fl[2]);
			if (t2 && !t1) {
				user = f[1];
				ulen = fl[1];
			} else {
				/* tag first (the standard), or a coin throw: the standard */
				user = f[2];
				ulen = fl[2];
			}
		}
	}
	/* s/\+.*$//: the extension */
	const char *plus = memchr(user, '+', ulen);
	if (plus)
		ulen = (size_t)(plus - user);
	/* s/\b\d+\b/#/g: a run of digits with no word character on either side */
	size_t o = 0;
	for (size_t i = 0; i < ulen;) {
		unsigned char c = (unsigned char)user[i];
		if (mx_ctype_is_digit(c) && (i == 0 || !perl_word((unsigned char)user[i - 1]))) {
			size_t j = i;
			while (j < ulen && mx_ctype_is_digit((unsigned char)user[j]))
				j++;
			if (j == ulen || !perl_word((unsigned char)user[j])) {
				if (o + 1 > cap)
					return -ENOSPC;
				out[o++] = '#';
				i = j;
				continue;
			}
			/* digits glued to a word: copied as they are */
			if (o + (j - i) > cap)
				return -ENOSPC;
			memcpy(out + o, user + i, j - i);
			o += j - i;
			i = j;
			continue;
		}
		if (o + 1 > cap)
			return -ENOSPC;
		out[o++] = (char)c;
		i++;
	}
	if (o + 1 + dlen + 1 > cap)
		return -ENOSPC;
	out[o++] = '@';
	memcpy(out + o, domain, dlen);
	o += dlen;
	out[o] = '\0';
	return (long)o;
}

void greylist_addr_format(const struct mx_inet_addr *a, char *out, size_t cap)
{
	if (a->family == AF_INET) {
		snprintf(out, cap, "%u.%u.%u.%u", a->bytes[0], a->bytes[1], a->bytes[2],
			 a->bytes[3]);
		return;
	}
	size_t o = 0;
	out[0] = '\0';
	for (int g = 0; g < 8; g++) {
		unsigned v = (unsigned)a->bytes[2 * g] << 8 | a->bytes[2 * g + 1];
		int n = snprintf(out + o, cap - o, "%s%X", g ? ":" : "", v);
		if (n < 0 || (size_t)n >= cap - o)
			return;
		o += (size_t)n;
	}
}

void greylist_client_net(const struct mx_inet_addr *a, unsigned v4, unsigned v6, char *out,
			 size_t cap)
{
	struct mx_inet_addr m = *a;
	unsigned bits = a->family == AF_INET ? 32 : 128;
	unsigned len = a->family == AF_INET ? v4 : v6;
	if (len > bits)
		len = bits;
	for (unsigned i = 0; i < bits / 8; i++) {
		unsigned keep = len > i * 8 ? len - i * 8 : 0;
		if (keep >= 8)
			continue;
		m.bytes[i] &= (uint8_t)(0xff00u >> keep);
	}
	greylist_addr_format(&m, out, cap);
}

/* FNV-1a, 64 bits, from a given basis: two of them name a long key. */
static uint64_t fnv64(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

size_t greylist_triplet_key(const char *net, const char *sender, const char *rcpt, char *out,
			    size_t cap)
{
	/* lc "$client_net/$sender/$recipient" (Perl's lc on bytes: ASCII) */
	const char *parts[3] = { net, sender, rcpt };
	size_t o = 0;
	uint64_t h1 = 14695981039346656037ull, h2 = 0x9e3779b97f4a7c15ull;
	bool cut = false;
	for (int p = 0; p < 3; p++) {
		if (p) {
			h1 = fnv64(h1, "/", 1);
			h2 = fnv64(h2, "/", 1);
			if (o < GREYLIST_KEY_MAX)
				out[o++] = '/';
			else
				cut = true;
		}
		for (const char *s = parts[p]; *s; s++) {
			char c = (char)mx_ctype_lower(*s);
			/* memcached keys take no blanks or control characters (a quoted local
			 * part may have them): such bytes become '_' */
			if ((unsigned char)c <= ' ' || c == 0x7f)
				c = '_';
			h1 = fnv64(h1, &c, 1);
			h2 = fnv64(h2, &c, 1);
			if (o < GREYLIST_KEY_MAX)
				out[o++] = c;
			else
				cut = true;
		}
	}
	if (cut) {
		/* keep room for "#" and 32 hex digits */
		o = GREYLIST_KEY_MAX - 33;
		snprintf(out + o, cap - o, "#%016" PRIx64 "%016" PRIx64, h1, h2);
		o += 33;
	}
	(void)cap;
	out[o] = '\0';
	return o;
}

/* ---------------------------------------------------------------------------------------
 * Records */

static bool parse_i64(const char **p, const char *end, int64_t *out)
{
	const char *s = *p;
	bool neg = false;
	if (s < end && *s == '-') {
		neg = true;
		s++;
	}
	if (s == end || !mx_ctype_is_digit((unsigned char)*s))
		return false;
	int64_t v = 0;
	while (s < end && mx_ctype_is_digit((unsigned char)*s)) {
		if (v > (INT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (*s - '0');
		s++;
	}
	*out = neg ? -v : v;
	*p = s;
	return true;
}

int greylist_record_parse(const char *v, size_t len, struct greylist_record *r)
{
	const char *p = v, *end = v + len;
	if (!parse_i64(&p, end, &r->a) || p == end || *p != ',')
		return -EINVAL;
	p++;
	if (!parse_i64(&p, end, &r->b))
		return -EINVAL;
	if (p != end && *p != ',')
		return -EINVAL;
	return 0;
}

size_t greylist_record_format(const struct greylist_record *r, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%" PRId64 ",%" PRId64, r->a, r->b);
	return n < 0 ? 0 : (size_t)n;
}

/* ---------------------------------------------------------------------------------------
 * The decision */

/* Times and counts are kept within +-2^40 (some 35,000 years of seconds), so that no sum
 * or difference of them can overflow, whatever a shared store hands back. */
#define GREYLIST_T_MAX ((int64_t)1 << 40)

static int64_t clamp_t(int64_t v)
{
	return v > GREYLIST_T_MAX ? GREYLIST_T_MAX : v < -GREYLIST_T_MAX ? -GREYLIST_T_MAX : v;
}

static struct greylist_record clamp_rec(const struct greylist_record *r)
{
	return (struct greylist_record){ clamp_t(r->a), clamp_t(r->b) };
}

/* How long a record lives: what postgrey's nightly do_maintenance() keeps, plus a second
 * (it drops a record only once strictly past its age). */
static uint32_t ttl_of(uint32_t age)
{
	return age < UINT32_MAX ? age + 1 : age;
}

void greylist_client_check(const struct greylist_params *p, int64_t now,
			   const struct greylist_record *rec,
			   struct greylist_client_outcome *out)
{
	*out = (struct greylist_client_outcome){ 0 };
	if (!p->awl_clients || !rec)
		return;
	struct greylist_record cr = clamp_rec(rec);
	rec = &cr;
	now = clamp_t(now);
	if (rec->a < (int64_t)p->awl_clients)
		return;
	out->pass = true;
	/* the count goes on (for statistics) and last-seen moves, at most once an interval */
	if (now >= rec->b + (int64_t)p->awl_interval_s || rec->b > now) {
		out->write = true;
		out->record = (struct greylist_record){ rec->a + 1, now };
		out->ttl_s = ttl_of(p->max_age_s);
	}
}

void greylist_decide(const struct greylist_params *p, int64_t now,
		     const struct greylist_record *trip, const struct greylist_record *client,
		     bool new_instance, struct greylist_outcome *out)
{
	*out = (struct greylist_outcome){ 0 };
	struct greylist_record tr, cr;
	if (trip) {
		tr = clamp_rec(trip);
		trip = &tr;
	}
	if (client) {
		cr = clamp_rec(client);
		client = &cr;
	}
	now = clamp_t(now);
	int64_t first = now;
	bool last_was_successful = false;
	if (trip) {
		first = trip->a;
		if (trip->b - trip->a >= (int64_t)p->delay_s)
			last_was_successful = true;
		else if (now - first > (int64_t)p->retry_window_s)
			first = now; /* the first retry came after the window: start over */
		if (first > now)
			first = now; /* first seen in the future */
	}
	out->triplet = (struct greylist_record){ first, now };
	int64_t diff = (int64_t)p->delay_s - (now - first);
	/* a record that passed lives max_age after it was last seen; one still waiting,
	 * retry_window (or max_age when that is shorter) */
	uint32_t age = p->retry_window_s < p->max_age_s ? p->retry_window_s : p->max_age_s;
	out->triplet_ttl_s = ttl_of(diff <= 0 ? p->max_age_s : age);

	if (p->awl_clients && diff <= 0 && !last_was_successful) {
		/* greylisting succeeded: one more pass for the client, at most one an interval */
		if (!client || now >= client->b + (int64_t)p->awl_interval_s) {
			out->client_write = true;
			out->client = (struct greylist_record){ (client ? client->a : 0) + 1, now };
			out->client_ttl_s = ttl_of(p->max_age_s);
		}
	}
	if (diff > 0) {
		out->verdict = GREYLIST_DEFER;
		out->remaining = diff;
	} else if (!last_was_successful && new_instance) {
		out->verdict = GREYLIST_PASS_DELAYED;
		out->delayed = now - first;
	} else {
		out->verdict = GREYLIST_PASS;
	}
}

void greylist_instances_init(struct greylist_instances *s)
{
	/* postgrey starts with ten "0" entries */
	for (unsigned i = 0; i < GREYLIST_INSTANCES; i++)
		snprintf(s->id[i], sizeof(s->id[i]), "0");
}

bool greylist_instances_new(struct greylist_instances *s, const char *instance)
{
	if (!instance || !*instance)
		return true;
	char id[GREYLIST_INSTANCE_MAX];
	snprintf(id, sizeof(id), "%s", instance);
	for (unsigned i = 0; i < GREYLIST_INSTANCES; i++)
		if (strcmp(s->id[i], id) == 0)
			return false;
	memmove(s->id[1], s->id[0], (GREYLIST_INSTANCES - 1) * sizeof(s->id[0]));
	memcpy(s->id[0], id, sizeof(id));
	return true;
}

/* ---------------------------------------------------------------------------------------
 * The action */

/* Append n bytes. */
static bool put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (*o + n + 1 > cap)
		return false;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
	return true;
}

/* Perl's s/%X/value/ (the first occurrence) from src into dst. */
static bool subst_first(const char *src, char tag, const char *value, char *dst, size_t cap)
{
	size_t o = 0;
	dst[0] = '\0';
	for (const char *p = src; *p; p++) {
		if (p[0] == '%' && p[1] == tag) {
			return put(dst, cap, &o, src, (size_t)(p - src)) &&
			       put(dst, cap, &o, value, strlen(value)) &&
			       put(dst, cap, &o, p + 2, strlen(p + 2));
		}
	}
	return put(dst, cap, &o, src, strlen(src));
}

long greylist_action_format(const struct greylist_outcome *o, enum greylist_verdict v,
			    const char *action, const char *text, const char *header,
			    const char *recipient, const char *version, const char *date,
			    const char *host, char *out, size_t cap)
{
	char a[GREYLIST_ACTION_MAX], b[GREYLIST_ACTION_MAX];
	size_t n = 0;
	if (cap == 0)
		return -ENOSPC;
	out[0] = '\0';
	switch (v) {
	case GREYLIST_DEFER: {
		char num[24];
		/* the "4.2.0" status: postgrey adds it when etrn_domain is defined */
		snprintf(a, sizeof(a), "%s%s", mx_ctype_is_digit((unsigned char)text[0]) ? "" : "4.2.0 ",
			 text);
		snprintf(num, sizeof(num), "%" PRId64, o->remaining);
		const char *dom = strrchr(recipient, '@');
		dom = dom ? dom + 1 : recipient;
		if (!subst_first(a, 's', num, b, sizeof(b)) ||
		    !subst_first(b, 'r', dom, a, sizeof(a)))
			return -ENOSPC;
		if (!put(out, cap, &n, action, strlen(action)) || !put(out, cap, &n, " ", 1) ||
		    !put(out, cap, &n, a, strlen(a)))
			return -ENOSPC;
		return (long)n;
	}
	case GREYLIST_PASS_DELAYED: {
		if (!header || !*header)
			break;
		char num[24];
		snprintf(num, sizeof(num), "%" PRId64, o->delayed);
		if (!subst_first(header, 't', num, a, sizeof(a)) ||
		    !subst_first(a, 'v', version, b, sizeof(b)) ||
		    !subst_first(b, 'd', date, a, sizeof(a)) ||
		    !subst_first(a, 'h', host, b, sizeof(b)))
			return -ENOSPC;
		if (!put(out, cap, &n, "PREPEND ", 8) || !put(out, cap, &n, b, strlen(b)))
			return -ENOSPC;
		return (long)n;
	}
	case GREYLIST_PASS:
	case GREYLIST_PASS_CLIENT:
	case GREYLIST_VERDICT_MAX:
		break;
	}
	if (!put(out, cap, &n, "DUNNO", 5))
		return -ENOSPC;
	return (long)n;
}

/* ---------------------------------------------------------------------------------------
 * One request */

int greylist_answer(const struct greylist_request *r, int64_t now, const char *version,
		    const char *date, struct greylist_instances *instances,
		    const struct greylist_store *store, enum greylist_verdict *verdict,
		    char *out, size_t cap)
{
	const struct greylist_params *p = &r->params;
	struct greylist_record client, trip;
	bool have_client = false;
	int rc;
	if (p->awl_clients) {
		rc = store->get(store->ctx, r->client, &client);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		have_client = rc == 0;
		struct greylist_client_outcome co;
		greylist_client_check(p, now, have_client ? &client : NULL, &co);
		if (co.pass) {
			if (co.write && (rc = store->put(store->ctx, r->client, &co.record,
							 co.ttl_s)) < 0)
				return rc;
			*verdict = GREYLIST_PASS_CLIENT;
			struct greylist_outcome none = { 0 };
			long n = greylist_action_format(&none, GREYLIST_PASS_CLIENT, r->action, r->text,
							r->header, r->recipient, version, date,
							r->host, out, cap);
			return n < 0 ? (int)n : 0;
		}
	}
	rc = store->get(store->ctx, r->key, &trip);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	bool have_trip = rc == 0;
	/* the instance is remembered only when the header is due (postgrey asks
	 * is_new_instance() only then) */
	struct greylist_outcome o;
	greylist_decide(p, now, have_trip ? &trip : NULL, have_client ? &client : NULL, true, &o);
	if (o.verdict == GREYLIST_PASS_DELAYED && !greylist_instances_new(instances, r->instance))
		greylist_decide(p, now, have_trip ? &trip : NULL, have_client ? &client : NULL,
				false, &o);
	if ((rc = store->put(store->ctx, r->key, &o.triplet, o.triplet_ttl_s)) < 0)
		return rc;
	if (o.client_write && (rc = store->put(store->ctx, r->client, &o.client, o.client_ttl_s)) < 0)
		return rc;
	*verdict = o.verdict;
	long n = greylist_action_format(&o, o.verdict, r->action, r->text, r->header, r->recipient,
					version, date, r->host, out, cap);
	return n < 0 ? (int)n : 0;
}

/* ---------------------------------------------------------------------------------------
 * The request */

enum rq_field {
	RQ_MAP, RQ_CLIENT, RQ_KEY, RQ_RECIPIENT, RQ_INSTANCE, RQ_ACTION, RQ_TEXT, RQ_HEADER,
	RQ_HOST, RQ_DELAY, RQ_MAX_AGE, RQ_RETRY_WINDOW, RQ_AWL, RQ_AWL_INTERVAL, RQ_MAX
};

static const char *const rq_names[RQ_MAX] = {
	[RQ_MAP] = "map",         [RQ_CLIENT] = "client",
	[RQ_KEY] = "key",         [RQ_RECIPIENT] = "recipient",
	[RQ_INSTANCE] = "instance", [RQ_ACTION] = "action",
	[RQ_TEXT] = "text",       [RQ_HEADER] = "header",
	[RQ_HOST] = "host",       [RQ_DELAY] = "delay",
	[RQ_MAX_AGE] = "max_age", [RQ_RETRY_WINDOW] = "retry_window",
	[RQ_AWL] = "awl_clients", [RQ_AWL_INTERVAL] = "awl_interval",
};

static bool value_ok(const char *s)
{
	return s && !strpbrk(s, "\r\n");
}

long greylist_request_encode(const struct greylist_request *r, char *out, size_t cap,
			     size_t *need)
{
	const char *str[RQ_DELAY] = {
		[RQ_MAP] = r->map,         [RQ_CLIENT] = r->client,
		[RQ_KEY] = r->key,         [RQ_RECIPIENT] = r->recipient,
		[RQ_INSTANCE] = r->instance ? r->instance : "",
		[RQ_ACTION] = r->action,   [RQ_TEXT] = r->text,
		[RQ_HEADER] = r->header ? r->header : "",
		[RQ_HOST] = r->host,
	};
	uint32_t num[RQ_MAX] = {
		[RQ_DELAY] = r->params.delay_s,
		[RQ_MAX_AGE] = r->params.max_age_s,
		[RQ_RETRY_WINDOW] = r->params.retry_window_s,
		[RQ_AWL] = r->params.awl_clients,
		[RQ_AWL_INTERVAL] = r->params.awl_interval_s,
	};
	size_t total = 1;
	for (int f = 0; f < RQ_DELAY; f++) {
		if (!value_ok(str[f]))
			return -EINVAL;
		total += strlen(rq_names[f]) + 1 + strlen(str[f]) + 1;
	}
	for (int f = RQ_DELAY; f < RQ_MAX; f++)
		total += strlen(rq_names[f]) + 1 + 10 + 1;
	*need = total;
	if (total + 1 > cap)
		return -ENOSPC;
	size_t o = 0;
	for (int f = 0; f < RQ_MAX; f++) {
		int n = f < RQ_DELAY ? snprintf(out + o, cap - o, "%s=%s\n", rq_names[f], str[f])
				     : snprintf(out + o, cap - o, "%s=%" PRIu32 "\n", rq_names[f],
						num[f]);
		if (n < 0 || (size_t)n >= cap - o)
			return -ENOSPC;
		o += (size_t)n;
	}
	out[o++] = '\n';
	out[o] = '\0';
	return (long)o;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	if (!*s)
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (!mx_ctype_is_digit((unsigned char)*s))
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

int greylist_request_decode(const char *in, size_t len, char *buf, size_t cap,
			    struct greylist_request *r)
{
	if (len > GREYLIST_REQUEST_MAX || cap < len + 1)
		return -EBADMSG;
	memcpy(buf, in, len);
	buf[len] = '\0';
	if (memchr(buf, '\0', len))
		return -EBADMSG;
	const char *val[RQ_MAX] = { 0 };
	char *p = buf, *end = buf + len;
	bool ended = false;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return -EBADMSG; /* a line without its end */
		*nl = '\0';
		if (p == nl) {
			ended = nl + 1 == end; /* the empty line ends it, and nothing after */
			if (!ended)
				return -EBADMSG;
			break;
		}
		char *eq = strchr(p, '=');
		if (!eq)
			return -EBADMSG;
		*eq = '\0';
		int f;
		for (f = 0; f < RQ_MAX; f++)
			if (strcmp(rq_names[f], p) == 0)
				break;
		if (f == RQ_MAX || val[f])
			return -EBADMSG; /* unknown, or twice */
		val[f] = eq + 1;
		p = nl + 1;
	}
	if (!ended)
		return -EBADMSG;
	for (int f = 0; f < RQ_MAX; f++)
		if (!val[f] || strchr(val[f], '\r'))
			return -EBADMSG; /* missing, or what the encoder never sends */
	*r = (struct greylist_request){
		.map = val[RQ_MAP],       .client = val[RQ_CLIENT],
		.key = val[RQ_KEY],       .recipient = val[RQ_RECIPIENT],
		.instance = val[RQ_INSTANCE], .action = val[RQ_ACTION],
		.text = val[RQ_TEXT],     .header = val[RQ_HEADER],
		.host = val[RQ_HOST],
	};
	if (!parse_u32(val[RQ_DELAY], &r->params.delay_s) ||
	    !parse_u32(val[RQ_MAX_AGE], &r->params.max_age_s) ||
	    !parse_u32(val[RQ_RETRY_WINDOW], &r->params.retry_window_s) ||
	    !parse_u32(val[RQ_AWL], &r->params.awl_clients) ||
	    !parse_u32(val[RQ_AWL_INTERVAL], &r->params.awl_interval_s))
		return -EBADMSG;
	size_t kl = strlen(r->key), cl = strlen(r->client);
	if (!*r->map || kl == 0 || kl > GREYLIST_KEY_MAX || cl == 0 || cl > GREYLIST_KEY_MAX ||
	    !*r->action || strlen(r->text) >= GREYLIST_TEXT_MAX ||
	    strlen(r->header) >= GREYLIST_TEXT_MAX)
		return -EBADMSG;
	return 0;
}
