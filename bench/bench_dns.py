#!/usr/bin/env python3
"""DNS responder benchmark (issue: DNS). Run as root:

  sudo .venv/bin/python bench/bench_dns.py [--seconds 5]

dnsperf (Debian's) from the peer namespace queries kni-gw's responder on
vEth0's address: the queries cross the wire (veth), port 0, the exception
path and the kernel; the answers come back the same way. Beside it, in the
same run, the same responder on loopback without the gateway
(python -m kni_gw.dns). Prints QPS at full load (dnsperf -c 4 -q 100) and
latency percentiles at a fixed 2000 QPS (dnsperf -v), for both.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import sh, wait_for  # noqa: E402
from tests.integration.harness import Gateway, Topology, veth_up  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZONE = os.path.join(TOP, "examples", "example.zone")
QUERIES = ["www.example.test A", "gw.example.test AAAA", "example.test MX", "txt.example.test TXT",
           "nope.example.test A", "x.dyn.example.test A", "_http._tcp.example.test SRV",
           "host.sub.example.test A"]


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
    if not lat:
        return "no samples"
    q = statistics.quantiles(lat, n=100)
    return (f"p50 {q[49] * 1e6:.0f} us, p90 {q[89] * 1e6:.0f} us, p99 {q[98] * 1e6:.0f} us "
            f"({len(lat)} queries)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    qfile = "/tmp/kgbench-dns-queries.txt"
    with open(qfile, "w") as f:
        f.write("\n".join(QUERIES) + "\n")
    topo = Topology(1)
    try:
        # beside it: the same responder, loopback, no gateway
        standalone = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-m",
                                       "kni_gw.dns", "--zone", ZONE, "--port", "5300"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=TOP)
        assert standalone.stdout.readline().strip() == "ready"
        lo_q, lo_lost = qps(dnsperf(topo.peers[0], "127.0.0.1", 5300, qfile, args.seconds, ["-c", "4", "-q", "100"]))
        lo_lat = percentiles(dnsperf(topo.peers[0], "127.0.0.1", 5300, qfile, 3, ["-Q", "2000", "-v"]))
        standalone.kill()

        gw = Gateway(topo, ["-p", "0x1", "--config", "(0,0,1)", "--dns-zone", ZONE])
        try:
            gw.wait_ready()
            veth_up(topo, 0, "192.168.0.1/24")
            sh("ip", "addr", "add", "192.168.0.2/24", "dev", "p0", ns=topo.peers[0])
            wait_for(lambda: "NOERROR" in sh("dig", "@192.168.0.1", "+time=1", "+tries=1", "gw.example.test",
                                             ns=topo.peers[0], check=False).stdout, what="responder up")
            gw_q, gw_lost = qps(dnsperf(topo.peers[0], "192.168.0.1", 53, qfile, args.seconds, ["-c", "4", "-q", "100"]))
            gw_lat = percentiles(dnsperf(topo.peers[0], "192.168.0.1", 53, qfile, 3, ["-Q", "2000", "-v"]))
            s = gw.stats()
        finally:
            gw.stop()
        print("== DNS: dnsperf -c 4 -q 100, 8 query names (answers, NXDOMAIN, referral), same run")
        print(f"  responder on loopback, no gateway   {lo_q:9.0f} QPS (lost {lo_lost}); at 2000 QPS: {lo_lat}")
        print(f"  through kni-gw (wire, vEth0)        {gw_q:9.0f} QPS (lost {gw_lost}); at 2000 QPS: {gw_lat}")
        print(f"  ratio gateway / loopback            {gw_q / lo_q:.2f}")
        p = s["ports"][0]
        print(f"  gateway counters: dns queries {s['dns'].get('queries')}, to_kernel {p['to_kernel']}, "
              f"from_kernel {p['from_kernel']}, drops {{{', '.join(f'{k}={v}' for k, v in p['drops'].items() if v)}}}")
        return 0
    finally:
        topo.close()


if __name__ == "__main__":
    sys.exit(main())
