"""Shared helpers for the benchmarks: a namespace, pcap files, processes,
rates read from kernel counters. Benchmarks print figures; they assert
nothing about speed."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.integration.harness import kni_gw_bin, sh, wait_for  # noqa: E402


def say(line: str, note: str = "", indent: str = "") -> None:
    """A line of a report within 79 columns (a file, a narrow terminal):
    a long line goes on under `indent`, a row's note on lines of its own."""
    print(textwrap.fill(line, 79, subsequent_indent=indent, break_on_hyphens=False)
          if len(line) > 79 else line, flush=True)
    if note:
        print(textwrap.fill(note, 79, initial_indent=" " * 6, subsequent_indent=" " * 6,
                            break_on_hyphens=False), flush=True)


def write_pcap(path: str, n: int = 1024, size: int = 64, dst_mac: str = "02:00:00:00:00:99",
               src_mac: str = "02:00:00:00:00:01") -> str:
    """n UDP frames of `size` bytes (without FCS), varied ports, to a MAC
    that is nobody's: the kernel drops them at the Ethernet layer."""
    from scapy.all import IP, UDP, Ether, Raw, wrpcap  # noqa: import here: slow

    pkts = []
    for i in range(n):
        p = Ether(dst=dst_mac, src=src_mac) / IP(src="10.0.0.2", dst="10.1.0.2", ttl=64) / \
            UDP(sport=1024 + i % 4096, dport=9)
        pad = size - len(p)
        if pad > 0:
            p = p / Raw(b"\x00" * pad)
        pkts.append(p)
    wrpcap(path, pkts)
    return path


def eal_memory(mb: int, force_no_huge: bool = False):
    """EAL memory options for a benchmark's DPDK processes, and how to say
    it: `mb` MiB of hugepages where that many are free (what a gateway runs
    on, and what DPDK's own figures assume), else ordinary memory
    (--no-huge: every mbuf and table on 4 KiB pages; the TLB then costs
    every process a large share of its cycles, so rates are lower and
    ratios flatter)."""
    free = 0
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["HugePages_Free"]) * int(info["Hugepagesize"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        pass
    if free >= mb and not force_no_huge:
        return ["-m", str(mb)], f"hugepages -m {mb}"
    return ["--no-huge", "-m", str(mb)], (f"--no-huge -m {mb}" + (
        "" if force_no_huge else f" (only {free} MiB of hugepages free: scripts/setup_hugepages.sh 1G)"))


def netns(name: str) -> Callable[[], None]:
    sh("ip", "netns", "del", name, check=False)
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", ns=name)
    return lambda: sh("ip", "netns", "del", name, check=False)


def read_counter(ns: str, ifname: str, what: str = "rx_packets") -> int:
    r = sh("cat", f"/sys/class/net/{ifname}/statistics/{what}", ns=ns, check=False)
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip() else -1


def rate(ns: str, ifname: str, seconds: float, what: str = "rx_packets", warmup: float = 1.0,
         samples: int = 3) -> float:
    """Median per-second rate of a kernel interface counter over `samples`
    windows of `seconds`."""
    time.sleep(warmup)
    rates = []
    for _ in range(samples):
        a, t0 = read_counter(ns, ifname, what), time.monotonic()
        time.sleep(seconds)
        b, t1 = read_counter(ns, ifname, what), time.monotonic()
        rates.append((b - a) / (t1 - t0))
    return statistics.median(rates)


class Proc:
    def __init__(self, argv: List[str], ns: Optional[str] = None):
        cmd = (["ip", "netns", "exec", ns] if ns else []) + argv
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)

    def stop(self, sig=signal.SIGINT, timeout: float = 20) -> str:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            out, _ = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
        return out or ""

    def alive(self) -> bool:
        return self.p.poll() is None


def cpu_seconds(pid: int) -> dict:
    """CPU seconds (user+system) per thread of a process, by thread name."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / tck
    return out


def kni_gw(ns: str, eal: List[str], app: List[str]) -> Proc:
    return Proc([kni_gw_bin()] + eal + app, ns=ns)


def wait_iface(ns: str, ifname: str, timeout: float = 20) -> None:
    wait_for(lambda: sh("ip", "link", "show", ifname, ns=ns, check=False).returncode == 0,
             timeout=timeout, what=f"{ifname} in {ns}")


def fmt_rate(pps: float) -> str:
    return f"{pps / 1e6:.3f} Mpps" if pps >= 1e5 else f"{pps / 1e3:.1f} kpps"


def telemetry(prefix: str, cmd: str, timeout: float = 5.0) -> dict:
    """One command to a running DPDK primary's telemetry socket
    (/var/run/dpdk/PREFIX/dpdk_telemetry.v2), e.g. "/ethdev/stats,1": the
    counters rte_eth_stats_get returns, read from any process, any
    namespace (the socket is a path), at any time, without a secondary
    process (which cannot attach to a --no-huge primary)."""
    import json
    import socket

    path = f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.recv(4096)                       # the greeting: version, pid, max_output_len
        s.send(cmd.encode())
        reply = json.loads(s.recv(1 << 20))
    return reply[cmd.split(",")[0]]


def dpdk_port_rate(prefix: str, port: int, seconds: float, samples: int = 3,
                   warmup: float = 1.0, what: str = "opackets", alive: Callable[[], bool] = lambda: True):
    """Median per-second rate of a DPDK port counter read through telemetry
    over `samples` windows of `seconds`; also the last stats read."""
    time.sleep(warmup)
    rates = []
    b = {}
    for _ in range(samples):
        if not alive():
            break
        a, t0 = telemetry(prefix, f"/ethdev/stats,{port}"), time.monotonic()
        time.sleep(seconds)
        b, t1 = telemetry(prefix, f"/ethdev/stats,{port}"), time.monotonic()
        rates.append((b[what] - a[what]) / (t1 - t0))
    return (statistics.median(rates) if rates else 0.0), b
