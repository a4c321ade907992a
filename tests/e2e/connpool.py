"""A process holding any number of SMTP connections, driven by JSON lines on stdin (one
answer line per request); on the dpdk transport it runs in the client namespace, where the
test process cannot open sockets itself. Used by test_anvil.py and test_stress.py.

    {"op": "open", "src": ADDR}        -> {"id": N, "reply": TEXT, "eof": BOOL}
                                          (src may be omitted: the default source)
    {"op": "cmd", "id": N, "line": L}  -> {"reply": TEXT, "eof": BOOL}
    {"op": "read", "id": N, "timeout": S} -> {"reply": TEXT, "eof": BOOL, "waited": S}
                                          (the next reply without sending anything)
    {"op": "quit", "id": N}            -> {"reply": TEXT, "eof": BOOL}  (QUIT, then EOF)
    {"op": "drop", "id": N}            -> {}
A reply is its lines joined by "\n"; "eof" says the server closed the connection after it
(looked for only after a 421 and after QUIT).
"""

import json
import subprocess
import time

from mxtest import fail

CLIENT = r"""
import json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
conns, next_id = {}, 0

def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            lines.append("EOF")
            return "\n".join(lines), True
        l = l.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(l)
        if len(l) < 4 or l[3] != "-":
            return "\n".join(lines), False

def eof_follows(s, f):
    s.settimeout(15)
    try:
        return f.read() == b""
    except OSError:
        return False

for req in sys.stdin:
    r = json.loads(req)
    out = {}
    try:
        if r["op"] == "open":
            src = (r["src"], 0) if r.get("src") else None
            s = socket.create_connection((host, port), 15, source_address=src)
            f = s.makefile("rb")
            next_id += 1
            conns[next_id] = (s, f)
            text, eof = reply(f)
            if not eof and text.startswith("421"):
                eof = eof_follows(s, f)
            out = {"id": next_id, "reply": text, "eof": eof}
        elif r["op"] in ("cmd", "quit"):
            s, f = conns[r["id"]]
            s.settimeout(15)
            s.sendall((r.get("line", "QUIT") + "\r\n").encode())
            text, eof = reply(f)
            if not eof and (r["op"] == "quit" or text.startswith("421")):
                eof = eof_follows(s, f)
            out = {"reply": text, "eof": eof}
        elif r["op"] == "read":
            s, f = conns[r["id"]]
            s.settimeout(r.get("timeout", 15))
            t0 = time.monotonic()
            text, eof = reply(f)
            waited = time.monotonic() - t0
            if not eof and text.startswith("421"):
                eof = eof_follows(s, f)
            out = {"reply": text, "eof": eof, "waited": waited}
        elif r["op"] == "drop":
            s, f = conns.pop(r["id"])
            s.close()
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"""


class ConnPool:
    def __init__(self, python, host, port, output, topo=None):
        """The client process for host:port (in topo's client namespace when given);
        output() is what to show when something fails."""
        argv = [python, "-u", "-c", CLIENT, host, str(port)]
        kw = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.output = output
        self.p = topo.cl_popen(argv, **kw) if topo else subprocess.Popen(argv, **kw)
        self.open_ids = {}  # id -> source address

    def call(self, **req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            fail(f"the client process died on {req}:\n{self.output()}")
        r = json.loads(line)
        if "error" in r:
            fail(f"{req}: {r['error']}\n{self.output()}")
        return r

    def open(self, src=None):
        r = self.call(op="open", src=src)
        if not r["eof"]:
            self.open_ids[r["id"]] = src
        return r

    def cmd(self, cid, line):
        return self.call(op="cmd", id=cid, line=line)["reply"]

    def read(self, cid, timeout):
        """The next reply on connection cid, within timeout seconds: the reply dict with
        how long it took ("waited")."""
        return self.call(op="read", id=cid, timeout=timeout)

    def drop(self, cid):
        self.call(op="drop", id=cid)
        self.open_ids.pop(cid, None)

    def quit(self, cid):
        r = self.call(op="quit", id=cid)
        if not r["reply"].startswith("221") or not r["eof"]:
            fail(f"QUIT: got {r['reply']!r} (closed: {r['eof']})\n{self.output()}")
        self.open_ids.pop(cid, None)

    def quit_all(self, src=None):
        for cid, s in list(self.open_ids.items()):
            if src is None or s == src:
                self.quit(cid)

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)
