/* regexp: and pcre: tables; see table_regexp.h. */
#include "tables/table_regexp.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tables/table_parse.h"

enum table_regexp_op { TABLE_REGEXP_RULE, TABLE_REGEXP_IF, TABLE_REGEXP_ENDIF };

/* Bounds on PCRE2's backtracking: a hostile key must not burn a worker. */
#define TABLE_REGEXP_MATCH_LIMIT 1000000u
#define TABLE_REGEXP_DEPTH_LIMIT 10000u
#define TABLE_REGEXP_GROUPS_MAX 99u

struct table_regexp_rule {
	uint8_t op;
	bool negate;
	unsigned nsub;
	uint32_t end; /* IF: index of its ENDIF */
	regex_t posix;
	bool posix_ok;
	pcre2_code *pcre;
	char *result;
};

struct table_regexp {
	bool pcre;
	struct table_regexp_rule *rules;
	size_t n, cap, results;
	unsigned max_nsub;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	regmatch_t *pm;
};

/* Walk a result template. With caps == NULL only checks it: every reference must be a
 * number <= nsub (and there must be none when nsub_allowed is false). Otherwise appends
 * the substituted text to out. Returns 0, -EINVAL (reason in err) or -E2BIG. */
static int table_regexp_subst(const char *t, unsigned nsub, bool refs_allowed, const char *key,
			      const size_t *caps /* pairs start,end; SIZE_MAX unset */,
			      char *out, size_t outlen, char *err, size_t errlen)
{
	size_t w = 0;
#define TABLE_REGEXP_PUT(ptr, cnt)                                                          \
	do {                                                                               \
		if (caps) {                                                                \
			if (w + (cnt) >= outlen)                                           \
				return -E2BIG;                                             \
			memcpy(out + w, (ptr), (cnt));                                     \
			w += (cnt);                                                        \
		}                                                                          \
	} while (0)
	for (const char *p = t; *p;) {
		if (*p != '$') {
			const char *q = strchr(p, '$');
			size_t n = q ? (size_t)(q - p) : strlen(p);
			TABLE_REGEXP_PUT(p, n);
			p += n;
			continue;
		}
		p++;
		if (*p == '$') {
			TABLE_REGEXP_PUT("$", 1);
			p++;
			continue;
		}
		const char *ns, *ne;
		if (*p == '{' || *p == '(') {
			char close = *p == '{' ? '}' : ')';
			ns = p + 1;
			ne = strchr(ns, close);
			if (!ne) {
				snprintf(err, errlen, "unmatched '%c' in result \"%.64s\"", *p, t);
				return -EINVAL;
			}
			p = ne + 1;
		} else if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			   (*p >= 'A' && *p <= 'Z') || *p == '_') {
			ns = p;
			while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			       (*p >= 'A' && *p <= 'Z') || *p == '_')
				p++;
			ne = p;
		} else {
			/* A '$' with no name after it: Postfix refuses the rule ("empty macro
			 * name"); write "$$" for a literal dollar. */
			snprintf(err, errlen, "empty macro name in result \"%.64s\" (use $$ for $)", t);
			return -EINVAL;
		}
		size_t len = (size_t)(ne - ns);
		if (len == 0 || len > 2 || strspn(ns, "0123456789") < len) {
			snprintf(err, errlen, "non-numeric replacement index \"%.*s\"",
				 (int)(len > 32 ? 32 : len), ns);
			return -EINVAL;
		}
		unsigned idx = (unsigned)atoi(ns);
		if (idx == 0) {
			/* Postfix: "$0" is no capture group (postmap refuses the rule) */
			snprintf(err, errlen, "out-of-range replacement index \"0\"");
			return -EINVAL;
		}
		if (!refs_allowed) {
			snprintf(err, errlen,
				 "$number in result after a negated pattern (nothing is captured)");
			return -EINVAL;
		}
		if (idx > nsub) {
			snprintf(err, errlen, "out-of-range replacement index \"%u\"", idx);
			return -EINVAL;
		}
		if (caps && caps[2 * idx] != SIZE_MAX)
			TABLE_REGEXP_PUT(key + caps[2 * idx], caps[2 * idx + 1] - caps[2 * idx]);
	}
	if (caps)
		out[w] = '\0';
	return 0;
#undef TABLE_REGEXP_PUT
}

static int table_regexp_push(struct table_regexp *re, const struct table_regexp_rule *r)
{
	if (re->n == re->cap) {
		size_t cap = re->cap ? re->cap * 2 : 32;
		struct table_regexp_rule *nr = realloc(re->rules, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		re->rules = nr;
		re->cap = cap;
	}
	re->rules[re->n++] = *r;
	return 0;
}

static void table_regexp_rule_free(struct table_regexp_rule *r)
{
	if (r->posix_ok)
		regfree(&r->posix);
	pcre2_code_free(r->pcre);
	free(r->result);
}

int table_regexp_posix_check(const char *pat, bool ext, char *why, size_t whylen)
{
	bool after_dup = false;
	for (const char *p = pat; *p; p++) {
		bool dup = false;
		if (*p == '[') { /* a bracket expression: ']' first is literal, [:class:] inside */
			const char *q = p + 1;
			if (*q == '^')
				q++;
			if (*q == ']')
				q++;
			while (*q && *q != ']') {
				if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
					const char *e = strchr(q + 2, q[1]);
					q = e && e[1] == ']' ? e + 2 : q + 1;
				} else {
					q++;
				}
			}
			if (!*q)
				return 0; /* unbalanced: regcomp() reports it */
			p = q;
		} else if (*p == '\\' && p[1]) {
			p++;
			if (!ext && *p == '{')
				dup = true;
			if (!ext && *p == '}')
				dup = true;
		} else if (ext && (*p == '*' || *p == '+' || *p == '?' || *p == '{')) {
			dup = true;
			if (*p == '{') {
				const char *q = p + 1;
				unsigned long v = 0;
				for (; *q && *q != '}'; q++) {
					if (*q >= '0' && *q <= '9') {
						v = v * 10 + (unsigned long)(*q - '0');
						if (v > 1000) {
							snprintf(why, whylen,
								 "repetition count above 1000");
							return -EINVAL;
						}
					} else {
						v = 0;
					}
				}
				if (*q)
					p = q;
			}
		} else if (!ext && *p == '*' && after_dup) {
			dup = true;
		}
		if (dup && after_dup) {
			snprintf(why, whylen,
				 "adjacent repetition operators are undefined in POSIX regular "
				 "expressions (use a group)");
			return -EINVAL;
		}
		after_dup = dup;
		if (!ext && *p == '*')
			after_dup = true;
	}
	return 0;
}

int table_regexp_syntax_parse(char *p, bool pcre, struct table_regexp_syntax *out, char **rest,
			      char *why, size_t whylen)
{
	char delim = *p;
	if (!delim || delim == ' ' || delim == '\t') {
		snprintf(why, whylen, "missing regular expression delimiter");
		return -EINVAL;
	}
	char *pat = ++p;
	while (*p && *p != delim) {
		if (*p == '\\' && p[1])
			p++;
		p++;
	}
	if (*p != delim) {
		snprintf(why, whylen, "missing closing delimiter '%c'", delim);
		return -EINVAL;
	}
	*p++ = '\0';
	*out = (struct table_regexp_syntax){ .pattern = pat, .icase = true, .ext = true,
					     .pcre_opts = PCRE2_CASELESS | PCRE2_DOTALL };
	for (; *p && *p != ' ' && *p != '\t'; p++) {
		switch (*p) {
		case 'i':
			out->icase = !out->icase;
			out->pcre_opts ^= PCRE2_CASELESS;
			break;
		case 'x':
			if (pcre)
				out->pcre_opts ^= PCRE2_EXTENDED;
			else
				out->ext = !out->ext;
			break;
		case 'm':
			if (pcre)
				out->pcre_opts ^= PCRE2_MULTILINE;
			else
				out->newline = !out->newline;
			break;
		case 's':
		case 'A':
		case 'E':
		case 'U':
		case 'X':
			if (!pcre)
				goto unknown;
			out->pcre_opts ^= *p == 's' ? PCRE2_DOTALL
					: *p == 'A' ? PCRE2_ANCHORED
					: *p == 'E' ? PCRE2_DOLLAR_ENDONLY
					: *p == 'U' ? PCRE2_UNGREEDY
						    : 0u;
			break;
		default:
unknown:
			snprintf(why, whylen, "unknown regexp option \"%c\"", *p);
			return -EINVAL;
		}
	}
	*rest = p;
	return 0;
}

/* Compile one pattern: `p` points at the delimiter. On success sets *rest after the flags. */
static int table_regexp_pattern(struct table_regexp *re, char *p, struct table_regexp_rule *r,
				char **rest, char *why, size_t whylen)
{
	struct table_regexp_syntax syn;
	if (table_regexp_syntax_parse(p, re->pcre, &syn, rest, why, whylen) < 0)
		return -EINVAL;
	char *pat = syn.pattern;
	bool icase = syn.icase, ext = syn.ext, nl = syn.newline;
	uint32_t popts = syn.pcre_opts;
	if (re->pcre) {
		int ec;
		PCRE2_SIZE eo;
		r->pcre = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, popts, &ec, &eo, NULL);
		if (!r->pcre) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(ec, msg, sizeof(msg));
			snprintf(why, whylen, "error in regex at offset %zu: %s", (size_t)eo,
				 (const char *)msg);
			return -EINVAL;
		}
		uint32_t cc = 0;
		pcre2_pattern_info(r->pcre, PCRE2_INFO_CAPTURECOUNT, &cc);
		r->nsub = cc;
		/* JIT where available; failure just means the interpreter runs. */
		pcre2_jit_compile(r->pcre, PCRE2_JIT_COMPLETE);
	} else {
		int flags = (ext ? REG_EXTENDED : 0) | (icase ? REG_ICASE : 0) | (nl ? REG_NEWLINE : 0);
		if (table_regexp_posix_check(pat, ext, why, whylen) < 0)
			return -EINVAL;
		int ec = regcomp(&r->posix, pat, flags);
		if (ec) {
			char msg[160];
			regerror(ec, &r->posix, msg, sizeof(msg));
			snprintf(why, whylen, "regcomp: %s", msg);
			return -EINVAL;
		}
		r->posix_ok = true;
		r->nsub = (unsigned)r->posix.re_nsub;
	}
	if (r->nsub > TABLE_REGEXP_GROUPS_MAX) {
		snprintf(why, whylen, "more than %u capture groups", TABLE_REGEXP_GROUPS_MAX);
		return -EINVAL;
	}
	return 0;
}

int table_regexp_compile(const char *text, size_t len, bool pcre, struct table_regexp **out,
			 char *err, size_t errlen)
{
	struct table_regexp *re = calloc(1, sizeof(*re));
	if (!re)
		return -ENOMEM;
	re->pcre = pcre;
	struct table_text tt;
	table_text_init(&tt, text, len);
	uint32_t stack[TABLE_REGEXP_DEPTH_MAX];
	unsigned depth = 0, lineno = 0, if_line[TABLE_REGEXP_DEPTH_MAX];
	char *line, why[256];
	size_t llen;
	int rc;
	while ((rc = table_text_next(&tt, &line, &llen, &lineno, why, sizeof(why))) > 0) {
		struct table_regexp_rule r = { .op = TABLE_REGEXP_RULE };
		char *p = line;
		if (re->n >= TABLE_REGEXP_RULES_MAX) {
			snprintf(why, sizeof(why), "more than %u lines", TABLE_REGEXP_RULES_MAX);
			rc = -EINVAL;
			goto bad;
		}
		if (strcasecmp(p, "endif") == 0) { /* IF/ENDIF: any case, as Postfix */
			if (depth == 0) {
				snprintf(why, sizeof(why), "ENDIF without matching IF");
				rc = -EINVAL;
				goto bad;
			}
			r.op = TABLE_REGEXP_ENDIF;
			re->rules[stack[--depth]].end = (uint32_t)re->n;
			if ((rc = table_regexp_push(re, &r)) < 0)
				goto fail;
			continue;
		}
		if (strncasecmp(p, "if", 2) == 0 && (p[2] == ' ' || p[2] == '\t')) {
			r.op = TABLE_REGEXP_IF;
			p += 2;
			while (*p == ' ' || *p == '\t')
				p++;
		}
		if (*p == '!') {
			r.negate = true;
			p++;
		}
		char *rest;
		if ((rc = table_regexp_pattern(re, p, &r, &rest, why, sizeof(why))) < 0) {
			table_regexp_rule_free(&r);
			goto bad;
		}
		while (*rest == ' ' || *rest == '\t')
			rest++;
		if (r.op == TABLE_REGEXP_IF) {
			if (*rest) {
				snprintf(why, sizeof(why), "extra text after IF pattern: \"%.64s\"",
					 rest);
				rc = -EINVAL;
			} else if (depth == TABLE_REGEXP_DEPTH_MAX) {
				snprintf(why, sizeof(why), "if/endif nested deeper than %u",
					 TABLE_REGEXP_DEPTH_MAX);
				rc = -EINVAL;
			}
		} else if (!*rest) {
			snprintf(why, sizeof(why), "no replacement text");
			rc = -EINVAL;
		} else if (strlen(rest) > TABLE_VALUE_MAX) {
			snprintf(why, sizeof(why), "result longer than %u bytes", TABLE_VALUE_MAX);
			rc = -EINVAL;
		} else {
			rc = table_regexp_subst(rest, r.nsub, !r.negate, NULL, NULL, NULL, 0, why,
						sizeof(why));
			if (rc == 0 && !(r.result = strdup(rest)))
				rc = -ENOMEM;
		}
		if (rc < 0) {
			table_regexp_rule_free(&r);
			if (rc == -ENOMEM)
				goto fail;
			goto bad;
		}
		if (r.op == TABLE_REGEXP_IF) {
			if_line[depth] = lineno;
			stack[depth++] = (uint32_t)re->n;
		} else {
			re->results++;
		}
		if (r.nsub > re->max_nsub)
			re->max_nsub = r.nsub;
		if ((rc = table_regexp_push(re, &r)) < 0) {
			table_regexp_rule_free(&r);
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
	rc = -ENOMEM;
	if (pcre) {
		re->md = pcre2_match_data_create(re->max_nsub + 1, NULL);
		re->mctx = pcre2_match_context_create(NULL);
		if (!re->md || !re->mctx)
			goto fail;
		pcre2_set_match_limit(re->mctx, TABLE_REGEXP_MATCH_LIMIT);
		pcre2_set_depth_limit(re->mctx, TABLE_REGEXP_DEPTH_LIMIT);
	} else if (!(re->pm = calloc(re->max_nsub + 1, sizeof(*re->pm)))) {
		goto fail;
	}
	table_text_free(&tt);
	*out = re;
	return 0;
bad:
	snprintf(err, errlen, "line %u: %s", lineno, why);
fail:
	table_text_free(&tt);
	table_regexp_free(re);
	return rc;
}

/* Match rule r against key; fills caps (2 * (nsub + 1) entries) when non-NULL.
 * Returns 1 match, 0 no match, <0 error. */
static int table_regexp_exec(struct table_regexp *re, const struct table_regexp_rule *r,
			     const char *key, size_t klen, size_t *caps)
{
	if (re->pcre) {
		int rc = pcre2_match(r->pcre, (PCRE2_SPTR)key, klen, 0, 0, re->md, re->mctx);
		/* The JIT's small default stack is not a reason to fail a lookup: the
		 * interpreter (bounded by the depth limit) takes over. */
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(r->pcre, (PCRE2_SPTR)key, klen, 0, PCRE2_NO_JIT, re->md,
					 re->mctx);
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
			return -ERANGE;
		if (rc < 0)
			return -EIO;
		if (caps) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
			for (unsigned i = 0; i <= r->nsub; i++) {
				bool set = (int)i < rc && ov[2 * i] != PCRE2_UNSET;
				caps[2 * i] = set ? ov[2 * i] : SIZE_MAX;
				caps[2 * i + 1] = set ? ov[2 * i + 1] : SIZE_MAX;
			}
		}
		return 1;
	}
	int rc = regexec(&r->posix, key, r->nsub + 1, re->pm, 0);
	if (rc == REG_NOMATCH)
		return 0;
	if (rc != 0)
		return -EIO;
	if (caps) {
		for (unsigned i = 0; i <= r->nsub; i++) {
			bool set = re->pm[i].rm_so >= 0;
			caps[2 * i] = set ? (size_t)re->pm[i].rm_so : SIZE_MAX;
			caps[2 * i + 1] = set ? (size_t)re->pm[i].rm_eo : SIZE_MAX;
		}
	}
	return 1;
}

int table_regexp_lookup(struct table_regexp *re, const char *key, char *out, size_t outlen)
{
	size_t klen = strnlen(key, TABLE_REGEXP_KEY_MAX + 1);
	if (klen > TABLE_REGEXP_KEY_MAX)
		return -E2BIG;
	size_t caps[2 * (TABLE_REGEXP_GROUPS_MAX + 1)];
	for (size_t i = 0; i < re->n; i++) {
		const struct table_regexp_rule *r = &re->rules[i];
		if (r->op == TABLE_REGEXP_ENDIF)
			continue;
		int m = table_regexp_exec(re, r, key, klen, r->negate ? NULL : caps);
		if (m < 0)
			return m;
		bool hit = (m == 1) != r->negate;
		if (r->op == TABLE_REGEXP_IF) {
			if (!hit)
				i = r->end;
			continue;
		}
		if (!hit)
			continue;
		char why[8];
		int rc = table_regexp_subst(r->result, r->nsub, !r->negate, key,
					    r->negate ? (const size_t[2]){ SIZE_MAX, SIZE_MAX } : caps,
					    out, outlen, why, sizeof(why));
		return rc < 0 ? rc : 1;
	}
	return 0;
}

size_t table_regexp_rules(const struct table_regexp *re)
{
	return re->results;
}

void table_regexp_free(struct table_regexp *re)
{
	if (!re)
		return;
	for (size_t i = 0; i < re->n; i++)
		table_regexp_rule_free(&re->rules[i]);
	free(re->rules);
	pcre2_match_data_free(re->md);
	pcre2_match_context_free(re->mctx);
	free(re->pm);
	free(re);
}
