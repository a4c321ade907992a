/* tables/domain_list.c: Postfix mydestination/relay_domains-style domain lists. */
#include <errno.h>
#include <stdbool.h>

#include "tables/domain_list.h"
#include "testing.h"

static struct domain_list *parse_ok(const char *text, bool parent)
{
	struct domain_list *dl = NULL;
	char err[256] = "";
	int rc = domain_list_parse(text, parent, &dl, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  parse \"%s\" failed: %s\n", text, err);
	CHECK_INT_EQ(rc, 0);
	CHECK(dl != NULL);
	return dl;
}

static void parse_fails(const char *text, const char *why)
{
	struct domain_list *dl = (struct domain_list *)1;
	char err[256] = "";
	int rc = domain_list_parse(text, true, &dl, err, sizeof(err));
	CHECK_INT_EQ(rc, -EINVAL);
	CHECK(dl == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  \"%s\": reason \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(strstr(err, why) != NULL);
	}
}

/* Match a name given as a span that is not NUL-terminated where it ends. */
static bool match(const struct domain_list *dl, const char *name)
{
	char buf[512];
	size_t n = strlen(name);
	memcpy(buf, name, n);
	memcpy(buf + n, "XYZ.example.com", 16); /* junk right after the span */
	return domain_list_match(dl, mx_span_make(buf, n));
}

static void test_empty(void)
{
	struct domain_list *dl = parse_ok("", false);
	CHECK_INT_EQ(domain_list_count(dl), 0);
	CHECK(!match(dl, "example.com"));
	domain_list_free(dl);
	dl = parse_ok(" , \t\r\n,", true);
	CHECK_INT_EQ(domain_list_count(dl), 0);
	domain_list_free(dl);
	dl = parse_ok(NULL, true);
	CHECK_INT_EQ(domain_list_count(dl), 0);
	domain_list_free(dl);
	CHECK(!domain_list_match(NULL, MX_SPAN_LIT("a.b")));
	CHECK_INT_EQ(domain_list_count(NULL), 0);
	domain_list_free(NULL);
}

static void test_exact_and_case(void)
{
	/* mydestination's Postfix default after expansion. */
	struct domain_list *dl =
		parse_ok("mx1.Example.COM, localhost.example.com, localhost", false);
	CHECK_INT_EQ(domain_list_count(dl), 3);
	CHECK(match(dl, "mx1.example.com"));
	CHECK(match(dl, "MX1.EXAMPLE.COM"));
	CHECK(match(dl, "localhost"));
	CHECK(match(dl, "LocalHost"));
	CHECK(!match(dl, "example.com"));
	CHECK(!match(dl, "sub.mx1.example.com"));      /* no parent matching here */
	CHECK(!match(dl, "xmx1.example.com"));
	CHECK(!match(dl, "mx1.example.co"));
	CHECK(!match(dl, "localhost.localdomain"));
	CHECK(!match(dl, ""));
	domain_list_free(dl);
}

static void test_trailing_dots(void)
{
	struct domain_list *dl = parse_ok("example.com. example.org", false);
	CHECK(match(dl, "example.com"));
	CHECK(match(dl, "example.com."));
	CHECK(match(dl, "example.org."));
	/* Two dots, or only a dot, name nothing (Postfix's resolve_local()). */
	CHECK(!match(dl, "example.org.."));
	CHECK(!match(dl, "."));
	CHECK(!match(dl, ""));
	domain_list_free(dl);
}

static void test_subdomains(void)
{
	/* ".example.com": subdomains only, in either style. */
	for (int parent = 0; parent < 2; parent++) {
		struct domain_list *dl = parse_ok(".example.com", parent);
		CHECK(match(dl, "a.example.com"));
		CHECK(match(dl, "a.b.EXAMPLE.com"));
		CHECK(match(dl, "a.example.com."));
		CHECK(!match(dl, "example.com"));
		CHECK(!match(dl, "aexample.com"));
		CHECK(!match(dl, ".example.com")); /* no label before the dot */
		domain_list_free(dl);
	}
	/* parent_domain_matches_subdomains: "example.com" matches its subdomains too. */
	struct domain_list *dl = parse_ok("example.com", true);
	CHECK(match(dl, "example.com"));
	CHECK(match(dl, "mail.example.com"));
	CHECK(match(dl, "a.b.c.example.com"));
	CHECK(!match(dl, "badexample.com"));
	CHECK(!match(dl, "example.com.evil.net"));
	CHECK(!match(dl, "xample.com"));
	domain_list_free(dl);
	dl = parse_ok("example.com", false);
	CHECK(match(dl, "example.com"));
	CHECK(!match(dl, "mail.example.com"));
	domain_list_free(dl);
}

static void test_negation(void)
{
	struct domain_list *dl = parse_ok("!secret.example.com, example.com", true);
	CHECK(!match(dl, "secret.example.com"));
	CHECK(match(dl, "other.example.com"));
	CHECK(match(dl, "example.com"));
	domain_list_free(dl);
	/* After a match, later exclusions are never reached. */
	dl = parse_ok("example.com !secret.example.com", true);
	CHECK(match(dl, "secret.example.com"));
	domain_list_free(dl);
	dl = parse_ok("!.example.com", true);
	CHECK(!match(dl, "a.example.com"));
	CHECK(!match(dl, "example.com"));
	domain_list_free(dl);
}

static void test_allowed_names(void)
{
	/* Underscores (Postfix's valid_hostname() takes them), digits, hyphens inside,
	 * xn-- labels, a 63-character label, a 255-character name. */
	char label63[64];
	memset(label63, 'a', 63);
	label63[63] = '\0';
	char name255[300];
	snprintf(name255, sizeof(name255), "%s.%s.%s.%.61s", label63, label63, label63,
		 label63);
	CHECK_INT_EQ(strlen(name255), 253);
	char text[800];
	snprintf(text, sizeof(text), "_dmarc.example.com 1-2.example.net xn--bcher-kva.example %s "
		 "%s 123.example.org", label63, name255);
	struct domain_list *dl = parse_ok(text, false);
	CHECK_INT_EQ(domain_list_count(dl), 6);
	CHECK(match(dl, "xn--BCHER-kva.example"));
	CHECK(match(dl, name255));
	CHECK(match(dl, "123.example.org"));
	domain_list_free(dl);
}

static void test_errors(void)
{
	parse_fails("example..com", "empty label");
	parse_fails(".", "empty domain name");
	parse_fails("..example.com", "empty label");
	parse_fails("-a.example.com", "label starts or ends with '-'");
	parse_fails("a-.example.com", "label starts or ends with '-'");
	parse_fails("ex$ample.com", "invalid character '$'");
	parse_fails("*.example.com", "invalid character '*'");
	parse_fails("[192.0.2.1]", "invalid character '['");
	parse_fails("b\xc3\xbc" "cher.example", "non-ASCII");
	parse_fails("123", "numeric name");
	parse_fails("192.0.2.1", "numeric name");
	parse_fails("hash:/etc/postfix/relay_domains", "table engine");
	parse_fails("example.com, proxy:mysql:/etc/x", "table lookups (type:name)");
	parse_fails("/etc/postfix/domains", "/file/name patterns are not supported");
	parse_fails("!", "no pattern");
	parse_fails("a.example.com !!", "no pattern");

	char label64[80];
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".com");
	parse_fails(label64, "label longer than 63");
	char name256[400];
	memset(name256, 'a', 256);
	name256[256] = '\0';
	for (int i = 50; i < 256; i += 50)
		name256[i] = '.';
	parse_fails(name256, "longer than 255");
	/* Messages stay short for long junk. */
	char junk[2000];
	memset(junk, '$', sizeof(junk) - 1);
	junk[sizeof(junk) - 1] = '\0';
	char err[4096];
	struct domain_list *dl;
	CHECK_INT_EQ(domain_list_parse(junk, false, &dl, err, sizeof(err)), -EINVAL);
	CHECK(strlen(err) < 200);
	CHECK_INT_EQ(domain_list_parse("a..b", false, &dl, NULL, 0), -EINVAL);
}

static void test_separators_equivalent(void)
{
	const char *forms[] = {
		"a.example, .b.example, c.example",
		"a.example .b.example c.example",
		"\ta.example,,.b.example\r\n c.example , ",
	};
	for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		struct domain_list *dl = parse_ok(forms[f], false);
		CHECK_INT_EQ(domain_list_count(dl), 3);
		CHECK(match(dl, "a.example"));
		CHECK(match(dl, "x.b.example"));
		CHECK(!match(dl, "b.example"));
		CHECK(match(dl, "c.example"));
		CHECK(!match(dl, "d.example"));
		domain_list_free(dl);
	}
}

int main(void)
{
	RUN_TEST(test_empty);
	RUN_TEST(test_exact_and_case);
	RUN_TEST(test_trailing_dots);
	RUN_TEST(test_subdomains);
	RUN_TEST(test_negation);
	RUN_TEST(test_allowed_names);
	RUN_TEST(test_errors);
	RUN_TEST(test_separators_equivalent);
	return TEST_RESULT();
}
