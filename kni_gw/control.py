"""Reading a running gateway from another shell, and scraping it.

* A control socket, /run/kni-gw/<file-prefix>.sock (directory 0700, socket
  0600: root only): a client sends "stats\\n" and gets one JSON object, the
  same as SIGUSR1's JSON plus per-port rates. `kni-gw stats` is its client.
* --metrics [ADDR:]PORT: OpenMetrics text over HTTP (GET /metrics) with the
  raw counters (never reset by SIGUSR2: Prometheus wants monotonic counters).

Both are served from the gateway's main loop, one short request at a time.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger("kni-gw")

RUN_DIR = "/run/kni-gw"
REQUEST_TIMEOUT_S = 0.5


def serve_one(listener: socket.socket, answer: Callable[[bytes], bytes], size: int) -> None:
    """Accept one connection, read one request, write answer(request)."""
    try:
        conn, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    with conn:
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            conn.sendall(answer(conn.recv(size)))
        except OSError:
            pass


def socket_path(prefix: str) -> str:
    return os.path.join(RUN_DIR, f"{prefix}.sock")


class ControlServer:
    def __init__(self, prefix: str, view: Callable[[], dict]):
        self.path = socket_path(prefix)
        self.view = view
        os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
        os.chmod(RUN_DIR, 0o700)
        if os.path.exists(self.path):
            # the prefix is ours (EAL locked it): what is there is a killed run's
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_ready(self) -> None:
        serve_one(self.sock, self._answer, 256)

    def _answer(self, raw: bytes) -> bytes:
        req = raw.decode(errors="replace").strip()
        if req == "stats":
            out = json.dumps(self.view(), sort_keys=True)
        else:
            out = json.dumps({"error": f"unknown request {req!r}; send 'stats'"})
        return out.encode() + b"\n"

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def query(prefix: str, timeout: float = 5.0) -> dict:
    """The client side: one 'stats' request."""
    path = socket_path(prefix)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except FileNotFoundError:
        raise ConnectionError(f"no kni-gw running with --file-prefix {prefix} ({path} not found)") from None
    except PermissionError:
        raise ConnectionError(f"{path}: permission denied (run as root)") from None
    except ConnectionRefusedError:
        raise ConnectionError(f"{path}: nobody listening (kni-gw stopped?)") from None
    with s:
        s.sendall(b"stats\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


# ---------------------------------------------------------------- metrics

def parse_metrics_addr(text: str) -> Tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--metrics {text!r}: [ADDR:]PORT, e.g. 9101 or 127.0.0.1:9101") from None
    if not 0 < p < 65536:
        raise ValueError(f"--metrics {text!r}: port out of range")
    return host, p


def openmetrics(view: dict) -> str:
    """The counters as OpenMetrics text."""
    out: List[str] = []

    def family(name: str, kind: str, help_: str, samples: List[Tuple[Dict[str, str], float]]):
        out.append(f"# TYPE {name} {kind}")
        out.append(f"# HELP {name} {help_}")
        suffix = "_total" if kind == "counter" else ""
        for labels, value in samples:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append(f"{name}{suffix}{{{lab}}} {value}" if lab else f"{name}{suffix} {value}")

    ports = view["ports"]
    for key, help_ in (("rx_packets", "frames received on the port"), ("rx_bytes", "bytes received"),
                       ("tx_packets", "frames sent on the port"), ("tx_bytes", "bytes sent"),
                       ("to_kernel", "frames punted to vEthN"), ("from_kernel", "frames from vEthN"),
                       ("kernel_tx", "frames written to vEthN"),
                       ("forwarded", "frames forwarded by the fast path")):
        family(f"kni_gw_{key}", "counter", help_, [({"port": str(p["port"])}, p[key]) for p in ports])
    family("kni_gw_drops", "counter", "frames dropped, by reason",
           [({"port": str(p["port"]), "reason": r}, n) for p in ports for r, n in p["drops"].items()])
    family("kni_gw_punts", "counter", "frames punted to the kernel, by reason",
           [({"port": str(p["port"]), "reason": r}, n) for p in ports for r, n in p["punts"].items()])
    family("kni_gw_policed", "counter", "punted frames dropped by policing, by class",
           [({"port": str(p["port"]), "class": r}, n) for p in ports for r, n in p["policed"].items()])
    family("kni_gw_fifo_used", "gauge", "entries in a fifo now",
           [({"port": str(p["port"]), "fifo": f}, p["hw"][k]) for p in ports
            for f, k in (("to_kernel", "to_kernel_fifo_used"), ("tx", "tx_fifo_used"))])
    family("kni_gw_port_up", "gauge", "1 when vEthN is up (the port forwards)",
           [({"port": str(p["port"])}, int(p["admin_up"])) for p in ports])
    family("kni_gw_mbufs_in_use", "gauge", "mbufs out of the pool", [({}, view["mbufs_in_use"])])
    family("kni_gw_mbufs", "gauge", "mbufs in the pool", [({}, view["mbufs_total"])])
    fib = view.get("fib")
    if fib:
        family("kni_gw_routes", "gauge", "prefixes mirrored from the kernel",
               [({"family": "ipv4"}, fib["routes4"]), ({"family": "ipv6"}, fib["routes6"])])
        family("kni_gw_routes_fast", "gauge", "prefixes the fast path forwards itself",
               [({"family": "ipv4"}, fib["fast4"]), ({"family": "ipv6"}, fib["fast6"])])
        family("kni_gw_routes_not_installed", "gauge",
               "routes the tables refused (full): their traffic goes to the kernel",
               [({"family": "ipv4"}, fib["not_installed4"]), ({"family": "ipv6"}, fib["not_installed6"])])
        family("kni_gw_route_install_failures", "counter", "route installs the tables refused",
               [({}, fib["install_failures"])])
        family("kni_gw_neighbours", "gauge", "neighbours mirrored", [({}, fib["neighbours"])])
        family("kni_gw_nexthop_objects", "gauge", "kernel nexthop objects mirrored",
               [({}, fib["nexthop_objects"])])
        family("kni_gw_neighbour_nudges", "counter",
               "messages asking the kernel about neighbours the fast path uses",
               [({"kind": "use"}, fib["neigh_use"]), ({"kind": "probe"}, fib["neigh_probe"])])
    dns = view.get("dns")
    if dns is not None:
        family("kni_gw_dns_queries", "counter", "DNS queries", [({}, dns.get("queries", 0))])
        family("kni_gw_dns_answers", "counter", "DNS answers by rcode",
               [({"rcode": k[6:]}, v) for k, v in sorted(dns.items()) if k.startswith("rcode_")])
        family("kni_gw_dns_truncated", "counter", "UDP answers truncated", [({}, dns.get("truncated", 0))])
        family("kni_gw_dns_tcp_queries", "counter", "DNS queries over TCP", [({}, dns.get("tcp_queries", 0))])
    out.append("# EOF")
    return "\n".join(out) + "\n"


class MetricsServer:
    def __init__(self, addr: str, view: Callable[[], dict]):
        host, port = parse_metrics_addr(addr)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.view = view
        log.info("metrics: http://%s:%d/metrics", host, port)

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_ready(self) -> None:
        serve_one(self.sock, self._answer, 4096)

    def _answer(self, raw: bytes) -> bytes:
        line = raw.decode(errors="replace").split("\r\n", 1)[0].split()
        if len(line) >= 2 and line[0] == "GET" and line[1].split("?")[0] == "/metrics":
            body = openmetrics(self.view()).encode()
            head = ("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; "
                    "version=1.0.0; charset=utf-8\r\n")
        else:
            body, head = b"see /metrics\n", "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        return head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body

    def close(self) -> None:
        self.sock.close()


def with_rates(view: dict, prev: Optional[dict]) -> dict:
    """Per-port rates (pps, bit/s) between two raw snapshots, added to view."""
    if not prev:
        return view
    dt = view["time"] - prev["time"]
    if dt <= 0:
        return view
    for lc, c in view.get("lcores", {}).items():
        b = prev.get("lcores", {}).get(lc)
        if b:
            c["rates"] = {"rx_pps": (c["rx_packets"] - b["rx_packets"]) / dt,
                          "tx_pps": (c["tx_packets"] - b["tx_packets"]) / dt}
    before = {p["port"]: p for p in prev["ports"]}
    for p in view["ports"]:
        b = before.get(p["port"])
        if b is None:
            continue
        p["rates"] = {
            "rx_pps": (p["rx_packets"] - b["rx_packets"]) / dt,
            "tx_pps": (p["tx_packets"] - b["tx_packets"]) / dt,
            "rx_bps": 8 * (p["rx_bytes"] - b["rx_bytes"]) / dt,
            "tx_bps": 8 * (p["tx_bytes"] - b["tx_bytes"]) / dt,
            "forwarded_pps": (p["forwarded"] - b["forwarded"]) / dt,
            "to_kernel_pps": (p["to_kernel"] - b["to_kernel"]) / dt,
        }
    return view
