"""Kernel -> fast path mirror: the loop that ties the three layers together.

    nldecode   sockets, dumps, decoders (what the kernel said)
    mirror     the kernel's state and what it means for the fast path (pure)
    fibinstall index allocation and C calls (what the fast path holds),
               and neighbour liveness

At start a full dump (nexthop objects, then routes, then neighbours), then
netlink events; on ENOBUFS (events lost) or an interrupted dump, a fresh
dump reconciled against what is installed. The forwarding sysctls and the
IPv6 MTU of each vEth are followed too (RTM_NEWNETCONF, and a slow poll).
"""
from __future__ import annotations

import contextlib
import errno
import gc
import logging
import socket
import time
from typing import Dict

from . import dataplane as dp
from .fibinstall import Installer, Liveness
from .mirror import Mirror, Prefix
from .nldecode import (RTM_GETNEIGH, RTM_GETNEXTHOP, RTM_GETROUTE, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE,
                       RTMGRP_NEIGH, RTMGRP_NETCONF, RTNLGRP_NEXTHOP, DumpInterrupted, EventSocket,
                       NeighSender, dump, ifname, read_int)

log = logging.getLogger("kni-gw")

DUMP_TRIES = 5
FREEZE_AFTER = 10000     # messages in a batch after which the mirror's objects are frozen


@contextlib.contextmanager
def no_gc(freeze: bool):
    """Python's cyclic GC would rescan the whole mirror (millions of objects
    with a full table) again and again while a batch builds it: more than
    half the time of a load. The mirror's structures hold no cycles, so the
    collector is paused for the batch, and after a large one what exists is
    frozen out of its sight (gc.freeze; freed objects still go by refcount)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was:
            gc.enable()


class FibMirror:
    def __init__(self, port_of_ifindex: Dict[int, int]):
        self.port_of_ifindex = port_of_ifindex      # vEth ifindex -> port index
        self.ifindex_of_port = {p: i for i, p in port_of_ifindex.items()}
        self.events = EventSocket(RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH | RTMGRP_NETCONF,
                                  extra_groups=(RTNLGRP_NEXTHOP,))
        self.mirror = Mirror(port_of_ifindex, dp.PUNT)
        self.inst = Installer(self.mirror)
        self.sender = NeighSender()
        self.live = Liveness(self.mirror, self.inst, self.sender, self.ifindex_of_port)
        self.fwd: Dict[int, tuple] = {}
        self.stats = {"events": 0, "resyncs": 0}

    def close(self) -> None:
        self.events.close()
        self.sender.close()

    def fileno(self) -> int:
        return self.events.fileno()

    # ------------------------------------------------------------ dumps
    def resync(self) -> None:
        """Full dump, reconciled with what is installed (start, and after
        lost events or an interrupted dump)."""
        t0 = time.monotonic()
        for attempt in range(DUMP_TRIES):
            try:
                nhs = dump(RTM_GETNEXTHOP, socket.AF_UNSPEC)
                routes = dump(RTM_GETROUTE, socket.AF_INET) + dump(RTM_GETROUTE, socket.AF_INET6)
                neigh = dump(RTM_GETNEIGH, socket.AF_UNSPEC)
                break
            except DumpInterrupted:
                log.debug("fib: dump interrupted by a change; again (%d)", attempt + 1)
            except OSError as e:
                if e.errno != errno.EINVAL or attempt:     # no nexthop objects in this kernel
                    raise
                nhs = []
        else:
            raise OSError(errno.EBUSY, "the kernel's tables kept changing during the dump")
        m = self.mirror
        with no_gc(freeze=True):
            m.clear()
            for msg in nhs:
                m.nexthop(msg)
            for msg in routes:
                m.route(msg)
            for msg in neigh:
                m.neighbour(msg)
            keys = dict.fromkeys(m.routes)      # in the dump's order
            keys.update(dict.fromkeys(m.prefixes()))
            keys.update(dict.fromkeys(self.inst.installed))
            keys.update(dict.fromkeys(self.inst.failed))
            self.inst.apply(keys, nh_changed=True, neigh=list(self.inst.adj_of))
        self.stats["resyncs"] += 1
        v = self.inst.view()
        log.info("fib: mirrored %d IPv4 + %d IPv6 prefixes, %d nexthop objects, %d neighbours in %.2f s",
                 v["routes4"], v["routes6"], len(m.nhs), len(m.neigh), time.monotonic() - t0)

    # ------------------------------------------------------------ events
    def on_readable(self, budget: int = 5000) -> None:
        """Read what is queued (up to budget messages) and apply it as one batch."""
        with no_gc(freeze=False):
            n = self._batch(budget)
        if n >= FREEZE_AFTER:
            gc.freeze()

    def _batch(self, budget: int) -> int:
        m = self.mirror
        # in the order the kernel told them: when a table is full, the
        # routes that came first are the ones installed
        touched: Dict[Prefix, None] = {}
        neigh = set()
        nh_changed = netconf = False
        n = 0
        try:
            for msgs in self.events.datagrams(budget):
                n += len(msgs)
                for msg in msgs:
                    ev = msg["event"]
                    if ev in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                        p = m.route(msg)
                        if p is not None:
                            touched[p] = None
                    elif ev in ("RTM_NEWNEIGH", "RTM_DELNEIGH"):
                        k = m.neighbour(msg)
                        if k is not None:
                            neigh.add(k)
                            touched[(k[1], k[2], 32 if k[1] == socket.AF_INET else 128)] = None
                    elif ev in ("RTM_NEWNEXTHOP", "RTM_DELNEXTHOP"):
                        _, users = m.nexthop(msg)
                        touched.update(dict.fromkeys(users))
                        nh_changed = True
                        # a nexthop object moves its routes at once: its slot
                        # now, before the route messages the kernel sends
                        # after it for each of them (compat mode)
                        self.inst.refresh_slots()
                    elif ev == "RTM_NEWNETCONF":
                        netconf = True
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            log.warning("fib: netlink events lost (ENOBUFS); resynchronising from a dump")
            self.resync()
            return n
        self.stats["events"] += n
        if netconf:
            self.poll_sysctls()
        if touched or neigh or nh_changed:
            touched.update(dict.fromkeys(m.host_keys_under(set(touched))))
            self.inst.apply(touched, nh_changed=nh_changed, neigh=neigh)
        return n

    def tick(self) -> None:
        """Neighbour liveness (call every fibinstall.LIVENESS_S)."""
        self.live.tick()

    def view(self) -> dict:
        v = self.inst.view()
        v.update(neighbours=len(self.mirror.neigh), nexthop_objects=len(self.mirror.nhs),
                 forwarding={str(p): {"ipv4": bool(f[0]), "ipv6": bool(f[1])}
                             for p, f in sorted(self.fwd.items())},
                 memory=dp.fib_memory(), **self.stats, **self.live.stats)
        return v

    # ------------------------------------------------------------ sysctls
    def poll_sysctls(self) -> None:
        """What the kernel applies per interface, read by ifindex (so that a
        renamed vEth is still followed):
        * IPv4 forwarding: net.ipv4.conf.<vEth>.forwarding (ip_forward()
          checks the ingress device's);
        * IPv6 forwarding: net.ipv6.conf.all.forwarding, or the vEth's
          force_forwarding where the kernel has it (ip6_forward());
        * the IPv6 egress MTU: net.ipv6.conf.<vEth>.mtu."""
        all6 = read_int("/proc/sys/net/ipv6/conf/all/forwarding") or 0
        for port, idx in self.ifindex_of_port.items():
            name = ifname(idx)
            if name is None:
                continue
            v4 = read_int(f"/proc/sys/net/ipv4/conf/{name}/forwarding") or 0
            v6 = 1 if all6 else (read_int(f"/proc/sys/net/ipv6/conf/{name}/force_forwarding") or 0)
            mtu6 = read_int(f"/proc/sys/net/ipv6/conf/{name}/mtu") or 0
            state = (v4, v6, mtu6)
            if self.fwd.get(port) != state:
                if port in self.fwd and self.fwd[port][:2] != state[:2]:
                    log.info("%s: forwarding IPv4 %s, IPv6 %s", name, "on" if v4 else "off",
                             "on" if v6 else "off")
                self.fwd[port] = state
                dp.fib_forwarding(port, bool(v4), bool(v6))
                dp.fib_port_mtu6(port, mtu6)

