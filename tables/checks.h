/* header_checks(5) / body_checks check sets: a list of Postfix `regexp:` and `pcre:` check
 * files (`header_checks = pcre:/a, regexp:/b`) compiled into ONE Hyperscan database.
 *
 * Source syntax is regexp_table(5) / pcre_table(5), as for table_regexp.h: `/re/flags ACTION
 * text`, any non-blank delimiter, `!/re/` negation, `if /re/` ... `endif` (nested, per file),
 * `$n`, `${n}`, `$(n)` and `$$` in the action text, comments, continuation lines. Errors give
 * the file name and line number (mxgate refuses a file where Postfix would warn and skip).
 *
 * How a line is matched (first matching rule in file order, files in list order, as Postfix's
 * maps_find()):
 *  - every rule (and every `if`) is a Hyperscan pattern with HS_FLAG_SINGLEMATCH and its rule
 *    index as id; one scan of the line gives the set of rules that match;
 *  - pcre: patterns go to Hyperscan as they are (flags i, m, s mapped; every pcre flag
 *    toggles, and i and s are on by default, as postmap shows: '.' crosses the newline of a
 *    folded header unless /s; x as `(?x)`; A as
 *    `\A(?:...)`); regexp: (POSIX ERE) patterns are translated to Hyperscan syntax where the
 *    translation keeps every match (bracket backslashes escaped, `.` made DOTALL as POSIX does
 *    without REG_NEWLINE) and are always confirmed with regexec(3), which also decides what a
 *    group captures (POSIX leftmost-longest);
 *  - a pattern Hyperscan refuses (backreferences, lookbehind, ...) is compiled with
 *    HS_FLAG_PREFILTER and a Hyperscan hit is confirmed with PCRE2; one that cannot even be
 *    prefiltered (and BRE, collating elements, glibc escapes such as `\<`) runs with PCRE2 or
 *    regexec on every line;
 *  - the rules are then walked in file order over that match set plus the rules that can hit
 *    without a Hyperscan match (negated rules, `if` rules, unscannable rules): an `if` that
 *    fails skips its block; the first rule that hits wins and only its captures are
 *    extracted (PCRE2/regexec).
 *
 * The result is classified as Postfix's cleanup(8) does (cleanup_act()): the first word,
 * case-insensitive, is the action and the rest (after blanks) the optional text. An unknown
 * word is CHECKS_UNKNOWN (Postfix warns "unknown command" and treats it as DUNNO).
 *
 * Compiled sets are immutable and may be shared by threads; every thread matches with its
 * own struct checks_scratch. Compiling is slow (about 10 s for 10,000 rules): with a cache
 * directory (struct checks_options, checks_cache.h) an unchanged set is read back instead. */
#ifndef MXGATE_TABLES_CHECKS_H
#define MXGATE_TABLES_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHECKS_FILES_MAX 64u
#define CHECKS_RULES_MAX 200000u /* lines over all the files of a set */
#define CHECKS_DEPTH_MAX 64u     /* if/endif nesting */
#define CHECKS_SUBJECT_MAX 1048576u
#define CHECKS_RESULT_MAX 4096u /* an action text after substitution (Postfix: no limit) */

enum checks_action {
	CHECKS_DUNNO,    /* also OK */
	CHECKS_REJECT,   /* REJECT [text] */
	CHECKS_DISCARD,  /* DISCARD [text] */
	CHECKS_HOLD,     /* HOLD [text] */
	CHECKS_IGNORE,   /* delete the line */
	CHECKS_STRIP,    /* delete the line, and log it */
	CHECKS_REPLACE,  /* REPLACE text */
	CHECKS_PREPEND,  /* PREPEND text */
	CHECKS_WARN,     /* WARN [text] */
	CHECKS_INFO,     /* INFO [text] */
	CHECKS_REDIRECT, /* REDIRECT user@domain */
	CHECKS_FILTER,   /* FILTER transport:destination */
	CHECKS_BCC,      /* BCC user@domain */
	CHECKS_PASS,     /* PASS [text]: no more checks for this message */
	CHECKS_UNKNOWN,  /* any other word: Postfix warns and goes on (DUNNO) */
	CHECKS_ACTION_MAX,
};

const char *checks_action_name(enum checks_action a);

/* One check file of a set. `name` is for messages only ("pcre:/etc/postfix/hc"). */
struct checks_source {
	const char *name;
	bool pcre; /* pcre: syntax, else regexp: */
	const char *text;
	size_t len;
};

struct checks;
struct checks_scratch;

/* How a set is built. */
struct checks_options {
	/* A directory of compiled databases (checks_cache.h): NULL or "" for none. A set
	 * whose rules and flags were compiled before on this host is read from there instead
	 * of compiled; a compiled one is written there. Trouble with the cache never fails the
	 * compile: it is reported in checks_stats' cache_error. Blocks on file I/O. */
	const char *cache_dir;
	unsigned cache_max_files; /* 0: CHECKS_CACHE_MAX_FILES (64) */
	uint64_t cache_max_bytes; /* 0: CHECKS_CACHE_MAX_BYTES (1 GiB) */
};

/* Compile n sources (n <= CHECKS_FILES_MAX; n == 0 gives an empty set that never matches)
 * into one set. Returns 0 and *out, -EINVAL with "name, line N: reason" in err, or -ENOMEM.
 * checks_compile() is checks_compile_opts() without options (no cache). */
int checks_compile(const struct checks_source *src, size_t n, struct checks **out, char *err,
		   size_t errlen);
int checks_compile_opts(const struct checks_source *src, size_t n, const struct checks_options *o,
			struct checks **out, char *err, size_t errlen);

/* Read the files named by a Postfix list ("pcre:/a, regexp:/b", commas and/or blanks) and
 * compile them. An empty list gives *out = NULL (no checks). Returns 0, -EINVAL (unknown
 * type, unreadable file, syntax; reason in err), -ENOMEM. Blocks on file I/O: not for a
 * worker. */
int checks_compile_list(const char *list, struct checks **out, char *err, size_t errlen);
int checks_compile_list_opts(const char *list, const struct checks_options *o,
			     struct checks **out, char *err, size_t errlen);

void checks_free(struct checks *c);

/* Statistics, for logs and tests: rules (action lines, not if/endif), and how many run
 * on Hyperscan alone, through the prefilter with confirmation, or without Hyperscan. */
struct checks_stats {
	size_t rules, ifs, hs_exact, hs_confirm, no_hs;
	size_t hs_compiles; /* hs_compile_multi() calls the build took (1 unless one failed;
			     * 0 when the database came from the cache) */
	double hs_bytes;    /* database size */
	bool cache_hit;     /* the database and the rules' modes came from the cache */
	bool cache_stored;  /* compiled, then written to the cache */
	/* Why the cache was not read or not written ("" when nothing went wrong, including a
	 * plain miss), for a warning: "checks cache DIR: FILE: checksum mismatch". */
	char cache_error[320];
};
void checks_stats(const struct checks *c, struct checks_stats *st);

/* Allocate (*s == NULL) or grow a scratch so that it serves c as well as every set it served
 * before; call it once per thread and set (hs_alloc_scratch semantics). Returns 0 or -ENOMEM. */
int checks_scratch_alloc(const struct checks *c, struct checks_scratch **s);
void checks_scratch_free(struct checks_scratch *s);

struct checks_result {
	enum checks_action action;
	const char *text;  /* optional text after the action word (points into out) */
	const char *value; /* the whole substituted result (== out) */
	uint32_t file;     /* index of the source */
	uint32_t line;     /* line number in that source */
};

/* Match one subject (a logical header with its inner newlines, or a body line; no NUL needed;
 * at most CHECKS_SUBJECT_MAX bytes). On a hit returns 1 and fills res, with the substituted
 * result NUL-terminated in out (outlen >= CHECKS_RESULT_MAX + 1 always suffices); 0 when no
 * rule hits; -E2BIG subject too long; -ERANGE when PCRE2 hit its backtracking limit; -EIO on
 * another engine error (the caller must then treat the lookup as failed, not "no match"). */
int checks_match(const struct checks *c, struct checks_scratch *s, const char *subject, size_t len,
		 char *out, size_t outlen, struct checks_result *res);

/* The reference path: the same rules tried one by one with PCRE2/regexec, as Postfix does.
 * Same contract as checks_match(); used by tests and the benchmark. */
int checks_match_slow(const struct checks *c, struct checks_scratch *s, const char *subject,
		      size_t len, char *out, size_t outlen, struct checks_result *res);

#endif
