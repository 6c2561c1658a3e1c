#!/usr/bin/env python3
"""Exception-path benchmarks (issue: core). Run as root:

  sudo .venv/bin/python bench/bench_exception_path.py [--seconds 2]

1. Frames/s through vEth0: a net_pcap port replaying a pcap from memory
   (infinite_rx) into kni-gw, every frame punted to vEth0; side by side,
   dpdk-testpmd io-forwarding the same pcap vdev to a net_tap port, on the
   same lcores. Both are measured the same way: the kernel's rx_packets
   counter of the TAP interface. Also kni-gw with --busy-poll, with rx and
   vEth I/O on one lcore, and on DPDK's ring and stack mempool drivers
   instead of kni-gw's own (kg_hot, csrc/control/pool.c).
2. Idle CPU of the polling threads, with back-off and with --busy-poll.
3. Ping RTT through vEth0 (af_packet port) against a plain veth pair, with
   and without back-off.
"""
import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Proc, cpu_seconds, eal_memory, fmt_rate, kni_gw, netns, rate, sh,  # noqa: E402
                    wait_for, wait_iface, write_pcap)
from kni_gw.instance import remove_eal_leftovers  # noqa: E402

NS = "kgbench-gw"
# section 1's processes: hugepages where 512 MiB are free, as a gateway runs
MEM_OPTS, MEM_SAID = eal_memory(512, force_no_huge="--no-huge" in sys.argv)
PEER = "kgbench-peer"


def veth_up(ifname: str) -> None:
    sh("ip", "link", "set", ifname, "up", ns=NS)


def run_kni_gw_pcap(pcap: str, seconds: float, extra=(), config="(0,0,1)") -> float:
    p = kni_gw(NS, ["-l", "0-1"] + MEM_OPTS + ["--no-pci", "--file-prefix", "kgbench",
                                              "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"],
               ["-p", "0x1", "--config", config] + list(extra))
    try:
        wait_iface(NS, "vEth0")
        time.sleep(0.5)
        veth_up("vEth0")
        return rate(NS, "vEth0", seconds)
    finally:
        out = p.stop()
        if "stopped: ports closed" not in out:
            print(out[-2000:])


def run_testpmd_pcap(pcap: str, seconds: float) -> float:
    p = Proc(["dpdk-testpmd", "-l", "0-1"] + MEM_OPTS + ["--no-pci",
              "--file-prefix", "kgbench-tp", "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
              "--vdev", "net_tap0,iface=tpTap0", "--", "--forward-mode=io", "--auto-start",
              "--total-num-mbufs=8192", "--stats-period", "5"], ns=NS)
    try:
        wait_iface(NS, "tpTap0")
        veth_up("tpTap0")
        return rate(NS, "tpTap0", seconds)
    finally:
        p.stop()
        remove_eal_leftovers("kgbench-tp")    # testpmd leaves its hugepage files and EAL run dir


def idle_cpu(extra=(), seconds: float = 5.0) -> dict:
    p = kni_gw(NS, ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix", "kgbench",
                    "--vdev", "net_af_packet0,iface=g0"], ["-p", "0x1", "--config", "(0,0,1)"] + list(extra))
    try:
        wait_iface(NS, "vEth0")
        veth_up("vEth0")
        time.sleep(1.0)
        a = cpu_seconds(p.p.pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        b = cpu_seconds(p.p.pid)
        dt = time.monotonic() - t0
        return {k: 100.0 * (b[k] - a.get(k, 0.0)) / dt for k in b}
    finally:
        p.stop()


def ping_rtt(dst: str, count: int = 300) -> float:
    r = sh("ping", "-n", "-q", "-c", str(count), "-i", "0.005", "-W", "1", dst, ns=PEER, check=False)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    loss = re.search(r" ([\d.]+)% packet loss", r.stdout)
    if not m or not loss or float(loss.group(1)) != 0:
        raise RuntimeError(f"ping failed: {r.stdout} {r.stderr}")
    return float(m.group(1)) * 1000.0


def rtt_kni_gw(extra=()) -> float:
    p = kni_gw(NS, ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix", "kgbench",
                    "--vdev", "net_af_packet0,iface=g0"], ["-p", "0x1", "--config", "(0,0,1)"] + list(extra))
    try:
        wait_iface(NS, "vEth0")
        sh("ip", "addr", "add", "10.9.0.1/24", "dev", "vEth0", ns=NS)
        veth_up("vEth0")
        wait_for(lambda: sh("ping", "-c", "1", "-W", "1", "10.9.0.1", ns=PEER, check=False).returncode == 0,
                 timeout=10, what="ping through vEth0")
        return ping_rtt("10.9.0.1")
    finally:
        p.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one rate sample")
    ap.add_argument("--no-huge", action="store_true", help="section 1 on ordinary memory instead of hugepages")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    cleanups = [netns(NS), netns(PEER)]
    try:
        tmp = tempfile.mkdtemp(prefix="kgbench")
        pcap = write_pcap(os.path.join(tmp, "udp64.pcap"), n=1024, size=60)

        print("== 1. frames/s into vEth0 (64-byte frames, pcap infinite_rx -> TAP), same run")
        print(f"   {MEM_SAID}")
        # the path's capacity is measured with policing off: with it (the
        # default), these frames (to a MAC that is nobody's) are the
        # "other" class and the policer, not the path, sets the rate
        off = ["--police", "off"]
        tp = run_testpmd_pcap(pcap, args.seconds)
        kg = run_kni_gw_pcap(pcap, args.seconds, off)
        kgb = run_kni_gw_pcap(pcap, args.seconds, off + ["--busy-poll"])
        kg1 = run_kni_gw_pcap(pcap, args.seconds, off, config="(0,0,1,0)")
        # DPDK's mempool drivers instead of kg_hot (README): its ring, first
        # in first out over the whole pool, as kni-gw was before kg_hot;
        # its stack, last in first out (bench_fastpath.py shows what that
        # costs two rx lcores)
        kgr = run_kni_gw_pcap(pcap, args.seconds, off + ["--mbuf-pool-ops-name", "ring_mp_mc"])
        kgs = run_kni_gw_pcap(pcap, args.seconds, off + ["--mbuf-pool-ops-name", "stack"])
        kgp = run_kni_gw_pcap(pcap, args.seconds)
        tp2 = run_testpmd_pcap(pcap, args.seconds)
        tpm = (tp + tp2) / 2
        print(f"  dpdk-testpmd io (pcap -> net_tap)   {fmt_rate(tp)} / {fmt_rate(tp2)} (before/after)")
        print(f"  kni-gw --police off (back-off)      {fmt_rate(kg)}   ratio {kg / tpm:.2f}x testpmd")
        print(f"  kni-gw --police off --busy-poll     {fmt_rate(kgb)}   ratio {kgb / tpm:.2f}x testpmd")
        print("  kni-gw --police off (0,0,1,0): rx and vEth I/O on one lcore, as testpmd")
        print(f"                                      {fmt_rate(kg1)}   ratio {kg1 / tpm:.2f}x testpmd")
        print("  kni-gw --police off, --mbuf-pool-ops-name ring_mp_mc (DPDK's ring)")
        print(f"                                      {fmt_rate(kgr)}   ratio {kgr / tpm:.2f}x testpmd")
        print("  kni-gw --police off, --mbuf-pool-ops-name stack (mbufs reused LIFO)")
        print(f"                                      {fmt_rate(kgs)}   ratio {kgs / tpm:.2f}x testpmd")
        print(f"  back-off vs busy-poll throughput    {kg / kgb:.3f}")
        print(f"  kni-gw with its default policing    {fmt_rate(kgp)}   (the limit of class 'other')")

        # a wire for the idle and RTT measurements
        sh("ip", "link", "add", "g0", "netns", NS, "type", "veth", "peer", "name", "p0", "netns", PEER)
        sh("sysctl", "-qw", "net.ipv4.conf.g0.rp_filter=1", "net.ipv4.conf.g0.arp_ignore=8",
           "net.ipv6.conf.g0.disable_ipv6=1", ns=NS)
        sh("ip", "link", "set", "g0", "up", ns=NS)
        sh("ip", "addr", "add", "10.9.0.2/24", "dev", "p0", ns=PEER)
        sh("ip", "link", "set", "p0", "up", ns=PEER)

        print("== 2. idle CPU per thread (% of one core, 5 s, vEth0 up, no traffic)")
        for label, extra in (("back-off (default)", []), ("--busy-poll", ["--busy-poll"])):
            cpu = idle_cpu(extra)
            busy = {k: v for k, v in cpu.items() if v >= 0.1}
            shown = ", ".join(f"{k.split('/')[0]} {v:.1f}%" for k, v in sorted(busy.items()))
            print(f"  {label:20s} {shown}")

        print("== 3. ping RTT, mean of 300 pings at 5 ms intervals")
        rb = rtt_kni_gw()
        rbusy = rtt_kni_gw(["--busy-poll"])
        # plain veth: the same peer pings an address on the gateway's veth end
        sh("sysctl", "-qw", "net.ipv4.conf.g0.rp_filter=0", "net.ipv4.conf.g0.arp_ignore=0", ns=NS)
        sh("ip", "addr", "add", "10.9.0.1/24", "dev", "g0", ns=NS)
        rv = ping_rtt("10.9.0.1")
        print(f"  plain veth pair (kernel only)        {rv:7.1f} us")
        print(f"  kni-gw, back-off (default)           {rb:7.1f} us  (+{rb - rv:.1f} us)")
        print(f"  kni-gw --busy-poll                   {rbusy:7.1f} us  (+{rbusy - rv:.1f} us)")
        return 0
    finally:
        for c in cleanups:
            c()


if __name__ == "__main__":
    sys.exit(main())
