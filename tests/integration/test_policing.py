"""Control-plane policing: a flood aimed at the gateway's own address does
not starve the kernel of the traffic it must see (pings, ARP), and what is
policed is counted per class."""
import subprocess
import sys
import time

from .harness import link_attr, ping, sh, veth_up, wait_for

FLOOD = r"""
import socket, struct, sys, time
iface, dst_mac, src_mac, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
m = lambda s: bytes(int(x, 16) for x in s.split(":"))
ip = bytes.fromhex("4500001c00004000401100000a0000020a000001")
c = sum(struct.unpack("!10H", ip)); c = (c & 0xffff) + (c >> 16); c = ~c & 0xffff
ip = ip[:10] + struct.pack("!H", c) + ip[12:]
frame = m(dst_mac) + m(src_mac) + b"\x08\x00" + ip + bytes.fromhex("300900090008") + b"\x00\x00"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(1000):
        s.send(frame)
    n += 1000
print(n)
"""


def test_flood_to_the_gateway_is_policed_and_pings_still_answered(topo, gateways):
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--police", "local=2000:200"]).wait_ready()
    veth_up(topo)
    ping(topo.peers[0], "10.0.0.1", count=2, wait=2)   # ARP resolved both ways
    before = gw.stats()["ports"][0]
    flood = subprocess.Popen(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", FLOOD, "p0",
                              link_attr(topo.gw, "vEth0")["address"], link_attr(topo.peers[0], "p0")["address"],
                              "3"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = ping(topo.peers[0], "10.0.0.1", count=40, interval=0.05, wait=1)
    sent = int(flood.communicate(timeout=30)[0])
    after = gw.stats()["ports"][0]
    m = __import__("re").search(r"(\d+) received", r.stdout)
    assert m and int(m.group(1)) >= 36, r.stdout          # >= 90% of the pings answered
    policed = after["policed"]["local"] - before["policed"]["local"]
    rx = after["rx_packets"] - before["rx_packets"]
    assert sent > 20_000 and rx > 20_000, (sent, rx)
    # at most ~2000/s (+ burst) of the flood went to the kernel, the rest was policed
    passed = (after["punts"]["local"] - before["punts"]["local"])
    assert passed < 2000 * 4 + 200 + 100, passed
    assert policed > rx // 2, (policed, rx)
    assert after["drops"]["policed"] - before["drops"]["policed"] == sum(
        after["policed"][k] - before["policed"][k] for k in after["policed"])
    # ICMP to us is its own class: none of the pings were policed
    assert after["policed"]["icmp"] == before["policed"]["icmp"]
    # and the operator is told, in one line per interval
    gw.wait_line(gw.err, lambda s: s.startswith("kni-gw: policing: port 0 dropped") and "local" in s,
                 timeout=15)


def test_police_off_lets_everything_through(topo, gateways):
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--police", "off"]).wait_ready()
    veth_up(topo)
    ping(topo.peers[0], "10.0.0.1", count=2, wait=2)
    flood = subprocess.run(["ip", "netns", "exec", topo.peers[0], sys.executable, "-c", FLOOD, "p0",
                            link_attr(topo.gw, "vEth0")["address"], link_attr(topo.peers[0], "p0")["address"],
                            "1"], capture_output=True, text=True, timeout=30)
    assert int(flood.stdout) > 10_000
    s = wait_for(lambda: (lambda p: p if p["punts"]["local"] > 10_000 else None)(gw.stats()["ports"][0]),
                 what="the flood punted")
    assert sum(s["policed"].values()) == 0


def test_police_class_zero_drops_the_class_and_off_lets_it_through(topo, gateways):
    """--police icmp=0: a rate of zero, every ICMP frame to the gateway is
    dropped; --police arp=off: ARP is not policed at all."""
    gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--police", "icmp=0",
                         "--police", "arp=off"]).wait_ready()
    veth_up(topo)
    r = ping(topo.peers[0], "10.0.0.1", count=5, interval=0.05, wait=1)
    assert " 100% packet loss" in r.stdout, r.stdout
    p = wait_for(lambda: (lambda p: p if p["policed"]["icmp"] == 5 else None)(gw.port()),
                 what="5 pings policed as icmp")
    assert p["punts"]["local"] == 0 and p["policed"]["arp"] == 0
    # ARP was answered (the pings' resolution went through), the class is unmetered
    assert "10.0.0.1" in sh("ip", "neigh", "show", "dev", "p0", ns=topo.peers[0]).stdout
