/* DNS queries (RFC 1035 4.1, EDNS0 RFC 6891, DNS 0x20) and the TCP framing of messages
 * (RFC 1035 4.2.2). */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "tables/dns_internal.h"
#include "tables/dns_message.h"

int dns_query_init(struct dns_query *q, const char *name, enum dns_type type, uint16_t id,
		   uint16_t edns_udp_size, const uint8_t *random, size_t random_len)
{
	size_t len;
	memset(q, 0, sizeof(*q));
	if ((unsigned)type >= DNS_TYPE_MAX || !name)
		return -EINVAL;
	int rc = dns_name_normalize(name, strlen(name), q->name, sizeof(q->name), &len);
	if (rc < 0)
		return rc == -ENOSPC ? -ENAMETOOLONG : rc;
	q->id = id;
	q->type = type;
	q->edns_udp_size = edns_udp_size == 0 ? 0
			   : edns_udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : edns_udp_size;
	q->qname_len = (uint16_t)dns_name_to_wire(q->name, len, q->qname);

	/* draft-vixie-dnsext-dns0x20 3: each letter's case carries one random bit; a
	 * response must echo the question unchanged, so an off-path spoofer must also guess
	 * these bits. The labels are walked so that length octets are never touched. */
	size_t bit = 0;
	for (size_t p = 0; random && p < q->qname_len && q->qname[p] != 0;) {
		size_t l = q->qname[p++];
		for (size_t i = 0; i < l; i++, p++) {
			uint8_t c = q->qname[p];
			if (c < 'a' || c > 'z')
				continue;
			if (bit / 8 < random_len && (random[bit / 8] >> (bit % 8)) & 1)
				q->qname[p] = (uint8_t)(c - ('a' - 'A'));
			bit++;
		}
	}
	return 0;
}

size_t dns_query_len(const struct dns_query *q)
{
	/* header, QNAME, QTYPE, QCLASS, and the OPT record: root, TYPE, CLASS, TTL, RDLEN */
	return DNS_HEADER_LEN + q->qname_len + 4 + (q->edns_udp_size ? 11 : 0);
}

int dns_query_encode(const struct dns_query *q, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = dns_query_len(q);
	*len = need;
	if (cap < need)
		return -ENOSPC;
	assert(q->qname_len >= 1 && q->qname_len <= DNS_NAME_WIRE_MAX);
	/* RFC 1035 4.1.1: ID; QR=0 OPCODE=0 AA=0 TC=0 RD=1 RA=0 Z=0 RCODE=0; QDCOUNT=1;
	 * ANCOUNT=0; NSCOUNT=0; ARCOUNT=1 with EDNS */
	dns_put16(buf, q->id);
	dns_put16(buf + 2, 0x0100);
	dns_put16(buf + 4, 1);
	dns_put16(buf + 6, 0);
	dns_put16(buf + 8, 0);
	dns_put16(buf + 10, q->edns_udp_size ? 1 : 0);
	size_t n = DNS_HEADER_LEN;
	memcpy(buf + n, q->qname, q->qname_len);
	n += q->qname_len;
	dns_put16(buf + n, dns_type_code(q->type));
	dns_put16(buf + n + 2, DNS_WIRE_CLASS_IN);
	n += 4;
	if (q->edns_udp_size) {
		/* RFC 6891 6.1.2-6.1.3: owner root, TYPE OPT, CLASS = requestor's UDP payload
		 * size, TTL = extended RCODE 0, VERSION 0, DO 0, Z 0; no options */
		buf[n++] = 0;
		dns_put16(buf + n, DNS_WIRE_TYPE_OPT);
		dns_put16(buf + n + 2, q->edns_udp_size);
		memset(buf + n + 4, 0, 6); /* TTL (4) and RDLEN (2) */
		n += 10;
	}
	assert(n == need);
	return 0;
}

int dns_tcp_frame(const uint8_t *msg, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
	if (len > DNS_MESSAGE_MAX)
		return -EMSGSIZE;
	*outlen = len + 2;
	if (cap < len + 2)
		return -ENOSPC;
	memmove(out + 2, msg, len); /* msg may already sit at out */
	dns_put16(out, (uint16_t)len);
	return 0;
}

const char *dns_tcp_state_name(enum dns_tcp_state s)
{
	static const char *const names[DNS_TCP_STATE_MAX] = {
		[DNS_TCP_LENGTH] = "length",
		[DNS_TCP_MESSAGE] = "message",
		[DNS_TCP_DONE] = "done",
		[DNS_TCP_FAILED] = "failed",
	};
	return (unsigned)s < DNS_TCP_STATE_MAX ? names[s] : "?";
}

/* The one place the reader's state changes. */
static void dns_tcp_enter_state(struct dns_tcp_reader *r, enum dns_tcp_state s)
{
	switch (s) {
	case DNS_TCP_LENGTH:
		r->lenhave = 0;
		r->msg_len = 0;
		r->have = 0;
		break;
	case DNS_TCP_MESSAGE:
		r->have = 0;
		break;
	case DNS_TCP_DONE:
		assert(r->have == r->msg_len);
		break;
	case DNS_TCP_FAILED:
	case DNS_TCP_STATE_MAX:
		break;
	}
	r->state = s;
}

void dns_tcp_reader_init(struct dns_tcp_reader *r)
{
	dns_tcp_enter_state(r, DNS_TCP_LENGTH);
}

int dns_tcp_reader_feed(struct dns_tcp_reader *r, const uint8_t *data, size_t len,
			size_t *used)
{
	assert(r->state == DNS_TCP_LENGTH || r->state == DNS_TCP_MESSAGE);
	size_t i = 0;
	*used = 0;
	while (i < len) {
		if (r->state == DNS_TCP_LENGTH) {
			r->lenbuf[r->lenhave++] = data[i++];
			if (r->lenhave < 2)
				continue;
			r->msg_len = dns_get16(r->lenbuf);
			if (r->msg_len < DNS_HEADER_LEN) {
				/* no DNS message is this short; the stream cannot resync */
				*used = i;
				dns_tcp_enter_state(r, DNS_TCP_FAILED);
				return -EBADMSG;
			}
			dns_tcp_enter_state(r, DNS_TCP_MESSAGE);
			continue;
		}
		size_t take = (size_t)(r->msg_len - r->have);
		if (take > len - i)
			take = len - i;
		memcpy(r->msg + r->have, data + i, take);
		r->have = (uint16_t)(r->have + take);
		i += take;
		if (r->have == r->msg_len) {
			*used = i;
			dns_tcp_enter_state(r, DNS_TCP_DONE);
			return 1;
		}
	}
	*used = i;
	return 0;
}

const uint8_t *dns_tcp_reader_message(const struct dns_tcp_reader *r, size_t *len)
{
	assert(r->state == DNS_TCP_DONE);
	*len = r->msg_len;
	return r->msg;
}

void dns_tcp_reader_next(struct dns_tcp_reader *r)
{
	assert(r->state == DNS_TCP_DONE);
	dns_tcp_enter_state(r, DNS_TCP_LENGTH);
}
