#!/usr/bin/env python3
"""TCP through kni-gw against Linux forwarding (issue 11). Run as root:

  sudo .venv/bin/python bench/bench_tcp.py [--runs 3] [--time 10] [--parallel 1]

Two copies of the integration tests' topology (TESTING.md,
tests/integration/harness.Topology), built side by side:

  kni-gw:  ns peer0: p0 10.0.0.2/24 -- veth -- g0 [ns gw: kni-gw] g1 -- veth -- p1 10.1.0.2/24 :ns peer1
           kni-gw -l 0-1 --no-huge -m 256 --no-pci --vdev net_af_packet0,iface=g0,qpairs=2
                  --vdev net_af_packet1,iface=g1,qpairs=2 -p 0x3 --config "(0,0,1),(1,0,1)"
           (rx of both ports on lcore 0, tx of both on lcore 1: the README's
           two-port shape; qpairs=2 gives lcore 0 a tx queue of its own on
           each port, --qpairs 1 shows the fifo fallback), vEth0 10.0.0.1/24, vEth1 10.1.0.1/24,
           ip_forward=1 in the gateway namespace (kni-gw mirrors it)
  Linux:   the same namespaces, veth pairs and addresses, with 10.0.0.1/24
           on g0 and 10.1.0.1/24 on g1 and ip_forward=1: the kernel forwards

The peers are set up as the tests set them up (tx checksum offload off:
with it, AF_PACKET would hand DPDK half-done TCP checksums; it also turns
TSO off, so both gateways see MTU-sized frames; IPv6 off). The gateway's
raw ends are kept from its kernel stack (rp_filter, arp_ignore) only in the
kni-gw copy.

iperf3 -c 10.1.0.2 from peer0 (server in peer1), --time seconds, --runs
times each, alternating Linux / kni-gw; kni-gw keeps running between its
runs (idle, its lcores back off: ~2-3% of a core each during the Linux
runs). Printed per run: Gbit/s received, the sender's retransmits (iperf3
-J end.sum_sent.retransmits); for kni-gw also the frames it forwarded each
way and every drop counter that moved (fwd_fifo_full, tx_nic, ... and
the port's hw imissed / rx_nombuf / oerrors) during the run, and the
frames lost in net_af_packet's rx ring (kni-gw's default ring, 8192 frames;
--framecnt 512 shows DPDK's own) (the veth end's rx_packets minus
the port's hw_ipackets: the PMD does not count them). The medians'
ratio is the figure; absolute rates depend on the machine's load.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Proc, say  # noqa: E402
from kni_gw.config import AF_PACKET_FRAMECNT  # noqa: E402
from tests.integration.harness import Gateway, Topology, sh, wait_for  # noqa: E402

CONFIG = "(0,0,1),(1,0,1)"
SERVER = "10.1.0.2"


def iperf3(client_ns, seconds, parallel):
    r = sh("iperf3", "-c", SERVER, "-t", str(seconds), "-P", str(parallel), "-J",
           ns=client_ns, check=False, timeout=seconds + 30)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3: {r.stderr.strip() or r.stdout[-500:]}")
    if "error" in j:
        raise RuntimeError(f"iperf3: {j['error']}")
    end = j["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "sent_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
            "retrans": end["sum_sent"].get("retransmits", 0)}


def linux_router(topo):
    """Turn the topology's gateway namespace into a plain Linux router: the
    addresses on the veth ends themselves, the kernel stack on them."""
    for k in range(topo.nports):
        sh("sysctl", "-qw", f"net.ipv4.conf.g{k}.rp_filter=0", f"net.ipv4.conf.g{k}.arp_ignore=0", ns=topo.gw)
        sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"g{k}", ns=topo.gw)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)


def vdevs(topo, qpairs, framecnt=0):
    out = []
    for k in range(topo.nports):
        out += ["--vdev", f"net_af_packet{k},iface=g{k}" + (f",qpairs={qpairs}" if qpairs > 1 else "")
                + (f",framecnt={framecnt}" if framecnt else "")]
    return out


def start_kni_gw(topo, qpairs, framecnt=0):
    eal = ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag, "--no-huge", "-m", "256"] + vdevs(topo, qpairs, framecnt)
    g = Gateway(topo, ["-p", "0x3", "--config", CONFIG], eal=eal).wait_ready()
    for k in range(topo.nports):
        sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=topo.gw)
        sh("ip", "link", "set", f"vEth{k}", "up", ns=topo.gw)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    return g


def reachable(topo):
    wait_for(lambda: sh("ping", "-c", "1", "-W", "1", SERVER, ns=topo.peers[0], check=False).returncode == 0,
             timeout=20, step=0.2, what=f"ping {SERVER} through {topo.gw}")


def kernel_rx(topo, k):
    """Frames the veth end gK received in the gateway namespace: what the
    wire handed to net_af_packet's ring, whether DPDK took them or not."""
    r = sh("cat", f"/sys/class/net/g{k}/statistics/rx_packets", ns=topo.gw)
    return int(r.stdout)


def counters(stats, topo):
    """Per port: forwarded, every drop counter (drops.*: rx_dropped and
    tx_dropped are their sums) and the port's own counters of frames it
    lost (hw_*: the af_packet ring's), flat."""
    out = {}
    for p in stats["ports"]:
        n = p["port"]
        out[(n, "forwarded")] = p["forwarded"]
        for k, v in p["drops"].items():
            out[(n, k)] = v
        for k in ("hw_imissed", "hw_ierrors", "hw_rx_nombuf", "hw_oerrors"):
            out[(n, k)] = p["hw"].get(k, 0)
        # the af_packet ring's overflows: net_af_packet (22.11) does not
        # count them, so they are the frames gN received that port N did not
        out[(n, "af_packet_ring")] = kernel_rx(topo, n) - p["hw"]["hw_ipackets"]
    return out


def moved(a, b):
    fwd = {n: b[(n, "forwarded")] - a[(n, "forwarded")] for n, k in b if k == "forwarded"}
    drops = {f"port {n} {k}": b[(n, k)] - a.get((n, k), 0) for n, k in sorted(b)
             if k != "forwarded" and b[(n, k)] != a.get((n, k), 0)}
    return fwd, drops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="iperf3 runs per gateway (alternating)")
    ap.add_argument("--time", type=int, default=10, help="seconds per iperf3 run")
    ap.add_argument("--parallel", type=int, default=1, help="iperf3 -P streams")
    ap.add_argument("--qpairs", type=int, default=2,
                    help="net_af_packet qpairs: 2 gives every forwarding lcore its own tx queue "
                         "(1: forwarded frames cross to the tx lcore through a fifo)")
    ap.add_argument("--framecnt", type=int, default=0,
                    help="net_af_packet framecnt: frames in each queue's kernel ring (0: kni-gw's default, 8192; "
                         "512 is DPDK's)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    topos, procs, g = [], [], None
    try:
        kt = Topology(2)
        topos.append(kt)
        lt = Topology(2)
        topos.append(lt)
        linux_router(lt)
        for t in (kt, lt):
            procs.append(Proc(["iperf3", "-s"], ns=t.peers[1]))
        g = start_kni_gw(kt, args.qpairs, args.framecnt)
        reachable(lt)
        reachable(kt)
        for t in (kt, lt):
            # the iperf3 server listening on its port
            wait_for(lambda t=t: ":5201 " in sh("ss", "-ltnH", ns=t.peers[1]).stdout, step=0.05,
                     what="iperf3 -s listening")

        say(f"== TCP, iperf3 -c {SERVER} -t {args.time} -P {args.parallel}, peer0 -> gateway -> peer1 "
            f"over veth; load average {open('/proc/loadavg').read().split()[0]}", indent="   ")
        say(f"   kni-gw: -l 0-1 --no-huge -m 256 {' '.join(vdevs(kt, args.qpairs, args.framecnt))} "
            f"-p 0x3 --config \"{CONFIG}\"" +
            ("" if args.framecnt else f" (kni-gw gives each port framecnt={AF_PACKET_FRAMECNT}, its default)"),
            indent="     ")
        res = {"linux": [], "kni-gw": []}
        for i in range(args.runs):
            r = iperf3(lt.peers[0], args.time, args.parallel)
            res["linux"].append(r)
            say(f"  run {i + 1} Linux forwarding  {r['gbps']:6.2f} Gbit/s  retransmits {r['retrans']}")
            a = counters(g.stats(), kt)
            r = iperf3(kt.peers[0], args.time, args.parallel)
            b = counters(g.stats(), kt)
            fwd, drops = moved(a, b)
            res["kni-gw"].append(r)
            say(f"  run {i + 1} kni-gw            {r['gbps']:6.2f} Gbit/s  retransmits {r['retrans']}",
                f"forwarded {fwd[0]} (port 0 rx: data) / {fwd[1]} (port 1 rx: acks); "
                f"drops: {', '.join(f'{k} {v}' for k, v in drops.items()) or 'none'}")
        lm = statistics.median(x["gbps"] for x in res["linux"])
        km = statistics.median(x["gbps"] for x in res["kni-gw"])
        say(f"  median: Linux {lm:.2f} Gbit/s (retransmits "
            f"{statistics.median(x['retrans'] for x in res['linux']):.0f}), "
            f"kni-gw {km:.2f} Gbit/s (retransmits {statistics.median(x['retrans'] for x in res['kni-gw']):.0f}): "
            f"kni-gw {km / lm:.2f}x Linux", indent="    ")
        return 0
    finally:
        if g is not None:
            g.kill()
        for p in procs:
            p.stop()
        for t in topos:
            t.close()


if __name__ == "__main__":
    sys.exit(main())
