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
