"""Faults under load: operator mistakes and churn while traffic flows.
Nothing crashes or leaks, every frame is counted, clear log lines."""
import glob
import os
import signal
import subprocess
import sys
import time

from .harness import Topology, link_attr, ping, sh, veth_up, wait_for

TWO = ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]
# route + neighbour churn at ~1000 changes/s for this long (the long form: 10)
CHURN_SECONDS = float(os.environ.get("KNI_GW_CHURN_SECONDS", "6"))

STREAM = r"""
import socket, sys, time
dst, seconds, pps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    for _ in range(pps // 100):
        try:
            s.sendto(b"x" * 64, (dst, 7777)); n += 1
        except OSError:
            pass
    time.sleep(0.01)
print(n)
"""

CHURN = r"""
import random, sys, time
from pyroute2 import IPRoute
ipr = IPRoute()
idx = ipr.link_lookup(ifname="vEth1")[0]
rnd = random.Random(3)
seconds, rate = float(sys.argv[1]), int(sys.argv[2])
n, t0, live = 0, time.monotonic(), set()
while time.monotonic() - t0 < seconds:
    for _ in range(rate // 100):
        k = rnd.randrange(2000)
        net = f"172.16.{k >> 8}.{k & 255}"
        try:
            if k in live:
                ipr.route("del", dst=net + "/32")
                live.discard(k)
            else:
                ipr.route("add", dst=net + "/32", gateway="10.1.0.2")
                live.add(k)
            ipr.neigh("replace", dst=f"10.1.0.{100 + k % 100}", lladdr=f"02:00:00:00:{k % 100:02x}:01",
                      ifindex=idx, state=0x80 if k % 3 else 0x02)
            n += 2
        except Exception:
            pass
    time.sleep(0.01)
print(n)
"""


def routed(gateways, extra=(), eal=None):
    topo = Topology(2)
    gw = gateways(topo, TWO + list(extra), eal=eal).wait_ready()
    veth_up(topo, 0)
    veth_up(topo, 1)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
             what="forwarding on")
    ping(topo.peers[0], "10.1.0.2", count=2, wait=2)
    return topo, gw


def accounted(gw, base):
    """rx = to_kernel + forwarded + rx drops, per port, since base."""
    rx_drops = ("to_kernel_full", "fwd_fifo_full", "port_down_rx", "runt", "bad_header",
                "bad_checksum", "policed")
    s = gw.stats()
    for p, b in zip(s["ports"], base["ports"]):
        rx = p["rx_packets"] - b["rx_packets"]
        parts = (p["to_kernel"] - b["to_kernel"]) + (p["forwarded"] - b["forwarded"]) + sum(
            p["drops"][r] - b["drops"][r] for r in rx_drops)
        assert rx == parts, (p["port"], rx, parts)
    return s


def test_flaps_and_churn_under_load(gateways):
    topo, gw = routed(gateways)
    try:
        base = gw.stats()
        stream = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", STREAM,
                                   "10.1.0.2", str(CHURN_SECONDS + 4), "20000"], stdout=subprocess.PIPE, text=True)
        churn = subprocess.Popen(["ip", "netns", "exec", topo.gw, sys.executable, "-c", CHURN,
                                  str(CHURN_SECONDS), "1000"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        for _ in range(3):
            sh("ip", "link", "set", "vEth1", "mtu", "1400", ns=topo.gw)
            sh("ip", "link", "set", "vEth1", "down", ns=topo.gw)
            time.sleep(0.2)
            sh("ip", "link", "set", "vEth1", "up", ns=topo.gw)
            sh("ip", "link", "set", "vEth1", "mtu", "1500", ns=topo.gw)
            sh("ip", "link", "set", "p1", "down", ns=topo.peers[1])
            time.sleep(0.2)
            sh("ip", "link", "set", "p1", "up", ns=topo.peers[1])
        sh("ip", "link", "set", "vEth1", "name", "lan1", ns=topo.gw)
        gw.wait_line(gw.err, lambda s: "vEth1 was renamed to lan1" in s)
        time.sleep(0.3)
        sh("ip", "link", "set", "lan1", "name", "vEth1", ns=topo.gw)
        changes = int(churn.communicate(timeout=60)[0])
        sent = int(stream.communicate(timeout=60)[0])
        print(f"churn: {changes} route/neighbour changes in {CHURN_SECONDS:.0f} s; stream: {sent} datagrams")
        assert changes > 500 * CHURN_SECONDS and sent > 100_000, (changes, sent)
        assert gw.proc.poll() is None
        # after the storm: the fast path forwards again, all is counted, mbufs are back
        sh("ip", "link", "set", "vEth1", "up", ns=topo.gw)
        sh("ip", "route", "replace", "10.1.0.0/24", "dev", "vEth1", ns=topo.gw)
        # p1's flaps took the peer's default route with them
        sh("ip", "route", "replace", "default", "via", "10.1.0.1", ns=topo.peers[1])
        wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, wait=1).returncode == 0,
                 timeout=15, what="ping across after the faults")
        before = gw.stats()["ports"][0]["forwarded"]
        assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=20, wait=2).stdout
        assert gw.stats()["ports"][0]["forwarded"] - before >= 20
        s = accounted(gw, base)
        wait_for(lambda: gw.stats()["mbufs_in_use"] == base["mbufs_in_use"], timeout=10,
                 what="mbufs back to the baseline")
        log = "\n".join(gw.err)
        assert "vEth1 down: port 1 stopped" in log and "vEth1 up: port 1 forwarding" in log
        assert "Traceback" not in log and s["fib"]["events"] > 3000
    finally:
        gw.kill()
        topo.close()


def test_veth_deleted_by_an_operator(gateways):
    topo, gw = routed(gateways)
    try:
        sh("ip", "link", "del", "vEth1", ns=topo.gw)
        gw.wait_line(gw.err, lambda s: "vEth1 was deleted: port 1 stops" in s)
        r = ping(topo.peers[1], "10.1.0.1", count=3, wait=1)
        assert "100% packet loss" in r.stdout
        assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3, wait=2).stdout
        base = gw.stats()
        ping(topo.peers[1], "10.1.0.1", count=5, wait=0.2)
        accounted(gw, base)
        assert gw.stop() == 0
    finally:
        gw.kill()
        topo.close()


def test_sigterm_under_full_load(gateways):
    topo, gw = routed(gateways)
    try:
        stream = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", STREAM,
                                   "10.1.0.2", "4", "200000"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        t0 = time.monotonic()
        assert gw.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - t0 < 10
        stream.communicate(timeout=30)
        assert link_attr(topo.gw, "vEth0") == {} and link_attr(topo.gw, "vEth1") == {}
        assert "stopped: ports closed" in "\n".join(gw.err)
    finally:
        gw.kill()
        topo.close()


def test_sigkill_then_restart_cleans_up(gateways):
    topo = Topology(1)
    try:
        eal = ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag] + topo.vdevs()   # on hugepages
        gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)"], eal=eal).wait_ready()
        veth_up(topo)
        assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3, wait=2).stdout
        assert glob.glob(f"/dev/hugepages/{topo.tag}map_*")
        gw.proc.kill()
        gw.proc.wait()
        # the kernel removed the TAP with its file descriptor; EAL's files stay
        assert link_attr(topo.gw, "vEth0") == {}
        assert glob.glob(f"/dev/hugepages/{topo.tag}map_*") and os.path.exists(f"/var/run/dpdk/{topo.tag}")
        gw2 = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)"], eal=eal).wait_ready()
        veth_up(topo)
        assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3, wait=2).stdout
        assert gw2.stop() == 0
        assert not glob.glob(f"/dev/hugepages/{topo.tag}map_*")
        assert not os.path.exists(f"/var/run/dpdk/{topo.tag}")
    finally:
        topo.close()
