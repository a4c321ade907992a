/* mxgate-spoolcat: show a spool file (envelope and message) for people and tests.
 *     mxgate-spoolcat FILE...     envelope, an empty line, the message
 *     mxgate-spoolcat -e FILE...  envelope only
 *     mxgate-spoolcat -m FILE     the message bytes exactly as stored
 * Exits 1 if a file is missing, truncated or malformed (the reason goes to stderr). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_file.h"

static void print_envelope(const struct spool_record *r)
{
	char when[64] = "?";
	time_t t = (time_t)r->arrival;
	struct tm tm;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("queue_id: %s\n", r->queue_id);
	printf("arrival: %s (%" PRId64 ")\n", when, r->arrival);
	printf("client: %s[%s]:%u\n", r->client_name ? r->client_name : "unknown",
	       r->client_addr, (unsigned)r->client_port);
	printf("helo: %s\n", r->helo ? r->helo : "");
	printf("protocol: %s\n", r->protocol);
	printf("sender: <%s>", r->sender);
	for (size_t i = 0; i < r->nmail_params; i++)
		printf(" %s", r->mail_params[i]);
	printf("\n");
	for (size_t i = 0; i < r->nrcpt; i++) {
		printf("recipient: <%s>", r->rcpts[i].addr);
		for (size_t j = 0; j < r->rcpts[i].nparams; j++)
			printf(" %s", r->rcpts[i].params[j]);
		printf("\n");
	}
	printf("size: %" PRIu64 "\n", r->size);
}

int main(int argc, char **argv)
{
	bool envelope = true, message = true;
	int opt;
	while ((opt = getopt(argc, argv, "emh")) != -1) {
		switch (opt) {
		case 'e':
			message = false;
			break;
		case 'm':
			envelope = false;
			break;
		default:
			fprintf(opt == 'h' ? stdout : stderr,
				"usage: mxgate-spoolcat [-e | -m] FILE...\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind >= argc || (!envelope && !message)) {
		fprintf(stderr, "usage: mxgate-spoolcat [-e | -m] FILE...\n");
		return 2;
	}
	int status = 0;
	for (int i = optind; i < argc; i++) {
		struct spool_record *r = NULL;
		char err[512];
		if (spool_file_read(argv[i], &r, err, sizeof(err)) < 0) {
			fprintf(stderr, "mxgate-spoolcat: %s\n", err);
			status = 1;
			continue;
		}
		if (envelope)
			print_envelope(r);
		if (envelope && message)
			printf("\n");
		if (message)
			fwrite(r->message, 1, r->size, stdout);
		spool_record_free(r);
	}
	return status;
}
