/* libFuzzer harness for the master.cf reader (mgmt/master.c): any bytes as a master file.
 *
 * The reader must never crash, leak, hang or read out of bounds (the input is a buffer of
 * exactly its length). Whatever parses must be consistent: every service has a name, one
 * or two listen addresses with a port, overrides with names; the entries print; and the
 * same text with CRLF line ends, or with comment lines between all lines, means the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "mgmt/master.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fuzz_replace_newlines(const char *text, size_t len, const char *nl, size_t *outlen)
{
	size_t nll = strlen(nl), lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	char *out = malloc(len + lines * nll + 1);
	if (!out)
		return NULL;
	char *w = out;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\n') {
			memcpy(w, nl, nll);
			w += nll;
		} else {
			*w++ = text[i];
		}
	}
	*outlen = (size_t)(w - out);
	return out;
}

static void fuzz_check_same(const struct mx_master *m, const char *variant, size_t len)
{
	if (!variant)
		return;
	struct mx_master *o = NULL;
	FUZZ_CHECK(mx_master_parse(variant, len, "fuzz.cf", &o, NULL) == 0);
	FUZZ_CHECK(o->nservices == m->nservices && o->nentries == m->nentries);
	for (size_t i = 0; i < m->nservices; i++) {
		FUZZ_CHECK(strcmp(o->services[i].name, m->services[i].name) == 0);
		FUZZ_CHECK(o->services[i].noverrides == m->services[i].noverrides);
		for (size_t k = 0; k < m->services[i].noverrides; k++)
			FUZZ_CHECK(strcmp(o->services[i].overrides[k].value,
					  m->services[i].overrides[k].value) == 0);
	}
	mx_master_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	struct mx_master *m = NULL;
	int rc = mx_master_parse(text, size, "fuzz.cf", &m, NULL);
	if (rc == 0) {
		FUZZ_CHECK(m && m->nservices >= 1 && m->nservices <= MX_MASTER_SERVICES_MAX);
		for (size_t i = 0; i < m->nservices; i++) {
			const struct mx_master_service *s = &m->services[i];
			FUZZ_CHECK(s->name && s->listen_count >= 1 && s->listen_count <= 2);
			for (unsigned k = 0; k < s->listen_count; k++)
				FUZZ_CHECK(s->listen[k].port != 0 && s->listen[k].host[0]);
			for (size_t k = 0; k < s->noverrides; k++)
				FUZZ_CHECK(s->overrides[k].name[0] && s->overrides[k].value);
			FUZZ_CHECK(mx_master_find(m, s->name) != NULL);
		}
		FILE *null = fopen("/dev/null", "w");
		if (null) {
			mx_master_print(null, m, NULL);
			fclose(null);
		}
		size_t len;
		if (!memchr(text, '\r', size)) {
			char *crlf = fuzz_replace_newlines(text, size, "\r\n", &len);
			fuzz_check_same(m, crlf, len);
			free(crlf);
		}
		char *commented = fuzz_replace_newlines(text, size, "\n#\n \t# c\n", &len);
		fuzz_check_same(m, commented, len);
		free(commented);
		mx_master_free(m);
	} else {
		FUZZ_CHECK(m == NULL);
	}
	free(text);
	return 0;
}
