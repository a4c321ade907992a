/* The interim spool: round trips through spool_file_read(), and every failure path of the
 * commit, with the proof that a failed message leaves nothing in incoming/ (and nothing in
 * tmp/ either). Failures come from the kernel where an unprivileged process can cause
 * them (RLIMIT_FSIZE, a removed directory, a read-only directory when not root) and from
 * the spool_io hook for the ones it cannot (EIO from fdatasync, a failed directory sync). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/spool/spool_file.h"
#include "testing.h"

static char root[256];

static void make_root(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-test-spool-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(1);
	}
}

static void rm_rf(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

/* Entries in SPOOL/sub other than . and .. */
static int count_files(const char *spool, const char *sub)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", spool, sub);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static struct queue_id_gen gen;

static void new_id(char id[QUEUE_ID_SIZE])
{
	queue_id_next(&gen, queue_id_clock_us(), id);
}

static struct spool_envelope envelope(const char *id)
{
	return (struct spool_envelope){
		.queue_id = id,
		.arrival = 1732270495,
		.client_addr = "192.0.2.1",
		.client_port = 54321,
		.client_name = "unknown",
		.helo = MX_SPAN_LIT("client.example.org"),
		.protocol = "ESMTP",
		.sender = MX_SPAN_LIT("alice@example.org"),
		.mail_params = MX_SPAN_LIT("SIZE=1234  BODY=8BITMIME"),
	};
}

/* Write one message with the given body; returns commit's result. */
static int spool_one(struct spool_dir *d, const char *id, const char *body, size_t len)
{
	struct spool_writer w;
	struct spool_envelope env = envelope(id);
	int rc = spool_writer_begin(&w, d, &env);
	if (rc < 0)
		return rc;
	if ((rc = spool_writer_add_rcpt(&w, MX_SPAN_LIT("bob@example.net"),
					MX_SPAN_LIT("NOTIFY=NEVER"))) < 0 ||
	    (rc = spool_writer_message_begin(&w)) < 0 ||
	    (rc = spool_writer_append(&w, body, len)) < 0) {
		spool_writer_abort(&w);
		return rc;
	}
	return spool_writer_commit(&w);
}

static void test_dir_open(void)
{
	struct spool_dir d;
	char path[512], err[256];
	struct stat st;
	unsigned stale = 99;

	make_root();
	snprintf(path, sizeof(path), "%s/a/b/spool", root);
	CHECK_INT_EQ(spool_dir_open(&d, path, &stale, err, sizeof(err)), 0);
	CHECK_INT_EQ(stale, 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/a/b/spool/tmp", root);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/a/b/spool/incoming", root);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);

	/* a second gateway on the same spool is refused */
	struct spool_dir d2;
	snprintf(path, sizeof(path), "%s/a/b/spool", root);
	CHECK_INT_EQ(spool_dir_open(&d2, path, NULL, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "in use by another mxgate") != NULL);
	CHECK_INT_EQ(d2.root_fd, -1);

	/* a crash leaves tmp files: the next start removes them, incoming/ is kept */
	char id[QUEUE_ID_SIZE];
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, "x\r\n", 3), 0);
	spool_dir_close(&d);
	snprintf(path, sizeof(path), "%s/a/b/spool/tmp/0000000001z00", root);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/a/b/spool", root);
	CHECK_INT_EQ(spool_dir_open(&d, path, &stale, err, sizeof(err)), 0);
	CHECK_INT_EQ(stale, 1);
	CHECK_INT_EQ(count_files(path, "tmp"), 0);
	CHECK_INT_EQ(count_files(path, "incoming"), 1);

	/* the newest spooled ID is the floor for the next generators */
	uint64_t us;
	CHECK_INT_EQ(queue_id_time_us(id, &us), 0);
	CHECK_INT_EQ(spool_dir_newest_id_us(&d), us);
	spool_dir_close(&d);

	/* a path that cannot be a directory */
	snprintf(path, sizeof(path), "%s/file", root);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK(spool_dir_open(&d, path, NULL, err, sizeof(err)) < 0);
	CHECK(strstr(err, path) != NULL);
	CHECK(spool_dir_open(&d, "", NULL, err, sizeof(err)) == -EINVAL);
	rm_rf(root);
}

static void test_round_trip(void)
{
	struct spool_dir d;
	struct spool_writer w;
	char err[256], id[QUEUE_ID_SIZE], path[512];

	make_root();
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0);
	new_id(id);

	/* values that must be escaped, and UTF-8 that must not */
	static const char sender[] = "\"odd % sender\r\n\"@exa\x7fmple.org";
	static const char helo[] = "h\xc3\xa9lo.example";
	struct spool_envelope env = envelope(id);
	env.sender = MX_SPAN_LIT(sender);
	env.helo = MX_SPAN_LIT(helo);
	env.protocol = "UTF8SMTP";
	CHECK_INT_EQ(spool_writer_begin(&w, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w, MX_SPAN_LIT("bob@example.net"),
					   MX_SPAN_LIT("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@x")),
		     0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w, MX_SPAN_LIT("carol@example.net"), MX_SPAN_LIT("")),
		     0);
	CHECK_INT_EQ(spool_writer_message_begin(&w), 0);

	/* a message bigger than the writer buffer: the size is patched with pwrite */
	size_t len = 3 * SPOOL_WRITER_BUFSIZE + 17;
	char *msg = malloc(len);
	static const char hdr[] = "Received: from x\r\nSubject: t\r\n\r\n";
	memcpy(msg, hdr, sizeof(hdr) - 1);
	for (size_t i = sizeof(hdr) - 1; i < len; i++)
		msg[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
	/* append in odd pieces */
	size_t off = 0, step = 1;
	while (off < len) {
		size_t k = step < len - off ? step : len - off;
		CHECK_INT_EQ(spool_writer_append(&w, msg + off, k), 0);
		off += k;
		step = step * 2 + 1;
	}
	CHECK_INT_EQ(spool_writer_message_size(&w), len);
	CHECK_INT_EQ(spool_writer_commit(&w), 0);
	CHECK_INT_EQ(w.state, SPOOL_WRITER_IDLE);
	CHECK_INT_EQ(count_files(root, "tmp"), 0);
	CHECK_INT_EQ(count_files(root, "incoming"), 1);

	snprintf(path, sizeof(path), "%s/incoming/%s", root, id);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	struct spool_record *r = NULL;
	CHECK_INT_EQ(spool_file_read(path, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->queue_id, id);
		CHECK_INT_EQ(r->arrival, 1732270495);
		CHECK_STR_EQ(r->client_addr, "192.0.2.1");
		CHECK_INT_EQ(r->client_port, 54321);
		CHECK_STR_EQ(r->client_name, "unknown");
		CHECK_STR_EQ(r->helo, helo);
		CHECK_STR_EQ(r->protocol, "UTF8SMTP");
		CHECK_STR_EQ(r->sender, sender);
		CHECK_INT_EQ(r->nmail_params, 2);
		if (r->nmail_params == 2) {
			CHECK_STR_EQ(r->mail_params[0], "SIZE=1234");
			CHECK_STR_EQ(r->mail_params[1], "BODY=8BITMIME");
		}
		CHECK_INT_EQ(r->nrcpt, 2);
		if (r->nrcpt == 2) {
			CHECK_STR_EQ(r->rcpts[0].addr, "bob@example.net");
			CHECK_INT_EQ(r->rcpts[0].nparams, 2);
			if (r->rcpts[0].nparams == 2) {
				CHECK_STR_EQ(r->rcpts[0].params[0], "NOTIFY=SUCCESS,FAILURE");
				CHECK_STR_EQ(r->rcpts[0].params[1], "ORCPT=rfc822;bob@x");
			}
			CHECK_STR_EQ(r->rcpts[1].addr, "carol@example.net");
			CHECK_INT_EQ(r->rcpts[1].nparams, 0);
		}
		CHECK_INT_EQ(r->size, len);
		CHECK_MEM_EQ(r->message, r->size, msg, len);
		spool_record_free(r);
	}

	/* The envelope as text: every line a key and a value, escapes where needed. */
	FILE *f = fopen(path, "r");
	char head[2048];
	size_t hn = f ? fread(head, 1, sizeof(head) - 1, f) : 0;
	if (f)
		fclose(f);
	head[hn] = '\0';
	char expect[1024];
	snprintf(expect, sizeof(expect),
		 "MXGATE-SPOOL 1\nqueue-id %s\narrival 1732270495\nclient-address 192.0.2.1\n"
		 "client-port 54321\nclient-name unknown\nhelo %s\nprotocol UTF8SMTP\n"
		 "sender \"odd %%25 sender%%0D%%0A\"@exa%%7Fmple.org\n"
		 "mail-parameter SIZE=1234\nmail-parameter BODY=8BITMIME\n"
		 "recipient bob@example.net\nrecipient-parameter NOTIFY=SUCCESS,FAILURE\n"
		 "recipient-parameter ORCPT=rfc822;bob@x\nrecipient carol@example.net\n"
		 "size %020zu\n\nReceived: from x\r\n",
		 id, helo, len);
	CHECK_MEM_EQ(head, strlen(expect), expect, strlen(expect));

	/* A small message: the size is patched in the buffer; null sender. */
	new_id(id);
	env = envelope(id);
	env.sender = MX_SPAN_LIT("");
	env.mail_params = MX_SPAN_LIT("");
	CHECK_INT_EQ(spool_writer_begin(&w, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w, MX_SPAN_LIT("x@y"), MX_SPAN_LIT("")), 0);
	CHECK_INT_EQ(spool_writer_message_begin(&w), 0);
	CHECK_INT_EQ(spool_writer_append(&w, "a\r\n", 3), 0);
	CHECK_INT_EQ(spool_writer_commit(&w), 0);
	snprintf(path, sizeof(path), "%s/incoming/%s", root, id);
	r = NULL;
	CHECK_INT_EQ(spool_file_read(path, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->sender, "");
		CHECK_INT_EQ(r->nmail_params, 0);
		CHECK_INT_EQ(r->size, 3);
		CHECK_STR_EQ(r->message, "a\r\n");
		spool_record_free(r);
	}
	/* An empty message is legal at this layer. */
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, "", 0), 0);
	CHECK_INT_EQ(count_files(root, "incoming"), 3);

	free(msg);
	spool_dir_close(&d);
	rm_rf(root);
}

static void test_abort(void)
{
	struct spool_dir d;
	struct spool_writer w;
	char err[256], id[QUEUE_ID_SIZE];

	make_root();
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0);

	/* a transaction that ends before DATA never creates a file */
	new_id(id);
	struct spool_envelope env = envelope(id);
	CHECK_INT_EQ(spool_writer_begin(&w, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w, MX_SPAN_LIT("x@y"), MX_SPAN_LIT("")), 0);
	CHECK_INT_EQ(w.fd, -1);
	CHECK_INT_EQ(count_files(root, "tmp"), 0);
	spool_writer_abort(&w);
	CHECK_INT_EQ(w.state, SPOOL_WRITER_IDLE);

	/* DATA creates it; an abort removes it */
	new_id(id);
	env = envelope(id);
	CHECK_INT_EQ(spool_writer_begin(&w, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w, MX_SPAN_LIT("x@y"), MX_SPAN_LIT("")), 0);
	CHECK_INT_EQ(spool_writer_message_begin(&w), 0);
	CHECK_INT_EQ(count_files(root, "tmp"), 1);
	char big[40000];
	memset(big, 'x', sizeof(big));
	CHECK_INT_EQ(spool_writer_append(&w, big, sizeof(big)), 0);
	spool_writer_abort(&w);
	spool_writer_abort(&w); /* idempotent */
	CHECK_INT_EQ(count_files(root, "tmp"), 0);
	CHECK_INT_EQ(count_files(root, "incoming"), 0);
	spool_dir_close(&d);
	rm_rf(root);
}

/* ---- fault injection through the io hook ---- */

enum fault { F_NONE, F_WRITE, F_PWRITE, F_FDATASYNC, F_CLOSE, F_RENAME, F_DIRSYNC };
static enum fault fault;
static int fault_errno;

static ssize_t f_write(int fd, const void *b, size_t n)
{
	if (fault == F_WRITE) {
		/* a short write first, then the error: the writer must not take it as done */
		static int calls;
		if (calls++ % 2 == 0 && n > 1)
			return spool_io_system.write(fd, b, n / 2);
		errno = fault_errno;
		return -1;
	}
	return spool_io_system.write(fd, b, n);
}

static ssize_t f_pwrite(int fd, const void *b, size_t n, off_t o)
{
	if (fault == F_PWRITE) {
		errno = fault_errno;
		return -1;
	}
	return spool_io_system.pwrite(fd, b, n, o);
}

static int f_fdatasync(int fd)
{
	if (fault == F_FDATASYNC) {
		errno = fault_errno;
		return -1;
	}
	return spool_io_system.fdatasync(fd);
}

static int f_close(int fd)
{
	int rc = spool_io_system.close(fd);
	if (fault == F_CLOSE) {
		errno = fault_errno;
		return -1;
	}
	return rc;
}

static int f_rename(int a, int b, const char *name)
{
	if (fault == F_RENAME) {
		errno = fault_errno;
		return -1;
	}
	return spool_io_system.rename_noreplace(a, b, name);
}

static int f_fsync(int fd)
{
	if (fault == F_DIRSYNC) {
		errno = fault_errno;
		return -1;
	}
	return spool_io_system.fsync(fd);
}

static const struct spool_io faulty_io = {
	.write = f_write,
	.pwrite = f_pwrite,
	.fdatasync = f_fdatasync,
	.fsync = f_fsync,
	.close = f_close,
	.rename_noreplace = f_rename,
};

static void test_commit_failures(void)
{
	struct spool_dir d;
	char err[256], id[QUEUE_ID_SIZE];
	static const struct {
		enum fault f;
		int err;
		size_t len;
	} cases[] = {
		{ F_WRITE, ENOSPC, 100 },
		{ F_WRITE, ENOSPC, 3 * SPOOL_WRITER_BUFSIZE },
		{ F_WRITE, EDQUOT, 100 },
		{ F_PWRITE, EIO, 2 * SPOOL_WRITER_BUFSIZE },
		{ F_FDATASYNC, EIO, 100 },
		{ F_FDATASYNC, ENOSPC, 2 * SPOOL_WRITER_BUFSIZE },
		{ F_CLOSE, EIO, 100 },
		{ F_RENAME, EIO, 100 },
		{ F_DIRSYNC, EIO, 100 },
	};
	char *body = malloc(3 * SPOOL_WRITER_BUFSIZE);
	memset(body, 'b', 3 * SPOOL_WRITER_BUFSIZE);

	make_root();
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0);
	d.io = &faulty_io;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fault = cases[i].f;
		fault_errno = cases[i].err;
		new_id(id);
		int rc = spool_one(&d, id, body, cases[i].len);
		if (rc != -cases[i].err)
			fprintf(stderr, "case %zu: rc %d\n", i, rc);
		CHECK_INT_EQ(rc, -cases[i].err);
		/* the point of it all: a failed message is nowhere */
		CHECK_INT_EQ(count_files(root, "incoming"), 0);
		CHECK_INT_EQ(count_files(root, "tmp"), 0);
	}
	/* and the same spool works again once the fault is gone */
	fault = F_NONE;
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, body, 100), 0);
	CHECK_INT_EQ(count_files(root, "incoming"), 1);

	/* an ID issued twice is refused, never merged or overwritten: O_EXCL in tmp/ ... */
	struct spool_writer w1, w2;
	struct spool_envelope env = envelope(id);
	char dup_id[QUEUE_ID_SIZE];
	new_id(dup_id);
	env.queue_id = dup_id;
	CHECK_INT_EQ(spool_writer_begin(&w1, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w1, MX_SPAN_LIT("x@y"), MX_SPAN_LIT("")), 0);
	CHECK_INT_EQ(spool_writer_message_begin(&w1), 0);
	CHECK_INT_EQ(spool_writer_begin(&w2, &d, &env), 0);
	CHECK_INT_EQ(spool_writer_add_rcpt(&w2, MX_SPAN_LIT("x@y"), MX_SPAN_LIT("")), 0);
	CHECK_INT_EQ(spool_writer_message_begin(&w2), -EEXIST);
	spool_writer_abort(&w2);
	spool_writer_abort(&w1);
	/* ... and RENAME_NOREPLACE in incoming/ */
	CHECK_INT_EQ(spool_one(&d, id, "other\r\n", 7), -EEXIST);
	char path[512];
	snprintf(path, sizeof(path), "%s/incoming/%s", root, id);
	struct spool_record *r = NULL;
	CHECK_INT_EQ(spool_file_read(path, &r, err, sizeof(err)), 0);
	CHECK(r && r->size == 100);
	spool_record_free(r);
	CHECK_INT_EQ(count_files(root, "tmp"), 0);

	spool_dir_close(&d);
	free(body);
	rm_rf(root);
}

/* Real kernel failures, no hook. */
static void test_kernel_failures(void)
{
	struct spool_dir d;
	char err[256], id[QUEUE_ID_SIZE], path[512];
	size_t len = 256 * 1024;
	char *body = malloc(len);
	memset(body, 'k', len);

	make_root();
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0);

	/* File size limit: write(2) fails with EFBIG part-way through the message, as it
	 * would with ENOSPC on a full disk. */
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 64 * 1024;
	signal(SIGXFSZ, SIG_IGN);
	CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, body, len), -EFBIG);
	setrlimit(RLIMIT_FSIZE, &old);
	CHECK_INT_EQ(count_files(root, "incoming"), 0);
	CHECK_INT_EQ(count_files(root, "tmp"), 0);

	/* tmp/ removed under the running spool: the file cannot be created at DATA */
	snprintf(path, sizeof(path), "%s/tmp", root);
	CHECK_INT_EQ(rmdir(path), 0);
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, "x\r\n", 3), -ENOENT);
	CHECK_INT_EQ(count_files(root, "incoming"), 0);
	spool_dir_close(&d);

	/* A read-only spool: refused at start, and (if the mode bits bind us, i.e. not
	 * root) at DATA. */
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0); /* recreates tmp/ */
	CHECK_INT_EQ(chmod(path, 0500), 0);
	if (geteuid() != 0) {
		new_id(id);
		CHECK_INT_EQ(spool_one(&d, id, "x\r\n", 3), -EACCES);
		CHECK_INT_EQ(count_files(root, "incoming"), 0);
		struct spool_dir d2;
		spool_dir_close(&d);
		CHECK_INT_EQ(spool_dir_open(&d2, root, NULL, err, sizeof(err)), -EACCES);
		CHECK(strstr(err, "not writable") != NULL);
	} else {
		printf("note: running as root, read-only directory checks skipped\n");
		spool_dir_close(&d);
	}
	chmod(path, 0700);
	free(body);
	rm_rf(root);
}

/* The reader refuses damaged files instead of returning half a message. */
static void test_reader_rejects(void)
{
	struct spool_dir d;
	char err[256], id[QUEUE_ID_SIZE], path[512];
	struct spool_record *r = NULL;

	make_root();
	CHECK_INT_EQ(spool_dir_open(&d, root, NULL, err, sizeof(err)), 0);
	new_id(id);
	CHECK_INT_EQ(spool_one(&d, id, "Subject: x\r\n\r\nbody\r\n", 20), 0);
	snprintf(path, sizeof(path), "%s/incoming/%s", root, id);
	CHECK_INT_EQ(spool_file_read(path, &r, err, sizeof(err)), 0);
	spool_record_free(r);
	r = NULL;

	FILE *f = fopen(path, "r");
	char orig[4096];
	size_t n = fread(orig, 1, sizeof(orig), f);
	fclose(f);

	struct {
		const char *what;
		const char *from, *to; /* replace first occurrence; NULL from = truncate by to[0] */
	} cases[] = {
		{ "truncated", NULL, "\x01" },
		{ "longer", "body", "bodyy" },
		{ "magic", "MXGATE-SPOOL 1", "MXGATE-SPOOL 2" },
		{ "unknown key", "protocol ESMTP", "protocoll ESMTP" },
		{ "bad escape", "sender alice", "sender al%ZZce" },
		{ "bad port", "client-port 54321", "client-port 654321" },
		{ "bad id", "queue-id ", "queue-id x" },
		{ "no recipient", "recipient bob", "sender    bob" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[4200];
		size_t m = n;
		memcpy(buf, orig, n);
		if (!cases[i].from) {
			m -= (size_t)cases[i].to[0];
		} else {
			char *p = memmem(buf, m, cases[i].from, strlen(cases[i].from));
			CHECK(p != NULL);
			if (!p)
				continue;
			size_t fl = strlen(cases[i].from), tl = strlen(cases[i].to);
			memmove(p + tl, p + fl, m - (size_t)(p - buf) - fl);
			memcpy(p, cases[i].to, tl);
			m = m - fl + tl;
		}
		f = fopen(path, "w");
		fwrite(buf, 1, m, f);
		fclose(f);
		err[0] = '\0';
		int rc = spool_file_read(path, &r, err, sizeof(err));
		if (rc != -EINVAL)
			fprintf(stderr, "case '%s' was accepted\n", cases[i].what);
		CHECK_INT_EQ(rc, -EINVAL);
		CHECK(err[0] != '\0');
	}
	CHECK_INT_EQ(spool_file_read("/nonexistent/x", &r, err, sizeof(err)), -ENOENT);
	spool_dir_close(&d);
	rm_rf(root);
}

int main(void)
{
	queue_id_gen_init(&gen, 0, 0);
	RUN_TEST(test_dir_open);
	RUN_TEST(test_round_trip);
	RUN_TEST(test_abort);
	RUN_TEST(test_commit_failures);
	RUN_TEST(test_kernel_failures);
	RUN_TEST(test_reader_rejects);
	return TEST_RESULT();
}
