"""Authoritative DNS responder on the vEth addresses (dnslib for the wire
format and the zone-file syntax).

Queries from the wire reach the kernel through vEthN (they are to a local
address) and are answered here; the answers leave through vEthN. The server
runs in the gateway's main-thread event loop: non-blocking UDP and TCP
sockets, no thread per query.

Semantics: AA on answers from the zones; NXDOMAIN versus NOERROR/NODATA with
the zone's SOA in the authority section; CNAME chains followed inside the
zones; wildcards as RFC 4592 says (closest encloser, no synthesis below an
existing name); delegations below the apex answered with a referral (NS in
authority, glue in additional, AA clear); names matched case-insensitively,
the query's case kept; EDNS0 OPT echoed and the client's payload size
honoured; a UDP answer that does not fit is sent truncated (TC) and whole
over TCP; ANY gets one RRset (RFC 8482); names outside the zones get REFUSED
unless --dns-forward is given, then they are proxied (SERVFAIL on timeout).
Malformed queries get FORMERR when their header can be read, else nothing;
an unexpected error while resolving gives SERVFAIL.
"""
from __future__ import annotations

import collections
import logging
import random
import socket
import struct
import sys
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSLabel, DNSRecord
from dnslib.dns import DNSError

log = logging.getLogger("kni-gw")

UDP_MAX = 1232          # our EDNS0 payload size (the DNS flag day 2020 value)
TCP_MAX_CONNS = 64
TCP_IDLE_S = 10.0
FORWARD_TIMEOUT_S = 2.0
CACHE_MAX = 4096        # answers kept, by query bytes; emptied on reload and when full
CNAME_DEPTH = 8

Key = Tuple[bytes, ...]


class ZoneError(Exception):
    """A zone file that cannot be served (one line: file and reason)."""


def key(label: DNSLabel) -> Key:
    return tuple(x.lower() for x in label.label)


class Zone:
    def __init__(self, path: str, rrs: Sequence[RR]):
        soas = [r for r in rrs if r.rtype == QTYPE.SOA]
        if len(soas) != 1:
            raise ZoneError(f"{path}: a zone has exactly one SOA record, found {len(soas)}")
        self.path = path
        self.soa = soas[0]
        self.apex = key(self.soa.rname)
        self.names: Dict[Key, Dict[int, List[RR]]] = collections.defaultdict(
            lambda: collections.defaultdict(list))
        for r in rrs:
            k = key(r.rname)
            if k[len(k) - len(self.apex):] != self.apex:
                raise ZoneError(f"{path}: {r.rname} is outside the zone {self.soa.rname}")
            self.names[k][r.rtype].append(r)
        self.names = {k: dict(v) for k, v in self.names.items()}
        # delegations (NS below the apex) and empty non-terminals
        self.cuts: Set[Key] = {k for k, t in self.names.items() if QTYPE.NS in t and k != self.apex}
        self.exists: Set[Key] = set()
        for k in self.names:
            for i in range(len(k) - len(self.apex) + 1):
                self.exists.add(k[i:])
        for k, t in self.names.items():
            if QTYPE.CNAME in t and len(t) > 1:
                raise ZoneError(f"{path}: {t[QTYPE.CNAME][0].rname} has a CNAME and other data")


class Zones:
    def __init__(self, zones: Sequence[Zone]):
        self.zones = sorted(zones, key=lambda z: -len(z.apex))

    def find(self, k: Key) -> Optional[Zone]:
        for z in self.zones:
            if k[len(k) - len(z.apex):] == z.apex:
                return z
        return None

    @classmethod
    def load(cls, paths: Sequence[str]) -> "Zones":
        zones = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    raw = f.read()
            except OSError as e:
                raise ZoneError(f"{p}: {e.strerror}") from None
            try:
                text = raw.decode()
            except UnicodeDecodeError as e:
                line = raw[:e.start].count(b"\n") + 1
                raise ZoneError(f"{p}:{line}: not UTF-8 text") from None
            zones.append(Zone(p, parse_zone(p, text)))
        apexes = [z.apex for z in zones]
        if len(set(apexes)) != len(apexes):
            raise ZoneError("two zone files have the same apex")
        return cls(zones)


def _paren_depth(line: str, depth: int) -> int:
    """Parenthesis depth after one master-file line (quoted strings and
    comments left out)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == ";":
            break
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(depth - 1, 0)
    return depth


def parse_zone(path: str, text: str) -> List[RR]:
    """dnslib's zone parser, with the line of the first record it refuses:
    ZoneError("FILE:LINE: what"). dnslib does not say where; the smallest
    prefix of whole records that fails does (a binary search, only on error)."""
    try:
        return RR.fromZone(text)
    except Exception as e:  # dnslib raises several kinds
        err: Exception = e
    lines = text.splitlines(keepends=True)
    ends, depth = [0], 0          # line counts after which no parenthesis is open
    for i, ln in enumerate(lines):
        depth = _paren_depth(ln, depth)
        if depth == 0:
            ends.append(i + 1)

    def fails(j: int) -> Optional[Exception]:
        try:
            RR.fromZone("".join(lines[:ends[j]]))
        except Exception as e:  # noqa: BLE001
            return e
        return None
    lo, hi = 1, len(ends) - 1
    if hi < 1 or not fails(hi):
        line = ends[-1] + 1       # the whole text fails but no prefix does: an open "("
        what = "unbalanced parentheses" if depth else _what(err)
        raise ZoneError(f"{path}:{min(line, max(len(lines), 1))}: {what}")
    while lo < hi:                # the first j whose prefix fails
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    raise ZoneError(f"{path}:{ends[lo - 1] + 1}: {_what(fails(lo) or err)}")


def _what(e: Exception) -> str:
    """dnslib's complaint about a record, in words."""
    if isinstance(e, IndexError) or not str(e):
        return "incomplete record"
    return str(e)


def _copy(rr: RR, owner: Optional[DNSLabel] = None) -> RR:
    return RR(owner if owner is not None else rr.rname, rr.rtype, rr.rclass, rr.ttl, rr.rdata)


def _reply(req: DNSRecord, aa: int = 0) -> DNSRecord:
    """An empty reply: authoritative only, so no RA; nothing validated, so no AD."""
    r = req.reply(ra=0, aa=aa)
    r.header.ad = 0
    r.rr = []
    return r


def resolve(zones: Zones, req: DNSRecord) -> Optional[DNSRecord]:
    """The answer from the zones, or None when no zone holds the name."""
    q = req.q
    qk = key(q.qname)
    zone = zones.find(qk)
    if zone is None:
        return None
    reply = _reply(req, aa=1)
    qname, qtype = q.qname, q.qtype
    seen: Set[Key] = set()
    for _ in range(CNAME_DEPTH):
        seen.add(qk)
        # a delegation between the apex and the name: referral
        for i in range(len(qk) - len(zone.apex) - 1, -1, -1):
            cut = qk[i:]
            if cut in zone.cuts and not (cut == qk and qtype == QTYPE.DS):
                reply.header.aa = 0
                ns = zone.names[cut][QTYPE.NS]
                reply.auth = [_copy(r) for r in ns]
                for r in ns:
                    glue = zone.names.get(key(r.rdata.label), {})
                    reply.ar += [_copy(g) for t in (QTYPE.A, QTYPE.AAAA) for g in glue.get(t, [])]
                return reply
        node = zone.names.get(qk)
        owner = qname
        if node is None and qk not in zone.exists:
            # RFC 4592: the closest encloser's wildcard, if there is one
            ce = next((qk[i:] for i in range(1, len(qk)) if qk[i:] in zone.exists), zone.apex)
            node = zone.names.get((b"*",) + ce)
            if node is None:
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                reply.auth = [_copy(zone.soa)]
                return reply
        if node is None:                          # an empty non-terminal
            reply.auth = [_copy(zone.soa)]
            return reply
        if QTYPE.CNAME in node and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            cname = node[QTYPE.CNAME][0]
            reply.rr.append(_copy(cname, owner))
            target = cname.rdata.label
            tk = key(target)
            tz = zones.find(tk)
            if tz is None or tk in seen:
                return reply                      # leaves our zones, or a loop
            zone, qk, qname = tz, tk, target
            continue
        if qtype == QTYPE.ANY:
            # RFC 8482: one RRset rather than all of them
            t = QTYPE.SOA if QTYPE.SOA in node else sorted(node)[0]
            reply.rr += [_copy(r, owner) for r in node[t]]
            return reply
        if qtype in node:
            reply.rr += [_copy(r, owner) for r in node[qtype]]
            return reply
        reply.auth = [_copy(zone.soa)]            # NODATA
        return reply
    return reply


class Counters:
    def __init__(self):
        self.c = collections.Counter()

    def view(self) -> Dict[str, int]:
        return dict(self.c)


class DnsServer:
    """Sockets on the listen addresses; the gateway's loop calls on_ready(fd)
    when one is readable and tick() now and then."""

    def __init__(self, zone_paths: Sequence[str], port: int = 53,
                 forward: Optional[Tuple[str, int]] = None):
        self.zone_paths = list(zone_paths)
        self.zones = Zones.load(self.zone_paths)
        self.port = port
        self.forward = forward
        self.stats = Counters()
        self.udp: Dict[str, socket.socket] = {}
        self.tcp: Dict[str, socket.socket] = {}
        self.fds: Dict[int, Tuple[str, object]] = {}
        self.conns: Dict[int, "TcpConn"] = {}
        self.pending: Dict[int, tuple] = {}
        self.fwd_sock: Optional[socket.socket] = None
        self.on_fd_change = lambda fd, add: None
        # (udp?, query without its ID) -> (answer without its ID, rcode counter, truncated?)
        self.cache: Dict[Tuple[bool, bytes], Tuple[bytes, str, bool]] = {}
        log.info("dns: serving %s", ", ".join(
            f"{DNSLabel(z.apex) if z.apex else '.'} ({len(z.names)} names)" for z in self.zones.zones))

    # ------------------------------------------------------------ sockets
    def listen(self, addrs: Sequence[str]) -> None:
        """Serve exactly these addresses (sockets opened and closed)."""
        want = set(addrs)
        for a in list(self.udp):
            if a not in want:
                self._close_addr(a)
        for a in sorted(want - set(self.udp)):
            try:
                self._open_addr(a)
            except OSError as e:
                log.warning("dns: cannot listen on %s port %d: %s", a, self.port, e.strerror)

    def _open_addr(self, a: str) -> None:
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        u = socket.socket(fam, socket.SOCK_DGRAM)
        t = socket.socket(fam, socket.SOCK_STREAM)
        try:
            for s in (u, t):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setblocking(False)
                s.bind((a, self.port))
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            t.listen(128)
        except OSError:
            u.close()
            t.close()
            raise
        self.udp[a], self.tcp[a] = u, t
        self.fds[u.fileno()] = ("udp", u)
        self.fds[t.fileno()] = ("listen", t)
        self.on_fd_change(u.fileno(), True)
        self.on_fd_change(t.fileno(), True)
        log.info("dns: listening on %s port %d (UDP, TCP)", a, self.port)

    def _close_addr(self, a: str) -> None:
        for s in (self.udp.pop(a), self.tcp.pop(a)):
            self.fds.pop(s.fileno(), None)
            self.on_fd_change(s.fileno(), False)
            s.close()
        log.info("dns: no longer listening on %s", a)

    def close(self) -> None:
        for a in list(self.udp):
            self._close_addr(a)
        for c in list(self.conns.values()):
            self._drop(c)
        if self.fwd_sock is not None:
            self.fwd_sock.close()

    def reload(self) -> None:
        """SIGHUP: all the zones at once, or none of them."""
        try:
            zones = Zones.load(self.zone_paths)
        except ZoneError as e:
            log.error("dns: reload refused, still serving the previous zones: %s", e)
            self.stats.c["reload_failed"] += 1
            return
        self.zones = zones
        self.cache.clear()
        self.stats.c["reloads"] += 1
        log.info("dns: zones reloaded (%s)", ", ".join(z.path for z in zones.zones))

    # ------------------------------------------------------------ events
    def on_ready(self, fd: int) -> None:
        """One readable socket. Nothing raised here reaches the gateway."""
        try:
            self._on_ready(fd)
        except Exception as e:  # noqa: BLE001 - the responder must not take the gateway down
            self.stats.c["internal_errors"] += 1
            log.error("dns: %s: %s", type(e).__name__, e)

    def _on_ready(self, fd: int) -> None:
        kind, obj = self.fds.get(fd, (None, None))
        if kind == "udp":
            self._udp_ready(obj)
        elif kind == "listen":
            self._accept(obj)
        elif kind == "tcp":
            self._tcp_ready(obj)
        elif kind == "fwd":
            self._fwd_ready()

    def _udp_ready(self, s: socket.socket) -> None:
        for _ in range(256):
            try:
                data, peer = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            out = self.answer(data, udp=True, reply_to=(s, peer))
            if out is not None:
                try:
                    s.sendto(out, peer)
                except OSError:
                    self.stats.c["send_errors"] += 1

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                s, peer = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self.conns) >= TCP_MAX_CONNS:
                self.stats.c["tcp_refused"] += 1
                s.close()
                continue
            s.setblocking(False)
            c = TcpConn(s)
            self.conns[s.fileno()] = c
            self.fds[s.fileno()] = ("tcp", c)
            self.on_fd_change(s.fileno(), True)
            self.stats.c["tcp_connections"] += 1

    def _tcp_ready(self, c: "TcpConn") -> None:
        try:
            data = c.sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(c)
            return
        c.buf += data
        c.last = time.monotonic()
        while len(c.buf) >= 2:
            n = struct.unpack("!H", c.buf[:2])[0]
            if len(c.buf) < 2 + n:
                break
            msg, c.buf = c.buf[2:2 + n], c.buf[2 + n:]
            self.stats.c["tcp_queries"] += 1
            out = self.answer(msg, udp=False, reply_to=c)
            if out is not None:
                self._tcp_send(c, out)

    def _tcp_send(self, c: "TcpConn", out: bytes) -> None:
        try:
            c.sock.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            self._drop(c)

    def _drop(self, c: "TcpConn") -> None:
        fd = c.sock.fileno()
        self.conns.pop(fd, None)
        self.fds.pop(fd, None)
        self.on_fd_change(fd, False)
        c.sock.close()

    def tick(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns.values() if now - c.last > TCP_IDLE_S]:
            self.stats.c["tcp_idle_closed"] += 1
            self._drop(c)
        for qid, (reply_to, orig, deadline) in list(self.pending.items()):
            if now > deadline:
                del self.pending[qid]
                self.stats.c["forward_timeouts"] += 1
                r = _reply(orig)
                r.header.rcode = RCODE.SERVFAIL
                self._deliver(reply_to, r.pack(), orig)

    # ------------------------------------------------------------ answers
    def answer(self, data: bytes, udp: bool, reply_to) -> Optional[bytes]:
        """The wire answer to one query (None: nothing to send now)."""
        st = self.stats.c
        st["queries"] += 1
        # The same query bytes get the same answer but for the ID: answered
        # from the cache without parsing (zones only change on reload).
        ck = (udp, data[2:])
        hit = self.cache.get(ck)
        if hit is not None:
            st[hit[1]] += 1
            if hit[2]:
                st["truncated"] += 1
            return data[:2] + hit[0]
        try:
            req = DNSRecord.parse(data)
        except (DNSError, Exception):          # dnslib raises several kinds
            st["malformed"] += 1
            if len(data) < 12:
                return None                    # no header: silence
            qid, flags = struct.unpack("!HH", data[:4])
            if flags & 0x8000:
                return None                    # a response: never answer those
            st["rcode_FORMERR"] += 1
            return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | RCODE.FORMERR, 0, 0, 0, 0)
        if req.header.qr:
            st["malformed"] += 1
            return None
        if req.header.opcode != 0 or len(req.questions) != 1:
            r = _reply(req)
            r.header.rcode = RCODE.NOTIMP if req.header.opcode != 0 else RCODE.FORMERR
            return self._finish(req, r, udp)
        if req.q.qclass not in (CLASS.IN, 255):      # IN, ANY
            r = _reply(req)
            r.header.rcode = RCODE.REFUSED
            return self._finish(req, r, udp)
        try:
            r = resolve(self.zones, req)
        except Exception as e:  # noqa: BLE001 - a bug must give SERVFAIL, not silence
            log.error("dns: error resolving %s %s: %s: %s", req.q.qname, QTYPE[req.q.qtype],
                      type(e).__name__, e)
            r = _reply(req)
            r.header.rcode = RCODE.SERVFAIL
        if r is None:
            if self.forward is not None:
                self._forward(req, data, reply_to)
                return None
            r = _reply(req)
            r.header.rcode = RCODE.REFUSED
        out = self._finish(req, r, udp)
        if r.header.rcode != RCODE.SERVFAIL:
            if len(self.cache) >= CACHE_MAX:
                self.cache.clear()
            self.cache[ck] = (out[2:], "rcode_" + RCODE.get(r.header.rcode, str(r.header.rcode)),
                              bool(r.header.tc))
        return out

    def _finish(self, req: DNSRecord, r: DNSRecord, udp: bool) -> bytes:
        opt = next((x for x in req.ar if x.rtype == QTYPE.OPT), None)
        r.ar = [x for x in r.ar if x.rtype != QTYPE.OPT]
        limit = 512
        if opt is not None:
            limit = max(512, min(opt.rclass, UDP_MAX))
            r.add_ar(EDNS0(udp_len=UDP_MAX))
        out = r.pack()
        if udp and len(out) > limit:
            r.rr, r.auth = [], []
            r.ar = [x for x in r.ar if x.rtype == QTYPE.OPT]
            r.header.tc = 1
            out = r.pack()
            self.stats.c["truncated"] += 1
        self.stats.c["rcode_" + RCODE.get(r.header.rcode, str(r.header.rcode))] += 1
        return out

    # ------------------------------------------------------------ forwarding
    def _forward(self, req: DNSRecord, data: bytes, reply_to) -> None:
        if self.fwd_sock is None:
            fam = socket.AF_INET6 if ":" in self.forward[0] else socket.AF_INET
            self.fwd_sock = socket.socket(fam, socket.SOCK_DGRAM)
            self.fwd_sock.setblocking(False)
            self.fds[self.fwd_sock.fileno()] = ("fwd", None)
            self.on_fd_change(self.fwd_sock.fileno(), True)
        qid = random.randrange(1 << 16)
        while qid in self.pending:
            qid = random.randrange(1 << 16)
        self.pending[qid] = (reply_to, req, time.monotonic() + FORWARD_TIMEOUT_S)
        try:
            self.fwd_sock.sendto(struct.pack("!H", qid) + data[2:], self.forward)
            self.stats.c["forwarded"] += 1
        except OSError:
            pass                              # the timeout answers SERVFAIL

    def _fwd_ready(self) -> None:
        while True:
            try:
                data, _ = self.fwd_sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if len(data) < 12:
                continue
            qid = struct.unpack("!H", data[:2])[0]
            entry = self.pending.pop(qid, None)
            if entry is None:
                continue
            reply_to, orig, _ = entry
            self.stats.c["forward_answers"] += 1
            self._deliver(reply_to, struct.pack("!H", orig.header.id) + data[2:], orig)

    def _deliver(self, reply_to, out: bytes, orig: DNSRecord) -> None:
        if isinstance(reply_to, TcpConn):
            if reply_to.sock.fileno() in self.conns:
                self._tcp_send(reply_to, out)
        else:
            s, peer = reply_to
            if len(out) > 512 and not any(x.rtype == QTYPE.OPT for x in orig.ar):
                r = DNSRecord.parse(out)
                r.rr, r.auth, r.ar = [], [], []
                r.header.tc = 1
                out = r.pack()
            try:
                s.sendto(out, peer)
            except OSError:
                pass


class TcpConn:
    __slots__ = ("sock", "buf", "last")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.last = time.monotonic()


def parse_hostport(text: str, default_port: int = 53) -> Tuple[str, int]:
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if t.count(":") == 1:
        host, port = t.split(":")
        return host, int(port)
    return t, default_port


def main(argv=None) -> int:
    """python -m kni_gw.dns --zone FILE [--zone FILE] [--listen ADDR] [--port N]:
    the responder on its own (no gateway), e.g. to check zones or to compare
    its speed with the gateway's."""
    import argparse
    import selectors

    ap = argparse.ArgumentParser(prog="python -m kni_gw.dns", description=main.__doc__.splitlines()[0])
    ap.add_argument("--zone", action="append", required=True)
    ap.add_argument("--listen", action="append", default=None)
    ap.add_argument("--port", type=int, default=53)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="kni-gw-dns: %(message)s")
    try:
        srv = DnsServer(args.zone, args.port)
    except ZoneError as e:
        print(f"kni-gw-dns: error: {e}", file=sys.stderr)
        return 2
    sel = selectors.DefaultSelector()
    srv.on_fd_change = lambda fd, add: sel.register(fd, selectors.EVENT_READ) if add else sel.unregister(fd)
    srv.listen(args.listen or ["127.0.0.1"])
    print("ready", flush=True)
    try:
        while True:
            for k, _ in sel.select(1.0):
                srv.on_ready(k.fd)
            srv.tick()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
