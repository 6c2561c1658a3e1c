"""A bounded soak of a running kni-gw: mixed traffic (a UDP stream through
the fast path, pings across and to the gateway, DNS queries, TTL-1 frames
for the kernel), route churn, SIGUSR1 and SIGUSR2 every second; samples of
the gateway's resident memory and mbufs in use. Used by test_soak.py (short)
and bench/soak.py (long)."""
import os
import signal
import subprocess
import sys
import time

from .harness import Gateway, Topology, ping, sh, veth_up, wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRAFFIC = r"""
import socket, sys, time
seconds = float(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
q = bytes.fromhex("abcd01000001000000000000037777770765786d706c650474657374000001 0001".replace(" ", ""))
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.setblocking(False)
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    for _ in range(50):
        u.sendto(b"s" * 100, ("10.1.0.2", 7777))
    t.sendto(b"t", ("10.1.0.2", 7778))
    d.sendto(q, ("10.0.0.1", 53))
    try:
        while True:
            d.recv(2048)
    except BlockingIOError:
        pass
    n += 52
    time.sleep(0.002)
print(n)
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(seconds: float, report=print):
    topo = Topology(2)
    gw = Gateway(topo, ["-p", "0x3", "--config", "(0,0,1),(1,0,1)", "--dns-zone",
                        os.path.join(TOP, "examples", "example.zone")])
    try:
        gw.wait_ready()
        veth_up(topo, 0)
        veth_up(topo, 1)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
        wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()), what="forwarding")
        ping(topo.peers[0], "10.1.0.2", count=2, wait=2)
        base = gw.stats()
        traffic = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", TRAFFIC,
                                    str(seconds)], stdout=subprocess.PIPE, text=True)
        pinger = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], "ping", "-q", "-i", "0.05",
                                   "-w", str(int(seconds)), "10.1.0.2"], stdout=subprocess.PIPE, text=True)
        samples, k, t0 = [], 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            k += 1
            net = f"172.17.{k % 250}.0/24"
            sh("ip", "route", "replace", net, "via", "10.1.0.2", ns=topo.gw)
            if k % 2:
                sh("ip", "route", "del", f"172.17.{(k + 125) % 250}.0/24", ns=topo.gw, check=False)
            gw.send(signal.SIGUSR2 if k % 5 == 0 else signal.SIGUSR1)
            s = gw.stats()
            samples.append((time.monotonic() - t0, rss_kib(gw.proc.pid), s["mbufs_in_use"]))
            time.sleep(1.0)
        sent = int(traffic.communicate(timeout=60)[0])
        pings = pinger.communicate(timeout=60)[0]
        # traffic over: the pool back to where it was
        wait_for(lambda: gw.stats()["mbufs_in_use"] == base["mbufs_in_use"], timeout=10,
                 what="mbufs back to the baseline")
        alive = gw.proc.poll() is None
        report(f"soak {seconds:.0f} s: {sent} datagrams + pings; {k} route changes and signals")
        report(f"  gateway alive: {alive}")
        report("  t(s)   RSS(KiB)  mbufs in use")
        for t, r, m in samples[:: max(1, len(samples) // 12)]:
            report(f"  {t:5.0f}  {r:9d}  {m}")
        # ping's summary without its ", time ...ms": within 79 columns
        report(f"  ping: {pings.strip().splitlines()[-2].split(', time')[0] if pings.strip() else '?'}")
        return {"samples": samples, "sent": sent, "alive": alive, "base_mbufs": base["mbufs_in_use"],
                "pings": pings, "gw": gw}
    finally:
        gw.stop()
        topo.close()
