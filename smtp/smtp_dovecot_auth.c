/* The client side of Dovecot's authentication protocol (doc.dovecot.org, "Dovecot
 * Authentication Protocol"), as smtpd uses it: handshake, AUTH/CONT/CANCEL requests,
 * OK/CONT/FAIL replies matched to requests by id. See smtp_dovecot_auth.h. */
#include "smtp/smtp_dovecot_auth.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "smtp/smtp_address.h"

/* One request slot. A request id is (generation << id_bits) | slot index, so a reply is
 * matched in O(1) and an id is not reused until its slot has been reused 2^(32-id_bits)
 * times: a late reply to a finished request finds a different generation and is an
 * unknown id. */
struct dovecot_slot {
	uint32_t gen;  /* generation of the current (or last) request in this slot */
	uint8_t state; /* enum smtp_dovecot_req_state; NONE when free */
};

struct smtp_dovecot {
	enum smtp_dovecot_state state;
	unsigned server_minor;
	const char *error; /* why the connection failed (static text) */

	struct smtp_dovecot_mech mechs[SMTP_DOVECOT_MECH_MAX];
	size_t mech_count;

	unsigned max_requests;
	unsigned id_bits;      /* slot index width in an id */
	uint32_t gen_max;      /* largest generation that fits beside the index */
	size_t pending;        /* slots not free */
	struct dovecot_slot *slots;
	uint32_t *free_slots;  /* stack of free slot indexes */
	size_t free_count;

	size_t field_count;
	struct mx_span fields[SMTP_DOVECOT_FIELDS_MAX];
	size_t line_len;       /* bytes of a partial line kept from earlier input */
	char line[SMTP_DOVECOT_LINE_MAX];
};

const char *smtp_dovecot_state_name(enum smtp_dovecot_state s)
{
	switch (s) {
	case SMTP_DOVECOT_ST_VERSION:
		return "version";
	case SMTP_DOVECOT_ST_HANDSHAKE:
		return "handshake";
	case SMTP_DOVECOT_ST_READY:
		return "ready";
	case SMTP_DOVECOT_ST_FAILED:
		return "failed";
	case SMTP_DOVECOT_ST_MAX:
		break;
	}
	return "?";
}

const char *smtp_dovecot_event_name(enum smtp_dovecot_event_type t)
{
	switch (t) {
	case SMTP_DOVECOT_EV_NONE:
		return "none";
	case SMTP_DOVECOT_EV_READY:
		return "ready";
	case SMTP_DOVECOT_EV_OK:
		return "ok";
	case SMTP_DOVECOT_EV_CONT:
		return "cont";
	case SMTP_DOVECOT_EV_FAIL:
		return "fail";
	case SMTP_DOVECOT_EV_CANCEL_NEEDED:
		return "cancel-needed";
	case SMTP_DOVECOT_EV_ERROR:
		return "error";
	case SMTP_DOVECOT_EV_MAX:
		break;
	}
	return "?";
}

const char *smtp_dovecot_req_state_name(enum smtp_dovecot_req_state s)
{
	switch (s) {
	case SMTP_DOVECOT_REQ_NONE:
		return "none";
	case SMTP_DOVECOT_REQ_WAIT_SERVER:
		return "wait-server";
	case SMTP_DOVECOT_REQ_WAIT_CLIENT:
		return "wait-client";
	case SMTP_DOVECOT_REQ_CANCELLED:
		return "cancelled";
	case SMTP_DOVECOT_REQ_CANCEL_DUE:
		return "cancel-due";
	case SMTP_DOVECOT_REQ_STATE_MAX:
		break;
	}
	return "?";
}

/* ---- Security options and mechanisms ---- */

static bool ascii_eq_nocase(const char *a, size_t an, const char *b)
{
	return mx_span_eq_nocase(mx_span_make(a, an), mx_span_cstr(b));
}

int smtp_dovecot_sec_opts_parse(const char *text, unsigned *out, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{ "noplaintext", SMTP_DOVECOT_SEC_NOPLAINTEXT },
		{ "noactive", SMTP_DOVECOT_SEC_NOACTIVE },
		{ "nodictionary", SMTP_DOVECOT_SEC_NODICTIONARY },
		{ "noanonymous", SMTP_DOVECOT_SEC_NOANONYMOUS },
		{ "forward_secrecy", SMTP_DOVECOT_SEC_FORWARD_SECRECY },
		{ "mutual_auth", SMTP_DOVECOT_SEC_MUTUAL_AUTH },
	};
	unsigned mask = 0;
	const char *cur = text ? text : "", *p;
	size_t n;
	while ((n = mx_list_next(&cur, &p)) > 0) {
		size_t i;
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (ascii_eq_nocase(p, n, names[i].name))
				break;
		if (i == sizeof(names) / sizeof(names[0])) {
			if (err && errlen)
				snprintf(err, errlen, "unknown SASL security option '%.*s'",
					 (int)(n > 64 ? 64 : n), p);
			return -EINVAL;
		}
		mask |= names[i].bit;
	}
	*out = mask;
	return 0;
}

bool smtp_dovecot_mech_allowed(const struct smtp_dovecot_mech *m, unsigned sec_opts)
{
	/* Postfix's mapping between its option names and Dovecot's properties
	 * (xsasl_dovecot_server.c: xsasl_dovecot_conf_sec_props/serv_sec_props). */
	static const struct {
		unsigned sec, mech;
		bool required; /* the mechanism must have it (else: must not) */
	} map[] = {
		{ SMTP_DOVECOT_SEC_NOPLAINTEXT, SMTP_DOVECOT_MECH_PLAINTEXT, false },
		{ SMTP_DOVECOT_SEC_NOACTIVE, SMTP_DOVECOT_MECH_ACTIVE, false },
		{ SMTP_DOVECOT_SEC_NODICTIONARY, SMTP_DOVECOT_MECH_DICTIONARY, false },
		{ SMTP_DOVECOT_SEC_NOANONYMOUS, SMTP_DOVECOT_MECH_ANONYMOUS, false },
		{ SMTP_DOVECOT_SEC_FORWARD_SECRECY, SMTP_DOVECOT_MECH_FORWARD_SECRECY, true },
		{ SMTP_DOVECOT_SEC_MUTUAL_AUTH, SMTP_DOVECOT_MECH_MUTUAL_AUTH, true },
	};

	if (m->flags & SMTP_DOVECOT_MECH_PRIVATE)
		return false;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (!(sec_opts & map[i].sec))
			continue;
		bool has = (m->flags & map[i].mech) != 0;
		if (has != map[i].required)
			return false;
	}
	return true;
}

/* RFC 4422 section 3.1: sasl-mech = 1*20mech-char, mech-char = UPPER-ALPHA / DIGIT /
 * HYPHEN / UNDERSCORE. */
static bool mech_name_valid(struct mx_span s)
{
	if (s.len == 0 || s.len > SMTP_DOVECOT_MECH_NAME_MAX)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		if (!(mx_ctype_is_upper(ch) || mx_ctype_is_digit(ch) || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

size_t smtp_dovecot_mech_count(const struct smtp_dovecot *c)
{
	return c->mech_count;
}

const struct smtp_dovecot_mech *smtp_dovecot_mech_at(const struct smtp_dovecot *c, size_t i)
{
	return i < c->mech_count ? &c->mechs[i] : NULL;
}

const struct smtp_dovecot_mech *smtp_dovecot_mech_find(const struct smtp_dovecot *c,
						       struct mx_span name, unsigned sec_opts)
{
	for (size_t i = 0; i < c->mech_count; i++) {
		const struct smtp_dovecot_mech *m = &c->mechs[i];
		if (mx_span_eq_nocase(name, mx_span_cstr(m->name)))
			return smtp_dovecot_mech_allowed(m, sec_opts) ? m : NULL;
	}
	return NULL;
}

ssize_t smtp_dovecot_mech_list(const struct smtp_dovecot *c, unsigned sec_opts, char *out,
			       size_t cap)
{
	size_t len = 0;

	for (size_t i = 0; i < c->mech_count; i++) {
		const struct smtp_dovecot_mech *m = &c->mechs[i];
		if (!smtp_dovecot_mech_allowed(m, sec_opts))
			continue;
		size_t n = strlen(m->name);
		if (len + (len > 0) + n > cap)
			return -ENOSPC;
		if (len > 0)
			out[len++] = ' ';
		memcpy(out + len, m->name, n);
		len += n;
	}
	return (ssize_t)len;
}

/* ---- Tab escaping ---- */

ssize_t smtp_dovecot_escape(const char *in, size_t n, char *out, size_t cap)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		char esc = 0;
		switch (in[i]) {
		case '\0':
			esc = '0';
			break;
		case '\001':
			esc = '1';
			break;
		case '\t':
			esc = 't';
			break;
		case '\r':
			esc = 'r';
			break;
		case '\n':
			esc = 'n';
			break;
		default:
			break;
		}
		if (len + (esc ? 2 : 1) > cap)
			return -ENOSPC;
		if (esc) {
			out[len++] = '\001';
			out[len++] = esc;
		} else {
			out[len++] = in[i];
		}
	}
	return (ssize_t)len;
}

size_t smtp_dovecot_unescape(char *s, size_t n)
{
	size_t r = 0, w = 0;

	while (r < n) {
		if (s[r] != '\001') {
			s[w++] = s[r++];
			continue;
		}
		if (r + 1 == n) /* truncated escape: dropped, as str_tabunescape does */
			break;
		switch (s[r + 1]) {
		case '0':
			s[w++] = '\0';
			break;
		case '1':
			s[w++] = '\001';
			break;
		case 't':
			s[w++] = '\t';
			break;
		case 'r':
			s[w++] = '\r';
			break;
		case 'n':
			s[w++] = '\n';
			break;
		default:
			s[w++] = s[r + 1];
			break;
		}
		r += 2;
	}
	return w;
}

/* ---- Object ---- */

int smtp_dovecot_new(unsigned max_requests, struct smtp_dovecot **out)
{
	*out = NULL;
	if (max_requests == 0 || max_requests > SMTP_DOVECOT_REQUESTS_MAX)
		return -EINVAL;
	struct smtp_dovecot *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->slots = calloc(max_requests, sizeof(c->slots[0]));
	c->free_slots = calloc(max_requests, sizeof(c->free_slots[0]));
	if (!c->slots || !c->free_slots) {
		smtp_dovecot_free(c);
		return -ENOMEM;
	}
	c->max_requests = max_requests;
	while ((1u << c->id_bits) < max_requests)
		c->id_bits++;
	c->gen_max = UINT32_MAX >> c->id_bits;
	/* popped from the end: slot 0 is used first */
	for (unsigned i = 0; i < max_requests; i++)
		c->free_slots[i] = max_requests - 1 - i;
	c->free_count = max_requests;
	c->state = SMTP_DOVECOT_ST_VERSION;
	*out = c;
	return 0;
}

void smtp_dovecot_free(struct smtp_dovecot *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c->free_slots);
	free(c);
}

enum smtp_dovecot_state smtp_dovecot_get_state(const struct smtp_dovecot *c)
{
	return c->state;
}

unsigned smtp_dovecot_server_minor(const struct smtp_dovecot *c)
{
	return c->server_minor;
}

size_t smtp_dovecot_pending(const struct smtp_dovecot *c)
{
	return c->pending;
}

/* The one place the connection changes state. */
static void enter_state(struct smtp_dovecot *c, enum smtp_dovecot_state s)
{
	assert(s < SMTP_DOVECOT_ST_MAX);
	assert(c->state != SMTP_DOVECOT_ST_FAILED); /* failure is final */
	c->state = s;
}

static enum smtp_dovecot_event_type fail(struct smtp_dovecot *c, struct smtp_dovecot_event *ev,
					 const char *why)
{
	enter_state(c, SMTP_DOVECOT_ST_FAILED);
	c->error = why;
	memset(ev, 0, sizeof(*ev));
	ev->type = SMTP_DOVECOT_EV_ERROR;
	ev->error = why;
	return SMTP_DOVECOT_EV_ERROR;
}

/* ---- Request slots ---- */

static uint32_t slot_id(const struct smtp_dovecot *c, uint32_t index)
{
	return (c->slots[index].gen << c->id_bits) | index;
}

/* The slot of a live request, or -1. */
static long slot_find(const struct smtp_dovecot *c, uint32_t id)
{
	uint32_t index = id & ((1u << c->id_bits) - 1u);
	uint32_t gen = id >> c->id_bits;

	if (index >= c->max_requests || gen == 0)
		return -1;
	const struct dovecot_slot *s = &c->slots[index];
	if (s->state == SMTP_DOVECOT_REQ_NONE || s->gen != gen)
		return -1;
	return (long)index;
}

/* The one place a request changes state; keeps the free stack and the count. */
static void slot_enter(struct smtp_dovecot *c, uint32_t index, enum smtp_dovecot_req_state s)
{
	struct dovecot_slot *slot = &c->slots[index];

	assert(s < SMTP_DOVECOT_REQ_STATE_MAX);
	if (slot->state == SMTP_DOVECOT_REQ_NONE && s != SMTP_DOVECOT_REQ_NONE) {
		assert(c->free_count > 0 && c->free_slots[c->free_count - 1] == index);
		c->free_count--;
		c->pending++;
		slot->gen = slot->gen >= c->gen_max ? 1 : slot->gen + 1;
	} else if (slot->state != SMTP_DOVECOT_REQ_NONE && s == SMTP_DOVECOT_REQ_NONE) {
		assert(c->free_count < c->max_requests && c->pending > 0);
		c->free_slots[c->free_count++] = index;
		c->pending--;
	}
	slot->state = (uint8_t)s;
}

enum smtp_dovecot_req_state smtp_dovecot_request_state(const struct smtp_dovecot *c,
						       uint32_t id)
{
	long i = slot_find(c, id);
	return i < 0 ? SMTP_DOVECOT_REQ_NONE : (enum smtp_dovecot_req_state)c->slots[i].state;
}

/* ---- Server lines ---- */

/* A decimal 32-bit number (Dovecot writes ids and versions with %u). */
static bool parse_u32(struct mx_span s, uint32_t *out)
{
	uint64_t v = 0;

	if (s.len == 0 || s.len > 10)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		if (ch < '0' || ch > '9')
			return false;
		v = v * 10 + (ch - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Split the line into TAB-separated fields (not yet unescaped). */
static bool split_fields(struct smtp_dovecot *c, size_t n)
{
	size_t start = 0;

	c->field_count = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && c->line[i] != '\t')
			continue;
		if (c->field_count == SMTP_DOVECOT_FIELDS_MAX)
			return false;
		c->fields[c->field_count++] = mx_span_make(c->line + start, i - start);
		start = i + 1;
	}
	return true;
}

static bool field_is(const struct smtp_dovecot *c, size_t i, const char *word)
{
	return i < c->field_count && mx_span_eq(c->fields[i], mx_span_cstr(word));
}

/* A field "key" or "key=value" whose key is `key`; *value is what follows '='. */
static bool field_key(struct mx_span f, const char *key, struct mx_span *value)
{
	size_t k = strlen(key);

	if (f.len < k || memcmp(f.ptr, key, k) != 0 || (f.len > k && f.ptr[k] != '='))
		return false;
	*value = f.len > k ? mx_span_make(f.ptr + k + 1, f.len - k - 1) : mx_span_make(f.ptr, 0);
	return true;
}

/* The length of a valid UTF-8 multi-byte character at p (at most n bytes), or 0. */
static size_t utf8_char_len(const char *p, size_t n)
{
	unsigned char c0 = (unsigned char)p[0];
	size_t k = c0 >= 0xc2 && c0 <= 0xdf ? 2 : c0 >= 0xe0 && c0 <= 0xef ? 3 :
		   c0 >= 0xf0 && c0 <= 0xf4 ? 4 : 0;
	return k && k <= n && smtp_utf8_valid(p, k) ? k : 0;
}

/* Unescape a value in place and make it printable the way Postfix's printable() does
 * with UTF-8 enabled: controls, DEL and bytes that are not valid UTF-8 become '?'. */
static struct mx_span clean_value(struct mx_span v)
{
	char *p = (char *)v.ptr; /* points into c->line, which is ours */
	size_t n = smtp_dovecot_unescape(p, v.len);

	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)p[i];
		if (ch >= 0x80) {
			size_t k = utf8_char_len(p + i, n - i);
			if (k) {
				i += k;
				continue;
			}
			p[i++] = '?';
		} else {
			if (ch < 0x20 || ch == 0x7f)
				p[i] = '?';
			i++;
		}
	}
	return mx_span_make(p, n);
}

static enum smtp_dovecot_event_type on_version(struct smtp_dovecot *c,
					       struct smtp_dovecot_event *ev)
{
	uint32_t major, minor;

	/* "VERSION" TAB major TAB minor, first of the server's handshake. */
	if (!field_is(c, 0, "VERSION"))
		return fail(c, ev, "handshake does not start with VERSION");
	if (c->field_count != 3 || !parse_u32(c->fields[1], &major) ||
	    !parse_u32(c->fields[2], &minor))
		return fail(c, ev, "malformed VERSION line");
	if (major != SMTP_DOVECOT_VERSION_MAJOR)
		return fail(c, ev, "auth protocol major version mismatch");
	c->server_minor = minor;
	enter_state(c, SMTP_DOVECOT_ST_HANDSHAKE);
	return SMTP_DOVECOT_EV_NONE;
}

static void add_mech(struct smtp_dovecot *c)
{
	static const struct {
		const char *name;
		unsigned bit;
	} props[] = {
		{ "anonymous", SMTP_DOVECOT_MECH_ANONYMOUS },
		{ "plaintext", SMTP_DOVECOT_MECH_PLAINTEXT },
		{ "dictionary", SMTP_DOVECOT_MECH_DICTIONARY },
		{ "active", SMTP_DOVECOT_MECH_ACTIVE },
		{ "forward-secrecy", SMTP_DOVECOT_MECH_FORWARD_SECRECY },
		{ "mutual-auth", SMTP_DOVECOT_MECH_MUTUAL_AUTH },
		{ "private", SMTP_DOVECOT_MECH_PRIVATE },
		{ "channel-binding", SMTP_DOVECOT_MECH_CHANNEL_BINDING },
	};
	struct mx_span name = c->fields[1];
	unsigned flags = 0;

	/* A name we could not put into EHLO, or a second announcement: left out. */
	if (!mech_name_valid(name))
		return;
	for (size_t i = 0; i < c->mech_count; i++)
		if (mx_span_eq(name, mx_span_cstr(c->mechs[i].name)))
			return;
	/* Unknown properties are ignored (protocol: unknown parameters are ignored);
	 * Postfix compares them without case (NAME_MASK_ANY_CASE). */
	for (size_t f = 2; f < c->field_count; f++)
		for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
			if (mx_span_eq_nocase(c->fields[f], mx_span_cstr(props[i].name)))
				flags |= props[i].bit;
	struct smtp_dovecot_mech *m = &c->mechs[c->mech_count++];
	memcpy(m->name, name.ptr, name.len);
	m->name[name.len] = '\0';
	m->flags = flags;
}

static enum smtp_dovecot_event_type on_handshake(struct smtp_dovecot *c,
						 struct smtp_dovecot_event *ev)
{
	if (field_is(c, 0, "MECH")) {
		if (c->field_count < 2)
			return fail(c, ev, "MECH without a name");
		if (c->mech_count == SMTP_DOVECOT_MECH_MAX)
			return fail(c, ev, "too many mechanisms");
		add_mech(c);
	} else if (field_is(c, 0, "SPID")) {
		/* auth-master and auth-userdb sockets send VERSION and SPID only, auth-client
		 * sends its MECH lines before SPID: Postfix takes SPID without MECH as the
		 * wrong socket (xsasl_dovecot_server_connect). */
		if (c->mech_count == 0)
			return fail(c, ev, "no MECH before SPID: not an auth-client socket");
	} else if (field_is(c, 0, "DONE")) {
		enter_state(c, SMTP_DOVECOT_ST_READY);
		memset(ev, 0, sizeof(*ev));
		ev->type = SMTP_DOVECOT_EV_READY;
		return SMTP_DOVECOT_EV_READY;
	} else if (field_is(c, 0, "VERSION")) {
		return fail(c, ev, "second VERSION line");
	} else if (field_is(c, 0, "OK") || field_is(c, 0, "CONT") || field_is(c, 0, "FAIL")) {
		return fail(c, ev, "reply before the handshake finished");
	}
	/* CUID, COOKIE and anything newer: nothing for SMTP AUTH */
	return SMTP_DOVECOT_EV_NONE;
}

/* The request a reply names: its slot index, or a protocol error. */
static bool reply_slot(struct smtp_dovecot *c, uint32_t *index)
{
	uint32_t id;

	if (c->field_count < 2 || !parse_u32(c->fields[1], &id))
		return false;
	long i = slot_find(c, id);
	if (i < 0)
		return false;
	*index = (uint32_t)i;
	return true;
}

/* OK and FAIL parameters: user=, reason=, temp, code=, nologin, proxy. */
static void reply_params(struct smtp_dovecot *c, struct smtp_dovecot_event *ev, bool *has_user,
			 bool *denied)
{
	*has_user = false;
	*denied = false;
	for (size_t f = 2; f < c->field_count; f++) {
		struct mx_span v;
		/* "user" and "reason" without '=' are not these parameters */
		if (field_key(c->fields[f], "user", &v) && v.ptr != c->fields[f].ptr) {
			ev->user = clean_value(v); /* the last one wins, as in Postfix */
			*has_user = ev->user.len > 0;
		} else if (field_key(c->fields[f], "reason", &v) && v.ptr != c->fields[f].ptr) {
			ev->reason = clean_value(v);
		} else if (field_key(c->fields[f], "temp", &v)) {
			ev->temp = true;
		} else if (field_key(c->fields[f], "code", &v)) {
			if (mx_span_eq(v, MX_SPAN_LIT("temp_fail")))
				ev->temp = true;
		} else if (field_key(c->fields[f], "nologin", &v) ||
			   field_key(c->fields[f], "proxy", &v)) {
			*denied = true; /* its value does not matter (protocol document) */
		}
	}
}

static enum smtp_dovecot_event_type on_reply(struct smtp_dovecot *c,
					     struct smtp_dovecot_event *ev)
{
	bool is_ok = field_is(c, 0, "OK"), is_fail = field_is(c, 0, "FAIL");
	bool is_cont = field_is(c, 0, "CONT");
	uint32_t index;

	if (!is_ok && !is_fail && !is_cont)
		return SMTP_DOVECOT_EV_NONE; /* unknown commands are ignored, as Postfix does */
	if (!reply_slot(c, &index))
		return fail(c, ev, "reply for an unknown request id");

	enum smtp_dovecot_req_state st = (enum smtp_dovecot_req_state)c->slots[index].state;
	if (st != SMTP_DOVECOT_REQ_WAIT_SERVER && st != SMTP_DOVECOT_REQ_CANCELLED)
		return fail(c, ev, "reply for a request that waits for the client");
	bool cancelled = st == SMTP_DOVECOT_REQ_CANCELLED;

	memset(ev, 0, sizeof(*ev));
	ev->id = slot_id(c, index);
	if (is_cont) {
		/* CONT TAB id TAB base64; later fields (channel_binding=, 1.3+) ignored */
		if (c->field_count < 3)
			return fail(c, ev, "CONT without data");
		struct mx_span ch = c->fields[2];
		if (smtp_dovecot_b64_decode(ch, NULL, 0) < 0)
			return fail(c, ev, "CONT data is not base64");
		if (cancelled) {
			slot_enter(c, index, SMTP_DOVECOT_REQ_CANCEL_DUE);
			ev->type = SMTP_DOVECOT_EV_CANCEL_NEEDED;
			return ev->type;
		}
		slot_enter(c, index, SMTP_DOVECOT_REQ_WAIT_CLIENT);
		ev->type = SMTP_DOVECOT_EV_CONT;
		ev->challenge = ch;
		return ev->type;
	}

	slot_enter(c, index, SMTP_DOVECOT_REQ_NONE);
	if (cancelled) {
		memset(ev, 0, sizeof(*ev));
		return SMTP_DOVECOT_EV_NONE;
	}
	bool has_user, denied;
	reply_params(c, ev, &has_user, &denied);
	if (is_fail) {
		ev->type = SMTP_DOVECOT_EV_FAIL;
	} else if (denied) {
		ev->type = SMTP_DOVECOT_EV_FAIL;
		ev->nologin = true;
		ev->temp = false;
	} else if (!has_user) {
		/* Postfix: "missing Dovecot server OK username field" */
		ev->type = SMTP_DOVECOT_EV_FAIL;
		ev->reason = MX_SPAN_LIT(SMTP_DOVECOT_REASON_BACKEND);
		ev->temp = false;
	} else {
		ev->type = SMTP_DOVECOT_EV_OK;
		ev->reason = mx_span_make(NULL, 0);
		ev->temp = false;
	}
	return ev->type;
}

/* One complete line of n bytes (LF and a CR before it removed). */
static enum smtp_dovecot_event_type on_line(struct smtp_dovecot *c, size_t n,
					    struct smtp_dovecot_event *ev)
{
	/* Dovecot's lines are C strings: a NUL cannot be meant. */
	if (memchr(c->line, '\0', n))
		return fail(c, ev, "NUL in a line");
	if (!split_fields(c, n))
		return fail(c, ev, "too many fields in a line");
	switch (c->state) {
	case SMTP_DOVECOT_ST_VERSION:
		return on_version(c, ev);
	case SMTP_DOVECOT_ST_HANDSHAKE:
		return on_handshake(c, ev);
	case SMTP_DOVECOT_ST_READY:
		return on_reply(c, ev);
	case SMTP_DOVECOT_ST_FAILED:
	case SMTP_DOVECOT_ST_MAX:
		break;
	}
	assert(!"line in a state that takes none");
	return SMTP_DOVECOT_EV_NONE;
}

enum smtp_dovecot_event_type smtp_dovecot_step(struct smtp_dovecot *c, const char *in,
					       size_t len, size_t *used,
					       struct smtp_dovecot_event *ev)
{
	size_t off = 0;

	memset(ev, 0, sizeof(*ev));
	*used = 0;
	if (c->state == SMTP_DOVECOT_ST_FAILED) {
		ev->type = SMTP_DOVECOT_EV_ERROR;
		ev->error = c->error;
		return SMTP_DOVECOT_EV_ERROR;
	}
	while (off < len) {
		const char *nl = memchr(in + off, '\n', len - off);
		size_t take = nl ? (size_t)(nl - (in + off)) + 1 : len - off;

		/* the line and its LF must fit in SMTP_DOVECOT_LINE_MAX */
		if (c->line_len + take > SMTP_DOVECOT_LINE_MAX ||
		    (!nl && c->line_len + take == SMTP_DOVECOT_LINE_MAX)) {
			*used = off;
			return fail(c, ev, "line longer than the auth protocol allows");
		}
		memcpy(c->line + c->line_len, in + off, take);
		c->line_len += take;
		off += take;
		if (!nl)
			break;
		size_t n = c->line_len - 1;
		c->line_len = 0;
		if (n > 0 && c->line[n - 1] == '\r') /* Dovecot's line reader allows CRLF */
			n--;
		enum smtp_dovecot_event_type t = on_line(c, n, ev);
		if (t != SMTP_DOVECOT_EV_NONE) {
			*used = off;
			return t;
		}
	}
	*used = off;
	return SMTP_DOVECOT_EV_NONE;
}

/* ---- Client lines ---- */

/* Appends to a caller buffer; counts what would have been written when it overflows, so
 * the caller can tell "line too long for the protocol" from "buffer too small". */
struct dovecot_out {
	char *p;
	size_t cap;
	size_t len;
};

static void out_mem(struct dovecot_out *o, const char *s, size_t n)
{
	if (o->len < o->cap)
		memcpy(o->p + o->len, s, n <= o->cap - o->len ? n : o->cap - o->len);
	o->len += n;
}

static void out_str(struct dovecot_out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void out_u32(struct dovecot_out *o, uint32_t v)
{
	char b[16];
	int n = snprintf(b, sizeof(b), "%u", (unsigned)v);
	out_mem(o, b, (size_t)n);
}

static void out_escaped(struct dovecot_out *o, const char *s, size_t n)
{
	char b[64];
	for (size_t i = 0; i < n; i += sizeof(b) / 2) {
		size_t k = n - i < sizeof(b) / 2 ? n - i : sizeof(b) / 2;
		ssize_t e = smtp_dovecot_escape(s + i, k, b, sizeof(b));
		assert(e >= 0); /* 2 bytes per input byte at most */
		out_mem(o, b, (size_t)e);
	}
}

static void out_addr(struct dovecot_out *o, const char *key, const struct mx_inet_addr *a)
{
	char b[INET6_ADDRSTRLEN];
	out_str(o, key);
	out_str(o, mx_inet_format(a, b, sizeof(b)));
}

static ssize_t out_result(const struct dovecot_out *o)
{
	if (o->len > SMTP_DOVECOT_LINE_MAX)
		return -EMSGSIZE;
	if (o->len > o->cap)
		return -ENOSPC;
	return (ssize_t)o->len;
}

ssize_t smtp_dovecot_hello(uint32_t pid, char *out, size_t cap)
{
	struct dovecot_out o = { out, cap, 0 };
	out_str(&o, "VERSION\t");
	out_u32(&o, SMTP_DOVECOT_VERSION_MAJOR);
	out_str(&o, "\t");
	out_u32(&o, SMTP_DOVECOT_VERSION_MINOR);
	out_str(&o, "\nCPID\t");
	out_u32(&o, pid);
	out_str(&o, "\n");
	return out_result(&o);
}

/* The empty response: "=" (RFC 4954) or nothing at all. */
static bool empty_response(struct mx_span r)
{
	return r.len == 0 || (r.len == 1 && r.ptr[0] == '=');
}

ssize_t smtp_dovecot_auth(struct smtp_dovecot *c, const struct smtp_dovecot_auth_request *r,
			  uint32_t *id, char *out, size_t cap)
{
	if (c->state != SMTP_DOVECOT_ST_READY)
		return -ENOTCONN;
	if (!r->service || !r->service[0])
		return -EINVAL;
	const struct smtp_dovecot_mech *m = smtp_dovecot_mech_find(c, r->mech, r->sec_opts);
	if (!m)
		return -ENOENT;
	bool resp_empty = r->has_initial_response && empty_response(r->initial_response);
	if (r->has_initial_response && !resp_empty &&
	    smtp_dovecot_b64_decode(r->initial_response, NULL, 0) < 0)
		return -EINVAL;
	if (c->free_count == 0)
		return -EBUSY;

	/* the id the request gets once the line is written */
	uint32_t index = c->free_slots[c->free_count - 1];
	uint32_t gen = c->slots[index].gen >= c->gen_max ? 1 : c->slots[index].gen + 1;
	uint32_t new_id = (gen << c->id_bits) | index;

	struct dovecot_out o = { out, cap, 0 };
	out_str(&o, "AUTH\t");
	out_u32(&o, new_id);
	out_str(&o, "\t");
	out_str(&o, m->name);
	out_str(&o, "\tservice=");
	out_escaped(&o, r->service, strlen(r->service));
	out_str(&o, "\tnologin");
	if (r->local)
		out_addr(&o, "\tlip=", r->local);
	if (r->remote)
		out_addr(&o, "\trip=", r->remote);
	if (r->local_port) {
		out_str(&o, "\tlport=");
		out_u32(&o, r->local_port);
	}
	if (r->remote_port) {
		out_str(&o, "\trport=");
		out_u32(&o, r->remote_port);
	}
	if (r->secured)
		out_str(&o, "\tsecured");
	if (r->valid_client_cert)
		out_str(&o, "\tvalid-client-cert");
	if (r->has_initial_response) {
		/* must be the last parameter (protocol document: "resp=") */
		out_str(&o, "\tresp=");
		if (resp_empty)
			out_str(&o, "=");
		else
			out_mem(&o, r->initial_response.ptr, r->initial_response.len);
	}
	out_str(&o, "\n");
	ssize_t rc = out_result(&o);
	if (rc < 0)
		return rc;
	slot_enter(c, index, SMTP_DOVECOT_REQ_WAIT_SERVER);
	assert(slot_id(c, index) == new_id);
	*id = new_id;
	return rc;
}

ssize_t smtp_dovecot_cont(struct smtp_dovecot *c, uint32_t id, struct mx_span response,
			  char *out, size_t cap)
{
	if (c->state != SMTP_DOVECOT_ST_READY)
		return -ENOTCONN;
	long i = slot_find(c, id);
	if (i < 0)
		return -ENOENT;
	if (c->slots[i].state != SMTP_DOVECOT_REQ_WAIT_CLIENT)
		return -EPROTO;
	if (smtp_dovecot_b64_decode(response, NULL, 0) < 0)
		return -EINVAL;

	struct dovecot_out o = { out, cap, 0 };
	out_str(&o, "CONT\t");
	out_u32(&o, id);
	out_str(&o, "\t");
	out_mem(&o, response.ptr, response.len);
	out_str(&o, "\n");
	ssize_t rc = out_result(&o);
	if (rc < 0)
		return rc;
	slot_enter(c, (uint32_t)i, SMTP_DOVECOT_REQ_WAIT_SERVER);
	return rc;
}

ssize_t smtp_dovecot_cancel(struct smtp_dovecot *c, uint32_t id, char *out, size_t cap)
{
	long i = slot_find(c, id);
	if (i < 0)
		return -ENOENT;
	enum smtp_dovecot_req_state st = (enum smtp_dovecot_req_state)c->slots[i].state;

	/* a dead connection takes no more lines: just forget the request */
	if (c->state == SMTP_DOVECOT_ST_FAILED) {
		slot_enter(c, (uint32_t)i, SMTP_DOVECOT_REQ_NONE);
		return 0;
	}
	if (st == SMTP_DOVECOT_REQ_WAIT_SERVER) {
		slot_enter(c, (uint32_t)i, SMTP_DOVECOT_REQ_CANCELLED);
		return 0;
	}
	if (st == SMTP_DOVECOT_REQ_CANCELLED)
		return 0;
	/* WAIT_CLIENT or CANCEL_DUE: Dovecot holds the request for our CONT */
	struct dovecot_out o = { out, cap, 0 };
	out_str(&o, "CANCEL\t");
	out_u32(&o, id);
	out_str(&o, "\n");
	ssize_t rc = out_result(&o);
	if (rc < 0)
		return rc;
	slot_enter(c, (uint32_t)i, SMTP_DOVECOT_REQ_NONE);
	return rc;
}
