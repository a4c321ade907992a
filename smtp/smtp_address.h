/* MAIL FROM / RCPT TO paths (RFC 5321 section 4.1.2, RFC 6531 section 3.3) and ESMTP
 * parameters (RFC 5321 section 4.1.2 esmtp-param), parsed without allocation.
 *
 * The parser is strict about the grammar and lenient where Postfix is and where it costs no
 * safety: angle brackets may be missing (unless SMTP_PATH_STRICT, strict_rfc821_envelopes),
 * a local part without a domain is accepted (RFC 5321 4.1.1.3 "Postmaster", and Postfix
 * qualifies such addresses with $myorigin), a single trailing dot ends a domain name, and a
 * source route (@a,@b:user@dom, RFC 5321 appendix C) is accepted and dropped. Everything
 * else follows the RFC: dot-strings of atext, quoted strings with quoted-pairs, domains of
 * letter/digit/hyphen labels (at most 63 octets each), address literals ([192.0.2.1],
 * [IPv6:2001:db8::1], Standardized-tag:dcontent) and the length limits of section
 * 4.5.3.1 (local part 64, domain 255, path 256 octets). UTF-8 is accepted only as valid
 * UTF-8 (no overlong forms, surrogates or code points past U+10FFFF); whether it may be
 * used at all (SMTPUTF8) is the caller's decision, told by `non_ascii`. */
#ifndef MXGATE_SMTP_ADDRESS_H
#define MXGATE_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/span.h"

/* RFC 5321 4.5.3.1.1-3. */
#define SMTP_LOCAL_PART_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_PATH_MAX 256

enum smtp_path_result {
	SMTP_PATH_OK,
	SMTP_PATH_SYNTAX,   /* not a path: 501 5.1.7 / 501 5.1.3 Bad ... address syntax */
	SMTP_PATH_TOO_LONG, /* a length limit of RFC 5321 4.5.3.1 */
	SMTP_PATH_RESULT_MAX,
};

const char *smtp_path_result_name(enum smtp_path_result r);

/* Flags for smtp_path_parse(). */
#define SMTP_PATH_STRICT 0x1u     /* strict_rfc821_envelopes: the path must be in <> */
#define SMTP_PATH_ALLOW_NULL 0x2u /* "<>" is valid (MAIL FROM; not RCPT TO) */

struct smtp_path {
	struct mx_span mailbox; /* without <> and source route; empty for the null path */
	struct mx_span domain;  /* the part after '@' (empty for a bare local part) */
	struct mx_span rest;    /* what follows the path, leading blanks skipped (parameters) */
	bool null_path;         /* "<>" */
	bool bracketed;         /* the client used <> */
	bool non_ascii;         /* the mailbox holds UTF-8: needs SMTPUTF8 (RFC 6531) */
};

/* Parse the path at the start of `text` (what follows "FROM:" or "TO:"; leading blanks are
 * skipped, as Postfix tolerates "MAIL FROM: <a@b>"). On SMTP_PATH_OK *out describes it and
 * out->rest is the remainder of the line; the path must be followed by a blank or the end.
 * On failure *out is unspecified. */
enum smtp_path_result smtp_path_parse(struct mx_span text, unsigned flags, struct smtp_path *out);

/* True when `s` is valid UTF-8 (RFC 3629); ASCII is valid UTF-8. */
bool smtp_utf8_valid(const char *s, size_t n);

/* One ESMTP parameter: "KEYWORD" or "KEYWORD=VALUE". */
struct smtp_param {
	struct mx_span text;    /* the whole token, for replies */
	struct mx_span keyword;
	struct mx_span value;
	bool has_value;         /* there was an '=' (the value may still be empty) */
	bool keyword_valid;     /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	bool value_valid;       /* esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii) */
};

/* Iterate over the blank-separated parameters in `text`, starting at *pos. Returns true
 * and the next parameter (advancing *pos), false at the end. Never fails: a token that is
 * not a valid parameter comes back with keyword_valid or value_valid false, so the caller
 * can answer it the way Postfix does ("555 5.5.4 Unsupported option: TOKEN"). */
bool smtp_param_next(struct mx_span text, size_t *pos, struct smtp_param *out);

/* RFC 1870 SIZE value: 1 to 20 digits. Returns 0 and *out, -EINVAL for a value that is not
 * a number, -ERANGE for a number beyond 64 bits. */
int smtp_param_size(struct mx_span value, uint64_t *out);

#endif
