#!/usr/bin/env python3
"""Fast-path forwarding rate (issue: fast path). Run as root:

  sudo .venv/bin/python bench/bench_fastpath.py [--seconds 2] [--skip-100k]

Harness: port 0 = net_pcap replaying 64-byte UDP frames from memory
(infinite_rx), port 1 = net_null with no-rx=1 (a sink). In one run, side by
side on the same vdevs and cores:

  dpdk-testpmd io and mac forwarding (one forwarding lcore)
  kni-gw "(0,0,1),(1,1,0)": rx of port 0 and tx of port 1 on lcore 0, i.e.
         the whole forwarding path on one lcore, as testpmd's
  kni-gw "(0,0,1),(1,0,1)": rx on lcore 0, tx on lcore 1 (fifo between)
  kni-gw with 10k and 100k IPv4 routes, frames spread over them
  kni-gw with 1% of the frames punted to the kernel

Rates are medians of three windows, read from testpmd's Tx-pps and from
kni-gw's port 1 tx counter. Cycles per packet = core clock / rate of the
saturated lcore (/proc/cpuinfo MHz). Also: the time the mirror takes to load
100k routes added with `ip -batch` (target <= 5 s) while traffic runs, and
the tables' memory.
"""
import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Proc, netns, sh, wait_for  # noqa: E402
from tests.integration.harness import Gateway  # noqa: E402

NS = "kgbench-fp"
PCAP_MAC = "02:70:63:61:70:00"      # net_pcap0's MAC ("pcap", index 0)
NEIGH_MAC = "02:00:00:00:0c:02"


def cpu_mhz() -> float:
    with open("/proc/cpuinfo") as f:
        m = re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read())
    return float(m.group(1)) if m else 0.0


def write_frames(path, dsts, punt_every=0, size=60):
    from scapy.all import IP, UDP, Ether, Raw, wrpcap
    pkts = []
    for i, dst in enumerate(dsts):
        d = "10.0.0.1" if punt_every and i % punt_every == punt_every - 1 else dst
        p = Ether(dst=PCAP_MAC, src="02:00:00:00:0b:00") / IP(src="10.0.0.2", dst=d, ttl=64) / \
            UDP(sport=1024 + i % 4096, dport=9)
        p = p / Raw(b"\x00" * max(0, size - len(p)))
        pkts.append(p)
    wrpcap(path, pkts)


def testpmd_rate(pcap, mode, seconds):
    p = Proc(["dpdk-testpmd", "-l", "0-1", "--no-huge", "-m", "1024", "--no-pci",
              "--file-prefix", "kgbench-tp", "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
              "--vdev", "net_null0,no-rx=1", "--", f"--forward-mode={mode}", "--auto-start",
              "--total-num-mbufs=16384", "--stats-period", "1"], ns=NS)
    time.sleep(2 + 3 * seconds)
    out = p.stop()
    shutil.rmtree("/var/run/dpdk/kgbench-tp", ignore_errors=True)   # testpmd leaves its EAL run dir
    # the last lines of "Tx-pps" for port 1
    blocks = re.findall(r"NIC statistics for port 1.*?Tx-pps:\s+(\d+)", out, re.S)
    vals = [int(v) for v in blocks[-3:]]
    return statistics.median(vals) if vals else 0.0


class KniGw:
    """kni-gw in the bench namespace (the test harness's process wrapper)."""

    def __init__(self, pcap, config):
        class Where:
            tag, gw = "kgbench", NS
        self.g = Gateway(Where(), ["-p", "0x3", "--config", config],
                         eal=["-l", "0-1", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", "kgbench",
                              "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
                              "--vdev", "net_null0,no-rx=1"]).wait_ready()
        for k in (0, 1):
            sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=NS)
            sh("ip", "link", "set", f"vEth{k}", "up", ns=NS)
        sh("ip", "neigh", "replace", "10.1.0.2", "lladdr", NEIGH_MAC, "nud", "permanent",
           "dev", "vEth1", ns=NS)
        sh("ip", "route", "replace", "10.2.0.0/16", "via", "10.1.0.2", ns=NS)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS)

    def stats(self):
        return self.g.stats()

    def rate(self, seconds, samples=3):
        rates = []
        time.sleep(1.0)
        for _ in range(samples):
            a, t0 = self.stats(), time.monotonic()
            time.sleep(seconds)
            b, t1 = self.stats(), time.monotonic()
            rates.append((b["ports"][1]["tx_packets"] - a["ports"][1]["tx_packets"]) / (t1 - t0))
        return statistics.median(rates), b

    def stop(self):
        self.g.stop()


def load_routes(n, tmp):
    """n /24 routes 20.0.0.0/24 ... via 10.1.0.2, added with ip -batch."""
    path = os.path.join(tmp, f"routes{n}.batch")
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"route add {20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 via 10.1.0.2\n")
    return path


def timed_route_load(g, batch, n):
    """ip -batch the routes; seconds until ip returns and until all n are in
    the fast path, both from ip's start."""
    t0 = time.monotonic()
    sh("ip", "-batch", batch, ns=NS, timeout=300)
    t_ip = time.monotonic() - t0
    wait_for(lambda: g.stats()["fib"]["fast4"] >= n + 2, timeout=120, step=0.05,
             what=f"{n} routes mirrored")
    return t_ip, time.monotonic() - t0


def routes_load_while_forwarding(n, tmp, base):
    """n routes loaded with ip -batch while the fast path forwards traffic to
    an existing route at full rate: the mirror's load time."""
    batch = load_routes(n, tmp)
    g = KniGw(base, "(0,0,1),(1,1,0)")
    try:
        wait_for(lambda: g.stats()["fib"]["fast4"] >= 2, what="routes mirrored")
        a, t0 = g.stats(), time.monotonic()
        t_ip, t_all = timed_route_load(g, batch, n)
        b = g.stats()
        fwd = (b["ports"][1]["tx_packets"] - a["ports"][1]["tx_packets"]) / (time.monotonic() - t0)
        print(f"  {n // 1000}k routes while forwarding in C: ip -batch {t_ip:.2f} s, mirrored in "
              f"{t_all:.2f} s from its start; meanwhile {fwd / 1e6:.2f} Mpps forwarded")
    finally:
        g.stop()


def routes_run(n, tmp, io, args):
    """n routes loaded with ip -batch while traffic to them runs (punted to
    the kernel until its route is in); then the rate."""
    dsts = [f"{20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.{1 + i % 250}"
            for i in (j * (n // 1024) for j in range(1024))]
    pcap = os.path.join(tmp, f"r{n}.pcap")
    write_frames(pcap, dsts)
    batch = load_routes(n, tmp)
    g = KniGw(pcap, "(0,0,1),(1,1,0)")
    try:
        wait_for(lambda: g.stats()["fib"]["fast4"] >= 2, what="routes mirrored")
        # traffic is running (punted: no route yet) while the routes load
        t_ip, t_all = timed_route_load(g, batch, n)
        r, snap = g.rate(args.seconds)
        print(f"  kni-gw one lcore, {n // 1000}k routes       {r / 1e6:7.2f} Mpps   {r / io:.2f}x testpmd io; "
              f"ip -batch {t_ip:.2f} s, mirrored in {t_all:.2f} s from its start; "
              f"tables {snap['fib']['memory'] / 2**20:.0f} MiB")
    finally:
        g.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--skip-100k", action="store_true")
    ap.add_argument("--routes-only", action="store_true", help="only the 10k/100k route runs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    mhz = cpu_mhz()
    cleanup = netns(NS)
    tmp = tempfile.mkdtemp(prefix="kgbench")
    try:
        base = os.path.join(tmp, "fwd.pcap")
        write_frames(base, [f"10.2.{(i >> 8) & 255}.{i & 255}" for i in range(1024)])
        punt = os.path.join(tmp, "punt1.pcap")
        write_frames(punt, [f"10.2.{(i >> 8) & 255}.{i & 255}" for i in range(1000)], punt_every=100)

        print(f"== fast path, 64-byte frames, pcap(infinite_rx) -> net_null(no-rx); core {mhz:.0f} MHz")
        tp_io = testpmd_rate(base, "io", args.seconds)
        if args.routes_only:
            io = tp_io
            print(f"  dpdk-testpmd io                  {tp_io / 1e6:7.2f} Mpps")
        for n in ([] if not args.routes_only else ([10_000] if args.skip_100k else [10_000, 100_000])):
            routes_load_while_forwarding(n, tmp, base)
            routes_run(n, tmp, io, args)
        if args.routes_only:
            return 0
        tp_mac = testpmd_rate(base, "mac", args.seconds)
        results = {}
        for label, cfg in (("one lcore (0,0,1),(1,1,0)", "(0,0,1),(1,1,0)"),
                           ("rx/tx split (0,0,1),(1,0,1)", "(0,0,1),(1,0,1)")):
            g = KniGw(base, cfg)
            try:
                wait_for(lambda: g.stats()["fib"]["fast4"] >= 2, what="routes mirrored")
                results[label], snap = g.rate(args.seconds)
            finally:
                g.stop()
        tp_io2 = testpmd_rate(base, "io", args.seconds)
        io = (tp_io + tp_io2) / 2
        print(f"  dpdk-testpmd io                  {tp_io / 1e6:7.2f} / {tp_io2 / 1e6:.2f} Mpps (before/after)")
        print(f"  dpdk-testpmd mac                 {tp_mac / 1e6:7.2f} Mpps   {tp_mac / io:.2f}x io")
        for label, r in results.items():
            cyc = mhz * 1e6 / r if r else 0
            print(f"  kni-gw {label:27s} {r / 1e6:7.2f} Mpps   {r / io:.2f}x testpmd io, "
                  f"{cyc:.0f} cycles/packet")

        # half of the frames a flood at the gateway's own address (policed)
        flood = os.path.join(tmp, "flood50.pcap")
        write_frames(flood, [f"10.2.{(i >> 8) & 255}.{i & 255}" for i in range(1000)], punt_every=2)
        g = KniGw(flood, "(0,0,1),(1,1,0)")
        try:
            wait_for(lambda: g.stats()["fib"]["fast4"] >= 2, what="routes mirrored")
            a, t0 = g.stats()["ports"][0], time.monotonic()
            time.sleep(1 + args.seconds)
            b, dt = g.stats()["ports"][0], time.monotonic() - t0
            handled = (b["rx_packets"] - a["rx_packets"]) / dt
            fwd = (b["forwarded"] - a["forwarded"]) / dt
            pol = (b["drops"]["policed"] - a["drops"]["policed"]) / dt
            one = results["one lcore (0,0,1),(1,1,0)"]
            print(f"  kni-gw one lcore, 50% flood to its own address (policed): {handled / 1e6:.2f} Mpps handled "
                  f"({handled / one:.2f}x unflooded), {fwd / 1e6:.2f} Mpps forwarded, {pol / 1e6:.2f} Mpps policed")
        finally:
            g.stop()

        # 1% punted
        g = KniGw(punt, "(0,0,1),(1,1,0)")
        try:
            wait_for(lambda: g.stats()["fib"]["fast4"] >= 2, what="routes mirrored")
            r, snap = g.rate(args.seconds)
            p0 = snap["ports"][0]
            print(f"  kni-gw one lcore, 1% punted      {r / 1e6:7.2f} Mpps   {r / io:.2f}x testpmd io "
                  f"(punted so far {p0['to_kernel']}, kernel_dropped {p0['kernel_dropped']}, "
                  f"to_kernel_full {p0['drops']['to_kernel_full']})")
        finally:
            g.stop()

        for n in ([10_000] if args.skip_100k else [10_000, 100_000]):
            routes_load_while_forwarding(n, tmp, base)
            routes_run(n, tmp, io, args)
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
