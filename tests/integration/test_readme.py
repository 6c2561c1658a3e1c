"""Commands the README shows, run exactly as written."""
import re
import signal
import subprocess

from .harness import ping, sh, wait_for

README = __file__.rsplit("/tests/", 1)[0] + "/README.md"


def block_after(heading):
    text = open(README).read()
    section = text.split(heading, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1).strip().splitlines()


def test_no_nic_commands_as_written():
    """'On a machine without a spare NIC': the namespaces, the sysctls and
    the kni-gw command line (--no-huge, no -m) as the README prints them;
    then vEth0 is configured and pinged from the far side."""
    lines = block_after("## On a machine without a spare NIC")
    setup, run = lines[:-1], lines[-1]
    assert run.startswith("ip netns exec gw kni-gw ") and "--no-huge" in run and " -m " not in run
    existing = [ln.split()[0] for ln in sh("ip", "netns", "list").stdout.splitlines() if ln.strip()]
    assert "gw" not in existing and "peer" not in existing, "namespaces gw/peer exist already"
    proc = None
    try:
        sh("bash", "-euc", "\n".join(setup))
        proc = subprocess.Popen(["bash", "-c", "exec " + run], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: proc.poll() is not None or
                 sh("ip", "link", "show", "vEth0", ns="gw", check=False).returncode == 0,
                 timeout=30, what="vEth0")
        assert proc.poll() is None, proc.communicate()[1]
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "vEth0", ns="gw")
        sh("ip", "link", "set", "vEth0", "up", ns="gw")
        sh("ip", "addr", "add", "192.0.2.2/24", "dev", "eth0", ns="peer")
        sh("ip", "link", "set", "eth0", "up", ns="peer")
        wait_for(lambda: ping("peer", "192.0.2.1", count=1, wait=1).returncode == 0, timeout=20,
                 what="ping vEth0 through the gateway")
        assert " 0% packet loss" in ping("peer", "192.0.2.1", count=5, interval=0.05).stdout
    finally:
        err = ""
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=30)[1]
        sh("ip", "netns", "del", "gw", check=False)
        sh("ip", "netns", "del", "peer", check=False)
    assert proc.returncode == 0, err
    assert "--no-huge without -m: EAL gets -m" in err
