#!/usr/bin/env bash
# bind_nic.sh - give a NIC to DPDK, and give it back.
#
# Usage:
#   bind_nic.sh status                      network devices, their drivers, which
#                                           are up / have addresses or routes
#   bind_nic.sh bind IFACE|PCI [options]    bind to a DPDK-capable driver
#     --driver vfio-pci|uio_pci_generic|igb_uio   [vfio-pci]
#     --noiommu        allow vfio-pci without an IOMMU (vfio's unsafe no-IOMMU
#                      mode: no DMA isolation; only when you know you need it)
#     --force          bind even an interface that is up with addresses or
#                      routes (the one you may be logged in through)
#   bind_nic.sh restore [IFACE|PCI]         back to the kernel driver it had
#                                           (all devices this script bound
#                                           when none is named)
#   options: --dry-run (print, change nothing), -h/--help
#
# The original driver of each device bound is remembered in a state file
# (KNI_GW_STATE, default /var/lib/kni-gw/bind_nic.state). Uses
# dpdk-devbind.py where it is installed (and no fake tree is in use).
# KNI_GW_SYSFS=DIR (tests): use DIR/sys instead of /sys; modules are then
# not loaded, and binding writes the sysfs files a real bind would write.
set -euo pipefail

prog=bind_nic.sh
root=${KNI_GW_SYSFS:-}
sys=$root/sys
state=${KNI_GW_STATE:-/var/lib/kni-gw/bind_nic.state}
dpdk_drivers="vfio-pci uio_pci_generic igb_uio"

die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

dry=0 force=0 noiommu=0 driver=vfio-pci
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--driver) driver=${2:?--driver needs a name}; shift ;;
	--driver=*) driver=${1#*=} ;;
	--force) force=1 ;;
	--noiommu) noiommu=1 ;;
	--dry-run) dry=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) args+=("$1") ;;
	esac
	shift
done
cmd=${args[0]:-status}

run() { if [ "$dry" = 1 ]; then echo "would run: $*"; else "$@"; fi; }
put() { # value file: what a real bind writes
	if [ "$dry" = 1 ]; then echo "would write $1 to $2"; else printf '%s' "$1" >"$2" || die "cannot write $2"; fi
}

pci_devs() {
	local d
	for d in "$sys"/bus/pci/devices/*; do
		[ -e "$d/class" ] || continue
		case "$(cat "$d/class")" in 0x02*) echo "${d##*/}" ;; esac
	done
}
drv_of() { local l; l=$(readlink "$sys/bus/pci/devices/$1/driver" 2>/dev/null) && echo "${l##*/}" || echo "-"; }
ifaces_of() { ls "$sys/bus/pci/devices/$1/net" 2>/dev/null || true; }
is_dpdk_drv() { case " $dpdk_drivers " in *" $1 "*) return 0 ;; esac; return 1; }

# PCI address of IFACE or PCI (also accepts 01:00.0 for 0000:01:00.0)
resolve() {
	local a=$1 l
	if [ -e "$sys/class/net/$a/device" ]; then
		l=$(readlink "$sys/class/net/$a/device")
		echo "${l##*/}"
		return
	fi
	[[ $a =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && a=0000:$a
	[ -e "$sys/bus/pci/devices/$a" ] || die "no network interface or PCI device '$1' (see: $prog status)"
	echo "$a"
}

# why an interface must not be taken: up, with addresses or routes
in_use() {
	local ifc=$1 why=""
	ip link show dev "$ifc" >/dev/null 2>&1 || return 1
	if ip -o link show dev "$ifc" | grep -q '[<,]UP[,>]'; then
		[ -n "$(ip -o addr show dev "$ifc" scope global 2>/dev/null)" ] && why="has addresses"
		[ -n "$(ip route show dev "$ifc" 2>/dev/null)" ] && why="${why:+$why and }routes"
	fi
	[ -n "$why" ] && echo "$why"
	[ -n "$why" ]
}

status() {
	printf '%-14s %-12s %-18s %-8s %s\n' PCI DRIVER INTERFACE STATE NOTE
	local dev d ifs ifc note
	for dev in $(pci_devs); do
		d=$(drv_of "$dev")
		ifs=$(ifaces_of "$dev")
		[ -n "$ifs" ] || ifs=-
		for ifc in $ifs; do
			note=""
			if is_dpdk_drv "$d"; then
				note="bound to DPDK"
			elif [ "$ifc" != - ] && why=$(in_use "$ifc"); then
				note="in use ($why): bind refuses it without --force"
			fi
			st=-
			if [ "$ifc" != - ]; then
				st=$(ip -br link show dev "$ifc" 2>/dev/null | awk '{print $2}')
			fi
			printf '%-14s %-12s %-18s %-8s %s\n' "$dev" "$d" "$ifc" "${st:--}" "$note"
		done
	done
	echo "DPDK-capable drivers: $(for m in $dpdk_drivers; do
		if [ -d "$sys/bus/pci/drivers/$m" ]; then printf '%s(loaded) ' "$m"; else printf '%s ' "$m"; fi
	done)"
	[ -s "$state" ] && { echo "bound by $prog (restore puts them back):"; sed 's/^/  /' "$state"; }
	return 0
}

iommu_ok() { [ -n "$(ls -A "$sys/kernel/iommu_groups" 2>/dev/null)" ]; }

bind() {
	local target=${args[1]:?bind needs an interface or PCI address} pci cur ifc why
	pci=$(resolve "$target")
	is_dpdk_drv "$driver" || die "--driver $driver: choose one of $dpdk_drivers"
	cur=$(drv_of "$pci")
	[ "$cur" = "$driver" ] && { echo "$prog: $pci is already bound to $driver"; return 0; }
	for ifc in $(ifaces_of "$pci"); do
		if why=$(in_use "$ifc") && [ "$force" = 0 ]; then
			die "refusing $ifc ($pci): it is up and $why; this may be how you reach this machine. Take it down first (ip link set $ifc down) or use --force"
		fi
	done
	if [ "$driver" = vfio-pci ] && ! iommu_ok; then
		[ "$noiommu" = 1 ] || die "no IOMMU groups ($sys/kernel/iommu_groups is empty): enable the IOMMU (intel_iommu=on / amd_iommu=on), use --driver uio_pci_generic, or --noiommu for vfio's unsafe no-IOMMU mode"
		[ -z "$root" ] && run modprobe vfio enable_unsafe_noiommu_mode=1
		put Y "$sys/module/vfio/parameters/enable_unsafe_noiommu_mode"
	fi
	[ -z "$root" ] && { run modprobe "$driver" || die "cannot load module $driver"; }
	if [ "$dry" = 0 ]; then
		mkdir -p "$(dirname "$state")"
		grep -v "^$pci " "$state" 2>/dev/null >"$state.new" || true
		echo "$pci $cur $(ifaces_of "$pci" | tr '\n' ' ')" >>"$state.new"
		mv "$state.new" "$state"
	fi
	if [ -z "$root" ] && command -v dpdk-devbind.py >/dev/null 2>&1; then
		run dpdk-devbind.py --force -b "$driver" "$pci"
	else
		put "$driver" "$sys/bus/pci/devices/$pci/driver_override"
		[ "$cur" != - ] && put "$pci" "$sys/bus/pci/drivers/$cur/unbind"
		put "$pci" "$sys/bus/pci/drivers_probe"
	fi
	[ "$dry" = 1 ] || echo "$prog: $pci bound to $driver (was ${cur}); '$prog restore $pci' undoes it"
}

restore_one() {
	local pci=$1 orig=$2 cur
	cur=$(drv_of "$pci")
	if [ "$orig" = - ]; then
		[ "$cur" != - ] && put "$pci" "$sys/bus/pci/drivers/$cur/unbind"
	elif [ -z "$root" ] && command -v dpdk-devbind.py >/dev/null 2>&1; then
		run dpdk-devbind.py -b "$orig" "$pci"
	else
		put "" "$sys/bus/pci/devices/$pci/driver_override"
		[ "$cur" != - ] && put "$pci" "$sys/bus/pci/drivers/$cur/unbind"
		put "$pci" "$sys/bus/pci/drivers/$orig/bind"
	fi
	[ "$dry" = 1 ] || echo "$prog: $pci back on ${orig}"
}

restore() {
	[ -s "$state" ] || die "nothing to restore: $state is empty (this script bound nothing)"
	local want="" pci orig rest done_any=0
	[ -n "${args[1]:-}" ] && want=$(resolve "${args[1]}")
	while read -r pci orig rest; do
		[ -z "$want" ] || [ "$want" = "$pci" ] || continue
		restore_one "$pci" "$orig"
		done_any=1
	done <"$state"
	[ "$done_any" = 1 ] || die "$want was not bound by this script (see $state)"
	if [ "$dry" = 0 ]; then
		if [ -n "$want" ]; then
			grep -v "^$want " "$state" >"$state.new" || true
			mv "$state.new" "$state"
		else
			: >"$state"
		fi
	fi
}

if [ -z "$root" ] && [ "$(id -u)" != 0 ] && [ "$cmd" != status ] && [ "$dry" = 0 ]; then
	die "must run as root: sudo $0 ${args[*]}"
fi
case "$cmd" in
status) status ;;
bind) bind ;;
restore) restore ;;
*) die "unknown command '$cmd': status, bind or restore (see --help)" ;;
esac
