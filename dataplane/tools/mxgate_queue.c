/* mxgate-queue: the operator's queue tool, Postfix's mailq, postcat -q, postsuper and
 * postqueue -f in one.
 *
 *     mxgate-queue [-c CONFIG] list                       mailq / postqueue -p
 *     mxgate-queue [-c CONFIG] show ID...                 postcat -q ID
 *     mxgate-queue [-c CONFIG] hold ID...|ALL             postsuper -h
 *     mxgate-queue [-c CONFIG] release ID...|ALL          postsuper -H
 *     mxgate-queue [-c CONFIG] delete ID...|ALL           postsuper -d
 *     mxgate-queue [-c CONFIG] requeue ID...|ALL          postsuper -r
 *     mxgate-queue [-c CONFIG] flush [ID...]              postqueue -f / -i ID
 *
 * While the gateway runs, every subcommand goes through its control socket
 * (mxgate_control_socket; mgmt/control.h) and the gateway's relays do the work
 * (queue_control.h formats the output; this tool copies it: listings to stdout, postsuper's
 * messages to stderr as postsuper writes them). When nothing answers on the socket the
 * gateway is not running, and the tool works on the spool directories itself:
 *   list, show   read-only, as mxgate-spoolcat does (safe at any time);
 *   hold, release, delete   open each spool with spool_open(), which takes the spool's
 *                lock (a gateway starting meanwhile waits for nothing: it fails to lock
 *                and says so) and appends durable HOLD or RETIRE records;
 *   requeue, flush   need the relay: refused (exit 1).
 * Exit status as postsuper's: 0 ok, 1 an ID was not found (or invalid, or a change
 * failed), 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/relay/queue_control.h"
#include "dataplane/spool/queue_id.h"
#include "dataplane/spool/spool_envelope.h"
#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"
#include "dataplane/spool/spool_writer.h"
#include "mgmt/config.h"
#include "mgmt/control.h"

/* Must match dataplane/main.c: the gateway's own default. */
#define MXGATE_DEFAULT_CONFIG "/etc/mxgate/mxgate.cf"
/* IDs per control request: CONTROL_MAX_ARGS words with the command, well within
 * CONTROL_REQUEST_MAX bytes (14 per ID). */
#define QUEUE_IDS_PER_REQUEST (CONTROL_MAX_ARGS - 1)

enum queue_cmd {
	QUEUE_CMD_LIST,
	QUEUE_CMD_SHOW,
	QUEUE_CMD_HOLD,
	QUEUE_CMD_RELEASE,
	QUEUE_CMD_DELETE,
	QUEUE_CMD_REQUEUE,
	QUEUE_CMD_FLUSH,
	QUEUE_CMD_MAX
};

static const struct {
	const char *word;    /* on the command line */
	const char *request; /* on the control socket */
	enum relay_op op;
} queue_cmds[QUEUE_CMD_MAX] = {
	[QUEUE_CMD_LIST] = { "list", "queue-list", RELAY_OP_MAX },
	[QUEUE_CMD_SHOW] = { "show", "queue-show", RELAY_OP_MAX },
	[QUEUE_CMD_HOLD] = { "hold", "queue-hold", RELAY_HOLD },
	[QUEUE_CMD_RELEASE] = { "release", "queue-release", RELAY_RELEASE },
	[QUEUE_CMD_DELETE] = { "delete", "queue-delete", RELAY_DELETE },
	[QUEUE_CMD_REQUEUE] = { "requeue", "queue-requeue", RELAY_REQUEUE },
	[QUEUE_CMD_FLUSH] = { "flush", "queue-flush", RELAY_FLUSH },
};

static int usage(FILE *f, int rc)
{
	fprintf(f, "usage: mxgate-queue [-c CONFIG] list\n"
		   "       mxgate-queue [-c CONFIG] show ID...\n"
		   "       mxgate-queue [-c CONFIG] hold|release|delete|requeue ID...|ALL\n"
		   "       mxgate-queue [-c CONFIG] flush [ID...]\n"
		   "CONFIG defaults to " MXGATE_DEFAULT_CONFIG "\n");
	return rc;
}

static void sink_file(void *ctx, const void *p, size_t n)
{
	fwrite(p, 1, n, ctx);
}

static void log_quiet(void *ctx, bool warning, const char *line)
{
	(void)ctx;
	(void)warning;
	(void)line;
}

static void log_warnings(void *ctx, bool warning, const char *line)
{
	(void)ctx;
	if (warning)
		fprintf(stderr, "mxgate-queue: warning: %s\n", line);
}

/* ---- through the gateway ---- */

/* Send the subcommand (IDs in batches); returns the worst status (0..2), or the first
 * request's negative errno with err when the gateway did not answer it. */
static int queue_online(const char *sock, enum queue_cmd cmd, int nargs, char **args,
			char *err, size_t errlen)
{
	FILE *out = cmd == QUEUE_CMD_LIST || cmd == QUEUE_CMD_SHOW ? stdout : stderr;
	char **argv = calloc(QUEUE_IDS_PER_REQUEST + 2, sizeof(*argv));
	if (!argv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	argv[0] = (char *)queue_cmds[cmd].request;
	int worst = 0, done = 0;
	bool first = true;
	do {
		int k = nargs - done;
		if (k > QUEUE_IDS_PER_REQUEST)
			k = QUEUE_IDS_PER_REQUEST;
		memcpy(argv + 1, args + done, (size_t)k * sizeof(*argv));
		argv[k + 1] = NULL;
		int rc = control_request(sock, k + 1, argv, out, err, errlen);
		if (rc < 0) {
			if (first) {
				free(argv);
				return rc;
			}
			fprintf(stderr, "mxgate-queue: fatal: %s\n", err);
			free(argv);
			return 1;
		}
		if (rc > worst)
			worst = rc;
		first = false;
		done += k;
	} while (done < nargs);
	free(argv);
	return worst;
}

/* ---- on the spools, gateway stopped ---- */

/* The envelope of an indexed message, without reading its bytes (a listing of a large
 * queue should not read every message). */
static int queue_read_envelope(int dirfd, const struct spool_msg_entry *e,
			       struct spool_record **rec, char *err, size_t errlen)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(e->commit_seg, name);
	char *env = malloc(e->env_len ? e->env_len : 1);
	if (!env) {
		snprintf(err, errlen, "%s: out of memory", e->id);
		return -ENOMEM;
	}
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, env, e->env_len, (off_t)e->env_off) : -1;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)e->env_len) {
		free(env);
		snprintf(err, errlen, "%s: cannot read its envelope in segment %s: %s", e->id,
			 name, n < 0 ? strerror(saved) : "short read");
		return -EIO;
	}
	int rc = spool_envelope_parse(env, e->env_len, rec, err, errlen);
	free(env);
	if (rc == 0)
		(*rec)->size = e->size;
	return rc;
}

/* Open a spool's segment directory and index it read-only. Returns 1 and the index, 0
 * when the spool has no segments yet, or -1 after saying why. */
static int queue_index(const char *spool, int *dirfd, struct spool_index *idx)
{
	*dirfd = spool_open_seg_dir(spool);
	if (*dirfd == -ENOENT)
		return 0;
	if (*dirfd < 0) {
		fprintf(stderr, "mxgate-queue: warning: %s/seg: %s\n", spool, strerror(-*dirfd));
		return -1;
	}
	struct spool_recovery_stats st;
	char err[512];
	if (spool_recover(*dirfd, false, idx, &st, log_quiet, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate-queue: warning: %s: %s\n", spool, err);
		close(*dirfd);
		return -1;
	}
	return 1;
}

static int offline_list(const struct mx_config *cfg)
{
	struct queue_sink sink = { sink_file, stdout };
	struct queue_list l = { .out = &sink };
	int status = 0;
	for (unsigned s = 0; s < cfg->spool_dir_count; s++) {
		int dirfd;
		struct spool_index idx;
		int rc = queue_index(cfg->spool_dirs[s], &dirfd, &idx);
		if (rc <= 0) {
			status |= rc < 0;
			continue;
		}
		for (size_t i = 0; i < idx.n; i++) {
			const struct spool_msg_entry *e = &idx.msgs[i];
			struct spool_record *rec = NULL;
			char err[512];
			if (queue_read_envelope(dirfd, e, &rec, err, sizeof(err)) < 0) {
				fprintf(stderr, "mxgate-queue: warning: %s\n", err);
				status = 1;
				continue;
			}
			struct relay_msg_info info = {
				.size = e->size,
				.held = e->held,
				.reason = e->held ? e->hold_reason : NULL,
				.entry = e,
			};
			memcpy(info.id, e->id, sizeof(info.id));
			queue_list_message(&l, &info, rec);
			spool_record_free(rec);
		}
		spool_index_free(&idx);
		close(dirfd);
	}
	queue_list_end(&l);
	return status;
}

static int offline_show(const struct mx_config *cfg, int nargs, char **args)
{
	struct queue_sink sink = { sink_file, stdout };
	int status = 0;
	bool *found = calloc((size_t)nargs, sizeof(*found));
	if (!found)
		return 1;
	for (unsigned s = 0; s < cfg->spool_dir_count; s++) {
		int dirfd;
		struct spool_index idx;
		int rc = queue_index(cfg->spool_dirs[s], &dirfd, &idx);
		if (rc <= 0) {
			status |= rc < 0;
			continue;
		}
		for (int a = 0; a < nargs; a++) {
			const struct spool_msg_entry *e;
			if (found[a] || !queue_id_valid(args[a]) ||
			    !(e = spool_index_find(&idx, args[a])))
				continue;
			found[a] = true;
			struct spool_record *rec = NULL;
			char err[512];
			if (spool_index_read(dirfd, e, &rec, err, sizeof(err)) < 0) {
				fprintf(stderr, "mxgate-queue: warning: %s\n", err);
				status = 1;
				continue;
			}
			queue_show_message(&sink, e, rec);
			spool_record_free(rec);
		}
		spool_index_free(&idx);
		close(dirfd);
	}
	for (int a = 0; a < nargs; a++) {
		if (found[a])
			continue;
		status = 1;
		if (!queue_id_valid(args[a]))
			fprintf(stderr, "mxgate-queue: warning: invalid mail queue id: %s\n", args[a]);
		else
			fprintf(stderr, "mxgate-queue: warning: %s: no such message\n", args[a]);
	}
	free(found);
	return status;
}

struct offline_change {
	char id[QUEUE_ID_SIZE];
	int rc; /* 1 pending, 0 durable, or a negative errno */
};

static void offline_done(void *arg, int rc)
{
	((struct offline_change *)arg)->rc = rc;
}

/* Hold, release or delete in one spool: returns 0, 1 (a change failed) or -1 (the spool
 * cannot be opened: stop). found[] marks the IDs seen; *changed counts. */
static int offline_admin_spool(const struct mx_config *cfg, const char *spool,
			       enum relay_op op, bool all, int nargs, char **args,
			       bool *found, unsigned long *changed)
{
	int dirfd = spool_open_seg_dir(spool);
	if (dirfd == -ENOENT)
		return 0; /* never used: nothing to change, and nothing to create */
	if (dirfd >= 0)
		close(dirfd);
	struct spool_params p = { .path = spool, .segment_size = cfg->spool_segment_size };
	struct spool *s = NULL;
	struct spool_recovery_stats st;
	char err[512];
	int rc = spool_open(&s, &p, &st, log_warnings, NULL, err, sizeof(err));
	if (rc < 0) {
		if (rc == -EBUSY)
			fprintf(stderr, "mxgate-queue: fatal: %s is locked by a running gateway, "
					"but its control socket %s does not answer (%s)\n",
				spool, cfg->control_socket, err);
		else
			fprintf(stderr, "mxgate-queue: fatal: %s\n", err);
		return -1;
	}
	const struct spool_index *idx = spool_recovered(s);
	struct offline_change *ch = calloc(idx->n ? idx->n : 1, sizeof(*ch));
	if (!ch) {
		fprintf(stderr, "mxgate-queue: fatal: out of memory\n");
		spool_stop(s);
		spool_close(s);
		return -1;
	}
	size_t nch = 0;
	int status = 0;
	for (size_t i = 0; i < idx->n; i++) {
		const struct spool_msg_entry *e = &idx->msgs[i];
		bool wanted = all;
		for (int a = 0; a < nargs && !wanted; a++) {
			if (strcmp(args[a], e->id) == 0) {
				found[a] = true;
				wanted = true;
			}
		}
		if (!wanted)
			continue;
		if ((op == RELAY_HOLD && e->held) || (op == RELAY_RELEASE && !e->held))
			continue; /* nothing to change, as postsuper counts it */
		struct offline_change *c = &ch[nch];
		memcpy(c->id, e->id, sizeof(c->id));
		c->rc = 1;
		if (op == RELAY_DELETE)
			rc = spool_status_append(s, SPOOL_REC_RETIRE, c->id, 0, SPOOL_RCPT_PENDING,
						 NULL, offline_done, c);
		else
			rc = spool_hold_append(s, c->id, op == RELAY_HOLD,
					       op == RELAY_HOLD ? "mxgate-queue hold"
								      : "mxgate-queue release",
					       offline_done, c);
		if (rc < 0) {
			fprintf(stderr, "mxgate-queue: warning: %s: %s\n", c->id, strerror(-rc));
			status = 1;
			continue;
		}
		nch++;
	}
	/* The writer thread was never started: this processes and syncs what was queued on
	 * this thread, and the done callbacks have run when it returns. */
	spool_stop(s);
	struct queue_sink sink = { sink_file, stderr };
	for (size_t i = 0; i < nch; i++) {
		if (ch[i].rc == 0) {
			queue_admin_report(&sink, op, ch[i].id);
			(*changed)++;
		} else {
			fprintf(stderr, "mxgate-queue: warning: %s: %s\n", ch[i].id,
				strerror(ch[i].rc < 0 ? -ch[i].rc : EIO));
			status = 1;
		}
	}
	free(ch);
	spool_close(s);
	return status;
}

static int offline_admin(const struct mx_config *cfg, enum relay_op op, int nargs,
			 char **args)
{
	bool all = false;
	int status = 0;
	for (int a = 0; a < nargs; a++) {
		if (strcmp(args[a], "ALL") == 0) {
			all = true;
		} else if (!queue_id_valid(args[a])) {
			fprintf(stderr, "mxgate-queue: warning: invalid mail queue id: %s\n", args[a]);
			status = 1;
		}
	}
	bool *found = calloc((size_t)nargs, sizeof(*found));
	if (!found)
		return 1;
	unsigned long changed = 0;
	for (unsigned s = 0; s < cfg->spool_dir_count; s++) {
		int rc = offline_admin_spool(cfg, cfg->spool_dirs[s], op, all, nargs, args, found,
					     &changed);
		if (rc < 0) {
			free(found);
			return 1;
		}
		status |= rc;
	}
	for (int a = 0; a < nargs && !all; a++) {
		if (!found[a] && queue_id_valid(args[a])) {
			fprintf(stderr, "mxgate-queue: warning: %s: no such message\n", args[a]);
			status = 1;
		}
	}
	free(found);
	struct queue_sink sink = { sink_file, stderr };
	queue_admin_summary(&sink, op, changed);
	return status;
}

int main(int argc, char **argv)
{
	const char *config = MXGATE_DEFAULT_CONFIG;
	int opt;
	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (optind >= argc)
		return usage(stderr, 2);
	enum queue_cmd cmd = QUEUE_CMD_MAX;
	for (int i = 0; i < QUEUE_CMD_MAX; i++)
		if (strcmp(argv[optind], queue_cmds[i].word) == 0)
			cmd = (enum queue_cmd)i;
	if (cmd == QUEUE_CMD_MAX) {
		fprintf(stderr, "mxgate-queue: unknown command: %s\n", argv[optind]);
		return usage(stderr, 2);
	}
	char **args = argv + optind + 1;
	int nargs = argc - optind - 1;
	if ((cmd == QUEUE_CMD_LIST && nargs != 0) ||
	    (cmd != QUEUE_CMD_LIST && cmd != QUEUE_CMD_FLUSH && nargs == 0))
		return usage(stderr, 2);
	/* what the protocol cannot carry is no ID anyway */
	for (int a = 0; a < nargs; a++) {
		if (!args[a][0] || strpbrk(args[a], " \t\r\n")) {
			fprintf(stderr, "mxgate-queue: warning: invalid mail queue id: %s\n", args[a]);
			return 1;
		}
	}

	char *diag_text = NULL;
	size_t diag_len = 0;
	FILE *diag = open_memstream(&diag_text, &diag_len);
	struct mx_config *cfg = NULL;
	int rc = mx_config_load(config, &cfg, diag ? diag : stderr);
	if (diag)
		fclose(diag);
	if (rc < 0) {
		/* the loader's own lines say what is wrong where; the errno only when none */
		if (diag_text && diag_text[0])
			fprintf(stderr, "%s", diag_text);
		mx_config_report_failure(stderr, "mxgate-queue: fatal", config, rc);
		free(diag_text);
		return 1;
	}
	free(diag_text);

	char err[512] = "";
	int status = queue_online(cfg->control_socket, cmd, nargs, args, err, sizeof(err));
	if (status == -ENOENT || status == -ECONNREFUSED) {
		/* Nobody answers: the gateway is not running. */
		switch (cmd) {
		case QUEUE_CMD_LIST:
			status = offline_list(cfg);
			break;
		case QUEUE_CMD_SHOW:
			status = offline_show(cfg, nargs, args);
			break;
		case QUEUE_CMD_HOLD:
		case QUEUE_CMD_RELEASE:
		case QUEUE_CMD_DELETE:
			status = offline_admin(cfg, queue_cmds[cmd].op, nargs, args);
			break;
		case QUEUE_CMD_REQUEUE:
		case QUEUE_CMD_FLUSH:
		case QUEUE_CMD_MAX:
			fprintf(stderr, "mxgate-queue: fatal: %s needs the gateway, which is not "
					"running (%s)\n", queue_cmds[cmd].word, err);
			status = 1;
			break;
		}
	} else if (status < 0) {
		fprintf(stderr, "mxgate-queue: fatal: %s\n", err);
		status = 1;
	}
	mx_config_free(cfg);
	if (fflush(stdout) != 0 && status == 0)
		status = 1;
	return status;
}
