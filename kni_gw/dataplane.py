"""Thin wrapper over the C dataplane (cffi module kni_gw._dataplane).

EAL runs on a dedicated dataplane thread, which becomes the EAL main lcore;
the Python main thread stays unpinned and free for signals, netlink and DNS.
Calls into C release the GIL. Arguments are validated before they get here,
C's return is checked once, and failures raise DataplaneError.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import sys
import threading
from typing import Dict, List, Optional, Tuple

from .config import RunConfig
from .errors import DataplaneError
from .instance import remove_eal_leftovers

log = logging.getLogger("kni-gw")

try:
    from ._dataplane import ffi, lib
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        f"kni-gw's C dataplane is not built ({e}); run: sudo scripts/install.sh") from e

BACKEND = {"tap": lib.KG_BACKEND_TAP, "virtio-user": lib.KG_BACKEND_VIRTIO_USER}


def _names(kind: int, n: int) -> List[str]:
    # the names are defined once, in csrc/control/names.c
    out = [ffi.string(lib.kg_name(kind, i)).decode() for i in range(n)]
    assert lib.kg_name(kind, n) == ffi.NULL
    return out


DROP_REASONS = _names(lib.KG_NAME_DROP, lib.KG_DROP_MAX)
PUNT_REASONS = _names(lib.KG_NAME_PUNT, lib.KG_PUNT_MAX)
POLICE_CLASSES = _names(lib.KG_NAME_POLICE, lib.KG_POLICE_MAX)
# drop reasons by the stage that counts them (the KNI sample's columns)
RX_DROPS = [r for i, r in enumerate(DROP_REASONS) if lib.kg_drop_stage(i) == lib.KG_STAGE_RX]
EXC_DROPS = [r for i, r in enumerate(DROP_REASONS) if lib.kg_drop_stage(i) == lib.KG_STAGE_EXC]
TX_DROPS = [r for i, r in enumerate(DROP_REASONS) if lib.kg_drop_stage(i) == lib.KG_STAGE_TX]
COUNTERS = ["rx_packets", "rx_bytes", "to_kernel", "forwarded", "kernel_tx",
            "from_kernel", "tx_packets", "tx_bytes", "dns_answered", "dns_missed"]

_eal_lock = threading.Lock()
_eal_used = False


def dpdk_version() -> str:
    return ffi.string(lib.kg_dpdk_version()).decode()


def strerror(rc: int) -> str:
    return ffi.string(lib.kg_strerror(rc)).decode()


def ensure(rc: int, what: str) -> int:
    """The one error policy for C calls: a negative return is an errno
    value, raised as DataplaneError (errno_value set); else rc."""
    if rc < 0:
        raise DataplaneError(f"{what}: {strerror(rc)}", -rc)
    return rc


# ---------------------------------------------------------------- tables
# The mirror's install layer (kni_gw/fibinstall.py) calls these; each checks
# C's return once and raises DataplaneError.
NH_FIRST_ADJ = lib.KG_NH_FIRST_ADJ
NH_GROUP = lib.KG_NH_GROUP
ADJ_MAX = lib.KG_ADJ_MAX
GROUP_MAX = lib.KG_GROUP_MAX
BUCKET_MAX = lib.KG_BUCKET_MAX
PUNT = {name: i for i, name in enumerate(PUNT_REASONS)}


def fib_conf(routes4: int, tbl8s4: int, routes6: int, tbl8s6: int):
    return ffi.new("struct kg_fib_conf *", {"routes4": routes4, "tbl8s4": tbl8s4,
                                            "routes6": routes6, "tbl8s6": tbl8s6})


def fib_size(routes4: int, tbl8s4: int, routes6: int, tbl8s6: int) -> int:
    """Bytes of EAL memory the tables of these sizes take."""
    return lib.kg_fib_size(fib_conf(routes4, tbl8s4, routes6, tbl8s6))


def fib_create(routes4: int, tbl8s4: int, routes6: int, tbl8s6: int) -> None:
    """Tables without ports (the classifier's unit tests; kg_setup does it
    for a gateway)."""
    err = ffi.new("char[]", lib.KG_ERRLEN)
    rc = lib.kg_fib_create(fib_conf(routes4, tbl8s4, routes6, tbl8s6), err, lib.KG_ERRLEN)
    if rc < 0:
        raise DataplaneError(ffi.string(err).decode() or strerror(rc), -rc)


def route4_add(addr: bytes, plen: int, nh: int) -> None:
    ensure(lib.kg_route4_add(int.from_bytes(addr, sys.byteorder), plen, nh), "IPv4 route")


def route4_del(addr: bytes, plen: int) -> None:
    ensure(lib.kg_route4_del(int.from_bytes(addr, sys.byteorder), plen), "IPv4 route delete")


def route4_commit() -> None:
    """End of a batch of IPv4 edits (the lcores' quiescence, if any edit)."""
    lib.kg_route4_commit()


class Route6Batch:
    """IPv6 edits between kg_route6_begin() and kg_route6_end()."""

    def __enter__(self):
        ensure(lib.kg_route6_begin(), "IPv6 table")
        return self

    def __exit__(self, *exc):
        lib.kg_route6_end()

    @staticmethod
    def add(addr: bytes, plen: int, nh: int) -> None:
        ensure(lib.kg_route6_add(addr, plen, nh), "IPv6 route")

    @staticmethod
    def delete(addr: bytes, plen: int) -> None:
        ensure(lib.kg_route6_del(addr, plen), "IPv6 route delete")


def adj_set(idx: int, port: int, mac: bytes) -> None:
    ensure(lib.kg_adj_set(idx, port, mac), "adjacency")


def adj_clear(idx: int) -> None:
    ensure(lib.kg_adj_clear(idx), "adjacency")


def group_set(slot: int, base: int, adjs: List[int]) -> None:
    ensure(lib.kg_group_set(slot, base, ffi.new("unsigned int[]", adjs), len(adjs)), "group")


def group_punt(slot: int, reason: int) -> None:
    ensure(lib.kg_group_punt(slot, reason), "group")


def fib_forwarding(port: int, ipv4: bool, ipv6: bool) -> None:
    ensure(lib.kg_fib_forwarding(port, int(ipv4), int(ipv6)), "forwarding")


def fib_port(port: int, mac: bytes, mtu: int) -> None:
    ensure(lib.kg_fib_port(port, mac, mtu), "port")


def fib_port_mtu6(port: int, mtu: int) -> None:
    ensure(lib.kg_fib_port_mtu6(port, mtu), "IPv6 MTU")


def fib_memory() -> int:
    return lib.kg_fib_memory()


def dns_publish(udp_port: int, addrs, rrl: int, slip: int, entries, n: int,
                names: bytes, bodies: bytes) -> None:
    """Publish a DNS answer table (kni_gw/dnsfast.py packs it) answering on
    these addresses and port; the previous one is freed once unused."""
    conf = ffi.new("struct kg_dns_conf *")
    conf.udp_port = udp_port
    v4 = [a for a in addrs if ":" not in a][:lib.KG_DNS_ADDRS_MAX]
    v6 = [a for a in addrs if ":" in a][:lib.KG_DNS_ADDRS_MAX]
    for i, a in enumerate(v4):
        # network byte order in memory, whatever the CPU's
        conf.addr4[i] = int.from_bytes(socket.inet_pton(socket.AF_INET, a), sys.byteorder)
    for i, a in enumerate(v6):
        ffi.memmove(conf.addr6[i], socket.inet_pton(socket.AF_INET6, a.split("%")[0]), 16)
    conf.n_addr4, conf.n_addr6 = len(v4), len(v6)
    conf.rrl_rate, conf.rrl_slip = rrl, slip
    err = ffi.new("char[]", lib.KG_ERRLEN)
    rc = lib.kg_dns_publish(conf, entries, n, names, len(names), bodies, len(bodies), err, lib.KG_ERRLEN)
    if rc < 0:
        raise DataplaneError(ffi.string(err).decode() or strerror(rc), -rc)


def dns_unpublish() -> None:
    lib.kg_dns_unpublish()


def dns_memory() -> int:
    return lib.kg_dns_memory()


def fib_sync() -> None:
    lib.kg_sync()


_SCAN_MAX = 4096


def adj_scan() -> Tuple[List[int], List[int], List[int]]:
    """(used, moved, heard) adjacency indexes of the period that ends now."""
    out = ffi.new("unsigned int[]", _SCAN_MAX * lib.KG_STAMPS)
    n = ffi.new("unsigned int[]", lib.KG_STAMPS)
    ensure(lib.kg_adj_scan(out, n, _SCAN_MAX), "neighbour scan")
    return tuple(list(out[k * _SCAN_MAX:k * _SCAN_MAX + n[k]]) for k in range(lib.KG_STAMPS))


@dataclasses.dataclass
class Verdict:
    action: int
    reason: int
    egress: int
    mac: str
    moved: int = 0      # adjacency of the source whose MAC differs from the frame's
    heard: int = 0      # adjacency of the source whose MAC is the frame's
    fast: bool = False  # the rx stage's fast lane forwards it (with this same verdict)

    @property
    def name(self) -> str:
        if self.action == lib.KG_VERDICT_FORWARD:
            return f"forward:{self.egress}"
        if self.action == lib.KG_VERDICT_PUNT:
            return "punt:" + PUNT_REASONS[self.reason]
        return "drop:" + DROP_REASONS[self.reason]


def classify(in_port: int, frame: bytes):
    """The C classifier on one frame, and the frame after the forwarding
    rewrite (unchanged unless the verdict is FORWARD). The rx stage's fast
    lane is asked too: where it forwards, its verdict must be the
    classifier's, field for field (RuntimeError if not)."""
    v = ffi.new("struct kg_verdict *")
    fv = ffi.new("struct kg_verdict *")
    buf = ffi.new("unsigned char[]", frame)
    lib.kg_classify(in_port, buf, len(frame), v)
    fast = lib.kg_classify_fast(in_port, buf, len(frame), fv) == lib.KG_VERDICT_FORWARD
    fields = ("action", "reason", "egress", "adj_idx", "adj", "moved", "heard")
    if fast and any(getattr(v, k) != getattr(fv, k) for k in fields):
        raise RuntimeError("fast lane and classifier disagree: " + ", ".join(
            f"{k} {getattr(fv, k)}/{getattr(v, k)}" for k in fields))
    n = lib.kg_rewrite(buf, len(frame), v)
    mac = ":".join(f"{(v.adj >> (8 * i)) & 0xff:02x}" for i in range(6))
    return Verdict(v.action, v.reason, v.egress, mac, v.moved, v.heard, fast), bytes(ffi.buffer(buf, n))


@dataclasses.dataclass
class PortInfo:
    port: int
    exc_port: int
    mac: str
    mtu: int
    max_mtu: int
    admin_up: bool
    started: bool
    link_up: bool
    link_speed: int
    if_index: int
    driver: str
    hw: Dict[str, int]
    nb_rxq: int = 1
    nb_txq: int = 1
    rx_spread: str = "none"        # none | rss | driver
    tx_fifo_fallback: bool = False


class Dataplane:
    """Owns EAL and the lcores for one gateway run."""

    def __init__(self, cfg: RunConfig, backend: str):
        self.cfg = cfg
        self.backend = backend
        self.mbufs = 0
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[DataplaneError] = None
        self._argv_keep: List[object] = []

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> None:
        global _eal_used
        with _eal_lock:
            if _eal_used:
                raise DataplaneError("EAL can be initialised once per process", errno.EALREADY)
            _eal_used = True
        self._thread = threading.Thread(target=self._main, name="kg-dataplane", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DataplaneError("the dataplane did not start in time", errno.ETIMEDOUT)
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _fail(self, msg: str, code: int) -> None:
        self._error = DataplaneError(msg, code)
        self._ready.set()

    def _main(self) -> None:
        argv = ["kni-gw"] + list(self.cfg.eal_argv)
        cargs = [ffi.new("char[]", a.encode()) for a in argv]
        cargv = ffi.new("char *[]", cargs + [ffi.NULL])
        self._argv_keep = [cargs, cargv]  # EAL may keep pointers into argv
        rc = lib.kg_eal_init(len(argv), cargv)
        if rc < 0:
            self._fail(
                "EAL initialisation failed: " + ffi.string(lib.kg_strerror(rc)).decode()
                + " (EAL's own message is above)", -rc)
            return
        cfg = ffi.new("struct kg_config *")
        cfg.nb_ports = len(self.cfg.ports)
        for i, p in enumerate(self.cfg.ports):
            pc = cfg.port[i]
            pc.port, pc.lcore_tx, pc.lcore_exc = p.port, p.lcore_tx, p.lcore_exc
            pc.nb_rx_lcores = len(p.lcores_rx)
            for j, lc in enumerate(p.lcores_rx):
                pc.lcore_rx[j] = lc
            pc.ifname = p.ifname.encode()
        cfg.backend = BACKEND[self.backend]
        cfg.promisc = int(self.cfg.promisc)
        cfg.rx_desc, cfg.tx_desc = self.cfg.rx_desc, self.cfg.tx_desc
        cfg.fifo_size, cfg.burst = self.cfg.fifo_size, self.cfg.burst
        cfg.idle_sleep_us = 0 if self.cfg.busy_poll else self.cfg.idle_sleep_us
        cfg.mbufs = self.cfg.mbufs
        cfg.mbuf_size = self.cfg.mbuf_size
        t = self.cfg.tables
        cfg.fib.routes4, cfg.fib.tbl8s4 = t.routes4, t.tbl8s4
        cfg.fib.routes6, cfg.fib.tbl8s6 = t.routes6, t.tbl8s6
        for j, cls in enumerate(POLICE_CLASSES):
            pps, burst = self.cfg.police.get(cls, (None, 0))
            cfg.police_pps[j] = lib.KG_POLICE_UNLIMITED if pps is None else pps
            cfg.police_burst[j] = burst
        err = ffi.new("char[]", lib.KG_ERRLEN)
        rc = lib.kg_setup(cfg, err, lib.KG_ERRLEN)
        if rc < 0:
            msg = ffi.string(err).decode() or ffi.string(lib.kg_strerror(rc)).decode()
            self._release()
            self._fail(msg, -rc)
            return
        self.mbufs = cfg.mbufs
        self.mbuf_cache = cfg.mbuf_cache
        self._ready.set()
        lib.kg_run()
        self._release()

    def _release(self) -> None:
        lib.kg_teardown()
        remove_eal_leftovers(self.cfg.file_prefix, self.cfg.eal_opts.get("--huge-dir", [None])[-1])

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop the lcores; the dataplane thread then closes the ports
        (removing vEthN) and releases EAL. True when it has finished."""
        lib.kg_stop()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ control
    def port_admin(self, port: int, up: bool) -> None:
        ensure(lib.kg_port_admin(port, int(up)), f"port {port}: {'start' if up else 'stop'}")

    def set_mtu(self, port: int, mtu: int) -> None:
        """The MTU on port and vEthN's device, or DataplaneError saying
        which limit refuses it (control/mtu.c); nothing changed then."""
        err = ffi.new("char[]", lib.KG_ERRLEN)
        rc = lib.kg_port_set_mtu(port, mtu, err, lib.KG_ERRLEN)
        if rc < 0:
            raise DataplaneError(ffi.string(err).decode() or strerror(rc), -rc)

    def set_mac(self, port: int, mac: str) -> None:
        raw = bytes(int(x, 16) for x in mac.split(":"))
        ensure(lib.kg_port_set_mac(port, raw), f"port {port}: MAC {mac}")

    def set_promisc(self, port: int, on: bool) -> None:
        ensure(lib.kg_port_promisc(port, int(on)), f"port {port}: promiscuous {'on' if on else 'off'}")

    def set_allmulti(self, port: int, on: bool) -> None:
        ensure(lib.kg_port_allmulti(port, int(on)), f"port {port}: all-multicast {'on' if on else 'off'}")

    def port_info(self, port: int) -> PortInfo:
        out = ffi.new("struct kg_port_info *")
        ensure(lib.kg_port_info(port, out), f"port {port}")
        return PortInfo(
            port=out.port_id, exc_port=out.exc_port_id,
            mac=":".join(f"{b:02x}" for b in bytes(out.mac)),
            mtu=out.mtu, max_mtu=out.max_mtu, admin_up=bool(out.admin_up), started=bool(out.started),
            link_up=bool(out.link_up), link_speed=out.link_speed, if_index=out.if_index,
            driver=ffi.string(out.driver).decode(),
            hw={k: getattr(out, k) for k in (
                "hw_ipackets", "hw_imissed", "hw_ierrors", "hw_rx_nombuf", "hw_opackets",
                "hw_oerrors", "exc_ipackets", "exc_opackets", "exc_oerrors",
                "to_kernel_fifo_used", "tx_fifo_used")},
            nb_rxq=out.nb_rxq, nb_txq=out.nb_txq,
            rx_spread={lib.KG_SPREAD_RSS: "rss", lib.KG_SPREAD_DRIVER: "driver"}.get(out.rx_spread, "none"),
            tx_fifo_fallback=bool(out.tx_fifo_fallback),
        )

    def counters(self) -> List[Dict[str, int]]:
        """Per configured port: the lcore counters summed, drops by reason."""
        n = len(self.cfg.ports)
        out = ffi.new("struct kg_port_counters[]", n)
        got = lib.kg_stats_read(out, n)
        res = []
        for i in range(got):
            c = out[i]
            d = {k: int(getattr(c, k)) for k in COUNTERS}
            d["drops"] = {r: int(c.drops[j]) for j, r in enumerate(DROP_REASONS)}
            d["punts"] = {r: int(c.punts[j]) for j, r in enumerate(PUNT_REASONS)}
            d["policed"] = {r: int(c.policed[j]) for j, r in enumerate(POLICE_CLASSES)}
            res.append(d)
        return res

    def fib_memory(self) -> int:
        return lib.kg_fib_memory()

    @staticmethod
    def fib4_avx512() -> bool:
        return bool(lib.kg_fib4_avx512())

    dns_publish = staticmethod(dns_publish)
    dns_unpublish = staticmethod(dns_unpublish)
    dns_memory = staticmethod(dns_memory)

    def lcore_counters(self) -> Dict[int, Dict[str, int]]:
        """Per lcore with a role: its own counters summed over the ports."""
        n = len(self.cfg.ports)
        out = ffi.new("struct kg_port_counters[]", n)
        lcores = sorted(set().union(*(p.lcores for p in self.cfg.ports)))
        res = {}
        for lc in lcores:
            got = lib.kg_stats_read_lcore(lc, out, n)
            if got < 0:
                continue
            d = {k: sum(int(getattr(out[i], k)) for i in range(got)) for k in COUNTERS}
            d["dropped"] = sum(int(out[i].drops[j]) for i in range(got) for j in range(lib.KG_DROP_MAX))
            res[lc] = d
        return res

    def mbufs_in_use(self) -> int:
        return lib.kg_mbufs_in_use()

    def mbufs_total(self) -> int:
        return lib.kg_mbufs_total()

    def mbufs_withheld(self) -> int:
        return lib.kg_mbufs_withheld()

    def mbuf_pool_ops(self) -> str:
        return ffi.string(lib.kg_mbuf_pool_ops()).decode()
