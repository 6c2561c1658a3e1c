"""Zone files for the DNS responder: read by dnspython's zone-file reader,
kept as dnslib records (the wire format), checked as NSD checks them.

Which library does what, and why:

* dnspython (`dns.zonefile.Reader`) reads the master-file syntax: $ORIGIN,
  $TTL, $INCLUDE, TTL units (1h30m), class and TTL in either order, \\DDD
  (decimal) and \\X escapes in names and strings, parentheses, comments,
  relative names, RFC 3597 unknown types. It is the reference reader in
  Python; a hand-written one gets these wrong (dnslib's read \\DDD as octal
  and refused TTL units).
* dnslib stays the wire format: each record is turned into a dnslib RR
  once, at load, and answers are packed by dnslib.
* The checks NSD makes at load (nsd-checkzone) are made here, on every
  record with its file and line: one SOA, at the apex; no data outside the
  zone (out-of-zone glue included); CNAME beside other data; two CNAMEs or
  DNAMEs at a name; data below a DNAME. Like NSD, a TTL that differs inside
  an RRset is a warning and each record keeps its own TTL. kni-gw also warns
  when an NS record's target is inside the zone but has no address (NSD
  loads that silently): a referral to it carries no glue.

Like NSD, a record without a TTL before any $TTL gets 3600 s, and $INCLUDE
paths are relative to the directory of the zone file (NSD: its zonesdir).
"""
from __future__ import annotations

import collections
import os
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile
from dnslib import CNAME, MX, NS, PTR, QTYPE, RD, RR, SOA, SRV, DNSLabel

Key = Tuple[bytes, ...]

DEFAULT_TTL = 3600          # NSD's TTL for records before any $TTL
# types whose rdata names are compressed on the wire (RFC 1035 types, as NSD)
_NAME_TYPES = {QTYPE.CNAME: CNAME, QTYPE.NS: NS, QTYPE.PTR: PTR}
# rdata types that point at another name, and where in the rdata that name is
TARGET_OF = {QTYPE.NS: "target", QTYPE.CNAME: "target", QTYPE.DNAME: "target",
             QTYPE.MX: "exchange", QTYPE.SRV: "target"}
# beside a CNAME, only DNSSEC records may exist (RFC 2181 §10.1, RFC 4035)
_CNAME_NEIGHBOURS = {QTYPE.CNAME, QTYPE.RRSIG, QTYPE.NSEC}


class ZoneError(Exception):
    """A zone file that cannot be served: one line, `file:line: what`."""


def key_of(labels: Sequence[bytes]) -> Key:
    return tuple(x.lower() for x in labels)


def _labels(name: dns.name.Name) -> Tuple[bytes, ...]:
    return tuple(name.labels[:-1]) if name.is_absolute() else tuple(name.labels)


def _text(labels: Sequence[bytes]) -> str:
    return dns.name.Name(tuple(labels) + (b"",)).to_text()


class RRset:
    """The records of one type at one name, in file order, each with its own
    TTL (as NSD serves them). `targets` are the names the records point at
    (NS, MX, SRV, CNAME, DNAME), as (key, labels)."""
    __slots__ = ("rtype", "rrs", "targets")

    def __init__(self, rtype: int):
        self.rtype = rtype
        self.rrs: List[RR] = []
        self.targets: List[Tuple[Key, Tuple[bytes, ...]]] = []


Node = Dict[int, RRset]


class Zone:
    def __init__(self, path: str, apex: Tuple[bytes, ...], names: Dict[Key, Node],
                 warnings: List[str]):
        self.path = path
        self.apex_labels = apex
        self.apex = key_of(apex)
        self.label = DNSLabel(apex)
        self.names = names
        self.warnings = warnings
        soa = names[self.apex][QTYPE.SOA].rrs[0]
        self.soa = soa
        # negative answers: the SOA with TTL min(SOA TTL, MINIMUM) (RFC 2308 §3)
        self.soa_neg = RRset(QTYPE.SOA)
        self.soa_neg.rrs.append(RR(soa.rname, QTYPE.SOA, soa.rclass,
                                   min(soa.ttl, soa.rdata.times[4]), soa.rdata))
        # every name that exists, empty non-terminals included
        self.exists: Set[Key] = set()
        for k in names:
            for i in range(len(k) - len(self.apex) + 1):
                self.exists.add(k[i:])
        # delegations (NS below the apex) and DNAMEs
        self.cuts: Set[Key] = {k for k, n in names.items() if QTYPE.NS in n and k != self.apex}
        self.dnames: Set[Key] = {k for k, n in names.items() if QTYPE.DNAME in n}

    def contains(self, k: Key) -> bool:
        return k[len(k) - len(self.apex):] == self.apex if len(k) >= len(self.apex) else False

    def name_text(self) -> str:
        return _text(self.apex_labels)


class _Tokenizer(dns.tokenizer.Tokenizer):
    """dnspython's tokenizer; the file name after an $INCLUDE at the start of
    a line is made relative to the zone file's directory, not to the cwd."""
    base = "."
    after_include = False
    entry: Optional[Tuple[str, int]] = None

    def get(self, want_leading=False, want_comment=False):
        if want_leading and not self.ungotten_token:
            self.entry = (self.filename, self.line_number)
        tok = super().get(want_leading, want_comment)
        if self.after_include and tok.is_identifier() and not os.path.isabs(tok.value):
            tok = dns.tokenizer.Token(tok.ttype, os.path.join(self.base, tok.value), tok.has_escape)
        self.after_include = want_leading and tok.is_identifier() and tok.value.upper() == "$INCLUDE"
        return tok


class _Reader(dns.zonefile.Reader):
    """dnspython's reader; every tokenizer it makes (one per $INCLUDE) is ours."""

    def __init__(self, base: str, *args, **kw):
        self._base = base
        super().__init__(*args, **kw)

    @property
    def line(self) -> Tuple[str, int]:
        """Where the entry being read (a record or a directive) starts."""
        return self._tok.entry or self._tok.where()

    @property
    def tok(self):
        return self._tok

    @tok.setter
    def tok(self, t):
        if not isinstance(t, _Tokenizer):
            t.__class__ = _Tokenizer
        t.base = self._base
        self._tok = t


class _Collector:
    """What dnspython's reader writes to: every record, in file order, with
    the file and line it came from. The reader's own bookkeeping (which
    merges RRsets, drops names outside the origin, keeps one CNAME) is not
    used: the NSD checks below need each record."""

    def __init__(self):
        self.manager = self
        self.reader: Optional[_Reader] = None
        self.records: List[tuple] = []

    # the transaction-manager side the reader asks
    def origin_information(self):
        return dns.name.root, False, dns.name.root

    def get_class(self):
        return dns.rdataclass.IN

    # the transaction side
    def check_put_rdataset(self, check: Callable) -> None:
        pass

    def _set_origin(self, origin) -> None:
        pass

    def add(self, name, ttl, rdata) -> None:
        self.records.append((name, ttl, rdata, self.reader.line))


def _where(w: Tuple[str, int]) -> str:
    return f"{w[0]}:{w[1]}"


def _to_dnslib(owner: DNSLabel, rtype: int, ttl: int, rd) -> RR:
    if rtype in _NAME_TYPES:
        rdata = _NAME_TYPES[rtype](DNSLabel(_labels(rd.target)))
    elif rtype == QTYPE.MX:
        rdata = MX(DNSLabel(_labels(rd.exchange)), rd.preference)
    elif rtype == QTYPE.SRV:
        rdata = SRV(rd.priority, rd.weight, rd.port, DNSLabel(_labels(rd.target)))
    elif rtype == QTYPE.SOA:
        rdata = SOA(DNSLabel(_labels(rd.mname)), DNSLabel(_labels(rd.rname)),
                    (rd.serial, rd.refresh, rd.retry, rd.expire, rd.minimum))
    else:
        rdata = RD(rd.to_wire())           # as written: names uncompressed
    return RR(owner, rtype, 1, ttl, rdata)


def load_zone(path: str) -> Zone:
    """Read and check one zone file. Raises ZoneError (`file:line: what`)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ZoneError(f"{path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ZoneError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
    col = _Collector()
    tok = dns.tokenizer.Tokenizer(text, path)
    reader = _Reader(os.path.dirname(os.path.abspath(path)), tok, dns.rdataclass.IN, col,
                     allow_include=True,
                     allow_directives={"$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE"},
                     default_ttl=DEFAULT_TTL)
    col.reader = reader
    try:
        reader.read()
    except Exception as e:  # noqa: BLE001 - dnspython raises several kinds
        raise ZoneError(_error(reader, e)) from None
    return _build(path, col.records)


def _error(reader: "_Reader", e: Exception) -> str:
    """`file:line: what` for an error while reading, with the record's text."""
    now = reader.tok.where()
    where = reader.line
    if isinstance(e, OSError):                 # an $INCLUDE that cannot be opened
        return f"{_where(where)}: $INCLUDE {e.filename}: {e.strerror}"
    if isinstance(e, UnicodeDecodeError):
        return f"{_where(where)}: not UTF-8 text ({e.reason})"
    msg = str(e)
    prefix = f"{now[0]}:{now[1]}: "            # the reader's own prefix
    if msg.startswith(prefix):
        msg = msg[len(prefix):]
    if "caught exception " in msg:             # dnspython's wrapping of rdata errors
        msg = msg.split("caught exception ", 1)[1].split(">: ", 1)[-1]
    msg = msg or type(e).__name__
    line = _source_line(*where)
    return f"{_where(where)}: {msg}" + (f" ({line})" if line else "")


def _source_line(path: str, n: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if i == n:
                    line = line.split(";", 1)[0].strip()
                    return line if len(line) <= 80 else line[:77] + "..."
    except OSError:
        pass
    return ""


def _build(path: str, records: List[tuple]) -> Zone:
    soas = [r for r in records if r[2].rdtype == QTYPE.SOA]
    if not soas:
        where = records[-1][3] if records else (path, 1)
        raise ZoneError(f"{_where(where)}: the zone has no SOA record")
    if len(soas) > 1:
        raise ZoneError(f"{_where(soas[1][3])}: a second SOA record (the first is at line {soas[0][3][1]})")
    apex = _labels(soas[0][0])
    if not apex:
        raise ZoneError(f"{_where(soas[0][3])}: the SOA is at the root: is an $ORIGIN line missing?")
    apex_key = key_of(apex)
    names: Dict[Key, Node] = collections.OrderedDict()
    where_of: Dict[Tuple[Key, int], Tuple[str, int]] = {}
    seen: Set[Tuple[Key, int, bytes]] = set()
    warnings: List[str] = []
    for name, ttl, rd, where in records:
        labels = _labels(name)
        k = key_of(labels)
        if k[len(k) - len(apex_key):] != apex_key or len(k) < len(apex_key):
            raise ZoneError(f"{_where(where)}: out of zone data: {name} is outside the zone {_text(apex)}")
        rtype = int(rd.rdtype)
        wire = rd.to_digestable()
        if (k, rtype, wire) in seen:
            continue                           # a duplicate record: ignored, as NSD does
        seen.add((k, rtype, wire))
        node = names.setdefault(k, collections.OrderedDict())
        types = set(node)
        if rtype == QTYPE.CNAME and QTYPE.CNAME in types:
            raise ZoneError(f"{_where(where)}: multiple CNAMEs at the same name {name}")
        if rtype == QTYPE.DNAME and QTYPE.DNAME in types:
            raise ZoneError(f"{_where(where)}: multiple DNAMEs at the same name {name}")
        if (rtype == QTYPE.CNAME and types - _CNAME_NEIGHBOURS) or \
                (QTYPE.CNAME in types and rtype not in _CNAME_NEIGHBOURS):
            raise ZoneError(f"{_where(where)}: CNAME and other data at the same name {name}")
        rrset = node.get(rtype)
        if rrset is None:
            rrset = node[rtype] = RRset(rtype)
            where_of[(k, rtype)] = where
        elif rrset.rrs[0].ttl != ttl:
            warnings.append(f"{_where(where)}: {name} TTL {ttl} does not match the TTL "
                            f"{rrset.rrs[0].ttl} of the {dns.rdatatype.to_text(rtype)} RRset")
        rrset.rrs.append(_to_dnslib(DNSLabel(labels), rtype, ttl, rd))
        field = TARGET_OF.get(rtype)
        if field is not None:
            t = _labels(getattr(rd, field))
            rrset.targets.append((key_of(t), t))
    # no data below a DNAME (RFC 6672 §2.3)
    dnames = [k for k, n in names.items() if QTYPE.DNAME in n]
    for d in dnames:
        for k in names:
            if len(k) > len(d) and k[len(k) - len(d):] == d:
                w = where_of[(k, next(iter(names[k])))]
                raise ZoneError(f"{_where(w)}: DNAME at {_text(names[d][QTYPE.DNAME].rrs[0].rname.label)} "
                                f"has data below it ({_text(names[k][next(iter(names[k]))].rrs[0].rname.label)})")
    zone = Zone(path, apex, names, warnings)
    # NS targets inside the zone without an address: a referral without glue
    for k, node in names.items():
        ns = node.get(QTYPE.NS)
        if ns is None:
            continue
        for tk, tl in ns.targets:
            if not zone.contains(tk) or _has_address(zone, tk):
                continue
            warnings.append(f"{_where(where_of[(k, QTYPE.NS)])}: NS {_text(tl)} of "
                            f"{_text(ns.rrs[0].rname.label)} has no address (A/AAAA) in the zone")
    return zone


def _has_address(zone: Zone, k: Key) -> bool:
    node = zone.names.get(k)
    if node is None and k not in zone.exists:
        ce = next((k[i:] for i in range(1, len(k)) if k[i:] in zone.exists), zone.apex)
        node = zone.names.get((b"*",) + ce)
    return node is not None and (QTYPE.A in node or QTYPE.AAAA in node)


class Zones:
    """The zones served, deepest apex first."""

    def __init__(self, zones: Sequence[Zone]):
        self.zones = sorted(zones, key=lambda z: -len(z.apex))

    def find(self, k: Key) -> Optional[Zone]:
        for z in self.zones:
            if len(k) >= len(z.apex) and k[len(k) - len(z.apex):] == z.apex:
                return z
        return None

    def parent_of(self, zone: Zone) -> Optional[Zone]:
        return self.find(zone.apex[1:]) if zone.apex else None

    @property
    def warnings(self) -> List[str]:
        return [w for z in self.zones for w in z.warnings]

    @classmethod
    def load(cls, paths: Sequence[str]) -> "Zones":
        zones = [load_zone(p) for p in paths]
        by_apex: Dict[Key, str] = {}
        for z in zones:
            if z.apex in by_apex:
                raise ZoneError(f"{z.path}: the zone {z.name_text()} is also in {by_apex[z.apex]}")
            by_apex[z.apex] = z.path
        return cls(zones)
