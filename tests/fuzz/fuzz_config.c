/* libFuzzer harness for the mxgate.cf loader: any bytes as a configuration file.
 *
 * The loader must never crash, leak, hang or read out of bounds. Beyond that, whatever
 * loads must be consistent (every known parameter has a value, the engine's strings are
 * set), and must mean the same with CRLF line ends and with comment lines between all
 * lines, since main.cf syntax says neither changes anything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "mgmt/config.h"
#include "mgmt/config_params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* text with every "\n" replaced by `nl` (NULL when out of memory). */
static char *fuzz_replace_newlines(const char *text, const char *nl)
{
	size_t lines = 0, len = strlen(text), nll = strlen(nl);
	for (const char *p = text; (p = strchr(p, '\n')); p++)
		lines++;
	char *out = malloc(len + lines * nll + 1);
	if (!out)
		return NULL;
	char *w = out;
	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			memcpy(w, nl, nll);
			w += nll;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return out;
}

static void fuzz_check_same(const struct mx_config *cfg, const char *variant)
{
	if (!variant)
		return;
	FILE *diag = fopen("/dev/null", "w");
	struct mx_config *other = NULL;
	int rc = mx_config_load_string(variant, "fuzz.cf", &other, diag);
	if (diag)
		fclose(diag);
	FUZZ_CHECK(rc == 0);
	for (size_t i = 0; i < MX_P_MAX; i++)
		FUZZ_CHECK(strcmp(mx_config_get(cfg, mx_params[i].name),
			      mx_config_get(other, mx_params[i].name)) == 0);
	mx_config_free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The string API stops at a NUL, as a C string does. */
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	FILE *diag = fopen("/dev/null", "w");
	struct mx_config *cfg = NULL;
	int rc = mx_config_load_string(text, "fuzz.cf", &cfg, diag);
	if (diag)
		fclose(diag);
	if (rc == 0) {
		FUZZ_CHECK(cfg);
		FUZZ_CHECK(cfg->myhostname && cfg->smtp.myhostname == cfg->myhostname);
		FUZZ_CHECK(cfg->smtp.banner && cfg->smtp.mail_name && cfg->myorigin);
		FUZZ_CHECK(cfg->mynetworks && cfg->mydestination && cfg->relay_domains);
		FUZZ_CHECK(cfg->bare_newline_exclusions && cfg->spool_directory && cfg->maillog_file);
		FUZZ_CHECK(cfg->listen_count >= 1 && cfg->listen_count <= MX_CONFIG_MAX_LISTEN);
		for (unsigned i = 0; i < cfg->listen_count; i++)
			FUZZ_CHECK(cfg->listen[i].port != 0);
		FUZZ_CHECK(cfg->smtp.line_length_limit >= 512);
		FUZZ_CHECK(cfg->smtpd_timeout_s >= 1 && cfg->max_connections >= 1);
		FUZZ_CHECK(mx_config_get(cfg, "smtpd_banner") == cfg->smtpd_banner);
		FUZZ_CHECK(mx_config_get(cfg, "no_such_parameter_name") == NULL);
		for (size_t i = 0; i < MX_P_MAX; i++)
			FUZZ_CHECK(mx_config_get(cfg, mx_params[i].name) != NULL);

		if (!strchr(text, '\r')) {
			char *crlf = fuzz_replace_newlines(text, "\r\n");
			fuzz_check_same(cfg, crlf);
			free(crlf);
		}
		char *commented = fuzz_replace_newlines(text, "\n#\n \t# c\n");
		fuzz_check_same(cfg, commented);
		free(commented);
		mx_config_free(cfg);
	} else {
		FUZZ_CHECK(cfg == NULL);
	}
	free(text);
	return 0;
}
