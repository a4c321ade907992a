"""mxgate-loadgen --pregreet against the gateway's screen over net_memif (tests/e2e/loadgen.py):
the gateway with postscreen in master.cf (greet wait 2 s, greet action drop, the
postscreen cache in LMDB), the generator's bots from 10.1.0.0/16 (not in mynetworks). Needs
root and libdpdk (built with it).

1. 2,000 bots, 100 at once: each gets the 220- teaser, then 521 and the close: the generator
   counts 2,000 rejected and no error; the gateway counts 2,000 pregreet failures, 2,000
   closed by the screen, none passed; its log has a PREGREET line for each and no warning.
2. The same bots against a service without the screen (plain smtpd on port 2525): the
   greeting comes first, so every session is a greeting error (exit status 3, the 220
   reported).
"""

import os
import sys

import loadgen
import mxtest

SETTINGS = """\
postscreen_greet_wait = 2s
postscreen_greet_action = drop
postscreen_access_list = permit_mynetworks
postscreen_pipelining_enable = no
postscreen_non_smtp_command_enable = no
postscreen_bare_newline_enable = no
"""


def main():
    binary = mxtest.binary_from_argv()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(binary)
    gw = loadgen.MemifGateway(binary, workers=1)
    data = os.path.join(gw.dir, "data")
    os.makedirs(data)
    mpath = os.path.join(gw.dir, "master.cf")
    with open(mpath, "w") as f:
        f.write("25 inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n"
                "2525 inet n - n - - smtpd\n")
    with open(gw.config_path, "a") as f:
        f.write(SETTINGS + f"mxgate_master_file = {mpath}\ndata_directory = {data}\n")
    with gw:
        # -- 1: the screen turns every bot away -------------------------------------
        before = gw.stats()
        jp = os.path.join(gw.dir, "run1.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--pregreet", "--src", "10.1.0.0/16", "--sessions", "2000",
                             "--concurrency", "100", "--timeout", "20"],
            timeout=240, json_path=jp)
        print(out)
        if rc != 0 or res is None:
            mxtest.fail(f"run 1: mxgate-loadgen exit status {rc}:\n{out}\n{gw.output()}")
        if res["sessions"]["rejected"] != 2000 or res["errors"]["total"] != 0 or \
                res["sessions"]["failed"] != 0 or res["rejects_per_s"] <= 0:
            mxtest.fail(f"run 1: {res['sessions']} {res['errors']}")
        st = gw.stats()
        d = {k: st.get(k, 0) - before.get(k, 0) for k in
             ("screen_pregreet_fail", "screen_closed", "screen_passed", "screen_connections")}
        if d != {"screen_pregreet_fail": 2000, "screen_closed": 2000, "screen_passed": 0,
                 "screen_connections": 2000}:
            mxtest.fail(f"run 1: the gateway's screen counted {d}")
        log = gw.log()
        n = log.count(" PREGREET ")
        if n != 2000 or "warning:" in log:
            mxtest.fail(f"run 1: {n} PREGREET lines (expected 2000) or warnings:\n"
                        f"{log[-3000:]}")
        # -- 2: no screen: the greeting comes first, every session an error ---------
        jp = os.path.join(gw.dir, "run2.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--pregreet", "--src", "10.1.0.0/16", "--sessions", "20",
                             "--concurrency", "10", "--timeout", "20", "--server",
                             f"{loadgen.GW_IP}:2525"], timeout=120, json_path=jp)
        print(out)
        if rc != 3 or res is None or res["errors"]["greeting"] != 20 or \
                res["sessions"]["rejected"] != 0 or \
                '"220 "' not in res["errors_kept"][0]["text"]:
            mxtest.fail(f"run 2: exit status {rc}, expected 3 with 20 greeting errors:\n{out}")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
