"""What an operator sees: the SIGUSR1 dump in a file (the journal's case)
and `kni-gw stats` / `--watch` in an 80-column terminal (tmux), after
hostile traffic that fills many drop and punt reasons. Nothing is cut:
every counter the control socket reports appears whole."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from .harness import kni_gw_bin, sh, veth_up, wait_for
from .pktio import write_frames
from .test_differential import MAC0, PKTIO
from .test_hostile import hostile

KNI_COLUMNS = ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets", "tx_dropped")
STAMP = re.compile(r"^kni-gw statistics at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4},\s+up \d", re.M)


def stats_json(prefix):
    r = subprocess.run([kni_gw_bin(), "stats", "--json", "--file-prefix", prefix],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def counters(view):
    """Every non-zero counter of every port, as text a person must see whole."""
    out = set()
    for p in view["ports"]:
        for k in ("rx_packets", "rx_dropped", "tx_packets", "tx_dropped", "to_kernel", "from_kernel",
                  "kernel_dropped", "forwarded"):
            out.add(str(p[k]))
        for group in ("drops", "punts", "policed"):
            out |= {f"{r}={n}" for r, n in p[group].items() if n}
    return out


def assert_whole(text, view, width=None):
    assert "…" not in text and "..." not in text, text
    assert not set(text) & set("┃│┏━┡╇└─"), text
    if width:
        assert max(len(line) for line in text.splitlines()) <= width, text
    words = set(re.findall(r"\S+", text.replace(",", " ")))
    missing = {c for c in counters(view) if c not in words}
    assert not missing, (missing, text)
    for col in KNI_COLUMNS + ("to_kernel", "from_kernel", "kernel_dropped", "forwarded"):
        assert col in words, (col, text)


def send_hostile(topo, tmp):
    """10,000 hostile frames (test_hostile's), addressed to port 0's MAC."""
    mac = bytes.fromhex(json.loads(sh("ip", "-j", "link", "show", "vEth0", ns=topo.gw).stdout)[0]
                        ["address"].replace(":", ""))
    mac0 = bytes.fromhex(MAC0.replace(":", ""))
    frames = [mac + f[6:] if f[:6] == mac0 else f for f in hostile()]
    path = os.path.join(tmp, "hostile.bin")
    write_frames(path, frames)
    sh(sys.executable, PKTIO, "send", "p0", path, "25", ns=topo.peers[0], timeout=300)


def test_sigusr1_into_a_file_and_stats_at_80_columns(topo, gateways):
    assert shutil.which("tmux"), "tmux is not installed (scripts/install.sh installs it)"
    tmp = tempfile.mkdtemp(prefix="kgview")
    dump = open(os.path.join(tmp, "stdout.txt"), "w")
    tmux = ["tmux", "-L", f"{topo.tag}-tmux"]
    try:
        gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)", "--police", "multicast=200:20",
                             "--police", "other=200:20"], stats_json=False, stdout=dump).wait_ready()
        veth_up(topo)
        send_hostile(topo, tmp)
        view = wait_for(lambda: (lambda v: v if v["ports"][0]["hw"]["to_kernel_fifo_used"] == 0 and
                                 v["mbufs_in_use"] <= 1100 else None)(stats_json(gw.prefix)),
                        what="the gateway idle again")
        p = view["ports"][0]
        assert sum(1 for n in p["drops"].values() if n) >= 4, p["drops"]
        assert sum(1 for n in p["punts"].values() if n) >= 5, p["punts"]

        # SIGUSR1 into a file, twice: each dump has its time and uptime
        for k in (1, 2):
            gw.send(signal.SIGUSR1)
            text = wait_for(lambda: (lambda t: t if t.count("mbufs in use") == k else None)(
                open(dump.name).read()), what=f"dump {k} in the file")
        dumps = [d for d in re.split(r"(?=^kni-gw statistics at )", text, flags=re.M) if d.strip()]
        assert len(dumps) == 2 and all(STAMP.match(d) for d in dumps), text
        assert_whole(dumps[-1], view)
        # one line per port with every column, under one header line
        lines = dumps[-1].splitlines()
        header = next(ln for ln in lines if ln.startswith("Port"))
        assert header.split()[:len(KNI_COLUMNS)] == list(KNI_COLUMNS), header
        row = next(ln for ln in lines if re.match(r"^\s*0\s+0/1/1\s", ln)).split()
        assert row[2:6] == [str(p[k]) for k in ("rx_packets", "rx_dropped", "tx_packets", "tx_dropped")]

        # `kni-gw stats` and `kni-gw stats --watch` in an 80-column terminal
        sh(*tmux, "new-session", "-d", "-x", "80", "-y", "60", "-s", "view", "sh")
        for cmd, what in ((f"{kni_gw_bin()} stats --file-prefix {gw.prefix}", "rates over the last second"),
                          (f"{kni_gw_bin()} stats --watch --file-prefix {gw.prefix}", "rates over the last second")):
            sh(*tmux, "send-keys", "-t", "view", "clear; " + cmd, "Enter")

            def pane():
                t = sh(*tmux, "capture-pane", "-p", "-t", "view").stdout
                return t if what in t and "mbufs in use" in t else None
            # rates need a second of samples: the gateway has been up longer than that
            screen = wait_for(pane, timeout=15, what=f"{cmd} on the screen")
            now = stats_json(gw.prefix)
            assert now["ports"][0]["rx_packets"] == p["rx_packets"]   # nothing moved meanwhile
            assert int(sh(*tmux, "display", "-p", "-t", "view", "#{pane_width}").stdout) == 80
            assert_whole(screen, view, width=80)
            assert STAMP.search(screen), screen
            if "--watch" in cmd:
                sh(*tmux, "send-keys", "-t", "view", "C-c", "")
        assert gw.stop() == 0
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)
        dump.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_sigkill_then_a_start_with_another_prefix_removes_the_dead_instance(topo, gateways):
    """A killed gateway leaves its hugepage files, /var/run/dpdk/P and its
    control socket; the next start (with any prefix) removes them in one
    log line, and never touches a live instance's files."""
    from .harness import Topology
    dead = f"{topo.tag}d"
    # a live instance, in another topology, all along: its files must stay
    other = Topology(1)
    try:
        live = gateways(other, ["-p", "0x1", "--config", "(0,0,1)"],
                        eal=["-l", "0-1", "--no-pci", "--file-prefix", other.tag] + other.vdevs()).wait_ready()
        live_files = glob.glob(f"/dev/hugepages/{other.tag}map_*")
        assert live_files
        eal = ["-l", "0-1", "--no-pci", "--file-prefix", dead] + topo.vdevs()     # on hugepages
        gw = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)"], eal=eal).wait_ready()
        files = glob.glob(f"/dev/hugepages/{dead}map_*")
        assert files and os.path.isdir(f"/var/run/dpdk/{dead}")
        # `kni-gw cleanup` refuses a live instance's prefix and removes nothing
        r = subprocess.run([kni_gw_bin(), "cleanup", "--file-prefix", dead], capture_output=True, text=True)
        assert r.returncode == 1 and f"in use by pid {gw.proc.pid} (kni-gw)" in r.stdout, r.stdout
        assert glob.glob(f"/dev/hugepages/{dead}map_*") == files
        gw.proc.kill()
        gw.proc.wait()
        assert glob.glob(f"/dev/hugepages/{dead}map_*") and os.path.exists(f"/run/kni-gw/{dead}.sock")

        gw2 = gateways(topo, ["-p", "0x1", "--config", "(0,0,1)"],
                       eal=["-l", "0-1", "--no-pci", "--file-prefix", f"{topo.tag}n", "--no-huge", "-m", "256"]
                       + topo.vdevs()).wait_ready()
        lines = [ln for ln in gw2.err if "removed what a dead kni-gw left" in ln]
        assert len(lines) == 1, gw2.err
        assert f"--file-prefix {dead}): {len(files)} hugepage file(s)" in lines[0], lines
        assert f"/var/run/dpdk/{dead}" in lines[0] and f"/run/kni-gw/{dead}.sock" in lines[0]
        assert not glob.glob(f"/dev/hugepages/{dead}map_*")
        assert not os.path.exists(f"/var/run/dpdk/{dead}") and not os.path.exists(f"/run/kni-gw/{dead}.sock")
        # the live one is untouched and still answers
        assert glob.glob(f"/dev/hugepages/{other.tag}map_*") == live_files
        assert stats_json(other.tag)["pid"] == live.proc.pid
        assert live.stop() == 0 and gw2.stop() == 0
        r = subprocess.run([kni_gw_bin(), "cleanup", "--file-prefix", dead], capture_output=True, text=True)
        assert r.returncode == 0 and "nothing left behind" in r.stdout
    finally:
        other.close()


def doctor_json(topo, *args):
    r = sh(kni_gw_bin(), "doctor", *args, "--json", ns=topo.gw, check=False)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    d = json.loads(r.stdout)
    return r.returncode, {c["name"]: c for c in d["checks"]}


def test_doctor_beside_a_live_gateway_is_right_and_safe(topo2, gateways):
    topo = topo2
    argv = ["-l", "0-1", "--no-pci", "--no-huge", "--file-prefix", topo.tag] + topo.vdevs() + \
        ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]
    # before: the README's set-up is there (harness), so the ports are clean
    rc, c = doctor_json(topo, *argv)
    assert rc == 0, c
    for k in (0, 1):
        assert c[f"port {k} (net_af_packet{k})"]["status"] == "ok"
        assert c[f"g{k} kept from the kernel"]["status"] == "ok"
        assert c[f"g{k} far end checksum"]["status"] == "ok", c[f"g{k} far end checksum"]

    gw = gateways(topo, ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"]).wait_ready()
    rc, c = doctor_json(topo, *argv)
    assert rc == 1
    # it knows the running instance and never proposes deleting its interfaces
    assert c["file prefix"]["status"] == "fail" and f"pid {gw.proc.pid}" in c["file prefix"]["detail"]
    for k in (0, 1):
        v = c[f"vEth{k} name"]
        assert v["status"] == "fail" and f"running kni-gw (pid {gw.proc.pid})" in v["detail"], v
        assert "ip link del" not in v["fix"] and v["fix"], v
    assert all("ip link del" not in x["fix"] for x in c.values())

    # a vdev on an interface that does not exist: that port fails, with its own fix
    bad = [a.replace("iface=g1", "iface=nosuch") for a in argv]
    bad[bad.index("--file-prefix") + 1] = topo.tag + "x"
    rc, c = doctor_json(topo, *bad)
    assert rc == 1 and c["port 1 (net_af_packet1)"]["status"] == "fail"
    assert "nosuch" in c["port 1 (net_af_packet1)"]["detail"] and c["port 1 (net_af_packet1)"]["fix"]
    assert c["file prefix"]["status"] == "ok"

    # veth sysctls unset, the far end's checksum offload on: a warning and the fix for each
    sh("sysctl", "-qw", "net.ipv4.conf.g0.arp_ignore=0", "net.ipv6.conf.g0.disable_ipv6=0", ns=topo.gw)
    sh("ethtool", "-K", "p1", "tx", "on", ns=topo.peers[1])
    rc, c = doctor_json(topo, *bad)
    s = c["g0 kept from the kernel"]
    assert s["status"] == "warn" and "arp_ignore 0" in s["detail"] and "IPv6 on" in s["detail"], s
    assert s["fix"] == "sudo sysctl -w net.ipv4.conf.g0.arp_ignore=8 net.ipv6.conf.g0.disable_ipv6=1", s
    f = c["g1 far end checksum"] if "g1 far end checksum" in c else None
    assert f is None      # g1 is not a port of this command line (nosuch is)
    rc, c = doctor_json(topo, *[a.replace("iface=nosuch", "iface=g1") for a in bad])
    f = c["g1 far end checksum"]
    assert f["status"] == "warn" and f["fix"] == f"sudo ip netns exec {topo.peers[1]} ethtool -K p1 tx off", f
    # applying the fixes as given clears the warnings
    sh(*s["fix"].split()[1:], ns=topo.gw)
    sh(*f["fix"].split()[1:])
    rc, c = doctor_json(topo, *[a.replace("iface=nosuch", "iface=g1") for a in bad])
    assert c["g0 kept from the kernel"]["status"] == "ok" and c["g1 far end checksum"]["status"] == "ok"

    # after a SIGKILL on hugepages: the stale files, and the command that removes them
    gw.proc.kill()
    gw.proc.wait()
    dead = f"{topo.tag}h"
    eal = ["-l", "0-1", "--no-pci", "--file-prefix", dead] + topo.vdevs()
    g2 = gateways(topo, ["-p", "0x3", "--config", "(0,0,1),(1,0,1)"], eal=eal).wait_ready()
    g2.proc.kill()
    g2.proc.wait()
    rc, c = doctor_json(topo, *argv)
    st = c[f"stale files {dead}"]
    assert st["status"] == "warn" and "hugepage file(s)" in st["detail"], st
    assert st["fix"].startswith(f"sudo kni-gw cleanup --file-prefix {dead}")
    fix = st["fix"].split("  ")[0].split()
    assert fix[:3] == ["sudo", "kni-gw", "cleanup"]
    sh(kni_gw_bin(), *fix[2:])      # this tree's kni-gw
    rc, c = doctor_json(topo, *argv)
    assert f"stale files {dead}" not in c and rc == 0, c


def test_quiet_start_up_real_errors_shown_log_level_shows_all(topo, gateways):
    args = ["-p", "0x1", "--config", "(0,0,1)"]
    eal = ["-l", "0-1", "--file-prefix", topo.tag, "--no-huge", "-m", "256"] + topo.vdevs()  # a PCI scan too
    gw = gateways(topo, args, eal=eal).wait_ready()
    assert gw.stop() == 0
    assert all(ln.startswith("kni-gw: ") for ln in gw.err), "\n".join(gw.err)
    # --log-level: DPDK says everything it has to say (the TAP PMD's notes among it)
    gw = gateways(topo, args, eal=eal + ["--log-level", "notice"]).wait_ready()
    assert gw.stop() == 0
    assert any(not ln.startswith("kni-gw: ") for ln in gw.err), gw.err
    # a real DPDK error is shown at the default level, before kni-gw's own line
    bad = [a.replace("iface=g0", "iface=nosuch0") for a in eal]
    r = sh(kni_gw_bin(), *bad, *args, ns=topo.gw, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert any("SIOCGIFINDEX" in ln and not ln.startswith("kni-gw: ") for ln in lines), r.stderr
    assert lines[-1].startswith("kni-gw: error:"), r.stderr


def test_cleanup_without_a_prefix_finds_the_default_ones_leftovers():
    """What an instance of the default prefix left without its control
    socket (its run directory) is found by a bare `kni-gw cleanup`; a live
    one is never touched."""
    from kni_gw import instance
    run_dir = "/var/run/dpdk/kni-gw"
    if instance.remains("kni-gw").alive:
        r = subprocess.run([kni_gw_bin(), "cleanup"], capture_output=True, text=True)
        assert "--file-prefix kni-gw: in use" in r.stdout and os.path.isdir(run_dir), r.stdout
        return
    made = not os.path.exists(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    try:
        open(os.path.join(run_dir, "config"), "w").close()
        r = subprocess.run([kni_gw_bin(), "cleanup"], capture_output=True, text=True)
        assert r.returncode == 0 and f"--file-prefix kni-gw: removed {run_dir}" in r.stdout, r.stdout
        assert not os.path.exists(run_dir)
    finally:
        if made and os.path.isdir(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
