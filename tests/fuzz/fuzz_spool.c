/* Fuzz the spool's readers: a segment file's bytes go through the record parser at every
 * offset, through start-up recovery (read-only, then repairing) and through the reading
 * of every message recovery kept; the same bytes are also parsed as envelope text. Bad
 * input must be discarded, never crash, and never yield a message that fails its CRC. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/spool/spool_envelope.h"
#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"

static char fuzz_root[64];

static int fuzz_seg_dir(void)
{
	if (!fuzz_root[0]) {
		snprintf(fuzz_root, sizeof(fuzz_root), "/tmp/mxgate-fuzz-spool-%ld", (long)getpid());
		mkdir(fuzz_root, 0700);
		char seg[80];
		snprintf(seg, sizeof(seg), "%s/seg", fuzz_root);
		mkdir(seg, 0700);
	}
	return spool_open_seg_dir(fuzz_root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the record parser, at every offset */
	for (size_t off = 0; off < size; off++) {
		struct spool_rec r;
		long n = spool_rec_parse(data + off, size - off, &r);
		if (n > 0 && (size_t)n > size - off)
			abort();
	}

	/* envelope text */
	struct spool_record *rec = NULL;
	char err[256];
	if (spool_envelope_parse((const char *)data, size, &rec, err, sizeof(err)) == 0)
		spool_record_free(rec);

	/* recovery of a spool whose only segment holds these bytes */
	int dirfd = fuzz_seg_dir();
	if (dirfd < 0)
		abort();
	int fd = openat(dirfd, "0000000000000001", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	for (int repair = 0; repair < 2; repair++) {
		struct spool_index idx;
		struct spool_recovery_stats st;
		if (spool_recover(dirfd, repair, &idx, &st, NULL, NULL, err, sizeof(err)) != 0)
			continue;
		for (size_t i = 0; i < idx.n; i++) {
			struct spool_record *r = NULL;
			/* a kept message always reads back with its CRC; its envelope may still be
			 * refused (the CRC protects bytes, not meaning) */
			if (spool_index_read(dirfd, &idx.msgs[i], &r, err, sizeof(err)) == 0)
				spool_record_free(r);
			else if (strstr(err, "CRC"))
				abort();
		}
		spool_index_free(&idx);
	}
	unlinkat(dirfd, "0000000000000001", 0);
	close(dirfd);
	return 0;
}
