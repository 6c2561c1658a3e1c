"""What the kernel's routing state means for the fast path: pure logic.

Fed with decoded netlink messages (kni_gw/nldecode.py), it keeps the kernel's
routes, nexthop objects and neighbours as the kernel keys them, and answers
two questions for the install layer (kni_gw/fibinstall.py):

* ``desired(prefix)``: what the fast path's LPM should hold for a prefix;
* ``nh_content(id)``: what a kernel nexthop object's group slot should hold.

Meanings (hashable tuples):

    ("punt", reason)        punt to the kernel for this KG_PUNT_* reason
    ("glean", port)         connected through a vEth: the kernel resolves
    ("adj", key)            one next hop: its adjacency (key = AdjKey)
    ("group", members)      a multipath route: a group slot shared by every
                            route with the same members ((key, weight), ...)
    ("nh", id)              a kernel nexthop object: one slot per object, so
                            that a change of the object moves all its routes

Rules, as Linux applies them (net/ipv4/fib_*.c, net/ipv6/route.c):

* the local table is consulted before main: a main prefix inside a local
  one (an AnyIP range) is local;
* IPv4 routes are keyed by (table, prefix, TOS, priority); several may share
  a key (``ip route append``) and the first is used; ``ip route replace``
  replaces the first; a delete removes the one described;
* IPv6 routes are keyed by (table, prefix, metric); next hops of the same
  key are siblings (ECMP), added and deleted one by one;
* routes with a TOS, a route MTU, an encapsulation, through an interface
  that is not a vEth, or of a type other than unicast are the kernel's;
* a neighbour resolved on a vEth inside a connected route of that vEth gets
  a host route to its adjacency, unless a route of its own exists.

Nothing here calls C or does I/O; tests/unit/test_mirror.py drives it with
synthetic messages.
"""
from __future__ import annotations

import collections
import math
import socket
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from .nldecode import (NLM_F_APPEND, NLM_F_REPLACE, NUD_DELAY, NUD_NOARP, NUD_PERMANENT, NUD_PROBE,
                       NUD_REACHABLE, NUD_STALE)

MAIN, LOCAL = 254, 255
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST = 1, 2, 3, 4, 5
RTM_F_CLONED = 0x200
RTNH_F_DEAD = 0x1
RTAX_MTU = 2
NUD_USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT
V4, V6 = socket.AF_INET, socket.AF_INET6
BUCKETS_MAX = 4096   # buckets one group may take: weights are scaled down past that

Prefix = Tuple[int, bytes, int]          # (family, network address bytes, length)
AdjKey = Tuple[int, int, bytes]          # (port index, family of the address, address)
Meaning = tuple


def bits(fam: int) -> int:
    return 32 if fam == V4 else 128


def masked(fam: int, addr: bytes, plen: int) -> bytes:
    n = int.from_bytes(addr, "big")
    b = bits(fam)
    mask = ((1 << plen) - 1) << (b - plen) if plen else 0
    return (n & mask).to_bytes(b // 8, "big")


# (named tuples: a full table makes millions of them, and they are cheap)
class Hop(NamedTuple):
    oif: int
    gw_fam: int = 0
    gw: Optional[bytes] = None
    weight: int = 1
    dead: bool = False

    @property
    def ident(self):
        return (self.oif, self.gw_fam, self.gw)


class KRoute(NamedTuple):
    """One kernel route of a (table, prefix, priority, TOS) key."""
    rtype: int
    tos: int = 0
    hops: Tuple[Hop, ...] = ()
    nhid: int = 0
    special: bool = False        # route MTU or encapsulation: the kernel's


class NhObj(NamedTuple):
    """A kernel nexthop object (RTM_NEWNEXTHOP)."""
    hop: Optional[Hop] = None                 # a single next hop
    group: Tuple[Tuple[int, int], ...] = ()   # (member id, weight)
    blackhole: bool = False
    special: bool = False                     # encapsulation, FDB: the kernel's


def _gw(m, route_fam: int) -> Tuple[int, Optional[bytes]]:
    gw = m.get_attr("RTA_GATEWAY")
    if gw:
        return route_fam, gw
    via = m.get_attr("RTA_VIA")
    if via and via[1]:
        return via[0], via[1]
    return 0, None


def normalise(members: Iterable[Tuple[AdjKey, int]]) -> Tuple[Tuple[AdjKey, int], ...]:
    """Members of a group, merged, sorted and with weights divided by their
    greatest common divisor: equal groups compare equal."""
    acc: Dict[AdjKey, int] = collections.Counter()
    for k, w in members:
        acc[k] += max(int(w), 1)
    if not acc:
        return ()
    g = 0
    for w in acc.values():
        g = math.gcd(g, w)
    return tuple(sorted((k, w // g) for k, w in acc.items()))


def buckets(members: Tuple[Tuple[AdjKey, int], ...]) -> List[AdjKey]:
    """The group's buckets: each member as many times as its weight (scaled
    to at most BUCKETS_MAX, each member keeping one at least)."""
    total = sum(w for _, w in members)
    if total > BUCKETS_MAX:
        members = tuple((k, max(1, round(w * BUCKETS_MAX / total))) for k, w in members)
    out: List[AdjKey] = []
    for k, w in members:
        out.extend([k] * w)
    return out


class Mirror:
    def __init__(self, port_of_ifindex: Dict[int, int], punt: Dict[str, int]):
        self.port_of_ifindex = port_of_ifindex    # vEth ifindex -> port index
        self.punt = punt                          # punt reason name -> KG_PUNT_* value
        self.clear()

    def clear(self) -> None:
        # prefix -> table -> (priority, tos) -> routes in the kernel's order
        self.routes: Dict[Prefix, Dict[int, Dict[Tuple[int, int], List[KRoute]]]] = {}
        self.lens: Dict[int, collections.Counter] = {V4: collections.Counter(), V6: collections.Counter()}
        self.local_lens: Dict[int, collections.Counter] = {V4: collections.Counter(),
                                                           V6: collections.Counter()}
        self.nhs: Dict[int, NhObj] = {}
        self.nh_users: Dict[int, Set[Prefix]] = collections.defaultdict(set)
        self.neigh: Dict[AdjKey, Tuple[bytes, int]] = {}     # -> (MAC, NUD state)
        self.neigh_ports: Dict[Tuple[int, bytes], Set[int]] = collections.defaultdict(set)

    # ------------------------------------------------------------ routes
    def route(self, m) -> Optional[Prefix]:
        """Apply an RTM_NEWROUTE/RTM_DELROUTE; the prefix it touched."""
        fam = m["family"]
        if fam not in (V4, V6) or m["flags"] & RTM_F_CLONED:
            return None
        a = m.attrs
        table = a.get("RTA_TABLE") or m["table"]
        if table not in (MAIN, LOCAL):
            return None
        plen = m["dst_len"]
        addr = a.get("RTA_DST") or bytes(bits(fam) // 8)
        key: Prefix = (fam, masked(fam, addr, plen), plen)
        r = self._kroute(m, a, fam)
        rid = (a.get("RTA_PRIORITY") or 0, m["tos"])
        tables = self.routes.get(key)
        if m["event"] == "RTM_DELROUTE":
            if tables is None or table not in tables or rid not in tables[table]:
                return key
            aliases = tables[table][rid]
            if fam == V6 and r.hops and not r.nhid and aliases and aliases[0].hops:
                # one sibling (or several) of an IPv6 multipath route goes
                gone = {h.ident for h in r.hops}
                left = tuple(h for h in aliases[0].hops if h.ident not in gone)
                if left:
                    aliases[0] = aliases[0]._replace(hops=left)
                    return key
                aliases.pop(0)
            elif r in aliases:
                aliases.remove(r)
            else:
                aliases.pop(0)
            if aliases:
                return key
            del tables[table][rid]
            self._prune(key, table)
            self._unuse(key, r)
            return key
        if tables is None:
            tables = self.routes[key] = {}
            self.lens[fam][plen] += 1
        if table not in tables:
            tables[table] = {}
            if table == LOCAL:
                self.local_lens[fam][plen] += 1
        aliases = tables[table].setdefault(rid, [])
        flags = m.get("nlflags", 0)
        if fam == V6:
            if aliases and aliases[0] == r:
                return None               # a restatement
            if (aliases and not flags & NLM_F_REPLACE and not r.nhid and not aliases[0].nhid
                    and r.rtype == aliases[0].rtype and r.hops and aliases[0].hops):
                # a sibling joins (or the whole set is restated)
                have = {h.ident for h in aliases[0].hops}
                extra = tuple(h for h in r.hops if h.ident not in have)
                aliases[0] = aliases[0]._replace(hops=aliases[0].hops + extra)
            else:
                old = aliases[0] if aliases else None
                aliases[:] = [r]
                if old is not None:
                    self._unuse(key, old)
        elif flags & NLM_F_REPLACE and aliases:
            old = aliases[0]
            aliases[0] = r
            self._unuse(key, old)
        elif r in aliases:
            return None                   # already known: a restatement (nexthop compat
                                          # notifications, a dump overlapping events)
        elif flags & NLM_F_APPEND or "nlflags" not in m or flags & 0x2:   # NLM_F_MULTI: a dump, in order
            aliases.append(r)
        else:
            aliases.insert(0, r)          # ip route add/prepend: before the others
        if r.nhid:
            self.nh_users[r.nhid].add(key)
        return key

    def _kroute(self, m, a: dict, fam: int) -> KRoute:
        nhid = a.get("RTA_NH_ID") or 0
        special = "RTA_ENCAP_TYPE" in a or RTAX_MTU in (a.get("RTA_METRICS") or ())
        if not nhid and "RTA_MULTIPATH" not in a and "RTA_VIA" not in a:
            # the common case, quickly: one next hop
            if "RTA_OIF" not in a and "RTA_GATEWAY" not in a:
                return KRoute(m["type"], m["tos"], (), 0, special)
            gw = a.get("RTA_GATEWAY")
            return KRoute(m["type"], m["tos"], (Hop(a.get("RTA_OIF") or 0, fam if gw else 0, gw or None, 1,
                                                    bool(m["flags"] & RTNH_F_DEAD)),), 0, special)
        hops: List[Hop] = []
        if not nhid:
            mp = m.get_attr("RTA_MULTIPATH")
            if mp:
                for nh in mp:
                    if nh.get_attr("RTA_ENCAP_TYPE"):
                        special = True
                    hops.append(Hop(nh["oif"], *_gw(nh, fam), nh["weight"], bool(nh["flags"] & RTNH_F_DEAD)))
            elif m.get_attr("RTA_OIF") or m.get_attr("RTA_GATEWAY") or m.get_attr("RTA_VIA"):
                hops.append(Hop(m.get_attr("RTA_OIF") or 0, *_gw(m, fam), 1, bool(m["flags"] & RTNH_F_DEAD)))
        return KRoute(m["type"], m["tos"], tuple(hops), nhid, special)

    def _unuse(self, key: Prefix, r: KRoute) -> None:
        if r.nhid and not any(a.nhid == r.nhid for a in self._aliases(key)):
            users = self.nh_users.get(r.nhid)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.nh_users[r.nhid]

    def _aliases(self, key: Prefix) -> Iterable[KRoute]:
        for entries in self.routes.get(key, {}).values():
            for aliases in entries.values():
                yield from aliases

    @staticmethod
    def _count(c: collections.Counter, k: int, d: int) -> None:
        c[k] += d
        if c[k] <= 0:
            del c[k]

    # ------------------------------------------------------------ nexthops
    def nexthop(self, m) -> Tuple[int, Set[Prefix]]:
        """Apply an RTM_NEWNEXTHOP/RTM_DELNEXTHOP. Returns (id, prefixes
        whose meaning may have changed). The caller rewrites the slots of
        the objects in nh_affected(id)."""
        nid = m.get_attr("NHA_ID")
        if not nid:
            return 0, set()
        before = self.nh_route_meaning(nid)
        if m["event"] == "RTM_DELNEXTHOP":
            return nid, self._delete_nh(nid)
        group = m.get_attr("NHA_GROUP")
        special = bool(m.get_attr("NHA_ENCAP_TYPE")) or bool(m.get_attr("NHA_FDB"))
        if group:
            obj = NhObj(group=tuple(group), special=special)
        elif m.get_attr("NHA_BLACKHOLE"):
            obj = NhObj(blackhole=True)
        else:
            gw = m.get_attr("NHA_GATEWAY")
            obj = NhObj(hop=Hop(m.get_attr("NHA_OIF") or 0, m["family"] if gw else 0, gw or None, 1,
                                bool(m["flags"] & RTNH_F_DEAD)), special=special)
        self.nhs[nid] = obj
        if self.nh_route_meaning(nid) != before:
            return nid, set(self.nh_users.get(nid, set()))
        return nid, set()

    def _delete_nh(self, nid: int) -> Set[Prefix]:
        """As the kernel does: the routes through a deleted object go (with
        no message for them), and it leaves the groups it was in (a group
        left empty goes too)."""
        if self.nhs.pop(nid, None) is None:
            return set()
        users = self.nh_users.pop(nid, set())
        for key in users:
            self._drop_nhid(key, nid)
        for g in self.groups_of(nid):
            o = self.nhs[g]
            rest = tuple((i, w) for i, w in o.group if i != nid)
            if rest:
                self.nhs[g] = o._replace(group=rest)
            else:
                users |= self._delete_nh(g)
        return set(users)

    def _drop_nhid(self, key: Prefix, nid: int) -> None:
        tables = self.routes.get(key)
        if not tables:
            return
        for table in list(tables):
            entries = tables[table]
            for rid in list(entries):
                entries[rid] = [a for a in entries[rid] if a.nhid != nid]
                if not entries[rid]:
                    del entries[rid]
            self._prune(key, table)

    def _prune(self, key: Prefix, table: int) -> None:
        """Drop a table of a prefix left without routes, and the prefix
        left without tables, keeping the length counts."""
        fam, _, plen = key
        tables = self.routes[key]
        if not tables[table]:
            del tables[table]
            if table == LOCAL:
                self._count(self.local_lens[fam], plen, -1)
        if not tables:
            del self.routes[key]
            self._count(self.lens[fam], plen, -1)

    def groups_of(self, nid: int) -> List[int]:
        return [g for g, o in self.nhs.items() if any(i == nid for i, _ in o.group)]

    def nh_affected(self, nid: int) -> List[int]:
        """Objects whose slot content depends on object nid."""
        return [nid] + self.groups_of(nid)

    def _hop_adj(self, h: Hop) -> Optional[AdjKey]:
        port = self.port_of_ifindex.get(h.oif)
        if port is None or h.gw is None:
            return None
        return (port, h.gw_fam, h.gw)

    def nh_route_meaning(self, nid: int) -> Optional[Meaning]:
        """What a route through object nid means (None: no such object)."""
        o = self.nhs.get(nid)
        if o is None:
            return None
        if o.blackhole or o.special:
            return ("punt", self.punt["not_fast"])
        if o.hop is not None and o.hop.gw is None:
            port = self.port_of_ifindex.get(o.hop.oif)
            return ("glean", port) if port is not None else ("punt", self.punt["not_fast"])
        return ("nh", nid)

    def nh_content(self, nid: int) -> Meaning:
        """What object nid's slot holds: ("buckets", members) or ("punt", r)."""
        o = self.nhs.get(nid)
        nf = ("punt", self.punt["not_fast"])
        if o is None or o.blackhole or o.special:
            return nf
        if o.hop is not None:
            k = self._hop_adj(o.hop)
            if k is None or o.hop.dead:
                return nf
            return ("buckets", ((k, 1),))
        members = []
        for mid, w in o.group:
            mo = self.nhs.get(mid)
            if mo is None or mo.hop is None or mo.special:
                return nf
            if mo.hop.dead:
                continue
            k = self._hop_adj(mo.hop)
            if k is None:
                return nf
            members.append((k, w))
        members = normalise(members)
        return ("buckets", members) if members else nf

    # ------------------------------------------------------------ neighbours
    def neighbour(self, m) -> Optional[AdjKey]:
        """Apply an RTM_NEWNEIGH/RTM_DELNEIGH; the key it touched."""
        fam = m["family"]
        port = self.port_of_ifindex.get(m["ifindex"])
        addr = m.get_attr("NDA_DST")
        if fam not in (V4, V6) or port is None or addr is None:
            return None
        if (fam == V4 and addr[0] >= 224) or (fam == V6 and addr[0] == 0xFF):
            return None
        key: AdjKey = (port, fam, addr)
        lladdr = m.get_attr("NDA_LLADDR")
        if m["event"] == "RTM_NEWNEIGH" and m["state"] & NUD_USABLE and lladdr and len(lladdr) == 6:
            self.neigh[key] = (lladdr, m["state"])
            self.neigh_ports[(fam, addr)].add(port)
        elif self.neigh.pop(key, None) is not None:
            ports = self.neigh_ports[(fam, addr)]
            ports.discard(port)
            if not ports:
                del self.neigh_ports[(fam, addr)]
        return key

    def mac(self, key: AdjKey) -> Optional[bytes]:
        n = self.neigh.get(key)
        return n[0] if n else None

    # ------------------------------------------------------------ queries
    def _meaning(self, r: KRoute, table: int) -> Meaning:
        P = self.punt
        if table == LOCAL:
            if r.rtype in (RTN_LOCAL, RTN_ANYCAST):
                return ("punt", P["local"])
            if r.rtype in (RTN_BROADCAST, RTN_MULTICAST):
                return ("punt", P["ip_multicast"])
            return ("punt", P["not_fast"])
        if r.rtype != RTN_UNICAST or r.tos or r.special:
            return ("punt", P["not_fast"])
        if r.nhid:
            return self.nh_route_meaning(r.nhid) or ("punt", P["not_fast"])
        hops = r.hops
        if len(hops) == 1 and not hops[0].dead:      # the common case, quickly
            port = self.port_of_ifindex.get(hops[0].oif)
            if port is None:
                return ("punt", P["not_fast"])
            if hops[0].gw is None:
                return ("glean", port)
            return ("adj", (port, hops[0].gw_fam, hops[0].gw))
        hops = [h for h in hops if not h.dead]
        if not hops:
            return ("punt", P["not_fast"])
        ports = [self.port_of_ifindex.get(h.oif) for h in hops]
        if any(p is None for p in ports):
            return ("punt", P["not_fast"])              # not through a vEth
        if len(hops) == 1 and hops[0].gw is None:
            return ("glean", ports[0])
        if any(h.gw is None for h in hops):
            return ("punt", P["not_fast"])
        members = normalise(((p, h.gw_fam, h.gw), h.weight) for p, h in zip(ports, hops))
        if len(members) == 1:
            return ("adj", members[0][0])
        return ("group", members)

    def _table_meaning(self, key: Prefix, table: int) -> Optional[Meaning]:
        entries = self.routes.get(key, {}).get(table)
        if not entries:
            return None
        if table == MAIN and any(tos for _, tos in entries):
            return ("punt", self.punt["not_fast"])      # TOS-selected routes: the kernel's
        return self._meaning(entries[min(entries)][0], table)

    def effective(self, key: Prefix) -> Optional[Meaning]:
        """The meaning of the kernel's routes for exactly this prefix, with
        the local table first: a prefix inside a local route is local."""
        fam, addr, plen = key
        for ln in self.local_lens[fam]:
            if ln <= plen:
                lk = (fam, masked(fam, addr, ln), ln) if ln != plen else key
                r = self._table_meaning(lk, LOCAL)
                if r is not None:
                    return r
        return self._table_meaning(key, MAIN)

    def covering(self, fam: int, addr: bytes) -> Optional[Meaning]:
        """The route Linux would use for addr (host routes of neighbours aside)."""
        for plen in sorted(self.lens[fam], reverse=True):
            r = self.effective((fam, masked(fam, addr, plen), plen))
            if r is not None:
                return r
        return None

    def wants_host(self, key: AdjKey) -> bool:
        port, fam, addr = key
        if key not in self.neigh:
            return False
        if self.effective((fam, addr, bits(fam))) is not None:
            return False      # an explicit host route (or local address) wins
        r = self.covering(fam, addr)
        return r is not None and r[0] == "glean" and r[1] == port

    def desired(self, key: Prefix) -> Optional[Meaning]:
        r = self.effective(key)
        if r is not None:
            return r
        fam, addr, plen = key
        if plen == bits(fam):
            for port in sorted(self.neigh_ports.get((fam, addr), ())):
                k = (port, fam, addr)
                if self.wants_host(k):
                    return ("adj", k)
        return None

    def prefixes(self) -> Set[Prefix]:
        """Every prefix that may have something installed."""
        keys = set(self.routes)
        for (_, fam, addr) in self.neigh:
            keys.add((fam, addr, bits(fam)))
        return keys

    def host_keys_under(self, touched: Set[Prefix]) -> Set[Prefix]:
        """Neighbour host routes whose covering route may have changed."""
        out = set()
        if not touched:
            return out
        tl = {(f, p) for f, _, p in touched}
        for (_, fam, addr) in self.neigh:
            b = bits(fam)
            if any((fam, masked(fam, addr, p), p) in touched for (f, p) in tl if f == fam):
                out.add((fam, addr, b))
        return out
