/* DNS responses (RFC 1035 4.1), parsed as hostile input: see dns_message.h for what is
 * checked and what each result means. */
#include <errno.h>
#include <string.h>

#include "mxgate/errf.h"
#include "tables/dns_internal.h"
#include "tables/dns_message.h"

static const struct {
	const char *name;
	uint16_t code;
} dns_types[DNS_TYPE_MAX] = {
	[DNS_TYPE_A] = { "A", 1 },       [DNS_TYPE_AAAA] = { "AAAA", 28 },
	[DNS_TYPE_PTR] = { "PTR", 12 },  [DNS_TYPE_MX] = { "MX", 15 },
	[DNS_TYPE_TXT] = { "TXT", 16 },  [DNS_TYPE_NS] = { "NS", 2 },
	[DNS_TYPE_CNAME] = { "CNAME", 5 }, [DNS_TYPE_SOA] = { "SOA", 6 },
};

const char *dns_type_name(enum dns_type t)
{
	return (unsigned)t < DNS_TYPE_MAX ? dns_types[t].name : "?";
}

uint16_t dns_type_code(enum dns_type t)
{
	return (unsigned)t < DNS_TYPE_MAX ? dns_types[t].code : 0;
}

int dns_type_from_code(uint16_t code, enum dns_type *out)
{
	for (unsigned t = 0; t < DNS_TYPE_MAX; t++)
		if (dns_types[t].code == code) {
			*out = (enum dns_type)t;
			return 0;
		}
	return -ENOENT;
}

const char *dns_status_name(enum dns_status s)
{
	static const char *const names[DNS_STATUS_MAX] = {
		[DNS_STATUS_OK] = "ok",
		[DNS_STATUS_NODATA] = "nodata",
		[DNS_STATUS_NXDOMAIN] = "nxdomain",
		[DNS_STATUS_SERVFAIL] = "servfail",
		[DNS_STATUS_REFUSED] = "refused",
		[DNS_STATUS_RCODE] = "rcode",
		[DNS_STATUS_TRUNCATED] = "truncated",
	};
	return (unsigned)s < DNS_STATUS_MAX ? names[s] : "?";
}

/* The fixed part of one resource record (RFC 1035 4.1.3), its owner read into a buffer. */
struct dns_rr {
	uint8_t owner[DNS_NAME_WIRE_MAX];
	size_t owner_len;
	uint16_t type, rclass;
	uint32_t ttl;
	size_t rdata; /* offset of RDATA */
	uint16_t rdlen;
	size_t next;  /* offset after the record */
};

/* RFC 2181 8: a TTL with the most significant bit set is taken as zero. */
static uint32_t dns_ttl(uint32_t raw)
{
	return raw & 0x80000000u ? 0 : raw;
}

static int dns_rr_read(const uint8_t *pkt, size_t len, size_t off, struct dns_rr *rr,
		       char *err, size_t errlen)
{
	size_t p;
	int rc = dns_wire_name_unpack(pkt, len, off, rr->owner, &rr->owner_len, &p, err, errlen);
	if (rc < 0)
		return rc;
	if (len - p < 10)
		return mx_errf(err, errlen, -EBADMSG, "record at %zu: header past the end", off);
	rr->type = dns_get16(pkt + p);
	rr->rclass = dns_get16(pkt + p + 2);
	rr->ttl = dns_get32(pkt + p + 4);
	rr->rdlen = dns_get16(pkt + p + 8);
	rr->rdata = p + 10;
	if (rr->rdlen > len - rr->rdata)
		return mx_errf(err, errlen, -EBADMSG, "record at %zu: data past the end", off);
	rr->next = rr->rdata + rr->rdlen;
	return 0;
}

/* Parse state shared by the steps below. */
struct dns_parse {
	const struct dns_query *q;
	const uint8_t *pkt;
	size_t len;
	struct dns_answer *out;
	char *err;
	size_t errlen;
	size_t answers, authority; /* section offsets */
	uint16_t ancount, nscount, arcount;
	uint32_t ttl;              /* running minimum */
	bool ttl_set;
};

/* A name that must fill RDATA from `off` to its end exactly, as the answer spells it, but
 * for the labels it takes from the question (compressed against it): those are
 * lower-cased (dns_wire_name_unpack_fold()). */
static int dns_rdata_name(const struct dns_parse *ps, const struct dns_rr *rr, size_t off,
			  uint8_t *wire, size_t *wire_len, size_t *next)
{
	/* The name's own octets must stay inside RDATA: parse against RDATA's end. Pointers
	 * reach only before the name, so the rest of the packet needs no other bound. The
	 * question's name is at DNS_HEADER_LEN, uncompressed, as we sent it. */
	return dns_wire_name_unpack_fold(ps->pkt, rr->rdata + rr->rdlen, off, wire, wire_len, next,
					 DNS_HEADER_LEN + ps->q->qname_len, ps->err,
					 ps->errlen);
}

static void dns_ttl_min(struct dns_parse *ps, uint32_t ttl)
{
	if (!ps->ttl_set || ttl < ps->ttl)
		ps->ttl = ttl;
	ps->ttl_set = true;
}

/* Copy n bytes to the arena with a NUL after them. Returns false when they do not fit. */
static bool dns_arena_add(struct dns_answer *a, const void *p, size_t n, struct dns_text *t)
{
	if (n + 1 > DNS_ARENA_MAX - a->arena_used)
		return false;
	t->off = a->arena_used;
	t->len = (uint32_t)n;
	memcpy(a->arena + a->arena_used, p, n);
	a->arena[a->arena_used + n] = '\0';
	a->arena_used += (uint32_t)(n + 1);
	return true;
}

static bool dns_arena_add_name(struct dns_answer *a, const uint8_t *wire, size_t wlen,
			       struct dns_text *t)
{
	char text[DNS_NAME_TEXT_MAX + 1];
	size_t n;
	if (dns_wire_name_text(wire, wlen, text, sizeof(text), &n) < 0)
		return false; /* cannot happen: the buffer fits any name */
	return dns_arena_add(a, text, n, t);
}

/* Walk every record of the three sections for form; note the sections and the OPT record. */
static int dns_walk(struct dns_parse *ps, size_t off)
{
	struct dns_rr rr;
	struct dns_answer *a = ps->out;
	bool opt = false;
	uint16_t counts[3] = { ps->ancount, ps->nscount, ps->arcount };
	for (int s = 0; s < 3; s++) {
		if (s == 0)
			ps->answers = off;
		else if (s == 1)
			ps->authority = off;
		/* each record takes at least 11 octets, so the packet bounds this loop */
		for (unsigned i = 0; i < counts[s]; i++) {
			int rc = dns_rr_read(ps->pkt, ps->len, off, &rr, ps->err, ps->errlen);
			if (rc < 0)
				return rc;
			if (rr.type == DNS_WIRE_TYPE_OPT) {
				/* RFC 6891 6.1.1: only in the additional section, at most one, owned
				 * by the root */
				if (s != 2 || opt || rr.owner_len != 1)
					return mx_errf(ps->err, ps->errlen, -EBADMSG,
						       "misplaced or repeated OPT record at %zu", off);
				opt = true;
				a->edns = true;
				a->edns_udp_size = rr.rclass;
				/* RFC 6891 6.1.3: the upper 8 bits of the 12-bit RCODE */
				a->rcode = (uint16_t)(a->rcode | ((rr.ttl >> 24) << 4));
			}
			off = rr.next;
		}
	}
	return 0;
}

/* Is there a record of type `type` and class IN owned by name in the answer section? When
 * want_rr, the first one's fixed part is left in *rr. */
static int dns_find(struct dns_parse *ps, const uint8_t *name, size_t nlen, uint16_t type,
		    struct dns_rr *rr, bool *found)
{
	size_t off = ps->answers;
	*found = false;
	for (unsigned i = 0; i < ps->ancount; i++) {
		int rc = dns_rr_read(ps->pkt, ps->len, off, rr, ps->err, ps->errlen);
		if (rc < 0)
			return rc;
		if (rr->type == type && rr->rclass == DNS_WIRE_CLASS_IN &&
		    dns_wire_name_eq(rr->owner, rr->owner_len, name, nlen)) {
			*found = true;
			return 0;
		}
		off = rr->next;
	}
	return 0;
}

/* Follow CNAMEs from the question name; leaves the final name in name/nlen. */
static int dns_follow_cnames(struct dns_parse *ps, uint8_t *name, size_t *nlen)
{
	struct dns_rr rr;
	uint16_t qtype = dns_type_code(ps->q->type);
	if (ps->q->type == DNS_TYPE_CNAME)
		return 0; /* the CNAME itself is the answer */
	for (;;) {
		bool found;
		/* data of the asked type at this name ends the chain (a CNAME beside it would
		 * be a zone error, RFC 1034 3.6.2; the data wins) */
		int rc = dns_find(ps, name, *nlen, qtype, &rr, &found);
		if (rc < 0 || found)
			return rc;
		rc = dns_find(ps, name, *nlen, dns_type_code(DNS_TYPE_CNAME), &rr, &found);
		if (rc < 0 || !found)
			return rc;
		if (ps->out->cname_count >= DNS_CNAME_DEPTH_MAX)
			return mx_errf(ps->err, ps->errlen, -ELOOP,
				       "more than %d CNAMEs from the question (a loop?)",
				       DNS_CNAME_DEPTH_MAX);
		size_t next;
		rc = dns_rdata_name(ps, &rr, rr.rdata, name, nlen, &next);
		if (rc < 0)
			return rc;
		if (next != rr.rdata + rr.rdlen)
			return mx_errf(ps->err, ps->errlen, -EBADMSG,
				       "CNAME at %zu: bad data length", rr.rdata);
		ps->out->cname_count++;
		dns_ttl_min(ps, dns_ttl(rr.ttl));
	}
}

/* TXT RDATA (RFC 1035 3.3.14): one or more character-strings. */
static int dns_record_txt(struct dns_parse *ps, const struct dns_rr *rr, struct dns_record *r,
			  bool *kept)
{
	struct dns_answer *a = ps->out;
	const uint8_t *p = ps->pkt + rr->rdata;
	size_t end = rr->rdlen;
	if (end == 0)
		return mx_errf(ps->err, ps->errlen, -EBADMSG, "TXT at %zu: no string",
			       rr->rdata);
	/* validate the whole RDATA first: a short string is malformed even past the bound */
	for (size_t i = 0; i < end; i += (size_t)p[i] + 1)
		if ((size_t)p[i] + 1 > end - i)
			return mx_errf(ps->err, ps->errlen, -EBADMSG,
				       "TXT at %zu: string past the data", rr->rdata);
	/* the joined text, whole strings only, up to DNS_TXT_RECORD_MAX */
	size_t joined = 0, nstr = 0;
	for (size_t i = 0; i < end; i += (size_t)p[i] + 1) {
		if (joined + p[i] > DNS_TXT_RECORD_MAX || a->nstrings + nstr >= DNS_TXT_STRINGS_MAX) {
			r->txt_truncated = true;
			break;
		}
		joined += p[i];
		nstr++;
	}
	if (joined + 1 > DNS_ARENA_MAX - a->arena_used) {
		*kept = false;
		return 0;
	}
	r->txt.off = a->arena_used;
	r->txt.len = (uint32_t)joined;
	r->txt_first = (uint16_t)a->nstrings;
	r->txt_count = (uint16_t)nstr;
	size_t at = 0, i = 0;
	for (size_t s = 0; s < nstr; s++) {
		size_t l = p[i];
		memcpy(a->arena + a->arena_used + at, p + i + 1, l);
		a->strings[a->nstrings].off = (uint32_t)at;
		a->strings[a->nstrings].len = (uint32_t)l;
		a->nstrings++;
		at += l;
		i += l + 1;
	}
	a->arena[a->arena_used + joined] = '\0';
	a->arena_used += (uint32_t)(joined + 1);
	*kept = true;
	return 0;
}

/* Decode one record of the asked type into *r. *kept is false when the arena is full. */
static int dns_record_decode(struct dns_parse *ps, const struct dns_rr *rr, struct dns_record *r,
			     bool *kept)
{
	struct dns_answer *a = ps->out;
	uint8_t wire[DNS_NAME_WIRE_MAX];
	size_t wlen, next, end = rr->rdata + rr->rdlen;
	int rc;
	memset(r, 0, sizeof(*r));
	r->type = ps->q->type;
	r->ttl = dns_ttl(rr->ttl);
	*kept = true;
	switch (ps->q->type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA: {
		size_t n = ps->q->type == DNS_TYPE_A ? 4 : 16;
		if (rr->rdlen != n)
			return mx_errf(ps->err, ps->errlen, -EBADMSG, "%s at %zu: length %u",
				       dns_type_name(ps->q->type), rr->rdata, rr->rdlen);
		r->addr.family = n == 4 ? AF_INET : AF_INET6;
		memcpy(r->addr.bytes, ps->pkt + rr->rdata, n);
		return 0;
	}
	case DNS_TYPE_PTR:
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_MX: {
		size_t at = rr->rdata;
		if (ps->q->type == DNS_TYPE_MX) {
			if (rr->rdlen < 3)
				return mx_errf(ps->err, ps->errlen, -EBADMSG,
					       "MX at %zu: length %u", rr->rdata, rr->rdlen);
			r->pref = dns_get16(ps->pkt + at);
			at += 2;
		}
		rc = dns_rdata_name(ps, rr, at, wire, &wlen, &next);
		if (rc < 0)
			return rc;
		if (next != end)
			return mx_errf(ps->err, ps->errlen, -EBADMSG, "%s at %zu: bad data length",
				       dns_type_name(ps->q->type), rr->rdata);
		if (ps->q->type == DNS_TYPE_MX && wlen == 1)
			a->null_mx = true; /* RFC 7505 3; Postfix: any MX to "." (DNS_NULLMX) */
		*kept = dns_arena_add_name(a, wire, wlen, &r->name);
		return 0;
	}
	case DNS_TYPE_SOA: {
		uint8_t rname[DNS_NAME_WIRE_MAX];
		size_t rlen;
		rc = dns_rdata_name(ps, rr, rr->rdata, wire, &wlen, &next);
		if (rc == 0)
			rc = dns_rdata_name(ps, rr, next, rname, &rlen, &next);
		if (rc < 0)
			return rc;
		if (end - next != 20)
			return mx_errf(ps->err, ps->errlen, -EBADMSG, "SOA at %zu: bad data length",
				       rr->rdata);
		for (int i = 0; i < 5; i++)
			r->soa[i] = dns_get32(ps->pkt + next + 4 * (size_t)i);
		*kept = dns_arena_add_name(a, wire, wlen, &r->name) &&
			dns_arena_add_name(a, rname, rlen, &r->rname);
		return 0;
	}
	case DNS_TYPE_TXT:
		return dns_record_txt(ps, rr, r, kept);
	case DNS_TYPE_MAX:
		break;
	}
	return mx_errf(ps->err, ps->errlen, -EINVAL, "bad query type");
}

/* Collect the records of the asked type owned by name. */
static int dns_collect(struct dns_parse *ps, const uint8_t *name, size_t nlen)
{
	struct dns_answer *a = ps->out;
	struct dns_rr rr;
	uint16_t qtype = dns_type_code(ps->q->type);
	size_t off = ps->answers;
	for (unsigned i = 0; i < ps->ancount; i++, off = rr.next) {
		int rc = dns_rr_read(ps->pkt, ps->len, off, &rr, ps->err, ps->errlen);
		if (rc < 0)
			return rc;
		if (rr.type != qtype || rr.rclass != DNS_WIRE_CLASS_IN ||
		    !dns_wire_name_eq(rr.owner, rr.owner_len, name, nlen))
			continue;
		if (a->count >= DNS_RECORDS_MAX) {
			/* Postfix keeps 100 and drops the rest; they are still checked */
			struct dns_record scratch;
			uint32_t used = a->arena_used, nstrings = a->nstrings;
			bool null_mx = a->null_mx;
			bool kept;
			rc = dns_record_decode(ps, &rr, &scratch, &kept);
			a->arena_used = used;
			a->nstrings = nstrings;
			a->null_mx = null_mx;
			if (rc < 0)
				return rc;
			a->dropped++;
			continue;
		}
		struct dns_record *r = &a->records[a->count];
		uint32_t used = a->arena_used, nstrings = a->nstrings;
		bool kept;
		rc = dns_record_decode(ps, &rr, r, &kept);
		if (rc < 0)
			return rc;
		if (!kept) {
			a->arena_used = used; /* a half-written SOA leaves nothing behind */
			a->nstrings = nstrings;
			a->dropped++;
			continue;
		}
		a->count++;
		dns_ttl_min(ps, r->ttl);
	}
	return 0;
}

/* RFC 2308 5: the negative TTL is min(SOA TTL, SOA MINIMUM) of the SOA in the authority
 * section. Only an SOA owned by the final name or one of its ancestors counts (any other is
 * not about this name). */
static int dns_negative_ttl(struct dns_parse *ps, const uint8_t *name, size_t nlen)
{
	struct dns_rr rr;
	size_t off = ps->authority;
	for (unsigned i = 0; i < ps->nscount; i++, off = rr.next) {
		int rc = dns_rr_read(ps->pkt, ps->len, off, &rr, ps->err, ps->errlen);
		if (rc < 0)
			return rc;
		if (rr.type != dns_type_code(DNS_TYPE_SOA) || rr.rclass != DNS_WIRE_CLASS_IN ||
		    !dns_wire_name_under(name, nlen, rr.owner, rr.owner_len))
			continue;
		uint8_t w[DNS_NAME_WIRE_MAX];
		size_t wl, next;
		rc = dns_rdata_name(ps, &rr, rr.rdata, w, &wl, &next);
		if (rc == 0)
			rc = dns_rdata_name(ps, &rr, next, w, &wl, &next);
		if (rc < 0)
			return rc;
		if (rr.rdata + rr.rdlen - next != 20)
			return mx_errf(ps->err, ps->errlen, -EBADMSG, "SOA at %zu: bad data length",
				       rr.rdata);
		uint32_t minimum = dns_ttl(dns_get32(ps->pkt + next + 16));
		uint32_t ttl = dns_ttl(rr.ttl);
		dns_ttl_min(ps, ttl < minimum ? ttl : minimum);
		ps->out->ttl = ps->ttl;
		ps->out->ttl_valid = true;
		return 0;
	}
	/* RFC 2308 5: "Negative responses without SOA records SHOULD NOT be cached" */
	ps->out->ttl = 0;
	ps->out->ttl_valid = false;
	return 0;
}

static void dns_answer_reset(struct dns_answer *a)
{
	a->status = DNS_STATUS_RCODE;
	a->rcode = 0;
	a->authoritative = a->recursion_available = a->edns = false;
	a->edns_udp_size = 0;
	a->ttl = 0;
	a->ttl_valid = false;
	a->null_mx = false;
	a->name[0] = '\0';
	a->cname_count = a->count = a->dropped = a->nstrings = 0;
	a->arena_used = 0;
}

int dns_response_parse(const struct dns_query *q, const uint8_t *pkt, size_t len,
		       struct dns_answer *out, char *err, size_t errlen)
{
	struct dns_parse ps = { .q = q, .pkt = pkt, .len = len, .out = out, .err = err,
				.errlen = errlen };
	uint8_t name[DNS_NAME_WIRE_MAX];
	size_t nlen, off;
	int rc;

	dns_answer_reset(out);
	if ((unsigned)q->type >= DNS_TYPE_MAX || q->qname_len < 1 ||
	    q->qname_len > DNS_NAME_WIRE_MAX || !memchr(q->name, '\0', sizeof(q->name)))
		return mx_errf(err, errlen, -EINVAL, "query not initialised");
	/* RFC 1035 4.1.1: is this a response to our query at all? */
	if (len < DNS_HEADER_LEN)
		return mx_errf(err, errlen, -ENOMSG, "%zu bytes: shorter than a header", len);
	uint16_t flags = dns_get16(pkt + 2);
	if (dns_get16(pkt) != q->id)
		return mx_errf(err, errlen, -ENOMSG, "ID %u, expected %u", dns_get16(pkt), q->id);
	if (!(flags & 0x8000))
		return mx_errf(err, errlen, -ENOMSG, "not a response (QR clear)");
	if (((flags >> 11) & 0xf) != 0)
		return mx_errf(err, errlen, -ENOMSG, "opcode %u", (flags >> 11) & 0xf);
	if (dns_get16(pkt + 4) != 1)
		return mx_errf(err, errlen, -ENOMSG, "%u questions", dns_get16(pkt + 4));
	ps.ancount = dns_get16(pkt + 6);
	ps.nscount = dns_get16(pkt + 8);
	ps.arcount = dns_get16(pkt + 10);

	/* The question must be ours byte for byte: the 0x20 case pattern included. */
	char why[128];
	if (dns_wire_name_unpack(pkt, len, DNS_HEADER_LEN, name, &nlen, &off, why,
				 sizeof(why)) < 0)
		return mx_errf(err, errlen, -ENOMSG, "question: %s", why);
	if (nlen != q->qname_len || memcmp(name, q->qname, nlen) != 0)
		return mx_errf(err, errlen, -ENOMSG, "question name differs from the query's");
	if (len - off < 4)
		return mx_errf(err, errlen, -ENOMSG, "question past the end");
	if (dns_get16(pkt + off) != dns_type_code(q->type) ||
	    dns_get16(pkt + off + 2) != DNS_WIRE_CLASS_IN)
		return mx_errf(err, errlen, -ENOMSG, "question type or class differs");
	off += 4;

	out->authoritative = (flags & 0x0400) != 0;
	out->recursion_available = (flags & 0x0080) != 0;
	out->rcode = flags & 0xf;
	memcpy(out->name, q->name, strlen(q->name) + 1);
	if (flags & 0x0200) {
		/* RFC 1035 4.2.1 / RFC 7766 5: truncated; the caller asks over TCP */
		out->status = DNS_STATUS_TRUNCATED;
		return 0;
	}

	rc = dns_walk(&ps, off);
	if (rc < 0)
		return rc;
	switch (out->rcode) {
	case DNS_RCODE_NOERROR:
	case DNS_RCODE_NXDOMAIN:
		break;
	case DNS_RCODE_SERVFAIL:
		out->status = DNS_STATUS_SERVFAIL;
		return 0;
	case DNS_RCODE_REFUSED:
		out->status = DNS_STATUS_REFUSED;
		return 0;
	default:
		out->status = DNS_STATUS_RCODE;
		return 0;
	}

	/* The chain starts at the question name (case folded: owners match it in any case). */
	memcpy(name, q->qname, q->qname_len);
	nlen = q->qname_len;
	rc = dns_follow_cnames(&ps, name, &nlen);
	if (rc < 0)
		return rc;
	dns_wire_name_lower(name, nlen);
	(void)dns_wire_name_text(name, nlen, out->name, sizeof(out->name), NULL);

	if (out->rcode == DNS_RCODE_NOERROR) {
		rc = dns_collect(&ps, name, nlen);
		if (rc < 0)
			return rc;
		if (out->count + out->dropped > 0) {
			out->status = DNS_STATUS_OK;
			out->ttl = ps.ttl;
			out->ttl_valid = true;
			return 0;
		}
		out->status = DNS_STATUS_NODATA;
	} else {
		out->status = DNS_STATUS_NXDOMAIN;
	}
	return dns_negative_ttl(&ps, name, nlen);
}

const char *dns_answer_text(const struct dns_answer *a, struct dns_text t)
{
	if (t.off > a->arena_used || t.len > a->arena_used - t.off)
		return ""; /* not a span of this answer */
	return a->arena + t.off;
}

const char *dns_answer_txt_string(const struct dns_answer *a, const struct dns_record *rec,
				  unsigned i, size_t *len)
{
	*len = 0;
	if (rec->type != DNS_TYPE_TXT || i >= rec->txt_count ||
	    (size_t)rec->txt_first + i >= a->nstrings)
		return "";
	const struct dns_text *s = &a->strings[rec->txt_first + i];
	*len = s->len;
	return dns_answer_text(a, rec->txt) + s->off;
}

int dns_record_addr_text(const struct dns_record *rec, char *out, size_t cap)
{
	char buf[INET6_ADDRSTRLEN];
	if (rec->type != DNS_TYPE_A && rec->type != DNS_TYPE_AAAA)
		return -EINVAL;
	mx_inet_format(&rec->addr, buf, sizeof(buf));
	size_t n = strlen(buf);
	if (n == 0)
		return -EINVAL;
	if (cap < n + 1)
		return -ENOSPC;
	memcpy(out, buf, n + 1);
	return 0;
}
