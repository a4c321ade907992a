/* libFuzzer harness for mxgate_dns_servers and resolv.conf(5) (tables/dns_conf.h).
 *
 * The input is parsed as resolv.conf text (from a heap copy of exactly its length), and
 * its first line, NUL-terminated, as an mxgate_dns_servers value. Nothing may crash or
 * read out of bounds, and what comes back must be within bounds: at most three
 * nameservers and never none (the local machine is the default), the options capped as
 * glibc caps them, a server list of at most cap entries with ports that are not 0. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/dns_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	struct dns_resolv_conf rc;
	dns_resolv_conf_parse(copy, size, &rc);
	FUZZ_CHECK(rc.nservers >= 1 && rc.nservers <= DNS_CONF_RESOLV_NS_MAX);
	FUZZ_CHECK(rc.timeout_ms >= 1000 && rc.timeout_ms <= DNS_CONF_TIMEOUT_MAX_MS);
	FUZZ_CHECK(rc.attempts >= 1 && rc.attempts <= DNS_CONF_ATTEMPTS_MAX);
	FUZZ_CHECK(!rc.defaulted || rc.nservers == 1);
	free(copy);

	size_t line = 0;
	while (line < size && data[line] != '\n')
		line++;
	char *text = malloc(line + 1);
	if (!text)
		return 0;
	memcpy(text, data, line);
	text[line] = '\0';
	struct dns_server s[4];
	unsigned n = 99;
	char err[256];
	int r = dns_servers_parse(text, s, 4, &n, err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -E2BIG);
	FUZZ_CHECK(n <= 4);
	if (r < 0)
		FUZZ_CHECK(err[0] != '\0');
	for (unsigned i = 0; r == 0 && i < n; i++)
		FUZZ_CHECK(s[i].port != 0);
	free(text);
	return 0;
}
