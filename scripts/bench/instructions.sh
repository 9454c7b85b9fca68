#!/usr/bin/env bash
# Instructions per packet of Tula's own per-frame work (callgrind): exact, unlike cycles, on any machine.
#
# Usage: scripts/bench/instructions.sh BINARY [l2|l3] [SECONDS]     (as root; valgrind from Debian's package)
#
# Runs `BINARY run` under callgrind on a preloaded capture of 100 000 frames over 1 000 flows (synth, the bench
# config) for SECONDS (default 20), stops it with SIGINT, and divides the worker loop's own instructions
# (runWorker's self cost: the per-frame code is inlined into it; the pcap driver's functions are not) by the
# frames it received. Valgrind 3.19 cannot read Swift's DWARF 5, so a copy stripped of debug info is measured.
# Compare two binaries by running this on each: the figure does not drift with the machine's load.
set -euo pipefail
binary=$1 mode=${2:-l2} seconds=${3:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind >/dev/null || { echo "instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/tula" && strip --strip-debug "$work/tula"
"$work/tula" synth --config "$root/benchmarks/bench.yaml" --flows 1000 --packets 100000 --payload 6 --mode "$mode" \
    --out "$work/in.pcap" >/dev/null
sed -e "s|^\(    device:\).*|\1 \"net_pcap0,rx_pcap=$work/in.pcap,infinite_rx=1\"|" \
    -e "s|^flows_per_worker:.*|flows_per_worker: 4096|" -e "s|^workers:.*|workers: 1|" \
    -e '/^stats_socket:/d' "$root/benchmarks/bench.yaml" >"$work/bench.yaml"
echo "stats_socket: $work/tula.sock" >>"$work/bench.yaml"
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$work/tula" run --config "$work/bench.yaml" --json \
    -- --no-huge --file-prefix "tula-cg-$$" >"$work/summary.json" 2>"$work/valgrind.log" &
pid=$!
sleep "$seconds"
kill -INT "$pid"
wait "$pid" || { tail -20 "$work/valgrind.log" >&2; exit 1; }
rm -rf "/var/run/dpdk/tula-cg-$$"
frames=$(grep '^{' "$work/summary.json" | tail -1 | sed -E 's/.*"rx_packets":([0-9]+).*/\1/')
own=$(callgrind_annotate "$work/cg.out" 2>/dev/null | grep 'runWorker' | head -1 | awk '{gsub(",", "", $1); print $1}')
[ -n "$frames" ] && [ "$frames" -gt 0 ] && [ -n "$own" ] || { echo "instructions: no frames or no runWorker in the profile" >&2; exit 1; }
awk -v own="$own" -v frames="$frames" -v mode="$mode" \
    'BEGIN { printf "%s: %.1f instructions per packet in the worker loop (%.0f frames, %.0f instructions)\n", mode, own / frames, frames, own }'
