"""Authoritative DNS responder on the vEth addresses.

Zone files are read by dnspython's reader and checked as NSD checks them
(kni_gw/zone.py); the wire format is dnslib's. Answers are the ones NSD 4.6
gives with `minimal-responses: yes` (the differential test compares them
section by section; the deliberate differences are listed in the README):

* AA on answers from the zones; NXDOMAIN versus NOERROR/NODATA with the
  zone's SOA in the authority section, its TTL min(SOA TTL, MINIMUM)
  (RFC 2308 §3); CNAME chains followed through every zone served, a
  dangling one ends in NXDOMAIN (RFC 6604), a loop stops where it repeats;
  DNAME (RFC 6672) synthesises a CNAME; wildcards as RFC 4592 says;
  delegations answered with a referral (NS in authority, addresses from the
  zone in additional, AA clear); DS at a cut answered by the parent side.
* Additional data only where NSD's minimal responses keep it: addresses of
  the NS targets of a referral or of an NS answer (A then AAAA; AAAA first
  for a client on IPv6), from the same zone, wildcards expanded.
* ANY: one RRset (RFC 8482), the first A/AAAA/SOA/MX/PTR at the name.
* EDNS (RFC 6891): OPT echoed with our payload size (1232), DO echoed,
  unknown options ignored, the client's payload honoured (512 without EDNS,
  at most 1232), BADVERS for version > 0, FORMERR for a second OPT or a
  malformed one. Extended DNS Errors (RFC 8914) on REFUSED.
* Over UDP an answer that does not fit keeps the RRsets that fit and sets
  TC; additional RRsets that do not fit are left out; over TCP it is whole.
* AXFR/IXFR: REFUSED (NOTIMP for AXFR over UDP, NOTAUTH for a name that is
  not a zone); other opcodes NOTIMP; classes other than IN/ANY REFUSED.
* Names outside the zones: REFUSED, or with --dns-forward proxied for the
  clients the ACL allows (the networks on the vEth interfaces by default,
  --dns-allow PREFIX to widen). Each forwarded query leaves from a new
  socket on a random port to the upstream, with a random ID; a reply counts
  only from the upstream's address and port, with that ID and the same
  question (RFC 5452); anything else is ignored (SERVFAIL after 2 s).

Malformed queries get FORMERR when their header can be read, else nothing;
an unexpected error while resolving gives SERVFAIL.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import secrets
import socket
import struct
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from dnslib import EDNS0, QTYPE, RCODE, RR, CNAME as CNAME_RD, DNSLabel, DNSQuestion, EDNSOption
from dnslib.label import DNSBuffer, DNSLabelError

from .zone import Key, RRset, Zone, ZoneError, Zones, key_of  # noqa: F401 - ZoneError re-exported

log = logging.getLogger("kni-gw")

UDP_MAX = 1232          # our EDNS payload size (NSD's default, the DNS flag day 2020 value)
MINIMAL_V4, MINIMAL_V6 = 1232, 1220     # additional data stops there over UDP (NSD)
TCP_MAX_CONNS = 64
TCP_IDLE_S = 10.0
FORWARD_TIMEOUT_S = 2.0
FORWARD_MAX_PENDING = 512
CACHE_MAX = 4096        # answers kept, by query bytes; emptied on reload and when full
CHAIN_MAX = 32          # CNAME/DNAME hops followed at most

# header bits
QR, AA, TC, RD, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0020, 0x0010
OPCODE_QUERY, OPCODE_NOTIFY = 0, 4
# sections, in the order they are written
ANSWER, AUTHORITY, ADD_A, ADD_AAAA = 1, 2, 3, 4
CLASS_IN, CLASS_CH, CLASS_ANY = 1, 3, 255
EDE = 15                 # the Extended DNS Error option (RFC 8914)
EDE_OTHER, EDE_PROHIBITED, EDE_NOT_AUTHORITATIVE, EDE_NOT_SUPPORTED = 0, 18, 20, 21
RCODE_NOTAUTH, RCODE_YXDOMAIN = 9, 6
TSIG = 250
_ANY_PREFERRED = (QTYPE.A, QTYPE.AAAA, QTYPE.SOA, QTYPE.MX, QTYPE.PTR)
_ANY_LAST = (QTYPE.DNSKEY, QTYPE.RRSIG, QTYPE.NSEC)
_CHAOS_NAMES = {(b"id", b"server"), (b"hostname", b"bind"), (b"version", b"server"),
                (b"version", b"bind")}


class Malformed(Exception):
    """A query that cannot be read past its header."""


# ---------------------------------------------------------------- queries
class Query:
    __slots__ = ("id", "flags", "qlabels", "qkey", "qtype", "qclass", "edns", "do", "payload",
                 "nscount", "ancount", "qdcount", "arcount", "end")

    def __init__(self):
        self.edns = None          # None, "ok" or "badvers"
        self.do = False
        self.payload = 512


def _read_name(data: bytes, pos: int) -> Tuple[Tuple[bytes, ...], int]:
    """A name without compression (queries have nothing to point back to)."""
    labels = []
    total = 1
    while True:
        if pos >= len(data):
            raise Malformed("name runs past the end")
        n = data[pos]
        if n == 0:
            return tuple(labels), pos + 1
        if n & 0xC0:
            raise Malformed("compression pointer in a query name")
        total += n + 1
        if total > 255 or pos + 1 + n > len(data):
            raise Malformed("name too long or runs past the end")
        labels.append(bytes(data[pos + 1:pos + 1 + n]))
        pos += 1 + n


def _skip_name(data: bytes, pos: int) -> int:
    """Past a name that may end in a compression pointer (records after the question)."""
    while True:
        if pos >= len(data):
            raise Malformed("name runs past the end")
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            if pos + 2 > len(data):
                raise Malformed("pointer runs past the end")
            return pos + 2
        if n & 0xC0:
            raise Malformed("unknown label type")
        pos += 1 + n


def _skip_rr(data: bytes, pos: int) -> int:
    pos = _skip_name(data, pos)
    if pos + 10 > len(data):
        raise Malformed("record runs past the end")
    rdlen = struct.unpack_from("!H", data, pos + 8)[0]
    if pos + 10 + rdlen > len(data):
        raise Malformed("rdata runs past the end")
    return pos + 10 + rdlen


def _read_opt(data: bytes, pos: int, q: Query) -> Optional[int]:
    """An OPT record at pos (owner root, type OPT): fills q.edns and returns
    the position after it; None when the record there is not an OPT;
    Malformed when it is a broken one."""
    if pos + 11 > len(data) or data[pos] != 0 or struct.unpack_from("!H", data, pos + 1)[0] != QTYPE.OPT:
        return None
    payload, _ext, version, flags, rdlen = struct.unpack_from("!HBBHH", data, pos + 3)
    if version != 0:
        q.edns = "badvers"                 # nothing else of it is read (NSD: DO not echoed)
        return pos + 11 + rdlen
    q.do = bool(flags & 0x8000)
    end = pos + 11 + rdlen
    if end > len(data):
        raise Malformed("OPT runs past the end")
    p = pos + 11
    while end - p >= 4:                    # options: read and ignored (no NSID, no cookies)
        _code, olen = struct.unpack_from("!HH", data, p)
        p += 4 + olen
        if p > end:
            raise Malformed("EDNS option runs past the OPT")
    if p != end:
        raise Malformed("trailing bytes in the OPT")
    q.edns = "ok"
    q.payload = payload
    return end


def _header_reply(qid: int, flags: int, rcode: int) -> bytes:
    return struct.pack("!HHHHHH", qid, flags | QR | rcode, 0, 0, 0, 0)


# ---------------------------------------------------------------- answers
class Item:
    """One RRset in a section of the answer being built."""
    __slots__ = ("section", "rrs", "key")

    def __init__(self, section: int, rrs: List[RR], key):
        self.section, self.rrs, self.key = section, rrs, key


class Answer:
    """What one query is answered with, before encoding: the RRsets by
    section (an RRset is added once, in its highest section), AA, rcode,
    EDE, and whether it is a referral."""

    def __init__(self, q: Query, v6: bool):
        self.q = q
        self.v6 = v6
        self.items: List[Item] = []
        self.aa = False
        self.rcode = 0
        self.ede: Optional[Tuple[int, bytes]] = None
        self.referral = False
        self.chain = 0               # CNAMEs and DNAMEs followed
        self.outside = False         # no zone holds the name (REFUSED unless forwarded)

    def add(self, section: int, rrset: RRset, owner: Optional[DNSLabel], okey: Key) -> bool:
        """Add an RRset; False when it is there already (in this or a higher section)."""
        k = (id(rrset), okey)
        for it in self.items:
            if it.key == k:
                if section < it.section:
                    it.section = section
                    return True
                return False
        if owner is None or owner.label == rrset.rrs[0].rname.label:
            rrs = rrset.rrs
        else:
            rrs = [RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in rrset.rrs]
        self.items.append(Item(section, rrs, k))
        return True


def _ancestor_exists(zone: Zone, k: Key) -> Tuple[Key, bool]:
    """The closest encloser of k in the zone, and whether k itself exists."""
    for i in range(0, len(k) - len(zone.apex) + 1):
        if k[i:] in zone.exists:
            return k[i:], i == 0
    return zone.apex, False


class Resolver:
    """Answers from the zones, as NSD's query.c does (minimal responses)."""

    def __init__(self, zones: Zones):
        self.zones = zones

    def answer(self, q: Query, v6: bool = False) -> Answer:
        a = Answer(q, v6)
        self._lookup(a, q.qlabels, q.qkey)
        return a

    # -- the steps, as answer_lookup_zone / answer_authoritative / answer_domain
    def _lookup(self, a: Answer, labels: Tuple[bytes, ...], k: Key) -> None:
        q = a.q
        zone = self.zones.find(k)
        if zone is None:
            if a.chain == 0:
                a.outside = True
                a.rcode = RCODE.REFUSED
                a.ede = (EDE_NOT_AUTHORITATIVE, b"")
            return
        ce, exact = _ancestor_exists(zone, k)
        if exact and q.qtype == QTYPE.DS and ce == zone.apex:
            parent = self.zones.parent_of(zone)
            if parent is None:
                # DS at the apex of a zone whose parent is not served here: NODATA
                a.aa = q.qclass != CLASS_ANY
                self._nodata(a, zone)
                return
            zone = parent
            pce, pexact = _ancestor_exists(zone, k)
            # the child's apex exists for the parent too (NSD keeps one tree)
            ce, exact = (k, True) if not pexact else (pce, pexact)
        cut = self._cut(zone, ce)
        if cut is not None and not (exact and q.qtype == QTYPE.DS and ce == cut):
            a.aa = a.chain > 0
            a.referral = True
            self._add(a, zone, AUTHORITY, zone.names[cut][QTYPE.NS], None, cut)
            return
        a.aa = q.qclass != CLASS_ANY
        self._authoritative(a, zone, labels, k, ce, exact)

    @staticmethod
    def _cut(zone: Zone, ce: Key) -> Optional[Key]:
        """The highest delegation at or above ce, below the apex."""
        if not zone.cuts:
            return None
        for i in range(len(ce) - len(zone.apex) - 1, -1, -1):
            if ce[i:] in zone.cuts:
                return ce[i:]
        return None

    def _authoritative(self, a: Answer, zone: Zone, labels, k: Key, ce: Key, exact: bool) -> None:
        q = a.q
        if zone.dnames:
            # a DNAME above the closest encloser occludes what is below it
            for i in range(1, len(ce) - len(zone.apex)):
                if ce[i:] in zone.dnames:
                    ce, exact = ce[i:], False
                    break
        if exact:
            node = zone.names.get(k, {})
        elif ce in zone.dnames:
            self._dname(a, zone, labels, k, ce)
            return
        else:
            node = zone.names.get((b"*",) + ce)
            if node is None:
                a.rcode = RCODE.NXDOMAIN
                self._soa(a, zone)
                return
        owner = DNSLabel(labels)
        qt = q.qtype
        if qt == QTYPE.ANY:
            pick = next((t for t in node if t in _ANY_PREFERRED), None)
            if pick is None:
                normal = [t for t in node if t not in _ANY_LAST]
                last = [t for t in node if t in _ANY_LAST]
                pick = normal[-1] if normal else last[-1] if last else None
            if pick is None:
                self._nodata(a, zone)
            else:
                self._add(a, zone, ANSWER, node[pick], owner, k)
        elif qt != QTYPE.NSEC3 and qt in node:
            self._add(a, zone, ANSWER, node[qt], owner, k)
        elif QTYPE.CNAME in node:
            cname = node[QTYPE.CNAME]
            if self._add(a, zone, ANSWER, cname, owner, k) and a.chain < CHAIN_MAX:
                a.chain += 1
                tk, tl = cname.targets[0]
                self._lookup(a, tl, tk)
        else:
            self._nodata(a, zone)

    def _dname(self, a: Answer, zone: Zone, labels, k: Key, src: Key) -> None:
        dname = zone.names[src][QTYPE.DNAME]
        dk, dl = dname.targets[0]
        added = self._add(a, zone, ANSWER, dname, None, src)
        if not added and dk[len(dk) - len(src):] == src and len(dk) >= len(src):
            return                                  # a DNAME loop
        if a.chain >= CHAIN_MAX:
            return
        a.chain += 1
        new_labels = tuple(labels[:len(labels) - len(src)]) + dl
        if sum(len(x) + 1 for x in new_labels) + 1 > 255:
            a.rcode = RCODE_YXDOMAIN
            a.ede = (EDE_OTHER, b"DNAME expansion became too large")
            return
        synth = RRset(QTYPE.CNAME)
        synth.rrs.append(RR(DNSLabel(labels), QTYPE.CNAME, 1, dname.rrs[0].ttl, CNAME_RD(DNSLabel(new_labels))))
        a.add(ANSWER, synth, None, k)
        if a.q.qtype == QTYPE.CNAME:
            return
        self._lookup(a, new_labels, key_of(new_labels))

    def _soa(self, a: Answer, zone: Zone) -> None:
        if a.q.qclass != CLASS_ANY:
            a.add(AUTHORITY, zone.soa_neg, None, zone.apex)

    _nodata = _soa

    def _add(self, a: Answer, zone: Zone, section: int, rrset: RRset, owner, okey: Key) -> bool:
        """add_rrset: the RRset, and the addresses of its NS targets where
        minimal responses keep them (referrals, and answers to NS queries)."""
        added = a.add(section, rrset, owner, okey)
        if rrset.rtype == QTYPE.NS and (section == AUTHORITY or a.q.qtype == QTYPE.NS):
            order = ((QTYPE.AAAA, ADD_A), (QTYPE.A, ADD_AAAA)) if a.v6 else \
                    ((QTYPE.A, ADD_A), (QTYPE.AAAA, ADD_AAAA))
            for tk, tl in rrset.targets:
                if not zone.contains(tk):
                    continue
                node = zone.names.get(tk)
                towner = None
                if tk not in zone.exists:
                    ce, _ = _ancestor_exists(zone, tk)
                    node = zone.names.get((b"*",) + ce)
                    towner = DNSLabel(tl)
                if not node:
                    continue
                for t, sec in order:
                    if t in node:
                        a.add(sec, node[t], towner, tk)
        return added


# ---------------------------------------------------------------- encoding
def _opt_rr(q: Query, ext_rcode: int, ede: Optional[Tuple[int, bytes]]) -> RR:
    opts = [EDNSOption(EDE, struct.pack("!H", ede[0]) + ede[1])] if ede else []
    return EDNS0(udp_len=UDP_MAX, ext_rcode=ext_rcode, flags="do" if q.do else "", opts=opts)


def _opt_len(opt: RR) -> int:
    return 11 + sum(4 + len(o.data) for o in opt.rdata)


class _Buffer(DNSBuffer):
    """dnslib's buffer, with names compressed without regard to case, as NSD
    does: a name in the answer that the question also holds (in any case) is
    a pointer to the question's bytes. So an answer's bytes after its
    question do not depend on the case the question was asked in (the C
    answer table, kni_gw/dnsfast.py, relies on it)."""

    def encode_name(self, name):
        if not isinstance(name, DNSLabel):
            name = DNSLabel(name)
        if len(name) > 253:
            raise DNSLabelError("Domain label too long: %r" % name)
        labels = list(name.label)
        while labels:
            k = tuple(x.lower() for x in labels)
            if k in self.names:
                self.pack("!H", self.names[k] | 0xC000)
                return
            self.names[k] = self.offset
            element = labels.pop(0)
            if len(element) > 63:
                raise DNSLabelError("Label component too long: %r" % element)
            self.pack("!B", len(element))
            self.append(element)
        self.append(b"\x00")


def encode(q: Query, a: Answer, udp: bool, question: bool = True) -> Tuple[bytes, bool]:
    """The wire answer, and whether it was truncated. Over UDP the limit is
    the client's EDNS payload (512 without EDNS, at most ours); the RRsets of
    the answer and authority sections are written in order until one does
    not fit (it is left out and TC set); an additional RRset that does not
    fit is left out, and so is every one after its section (TC if a referral
    is left without any address), as NSD does."""
    flags = QR | (q.flags & RD) | a.rcode & 0xF
    if a.aa:
        flags |= AA
    opt = _opt_rr(q, a.rcode >> 4, a.ede) if q.edns == "ok" else None
    reserve = _opt_len(opt) if opt is not None else 0
    if udp:
        limit = max(512, min(q.payload, UDP_MAX)) if q.edns == "ok" else 512
    else:
        limit = 65535
    minimal = MINIMAL_V6 if a.v6 else MINIMAL_V4
    buf = _Buffer()
    buf.pack("!HHHHHH", q.id, flags, 1 if question else 0, 0, 0, 0)
    if question:
        DNSQuestion(DNSLabel(q.qlabels), q.qtype, q.qclass).pack(buf)
    counts = [0, 0, 0, 0, 0]
    tc = done = False
    for sec in (ANSWER, AUTHORITY, ADD_A, ADD_AAAA):
        for it in a.items:
            if it.section != sec:
                continue
            mark, names = buf.offset, dict(buf.names)
            fits = True
            for rr in it.rrs:
                rr.pack(buf)
                if buf.offset > 0x3FFF:                 # beyond what a pointer can reach
                    buf.names = {n: o for n, o in buf.names.items() if o <= 0x3FFF}
                if buf.offset + reserve > limit:
                    fits = False
                    break
            if fits and udp and sec >= ADD_A and buf.offset > minimal:
                fits = False
            if fits:
                counts[sec] += len(it.rrs)
                continue
            del buf.data[mark:]
            buf.offset, buf.names = mark, names
            if sec <= AUTHORITY:
                tc = True
                break
            done = True
        if tc:
            break
        if done:
            if sec == ADD_A and counts[ADD_A] == 0 and a.referral:
                tc = True
            break
    ar = counts[ADD_A] + counts[ADD_AAAA]
    if opt is not None:
        opt.pack(buf)
        ar += 1
    if tc:
        flags |= TC
    buf.update(2, "!HHHHH", flags, 1 if question else 0, counts[ANSWER], counts[AUTHORITY], ar)
    return bytes(buf.data), tc


def _simple(q: Query, rcode: int, question: bool = True,
            ede: Optional[Tuple[int, bytes]] = None) -> bytes:
    """An answer with no records (errors, refusals), EDNS as the query's."""
    a = Answer(q, False)
    a.rcode, a.ede = rcode, ede
    out, _ = encode(q, a, udp=False, question=question)
    return out


# ---------------------------------------------------------------- the server
class Counters:
    def __init__(self):
        self.c = collections.Counter()

    def view(self) -> Dict[str, int]:
        return dict(self.c)


def parse_prefix(text: str):
    """An ACL prefix: 192.0.2.0/24, 2001:db8::/32 or one address."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r}: not a prefix, e.g. 192.0.2.0/24 or 2001:db8::/32") from None


def _addr(a: str):
    ip = ipaddress.ip_address(a.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


class Pending:
    """One query forwarded upstream, on its own socket."""
    __slots__ = ("sock", "qid", "question", "reply_to", "orig_id", "udp_limit", "deadline", "servfail")


class DnsServer:
    """Sockets on the listen addresses; the gateway's loop calls on_ready(fd)
    when one is readable and tick() now and then."""

    def __init__(self, zone_paths: Sequence[str], port: int = 53,
                 forward: Optional[Tuple[str, int]] = None, allow: Iterable = ()):
        self.zone_paths = list(zone_paths)
        self.zones = Zones.load(self.zone_paths)
        self.resolver = Resolver(self.zones)
        self.port = port
        self.forward = forward
        self.allow = list(allow)               # --dns-allow: beside the connected networks
        self.connected: List = []              # the networks on the vEth interfaces
        self.stats = Counters()
        self.udp: Dict[str, socket.socket] = {}
        self.tcp: Dict[str, socket.socket] = {}
        self.fds: Dict[int, Tuple[str, object]] = {}
        self.conns: Dict[int, "TcpConn"] = {}
        self.pending: Dict[int, Pending] = {}  # by socket fd
        self.on_fd_change = lambda fd, add: None
        # (udp?, client on IPv6?, query without its ID) -> (answer without its ID, rcode counter, truncated?)
        self.cache: Dict[Tuple[bool, bool, bytes], Tuple[bytes, str, bool]] = {}
        for w in self.zones.warnings:
            log.warning("dns: %s", w)
        log.info("dns: serving %s", ", ".join(f"{z.name_text()} ({len(z.names)} names)" for z in self.zones.zones))

    # ------------------------------------------------------------ ACL
    def set_connected(self, nets: Iterable) -> None:
        """The networks on the vEth interfaces (the default forwarding ACL)."""
        self.connected = list(nets)

    def allowed(self, peer_addr: str) -> bool:
        try:
            ip = _addr(peer_addr)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in self.connected + self.allow)

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
        for p in list(self.pending.values()):
            self._end_pending(p)

    def reload(self) -> None:
        """SIGHUP: all the zones at once, or none of them."""
        try:
            zones = Zones.load(self.zone_paths)
        except ZoneError as e:
            log.error("dns: reload refused, still serving the previous zones: %s", e)
            self.stats.c["reload_failed"] += 1
            return
        for w in zones.warnings:
            log.warning("dns: %s", w)
        self.install(zones)

    def install(self, zones: Zones) -> None:
        """Answer from these zones from now on."""
        self.zones = zones
        self.resolver = Resolver(zones)
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
            self._fwd_ready(obj)

    def _udp_ready(self, s: socket.socket) -> None:
        for _ in range(256):
            try:
                data, peer = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            out = self.answer(data, udp=True, reply_to=(s, peer), peer=peer[0])
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
            c = TcpConn(s, peer[0])
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
            out = self.answer(msg, udp=False, reply_to=c, peer=c.peer)
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
        for p in [p for p in self.pending.values() if now > p.deadline]:
            self.stats.c["forward_timeouts"] += 1
            self._end_pending(p)
            self._deliver(p, p.servfail)

    # ------------------------------------------------------------ answers
    def answer(self, data: bytes, udp: bool, reply_to=None, peer: str = "") -> Optional[bytes]:
        """The wire answer to one query (None: nothing to send now)."""
        st = self.stats.c
        st["queries"] += 1
        v6 = ":" in peer and not peer.startswith("::ffff:")
        # The same query bytes get the same answer but for the ID: answered
        # from the cache without parsing (zones only change on reload).
        ck = (udp, v6, bytes(data[2:]))
        hit = self.cache.get(ck)
        if hit is not None:
            st[hit[1]] += 1
            if hit[2]:
                st["truncated"] += 1
            return bytes(data[:2]) + hit[0]
        try:
            out, rcode, tc, cacheable = self._answer(data, udp, v6, reply_to, peer)
        except Exception as e:  # noqa: BLE001 - a bug must give SERVFAIL, not silence
            st["internal_errors"] += 1
            log.error("dns: error answering a query: %s: %s", type(e).__name__, e)
            if len(data) < 12:
                return None
            qid, flags = struct.unpack_from("!HH", data)
            return _header_reply(qid, flags & (RD | 0x7800), RCODE.SERVFAIL)
        if out is None:
            return None
        st["rcode_" + RCODE.get(rcode, str(rcode))] += 1
        if tc:
            st["truncated"] += 1
        if cacheable:
            if len(self.cache) >= CACHE_MAX:
                self.cache.clear()
            self.cache[ck] = (out[2:], "rcode_" + RCODE.get(rcode, str(rcode)), tc)
        return out

    def _answer(self, data: bytes, udp: bool, v6: bool, reply_to, peer: str):
        """(wire answer or None, rcode, truncated, cacheable)."""
        st = self.stats.c
        if len(data) < 12:
            st["malformed"] += 1
            return None, 0, False, False
        qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
        if flags & QR:
            st["malformed"] += 1                   # a response: never answered
            return None, 0, False, False
        opcode = (flags >> 11) & 0xF
        if opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
            return _header_reply(qid, flags & ~(AD | 0xF), RCODE.NOTIMP), RCODE.NOTIMP, False, True

        def formerr(keep_rd: bool = True):
            st["malformed"] += 1
            return (_header_reply(qid, (flags & RD if keep_rd else 0) | (opcode << 11), RCODE.FORMERR),
                    RCODE.FORMERR, False, True)

        q = Query()
        q.id, q.flags = qid, flags
        try:
            if flags & 0xF:
                raise Malformed("rcode set in a query")
            q.qlabels, pos = _read_name(data, 12)
            if pos + 4 > len(data):
                raise Malformed("question runs past the end")
            q.qtype, q.qclass = struct.unpack_from("!HH", data, pos)
            pos += 4
        except Malformed:
            return formerr()
        q.qkey = key_of(q.qlabels)
        if opcode == OPCODE_NOTIFY:
            # no transfers here: NOTIFY for a zone is refused, else the name is unknown
            rc = RCODE.REFUSED if any(z.apex == q.qkey for z in self.zones.zones) else RCODE.NXDOMAIN
            return _header_reply(qid, flags & ~(AD | 0xF), rc), rc, False, True
        if qd != 1:
            if qd == 0 and an == 0 and ns == 0 and ar == 1:
                # an OPT alone (RFC 7873 §5.4, a client asking for a server
                # cookie): NOERROR, no question, our OPT
                try:
                    if _read_opt(data, 12, q) is not None and q.edns == "ok":
                        return _simple(q, RCODE.NOERROR, question=False), RCODE.NOERROR, False, True
                except Malformed:
                    pass
            return formerr(keep_rd=False)
        try:
            if an != 0 or (q.qtype != QTYPE.IXFR and ns != 0):
                raise Malformed("records in the answer or authority section")
            if q.qtype == QTYPE.IXFR:
                if ns > 64:
                    raise Malformed("too many records in an IXFR query")
                for _ in range(ns):
                    pos = _skip_rr(data, pos)
            left = ar
            if left:
                end = _read_opt(data, pos, q)
                if end is not None:
                    pos, left = end, left - 1
            if left == 1 and q.edns != "badvers":
                _skip_rr(data, pos)
                if struct.unpack_from("!H", data, _skip_name(data, pos))[0] == TSIG:
                    # a TSIG we have no key for (RFC 8945 §5.2: BADKEY, NOTAUTH)
                    return (_header_reply(qid, flags & ~(AD | 0xF), RCODE_NOTAUTH), RCODE_NOTAUTH,
                            False, True)
                raise Malformed("a record other than OPT in the additional section")
            if left > 0 and q.edns != "badvers":
                raise Malformed("records other than OPT in the additional section")
        except (Malformed, struct.error):
            return formerr()
        if q.edns == "badvers":
            # BADVERS (16): rcode 0 in the header, 1 in the OPT; the question kept
            a = Answer(q, v6)
            a.rcode = 16
            q.edns = "ok"
            out, _ = encode(q, a, udp)
            out = out[:2] + struct.pack("!H", (flags & ~(AD | 0xF)) | QR) + out[4:]
            return out, 16, False, True
        # classes: IN and ANY are answered; CHAOS refused (no version or identity)
        if q.qclass not in (CLASS_IN, CLASS_ANY):
            if q.qclass == CLASS_CH:
                named = q.qtype in (QTYPE.TXT, QTYPE.ANY) and q.qkey in _CHAOS_NAMES
                return (_simple(q, RCODE.REFUSED, ede=(EDE_PROHIBITED if named else EDE_NOT_SUPPORTED, b"")),
                        RCODE.REFUSED, False, True)
            return (_simple(q, RCODE.REFUSED, question=False, ede=(EDE_NOT_SUPPORTED, b"")),
                    RCODE.REFUSED, False, True)
        if q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            if q.qtype == QTYPE.AXFR and udp:
                return _simple(q, RCODE.NOTIMP), RCODE.NOTIMP, False, True
            if not any(z.apex == q.qkey for z in self.zones.zones):
                return _simple(q, RCODE_NOTAUTH), RCODE_NOTAUTH, False, True
            self.stats.c["transfers_refused"] += 1
            return (_simple(q, RCODE.REFUSED, ede=(EDE_PROHIBITED, b"")), RCODE.REFUSED, False, True)
        a = self.resolver.answer(q, v6)
        if a.outside and self.forward is not None:
            if self.allowed(peer):
                self._forward(q, data, udp, reply_to)
                return None, 0, False, False
            self.stats.c["forward_refused"] += 1
            out, tc = encode(q, a, udp)
            return out, a.rcode, tc, False
        out, tc = encode(q, a, udp)
        return out, a.rcode, tc, True

    # ------------------------------------------------------------ forwarding
    def _forward(self, q: Query, data: bytes, udp: bool, reply_to) -> None:
        st = self.stats.c
        a = Answer(q, False)
        a.rcode = RCODE.SERVFAIL
        servfail, _ = encode(q, a, udp)
        if len(self.pending) >= FORWARD_MAX_PENDING:
            st["forward_overload"] += 1
            self._send_to(reply_to, servfail)
            return
        host, port = self.forward
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            _bind_random_port(s, fam)
            # connected: the kernel passes up only datagrams from the upstream's address and port
            s.connect((host, port))
            qid = secrets.randbelow(1 << 16)
            s.send(struct.pack("!H", qid) + bytes(data[2:]))
        except OSError as e:
            s.close()
            st["forward_errors"] += 1
            log.debug("dns: forwarding to %s port %d: %s", host, port, e.strerror)
            self._send_to(reply_to, servfail)
            return
        p = Pending()
        p.sock, p.qid, p.reply_to, p.orig_id = s, qid, reply_to, q.id
        p.question = (q.qkey, q.qtype, q.qclass)
        p.udp_limit = (max(512, min(q.payload, UDP_MAX)) if q.edns == "ok" else 512) if udp else 0
        p.deadline = time.monotonic() + FORWARD_TIMEOUT_S
        p.servfail = servfail
        self.pending[s.fileno()] = p
        self.fds[s.fileno()] = ("fwd", p)
        self.on_fd_change(s.fileno(), True)
        st["forwarded"] += 1

    def _fwd_ready(self, p: Pending) -> None:
        st = self.stats.c
        for _ in range(16):
            try:
                data, src = p.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                       # e.g. ICMP port unreachable: the timeout answers
                continue
            if not _same_peer(src, self.forward) or not _matches(data, p):
                st["forward_mismatch"] += 1
                continue
            st["forward_answers"] += 1
            self._end_pending(p)
            out = struct.pack("!H", p.orig_id) + data[2:]
            if p.udp_limit and len(out) > p.udp_limit:
                out = _truncated(out)
            self._deliver(p, out)
            return

    def _end_pending(self, p: Pending) -> None:
        fd = p.sock.fileno()
        if self.pending.pop(fd, None) is not None:
            self.fds.pop(fd, None)
            self.on_fd_change(fd, False)
            p.sock.close()

    def _deliver(self, p: Pending, out: bytes) -> None:
        self._send_to(p.reply_to, out)

    def _send_to(self, reply_to, out: bytes) -> None:
        if isinstance(reply_to, TcpConn):
            if reply_to.sock.fileno() in self.conns:
                self._tcp_send(reply_to, out)
        elif reply_to is not None:
            s, peer = reply_to
            try:
                s.sendto(out, peer)
            except OSError:
                self.stats.c["send_errors"] += 1


def _bind_random_port(s: socket.socket, fam: int) -> None:
    """A source port drawn at random from 1024-65535 (RFC 5452 §9.2), not
    the kernel's next ephemeral port; a few tries, then the kernel's."""
    any_addr = "::" if fam == socket.AF_INET6 else "0.0.0.0"
    for _ in range(8):
        try:
            s.bind((any_addr, 1024 + secrets.randbelow(65536 - 1024)))
            return
        except OSError:
            continue
    s.bind((any_addr, 0))


def _same_peer(src, upstream: Tuple[str, int]) -> bool:
    try:
        return _addr(src[0]) == _addr(upstream[0]) and src[1] == upstream[1]
    except ValueError:
        return False


def _matches(data: bytes, p: Pending) -> bool:
    """The upstream's reply to this query: a response, our ID, our question."""
    if len(data) < 12:
        return False
    qid, flags, qd = struct.unpack_from("!HHH", data)
    if qid != p.qid or not flags & QR or qd != 1:
        return False
    try:
        labels, pos = _read_name(data, 12)
        qtype, qclass = struct.unpack_from("!HH", data, pos)
    except (Malformed, struct.error):
        return False
    return (key_of(labels), qtype, qclass) == p.question


def _truncated(out: bytes) -> bytes:
    """A forwarded answer too large for the client over UDP: header and
    question only, TC set (the client retries over TCP)."""
    try:
        _, pos = _read_name(out, 12)
        end = pos + 4
    except Malformed:
        end = 12
    qid, flags = struct.unpack_from("!HH", out)
    return struct.pack("!HHHHHH", qid, flags | TC, 1 if end > 12 else 0, 0, 0, 0) + out[12:end]


class TcpConn:
    __slots__ = ("sock", "buf", "last", "peer")

    def __init__(self, sock: socket.socket, peer: str = ""):
        self.sock = sock
        self.buf = b""
        self.last = time.monotonic()
        self.peer = peer


def parse_hostport(text: str, default_port: int = 53) -> Tuple[str, int]:
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if t.count(":") == 1:
        host, port = t.split(":")
        return host, int(port)
    return t, default_port


def interface_networks(addrs: Iterable[str]) -> List:
    """The networks of the local interfaces that carry these addresses (the
    standalone responder's default forwarding ACL); an address found on no
    interface stands for itself."""
    local = []
    try:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for m in ipr.get_addr():
                a = m.get_attr("IFA_ADDRESS")
                if a:
                    local.append(ipaddress.ip_network(f"{a.split('%')[0]}/{m['prefixlen']}", strict=False))
    except (ImportError, OSError, ValueError):
        pass
    nets = []
    for a in addrs:
        ip = _addr(a)
        nets.append(next((n for n in local if n.version == ip.version and ip in n), ipaddress.ip_network(ip)))
    return nets


def main(argv=None) -> int:
    """python -m kni_gw.dns --zone FILE [--zone FILE] [--listen ADDR] [--port N]
    [--forward ADDR[:PORT]] [--allow PREFIX]: the responder on its own (no
    gateway), e.g. to check zones or to compare it with another server."""
    import argparse
    import selectors

    ap = argparse.ArgumentParser(prog="python -m kni_gw.dns", description=main.__doc__.splitlines()[0])
    ap.add_argument("--zone", action="append", required=True, metavar="FILE")
    ap.add_argument("--listen", action="append", default=None, metavar="ADDR")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--forward", "--dns-forward", default=None, metavar="ADDR[:PORT]",
                    help="proxy names outside the zones there (else REFUSED)")
    ap.add_argument("--allow", "--dns-allow", action="append", default=[], metavar="PREFIX",
                    help="clients allowed to use --forward, beside the networks of the listen "
                         "addresses; repeatable")
    ap.add_argument("--check", action="store_true", help="load the zones, print warnings, exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="kni-gw-dns: %(message)s")
    if not 1 <= args.port <= 65535:
        print(f"kni-gw-dns: error: --port {args.port}: 1-65535", file=sys.stderr)
        return 2
    try:
        allow = [parse_prefix(a) for a in args.allow]
        forward = parse_hostport(args.forward) if args.forward else None
        if forward:
            ipaddress.ip_address(forward[0])
    except ValueError as e:
        print(f"kni-gw-dns: error: {e}", file=sys.stderr)
        return 2
    if allow and not forward:
        print("kni-gw-dns: error: --allow only matters with --forward", file=sys.stderr)
        return 2
    try:
        srv = DnsServer(args.zone, args.port, forward, allow)
    except ZoneError as e:
        print(f"kni-gw-dns: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    sel = selectors.DefaultSelector()
    srv.on_fd_change = lambda fd, add: sel.register(fd, selectors.EVENT_READ) if add else sel.unregister(fd)
    listen = args.listen or ["127.0.0.1"]
    srv.set_connected(interface_networks(listen))
    srv.listen(listen)
    if not srv.udp:
        print("kni-gw-dns: error: could not listen on any address", file=sys.stderr)
        return 1
    print("ready", flush=True)
    try:
        while True:
            for k, _ in sel.select(0.2):
                srv.on_ready(k.fd)
            srv.tick()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
