"""Every mbuf of the pool can carry frames through net_af_xdp.

DPDK 22.11's net_af_xdp registers the mbuf pool as its umem as if the
objects lay end to end; where the pool skips page boundaries (one object per
4 KiB page without hugepages), the last objects lie past the umem's end, the
kernel drops the fill-ring entries that carry them, and each is an mbuf lost
with the frames it should have received. The pool's caches keep a running
gateway on few mbufs, so only traffic that moves mbufs between lcores walks
the pool's ring far enough to hand those objects out: frames punted into
vEth0 (received on lcore 0, written into the kernel and freed on lcore 1)
move one mbuf through it each. The test runs the pool on DPDK's ring
driver, which hands out every free mbuf in turn; kni-gw's own (kg_hot,
csrc/control/pool.c) cycles a short list first and reaches the rest only
when it runs dry or an lcore renews its cache, so it would take far longer
to reach every object (test_hostile runs net_af_xdp on kg_hot). Without hugepages nearly half the pool lay
past it, and the test failed (4,751 of 36,488 frames received). With
hugepages a few objects lie past it (the bytes each 2 MiB page leaves over):
there the test shows that the pool kni-gw trims still carries every frame,
but it passed without the trimming too."""
import os
import sys

import pytest
from scapy.all import IP, UDP, Ether, Raw

from .harness import sh
from .pktio import write_frames
from .test_differential import MAC0, PKTIO, SRC_MAC
from .test_hostile import quiet_then_flush, still_works, xdp_router


@pytest.mark.parametrize("huge", [False, True], ids=["no-huge", "hugepages"])
def test_every_mbuf_of_the_pool_carries_frames_through_af_xdp(gateways, huge):
    with xdp_router(gateways, f"kgp{int(huge)}", huge=huge,
                    eal_extra=["--mbuf-pool-ops-name", "ring_mp_mc"]) as (g, gw, gin, gout, tmp):
        base = quiet_then_flush(g, gw)
        total = base["mbufs_total"]
        # to the gateway's own address, a closed port: punted ("local",
        # 50,000 frames/s by default; sent at 20,000/s), dropped by the kernel
        n = 2 * total + 5000
        frame = bytes(Ether(src=SRC_MAC, dst=MAC0) / IP(src="10.0.0.2", dst="10.0.0.1") /
                      UDP(sport=40000, dport=9) / Raw(b"p" * 18))
        path = os.path.join(tmp, "local.bin")
        write_frames(path, [frame] * n)
        sh(sys.executable, PKTIO, "send", "in0", path, "20", ns=gin, timeout=300)

        after = quiet_then_flush(g, gw)
        p0, b0 = after["ports"][0], base["ports"][0]
        d = {k: p0[k] - b0[k] for k in ("rx_packets", "to_kernel", "kernel_tx")}
        drops = {r: p0["drops"][r] - b0["drops"][r] for r in p0["drops"] if p0["drops"][r] != b0["drops"][r]}
        assert d["rx_packets"] == n, (d, drops, n)
        assert d["to_kernel"] == n and d["kernel_tx"] == n, (d, drops)
        assert after["mbufs_in_use"] == base["mbufs_in_use"], (after["mbufs_in_use"], base["mbufs_in_use"])
        still_works(g, gin, gout)
