#!/usr/bin/env bash
# The README's first command: installs what is missing, builds Tula, and replays the bundled capture
# (pcaps/demo.pcap) through the bundled config (examples/streaming-dsr.yaml), printing what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-examples/streaming-dsr.yaml}
capture=${2:-pcaps/demo.pcap}
mkdir -p out
output=out/$(basename "$capture" .pcap).out.pcap

scripts/install-deps.sh
scripts/hugepages.sh reserve 512 --owner demo || echo "demo: going on without hugepages (Tula runs with --no-huge)" >&2
trap 'scripts/hugepages.sh release --owner demo' EXIT

echo "== building tula-appliance (release)" >&2
swift build -c release --product tula-appliance 2>&1 | grep -E 'error|warning: |Compiling tula|Build complete' >&2 || true
binary=$(swift build -c release --show-bin-path)/tula-appliance

echo "== replaying $capture through $config" >&2
"$binary" replay --config "$config" --in "$capture" --out "$output"

if command -v tshark >/dev/null; then
    echo "== the first frames Tula sent ($output):"
    tshark -r "$output" -c 8 -T fields -E separator=' ' -e frame.number -e eth.dst -e ip.src -e ip.dst -e _ws.col.Protocol -e _ws.col.Info 2>/dev/null \
        | sed 's/^/  /'
fi
