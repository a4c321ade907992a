/* Postfix regexp: / pcre: rule files: the reader, the pattern engines and the result
 * templates; see rule_file.h. */
#include "tables/rule_file.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"

static const char *const rule_file_op_names[RULE_FILE_OP_MAX] = {
	[RULE_FILE_MATCH] = "match",
	[RULE_FILE_IF] = "if",
	[RULE_FILE_ENDIF] = "endif",
};

const char *rule_file_op_name(enum rule_file_op op)
{
	return (unsigned)op < RULE_FILE_OP_MAX ? rule_file_op_names[op] : "?";
}

/* ---- /pattern/flags ----------------------------------------------------------------------- */

/* One "/pattern/flags", as Postfix's dict_regexp/dict_pcre read it; p points at the
 * delimiter. The pattern ends at the next unescaped delimiter (the backslash stays in the
 * pattern, as in Postfix) and is NUL-terminated in place. Returns 0 with *out and *rest (just
 * after the flags), or -EINVAL with a reason. */
static int rule_file_syntax_parse(char *p, bool pcre, struct rule_file_syntax *out, char **rest,
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
	*out = (struct rule_file_syntax){ .pattern = pat, .icase = true, .ext = true,
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

/* Before regcomp() of a regexp: pattern (ext: POSIX extended syntax, else basic).
 * POSIX leaves adjacent duplication symbols ("a+*", "a{2}{3}", "a**") undefined (XBD 9.4.6,
 * 9.3.6), and glibc's regcomp() expands each level by copying the tree, so a line like "c++++
 * ..." costs memory exponential in its length. Refuse them (write "(a+)*" if that is meant),
 * and bound {m,n} counts. Returns 0 or -EINVAL with a reason. */
static int rule_file_posix_check(const char *pat, bool ext, char *why, size_t whylen)
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
					if (mx_ctype_is_digit(*q)) {
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

/* Compile syn's pattern with PCRE2 (pcre) or regcomp(3) into *re (zeroed by the caller).
 * Returns 0 or -EINVAL with a reason; *re may hold something to free either way. */
static int rule_file_re_compile(struct rule_file_re *re, bool pcre,
				const struct rule_file_syntax *syn, char *why, size_t whylen)
{
	re->pcre = pcre;
	if (pcre) {
		int ec;
		PCRE2_SIZE eo;
		re->code = pcre2_compile((PCRE2_SPTR)syn->pattern, PCRE2_ZERO_TERMINATED,
					 syn->pcre_opts, &ec, &eo, NULL);
		if (!re->code) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(ec, msg, sizeof(msg));
			snprintf(why, whylen, "error in regex at offset %zu: %s", (size_t)eo,
				 (const char *)msg);
			return -EINVAL;
		}
		uint32_t cc = 0;
		pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &cc);
		re->nsub = cc;
		/* JIT where available; failure just means the interpreter runs. */
		pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
	} else {
		int flags = (syn->ext ? REG_EXTENDED : 0) | (syn->icase ? REG_ICASE : 0) |
			    (syn->newline ? REG_NEWLINE : 0);
		if (rule_file_posix_check(syn->pattern, syn->ext, why, whylen) < 0)
			return -EINVAL;
		int ec = regcomp(&re->posix, syn->pattern, flags);
		if (ec) {
			char msg[160];
			regerror(ec, &re->posix, msg, sizeof(msg));
			snprintf(why, whylen, "regcomp: %s", msg);
			return -EINVAL;
		}
		re->posix_ok = true;
		re->nsub = (unsigned)re->posix.re_nsub;
	}
	if (re->nsub > RULE_FILE_GROUPS_MAX) {
		snprintf(why, whylen, "more than %u capture groups", RULE_FILE_GROUPS_MAX);
		return -EINVAL;
	}
	return 0;
}

void rule_file_re_free(struct rule_file_re *re)
{
	if (re->posix_ok)
		regfree(&re->posix);
	re->posix_ok = false;
	pcre2_code_free(re->code);
	re->code = NULL;
}

/* ---- result templates ---------------------------------------------------------------------- */

/* Walk a result template (regexp_table(5): $n, ${n}, $(n), $$; the checks and messages of
 * Postfix's dict_regexp_prescan(), a reference being 1..nsub). With out == NULL only checks it:
 * no reference after a negated pattern (refs_allowed false), and sets *refs when there is
 * one. Otherwise writes the substituted text into out (caps as rule_file_expand()). Returns 0,
 * -EINVAL (reason in why), -E2BIG. */
static int rule_file_walk(const char *t, unsigned nsub, bool refs_allowed, bool *refs,
			  const char *subj, const size_t *caps, char *out, size_t outlen, char *why,
			  size_t whylen)
{
	size_t w = 0;
	for (const char *p = t; *p;) {
		const char *src = p;
		size_t cnt;
		if (*p != '$') {
			const char *q = strchr(p, '$');
			cnt = q ? (size_t)(q - p) : strlen(p);
			p += cnt;
		} else if (p[1] == '$') {
			cnt = 1;
			p += 2;
		} else {
			const char *ns, *ne;
			p++;
			if (*p == '{' || *p == '(') {
				ns = p + 1;
				ne = strchr(ns, *p == '{' ? '}' : ')');
				if (!ne) {
					snprintf(why, whylen, "unmatched '%c' in result \"%.64s\"", *p,
						 t);
					return -EINVAL;
				}
				p = ne + 1;
			} else {
				ns = p;
				while (mx_ctype_is_alnum(*p) || *p == '_')
					p++;
				ne = p;
			}
			size_t l = (size_t)(ne - ns);
			if (l == 0) {
				/* Postfix refuses the rule ("empty macro name"); "$$" is a dollar */
				snprintf(why, whylen,
					 "empty macro name in result \"%.64s\" (use $$ for $)", t);
				return -EINVAL;
			}
			if (l > 2 || strspn(ns, "0123456789") < l) {
				snprintf(why, whylen, "non-numeric replacement index \"%.*s\"",
					 (int)(l > 32 ? 32 : l), ns);
				return -EINVAL;
			}
			unsigned idx = (unsigned)(ns[0] - '0');
			if (l == 2)
				idx = idx * 10 + (unsigned)(ns[1] - '0');
			if (idx == 0) { /* postmap refuses $0 too: it is no capture group */
				snprintf(why, whylen, "out-of-range replacement index \"0\"");
				return -EINVAL;
			}
			if (!refs_allowed) {
				snprintf(why, whylen, "$number in result after a negated pattern "
						      "(nothing is captured)");
				return -EINVAL;
			}
			if (idx > nsub) {
				snprintf(why, whylen, "out-of-range replacement index \"%u\"", idx);
				return -EINVAL;
			}
			if (refs)
				*refs = true;
			if (!caps || caps[2 * idx] == SIZE_MAX)
				continue;
			src = subj + caps[2 * idx];
			cnt = caps[2 * idx + 1] - caps[2 * idx];
		}
		if (out) {
			if (w + cnt >= outlen)
				return -E2BIG;
			memcpy(out + w, src, cnt);
			w += cnt;
		}
	}
	if (out)
		out[w] = '\0';
	return 0;
}

int rule_file_expand(const char *text, unsigned nsub, const char *subj, const size_t *caps,
		     char *out, size_t outlen)
{
	char why[160];
	if (outlen == 0)
		return -E2BIG;
	return rule_file_walk(text, nsub, true, NULL, subj, caps, out, outlen, why, sizeof(why));
}

/* ---- the reader ----------------------------------------------------------------------------- */

void rule_file_init(struct rule_file *rf, const struct rule_file_spec *spec)
{
	*rf = (struct rule_file){ .spec = *spec };
	table_text_init(&rf->text, spec->text, spec->len);
}

void rule_file_free(struct rule_file *rf)
{
	table_text_free(&rf->text);
}

/* "NAME, line N: why" (or "line N: why") into err; returns -EINVAL. */
static int rule_file_fail(const struct rule_file *rf, unsigned line, const char *why, char *err,
			  size_t errlen)
{
	if (rf->spec.name)
		snprintf(err, errlen, "%s, line %u: %s", rf->spec.name, line, why);
	else
		snprintf(err, errlen, "line %u: %s", line, why);
	return -EINVAL;
}

/* The checks of one rule or IF line, in the order Postfix makes them: the pattern (p points
 * after "if" and "!"), then what follows it. Fills r; returns 0 or -EINVAL with a reason. */
static int rule_file_rule_parse(struct rule_file *rf, char *p, struct rule_file_rule *r,
				char *why, size_t whylen)
{
	char *rest;
	if (rule_file_syntax_parse(p, rf->spec.pcre, &r->syn, &rest, why, whylen) < 0)
		return -EINVAL;
	if (rule_file_re_compile(&r->re, rf->spec.pcre, &r->syn, why, whylen) < 0)
		return -EINVAL;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	if (r->op == RULE_FILE_IF) {
		if (*rest) {
			snprintf(why, whylen, "extra text after IF pattern: \"%.64s\"", rest);
			return -EINVAL;
		}
		if (rf->depth == RULE_FILE_DEPTH_MAX) {
			snprintf(why, whylen, "if/endif nested deeper than %u", RULE_FILE_DEPTH_MAX);
			return -EINVAL;
		}
		return 0;
	}
	if (!*rest) {
		snprintf(why, whylen, "no %s", rf->spec.action_noun);
		return -EINVAL;
	}
	if (strlen(rest) > rf->spec.action_max) {
		snprintf(why, whylen, "%s longer than %zu bytes", rf->spec.action_noun,
			 rf->spec.action_max);
		return -EINVAL;
	}
	r->action = rest;
	return rule_file_walk(rest, r->re.nsub, !r->negate, &r->has_refs, NULL, NULL, NULL, 0, why,
			      whylen);
}

int rule_file_next(struct rule_file *rf, struct rule_file_rule *r, char *err, size_t errlen)
{
	char *line, why[256];
	size_t llen;
	unsigned lineno = 0;
	*r = (struct rule_file_rule){ .op = RULE_FILE_MATCH };
	int rc = table_text_next(&rf->text, &line, &llen, &lineno, why, sizeof(why));
	if (rc < 0) {
		if (rc == -EINVAL) { /* why has the line already */
			if (rf->spec.name)
				snprintf(err, errlen, "%s, %s", rf->spec.name, why);
			else
				snprintf(err, errlen, "%s", why);
		}
		return rc;
	}
	if (rc == 0) {
		if (rf->depth > 0)
			return rule_file_fail(rf, rf->if_line[rf->depth - 1],
					      "IF has no matching ENDIF", err, errlen);
		return 0;
	}
	r->line = lineno;
	r->index = rf->spec.first_index + rf->count;
	r->depth = rf->depth;
	if (r->index >= rf->spec.entries_max) {
		snprintf(why, sizeof(why), "more than %zu lines", rf->spec.entries_max);
		return rule_file_fail(rf, lineno, why, err, errlen);
	}
	char *p = line;
	if (strcasecmp(p, "endif") == 0) { /* IF/ENDIF: any case, as Postfix */
		if (rf->depth == 0)
			return rule_file_fail(rf, lineno, "ENDIF without matching IF", err, errlen);
		r->op = RULE_FILE_ENDIF;
		r->depth = --rf->depth;
		r->if_index = rf->if_index[rf->depth];
		rf->count++;
		return 1;
	}
	if (strncasecmp(p, "if", 2) == 0 && (p[2] == ' ' || p[2] == '\t')) {
		r->op = RULE_FILE_IF;
		p += 2;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (*p == '!') {
		r->negate = true;
		p++;
	}
	if (rule_file_rule_parse(rf, p, r, why, sizeof(why)) < 0) {
		rule_file_re_free(&r->re);
		return rule_file_fail(rf, lineno, why, err, errlen);
	}
	if (r->op == RULE_FILE_IF) {
		rf->if_line[rf->depth] = lineno;
		rf->if_index[rf->depth] = r->index;
		rf->depth++;
	}
	rf->count++;
	return 1;
}

/* ---- matching -------------------------------------------------------------------------------- */

int rule_file_matcher_init(struct rule_file_matcher *m, unsigned groups)
{
	*m = (struct rule_file_matcher){ .groups = groups };
	m->md = pcre2_match_data_create(groups + 1, NULL);
	m->mctx = pcre2_match_context_create(NULL);
	m->pm = calloc(groups + 1, sizeof(*m->pm));
	if (!m->md || !m->mctx || !m->pm) {
		rule_file_matcher_free(m);
		return -ENOMEM;
	}
	pcre2_set_match_limit(m->mctx, RULE_FILE_MATCH_LIMIT);
	pcre2_set_depth_limit(m->mctx, RULE_FILE_DEPTH_LIMIT);
	return 0;
}

void rule_file_matcher_free(struct rule_file_matcher *m)
{
	pcre2_match_data_free(m->md);
	pcre2_match_context_free(m->mctx);
	free(m->pm);
	*m = (struct rule_file_matcher){ 0 };
}

int rule_file_exec(const struct rule_file_re *re, struct rule_file_matcher *m, const char *subj,
		   size_t len, size_t *caps)
{
	assert(re->nsub <= m->groups); /* a matcher too small for the set: a caller bug */
	if (re->pcre) {
		int rc = pcre2_match(re->code, (PCRE2_SPTR)subj, len, 0, 0, m->md, m->mctx);
		/* The JIT's small default stack is not a reason to fail a lookup: the
		 * interpreter (bounded by the depth limit) takes over. */
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(re->code, (PCRE2_SPTR)subj, len, 0, PCRE2_NO_JIT, m->md,
					 m->mctx);
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
			return -ERANGE;
		if (rc < 0)
			return -EIO;
		if (caps) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
			for (unsigned i = 0; i <= re->nsub; i++) {
				bool set = (int)i < rc && ov[2 * i] != PCRE2_UNSET;
				caps[2 * i] = set ? ov[2 * i] : SIZE_MAX;
				caps[2 * i + 1] = set ? ov[2 * i + 1] : SIZE_MAX;
			}
		}
		return 1;
	}
	/* REG_STARTEND: a NUL inside the subject does not end it (glibc, BSD). */
	m->pm[0].rm_so = 0;
	m->pm[0].rm_eo = (regoff_t)len;
	int rc = regexec(&re->posix, subj, re->nsub + 1, m->pm, REG_STARTEND);
	if (rc == REG_NOMATCH)
		return 0;
	if (rc != 0)
		return -EIO;
	if (caps) {
		for (unsigned i = 0; i <= re->nsub; i++) {
			bool set = m->pm[i].rm_so >= 0;
			caps[2 * i] = set ? (size_t)m->pm[i].rm_so : SIZE_MAX;
			caps[2 * i + 1] = set ? (size_t)m->pm[i].rm_eo : SIZE_MAX;
		}
	}
	return 1;
}
