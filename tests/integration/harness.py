"""Namespaces, veth pairs and a running kni-gw, for integration tests.

Topology (TESTING.md):

  ns peerN: pN (10.N.0.2/24) -- veth -- gN  [ns gw: kni-gw --vdev net_af_packet,iface=gN]
                                             vEthN 10.N.0.1/24

The gateway runs in its own namespace. The raw veth end gN is kept from the
kernel's IP stack there (strict rp_filter, no ARP replies, no IPv6), as a
NIC bound to DPDK would be: otherwise the kernel would answer a ping both
through vEthN and straight off gN. IPv6 is off on vEthN and pN by default so
that counters move only by the traffic a test sends.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

_seq = itertools.count()


def sh(*args: str, check: bool = True, ns: Optional[str] = None, timeout: float = 30,
       **kw) -> subprocess.CompletedProcess:
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def wait_for(pred: Callable[[], object], timeout: float = 10.0, step: float = 0.02,
             what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def kni_gw_bin() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "kni-gw")
    return cand if os.path.exists(cand) else (shutil.which("kni-gw") or "kni-gw")


class Topology:
    """A gateway namespace and one peer namespace per port."""

    def __init__(self, nports: int = 1, ipv6: bool = False):
        n = next(_seq)
        self.tag = f"kgt{os.getpid() % 100000}x{n}"
        self.gw = f"{self.tag}-gw"
        self.peers: List[str] = []
        self.nports = nports
        self._cleanups: List[Callable[[], None]] = []
        sh("ip", "netns", "add", self.gw)
        self._cleanups.append(lambda: sh("ip", "netns", "del", self.gw, check=False))
        sh("ip", "link", "set", "lo", "up", ns=self.gw)
        for k in range(nports):
            peer = f"{self.tag}-p{k}"
            sh("ip", "netns", "add", peer)
            self._cleanups.append(lambda p=peer: sh("ip", "netns", "del", p, check=False))
            self.peers.append(peer)
            sh("ip", "link", "add", f"g{k}", "netns", self.gw, "type", "veth",
               "peer", "name", f"p{k}", "netns", peer)
            sh("sysctl", "-qw", f"net.ipv4.conf.g{k}.rp_filter=1",
               f"net.ipv4.conf.g{k}.arp_ignore=8", f"net.ipv6.conf.g{k}.disable_ipv6=1", ns=self.gw)
            if not ipv6:
                sh("sysctl", "-qw", f"net.ipv6.conf.p{k}.disable_ipv6=1", ns=peer)
            # a veth leaves TCP/UDP checksums to be filled in (CHECKSUM_PARTIAL);
            # AF_PACKET on gK would then hand DPDK half-done checksums
            sh("ethtool", "-K", f"p{k}", "tx", "off", ns=peer)
            sh("ip", "link", "set", "lo", "up", ns=peer)
            sh("ip", "link", "set", f"g{k}", "up", ns=self.gw)
            sh("ip", "addr", "add", f"10.{k}.0.2/24", "dev", f"p{k}", ns=peer)
            sh("ip", "link", "set", f"p{k}", "up", ns=peer)
            sh("ip", "route", "add", "default", "via", f"10.{k}.0.1", ns=peer)
        if not ipv6:
            # vEthN does not exist yet: new interfaces inherit "default"
            sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", ns=self.gw)

    def vdevs(self) -> List[str]:
        out = []
        for k in range(self.nports):
            out += ["--vdev", f"net_af_packet{k},iface=g{k}"]
        return out

    def close(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()


class Gateway:
    """kni-gw running in the topology's gateway namespace."""

    def __init__(self, topo: Topology, args: List[str], stats_json: bool = True,
                 eal: Optional[List[str]] = None, no_huge: bool = True, stdout=None):
        self.topo = topo
        self.prefix = f"{topo.tag}"
        eal = eal if eal is not None else (
            ["-l", "0-1", "--no-pci", "--file-prefix", self.prefix]
            + (["--no-huge", "-m", "256"] if no_huge else [])
            + topo.vdevs())
        self.argv = [kni_gw_bin()] + eal + args + (["--stats-format", "json"] if stats_json else [])
        # stdout: a pipe read into self.out, or a file given by the caller
        self.proc = subprocess.Popen(["ip", "netns", "exec", topo.gw] + self.argv,
                                     stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: List[str] = []
        self.err: List[str] = []
        self._eof = 0
        self._cv = threading.Condition()
        streams = [(self.proc.stderr, self.err)] + ([(self.proc.stdout, self.out)] if stdout is None else [])
        self._streams = len(streams)
        for stream, sink in streams:
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream, sink) -> None:
        for line in stream:
            with self._cv:
                sink.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._eof += 1
            self._cv.notify_all()

    def wait_line(self, sink: List[str], pred: Callable[[str], bool], start: int = 0,
                  timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in sink[start:]:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof == self._streams:
                    raise AssertionError(
                        "kni-gw: expected line not seen; stderr:\n" + "\n".join(self.err[-30:]))
                self._cv.wait(min(left, 0.1))

    def wait_ready(self) -> "Gateway":
        self.wait_line(self.err, lambda s: "ready (pid" in s)
        return self

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stats(self) -> Dict:
        """SIGUSR1, then the JSON line it prints."""
        with self._cv:
            start = len(self.out)
        self.send(signal.SIGUSR1)
        line = self.wait_line(self.out, lambda s: s.startswith("{"), start=start)
        return json.loads(line)

    def port(self, n: int = 0) -> Dict:
        return next(p for p in self.stats()["ports"] if p["port"] == n)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.send(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kni-gw did not stop within %ss" % timeout)

    def kill(self) -> None:
        """End it whatever state it is in: SIGTERM first, so that it releases
        its hugepages and EAL files; SIGKILL only if that does not work."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def veth_up(topo: Topology, k: int = 0, addr: Optional[str] = None) -> None:
    """What an operator does: address on vEthK, then up."""
    sh("ip", "addr", "add", addr or f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=topo.gw)
    sh("ip", "link", "set", f"vEth{k}", "up", ns=topo.gw)


def link_attr(ns: str, ifname: str) -> Dict:
    r = sh("ip", "-j", "-d", "link", "show", ifname, ns=ns, check=False)
    if r.returncode != 0:
        return {}
    return json.loads(r.stdout)[0]


def ping(ns: str, dst: str, count: int = 1, interval: float = 0.01, wait: float = 1.0,
         size: Optional[int] = None, extra: Optional[List[str]] = None,
         quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)] + (["-q"] if quiet else [])
    if size is not None:
        cmd += ["-s", str(size)]
    cmd += (extra or []) + [dst]
    return sh(*cmd, ns=ns, check=False, timeout=30 + count * (interval + 0.05))
