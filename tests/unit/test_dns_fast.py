"""DNS answers in C (csrc/datapath/dns.h) against the responder they were
compiled from (kni_gw/dns.py): over real tables, without ports (EAL in this
process, as the classifier's tests). Every answer C gives must be the
responder's to the same query bytes, byte for byte; what C must not answer
it must leave to the kernel."""
import struct

import pytest
from scapy.all import IP, UDP, Ether, IPv6
from scapy.layers.inet import checksum

from .frames import mac, v4, v6
from kni_gw.dataplane import dns_publish, dns_unpublish, ffi, lib
from kni_gw.dns import DnsServer
from kni_gw.dnsfast import compile_answers, pack, responder_view

MAC0 = "02:00:00:00:77:a0"
CLIENT, ROUTER = "02:00:00:00:77:c0", "02:00:00:00:77:r0".replace("r", "e")
ADJ_CLIENT, ADJ_ROUTER = 900, 901
OURS4, OURS6 = "10.77.0.1", "2001:db8:77::1"
CLI4, CLI6 = "10.77.0.2", "2001:db8:77::2"
FAR4 = "10.78.5.9"          # a client behind a router
PORT = 3  # a port index of these tests' own


@pytest.fixture(scope="module")
def server():
    return DnsServer(["examples/example.zone", "tests/integration/zones/tricky.zone"], port=53)


@pytest.fixture(scope="module", autouse=True)
def table(fib_tables, server):
    lib.kg_fib_port(PORT, mac(MAC0), 1500)
    lib.kg_fib_forwarding(PORT, 1, 1)
    lib.kg_adj_set(ADJ_CLIENT, PORT, mac(CLIENT))
    lib.kg_adj_set(ADJ_ROUTER, PORT, mac(ROUTER))
    for ip, plen, nh in [("10.77.0.0", 24, lib.KG_PUNT_GLEAN), (OURS4, 32, lib.KG_PUNT_LOCAL),
                         (CLI4, 32, ADJ_CLIENT), ("10.78.0.0", 16, ADJ_ROUTER)]:
        assert lib.kg_route4_add(v4(ip), plen, nh) == 0
    assert lib.kg_route6_begin() == 0
    for ip, plen, nh in [("2001:db8:77::", 64, lib.KG_PUNT_GLEAN), (OURS6, 128, lib.KG_PUNT_LOCAL),
                         (CLI6, 128, ADJ_CLIENT)]:
        assert lib.kg_route6_add(v6(ip), plen, nh) == 0
    lib.kg_route6_end()
    p = pack(compile_answers(responder_view(server, server.zones)))
    assert p.n > 100
    dns_publish(53, [OURS4, OURS6], 0, 2, p.entries, p.n, p.names, p.bodies)
    yield p
    dns_unpublish()


def query(name, qtype, edns=None, flags=0x0100, qid=0x1234, extra=b""):
    """Query bytes: edns None, or (payload, flags, options bytes)."""
    wire = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\0"
    q = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0) + wire + struct.pack("!HH", qtype, 1)
    if edns:
        payload, eflags, opts = edns
        q += b"\0" + struct.pack("!HHBBHH", 41, payload, 0, 0, eflags, len(opts)) + opts
    return q + extra


def frame(q, fam=4, src=None, sport=40000, dport=53, dst=None):
    if fam == 4:
        pkt = Ether(dst=MAC0, src=CLIENT) / IP(src=src or CLI4, dst=dst or OURS4) / UDP(sport=sport, dport=dport) / q
    else:
        pkt = Ether(dst=MAC0, src=CLIENT) / IPv6(src=src or CLI6, dst=dst or OURS6) / \
            UDP(sport=sport, dport=dport) / q
    return bytes(pkt)


def in_c(f, room=2048):
    buf = ffi.new("unsigned char[]", room)
    ffi.memmove(buf, f, len(f))
    n = ffi.new("unsigned int *")
    eg = ffi.new("unsigned int *")
    r = lib.kg_dns_test(PORT, buf, len(f), room, n, eg)
    return r, bytes(ffi.buffer(buf, n[0])), eg[0]


QUESTIONS = [("example.test", 1), ("example.test", 2), ("example.test", 6), ("example.test", 15),
             ("gw.example.test", 28), ("gw.example.test", 1), ("GW.Example.TEST", 28),
             ("www.example.test", 1), ("WwW.eXaMpLe.TeSt", 1), ("web.example.test", 28),
             ("txt.example.test", 16), ("_http._tcp.example.test", 33), ("host.example.test", 16),
             ("sub.example.test", 1), ("ns.sub.example.test", 1), ("big.example.test", 16),
             ("mail.example.test", 1), ("mail.example.test", 28), ("ns1.example.test", 1)]
EDNS = [None, (1232, 0, b""), (4096, 0, b""), (512, 0, b""), (700, 0, b""), (100, 0, b"")]


@pytest.mark.parametrize("fam", [4, 6])
def test_answers_are_the_responders_bytes(server, fam):
    hits = 0
    for name, qtype in QUESTIONS:
        for edns in EDNS:
            for flags in (0x0100, 0x0000, 0x0110):
                q = query(name, qtype, edns, flags=flags, qid=hits + 7)
                r, out, eg = in_c(frame(q, fam))
                want = server.answer(q, udp=True, peer=CLI4 if fam == 4 else CLI6)
                if r == lib.KG_DNS_MISS:
                    continue
                assert r == lib.KG_DNS_ANSWERED, (name, qtype, edns)
                hits += 1
                pkt = Ether(out)
                l3 = pkt[IP] if fam == 4 else pkt[IPv6]
                assert bytes(pkt[UDP].payload) == want, (name, qtype, edns, flags)
                # headers as the kernel would send them back
                assert pkt.dst == CLIENT and pkt.src == MAC0 and eg == PORT
                assert (l3.src, l3.dst) == ((OURS4, CLI4) if fam == 4 else (OURS6, CLI6))
                assert (pkt[UDP].sport, pkt[UDP].dport) == (53, 40000)
                assert pkt[UDP].len == 8 + len(want)
                if fam == 4:
                    assert l3.ttl == 64 and l3.flags == "DF" and l3.len == 28 + len(want)
                    assert checksum(bytes(l3)[:20]) == 0
                else:
                    assert l3.hlim == 64 and l3.plen == 8 + len(want)
                raw = bytes(l3)
                re = Ether(bytes(pkt))
                del re[UDP].chksum
                assert Ether(bytes(re))[UDP].chksum == pkt[UDP].chksum, "UDP checksum"
                assert len(raw) == len(out) - 14
    # every question asked is in the zones: most shapes are answered in C
    print("answered in C:", hits)
    assert hits >= len(QUESTIONS) * 3 * 4, hits


def test_route_back_is_the_routes_next_hop(server):
    q = query("gw.example.test", 1)
    r, out, eg = in_c(frame(q, 4, src=FAR4))
    assert r == lib.KG_DNS_ANSWERED
    assert Ether(out).dst == ROUTER
    # no route back resolved yet (connected, unresolved): the kernel's
    r, _, _ = in_c(frame(q, 4, src="10.77.0.9"))
    assert r == lib.KG_DNS_MISS


@pytest.mark.parametrize("what,q,kw", [
    ("DO bit", query("gw.example.test", 1, (1232, 0x8000, b"")), {}),
    ("cookie option", query("gw.example.test", 1, (1232, 0, struct.pack("!HH", 10, 8) + b"c" * 8)), {}),
    ("trailing byte", query("gw.example.test", 1, extra=b"\0"), {}),
    ("two OPTs", query("gw.example.test", 1, (1232, 0, b""))[:-0] + b"\0" + struct.pack("!HHBBHH", 41, 512, 0, 0, 0, 0), {}),
    ("EDNS version 1", query("gw.example.test", 1)[:11] + b"\1" + query("gw.example.test", 1)[12:] +
     b"\0" + struct.pack("!HHBBHH", 41, 1232, 0, 1, 0, 0), {}),
    ("class CH", query("gw.example.test", 1)[:-2] + b"\0\3", {}),
    ("a response", query("gw.example.test", 1, flags=0x8100), {}),
    ("NOTIFY", query("example.test", 6, flags=0x2000), {}),
    ("ANY", query("gw.example.test", 255), {}),
    ("AXFR", query("example.test", 252), {}),
    ("NXDOMAIN", query("nope.example.test", 1), {}),
    ("outside the zones", query("example.com", 1), {}),
    ("compressed name", struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1), {}),
    ("source port 0", query("gw.example.test", 1), {"sport": 0}),
    ("short header", b"\0\1\0\0\0\1", {}),
])
def test_what_c_leaves_to_the_responder(what, q, kw):
    r, _, _ = in_c(frame(q, 4, **kw))
    assert r == lib.KG_DNS_MISS, what


def test_not_dns_is_not_looked_at():
    q = query("gw.example.test", 1)
    assert in_c(frame(q, 4, dport=54))[0] == lib.KG_DNS_NOT_DNS
    assert in_c(frame(q, 4, dst="10.77.0.3"))[0] == lib.KG_DNS_NOT_DNS   # not an address we answer on


def test_bad_udp_checksum_is_the_kernels_to_drop():
    f = bytearray(frame(query("gw.example.test", 1), 4))
    f[14 + 20 + 6] ^= 0x55
    assert in_c(bytes(f))[0] == lib.KG_DNS_MISS
    f = bytearray(frame(query("gw.example.test", 1), 6))
    f[14 + 40 + 6] ^= 0x55
    assert in_c(bytes(f))[0] == lib.KG_DNS_MISS
    # no checksum over IPv4 is allowed (the kernel takes it)
    f = bytearray(frame(query("gw.example.test", 1), 4))
    f[14 + 20 + 6:14 + 20 + 8] = b"\0\0"
    assert in_c(bytes(f))[0] == lib.KG_DNS_ANSWERED


def test_an_answer_that_does_not_fit_is_left_to_the_responder():
    f = frame(query("big.example.test", 16, (1232, 0, b"")), 4)
    r, out, _ = in_c(f, room=len(f) + 8)
    assert r == lib.KG_DNS_MISS


def test_every_cut_of_a_query_is_safe():
    f = frame(query("www.example.test", 1, (1232, 0, b"")), 6)
    for n in range(len(f)):
        r, _, _ = in_c(f[:n])
        assert r != lib.KG_DNS_ANSWERED
