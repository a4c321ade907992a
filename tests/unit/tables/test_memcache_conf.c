/* memcache_conf: memcache_table(5) files and the keys key_format and domain make. Each
 * file is parsed from a heap buffer of exactly its length, also cut short at every
 * offset (never a crash; a prefix either parses or fails with a reason). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tables/memcache_conf.h"
#include "tables/memcache_proto.h"
#include "testing.h"

static int parse(struct memcache_conf *c, const char *text, char *err, size_t errlen)
{
	size_t len = strlen(text);
	char *copy = malloc(len ? len : 1);
	memcpy(copy, text, len);
	memcache_conf_init(c);
	err[0] = '\0';
	int rc = memcache_conf_parse(c, copy, len, err, errlen);
	free(copy);
	return rc;
}

static void test_defaults(void)
{
	struct memcache_conf c;
	char err[256];
	CHECK_INT_EQ(parse(&c, "", err, sizeof(err)), 0);
	CHECK_STR_EQ(c.memcache, "inet:localhost:11211");
	CHECK_STR_EQ(c.backup, "");
	CHECK_INT_EQ(c.flags, 0);
	CHECK_INT_EQ(c.ttl, 3600);
	CHECK_STR_EQ(c.key_format, "%s");
	CHECK_INT_EQ(c.ndomains, 0);
	CHECK_INT_EQ(c.data_size_limit, 10240);
	CHECK_INT_EQ(c.line_size_limit, 1024);
	CHECK_INT_EQ(c.max_try, 2);
	CHECK_INT_EQ(c.retry_pause, 1);
	CHECK_INT_EQ(c.timeout, 2);
}

static const char full[] =
	"# postscreen's cache, shared\n"
	"memcache = inet:127.0.0.1:11311\n"
	"\n"
	"backup = btree:/var/lib/mxgate/postscreen_cache\n"
	"   # a comment between entries\n"
	"flags=3\n"
	"ttl = 7200  \n"
	"key_format = postscreen:%s\n"
	"domain = example.com,\n"
	"   !bad.example.com\n"
	"\texample.net\n"
	"data_size_limit = 2048\n"
	"line_size_limit = 512\n"
	"max_try = 3\n"
	"retry_pause = 5\n"
	"timeout = 1\n"
	"timeout = 4\n";

static void test_full(void)
{
	struct memcache_conf c;
	char err[256];
	CHECK_INT_EQ(parse(&c, full, err, sizeof(err)), 0);
	CHECK_STR_EQ(err, "");
	CHECK_STR_EQ(c.memcache, "inet:127.0.0.1:11311");
	CHECK_STR_EQ(c.backup, "btree:/var/lib/mxgate/postscreen_cache");
	CHECK_INT_EQ(c.flags, 3);
	CHECK_INT_EQ(c.ttl, 7200);
	CHECK_STR_EQ(c.key_format, "postscreen:%s");
	CHECK_INT_EQ(c.ndomains, 3);
	CHECK_STR_EQ(c.domain[0].name, "example.com");
	CHECK(!c.domain[0].negate);
	CHECK_STR_EQ(c.domain[1].name, "bad.example.com");
	CHECK(c.domain[1].negate);
	CHECK_STR_EQ(c.domain[2].name, "example.net");
	CHECK_INT_EQ(c.data_size_limit, 2048);
	CHECK_INT_EQ(c.line_size_limit, 512);
	CHECK_INT_EQ(c.max_try, 3);
	CHECK_INT_EQ(c.retry_pause, 5);
	CHECK_INT_EQ(c.timeout, 4); /* the later line wins */

	/* every prefix: no crash, a result, a reason with each failure */
	size_t len = strlen(full);
	for (size_t n = 0; n <= len; n++) {
		char *copy = malloc(n ? n : 1);
		memcpy(copy, full, n);
		memcache_conf_init(&c);
		err[0] = '\0';
		int rc = memcache_conf_parse(&c, copy, n, err, sizeof(err));
		CHECK(rc == 0 || (rc == -EINVAL && err[0]));
		free(copy);
	}
	/* CR LF line ends */
	CHECK_INT_EQ(parse(&c, "ttl = 5\r\nflags = 1\r\n", err, sizeof(err)), 0);
	CHECK_INT_EQ(c.ttl, 5);
	CHECK_INT_EQ(c.flags, 1);
	/* no final newline */
	CHECK_INT_EQ(parse(&c, "max_try = 7", err, sizeof(err)), 0);
	CHECK_INT_EQ(c.max_try, 7);
	/* key_digest empty is the default; the empty backup is none */
	CHECK_INT_EQ(parse(&c, "key_digest =\nbackup =\n", err, sizeof(err)), 0);
	CHECK_STR_EQ(c.backup, "");
}

static void bad(const char *text, int want, const char *why)
{
	struct memcache_conf c;
	char err[256];
	int rc = parse(&c, text, err, sizeof(err));
	CHECK_INT_EQ(rc, want);
	if (!strstr(err, why)) {
		fprintf(stderr, "  %s: err \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(false);
	}
}

static void test_errors(void)
{
	bad("tll = 5\n", -EINVAL, "line 1: unknown parameter \"tll\"");
	bad("ttl = 5\n\nttl\n", -EINVAL, "line 3: missing '='");
	bad(" ttl = 5\n", -EINVAL, "line 1: continuation line without");
	bad("= 5\n", -EINVAL, "missing parameter name");
	bad("t-l = 5\n", -EINVAL, "bad parameter name");
	bad("ttl = -1\n", -EINVAL, "bad number");
	bad("ttl = 5s\n", -EINVAL, "bad number");
	bad("ttl =\n", -EINVAL, "empty value");
	bad("ttl = 99999999999\n", -EINVAL, "ttl");
	bad("max_try = 0\n", -EINVAL, "out of range");
	bad("timeout = 0\n", -EINVAL, "out of range");
	bad("retry_pause = 0\n", -EINVAL, "out of range");
	bad("line_size_limit = 15\n", -EINVAL, "out of range");
	bad("data_size_limit = 0\n", -EINVAL, "out of range");
	bad("data_size_limit = 16777217\n", -EINVAL, "out of range");
	bad("key_format = %x\n", -EINVAL, "invalid expansion");
	bad("key_format = a%\n", -EINVAL, "invalid expansion");
	bad("key_format =\n", -EINVAL, "empty value");
	bad("memcache =\n", -EINVAL, "empty value");
	bad("key_digest = sha256\n", -EINVAL, "key_digest is not supported");
	bad("domain = hash:/etc/postfix/domains\n", -EINVAL, "only domain names");
	bad("domain = /etc/postfix/domains\n", -EINVAL, "only domain names");
	bad("domain = a, !\n", -EINVAL, "empty entry");
	bad("a = b\0c\n", -EINVAL, ""); /* strlen stops at the NUL: "a = b" */
	struct memcache_conf c;
	char err[256];
	memcache_conf_init(&c);
	CHECK_INT_EQ(memcache_conf_parse(&c, "ttl = 1\0\n", 9, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "NUL") != NULL);
	/* bounds: a value, a logical line, the file, the domain list */
	char *big = malloc(MEMCACHE_CONF_TEXT_MAX + 2);
	memset(big, '#', MEMCACHE_CONF_TEXT_MAX + 1);
	CHECK_INT_EQ(memcache_conf_parse(&c, big, MEMCACHE_CONF_TEXT_MAX + 1, err, sizeof(err)),
		     -E2BIG);
	CHECK_INT_EQ(memcache_conf_parse(&c, big, MEMCACHE_CONF_TEXT_MAX, err, sizeof(err)), 0);
	int n = snprintf(big, MEMCACHE_CONF_TEXT_MAX, "backup = lmdb:/");
	memset(big + n, 'x', 2000);
	big[n + 2000] = '\0';
	bad(big, -EINVAL, "line too long");
	n = snprintf(big, MEMCACHE_CONF_TEXT_MAX, "backup = lmdb:/");
	memset(big + n, 'x', 1100);
	big[n + 1100] = '\0';
	bad(big, -EINVAL, "value longer than");
	n = snprintf(big, MEMCACHE_CONF_TEXT_MAX, "domain =");
	for (int i = 0; i < MEMCACHE_CONF_DOMAINS_MAX + 1; i++)
		n += snprintf(big + n, MEMCACHE_CONF_TEXT_MAX - (size_t)n, "\n d%d.x", i);
	bad(big, -E2BIG, "more than");
	free(big);
}

/* The key made of in: out, or skipped (out NULL). */
static void key(const struct memcache_conf *c, const char *in, const char *out)
{
	long want = out ? (long)strlen(out) : 0;
	char buf[MEMCACHE_KEY_MAX + 1];
	long rc = memcache_conf_key(c, in, buf, sizeof(buf));
	if (rc != want)
		fprintf(stderr, "  key \"%s\" with \"%s\": %ld, want %ld\n", in, c->key_format, rc,
			want);
	CHECK_INT_EQ(rc, want);
	if (rc > 0)
		CHECK_STR_EQ(buf, out);
}

static void test_keys(void)
{
	struct memcache_conf c;
	char err[256];
	CHECK_INT_EQ(parse(&c, "", err, sizeof(err)), 0);
	key(&c, "192.0.2.1", "192.0.2.1");
	key(&c, "", NULL);
	key(&c, "a b", NULL); /* memcached takes no spaces */
	key(&c, "a\x01", NULL);

	CHECK_INT_EQ(parse(&c, "key_format = ps:%s", err, sizeof(err)), 0);
	key(&c, "192.0.2.1", "ps:192.0.2.1");
	CHECK_INT_EQ(parse(&c, "key_format = %%%u-%d-%1-%2-%3-%S-%U-%D", err, sizeof(err)), 0);
	key(&c, "joe@mail.example.com",
	    "%joe-mail.example.com-com-example-mail-joe@mail.example.com-joe-mail.example.com");
	key(&c, "joe@example.com", NULL);    /* %3: not enough labels */
	key(&c, "joe", NULL);                /* %d: no domain */
	key(&c, "@mail.example.com", NULL);  /* %u: empty user */
	key(&c, "joe@", NULL);
	key(&c, "joe@mail..com", NULL);      /* an empty label among those needed */
	CHECK_INT_EQ(parse(&c, "key_format = u=%u", err, sizeof(err)), 0);
	key(&c, "joe", "u=joe");             /* %u without @: the whole key */
	key(&c, "a@b@c", "u=a@b");           /* the last @ splits */

	/* the domain list: user@listed-domain only */
	CHECK_INT_EQ(parse(&c, "domain = example.com !no.example.com no.example.com", err,
			   sizeof(err)), 0);
	key(&c, "joe@example.com", "joe@example.com");
	key(&c, "joe@EXAMPLE.com", "joe@EXAMPLE.com");
	key(&c, "joe@no.example.com", NULL); /* the first match decides */
	key(&c, "joe@sub.example.com", NULL);
	key(&c, "@example.com", NULL);
	key(&c, "example.com", NULL);

	/* too long a result for memcached is skipped; a small buffer is the caller's bug */
	CHECK_INT_EQ(parse(&c, "key_format = %s%s", err, sizeof(err)), 0);
	char in[200];
	memset(in, 'k', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	key(&c, in, NULL);
	char small[4];
	CHECK_INT_EQ(memcache_conf_key(&c, "abc", small, sizeof(small)), -ENOBUFS);
	CHECK_INT_EQ(memcache_conf_key(&c, "ab", small, sizeof(small)), -ENOBUFS);
	CHECK_INT_EQ(memcache_conf_key(&c, "a", small, sizeof(small)), 2);
}

int main(void)
{
	RUN_TEST(test_defaults);
	RUN_TEST(test_full);
	RUN_TEST(test_errors);
	RUN_TEST(test_keys);
	return TEST_RESULT();
}
