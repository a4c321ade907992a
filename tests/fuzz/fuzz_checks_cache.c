/* libFuzzer harness for the reader of compiled-checks cache files: checks_cache_decode()
 * in tables/checks_cache.c (header, bounds, checksum, decision records, the serialized
 * Hyperscan database handed to hs_serialized_database_info() and
 * hs_deserialize_database()).
 *
 * Input: byte 0 is a control byte, the rest a cache file, copied into a heap buffer of
 * exactly its length (ASan sees any read past it). Control bit 0 writes the key the reader
 * expects into the header, bit 1 recomputes the checksum after that, so mutations reach the
 * checks behind the key and the checksum (and seeds made on another CPU, whose key differs,
 * still do). The file is read for the fixed rules below.
 * Invariants: no crash or out-of-bounds read; an accepted file gives one decision per rule
 * that the rule can have reached (same or raised mode, the prefilter flag at most added,
 * never exact when prefiltered), and a database exactly when some rule is in it, one that
 * scans. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/checks_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The expressions the seeds were written for: exact, prefiltered, confirmed, and one no
 * Hyperscan mode takes. */
static const struct checks_cache_rule fuzz_rules[] = {
	{ "^Subject: .*\\bfree\\b", HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_CASELESS, 0,
	  CHECKS_CACHE_EXACT },
	{ "^X-Mailer: (\\w+) \\1", HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_DOTALL, 2,
	  CHECKS_CACHE_EXACT },
	{ "^To: .*win+er", HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_DOTALL, 3,
	  CHECKS_CACHE_CONFIRM },
	{ "(?R)x", HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_DOTALL, 5,
	  CHECKS_CACHE_EXACT },
};
#define FUZZ_NRULES (sizeof(fuzz_rules) / sizeof(fuzz_rules[0]))
#define FUZZ_SET_RULES 6 /* the set also has rules Hyperscan never sees */

static int fuzz_on_match(unsigned id, unsigned long long from, unsigned long long to,
			 unsigned flags, void *ctx)
{
	(void)from;
	(void)to;
	(void)flags;
	(void)ctx;
	FUZZ_CHECK(id < FUZZ_SET_RULES);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t key[CHECKS_CACHE_KEY_LEN];
	static int have_key;
	if (!have_key) {
		FUZZ_CHECK(checks_cache_key(fuzz_rules, FUZZ_NRULES, FUZZ_SET_RULES, key) == 0);
		have_key = 1;
	}
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	size_t len = size - 1;
	uint8_t *buf = malloc(len ? len : 1);
	FUZZ_CHECK(buf != NULL);
	if (len)
		memcpy(buf, data + 1, len);
	if ((ctl & 1) && len >= CHECKS_CACHE_HEADER_LEN)
		memcpy(buf + 16, key, CHECKS_CACHE_KEY_LEN);
	if ((ctl & 2) && len >= CHECKS_CACHE_HEADER_LEN) {
		unsigned n = 0;
		FUZZ_CHECK(EVP_Digest(buf + CHECKS_CACHE_HEADER_LEN, len - CHECKS_CACHE_HEADER_LEN,
				      buf + 64, &n, EVP_sha256(), NULL) == 1);
	}
	struct checks_cache_decision d[FUZZ_NRULES];
	memset(d, 0xee, sizeof(d));
	hs_database_t *db = NULL;
	char why[256];
	int rc = checks_cache_decode(buf, len, key, fuzz_rules, FUZZ_NRULES, d, &db, why,
				     sizeof(why));
	FUZZ_CHECK(rc == 0 || rc == 1 || rc == -ENOMEM);
	if (rc == 0)
		FUZZ_CHECK(why[0] != '\0' && db == NULL);
	if (rc == 1) {
		int in_db = 0;
		for (size_t i = 0; i < FUZZ_NRULES; i++) {
			const struct checks_cache_rule *r = &fuzz_rules[i];
			FUZZ_CHECK(d[i].mode < CHECKS_CACHE_MODE_MAX && d[i].mode >= r->mode);
			FUZZ_CHECK(d[i].flags == r->flags ||
				   (d[i].flags == (r->flags | HS_FLAG_PREFILTER) &&
				    d[i].mode != CHECKS_CACHE_EXACT));
			in_db |= d[i].mode != CHECKS_CACHE_NONE;
		}
		FUZZ_CHECK(in_db == (db != NULL));
		if (db) {
			hs_scratch_t *s = NULL;
			FUZZ_CHECK(hs_alloc_scratch(db, &s) == HS_SUCCESS);
			static const char subj[] = "Subject: free\nX-Mailer: a a\nTo: winner";
			FUZZ_CHECK(hs_scan(db, subj, sizeof(subj) - 1, 0, s, fuzz_on_match, NULL) ==
				   HS_SUCCESS);
			hs_free_scratch(s);
			hs_free_database(db);
		}
	}
	free(buf);
	return 0;
}
