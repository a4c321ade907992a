/* The SMTP reply parser of the client codec (smtp_client_reply.c), and the EHLO keyword
 * parser. Internal to smtp_client.c; declared here so the unit tests can drive the parser
 * on its own. The parser faces remote servers: every input has a bound, bad input is an
 * error result, never a crash. */
#ifndef MXGATE_SMTP_CLIENT_REPLY_H
#define MXGATE_SMTP_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/span.h"
#include "smtp/smtp_client.h"

/* One reply being read (RFC 5321 4.2), line by line. The buffers belong to the caller
 * (they live in the client's one allocation). */
struct smtp_client_reply {
	/* bounds and buffers, set by smtp_client_reply_init() */
	char *line;           /* line_max bytes: the kept start of the current line */
	char *text;           /* text_max bytes: the reply text so far */
	size_t line_max, line_hard_max, text_max;
	unsigned lines_max;

	/* the line being read */
	size_t line_len;      /* bytes kept in `line` */
	size_t line_total;    /* bytes of the line so far, CR LF not counted */
	bool cr;              /* the last byte was a CR, not stored yet (a CR LF may follow) */

	/* the reply being read; after REPLY or ERROR it is the finished one, until the next
	 * smtp_client_reply_feed() starts a new one */
	bool done;
	uint16_t code;
	unsigned lines;
	size_t text_len;
	bool truncated;       /* a line over line_max or the text over text_max was cut */
	char enhanced[SMTP_CLIENT_ENHANCED_MAX];
	enum smtp_client_error error;
	struct mx_span last_line; /* the text of the line that just ended (raw, kept part) */
	bool last_line_cut;       /* ...and it was longer than line_max */
};

enum smtp_client_rp_status {
	SMTP_CLIENT_RP_MORE,  /* the input is used up and no line ended */
	SMTP_CLIENT_RP_LINE,  /* a line ended that is not the last of its reply */
	SMTP_CLIENT_RP_REPLY, /* the last line ended: the reply is complete */
	SMTP_CLIENT_RP_ERROR, /* the reply is malformed (`error`); it is over */
	SMTP_CLIENT_RP_MAX,
};

/* Set up r over the given buffers. line_max >= 16, line_hard_max >= line_max,
 * text_max >= 1, lines_max >= 1 (asserted). */
void smtp_client_reply_init(struct smtp_client_reply *r, char *line, size_t line_max,
			    size_t line_hard_max, char *text, size_t text_max, unsigned lines_max);

/* Read buf[0..len) up to and including the end of one line. Returns the bytes used and
 * sets *st: MORE (all used), LINE, REPLY or ERROR (used up to the line end, or up to the
 * byte that went over line_hard_max). A line ends at LF, with or without a CR before it;
 * a CR elsewhere is a byte of the line. */
size_t smtp_client_reply_feed(struct smtp_client_reply *r, const char *buf, size_t len,
			      enum smtp_client_rp_status *st);

/* A reply is partly read (some line or some byte of one). */
bool smtp_client_reply_started(const struct smtp_client_reply *r);

/* Forget any partial line or reply. */
void smtp_client_reply_reset(struct smtp_client_reply *r);

/* RFC 3463 / RFC 2034 3: an enhanced status code at the start of text ("5.1.1 ..."), of
 * the class of `code` (2, 4 or 5), subject and detail 1 to 3 digits, followed by a space
 * or the end. Writes it NUL-terminated to out and returns true; else out = "". */
bool smtp_client_enhanced_parse(struct mx_span text, uint16_t code,
				char out[SMTP_CLIENT_ENHANCED_MAX]);

/* One line of a successful EHLO/LHLO reply after the first (RFC 5321 4.1.1.1 ehlo-line:
 * keyword, then parameters separated by spaces), added to *caps. Unknown keywords are
 * ignored; keywords and parameters are matched case-insensitively. `cut`: the line was
 * longer than what was kept, so its last word is partial and is not looked at (a SIZE
 * number cut short would be a wrong limit, a mechanism name cut short another one). */
void smtp_client_caps_line(struct smtp_client_caps *caps, struct mx_span line, bool cut);

#endif
