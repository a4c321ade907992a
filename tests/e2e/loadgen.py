"""mxgate-loadgen beside the gateway over net_memif: the two DPDK processes on --no-huge
with their own file prefixes, the gateway the memif server, the generator the client (the
socket is a file in the gateway's directory, socket-abstract=no). Used by
tests/e2e/test_loadgen_memif.py and perf/loadgen/bench_memif.py. Needs root (DPDK's
runtime directory, the memif socket) but no namespace: memif is shared memory.

MemifGateway(binary, extra_config="", workers=1, idle_sleep_us=None, cpu=None, eal_mb=512)
    -- mxtest.Gateway's
    semantics (dir, spool, maillog, start(), stop(), stats(), spooled(), context manager)
    for `mxgate_transport = dpdk` on net_memif0 (role=server) with address GW_IP/24.
    start() waits for the gateway's "dpdk statistics" line (it answers SIGUSR1 once its
    workers run); the greeting itself is the generator's to check.
    socket: the memif socket path for the generator.
run_loadgen(loadgen_binary, socket, args, timeout, json_path=None, lcore_cpu=None)
    -> (returncode, output, result dict or None): the generator as the memif client
    (GEN_IP/24, server GW_IP:25), with `args` added; start_loadgen() and
    finish_loadgen() are the same in two steps (idle runs: signal it in between).
loadgen_binary(mxgate_binary) -> path of mxgate-loadgen in the build tree (beside mxgate:
    ../perf/loadgen/) or installed beside it.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import mxtest

GW_IP, GEN_IP = "10.88.0.2", "10.88.0.1"
_ids = 0


def loadgen_binary(mxgate_binary):
    here = os.path.dirname(os.path.abspath(mxgate_binary))
    for p in (os.path.join(here, "..", "perf", "loadgen", "mxgate-loadgen"),
              os.path.join(here, "mxgate-loadgen")):
        if os.access(p, os.X_OK):
            return os.path.normpath(p)
    mxtest.fail(f"mxgate-loadgen not found beside {mxgate_binary} (build perf/loadgen; it "
                "needs libdpdk-dev)")


def _cpus():
    n = os.cpu_count() or 1
    return "0" if n == 1 else f"0-{n - 1}"


class MemifGateway(mxtest.Gateway):
    def __init__(self, binary, extra_config="", workers=1, idle_sleep_us=None, cpu=None,
                 eal_mb=512):
        global _ids
        _ids += 1
        self.binary = binary
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="mxgate-memif-e2e-")
        # the gateway drops to mail_owner: its data directory (the screen's cache, LMDB)
        # lies under this one (as mxtest.Gateway's)
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.maillog = os.path.join(self.dir, "maillog")
        self.host, self.port = GW_IP, 25
        self.socket = os.path.join(self.dir, "memif.sock")
        self.config_path = os.path.join(self.dir, "mxgate.cf")
        self.file_prefix = f"mxlg-gw-{os.getpid()}-{_ids}"
        # every lcore may run on any CPU, or all on `cpu` (a measurement pins them)
        where = _cpus() if cpu is None else str(cpu)
        lcores = ",".join(f"{i}@({where})" for i in range(workers + 1))
        eal = (f"--lcores={lcores} --no-huge -m {eal_mb} --no-pci --no-telemetry "
               f"--file-prefix={self.file_prefix} "
               f"--vdev=net_memif0,role=server,socket={self.socket},socket-abstract=no")
        lines = [
            "# written by tests/e2e/loadgen.py",
            "myhostname = mx.test.example",
            "mydestination = $myhostname, localhost",
            "relay_domains = relay.example",
            # the generator's addresses are not in mynetworks: mail to relay.example is
            # taken, mail elsewhere refused (Relay access denied), as for any client
            "mynetworks = 127.0.0.0/8",
            "mxgate_transport = dpdk",
            f"mxgate_dpdk_eal_args = {eal}",
            f"mxgate_dpdk_ports = net_memif0 address={GW_IP}/24 gateway={GEN_IP}",
            "mxgate_listen = 0.0.0.0:25",
            f"mxgate_workers = {workers}",
            f"mxgate_spool_directory = {self.spool}",
            f"mxgate_checks_cache_directory = {self.dir}/checks-cache",
            "smtpd_peername_lookup = no",
            f"maillog_file = {self.maillog}",
        ]
        if idle_sleep_us is not None:
            lines.append(f"mxgate_dpdk_idle_sleep_us = {idle_sleep_us}")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_config)
        self.proc = None

    _LAST_STAT_LINE = "dpdk statistics (SIGUSR1):"

    def start(self, timeout=60.0):
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        env = dict(os.environ)
        env.pop("MXGATE_NET_FAULT", None)
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path],
                                     stdout=self.stderr, stderr=subprocess.STDOUT, env=env)
        # up when the memif socket exists (the port is set up) and SIGUSR1 is answered
        # (the workers run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.socket) and self._answers():
                return self
            time.sleep(0.2)
        rc = self.proc.poll()
        self.stop(check=False)
        mxtest.fail(f"memif gateway did not come up (exit status {rc}):\n{self.output()}")

    def _answers(self):
        try:
            self.stats(timeout=2.0)
            return True
        except SystemExit:
            return False

    def stop(self, check=True):
        try:
            return super().stop(check=check)
        finally:
            shutil.rmtree(f"/var/run/dpdk/{self.file_prefix}", ignore_errors=True)


def loadgen_argv(binary, socket, args, json_path=None, lcore_cpu=None, file_prefix=None,
                 vdev_extra="", eal_mb=256):
    """The generator's command line as the memif client; returns (argv, file_prefix).
    vdev_extra: more net_memif devargs (",rsize=12": the client sets the rings' size)."""
    global _ids
    _ids += 1
    prefix = file_prefix or f"mxlg-gen-{os.getpid()}-{_ids}"
    cpu = _cpus() if lcore_cpu is None else str(lcore_cpu)
    argv = [binary, f"--lcores=0@({cpu})", "--no-huge", "-m", str(eal_mb), "--no-pci",
            "--no-telemetry", f"--file-prefix={prefix}",
            f"--vdev=net_memif0,role=client,socket={socket},socket-abstract=no{vdev_extra}",
            "--",
            "--port", "net_memif0", "--local", f"{GEN_IP}/24", "--server", f"{GW_IP}:25",
            "--progress", "0"]
    if json_path:
        argv += ["--json", json_path]
    return argv + list(args), prefix


def start_loadgen(binary, socket, args, json_path=None, lcore_cpu=None, vdev_extra="",
                  eal_mb=256):
    """The generator in the background: (Popen with text stdout/stderr pipes, prefix)."""
    argv, prefix = loadgen_argv(binary, socket, args, json_path, lcore_cpu,
                                vdev_extra=vdev_extra, eal_mb=eal_mb)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True), prefix


def finish_loadgen(p, prefix, timeout, json_path=None):
    """Wait for a start_loadgen() process: (returncode, output, result dict or None)."""
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        mxtest.fail(f"mxgate-loadgen ran over {timeout} s:\n{out}")
    finally:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    result = None
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            result = json.load(f)
    return p.returncode, out, result


def run_loadgen_af_packet(run, binary, iface, local, server, args, timeout, prefix,
                          json_path):
    """The generator on net_af_packet over iface (a veth end in a namespace), started by
    run (the namespace's runner: a Topology's cl or gw), from local (its address, /24)
    against server ("ADDR:PORT"): (returncode, output without EAL's lines, the JSON result
    or None). Raises subprocess.TimeoutExpired past timeout."""
    argv = [binary, f"--lcores=0@({_cpus()})", "--no-huge", "-m", "256", "--no-pci",
            "--no-telemetry", f"--file-prefix={prefix}",
            f"--vdev=net_af_packet0,iface={iface},framecnt=4096", "--",
            "--port", "net_af_packet0", "--local", f"{local}/24", "--server", server,
            "--progress", "0", "--json", json_path, *args]
    try:
        r = run(argv, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    result = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            result = json.load(f)
        os.unlink(json_path)
    out = r.stdout + "\n".join(l for l in r.stderr.splitlines() if not l.startswith("EAL:"))
    return r.returncode, out, result


def run_loadgen(binary, socket, args, timeout, json_path=None, lcore_cpu=None,
                vdev_extra=""):
    p, prefix = start_loadgen(binary, socket, args, json_path, lcore_cpu, vdev_extra)
    return finish_loadgen(p, prefix, timeout, json_path)
