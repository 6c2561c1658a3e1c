"""Kernel -> fast path mirror: routes, local addresses and neighbours.

The kernel stays the one source of truth. At start a full dump, then
netlink events; on ENOBUFS (events lost) a fresh dump, reconciled against
what is installed. What is installed in C:

* every route of the main table (254) and the local table (255), as an LPM
  entry whose next hop is either a punt reason or something to forward to:
    local table: local/anycast -> punt "local"; broadcast/multicast -> punt
    main table, unicast, every next hop through a vEth:
        connected            -> punt "glean" (the kernel resolves)
        via a gateway        -> the gateway's adjacency
        several gateways     -> an ECMP group of adjacencies
    anything else (another interface, blackhole/unreachable/prohibit, a
    route MTU, TOS, nexthop objects, ...) -> punt "not_fast"
  the local table wins where both have the same prefix, as in Linux.
* every resolved neighbour on a vEth whose address falls in a connected
  route of that vEth: a host route (/32, /128) to its adjacency.

Adjacency and group indexes are only reused after kg_sync(): a lookup that
started before an index was unlinked may still read it.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

from pyroute2.netlink.rtnl import (RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_NEIGH)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .dataplane import ffi, lib
from .errors import DataplaneError

log = logging.getLogger("kni-gw")

MAIN, LOCAL = 254, 255
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST = 1, 2, 3, 4, 5
RTM_F_CLONED = 0x200
RTNH_F_DEAD, RTNH_F_LINKDOWN = 0x1, 0x10
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # reachable stale delay probe noarp permanent
RCVBUF = 256 << 20   # a 100k-route burst is ~100k skbs of ~1 KiB truesize

Prefix = Tuple[int, bytes, int]          # (family, network address bytes, length)
AdjKey = Tuple[int, int, bytes]          # (port index, family, address bytes)


def masked(family: int, addr: bytes, plen: int) -> bytes:
    n = int.from_bytes(addr, "big")
    bits = 32 if family == socket.AF_INET else 128
    mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
    return (n & mask).to_bytes(bits // 8, "big")


class Msg(dict):
    """A decoded route or neighbour message: header fields as items,
    attributes by name through get_attr() (the shape of pyroute2's
    messages). Addresses stay bytes."""

    __slots__ = ("attrs",)

    def get_attr(self, name, default=None):
        return self.attrs.get(name, default)


# attribute numbers -> names, for what the mirror reads
_RTA = {1: "RTA_DST", 4: "RTA_OIF", 5: "RTA_GATEWAY", 6: "RTA_PRIORITY", 8: "RTA_METRICS",
        9: "RTA_MULTIPATH", 15: "RTA_TABLE", 18: "RTA_VIA", 30: "RTA_NH_ID"}
_NDA = {1: "NDA_DST", 2: "NDA_LLADDR"}
_U32 = {"RTA_OIF", "RTA_PRIORITY", "RTA_TABLE", "RTA_NH_ID"}


def _attrs(buf: bytes, off: int, end: int, names: dict) -> dict:
    out = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4:
            break
        name = names.get(atype & 0x3FFF)
        if name is not None:
            val = buf[off + 4:off + alen]
            if name in _U32:
                val = struct.unpack_from("=I", val)[0]
            elif name == "RTA_METRICS":
                val = {t & 0x3FFF: v for t, v in _u32_attrs(val)}
            elif name == "RTA_MULTIPATH":
                val = _multipath(val)
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
        ln, flags, _hops, oif = struct.unpack_from("=HBBi", buf, off)
        if ln < 8:
            break
        nh = Msg(flags=flags, oif=oif)
        nh.attrs = _attrs(buf, off + 8, off + ln, _RTA)
        out.append(nh)
        off += (ln + 3) & ~3
    return out


def _route(buf: bytes, off: int, end: int) -> Msg:
    fam, dst_len, _src_len, tos, table, _proto, _scope, rtype, flags = \
        struct.unpack_from("=BBBBBBBBI", buf, off + 16)
    m = Msg(family=fam, dst_len=dst_len, tos=tos, table=table, type=rtype, flags=flags)
    m.attrs = _attrs(buf, off + 28, end, _RTA)
    return m


def _neigh(buf: bytes, off: int, end: int) -> Msg:
    fam, ifindex, state = struct.unpack_from("=BxxxiH", buf, off + 16)
    m = Msg(family=fam, ifindex=ifindex, state=state)
    m.attrs = _attrs(buf, off + 28, end, _NDA)
    return m


def _pyroute2(cls):
    def decode(buf: bytes, off: int, end: int):
        m = cls(buf[off:end])
        m.decode()
        return m
    return decode


# message type -> (event name, decoder): links are rare and decoded by
# pyroute2; routes and neighbours come by the hundred thousand and are
# decoded here (pyroute2 takes ~40 us a message, this ~3 us).
_MSG = {16: ("RTM_NEWLINK", _pyroute2(ifinfmsg)), 17: ("RTM_DELLINK", _pyroute2(ifinfmsg)),
        20: ("RTM_NEWADDR", _pyroute2(ifaddrmsg)), 21: ("RTM_DELADDR", _pyroute2(ifaddrmsg)),
        24: ("RTM_NEWROUTE", _route), 25: ("RTM_DELROUTE", _route),
        28: ("RTM_NEWNEIGH", _neigh), 29: ("RTM_DELNEIGH", _neigh),
        80: ("RTM_NEWNETCONF", None)}
# RTNLGRP_IPV4_NETCONF (24), RTNLGRP_IPV6_NETCONF (25): forwarding sysctl changes
RTMGRP_NETCONF = (1 << 23) | (1 << 24)
SO_RCVBUFFORCE = 33


class EventSocket:
    """A non-blocking rtnetlink multicast socket, read to the end each time
    it is readable; messages decoded with pyroute2's classes. (pyroute2's
    own event reader keeps messages in a queue of its own, where select()
    cannot see them.) ENOBUFS from recv() means events were lost."""

    def __init__(self, groups: int, rcvbuf: int = RCVBUF):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, groups))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self, budget: int = 1 << 30) -> list:
        out = []
        while len(out) < budget:
            try:
                buf = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            out.extend(parse(buf))
        return out


def dump(msg_type: int, family: int) -> list:
    """An rtnetlink dump (RTM_GETROUTE 26, RTM_GETNEIGH 30), decoded."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        body = struct.pack("=B3xI", family, 0) if msg_type == 30 else struct.pack("=BBBBBBBBI", family, *[0] * 8)
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, 0x301, 1, 0) + body)  # NLM_F_REQUEST | NLM_F_DUMP
        out = []
        while True:
            buf = s.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                length, mtype = struct.unpack_from("=IH", buf, off)
                if mtype == 3:          # NLMSG_DONE
                    return out
                if mtype == 2:          # NLMSG_ERROR
                    err = struct.unpack_from("=i", buf, off + 16)[0]
                    raise OSError(-err, os.strerror(-err))
                off += (length + 3) & ~3
            out.extend(parse(buf))


def parse(buf: bytes) -> list:
    out = []
    off = 0
    while off + 16 <= len(buf):
        length, mtype = struct.unpack_from("=IH", buf, off)
        if length < 16 or off + length > len(buf):
            break
        kind = _MSG.get(mtype)
        if kind is not None and kind[1] is None:
            out.append({"event": kind[0]})
        elif kind is not None:
            m = kind[1](buf, off, off + length)
            m["event"] = kind[0]
            out.append(m)
        off += (length + 3) & ~3
    return out


@dataclasses.dataclass
class Route:
    """What one kernel route means for the fast path."""
    kind: str                     # "punt", "glean", "adj", "group"
    reason: int = 0               # punt reason
    port: int = -1                # glean: the vEth's port index
    hops: Tuple[AdjKey, ...] = ()  # adj / group


class FibMirror:
    def __init__(self, dp, port_of_ifindex: Dict[int, int]):
        self.dp = dp
        self.port_of_ifindex = port_of_ifindex      # vEth ifindex -> port index
        self.events = EventSocket(RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH
                                  | RTMGRP_NETCONF)
        self.ifname_of_port: Dict[int, str] = {}
        # kernel state
        self.routes: Dict[Prefix, Dict[int, Dict[Tuple[int, int], Route]]] = {}
        self.neigh: Dict[AdjKey, bytes] = {}
        # installed state
        self.installed: Dict[Prefix, int] = {}
        self.adj_of: Dict[AdjKey, int] = {}
        self.adj_ref: Dict[int, int] = {}
        self.adj_key: Dict[int, AdjKey] = {}
        self.free_adj: List[int] = list(range(lib.KG_ADJ_MAX - 1, lib.KG_NH_FIRST_ADJ - 1, -1))
        self.group_of: Dict[Tuple[int, ...], int] = {}
        self.group_ref: Dict[int, int] = {}
        self.free_group: List[int] = list(range(lib.KG_GROUP_MAX - 1, -1, -1))
        self.pending_adj: List[int] = []
        self.pending_group: List[int] = []
        self.v6_ops: List[Tuple[str, Prefix, int]] = []
        self.fwd: Dict[int, Tuple[int, int]] = {}
        # installed prefixes by (family, forwarded in C?), kept as they change
        self.n_installed: Dict[Tuple[int, bool], int] = collections.Counter()
        self.stats = {"events": 0, "resyncs": 0}

    def close(self) -> None:
        self.events.close()

    def fileno(self) -> int:
        return self.events.fileno()

    # ------------------------------------------------------------ dumps
    def resync(self) -> None:
        """Full dump of routes and neighbours, reconciled with what is
        installed (start, and after lost events)."""
        t0 = time.monotonic()
        self.routes = {}
        self.neigh = {}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for m in dump(26, fam):
                self._route_msg(m, "RTM_NEWROUTE")
        for m in dump(30, socket.AF_UNSPEC):
            self._neigh_msg(m, "RTM_NEWNEIGH")
        self._reconcile_all()
        self.stats["resyncs"] += 1
        log.info("fib: mirrored %d IPv4 + %d IPv6 prefixes, %d neighbours in %.2f s",
                 *self.counts()[:3], time.monotonic() - t0)

    def counts(self) -> Tuple[int, int, int, int, int]:
        c, v4, v6 = self.n_installed, socket.AF_INET, socket.AF_INET6
        return (c[(v4, True)] + c[(v4, False)], c[(v6, True)] + c[(v6, False)], len(self.neigh),
                c[(v4, True)], c[(v6, True)])

    def view(self) -> Dict[str, int]:
        r4, r6, n, f4, f6 = self.counts()
        return {"routes4": r4, "routes6": r6, "neighbours": n, "fast4": f4, "fast6": f6,
                "forwarding": {str(p): {"ipv4": bool(v[0]), "ipv6": bool(v[1])}
                               for p, v in sorted(self.fwd.items())},
                "adjacencies": len(self.adj_ref), "groups": len(self.group_ref),
                "memory": self.dp.fib_memory(), **self.stats}

    # ------------------------------------------------------------ events
    def on_readable(self, budget: int = 20000) -> None:
        """Read what is queued (up to budget messages) and apply it as one
        batch."""
        touched: Set[Prefix] = set()
        neigh_touched: Set[AdjKey] = set()
        try:
            msgs = self.events.read(budget)
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            log.warning("fib: netlink events lost (ENOBUFS); resynchronising from a dump")
            self.resync()
            return
        netconf = False
        for m in msgs:
            ev = m["event"]
            if ev == "RTM_NEWNETCONF":
                netconf = True
            elif ev in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                p = self._route_msg(m, ev)
                if p is not None:
                    touched.add(p)
            elif ev in ("RTM_NEWNEIGH", "RTM_DELNEIGH"):
                k = self._neigh_msg(m, ev)
                if k is not None:
                    neigh_touched.add(k)
        self.stats["events"] += len(msgs)
        if netconf:
            self.poll_forwarding()
        self._apply(touched, neigh_touched)

    def _route_msg(self, m, ev: str) -> Optional[Prefix]:
        fam = m["family"]
        if fam not in (socket.AF_INET, socket.AF_INET6) or m["flags"] & RTM_F_CLONED:
            return None
        table = m.get_attr("RTA_TABLE") or m["table"]
        if table not in (MAIN, LOCAL):
            return None
        plen = m["dst_len"]
        addr = m.get_attr("RTA_DST") or bytes(4 if fam == socket.AF_INET else 16)
        key: Prefix = (fam, masked(fam, addr, plen), plen)
        rid = (m.get_attr("RTA_PRIORITY") or 0, m["tos"])
        tables = self.routes.setdefault(key, {})
        entries = tables.setdefault(table, {})
        if ev == "RTM_DELROUTE":
            entries.pop(rid, None)
            if not entries:
                tables.pop(table, None)
            if not tables:
                self.routes.pop(key, None)
        else:
            entries[rid] = self._meaning(m, fam, table)
        return key

    def _meaning(self, m, fam: int, table: int) -> Route:
        rtype = m["type"]
        if table == LOCAL:
            if rtype in (RTN_LOCAL, RTN_ANYCAST):
                return Route("punt", lib.KG_PUNT_LOCAL)
            if rtype in (RTN_BROADCAST, RTN_MULTICAST):
                return Route("punt", lib.KG_PUNT_IP_MULTICAST)
            return Route("punt", lib.KG_PUNT_NOT_FAST)
        if rtype != RTN_UNICAST or m["tos"] or m.get_attr("RTA_NH_ID") or m.get_attr("RTA_VIA"):
            return Route("punt", lib.KG_PUNT_NOT_FAST)
        if 2 in (m.get_attr("RTA_METRICS") or {}):      # RTAX_MTU
            return Route("punt", lib.KG_PUNT_NOT_FAST)   # the kernel applies a route MTU
        hops = []
        mp = m.get_attr("RTA_MULTIPATH")
        if mp:
            for nh in mp:
                if nh["flags"] & (RTNH_F_DEAD | RTNH_F_LINKDOWN):
                    continue
                hops.append((nh["oif"], nh.get_attr("RTA_GATEWAY")))
        else:
            hops.append((m.get_attr("RTA_OIF"), m.get_attr("RTA_GATEWAY")))
        if not hops:
            return Route("punt", lib.KG_PUNT_NOT_FAST)
        ports = [self.port_of_ifindex.get(oif) for oif, _ in hops]
        if any(p is None for p in ports):
            return Route("punt", lib.KG_PUNT_NOT_FAST)   # not through a vEth
        gws = [gw for _, gw in hops]
        if len(hops) == 1 and gws[0] is None:
            return Route("glean", port=ports[0])
        if any(gw is None for gw in gws):
            return Route("punt", lib.KG_PUNT_NOT_FAST)
        keys = tuple(sorted((p, fam, gw) for p, gw in zip(ports, gws)))
        if len(keys) == 1:
            return Route("adj", hops=keys)
        return Route("group", hops=keys[:lib.KG_ECMP_MAX])

    def _neigh_msg(self, m, ev: str) -> Optional[AdjKey]:
        fam = m["family"]
        port = self.port_of_ifindex.get(m["ifindex"])
        addr = m.get_attr("NDA_DST")
        if fam not in (socket.AF_INET, socket.AF_INET6) or port is None or addr is None:
            return None
        if (fam == socket.AF_INET and addr[0] >= 224) or (fam == socket.AF_INET6 and addr[0] == 0xFF):
            return None
        key: AdjKey = (port, fam, addr)
        lladdr = m.get_attr("NDA_LLADDR")
        if ev == "RTM_NEWNEIGH" and m["state"] & NUD_USABLE and lladdr and len(lladdr) == 6:
            if self.neigh.get(key) != lladdr:
                log.debug("fib: neighbour %s on port %d is %s", ipaddress.ip_address(addr), port,
                          lladdr.hex(":"))
            self.neigh[key] = lladdr
        elif self.neigh.pop(key, None) is not None:
            log.debug("fib: neighbour %s on port %d unusable", ipaddress.ip_address(addr), port)
        return key

    # ------------------------------------------------------------ reconcile
    def effective(self, key: Prefix) -> Optional[Route]:
        tables = self.routes.get(key)
        if not tables:
            return None
        entries = tables.get(LOCAL) or tables.get(MAIN)
        return entries[min(entries)] if entries else None

    def covering(self, fam: int, addr: bytes) -> Optional[Route]:
        """The route Linux would use for addr, among the mirrored ones
        (host routes of neighbours aside)."""
        bits = 32 if fam == socket.AF_INET else 128
        for plen in range(bits, -1, -1):
            r = self.effective((fam, masked(fam, addr, plen), plen))
            if r is not None:
                return r
        return None

    def _want_host(self, key: AdjKey) -> bool:
        port, fam, addr = key
        if key not in self.neigh:
            return False
        host = (fam, addr, 32 if fam == socket.AF_INET else 128)
        if self.effective(host) is not None:
            return False      # an explicit host route (or local address) wins
        r = self.covering(fam, addr)
        return r is not None and r.kind == "glean" and r.port == port

    def _desired(self, key: Prefix) -> Optional[Route]:
        r = self.effective(key)
        if r is not None:
            return r
        fam, addr, plen = key
        if plen == (32 if fam == socket.AF_INET else 128):
            for port in self._ports_with_neigh(fam, addr):
                k = (port, fam, addr)
                if self._want_host(k):
                    return Route("adj", hops=(k,))
        return None

    def _ports_with_neigh(self, fam: int, addr: bytes) -> Iterable[int]:
        return [p for (p, f, a) in self.neigh if f == fam and a == addr]

    def _reconcile_all(self) -> None:
        keys = set(self.routes) | set(self.installed)
        for (port, fam, addr) in self.neigh:
            keys.add((fam, addr, 32 if fam == socket.AF_INET else 128))
        self._reconcile(keys)
        for k in list(self.adj_of):
            self._refresh_adj(k)
        self._flush()

    def _apply(self, touched: Set[Prefix], neigh_touched: Set[AdjKey]) -> None:
        keys = set(touched)
        # neighbours: their adjacency's MAC, and their host route
        for k in neigh_touched:
            if k in self.adj_of:
                self._refresh_adj(k)
            keys.add((k[1], k[2], 32 if k[1] == socket.AF_INET else 128))
        # a route change may change which neighbours get host routes
        if touched:
            for (port, fam, addr) in self.neigh:
                bits = 32 if fam == socket.AF_INET else 128
                if any((fam, masked(fam, addr, plen), plen) in touched for plen in range(bits + 1)):
                    keys.add((fam, addr, bits))
        self._reconcile(keys)
        self._flush()

    def _reconcile(self, keys: Iterable[Prefix]) -> None:
        for key in keys:
            want = self._desired(key)
            old = self.installed.get(key)
            if want is None:
                if old is not None:
                    self._install(key, None)
                    self._release(old)
                continue
            nh = self._acquire(want)
            if nh == old:
                self._release(nh)          # already there: drop the extra reference
                continue
            self._install(key, nh)
            if old is not None:
                self._release(old)

    # adjacencies and groups -------------------------------------
    def _adj(self, key: AdjKey) -> int:
        idx = self.adj_of.get(key)
        if idx is None:
            if not self.free_adj:
                raise DataplaneError("fib: out of adjacencies", errno.ENOSPC)
            idx = self.free_adj.pop()
            self.adj_of[key] = idx
            self.adj_key[idx] = key
            self.adj_ref[idx] = 0
            self._refresh_adj(key)
        self.adj_ref[idx] += 1
        return idx

    def _refresh_adj(self, key: AdjKey) -> None:
        idx = self.adj_of[key]
        mac = self.neigh.get(key)
        if mac is not None:
            self._check(lib.kg_adj_set(idx, key[0], mac), "adjacency")
        else:
            self._check(lib.kg_adj_clear(idx), "adjacency")

    def _acquire(self, r: Route) -> int:
        if r.kind == "punt":
            return r.reason
        if r.kind == "glean":
            return lib.KG_PUNT_GLEAN
        adjs = tuple(self._adj(k) for k in r.hops)
        if r.kind == "adj":
            return adjs[0]
        g = self.group_of.get(adjs)
        if g is None:
            if not self.free_group:
                for a in adjs:
                    self._release(a)
                return lib.KG_PUNT_NOT_FAST
            g = self.free_group.pop()
            arr = ffi.new("unsigned int[]", list(adjs))
            self._check(lib.kg_group_set(g, arr, len(adjs)), "ECMP group")
            self.group_of[adjs] = g
            self.group_ref[g] = 0
        else:
            for a in adjs:                  # the group already holds them
                self._release(a)
        self.group_ref[g] += 1
        return lib.KG_NH_GROUP | g

    def _release(self, nh: int) -> None:
        if nh < lib.KG_NH_FIRST_ADJ:
            return
        if nh & lib.KG_NH_GROUP:
            g = nh & ~lib.KG_NH_GROUP
            self.group_ref[g] -= 1
            if self.group_ref[g] == 0:
                del self.group_ref[g]
                adjs = next(k for k, v in self.group_of.items() if v == g)
                del self.group_of[adjs]
                self.pending_group.append(g)
                for a in adjs:
                    self._release(a)
            return
        self.adj_ref[nh] -= 1
        if self.adj_ref[nh] == 0:
            del self.adj_ref[nh]
            key = self.adj_key.pop(nh)
            del self.adj_of[key]
            self.pending_adj.append(nh)

    def _install(self, key: Prefix, nh: Optional[int]) -> None:
        fam, addr, plen = key
        if fam == socket.AF_INET6:
            self.v6_ops.append(("del" if nh is None else "add", key, nh or 0))
        elif nh is None:
            self._check(lib.kg_route4_del(int.from_bytes(addr, "little"), plen), "IPv4 route delete",
                        ok=(-errno.ENOENT, -errno.EINVAL))
        else:
            self._check(lib.kg_route4_add(int.from_bytes(addr, "little"), plen, nh), "IPv4 route")
        old = self.installed.pop(key, None) if nh is None else self.installed.get(key)
        if old is not None:
            self.n_installed[(fam, old >= lib.KG_NH_FIRST_ADJ)] -= 1
        if nh is not None:
            self.installed[key] = nh
            self.n_installed[(fam, nh >= lib.KG_NH_FIRST_ADJ)] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fib: %s -> %s", describe(key), "removed" if nh is None else nh_name(nh))

    def _flush(self) -> None:
        """Apply the IPv6 batch; then, once no lcore can hold them, clear and
        recycle the indexes released by this batch."""
        if self.v6_ops:
            self._check(lib.kg_route6_begin(), "IPv6 table")
            try:
                for op, (fam, addr, plen), nh in self.v6_ops:
                    if op == "add":
                        self._check(lib.kg_route6_add(addr, plen, nh), "IPv6 route")
                    else:
                        self._check(lib.kg_route6_del(addr, plen), "IPv6 route delete",
                                    ok=(-errno.ENOENT, -errno.EINVAL))
            finally:
                lib.kg_route6_end()
            self.v6_ops = []
        if self.pending_adj or self.pending_group:
            lib.kg_sync()
            for a in self.pending_adj:
                lib.kg_adj_clear(a)
            self.free_adj.extend(self.pending_adj)
            self.free_group.extend(self.pending_group)
            self.pending_adj, self.pending_group = [], []

    @staticmethod
    def _check(rc: int, what: str, ok: Tuple[int, ...] = ()) -> None:
        if rc < 0 and rc not in ok:
            log.error("fib: %s: %s", what, ffi.string(lib.kg_strerror(rc)).decode())

    # ------------------------------------------------------------ sysctls
    def poll_forwarding(self, ifname_of_port: Optional[Dict[int, str]] = None) -> None:
        """The kernel forwards from a vEth only where forwarding is on:
        follow net.ipv{4,6}.conf.<vEth>.forwarding (on RTM_NEWNETCONF, and
        polled slowly in case an event is missed)."""
        if ifname_of_port is not None:
            self.ifname_of_port = dict(ifname_of_port)
        for port, ifname in self.ifname_of_port.items():
            v4 = _read_int(f"/proc/sys/net/ipv4/conf/{ifname}/forwarding")
            v6 = _read_int(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding")
            if self.fwd.get(port) != (v4, v6):
                if port in self.fwd:
                    log.info("%s: forwarding IPv4 %s, IPv6 %s", ifname, "on" if v4 else "off",
                             "on" if v6 else "off")
                self.fwd[port] = (v4, v6)
                lib.kg_fib_forwarding(port, v4, v6)


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def nh_name(nh: int) -> str:
    from .dataplane import PUNT_REASONS
    if nh < lib.KG_NH_FIRST_ADJ:
        return "punt " + PUNT_REASONS[nh]
    if nh & lib.KG_NH_GROUP:
        return f"ECMP group {nh & ~lib.KG_NH_GROUP}"
    return f"adjacency {nh}"


def describe(key: Prefix) -> str:
    fam, addr, plen = key
    return f"{ipaddress.ip_address(addr)}/{plen}"
