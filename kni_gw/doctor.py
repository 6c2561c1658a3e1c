"""kni-gw doctor [the options of a run]: preflight checks for one command line.

Each check has a status (ok, warn, fail), what was found and the command
that fixes it. The exit status is 1 when that command line could not start
(any "fail"), else 0. Nothing is changed on the host.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import List, Optional, Set

from rich.console import Console
from rich.table import Table

from . import instance
from .config import (DEFAULT_FILE_PREFIX, ConfigError, HelpRequested, HostFacts, RunConfig, build_config,
                     enabled_lcores, eal_options, fmt_lcores, hugepages_free, hugetlbfs_mounted,
                     resolve_backend, split_argv)
from .hostports import KERNEL_BACKED, parse_vdev, stack_off_problems, veth_far_end

DPDK_DRIVERS = {"vfio-pci", "uio_pci_generic", "igb_uio"}
SYS = os.environ.get("KNI_GW_SYSFS", "") + "/sys"


@dataclasses.dataclass
class Check:
    name: str
    status: str          # ok | warn | fail
    detail: str
    fix: str = ""


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def pci_driver(pci: str) -> Optional[str]:
    link = os.path.join(SYS, "bus/pci/devices", pci, "driver")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def dpdk_version() -> str:
    try:
        from .dataplane import dpdk_version as version
    except ImportError:          # the C dataplane is not built
        return ""
    return version()


def parse_cpulist(text: str) -> Set[int]:
    out: Set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def checks(argv: List[str]) -> List[Check]:
    out: List[Check] = []
    cfg: Optional[RunConfig] = None
    try:
        cfg = build_config(argv)
        out.append(Check("command line", "ok", f"{len(cfg.ports)} port(s), exception backend "
                         f"{cfg.backend}", ""))
    except ConfigError as e:
        out.append(Check("command line", "fail", str(e), "kni-gw --help"))
    eal = eal_options(split_argv(argv)[0]) if cfg is None else cfg.eal_opts
    ifnames = [p.ifname for p in cfg.ports] if cfg else []
    host = HostFacts.read(ifnames)
    fake = os.environ.get("KNI_GW_SYSFS")
    if fake:  # a fake tree (tests): its hugepages and mounts
        host.hugepages_free = hugepages_free(fake + "/sys/kernel/mm/hugepages")
        host.hugetlbfs_mounted = hugetlbfs_mounted(fake + "/proc/mounts")

    out.append(Check("root", "ok" if host.euid == 0 else "fail",
                     "running as root" if host.euid == 0 else f"uid {host.euid}",
                     "" if host.euid == 0 else "sudo kni-gw ..."))

    ver = dpdk_version()
    ok = ver.startswith("DPDK ") and tuple(int(x) for x in ver.split()[1].split(".")[:2]) >= (22, 11)
    out.append(Check("DPDK", "ok" if ok else "fail", ver or "kni-gw's dataplane is not built",
                     "" if ok else "sudo scripts/install.sh"))

    no_huge = "--no-huge" in eal
    if no_huge:
        out.append(Check("hugepages", "ok", "not needed: --no-huge (ordinary memory, slower)"))
    else:
        mounted = host.hugetlbfs_mounted
        if host.hugepages_free > 0 and mounted:
            out.append(Check("hugepages", "ok", f"{host.hugepages_free} free, hugetlbfs mounted"))
        else:
            what = [f"{host.hugepages_free} free"] + ([] if mounted else ["hugetlbfs not mounted"])
            out.append(Check("hugepages", "fail", ", ".join(what),
                             "sudo scripts/setup_hugepages.sh 1G  (or run with --no-huge)"))

    backend = resolve_backend(cfg.backend if cfg else "auto", host)
    out.append(Check("/dev/net/tun", "ok" if host.has_tun else ("fail" if backend == "tap" else "warn"),
                     "present" if host.has_tun else "absent", "" if host.has_tun else "sudo modprobe tun"))
    if host.has_vhost_net:
        out.append(Check("/dev/vhost-net", "ok", "present: --exception auto uses virtio-user"))
    else:
        out.append(Check("/dev/vhost-net", "fail" if backend == "virtio-user" else "warn",
                         "absent" + ("" if backend == "virtio-user" else ": --exception auto uses tap"),
                         "sudo modprobe vhost_net"))

    groups = os.listdir(os.path.join(SYS, "kernel/iommu_groups")) if os.path.isdir(
        os.path.join(SYS, "kernel/iommu_groups")) else []
    vfio = os.path.isdir(os.path.join(SYS, "module/vfio_pci")) or os.path.isdir(os.path.join(SYS, "bus/pci/drivers/vfio-pci"))
    if groups:
        out.append(Check("IOMMU / vfio", "ok", f"{len(groups)} IOMMU group(s), vfio-pci "
                         f"{'loaded' if vfio else 'not loaded'}", "" if vfio else "sudo modprobe vfio-pci"))
    else:
        out.append(Check("IOMMU / vfio", "warn", "no IOMMU groups: vfio-pci only in unsafe no-IOMMU mode",
                         "boot with intel_iommu=on (or amd_iommu=on), or bind with --driver uio_pci_generic"))

    out += ports_checks(eal, cfg)
    out += instance_checks(cfg.file_prefix if cfg else _prefix(eal), eal.get("--huge-dir", [None])[-1])

    ncpu = os.cpu_count() or 1
    lcores = enabled_lcores(eal, len(os.sched_getaffinity(0)))
    if lcores is None:
        out.append(Check("CPUs", "warn", "cannot read the --lcores map; EAL checks it"))
    elif max(lcores) >= ncpu:
        out.append(Check("CPUs", "fail", f"lcores {fmt_lcores(lcores)} need {max(lcores) + 1} CPUs, "
                         f"this machine has {ncpu}", f"-l 0-{ncpu - 1}"))
    else:
        out.append(Check("CPUs", "ok", f"lcores {fmt_lcores(lcores)} of {ncpu} CPUs"))
        isolated = parse_cpulist(_read(os.path.join(SYS, "devices/system/cpu/isolated")) or "")
        polling = (set().union(*(p.lcores for p in cfg.ports))
                   if cfg else set(lcores))
        if polling <= isolated:
            out.append(Check("isolcpus", "ok", f"polling lcores {fmt_lcores(polling)} isolated"))
        else:
            out.append(Check("isolcpus", "warn",
                             f"lcores {fmt_lcores(polling - isolated)} share their CPUs with the kernel "
                             f"(isolated: {fmt_lcores(isolated) if isolated else 'none'})",
                             f"boot with isolcpus={fmt_lcores(polling)} nohz_full={fmt_lcores(polling)}"))

    if cfg:
        owners = instance.tap_owners() if host.taken_ifnames else {}
        for name in ifnames:
            if name not in host.taken_ifnames:
                out.append(Check(f"{name} name", "ok", "free"))
                continue
            pid = owners.get(name)
            if pid is not None:
                # a running gateway's interface: never propose deleting it
                out.append(Check(f"{name} name", "fail",
                                 f"{name} belongs to the running {instance.process_name(pid)} (pid {pid})",
                                 "this command line would clash with it: run it in another network "
                                 f"namespace, or stop that one first (sudo kill {pid})"))
            else:
                out.append(Check(f"{name} name", "fail", f"{name} exists and no process holds it",
                                 f"sudo ip link del {name}"))
    return out


def _prefix(eal) -> str:
    vals = eal.get("--file-prefix")
    return vals[-1] if vals else DEFAULT_FILE_PREFIX


def instance_checks(prefix: str, huge_dir: Optional[str]) -> List[Check]:
    """A live instance with this prefix (the run could not start), and what
    dead ones left (a start removes it; kni-gw cleanup does it now)."""
    out = []
    own = instance.remains(prefix, huge_dir)
    if own.alive:
        who = f"{instance.process_name(own.pid)} (pid {own.pid})" if own.pid else "a kni-gw"
        out.append(Check("file prefix", "fail", f"--file-prefix {prefix} is in use by the running {who}",
                         "give this run another --file-prefix"
                         + (f", or stop that one first (sudo kill {own.pid})" if own.pid else "")))
    else:
        out.append(Check("file prefix", "ok", f"--file-prefix {prefix} free"))
    for p in sorted(set(instance.known_prefixes()) | {prefix}):
        r = own if p == prefix else instance.remains(p, huge_dir)
        if r.alive or r.empty:
            continue
        out.append(Check(f"stale files {p}", "warn", f"a dead instance (--file-prefix {p}) left "
                         f"{r.describe()}", f"sudo kni-gw cleanup --file-prefix {p}  (a start does it too)"))
    return out


def ports_checks(eal, cfg: Optional[RunConfig]) -> List[Check]:
    """The ports EAL would probe, in its order: PCI first, then the vdevs."""
    allowed = eal.get("-a", []) + eal.get("--allow", [])
    vdevs = [parse_vdev(v) for v in eal.get("--vdev", [])]
    bad = []
    for a in allowed:
        pci = a.split(",")[0]
        if len(pci) == 7:
            pci = "0000:" + pci
        drv = pci_driver(pci)
        if drv not in DPDK_DRIVERS:
            bad.append(f"{pci} ({drv or 'no driver'})")
    if bad:
        return [Check("ports", "fail", "not bound to a DPDK driver: " + ", ".join(bad),
                      f"sudo scripts/bind_nic.sh bind {b.split()[0]}") for b in bad]
    if allowed:
        npci = len(allowed)
    elif "--no-pci" in eal:
        npci = 0
    else:
        npci = sum(1 for d in (os.listdir(os.path.join(SYS, "bus/pci/devices"))
                               if os.path.isdir(os.path.join(SYS, "bus/pci/devices")) else [])
                   if pci_driver(d) in DPDK_DRIVERS)
    n = npci + len(vdevs)
    need = max((p.port for p in cfg.ports), default=-1) + 1 if cfg else 1
    out = []
    if n < need:
        out.append(Check("ports", "fail", f"{n} port(s) for DPDK ({len(vdevs)} vdev), the command line "
                         f"uses {need}", "sudo scripts/bind_nic.sh bind IFACE, or add --vdev ..."))
    else:
        out.append(Check("ports", "ok", f"{n} port(s) for DPDK ({len(vdevs)} vdev)"))
    for i, v in enumerate(vdevs):
        out += vdev_checks(npci + i, v)
    return out


def vdev_checks(port: int, v) -> List[Check]:
    """One vdev as the run would open it; for a kernel-backed one, the
    interface it sits on, set up as the README says."""
    name = f"port {port} ({v.name})"
    if v.driver in KERNEL_BACKED:
        iface = v.args.get("iface")
        if not iface:
            return [Check(name, "fail", f"--vdev {v.text}: no iface=", f"--vdev {v.name},iface=IFACE")]
        if not os.path.exists(f"/sys/class/net/{iface}"):
            return [Check(name, "fail", f"iface={iface}: no such interface in this network namespace",
                          f"ip -br link  (and --vdev {v.name},iface=<one of them>)")]
        out = [Check(name, "ok", f"iface={iface}")]
        problems = stack_off_problems(iface)
        if problems:
            out.append(Check(f"{iface} kept from the kernel", "warn",
                             ", ".join(p[0] for p in problems) + ": Linux also answers for vEth addresses "
                             f"straight off {iface}",
                             "sudo sysctl -w " + " ".join(p[1] for p in problems)))
        else:
            out.append(Check(f"{iface} kept from the kernel", "ok", "rp_filter 1, arp_ignore 8, no IPv6"))
        try:
            far = veth_far_end(iface)
        except Exception:  # noqa: BLE001 - netlink may refuse; the check is advisory
            far = None
        if far is not None:
            ns, peer, csum = far
            where = f"sudo ip netns exec {ns} " if ns else "sudo "
            if peer is None:
                out.append(Check(f"{iface} far end checksum", "warn",
                                 "the veth's far end is in a namespace without a name: cannot check it",
                                 "ethtool -K <far end> tx off, where it is"))
            elif csum:
                out.append(Check(f"{iface} far end checksum", "warn",
                                 f"veth peer {peer}{f' (netns {ns})' if ns else ''} has TX checksum offload on: "
                                 "TCP/UDP frames reach DPDK with half-done checksums",
                                 f"{where}ethtool -K {peer} tx off"))
            else:
                out.append(Check(f"{iface} far end checksum", "ok", f"veth peer {peer}: TX checksum offload off"))
        return out
    if v.driver == "net_pcap":
        for k in ("rx_pcap",):
            f = v.args.get(k)
            if f and not os.path.isfile(f):
                return [Check(name, "fail", f"{k}={f}: no such file", f"--vdev {v.name},{k}=<a pcap file>")]
    return [Check(name, "ok", v.text)]


def main(argv: List[str]) -> int:
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__)
        return 0
    try:
        result = checks(argv)
    except HelpRequested:
        sys.stdout.write(__doc__)
        return 0
    can_start = not any(c.status == "fail" for c in result)
    if as_json:
        print(json.dumps({"can_start": can_start, "checks": [dataclasses.asdict(c) for c in result]}))
    else:
        t = Table(title="kni-gw doctor", title_justify="left")
        for col in ("check", "status", "found", "fix"):
            t.add_column(col)
        style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        for c in result:
            t.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(t)
        console.print("this command line can start" if can_start else
                      "this command line cannot start: fix what says fail")
    return 0 if can_start else 1
