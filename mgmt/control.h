/* The control socket: how operator tools (mxgate-queue) talk to a running gateway.
 *
 * A UNIX-domain stream socket (default $queue_directory/control, mode 0600 so only the
 * gateway's user, normally root, may use it; peers are also checked with SO_PEERCRED
 * against the gateway's uid or root). One thread serves it, one request at a time: tools
 * are rare and short, and the data path never waits for them.
 *
 * Wire protocol (text, one request per connection):
 *   request:  one line, words separated by single spaces, LF-terminated, at most
 *             CONTROL_REQUEST_MAX bytes and CONTROL_MAX_ARGS words (a longer one is
 *             refused with status 2);
 *   reply:    the command's output lines, then a last line "status N" where N is the
 *             command's exit status (0 ok, 1 some target failed, 2 usage/unknown command).
 * A client that sees no "status" line (gateway stopped meanwhile) reports an error.
 * Every read and write has a timeout (CONTROL_IO_TIMEOUT_MS), so a stuck client cannot
 * block the next one for long. */
#ifndef MXGATE_MGMT_CONTROL_H
#define MXGATE_MGMT_CONTROL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define CONTROL_REQUEST_MAX 65536
#define CONTROL_MAX_ARGS 1024
#define CONTROL_IO_TIMEOUT_MS 10000

struct control_server;
struct control_out;

/* Write output for the client (a line or part of one). Output is buffered and streamed;
 * a client that went away makes later writes no-ops. */
void control_printf(struct control_out *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A command: argv[0] is its name. Returns the exit status (0, 1 or 2). */
typedef int control_cmd_fn(void *ctx, int argc, char **argv, struct control_out *out);

/* Create the server on path (an existing socket file is replaced only when nothing answers
 * on it: two gateways on one spool are refused earlier by the spool lock). Returns 0 or a
 * negative errno with err. */
int control_server_create(struct control_server **out, const char *path, char *err,
			  size_t errlen);
/* Register a command before control_server_start(). Returns 0 or a negative errno. */
int control_register(struct control_server *s, const char *name, const char *usage,
		     control_cmd_fn *fn, void *ctx);
int control_server_start(struct control_server *s);
/* Stop the thread, remove the socket file, free. NULL is a no-op. */
void control_server_free(struct control_server *s);

/* Write n raw bytes for the client (message contents may hold NUL bytes), buffered like
 * control_printf(). */
void control_write(struct control_out *out, const void *p, size_t n);

/* The I/O timeout of one server (CONTROL_IO_TIMEOUT_MS unless changed; tests shorten it).
 * Before control_server_start(). */
void control_server_set_timeout(struct control_server *s, unsigned ms);

/* The request parser (the server's, exposed for its fuzz harness): split line[0..len)
 * (the request without its LF; line has room for len + 1 bytes) in place into words at single spaces, NUL-terminating each,
 * into argv (room for max_args + 1: a NULL follows the last word). A word is one or more
 * bytes above 0x20 other than 0x7f. Returns the number of words (>= 1), or -EINVAL
 * (empty request, empty word, a byte not allowed) or -E2BIG (more than max_args words)
 * with *why set to a static reason. */
int control_request_parse(char *line, size_t len, char **argv, int max_args,
			  const char **why);

/* The client side: send argv as one request to the socket at path, copy the output to out,
 * and return the command's exit status (0..2); or a negative errno when the gateway does
 * not answer (-ENOENT no socket, -ECONNREFUSED nobody listening, -ETIMEDOUT, -EPROTO no
 * status line) with the reason in err. */
int control_request(const char *path, int argc, char **argv, FILE *out, char *err,
		    size_t errlen);

#endif
