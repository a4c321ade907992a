/* mgmt/generation.c: the per-worker counters a generation keeps: per service (the new
 * refusals at accept, anvil refusals and timeouts summed like the others), and refusals
 * keyed by (list, restriction): the same restriction in two lists is two rows by list and
 * one merged row for `mxgate status`; past a worker's table, "other". The generation is
 * made by hand (two workers, two services): these functions read only its counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/generation.h"
#include "testing.h"

static struct mx_generation *new_gen(unsigned nworkers, unsigned nservices)
{
	struct mx_generation *g = calloc(1, sizeof(*g));
	if (!g)
		abort();
	g->nworkers = nworkers;
	g->nservices = nservices;
	g->counters = aligned_alloc(64, (size_t)nworkers * nservices * sizeof(*g->counters));
	g->rejects = calloc(nworkers, sizeof(*g->rejects));
	if (!g->counters || !g->rejects)
		abort();
	memset(g->counters, 0, (size_t)nworkers * nservices * sizeof(*g->counters));
	return g;
}

static void free_gen(struct mx_generation *g)
{
	for (unsigned w = 0; w < g->nworkers; w++)
		free(atomic_load(&g->rejects[w]));
	free(g->rejects);
	free(g->counters);
	free(g);
}

static void test_service_counters(void)
{
	struct mx_generation *g = new_gen(2, 2);
	mx_generation_counter_slot(g, 0, 1)->connections_refused += 2;
	mx_generation_counter_slot(g, 1, 1)->connections_refused += 3;
	mx_generation_counter_slot(g, 1, 0)->anvil_refused += 4;
	mx_generation_counter_slot(g, 0, 1)->timed_out += 1;
	mx_generation_counter_slot(g, 1, 1)->timed_out += 6;
	struct mx_gen_counters c;
	mx_generation_service_counters(g, 0, &c);
	CHECK_INT_EQ(c.connections_refused, 0);
	CHECK_INT_EQ(c.anvil_refused, 4);
	CHECK_INT_EQ(c.timed_out, 0);
	mx_generation_service_counters(g, 1, &c);
	CHECK_INT_EQ(c.connections_refused, 5);
	CHECK_INT_EQ(c.anvil_refused, 0);
	CHECK_INT_EQ(c.timed_out, 7);
	mx_generation_counters(g, &c);
	CHECK_INT_EQ(c.connections_refused, 5);
	CHECK_INT_EQ(c.anvil_refused, 4);
	CHECK_INT_EQ(c.timed_out, 7);
	mx_generation_service_counters(g, 2, &c); /* out of range: zeros */
	CHECK_INT_EQ(c.timed_out, 0);
	free_gen(g);
}

struct row {
	char list[64], restriction[96];
	uint64_t rejected, deferred;
};

struct rows {
	unsigned n;
	struct row r[200];
};

static void by_list(void *ctx, const char *list, const char *restriction, uint64_t rejected,
		    uint64_t deferred)
{
	struct rows *rs = ctx;
	if (rs->n >= 200)
		return;
	struct row *r = &rs->r[rs->n++];
	snprintf(r->list, sizeof(r->list), "%s", list);
	snprintf(r->restriction, sizeof(r->restriction), "%s", restriction);
	r->rejected = rejected;
	r->deferred = deferred;
}

static void merged(void *ctx, const char *restriction, uint64_t rejected, uint64_t deferred)
{
	by_list(ctx, "-", restriction, rejected, deferred);
}

static const struct row *find(const struct rows *rs, const char *list, const char *restriction)
{
	for (unsigned i = 0; i < rs->n; i++)
		if (strcmp(rs->r[i].list, list) == 0 &&
		    strcmp(rs->r[i].restriction, restriction) == 0)
			return &rs->r[i];
	return NULL;
}

static void test_rejects_by_list(void)
{
	struct mx_generation *g = new_gen(2, 1);
	const char *rcpt = "smtpd_recipient_restrictions", *relay = "smtpd_relay_restrictions";
	mx_generation_count_list_reject(g, 0, rcpt, "reject_unauth_destination", false);
	mx_generation_count_list_reject(g, 1, rcpt, "reject_unauth_destination", false);
	mx_generation_count_list_reject(g, 1, relay, "reject_unauth_destination", false);
	mx_generation_count_list_reject(g, 0, relay, "reject_unauth_destination", true);
	mx_generation_count_list_reject(g, 0, "smtpd_client_restrictions",
					"reject_rbl_client zen.spamhaus.org", false);
	mx_generation_count_reject(g, 1, "smtpd_client_recipient_rate_limit", true); /* no list */
	mx_generation_count_list_reject(g, 1, NULL, "reject", false);               /* NULL: "" */
	mx_generation_count_list_reject(g, 7, rcpt, "reject", false);               /* no worker 7 */

	struct rows rs = { 0 };
	mx_generation_rejects_by_list(g, by_list, &rs);
	CHECK_INT_EQ(rs.n, 5);
	const struct row *r = find(&rs, rcpt, "reject_unauth_destination");
	CHECK(r && r->rejected == 2 && r->deferred == 0);
	r = find(&rs, relay, "reject_unauth_destination");
	CHECK(r && r->rejected == 1 && r->deferred == 1);
	r = find(&rs, "smtpd_client_restrictions", "reject_rbl_client zen.spamhaus.org");
	CHECK(r && r->rejected == 1);
	r = find(&rs, "", "smtpd_client_recipient_rate_limit");
	CHECK(r && r->rejected == 0 && r->deferred == 1);
	CHECK(find(&rs, "", "reject") != NULL);

	/* mxgate status: merged by restriction whatever the list */
	struct rows ms = { 0 };
	mx_generation_rejects(g, merged, &ms);
	CHECK_INT_EQ(ms.n, 4);
	r = find(&ms, "-", "reject_unauth_destination");
	CHECK(r && r->rejected == 3 && r->deferred == 1);
	free_gen(g);
}

static void test_rejects_overflow(void)
{
	struct mx_generation *g = new_gen(1, 1);
	/* the same restriction in more lists than a worker's table has slots */
	static char lists[MX_GEN_REJECT_SLOTS + 5][32];
	for (unsigned i = 0; i < MX_GEN_REJECT_SLOTS + 5; i++) {
		snprintf(lists[i], sizeof(lists[i]), "class%u", i);
		mx_generation_count_list_reject(g, 0, lists[i], "reject", i % 2 == 0);
	}
	struct rows rs = { 0 };
	mx_generation_rejects_by_list(g, by_list, &rs);
	CHECK_INT_EQ(rs.n, MX_GEN_REJECT_SLOTS + 1);
	const struct row *o = find(&rs, "other", "other");
	CHECK(o != NULL);
	CHECK(o == &rs.r[rs.n - 1]); /* last */
	uint64_t total = 0;
	for (unsigned i = 0; i < rs.n; i++)
		total += rs.r[i].rejected + rs.r[i].deferred;
	CHECK_INT_EQ(total, MX_GEN_REJECT_SLOTS + 5);
	CHECK_INT_EQ(o->rejected + o->deferred, 5);
	free_gen(g);
}

int main(void)
{
	RUN_TEST(test_service_counters);
	RUN_TEST(test_rejects_by_list);
	RUN_TEST(test_rejects_overflow);
	return TEST_RESULT();
}
