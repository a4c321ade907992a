#include "dataplane/spool/spool_recovery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/spool/spool_segment.h"

#include "mxgate/errf.h"

static void rec_log(spool_recovery_log_fn *log, void *ctx, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void rec_log(spool_recovery_log_fn *log, void *ctx, bool warning, const char *fmt, ...)
{
	if (!log)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log(ctx, warning, line);
}

/* ---- what the scan collects ---- */

struct rec_seg {
	uint64_t no;
	int fd;
	const unsigned char *map;
	size_t len;     /* bytes kept (less than map_len once a torn tail is cut) */
	size_t map_len; /* what was mapped: what munmap() must be given */
};

/* Every collected record starts with its ID and its place in file order (segments in
 * order, records in order; from 1), so all of them sort and search alike. */
struct rec_key {
	char id[QUEUE_ID_SIZE];
	uint64_t seq;
};

struct rec_frag {
	struct rec_key k;
	size_t seg; /* index into the segment array */
	uint64_t off;
	uint64_t msg_off;
	uint32_t len;
};

struct rec_commit {
	struct rec_key k;
	size_t seg;
	uint64_t env_off;
	uint32_t env_len;
	uint64_t msg_len;
	uint32_t msg_crc;
	uint32_t nfrag;
};

/* DELIVERY and HOLD records: text is the reply or the reason, in the mapping. */
struct rec_status {
	struct rec_key k;
	uint32_t rcpt;  /* DELIVERY */
	uint8_t state;  /* DELIVERY: enum spool_rcpt_state; HOLD: 1 held, 0 released */
	size_t seg;
	uint64_t text_off;
	uint32_t text_len;
};

struct rec_vec {
	void *v;
	size_t n, cap;
};

struct rec_state {
	struct rec_seg *segs;
	size_t nsegs;
	struct rec_vec frags, commits, dels, holds, retires; /* retires: struct rec_key */
	/* with repair: fragments of messages that were never committed (struct rec_frag),
	 * whose space is given back once the scan is done */
	struct rec_vec dead;
	bool repair;
	int dirfd;
	uint64_t seq;
};

/* Room for one more element; returns it (zeroed) or NULL. */
static void *rec_push(struct rec_vec *a, size_t elem)
{
	if (a->n == a->cap) {
		size_t c = a->cap ? a->cap * 2 : 256;
		void *p = realloc(a->v, c * elem);
		if (!p)
			return NULL;
		a->v = p;
		a->cap = c;
	}
	void *e = (char *)a->v + a->n++ * elem;
	memset(e, 0, elem);
	return e;
}

static int rec_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 256;
	void *p = realloc(*arr, c * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = c;
	return 0;
}

/* qsort() with an empty (possibly NULL) array is undefined behaviour. */
static void rec_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

static int rec_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* By ID, then in file order. */
static int rec_cmp_key(const void *a, const void *b)
{
	const struct rec_key *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int rec_cmp_entry(const void *a, const void *b)
{
	const struct spool_msg_entry *x = a, *y = b;
	return strcmp(x->id, y->id);
}

static const struct rec_key *rec_at(const struct rec_vec *a, size_t elem, size_t i)
{
	return (const struct rec_key *)(const void *)((const char *)a->v + i * elem);
}

/* The elements of a (sorted by rec_cmp_key) with this ID: [*lo, *hi). */
static void rec_range(const struct rec_vec *a, size_t elem, const char *id, size_t *lo,
		      size_t *hi)
{
	size_t l = 0, h = a->n;
	while (l < h) {
		size_t mid = (l + h) / 2;
		if (strcmp(rec_at(a, elem, mid)->id, id) < 0)
			l = mid + 1;
		else
			h = mid;
	}
	size_t e = l;
	while (e < a->n && strcmp(rec_at(a, elem, e)->id, id) == 0)
		e++;
	*lo = l;
	*hi = e;
}

static void rec_note_id(struct spool_index *idx, const char *id)
{
	uint64_t us;
	if (queue_id_time_us(id, &us) == 0 && us > idx->newest_id_us)
		idx->newest_id_us = us;
}

/* The next valid record at or after `from`, or len when there is none. */
static size_t rec_resync(const unsigned char *map, size_t len, size_t from)
{
	static const unsigned char magic[4] = { 'M', 'X', 'R', '1' };
	size_t pos = from;
	while (pos + 4 <= len) {
		const unsigned char *m = memmem(map + pos, len - pos, magic, 4);
		if (!m)
			break;
		pos = (size_t)(m - map);
		struct spool_rec r;
		if (spool_rec_parse(map + pos, len - pos, &r) > 0)
			return pos;
		pos++;
	}
	return len;
}

/* Collect one valid record. Returns 0 or -ENOMEM. */
static int rec_collect(struct rec_state *s, size_t si, const struct spool_rec *r,
		       struct spool_index *idx, spool_recovery_log_fn *log, void *ctx)
{
	const unsigned char *map = s->segs[si].map;
	uint64_t data_off = r->data.ptr ? (uint64_t)((const unsigned char *)r->data.ptr - map) : 0;
	if (r->type == SPOOL_REC_SEGMENT)
		return 0;
	/* Every ID named by any record counts for the ID floor: a new message must never
	 * take the ID of one whose RETIRE (or anything else) survives. */
	rec_note_id(idx, r->id);
	struct rec_key k;
	memcpy(k.id, r->id, QUEUE_ID_SIZE);
	k.seq = ++s->seq;
	switch (r->type) {
	case SPOOL_REC_FRAGMENT: {
		struct rec_frag *f = rec_push(&s->frags, sizeof(*f));
		if (!f)
			return -ENOMEM;
		*f = (struct rec_frag){ .k = k, .seg = si, .off = data_off, .msg_off = r->msg_off,
					.len = (uint32_t)r->data.len };
		break;
	}
	case SPOOL_REC_COMMIT: {
		struct rec_commit *c = rec_push(&s->commits, sizeof(*c));
		if (!c)
			return -ENOMEM;
		*c = (struct rec_commit){ .k = k, .seg = si, .env_off = data_off,
					  .env_len = (uint32_t)r->data.len, .msg_len = r->msg_len,
					  .msg_crc = r->msg_crc, .nfrag = r->nfrag };
		break;
	}
	case SPOOL_REC_DELIVERY: {
		if (r->rcpt >= SPOOL_MAX_RCPTS) {
			rec_log(log, ctx, true,
				"%s: delivery record for recipient %u ignored (out of range)", r->id,
				r->rcpt);
			break;
		}
		struct rec_status *d = rec_push(&s->dels, sizeof(*d));
		if (!d)
			return -ENOMEM;
		*d = (struct rec_status){ .k = k, .rcpt = r->rcpt, .state = (uint8_t)r->rcpt_state,
					  .seg = si, .text_off = data_off,
					  .text_len = (uint32_t)r->data.len };
		break;
	}
	case SPOOL_REC_HOLD: {
		struct rec_status *h = rec_push(&s->holds, sizeof(*h));
		if (!h)
			return -ENOMEM;
		*h = (struct rec_status){ .k = k, .state = r->held ? 1 : 0, .seg = si,
					  .text_off = data_off, .text_len = (uint32_t)r->data.len };
		break;
	}
	case SPOOL_REC_RETIRE: {
		struct rec_key *t = rec_push(&s->retires, sizeof(*t));
		if (!t)
			return -ENOMEM;
		*t = k;
		break;
	}
	default:
		break;
	}
	return 0;
}

/* True when [from, to) of the segment holds a hole: the writer punched the records of a
 * message that never became durable there (spool_space.c), so what looks like damage is
 * space given back. */
static bool rec_punched(const struct rec_seg *seg, size_t from, size_t to)
{
	off_t h = lseek(seg->fd, (off_t)from, SEEK_HOLE);
	return h >= 0 && (size_t)h < to;
}

static int rec_scan_segment(struct rec_state *s, size_t si, struct spool_index *idx,
			    struct spool_recovery_stats *st, bool repair,
			    spool_recovery_log_fn *log, void *ctx)
{
	struct rec_seg *seg = &s->segs[si];
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(seg->no, name);
	size_t pos = 0, valid_end = 0;
	bool first = true;

	while (pos < seg->len) {
		struct spool_rec r;
		long n = spool_rec_parse(seg->map + pos, seg->len - pos, &r);
		if (n > 0 && first && (r.type != SPOOL_REC_SEGMENT || r.seg_no != seg->no))
			n = -EINVAL; /* a file renamed or copied under the wrong number */
		if (n <= 0) {
			size_t next = rec_resync(seg->map, seg->len, pos + 1);
			if (next == seg->len)
				break; /* torn tail: nothing valid follows */
			if (rec_punched(seg, pos, next)) {
				st->punched_regions++;
			} else {
				st->corrupt_regions++;
				rec_log(log, ctx, true,
					"spool segment %s: %zu corrupt bytes at offset %zu skipped; "
					"records after them are kept",
					name, next - pos, pos);
			}
			pos = next;
			first = false;
			continue;
		}
		first = false;
		if (rec_collect(s, si, &r, idx, log, ctx) < 0)
			return -ENOMEM;
		pos += (size_t)n;
		valid_end = pos;
	}
	if (valid_end < seg->len) {
		if (rec_punched(seg, valid_end, seg->len)) {
			/* the last records were a message given up: cut, without a warning */
			st->punched_regions++;
		} else {
			st->torn_tails++;
			st->torn_bytes += seg->len - valid_end;
			rec_log(log, ctx, true,
				"spool segment %s: torn or corrupt tail of %zu bytes at offset %zu "
				"discarded%s",
				name, seg->len - valid_end, valid_end,
				repair ? " (truncated)" : "");
		}
		if (repair) {
			/* The mapping stays valid for the bytes we keep. */
			if (ftruncate(seg->fd, (off_t)valid_end) != 0 || fsync(seg->fd) != 0)
				return -errno;
			seg->len = valid_end;
		}
	}
	return 0;
}

/* Check one COMMIT against the fragments of its ID written before it (and after the
 * previous COMMIT of that ID), in write order. An attempt to write the message that
 * failed part way (a failed batch, a torn relocation) may have left fragments ahead of
 * the complete run: the message starts at the last fragment for offset 0. Returns true
 * and fills e when it is whole. */
static bool rec_check_message(const struct rec_state *s, const struct rec_commit *c,
			      const struct rec_frag *frags, size_t n, struct spool_msg_entry *e,
			      const char **why)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++)
		if (frags[i].msg_off == 0)
			start = i;
	uint64_t off = 0;
	uint32_t crc = 0;
	size_t used = 0;
	*why = NULL;
	for (size_t i = start; i < n; i++) {
		const struct rec_frag *f = &frags[i];
		if (f->msg_off != off) {
			*why = "fragments are not contiguous";
			return false;
		}
		crc = spool_crc32c(crc, s->segs[f->seg].map + f->off, f->len);
		off += f->len;
		used++;
		if (off >= c->msg_len)
			break;
	}
	if (off != c->msg_len || used != c->nfrag) {
		*why = "fragments missing";
		return false;
	}
	if (crc != c->msg_crc) {
		*why = "message CRC mismatch";
		return false;
	}
	e->frags = malloc((used ? used : 1) * sizeof(*e->frags));
	if (!e->frags) {
		*why = "out of memory";
		return false;
	}
	for (size_t i = 0; i < used; i++) {
		const struct rec_frag *f = &frags[start + i];
		e->frags[i] = (struct spool_frag_loc){ .seg = s->segs[f->seg].no, .off = f->off,
						       .len = f->len };
	}
	memcpy(e->id, c->k.id, QUEUE_ID_SIZE);
	e->size = c->msg_len;
	e->crc = c->msg_crc;
	e->commit_seg = s->segs[c->seg].no;
	e->env_off = c->env_off;
	e->env_len = c->env_len;
	e->nfrag = (uint32_t)used;
	return true;
}

static int rec_list_segments(int dirfd, bool repair, struct rec_state *s,
			     struct spool_recovery_stats *st, spool_recovery_log_fn *log,
			     void *ctx)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int e = -errno;
		close(fd);
		return e;
	}
	uint64_t *nos = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		uint64_t no;
		if (spool_seg_parse_name(de->d_name, &no)) {
			if ((rc = rec_grow((void **)&nos, &cap, n, sizeof(*nos))) < 0)
				break;
			nos[n++] = no;
			continue;
		}
		/* Not a segment: a temporary file from an interrupted run. */
		st->stale_files++;
		rec_log(log, ctx, true, "spool: stale file seg/%.64s %s", de->d_name,
			repair ? "removed" : "ignored");
		if (repair && unlinkat(dirfd, de->d_name, 0) != 0 && errno != ENOENT)
			rec_log(log, ctx, true, "spool: cannot remove seg/%.64s: %s", de->d_name,
				strerror(errno));
	}
	closedir(dir);
	if (rc < 0) {
		free(nos);
		return rc;
	}
	rec_sort(nos, n, sizeof(*nos), rec_cmp_u64);
	s->segs = calloc(n ? n : 1, sizeof(*s->segs));
	if (!s->segs) {
		free(nos);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct rec_seg *g = &s->segs[s->nsegs];
		char name[SPOOL_SEG_NAME_LEN + 1];
		spool_seg_name(nos[i], name);
		g->no = nos[i];
		g->fd = openat(dirfd, name, (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (g->fd < 0) {
			rc = -errno;
			break;
		}
		s->nsegs++;
		struct stat sb;
		if (fstat(g->fd, &sb) != 0) {
			rc = -errno;
			break;
		}
		g->len = (size_t)sb.st_size;
		if (g->len) {
			void *m = mmap(NULL, g->len, PROT_READ, MAP_PRIVATE, g->fd, 0);
			if (m == MAP_FAILED) {
				rc = -errno;
				break;
			}
			g->map = m;
			g->map_len = g->len;
		}
	}
	free(nos);
	return rc;
}

static void rec_state_free(struct rec_state *s)
{
	for (size_t i = 0; i < s->nsegs; i++) {
		if (s->segs[i].map)
			munmap((void *)s->segs[i].map, s->segs[i].map_len);
		close(s->segs[i].fd);
	}
	free(s->segs);
	free(s->frags.v);
	free(s->commits.v);
	free(s->dels.v);
	free(s->holds.v);
	free(s->retires.v);
	free(s->dead.v);
}

/* A text field of a DELIVERY or HOLD record, NUL-terminated; NULL when empty. An
 * embedded NUL ends it (the text is for people). */
static int rec_text(const struct rec_state *s, const struct rec_status *r, char **out)
{
	*out = NULL;
	if (r->text_len == 0)
		return 0;
	const char *p = (const char *)s->segs[r->seg].map + r->text_off;
	size_t n = strnlen(p, r->text_len);
	char *t = malloc(n + 1);
	if (!t)
		return -ENOMEM;
	memcpy(t, p, n);
	t[n] = '\0';
	*out = t;
	return 0;
}

/* The "hold" line of a commit's envelope: 1 held (reason in *reason, NULL when empty),
 * 0 not, -ENOMEM. A bad escape reads as no hold line: reading the message fails on the
 * same envelope anyway. */
static int rec_env_hold(const struct rec_state *s, const struct rec_commit *c, char **reason)
{
	const char *env = (const char *)s->segs[c->seg].map + c->env_off;
	int rc = spool_envelope_hold(env, c->env_len, reason);
	if (rc == -EINVAL)
		return 0;
	if (rc == 1 && *reason && !**reason) {
		free(*reason);
		*reason = NULL;
	}
	return rc;
}

static bool rec_str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* What one ID's DELIVERY and HOLD records say, for choosing among its copies. */
struct rec_id_status {
	const struct rec_status *dels, *holds;
	size_t ndels, nholds;
	uint32_t need;            /* recipients covered: highest index + 1 */
	size_t *last;             /* per recipient: index in dels of its last record + 1 */
	uint64_t min_last_seq;    /* lowest "last record" seq over the recipients; 0: none */
};

/* Does the copy committed at c carry the message's whole state after it? A relocation
 * re-emits DELIVERY records for every decided recipient and a HOLD record when the hold
 * state differs from the envelope's, right after the copy's COMMIT; a crash between that
 * COMMIT and those records leaves a copy without them, and indexing it would let the old
 * segments (still holding the only records) be reclaimed. */
static int rec_self_contained(const struct rec_state *s, const struct rec_commit *c,
			      const struct rec_id_status *is, bool *yes)
{
	*yes = true;
	if (is->min_last_seq && is->min_last_seq < c->k.seq) {
		*yes = false;
		return 0;
	}
	if (is->nholds == 0)
		return 0;
	const struct rec_status *h = &is->holds[is->nholds - 1];
	if (h->k.seq > c->k.seq)
		return 0;
	/* the last HOLD record is older than the copy: it must agree with the envelope */
	char *env_reason = NULL, *rec_reason = NULL;
	int held = rec_env_hold(s, c, &env_reason);
	if (held < 0)
		return held;
	if (rec_text(s, h, &rec_reason) < 0) {
		free(env_reason);
		return -ENOMEM;
	}
	*yes = (held == 1) == (h->state == 1) && (!held || rec_str_eq(env_reason, rec_reason));
	free(env_reason);
	free(rec_reason);
	return 0;
}

/* Apply the ID's records to the chosen copy e (committed at c), in file order: the last
 * DELIVERY record of each recipient wins; the last HOLD record wins over the
 * envelope's hold line. */
static int rec_apply(const struct rec_state *s, const struct rec_commit *c,
		     const struct rec_id_status *is, struct spool_msg_entry *e,
		     struct spool_recovery_stats *st)
{
	if (is->need) {
		e->rstate = calloc(is->need, 1);
		e->rtext = calloc(is->need, sizeof(*e->rtext));
		if (!e->rstate || !e->rtext)
			return -ENOMEM;
		e->nrstate = is->need;
		for (uint32_t r = 0; r < is->need; r++) {
			if (!is->last[r])
				continue;
			const struct rec_status *d = &is->dels[is->last[r] - 1];
			e->rstate[r] = d->state;
			if (rec_text(s, d, &e->rtext[r]) < 0)
				return -ENOMEM;
		}
		st->deliveries += (unsigned)is->ndels;
	}
	if (is->nholds) {
		const struct rec_status *h = &is->holds[is->nholds - 1];
		e->held = h->state == 1;
		if (e->held && rec_text(s, h, &e->hold_reason) < 0)
			return -ENOMEM;
		st->holds += (unsigned)is->nholds;
		return 0;
	}
	int held = rec_env_hold(s, c, &e->hold_reason);
	if (held < 0)
		return held;
	e->held = held == 1;
	return 0;
}

/* Gather what the ID's DELIVERY and HOLD records say. */
static int rec_id_status_init(const struct rec_state *s, const char *id,
			      struct rec_id_status *is)
{
	size_t lo, hi;
	*is = (struct rec_id_status){ 0 };
	rec_range(&s->dels, sizeof(struct rec_status), id, &lo, &hi);
	is->dels = hi > lo ? (const struct rec_status *)s->dels.v + lo : NULL;
	is->ndels = hi - lo;
	rec_range(&s->holds, sizeof(struct rec_status), id, &lo, &hi);
	is->holds = hi > lo ? (const struct rec_status *)s->holds.v + lo : NULL;
	is->nholds = hi - lo;
	for (size_t i = 0; i < is->ndels; i++)
		if (is->dels[i].rcpt + 1 > is->need)
			is->need = is->dels[i].rcpt + 1;
	if (!is->need)
		return 0;
	is->last = calloc(is->need, sizeof(*is->last));
	if (!is->last)
		return -ENOMEM;
	for (size_t i = 0; i < is->ndels; i++)
		is->last[is->dels[i].rcpt] = i + 1;
	for (uint32_t r = 0; r < is->need; r++) {
		if (!is->last[r])
			continue;
		uint64_t seq = is->dels[is->last[r] - 1].k.seq;
		if (!is->min_last_seq || seq < is->min_last_seq)
			is->min_last_seq = seq;
	}
	return 0;
}

/* Remember n fragments of a message that never became durable, to give their space back. */
static int rec_mark_dead(struct rec_state *s, const struct rec_frag *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rec_frag *d = rec_push(&s->dead, sizeof(*d));
		if (!d)
			return -ENOMEM;
		*d = f[i];
	}
	return 0;
}

static int rec_cmp_place(const void *a, const void *b)
{
	const struct rec_frag *x = a, *y = b;
	if (x->seg != y->seg)
		return x->seg < y->seg ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Punch the whole blocks of [start, end) out of segment g. */
static void rec_punch(const struct rec_state *s, const struct rec_seg *g, uint64_t start,
		      uint64_t end, struct spool_recovery_stats *st)
{
	struct stat sb;
	uint64_t b = fstat(g->fd, &sb) == 0 && sb.st_blksize > 0 ? (uint64_t)sb.st_blksize : 4096;
	uint64_t from = (start + b - 1) / b * b, to = end / b * b;
	if (to <= from)
		return;
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(g->no, name);
	int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
		      (off_t)(to - from)) == 0)
		st->punched_bytes += to - from;
	close(fd);
}

/* The writer punches the records of every message given up while it runs; these are the
 * ones a crash (or an older version) left behind. Adjacent records merge into one run. */
static void rec_punch_dead(struct rec_state *s, struct spool_recovery_stats *st)
{
	struct rec_frag *d = s->dead.v;
	rec_sort(d, s->dead.n, sizeof(*d), rec_cmp_place);
	for (size_t i = 0; i < s->dead.n;) {
		const struct rec_seg *g = &s->segs[d[i].seg];
		uint64_t start = d[i].off - SPOOL_REC_HEADER - SPOOL_FRAGMENT_HEAD;
		uint64_t end = d[i].off + d[i].len + SPOOL_REC_TRAILER;
		size_t j = i + 1;
		while (j < s->dead.n && d[j].seg == d[i].seg &&
		       d[j].off - SPOOL_REC_HEADER - SPOOL_FRAGMENT_HEAD == end) {
			end = d[j].off + d[j].len + SPOOL_REC_TRAILER;
			j++;
		}
		rec_punch(s, g, start, end, st);
		i = j;
	}
}

/* One ID with at least one COMMIT (commits[lo..hi) in file order): choose the copy to
 * index (spool_segment.h, relocation), apply its records, and add it to idx. */
static int rec_build_id(struct rec_state *s, size_t lo, size_t hi, struct spool_index *idx,
			struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx)
{
	const struct rec_commit *commits = (const struct rec_commit *)s->commits.v;
	const char *id = commits[lo].k.id;
	size_t fl, fh, rl, rh;
	rec_range(&s->frags, sizeof(struct rec_frag), id, &fl, &fh);
	rec_range(&s->retires, sizeof(struct rec_key), id, &rl, &rh);
	uint64_t retire_seq = rh > rl ? rec_at(&s->retires, sizeof(struct rec_key), rl)->seq
				      : UINT64_MAX;
	const struct rec_frag *frags = (const struct rec_frag *)s->frags.v;
	struct rec_id_status is;
	int rc = rec_id_status_init(s, id, &is);
	if (rc < 0)
		return rc;

	/* why each COMMIT of the ID was refused (NULL: whole), reported once the copy to
	 * index is known: an older copy cut short by reclaiming is no news */
	const char **why = calloc(hi - lo, sizeof(*why));
	if (!why) {
		free(is.last);
		return -ENOMEM;
	}
	struct spool_msg_entry best = { 0 };
	const struct rec_commit *best_c = NULL;
	bool best_self = false;
	unsigned ncomplete = 0, best_nth = 0;
	size_t fp = fl;
	for (size_t k = lo; k < hi; k++) {
		const struct rec_commit *c = &commits[k];
		size_t fs = fp;
		while (fp < fh && frags[fp].k.seq < c->k.seq)
			fp++;
		if (c->k.seq > retire_seq)
			continue; /* a copy of a message already retired: IDs are never reused */
		struct spool_msg_entry e = { 0 };
		if (!rec_check_message(s, c, fp > fs ? frags + fs : NULL, fp - fs, &e,
				       &why[k - lo]))
			continue;
		bool self;
		if ((rc = rec_self_contained(s, c, &is, &self)) < 0) {
			spool_msg_entry_clear(&e);
			spool_msg_entry_clear(&best);
			goto out;
		}
		ncomplete++;
		/* the newest copy that carries its whole state; failing that, the newest */
		if (!best_c || self || !best_self) {
			spool_msg_entry_clear(&best);
			best = e;
			best_c = c;
			best_self = self;
			best_nth = ncomplete;
		} else {
			spool_msg_entry_clear(&e);
		}
	}
	for (size_t k = lo; k < hi; k++) {
		if (!why[k - lo])
			continue;
		if (!best_c)
			st->bad_messages++;
		bool older = best_c && commits[k].k.seq < best_c->k.seq;
		rec_log(log, ctx, !older, "%s: committed %s discarded: %s%s", id,
			best_c ? "copy" : "message", why[k - lo],
			older ? " (a newer copy is kept)" : best_c ? " (an older copy is kept)" : "");
	}
	if (fp < fh) {
		/* fragments after the last COMMIT: a copy (or a message) never committed */
		st->orphans++;
		if (s->repair && rec_mark_dead(s, frags + fp, fh - fp) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		rec_log(log, ctx, false, "%s: incomplete %s discarded (%zu fragment(s) after its "
			"last COMMIT)", id, best_c ? "copy" : "message", fh - fp);
	}
	rc = 0;
	if (!best_c)
		goto out;
	if (rh > rl) {
		st->retired++;
		spool_msg_entry_clear(&best);
		goto out;
	}
	if (ncomplete > 1) {
		if (best_nth > 1)
			st->relocated++;
		if (!best_self || best_nth < ncomplete)
			rec_log(log, ctx, false, "%s: indexed at copy %u of %u (segment %016" PRIx64
				")", id, best_nth, ncomplete, best.commit_seg);
	}
	if ((rc = rec_apply(s, best_c, &is, &best, st)) < 0) {
		spool_msg_entry_clear(&best);
		goto out;
	}
	idx->msgs[idx->n++] = best;
out:
	free(why);
	free(is.last);
	return rc;
}

uint64_t spool_msg_entry_min_seg(const struct spool_msg_entry *m)
{
	/* Recovery indexes a relocated message at a copy that carries its DELIVERY and
	 * HOLD records after its COMMIT, so the copy's own records are all it needs. */
	uint64_t min = m->commit_seg;
	for (uint32_t i = 0; i < m->nfrag; i++)
		if (m->frags[i].seg < min)
			min = m->frags[i].seg;
	return min;
}

void spool_msg_entry_clear(struct spool_msg_entry *m)
{
	free(m->frags);
	free(m->rstate);
	if (m->rtext)
		for (uint32_t i = 0; i < m->nrstate; i++)
			free(m->rtext[i]);
	free(m->rtext);
	free(m->hold_reason);
	m->frags = NULL;
	m->nfrag = 0;
	m->rstate = NULL;
	m->rtext = NULL;
	m->nrstate = 0;
	m->held = false;
	m->hold_reason = NULL;
}

int spool_msg_entry_copy(struct spool_msg_entry *dst, const struct spool_msg_entry *src)
{
	*dst = *src;
	dst->frags = NULL;
	dst->rstate = NULL;
	dst->rtext = NULL;
	dst->hold_reason = NULL;
	if (src->nfrag) {
		dst->frags = malloc(src->nfrag * sizeof(*dst->frags));
		if (!dst->frags)
			goto fail;
		memcpy(dst->frags, src->frags, src->nfrag * sizeof(*dst->frags));
	}
	if (src->rstate && src->nrstate) {
		dst->rstate = malloc(src->nrstate);
		if (!dst->rstate)
			goto fail;
		memcpy(dst->rstate, src->rstate, src->nrstate);
	}
	if (src->rtext && src->nrstate) {
		dst->rtext = calloc(src->nrstate, sizeof(*dst->rtext));
		if (!dst->rtext)
			goto fail;
		for (uint32_t i = 0; i < src->nrstate; i++)
			if (src->rtext[i] && !(dst->rtext[i] = strdup(src->rtext[i])))
				goto fail;
	}
	if (!dst->rstate && !dst->rtext)
		dst->nrstate = 0;
	if (src->hold_reason && !(dst->hold_reason = strdup(src->hold_reason)))
		goto fail;
	return 0;
fail:
	spool_msg_entry_clear(dst);
	*dst = (struct spool_msg_entry){ 0 };
	return -ENOMEM;
}

int spool_recover(int seg_dirfd, bool repair, struct spool_index *idx,
		  struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx,
		  char *err, size_t errlen)
{
	struct rec_state s = { .repair = repair, .dirfd = seg_dirfd };
	*idx = (struct spool_index){ 0 };
	*st = (struct spool_recovery_stats){ 0 };
	int rc = rec_list_segments(seg_dirfd, repair, &s, st, log, ctx);
	if (rc < 0) {
		mx_errf(err, errlen, rc, "read spool segments: %s", strerror(-rc));
		goto out;
	}
	st->segments = (unsigned)s.nsegs;
	for (size_t i = 0; i < s.nsegs; i++) {
		if ((rc = rec_scan_segment(&s, i, idx, st, repair, log, ctx)) < 0) {
			mx_errf(err, errlen, rc, "scan spool segment %016" PRIx64 ": %s",
				 s.segs[i].no, strerror(-rc));
			goto out;
		}
		idx->last_seg = s.segs[i].no;
	}
	rec_sort(s.frags.v, s.frags.n, sizeof(struct rec_frag), rec_cmp_key);
	rec_sort(s.commits.v, s.commits.n, sizeof(struct rec_commit), rec_cmp_key);
	rec_sort(s.dels.v, s.dels.n, sizeof(struct rec_status), rec_cmp_key);
	rec_sort(s.holds.v, s.holds.n, sizeof(struct rec_status), rec_cmp_key);
	rec_sort(s.retires.v, s.retires.n, sizeof(struct rec_key), rec_cmp_key);
	idx->msgs = calloc(s.commits.n ? s.commits.n : 1, sizeof(*idx->msgs));
	if (!idx->msgs) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	const struct rec_commit *commits = s.commits.v;
	for (size_t i = 0; i < s.commits.n;) {
		size_t j = i;
		while (j < s.commits.n && strcmp(commits[j].k.id, commits[i].k.id) == 0)
			j++;
		if ((rc = rec_build_id(&s, i, j, idx, st, log, ctx)) < 0) {
			mx_errf(err, errlen, rc, "out of memory");
			goto out;
		}
		i = j;
	}
	/* built in ID order already (commits sorted by ID); sort anyway, it is cheap */
	rec_sort(idx->msgs, idx->n, sizeof(*idx->msgs), rec_cmp_entry);
	st->messages = (unsigned)idx->n;
	/* Orphans: IDs with fragments and no COMMIT at all. */
	const struct rec_frag *frags = s.frags.v;
	for (size_t i = 0; i < s.frags.n;) {
		size_t j = i;
		while (j < s.frags.n && strcmp(frags[j].k.id, frags[i].k.id) == 0)
			j++;
		size_t cl, ch;
		rec_range(&s.commits, sizeof(struct rec_commit), frags[i].k.id, &cl, &ch);
		if (cl == ch) {
			st->orphans++;
			if (repair && rec_mark_dead(&s, frags + i, j - i) < 0) {
				rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
			rec_log(log, ctx, false,
				"%s: incomplete message discarded (%zu fragment(s), never committed)",
				frags[i].k.id, j - i);
		}
		i = j;
	}
	if (repair)
		rec_punch_dead(&s, st);
	/* what the segments occupy (punched regions excluded): what the quota counts */
	for (size_t i = 0; i < s.nsegs; i++) {
		struct stat sb;
		if (fstat(s.segs[i].fd, &sb) == 0) {
			uint64_t blocks = (uint64_t)sb.st_blocks * 512u, size = (uint64_t)sb.st_size;
			idx->bytes += blocks < size ? blocks : size;
		}
	}
	rc = 0;
out:
	rec_state_free(&s);
	if (rc < 0)
		spool_index_free(idx);
	return rc;
}

void spool_index_free(struct spool_index *idx)
{
	for (size_t i = 0; i < idx->n; i++)
		spool_msg_entry_clear(&idx->msgs[i]);
	free(idx->msgs);
	*idx = (struct spool_index){ 0 };
}

const struct spool_msg_entry *spool_index_find(const struct spool_index *idx, const char *id)
{
	if (!idx->msgs)
		return NULL;
	size_t lo = 0, hi = idx->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(idx->msgs[mid].id, id);
		if (c == 0)
			return &idx->msgs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}


static int rec_open_seg(int dirfd, uint64_t no)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(no, name);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int spool_index_read(int dirfd, const struct spool_msg_entry *m, struct spool_record **out,
		     char *err, size_t errlen)
{
	int rc, fd;
	char *env = malloc(m->env_len ? m->env_len : 1);
	char *msg = malloc(m->size + 1);
	struct spool_record *r = NULL;
	if (!env || !msg) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((fd = rec_open_seg(dirfd, m->commit_seg)) < 0) {
		rc = mx_errf(err, errlen, fd, "%s: open segment: %s", m->id, strerror(-fd));
		goto fail;
	}
	rc = spool_pread_all(fd, env, m->env_len, m->env_off);
	close(fd);
	if (rc < 0) {
		mx_errf(err, errlen, rc, "%s: read envelope: %s", m->id, strerror(-rc));
		goto fail;
	}
	uint64_t off = 0;
	for (uint32_t i = 0; i < m->nfrag; i++) {
		const struct spool_frag_loc *f = &m->frags[i];
		if ((fd = rec_open_seg(dirfd, f->seg)) < 0) {
			rc = mx_errf(err, errlen, fd, "%s: open segment: %s", m->id, strerror(-fd));
			goto fail;
		}
		rc = spool_pread_all(fd, msg + off, f->len, f->off);
		close(fd);
		if (rc < 0) {
			mx_errf(err, errlen, rc, "%s: read message: %s", m->id, strerror(-rc));
			goto fail;
		}
		off += f->len;
	}
	if (off != m->size || spool_crc32c(0, msg, m->size) != m->crc) {
		rc = mx_errf(err, errlen, -EIO, "%s: message changed on disk (CRC mismatch)",
			      m->id);
		goto fail;
	}
	msg[m->size] = '\0';
	if ((rc = spool_envelope_parse(env, m->env_len, &r, err, errlen)) < 0)
		goto fail;
	if (strcmp(r->queue_id, m->id) != 0) {
		rc = mx_errf(err, errlen, -EINVAL, "%s: envelope names %s", m->id, r->queue_id);
		goto fail;
	}
	r->size = m->size;
	r->message = msg;
	free(env);
	*out = r;
	return 0;
fail:
	spool_record_free(r);
	free(env);
	free(msg);
	return rc;
}

int spool_open_seg_dir(const char *spool_path)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/seg", spool_path) >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
