"""The kernel mirror without a kernel: netlink messages built byte by byte,
decoded by nldecode, interpreted by mirror, installed by fibinstall into the
real C tables (the classifier then says where frames go)."""
import socket
import struct

import pytest
from scapy.all import IP, IPv6, UDP, Ether

from kni_gw import dataplane as dp
from kni_gw.fibinstall import Installer, RangeAllocator
from kni_gw.mirror import LOCAL, MAIN, Mirror, buckets, normalise
from kni_gw.nldecode import (NLM_F_APPEND, NLM_F_DUMP_INTR, NLM_F_REPLACE, NUD_FAILED, NUD_REACHABLE,
                             DumpInterrupted, parse)

V4, V6 = socket.AF_INET, socket.AF_INET6
IF0, IF1, IF_OTHER = 100, 101, 7            # vEth0, vEth1, an interface that is not a vEth
MAC0, MAC1 = bytes.fromhex("0200000000a0"), bytes.fromhex("0200000000a1")
PEER_A, PEER_B = bytes.fromhex("0200000000d1"), bytes.fromhex("0200000000d2")


# ---------------------------------------------------------------- encoding
def attr(t, payload):
    return struct.pack("=HH", 4 + len(payload), t) + payload + b"\0" * (-len(payload) % 4)


def u32(t, v):
    return attr(t, struct.pack("=I", v))


def addr(a):
    return socket.inet_pton(V6 if ":" in a else V4, a)


def nlmsg(mtype, body, flags=0, seq=0):
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def route_msg(dst, plen, *, new=True, table=MAIN, rtype=1, tos=0, prio=0, oif=None, gw=None, mp=(),
              nhid=0, flags=0, mtu=0, encap=False):
    fam = V6 if ":" in dst else V4
    body = struct.pack("=BBBBBBBBI", fam, plen, 0, tos, table if table < 256 else 252, 3, 0, rtype, 0)
    a = attr(1, addr(dst)) + u32(15, table)
    if prio:
        a += u32(6, prio)
    if oif:
        a += u32(4, oif)
    if gw:
        a += attr(5, addr(gw))
    if mp:
        hops = b""
        for h_oif, h_gw, weight in mp:
            sub = attr(5, addr(h_gw)) if h_gw and (":" in h_gw) == (fam == V6) else \
                attr(18, struct.pack("=H", V6 if ":" in h_gw else V4) + addr(h_gw)) if h_gw else b""
            hops += struct.pack("=HBBi", 8 + len(sub), 0, weight - 1, h_oif) + sub
        a += attr(9, hops)
    if nhid:
        a += u32(30, nhid)
    if mtu:
        a += attr(8, u32(2, mtu))
    if encap:
        a += attr(21, struct.pack("=H", 1))
    return nlmsg(24 if new else 25, body + a, flags)


def nh_msg(nid, *, new=True, oif=None, gw=None, group=(), blackhole=False, fam=V4, flags=0):
    body = struct.pack("=BBBxI", fam, 0, 11, 0)
    a = u32(1, nid)
    if group:
        a += attr(2, b"".join(struct.pack("=IBBH", i, (w - 1) & 0xFF, (w - 1) >> 8, 0) for i, w in group))
    if blackhole:
        a += attr(4, b"")
    if oif:
        a += u32(5, oif)
    if gw:
        a += attr(6, addr(gw))
    return nlmsg(104 if new else 105, body + a, flags)


def neigh_msg(ifindex, dst, mac, state=NUD_REACHABLE, new=True):
    fam = V6 if ":" in dst else V4
    body = struct.pack("=BxxxiHBB", fam, ifindex, state, 0, 1)
    a = attr(1, addr(dst)) + (attr(2, mac) if mac else b"")
    return nlmsg(28 if new else 29, body + a)


class Fixture:
    """A mirror fed with encoded messages (and, with install, the C tables)."""

    def __init__(self, install=False):
        self.m = Mirror({IF0: 0, IF1: 1}, dp.PUNT)
        self.inst = Installer(self.m, adjs=range(60000, 61000), slots=range(60000, 61000),
                              bucket_range=(900000, 1000000)) if install else None

    def feed(self, *bufs):
        touched, neigh, nh = {}, set(), False
        for buf in bufs:
            for msg in parse(buf):
                ev = msg["event"]
                if ev.endswith("ROUTE"):
                    k = self.m.route(msg)
                    if k:
                        touched[k] = None
                elif ev.endswith("NEXTHOP"):
                    touched.update(dict.fromkeys(self.m.nexthop(msg)[1]))
                    nh = True
                elif ev.endswith("NEIGH"):
                    k = self.m.neighbour(msg)
                    if k:
                        neigh.add(k)
                        touched[(k[1], k[2], 32 if k[1] == V4 else 128)] = None
        if self.inst is not None:
            touched.update(dict.fromkeys(self.m.host_keys_under(set(touched))))
            self.inst.apply(touched, nh_changed=nh, neigh=neigh)
        return touched

    def want(self, dst, plen):
        fam = V6 if ":" in dst else V4
        return self.m.desired((fam, addr(dst), plen))


def key(port, gw):
    return (port, V6 if ":" in gw else V4, addr(gw))


# ---------------------------------------------------------------- decoding
def test_decode_multipath_weights_via_and_metrics():
    buf = route_msg("10.9.0.0", 24, mp=[(IF1, "10.1.0.2", 3), (IF0, "fe80::1", 1)], prio=20, mtu=1400)
    (m,) = parse(buf)
    assert m["event"] == "RTM_NEWROUTE" and m["dst_len"] == 24 and m.get_attr("RTA_PRIORITY") == 20
    hops = m.get_attr("RTA_MULTIPATH")
    assert [(h["oif"], h["weight"]) for h in hops] == [(IF1, 3), (IF0, 1)]
    assert hops[0].get_attr("RTA_GATEWAY") == addr("10.1.0.2")
    assert hops[1].get_attr("RTA_VIA") == (V6, addr("fe80::1"))
    assert m.get_attr("RTA_METRICS") == {2: 1400}


def test_decode_nexthop_group_weights():
    (m,) = parse(nh_msg(20, group=[(16, 1), (21, 300)]))
    assert m["event"] == "RTM_NEWNEXTHOP" and m.get_attr("NHA_ID") == 20
    assert m.get_attr("NHA_GROUP") == [(16, 1), (21, 300)]


def test_interrupted_dump_is_refused_and_other_sequences_skipped():
    good = route_msg("10.9.0.0", 24, oif=IF1)
    other = bytearray(good)
    struct.pack_into("=I", other, 8, 99)                      # another sequence number
    done = nlmsg(3, struct.pack("=i", 0), seq=7)
    mine = bytearray(good)
    struct.pack_into("=I", mine, 8, 7)
    out = parse(bytes(other) + bytes(mine) + done, seq=7)
    assert len(out) == 2 and out[-1] == "DONE"
    intr = bytearray(mine)
    struct.pack_into("=H", intr, 6, NLM_F_DUMP_INTR)
    with pytest.raises(DumpInterrupted):
        parse(bytes(intr), seq=7)


# ---------------------------------------------------------------- meanings
def test_routes_keyed_as_linux_keys_them_ipv4_append_replace_delete():
    f = Fixture()
    f.feed(route_msg("10.9.0.0", 24, oif=IF1, gw="10.1.0.2"))
    assert f.want("10.9.0.0", 24) == ("adj", key(1, "10.1.0.2"))
    f.feed(route_msg("10.9.0.0", 24, oif=IF1, gw="10.1.0.3", flags=NLM_F_APPEND))
    assert f.want("10.9.0.0", 24) == ("adj", key(1, "10.1.0.2"))          # the first is used
    f.feed(route_msg("10.9.0.0", 24, new=False, oif=IF1, gw="10.1.0.2"))
    assert f.want("10.9.0.0", 24) == ("adj", key(1, "10.1.0.3"))          # then the appended one
    f.feed(route_msg("10.9.0.0", 24, oif=IF0, gw="10.0.0.9", flags=NLM_F_REPLACE))
    assert f.want("10.9.0.0", 24) == ("adj", key(0, "10.0.0.9"))
    # another metric is another route; the lowest metric wins
    f.feed(route_msg("10.9.0.0", 24, oif=IF1, gw="10.1.0.7", prio=5))
    assert f.want("10.9.0.0", 24) == ("adj", key(0, "10.0.0.9"))
    f.feed(route_msg("10.9.0.0", 24, new=False, oif=IF0, gw="10.0.0.9"))
    assert f.want("10.9.0.0", 24) == ("adj", key(1, "10.1.0.7"))
    f.feed(route_msg("10.9.0.0", 24, new=False, oif=IF1, gw="10.1.0.7", prio=5))
    assert f.want("10.9.0.0", 24) is None and not f.m.routes


def test_ipv6_siblings_join_and_leave_one_by_one():
    f = Fixture()
    f.feed(route_msg("2001:db8:aa::", 48, oif=IF1, gw="2001:db8:1::2", prio=1024))
    f.feed(route_msg("2001:db8:aa::", 48, oif=IF1, gw="2001:db8:1::3", prio=1024, flags=NLM_F_APPEND))
    assert f.want("2001:db8:aa::", 48) == ("group", ((key(1, "2001:db8:1::2"), 1),
                                                     (key(1, "2001:db8:1::3"), 1)))
    f.feed(route_msg("2001:db8:aa::", 48, new=False, oif=IF1, gw="2001:db8:1::3", prio=1024))
    assert f.want("2001:db8:aa::", 48) == ("adj", key(1, "2001:db8:1::2"))
    f.feed(route_msg("2001:db8:aa::", 48, new=False, oif=IF1, gw="2001:db8:1::2", prio=1024))
    assert f.want("2001:db8:aa::", 48) is None


def test_local_table_first_and_broadcasts():
    f = Fixture()
    f.feed(route_msg("10.1.0.0", 24, oif=IF1),
           route_msg("10.1.0.1", 32, table=LOCAL, rtype=2, oif=IF1),
           route_msg("10.1.0.255", 32, table=LOCAL, rtype=3, oif=IF1),
           route_msg("10.7.0.0", 16, oif=IF1, gw="10.1.0.2"),
           route_msg("10.0.0.0", 8, table=LOCAL, rtype=2, oif=1))          # AnyIP: 10/8 is ours
    assert f.want("10.1.0.1", 32) == ("punt", dp.PUNT["local"])
    assert f.want("10.1.0.255", 32) == ("punt", dp.PUNT["ip_multicast"])
    # a narrower main route inside a wider local one is local, as in Linux
    assert f.want("10.7.0.0", 16) == ("punt", dp.PUNT["local"])
    assert f.want("10.1.0.0", 24) == ("punt", dp.PUNT["local"])
    f.feed(route_msg("10.0.0.0", 8, new=False, table=LOCAL, rtype=2, oif=1))
    assert f.want("10.7.0.0", 16) == ("adj", key(1, "10.1.0.2"))
    assert f.want("10.1.0.0", 24) == ("glean", 1)


def test_what_the_kernel_keeps():
    f = Fixture()
    nf = ("punt", dp.PUNT["not_fast"])
    f.feed(route_msg("10.20.0.0", 16, oif=IF1, gw="10.1.0.2", tos=0x10),
           route_msg("10.21.0.0", 16, oif=IF1, gw="10.1.0.2", mtu=1400),
           route_msg("10.22.0.0", 16, oif=IF1, gw="10.1.0.2", encap=True),
           route_msg("10.23.0.0", 16, oif=IF_OTHER, gw="192.0.2.1"),
           route_msg("10.24.0.0", 16, rtype=6),                             # blackhole
           route_msg("10.25.0.0", 16, mp=[(IF1, "10.1.0.2", 1), (IF_OTHER, "192.0.2.1", 1)]),
           route_msg("10.26.0.0", 16, oif=IF1, gw="10.1.0.2", table=100))  # policy routing table
    for n in range(20, 26):
        assert f.want(f"10.{n}.0.0", 16) == nf, n
    assert f.want("10.26.0.0", 16) is None


def test_weights_normalised_and_expanded():
    m = normalise([(key(1, "10.1.0.2"), 2), (key(1, "10.1.0.3"), 4), (key(1, "10.1.0.2"), 2)])
    assert m == ((key(1, "10.1.0.2"), 1), (key(1, "10.1.0.3"), 1))
    b = buckets(((key(1, "10.1.0.2"), 1), (key(1, "10.1.0.3"), 3)))
    assert b.count(key(1, "10.1.0.3")) == 3 and len(b) == 4
    big = tuple((key(1, f"10.1.{i // 250}.{i % 250 + 1}"), 1 + i % 256) for i in range(300))
    b = buckets(big)
    assert len(b) <= 4096 + 300 and set(b) == {k for k, _ in big}


def test_neighbours_get_host_routes_under_their_connected_route():
    f = Fixture()
    f.feed(route_msg("10.1.0.0", 24, oif=IF1),
           neigh_msg(IF1, "10.1.0.2", PEER_A),
           neigh_msg(IF0, "10.1.0.3", PEER_B),                 # on the wrong port for 10.1.0.0/24
           neigh_msg(IF1, "10.1.0.4", PEER_B, state=NUD_FAILED))
    assert f.want("10.1.0.2", 32) == ("adj", key(1, "10.1.0.2"))
    assert f.want("10.1.0.3", 32) is None
    assert f.want("10.1.0.4", 32) is None
    f.feed(route_msg("10.1.0.2", 32, oif=IF0, gw="10.0.0.9"))  # an explicit host route wins
    assert f.want("10.1.0.2", 32) == ("adj", key(0, "10.0.0.9"))


def test_nexthop_objects_as_frr_installs_them():
    f = Fixture()
    f.feed(nh_msg(4, oif=IF1), nh_msg(16, oif=IF1, gw="10.1.0.2"), nh_msg(21, oif=IF0, gw="10.0.0.2"),
           nh_msg(20, group=[(16, 1), (21, 2)]), nh_msg(9, blackhole=True),
           route_msg("192.168.77.0", 24, nhid=16), route_msg("192.168.88.0", 24, nhid=20),
           route_msg("192.168.99.0", 24, nhid=20), route_msg("10.1.0.0", 24, nhid=4),
           route_msg("192.168.66.0", 24, nhid=9))
    assert f.want("192.168.77.0", 24) == ("nh", 16)
    assert f.want("192.168.88.0", 24) == ("nh", 20) == f.want("192.168.99.0", 24)
    assert f.want("10.1.0.0", 24) == ("glean", 1)
    assert f.want("192.168.66.0", 24) == ("punt", dp.PUNT["not_fast"])
    assert f.m.nh_content(20) == ("buckets", ((key(0, "10.0.0.2"), 2), (key(1, "10.1.0.2"), 1)))
    # a nexthop that changes moves its routes without touching them
    touched = f.feed(nh_msg(16, oif=IF1, gw="10.1.0.9", flags=NLM_F_REPLACE))
    assert touched == {} and f.m.nh_content(16) == ("buckets", ((key(1, "10.1.0.9"), 1),))
    assert f.m.nh_content(20) == ("buckets", ((key(0, "10.0.0.2"), 2), (key(1, "10.1.0.9"), 1)))
    # a route that moves to another object
    f.feed(route_msg("192.168.88.0", 24, nhid=16, flags=NLM_F_REPLACE))
    assert f.want("192.168.88.0", 24) == ("nh", 16)
    # a deleted member leaves its groups; a deleted object takes its routes
    f.feed(nh_msg(21, new=False))
    assert f.m.nh_content(20) == ("buckets", ((key(1, "10.1.0.9"), 1),))
    touched = f.feed(nh_msg(16, new=False))
    assert set(touched) >= {(V4, addr("192.168.77.0"), 24), (V4, addr("192.168.88.0"), 24)}
    assert f.want("192.168.77.0", 24) is None and 20 not in f.m.nhs     # group 20 emptied: gone
    assert f.want("192.168.99.0", 24) is None


# ---------------------------------------------------------------- installed
def frame(dst, src="10.0.0.2", sport=1):
    if ":" in dst:
        return bytes(Ether(dst="02:00:00:00:00:a0") / IPv6(src="2001:db8::2", dst=dst) / UDP(sport=sport))
    return bytes(Ether(dst="02:00:00:00:00:a0") / IP(src=src, dst=dst) / UDP(sport=sport))


def where(dst, sport=1):
    v, _ = dp.classify(0, frame(dst, sport=sport))
    return v.mac if v.action == dp.lib.KG_VERDICT_FORWARD else v.name


@pytest.fixture
def installed(fib_tables):
    dp.fib_port(0, MAC0, 1500)
    dp.fib_port(1, MAC1, 1500)
    dp.fib_forwarding(0, True, True)
    dp.fib_forwarding(1, True, True)
    f = Fixture(install=True)
    yield f
    # everything the test installed goes, and every index comes back
    for k in list(f.m.routes):
        f.m.routes.pop(k)
    f.m.neigh.clear()
    f.m.nhs.clear()
    f.inst.apply(list(f.inst.installed) + list(f.inst.failed), nh_changed=True)
    assert not f.inst.installed and not f.inst.adj_ref and not f.inst.slot_ref
    assert f.inst.ranges.free == [(900000, 100000)]


def test_nexthop_object_change_moves_every_route_at_once(installed):
    f = installed
    f.feed(neigh_msg(IF1, "10.1.0.2", PEER_A), neigh_msg(IF1, "10.1.0.3", PEER_B),
           nh_msg(16, oif=IF1, gw="10.1.0.2"),
           *[route_msg(f"172.30.{i}.0", 24, nhid=16) for i in range(50)])
    assert {where(f"172.30.{i}.1") for i in range(50)} == {"02:00:00:00:00:d1"}
    assert f.inst.view()["groups"] == 1 and f.inst.view()["fast4"] == 50
    f.feed(nh_msg(16, oif=IF1, gw="10.1.0.3", flags=NLM_F_REPLACE))
    assert {where(f"172.30.{i}.1") for i in range(50)} == {"02:00:00:00:00:d2"}
    # the first object's adjacency was released, the slot kept
    assert len(f.inst.adj_ref) == 1 and f.inst.view()["groups"] == 1


def test_default_route_and_weighted_group_installed(installed):
    f = installed
    f.feed(neigh_msg(IF1, "10.1.0.2", PEER_A), neigh_msg(IF1, "10.1.0.3", PEER_B),
           route_msg("0.0.0.0", 0, mp=[(IF1, "10.1.0.2", 1), (IF1, "10.1.0.3", 3)]),
           route_msg("::", 0, oif=IF1, gw="fe80::2"))
    seen = [where("198.18.0.1", sport=s) for s in range(4000)]
    share = seen.count("02:00:00:00:00:d2") / len(seen)
    assert set(seen) == {"02:00:00:00:00:d1", "02:00:00:00:00:d2"} and 0.68 < share < 0.82, share
    assert where("2001:db8:5::1") == "punt:unresolved"          # fe80::2 not resolved yet
    f.feed(neigh_msg(IF1, "fe80::2", PEER_B))
    assert where("2001:db8:5::1") == "02:00:00:00:00:d2"
    # a second multipath route with the same members shares the slot
    f.feed(route_msg("198.19.0.0", 16, mp=[(IF1, "10.1.0.3", 6), (IF1, "10.1.0.2", 2)]))
    assert f.inst.view()["groups"] == 1
    assert f.inst.slot_ref[next(iter(f.inst.slot_ref))] == 2
    f.feed(neigh_msg(IF1, "10.1.0.3", None, new=False))
    assert "punt:unresolved" in {where("198.18.0.1", sport=s) for s in range(200)}


def test_overflow_is_counted_punted_and_retried(installed):
    """4096 rules: the routes that do not fit are not installed; their
    covering prefix punts (table_full) instead of forwarding them to its own
    next hop; deletes make room and the missing ones go in."""
    f = installed
    f.feed(neigh_msg(IF1, "10.1.0.2", PEER_A), route_msg("100.64.0.0", 10, oif=IF1, gw="10.1.0.2"))
    assert where("100.80.1.1") == "02:00:00:00:00:d1"
    f.feed(*[route_msg(f"100.{64 + i // 256}.{i % 256}.0", 24, oif=IF1, gw="10.1.0.2") for i in range(4200)])
    v = f.inst.view()
    assert v["not_installed4"] > 0 and v["install_failures"] >= v["not_installed4"]
    missing = sorted(f.inst.failed)[-1]
    dst = socket.inet_ntoa(missing[1][:3] + b"\x01")
    assert where(dst) == "punt:table_full"
    assert where("100.64.0.1") == "02:00:00:00:00:d1"           # installed ones still forward
    # the routes that fit were the first ones told
    assert (V4, addr("100.64.0.0"), 24) in f.inst.installed
    f.feed(*[route_msg(f"100.{64 + i // 256}.{i % 256}.0", 24, new=False, oif=IF1, gw="10.1.0.2")
             for i in range(400)])
    assert f.inst.view()["not_installed4"] == 0 and not f.inst.shadowed
    assert where(dst) == "02:00:00:00:00:d1"


def test_range_allocator_coalesces():
    r = RangeAllocator(100)
    a, b, c = r.alloc(10), r.alloc(20), r.alloc(30)
    assert (a, b, c) == (0, 10, 30)
    r.release(b, 20)
    assert r.alloc(25) == 60
    r.release(a, 10)
    r.release(c, 30)
    assert r.alloc(60) == 0
    r.release(0, 60)
    r.release(60, 25)
    assert r.free == [(0, 100)]
