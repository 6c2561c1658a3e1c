"""scripts/setup_hugepages.sh, scripts/bind_nic.sh and `kni-gw doctor`:
every path against a fake sysfs tree (KNI_GW_SYSFS), refusals included,
shellcheck, and the real thing where this machine allows it (a small
hugepage reservation shown and cleared; doctor on this host)."""
import glob
import json
import os
import shutil
import subprocess

import pytest

from .harness import kni_gw_bin, sh

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUGE = os.path.join(TOP, "scripts", "setup_hugepages.sh")
BIND = os.path.join(TOP, "scripts", "bind_nic.sh")


def run(script, *args, env=None, ns=None, user=None):
    cmd = ["bash", script, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=60)


def write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


# ------------------------------------------------------------ hugepages

@pytest.fixture
def hugetree(tmp_path):
    """Two NUMA nodes, 2M and 1G pages."""
    root = tmp_path / "root"
    for size in ("2048kB", "1048576kB"):
        write(f"{root}/sys/kernel/mm/hugepages/hugepages-{size}/nr_hugepages", "0\n")
        write(f"{root}/sys/kernel/mm/hugepages/hugepages-{size}/free_hugepages", "0\n")
        for node in (0, 1):
            write(f"{root}/sys/devices/system/node/node{node}/hugepages/hugepages-{size}/nr_hugepages", "0\n")
            write(f"{root}/sys/devices/system/node/node{node}/hugepages/hugepages-{size}/free_hugepages", "0\n")
    write(f"{root}/proc/mounts", "proc /proc proc rw 0 0\n")
    write(f"{root}/proc/meminfo", "Hugepagesize:       2048 kB\n")
    return str(root)


def node_pages(root, node, size="2048kB"):
    return int(read(f"{root}/sys/devices/system/node/node{node}/hugepages/hugepages-{size}/nr_hugepages"))


def test_hugepages_size_spread_over_nodes_and_idempotent(hugetree):
    env = {"KNI_GW_SYSFS": hugetree}
    for _ in range(2):
        r = run(HUGE, "512M", env=env)
        assert r.returncode == 0, r.stderr
        assert (node_pages(hugetree, 0), node_pages(hugetree, 1)) == (128, 128)
    assert "256 pages of 2M reserved (512 MiB)" in r.stdout


def test_hugepages_count_node_and_1g(hugetree):
    env = {"KNI_GW_SYSFS": hugetree}
    r = run(HUGE, "--pages", "3", env=env)
    assert r.returncode == 0 and (node_pages(hugetree, 0), node_pages(hugetree, 1)) == (2, 1)
    r = run(HUGE, "--pages", "5", "--node", "1", env=env)
    assert r.returncode == 0 and node_pages(hugetree, 1) == 5
    r = run(HUGE, "-p", "1G", "2G", env=env)
    assert r.returncode == 0, r.stderr
    assert (node_pages(hugetree, 0, "1048576kB"), node_pages(hugetree, 1, "1048576kB")) == (1, 1)


def test_hugepages_show_dry_run_and_clear(hugetree):
    env = {"KNI_GW_SYSFS": hugetree}
    r = run(HUGE, "1G", "--dry-run", env=env)
    assert r.returncode == 0 and "would write 256 to" in r.stdout
    assert node_pages(hugetree, 0) == 0
    run(HUGE, "64M", env=env)
    r = run(HUGE, "--show", env=env)
    assert r.returncode == 0 and "2048kB" in r.stdout and "16" in r.stdout
    r = run(HUGE, "--clear", env=env)
    assert r.returncode == 0 and node_pages(hugetree, 0) == 0 and node_pages(hugetree, 1) == 0


def test_hugepages_refusals(hugetree):
    env = {"KNI_GW_SYSFS": hugetree}
    shutil.rmtree(f"{hugetree}/sys/kernel/mm/hugepages/hugepages-1048576kB")
    r = run(HUGE, "-p", "1G", "1G", env=env)
    assert r.returncode != 0 and "page size 1G is not supported" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run(HUGE, "--node", "7", "64M", env=env)
    assert r.returncode != 0 and "no NUMA node 7" in r.stderr
    r = run(HUGE, "12Q", env=env)
    assert r.returncode != 0 and "bad size" in r.stderr
    # the kernel gives fewer pages than asked: both numbers are reported
    for node in (0, 1):
        p = f"{hugetree}/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages"
        os.remove(p)
        os.symlink("/dev/null", p)
    r = run(HUGE, "512M", env=env)
    assert r.returncode != 0 and "asked for 256 2M pages, the kernel reserved 0" in r.stderr
    # not root, on the real system
    r = run(HUGE, "64M", user=65534)
    assert r.returncode != 0 and "must run as root" in r.stderr


def test_real_hugepage_reservation_shown_and_cleared():
    path = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
    before = int(read(path))
    try:
        r = run(HUGE, "--pages", str(before + 8))
        assert r.returncode == 0, r.stderr
        assert int(read(path)) == before + 8
        r = run(HUGE, "--show")
        assert "2048kB" in r.stdout and str(before + 8) in r.stdout and "/dev/hugepages" in r.stdout
        r = run(HUGE, "--clear")
        assert r.returncode == 0 and int(read(path)) == 0
    finally:
        assert run(HUGE, "--pages", str(before)).returncode == 0 or before == 0
        assert int(read(path)) == before


# ------------------------------------------------------------ bind_nic

@pytest.fixture
def pcitree(tmp_path):
    """Two NICs: 0000:01:00.0 (e1000e, kgtb0) and 0000:02:00.0 (ixgbe, kgtb1)."""
    root = tmp_path / "root"
    sysd = f"{root}/sys"
    for drv in ("e1000e", "ixgbe", "vfio-pci", "uio_pci_generic"):
        write(f"{sysd}/bus/pci/drivers/{drv}/bind")
        write(f"{sysd}/bus/pci/drivers/{drv}/unbind")
    write(f"{sysd}/bus/pci/drivers_probe")
    write(f"{sysd}/module/vfio/parameters/enable_unsafe_noiommu_mode", "N")
    os.makedirs(f"{sysd}/kernel/iommu_groups")
    for pci, drv, ifc in (("0000:01:00.0", "e1000e", "kgtb0"), ("0000:02:00.0", "ixgbe", "kgtb1")):
        dev = f"{sysd}/devices/pci0000:00/{pci}"
        write(f"{dev}/class", "0x020000\n")
        write(f"{dev}/driver_override", "(null)\n")
        os.makedirs(f"{dev}/net/{ifc}")
        os.symlink(f"../../../bus/pci/drivers/{drv}", f"{dev}/driver")
        os.makedirs(f"{sysd}/bus/pci/devices", exist_ok=True)
        os.symlink(f"../../../devices/pci0000:00/{pci}", f"{sysd}/bus/pci/devices/{pci}")
        os.makedirs(f"{sysd}/class/net/{ifc}")
        os.symlink(f"../../../devices/pci0000:00/{pci}", f"{sysd}/class/net/{ifc}/device")
    write(f"{sysd}/devices/pci0000:00/0000:03:00.0/class", "0x010802\n")  # not a NIC
    os.symlink("../../../devices/pci0000:00/0000:03:00.0", f"{sysd}/bus/pci/devices/0000:03:00.0")
    return {"KNI_GW_SYSFS": str(root), "KNI_GW_STATE": str(tmp_path / "bind.state")}


@pytest.fixture
def mgmt_ns():
    """A namespace where kgtb0 is up with an address and a route (the
    management interface) and kgtb1 is down."""
    ns = f"kgtb{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", "kgtb0", "type", "veth", "peer", "name", "kgtb1", ns=ns)
        sh("ip", "addr", "add", "192.0.2.10/24", "dev", "kgtb0", ns=ns)
        sh("ip", "link", "set", "kgtb0", "up", ns=ns)
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


def test_bind_status(pcitree, mgmt_ns):
    r = run(BIND, "status", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row0 = next(ln for ln in lines if ln.startswith("0000:01:00.0"))
    assert "e1000e" in row0 and "kgtb0" in row0 and "in use" in row0
    row1 = next(ln for ln in lines if ln.startswith("0000:02:00.0"))
    assert "ixgbe" in row1 and "in use" not in row1
    assert not any(ln.startswith("0000:03:00.0") for ln in lines)   # not a network device
    assert "DPDK-capable drivers: vfio-pci(loaded) uio_pci_generic(loaded) igb_uio" in r.stdout


def test_bind_refuses_the_management_interface_unless_forced(pcitree, mgmt_ns):
    r = run(BIND, "bind", "kgtb0", "--driver", "uio_pci_generic", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "refusing kgtb0 (0000:01:00.0)" in r.stderr and "--force" in r.stderr
    override = f"{pcitree['KNI_GW_SYSFS']}/sys/devices/pci0000:00/0000:01:00.0/driver_override"
    assert read(override).strip() == "(null)"
    r = run(BIND, "bind", "kgtb0", "--driver", "uio_pci_generic", "--force", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0, r.stderr
    assert read(override) == "uio_pci_generic"


def test_bind_vfio_needs_an_iommu_or_noiommu(pcitree, mgmt_ns):
    root = pcitree["KNI_GW_SYSFS"]
    r = run(BIND, "bind", "0000:02:00.0", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "no IOMMU groups" in r.stderr and "--noiommu" in r.stderr
    r = run(BIND, "bind", "02:00.0", "--noiommu", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0, r.stderr
    assert read(f"{root}/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") == "Y"
    assert read(f"{root}/sys/devices/pci0000:00/0000:02:00.0/driver_override") == "vfio-pci"
    assert read(f"{root}/sys/bus/pci/drivers/ixgbe/unbind") == "0000:02:00.0"
    assert read(f"{root}/sys/bus/pci/drivers_probe") == "0000:02:00.0"
    assert read(pcitree["KNI_GW_STATE"]).split()[:3] == ["0000:02:00.0", "ixgbe", "kgtb1"]


def test_bind_with_iommu_then_restore(pcitree, mgmt_ns):
    root = pcitree["KNI_GW_SYSFS"]
    os.makedirs(f"{root}/sys/kernel/iommu_groups/7")
    r = run(BIND, "bind", "kgtb1", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0, r.stderr
    assert read(f"{root}/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") == "N"
    # the device now shows vfio-pci (what the kernel would have done)
    dev = f"{root}/sys/devices/pci0000:00/0000:02:00.0"
    os.remove(f"{dev}/driver")
    os.symlink("../../../bus/pci/drivers/vfio-pci", f"{dev}/driver")
    assert "bound to DPDK" in run(BIND, "status", env=pcitree, ns=mgmt_ns).stdout
    r = run(BIND, "restore", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0, r.stderr
    assert read(f"{root}/sys/bus/pci/drivers/vfio-pci/unbind") == "0000:02:00.0"
    assert read(f"{root}/sys/bus/pci/drivers/ixgbe/bind") == "0000:02:00.0"
    assert read(f"{dev}/driver_override") == ""
    assert read(pcitree["KNI_GW_STATE"]) == ""
    r = run(BIND, "restore", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "nothing to restore" in r.stderr


def test_bind_refusals(pcitree, mgmt_ns):
    r = run(BIND, "bind", "nosuch0", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "no network interface or PCI device 'nosuch0'" in r.stderr
    r = run(BIND, "bind", "kgtb1", "--driver", "e1000", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "choose one of vfio-pci uio_pci_generic igb_uio" in r.stderr
    r = run(BIND, "frob", env=pcitree, ns=mgmt_ns)
    assert r.returncode != 0 and "unknown command" in r.stderr
    r = run(BIND, "bind", "kgtb1", "--dry-run", "--driver", "uio_pci_generic", env=pcitree, ns=mgmt_ns)
    assert r.returncode == 0 and "would write uio_pci_generic" in r.stdout
    assert not os.path.exists(pcitree["KNI_GW_STATE"])
    r = run(BIND, "bind", "kgtb1", "--driver", "uio_pci_generic", user=65534)
    assert r.returncode != 0 and "must run as root" in r.stderr


def test_scripts_are_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (scripts/install.sh installs it)")
    files = sorted(glob.glob(os.path.join(TOP, "scripts", "*.sh")) + glob.glob(os.path.join(TOP, "fuzz", "*.sh"))
                   + glob.glob(os.path.join(TOP, "bench", "*.sh"))) + [os.path.join(TOP, ".ci", "run")]
    r = subprocess.run(["shellcheck", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_systemd_unit_verifies():
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed")
    for exe in ("/usr/local/bin/kni-gw", "/usr/local/sbin/kni-gw-setup-hugepages"):
        assert os.access(exe, os.X_OK), f"{exe} missing (scripts/install.sh links it)"
    r = subprocess.run(["systemd-analyze", "verify", os.path.join(TOP, "examples", "kni-gw.service")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "kni-gw.service" not in r.stderr, r.stderr


# ------------------------------------------------------------ doctor

def doctor(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([kni_gw_bin(), "doctor", *args], capture_output=True, text=True, env=e,
                          timeout=60)


def by_name(out):
    d = json.loads(out)
    return d["can_start"], {c["name"]: c for c in d["checks"]}


def test_doctor_on_this_machine():
    runnable = ["-l", "0-1", "--no-huge", "--vdev", "net_af_packet0,iface=lo", "-p", "0x1",
                "--config", "(0,0,1)"]
    r = doctor(*runnable, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    ok, c = by_name(r.stdout)
    assert ok
    assert c["/dev/net/tun"]["status"] == "ok" and c["/dev/net/tun"]["detail"] == "present"
    assert c["/dev/vhost-net"]["status"] == "warn" and c["/dev/vhost-net"]["detail"].startswith("absent")
    assert c["DPDK"]["detail"].startswith("DPDK 22.11")
    # the table form says the same
    t = doctor(*runnable)
    assert t.returncode == 0 and "/dev/vhost-net" in t.stdout and "this command line can start" in t.stdout


@pytest.mark.parametrize("args, failing", [
    (["--exception", "virtio-user"], "/dev/vhost-net"),
    (["-l", "0-7"], "CPUs"),
    (["--config", "(0,0,1"], "command line"),
])
def test_doctor_exit_status_follows_the_command_line(args, failing):
    base = {"-l": "0-1", "--config": "(0,0,1)"}
    argv = ["--no-huge", "--vdev", "net_af_packet0,iface=lo", "-p", "0x1"]
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    r = doctor(*(argv + args), "--json")
    assert r.returncode == 1, r.stdout
    ok, c = by_name(r.stdout)
    assert not ok and c[failing]["status"] == "fail" and c[failing]["fix"]


def test_doctor_points_to_bind_nic_for_an_unbound_nic(pcitree):
    r = doctor("-l", "0-1", "--no-huge", "-a", "0000:01:00.0", "-p", "0x1", "--config", "(0,0,1)",
               "--json", env=pcitree)
    assert r.returncode == 1
    ok, c = by_name(r.stdout)
    assert c["ports"]["status"] == "fail" and "0000:01:00.0 (e1000e)" in c["ports"]["detail"]
    assert c["ports"]["fix"] == "sudo scripts/bind_nic.sh bind 0000:01:00.0"


def test_doctor_hugepages_when_none(hugetree):
    r = doctor("-l", "0-1", "--vdev", "net_af_packet0,iface=lo", "-p", "0x1", "--config", "(0,0,1)",
               "--json", env={"KNI_GW_SYSFS": hugetree})
    ok, c = by_name(r.stdout)
    assert r.returncode == 1 and c["hugepages"]["status"] == "fail"
    assert "setup_hugepages.sh" in c["hugepages"]["fix"]
