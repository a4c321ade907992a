#!/usr/bin/env python3
"""Differential test of header/body check sets against Debian's postmap (the oracle).

- Lookups: every key gets the same answer (and the same $n substitution) from
  `postmap -q - TYPE:FILE` and `checks_query -q TYPE:FILE` (Hyperscan path; checks_query also
  checks it against the rule-by-rule PCRE2/regexec path and exits 2 on any disagreement),
  for fixed pcre:/regexp: files and random ones (negation, if/endif, flags, backreferences,
  lookaround).
- Messages: `postmap -hmb -q - TYPE:FILE` (header, MIME and nested headers, body lines) gives
  the same (line, value) sequence as smtp_checks (`checks_query -m`), which is also fed in
  random pieces and must give the same result.

Without /usr/sbin/postmap (Debian's postfix) or postfix-pcre it fails, naming the package:
the oracle is never skipped.

usage: test_checks_postmap.py CHECKS_QUERY
"""
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tool_packages  # noqa: E402  (tests/tool_packages.py)

POSTMAP = "/usr/sbin/postmap"


def run(cmd, stdin, env=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


FIXED_PCRE = r"""# header checks
/^Subject:.*\b(viagra|cialis)\b/ REJECT no $1 here
/^Subject: (\w+) \1\b/ WARN repeated word $1
/(?<!no-)(spam)/ INFO spam $1
if /^From:/
!/@example\.(com|org)>?$/ HOLD foreign sender
/^From: "?([^"<]*)"? </ PREPEND X-Name: $1
endif
/^X-Mailer: (.*)$/m REPLACE X-Mailer: hidden (was ${1})
/^Received: from (\S+)/ DUNNO
/multi.line/s INFO dotall
/^Content-Type: (\S+);/ WARN type $1
/^--/ INFO boundary
/^$/ INFO empty
/^[A-Z]/ INFO upper
/^.{1,8}$/ BCC short@example.net
"""

FIXED_REGEXP = r"""/^Subject:.*(viagra|cialis)/ REJECT no $1 here
/^Subject: ([a-z]+) / WARN first $1
if /^From:/
!/@example\.(com|org)>?$/ HOLD foreign sender
endif
/^X-Mailer: (.*)$/ REPLACE X-Mailer: hidden (was ${1})
/multi.line/ INFO dot-crosses-newline
/^Content-Type: ([^;]+);/ WARN type $1
/^--/ INFO boundary
/^$/ INFO empty
/[[:digit:]]{3}/ INFO digits
/\<word\>/ INFO gnu-word
/^[\]x]/ INFO bracket
/^([ab]*)(b*)c/ INFO longest $1-$2
/^[A-Z]/ INFO upper
"""

FIXED_KEYS = [
    "Subject: buy viagra now", "Subject: cheap CIALIS", "Subject: hello hello world",
    "Subject: hello world", "this is spam", "this is no-spam", "From: a@example.com",
    "From: \"Joe\" <joe@evil.test>", "From: joe@example.org", "X-Mailer: Foo 1.0",
    "Received: from mx.example.com (x)", "multi\nline", "multiline",
    "Content-Type: text/plain; charset=us-ascii", "--boundary", "", "123", "12",
    "a word here", "swords", "]abc", "xabc", "\\abc", "abbc", "bbbc", "short",
    "lowercase but long enough", "Subject: \u00e9t\u00e9".encode("utf-8").decode("latin-1"),
]

MESSAGES = [
    "From: \"Joe\" <joe@evil.test>\nSubject: buy viagra now\nX-Mailer: Foo\n  1.0\n"
    "To: a@example.com\n\nHello\nmulti\nline\n\n-- \nsig\n",
    "From: a@example.com\nMIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\n\npreamble\n--XX\n"
    "Content-Type: text/plain; charset=us-ascii\nSubject: part header\n\nhello 123\n"
    "--XX\nContent-Type: message/rfc822\n\nSubject: nested viagra\nFrom: n@n.test\n"
    "Content-Type: multipart/alternative;\n boundary=YY\n\n--YY\nContent-Type: text/html;\n\n"
    "<b>x</b>\n--YY--\nafter yy\n--XX--\nepilogue\n",
    "Subject: no body\n",
    "Subject: first\nnot a header line\nSubject: in body\n",
    "Content-Type: message/rfc822\n\nSubject: nested at top\nFrom: x@y.test\n\nbody\n",
    "Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: multipart/mixed; "
    "boundary=b2\n\n--b2\nX: 1\n\ninner\n--b1\nX: 2\n\nouter again\n--b1--\n--b2\ntrailing\n",
]


def compare_keys(cq, typ, path, keys, env, what):
    data = ("\n".join(keys) + "\n").encode("latin-1")
    rc1, out1, err1 = run([POSTMAP, "-q", "-", f"{typ}:{path}"], data, env)
    rc2, out2, err2 = run([cq, "-q", f"{typ}:{path}"], data)
    if rc2 not in (0, 1):
        print(f"FAIL {what}: checks_query rc {rc2}: {err2.decode(errors='replace')}")
        return False
    if out1 != out2:
        print(f"FAIL {what}: answers differ\n--- postmap\n{out1.decode('latin-1')}"
              f"--- checks_query\n{out2.decode('latin-1')}")
        return False
    return True


def compare_message(cq, typ, path, msg, env, what):
    data = msg.encode("latin-1")
    rc1, out1, err1 = run([POSTMAP, "-hmb", "-q", "-", f"{typ}:{path}"], data, env)
    rc2, out2, err2 = run([cq, "-m", f"{typ}:{path}"], data)
    if rc2 != 0:
        print(f"FAIL {what}: checks_query rc {rc2}: {err2.decode(errors='replace')}")
        return False
    if out1 != out2:
        print(f"FAIL {what}: message answers differ\n--- postmap\n{out1.decode('latin-1')}"
              f"--- checks_query\n{out2.decode('latin-1')}")
        return False
    return True


ATOMS_COMMON = ["a", "b", "c", "x", ".", "[ab]", "[^a]", "(a|b)", "(ab|c)", "a*", "b+", "c?",
                "[a-c]{2}", "^", "$", " ", ":", "(x)", "[[:alpha:]]", "\\.", "[0-9]"]
ATOMS_PCRE = ["\\d", "\\w+", "(?:ab)", "(a)\\1", "(?<=a)b", "(?!x)c", "(?i:A)", "\\bab",
              "a{1,2}?", "[\\s]", "\\Qa.\\E"]
ATOMS_REGEXP = ["[]a]", "[\\]", "(a*)(b*)", "[[:space:]]"]


def random_pattern(rng, pcre):
    atoms = ATOMS_COMMON + (ATOMS_PCRE if pcre else ATOMS_REGEXP)
    return "".join(rng.choice(atoms) for _ in range(rng.randint(1, 4)))


def random_table(rng, pcre):
    lines, depth = [], 0
    for i in range(rng.randint(3, 25)):
        r = rng.random()
        if r < 0.1 and depth < 3:
            lines.append(f"if {'!' if rng.random() < 0.3 else ''}/{random_pattern(rng, pcre)}/")
            depth += 1
            continue
        if r < 0.18 and depth > 0:
            lines.append("endif")
            depth -= 1
            continue
        pat = random_pattern(rng, pcre)
        neg = rng.random() < 0.15
        flags = ""
        if rng.random() < 0.3:
            flags = rng.choice(["i", "m", "s", "x", "A", "E", "U", "X", "im", "mm", "ss"] if pcre else
                               ["i", "m"])
        val = f"ACT{i}"
        if not neg and rng.random() < 0.5:
            val += " $1" if "(" in pat and "(?" not in pat and "(?:" not in pat else ""
        lines.append(f"{'!' if neg else ''}/{pat}/{flags} {val}")
    lines += ["endif"] * depth
    return "\n".join(lines) + "\n"


def random_keys(rng, n):
    alpha = "abcxAB .:0\t"
    return ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 10))) for _ in range(n)]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 64
    cq = sys.argv[1]
    tool_packages.need_tool(POSTMAP)
    tool_packages.need_postfix_pcre()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        cf = os.path.join(tmp, "cf")
        os.mkdir(cf)
        open(os.path.join(cf, "main.cf"), "w").close()
        env = dict(os.environ, MAIL_CONFIG=cf)
        types = ["regexp", "pcre"]
        probe = os.path.join(tmp, "probe")
        with open(probe, "w") as f:
            f.write("/a/ X\n")
        rc, _, err = run([POSTMAP, "-q", "a", f"pcre:{probe}"], b"", env)
        if rc != 0:
            print("FAIL: postmap cannot use a pcre: table though postfix-pcre is installed:",
                  err.decode(errors="replace").strip())
            return 1
        for typ in types:
            path = os.path.join(tmp, f"fixed.{typ}")
            with open(path, "w") as f:
                f.write(FIXED_PCRE if typ == "pcre" else FIXED_REGEXP)
            if not compare_keys(cq, typ, path, FIXED_KEYS, env, f"fixed {typ}"):
                failures += 1
            # postmap goes on after a REJECT; cleanup (and smtp_checks) stop inspecting:
            # the message comparison uses actions that do not stop.
            mpath = os.path.join(tmp, f"msg.{typ}")
            with open(mpath, "w") as f:
                f.write((FIXED_PCRE if typ == "pcre" else FIXED_REGEXP).replace("REJECT",
                                                                                "WARN"))
            for i, msg in enumerate(MESSAGES):
                if not compare_message(cq, typ, mpath, msg, env, f"message {i} {typ}"):
                    failures += 1
            rng = random.Random(20261122)
            compared = 0
            for t in range(80):
                text = random_table(rng, typ == "pcre")
                rpath = os.path.join(tmp, f"r{t}.{typ}")
                with open(rpath, "w") as f:
                    f.write(text)
                # postmap skips a line it cannot compile (with a warning), mxgate refuses
                # the file: compare only files both take whole.
                rc, _, err = run([POSTMAP, "-q", "zz", f"{typ}:{rpath}"], b"", env)
                if b"warning" in err or b"fatal" in err:
                    continue
                rc, _, _ = run([cq, "-q", f"{typ}:{rpath}"], b"")
                if rc not in (0, 1):
                    print(f"FAIL random {typ} {t}: checks_query refused a file postmap takes:"
                          f"\n{text}")
                    failures += 1
                    continue
                if not compare_keys(cq, typ, rpath, random_keys(rng, 60), env,
                                    f"random {typ} {t}:\n{text}"):
                    failures += 1
                compared += 1
            print(f"{typ}: {compared} random tables compared")
            if compared < 40:
                print(f"FAIL {typ}: too few random tables were usable ({compared})")
                failures += 1
    print("ok" if failures == 0 else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
