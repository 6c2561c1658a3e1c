#!/usr/bin/env python3
"""DNS answers in C against the gateway's forwarding rate and against the
responder through the exception path (issue 14). Run as root, alone:

  sudo flock /tmp/kni-bench.lock .venv/bin/python bench/bench_dns_fast.py [--seconds 2]

Harness (bench_fastpath's): port 0 = net_pcap replaying queries from
memory (infinite_rx), port 1 = net_null no-rx=1 (the sink); its memory
(900 MiB of hugepages where free, else --no-huge), -l 0-1, kni-gw --config "(0,0,1),(1,1,0)": lcore 0 polls port 0
and answers, lcore 1 does the rest. The zone has 10,000 names
(h0..h9999.bench.test, A, and AAAA on every 4th). The queries come from
4,096 clients in 10.2.0.0/16, which the gateway routes via a static
neighbour on vEth1: the answers leave by port 1 and are counted there (its
tx counter), as forwarded frames are. --dns-rrl 0: the rate limit is off
(one /24 here asks millions of times a second).

Rows, in one run:
  forwarding      64-byte frames to 198.18.1.0/24 through the same gateway
  C, all hits     10,000 names, A and AAAA (NODATA where absent), 1/4 with
                  EDNS, 1/8 in mixed case (0x20)
  C, with misses  the same, but 1 query in 10 for a name the zone lacks
                  (NXDOMAIN) or with the DO bit: punted to the responder
  responder       the all-hits queries with --dns-fast off: every one
                  through the exception path, the kernel and Python
Target: C, all hits >= 5M answers/s and >= 40x the responder's rate.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_fastpath import (NS, PCAP_MAC, ONE, KniGw, cpu_mhz, fwd_dsts, loadavg,  # noqa: E402
                            write_frames)
from common import netns, say  # noqa: E402

NAMES = 10_000


def write_zone(path):
    with open(path, "w") as f:
        f.write("$ORIGIN bench.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n"
                "@ IN NS ns\nns IN A 10.0.0.1\n")
        for i in range(NAMES):
            f.write(f"h{i} IN A 10.{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}\n")
            if i % 4 == 0:
                f.write(f"h{i} IN AAAA 2001:db8:100::{i:x}\n")


def write_queries(path, misses):
    """One query per name, in random order; `misses`: 1 in 10 for a name
    not in the zone or with DO set."""
    from scapy.all import DNS, DNSQR, DNSRROPT, IP, UDP, Ether, wrpcap
    rnd = random.Random(7)
    pkts = []
    for i in rnd.sample(range(NAMES), NAMES):
        name = f"h{i}.bench.test"
        if i % 8 == 3:
            name = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)
        qtype = "AAAA" if i % 3 == 0 else "A"
        ar = None
        if i % 4 == 1:
            ar = DNSRROPT(rclass=1232, z=0)         # scapy sets DO unless told
        if misses and i % 10 == 7:
            if i % 20 == 7:
                name = f"nx{i}.bench.test"
            else:
                ar = DNSRROPT(rclass=1232, z=0x8000)   # DO: the responder's
        dns = DNS(id=i & 0xffff, rd=1, qd=DNSQR(qname=name, qtype=qtype), ar=ar)
        p = Ether(dst=PCAP_MAC, src="02:00:00:00:0b:00") / \
            IP(src=f"10.2.{(i >> 8) & 15}.{1 + (i & 255) % 254}", dst="10.0.0.1") / \
            UDP(sport=1024 + i, dport=53) / dns
        pkts.append(p)
    wrpcap(path, pkts)


def run(pcap, extra, seconds, zone_ready=True):
    g = KniGw(pcap, ONE, extra=extra)
    try:
        if zone_ready:
            g.g.wait_line(g.g.err, lambda s: "answers compiled" in s, timeout=120)
        r, a, b = g.rate(seconds)
        pa, pb = a["ports"][0], b["ports"][0]
        note = {k: pb[k] - pa[k] for k in ("rx_packets", "dns_answered", "dns_missed", "to_kernel")}
        note["policed_dns"] = pb["policed"]["dns"] - pa["policed"]["dns"]
        compiled = b.get("dns_fast", {})
        return r, note, compiled
    finally:
        g.stop()


def counts(note) -> str:
    """A run's counters as "name value, ..." (a dict), else as given."""
    return ", ".join(f"{k} {v}" for k, v in note.items()) if isinstance(note, dict) else str(note)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one of the three rate windows")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    cleanup = netns(NS)
    tmp = tempfile.mkdtemp(prefix="kgbench-dns")
    try:
        zone = os.path.join(tmp, "bench.zone")
        write_zone(zone)
        fwd, hits, mix = (os.path.join(tmp, f) for f in ("fwd.pcap", "hits.pcap", "mix.pcap"))
        write_frames(fwd, fwd_dsts())
        write_queries(hits, misses=False)
        write_queries(mix, misses=True)
        dns = ["--dns-zone", zone, "--dns-rrl", "0"]
        say(f"== DNS answers in C, {NAMES} names, queries pcap(infinite_rx) -> answers on net_null, "
            f"--config \"{ONE}\"; core {cpu_mhz():.0f} MHz; load average {loadavg()}", indent="   ")
        f, _, _ = run(fwd, dns, args.seconds, zone_ready=True)
        say(f"  forwarding, same gateway          {f / 1e6:7.2f} Mpps")
        c, note, compiled = run(hits, dns, args.seconds)
        say(f"  C, all hits                       {c / 1e6:7.2f} M answers/s",
            f"{c / f:.2f}x forwarding; table {compiled.get('entries')} answers, "
            f"{compiled.get('memory', 0) // 1024} KiB, compiled in {compiled.get('compile_seconds')} s; "
            f"in the windows: {counts(note)}")
        m, note_m, _ = run(mix, dns, args.seconds)
        say(f"  C, 10% misses to the responder    {m / 1e6:7.2f} M answers/s",
            f"in the windows: {counts(note_m)}")
        s, note_s, _ = run(hits, ["--dns-zone", zone, "--dns-fast", "off"], args.seconds, zone_ready=False)
        say(f"  responder (--dns-fast off)        {s / 1e3:7.1f} k answers/s",
            f"in the windows: {counts(note_s)}")
        say(f"  C against the responder: {c / max(s, 1):.0f}x ; C against forwarding: {c / f:.2f}x")
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
