/* libFuzzer harness for local DNSBL zones: any bytes as an rbldnsd zone file.
 *
 * The first byte picks the format (ip4set ... combined); the rest is the file. The parser must
 * never crash, leak, hang or read out of bounds, and its model must be sane (intervals
 * ordered, values and names in bounds). A zone that parses is built into an LMDB store and
 * probed at every entry's edges and their neighbours: listed exactly when a brute-force scan
 * of the model says so (the most specific entry wins; ip4set: an exclusion wins a tie, the
 * tries: the first line). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "tables/rbl_parse.h"
#include "tables/rbl_zone.h"
#include "tables/tables_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tables_env *fuzz_env;
static struct tables_reader *fuzz_rd;

static void fuzz_cleanup(void)
{
	char p[128];
	tables_reader_close(fuzz_rd);
	tables_env_close(fuzz_env);
	snprintf(p, sizeof(p), "/tmp/mxgate-fuzz-rbl-%d/data.mdb", (int)getpid());
	unlink(p);
	snprintf(p, sizeof(p), "/tmp/mxgate-fuzz-rbl-%d/lock.mdb", (int)getpid());
	unlink(p);
	snprintf(p, sizeof(p), "/tmp/mxgate-fuzz-rbl-%d", (int)getpid());
	rmdir(p);
}

static void fuzz_open(void)
{
	if (fuzz_env)
		return;
	char dir[64], err[256];
	snprintf(dir, sizeof(dir), "/tmp/mxgate-fuzz-rbl-%d", (int)getpid());
	struct tables_env_opts o = { .map_size = (size_t)1 << 30 };
	FUZZ_CHECK(tables_env_open(dir, &o, &fuzz_env, err, sizeof(err)) == 0);
	FUZZ_CHECK(tables_reader_open(fuzz_env, &fuzz_rd) == 0);
	atexit(fuzz_cleanup);
}

static bool fuzz_ds_on(const struct rbl_model *m, unsigned d)
{
	/* the base zone: "@" among the subzones */
	const char *s = m->ds[d].subzones;
	for (const char *p = s; (p = strchr(p, '@')) != NULL; p++)
		if ((p == s || p[-1] == ' ' || p[-1] == '\t') && (p[1] == '\0' || p[1] == ' ' || p[1] == '\t'))
			return true;
	return false;
}

/* Is address x (family fam) listed by some dataset, by brute force over the model? */
static bool fuzz_expect(const struct rbl_model *m, uint8_t fam, rbl_u128 x)
{
	for (unsigned d = 0; d < m->nds; d++) {
		if (!fuzz_ds_on(m, d))
			continue;
		const struct rbl_ip_entry *best = NULL;
		bool excl_at_best = false;
		for (size_t i = 0; i < m->nip; i++) {
			const struct rbl_ip_entry *e = &m->ip[i];
			if (e->ds != d || e->family != fam || x < e->lo || x > e->hi)
				continue;
			if (!best || e->prio > best->prio) {
				best = e;
				excl_at_best = e->excl;
			} else if (e->prio == best->prio) {
				excl_at_best |= e->excl;
				if (e->seq < best->seq)
					best = e;
			}
		}
		if (!best)
			continue;
		bool listed = m->ds[d].fmt == RBL_FORMAT_IP4SET ? !excl_at_best : !best->excl;
		if (listed)
			return true;
	}
	return false;
}

static void fuzz_probe(struct rbl_zone *z, const struct rbl_model *m, uint8_t fam, rbl_u128 x)
{
	struct mx_inet_addr a = { .family = fam == 4 ? AF_INET : AF_INET6 };
	if (fam == 4) {
		if (x > UINT32_MAX)
			return;
		for (int i = 0; i < 4; i++)
			a.bytes[i] = (uint8_t)(x >> (24 - 8 * i));
	} else {
		for (int i = 0; i < 16; i++)
			a.bytes[i] = (uint8_t)(x >> (120 - 8 * i));
		if (memcmp(a.bytes, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
			return; /* queried as IPv4 */
	}
	struct rbl_result res;
	int rc = rbl_zone_query_addr(z, &a, 0, &res);
	FUZZ_CHECK(rc == 0 || rc == 1);
	FUZZ_CHECK(rc == (int)fuzz_expect(m, fam, x));
	FUZZ_CHECK(rc == 0 ? res.count == 0 : res.count >= 1 && res.count <= RBL_ANSWERS_MAX);
	for (unsigned i = 0; i < res.count; i++)
		FUZZ_CHECK(strlen(res.answers[i].txt) <= RBL_TXT_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
	enum rbl_format fmt = (enum rbl_format)(data[0] % RBL_FORMAT_MAX);
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	struct rbl_model m;
	char err[300] = "";
	int rc = rbl_parse(text, len, fmt, &m, NULL, NULL, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0) {
		FUZZ_CHECK(strncmp(err, "line ", 5) == 0);
		rbl_model_free(&m);
		return 0;
	}
	FUZZ_CHECK(m.nds >= 1 || fmt == RBL_FORMAT_COMBINED);
	for (size_t i = 0; i < m.nip; i++) {
		FUZZ_CHECK(m.ip[i].lo <= m.ip[i].hi && m.ip[i].ds < m.nds);
		FUZZ_CHECK(m.ip[i].excl || m.ip[i].val < m.nvalues);
		FUZZ_CHECK(m.ip[i].family == 6 || m.ip[i].hi <= UINT32_MAX);
	}
	for (size_t i = 0; i < m.nnames; i++) {
		FUZZ_CHECK(m.names[i].name_len >= 1 && m.names[i].name_len <= RBL_NAME_MAX);
		FUZZ_CHECK((size_t)m.names[i].name_off + m.names[i].name_len <= m.used);
		FUZZ_CHECK(m.names[i].excl || m.names[i].val < m.nvalues);
	}
	for (size_t i = 0; i < m.nvalues; i++)
		FUZZ_CHECK(!m.values[i].has_txt ||
			   (m.values[i].txt_len <= RBL_TXT_MAX &&
			    (size_t)m.values[i].txt_off + m.values[i].txt_len <= m.used));

	/* Build and probe (small zones: the brute force is quadratic). */
	if (m.nip <= 2000) {
		fuzz_open();
		rc = rbl_zone_build(fuzz_env, "fuzz.test", fmt, text, len, NULL, NULL, NULL, err,
				    sizeof(err));
		FUZZ_CHECK(rc == 0);
		FUZZ_CHECK(tables_reader_renew(fuzz_rd) == 0);
		struct rbl_zone *z;
		FUZZ_CHECK(rbl_zone_open(fuzz_rd, "fuzz.test", &z) == 0);
		for (size_t i = 0; i < m.nip && i < 300; i++) {
			const struct rbl_ip_entry *e = &m.ip[i];
			fuzz_probe(z, &m, e->family, e->lo);
			fuzz_probe(z, &m, e->family, e->hi);
			if (e->lo > 0)
				fuzz_probe(z, &m, e->family, e->lo - 1);
			if (e->hi < (rbl_u128)-1)
				fuzz_probe(z, &m, e->family, e->hi + 1);
		}
		for (size_t i = 0; i < m.nnames && i < 300; i++) {
			char name[RBL_NAME_MAX + 3];
			struct rbl_result res;
			snprintf(name, sizeof(name), "x.%.*s", (int)m.names[i].name_len,
				 m.arena + m.names[i].name_off);
			FUZZ_CHECK(rbl_zone_query_name(z, name + 2, 0, &res) >= 0);
			FUZZ_CHECK(rbl_zone_query_name(z, name, 0, &res) >= 0);
		}
		rbl_zone_close(z);
	}
	rbl_model_free(&m);
	return 0;
}
