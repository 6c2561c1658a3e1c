"""Statistics arithmetic and rendering (no ports, no root)."""
import json

from kni_gw.dataplane import DROP_REASONS, POLICE_CLASSES, PUNT_REASONS
import re

from kni_gw.stats import derive, render_json, render_rates, render_text, subtract


def snap(t, rx, tok, fwd, ktx, fk, tx, drops=None, mbufs=100):
    d = {r: 0 for r in DROP_REASONS}
    d.update(drops or {})
    return {"time": t, "mbufs_in_use": mbufs, "mbufs_total": 1023, "ports": [{
        "port": 0, "ifname": "vEth0", "lcore_rx": 0, "lcore_tx": 1, "lcore_exception": 1,
        "admin_up": True, "rx_packets": rx, "rx_bytes": rx * 60, "to_kernel": tok,
        "forwarded": fwd, "kernel_tx": ktx, "from_kernel": fk, "tx_packets": tx,
        "tx_bytes": tx * 60, "dns_answered": 0, "dns_missed": 0, "drops": d, "punts": {r: 0 for r in PUNT_REASONS},
        "policed": {r: 0 for r in POLICE_CLASSES},
        "hw": {"hw_ipackets": rx, "hw_imissed": 0, "hw_ierrors": 0, "hw_rx_nombuf": 0,
               "hw_opackets": tx, "hw_oerrors": 0, "exc_ipackets": fk, "exc_opackets": ktx,
               "exc_oerrors": 0, "to_kernel_fifo_used": 3, "tx_fifo_used": 0}}]}


def test_kni_columns_from_drop_reasons():
    p = snap(0, 10, 7, 0, 6, 5, 4, {"to_kernel_full": 2, "runt": 1, "kernel_write": 1,
                                     "tx_nic": 1, "port_down_tx": 2})["ports"][0]
    assert derive(p) == {"rx_dropped": 3, "kernel_dropped": 1, "tx_dropped": 3}
    # rx = to_kernel + forwarded + rx_dropped
    assert p["rx_packets"] == p["to_kernel"] + p["forwarded"] + derive(p)["rx_dropped"]


def test_reset_is_baseline_subtraction_and_gauges_stay():
    base = snap(100.0, 50, 50, 0, 50, 40, 40, {"tx_nic": 2}, mbufs=120)
    now = snap(200.0, 80, 75, 0, 75, 60, 58, {"tx_nic": 5, "to_kernel_full": 5}, mbufs=110)
    v = subtract(now, base)
    p = v["ports"][0]
    assert (p["rx_packets"], p["to_kernel"], p["tx_packets"], p["from_kernel"]) == (30, 25, 18, 20)
    assert p["drops"]["tx_nic"] == 3 and p["rx_dropped"] == 5 and p["tx_dropped"] == 3
    assert p["hw"]["hw_ipackets"] == 30 and p["hw"]["to_kernel_fifo_used"] == 3
    assert v["mbufs_in_use"] == 110 and v["since"] == 100.0
    # the snapshot itself is left untouched
    assert now["ports"][0]["rx_packets"] == 80


def test_json_and_table_renderings():
    v = subtract(snap(0, 12, 12, 0, 12, 9, 9, {"kernel_write": 0}), None)
    j = json.loads(render_json(v))
    assert j["ports"][0]["rx_packets"] == 12 and j["ports"][0]["tx_dropped"] == 0
    t = render_text(v)
    for col in ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets",
                "tx_dropped", "to_kernel", "from_kernel", "drops by reason"):
        assert col in t
    assert "0/1/1" in t and "mbufs in use: 100 of 1023" in t




def busy_view(big=False):
    """A port with many reasons and (big=True) 20-digit counters."""
    n = 18446744073709551615 if big else 289951234
    base = snap(0, 0, 0, 0, 0, 0, 0)
    v = subtract(snap(3700.0, n, n - 5, n // 3, n // 4, n // 5, n // 6,
                      {r: n // (i + 7) for i, r in enumerate(DROP_REASONS)}), None)
    p = v["ports"][0]
    p["punts"] = {r: n // (i + 2) for i, r in enumerate(PUNT_REASONS)}
    p["policed"] = {r: n // (i + 3) for i, r in enumerate(POLICE_CLASSES)}
    p["hw"]["hw_imissed"] = 12345
    p["dns_answered"], p["dns_missed"] = n // 11, n // 13
    v["ports"].append(dict(p, port=1, ifname="vEth1", lcore_rx=2, lcore_tx=3, lcore_exception=3))
    v["started"], v["time"] = 100.0, 100.0 + 86400 + 3723
    v["lcores"] = {"0": {"rx_packets": n, "tx_packets": n, "forwarded": n, "kernel_tx": n,
                         "from_kernel": n, "dropped": n}}
    v["fib"] = {"routes4": 1000000, "routes6": 65536, "fast4": 999999, "fast6": 65000,
                "neighbours": 4000, "memory": 170 * 2**20}
    v["dns"] = {"queries": n, "rcode_NOERROR": n, "rcode_NXDOMAIN": n, "truncated": n,
                "tcp_queries": n, "malformed": n, "forwarded": 0, "reloads": 3}
    v["dns_fast"] = {"entries": 80024, "compile_seconds": 1.42, "compiles": 1, "memory": 3 * 2**20,
                     "rrl": 200, "rrl_slip": 2, "addresses": 2}
    base = base  # noqa
    return v, base


def every_number(v):
    """Every counter a person must be able to read whole."""
    out = []
    for p in v["ports"]:
        out += [p[k] for k in ("rx_packets", "rx_dropped", "tx_packets", "tx_dropped", "to_kernel",
                               "from_kernel", "kernel_dropped", "forwarded", "dns_answered")]
        out += [x for x in p["drops"].values() if x] + [x for x in p["punts"].values() if x]
        out += [x for x in p["policed"].values() if x]
    return out


def test_text_has_every_number_whole_at_any_width():
    for big in (False, True):
        v, _ = busy_view(big)
        for width in (None, 80, 120) + (() if big else (60,)):
            t = render_text(v, width) + render_rates(v, width)
            assert "…" not in t and "┃" not in t and "│" not in t
            if width is not None:
                assert max(len(line) for line in t.splitlines()) <= width, (width, t)
            words = set(re.findall(r"[\w/().:=-]+", t))
            tokens = {w.split("=")[-1] for w in words}
            for n in every_number(v):
                assert str(n) in tokens, (n, width, t)
            for col in ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets",
                        "tx_dropped", "to_kernel", "from_kernel", "kernel_dropped", "forwarded"):
                assert col in t
            # the time of the dump and the uptime lead
            assert re.match(r"kni-gw statistics at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4},\s+"
                            r"up 1d 01:02:03", t), t
            assert "imissed=12345" in t


def test_text_for_a_file_is_one_line_per_port():
    v, _ = busy_view()
    lines = render_text(v, None).splitlines()
    rows = [ln for ln in lines if re.match(r"^\s*[01]\s+\d+/\d+/\d+\s", ln)]
    assert len(rows) == 2
    for ln in rows:
        # the last columns: forwarded, then (DNS served) the queries answered in C
        assert "vEth" in ln and ln.split()[-2:] == [str(v["ports"][0]["forwarded"]),
                                                    str(v["ports"][0]["dns_answered"])]
    # one header line for the table: all the KNI sample's columns on it
    assert sum(1 for ln in lines if ln.split()[:2] == ["Port", "Lcore(RX/TX/EXC)"]) == 1


def test_text_at_80_columns_splits_whole_columns():
    v, _ = busy_view(big=True)
    t = render_text(v, 80)
    heads = [ln.split() for ln in t.splitlines() if ln.lstrip().startswith("Port")]
    assert len(heads) >= 2 and all(h[0] == "Port" for h in heads)
    # every column appears once, in order
    cols = [c for h in heads for c in h[1:]]
    assert cols == ["Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets", "tx_dropped", "vEth",
                    "to_kernel", "from_kernel", "kernel_dropped", "forwarded", "dns_answered"][:len(cols)]
    assert len(cols) == 11


def test_dns_in_c_off_is_said():
    v, _ = busy_view()
    v["dns_fast"] = {"off": True}
    t = render_text(v, 80)
    assert "dns in C: off (--dns-fast off)" in t
