"""rtnetlink I/O for the kernel mirror: sockets, dumps and decoders.

Routes, nexthop objects and neighbours come by the hundred thousand (a BGP
feed), so they are decoded here with struct (pyroute2's classes take ~40 us
a message, this ~3 us); links and addresses are rare and decoded by
pyroute2. Nothing here knows what a message means for the fast path: that
is kni_gw/mirror.py.
"""
from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from typing import Dict, Optional

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

RCVBUF = 256 << 20   # a 1M-route burst is ~1M skbs; the kernel caps it at rmem_max (FORCE: not)
SO_RCVBUFFORCE = 33
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1

# nlmsg_flags
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNETCONF = 80
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106

# multicast groups: bits for bind() (groups 1..32), numbers for ADD_MEMBERSHIP
RTMGRP_NEIGH, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x4, 0x40, 0x400
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
RTMGRP_NETCONF = (1 << 23) | (1 << 24)   # RTNLGRP_IPV4_NETCONF (24), IPV6_NETCONF (25)
RTNLGRP_NEXTHOP = 32

# neighbour states and flags
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY = 0x01, 0x02, 0x04, 0x08
NUD_PROBE, NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x10, 0x20, 0x40, 0x80
NTF_USE = 0x01


class DumpInterrupted(Exception):
    """The kernel's tables changed during a dump (NLM_F_DUMP_INTR)."""


class Msg(dict):
    """A decoded message: header fields as items (``event``, ``nlflags``
    and the fixed header's fields), attributes by name through get_attr()
    (the shape of pyroute2's messages). Addresses stay bytes."""

    __slots__ = ("attrs",)

    def get_attr(self, name, default=None):
        return self.attrs.get(name, default)


_RTA = {1: "RTA_DST", 4: "RTA_OIF", 5: "RTA_GATEWAY", 6: "RTA_PRIORITY", 8: "RTA_METRICS",
        9: "RTA_MULTIPATH", 15: "RTA_TABLE", 18: "RTA_VIA", 21: "RTA_ENCAP_TYPE", 30: "RTA_NH_ID"}
_NDA = {1: "NDA_DST", 2: "NDA_LLADDR"}
_NHA = {1: "NHA_ID", 2: "NHA_GROUP", 3: "NHA_GROUP_TYPE", 4: "NHA_BLACKHOLE", 5: "NHA_OIF",
        6: "NHA_GATEWAY", 7: "NHA_ENCAP_TYPE", 10: "NHA_MASTER", 11: "NHA_FDB"}
_U32 = {"RTA_OIF", "RTA_PRIORITY", "RTA_TABLE", "RTA_NH_ID", "NHA_ID", "NHA_OIF", "NHA_MASTER"}
_U16 = {"RTA_ENCAP_TYPE", "NHA_GROUP_TYPE", "NHA_ENCAP_TYPE"}


def _attrs(buf: bytes, off: int, end: int, names: dict) -> dict:
    out = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4 or off + alen > end:
            break
        name = names.get(atype & 0x3FFF)
        if name is not None:
            val = buf[off + 4:off + alen]
            if name in _U32:
                val = struct.unpack_from("=I", val)[0] if len(val) >= 4 else 0
            elif name in _U16:
                val = struct.unpack_from("=H", val)[0] if len(val) >= 2 else 0
            elif name == "RTA_METRICS":
                val = {t & 0x3FFF: v for t, v in _u32_attrs(val)}
            elif name == "RTA_MULTIPATH":
                val = _multipath(val)
            elif name == "RTA_VIA":
                # struct rtvia { u16 family; u8 addr[]; }
                val = (struct.unpack_from("=H", val)[0], val[2:]) if len(val) >= 2 else None
            elif name == "NHA_GROUP":
                # struct nexthop_grp { u32 id; u8 weight; u8 weight_high; u16 resvd2; }
                # (weight - 1, split in two bytes since Linux 6.12)
                val = [(i, (w | wh << 8) + 1) for i, w, wh in
                       struct.iter_unpack("=IBBxx", val[:len(val) - len(val) % 8])]
            elif name in ("NHA_BLACKHOLE", "NHA_FDB"):
                val = True
            out[name] = val
        off += (alen + 3) & ~3
    return out


def _u32_attrs(buf: bytes):
    off = 0
    while off + 8 <= len(buf):
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 8:
            break
        yield atype, struct.unpack_from("=I", buf, off + 4)[0]
        off += (alen + 3) & ~3


def _multipath(buf: bytes) -> list:
    """struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; } + attributes"""
    out, off = [], 0
    while off + 8 <= len(buf):
        ln, flags, hops, oif = struct.unpack_from("=HBBi", buf, off)
        if ln < 8 or off + ln > len(buf):
            break
        nh = Msg(flags=flags, oif=oif, weight=hops + 1)
        nh.attrs = _attrs(buf, off + 8, off + ln, _RTA)
        out.append(nh)
        off += (ln + 3) & ~3
    return out


def _route(buf: bytes, off: int, end: int) -> Msg:
    fam, dst_len, _src_len, tos, table, proto, _scope, rtype, flags = \
        struct.unpack_from("=BBBBBBBBI", buf, off + 16)
    m = Msg(family=fam, dst_len=dst_len, tos=tos, table=table, proto=proto, type=rtype, flags=flags)
    m.attrs = _attrs(buf, off + 28, end, _RTA)
    return m


def _neigh(buf: bytes, off: int, end: int) -> Msg:
    fam, ifindex, state, flags, ntype = struct.unpack_from("=BxxxiHBB", buf, off + 16)
    m = Msg(family=fam, ifindex=ifindex, state=state, ntf=flags, ntype=ntype)
    m.attrs = _attrs(buf, off + 28, end, _NDA)
    return m


def _nexthop(buf: bytes, off: int, end: int) -> Msg:
    # struct nhmsg { u8 family; u8 scope; u8 protocol; u8 resvd; u32 flags; }
    fam, _scope, proto, flags = struct.unpack_from("=BBBxI", buf, off + 16)
    m = Msg(family=fam, proto=proto, flags=flags)
    m.attrs = _attrs(buf, off + 24, end, _NHA)
    return m


def _pyroute2(cls):
    def decode(buf: bytes, off: int, end: int):
        m = cls(buf[off:end])
        m.decode()
        return m
    return decode


_MSG = {RTM_NEWLINK: ("RTM_NEWLINK", _pyroute2(ifinfmsg)), RTM_DELLINK: ("RTM_DELLINK", _pyroute2(ifinfmsg)),
        RTM_NEWADDR: ("RTM_NEWADDR", _pyroute2(ifaddrmsg)), RTM_DELADDR: ("RTM_DELADDR", _pyroute2(ifaddrmsg)),
        RTM_NEWROUTE: ("RTM_NEWROUTE", _route), RTM_DELROUTE: ("RTM_DELROUTE", _route),
        RTM_NEWNEIGH: ("RTM_NEWNEIGH", _neigh), RTM_DELNEIGH: ("RTM_DELNEIGH", _neigh),
        RTM_NEWNEXTHOP: ("RTM_NEWNEXTHOP", _nexthop), RTM_DELNEXTHOP: ("RTM_DELNEXTHOP", _nexthop),
        RTM_NEWNETCONF: ("RTM_NEWNETCONF", None)}


def parse(buf: bytes, seq: Optional[int] = None) -> list:
    """Messages of one datagram. With seq (a dump's reply), raises
    DumpInterrupted on NLM_F_DUMP_INTR and skips other sequence numbers;
    NLMSG_DONE ends the list with the string "DONE"."""
    out: list = []
    off = 0
    while off + 16 <= len(buf):
        length, mtype, nlflags, mseq = struct.unpack_from("=IHHI", buf, off)
        if length < 16 or off + length > len(buf):
            break
        if seq is not None:
            if mseq != seq:
                off += (length + 3) & ~3
                continue
            if nlflags & NLM_F_DUMP_INTR:
                raise DumpInterrupted()
            if mtype == NLMSG_DONE:
                out.append("DONE")
                return out
            if mtype == NLMSG_ERROR:
                err = struct.unpack_from("=i", buf, off + 16)[0]
                if err:
                    raise OSError(-err, os.strerror(-err))
        kind = _MSG.get(mtype)
        if kind is not None and kind[1] is None:
            out.append({"event": kind[0], "nlflags": nlflags})
        elif kind is not None:
            m = kind[1](buf, off, off + length)
            m["event"] = kind[0]
            m["nlflags"] = nlflags
            out.append(m)
        off += (length + 3) & ~3
    return out


_seq = itertools.count(int.from_bytes(os.urandom(2), "big") + 1)


def dump(msg_type: int, family: int) -> list:
    """An rtnetlink dump (RTM_GETROUTE, RTM_GETNEIGH, RTM_GETNEXTHOP),
    decoded; DumpInterrupted when the kernel says the dump is inconsistent."""
    seq = next(_seq) & 0x7FFFFFFF
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((0, 0))
        if msg_type == RTM_GETNEIGH:
            body = struct.pack("=B3xiHBB", family, 0, 0, 0, 0)
        elif msg_type == RTM_GETNEXTHOP:
            body = struct.pack("=BBBxI", family, 0, 0, 0)
        else:
            body = struct.pack("=BBBBBBBBI", family, *[0] * 8)
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        out: list = []
        while True:
            part = parse(s.recv(1 << 20), seq)
            if part and part[-1] == "DONE":
                out.extend(part[:-1])
                return out
            out.extend(part)


class EventSocket:
    """A non-blocking rtnetlink multicast socket, read to the end each time
    it is readable. (pyroute2's own event reader keeps messages in a queue
    of its own, where select() cannot see them.) ENOBUFS from read() means
    events were lost."""

    def __init__(self, groups: int, extra_groups: tuple = (), rcvbuf: int = RCVBUF):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, groups))
        for g in extra_groups:       # groups above 32 are joined, not bound
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self, budget: int = 1 << 30) -> list:
        out: list = []
        for part in self.datagrams(budget):
            out.extend(part)
        return out

    def datagrams(self, budget: int = 1 << 30):
        """Decoded datagrams, one list at a time, until about budget
        messages or nothing is queued."""
        n = 0
        while n < budget:
            try:
                buf = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            part = parse(buf)
            n += len(part)
            yield part


class NeighSender:
    """Asks the kernel about neighbours, on a socket of its own: NTF_USE
    (the kernel treats the entry as used: a STALE one is re-confirmed by its
    own probes) and state PROBE (re-confirm now). Errors are collected from
    the acks without waiting for them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.errors: Dict[int, int] = {}

    def close(self) -> None:
        self.sock.close()

    def _send(self, family: int, ifindex: int, dst: bytes, state: int, flags: int,
              lladdr: Optional[bytes]) -> None:
        self.seq += 1
        attrs = struct.pack("=HH", 4 + len(dst), 1) + dst + b"\0" * (-len(dst) % 4)
        if lladdr:
            attrs += struct.pack("=HH", 4 + len(lladdr), 2) + lladdr + b"\0" * (-len(lladdr) % 4)
        body = struct.pack("=BxxxiHBB", family, ifindex, state, flags, 0) + attrs
        hdr = struct.pack("=IHHII", 16 + len(body), RTM_NEWNEIGH,
                          NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, self.seq, 0)
        try:
            self.sock.send(hdr + body)
        except OSError as e:
            self.errors[e.errno] = self.errors.get(e.errno, 0) + 1

    def use(self, family: int, ifindex: int, dst: bytes) -> None:
        self._send(family, ifindex, dst, 0, NTF_USE, None)

    def probe(self, family: int, ifindex: int, dst: bytes, lladdr: bytes) -> None:
        self._send(family, ifindex, dst, NUD_PROBE, 0, lladdr)

    def drain(self) -> None:
        """Read the acks; count the errors by errno."""
        while True:
            try:
                buf = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                self.errors[e.errno or errno.EIO] = self.errors.get(e.errno or errno.EIO, 0) + 1
                return
            off = 0
            while off + 20 <= len(buf):
                length, mtype = struct.unpack_from("=IH", buf, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", buf, off + 16)[0]
                    if err:
                        self.errors[err] = self.errors.get(err, 0) + 1
                off += (length + 3) & ~3


def read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def ifname(ifindex: int) -> Optional[str]:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None

