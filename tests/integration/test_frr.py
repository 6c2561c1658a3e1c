"""FRR on the gateway, BIRD on its neighbours: OSPF routes with kernel nexthop
objects, forwarded in C.

  ns peer0: p0 10.0.0.2 ── g0 ┐                         ┌ g1 ── p1 10.1.0.2  ns peer1: BIRD (OSPF)
                              │ ns gw: kni-gw, 3 ports  │        192.168.77.1, 192.168.88.1 on lo
                              │ vEth0/1/2 10.N.0.1      │
                              │ FRR zebra + ospfd       └ g2 ── p2 10.2.0.2  ns peer2: BIRD (OSPF)
                              └                                  192.168.88.1 on lo

FRR (zebra + ospfd from Debian, examples/frr/, zebra's default settings) runs
in the gateway's namespace and forms OSPF adjacencies over vEth1 and vEth2
with BIRD 2 on peer1 and peer2; the hellos, DD and LS packets go through
kni-gw's exception path. peer1 announces 192.168.77.0/24 (only it), both
announce 192.168.88.0/24 at the same cost (192.168.88.1 is on lo of both:
an anycast address, so each peer counts what reaches it), so zebra installs
`nhid N proto ospf` routes, the second one with a nexthop group of two.

  (a) a stream from peer0 to 192.168.77.1 is forwarded in C: port 0's
      `forwarded` counts it all, nothing of it goes through the kernel, and
      vEth1 sees only OSPF's own frames meanwhile;
  (b) 64 UDP flows (source ports) to 192.168.88.1 land on both next hops,
      each flow on one, all forwarded in C;
  (c) peer2 stops announcing 192.168.88.0/24, or its router dies (the
      dead interval notices): once the kernel's route has one next hop,
      every flow reaches peer1 (none the withdrawn one: the fast path
      follows), still forwarded in C.

Each test checks what the kernel does first (routes with nhid, delivery,
spread), then what the fast path does, so a failure says which part is wrong.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from .harness import Gateway, Topology, ping, sh, veth_up, wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRR = "/usr/lib/frr"
THREE = ["-p", "0x7", "--config", "(0,0,1),(1,0,1),(2,0,1)"]
ONLY1 = "192.168.77.0/24"     # announced by peer1 only
ANY = "192.168.88.0/24"       # announced by peer1 and peer2 (ECMP)
FLOWS = 64
PER_FLOW = 20


def bird_conf(k: int, stubnets) -> str:
    """BIRD 2 on peerK: OSPF on pK with the gateway's timers, announcing
    `stubnets`; it exports nothing to its own kernel (the peer's default
    route points at the gateway)."""
    nets = "".join(f"\t\tstubnet {n};\n" for n in stubnets)
    return (f"router id 10.{k}.0.2;\n"
            "protocol device { }\n"
            "protocol ospf v2 uplink {\n"
            "\tipv4 { import none; export none; };\n"
            "\tarea 0 {\n"
            f"{nets}"
            f"\t\tinterface \"p{k}\" {{ hello 1; dead 4; }};\n"
            "\t};\n"
            "}\n")


class Daemons:
    """FRR and BIRD processes run in the foreground (we own their pids) with
    their files in one scratch directory that user frr can write."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kgt-frr-")
        shutil.chown(self.dir, "frr", "frr")
        os.chmod(self.dir, 0o755)
        self.procs = []

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start(self, ns: str, argv, name: str) -> subprocess.Popen:
        err = open(self.path(name + ".stderr"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err)
        err.close()
        self.procs.append((name, p))
        return p

    def frr(self, ns: str, daemon: str) -> subprocess.Popen:
        return self.start(ns, [f"{FRR}/{daemon}", "-f", os.path.join(TOP, "examples/frr", daemon + ".conf"),
                               "-i", self.path(daemon + ".pid"), "-z", self.path("zserv.api"),
                               "--vty_socket", self.dir, "-A", "127.0.0.1", "-P", "0",
                               "--log", "file:" + self.path(daemon + ".log")], daemon)

    def bird(self, ns: str, k: int, stubnets) -> subprocess.Popen:
        conf = self.path(f"bird{k}.conf")
        with open(conf, "w") as f:
            f.write(bird_conf(k, stubnets))
        return self.start(ns, ["bird", "-f", "-c", conf, "-s", self.path(f"bird{k}.ctl"),
                               "-P", self.path(f"bird{k}.pid")], f"bird{k}")

    def bird_reconfigure(self, ns: str, k: int, stubnets, check: bool = True) -> None:
        conf = self.path(f"bird{k}.conf")
        with open(conf, "w") as f:
            f.write(bird_conf(k, stubnets))
        r = sh("birdc", "-s", self.path(f"bird{k}.ctl"), "configure", f'"{conf}"', ns=ns, check=check)
        assert not check or "Reconfigured" in r.stdout, r.stdout

    def kill(self, name: str) -> None:
        """SIGKILL one daemon (a router that dies: nothing is withdrawn)."""
        for i, (n, p) in enumerate(self.procs):
            if n == name:
                p.kill()
                p.wait()
                del self.procs[i]
                return
        raise AssertionError(f"no daemon {name}")

    def vtysh(self, ns: str, cmd: str) -> str:
        return sh("vtysh", "--vty_socket", self.dir, "-c", cmd, ns=ns, check=False, timeout=10).stdout

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise AssertionError(f"{name} exited ({p.returncode}):\n{self.tail(name)}")

    def tail(self, name: str, n: int = 20) -> str:
        out = []
        for suffix in (".stderr", ".log"):
            try:
                with open(self.path(name + suffix)) as f:
                    out += f.read().splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def close(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def route(ns: str, prefix: str) -> dict:
    """The kernel's route for prefix in the main table, {} if none."""
    r = json.loads(sh("ip", "-j", "route", "show", prefix, ns=ns).stdout or "[]")
    return r[0] if r else {}


def gateways_of(rt: dict) -> list:
    """Next-hop addresses of a kernel route, single or multipath."""
    if "nexthops" in rt:
        return sorted(h["gateway"] for h in rt["nexthops"])
    return [rt["gateway"]] if "gateway" in rt else []


def nexthop_objects(ns: str) -> str:
    return sh("ip", "nexthop", "show", ns=ns).stdout


def flow_sink(ns: str, port: int) -> subprocess.Popen:
    """Counts UDP datagrams per source port until 1.5 s of silence, then
    prints {sport: count} as JSON. Returns once bound."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                          "import socket,json\n"
                          "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                          "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,8<<20)\n"
                          f"s.bind(('0.0.0.0',{port}))\nprint('ready',flush=True)\n"
                          "s.settimeout(1.5)\nc={}\n"
                          "try:\n"
                          "  while True:\n"
                          "    _,a=s.recvfrom(65535); c[a[1]]=c.get(a[1],0)+1\n"
                          "except socket.timeout:\n  print(json.dumps(c))\n"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def flow_counts(sink: subprocess.Popen) -> dict:
    out = sink.communicate(timeout=60)[0]
    return {int(k): v for k, v in json.loads(out).items()}


def send_flows(ns: str, dst: str, port: int, flows: int, per_flow: int, sport0: int = 40000) -> None:
    """per_flow datagrams on each of `flows` source ports, round-robin, in
    bursts of 100 a millisecond apart (a stream, not a flood)."""
    code = (
        "import socket,time\n"
        "ss=[]\n"
        f"for i in range({flows}):\n"
        "  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        f"  s.bind(('0.0.0.0',{sport0}+i)); ss.append(s)\n"
        "b=bytes(64)\nn=0\n"
        f"for r in range({per_flow}):\n"
        "  for s in ss:\n"
        f"    s.sendto(b,('{dst}',{port})); n+=1\n"
        "    n % 100 == 0 and time.sleep(0.001)\n")
    sh(sys.executable, "-c", code, ns=ns)


def ports(gw: Gateway) -> dict:
    return {p["port"]: p for p in gw.stats()["ports"]}


def delta(after: dict, before: dict, k: int, counter: str) -> int:
    return after[k][counter] - before[k][counter]


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


# OSPF's own frames on an uplink while a stream runs: hellos (1 s), and
# occasionally an LS update or ack. The bound the kernel's share must stay in.
def ospf_budget(seconds: float) -> int:
    return 6 + int(4 * seconds)


@pytest.fixture(scope="module")
def ospf():
    """Gateway, FRR and two BIRD peers, converged: both routes in the
    gateway's kernel with nexthop objects (what kni-gw does with them is
    for the tests to say)."""
    for tool in (f"{FRR}/zebra", f"{FRR}/ospfd", shutil.which("vtysh") or "vtysh",
                 shutil.which("bird") or "bird", shutil.which("birdc") or "birdc"):
        if not os.path.exists(tool):
            pytest.fail(f"{tool} is missing (scripts/install.sh installs frr and bird2)", pytrace=False)
    topo = Topology(3)
    d = Daemons()
    gw = None
    try:
        # three ports' mbufs beside tables sized for 1M routes: more than
        # the harness's default 256 MB
        gw = Gateway(topo, THREE, eal=["-l", "0-1", "--no-pci", "--file-prefix", topo.tag,
                                       "--no-huge", "-m", "512"] + topo.vdevs()).wait_ready()
        for k in range(3):
            veth_up(topo, k)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
        # the kernel's own forwarding (the reference, and today's path for
        # nhid routes) spreads flows by ports too, as the fast path does
        sh("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", ns=topo.gw)
        sh("ip", "addr", "add", "192.168.77.1/32", "dev", "lo", ns=topo.peers[1])
        for k in (1, 2):
            sh("ip", "addr", "add", "192.168.88.1/32", "dev", "lo", ns=topo.peers[k])
        wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
                 what="forwarding on in the fast path")

        d.frr(topo.gw, "zebra")
        wait_for(lambda: d.check_alive() or os.path.exists(d.path("zserv.api")), timeout=10,
                 step=0.05, what="zebra's zserv.api")
        d.frr(topo.gw, "ospfd")
        d.bird(topo.peers[1], 1, [ONLY1, ANY])
        d.bird(topo.peers[2], 2, [ANY])

        def converged():
            d.check_alive()
            return (gateways_of(route(topo.gw, ONLY1)) == ["10.1.0.2"]
                    and gateways_of(route(topo.gw, ANY)) == ["10.1.0.2", "10.2.0.2"])
        try:
            wait_for(converged, timeout=30, step=0.2, what="OSPF routes in the gateway's kernel")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{d.vtysh(topo.gw, 'show ip ospf neighbor')}\n"
                                 f"{sh('ip', 'route', ns=topo.gw).stdout}\n{d.tail('ospfd')}") from None
        # zebra's default: routes name kernel nexthop objects, the ECMP one a group
        for prefix in (ONLY1, ANY):
            rt = route(topo.gw, prefix)
            assert rt.get("protocol") == "ospf" and "nhid" in rt, rt
        assert "group" in nexthop_objects(topo.gw), nexthop_objects(topo.gw)
        # the neighbours resolved (through the kernel) before anything is measured
        for k in (1, 2):
            wait_for(lambda k=k: ping(topo.gw, f"10.{k}.0.2", count=1, wait=1).returncode == 0
                     and "lladdr" in sh("ip", "neigh", "show", f"10.{k}.0.2", ns=topo.gw).stdout,
                     timeout=10, step=0.2, what=f"neighbour 10.{k}.0.2")
        yield topo, gw, d
    finally:
        d.close()
        if gw is not None:
            gw.kill()
        topo.close()


def test_ospf_route_with_nhid_is_forwarded_in_c(ospf):
    topo, gw, d = ospf
    # first packets: through whatever path; then a measured stream
    assert " 0% packet loss" in ping(topo.peers[0], "192.168.77.1", count=3, wait=2).stdout
    n = 2000
    sink = flow_sink(topo.peers[1], 5555)
    before = ports(gw)
    t0 = time.monotonic()
    send_flows(topo.peers[0], "192.168.77.1", 5555, flows=1, per_flow=n)
    got = flow_counts(sink)
    after = ports(gw)
    seconds = time.monotonic() - t0
    # the kernel's part: the route learned by OSPF carries the stream
    assert sum(got.values()) == n, got
    d.check_alive()
    # the fast path's part
    fwd = delta(after, before, 0, "forwarded")
    assert fwd == n, (f"port 0 forwarded {fwd} of {n} in C; punts {nonzero(after[0]['punts'])}; "
                      f"route {route(topo.gw, ONLY1)}")
    assert delta(after, before, 0, "to_kernel") <= 3, nonzero(after[0]["punts"])
    # vEth1 carries OSPF, not the stream: the kernel sent only its own frames
    assert delta(after, before, 1, "from_kernel") <= ospf_budget(seconds)
    assert delta(after, before, 1, "to_kernel") <= ospf_budget(seconds)
    assert delta(after, before, 1, "tx_packets") >= n


def spread(topo, gw, flows=FLOWS, per_flow=PER_FLOW):
    """Send the flows to the anycast address; (per-peer flow counts, port
    counters before, after, seconds)."""
    sinks = {k: flow_sink(topo.peers[k], 6666) for k in (1, 2)}
    before = ports(gw)
    t0 = time.monotonic()
    send_flows(topo.peers[0], "192.168.88.1", 6666, flows, per_flow)
    got = {k: flow_counts(s) for k, s in sinks.items()}
    after = ports(gw)
    return got, before, after, time.monotonic() - t0


def ecmp_route(topo, d) -> dict:
    """Both next hops in the kernel's route (a nexthop group); returns it."""
    wait_for(lambda: d.check_alive() or gateways_of(route(topo.gw, ANY)) == ["10.1.0.2", "10.2.0.2"],
             timeout=20, step=0.1, what="the kernel's ECMP route over peer1 and peer2")
    rt = route(topo.gw, ANY)
    assert rt.get("protocol") == "ospf" and "nhid" in rt, rt
    return rt


def test_ecmp_over_a_nexthop_group_spreads_flows_in_c(ospf):
    topo, gw, d = ospf
    rt = ecmp_route(topo, d)
    assert f"id {rt['nhid']} group " in nexthop_objects(topo.gw), nexthop_objects(topo.gw)
    got, before, after, seconds = spread(topo, gw)
    total = FLOWS * PER_FLOW
    # every datagram arrived, each flow on one next hop, both next hops used
    assert sum(got[1].values()) + sum(got[2].values()) == total, got
    assert not set(got[1]) & set(got[2]), f"flows split across next hops: {got}"
    assert len(got[1]) >= FLOWS // 8 and len(got[2]) >= FLOWS // 8, \
        f"flows per next hop: peer1 {len(got[1])}, peer2 {len(got[2])}"
    d.check_alive()
    # all in C: nothing of it through the kernel, each uplink's kernel
    # frames only OSPF's
    fwd = delta(after, before, 0, "forwarded")
    assert fwd == total, (f"port 0 forwarded {fwd} of {total} in C; punts {nonzero(after[0]['punts'])}; "
                          f"route {route(topo.gw, ANY)}\n{nexthop_objects(topo.gw)}")
    assert delta(after, before, 0, "to_kernel") <= 3, nonzero(after[0]["punts"])
    for k in (1, 2):
        assert delta(after, before, k, "from_kernel") <= ospf_budget(seconds), k
        assert delta(after, before, k, "tx_packets") >= sum(got[k].values()), k


@pytest.mark.parametrize("how", ["stops-announcing", "router-dies"])
def test_withdrawn_next_hop_is_followed_in_c(ospf, how):
    topo, gw, d = ospf
    ecmp_route(topo, d)
    if how == "stops-announcing":
        # peer2 withdraws the prefix (a new router LSA); its adjacency stays up
        d.bird_reconfigure(topo.peers[2], 2, [])
    else:
        # peer2's router dies: nothing is withdrawn, ospfd notices after
        # the dead interval (4 s) that its hellos stopped
        d.kill("bird2")
    try:
        withdrawn(topo, gw, d)
    finally:
        if how == "stops-announcing":
            d.bird_reconfigure(topo.peers[2], 2, [ANY], check=False)
        else:
            d.bird(topo.peers[2], 2, [ANY])


def withdrawn(topo, gw, d):
    wait_for(lambda: d.check_alive() or gateways_of(route(topo.gw, ANY)) == ["10.1.0.2"],
             timeout=15, step=0.1, what="the kernel's route down to peer1 alone")
    rt = route(topo.gw, ANY)
    assert rt.get("protocol") == "ospf" and "nhid" in rt, rt
    got, before, after, seconds = spread(topo, gw)
    total = FLOWS * PER_FLOW
    assert got[2] == {}, f"{sum(got[2].values())} datagrams still reached the withdrawn next hop"
    assert sum(got[1].values()) == total and len(got[1]) == FLOWS, got
    d.check_alive()
    fwd = delta(after, before, 0, "forwarded")
    assert fwd == total, (f"port 0 forwarded {fwd} of {total} in C; punts {nonzero(after[0]['punts'])}; "
                          f"route {rt}\n{nexthop_objects(topo.gw)}")
    assert delta(after, before, 0, "to_kernel") <= 3, nonzero(after[0]["punts"])
    assert delta(after, before, 1, "from_kernel") <= ospf_budget(seconds)
    assert delta(after, before, 2, "tx_packets") <= ospf_budget(seconds)
