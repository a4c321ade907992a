/* A fake provider of the restriction evaluator's lookups (struct smtp_policy_lookups):
 * canned DNS answers and policy server actions, given at once ("direct"), or only after
 * the question was asked and the check returned PENDING ("waiting"), or never (the query
 * fails). It keeps every question of the current check as the caller's memo must, and
 * counts the questions each run asked anew, so a test can check that a PENDING run asked
 * exactly one. Shared by tests/unit/smtp/test_smtp_restrictions_dns.c and
 * tests/fuzz/fuzz_restrictions.c. */
#ifndef MXGATE_TESTS_POLICY_FAKE_H
#define MXGATE_TESTS_POLICY_FAKE_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_restrictions.h"
#include "tables/dns_result.h"

/* One canned answer: rr holds A/AAAA addresses, "PREF NAME" for MX ("0 ." is a null MX),
 * names for NS/PTR, texts for TXT. A question with no canned answer is NXDOMAIN. */
struct pf_answer {
	enum dns_type type;
	const char *name;
	enum dns_result_status status;
	const char *rr[6];
};

#define PF_QUESTIONS_MAX 256
#define PF_POLICY_MAX 32
#define PF_REQUEST_MAX 8192

enum pf_mode {
	PF_DIRECT,  /* every answer at hand when asked */
	PF_WAITING, /* an answer only once asked in an earlier run (pf_arrive()) */
	PF_FAILING, /* every question fails (<0): no resolver, dead policy server */
};

struct pf {
	enum pf_mode mode;
	const struct pf_answer *answers;
	size_t nanswers;
	/* the policy server's actions, one per query in order (the last one repeats);
	 * NULL: the query fails */
	const char *actions[8];
	size_t nactions;
	/* optional: answers made up per question instead (the fuzz harness) */
	struct dns_result *(*gen)(void *gctx, enum dns_type type, const char *name);
	void *gctx;
	/* the memo of the current check */
	struct {
		enum dns_type type;
		char name[DNS_HOSTNAME_MAX + 1];
		bool ready;
		struct dns_result *res;
	} q[PF_QUESTIONS_MAX];
	unsigned nq;
	struct {
		unsigned service;
		char *request;
		size_t len;
		bool ready;
		const char *action; /* NULL: failed */
	} p[PF_POLICY_MAX];
	unsigned np;
	unsigned asked_now;  /* questions asked anew (returned 0) since pf_arrive() */
	unsigned overflow;   /* questions past the memo's room */
	char last_request[PF_REQUEST_MAX];
};

/* A struct dns_result as the resolver makes it: one allocation, records, text. */
static inline struct dns_result *pf_mkres(enum dns_type type, enum dns_result_status st,
					  const char *const *rr)
{
	unsigned n = 0;
	size_t text = 1;
	if (st == DNS_RESULT_OK)
		for (; n < 6 && rr[n]; n++)
			text += strlen(rr[n]) + 1;
	struct dns_result *r = calloc(1, sizeof(*r) + n * sizeof(*r->records) + text);
	if (!r)
		abort();
	atomic_init(&r->refs, 1);
	r->records = (struct dns_result_record *)(r + 1);
	r->text = (char *)(r->records + n);
	r->status = st;
	r->type = type;
	r->ttl = 60;
	if (st == DNS_RESULT_TEMPFAIL)
		snprintf(r->why, sizeof(r->why), "SERVFAIL from 127.0.0.53");
	uint32_t used = 1;
	for (unsigned i = 0; i < n; i++) {
		struct dns_result_record *rec = &r->records[i];
		const char *v = rr[i];
		switch (type) {
		case DNS_TYPE_A:
			rec->addr.family = AF_INET;
			if (inet_pton(AF_INET, v, rec->addr.bytes) != 1)
				abort();
			break;
		case DNS_TYPE_AAAA:
			rec->addr.family = AF_INET6;
			if (inet_pton(AF_INET6, v, rec->addr.bytes) != 1)
				abort();
			break;
		case DNS_TYPE_MX:
			rec->pref = (uint16_t)atoi(v);
			v = strchr(v, ' ') ? strchr(v, ' ') + 1 : "";
			if (strcmp(v, ".") == 0)
				v = ""; /* a null MX: the root */
			/* fall through */
		default:
			if (type == DNS_TYPE_TXT) {
				rec->txt_off = used;
				rec->txt_len = (uint32_t)strlen(v);
			} else {
				rec->name_off = *v ? used : 0;
				rec->name_len = (uint32_t)strlen(v);
			}
			memcpy(r->text + used, v, strlen(v) + 1);
			used += (uint32_t)strlen(v) + 1;
			break;
		}
	}
	r->nrecords = (uint16_t)n;
	r->text_len = used;
	return r;
}

static inline struct dns_result *pf_answer_for(struct pf *f, enum dns_type type,
					       const char *name)
{
	static const char *const none[1] = { NULL };
	if (f->gen)
		return f->gen(f->gctx, type, name);
	for (size_t i = 0; i < f->nanswers; i++)
		if (f->answers[i].type == type && strcmp(f->answers[i].name, name) == 0)
			return pf_mkres(type, f->answers[i].status, f->answers[i].rr);
	return pf_mkres(type, DNS_RESULT_NXDOMAIN, none);
}

static inline int pf_dns(void *ctx, enum dns_type type, const char *name,
			 const struct dns_result **out)
{
	struct pf *f = ctx;
	for (unsigned i = 0; i < f->nq; i++)
		if (f->q[i].type == type && strcmp(f->q[i].name, name) == 0) {
			if (!f->q[i].ready)
				return 0; /* still waiting (a caller would not ask again) */
			*out = f->q[i].res;
			return 1;
		}
	if (f->mode == PF_FAILING)
		return -EIO;
	if (f->nq == PF_QUESTIONS_MAX) {
		f->overflow++;
		return -ENOSPC;
	}
	unsigned i = f->nq++;
	f->q[i].type = type;
	snprintf(f->q[i].name, sizeof(f->q[i].name), "%s", name);
	f->q[i].res = pf_answer_for(f, type, name);
	f->q[i].ready = f->mode == PF_DIRECT;
	if (!f->q[i].ready) {
		f->asked_now++;
		return 0;
	}
	*out = f->q[i].res;
	return 1;
}

static inline int pf_policy(void *ctx, const struct smtp_policy_service *svc,
			    const char *request, size_t len, const char **action)
{
	struct pf *f = ctx;
	snprintf(f->last_request, sizeof(f->last_request), "%.*s", (int)len, request);
	for (unsigned i = 0; i < f->np; i++)
		if (f->p[i].service == svc->index && f->p[i].len == len &&
		    memcmp(f->p[i].request, request, len) == 0) {
			if (!f->p[i].ready)
				return 0;
			if (!f->p[i].action)
				return -EIO;
			*action = f->p[i].action;
			return 1;
		}
	if (f->np == PF_POLICY_MAX) {
		f->overflow++;
		return -ENOSPC;
	}
	unsigned i = f->np++;
	f->p[i].service = svc->index;
	f->p[i].request = malloc(len ? len : 1);
	if (!f->p[i].request)
		abort();
	memcpy(f->p[i].request, request, len);
	f->p[i].len = len;
	f->p[i].action = f->mode == PF_FAILING || !f->nactions
				 ? NULL
				 : f->actions[i < f->nactions ? i : f->nactions - 1];
	f->p[i].ready = f->mode != PF_WAITING;
	if (!f->p[i].ready) {
		f->asked_now++;
		return 0;
	}
	if (!f->p[i].action)
		return -EIO;
	*action = f->p[i].action;
	return 1;
}

/* check_greylist's questions: as a policy server's, under a service index of their own. */
static inline int pf_greylist(void *ctx, const char *request, size_t len, const char **action)
{
	static const struct smtp_policy_service gl = { .index = 0xffffu };
	return pf_policy(ctx, &gl, request, len, action);
}

/* Every answer asked for has come. */
static inline void pf_arrive(struct pf *f)
{
	for (unsigned i = 0; i < f->nq; i++)
		f->q[i].ready = true;
	for (unsigned i = 0; i < f->np; i++)
		f->p[i].ready = true;
	f->asked_now = 0;
}

/* Forget the memo (a check completed). */
static inline void pf_forget(struct pf *f)
{
	for (unsigned i = 0; i < f->nq; i++)
		dns_result_put(f->q[i].res);
	for (unsigned i = 0; i < f->np; i++)
		free(f->p[i].request);
	f->nq = f->np = 0;
	f->asked_now = 0;
}

/* Was (type, name) asked in the current check? */
static inline bool pf_asked(const struct pf *f, enum dns_type type, const char *name)
{
	for (unsigned i = 0; i < f->nq; i++)
		if (f->q[i].type == type && strcmp(f->q[i].name, name) == 0)
			return true;
	return false;
}

#endif
