"""Hostile frames through a running kni-gw: nothing crashes, every frame is
counted once, every mbuf comes back, and the gateway still forwards and
answers afterwards. Ports are net_af_xdp (see test_differential: af_packet
would hold fragments back)."""
import contextlib
import os
import random
import sys
import tempfile
import time

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPOption, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, Raw)

from .harness import ping, sh, wait_for
from .pktio import write_frames
from .test_differential import MAC0, PKTIO, SRC_MAC, configure_router, netns, xdp_gateway

RX_DROPS = ("to_kernel_full", "fwd_fifo_full", "port_down_rx", "runt", "bad_header", "bad_checksum",
            "policed")


def hostile(n_min=10_000, seed=5):
    rnd = random.Random(seed)
    eth = Ether(src=SRC_MAC, dst=MAC0)
    bases = [
        eth / IP(src="10.0.0.2", dst="10.1.0.2") / UDP(sport=1, dport=2) / Raw(b"u" * 40),
        eth / IP(src="10.0.0.2", dst="10.2.3.4") / TCP(dport=80, flags="S", options=[("MSS", 1460)]),
        eth / IP(src="10.0.0.2", dst="10.1.0.2") / ICMP() / Raw(b"i" * 56),
        eth / IP(src="10.0.0.2", dst="10.0.0.1", options=[IPOption(b"\x07\x07\x04" + b"\x00" * 5)]) / UDP(),
        eth / IPv6(src="2001:db8:0::2", dst="2001:db8:1::2") / IPv6ExtHdrHopByHop() /
        IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(m=1) / UDP() / Raw(b"6" * 30),
        eth / IPv6(src="2001:db8:0::2", dst="2001:db8:2::9") / IPv6ExtHdrDestOpt() / TCP(flags="S"),
        eth / Dot1Q(vlan=10) / IP(src="10.0.0.2", dst="10.1.0.2") / UDP(),
        eth / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IP(src="10.0.0.2", dst="10.1.0.2") / UDP(),
        Ether(src=SRC_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.1"),
        Ether(src=SRC_MAC, dst=MAC0, type=0x88CC) / Raw(b"lldp" * 10),
    ]
    out = []
    # truncated at every byte up to past the L4 header
    for b in bases:
        raw = bytes(b)
        out += [raw[:k] for k in range(14, min(len(raw), 90))]
    while len(out) < n_min:
        ip = IP(src=rnd.choice(["10.0.0.2", "224.0.0.9", "255.255.255.255", "0.0.0.0", "127.0.0.1",
                                "10.0.0.1", "10.0.0.255"]),
                dst=rnd.choice(["10.1.0.2", "10.2.0.9", "10.0.0.1", "224.0.0.1", "10.1.0.255",
                                "255.255.255.255", "192.0.2.1", "0.0.0.0"]),
                ttl=rnd.choice([0, 1, 2, 64]), id=rnd.randrange(65536),
                flags=rnd.choice([0, 1, 2]), frag=rnd.choice([0, 0, 0, 1, 100, 8191]))
        size = rnd.choice([0, 1, 20, 200, 1000, 1400])   # <= 1514-byte frames: the veth MTU
        f = bytearray(bytes(eth / ip / UDP(sport=rnd.randrange(65536), dport=53) / Raw(b"\xaa" * size)))
        m = rnd.random()
        if m < 0.15:
            f[14] = 0x40 | rnd.randrange(16)                      # any IHL
        elif m < 0.3:
            f[16:18] = rnd.randrange(65536).to_bytes(2, "big")    # any total length
        elif m < 0.45:
            f[24] ^= 1 + rnd.randrange(255)                       # bad checksum
        elif m < 0.55:
            f[14] = rnd.randrange(256)                            # any version/IHL
        elif m < 0.65:
            del f[rnd.randrange(14, len(f)):]                     # cut anywhere
        elif m < 0.7:
            f[0] |= 1                                             # multicast destination MAC
        elif m < 0.75:
            f[6] |= 1                                             # multicast source MAC
        elif m < 0.8:
            f += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))  # trailing junk
        out.append(bytes(f))
    return out


def quiet_then_flush(g, gw):
    """net_af_xdp reclaims the mbufs of sent frames on its next tx burst
    only: wait until the kernel has stopped sending through port 0 (ARP,
    rate-limited ICMP errors), then have it send one frame, so that exactly
    that frame's mbuf is pending at each sample."""
    last = [None, time.monotonic()]

    def quiet():
        n = g.stats()["ports"][0]["hw"]["exc_ipackets"]
        if n != last[0]:
            last[0], last[1] = n, time.monotonic()
        return time.monotonic() - last[1] > 1.5
    wait_for(quiet, timeout=60, step=0.1, what="the kernel quiet on vEth0")
    sh("ping", "-c", "1", "-W", "0.2", "-I", "vEth0", "10.0.0.2", ns=gw, check=False)
    return wait_for(lambda: (lambda s: s if s["ports"][0]["hw"]["to_kernel_fifo_used"] == 0
                             and s["ports"][0]["hw"]["tx_fifo_used"] == 0 else None)(g.stats()),
                    what="fifos drained")


def still_works(g, gin, gout):
    """The kernel answers through the ports and the fast path forwards."""
    sh("ip", "addr", "add", "10.0.0.2/24", "dev", "in0", ns=gin)
    sh("ip", "addr", "add", "10.1.0.2/24", "dev", "out1", ns=gout)
    sh("ip", "route", "add", "default", "via", "10.0.0.1", ns=gin)
    sh("ip", "route", "add", "default", "via", "10.1.0.1", ns=gout)
    for ns, ifname, mac in ((gin, "in0", SRC_MAC), (gout, "out1", "02:00:00:00:0c:02")):
        sh("ip", "link", "set", ifname, "address", mac, ns=ns)
    assert " 0% packet loss" in ping(gin, "10.0.0.1", count=5, wait=2).stdout
    before = g.stats()["ports"][0]["forwarded"]
    assert " 0% packet loss" in ping(gin, "10.1.0.2", count=20, wait=2).stdout
    assert g.stats()["ports"][0]["forwarded"] - before >= 20


@contextlib.contextmanager
def xdp_router(gateways, prefix, huge=False, eal_extra=()):
    """kni-gw on two net_af_xdp ports, set up as the differential test's
    router, its routes in the fast path: yields (g, gw, gin, gout, tmp)."""
    tag = f"{prefix}{os.getpid() % 100000}"
    cleanups = []
    try:
        gw, gin, gout = f"{tag}-gw", f"{tag}-in", f"{tag}-out"
        for ns in (gw, gin, gout):
            netns(ns, cleanups)
        g = xdp_gateway(gateways, tag, gw, gin, gout, huge=huge, eal_extra=eal_extra)
        configure_router(gw, "vEth0", "vEth1")
        wait_for(lambda: g.stats()["fib"]["fast4"] >= 4, what="routes in the fast path")
        yield g, gw, gin, gout, tempfile.mkdtemp(prefix=prefix)
    finally:
        while cleanups:
            cleanups.pop()()


def test_hostile_frames_leave_it_forwarding_and_counting(gateways):
    with xdp_router(gateways, "kgh") as (g, gw, gin, gout, tmp):
        base = quiet_then_flush(g, gw)
        frames = hostile()
        assert len(frames) >= 10_000
        path = os.path.join(tmp, "hostile.bin")
        write_frames(path, frames)
        sh(sys.executable, PKTIO, "send", "in0", path, "25", ns=gin, timeout=300)

        after = quiet_then_flush(g, gw)
        p0, b0 = after["ports"][0], base["ports"][0]
        d = {k: p0[k] - b0[k] for k in ("rx_packets", "to_kernel", "forwarded", "kernel_tx")}
        drops = {r: p0["drops"][r] - b0["drops"][r] for r in p0["drops"]}
        rx_dropped = sum(drops[r] for r in RX_DROPS)
        # what the sender sent reached DPDK (AF_XDP), and every frame is counted once
        assert d["rx_packets"] == len(frames), (d, len(frames))
        assert d["rx_packets"] == d["to_kernel"] + d["forwarded"] + rx_dropped, (d, drops)
        assert d["to_kernel"] == d["kernel_tx"] + drops["kernel_write"]
        assert drops["runt"] > 500 and drops["bad_header"] > 500 and drops["bad_checksum"] > 500, drops
        assert after["mbufs_in_use"] == base["mbufs_in_use"]
        assert g.proc.poll() is None
        # and it still works: the kernel answers, the fast path forwards
        still_works(g, gin, gout)
