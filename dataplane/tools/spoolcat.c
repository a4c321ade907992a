/* mxgate-spoolcat: show the committed messages of a spool (operators, tests).
 *     mxgate-spoolcat SPOOL              every message: envelope, an empty line, message
 *     mxgate-spoolcat SPOOL ID...        those messages only
 *     mxgate-spoolcat -e SPOOL [ID...]   envelopes only
 *     mxgate-spoolcat -m SPOOL ID        the message bytes exactly as stored
 *     mxgate-spoolcat -l SPOOL           one line per message: ID size sender nrcpt
 *     mxgate-spoolcat -s SPOOL [ID...]   delivery state, one line per recipient:
 *                                        "ID INDEX pending|sent|failed <ADDRESS>", and
 *                                        " held" at the end while the message is held
 *     mxgate-spoolcat -x SPOOL [ID...]   machine-readable: per message a line
 *                                        "MXGATE-SPOOLCAT ID ENVLEN MSGLEN", then the raw
 *                                        envelope text (spool_envelope.h) and the message
 * It reads what a start-up recovery would keep (spool_recovery.h) without changing
 * anything, so it is safe while the gateway runs: it sees every message that got a 250
 * before it started. -v reports what recovery would discard. Exits 1 when an ID is not in
 * the spool or a message cannot be read (the reason goes to stderr). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"

static enum spool_rcpt_state rcpt_state(const struct spool_msg_entry *m, size_t i)
{
	return i < m->nrstate ? (enum spool_rcpt_state)m->rstate[i] : SPOOL_RCPT_PENDING;
}

/* Reply texts and reasons come from other hosts: control bytes are shown as '?' so that
 * they cannot break the output or drive the terminal. */
static void print_safe(const char *p)
{
	for (; *p; p++)
		putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
}

static void print_envelope(const struct spool_msg_entry *m, const struct spool_record *r)
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
		/* what the relay recorded: sent ones are never sent again, failed ones await
		 * their DSN; the reply says why, as mailq's parenthesised reason does */
		if (rcpt_state(m, i) != SPOOL_RCPT_PENDING) {
			const char *text = i < m->nrstate && m->rtext ? m->rtext[i] : NULL;
			printf("recipient-status: %s", spool_rcpt_state_name(rcpt_state(m, i)));
			if (text && *text) {
				printf(" (");
				print_safe(text);
				printf(")");
			}
			printf("\n");
		}
	}
	if (r->filter) {
		printf("filter: ");
		print_safe(r->filter);
		printf("\n");
	}
	/* the current state (HOLD records win over the envelope's line) */
	if (m->held) {
		printf("hold: ");
		print_safe(m->hold_reason && *m->hold_reason ? m->hold_reason : "held");
		printf("\n");
	}
	printf("size: %" PRIu64 "\n", r->size);
}

static void log_stderr(void *ctx, bool warning, const char *line)
{
	(void)warning;
	if (*(const bool *)ctx)
		fprintf(stderr, "mxgate-spoolcat: %s\n", line);
}

static int usage(FILE *f, int rc)
{
	fprintf(f,
		"usage: mxgate-spoolcat [-v] [-e | -m | -l | -s | -x] SPOOL [ID...]\n"
		"Show the messages a spool directory holds (those that got a 250), read-only:\n"
		"safe while the gateway runs. Without ID, every message; with IDs, those only.\n"
		"  (none)  each message: its envelope, an empty line, the message\n"
		"  -e      envelopes only\n"
		"  -m      the message bytes exactly as stored (one ID)\n"
		"  -l      one line per message: ID size sender number-of-recipients\n"
		"  -s      delivery state, one line per recipient:\n"
		"          ID INDEX pending|sent|failed <ADDRESS> [held]\n"
		"  -x      machine-readable: per message \"MXGATE-SPOOLCAT ID ENVLEN MSGLEN\",\n"
		"          then the raw envelope text and the message\n"
		"  -v      also say what a start-up recovery would discard, and why\n"
		"  -h      this help\n"
		"SPOOL is a directory of mxgate_spool_directory (it holds seg/). Exit status 1\n"
		"when an ID is not in the spool or a message cannot be read.\n");
	return rc;
}

/* -x: the envelope text as stored, re-read from the segment, beside the message. */
static int print_raw(int dirfd, const struct spool_msg_entry *m, const struct spool_record *r)
{
	char name[32];
	snprintf(name, sizeof(name), "%016" PRIx64, m->commit_seg);
	char *env = malloc(m->env_len ? m->env_len : 1);
	if (!env)
		return -ENOMEM;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, env, m->env_len, (off_t)m->env_off) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)m->env_len) {
		free(env);
		return -EIO;
	}
	printf("MXGATE-SPOOLCAT %s %" PRIu32 " %" PRIu64 "\n", m->id, m->env_len, r->size);
	fwrite(env, 1, m->env_len, stdout);
	fwrite(r->message, 1, r->size, stdout);
	free(env);
	return 0;
}

int main(int argc, char **argv)
{
	bool envelope = true, message = true, list = false, raw = false, verbose = false;
	bool states = false;
	int opt;
	while ((opt = getopt(argc, argv, "emlsxvh")) != -1) {
		switch (opt) {
		case 'e':
			message = false;
			break;
		case 'm':
			envelope = false;
			break;
		case 'l':
			list = true;
			break;
		case 'x':
			raw = true;
			break;
		case 's':
			states = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (optind >= argc || (!envelope && !message))
		return usage(stderr, 2);
	const char *spool = argv[optind++];
	int dirfd = spool_open_seg_dir(spool);
	if (dirfd < 0) {
		fprintf(stderr, "mxgate-spoolcat: %s/seg: %s\n", spool, strerror(-dirfd));
		return 1;
	}
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[512];
	if (spool_recover(dirfd, false, &idx, &st, log_stderr, &verbose, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate-spoolcat: %s: %s\n", spool, err);
		close(dirfd);
		return 1;
	}

	int status = 0;
	size_t nids = (size_t)(argc - optind);
	size_t count = nids ? nids : idx.n;
	for (size_t i = 0; i < count; i++) {
		const struct spool_msg_entry *m;
		if (nids) {
			m = spool_index_find(&idx, argv[optind + (int)i]);
			if (!m) {
				fprintf(stderr, "mxgate-spoolcat: %s: no such message in %s\n",
					argv[optind + (int)i], spool);
				status = 1;
				continue;
			}
		} else {
			m = &idx.msgs[i];
		}
		struct spool_record *r = NULL;
		if (spool_index_read(dirfd, m, &r, err, sizeof(err)) < 0) {
			fprintf(stderr, "mxgate-spoolcat: %s\n", err);
			status = 1;
			continue;
		}
		if (raw) {
			if (print_raw(dirfd, m, r) < 0) {
				fprintf(stderr, "mxgate-spoolcat: %s: cannot read envelope\n", m->id);
				status = 1;
			}
		} else if (states) {
			for (size_t k = 0; k < r->nrcpt; k++)
				printf("%s %zu %s <%s>%s\n", r->queue_id, k,
				       spool_rcpt_state_name(rcpt_state(m, k)), r->rcpts[k].addr,
				       m->held ? " held" : "");
		} else if (list) {
			printf("%s %" PRIu64 " <%s> %zu\n", r->queue_id, r->size, r->sender, r->nrcpt);
		} else {
			if (envelope)
				print_envelope(m, r);
			if (envelope && message)
				printf("\n");
			if (message)
				fwrite(r->message, 1, r->size, stdout);
		}
		spool_record_free(r);
	}
	spool_index_free(&idx);
	close(dirfd);
	if (fflush(stdout) != 0)
		status = 1;
	return status;
}
