"""Refusals of a real kni-gw process: one line on stderr naming the problem
and its fix, exit status 2, no traceback, and nothing left behind (no vEth,
no hugepage files, no EAL runtime directory)."""
import glob
import os
import subprocess

import pytest

from .harness import kni_gw_bin, link_attr, sh

ONE_PORT = ["-p", "0x1", "--config", "(0,0,1)"]


def run(topo, argv, user=None, timeout=60):
    cmd = ["ip", "netns", "exec", topo.gw]
    if user:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    cmd += [kni_gw_bin()] + argv
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def assert_refused(r, words, prefix):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("kni-gw: error:")]
    assert len(err_lines) == 1, r.stderr
    assert words in err_lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not glob.glob(f"/dev/hugepages/{prefix}map_*")
    assert not os.path.exists(f"/var/run/dpdk/{prefix}")


def eal(topo, extra=()):
    return ["-l", "0-1", "--no-pci", "--file-prefix", topo.tag] + list(extra) + topo.vdevs()


def test_port_missing_after_eal_probe(topo):
    r = run(topo, eal(topo, ["--no-huge", "-m", "256"]) + ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"])
    assert_refused(r, "port 1 does not exist: EAL found 1 port(s)", topo.tag)
    assert link_attr(topo.gw, "vEth0") == {}


def test_port_missing_on_hugepages_leaves_no_files(topo):
    r = run(topo, eal(topo) + ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"])
    assert_refused(r, "port 1 does not exist", topo.tag)


def test_veth_name_taken(topo):
    sh("ip", "link", "add", "vEth0", "type", "veth", "peer", "name", "xx0", ns=topo.gw)
    r = run(topo, eal(topo, ["--no-huge"]) + ONE_PORT)
    assert_refused(r, "interface vEth0 already exists", topo.tag)
    assert link_attr(topo.gw, "vEth0")["ifname"] == "vEth0"  # left as it was


def test_virtio_user_without_vhost_net(topo):
    if os.path.exists("/dev/vhost-net"):
        pytest.fail("this test expects a machine without /dev/vhost-net (see TESTING.md)")
    r = run(topo, eal(topo, ["--no-huge"]) + ONE_PORT + ["--exception", "virtio-user"])
    assert_refused(r, "needs /dev/vhost-net", topo.tag)


def test_not_root(topo):
    r = run(topo, eal(topo, ["--no-huge"]) + ONE_PORT, user=65534)
    assert_refused(r, "must run as root", topo.tag)


def test_bad_config_and_lcores(topo):
    r = run(topo, eal(topo, ["--no-huge"]) + ["-p", "0x1", "--config", "(0,0,1"])
    assert_refused(r, "malformed", topo.tag)
    r = run(topo, ["-l", "0", "--no-huge"] + ONE_PORT)
    assert_refused(r, "tx lcore 1 is not enabled by -l", topo.tag)


def test_eal_failure_is_one_line(topo):
    r = run(topo, eal(topo, ["--no-huge", "--iova-mode", "bogus"]) + ONE_PORT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "kni-gw: error: EAL initialisation failed" in r.stderr


@pytest.mark.parametrize("listen", ["300.1.1.1", "10.0.0.1:5353", "gw.example"])
def test_bad_dns_listen_refused_before_eal(topo, listen):
    zone = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "example.zone")
    r = run(topo, eal(topo) + ONE_PORT + ["--dns-zone", zone, "--dns-listen", listen])
    assert_refused(r, f"--dns-listen {listen!r}: not an IP address", topo.tag)
    assert "EAL argv" not in r.stderr        # refused before EAL started
    assert link_attr(topo.gw, "vEth0") == {}


def test_bad_zone_refused_with_its_line_before_eal(topo, tmp_path):
    src = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "example.zone")
    lines = open(src).read().splitlines()
    bad = lines[:8] + ["oops      IN A    192.168.0.300"] + lines[8:]
    zone = tmp_path / "bad.zone"
    zone.write_text("\n".join(bad) + "\n")
    r = run(topo, eal(topo) + ONE_PORT + ["--dns-zone", str(zone)])
    assert_refused(r, f"--dns-zone {zone}:9: ", topo.tag)
    assert "EAL argv" not in r.stderr and "Traceback" not in r.stderr
    assert link_attr(topo.gw, "vEth0") == {}
    # a file that is not text: one line too, with the line
    zone.write_bytes(b"\n".join(x.encode() for x in lines[:3]) + b"\nbin \xff\xfe IN A 1.2.3.4\n")
    r = run(topo, eal(topo) + ONE_PORT + ["--dns-zone", str(zone)])
    assert_refused(r, f"--dns-zone {zone}:4: not UTF-8 text", topo.tag)
