"""Differential test: the same frames through kni-gw (fast path + its kernel)
and through a Linux router namespace configured the same way; what leaves on
the egress side must be the same, byte for byte.

  in0 --veth-- [ kni-gw: port 0 / vEth0 ... vEth1 / port 1 ] --veth-- out1
  in0 --veth-- [ ref:    r0                 ...        r1   ] --veth-- out1

Both routers have the same MACs, addresses, routes and (static) neighbours,
so nothing in their output depends on which one made it.

kni-gw's ports are net_af_xdp here, not net_af_packet: the af_packet PMD joins
a PACKET_FANOUT group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel holds IP
fragments back for reassembly and a lone fragment never reaches DPDK.
"""
import collections
import os
import random
import subprocess
import sys
import tempfile

from scapy.all import (ICMP, IP, TCP, UDP, Ether, IPOption_NOP, IPOption_RR, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw)

from .harness import sh, wait_for
from .pktio import read_frames, write_frames

PKTIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pktio.py")
MAC0, MAC1 = "02:00:00:00:0a:00", "02:00:00:00:0a:01"     # the router's two ports
SRC_MAC = "02:00:00:00:0b:00"                             # the sending host
# 10.1.0.4 and 2001:db8:1::4 share a MAC with 10.1.0.2 / 2001:db8:1::2: the
# multipath routes through both give the same bytes whichever next hop a
# flow hashes to (kni-gw's flow hash is not the kernel's)
NEIGH = {"10.1.0.2": "02:00:00:00:0c:02", "10.1.0.3": "02:00:00:00:0c:03",
         "10.1.0.4": "02:00:00:00:0c:02", "10.0.0.2": SRC_MAC}
NEIGH6 = {"2001:db8:1::2": "02:00:00:00:0c:62", "2001:db8:1::4": "02:00:00:00:0c:62",
          "2001:db8:0::2": SRC_MAC}
ROUTES = [("10.2.0.0/16", "via 10.1.0.2"), ("10.3.0.0/16", "via 10.1.0.3"), ("10.4.0.0/24", "via 10.1.0.2")]
ROUTES6 = [("2001:db8:2::/48", "via 2001:db8:1::2")]
# the differential test's own: a default route and weighted multipath routes
# (not the hostile test's: with a default route the kernel keeps answering
# hostile sources with rate-limited ICMP errors long after the burst)
EXTRA = [("default", "via 10.1.0.3"), ("10.5.0.0/16", "nexthop via 10.1.0.2 weight 2 nexthop via 10.1.0.4 weight 1")]
EXTRA6 = [("default", "via 2001:db8:1::2"), ("2001:db8:3::/48", "nexthop via 2001:db8:1::2 nexthop via 2001:db8:1::4")]


def configure_router(ns, if0, if1, extra=False):
    """Addresses, routes, neighbours: the same in the reference and in kni-gw."""
    for k, ifname in ((0, if0), (1, if1)):
        sh("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=0", ns=ns)
        sh("ip", "link", "set", ifname, "address", (MAC0, MAC1)[k], ns=ns)
        sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", ifname, ns=ns)
        sh("ip", "-6", "addr", "add", f"2001:db8:{k}::1/64", "dev", ifname, "nodad", ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)
    for ip, mac in NEIGH.items():
        dev = if0 if ip.startswith("10.0.") else if1
        sh("ip", "neigh", "replace", ip, "lladdr", mac, "nud", "permanent", "dev", dev, ns=ns)
    for ip, mac in NEIGH6.items():
        dev = if0 if ip.startswith("2001:db8:0::") else if1
        sh("ip", "-6", "neigh", "replace", ip, "lladdr", mac, "nud", "permanent", "dev", dev, ns=ns)
    for net, via in ROUTES + (EXTRA if extra else []):
        sh("ip", "route", "add", net, *via.split(), ns=ns)
    for net, via in ROUTES6 + (EXTRA6 if extra else []):
        sh("ip", "-6", "route", "add", net, *via.split(), ns=ns)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", ns=ns)


def frames(n=1200, seed=7):
    """Varied frames: addresses, TTLs, options, sizes, fragments, bad
    checksums and lengths, padding, IPv6 with extension headers."""
    rnd = random.Random(seed)
    out = []
    dsts = ["10.1.0.2", "10.1.0.3", "10.2.7.9", "10.3.200.1", "10.4.0.77", "192.0.2.1",
            "10.1.0.1", "10.1.0.255", "10.0.0.2", "10.5.3.3", "10.5.200.7", "198.51.100.7"]
    srcs = ["10.0.0.2"] * 12 + ["127.0.0.1", "10.1.0.1", "0.0.0.0", "224.0.0.1", "10.0.0.1"]
    for i in range(n):
        eth = Ether(src=SRC_MAC, dst=MAC0)
        if rnd.random() < 0.03:
            eth = Ether(src=SRC_MAC, dst=rnd.choice(["ff:ff:ff:ff:ff:ff", "02:00:00:00:99:99"]))
        if rnd.random() < 0.25:
            out.append(bytes(eth / v6_packet(rnd)))
            continue
        ip = IP(src=rnd.choice(srcs), dst=rnd.choice(dsts),
                ttl=rnd.choice([0, 1, 2, 3, 64, 128, 255]), tos=rnd.choice([0, 0, 0x10, 0xb8, 3]),
                id=rnd.randrange(65536))
        r = rnd.random()
        if r < 0.1:
            ip.flags, ip.frag = "MF", 0
        elif r < 0.15:
            ip.frag = rnd.randrange(1, 400)
        elif r < 0.4:
            ip.flags = "DF"
        if rnd.random() < 0.06:
            ip.options = rnd.choice([[IPOption_NOP()] * 4, [IPOption_RR(routers=["0.0.0.0"] * 2)]])
        payload = Raw(bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 18, 100, 512, 1400]))))
        l4 = rnd.choice([UDP(sport=rnd.randrange(1, 65535), dport=rnd.randrange(1, 65535)),
                         TCP(sport=rnd.randrange(1, 65535), dport=80, flags="S"),
                         ICMP(type=8, id=i), None])
        pkt = eth / ip / l4 / payload if l4 is not None else eth / ip / payload
        if l4 is None:
            pkt[IP].proto = rnd.choice([47, 200, 89])
        fr = bytearray(bytes(pkt))
        c = rnd.random()
        if c < 0.05:
            fr[24] ^= 0x5A                               # bad header checksum
        elif c < 0.08:
            fr[14] = 0x40 | rnd.choice([0, 1, 2, 3, 4])  # IHL < 5
        elif c < 0.11:
            fr = fr[:max(15, len(fr) - rnd.randrange(1, 40))]   # truncated
        elif c < 0.16:
            fr += bytes(rnd.randrange(1, 30))            # Ethernet padding
        out.append(bytes(fr))
    return out


def v6_packet(rnd):
    ip = IPv6(src="2001:db8:0::2", dst=rnd.choice(["2001:db8:1::2", "2001:db8:2::5", "2001:db8:2:9::1",
                                                    "2001:db8:77::1", "2001:db8:1::1", "2001:db8:3::9",
                                                    "2001:db8:3:5::1"]),
              hlim=rnd.choice([0, 1, 2, 64, 255]), tc=rnd.choice([0, 0x20]), fl=rnd.randrange(1 << 20))
    ext = rnd.choice([None, None, None, IPv6ExtHdrFragment(offset=0, m=1, id=rnd.randrange(1 << 32)),
                      IPv6ExtHdrDestOpt(), IPv6ExtHdrHopByHop()])
    l4 = rnd.choice([UDP(sport=rnd.randrange(1, 65535), dport=53), TCP(dport=443, flags="S")])
    payload = Raw(bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 10, 200, 1200]))))
    return (ip / ext / l4 / payload) if ext is not None else (ip / l4 / payload)


def run_side(in_ns, in_if, out_ns, out_if, path, seconds):
    cap = os.path.join(os.path.dirname(path), f"cap-{out_ns}.bin")
    p = subprocess.Popen(["ip", "netns", "exec", out_ns, sys.executable, PKTIO, "capture", out_if,
                          str(seconds), cap], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    sh(sys.executable, PKTIO, "send", in_if, path, ns=in_ns, timeout=120)
    p.wait(timeout=seconds + 30)
    return [f for f in read_frames(cap) if not f[0] & 1]   # unicast only: no ND/MLD/ARP chatter


def netns(name, cleanups):
    sh("ip", "netns", "add", name)
    cleanups.append(lambda: sh("ip", "netns", "del", name, check=False))
    sh("ip", "link", "set", "lo", "up", ns=name)
    sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=0",
       ns=name)


def quiet_end(ns, ifname):
    sh("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1", ns=ns, check=False)
    sh("ip", "link", "set", ifname, "up", ns=ns)


def xdp_gateway(gateways, tag, gw, gin, gout, huge=False, eal_extra=()):
    """kni-gw in ns gw on two net_af_xdp ports, g0 (peer in0 in ns gin) and
    g1 (peer out1 in ns gout), with the routers' MACs; returns it ready.
    Without hugepages unless huge; eal_extra: more EAL options."""
    for k, peer, pif in ((0, gin, "in0"), (1, gout, "out1")):
        sh("ip", "link", "add", f"g{k}", "netns", gw, "type", "veth", "peer", "name", pif, "netns", peer)
        sh("sysctl", "-qw", f"net.ipv4.conf.g{k}.rp_filter=1", f"net.ipv4.conf.g{k}.arp_ignore=8",
           f"net.ipv6.conf.g{k}.disable_ipv6=1", ns=gw)
        # net_af_xdp cannot change its MAC: give the port the router's MAC
        # before kni-gw starts, and vEthN takes it from the port
        sh("ip", "link", "set", f"g{k}", "address", (MAC0, MAC1)[k], ns=gw)
        sh("ip", "link", "set", f"g{k}", "up", ns=gw)
        quiet_end(peer, pif)

    class Topo:
        pass
    topo = Topo()
    topo.tag, topo.gw = tag, gw
    return gateways(topo, ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"],
                    eal=["-l", "0-1", "--no-pci"] + ([] if huge else ["--no-huge", "-m", "512"]) +
                        ["--file-prefix", tag,
                         "--vdev", "net_af_xdp0,iface=g0", "--vdev", "net_af_xdp1,iface=g1"] +
                        list(eal_extra)).wait_ready()


def test_kni_gw_output_equals_the_kernels(gateways):
    tag = f"kgd{os.getpid() % 100000}"
    cleanups = []
    tmp = tempfile.mkdtemp(prefix="kgdiff")
    try:
        sent = frames()
        assert len(sent) >= 1000
        path = os.path.join(tmp, "frames.bin")
        write_frames(path, sent)

        # the reference: a Linux router between two veth pairs
        ref, rin, rout = f"{tag}-ref", f"{tag}-rin", f"{tag}-rout"
        for ns in (ref, rin, rout):
            netns(ns, cleanups)
        sh("ip", "link", "add", "r0", "netns", ref, "type", "veth", "peer", "name", "in0", "netns", rin)
        sh("ip", "link", "add", "r1", "netns", ref, "type", "veth", "peer", "name", "out1", "netns", rout)
        quiet_end(rin, "in0")
        quiet_end(rout, "out1")
        configure_router(ref, "r0", "r1", extra=True)

        # kni-gw between two veth pairs, the same way
        gw, gin, gout = f"{tag}-gw", f"{tag}-gin", f"{tag}-gout"
        for ns in (gw, gin, gout):
            netns(ns, cleanups)
        g = xdp_gateway(gateways, tag, gw, gin, gout)
        configure_router(gw, "vEth0", "vEth1", extra=True)
        wait_for(lambda: (lambda s: s["fib"]["fast4"] >= 8 and s["fib"]["fast6"] >= 4
                          and s["fib"]["groups"] >= 2
                          and all(f["ipv4"] and f["ipv6"] for f in s["fib"]["forwarding"].values()))(g.stats()),
                 what="the gateway's routes and neighbours in the fast path")

        want = run_side(rin, "in0", rout, "out1", path, seconds=4)
        before = {p["port"]: p for p in g.stats()["ports"]}
        got = run_side(gin, "in0", gout, "out1", path, seconds=4)
        after = {p["port"]: p for p in g.stats()["ports"]}

        w, o = collections.Counter(want), collections.Counter(got)
        missing, extra = w - o, o - w
        if os.environ.get("KG_DIFF_DUMP"):
            from scapy.all import Ether as E
            for fr in missing:
                print("MISSING", E(fr).summary(), E(fr)[1].fields.get("flags"), len(fr), fr[14:34].hex())
            print({k: after[0]["punts"][k] - before[0]["punts"][k] for k in after[0]["punts"]})
            print({k: after[0]["drops"][k] - before[0]["drops"][k] for k in after[0]["drops"]})
            print({k: after[1]["drops"][k] - before[1]["drops"][k] for k in after[1]["drops"]})
            print("missing", sum(missing.values()), "extra", sum(extra.values()), "want", len(want),
                  "rx0", after[0]["rx_packets"] - before[0]["rx_packets"], "sent", len(sent))
            print("hw0", {k: after[0]["hw"][k] - before[0]["hw"][k] for k in after[0]["hw"]})
            print("hw1", {k: after[1]["hw"][k] - before[1]["hw"][k] for k in after[1]["hw"]})
            print("p1", {k: after[1][k] - before[1][k] for k in ("tx_packets", "from_kernel", "rx_packets")})
        assert not missing and not extra, (
            f"{sum(missing.values())} frame(s) only from the kernel, {sum(extra.values())} only from "
            f"kni-gw; e.g. kernel {next(iter(missing), b'').hex()} kni-gw {next(iter(extra), b'').hex()}")
        assert len(want) > 300, "the reference forwarded too little for the comparison to mean much"
        # and most of it was forwarded by the fast path, not by the kernel behind vEth0
        fwd = after[0]["forwarded"] - before[0]["forwarded"]
        assert fwd > len(want) // 2, (fwd, len(want))
        # every frame that came in is accounted for exactly once
        p0 = after[0]
        rx = p0["rx_packets"] - before[0]["rx_packets"]
        assert rx == len(sent)
        assert rx == sum(p0[k] - before[0][k] for k in ("to_kernel", "forwarded")) + sum(
            p0["drops"][r] - before[0]["drops"][r] for r in ("to_kernel_full", "fwd_fifo_full",
                                                               "port_down_rx", "runt", "bad_header",
                                                               "bad_checksum", "policed"))
    finally:
        while cleanups:
            cleanups.pop()()
