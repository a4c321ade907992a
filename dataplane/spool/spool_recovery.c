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
	size_t len;
};

struct rec_frag {
	char id[QUEUE_ID_SIZE];
	uint64_t seq; /* order of appearance: segments in order, records in order */
	size_t seg;   /* index into the segment array */
	uint64_t off;
	uint64_t msg_off;
	uint32_t len;
};

struct rec_commit {
	char id[QUEUE_ID_SIZE];
	size_t seg;
	uint64_t env_off;
	uint32_t env_len;
	uint64_t msg_len;
	uint32_t msg_crc;
	uint32_t nfrag;
};

struct rec_delivery {
	char id[QUEUE_ID_SIZE];
	uint64_t seq;
	uint32_t rcpt;
	uint8_t state;
};

struct rec_state {
	struct rec_delivery *dels;
	size_t ndels, capdels;
	char (*retires)[QUEUE_ID_SIZE];
	size_t nretires, capretires;
	struct rec_seg *segs;
	size_t nsegs;
	struct rec_frag *frags;
	size_t nfrags, capfrags;
	struct rec_commit *commits;
	size_t ncommits, capcommits;
	uint64_t seq;
};

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

static int rec_cmp_frag(const void *a, const void *b)
{
	const struct rec_frag *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Commits by ID; also compares a bare ID (the first member) for bsearch(). */
static int rec_cmp_commit(const void *a, const void *b)
{
	return strcmp((const char *)a, ((const struct rec_commit *)b)->id);
}

static int rec_cmp_delivery(const void *a, const void *b)
{
	const struct rec_delivery *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int rec_cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int rec_cmp_entry(const void *a, const void *b)
{
	const struct spool_msg_entry *x = a, *y = b;
	return strcmp(x->id, y->id);
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
			st->corrupt_regions++;
			rec_log(log, ctx, true,
				"spool segment %s: %zu corrupt bytes at offset %zu skipped; records "
				"after them are kept",
				name, next - pos, pos);
			pos = next;
			first = false;
			continue;
		}
		first = false;
		if (r.type == SPOOL_REC_FRAGMENT) {
			if (rec_grow((void **)&s->frags, &s->capfrags, s->nfrags, sizeof(*s->frags)))
				return -ENOMEM;
			struct rec_frag *f = &s->frags[s->nfrags++];
			memcpy(f->id, r.id, QUEUE_ID_SIZE);
			f->seq = s->seq++;
			f->seg = si;
			f->off = (uint64_t)((const unsigned char *)r.data.ptr - seg->map);
			f->msg_off = r.msg_off;
			f->len = (uint32_t)r.data.len;
			rec_note_id(idx, r.id);
		} else if (r.type == SPOOL_REC_COMMIT) {
			if (rec_grow((void **)&s->commits, &s->capcommits, s->ncommits,
				     sizeof(*s->commits)))
				return -ENOMEM;
			struct rec_commit *c = &s->commits[s->ncommits++];
			memcpy(c->id, r.id, QUEUE_ID_SIZE);
			c->seg = si;
			c->env_off = (uint64_t)((const unsigned char *)r.data.ptr - seg->map);
			c->env_len = (uint32_t)r.data.len;
			c->msg_len = r.msg_len;
			c->msg_crc = r.msg_crc;
			c->nfrag = r.nfrag;
			rec_note_id(idx, r.id);
		} else if (r.type == SPOOL_REC_DELIVERY) {
			/* IDs named by delivery records count for the ID floor too: a new
			 * message must never take the ID of one whose RETIRE survives */
			rec_note_id(idx, r.id);
			if (r.rcpt >= SPOOL_MAX_RCPTS) {
				rec_log(log, ctx, true,
					"%s: delivery record for recipient %u ignored (out of range)",
					r.id, r.rcpt);
			} else {
				if (rec_grow((void **)&s->dels, &s->capdels, s->ndels,
					     sizeof(*s->dels)))
					return -ENOMEM;
				struct rec_delivery *d = &s->dels[s->ndels++];
				memcpy(d->id, r.id, QUEUE_ID_SIZE);
				d->seq = s->seq++;
				d->rcpt = r.rcpt;
				d->state = (uint8_t)r.rcpt_state;
			}
		} else if (r.type == SPOOL_REC_RETIRE) {
			rec_note_id(idx, r.id);
			if (rec_grow((void **)&s->retires, &s->capretires, s->nretires,
				     sizeof(*s->retires)))
				return -ENOMEM;
			memcpy(s->retires[s->nretires++], r.id, QUEUE_ID_SIZE);
		}
		pos += (size_t)n;
		valid_end = pos;
	}
	if (valid_end < seg->len) {
		st->torn_tails++;
		st->torn_bytes += seg->len - valid_end;
		rec_log(log, ctx, true,
			"spool segment %s: torn or corrupt tail of %zu bytes at offset %zu "
			"discarded%s",
			name, seg->len - valid_end, valid_end,
			repair ? " (truncated)" : "");
		if (repair) {
			/* The mapping stays valid for the bytes we keep. */
			if (ftruncate(seg->fd, (off_t)valid_end) != 0 || fsync(seg->fd) != 0)
				return -errno;
			seg->len = valid_end;
		}
	}
	idx->bytes += seg->len;
	return 0;
}

/* Check one committed message against its fragments (frags[lo..hi) share its ID, in
 * write order). Returns true and fills e when it is whole. */
static bool rec_check_message(const struct rec_state *s, const struct rec_commit *c,
			      const struct rec_frag *frags, size_t n, struct spool_msg_entry *e,
			      const char **why)
{
	uint64_t off = 0;
	uint32_t crc = 0;
	size_t used = 0;
	*why = NULL;
	for (size_t i = 0; i < n; i++) {
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
	for (size_t i = 0; i < used; i++)
		e->frags[i] = (struct spool_frag_loc){ .seg = s->segs[frags[i].seg].no,
						       .off = frags[i].off,
						       .len = frags[i].len };
	memcpy(e->id, c->id, QUEUE_ID_SIZE);
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
		}
	}
	free(nos);
	return rc;
}

static void rec_state_free(struct rec_state *s)
{
	for (size_t i = 0; i < s->nsegs; i++) {
		if (s->segs[i].map)
			munmap((void *)s->segs[i].map, s->segs[i].len);
		close(s->segs[i].fd);
	}
	free(s->segs);
	free(s->frags);
	free(s->commits);
	free(s->dels);
	free(s->retires);
}

/* Apply RETIRE and DELIVERY records to the kept messages. */
static int rec_apply_deliveries(struct rec_state *s, struct spool_index *idx,
				struct spool_recovery_stats *st)
{
	rec_sort(s->retires, s->nretires, sizeof(*s->retires), rec_cmp_id);
	rec_sort(s->dels, s->ndels, sizeof(*s->dels), rec_cmp_delivery);
	size_t kept = 0;
	for (size_t i = 0; i < idx->n; i++) {
		struct spool_msg_entry *e = &idx->msgs[i];
		if (s->nretires &&
		    bsearch(e->id, s->retires, s->nretires, sizeof(*s->retires), rec_cmp_id)) {
			st->retired++;
			spool_msg_entry_clear(e);
			continue;
		}
		size_t lo = 0, hi = s->ndels;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (strcmp(s->dels[mid].id, e->id) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		uint32_t need = 0;
		size_t end = lo;
		for (; end < s->ndels && strcmp(s->dels[end].id, e->id) == 0; end++)
			if (s->dels[end].rcpt + 1 > need)
				need = s->dels[end].rcpt + 1;
		if (need) {
			e->rstate = calloc(need, 1);
			if (!e->rstate)
				return -ENOMEM;
			e->nrstate = need;
			/* in write order: a later record for the same recipient wins */
			for (size_t k = lo; k < end; k++) {
				e->rstate[s->dels[k].rcpt] = s->dels[k].state;
				st->deliveries++;
			}
		}
		idx->msgs[kept++] = *e;
	}
	idx->n = kept;
	return 0;
}

uint64_t spool_msg_entry_min_seg(const struct spool_msg_entry *m)
{
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
	m->frags = NULL;
	m->rstate = NULL;
	m->nrstate = 0;
}

int spool_recover(int seg_dirfd, bool repair, struct spool_index *idx,
		  struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx,
		  char *err, size_t errlen)
{
	struct rec_state s = { 0 };
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
	rec_sort(s.frags, s.nfrags, sizeof(*s.frags), rec_cmp_frag);
	idx->msgs = calloc(s.ncommits ? s.ncommits : 1, sizeof(*idx->msgs));
	if (!idx->msgs) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < s.ncommits; i++) {
		const struct rec_commit *c = &s.commits[i];
		/* first fragment with this ID */
		size_t lo = 0, hi = s.nfrags;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (strcmp(s.frags[mid].id, c->id) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		size_t end = lo;
		while (end < s.nfrags && strcmp(s.frags[end].id, c->id) == 0)
			end++;
		const char *why = NULL;
		struct spool_msg_entry e = { 0 };
		/* no fragments at all: frags is NULL, and NULL + 0 is still undefined */
		const struct rec_frag *first = s.nfrags ? s.frags + lo : NULL;
		if (rec_check_message(&s, c, first, end - lo, &e, &why)) {
			idx->msgs[idx->n++] = e;
			continue;
		}
		st->bad_messages++;
		rec_log(log, ctx, true, "%s: committed message discarded: %s", c->id, why);
	}
	rec_sort(idx->msgs, idx->n, sizeof(*idx->msgs), rec_cmp_entry);
	/* The writer never commits an ID twice; if a copy did appear, keep one. */
	size_t kept = 0;
	for (size_t i = 0; i < idx->n; i++) {
		if (kept && strcmp(idx->msgs[kept - 1].id, idx->msgs[i].id) == 0) {
			st->bad_messages++;
			rec_log(log, ctx, true, "%s: second COMMIT for the same ID ignored",
				idx->msgs[i].id);
			free(idx->msgs[i].frags);
			continue;
		}
		idx->msgs[kept++] = idx->msgs[i];
	}
	idx->n = kept;
	if ((rc = rec_apply_deliveries(&s, idx, st)) < 0) {
		mx_errf(err, errlen, rc, "out of memory");
		goto out;
	}
	st->messages = (unsigned)idx->n;
	/* Orphans: IDs with fragments and no COMMIT at all. */
	rec_sort(s.commits, s.ncommits, sizeof(*s.commits), rec_cmp_commit);
	for (size_t i = 0; i < s.nfrags;) {
		size_t j = i;
		while (j < s.nfrags && strcmp(s.frags[j].id, s.frags[i].id) == 0)
			j++;
		if (!s.ncommits || !bsearch(s.frags[i].id, s.commits, s.ncommits, sizeof(*s.commits),
			     rec_cmp_commit)) {
			st->orphans++;
			rec_log(log, ctx, false,
				"%s: incomplete message discarded (%zu fragment(s), never committed)",
				s.frags[i].id, j - i);
		}
		i = j;
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

static int rec_pread_all(int fd, char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
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
	rc = rec_pread_all(fd, env, m->env_len, m->env_off);
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
		rc = rec_pread_all(fd, msg + off, f->len, f->off);
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
