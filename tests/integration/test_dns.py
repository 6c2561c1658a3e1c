"""The DNS responder, queried from the wire side through a running kni-gw:
queries arrive on port 0, reach the kernel through vEth0 and are answered
by kni-gw's responder; answers leave through vEth0 and port 0."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .harness import Gateway, Topology, sh, veth_up, wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GW = "192.168.0.1"


class Dig:
    def __init__(self, out: str):
        self.out = out
        m = re.search(r"status: (\w+)", out)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([\w ]*);", out)
        self.flags = set(m.group(1).split()) if m else set()
        self.sections = {}
        cur = None
        for line in out.splitlines():
            m = re.match(r";; (\w+) SECTION:", line)
            if m:
                cur = m.group(1)
                self.sections[cur] = []
            elif cur and line and not line.startswith(";"):
                self.sections[cur].append(line.split())
            elif not line:
                cur = None

    def rr(self, section="ANSWER"):
        return [(r[0], r[3], " ".join(r[4:])) for r in self.sections.get(section, [])]


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zones")
    for z in ("example.zone", "reverse.zone"):
        shutil.copy(os.path.join(TOP, "examples", z), tmp / z)
    topo = Topology(1)
    # an upstream for --dns-forward, in the gateway namespace on loopback
    up = subprocess.Popen(["ip", "netns", "exec", topo.gw, sys.executable, "-c", UPSTREAM],
                          stdout=subprocess.PIPE, text=True)
    assert up.stdout.readline().strip() == "ready"
    gw = Gateway(topo, ["-p", "0x1", "--config", "(0,0,1)", "--dns-zone", str(tmp / "example.zone"),
                        "--dns-zone", str(tmp / "reverse.zone"), "--dns-forward", "127.0.0.1:5353"])
    try:
        gw.wait_ready()
        veth_up(topo, 0, f"{GW}/24")
        sh("ip", "addr", "add", "192.168.0.2/24", "dev", "p0", ns=topo.peers[0])
        gw.wait_line(gw.err, lambda s: f"dns: listening on {GW}" in s)
        wait_for(lambda: dig(topo, "gw.example.test").status == "NOERROR", timeout=10,
                 what="the responder through the gateway")
        yield topo, gw, tmp
    finally:
        gw.kill()
        up.kill()
        topo.close()


UPSTREAM = """
import socket
from dnslib import DNSRecord, RR, A
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5353))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    q = DNSRecord.parse(data)
    if str(q.q.qname).startswith("slow."):
        continue                                 # never answered: the gateway's timeout
    r = q.reply()
    r.add_answer(RR(q.q.qname, rdata=A("203.0.113.7"), ttl=60))
    s.sendto(r.pack(), peer)
"""


def dig(topo, *args, server=GW):
    r = sh("dig", f"@{server}", "+time=3", "+tries=1", *args, ns=topo.peers[0], check=False)
    return Dig(r.stdout)


def test_record_types(dns):
    topo, gw, _ = dns
    cases = [("gw.example.test", "A", "192.168.0.1"), ("gw.example.test", "AAAA", "2001:db8::1"),
             ("example.test", "MX", "10 mail.example.test."), ("example.test", "NS", "ns1.example.test."),
             ("txt.example.test", "TXT", '"v=spf1 mx -all" "second string"'),
             ("_http._tcp.example.test", "SRV", "10 5 80 web.example.test."),
             ("1.0.168.192.in-addr.arpa", "PTR", "gw.example.test.")]
    for name, t, want in cases:
        d = dig(topo, name, t)
        assert d.status == "NOERROR" and "aa" in d.flags and "ra" not in d.flags, (name, d.out)
        assert (name + ".", t, want) in d.rr(), d.out
    d = dig(topo, "example.test", "SOA")
    assert d.rr()[0][1] == "SOA" and d.rr()[0][2].startswith("ns1.example.test. hostmaster.example.test.")


def test_cname_chain_and_case(dns):
    topo, _, _ = dns
    d = dig(topo, "WwW.ExAmPlE.tEsT", "A")
    # names are compressed against the question without regard to case, as
    # NSD does: their suffixes come out in the question's case (NSD 4.6
    # answers exactly this)
    assert d.rr() == [("WwW.ExAmPlE.tEsT.", "CNAME", "web.ExAmPlE.tEsT."),
                      ("web.ExAmPlE.tEsT.", "CNAME", "host.ExAmPlE.tEsT."),
                      ("host.ExAmPlE.tEsT.", "A", "192.168.0.80")]
    d = dig(topo, "www.example.test", "CNAME")
    assert d.rr() == [("www.example.test.", "CNAME", "web.example.test.")]


def test_nxdomain_and_nodata_carry_the_soa(dns):
    topo, _, _ = dns
    d = dig(topo, "nope.example.test")
    assert d.status == "NXDOMAIN" and "aa" in d.flags and d.rr() == []
    assert d.rr("AUTHORITY")[0][:2] == ("example.test.", "SOA")
    d = dig(topo, "host.example.test", "MX")
    assert d.status == "NOERROR" and d.rr() == [] and d.rr("AUTHORITY")[0][1] == "SOA"
    # an empty non-terminal (_tcp.example.test exists only as a parent) is NODATA
    d = dig(topo, "_tcp.example.test", "A")
    assert d.status == "NOERROR" and d.rr("AUTHORITY")[0][1] == "SOA"


def test_wildcards_rfc4592(dns):
    topo, _, _ = dns
    d = dig(topo, "anything.dyn.example.test")
    assert d.rr() == [("anything.dyn.example.test.", "A", "192.168.0.99")]
    d = dig(topo, "a.b.dyn.example.test")
    assert d.rr() == [("a.b.dyn.example.test.", "A", "192.168.0.99")]
    d = dig(topo, "x.dyn.example.test", "MX")           # wildcard owner exists, no MX: NODATA
    assert d.status == "NOERROR" and d.rr() == []
    d = dig(topo, "dyn.example.test")                   # the wildcard's parent: empty non-terminal
    assert d.status == "NOERROR" and d.rr() == []
    d = dig(topo, "x.gw.example.test")                  # no wildcard under gw: NXDOMAIN
    assert d.status == "NXDOMAIN"


def test_delegation_referral(dns):
    topo, _, _ = dns
    d = dig(topo, "host.sub.example.test", "A")
    assert d.status == "NOERROR" and "aa" not in d.flags and d.rr() == []
    assert d.rr("AUTHORITY") == [("sub.example.test.", "NS", "ns.sub.example.test.")]
    assert ("ns.sub.example.test.", "A", "192.168.0.53") in d.rr("ADDITIONAL")


def test_edns_truncation_and_tcp(dns):
    topo, gw, _ = dns
    st = gw.stats()
    before, c_before = st["dns"], st["ports"][0]["dns_answered"]
    d = dig(topo, "big.example.test", "TXT", "+bufsize=4096")
    assert "udp: 1232" in d.out and len(d.rr()) == 6 and "tc" not in d.flags
    d = dig(topo, "big.example.test", "TXT", "+noedns", "+ignore")
    assert "tc" in d.flags and d.rr() == []
    d = dig(topo, "big.example.test", "TXT", "+bufsize=512", "+ignore")
    assert "tc" in d.flags
    d = dig(topo, "big.example.test", "TXT", "+noedns")       # dig retries over TCP by itself
    assert len(d.rr()) == 6 and "TCP" in d.out
    st = gw.stats()
    after, c_after = st["dns"], st["ports"][0]["dns_answered"]
    # the four UDP queries: each answered once, in C (the table holds these
    # shapes) or by the responder; the TCP retry is the responder's
    udp = lambda d: d.get("queries", 0) - d.get("tcp_queries", 0)  # noqa: E731
    assert udp(after) - udp(before) + (c_after - c_before) == 4
    assert after["tcp_queries"] - before.get("tcp_queries", 0) >= 1


def test_any_is_minimal(dns):
    topo, _, _ = dns
    d = dig(topo, "gw.example.test", "ANY")
    assert d.status == "NOERROR" and len({r[1] for r in d.rr()}) == 1


def test_outside_the_zones_is_forwarded_and_times_out(dns):
    topo, gw, _ = dns
    d = dig(topo, "example.org", "A")
    assert d.status == "NOERROR" and d.rr() == [("example.org.", "A", "203.0.113.7")]
    t0 = time.monotonic()
    d = dig(topo, "slow.example.org", "A")
    assert d.status == "SERVFAIL" and 1.5 < time.monotonic() - t0 < 3.5
    s = gw.stats()["dns"]
    assert s["forward_answers"] >= 1 and s["forward_timeouts"] >= 1


def test_forwarding_only_for_the_veth_networks(dns):
    """--dns-forward serves the networks on the vEth interfaces (the ACL's
    default): a client from elsewhere gets REFUSED for a name outside the
    zones, and the zones' answers as everyone does."""
    topo, gw, _ = dns
    # the peer's 10.0.0.2 is not on vEth0's network; the answers go back on-link
    sh("ip", "route", "replace", "10.0.0.2/32", "dev", "vEth0", ns=topo.gw)
    before = gw.stats()["dns"]
    d = dig(topo, "-b", "10.0.0.2", "example.org", "A")
    assert d.status == "REFUSED" and d.rr() == [], d.out
    d = dig(topo, "-b", "10.0.0.2", "www.example.test")
    assert d.status == "NOERROR" and d.rr()[-1] == ("host.example.test.", "A", "192.168.0.80")
    d = dig(topo, "-b", "192.168.0.2", "example.org", "A")
    assert d.status == "NOERROR" and d.rr() == [("example.org.", "A", "203.0.113.7")]
    after = gw.stats()["dns"]
    assert after["forward_refused"] - before.get("forward_refused", 0) == 1


def test_reload_good_and_bad(dns):
    topo, gw, tmp = dns
    zone = tmp / "example.zone"
    text = zone.read_text()
    zone.write_text(text.replace("host      IN A    192.168.0.80", "host      IN A    192.168.0.81"))
    gw.send(signal.SIGHUP)
    wait_for(lambda: dig(topo, "host.example.test").rr() == [("host.example.test.", "A", "192.168.0.81")],
             what="the reloaded zone served")
    zone.write_text(text + "broken IN A not-an-address\n")
    n = len(gw.err)
    gw.send(signal.SIGHUP)
    line = gw.wait_line(gw.err, lambda s: "reload refused" in s, start=n)
    assert "example.zone" in line
    assert dig(topo, "host.example.test").rr() == [("host.example.test.", "A", "192.168.0.81")]
    zone.write_text(text)
    gw.send(signal.SIGHUP)
    wait_for(lambda: dig(topo, "host.example.test").rr() == [("host.example.test.", "A", "192.168.0.80")],
             what="the original zone back")


MUTATE = r"""
import random, socket, sys, time
from dnslib import DNSRecord
rnd = random.Random(11)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
base = [DNSRecord.question(n, t).pack() for n, t in
        [("www.example.test", "A"), ("big.example.test", "TXT"), ("x.dyn.example.test", "AAAA"),
         ("example.org", "MX")]]
for i in range(10000):
    q = bytearray(rnd.choice(base))
    how = rnd.random()
    if how < 0.3:
        for _ in range(rnd.randrange(1, 6)):
            q[rnd.randrange(len(q))] = rnd.randrange(256)
    elif how < 0.5:
        q = q[:rnd.randrange(len(q))]
    elif how < 0.7:
        q = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 80)))
    elif how < 0.85:
        q[4:6] = bytes([0, rnd.randrange(2, 40)])     # claimed question count
    else:
        q += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
    try:
        s.sendto(bytes(q), ("192.168.0.1", 53))
    except BlockingIOError:
        pass
    if i % 50 == 49:
        time.sleep(0.002)
        try:
            while True:
                s.recv(4096)
        except BlockingIOError:
            pass
print("sent")
"""


def test_10000_malformed_queries_then_ordinary_ones(dns):
    topo, gw, _ = dns
    before = gw.stats()["dns"]
    r = sh(sys.executable, "-c", MUTATE, ns=topo.peers[0], timeout=120)
    assert "sent" in r.stdout
    wait_for(lambda: gw.stats()["dns"]["queries"] - before["queries"] >= 9000, timeout=30,
             what="the mutated queries processed")
    after = gw.stats()["dns"]
    assert after["malformed"] - before.get("malformed", 0) > 1000
    assert after.get("internal_errors", 0) == 0
    assert gw.proc.poll() is None
    d = dig(topo, "www.example.test")
    assert d.status == "NOERROR" and d.rr()[-1] == ("host.example.test.", "A", "192.168.0.80")
    d = dig(topo, "big.example.test", "TXT", "+tcp")
    assert len(d.rr()) == 6
