"""--dns-forward made safe (RFC 5452): the responder (python -m kni_gw.dns,
the code the gateway runs) forwards names outside its zones to an upstream
that, for some names, first sends forged replies — from another address,
from another port, with another ID, with another question — before (or
instead of) the real one. A forged reply must never reach the client.
Clients outside the ACL get REFUSED. The ACL through a running gateway is
tested in test_dns.py."""
import json
import os
import subprocess
import sys
import time

import pytest

from .harness import sh

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZONE = os.path.join(TOP, "examples", "example.zone")
LISTEN = "198.51.100.1"          # on lo, as 198.51.100.1/24: the ACL's default network
OUTSIDE = "203.0.113.1"          # on lo too, as 203.0.113.1/24: not in the ACL
WIDENED = "192.0.2.1"            # on lo, 192.0.2.1/24: allowed by --allow 192.0.2.0/28
REAL, FORGED = "203.0.113.7", "198.51.100.66"

# The upstream: 127.0.0.1:5353. For "spoof-addr." it first answers from
# 127.0.0.2:5353, for "spoof-port." from 127.0.0.1:5354, for "wrong-id." with
# another ID, for "wrong-question." with another question; then, unless the
# name starts with "only-", the real answer. It logs each query's source
# port and ID on stderr as JSON.
UPSTREAM = r"""
import json, socket, sys
from dnslib import DNSRecord, RR, A, DNSQuestion
main = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); main.bind(("127.0.0.1", 5353))
other_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other_addr.bind(("127.0.0.2", 5353))
other_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other_port.bind(("127.0.0.1", 5354))
print("ready", flush=True)
while True:
    data, peer = main.recvfrom(4096)
    q = DNSRecord.parse(data)
    name = str(q.q.qname)
    print(json.dumps({"port": peer[1], "id": q.header.id, "name": name}), file=sys.stderr, flush=True)
    forged = q.reply()
    forged.add_answer(RR(q.q.qname, rdata=A("%s"), ttl=60))
    label = name.split(".")[0].replace("only-", "")
    if label == "spoof-addr":
        other_addr.sendto(forged.pack(), peer)
    elif label == "spoof-port":
        other_port.sendto(forged.pack(), peer)
    elif label == "wrong-id":
        forged.header.id = (q.header.id + 1) & 0xffff
        main.sendto(forged.pack(), peer)
    elif label == "wrong-question":
        forged.questions = [DNSQuestion("other." + name)]
        main.sendto(forged.pack(), peer)
    elif label == "not-a-response":
        forged.header.qr = 0
        main.sendto(forged.pack(), peer)
    if name.startswith("only-"):
        continue
    real = q.reply()
    real.add_answer(RR(q.q.qname, rdata=A("%s"), ttl=60))
    main.sendto(real.pack(), peer)
""" % (FORGED, REAL)


@pytest.fixture(scope="module")
def fwd():
    ns = f"kgfwd{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    procs = []
    try:
        sh("ip", "link", "set", "lo", "up", ns=ns)
        for a in (f"{LISTEN}/24", f"{OUTSIDE}/24", f"{WIDENED}/24", "127.0.0.2/8"):
            sh("ip", "addr", "add", a, "dev", "lo", ns=ns)
        up = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", UPSTREAM],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(up)
        assert up.stdout.readline().strip() == "ready"
        srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "kni_gw.dns", "--zone", ZONE,
                                "--listen", LISTEN, "--port", "53", "--forward", "127.0.0.1:5353",
                                "--allow", "192.0.2.0/28"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=TOP)
        procs.append(srv)
        line = srv.stdout.readline().strip()
        assert line == "ready", srv.stderr.read()
        yield ns, up
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        sh("ip", "netns", "del", ns, check=False)


ASK = r"""
import json, sys, time, socket
import dns.message, dns.rcode
out = []
for src, name in json.loads(sys.argv[2]):
    q = dns.message.make_query(name, "A")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(3.5)
    t0 = time.monotonic()
    s.sendto(q.to_wire(), ("%s", 53))
    try:
        data = s.recv(65535)
        m = dns.message.from_wire(data)
        out.append({"rcode": dns.rcode.to_text(m.rcode()), "id_ok": m.id == q.id,
                    "answer": [rd.to_text() for rr in m.answer for rd in rr], "s": time.monotonic() - t0})
    except socket.timeout:
        out.append({"rcode": "timeout"})
print(json.dumps(out))
""" % LISTEN


def ask(ns, pairs):
    r = sh(sys.executable, "-c", ASK, TOP, json.dumps(pairs), ns=ns, timeout=120)
    return json.loads(r.stdout)


def test_real_answer_passes(fwd):
    ns, _ = fwd
    [r] = ask(ns, [(LISTEN, "plain.example.org")])
    assert r["rcode"] == "NOERROR" and r["answer"] == [REAL] and r["id_ok"]


@pytest.mark.parametrize("forgery", ["spoof-addr", "spoof-port", "wrong-id", "wrong-question",
                                     "not-a-response"])
def test_forged_reply_is_ignored_and_the_real_one_passes(fwd, forgery):
    ns, _ = fwd
    [r] = ask(ns, [(LISTEN, f"{forgery}.example.org")])
    assert r["rcode"] == "NOERROR" and r["answer"] == [REAL], r


@pytest.mark.parametrize("forgery", ["spoof-addr", "spoof-port", "wrong-id", "wrong-question"])
def test_forged_reply_alone_gives_servfail(fwd, forgery):
    ns, _ = fwd
    [r] = ask(ns, [(LISTEN, f"only-{forgery}.example.org")])
    assert r["rcode"] == "SERVFAIL" and r["answer"] == [] and 1.5 < r["s"] < 3.5, r


def test_client_outside_the_acl_is_refused(fwd):
    ns, up = fwd
    r = ask(ns, [(OUTSIDE, "refused.example.org"), (OUTSIDE, "www.example.test"),
                 (WIDENED, "widened.example.org")])
    assert r[0]["rcode"] == "REFUSED" and r[0]["answer"] == []
    # the zones are answered for everyone; --allow widens the ACL
    assert r[1]["rcode"] == "NOERROR" and r[1]["answer"][-1] == "192.168.0.80"
    assert r[2]["rcode"] == "NOERROR" and r[2]["answer"] == [REAL]


def test_source_port_and_id_random_per_query(fwd):
    ns, up = fwd
    names = [f"rand{i}.example.org" for i in range(24)]
    r = ask(ns, [(LISTEN, n) for n in names])
    assert all(x["answer"] == [REAL] for x in r)
    seen = []
    deadline = time.monotonic() + 10
    while len(seen) < len(names) and time.monotonic() < deadline:
        rec = json.loads(up.stderr.readline())
        if rec["name"].startswith("rand"):
            seen.append(rec)
    ports = [x["port"] for x in seen]
    ids = [x["id"] for x in seen]
    assert len(seen) == len(names)
    # drawn from 1024-65535: 24 draws are distinct and not a sequence
    assert len(set(ports)) >= 22 and max(ports) - min(ports) > 4096, ports
    assert len(set(ids)) >= 22, ids
    assert sorted(ports) != list(range(min(ports), min(ports) + len(ports)))
