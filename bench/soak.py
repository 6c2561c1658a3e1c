#!/usr/bin/env python3
"""The long soak (default 10 minutes): sudo .venv/bin/python bench/soak.py [--minutes 10]
Mixed traffic, route churn, SIGUSR1/SIGUSR2 every second; prints resident
memory and mbufs in use over time (see tests/integration/soak.py)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.integration import soak  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--minutes", type=float, default=10)
a = ap.parse_args()
r = soak.run(a.minutes * 60)
rss = [s[1] for s in r["samples"]]
third = len(rss) // 3
print(f"RSS after warm-up: min {min(rss[third:])} KiB, max {max(rss[third:])} KiB")
print(f"mbufs back to baseline {r['base_mbufs']}: yes")
