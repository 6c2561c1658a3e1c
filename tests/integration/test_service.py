"""Operating a running gateway from another shell: `kni-gw stats` over the
control socket, and the OpenMetrics endpoint."""
import json
import os
import subprocess
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from .harness import kni_gw_bin, ping, sh, veth_up, wait_for
from .test_core import static_neighbours

FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def stats_json(prefix):
    r = subprocess.run([kni_gw_bin(), "stats", "--json", "--file-prefix", prefix],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_stats_from_another_shell_and_metrics(topo, gateways):
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--metrics", "127.0.0.1:9101"]).wait_ready()
    veth_up(topo)
    static_neighbours(topo)
    path = f"/run/kni-gw/{gw.prefix}.sock"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    first = stats_json(gw.prefix)
    before, stats_json_lcores_before = first["ports"][0], first["lcores"]
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=100, interval=0.01).stdout
    after = stats_json(gw.prefix)
    p = after["ports"][0]
    assert p["rx_packets"] - before["rx_packets"] == 100
    assert p["tx_packets"] - before["tx_packets"] == 100
    assert after["pid"] == gw.proc.pid and after["file_prefix"] == gw.prefix
    # per lcore: lcore 0 received the 100 pings, lcore 1 (tx + vEth I/O) sent the replies
    lc_before, lc = stats_json_lcores_before, after["lcores"]
    assert lc["0"]["rx_packets"] - lc_before["0"]["rx_packets"] == 100
    assert lc["1"]["tx_packets"] - lc_before["1"]["tx_packets"] == 100
    # rates appear once a second of samples exists
    wait_for(lambda: "rates" in stats_json(gw.prefix)["ports"][0], timeout=5, what="rates")
    table = subprocess.run([kni_gw_bin(), "stats", "--file-prefix", gw.prefix], capture_output=True,
                           text=True, timeout=30).stdout
    assert "rx_packets" in table and "rates over the last second:" in table and "rx pps" in table
    # the metrics endpoint parses as OpenMetrics and agrees with the counters
    text = sh(sys.executable, "-c", FETCH, "http://127.0.0.1:9101/metrics", ns=topo.gw).stdout
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rx = next(s.value for s in fams["kni_gw_rx_packets"].samples if s.labels["port"] == "0")
    now = stats_json(gw.prefix)["ports"][0]["rx_packets"]
    assert p["rx_packets"] <= rx <= now + 5
    assert fams["kni_gw_mbufs_in_use"].samples[0].value > 0
    assert {s.labels["reason"] for s in fams["kni_gw_drops"].samples} >= {"runt", "policed", "tx_nic"}
    # a stopped gateway: a clear one-line error
    assert gw.stop() == 0
    assert not os.path.exists(path)
    r = subprocess.run([kni_gw_bin(), "stats", "--file-prefix", gw.prefix], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("kni-gw: error: no kni-gw running")


def test_dumpcap_captures_pings(topo, gateways, tmp_path):
    """dpdk-dumpcap (a secondary process) captures port 0 of a running
    gateway; it needs shared memory, so the gateway runs on hugepages."""
    from scapy.all import ICMP, IP, rdpcap

    eal = ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag] + topo.vdevs()
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)"], eal=eal).wait_ready()
    veth_up(topo)
    static_neighbours(topo)
    out = tmp_path / "port0.pcapng"
    cap = subprocess.Popen(["dpdk-dumpcap", f"--file-prefix={gw.prefix}", "-i", "0", "-p", "-c", "20",
                            "-w", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: out.exists(), timeout=20, what="dumpcap started")
    assert " 0% packet loss" in ping(topo.peers[0], "10.0.0.1", count=10, interval=0.05, wait=2).stdout
    text = cap.communicate(timeout=30)[0]
    assert cap.returncode == 0, text
    pkts = rdpcap(str(out))
    req = [p for p in pkts if ICMP in p and p[ICMP].type == 8 and p[IP].dst == "10.0.0.1"]
    rep = [p for p in pkts if ICMP in p and p[ICMP].type == 0 and p[IP].src == "10.0.0.1"]
    assert len(req) == 10 and len(rep) == 10, [p.summary() for p in pkts]
