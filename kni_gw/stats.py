"""Statistics: snapshot of the dataplane's counters, reset by baseline,
and two renderings (fixed-column text for people, JSON for programs).

A reset never writes lcore counters: it keeps the snapshot taken at reset
time and subtracts it from later snapshots.
"""
from __future__ import annotations

import copy
import json
import time
from typing import Any, Dict, List, Optional, Sequence

from .dataplane import COUNTERS, DROP_REASONS, EXC_DROPS, POLICE_CLASSES, PUNT_REASONS, RX_DROPS, TX_DROPS

# cumulative hardware counters (reset with the baseline); the rest are gauges
HW_CUMULATIVE = ("hw_ipackets", "hw_imissed", "hw_ierrors", "hw_rx_nombuf", "hw_opackets",
                 "hw_oerrors", "exc_ipackets", "exc_opackets", "exc_oerrors")


def take_snapshot(dp, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Everything the table shows, read once from the dataplane."""
    counters = dp.counters()
    ports = []
    for pc, c in zip(dp.cfg.ports, counters):
        info = dp.port_info(pc.port)
        ports.append({
            "port": pc.port,
            "ifname": pc.ifname,
            "lcore_rx": pc.lcore_rx,
            "lcores_rx": list(pc.lcores_rx),
            "lcore_tx": pc.lcore_tx,
            "lcore_exception": pc.lcore_exc,
            "driver": info.driver,
            "mac": info.mac,
            "mtu": info.mtu,
            "max_mtu": info.max_mtu,
            "admin_up": info.admin_up,
            "link_up": info.link_up,
            "queues": {"rx": info.nb_rxq, "tx": info.nb_txq, "rx_spread": info.rx_spread,
                       "tx_fifo_fallback": info.tx_fifo_fallback},
            **{k: v for k, v in c.items() if k not in ("drops", "punts")},
            "drops": dict(c["drops"]),
            "punts": dict(c["punts"]),
            "policed": dict(c["policed"]),
            "hw": dict(info.hw),
        })
    snap = {
        "time": time.time(),
        "ports": ports,
        "lcores": {str(k): v for k, v in dp.lcore_counters().items()},
        "mbufs_in_use": dp.mbufs_in_use(),
        "mbufs_total": dp.mbufs_total(),
    }
    if extra:
        snap.update(extra)
    return snap


def derive(port: Dict[str, Any]) -> Dict[str, int]:
    """The KNI sample's columns from kni-gw's finer counters."""
    d = port["drops"]
    return {
        "rx_dropped": sum(d[r] for r in RX_DROPS),
        "kernel_dropped": sum(d[r] for r in EXC_DROPS),
        "tx_dropped": sum(d[r] for r in TX_DROPS),
    }


def subtract(snap: Dict[str, Any], base: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """snap - base for every cumulative counter; gauges are left as they are."""
    out = copy.deepcopy(snap)
    if base is None:
        for p in out["ports"]:
            p.update(derive(p))
        out["since"] = None
        return out
    by_port = {p["port"]: p for p in base["ports"]}
    for p in out["ports"]:
        b = by_port.get(p["port"])
        if b is not None:
            for k in COUNTERS:
                p[k] -= b[k]
            for r in p["drops"]:
                p["drops"][r] -= b["drops"].get(r, 0)
            for r in p["punts"]:
                p["punts"][r] -= b["punts"].get(r, 0)
            for r in p["policed"]:
                p["policed"][r] -= b["policed"].get(r, 0)
            for k in HW_CUMULATIVE:
                p["hw"][k] -= b["hw"].get(k, 0)
        p.update(derive(p))
    for lc, c in out.get("lcores", {}).items():
        b = base.get("lcores", {}).get(lc)
        if b:
            for k in c:
                c[k] -= b.get(k, 0)
    out["since"] = base["time"]
    return out


class Stats:
    """Holds the reset baseline; renders what SIGUSR1 prints."""

    def __init__(self, dp):
        self.dp = dp
        self.base: Optional[Dict[str, Any]] = None

    def current(self, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return subtract(take_snapshot(self.dp, extra), self.base)

    def reset(self) -> None:
        self.base = take_snapshot(self.dp)


def render_json(view: Dict[str, Any]) -> str:
    return json.dumps(view, sort_keys=True)


# ---------------------------------------------------------------- text

# The KNI sample's columns first, then kni-gw's own. A table wider than the
# output is cut into blocks of whole columns, each repeating "Port": no cell
# is ever shortened.
PORT_COLUMNS = ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets", "tx_dropped",
                "vEth", "to_kernel", "from_kernel", "kernel_dropped", "forwarded")
HW_SHOWN = (("hw_imissed", "imissed"), ("hw_ierrors", "ierrors"), ("hw_rx_nombuf", "rx_nombuf"),
            ("hw_oerrors", "oerrors"), ("exc_oerrors", "vEth_oerrors"))


def fmt_duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))


def columns_text(header: Sequence[str], rows: Sequence[Sequence[str]], width: Optional[int],
                 left: Sequence[str] = (), rule: bool = True) -> List[str]:
    """A fixed-column table: each column as wide as its widest cell. When
    `width` is given and the table is wider, the columns after the first go
    into further blocks (each starting with the first column again)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    blocks: List[List[int]] = [[0]]
    for i in range(1, len(header)):
        used = sum(widths[j] + 2 for j in blocks[-1]) + widths[i]
        if width is not None and used > width and len(blocks[-1]) > 1:
            blocks.append([0])
        blocks[-1].append(i)
    out: List[str] = []

    def line(cells: Sequence[str], cols: Sequence[int]) -> str:
        return "  ".join(c.ljust(widths[i]) if header[i] in left else c.rjust(widths[i])
                         for c, i in zip(cells, cols)).rstrip()
    for k, cols in enumerate(blocks):
        if k:
            out.append("")
        if rule:
            out.append("  ".join("=" * widths[i] for i in cols))
        out.append(line([header[i] for i in cols], cols))
        if rule:
            out.append("  ".join("-" * widths[i] for i in cols))
        out.extend(line([r[i] for i in cols], cols) for r in rows)
        if rule:
            out.append("  ".join("=" * widths[i] for i in cols))
    return out


def wrap_items(head: str, items: Sequence[str], width: Optional[int], indent: int = 4) -> List[str]:
    """`head item, item, ...`; with a width, continued on indented lines
    between whole items (an item is never split)."""
    if not items:
        return [head + "-"]
    out = [head + items[0]]
    for it in items[1:]:
        if width is not None and len(out[-1]) + 3 + len(it) > width:  # room for ","
            out[-1] += ","
            out.append(" " * indent + it)
        else:
            out[-1] += ", " + it
    return out


def _nonzero(counts: Dict[str, int], order: Sequence[str]) -> List[str]:
    """name=value of the non-zero counters, in the C enum's order (JSON
    from the control socket comes back sorted by name)."""
    rank = {r: i for i, r in enumerate(order)}
    return [f"{r}={v}" for r, v in sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(rank)))
            if v]


def render_text(view: Dict[str, Any], width: Optional[int] = None) -> str:
    """The statistics as plain text: a header with the time and the uptime,
    one row per port, then the reasons and the rest on lines of their own.
    width=None (a file, the journal): one line per port, nothing wrapped;
    else nothing is wider than `width` unless one cell alone is."""
    out: List[str] = []
    items = [f"kni-gw statistics at {fmt_time(view['time'])}"]
    if view.get("started"):
        items.append(f"up {fmt_duration(view['time'] - view['started'])}")
    if view.get("since"):
        items.append(f"since reset at {fmt_time(view['since'])}")
    out += wrap_items("", items, width)
    rows = []
    for p in view["ports"]:
        rows.append([str(p["port"]), f"{'+'.join(str(x) for x in p.get('lcores_rx', [p['lcore_rx']]))}/{p['lcore_tx']}/{p['lcore_exception']}",
                     str(p["rx_packets"]), str(p["rx_dropped"]), str(p["tx_packets"]),
                     str(p["tx_dropped"]), f"{p['ifname']} ({'up' if p['admin_up'] else 'down'})",
                     str(p["to_kernel"]), str(p["from_kernel"]), str(p["kernel_dropped"]),
                     str(p["forwarded"])])
    cols = PORT_COLUMNS
    if "dns" in view:
        # queries answered in C (the responder's own count is on the dns line)
        cols = PORT_COLUMNS + ("dns_answered",)
        for row, p in zip(rows, view["ports"]):
            row.append(str(p["dns_answered"]))
    out += columns_text(cols, rows, width, left=("Lcore(RX/TX/EXC)", "vEth"))
    for p in view["ports"]:
        n = p["port"]
        out += wrap_items(f"port {n} drops by reason: ",
                          _nonzero(p["drops"], DROP_REASONS), width)
        policed = _nonzero(p["policed"], POLICE_CLASSES)
        if policed:
            out += wrap_items(f"port {n} policed by class: ", policed, width)
        out += wrap_items(f"port {n} punts by reason: ",
                          _nonzero(p["punts"], PUNT_REASONS), width)
        hw = [f"{name}={p['hw'][k]}" for k, name in HW_SHOWN if p["hw"].get(k)]
        if hw:
            out += wrap_items(f"port {n} device counters: ", hw, width)
    for lc, c in sorted(view.get("lcores", {}).items(), key=lambda x: int(x[0])):
        out += wrap_items(f"lcore {lc}: ", [
            f"rx {c['rx_packets']}", f"tx {c['tx_packets']}", f"fwd {c['forwarded']}",
            f"to/from kernel {c['kernel_tx']}/{c['from_kernel']}", f"dropped {c['dropped']}"] +
            ([f"dns {c['dns_answered']}"] if c.get("dns_answered") else []), width)
    if "fib" in view:
        f = view["fib"]
        out += wrap_items("routes: ", [
            f"{f['routes4']} IPv4", f"{f['routes6']} IPv6",
            f"fast path {f['fast4']} + {f['fast6']}",
            f"not installed (table full) {f.get('not_installed4', 0)} + {f.get('not_installed6', 0)}",
            f"nexthop objects {f.get('nexthop_objects', 0)}", f"neighbours {f['neighbours']}",
            f"tables {f['memory'] / 2**20:.0f} MiB"], width)
    if "dns" in view:
        d = view["dns"]
        rc = [f"{k[6:]}={v}" for k, v in sorted(d.items()) if k.startswith("rcode_")]
        out += wrap_items("dns: ", [f"{d.get('queries', 0)} queries"] + rc + [
            f"truncated {d.get('truncated', 0)}", f"tcp {d.get('tcp_queries', 0)}",
            f"malformed {d.get('malformed', 0)}", f"forwarded {d.get('forwarded', 0)}",
            f"reloads {d.get('reloads', 0)}"], width)
        f = view.get("dns_fast")
        if f is not None and f.get("off"):
            out += wrap_items("dns in C: ", ["off (--dns-fast off)"], width)
        elif f is not None:
            out += wrap_items("dns in C: ", [
                f"answered {sum(p['dns_answered'] for p in view['ports'])}",
                f"missed {sum(p['dns_missed'] for p in view['ports'])}",
                f"dropped by the rate limit {sum(p['drops'].get('dns_rrl', 0) for p in view['ports'])}",
                f"table {f['entries']} answers ({f['memory'] // 1024} KiB, compiled in {f['compile_seconds']} s)",
                f"limit {f['rrl']}/s per client prefix" if f["rrl"] else "no rate limit"], width)
    out.append(f"mbufs in use: {view['mbufs_in_use']} of {view['mbufs_total']}")
    return "\n".join(out) + "\n"


def render_rates(view: Dict[str, Any], width: Optional[int] = None) -> str:
    """Per-port rates over the last second (what `kni-gw stats` adds)."""
    rows = []
    for p in view["ports"]:
        r = p.get("rates")
        if r:
            rows.append([str(p["port"]), f"{r['rx_pps']:.0f}", f"{r['rx_bps'] / 1e6:.2f}",
                         f"{r['tx_pps']:.0f}", f"{r['tx_bps'] / 1e6:.2f}",
                         f"{r['forwarded_pps']:.0f}", f"{r['to_kernel_pps']:.0f}"])
    if not rows:
        return "rates: not yet (one second of samples needed)\n"
    return "\n".join(["rates over the last second:"] + columns_text(
        ("Port", "rx pps", "rx Mbit/s", "tx pps", "tx Mbit/s", "forwarded pps", "to_kernel pps"),
        rows, width, rule=False)) + "\n"
