/* libFuzzer harness for the relay's transport(5) code: any text as a transport(5) result
 * (relay_nexthop_parse, without and with each kind of default destination), as main.cf's
 * relayhost (relay_nexthop_from_relayhost, SMTP and LMTP), and as a recipient looked up in
 * inline: tables (relay_transport_lookup: extension and parent-domain splitting).
 *
 * Invariants: never a crash or an out-of-bounds read; a refusal says why and leaves *out
 * alone; a success is a complete destination (an SMTP/LMTP socket address whose length
 * matches its family, a non-zero port, NUL-terminated name/key/status/text without control
 * characters) whose key, parsed again, names the same destination. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "dataplane/relay/relay_transport.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_clean(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	FUZZ_CHECK(n < cap);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(((unsigned char)s[i] >= 0x20 || s[i] == '\t') && s[i] != 0x7f);
}

static void fuzz_check_hop(const struct relay_nexthop *h, int depth)
{
	FUZZ_CHECK((unsigned)h->kind < RELAY_TRANSPORT_KIND_MAX);
	fuzz_check_clean(h->name, sizeof(h->name));
	fuzz_check_clean(h->key, sizeof(h->key));
	fuzz_check_clean(h->status, sizeof(h->status));
	fuzz_check_clean(h->text, sizeof(h->text));
	const char *kn = relay_transport_kind_name(h->kind);
	FUZZ_CHECK(strncmp(h->key, kn, strlen(kn)) == 0);
	if (h->kind != RELAY_TRANSPORT_SMTP && h->kind != RELAY_TRANSPORT_LMTP) {
		FUZZ_CHECK(h->addrlen == 0);
		FUZZ_CHECK(strlen(h->status) >= 5);
		FUZZ_CHECK(h->kind == RELAY_TRANSPORT_DISCARD || h->text[0] != '\0');
		return;
	}
	switch (h->addr.ss_family) {
	case AF_INET: {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&h->addr;
		FUZZ_CHECK(h->addrlen == sizeof(*s4));
		FUZZ_CHECK(s4->sin_port != 0);
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&h->addr;
		FUZZ_CHECK(h->addrlen == sizeof(*s6));
		FUZZ_CHECK(s6->sin6_port != 0);
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&h->addr;
		FUZZ_CHECK(h->kind == RELAY_TRANSPORT_LMTP);
		size_t n = strnlen(un->sun_path, sizeof(un->sun_path));
		FUZZ_CHECK(n > 0 && n < sizeof(un->sun_path) && un->sun_path[0] == '/');
		FUZZ_CHECK(h->addrlen == offsetof(struct sockaddr_un, sun_path) + n + 1);
		break;
	}
	default:
		FUZZ_CHECK(0);
	}
	/* The key is itself a transport(5) value naming the same destination. */
	if (depth == 0) {
		struct relay_nexthop again;
		char err[512];
		int rc = relay_nexthop_parse(h->key, NULL, &again, err, sizeof(err));
		FUZZ_CHECK(rc == 0);
		FUZZ_CHECK(again.kind == h->kind && again.addrlen == h->addrlen);
		FUZZ_CHECK(memcmp(&again.addr, &h->addr, h->addrlen) == 0);
		FUZZ_CHECK(strcmp(again.key, h->key) == 0 && strcmp(again.name, h->name) == 0);
		fuzz_check_hop(&again, 1);
	}
}

static void fuzz_parse(const char *value, const struct relay_nexthop *dflt)
{
	struct relay_nexthop out, before;
	memset(&out, 0x5a, sizeof(out));
	before = out;
	char err[512] = "";
	int rc = relay_nexthop_parse(value, dflt, &out, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		fuzz_check_hop(&out, 0);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		fuzz_check_clean(err, sizeof(err)); /* reasons are logged */
		FUZZ_CHECK(memcmp(&out, &before, sizeof(out)) == 0);
	}
}

static void fuzz_relayhost(const char *value, bool lmtp)
{
	struct relay_nexthop out;
	char err[512] = "";
	int rc = relay_nexthop_from_relayhost(value, lmtp, &out, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		FUZZ_CHECK(out.kind == (lmtp ? RELAY_TRANSPORT_LMTP : RELAY_TRANSPORT_SMTP));
		fuzz_check_hop(&out, 0);
		/* a relayhost is a default any value can complete */
		fuzz_parse(":", &out);
		fuzz_parse("smtp:", &out);
		fuzz_parse("lmtp:", &out);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		fuzz_check_clean(err, sizeof(err));
	}
}

static struct table *fuzz_maps[2];
static struct relay_nexthop fuzz_dflt[4];

static void fuzz_init(void)
{
	char err[256];
	if (fuzz_maps[0])
		return;
	if (table_open(NULL, "inline:{ {a@example.com=smtp:[192.0.2.1]}, example.com=error:, "
			     "{.example.org = retry:4.1.1 later}, {*=discard:} }",
		       &fuzz_maps[0], err, sizeof(err)) < 0 ||
	    table_open(NULL, "inline:{ b@example.net=lmtp:unix:/run/x, example.net=: }", &fuzz_maps[1],
		       err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_transport: %s\n", err);
		abort();
	}
	FUZZ_CHECK(relay_nexthop_from_relayhost("[192.0.2.1]:25", false, &fuzz_dflt[0], err,
						sizeof(err)) == 0);
	FUZZ_CHECK(relay_nexthop_from_relayhost("[2001:db8::1]", true, &fuzz_dflt[1], err,
						sizeof(err)) == 0);
	FUZZ_CHECK(relay_nexthop_from_relayhost("unix:/run/lmtp", true, &fuzz_dflt[2], err,
						sizeof(err)) == 0);
	FUZZ_CHECK(relay_nexthop_parse("error:5.1.1 x", NULL, &fuzz_dflt[3], err,
				       sizeof(err)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	fuzz_init();
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0'; /* a NUL inside ends the string, as it would in a table value */

	fuzz_parse(s, NULL);
	for (size_t i = 0; i < sizeof(fuzz_dflt) / sizeof(fuzz_dflt[0]); i++)
		fuzz_parse(s, &fuzz_dflt[i]);
	fuzz_relayhost(s, false);
	fuzz_relayhost(s, true);

	char val[TABLE_VALUE_MAX + 1], matched[TABLE_KEY_MAX + 1];
	for (int parent = 0; parent < 2; parent++) {
		struct relay_transport_opts o = { .recipient_delimiter = parent ? "+-" : "+",
						  .parent_matches_subdomains = parent };
		int rc = relay_transport_lookup(fuzz_maps, 2, s, &o, val, sizeof(val), matched,
						sizeof(matched));
		FUZZ_CHECK(rc == 0 || rc == 1);
		if (rc == 1) {
			FUZZ_CHECK(matched[0] != '\0' && val[0] != '\0');
			fuzz_parse(val, &fuzz_dflt[0]);
		} else {
			FUZZ_CHECK(matched[0] == '\0');
		}
	}
	free(s);
	return 0;
}
