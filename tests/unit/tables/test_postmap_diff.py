#!/usr/bin/env python3
"""Differential test: mxgate-map -q against Debian's postmap -q (the oracle).

For hash:, cidr:, regexp: and pcre: tables (fixed files plus randomly generated ones), every
key gets the same answer from `postmap -q - TYPE:FILE` and `mxgate-map -d DB -q - TYPE:FILE`.
postmap -q on hash: is a plain lookup (no access(5) order), so that is what is compared; the
access order is tested in test_table_access.c. Without postmap (Debian's postfix) or
postfix-pcre it fails, naming the package: the oracle is never skipped.

usage: test_postmap_diff.py MXGATE_MAP
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tool_packages  # noqa: E402  (tests/tool_packages.py)

POSTMAP = "/usr/sbin/postmap"


def run(cmd, stdin, env=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env)
    return p.returncode, p.stdout, p.stderr


def answers(out):
    """postmap -q - output as {key: value} (key<TAB>value lines)."""
    res = {}
    for line in out.decode("latin-1").splitlines():
        k, _, v = line.partition("\t")
        res[k] = v
    return res


HASH_FIXED = """# comment
Foo@Example.COM   REJECT  a
   b   c
bar OK
BAR REJECT dup
192.0.2 DUNNO
2001:db8: REJECT v6
x\ty
key   trailing blanks   \t
   # indented comment
cont  first
\tsecond
across one
# a comment between a line and its continuation

  two
"""

CIDR_FIXED = """10.0.0.0/8 EIGHT
10.1.0.0/16 SIXTEEN
[192.0.2.7] ONE
192.0.2.0/24 NET
!198.51.100.0/24 NOT-DOC2
2001:db8::/32 V6
IF 203.0.113.0/24
if	!203.0.113.128/25
0.0.0.0/0 LOW-HALF
endif
203.0.113.200 NOT-REACHED-BY-LOW
ENDIF
::/0 ALL6
"""

REGEXP_FIXED = r"""/^(a)(b)?$/ x=$1,$2,${1}$$ $(1)
/^([^@]+)@(.*)\.example\.com$/ REDIRECT $1@$2.example.net
if /@example\.org$/
!/^postmaster@/ REJECT only postmaster
IF !/x/
/^postmaster@example\.org$/ NESTED
ENDIF
endif
/^Case$/i SENSITIVE
/^case$/ INSENSITIVE
/(a|ab)(c|bcd)(d*)/ [$1][$2][$3]
@^x/y$@ DELIM
"""


def random_cidr(rng, n):
    lines, depth = [], 0
    for i in range(n):
        r = rng.random()
        if r < 0.05 and depth:
            lines.append("endif")
            depth -= 1
            continue
        v6 = rng.random() < 0.3
        if v6:
            plen = rng.randint(100, 128)
            a = (0x20010db8 << 96) | rng.getrandbits(32)
            a &= ~((1 << (128 - plen)) - 1)
            import ipaddress
            s = "%s/%d" % (ipaddress.IPv6Address(a), plen)
        else:
            plen = rng.randint(16, 32)
            a = (10 << 24) | (rng.randint(0, 3) << 16) | rng.getrandbits(16)
            a &= ~((1 << (32 - plen)) - 1) & 0xffffffff
            s = "%d.%d.%d.%d/%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255, plen)
        neg = "!" if rng.random() < 0.04 else ""
        if r < 0.12 and depth < 4:
            lines.append("if %s%s" % (neg, s))
            depth += 1
        else:
            lines.append("%s%s R%d" % (neg, s, i))
    lines += ["endif"] * depth
    return "\n".join(lines) + "\n"


def random_keys_cidr(rng, n):
    import ipaddress
    keys = []
    for _ in range(n):
        if rng.random() < 0.3:
            keys.append(str(ipaddress.IPv6Address((0x20010db8 << 96) | rng.getrandbits(32))))
        else:
            keys.append("10.%d.%d.%d" % (rng.randint(0, 3), rng.randint(0, 255), rng.randint(0, 255)))
    return keys


def random_hash(rng, n):
    words = ["alpha", "Beta", "gamma", "DELTA", "user@example.com", "Ex.Org", "1.2.3"]
    lines, keys = [], []
    for i in range(n):
        k = rng.choice(words) + str(rng.randint(0, n))
        keys.append(k)
        v = "%s %d" % (rng.choice(["OK", "REJECT go away", "DUNNO", "550 5.7.1 no"]), i)
        lines.append("%s%s%s" % (k, rng.choice([" ", "\t", "   "]), v))
        if rng.random() < 0.1:
            lines.append("  continued %d" % i)
    return "\n".join(lines) + "\n", keys + [k.upper() for k in keys[:50]] + ["missing", "x"]


def compare(mxmap, db, tmp, kind, name, text, keys, env):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    if kind == "hash":
        rc, out, err = run([POSTMAP, "hash:" + path], b"", env)
        if rc != 0:
            print("postmap build failed:", err.decode())
            return 1
    rc, out, err = run([mxmap, "-d", db, "%s:%s" % (kind, path)], b"")
    if rc != 0:
        print("mxgate-map build %s:%s failed: %s" % (kind, name, err.decode()))
        return 1
    stdin = ("\n".join(keys) + "\n").encode()
    prc, pout, perr = run([POSTMAP, "-q", "-", "%s:%s" % (kind, path)], stdin, env)
    mrc, mout, merr = run([mxmap, "-d", db, "-q", "-", "%s:%s" % (kind, path)], stdin)
    if b"warning" in perr:
        print("postmap warned on %s (the test tables must be clean): %s" % (name, perr.decode()))
        return 1
    pa, ma = answers(pout), answers(mout)
    bad = 0
    for k in keys:
        if pa.get(k) != ma.get(k):
            bad += 1
            if bad <= 10:
                print("%s:%s key %r: postmap %r mxgate-map %r" % (kind, name, k, pa.get(k), ma.get(k)))
    if prc != mrc:
        print("%s:%s exit status: postmap %d mxgate-map %d" % (kind, name, prc, mrc))
        bad += 1
    # -q KEY (single) agrees too, exit status included.
    for k in keys[:15]:
        prc, pout, _ = run([POSTMAP, "-q", k, "%s:%s" % (kind, path)], b"", env)
        mrc, mout, _ = run([mxmap, "-d", db, "-q", k, "%s:%s" % (kind, path)], b"")
        if (prc, pout) != (mrc, mout):
            bad += 1
            print("%s:%s -q %r: postmap %d %r mxgate-map %d %r" % (kind, name, k, prc, pout, mrc, mout))
    found = sum(1 for k in keys if k in pa)
    print("%-7s %-12s %5d keys, %5d found, %d differences" % (kind, name, len(keys), found, bad))
    if found == 0:
        print("no key was found: the comparison proves nothing")
        bad += 1
    return bad


def readline_timeout(f, seconds=20):
    """One line from a pipe, or b"" after `seconds` (a hung reader must fail, not hang)."""
    import select
    line = b""
    while not line.endswith(b"\n"):
        r, _, _ = select.select([f], [], [], seconds)
        if not r:
            return line
        c = os.read(f.fileno(), 1)
        if not c:
            return line
        line += c
    return line


def cli_checks(mxmap, tmp):
    """mxgate-map's own behaviour: exit statuses, listing, access order, failed builds."""
    db = os.path.join(tmp, "clidb")
    src = os.path.join(tmp, "access")
    bad = 0

    def expect(args, stdin, rc, out=None, err=None):
        nonlocal bad
        r, o, e = run([mxmap] + args, stdin.encode())
        o, e = o.decode(), e.decode()
        ok = r == rc and (out is None or out in o) and (err is None or err in e)
        if not ok:
            bad += 1
            print("mxgate-map %s: rc %d (want %d)\nstdout: %s\nstderr: %s" % (" ".join(args), r, rc, o, e))

    with open(src, "w") as f:
        f.write("Example.com REJECT domain\nuser@example.com DUNNO\nbob@ OK\n")
    expect(["-d", db, "hash:" + src], "", 0)
    expect(["-d", db, "-q", "EXAMPLE.COM", "hash:" + src], "", 0, "REJECT domain\n")
    expect(["-d", db, "-q", "nope", "hash:" + src], "", 1)
    expect(["-d", db, "-q", "-", "hash:" + src], "nope\nnada\n", 1)
    expect(["-d", db, "-q", "x", "hash:/no/such/table"], "", 2, None, "no such table")
    expect(["-d", os.path.join(tmp, "nodb"), "-q", "x", "hash:" + src], "", 2)
    expect(["-d", db, "-s", "hash:" + src], "", 0,
           "bob@\tOK\nexample.com\tREJECT domain\nuser@example.com\tDUNNO\n")
    expect(["-d", db, "-a", "address", "-D", "+", "-q", "user+x@mail.example.com", "hash:" + src], "", 0,
           "  user+x@mail.example.com\t(not found)\n  user@mail.example.com\t(not found)\n"
           "  mail.example.com\t(not found)\n  example.com\tREJECT domain\t<- match\n"
           "result: example.com\tREJECT domain\n")
    expect(["-d", db, "-a", "address", "-D", "+", "-q", "user+x@example.com", "hash:" + src], "", 0,
           "result: user@example.com\tDUNNO\n")
    expect(["-d", db, "-a", "address", "-q", "joe@other.org", "hash:" + src], "", 1, "result: no match")
    expect(["-d", db, "-a", "client", "-q", "host.example.com[192.0.2.1]", "hash:" + src], "", 0,
           "result: example.com\tREJECT domain")
    # A bad source leaves the old table, names the line, exits 2.
    with open(src, "w") as f:
        f.write("fine OK\nbroken\n")
    expect(["-d", db, "hash:" + src], "", 2, None, "line 2: expected format: key whitespace value")
    expect(["-d", db, "-q", "example.com", "hash:" + src], "", 0, "REJECT domain")
    # From stdin, under another name.
    expect(["-d", db, "cidr:clients", "-"], "10.0.0.0/8 TEN\n", 0)
    expect(["-d", db, "-q", "10.9.9.9", "cidr:clients"], "", 0, "TEN\n")
    expect(["-d", db, "cidr:clients", "-"], "10.0.0.1/8 TEN\n", 2, None, "non-null host address bits")
    # A reader in another process (a query reading keys from a pipe) holds its snapshot open;
    # a build meanwhile neither blocks nor is blocked, and the reader keeps seeing one
    # consistent table (it renews only when the gateway's poll loop would).
    reader = subprocess.Popen([mxmap, "-d", db, "-q", "-", "cidr:clients"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, bufsize=0)
    reader.stdin.write(b"10.1.1.1\n")
    first = readline_timeout(reader.stdout)
    t = subprocess.run([mxmap, "-d", db, "cidr:clients", "-"], input=b"10.0.0.0/8 NEW\n",
                       capture_output=True, timeout=20)
    expect(["-d", db, "-q", "10.1.1.1", "cidr:clients"], "", 0, "NEW\n")
    reader.stdin.write(b"10.2.2.2\n")
    second = readline_timeout(reader.stdout)
    reader.stdin.close()
    try:
        reader.wait(timeout=20)
    except subprocess.TimeoutExpired:
        reader.kill()
        bad += 1
    if (first, second, t.returncode) != (b"10.1.1.1\tTEN\n", b"10.2.2.2\tTEN\n", 0):
        bad += 1
        print("concurrent reader: %r %r build rc %d" % (first, second, t.returncode))
    # static: and inline: need no store.
    expect(["-q", "anything", "static:{ REJECT go away }"], "", 0, "REJECT go away\n")
    expect(["-q", "B", "inline:{ a=1, b=2 }"], "", 0, "2\n")
    expect(["-q", "c", "inline:{ a=1, b=2 }"], "", 1)
    expect(["hash:x"], "", 2, None, "-d DBDIR is required")
    expect(["-d", db, "-q", "x", "btree:x"], "", 2, None, "unsupported type")
    print("mxgate-map CLI checks: %d failures" % bad)
    return bad


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    mxmap = os.path.abspath(sys.argv[1])
    tool_packages.need_tool(POSTMAP)
    tool_packages.need_postfix_pcre()
    tmp = tempfile.mkdtemp(prefix="mxgate-postmap-diff-")
    try:
        cf = os.path.join(tmp, "cf")
        os.mkdir(cf)
        open(os.path.join(cf, "main.cf"), "w").close()
        env = dict(os.environ, MAIL_CONFIG=cf)
        db = os.path.join(tmp, "db")
        rc, _, err = run([POSTMAP, "-q", "x", "pcre:/dev/null"], b"", env)
        if rc not in (0, 1):
            print("FAIL: postmap cannot open a pcre: table though postfix-pcre is installed:",
                  err.decode(errors="replace").strip())
            return 1
        rng = random.Random(4)
        bad = cli_checks(mxmap, tmp)
        hk = ["foo@example.com", "FOO@EXAMPLE.COM", "bar", "Bar", "192.0.2", "192.0.2.1",
              "2001:db8:", "x", "key", "cont", "none", "b", "across", "two"]
        bad += compare(mxmap, db, tmp, "hash", "fixed.hash", HASH_FIXED, hk, env)
        for i in range(3):
            text, keys = random_hash(rng, 400)
            bad += compare(mxmap, db, tmp, "hash", "rand%d.hash" % i, text, keys, env)
        ck = ["10.1.2.3", "10.2.0.1", "192.0.2.7", "192.0.2.8", "198.51.100.1", "198.51.101.1",
              "2001:db8::1", "2001:db9::1", "203.0.113.5", "203.0.113.200", "203.0.114.1", "::1",
              "::ffff:10.1.2.3", "[10.1.2.3]", "not-an-address", "1.2.3"]
        bad += compare(mxmap, db, tmp, "cidr", "fixed.cidr", CIDR_FIXED, ck, env)
        for i in range(4):
            bad += compare(mxmap, db, tmp, "cidr", "rand%d.cidr" % i, random_cidr(rng, 300),
                           random_keys_cidr(rng, 1500), env)
        rk = ["a", "ab", "A", "joe@mail.example.com", "joe@example.org", "postmaster@example.org",
              "Case", "case", "CASE", "abcd", "x/y", "nothing"]
        for kind in ("regexp", "pcre"):
            bad += compare(mxmap, db, tmp, kind, "fixed." + kind, REGEXP_FIXED, rk, env)
        print("FAIL: %d differences" % bad if bad else "PASS")
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
