#include "dataplane/spool/spool_file.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* ---- the system calls, replaceable for tests ---- */

static ssize_t spool_sys_write(int fd, const void *buf, size_t n)
{
	return write(fd, buf, n);
}

static ssize_t spool_sys_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

static int spool_sys_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int spool_sys_fsync(int fd)
{
	return fsync(fd);
}

static int spool_sys_close(int fd)
{
	return close(fd);
}

static int spool_sys_rename_noreplace(int olddir, int newdir, const char *name)
{
	/* renameat2() is atomic and never replaces. File systems without RENAME_NOREPLACE
	 * (EINVAL) get link+unlink, which also refuses to replace (EEXIST). */
	if (syscall(SYS_renameat2, olddir, name, newdir, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(olddir, name, newdir, name, 0) != 0)
		return -1;
	if (unlinkat(olddir, name, 0) != 0) {
		int e = errno;
		(void)unlinkat(newdir, name, 0);
		errno = e;
		return -1;
	}
	return 0;
}

const struct spool_io spool_io_system = {
	.write = spool_sys_write,
	.pwrite = spool_sys_pwrite,
	.fdatasync = spool_sys_fdatasync,
	.fsync = spool_sys_fsync,
	.close = spool_sys_close,
	.rename_noreplace = spool_sys_rename_noreplace,
};

static int spool_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int spool_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- the directory ---- */

/* mkdir -p with mode 0700 for what it creates. */
static int spool_mkdirs(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			int e = -errno;
			free(p);
			return e;
		}
		*s = '/';
	}
	int rc = 0;
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

static int spool_open_subdir(int root, const char *name, int *fd)
{
	if (mkdirat(root, name, 0700) != 0 && errno != EEXIST)
		return -errno;
	*fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

/* Remove the regular files in tmp/: each is a message whose 250 was never sent. */
static int spool_clean_tmp(int tmp_fd, unsigned *count)
{
	int fd = dup(tmp_fd);
	if (fd < 0)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int e = -errno;
		close(fd);
		return e;
	}
	rewinddir(dir);
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
					     (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		if (unlinkat(tmp_fd, de->d_name, 0) == 0)
			(*count)++;
		else if (errno != ENOENT && errno != EISDIR)
			rc = -errno;
	}
	closedir(dir);
	return rc;
}

void spool_dir_close(struct spool_dir *d)
{
	if (d->tmp_fd >= 0)
		close(d->tmp_fd);
	if (d->incoming_fd >= 0)
		close(d->incoming_fd);
	if (d->root_fd >= 0)
		close(d->root_fd);
	if (d->lock_fd >= 0)
		close(d->lock_fd); /* releases the flock */
	free(d->path);
	*d = (struct spool_dir){ .root_fd = -1, .tmp_fd = -1, .incoming_fd = -1, .lock_fd = -1 };
}

int spool_dir_open(struct spool_dir *d, const char *path, unsigned *stale, char *err,
		   size_t errlen)
{
	int rc;
	unsigned removed = 0;

	*d = (struct spool_dir){ .root_fd = -1, .tmp_fd = -1, .incoming_fd = -1, .lock_fd = -1,
				 .io = &spool_io_system };
	if (!path || !*path)
		return spool_errf(err, errlen, -EINVAL, "no spool directory configured");
	d->path = strdup(path);
	if (!d->path)
		return spool_errf(err, errlen, -ENOMEM, "out of memory");

	if ((rc = spool_mkdirs(path)) < 0) {
		spool_errf(err, errlen, rc, "create spool directory %s: %s", path, strerror(-rc));
		goto fail;
	}
	d->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->root_fd < 0) {
		rc = -errno;
		spool_errf(err, errlen, rc, "open spool directory %s: %s", path, strerror(-rc));
		goto fail;
	}
	d->lock_fd = openat(d->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0) {
		rc = -errno;
		spool_errf(err, errlen, rc, "create %s/lock: %s", path, strerror(-rc));
		goto fail;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK)
			spool_errf(err, errlen, -EBUSY,
				   "spool directory %s is in use by another mxgate process", path);
		else
			spool_errf(err, errlen, rc, "lock %s/lock: %s", path, strerror(-rc));
		rc = rc == -EWOULDBLOCK ? -EBUSY : rc;
		goto fail;
	}
	if ((rc = spool_open_subdir(d->root_fd, "tmp", &d->tmp_fd)) < 0 ||
	    (rc = spool_open_subdir(d->root_fd, "incoming", &d->incoming_fd)) < 0) {
		spool_errf(err, errlen, rc, "create %s/tmp and %s/incoming: %s", path, path,
			   strerror(-rc));
		goto fail;
	}
	if ((rc = spool_clean_tmp(d->tmp_fd, &removed)) < 0) {
		spool_errf(err, errlen, rc, "clean %s/tmp: %s", path, strerror(-rc));
		goto fail;
	}

	/* Prove the spool takes a durable file now rather than at the first message. */
	char probe[64];
	snprintf(probe, sizeof(probe), ".probe.%ld", (long)getpid());
	int fd = openat(d->tmp_fd, probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		spool_errf(err, errlen, rc, "spool directory %s/tmp is not writable: %s", path,
			   strerror(-rc));
		goto fail;
	}
	rc = 0;
	errno = 0;
	if (write(fd, "x", 1) != 1 || fdatasync(fd) != 0 || fsync(d->incoming_fd) != 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	unlinkat(d->tmp_fd, probe, 0);
	if (rc < 0) {
		spool_errf(err, errlen, rc, "spool directory %s is not writable: %s", path,
			   strerror(-rc));
		goto fail;
	}
	if (stale)
		*stale = removed;
	return 0;
fail:
	spool_dir_close(d);
	return rc;
}

uint64_t spool_dir_newest_id_us(const struct spool_dir *d)
{
	uint64_t newest = 0;
	int fd = dup(d->incoming_fd);
	if (fd < 0)
		return 0;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return 0;
	}
	rewinddir(dir);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		uint64_t us;
		if (queue_id_time_us(de->d_name, &us) == 0 && us > newest)
			newest = us;
	}
	closedir(dir);
	return newest;
}

/* ---- the writer ---- */

const char *spool_writer_state_name(enum spool_writer_state s)
{
	switch (s) {
	case SPOOL_WRITER_IDLE: return "idle";
	case SPOOL_WRITER_ENVELOPE: return "envelope";
	case SPOOL_WRITER_MESSAGE: return "message";
	case SPOOL_WRITER_STATE_MAX: break;
	}
	return "?";
}

static int spool_writer_fail(struct spool_writer *w, int rc)
{
	assert(rc < 0);
	if (w->error == 0)
		w->error = rc;
	return w->error;
}

static int spool_writer_create(struct spool_writer *w)
{
	if (w->fd >= 0)
		return 0;
	/* O_EXCL: an existing tmp/ID means the ID was issued twice; never share a file. */
	w->fd = openat(w->dir->tmp_fd, w->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	return w->fd < 0 ? spool_writer_fail(w, -errno) : 0;
}

static int spool_write_all(const struct spool_io *io, int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = io->write(fd, p, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int spool_writer_flush(struct spool_writer *w)
{
	int rc;
	if (w->error)
		return w->error;
	if (w->len == 0)
		return 0;
	if ((rc = spool_writer_create(w)) < 0)
		return rc;
	if ((rc = spool_write_all(w->dir->io, w->fd, w->buf, w->len)) < 0)
		return spool_writer_fail(w, rc);
	w->flushed += w->len;
	w->len = 0;
	return 0;
}

static int spool_writer_put(struct spool_writer *w, const void *p, size_t n)
{
	const char *s = p;
	if (w->error)
		return w->error;
	while (n) {
		if (w->len == SPOOL_WRITER_BUFSIZE) {
			int rc = spool_writer_flush(w);
			if (rc < 0)
				return rc;
		}
		size_t k = SPOOL_WRITER_BUFSIZE - w->len;
		if (k > n)
			k = n;
		memcpy(w->buf + w->len, s, k);
		w->len += k;
		s += k;
		n -= k;
	}
	return 0;
}

static int spool_writer_puts(struct spool_writer *w, const char *s)
{
	return spool_writer_put(w, s, strlen(s));
}

/* One envelope line: key, space, the value %XX-escaped, LF. */
static int spool_writer_line(struct spool_writer *w, const char *key, struct mx_span v)
{
	static const char hex[] = "0123456789ABCDEF";
	spool_writer_puts(w, key);
	spool_writer_put(w, " ", 1);
	size_t start = 0;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c >= 0x20 && c != 0x7f && c != '%')
			continue;
		char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
		spool_writer_put(w, v.ptr + start, i - start);
		spool_writer_put(w, esc, 3);
		start = i + 1;
	}
	spool_writer_put(w, v.ptr + start, v.len - start);
	return spool_writer_put(w, "\n", 1);
}

static int spool_writer_linef(struct spool_writer *w, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int spool_writer_linef(struct spool_writer *w, const char *key, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert(n >= 0 && (size_t)n < sizeof(buf));
	return spool_writer_line(w, key, mx_span_make(buf, (size_t)n));
}

/* ESMTP parameters are "keyword[=value]" separated by spaces (RFC 5321 4.1.2: the
 * esmtp-value excludes SP and controls), so splitting on white space is exact. */
static int spool_writer_params(struct spool_writer *w, const char *key, struct mx_span params)
{
	size_t i = 0;
	while (i < params.len) {
		while (i < params.len && (params.ptr[i] == ' ' || params.ptr[i] == '\t'))
			i++;
		size_t s = i;
		while (i < params.len && params.ptr[i] != ' ' && params.ptr[i] != '\t')
			i++;
		if (i > s)
			spool_writer_line(w, key, mx_span_make(params.ptr + s, i - s));
	}
	return w->error;
}

static uint64_t spool_writer_offset(const struct spool_writer *w)
{
	return w->flushed + w->len;
}

int spool_writer_begin(struct spool_writer *w, const struct spool_dir *d,
		       const struct spool_envelope *env)
{
	assert(queue_id_valid(env->queue_id));
	*w = (struct spool_writer){ .dir = d, .fd = -1, .state = SPOOL_WRITER_ENVELOPE };
	memcpy(w->id, env->queue_id, QUEUE_ID_SIZE);
	w->buf = malloc(SPOOL_WRITER_BUFSIZE);
	if (!w->buf) {
		w->state = SPOOL_WRITER_IDLE;
		return -ENOMEM;
	}
	spool_writer_puts(w, SPOOL_FILE_MAGIC "\n");
	spool_writer_line(w, "queue-id", mx_span_cstr(env->queue_id));
	spool_writer_linef(w, "arrival", "%" PRId64, env->arrival);
	spool_writer_line(w, "client-address", mx_span_cstr(env->client_addr));
	spool_writer_linef(w, "client-port", "%u", (unsigned)env->client_port);
	spool_writer_line(w, "client-name",
			  mx_span_cstr(env->client_name ? env->client_name : "unknown"));
	spool_writer_line(w, "helo", env->helo);
	spool_writer_line(w, "protocol", mx_span_cstr(env->protocol));
	spool_writer_line(w, "sender", env->sender);
	return spool_writer_params(w, "mail-parameter", env->mail_params);
}

int spool_writer_add_rcpt(struct spool_writer *w, struct mx_span addr, struct mx_span params)
{
	assert(w->state == SPOOL_WRITER_ENVELOPE);
	spool_writer_line(w, "recipient", addr);
	spool_writer_params(w, "recipient-parameter", params);
	if (w->error == 0)
		w->nrcpt++;
	return w->error;
}

int spool_writer_message_begin(struct spool_writer *w)
{
	assert(w->state == SPOOL_WRITER_ENVELOPE);
	assert(w->nrcpt > 0);
	w->state = SPOOL_WRITER_MESSAGE;
	spool_writer_puts(w, "size ");
	w->size_at = spool_writer_offset(w);
	spool_writer_puts(w, "00000000000000000000\n\n");
	w->message_start = spool_writer_offset(w);
	if (w->error)
		return w->error;
	return spool_writer_create(w);
}

int spool_writer_append(struct spool_writer *w, const void *p, size_t n)
{
	assert(w->state == SPOOL_WRITER_MESSAGE);
	return spool_writer_put(w, p, n);
}

uint64_t spool_writer_message_size(const struct spool_writer *w)
{
	if (w->state != SPOOL_WRITER_MESSAGE)
		return 0;
	return spool_writer_offset(w) - w->message_start;
}

static void spool_writer_release(struct spool_writer *w)
{
	free(w->buf);
	const struct spool_dir *d = w->dir;
	*w = (struct spool_writer){ .dir = d, .fd = -1, .state = SPOOL_WRITER_IDLE };
}

void spool_writer_abort(struct spool_writer *w)
{
	if (w->state == SPOOL_WRITER_IDLE)
		return;
	if (w->fd >= 0) {
		w->dir->io->close(w->fd);
		unlinkat(w->dir->tmp_fd, w->id, 0);
	}
	spool_writer_release(w);
}

int spool_writer_commit(struct spool_writer *w)
{
	const struct spool_io *io = w->dir->io;
	char digits[SPOOL_SIZE_DIGITS + 1];
	int rc;

	assert(w->state == SPOOL_WRITER_MESSAGE);
	if (w->error) {
		rc = w->error;
		goto fail;
	}
	snprintf(digits, sizeof(digits), "%020" PRIu64, spool_writer_message_size(w));

	/* Patch the size in the buffer when it is still there (every small message), else
	 * in the file after the rest is written. */
	if (w->size_at >= w->flushed) {
		memcpy(w->buf + (w->size_at - w->flushed), digits, SPOOL_SIZE_DIGITS);
		if ((rc = spool_writer_flush(w)) < 0)
			goto fail;
	} else {
		if ((rc = spool_writer_flush(w)) < 0)
			goto fail;
		ssize_t n = io->pwrite(w->fd, digits, SPOOL_SIZE_DIGITS, (off_t)w->size_at);
		if (n != SPOOL_SIZE_DIGITS) {
			rc = n < 0 ? -errno : -EIO;
			goto fail;
		}
	}
	if (io->fdatasync(w->fd) != 0) {
		rc = -errno;
		goto fail;
	}
	/* close() can report a deferred write error on some file systems: the file is not
	 * known good until it returns 0. */
	int fd = w->fd;
	w->fd = -1;
	if (io->close(fd) != 0) {
		rc = -errno;
		unlinkat(w->dir->tmp_fd, w->id, 0);
		goto fail;
	}
	if (io->rename_noreplace(w->dir->tmp_fd, w->dir->incoming_fd, w->id) != 0) {
		rc = -errno;
		unlinkat(w->dir->tmp_fd, w->id, 0);
		goto fail;
	}
	/* The rename is durable only once the directory is. If that cannot be made sure,
	 * take the file back out: the client will get 451 and retry, where a 250 could be
	 * a lost message after a crash. */
	if (io->fsync(w->dir->incoming_fd) != 0) {
		rc = -errno;
		unlinkat(w->dir->incoming_fd, w->id, 0);
		goto fail;
	}
	spool_writer_release(w);
	return 0;
fail:
	if (rc == 0)
		rc = -EIO;
	spool_writer_abort(w);
	return rc;
}

/* ---- the reader ---- */

void spool_record_free(struct spool_record *r)
{
	if (!r)
		return;
	free(r->client_addr);
	free(r->client_name);
	free(r->helo);
	free(r->protocol);
	free(r->sender);
	for (size_t i = 0; i < r->nmail_params; i++)
		free(r->mail_params[i]);
	free(r->mail_params);
	for (size_t i = 0; i < r->nrcpt; i++) {
		free(r->rcpts[i].addr);
		for (size_t j = 0; j < r->rcpts[i].nparams; j++)
			free(r->rcpts[i].params[j]);
		free(r->rcpts[i].params);
	}
	free(r->rcpts);
	free(r->message);
	free(r);
}

static int spool_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode a %XX-escaped value; NULL on a bad escape or no memory. */
static char *spool_unescape(const char *p, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%') {
			*o++ = p[i];
			continue;
		}
		int hi = i + 2 < n ? spool_hexval(p[i + 1]) : -1;
		int lo = i + 2 < n ? spool_hexval(p[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			free(out);
			return NULL;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

static int spool_push(char ***arr, size_t *n, char *s)
{
	char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (!a) {
		free(s);
		return -ENOMEM;
	}
	a[(*n)++] = s;
	*arr = a;
	return 0;
}

static int spool_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int spool_file_read(const char *path, struct spool_record **out, char *err, size_t errlen)
{
	struct spool_record *r = NULL;
	char *data = NULL;
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return spool_errf(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		return spool_errf(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	size_t flen = (size_t)st.st_size;
	if ((off_t)flen != st.st_size || flen == SIZE_MAX) {
		close(fd);
		return spool_errf(err, errlen, -EFBIG, "%s: file too large", path);
	}
	data = malloc(flen + 1);
	r = calloc(1, sizeof(*r));
	if (!data || !r) {
		close(fd);
		rc = spool_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	size_t got = 0;
	while (got < flen) {
		ssize_t n = read(fd, data + got, flen - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EINVAL;
			close(fd);
			spool_errf(err, errlen, rc, "%s: read: %s", path,
				   n < 0 ? strerror(-rc) : "file shrank");
			goto fail;
		}
		got += (size_t)n;
	}
	close(fd);
	data[flen] = '\0';

	size_t pos = 0, lineno = 0;
	bool have_size = false, have_id = false, have_sender = false, ended = false;
	while (pos < flen) {
		char *nl = memchr(data + pos, '\n', flen - pos);
		if (!nl)
			break;
		size_t llen = (size_t)(nl - (data + pos));
		char *line = data + pos;
		pos += llen + 1;
		lineno++;
		if (lineno == 1) {
			if (llen != strlen(SPOOL_FILE_MAGIC) ||
			    memcmp(line, SPOOL_FILE_MAGIC, llen) != 0) {
				rc = spool_errf(err, errlen, -EINVAL,
						"%s: not a version 1 mxgate spool file", path);
				goto fail;
			}
			continue;
		}
		if (llen == 0) {
			ended = true;
			break;
		}
		char *sp = memchr(line, ' ', llen);
		size_t klen = sp ? (size_t)(sp - line) : llen;
		char *val = spool_unescape(sp ? sp + 1 : line + llen, sp ? llen - klen - 1 : 0);
		if (!val) {
			rc = spool_errf(err, errlen, -EINVAL, "%s:%zu: bad %%-escape", path, lineno);
			goto fail;
		}
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
		uint64_t num = 0;
		rc = 0;
		if (KEY("queue-id")) {
			if (!queue_id_valid(val))
				rc = -EINVAL;
			else
				memcpy(r->queue_id, val, QUEUE_ID_SIZE);
			have_id = true;
			free(val);
		} else if (KEY("arrival")) {
			rc = spool_parse_u64(val, INT64_MAX, &num);
			r->arrival = (int64_t)num;
			free(val);
		} else if (KEY("client-address")) {
			free(r->client_addr);
			r->client_addr = val;
		} else if (KEY("client-port")) {
			rc = spool_parse_u64(val, UINT16_MAX, &num);
			r->client_port = (uint16_t)num;
			free(val);
		} else if (KEY("client-name")) {
			free(r->client_name);
			r->client_name = val;
		} else if (KEY("helo")) {
			free(r->helo);
			r->helo = val;
		} else if (KEY("protocol")) {
			free(r->protocol);
			r->protocol = val;
		} else if (KEY("sender")) {
			free(r->sender);
			r->sender = val;
			have_sender = true;
		} else if (KEY("mail-parameter")) {
			rc = spool_push(&r->mail_params, &r->nmail_params, val);
		} else if (KEY("recipient")) {
			struct spool_rcpt *a = realloc(r->rcpts, (r->nrcpt + 1) * sizeof(*a));
			if (!a) {
				free(val);
				rc = -ENOMEM;
			} else {
				r->rcpts = a;
				a[r->nrcpt++] = (struct spool_rcpt){ .addr = val };
			}
		} else if (KEY("recipient-parameter")) {
			if (r->nrcpt == 0) {
				free(val);
				rc = -EINVAL;
			} else {
				struct spool_rcpt *rc_ = &r->rcpts[r->nrcpt - 1];
				rc = spool_push(&rc_->params, &rc_->nparams, val);
			}
		} else if (KEY("size")) {
			rc = spool_parse_u64(val, UINT64_MAX, &r->size);
			have_size = true;
			free(val);
		} else {
			free(val);
			rc = spool_errf(err, errlen, -EINVAL, "%s:%zu: unknown envelope key '%.*s'",
					path, lineno, (int)klen, line);
			goto fail;
		}
#undef KEY
		if (rc < 0) {
			spool_errf(err, errlen, rc, "%s:%zu: bad envelope line", path, lineno);
			goto fail;
		}
	}
	if (lineno == 0) {
		rc = spool_errf(err, errlen, -EINVAL, "%s: empty or truncated file", path);
		goto fail;
	}
	if (!ended || !have_id || !have_size || !have_sender || r->nrcpt == 0 ||
	    !r->client_addr || !r->protocol) {
		rc = spool_errf(err, errlen, -EINVAL, "%s: incomplete envelope", path);
		goto fail;
	}
	if (r->size != flen - pos) {
		rc = spool_errf(err, errlen, -EINVAL,
				"%s: message is %zu bytes, the envelope says %" PRIu64
				" (truncated or corrupt)", path, flen - pos, r->size);
		goto fail;
	}
	r->message = malloc(r->size + 1);
	if (!r->message) {
		rc = spool_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	memcpy(r->message, data + pos, r->size);
	r->message[r->size] = '\0';
	free(data);
	*out = r;
	return 0;
fail:
	free(data);
	spool_record_free(r);
	return rc;
}
