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
# Environment: POLL=busy|adaptive for the kernel bed's appliance (default adaptive, to compare latencies);
# TULA_APPLIANCE=binary (default: .build/debug/tula-appliance); TULABED_STATE (default /run/tulaso).
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
    # Tula keeps serving 1 s after SIGTERM (withdraw grace) before it stops.
    local waited=0
    for pidfile in "$state_root/$b"/*.pid; do
        [ -f "$pidfile" ] || continue
        while running "$(cat "$pidfile")" && [ $waited -lt 40 ]; do sleep 0.1; waited=$((waited + 1)); done
    done
    for pidfile in "$state_root/$b"/*.pid; do
        [ -f "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    for n in $(ip netns list | awk '{print $1}' | grep "^$prefix-$b-" || true); do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
    # The appliances' EAL runtime directories (--file-prefix), which EAL leaves behind.
    rm -rf "/var/run/dpdk/$prefix-$b" "/var/run/dpdk/$prefix-$b-"*
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
poll: ${POLL:-adaptive}
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
    start_appliance tula
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
    say "ping through the exception path (poll ${POLL:-adaptive}): avg rtt ${rtt:-?} ms"
    # The worker's own wake-up: a ping to the VIP is answered by the (adaptive, mostly sleeping) worker itself.
    local vrtt; vrtt=$(in_ns peer ping -c 40 -i 0.05 -W 1 10.0.9.100 2>/dev/null | sed -n 's|.*= \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\)/.*|\2 \3|p')
    numbers[vip_ping_rtt_avg_ms]=${vrtt%% *}; numbers[vip_ping_rtt_max_ms]=${vrtt##* }
    [ -n "$vrtt" ] || { numbers[vip_ping_rtt_avg_ms]=null; numbers[vip_ping_rtt_max_ms]=null; }
    say "ping to the VIP (answered by the worker, poll ${POLL:-adaptive}): avg/max ${vrtt:-?} ms"
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

# ---------------------------------------------------------------------------------------------------------------
# The scale-out bed: a router with BIRD 2 (two BGP neighbours, ECMP with L4 hashing), two Tula appliances each with its
# own BIRD speaking BGP (and BFD) to the router through Tula's port and kernel_interface, three Linux backends, a client
# behind the router.
#
#   client 10.0.8.10 ── router 10.0.8.1 | 10.0.1.1 ──┐ bridge (lan)
#                       a1 10.0.1.2 (Tula, tk0) ──────┤   VIP 10.0.1.100:80 l2 -> b1 b2   (http health check)
#                       a2 10.0.1.3 (Tula, tk0) ──────┤   VIP 10.0.1.101:80 l2 -> b3      (http health check)
#                       b1 .11  b2 .12  b3 .13 ───────┘   backends: VIPs on lo, default route via the router (DSR)
router_conf() {
    cat <<EOF
router id 10.0.1.1;
log stderr all;
protocol device { scan time 10; }
protocol kernel {
    ipv4 { import none; export all; };
    merge paths on;
}
protocol bfd {
    interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
template bgp appliance {
    local 10.0.1.1 as 65000;
    hold time 3;
    keepalive time 1;
    connect retry time 2;
    error wait time 1, 10;
    bfd on;
    ipv4 { import all; export none; };
}
protocol bgp a1 from appliance { neighbor 10.0.1.2 as 65001; }
protocol bgp a2 from appliance { neighbor 10.0.1.3 as 65001; }
EOF
}

appliance_yaml() { # appliance_yaml NAME ADDRESS MAC
    cat <<EOF
ports:
  - name: wan
    device: "net_af_packet0,iface=eth0"
    address: $2
    mac: "$3"
    kernel_interface: tk0
    kernel_prefix_length: 24
workers: 1
poll: adaptive
flows_per_worker: 16384
flow_idle_timeout: 120
stats_socket: $(state)/$1.sock
vips:
  - name: web
    address: 10.0.1.100
    port: 80
    protocol: tcp
    mode: l2
    health_check: {type: http, port: 80, path: /, interval: 1, timeout: 1, rise: 1, fall: 1}
    backends:
      - {address: 10.0.1.11, mac: "02:00:00:00:01:11"}
      - {address: 10.0.1.12, mac: "02:00:00:00:01:12"}
  - name: other
    address: 10.0.1.101
    port: 80
    protocol: tcp
    mode: l2
    health_check: {type: http, port: 80, path: /, interval: 1, timeout: 1, rise: 1, fall: 1}
    backends:
      - {address: 10.0.1.13, mac: "02:00:00:00:01:13"}
EOF
}

start_appliance() { # start_appliance NAME
    ip netns exec "$(ns "$1")" "$tula" run --config "$(state)/$1.yaml" --json -- --file-prefix "$prefix-$bed-$1" \
        >"$(state)/$1.json" 2>>"$(state)/$1.log" &
    echo $! >"$(state)/$1.pid"
}
start_bird() { # start_bird NODE CONFIG
    ip netns exec "$(ns "$1")" bird -f -c "$2" -s "$(state)/$1.ctl" -P "$(state)/$1-bird.pidfile" >"$(state)/$1-bird.log" 2>&1 &
    echo $! >"$(state)/$1-bird.pid"
}
# nexthops VIP: how many next hops the router has for VIP/32 (0 when no route).
nexthops() {
    local r; r=$(ip -n "$(ns router)" route show "$1/32" proto bird 2>/dev/null)
    if [ -z "$r" ]; then echo 0; elif grep -q nexthop <<<"$r"; then grep -c "nexthop via" <<<"$r"; else echo 1; fi
}
has_nexthops() { [ "$(nexthops "$1")" = "$2" ]; }
forwarded() { live "$(state)/$1.sock" "s['ports'][0]['forwarded']"; }

scaleout_bed() {
    mkdir -p "$(state)"
    echo $$ >"$(state)/owner"
    [ -n "${KEEP:-}" ] || trap 'teardown $bed; rm -rf "$(state)"' EXIT
    [ -x "$tula" ] || die "no tula-appliance at $tula"
    command -v bird >/dev/null || die "no bird (apt-get install bird2; scripts/install-deps.sh does)"
    local nodes=(lan router client a1 a2 b1 b2 b3)
    say "bed $bed: namespaces $(ns '*')"
    for n in "${nodes[@]}"; do
        ip netns add "$(ns "$n")"
        in_ns "$n" ip link set lo up
        in_ns "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    in_ns lan ip link add br0 type bridge
    in_ns lan ip link set br0 up
    declare -A addr=([router]=10.0.1.1 [b1]=10.0.1.11 [b2]=10.0.1.12 [b3]=10.0.1.13)
    declare -A hw=([router]=02:00:00:00:00:01 [a1]=02:00:00:00:00:02 [a2]=02:00:00:00:00:03
                   [b1]=02:00:00:00:01:11 [b2]=02:00:00:00:01:12 [b3]=02:00:00:00:01:13)
    for n in router a1 a2 b1 b2 b3; do
        in_ns lan ip link add "p-$n" type veth peer name eth0 netns "$(ns "$n")"
        in_ns lan ip link set "p-$n" master br0 up
        in_ns "$n" ip link set eth0 address "${hw[$n]}"
        if [ -n "${addr[$n]:-}" ]; then in_ns "$n" ip addr add "${addr[$n]}/24" dev eth0; fi
        in_ns "$n" ip link set eth0 up
    done
    ip -n "$(ns router)" link add eth1 type veth peer name eth0 netns "$(ns client)"
    in_ns router ip addr add 10.0.8.1/24 dev eth1; in_ns router ip link set eth1 up
    in_ns client ip addr add 10.0.8.10/24 dev eth0; in_ns client ip link set eth0 up
    in_ns client ip route add default via 10.0.8.1
    in_ns router sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
    # Backends: the VIPs on lo, no ARP for them, replies straight to the client through the router.
    for n in b1 b2 b3; do
        in_ns "$n" ip addr add 10.0.1.100/32 dev lo
        in_ns "$n" ip addr add 10.0.1.101/32 dev lo
        in_ns "$n" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
        in_ns "$n" ip route add default via 10.0.1.1
        mkdir -p "$(state)/www-$n"
        echo "$n" >"$(state)/www-$n/index.html"
        head -c 400000 /dev/zero >"$(state)/www-$n/big.bin"
        ip netns exec "$(ns "$n")" python3 -m http.server 80 --directory "$(state)/www-$n" >/dev/null 2>&1 &
        echo $! >"$(state)/http-$n.pid"
    done
    in_ns client ethtool -K eth0 tx off >/dev/null
    in_ns router ethtool -K eth0 tx off >/dev/null
    in_ns router ethtool -K eth1 tx off >/dev/null
    router_conf >"$(state)/router-bird.conf"
    start_bird router "$(state)/router-bird.conf"
    appliance_yaml a1 10.0.1.2 02:00:00:00:00:02 >"$(state)/a1.yaml"
    appliance_yaml a2 10.0.1.3 02:00:00:00:00:03 >"$(state)/a2.yaml"
    for a in a1 a2; do
        "$tula" bird-config --config "$(state)/$a.yaml" --peer 10.0.1.1 --asn 65001 --peer-asn 65000 --bfd >"$(state)/$a-bird.conf" \
            || die "bird-config failed for $a"
        bird -p -c "$(state)/$a-bird.conf" || die "bird refuses the generated config of $a"
    done
    local t0; t0=$(now)
    for a in a1 a2; do start_appliance "$a"; done
    for a in a1 a2; do
        wait_until 60 ip -n "$(ns "$a")" link show tk0 up || die "$a: no tk0: $(tail -5 "$(state)/$a.log")"
        start_bird "$a" "$(state)/$a-bird.conf"
    done
    # (a) the router has both VIPs with two next hops.
    if wait_until 60 has_nexthops 10.0.1.100 2 && wait_until 10 has_nexthops 10.0.1.101 2; then
        numbers[start_to_ecmp_seconds]=$(since "$t0"); record router-has-two-next-hops ok
    else
        record router-has-two-next-hops fail "router: $(ip -n "$(ns router)" route show proto bird | tr '\n' ' ') a1 bird: $(tail -3 "$(state)/a1-bird.log")"
        write_report; return
    fi
    say "ECMP after $(since "$t0") s: $(ip -n "$(ns router)" route show 10.0.1.100/32 | tr '\n\t' '  ')"

    # (b) many client source ports: every request answered, both appliances carry traffic.
    local f1 f2 ok=0
    f1=$(forwarded a1); f2=$(forwarded a2)
    for i in $(seq 1 40); do
        if in_ns client curl -sf -m 2 -o /dev/null "http://10.0.1.100/"; then ok=$((ok + 1)); fi
    done
    local d1=$(( $(forwarded a1) - f1 )) d2=$(( $(forwarded a2) - f2 ))
    numbers[curl_ok_of_40]=$ok; numbers[a1_forwarded]=$d1; numbers[a2_forwarded]=$d2
    say "40 requests: $ok answered; a1 forwarded $d1 packets, a2 $d2"
    expect curl-through-ecmp "$ok of 40 answered" test "$ok" = 40
    expect both-appliances-carry-traffic "a1 $d1, a2 $d2" test "$d1" -gt 0 -a "$d2" -gt 0

    # (d) every backend of VIP web fails a1's health checks (a1's kernel cannot reach them): a1 withdraws only web.
    in_ns a1 ip route add blackhole 10.0.1.11/32
    in_ns a1 ip route add blackhole 10.0.1.12/32
    if wait_until 10 has_nexthops 10.0.1.100 1; then record unhealthy-vip-withdrawn-by-one-appliance ok
    else record unhealthy-vip-withdrawn-by-one-appliance fail "web has $(nexthops 10.0.1.100) next hops"; fi
    expect other-vip-keeps-two-next-hops "other has $(nexthops 10.0.1.101) next hops" has_nexthops 10.0.1.101 2
    expect vip-still-served-by-the-other "curl failed" in_ns client curl -sf -m 2 -o /dev/null "http://10.0.1.100/"
    in_ns a1 ip route del blackhole 10.0.1.11/32
    in_ns a1 ip route del blackhole 10.0.1.12/32
    expect vip-back-when-healthy-again "web has $(nexthops 10.0.1.100) next hops" wait_until 10 has_nexthops 10.0.1.100 2
    # Every backend up on both appliances again before the next part: flows pinned while a1 saw only some backends
    # would not be where a2's Maglev table sends them (the documented limit of minimal disruption).
    all_up() { [ "$(live "$(state)/$1.sock" "all(b['health'] == 'up' for v in s['vips'] for b in v['backends'])")" = True ]; }
    if wait_until 10 all_up a1 && wait_until 10 all_up a2; then record all-backends-up-again ok
    else record all-backends-up-again fail "a1 or a2 still sees a backend down"; fi

    # (c) long-lived downloads (rate-limited, ~8 s each) on many source ports, and a prober that opens a connection every
    # 20 ms; then a1 is stopped (SIGTERM): its routes go, the router moves its flows to a2, which picks the same backends.
    local downloads=()
    for i in $(seq 1 12); do
        ip netns exec "$(ns client)" curl -sS -o /dev/null -w '%{http_code} %{size_download}' --limit-rate 50k -m 40 \
            "http://10.0.1.100/big.bin" >"$(state)/dl-$i.out" 2>"$(state)/dl-$i.err" &
        downloads+=($!)
    done
    ip netns exec "$(ns client)" python3 -c '
import socket, time, sys
end = time.time() + float(sys.argv[1]); last_ok = time.time(); gap = 0.0; fails = 0
while time.time() < end:
    t = time.time()
    try:
        s = socket.create_connection(("10.0.1.100", 80), timeout=0.5); s.close()
        gap = max(gap, time.time() - last_ok); last_ok = time.time()
    except OSError:
        fails += 1
    time.sleep(max(0, 0.02 - (time.time() - t)))
print("%.3f %d" % (gap, fails))' 9 >"$(state)/prober.out" &
    local prober=$!
    sleep 2
    local f2b; f2b=$(forwarded a2)
    local t1; t1=$(now)
    kill -TERM "$(cat "$(state)/a1.pid")"
    if wait_until 10 has_nexthops 10.0.1.100 1; then numbers[stop_to_route_gone_seconds]=$(since "$t1")
    else numbers[stop_to_route_gone_seconds]=null; fi
    wait "$(cat "$(state)/a1.pid")" 2>/dev/null || true
    rm -f "$(state)/a1.pid"
    wait "$prober" || true
    local complete=0 broken=0
    for pid in "${downloads[@]}"; do wait "$pid" || true; done
    for i in $(seq 1 12); do
        if [ "$(cat "$(state)/dl-$i.out" 2>/dev/null)" = "200 400000" ]; then complete=$((complete + 1)); else broken=$((broken + 1)); fi
    done
    local gap="" fails=""
    read -r gap fails <"$(state)/prober.out" || true
    numbers[client_gap_seconds]=${gap:-null}; numbers[prober_failures]=${fails:-null}
    numbers[downloads_complete_of_12]=$complete
    local moved=$(( $(forwarded a2) - f2b ))
    numbers[a2_forwarded_after_stop]=$moved
    say "a1 stopped: route gone after ${numbers[stop_to_route_gone_seconds]} s; longest gap for new connections ${gap:-?} s ($fails failed); $complete of 12 downloads complete; a2 forwarded $moved since"
    expect router-withdrew-stopped-appliance "web has $(nexthops 10.0.1.100) next hops" has_nexthops 10.0.1.100 1
    expect long-lived-connections-survive "$broken of 12 downloads broken: $(cat "$(state)"/dl-*.out | tr '\n' ' ')" test "$broken" = 0
    expect summary-of-stopped-appliance "no JSON summary from a1" grep -q '^{' "$(state)/a1.json"
    # The downloads really crossed a1 before it stopped (else surviving proves nothing).
    local a1_total; a1_total=$(python3 -c 'import json, sys
s = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1]); print(s["ports"][0]["forwarded"])' "$(state)/a1.json" 2>/dev/null || echo 0)
    numbers[a1_forwarded_total]=$a1_total
    expect downloads-crossed-stopped-appliance "a1 forwarded $a1_total packets in all (the 40 requests alone were ~$d1)" \
        test "$a1_total" -gt $((d1 + 200))

    # (e) a1 comes back: two next hops again.
    local t2; t2=$(now)
    start_appliance a1
    if wait_until 60 has_nexthops 10.0.1.100 2; then numbers[restart_to_two_next_hops_seconds]=$(since "$t2"); record appliance-back-two-next-hops ok
    else record appliance-back-two-next-hops fail "web has $(nexthops 10.0.1.100) next hops: $(tail -3 "$(state)/a1-bird.log")"; fi

    # (f) a crash (SIGKILL: no withdrawal by Tula): the kernel removes the TAP and its routes, BIRD withdraws.
    local t3; t3=$(now)
    kill -KILL "$(cat "$(state)/a1.pid")"
    if wait_until 10 has_nexthops 10.0.1.100 1; then numbers[crash_to_route_gone_seconds]=$(since "$t3"); record crash-withdraws-routes ok
    else record crash-withdraws-routes fail "web has $(nexthops 10.0.1.100) next hops 10 s after SIGKILL"; fi
    expect vip-served-after-crash "curl failed" in_ns client curl -sf -m 2 -o /dev/null "http://10.0.1.100/"
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
scale-out) scaleout_bed ;;
down) down_all ;;
*) die "usage: $0 kernel|scale-out|down [--report FILE]" ;;
esac
exit $failed
