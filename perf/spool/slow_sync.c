/* LD_PRELOAD shim for the spool benchmark: every fdatasync()/fsync() takes at least
 * MXGATE_SYNC_DELAY_US microseconds longer, as on a disk whose cache flush costs that much
 * (a SATA SSD without power-loss protection: 1-5 ms; a spinning disk: 5-15 ms). This VM's
 * virtual disk acknowledges a flush in ~0.2 ms, faster than any real durable device, which
 * hides what group commit buys; the delay puts it back. The same shim is given to fio, so
 * "the disk's sync rate" and the spool's messages/s are measured on the same slow disk.
 * Benchmark use only; never part of the product. */
#include <dlfcn.h> /* RTLD_NEXT: _GNU_SOURCE comes from the build */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long slow_sync_delay_us(void)
{
	static long delay = -1;
	if (delay < 0) {
		const char *v = getenv("MXGATE_SYNC_DELAY_US");
		delay = v ? strtol(v, NULL, 10) : 0;
		if (delay < 0)
			delay = 0;
	}
	return delay;
}

static void slow_sync_wait(void)
{
	long us = slow_sync_delay_us();
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	while (us > 0 && nanosleep(&ts, &ts) != 0)
		;
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	int rc = real(fd);
	slow_sync_wait();
	return rc;
}

int fsync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	int rc = real(fd);
	slow_sync_wait();
	return rc;
}
