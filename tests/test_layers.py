"""docs/ARCHITECTURE.md's layering, checked on every #include of the tree, and the file-size ceiling.

Layers: dependencies point down (dataplane -> mgmt -> smtp -> tables -> include), and only
dataplane/dpdk/ includes DPDK headers. Inside dataplane/, each sub-folder may include only
what its row below names: the TCP/IP stack knows no SMTP, the spool no relay, the session no
transport, and so on. No product source file is longer than MAX_LINES."""

import os
import re
import sys

root = sys.argv[1]
MAX_LINES = 1500
allowed = {
    "include": {"include"},
    "tables": {"include", "tables"},
    "smtp": {"include", "tables", "smtp"},
    "mgmt": {"include", "tables", "smtp", "mgmt"},
    "dataplane": {"include", "tables", "smtp", "mgmt", "dataplane"},
}
# dataplane/<sub>/ may include these dataplane sub-folders ("" = files right in dataplane/)
dataplane_allowed = {
    "net": {"net"},
    "spool": {"spool"},
    "relay": {"relay", "spool"},
    "svc": {"svc"},
    "tls": {"tls"},
    "session": {"session", "spool", "svc", "tls", ""},
    "kernel": {"kernel", "session", "spool", "svc", ""},
    "dpdk": {"dpdk", "session", "spool", "svc", "net", ""},
    "tools": {"tools", "relay", "spool"},
    "": {"", "relay", "spool", "svc", "session", "kernel", "dpdk"},
}
project_dirs = {"tables", "smtp", "mgmt", "dataplane"}
dpdk_header = re.compile(r'#\s*include\s*[<"](rte_|dpdk/|ethdev_|eal_)')
include_re = re.compile(r'#\s*include\s*"([^"]+)"')


def dataplane_sub(rel):
    """'dataplane/relay/relay.c' -> 'relay'; 'dataplane/main.c' -> ''."""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else ""


problems = []
files = 0
for layer in allowed:
    for dirpath, _, names in os.walk(os.path.join(root, layer)):
        for name in names:
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            files += 1
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
            if len(lines) > MAX_LINES:
                problems.append(f"{rel}: {len(lines)} lines, over the ceiling of {MAX_LINES}: "
                                "split it along its concerns")
            sub = dataplane_sub(rel) if layer == "dataplane" else None
            for n, line in enumerate(lines, 1):
                if dpdk_header.search(line) and sub != "dpdk":
                    problems.append(f"{rel}:{n}: DPDK header outside dataplane/dpdk/: "
                                    f"{line.strip()}")
                m = include_re.search(line)
                if not m:
                    continue
                target = m.group(1)
                top = target.split("/")[0]
                if top == "mxgate":
                    top = "include"
                elif top not in project_dirs:
                    continue  # a sibling header included by plain name
                if top not in allowed[layer]:
                    problems.append(f"{rel}:{n}: {layer}/ may not include {target} "
                                    f"({top}/ is not below it)")
                    continue
                if sub is not None and top == "dataplane":
                    tsub = dataplane_sub(target)
                    if sub not in dataplane_allowed:
                        problems.append(f"{rel}: dataplane/{sub}/ has no layering rule "
                                        "(add one to tests/test_layers.py)")
                    elif tsub not in dataplane_allowed[sub]:
                        problems.append(f"{rel}:{n}: dataplane/{sub or '.'}/ may not include "
                                        f"{target}")

for p in problems:
    print(p)
if files == 0:
    print("no source files found; wrong root?")
    sys.exit(1)
print(f"{files} files checked, {len(problems)} problems")
sys.exit(1 if problems else 0)
