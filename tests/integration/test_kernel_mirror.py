"""The fast path follows the kernel as Linux itself would forward: default
routes, IPv6 multipath edits, ``ip route append``, IPv6's global forwarding
switch, tables that overflow, neighbours that change their MAC or die."""
import json
import re
import time

from .harness import Topology, ping, sh, veth_up, wait_for
from .test_fastpath import TWO, totals, udp_blast, udp_sink


def routed_pair(gateways, args=(), ipv6=False, **kw):
    topo = Topology(2, ipv6=ipv6)
    gw = gateways(topo, TWO + list(args), **kw).wait_ready()
    for k in (0, 1):
        if ipv6:
            sh("sysctl", "-qw", f"net.ipv6.conf.vEth{k}.disable_ipv6=0", ns=topo.gw)
            sh("ip", "-6", "addr", "add", f"2001:db8:{k}::1/64", "dev", f"vEth{k}", "nodad", ns=topo.gw)
            sh("ip", "-6", "addr", "add", f"2001:db8:{k}::2/64", "dev", f"p{k}", "nodad", ns=topo.peers[k])
            sh("ip", "-6", "route", "add", "default", "via", f"2001:db8:{k}::1", ns=topo.peers[k])
        veth_up(topo, k)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    if ipv6:
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=topo.gw)
    wait_for(lambda: all(f["ipv4"] and (f["ipv6"] or not ipv6) for f in gw.stats()["fib"]["forwarding"].values()),
             what="forwarding on in the fast path")
    return topo, gw


def fwd_delta(gw, before, port=0):
    after, snap = totals(gw)
    return after[port]["forwarded"] - before[port]["forwarded"], after, snap


def test_default_route_is_forwarded_in_c_ipv4_and_ipv6(gateways):
    topo, gw = routed_pair(gateways, ipv6=True)
    try:
        # hosts "on the Internet" behind peer1, reached only by the default route
        sh("ip", "addr", "add", "198.51.100.7/32", "dev", "lo", ns=topo.peers[1])
        sh("ip", "-6", "addr", "add", "2001:db8:ffff::7/128", "dev", "lo", ns=topo.peers[1])
        sh("ip", "route", "add", "default", "via", "10.1.0.2", ns=topo.gw)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:1::2", ns=topo.gw)
        for dst in ("198.51.100.7", "2001:db8:ffff::7"):
            wait_for(lambda: ping(topo.peers[0], dst, count=1, wait=1).returncode == 0, timeout=15,
                     what=f"{dst} reachable (neighbours resolved by the kernel)")
            before, _ = totals(gw)
            r = ping(topo.peers[0], dst, count=200, interval=0.002)
            assert " 0% packet loss" in r.stdout, r.stdout
            n, after, snap = fwd_delta(gw, before)
            assert n == 200, (dst, n, after[0]["punts"])
            assert after[0]["punts"]["no_route"] == before[0]["punts"]["no_route"]
        # gone again: punted as no route, the kernel answers
        sh("ip", "route", "del", "default", ns=topo.gw)
        wait_for(lambda: totals(gw)[1]["fib"]["fast4"] <= 3, what="default route removed")
        r = ping(topo.peers[0], "198.51.100.7", count=1, wait=2, quiet=False)
        assert "Unreachable" in r.stdout or r.returncode != 0
    finally:
        gw.kill()
        topo.close()


def test_ipv6_multipath_loses_one_next_hop(gateways):
    """`ip -6 route del P via X`: the kernel notifies one sibling; the
    route keeps its other next hop, in C."""
    topo, gw = routed_pair(gateways, ipv6=True)
    try:
        # two next hops on peer1's link: peer1 itself and a second address of it
        sh("ip", "-6", "addr", "add", "2001:db8:1::3/64", "dev", "p1", "nodad", ns=topo.peers[1])
        sh("ip", "-6", "addr", "add", "2001:db8:aaaa::1/128", "dev", "lo", ns=topo.peers[1])
        sh("ip", "-6", "route", "add", "2001:db8:aaaa::/64", "nexthop", "via", "2001:db8:1::2", "dev", "vEth1",
           "nexthop", "via", "2001:db8:1::3", "dev", "vEth1", ns=topo.gw)
        for gwaddr in ("2001:db8:1::2", "2001:db8:1::3"):
            ping(topo.gw, gwaddr, count=1, wait=2)         # the kernel resolves both
        wait_for(lambda: ping(topo.peers[0], "2001:db8:aaaa::1", count=1, wait=1).returncode == 0,
                 timeout=15, what="multipath route usable")
        wait_for(lambda: totals(gw)[1]["fib"]["groups"] >= 1, what="an ECMP group")
        sh("ip", "-6", "route", "del", "2001:db8:aaaa::/64", "via", "2001:db8:1::3", "dev", "vEth1", ns=topo.gw)
        assert "2001:db8:aaaa::/64" in sh("ip", "-6", "route", "show", "2001:db8:aaaa::/64", ns=topo.gw).stdout
        wait_for(lambda: totals(gw)[1]["fib"]["groups"] == 0, what="the group gone, the route kept")
        before, _ = totals(gw)
        r = ping(topo.peers[0], "2001:db8:aaaa::1", count=100, interval=0.002)
        assert " 0% packet loss" in r.stdout, r.stdout
        n, after, _ = fwd_delta(gw, before)
        assert n == 100, (n, after[0]["punts"])
    finally:
        gw.kill()
        topo.close()


def test_route_append_and_replace_are_followed(gateways):
    """`ip route append` with the same metric adds a route Linux does not
    use while the first is there; deleting the first makes the second live."""
    topo, gw = routed_pair(gateways)
    try:
        sh("ip", "addr", "add", "198.51.100.9/32", "dev", "lo", ns=topo.peers[1])
        sh("ip", "route", "add", "198.51.100.0/24", "via", "10.1.0.2", ns=topo.gw)
        sh("ip", "route", "append", "198.51.100.0/24", "via", "10.1.0.99", ns=topo.gw)   # never resolves
        wait_for(lambda: ping(topo.peers[0], "198.51.100.9", count=1, wait=1).returncode == 0,
                 timeout=15, what="route usable")
        before, _ = totals(gw)
        assert " 0% packet loss" in ping(topo.peers[0], "198.51.100.9", count=50, interval=0.002).stdout
        assert fwd_delta(gw, before)[0] == 50
        # the first one goes: the appended one is used (its next hop does
        # not answer, so the kernel gets the traffic: nothing in C)
        sh("ip", "route", "del", "198.51.100.0/24", "via", "10.1.0.2", ns=topo.gw)
        before, _ = totals(gw)
        ping(topo.peers[0], "198.51.100.9", count=5, interval=0.05, wait=1)
        n, after, _ = fwd_delta(gw, before)
        assert n == 0 and after[0]["punts"]["unresolved"] - before[0]["punts"]["unresolved"] >= 1, after[0]
        # replace: back to peer1
        sh("ip", "route", "replace", "198.51.100.0/24", "via", "10.1.0.2", ns=topo.gw)
        wait_for(lambda: ping(topo.peers[0], "198.51.100.9", count=1, wait=1).returncode == 0,
                 timeout=10, what="replaced route usable")
        before, _ = totals(gw)
        assert " 0% packet loss" in ping(topo.peers[0], "198.51.100.9", count=50, interval=0.002).stdout
        assert fwd_delta(gw, before)[0] == 50
    finally:
        gw.kill()
        topo.close()


def test_ipv6_forwarding_follows_conf_all_as_ip6_forward_does(gateways):
    topo, gw = routed_pair(gateways, ipv6=True)
    try:
        wait_for(lambda: ping(topo.peers[0], "2001:db8:1::2", count=1, wait=1).returncode == 0,
                 timeout=15, what="IPv6 path")
        # all=0 but the vEths' own forwarding=1: Linux does not forward IPv6
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0", ns=topo.gw)
        for k in (0, 1):
            sh("sysctl", "-qw", f"net.ipv6.conf.vEth{k}.forwarding=1", ns=topo.gw)
        wait_for(lambda: not any(f["ipv6"] for f in gw.stats()["fib"]["forwarding"].values()),
                 what="IPv6 forwarding off in the fast path")
        before, _ = totals(gw)
        r = ping(topo.peers[0], "2001:db8:1::2", count=3, interval=0.05, wait=1)
        assert " 0 received" in r.stdout or "100% packet loss" in r.stdout, r.stdout
        after, _ = totals(gw)
        assert after[0]["forwarded"] == before[0]["forwarded"]
        assert after[0]["punts"]["forwarding_off"] - before[0]["punts"]["forwarding_off"] >= 3
        # IPv4 is per interface, and still on
        ping(topo.peers[0], "10.1.0.2", count=1, wait=2)       # ARP through the kernel
        before, _ = totals(gw)
        assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=20, interval=0.002).stdout
        assert fwd_delta(gw, before)[0] == 20
    finally:
        gw.kill()
        topo.close()


def test_tables_that_overflow_punt_and_recover(gateways):
    """--max-routes 1024: the routes that do not fit are counted, their
    traffic reaches its destination through the kernel (never through a
    shorter prefix's next hop), and deleting routes makes room for them."""
    topo, gw = routed_pair(gateways, ["--max-routes", "1024,1024"])
    try:
        sh("ip", "addr", "add", "172.20.75.1/32", "dev", "lo", ns=topo.peers[1])
        sh("ip", "route", "add", "default", "via", "10.1.0.2", ns=topo.gw)
        batch = "".join(f"route add 172.{16 + i // 256}.{i % 256}.0/24 via 10.1.0.2\n" for i in range(1100))
        sh("ip", "-batch", "-", ns=topo.gw, input=batch)
        wait_for(lambda: gw.stats()["fib"]["not_installed4"] > 0, timeout=20, what="overflow counted")
        fib = gw.stats()["fib"]
        # what the table holds (about 1024 routes: its tree's nodes are the
        # limit) and what it refused add up to what the kernel has
        assert fib["routes4"] < 1100 and fib["routes4"] + fib["not_installed4"] >= 1100
        assert fib["install_failures"] >= fib["not_installed4"]
        assert "not installed" in "\n".join(gw.err)
        # 172.20.75.0/24 was added last: not in the table; the default
        # route covers it and punts meanwhile
        wait_for(lambda: ping(topo.peers[0], "172.20.75.1", count=1, wait=1).returncode == 0,
                 timeout=15, what="172.20.75.1 reachable")
        before, _ = totals(gw)
        sink = udp_sink(topo.peers[1])
        udp_blast(topo.peers[0], "172.20.75.1", 500)
        assert int(sink.communicate(timeout=30)[0]) == 500
        n, after, _ = fwd_delta(gw, before)
        assert n == 0, after[0]["punts"]
        assert after[0]["punts"]["table_full"] - before[0]["punts"]["table_full"] == 500
        # room: the first 200 go; the missing ones are installed
        batch = "".join(f"route del 172.16.{i}.0/24\n" for i in range(200))
        sh("ip", "-batch", "-", ns=topo.gw, input=batch)
        wait_for(lambda: gw.stats()["fib"]["not_installed4"] == 0, timeout=20, what="every route installed")
        before, _ = totals(gw)
        sink = udp_sink(topo.peers[1])
        udp_blast(topo.peers[0], "172.20.75.1", 500)
        assert int(sink.communicate(timeout=30)[0]) == 500
        assert fwd_delta(gw, before)[0] == 500
    finally:
        gw.kill()
        topo.close()


def ping_stream(ns, dst, seconds):
    import subprocess
    return subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", "0.1", "-w", str(seconds),
                             "-W", "1", dst], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def reply_times(out):
    return [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]


def test_neighbour_that_changes_its_mac_is_followed(gateways):
    """A host behind vEth1 changes its MAC without a gratuitous ARP: the
    fast path sees its replies come from the new MAC, the kernel is asked
    to probe the old one, and traffic flows again within 10 s."""
    topo, gw = routed_pair(gateways)
    try:
        wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, wait=1).returncode == 0, timeout=15,
                 what="path up")
        stream = ping_stream(topo.peers[0], "10.1.0.2", 25)
        wait_for(lambda: totals(gw)[0][0]["forwarded"] >= 20, what="stream forwarded in C")
        changed = time.time()
        sh("ip", "link", "set", "p1", "address", "02:00:00:00:42:42", ns=topo.peers[1])
        out = stream.communicate(timeout=40)[0]
        after = [t for t in reply_times(out) if t > changed]
        assert after, out[-2000:]
        assert after[0] - changed < 10.0, (after[0] - changed, out[-1500:])
        neigh = sh("ip", "neigh", "show", "10.1.0.2", "dev", "vEth1", ns=topo.gw).stdout
        assert "02:00:00:00:42:42" in neigh, neigh
        # and the flow is in C again, to the new MAC
        before, _ = totals(gw)
        assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=50, interval=0.002).stdout
        assert fwd_delta(gw, before)[0] == 50
        assert gw.stats()["fib"]["neigh_probe"] >= 1
    finally:
        gw.kill()
        topo.close()


def test_dead_neighbour_goes_to_the_kernel(gateways):
    """A neighbour the fast path uses stays under the kernel's reachability
    machine: when it stops answering, the kernel's probes fail, the entry
    goes FAILED and its traffic is punted: the kernel answers unreachable.
    (Short reachable and probe delays on vEth1 keep the test short; they are
    the kernel's own settings.)"""
    topo, gw = routed_pair(gateways)
    try:
        sh("sysctl", "-qw", "net.ipv4.neigh.vEth1.base_reachable_time_ms=1000",
           "net.ipv4.neigh.vEth1.delay_first_probe_time=1", ns=topo.gw)
        wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, wait=1).returncode == 0, timeout=15,
                 what="path up")
        # the host disappears from its link (no more ARP or IP from it)
        sh("ip", "link", "set", "p1", "down", ns=topo.peers[1])
        stream = ping_stream(topo.peers[0], "10.1.0.2", 15)
        out = stream.communicate(timeout=30)[0]
        assert "Destination Host Unreachable" in out, out[-1500:]
        state = sh("ip", "neigh", "show", "10.1.0.2", "dev", "vEth1", ns=topo.gw).stdout
        assert "FAILED" in state or "INCOMPLETE" in state or not state.strip(), state
        fib = gw.stats()["fib"]
        assert fib["neigh_use"] >= 1
    finally:
        gw.kill()
        topo.close()


def test_no_huge_without_m_starts_and_forwards(gateways):
    """--no-huge with no -m: kni-gw gives EAL the memory its tables need,
    says so, and forwards."""
    topo = Topology(2)
    gw = None
    try:
        eal = ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag, "--no-huge"] + topo.vdevs()
        gw = gateways(topo, TWO, eal=eal).wait_ready()
        assert any("--no-huge without -m: EAL gets -m" in ln for ln in gw.err), gw.err[-10:]
        veth_up(topo, 0)
        veth_up(topo, 1)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
        wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, wait=1).returncode == 0, timeout=15,
                 what="path up")
        before, _ = totals(gw)
        assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=100, interval=0.002).stdout
        assert fwd_delta(gw, before)[0] == 100
    finally:
        if gw is not None:
            gw.kill()
        topo.close()


def test_static_neighbour_stays_static(gateways):
    """An operator's permanent neighbour, used by the fast path, is left as
    it is (NTF_USE would clear NUD_PERMANENT)."""
    topo, gw = routed_pair(gateways)
    try:
        mac = json.loads(sh("ip", "-j", "link", "show", "p1", ns=topo.peers[1]).stdout)[0]["address"]
        sh("ip", "neigh", "replace", "10.1.0.2", "lladdr", mac, "nud", "permanent", "dev", "vEth1", ns=topo.gw)
        wait_for(lambda: ping(topo.peers[0], "10.1.0.2", count=1, wait=1).returncode == 0, timeout=15,
                 what="path up")
        r = ping(topo.peers[0], "10.1.0.2", count=30, interval=0.1)      # 3 s: several liveness periods
        assert " 0% packet loss" in r.stdout, r.stdout
        assert "PERMANENT" in sh("ip", "neigh", "show", "10.1.0.2", "dev", "vEth1", ns=topo.gw).stdout
        # liveness did run: peer0 (dynamic, on vEth0, the replies' next hop) was reported
        assert gw.stats()["fib"]["neigh_use"] >= 1
    finally:
        gw.kill()
        topo.close()
