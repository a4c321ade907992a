/* rbldnsd(8) zone files: see rbl_parse.h. Section references are to rbldnsd(8),
 * "DATASET TYPES AND FORMATS". */
#include "tables/rbl_parse.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include "mxgate/ctype.h"

#define RBL_VARS 10

struct rbl_pstate {
	struct rbl_model *m;
	enum rbl_format zone_fmt;
	unsigned lineno;
	int ds; /* current dataset, -1 in a combined zone's common section */
	enum rbl_format fmt;
	char *gvars[RBL_VARS], *vars[RBL_VARS]; /* $n: common section, dataset */
	char *gbase, *base;                     /* $= */
	uint8_t def_a[4];
	char *def_txt; /* NULL: no default TXT */
	uint32_t def_val; /* UINT32_MAX until an entry needs it */
	uint64_t maxrange4; /* 0: none */
	bool tset_default; /* a tset's value was given */
	size_t first_value, first_ip, first_name;
	uint32_t seq;
	tables_warn_fn *warn;
	void *warn_ctx;
	char *err;
	size_t errlen;
};

static int rbl_fail(struct rbl_pstate *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int rbl_fail(struct rbl_pstate *s, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(s->err, s->errlen, "line %u: %s", s->lineno, why);
	return -EINVAL;
}

static void rbl_warnf(struct rbl_pstate *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void rbl_warnf(struct rbl_pstate *s, const char *fmt, ...)
{
	if (!s->warn)
		return;
	char why[256], msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "line %u: %s", s->lineno, why);
	s->warn(s->warn_ctx, msg);
}

/* ---- storage ---- */

static int rbl_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	void *n = realloc(*p, c * elem);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

static int rbl_arena_add(struct rbl_model *m, const char *p, size_t n, uint32_t *off)
{
	if (m->used + n > UINT32_MAX)
		return -E2BIG;
	int rc = rbl_grow((void **)&m->arena, &m->cap, m->used + n + 1, 1);
	if (rc)
		return rc;
	memcpy(m->arena + m->used, p, n);
	*off = (uint32_t)m->used;
	m->used += n;
	return 0;
}

/* A value whose TXT (raw: $n and $= not yet expanded) is txt (NULL: none). */
static int rbl_value_add(struct rbl_pstate *s, const uint8_t a[4], const char *txt, size_t tl,
			 uint32_t *idx)
{
	struct rbl_model *m = s->m;
	if (m->nvalues >= RBL_ENTRIES_MAX)
		return rbl_fail(s, "more than %u values", RBL_ENTRIES_MAX);
	int rc = rbl_grow((void **)&m->values, &m->valcap, m->nvalues + 1, sizeof(*m->values));
	if (rc)
		return rc;
	struct rbl_value *v = &m->values[m->nvalues];
	memset(v, 0, sizeof(*v));
	memcpy(v->a, a, 4);
	if (txt) {
		v->has_txt = true;
		if ((rc = rbl_arena_add(m, txt, tl, &v->txt_off)) < 0)
			return rc;
		v->txt_len = (uint32_t)tl;
	}
	*idx = (uint32_t)m->nvalues++;
	return 0;
}

static int rbl_ip_add(struct rbl_pstate *s, rbl_u128 lo, rbl_u128 hi, unsigned prio, bool excl,
		      uint32_t val, uint8_t family)
{
	struct rbl_model *m = s->m;
	if (m->nip >= RBL_ENTRIES_MAX)
		return rbl_fail(s, "more than %u entries", RBL_ENTRIES_MAX);
	int rc = rbl_grow((void **)&m->ip, &m->ipcap, m->nip + 1, sizeof(*m->ip));
	if (rc)
		return rc;
	m->ip[m->nip++] = (struct rbl_ip_entry){ .lo = lo, .hi = hi, .val = val, .seq = s->seq,
						 .prio = (uint8_t)prio, .excl = excl,
						 .ds = (uint8_t)s->ds, .family = family };
	return 0;
}

static int rbl_name_add(struct rbl_pstate *s, uint32_t off, size_t len, uint8_t kind,
			bool excl, uint32_t val)
{
	struct rbl_model *m = s->m;
	if (m->nnames >= RBL_ENTRIES_MAX)
		return rbl_fail(s, "more than %u entries", RBL_ENTRIES_MAX);
	int rc = rbl_grow((void **)&m->names, &m->namecap, m->nnames + 1, sizeof(*m->names));
	if (rc)
		return rc;
	m->names[m->nnames++] = (struct rbl_name_entry){ .name_off = off, .name_len = (uint16_t)len,
							 .kind = (uint8_t)kind, .excl = excl,
							 .ds = (uint8_t)s->ds, .val = val,
							 .seq = s->seq };
	return 0;
}

/* ---- values: "Resulting A values and TXT templates" ---- */

int rbl_parse_a(const char *s, size_t n, uint8_t out[4])
{
	/* rbldnsd: one number N is 127.0.0.N ("127.0.0 prefix for A value may be omitted");
	 * otherwise the inet_aton(3) forms with octets: a.b is a.0.0.b, a.b.c is a.b.0.c. */
	unsigned oct[4], k = 0;
	size_t i = 0;
	if (n == 0)
		return -EINVAL;
	while (i < n) {
		if (k == 4 || !mx_ctype_is_digit(s[i]))
			return -EINVAL;
		unsigned v = 0, d = 0;
		while (i < n && mx_ctype_is_digit(s[i])) {
			v = v * 10 + (unsigned)(s[i++] - '0');
			if (++d > 3 || v > 255)
				return -EINVAL;
		}
		oct[k++] = v;
		if (i < n) {
			if (s[i] != '.' || i + 1 == n)
				return -EINVAL;
			i++;
		}
	}
	uint8_t a[4] = { 127, 0, 0, 0 };
	if (k > 1)
		a[0] = (uint8_t)oct[0];
	if (k > 2)
		a[1] = (uint8_t)oct[1];
	if (k > 3)
		a[2] = (uint8_t)oct[2];
	a[3] = (uint8_t)oct[k - 1];
	memcpy(out, a, 4);
	return 0;
}

static const char *rbl_skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* ":A:TXT" (p after the first colon) into a and txt; "no second colon" keeps the default
 * TXT (*txt_set false). */
static int rbl_parse_a_txt(struct rbl_pstate *s, const char *p, uint8_t a[4], bool *txt_set,
			   const char **txt)
{
	const char *colon = strchr(p, ':');
	size_t alen = colon ? (size_t)(colon - p) : strlen(p);
	while (alen && (p[alen - 1] == ' ' || p[alen - 1] == '\t'))
		alen--;
	if (rbl_parse_a(p, alen, a) < 0)
		return rbl_fail(s, "bad A value \"%.*s\"", (int)(alen > 40 ? 40 : alen), p);
	if (colon) {
		*txt_set = true;
		const char *t = rbl_skip_blanks(colon + 1);
		*txt = *t ? t : NULL;
	} else {
		*txt_set = false;
	}
	return 0;
}

/* The value of an entry: `rest` is what follows the entry and its blanks. */
static int rbl_entry_value(struct rbl_pstate *s, const char *rest, uint32_t *val)
{
	if (!*rest || *rest == '#' || *rest == ';') {
		if (s->def_val == UINT32_MAX) {
			int rc = rbl_value_add(s, s->def_a, s->def_txt,
					       s->def_txt ? strlen(s->def_txt) : 0, &s->def_val);
			if (rc < 0)
				return rc;
		}
		*val = s->def_val;
		return 0;
	}
	uint8_t a[4];
	memcpy(a, s->def_a, 4);
	const char *txt = s->def_txt;
	if (*rest == ':') {
		bool txt_set;
		const char *t;
		int rc = rbl_parse_a_txt(s, rest + 1, a, &txt_set, &t);
		if (rc < 0)
			return rc;
		if (txt_set)
			txt = t;
	} else {
		txt = rest;
	}
	return rbl_value_add(s, a, txt, txt ? strlen(txt) : 0, val);
}

/* ---- $n and $= expansion, done when a dataset ends (rbldnsd expands with the dataset's
 * final variables at query time; they cannot change after loading, so the result is the
 * same). `$` and `$$` stay for query time. ---- */

struct rbl_buf {
	char b[RBL_TXT_MAX + 1];
	size_t n;
};

static void rbl_buf_put(struct rbl_buf *b, const char *p, size_t n)
{
	/* The final text is truncated to RBL_TXT_MAX; `$` may grow at query time, so keeping
	 * more than that here would be useless, and a `$$` cut in half is harmless. */
	size_t room = RBL_TXT_MAX - b->n;
	if (n > room)
		n = room;
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static const char *rbl_var(const struct rbl_pstate *s, unsigned i)
{
	return s->vars[i] ? s->vars[i] : s->gvars[i] ? s->gvars[i] : "";
}

/* Expand $n in t; in a base template (base), `$=` is the entry's text eq, or the subject
 * when the entry has none (eq NULL). */
static void rbl_expand_vars(const struct rbl_pstate *s, const char *t, size_t n, const char *eq,
			    size_t eqlen, struct rbl_buf *out, bool base)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i] != '$' || i + 1 == n) {
			rbl_buf_put(out, t + i, 1);
			continue;
		}
		char c = t[i + 1];
		if (c == '$') {
			rbl_buf_put(out, "$$", 2);
			i++;
		} else if (mx_ctype_is_digit(c)) {
			const char *v = rbl_var(s, (unsigned)(c - '0'));
			rbl_buf_put(out, v, strlen(v));
			i++;
		} else if (c == '=' && base && !eq) {
			rbl_buf_put(out, "$", 1);
			i++;
		} else if (c == '=' && base) {
			/* rbldnsd inserts the entry's text as it is: its `$` stay dollar signs
			 * (checked against rbldnsd 1.0pre) */
			for (size_t j = 0; j < eqlen; j++)
				rbl_buf_put(out, eq[j] == '$' ? "$$" : eq + j, eq[j] == '$' ? 2 : 1);
			i++;
		} else {
			rbl_buf_put(out, "$", 1);
		}
	}
}

static int rbl_dataset_end(struct rbl_pstate *s)
{
	struct rbl_model *m = s->m;
	const char *base = s->base ? s->base : s->gbase;
	if (s->ds < 0)
		return 0;
	for (size_t i = s->first_value; i < m->nvalues; i++) {
		struct rbl_value *v = &m->values[i];
		struct rbl_buf out = { .n = 0 };
		const char *t = v->has_txt ? m->arena + v->txt_off : "";
		size_t tl = v->has_txt ? v->txt_len : 0;
		if (base && !(tl && t[0] == '=')) {
			/* $= in the base template is the entry's text, or the subject. */
			rbl_expand_vars(s, base, strlen(base), tl ? t : NULL, tl, &out, true);
		} else {
			if (tl && t[0] == '=') {
				t++;
				tl--;
			}
			if (!v->has_txt)
				continue;
			rbl_expand_vars(s, t, tl, NULL, 0, &out, false);
		}
		int rc = rbl_arena_add(m, out.b, out.n, &v->txt_off);
		if (rc < 0)
			return rc;
		v->txt_len = (uint32_t)out.n;
		v->has_txt = true;
	}
	/* ip4tset, ip6tset: "all entries share the same A+TXT template", the dataset's. */
	if (s->fmt == RBL_FORMAT_IP4TSET || s->fmt == RBL_FORMAT_IP6TSET) {
		uint32_t def = UINT32_MAX;
		for (size_t i = s->first_ip; i < m->nip; i++) {
			if (m->ip[i].excl)
				continue;
			if (def == UINT32_MAX) {
				int rc = rbl_value_add(s, s->def_a, s->def_txt,
						       s->def_txt ? strlen(s->def_txt) : 0, &def);
				if (rc < 0)
					return rc;
				/* expand the new value too */
				struct rbl_buf out = { .n = 0 };
				struct rbl_value *v = &m->values[def];
				if (v->has_txt || base) {
					const char *t = v->has_txt ? m->arena + v->txt_off : "";
					if (base)
						rbl_expand_vars(s, base, strlen(base), v->txt_len ? t : NULL,
								v->txt_len, &out, true);
					else
						rbl_expand_vars(s, t, v->txt_len, NULL, 0, &out, false);
					if ((rc = rbl_arena_add(m, out.b, out.n, &v->txt_off)) < 0)
						return rc;
					v->txt_len = (uint32_t)out.n;
					v->has_txt = true;
				}
			}
			m->ip[i].val = def;
		}
	}
	return 0;
}

static void rbl_scope_free(struct rbl_pstate *s, bool global)
{
	for (unsigned i = 0; i < RBL_VARS; i++) {
		free(s->vars[i]);
		s->vars[i] = NULL;
		if (global) {
			free(s->gvars[i]);
			s->gvars[i] = NULL;
		}
	}
	free(s->base);
	s->base = NULL;
	free(s->def_txt);
	s->def_txt = NULL;
	if (global) {
		free(s->gbase);
		s->gbase = NULL;
	}
}

static int rbl_dataset_begin(struct rbl_pstate *s, enum rbl_format fmt, const char *subzones)
{
	struct rbl_model *m = s->m;
	int rc = rbl_dataset_end(s);
	if (rc < 0)
		return rc;
	if (m->nds >= RBL_DATASETS_MAX)
		return rbl_fail(s, "more than %u datasets", RBL_DATASETS_MAX);
	if (strlen(subzones) > RBL_SUBZONES_MAX)
		return rbl_fail(s, "subzone list longer than %u bytes", RBL_SUBZONES_MAX);
	rbl_scope_free(s, false);
	s->ds = (int)m->nds++;
	s->fmt = fmt;
	m->ds[s->ds].fmt = fmt;
	snprintf(m->ds[s->ds].subzones, sizeof(m->ds[s->ds].subzones), "%s", subzones);
	table_fold(m->ds[s->ds].subzones, strlen(m->ds[s->ds].subzones));
	static const uint8_t a2[4] = { 127, 0, 0, 2 };
	memcpy(s->def_a, a2, 4);
	s->def_val = UINT32_MAX;
	s->maxrange4 = 0;
	s->tset_default = false;
	s->first_value = m->nvalues;
	s->first_ip = m->nip;
	s->first_name = m->nnames;
	return 0;
}

/* ---- specials ($SOA, $TIMESTAMP...) ---- */

/* yyyy[:-]mm[:-]dd[[:-]hh[[:-]mi[[:-]ss]]] (UTC); "0" or "-": none (*t = 0). */
static int rbl_parse_stamp(const char *p, size_t n, int64_t *t)
{
	if ((n == 1 && (p[0] == '0' || p[0] == '-'))) {
		*t = 0;
		return 0;
	}
	static const unsigned widths[6] = { 4, 2, 2, 2, 2, 2 };
	unsigned f[6] = { 0, 1, 1, 0, 0, 0 }, k = 0;
	size_t i = 0;
	while (i < n && k < 6) {
		if (k > 0 && (p[i] == ':' || p[i] == '-'))
			i++;
		unsigned v = 0;
		for (unsigned d = 0; d < widths[k]; d++, i++) {
			if (i >= n || !mx_ctype_is_digit(p[i]))
				return -EINVAL;
			v = v * 10 + (unsigned)(p[i] - '0');
		}
		f[k++] = v;
	}
	if (i != n || k < 3 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 ||
	    f[4] > 59 || f[5] > 60)
		return -EINVAL;
	struct tm tm = { .tm_year = (int)f[0] - 1900, .tm_mon = (int)f[1] - 1, .tm_mday = (int)f[2],
			 .tm_hour = (int)f[3], .tm_min = (int)f[4], .tm_sec = (int)f[5] };
	*t = (int64_t)timegm(&tm);
	/* before 1970 (or the epoch itself, which would read as "none"): nonsense */
	return *t > 0 ? 0 : -EINVAL;
}

/* A time as in rbldnsd's -t: a number with an optional unit s, m, h, d, w. */
static int rbl_parse_period(const char *p, size_t n, int64_t *out)
{
	int64_t v = 0;
	size_t i = 0;
	if (!n || !mx_ctype_is_digit(p[0]))
		return -EINVAL;
	while (i < n && mx_ctype_is_digit(p[i])) {
		v = v * 10 + (p[i++] - '0');
		if (v > (int64_t)1 << 40)
			return -EINVAL;
	}
	int64_t mul = 1;
	if (i < n) {
		switch (mx_ctype_lower(p[i++])) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		case 'w': mul = 604800; break;
		default: return -EINVAL;
		}
	}
	if (i != n)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static size_t rbl_word(const char **p)
{
	*p = rbl_skip_blanks(*p);
	size_t n = 0;
	while ((*p)[n] && (*p)[n] != ' ' && (*p)[n] != '\t')
		n++;
	return n;
}

static int rbl_special(struct rbl_pstate *s, const char *p)
{
	size_t kl = 0;
	while (p[kl] && p[kl] != ' ' && p[kl] != '\t')
		kl++;
	const char *arg = rbl_skip_blanks(p + kl);
#define KW(w) (kl == sizeof(w) - 1 && strncasecmp(p, w, kl) == 0)
	if (kl >= 1 && (mx_ctype_is_digit(p[0]) || p[0] == '=') &&
	    (kl == 1 || p[1] == ' ' || p[1] == '\t')) {
		/* "$n text" and "$= text"; rest of the line, as given */
		char *v = strdup(arg);
		if (!v)
			return -ENOMEM;
		char **slot = p[0] == '='
			? (s->ds < 0 ? &s->gbase : &s->base)
			: (s->ds < 0 ? &s->gvars[p[0] - '0'] : &s->vars[p[0] - '0']);
		free(*slot);
		*slot = v;
		return 0;
	}
	if (KW("SOA") || KW("NS") || KW("TTL"))
		return 0; /* the DNS server's business, not ours */
	if (KW("TIMESTAMP")) {
		const char *w = arg;
		size_t n = rbl_word(&w);
		int64_t stamp, exp = 0;
		if (!n || rbl_parse_stamp(w, n, &stamp) < 0)
			return rbl_fail(s, "bad $TIMESTAMP \"%.40s\"", arg);
		const char *e = w + n;
		size_t en = rbl_word(&e);
		if (en) {
			if (e[0] == '+') {
				int64_t rel;
				if (!stamp || rbl_parse_period(e + 1, en - 1, &rel) < 0)
					return rbl_fail(s, "bad $TIMESTAMP expiry \"%.40s\"", e);
				exp = stamp + rel;
			} else if (rbl_parse_stamp(e, en, &exp) < 0) {
				return rbl_fail(s, "bad $TIMESTAMP expiry \"%.40s\"", e);
			}
		}
		/* Several datasets may expire; the zone is as old as its oldest part. */
		if (exp && (!s->m->expires || exp < s->m->expires))
			s->m->expires = exp;
		return 0;
	}
	if (KW("MAXRANGE4")) {
		const char *w = arg;
		size_t n = rbl_word(&w);
		uint64_t hosts = 0;
		char *end;
		if (n && w[0] == '/') {
			unsigned long l = strtoul(w + 1, &end, 10);
			if (end != w + n || n == 1 || l > 32)
				return rbl_fail(s, "bad $MAXRANGE4 \"%.40s\"", arg);
			hosts = (uint64_t)1 << (32 - l);
		} else {
			unsigned long long h = n ? strtoull(w, &end, 10) : 0;
			if (!n || end != w + n || h == 0 || h > ((uint64_t)1 << 32))
				return rbl_fail(s, "bad $MAXRANGE4 \"%.40s\"", arg);
			hosts = h;
		}
		/* "can be overwritten by a smaller value, but can not be increased" */
		if (!s->maxrange4 || hosts < s->maxrange4)
			s->maxrange4 = hosts;
		return 0;
	}
	if (KW("DATASET")) {
		if (s->zone_fmt != RBL_FORMAT_COMBINED)
			return rbl_fail(s, "$DATASET outside a combined zone");
		const char *w = arg;
		size_t n = rbl_word(&w);
		char type[32];
		size_t tl = 0;
		while (tl < n && w[tl] != ':')
			tl++;
		if (!n || tl >= sizeof(type))
			return rbl_fail(s, "$DATASET: bad type \"%.40s\"", arg);
		memcpy(type, w, tl);
		type[tl] = '\0';
		enum rbl_format f;
		if (rbl_format_parse(type, &f) < 0 || f == RBL_FORMAT_COMBINED)
			return rbl_fail(s, "$DATASET: unsupported type \"%s\"", type);
		const char *sz = rbl_skip_blanks(w + n);
		/* rbldnsd serves a dataset without subzones nowhere; we do the same */
		return rbl_dataset_begin(s, f, sz);
	}
#undef KW
	rbl_warnf(s, "unknown special \"$%.*s\" ignored", (int)(kl > 32 ? 32 : kl), p);
	return 0;
}

/* ---- entries ---- */

/* Decimal octets "a[.b[.c[.d]]]" of n bytes: value (missing octets 0) and count. */
static int rbl_ip4_prefix(const char *p, size_t n, uint32_t *v, unsigned *count)
{
	uint32_t r = 0;
	unsigned k = 0;
	size_t i = 0;
	if (!n)
		return -EINVAL;
	for (;;) {
		if (k == 4 || i >= n || !mx_ctype_is_digit(p[i]))
			return -EINVAL;
		unsigned o = 0, d = 0;
		while (i < n && mx_ctype_is_digit(p[i])) {
			o = o * 10 + (unsigned)(p[i++] - '0');
			if (++d > 3 || o > 255)
				return -EINVAL;
		}
		r |= (uint32_t)o << (24 - 8 * k);
		k++;
		if (i == n)
			break;
		if (p[i++] != '.')
			return -EINVAL;
	}
	*v = r;
	*count = k;
	return 0;
}

static uint32_t rbl_ones(unsigned bits) /* the low `bits` bits set */
{
	return bits >= 32 ? UINT32_MAX : ((uint32_t)1 << bits) - 1;
}

/* An IPv4 entry of ip4set (all forms), ip4trie (prefix, CIDR) or ip4tset (addresses). */
static int rbl_ip4_entry(struct rbl_pstate *s, const char *p, size_t n, uint32_t *lo,
			 uint32_t *hi, unsigned *plen)
{
	const char *slash = memchr(p, '/', n), *dash = memchr(p, '-', n);
	uint32_t a, b;
	unsigned ka, kb;
	if (slash) {
		char *end;
		size_t pl = (size_t)(slash - p);
		unsigned long l = strtoul(slash + 1, &end, 10);
		if (s->fmt == RBL_FORMAT_IP4TSET || end != p + n || slash + 1 == end || l > 32 ||
		    !mx_ctype_is_digit(slash[1]) || rbl_ip4_prefix(p, pl, &a, &ka) < 0)
			return rbl_fail(s, "bad address \"%.*s\"", (int)(n > 60 ? 60 : n), p);
		uint32_t host = rbl_ones(32 - (unsigned)l);
		if (a & host)
			return rbl_fail(s, "\"%.*s\": bits set after the prefix length",
					(int)(n > 60 ? 60 : n), p);
		*lo = a;
		*hi = a | host;
		*plen = (unsigned)l;
		return 0;
	}
	if (dash) {
		size_t al = (size_t)(dash - p);
		if (s->fmt != RBL_FORMAT_IP4SET || rbl_ip4_prefix(p, al, &a, &ka) < 0 ||
		    rbl_ip4_prefix(dash + 1, n - al - 1, &b, &kb) < 0)
			return rbl_fail(s, "bad address range \"%.*s\"", (int)(n > 60 ? 60 : n), p);
		if (kb == 1) {
			/* "127.16-31": the one octet replaces the last octet of the first boundary */
			unsigned sh = 24 - 8 * (ka - 1);
			b = (a & ~((uint32_t)0xff << sh) & ~rbl_ones(sh)) | (b >> 24 << sh);
			kb = ka;
		}
		b |= rbl_ones(32 - 8 * kb); /* "last boundary is completed with all-ones" */
		if (b < a)
			return rbl_fail(s, "bad address range \"%.*s\": end before start",
					(int)(n > 60 ? 60 : n), p);
		*lo = a;
		*hi = b;
		*plen = 0; /* a range: no prefix */
		return 0;
	}
	if (rbl_ip4_prefix(p, n, &a, &ka) < 0 || (s->fmt == RBL_FORMAT_IP4TSET && ka != 4))
		return rbl_fail(s, "bad address \"%.*s\"", (int)(n > 60 ? 60 : n), p);
	*lo = a;
	*hi = a | rbl_ones(32 - 8 * ka);
	*plen = 8 * ka;
	return 0;
}

/* ip4set binds at octet granularity (rbldnsd keeps /8, /16, /24 and /32 arrays and answers
 * from the most specific one): split [lo, hi] into aligned blocks of those sizes and add one
 * interval per run of blocks of the same size. */
static int rbl_ip4set_add(struct rbl_pstate *s, uint32_t lo, uint32_t hi, bool excl, uint32_t val)
{
	uint64_t p = lo, end = (uint64_t)hi + 1;
	uint64_t run_lo = 0, run_hi = 0;
	unsigned run_lvl = 0;
	while (p < end) {
		unsigned lvl = 32;
		for (unsigned l = 8; l <= 32; l += 8) {
			uint64_t size = (uint64_t)1 << (32 - l);
			if (p % size == 0 && p + size <= end) {
				lvl = l;
				break;
			}
		}
		uint64_t size = (uint64_t)1 << (32 - lvl);
		if (run_lvl == lvl && run_hi + 1 == p) {
			run_hi = p + size - 1;
		} else {
			if (run_lvl) {
				int rc = rbl_ip_add(s, run_lo, run_hi, run_lvl, excl, val, 4);
				if (rc < 0)
					return rc;
			}
			run_lvl = lvl;
			run_lo = p;
			run_hi = p + size - 1;
		}
		p += size;
	}
	return run_lvl ? rbl_ip_add(s, run_lo, run_hi, run_lvl, excl, val, 4) : 0;
}

static rbl_u128 rbl_u128_from(const uint8_t b[16])
{
	rbl_u128 r = 0;
	for (int i = 0; i < 16; i++)
		r = r << 8 | b[i];
	return r;
}

static int rbl_ip6_entry(struct rbl_pstate *s, const char *p, size_t n, bool excl, rbl_u128 *lo,
			 rbl_u128 *hi, unsigned *plen)
{
	char buf[64];
	const char *slash = memchr(p, '/', n);
	size_t al = slash ? (size_t)(slash - p) : n;
	if (al == 0 || al >= sizeof(buf) - 3)
		goto bad;
	memcpy(buf, p, al);
	buf[al] = '\0';
	unsigned groups = 1;
	for (size_t i = 0; i < al; i++)
		groups += buf[i] == ':';
	bool compressed = strstr(buf, "::") != NULL;
	unsigned l = 128;
	if (!compressed && groups < 8) {
		/* "trailing :0s can be omitted" */
		l = 16 * groups;
		memcpy(buf + al, "::", 3);
	}
	if (s->fmt == RBL_FORMAT_IP6TSET && (slash || (!excl && (compressed || groups != 4))))
		goto bad; /* "wants the /64s listed as four ip6 words" */
	if (s->fmt == RBL_FORMAT_IP6TSET)
		l = excl ? 128 : 64;
	uint8_t b[16];
	if (inet_pton(AF_INET6, buf, b) != 1)
		goto bad;
	if (slash) {
		char *end;
		if (!mx_ctype_is_digit(slash[1]))
			goto bad;
		unsigned long v = strtoul(slash + 1, &end, 10);
		if (end != p + n || v > 128)
			goto bad;
		l = (unsigned)v;
	}
	rbl_u128 a = rbl_u128_from(b);
	rbl_u128 host = l == 128 ? 0 : l == 0 ? ~(rbl_u128)0 : (((rbl_u128)1 << (128 - l)) - 1);
	if (a & host) {
		if (s->fmt == RBL_FORMAT_IP6TSET)
			a &= ~host; /* a /64 listing names the /64 */
		else
			return rbl_fail(s, "\"%.*s\": bits set after the prefix length",
					(int)(n > 60 ? 60 : n), p);
	}
	*lo = a;
	*hi = a | host;
	*plen = l;
	return 0;
bad:
	return rbl_fail(s, "bad IPv6 address \"%.*s\"", (int)(n > 60 ? 60 : n), p);
}

static int rbl_name_entry(struct rbl_pstate *s, const char *p, size_t n, bool excl, uint32_t val)
{
	enum { E = 1, W = 2 } kinds = E;
	if (n >= 2 && p[0] == '*' && p[1] == '.') {
		kinds = W;
		p += 2;
		n -= 2;
	} else if (n >= 1 && p[0] == '.') {
		kinds = E | W;
		p++;
		n--;
	}
	if (n && p[n - 1] == '.')
		n--;
	if (n == 0 || n > RBL_NAME_MAX)
		return rbl_fail(s, "bad domain name");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c <= ' ' || c >= 127 || (c == '.' && (i == 0 || p[i - 1] == '.')))
			return rbl_fail(s, "bad domain name \"%.*s\"", (int)(n > 60 ? 60 : n), p);
	}
	uint32_t off;
	int rc = rbl_arena_add(s->m, p, n, &off);
	if (rc < 0)
		return rc;
	table_fold(s->m->arena + off, n);
	if ((kinds & E) && (rc = rbl_name_add(s, off, n, RBL_NAME_EXACT, excl, val)) < 0)
		return rc;
	if ((kinds & W) && (rc = rbl_name_add(s, off, n, RBL_NAME_SUBDOMAINS, excl, val)) < 0)
		return rc;
	return 0;
}

static int rbl_entry(struct rbl_pstate *s, const char *line)
{
	bool excl = line[0] == '!';
	const char *p = excl ? rbl_skip_blanks(line + 1) : line;
	size_t n = 0;
	while (p[n] && p[n] != ' ' && p[n] != '\t')
		n++;
	if (!n)
		return rbl_fail(s, "empty exclusion");
	if (excl && s->fmt == RBL_FORMAT_IP4TSET)
		return rbl_fail(s, "ip4tset has no exclusions");
	const char *rest = rbl_skip_blanks(p + n);
	uint32_t val = UINT32_MAX;
	int rc;
	bool tset = s->fmt == RBL_FORMAT_IP4TSET || s->fmt == RBL_FORMAT_IP6TSET;
	/* "any value for this record is ignored" for exclusions; tsets share one value */
	if (!excl && !tset && (rc = rbl_entry_value(s, rest, &val)) < 0)
		return rc;
	s->seq++;
	s->m->entries++;
	switch (s->fmt) {
	case RBL_FORMAT_IP4SET:
	case RBL_FORMAT_IP4TSET:
	case RBL_FORMAT_IP4TRIE: {
		uint32_t lo = 0, hi = 0;
		unsigned plen = 0;
		if ((rc = rbl_ip4_entry(s, p, n, &lo, &hi, &plen)) < 0)
			return rc;
		if (s->maxrange4 && (uint64_t)hi - lo + 1 > s->maxrange4) {
			rbl_warnf(s, "\"%.*s\" covers more than $MAXRANGE4 %llu addresses: ignored",
				  (int)(n > 60 ? 60 : n), p, (unsigned long long)s->maxrange4);
			s->m->entries--;
			return 0;
		}
		if (s->fmt == RBL_FORMAT_IP4SET)
			return rbl_ip4set_add(s, lo, hi, excl, val);
		return rbl_ip_add(s, lo, hi, plen, excl, val, 4);
	}
	case RBL_FORMAT_IP6TRIE:
	case RBL_FORMAT_IP6TSET: {
		rbl_u128 lo = 0, hi = 0;
		unsigned plen = 0;
		if ((rc = rbl_ip6_entry(s, p, n, excl, &lo, &hi, &plen)) < 0)
			return rc;
		return rbl_ip_add(s, lo, hi, plen, excl, val, 6);
	}
	case RBL_FORMAT_DNSET:
		return rbl_name_entry(s, p, n, excl, val);
	case RBL_FORMAT_COMBINED:
	case RBL_FORMAT_MAX:
		break;
	}
	return rbl_fail(s, "entry outside a $DATASET section");
}

static int rbl_line(struct rbl_pstate *s, char *line)
{
	const char *p = rbl_skip_blanks(line);
	if (!*p)
		return 0;
	/* "$", "#$", ";$" and ":$" start a special (so rbldns data files work too) */
	if (p[0] == '$')
		return rbl_special(s, p + 1);
	if ((p[0] == '#' || p[0] == ';' || p[0] == ':') && p[1] == '$')
		return rbl_special(s, p + 2);
	if (p[0] == '#' || p[0] == ';')
		return 0;
	if (s->ds < 0)
		return rbl_fail(s, "entry before the first $DATASET");
	if (p[0] == ':' && p[1] == ':' &&
	    (s->fmt == RBL_FORMAT_IP6TRIE || s->fmt == RBL_FORMAT_IP6TSET)) {
		/* "::1" is an IPv6 entry, not a default value (rbldnsd reads it so too) */
		char a[64];
		size_t n = strcspn(p, " \t/");
		uint8_t b[16];
		if (n < sizeof(a)) {
			memcpy(a, p, n);
			a[n] = '\0';
			if (inet_pton(AF_INET6, a, b) == 1)
				return rbl_entry(s, p);
		}
	}
	if (p[0] == ':') {
		/* the default A and TXT for all subsequent entries */
		uint8_t a[4];
		memcpy(a, s->def_a, 4);
		bool txt_set;
		const char *t;
		int rc = rbl_parse_a_txt(s, p + 1, a, &txt_set, &t);
		if (rc < 0)
			return rc;
		if (s->fmt == RBL_FORMAT_IP4TSET || s->fmt == RBL_FORMAT_IP6TSET) {
			/* one value for the whole set: rbldnsd keeps the first */
			if (s->tset_default) {
				rbl_warnf(s, "a set of this type has one value: the first is kept");
				return 0;
			}
			s->tset_default = true;
		}
		memcpy(s->def_a, a, 4);
		free(s->def_txt);
		s->def_txt = NULL;
		if (txt_set && t && !(s->def_txt = strdup(t)))
			return -ENOMEM;
		s->def_val = UINT32_MAX;
		return 0;
	}
	return rbl_entry(s, p);
}

int rbl_parse(const char *text, size_t len, enum rbl_format fmt, struct rbl_model *m,
	      tables_warn_fn *warn, void *warn_ctx, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	if ((unsigned)fmt >= RBL_FORMAT_MAX) {
		snprintf(err, errlen, "unknown zone format");
		return -EINVAL;
	}
	struct rbl_pstate s = { .m = m, .zone_fmt = fmt, .ds = -1, .warn = warn,
				.warn_ctx = warn_ctx, .err = err, .errlen = errlen };
	int rc = 0;
	if (fmt != RBL_FORMAT_COMBINED)
		rc = rbl_dataset_begin(&s, fmt, "@");
	char *line = malloc(RBL_LINE_MAX + 1);
	if (!line)
		rc = -ENOMEM;
	const char *p = text, *end = text + len;
	while (rc == 0 && p < end) {
		s.lineno++;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n > RBL_LINE_MAX) {
			rc = rbl_fail(&s, "line longer than %u bytes", RBL_LINE_MAX);
			break;
		}
		if (memchr(p, '\0', n)) {
			rc = rbl_fail(&s, "NUL byte");
			break;
		}
		memcpy(line, p, n);
		while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		line[n] = '\0';
		rc = rbl_line(&s, line);
		p = nl ? nl + 1 : end;
	}
	if (rc == 0)
		rc = rbl_dataset_end(&s);
	if (rc == -ENOMEM || rc == -E2BIG)
		snprintf(err, errlen, "line %u: %s", s.lineno,
			 rc == -ENOMEM ? "out of memory" : "zone too large");
	if (rc == -E2BIG)
		rc = -EINVAL;
	free(line);
	rbl_scope_free(&s, true);
	return rc;
}

void rbl_model_free(struct rbl_model *m)
{
	free(m->ip);
	free(m->names);
	free(m->values);
	free(m->arena);
	memset(m, 0, sizeof(*m));
}

size_t rbl_txt_expand(const char *tmpl, size_t n, const char *subj, char *out, size_t outlen)
{
	size_t o = 0, sl = strlen(subj);
	if (!outlen)
		return 0;
	for (size_t i = 0; i < n && o + 1 < outlen; i++) {
		if (tmpl[i] == '$' && i + 1 < n && tmpl[i + 1] == '$') {
			out[o++] = '$';
			i++;
		} else if (tmpl[i] == '$') {
			for (size_t j = 0; j < sl && o + 1 < outlen; j++)
				out[o++] = subj[j];
		} else {
			out[o++] = tmpl[i];
		}
	}
	out[o] = '\0';
	return o;
}
