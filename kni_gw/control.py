"""Reading a running gateway from another shell, and scraping it.

* A control socket, /run/kni-gw/<file-prefix>.sock (directory 0700, socket
  0600: root only): a client sends "stats\\n" and gets one JSON object, the
  same as SIGUSR1's JSON plus per-port rates. `kni-gw stats` is its client.
* --metrics [ADDR:]PORT: OpenMetrics text over HTTP (GET or HEAD /metrics)
  with the raw counters (never reset by SIGUSR2: Prometheus wants monotonic
  counters). A bare PORT listens on 127.0.0.1 only.

Both are served from the gateway's main loop without ever waiting on a
client: every connection is a non-blocking socket in the loop's selector
with its own state (what it has received, what is left to write), a
deadline (CONN_DEADLINE_S from accept to the last byte written) and a
bound on how many are open (MAX_CONNS per server: the oldest is closed to
make room). An idle or slow client costs a file descriptor for a moment,
never the loop's time.
"""
from __future__ import annotations

import abc
import collections
import ipaddress
import json
import logging
import os
import selectors
import socket
import stat
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .instance import RUN_DIR, socket_path

log = logging.getLogger("kni-gw")

CONN_DEADLINE_S = 2.0
MAX_CONNS = 64
ACCEPTS_PER_EVENT = 16   # < MAX_CONNS: a client accepted in one batch is read before it could be evicted


class _Conn:
    __slots__ = ("sock", "inbuf", "out", "deadline")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.inbuf = b""
        self.out: Optional[memoryview] = None
        self.deadline = deadline


class StreamServer(abc.ABC):
    """A listening socket whose connections live in the caller's selector.

    A subclass says when a request is complete (`complete`) and what to
    answer (`answer`); this class accepts, reads, writes and closes, never
    blocking. The selector key's data is this object's `on_event`."""

    max_request = 4096

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setblocking(False)
        self.sel: Optional[selectors.BaseSelector] = None
        self.conns: Dict[int, _Conn] = {}
        self.order: Deque[_Conn] = collections.deque()   # oldest first
        self.counts: Dict[str, int] = collections.Counter()

    # ---------------------------------------------------- what a subclass says
    @abc.abstractmethod
    def complete(self, buf: bytes) -> bool:
        """Does buf hold a whole request?"""

    @abc.abstractmethod
    def answer(self, request: bytes) -> bytes:
        """The reply to one whole request."""

    # ---------------------------------------------------- the selector
    def attach(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        sel.register(self.sock, selectors.EVENT_READ, self.on_event)

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_event(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self.sock:
            self._accept()
            return
        c = self.conns.get(key.fd)
        if c is None:
            return
        try:
            if c.out is None and mask & selectors.EVENT_READ:
                self._read(c)
            elif c.out is not None and mask & selectors.EVENT_WRITE:
                self._write(c)
        except OSError:
            self._close(c)

    def expire(self, now: Optional[float] = None) -> Optional[float]:
        """Close the connections past their deadline; returns the next
        deadline, if any (deadlines grow with accept order)."""
        now = time.monotonic() if now is None else now
        while self.order:
            c = self.order[0]
            if c.sock.fileno() < 0:          # closed already
                self.order.popleft()
                continue
            if c.deadline > now:
                return c.deadline
            self.counts["expired"] += 1
            self._close(c)
        return None

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_EVENT):
            try:
                s, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:      # EMFILE and the like: the next event tries again
                self.counts["accept_errors"] += 1
                if self.counts["accept_errors"] == 1:
                    log.warning("%s: accept: %s", type(self).__name__, e.strerror)
                return
            s.setblocking(False)
            while self.order and len(self.conns) >= MAX_CONNS:
                old = self.order.popleft()        # the oldest makes room
                if old.sock.fileno() >= 0:
                    self.counts["evicted"] += 1
                    self._close(old)
            c = _Conn(s, time.monotonic() + CONN_DEADLINE_S)
            self.conns[s.fileno()] = c
            self.order.append(c)
            self.sel.register(s, selectors.EVENT_READ, self.on_event)
            self.counts["accepted"] += 1

    def _read(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(self.max_request)
        except (BlockingIOError, InterruptedError):
            return
        c.inbuf += data
        if data and len(c.inbuf) < self.max_request and not self.complete(c.inbuf):
            return
        if not c.inbuf:           # closed without asking anything
            self._close(c)
            return
        c.out = memoryview(self.answer(c.inbuf[:self.max_request]))
        self.sel.modify(c.sock, selectors.EVENT_WRITE, self.on_event)
        self._write(c)

    def _write(self, c: _Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        c.out = c.out[n:]
        if not len(c.out):
            self.counts["answered"] += 1
            self._close(c)

    def _close(self, c: _Conn) -> None:
        fd = c.sock.fileno()
        if fd < 0:
            return
        self.conns.pop(fd, None)
        if self.sel is not None:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()
        if self.order and self.order[0] is c:
            self.order.popleft()
        # others leave `order` when they reach its head (expire skips them)

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._close(c)
        if self.sel is not None:
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self.sock.close()


class ControlServer(StreamServer):
    """The control socket: one request line ("stats"), one JSON answer."""

    max_request = 256

    def __init__(self, prefix: str, view: Callable[[], dict]):
        self.path = socket_path(prefix)
        self.view = view
        os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
        os.chmod(RUN_DIR, 0o700)
        if os.path.exists(self.path):
            # the prefix is ours (EAL locked it): what is there is a killed run's
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        sock.listen(128)
        super().__init__(sock)

    def complete(self, buf: bytes) -> bool:
        return b"\n" in buf

    def answer(self, raw: bytes) -> bytes:
        req = raw.decode(errors="replace").strip()
        if req == "stats":
            out = json.dumps(self.view(), sort_keys=True)
        else:
            out = json.dumps({"error": f"unknown request {req!r}; send 'stats'"})
        return out.encode() + b"\n"

    def close(self) -> None:
        super().close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def query(prefix: str, timeout: float = 5.0) -> dict:
    """The client side: one 'stats' request. Failures are ConnectionError
    with a one-line reason."""
    path = socket_path(prefix)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            while True:
                try:
                    s.connect(path)
                    break
                except BlockingIOError:
                    # the listen backlog is full (a busy or flooded gateway): retry
                    if time.monotonic() > deadline:
                        raise TimeoutError from None
                    time.sleep(0.01)
            s.sendall(b"stats\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except FileNotFoundError:
            raise ConnectionError(f"no kni-gw running with --file-prefix {prefix} ({path} not found)") from None
        except PermissionError:
            raise ConnectionError(f"{path}: permission denied (run as root)") from None
        except ConnectionRefusedError:
            raise ConnectionError(f"{path}: nobody listening (kni-gw stopped?)") from None
        except (TimeoutError, socket.timeout):
            raise ConnectionError(f"{path}: no answer within {timeout:g} s") from None
        except OSError as e:
            raise ConnectionError(f"{path}: {e.strerror or e}") from None
    try:
        return json.loads(buf)
    except ValueError:
        raise ConnectionError(f"{path}: the gateway closed the connection without a whole answer") from None


# ---------------------------------------------------------------- metrics

def parse_metrics_addr(text: str) -> Tuple[str, int]:
    host, _, port = text.rpartition(":")
    # a bare port is local only: the management endpoint of an edge gateway
    # should not face the wire unless the operator says so
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--metrics {text!r}: {host!r} is not an IP address") from None
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--metrics {text!r}: [ADDR:]PORT, e.g. 9101 (127.0.0.1) or 0.0.0.0:9101") from None
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
                       ("forwarded", "frames forwarded by the fast path"),
                       ("dns_answered", "DNS queries answered in C on the rx lcores"),
                       ("dns_missed", "DNS queries to us the C answer table did not hold (punted)")):
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


class MetricsServer(StreamServer):
    """GET (or HEAD) /metrics over HTTP/1.1, one request per connection."""

    max_request = 8192

    def __init__(self, addr: str, view: Callable[[], dict]):
        host, port = parse_metrics_addr(addr)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        super().__init__(sock)
        self.view = view
        log.info("metrics: http://%s/metrics", f"[{host}]:{port}" if fam == socket.AF_INET6 else f"{host}:{port}")

    def complete(self, buf: bytes) -> bool:
        return b"\r\n\r\n" in buf or b"\n\n" in buf

    def answer(self, raw: bytes) -> bytes:
        line = raw.decode(errors="replace").split("\n", 1)[0].split()
        method = line[0] if line else ""
        path = line[1].split("?")[0] if len(line) >= 2 else ""
        if method in ("GET", "HEAD") and path == "/metrics":
            body = openmetrics(self.view()).encode()
            head = ("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; "
                    "version=1.0.0; charset=utf-8\r\n")
        elif method in ("GET", "HEAD"):
            body, head = b"see /metrics\n", "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        else:
            body = b"GET or HEAD /metrics\n"
            head = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        return head.encode() + (b"" if method == "HEAD" else body)


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
