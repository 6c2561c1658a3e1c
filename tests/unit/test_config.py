"""Command-line parsing and every refusal that can be decided before EAL
starts. No root, no DPDK."""
import os

import pytest

from kni_gw.config import (
    ConfigError, HostFacts, HelpRequested, build_config, eal_options, parse_config,
    parse_coremask, parse_lcore_list, parse_lcores_option, parse_portmask, preflight,
    split_argv,
)

BASE = ["-l", "0-1", "-p", "0x1", "--config", "(0,0,1)"]


def host(**kw):
    facts = dict(euid=0, hugepages_free=512, hugetlbfs_mounted=True, has_tun=True,
                 has_vhost_net=False, taken_ifnames=set())
    facts.update(kw)
    return HostFacts(**facts)


# ------------------------------------------------------------ accepted forms

def test_flat_form_as_in_the_brief():
    cfg = build_config(BASE, ncpus=2)
    assert [(p.port, p.lcore_rx, p.lcore_tx, p.lcore_exc) for p in cfg.ports] == [(0, 0, 1, 1)]
    assert cfg.portmask == 1
    assert cfg.eal_argv[:2] == ["-l", "0-1"]
    assert "--file-prefix" in cfg.eal_argv and cfg.file_prefix == "kni-gw"
    assert cfg.ports[0].ifname == "vEth0"


def test_sample_form_with_double_dash():
    cfg = build_config(["-l", "0-3", "-m", "512", "--", "-p", "0x3",
                        "--config=(0,0,1),(1,2,3)", "-P", "-m"], ncpus=4)
    assert cfg.promisc and cfg.monitor_link
    assert cfg.eal_opts["-m"] == ["512"]          # before --: EAL memory
    assert [p.port for p in cfg.ports] == [0, 1]


def test_flat_m_with_number_is_eal_memory_and_bare_m_is_monitor():
    cfg = build_config(["-l", "0-1", "-m", "256", "-p", "0x1", "--config", "(0,0,1)"], ncpus=2)
    assert cfg.eal_opts["-m"] == ["256"] and not cfg.monitor_link
    cfg = build_config(["-l", "0-1", "-p", "0x1", "--config", "(0,0,1)", "-m"], ncpus=2)
    assert "-m" not in cfg.eal_opts and cfg.monitor_link
    cfg = build_config(["-l", "0-1", "-m", "-p", "0x1", "--config", "(0,0,1)"], ncpus=2)
    assert cfg.monitor_link and "-m" not in cfg.eal_opts


def test_hex_numbers_exception_lcore_and_several_tuples():
    ports = parse_config("(0x0,0x0,0x1,0x1), (1, 1, 0)")
    assert [(p.port, p.lcore_rx, p.lcore_tx, p.lcore_exc, p.exc_given) for p in ports] == [
        (0, 0, 1, 1, True), (1, 1, 0, 0, False)]


def test_eal_options_pass_through_untouched():
    argv = ["-l", "0-1", "-n", "4", "--no-huge", "--no-pci", "--vdev", "net_af_packet0,iface=g0",
            "--socket-mem=512", "--huge-dir", "/mnt/h", "--iova-mode", "va", "-a", "0000:01:00.0",
            "-b", "0000:02:00.0", "--log-level", "info", "--file-prefix", "x",
            "-p", "0x1", "--config", "(0,0,1)"]
    cfg = build_config(argv, ncpus=2)
    assert cfg.eal_argv == argv[:-4]
    assert cfg.no_huge and cfg.file_prefix == "x" and cfg.log_level == "info"


def test_glued_short_options():
    eal, app = split_argv(["-l0-1", "-c0x3", "-p0x1", "--config", "(0,0,1)"])
    assert eal == ["-l0-1", "-c0x3"] and app == ["-p0x1", "--config", "(0,0,1)"]
    assert eal_options(eal) == {"-l": ["0-1"], "-c": ["0x3"]}


def test_lcore_syntaxes():
    assert parse_lcore_list("0-2,5") == {0, 1, 2, 5}
    assert parse_coremask("0x5") == {0, 2}
    assert parse_lcores_option("(0-2)@1,4@5,6") == {0, 1, 2, 4, 6}
    cfg = build_config(["-c", "0x3", "-p", "0x1", "--config", "(0,0,1)"], ncpus=2)
    assert cfg.ports[0].lcore_tx == 1


def test_defaults_and_tunables():
    cfg = build_config(BASE + ["--busy-poll", "--idle-sleep", "50", "--fifo-size", "2048",
                               "--burst", "64", "--exception", "tap"], ncpus=2)
    assert cfg.busy_poll and cfg.idle_sleep_us == 50 and cfg.fifo_size == 2048
    assert cfg.burst == 64 and cfg.backend == "tap"


def test_mbuf_size_and_the_memory_it_takes():
    from kni_gw.config import mbuf_bytes, mbuf_pool_bytes
    cfg = build_config(BASE, ncpus=2)
    assert cfg.mbuf_size == 2176 and mbuf_bytes(2176) == 2368
    big = build_config(BASE + ["--mbuf-size", "3944"], ncpus=2)
    assert big.mbuf_size == 3944 and mbuf_bytes(3944) == 4160
    assert mbuf_pool_bytes(big) * 2368 == mbuf_pool_bytes(cfg) * 4160
    for bad in ("511", "65536", "2k"):
        with pytest.raises(ConfigError, match="--mbuf-size"):
            build_config(BASE + ["--mbuf-size", bad], ncpus=2)


def test_police_option():
    from kni_gw.config import POLICE_DEFAULTS
    cfg = build_config(BASE, ncpus=2)
    assert cfg.police == POLICE_DEFAULTS
    cfg = build_config(BASE + ["--police", "icmp=500:50", "--police", "dns=1000"], ncpus=2)
    assert cfg.police["icmp"] == (500, 50) and cfg.police["dns"] == (1000, 50)
    # off: not policed; 0: a rate of zero, every frame of the class dropped
    assert set(build_config(BASE + ["--police", "off"], ncpus=2).police.values()) == {(None, 0)}
    cfg = build_config(BASE + ["--police", "icmp=0", "--police", "multicast=off"], ncpus=2)
    assert cfg.police["icmp"] == (0, 0) and cfg.police["multicast"] == (None, 0)
    with pytest.raises(ConfigError, match="drops every frame"):
        build_config(BASE + ["--police", "icmp=0:10"], ncpus=2)
    for bad in ("icmp", "pings=5", "icmp=x", "icmp=5:", "icmp=of"):
        with pytest.raises(ConfigError, match="CLASS=PPS"):
            build_config(BASE + ["--police", bad], ncpus=2)


def test_help():
    with pytest.raises(HelpRequested):
        build_config(["--", "--help"], ncpus=2)


# ------------------------------------------------------------ refusals

@pytest.mark.parametrize("config, words", [
    ("0,0,1", "malformed"),
    ("(0,0,1", "malformed"),
    ("(0,0)", r"has 2 field\(s\)"),
    ("(0,0,1,1,1)", "at most 4 fields"),
    ("(0,a,1)", "is not a number"),
    ("(0,0,1)x", "malformed"),
    ("", "empty"),
    ("(0,0,1);(1,0,1)", "malformed"),
    ("(99,0,1)", "out of range"),
])
def test_malformed_config(config, words):
    with pytest.raises(ConfigError, match=words):
        build_config(["-l", "0-1", "-p", "0x1", "--config", config], ncpus=2)


def test_portmask_and_config_disagree():
    with pytest.raises(ConfigError, match=r"selects port\(s\) \[0, 1\] but --config describes port\(s\) \[0\]"):
        build_config(["-l", "0-1", "-p", "0x3", "--config", "(0,0,1)"], ncpus=2)


@pytest.mark.parametrize("mask, words", [("0x0", "selects no port"), ("zz", "hex number"),
                                         ("0x10000", "at most 16")])
def test_bad_portmask(mask, words):
    with pytest.raises(ConfigError, match=words):
        parse_portmask(mask)


def test_port_listed_twice():
    with pytest.raises(ConfigError, match="port 0 is listed twice"):
        build_config(["-l", "0-1", "-p", "0x1", "--config", "(0,0,1),(0,1,0)"], ncpus=2)


def test_rx_and_tx_on_one_lcore_refused():
    with pytest.raises(ConfigError, match="separate lcores"):
        build_config(["-l", "0-1", "-p", "0x1", "--config", "(0,1,1)"], ncpus=2)


@pytest.mark.parametrize("argv, words", [
    (["-l", "0", "-p", "0x1", "--config", "(0,0,1)"], "tx lcore 1 is not enabled by -l"),
    (["-c", "0x1", "-p", "0x1", "--config", "(0,0,1)"], "tx lcore 1 is not enabled by -c"),
    (["-l", "0-1", "-p", "0x1", "--config", "(0,0,1,3)"], "exception lcore 3 is not enabled"),
    (["-p", "0x1", "--config", "(0,0,5)"], "not enabled by the CPUs available"),
])
def test_lcore_not_enabled(argv, words):
    with pytest.raises(ConfigError, match=words):
        build_config(argv, ncpus=2)


@pytest.mark.parametrize("argv, words", [
    (["-l", "0-1", "--config", "(0,0,1)"], "-p PORTMASK is required"),
    (["-l", "0-1", "-p", "0x1"], "--config is required"),
    (BASE + ["--frobnicate"], "unknown option"),
    (BASE + ["--exception", "kni"], "choose one of auto, tap, virtio-user"),
    (BASE + ["--fifo-size", "1000"], "power of two"),
    (BASE + ["--burst", "0"], "out of range"),
    (BASE + ["--stats-format", "xml"], "table or json"),
    (["-l", "0-1", "--", "-p", "0x1", "--config", "(0,0,1)", "--", "x"], "given twice"),
])
def test_other_command_line_errors(argv, words):
    with pytest.raises(ConfigError, match=words):
        build_config(argv, ncpus=2)


def test_not_root():
    with pytest.raises(ConfigError, match="must run as root"):
        preflight(build_config(BASE, ncpus=2), host(euid=1000))


def test_no_hugepages_points_to_the_script():
    with pytest.raises(ConfigError, match="no free hugepages.*scripts/setup_hugepages.sh.*--no-huge"):
        preflight(build_config(BASE, ncpus=2), host(hugepages_free=0))
    with pytest.raises(ConfigError, match="hugetlbfs is not mounted.*setup_hugepages.sh"):
        preflight(build_config(BASE, ncpus=2), host(hugetlbfs_mounted=False))
    # --no-huge needs neither
    assert preflight(build_config(BASE + ["--no-huge"], ncpus=2), host(hugepages_free=0)) == "tap"


def test_backend_choice_and_unavailable_backends():
    cfg = build_config(BASE, ncpus=2)
    assert preflight(cfg, host()) == "tap"
    assert preflight(cfg, host(has_vhost_net=True)) == "virtio-user"
    with pytest.raises(ConfigError, match="needs /dev/net/tun: sudo modprobe tun"):
        preflight(cfg, host(has_tun=False))
    cfg = build_config(BASE + ["--exception", "virtio-user"], ncpus=2)
    with pytest.raises(ConfigError, match="needs /dev/vhost-net.*--exception tap"):
        preflight(cfg, host())


def test_veth_name_taken():
    with pytest.raises(ConfigError, match="interface vEth0 already exists"):
        preflight(build_config(BASE, ncpus=2), host(taken_ifnames={"vEth0"}))


def test_dns_allow():
    z = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "examples", "example.zone")
    cfg = build_config(BASE + ["--dns-zone", z, "--dns-forward", "192.0.2.53", "--dns-allow", "10.0.0.0/8",
                               "--dns-allow=2001:db8::/32"], ncpus=2)
    assert cfg.dns_allow == ["10.0.0.0/8", "2001:db8::/32"]
    with pytest.raises(ConfigError, match="--dns-allow only matters with --dns-forward"):
        build_config(BASE + ["--dns-zone", z, "--dns-allow", "10.0.0.0/8"], ncpus=2)
    with pytest.raises(ConfigError, match="--dns-allow '10.0.0.0/33': a prefix"):
        build_config(BASE + ["--dns-zone", z, "--dns-forward", "192.0.2.53", "--dns-allow", "10.0.0.0/33"],
                     ncpus=2)
    with pytest.raises(ConfigError, match="need --dns-zone"):
        build_config(BASE + ["--dns-allow", "10.0.0.0/8"], ncpus=2)


# ------------------------------------------------------------ route tables and memory

def test_tables_sized_to_the_memory_eal_has():
    from kni_gw.config import MiB, TABLE_LADDER
    from kni_gw.dataplane import fib_size

    def need(t):
        return fib_size(t.routes4, t.tbl8s4, t.routes6, t.tbl8s6)

    # hugepages: 1 GiB free, the largest default step (not all the memory)
    cfg = build_config(BASE, ncpus=2)
    preflight(cfg, host(hugepages_free_bytes=1024 * MiB))
    assert (cfg.tables.routes4, cfg.tables.routes6) == TABLE_LADDER[0] == (262144, 16384)
    assert need(cfg.tables) < 300 * MiB
    # a full table is asked for, and fits in 2 GiB
    cfg = build_config(BASE + ["--max-routes", "1048576,262144"], ncpus=2)
    preflight(cfg, host(hugepages_free_bytes=2048 * MiB))
    assert 850 * MiB < need(cfg.tables) < 950 * MiB
    # -m 256: a smaller step, which fits beside the mbufs
    cfg = build_config(BASE + ["-m", "256"], ncpus=2)
    preflight(cfg, host())
    assert (cfg.tables.routes4, cfg.tables.routes6) in TABLE_LADDER[1:]
    assert need(cfg.tables) < 256 * MiB and "sized to EAL's 256 MiB" in cfg.memory_note
    # --no-huge without -m: kni-gw gives EAL the memory, and says so
    cfg = build_config(BASE + ["--no-huge"], ncpus=2)
    preflight(cfg, host(hugepages_free=0))
    m = int(cfg.eal_argv[cfg.eal_argv.index("-m") + 1])
    assert m * MiB > need(cfg.tables) and "--no-huge without -m: EAL gets -m" in cfg.memory_note
    # --no-huge with -m: as given
    cfg = build_config(BASE + ["--no-huge", "-m", "512"], ncpus=2)
    preflight(cfg, host(hugepages_free=0))
    assert cfg.eal_argv.count("-m") == 1


def test_max_routes():
    cfg = build_config(BASE + ["--max-routes", "2048,1024"], ncpus=2)
    preflight(cfg, host())
    assert (cfg.tables.routes4, cfg.tables.routes6) == (2048, 1024)
    cfg = build_config(BASE + ["--max-routes", "0x10000"], ncpus=2)
    assert (cfg.max_routes.routes4, cfg.max_routes.routes6) == (65536, 16384)
    for bad in ("12", "1024,1024,1024", "many", "1024,x"):
        with pytest.raises(ConfigError, match="--max-routes"):
            build_config(BASE + ["--max-routes", bad], ncpus=2)
    with pytest.raises(ConfigError, match="the route tables need .* MiB and EAL has 200 MiB"):
        preflight(build_config(BASE + ["-m", "200", "--max-routes", "1048576,262144"], ncpus=2), host())
    with pytest.raises(ConfigError, match="too little for the route tables"):
        preflight(build_config(BASE + ["-m", "100"], ncpus=2), host())


def test_several_rx_lcores_per_port():
    """The rx field may list several lcores (one rx queue each, flows spread
    by RSS); the KNI sample's one-lcore form keeps its meaning."""
    ports = parse_config("(0,0+1,1),(1,2-4,0,3)")
    assert [(p.port, p.lcores_rx, p.lcore_tx, p.lcore_exc) for p in ports] == [
        (0, (0, 1), 1, 1), (1, (2, 3, 4), 0, 3)]
    assert ports[0].rx_text == "0+1" and ports[0].lcore_rx == 0
    assert parse_config("(0,0x2+0x3,1)")[0].lcores_rx == (2, 3)


@pytest.mark.parametrize("text,words", [
    ("(0,0+0,1)", "listed twice"),
    ("(0,3-1,0)", "goes backwards"),
    ("(0,0+,1)", "joined with \\+"),
    ("(0,-1,1)", "joined with \\+"),
    ("(0,0-8,9)", "at most 8 rx lcores"),
    ("(0,1,1)", "separate lcores"),
    ("(0,0,1),(0,2,1)", "several rx lcores go in its second field"),
])
def test_bad_rx_lcore_lists(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(text)


def test_rx_lcores_must_be_enabled():
    with pytest.raises(ConfigError, match="rx lcore 2 is not enabled"):
        build_config(["-l", "0-1", "-p", "0x1", "--config", "(0,0+2,1)"], ncpus=4)


def test_dns_fast_options():
    import os
    z = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "example.zone")
    cfg = build_config(BASE + ["--dns-zone", z], ncpus=2)
    assert cfg.dns_fast and (cfg.dns_rrl, cfg.dns_rrl_slip) == (200, 2)     # NSD's defaults
    cfg = build_config(BASE + ["--dns-zone", z, "--dns-fast", "off", "--dns-rrl", "0",
                               "--dns-rrl-slip=0"], ncpus=2)
    assert not cfg.dns_fast and (cfg.dns_rrl, cfg.dns_rrl_slip) == (0, 0)
    with pytest.raises(ConfigError, match="--dns-fast 'maybe': choose on or off"):
        build_config(BASE + ["--dns-zone", z, "--dns-fast", "maybe"], ncpus=2)
    with pytest.raises(ConfigError, match="--dns-rrl: '-1' is not a number"):
        build_config(BASE + ["--dns-zone", z, "--dns-rrl", "-1"], ncpus=2)
    with pytest.raises(ConfigError, match="--dns-rrl-slip 101 is out of range"):
        build_config(BASE + ["--dns-zone", z, "--dns-rrl-slip", "101"], ncpus=2)
    with pytest.raises(ConfigError, match="need --dns-zone"):
        build_config(BASE + ["--dns-fast", "off"], ncpus=2)


def test_af_packet_ring_default_unless_given():
    """net_af_packet vdevs without framecnt= get kni-gw's ring (both --vdev
    spellings), one note each for the start log; a framecnt the user gave
    and other vdevs are left as they are."""
    from kni_gw.config import AF_PACKET_FRAMECNT
    cfg = build_config(["-l", "0-1", "--no-huge", "--vdev", "net_af_packet0,iface=a",
                        "--vdev=net_af_packet1,iface=b,framecnt=1024", "--vdev=net_af_packet2,iface=c",
                        "--vdev", "net_null0", "-p", "0x7", "--config", "(0,0,1),(1,0,1),(2,0,1)"],
                       ncpus=2)
    preflight(cfg, host(hugepages_free=0))
    assert cfg.eal_opts["--vdev"] == [f"net_af_packet0,iface=a,framecnt={AF_PACKET_FRAMECNT}",
                                      "net_af_packet1,iface=b,framecnt=1024",
                                      f"net_af_packet2,iface=c,framecnt={AF_PACKET_FRAMECNT}",
                                      "net_null0"]
    assert [n.split(":")[0] for n in cfg.vdev_notes] == ["net_af_packet0", "net_af_packet2"]
    # larger frames: fewer of them, to the same ring size
    cfg = build_config(["-l", "0-1", "--no-huge", "--vdev", "net_af_packet0,iface=a,framesz=9216,blocksz=16384",
                        "-p", "0x1", "--config", "(0,0,1)"], ncpus=2)
    preflight(cfg, host(hugepages_free=0))
    assert cfg.eal_opts["--vdev"] == ["net_af_packet0,iface=a,framesz=9216,blocksz=16384,framecnt=1024"]
