#!/usr/bin/env python3
"""DNS responder benchmark, beside NSD. Run as root (alone: benchmarks must
not run beside each other):

  sudo flock /tmp/kni-bench.lock .venv/bin/python bench/bench_dns.py [--seconds 5]

dnsperf (Debian's), from one client namespace and with one query file,
queries in the same run:

* kni-gw through the gateway: vEth0's address, across the wire (veth) to
  port 0; answered on the rx lcore where the answer table holds the query
  (--dns-rrl 0: one client), else through the exception path, the kernel
  and the responder, and back; then the same with --dns-fast off;
* NSD 4 (minimal-responses, one server process) in a namespace of its own
  reached over a plain veth pair, serving the same zone;
* kni-gw's responder alone (python -m kni_gw.dns) in that same namespace,
  over the same veth pair.

Prints QPS at full load (dnsperf -c 4 -q 100) and latency percentiles at a
fixed 2000 QPS (dnsperf -Q 2000 -v) for each, and the ratios.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import say, sh, wait_for  # noqa: E402
from tests.integration.harness import Gateway, Topology, veth_up  # noqa: E402
from tests.integration.nsd import Nsd  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZONE = os.path.join(TOP, "examples", "example.zone")
QUERIES = ["www.example.test A", "gw.example.test AAAA", "example.test MX", "txt.example.test TXT",
           "nope.example.test A", "x.dyn.example.test A", "_http._tcp.example.test SRV",
           "host.sub.example.test A", "example.test NS", "host.example.test MX"]
SIDE = "172.31.250"          # the plain veth between the client and the NSD namespace


def dnsperf(ns, server, port, qfile, seconds, extra=()):
    r = sh("dnsperf", "-s", server, "-p", str(port), "-d", qfile, "-l", str(seconds), *extra,
           ns=ns, check=False, timeout=seconds + 60)
    return r.stdout


def qps(out):
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    return float(m.group(1)) if m else 0.0, int(lost.group(1)) if lost else -1


def percentiles(out):
    lat = sorted(float(x) for x in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", out, re.M))
    if len(lat) < 100:
        return "no samples"
    q = statistics.quantiles(lat, n=100)
    return f"p50 {q[49] * 1e6:.0f} us, p90 {q[89] * 1e6:.0f} us, p99 {q[98] * 1e6:.0f} us ({len(lat)} queries)"


def measure(ns, server, port, qfile, seconds):
    q, lost = qps(dnsperf(ns, server, port, qfile, seconds, ["-c", "4", "-q", "100"]))
    lat = percentiles(dnsperf(ns, server, port, qfile, 3, ["-Q", "2000", "-v"]))
    return q, lost, lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="kgbench-dns-")
    qfile = os.path.join(tmp, "queries.txt")
    with open(qfile, "w") as f:
        f.write("\n".join(QUERIES) + "\n")
    topo = Topology(1)
    client = topo.peers[0]
    side = f"{topo.tag}-nsd"
    nsd = standalone = None
    rows = []
    try:
        # the reference: NSD in its own namespace, over a plain veth pair
        sh("ip", "netns", "add", side)
        topo._cleanups.append(lambda: sh("ip", "netns", "del", side, check=False))
        sh("ip", "link", "add", "n0", "netns", client, "type", "veth", "peer", "name", "n1", "netns", side)
        sh("ip", "addr", "add", f"{SIDE}.2/24", "dev", "n0", ns=client)
        sh("ip", "link", "set", "n0", "up", ns=client)
        sh("ip", "addr", "add", f"{SIDE}.1/24", "dev", "n1", ns=side)
        sh("ip", "link", "set", "n1", "up", ns=side)
        sh("ip", "link", "set", "lo", "up", ns=side)
        nsd = Nsd(side, os.path.join(tmp, "nsd"), [ZONE], addr=f"{SIDE}.1", port=53)
        wait_for(lambda: "NOERROR" in sh("dig", f"@{SIDE}.1", "+time=1", "+tries=1", "gw.example.test",
                                         ns=client, check=False).stdout, what="nsd over the veth")
        rows.append(("NSD (C), plain veth", *measure(client, f"{SIDE}.1", 53, qfile, args.seconds)))
        nsd.close()
        nsd = None

        standalone = subprocess.Popen(["ip", "netns", "exec", side, sys.executable, "-m", "kni_gw.dns",
                                       "--zone", ZONE, "--listen", f"{SIDE}.1", "--port", "5300"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=TOP)
        assert standalone.stdout.readline().strip() == "ready"
        rows.append(("kni-gw responder alone, plain veth",
                     *measure(client, f"{SIDE}.1", 5300, qfile, args.seconds)))
        standalone.terminate()
        standalone.wait(timeout=10)
        standalone = None

        sh("ip", "addr", "add", "192.168.0.2/24", "dev", "p0", ns=client)
        counters = []
        for label, extra in (("kni-gw through the gateway, answers in C", ["--dns-rrl", "0"]),
                             ("kni-gw through the gateway (vEth0)", ["--dns-fast", "off"])):
            gw = Gateway(topo, ["-p", "0x1", "--config", "(0,0,1)", "--dns-zone", ZONE] + extra)
            try:
                gw.wait_ready()
                veth_up(topo, 0, "192.168.0.1/24")
                if "off" not in extra:
                    gw.wait_line(gw.err, lambda s: "answers compiled" in s, timeout=60)
                wait_for(lambda: "NOERROR" in sh("dig", "@192.168.0.1", "+time=1", "+tries=1",
                                                 "gw.example.test", ns=client, check=False).stdout,
                         what="responder up")
                rows.append((label, *measure(client, "192.168.0.1", 53, qfile, args.seconds)))
                counters.append((label, gw.stats()))
            finally:
                gw.stop()
        say(f"== DNS: dnsperf -c 4 -q 100 for {args.seconds} s, then -Q 2000; {len(QUERIES)} queries "
            "(answers, CNAME chain, NXDOMAIN, wildcard, referral, NS with additional), same run",
            indent="   ")
        for name, q, lost, lat in rows:
            say(f"  {name:42} {q:9.0f} QPS (lost {lost})", f"at 2000 QPS: {lat}")
        ref = rows[0][1] or 1
        say(f"  ratio responder alone / NSD               {rows[1][1] / ref:.2f}")
        say(f"  ratio gateway, answers in C / NSD         {rows[2][1] / ref:.2f}")
        say(f"  ratio gateway, --dns-fast off / NSD       {rows[3][1] / ref:.2f}")
        say(f"  ratio gateway / responder alone (C, off)  {rows[2][1] / (rows[1][1] or 1):.2f}, "
            f"{rows[3][1] / (rows[1][1] or 1):.2f}")
        for label, s in counters:
            p = s["ports"][0]
            say(f"  {label}:",
                f"answered in C {p['dns_answered']}, missed {p['dns_missed']}, responder "
                f"{s['dns'].get('queries')}, to_kernel {p['to_kernel']}, from_kernel {p['from_kernel']}, "
                f"drops {{{', '.join(f'{k}={v}' for k, v in p['drops'].items() if v)}}}")
        return 0
    finally:
        if standalone is not None:
            standalone.kill()
        if nsd is not None:
            nsd.close()
        topo.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
