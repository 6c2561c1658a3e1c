"""The exception path's kernel side: backends, vEthN naming, and keeping
each port in step with its vEthN (what KNI's callbacks did), via netlink.

  vEthN admin up/down   -> port start/stop (forwarding on/off)
  vEthN MTU             -> port MTU  (refused values: vEthN is put back)
  vEthN MAC             -> port MAC  (refused values: vEthN is put back)
  vEthN promisc/allmulti-> port promiscuous / all-multicast
  port link (-m)        -> vEthN carrier
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import struct
import time
from typing import Dict, Optional

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .config import RunConfig
from .errors import DataplaneError
from .netlink import EventSocket

log = logging.getLogger("kni-gw")

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200

# PMDs that sit on a kernel netdev and do not report its link themselves:
# their link is the netdev's carrier.
KERNEL_BACKED = {"net_af_packet", "net_af_xdp"}


def set_carrier(index: int, on: bool) -> None:
    """IFLA_CARRIER on an interface (a TAP takes it). pyroute2's link("set")
    drops the carrier attribute, so this one request is built here."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["attrs"] = [("IFLA_CARRIER", int(on))]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = 1
    msg.encode()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.settimeout(2.0)
        s.bind((0, 0))
        s.send(msg.data)
        ack = s.recv(4096)
    # nlmsghdr (16 bytes), then nlmsgerr's error: 0 or -errno
    err = struct.unpack_from("i", ack, 16)[0] if len(ack) >= 20 else 0
    if err < 0:
        raise OSError(-err, os.strerror(-err))


@dataclasses.dataclass
class VethState:
    port: int
    ifname: str
    index: int
    up: bool = False
    mtu: int = 0
    mac: str = ""
    promisc: bool = False
    allmulti: bool = False
    carrier: Optional[bool] = None
    gone: bool = False


class KernelSync:
    """Follows vEthN's netlink events and applies them to the ports."""

    def __init__(self, dp, cfg: RunConfig):
        self.dp = dp
        self.cfg = cfg
        self.events = EventSocket(RTMGRP_LINK, rcvbuf=1 << 20)
        self.nl = IPRoute()
        self.state: Dict[int, VethState] = {}
        self.by_index: Dict[int, VethState] = {}
        self._warned: set = set()

    def close(self) -> None:
        self.events.close()
        self.nl.close()

    def fileno(self) -> int:
        return self.events.fileno()

    # ------------------------------------------------------------ start
    def start(self, timeout: float = 10.0) -> None:
        """Find every vEthN (bounded wait), then apply its current state."""
        deadline = time.monotonic() + timeout
        for p in self.cfg.ports:
            while True:
                idx = self.nl.link_lookup(ifname=p.ifname)
                if idx:
                    break
                if time.monotonic() > deadline:
                    raise DataplaneError(f"{p.ifname} did not appear", errno.ENODEV)
                time.sleep(0.01)
            st = VethState(port=p.port, ifname=p.ifname, index=idx[0])
            info = self.dp.port_info(p.port)
            st.mtu, st.mac = info.mtu, info.mac
            self.state[p.port] = st
            self.by_index[st.index] = st
        self.resync()

    def resync(self) -> None:
        """Re-read every vEthN from a fresh dump (start, or lost events)."""
        for st in self.state.values():
            if st.gone:
                continue
            links = self.nl.get_links(st.index)
            if links:
                self._apply(st, links[0], initial=True)

    # ------------------------------------------------------------ events
    def on_readable(self) -> None:
        try:
            msgs = self.events.read()
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                log.warning("netlink: events lost (ENOBUFS); resynchronising vEth state")
                self.resync()
                return
            raise
        for m in msgs:
            st = self.by_index.get(m.get("index"))
            if st is None or st.gone:
                continue
            if m.get("event") == "RTM_DELLINK":
                st.gone = True
                log.error("%s was deleted: port %d stops until kni-gw is restarted",
                          st.ifname, st.port)
                self._admin(st, False)
            elif m.get("event") == "RTM_NEWLINK":
                self._apply(st, m)

    def _apply(self, st: VethState, msg, initial: bool = False) -> None:
        flags = msg["flags"]
        mtu = msg.get_attr("IFLA_MTU")
        mac = msg.get_attr("IFLA_ADDRESS")
        name = msg.get_attr("IFLA_IFNAME")
        if name and name != st.ifname:
            log.warning("%s was renamed to %s; port %d keeps following it", st.ifname, name, st.port)
            st.ifname = name
        up = bool(flags & IFF_UP)
        if initial or up != st.up:
            self._admin(st, up)
        if mtu and mtu != st.mtu:
            self._mtu(st, mtu)
        if mac and mac != st.mac:
            self._mac(st, mac)
        promisc = bool(flags & IFF_PROMISC)
        if promisc != st.promisc and not self.cfg.promisc:
            self._flag(st, "promisc", promisc, self.dp.set_promisc)
        allmulti = bool(flags & IFF_ALLMULTI)
        if allmulti != st.allmulti:
            self._flag(st, "allmulti", allmulti, self.dp.set_allmulti)

    def _admin(self, st: VethState, up: bool) -> None:
        try:
            self.dp.port_admin(st.port, up)
        except DataplaneError as e:
            # believe the dataplane, not the request: a failed stop leaves
            # the port down (drained) though still started
            try:
                st.up = self.dp.port_info(st.port).admin_up
            except DataplaneError:
                pass
            log.error("%s %s: %s; port %d is %s", st.ifname, "up" if up else "down", e, st.port,
                      "forwarding" if st.up else "not forwarding")
            return
        if up != st.up:
            log.info("%s %s: port %d %s", st.ifname, "up" if up else "down", st.port,
                     "forwarding" if up else "stopped")
        st.up = up

    def _mtu(self, st: VethState, mtu: int) -> None:
        try:
            self.dp.set_mtu(st.port, mtu)
        except DataplaneError as e:
            log.warning("%s: MTU %d refused by port %d: %s; putting %s back to %d",
                        st.ifname, mtu, st.port, e, st.ifname, st.mtu)
            self._restore(st, mtu=st.mtu)
            return
        log.info("%s: MTU %d -> %d, port %d follows", st.ifname, st.mtu, mtu, st.port)
        st.mtu = mtu

    def _mac(self, st: VethState, mac: str) -> None:
        try:
            self.dp.set_mac(st.port, mac)
        except DataplaneError as e:
            log.warning("%s: MAC %s refused by port %d (%s); putting %s back to %s",
                        st.ifname, mac, st.port, e, st.ifname, st.mac)
            self._restore(st, address=st.mac)
            return
        log.info("%s: MAC %s -> %s, port %d follows", st.ifname, st.mac, mac, st.port)
        st.mac = mac

    def _flag(self, st: VethState, what: str, on: bool, op) -> None:
        try:
            op(st.port, on)
        except DataplaneError as e:
            key = (st.port, what)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("%s: %s %s not applied to port %d: %s", st.ifname, what,
                            "on" if on else "off", st.port, e)
        else:
            log.info("%s: %s %s, port %d follows", st.ifname, what, "on" if on else "off", st.port)
        setattr(st, what, on)

    def _restore(self, st: VethState, **kw) -> None:
        try:
            self.nl.link("set", index=st.index, **kw)
        except Exception as e:  # netlink errors come in several types
            log.error("%s: could not put back %s: %s", st.ifname, kw, e)

    # ------------------------------------------------------------ link (-m)
    def port_link(self, port: int) -> bool:
        info = self.dp.port_info(port)
        if info.driver in KERNEL_BACKED and info.if_index:
            links = self.nl.get_links(info.if_index)
            return bool(links and links[0].get_attr("IFLA_CARRIER"))
        return info.link_up

    def poll_link(self) -> None:
        """Port link state -> vEthN carrier, logged on change."""
        for st in self.state.values():
            if st.gone:
                continue
            up = self.port_link(st.port)
            if up == st.carrier:
                continue
            try:
                set_carrier(st.index, up)
            except OSError as e:
                log.error("%s: cannot set carrier %s: %s", st.ifname, "on" if up else "off", e)
                continue
            if st.carrier is not None or not up:
                log.info("port %d link %s: %s carrier %s", st.port, "up" if up else "down",
                         st.ifname, "on" if up else "off")
            st.carrier = up
