/* cidr: tables; see table_cidr.h. */
#include "tables/table_cidr.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"
#include "tables/table_parse.h"

typedef unsigned __int128 table_u128; /* arithmetic type, not a struct */

enum table_cidr_op { TABLE_CIDR_RULE, TABLE_CIDR_IF, TABLE_CIDR_ENDIF };

struct table_cidr_line {
	uint8_t op;
	uint8_t family;
	bool negate;
	table_u128 lo, hi;
	uint32_t end; /* for IF: index of the matching ENDIF */
	char *value; /* for RULE */
};

struct table_cidr {
	struct table_cidr_line *lines;
	size_t n, cap;
	size_t rules;
};

static table_u128 table_cidr_max(uint8_t family)
{
	return family == AF_INET ? (table_u128)0xffffffffu : ~(table_u128)0;
}

static table_u128 table_cidr_to_u128(const struct mx_inet_addr *a)
{
	table_u128 v = 0;
	int n = a->family == AF_INET ? 4 : 16;
	for (int i = 0; i < n; i++)
		v = (v << 8) | a->bytes[i];
	return v;
}

static void table_cidr_from_u128(uint8_t family, table_u128 v, uint8_t out[16])
{
	int n = family == AF_INET ? 4 : 16;
	memset(out, 0, 16);
	for (int i = n - 1; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

bool table_cidr_key(const char *key, struct mx_inet_addr *out)
{
	return mx_inet_parse(key, out);
}

/* Parse "addr", "addr/len", "[addr]" or "[addr]/len" into a family and range.
 * Returns 0 or -EINVAL with a reason. */
static int table_cidr_pattern(const char *pat, struct table_cidr_line *l, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(pat, '/');
	size_t alen = slash ? (size_t)(slash - pat) : strlen(pat);
	const char *a = pat;
	if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
		a++;
		alen -= 2;
	}
	struct mx_inet_addr addr;
	if (alen == 0 || alen >= sizeof(buf) || (memcpy(buf, a, alen), buf[alen] = '\0',
						 !mx_inet_parse(buf, &addr))) {
		snprintf(err, errlen, "bad address pattern: \"%.64s\"", pat);
		return -EINVAL;
	}
	unsigned bits = addr.family == AF_INET ? 32 : 128, len = bits;
	if (slash) {
		const char *d = slash + 1;
		if (!*d || strlen(d) > 3 || strspn(d, "0123456789") != strlen(d)) {
			snprintf(err, errlen, "bad network prefix length in \"%.64s\"", pat);
			return -EINVAL;
		}
		len = (unsigned)atoi(d);
		if (len > bits) {
			snprintf(err, errlen, "bad network prefix length in \"%.64s\"", pat);
			return -EINVAL;
		}
	}
	table_u128 v = table_cidr_to_u128(&addr);
	table_u128 hostmask = len == bits ? 0
			    : (len == 0 ? table_cidr_max(addr.family)
					: (((table_u128)1 << (bits - len)) - 1));
	if (v & hostmask) {
		struct mx_inet_addr fixed = { .family = addr.family };
		char fb[INET6_ADDRSTRLEN];
		table_cidr_from_u128(addr.family, v & ~hostmask, fixed.bytes);
		snprintf(err, errlen,
			 "non-null host address bits in \"%.64s\", perhaps you should use "
			 "\"%s/%u\" instead",
			 pat, mx_inet_format(&fixed, fb, sizeof(fb)), len);
		return -EINVAL;
	}
	l->family = addr.family;
	l->lo = v;
	l->hi = v | hostmask;
	return 0;
}

static int table_cidr_push(struct table_cidr *c, const struct table_cidr_line *l)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct table_cidr_line *nl = realloc(c->lines, cap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		c->lines = nl;
		c->cap = cap;
	}
	c->lines[c->n++] = *l;
	return 0;
}

int table_cidr_parse(const char *text, size_t len, struct table_cidr **out, char *err,
		     size_t errlen)
{
	struct table_cidr *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	struct table_text tt;
	table_text_init(&tt, text, len);
	uint32_t stack[TABLE_CIDR_DEPTH_MAX];
	unsigned depth = 0, lineno = 0, if_line[TABLE_CIDR_DEPTH_MAX];
	char *line, why[200];
	size_t llen;
	int rc;
	while ((rc = table_text_next(&tt, &line, &llen, &lineno, why, sizeof(why))) > 0) {
		struct table_cidr_line l = { .op = TABLE_CIDR_RULE };
		char *p = line;
		if (strcasecmp(p, "endif") == 0) { /* IF/ENDIF: any case, as Postfix */
			if (depth == 0) {
				snprintf(why, sizeof(why), "ENDIF without matching IF");
				rc = -EINVAL;
				goto bad;
			}
			l.op = TABLE_CIDR_ENDIF;
			c->lines[stack[--depth]].end = (uint32_t)c->n;
			if ((rc = table_cidr_push(c, &l)) < 0)
				goto fail;
			continue;
		}
		if (strncasecmp(p, "if", 2) == 0 && mx_ctype_is_blank(p[2])) {
			l.op = TABLE_CIDR_IF;
			p += 2;
			while (mx_ctype_is_blank(*p))
				p++;
		}
		if (*p == '!') {
			l.negate = true;
			p++;
		}
		char *pat = p;
		while (*p && !mx_ctype_is_blank(*p))
			p++;
		if (*p)
			*p++ = '\0';
		while (mx_ctype_is_blank(*p))
			p++;
		if ((rc = table_cidr_pattern(pat, &l, why, sizeof(why))) < 0)
			goto bad;
		if (l.op == TABLE_CIDR_IF) {
			if (*p) {
				snprintf(why, sizeof(why), "extra text after IF pattern: \"%.64s\"", p);
				rc = -EINVAL;
				goto bad;
			}
			if (depth == TABLE_CIDR_DEPTH_MAX) {
				snprintf(why, sizeof(why), "if/endif nested deeper than %u",
					 TABLE_CIDR_DEPTH_MAX);
				rc = -EINVAL;
				goto bad;
			}
			if_line[depth] = lineno;
			stack[depth++] = (uint32_t)c->n;
		} else {
			if (!*p) {
				snprintf(why, sizeof(why), "no lookup result");
				rc = -EINVAL;
				goto bad;
			}
			if (strlen(p) > TABLE_VALUE_MAX) {
				snprintf(why, sizeof(why), "result longer than %u bytes",
					 TABLE_VALUE_MAX);
				rc = -EINVAL;
				goto bad;
			}
			if (c->rules >= TABLE_CIDR_RULES_MAX) {
				snprintf(why, sizeof(why), "more than %u rules", TABLE_CIDR_RULES_MAX);
				rc = -EINVAL;
				goto bad;
			}
			if (!(l.value = strdup(p))) {
				rc = -ENOMEM;
				goto fail;
			}
			c->rules++;
		}
		if ((rc = table_cidr_push(c, &l)) < 0) {
			free(l.value);
			goto fail;
		}
	}
	if (rc < 0) {
		if (rc == -EINVAL)
			snprintf(err, errlen, "%s", why);
		goto fail;
	}
	if (depth > 0) {
		snprintf(err, errlen, "line %u: IF has no matching ENDIF", if_line[depth - 1]);
		rc = -EINVAL;
		goto fail;
	}
	table_text_free(&tt);
	*out = c;
	return 0;
bad:
	snprintf(err, errlen, "line %u: %s", lineno, why);
fail:
	table_text_free(&tt);
	table_cidr_free(c);
	return rc;
}

size_t table_cidr_rules(const struct table_cidr *c)
{
	return c->rules;
}

void table_cidr_free(struct table_cidr *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->lines[i].value);
	free(c->lines);
	free(c);
}

static bool table_cidr_line_match(const struct table_cidr_line *l, table_u128 v)
{
	return (v >= l->lo && v <= l->hi) != l->negate;
}

const char *table_cidr_scan(const struct table_cidr *c, const struct mx_inet_addr *addr)
{
	table_u128 v = table_cidr_to_u128(addr);
	for (size_t i = 0; i < c->n; i++) {
		const struct table_cidr_line *l = &c->lines[i];
		if (l->op == TABLE_CIDR_ENDIF)
			continue;
		bool match = l->family == addr->family && table_cidr_line_match(l, v);
		if (l->op == TABLE_CIDR_IF) {
			if (!match)
				i = l->end; /* skip the block, family mismatch included */
			continue;
		}
		if (match)
			return l->value;
	}
	return NULL;
}

/* ---- compilation into disjoint intervals ---- */

struct table_cidr_ival {
	table_u128 lo, hi;
};

/* A set of intervals, at most TABLE_CIDR_DEPTH_MAX + 2 of them (each constraint of a rule
 * splits at most one more interval off). */
struct table_cidr_set {
	struct table_cidr_ival iv[TABLE_CIDR_DEPTH_MAX + 2];
	unsigned n;
};

static void table_cidr_set_constrain(struct table_cidr_set *s, const struct table_cidr_line *l)
{
	struct table_cidr_set r = { .n = 0 };
	for (unsigned i = 0; i < s->n; i++) {
		table_u128 lo = s->iv[i].lo, hi = s->iv[i].hi;
		if (!l->negate) {
			table_u128 a = lo > l->lo ? lo : l->lo, b = hi < l->hi ? hi : l->hi;
			if (a <= b)
				r.iv[r.n++] = (struct table_cidr_ival){ a, b };
		} else {
			if (lo < l->lo)
				r.iv[r.n++] = (struct table_cidr_ival){ lo, hi < l->lo - 1 ? hi : l->lo - 1 };
			if (hi > l->hi)
				r.iv[r.n++] = (struct table_cidr_ival){ lo > l->hi + 1 ? lo : l->hi + 1, hi };
		}
	}
	*s = r;
}

struct table_cidr_event {
	table_u128 pos;
	uint32_t rule;
};

static int table_cidr_event_cmp(const void *a, const void *b)
{
	const struct table_cidr_event *x = a, *y = b;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

struct table_cidr_vec {
	void *p;
	size_t n, cap, size;
};

static void *table_cidr_vec_add(struct table_cidr_vec *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 256;
		void *np = realloc(v->p, cap * v->size);
		if (!np)
			return NULL;
		v->p = np;
		v->cap = cap;
	}
	return (char *)v->p + v->size * v->n++;
}

/* A binary min-heap of rule indices. */
static void table_cidr_heap_push(uint32_t *h, size_t *n, uint32_t x)
{
	size_t i = (*n)++;
	while (i > 0 && h[(i - 1) / 2] > x) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = x;
}

static void table_cidr_heap_pop(uint32_t *h, size_t *n)
{
	uint32_t x = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= x)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = x;
}

/* Sweep one family: starts/ends are the interval events, rules the rule values. */
static int table_cidr_sweep(uint8_t family, struct table_cidr_event *st, size_t ns,
			    struct table_cidr_event *en, size_t ne, char *const *values,
			    uint32_t *active, struct table_cidr_vec *out)
{
	if (ns == 0)
		return 0; /* no interval of this family */
	qsort(st, ns, sizeof(*st), table_cidr_event_cmp);
	if (ne)
		qsort(en, ne, sizeof(*en), table_cidr_event_cmp);
	uint32_t *heap = malloc((ns + 1) * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	size_t hn = 0, i = 0, j = 0;
	const table_u128 max = table_cidr_max(family);
	struct table_cidr_segment *prev = NULL;
	while (i < ns || j < ne) {
		table_u128 pos;
		if (i < ns && (j >= ne || st[i].pos <= en[j].pos))
			pos = st[i].pos;
		else
			pos = en[j].pos;
		while (j < ne && en[j].pos == pos)
			active[en[j++].rule]--;
		while (i < ns && st[i].pos == pos) {
			if (active[st[i].rule]++ == 0)
				table_cidr_heap_push(heap, &hn, st[i].rule);
			i++;
		}
		while (hn > 0 && active[heap[0]] == 0)
			table_cidr_heap_pop(heap, &hn);
		if (hn == 0) {
			prev = NULL; /* a gap: never merge across it */
			continue;
		}
		table_u128 next_end;
		if (i < ns || j < ne) {
			table_u128 np = i < ns && (j >= ne || st[i].pos <= en[j].pos) ? st[i].pos
										  : en[j].pos;
			next_end = np - 1;
		} else {
			next_end = max;
		}
		uint32_t rule = heap[0];
		if (prev && prev->rule == rule && prev->family == family) {
			table_cidr_from_u128(family, next_end, prev->hi);
			continue;
		}
		struct table_cidr_segment *s = table_cidr_vec_add(out);
		if (!s) {
			free(heap);
			return -ENOMEM;
		}
		s->family = family;
		s->rule = rule;
		s->value = values[rule];
		table_cidr_from_u128(family, pos, s->lo);
		table_cidr_from_u128(family, next_end, s->hi);
		prev = s; /* valid until the next add, which only happens after this use */
	}
	free(heap);
	return 0;
}

int table_cidr_compile(const struct table_cidr *c, struct table_cidr_segment **segs, size_t *n)
{
	struct table_cidr_vec out = { .size = sizeof(struct table_cidr_segment) };
	char **values = malloc((c->rules + 1) * sizeof(*values));
	uint32_t *active = calloc(c->rules + 1, sizeof(*active));
	int rc = -ENOMEM;
	if (!values || !active)
		goto done;
	static const uint8_t families[2] = { AF_INET, AF_INET6 };
	for (int f = 0; f < 2; f++) {
		uint8_t family = families[f];
		struct table_cidr_vec st = { .size = sizeof(struct table_cidr_event) };
		struct table_cidr_vec en = { .size = sizeof(struct table_cidr_event) };
		const struct table_cidr_line *conds[TABLE_CIDR_DEPTH_MAX];
		unsigned depth = 0;
		uint32_t rule = 0;
		/* skip_to: while inside an IF of the other family, its rules cannot match. */
		size_t skip_to = 0;
		for (size_t k = 0; k < c->n; k++) {
			const struct table_cidr_line *l = &c->lines[k];
			if (l->op == TABLE_CIDR_ENDIF) {
				if (k >= skip_to)
					depth--;
				continue;
			}
			if (l->op == TABLE_CIDR_IF) {
				if (k < skip_to)
					continue;
				if (l->family != family) {
					skip_to = l->end + 1;
					continue;
				}
				conds[depth++] = l;
				continue;
			}
			uint32_t r = rule++;
			values[r] = l->value;
			if (k < skip_to || l->family != family)
				continue;
			struct table_cidr_set s = { .n = 1 };
			s.iv[0] = (struct table_cidr_ival){ 0, table_cidr_max(family) };
			for (unsigned d = 0; d < depth && s.n; d++)
				table_cidr_set_constrain(&s, conds[d]);
			if (s.n)
				table_cidr_set_constrain(&s, l);
			for (unsigned q = 0; q < s.n; q++) {
				struct table_cidr_event *e = table_cidr_vec_add(&st);
				if (!e)
					goto vec_fail;
				*e = (struct table_cidr_event){ s.iv[q].lo, r };
				if (s.iv[q].hi != table_cidr_max(family)) {
					e = table_cidr_vec_add(&en);
					if (!e)
						goto vec_fail;
					*e = (struct table_cidr_event){ s.iv[q].hi + 1, r };
				}
			}
		}
		rc = table_cidr_sweep(family, st.p, st.n, en.p, en.n, values, active, &out);
		free(st.p);
		free(en.p);
		if (rc < 0)
			goto done;
		memset(active, 0, (c->rules + 1) * sizeof(*active));
		continue;
vec_fail:
		free(st.p);
		free(en.p);
		rc = -ENOMEM;
		goto done;
	}
	*segs = out.p;
	*n = out.n;
	out.p = NULL;
	rc = 0;
done:
	free(out.p);
	free(values);
	free(active);
	return rc;
}
