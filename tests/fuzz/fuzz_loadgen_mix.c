/* libFuzzer harness for mxgate-loadgen's traffic classes: the --also spec parser
 * (perf/loadgen/loadgen_spec.c) and the SYN flood's observer of received frames
 * (perf/loadgen/loadgen_synflood.c).
 *
 * Input: the whole input is tried twice: as a spec (up to its first NUL, in a heap buffer
 * of exactly that length plus the terminator) and as a received Ethernet frame (a heap
 * buffer of exactly its length). Invariants (abort on violation):
 * - the spec parser returns 0 or -EINVAL; on -EINVAL the reason is a terminated, non-empty
 *   string; on 0 the kind is known, the range non-empty and within IPv4, the concurrency
 *   1..2^24, the rate 0..1e9 and positive for a SYN flood;
 * - one frame adds at most one to the SYN-ACK and RST counts together, and teaches the
 *   server's MAC only from a frame that names the server as its sender;
 * - a SYN built afterwards still has a valid IPv4 header checksum. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "loadgen.h"
#include "loadgen_mix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t ip_sum(const uint8_t *p)
{
	uint32_t s = 0;
	for (int i = 0; i < 20; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	while (n < size && data[n])
		n++;
	char *spec = malloc(n + 1);
	memcpy(spec, data, n);
	spec[n] = 0;
	struct loadgen_class_spec sp;
	char err[96];
	memset(err, 'x', sizeof(err));
	int rc = loadgen_class_spec_parse(spec, &sp, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0)
		FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
	else {
		FUZZ_CHECK(sp.kind < LOADGEN_CLASS_MAX);
		FUZZ_CHECK(sp.src_count >= 1 &&
			   (uint64_t)ntohl(sp.src_base) + sp.src_count <= 0xffffffffull);
		FUZZ_CHECK(sp.concurrency >= 1 && sp.concurrency <= (1u << 24));
		FUZZ_CHECK(sp.rate >= 0 && sp.rate <= 1e9);
		FUZZ_CHECK(sp.kind != LOADGEN_CLASS_SYNFLOOD || sp.rate > 0);
	}
	free(spec);

	/* the observer, on a flood from 172.16.0.0/12 against 10.88.0.2 */
	struct loadgen_class_spec fl = { .kind = LOADGEN_CLASS_SYNFLOOD,
					 .src_base = inet_addr("172.16.0.1"),
					 .src_count = (1u << 20) - 2,
					 .concurrency = 1,
					 .rate = 1000 };
	static const uint8_t smac[6] = { 2, 0, 0, 0, 0, 1 };
	struct loadgen_synflood sf;
	loadgen_synflood_init(&sf, &fl, inet_addr("10.88.0.2"), 25, smac, 7, 0);
	uint8_t *frame = malloc(size ? size : 1);
	memcpy(frame, data, size);
	loadgen_synflood_observe(&sf, frame, size);
	FUZZ_CHECK(sf.synack_seen + sf.rst_seen <= 1);
	if (sf.have_dmac) {
		uint32_t srv = inet_addr("10.88.0.2"), from_ip, from_arp;
		FUZZ_CHECK(size >= 14 + 20);
		memcpy(&from_ip, frame + 14 + 12, 4);
		memcpy(&from_arp, frame + 14 + 14, 4);
		FUZZ_CHECK(from_ip == srv || from_arp == srv);
	}
	free(frame);
	sf.have_dmac = true;
	uint8_t out[LOADGEN_SYN_FRAME_LEN];
	FUZZ_CHECK(loadgen_synflood_frame(&sf, out, sizeof(out), 1) == LOADGEN_SYN_FRAME_LEN);
	FUZZ_CHECK(ip_sum(out + 14) == 0xffff);
	return 0;
}
