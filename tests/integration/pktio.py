"""Raw frame I/O inside a namespace (run with `ip netns exec NS python pktio.py`).

  pktio.py send IFACE FILE [BURST]      send the frames of a length-prefixed
                                        file, BURST at a time, 1 ms apart
  pktio.py capture IFACE SECONDS FILE   write incoming frames (not our own
                                        outgoing ones) to FILE, length-prefixed;
                                        prints "ready" once bound
"""
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def read_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("!I", data, off)
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def write_frames(path, frames):
    with open(path, "wb") as f:
        for fr in frames:
            f.write(struct.pack("!I", len(fr)) + fr)


def send(iface, path, burst=50):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    for i, fr in enumerate(read_frames(path)):
        s.send(fr)
        if i % burst == burst - 1:
            time.sleep(0.001)


def capture(iface, seconds, path):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((iface, 0))
    s.settimeout(0.1)
    print("ready", flush=True)
    frames = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            fr, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != PACKET_OUTGOING:
            frames.append(fr)
    write_frames(path, frames)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 50)
    elif sys.argv[1] == "capture":
        capture(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
