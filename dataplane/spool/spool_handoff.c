/* The hand-off between the workers and the spool's writer thread, both ways, without a
 * lock or a condition variable per message.
 *
 * Workers to writer. Every client (one per worker thread, spool_client_new()) has its own
 * list of ops, a lock-free stack: the worker pushes an op with one compare-and-swap on the
 * client's `ops` (retried only when the writer's take came in between, or spuriously), the writer
 * takes the whole stack with one exchange and reverses it, so the ops of each client, and
 * therefore of each message (its fragments in offset order, then its commit or abort), reach
 * spool_process() in the order they were queued. Ops that belong to no message (relay
 * records, relocations, the queue tool's records) come from several threads through the
 * spool's own stack `s->ops`, the same structure, equally lock-free. The lists cost no
 * memory of their own: an op is linked through its `next` field, and ops are bounded by the
 * worker's back-pressure rule (spool_writer.h: two fragments in flight per message).
 *
 * Waking the writer. The writer sleeps on a futex, `s->sleeping`, and a producer makes a
 * system call only when it finds the writer asleep, so under load (the writer busy with a
 * batch, or the sync) queueing an op is a compare-and-swap and one load. A wake-up is never
 * lost (the Dekker pattern, every access sequentially consistent):
 *
 *   writer (spool_writer_sleep)            producer (push, then spool_wake)
 *   W1 sleeping = 1                        P1 push op (CAS on a list head)
 *   W2 look at every list head and stop    P2 read sleeping; if 1 and exchanging it
 *   W3 none: futex_wait(sleeping, 1)          for 0 returns 1: futex_wake
 *
 * In the single total order of these accesses either W2 comes after P1 (the writer sees
 * the op and does not block) or P2 comes after W1 (the producer sees 1: it clears it and
 * wakes the writer; if the writer has not reached futex_wait yet, the kernel compares the
 * word with 1 and does not block it). A list or a client added after the writer's W2
 * falls under the same argument: client registration is a sequentially consistent store
 * that the writer's walk reads. The group-commit delay is the futex wait's timeout.
 *
 * Writer to workers. Results and "room for the next fragment" reach a worker through its
 * client's news list, the same kind of stack with the writer pushing messages and the
 * worker taking all of them (spool_client_poll(), or spool_client_pending() from a poll
 * loop); the writer writes the client's eventfd only when the list was empty, since the
 * worker takes the whole list after every wake-up. A message is on the list at most once
 * (m->news_queued, an atomic flag the writer sets by exchange before linking it and the
 * worker clears by exchange after reading its link). */
#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_internal.h"

/* ---- the op lists ---- */

static void spool_ops_push(struct spool_op **head, struct spool_op *op)
{
	struct spool_op *h = __atomic_load_n(head, __ATOMIC_RELAXED);
	do
		op->next = h;
	while (!__atomic_compare_exchange_n(head, &h, op, true, __ATOMIC_SEQ_CST,
					    __ATOMIC_RELAXED));
}

/* Take a whole list, oldest first; *last its last op. NULL when empty. */
static struct spool_op *spool_ops_take(struct spool_op **head, struct spool_op **last)
{
	/* most lists are empty most of the time: a load, not an exchange, finds that */
	if (!__atomic_load_n(head, __ATOMIC_RELAXED))
		return NULL;
	struct spool_op *l = __atomic_exchange_n(head, NULL, __ATOMIC_ACQUIRE), *r = NULL;
	*last = l;
	while (l) {
		struct spool_op *next = l->next;
		l->next = r;
		r = l;
		l = next;
	}
	return r;
}

static void spool_futex_wait(uint32_t *word, uint32_t val, uint64_t timeout_us)
{
	struct timespec ts, *tp = NULL;
	if (timeout_us) {
		ts.tv_sec = (time_t)(timeout_us / 1000000u);
		ts.tv_nsec = (long)(timeout_us % 1000000u) * 1000;
		tp = &ts;
	}
	/* EAGAIN (the word changed), EINTR, ETIMEDOUT: the caller looks again either way */
	(void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, tp, NULL, 0);
}

/* After a push or the stop flag: wake the writer if it sleeps (P2 above). */
static void spool_wake(struct spool *s)
{
	if (__atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&s->sleeping, 0, __ATOMIC_SEQ_CST)) {
		(void)syscall(SYS_futex, &s->sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		atomic_fetch_add_explicit(&s->wakeups, 1, memory_order_relaxed);
	}
}

void spool_enqueue(struct spool *s, struct spool_op *op)
{
	spool_ops_push(&s->ops, op);
	spool_wake(s);
}

void spool_client_enqueue(struct spool_client *c, struct spool_op *op)
{
	spool_ops_push(&c->ops, op);
	spool_wake(c->s);
}

static struct spool_client *spool_clients(struct spool *s)
{
	return __atomic_load_n(&s->clients, __ATOMIC_SEQ_CST);
}

struct spool_op *spool_take(struct spool *s)
{
	struct spool_op *head = NULL, **tail = &head, *last = NULL;
	/* Clients are only added while the writer runs (spool_client_free() comes after
	 * spool_stop()), at the head: a client's `next` never changes under this walk. */
	for (struct spool_client *c = spool_clients(s); c; c = c->next) {
		struct spool_op *l = spool_ops_take(&c->ops, &last);
		if (l) {
			*tail = l;
			tail = &last->next;
		}
	}
	struct spool_op *l = spool_ops_take(&s->ops, &last);
	if (l)
		*tail = l;
	return head;
}

/* W2: anything queued, or a stop? Sequentially consistent loads (see the top). */
static bool spool_work_pending(struct spool *s)
{
	if (__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST) ||
	    __atomic_load_n(&s->ops, __ATOMIC_SEQ_CST))
		return true;
	for (struct spool_client *c = spool_clients(s); c; c = c->next)
		if (__atomic_load_n(&c->ops, __ATOMIC_SEQ_CST))
			return true;
	return false;
}

void spool_writer_sleep(struct spool *s, uint64_t timeout_us)
{
	__atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST); /* W1 */
	if (!spool_work_pending(s)) {                       /* W2 */
		atomic_fetch_add_explicit(&s->sleeps, 1, memory_order_relaxed);
		spool_futex_wait(&s->sleeping, 1, timeout_us); /* W3 */
	}
	/* Awake (woken, timed out, or never slept): producers need not wake us. A producer
	 * that read 1 just before this store makes one futex_wake nobody waits for. */
	__atomic_store_n(&s->sleeping, 0, __ATOMIC_SEQ_CST);
}

void spool_handoff_stop(struct spool *s)
{
	__atomic_store_n(&s->stop, true, __ATOMIC_SEQ_CST);
	spool_wake(s);
}

bool spool_stopping(struct spool *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_SEQ_CST);
}

void spool_handoff_init(struct spool *s)
{
	s->ops = NULL;
	s->sleeping = 0;
	s->stop = false;
	s->clients = NULL;
	pthread_mutex_init(&s->clients_mu, NULL);
	atomic_init(&s->wakeups, 0);
	atomic_init(&s->sleeps, 0);
}

static void spool_client_destroy(struct spool_client *c);

void spool_handoff_fini(struct spool *s)
{
	/* Clients freed while the writer ran are still listed; every other one must have
	 * been freed first (spool_close()). Ops for the writer after the last spool_stop()
	 * would never be done. */
	while (s->clients) {
		struct spool_client *c = s->clients;
		assert(__atomic_load_n(&c->retired, __ATOMIC_ACQUIRE));
		s->clients = c->next;
		spool_client_destroy(c);
	}
	assert(!s->ops);
	pthread_mutex_destroy(&s->clients_mu);
}

/* ---- news for the workers ---- */

void spool_notify(struct spool_msg *m)
{
	struct spool_client *c = m->client;
	/* Already on the list: the worker has not taken it yet and will see this news too.
	 * acq_rel: the worker's exchange that clears the flag reads this one, so it sees
	 * what the writer stored before (the result); and when the flag was clear, the
	 * worker's reading of news_next happened before the store below. */
	if (atomic_exchange_explicit(&m->news_queued, true, memory_order_acq_rel))
		return;
	spool_msg_get(m); /* the list's reference */
	struct spool_msg *h = __atomic_load_n(&c->news, __ATOMIC_RELAXED);
	do
		m->news_next = h;
	while (!__atomic_compare_exchange_n(&c->news, &h, m, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED));
	/* The worker takes the whole list after each wake-up: only the first news after
	 * a take needs one. EAGAIN (the counter is full) means it is already readable. */
	if (!h && c->wake_fd >= 0 && !__atomic_load_n(&c->retired, __ATOMIC_ACQUIRE))
		(void)eventfd_write(c->wake_fd, 1);
}

struct spool_client *spool_client_new(struct spool *s, int wake_fd)
{
	struct spool_client *c = aligned_alloc(_Alignof(struct spool_client), sizeof(*c));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->wake_fd = wake_fd;
	pthread_mutex_lock(&s->clients_mu);
	c->next = s->clients;
	/* seq_cst: see "A list or a client added after" at the top */
	__atomic_store_n(&s->clients, c, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&s->clients_mu);
	return c;
}

bool spool_client_pending(const struct spool_client *c)
{
	return __atomic_load_n(&c->news, __ATOMIC_ACQUIRE) != NULL;
}

void spool_client_poll(struct spool_client *c, void (*fn)(void *owner, void *arg), void *arg)
{
	if (!spool_client_pending(c))
		return;
	struct spool_msg *m = __atomic_exchange_n(&c->news, NULL, __ATOMIC_ACQUIRE), *next;
	for (; m; m = next) {
		/* the link first: once the flag is clear the writer may link m again */
		next = m->news_next;
		atomic_exchange_explicit(&m->news_queued, false, memory_order_acq_rel);
		if (m->owner)
			fn(m->owner, arg);
		spool_msg_put(m);
	}
}

/* Drop what is still queued on c (its owner and the writer are gone) and free it. */
static void spool_client_destroy(struct spool_client *c)
{
	/* Ops queued after the writer's last look (a message released while spool_stop()
	 * ran): nobody will write them; the messages lose the references they held. */
	struct spool_op *last, *op = spool_ops_take(&c->ops, &last), *next;
	for (; op; op = next) {
		next = op->next;
		struct spool_msg *m = op->m;
		free(op);
		if (m)
			spool_msg_put(m);
	}
	struct spool_msg *m = __atomic_exchange_n(&c->news, NULL, __ATOMIC_ACQUIRE), *mn;
	for (; m; m = mn) {
		mn = m->news_next;
		spool_msg_put(m);
	}
	free(c);
}

void spool_client_free(struct spool_client *c)
{
	if (!c)
		return;
	struct spool *s = c->s;
	if (s->started) {
		/* The writer walks the client list without a lock, so c stays in it while the
		 * writer runs (a transport that failed to start frees its workers' clients
		 * with the spool up): retired, no more eventfd writes, its queued ops still
		 * done; spool_close() frees it. */
		__atomic_store_n(&c->retired, true, __ATOMIC_RELEASE);
		return;
	}
	pthread_mutex_lock(&s->clients_mu);
	struct spool_client **pp = &s->clients;
	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	pthread_mutex_unlock(&s->clients_mu);
	spool_client_destroy(c);
}
