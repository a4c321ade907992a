/* The SASL service's directory (svc_sasl.h): the endpoints the service keeps a connection
 * to, and the mechanisms each one offers, published for the workers without a lock.
 *
 * Slots are filled in order under a mutex (main thread, and the service thread for an
 * endpoint a request names first) and counted with a release store; a counted slot's
 * endpoint never changes, so a reader that loaded the count with acquire may read it.
 * Each slot's mechanisms are an atomic pointer to an immutable object. Only the service
 * thread publishes; it keeps every object it published in the slot's `kept` array and
 * reuses an identical one (Dovecot going down and up again publishes NULL, then the same
 * list, without an allocation), so objects are bounded per endpoint. */
#include "dataplane/svc/svc_sasl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc_policy_internal.h"
#include "dataplane/svc/svc_sasl_internal.h"

struct svc_sasl_mechs {
	size_t n;
	struct smtp_dovecot_mech m[SMTP_DOVECOT_MECH_MAX];
	uint64_t retired_at; /* when it stopped being published (0: published, or never) */
};

struct svc_sasl_slot {
	char endpoint[SVC_ENDPOINT_MAX];
	_Atomic(struct svc_sasl_mechs *) mechs;        /* NULL: not known */
	struct svc_sasl_mechs *kept[SVC_SASL_MECH_VERSIONS]; /* the service thread's */
	unsigned nkept;
};

struct svc_sasl_directory {
	pthread_mutex_t lock; /* writers of slots (want) */
	atomic_uint n;
	int wake_fd;
	struct svc_sasl_slot slot[SVC_SASL_ENDPOINTS_MAX];
};

struct svc_sasl_directory *svc_sasl_directory_new(void)
{
	struct svc_sasl_directory *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->wake_fd < 0 || pthread_mutex_init(&d->lock, NULL) != 0) {
		if (d->wake_fd >= 0)
			close(d->wake_fd);
		free(d);
		return NULL;
	}
	atomic_init(&d->n, 0);
	for (unsigned i = 0; i < SVC_SASL_ENDPOINTS_MAX; i++)
		atomic_init(&d->slot[i].mechs, NULL);
	return d;
}

void svc_sasl_directory_free(struct svc_sasl_directory *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < SVC_SASL_ENDPOINTS_MAX; i++)
		for (unsigned k = 0; k < d->slot[i].nkept; k++)
			free(d->slot[i].kept[k]);
	pthread_mutex_destroy(&d->lock);
	close(d->wake_fd);
	free(d);
}

int svc_sasl_directory_wake_fd(const struct svc_sasl_directory *d)
{
	return d->wake_fd;
}

unsigned svc_sasl_directory_count(const struct svc_sasl_directory *d)
{
	return atomic_load_explicit(&d->n, memory_order_acquire);
}

const char *svc_sasl_directory_endpoint(const struct svc_sasl_directory *d, unsigned i)
{
	return d->slot[i].endpoint;
}

int svc_sasl_directory_find(const struct svc_sasl_directory *d, const char *endpoint)
{
	unsigned n = svc_sasl_directory_count(d);
	for (unsigned i = 0; i < n; i++)
		if (strcmp(d->slot[i].endpoint, endpoint) == 0)
			return (int)i;
	return -1;
}

int svc_sasl_directory_want(struct svc_sasl_directory *d, const char *endpoint)
{
	if (!endpoint || strnlen(endpoint, SVC_ENDPOINT_MAX) >= SVC_ENDPOINT_MAX)
		return -EINVAL;
	struct svc_policy_target t;
	char err[256];
	if (svc_policy_target_parse(endpoint, &t, err, sizeof(err)) < 0)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	int rc = 0;
	unsigned n = atomic_load_explicit(&d->n, memory_order_relaxed);
	if (svc_sasl_directory_find(d, endpoint) >= 0) {
		rc = 0;
	} else if (n >= SVC_SASL_ENDPOINTS_MAX) {
		rc = -ENOSPC;
	} else {
		snprintf(d->slot[n].endpoint, sizeof(d->slot[n].endpoint), "%s", endpoint);
		atomic_store_explicit(&d->n, n + 1, memory_order_release);
		eventfd_write(d->wake_fd, 1);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

size_t svc_sasl_mech_list(const struct svc_sasl_directory *d, const char *endpoint,
			  unsigned sec_opts, char *out, size_t cap)
{
	if (cap)
		out[0] = '\0';
	if (!d || !endpoint || cap == 0)
		return 0;
	int i = svc_sasl_directory_find(d, endpoint);
	if (i < 0)
		return 0;
	const struct svc_sasl_mechs *m =
		atomic_load_explicit(&d->slot[i].mechs, memory_order_acquire);
	if (!m)
		return 0;
	size_t len = 0;
	for (size_t k = 0; k < m->n; k++) {
		if (!smtp_dovecot_mech_allowed(&m->m[k], sec_opts))
			continue;
		size_t nl = strlen(m->m[k].name);
		if (len + (len ? 1 : 0) + nl + 1 > cap) {
			out[0] = '\0';
			return 0;
		}
		if (len)
			out[len++] = ' ';
		memcpy(out + len, m->m[k].name, nl);
		len += nl;
		out[len] = '\0';
	}
	return len;
}

static bool svc_sasl_mechs_equal(const struct svc_sasl_mechs *a, const struct svc_sasl_mechs *b)
{
	if (a->n != b->n)
		return false;
	for (size_t k = 0; k < a->n; k++)
		if (a->m[k].flags != b->m[k].flags || strcmp(a->m[k].name, b->m[k].name) != 0)
			return false;
	return true;
}

static void svc_sasl_slot_store(struct svc_sasl_slot *s, struct svc_sasl_mechs *m, uint64_t now)
{
	struct svc_sasl_mechs *old = atomic_load_explicit(&s->mechs, memory_order_relaxed);
	if (old == m)
		return;
	if (old)
		old->retired_at = now ? now : 1;
	if (m)
		m->retired_at = 0;
	atomic_store_explicit(&s->mechs, m, memory_order_release);
}

bool svc_sasl_directory_publish(struct svc_sasl_directory *d, unsigned i,
				const struct smtp_dovecot *codec, uint64_t now_ms)
{
	struct svc_sasl_slot *s = &d->slot[i];
	if (!codec) {
		svc_sasl_slot_store(s, NULL, now_ms);
		return true;
	}
	struct svc_sasl_mechs want = { 0 };
	size_t n = smtp_dovecot_mech_count(codec);
	for (size_t k = 0; k < n && want.n < SMTP_DOVECOT_MECH_MAX; k++)
		want.m[want.n++] = *smtp_dovecot_mech_at(codec, k);
	for (unsigned k = 0; k < s->nkept; k++) {
		if (svc_sasl_mechs_equal(s->kept[k], &want)) {
			svc_sasl_slot_store(s, s->kept[k], now_ms);
			return true;
		}
	}
	/* a new list: a new object, or one retired long enough ago */
	struct svc_sasl_mechs *cur = atomic_load_explicit(&s->mechs, memory_order_relaxed);
	int reuse = -1;
	if (s->nkept >= SVC_SASL_MECH_VERSIONS) {
		for (unsigned k = 0; k < s->nkept; k++) {
			struct svc_sasl_mechs *m = s->kept[k];
			if (m != cur && m->retired_at &&
			    now_ms - m->retired_at >= SVC_SASL_MECH_GRACE_MS) {
				reuse = (int)k;
				break;
			}
		}
		if (reuse < 0) {
			svc_sasl_slot_store(s, NULL, now_ms);
			return false;
		}
		free(s->kept[reuse]);
		s->kept[reuse] = NULL;
	}
	struct svc_sasl_mechs *m = malloc(sizeof(*m));
	if (!m) {
		if (reuse >= 0) {
			s->kept[reuse] = s->kept[--s->nkept];
		}
		svc_sasl_slot_store(s, NULL, now_ms);
		return false;
	}
	*m = want;
	if (reuse >= 0)
		s->kept[reuse] = m;
	else
		s->kept[s->nkept++] = m;
	svc_sasl_slot_store(s, m, now_ms);
	return true;
}
