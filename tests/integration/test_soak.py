"""A short soak in CI (bench/soak.py runs the long one): memory and mbufs
stay flat while mixed traffic, route churn and statistics signals go on."""
import os
import re

from . import soak

SECONDS = float(os.environ.get("KNI_GW_SOAK_SECONDS", "25"))


def test_soak_short():
    lines = []
    r = soak.run(SECONDS, report=lines.append)
    print("\n".join(lines))
    assert r["alive"] and r["sent"] > 10_000
    rss = [s[1] for s in r["samples"]]
    third = len(rss) // 3
    # after warm-up, resident memory does not grow (tolerance: 2 MiB)
    assert max(rss[third:]) - min(rss[third:]) < 2048, rss
    # (ping prints a fractional loss as such: "0.217391% packet loss")
    m = re.search(r" ([\d.]+)% packet loss", r["pings"])
    assert m and float(m.group(1)) <= 2, r["pings"]
