/* memcache: dicts (svc_dict.h), as Postfix's memcache_table(5) client (dict_memcache.c):
 *   lookup: memcached, then on a miss or a failure the backup; a backup hit is written
 *           back to memcached;
 *   update: memcached, then the backup (whose result is the update's, when there is one);
 *   delete: the same.
 * Keys go to memcached through key_format and the domain list (memcache_conf_key()), and
 * to the backup as they are. A key memcache_conf_key() skips is, as in Postfix, not
 * looked up at all (-ENOENT), not stored (-EINVAL, with a warning), not deleted (0).
 *
 * One connection, opened when needed, kept between calls. A command is tried up to
 * max_try times, retry_pause apart, each within timeout (and all within the call's
 * deadline); as Postfix, no second try when memcached accepts no connection; unlike
 * Postfix, a reused connection that turns out closed (EOF or reset before one reply
 * byte: memcached restarted, an idle timeout) is reopened at once without counting a try.
 *
 * When memcached cannot be reached (refused, timed out, failing max_try times), the dict
 * is "down": one warning, then every call goes straight to the backup, and a connection
 * is tried again at most once per retry_pause; the first command that works again logs
 * one info line. A node that loses memcached thus goes on with its own backup.
 *
 * Host names (inet:localhost:11211) are looked up with getaddrinfo() when a connection is
 * opened; the resolver library's own timeouts apply (use an address or /etc/hosts). */
#include "dataplane/svc/svc_dict_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/svc/svc_policy_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "tables/memcache_conf.h"
#include "tables/memcache_proto.h"

/* a command: "set <key> <flags> <exptime> <bytes>\r\n<data>\r\n" */
#define SVC_DICT_MC_CMD_MAX (MEMCACHE_KEY_MAX + 64 + SVC_DICT_VALUE_MAX + 2)
#define SVC_DICT_MC_WARN_INTERVAL_MS 60000u  /* one "server said" warning a minute */

struct svc_dict_mc {
	struct memcache_conf conf;
	struct svc_policy_target target;
	struct svc_dict *backup;          /* NULL: none (an LMDB dict) */
	char path[SVC_DICT_SPEC_MAX + 1]; /* the configuration file */
	int fd;                           /* -1: not connected */
	bool reused;                      /* the connection carried a command before */
	bool down;                        /* unreachable, and said so */
	int down_rc;                      /* why */
	uint64_t retry_at;                /* monotonic: no connection tried before */
	uint64_t warned_at;               /* monotonic: the last "server said" warning */
	bool warned;
	struct memcache_reader reader;
	char cmd[SVC_DICT_MC_CMD_MAX];
	char key[MEMCACHE_KEY_MAX + 1];   /* the last key made by memcache_conf_key() */
};

/* ---- the configuration ---- */

int svc_dict_mc_read_file(const char *path, struct memcache_conf *conf, char *err,
			  size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mx_errf(err, errlen, -errno, "open %s: %s", path, strerror(errno));
	char *text = malloc(MEMCACHE_CONF_TEXT_MAX + 1);
	if (!text) {
		close(fd);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	size_t len = 0;
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, MEMCACHE_CONF_TEXT_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = mx_errf(err, errlen, -errno, "read %s: %s", path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > MEMCACHE_CONF_TEXT_MAX) {
			rc = mx_errf(err, errlen, -E2BIG, "%s: longer than %u bytes", path,
				     MEMCACHE_CONF_TEXT_MAX);
			break;
		}
	}
	close(fd);
	if (rc == 0) {
		char why[256];
		memcache_conf_init(conf);
		rc = memcache_conf_parse(conf, text, len, why, sizeof(why));
		if (rc < 0)
			mx_errf(err, errlen, rc, "%s: %s", path, why);
	}
	free(text);
	return rc;
}

int svc_dict_mc_open(struct svc_dict *d, const char *path, char *err, size_t errlen)
{
	struct svc_dict_mc *m = calloc(1, sizeof(*m));
	if (!m)
		return mx_errf(err, errlen, -ENOMEM, "%s: out of memory", d->name);
	m->fd = -1;
	snprintf(m->path, sizeof(m->path), "%s", path);
	char why[512];
	int rc = svc_dict_mc_read_file(path, &m->conf, why, sizeof(why));
	if (rc == 0 && (rc = svc_policy_target_parse(m->conf.memcache, &m->target, why,
						    sizeof(why))) < 0)
		rc = -EINVAL;
	if (rc == 0 &&
	    (rc = memcache_reader_init(&m->reader, m->conf.line_size_limit,
				       m->conf.data_size_limit)) < 0)
		snprintf(why, sizeof(why), "out of memory");
	if (rc < 0) {
		memcache_reader_free(&m->reader);
		free(m);
		return mx_errf(err, errlen, rc, "%s: %s: %s", d->name, d->spec, why);
	}
	if (m->conf.backup[0]) {
		rc = svc_dict_open(m->conf.backup, d->name, &m->backup, why, sizeof(why));
		if (rc == 0 && m->backup->kind != SVC_DICT_LMDB) {
			svc_dict_close(m->backup);
			rc = -EINVAL;
			snprintf(why, sizeof(why), "backup %.200s: the backup must be a local "
				 "table (lmdb:, btree:, hash:)", m->conf.backup);
		}
		if (rc < 0) {
			memcache_reader_free(&m->reader);
			free(m);
			return mx_errf(err, errlen, rc, "%s: %s: %s", d->name, d->spec, why);
		}
	}
	d->mc = m;
	return 0;
}

void svc_dict_mc_close(struct svc_dict *d)
{
	struct svc_dict_mc *m = d->mc;
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	svc_dict_close(m->backup);
	memcache_reader_free(&m->reader);
	free(m);
	d->mc = NULL;
}

/* ---- the connection ---- */

int svc_dict_mc_wait(int fd, short events, uint64_t until)
{
	for (;;) {
		uint64_t now = mx_clock_monotonic_ms();
		if (now >= until)
			return -ETIMEDOUT;
		uint64_t left = until - now;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

/* One address, non-blocking, by until. The socket, or -errno. */
static int svc_dict_mc_connect_one(const struct sockaddr *sa, socklen_t len, uint64_t until)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len) == 0)
		return fd;
	int rc = -errno;
	if (rc == -EINPROGRESS) {
		rc = svc_dict_mc_wait(fd, POLLOUT, until);
		if (rc == 0) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				rc = -errno;
			else if (soerr)
				rc = -soerr;
			else
				return fd;
		}
	}
	close(fd);
	return rc;
}

/* Open the connection: every address of the server in turn (as Postfix's inet_connect()).
 * 0 or -errno (of the last address tried). */
int svc_dict_mc_send_all(int fd, const char *p, size_t n, uint64_t until)
{
	size_t off = 0;
	while (off < n) {
		ssize_t k = send(fd, p + off, n - off, MSG_NOSIGNAL);
		if (k > 0) {
			off += (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int rc = svc_dict_mc_wait(fd, POLLOUT, until);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int svc_dict_mc_dial(const struct svc_policy_target *target, uint64_t until)
{
	struct svc_policy_addrs addrs = target->addrs;
	if (!target->numeric) {
		/* no AI_ADDRCONFIG: it hides localhost on a host with loopback only */
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
		struct addrinfo *res = NULL;
		int g = getaddrinfo(target->host, target->port, &hints, &res);
		if (g != 0)
			return g == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
		addrs.n = 0;
		for (struct addrinfo *a = res; a && addrs.n < SVC_POLICY_ADDRS_MAX; a = a->ai_next) {
			if (a->ai_addrlen > sizeof(addrs.addr[0]))
				continue;
			memcpy(&addrs.addr[addrs.n], a->ai_addr, a->ai_addrlen);
			addrs.len[addrs.n++] = a->ai_addrlen;
		}
		freeaddrinfo(res);
	}
	int rc = -EADDRNOTAVAIL;
	for (unsigned i = 0; i < addrs.n; i++) {
		rc = svc_dict_mc_connect_one((const struct sockaddr *)&addrs.addr[i], addrs.len[i],
					     until);
		if (rc >= 0)
			return rc;
	}
	return rc;
}

static int svc_dict_mc_connect(struct svc_dict_mc *m, uint64_t until)
{
	int fd = svc_dict_mc_dial(&m->target, until);
	if (fd < 0)
		return fd;
	m->fd = fd;
	m->reused = false;
	return 0;
}

static void svc_dict_mc_disconnect(struct svc_dict_mc *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

/* Send n bytes of m->cmd and read the reply to cmd into m->reader, by until. 0, or -errno
 * (*any: whether a byte of the reply came). */
static int svc_dict_mc_exchange(struct svc_dict_mc *m, size_t n, enum memcache_cmd cmd,
				uint64_t until, bool *any)
{
	*any = false;
	int sent = svc_dict_mc_send_all(m->fd, m->cmd, n, until);
	if (sent < 0)
		return sent;
	memcache_reader_start(&m->reader, cmd);
	char in[2048];
	for (;;) {
		ssize_t k = recv(m->fd, in, sizeof(in), 0);
		if (k == 0)
			return -ECONNRESET; /* closed before the reply ended */
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			int rc = svc_dict_mc_wait(m->fd, POLLIN, until);
			if (rc < 0)
				return rc;
			continue;
		}
		*any = true;
		size_t used;
		int rc = memcache_reader_feed(&m->reader, in, (size_t)k, &used);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			/* memcached never speaks unasked: bytes after the reply mean the stream
			 * is out of step; the reply stands, the connection goes */
			if (used < (size_t)k)
				svc_dict_mc_disconnect(m);
			return 0;
		}
	}
}

static void svc_dict_mc_mark_down(struct svc_dict *d, int rc, uint64_t now)
{
	struct svc_dict_mc *m = d->mc;
	svc_dict_mc_disconnect(m);
	m->retry_at = now + (uint64_t)m->conf.retry_pause * 1000u;
	m->down_rc = rc;
	if (m->down)
		return;
	m->down = true;
	if (m->backup)
		mx_log(MX_LOG_WARNING, "%s: %s: memcache server %s unavailable (%s): going on "
		       "with the backup %s until it is back", d->name, d->spec,
		       m->target.name, strerror(-rc), m->conf.backup);
	else
		mx_log(MX_LOG_WARNING, "%s: %s: memcache server %s unavailable (%s): no backup, "
		       "requests fail until it is back", d->name, d->spec, m->target.name,
		       strerror(-rc));
}

/* Run the command in m->cmd (n bytes) whose reply is cmd's: 0 with the reply in
 * m->reader.reply, or a negative errno (memcached unreachable or failing). */
static int svc_dict_mc_command(struct svc_dict *d, size_t n, enum memcache_cmd cmd,
			       uint64_t deadline_ms)
{
	struct svc_dict_mc *m = d->mc;
	uint64_t now = mx_clock_monotonic_ms();
	if (m->down && m->fd < 0 && now < m->retry_at)
		return m->down_rc; /* not before retry_pause */
	int rc = -ETIMEDOUT;
	bool stale_retried = false;
	for (unsigned tries = 0; tries < m->conf.max_try;) {
		now = mx_clock_monotonic_ms();
		if (now >= deadline_ms && tries == 0 && !stale_retried)
			return -ETIMEDOUT; /* no time for a try: says nothing about the server */
		if (now >= deadline_ms) {
			rc = -ETIMEDOUT;
			break;
		}
		uint64_t until = now + (uint64_t)m->conf.timeout * 1000u;
		if (until > deadline_ms)
			until = deadline_ms;
		if (m->fd < 0) {
			rc = svc_dict_mc_connect(m, until);
			if (rc < 0) {
				/* memcache_table(5): no retry when no connection is accepted */
				svc_dict_mc_mark_down(d, rc, mx_clock_monotonic_ms());
				return rc;
			}
		}
		bool reused = m->reused, any;
		rc = svc_dict_mc_exchange(m, n, cmd, until, &any);
		if (rc == 0) {
			if (m->fd >= 0)
				m->reused = true;
			if (m->down) {
				m->down = false;
				mx_log(MX_LOG_INFO, "%s: %s: memcache server %s is back", d->name,
				       d->spec, m->target.name);
			}
			return 0;
		}
		svc_dict_mc_disconnect(m);
		if (reused && !any && !stale_retried &&
		    (rc == -ECONNRESET || rc == -EPIPE)) {
			stale_retried = true; /* closed while idle: once more, at once */
			continue;
		}
		tries++;
		if (tries < m->conf.max_try) {
			uint64_t pause = (uint64_t)m->conf.retry_pause * 1000u;
			now = mx_clock_monotonic_ms();
			if (now + pause >= deadline_ms)
				break;
			struct timespec ts = { .tv_sec = (time_t)(pause / 1000),
					       .tv_nsec = (long)(pause % 1000) * 1000000L };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
	}
	svc_dict_mc_mark_down(d, rc, mx_clock_monotonic_ms());
	return rc;
}

/* A reply memcached should not have given to a command that worked: a warning (at most
 * once a minute) and -EIO. */
static int svc_dict_mc_unexpected(struct svc_dict *d, const char *op)
{
	struct svc_dict_mc *m = d->mc;
	uint64_t now = mx_clock_monotonic_ms();
	if (!m->warned || now - m->warned_at >= SVC_DICT_MC_WARN_INTERVAL_MS) {
		m->warned = true;
		m->warned_at = now;
		const struct memcache_reply *r = &m->reader.reply;
		mx_log(MX_LOG_WARNING, "%s: %s: %s failed: memcache server %s said %s%s%.60s",
		       d->name, d->spec, op, m->target.name, memcache_reply_kind_name(r->kind),
		       r->message[0] ? " " : "", r->message);
	}
	return -EIO;
}

/* The exptime of an entry of ttl_s seconds (0: never): memcache_table(5)'s ttl is the
 * longest an entry stays in memcached (0: no limit); over 30 days, memcached wants an
 * absolute time. */
static uint32_t svc_dict_mc_exptime(const struct memcache_conf *c, uint32_t ttl_s,
				    uint64_t now_ms)
{
	uint64_t t = ttl_s;
	if (c->ttl && (t == 0 || t > c->ttl))
		t = c->ttl;
	if (t > MEMCACHE_RELATIVE_MAX)
		t += now_ms / 1000u;
	return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

/* set in memcached (m->key made already): 0 or a negative errno. */
static int svc_dict_mc_set(struct svc_dict *d, size_t kl, const char *val, size_t len,
			   uint32_t ttl_s, uint64_t now_ms, uint64_t deadline_ms)
{
	struct svc_dict_mc *m = d->mc;
	if (len > m->conf.data_size_limit) {
		mx_log(MX_LOG_WARNING, "%s: %s: data for key %s is too long (data_size_limit=%u) "
		       "-- not stored in memcache", d->name, d->spec, m->key,
		       m->conf.data_size_limit);
		return -EMSGSIZE;
	}
	long n = memcache_encode_store(m->cmd, sizeof(m->cmd), MEMCACHE_SET, m->key, kl,
				       m->conf.flags, svc_dict_mc_exptime(&m->conf, ttl_s, now_ms),
				       val, len);
	if (n < 0)
		return (int)n;
	int rc = svc_dict_mc_command(d, (size_t)n, MEMCACHE_SET, deadline_ms);
	if (rc < 0)
		return rc;
	if (m->reader.reply.kind != MEMCACHE_REPLY_STORED)
		return svc_dict_mc_unexpected(d, "update");
	return 0;
}

int svc_dict_mc_get(struct svc_dict *d, const char *key, char *val, size_t cap, size_t *len,
		    uint64_t now_ms, uint64_t deadline_ms)
{
	struct svc_dict_mc *m = d->mc;
	*len = 0;
	long kl = memcache_conf_key(&m->conf, key, m->key, sizeof(m->key));
	if (kl <= 0)
		return kl == 0 ? -ENOENT : (int)kl; /* skipped silently, as Postfix */
	long n = memcache_encode_get(m->cmd, sizeof(m->cmd), m->key, (size_t)kl);
	int rc = n < 0 ? (int)n : svc_dict_mc_command(d, (size_t)n, MEMCACHE_GET, deadline_ms);
	if (rc == 0) {
		const struct memcache_reply *r = &m->reader.reply;
		if (r->kind == MEMCACHE_REPLY_VALUE && strcmp(r->key, m->key) == 0) {
			*len = r->data_len;
			if (r->data_len > cap)
				return -ENOBUFS;
			memcpy(val, r->data, r->data_len);
			return 0;
		}
		if (r->kind == MEMCACHE_REPLY_END) {
			rc = -ENOENT;
		} else if (r->kind == MEMCACHE_REPLY_VALUE) {
			svc_dict_mc_disconnect(m); /* another key: out of step */
			rc = -EPROTO;
		} else {
			rc = svc_dict_mc_unexpected(d, "lookup");
		}
	}
	if (!m->backup)
		return rc;
	uint64_t expires;
	int brc = svc_dict_lmdb_get(m->backup->lmdb, key, val, cap, len, &expires, now_ms);
	if (brc == 0 && !m->down) {
		/* memcache_table(5): the memcache is updated when the backup has it */
		uint32_t ttl_s = 0;
		if (expires)
			ttl_s = (uint32_t)((expires - now_ms + 999) / 1000);
		svc_dict_mc_set(d, (size_t)kl, val, *len, ttl_s, now_ms, deadline_ms);
	}
	return brc;
}

int svc_dict_mc_put(struct svc_dict *d, const char *key, const char *val, size_t len,
		    uint32_t ttl_s, uint64_t now_ms, uint64_t deadline_ms)
{
	struct svc_dict_mc *m = d->mc;
	long kl = memcache_conf_key(&m->conf, key, m->key, sizeof(m->key));
	if (kl < 0)
		return (int)kl;
	if (kl == 0) {
		/* Postfix: "skipping update for name ...", and not in the backup either */
		mx_log(MX_LOG_WARNING, "%s: %s: skipping update for name \"%s\": the key does not "
		       "fit key_format, domain, or memcached's key syntax", d->name, d->spec, key);
		return -EINVAL;
	}
	int rc = svc_dict_mc_set(d, (size_t)kl, val, len, ttl_s, now_ms, deadline_ms);
	if (m->backup)
		rc = svc_dict_lmdb_put(m->backup->lmdb, key, val, len,
				       svc_dict_expiry(now_ms, ttl_s));
	return rc;
}

int svc_dict_mc_del(struct svc_dict *d, const char *key, uint64_t now_ms, uint64_t deadline_ms)
{
	struct svc_dict_mc *m = d->mc;
	(void)now_ms;
	long kl = memcache_conf_key(&m->conf, key, m->key, sizeof(m->key));
	if (kl < 0)
		return (int)kl;
	if (kl == 0)
		return 0; /* nothing can be stored under it */
	long n = memcache_encode_delete(m->cmd, sizeof(m->cmd), m->key, (size_t)kl);
	int rc = n < 0 ? (int)n : svc_dict_mc_command(d, (size_t)n, MEMCACHE_DELETE, deadline_ms);
	if (rc == 0 && m->reader.reply.kind != MEMCACHE_REPLY_DELETED &&
	    m->reader.reply.kind != MEMCACHE_REPLY_NOT_FOUND)
		rc = svc_dict_mc_unexpected(d, "delete");
	if (m->backup)
		rc = svc_dict_lmdb_del(m->backup->lmdb, key);
	return rc;
}

long svc_dict_mc_sweep(struct svc_dict *d, uint64_t now_ms, unsigned max)
{
	struct svc_dict_mc *m = d->mc;
	return m->backup ? svc_dict_lmdb_sweep(m->backup->lmdb, now_ms, max) : 0;
}
