"""Statistics arithmetic and rendering (no ports, no root)."""
import json

from kni_gw.dataplane import DROP_REASONS, POLICE_CLASSES, PUNT_REASONS
from kni_gw.stats import derive, render_json, render_table, subtract


def snap(t, rx, tok, fwd, ktx, fk, tx, drops=None, mbufs=100):
    d = {r: 0 for r in DROP_REASONS}
    d.update(drops or {})
    return {"time": t, "mbufs_in_use": mbufs, "mbufs_total": 1023, "ports": [{
        "port": 0, "ifname": "vEth0", "lcore_rx": 0, "lcore_tx": 1, "lcore_exception": 1,
        "admin_up": True, "rx_packets": rx, "rx_bytes": rx * 60, "to_kernel": tok,
        "forwarded": fwd, "kernel_tx": ktx, "from_kernel": fk, "tx_packets": tx,
        "tx_bytes": tx * 60, "drops": d, "punts": {r: 0 for r in PUNT_REASONS},
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
    t = render_table(v)
    for col in ("Port", "Lcore(RX/TX/EXC)", "rx_packets", "rx_dropped", "tx_packets",
                "tx_dropped", "to_kernel", "from_kernel", "drops by reason"):
        assert col in t
    assert "0/1/1" in t and "mbufs in use: 100 of 1023" in t


