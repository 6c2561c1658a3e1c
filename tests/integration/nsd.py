"""NSD, the reference authoritative server, in a network namespace of its own
(TESTING.md): `minimal-responses: yes`, nothing but the zones it is given,
response rate limiting off (Debian's NSD limits a source to 200 answers/s by
default: the tests and the benchmark send more, from one address).

The differential DNS test serves the same zone files from NSD and from
kni-gw's responder and compares the answers. NSD missing is a failure of the
test, never a skip.
"""
from __future__ import annotations

import os
import shutil
import signal
from typing import Dict, List, Optional

from .harness import sh, wait_for

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
NSD_CHECKZONE = shutil.which("nsd-checkzone") or "/usr/sbin/nsd-checkzone"


def zone_origin(path: str) -> str:
    """The zone's name: the file's first $ORIGIN (the test zones all have one)."""
    with open(path) as f:
        for line in f:
            if line.upper().startswith("$ORIGIN"):
                return line.split()[1]
    raise AssertionError(f"{path}: no $ORIGIN line to name the zone for NSD")


class Nsd:
    """nsd -c CONF in namespace `ns`, serving `zones` (zone files; $INCLUDE
    paths are relative to their directory, NSD's zonesdir) on addr:port."""

    def __init__(self, ns: str, workdir: str, zones: List[str], addr: str = "127.0.0.1",
                 port: int = 53, zonesdir: Optional[str] = None, extra_conf: str = "",
                 more_addrs: List[str] = ()):
        if not os.path.exists(NSD):
            raise AssertionError("nsd is not installed (apt-get install nsd; scripts/install.sh does it)")
        self.ns, self.addr, self.port = ns, addr, port
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.names: Dict[str, str] = {}
        blocks = []
        for z in zones:
            name = zone_origin(z)
            self.names[name] = z
            blocks.append(f"zone:\n\tname: \"{name}\"\n\tzonefile: \"{os.path.abspath(z)}\"\n")
        zonesdir = zonesdir or os.path.dirname(os.path.abspath(zones[0]))
        self.conf = os.path.join(workdir, "nsd.conf")
        self.pidfile = os.path.join(workdir, "nsd.pid")
        self.logfile = os.path.join(workdir, "nsd.log")
        listen = "".join(f"\tip-address: {a}@{port}\n" for a in [addr, *more_addrs])
        v6 = any(":" in a for a in [addr, *more_addrs])
        with open(self.conf, "w") as f:
            f.write(f"""server:
\tusername: ""
\tchroot: ""
\tzonesdir: "{zonesdir}"
\tdatabase: ""
\tzonelistfile: "{workdir}/zone.list"
\txfrdfile: "{workdir}/xfrd.state"
\txfrdir: "{workdir}"
\tpidfile: "{self.pidfile}"
\tlogfile: "{self.logfile}"
{listen}\tdo-ip6: {"yes" if v6 else "no"}
\tserver-count: 1
\tminimal-responses: yes
\thide-version: yes
\thide-identity: yes
\tverbosity: 1
\trrl-ratelimit: 0
\trrl-whitelist-ratelimit: 0
{extra_conf}
remote-control:
\tcontrol-enable: no

""" + "\n".join(blocks))
        r = sh(NSD, "-c", self.conf, ns=ns, check=False)
        if r.returncode != 0:
            raise AssertionError(f"nsd did not start: {r.stderr.strip()} {self.log()}")
        self.pid: Optional[int] = None
        wait_for(self._pid, timeout=10, what="nsd's pid file")
        wait_for(self._answers, timeout=10, what="nsd answering")
        log = self.log()
        for name in self.names:
            if f"zone {name} read with success" not in log:
                raise AssertionError(f"nsd did not load the zone {name}:\n{log}")

    def log(self) -> str:
        try:
            with open(self.logfile) as f:
                return f.read()
        except OSError:
            return ""

    def _pid(self) -> bool:
        try:
            with open(self.pidfile) as f:
                self.pid = int(f.read().strip())
            return True
        except (OSError, ValueError):
            return False

    def _answers(self) -> bool:
        # a SOA query for each zone, from inside the namespace
        name = next(iter(self.names))
        r = sh("dig", f"@{self.addr}", "-p", str(self.port), "+time=1", "+tries=1", name, "SOA",
               ns=self.ns, check=False)
        return "status: NOERROR" in r.stdout

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_for(lambda: not _alive(self.pid), timeout=10, what="nsd stopped")
            self.pid = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


