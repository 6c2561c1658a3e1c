#!/usr/bin/env bash
# Installs everything kni-gw needs on a fresh Debian 12 machine, then kni-gw
# itself into ./.venv, and links /usr/local/bin/kni-gw (and the host scripts
# as /usr/local/sbin/kni-gw-setup-hugepages, kni-gw-bind-nic). Safe to run again.
#
#   sudo scripts/install.sh            # system packages + kni-gw
#   sudo scripts/install.sh --no-apt   # only (re)build and install kni-gw
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
apt=1
for a in "$@"; do
	case "$a" in
	--no-apt) apt=0 ;;
	-h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "install.sh: unknown option $a (see --help)" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" != 0 ]; then
	echo "install.sh: must run as root: sudo $0" >&2
	exit 1
fi

# DPDK 22.11 and its headers, a compiler, Python with venv, and the tools the
# demo and the tests drive (iproute2, ping, pkill, tcpdump, dig, testpmd,
# dnsperf, shellcheck, clang with libFuzzer for the fuzz test, BIRD and FRR
# for the routing daemon tests, NSD as the reference DNS server of the
# differential test and the DNS benchmark, tmux for what a terminal shows).
pkgs=(dpdk dpdk-dev libdpdk-dev pkg-config gcc libc6-dev make
	python3 python3-venv python3-dev
	iproute2 iputils-ping procps psmisc tcpdump bind9-dnsutils kmod ethtool shellcheck util-linux dnsperf
	clang-14 libclang-rt-14-dev bird2 frr systemd nsd tmux)
if [ "$apt" = 1 ]; then
	missing=()
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "install.sh: installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null
		# NSD is only the tests' oracle, started by them in a namespace: the
		# package's own service would hold port 53 on this host
		if [[ " ${missing[*]} " == *" nsd "* ]]; then
			systemctl disable --now nsd >/dev/null 2>&1 || true
		fi
	fi
fi

pkg-config --atleast-version=22.11 libdpdk || {
	echo "install.sh: DPDK >= 22.11 not found by pkg-config (libdpdk-dev)" >&2
	exit 1
}

py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3)
if [ ! -x "$top/.venv/bin/python" ]; then
	"$py" -m venv "$top/.venv"
fi
"$top/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "${top}[test]"
ln -sf "$top/.venv/bin/kni-gw" /usr/local/bin/kni-gw
mkdir -p /usr/local/sbin /usr/local/share/doc/kni-gw
ln -sf "$top/scripts/setup_hugepages.sh" /usr/local/sbin/kni-gw-setup-hugepages
ln -sf "$top/scripts/bind_nic.sh" /usr/local/sbin/kni-gw-bind-nic
ln -sf "$top/README.md" /usr/local/share/doc/kni-gw/README.md
echo "install.sh: kni-gw $("$top/.venv/bin/python" -c 'import kni_gw; print(kni_gw.__version__)') ready ($top/.venv/bin/kni-gw, linked from /usr/local/bin/kni-gw)"
