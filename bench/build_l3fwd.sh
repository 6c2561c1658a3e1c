#!/bin/sh
# Build DPDK's l3fwd sample (the fast path's reference, TESTING.md) into
# build/dpdk-l3fwd, from the sources Debian's dpdk-doc ships:
#
#   bench/build_l3fwd.sh            (bench/bench_fastpath.py runs it when
#                                    build/dpdk-l3fwd is missing)
#
# The sources are copied to build/l3fwd-src/{l3fwd,common} (the Makefile
# includes ../common) and built with the sample's own Makefile, which takes
# its flags from `pkg-config libdpdk`. Nothing outside build/ is written.
#
# One change to the copy, in main.c's static port_conf (sed below): it asks
# for rx checksum offload (RTE_ETH_RX_OFFLOAD_CHECKSUM) and RSS over IP
# (mq_mode = RTE_ETH_MQ_RX_RSS, rss_hf = RTE_ETH_RSS_IP). net_pcap and
# net_null offer neither. The offload is what stops it: unpatched, l3fwd
# exits with "Ethdev port_id=0 requested Rx offloads 0xe doesn't match Rx
# offloads capabilities 0x0 in rte_eth_dev_configure()". RSS alone would
# pass (l3fwd masks rss_hf with the port's capabilities, leaving 0), but it
# is turned off too (RTE_ETH_MQ_RX_NONE, rss_hf 0) so that the
# configuration is what these ports do. Nothing on the forwarding path
# changes: l3fwd reads no checksum flag (its RFC 1812 checks look at the
# header), and each rx queue is polled by the lcore --config names.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${DPDK_EXAMPLES:-/usr/share/dpdk/examples}
OUT="$ROOT/build"
WORK="$OUT/l3fwd-src"

if [ ! -f "$SRC/l3fwd/main.c" ] || [ ! -d "$SRC/common" ]; then
    echo "build_l3fwd: $SRC/l3fwd (+ ../common) not found: apt-get install -y dpdk-doc" >&2
    exit 1
fi
pkg-config --exists libdpdk || { echo "build_l3fwd: pkg-config libdpdk: not found (libdpdk-dev)" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$SRC/l3fwd" "$SRC/common" "$WORK/"
chmod -R u+w "$WORK"

# the port_conf change described above, checked: the build stops if the
# sample's text is not what these expressions expect (another DPDK version)
M="$WORK/l3fwd/main.c"
sed -i \
    -e 's/^\(\t\t\.mq_mode = \)RTE_ETH_MQ_RX_RSS,$/\1RTE_ETH_MQ_RX_NONE, \/* kni-gw bench: was RTE_ETH_MQ_RX_RSS *\//' \
    -e 's/^\(\t\t\.offloads = \)RTE_ETH_RX_OFFLOAD_CHECKSUM,$/\10, \/* kni-gw bench: was RTE_ETH_RX_OFFLOAD_CHECKSUM *\//' \
    -e 's/^\(\t\t\t\.rss_hf = \)RTE_ETH_RSS_IP,$/\10, \/* kni-gw bench: was RTE_ETH_RSS_IP *\//' \
    "$M"
n=$(grep -c 'kni-gw bench: was' "$M" || true)
if [ "$n" != 3 ]; then
    echo "build_l3fwd: expected 3 port_conf edits in $M, made $n (DPDK $(pkg-config --modversion libdpdk))" >&2
    exit 1
fi

make -s -C "$WORK/l3fwd" PKGCONF=pkg-config >"$WORK/make.log" 2>&1 || {
    cat "$WORK/make.log" >&2
    echo "build_l3fwd: make failed" >&2
    exit 1
}
cp "$WORK/l3fwd/build/l3fwd-shared" "$OUT/dpdk-l3fwd"
echo "build_l3fwd: $OUT/dpdk-l3fwd (DPDK $(pkg-config --modversion libdpdk))"
