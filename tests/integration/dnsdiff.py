"""Compare two DNS servers' answers to the same query bytes, section by
section. dnspython reads both answers (neither server's own code does).

What is compared: rcode (extended included), opcode, the flags (QR AA TC RD
RA AD CD and Z), the question as sent back (names with their case), the
answer, authority and additional sections in order, each record as
(owner, TTL, class, type, rdata in canonical form: names compared without
case, RFC 4343), and EDNS (present or not, version, DO and the other flags,
payload size, options).
"""
from __future__ import annotations

import socket
import struct
from typing import List, Optional, Tuple

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

FLAG_BITS = [("qr", 0x8000), ("aa", 0x0400), ("tc", 0x0200), ("rd", 0x0100), ("ra", 0x0080),
             ("z", 0x0040), ("ad", 0x0020), ("cd", 0x0010)]


def udp(addr: Tuple[str, int], wire: bytes, timeout: float = 2.0) -> Optional[bytes]:
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, addr)
        try:
            while True:
                data, src = s.recvfrom(65535)
                if src[:2] == addr and data[:2] == wire[:2]:
                    return data
        except socket.timeout:
            return None


def tcp(addr: Tuple[str, int], wire: bytes, timeout: float = 3.0) -> Optional[bytes]:
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        s.sendall(struct.pack("!H", len(wire)) + wire)
        buf = b""
        try:
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    return None
                buf += chunk
        except socket.timeout:
            return None
        return buf[2:2 + struct.unpack("!H", buf[:2])[0]]


def _rr_view(rrset: dns.rrset.RRset) -> List[tuple]:
    out = []
    for rd in rrset:
        out.append((rrset.name.to_text().lower(), rrset.ttl, dns.rdataclass.to_text(rrset.rdclass),
                    dns.rdatatype.to_text(rrset.rdtype), rd.to_digestable().hex(), rd.to_text()))
    return out


class View:
    """One answer as the comparison sees it."""

    def __init__(self, wire: Optional[bytes]):
        self.wire = wire
        self.error = None
        self.fields = {}
        if wire is None:
            self.fields = {"answer": "no answer (timeout)"}
            return
        if len(wire) < 12:
            self.fields = {"short": wire.hex()}
            return
        qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire)
        self.fields["flags"] = " ".join(n for n, b in FLAG_BITS if flags & b)
        self.fields["opcode"] = (flags >> 11) & 0xF
        self.fields["counts"] = (qd, an, ns, ar)
        try:
            m = dns.message.from_wire(wire, ignore_trailing=True, one_rr_per_rrset=True)
        except Exception as e:  # noqa: BLE001 - an unreadable answer is a finding
            self.fields["unparseable"] = f"{type(e).__name__}: {e}"
            self.fields["rcode"] = flags & 0xF
            return
        self.fields["rcode"] = m.rcode()
        self.fields["question"] = [(q.name.to_text(), dns.rdatatype.to_text(q.rdtype),
                                    dns.rdataclass.to_text(q.rdclass)) for q in m.question]
        for sec, name in ((m.answer, "answer"), (m.authority, "authority"), (m.additional, "additional")):
            rows = []
            for rrset in sec:
                rows += _rr_view(rrset)
            self.fields[name] = rows
        if m.edns >= 0:
            self.fields["edns"] = {"version": m.edns, "flags": m.ednsflags & ~0xFF000000 & 0xFFFF,
                                   "payload": m.payload,
                                   "options": sorted((int(o.otype), o.to_wire().hex()) for o in m.options)}
        else:
            self.fields["edns"] = None

    def compare_key(self):
        # the rdata's text is shown but not compared (the canonical wire is)
        f = dict(self.fields)
        for sec in ("answer", "authority", "additional"):
            if isinstance(f.get(sec), list):
                f[sec] = [r[:5] for r in f[sec]]
        return f


def diff(a: View, b: View) -> List[str]:
    """The fields that differ, one line each: 'field: a=... b=...'."""
    ka, kb = a.compare_key(), b.compare_key()
    out = []
    for k in sorted(set(ka) | set(kb), key=str):
        if ka.get(k) != kb.get(k):
            va, vb = a.fields.get(k), b.fields.get(k)
            if isinstance(va, list) and isinstance(vb, list) and k in ("answer", "authority", "additional"):
                va = [f"{r[0]} {r[1]} {r[3]} {r[5]}" for r in va]
                vb = [f"{r[0]} {r[1]} {r[3]} {r[5]}" for r in vb]
            out.append(f"{k}: nsd={_short(va)} kni-gw={_short(vb)}")
    return out


def _short(v, n: int = 400) -> str:
    t = str(v)
    return t if len(t) <= n else t[:n - 3] + "..."
