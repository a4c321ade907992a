/* libFuzzer harness for the screen codec (smtp/smtp_screen*.c): the first bytes choose the
 * actions and tests, a postscreen_dnsbl_sites list and a cache record; the rest is a
 * script of client bytes, timers, DNS answers, sends and hang-ups. Every state must hold
 * its bounds: output under its maximum, no read past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_screen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_log(void *arg, const char *line)
{
	(void)arg;
	(void)line;
}

/* The text up to '\n' (at most max bytes), NUL-terminated in out; advances. */
static void fuzz_take_line(const uint8_t **p, size_t *n, char *out, size_t max)
{
	size_t k = 0;
	while (*n > 0 && **p != '\n' && k < max) {
		out[k++] = (char)**p;
		(*p)++;
		(*n)--;
	}
	if (*n > 0 && **p == '\n') {
		(*p)++;
		(*n)--;
	}
	out[k] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const char *const acts[] = { "ignore", "enforce", "drop", "ignore" };
	uint8_t f = data[0], g = data[1];
	data += 2;
	size -= 2;
	char sites[200], cache[80];
	fuzz_take_line(&data, &size, sites, sizeof(sites) - 1);
	fuzz_take_line(&data, &size, cache, sizeof(cache) - 1);
	struct smtp_screen_params p = {
		.greet_banner = (f & 1) ? "mx ESMTP" : "", .smtpd_banner = "mx ESMTP",
		.myhostname = "mx", .greet_wait_s = 6, .greet_action = acts[(f >> 1) & 3],
		.dnsbl_action = acts[(f >> 3) & 3], .denylist_action = acts[(f >> 5) & 3],
		.pipelining_action = acts[g & 3], .non_smtp_action = acts[(g >> 2) & 3],
		.bare_newline_action = acts[(g >> 4) & 3], .greet_ttl_s = 86400,
		.dnsbl_min_ttl_s = 60, .dnsbl_max_ttl_s = 3600, .dnsbl_timeout_s = 10,
		.dnsbl_threshold = 1, .dnsbl_allowlist_threshold = (f & 0x80) ? -1 : 0,
		.dnsbl_sites = sites, .pipelining_enable = g & 0x40, .non_smtp_enable = g & 0x80,
		.bare_newline_enable = f & 0x80, .pipelining_ttl_s = 100, .non_smtp_ttl_s = 100,
		.bare_newline_ttl_s = 100, .forbidden_commands = "CONNECT GET POST",
		.command_count_limit = 20, .command_time_limit_s = 300, .cache_retention_s = 7,
		.smtputf8 = true, .line_limit = 512,
	};
	struct smtp_screen_config *cfg = NULL;
	char err[256];
	if (smtp_screen_config_new(&p, &cfg, err, sizeof(err)) < 0)
		return 0;
	struct smtp_screen_client cl = { .port = 1, .server_port = 25 };
	mx_inet_parse((f & 0x40) ? "2001:db8::1" : "192.0.2.1", &cl.addr);
	mx_inet_parse("192.0.2.2", &cl.server);
	struct smtp_screen *s = smtp_screen_new(cfg, &cl, fuzz_log, NULL);
	if (!s) {
		smtp_screen_config_free(cfg);
		return 0;
	}
	uint64_t now = 1000;
	smtp_screen_start(s, (enum smtp_screen_acl)(g % SMTP_SCREEN_ACL_MAX),
			  cache[0] ? cache : NULL, now, 1700000000);
	char name[300];
	for (unsigned i = 0; i < smtp_screen_queries(s); i++)
		(void)smtp_screen_query_name(s, i, name, sizeof(name));
	while (size > 0) {
		uint8_t op = data[0];
		data++;
		size--;
		switch (op & 7) {
		case 0:
		case 1:
		case 2: { /* client bytes: a chunk of up to 64, in its own heap buffer */
			size_t n = (size_t)(op >> 3) + 1;
			if (n > size)
				n = size;
			char *b = malloc(n ? n : 1);
			memcpy(b, data, n);
			size_t used = smtp_screen_input(s, b, n, now);
			free(b);
			if (used > n)
				abort();
			data += n;
			size -= n;
			break;
		}
		case 3:
			now += (uint64_t)(op >> 3) * 500;
			smtp_screen_timer(s, now);
			break;
		case 4: { /* a DNS answer */
			struct dns_result_record rec = { 0 };
			rec.addr.family = AF_INET;
			rec.addr.bytes[0] = 127;
			rec.addr.bytes[3] = (uint8_t)(op >> 3);
			struct dns_result r = { .status = (enum dns_result_status)((op >> 3) % 4),
						.type = DNS_TYPE_A, .ttl = op, .nrecords = 1,
						.records = &rec };
			if (r.status != DNS_RESULT_OK)
				r.nrecords = 0;
			smtp_screen_dns_answer(s, (op >> 5) & 3, (op & 0x80) ? NULL : &r, now);
			break;
		}
		case 5: {
			struct mx_span o = smtp_screen_output(s);
			if (o.len > 4096)
				abort();
			smtp_screen_output_done(s, o.len / ((op >> 3) % 3 + 1));
			break;
		}
		case 6:
			smtp_screen_peer_closed(s, now);
			break;
		case 7:
			if (op & 8)
				smtp_screen_shutdown(s, now);
			break;
		}
	}
	char rec[128];
	uint32_t keep;
	(void)smtp_screen_cache_record(s, 1700000100, rec, sizeof(rec), &keep);
	(void)smtp_screen_memory(s);
	smtp_screen_free(s);
	smtp_screen_config_free(cfg);
	return 0;
}
