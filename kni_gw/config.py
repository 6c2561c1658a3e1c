"""Command line of a gateway run: EAL/application split, --config, portmask
and lcore validation, and host preflight checks.

Two forms are accepted, as DPDK's KNI sample users expect:

  kni-gw -l 0-1 -p 0x1 --config "(0,0,1)"                       (flat)
  kni-gw -l 0-1 -- -p 0x1 --config="(0,0,1)" -P -m              (sample form)

In the sample form everything before ``--`` goes to EAL untouched and EAL's
``-m`` is memory in MB; after it ``-m`` is --monitor-link. In the flat form
``-m`` followed by a number is EAL's memory size and a bare ``-m`` is
--monitor-link (write ``--monitor-link`` to be unambiguous).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import Dict, List, Optional, Sequence, Set, Tuple

from .errors import ConfigError

MAX_PORTS = 16
IFNAMSIZ = 16
DEFAULT_FILE_PREFIX = "kni-gw"
HUGEPAGE_HINT = "reserve some with: sudo scripts/setup_hugepages.sh 512M (or run with --no-huge)"

# EAL options (DPDK 22.11) that take a value, and those that do not.
EAL_WITH_VALUE = {
    "-l", "-c", "-n", "-r", "-a", "-b", "-d", "-s", "-S", "-m",
    "--lcores", "--allow", "--block", "--pci-whitelist", "--pci-blacklist",
    "--vdev", "--socket-mem", "--socket-limit", "--file-prefix", "--huge-dir",
    "--iova-mode", "--log-level", "--proc-type", "--main-lcore",
    "--service-lcore", "--service-corelist", "--base-virtaddr",
    "--mbuf-pool-ops-name", "--trace", "--trace-dir", "--trace-bufsz",
    "--trace-mode", "--vfio-intr", "--vfio-vf-token",
    "--force-max-simd-bitwidth",
}
EAL_FLAGS = {
    "--no-huge", "--no-pci", "--no-hpet", "--no-shconf", "--in-memory",
    "--legacy-mem", "--single-file-segments", "--match-allocations",
    "--create-uio-dev", "--no-telemetry", "--telemetry", "-v",
    "--vmware-tsc-map", "--huge-unlink", "--syslog",
}
# short EAL options whose value may be glued on: -l0-1, -c0x3
EAL_SHORT_GLUED = {"-l", "-c", "-n", "-r", "-a", "-b", "-d", "-s", "-S"}

APP_WITH_VALUE = {
    "-p", "--portmask", "--config", "--exception", "--idle-sleep",
    "--fifo-size", "--rx-desc", "--tx-desc", "--burst", "--mbufs", "--mbuf-size",
    "--stats-format", "--dns-zone", "--dns-port", "--dns-listen", "--dns-forward", "--police", "--metrics",
    "--dns-allow", "--dns-fast", "--dns-rrl", "--dns-rrl-slip",
    "--max-routes",
}
APP_REPEATABLE = {"dns_zone", "dns_listen", "dns_allow", "police"}

# The DNS answers given in C: at most this many a second to one client /24
# (IPv4) or /56 (IPv6), every 2nd one over it truncated, the others dropped
# (NSD's rrl-ratelimit and rrl-slip defaults).
DNS_RRL, DNS_RRL_SLIP = 200, 2

# Control-plane policing defaults, per port: class -> (frames/s, burst).
# frames/s None: not policed; 0: every frame of the class dropped. "transit"
# is traffic the kernel forwards (routes the fast path does not take, IP
# options, MTU, forwarding off): limited so that a flood of it cannot
# swamp the fifo that ARP, ND and routing protocols share with it; raise it
# (or --police transit=off) where the kernel forwards real traffic.
POLICE_DEFAULTS: Dict[str, Tuple[Optional[int], int]] = {
    "arp": (20_000, 1024), "nd": (20_000, 1024), "icmp": (20_000, 1024),
    "dns": (300_000, 4096), "local": (50_000, 2048), "resolve": (20_000, 1024),
    "error": (10_000, 512), "multicast": (10_000, 512), "transit": (10_000, 512), "other": (10_000, 512),
    "routing": (20_000, 1024),
}


def parse_police(items: Sequence[str]) -> Dict[str, Tuple[Optional[int], int]]:
    """--police CLASS=PPS[:BURST] | CLASS=off | CLASS=0 (repeatable), --police off.

    CLASS=off: that class is not policed; CLASS=0: every frame of it is
    dropped (a rate of zero); --police off: no class is policed."""
    out = dict(POLICE_DEFAULTS)
    for item in items:
        if item == "off":
            out = {k: (None, 0) for k in out}
            continue
        m = re.fullmatch(r"([a-z]+)=(?:(off)|(\d+)(?::(\d+))?)", item)
        if not m or m.group(1) not in out:
            raise ConfigError(f"--police {item!r}: CLASS=PPS[:BURST], CLASS=off or CLASS=0 with CLASS one of "
                              f"{', '.join(POLICE_DEFAULTS)}, or --police off")
        if m.group(2):
            out[m.group(1)] = (None, 0)
            continue
        pps = int(m.group(3))
        if pps == 0 and m.group(4):
            raise ConfigError(f"--police {item}: a rate of 0 drops every frame of {m.group(1)}; "
                              f"it takes no burst")
        burst = int(m.group(4)) if m.group(4) else max(1, min(pps // 20, 4096))
        if pps > 100_000_000 or burst > 1_000_000:
            raise ConfigError(f"--police {item}: at most 100000000 frames/s and a burst of 1000000")
        out[m.group(1)] = (pps, 0 if pps == 0 else burst)
    return out


APP_FLAGS = {"-P", "--promisc", "--monitor-link", "--busy-poll", "-h", "--help"}

MiB = 1 << 20
# The route tables take EAL memory: rte_fib and rte_lpm6 each have a fixed
# 64 MiB first level, then a tree (rte_fib: ~420 B a route) or second-level
# groups that grow with the routes asked for. Without --max-routes, the
# largest of these that fits in the memory EAL will have, after the mbufs,
# is taken (IPv4 routes, IPv6 routes): a full table (1M + 256k: ~910 MiB)
# is asked for with --max-routes, so that a default start never takes every
# free hugepage.
TABLE_LADDER = ((1 << 18, 1 << 14), (1 << 16, 1 << 14), (1 << 14, 1 << 12))
NO_HUGE_DEFAULT = (1 << 18, 1 << 14)    # --no-huge without -m: EAL is given what this needs
EAL_MARGIN = 64 * MiB                    # EAL's own, rings, devices, TAP queues and GSO pools
MBUF_SIZE = 2176                         # an mbuf's data room, headroom included (DPDK's default)


def mbuf_bytes(mbuf_size: int = MBUF_SIZE) -> int:
    """Memory an mbuf takes: mempool header + struct rte_mbuf + data room,
    a whole number of cache lines."""
    return -(-(64 + 128 + mbuf_size) // 64) * 64



@dataclasses.dataclass(frozen=True)
class TableSizes:
    routes4: int
    routes6: int

    @property
    def tbl8s4(self) -> int:
        # one group per /24 holding longer prefixes (neighbour host routes,
        # /25-/32 routes): rare in a BGP table
        return min(max(self.routes4 // 64, 256), 1 << 16)

    @property
    def tbl8s6(self) -> int:
        # a prefix longer than /24 needs a group per 8 bits below /24 that
        # it does not share: about one per route in a real table (a /48 in
        # a /40 of its own under a shared /32 takes 1 to 2)
        return min(max(self.routes6 * 5 // 4, 1024), 1 << 21)

    def describe(self) -> str:
        return f"{self.routes4} IPv4 + {self.routes6} IPv6 routes"


def parse_max_routes(text: str) -> TableSizes:
    """--max-routes V4[,V6]: routes each table holds (V6 = V4 / 4 if not given)."""
    parts = text.split(",")
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"--max-routes {text!r}: IPV4[,IPV6], e.g. 1048576,262144")
    v4 = parse_int(parts[0], "--max-routes")
    v6 = parse_int(parts[1], "--max-routes") if len(parts) == 2 else max(v4 // 4, 1024)
    for v in (v4, v6):
        if not 1024 <= v <= 1 << 24:
            raise ConfigError(f"--max-routes {text}: each count from 1024 to {1 << 24}")
    return TableSizes(v4, v6)


def mbuf_pool_bytes(cfg: "RunConfig") -> int:
    """What the dataplane's mbuf pool will take (csrc/control/eal.c pool_size)."""
    if cfg.mbufs:
        n = cfg.mbufs
    else:
        lcores = set().union(*(p.lcores for p in cfg.ports))
        forwarding = set().union(*(p.lcores_rx for p in cfg.ports))
        # per port: its rx queues (one per rx lcore) and at most one tx queue
        # per forwarding lcore besides its tx lcore's, the vEth queues, fifos
        need = sum((len(p.lcores_rx) + 1) * cfg.rx_desc + (len(forwarding - {p.lcore_tx}) + 2) * cfg.tx_desc
                   + 3 * cfg.fifo_size + 4 * cfg.burst for p in cfg.ports)
        n = need + (len(lcores) + 1) * 256 * 3 // 2
    return n * mbuf_bytes(cfg.mbuf_size)

BACKENDS = ("auto", "tap", "virtio-user")


@dataclasses.dataclass(frozen=True)
class PortConf:
    port: int
    lcores_rx: Tuple[int, ...]     # one rx queue each, flows spread by RSS
    lcore_tx: int
    lcore_exc: int
    exc_given: bool = False

    @property
    def lcore_rx(self) -> int:
        return self.lcores_rx[0]

    @property
    def rx_text(self) -> str:
        """The rx lcores as --config spells them: 0, or 0+2."""
        return "+".join(str(lc) for lc in self.lcores_rx)

    @property
    def lcores(self) -> Set[int]:
        return set(self.lcores_rx) | {self.lcore_tx, self.lcore_exc}

    @property
    def ifname(self) -> str:
        return veth_name(self.port)


@dataclasses.dataclass
class RunConfig:
    eal_argv: List[str]
    ports: List[PortConf]
    portmask: int
    promisc: bool = False
    monitor_link: bool = False
    backend: str = "auto"
    busy_poll: bool = False
    idle_sleep_us: int = 1000
    fifo_size: int = 1024
    rx_desc: int = 1024
    tx_desc: int = 1024
    burst: int = 32
    mbufs: int = 0
    mbuf_size: int = MBUF_SIZE
    stats_format: str = "table"
    log_level: Optional[str] = None
    dns_zones: List[str] = dataclasses.field(default_factory=list)
    dns_port: int = 53
    dns_listen: List[str] = dataclasses.field(default_factory=list)
    dns_forward: Optional[str] = None
    dns_allow: List[str] = dataclasses.field(default_factory=list)
    dns_fast: bool = True           # answer from the C table on the rx lcores (kni_gw/dnsfast.py)
    dns_rrl: int = DNS_RRL          # answers/s per client /24 or /56 in C; 0: no limit
    dns_rrl_slip: int = DNS_RRL_SLIP
    police: Dict[str, Tuple[Optional[int], int]] = dataclasses.field(
        default_factory=lambda: dict(POLICE_DEFAULTS))
    metrics: Optional[str] = None
    max_routes: Optional[TableSizes] = None   # --max-routes; None: sized at preflight
    tables: TableSizes = TableSizes(*TABLE_LADDER[-1])   # what the run uses (preflight)
    memory_note: str = ""                      # how the tables were sized, logged at start
    vdev_notes: List[str] = dataclasses.field(default_factory=list)   # defaults given to vdevs, logged

    @property
    def eal_opts(self) -> Dict[str, List[str]]:
        return eal_options(self.eal_argv)

    @property
    def file_prefix(self) -> str:
        vals = self.eal_opts.get("--file-prefix")
        return vals[-1] if vals else DEFAULT_FILE_PREFIX

    @property
    def no_huge(self) -> bool:
        return "--no-huge" in self.eal_opts


def veth_name(port: int) -> str:
    return f"vEth{port}"


# ---------------------------------------------------------------- numbers

def parse_int(text: str, what: str) -> int:
    """A decimal or 0x-hex integer, as the KNI sample accepts."""
    t = text.strip()
    try:
        if t.lower().startswith("0x"):
            return int(t, 16)
        if t.isdigit():
            return int(t, 10)
    except ValueError:
        pass
    raise ConfigError(f"{what}: {text!r} is not a number (decimal or 0x hex)")


def parse_portmask(text: str) -> int:
    t = text.strip()
    if not re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", t):
        raise ConfigError(f"-p {text!r}: the portmask is a hex number such as 0x3")
    mask = int(t, 16)
    if mask == 0:
        raise ConfigError("-p 0x0: the portmask selects no port; give e.g. -p 0x1")
    if mask >> MAX_PORTS:
        raise ConfigError(f"-p {text}: at most {MAX_PORTS} ports (0 to {MAX_PORTS - 1})")
    return mask


_TUPLE = re.compile(r"\(([^()]*)\)")


RX_LCORES_MAX = 8      # csrc/kni_gw.h KG_RX_LCORES
CONFIG_FORM = "(port,lcore_rx,lcore_tx[,lcore_exception])"


def parse_rx_lcores(text: str, where: str) -> Tuple[int, ...]:
    """The rx field of a --config tuple: one lcore (``0``, the KNI sample's
    form), or several joined with ``+`` and/or given as ranges (``0+2``,
    ``0-3``): the port then gets one rx queue per lcore, flows spread by RSS."""
    out: List[int] = []
    for part in text.split("+"):
        lo, dash, hi = part.partition("-")
        if not lo.strip() or (dash and not hi.strip()):
            raise ConfigError(f"--config {where}: rx lcores {text.strip()!r}: one lcore (0), "
                              f"or several joined with + or as a range (0+2, 0-3)")
        a = parse_int(lo.strip(), f"--config {where}")
        b = parse_int(hi.strip(), f"--config {where}") if dash else a
        if b < a:
            raise ConfigError(f"--config {where}: rx lcore range {part.strip()} goes backwards")
        for lc in range(a, b + 1):
            if lc in out:
                raise ConfigError(f"--config {where}: rx lcore {lc} is listed twice")
            out.append(lc)
    if len(out) > RX_LCORES_MAX:
        raise ConfigError(f"--config {where}: at most {RX_LCORES_MAX} rx lcores per port")
    return tuple(out)


def parse_config(text: str) -> List[PortConf]:
    """``(port,lcore_rx,lcore_tx[,lcore_exception])``, comma-separated
    tuples; lcore_rx may list several lcores (``0+2``, ``0-3``)."""
    example = 'e.g. --config "(0,0,1)" or "(0,0,1),(1,0,1)"'
    s = text.strip()
    if not s:
        raise ConfigError(f"--config is empty; {example}")
    rest = _TUPLE.sub("", s)
    if rest.replace(",", "").strip():
        raise ConfigError(f"--config {text!r} is malformed near {rest.strip()!r}; {example}")
    if not re.fullmatch(r"\s*\([^()]*\)(\s*,\s*\([^()]*\))*\s*", s):
        raise ConfigError(f"--config {text!r} is malformed; {example}")
    out: List[PortConf] = []
    seen: Set[int] = set()
    for m in _TUPLE.finditer(s):
        fields = [f.strip() for f in m.group(1).split(",")]
        if len(fields) < 3:
            raise ConfigError(
                f"--config tuple ({m.group(1)}) has {len(fields)} field(s); "
                f"it is {CONFIG_FORM}")
        if len(fields) > 4:
            raise ConfigError(
                f"--config tuple ({m.group(1)}): kni-gw takes one exception lcore per "
                f"port, so at most 4 fields {CONFIG_FORM}")
        where = f"({m.group(1)})"
        port = parse_int(fields[0], f"--config {where}")
        rx = parse_rx_lcores(fields[1], where)
        tx = parse_int(fields[2], f"--config {where}")
        exc = parse_int(fields[3], f"--config {where}") if len(fields) == 4 else tx
        if port >= MAX_PORTS:
            raise ConfigError(f"--config: port {port} is out of range (0 to {MAX_PORTS - 1})")
        if port in seen:
            raise ConfigError(f"--config: port {port} is listed twice; give each port one tuple "
                              f"(several rx lcores go in its second field, e.g. ({port},0+2,1))")
        seen.add(port)
        if rx == (tx,):
            raise ConfigError(
                f"--config ({m.group(1)}): rx and tx of port {port} are both on lcore {tx}; "
                f"kni-gw runs a port's rx and tx on separate lcores, e.g. ({port},0,1)")
        out.append(PortConf(port, rx, tx, exc, exc_given=len(fields) == 4))
    return out


def parse_lcore_list(text: str) -> Set[int]:
    """EAL -l syntax: ``0-3,5,7-8``."""
    out: Set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"-l {text!r}: an lcore list looks like 0-3,5")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ConfigError(f"-l {text!r}: range {part} goes backwards")
        out.update(range(lo, hi + 1))
    return out


def parse_coremask(text: str) -> Set[int]:
    t = text.strip()
    if not re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", t):
        raise ConfigError(f"-c {text!r}: a coremask is a hex number such as 0x3")
    mask = int(t, 16)
    return {i for i in range(mask.bit_length()) if mask >> i & 1}


def parse_lcores_option(text: str) -> Optional[Set[int]]:
    """EAL --lcores: ``0-3``, ``(0-2)@1``, ``4@5,6``. The lcore ids are what
    stands before each '@'. Returns None where the form is not understood,
    leaving the check to EAL and the dataplane."""
    out: Set[int] = set()
    for item in re.findall(r"\([^)]*\)(?:@\S*?)?(?=,|$)|[^,]+", text):
        ids = item.split("@", 1)[0].strip("()")
        try:
            out |= parse_lcore_list(ids)
        except ConfigError:
            return None
    return out or None


def enabled_lcores(eal: Dict[str, List[str]], ncpus: int) -> Optional[Set[int]]:
    if "-l" in eal:
        return parse_lcore_list(eal["-l"][-1])
    if "-c" in eal:
        return parse_coremask(eal["-c"][-1])
    if "--lcores" in eal:
        return parse_lcores_option(eal["--lcores"][-1])
    return set(range(ncpus))


# ---------------------------------------------------------------- argv

def _split_eq(tok: str) -> Tuple[str, Optional[str]]:
    if tok.startswith("--") and "=" in tok:
        k, v = tok.split("=", 1)
        return k, v
    return tok, None


def _is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"\d+", tok))


def eal_options(eal_argv: Sequence[str]) -> Dict[str, List[str]]:
    """Options in an EAL argv as {option: [values]} (flags map to [''])."""
    out: Dict[str, List[str]] = {}
    i = 0
    while i < len(eal_argv):
        tok = eal_argv[i]
        key, val = _split_eq(tok)
        if val is None and len(tok) > 2 and tok[:2] in EAL_SHORT_GLUED and not tok.startswith("--"):
            key, val = tok[:2], tok[2:]
        if val is None and key in EAL_WITH_VALUE and i + 1 < len(eal_argv):
            val = eal_argv[i + 1]
            i += 1
        out.setdefault(key, []).append(val if val is not None else "")
        i += 1
    return out


def split_argv(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split a command line into (EAL argv, application argv)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        eal, app = argv[:i], argv[i + 1:]
        if "--" in app:
            raise ConfigError("'--' given twice; EAL options go before it, kni-gw's after it")
        return eal, app
    eal: List[str] = []
    app: List[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        key, val = _split_eq(tok)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if key == "-m":
            if nxt is not None and _is_number(nxt):
                eal += [tok, nxt]          # EAL memory, MB
                i += 2
            else:
                app.append("--monitor-link")
                i += 1
            continue
        if key in APP_FLAGS:
            app.append(tok)
        elif key in APP_WITH_VALUE or (tok[:2] == "-p" and len(tok) > 2 and not tok.startswith("--")):
            if val is None and key in APP_WITH_VALUE:
                if nxt is None:
                    raise ConfigError(f"{key} needs a value")
                app += [tok, nxt]
                i += 1
            else:
                app.append(tok)
        elif key in EAL_FLAGS:
            eal.append(tok)
        elif key in EAL_WITH_VALUE:
            if val is None:
                if nxt is None:
                    raise ConfigError(f"{key} needs a value")
                eal += [tok, nxt]
                i += 1
            else:
                eal.append(tok)
        elif len(tok) > 2 and tok[:2] in EAL_SHORT_GLUED and not tok.startswith("--"):
            eal.append(tok)
        else:
            raise ConfigError(
                f"unknown option {tok!r}; EAL options go before '--' and "
                f"kni-gw's after it, see kni-gw --help")
        i += 1
    return eal, app


def parse_app(app: Sequence[str]) -> Dict[str, object]:
    opts: Dict[str, object] = {}
    i = 0
    app = list(app)
    while i < len(app):
        tok = app[i]
        key, val = _split_eq(tok)
        if key.startswith("-p") and not key.startswith("--") and len(key) > 2:
            key, val = "-p", key[2:]
        if key in ("-h", "--help"):
            opts["help"] = True
        elif key in ("-P", "--promisc"):
            opts["promisc"] = True
        elif key in ("-m", "--monitor-link"):
            opts["monitor_link"] = True
        elif key == "--busy-poll":
            opts["busy_poll"] = True
        elif key in APP_WITH_VALUE:
            if val is None:
                if i + 1 >= len(app):
                    raise ConfigError(f"{key} needs a value")
                val = app[i + 1]
                i += 1
            name = {"-p": "portmask", "--portmask": "portmask"}.get(key, key.lstrip("-").replace("-", "_"))
            if name in APP_REPEATABLE:
                opts.setdefault(name, []).append(val)
            else:
                opts[name] = val
        else:
            raise ConfigError(f"unknown kni-gw option {tok!r}; see kni-gw --help")
        i += 1
    return opts


def _bounded(opts: Dict[str, object], name: str, default: int, lo: int, hi: int,
             pow2: bool = False) -> int:
    if name not in opts:
        return default
    flag = "--" + name.replace("_", "-")
    v = parse_int(str(opts[name]), flag)
    if not lo <= v <= hi:
        raise ConfigError(f"{flag} {v} is out of range ({lo} to {hi})")
    if pow2 and v & (v - 1):
        raise ConfigError(f"{flag} {v} must be a power of two, e.g. 1024")
    return v


def build_config(argv: Sequence[str], ncpus: Optional[int] = None) -> RunConfig:
    """Parse and check a gateway command line; no host state is read except
    the CPU count (for EAL's default lcore set)."""
    eal, app = split_argv(argv)
    opts = parse_app(app)
    if opts.get("help"):
        raise HelpRequested()
    if "portmask" not in opts:
        raise ConfigError('-p PORTMASK is required, e.g. -p 0x1 --config "(0,0,1)"')
    if "config" not in opts:
        raise ConfigError('--config is required, e.g. --config "(0,0,1)" (port,lcore_rx,lcore_tx)')
    mask = parse_portmask(str(opts["portmask"]))
    ports = parse_config(str(opts["config"]))
    mask_ports = {i for i in range(MAX_PORTS) if mask >> i & 1}
    conf_ports = {p.port for p in ports}
    if mask_ports != conf_ports:
        raise ConfigError(
            f"-p {opts['portmask']} selects port(s) {sorted(mask_ports)} but --config "
            f"describes port(s) {sorted(conf_ports)}; give each selected port one tuple")

    eal_opts = eal_options(eal)
    if ncpus is None:
        ncpus = len(os.sched_getaffinity(0))
    lcores = enabled_lcores(eal_opts, ncpus)
    if lcores is not None:
        src = "-l" if "-l" in eal_opts else "-c" if "-c" in eal_opts else \
            "--lcores" if "--lcores" in eal_opts else "the CPUs available"
        for p in ports:
            for role, lc in [("rx", lc) for lc in p.lcores_rx] + [("tx", p.lcore_tx), ("exception", p.lcore_exc)]:
                if lc not in lcores:
                    raise ConfigError(
                        f"port {p.port}: {role} lcore {lc} is not enabled by {src} "
                        f"(enabled: {fmt_lcores(lcores)}); add it, e.g. -l {fmt_lcores(lcores | {lc})}")

    backend = str(opts.get("exception", "auto"))
    if backend not in BACKENDS:
        raise ConfigError(f"--exception {backend!r}: choose one of {', '.join(BACKENDS)}")
    fmt = str(opts.get("stats_format", "table"))
    if fmt not in ("table", "json"):
        raise ConfigError(f"--stats-format {fmt!r}: choose table or json")

    dns_forward = None
    if "dns_forward" in opts:
        dns_forward = str(opts["dns_forward"])
        if not re.fullmatch(r"[0-9.]+(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?|[0-9a-fA-F:]+", dns_forward):
            raise ConfigError(f"--dns-forward {dns_forward!r}: an address, e.g. 192.0.2.53 or [2001:db8::53]:5353")
    if (opts.get("dns_listen") or "dns_forward" in opts or "dns_port" in opts or opts.get("dns_allow")
            or "dns_fast" in opts or "dns_rrl" in opts or "dns_rrl_slip" in opts) and not opts.get("dns_zone"):
        raise ConfigError("--dns-listen/--dns-port/--dns-forward/--dns-allow/--dns-fast/--dns-rrl "
                          "need --dns-zone FILE")
    dns_fast = str(opts.get("dns_fast", "on"))
    if dns_fast not in ("on", "off"):
        raise ConfigError(f"--dns-fast {dns_fast!r}: choose on or off")
    dns_allow = [str(a) for a in opts.get("dns_allow", [])]
    if dns_allow and dns_forward is None:
        raise ConfigError("--dns-allow only matters with --dns-forward (it widens who may use it)")
    for a in dns_allow:
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            raise ConfigError(f"--dns-allow {a!r}: a prefix, e.g. 192.0.2.0/24 or 2001:db8::/32") from None
    for z in opts.get("dns_zone", []):
        if not os.path.isfile(z):
            raise ConfigError(f"--dns-zone {z}: no such file")
    for a in opts.get("dns_listen", []):
        host = a[1:-1] if a.startswith("[") and a.endswith("]") else a
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"--dns-listen {a!r}: not an IP address (e.g. 192.0.2.53 or 2001:db8::53; "
                              f"the port is --dns-port)") from None
    metrics = None
    if "metrics" in opts:
        from .control import parse_metrics_addr
        try:
            parse_metrics_addr(str(opts["metrics"]))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        metrics = str(opts["metrics"])
    if "--file-prefix" not in eal_opts:
        eal = eal + ["--file-prefix", DEFAULT_FILE_PREFIX]
    if "--log-level" not in eal_opts:
        # EAL's start-up INFO lines drown kni-gw's own; --log-level=info shows them
        eal = eal + ["--log-level", "notice"]
    log_level = None
    if "--log-level" in eal_opts:
        lv = eal_opts["--log-level"][-1]
        if re.fullmatch(r"[a-z]+", lv):
            log_level = lv
    return RunConfig(
        eal_argv=eal,
        ports=ports,
        portmask=mask,
        promisc=bool(opts.get("promisc")),
        monitor_link=bool(opts.get("monitor_link")),
        backend=backend,
        busy_poll=bool(opts.get("busy_poll")),
        idle_sleep_us=_bounded(opts, "idle_sleep", 1000, 1, 100_000),
        fifo_size=_bounded(opts, "fifo_size", 1024, 64, 65536, pow2=True),
        rx_desc=_bounded(opts, "rx_desc", 1024, 64, 16384),
        tx_desc=_bounded(opts, "tx_desc", 1024, 64, 16384),
        burst=_bounded(opts, "burst", 32, 1, 64),
        mbufs=_bounded(opts, "mbufs", 0, 0, 16_777_215),
        mbuf_size=_bounded(opts, "mbuf_size", MBUF_SIZE, 512, 65535),
        stats_format=fmt,
        log_level=log_level,
        dns_zones=list(opts.get("dns_zone", [])),
        dns_port=_bounded(opts, "dns_port", 53, 1, 65535),
        dns_listen=list(opts.get("dns_listen", [])),
        dns_forward=dns_forward,
        dns_allow=dns_allow,
        dns_fast=dns_fast == "on",
        dns_rrl=_bounded(opts, "dns_rrl", DNS_RRL, 0, 10_000_000),
        dns_rrl_slip=_bounded(opts, "dns_rrl_slip", DNS_RRL_SLIP, 0, 100),
        police=parse_police(opts.get("police", [])),
        metrics=metrics,
        max_routes=parse_max_routes(str(opts["max_routes"])) if "max_routes" in opts else None,
    )


def fmt_lcores(lcores: Set[int]) -> str:
    s = sorted(lcores)
    parts = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        parts.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(parts)


class HelpRequested(Exception):
    """--help was given among the gateway options."""


# ---------------------------------------------------------------- host

@dataclasses.dataclass
class HostFacts:
    """What the preflight checks read from the host, gathered in one place."""
    euid: int
    hugepages_free: int
    hugetlbfs_mounted: bool
    has_tun: bool
    has_vhost_net: bool
    taken_ifnames: Set[str]
    hugepages_free_bytes: int = 0

    @classmethod
    def read(cls, ifnames: Sequence[str] = ()) -> "HostFacts":
        return cls(
            euid=os.geteuid(),
            hugepages_free=hugepages_free(),
            hugepages_free_bytes=hugepages_free_bytes(),
            hugetlbfs_mounted=hugetlbfs_mounted(),
            has_tun=os.path.exists("/dev/net/tun"),
            has_vhost_net=os.path.exists("/dev/vhost-net"),
            taken_ifnames={n for n in ifnames if os.path.exists(f"/sys/class/net/{n}")},
        )


def hugepages_free(sysfs: str = "/sys/kernel/mm/hugepages") -> int:
    total = 0
    try:
        for d in os.listdir(sysfs):
            with open(os.path.join(sysfs, d, "free_hugepages")) as f:
                total += int(f.read())
    except OSError:
        return 0
    return total


def hugepages_free_bytes(sysfs: str = "/sys/kernel/mm/hugepages") -> int:
    total = 0
    try:
        for d in os.listdir(sysfs):      # hugepages-2048kB
            m = re.fullmatch(r"hugepages-(\d+)kB", d)
            if m:
                with open(os.path.join(sysfs, d, "free_hugepages")) as f:
                    total += int(f.read()) * int(m.group(1)) * 1024
    except OSError:
        return 0
    return total


def eal_memory(cfg: "RunConfig", host: "HostFacts") -> Optional[int]:
    """Bytes EAL will have: -m / --socket-mem, else the free hugepages;
    None with --no-huge and no -m (kni-gw then chooses)."""
    eal = cfg.eal_opts
    if "-m" in eal and eal["-m"][-1].isdigit():
        return int(eal["-m"][-1]) * MiB
    if "--socket-mem" in eal:
        try:
            return sum(int(x or 0) for x in eal["--socket-mem"][-1].split(",")) * MiB
        except ValueError:
            return None
    if cfg.no_huge:
        return None
    return host.hugepages_free_bytes or host.hugepages_free * 2 * MiB


def size_tables(cfg: "RunConfig", host: "HostFacts") -> None:
    """Choose the route tables' sizes (cfg.tables) for the memory EAL will
    have, and with --no-huge but no -m give EAL what they need (-m). Refuses
    a --max-routes that cannot fit."""
    from .dataplane import fib_size
    mem = eal_memory(cfg, host)
    pool = mbuf_pool_bytes(cfg)

    def need(t: TableSizes) -> int:
        return fib_size(t.routes4, t.tbl8s4, t.routes6, t.tbl8s6)

    if mem is None:
        t = cfg.max_routes or TableSizes(*NO_HUGE_DEFAULT)
        mb = -(-(need(t) + pool + EAL_MARGIN) // MiB)
        cfg.eal_argv = cfg.eal_argv + ["-m", str(mb)]
        cfg.tables = t
        cfg.memory_note = (f"--no-huge without -m: EAL gets -m {mb} (route tables {need(t) // MiB} MiB "
                           f"for {t.describe()}, mbufs {pool // MiB} MiB)")
        return
    budget = mem - pool - EAL_MARGIN
    if cfg.max_routes is not None:
        t = cfg.max_routes
        if need(t) > budget:
            raise ConfigError(
                f"--max-routes {t.routes4},{t.routes6}: the route tables need {need(t) // MiB} MiB and "
                f"EAL has {mem // MiB} MiB ({pool // MiB} MiB go to mbufs); lower --max-routes or give "
                f"EAL more memory (-m, hugepages)")
        cfg.tables = t
        cfg.memory_note = f"route tables {need(t) // MiB} MiB for {t.describe()} (--max-routes)"
        return
    for r4, r6 in TABLE_LADDER:
        t = TableSizes(r4, r6)
        if need(t) <= budget:
            cfg.tables = t
            cfg.memory_note = (f"route tables {need(t) // MiB} MiB for {t.describe()} "
                               f"(sized to EAL's {mem // MiB} MiB; --max-routes to change)")
            return
    t = TableSizes(*TABLE_LADDER[-1])
    raise ConfigError(
        f"EAL has {mem // MiB} MiB: too little for the route tables ({need(t) // MiB} MiB at least) "
        f"and {pool // MiB} MiB of mbufs; give EAL more memory (-m MB, or more hugepages)")


# net_af_packet's kernel ring, per queue and direction, where the user gave
# no framecnt. DPDK's 512 frames (1 MiB) overflow whenever the rx lcore loses
# its CPU for about a millisecond under line-rate TCP (bench/bench_tcp.py:
# 31-59k frames lost a run, 4-6x Linux forwarding's retransmits; with 4096,
# ~60; with 8192, none in the same runs). 8192 frames of framesz (2048 by
# default) is 16 MiB of kernel memory a ring; with a larger framesz, fewer
# frames, to the same 16 MiB (a power of two, DPDK's 512 at least).
AF_PACKET_FRAMECNT = 8192
AF_PACKET_RING_BYTES = 16 << 20


def af_packet_rings(cfg: "RunConfig") -> None:
    """Give every net_af_packet vdev without framecnt= kni-gw's default
    (cfg.eal_argv rewritten, a note for the start log)."""
    argv = list(cfg.eal_argv)
    for i, tok in enumerate(argv):
        if tok == "--vdev" and i + 1 < len(argv):
            at, lead = i + 1, ""
        elif tok.startswith("--vdev="):
            at, lead = i, "--vdev="
        else:
            continue
        vdev = argv[at][len(lead):]
        name, _, rest = vdev.partition(",")
        if not name.startswith("net_af_packet"):
            continue
        args = {kv.partition("=")[0].strip(): kv.partition("=")[2].strip() for kv in rest.split(",")}
        if "framecnt" in args:
            continue
        try:
            framesz = max(1, int(args.get("framesz", "2048")))
        except ValueError:
            continue            # the PMD refuses it in its own words
        n = AF_PACKET_FRAMECNT
        while n > 512 and n * framesz > AF_PACKET_RING_BYTES:
            n //= 2
        argv[at] = f"{lead}{vdev},framecnt={n}"
        cfg.vdev_notes.append(f"{name}: framecnt={n}, a {n * framesz >> 20} MiB kernel ring a queue "
                              f"and direction (kni-gw's default; framecnt=N to choose)")
    cfg.eal_argv = argv


def hugetlbfs_mounted(mounts: str = "/proc/mounts") -> bool:
    try:
        with open(mounts) as f:
            return any(line.split()[2] == "hugetlbfs" for line in f if len(line.split()) > 2)
    except OSError:
        return False


def resolve_backend(requested: str, host: HostFacts) -> str:
    if requested == "auto":
        return "virtio-user" if host.has_vhost_net else "tap"
    return requested


def preflight(cfg: RunConfig, host: HostFacts) -> str:
    """Refuse what cannot run, before EAL touches anything. Returns the
    exception backend to use."""
    if host.euid != 0:
        raise ConfigError("kni-gw must run as root (DPDK ports, hugepages, TAP devices): use sudo")
    if not cfg.no_huge:
        if host.hugepages_free <= 0:
            raise ConfigError(f"no free hugepages; {HUGEPAGE_HINT}")
        if not host.hugetlbfs_mounted:
            raise ConfigError(f"hugetlbfs is not mounted; {HUGEPAGE_HINT}")
    backend = resolve_backend(cfg.backend, host)
    if backend == "tap" and not host.has_tun:
        raise ConfigError("exception backend tap needs /dev/net/tun: sudo modprobe tun")
    if backend == "virtio-user" and not host.has_vhost_net:
        raise ConfigError(
            "exception backend virtio-user needs /dev/vhost-net: sudo modprobe vhost_net, "
            "or use --exception tap")
    size_tables(cfg, host)
    af_packet_rings(cfg)
    if cfg.dns_zones:
        check_zones(cfg.dns_zones)
    for p in cfg.ports:
        if p.ifname in host.taken_ifnames:
            raise ConfigError(
                f"interface {p.ifname} already exists (another kni-gw running?); "
                f"stop it or remove the interface: sudo ip link del {p.ifname}")
    return backend


def check_zones(paths: Sequence[str]) -> None:
    """Load the zone files once, before EAL: a zone that cannot be served
    is refused in one line, FILE:LINE: what."""
    from .dns import ZoneError, Zones
    try:
        Zones.load(paths)
    except ZoneError as e:
        raise ConfigError(f"--dns-zone {e}") from None
