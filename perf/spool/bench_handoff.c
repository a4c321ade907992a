/* The worker-to-spool hand-off alone: producer threads (workers) stream messages through
 * the spool API to the writer thread, with a file system whose writes are real but whose
 * fdatasync costs a fixed delay (no disk flush), so what is measured is the hand-off and
 * the writer, not the disk.
 *
 *     bench_handoff [-p PRODUCERS] [-m MESSAGES_PER_PRODUCER] [-l SIZE] [-i IN_FLIGHT]
 *                   [-s SYNC_DELAY_US] [-d COMMIT_DELAY_US] [-P] DIR
 *
 * Each producer keeps IN_FLIGHT messages of SIZE bytes in flight (appended in 4 KiB
 * pieces, as a connection feeds them, then committed) and waits for news on an eventfd as
 * the kernel transport's workers do (-P: polls spool_client_pending() as a dpdk poll loop
 * does). It prints one line of key=value: messages/s; the producers' CPU time per message
 * (ns) and TSC cycles per message spent inside the hand-off calls (spool_msg_commit(), the
 * appends that hand over a full fragment, spool_client_poll()); the producers' and the
 * writer's voluntary context switches per message (the times they blocked), and the
 * writer's sleeps and syncs.
 *
 * It uses only the public spool API, so the same source builds against an older spool
 * library for a before/after comparison (perf/results/2026-12-07-spool-handoff.md). */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_writer.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static uint64_t bench_cycles(void)
{
	return __rdtsc();
}
#else
static uint64_t bench_cycles(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

static unsigned sync_delay_us;

static ssize_t bench_write(int fd, const void *p, size_t n)
{
	return write(fd, p, n);
}

static int bench_fdatasync(int fd)
{
	(void)fd;
	if (sync_delay_us)
		usleep(sync_delay_us);
	return 0;
}

static int bench_fsync(int fd)
{
	(void)fd;
	return 0;
}

static const struct spool_io bench_io = { .write = bench_write, .fdatasync = bench_fdatasync,
					  .fsync = bench_fsync };

struct bench_producer {
	struct spool *s;
	unsigned no, nmsg, inflight;
	size_t size;
	bool poll_mode;
	struct spool_client *c;
	uint64_t cpu_ns, handoff_cycles, vol_switches;
	unsigned done, failed;
};

struct bench_slot {
	struct spool_msg *m;
	char id[QUEUE_ID_SIZE];
	size_t sent;
	bool committed;
};

static void bench_news(void *owner, void *arg)
{
	(void)owner;
	(void)arg;
}

static uint64_t bench_thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *bench_producer_main(void *arg)
{
	struct bench_producer *p = arg;
	int efd = p->poll_mode ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->c = spool_client_new(p->s, efd);
	struct queue_id_gen gen;
	queue_id_gen_init(&gen, 1 + p->no, spool_newest_id_us(p->s));
	char piece[4096];
	memset(piece, 'x', sizeof(piece));
	struct bench_slot *slots = calloc(p->inflight, sizeof(*slots));
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	uint64_t cpu0 = bench_thread_cpu_ns();
	unsigned started = 0;
	while (p->done + p->failed < p->nmsg) {
		bool progress = false;
		for (unsigned i = 0; i < p->inflight; i++) {
			struct bench_slot *sl = &slots[i];
			if (!sl->m) {
				if (started == p->nmsg)
					continue;
				started++;
				queue_id_next(&gen, queue_id_clock_us(), sl->id);
				sl->m = spool_msg_new(p->c, sl);
				struct spool_envelope env = {
					.queue_id = sl->id, .arrival = 1, .client_addr = "192.0.2.1",
					.client_port = 25, .client_name = "unknown",
					.helo = mx_span_cstr("h"), .protocol = "ESMTP",
					.sender = mx_span_cstr("s@example.org"),
					.mail_params = mx_span_cstr(""),
				};
				spool_msg_begin(sl->m, &env);
				spool_msg_add_rcpt(sl->m, mx_span_cstr("r@example.net"),
						   mx_span_cstr(""));
				sl->sent = 0;
				sl->committed = false;
				progress = true;
			}
			if (!sl->committed) {
				while (sl->sent < p->size && !spool_msg_busy(sl->m)) {
					size_t n = p->size - sl->sent < sizeof(piece)
							   ? p->size - sl->sent : sizeof(piece);
					/* an append that fills a fragment hands it over */
					bool hands = (spool_msg_size(sl->m) % SPOOL_FRAGMENT_SIZE) + n >=
						     SPOOL_FRAGMENT_SIZE;
					uint64_t t0 = hands ? bench_cycles() : 0;
					spool_msg_append(sl->m, piece, n);
					if (hands)
						p->handoff_cycles += bench_cycles() - t0;
					sl->sent += n;
					progress = true;
				}
				if (sl->sent == p->size) {
					uint64_t t0 = bench_cycles();
					int rc = spool_msg_commit(sl->m);
					p->handoff_cycles += bench_cycles() - t0;
					sl->committed = rc == 0;
					if (rc != 0) {
						p->failed++;
						spool_msg_release(sl->m);
						sl->m = NULL;
					}
					progress = true;
				}
				continue;
			}
			int r = spool_msg_result(sl->m);
			if (r == 1)
				continue;
			if (r == 0)
				p->done++;
			else
				p->failed++;
			spool_msg_release(sl->m);
			sl->m = NULL;
			progress = true;
		}
		if (progress)
			continue;
		if (efd >= 0) {
			struct pollfd pfd = { .fd = efd, .events = POLLIN };
			if (poll(&pfd, 1, 1000) > 0) {
				uint64_t v;
				if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					perror("read eventfd");
			}
		}
		if (!p->poll_mode || spool_client_pending(p->c)) {
			uint64_t t0 = bench_cycles();
			spool_client_poll(p->c, bench_news, NULL);
			p->handoff_cycles += bench_cycles() - t0;
		}
	}
	p->cpu_ns = bench_thread_cpu_ns() - cpu0;
	getrusage(RUSAGE_THREAD, &ru1);
	p->vol_switches = (uint64_t)(ru1.ru_nvcsw - ru0.ru_nvcsw);
	free(slots);
	spool_client_poll(p->c, bench_news, NULL);
	if (efd >= 0)
		close(efd);
	return NULL;
}

/* The writer thread's voluntary context switches (it is named "mxgate-spool"). */
static long bench_writer_switches(void)
{
	DIR *d = opendir("/proc/self/task");
	long v = -1;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
		if (strncmp(comm, "mxgate-spool", 12) != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", de->d_name);
		f = fopen(path, "r");
		char line[256];
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
				break;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return v;
}

int main(int argc, char **argv)
{
	unsigned producers = 2, per = 20000, inflight = 20;
	size_t size = 4096;
	uint64_t commit_delay = 0;
	bool poll_mode = false;
	int opt;
	while ((opt = getopt(argc, argv, "p:m:l:i:s:d:P")) != -1) {
		switch (opt) {
		case 'p': producers = (unsigned)atoi(optarg); break;
		case 'm': per = (unsigned)atoi(optarg); break;
		case 'l': size = (size_t)atol(optarg); break;
		case 'i': inflight = (unsigned)atoi(optarg); break;
		case 's': sync_delay_us = (unsigned)atoi(optarg); break;
		case 'd': commit_delay = (uint64_t)atoll(optarg); break;
		case 'P': poll_mode = true; break;
		default:
			fprintf(stderr, "usage: bench_handoff [-p N] [-m N] [-l SIZE] [-i N] "
					"[-s US] [-d US] [-P] DIR\n");
			return 2;
		}
	}
	if (optind != argc - 1 || producers == 0 || producers > 64 || inflight == 0) {
		fprintf(stderr, "usage: bench_handoff [-p N] [-m N] [-l SIZE] [-i N] [-s US] "
				"[-d US] [-P] DIR\n");
		return 2;
	}
	struct spool *s = NULL;
	struct spool_params sp = { .path = argv[optind], .io = &bench_io,
				   .commit_delay_us = commit_delay };
	char err[256];
	if (spool_open(&s, &sp, NULL, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		return 1;
	}
	if (spool_start(s) != 0)
		return 1;
	long w0 = bench_writer_switches();
	struct bench_producer p[64];
	pthread_t th[64];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < producers; i++) {
		p[i] = (struct bench_producer){ .s = s, .no = i, .nmsg = per, .inflight = inflight,
						.size = size, .poll_mode = poll_mode };
		pthread_create(&th[i], NULL, bench_producer_main, &p[i]);
	}
	for (unsigned i = 0; i < producers; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long w1 = bench_writer_switches();
	spool_stop(s);
	struct spool_stats st;
	spool_stats(s, &st);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	uint64_t msgs = 0, failed = 0, cpu = 0, cyc = 0, vol = 0;
	for (unsigned i = 0; i < producers; i++) {
		msgs += p[i].done;
		failed += p[i].failed;
		cpu += p[i].cpu_ns;
		cyc += p[i].handoff_cycles;
		vol += p[i].vol_switches;
		spool_client_free(p[i].c);
	}
	spool_close(s);
	double n = msgs ? (double)msgs : 1.0;
	printf("messages=%llu failed=%llu msgs_per_s=%.0f producer_cpu_ns_per_msg=%.0f "
	       "handoff_cycles_per_msg=%.0f producer_vol_switches_per_msg=%.3f "
	       "writer_vol_switches_per_msg=%.3f syncs=%llu msgs_per_sync=%.1f\n",
	       (unsigned long long)msgs, (unsigned long long)failed, (double)msgs / secs,
	       (double)cpu / n, (double)cyc / n, (double)vol / n,
	       w0 >= 0 && w1 >= 0 ? (double)(w1 - w0) / n : -1.0,
	       (unsigned long long)st.syncs, (double)msgs / (double)(st.syncs ? st.syncs : 1));
	return failed ? 1 : 0;
}
