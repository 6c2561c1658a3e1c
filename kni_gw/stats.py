"""Statistics: snapshot of the dataplane's counters, reset by baseline,
and two renderings (a rich table for people, JSON for programs).

A reset never writes lcore counters: it keeps the snapshot taken at reset
time and subtracts it from later snapshots.
"""
from __future__ import annotations

import copy
import io
import json
import time
from typing import Any, Dict, Optional

from rich.console import Console
from rich.table import Table

from .dataplane import EXC_DROPS, RX_DROPS, TX_DROPS

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
            "lcore_tx": pc.lcore_tx,
            "lcore_exception": pc.lcore_exc,
            "driver": info.driver,
            "mac": info.mac,
            "mtu": info.mtu,
            "admin_up": info.admin_up,
            "link_up": info.link_up,
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
            for k in ("rx_packets", "rx_bytes", "to_kernel", "forwarded", "kernel_tx",
                      "from_kernel", "tx_packets", "tx_bytes"):
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


def render_table(view: Dict[str, Any], width: int = 250) -> str:
    t = Table(title="kni-gw statistics" + (
        " (since reset at " + time.strftime("%H:%M:%S", time.localtime(view["since"])) + ")"
        if view.get("since") else ""), title_justify="left")
    cols = ["Port", "Lcore(RX/TX/EXC)", "vEth", "rx_packets", "rx_dropped", "tx_packets",
            "tx_dropped", "to_kernel", "from_kernel", "kernel_dropped", "forwarded",
            "punts by reason", "drops by reason"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("vEth", "drops by reason", "punts by reason",
                                               "Lcore(RX/TX/EXC)")
                     else "right", no_wrap=True)
    for p in view["ports"]:
        reasons = ", ".join(f"{r}={n}" for r, n in p["drops"].items() if n) or "-"
        if any(p["policed"].values()):
            reasons += " (" + ", ".join(f"{r}={n}" for r, n in p["policed"].items() if n) + ")"
        punts = ", ".join(f"{r}={n}" for r, n in p["punts"].items() if n) or "-"
        t.add_row(
            str(p["port"]), f"{p['lcore_rx']}/{p['lcore_tx']}/{p['lcore_exception']}",
            f"{p['ifname']} ({'up' if p['admin_up'] else 'down'})",
            str(p["rx_packets"]), str(p["rx_dropped"]), str(p["tx_packets"]),
            str(p["tx_dropped"]), str(p["to_kernel"]), str(p["from_kernel"]),
            str(p["kernel_dropped"]), str(p["forwarded"]), punts, reasons)
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    console.print(t)
    if view.get("lcores"):
        console.print("lcores: " + "; ".join(
            f"{lc}: rx {c['rx_packets']} tx {c['tx_packets']} fwd {c['forwarded']} "
            f"to/from kernel {c['kernel_tx']}/{c['from_kernel']} dropped {c['dropped']}"
            for lc, c in sorted(view["lcores"].items(), key=lambda x: int(x[0]))))
    if "fib" in view:
        f = view["fib"]
        console.print(f"routes: {f['routes4']} IPv4, {f['routes6']} IPv6 (fast path {f['fast4']} + "
                      f"{f['fast6']}); not installed (table full) {f.get('not_installed4', 0)} + "
                      f"{f.get('not_installed6', 0)}; nexthop objects {f.get('nexthop_objects', 0)}; "
                      f"neighbours {f['neighbours']}; tables {f['memory'] / 2**20:.0f} MiB")
    if "dns" in view:
        d = view["dns"]
        rc = ", ".join(f"{k[6:]}={v}" for k, v in sorted(d.items()) if k.startswith("rcode_")) or "-"
        console.print(f"dns: {d.get('queries', 0)} queries ({rc}); truncated {d.get('truncated', 0)}, "
                      f"tcp {d.get('tcp_queries', 0)}, malformed {d.get('malformed', 0)}, "
                      f"forwarded {d.get('forwarded', 0)}, reloads {d.get('reloads', 0)}")
    console.print(f"mbufs in use: {view['mbufs_in_use']} of {view['mbufs_total']}")
    return buf.getvalue()
