"""What `kni-gw doctor` knows about the ports a command line would probe,
the way EAL would probe them: PCI devices (-a, or every device bound to a
DPDK driver) first, then each --vdev in the order given. For kernel-backed
vdevs (net_af_packet, net_af_xdp on iface=X) it reads X's settings the
README asks for: the kernel's IP stack kept off X (rp_filter, arp_ignore,
no IPv6) and, for a veth, TX checksum offload off on its far end.
"""
from __future__ import annotations

import array
import ctypes
import dataclasses
import fcntl
import os
import socket
import struct
import threading
from typing import Dict, List, Optional, Tuple

KERNEL_BACKED = ("net_af_packet", "net_af_xdp")
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
CLONE_NEWNET = 0x40000000


@dataclasses.dataclass
class Vdev:
    text: str                 # as given to --vdev
    name: str                 # net_af_packet0
    driver: str               # net_af_packet
    args: Dict[str, str]


def parse_vdev(text: str) -> Vdev:
    name, _, rest = text.partition(",")
    args = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        args[k.strip()] = v.strip()
    driver = name.rstrip("0123456789")
    return Vdev(text, name, driver, args)


def sysctl(path: str) -> Optional[int]:
    try:
        with open("/proc/sys/" + path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stack_off_problems(iface: str) -> List[Tuple[str, str]]:
    """(what is wrong, the sysctl that fixes it) for a kernel-backed port's
    interface, as the README sets it up."""
    out = []
    rp = max(sysctl("net/ipv4/conf/all/rp_filter") or 0, sysctl(f"net/ipv4/conf/{iface}/rp_filter") or 0)
    if rp != 1:
        out.append((f"rp_filter {rp}", f"net.ipv4.conf.{iface}.rp_filter=1"
                    + (" net.ipv4.conf.all.rp_filter=0" if (sysctl("net/ipv4/conf/all/rp_filter") or 0) > 1 else "")))
    ai = max(sysctl("net/ipv4/conf/all/arp_ignore") or 0, sysctl(f"net/ipv4/conf/{iface}/arp_ignore") or 0)
    if ai != 8:
        out.append((f"arp_ignore {ai}", f"net.ipv4.conf.{iface}.arp_ignore=8"))
    d6 = sysctl(f"net/ipv6/conf/{iface}/disable_ipv6")
    if d6 is not None and d6 != 1:
        out.append(("IPv6 on", f"net.ipv6.conf.{iface}.disable_ipv6=1"))
    return out


def _tx_csum(sock: socket.socket, ifname: str) -> Optional[bool]:
    buf = array.array("I", [ETHTOOL_GTXCSUM, 0])
    addr, _ = buf.buffer_info()
    req = struct.pack("16sP", ifname.encode()[:15], addr)
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, req)
    except OSError:
        return None
    return bool(buf[1])


def _in_netns(path: Optional[str], fn):
    """fn() run on a thread inside the network namespace at `path` (None:
    this one). Sockets it opens belong to that namespace."""
    if path is None:
        return fn()
    result: List[object] = [None]

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                return
        finally:
            os.close(fd)
        result[0] = fn()   # the thread ends here, and its namespace with it
    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return result[0]


def veth_far_end(iface: str) -> Optional[Tuple[Optional[str], str, Optional[bool]]]:
    """For a veth: (the far end's namespace name or None when here, its
    name, TX checksum offload on?); (None, None, None) when the far end is
    in a namespace without a name under /run/netns; None for no veth."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = ipr.link_lookup(ifname=iface)
        if not links:
            return None
        link = ipr.get_links(links[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        if not info or info.get_attr("IFLA_INFO_KIND") != "veth":
            return None
        my_index, peer_index = link["index"], link.get_attr("IFLA_LINK")
        nsid = link.get_attr("IFLA_LINK_NETNSID")

    def probe():
        with IPRoute() as ipr:
            try:
                peer = ipr.get_links(peer_index)[0]
            except Exception:  # noqa: BLE001 - no such index in that namespace
                return None
            pinfo = peer.get_attr("IFLA_LINKINFO")
            if not pinfo or pinfo.get_attr("IFLA_INFO_KIND") != "veth" or peer.get_attr("IFLA_LINK") != my_index:
                return None
            name = peer.get_attr("IFLA_IFNAME")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return name, _tx_csum(s, name)
    unknown = (None, None, None)
    if nsid is None:
        r = probe()
        return (None,) + r if r else unknown
    try:
        names = sorted(os.listdir("/run/netns"))
    except OSError:
        return unknown
    for ns in names:
        path = os.path.join("/run/netns", ns)
        if netnsid_of(path) == nsid:
            r = _in_netns(path, probe)
            return (ns,) + r if r else unknown
    return unknown


def netnsid_of(path: str) -> Optional[int]:
    """The id this namespace gives the namespace at `path` (RTM_GETNSID),
    as IFLA_LINK_NETNSID names it; None when it has none."""
    RTM_GETNSID, NETNSA_NSID, NETNSA_FD, NLM_F_REQUEST = 90, 1, 3, 1
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        attr = struct.pack("HHI", 8, NETNSA_FD, fd)
        body = struct.pack("B3x", socket.AF_UNSPEC) + attr
        msg = struct.pack("IHHII", 16 + len(body), RTM_GETNSID, NLM_F_REQUEST, 1, 0) + body
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
            s.settimeout(2)
            s.send(msg)
            data = s.recv(4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    off = 16 + 4                  # nlmsghdr, rtgenmsg
    while off + 4 <= len(data):
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4:
            break
        if atype == NETNSA_NSID and alen >= 8:
            v = struct.unpack_from("i", data, off + 4)[0]
            return v if v >= 0 else None
        off += (alen + 3) & ~3
    return None
