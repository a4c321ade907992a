/* The interim spool: one file per accepted message.
 *
 * "250 means durable": a message is on stable storage before its 250 leaves. The commit
 * sequence (spool_writer_commit) is
 *     write tmp/ID (created O_CREAT|O_EXCL) -> fdatasync(file) -> close
 *     -> rename tmp/ID to incoming/ID without replacing (RENAME_NOREPLACE)
 *     -> fsync(incoming/)
 * and only then may the caller answer 250. Any failure on that path removes the file
 * (from tmp/, or from incoming/ when only the directory sync failed) and returns a
 * negative errno: the caller answers 451 4.3.0, never 250. A file in incoming/ is thus
 * complete and was acknowledged (or is about to be); a file in tmp/ never was, and
 * spool_dir_open() removes what a crash left there.
 *
 * INTERIM: the fdatasync and the directory fsync run on the worker thread that owns the
 * connection and block it (every other connection of that worker waits for the disk).
 * The spool issue replaces this with a writer thread and group commit (one sync for many
 * messages, records with CRC and end marker in segment files); until then this is the
 * simple, obviously correct form.
 *
 * Directory layout (created 0700 at start):
 *     SPOOL/lock       flock()ed by the running gateway: one gateway per spool
 *     SPOOL/tmp/       messages being received
 *     SPOOL/incoming/  committed messages, named by queue ID
 *
 * File format, version 1. The envelope is text, one "key value" per line, lines end in
 * LF; then an empty line (a lone LF); then the message bytes exactly as stored, with
 * CRLF line ends, to the end of the file:
 *
 *     MXGATE-SPOOL 1
 *     queue-id 4ZhQ5N0Bc9z01
 *     arrival 1732270495                  wall-clock seconds since the epoch (UTC)
 *     client-address 192.0.2.1            numeric, IPv4-mapped IPv6 shown as IPv4
 *     client-port 54321
 *     client-name unknown                 "unknown": no reverse DNS in this version
 *     helo mail.example.com               empty when the client sent none
 *     protocol ESMTP                      SMTP, ESMTP or UTF8SMTP (as in Received:)
 *     sender a@example.com                empty for the null sender <>
 *     mail-parameter SIZE=1234            zero or more, in the order given
 *     recipient x@example.net             one or more, in the order accepted
 *     recipient-parameter NOTIFY=NEVER    zero or more, for the recipient above
 *     size 00000000000000004711           bytes of message after the empty line
 *
 *     Received: from ... (our header, first)
 *     ...headers and body as the engine delivered them...
 *
 * Values run to the end of their line. Bytes below 0x20, 0x7f and '%' are written as %XX
 * (upper-case hex), so a value can never break a line; other bytes (UTF-8) are written
 * as they are. The size is written with exactly 20 digits because it is patched in place
 * when the message is complete (the envelope is streamed before the message); readers
 * accept any number of digits. A file whose length is not exactly envelope + size is
 * truncated or corrupt, and the reader says so. An incompatible change of this format
 * changes the version number on the first line. */
#ifndef MXGATE_DATAPLANE_SPOOL_FILE_H
#define MXGATE_DATAPLANE_SPOOL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/queue_id.h"
#include "mxgate/span.h"

#define SPOOL_FILE_MAGIC "MXGATE-SPOOL 1"
#define SPOOL_SIZE_DIGITS 20

/* The file-system calls the commit path makes. Production uses spool_io_system; tests
 * substitute failing ones to prove that no failure ever ends in incoming/. */
struct spool_io {
	ssize_t (*write)(int fd, const void *buf, size_t n);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	int (*close)(int fd);
	/* Move olddir/name to newdir/name; must fail with EEXIST rather than replace. */
	int (*rename_noreplace)(int olddir, int newdir, const char *name);
};

extern const struct spool_io spool_io_system;

struct spool_dir {
	char *path;
	int root_fd;
	int tmp_fd;
	int incoming_fd;
	int lock_fd;
	const struct spool_io *io;
};

/* Create (mkdir -p, mode 0700) and open the spool at `path`, lock it against a second
 * gateway, remove stale files from tmp/ (messages that were never acknowledged), and
 * prove it writable by creating, syncing and removing a probe file. Returns 0, or a
 * negative errno with a message in err. *stale (may be NULL) gets the number of stale
 * files removed. */
int spool_dir_open(struct spool_dir *d, const char *path, unsigned *stale, char *err,
		   size_t errlen);
void spool_dir_close(struct spool_dir *d);

/* The tick of the newest queue ID in incoming/ (0 when there is none): the floor for the
 * queue ID generators, so a clock that stepped back cannot reuse a spooled ID. */
uint64_t spool_dir_newest_id_us(const struct spool_dir *d);

/* The connection-independent part of an envelope, known when the first recipient is
 * accepted. Spans are copied into the file at once. */
struct spool_envelope {
	const char *queue_id;
	int64_t arrival;
	const char *client_addr;
	uint16_t client_port;
	const char *client_name;
	struct mx_span helo;
	const char *protocol;
	struct mx_span sender;
	struct mx_span mail_params; /* raw "SIZE=1 BODY=8BITMIME"; split on white space */
};

enum spool_writer_state {
	SPOOL_WRITER_IDLE,     /* no message */
	SPOOL_WRITER_ENVELOPE, /* recipients may be added */
	SPOOL_WRITER_MESSAGE,  /* message bytes may be appended */
	SPOOL_WRITER_STATE_MAX,
};

const char *spool_writer_state_name(enum spool_writer_state s);

/* Streams one message into tmp/ID. Memory is one buffer of SPOOL_WRITER_BUFSIZE bytes,
 * whatever the message size, so ten thousand connections receiving big messages at once
 * cost ten thousand buffers, not ten thousand messages. The file is created lazily (at
 * spool_writer_message_begin, or when the buffer first fills): a transaction that ends
 * before DATA (an address probe, RSET) never touches the disk.
 * Errors are sticky: after the first failure every call returns it and commit fails. */
#define SPOOL_WRITER_BUFSIZE 16384

struct spool_writer {
	const struct spool_dir *dir;
	enum spool_writer_state state;
	int fd;                 /* -1 until the file exists */
	int error;              /* 0 or the first negative errno */
	char id[QUEUE_ID_SIZE];
	char *buf;
	size_t len;             /* bytes in buf */
	uint64_t flushed;       /* bytes already written to the file (buf starts here) */
	uint64_t size_at;       /* stream offset of the size digits */
	uint64_t message_start; /* stream offset of the first message byte */
	unsigned nrcpt;
};

/* Start a message: allocate the buffer and write the envelope head. Returns 0 or a
 * negative errno (-ENOMEM). */
int spool_writer_begin(struct spool_writer *w, const struct spool_dir *d,
		       const struct spool_envelope *env);

/* Add an accepted recipient with its raw ESMTP parameters. Returns 0 or a negative errno. */
int spool_writer_add_rcpt(struct spool_writer *w, struct mx_span addr, struct mx_span params);

/* End the envelope (size placeholder, empty line) and create the file, so a spool that
 * cannot take a file (EACCES, ENOSPC on inodes, EMFILE) is found at DATA, before the
 * client sends the message. Returns 0 or a negative errno. */
int spool_writer_message_begin(struct spool_writer *w);

/* Append message bytes. Returns 0 or a negative errno (sticky). */
int spool_writer_append(struct spool_writer *w, const void *p, size_t n);

/* Bytes of message appended so far. */
uint64_t spool_writer_message_size(const struct spool_writer *w);

/* Make the message durable and visible in incoming/ (see the top of this file). Returns
 * 0 when it is, else a negative errno after removing every trace of it. Either way the
 * writer is idle afterwards. */
int spool_writer_commit(struct spool_writer *w);

/* Drop the message in progress (RSET, abort, lost connection); no-op when idle. */
void spool_writer_abort(struct spool_writer *w);

/* A spool file read back (tests, tools, the future relay). */
struct spool_rcpt {
	char *addr;
	char **params;
	size_t nparams;
};

struct spool_record {
	char queue_id[QUEUE_ID_SIZE];
	int64_t arrival;
	char *client_addr;
	uint16_t client_port;
	char *client_name;
	char *helo;
	char *protocol;
	char *sender;
	char **mail_params;
	size_t nmail_params;
	struct spool_rcpt *rcpts;
	size_t nrcpt;
	uint64_t size;
	char *message; /* `size` bytes, NUL-terminated for convenience */
};

/* Read and validate the spool file at path. Returns 0 and *out, or a negative errno
 * (-EINVAL for a malformed or truncated file, with the reason in err). */
int spool_file_read(const char *path, struct spool_record **out, char *err, size_t errlen);
void spool_record_free(struct spool_record *r);

#endif
