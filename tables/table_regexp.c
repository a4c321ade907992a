/* regexp: and pcre: tables; see table_regexp.h. */
#include "tables/table_regexp.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tables/rule_file.h"
#include "tables/table_parse.h"

_Static_assert(TABLE_REGEXP_DEPTH_MAX == RULE_FILE_DEPTH_MAX, "one if/endif bound");

struct table_regexp_rule {
	uint8_t op; /* enum rule_file_op */
	bool negate;
	uint32_t end; /* IF: index of its ENDIF */
	struct rule_file_re re;
	char *result;
};

struct table_regexp {
	bool pcre;
	struct table_regexp_rule *rules;
	size_t n, cap, results;
	unsigned max_nsub;
	struct rule_file_matcher m;
};

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
	rule_file_re_free(&r->re);
	free(r->result);
}

int table_regexp_compile(const char *text, size_t len, bool pcre, struct table_regexp **out,
			 char *err, size_t errlen)
{
	struct table_regexp *re = calloc(1, sizeof(*re));
	if (!re)
		return -ENOMEM;
	re->pcre = pcre;
	struct rule_file rf;
	rule_file_init(&rf, &(struct rule_file_spec){ .pcre = pcre,
						      .text = text,
						      .len = len,
						      .entries_max = TABLE_REGEXP_RULES_MAX,
						      .action_max = TABLE_VALUE_MAX,
						      .action_noun = "replacement text" });
	struct rule_file_rule e;
	int rc;
	while ((rc = rule_file_next(&rf, &e, err, errlen)) > 0) {
		struct table_regexp_rule r = { .op = (uint8_t)e.op, .negate = e.negate, .re = e.re };
		if (e.op == RULE_FILE_ENDIF)
			re->rules[e.if_index].end = (uint32_t)e.index;
		else if (e.op == RULE_FILE_MATCH && !(r.result = strdup(e.action)))
			rc = -ENOMEM;
		if (rc < 0 || (rc = table_regexp_push(re, &r)) < 0) {
			table_regexp_rule_free(&r);
			goto fail;
		}
		if (e.op == RULE_FILE_MATCH)
			re->results++;
		if (r.re.nsub > re->max_nsub)
			re->max_nsub = r.re.nsub;
	}
	if (rc < 0)
		goto fail;
	if ((rc = rule_file_matcher_init(&re->m, re->max_nsub)) < 0)
		goto fail;
	rule_file_free(&rf);
	*out = re;
	return 0;
fail:
	rule_file_free(&rf);
	table_regexp_free(re);
	return rc;
}

int table_regexp_lookup(struct table_regexp *re, const char *key, char *out, size_t outlen)
{
	size_t klen = strnlen(key, TABLE_REGEXP_KEY_MAX + 1);
	if (klen > TABLE_REGEXP_KEY_MAX)
		return -E2BIG;
	size_t caps[2 * (RULE_FILE_GROUPS_MAX + 1)];
	for (size_t i = 0; i < re->n; i++) {
		const struct table_regexp_rule *r = &re->rules[i];
		if (r->op == RULE_FILE_ENDIF)
			continue;
		int m = rule_file_exec(&r->re, &re->m, key, klen, r->negate ? NULL : caps);
		if (m < 0)
			return m;
		bool hit = (m == 1) != r->negate;
		if (r->op == RULE_FILE_IF) {
			if (!hit)
				i = r->end;
			continue;
		}
		if (!hit)
			continue;
		int rc = rule_file_expand(r->result, r->re.nsub, key, r->negate ? NULL : caps, out,
					  outlen);
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
	rule_file_matcher_free(&re->m);
	free(re);
}
