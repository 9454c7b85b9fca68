#!/usr/bin/env bash
# Instructions per packet of Tula's own per-frame work (callgrind): exact, unlike cycles, on any machine.
#
# Usage: scripts/bench/instructions.sh [--json] BINARY CASE [SECONDS]     (as root; valgrind from Debian's package)
#
# CASE is a bench case of `make bench`: l2, l3, l2-v6, l3-v6 or l2-prefix, i.e. the VIP `bench-CASE` of
# benchmarks/bench.yaml. Runs `BINARY run` under callgrind on a preloaded capture of 100 000 frames over 1 000
# flows (synth, the bench config, to that VIP) for SECONDS (default 20), stops it with SIGINT, and divides Tula's
# own instructions by the frames it received: the self cost of runWorker (the fast path is inlined into it) and
# of the worker loop's out-of-line functions (declined frames, control-plane hand-offs, outer fragments, the
# control-frame ring), plus that of the data path's out-of-line functions (TulaDatapath: processFrame for what
# the fast path declines, the IPv6 path, new-flow pinning). Not counted: the pcap driver, and what runs once
# (the table build, the exit summary), so the figure does not depend on how many frames a run got through. Valgrind 3.19 cannot read Swift's DWARF 5, so a copy stripped of debug
# info is measured. Compare two binaries by running this on each: the figure does not drift with the machine's load.
#
# Output: one sentence on stdout; with --json instead one JSON object on one line,
#   {"case": "l2", "instructions_per_packet": 430.62, "frames": …, "instructions": …, "seconds": 20}
# (what `make bench BENCH_INSTRUCTIONS=1` and the InstructionBudget test read).
set -euo pipefail
json=0
[ "${1:-}" = --json ] && { json=1; shift; }
[ $# -ge 2 ] || { echo "usage: $0 [--json] BINARY l2|l3|l2-v6|l3-v6|l2-prefix [SECONDS]" >&2; exit 2; }
binary=$1 case=$2 seconds=${3:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
grep -Eq "^  - name: bench-$case( |\$)" "$root/benchmarks/bench.yaml" \
    || { echo "instructions: no VIP bench-$case in benchmarks/bench.yaml (cases: l2 l3 l2-v6 l3-v6 l2-prefix)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/tula" && strip --strip-debug "$work/tula"
"$work/tula" synth --config "$root/benchmarks/bench.yaml" --flows 1000 --packets 100000 --payload 6 \
    --vip "bench-$case" --out "$work/in.pcap" >/dev/null
sed -e "s|^\(    device:\).*|\1 \"net_pcap0,rx_pcap=$work/in.pcap,infinite_rx=1\"|" \
    -e "s|^flows_per_worker:.*|flows_per_worker: 4096|" -e "s|^workers:.*|workers: 1|" \
    -e '/^stats_socket:/d' "$root/benchmarks/bench.yaml" >"$work/bench.yaml"
echo "stats_socket: $work/tula.sock" >>"$work/bench.yaml"
valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$work/cg.out" "$work/tula" run --config "$work/bench.yaml" --json \
    -- --no-huge --file-prefix "tula-cg-$$" >"$work/summary.json" 2>"$work/valgrind.log" &
pid=$!
# The measured time starts once the appliance says it is ready (startup under valgrind takes a while, and a
# SIGINT before the signal handlers are in place would be lost).
for _ in $(seq 1 1200); do grep -q "ready:" "$work/valgrind.log" && break; sleep 0.5; done
grep -q "ready:" "$work/valgrind.log" || { echo "instructions: not ready after 600 s" >&2; kill -KILL "$pid"; tail -5 "$work/valgrind.log" >&2; exit 1; }
sleep "$seconds"
kill -INT "$pid"
for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$pid" 2>/dev/null; then
    echo "instructions: still running 60 s after SIGINT; killed" >&2; kill -KILL "$pid"; tail -20 "$work/valgrind.log" >&2; exit 1
fi
wait "$pid" || { tail -20 "$work/valgrind.log" >&2; exit 1; }
rm -rf "/var/run/dpdk/tula-cg-$$"
frames=$(grep '^{' "$work/summary.json" | tail -1 | sed -E 's/.*"rx_packets":([0-9]+).*/\1/')
# Self cost per function (mangled names): the worker loop's functions (runWorker, with the fast path inlined, and
# what it calls out of line per frame or per poll) and the data path module's, but not the ones that run once: the
# table build (TulaTables' extension of DataplaneTables) and the verdict names the exit summary prints.
own=$(callgrind_annotate --threshold=100 "$work/cg.out" 2>/dev/null | awk '
    { name = ""; for (i = 2; i <= NF; i++) if ($i ~ /^[^ ]*:\$s/) { name = $i; sub(/^[^:]*:/, "", name) } }
    name ~ /^\$s7TulaPMD(9runWorker|13declinedFrame|13handToControl|18emitOuterFragments|17sendControlFrames)/ ||
    (name ~ /^\$s12TulaDatapath/ && name !~ /DataplaneTablesV0aD0E|VerdictO(4name|11description|6isDrop)/) {
        gsub(",", "", $1); if ($1 ~ /^[0-9]+$/) sum += $1 }
    END { print sum + 0 }')
[ -n "$frames" ] && [ "$frames" -gt 0 ] && [ -n "$own" ] || { echo "instructions: no frames or no runWorker in the profile" >&2; exit 1; }
if [ "$json" = 1 ]; then
    awk -v own="$own" -v frames="$frames" -v c="$case" -v s="$seconds" 'BEGIN {
        printf "{\"case\": \"%s\", \"instructions_per_packet\": %.2f, \"frames\": %.0f, \"instructions\": %.0f, \"seconds\": %s}\n",
            c, own / frames, frames, own, s }'
else
    awk -v own="$own" -v frames="$frames" -v c="$case" 'BEGIN {
        printf "%s: %.1f instructions per packet in the worker loop (%.0f frames, %.0f instructions)\n", c, own / frames, frames, own }'
fi
