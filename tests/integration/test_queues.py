"""Queues in the shape users run: rx and tx of a port on separate lcores.

Every lcore that forwards owns a tx queue on every egress port and sends
its bursts itself (no forwarded frame crosses a core); a driver with one tx
queue falls back to the tx lcore's fifo, said once. A port may have several
rx lcores, one rx queue each, flows spread by the driver (net_af_packet's
fanout hash here, qpairs=2)."""
import subprocess
import sys

from .harness import Topology, ping, sh, veth_up, wait_for
from .test_fastpath import udp_blast, udp_sink


def eal(topo, qpairs):
    out = ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag, "--no-huge", "-m", "256"]
    for k in range(topo.nports):
        out += ["--vdev", f"net_af_packet{k},iface=g{k}" + (f",qpairs={qpairs}" if qpairs > 1 else "")]
    return out


def start(gateways, config, qpairs):
    topo = Topology(2)
    gw = gateways(topo, ["-p", "0x3", "--config", config], eal=eal(topo, qpairs)).wait_ready()
    veth_up(topo, 0)
    veth_up(topo, 1)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    wait_for(lambda: all(f["ipv4"] for f in gw.stats()["fib"]["forwarding"].values()),
             what="forwarding on in the fast path")
    # 10.1.0.2 resolved through the kernel before the stream
    assert " 0% packet loss" in ping(topo.peers[0], "10.1.0.2", count=3, wait=2).stdout
    return topo, gw


def snapshot(gw):
    s = gw.stats()
    return {p["port"]: p for p in s["ports"]}, s["lcores"], s


def accounted(p):
    """rx = to_kernel + forwarded + every rx-stage drop: exact."""
    rx_drops = sum(v for k, v in p["drops"].items()
                   if k in ("to_kernel_full", "fwd_fifo_full", "port_down_rx", "runt",
                            "bad_header", "bad_checksum", "policed"))
    return p["rx_packets"] == p["to_kernel"] + p["forwarded"] + rx_drops


def delta(a, b, key):
    return b[key] - a[key]


def test_split_shape_forwards_on_the_rx_lcores_own_tx_queue(gateways):
    """(0,0,1),(1,0,1): rx of both ports on lcore 0, tx on lcore 1. With two
    tx queues per port, lcore 0 sends what it forwards itself."""
    topo, gw = start(gateways, "(0,0,1),(1,0,1)", qpairs=2)
    try:
        ports, lcores, _ = snapshot(gw)
        for n in (0, 1):
            assert ports[n]["queues"]["tx"] == 2 and not ports[n]["queues"]["tx_fifo_fallback"]
            # af_packet keeps all its qpairs live: both rx queues polled by lcore 0
            assert ports[n]["queues"]["rx"] == 2
        assert not any("through a fifo" in ln for ln in gw.err)
        sink = udp_sink(topo.peers[1])
        udp_blast(topo.peers[0], "10.1.0.2", 3000)
        received = int(sink.communicate(timeout=30)[0])
        ports2, lcores2, _ = snapshot(gw)
        fwd = delta(ports[0], ports2[0], "forwarded")
        assert fwd == 3000 and received == 3000, (fwd, received, ports2[0]["drops"])
        # sent by the rx lcore on its own queue: lcore 0's tx count moved by
        # what it forwarded, the tx lcore's by the kernel's frames only
        assert delta(lcores["0"], lcores2["0"], "tx_packets") == 3000
        assert delta(lcores["1"], lcores2["1"], "tx_packets") < 10
        assert ports2[0]["drops"]["fwd_fifo_full"] == 0
        assert all(accounted(p) for p in ports2.values()), ports2
    finally:
        gw.kill()
        topo.close()


def test_one_tx_queue_falls_back_to_the_tx_fifo_said_once(gateways):
    """net_af_packet with its default single qpair: the forwarded frames reach
    port 1 through its tx lcore's fifo, and kni-gw says so once at start."""
    topo, gw = start(gateways, "(0,0,1),(1,0,1)", qpairs=1)
    try:
        said = [ln for ln in gw.err if "through a fifo" in ln]
        assert len(said) == 2, gw.err          # once per port
        assert "qpairs=N" in said[0]
        ports, lcores, _ = snapshot(gw)
        assert ports[1]["queues"] == {"rx": 1, "tx": 1, "rx_spread": "none", "tx_fifo_fallback": True}
        sink = udp_sink(topo.peers[1])
        udp_blast(topo.peers[0], "10.1.0.2", 1000)
        assert int(sink.communicate(timeout=30)[0]) == 1000
        ports2, lcores2, _ = snapshot(gw)
        assert delta(ports[0], ports2[0], "forwarded") == 1000
        # the tx lcore sent them
        assert delta(lcores["1"], lcores2["1"], "tx_packets") >= 1000
        assert all(accounted(p) for p in ports2.values())
    finally:
        gw.kill()
        topo.close()


def flows_blast(ns, dst, flows, per_flow, port=5555):
    """per_flow datagrams for each of `flows` source ports, flow after flow."""
    code = (
        "import socket,time\n"
        f"for f in range({flows}):\n"
        "  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "  s.bind(('0.0.0.0',20000+f))\n"
        f"  for i in range({per_flow}):\n"
        f"    s.sendto(bytes(64),('{dst}',{port}))\n"
        "    i % 50 == 49 and time.sleep(0.001)\n"
        "  s.close()\n"
        "  print(f, flush=True)\n"
        "  input()\n")
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_two_rx_lcores_share_a_port_and_a_flow_stays_on_one(gateways):
    """(0,0+1,1),(1,0,1): port 0 polled by lcores 0 and 1 (one rx queue
    each). Both receive; each flow lands on one lcore only; accounting stays
    exact with the counters of two writers summed."""
    topo, gw = start(gateways, "(0,0+1,1),(1,0,1)", qpairs=2)
    try:
        ports, lcores, _ = snapshot(gw)
        assert ports[0]["queues"]["rx"] == 2 and ports[0]["queues"]["rx_spread"] == "driver"
        assert ports[0]["lcores_rx"] == [0, 1]
        sink = udp_sink(topo.peers[1])
        per_flow, flows = 200, 16
        blaster = flows_blast(topo.peers[0], "10.1.0.2", flows, per_flow)
        got = {0: 0, 1: 0}
        prev = lcores
        for _ in range(flows):
            assert blaster.stdout.readline().strip() != ""
            # the flow's frames are all in once lcore counters stop moving
            wait_for(lambda: sum(delta(prev[str(lc)], snapshot(gw)[1][str(lc)], "rx_packets")
                                 for lc in (0, 1)) >= per_flow, timeout=10, what="flow received")
            now = snapshot(gw)[1]
            d = {lc: delta(prev[str(lc)], now[str(lc)], "rx_packets") for lc in (0, 1)}
            # lcore 1 polls only port 0's queue 1: all of the flow or none of it
            # (a stray ARP may add one or two)
            assert d[1] <= 3 or d[1] >= per_flow, d
            got[0 if d[1] <= 3 else 1] += 1
            prev = now
            blaster.stdin.write("\n")
            blaster.stdin.flush()
        blaster.wait(timeout=10)
        assert got[0] and got[1], got     # 16 flows, both lcores got some
        assert int(sink.communicate(timeout=30)[0]) == per_flow * flows
        ports2, _, _ = snapshot(gw)
        assert delta(ports[0], ports2[0], "forwarded") == per_flow * flows
        assert all(accounted(p) for p in ports2.values()), ports2
    finally:
        gw.kill()
        topo.close()


def test_two_rx_lcores_on_a_single_queue_driver_refused_in_one_line(gateways):
    topo = Topology(1)
    try:
        gw = gateways(topo, ["-p", "0x1", "--config", "(0,0+1,1)"], eal=eal(topo, 1))
        rc = gw.proc.wait(timeout=60)
        assert rc != 0
        errs = [ln for ln in gw.err if "error" in ln.lower()]
        assert len(errs) == 1 and "2 rx lcores need 2 rx queues" in errs[0] and "qpairs=N" in errs[0], gw.err
        assert not any("Traceback" in ln for ln in gw.err)
    finally:
        topo.close()
