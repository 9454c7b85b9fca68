#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/) with ASan and runs each for SECONDS on its committed corpus; keeps new coverage and crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS default 60 (0: build and seed only); TARGETs: frame config control pcap
#
# Per target: seeds Fuzz/corpus/TARGET (when it has no files) from the golden captures, configs and a few control
# lines; runs the fuzzer for SECONDS starting from that corpus and Fuzz/regressions/TARGET; merges the corpus and
# what the run found back into Fuzz/corpus/TARGET, minimized (the fewest files that cover every edge covered);
# copies a crash, leak, timeout or out-of-memory input to Fuzz/regressions/TARGET; prints executions per second,
# coverage, corpus size and findings. Exit status 1 when a target found something (commit the inputs: the test
# suite runs them, FuzzRegressionTests), 2 on a usage or build error. One fuzzer runs at a time (one core).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
all_targets=(frame config control pcap)
seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (expected: ${all_targets[*]})" >&2; exit 2; }
done
command -v swift >/dev/null || { echo "fuzz.sh: swift is not on PATH" >&2; exit 2; }
command -v python3 >/dev/null || { echo "fuzz.sh: python3 is needed to seed the corpora" >&2; exit 2; }

# Largest input per target, bytes: an mbuf's data room; a config well past the examples; past the control line
# limit (4096); a few frames of capture.
declare -A max_len=([frame]=2048 [config]=8192 [control]=6144 [pcap]=4096)

scratch="$root/.build-fuzz"
bin="$scratch/debug"
# --sanitize=fuzzer makes SwiftPM link with libFuzzer's main (the targets are -parse-as-library); the later
# -Xswiftc -sanitize=fuzzer,address wins over it for every Swift module (two separate -sanitize= flags keep only
# the last: the libraries would get ASan but no coverage). C code (libyaml) gets both as well.
work="$(mktemp -d "${TMPDIR:-/tmp}/tula-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== building the fuzz targets (debug, checked, ASan + libFuzzer) in .build-fuzz"
rm -f "$scratch/debug.yaml"   # re-plan: SwiftPM misses files added to the main package otherwise
if ! swift build --package-path Fuzz --scratch-path "$scratch" -c debug --sanitize=fuzzer \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=address,fuzzer-no-link \
        >"$work/build.log" 2>&1; then
    grep -E "error:" -A3 "$work/build.log" | head -40 >&2 || tail -40 "$work/build.log" >&2
    echo "fuzz.sh: the build failed (log above)" >&2
    exit 2
fi
tail -1 "$work/build.log"
# Swift's own crash backtracer trips ASan inside a crashed process; libFuzzer and ASan report the crash.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}"

# Seeds, into $work/seeds/TARGET: frames of every golden capture (inputs and expected outputs), the example and
# golden configs and the frame topology, request and response lines, and small captures in each format.
seed() {
    local t="$1" out="$work/seeds/$1"
    mkdir -p "$out"
    python3 - "$t" "$out" <<'PY'
import glob, os, struct, sys
target, out = sys.argv[1], sys.argv[2]
def put(name, data):
    with open(os.path.join(out, name), "wb") as f: f.write(data)
def records(path):
    data = open(path, "rb").read()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    at = 24
    while at + 16 <= len(data):
        sec, frac, cap, orig = struct.unpack(endian + "IIII", data[at:at + 16])
        yield sec, frac, orig, data[at + 16:at + 16 + cap]
        at += 16 + cap
def pcap(recs, magic=0xA1B2C3D4, endian="<", linktype=1):
    body = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, orig, frame in recs:
        body += struct.pack(endian + "IIII", sec, frac, len(frame), orig) + frame
    return body
captures = sorted(glob.glob("pcaps/golden/*.pcap"))
if target == "frame":
    seen = set()
    for path in captures:
        for i, (_, _, _, frame) in enumerate(records(path)):
            if frame not in seen:
                seen.add(frame)
                put("%s-%03d" % (os.path.basename(path)[:-5], i), frame)
elif target == "config":
    for path in sorted(glob.glob("examples/*.yaml") + glob.glob("pcaps/golden/*.yaml")):
        put(os.path.basename(path), open(path, "rb").read())
    src = open("Sources/TulaFuzzing/FrameTarget.swift").read()
    put("frame-topology.yaml", src.split('yaml = """\n')[1].split('"""')[0].replace("\n        ", "\n").lstrip().encode())
elif target == "control":
    lines = ['{"cmd":"stats"}', '{"cmd":"reload"}',
             '{"cmd":"add-backend","vip":"web","address":"10.0.1.14","mac":"02:00:00:00:01:14","weight":1}',
             '{"cmd":"add-backend","vip":"web","address":"10.0.1.15"}',
             '{"cmd":"remove-backend","vip":"web","address":"10.0.1.12"}',
             '{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":0}',
             '{"cmd":"stats","cmd":"reload"}', '{"cmd":"set-weight","vip":"w\\u00e9b","address":"10.0.1.11","weight":-1}',
             '{"ok":true,"message":"done"}', '{"ok":false,"error":"no VIP named \\"x\\""}',
             '{"ok":true,"stats":{"ports":[{"name":"wan","rx_packets":1,"verdicts":{"forwarded-l2":1}}],'
             '"vips":[{"name":"web","backends":[{"address":"10.0.1.11","weight":1,"packets":1}]}],'
             '"flows":{"in_use":1},"neighbors":[{"address":"10.0.1.1","state":"reachable","mac":"02:00:00:00:00:fe"}]},'
             '"control":{"clients":1,"requests":2}}']
    for i, line in enumerate(lines):
        put("line-%02d" % i, (line + "\n").encode())
    put("pipelined", b"\x05" + "\r\n".join(lines[:4]).encode() + b"\n" + b"x" * 70)
elif target == "pcap":
    for path in captures:
        recs = list(records(path))[:3]
        put(os.path.basename(path), pcap(recs))
    recs = list(records("pcaps/golden/l2.in.pcap"))[:2]
    put("nanosecond-big-endian", pcap(recs, 0xA1B23C4D, ">"))
    put("microsecond-big-endian-raw-ip", pcap(recs, 0xA1B2C3D4, ">", 101))
    put("cut-short", pcap(recs)[:-7])
    put("pcapng", b"\x0a\x0d\x0d\x0a" + b"\x00" * 24)
    put("header-only", pcap([]))
PY
}

# Minimizing merge: greedy set cover over edges only (hit counts left out: they tripled the file count of the
# config corpus for no edge more; the fuzzer finds those variations again within seconds).
minimize=(-set_cover_merge=1 -use_counters=0)
logs="$scratch/logs"   # each target's last fuzz, seed and merge log
mkdir -p "$logs"
status=0
summary=()
for t in "${targets[@]}"; do
    corpus="$root/Fuzz/corpus/$t" regressions="$root/Fuzz/regressions/$t"
    mkdir -p "$corpus" "$regressions" "$work/run/$t" "$work/artifacts/$t" "$work/merged/$t"
    fuzzer=("$bin/fuzz-$t" "-max_len=${max_len[$t]}" -timeout=10 -rss_limit_mb=2048)
    dict="$root/Fuzz/$t.dict"
    [ -f "$dict" ] && fuzzer+=("-dict=$dict")
    if [ -z "$(ls -A "$corpus")" ]; then
        echo "== $t: seeding Fuzz/corpus/$t"
        seed "$t"
        "${fuzzer[@]}" "${minimize[@]}" "$corpus" "$work/seeds/$t" >"$logs/seed-$t.log" 2>&1 \
            || { echo "fuzz.sh: seeding $t failed (a seed crashes?):"; tail -30 "$logs/seed-$t.log"; status=1; continue; }
    fi
    found=0
    rm -f "$logs/fuzz-$t.log"
    if [ "$seconds" -gt 0 ]; then
        echo "== $t: fuzzing for $seconds s"
        set +e
        "${fuzzer[@]}" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
            "$work/run/$t" "$corpus" "$regressions" >"$logs/fuzz-$t.log" 2>&1
        rc=$?
        set -e
        for f in "$work/artifacts/$t"/*; do
            [ -e "$f" ] || continue
            cp "$f" "$regressions/"
            echo "   finding: Fuzz/regressions/$t/$(basename "$f")"
            found=$((found + 1))
        done
        if [ "$found" -gt 0 ] || [ "$rc" -ne 0 ]; then
            grep -E "ERROR|Precondition|Fatal error|SUMMARY" "$logs/fuzz-$t.log" | head -5 | sed 's/^/   /'
            [ "$found" -gt 0 ] || { echo "   the fuzzer exited with status $rc and no input: see its log above"; tail -20 "$logs/fuzz-$t.log"; }
            status=1
        fi
        # The committed corpus becomes the fewest files that cover every edge the corpus and the new finds cover.
        "${fuzzer[@]}" "${minimize[@]}" "$work/merged/$t" "$corpus" "$work/run/$t" >"$logs/merge-$t.log" 2>&1 \
            && [ -n "$(ls -A "$work/merged/$t")" ] && { rm -f "$corpus"/*; cp "$work/merged/$t"/* "$corpus"/; } \
            || echo "   merge failed (corpus kept as it was): $(tail -1 "$logs/merge-$t.log")"
    fi
    last=$(grep -E "^#[0-9]+.*cov: " "$logs/fuzz-$t.log" 2>/dev/null | tail -1 || true)
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last"); ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$logs/fuzz-$t.log" 2>/dev/null | tail -1 || true)
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$logs/fuzz-$t.log" 2>/dev/null | tail -1 || true)
    files=$(find "$corpus" -type f | wc -l)
    kib=$(( ($(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}') + 1023) / 1024 ))
    summary+=("$(printf '%-8s %6s s  %8s exec/s  %9s runs  cov %5s  ft %6s  corpus %4s files %5s KiB  findings %s' \
        "$t" "$seconds" "${execs:--}" "${runs:--}" "${cov:--}" "${ft:--}" "$files" "$kib" "$found")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
[ "$status" -eq 0 ] || echo "fuzz.sh: findings (or failures) above; inputs are in Fuzz/regressions/ — commit them with the fix"
exit "$status"
