/* The screen's internals, shared by smtp_screen.c (the object, the early tests, the
 * conclusion, the cache record), smtp_screen_dnsbl.c (sites, scores) and
 * smtp_screen_smtpd.c (the dummy SMTP engine and the deep tests). */
#ifndef MXGATE_SMTP_SMTP_SCREEN_INTERNAL_H
#define MXGATE_SMTP_SMTP_SCREEN_INTERNAL_H

#include "smtp/smtp_screen.h"

#include <arpa/inet.h>

/* postscreen's per-session flags (postscreen.h): four per test (FAIL, PASS, TODO,
 * DONE/SKIP), from bit 8, and a few for the session. */
#define SCR_F_NOFORWARD (1u << 0)  /* never hand this session to the SMTP server */
#define SCR_F_NEW (1u << 3)        /* some test was never passed */
#define SCR_F_DNLIST_FAIL (1u << 4) /* denylisted */
#define SCR_F_HANGUP (1u << 5)     /* the client went away: not a failure */
#define SCR_F_X21 (1u << 6)        /* answer the next command with the final reply */

#define SCR_BIT(t, k) (1u << (8 + 4 * (t) + (k)))
#define SCR_FAIL(t) SCR_BIT(t, 0)
#define SCR_PASS(t) SCR_BIT(t, 1)
#define SCR_TODO(t) SCR_BIT(t, 2)
#define SCR_DONE(t) SCR_BIT(t, 3)   /* early tests: final; deep tests: SKIP */

#define SCR_MASK(k) (SCR_BIT(0, k) | SCR_BIT(1, k) | SCR_BIT(2, k) | SCR_BIT(3, k) | \
		     SCR_BIT(4, k))
#define SCR_EARLY(k) (SCR_BIT(SMTP_SCREEN_PREGREET, k) | SCR_BIT(SMTP_SCREEN_DNSBL, k))
#define SCR_SMTPD(k) (SCR_BIT(SMTP_SCREEN_PIPELINING, k) | SCR_BIT(SMTP_SCREEN_NON_SMTP, k) | \
		      SCR_BIT(SMTP_SCREEN_BARE_NEWLINE, k))
#define SCR_ANY_FAIL (SCR_MASK(0) | SCR_F_DNLIST_FAIL)
#define SCR_ANY_PASS SCR_MASK(1)
#define SCR_ANY_TODO SCR_MASK(2)
/* TODO bits shifted onto PASS (>> 1) or DONE (<< 1), as postscreen compares groups */
#define SCR_TODO_TO_PASS(f) ((f) >> 1)
#define SCR_TODO_TO_DONE(f) ((f) << 1)

/* postscreen's cache time stamps */
#define SCR_STAMP_NEW 0
#define SCR_STAMP_DISABLED 1

/* The output buffer: replies of the dummy engine wait here while the client does not
 * read; input stops above the high-water mark, the buffer never grows past its max. */
#define SCR_OUT_HIWAT 2048
#define SCR_OUT_MAX (SCR_OUT_HIWAT + 1024)

/* The pregreet bytes postscreen peeks at (PSC_READ_BUF_SIZE - 1) */
#define SCR_PEEK_MAX 1023

/* The dummy engine's state, allocated when it starts (most connections never get there).
 * line[] holds one command line up to line_limit. */
struct scr_smtpd {
	char helo[256];           /* "" before HELO/EHLO */
	bool have_helo, have_sender, esmtp;
	uint32_t ehlo_discard;    /* the keywords the last EHLO reply left out */
	char sender[256];
	unsigned commands;
	const char *where;        /* the last command's name, for "after ..." */
	bool cr;                  /* the last byte was CR */
	size_t len;
	char line[];              /* [cfg->line_limit + 2] */
};

struct smtp_screen {
	const struct smtp_screen_config *cfg;
	smtp_screen_log_fn *log;
	void *log_arg;
	enum smtp_screen_state state;
	uint32_t flags;
	int64_t expire[SMTP_SCREEN_TEST_MAX];  /* wall seconds (SCR_STAMP_*) */
	int64_t wall0_s;                        /* the wall clock at start */
	uint64_t start_ms;                      /* when the current test phase began */
	uint64_t deadline_ms;                   /* greet wait or command time limit */
	uint64_t dnsbl_deadline_ms;
	const char *test_name;                  /* "tests before SMTP handshake" */
	/* DNSBL: the score so far, postscreen's pass and fail TTLs (-1: none yet) */
	int score, dnsbl_weight, pass_ttl, fail_ttl, dnsbl_ttl;
	int dnsbl_name;                          /* zone index of the heaviest match, -1 */
	uint64_t answered;                       /* a bit per zone */
	bool score_final;                        /* retrieved (postscreen's dnsbl_score) */
	bool pregreet_seen;
	/* replies: the 550 of an enforced test, the final reply */
	const char *rcpt_reply, *final_reply;
	char *dnsbl_reply;                       /* "550 5.7.1 ..." for the DNSBL, owned */
	struct smtp_screen_outcome outcome;
	struct smtp_screen_client client;
	char addr_port[INET6_ADDRSTRLEN + 10];  /* "[192.0.2.1]:12345" */
	char addr_str[INET6_ADDRSTRLEN];
	/* output */
	char *out;
	size_t out_len, out_off, out_cap;
	struct scr_smtpd *d;
};

/* smtp_screen.c */
/* The one place the screen's state changes: NEW -> EARLY -> (SMTPD ->) PASS or CLOSE;
 * PASS and CLOSE are final and drop the timer and the dummy engine. */
void scr_enter_state(struct smtp_screen *s, enum smtp_screen_state st);
void scr_log(struct smtp_screen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool scr_send(struct smtp_screen *s, const char *text);
void scr_conclude(struct smtp_screen *s, int64_t now_s);
void scr_drop(struct smtp_screen *s, const char *reply, int64_t now_s);
void scr_enforce(struct smtp_screen *s, const char *reply);
void scr_hangup(struct smtp_screen *s, uint64_t now_ms);
int64_t scr_now_s(const struct smtp_screen *s, uint64_t now_ms);

/* smtp_screen_dnsbl.c */
bool scr_dnsbl_filter_parse(const char *f, uint8_t filter[4][32]);
void scr_dnsbl_answer(struct smtp_screen *s, unsigned zone, const struct dns_result *res);
void scr_dnsbl_retrieve(struct smtp_screen *s);

/* smtp_screen_smtpd.c */
int scr_smtpd_start(struct smtp_screen *s, uint64_t now_ms);
size_t scr_smtpd_input(struct smtp_screen *s, const char *buf, size_t len, uint64_t now_ms);
void scr_smtpd_timer(struct smtp_screen *s, uint64_t now_ms);

#endif
