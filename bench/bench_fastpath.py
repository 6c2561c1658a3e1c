#!/usr/bin/env python3
"""Fast-path forwarding rate against DPDK's l3fwd (issues: fast path, 11). Run as root:

  sudo .venv/bin/python bench/bench_fastpath.py [--seconds 2] [--rounds 3]
                      [--routes 100000] [--skip-extras] [--routes-only] [--no-huge]

Harness: port 0 = net_pcap replaying 64-byte UDP frames from memory
(infinite_rx), port 1 = net_null with no-rx=1 (a sink); 900 MiB of
hugepages (--no-huge: ordinary memory, where TLB misses flatten every rate),
-l 0-1 for everyone. The frames go to 198.18.1.x (254 addresses, varied UDP
ports) with the dst MAC of net_pcap0 (02:70:63:61:70:00): l3fwd's built-in
LPM table routes 198.18.1.0/24 to port 1, and kni-gw's set-up routes it via
a static neighbour on vEth1, so one pcap serves both. In one run, side by
side on the same vdevs:

  dpdk-testpmd io (one forwarding lcore)   the harness's ceiling
  DPDK l3fwd, LPM, one lcore (-l 0,         the reference (1.00x);
    --config "(0,0,0),(1,0,0)" --parse-ptype)  built by bench/build_l3fwd.sh if missing
  kni-gw "(0,0,1),(1,1,0)": rx of port 0 and tx of port 1 on lcore 0, i.e.
         the whole forwarding path on one lcore, as l3fwd's
  kni-gw "(0,0,1),(1,0,1)": rx on lcore 0, tx on lcore 1 (fifo between)
  kni-gw "(0,0+1,1),(1,1,0)": two rx lcores on port 0 (two rx queues: net_pcap
         with two rx_pcap= arguments), against one; "n/a (reason)" while
         kni-gw refuses that --config; again with the frames punted while
         the bench sets kni-gw up policed to 0 (QUIET_START); beside it,
         l3fwd with port 0's two rx queues on two lcores against one (what
         the 2 vCPUs allow)
  kni-gw with 100k IPv4 routes (--routes), frames spread over them: the
         rate against 1 route, and the time the mirror takes to load them
         with `ip -batch` while traffic runs
  extras (--skip-extras leaves them out): testpmd mac, 50% of the frames a
         flood at the gateway's address, two rx lcores on DPDK's ring and
         stack mempool drivers instead of kni-gw's kg_hot
         (--mbuf-pool-ops-name ring_mp_mc, stack), each frame from another
         source than the one before it (the core rows' all come from one
         host), a DNS zone loaded (--dns-zone examples/example.zone), 1%
         punted to the kernel

Every rate is the median of three windows of --seconds, read as port 1's
tx packet counter: kni-gw's through its stats (SIGUSR1), testpmd's and
l3fwd's through the DPDK telemetry socket (/ethdev/stats,1; l3fwd prints no
counters). A process's rate varies from one start to the next (where its
memory lands, what the host does) by up to a tenth, so the core rows
(testpmd io, l3fwd, kni-gw one lcore, split, two rx lcores, l3fwd on two)
run --rounds times in turn: each ratio is taken within a round, and the
report gives the median over the rounds and their range. The route-table
and extra rows run once, against the medians. Cycles per packet = core
clock (/proc/cpuinfo MHz) / rate, times the number of lcores that share the
rx work (2 for the two-rx-lcore row; with rx and tx split, it is the rx
lcore's).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, Proc, dpdk_port_rate, eal_memory, netns, say, sh, telemetry, wait_for  # noqa: E402
from kni_gw.instance import remove_eal_leftovers  # noqa: E402
from tests.integration.harness import Gateway  # noqa: E402

NS = "kgbench-fp"
PCAP_MAC = "02:70:63:61:70:00"      # net_pcap0's MAC ("pcap", index 0)
NEIGH_MAC = "02:00:00:00:0c:02"
L3FWD = os.path.join(os.path.dirname(HERE), "build", "dpdk-l3fwd")
# hugepages where 900 MiB are free (--no-huge forces ordinary memory)
MEM_OPTS, MEM_SAID = eal_memory(900, force_no_huge="--no-huge" in sys.argv)
EAL_MEM = MEM_OPTS + ["--no-pci"]
ONE = "(0,0,1),(1,1,0)"
SPLIT = "(0,0,1),(1,0,1)"
# two rx lcores on port 0: the spellings kni-gw may accept (lcores joined by
# '+', or a range), tried in this order
TWO_RX = ("(0,0+1,1),(1,1,0)", "(0,0-1,1),(1,1,0)")
# The pcap replays from the moment kni-gw starts, so frames arrive before the
# bench has configured vEth0/1 and the routes: kni-gw punts them to the
# kernel (forwarding off, no route). With two rx lcores such a start left
# both lcores slower until their mempool caches were renewed (README); the
# row beside it polices those two punt classes to 0, so that nothing
# reaches the kernel during set-up, to show whether the start still matters.
QUIET_START = ["--police", "transit=0", "--police", "error=0"]
# DPDK's mempool drivers instead of kni-gw's kg_hot (csrc/control/pool.c):
# its ring (first in, first out over the whole pool, as kni-gw was before
# kg_hot) and its stack (last in, first out); extra rows show what each
# gives two rx lcores (README, bench_exception_path.py)
RING_POOL = ["--mbuf-pool-ops-name", "ring_mp_mc"]
STACK_POOL = ["--mbuf-pool-ops-name", "stack"]


def cpu_mhz() -> float:
    with open("/proc/cpuinfo") as f:
        m = re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read())
    return float(m.group(1)) if m else 0.0


def loadavg() -> str:
    """The 1-minute load average: a benchmark alone on the 2-vCPU machine
    keeps it near 1-2; more means something else ran (the figures then
    say less, the ratios a little more)."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def fwd_dsts(n=1024):
    """n destinations in 198.18.1.0/24 (l3fwd: port 1; kni-gw: via vEth1),
    never .0 or .255"""
    return [f"198.18.1.{1 + i % 254}" for i in range(n)]


def write_frames(path, dsts, punt_every=0, size=60, srcs=("10.0.0.2",)):
    """One frame per destination; its source the next of srcs in turn."""
    from scapy.all import IP, UDP, Ether, Raw, wrpcap
    pkts = []
    for i, dst in enumerate(dsts):
        d = "10.0.0.1" if punt_every and i % punt_every == punt_every - 1 else dst
        p = Ether(dst=PCAP_MAC, src="02:00:00:00:0b:00") / IP(src=srcs[i % len(srcs)], dst=d, ttl=64) / \
            UDP(sport=1024 + i % 4096, dport=9)
        p = p / Raw(b"\x00" * max(0, size - len(p)))
        pkts.append(p)
    wrpcap(path, pkts)


def pcap_vdev(pcap, queues=1):
    """net_pcap0 with `queues` rx queues (one rx_pcap= per queue, each
    replaying the file from memory)."""
    return "net_pcap0," + ",".join([f"rx_pcap={pcap}"] * queues) + ",infinite_rx=1"


def vdevs(pcap, queues=1):
    return ["--vdev", pcap_vdev(pcap, queues), "--vdev", "net_null0,no-rx=1"]


def wait_port_counting(prefix, proc, port=1, what="opackets", timeout=20):
    """Until the primary's telemetry answers and port's counter moves."""
    def moving():
        if not proc.alive():
            raise RuntimeError("exited before forwarding:\n" + proc.stop()[-3000:])
        try:
            return telemetry(prefix, f"/ethdev/stats,{port}").get(what, 0) > 0
        except (OSError, ValueError, KeyError, TypeError):
            return False
    wait_for(moving, timeout=timeout, step=0.1, what=f"{prefix}: port {port} {what}")


def testpmd_rate(pcap, mode, seconds):
    prefix = "kgbench-tp"
    # --stats-period keeps testpmd from reading stdin (it would quit at EOF)
    p = Proc(["dpdk-testpmd", "-l", "0-1"] + EAL_MEM + ["--file-prefix", prefix] + vdevs(pcap) +
             ["--", f"--forward-mode={mode}", "--auto-start", "--total-num-mbufs=16384",
              "--stats-period", "10"], ns=NS)
    try:
        wait_port_counting(prefix, p)
        r, _ = dpdk_port_rate(prefix, 1, seconds, alive=p.alive)
        return r
    finally:
        p.stop()
        remove_eal_leftovers(prefix)    # testpmd leaves its hugepage files and EAL run dir


def ensure_l3fwd():
    if not os.path.exists(L3FWD):
        print("  (building DPDK l3fwd: bench/build_l3fwd.sh)", flush=True)
        subprocess.run([os.path.join(HERE, "build_l3fwd.sh")], check=True, stdout=subprocess.DEVNULL)


def l3fwd_rate(pcap, seconds, two=False):
    """DPDK l3fwd, LPM, one lcore polling both ports; port 1's tx rate, and
    the share of port 0's rx that went out of port 1 in the same windows
    (frames l3fwd drops or sends back out of port 0 would lower it).
    two: port 0's two rx queues on lcores 0 and 1 (what the machine gives a
    second rx lcore, for kni-gw's two-rx-lcore row)."""
    prefix = "kgbench-l3"
    lcores, config = ("0-1", "(0,0,0),(0,1,1),(1,0,0)") if two else ("0", "(0,0,0),(1,0,0)")
    p = Proc([L3FWD, "-l", lcores] + EAL_MEM + ["--file-prefix", prefix] + vdevs(pcap, 2 if two else 1) +
             ["--", "-p", "0x3", "--config", config, "--parse-ptype"], ns=NS)
    try:
        wait_port_counting(prefix, p)
        rx0a = telemetry(prefix, "/ethdev/stats,0")["ipackets"]
        tx1a = telemetry(prefix, "/ethdev/stats,1")["opackets"]
        r, _ = dpdk_port_rate(prefix, 1, seconds, alive=p.alive)
        rx0b = telemetry(prefix, "/ethdev/stats,0")["ipackets"]
        tx1b = telemetry(prefix, "/ethdev/stats,1")["opackets"]
        share = (tx1b - tx1a) / max(1, rx0b - rx0a)
        return r, share
    finally:
        out = p.stop()
        remove_eal_leftovers(prefix)
        if "198.18.1.0 / 24 (1)" not in out:
            print("  l3fwd: its route 198.18.1.0/24 -> port 1 is not in its output:\n" + out[-2000:])


class Refused(Exception):
    """kni-gw did not start with this configuration; str() is its reason."""


class KniGw:
    """kni-gw in the bench namespace (the test harness's process wrapper),
    with 198.18.1.0/24 and 10.2.0.0/16 routed via a static neighbour on
    vEth1; fast4 is the number of fast-path IPv4 routes once those are in."""

    def __init__(self, pcap, config, queues=1, extra=()):
        class Where:
            tag, gw = "kgbench", NS
        self.g = Gateway(Where(), ["-p", "0x3", "--config", config] + list(extra),
                         eal=["-l", "0-1"] + EAL_MEM + ["--file-prefix", "kgbench"] + vdevs(pcap, queues))
        try:
            self.g.wait_ready()
        except AssertionError:
            self.g.kill()
            err = [ln for ln in self.g.err if ln.strip()]
            why = next((ln for ln in err if "error" in ln.lower()), err[-1] if err else "no output")
            raise Refused(why.strip()) from None
        for k in (0, 1):
            sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=NS)
            sh("ip", "link", "set", f"vEth{k}", "up", ns=NS)
        sh("ip", "neigh", "replace", "10.1.0.2", "lladdr", NEIGH_MAC, "nud", "permanent",
           "dev", "vEth1", ns=NS)
        sh("ip", "route", "replace", "10.2.0.0/16", "via", "10.1.0.2", ns=NS)
        sh("ip", "route", "replace", "198.18.1.0/24", "via", "10.1.0.2", ns=NS)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS)
        # both routes in the fast path (3 with the one before them), and the
        # count settled: the route-load runs wait for fast4 + n
        self.fast4 = -1

        def settled():
            n, self.fast4 = self.fast4, self.stats()["fib"]["fast4"]
            return n == self.fast4 >= 3
        wait_for(settled, step=0.2, what="routes mirrored")

    def stats(self):
        return self.g.stats()

    def rate(self, seconds, samples=3):
        """Median port 1 tx rate over `samples` windows; the stats before
        the first window and after the last."""
        rates = []
        time.sleep(1.0)
        first = None
        for _ in range(samples):
            a, t0 = self.stats(), time.monotonic()
            first = first or a
            time.sleep(seconds)
            b, t1 = self.stats(), time.monotonic()
            rates.append((b["ports"][1]["tx_packets"] - a["ports"][1]["tx_packets"]) / (t1 - t0))
        return statistics.median(rates), first, b

    def stop(self):
        self.g.stop()


def load_routes(n, tmp):
    """n /24 routes 20.0.0.0/24 ... via 10.1.0.2, added with ip -batch."""
    path = os.path.join(tmp, f"routes{n}.batch")
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"route add {20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 via 10.1.0.2\n")
    return path


def timed_route_load(g, batch, n):
    """ip -batch the routes; seconds until ip returns and until all n are in
    the fast path, both from ip's start."""
    t0 = time.monotonic()
    sh("ip", "-batch", batch, ns=NS, timeout=300)
    t_ip = time.monotonic() - t0
    wait_for(lambda: g.stats()["fib"]["fast4"] >= g.fast4 + n, timeout=120, step=0.05,
             what=f"{n} routes mirrored")
    return t_ip, time.monotonic() - t0


def routes_load_while_forwarding(n, tmp, base):
    """n routes loaded with ip -batch while the fast path forwards traffic to
    an existing route at full rate: the mirror's load time."""
    batch = load_routes(n, tmp)
    g = KniGw(base, ONE)
    try:
        a, t0 = g.stats(), time.monotonic()
        t_ip, t_all = timed_route_load(g, batch, n)
        b = g.stats()
        fwd = (b["ports"][1]["tx_packets"] - a["ports"][1]["tx_packets"]) / (time.monotonic() - t0)
        return (f"{n // 1000}k routes loaded while forwarding (one lcore): ip -batch {t_ip:.2f} s, "
                f"mirrored in {t_all:.2f} s from its start; meanwhile {fwd / 1e6:.2f} Mpps forwarded")
    finally:
        g.stop()


def routes_run(n, tmp, args):
    """n routes loaded with ip -batch while traffic to them runs (punted to
    the kernel until its route is in); then the rate, frames spread over
    1024 of the routes."""
    dsts = [f"{20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.{1 + i % 250}"
            for i in (j * (n // 1024) for j in range(1024))]
    pcap = os.path.join(tmp, f"r{n}.pcap")
    write_frames(pcap, dsts)
    batch = load_routes(n, tmp)
    g = KniGw(pcap, ONE)
    try:
        # traffic is running (punted: no route yet) while the routes load
        t_ip, t_all = timed_route_load(g, batch, n)
        r, _, snap = g.rate(args.seconds)
        return r, (f"ip -batch {t_ip:.2f} s, mirrored in {t_all:.2f} s; "
                   f"tables {snap['fib']['memory'] / 2**20:.0f} MiB")
    finally:
        g.stop()


def kni_rate(pcap, config, seconds, queues=1, extra=()):
    """Rate, and the drop counters that moved while it was measured."""
    g = KniGw(pcap, config, queues, extra)
    try:
        r, a, b = g.rate(seconds)
        return r, drops_note(a, b)
    finally:
        g.stop()


def drops_note(a, b):
    """The drop counters of both ports that moved from stats a to stats b
    (the measurement windows), e.g. 'drops: port 0 fwd_fifo_full 95104'."""
    out = []
    for pa, pb in zip(a["ports"], b["ports"]):
        for k, v in sorted(pb["drops"].items()):
            if v != pa["drops"].get(k, 0):
                out.append(f"port {pb['port']} {k} {v - pa['drops'].get(k, 0)}")
    return ("drops in the windows: " + ", ".join(out)) if out else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one of the three rate windows")
    ap.add_argument("--rounds", type=int, default=3,
                    help="times the core rows (testpmd io, l3fwd, kni-gw's shapes) run in turn (default 3)")
    ap.add_argument("--routes", default="100000",
                    help="comma-separated route-table sizes to run (default 100000; '' or 0: none)")
    ap.add_argument("--skip-100k", action="store_true", help="same as --routes 10000")
    ap.add_argument("--skip-extras", action="store_true", help="leave out testpmd mac, flood and punt rows")
    ap.add_argument("--routes-only", action="store_true", help="only the route-table runs (and testpmd io)")
    ap.add_argument("--no-huge", action="store_true",
                    help="every process on ordinary memory instead of hugepages (the TLB then dominates)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 2
    sizes = [int(x) for x in args.routes.replace("_", "").split(",") if x.strip() and int(x)]
    if args.skip_100k:
        sizes = [10_000]
    mhz = cpu_mhz()
    if not args.routes_only:
        ensure_l3fwd()
    cleanup = netns(NS)
    tmp = tempfile.mkdtemp(prefix="kgbench")
    t_start = time.monotonic()
    try:
        base = os.path.join(tmp, "fwd.pcap")
        write_frames(base, fwd_dsts())
        say(f"== fast path, 64-byte frames to 198.18.1.0/24, pcap(infinite_rx) -> net_null(no-rx), "
            f"{MEM_SAID}; core {mhz:.0f} MHz; load average {loadavg()}", indent="   ")
        tp_io = testpmd_rate(base, "io", args.seconds)
        if args.routes_only:
            say(f"  dpdk-testpmd io                  {tp_io / 1e6:7.2f} Mpps")
            for n in sizes:
                say("  " + routes_load_while_forwarding(n, tmp, base), indent="    ")
                r, note = routes_run(n, tmp, args)
                say(f"  kni-gw one lcore, {n // 1000}k routes  {r / 1e6:7.2f} Mpps  {r / tp_io:.2f}x testpmd io",
                    note)
            return 0

        # The core rows, run --rounds times in turn (a process's rate varies
        # from one start to the next by more than the differences measured:
        # where its memory lands, what the host does); each ratio is taken
        # within a round, then the median over the rounds.
        runs = {k: [] for k in ("io", "l3", "one", "split", "l3two", "two", "two_q")}
        notes = {k: set() for k in runs}
        shares = []
        two_cfg, why = None, ""
        for rnd in range(args.rounds):
            runs["io"].append(tp_io if rnd == 0 else testpmd_rate(base, "io", args.seconds))
            r, share = l3fwd_rate(base, args.seconds)
            runs["l3"].append(r)
            shares.append(share)
            for k, cfg in (("one", ONE), ("split", SPLIT)):
                r, note = kni_rate(base, cfg, args.seconds)
                runs[k].append(r)
                if note:
                    notes[k].add(note)
            runs["l3two"].append(l3fwd_rate(base, args.seconds, two=True)[0])
            # the first round finds the spelling kni-gw takes (or none); the
            # others use it, and a refusal then is a failure, not a skip
            # (every ratio pairs runs of one round)
            for cfg in TWO_RX if rnd == 0 else [two_cfg] if two_cfg else []:
                try:
                    r, note = kni_rate(base, cfg, args.seconds, queues=2)
                except Refused as e:
                    if rnd:
                        raise
                    why = why or str(e)
                    continue
                runs["two"].append(r)
                two_cfg = cfg
                if note:
                    notes["two"].add(note)
                break
            if two_cfg:
                r, note = kni_rate(base, two_cfg, args.seconds, queues=2, extra=QUIET_START)
                runs["two_q"].append(r)
                if note:
                    notes["two_q"].add(note)
            say(f"  (round {rnd + 1} of {args.rounds} done, {time.monotonic() - t_start:.0f} s)")
        one = statistics.median(runs["one"])
        two = statistics.median(runs["two"]) if runs["two"] else None

        rows = []       # one run each: (label, packets/s, lcores sharing the rx work, note)
        extra_lines = []
        route_rows = []
        for n in sizes:
            extra_lines.append(routes_load_while_forwarding(n, tmp, base))
            r, note = routes_run(n, tmp, args)
            route_rows.append((n, r))
            rows.append((f"kni-gw one lcore, {n // 1000}k routes", r, 1, note))

        if not args.skip_extras:
            tp_mac = testpmd_rate(base, "mac", args.seconds)
            # half of the frames a flood at the gateway's own address (policed)
            flood = os.path.join(tmp, "flood50.pcap")
            write_frames(flood, fwd_dsts(1000), punt_every=2)
            g = KniGw(flood, ONE)
            try:
                a, t0 = g.stats()["ports"][0], time.monotonic()
                time.sleep(1 + args.seconds)
                b, dt = g.stats()["ports"][0], time.monotonic() - t0
                handled = (b["rx_packets"] - a["rx_packets"]) / dt
                fwd = (b["forwarded"] - a["forwarded"]) / dt
                pol = (b["drops"]["policed"] - a["drops"]["policed"]) / dt
            finally:
                g.stop()
            extra_lines.append(
                f"kni-gw one lcore, 50% flood to its own address (policed): {handled / 1e6:.2f} Mpps handled "
                f"({handled / one:.2f}x unflooded), {fwd / 1e6:.2f} Mpps forwarded, {pol / 1e6:.2f} Mpps policed")
            if two_cfg:
                for pool in (RING_POOL, STACK_POOL):
                    r, note = kni_rate(base, two_cfg, args.seconds, queues=2, extra=pool)
                    rows.append((f"kni-gw two rx lcores, {pool[1]} pool", r, 2,
                                 "; ".join(x for x in (f"{r / two:.2f}x kg_hot's", note) if x)))
            # every frame from another source than the one before it (the
            # core rows' frames all come from 10.0.0.2, and the rx stage
            # looks a source up once for a run of frames that share it)
            many = os.path.join(tmp, "srcs.pcap")
            write_frames(many, fwd_dsts(), srcs=[f"10.0.0.{k}" for k in range(2, 255)])
            r, note = kni_rate(many, ONE, args.seconds)
            rows.append(("kni-gw one lcore, varied sources", r, 1,
                         "; ".join(x for x in (f"{r / one:.2f}x one source's", note) if x)))
            # a DNS zone loaded (the responder's answers in C on, as
            # kni-gw runs with --dns-zone): the rx stage then looks for
            # queries to it in every burst
            zone = os.path.join(os.path.dirname(HERE), "examples", "example.zone")
            r, note = kni_rate(base, ONE, args.seconds, extra=["--dns-zone", zone])
            rows.append(("kni-gw one lcore, a DNS zone loaded", r, 1,
                         "; ".join(x for x in (f"{r / one:.2f}x without", note) if x)))
            # 1% punted
            punt = os.path.join(tmp, "punt1.pcap")
            write_frames(punt, fwd_dsts(1000), punt_every=100)
            g = KniGw(punt, ONE)
            try:
                r, _, snap = g.rate(args.seconds)
            finally:
                g.stop()
            p0 = snap["ports"][0]
            rows.append(("kni-gw one lcore, 1% punted", r, 1,
                         f"punted so far {p0['to_kernel']}, kernel_dropped {p0['kernel_dropped']}, "
                         f"to_kernel_full {p0['drops']['to_kernel_full']}"))

        io = statistics.median(runs["io"])
        l3 = statistics.median(runs["l3"])

        def cyc(r, lcores):
            return f"{lcores * mhz * 1e6 / r:6.0f}" if r else "     -"

        def per_round(k, ref):
            """The median over the rounds of k's rate over ref's in the
            same round, and their range."""
            q = [a / b for a, b in zip(runs[k], runs[ref])]
            return statistics.median(q), min(q), max(q)

        def rounds_note(k, extra=""):
            s = "rounds " + " ".join(f"{r / 1e6:.2f}" for r in runs[k])
            if k != "l3":
                m, lo, hi = per_round(k, "l3")
                s += f" ({lo:.2f}-{hi:.2f}x l3fwd)"
            return "; ".join([s] + ([extra] if extra else []) + sorted(notes[k]))

        def row(label, k, lcores=1):
            if not runs[k]:
                say(f"  {label}", f"n/a (refused: {why})")
                return
            r = statistics.median(runs[k])
            say(f"  {label:40s} {r / 1e6:7.2f}  {per_round(k, 'l3')[0]:7.2f}  "
                f"{per_round(k, 'io')[0]:5.2f}  {cyc(r, lcores)}",
                rounds_note(k, f"port 0 rx out of port 1: {100 * min(shares):.1f}% at least"
                            if k == "l3" else ""))

        print(f"  {'':40s} {'Mpps':>7s}  {'x l3fwd':>7s}  {'x io':>5s}  {'cyc/pkt':>7s}")
        row("dpdk-testpmd io (harness ceiling)", "io")
        row("dpdk-l3fwd LPM, one lcore", "l3")
        if not args.skip_extras:
            say(f"  {'dpdk-testpmd mac':40s} {tp_mac / 1e6:7.2f}  {tp_mac / l3:7.2f}  {tp_mac / io:5.2f}  "
                f"{cyc(tp_mac, 1)}", "one run, against the medians")
        row(f"kni-gw one lcore {ONE}", "one")
        row(f"kni-gw rx/tx split {SPLIT}", "split")
        row(f"kni-gw two rx lcores {two_cfg or TWO_RX[0]}", "two", 2)
        if runs["two_q"]:
            row("  same, set-up's punts policed to 0", "two_q", 2)
        for label, r, lcores, note in rows:
            say(f"  {label:40s} {r / 1e6:7.2f}  {r / l3:7.2f}  {r / io:5.2f}  {cyc(r, lcores)}",
                "; ".join(x for x in ("one run, against the medians", note) if x))
        for n, r in route_rows:
            say(f"  {n // 1000}k vs 1 route (one lcore): {r / one:.2f}x (against the median)")
        if two:
            m, lo, hi = per_round("two", "one")
            say(f"  two rx lcores against one: {m:.2f}x (rounds {lo:.2f}-{hi:.2f})")
            m, lo, hi = per_round("two_q", "one")
            say(f"  the same, its set-up's punts policed to 0: {m:.2f}x (rounds {lo:.2f}-{hi:.2f})")
        else:
            say("  two rx lcores against one: n/a")
        m, lo, hi = per_round("l3two", "l3")
        say(f"  l3fwd, two lcores against one: {m:.2f}x (rounds {lo:.2f}-{hi:.2f}; what this "
            f"machine gives a 2nd lcore)", indent="    ")
        for line in extra_lines:
            say("  " + line, indent="    ")
        say(f"  (cycles/packet: core clock x rx lcores / rate; run took {time.monotonic() - t_start:.0f} s; "
            f"load average at the end {loadavg()})", indent="   ")
        return 0
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
