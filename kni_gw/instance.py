"""Instances of kni-gw on this host: which are alive, what a dead one left.

A kni-gw instance is named by its EAL --file-prefix P. While it runs:

* EAL's primary process holds a write lock (fcntl) on /var/run/dpdk/P/config
  and a shared flock on each of its hugepage files <hugetlbfs>/Pmap_N;
* kni-gw listens on its control socket /run/kni-gw/P.sock;
* each vEthN is a TAP whose file descriptor kni-gw holds
  (/proc/PID/fdinfo/FD says "iff: vEthN").

A killed instance leaves its hugepage files, /var/run/dpdk/P and its
control socket. They are removed only when nothing holds the locks: a live
instance's files are never touched. No C, no EAL: usable by `doctor` and
`cleanup` as well as before EAL starts.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob
import logging
import os
import shutil
import socket
import struct
from typing import Dict, List, Optional

log = logging.getLogger("kni-gw")

RUN_DIR = "/run/kni-gw"


def eal_run_dir(prefix: str) -> str:
    base = "/var/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return os.path.join(base, "dpdk", prefix)


def socket_path(prefix: str) -> str:
    return os.path.join(RUN_DIR, f"{prefix}.sock")


def hugetlbfs_mounts(mounts: str = "/proc/mounts") -> List[str]:
    try:
        with open(mounts) as f:
            return [ln.split()[1] for ln in f if len(ln.split()) > 2 and ln.split()[2] == "hugetlbfs"]
    except OSError:
        return []


def hugepage_files(prefix: str, huge_dir: Optional[str] = None) -> List[str]:
    out: List[str] = []
    for d in ([huge_dir] if huge_dir else hugetlbfs_mounts()):
        out += glob.glob(os.path.join(glob.escape(d), glob.escape(prefix) + "map_*"))
    return sorted(out)


def remove_eal_leftovers(prefix: str, huge_dir: Optional[str] = None) -> None:
    """After rte_eal_cleanup(), or a DPDK process stopped by a signal: EAL
    keeps a hugepage file or more (held from the next process) and its
    runtime directory. The caller knows the prefix's process is gone, so
    what carries it is its."""
    for f in hugepage_files(prefix, huge_dir):
        try:
            os.unlink(f)
        except OSError as e:
            log.warning("cannot remove %s: %s", f, e)
    shutil.rmtree(eal_run_dir(prefix), ignore_errors=True)


def config_lock_pid(prefix: str) -> Optional[int]:
    """The pid holding EAL's lock on /var/run/dpdk/P/config, else None.
    F_GETLK only asks: a starting primary is never disturbed."""
    path = os.path.join(eal_run_dir(prefix), "config")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
        req = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req + b"\0" * 4)
        l_type, _, _, _, pid = struct.unpack("hhqqi", res[:struct.calcsize("hhqqi")])
        return pid if l_type != fcntl.F_UNLCK else None
    except OSError:
        return None
    finally:
        os.close(fd)


def socket_answers(prefix: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(socket_path(prefix))
        return True
    except (BlockingIOError, InterruptedError):
        return True           # a full backlog: someone listens
    except OSError:
        return False
    finally:
        s.close()


def file_in_use(path: str) -> bool:
    """A hugepage file EAL still maps holds a shared flock on it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


@dataclasses.dataclass
class Remains:
    """What one prefix has on this host."""
    prefix: str
    pid: Optional[int]            # the live primary, if any
    listening: bool               # its control socket answers
    hugepages: List[str]
    run_dir: Optional[str]
    sock: Optional[str]
    huge_bytes: int = 0           # what the hugepage files took

    def __post_init__(self):
        if not self.huge_bytes:
            self.huge_bytes = sum(_size(f) for f in self.hugepages)

    @property
    def alive(self) -> bool:
        return self.pid is not None or self.listening

    @property
    def empty(self) -> bool:
        return not (self.hugepages or self.run_dir or self.sock)

    def describe(self) -> str:
        parts = []
        if self.hugepages:
            parts.append(f"{len(self.hugepages)} hugepage file(s) ({self.huge_bytes / 2**20:.0f} MiB)")
        if self.run_dir:
            parts.append(self.run_dir)
        if self.sock:
            parts.append(self.sock)
        return ", ".join(parts) or "nothing"


def remains(prefix: str, huge_dir: Optional[str] = None) -> Remains:
    run_dir = eal_run_dir(prefix)
    sock = socket_path(prefix)
    return Remains(prefix=prefix, pid=config_lock_pid(prefix),
                   listening=os.path.exists(sock) and socket_answers(prefix),
                   hugepages=hugepage_files(prefix, huge_dir),
                   run_dir=run_dir if os.path.isdir(run_dir) else None,
                   sock=sock if os.path.lexists(sock) else None)


def known_prefixes() -> List[str]:
    """Prefixes kni-gw has run with here: its control sockets name them, and
    the default prefix (kni-gw's own) whenever it left anything, socket or
    not."""
    from .config import DEFAULT_FILE_PREFIX
    try:
        names = os.listdir(RUN_DIR)
    except OSError:
        names = []
    out = {n[:-5] for n in names if n.endswith(".sock")}
    if DEFAULT_FILE_PREFIX not in out and not remains(DEFAULT_FILE_PREFIX).empty:
        out.add(DEFAULT_FILE_PREFIX)
    return sorted(out)


def remove(r: Remains) -> Remains:
    """Remove what a dead instance left; what is locked stays. Returns what
    was removed."""
    done = Remains(r.prefix, None, False, [], None, None)
    if r.pid is not None or r.listening:
        return done
    for f in r.hugepages:
        if file_in_use(f):
            continue
        size = _size(f)
        try:
            os.unlink(f)
            done.hugepages.append(f)
            done.huge_bytes += size
        except OSError as e:
            log.warning("cannot remove %s: %s", f, e.strerror)
    if r.run_dir and config_lock_pid(r.prefix) is None:
        shutil.rmtree(r.run_dir, ignore_errors=True)
        done.run_dir = r.run_dir
    if r.sock:
        try:
            os.unlink(r.sock)
            done.sock = r.sock
        except OSError:
            pass
    return done


def clean_dead(prefixes: List[str], huge_dir: Optional[str] = None) -> Dict[str, Remains]:
    """Remove the remains of every dead instance among `prefixes`; returns
    {prefix: what was removed} for those that had something."""
    out = {}
    for p in prefixes:
        r = remains(p, huge_dir)
        if r.alive or r.empty:
            continue
        out[p] = remove(r)
    return out


def tap_owners() -> Dict[str, int]:
    """{interface name: pid} of the TAP interfaces processes hold open."""
    out: Dict[str, int] = {}
    for pid in (d for d in os.listdir("/proc") if d.isdigit()):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != "/dev/net/tun":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("iff:"):
                            out[line.split()[1]] = int(pid)
            except OSError:
                continue
    return out


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
