/* The kernel transport's listeners. Every worker has its own SO_REUSEPORT socket for every
 * address a published generation's services listen on; a worker makes its set match the
 * generations at the start of each iteration (cheap when nothing changed), so a reload
 * that adds a service opens its listeners and one that drops a service closes them,
 * without a restart. Before a generation is published, kt_listeners_check() proves that
 * its new addresses can be bound. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "dataplane/kernel/kernel_internal.h"
#include "mgmt/log.h"
#include "mxgate/errf.h"

/* "0.0.0.0", "::", "[::1]" and a port into a sockaddr. */
static int kt_sockaddr(const struct mx_listen_addr *la, struct sockaddr_storage *ss,
		       socklen_t *len, char *name, size_t namelen)
{
	char host[sizeof(la->host)];
	snprintf(host, sizeof(host), "%s", la->host);
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(la->port);
		*len = sizeof(*sin);
		snprintf(name, namelen, "%s:%u", host, (unsigned)la->port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(la->port);
		*len = sizeof(*sin6);
		snprintf(name, namelen, "[%s]:%u", host, (unsigned)la->port);
		return 0;
	}
	return -EINVAL;
}

static int kt_listen_socket(const struct sockaddr_storage *ss, socklen_t len, bool reuseport,
			    int *out)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    /* a v6 socket takes v6 only; "0.0.0.0" is listed separately when wanted */
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) != 0 ||
	    (reuseport && listen(fd, KT_LISTEN_BACKLOG) != 0)) {
		int e = -errno;
		close(fd);
		return e;
	}
	*out = fd;
	return 0;
}


static bool kt_same_addr(const struct sockaddr_storage *a, socklen_t al,
			 const struct sockaddr_storage *b, socklen_t bl)
{
	return al == bl && memcmp(a, b, al) == 0;
}

/* The listener of w on ss, or NULL. */
static struct kt_listener *kt_listener_find(struct kt_worker *w,
					    const struct sockaddr_storage *ss, socklen_t sl)
{
	for (struct kt_listener *l = w->listeners; l; l = l->next)
		if (kt_same_addr(&l->ss, l->sl, ss, sl))
			return l;
	return NULL;
}

/* Make sure w listens on la: mark the listener wanted, opening it when new. */
static int kt_listener_want(struct kt_worker *w, const struct mx_listen_addr *la, char *err,
			    size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char name[80];
	if (kt_sockaddr(la, &ss, &sl, name, sizeof(name)) < 0)
		return mx_errf(err, errlen, -EINVAL, "'%s' is not a numeric IPv4 or IPv6 address",
			       la->host);
	struct kt_listener *l = kt_listener_find(w, &ss, sl);
	if (l) {
		l->wanted = true;
		return 0;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	l->h.kind = KT_LISTENER;
	l->ss = ss;
	l->sl = sl;
	l->port = la->port;
	snprintf(l->name, sizeof(l->name), "%s", name);
	char host[sizeof(la->host)];
	snprintf(host, sizeof(host), "%s", la->host);
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	mx_inet_parse(host, &l->addr);
	int rc = kt_listen_socket(&ss, sl, true, &l->fd);
	if (rc < 0) {
		free(l);
		return mx_errf(err, errlen, rc, "bind %s: %s", name, strerror(-rc));
	}
	/* level-triggered: a backlog left after a burst fires again */
	struct epoll_event ev = { .events = w->accept_paused ? 0 : EPOLLIN, .data.ptr = &l->h };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev) != 0) {
		rc = -errno;
		close(l->fd);
		free(l);
		return mx_errf(err, errlen, rc, "epoll_ctl: %s", strerror(-rc));
	}
	l->wanted = true;
	l->next = w->listeners;
	w->listeners = l;
	return 0;
}

static int kt_listeners_want_gen(struct kt_worker *w, const struct mx_generation *g, char *err,
				 size_t errlen)
{
	int first = 0;
	for (unsigned i = 0; g && i < g->nservices; i++) {
		for (unsigned j = 0; j < g->services[i].nlisten; j++) {
			int rc = kt_listener_want(w, &g->services[i].listen[j], err, errlen);
			if (rc < 0 && first == 0)
				first = rc;
		}
	}
	return first;
}

int kt_listeners_reconcile(struct kt_worker *w, char *err, size_t errlen)
{
	if (w->listeners_closed)
		return 0;
	const struct mx_gen_pub *pub = w->kt->p.gens;
	struct mx_generation *cur = atomic_load_explicit(&pub->current, memory_order_acquire);
	struct mx_generation *can = atomic_load_explicit(&pub->canary, memory_order_acquire);
	uint64_t cur_id = cur ? cur->id : 0, can_id = can ? can->id : 0;
	if (cur_id == w->listen_cur && can_id == w->listen_can)
		return 0;
	for (struct kt_listener *l = w->listeners; l; l = l->next)
		l->wanted = false;
	int rc = kt_listeners_want_gen(w, cur, err, errlen);
	int rc2 = kt_listeners_want_gen(w, can, err, errlen);
	if (rc == 0)
		rc = rc2;
	/* what no published generation listens on any more: closed (a connection still
	 * waiting in its backlog is reset; the established ones are not touched) */
	for (struct kt_listener **pl = &w->listeners; *pl;) {
		struct kt_listener *l = *pl;
		if (l->wanted) {
			pl = &l->next;
			continue;
		}
		*pl = l->next;
		close(l->fd);
		if (w->index == 0)
			mx_log(MX_LOG_INFO, "listener %s closed: no service listens there now",
			       l->name);
		free(l);
	}
	w->listen_cur = cur_id;
	w->listen_can = can_id;
	return rc;
}

void kt_listeners_close(struct kt_worker *w)
{
	while (w->listeners) {
		struct kt_listener *l = w->listeners;
		w->listeners = l->next;
		close(l->fd);
		free(l);
	}
	w->listeners_closed = true;
}

void kt_listeners_pause(struct kt_worker *w, bool pause)
{
	for (struct kt_listener *l = w->listeners; l; l = l->next) {
		struct epoll_event ev = { .events = pause ? 0 : EPOLLIN, .data.ptr = &l->h };
		epoll_ctl(w->epfd, EPOLL_CTL_MOD, l->fd, &ev);
	}
}

/* Does a service of g listen on ss? */
static bool kt_gen_listens(const struct mx_generation *g, const struct sockaddr_storage *ss,
			   socklen_t sl)
{
	for (unsigned i = 0; g && i < g->nservices; i++) {
		for (unsigned j = 0; j < g->services[i].nlisten; j++) {
			struct sockaddr_storage o;
			socklen_t ol;
			char name[80];
			if (kt_sockaddr(&g->services[i].listen[j], &o, &ol, name, sizeof(name)) == 0 &&
			    kt_same_addr(&o, ol, ss, sl))
				return true;
		}
	}
	return false;
}

int kt_listeners_check(const struct kernel_transport *kt, const struct mx_generation *g,
		       char *err, size_t errlen)
{
	/* the addresses this gateway holds are those of the generations published now (the
	 * management thread is the only one that publishes, and the one that calls this) */
	const struct mx_generation *held[2] = {
		atomic_load(&kt->p.gens->current), atomic_load(&kt->p.gens->canary)
	};
	for (unsigned i = 0; i < g->nservices; i++) {
		const struct mx_service *svc = &g->services[i];
		if (svc->nlisten == 0)
			return mx_errf(err, errlen, -EINVAL, "service %s: no address to listen on",
				       svc->name);
		for (unsigned j = 0; j < svc->nlisten; j++) {
			const struct mx_listen_addr *la = &svc->listen[j];
			struct sockaddr_storage ss;
			socklen_t sl;
			char name[80];
			if (kt_sockaddr(la, &ss, &sl, name, sizeof(name)) < 0)
				return mx_errf(err, errlen, -EINVAL,
					       "service %s: '%s' is not a numeric IPv4 or IPv6 "
					       "address",
					       svc->name, la->host);
			if (la->port == 0)
				return mx_errf(err, errlen, -EINVAL, "service %s: %s: port 0",
					       svc->name, name);
			if (kt_gen_listens(held[0], &ss, sl) || kt_gen_listens(held[1], &ss, sl))
				continue;
			/* SO_REUSEPORT would let us share the port with any other process of
			 * this user that also set it (a second gateway, silently taking half
			 * the mail). A plain bind first finds such an owner. */
			int probe, rc = kt_listen_socket(&ss, sl, false, &probe);
			if (rc < 0)
				return mx_errf(err, errlen, rc, "service %s: bind %s: %s", svc->name,
					       name, strerror(-rc));
			close(probe);
		}
	}
	return 0;
}
