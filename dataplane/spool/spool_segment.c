#include "dataplane/spool/spool_segment.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *spool_rec_type_name(enum spool_rec_type t)
{
	switch (t) {
	case SPOOL_REC_NONE: return "none";
	case SPOOL_REC_SEGMENT: return "segment";
	case SPOOL_REC_FRAGMENT: return "fragment";
	case SPOOL_REC_COMMIT: return "commit";
	case SPOOL_REC_DELIVERY: return "delivery";
	case SPOOL_REC_RETIRE: return "retire";
	case SPOOL_REC_HOLD: return "hold";
	case SPOOL_REC_TYPE_MAX: break;
	}
	return "?";
}

const char *spool_rcpt_state_name(enum spool_rcpt_state st)
{
	switch (st) {
	case SPOOL_RCPT_PENDING: return "pending";
	case SPOOL_RCPT_SENT: return "sent";
	case SPOOL_RCPT_FAILED: return "failed";
	case SPOOL_RCPT_STATE_MAX: break;
	}
	return "?";
}

/* ---- CRC32C, table-driven (slicing by 8) ---- */

static uint32_t spool_crc_table[8][256];
static int spool_crc_ready; /* written once; a benign race writes identical values */

static void spool_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		spool_crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			spool_crc_table[t][i] = (spool_crc_table[t - 1][i] >> 8) ^
						spool_crc_table[0][spool_crc_table[t - 1][i] & 0xff];
	__atomic_store_n(&spool_crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t spool_crc32c_portable(uint32_t crc, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	if (!__atomic_load_n(&spool_crc_ready, __ATOMIC_ACQUIRE))
		spool_crc_init();
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		crc = spool_crc_table[7][lo & 0xff] ^ spool_crc_table[6][(lo >> 8) & 0xff] ^
		      spool_crc_table[5][(lo >> 16) & 0xff] ^ spool_crc_table[4][lo >> 24] ^
		      spool_crc_table[3][p[4]] ^ spool_crc_table[2][p[5]] ^
		      spool_crc_table[1][p[6]] ^ spool_crc_table[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ spool_crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
/* SSE4.2's CRC32 instruction computes exactly CRC32C (Castagnoli, reflected): 8 bytes per
 * instruction, about 0.4 cycles a byte against the tables' 2.5. Every message's content
 * goes through here on the worker (and again on the writer), so it matters. Three
 * independent streams would hide the instruction's latency; one keeps it simple and is
 * already far below the rest of a message's cost. */
__attribute__((target("sse4.2"))) static uint32_t spool_crc32c_hw(uint32_t crc,
								    const unsigned char *p,
								    size_t n)
{
	uint64_t c = ~crc;
	while (n && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		n--;
	}
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#endif

/* Which form this machine runs: 0 not decided yet, 1 tables, 2 SSE4.2. */
static int spool_crc_impl;

uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t n)
{
	int impl = __atomic_load_n(&spool_crc_impl, __ATOMIC_RELAXED);
	if (!impl) {
		impl = 1;
#if defined(__x86_64__)
		__builtin_cpu_init();
		if (__builtin_cpu_supports("sse4.2"))
			impl = 2;
#endif
		__atomic_store_n(&spool_crc_impl, impl, __ATOMIC_RELAXED);
	}
#if defined(__x86_64__)
	if (impl == 2)
		return spool_crc32c_hw(crc, buf, n);
#endif
	return spool_crc32c_portable(crc, buf, n);
}

/* ---- little-endian helpers ---- */

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- records ---- */

size_t spool_rec_encode(void *dst, enum spool_rec_type type, const struct iovec *parts,
			int nparts)
{
	unsigned char *d = dst;
	size_t len = 0;
	for (int i = 0; i < nparts; i++) {
		memcpy(d + SPOOL_REC_HEADER + len, parts[i].iov_base, parts[i].iov_len);
		len += parts[i].iov_len;
	}
	put32(d, SPOOL_REC_MAGIC);
	d[4] = (unsigned char)type;
	d[5] = d[6] = d[7] = 0;
	put32(d + 8, (uint32_t)len);
	uint32_t crc = spool_crc32c(0, d + 4, 8);
	crc = spool_crc32c(crc, d + SPOOL_REC_HEADER, len);
	put32(d + 12, crc);
	put32(d + SPOOL_REC_HEADER + len, SPOOL_REC_END);
	return spool_rec_size(len);
}

static void spool_rec_id_field(unsigned char *out, const char *id)
{
	memset(out, 0, SPOOL_REC_ID_FIELD);
	memcpy(out, id, QUEUE_ID_LEN);
}

void spool_rec_segment_head(unsigned char out[12], uint64_t seg_no)
{
	put32(out, SPOOL_SEGMENT_VERSION);
	put64(out + 4, seg_no);
}

void spool_rec_fragment_head(unsigned char out[SPOOL_FRAGMENT_HEAD], const char *id,
			     uint64_t msg_off)
{
	spool_rec_id_field(out, id);
	put64(out + SPOOL_REC_ID_FIELD, msg_off);
}

void spool_rec_commit_head(unsigned char out[SPOOL_COMMIT_HEAD], const char *id,
			   uint64_t msg_len, uint32_t msg_crc, uint32_t nfrag)
{
	spool_rec_id_field(out, id);
	put64(out + SPOOL_REC_ID_FIELD, msg_len);
	put32(out + SPOOL_REC_ID_FIELD + 8, msg_crc);
	put32(out + SPOOL_REC_ID_FIELD + 12, nfrag);
}

void spool_rec_delivery_head(unsigned char out[SPOOL_DELIVERY_HEAD], const char *id,
			     uint32_t rcpt, enum spool_rcpt_state st)
{
	spool_rec_id_field(out, id);
	put32(out + SPOOL_REC_ID_FIELD, rcpt);
	out[SPOOL_REC_ID_FIELD + 4] = (unsigned char)st;
	out[SPOOL_REC_ID_FIELD + 5] = out[SPOOL_REC_ID_FIELD + 6] = out[SPOOL_REC_ID_FIELD + 7] = 0;
}

void spool_rec_retire_head(unsigned char out[SPOOL_REC_ID_FIELD], const char *id)
{
	spool_rec_id_field(out, id);
}

void spool_rec_hold_head(unsigned char out[SPOOL_HOLD_HEAD], const char *id, bool held)
{
	spool_rec_id_field(out, id);
	out[SPOOL_REC_ID_FIELD] = held ? 1 : 0;
	out[SPOOL_REC_ID_FIELD + 1] = out[SPOOL_REC_ID_FIELD + 2] = out[SPOOL_REC_ID_FIELD + 3] = 0;
}

static bool spool_rec_get_id(const unsigned char *p, char *id)
{
	memcpy(id, p, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	for (unsigned i = QUEUE_ID_LEN; i < SPOOL_REC_ID_FIELD; i++)
		if (p[i] != 0)
			return false;
	return queue_id_valid(id);
}

long spool_rec_parse(const void *buf, size_t n, struct spool_rec *out)
{
	const unsigned char *p = buf;
	/* Judge what is there before asking for more: a prefix that is already wrong is
	 * corruption, not a torn write. */
	if (n < 4)
		return memcmp(p, "MXR1", n) == 0 ? 0 : -EINVAL;
	if (get32(p) != SPOOL_REC_MAGIC)
		return -EINVAL;
	if (n < SPOOL_REC_HEADER)
		return 0;
	enum spool_rec_type type = p[4];
	if (type <= SPOOL_REC_NONE || type >= SPOOL_REC_TYPE_MAX || p[5] || p[6] || p[7])
		return -EINVAL;
	uint32_t len = get32(p + 8);
	if (len > SPOOL_REC_MAX_PAYLOAD)
		return -EINVAL;
	size_t size = spool_rec_size(len);
	if (n < size)
		return 0;
	if (get32(p + SPOOL_REC_HEADER + len) != SPOOL_REC_END)
		return -EINVAL;
	uint32_t crc = spool_crc32c(0, p + 4, 8);
	crc = spool_crc32c(crc, p + SPOOL_REC_HEADER, len);
	if (crc != get32(p + 12))
		return -EINVAL;

	const unsigned char *pl = p + SPOOL_REC_HEADER;
	struct spool_rec r = { .type = type, .size = (uint32_t)size };
	switch (type) {
	case SPOOL_REC_SEGMENT:
		if (len != 12 || get32(pl) != SPOOL_SEGMENT_VERSION)
			return -EINVAL;
		r.seg_no = get64(pl + 4);
		break;
	case SPOOL_REC_FRAGMENT:
		if (len < SPOOL_FRAGMENT_HEAD || !spool_rec_get_id(pl, r.id))
			return -EINVAL;
		r.msg_off = get64(pl + SPOOL_REC_ID_FIELD);
		r.data = mx_span_make((const char *)pl + SPOOL_FRAGMENT_HEAD,
				      len - SPOOL_FRAGMENT_HEAD);
		break;
	case SPOOL_REC_COMMIT:
		if (len < SPOOL_COMMIT_HEAD || !spool_rec_get_id(pl, r.id))
			return -EINVAL;
		r.msg_len = get64(pl + SPOOL_REC_ID_FIELD);
		r.msg_crc = get32(pl + SPOOL_REC_ID_FIELD + 8);
		r.nfrag = get32(pl + SPOOL_REC_ID_FIELD + 12);
		r.data = mx_span_make((const char *)pl + SPOOL_COMMIT_HEAD,
				      len - SPOOL_COMMIT_HEAD);
		break;
	case SPOOL_REC_DELIVERY: {
		if (len < SPOOL_DELIVERY_HEAD || len > SPOOL_DELIVERY_HEAD + SPOOL_DELIVERY_MAX_TEXT ||
		    !spool_rec_get_id(pl, r.id))
			return -EINVAL;
		unsigned st = pl[SPOOL_REC_ID_FIELD + 4];
		if ((st != SPOOL_RCPT_SENT && st != SPOOL_RCPT_FAILED) || pl[SPOOL_REC_ID_FIELD + 5] ||
		    pl[SPOOL_REC_ID_FIELD + 6] || pl[SPOOL_REC_ID_FIELD + 7])
			return -EINVAL;
		r.rcpt = get32(pl + SPOOL_REC_ID_FIELD);
		r.rcpt_state = (enum spool_rcpt_state)st;
		r.data = mx_span_make((const char *)pl + SPOOL_DELIVERY_HEAD,
				      len - SPOOL_DELIVERY_HEAD);
		break;
	}
	case SPOOL_REC_RETIRE:
		if (len != SPOOL_REC_ID_FIELD || !spool_rec_get_id(pl, r.id))
			return -EINVAL;
		break;
	case SPOOL_REC_HOLD: {
		if (len < SPOOL_HOLD_HEAD || len > SPOOL_HOLD_HEAD + SPOOL_DELIVERY_MAX_TEXT ||
		    !spool_rec_get_id(pl, r.id))
			return -EINVAL;
		unsigned h = pl[SPOOL_REC_ID_FIELD];
		if (h > 1 || pl[SPOOL_REC_ID_FIELD + 1] || pl[SPOOL_REC_ID_FIELD + 2] ||
		    pl[SPOOL_REC_ID_FIELD + 3])
			return -EINVAL;
		r.held = h == 1;
		r.data = mx_span_make((const char *)pl + SPOOL_HOLD_HEAD, len - SPOOL_HOLD_HEAD);
		break;
	}
	default:
		return -EINVAL;
	}
	*out = r;
	return (long)size;
}

void spool_seg_name(uint64_t seg_no, char *buf)
{
	snprintf(buf, SPOOL_SEG_NAME_LEN + 1, "%016llx", (unsigned long long)seg_no);
}

bool spool_seg_parse_name(const char *name, uint64_t *seg_no)
{
	uint64_t v = 0;
	for (int i = 0; i < SPOOL_SEG_NAME_LEN; i++) {
		char c = name[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	if (name[SPOOL_SEG_NAME_LEN] != '\0' || v == 0)
		return false;
	*seg_no = v;
	return true;
}

int spool_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO; /* 0: the file is shorter than the record */
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}
