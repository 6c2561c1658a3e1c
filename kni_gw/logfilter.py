"""Quiet start-up: DPDK's chatter off stderr at the default log level.

EAL, its drivers, libbpf and libxdp write to the process's stderr (fd 2)
from C. While a gateway runs without --log-level, fd 2 is a pipe read by a
thread that passes every line on to the real stderr except the known,
harmless chatter below: a user sees kni-gw's lines and DPDK's real errors.
With --log-level given, nothing is filtered (DPDK's own level applies).
"""
from __future__ import annotations

import os
import re
import sys
import threading
from typing import List, Optional

# Lines that say nothing is wrong. Each is matched from the line's start.
CHATTER = [
    r"TELEMETRY: No legacy callbacks, legacy socket not created",
    # net_tap on a kernel without the multiq qdisc / rte_flow support: vEthN works without them
    r"tap_nl_dump_ext_ack\(\): Specified qdisc kind is unknown",
    r"qdisc_create_multiq\(\): Could not add multiq qdisc",
    r"eth_dev_tap_create\(\): +\S+: failed to create multiq qdisc",
    r"eth_dev_tap_create\(\): +Disabling rte flow support",
    # net_af_xdp: libbpf and libxdp on a host without bpffs (XDP loads without the dispatcher)
    r"libbpf: elf: skipping unrecognized data section",
    r"libxdp: No bpffs found at ",
    r"libxdp: Can't use dispatcher without a working bpffs",
    r"libxdp: Falling back to loading single prog without dispatcher",
]
# A PCI scan (no -a) probes every device, the host's own NIC included
PCI_SCAN_CHATTER = [
    r"eth_virtio_pci_init\(\): Failed to init PCI device",
    r"EAL: Requested device \S+ cannot be used",
]

_real_fd: Optional[int] = None


def real_stderr_fd() -> int:
    """Where to write a last word from a signal handler (the filter's
    thread may not run again)."""
    return _real_fd if _real_fd is not None else 2


class StderrFilter:
    def __init__(self, pci_scan: bool):
        pats = list(CHATTER) + (PCI_SCAN_CHATTER if pci_scan else [])
        self.chatter = re.compile("|".join(f"(?:{p})" for p in pats))
        self.dropped: List[str] = []
        self._saved: Optional[int] = None
        self._thread: Optional[threading.Thread] = None

    def quiet(self, line: str) -> bool:
        return bool(self.chatter.match(line))

    def start(self) -> None:
        global _real_fd
        sys.stderr.flush()
        r, w = os.pipe()
        self._saved = os.dup(2)
        _real_fd = self._saved
        os.dup2(w, 2)
        os.close(w)
        self._thread = threading.Thread(target=self._pump, args=(r,), name="kg-stderr", daemon=True)
        self._thread.start()

    def _pump(self, r: int) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(r, 65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            out = []
            for raw in lines:
                line = raw.decode(errors="replace")
                if self.quiet(line):
                    if len(self.dropped) < 100:
                        self.dropped.append(line)
                else:
                    out.append(raw + b"\n")
            if out:
                self._write(b"".join(out))
        if buf:
            self._write(buf)
        os.close(r)

    def _write(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self._saved, data)
            except InterruptedError:
                continue
            except OSError:
                return
            data = data[n:]

    def stop(self) -> None:
        """fd 2 back to the real stderr; what is in the pipe is passed on."""
        global _real_fd
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)        # closes the pipe's last write end
        if self._thread is not None:
            self._thread.join(5)
        os.close(self._saved)
        self._saved = None
        _real_fd = None
