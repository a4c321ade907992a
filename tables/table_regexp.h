/* regexp: and pcre: tables (Postfix regexp_table(5), pcre_table(5)): `/pattern/flags result`,
 * `!/pattern/flags result`, `if /pattern/flags` ... `endif` (nesting, `if !/.../`), any
 * non-blank delimiter, first match in file order, `$n`, `${n}`, `$(n)` substitution of
 * captured groups (empty when the group did not take part) and `$$` for a dollar.
 *
 * regexp: is compiled with the C library's POSIX regcomp(3) (REG_EXTENDED), as Postfix does,
 * so its dialect is exactly POSIX ERE (bracket classes, leftmost-longest matching), not PCRE's
 * leftmost-first: translating ERE to PCRE2 would change which text a group captures. Flags:
 * `i` toggles case-insensitivity (on by default), `x` toggles extended syntax (on by default:
 * off means POSIX basic RE), `m` toggles REG_NEWLINE (off).
 * pcre: uses PCRE2 (8-bit, no UTF). Flags: `i` toggles PCRE2_CASELESS (on by default), `m`
 * MULTILINE, `s` DOTALL, `x` EXTENDED, `A` ANCHORED, `E` DOLLAR_ENDONLY, `U` UNGREEDY; `X`
 * (PCRE1's PCRE_EXTRA) does not exist in PCRE2 and is accepted as a no-op, as Postfix built
 * with PCRE2 does. Matching is bounded (match and depth limits); hitting a limit is a lookup
 * error, never "not found".
 *
 * The file is read by tables/rule_file.c, shared with header_checks (tables/checks.c).
 * Where Postfix warns and skips a line (unknown flag, `$n` beyond the groups, `$n` after a
 * negated pattern, unbalanced if/endif, missing result), mxgate refuses the table with the
 * line number. At most TABLE_REGEXP_RULES_MAX lines. */
#ifndef MXGATE_TABLES_TABLE_REGEXP_H
#define MXGATE_TABLES_TABLE_REGEXP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TABLE_REGEXP_RULES_MAX 200000u
#define TABLE_REGEXP_DEPTH_MAX 64u
#define TABLE_REGEXP_KEY_MAX 65536u

struct table_regexp;

/* Compile a table's text; pcre selects pcre: syntax, else regexp:. Returns 0 and *out, or
 * -EINVAL with the reason and line number in err, or -ENOMEM. */
int table_regexp_compile(const char *text, size_t len, bool pcre, struct table_regexp **out,
			 char *err, size_t errlen);
/* First-match lookup of key (NUL-terminated, at most TABLE_REGEXP_KEY_MAX bytes). Returns 1
 * with the substituted result in out, 0 when nothing matches, -E2BIG when the key or the
 * result does not fit, -ERANGE when PCRE2 hit its match limit, -EIO on another match error.
 * Not thread-safe: one struct table_regexp per thread (it owns the match data). */
int table_regexp_lookup(struct table_regexp *re, const char *key, char *out, size_t outlen);
size_t table_regexp_rules(const struct table_regexp *re);
void table_regexp_free(struct table_regexp *re);

#endif
