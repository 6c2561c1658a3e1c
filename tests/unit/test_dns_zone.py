"""The zone reader (dnspython) and the responder's answers, without root:
what the issue found misread, NSD's load checks with `file:line`, and
answers to queries built in memory (the full comparison with NSD is
tests/integration/test_dns_nsd.py)."""
import os
import struct
import subprocess
import sys

import dns.flags
import dns.message
import dns.rcode
import pytest

from kni_gw.dns import DnsServer, Query, Resolver, encode
from kni_gw.zone import ZoneError, Zones, load_zone

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZDIR = os.path.join(TOP, "tests", "integration", "zones")

HEAD = "$ORIGIN t.test.\n$TTL 300\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n"


def zone(tmp_path, body, name="t.zone", head=HEAD):
    p = tmp_path / name
    p.write_text(head + body)
    return str(p)


def rdata(z, owner, rtype):
    from dnslib import QTYPE
    node = z.names[tuple(owner.split(b"."))]
    return [r for r in node[getattr(QTYPE, rtype)].rrs]


def test_the_misread_cases_of_the_issue(tmp_path):
    z = load_zone(zone(tmp_path, 'txt TXT "\\010z"\nns1 1d IN A 192.0.2.9\nmail IN 300 A 192.0.2.25\n'
                                 'd\\.dot A 192.0.2.10\n'))
    assert rdata(z, b"txt.t.test", "TXT")[0].rdata.data == b"\x02\x0az"   # decimal, not octal
    assert rdata(z, b"ns1.t.test", "A")[0].ttl == 86400                   # a TTL unit
    assert rdata(z, b"mail.t.test", "A")[0].ttl == 300                    # class before TTL
    assert (b"d.dot", b"t", b"test") in z.names                          # one label with a dot


def test_ttl_units_escapes_parentheses_include(tmp_path):
    (tmp_path / "inc.zone").write_text("@ A 192.0.2.60\nhost TXT included\n")
    z = load_zone(zone(tmp_path, 'a 1w2d3h4m5s A 192.0.2.1\nb TXT ( "one" ; c\n "two" )\n'
                                 '\\065bc A 192.0.2.2\nsp\\032ace A 192.0.2.3\n'
                                 '$INCLUDE inc.zone sub.t.test.\n'))
    assert rdata(z, b"a.t.test", "A")[0].ttl == 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5
    assert rdata(z, b"b.t.test", "TXT")[0].rdata.data == b"\x03one\x03two"
    assert rdata(z, b"abc.t.test", "A")[0].rname.label[0] == b"Abc"       # case kept, matched without
    assert (b"sp ace", b"t", b"test") in z.names
    assert (b"sub", b"t", b"test") in z.names and (b"host", b"sub", b"t", b"test") in z.names


def test_no_ttl_gets_nsds_3600(tmp_path):
    z = load_zone(zone(tmp_path, "", head="$ORIGIN t.test.\n@ 600 SOA ns hm 1 3600 600 86400 60\n"
                                          "@ 600 NS ns\nns A 192.0.2.1\n"))
    assert rdata(z, b"ns.t.test", "A")[0].ttl == 3600


@pytest.mark.parametrize("body,line,what", [
    ("x CNAME ns\nx A 192.0.2.2\n", 7, "CNAME and other data"),
    ("x A 192.0.2.2\nx CNAME ns\n", 7, "CNAME and other data"),
    ("x CNAME ns\nx CNAME hm\n", 7, "multiple CNAMEs"),
    ("foo.example. A 192.0.2.2\n", 6, "out of zone data: foo.example. is outside the zone t.test."),
    ("ns.other.example. A 192.0.2.2\n", 6, "out of zone data"),
    ("@ SOA ns hm 2 3600 600 86400 60\n", 6, "a second SOA record"),
    ("x A 192.0.2.300\n", 6, "(x A 192.0.2.300)"),
    ("x CH A 192.0.2.3\n", 6, "class"),
    ("x BOGUS 1\n", 6, "unknown rdatatype 'BOGUS'"),
    ("x 1x A 192.0.2.1\n", 6, ""),
    ("x DNAME y.t.test.\nz.x A 192.0.2.3\n", 7, "DNAME at x.t.test. has data below it"),
    ("$INCLUDE missing.zone\n", 6, "No such file or directory"),
    ('x TXT "unterminated\n', 6, "quoted"),
])
def test_load_errors_are_file_line_what(tmp_path, body, line, what):
    p = zone(tmp_path, body)
    with pytest.raises(ZoneError) as e:
        load_zone(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: ") and what in msg and "\n" not in msg, msg


def test_warnings_as_nsd_and_ns_without_address(tmp_path):
    z = load_zone(zone(tmp_path, "x A 192.0.2.2\nx 600 A 192.0.2.3\nsub NS ns.sub\nout NS ns.example.\n"))
    assert any(":7: x.t.test. TTL 600 does not match the TTL 300 of the A RRset" in w for w in z.warnings)
    assert any(":8: NS ns.sub.t.test. of sub.t.test. has no address" in w for w in z.warnings)
    assert not any("ns.example." in w for w in z.warnings)            # outside the zone: not ours to check
    # each record keeps its TTL, as NSD serves them
    assert [r.ttl for r in rdata(z, b"x.t.test", "A")] == [300, 600]


def test_no_soa_and_no_origin(tmp_path):
    with pytest.raises(ZoneError, match="no SOA"):
        load_zone(zone(tmp_path, "", head="$ORIGIN t.test.\n$TTL 300\nns A 192.0.2.1\n"))
    with pytest.raises(ZoneError, match=r"\$ORIGIN line missing"):
        load_zone(zone(tmp_path, "", head="$TTL 300\n@ SOA ns hm 1 3600 600 86400 60\n"))
    with pytest.raises(ZoneError, match="No such file"):
        load_zone(str(tmp_path / "absent.zone"))


def test_same_zone_twice(tmp_path):
    a, b = zone(tmp_path, "", "a.zone"), zone(tmp_path, "", "b.zone")
    with pytest.raises(ZoneError, match="also in"):
        Zones.load([a, b])


# ---------------------------------------------------------------- answers
ZONES = [os.path.join(TOP, "examples", "example.zone"), os.path.join(ZDIR, "tricky.zone"),
         os.path.join(ZDIR, "other.zone"), os.path.join(ZDIR, "more.zone")]


@pytest.fixture(scope="module")
def server():
    return DnsServer(ZONES, port=0)


def ask(server, name, rtype="A", udp=True, **kw):
    q = dns.message.make_query(name, rtype, **kw)
    out = server.answer(q.to_wire(), udp=udp, peer="192.0.2.99")
    return dns.message.from_wire(out)


def rows(section):
    return [(rr.name.to_text(), rr.ttl, rd.to_text()) for rr in section for rd in rr]


def test_dangling_cname_is_nxdomain_with_the_negative_ttl(server):
    m = ask(server, "dangling2.tricky.test")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA
    assert [r[2] for r in rows(m.answer)] == ["c-dangle.tricky.test.", "missing.tricky.test."]
    assert rows(m.authority)[0][1] == 300                  # min(SOA TTL 7200, MINIMUM 300)
    m = ask(server, "xzone-nx.tricky.test")                  # into another zone: its SOA
    assert m.rcode() == dns.rcode.NXDOMAIN and rows(m.authority)[0][0] == "other.test."
    assert rows(m.authority)[0][1] == 600                  # min(600, 86400)


def test_edns(server):
    m = ask(server, "www.example.test", use_edns=1)
    assert m.rcode() == dns.rcode.BADVERS and m.answer == []
    m = ask(server, "www.example.test", want_dnssec=True)
    assert m.ednsflags & dns.flags.DO and m.payload == 1232
    m = ask(server, "www.example.test", use_edns=0, options=[dns.edns.GenericOption(65001, b"x")])
    assert m.rcode() == 0 and m.answer
    m = ask(server, "big.tricky.test", "TXT", use_edns=0, payload=4096)
    assert m.flags & dns.flags.TC and m.answer == []            # 2.4 kB does not fit 1232
    m = ask(server, "big.tricky.test", "TXT", udp=False)
    assert not m.flags & dns.flags.TC and len(m.answer) == 1


def test_transfers_refused(server):
    m = ask(server, "example.test", "AXFR", udp=False, use_edns=0)
    assert m.rcode() == dns.rcode.REFUSED and m.answer == []
    assert [o.otype for o in m.options] == [15]                 # Extended DNS Error 18, Prohibited
    assert ask(server, "example.test", "AXFR").rcode() == dns.rcode.NOTIMP
    assert ask(server, "www.example.test", "IXFR", udp=False).rcode() == dns.rcode.NOTAUTH


def test_referral_glue_and_ns_additional(server):
    m = ask(server, "host.child.tricky.test")
    assert not m.flags & dns.flags.AA and m.answer == []
    assert [r[0] for r in rows(m.additional)][:3] == ["ns1.child.tricky.test.", "ns2.child.tricky.test.",
                                                      "ns1.tricky.test."]
    assert ask(server, "tricky.test", "MX").additional == []    # minimal responses: no MX additional
    m = ask(server, "more.test", "NS")                          # a target matched by a wildcard
    assert ("a.wild-ns.more.test.", 300, "198.51.100.3") in rows(m.additional)


def test_malformed_and_odd_queries(server):
    assert server.answer(b"\x00\x01", udp=True) is None                       # no header: silence
    r = server.answer(struct.pack("!HHHHHH", 7, 0x8000, 1, 0, 0, 0), udp=True)  # a response
    assert r is None
    r = server.answer(struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x05ab", udp=True)
    assert struct.unpack("!HH", r[:4]) == (7, 0x8101)                        # FORMERR, RD kept
    r = server.answer(struct.pack("!HHHHHH", 8, 0x2800, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01", udp=True)
    assert r[3] & 0xF == 4                                                     # UPDATE: NOTIMP
    r = server.answer(struct.pack("!HHHHHH", 9, 0x2000, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01", udp=True)
    assert r[3] & 0xF == 3                                     # NOTIFY, not a zone: NXDOMAIN (as NSD)


def test_resolver_is_pure(server):
    # the same query twice gives the same bytes (the answer cache relies on it)
    q = Query()
    q.id, q.flags, q.qlabels, q.qtype, q.qclass = 1, 0x100, (b"c1", b"tricky", b"test"), 1, 1
    q.qkey = q.qlabels
    r = Resolver(server.zones)
    assert encode(q, r.answer(q), True) == encode(q, r.answer(q), True)


def test_standalone_check_and_bad_input(tmp_path):
    bad = zone(tmp_path, "x A 192.0.2.300\n")
    r = subprocess.run([sys.executable, "-m", "kni_gw.dns", "--zone", bad, "--check"],
                       capture_output=True, text=True, cwd=TOP)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"{bad}:6:" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "kni_gw.dns", "--zone", ZONES[0], "--allow", "10.0.0.0/8"],
                       capture_output=True, text=True, cwd=TOP)
    assert r.returncode == 2 and "--allow only matters with --forward" in r.stderr
    r = subprocess.run([sys.executable, "-m", "kni_gw.dns", "--zone", ZONES[0], "--forward", "192.0.2.1",
                        "--allow", "nonsense"], capture_output=True, text=True, cwd=TOP)
    assert r.returncode == 2 and "not a prefix" in r.stderr and "Traceback" not in r.stderr
