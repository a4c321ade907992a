/* The Dovecot auth client codec and the SMTP AUTH helpers (smtp/smtp_dovecot_auth.c,
 * smtp/smtp_dovecot_sasl.c).
 *
 * Conversations are byte transcripts: what we write ("C:") and what Dovecot answers
 * ("S:"), with the events the codec reports ("E:"). Every conversation runs with the
 * server's bytes fed whole, byte by byte and split in two at every offset, each piece in a
 * heap buffer of exactly its length, and must give the same transcript each time. Server
 * lines follow what Dovecot 2.3 and 2.4 send (src/auth/auth-client-connection.c,
 * auth-request-handler.c). */
#include <errno.h>
#include <stdlib.h>

#include "smtp/smtp_dovecot_auth.h"
#include "testing.h"

/* ---- A scripted client ---- */

/* What the client does when an event arrives, per scenario. */
enum scenario {
	SC_NONE,      /* only the handshake */
	SC_PLAIN,     /* AUTH PLAIN with an initial response */
	SC_LOGIN,     /* AUTH LOGIN, two CONT rounds */
	SC_PLAIN_NOIR /* AUTH PLAIN without initial response, one CONT round */
};

struct run {
	struct smtp_dovecot *c;
	enum scenario sc;
	int conts; /* CONT events seen */
	char log[16384];
	size_t log_len;
};

static void log_add(struct run *r, const char *s, size_t n)
{
	for (size_t i = 0; i < n && r->log_len + 4 < sizeof(r->log); i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\t') {
			r->log[r->log_len++] = '\\';
			r->log[r->log_len++] = 't';
		} else if (ch == '\n') {
			r->log[r->log_len++] = '\\';
			r->log[r->log_len++] = 'n';
		} else if (ch < 32 || ch >= 127) {
			r->log_len += (size_t)snprintf(r->log + r->log_len,
						       sizeof(r->log) - r->log_len, "\\x%02x", ch);
		} else {
			r->log[r->log_len++] = (char)ch;
		}
	}
	r->log[r->log_len] = '\0';
}

static void log_str(struct run *r, const char *s)
{
	log_add(r, s, strlen(s));
}

static void log_event(struct run *r, const struct smtp_dovecot_event *ev)
{
	char b[256];
	snprintf(b, sizeof(b), "E:%s", smtp_dovecot_event_name(ev->type));
	log_str(r, b);
	if (ev->type == SMTP_DOVECOT_EV_OK || ev->type == SMTP_DOVECOT_EV_FAIL ||
	    ev->type == SMTP_DOVECOT_EV_CONT || ev->type == SMTP_DOVECOT_EV_CANCEL_NEEDED) {
		snprintf(b, sizeof(b), " id=%u", (unsigned)ev->id);
		log_str(r, b);
	}
	if (ev->user.len) {
		log_str(r, " user=");
		log_add(r, ev->user.ptr, ev->user.len);
	}
	if (ev->reason.len) {
		log_str(r, " reason=");
		log_add(r, ev->reason.ptr, ev->reason.len);
	}
	if (ev->type == SMTP_DOVECOT_EV_CONT) {
		log_str(r, " ch=");
		log_add(r, ev->challenge.ptr, ev->challenge.len);
	}
	if (ev->temp)
		log_str(r, " temp");
	if (ev->nologin)
		log_str(r, " nologin");
	if (ev->error) {
		log_str(r, " error=");
		log_str(r, ev->error);
	}
	log_str(r, "|");
}

static void client_line(struct run *r, ssize_t n, const char *buf)
{
	CHECK(n > 0);
	if (n <= 0)
		return;
	log_str(r, "C:");
	log_add(r, buf, (size_t)n);
	log_str(r, "|");
}

static const struct mx_inet_addr *addr(const char *s)
{
	static struct mx_inet_addr a[4];
	static int i;
	struct mx_inet_addr *p = &a[i++ % 4];
	CHECK(mx_inet_parse(s, p));
	return p;
}

static struct smtp_dovecot_auth_request plain_request(void)
{
	struct smtp_dovecot_auth_request q = {
		.mech = MX_SPAN_LIT("PLAIN"),
		.sec_opts = SMTP_DOVECOT_SEC_NOANONYMOUS,
		.service = "smtp",
		.local = addr("192.0.2.25"),
		.remote = addr("198.51.100.7"),
		.secured = true,
	};
	return q;
}

static void on_event(struct run *r, const struct smtp_dovecot_event *ev)
{
	char out[512];
	uint32_t id;
	ssize_t n;

	log_event(r, ev);
	if (ev->type == SMTP_DOVECOT_EV_READY) {
		struct smtp_dovecot_auth_request q = plain_request();
		switch (r->sc) {
		case SC_NONE:
			return;
		case SC_PLAIN:
			/* RFC 4616: "\0alice\0secret" */
			q.has_initial_response = true;
			q.initial_response = MX_SPAN_LIT("AGFsaWNlAHNlY3JldA==");
			break;
		case SC_LOGIN:
			q.mech = MX_SPAN_LIT("login");
			break;
		case SC_PLAIN_NOIR:
			break;
		}
		n = smtp_dovecot_auth(r->c, &q, &id, out, sizeof(out));
		client_line(r, n, out);
	} else if (ev->type == SMTP_DOVECOT_EV_CONT) {
		static const char *const login[] = { "YWxpY2U=", "c2VjcmV0" };
		const char *resp = r->sc == SC_LOGIN ? login[r->conts % 2] : "AGFsaWNlAHNlY3JldA==";
		r->conts++;
		n = smtp_dovecot_cont(r->c, ev->id, mx_span_cstr(resp), out, sizeof(out));
		client_line(r, n, out);
	}
}

/* Feed one piece, from a heap copy of exactly its length. */
static void feed_piece(struct run *r, const char *data, size_t n)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, data, n);
	size_t off = 0;
	for (;;) {
		struct smtp_dovecot_event ev;
		size_t used = 99999;
		enum smtp_dovecot_event_type t = smtp_dovecot_step(r->c, copy + off, n - off,
								   &used, &ev);
		CHECK(used <= n - off);
		CHECK_INT_EQ(t, ev.type);
		off += used;
		if (t == SMTP_DOVECOT_EV_NONE) {
			CHECK_INT_EQ(off, n); /* NONE means all consumed */
			break;
		}
		on_event(r, &ev);
		if (t == SMTP_DOVECOT_EV_ERROR)
			break;
	}
	free(copy);
}

/* Run a conversation with the server's bytes cut at `cuts` (0: whole; 1: bytewise;
 * otherwise split once at offset cuts - 2). Returns the transcript (static buffer). */
static const char *converse(enum scenario sc, const char *server, size_t cuts)
{
	static struct run r;
	char hello[64];
	size_t n = strlen(server);

	memset(&r, 0, sizeof(r));
	r.sc = sc;
	CHECK_INT_EQ(smtp_dovecot_new(1, &r.c), 0); /* one slot: ids are 1, 2, ... */
	client_line(&r, smtp_dovecot_hello(4242, hello, sizeof(hello)), hello);
	if (cuts == 0) {
		feed_piece(&r, server, n);
	} else if (cuts == 1) {
		for (size_t i = 0; i < n; i++)
			feed_piece(&r, server + i, 1);
	} else {
		size_t k = cuts - 2;
		feed_piece(&r, server, k);
		feed_piece(&r, server + k, n - k);
	}
	smtp_dovecot_free(r.c);
	return r.log;
}

/* The transcript must not depend on how the server's bytes were cut. */
static void expect_conversation(enum scenario sc, const char *server, const char *want)
{
	const char *got = converse(sc, server, 0);
	CHECK_STR_EQ(got, want);
	got = converse(sc, server, 1);
	CHECK_STR_EQ(got, want);
	for (size_t k = 0; k <= strlen(server); k++) {
		got = converse(sc, server, k + 2);
		if (strcmp(got, want) != 0) {
			fprintf(stderr, "  split at %zu\n", k);
			CHECK_STR_EQ(got, want);
			break;
		}
	}
}

/* Dovecot 2.3's handshake (sent at connect, before our VERSION). */
#define HANDSHAKE                                                                          \
	"VERSION\t1\t2\n"                                                                  \
	"MECH\tPLAIN\tplaintext\n"                                                         \
	"MECH\tLOGIN\tplaintext\n"                                                         \
	"MECH\tCRAM-MD5\tdictionary\tactive\n"                                             \
	"MECH\tAPOP\tprivate\tdictionary\tactive\n"                                        \
	"MECH\tANONYMOUS\tanonymous\n"                                                     \
	"MECH\tSCRAM-SHA-256\tmutual-auth\tdictionary\n"                                   \
	"SPID\t1301\n"                                                                     \
	"CUID\t7\n"                                                                        \
	"COOKIE\t0123456789abcdef0123456789abcdef\n"                                       \
	"DONE\n"

#define HELLO_LOG "C:VERSION\\t1\\t1\\nCPID\\t4242\\n|"

/* ---- Handshake ---- */

static void test_hello(void)
{
	char b[64];
	ssize_t n = smtp_dovecot_hello(4242, b, sizeof(b));
	CHECK_MEM_EQ(b, (size_t)n, "VERSION\t1\t1\nCPID\t4242\n", 22);
	CHECK_INT_EQ(smtp_dovecot_hello(4242, b, 21), -ENOSPC);
	CHECK_INT_EQ(smtp_dovecot_hello(4242, b, 22), 22);
	n = smtp_dovecot_hello(4294967295u, b, sizeof(b));
	CHECK_MEM_EQ(b, (size_t)n, "VERSION\t1\t1\nCPID\t4294967295\n", 28);
}

static void test_handshake(void)
{
	expect_conversation(SC_NONE, HANDSHAKE, HELLO_LOG "E:ready|");

	/* Dovecot 2.4 sends VERSION only after ours, then the same lines; CRLF line ends
	 * are taken too (Dovecot's line reader strips the CR). */
	expect_conversation(SC_NONE,
			    "VERSION\t1\t4\r\nMECH\tPLAIN\tplaintext\r\nMECH\tSCRAM-SHA-1-PLUS"
			    "\tchannel-binding\r\nSPID\t9\r\nCUID\t1\r\nCOOKIE\tab\r\nDONE\r\n",
			    HELLO_LOG "E:ready|");

	struct smtp_dovecot *c;
	struct smtp_dovecot_event ev;
	size_t used;
	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_STR_EQ(smtp_dovecot_state_name(smtp_dovecot_get_state(c)), "version");
	CHECK_INT_EQ(smtp_dovecot_step(c, HANDSHAKE, strlen(HANDSHAKE), &used, &ev),
		     SMTP_DOVECOT_EV_READY);
	CHECK_INT_EQ(used, strlen(HANDSHAKE));
	CHECK_STR_EQ(smtp_dovecot_state_name(smtp_dovecot_get_state(c)), "ready");
	CHECK_INT_EQ(smtp_dovecot_server_minor(c), 2);
	CHECK_INT_EQ(smtp_dovecot_mech_count(c), 6);
	CHECK_STR_EQ(smtp_dovecot_mech_at(c, 0)->name, "PLAIN");
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 0)->flags, SMTP_DOVECOT_MECH_PLAINTEXT);
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 2)->flags,
		     SMTP_DOVECOT_MECH_DICTIONARY | SMTP_DOVECOT_MECH_ACTIVE);
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 3)->flags, SMTP_DOVECOT_MECH_PRIVATE |
							   SMTP_DOVECOT_MECH_DICTIONARY |
							   SMTP_DOVECOT_MECH_ACTIVE);
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 5)->flags,
		     SMTP_DOVECOT_MECH_MUTUAL_AUTH | SMTP_DOVECOT_MECH_DICTIONARY);
	CHECK(smtp_dovecot_mech_at(c, 6) == NULL);

	/* EHLO lists: private never; Postfix's default noanonymous drops ANONYMOUS */
	char list[128];
	ssize_t n = smtp_dovecot_mech_list(c, 0, list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "PLAIN LOGIN CRAM-MD5 ANONYMOUS SCRAM-SHA-256", 44);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_NOANONYMOUS, list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256", 34);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_NOANONYMOUS | SMTP_DOVECOT_SEC_NOPLAINTEXT,
				   list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "CRAM-MD5 SCRAM-SHA-256", 22);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_NODICTIONARY, list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "PLAIN LOGIN ANONYMOUS", 21);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_NOACTIVE | SMTP_DOVECOT_SEC_NOPLAINTEXT,
				   list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "ANONYMOUS SCRAM-SHA-256", 23);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_MUTUAL_AUTH, list, sizeof(list));
	CHECK_MEM_EQ(list, (size_t)n, "SCRAM-SHA-256", 13);
	n = smtp_dovecot_mech_list(c, SMTP_DOVECOT_SEC_FORWARD_SECRECY, list, sizeof(list));
	CHECK_INT_EQ(n, 0); /* nothing left: offer no AUTH */
	CHECK_INT_EQ(smtp_dovecot_mech_list(c, 0, list, 10), -ENOSPC);

	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("plain"), 0) == smtp_dovecot_mech_at(c, 0));
	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("Cram-Md5"), 0) != NULL);
	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("APOP"), 0) == NULL);
	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("ANONYMOUS"),
				     SMTP_DOVECOT_SEC_NOANONYMOUS) == NULL);
	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("PLAI"), 0) == NULL);
	CHECK(smtp_dovecot_mech_find(c, MX_SPAN_LIT("PLAINX"), 0) == NULL);
	smtp_dovecot_free(c);
}

static void test_handshake_odd_but_fine(void)
{
	/* unknown commands and properties ignored; bad and repeated names left out */
	const char *hs = "VERSION\t1\t0\nFUTURE\tthing\nMECH\tPLAIN\tplaintext\tshiny\n"
			 "MECH\tPLAIN\tanonymous\nMECH\tlower\nMECH\tTWENTY-ONE-CHARACTERS\n"
			 "MECH\tTWENTY-CHARACTERS-OK\nMECH\tX\tPLAINTEXT\nSPID\nCUID\nCOOKIE\n"
			 "DONE\n";
	expect_conversation(SC_NONE, hs, HELLO_LOG "E:ready|");
	struct smtp_dovecot *c;
	struct smtp_dovecot_event ev;
	size_t used;
	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, hs, strlen(hs), &used, &ev), SMTP_DOVECOT_EV_READY);
	CHECK_INT_EQ(smtp_dovecot_mech_count(c), 3);
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 0)->flags, SMTP_DOVECOT_MECH_PLAINTEXT);
	CHECK_STR_EQ(smtp_dovecot_mech_at(c, 1)->name, "TWENTY-CHARACTERS-OK");
	/* properties without case, as Postfix's NAME_MASK_ANY_CASE */
	CHECK_INT_EQ(smtp_dovecot_mech_at(c, 2)->flags, SMTP_DOVECOT_MECH_PLAINTEXT);
	/* lines after READY that are not replies are ignored */
	const char *more = "MECH\tNEW\nVERSION\t1\t9\nCANCELLED\t5\n\n";
	CHECK_INT_EQ(smtp_dovecot_step(c, more, strlen(more), &used, &ev), SMTP_DOVECOT_EV_NONE);
	CHECK_INT_EQ(used, strlen(more));
	CHECK_INT_EQ(smtp_dovecot_mech_count(c), 3);
	smtp_dovecot_free(c);

	/* zero mechanisms is a handshake too (then AUTH is not offered) */
	expect_conversation(SC_NONE, "VERSION\t1\t2\nDONE\n", HELLO_LOG "E:ready|");
}

/* ---- Exchanges ---- */

static void test_plain_exchange(void)
{
	expect_conversation(
		SC_PLAIN, HANDSHAKE "OK\t1\tuser=alice\n",
		HELLO_LOG "E:ready|"
			  "C:AUTH\\t1\\tPLAIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"
			  "rip=198.51.100.7\\tsecured\\tresp=AGFsaWNlAHNlY3JldA==\\n|"
			  "E:ok id=1 user=alice|");
	/* a failure with Dovecot 2.3's fields */
	expect_conversation(
		SC_PLAIN, HANDSHAKE "FAIL\t1\tuser=alice\n",
		HELLO_LOG "E:ready|"
			  "C:AUTH\\t1\\tPLAIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"
			  "rip=198.51.100.7\\tsecured\\tresp=AGFsaWNlAHNlY3JldA==\\n|"
			  "E:fail id=1 user=alice|");
	/* PLAIN without an initial response: the server asks with an empty challenge */
	expect_conversation(
		SC_PLAIN_NOIR, HANDSHAKE "CONT\t1\t\nOK\t1\tuser=alice\tauth_mech=PLAIN\n",
		HELLO_LOG "E:ready|"
			  "C:AUTH\\t1\\tPLAIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"
			  "rip=198.51.100.7\\tsecured\\n|"
			  "E:cont id=1 ch=|C:CONT\\t1\\tAGFsaWNlAHNlY3JldA==\\n|"
			  "E:ok id=1 user=alice|");
}

static void test_login_exchange(void)
{
	/* RFC 4954 appendix-style LOGIN: "Username:" and "Password:" challenges */
	expect_conversation(
		SC_LOGIN,
		HANDSHAKE "CONT\t1\tVXNlcm5hbWU6\nCONT\t1\tUGFzc3dvcmQ6\nOK\t1\tuser=alice\n",
		HELLO_LOG "E:ready|"
			  "C:AUTH\\t1\\tLOGIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"
			  "rip=198.51.100.7\\tsecured\\n|"
			  "E:cont id=1 ch=VXNlcm5hbWU6|C:CONT\\t1\\tYWxpY2U=\\n|"
			  "E:cont id=1 ch=UGFzc3dvcmQ6|C:CONT\\t1\\tc2VjcmV0\\n|"
			  "E:ok id=1 user=alice|");
	/* wrong password: Dovecot's FAIL after its failure delay */
	expect_conversation(
		SC_LOGIN,
		HANDSHAKE "CONT\t1\tVXNlcm5hbWU6\nCONT\t1\tUGFzc3dvcmQ6\n"
			  "FAIL\t1\tuser=alice\treason=Password expired\tcode=pass_expired\n",
		HELLO_LOG "E:ready|"
			  "C:AUTH\\t1\\tLOGIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"
			  "rip=198.51.100.7\\tsecured\\n|"
			  "E:cont id=1 ch=VXNlcm5hbWU6|C:CONT\\t1\\tYWxpY2U=\\n|"
			  "E:cont id=1 ch=UGFzc3dvcmQ6|C:CONT\\t1\\tc2VjcmV0\\n|"
			  "E:fail id=1 user=alice reason=Password expired|");
}

#define PLAIN_SENT                                                                         \
	HELLO_LOG "E:ready|"                                                               \
		  "C:AUTH\\t1\\tPLAIN\\tservice=smtp\\tnologin\\tlip=192.0.2.25\\t"        \
		  "rip=198.51.100.7\\tsecured\\tresp=AGFsaWNlAHNlY3JldA==\\n|"

static void test_replies(void)
{
	/* temporary failures: Dovecot 2.0's "temp" and 2.2+'s code=temp_fail */
	expect_conversation(SC_PLAIN, HANDSHAKE "FAIL\t1\ttemp\treason=db down\n",
			    PLAIN_SENT "E:fail id=1 reason=db down temp|");
	expect_conversation(SC_PLAIN, HANDSHAKE "FAIL\t1\tcode=temp_fail\tuser=bob\n",
			    PLAIN_SENT "E:fail id=1 user=bob temp|");
	expect_conversation(SC_PLAIN, HANDSHAKE "FAIL\t1\tcode=authz_fail\n",
			    PLAIN_SENT "E:fail id=1|");
	expect_conversation(SC_PLAIN, HANDSHAKE "FAIL\t1\n", PLAIN_SENT "E:fail id=1|");
	/* OK with nologin or proxy only verified the password: refused */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=alice\tnologin\treason=Go away\n",
			    PLAIN_SENT "E:fail id=1 user=alice reason=Go away nologin|");
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=alice\tnologin=Y\n",
			    PLAIN_SENT "E:fail id=1 user=alice nologin|");
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=alice\tproxy\thost=10.0.0.1\n",
			    PLAIN_SENT "E:fail id=1 user=alice nologin|");
	/* OK without a user: Postfix's "Authentication backend error" */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\n",
			    PLAIN_SENT "E:fail id=1 reason=Authentication backend error|");
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=\n",
			    PLAIN_SENT "E:fail id=1 reason=Authentication backend error|");
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser\n",
			    PLAIN_SENT "E:fail id=1 reason=Authentication backend error|");
	/* a reason on OK is not shown; temp on OK means nothing */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=a\treason=x\ttemp\n",
			    PLAIN_SENT "E:ok id=1 user=a|");
	/* escaped values are unescaped, then made printable as Postfix's printable() */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=a\001tb\0011c\001nd\001\\e\001\n",
			    PLAIN_SENT "E:ok id=1 user=a?b?c?d\\e|");
	expect_conversation(SC_PLAIN, HANDSHAKE "FAIL\t1\treason=x\0010y\001rz\x7f\n",
			    PLAIN_SENT "E:fail id=1 reason=x?y?z?|");
	/* UTF-8 stays; bytes that are not UTF-8 become '?' */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=j\xc3\xbcrgen\n",
			    PLAIN_SENT "E:ok id=1 user=j\\xc3\\xbcrgen|");
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=a\xc3\x28\xff\xe2\x82\n",
			    PLAIN_SENT "E:ok id=1 user=a?(???|");
	/* the last user= wins, as in Postfix; unknown fields are ignored */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=a\tfoo=bar\tuser=b\tbaz\n",
			    PLAIN_SENT "E:ok id=1 user=b|");
	/* a raw control character in a value */
	expect_conversation(SC_PLAIN, HANDSHAKE "OK\t1\tuser=a\rb\x02\n",
			    PLAIN_SENT "E:ok id=1 user=a?b?|");
}

static void test_hostile_server(void)
{
	static const struct {
		const char *server;
		const char *error;
	} cases[] = {
		{ "SPID\t1\n", "handshake does not start with VERSION" },
		{ "\n", "handshake does not start with VERSION" },
		{ "VERSION\t2\t0\n", "auth protocol major version mismatch" },
		{ "VERSION\t1\n", "malformed VERSION line" },
		{ "VERSION\t1\t2\t3\n", "malformed VERSION line" },
		{ "VERSION\t1\tx\n", "malformed VERSION line" },
		{ "VERSION\t\t1\n", "malformed VERSION line" },
		{ "VERSION\t99999999999\t1\n", "malformed VERSION line" },
		{ "VERSION\t4294967297\t1\n", "malformed VERSION line" },
		{ "VERSION\t1\t0\nVERSION\t1\t0\n", "second VERSION line" },
		{ "VERSION\t1\t0\nSPID\t5\n", "no MECH before SPID: not an auth-client socket" },
		{ "VERSION\t1\t0\nMECH\n", "MECH without a name" },
		{ "VERSION\t1\t0\nOK\t1\tuser=x\n", "reply before the handshake finished" },
		{ "VERSION\t1\t0\nFAIL\t1\n", "reply before the handshake finished" },
		{ "VERSION\t1\t0\nMECH\tA\0\n", "NUL in a line" },
		{ HANDSHAKE "OK\t2\tuser=x\n", "reply for an unknown request id" },
		{ HANDSHAKE "OK\n", "reply for an unknown request id" },
		{ HANDSHAKE "OK\t\n", "reply for an unknown request id" },
		{ HANDSHAKE "OK\t1x\n", "reply for an unknown request id" },
		{ HANDSHAKE "OK\t-1\n", "reply for an unknown request id" },
		{ HANDSHAKE "FAIL\t0\n", "reply for an unknown request id" },
		{ HANDSHAKE "OK\t4294967297\n", "reply for an unknown request id" },
		{ HANDSHAKE "CONT\t1\n", "CONT without data" },
		{ HANDSHAKE "CONT\t1\t#\n", "CONT data is not base64" },
		{ HANDSHAKE "CONT\t1\tZg=\n", "CONT data is not base64" },
		{ HANDSHAKE "CONT\t1\tVXNl\001nY3\n", "CONT data is not base64" },
		{ HANDSHAKE "CONT\t1\tVX\rNl\n", "CONT data is not base64" },
		{ HANDSHAKE "CONT\t1\tYQ==\nOK\t1\tuser=a\n",
		  "reply for a request that waits for the client" },
		{ HANDSHAKE "OK\t1\tuser=a\nOK\t1\tuser=a\n", "reply for an unknown request id" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* server strings may hold a NUL: take the length from the literal's parts */
		const char *srv = cases[i].server;
		size_t n = strlen(srv);
		if (strstr(cases[i].error, "NUL"))
			n += 2; /* "\0\n" after "MECH\tA" */
		struct smtp_dovecot *c;
		CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
		char *copy = malloc(n);
		memcpy(copy, srv, n);
		size_t off = 0, used;
		struct smtp_dovecot_event ev;
		enum smtp_dovecot_event_type t;
		char out[256];
		uint32_t id;
		while ((t = smtp_dovecot_step(c, copy + off, n - off, &used, &ev)) !=
		       SMTP_DOVECOT_EV_NONE) {
			off += used;
			if (t == SMTP_DOVECOT_EV_ERROR)
				break;
			if (t == SMTP_DOVECOT_EV_READY) {
				struct smtp_dovecot_auth_request q = plain_request();
				CHECK(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)) > 0);
			}
		}
		if (t != SMTP_DOVECOT_EV_ERROR)
			fprintf(stderr, "  case %zu: no error\n", i);
		CHECK_STR_EQ(smtp_dovecot_event_name(t), "error");
		CHECK_STR_EQ(ev.error, cases[i].error);
		CHECK_STR_EQ(smtp_dovecot_state_name(smtp_dovecot_get_state(c)), "failed");
		/* sticky: nothing more is taken, requests are refused */
		CHECK_INT_EQ(smtp_dovecot_step(c, "DONE\n", 5, &used, &ev), SMTP_DOVECOT_EV_ERROR);
		CHECK_INT_EQ(used, 0);
		CHECK_STR_EQ(ev.error, cases[i].error);
		struct smtp_dovecot_auth_request q = plain_request();
		CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -ENOTCONN);
		free(copy);
		smtp_dovecot_free(c);
	}
}

static void test_line_limits(void)
{
	struct smtp_dovecot *c;
	struct smtp_dovecot_event ev;
	size_t used;
	/* a line of SMTP_DOVECOT_LINE_MAX bytes with its LF is taken (and ignored) */
	char *big = malloc(SMTP_DOVECOT_LINE_MAX + 1);
	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, HANDSHAKE, strlen(HANDSHAKE), &used, &ev),
		     SMTP_DOVECOT_EV_READY);
	memset(big, 'X', SMTP_DOVECOT_LINE_MAX);
	big[SMTP_DOVECOT_LINE_MAX - 1] = '\n';
	CHECK_INT_EQ(smtp_dovecot_step(c, big, SMTP_DOVECOT_LINE_MAX, &used, &ev),
		     SMTP_DOVECOT_EV_NONE);
	CHECK_INT_EQ(used, SMTP_DOVECOT_LINE_MAX);
	/* in two pieces too */
	CHECK_INT_EQ(smtp_dovecot_step(c, big, 100, &used, &ev), SMTP_DOVECOT_EV_NONE);
	CHECK_INT_EQ(smtp_dovecot_step(c, big + 100, SMTP_DOVECOT_LINE_MAX - 100, &used, &ev),
		     SMTP_DOVECOT_EV_NONE);
	/* one more byte is too long, whether the LF came or not */
	big[SMTP_DOVECOT_LINE_MAX - 1] = 'X';
	big[SMTP_DOVECOT_LINE_MAX] = '\n';
	CHECK_INT_EQ(smtp_dovecot_step(c, big, SMTP_DOVECOT_LINE_MAX + 1, &used, &ev),
		     SMTP_DOVECOT_EV_ERROR);
	CHECK_STR_EQ(ev.error, "line longer than the auth protocol allows");
	smtp_dovecot_free(c);

	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, big, SMTP_DOVECOT_LINE_MAX - 1, &used, &ev),
		     SMTP_DOVECOT_EV_NONE);
	CHECK_INT_EQ(smtp_dovecot_step(c, big, 1, &used, &ev), SMTP_DOVECOT_EV_ERROR);
	smtp_dovecot_free(c);
	free(big);

	/* SMTP_DOVECOT_FIELDS_MAX fields are taken, one more is an error */
	char line[1024];
	size_t n = 0;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "FOO");
	for (int i = 1; i < SMTP_DOVECOT_FIELDS_MAX; i++)
		line[n++] = '\t';
	line[n++] = '\n';
	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, HANDSHAKE, strlen(HANDSHAKE), &used, &ev),
		     SMTP_DOVECOT_EV_READY);
	CHECK_INT_EQ(smtp_dovecot_step(c, line, n, &used, &ev), SMTP_DOVECOT_EV_NONE);
	line[n - 1] = '\t';
	line[n++] = '\n';
	CHECK_INT_EQ(smtp_dovecot_step(c, line, n, &used, &ev), SMTP_DOVECOT_EV_ERROR);
	CHECK_STR_EQ(ev.error, "too many fields in a line");
	smtp_dovecot_free(c);

	/* more mechanisms than SMTP_DOVECOT_MECH_MAX */
	char hs[4096];
	n = (size_t)snprintf(hs, sizeof(hs), "VERSION\t1\t2\n");
	for (int i = 0; i <= SMTP_DOVECOT_MECH_MAX; i++)
		n += (size_t)snprintf(hs + n, sizeof(hs) - n, "MECH\tM%d\n", i);
	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, hs, n, &used, &ev), SMTP_DOVECOT_EV_ERROR);
	CHECK_STR_EQ(ev.error, "too many mechanisms");
	CHECK_INT_EQ(smtp_dovecot_mech_count(c), SMTP_DOVECOT_MECH_MAX);
	smtp_dovecot_free(c);
}

/* ---- Requests ---- */

static struct smtp_dovecot *ready_conn(unsigned max)
{
	struct smtp_dovecot *c;
	struct smtp_dovecot_event ev;
	size_t used;
	CHECK_INT_EQ(smtp_dovecot_new(max, &c), 0);
	CHECK_INT_EQ(smtp_dovecot_step(c, HANDSHAKE, strlen(HANDSHAKE), &used, &ev),
		     SMTP_DOVECOT_EV_READY);
	return c;
}

static enum smtp_dovecot_event_type feed(struct smtp_dovecot *c, const char *s,
					 struct smtp_dovecot_event *ev)
{
	size_t used;
	enum smtp_dovecot_event_type t = smtp_dovecot_step(c, s, strlen(s), &used, ev);
	CHECK(t == SMTP_DOVECOT_EV_NONE || t == SMTP_DOVECOT_EV_ERROR || used == strlen(s));
	return t;
}

static void test_request_lines(void)
{
	struct smtp_dovecot *c;
	char out[512];
	uint32_t id;
	ssize_t n;

	CHECK_INT_EQ(smtp_dovecot_new(1, &c), 0);
	struct smtp_dovecot_auth_request q = plain_request();
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -ENOTCONN);
	smtp_dovecot_free(c);

	c = ready_conn(2);
	/* everything optional, IPv6, an escaped service name, the empty response */
	q = (struct smtp_dovecot_auth_request){
		.mech = MX_SPAN_LIT("Plain"),
		.service = "sm\ttp\001",
		.local = addr("2001:db8::25"),
		.remote = addr("2001:db8::7"),
		.local_port = 587,
		.remote_port = 61000,
		.secured = true,
		.valid_client_cert = true,
		.has_initial_response = true,
		.initial_response = MX_SPAN_LIT("="),
	};
	n = smtp_dovecot_auth(c, &q, &id, out, sizeof(out));
	const char *want = "AUTH\t2\tPLAIN\tservice=sm\001ttp\0011\tnologin\tlip=2001:db8::25"
			   "\trip=2001:db8::7\tlport=587\trport=61000\tsecured\tvalid-client-cert"
			   "\tresp==\n";
	CHECK_MEM_EQ(out, (size_t)n, want, strlen(want));
	CHECK_INT_EQ(id, 1u << 1 | 0); /* generation 1, slot 0 */
	/* an empty initial response, and no addresses */
	q = (struct smtp_dovecot_auth_request){ .mech = MX_SPAN_LIT("LOGIN"), .service = "smtp",
						.has_initial_response = true };
	n = smtp_dovecot_auth(c, &q, &id, out, sizeof(out));
	want = "AUTH\t3\tLOGIN\tservice=smtp\tnologin\tresp==\n";
	CHECK_MEM_EQ(out, (size_t)n, want, strlen(want));
	CHECK_INT_EQ(smtp_dovecot_pending(c), 2);
	/* table full */
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -EBUSY);
	smtp_dovecot_free(c);

	c = ready_conn(1);
	q = plain_request();
	/* refusals change nothing */
	q.mech = MX_SPAN_LIT("APOP");
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -ENOENT);
	q.mech = MX_SPAN_LIT("ANONYMOUS");
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -ENOENT);
	q.mech = MX_SPAN_LIT("GSSAPI");
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -ENOENT);
	q = plain_request();
	q.has_initial_response = true;
	q.initial_response = MX_SPAN_LIT("AGFsaWNl\tAHNlY3JldA==");
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -EINVAL);
	q.initial_response = MX_SPAN_LIT("Zg=");
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -EINVAL);
	q = plain_request();
	q.service = "";
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -EINVAL);
	q.service = NULL;
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)), -EINVAL);
	q = plain_request();
	n = smtp_dovecot_auth(c, &q, &id, out, sizeof(out));
	CHECK(n > 0);
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, 10), -EBUSY);
	smtp_dovecot_free(c);

	c = ready_conn(1);
	q = plain_request();
	for (size_t cap = 0; cap < (size_t)n; cap++)
		CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, cap), -ENOSPC);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, out, (size_t)n), n);
	smtp_dovecot_free(c);

	/* a line longer than Dovecot takes */
	c = ready_conn(1);
	size_t big = SMTP_DOVECOT_LINE_MAX;
	char *resp = malloc(big);
	memset(resp, 'A', big);
	char *line = malloc(big + 256);
	q = plain_request();
	q.has_initial_response = true;
	q.initial_response = mx_span_make(resp, big);
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &id, line, big + 256), -EMSGSIZE);
	/* the largest that fits: line of exactly SMTP_DOVECOT_LINE_MAX */
	const char *head = "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.25\t"
			   "rip=198.51.100.7\tsecured\tresp=";
	size_t fit = SMTP_DOVECOT_LINE_MAX - strlen(head) - 1;
	fit -= fit % 4;
	q.initial_response = mx_span_make(resp, fit);
	n = smtp_dovecot_auth(c, &q, &id, line, big + 256);
	CHECK_INT_EQ(n, (ssize_t)(strlen(head) + fit + 1));
	free(resp);
	free(line);
	smtp_dovecot_free(c);
}

static void test_cont_lines(void)
{
	struct smtp_dovecot *c = ready_conn(1);
	struct smtp_dovecot_event ev;
	char out[256];
	uint32_t id;
	struct smtp_dovecot_auth_request q = plain_request();

	CHECK(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)) > 0);
	CHECK_INT_EQ(id, 1);
	/* not waiting for the client yet */
	CHECK_INT_EQ(smtp_dovecot_cont(c, 1, MX_SPAN_LIT("YQ=="), out, sizeof(out)), -EPROTO);
	CHECK_INT_EQ(smtp_dovecot_cont(c, 2, MX_SPAN_LIT("YQ=="), out, sizeof(out)), -ENOENT);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, 1)),
		     "wait-server");
	CHECK_INT_EQ(feed(c, "CONT\t1\t\n", &ev), SMTP_DOVECOT_EV_CONT);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, 1)),
		     "wait-client");
	CHECK_INT_EQ(smtp_dovecot_cont(c, 1, MX_SPAN_LIT("Y Q=="), out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(smtp_dovecot_cont(c, 1, MX_SPAN_LIT("*"), out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(smtp_dovecot_cont(c, 1, MX_SPAN_LIT("YQ=="), out, 9), -ENOSPC);
	ssize_t n = smtp_dovecot_cont(c, 1, MX_SPAN_LIT(""), out, sizeof(out));
	CHECK_MEM_EQ(out, (size_t)n, "CONT\t1\t\n", 8);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, 1)),
		     "wait-server");
	CHECK_INT_EQ(feed(c, "OK\t1\tuser=u\n", &ev), SMTP_DOVECOT_EV_OK);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, 1)), "none");
	smtp_dovecot_free(c);
}

static void test_many_requests(void)
{
	/* 5 slots: ids are (generation << 3) | slot */
	struct smtp_dovecot *c = ready_conn(5);
	struct smtp_dovecot_event ev;
	char out[256], line[64];
	uint32_t ids[5];
	struct smtp_dovecot_auth_request q = plain_request();

	for (int i = 0; i < 5; i++) {
		CHECK(smtp_dovecot_auth(c, &q, &ids[i], out, sizeof(out)) > 0);
		CHECK_INT_EQ(ids[i], 8u | (unsigned)i);
	}
	CHECK_INT_EQ(smtp_dovecot_auth(c, &q, &ids[0], out, sizeof(out)), -EBUSY);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 5);
	/* replies in any order, each to its request */
	static const int order[5] = { 3, 0, 4, 2, 1 };
	for (int k = 0; k < 5; k++) {
		int i = order[k];
		snprintf(line, sizeof(line), "%s\t%u\tuser=u%d\n", i % 2 ? "OK" : "FAIL",
			 (unsigned)ids[i], i);
		CHECK_INT_EQ(feed(c, line, &ev),
			     i % 2 ? SMTP_DOVECOT_EV_OK : SMTP_DOVECOT_EV_FAIL);
		CHECK_INT_EQ(ev.id, ids[i]);
		char u[8];
		snprintf(u, sizeof(u), "u%d", i);
		CHECK_MEM_EQ(ev.user.ptr, ev.user.len, u, strlen(u));
	}
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	/* slots are reused with a new generation: the old id is unknown now */
	uint32_t again;
	CHECK(smtp_dovecot_auth(c, &q, &again, out, sizeof(out)) > 0);
	CHECK(again != ids[0] && again != ids[1] && (again >> 3) == 2);
	snprintf(line, sizeof(line), "OK\t%u\tuser=x\n", (unsigned)(again & 7u) | 8u);
	CHECK_INT_EQ(feed(c, line, &ev), SMTP_DOVECOT_EV_ERROR);
	CHECK_STR_EQ(ev.error, "reply for an unknown request id");
	smtp_dovecot_free(c);

	/* ids out of the table's range are unknown */
	c = ready_conn(3);
	CHECK(smtp_dovecot_auth(c, &q, &again, out, sizeof(out)) > 0);
	CHECK_INT_EQ(feed(c, "OK\t7\tuser=x\n", &ev), SMTP_DOVECOT_EV_ERROR);
	smtp_dovecot_free(c);

	/* generations wrap without ever giving id 0 */
	c = ready_conn(SMTP_DOVECOT_REQUESTS_MAX);
	for (unsigned i = 0; i < 70000; i++) {
		uint32_t id;
		CHECK(smtp_dovecot_auth(c, &q, &id, out, sizeof(out)) > 0);
		CHECK(id != 0);
		snprintf(line, sizeof(line), "FAIL\t%u\n", (unsigned)id);
		CHECK_INT_EQ(feed(c, line, &ev), SMTP_DOVECOT_EV_FAIL);
		CHECK_INT_EQ(ev.id, id);
	}
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	smtp_dovecot_free(c);

	struct smtp_dovecot *bad;
	CHECK_INT_EQ(smtp_dovecot_new(0, &bad), -EINVAL);
	CHECK_INT_EQ(smtp_dovecot_new(SMTP_DOVECOT_REQUESTS_MAX + 1, &bad), -EINVAL);
	CHECK(bad == NULL);
}

static void test_cancel(void)
{
	struct smtp_dovecot *c = ready_conn(4);
	struct smtp_dovecot_event ev;
	char out[256];
	uint32_t a, b, d;
	struct smtp_dovecot_auth_request q = plain_request();

	CHECK(smtp_dovecot_auth(c, &q, &a, out, sizeof(out)) > 0);
	CHECK(smtp_dovecot_auth(c, &q, &b, out, sizeof(out)) > 0);
	CHECK(smtp_dovecot_auth(c, &q, &d, out, sizeof(out)) > 0);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, 12345, out, sizeof(out)), -ENOENT);

	/* the server is working on a: nothing to send, its reply is swallowed */
	CHECK_INT_EQ(smtp_dovecot_cancel(c, a, out, sizeof(out)), 0);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, a, out, sizeof(out)), 0);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, a)), "cancelled");
	char line[128];
	snprintf(line, sizeof(line), "OK\t%u\tuser=x\nFAIL\t%u\n", (unsigned)a, (unsigned)b);
	CHECK_INT_EQ(feed(c, line, &ev), SMTP_DOVECOT_EV_FAIL); /* a's OK went silently */
	CHECK_INT_EQ(ev.id, b);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 1);

	/* d waits for the client: CANCEL is written and d is gone */
	snprintf(line, sizeof(line), "CONT\t%u\tYQ==\n", (unsigned)d);
	CHECK_INT_EQ(feed(c, line, &ev), SMTP_DOVECOT_EV_CONT);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, d, out, 5), -ENOSPC);
	ssize_t n = smtp_dovecot_cancel(c, d, out, sizeof(out));
	snprintf(line, sizeof(line), "CANCEL\t%u\n", (unsigned)d);
	CHECK_MEM_EQ(out, (size_t)n, line, strlen(line));
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, d, out, sizeof(out)), -ENOENT);

	/* cancelled while the server works, and then it asks for more: CANCEL_NEEDED */
	CHECK(smtp_dovecot_auth(c, &q, &a, out, sizeof(out)) > 0);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, a, out, sizeof(out)), 0);
	snprintf(line, sizeof(line), "CONT\t%u\tYQ==\n", (unsigned)a);
	CHECK_INT_EQ(feed(c, line, &ev), SMTP_DOVECOT_EV_CANCEL_NEEDED);
	CHECK_INT_EQ(ev.id, a);
	CHECK_STR_EQ(smtp_dovecot_req_state_name(smtp_dovecot_request_state(c, a)), "cancel-due");
	CHECK_INT_EQ(smtp_dovecot_cont(c, a, MX_SPAN_LIT("YQ=="), out, sizeof(out)), -EPROTO);
	n = smtp_dovecot_cancel(c, a, out, sizeof(out));
	snprintf(line, sizeof(line), "CANCEL\t%u\n", (unsigned)a);
	CHECK_MEM_EQ(out, (size_t)n, line, strlen(line));
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);

	/* after a protocol error, cancelling only forgets */
	CHECK(smtp_dovecot_auth(c, &q, &a, out, sizeof(out)) > 0);
	CHECK_INT_EQ(feed(c, "OK\t999\n", &ev), SMTP_DOVECOT_EV_ERROR);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 1);
	CHECK_INT_EQ(smtp_dovecot_cancel(c, a, out, sizeof(out)), 0);
	CHECK_INT_EQ(smtp_dovecot_pending(c), 0);
	smtp_dovecot_free(c);
}

/* ---- Escaping and options ---- */

static void test_escape(void)
{
	char out[64];
	ssize_t n = smtp_dovecot_escape("a\tb\nc\rd\001e", 9, out, sizeof(out));
	CHECK_MEM_EQ(out, (size_t)n, "a\001tb\001nc\001rd\0011e", 13);
	n = smtp_dovecot_escape("x\0y", 3, out, sizeof(out));
	CHECK_MEM_EQ(out, (size_t)n, "x\0010y", 4);
	CHECK_INT_EQ(smtp_dovecot_escape("\t", 1, out, 1), -ENOSPC);
	CHECK_INT_EQ(smtp_dovecot_escape("ab", 2, out, 1), -ENOSPC);
	CHECK_INT_EQ(smtp_dovecot_escape("", 0, out, 0), 0);

	static const char esc_in[] = "a\001tb\001nc\001rd\0011e\0010f\001zg\001";
	static const char esc_want[] = "a\tb\nc\rd\001e\0fzg";
	char s[32];
	memcpy(s, esc_in, sizeof(esc_in) - 1);
	size_t m = smtp_dovecot_unescape(s, sizeof(esc_in) - 1);
	CHECK_MEM_EQ(s, m, esc_want, sizeof(esc_want) - 1);

	/* every byte value round-trips, and the escaped form has no TAB, LF or CR */
	char all[256], esc[512];
	for (int i = 0; i < 256; i++)
		all[i] = (char)i;
	n = smtp_dovecot_escape(all, 256, esc, sizeof(esc));
	CHECK_INT_EQ(n, 256 + 5);
	CHECK(memchr(esc, '\t', (size_t)n) == NULL && memchr(esc, '\n', (size_t)n) == NULL &&
	      memchr(esc, '\r', (size_t)n) == NULL);
	m = smtp_dovecot_unescape(esc, (size_t)n);
	CHECK_MEM_EQ(esc, m, all, 256);
}

static void test_sec_opts(void)
{
	unsigned m = 99;
	char err[128];
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse("noanonymous", &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m, SMTP_DOVECOT_SEC_NOANONYMOUS);
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse(" NoPlainText,noanonymous\tnoactive ,"
						 "nodictionary, forward_secrecy mutual_auth",
						 &m, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m, 0x3f);
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse("", &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m, 0);
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse(NULL, &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse(" , ", &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse("noanonymous, nosuch", &m, err, sizeof(err)),
		     -EINVAL);
	CHECK_STR_EQ(err, "unknown SASL security option 'nosuch'");
	CHECK_INT_EQ(smtp_dovecot_sec_opts_parse("noplaintex", &m, NULL, 0), -EINVAL);
}

/* ---- SMTP side ---- */

static void test_base64_rfc4648(void)
{
	/* RFC 4648 section 10 */
	static const char *const vec[][2] = {
		{ "", "" },		{ "f", "Zg==" },	 { "fo", "Zm8=" },
		{ "foo", "Zm9v" },	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char enc[16];
		uint8_t dec[16];
		size_t pn = strlen(vec[i][0]), en = strlen(vec[i][1]);
		ssize_t n = smtp_dovecot_b64_encode(vec[i][0], pn, enc, sizeof(enc));
		CHECK_MEM_EQ(enc, (size_t)n, vec[i][1], en);
		CHECK_INT_EQ(SMTP_DOVECOT_B64_LEN(pn), en);
		char *heap = malloc(en ? en : 1);
		memcpy(heap, vec[i][1], en);
		n = smtp_dovecot_b64_decode(mx_span_make(heap, en), dec, sizeof(dec));
		CHECK_MEM_EQ(dec, (size_t)n, vec[i][0], pn);
		CHECK_INT_EQ(smtp_dovecot_b64_decode(mx_span_make(heap, en), NULL, 0), pn);
		if (pn > 0) {
			CHECK_INT_EQ(smtp_dovecot_b64_decode(mx_span_make(heap, en), dec, pn - 1),
				     -ENOSPC);
			CHECK_INT_EQ(smtp_dovecot_b64_encode(vec[i][0], pn, enc, en - 1), -ENOSPC);
		}
		free(heap);
	}
	/* RFC 4954's example PLAIN response: "test\0test\01234" */
	uint8_t dec[32];
	ssize_t n = smtp_dovecot_b64_decode(MX_SPAN_LIT("dGVzdAB0ZXN0ADEyMzQ="), dec, sizeof(dec));
	CHECK_MEM_EQ(dec, (size_t)n, "test\0test\0" "1234", 14);

	/* strict: length, padding position, pad bits, alphabet */
	static const char *const bad[] = {
		"Zg", "Zg=", "Zg===", "Z===", "====", "=Zg=", "Zm=v", "Zg==Zg==", "Zh==",
		"Zm9=", "Zm9v\n", " Zm9v", "Zm 9", "Zm9v\r\n", "Zm9-", "Zm9_", "Zm9\xc3",
		"Zm9v=", "Z", "=", "*",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = strlen(bad[i]);
		char *heap = malloc(len);
		memcpy(heap, bad[i], len);
		if (smtp_dovecot_b64_decode(mx_span_make(heap, len), dec, sizeof(dec)) != -EINVAL)
			fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
		CHECK_INT_EQ(smtp_dovecot_b64_decode(mx_span_make(heap, len), dec, sizeof(dec)),
			     -EINVAL);
		CHECK_INT_EQ(smtp_dovecot_b64_decode(mx_span_make(heap, len), NULL, 0), -EINVAL);
		free(heap);
	}
	/* round trips of every length up to 64 */
	uint8_t src[64];
	for (int i = 0; i < 64; i++)
		src[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len <= 64; len++) {
		char enc[128];
		uint8_t back[64];
		n = smtp_dovecot_b64_encode(src, len, enc, sizeof(enc));
		CHECK_INT_EQ(n, SMTP_DOVECOT_B64_LEN(len));
		ssize_t m = smtp_dovecot_b64_decode(mx_span_make(enc, (size_t)n), back, len);
		CHECK_MEM_EQ(back, (size_t)m, src, len);
	}
}

static void expect_cmd(const char *args, enum smtp_dovecot_cmd_result want, const char *mech,
		       int ir, const char *resp)
{
	size_t n = strlen(args);
	char *heap = malloc(n ? n : 1);
	memcpy(heap, args, n);
	struct smtp_dovecot_auth_cmd cmd;
	enum smtp_dovecot_cmd_result r = smtp_dovecot_auth_cmd_parse(mx_span_make(heap, n), &cmd);
	if (r != want)
		fprintf(stderr, "  args: \"%s\"\n", args);
	CHECK_STR_EQ(smtp_dovecot_cmd_result_name(r), smtp_dovecot_cmd_result_name(want));
	if (mech)
		CHECK_MEM_EQ(cmd.mech.ptr, cmd.mech.len, mech, strlen(mech));
	if (r == SMTP_DOVECOT_CMD_OK) {
		CHECK_INT_EQ(cmd.has_initial_response, ir);
		if (resp)
			CHECK_MEM_EQ(cmd.initial_response.ptr, cmd.initial_response.len, resp,
				     strlen(resp));
	}
	free(heap);
	/* prefixes never read past their end */
	for (size_t k = 0; k < n; k++) {
		char *pre = malloc(k ? k : 1);
		memcpy(pre, args, k);
		(void)smtp_dovecot_auth_cmd_parse(mx_span_make(pre, k), &cmd);
		free(pre);
	}
}

static void test_auth_command(void)
{
	expect_cmd("PLAIN", SMTP_DOVECOT_CMD_OK, "PLAIN", 0, NULL);
	expect_cmd("plain", SMTP_DOVECOT_CMD_OK, "plain", 0, NULL);
	expect_cmd(" \tLOGIN  ", SMTP_DOVECOT_CMD_OK, "LOGIN", 0, NULL);
	expect_cmd("PLAIN dGVzdAB0ZXN0ADEyMzQ=", SMTP_DOVECOT_CMD_OK, "PLAIN", 1,
		   "dGVzdAB0ZXN0ADEyMzQ=");
	expect_cmd("PLAIN =", SMTP_DOVECOT_CMD_OK, "PLAIN", 1, "");
	expect_cmd("SCRAM-SHA-256 biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlx", SMTP_DOVECOT_CMD_OK,
		   "SCRAM-SHA-256", 1, NULL);
	expect_cmd("X_Y-1", SMTP_DOVECOT_CMD_OK, "X_Y-1", 0, NULL);
	expect_cmd("TWENTY-CHARACTERS-OK", SMTP_DOVECOT_CMD_OK, NULL, 0, NULL);
	/* Postfix: 501 5.5.4 Syntax: AUTH mechanism */
	expect_cmd("", SMTP_DOVECOT_CMD_SYNTAX, NULL, 0, NULL);
	expect_cmd("   ", SMTP_DOVECOT_CMD_SYNTAX, NULL, 0, NULL);
	expect_cmd("PLAIN Zm9v extra", SMTP_DOVECOT_CMD_SYNTAX, NULL, 0, NULL);
	expect_cmd("PLAIN Zm9v a b c d", SMTP_DOVECOT_CMD_SYNTAX, NULL, 0, NULL);
	expect_cmd("TWENTY-ONE-CHARACTERS", SMTP_DOVECOT_CMD_BAD_MECH, NULL, 0, NULL);
	expect_cmd("PL@IN", SMTP_DOVECOT_CMD_BAD_MECH, "PL@IN", 0, NULL);
	expect_cmd("PLAIN\x01", SMTP_DOVECOT_CMD_BAD_MECH, NULL, 0, NULL);
	expect_cmd("PLAIN ====", SMTP_DOVECOT_CMD_BAD_BASE64, "PLAIN", 0, NULL);
	expect_cmd("PLAIN Zg=", SMTP_DOVECOT_CMD_BAD_BASE64, "PLAIN", 0, NULL);
	expect_cmd("PLAIN *", SMTP_DOVECOT_CMD_BAD_BASE64, "PLAIN", 0, NULL);
	expect_cmd("PLAIN ==", SMTP_DOVECOT_CMD_BAD_BASE64, "PLAIN", 0, NULL);
}

static void test_client_response(void)
{
	static const struct {
		const char *line;
		size_t limit;
		enum smtp_dovecot_resp_result want;
	} cases[] = {
		{ "*", 100, SMTP_DOVECOT_RESP_CANCEL },
		{ "", 100, SMTP_DOVECOT_RESP_DATA },
		{ "YWxpY2U=", 100, SMTP_DOVECOT_RESP_DATA },
		{ "YWxpY2U=", 8, SMTP_DOVECOT_RESP_DATA },
		{ "YWxpY2U=", 7, SMTP_DOVECOT_RESP_TOO_LONG },
		{ " *", 100, SMTP_DOVECOT_RESP_BAD_BASE64 }, /* Postfix compares exactly */
		{ "* ", 100, SMTP_DOVECOT_RESP_BAD_BASE64 },
		{ "**", 100, SMTP_DOVECOT_RESP_BAD_BASE64 },
		{ "=", 100, SMTP_DOVECOT_RESP_BAD_BASE64 },
		{ "YWxpY2U", 100, SMTP_DOVECOT_RESP_BAD_BASE64 },
		{ "YWxp Y2U=", 100, SMTP_DOVECOT_RESP_BAD_BASE64 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].line);
		char *heap = malloc(n ? n : 1);
		memcpy(heap, cases[i].line, n);
		enum smtp_dovecot_resp_result r =
			smtp_dovecot_response_parse(mx_span_make(heap, n), cases[i].limit);
		if (r != cases[i].want)
			fprintf(stderr, "  line: \"%s\"\n", cases[i].line);
		CHECK_STR_EQ(smtp_dovecot_resp_result_name(r),
			     smtp_dovecot_resp_result_name(cases[i].want));
		free(heap);
	}
	CHECK_INT_EQ(SMTP_DOVECOT_RESPONSE_LIMIT, 12288);
}

static void expect_auth_param(const char *v, int rc, const char *decoded, bool is_null)
{
	size_t n = strlen(v);
	char *heap = malloc(n ? n : 1);
	memcpy(heap, v, n);
	char out[300];
	size_t len = 77;
	bool null = true;
	int r = smtp_dovecot_mail_auth_param(mx_span_make(heap, n), out, sizeof(out), &len, &null);
	if (r != rc)
		fprintf(stderr, "  value: \"%s\"\n", v);
	CHECK_INT_EQ(r, rc);
	if (rc == 0) {
		CHECK_MEM_EQ(out, len, decoded, strlen(decoded));
		CHECK_INT_EQ(null, is_null);
	}
	free(heap);
	/* prefixes never read past their end */
	for (size_t k = 0; k < n; k++) {
		char *pre = malloc(k ? k : 1);
		memcpy(pre, v, k);
		(void)smtp_dovecot_mail_auth_param(mx_span_make(pre, k), out, sizeof(out), &len,
						   &null);
		(void)smtp_dovecot_b64_decode(mx_span_make(pre, k), out, sizeof(out));
		(void)smtp_dovecot_response_parse(mx_span_make(pre, k), 1000);
		free(pre);
	}
}

static void test_mail_auth_param(void)
{
	expect_auth_param("<>", 0, "<>", true);
	expect_auth_param("+3C+3E", 0, "<>", true);
	expect_auth_param("alice@example.org", 0, "alice@example.org", false);
	expect_auth_param("a+2Bb@example.org", 0, "a+b@example.org", false);
	expect_auth_param("a+2bb@example.org", 0, "a+b@example.org", false); /* as Postfix */
	expect_auth_param("a+3Db@x", 0, "a=b@x", false);
	expect_auth_param("+22a+20b+22@x", 0, "\"a b\"@x", false);
	expect_auth_param("j+C3+BCrgen@x", 0, "j\xc3\xbcrgen@x", false);
	expect_auth_param("", -EINVAL, NULL, false);
	expect_auth_param("a=b", -EINVAL, NULL, false);
	expect_auth_param("a b", -EINVAL, NULL, false);
	expect_auth_param("a+2", -EINVAL, NULL, false);
	expect_auth_param("a+", -EINVAL, NULL, false);
	expect_auth_param("a+ZZb", -EINVAL, NULL, false);
	expect_auth_param("a+00b", -EINVAL, NULL, false);
	expect_auth_param("a+0Db", -EINVAL, NULL, false);
	expect_auth_param("a+7F", -EINVAL, NULL, false);
	expect_auth_param("a+FFb", -EINVAL, NULL, false); /* not UTF-8 */
	expect_auth_param("a\xc3\xbc", -EINVAL, NULL, false); /* raw non-ASCII is not xtext */
	expect_auth_param("a\x7f", -EINVAL, NULL, false);

	char big[300];
	memset(big, 'a', sizeof(big));
	big[256] = '\0';
	expect_auth_param(big, 0, big, false);
	big[256] = 'a';
	big[257] = '\0';
	expect_auth_param(big, -EINVAL, NULL, false);

	char out[4];
	size_t len;
	bool null;
	CHECK_INT_EQ(smtp_dovecot_mail_auth_param(MX_SPAN_LIT("abcde"), out, sizeof(out), &len,
						  &null),
		     -ENOSPC);
	CHECK_INT_EQ(smtp_dovecot_mail_auth_param(MX_SPAN_LIT("abcd"), out, sizeof(out), &len,
						  &null),
		     0);
}

static void test_reply_texts(void)
{
	char out[512];
	size_t n = smtp_dovecot_fail_reply(false, MX_SPAN_LIT("Bad password"), out, sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: Bad password");
	CHECK_INT_EQ(n, strlen(out));
	smtp_dovecot_fail_reply(false, mx_span_make(NULL, 0), out, sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: (reason unavailable)");
	smtp_dovecot_fail_reply(true, MX_SPAN_LIT(SMTP_DOVECOT_REASON_CONN_LOST), out,
				sizeof(out));
	CHECK_STR_EQ(out, "454 4.7.0 Temporary authentication failure: Connection lost to "
			  "authentication server");
	smtp_dovecot_fail_reply(false, MX_SPAN_LIT("a\r\nb\xc3\xbc"), out, sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: a??b??");
	smtp_dovecot_fail_reply(false, MX_SPAN_LIT(SMTP_DOVECOT_REASON_BAD_INITIAL), out,
				sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: Invalid base64 data in "
			  "initial response");
	/* cut to fit */
	n = smtp_dovecot_fail_reply(false, MX_SPAN_LIT("0123456789012345678901234567890123"), out,
				    64);
	CHECK_INT_EQ(n, 63);
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: 01234567890123456789012");
	n = smtp_dovecot_bad_mech_reply(MX_SPAN_LIT("FOO"), out, sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: Invalid authentication "
			  "mechanism: 'FOO'");
	n = smtp_dovecot_bad_mech_reply(MX_SPAN_LIT("A\tB"), out, sizeof(out));
	CHECK_STR_EQ(out, "535 5.7.8 Error: authentication failed: Invalid authentication "
			  "mechanism: 'A?B'");
	/* the closing quote survives a cut */
	n = smtp_dovecot_bad_mech_reply(MX_SPAN_LIT("XXXXXXXXXXXXXXXXXXXX"), out, 90);
	CHECK_INT_EQ(n, 89);
	CHECK_INT_EQ(out[n - 1], '\'');
}

int main(void)
{
	RUN_TEST(test_hello);
	RUN_TEST(test_handshake);
	RUN_TEST(test_handshake_odd_but_fine);
	RUN_TEST(test_plain_exchange);
	RUN_TEST(test_login_exchange);
	RUN_TEST(test_replies);
	RUN_TEST(test_hostile_server);
	RUN_TEST(test_line_limits);
	RUN_TEST(test_request_lines);
	RUN_TEST(test_cont_lines);
	RUN_TEST(test_many_requests);
	RUN_TEST(test_cancel);
	RUN_TEST(test_escape);
	RUN_TEST(test_sec_opts);
	RUN_TEST(test_base64_rfc4648);
	RUN_TEST(test_auth_command);
	RUN_TEST(test_client_response);
	RUN_TEST(test_mail_auth_param);
	RUN_TEST(test_reply_texts);
	return TEST_RESULT();
}
