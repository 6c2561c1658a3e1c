"""Addresses as the C API takes them, for the unit tests over the tables."""
import socket
import sys


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def v4(ip: str) -> int:
    """An IPv4 address as a number whose bytes in memory are the address's
    (network order), as kg_route4_add takes it."""
    return int.from_bytes(socket.inet_aton(ip), sys.byteorder)


def v6(ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, ip)
