"""Seeded generator of SMTP sessions for tests/e2e/test_policy_diff.py.

A session is a list of steps; each step is (kind, bytes) where kind names the command for
the report (XCLIENT, EHLO, HELO, MAIL, RCPT, DATA, MESSAGE, QUIT). The same seed gives the
same sessions, so a mismatch found with a random seed is reproduced with
MXGATE_POLICY_SEEDS=SEED. The pools below are chosen against the tables in this directory:
each names entries that hit and entries that miss."""

import random

CLIENT_ADDRS = [
    # mynetworks
    "192.0.2.3", "IPV6:2001:db8:1::25",
    # client_access (hash): exact entries, DUNNO, prefix, IPv6
    "198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13",
    "198.51.100.20", "198.51.100.21", "198.51.100.22", "198.51.100.23",
    "198.51.100.24", "198.51.100.25",
    "203.0.113.5", "203.0.113.77", "203.0.113.130", "203.0.113.200",
    "IPV6:2001:db8:2::5", "IPV6:2001:db8:6::9",
    # client.cidr: first match wins
    "198.18.5.9", "198.18.200.1", "100.64.7.7", "100.65.1.1", "IPV6:2001:db8:4:1::2",
    # zen.rbl.test: 127.0.0.2, .4, .10 (warn only), default, .3 (no filter matches)
    "198.51.100.50", "198.51.100.51", "198.51.100.52", "198.51.100.53", "198.51.100.54",
    "IPV6:2001:db8:5::77", "IPV6:2001:db8:7::1",
    # listed nowhere
    "198.51.100.99", "192.0.2.77", "IPV6:2001:db8:9::1", "IPV6:2001:db8:9::2",
]

CLIENT_NAMES = [
    "[UNAVAILABLE]", "[UNAVAILABLE]", "mail.good.example", "bad.client.example",
    "host.bad.client.example", "relaxed.client.example", "strict.client.example",
    "dynamic-198-51-100-9.isp.example",
]

HELO_NAMES = [
    "client.good.example", "mail.good.example",                  # valid, unlisted
    "spam.helo.example", "defer.helo.example", "mx.evil.example",  # helo_access
    "trusted.helo.example", "strict.helo.example",
    "localhost", "mailhost",                                       # not FQDN
    "bad_host!", "-dash.example", "a..b.example",                  # invalid
    "[198.51.100.7]", "[192.0.2.300]",                             # address literals
]

SENDERS = [
    "", "user@good.example", "User+tag@Good.Example",              # null, unlisted
    "x@spam.example", "BOUNCE-123@lists.example", "someone+defer@good.example",
    "strict@good.example", "strict@spam.example", "strict@a.spammer.example",
    "hold@good.example", "discard@good.example", "warn@good.example",
    "who@block.example", "temp@good.example",
    "user@spammer.example", "user@x.spammer.example", "user@wild.example",
    "user@sub.wild.example",                                       # dbl.rbl.test
    "user", "user@localhost",                                      # non-FQDN
]

RECIPIENTS = [
    "alice@local.example", "bob@local.example", "alice+tag@local.example",
    "carol@local.example", "postmaster@local.example", "ok@local.example",
    "Alice@LOCAL.example",
    "listed@relay.example", "listed+ext@relay.example", "nobody@relay.example",
    "reject@relay.example", "defer@relay.example", "temp@relay.example",
    "perm@relay.example", "dunno@relay.example", "hold@relay.example",
    "discard@relay.example", "strict@relay.example", "relaxed@relay.example",
    "info@relay.example", "joe-bounce@relay.example", "abuse@relay.example",
    "abuse@local.example", "postmaster@relay.example",
    "user@foreign.example", "postmaster@foreign.example", "user@sub.relay.example",
    "alice", "bob@localhost",
]

CLEAN_ADDRS = ["198.51.100.99", "192.0.2.77", "IPV6:2001:db8:9::1", "198.51.100.12",
               "198.18.5.9", "198.51.100.54"]
CLEAN_NAMES = ["[UNAVAILABLE]", "mail.good.example", "relaxed.client.example"]
CLEAN_HELOS = ["client.good.example", "mail.good.example", "trusted.helo.example"]
CLEAN_SENDERS = ["user@good.example", "User+tag@Good.Example", "", "BOUNCE-123@lists.example",
                 "bounce-7@lists.example",
                 "hold@good.example", "discard@good.example", "warn@good.example"]

HEADERS = [
    [],
    ["Subject: Buy VIAGRA today"],     # not rejected: /i makes the pattern case-sensitive
    ["Subject: cheap viagra here"],
    ["X-Spam-Flag: YES"],
    ["X-Mailer: BadBulk 1.0"],
    ["X-Mailer: GoodMailer"],
    ["X-Hold: please"],
    ["X-Discard: please"],
    ["X-Warn: note"],
    ["X-Folded: first line", " evil continuation"],
    ["X-Folded: first line", " harmless continuation"],
]


def xclient_name(name):
    return name


def message(rnd, n):
    extra = rnd.choice(HEADERS)
    lines = [
        "From: sender@good.example",
        "To: rcpt@relay.example",
        f"Message-ID: <diff-{n}@good.example>",
        "Date: Sun, 22 Nov 2026 10:00:00 +0000",
    ]
    if not any(h.startswith("Subject:") for h in extra):
        lines.append(f"Subject: session {n}")
    lines += extra
    lines += ["", "body line", ".leading dot", "last line"]
    out = []
    for line in lines:
        out.append(("." + line) if line.startswith(".") else line)
    return ("\r\n".join(out) + "\r\n.\r\n").encode()


def session(rnd, n):
    """One session: a dict with the steps and what the generator chose (for the report)."""
    addr = rnd.choice(CLIENT_ADDRS)
    name = rnd.choice(CLIENT_NAMES)
    helo = rnd.choice(HELO_NAMES)
    sender = rnd.choice(SENDERS)
    if rnd.random() < 0.35:
        # A client nothing lists, so that sessions reach the recipient tables, DATA and
        # header_checks often enough.
        addr = rnd.choice(CLEAN_ADDRS)
        name = rnd.choice(CLEAN_NAMES)
        helo = rnd.choice(CLEAN_HELOS)
        sender = rnd.choice(CLEAN_SENDERS)
    helo_verb = rnd.choice(["EHLO", "EHLO", "HELO"])
    rcpts = [rnd.choice(RECIPIENTS) for _ in range(rnd.randint(1, 4))]
    steps = [("XCLIENT", f"XCLIENT NAME={xclient_name(name)} ADDR={addr}\r\n".encode())]
    if rnd.random() > 0.05:  # now and then no HELO at all (smtpd_helo_required = no)
        steps.append((helo_verb, f"{helo_verb} {helo}\r\n".encode()))
    steps.append(("MAIL", f"MAIL FROM:<{sender}>\r\n".encode()))
    for r in rcpts:
        steps.append(("RCPT", f"RCPT TO:<{r}>\r\n".encode()))
    # DATA goes to both servers when either accepted a recipient, and now and then when
    # none did (554 no valid recipients); the message only to a server that said 354.
    steps.append(("DATA?", b"DATA\r\n"))
    steps.append(("MESSAGE", message(rnd, n)))
    if rnd.random() < 0.2:
        # A second transaction in the same session (what a DISCARD, HOLD or reject in the
        # first one must not leak into), after RSET.
        sender2 = rnd.choice(SENDERS)
        steps.append(("RSET", b"RSET\r\n"))
        steps.append(("MAIL", f"MAIL FROM:<{sender2}>\r\n".encode()))
        for _ in range(rnd.randint(1, 2)):
            r = rnd.choice(RECIPIENTS)
            rcpts.append(r)
            steps.append(("RCPT", f"RCPT TO:<{r}>\r\n".encode()))
        steps.append(("DATA?", b"DATA\r\n"))
        steps.append(("MESSAGE", message(rnd, n)))
    steps.append(("QUIT", b"QUIT\r\n"))
    return {"n": n, "addr": addr, "name": name, "helo": helo, "sender": sender,
            "rcpts": rcpts, "steps": steps, "data_anyway": rnd.random() < 0.15}


def sessions(seed, count):
    rnd = random.Random(seed)
    return [session(rnd, n) for n in range(count)]


# ---------------------------------------------------------------------------------------
# The DNS variants (restrictions_dns.cf): every name below is in dns_zones.conf, and each
# pool names what hits and what misses. A client is set by XCLIENT (NAME= and
# REVERSE_NAME= with [UNAVAILABLE] and [TEMPUNAVAIL], or ADDR= alone: the names stay those
# of the real connection), or by no XCLIENT at all: the session connects from 127.0.0.N
# and both servers look its address up (PTR, then the name's A).

DNS_CLIENT_ADDRS = [
    # unlisted anywhere
    "198.51.100.99", "192.0.2.77", "IPV6:2001:db8:9::1",
    # mynetworks
    "192.0.2.3",
    # zen.rbl.test: .2 listed and allowlisted in wl.rbl.test, .4 (reject), .10 (warn
    # only), default .2 (reject), .3 (no filter matches), a range (.6) and its exclusion
    "198.51.100.50", "198.51.100.51", "198.51.100.52", "198.51.100.53", "198.51.100.54",
    "203.0.113.131", "203.0.113.130", "IPV6:2001:db8:5::77", "IPV6:2001:db8:7::1",
    # zen.rbl.test answers 127.255.255.254, an error code: every zen restriction here has
    # a filter, which drops it for both servers (unfiltered, Postfix 3.7 would list the
    # client and mxgate deliberately would not: see zen.zone)
    "198.51.100.55",
    # wl.rbl.test: allowlisted, and a code the =127.0.0.[2..3] filter drops
    "198.51.100.70", "198.51.100.71",
]

# (NAME=, REVERSE_NAME= or None when not sent)
DNS_CLIENT_NAMES = [
    # rhswl.rbl.test: allowlisted by name (permit_rhswl_client)
    ("mail.trusted.example", None),
    ("mail.good.example", None), ("mail.good.example", None),
    ("[UNAVAILABLE]", None), ("[TEMPUNAVAIL]", None),
    ("mail.good.example", "[UNAVAILABLE]"), ("mail.good.example", "[TEMPUNAVAIL]"),
    ("[UNAVAILABLE]", "mail.good.example"), ("[TEMPUNAVAIL]", "mail.good.example"),
    # rhs.rbl.test: 127.0.1.2 and .3 (the client filter takes both), .5 (only the
    # unfiltered reverse-client restriction takes it)
    ("host.spammer.example", None), ("host.listed.example", None),
    ("mail.other.example", None), ("mail.good.example", "host.spammer.example"),
    ("host.spammer.example", "mail.good.example"),
    # no NAME: the real connection's names stay
    (None, None),
]

DNS_HELOS = [
    "a.helo.example", "aaaa.helo.example", "mx.helo.example", "nullmx.helo.example",
    "localhost",                                          # found
    "nx.helo.example", "txt.helo.example", "mailhost",    # NXDOMAIN, NODATA, single label
    "host.spammer.example",                               # rhs.rbl.test =127.0.1.2
    "host.listed.example",                                # rhs .3: filtered out, has an A
    "[198.51.100.7]",                                     # address literal: not looked up
    "blockedip.helo.example",                             # check_helo_a_access
]

DNS_SENDERS = [
    "user@mx.sender.example", "user@a.sender.example", "User@AAAA.Sender.Example",  # found
    "user@nx.sender.example", "user@txt.sender.example",          # NXDOMAIN, NODATA
    "user@nullmx.sender.example",                                 # null MX
    # check_sender_mx_access (mx_access): MX host by name, by address, OK (refused as an
    # allowlisting), an MX host without address, the domain as its own MX, two MX hosts,
    # an MX host found DUNNO (its blocked address is never checked)
    "user@badmx.sender.example", "user@badip.sender.example", "user@okmx.sender.example",
    "user@ghostmx.sender.example", "user@selfmx.sender.example", "user@multi.sender.example",
    "user@dunno.sender.example",
    # check_sender_ns_access (server_access): the domain's NS host, its parent's
    "user@ns.sender.example", "user@sub.ns.sender.example",
    "user@x.spammer.example", "user@mail.other.example",          # rhs.rbl.test
    "", "user@[198.51.100.9]", "user@local.example",              # not looked up
]

DNS_RECIPIENTS = [
    "listed@relay.example", "info@relay.example", "nobody@relay.example",
    "user@a.rcpt.example",                                 # found (A, no MX)
    "user@nx.rcpt.example", "user@txt.rcpt.example",       # NXDOMAIN, NODATA
    "user@nullmx.rcpt.example",                            # null MX
    "user@rcpt.spammer.example",                           # rhs.rbl.test
    "user@blockedmx.rcpt.example",                         # check_recipient_mx_access
    "alice@local.example", "user@foreign.example",         # final destination, relay
]

# Sessions without XCLIENT connect from these (dns_zones.conf, 0.0.127.in-addr.arpa):
# confirmed, forged (other address), forged (no such name), no PTR, listed in zen by
# address, listed in rhs by name, allowlisted without PTR, forged (name without address),
# confirmed with a blocked address among its name's (check_client_a_access), two PTR names
# (the first forged), a name in mixed case
DNS_PEER_SOURCES = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.27",
                    "127.0.0.28", "127.0.0.29", "127.0.0.30", "127.0.0.31", "127.0.0.32",
                    "127.0.0.33"]

DNS_CLEAN_ADDRS = ["198.51.100.99", "192.0.2.77", "IPV6:2001:db8:9::1", "198.51.100.70",
                   "198.51.100.52", "198.51.100.54", "198.51.100.55"]
DNS_CLEAN_NAMES = [("mail.good.example", None), ("mail.good.example", "mail.good.example")]
DNS_CLEAN_HELOS = ["a.helo.example", "aaaa.helo.example", "mx.helo.example",
                   "nullmx.helo.example", "[198.51.100.7]"]
DNS_CLEAN_SENDERS = ["user@mx.sender.example", "user@a.sender.example",
                     "User@AAAA.Sender.Example", "", "user@ghostmx.sender.example",
                     "user@dunno.sender.example", "user@local.example"]
DNS_CLEAN_RECIPIENTS = ["listed@relay.example", "info@relay.example", "user@a.rcpt.example",
                        "alice@local.example"]

# The dropping DNS server (the drop variant): questions about these are never answered.
DROP_CLIENTS = [
    ("source", "127.0.0.25"),         # the PTR question is dropped
    ("source", "127.0.0.26"),         # the PTR answers, the name's A question is dropped
    ("addr", "198.51.100.88"),        # the zen.rbl.test question is dropped
    ("addr", "198.51.100.77"),        # the wl.rbl.test question is dropped
    # the rhswl.rbl.test question is dropped, at an address zen.rbl.test lists
    ("name", ("mail.slowwl.example", "198.51.100.51")),
]
DROP_HELO = "slow.drop.example"
DROP_SENDER = "user@sender.drop.example"
DROP_SENDERS = [
    DROP_SENDER,                      # the domain's questions are dropped
    "user@rhsdrop.example",           # the rhs.rbl.test question is dropped
    "user@slowmx.sender.example",     # its MX host's address questions are dropped
]
DROP_RECIPIENT = "user@rcpt.drop.example"


def _xclient(name, rname, addr):
    words = ["XCLIENT"]
    if name is not None:
        words.append(f"NAME={name}")
    if rname is not None:
        words.append(f"REVERSE_NAME={rname}")
    words.append(f"ADDR={addr}")
    return " ".join(words).encode() + b"\r\n"


def _dns_steps(rnd, n, source, xclient, helo, sender, rcpts, senders2, recipients2,
               second=0.15, helo_always=False):
    """The steps of one session (as session() builds them), from an optional XCLIENT."""
    steps = []
    if xclient is not None:
        steps.append(("XCLIENT", xclient))
    helo_verb = rnd.choice(["EHLO", "EHLO", "HELO"])
    if rnd.random() > 0.05 or helo_always:
        steps.append((helo_verb, f"{helo_verb} {helo}\r\n".encode()))
    steps.append(("MAIL", f"MAIL FROM:<{sender}>\r\n".encode()))
    for r in rcpts:
        steps.append(("RCPT", f"RCPT TO:<{r}>\r\n".encode()))
    steps.append(("DATA?", b"DATA\r\n"))
    steps.append(("MESSAGE", message(rnd, n)))
    if rnd.random() < second:
        steps.append(("RSET", b"RSET\r\n"))
        steps.append(("MAIL", f"MAIL FROM:<{rnd.choice(senders2)}>\r\n".encode()))
        r = rnd.choice(recipients2)
        rcpts.append(r)
        steps.append(("RCPT", f"RCPT TO:<{r}>\r\n".encode()))
        steps.append(("DATA?", b"DATA\r\n"))
        steps.append(("MESSAGE", message(rnd, n)))
    steps.append(("QUIT", b"QUIT\r\n"))
    return steps


def _client_choice(rnd, names, addrs):
    """(source, name, reverse name, addr, XCLIENT line) of a session's client."""
    r = rnd.random()
    if r < 0.22:
        # no XCLIENT: the real address and what DNS says about it
        return rnd.choice(DNS_PEER_SOURCES), None, None, None, None
    if r < 0.30:
        # XCLIENT ADDR= alone, from a real address: the names of the connection stay
        src = rnd.choice(["127.0.0.21", "127.0.0.22", "127.0.0.24"])
        addr = rnd.choice(addrs)
        return src, None, None, addr, _xclient(None, None, addr)
    name, rname = rnd.choice(names)
    addr = rnd.choice(addrs)
    return None, name, rname, addr, _xclient(name, rname, addr)


def _session_dict(n, source, name, rname, addr, helo, sender, rcpts, steps, rnd):
    if name is None and rname is None:
        shown = f"(names of {source or '127.0.0.1'})"
    else:
        shown = name if rname is None else f"{name} rev={rname}"
    return {"n": n, "addr": addr or source, "name": shown, "helo": helo, "sender": sender,
            "rcpts": rcpts, "steps": steps, "source": source,
            "data_anyway": rnd.random() < 0.15}


def _clean_client(rnd):
    """(source, name, reverse name, addr, XCLIENT line) of a client every client
    restriction passes."""
    if rnd.random() < 0.25:
        return rnd.choice(["127.0.0.21", "127.0.0.29"]), None, None, None, None
    name, rname = rnd.choice(DNS_CLEAN_NAMES)
    addr = rnd.choice(DNS_CLEAN_ADDRS)
    return None, name, rname, addr, _xclient(name, rname, addr)


def dns_plan(rnd):
    """Every value of every DNS pool once, in a random order, each as (stage, value): the
    first sessions of each seed (dns_sessions) test one of them each, everything else
    clean, so that each seed shows every verdict whatever the random draws."""
    plan = [("source", s) for s in DNS_PEER_SOURCES]
    plan += [("addr", a) for a in DNS_CLIENT_ADDRS]
    plan += [("name", nr) for nr in DNS_CLIENT_NAMES if nr != (None, None)]
    # a name allowlisted in rhswl.rbl.test at an address zen.rbl.test lists
    plan += [("name-addr", ("mail.trusted.example", None, "198.51.100.51"))]
    # XCLIENT ADDR= alone from each kind of real connection (confirmed, forged, no PTR)
    plan += [("addr-alone", s) for s in ("127.0.0.21", "127.0.0.22", "127.0.0.24")]
    plan += [("helo", h) for h in DNS_HELOS]
    plan += [("sender", x) for x in DNS_SENDERS]
    plan += [("rcpt", r) for r in DNS_RECIPIENTS]
    rnd.shuffle(plan)
    return plan


def dns_planned_session(rnd, n, stage, value):
    """A session of the DNS variant that tests one (stage, value) of dns_plan(): the
    stages before it clean, the ones after it clean too (so that a verdict that passes
    shows as an accepted recipient)."""
    source, name, rname, addr, xcl = _clean_client(rnd)
    helo = rnd.choice(DNS_CLEAN_HELOS)
    sender = rnd.choice(DNS_CLEAN_SENDERS)
    rcpts = [rnd.choice(DNS_CLEAN_RECIPIENTS)]
    if stage == "source":
        source, name, rname, addr, xcl = value, None, None, None, None
    elif stage == "addr":
        source, name, rname, addr = None, "mail.good.example", None, value
        xcl = _xclient(name, rname, addr)
    elif stage == "name":
        source, (name, rname), addr = None, value, rnd.choice(
            ["198.51.100.99", "192.0.2.77", "IPV6:2001:db8:9::1"])
        xcl = _xclient(name, rname, addr)
    elif stage == "name-addr":
        source, (name, rname, addr) = None, value
        xcl = _xclient(name, rname, addr)
    elif stage == "addr-alone":
        source, name, rname, addr = value, None, None, rnd.choice(DNS_CLEAN_ADDRS)
        xcl = _xclient(None, None, addr)
    elif stage == "helo":
        helo = value
    elif stage == "sender":
        sender = value
    else:
        rcpts = [value] + rcpts[:rnd.randint(0, 1)]
    steps = _dns_steps(rnd, n, source, xcl, helo, sender, rcpts, DNS_CLEAN_SENDERS,
                       DNS_CLEAN_RECIPIENTS, helo_always=stage == "helo")
    return _session_dict(n, source, name, rname, addr, helo, sender, rcpts, steps, rnd)


def dns_session(rnd, n):
    """A session of the DNS variant with every element drawn at random (DNS_* pools), now
    and then a clean client so that sessions reach the recipient stage and DATA: the
    combinations the plan does not make."""
    source, name, rname, addr, xcl = _client_choice(rnd, DNS_CLIENT_NAMES, DNS_CLIENT_ADDRS)
    helo = rnd.choice(DNS_HELOS)
    sender = rnd.choice(DNS_SENDERS)
    if rnd.random() < 0.4:
        # a clean client and HELO; one of the two DNS-checked addresses is drawn from all
        source, name, rname, addr, xcl = _clean_client(rnd)
        helo = rnd.choice(DNS_CLEAN_HELOS)
        if rnd.random() < 0.5:
            sender = rnd.choice(DNS_CLEAN_SENDERS)
    rcpts = [rnd.choice(DNS_RECIPIENTS) for _ in range(rnd.randint(1, 3))]
    steps = _dns_steps(rnd, n, source, xcl, helo, sender, rcpts, DNS_SENDERS, DNS_RECIPIENTS)
    return _session_dict(n, source, name, rname, addr, helo, sender, rcpts, steps, rnd)


# The drop variant's plan: each dropped question once (a recipient alone and beside a
# clean one; the allowlist's a second time with a client name that a later client
# restriction rejects: Postfix's defer_if_reject turns that into 450), then random draws.
DROP_PLAN = [("client", c) for c in DROP_CLIENTS] + \
    [("sender", s) for s in DROP_SENDERS] + \
    [("helo", None), ("rcpt", "alone"), ("rcpt", "with"), ("dnswl-then-reject", None)]


def drop_session(rnd, n, planned=None):
    """A session of the drop variant: a clean client, HELO, sender and recipients, except
    one element (rarely two) whose DNS questions the server drops: planned (kind, how),
    or drawn. Small: every dropped question costs each server its resolver timeout."""
    source, name, rname, addr = None, "mail.good.example", None, rnd.choice(
        ["198.51.100.99", "192.0.2.77"])
    helo = rnd.choice(DNS_CLEAN_HELOS)
    sender = rnd.choice(["user@mx.sender.example", "user@a.sender.example"])
    rcpts = [rnd.choice(["listed@relay.example", "user@a.rcpt.example"])]
    if planned:
        kinds = [planned[0]]
    else:
        kinds = rnd.sample(["client", "helo", "sender", "rcpt"],
                           2 if rnd.random() < 0.2 else 1)
    for kind in kinds:
        if kind == "client":
            how, value = planned[1] if planned else rnd.choice(DROP_CLIENTS)
            if how == "source":
                source, name, addr = value, None, None
            elif how == "name":
                name, addr = value
            else:
                addr = value
        elif kind == "helo":
            helo = DROP_HELO
        elif kind == "sender":
            sender = planned[1] if planned else rnd.choice(DROP_SENDERS)
        elif kind == "rcpt":
            alone = planned[1] == "alone" if planned else rnd.random() < 0.5
            rcpts = [DROP_RECIPIENT] if alone else [DROP_RECIPIENT, rcpts[0]]
        else:
            # a name unknown for good: reject_unknown_reverse_client_hostname, after the
            # allowlist in the same list, rejects
            assert kind == "dnswl-then-reject", kind
            name, addr = "[UNAVAILABLE]", "198.51.100.77"
    # now and then a later restriction rejects: a temporary failure is then not the reply
    # (defer_if_permit), the rejection is
    if not planned and rnd.random() < 0.25:
        rcpts.append(rnd.choice(["nobody@relay.example", "user@nx.rcpt.example",
                                 "user@foreign.example"]))
    xcl = None if source else _xclient(name, rname, addr)
    steps = _dns_steps(rnd, n, source, xcl, helo, sender, rcpts, ["user@a.sender.example"],
                       ["listed@relay.example"], second=0.0)
    return _session_dict(n, source, name, rname, addr, helo, sender, rcpts, steps, rnd)


def dns_sessions(seed, count):
    """count sessions: the plan's (as many as fit), then random ones."""
    rnd = random.Random(seed)
    plan = dns_plan(rnd)
    return [dns_planned_session(rnd, n, *plan[n]) if n < len(plan) else dns_session(rnd, n)
            for n in range(count)]


def drop_sessions(seed, count):
    rnd = random.Random(seed)
    plan = list(DROP_PLAN)
    rnd.shuffle(plan)
    return [drop_session(rnd, n, plan[n] if n < len(plan) else None) for n in range(count)]
