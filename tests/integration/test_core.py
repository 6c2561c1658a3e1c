"""The core path through a running kni-gw: wire -> port -> vEthN -> Linux
and back, statistics, kernel-interface sync, shutdown and restart."""
import glob
import os
import re
import signal

from .harness import link_attr, ping, sh, veth_up, wait_for

ONE_PORT = ["-p", "0x1", "--config", "(0,0,1)"]
TWO_PORTS = ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]


def static_neighbours(topo, k=0):
    """Permanent ARP entries both ways, so that a test's traffic is only
    what it sends."""
    gw_mac = link_attr(topo.gw, f"vEth{k}")["address"]
    peer_mac = link_attr(topo.peers[k], f"p{k}")["address"]
    sh("ip", "neigh", "replace", f"10.{k}.0.1", "lladdr", gw_mac, "nud", "permanent",
       "dev", f"p{k}", ns=topo.peers[k])
    sh("ip", "neigh", "replace", f"10.{k}.0.2", "lladdr", peer_mac, "nud", "permanent",
       "dev", f"vEth{k}", ns=topo.gw)


def test_100_pings_and_exact_counters(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    veth_up(topo)
    static_neighbours(topo)
    before = gw.port(0)
    r = ping(topo.peers[0], "10.0.0.1", count=100, interval=0.01)
    assert " 0% packet loss" in r.stdout, r.stdout
    assert "duplicates" not in r.stdout, r.stdout
    after = gw.port(0)
    d = {k: after[k] - before[k] for k in
         ("rx_packets", "to_kernel", "kernel_tx", "from_kernel", "tx_packets", "forwarded")}
    assert d == {"rx_packets": 100, "to_kernel": 100, "kernel_tx": 100,
                 "from_kernel": 100, "tx_packets": 100, "forwarded": 0}
    assert after["rx_bytes"] - before["rx_bytes"] == 100 * 98
    assert after["tx_bytes"] - before["tx_bytes"] == 100 * 98
    assert all(v == 0 for v in after["drops"].values()), after["drops"]


def test_mbufs_return_to_baseline(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    veth_up(topo)
    base = gw.stats()["mbufs_in_use"]
    ping(topo.peers[0], "10.0.0.1", count=200, interval=0.002, size=1400)
    wait_for(lambda: gw.stats()["mbufs_in_use"] == base, timeout=5,
             what=f"mbufs in use back to {base}")


def pool_line(gw):
    return gw.wait_line(gw.err, lambda s: "mbuf pool: " in s)


def test_mbuf_pool_driver_is_kg_hot_unless_eal_is_told(topo, gateways):
    """The pool runs on kni-gw's own mempool driver (csrc/control/pool.c),
    whose every mbuf comes back; EAL's --mbuf-pool-ops-name still rules."""
    gw = gateways(topo, ONE_PORT).wait_ready()
    assert pool_line(gw).endswith(", kg_hot"), pool_line(gw)
    veth_up(topo)
    base = gw.stats()["mbufs_in_use"]
    # more mbufs through vEth0 and back than the hot list holds (2048)
    r = ping(topo.peers[0], "10.0.0.1", count=3000, interval=0, size=1400, wait=5)
    assert " 0% packet loss" in r.stdout, r.stdout
    wait_for(lambda: gw.stats()["mbufs_in_use"] == base, timeout=5,
             what=f"mbufs in use back to {base}")
    assert gw.stop() == 0
    gw = gateways(topo, ONE_PORT, eal=["-l", "0-1", "--no-pci", "--file-prefix", topo.tag,
                                       "--no-huge", "-m", "256", "--mbuf-pool-ops-name",
                                       "ring_mp_mc"] + topo.vdevs()).wait_ready()
    assert pool_line(gw).endswith(", ring_mp_mc"), pool_line(gw)


def test_sigusr1_table_and_sigusr2_reset(topo, gateways):
    gw = gateways(topo, ONE_PORT, stats_json=False).wait_ready()
    veth_up(topo)
    static_neighbours(topo)
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=7).stdout

    def table():
        start = len(gw.out)
        gw.send(signal.SIGUSR1)
        gw.wait_line(gw.out, lambda s: s.startswith("mbufs in use"), start=start)
        return "\n".join(gw.out[start:])

    t = table()
    for col in ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets",
                "tx_dropped", "to_kernel", "from_kernel", "drops by reason"):
        assert col in t, t
    row = next(line for line in t.splitlines() if re.match(r"^\W*0\W+0/1/1", line))
    nums = [int(x) for x in re.findall(r"(?<![\w/])\d+(?![\w/])", row)]
    # Port, rx_packets, rx_dropped, tx_packets, tx_dropped, to_kernel, from_kernel, ...
    assert nums[:7] == [0, 7, 0, 7, 0, 7, 7], row

    start = len(gw.out)
    gw.send(signal.SIGUSR2)
    gw.wait_line(gw.out, lambda s: s == "kni-gw: statistics reset", start=start)
    t = table()
    assert "since reset" in t
    row = next(line for line in t.splitlines() if re.match(r"^\W*0\W+0/1/1", line))
    nums = [int(x) for x in re.findall(r"(?<![\w/])\d+(?![\w/])", row)]
    assert nums[:7] == [0, 0, 0, 0, 0, 0, 0], row
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3).stdout
    t = table()
    row = next(line for line in t.splitlines() if re.match(r"^\W*0\W+0/1/1", line))
    nums = [int(x) for x in re.findall(r"(?<![\w/])\d+(?![\w/])", row)]
    assert nums[:7] == [0, 3, 0, 3, 0, 3, 3], row


def test_process_name_is_kni_gw(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    with open(f"/proc/{gw.proc.pid}/comm") as f:
        assert f.read().strip() == "kni-gw"
    r = sh("pgrep", "-x", "kni-gw", check=False)
    assert str(gw.proc.pid) in r.stdout.split()


def test_admin_down_stops_the_port_and_up_restores(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    # vEth0 starts down, as a KNI interface did; the port takes no traffic
    assert "UP" not in link_attr(topo.gw, "vEth0")["flags"]
    assert gw.port(0)["admin_up"] is False
    veth_up(topo)
    static_neighbours(topo)
    wait_for(lambda: gw.port(0)["admin_up"], what="port 0 admin up")
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=5).stdout

    sh("ip", "link", "set", "vEth0", "down", ns=topo.gw)
    wait_for(lambda: not gw.port(0)["admin_up"], what="port 0 admin down")
    before = gw.port(0)
    r = ping(topo.peers[0], "10.0.0.1", count=5, wait=0.3)
    assert "100% packet loss" in r.stdout
    after = gw.port(0)
    assert after["drops"]["port_down_rx"] - before["drops"]["port_down_rx"] == 5
    assert after["to_kernel"] == before["to_kernel"]

    sh("ip", "link", "set", "vEth0", "up", ns=topo.gw)
    wait_for(lambda: gw.port(0)["admin_up"], what="port 0 admin up again")
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=5).stdout


def test_mtu_sync_and_refusal(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    veth_up(topo)
    assert link_attr(topo.gw, "g0")["mtu"] == 1500
    sh("ip", "link", "set", "vEth0", "mtu", "1400", ns=topo.gw)
    # port 0 (net_af_packet on g0) takes the MTU: g0 follows
    wait_for(lambda: gw.port(0)["mtu"] == 1400, what="port MTU 1400")
    assert link_attr(topo.gw, "g0")["mtu"] == 1400
    # beyond what the port can take: refused, and vEth0 is put back
    sh("ip", "link", "set", "vEth0", "mtu", "9000", ns=topo.gw)
    gw.wait_line(gw.err, lambda s: "MTU 9000 refused by port 0" in s)
    wait_for(lambda: link_attr(topo.gw, "vEth0")["mtu"] == 1400, what="vEth0 MTU put back")
    assert gw.port(0)["mtu"] == 1400
    # the kernel now sends 1400-byte frames; a 1372-byte ping fits exactly
    sh("ip", "link", "set", "p0", "mtu", "1400", ns=topo.peers[0])
    r = ping(topo.peers[0], "10.0.0.1", count=3, size=1372, extra=["-M", "do"])
    assert " 0% packet loss" in r.stdout


def test_mac_sync_and_promisc(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    # vEth0 was created with port 0's MAC
    assert link_attr(topo.gw, "vEth0")["address"] == link_attr(topo.gw, "g0")["address"]
    veth_up(topo)
    new = "02:00:00:aa:bb:01"
    sh("ip", "link", "set", "vEth0", "address", new, ns=topo.gw)
    wait_for(lambda: gw.port(0)["mac"] == new, what="port MAC follows")
    assert link_attr(topo.gw, "g0")["address"] == new
    # the peer learns the new MAC by ARP, and the ping goes through
    sh("ip", "neigh", "flush", "dev", "p0", ns=topo.peers[0])
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3).stdout
    # a MAC the port refuses (multicast) is put back on vEth0
    # promiscuous mode on vEth0 reaches the port
    assert "PROMISC" not in link_attr(topo.gw, "g0")["flags"]
    sh("ip", "link", "set", "vEth0", "promisc", "on", ns=topo.gw)
    wait_for(lambda: "PROMISC" in link_attr(topo.gw, "g0")["flags"], what="g0 promisc")
    sh("ip", "link", "set", "vEth0", "promisc", "off", ns=topo.gw)
    wait_for(lambda: "PROMISC" not in link_attr(topo.gw, "g0")["flags"], what="g0 not promisc")


def test_monitor_link_mirrors_carrier(topo, gateways):
    gateways(topo, ONE_PORT + ["-m"]).wait_ready()
    veth_up(topo)
    wait_for(lambda: "NO-CARRIER" not in link_attr(topo.gw, "vEth0")["flags"], what="carrier on")
    sh("ip", "link", "set", "p0", "down", ns=topo.peers[0])  # the wire goes down
    wait_for(lambda: "NO-CARRIER" in link_attr(topo.gw, "vEth0")["flags"], what="carrier off")
    sh("ip", "link", "set", "p0", "up", ns=topo.peers[0])
    wait_for(lambda: "NO-CARRIER" not in link_attr(topo.gw, "vEth0")["flags"], what="carrier back")
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3, wait=2).stdout


def test_two_ports(topo2, gateways):
    gw = gateways(topo2, TWO_PORTS).wait_ready()
    veth_up(topo2, 0)
    veth_up(topo2, 1)
    r0 = ping(topo2.peers[0], "10.0.0.1", count=20)
    r1 = ping(topo2.peers[1], "10.1.0.1", count=30)
    assert " 0% packet loss" in r0.stdout and " 0% packet loss" in r1.stdout
    # peer0 reaches peer1 through the kernel's forwarding between vEth0 and vEth1
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo2.gw)
    assert " 0% packet loss" in ping(topo2.peers[0], "10.1.0.2", count=10, wait=2).stdout
    s = gw.stats()["ports"]
    assert [p["port"] for p in s] == [0, 1]
    assert s[0]["rx_packets"] >= 30 and s[1]["rx_packets"] >= 40
    assert all(p["to_kernel"] == p["kernel_tx"] for p in s)


def test_sigterm_cleans_up_and_restart_works(topo, gateways):
    gw = gateways(topo, ONE_PORT).wait_ready()
    veth_up(topo)
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3).stdout
    assert gw.stop(signal.SIGTERM) == 0
    assert link_attr(topo.gw, "vEth0") == {}
    assert not os.path.exists(f"/var/run/dpdk/{gw.prefix}")
    assert "stopped: ports closed" in "\n".join(gw.err)
    # an immediate restart with the same prefix works
    gw2 = gateways(topo, ONE_PORT).wait_ready()
    veth_up(topo)
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3, wait=2).stdout
    assert gw2.stop(signal.SIGINT) == 0
    assert link_attr(topo.gw, "vEth0") == {}


def test_sample_form_command_line(topo, gateways):
    """kni-gw [EAL] -- -p PORTMASK --config="(...)" -P -m, as the KNI sample."""
    eal = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix", topo.tag] + topo.vdevs()
    gw = gateways(topo, ["--", "-p", "0x1", '--config=(0,0,1)', "-P", "-m"], eal=eal).wait_ready()
    assert any("EAL argv: kni-gw -l 0-1 --no-pci --no-huge -m 256" in s for s in gw.err)
    assert "PROMISC" in link_attr(topo.gw, "g0")["flags"]
    veth_up(topo)
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=3).stdout


def test_runs_on_hugepages(topo, gateways):
    free = sum(int(open(f).read()) for f in glob.glob("/sys/kernel/mm/hugepages/*/free_hugepages"))
    assert free >= 64, ("CI reserves hugepages before the tests (scripts/test.sh); "
                        f"only {free} free")
    gw = gateways(topo, ONE_PORT, no_huge=False).wait_ready()
    assert any("--no-huge" not in s for s in gw.err if "EAL argv" in s)
    files = lambda: [f for d in ("/dev/hugepages",) for f in glob.glob(f"{d}/{gw.prefix}map_*")]
    assert files(), "EAL should be using hugepage files"
    veth_up(topo)
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=10).stdout
    assert gw.stop() == 0
    assert files() == []
