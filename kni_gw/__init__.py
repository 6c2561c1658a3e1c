"""kni-gw: DPDK fast path with the Linux kernel as control plane."""

__version__ = "0.1.0"
