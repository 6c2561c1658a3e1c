"""Forwarding between two ports in C, from routes and neighbours the kernel
has, and everything else left to the kernel."""
import subprocess
import sys
import time

import pytest

from .harness import Topology, ping, sh, veth_up, wait_for

TWO = ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]


@pytest.fixture
def routed(gateways):
    """Two peers on two ports, IPv4 forwarding on in the gateway."""
    topo = Topology(2)
    gw = gateways(topo, TWO).wait_ready()
    veth_up(topo, 0)
    veth_up(topo, 1)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
             what="forwarding on in the fast path")
    yield topo, gw
    gw.kill()
    topo.close()


def totals(gw):
    s = gw.stats()
    ports = {p["port"]: p for p in s["ports"]}
    return ports, s


def udp_blast(ns, dst, count, port=5555, size=64, burst=100):
    """count UDP datagrams from ns to dst: bursts of `burst`, 1 ms apart (a
    stream, not a flood: af_packet's ring in front of an idle lcore holds 512)."""
    code = (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        f"b=bytes({size})\n"
        f"for i in range({count}):\n"
        f"  s.sendto(b,('{dst}',{port}))\n"
        f"  i % {burst} == {burst - 1} and time.sleep(0.001)\n")
    sh(sys.executable, "-c", code, ns=ns)


def udp_sink(ns, port=5555):
    """A receiver counting datagrams until 2 s of silence; it prints the
    count. Returns once it is bound."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                          "import socket,sys\n"
                          "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                          "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,8<<20)\n"
                          f"s.bind(('0.0.0.0',{port}))\nprint('ready',flush=True)\n"
                          "s.settimeout(2.0)\nn=0\n"
                          "try:\n"
                          "  while True:\n"
                          "    s.recv(65535); n+=1\n"
                          "except socket.timeout:\n  print(n)\n"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_stream_is_forwarded_in_c_after_the_first_packets(routed):
    topo, gw = routed
    # first packets: ARP is resolved through the kernel
    assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=3, wait=2).stdout
    before, _ = totals(gw)
    sink = udp_sink(topo.peers[1])
    udp_blast(topo.peers[0], "10.1.0.2", 2000)
    received = int(sink.communicate(timeout=30)[0])
    after, snap = totals(gw)
    fwd = after[0]["forwarded"] - before[0]["forwarded"]
    to_kernel = after[0]["to_kernel"] - before[0]["to_kernel"]
    assert fwd == 2000, (fwd, after[0]["punts"], after[0]["drops"], after[0]["hw"])
    assert received == 2000
    assert to_kernel == 0
    # port 1 sent them: from the fast path, not from vEth1
    sent = after[1]["tx_packets"] - before[1]["tx_packets"]
    assert sent >= 2000
    assert after[1]["from_kernel"] - before[1]["from_kernel"] < 5
    # their bytes as they left (14 + 20 + 8 + 64 each), and at most a
    # full-size frame for each of the few the kernel sent beside them
    tx_bytes = after[1]["tx_bytes"] - before[1]["tx_bytes"]
    assert 2000 * 106 <= tx_bytes <= 2000 * 106 + (sent - 2000) * 1514, (tx_bytes, sent)
    assert snap["fib"]["fast4"] >= 2


def test_ping_across_goes_fast_both_ways(routed):
    topo, gw = routed
    ping(topo.peers[0], "10.1.0.2", count=2, wait=2)
    before, _ = totals(gw)
    r = ping(topo.peers[0], "10.1.0.2", count=100, interval=0.005)
    assert " 0% packet loss" in r.stdout
    after, _ = totals(gw)
    assert after[0]["forwarded"] - before[0]["forwarded"] == 100
    assert after[1]["forwarded"] - before[1]["forwarded"] == 100
    assert after[0]["to_kernel"] == before[0]["to_kernel"]


def test_ttl_1_gets_time_exceeded_from_the_kernel(routed):
    topo, gw = routed
    ping(topo.peers[0], "10.1.0.2", count=1, wait=2)   # 10.1.0.2 resolved: not a glean punt
    r = ping(topo.peers[0], "10.1.0.2", count=3, wait=2, extra=["-t", "1"], quiet=False)
    assert "Time to live exceeded" in r.stdout or "Time to live exceeded" in r.stderr, r.stdout
    ports, _ = totals(gw)
    assert ports[0]["punts"]["ttl"] >= 3


def test_no_route_gets_unreachable(routed):
    topo, gw = routed
    r = ping(topo.peers[0], "192.0.2.9", count=2, wait=2, quiet=False)
    assert "Unreachable" in r.stdout or "unreachable" in r.stderr, r.stdout
    ports, _ = totals(gw)
    assert ports[0]["punts"]["no_route"] >= 1, ({k: v for k, v in ports[0]["punts"].items() if v}, r.stdout)


def test_route_added_then_deleted(routed):
    topo, gw = routed
    # a network behind peer1, reached through it
    sh("ip", "addr", "add", "192.168.50.1/32", "dev", "lo", ns=topo.peers[1])
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.peers[1])
    assert "100% packet loss" in ping(topo.peers[0], "192.168.50.1", count=1, wait=1).stdout
    sh("ip", "route", "add", "192.168.50.0/24", "via", "10.1.0.2", ns=topo.gw)
    wait_for(lambda: totals(gw)[1]["fib"]["fast4"] >= 1, what="route mirrored")
    ping(topo.peers[0], "192.168.50.1", count=2, wait=2)  # resolve 10.1.0.2 if needed
    before, _ = totals(gw)
    assert " 0% packet loss" in ping(topo.peers[0], "192.168.50.1", count=20).stdout
    after, _ = totals(gw)
    assert after[0]["forwarded"] - before[0]["forwarded"] == 20
    sh("ip", "route", "del", "192.168.50.0/24", ns=topo.gw)
    t0 = time.monotonic()
    wait_for(lambda: "no_route" in str(totals_punt(gw, topo)), timeout=2, what="route gone")
    assert time.monotonic() - t0 < 2
    assert "100% packet loss" in ping(topo.peers[0], "192.168.50.1", count=2, wait=1).stdout
    after2, _ = totals(gw)
    assert after2[0]["punts"]["no_route"] - after[0]["punts"]["no_route"] >= 2


def totals_punt(gw, topo):
    ping(topo.peers[0], "192.168.50.1", count=1, wait=0.2)
    return {k: v for k, v in totals(gw)[0][0]["punts"].items() if v}


def test_route_change_reaches_the_fast_path_within_50ms(routed):
    topo, gw = routed
    sh("ip", "route", "add", "198.51.100.0/24", "via", "10.1.0.2", ns=topo.gw)
    wait_for(lambda: totals(gw)[1]["fib"]["fast4"] >= 1, what="route mirrored")
    # time from `ip route` returning to the fast path's table changing, as
    # seen through a frame sent right after: sample several times
    sink = udp_sink(topo.peers[1], port=7777)
    ping(topo.peers[0], "10.1.0.2", count=1, wait=2)
    delays = []
    for i in range(5):
        net = f"203.0.{113 + i}.0/24"
        before, _ = totals(gw)
        t0 = time.monotonic()
        sh("ip", "route", "add", net, "via", "10.1.0.2", ns=topo.gw)
        while time.monotonic() - t0 < 1.0:
            udp_blast(topo.peers[0], f"203.0.{113 + i}.9", 1, port=7777)
            if totals(gw)[0][0]["forwarded"] > before[0]["forwarded"]:
                break
        delays.append(time.monotonic() - t0)
    sink.kill()
    # each probe includes a SIGUSR1 round trip; the median shows the mirror
    assert sorted(delays)[2] < 0.05 + 0.1, delays


def test_mtu_bigger_than_egress_goes_to_the_kernel(routed):
    topo, gw = routed
    sh("ip", "link", "set", "vEth1", "mtu", "1300", ns=topo.gw)
    wait_for(lambda: totals(gw)[0][1]["mtu"] == 1300, what="port 1 MTU")
    sh("ip", "link", "set", "p1", "mtu", "1300", ns=topo.peers[1])   # both ends of the link
    ping(topo.peers[0], "10.1.0.2", count=1, wait=2)
    # DF set: the kernel answers "frag needed"
    r = ping(topo.peers[0], "10.1.0.2", count=2, size=1400, extra=["-M", "do"], wait=2, quiet=False)
    assert "Frag needed" in r.stdout or "message too long" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    # DF clear: the kernel fragments and the peer answers
    r = ping(topo.peers[0], "10.1.0.2", count=2, size=1400, extra=["-M", "dont"], wait=2)
    assert " 0% packet loss" in r.stdout, r.stdout
    ports, _ = totals(gw)
    assert ports[0]["punts"]["mtu"] >= 2
    # small ones still fast
    before, _ = totals(gw)
    assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=10).stdout
    assert totals(gw)[0][0]["forwarded"] - before[0]["forwarded"] == 10


def test_ipv6_with_nd(gateways):
    topo = Topology(2, ipv6=True)
    try:
        gw = gateways(topo, TWO).wait_ready()
        for k in (0, 1):
            sh("sysctl", "-qw", f"net.ipv6.conf.vEth{k}.disable_ipv6=0", ns=topo.gw)
            sh("ip", "-6", "addr", "add", f"2001:db8:{k}::1/64", "dev", f"vEth{k}", "nodad", ns=topo.gw)
            sh("ip", "link", "set", f"vEth{k}", "up", ns=topo.gw)
            sh("ip", "-6", "addr", "add", f"2001:db8:{k}::2/64", "dev", f"p{k}", "nodad", ns=topo.peers[k])
            sh("ip", "-6", "route", "add", "default", "via", f"2001:db8:{k}::1", ns=topo.peers[k])
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=topo.gw)
        wait_for(lambda: ping(topo.peers[0], "2001:db8:1::2", count=1, wait=1).returncode == 0,
                 timeout=15, what="IPv6 path (ND through the kernel)")
        before, _ = totals(gw)
        r = ping(topo.peers[0], "2001:db8:1::2", count=50, interval=0.005)
        assert " 0% packet loss" in r.stdout
        after, snap = totals(gw)
        assert after[0]["forwarded"] - before[0]["forwarded"] == 50
        assert snap["fib"]["fast6"] >= 2
        # ND went through the kernel: it knows the neighbours the fast path uses
        assert "lladdr" in sh("ip", "-6", "neigh", "show", "2001:db8:1::2", "dev", "vEth1", ns=topo.gw).stdout
        r = ping(topo.peers[0], "2001:db8:1::2", count=2, wait=2, extra=["-t", "1"], quiet=False)
        assert "Time exceeded" in r.stdout or "Hop limit" in r.stdout, r.stdout
    finally:
        topo.close()
