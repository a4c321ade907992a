/* header_checks / body_checks sets on Hyperscan with PCRE2 and regexec(3); see checks.h. */
#include "tables/checks.h"

#include <errno.h>
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "tables/checks_cache.h"
#include "tables/rule_file.h"
#include "tables/tables_internal.h"

_Static_assert(CHECKS_DEPTH_MAX == RULE_FILE_DEPTH_MAX, "one if/endif bound");

/* How a rule is decided. */
enum checks_mode {
	CHECKS_MODE_EXACT,   /* the Hyperscan hit is the answer */
	CHECKS_MODE_CONFIRM, /* Hyperscan hit (superset), confirmed by PCRE2/regexec */
	CHECKS_MODE_NONE,    /* not in the database: PCRE2/regexec on every subject */
};
_Static_assert(CHECKS_MODE_EXACT == (int)CHECKS_CACHE_EXACT &&
		       CHECKS_MODE_CONFIRM == (int)CHECKS_CACHE_CONFIRM &&
		       CHECKS_MODE_NONE == (int)CHECKS_CACHE_NONE,
	       "the cache stores modes as they are");

struct checks_rule {
	uint8_t op; /* enum rule_file_op */
	uint8_t mode;
	bool negate, has_refs;
	uint32_t end; /* IF: index of its ENDIF */
	uint32_t file, line;
	struct rule_file_re re;
	char *result;
	char *hs_expr; /* only while compiling */
	unsigned hs_flags;
};

struct checks {
	struct checks_rule *rules;
	size_t n, cap;
	uint32_t *always; /* rules to visit whatever Hyperscan says, ascending */
	size_t nalways;
	hs_database_t *db;
	struct checks_stats st;
};

struct checks_scratch {
	hs_scratch_t *hs;
	uint64_t *bits; /* rule index -> Hyperscan matched */
	uint32_t *ids;  /* the indices set in bits, to clear them */
	size_t cap;     /* rules bits/ids can hold */
	size_t nids;
	struct rule_file_matcher m;
	/* regexec(3) wants a NUL-terminated subject (REG_STARTEND is a glibc/BSD extension
	 * the sanitizers' interceptor ignores): a copy, made once per lookup that needs it */
	char *z;
	size_t zcap;
	const char *zsrc; /* the subject z holds a copy of, for this lookup */
};

static const char *const checks_action_names[CHECKS_ACTION_MAX] = {
	[CHECKS_DUNNO] = "DUNNO",     [CHECKS_REJECT] = "REJECT",   [CHECKS_DISCARD] = "DISCARD",
	[CHECKS_HOLD] = "HOLD",       [CHECKS_IGNORE] = "IGNORE",   [CHECKS_STRIP] = "STRIP",
	[CHECKS_REPLACE] = "REPLACE", [CHECKS_PREPEND] = "PREPEND", [CHECKS_WARN] = "WARN",
	[CHECKS_INFO] = "INFO",       [CHECKS_REDIRECT] = "REDIRECT", [CHECKS_FILTER] = "FILTER",
	[CHECKS_BCC] = "BCC",         [CHECKS_PASS] = "PASS",       [CHECKS_UNKNOWN] = "UNKNOWN",
};

const char *checks_action_name(enum checks_action a)
{
	return (unsigned)a < CHECKS_ACTION_MAX ? checks_action_names[a] : "?";
}

/* ---- pattern translation to Hyperscan ------------------------------------------------- */

struct checks_buf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void checks_put(struct checks_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* POSIX ERE -> Hyperscan (PCRE syntax). Returns 1 when translated (the caller confirms every
 * hit with regexec, so the translation only has to keep every match), 0 when the pattern
 * must run without Hyperscan, -ENOMEM. */
static int checks_ere_to_hs(const char *pat, bool nl, struct checks_buf *b)
{
	const char *prev = "(";
	checks_put(b, "", 0); /* an empty pattern is an empty expression, not none */
	for (const char *p = pat; *p; p++) {
		if (*p == '[') {
			checks_put(b, "[", 1);
			p++;
			if (*p == '^') {
				checks_put(b, "^", 1);
				p++;
			}
			if (*p == ']') { /* first ']' is a member (XBD 9.3.5) */
				checks_put(b, "\\]", 2);
				p++;
			}
			for (; *p && *p != ']'; p++) {
				if (*p == '[' && p[1] == ':') {
					const char *e = strstr(p + 2, ":]");
					if (!e)
						return 0;
					checks_put(b, p, (size_t)(e + 2 - p));
					p = e + 1;
				} else if (*p == '[' && (p[1] == '.' || p[1] == '=')) {
					return 0; /* collating elements: no Hyperscan form */
				} else if (*p == '\\' || *p == '[') {
					checks_put(b, "\\", 1); /* literal in POSIX brackets */
					checks_put(b, p, 1);
				} else {
					checks_put(b, p, 1);
				}
			}
			if (!*p)
				return 0;
			checks_put(b, "]", 1);
			prev = "]";
			continue;
		}
		if (*p == '\\') {
			if (!p[1])
				return 0;
			/* glibc gives \w \< \b \1 ... their GNU meaning; punctuation is literal. */
			if (mx_ctype_is_alnum(p[1]) || strchr("<>`'", p[1]))
				return 0;
			checks_put(b, p, 2);
			p++;
			prev = "\\";
			continue;
		}
		if ((*p == '*' || *p == '+' || *p == '?' || *p == '{') && strchr("(|", *prev))
			return 0; /* a leading repetition: literal or error in glibc, not in PCRE */
		if (*p == '{' && p[1] == ',')
			return 0;
		if (*p == '(' && (p[1] == '?' || p[1] == '*'))
			return 0;
		checks_put(b, p, 1);
		prev = p;
	}
	(void)nl;
	return b->oom ? -ENOMEM : 1;
}

/* The Hyperscan side of a rule the reader compiled: its expression, flags and mode. Returns
 * 0 or -ENOMEM. */
static int checks_hs_expr(struct checks_rule *r, const struct rule_file_syntax *syn)
{
	const char *pat = syn->pattern;
	bool icase = syn->icase, ext = syn->ext, nl = syn->newline;
	uint32_t popts = syn->pcre_opts;
	bool x = popts & PCRE2_EXTENDED, anch = popts & PCRE2_ANCHORED,
	     endonly = popts & PCRE2_DOLLAR_ENDONLY;
	struct checks_buf b = { 0 };
	r->hs_flags = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
	if (r->re.pcre) {
		r->mode = CHECKS_MODE_EXACT;
		if (icase)
			r->hs_flags |= HS_FLAG_CASELESS;
		if (popts & PCRE2_MULTILINE)
			r->hs_flags |= HS_FLAG_MULTILINE;
		if (popts & PCRE2_DOTALL)
			r->hs_flags |= HS_FLAG_DOTALL;
		/* With x a '#' comment runs to the end of the pattern and would eat a closing
		 * parenthesis of ours: then scan unanchored and let PCRE2 confirm. */
		if (anch && !x)
			checks_put(&b, "\\A(?:", 5);
		else if (anch)
			r->mode = CHECKS_MODE_CONFIRM;
		if (x)
			checks_put(&b, "(?x)", 4);
		checks_put(&b, pat, strlen(pat));
		if (anch && !x)
			checks_put(&b, ")", 1);
		/* E: '$' only at the very end; Hyperscan's '$' also before a final newline,
		 * a superset. */
		if (endonly)
			r->mode = CHECKS_MODE_CONFIRM;
		if (b.oom)
			return -ENOMEM;
		r->hs_expr = b.p;
	} else {
		r->mode = CHECKS_MODE_NONE;
		if (ext) {
			int t = checks_ere_to_hs(pat, nl, &b);
			if (t < 0)
				return t;
			if (t == 1) {
				r->mode = CHECKS_MODE_CONFIRM;
				r->hs_expr = b.p;
				b.p = NULL;
				if (icase)
					r->hs_flags |= HS_FLAG_CASELESS;
				/* Without REG_NEWLINE '.' matches a newline (XBD 9.3.8). */
				r->hs_flags |= nl ? HS_FLAG_MULTILINE : HS_FLAG_DOTALL;
			}
			free(b.p);
		}
	}
	return 0;
}

static void checks_rule_free(struct checks_rule *r)
{
	rule_file_re_free(&r->re);
	free(r->result);
	free(r->hs_expr);
	r->hs_expr = NULL;
}

static int checks_push(struct checks *c, const struct checks_rule *r)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct checks_rule *nr = realloc(c->rules, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		c->rules = nr;
		c->cap = cap;
	}
	c->rules[c->n++] = *r;
	return 0;
}

/* Parse one source into c. */
static int checks_parse(struct checks *c, const struct checks_source *src, uint32_t file,
			char *err, size_t errlen)
{
	struct rule_file rf;
	rule_file_init(&rf, &(struct rule_file_spec){ .name = src->name ? src->name : "?",
						      .pcre = src->pcre,
						      .text = src->text,
						      .len = src->len,
						      .first_index = c->n,
						      .entries_max = CHECKS_RULES_MAX,
						      .action_max = CHECKS_RESULT_MAX / 2,
						      .action_noun = "action" });
	struct rule_file_rule e;
	int rc;
	while ((rc = rule_file_next(&rf, &e, err, errlen)) > 0) {
		struct checks_rule r = { .op = (uint8_t)e.op, .negate = e.negate,
					 .has_refs = e.has_refs, .file = file, .line = e.line,
					 .re = e.re };
		if (e.op == RULE_FILE_ENDIF)
			c->rules[e.if_index].end = (uint32_t)e.index;
		else if ((rc = checks_hs_expr(&r, &e.syn)) == 0 && e.op == RULE_FILE_MATCH &&
			 !(r.result = strdup(e.action)))
			rc = -ENOMEM;
		if (rc < 0 || (rc = checks_push(c, &r)) < 0) {
			checks_rule_free(&r);
			break;
		}
	}
	rule_file_free(&rf);
	return rc;
}

/* Build the Hyperscan database: a pattern Hyperscan refuses is retried as a prefilter and,
 * if that fails too, left out. hs_expression_info() finds most refusals cheaply; a refusal
 * only the full compile sees is taken out one by one. */
static int checks_build_db(struct checks *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct checks_rule *r = &c->rules[i];
		if (r->op == RULE_FILE_ENDIF || !r->hs_expr)
			continue;
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *ce = NULL;
		if (hs_expression_info(r->hs_expr, r->hs_flags, &info, &ce) != HS_SUCCESS) {
			hs_free_compile_error(ce);
			ce = NULL;
			r->hs_flags |= HS_FLAG_PREFILTER;
			r->mode = CHECKS_MODE_CONFIRM;
			if (hs_expression_info(r->hs_expr, r->hs_flags, &info, &ce) != HS_SUCCESS) {
				hs_free_compile_error(ce);
				r->mode = CHECKS_MODE_NONE;
				continue;
			}
		}
		free(info);
		n++;
	}
	const char **exprs = calloc(n ? n : 1, sizeof(*exprs));
	unsigned *flags = calloc(n ? n : 1, sizeof(*flags)), *ids = calloc(n ? n : 1, sizeof(*ids));
	int rc = -ENOMEM;
	if (!exprs || !flags || !ids)
		goto out;
	for (;;) {
		size_t k = 0;
		for (size_t i = 0; i < c->n; i++) {
			struct checks_rule *r = &c->rules[i];
			if (r->op == RULE_FILE_ENDIF || !r->hs_expr || r->mode == CHECKS_MODE_NONE)
				continue;
			exprs[k] = r->hs_expr;
			flags[k] = r->hs_flags;
			ids[k] = (unsigned)i;
			k++;
		}
		if (k == 0) {
			rc = 0;
			break;
		}
		hs_compile_error_t *ce = NULL;
		hs_database_t *db = NULL;
		c->st.hs_compiles++;
		if (hs_compile_multi(exprs, flags, ids, (unsigned)k, HS_MODE_BLOCK, NULL, &db, &ce) ==
		    HS_SUCCESS) {
			c->db = db;
			size_t dbsize = 0;
			if (hs_database_size(db, &dbsize) == HS_SUCCESS)
				c->st.hs_bytes = (double)dbsize;
			rc = 0;
			break;
		}
		int bad = ce ? ce->expression : -1;
		hs_free_compile_error(ce);
		if (bad < 0 || (size_t)bad >= k) {
			/* Not one pattern's fault (a resource limit): all run without it. */
			for (size_t i = 0; i < k; i++)
				c->rules[ids[i]].mode = CHECKS_MODE_NONE;
			rc = 0;
			break;
		}
		struct checks_rule *r = &c->rules[ids[bad]];
		if (!(r->hs_flags & HS_FLAG_PREFILTER)) {
			r->hs_flags |= HS_FLAG_PREFILTER;
			r->mode = CHECKS_MODE_CONFIRM;
		} else {
			r->mode = CHECKS_MODE_NONE;
		}
	}
out:
	free(exprs);
	free(flags);
	free(ids);
	return rc;
}

/* The rules that go to Hyperscan, as they are before checks_build_db() retries any: the
 * inputs of the cache key. Returns their number, with a calloc'd array in *out (NULL when
 * there are none), or -ENOMEM. */
static ssize_t checks_cache_inputs(const struct checks *c, struct checks_cache_rule **out)
{
	size_t n = 0;
	*out = NULL;
	for (size_t i = 0; i < c->n; i++)
		n += c->rules[i].op != RULE_FILE_ENDIF && c->rules[i].hs_expr;
	if (n == 0)
		return 0;
	struct checks_cache_rule *cr = calloc(n, sizeof(*cr));
	if (!cr)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct checks_rule *r = &c->rules[i];
		if (r->op == RULE_FILE_ENDIF || !r->hs_expr)
			continue;
		cr[k++] = (struct checks_cache_rule){ .expr = r->hs_expr, .flags = r->hs_flags,
						      .id = (unsigned)i, .mode = r->mode };
	}
	*out = cr;
	return (ssize_t)n;
}

/* checks_build_db(), or its result from the cache directory: a hit restores the database
 * and every rule's flags and mode as the compile decided them; a miss compiles and stores.
 * Trouble with the cache goes to c->st.cache_error, never fails the build. Returns 0 or
 * -ENOMEM. */
static int checks_build(struct checks *c, const struct checks_options *o)
{
	for (size_t i = 0; i < c->n; i++) /* whatever the reason, a rule Hyperscan does not see */
		if (c->rules[i].op != RULE_FILE_ENDIF && !c->rules[i].hs_expr)
			c->rules[i].mode = CHECKS_MODE_NONE;
	if (!o || !o->cache_dir || !*o->cache_dir)
		return checks_build_db(c);
	const char *dir = o->cache_dir;
	struct checks_cache_rule *cr = NULL;
	struct checks_cache_decision *cd = NULL;
	int dfd = -1;
	char why[256];
	ssize_t n = checks_cache_inputs(c, &cr);
	int rc = n < 0 ? (int)n : 0;
	if (n <= 0) /* nothing for Hyperscan: nothing worth caching */
		goto compile;
	uint8_t key[CHECKS_CACHE_KEY_LEN];
	if (!(cd = calloc((size_t)n, sizeof(*cd))) ||
	    (rc = checks_cache_key(cr, (size_t)n, c->n, key)) == -ENOMEM) {
		rc = -ENOMEM;
		goto out;
	}
	if (rc < 0) {
		snprintf(c->st.cache_error, sizeof(c->st.cache_error),
			 "checks cache %s: cannot compute the key; compiled instead", dir);
		goto compile;
	}
	if ((rc = checks_cache_dir_open(dir, &dfd, why, sizeof(why))) < 0) {
		snprintf(c->st.cache_error, sizeof(c->st.cache_error), "%s; compiled instead", why);
		goto compile;
	}
	hs_database_t *db = NULL;
	if ((rc = checks_cache_load(dfd, key, cr, (size_t)n, cd, &db, why, sizeof(why))) < 0)
		goto out;
	if (rc == 1) {
		for (size_t k = 0; k < (size_t)n; k++) {
			struct checks_rule *r = &c->rules[cr[k].id];
			r->hs_flags = cd[k].flags;
			r->mode = cd[k].mode;
		}
		c->db = db;
		size_t dbsize = 0;
		if (db && hs_database_size(db, &dbsize) == HS_SUCCESS)
			c->st.hs_bytes = (double)dbsize;
		c->st.cache_hit = true;
		rc = 0;
		goto out;
	}
	if (why[0])
		snprintf(c->st.cache_error, sizeof(c->st.cache_error),
			 "checks cache %s: %s; compiled again", dir, why);
compile:
	if (rc == -ENOMEM || (rc = checks_build_db(c)) < 0 || dfd < 0)
		goto out;
	for (size_t k = 0; k < (size_t)n; k++) {
		const struct checks_rule *r = &c->rules[cr[k].id];
		cd[k] = (struct checks_cache_decision){ .flags = r->hs_flags, .mode = r->mode };
	}
	struct checks_cache_limits lim = { .max_files = o->cache_max_files,
					   .max_bytes = o->cache_max_bytes };
	int wr = checks_cache_store(dfd, key, cr, cd, (size_t)n, c->db, &lim, why, sizeof(why));
	if (wr == 0)
		c->st.cache_stored = true;
	else if (!c->st.cache_error[0])
		snprintf(c->st.cache_error, sizeof(c->st.cache_error),
			 "checks cache %s: cannot store: %s", dir, why);
out:
	if (dfd >= 0)
		close(dfd);
	free(cr);
	free(cd);
	return rc;
}

int checks_compile(const struct checks_source *src, size_t n, struct checks **out, char *err,
		   size_t errlen)
{
	return checks_compile_opts(src, n, NULL, out, err, errlen);
}

int checks_compile_opts(const struct checks_source *src, size_t n, const struct checks_options *o,
			struct checks **out, char *err, size_t errlen)
{
	if (n > CHECKS_FILES_MAX) {
		snprintf(err, errlen, "more than %u check files in one list", CHECKS_FILES_MAX);
		return -EINVAL;
	}
	struct checks *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int rc = 0;
	for (size_t f = 0; f < n; f++)
		if ((rc = checks_parse(c, &src[f], (uint32_t)f, err, errlen)) < 0)
			goto fail;
	if ((rc = checks_build(c, o)) < 0)
		goto fail;
	rc = -ENOMEM;
	if (!(c->always = calloc(c->n ? c->n : 1, sizeof(*c->always))))
		goto fail;
	for (size_t i = 0; i < c->n; i++) {
		struct checks_rule *r = &c->rules[i];
		free(r->hs_expr);
		r->hs_expr = NULL;
		if (r->op == RULE_FILE_ENDIF)
			continue;
		if (r->op == RULE_FILE_IF)
			c->st.ifs++;
		else
			c->st.rules++;
		if (r->mode == CHECKS_MODE_EXACT)
			c->st.hs_exact++;
		else if (r->mode == CHECKS_MODE_CONFIRM)
			c->st.hs_confirm++;
		else
			c->st.no_hs++;
		if (r->op == RULE_FILE_IF || r->negate || r->mode == CHECKS_MODE_NONE)
			c->always[c->nalways++] = (uint32_t)i;
	}
	*out = c;
	return 0;
fail:
	checks_free(c);
	return rc;
}

void checks_free(struct checks *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		checks_rule_free(&c->rules[i]);
	free(c->rules);
	free(c->always);
	hs_free_database(c->db);
	free(c);
}

void checks_stats(const struct checks *c, struct checks_stats *st)
{
	*st = c ? c->st : (struct checks_stats){ 0 };
}

/* ---- reading a list of files ------------------------------------------------------------ */

#define CHECKS_FILE_MAX (64u << 20)

int checks_compile_list(const char *list, struct checks **out, char *err, size_t errlen)
{
	return checks_compile_list_opts(list, NULL, out, err, errlen);
}

int checks_compile_list_opts(const char *list, const struct checks_options *o,
			     struct checks **out, char *err, size_t errlen)
{
	struct checks_source src[CHECKS_FILES_MAX];
	char *names[CHECKS_FILES_MAX], *texts[CHECKS_FILES_MAX];
	size_t n = 0;
	int rc = 0;
	*out = NULL;
	const char *p = list, *word;
	size_t l;
	while ((l = mx_list_next(&p, &word)) > 0) {
		if (n == CHECKS_FILES_MAX) {
			snprintf(err, errlen, "more than %u check files in one list",
				 CHECKS_FILES_MAX);
			rc = -EINVAL;
			goto out;
		}
		if (!(names[n] = strndup(word, l))) {
			rc = -ENOMEM;
			goto out;
		}
		texts[n] = NULL;
		n++;
		char *name = names[n - 1];
		bool pcre = strncmp(name, "pcre:", 5) == 0;
		if (!pcre && strncmp(name, "regexp:", 7) != 0) {
			snprintf(err, errlen, "%s: unsupported check table type (pcre: or regexp:)",
				 name);
			rc = -EINVAL;
			goto out;
		}
		size_t len;
		if ((rc = tables_read_file(name + (pcre ? 5 : 7), CHECKS_FILE_MAX, &texts[n - 1],
					   &len, err, errlen)) < 0) {
			/* an unreadable file is a configuration error like a bad line */
			if (rc != -ENOMEM)
				rc = -EINVAL;
			goto out;
		}
		src[n - 1] = (struct checks_source){ name, pcre, texts[n - 1], len };
	}
	if (n > 0)
		rc = checks_compile_opts(src, n, o, out, err, errlen);
out:
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		free(texts[i]);
	}
	return rc;
}

/* ---- scratch and matching --------------------------------------------------------------- */

int checks_scratch_alloc(const struct checks *c, struct checks_scratch **sp)
{
	struct checks_scratch *s = *sp;
	bool fresh = !s;
	if (fresh) {
		if (!(s = calloc(1, sizeof(*s))))
			return -ENOMEM;
		if (rule_file_matcher_init(&s->m, RULE_FILE_GROUPS_MAX) < 0)
			goto fail;
	}
	if (c && c->n > s->cap) {
		size_t words = (c->n + 63) / 64;
		uint64_t *nb = realloc(s->bits, words * sizeof(*nb));
		if (!nb)
			goto fail;
		s->bits = nb;
		memset(s->bits, 0, words * sizeof(*nb));
		uint32_t *ni = realloc(s->ids, c->n * sizeof(*ni));
		if (!ni)
			goto fail;
		s->ids = ni;
		s->cap = c->n;
	}
	if (c && c->db && hs_alloc_scratch(c->db, &s->hs) != HS_SUCCESS)
		goto fail;
	*sp = s;
	return 0;
fail:
	if (fresh)
		checks_scratch_free(s);
	return -ENOMEM;
}

void checks_scratch_free(struct checks_scratch *s)
{
	if (!s)
		return;
	hs_free_scratch(s->hs);
	free(s->bits);
	free(s->ids);
	free(s->z);
	rule_file_matcher_free(&s->m);
	free(s);
}

/* Run rule r with its own engine; fills caps (2 * (nsub + 1)) when non-NULL.
 * Returns 1, 0, or <0. */
static int checks_exec(const struct checks_rule *r, struct checks_scratch *s, const char *subj,
		       size_t len, size_t *caps)
{
	if (r->re.pcre)
		return rule_file_exec(&r->re, &s->m, subj, len, caps);
	if (s->zsrc != subj) {
		if (len + 1 > s->zcap) {
			size_t cap = len + 1 < 4096 ? 4096 : len + 1;
			char *nz = realloc(s->z, cap);
			if (!nz)
				return -ENOMEM;
			s->z = nz;
			s->zcap = cap;
		}
		memcpy(s->z, subj, len);
		s->z[len] = '\0';
		s->zsrc = subj;
	}
	return rule_file_exec(&r->re, &s->m, s->z, len, caps);
}

/* The winner: substitute and classify as cleanup_act() does. */
static int checks_finish(const struct checks_rule *r, struct checks_scratch *s, const char *subj,
			 size_t len, char *out, size_t outlen, struct checks_result *res)
{
	size_t caps[2 * (RULE_FILE_GROUPS_MAX + 1)];
	const size_t *cp = NULL;
	if (r->has_refs) {
		int m = checks_exec(r, s, subj, len, caps);
		if (m < 0)
			return m;
		if (m == 0)
			return -EIO; /* Hyperscan and the engine disagree: a bug, reported */
		cp = caps;
	}
	int rc = rule_file_expand(r->result, r->re.nsub, subj, cp, out, outlen);
	if (rc < 0)
		return rc;
	size_t w = strcspn(out, " \t");
	res->action = CHECKS_UNKNOWN;
	if (w == 2 && strncasecmp(out, "OK", 2) == 0) {
		res->action = CHECKS_DUNNO;
	} else {
		for (unsigned a = 0; a < CHECKS_UNKNOWN; a++)
			if (strlen(checks_action_names[a]) == w &&
			    strncasecmp(out, checks_action_names[a], w) == 0)
				res->action = (enum checks_action)a;
	}
	const char *t = out + w;
	t += strspn(t, " \t");
	res->text = t;
	res->value = out;
	res->file = r->file;
	res->line = r->line;
	return 1;
}

static int checks_on_match(unsigned id, unsigned long long from, unsigned long long to,
			   unsigned flags, void *ctx)
{
	(void)from;
	(void)to;
	(void)flags;
	struct checks_scratch *s = ctx;
	uint64_t bit = 1ull << (id % 64);
	if (!(s->bits[id / 64] & bit)) {
		s->bits[id / 64] |= bit;
		s->ids[s->nids++] = id;
	}
	return 0;
}

static int checks_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int checks_match(const struct checks *c, struct checks_scratch *s, const char *subj, size_t len,
		 char *out, size_t outlen, struct checks_result *res)
{
	if (!c || c->n == 0)
		return 0;
	if (len > CHECKS_SUBJECT_MAX)
		return -E2BIG;
	/* A scratch not grown for this set is a caller bug. */
	if (s->cap < c->n || (c->db && !s->hs))
		return -EINVAL;
	s->nids = 0;
	s->zsrc = NULL;
	if (c->db &&
	    hs_scan(c->db, subj, (unsigned)len, 0, s->hs, checks_on_match, s) != HS_SUCCESS) {
		for (size_t i = 0; i < s->nids; i++)
			s->bits[s->ids[i] / 64] = 0;
		return -EIO;
	}
	if (s->nids > 1)
		qsort(s->ids, s->nids, sizeof(*s->ids), checks_cmp_u32);
	size_t i = 0, j = 0;
	uint32_t skip = 0;
	int rc = 0;
	while (i < s->nids || j < c->nalways) {
		uint32_t a = i < s->nids ? s->ids[i] : UINT32_MAX;
		uint32_t b = j < c->nalways ? c->always[j] : UINT32_MAX;
		uint32_t k = a < b ? a : b;
		if (a == k)
			i++;
		if (b == k)
			j++;
		if (k < skip)
			continue;
		const struct checks_rule *r = &c->rules[k];
		int m;
		if (r->mode == CHECKS_MODE_NONE)
			m = checks_exec(r, s, subj, len, NULL);
		else if (!(s->bits[k / 64] & (1ull << (k % 64))))
			m = 0;
		else if (r->mode == CHECKS_MODE_CONFIRM)
			m = checks_exec(r, s, subj, len, NULL);
		else
			m = 1;
		if (m < 0) {
			rc = m;
			break;
		}
		bool hit = (m == 1) != r->negate;
		if (r->op == RULE_FILE_IF) {
			if (!hit)
				skip = r->end;
			continue;
		}
		if (hit) {
			rc = checks_finish(r, s, subj, len, out, outlen, res);
			break;
		}
	}
	for (size_t q = 0; q < s->nids; q++)
		s->bits[s->ids[q] / 64] = 0;
	s->nids = 0;
	return rc;
}

int checks_match_slow(const struct checks *c, struct checks_scratch *s, const char *subj,
		      size_t len, char *out, size_t outlen, struct checks_result *res)
{
	if (!c)
		return 0;
	if (len > CHECKS_SUBJECT_MAX)
		return -E2BIG;
	s->zsrc = NULL;
	for (size_t i = 0; i < c->n; i++) {
		const struct checks_rule *r = &c->rules[i];
		if (r->op == RULE_FILE_ENDIF)
			continue;
		int m = checks_exec(r, s, subj, len, NULL);
		if (m < 0)
			return m;
		bool hit = (m == 1) != r->negate;
		if (r->op == RULE_FILE_IF) {
			if (!hit)
				i = r->end;
			continue;
		}
		if (hit)
			return checks_finish(r, s, subj, len, out, outlen, res);
	}
	return 0;
}
