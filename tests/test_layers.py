"""DESIGN.md's layering, checked on every #include of the tree: dependencies point down
(dataplane, mgmt -> smtp -> tables -> include), and only dataplane/ includes DPDK headers."""

import os
import re
import sys

root = sys.argv[1]
allowed = {
    "include": {"include"},
    "tables": {"include", "tables"},
    "smtp": {"include", "tables", "smtp"},
    "mgmt": {"include", "tables", "smtp", "mgmt"},
    "dataplane": {"include", "tables", "smtp", "mgmt", "dataplane"},
}
project_dirs = {"tables", "smtp", "mgmt", "dataplane"}
dpdk_header = re.compile(r'#\s*include\s*[<"](rte_|dpdk/|ethdev_|eal_)')
include_re = re.compile(r'#\s*include\s*"([^"]+)"')

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
                for n, line in enumerate(f, 1):
                    if dpdk_header.search(line) and layer != "dataplane":
                        problems.append(f"{rel}:{n}: DPDK header outside dataplane/: {line.strip()}")
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

for p in problems:
    print(p)
if files == 0:
    print("no source files found; wrong root?")
    sys.exit(1)
print(f"{files} files checked, {len(problems)} layering problems")
sys.exit(1 if problems else 0)
