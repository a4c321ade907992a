/* Greylisting with postgrey's semantics (postgrey 1.37, /usr/sbin/postgrey; its manual
 * page), sans-I/O: what check_greylist decides, given the stored records and `now`.
 *
 * A request is a triplet: the client's network (IPv4 /24, IPv6 /64 by default; the whole
 * address with prefix lengths 32/128, postgrey's --lookup-by-host), the sender after
 * postgrey's substitutions, and the recipient, lower-cased into one key
 * "NET/SENDER/RECIPIENT" as postgrey keys its database. Its record is "FIRST,LAST" (Unix
 * seconds: first seen, last seen). The first attempt is deferred; a retry once `delay`
 * seconds passed since the first attempt passes (and gets the X-Greylist header, once per
 * message), within `retry_window` of the first attempt (else the wait starts over). A
 * client whose triplets passed `awl_clients` times (each counted at most once per
 * `awl_interval`, postgrey's hour) is allowlisted (postgrey's auto-whitelist-clients),
 * keyed by its whole address, record "COUNT,LAST". postgrey drops records at night:
 * passed triplets and allowlisted clients `max_age` after they were last seen, others
 * `retry_window` after; here each record is written with that lifetime as its TTL, which
 * decides the same (a record it would drop is one the decision would not use).
 *
 * Static allowlists in postgrey's file formats (whitelist_clients, whitelist_recipients;
 * Debian's files load unchanged): client names (a name matches itself and its
 * subdomains), /regexps/ (Perl syntax through PCRE2, case-insensitive, unanchored), IPv4
 * and IPv6 addresses with or without a prefix length, partial IPv4 "a.b.c" (a /24; "a.b"
 * is a.b.0.0/24, as postgrey reads it), and recipients as user@domain (also
 * user+ext@domain), user@, domain (and its subdomains), /regexps/.
 *
 * No clock reads, no logging, no global state. */
#ifndef MXGATE_TABLES_GREYLIST_H
#define MXGATE_TABLES_GREYLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"

struct greylist_request;

#define GREYLIST_KEY_MAX 250        /* memcached's key limit: longer keys are hashed */
#define GREYLIST_RECORD_MAX 48      /* "FIRST,LAST" */
#define GREYLIST_TEXT_MAX 512       /* greylist text and header template */
#define GREYLIST_ACTION_MAX 1200    /* an action with its text */
#define GREYLIST_REQUEST_MAX 4096   /* an encoded request */
#define GREYLIST_INSTANCES 10       /* postgrey remembers the last 10 message instances */
#define GREYLIST_INSTANCE_MAX 64
#define GREYLIST_FILE_MAX (16u << 20) /* an allowlist file */

/* The defaults (postgrey's). */
#define GREYLIST_DEFAULT_TEXT "Greylisted, see http://postgrey.schweikert.ch/help/%r.html"
#define GREYLIST_POSTGREY_HEADER "X-Greylist: delayed %t seconds by postgrey-%v at %h; %d"

struct greylist_params {
	uint32_t delay_s;          /* --delay (300) */
	uint32_t max_age_s;        /* --max-age (35 days) */
	uint32_t retry_window_s;   /* --retry-window (2 days) */
	uint32_t awl_clients;      /* --auto-whitelist-clients (5; 0: off) */
	uint32_t awl_interval_s;   /* postgrey's fixed hour between two counted passes */
};

/* postgrey's defaults. */
void greylist_params_init(struct greylist_params *p);

/* ---- keys ---- */

/* postgrey's do_sender_substitutions(): in the local part, a BATV tag (prvs=TAG=USER or
 * prvs=USER=TAG) is dropped, everything from the first '+' is dropped, and every number
 * that is a whole word becomes '#'. An address without '@' is kept as it is. Writes the
 * result NUL-terminated to out; returns its length, or -ENOSPC when it does not fit cap. */
long greylist_sender_normalize(const char *sender, char *out, size_t cap);

/* NetAddr::IP's addr() of an address: dotted quad, or eight upper-case hexadecimal groups
 * without leading zeros and without "::" ("2001:DB8:0:0:0:0:0:1"): the auto-allowlist's
 * key. cap >= 40. */
void greylist_addr_format(const struct mx_inet_addr *a, char *out, size_t cap);
/* The client's network: the address masked to prefix length v4 or v6, as addr() prints
 * it. cap >= 40. */
void greylist_client_net(const struct mx_inet_addr *a, unsigned v4, unsigned v6, char *out,
			 size_t cap);
/* The triplet's key: lower case "NET/SENDER/RECIPIENT" (sender already normalised), with
 * blanks and control characters as '_' (memcached refuses them in keys). A key longer
 * than GREYLIST_KEY_MAX is cut and ends in a hash of the whole ("#" and 32 hexadecimal
 * digits). Returns the length. cap > GREYLIST_KEY_MAX. */
size_t greylist_triplet_key(const char *net, const char *sender, const char *rcpt, char *out,
			    size_t cap);

/* ---- records ---- */

struct greylist_record {
	int64_t a;  /* triplet: first seen; client: passes counted */
	int64_t b;  /* last seen */
};

/* "A,B" (postgrey may add ",HOST": ignored). 0, or -EINVAL. */
int greylist_record_parse(const char *v, size_t len, struct greylist_record *r);
/* Returns the length written (NUL-terminated); cap >= GREYLIST_RECORD_MAX. */
size_t greylist_record_format(const struct greylist_record *r, char *out, size_t cap);

/* ---- the decision ---- */

enum greylist_verdict {
	GREYLIST_DEFER,        /* too early: the greylist action with its text */
	GREYLIST_PASS_DELAYED, /* the first pass of the triplet: the X-Greylist header */
	GREYLIST_PASS,         /* passed before (or a second recipient of the message) */
	GREYLIST_PASS_CLIENT,  /* an auto-allowlisted client */
	GREYLIST_VERDICT_MAX
};

const char *greylist_verdict_name(enum greylist_verdict v);

/* What to do with a client's auto-allowlist record before the triplet is looked at. */
struct greylist_client_outcome {
	bool pass;                    /* allowlisted: GREYLIST_PASS_CLIENT, no triplet */
	bool write;                   /* store `record` with ttl_s */
	struct greylist_record record;
	uint32_t ttl_s;
};

/* rec: the client's record, or NULL when it has none (or awl_clients is 0). */
void greylist_client_check(const struct greylist_params *p, int64_t now,
			   const struct greylist_record *rec,
			   struct greylist_client_outcome *out);

struct greylist_outcome {
	enum greylist_verdict verdict; /* DEFER, PASS_DELAYED or PASS */
	int64_t remaining;             /* DEFER: seconds still to wait (postgrey's %s) */
	int64_t delayed;               /* PASS_DELAYED: seconds since the first attempt */
	struct greylist_record triplet; /* always stored, with triplet_ttl_s */
	uint32_t triplet_ttl_s;
	bool client_write;             /* store `client` with client_ttl_s */
	struct greylist_record client;
	uint32_t client_ttl_s;
};

/* The decision for a triplet (postgrey's smtpd_access_policy() after the allowlists).
 * trip: its record or NULL; client: the client's auto-allowlist record or NULL (ignored
 * when awl_clients is 0); new_instance: the message has not had its X-Greylist header
 * yet (greylist_instances_seen()). PASS_DELAYED is decided only for a new instance. */
void greylist_decide(const struct greylist_params *p, int64_t now,
		     const struct greylist_record *trip, const struct greylist_record *client,
		     bool new_instance, struct greylist_outcome *out);

/* postgrey's is_new_instance(): the last GREYLIST_INSTANCES message instances, so one
 * message gets one X-Greylist header however many recipients pass. Zero it, then
 * greylist_instances_init(). */
struct greylist_instances {
	char id[GREYLIST_INSTANCES][GREYLIST_INSTANCE_MAX];
};
void greylist_instances_init(struct greylist_instances *s);
/* true when instance is new (it is remembered now); NULL or "" (no instance) is always
 * new, as postgrey's undefined instance is. */
bool greylist_instances_new(struct greylist_instances *s, const char *instance);

/* The action string (what postgrey answers after "action="):
 *   DEFER:        "DEFER_IF_PERMIT " + text, with postgrey's "4.2.0 " before a text that
 *                 does not start with a digit (postgrey adds it whenever the request has
 *                 an etrn_domain attribute, which Postfix and mxgate always send), "%s"
 *                 (first one) the seconds remaining and then "%r" (first one) the
 *                 recipient's domain (after its last '@');
 *   PASS_DELAYED: "PREPEND " + header with %t (seconds delayed), %v (version), %d (date),
 *                 %h (host), first occurrence each, in that order; "DUNNO" when header
 *                 is empty (the header turned off);
 *   PASS, PASS_CLIENT: "DUNNO".
 * Returns the length, or -ENOSPC. */
long greylist_action_format(const struct greylist_outcome *o, enum greylist_verdict v,
			    const char *action, const char *text, const char *header,
			    const char *recipient, const char *version, const char *date,
			    const char *host, char *out, size_t cap);

/* ---- one request, whole ---- */

/* The state store as the caller has it: get returns 0 with the record, -ENOENT when there
 * is none (or it expired, or it does not parse), or another negative errno; put returns 0
 * or a negative errno. */
struct greylist_store {
	int (*get)(void *ctx, const char *key, struct greylist_record *out);
	int (*put)(void *ctx, const char *key, const struct greylist_record *r, uint32_t ttl_s);
	void *ctx;
};

/* What postgrey's smtpd_access_policy() does after the static allowlists (which the
 * caller checked): the client's auto-allowlist record (key: r->client), then the
 * triplet's (r->key), the decision, the writes, and the action into out. version and date
 * fill the header's %v and %d. 0 with *verdict and the action, or the store's negative
 * errno (the caller applies its default action), or -ENOSPC. */
int greylist_answer(const struct greylist_request *r, int64_t now, const char *version,
		    const char *date, struct greylist_instances *instances,
		    const struct greylist_store *store, enum greylist_verdict *verdict,
		    char *out, size_t cap);

/* ---- static allowlists ---- */

struct greylist_allowlist;
struct greylist_request;

/* An empty allowlist; NULL when out of memory. */
struct greylist_allowlist *greylist_allowlist_new(void);
void greylist_allowlist_free(struct greylist_allowlist *a);

enum greylist_list {
	GREYLIST_LIST_CLIENTS,     /* whitelist_clients */
	GREYLIST_LIST_RECIPIENTS,  /* whitelist_recipients */
	GREYLIST_LIST_MAX
};

/* Add the entries of a file's text (len bytes, any content). A line postgrey warns about
 * ("doesn't look like a hostname"/"an address") is passed to warn (may be NULL) with its
 * line number and skipped, as postgrey does; an address NetAddr::IP rejects is skipped
 * silently, as postgrey does. Returns 0, or -EINVAL with err for a regexp PCRE2 cannot
 * compile (postgrey dies on it), -E2BIG past GREYLIST_FILE_MAX, -ENOMEM. */
int greylist_allowlist_add(struct greylist_allowlist *a, enum greylist_list list,
			   const char *text, size_t len,
			   void (*warn)(void *ctx, unsigned line, const char *why), void *ctx,
			   char *err, size_t errlen);
/* Read a file (at most GREYLIST_FILE_MAX bytes) and add it. 0, or a negative errno with
 * err naming the file (and the line). */
int greylist_allowlist_load(struct greylist_allowlist *a, enum greylist_list list,
			    const char *path,
			    void (*warn)(void *ctx, unsigned line, const char *why), void *ctx,
			    char *err, size_t errlen);
/* Entries loaded, per list. */
size_t greylist_allowlist_count(const struct greylist_allowlist *a, enum greylist_list list);

/* Does the client (name as Postfix gives it, "unknown" when it has none; its address)
 * match whitelist_clients? */
bool greylist_allowlist_client(const struct greylist_allowlist *a, const char *name,
			       const struct mx_inet_addr *addr);
/* Does the recipient match whitelist_recipients? */
bool greylist_allowlist_recipient(const struct greylist_allowlist *a, const char *rcpt);

/* ---- the request from a worker to the greylist service ---- */

/* Everything the service needs, so that a reload's new parameters apply to the next
 * request: "name=value" lines (values without line breaks), in this order, then an empty
 * line. */
struct greylist_request {
	const char *map;         /* the state store's spec */
	const char *client;      /* greylist_addr_format() of the client: the allowlist key */
	const char *key;         /* greylist_triplet_key() */
	const char *recipient;   /* as given (for %r) */
	const char *instance;    /* the message, or "" */
	const char *action;      /* the greylist action (DEFER_IF_PERMIT) */
	const char *text;        /* the greylist text */
	const char *header;      /* the header template, "" for none */
	const char *host;        /* %h */
	struct greylist_params params;
};

/* Encode into out. Returns the length, -ENOSPC (the length needed is *need), or -EINVAL
 * for a value with a line break or NUL. */
long greylist_request_encode(const struct greylist_request *r, char *out, size_t cap,
			     size_t *need);
/* Decode len bytes: the strings point into buf (cap >= len + 1; the bytes are copied
 * there and cut into strings). 0, or -EBADMSG for anything malformed (unknown or
 * missing names, bad numbers, a key longer than GREYLIST_KEY_MAX, a request longer than
 * GREYLIST_REQUEST_MAX). */
int greylist_request_decode(const char *in, size_t len, char *buf, size_t cap,
			    struct greylist_request *r);

#endif
