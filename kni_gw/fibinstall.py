"""Install what the mirror means into the C tables, and keep neighbours live.

* Adjacencies (one per next hop: port, family, address) and group slots
  (one per kernel nexthop object, one per distinct multipath set) are
  refcounted; an index is reused only after kg_sync(), when no lookup that
  began before it was unlinked can still read it. A slot's buckets live in
  a range of the bucket pool; a new range is written before the slot is
  re-pointed, and the old one is freed after kg_sync().
* What C refuses (a table full: -ENOSPC) is not recorded as installed. It
  is counted, logged once, retried when a delete makes room, and while it
  is missing the installed prefix that covers it punts (KG_PUNT_TABLE_FULL),
  so that its traffic goes to the kernel, never to a shorter prefix's next
  hop.
* IPv6 edits are applied in one batch per pass (the lcores punt IPv6 for
  the moment of the edit).

Neighbour liveness (Liveness): the kernel never sees forwarded traffic, so
its neighbour entries would go STALE and never be re-checked. Every
LIVENESS_S the rx lcores' stamps are read (kg_adj_scan):

* a neighbour the fast path sends to is reported to the kernel with NTF_USE,
  as if the kernel had sent through it: a STALE entry is then probed, a
  REACHABLE one re-probed when its reachable time ends, exactly as for
  traffic Linux forwards;
* a neighbour whose address sends from another MAC than its entry's
  ("moved"), or one that was heard from steadily (frames forwarded from its
  address with its MAC: the fast path's analogue of the kernel's
  confirmations) and fell silent for SILENCE_S while traffic still goes to
  it, is put in PROBE at once: the kernel unicasts probes to the known MAC; if they fail the
  entry goes FAILED, the fast path punts, and the kernel resolves again
  (a new MAC, or ICMP unreachable for a dead host).

Static entries (PERMANENT, NOARP) are left alone: the kernel never re-checks
them, and NTF_USE would even clear NUD_PERMANENT.

At most LIVENESS_MSGS_S messages a second however many neighbours there
are (the longest waiting first), and at most one per neighbour every
NUDGE_S seconds; the probes
themselves are the kernel's (ucast_solicit of them, retrans_time apart).
"""
from __future__ import annotations

import bisect
import collections
import errno
import ipaddress
import logging
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

from . import dataplane as dp
from .errors import DataplaneError
from .mirror import (NUD_NOARP, NUD_PERMANENT, AdjKey, Meaning, Mirror, Prefix, V4, V6, buckets,
                     masked)

log = logging.getLogger("kni-gw")

LIVENESS_S = 0.5
LIVENESS_MSGS_S = 500
NUDGE_S = 4.0
SILENCE_S = 1.5        # a neighbour heard from, still sent to, but quiet this long is probed,
HEARD_S = 30.0         # ... if it was heard within this,
STEADY_PERIODS = 2     # ... for this many periods in a row (it was talking, not a stray frame)
# static entries (ip neigh ... nud permanent / noarp) are the operator's: the
# kernel never re-checks them, and NTF_USE would clear NUD_PERMANENT
# (__neigh_update's NEIGH_UPDATE_F_USE: new = old & ~NUD_PERMANENT)
STATIC = NUD_PERMANENT | NUD_NOARP
RETRY_BUDGET = 256     # failed routes tried again per pass that made room


def describe(key: Prefix) -> str:
    fam, addr, plen = key
    return f"{ipaddress.ip_address(addr)}/{plen}"


class RangeAllocator:
    """First-fit ranges of the bucket pool, coalesced on free."""

    def __init__(self, end: int, start: int = 0):
        self.free: List[Tuple[int, int]] = [(start, end - start)]   # (base, n), sorted

    def alloc(self, n: int) -> Optional[int]:
        for i, (b, ln) in enumerate(self.free):
            if ln >= n:
                if ln == n:
                    del self.free[i]
                else:
                    self.free[i] = (b + n, ln - n)
                return b
        return None

    def release(self, base: int, n: int) -> None:
        i = bisect.bisect_left(self.free, (base, 0))
        self.free.insert(i, (base, n))
        # merge with the next, then with the previous
        if i + 1 < len(self.free) and base + n == self.free[i + 1][0]:
            self.free[i] = (base, n + self.free[i + 1][1])
            del self.free[i + 1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == self.free[i][0]:
            self.free[i - 1] = (self.free[i - 1][0], self.free[i - 1][1] + self.free[i][1])
            del self.free[i]


class Installer:
    def __init__(self, mirror: Mirror, adjs: Optional[range] = None, slots: Optional[range] = None,
                 bucket_range: Optional[Tuple[int, int]] = None):
        """adjs, slots, bucket_range (start, end): the indexes it may use
        (all of them by default; tests share the tables with other users)."""
        self.m = mirror
        self.P = mirror.punt
        # installed prefixes: key -> (meaning, the next-hop value it holds a reference on)
        self.installed: Dict[Prefix, Tuple[Meaning, int]] = {}
        self.inst_lens: Dict[int, collections.Counter] = {V4: collections.Counter(), V6: collections.Counter()}
        self.failed: Dict[Prefix, Meaning] = {}
        self.shadowed: Set[Prefix] = set()
        # adjacencies
        self.adj_of: Dict[AdjKey, int] = {}
        self.adj_key: Dict[int, AdjKey] = {}
        self.adj_ref: Dict[int, int] = {}
        self.free_adj: List[int] = list(reversed(adjs or range(dp.NH_FIRST_ADJ, dp.ADJ_MAX)))
        # group slots: ("nh", id) or ("group", members) -> slot
        self.slot_of: Dict[tuple, int] = {}
        self.slot_key: Dict[int, tuple] = {}
        self.slot_ref: Dict[int, int] = {}
        self.slot_content: Dict[int, Tuple[Meaning, Optional[Tuple[int, int]], Tuple[int, ...]]] = {}
        self.free_slot: List[int] = list(reversed(slots or range(dp.GROUP_MAX)))
        start, end = bucket_range or (0, dp.BUCKET_MAX)
        self.ranges = RangeAllocator(end, start)
        # released, reusable after the next kg_sync()
        self.pending_adj: List[int] = []
        self.pending_slot: List[int] = []
        self.pending_range: List[Tuple[int, int]] = []
        self.v6_ops: List[Tuple[Prefix, Optional[int]]] = []
        self.made_room = False
        self.counts: Dict[Tuple[int, bool], int] = collections.Counter()   # (family, in C?) -> prefixes
        self.stats = {"install_failures": 0, "retried": 0}

    # ------------------------------------------------------------ passes
    def apply(self, keys: Iterable[Prefix], nh_changed: bool = False,
              neigh: Iterable[AdjKey] = ()) -> None:
        """One pass: neighbours' MACs, slots of nexthop objects (when any
        changed), then the prefixes, then the IPv6 batch, shadows, retries
        and the recycling of released indexes."""
        for k in neigh:
            if k in self.adj_of:
                self._refresh_adj(k)
        if nh_changed:
            self.refresh_slots()
        for key in keys:
            self._reconcile(key)
        self._flush()

    def _reconcile(self, key: Prefix) -> None:
        want = self.m.desired(key)
        have = self.installed.get(key)
        if want is None:
            self.failed.pop(key, None)
            if have is not None:
                self._remove(key)
            return
        if have is not None and have[0] == want:
            return
        if key in self.failed and self.failed[key] == want:
            return
        self.failed.pop(key, None)
        nh = self._acquire(want)
        if nh is None:
            self._fail(key, want, "out of group slots or buckets")
            if have is not None:
                self._remove(key)
            return
        if not self._write(key, nh):
            self._release(nh)
            self._fail(key, want, "table full")
            if have is not None:
                self._remove(key)
            return
        if have is not None:
            self._release(have[1])
            self._count(key, have[1], -1)
        else:
            self.inst_lens[key[0]][key[2]] += 1
        self.installed[key] = (want, nh)
        self._count(key, nh, +1)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fib: %s -> %s", describe(key), self.nh_name(nh))

    def _remove(self, key: Prefix) -> None:
        want, nh = self.installed.pop(key)
        self._count(key, nh, -1)
        c = self.inst_lens[key[0]]
        c[key[2]] -= 1
        if c[key[2]] <= 0:
            del c[key[2]]
        self._delete(key)
        self._release(nh)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fib: %s removed", describe(key))

    def _count(self, key: Prefix, nh: int, d: int) -> None:
        self.counts[(key[0], nh >= dp.NH_FIRST_ADJ)] += d

    def _fail(self, key: Prefix, want: Meaning, why: str) -> None:
        if not self.failed:
            log.warning("fib: %s not installed (%s): its traffic goes to the kernel; more such routes "
                        "are counted as not_installed (raise --max-routes)", describe(key), why)
        self.failed[key] = want
        self.stats["install_failures"] += 1

    # ------------------------------------------------------------ C writes
    def _write(self, key: Prefix, nh: int) -> bool:
        """Point key at nh in the LPM (TABLE_FULL while shadowed). False
        when the table is full."""
        fam, addr, plen = key
        val = self.P["table_full"] if key in self.shadowed else nh
        if fam == V6:
            self.v6_ops.append((key, val))
            return True
        try:
            dp.route4_add(addr, plen, val)
        except DataplaneError as e:
            if e.errno_value in (errno.ENOSPC, errno.ENOMEM):
                return False
            raise
        return True

    def _delete(self, key: Prefix) -> None:
        fam, addr, plen = key
        if fam == V6:
            self.v6_ops.append((key, None))
            return
        try:
            dp.route4_del(addr, plen)
            self.made_room = True
        except DataplaneError as e:
            if e.errno_value not in (errno.ENOENT, errno.EINVAL):
                raise

    def _flush(self) -> None:
        self._apply_v6()
        self._shadows()
        if self.made_room and self.failed:
            self._retry()
            self._shadows()
        self.made_room = False
        dp.route4_commit()
        if self.pending_adj or self.pending_slot or self.pending_range:
            dp.fib_sync()
            for a in self.pending_adj:
                dp.adj_clear(a)
            self.free_adj.extend(self.pending_adj)
            self.free_slot.extend(self.pending_slot)
            for r in self.pending_range:
                self.ranges.release(*r)
            self.pending_adj, self.pending_slot, self.pending_range = [], [], []

    def _apply_v6(self) -> None:
        if not self.v6_ops:
            return
        failed6: List[Prefix] = []
        with dp.Route6Batch() as b:
            for key, val in self.v6_ops:
                _, addr, plen = key
                try:
                    if val is None:
                        b.delete(addr, plen)
                        self.made_room = True
                    else:
                        b.add(addr, plen, val)
                except DataplaneError as e:
                    if val is None and e.errno_value in (errno.ENOENT, errno.EINVAL):
                        continue
                    if val is not None and e.errno_value in (errno.ENOSPC, errno.ENOMEM):
                        failed6.append(key)
                        continue
                    raise
            for key in failed6:     # an update that failed must not leave the old next hop
                try:
                    b.delete(key[1], key[2])
                except DataplaneError:
                    pass
        self.v6_ops = []
        for key in failed6:
            if key in self.installed:
                want, nh = self.installed.pop(key)
                self._count(key, nh, -1)
                c = self.inst_lens[V6]
                c[key[2]] -= 1
                if c[key[2]] <= 0:
                    del c[key[2]]
                self._release(nh)
                self._fail(key, want, "table full")

    def _cover(self, key: Prefix, lens: Dict[int, List[int]]) -> Optional[Prefix]:
        fam, addr, plen = key
        for ln in lens[fam]:
            if ln < plen:
                k = (fam, masked(fam, addr, ln), ln)
                if k in self.installed:
                    return k
        return None

    def _shadows(self) -> None:
        """The installed prefix that covers a missing one punts."""
        if not self.failed and not self.shadowed:
            return
        lens = {f: sorted(c, reverse=True) for f, c in self.inst_lens.items()}
        want = {c for c in (self._cover(k, lens) for k in self.failed) if c is not None}
        for c in want - self.shadowed:
            self.shadowed.add(c)
            self._write(c, self.installed[c][1])
        for c in self.shadowed - want:
            self.shadowed.discard(c)
            if c in self.installed:
                self._write(c, self.installed[c][1])
        self._apply_v6()

    def _retry(self) -> None:
        keys = sorted(self.failed, key=lambda k: k[2])[:RETRY_BUDGET]
        for key in keys:
            want = self.failed.pop(key)
            self.stats["retried"] += 1
            self._reconcile(key)
            if key in self.failed:
                self.failed[key] = want
                break
        else:
            if not self.failed:
                log.info("fib: every route is in the fast path again")

    # ------------------------------------------------------------ next hops
    def _acquire(self, want: Meaning) -> Optional[int]:
        kind = want[0]
        if kind == "punt":
            return want[1]
        if kind == "glean":
            return self.P["glean"]
        if kind == "adj":
            return self._adj(want[1])
        key = want          # ("nh", id) or ("group", members)
        s = self.slot_of.get(key)
        if s is None:
            if not self.free_slot:
                return None
            s = self.free_slot.pop()
            content = self.m.nh_content(want[1]) if kind == "nh" else ("buckets", want[1])
            if not self._write_slot(s, content):
                self.free_slot.append(s)
                return None
            self.slot_of[key] = s
            self.slot_key[s] = key
            self.slot_ref[s] = 0
        self.slot_ref[s] += 1
        return dp.NH_GROUP | s

    def _release(self, nh: int) -> None:
        if nh < dp.NH_FIRST_ADJ:
            return
        if nh & dp.NH_GROUP:
            s = nh & ~dp.NH_GROUP
            self.slot_ref[s] -= 1
            if self.slot_ref[s] == 0:
                del self.slot_ref[s]
                del self.slot_of[self.slot_key.pop(s)]
                _, rng, adjs = self.slot_content.pop(s)
                if rng is not None:
                    self.pending_range.append(rng)
                for a in adjs:
                    self._release(a)
                self.pending_slot.append(s)
            return
        self.adj_ref[nh] -= 1
        if self.adj_ref[nh] == 0:
            del self.adj_ref[nh]
            del self.adj_of[self.adj_key.pop(nh)]
            self.pending_adj.append(nh)

    def _adj(self, key: AdjKey) -> Optional[int]:
        idx = self.adj_of.get(key)
        if idx is None:
            if not self.free_adj:
                return None
            idx = self.free_adj.pop()
            self.adj_of[key] = idx
            self.adj_key[idx] = key
            self.adj_ref[idx] = 0
            self._refresh_adj(key)
        self.adj_ref[idx] += 1
        return idx

    def _refresh_adj(self, key: AdjKey) -> None:
        idx = self.adj_of[key]
        mac = self.m.mac(key)
        if mac is not None:
            dp.adj_set(idx, key[0], mac)
        else:
            dp.adj_clear(idx)

    def _write_slot(self, s: int, content: Meaning) -> bool:
        """Point slot s at content (a punt, or buckets); what it held before
        is released once no lookup can read it."""
        old = self.slot_content.get(s)
        if content[0] == "punt":
            dp.group_punt(s, content[1])
            new = (content, None, ())
        else:
            keys = buckets(content[1])
            adjs = []
            for k in keys:
                a = self._adj(k)
                if a is None:
                    for x in adjs:
                        self._release(x)
                    return False
                adjs.append(a)
            base = self.ranges.alloc(len(adjs))
            if base is None:
                for x in adjs:
                    self._release(x)
                return False
            dp.group_set(s, base, adjs)
            new = (content, (base, len(adjs)), tuple(adjs))
        self.slot_content[s] = new
        if old is not None:
            if old[1] is not None:
                self.pending_range.append(old[1])
            for a in old[2]:
                self._release(a)
        return True

    def refresh_slots(self) -> None:
        """Slots of kernel nexthop objects follow the objects (their old
        buckets are recycled at the end of the next pass)."""
        for key, s in list(self.slot_of.items()):
            if key[0] != "nh":
                continue
            content = self.m.nh_content(key[1])
            if self.slot_content[s][0] != content:
                if not self._write_slot(s, content):
                    dp.group_punt(s, self.P["table_full"])
                    log.warning("fib: nexthop %d: out of buckets; its routes go to the kernel", key[1])

    # ------------------------------------------------------------ views
    def nh_name(self, nh: int) -> str:
        if nh < dp.NH_FIRST_ADJ:
            return "punt " + dp.PUNT_REASONS[nh]
        if nh & dp.NH_GROUP:
            key = self.slot_key.get(nh & ~dp.NH_GROUP, ("?",))
            return (f"nexthop object {key[1]}" if key[0] == "nh" else "multipath group") + \
                f" (slot {nh & ~dp.NH_GROUP})"
        return f"adjacency {nh}"

    def view(self) -> Dict[str, int]:
        c = self.counts
        fails = collections.Counter(k[0] for k in self.failed)
        return {"routes4": c[(V4, True)] + c[(V4, False)], "routes6": c[(V6, True)] + c[(V6, False)],
                "fast4": c[(V4, True)], "fast6": c[(V6, True)],
                "not_installed4": fails[V4], "not_installed6": fails[V6],
                "adjacencies": len(self.adj_ref), "groups": len(self.slot_ref), **self.stats}


class Liveness:
    """Keeps the kernel's state machine on the neighbours the fast path uses
    (see the module's docstring)."""

    def __init__(self, mirror: Mirror, inst: Installer, sender, ifindex_of_port: Dict[int, int]):
        self.m = mirror
        self.inst = inst
        self.sender = sender
        self.ifindex_of_port = ifindex_of_port
        self.nudged: Dict[AdjKey, float] = {}    # last message about it
        self.heard: Dict[AdjKey, float] = {}     # last period a frame was forwarded from it
        self.streak: Dict[AdjKey, int] = {}      # periods in a row it was heard, until then
        self.stats = {"neigh_use": 0, "neigh_probe": 0}

    def _probe(self, key: AdjKey, mac: bytes, now: float, why: str) -> None:
        self.sender.probe(key[1], self.ifindex_of_port[key[0]], key[2], mac)
        self.stats["neigh_probe"] += 1
        self.nudged[key] = now
        log.info("neighbour %s on vEth port %d %s: the kernel probes it", ipaddress.ip_address(key[2]),
                 key[0], why)

    def _silent(self, key: AdjKey, now: float) -> bool:
        """It talked steadily, we still send to it, and it went quiet."""
        h = self.heard.get(key)
        return (h is not None and self.streak.get(key, 0) >= STEADY_PERIODS
                and SILENCE_S < now - h < HEARD_S)

    def tick(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        used, moved, heard = dp.adj_scan()
        key_of = self.inst.adj_key
        for idx in heard:
            k = key_of.get(idx)
            if k is not None:
                last = self.heard.get(k)
                self.streak[k] = self.streak.get(k, 0) + 1 if last is not None and \
                    now - last < 2.5 * LIVENESS_S else 1
                self.heard[k] = now
        budget = int(LIVENESS_MSGS_S * LIVENESS_S)
        for idx in moved:
            k = key_of.get(idx)
            n = self.m.neigh.get(k) if k else None
            if n is None or n[1] & STATIC or budget <= 0 or now - self.nudged.get(k, -1e9) < NUDGE_S:
                continue
            self._probe(k, n[0], now, f"sends from another MAC than {n[0].hex(':')}")
            budget -= 1
        due = []
        for idx in used:
            k = key_of.get(idx)
            n = self.m.neigh.get(k) if k else None
            if n is not None and not n[1] & STATIC and now - self.nudged.get(k, -1e9) >= NUDGE_S:
                due.append(k)
        # the longest waiting first: under the cap, every neighbour gets its turn
        due.sort(key=lambda k: self.nudged.get(k, -1e9))
        for k in due[:max(budget, 0)]:
            if self._silent(k, now):
                self._probe(k, self.m.neigh[k][0], now, f"went silent {now - self.heard[k]:.1f} s ago")
            else:
                # in use: as if the kernel had sent through it
                self.sender.use(k[1], self.ifindex_of_port[k[0]], k[2])
                self.stats["neigh_use"] += 1
                self.nudged[k] = now
        if len(self.nudged) + len(self.heard) > 8 * max(len(self.m.neigh), 256):
            self.nudged = {k: t for k, t in self.nudged.items() if k in self.m.neigh}
            self.heard = {k: t for k, t in self.heard.items() if k in self.m.neigh}
            self.streak = {k: t for k, t in self.streak.items() if k in self.m.neigh}
        self.sender.drain()
