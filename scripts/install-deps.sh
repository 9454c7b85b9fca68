#!/usr/bin/env bash
# Installs what building, running and testing Tula needs on Debian 12 (as root), only when missing.
set -euo pipefail

packages=(libdpdk-dev dpdk dpdk-dev libnuma-dev libpcap-dev pkg-config tshark tcpdump iproute2 python3-scapy
          curl ethtool procps systemd prometheus bird2 iputils-ping valgrind)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Tula's routing protocol number (VIP host routes on kernel_interface TAPs) by name: `ip route ... proto tula`.
root_dir=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e /etc/iproute2/rt_protos.d/tula.conf ] && [ "$(id -u)" = 0 ]; then
    mkdir -p /etc/iproute2/rt_protos.d && cp "$root_dir/dist/iproute2/tula.conf" /etc/iproute2/rt_protos.d/tula.conf
fi
command -v swift >/dev/null || { echo "install-deps: swift (6.x) is not on PATH" >&2; exit 1; }
# The test bed and the golden-capture generator import scapy: say here, once, which interpreter has it.
root=$(cd "$(dirname "$0")/.." && pwd)
python=$("$root/scripts/find-python.sh" scapy) || exit 1
echo "install-deps: scapy from $python" >&2
