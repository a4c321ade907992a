/* A worker for the SASL service, driven line by line on stdin, for tests against a real
 * Dovecot (test_sasl_dovecot.py): it starts the service set with the SASL service only,
 * submits each request as a worker does, waits for its answer and prints one line.
 *
 *   want ENDPOINT                       -> "ok" or "error N"
 *   mechs ENDPOINT SECOPTS              -> "mechs LIST" (LIST empty when unknown)
 *   waitmechs ENDPOINT MS               -> "mechs LIST" once known, or "mechs " at MS
 *   start ENDPOINT MECH SECOPTS B64|-|= -> "result R EXCHANGE STATUS TEXT"
 *                                          (-: no initial response; =: an empty one)
 *   cont ENDPOINT EXCHANGE B64|=        -> the same (=: an empty response)
 *   cancel ENDPOINT EXCHANGE            -> the same
 *   quit
 * SECOPTS is a smtpd_sasl_security_options value with commas and no blanks ("-": none).
 * The session facts are fixed: service smtp, 127.0.0.1:25 <- 127.0.0.1:40000, no TLS.
 * Usage: sasl_probe TIMEOUT_MS [ENDPOINT...] (the endpoints are wanted at start). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_sasl.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"

static struct svc_client *client;
static int wake;
static struct svc_request *answer;

static void on_answer(void *arg, struct svc_request *r)
{
	(void)arg;
	answer = r;
}

static unsigned sec_opts_of(const char *text)
{
	unsigned v = 0;
	char err[128];
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", strcmp(text, "-") == 0 ? "" : text);
	for (char *p = buf; *p; p++)
		if (*p == ',')
			*p = ' ';
	if (smtp_dovecot_sec_opts_parse(buf, &v, err, sizeof(err)) < 0) {
		fprintf(stderr, "sasl_probe: %s\n", err);
		exit(2);
	}
	return v;
}

static void set_data(struct svc_request *r, const char *arg)
{
	if (strcmp(arg, "=") == 0)
		arg = "";
	r->u.sasl.data = strdup(arg);
	r->u.sasl.data_len = strlen(arg);
}

/* Submit r, wait for its answer, print it. */
static void run(struct svc_request *r)
{
	r->deadline_ms = mx_clock_monotonic_ms() + 60000;
	if (svc_submit(client, r) != 0) {
		printf("result - 0 %d \n", -ENOSYS);
		svc_request_free(r);
		return;
	}
	svc_client_flush(client);
	answer = NULL;
	while (!answer) {
		struct pollfd p = { .fd = wake, .events = POLLIN };
		poll(&p, 1, 100);
		eventfd_t v;
		eventfd_read(wake, &v);
		svc_client_poll(client, on_answer, NULL);
	}
	const struct svc_sasl *q = &answer->u.sasl;
	printf("result %s %" PRIu64 " %d %s\n", svc_sasl_result_name(q->result), q->exchange,
	       answer->status, q->text ? q->text : "");
	svc_request_free(answer);
}

static struct svc_request *request(const char *endpoint, enum svc_sasl_op op)
{
	struct svc_request *r = svc_request_new(SVC_SASL);
	if (!r)
		exit(2);
	snprintf(r->u.sasl.endpoint, sizeof(r->u.sasl.endpoint), "%s", endpoint);
	r->u.sasl.op = op;
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: sasl_probe TIMEOUT_MS [ENDPOINT...]\n");
		return 2;
	}
	mx_log_open(NULL, "test", "mxgate"); /* the log on stderr */
	struct svc_sasl_directory *d = svc_sasl_directory_new();
	for (int i = 2; i < argc; i++)
		if (svc_sasl_directory_want(d, argv[i]) < 0) {
			fprintf(stderr, "sasl_probe: bad endpoint %s\n", argv[i]);
			return 2;
		}
	struct svc_sasl_params params = { .directory = d,
					  .timeout_ms = (uint32_t)strtoul(argv[1], NULL, 10) };
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_SASL] = &svc_sasl_ops },
				     .params = { [SVC_SASL] = &params } };
	struct svc_set *set;
	char err[256];
	if (svc_set_start(&set, &sp, err, sizeof(err)) < 0) {
		fprintf(stderr, "sasl_probe: %s\n", err);
		return 1;
	}
	wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	client = svc_client_new(set, 0, wake);
	char line[32768];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *argvv[8];
		int n = 0;
		for (char *s = strtok(line, " "); s && n < 8; s = strtok(NULL, " "))
			argvv[n++] = s;
		if (n == 0)
			continue;
		const char *cmd = argvv[0];
		if (strcmp(cmd, "quit") == 0) {
			break;
		} else if (strcmp(cmd, "want") == 0 && n == 2) {
			int rc = svc_sasl_directory_want(d, argvv[1]);
			printf(rc == 0 ? "ok\n" : "error %d\n", rc);
		} else if ((strcmp(cmd, "mechs") == 0 || strcmp(cmd, "waitmechs") == 0) && n == 3) {
			bool wait = cmd[0] == 'w';
			unsigned sec = wait ? 0 : sec_opts_of(argvv[2]);
			uint64_t end = mx_clock_monotonic_ms() + (wait ? strtoul(argvv[2], NULL, 10) : 0);
			char list[1024];
			while (svc_sasl_mech_list(d, argvv[1], sec, list, sizeof(list)) == 0 &&
			       mx_clock_monotonic_ms() < end)
				usleep(10000);
			printf("mechs %s\n", list);
		} else if (strcmp(cmd, "start") == 0 && n == 5) {
			struct svc_request *r = request(argvv[1], SVC_SASL_START);
			snprintf(r->u.sasl.mech, sizeof(r->u.sasl.mech), "%s", argvv[2]);
			r->u.sasl.sec_opts = sec_opts_of(argvv[3]);
			snprintf(r->u.sasl.service, sizeof(r->u.sasl.service), "smtp");
			mx_inet_parse("127.0.0.1", &r->u.sasl.local);
			mx_inet_parse("127.0.0.1", &r->u.sasl.remote);
			r->u.sasl.local_port = 25;
			r->u.sasl.remote_port = 40000;
			if (strcmp(argvv[4], "-") != 0) {
				r->u.sasl.has_initial_response = true;
				set_data(r, argvv[4]);
			}
			run(r);
		} else if (strcmp(cmd, "cont") == 0 && n == 4) {
			struct svc_request *r = request(argvv[1], SVC_SASL_CONT);
			r->u.sasl.exchange = strtoull(argvv[2], NULL, 10);
			set_data(r, argvv[3]);
			run(r);
		} else if (strcmp(cmd, "cancel") == 0 && n == 3) {
			struct svc_request *r = request(argvv[1], SVC_SASL_CANCEL);
			r->u.sasl.exchange = strtoull(argvv[2], NULL, 10);
			run(r);
		} else {
			printf("error bad command\n");
		}
		fflush(stdout);
	}
	svc_set_stop(set);
	svc_client_free(client);
	svc_set_free(set);
	svc_sasl_directory_free(d);
	close(wake);
	mx_log_close();
	return 0;
}
