#include "dataplane/spool/spool_envelope.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/errf.h"

/* ---- building ---- */

static int spool_envbuf_put(struct spool_envbuf *b, const char *s, size_t n)
{
	if (b->error)
		return b->error;
	if (n > SPOOL_ENVELOPE_MAX - b->len)
		return b->error = -E2BIG;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return b->error = -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	if (n) /* an empty span may have a NULL pointer */
		memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

/* One line: key, space, the value %XX-escaped, LF. */
static int spool_envbuf_line(struct spool_envbuf *b, const char *key, struct mx_span v)
{
	static const char hex[] = "0123456789ABCDEF";
	spool_envbuf_put(b, key, strlen(key));
	spool_envbuf_put(b, " ", 1);
	size_t start = 0;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c >= 0x20 && c != 0x7f && c != '%')
			continue;
		char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
		spool_envbuf_put(b, v.ptr + start, i - start);
		spool_envbuf_put(b, esc, 3);
		start = i + 1;
	}
	spool_envbuf_put(b, v.ptr + start, v.len - start);
	return spool_envbuf_put(b, "\n", 1);
}

static int spool_envbuf_num(struct spool_envbuf *b, const char *key, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
	return spool_envbuf_line(b, key, mx_span_make(buf, (size_t)n));
}

/* ESMTP parameters are "keyword[=value]" separated by spaces (RFC 5321 4.1.2: the
 * esmtp-value excludes SP and controls), so splitting on white space is exact. */
static int spool_envbuf_params(struct spool_envbuf *b, const char *key, struct mx_span params)
{
	size_t i = 0;
	while (i < params.len) {
		while (i < params.len && (params.ptr[i] == ' ' || params.ptr[i] == '\t'))
			i++;
		size_t s = i;
		while (i < params.len && params.ptr[i] != ' ' && params.ptr[i] != '\t')
			i++;
		if (i > s)
			spool_envbuf_line(b, key, mx_span_make(params.ptr + s, i - s));
	}
	return b->error;
}

int spool_envbuf_begin(struct spool_envbuf *b, const struct spool_envelope *env)
{
	assert(queue_id_valid(env->queue_id));
	*b = (struct spool_envbuf){ 0 };
	spool_envbuf_put(b, SPOOL_ENVELOPE_MAGIC "\n", sizeof(SPOOL_ENVELOPE_MAGIC));
	spool_envbuf_line(b, "queue-id", mx_span_cstr(env->queue_id));
	spool_envbuf_num(b, "arrival", env->arrival);
	spool_envbuf_line(b, "client-address", mx_span_cstr(env->client_addr));
	spool_envbuf_num(b, "client-port", env->client_port);
	spool_envbuf_line(b, "client-name",
			  mx_span_cstr(env->client_name ? env->client_name : "unknown"));
	spool_envbuf_line(b, "helo", env->helo);
	spool_envbuf_line(b, "protocol", mx_span_cstr(env->protocol));
	spool_envbuf_line(b, "sender", env->sender);
	spool_envbuf_params(b, "mail-parameter", env->mail_params);
	/* The optional lines close the head, before the first recipient. */
	if (env->hold_reason)
		spool_envbuf_line(b, "hold", mx_span_cstr(env->hold_reason));
	if (env->filter)
		spool_envbuf_line(b, "filter", mx_span_cstr(env->filter));
	b->head_len = b->len;
	b->head_hold = env->hold_reason != NULL;
	b->head_filter = env->filter != NULL;
	return b->error;
}

int spool_envbuf_finish(struct spool_envbuf *b, const struct spool_envelope_actions *a)
{
	if (b->error)
		return b->error;
	bool hold = a->hold_reason && !b->head_hold;
	bool filter = a->filter && *a->filter && !b->head_filter;
	bool redirect = a->redirect && *a->redirect;
	unsigned nbcc = 0;
	for (unsigned i = 0; i < a->nbcc; i++)
		nbcc += a->bcc[i] && *a->bcc[i];
	if (!hold && !filter && !redirect && !nbcc)
		return 0;
	assert(b->head_len > 0 && b->head_len <= b->len);
	struct spool_envbuf n = { 0 };
	spool_envbuf_put(&n, b->p, b->head_len);
	if (hold)
		spool_envbuf_line(&n, "hold", mx_span_cstr(a->hold_reason));
	if (filter)
		spool_envbuf_line(&n, "filter", mx_span_cstr(a->filter));
	n.head_len = n.len;
	n.head_hold = b->head_hold || hold;
	n.head_filter = b->head_filter || filter;
	if (redirect) {
		/* access(5) REDIRECT: the message goes to this address "instead of the intended
		 * recipient(s)"; their DSN parameters describe addresses it no longer goes to. */
		spool_envbuf_line(&n, "recipient", mx_span_cstr(a->redirect));
		n.nrcpt = 1;
	} else {
		spool_envbuf_put(&n, b->p + b->head_len, b->len - b->head_len);
		n.nrcpt = b->nrcpt;
	}
	for (unsigned i = 0; i < a->nbcc; i++) {
		if (!a->bcc[i] || !*a->bcc[i])
			continue;
		/* A blind copy must never tell the sender about itself. */
		spool_envbuf_line(&n, "recipient", mx_span_cstr(a->bcc[i]));
		spool_envbuf_line(&n, "recipient-parameter", mx_span_cstr("NOTIFY=NEVER"));
		n.nrcpt++;
	}
	if (n.error) {
		int rc = n.error;
		spool_envbuf_free(&n);
		return b->error = rc;
	}
	spool_envbuf_free(b);
	*b = n;
	return 0;
}

int spool_envbuf_add_rcpt(struct spool_envbuf *b, struct mx_span addr, struct mx_span params)
{
	spool_envbuf_line(b, "recipient", addr);
	spool_envbuf_params(b, "recipient-parameter", params);
	if (b->error == 0)
		b->nrcpt++;
	return b->error;
}

void spool_envbuf_free(struct spool_envbuf *b)
{
	free(b->p);
	*b = (struct spool_envbuf){ 0 };
}

/* ---- parsing ---- */

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
	free(r->hold_reason);
	free(r->filter);
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

int spool_envelope_parse(const char *data, size_t flen, struct spool_record **out, char *err,
			 size_t errlen)
{
	int rc;
	struct spool_record *r = calloc(1, sizeof(*r));
	if (!r)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");

	size_t pos = 0, lineno = 0;
	bool have_id = false, have_sender = false;
	while (pos < flen) {
		const char *nl = memchr(data + pos, '\n', flen - pos);
		if (!nl) {
			rc = mx_errf(err, errlen, -EINVAL, "envelope line %zu has no end",
					    lineno + 1);
			goto fail;
		}
		size_t llen = (size_t)(nl - (data + pos));
		const char *line = data + pos;
		pos += llen + 1;
		lineno++;
		if (lineno == 1) {
			if (llen != strlen(SPOOL_ENVELOPE_MAGIC) ||
			    memcmp(line, SPOOL_ENVELOPE_MAGIC, llen) != 0) {
				rc = mx_errf(err, errlen, -EINVAL,
						    "not a version 1 mxgate envelope");
				goto fail;
			}
			continue;
		}
		const char *sp = memchr(line, ' ', llen);
		size_t klen = sp ? (size_t)(sp - line) : llen;
		char *val = spool_unescape(sp ? sp + 1 : line + llen, sp ? llen - klen - 1 : 0);
		if (!val) {
			rc = mx_errf(err, errlen, -EINVAL, "envelope line %zu: bad %%-escape",
					    lineno);
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
		} else if (KEY("hold") || KEY("filter")) {
			/* Head lines: once each, before the first recipient. The filter's
			 * syntax is the relay's to judge: refusing it here would make the
			 * whole message unreadable. */
			char **slot = KEY("hold") ? &r->hold_reason : &r->filter;
			if (*slot || r->nrcpt > 0) {
				free(val);
				rc = -EINVAL;
			} else {
				*slot = val;
			}
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
				struct spool_rcpt *rp = &r->rcpts[r->nrcpt - 1];
				rc = spool_push(&rp->params, &rp->nparams, val);
			}
		} else {
			free(val);
			rc = mx_errf(err, errlen, -EINVAL,
					    "envelope line %zu: unknown key '%.*s'", lineno,
					    (int)(klen > 40 ? 40 : klen), line);
			goto fail;
		}
#undef KEY
		if (rc < 0) {
			mx_errf(err, errlen, rc, "envelope line %zu: bad value", lineno);
			goto fail;
		}
	}
	if (!have_id || !have_sender || r->nrcpt == 0 || !r->client_addr || !r->protocol) {
		rc = mx_errf(err, errlen, -EINVAL, "incomplete envelope");
		goto fail;
	}
	*out = r;
	return 0;
fail:
	spool_record_free(r);
	return rc;
}

int spool_envelope_hold(const char *data, size_t n, char **reason)
{
	static const char key[] = "hold ";
	*reason = NULL;
	size_t pos = 0;
	while (pos < n) {
		const char *nl = memchr(data + pos, '\n', n - pos);
		size_t llen = nl ? (size_t)(nl - (data + pos)) : n - pos;
		const char *line = data + pos;
		pos += llen + 1;
		if (llen >= 10 && memcmp(line, "recipient ", 10) == 0)
			break; /* the optional lines come before the first recipient */
		/* as the parser reads it: "hold" alone is a hold with an empty reason */
		bool bare = llen == sizeof(key) - 2 && memcmp(line, key, llen) == 0;
		if (!bare && (llen < sizeof(key) - 1 || memcmp(line, key, sizeof(key) - 1) != 0))
			continue;
		char *v = bare ? spool_unescape(line, 0)
			       : spool_unescape(line + sizeof(key) - 1, llen - (sizeof(key) - 1));
		if (!v) /* spool_unescape() cannot tell: a bad escape is the likelier */
			return -EINVAL;
		*reason = v;
		return 1;
	}
	return 0;
}
