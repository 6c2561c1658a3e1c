"""A routing daemon on vEthN: BIRD learns a route by BGP from a peer behind
vEth1 (the session runs through kni-gw's exception path), puts it in the
kernel, and kni-gw forwards traffic to it in C."""
import os
import shutil
import subprocess

import pytest

from .harness import ping, sh, wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWO = ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]


def bird(ns, conf, ctl):
    return subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", conf, "-s", ctl],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_bgp_routes_from_bird_are_forwarded_in_c(topo2, gateways, tmp_path):
    if shutil.which("bird") is None:
        pytest.fail("bird is not installed (scripts/install.sh installs bird2)")
    topo = topo2
    gw = gateways(topo, TWO).wait_ready()
    for k in (0, 1):
        sh("ip", "addr", "add", f"10.{k}.0.1/24", "dev", f"vEth{k}", ns=topo.gw)
        sh("ip", "link", "set", f"vEth{k}", "up", ns=topo.gw)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=topo.gw)
    sh("ip", "addr", "add", "192.168.77.1/32", "dev", "lo", ns=topo.peers[1])
    daemons = [bird(topo.gw, os.path.join(TOP, "examples/bird/gateway.conf"), str(tmp_path / "gw.ctl")),
               bird(topo.peers[1], os.path.join(TOP, "examples/bird/peer.conf"), str(tmp_path / "peer.ctl"))]
    try:
        wait_for(lambda: "192.168.77.0/24 via 10.1.0.2" in sh("ip", "route", ns=topo.gw).stdout,
                 timeout=30, step=0.2, what="BGP route in the gateway's kernel")
        wait_for(lambda: gw.stats()["fib"]["fast4"] >= 1, what="route mirrored")
        ping(topo.peers[0], "192.168.77.1", count=2, wait=2)      # first packets: ARP through the kernel
        before = gw.stats()["ports"][0]
        r = ping(topo.peers[0], "192.168.77.1", count=50, interval=0.01, wait=2)
        assert " 0% packet loss" in r.stdout, r.stdout
        after = gw.stats()["ports"][0]
        assert after["forwarded"] - before["forwarded"] == 50
        assert after["to_kernel"] == before["to_kernel"]
        # the peer withdraws the route: the kernel drops it, so does the fast path
        daemons[1].terminate()
        daemons[1].wait(timeout=10)
        wait_for(lambda: "192.168.77.0/24" not in sh("ip", "route", ns=topo.gw).stdout, timeout=30,
                 step=0.2, what="route withdrawn")
        r = ping(topo.peers[0], "192.168.77.1", count=2, wait=1, quiet=False)
        assert "Unreachable" in r.stdout or "100% packet loss" in r.stdout
    finally:
        for d in daemons:
            d.kill()
