"""Every package the tests name is one deploy/install-deps.sh installs, and it is installed.

For each entry of tests/tool_packages.py (programs and files, Python and Perl modules, the
build's pkg-config modules): the package it names is in install-deps.sh's list; the thing
itself is on this machine (else: FAIL naming the package to install); and where it is, dpkg
says it belongs to that package (so the table cannot drift from the truth). All problems
are reported, then the exit status is 1 if there was any.

Usage: test_packages.py SOURCE_ROOT
"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tool_packages as tp  # noqa: E402


def install_deps_packages(root):
    """The names in deploy/install-deps.sh's packages=( ... ) array (comments dropped)."""
    with open(os.path.join(root, "deploy", "install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"^packages=\((.*?)^\)", text, re.S | re.M)
    if not m:
        raise SystemExit("FAIL: no packages=( ... ) array in deploy/install-deps.sh")
    names = []
    for line in m.group(1).splitlines():
        names += line.split("#", 1)[0].split()
    return set(names)


def dpkg_owners(path):
    """The packages dpkg says own `path` (merged /usr: tried under /bin and /usr/bin
    alike), or None when no package does."""
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
            if p.startswith(a):
                cands.append(b + p[len(a):])
            elif p.startswith(b):
                cands.append(a + p[len(b):])
    for p in dict.fromkeys(cands):
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            owners = set()
            for line in r.stdout.splitlines():
                if line.startswith("diversion by"):
                    continue
                pkgs, _, _ = line.rpartition(": ")
                owners |= {x.strip().split(":")[0] for x in pkgs.split(",")}
            return owners
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    listed = install_deps_packages(sys.argv[1])
    have_dpkg = shutil.which("dpkg-query") is not None
    problems = []

    def check_owner(what, path, package, owner=None):
        if not have_dpkg:
            return
        owners = dpkg_owners(path)
        want = owner or package
        if owners is None or want not in owners:
            problems.append(f"{what} ({path}): dpkg says it belongs to {owners}, the table "
                            f"says {want}: fix tests/tool_packages.py")

    named = {}
    for tool, package in tp.TOOLS.items():
        named.setdefault(package, []).append(tool)
        # installed is what counts here, even in an sbin directory off this PATH
        path = tp.find_tool(tool) or tp.off_path(tool)
        if path is None:
            problems.append(tp.missing_message(tool, package))
        else:
            check_owner(tool, path, package, tp.DPKG_OWNER.get(tool))
    for module, package in tp.PYTHON_MODULES.items():
        named.setdefault(package, []).append(f"Python module {module}")
        err = tp.python_module_error("/usr/bin/python3", module) \
            if tp.find_tool("/usr/bin/python3") else "no /usr/bin/python3"
        if err is not None:
            problems.append(tp.missing_message(
                f"Python module {module} for /usr/bin/python3 ({err})", package))
    for module, package in tp.PERL_MODULES.items():
        named.setdefault(package, []).append(f"Perl module {module}")
        err = tp.perl_module_error(module)
        if err is not None:
            problems.append(tp.missing_message(f"Perl module {module} ({err})", package))
    for module, package in tp.PKG_CONFIG.items():
        named.setdefault(package, []).append(f"pkg-config module {module}")
        r = subprocess.run(["pkg-config", "--path", module], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(tp.missing_message(f"pkg-config module {module} (the build's "
                                               "dependency)", package))
        else:
            check_owner(f"pkg-config module {module}", r.stdout.strip(), package)
    for package, what in sorted(named.items()):
        if package not in listed:
            problems.append(f"package {package} (for {', '.join(what)}) is not in "
                            "deploy/install-deps.sh's list: add it there")

    for p in problems:
        print("FAIL: " + p)
    print(f"{len(named)} packages for {sum(map(len, named.values()))} tools and modules; "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
