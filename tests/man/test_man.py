"""The man pages (docs/man/): each is clean troff (groff -man -ww -z prints nothing and
exits 0), and every option and command the tools' own usage texts show appears in its page.

argv: source root, then the mxgate, mxgate-map and mxgate-queue binaries.
Needs groff (groff-base): a missing one fails, naming the package.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tool_packages  # noqa: E402

PAGES = ("mxgate.8", "mxgate.cf.5", "mxgate-map.1", "mxgate-queue.1")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)")


def usage(argv):
    """What the tool prints for its usage (stdout and stderr: some print it on an unknown
    option only)."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def page_text(path):
    """The page's source with troff's escapes undone as far as words go: \\- is -, font
    changes vanish."""
    with open(path, encoding="utf-8") as f:
        t = f.read()
    t = re.sub(r"\\f[BIRP]|\\f\(..|\\f\[[^]]*\]", "", t)
    return t.replace("\\-", "-").replace("\\e", "\\").replace("\\(lq", "\"")


def has(text, token):
    return re.search(r"(?<![\w-])" + re.escape(token) + r"(?![\w-])", text) is not None


def main():
    root, mxgate, mxgate_map, mxgate_queue = sys.argv[1:5]
    groff = tool_packages.need_tool("groff")
    failures = []
    for name in PAGES:
        path = os.path.join(root, "docs", "man", name)
        r = subprocess.run([groff, "-man", "-ww", "-z", path], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0 or r.stdout or r.stderr:
            failures.append(f"{name}: groff -man -ww -z: exit {r.returncode}\n"
                            f"{r.stdout}{r.stderr}")
        else:
            print(f"{name}: groff -man -ww -z clean")

    # what each tool's usage shows, and the page that must mention it
    texts = {
        "mxgate.8": [usage([mxgate, "-h"]), usage([mxgate, "reload", "-h"]),
                     usage([mxgate, "explain", "-h"]),
                     usage([mxgate, "config", "--no-such-option"])],
        "mxgate-map.1": [usage([mxgate_map, "-h"])],
        "mxgate-queue.1": [usage([mxgate_queue, "-h"])],
    }
    for name, outs in texts.items():
        page = page_text(os.path.join(root, "docs", "man", name))
        tokens = set()
        for out in outs:
            if "usage:" not in out:
                failures.append(f"{name}: a usage text without 'usage:':\n{out}")
            tokens |= set(OPTION.findall(out))
            # commands: "mxgate WORD" (mxgate) and "] a|b|c" (mxgate-queue)
            tokens |= set(re.findall(r"^\s*(?:usage: )?mxgate ([a-z]+)\b", out, re.M))
            for alts in re.findall(r"^\s*(?:usage: )?mxgate-queue \[[^]]*\] ([a-z|]+)", out,
                                   re.M):
                tokens |= set(alts.split("|"))
        missing = sorted(t for t in tokens if not has(page, t))
        if missing:
            failures.append(f"{name}: not in the page: {' '.join(missing)}")
        else:
            print(f"{name}: all {len(tokens)} options and commands of the usage present")
    if failures:
        print("FAIL:\n" + "\n".join(failures))
        sys.exit(1)
    print("man pages: OK")


main()
