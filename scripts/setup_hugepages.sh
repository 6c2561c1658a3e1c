#!/usr/bin/env bash
# setup_hugepages.sh - reserve hugepages for kni-gw (DPDK) and mount hugetlbfs.
#
# Usage:
#   setup_hugepages.sh SIZE                 reserve SIZE in total (512M, 2G, ...)
#   setup_hugepages.sh --pages N            reserve N pages
#   options:
#     -p, --pagesize 2M|1G    page size [2M]
#     -n, --node N            reserve on NUMA node N only [spread over all nodes]
#     -m, --mount DIR         hugetlbfs mount point [/dev/hugepages, or
#                             /dev/hugepages1G for 1G pages]
#     --no-mount              do not mount hugetlbfs
#     --show                  show reservations and mounts, change nothing
#     --clear                 release every reserved page (of --pagesize, or all)
#     --dry-run               print what would be done, change nothing
#     -h, --help              this help
#
# Idempotent: asking again for what is already reserved and mounted changes
# nothing. Uses dpdk-hugepages.py where it is installed (and no fake tree is
# in use), else writes sysfs directly.
# KNI_GW_SYSFS=DIR (tests): read and write DIR/sys/... and DIR/proc/mounts
# instead of the real ones; nothing is mounted then.
set -euo pipefail

prog=setup_hugepages.sh
root=${KNI_GW_SYSFS:-}
sys_mm=$root/sys/kernel/mm/hugepages
sys_node=$root/sys/devices/system/node
mounts=$root/proc/mounts
[ -n "$root" ] && mounts=$root/proc/mounts || mounts=/proc/mounts

die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

size='' pages='' pagesize=2M node='' mnt='' do_mount=1 action=reserve dry=0
while [ $# -gt 0 ]; do
	case "$1" in
	-p | --pagesize) pagesize=${2:?--pagesize needs a value}; shift ;;
	--pagesize=*) pagesize=${1#*=} ;;
	-n | --node) node=${2:?--node needs a value}; shift ;;
	--node=*) node=${1#*=} ;;
	-m | --mount) mnt=${2:?--mount needs a directory}; shift ;;
	--mount=*) mnt=${1#*=} ;;
	--pages) pages=${2:?--pages needs a number}; shift ;;
	--pages=*) pages=${1#*=} ;;
	--no-mount) do_mount=0 ;;
	--show) action=show ;;
	--clear) action=clear ;;
	--dry-run) dry=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) [ -z "$size" ] || die "one SIZE only (got $size and $1)"; size=$1 ;;
	esac
	shift
done

# size in kB of a "512M", "2G", "1048576K" or bare-bytes string
to_kb() {
	local v=$1 n u
	[[ $v =~ ^([0-9]+)([KkMmGgTt]?)[Bb]?$ ]] || die "bad size '$v' (e.g. 512M, 2G)"
	n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]^^}
	case "$u" in
	K) echo "$n" ;; M) echo $((n * 1024)) ;; G) echo $((n * 1024 * 1024)) ;;
	T) echo $((n * 1024 * 1024 * 1024)) ;; "") echo $((n / 1024)) ;;
	esac
}

page_kb=$(to_kb "$pagesize")
pdir=hugepages-${page_kb}kB
if [ -z "$mnt" ]; then
	mnt=/dev/hugepages
	[ "$page_kb" = 1048576 ] && mnt=/dev/hugepages1G
fi

nodes() {
	if [ -d "$sys_node" ]; then
		for n in "$sys_node"/node[0-9]*; do
			[ -d "$n" ] && echo "${n##*/node}"
		done | sort -n
	fi
}

# nr_hugepages file for a node, or the global one
nr_file() {
	if [ -n "${1:-}" ]; then
		echo "$sys_node/node$1/hugepages/$pdir/nr_hugepages"
	else
		echo "$sys_mm/$pdir/nr_hugepages"
	fi
}

# hugetlbfs mounted at DIR for this page size (no pagesize= option: the default size)
mounted_at() {
	awk -v d="$1" -v ps="$2" -v dflt="$3" '$2 == d && $3 == "hugetlbfs" {
		if ($4 ~ ("pagesize=" ps)) found=1
		else if ($4 !~ /pagesize=/ && dflt) found=1
	} END {exit !found}' "$mounts" 2>/dev/null
}

show() {
	local d n f
	echo "page size  node  reserved  free"
	for d in "$sys_mm"/hugepages-*; do
		[ -d "$d" ] || continue
		n=${d##*/hugepages-}
		if [ -n "$(nodes)" ]; then
			for f in $(nodes); do
				local nf=$sys_node/node$f/hugepages/${d##*/}
				[ -f "$nf/nr_hugepages" ] || continue
				printf '%-10s %-5s %-9s %s\n' "$n" "$f" "$(cat "$nf/nr_hugepages")" \
					"$(cat "$nf/free_hugepages" 2>/dev/null || echo ?)"
			done
		else
			printf '%-10s %-5s %-9s %s\n' "$n" "-" "$(cat "$d/nr_hugepages")" "$(cat "$d/free_hugepages" 2>/dev/null || echo ?)"
		fi
	done
	echo "hugetlbfs mounts:"
	awk '$3 == "hugetlbfs" {print "  " $2 " (" $4 ")"}' "$mounts" 2>/dev/null || true
}

run() {
	if [ "$dry" = 1 ]; then
		echo "would run: $*"
	else
		"$@"
	fi
}

write() { # value file
	if [ "$dry" = 1 ]; then
		echo "would write $1 to $2"
	else
		echo "$1" >"$2" 2>/dev/null || die "cannot write $2"
	fi
}

if [ "$action" = show ]; then
	show
	exit 0
fi

[ -z "$root" ] && [ "$(id -u)" != 0 ] && [ "$dry" = 0 ] && die "must run as root: sudo $0 $*"
[ -d "$sys_mm/$pdir" ] || die "page size $pagesize is not supported by this CPU/kernel (no $sys_mm/$pdir)"
if [ -n "$node" ]; then
	[ -d "$sys_node/node$node" ] || die "no NUMA node $node (nodes: $(nodes | tr '\n' ' '))"
	[ -f "$(nr_file "$node")" ] || die "node $node has no $pagesize pages"
fi

# dpdk-hugepages.py does the real work where installed (real sysfs only)
helper=
if [ -z "$root" ] && command -v dpdk-hugepages.py >/dev/null 2>&1; then
	helper=dpdk-hugepages.py
fi

if [ "$action" = clear ]; then
	if [ -n "$helper" ]; then
		run "$helper" --clear
	else
		for f in "$sys_mm"/hugepages-*/nr_hugepages "$sys_node"/node*/hugepages/hugepages-*/nr_hugepages; do
			[ -f "$f" ] && write 0 "$f"
		done
	fi
	[ "$dry" = 1 ] || echo "$prog: hugepages released"
	exit 0
fi

# reserve
if [ -n "$pages" ]; then
	[[ $pages =~ ^[0-9]+$ ]] || die "--pages takes a whole number"
	[ -z "$size" ] || die "give SIZE or --pages, not both"
elif [ -n "$size" ]; then
	pages=$(( ($(to_kb "$size") + page_kb - 1) / page_kb ))
else
	die "give a size (e.g. $prog 512M) or --pages N (see --help)"
fi

nlist=$node
[ -n "$nlist" ] || nlist=$(nodes)
if [ -z "$nlist" ]; then
	# no NUMA information: the global counter
	if [ -n "$helper" ]; then
		run "$helper" -p "$pagesize" --reserve "$((pages * page_kb))K"
	else
		write "$pages" "$(nr_file)"
	fi
	want_total=$pages
else
	count=$(echo "$nlist" | wc -w)
	want_total=0
	i=0
	for n in $nlist; do
		share=$((pages / count + (i < pages % count ? 1 : 0)))
		i=$((i + 1))
		want_total=$((want_total + share))
		if [ -n "$helper" ]; then
			run "$helper" -p "$pagesize" -n "$n" --reserve "$((share * page_kb))K"
		else
			write "$share" "$(nr_file "$n")"
		fi
	done
fi

if [ "$do_mount" = 1 ] && [ -z "$root" ]; then
	default_ps=0
	grep -q "^Hugepagesize: *$page_kb kB" "$root/proc/meminfo" 2>/dev/null && default_ps=1
	if ! mounted_at "$mnt" "$pagesize" "$default_ps"; then
		run mkdir -p "$mnt"
		run mount -t hugetlbfs -o "pagesize=$pagesize" nodev "$mnt"
	fi
fi

[ "$dry" = 1 ] && exit 0

# what the kernel really gave (it may give fewer when memory is fragmented)
got=0
if [ -z "$nlist" ]; then
	got=$(cat "$(nr_file)")
	got=${got:-0}
else
	for n in $nlist; do
		v=$(cat "$(nr_file "$n")")
		got=$((got + ${v:-0}))
	done
fi
if [ "$got" -lt "$want_total" ]; then
	die "asked for $want_total $pagesize pages, the kernel reserved $got"
fi
echo "$prog: $got pages of $pagesize reserved ($((got * page_kb / 1024)) MiB)$([ "$do_mount" = 1 ] && [ -z "$root" ] && echo ", hugetlbfs at $mnt")"
