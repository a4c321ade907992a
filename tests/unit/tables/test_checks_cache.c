/* tables/checks_cache.c and its use by checks_compile_opts(): a hit gives the same answers
 * as a compile; a changed rule or flag misses; a damaged file (every truncation, bit flips)
 * is a miss that is rewritten, never a crash; a directory others could write is not read;
 * eviction keeps the bound. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tables/checks.h"
#include "tables/checks_cache.h"
#include "testing.h"

/* Rules of every kind: exact, confirmed (A with x, E), prefiltered (backreference,
 * lookbehind, lookahead), none (recursion, \G), negated, if/endif, $n, in a pcre: file and
 * a regexp: file (ERE confirmed by regexec, and ERE that Hyperscan never sees). */
static const char pcre_rules[] =
	"/^Subject: .*\\bviagra\\b/ REJECT drugs\n"
	"/^From: .*@spam\\.example/i DISCARD\n"
	"/^X-Mailer: (\\w+) \\1/ REJECT repeated $1\n"
	"/(?<!no )lottery/ WARN lookbehind\n"
	"/^To: .*winner$/E HOLD endonly\n"
	"/^Received: from ([a-z]+)\\.bad/ REJECT relay $1\n"
	"if /^X-Spam-/\n"
	"/^X-Spam-Level: \\*{5}/ REJECT level\n"
	"!/^X-Spam-Flag: NO/ WARN not no\n"
	"endif\n"
	"/^Subject: free \\s+ money # comment/x REJECT x-mode\n"
	"/prize/A REJECT anchored\n"
	"/^Subject: cash/xA REJECT anchored x\n"
	"/(?R)recur/ REJECT recursion\n"
	"/\\Gglued/ REJECT g\n"
	"/^Subject: x(?=y)yz/ PREPEND X-Look: ahead\n"
	"/^Subject: .*cr[a-z]+o/ INFO crypto\n";
static const char regexp_rules[] = "/^subject: .*casino/ REJECT casino\n"
				   "/^X-Word: \\<foo\\>/ REJECT word\n"
				   "/^X-Coll: [[.a.]]bc/ REJECT collate\n"
				   "/^X-Ere: (ab|cd)+e$/ REJECT ere\n";

static const char *const subjects[] = {
	"Subject: buy viagra now",
	"Subject: viagras",
	"From: a@spam.example",
	"FROM: B@SPAM.EXAMPLE",
	"X-Mailer: foo foo",
	"X-Mailer: foo bar",
	"Subject: win the lottery",
	"Subject: no lottery",
	"To: the winner",
	"To: the winner\n",
	"Received: from host.bad",
	"X-Spam-Level: *****",
	"X-Spam-Flag: NO",
	"X-Spam-Flag: YES",
	"Subject: free money",
	"Subject: freemoney",
	"prize: yes",
	"a prize",
	"Subject: cash",
	"recur",
	"glued",
	"Subject: xyz",
	"Subject: crypto",
	"subject: CASINO night",
	"X-Word: foo",
	"X-Coll: abc",
	"X-Ere: ababe",
	"X-Ere: abae",
	"Subject: nothing",
	"",
};

static char cache_root[64];

static void cache_root_make(void)
{
	snprintf(cache_root, sizeof(cache_root), "/tmp/mxgate-ccache-XXXXXX");
	if (!mkdtemp(cache_root)) {
		perror("mkdtemp");
		exit(2);
	}
}

static int cache_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	chmod(p, 0700);
	remove(p);
	return 0; /* go on whatever happened: a best-effort clean-up */
}

static void cache_rm(const char *dir)
{
	nftw(dir, cache_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory below cache_root. */
static void cache_dir(char *dir, size_t n, const char *name)
{
	snprintf(dir, n, "%s/%s", cache_root, name);
	cache_rm(dir);
}

struct built {
	struct checks *c;
	struct checks_stats st;
};

static struct built build_opts(const char *pcre, const char *regexp,
			       const struct checks_options *o)
{
	struct checks_source src[2] = { { "pcre:/hc", true, pcre, strlen(pcre) },
					{ "regexp:/hc2", false, regexp ? regexp : "",
					  regexp ? strlen(regexp) : 0 } };
	struct built b = { 0 };
	char err[512] = "";
	int rc = checks_compile_opts(src, regexp ? 2 : 1, o, &b.c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  compile failed: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	checks_stats(b.c, &b.st);
	return b;
}

static struct built build(const char *pcre, const char *regexp, const char *dir)
{
	struct checks_options o = { .cache_dir = dir };
	return build_opts(pcre, regexp, &o);
}

/* Every subject answers the same in a and b (and each agrees with the slow path). */
static void same_answers(const struct checks *a, const struct checks *b)
{
	struct checks_scratch *s = NULL;
	CHECK_INT_EQ(checks_scratch_alloc(a, &s), 0);
	CHECK_INT_EQ(checks_scratch_alloc(b, &s), 0);
	static char oa[CHECKS_RESULT_MAX + 1], ob[CHECKS_RESULT_MAX + 1], os[CHECKS_RESULT_MAX + 1];
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		size_t n = strlen(subjects[i]);
		char *subj = malloc(n ? n : 1); /* exactly its length, for ASan */
		memcpy(subj, subjects[i], n);
		struct checks_result ra = { 0 }, rb = { 0 }, rs = { 0 };
		int ka = checks_match(a, s, subj, n, oa, sizeof(oa), &ra);
		int kb = checks_match(b, s, subj, n, ob, sizeof(ob), &rb);
		int ks = checks_match_slow(b, s, subj, n, os, sizeof(os), &rs);
		if (ka != kb || ka != ks)
			fprintf(stderr, "  \"%s\": %d, %d, slow %d\n", subjects[i], ka, kb, ks);
		CHECK_INT_EQ(ka, kb);
		CHECK_INT_EQ(kb, ks);
		if (ka == 1 && kb == 1) {
			CHECK_STR_EQ(oa, ob);
			CHECK_INT_EQ(ra.action, rb.action);
			CHECK_INT_EQ(ra.file, rb.file);
			CHECK_INT_EQ(ra.line, rb.line);
		}
		free(subj);
	}
	checks_scratch_free(s);
}

static void same_stats(const struct checks_stats *a, const struct checks_stats *b)
{
	CHECK_INT_EQ(a->rules, b->rules);
	CHECK_INT_EQ(a->ifs, b->ifs);
	CHECK_INT_EQ(a->hs_exact, b->hs_exact);
	CHECK_INT_EQ(a->hs_confirm, b->hs_confirm);
	CHECK_INT_EQ(a->no_hs, b->no_hs);
	CHECK(a->hs_bytes == b->hs_bytes);
}

/* The names of the cache files in dir, sorted; returns their number. */
static size_t cache_files(const char *dir, char names[][CHECKS_CACHE_NAME_LEN + 1], size_t max)
{
	struct dirent **list = NULL;
	int k = scandir(dir, &list, NULL, alphasort);
	size_t n = 0;
	for (int i = 0; i < k; i++) {
		const char *s = list[i]->d_name;
		size_t l = strlen(s);
		if (l == CHECKS_CACHE_NAME_LEN && strcmp(s + l - 5, ".hsdb") == 0) {
			if (n < max)
				memcpy(names[n], s, CHECKS_CACHE_NAME_LEN + 1);
			n++;
		}
		free(list[i]);
	}
	free(list);
	return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	*len = fread(b, 1, (size_t)n, f);
	fclose(f);
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_INT_EQ(fwrite(b, 1, len, f), len);
	fclose(f);
	chmod(path, 0600);
}

/* The one cache file in dir: its path in path, its bytes returned. */
static uint8_t *the_file(const char *dir, char *path, size_t pathlen, size_t *len)
{
	char names[4][CHECKS_CACHE_NAME_LEN + 1];
	CHECK_INT_EQ(cache_files(dir, names, 4), 1);
	snprintf(path, pathlen, "%s/%s", dir, names[0]);
	return slurp(path, len);
}

static void test_hit_after_miss(void)
{
	char dir[160];
	cache_dir(dir, sizeof(dir), "hit");
	struct built ref = build(pcre_rules, regexp_rules, NULL);
	struct built miss = build(pcre_rules, regexp_rules, dir);
	struct built hit = build(pcre_rules, regexp_rules, dir);
	CHECK(!ref.st.cache_hit && !ref.st.cache_stored);
	CHECK_STR_EQ(ref.st.cache_error, "");
	CHECK(!miss.st.cache_hit && miss.st.cache_stored);
	CHECK_STR_EQ(miss.st.cache_error, "");
	CHECK_INT_EQ(miss.st.hs_compiles, 1);
	CHECK(hit.st.cache_hit && !hit.st.cache_stored);
	CHECK_STR_EQ(hit.st.cache_error, "");
	CHECK_INT_EQ(hit.st.hs_compiles, 0);
	/* The set has rules of each mode, so the decisions are really restored. */
	CHECK(ref.st.hs_exact > 0 && ref.st.hs_confirm > 3 && ref.st.no_hs > 2);
	same_stats(&hit.st, &ref.st);
	same_stats(&miss.st, &ref.st);
	same_answers(ref.c, hit.c);
	same_answers(ref.c, miss.c);
	struct stat st;
	CHECK_INT_EQ(stat(dir, &st), 0);
	CHECK_INT_EQ(st.st_mode & 0777, 0700 & ~(mode_t)022);
	char names[4][CHECKS_CACHE_NAME_LEN + 1];
	CHECK_INT_EQ(cache_files(dir, names, 4), 1);
	checks_free(ref.c);
	checks_free(miss.c);
	checks_free(hit.c);

	/* The action text is not in the key: a hit, with the new text. */
	char *edited = strdup(pcre_rules);
	char *at = strstr(edited, "REJECT drugs");
	memcpy(at, "REJECT pills", 12);
	ref = build(edited, regexp_rules, NULL);
	hit = build(edited, regexp_rules, dir);
	CHECK(hit.st.cache_hit);
	same_answers(ref.c, hit.c);
	checks_free(ref.c);
	checks_free(hit.c);
	free(edited);

	/* Rules Hyperscan never gets (all none with an expression): an entry without a
	 * database, hit like any other. */
	const char *none = "/(?R)a/ REJECT r\n/\\Gb/ REJECT g\n";
	ref = build(none, NULL, NULL);
	miss = build(none, NULL, dir);
	hit = build(none, NULL, dir);
	CHECK(miss.st.cache_stored && hit.st.cache_hit);
	CHECK_INT_EQ(hit.st.no_hs, 2);
	same_answers(ref.c, hit.c);
	checks_free(ref.c);
	checks_free(miss.c);
	checks_free(hit.c);

	/* Nothing for Hyperscan at all (regexp: rules it cannot take): nothing cached. */
	const char *nohs = "/\\<w\\>/ REJECT w\n";
	miss = build("", nohs, dir);
	CHECK(!miss.st.cache_stored && !miss.st.cache_hit);
	CHECK_STR_EQ(miss.st.cache_error, "");
	checks_free(miss.c);
	CHECK_INT_EQ(cache_files(dir, names, 4), 2);

	/* A missing directory is made, parents too; an empty name means no cache. */
	char deep[200];
	snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
	miss = build(pcre_rules, NULL, deep);
	CHECK(miss.st.cache_stored);
	CHECK_INT_EQ(cache_files(deep, names, 4), 1);
	checks_free(miss.c);
	miss = build(pcre_rules, NULL, "");
	CHECK(!miss.st.cache_stored && !miss.st.cache_hit);
	CHECK_STR_EQ(miss.st.cache_error, "");
	checks_free(miss.c);
	miss = build(pcre_rules, NULL, "relative/dir");
	CHECK(!miss.st.cache_stored && strstr(miss.st.cache_error, "not an absolute path"));
	checks_free(miss.c);
	/* The list reader passes the options on. */
	char listfile[200], list[220];
	snprintf(listfile, sizeof(listfile), "%s/hc", cache_root);
	spit(listfile, (const uint8_t *)pcre_rules, strlen(pcre_rules));
	snprintf(list, sizeof(list), "pcre:%s", listfile);
	struct checks_options o = { .cache_dir = deep };
	struct checks *lc = NULL;
	char err[256];
	CHECK_INT_EQ(checks_compile_list_opts(list, &o, &lc, err, sizeof(err)), 0);
	struct checks_stats lst;
	checks_stats(lc, &lst);
	CHECK(lst.cache_hit); /* the set compiled into the deep directory above */
	checks_free(lc);
	unlink(listfile);
	cache_rm(dir);
}

static void test_key_changes(void)
{
	char dir[160];
	cache_dir(dir, sizeof(dir), "key");
	char names[16][CHECKS_CACHE_NAME_LEN + 1];
	struct built b = build(pcre_rules, regexp_rules, dir);
	CHECK(b.st.cache_stored);
	checks_free(b.c);
	/* One changed rule, one changed flag, an E added (same expression and flags, another
	 * mode), two rules swapped, a regexp: rule's flag: each a miss, then a hit. */
	static const char *const edits[][2] = {
		{ "viagra\\b/ REJECT", "viagrb\\b/ REJECT" },
		{ "spam\\.example/i", "spam\\.example/ " },
		{ "winner$/E", "winner$/ " },
		{ "/prize/A", "/prize/ " },
	};
	size_t files = 1;
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char *t = strdup(pcre_rules);
		char *at = strstr(t, edits[i][0]);
		CHECK(at != NULL);
		if (at)
			memcpy(at, edits[i][1], strlen(edits[i][1]));
		struct built ref = build(t, regexp_rules, NULL);
		struct built m = build(t, regexp_rules, dir);
		struct built h = build(t, regexp_rules, dir);
		CHECK(!m.st.cache_hit && m.st.cache_stored);
		CHECK(h.st.cache_hit);
		same_answers(ref.c, h.c);
		CHECK_INT_EQ(cache_files(dir, names, 16), ++files);
		checks_free(ref.c);
		checks_free(m.c);
		checks_free(h.c);
		free(t);
	}
	const char *swapped = "/^X-Ere: (ab|cd)+e$/ REJECT ere\n/^subject: .*casino/ REJECT casino\n";
	const char *iflag = "/^subject: .*casino/i REJECT casino\n/^X-Ere: (ab|cd)+e$/ REJECT ere\n";
	const char *orig = "/^subject: .*casino/ REJECT casino\n/^X-Ere: (ab|cd)+e$/ REJECT ere\n";
	const char *sets[] = { orig, swapped, iflag };
	for (size_t i = 0; i < 3; i++) {
		struct built m = build(sets[i], NULL, dir);
		CHECK(!m.st.cache_hit && m.st.cache_stored);
		checks_free(m.c);
	}
	CHECK_INT_EQ(cache_files(dir, names, 16), files + 3);

	/* The key itself: every input counts, and expressions cannot run together. */
	struct checks_cache_rule r[2] = { { "ab", HS_FLAG_SINGLEMATCH, 0, 0 },
					  { "c", HS_FLAG_SINGLEMATCH, 1, 0 } };
	uint8_t k0[32], k[32];
	CHECK_INT_EQ(checks_cache_key(r, 2, 2, k0), 0);
	CHECK_INT_EQ(checks_cache_key(r, 2, 2, k), 0);
	CHECK(memcmp(k0, k, 32) == 0);
	CHECK_INT_EQ(checks_cache_key(r, 2, 3, k), 0);
	CHECK(memcmp(k0, k, 32) != 0);
	CHECK_INT_EQ(checks_cache_key(r, 1, 2, k), 0);
	CHECK(memcmp(k0, k, 32) != 0);
	struct checks_cache_rule v[2];
	for (int which = 0; which < 5; which++) {
		memcpy(v, r, sizeof(v));
		if (which == 0) {
			v[0].expr = "a";
			v[1].expr = "bc";
		} else if (which == 1) {
			v[1].flags |= HS_FLAG_CASELESS;
		} else if (which == 2) {
			v[1].id = 2;
		} else if (which == 3) {
			v[0].mode = CHECKS_CACHE_CONFIRM;
		} else {
			v[0].expr = "ab\n";
		}
		CHECK_INT_EQ(checks_cache_key(v, 2, 2, k), 0);
		CHECK(memcmp(k0, k, 32) != 0);
	}
	char name[CHECKS_CACHE_NAME_LEN + 1];
	checks_cache_file_name(k0, name);
	CHECK_INT_EQ(strlen(name), CHECKS_CACHE_NAME_LEN);
	CHECK(strcmp(name + 64, ".hsdb") == 0);
	cache_rm(dir);
}

/* Recompute a file's checksum after an edit, so the edit reaches the checks behind it. */
static void seal(uint8_t *b, size_t len)
{
	unsigned n = 0;
	EVP_Digest(b + CHECKS_CACHE_HEADER_LEN, len - CHECKS_CACHE_HEADER_LEN, b + 64, &n,
		   EVP_sha256(), NULL);
}

/* Decode a copy of exactly len bytes. */
static int decode_copy(const uint8_t *b, size_t len, const uint8_t *key,
		       const struct checks_cache_rule *r, size_t n, char *why, size_t whylen)
{
	uint8_t *copy = malloc(len ? len : 1);
	memcpy(copy, b, len);
	struct checks_cache_decision *d = calloc(n ? n : 1, sizeof(*d));
	hs_database_t *db = NULL;
	int rc = checks_cache_decode(copy, len, key, r, n, d, &db, why, whylen);
	hs_free_database(db);
	free(d);
	free(copy);
	return rc;
}

/* The inputs of the pcre_rules set, taken from a real file: its records give ids and
 * flags, and the key is in the header. A decision that raised a mode or added the
 * prefilter flag is taken back to what the rule started with, so the file decodes. */
static size_t inputs_of(const uint8_t *b, struct checks_cache_rule *r, size_t max)
{
	size_t n = b[48] | (size_t)b[49] << 8;
	CHECK(n <= max);
	for (size_t i = 0; i < n && i < max; i++) {
		const uint8_t *p = b + CHECKS_CACHE_HEADER_LEN + i * CHECKS_CACHE_RECORD_LEN;
		r[i].id = (unsigned)(p[0] | p[1] << 8 | p[2] << 16 | (unsigned)p[3] << 24);
		r[i].flags = (unsigned)(p[4] | p[5] << 8 | p[6] << 16 | (unsigned)p[7] << 24) &
			     ~(unsigned)HS_FLAG_PREFILTER;
		r[i].mode = CHECKS_CACHE_EXACT;
		r[i].expr = "";
	}
	return n;
}

static void test_corrupt(void)
{
	char dir[160], path[300];
	cache_dir(dir, sizeof(dir), "corrupt");
	struct built ref = build(pcre_rules, regexp_rules, NULL);
	struct built first = build(pcre_rules, regexp_rules, dir);
	CHECK(first.st.cache_stored);
	checks_free(first.c);
	size_t len = 0;
	uint8_t *good = the_file(dir, path, sizeof(path), &len);
	CHECK(good && len > CHECKS_CACHE_HEADER_LEN);
	if (!good)
		return;
	struct checks_cache_rule r[64];
	size_t n = inputs_of(good, r, 64);
	uint8_t key[32];
	memcpy(key, good + 16, 32);
	char why[256];
	CHECK_INT_EQ(decode_copy(good, len, key, r, n, why, sizeof(why)), 1);

	/* Every truncation: not an entry, and nothing read past the end (ASan). */
	size_t truncs = 0;
	for (size_t l = 0; l < len; l++, truncs++)
		CHECK_INT_EQ(decode_copy(good, l, key, r, n, why, sizeof(why)), 0);
	/* A byte more is no better. */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, good, len);
	longer[len] = 0;
	CHECK_INT_EQ(decode_copy(longer, len + 1, key, r, n, why, sizeof(why)), 0);
	free(longer);

	/* Every bit of the header, and a spread of payload bits. Unsealed, the checksum (or a
	 * header check) refuses each; sealed, whatever is accepted must be a set that still
	 * answers right (a mode raised from exact to confirm is harmless). */
	uint8_t *bad = malloc(len);
	size_t flips = 0, accepted = 0;
	for (size_t pos = 0; pos < len; pos += pos < CHECKS_CACHE_HEADER_LEN + 48 ? 1 : 61) {
		for (int bit = 0; bit < 8; bit++, flips++) {
			memcpy(bad, good, len);
			bad[pos] ^= (uint8_t)(1u << bit);
			int rc = decode_copy(bad, len, key, r, n, why, sizeof(why));
			if (pos < 64 || pos >= 96)
				CHECK_INT_EQ(rc, 0);
			if (pos < 96 && pos >= 16)
				continue; /* the key and checksum: sealing changes nothing */
			seal(bad, len);
			if (decode_copy(bad, len, key, r, n, why, sizeof(why)) != 1)
				continue;
			accepted++;
			spit(path, bad, len);
			struct built h = build(pcre_rules, regexp_rules, dir);
			CHECK(h.st.cache_hit || h.st.cache_stored);
			same_answers(ref.c, h.c);
			checks_free(h.c);
		}
	}
	free(bad);
	fprintf(stderr, "  %zu truncations, %zu bit flips (%zu sealed flips accepted)\n", truncs,
		flips, accepted);

	/* Through the compile: a truncated, a flipped and an empty file each miss with a
	 * reason, are compiled, rewritten, and hit next time. */
	size_t cuts[] = { 0, 1, 8, 95, 96, 97, len / 2, len - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]) + 1; i++) {
		if (i < sizeof(cuts) / sizeof(cuts[0])) {
			spit(path, good, cuts[i]);
		} else {
			uint8_t *f = malloc(len);
			memcpy(f, good, len);
			f[len - 7] ^= 0x20;
			spit(path, f, len);
			free(f);
		}
		struct built m = build(pcre_rules, regexp_rules, dir);
		CHECK(!m.st.cache_hit && m.st.cache_stored);
		CHECK(strstr(m.st.cache_error, "compiled again") != NULL);
		same_answers(ref.c, m.c);
		checks_free(m.c);
		size_t l2 = 0;
		uint8_t *again = slurp(path, &l2);
		CHECK_INT_EQ(l2, len);
		free(again);
		struct built h = build(pcre_rules, regexp_rules, dir);
		CHECK(h.st.cache_hit);
		CHECK_STR_EQ(h.st.cache_error, "");
		checks_free(h.c);
	}

	/* Another format version, magic or key: a miss. Decisions the inputs cannot give
	 * (a lower mode, a foreign flag, another id), sealed: refused. */
	const struct {
		size_t off;
		uint8_t val;
	} edits[] = { { 8, 2 }, { 0, 'x' }, { 20, 0 }, { 12, 95 } };
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		uint8_t *f = malloc(len);
		memcpy(f, good, len);
		f[edits[i].off] = edits[i].val == f[edits[i].off] ? (uint8_t)~edits[i].val
								   : edits[i].val;
		seal(f, len);
		CHECK_INT_EQ(decode_copy(f, len, key, r, n, why, sizeof(why)), 0);
		free(f);
	}
	struct checks_cache_rule strict[64];
	memcpy(strict, r, sizeof(strict));
	size_t confirm_at = n;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = good + CHECKS_CACHE_HEADER_LEN + i * CHECKS_CACHE_RECORD_LEN;
		if (p[8] == CHECKS_CACHE_CONFIRM && confirm_at == n)
			confirm_at = i;
	}
	CHECK(confirm_at < n);
	if (confirm_at < n) {
		strict[confirm_at].mode = CHECKS_CACHE_NONE; /* a mode cannot go down */
		CHECK_INT_EQ(decode_copy(good, len, key, strict, n, why, sizeof(why)), 0);
		CHECK(strstr(why, "decision") != NULL);
		memcpy(strict, r, sizeof(strict));
		strict[confirm_at].flags ^= HS_FLAG_CASELESS;
		CHECK_INT_EQ(decode_copy(good, len, key, strict, n, why, sizeof(why)), 0);
		memcpy(strict, r, sizeof(strict));
		strict[confirm_at].id++;
		CHECK_INT_EQ(decode_copy(good, len, key, strict, n, why, sizeof(why)), 0);
	}
	CHECK_INT_EQ(decode_copy(good, len, key, r, n - 1, why, sizeof(why)), 0);
	uint8_t other[32];
	memcpy(other, key, 32);
	other[31] ^= 1;
	CHECK_INT_EQ(decode_copy(good, len, other, r, n, why, sizeof(why)), 0);
	CHECK(strstr(why, "key") != NULL);

	free(good);
	checks_free(ref.c);
	cache_rm(dir);
}

/* Something in the way of a cache file, for each kind of thing that is not a file we
 * wrote: each is a miss, replaced by the rename. */
static void test_bad_files(void)
{
	char dir[160], path[300];
	cache_dir(dir, sizeof(dir), "files");
	struct built b = build(pcre_rules, NULL, dir);
	checks_free(b.c);
	size_t len;
	uint8_t *good = the_file(dir, path, sizeof(path), &len);
	for (int kind = 0; kind < 5; kind++) {
		unlink(path);
		if (kind == 0) {
			CHECK_INT_EQ(symlink("/etc/passwd", path), 0);
		} else if (kind == 1) {
			CHECK_INT_EQ(mkfifo(path, 0600), 0);
		} else if (kind == 2) {
			spit(path, good, len);
			chmod(path, 0622);
		} else if (kind == 3) {
			if (geteuid() != 0)
				continue; /* cannot give a file away */
			spit(path, good, len);
			CHECK_INT_EQ(chown(path, 4242, 4242), 0);
		} else {
			CHECK_INT_EQ(mkdir(path, 0700), 0);
		}
		struct built m = build(pcre_rules, NULL, dir);
		CHECK(!m.st.cache_hit);
		if (kind == 4) { /* a directory cannot be renamed over */
			CHECK(!m.st.cache_stored && m.st.cache_error[0]);
			rmdir(path);
		} else {
			CHECK(m.st.cache_stored);
			CHECK(strstr(m.st.cache_error, "compiled again") != NULL);
			struct stat st;
			CHECK_INT_EQ(lstat(path, &st), 0);
			CHECK(S_ISREG(st.st_mode) && st.st_uid == geteuid());
			CHECK_INT_EQ(st.st_mode & 0777, 0600);
		}
		checks_free(m.c);
	}
	free(good);
	cache_rm(dir);
}

static void test_permissions(void)
{
	char dir[160], path[300];
	cache_dir(dir, sizeof(dir), "perm");
	struct built ref = build(pcre_rules, NULL, NULL);
	struct built b = build(pcre_rules, NULL, dir);
	checks_free(b.c);
	size_t len;
	uint8_t *good = the_file(dir, path, sizeof(path), &len);
	free(good);
	struct stat before;
	CHECK_INT_EQ(stat(path, &before), 0);
	/* A valid entry, in a directory that others could have written it into: not read,
	 * not written. */
	const mode_t modes[] = { 0777, 0720, 0702, 0770 };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		CHECK_INT_EQ(chmod(dir, modes[i]), 0);
		struct built m = build(pcre_rules, NULL, dir);
		CHECK(!m.st.cache_hit && !m.st.cache_stored);
		CHECK(strstr(m.st.cache_error, "group or world writable") != NULL);
		CHECK_INT_EQ(m.st.hs_compiles, 1);
		same_answers(ref.c, m.c);
		checks_free(m.c);
	}
	struct stat after;
	CHECK_INT_EQ(stat(path, &after), 0);
	CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	      after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
	/* 0755 is fine: others may read, not write. */
	CHECK_INT_EQ(chmod(dir, 0755), 0);
	struct built h = build(pcre_rules, NULL, dir);
	CHECK(h.st.cache_hit);
	checks_free(h.c);
	/* Another owner: not used. */
	if (geteuid() == 0) {
		CHECK_INT_EQ(chown(dir, 4242, 4242), 0);
		struct built m = build(pcre_rules, NULL, dir);
		CHECK(!m.st.cache_hit && !m.st.cache_stored);
		CHECK(strstr(m.st.cache_error, "owned by uid 4242") != NULL);
		checks_free(m.c);
		CHECK_INT_EQ(chown(dir, 0, 0), 0);
	}
	/* A path that cannot be a directory: a warning, and the compile goes on. */
	char file[200];
	snprintf(file, sizeof(file), "%s/plain", cache_root);
	spit(file, (const uint8_t *)"x", 1);
	char under[220];
	snprintf(under, sizeof(under), "%s/sub", file);
	struct built m = build(pcre_rules, NULL, file);
	CHECK(!m.st.cache_hit && m.st.cache_error[0]);
	checks_free(m.c);
	m = build(pcre_rules, NULL, under);
	CHECK(!m.st.cache_hit && strstr(m.st.cache_error, "Not a directory") != NULL);
	same_answers(ref.c, m.c);
	checks_free(m.c);
	/* Not even root can make directories in /proc. */
	m = build(pcre_rules, NULL, "/proc/mxgate-no-such-dir/checks");
	CHECK(!m.st.cache_hit && strstr(m.st.cache_error, "cannot create") != NULL);
	checks_free(m.c);
	unlink(file);
	checks_free(ref.c);
	cache_rm(dir);
}

static void set_mtime(const char *dir, const char *name, time_t sec)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	struct timespec ts[2] = { { sec, 0 }, { sec, 0 } };
	CHECK_INT_EQ(utimensat(AT_FDCWD, p, ts, 0), 0);
}

/* A one-rule set that differs by i; name gets the file it added (unchanged on a hit). */
static struct built build_nth(size_t i, const char *dir, const struct checks_options *base,
			      char *name)
{
	static char before[80][CHECKS_CACHE_NAME_LEN + 1], after[80][CHECKS_CACHE_NAME_LEN + 1];
	size_t nb = cache_files(dir, before, 80);
	char rule[64];
	snprintf(rule, sizeof(rule), "/^Subject: word%zu/ REJECT %zu\n", i, i);
	struct checks_options o = *base;
	o.cache_dir = dir;
	struct built b = build_opts(rule, NULL, &o);
	size_t na = cache_files(dir, after, 80);
	for (size_t j = 0; j < na && j < 80; j++) {
		bool old = false;
		for (size_t k = 0; k < nb && k < 80; k++)
			old = old || strcmp(after[j], before[k]) == 0;
		if (!old)
			memcpy(name, after[j], CHECKS_CACHE_NAME_LEN + 1);
	}
	return b;
}

static void test_eviction(void)
{
	char dir[160];
	cache_dir(dir, sizeof(dir), "evict");
	struct checks_options o = { .cache_max_files = 3 };
	char names[80][CHECKS_CACHE_NAME_LEN + 1], order[8][CHECKS_CACHE_NAME_LEN + 1];
	/* Six sets, each file given an mtime older than the next: the three newest stay. */
	for (size_t i = 0; i < 6; i++) {
		order[i][0] = '\0';
		struct built b = build_nth(i, dir, &o, order[i]);
		CHECK(b.st.cache_stored);
		checks_free(b.c);
		CHECK(order[i][0] != '\0');
		set_mtime(dir, order[i], (time_t)(1000000000 + i));
		CHECK_INT_EQ(cache_files(dir, names, 80), i < 3 ? i + 1 : 3);
	}
	CHECK_INT_EQ(cache_files(dir, names, 80), 3);
	for (size_t i = 3; i < 6; i++) {
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", dir, order[i]);
		CHECK_INT_EQ(access(p, F_OK), 0);
	}
	/* A hit makes its file the most recent: set 3 is used, then a new set evicts 4. */
	struct built h = build_nth(3, dir, &o, order[7]);
	CHECK(h.st.cache_hit);
	checks_free(h.c);
	struct built b = build_nth(6, dir, &o, order[6]);
	CHECK(b.st.cache_stored);
	checks_free(b.c);
	char p3[600], p4[600];
	snprintf(p3, sizeof(p3), "%s/%s", dir, order[3]);
	snprintf(p4, sizeof(p4), "%s/%s", dir, order[4]);
	CHECK_INT_EQ(access(p3, F_OK), 0);
	CHECK(access(p4, F_OK) < 0);
	CHECK_INT_EQ(cache_files(dir, names, 80), 3);

	/* A byte bound: one file's worth keeps only the newest. */
	struct checks_options ob = { .cache_max_bytes = 1 };
	b = build_nth(7, dir, &ob, order[7]);
	CHECK(b.st.cache_stored);
	checks_free(b.c);
	CHECK_INT_EQ(cache_files(dir, names, 80), 1);

	/* A writer's temporary file: removed when an hour old, kept while fresh; other
	 * files are never touched. */
	char stale[600], fresh[600], other[600];
	snprintf(stale, sizeof(stale), "%s/.%.64s.0123456789abcdef.tmp", dir, names[0]);
	snprintf(fresh, sizeof(fresh), "%s/.%.64s.fedcba9876543210.tmp", dir, names[0]);
	snprintf(other, sizeof(other), "%s/README", dir);
	spit(stale, (const uint8_t *)"x", 1);
	spit(fresh, (const uint8_t *)"x", 1);
	spit(other, (const uint8_t *)"x", 1);
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	CHECK_INT_EQ(utimensat(AT_FDCWD, stale, old, 0), 0);
	b = build_nth(8, dir, &o, order[7]);
	checks_free(b.c);
	CHECK(access(stale, F_OK) < 0);
	CHECK_INT_EQ(access(fresh, F_OK), 0);
	CHECK_INT_EQ(access(other, F_OK), 0);
	cache_rm(dir);
}

/* The API without files: encode/decode of an entry without a database, and refusals. */
static void test_codec(void)
{
	uint8_t key[32] = { 1, 2, 3 };
	struct checks_cache_rule r[2] = { { "(?R)", HS_FLAG_SINGLEMATCH, 3, CHECKS_CACHE_EXACT },
					  { "x", HS_FLAG_DOTALL, 5, CHECKS_CACHE_CONFIRM } };
	struct checks_cache_decision d[2] = { { HS_FLAG_SINGLEMATCH | HS_FLAG_PREFILTER,
						CHECKS_CACHE_NONE },
					      { HS_FLAG_DOTALL, CHECKS_CACHE_NONE } };
	uint8_t *buf = NULL;
	size_t len = 0;
	char why[256];
	CHECK_INT_EQ(checks_cache_encode(key, r, d, 2, NULL, &buf, &len, why, sizeof(why)), 0);
	CHECK_INT_EQ(len, CHECKS_CACHE_HEADER_LEN + 2 * CHECKS_CACHE_RECORD_LEN);
	struct checks_cache_decision got[2] = { { 0, 0 }, { 0, 0 } };
	hs_database_t *db = (hs_database_t *)&got; /* must be overwritten */
	CHECK_INT_EQ(checks_cache_decode(buf, len, key, r, 2, got, &db, why, sizeof(why)), 1);
	CHECK(db == NULL);
	CHECK_INT_EQ(got[0].flags, d[0].flags);
	CHECK_INT_EQ(got[0].mode, CHECKS_CACHE_NONE);
	CHECK_INT_EQ(got[1].mode, CHECKS_CACHE_NONE);
	free(buf);
	/* An exact rule with the prefilter flag cannot come out of a build. */
	d[0].mode = CHECKS_CACHE_EXACT;
	d[1].mode = CHECKS_CACHE_CONFIRM;
	CHECK_INT_EQ(checks_cache_encode(key, r, d, 2, NULL, &buf, &len, why, sizeof(why)), 0);
	CHECK_INT_EQ(decode_copy(buf, len, key, r, 2, why, sizeof(why)), 0);
	free(buf);
	/* A rule left in the database but no database: refused. */
	d[0] = (struct checks_cache_decision){ HS_FLAG_SINGLEMATCH, CHECKS_CACHE_NONE };
	CHECK_INT_EQ(checks_cache_encode(key, r, d, 2, NULL, &buf, &len, why, sizeof(why)), 0);
	CHECK_INT_EQ(decode_copy(buf, len, key, r, 2, why, sizeof(why)), 0);
	CHECK(strstr(why, "disagree") != NULL);
	free(buf);
	/* Too many rules to write. */
	CHECK_INT_EQ(checks_cache_encode(key, r, d, CHECKS_CACHE_RECORDS_MAX + 1, NULL, &buf, &len,
					 why, sizeof(why)),
		     -EINVAL);
	/* The directory API on its own. */
	int dfd = -1;
	CHECK_INT_EQ(checks_cache_dir_open("nope", &dfd, why, sizeof(why)), -EINVAL);
	CHECK_INT_EQ(dfd, -1);
	CHECK_INT_EQ(checks_cache_dir_open(cache_root, &dfd, why, sizeof(why)), 0);
	CHECK(dfd >= 0);
	struct checks_cache_decision dd[2];
	CHECK_INT_EQ(checks_cache_load(dfd, key, r, 2, dd, &db, why, sizeof(why)), 0);
	CHECK_STR_EQ(why, ""); /* no file: a plain miss */
	CHECK_INT_EQ(checks_cache_evict(dfd, NULL, NULL, 0), 0);
	close(dfd);
}

int main(void)
{
	umask(022);
	cache_root_make();
	RUN_TEST(test_hit_after_miss);
	RUN_TEST(test_key_changes);
	RUN_TEST(test_corrupt);
	RUN_TEST(test_bad_files);
	RUN_TEST(test_permissions);
	RUN_TEST(test_eviction);
	RUN_TEST(test_codec);
	cache_rm(cache_root);
	return TEST_RESULT();
}
