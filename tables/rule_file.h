/* The reader of Postfix regexp: and pcre: rule files (regexp_table(5), pcre_table(5)), shared
 * by lookup tables (table_regexp.c) and header/body checks (checks.c), and the two pieces both
 * need to run what it read: the PCRE2 / regcomp(3) pattern engines and the `$n` result
 * templates.
 *
 * A file is read as logical lines (table_parse.h: comments, blank lines, continuation lines).
 * Each logical line is one entry:
 *  - `/pattern/flags text` (a rule), `!/pattern/flags text` (matches when the pattern does
 *    not), any non-blank delimiter; the pattern ends at the next unescaped delimiter;
 *  - `if /pattern/flags` or `if !/pattern/flags` ... `endif` (any case; nested up to
 *    RULE_FILE_DEPTH_MAX): the lines in between are only tried when the IF matches;
 *  - the text of a rule (the lookup result or the check action) may hold `$n`, `${n}`, `$(n)`
 *    (capture group n, 1..99, empty when the group did not take part) and `$$` (a dollar).
 *
 * regexp: patterns are POSIX regular expressions compiled with regcomp(3) (REG_EXTENDED unless
 * the x flag turns it off, then basic syntax) as Postfix does, so matching is POSIX
 * leftmost-longest; pcre: patterns are PCRE2 (8-bit, no UTF). Flags toggle defaults: both kinds
 * are case-insensitive unless `i` is given; regexp: takes x and m (REG_NEWLINE); pcre: takes
 * i m s x A E U X, with DOTALL on by default (X, PCRE1's PCRE_EXTRA, is what PCRE2 always does).
 *
 * Where Postfix warns and skips a line (unknown flag, bad pattern, `$n` beyond the groups or
 * after a negated pattern, unbalanced if/endif, missing text), the reader refuses the file
 * with "NAME, line N: reason" ("line N: reason" without a name). Bounds: a logical line is at
 * most TABLE_LINE_MAX bytes, a rule's text at most the caller's action_max, the entries at most
 * the caller's entries_max, the nesting RULE_FILE_DEPTH_MAX, the groups RULE_FILE_GROUPS_MAX;
 * glibc-exploding POSIX repetitions ("a**", "a{2}{3}", counts over 1000) are refused. */
#ifndef MXGATE_TABLES_RULE_FILE_H
#define MXGATE_TABLES_RULE_FILE_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/table_parse.h"

#define RULE_FILE_DEPTH_MAX 64u  /* if/endif nesting */
#define RULE_FILE_GROUPS_MAX 99u /* capture groups of one pattern ($1..$99) */
/* Bounds on PCRE2's backtracking: a hostile key or header must not burn a worker. */
#define RULE_FILE_MATCH_LIMIT 1000000u
#define RULE_FILE_DEPTH_LIMIT 10000u

enum rule_file_op {
	RULE_FILE_MATCH, /* a rule: pattern and text */
	RULE_FILE_IF,    /* if /pattern/ */
	RULE_FILE_ENDIF, /* endif */
	RULE_FILE_OP_MAX,
};

const char *rule_file_op_name(enum rule_file_op op);

/* One "/pattern/flags" as written: the pattern (NUL-terminated, inside the reader's line
 * buffer) and what the flags made of the defaults. */
struct rule_file_syntax {
	char *pattern;
	bool icase;         /* both kinds */
	bool ext, newline;  /* regexp: REG_EXTENDED, REG_NEWLINE */
	uint32_t pcre_opts; /* pcre: the PCRE2 compile options, PCRE2_CASELESS included */
};

/* A compiled pattern: PCRE2 code for pcre:, a regex_t for regexp:. */
struct rule_file_re {
	bool pcre;
	bool posix_ok; /* posix holds a compiled pattern (regfree it) */
	unsigned nsub; /* capture groups, <= RULE_FILE_GROUPS_MAX */
	pcre2_code *code;
	regex_t posix;
};

void rule_file_re_free(struct rule_file_re *re);

/* One entry of a file. */
struct rule_file_rule {
	enum rule_file_op op;
	bool negate;   /* MATCH, IF: `!/.../` */
	bool has_refs; /* MATCH: the text uses $n */
	unsigned line; /* the first physical line of the entry */
	unsigned depth; /* if/endif nesting around the entry (an IF and its ENDIF: outside it) */
	size_t index;    /* the entry's position in the caller's list (first_index + count) */
	size_t if_index; /* ENDIF: index of its IF */
	struct rule_file_syntax syn; /* MATCH, IF; the pattern is valid until the next call */
	struct rule_file_re re;      /* MATCH, IF: compiled; the caller owns it from now on */
	const char *action; /* MATCH: the text, blanks trimmed; valid until the next call */
};

/* What a caller reads: the file and its limits. */
struct rule_file_spec {
	const char *name; /* for messages ("pcre:/etc/postfix/header_checks"), or NULL */
	bool pcre;        /* pcre: syntax, else regexp: */
	const char *text; /* the file; no NUL needed at len */
	size_t len;
	/* Entries (rules, IFs and ENDIFs) are numbered from first_index, as a caller that keeps
	 * several files in one list stores them; the reader refuses the entry numbered
	 * entries_max ("more than entries_max lines"). */
	size_t first_index, entries_max;
	size_t action_max;       /* longest rule text in bytes */
	const char *action_noun; /* for messages: "no <noun>", "<noun> longer than N bytes" */
};

struct rule_file {
	struct rule_file_spec spec;
	struct table_text text;
	size_t count; /* entries read */
	unsigned depth;
	size_t if_index[RULE_FILE_DEPTH_MAX]; /* the open IFs */
	unsigned if_line[RULE_FILE_DEPTH_MAX];
};

/* Start reading spec->text (which must outlive the reader). */
void rule_file_init(struct rule_file *rf, const struct rule_file_spec *spec);
void rule_file_free(struct rule_file *rf);

/* The next entry, its pattern compiled and its text checked against the pattern's groups.
 * Returns 1 with *out (the caller must rule_file_re_free(&out->re) or keep it), 0 at the end
 * of the file, -EINVAL with "NAME, line N: reason" in err (a bad line, an IF never closed),
 * or -ENOMEM. After an error the reader must only be freed. */
int rule_file_next(struct rule_file *rf, struct rule_file_rule *out, char *err, size_t errlen);

/* Substitute a rule's text (as returned by rule_file_next(), so valid for a pattern of nsub
 * groups) into out, NUL-terminated: caps holds 2 * (nsub + 1) offsets into subj (start, end;
 * SIZE_MAX for a group that did not take part) and may be NULL when the text has no $n.
 * Returns 0, or -E2BIG when out (outlen bytes) is too small. */
int rule_file_expand(const char *text, unsigned nsub, const char *subj, const size_t *caps,
		     char *out, size_t outlen);

/* What one thread needs to run compiled patterns of at most `groups` capture groups: PCRE2
 * match data with the backtracking limits, and regexec(3)'s match array. */
struct rule_file_matcher {
	unsigned groups;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	regmatch_t *pm; /* groups + 1 */
};

int rule_file_matcher_init(struct rule_file_matcher *m, unsigned groups); /* 0 or -ENOMEM */
void rule_file_matcher_free(struct rule_file_matcher *m);

/* Run re over subj[0, len) (for a regexp: pattern subj[len] must be '\0': regexec(3) wants a
 * string; REG_STARTEND still bounds it). re->nsub must be <= m->groups. Fills caps
 * (2 * (re->nsub + 1) entries, SIZE_MAX when unset) when non-NULL. Returns 1 match, 0 no
 * match, -ERANGE when PCRE2 hit its backtracking limit, -EIO on another engine error. */
int rule_file_exec(const struct rule_file_re *re, struct rule_file_matcher *m, const char *subj,
		   size_t len, size_t *caps);

#endif
