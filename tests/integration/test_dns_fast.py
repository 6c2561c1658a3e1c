"""DNS answers in C, end to end through a running kni-gw: queries from the
peer's namespace reach port 0; the rx lcore answers those its table holds
(kni_gw/dnsfast.py compiled it from the responder) and punts the rest to
the responder behind vEth0.

* Differential: every UDP query of the NSD conformance set
  (test_dns_nsd.queries), over IPv4 and IPv6, gets the same bytes from a
  gateway answering in C as from one with --dns-fast off; each query is
  counted once, answered in C or missed.
* Reload under a query stream: every answer is the old zone's or the new
  one's, never a mix.
* The response-rate limit: a burst over it gets the limit's worth of
  answers, every second query over it a truncated empty answer, the rest
  dropped and counted.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from .harness import Gateway, Topology, sh, veth_up, wait_for
from .test_dns_nsd import ZONES

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GW4, GW6 = "10.0.0.1", "2001:db8:0:1::1"
PEER6 = "2001:db8:0:1::2"


def start(topo, args, wait_compiled=True):
    gw = Gateway(topo, ["-p", "0x1", "--config", "(0,0,1)"] + args)
    gw.wait_ready()
    veth_up(topo, 0)
    sh("ip", "addr", "add", f"{GW6}/64", "dev", "vEth0", "nodad", ns=topo.gw)
    gw.wait_line(gw.err, lambda s: f"dns: listening on {GW4}" in s)
    gw.wait_line(gw.err, lambda s: f"dns: listening on {GW6}" in s)
    if wait_compiled:
        gw.wait_line(gw.err, lambda s: "answers compiled into the rx lcores' table" in s, timeout=60)
    return gw


@pytest.fixture(scope="module")
def topo():
    t = Topology(1, ipv6=True)
    sh("ip", "addr", "add", f"{PEER6}/64", "dev", "p0", "nodad", ns=t.peers[0])
    try:
        yield t
    finally:
        t.close()


# run in the peer's namespace: every UDP query of the conformance set to the
# gateway, over IPv4 and IPv6; prints the answers as JSON
ASK = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.integration import dnsdiff
from tests.integration.test_dns_nsd import queries
out = {}
n = 0
for label, wire, transports in queries():
    if not any(t.startswith("udp") for t in transports):
        continue
    for addr in ((sys.argv[2], 53), (sys.argv[3], 53)):
        timeout = 0.3 if "no answer" in label else 2.0
        a = dnsdiff.udp(addr, wire, timeout)
        out[f"{label} @{addr[0]}"] = None if a is None else a.hex()
        n += 1
print(json.dumps({"sent": n, "answers": out}))
"""


def ask_all(topo):
    import json
    r = sh(sys.executable, "-c", ASK, TOP, GW4, GW6, ns=topo.peers[0], timeout=300)
    return json.loads(r.stdout)


def test_answers_in_c_are_the_responders_bytes(topo):
    args = ["--dns-rrl", "0"] + [x for z in ZONES for x in ("--dns-zone", z)]
    gw = start(topo, args)
    try:
        # the client's address is learnt (ARP, ND) before the first answer in C
        sh("ping", "-c", "1", "-W", "2", GW4, ns=topo.peers[0])
        sh("ping", "-6", "-c", "1", "-W", "2", GW6, ns=topo.peers[0])
        before = gw.port(0)
        fast = ask_all(topo)
        after = gw.port(0)
    finally:
        assert gw.stop() == 0
    answered = after["dns_answered"] - before["dns_answered"]
    missed = after["dns_missed"] - before["dns_missed"]
    # every query is counted once: answered in C or missed (then the responder's)
    print(f"answered in C {answered}, missed {missed}, of {fast['sent']} queries")
    assert answered + missed == fast["sent"], (answered, missed, fast["sent"])
    assert answered >= 150, f"only {answered} of {fast['sent']} answered in C"
    assert after["rx_packets"] - before["rx_packets"] >= fast["sent"]

    gw = start(topo, ["--dns-fast", "off"] + args[2:], wait_compiled=False)
    try:
        before = gw.port(0)
        slow = ask_all(topo)
        assert gw.port(0)["dns_answered"] == before["dns_answered"] == 0
    finally:
        assert gw.stop() == 0
    assert fast["answers"].keys() == slow["answers"].keys()
    diff = [k for k in fast["answers"] if fast["answers"][k] != slow["answers"][k]]
    assert not diff, f"{len(diff)} answers differ, e.g. {diff[:5]}: " + \
        "\n".join(f"C {fast['answers'][k]}\nresponder {slow['answers'][k]}" for k in diff[:2])
    assert sum(1 for v in fast["answers"].values() if v) >= 250


ZONE = """$ORIGIN r.test.
$TTL 300
@ IN SOA ns hostmaster {serial} 3600 600 86400 60
@ IN NS ns
ns IN A 10.0.0.1
{records}
"""
OLD = "x IN A 192.0.2.1\nx IN A 192.0.2.2\nx IN TXT \"old\""
NEW = "x IN A 198.51.100.1\nx IN A 198.51.100.2\nx IN A 198.51.100.3\nx IN TXT \"new\" \"zone\""

# queries x A as fast as one socket goes for `secs`, each answer kept without its ID
STREAM = r"""
import socket, struct, sys, time, collections
from dnslib import DNSRecord
secs = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect(("10.0.0.1", 53))
q = bytearray(DNSRecord.question("x.r.test", "A").pack())
seen = collections.Counter()
order = []
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    i = (i + 1) & 0xffff
    q[0:2] = struct.pack("!H", i)
    s.send(q)
    try:
        while True:
            a = s.recv(4096)
            if a[:2] == q[:2]:
                break
    except socket.timeout:
        seen["lost"] += 1
        continue
    body = a[2:].hex()
    seen[body] += 1
    if not order or order[-1] != body:
        order.append(body)
print(repr((dict(seen), order)))
"""


def test_reload_under_a_query_stream_is_old_or_new(topo, tmp_path):
    zone = tmp_path / "r.zone"
    zone.write_text(ZONE.format(serial=1, records=OLD))
    gw = start(topo, ["--dns-zone", str(zone), "--dns-rrl", "0"])
    try:
        sh("ping", "-c", "1", "-W", "2", GW4, ns=topo.peers[0])
        before = gw.port(0)
        client = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", STREAM, "6"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the stream has had old answers for a while (in C) before the reload
        wait_for(lambda: gw.port(0)["dns_answered"] - before["dns_answered"] >= 2000, timeout=20,
                 what="a stream of answers on the old zone")
        zone.write_text(ZONE.format(serial=2, records=NEW))
        start_line = len(gw.err)
        gw.send(signal.SIGHUP)
        gw.wait_line(gw.err, lambda s: "answers compiled" in s, start=start_line, timeout=20)
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        seen, order = eval(out)                   # noqa: S307 - our own client's repr
        after = gw.port(0)
    finally:
        assert gw.stop() == 0
    from dnslib import DNSRecord
    kinds = {}
    for body, n in seen.items():
        if body == "lost":
            continue
        ans = sorted(str(r.rdata) for r in DNSRecord.parse(bytes(2) + bytes.fromhex(body)).rr)
        kinds[tuple(ans)] = kinds.get(tuple(ans), 0) + n
    old, new = ("192.0.2.1", "192.0.2.2"), ("198.51.100.1", "198.51.100.2", "198.51.100.3")
    print(f"answers: {kinds}, runs {len(order)}, in C {after['dns_answered'] - before['dns_answered']}")
    assert set(kinds) <= {old, new}, f"an answer neither old nor new: {kinds}"
    assert kinds.get(old, 0) > 100 and kinds.get(new, 0) > 100, kinds
    # old, then new: the table and the responder switch together
    assert len(order) == 2, f"the answers went back and forth: {len(order)} runs"
    total = sum(kinds.values())
    assert after["dns_answered"] - before["dns_answered"] >= 0.9 * total, (after["dns_answered"], total)
    assert seen.get("lost", 0) == 0


# fires n queries at once (every other one with EDNS), then reads what
# comes back for a second
BURST = r"""
import socket, struct, sys, time
from dnslib import DNSRecord, EDNS0
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.connect(("10.0.0.1", 53))
plain = bytearray(DNSRecord.question("x.r.test", "A").pack())
e = DNSRecord.question("x.r.test", "A")
e.add_ar(EDNS0(udp_len=1232))
edns = bytearray(e.pack())
for i in range(n):
    q = edns if i & 1 else plain
    q[0:2] = struct.pack("!H", i)
    s.send(q)
s.settimeout(1.0)
full = tc = 0
try:
    while True:
        a = DNSRecord.parse(s.recv(4096))
        opt = [r for r in a.ar if r.rtype == 41]
        # an answer to an EDNS query carries our OPT, truncated or not
        assert len(opt) == (a.header.id & 1) and len(a.ar) == len(opt), a
        if a.header.tc:
            assert not a.rr and not a.auth
            tc += 1
        else:
            assert len(a.rr) == 2
            full += 1
except socket.timeout:
    pass
print(full, tc)
"""


def test_rate_limit_answers_truncates_and_drops(topo, tmp_path):
    zone = tmp_path / "r.zone"
    zone.write_text(ZONE.format(serial=1, records=OLD))
    gw = start(topo, ["--dns-zone", str(zone), "--dns-rrl", "20", "--dns-rrl-slip", "2"])
    try:
        sh("ping", "-c", "1", "-W", "2", GW4, ns=topo.peers[0])
        before = gw.port(0)
        r = sh(sys.executable, "-c", BURST, "300", ns=topo.peers[0], timeout=30)
        full, tc = map(int, r.stdout.split())
        after = gw.port(0)
        # truncated: the client retries over TCP, which the responder answers
        d = sh("dig", f"@{GW4}", "+tcp", "+short", "x.r.test", ns=topo.peers[0])
        assert sorted(d.stdout.split()) == ["192.0.2.1", "192.0.2.2"]
    finally:
        assert gw.stop() == 0
    dropped = after["drops"]["dns_rrl"] - before["drops"]["dns_rrl"]
    answered = after["dns_answered"] - before["dns_answered"]
    # a second's worth (20) as burst, then 20/s
    print(f"rate limit: {full} answered, {tc} truncated, {dropped} dropped")
    assert 20 <= full <= 30, (full, tc, dropped)
    over = 300 - full
    assert abs(tc - over / 2) <= 1 and tc + dropped == over, (full, tc, dropped)
    assert answered == full + tc
    assert after["rx_packets"] - before["rx_packets"] >= 300


# asks x.r.test A ten times a second for `secs`, printing the time of each answer
ASK_STREAM = r"""
import socket, struct, sys, time
from dnslib import DNSRecord
secs = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.0.0.1", 53))
s.settimeout(0.1)
q = bytearray(DNSRecord.question("x.r.test", "A").pack())
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    i += 1
    q[0:2] = struct.pack("!H", i & 0xffff)
    s.send(q)
    t0 = time.monotonic()
    try:
        while True:
            a = s.recv(4096)
            if a[:2] == q[:2]:
                print(time.time(), flush=True)
                break
    except socket.timeout:
        pass
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
"""


def test_a_client_that_changes_its_mac_gets_answers_again(topo, tmp_path):
    """A client asks only DNS, all answered in C (the kernel never sends it
    anything), then changes its MAC without a gratuitous ARP: the answers
    mark its neighbour as in use and the query from the new MAC as moved, so
    the kernel checks it and answers reach the new MAC within 10 s."""
    zone = tmp_path / "r.zone"
    zone.write_text(ZONE.format(serial=1, records=OLD))
    gw = start(topo, ["--dns-zone", str(zone), "--dns-rrl", "0"])
    peer = topo.peers[0]
    old_mac = sh("cat", "/sys/class/net/p0/address", ns=peer).stdout.strip()
    try:
        sh("sysctl", "-qw", "net.ipv4.conf.p0.arp_notify=0", ns=peer)
        # the client never asks ARP for the gateway (which would tell the
        # gateway its new MAC): only the gateway's own checks can find it
        gw_mac = sh("cat", "/sys/class/net/vEth0/address", ns=topo.gw).stdout.strip()
        sh("ip", "neigh", "replace", GW4, "lladdr", gw_mac, "nud", "permanent", "dev", "p0", ns=peer)
        client = subprocess.Popen(["ip", "netns", "exec", peer, sys.executable, "-c", ASK_STREAM, "25"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: gw.port(0)["dns_answered"] >= 20, timeout=10, what="answers in C")
        # a new MAC flushes the client's neighbours, its permanent ones too:
        # the client pauses while the gateway's entry is put back
        client.send_signal(signal.SIGSTOP)
        sh("ip", "link", "set", "p0", "address", "02:00:00:00:43:43", ns=peer)
        sh("ip", "neigh", "replace", GW4, "lladdr", gw_mac, "nud", "permanent", "dev", "p0", ns=peer)
        changed = time.time()
        client.send_signal(signal.SIGCONT)
        out, err = client.communicate(timeout=60)
        after = [float(x) for x in out.split() if float(x) > changed]

        assert after, err
        assert after[0] - changed < 10.0, after[0] - changed
        neigh = sh("ip", "neigh", "show", "10.0.0.2", "dev", "vEth0", ns=topo.gw).stdout
        assert "02:00:00:00:43:43" in neigh, neigh
        # and answered in C again, to the new MAC
        before = gw.port(0)["dns_answered"]
        r = sh("dig", f"@{GW4}", "+short", "+nocookie", "x.r.test", ns=peer)   # a cookie goes to the responder
        assert sorted(r.stdout.split()) == ["192.0.2.1", "192.0.2.2"]
        assert gw.port(0)["dns_answered"] == before + 1
    finally:
        sh("ip", "link", "set", "p0", "address", old_mac, ns=peer, check=False)
        sh("ip", "neigh", "del", GW4, "dev", "p0", ns=peer, check=False)
        assert gw.stop() == 0
