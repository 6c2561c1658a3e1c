"""Jumbo frames and frames in several segments (issue 11, item 4).

An MTU set on vEthN is either carried end to end or refused with vEthN put
back and one log line saying which limit binds (csrc/control/mtu.c), never
accepted and then broken; every frame dropped for its size is counted.

  * net_af_packet and net_af_xdp, MTU 3000 and 9000: carried (DF pings of
    the largest size, to the gateway and through it, exact counters) or
    refused; when refused, the largest MTU the log line names is carried
    and one more is refused.
  * net_af_xdp receives a frame into one mbuf: --mbuf-size bounds its MTU.
  * Chains end to end: ports that scatter (net_tap, its netdev moved into
    the peer's namespace) and mbufs smaller than a frame (--mbuf-size
    1152): every frame over 1024 bytes arrives and leaves in segments.
"""
import os
import re
import subprocess
import sys
import tempfile

import pytest
from scapy.all import ICMP, Dot1Q, Ether, IP, Raw, UDP

from .harness import Gateway, Topology, kni_gw_bin, link_attr, ping, sh, wait_for
from .pktio import read_frames, write_frames

PKTIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pktio.py")
TWO = ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]
# the largest MTU each port carries with DPDK 22.11 and the default mbufs:
# net_af_packet 1500 (its dev_info: max_rx_pktlen 1518); net_af_xdp 1774
# (one 2176-byte mbuf, the frame 384 bytes in), but vEth0's net_tap takes
# 1504 at most (22.11's dev_info says max_rx_pktlen 1522)
LARGEST = {"net_af_packet": (1500, "net_af_packet takes no more"),
           "net_af_xdp": (1504, "vEth0's device (net_tap) takes no more")}
MOVED = ("rx_packets", "rx_bytes", "to_kernel", "kernel_tx", "from_kernel", "tx_packets", "tx_bytes",
         "forwarded")


def eal(topo, driver, mem=256, devargs=""):
    vdevs = []
    for k in range(topo.nports):
        vdevs += ["--vdev", f"{driver}{k},iface=g{k}{devargs}"]
    return ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag, "--no-huge", "-m", str(mem)] + vdevs


def neighbours(topo, ports):
    """Permanent ARP entries both ways: the counters move by the pings only."""
    for k in ports:
        gw_mac = link_attr(topo.gw, f"vEth{k}")["address"]
        peer_if = f"p{k}" if link_attr(topo.peers[k], f"p{k}") else f"w{k}"
        peer_mac = link_attr(topo.peers[k], peer_if)["address"]
        sh("ip", "neigh", "replace", f"10.{k}.0.1", "lladdr", gw_mac, "nud", "permanent",
           "dev", peer_if, ns=topo.peers[k])
        sh("ip", "neigh", "replace", f"10.{k}.0.2", "lladdr", peer_mac, "nud", "permanent",
           "dev", f"vEth{k}", ns=topo.gw)


def routed(topo, gw):
    """vEth0 and vEth1 up, IPv4 forwarding on, neighbours known; the first
    forwarded ping proves the fast path has them."""
    for k in (0, 1):
        sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=topo.gw)
        sh("ip", "link", "set", f"vEth{k}", "up", ns=topo.gw)
    wait_for(lambda: all(p["admin_up"] for p in gw.stats()["ports"]), what="ports up")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    neighbours(topo, (0, 1))
    wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
             what="forwarding on in the fast path")

    def forwarded_once():
        before = ports(gw)[0]["forwarded"]
        ping(topo.peers[0], "10.1.0.2", count=1, wait=1)
        return ports(gw)[0]["forwarded"] > before
    wait_for(forwarded_once, timeout=15, step=0.2, what="a ping forwarded in C")


def stop(gw, topo):
    """The gateway first (a net_tap wire's netdev goes with its fds; deleting
    its namespace first would move it to the root namespace), then the
    namespaces."""
    if gw is not None:
        gw.kill()
    topo.close()


def ports(gw):
    return {p["port"]: p for p in gw.stats()["ports"]}


def delta(after, before):
    d = {k: after[k] - before[k] for k in MOVED}
    d["drops"] = {r: n - before["drops"][r] for r, n in after["drops"].items() if n != before["drops"][r]}
    return d


def set_mtu(topo, mtu, peers=True):
    for k in (0, 1):
        sh("ip", "link", "set", f"vEth{k}", "mtu", str(mtu), ns=topo.gw)
    if peers:
        for k in (0, 1):
            sh("ip", "link", "set", f"p{k}", "mtu", str(mtu), ns=topo.peers[k])


def carried(topo, gw, mtu, n=20):
    """DF pings of the largest size an MTU allows, to the gateway and through
    it: no loss, and every frame counted where it went, nowhere else."""
    size = mtu - 28
    before = ports(gw)
    r = ping(topo.peers[0], "10.0.0.1", count=n, size=size, extra=["-M", "do"], wait=2)
    assert " 0% packet loss" in r.stdout, (mtu, r.stdout, r.stderr)
    d = delta(ports(gw)[0], before[0])
    assert d == {"rx_packets": n, "rx_bytes": n * (mtu + 14), "to_kernel": n, "kernel_tx": n,
                 "from_kernel": n, "tx_packets": n, "tx_bytes": n * (mtu + 14), "forwarded": 0,
                 "drops": {}}, d

    # the path through both ports at this MTU: a port that has just taken a
    # new MTU may still be restarting (net_af_xdp rebuilds its socket)
    wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, size=size, extra=["-M", "do"],
                          wait=1).returncode == 0, timeout=10, what=f"a {mtu}-byte ping through the gateway")
    before = ports(gw)
    r = ping(topo.peers[0], "10.1.0.2", count=n, size=size, extra=["-M", "do"], wait=2)
    assert " 0% packet loss" in r.stdout, (mtu, r.stdout, r.stderr)
    after = ports(gw)
    for k in (0, 1):
        d = delta(after[k], before[k])
        assert d == {"rx_packets": n, "rx_bytes": n * (mtu + 14), "to_kernel": 0, "kernel_tx": 0,
                     "from_kernel": 0, "tx_packets": n, "tx_bytes": n * (mtu + 14), "forwarded": n,
                     "drops": {}}, (k, d)


def refused(topo, gw, mtu, was):
    """vEth0 and vEth1 at mtu refused: both put back to `was`, one log line
    each naming the limit, the ports unchanged. Returns the largest MTU the
    line names."""
    lines = {}
    for k in (0, 1):
        lines[k] = gw.wait_line(gw.err, lambda s, k=k: f"vEth{k}: MTU {mtu} refused by port {k}: " in s)
        wait_for(lambda k=k: link_attr(topo.gw, f"vEth{k}")["mtu"] == was, what=f"vEth{k} put back to {was}")
        assert lines[k].endswith(f"; putting vEth{k} back to {was}"), lines[k]
        assert sum(f"vEth{k}: MTU {mtu} refused" in s for s in gw.err) == 1
    for k, p in ports(gw).items():
        assert p["mtu"] == was
        assert link_attr(topo.gw, f"g{k}")["mtu"] == was
    m = re.search(r"refused by port 0: MTU (\d+) at most: (.*); putting", lines[0])
    assert m, lines[0]
    largest = int(m.group(1))
    assert all(p["max_mtu"] == largest for p in ports(gw).values())
    # the refusal is kni-gw's own: DPDK was never asked for what it refuses
    assert not any("max frame size" in s or "device max MTU" in s for s in gw.err), gw.err
    return largest, m.group(2)


@pytest.mark.parametrize("mtu", [3000, 9000])
@pytest.mark.parametrize("driver", ["net_af_packet", "net_af_xdp"])
def test_jumbo_mtu_is_carried_or_refused(driver, mtu):
    topo, gw = Topology(2), None
    try:
        gw = Gateway(topo, TWO, eal=eal(topo, driver)).wait_ready()
        routed(topo, gw)
        set_mtu(topo, mtu, peers=False)
        accepted = f"vEth0: MTU 1500 -> {mtu}, port 0 follows"
        line = gw.wait_line(gw.err, lambda s: accepted in s or f"vEth0: MTU {mtu} refused" in s)
        if accepted in line:
            gw.wait_line(gw.err, lambda s: f"vEth1: MTU 1500 -> {mtu}, port 1 follows" in s)
            set_mtu(topo, mtu)
            carried(topo, gw, mtu)
            return
        largest, why = refused(topo, gw, mtu, 1500)
        assert (largest, why) == LARGEST[driver], line
        # the largest MTU it names is carried end to end ...
        set_mtu(topo, largest)
        if largest != 1500:
            gw.wait_line(gw.err, lambda s: f"vEth0: MTU 1500 -> {largest}, port 0 follows" in s)
            gw.wait_line(gw.err, lambda s: f"vEth1: MTU 1500 -> {largest}, port 1 follows" in s)
        wait_for(lambda: all(p["mtu"] == largest for p in ports(gw).values()), what=f"ports at MTU {largest}")
        carried(topo, gw, largest)
        # ... and one more is refused, the ports left as they were
        set_mtu(topo, largest + 1, peers=False)
        assert refused(topo, gw, largest + 1, largest)[0] == largest
        carried(topo, gw, largest, n=5)
    finally:
        stop(gw, topo)


def test_af_xdp_mtu_is_bounded_by_one_mbuf():
    """net_af_xdp receives a frame into one mbuf, 384 bytes in: with 1902-byte
    mbufs a frame of 1518 bytes (MTU 1500 and a VLAN tag) fits, and no more."""
    topo, gw = Topology(2), None
    try:
        gw = Gateway(topo, TWO + ["--mbuf-size", "1902"], eal=eal(topo, "net_af_xdp")).wait_ready()
        assert any("mbuf pool: " in s and "mbufs of 2030 B" in s for s in gw.err), gw.err
        routed(topo, gw)
        carried(topo, gw, 1500)
        set_mtu(topo, 1501, peers=False)
        largest, why = refused(topo, gw, 1501, 1500)
        assert largest == 1500
        assert why == "net_af_xdp receives a frame into one mbuf, which holds 1518 bytes of it (--mbuf-size 1902)"
        # the largest frame of MTU 1500, VLAN-tagged: 1518 bytes, whole
        frame = bytes(Ether(dst=link_attr(topo.gw, "vEth0")["address"], src=link_attr(topo.peers[0], "p0")["address"])
                      / Dot1Q(vlan=7) / IP(src="10.0.0.2", dst="10.0.0.1") / UDP() / Raw(b"v" * 1472))
        assert len(frame) == 1518
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "f.bin")
            write_frames(path, [frame])
            before = ports(gw)[0]
            sh(sys.executable, PKTIO, "send", "p0", path, ns=topo.peers[0])
            wait_for(lambda: ports(gw)[0]["rx_packets"] == before["rx_packets"] + 1, what="the 1518-byte frame")
        after = ports(gw)[0]
        assert after["rx_bytes"] - before["rx_bytes"] == 1518
        assert after["punts"]["vlan"] - before["punts"]["vlan"] == 1
        assert after["hw"]["hw_imissed"] == before["hw"]["hw_imissed"]
    finally:
        stop(gw, topo)


@pytest.mark.parametrize("driver, devargs, args, why", [
    ("net_af_xdp", "", ["--mbuf-size", "1900"],
     "MTU 1498 at most: net_af_xdp receives a frame into one mbuf, which holds 1516 bytes of it "
     "(--mbuf-size 1900)"),
    # tpacket_rcv puts the frame 66 bytes into a TPACKET_V2 ring frame
    ("net_af_packet", ",framesz=1024", [],
     "MTU 940 at most: net_af_packet receives a frame into one ring frame, which holds 958 bytes "
     "of it (framesz=1024)"),
])
def test_start_refused_when_a_port_cannot_hold_its_mtu(driver, devargs, args, why):
    topo = Topology(1)
    try:
        r = subprocess.run(["ip", "netns", "exec", topo.gw, kni_gw_bin()] + eal(topo, driver, devargs=devargs)
                           + ["-p", "0x1", "--config", "(0,0,1)"] + args,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("kni-gw: error:")]
        assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"port 0: its MTU 1500 cannot be carried: {why}" in err[0], err[0]
        assert link_attr(topo.gw, "vEth0") == {}
    finally:
        topo.close()


# ---------------------------------------------------------------- chains
class TapWire(Topology):
    """Ports that scatter: net_tap devices wK, each moved into its peer's
    namespace once kni-gw holds it (the peer's kernel is then the far end
    of the wire). net_tap advertises scattered rx and multi-segment tx, as
    a NIC does; net_af_packet and net_af_xdp have neither."""

    def __init__(self, nports):
        super().__init__(0)
        self.nports = nports
        for k in range(nports):
            peer = f"{self.tag}-p{k}"
            sh("ip", "netns", "add", peer)
            self._cleanups.append(lambda p=peer: sh("ip", "netns", "del", p, check=False))
            self.peers.append(peer)
            sh("ip", "link", "set", "lo", "up", ns=peer)

    def vdevs(self):
        out = []
        for k in range(self.nports):
            out += ["--vdev", f"net_tap{k},iface=w{k}"]
        return out

    def wire(self, gw):
        """vEthK up (the port started while its netdev is still here), then
        wK moved to peer K, with a MAC of its own and 10.K.0.2/24."""
        for k in range(self.nports):
            sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=self.gw)
            sh("ip", "link", "set", f"vEth{k}", "up", ns=self.gw)
        wait_for(lambda: all(p["admin_up"] for p in gw.stats()["ports"]), what="ports up")
        for k, peer in enumerate(self.peers):
            sh("ip", "link", "set", f"w{k}", "netns", peer, ns=self.gw)
            sh("sysctl", "-qw", f"net.ipv6.conf.w{k}.disable_ipv6=1", ns=peer)
            sh("ip", "link", "set", f"w{k}", "address", f"02:00:00:00:9{k}:02", ns=peer)
            sh("ip", "addr", "add", f"10.{k}.0.2/24", "dev", f"w{k}", ns=peer)
            sh("ip", "link", "set", f"w{k}", "up", ns=peer)
            sh("ip", "route", "add", "default", "via", f"10.{k}.0.1", ns=peer)


@pytest.fixture
def tapwire():
    topo, gw = TapWire(2), None
    try:
        gw = Gateway(topo, TWO + ["--mbuf-size", "1152"],
                     eal=["-l", "0-1", "--no-pci", "--file-prefix", topo.tag, "--no-huge", "-m", "256"]
                     + topo.vdevs()).wait_ready()
        topo.wire(gw)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
        neighbours(topo, (0, 1))
        wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
                 what="forwarding on in the fast path")
        yield topo, gw
    finally:
        stop(gw, topo)


def test_chains_are_carried_end_to_end(tapwire):
    """1514-byte frames in 1024-byte mbufs: each one a chain on the wire
    ports and on vEthN, classified on its whole length (not a runt),
    punted, forwarded in C, written to and read from the kernel."""
    topo, gw = tapwire
    p = ports(gw)
    assert all(x["driver"] == "net_tap" and x["max_mtu"] == 1504 for x in p.values()), p
    n, size = 20, 1472
    before = ports(gw)
    r = ping(topo.peers[0], "10.0.0.1", count=n, size=size, extra=["-M", "do"], wait=2)
    assert " 0% packet loss" in r.stdout, r.stdout
    d = delta(ports(gw)[0], before[0])
    assert d == {"rx_packets": n, "rx_bytes": n * 1514, "to_kernel": n, "kernel_tx": n, "from_kernel": n,
                 "tx_packets": n, "tx_bytes": n * 1514, "forwarded": 0, "drops": {}}, d

    def forwarded_once():
        b = ports(gw)[0]["forwarded"]
        ping(topo.peers[0], "10.1.0.2", count=1, size=size, extra=["-M", "do"], wait=1)
        return ports(gw)[0]["forwarded"] > b
    wait_for(forwarded_once, timeout=15, step=0.2, what="a chain forwarded in C")
    before = ports(gw)
    r = ping(topo.peers[0], "10.1.0.2", count=n, size=size, extra=["-M", "do"], wait=2)
    assert " 0% packet loss" in r.stdout, r.stdout
    after = ports(gw)
    for k in (0, 1):
        d = delta(after[k], before[k])
        assert d == {"rx_packets": n, "rx_bytes": n * 1514, "to_kernel": 0, "kernel_tx": 0, "from_kernel": 0,
                     "tx_packets": n, "tx_bytes": n * 1514, "forwarded": n, "drops": {}}, (k, d)
    base = gw.stats()["mbufs_in_use"]
    ping(topo.peers[0], "10.1.0.2", count=50, interval=0.002, size=size, extra=["-M", "do"], wait=1)
    wait_for(lambda: gw.stats()["mbufs_in_use"] == base, timeout=5, what=f"mbufs in use back to {base}")


def test_padding_is_trimmed_across_segments(tapwire):
    """Frames with bytes after their IP packet (Ethernet padding or a
    trailer) in two segments: what leaves is the IP packet alone, byte for
    byte what Linux would send, whether the cut ends in the first segment
    (the second one freed) or in the second."""
    topo, gw = tapwire
    src_mac = link_attr(topo.peers[0], "w0")["address"]
    gw0, gw1 = link_attr(topo.gw, "vEth0")["address"], link_attr(topo.gw, "vEth1")["address"]
    dst_mac = link_attr(topo.peers[1], "w1")["address"]
    sent, want = [], []
    for ip_len, trailer in ((1000, 500), (1200, 300), (1010, 490), (1011, 489)):
        ip = IP(src="10.0.0.2", dst="10.1.0.2", ttl=64, id=ip_len) / UDP(sport=4000, dport=4001) \
            / Raw((bytes(range(256)) * 8)[:ip_len - 28])
        ip = IP(bytes(ip))
        assert len(ip) == ip_len
        sent.append(bytes(Ether(dst=gw0, src=src_mac) / ip) + b"\xee" * trailer)
        out = ip.copy()
        out.ttl = 63
        del out.chksum
        want.append(bytes(Ether(dst=dst_mac, src=gw1, type=0x0800) / IP(bytes(out))))
    assert all(len(f) == 1514 for f in sent)
    with tempfile.TemporaryDirectory() as tmp:
        path, cap = os.path.join(tmp, "sent.bin"), os.path.join(tmp, "cap.bin")
        write_frames(path, sent)
        before = ports(gw)
        p = subprocess.Popen(["ip", "netns", "exec", topo.peers[1], sys.executable, PKTIO, "capture", "w1",
                              "3", cap], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        sh(sys.executable, PKTIO, "send", "w0", path, ns=topo.peers[0])
        p.wait(timeout=30)
        got = [f for f in read_frames(cap) if f[12:14] == b"\x08\x00" and f[14 + 9] == 17]
    assert got == want
    d = delta(ports(gw)[0], before[0])
    assert d["forwarded"] == 4 and d["rx_bytes"] == 4 * 1514 and d["drops"] == {}, d
    assert ports(gw)[1]["tx_bytes"] - before[1]["tx_bytes"] == sum(len(f) for f in want)


def test_frames_too_big_for_veth_are_counted(tapwire):
    """A frame longer than vEth0 takes (net_tap 22.11: MTU 1504 at most, and
    a longer frame makes it give up the rest of its burst): dropped before
    it, counted as to_kernel_too_big, and the frames after it go through."""
    topo, gw = tapwire
    sh("ip", "link", "set", "w0", "mtu", "3000", ns=topo.peers[0])    # the far end sends bigger
    before = ports(gw)[0]
    r = ping(topo.peers[0], "10.0.0.1", count=5, size=2972, extra=["-M", "do"], wait=1)
    assert "100% packet loss" in r.stdout, r.stdout
    wait_for(lambda: ports(gw)[0]["rx_packets"] - before["rx_packets"] >= 5, what="5 big frames")
    d = delta(ports(gw)[0], before)
    assert d == {"rx_packets": 5, "rx_bytes": 5 * 3014, "to_kernel": 5, "kernel_tx": 0, "from_kernel": 0,
                 "tx_packets": 0, "tx_bytes": 0, "forwarded": 0, "drops": {"to_kernel_too_big": 5}}, d
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=5, size=1472, extra=["-M", "do"]).stdout
    # big and small frames back to back, as one burst: the small ones reach the kernel
    eth = Ether(dst=link_attr(topo.gw, "vEth0")["address"], src=link_attr(topo.peers[0], "w0")["address"])
    big = bytes(eth / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(id=7) / Raw(b"b" * 2972))
    small = [bytes(eth / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(id=7, seq=i) / Raw(b"s" * 1000))
             for i in range(10)]
    burst = [big] + small[:5] + [big] + small[5:]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "burst.bin")
        write_frames(path, burst)
        before = ports(gw)[0]
        sh(sys.executable, PKTIO, "send", "w0", path, ns=topo.peers[0])
        wait_for(lambda: ports(gw)[0]["tx_packets"] - before["tx_packets"] >= 10, what="10 echo replies")
    d = delta(ports(gw)[0], before)
    assert d == {"rx_packets": 12, "rx_bytes": 2 * 3014 + 10 * 1042, "to_kernel": 12, "kernel_tx": 10,
                 "from_kernel": 10, "tx_packets": 10, "tx_bytes": 10 * 1042, "forwarded": 0,
                 "drops": {"to_kernel_too_big": 2}}, d
