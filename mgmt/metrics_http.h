/* The Prometheus endpoint: a small HTTP/1.x server on a management thread of its own
 * (never a worker) that answers GET /metrics with the registry in the text format
 * (mgmt/metrics.h). Bounded: MX_METRICS_HTTP_CONNS connections at once (more wait in the
 * listen backlog), a request head of at most MX_METRICS_HTTP_HEAD_MAX bytes, a deadline per
 * connection; every response closes the connection.
 *
 *   GET or HEAD /metrics (a query string is ignored)  200, text/plain; version=0.0.4
 *   GET or HEAD other paths                            404
 *   other methods                                      405 with Allow: GET, HEAD
 *   a malformed or oversized head                      400 / 431 */
#ifndef MXGATE_MGMT_METRICS_HTTP_H
#define MXGATE_MGMT_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "mgmt/config.h"
#include "mgmt/metrics.h"

#define MX_METRICS_HTTP_HEAD_MAX 8192
#define MX_METRICS_HTTP_FIELDS_MAX 100
#define MX_METRICS_HTTP_CONNS 16
#define MX_METRICS_HTTP_TIMEOUT_MS 10000

enum mx_http_method {
	MX_HTTP_GET,
	MX_HTTP_HEAD,
	MX_HTTP_OTHER,   /* a well-formed token we do not serve */
	MX_HTTP_METHOD_MAX
};

const char *mx_http_method_name(enum mx_http_method m);

/* What the server needs of a request head. path points into the parsed buffer. */
struct mx_http_request {
	enum mx_http_method method;
	const char *path;   /* the request target up to '?' or '#' */
	size_t path_len;
	unsigned minor;     /* HTTP/1.minor */
};

/* Parse a request head (RFC 9112 section 2 and 3: request-line, field lines, an empty
 * line; a bare LF is taken as a line end, 2.2) from buf[0..len). Sans-I/O: call again
 * with more bytes. Returns the length of the head when complete (*req filled), 0 when
 * more is needed (and len is below MX_METRICS_HTTP_HEAD_MAX), -E2BIG when the head is
 * longer than MX_METRICS_HTTP_HEAD_MAX or has more than MX_METRICS_HTTP_FIELDS_MAX field
 * lines, -EINVAL when it is malformed, -EPROTONOSUPPORT for a version other than 1.x. */
int mx_http_request_parse(const char *buf, size_t len, struct mx_http_request *req);

struct mx_metrics_http;

/* Listen on addr and serve m from a thread of its own. 0 and *out, or a negative errno with
 * err (the address in use, ...). */
int mx_metrics_http_start(struct mx_metrics *m, const struct mx_listen_addr *addr,
			  struct mx_metrics_http **out, char *err, size_t errlen);
/* Stop the thread and close every socket. NULL is a no-op. */
void mx_metrics_http_stop(struct mx_metrics_http *h);
/* The port it listens on (for tests that ask for port 0: not reachable from main.cf). */
uint16_t mx_metrics_http_port(const struct mx_metrics_http *h);
/* Scrapes answered (200) since start. */
uint64_t mx_metrics_http_scrapes(const struct mx_metrics_http *h);

#endif
