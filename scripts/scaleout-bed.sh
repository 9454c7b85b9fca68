#!/usr/bin/env bash
# Test beds for the kernel exception path and VIP routes (issue 11), in network namespaces; build, check, tear down.
#
# Usage (as root):
#   scripts/scaleout-bed.sh kernel [--report FILE]   one appliance, a peer: ping, TCP, ARP and NDP to the appliance's own
#                                                    address through its kernel_interface; the rate limit; VIP host routes
#                                                    following the health check; everything gone on stop
#   scripts/scaleout-bed.sh down                     tear down every bed of this script, leftovers included
#
#   peer  10.0.9.1/24 2001:db8:9::1/64 ──veth── eth0 of the appliance namespace: DPDK net_af_packet, no kernel address
#                                               Tula's port 10.0.9.2, 2001:db8:9::2, kernel_interface tk0 (a TAP)
#   VIP 10.0.9.100:80/tcp l2 -> 10.0.9.1 (the peer), http health check on the peer's port 8081, probed by the appliance's
#   kernel through tk0: the route 10.0.9.100/32 proto tula on tk0 comes and goes with it.
#
# Every check prints `ok NAME` or `FAIL NAME: why`; a JSON summary goes to --report (default: state dir/report.json).
# Environment: TULA_APPLIANCE=binary (default: .build/debug/tula-appliance); TULABED_STATE (default /run/tulaso).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tula=${TULA_APPLIANCE:-$root/.build/debug/tula-appliance}
state_root=${TULABED_STATE:-/run/tulaso}
prefix=tulaso
bed=$$
report=""
declare -a results=()
declare -A numbers=()
failed=0

say() { printf '== %s\n' "$*"; }
die() { printf 'scaleout-bed: error: %s\n' "$*" >&2; exit 1; }
ns() { echo "$prefix-$bed-$1"; }
in_ns() { local node=$1; shift; ip netns exec "$(ns "$node")" "$@"; }
state() { echo "$state_root/$bed"; }
now() { date +%s.%N; }
since() { awk -v t0="$1" -v t="$(now)" 'BEGIN { printf "%.3f", t - t0 }'; }
running() { local s; s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${s:0:1}" != Z ]; }

# record NAME STATUS [WHY]
record() {
    if [ "$2" = ok ]; then printf 'ok %s\n' "$1"; results+=("\"$1\": true")
    else printf 'FAIL %s: %s\n' "$1" "${3:-}"; results+=("\"$1\": false"); failed=1; fi
}
# expect NAME WHY COMMAND...: ok when COMMAND succeeds.
expect() { local name=$1 why=$2; shift 2; if "$@" >/dev/null 2>&1; then record "$name" ok; else record "$name" fail "$why"; fi; }

teardown() {
    local b=$1
    for pidfile in "$state_root/$b"/*.pid; do
        [ -f "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        if running "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    sleep 0.5
    for pidfile in "$state_root/$b"/*.pid; do
        [ -f "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    for n in $(ip netns list | awk '{print $1}' | grep "^$prefix-$b-" || true); do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
}

down_all() {
    for b in $(ip netns list | awk '{print $1}' | sed -n "s/^$prefix-\([0-9]*\)-.*/\1/p" | sort -u); do
        if [ -f "$state_root/$b/owner" ] && running "$(cat "$state_root/$b/owner")" && [ "$(cat "$state_root/$b/owner")" != $$ ]; then continue; fi
        teardown "$b"
        rm -rf "${state_root:?}/$b"
    done
}

# live EXPR: a value from the running appliance's stats (`s` is the JSON summary); "?" when it cannot.
live() {
    local socket=$1 expr=$2
    "$tula" stats --socket "$socket" --json 2>/dev/null | python3 -c 'import json, sys
s = json.loads(sys.stdin.read())
print(eval(sys.argv[1]))' "$expr" 2>/dev/null || echo "?"
}

# wait_until SECONDS COMMAND...: true once COMMAND succeeds (polled every 50 ms), false after SECONDS.
wait_until() {
    local limit=$1; shift
    local t0; t0=$(now)
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if awk -v e="$(since "$t0")" -v l="$limit" 'BEGIN { exit !(e > l) }'; then return 1; fi
        sleep 0.05
    done
}

start_http() { # start_http NODE ADDRESS PORT NAME
    # Not through in_ns: `&` on a function would fork a subshell, and $! would not be the server.
    ip netns exec "$(ns "$1")" python3 -m http.server "$3" --bind "$2" --directory "$(state)" >/dev/null 2>&1 &
    echo $! >"$(state)/$4.pid"
}
stop_pidfile() { local f="$(state)/$1.pid"; [ -f "$f" ] || return 0; kill -TERM "$(cat "$f")" 2>/dev/null || true; wait "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }

kernel_bed() {
    mkdir -p "$(state)"
    echo $$ >"$(state)/owner"
    [ -n "${KEEP:-}" ] || trap 'teardown $bed; rm -rf "$(state)"' EXIT
    [ -x "$tula" ] || die "no tula-appliance at $tula (swift build, or set TULA_APPLIANCE)"
    [ -e /dev/net/tun ] || die "no /dev/net/tun"
    say "bed $bed: namespaces $(ns peer), $(ns tula)"
    ip netns add "$(ns peer)"; ip netns add "$(ns tula)"
    in_ns peer ip link set lo up; in_ns tula ip link set lo up
    in_ns tula sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
    ip -n "$(ns peer)" link add eth0 type veth peer name eth0 netns "$(ns tula)"
    in_ns peer ip link set eth0 address 02:00:00:00:09:01
    in_ns peer ip addr add 10.0.9.1/24 dev eth0
    in_ns peer ip -6 addr add 2001:db8:9::1/64 dev eth0 nodad
    in_ns peer ip link set eth0 up
    in_ns peer ethtool -K eth0 tx off >/dev/null
    # Tula's DPDK port: no kernel address, no IPv6 in the kernel on it.
    in_ns tula sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    in_ns tula ip link set eth0 up
    cat >"$(state)/tula.yaml" <<EOF
ports:
  - name: wan
    device: "net_af_packet0,iface=eth0"
    address: 10.0.9.2
    mac: "02:00:00:00:09:02"
    address6: "2001:db8:9::2"
    kernel_interface: tk0
    kernel_prefix_length: 24
    kernel_prefix_length6: 64
    kernel_rate: 500
    kernel_burst: 50
workers: 1
poll: adaptive
flows_per_worker: 4096
stats_socket: $(state)/tula.sock
vips:
  - name: web
    address: 10.0.9.100
    port: 80
    protocol: tcp
    mode: l2
    health_check: {type: http, port: 8081, path: /, interval: 1, timeout: 1, rise: 1, fall: 1}
    backends:
      - {address: 10.0.9.1, mac: "02:00:00:00:09:01"}
EOF
    echo hello >"$(state)/index.html"
    start_http peer 10.0.9.1 8081 peer-health
    local t0; t0=$(now)
    ip netns exec "$(ns tula)" "$tula" run --config "$(state)/tula.yaml" --json -- --file-prefix "$prefix-$bed" \
        >"$(state)/tula.json" 2>"$(state)/tula.log" &
    echo $! >"$(state)/tula.pid"
    wait_until 60 in_ns tula ip link show tk0 up || die "no tk0 within 60 s: $(tail -5 "$(state)/tula.log")"
    wait_until 30 test -S "$(state)/tula.sock" || die "no stats socket: $(tail -5 "$(state)/tula.log")"
    say "tula up with tk0 after $(since "$t0") s"

    sleep 0.3
    local link; link=$(in_ns tula ip -o link show tk0)
    local addrs; addrs=$(in_ns tula ip -o addr show dev tk0)
    expect tap-has-port-mac "tk0: $link" grep -q "02:00:00:00:09:02" <<<"$link"
    expect tap-has-port-mtu "tk0: $link" grep -q "mtu 1500" <<<"$link"
    expect tap-has-port-address "tk0: $addrs" grep -q "10.0.9.2/24" <<<"$addrs"
    expect tap-has-port-address6 "tk0: $addrs" grep -q "2001:db8:9::2/64" <<<"$addrs"
    expect tap-has-no-link-local "tk0: $addrs" bash -c "! grep -q fe80 <<<'$addrs'"

    expect ping-own-address "ping 10.0.9.2 from the peer failed" in_ns peer ping -c 3 -i 0.2 -W 2 10.0.9.2
    local rtt; rtt=$(in_ns peer ping -c 20 -i 0.05 -W 1 10.0.9.2 2>/dev/null | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
    numbers[ping_rtt_avg_ms]=${rtt:-null}
    say "ping through the exception path (adaptive poll): avg rtt ${rtt:-?} ms"
    expect ping6-own-address "ping 2001:db8:9::2 from the peer failed" in_ns peer ping -6 -c 3 -i 0.2 -W 2 2001:db8:9::2
    start_http tula 10.0.9.2 8080 tula-http
    expect tcp-to-own-address "curl http://10.0.9.2:8080/ from the peer failed" \
        wait_until 5 in_ns peer curl -sf -m 2 -o /dev/null http://10.0.9.2:8080/index.html
    start_http tula 2001:db8:9::2 8082 tula-http6
    expect tcp6-to-own-address "curl http://[2001:db8:9::2]:8082/ from the peer failed" \
        wait_until 5 in_ns peer curl -sfg -m 2 -o /dev/null "http://[2001:db8:9::2]:8082/index.html"
    local neigh; neigh=$(in_ns tula ip neigh show dev tk0)
    expect kernel-learned-peer-by-arp "tk0 neighbours: $neigh" grep -q "10.0.9.1 lladdr 02:00:00:00:09:01" <<<"$neigh"
    local peer_neigh; peer_neigh=$(in_ns peer ip neigh show dev eth0)
    expect peer-learned-appliance-mac "peer neighbours: $peer_neigh" grep -q "10.0.9.2 lladdr 02:00:00:00:09:02" <<<"$peer_neigh"

    # VIP routes follow the health check (probes leave the appliance's kernel through tk0).
    expect route-for-healthy-vip "no 10.0.9.100 proto tula on tk0: $(in_ns tula ip route show proto tula)" \
        wait_until 5 bash -c "ip netns exec $(ns tula) ip route show dev tk0 proto tula | grep -q '^10.0.9.100 '"
    local t1; t1=$(now)
    stop_pidfile peer-health
    if wait_until 5 bash -c "! ip netns exec $(ns tula) ip route show dev tk0 proto tula | grep -q '^10.0.9.100 '"; then
        numbers[route_withdraw_seconds]=$(since "$t1"); record route-gone-when-backend-fails ok
    else record route-gone-when-backend-fails fail "route still there 5 s after the backend stopped"; fi
    start_http peer 10.0.9.1 8081 peer-health
    expect route-back-when-backend-recovers "no route 5 s after the backend came back" \
        wait_until 5 bash -c "ip netns exec $(ns tula) ip route show dev tk0 proto tula | grep -q '^10.0.9.100 '"

    # The rate limit: a burst of 5000 UDP datagrams to the appliance's own address; the kernel gets at most the bucket.
    local before; before=$(live "$(state)/tula.sock" "s['ports'][0]['to_kernel']")
    local t2; t2=$(now)
    in_ns peer python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5000): s.sendto(b"x" * 32, ("10.0.9.2", 9))'
    local flood; flood=$(since "$t2")
    sleep 0.5
    local after dropped
    after=$(live "$(state)/tula.sock" "s['ports'][0]['to_kernel']")
    dropped=$(live "$(state)/tula.sock" "s['ports'][0]['kernel_dropped']")
    numbers[flood_seconds]=$flood; numbers[flood_to_kernel]=$((after - before)); numbers[flood_kernel_dropped]=$dropped
    say "flood of 5000 in ${flood} s: $((after - before)) to the kernel, $dropped dropped by the bucket (500/s, burst 50)"
    local allowed; allowed=$(awk -v f="$flood" 'BEGIN { printf "%d", 50 + 500 * (f + 0.6) + 20 }')
    expect rate-limit-drops "kernel_dropped $dropped" test "$dropped" -gt 0
    expect rate-limit-bounds-to-kernel "$((after - before)) to kernel > $allowed" test "$((after - before))" -le "$allowed"
    expect kernel-still-answers-after-flood "ping after the flood failed" in_ns peer ping -c 2 -i 0.3 -W 2 10.0.9.2

    # Counters add up while running.
    local balance; balance=$(live "$(state)/tula.sock" "all(p['rx_packets'] == p['forwarded'] + p['replied'] + p['to_control'] + p['dropped'] for p in s['ports'])")
    expect counters-balance "rx != forwarded + replied + to_control + dropped" test "$balance" = True
    local from; from=$(live "$(state)/tula.sock" "s['ports'][0]['from_kernel']")
    numbers[from_kernel]=$from
    expect from-kernel-counted "from_kernel $from" test "$from" -gt 0
    local metrics; metrics=$("$tula" stats --socket "$(state)/tula.sock" --prometheus 2>/dev/null || true)
    [ -n "$metrics" ] && expect kernel-metrics "no tula_port_to_kernel_packets_total" grep -q tula_port_to_kernel_packets_total <<<"$metrics"

    # Stop: the TAP goes, and the routes with it.
    stop_pidfile tula
    expect tap-gone-on-stop "tk0 still exists" bash -c "! ip netns exec $(ns tula) ip link show tk0"
    expect routes-gone-on-stop "tula routes left: $(in_ns tula ip route show proto tula 2>&1)" \
        bash -c "[ -z \"\$(ip netns exec $(ns tula) ip route show proto tula)\" ]"
    expect summary-printed "no JSON summary" grep -q '^{' "$(state)/tula.json"
    write_report
}

write_report() {
    local file=${report:-$(state)/report.json}
    local nums=""
    for k in "${!numbers[@]}"; do nums+="\"$k\": ${numbers[$k]}, "; done
    printf '{"checks": {%s}, "numbers": {%s}, "passed": %s}\n' "$(IFS=,; echo "${results[*]}")" "${nums%, }" \
        "$([ $failed = 0 ] && echo true || echo false)" >"$file"
    cat "$file"
}

command=${1:-kernel}; shift || true
while [ $# -gt 0 ]; do
    case $1 in
    --report) report=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (namespaces, veth, TAP)"
case $command in
kernel) kernel_bed ;;
down) down_all ;;
*) die "usage: $0 kernel|down [--report FILE]" ;;
esac
exit $failed
