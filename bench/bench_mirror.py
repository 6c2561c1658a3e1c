#!/usr/bin/env python3
"""The kernel mirror under a full routing table (issue: follow the kernel).
Run as root, on a quiet machine:

  sudo .venv/bin/python bench/bench_mirror.py [--v4 1000000] [--v6 250000] [--skip-bird]

Harness as bench_fastpath.py: port 0 = net_pcap replaying 64-byte UDP
frames from memory (infinite_rx) to a routed prefix, port 1 = net_null
(no-rx), kni-gw "(0,0,1),(1,1,0)" (the forwarding path on lcore 0), in a
namespace of its own. Printed, in one run:

1. a full table (default 1M IPv4 /24 + 250k IPv6 /48 spread over 20k /32s)
   added with `ip -batch` while the fast path forwards: seconds until ip
   returns and until every prefix is in the fast path (from ip's start),
   Mpps forwarded meanwhile and before, the tables' memory and kni-gw's
   resident memory;
2. the same IPv4 table exported to the kernel by BIRD 2 (static routes,
   kernel protocol): seconds from BIRD's start until it is mirrored;
3. a kernel nexthop object used by 100k routes, replaced (`ip nexthop
   replace`) under traffic: the time until the fast path follows (its
   frames start being punted to resolve the new next hop), beside the time
   `ip -batch route replace` of the same 100k routes takes to be followed
   without nexthop objects.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fastpath import write_frames  # noqa: E402
from common import Proc, netns, say, sh, wait_for  # noqa: E402
from tests.integration.harness import Gateway  # noqa: E402

NS = "kgbench-mirror"
NEIGH_MAC = "02:00:00:00:0c:02"


def v4_prefix(i):
    return f"{20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"


def v6_prefix(i):
    # ~20k /32s under 2a00::/8, 13 /48s under each, each in a /40 of its
    # own: about 1.1 second-level groups of rte_lpm6 a prefix
    k, r = divmod(i, 13)
    return f"{0x2a00 + (k >> 8):x}:{(k & 0xff) << 8:x}:{r << 8 | i % 7:x}::/48"


class Gw:
    def __init__(self, pcap, v4, v6):
        class Where:
            tag, gw = "kgbmirror", NS
        mem = 2048 if v4 > 500_000 else 1024
        self.g = Gateway(Where(), ["-p", "0x3", "--config", "(0,0,1),(1,1,0)",
                                   "--max-routes", f"{max(v4 + 1024, 65536)},{max(v6 + 1024, 16384)}"],
                         eal=["-l", "0-1", "--no-huge", "-m", str(mem), "--no-pci", "--file-prefix",
                              "kgbmirror", "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
                              "--vdev", "net_null0,no-rx=1"]).wait_ready()
        for k in (0, 1):
            sh("sysctl", "-qw", f"net.ipv6.conf.vEth{k}.disable_ipv6=0", ns=NS, check=False)
            sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=NS)
            sh("ip", "-6", "addr", "add", f"2001:db8:{k}::1/64", "dev", f"vEth{k}", "nodad", ns=NS)
            sh("ip", "link", "set", f"vEth{k}", "up", ns=NS)
        sh("ip", "neigh", "replace", "10.1.0.2", "lladdr", NEIGH_MAC, "nud", "permanent", "dev", "vEth1", ns=NS)
        sh("ip", "-6", "neigh", "replace", "2001:db8:1::2", "lladdr", NEIGH_MAC, "nud", "permanent",
           "dev", "vEth1", ns=NS)
        sh("ip", "route", "replace", "10.2.0.0/16", "via", "10.1.0.2", ns=NS)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", ns=NS)
        wait_for(lambda: self.fib()["fast4"] >= 2, what="routes mirrored")

    def stats(self):
        return self.g.stats()

    def fib(self):
        return self.stats()["fib"]

    def tx(self):
        return self.stats()["ports"][1]["tx_packets"]

    def rate(self, seconds=2.0):
        a, t0 = self.tx(), time.monotonic()
        time.sleep(seconds)
        return (self.tx() - a) / (time.monotonic() - t0)

    def rss_kib(self):
        pid = self.g.proc.pid
        # ip netns exec's child is kni-gw itself (exec)
        try:
            with open(f"/proc/{pid}/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))
        except (OSError, StopIteration):
            return -1

    def stop(self):
        self.g.stop(timeout=60)


def write_batch(path, lines):
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def full_table(tmp, pcap, v4, v6):
    g = Gw(pcap, v4, v6)
    try:
        before = g.rate()
        b4 = write_batch(os.path.join(tmp, "v4.batch"),
                         (f"route add {v4_prefix(i)} via 10.1.0.2\n" for i in range(v4)))
        b6 = write_batch(os.path.join(tmp, "v6.batch"),
                         (f"route add {v6_prefix(i)} via 2001:db8:1::2\n" for i in range(v6)))
        base = g.fib()
        a, t0 = g.tx(), time.monotonic()
        sh("ip", "-batch", b4, ns=NS, timeout=600)
        sh("ip", "-6", "-batch", b6, ns=NS, timeout=600)
        t_ip = time.monotonic() - t0
        wait_for(lambda: (lambda f: f["fast4"] >= base["fast4"] + v4 and f["fast6"] >= base["fast6"] + v6
                          or f["not_installed4"] + f["not_installed6"] > 0)(g.fib()),
                 timeout=600, step=0.25, what="the full table mirrored")
        t_all = time.monotonic() - t0
        during = (g.tx() - a) / (time.monotonic() - t0)
        after = g.rate()
        f = g.fib()
        say(f"  ip -batch {v4} IPv4 + {v6} IPv6 routes: ip done in {t_ip:.1f} s, all in the fast path "
            f"{t_all:.1f} s from ip's start (not installed: {f['not_installed4']} + {f['not_installed6']})",
            indent="    ")
        say(f"  forwarded meanwhile {during / 1e6:.2f} Mpps (before {before / 1e6:.2f}, after "
            f"{after / 1e6:.2f}: {during / before:.2f}x of before)", indent="    ")
        say(f"  tables {f['memory'] / 2**20:.0f} MiB (EAL memory); kni-gw resident {g.rss_kib() / 1024:.0f} MiB",
            indent="    ")
    finally:
        g.stop()


def bird_table(tmp, pcap, v4):
    conf = os.path.join(tmp, "bird.conf")
    with open(conf, "w") as f:
        f.write("router id 10.1.0.1;\nprotocol device {}\n"
                "protocol kernel { ipv4 { export all; import none; }; merge paths on; }\n"
                "protocol static { ipv4;\n")
        f.writelines(f"  route {v4_prefix(i)} via 10.1.0.2;\n" for i in range(v4))
        f.write("}\n")
    g = Gw(pcap, v4, 16384)
    bird = None
    try:
        base = g.fib()["fast4"]
        t0 = time.monotonic()
        bird = Proc(["bird", "-f", "-c", conf, "-s", os.path.join(tmp, "bird.ctl")], ns=NS)
        wait_for(lambda: g.fib()["fast4"] >= base + v4, timeout=900, step=0.5, what="BIRD's routes mirrored")
        t_all = time.monotonic() - t0
        kernel = int(sh("sh", "-c", "ip route show proto bird | wc -l", ns=NS, timeout=120).stdout)
        say(f"  BIRD static -> kernel -> kni-gw: {v4} routes in the fast path {t_all:.1f} s after BIRD "
            f"started ({kernel} in the kernel)", indent="    ")
    finally:
        if bird is not None:
            bird.stop(timeout=120)
        g.stop()


def settle(g, quiet=0.5, timeout=120.0):
    """Until the mirror has read every queued netlink message."""
    last, t_last, t0 = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        ev = g.fib()["events"]
        if ev != last:
            last, t_last = ev, time.monotonic()
        elif time.monotonic() - t_last >= quiet:
            return
        time.sleep(0.05)


def first_punt_after(g, action, what, timeout=60.0):
    """Seconds from just before action() until port 0 starts punting
    `unresolved` (the fast path follows the change to an unresolved hop)."""
    p0 = g.stats()["ports"][0]["punts"]["unresolved"]
    t0 = time.monotonic()
    action()
    t_cmd = time.monotonic() - t0
    wait_for(lambda: g.stats()["ports"][0]["punts"]["unresolved"] > p0, timeout=timeout, step=0.005,
             what=what)
    return t_cmd, time.monotonic() - t0


def nexthop_change(tmp, n):
    dsts = [v4_prefix(i * (n // 1024)).replace(".0/24", f".{1 + i % 250}") for i in range(1024)]
    pcap = os.path.join(tmp, "nh.pcap")
    write_frames(pcap, dsts)
    g = Gw(pcap, n, 16384)
    try:
        sh("ip", "nexthop", "add", "id", "100", "via", "10.1.0.2", "dev", "vEth1", ns=NS)
        b = write_batch(os.path.join(tmp, "nh.batch"), (f"route add {v4_prefix(i)} nhid 100\n" for i in range(n)))
        base = g.fib()["fast4"]
        sh("ip", "-batch", b, ns=NS, timeout=300)
        wait_for(lambda: g.fib()["fast4"] >= base + n, timeout=300, step=0.25, what="nhid routes mirrored")
        r = g.rate()
        times, cmds = [], []
        for k in range(3):
            # to an address nobody resolved: the fast path punts as soon as it follows
            hop = f"10.1.0.{10 + k}"
            settle(g)
            t_cmd, t = first_punt_after(
                g, lambda: sh("ip", "nexthop", "replace", "id", "100", "via", hop, "dev", "vEth1", ns=NS),
                "the fast path follows the nexthop")
            times.append(t)
            cmds.append(t_cmd)
            sh("ip", "nexthop", "replace", "id", "100", "via", "10.1.0.2", "dev", "vEth1", ns=NS)
            wait_for(lambda: g.rate(0.3) > r / 2, timeout=30, what="forwarding again")
        say(f"  {n} routes through one nexthop object at {r / 1e6:.2f} Mpps: `ip nexthop replace` followed in "
            f"{statistics.median(times) * 1000:.1f} ms (median of 3; {', '.join(f'{t * 1000:.1f}' for t in times)}; "
            f"the ip command itself took {', '.join(f'{t * 1000:.0f}' for t in cmds)} ms)", indent="    ")
        # the same without nexthop objects: every route replaced. (Deleting
        # the object takes its routes, with no message for them.)
        sh("ip", "nexthop", "del", "id", "100", ns=NS)
        wait_for(lambda: g.fib()["fast4"] <= base, timeout=300, step=0.25, what="routes gone")
        b = write_batch(os.path.join(tmp, "plain.batch"),
                        (f"route add {v4_prefix(i)} via 10.1.0.2\n" for i in range(n)))
        sh("ip", "-batch", b, ns=NS, timeout=300)
        wait_for(lambda: g.fib()["fast4"] >= base + n, timeout=300, step=0.25, what="plain routes mirrored")
        wait_for(lambda: g.rate(0.3) > r / 2, timeout=30, what="forwarding")
        rb = write_batch(os.path.join(tmp, "replace.batch"),
                         (f"route replace {v4_prefix(i)} via 10.1.0.20\n" for i in range(n)))

        def replace_all():
            sh("ip", "-batch", rb, ns=NS, timeout=300)
        settle(g)
        t0 = time.monotonic()
        t_cmd, t = first_punt_after(g, replace_all, "the first replaced route followed")
        # all followed: nothing forwarded any more (every frame punted to resolve 10.1.0.20)
        wait_for(lambda: g.rate(0.2) == 0, timeout=300, step=0.01, what="all replaced")
        t_all = time.monotonic() - t0
        say(f"  the same {n} routes without a nexthop object, `ip -batch route replace`: ip {t_cmd:.2f} s; "
            f"first route followed {t:.2f} s, the last {t_all:.2f} s from ip's start", indent="    ")
    finally:
        g.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=250_000)
    ap.add_argument("--nh-routes", type=int, default=100_000)
    ap.add_argument("--skip-bird", action="store_true")
    ap.add_argument("--only", choices=("full", "bird", "nexthop"), help="run one part")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="kgbmirror")
    pcap = os.path.join(tmp, "fwd.pcap")
    write_frames(pcap, [f"10.2.{(i >> 8) & 255}.{i & 255}" for i in range(1024)])
    say("== kernel mirror: full table while forwarding (64-byte frames, pcap -> net_null, one lcore)",
        indent="   ")
    phases = {"full": lambda: full_table(tmp, pcap, args.v4, args.v6),
              "bird": None if args.skip_bird else (lambda: bird_table(tmp, pcap, args.v4)),
              "nexthop": lambda: nexthop_change(tmp, args.nh_routes)}
    for name, phase in phases.items():
        if phase is None or (args.only and name != args.only):
            continue
        cleanup = netns(NS)
        try:
            phase()
        finally:
            cleanup()
            subprocess.run(["rm", "-rf", "/var/run/dpdk/kgbmirror"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
