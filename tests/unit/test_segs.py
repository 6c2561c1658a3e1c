"""Frames in several segments (csrc/datapath/segs.h), as the rx stage sees
them from a device with scattered rx: cut into a chain of real mbufs
(kg_segs_test) and classified, rewritten, trimmed and made sendable the way
stage_rx does it. Whatever the cut, the verdict and the frame that leaves
must be those of the same frame in one piece (kg_classify, kg_rewrite)."""
import socket

import pytest
from scapy.all import ICMP, IP, IPOption_RR, IPv6, IPv6ExtHdrDestOpt, Ether, UDP

from kni_gw.dataplane import classify, ffi, lib

# ports and indexes of this module's own (the unit tests share one set of tables)
IN, OUT = 4, 5
MAC_IN, MAC_OUT, PEER = "02:00:00:00:04:a0", "02:00:00:00:05:a0", "02:00:00:00:05:b1"
ADJ = 60000


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


@pytest.fixture(scope="module", autouse=True)
def tables(fib_tables):
    lib.kg_fib_port(IN, mac(MAC_IN), 9000)
    lib.kg_fib_port(OUT, mac(MAC_OUT), 9000)
    lib.kg_fib_forwarding(IN, 1, 1)
    lib.kg_fib_forwarding(OUT, 1, 1)
    assert lib.kg_adj_set(ADJ, OUT, mac(PEER)) == 0
    for ip, plen, nh in (("10.40.0.0", 16, ADJ), ("10.41.0.1", 32, lib.KG_PUNT_LOCAL),
                         ("10.42.0.0", 16, lib.KG_PUNT_GLEAN)):
        assert lib.kg_route4_add(int.from_bytes(socket.inet_aton(ip), "little"), plen, nh) == 0
    assert lib.kg_route6_begin() == 0
    assert lib.kg_route6_add(socket.inet_pton(socket.AF_INET6, "2001:db8:40::"), 48, ADJ) == 0
    lib.kg_route6_end()
    yield
    for ip, plen in (("10.40.0.0", 16), ("10.41.0.1", 32), ("10.42.0.0", 16)):
        lib.kg_route4_del(int.from_bytes(socket.inet_aton(ip), "little"), plen)
    assert lib.kg_route6_begin() == 0
    lib.kg_route6_del(socket.inet_pton(socket.AF_INET6, "2001:db8:40::"), 48)
    lib.kg_route6_end()
    lib.kg_adj_clear(ADJ)


def chained(frame, first, seg, first_off=128, tx_segs=True):
    """(verdict name, frame as it leaves or None when dropped, its segment count)."""
    v = ffi.new("struct kg_verdict *")
    out = ffi.new("unsigned char[]", 16384)
    n = ffi.new("unsigned int *", 16384)
    rc = lib.kg_segs_test(IN, frame, len(frame), first_off, first, seg, int(tx_segs), v, out, n)
    assert rc >= 0, rc
    name = {lib.KG_VERDICT_FORWARD: f"forward:{v.egress}", lib.KG_VERDICT_PUNT: f"punt:{v.reason}",
            lib.KG_VERDICT_DROP: f"drop:{v.reason}"}[v.action]
    return name, (bytes(ffi.buffer(out, n[0])) if rc else None), rc


def linear(frame):
    v, out = classify(IN, frame)
    name = {lib.KG_VERDICT_FORWARD: f"forward:{v.egress}", lib.KG_VERDICT_PUNT: f"punt:{v.reason}",
            lib.KG_VERDICT_DROP: f"drop:{v.reason}"}[v.action]
    return name, (out if v.action == lib.KG_VERDICT_FORWARD else frame)


def eth():
    return Ether(dst=MAC_IN, src="02:00:00:00:04:b0")


def frames():
    big = b"j" * 8900
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / big[:2972])
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / big)            # 8942 bytes
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.41.0.1") / ICMP() / big[:2972])    # to us
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7", ttl=1) / UDP() / big[:1500])
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7", options=[IPOption_RR()]) / UDP() / big[:3000])
    yield bytes(eth() / IPv6(src="2001:db8:42::2", dst="2001:db8:40::9") / UDP() / big[:2952])
    yield bytes(eth() / IPv6(src="2001:db8:42::2", dst="2001:db8:40::9") / IPv6ExtHdrDestOpt() / UDP() / big[:4000])
    yield bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / big[:100])     # in one piece too
    bad = bytearray(bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / big[:3000]))
    bad[24] ^= 0xff
    yield bytes(bad)                                                                   # bad checksum
    cut = bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / big[:3000])
    yield cut[:2000]                                                                   # shorter than it says


@pytest.mark.parametrize("first", [1, 14, 20, 33, 34, 54, 60, 127, 128, 129, 1024, 2048])
@pytest.mark.parametrize("seg", [9, 512, 2048])
def test_a_chain_is_classified_and_rewritten_as_the_whole_frame(first, seg):
    for f in frames():
        want = linear(f)
        got_name, got, _ = chained(f, first, seg)
        assert got_name == want[0], (first, seg, len(f))
        assert got == want[1], (first, seg, len(f))


def test_a_jumbo_frame_in_segments_is_not_a_runt():
    """What the rx stage did before: the first segment only, so a runt."""
    f = bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / (b"r" * 8958))   # 9000-byte IP packet
    assert linear(f[:2048])[0] == f"drop:{lib.KG_DROP_RUNT}"
    name, out, nsegs = chained(f, 2048, 2176)
    assert name == f"forward:{OUT}" and nsegs == 5 and len(out) == len(f)
    assert out == linear(f)[1]


@pytest.mark.parametrize("ip_len, trailer, first, seg, segs_left", [
    (1000, 500, 1024, 256, 1),     # the trim ends in the first segment: two freed
    (1200, 300, 1024, 256, 2),     # ends in the second
    (1010, 490, 1024, 490, 1),     # exactly on the first segment's end
    (1011, 489, 1024, 490, 2),     # one byte into the second
    (28, 32, 30, 10, 3),           # minimum frame padded to 60, in tiny segments
    (28, 32, 16, 4, 8),
])
def test_padding_is_trimmed_across_segments(ip_len, trailer, first, seg, segs_left):
    f = bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / (b"p" * (ip_len - 28)))
    assert len(f) == 14 + ip_len
    f += b"\xee" * trailer
    name, out, nsegs = chained(f, first, seg)
    assert name == f"forward:{OUT}"
    assert len(out) == 14 + ip_len and nsegs == segs_left
    assert out == linear(f)[1]


def test_an_egress_without_chains_gets_one_segment_or_nothing():
    f = bytes(eth() / IP(src="10.42.0.2", dst="10.40.7.7") / UDP() / (b"l" * 1472))   # 1514 bytes
    # the first segment's buffer has room for the rest: linearized
    name, out, nsegs = chained(f, 1000, 514, first_off=128, tx_segs=False)
    assert name == f"forward:{OUT}" and nsegs == 1 and out == linear(f)[1]
    # it has not (a full first segment, as a TAP or a NIC fills it): dropped
    name, out, nsegs = chained(f, 1024, 1024, first_off=2176 - 1024, tx_segs=False)
    assert name == f"forward:{OUT}" and out is None and nsegs == 0
    # an egress that takes chains gets it as it came
    name, out, nsegs = chained(f, 1024, 1024, first_off=2176 - 1024, tx_segs=True)
    assert nsegs == 2 and out == linear(f)[1]


def test_punted_and_dropped_chains_are_left_as_they_are():
    f = bytes(eth() / IP(src="10.42.0.2", dst="10.41.0.1") / ICMP() / (b"k" * 5000))
    name, out, nsegs = chained(f, 100, 1000)
    assert name == f"punt:{lib.KG_PUNT_LOCAL}" and out == f and nsegs == 6
