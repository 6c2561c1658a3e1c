"""Integration tests need root, network namespaces, veth, /dev/net/tun and
the built dataplane. When any is missing they fail; they never skip."""
import os
import shutil
import subprocess

import pytest

from .harness import Gateway, Topology, kni_gw_bin


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def preconditions():
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    if not os.path.exists("/dev/net/tun"):
        problems.append("no /dev/net/tun")
    for tool in ("ip", "ping", "sysctl"):
        if shutil.which(tool) is None:
            problems.append(f"no {tool} on PATH")
    if not os.path.exists(kni_gw_bin()):
        problems.append("kni-gw is not installed (scripts/install.sh)")
    if not problems:
        r = subprocess.run(["ip", "netns", "add", "kgt-probe"], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"cannot create a network namespace: {r.stderr.strip()}")
        subprocess.run(["ip", "netns", "del", "kgt-probe"], capture_output=True)
    if problems:
        pytest.fail("integration preconditions missing: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def topo():
    t = Topology(1)
    yield t
    t.close()


@pytest.fixture
def topo2():
    t = Topology(2)
    yield t
    t.close()


@pytest.fixture
def gateways():
    """Start gateways with gateways(topo, args...); all are killed at the end."""
    started = []

    def start(topo, args, **kw):
        g = Gateway(topo, args, **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        g.kill()
