"""The C classifier and forwarding rewrite (DESIGN.md section 2) over real
DPDK LPM tables, without ports: EAL runs in this process with --no-huge
--no-shconf, on a thread of its own (EAL pins the thread that starts it)."""

import pytest
from scapy.all import ARP, Dot1Q, Ether, ICMPv6ND_NS, IP, IPOption_RR, IPv6, IPv6ExtHdrHopByHop, Raw, UDP

from .frames import mac, v4, v6
from kni_gw.dataplane import classify, ffi, lib

MAC0, MAC1 = "02:00:00:00:00:a0", "02:00:00:00:00:a1"
PEER0, PEER1 = "02:00:00:00:00:b0", "02:00:00:00:00:b1"
ADJ_PEER1, ADJ_OTHER, ADJ_UNRESOLVED, ADJ_C1 = 32, 33, 34, 35


@pytest.fixture(scope="module", autouse=True)
def tables(fib_tables):
    lib.kg_fib_port(0, mac(MAC0), 1500)
    lib.kg_fib_port(1, mac(MAC1), 1500)
    lib.kg_fib_forwarding(0, 1, 1)
    lib.kg_fib_forwarding(1, 1, 1)
    lib.kg_adj_set(ADJ_PEER1, 1, mac(PEER1))
    lib.kg_adj_set(ADJ_OTHER, 0, mac(PEER0))
    lib.kg_adj_clear(ADJ_UNRESOLVED)
    routes = [("10.0.0.0", 24, lib.KG_PUNT_GLEAN), ("10.1.0.0", 24, lib.KG_PUNT_GLEAN),
              ("10.0.0.1", 32, lib.KG_PUNT_LOCAL), ("10.1.0.1", 32, lib.KG_PUNT_LOCAL),
              ("10.0.0.255", 32, lib.KG_PUNT_IP_MULTICAST), ("10.1.0.2", 32, ADJ_PEER1),
              ("10.2.0.0", 16, ADJ_PEER1), ("10.4.0.0", 16, ADJ_UNRESOLVED),
              ("10.5.0.0", 16, lib.KG_PUNT_NOT_FAST), ("10.6.0.0", 16, ADJ_OTHER),
              ("10.3.0.0", 16, lib.KG_NH_GROUP | 7)]
    arr = ffi.new("unsigned int[]", [ADJ_PEER1, ADJ_C1])
    lib.kg_adj_set(ADJ_C1, 1, mac("02:00:00:00:00:c1"))
    assert lib.kg_group_set(7, 0, arr, 2) == 0
    for ip, plen, nh in routes:
        assert lib.kg_route4_add(v4(ip), plen, nh) == 0, (ip, plen)
    assert lib.kg_route6_add(v6("2001:db8:1::"), 64, ADJ_PEER1) == -1  # only between begin/end
    assert lib.kg_route6_begin() == 0
    for ip, plen, nh in [("2001:db8:1::", 64, lib.KG_PUNT_GLEAN), ("2001:db8:1::2", 128, ADJ_PEER1),
                         ("2001:db8:0::1", 128, lib.KG_PUNT_LOCAL), ("2001:db8:9::", 48, ADJ_PEER1)]:
        assert lib.kg_route6_add(v6(ip), plen, nh) == 0
    lib.kg_route6_end()
    yield


def ether(dst=MAC0, src=PEER0):
    return Ether(dst=dst, src=src)


def frame4(dst="10.1.0.2", src="10.0.0.2", ttl=64, payload=b"x" * 18, **kw):
    return bytes(ether(**kw) / IP(src=src, dst=dst, ttl=ttl) / UDP(sport=1234, dport=80) / payload)


def verdict(frame, port=0):
    return classify(port, frame)[0].name


def test_forward_rewrites_like_the_kernel():
    f = frame4(ttl=64)
    v, out = classify(0, f)
    assert v.name == "forward:1" and v.mac == PEER1
    got = Ether(out)
    assert got.dst == PEER1 and got.src == MAC1
    assert got[IP].ttl == 63
    # the checksum is right, and equal to a full recomputation
    chk = got[IP].chksum
    del got[IP].chksum
    assert IP(bytes(got[IP]))[IP].chksum == chk
    # nothing else changed
    assert out[14:22] == f[14:22] and out[23] == f[23] and out[26:] == f[26:]


def test_checksum_rewrite_matches_every_ttl():
    for ttl in range(2, 256, 7):
        for tos in (0, 0xB8):
            f = bytes(ether() / IP(src="10.0.0.2", dst="10.2.3.4", ttl=ttl, tos=tos, id=ttl * 77) / UDP())
            v, out = classify(0, f)
            assert v.name == "forward:1"
            ip = IP(out[14:])
            chk = ip.chksum
            del ip.chksum
            assert IP(bytes(ip)).chksum == chk, (ttl, tos)


def linux_decrease_ttl_check(b10: int, b11: int) -> bytes:
    """ip_decrease_ttl() as Linux runs it on a little-endian CPU (this
    machine's kernel, the differential tests' oracle): the checksum field
    read as a native u16, htons(0x0100) added, 0xffff folded."""
    check = (b11 << 8 | b10) + 0x0001
    check = (check + (check >= 0xFFFF)) & 0xFFFF
    return bytes([check & 0xFF, check >> 8])


def test_checksum_rewrite_is_linux_bytes_at_every_carry():
    """The rewrite works in network byte order (no CPU byte order assumed)
    and gives Linux's bytes exactly, including the carries and the 0xffff
    fold, whatever the checksum field held (a valid header cannot reach
    every value, so the field is set directly and the check is on bytes)."""
    def csum_add(a, b):
        s = a + b
        return (s & 0xFFFF) + (s >> 16)

    base = IP(frame4(ttl=64)[14:])
    base.id = 0
    del base.chksum
    hdr = bytes(IP(bytes(base)))[:20]
    s0 = 0
    for i in range(0, 20, 2):
        if i != 10:
            s0 = csum_add(s0, hdr[i] << 8 | hdr[i + 1])
    tried = 0
    for b10 in (0x00, 0x01, 0x7F, 0xFE, 0xFF):
        for b11 in (0x00, 0x01, 0xFE, 0xFF):
            want = b10 << 8 | b11
            if want == 0xFFFF:      # scapy writes 0x0000 there (the test below has it)
                continue
            # the id that makes the header's checksum `want`: ~(s0 + id) == want
            ident = (~want & 0xFFFF) + (~s0 & 0xFFFF)
            ident = ((ident & 0xFFFF) + (ident >> 16)) & 0xFFFF
            ip = IP(hdr)
            ip.id = ident
            del ip.chksum
            raw = bytes(IP(bytes(ip)))
            assert raw[10:12] == bytes([b10, b11]), (hex(want), raw[10:12].hex())
            v, out = classify(0, frame4(ttl=64)[:14] + raw + frame4(ttl=64)[34:])
            assert v.name == "forward:1"
            assert out[24:26] == linux_decrease_ttl_check(b10, b11), (hex(b10), hex(b11))
            tried += 1
    assert tried == 19


def test_checksum_rewrite_is_linux_bytes_for_every_checksum():
    """Every value of the checksum field, at the lowest, a middle and the
    highest TTL forwarded: the rewrite's TTL and checksum bytes are Linux's,
    and the protocol byte is untouched. A computed checksum is never
    0xffff, but a header whose other words sum to 0xffff is valid with
    0x0000 or 0xffff there, and both Linux and kni-gw forward it."""
    def fold(x):
        while x >> 16:
            x = (x & 0xFFFF) + (x >> 16)
        return x

    eth = bytes(ether())[:12] + bytes([0x08, 0x00])
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 2, 3, 4])
    # a UDP header and 18 bytes: the 60 bytes kg_rewrite takes
    udp = bytes([0x04, 0xD2, 0x00, 0x50, 0x00, 26, 0x00, 0x00]) + b"x" * 18
    v = ffi.new("struct kg_verdict *")
    buf = ffi.new("unsigned char[]", 60)
    checked = 0
    for ttl in (2, 64, 255):
        # the header's words but the id's and the checksum's
        s0 = fold(0x4500 + 46 + (ttl << 8 | 17) + 0x0A00 + 0x0002 + 0x0A02 + 0x0304)
        for want in range(0x10000):
            ident = fold((~want & 0xFFFF) + (~s0 & 0xFFFF))
            hdr = bytes([0x45, 0, 0, 46, ident >> 8, ident & 0xFF, 0, 0, ttl, 17,
                         want >> 8, want & 0xFF]) + src + dst
            buf[0:60] = eth + hdr + udp
            lib.kg_classify(0, buf, 60, v)
            assert v.action == lib.KG_VERDICT_FORWARD, (ttl, hex(want))
            assert lib.kg_rewrite(buf, 60, v) == 60
            out = bytes(ffi.buffer(buf, 60))
            assert out[22:26] == bytes([ttl - 1, 17]) + linux_decrease_ttl_check(want >> 8, want & 0xFF), \
                (ttl, hex(want), out[22:26].hex())
            checked += 1
    assert checked == 3 * 0x10000


def test_ethernet_padding_is_removed():
    f = frame4(payload=b"")          # 42 bytes; padded to 60 on the wire
    padded = f + b"\x00" * (60 - len(f))
    v, out = classify(0, padded)
    assert v.name == "forward:1" and len(out) == len(f)


@pytest.mark.parametrize("frame, expect", [
    (frame4(ttl=1), "punt:ttl"),
    (frame4(ttl=0), "punt:ttl"),
    (bytes(ether() / IP(src="10.0.0.2", dst="10.1.0.2", options=[IPOption_RR()]) / UDP()), "punt:options"),
    (frame4(dst="10.0.0.1"), "punt:local"),
    (frame4(dst="10.0.0.255"), "punt:ip_multicast"),
    (frame4(dst="224.0.0.5"), "punt:ip_multicast"),
    (frame4(dst="255.255.255.255"), "punt:ip_multicast"),
    (frame4(dst="192.168.7.7"), "punt:no_route"),
    (frame4(dst="10.1.0.77"), "punt:glean"),
    (frame4(dst="10.4.1.1"), "punt:unresolved"),
    (frame4(dst="10.5.1.1"), "punt:not_fast"),
    (frame4(dst="10.6.1.1"), "punt:not_fast"),         # back out of port 0: the kernel redirects
    (frame4(src="127.0.0.1"), "punt:special"),
    (frame4(src="0.1.2.3"), "punt:special"),
    (frame4(src="10.0.0.1"), "punt:special"),           # our own address as source: martian
    (frame4(dst="127.0.0.1"), "punt:special"),
    (bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER0) / IP(src="10.0.0.2", dst="10.1.0.2") / UDP()),
     "punt:l2_multicast"),
    (bytes(Ether(dst="02:00:00:00:00:99", src=PEER0) / IP(src="10.0.0.2", dst="10.1.0.2") / UDP()), "punt:not_ours"),
    (bytes(ether() / ARP(pdst="10.0.0.1")), "punt:not_ip"),
    (bytes(ether() / Dot1Q(vlan=5) / IP(src="10.0.0.2", dst="10.1.0.2") / UDP()), "punt:vlan"),
])
def test_punts(frame, expect):
    assert verdict(frame) == expect


def test_drops_what_the_kernel_drops():
    good = frame4()
    bad_sum = bytearray(good)
    bad_sum[24] ^= 0xFF
    assert verdict(bytes(bad_sum)) == "drop:bad_checksum"
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x44
    assert verdict(bytes(bad_ihl)) == "drop:bad_header"
    bad_ver = bytearray(good)
    bad_ver[14] = 0x55
    assert verdict(bytes(bad_ver)) == "drop:bad_header"
    # total length beyond the frame: truncated
    assert verdict(good[:-4]) == "drop:runt"
    for n in list(range(0, 14)) + list(range(14, 34)):
        assert verdict(good[:n]).startswith("drop:runt"), n


def test_mtu_and_forwarding_sysctl():
    lib.kg_fib_port(1, mac(MAC1), 1000)
    try:
        assert verdict(frame4(payload=b"y" * 1200)) == "punt:mtu"
        assert verdict(frame4(payload=b"y" * 900)) == "forward:1"
    finally:
        lib.kg_fib_port(1, mac(MAC1), 1500)
    lib.kg_fib_forwarding(0, 0, 1)
    try:
        assert verdict(frame4()) == "punt:forwarding_off"
    finally:
        lib.kg_fib_forwarding(0, 1, 1)


def test_ecmp_spreads_flows_and_keeps_each_flow_on_one_path():
    seen = {}
    for sport in range(200):
        f = bytes(ether() / IP(src="10.0.0.2", dst="10.3.0.9") / UDP(sport=sport, dport=53))
        v, _ = classify(0, f)
        seen.setdefault(v.mac, 0)
        seen[v.mac] += 1
        assert classify(0, f)[0].mac == v.mac
    assert set(seen) == {PEER1, "02:00:00:00:00:c1"} and min(seen.values()) > 50


def test_ipv6():
    def f6(dst="2001:db8:1::2", src="2001:db8:0::2", hlim=64, ext=None, payload=None):
        p = ether() / IPv6(src=src, dst=dst, hlim=hlim)
        if ext is not None:
            p = p / ext
        return bytes(p / (payload if payload is not None else UDP(sport=1, dport=2) / Raw(b"z" * 10)))

    v, out = classify(0, f6())
    assert v.name == "forward:1"
    got = Ether(out)
    assert got.dst == PEER1 and got.src == MAC1 and got[IPv6].hlim == 63
    assert out[14 + 8:] == f6()[14 + 8:]
    assert verdict(f6(dst="2001:db8:9:1::5")) == "forward:1"
    assert verdict(f6(hlim=1)) == "punt:ttl"
    assert verdict(f6(dst="2001:db8:0::1")) == "punt:local"
    assert verdict(f6(dst="2001:db8:1::99")) == "punt:glean"
    assert verdict(f6(dst="2001:db8:77::1")) == "punt:no_route"
    assert verdict(f6(dst="ff02::1")) == "punt:ip_multicast"
    assert verdict(f6(src="fe80::1")) == "punt:special"
    assert verdict(f6(dst="::ffff:10.1.0.2")) == "punt:special"
    assert verdict(f6(ext=IPv6ExtHdrHopByHop())) == "punt:options"
    assert verdict(f6(dst="2001:db8:1::2", payload=ICMPv6ND_NS(tgt="2001:db8:1::2"))) == "punt:icmpv6"
    assert verdict(f6()[:-3]) == "drop:runt"


def test_rewrite_is_safe_on_any_bytes():
    """kg_rewrite only touches a frame shaped like one it would forward."""
    v = ffi.new("struct kg_verdict *", {"action": lib.KG_VERDICT_FORWARD, "egress": 200})
    for blob in (b"", b"\x00" * 13, b"\xff" * 60, bytes(range(256))):
        buf = ffi.new("unsigned char[]", blob or b"\x00")
        assert lib.kg_rewrite(buf, len(blob), v) <= max(len(blob), 1)


def test_default_routes_are_in_the_fast_path():
    """0/0 and ::/0 (which rte_lpm refuses as depth 0) forward like any prefix."""
    assert verdict(frame4(dst="192.168.7.7")) == "punt:no_route"
    assert lib.kg_route4_add(0, 0, ADJ_PEER1) == 0
    try:
        assert verdict(frame4(dst="192.168.7.7")) == "forward:1"
        assert verdict(frame4(dst="10.1.0.77")) == "punt:glean"     # longer prefixes still win
        assert verdict(frame4(dst="10.0.0.1")) == "punt:local"
    finally:
        assert lib.kg_route4_del(0, 0) == 0
    assert lib.kg_route4_del(0, 0) == -2                              # -ENOENT: no default now
    assert verdict(frame4(dst="192.168.7.7")) == "punt:no_route"
    f6 = bytes(ether() / IPv6(src="2001:db8:0::2", dst="2001:db8:77::1") / UDP())
    assert verdict(f6) == "punt:no_route"
    assert lib.kg_route6_begin() == 0
    assert lib.kg_route6_add(bytes(16), 0, lib.KG_NH_GROUP | 7) == 0
    lib.kg_route6_end()
    try:
        assert verdict(f6) == "forward:1"
    finally:
        assert lib.kg_route6_begin() == 0
        assert lib.kg_route6_del(bytes(16), 0) == 0
        lib.kg_route6_end()
    assert verdict(f6) == "punt:no_route"


def test_group_slot_is_repointed_whole_and_honours_weights():
    """A slot moves every route through it at once; buckets carry weights;
    a slot may punt."""
    peer_c1 = "02:00:00:00:00:c1"

    def spread():
        seen = {}
        for sport in range(2000):
            f = bytes(ether() / IP(src="10.0.0.2", dst="10.3.0.9") / UDP(sport=sport, dport=53))
            v = classify(0, f)[0]
            seen[v.mac if v.action == lib.KG_VERDICT_FORWARD else v.name] = \
                seen.get(v.mac if v.action == lib.KG_VERDICT_FORWARD else v.name, 0) + 1
        return seen

    try:
        # weights 3:1 as 4 buckets in a fresh range, then the slot points there
        assert lib.kg_group_set(7, 16, ffi.new("unsigned int[]", [ADJ_PEER1] * 3 + [ADJ_C1]), 4) == 0
        s = spread()
        assert set(s) == {PEER1, peer_c1} and 0.65 < s[PEER1] / 2000 < 0.85, s
        assert lib.kg_group_punt(7, lib.KG_PUNT_NOT_FAST) == 0
        assert spread() == {"punt:not_fast": 2000}
        assert lib.kg_group_punt(7, lib.KG_PUNT_MAX) == -22               # -EINVAL
        assert lib.kg_group_set(7, lib.KG_BUCKET_MAX - 1, ffi.new("unsigned int[]", [32, 32]), 2) == -22
        assert lib.kg_group_set(7, 0, ffi.new("unsigned int[]", [3]), 1) == -22   # not an adjacency
    finally:
        assert lib.kg_group_set(7, 0, ffi.new("unsigned int[]", [ADJ_PEER1, ADJ_C1]), 2) == 0
    s = spread()
    assert set(s) == {PEER1, peer_c1} and min(s.values()) > 800


def test_fragments_of_a_datagram_take_one_path():
    """Ports are not hashed for any fragment (MF or offset), as Linux."""
    whole = IP(src="10.0.0.2", dst="10.3.0.9", id=4242) / UDP(sport=7, dport=9) / Raw(b"q" * 64)
    for sport in range(40):
        whole[UDP].sport = sport
        first = IP(bytes(whole))
        first.flags = "MF"
        del first.chksum
        later = IP(src="10.0.0.2", dst="10.3.0.9", id=4242, frag=3, proto=17) / Raw(b"q" * 24)
        a = classify(0, bytes(ether() / first))[0]
        b = classify(0, bytes(ether() / later))[0]
        assert a.name == b.name == "forward:1" and a.mac == b.mac


def test_source_neighbour_is_heard_or_flagged_as_moved():
    """A frame from a neighbour's address with another source MAC than its
    adjacency's names that adjacency (the control side then has the kernel
    probe it); the frame itself is forwarded as usual."""
    # 10.1.0.2 is a neighbour on port 1 with MAC PEER1 (host route to ADJ_PEER1)
    f = bytes(Ether(dst=MAC1, src=PEER1) / IP(src="10.1.0.2", dst="10.2.9.9") / UDP())
    lib.kg_route4_add(v4("10.2.9.0"), 24, ADJ_OTHER)     # back to port 0
    try:
        v = classify(1, f)[0]
        assert v.name == "forward:0" and v.moved == 0 and v.heard == ADJ_PEER1
        moved = bytes(Ether(dst=MAC1, src="02:00:00:00:00:77") / IP(src="10.1.0.2", dst="10.2.9.9") / UDP())
        v = classify(1, moved)[0]
        assert v.name == "forward:0" and v.moved == ADJ_PEER1 and v.heard == 0
        # on another port than the adjacency's, it says nothing
        v = classify(0, bytes(Ether(dst=MAC0, src="02:00:00:00:00:77") / IP(src="10.1.0.2", dst="10.2.9.9")
                              / UDP()))[0]
        assert v.moved == 0 and v.heard == 0
    finally:
        lib.kg_route4_del(v4("10.2.9.0"), 24)


def test_ipv6_egress_mtu_is_the_interfaces_ipv6_mtu():
    big = bytes(ether() / IPv6(src="2001:db8:0::2", dst="2001:db8:1::2") / UDP() / Raw(b"m" * 1352))
    assert verdict(big) == "forward:1"                      # 1400 bytes of IPv6
    assert lib.kg_fib_port_mtu6(1, 1280) == 0
    try:
        assert verdict(big) == "punt:mtu"
        assert verdict(frame4(payload=b"y" * 1400)) == "forward:1"   # IPv4 keeps the port's MTU
    finally:
        lib.kg_fib_port_mtu6(1, 0)
    assert verdict(big) == "forward:1"


def test_reason_names_come_from_c():
    from kni_gw import dataplane
    assert dataplane.PUNT_REASONS[lib.KG_PUNT_TABLE_FULL] == "table_full"
    assert dataplane.DROP_REASONS[lib.KG_DROP_POLICED] == "policed"
    assert len(set(dataplane.PUNT_REASONS)) == lib.KG_PUNT_MAX
    assert set(dataplane.RX_DROPS) | set(dataplane.EXC_DROPS) | set(dataplane.TX_DROPS) == \
        set(dataplane.DROP_REASONS)


def police(frame, port=0):
    """The class a punted frame is policed in (dataplane.POLICE_CLASSES), or None."""
    from kni_gw.dataplane import POLICE_CLASSES
    c = lib.kg_police(port, frame, len(frame))
    return None if c < 0 else POLICE_CLASSES[c]


def test_policing_classes_keep_control_traffic_apart_from_floods():
    from scapy.all import (TCP, ICMP, ICMPv6EchoRequest, ICMPv6MLReport2, ICMPv6ND_RA, ICMPv6ND_RS,
                           IPOption_Router_Alert, RouterAlert)
    bcast = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER0)
    mcast4 = Ether(dst="01:00:5e:00:00:05", src=PEER0)
    mcast6 = Ether(dst="33:33:00:00:00:01", src=PEER0)
    hbh = IPv6ExtHdrHopByHop(options=[RouterAlert()])
    ospf = b"\x02\x01\x00\x2c" + b"\x00" * 40          # an OSPFv2 hello's first bytes
    cases = [
        # ARP, ND, RS/RA, MLD: their own classes, multicast or not, options or not
        (bytes(bcast / ARP(pdst="10.0.0.1")), "arp"),
        (bytes(mcast6 / IPv6(src="fe80::2", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="2001:db8::1")), "nd"),
        (bytes(ether() / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6ND_NS(tgt="fe80::1")), "nd"),
        (bytes(mcast6 / IPv6(src="fe80::2", dst="ff02::2") / ICMPv6ND_RS()), "nd"),
        (bytes(mcast6 / IPv6(src="fe80::2", dst="ff02::1") / ICMPv6ND_RA()), "nd"),
        (bytes(mcast6 / IPv6(src="fe80::2", dst="ff02::16") / hbh / ICMPv6MLReport2()), "nd"),
        # routing protocols: OSPF hellos to 224.0.0.5 / ff02::5, BGP over link-local or global
        (bytes(mcast4 / IP(src="10.0.0.2", dst="224.0.0.5", proto=89, ttl=1) / Raw(ospf)), "routing"),
        (bytes(mcast6 / IPv6(src="fe80::2", dst="ff02::5", nh=89) / Raw(ospf)), "routing"),
        (bytes(ether() / IPv6(src="fe80::2", dst="fe80::1") / TCP(sport=40000, dport=179)), "routing"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=179, dport=40000, flags="A")),
         "routing"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=49152, dport=3784)), "routing"),
        # to the gateway's own addresses: by what it carries, whatever its options
        (bytes(ether() / IPv6(src="2001:db8:0::2", dst="2001:db8:0::1") / IPv6ExtHdrHopByHop() /
               TCP(dport=22, flags="S")), "local"),
        (bytes(ether() / IPv6(src="2001:db8:0::2", dst="2001:db8:0::1") / IPv6ExtHdrHopByHop() /
               ICMPv6EchoRequest()), "icmp"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.0.0.1", options=[IPOption_Router_Alert()]) /
               TCP(dport=22, flags="S")), "local"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.0.0.1", options=[IPOption_RR()]) / ICMP()), "icmp"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(dport=53)), "dns"),
        (bytes(ether() / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6EchoRequest()), "icmp"),
        # the floods: broadcast, martian sources, transit with options
        (bytes(bcast / IP(src="10.0.0.2", dst="255.255.255.255") / UDP(dport=9)), "multicast"),
        (bytes(ether() / IP(src="127.0.0.1", dst="10.0.0.1") / UDP(dport=9)), "other"),
        (bytes(ether() / IP(src="0.1.2.3", dst="10.0.0.1") / TCP(dport=179)), "other"),  # martian BGP
        (bytes(ether() / IPv6(src="::1", dst="fe80::1") / ICMPv6EchoRequest()), "other"),
        (bytes(ether() / IP(src="10.0.0.2", dst="10.1.0.2", options=[IPOption_RR()]) / UDP()), "transit"),
        (bytes(ether() / IPv6(src="2001:db8:0::2", dst="2001:db8:1::2") / IPv6ExtHdrHopByHop() / UDP()),
         "transit"),
        (frame4(ttl=1), "error"),
        (frame4(dst="10.0.0.9"), "resolve"),
        (frame4(), None),                                   # forwarded: not policed
    ]
    for f, want in cases:
        assert police(f) == want, (Ether(f).summary(), police(f), want)
    # every cut of a punted frame still gets a class, never a crash
    for f, _ in cases:
        for k in range(len(f)):
            c = lib.kg_police(0, f[:k], k)
            assert -1 <= c < lib.KG_POLICE_MAX


def test_fast_lane_takes_plain_forwarding_and_leaves_the_rest():
    """The rx stage's fast lane (kg_fast4) forwards the usual IPv4 frame with
    the classifier's verdict (dataplane.classify checks that they agree on
    every frame of these tests), and leaves to the classifier whatever the
    classifier punts or drops, and 255.0.0.0/8."""
    v, _ = classify(0, frame4(ttl=64))
    assert v.name == "forward:1" and v.fast
    for f in (frame4(ttl=1), frame4(dst="10.0.0.1"), frame4(dst="224.0.0.5"),
              frame4(src="127.0.0.1"), frame4(dst="0.1.2.3"), frame4(dst="255.255.255.255"),
              frame4(dst="255.1.2.3"), frame4(src="10.0.0.1"),
              bytes(ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.2", dst="10.1.0.2") / UDP()),
              bytes(ether(dst="02:00:00:00:00:99") / IP(src="10.0.0.2", dst="10.1.0.2") / UDP()),
              bytes(ether() / IP(src="10.0.0.2", dst="10.1.0.2", options=b"\x01\x01\x01\x00") / UDP()),
              bytes(ether() / IP(src="10.0.0.2", dst="10.1.0.2", len=19) / UDP()),
              frame4()[:40], frame4()[:33]):
        got, _ = classify(0, f)
        assert not got.fast, got.name
    bad = bytearray(frame4())
    bad[24] ^= 1                                    # header checksum
    got, _ = classify(0, bytes(bad))
    assert got.name == "drop:bad_checksum" and not got.fast
    # padding after the packet: forwarded by both, the rewrite trims it
    v, out = classify(0, frame4() + b"\0" * 6)
    assert v.fast and len(out) == len(frame4())
