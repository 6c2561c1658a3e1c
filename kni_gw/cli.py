"""kni-gw command line.

``kni-gw [EAL options] [--] -p PORTMASK --config "(port,rx[+rx...],tx[,exc])" ...``
runs a gateway; ``kni-gw COMMAND`` runs a helper command. Errors are one line
on stderr with exit status 2, never a traceback (KNI_GW_DEBUG=1 shows one).
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import List, NoReturn, Optional

import click

from . import __version__
from .config import HelpRequested, build_config
from .errors import KniGwError

PROG = "kni-gw"

GATEWAY_HELP = f"""\
Usage: kni-gw [EAL options] -p PORTMASK --config "(port,lcore_rx,lcore_tx[,lcore_exc]),..." [options]
       kni-gw [EAL options] -- -p PORTMASK --config="(...)" [-P] [-m] [options]
       kni-gw COMMAND [ARGS]...

DPDK gateway with the Linux kernel as control plane. Each port N selected by
PORTMASK gets a kernel interface vEthN; configure it with ip(8), and traffic
the kernel must see (ARP, ICMP/DNS to the gateway, ...) goes through it.

Gateway options:
  -p, --portmask HEX      ports to use, e.g. 0x3 for ports 0 and 1 (required)
  --config "(p,rx,tx[,exc]),..."
                          per port: the lcore polling its rx queue, the lcore
                          sending the kernel's frames (vEthN -> port), and
                          optionally the lcore doing vEthN I/O (default: the
                          tx lcore). Numbers may be decimal or 0x hex. rx and
                          tx of one port must be on different lcores; one
                          lcore may serve several ports. Every lcore must be
                          enabled by -l/-c/--lcores.
                          Several rx lcores: 0+2 or 0-3 in the rx field, one
                          rx queue each, flows spread by RSS (or the driver's
                          own spreading, e.g. net_af_packet qpairs=N).
                          Every forwarding lcore sends on a tx queue of its
                          own on each port; a driver with too few tx queues
                          gets them through the tx lcore's fifo (said once).
  -P, --promisc           put the ports in promiscuous mode
  --monitor-link          mirror each port's link state to vEthN's carrier
  -m                      the same as --monitor-link, see "-m" below
  --exception auto|tap|virtio-user
                          vEthN backend (auto: virtio-user when /dev/vhost-net
                          exists, else tap)
  --busy-poll             never sleep when idle (lowest latency, 100% CPU)
  --idle-sleep US         longest back-off sleep of an idle lcore [1000];
                          lower it (e.g. 50) for lower idle latency, at more CPU
  --burst N               packets per burst, 1-64 [32]
  --fifo-size N           entries per fifo, a power of two [1024]
  --rx-desc N, --tx-desc N  descriptors per queue [1024]
  --mbufs N               mbuf pool size [computed from the above]
  --mbuf-size N           data room of an mbuf, headroom included, 512-65535
                          [2176]: the largest frame a port without scattered
                          rx receives (net_af_xdp: N - 384, so MTU N - 402)
  --stats-format table|json  what SIGUSR1 prints [table]
  --police CLASS=PPS[:BURST]
                          rate of frames punted to the kernel, per port and
                          class (arp nd routing icmp dns local resolve error
                          multicast transit other); repeatable. CLASS=off:
                          that class is not policed; CLASS=0: every frame of
                          it is dropped; --police off: nothing is policed.
                          Defaults: arp/nd/routing/icmp/resolve 20000, dns
                          300000, local 50000, error/multicast/transit/other
                          10000
  --max-routes IPV4[,IPV6]
                          route table sizes, 1024 to 16777216 each (IPV6 =
                          IPV4/4 if not given); default: the largest of
                          256k+16k, 64k+16k, 16k+4k that fits in EAL's
                          memory (with --no-huge and no -m, kni-gw sets -m
                          for 256k+16k); a full table, 1048576,262144,
                          needs ~910 MB
  --metrics [ADDR:]PORT   serve OpenMetrics/Prometheus text at /metrics (GET or
                          HEAD); a bare PORT listens on 127.0.0.1 only, give
                          an address (e.g. 0.0.0.0:9101) to serve elsewhere
  --dns-zone FILE         serve this zone (master-file syntax), repeatable;
                          SIGHUP reloads the zones
  --dns-port N            DNS port [53]
  --dns-listen ADDR       listen there instead of on the vEth addresses
                          (which are followed as they come and go), repeatable
  --dns-forward ADDR[:PORT]  proxy names outside the zones there (else REFUSED),
                          for the clients on the vEth networks only
  --dns-allow PREFIX      also let these clients use --dns-forward; repeatable
  --dns-fast on|off       answer the zones' names on the rx lcores, from a table
                          of the responder's own answers compiled at each
                          (re)load; what it does not hold goes to the
                          responder [on]
  --dns-rrl N             answers a second in C to one client /24 or /56, a
                          second's worth as burst; 0: no limit [200]
  --dns-rrl-slip N        over that, every Nth query gets an empty truncated
                          answer (retry over TCP), the others are dropped;
                          0: drop all [2]
  -h, --help              this help

EAL options (passed to DPDK as given; the full EAL argv is logged at start):
  -l LIST | -c MASK | --lcores MAP, -n, -a/-b PCI, --vdev DEV,ARGS, --no-huge,
  --no-pci, -m MB, --socket-mem, --file-prefix [{PROG} by default], --huge-dir,
  --iova-mode, --log-level, ... (see dpdk-testpmd --help for all)

"-m": EAL's -m takes a size in MB and the KNI sample's -m monitors link state.
  After "--" (the sample's form), -m is always --monitor-link and EAL's -m
  goes before "--". Without "--", "-m NUMBER" is EAL's memory size and a bare
  "-m" is --monitor-link.

Signals: USR1 prints statistics (pkill -10 kni-gw), USR2 resets them,
  HUP reloads the DNS zones, INT/TERM stop cleanly (a second one forces exit).

Commands:
  stats [--file-prefix P] [--json] [--watch]
                          counters and rates of a running kni-gw, from
                          another shell (its control socket /run/kni-gw/P.sock)
  cleanup [--file-prefix P]
                          remove what killed instances left (hugepage files,
                          /var/run/dpdk/P, control socket); never a running
                          one's. A start does this by itself.
  doctor [the options of a run] [--json]
                          preflight checks for that command line: root, DPDK,
                          hugepages, /dev/net/tun, /dev/vhost-net, IOMMU,
                          every port (vdevs and their interfaces included),
                          CPUs, isolcpus, vEth names, a running instance,
                          stale EAL files; exit 1 when it could not start

Example (one port, rx on lcore 0, tx on lcore 1):
  sudo kni-gw -l 0-1 -p 0x1 --config "(0,0,1)"
  sudo ip addr add 192.168.0.1/24 dev vEth0 && sudo ip link set vEth0 up
"""


def die(msg: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {msg}\n")
    sys.exit(code)


def set_process_name(name: str = PROG) -> None:
    """So that pkill/killall find us by name whatever started us."""
    try:
        with open("/proc/self/comm") as f:
            if f.read().strip() == name:
                return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


def setup_logging(level: Optional[str]) -> None:
    lv = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR,
          "crit": logging.CRITICAL}.get((level or "info").lower(), logging.INFO)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger(PROG)
    root.handlers[:] = [h]
    root.setLevel(lv)
    root.propagate = False


@click.group(name=PROG, help="Helper commands of kni-gw (run `kni-gw --help` for the gateway).")
@click.version_option(__version__, prog_name=PROG)
def commands() -> None:
    pass


@commands.command("stats")
@click.option("--file-prefix", default="kni-gw", show_default=True,
              help="the running instance's EAL --file-prefix")
@click.option("--json", "as_json", is_flag=True, help="one JSON object, as SIGUSR1 with --stats-format json")
@click.option("--watch", is_flag=True, help="a live view, refreshed every --interval seconds")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 3600))
def stats_cmd(file_prefix: str, as_json: bool, watch: bool, interval: float) -> None:
    """Counters of a running kni-gw, read from another shell (root)."""
    import json
    import shutil
    import time

    from .control import query
    from .stats import render_rates, render_text

    def get() -> dict:
        try:
            return query(file_prefix)
        except ConnectionError as e:
            die(str(e))
    if as_json and not watch:
        click.echo(json.dumps(get(), sort_keys=True))
        return
    if not watch:
        v = get()
        # a terminal: fit its width; a pipe or a file: one line per port
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        click.echo(render_text(v, width) + render_rates(v, width), nl=False)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()

    def frame():
        v = get()
        if as_json:
            return Text(json.dumps(v, sort_keys=True))
        width = console.size.width  # read each time: the terminal may be resized
        return Text(render_text(v, width) + render_rates(v, width), end="")
    try:
        with Live(frame(), console=console, auto_refresh=False, vertical_overflow="visible") as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass


@commands.command("cleanup")
@click.option("--file-prefix", default=None,
              help="only this instance's files (default: every dead kni-gw's)")
def cleanup_cmd(file_prefix: Optional[str]) -> None:
    """Remove what dead kni-gw instances left: hugepage files, the EAL run
    directory /var/run/dpdk/PREFIX, the control socket. A running
    instance's files are never touched (exit status 1 if --file-prefix
    names one)."""
    from . import instance

    if os.geteuid() != 0:
        die("kni-gw cleanup must run as root (hugepage files, /var/run/dpdk): use sudo")
    prefixes = [file_prefix] if file_prefix else instance.known_prefixes()
    busy = False
    for p in prefixes:
        r = instance.remains(p)
        if r.alive:
            who = f"pid {r.pid} ({instance.process_name(r.pid)})" if r.pid else "a process listening on its socket"
            click.echo(f"--file-prefix {p}: in use by {who}: nothing removed")
            busy = True
        elif r.empty:
            click.echo(f"--file-prefix {p}: nothing left behind")
        else:
            click.echo(f"--file-prefix {p}: removed {instance.remove(r).describe()}")
    if not prefixes:
        click.echo("no kni-gw instance has left anything behind")
    if busy and file_prefix:
        sys.exit(1)


def run_gateway(argv: List[str]) -> int:
    if any(a in ("-h", "--help") for a in argv) and "--" not in argv:
        sys.stdout.write(GATEWAY_HELP)
        return 0
    try:
        cfg = build_config(argv)
    except HelpRequested:
        sys.stdout.write(GATEWAY_HELP)
        return 0
    setup_logging(cfg.log_level)
    set_process_name()
    from .gateway import Gateway  # the C module: only once the command line is good

    return Gateway(cfg).run()


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "doctor":
            from .doctor import main as doctor_main
            sys.exit(doctor_main(argv[1:]))
        if argv and (argv[0] in commands.commands or argv[0] == "--version"):
            commands.main(args=argv, prog_name=PROG, standalone_mode=True)
            return
        if not argv:
            die('no arguments; e.g. kni-gw -l 0-1 -p 0x1 --config "(0,0,1)" (see kni-gw --help)')
        sys.exit(run_gateway(argv))
    except KniGwError as e:
        die(str(e))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: one line, no traceback
        if os.environ.get("KNI_GW_DEBUG"):
            raise
        die(f"internal error: {type(e).__name__}: {e} (KNI_GW_DEBUG=1 shows the traceback)", 1)


if __name__ == "__main__":
    main()
