"""One gateway run: preflight, dataplane start, the control loop on the
Python main thread, and a clean stop.

The main thread never blocks in C: it waits in select() on the netlink
socket and a signal wake-up pipe. Signal handlers only record the signal.
"""
from __future__ import annotations

import collections
import ipaddress
import linecache
import logging
import os
import selectors
import shlex
import shutil
import signal
import sys
import time
import tracemalloc
from typing import Deque

from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR

from . import instance
from .config import HostFacts, RunConfig, mbuf_bytes, preflight
from .errors import ConfigError
from .dataplane import Dataplane
from .exception_path import KernelSync
from .control import ControlServer, MetricsServer, with_rates
from .fibinstall import LIVENESS_S
from .logfilter import StderrFilter, real_stderr_fd
from .netlink import FibMirror
from .nldecode import EventSocket
from .stats import Stats, render_json, render_text

log = logging.getLogger("kni-gw")

LINK_POLL_S = 0.2
POLICE_LOG_S = 10.0  # policing is logged as one summary line per port and interval
SYSCTL_POLL_S = 2.0  # a safety net: RTM_NEWNETCONF events drive it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Gateway:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.dp: Dataplane
        self.sync: KernelSync
        self.stats: Stats
        self.pending: Deque[int] = collections.deque()
        self.stopping = False
        self.started = time.time()

    # ------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        if signum in STOP_SIGNALS and self.stopping:
            os.write(real_stderr_fd(), b"kni-gw: second signal: exiting now\n")
            os._exit(1)
        if signum in STOP_SIGNALS:
            self.stopping = True
        self.pending.append(signum)

    def _install_signals(self):
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            signal.signal(s, self._on_signal)
        return r, w

    # ------------------------------------------------------------ run
    def run(self) -> int:
        cfg = self.cfg
        host = HostFacts.read([p.ifname for p in cfg.ports])
        backend = preflight(cfg, host)
        self._clean_dead_instances()
        log.info("EAL argv: %s", shlex.join(["kni-gw"] + cfg.eal_argv))
        log.info("%s", cfg.memory_note)
        for note in cfg.vdev_notes:
            log.info("%s", note)
        if os.environ.get("KNI_GW_TRACEMALLOC"):
            tracemalloc.start(8)
        quiet = None
        if cfg.log_level is None:
            # DPDK's start-up chatter off stderr; --log-level shows it all
            eal = cfg.eal_opts
            quiet = StderrFilter(pci_scan="--no-pci" not in eal and not (eal.get("-a") or eal.get("--allow")))
            quiet.start()
        try:
            return self._run(backend)
        finally:
            if quiet is not None:
                quiet.stop()

    def _run(self, backend: str) -> int:
        cfg = self.cfg
        self.metrics = None
        if cfg.metrics:
            # bound before EAL starts: a port in use or an address not here
            # is refused before anything is set up
            try:
                self.metrics = MetricsServer(cfg.metrics, self._raw_view)
            except OSError as e:
                raise ConfigError(f"--metrics {cfg.metrics}: {e.strerror}") from None
        rfd, wfd = self._install_signals()
        self.dp = Dataplane(cfg, backend)
        self.dp.start()
        try:
            return self._serve(backend, rfd)
        finally:
            self._shutdown()
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)

    def _clean_dead_instances(self) -> None:
        """Before EAL: refuse a prefix a live process holds; remove what dead
        kni-gw instances left (this prefix's, and every prefix with a control
        socket in /run/kni-gw): hugepage files, EAL run directory, socket."""
        cfg = self.cfg
        huge_dir = cfg.eal_opts.get("--huge-dir", [None])[-1]
        own = instance.remains(cfg.file_prefix, huge_dir)
        if own.alive:
            who = f"pid {own.pid} ({instance.process_name(own.pid)})" if own.pid else "a kni-gw"
            raise ConfigError(f"--file-prefix {cfg.file_prefix} is in use by {who}; stop it "
                              f"or give another --file-prefix")
        prefixes = sorted(set(instance.known_prefixes()) | {cfg.file_prefix})
        for prefix, done in instance.clean_dead(prefixes, huge_dir).items():
            if not done.empty:
                log.info("removed what a dead kni-gw left (--file-prefix %s): %s", prefix, done.describe())

    def _serve(self, backend: str, rfd: int) -> int:
        cfg = self.cfg
        log.info("mbuf pool: %d mbufs of %d B (%.1f MiB), cache %d/lcore, %s",
                 self.dp.mbufs, cfg.mbuf_size + 128, self.dp.mbufs * mbuf_bytes(cfg.mbuf_size) / 2**20,
                 self.dp.mbuf_cache, self.dp.mbuf_pool_ops())
        if self.dp.mbufs_withheld():
            log.info("mbuf pool: %d mbufs lie past net_af_xdp's umem: kept out of use",
                     self.dp.mbufs_withheld())
        log.info("route tables: %d IPv4 + %d IPv6 routes, %.0f MiB; IPv4 lookups %s",
                 cfg.tables.routes4, cfg.tables.routes6, self.dp.fib_memory() / 2**20,
                 "with AVX-512" if self.dp.fib4_avx512() else "scalar/AVX2 (rte_fib's choice)")
        for p in cfg.ports:
            info = self.dp.port_info(p.port)
            spread = {"rss": ", flows spread by RSS", "driver": ", flows spread by the driver",
                      "none": ""}[info.rx_spread]
            log.info("port %d (%s %s, MTU %d, at most %d) <-> %s [%s]; lcores rx %s, tx %d, exception %d; "
                     "%d rx queue(s)%s, %d tx queue(s)",
                     p.port, info.driver, info.mac, info.mtu, info.max_mtu, p.ifname, backend,
                     p.rx_text, p.lcore_tx, p.lcore_exc, info.nb_rxq, spread, info.nb_txq)
            if info.tx_fifo_fallback:
                log.warning("port %d (%s): %d tx queue(s), too few for one per forwarding lcore: "
                            "frames forwarded to it cross to its tx lcore %d through a fifo%s",
                            p.port, info.driver, info.nb_txq, p.lcore_tx,
                            " (give the driver qpairs=N)" if info.driver == "net_af_packet" else
                            " (give the driver queue_count=N)" if info.driver == "net_af_xdp" else "")
        self.sync = KernelSync(self.dp, cfg)
        self.sync.start()
        port_of_ifindex = {self.sync.state[p.port].index: i for i, p in enumerate(cfg.ports)}
        self.ifname_of_port = {i: p.ifname for i, p in enumerate(cfg.ports)}
        self.fib = FibMirror(port_of_ifindex)
        self.fib.poll_sysctls()
        self.fib.resync()
        self.stats = Stats(self.dp)
        self.dns = self.addr_events = self.dns_fast = None
        self.rate_prev = self.rate_last = None
        self.control = ControlServer(cfg.file_prefix, self._control_view)
        if cfg.dns_zones:
            self._start_dns()
        log.info("ready (pid %d): %s",
                 os.getpid(), "kill -USR1 for statistics, -USR2 to reset them, -TERM to stop")

        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ, "signal")
        sel.register(self.sync.fileno(), selectors.EVENT_READ, "netlink")
        sel.register(self.fib.fileno(), selectors.EVENT_READ, "fib")
        self.sel = sel
        servers = [self.control] + ([self.metrics] if self.metrics is not None else [])
        for srv in servers:
            srv.attach(sel)
        if self.dns is not None:
            self.dns.on_fd_change = self._dns_fd
            for fd in list(self.dns.fds):
                self._dns_fd(fd, True)
            if self.addr_events is not None:
                sel.register(self.addr_events.fileno(), selectors.EVENT_READ, "addr")
            if self.dns_fast is not None:
                sel.register(self.dns_fast.fileno(), selectors.EVENT_READ, "dnsfast")
        next_link = next_sysctl = next_rate = next_live = 0.0
        next_police = time.monotonic() + POLICE_LOG_S
        self.police_prev = None
        self._log_policing()      # the baseline
        while True:
            timeout = min(LINK_POLL_S if cfg.monitor_link else SYSCTL_POLL_S, LIVENESS_S)
            now = time.monotonic()
            for srv in servers:
                nxt = srv.expire(now)
                if nxt is not None:
                    timeout = min(timeout, max(nxt - now, 0.0))
            for key, mask in sel.select(timeout):
                if callable(key.data):           # a control or metrics connection
                    key.data(key, mask)
                elif key.data == "signal":
                    try:
                        while os.read(rfd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif key.data == "netlink":
                    self.sync.on_readable()
                elif key.data == "fib":
                    self.fib.on_readable()
                elif key.data == "dns":
                    self.dns.on_ready(key.fd)
                elif key.data == "dnsfast":
                    self.dns_fast.on_readable()
                elif key.data == "addr":
                    self.addr_events.read()
                    self._dns_follow()
            if self.stopping:      # before any other signal still queued
                s = next((x for x in self.pending if x in STOP_SIGNALS), signal.SIGTERM)
                log.info("%s: stopping", signal.Signals(s).name)
                return 0
            while self.pending:
                self._handle(self.pending.popleft())
            if not self.dp.alive:
                log.error("the dataplane stopped unexpectedly")
                return 1
            now = time.monotonic()
            if self.dns is not None:
                self.dns.tick()
            if cfg.monitor_link and now >= next_link:
                self.sync.poll_link()
                next_link = now + LINK_POLL_S
            if now >= next_sysctl:
                self.fib.poll_sysctls()
                next_sysctl = now + SYSCTL_POLL_S
            if now >= next_live:
                self.fib.tick()
                next_live = now + LIVENESS_S
            if now >= next_police:
                self._log_policing()
                next_police = now + POLICE_LOG_S
            if now >= next_rate:
                # a raw sample a second, for the rates `kni-gw stats` shows
                self.rate_prev, self.rate_last = self.rate_last, self._raw_view()
                next_rate = now + 1.0

    def _log_policing(self) -> None:
        cur = [dict(c["policed"]) for c in self.dp.counters()]
        if self.police_prev is not None:
            for port, (now, before) in zip(self.cfg.ports, zip(cur, self.police_prev)):
                d = {k: now[k] - before.get(k, 0) for k in now if now[k] > before.get(k, 0)}
                if d:
                    log.warning("policing: port %d dropped %d punted frames in %.0f s (%s)", port.port,
                                sum(d.values()), POLICE_LOG_S, ", ".join(f"{k} {v}" for k, v in d.items()))
        self.police_prev = cur

    def _extra(self) -> dict:
        extra = {"fib": self.fib.view(), "pid": os.getpid(), "file_prefix": self.cfg.file_prefix,
                 "started": self.started}
        if self.dns is not None:
            extra["dns"] = self.dns.stats.view()
            extra["dns_fast"] = self.dns_fast.view() if self.dns_fast is not None else {"off": True}
        return extra

    def _raw_view(self) -> dict:
        """Counters since start (for metrics and rates: never reset)."""
        from .stats import subtract, take_snapshot
        return subtract(take_snapshot(self.dp, self._extra()), None)

    def _control_view(self) -> dict:
        """What `kni-gw stats` gets: SIGUSR1's view plus rates over the last second."""
        view = self.stats.current(self._extra())
        if self.rate_prev and self.rate_last:
            rated = with_rates(self.rate_last, self.rate_prev)
            by_port = {p["port"]: p.get("rates") for p in rated["ports"]}
            for p in view["ports"]:
                if by_port.get(p["port"]):
                    p["rates"] = by_port[p["port"]]
            for lc, c in view.get("lcores", {}).items():
                r = rated.get("lcores", {}).get(lc, {}).get("rates")
                if r:
                    c["rates"] = r
        return view

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGUSR1:
            if tracemalloc.is_tracing():
                self._trace_growth()
            view = self.stats.current(self._extra())
            if self.cfg.stats_format == "json":
                out = render_json(view) + "\n"
            else:
                # a terminal: fit its width; a file or the journal: one line per port
                out = render_text(view, shutil.get_terminal_size().columns if sys.stdout.isatty() else None)
            sys.stdout.write(out)
            sys.stdout.flush()
        elif signum == signal.SIGUSR2:
            self.stats.reset()
            sys.stdout.write("kni-gw: statistics reset\n")
            sys.stdout.flush()
        elif signum == signal.SIGHUP:
            if self.dns_fast is not None:
                self.dns_fast.reload()
            elif self.dns is not None:
                self.dns.reload()
            else:
                log.info("SIGHUP: nothing to reload")

    def _trace_growth(self) -> None:
        """KNI_GW_TRACEMALLOC=FILE: on each SIGUSR1, what Python allocated
        since the first one, by allocation site, largest first (to find what
        grows in a long run)."""
        now = time.monotonic()
        if now < getattr(self, "_trace_next", 0.0):
            return                 # at most every 30 s: a snapshot is not cheap
        self._trace_next = now + 30.0
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)])
        if not hasattr(self, "_trace_base"):
            self._trace_base = snap
            return
        stats = snap.compare_to(self._trace_base, "traceback")
        with open(os.environ["KNI_GW_TRACEMALLOC"], "w") as f:
            cur, peak = tracemalloc.get_traced_memory()
            f.write(f"traced {cur} B (peak {peak} B); growth since the first SIGUSR1, by site:\n")
            for st in stats[:25]:
                f.write(f"{st.size_diff:+d} B {st.count_diff:+d} blocks\n")
                for line in st.traceback.format()[-8:]:
                    f.write(f"    {line}\n")

    # ------------------------------------------------------------ DNS
    def _start_dns(self) -> None:
        from .dns import DnsServer, ZoneError, parse_hostport, parse_prefix
        cfg = self.cfg
        try:
            self.dns = DnsServer(cfg.dns_zones, cfg.dns_port,
                                 parse_hostport(cfg.dns_forward) if cfg.dns_forward else None,
                                 allow=[parse_prefix(a) for a in cfg.dns_allow])
        except ZoneError as e:
            raise ConfigError(f"--dns-zone: {e}") from None
        if cfg.dns_fast:
            from .dnsfast import DnsFast
            self.dns_fast = DnsFast(self.dp, self.dns, cfg.dns_rrl, cfg.dns_rrl_slip)
            self.dns_fast.start()
        else:
            log.info("dns: answers in C off (--dns-fast off): every query goes through vEthN to the responder")
        if cfg.dns_listen:
            self.dns.listen([parse_hostport(a)[0] for a in cfg.dns_listen])
        # the vEth addresses as they come and go: listened on (unless
        # --dns-listen), and their networks are who may use --dns-forward
        self.addr_events = EventSocket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, rcvbuf=1 << 20)
        self._dns_follow()

    def _dns_follow(self) -> None:
        idx = {st.index for st in self.sync.state.values()}
        addrs, nets = [], []
        for m in self.sync.nl.get_addr():
            a = m.get_attr("IFA_ADDRESS")
            if m["index"] in idx and a:
                nets.append(ipaddress.ip_network(f"{a.split('%')[0]}/{m['prefixlen']}", strict=False))
                if not a.startswith("fe80"):
                    addrs.append(a)
        log.debug("dns: vEth addresses now %s", addrs or "none")
        self.dns.set_connected(nets)
        if not self.cfg.dns_listen:
            self.dns.listen(addrs)
        if self.dns_fast is not None:
            # C answers where the responder listens: the same addresses
            self.dns_fast.follow(list(self.dns.udp))

    def _dns_fd(self, fd: int, add: bool) -> None:
        if not hasattr(self, "sel"):
            return
        if add:
            self.sel.register(fd, selectors.EVENT_READ, "dns")
        else:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass

    def _shutdown(self) -> None:
        for obj in ("control", "metrics"):
            if getattr(self, obj, None) is not None:
                getattr(self, obj).close()
        if getattr(self, "dns_fast", None) is not None:
            self.dns_fast.close()
        if getattr(self, "dns", None) is not None:
            self.dns.close()
        if getattr(self, "addr_events", None) is not None:
            self.addr_events.close()
        if hasattr(self, "sync"):
            self.sync.close()
        if hasattr(self, "fib"):
            self.fib.close()
        # join in slices so that a second signal is still handled
        while not self.dp.stop(timeout=0.2):
            pass
        log.info("stopped: ports closed, vEth interfaces removed, EAL released")

