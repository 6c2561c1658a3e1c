"""DNS answers in C: the responder's answers compiled into the rx lcores'
answer table (csrc/datapath/dns.h, csrc/control/dns.c).

The responder (kni_gw/dns.py) stays the authority. At every zone load and
reload it is asked, through its own query path, the questions that can be
answered without thinking, and what it says is what C sends:

* every name the zones hold (owners, empty non-terminals), for each type
  present there and for A and AAAA (NODATA where absent); not ANY (left to
  the responder, behind the `dns` policer: an ANY flood is the classic
  amplifier), not wildcard expansions or NXDOMAIN (the names cannot be
  listed);
* class IN, over UDP, for a client on IPv4 and one on IPv6 (their additional
  sections can differ), without EDNS and with a plain OPT (version 0, no
  flags, no options);
* with EDNS the answer is compiled for our payload size (1232) and again for
  512: when both are the same it is good for any client payload, otherwise
  only for clients offering at least 1232 (the others are punted).

An answer's bytes after its question do not depend on the case the name was
asked in (the responder compresses without regard to case, as NSD does), so
C keeps the question as asked and writes the compiled rest. A compiled
answer that would still depend on it (a DNAME substitution copies the
query's labels) is checked and left out.
"""
from __future__ import annotations

import copy
import logging
import os
import struct
import threading
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from dnslib import QTYPE

from .dns import ADD_A, CLASS_IN, RD, UDP_MAX, Counters, DnsServer, Query, Zones, ZoneError
from .errors import DataplaneError

log = logging.getLogger("kni-gw")

ALWAYS = (QTYPE.A, QTYPE.AAAA)
NEVER = (QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR, QTYPE.OPT)
NO_ANSWER = 0xFFFF           # min_payload of a family the entry has no answer for


class Ans(NamedTuple):
    min_payload: int     # an EDNS query offering less is punted
    flags: int           # the answer's header flags, RD clear (C copies the query's)
    counts: Tuple[int, int, int]   # answer, authority, additional
    body: bytes          # the answer after its question


class Entry(NamedTuple):
    name: bytes          # the question name in wire form, lower case
    qtype: int
    edns: bool
    v4: Optional[Ans]
    v6: Optional[Ans]


def _wire(labels) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


def _query(name: bytes, qtype: int, edns_payload: int = 0) -> bytes:
    q = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1 if edns_payload else 0) + name + \
        struct.pack("!HH", qtype, CLASS_IN)
    if edns_payload:
        q += b"\0" + struct.pack("!HHIH", QTYPE.OPT, edns_payload, 0, 0)
    return q


def _ask(server: DnsServer, name: bytes, qtype: int, v6: bool, payload: int) -> Optional[Ans]:
    """The responder's answer, through its own query path, split as the
    table keeps it; None when it is not one C may give (not cached by the
    responder: forwarded, or refused to this client; no question echoed)."""
    data = _query(name, qtype, payload)
    out, _rcode, _tc, cacheable = server._answer(data, True, v6, None, "::1" if v6 else "127.0.0.1")
    qlen = len(name) + 4
    if out is None or not cacheable or len(out) < 12 + qlen or out[4:6] != b"\0\1" or \
            out[12:12 + qlen] != data[12:12 + qlen]:
        return None
    flags, _qd, an, ns, ar = struct.unpack_from("!HHHHH", out, 2)
    return Ans(0, flags & ~RD, (an, ns, ar), out[12 + qlen:])


def _needs_v6(server: DnsServer, labels, qtype: int) -> bool:
    """Whether a client on IPv6 can get another answer: only the additional
    section differs (AAAA first, NSD's smaller limit), and only NS records
    bring one (referrals, NS answers)."""
    q = Query()
    q.id, q.flags, q.qlabels, q.qkey, q.qtype, q.qclass = 0, 0, tuple(labels), tuple(labels), qtype, CLASS_IN
    a = server.resolver.answer(q, False)
    return a.referral or any(it.section >= ADD_A for it in a.items)


def _family(server: DnsServer, name: bytes, qtype: int, v6: bool) -> Tuple[Optional[Ans], Optional[Ans]]:
    """(without EDNS, with EDNS) for one family of client."""
    plain = _ask(server, name, qtype, v6, 0)
    full = _ask(server, name, qtype, v6, UDP_MAX)
    if full is not None and 12 + len(name) + 4 + len(full.body) > 512:
        # what a client offering 512 gets may be cut: the same answer then
        # holds for any payload size, else only for ours
        small = _ask(server, name, qtype, v6, 512)
        full = full._replace(min_payload=512 if small == full else UDP_MAX)
    elif full is not None:
        full = full._replace(min_payload=512)
    return plain, full


def _questions(zones: Zones) -> Iterator[Tuple[Tuple[bytes, ...], int]]:
    seen = set()
    for z in zones.zones:
        for k in sorted(z.exists, key=len):
            if k in seen:
                continue                 # also the apex of a zone served below
            seen.add(k)
            node = z.names.get(k, {})
            for t in list(ALWAYS) + [t for t in node if t not in ALWAYS and t not in NEVER]:
                yield k, t


def responder_view(server: DnsServer, zones: Zones) -> DnsServer:
    """The responder as it will answer once these zones are installed, with
    counters of its own and nothing forwarded: what the compiler asks."""
    view = copy.copy(server)
    view.zones = zones
    view.resolver = type(server.resolver)(zones)
    view.stats = Counters()
    view.forward = None
    view.cache = {}
    # none of the server's sockets: the view only ever answers
    view.udp, view.tcp, view.fds, view.conns, view.pending = {}, {}, {}, {}, {}
    return view


def compile_answers(view: DnsServer, cancelled: Callable[[], bool] = lambda: False) -> List[Entry]:
    """The answer table's entries for the zones `view` serves."""
    out: List[Entry] = []
    dnames = any(z.dnames for z in view.zones.zones)
    for k, t in _questions(view.zones):
        if cancelled():
            return []
        name = _wire(k)
        if len(name) > 255:
            continue
        if dnames:
            # the answer to the question asked in upper case must be the same
            # but for the question (a DNAME substitution copies its labels)
            if _ask(view, name, t, False, 0) != _ask(view, _wire(x.upper() for x in k), t, False, 0):
                continue
        v4 = _family(view, name, t, False)
        v6 = _family(view, name, t, True) if _needs_v6(view, k, t) else v4
        for e in (0, 1):
            if v4[e] is not None or v6[e] is not None:
                out.append(Entry(name, t, bool(e), v4[e], v6[e]))
    return out


class Packed(NamedTuple):
    """The entries in the C table's input form (kni_gw.h struct kg_dns_entry)."""
    entries: object      # cdata struct kg_dns_entry[]
    n: int
    names: bytes
    bodies: bytes


def pack(entries: Sequence[Entry]) -> Packed:
    from ._dataplane import ffi
    arr = ffi.new("struct kg_dns_entry[]", max(len(entries), 1))
    names: List[bytes] = []
    noff = 0
    bodies: Dict[bytes, int] = {}
    blob: List[bytes] = []
    boff = 0
    for i, e in enumerate(entries):
        c = arr[i]
        c.name_off, c.name_len, c.qtype, c.edns = noff, len(e.name), e.qtype, int(e.edns)
        names.append(e.name)
        noff += len(e.name)
        for fam, a in enumerate((e.v4, e.v6)):
            ca = c.ans[fam]
            if a is None:
                ca.min_payload = NO_ANSWER
                continue
            off = bodies.get(a.body)
            if off is None:
                off = bodies[a.body] = boff
                blob.append(a.body)
                boff += len(a.body)
            ca.body_off, ca.body_len, ca.flags = off, len(a.body), a.flags
            ca.an, ca.ns, ca.ar = a.counts
            ca.min_payload = a.min_payload
    return Packed(arr, len(entries), b"".join(names), b"".join(blob))


class DnsFast:
    """The C answer table of one responder: compiled off the main loop at
    start and at each reload (the responder switches to the new zones when
    their table is ready, so that C and the responder never answer from two
    different zone sets for longer than a swap), republished when the
    addresses it listens on change."""

    def __init__(self, dp, server: DnsServer, rrl: int, slip: int):
        self.dp = dp
        self.server = server
        self.rrl, self.slip = rrl, slip
        self.packed: Optional[Packed] = None
        self.addrs: Tuple[str, ...] = ()
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.lock = threading.Lock()           # generation, result, closed
        self.closed = False
        self.job: Optional[threading.Thread] = None
        self.generation = 0
        self.result: Optional[Tuple[int, Zones, Optional[Packed], float, int]] = None
        self.stats = {"entries": 0, "compile_seconds": 0.0, "compiles": 0, "memory": 0}

    def fileno(self) -> int:
        return self.rfd

    def start(self) -> None:
        self._compile(self.server.zones, install=False)

    def reload(self) -> None:
        """SIGHUP: the zones are read now (refused in one line, the old ones
        kept, if they cannot be served); installed when compiled."""
        try:
            zones = Zones.load(self.server.zone_paths)
        except ZoneError as e:
            log.error("dns: reload refused, still serving the previous zones: %s", e)
            self.server.stats.c["reload_failed"] += 1
            return
        for w in zones.warnings:
            log.warning("dns: %s", w)
        self._compile(zones, install=True)

    def _compile(self, zones: Zones, install: bool) -> None:
        with self.lock:
            self.generation += 1
            gen = self.generation
        view = responder_view(self.server, zones)

        def run() -> None:
            t0 = time.monotonic()
            try:
                entries = compile_answers(view, lambda: gen != self.generation)
                packed = pack(entries) if gen == self.generation else None
            except Exception as e:  # noqa: BLE001 - the responder still answers everything
                log.error("dns: compiling the answer table failed: %s: %s", type(e).__name__, e)
                packed, entries = None, []
            with self.lock:
                # a newer compile (a second SIGHUP) or the end: this one is void
                if gen != self.generation or self.closed:
                    return
                self.result = (gen, zones, packed, time.monotonic() - t0, install)
                os.write(self.wfd, b"x")

        self.job = threading.Thread(target=run, name="dns-compile", daemon=True)
        self.job.start()

    def on_readable(self) -> None:
        """The compiler finished: install its zones and table."""
        try:
            while os.read(self.rfd, 64):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            res, self.result = self.result, None
            if res is None or res[0] != self.generation:
                return
        _gen, zones, packed, seconds, install = res
        self.stats["compile_seconds"] = round(seconds, 3)
        self.stats["compiles"] += 1
        # the table first, then the responder: both switch within the
        # lcores' quiescence
        self.packed = packed
        published = packed is not None and self._publish()
        if not published:
            self.packed = None
            self.dp.dns_unpublish()
        if install:
            self.server.install(zones)
        if published:
            log.info("dns: %d answers compiled into the rx lcores' table in %.2f s (%d KiB)",
                     packed.n, seconds, self.stats["memory"] // 1024)

    def follow(self, addrs: Sequence[str]) -> None:
        """The addresses the responder listens on now."""
        a = tuple(sorted(addrs))
        if a != self.addrs:
            self.addrs = a
            if self.packed is not None and not self._publish():
                self.packed = None
                self.dp.dns_unpublish()

    def _publish(self) -> bool:
        """The packed table, on the current addresses; False (logged) when C
        cannot take it: the responder then answers everything."""
        p = self.packed
        try:
            self.dp.dns_publish(self.server.port, self.addrs, self.rrl, self.slip,
                                p.entries, p.n, p.names, p.bodies)
        except DataplaneError as e:
            log.error("dns: the answer table cannot be published (%s): every query goes to the "
                      "responder", e)
            self.stats.update(entries=0, memory=self.dp.dns_memory())
            return False
        self.stats["entries"] = p.n
        self.stats["memory"] = self.dp.dns_memory()
        return True

    def view(self) -> Dict[str, object]:
        return dict(self.stats, rrl=self.rrl, rrl_slip=self.slip, addresses=len(self.addrs))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.generation += 1
            os.close(self.rfd)
            os.close(self.wfd)
        self.dp.dns_unpublish()
