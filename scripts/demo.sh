#!/usr/bin/env bash
# demo.sh - kni-gw on a built-in topology, on a machine without a spare NIC.
#
#   ns kgdemo-peer: eth0 192.168.0.2/24 ==veth== wire0 : ns kgdemo-gw
#                                                  kni-gw --vdev net_af_packet0,iface=wire0
#                                                  vEth0 192.168.0.1/24
#
# Installs what is missing (scripts/install.sh), starts kni-gw with one port
# whose "NIC" is the veth end wire0, configures vEth0 as an operator would
# (ip addr add, ip link set up), pings it from the peer, prints the SIGUSR1
# statistics table, stops kni-gw with SIGTERM and removes the namespaces.
#
#   sudo scripts/demo.sh [--no-install] [--count N]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
gw=kgdemo-gw peer=kgdemo-peer count=10 install=1
while [ $# -gt 0 ]; do
	case "$1" in
	--no-install) install=0 ;;
	--count) count=${2:?}; shift ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "demo.sh: must run as root: sudo $0" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_gw() { ip netns exec "$gw" "$@"; }
in_peer() { ip netns exec "$peer" "$@"; }

[ "$install" = 1 ] && "$top/scripts/install.sh"
kni_gw=$top/.venv/bin/kni-gw

pid='' log=$(mktemp) out=$(mktemp)
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
	fi
	ip netns del "$gw" 2>/dev/null || true
	ip netns del "$peer" 2>/dev/null || true
	rm -f "$log" "$out"
}
trap cleanup EXIT
ip netns del "$gw" 2>/dev/null || true
ip netns del "$peer" 2>/dev/null || true

say "topology: namespace $peer (the far side of the wire) and $gw (the gateway)"
ip netns add "$gw"
ip netns add "$peer"
ip link add wire0 netns "$gw" type veth peer name eth0 netns "$peer"
in_gw ip link set lo up
# wire0 is the gateway's "NIC": keep the gateway namespace's own IP stack off
# it, as if it were bound to DPDK (else Linux would answer off wire0 too).
in_gw sysctl -qw net.ipv4.conf.wire0.rp_filter=1 net.ipv4.conf.wire0.arp_ignore=8 \
	net.ipv6.conf.wire0.disable_ipv6=1
in_gw ip link set wire0 up
in_peer ip link set lo up
in_peer ip addr add 192.168.0.2/24 dev eth0
in_peer ip link set eth0 up
echo "peer eth0 192.168.0.2/24 <== veth ==> wire0 (DPDK port 0 via net_af_packet)"

# shellcheck disable=SC2054  # the commas belong to the vdev argument
cmd=(kni-gw -l 0-1 --no-huge --no-pci --file-prefix kgdemo --vdev net_af_packet0,iface=wire0
	-p 0x1 --config "(0,0,1)")
shown=""
for a in "${cmd[@]}"; do
	case "$a" in
	*[!A-Za-z0-9_./=,:-]*) shown+=" '$a'" ;;
	*) shown+=" $a" ;;
	esac
done
say "start (in ns $gw):$shown"
ip netns exec "$gw" "$kni_gw" "${cmd[@]:1}" >"$out" 2>"$log" &
pid=$!
for _ in $(seq 200); do
	grep -q "ready (pid" "$log" && break
	kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo.sh: kni-gw did not start" >&2; exit 1; }
	sleep 0.05
done
grep -q "ready (pid" "$log" || { cat "$log"; echo "demo.sh: kni-gw did not start in 10 s" >&2; exit 1; }
grep '^kni-gw:' "$log"

say "operator: ip addr add 192.168.0.1/24 dev vEth0 && ip link set vEth0 up"
in_gw ip addr add 192.168.0.1/24 dev vEth0
in_gw ip link set vEth0 up
in_gw ip -br addr show vEth0

say "peer: ping -c $count 192.168.0.1 (through the wire, port 0, vEth0 and back)"
in_peer ping -n -c "$count" -i 0.2 -W 2 192.168.0.1

say "pkill -10 kni-gw: the statistics table"
lines=$(wc -l <"$out")
kill -USR1 "$pid"
for _ in $(seq 100); do
	grep -q "^mbufs in use" <(tail -n +"$((lines + 1))" "$out") && break
	sleep 0.05
done
tail -n +"$((lines + 1))" "$out"

say "stop: SIGTERM"
kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
pid=
grep -E "stopping|stopped" "$log"
if in_gw ip link show vEth0 >/dev/null 2>&1; then
	echo "demo.sh: vEth0 is still there" >&2
	exit 1
fi
echo "vEth0 is gone; kni-gw exited with status $rc"
exit "$rc"
