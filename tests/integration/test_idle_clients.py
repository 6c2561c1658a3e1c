"""The control plane never waits on a client: hundreds of idle connections
to the control socket and to the metrics endpoint, held open and reopened
as the gateway closes them, beside a DNS query flood below the `dns`
policer's limit. Meanwhile DNS answers stay fast, a route added with
`ip route` shows in `kni-gw stats --json` within 1 s, `kni-gw stats` and
HEAD /metrics answer, and SIGTERM stops the gateway within 10 s."""
import json
import os
import signal
import subprocess
import sys
import time

from .harness import kni_gw_bin, sh, veth_up, wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METRICS_PORT = 9187

# Opens N connections to each target and keeps them open and silent; one the
# gateway closes is opened again at once. Prints "held" once all are open.
HOLDER = r"""
import selectors, socket, sys, time
n, unix_path, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sel = selectors.DefaultSelector()
def conn(kind):
    s = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(unix_path if kind == "unix" else ("127.0.0.1", port))
    except (BlockingIOError, InterruptedError):
        pass
    sel.register(s, selectors.EVENT_READ, kind)
for i in range(n):
    conn("unix"); conn("tcp")
print("held", flush=True)
while True:
    closed = []
    for key, _ in sel.select(0.5):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed.append(key.data)
    if closed:
        time.sleep(0.005)   # reopen at once, but leave the 2-CPU test machine some CPU
        for kind in closed:
            conn(kind)
"""


def timed(*cmd, ns=None):
    t = time.monotonic()
    r = sh(*cmd, ns=ns, check=False, timeout=30)
    return time.monotonic() - t, r


def stats_json(prefix):
    r = subprocess.run([kni_gw_bin(), "stats", "--json", "--file-prefix", prefix],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_idle_clients_and_dns_flood_do_not_stall_the_control_plane(topo, gateways, tmp_path):
    zone = os.path.join(TOP, "examples", "example.zone")
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--dns-zone", zone,
                         "--police", "dns=3000:300", "--metrics", str(METRICS_PORT)]).wait_ready()
    veth_up(topo, 0, "10.0.0.1/24")
    gw.wait_line(gw.err, lambda s: "dns: listening on 10.0.0.1" in s)
    # --metrics PORT alone: 127.0.0.1 only
    listening = sh("ss", "-Hltn", f"sport = :{METRICS_PORT}", ns=topo.gw).stdout.split()
    assert f"127.0.0.1:{METRICS_PORT}" in listening, listening

    def dig_time():
        t, r = timed("dig", "+tries=1", "+time=2", "@10.0.0.1", "gw.example.test", "+short",
                     ns=topo.peers[0])
        assert r.stdout.strip() == "192.168.0.1", r.stdout + r.stderr
        return t
    base_dig = max(dig_time() for _ in range(5))
    base_fds = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))

    holder = subprocess.Popen(["ip", "netns", "exec", topo.gw, sys.executable, "-c", HOLDER, "300",
                               f"/run/kni-gw/{gw.prefix}.sock", str(METRICS_PORT)],
                              stdout=subprocess.PIPE, text=True)
    qfile = tmp_path / "queries"
    qfile.write_text("gw.example.test A\nwww.example.test A\nnx.example.test A\n")
    flood = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], "dnsperf", "-s", "10.0.0.1",
                              "-d", str(qfile), "-l", "30", "-Q", "2000", "-c", "4", "-q", "500"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = stats_json(gw.prefix)["dns"]["queries"]
        wait_for(lambda: stats_json(gw.prefix)["dns"]["queries"] - before > 1000, timeout=10,
                 what="the DNS flood arriving")
        assert holder.poll() is None and flood.poll() is None

        # DNS answers keep their times
        digs = [dig_time() for _ in range(10)]
        assert max(digs) < max(0.3, 5 * base_dig), (digs, base_dig)

        # kni-gw stats answers at once, HEAD /metrics too
        t, r = timed(kni_gw_bin(), "stats", "--json", "--file-prefix", gw.prefix)
        assert r.returncode == 0 and t < 1.0, (t, r.stderr)
        head = sh("curl", "-sS", "-I", "--max-time", "2", f"http://127.0.0.1:{METRICS_PORT}/metrics",
                  ns=topo.gw).stdout
        assert head.startswith("HTTP/1.1 200") and "openmetrics-text" in head, head
        body = sh("curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{METRICS_PORT}/metrics",
                  ns=topo.gw).stdout
        assert body.rstrip().endswith("# EOF") and "kni_gw_rx_packets_total" in body

        # a route added with ip route is mirrored within 1 s
        for k in range(3):
            n4 = stats_json(gw.prefix)["fib"]["routes4"]
            t0 = time.monotonic()
            sh("ip", "route", "add", f"10.77.{k}.0/24", "via", "10.0.0.2", ns=topo.gw)
            wait_for(lambda: stats_json(gw.prefix)["fib"]["routes4"] == n4 + 1, timeout=1.0, step=0.02,
                     what=f"route 10.77.{k}.0/24 mirrored")
            assert time.monotonic() - t0 < 1.0

        # the idle connections were closed by their deadline or evicted: the
        # gateway holds at most 64 per server (MAX_CONNS)
        assert holder.poll() is None
        fds = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
        assert fds <= base_fds + 2 * (64 + 1) + 2, (fds, base_fds)   # + one being accepted, curl

        # SIGTERM stops it within 10 s
        t0 = time.monotonic()
        assert gw.stop(signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - t0 < 10
    finally:
        for p in (holder, flood):
            if p.poll() is None:
                p.kill()
            p.wait()
