#!/usr/bin/env bash
# The DSR test bed: Tula, a client and three Linux backends in network namespaces; build, check end to end, tear down.
#
# Usage (as root):
#   scripts/testbed.sh [run] [--report FILE]   build the bed, run every check, tear it down; exit 1 if a check fails
#   scripts/testbed.sh up                      build the bed and leave it running, to explore by hand
#   scripts/testbed.sh server stop|start bN    stop or start backend N's HTTP server (Tula's health check follows)
#   scripts/testbed.sh down                    tear down every bed, including leftovers of crashed runs
#   scripts/testbed.sh scale-out [--report F]  two appliances announcing their VIPs over BGP (BIRD 2) to an ECMP router:
#                                              scripts/scaleout-bed.sh scale-out (README "Several appliances")
#
# The bed (every address is inside namespaces this script creates; nothing touches the host's own network):
#
#   client 10.0.1.10 ──┐
#   b1     10.0.1.11 ──┤                        VIP 10.0.1.100:80/tcp  l2 (MAC rewrite) -> b1 b2 b3, http health check
#   b2     10.0.1.12 ──┤                        VIP 10.0.1.200:80/tcp  l3 (IP-in-IP)    -> 10.0.1.21 10.0.1.22 via gw
#   b3     10.0.1.13 ──┼── bridge br0 (lan)     VIP 10.0.1.150:80/tcp  l2               -> 10.0.1.99 (nobody: never resolves)
#   gw     10.0.1.1  ──┤  (the l3 next hop; it answers ARP but does not route: this kernel has no ipip module anyway)
#   tula   10.0.1.2  ──┤  DPDK net_af_packet on the tula namespace's eth0 (no kernel address)
#          10.0.1.3  ──┘  eth1 in the same namespace: the kernel's interface the health probes leave from
#
# IPv6 on the same segment (2001:db8:1::/64; client ::10, b1..b3 ::11..::13, gw ::1, Tula's address6 ::2, eth1 ::3):
#   VIP [2001:db8:1::100]:80/tcp  l2   -> b1 b2 b3 (their IPv6 addresses), http health check over IPv6
#   VIP [2001:db8:1::200]:80/tcp  l3   -> 2001:db8:1::21 ::22 via gw (6in6)   } checked on the wire: this kernel has no
#   VIP 10.0.1.201:80/tcp         l3   -> 2001:db8:1::21 ::22 via gw (4in6)   } ip6_tunnel (CONFIG_IPV6_TUNNEL) either
# The client resolves the IPv6 VIPs from Tula's neighbor advertisements, Tula resolves the backends and gateway6 by
# neighbor solicitation: no static neighbor entry and no MAC in the config.
#
# Backends are set up with `tula-appliance backend-setup --apply` and checked with `tula-appliance doctor` (for both VIPs);
# each runs Python's http.server serving its own name at / and a 1 MiB file at /1mb.bin, on IPv4 and (a second server) on
# IPv6. No MAC is configured: Tula resolves the backends and the gateway by ARP and neighbor discovery from its port addresses.
#
# Environment: TULA_APPLIANCE=path to use a built binary (default: `swift build` the debug tula-appliance);
# PYTHON=interpreter with scapy (default: the one scripts/find-python.sh finds); TULABED_STATE=directory for bed state (default /run/tulabed).
set -euo pipefail
# The scale-out scenario has a bed of its own (a router, two appliances, BIRD): its script runs it.
if [ "${1:-}" = scale-out ]; then shift; exec "$(dirname "$0")/scaleout-bed.sh" scale-out "$@"; fi

root=$(cd "$(dirname "$0")/.." && pwd)
state_root=${TULABED_STATE:-/run/tulabed}
python=${PYTHON:-}                  # chosen by preflight (scripts/find-python.sh)
prefix=tulabed                      # every namespace of a bed is named tulabed-<id>-<node>

vip_l2=10.0.1.100
vip_l3=10.0.1.200
vip_nobody=10.0.1.150               # an l2 VIP whose only backend is an address nobody has
nobody=10.0.1.99
tula_address=10.0.1.2
probe_address=10.0.1.3              # the kernel interface (eth1) of Tula's namespace, where health probes come from
probe_mac=02:00:00:00:00:03
backends=(b1 b2 b3)
l3_backends=(10.0.1.21 10.0.1.22)
nodes=(client b1 b2 b3 gw tula)
declare -A address=([client]=10.0.1.10 [b1]=10.0.1.11 [b2]=10.0.1.12 [b3]=10.0.1.13 [gw]=10.0.1.1)
# IPv6: the nodes with an address6 have IPv6 enabled (the others, and Tula's DPDK eth0, keep it off).
vip6_l2=2001:db8:1::100
vip6_l3=2001:db8:1::200             # 6in6
vip_4in6=10.0.1.201                 # an IPv4 VIP with IPv6 l3 backends: 4in6
tula_address6=2001:db8:1::2
probe_address6=2001:db8:1::3
l3_backends6=(2001:db8:1::21 2001:db8:1::22)
declare -A address6=([client]=2001:db8:1::10 [b1]=2001:db8:1::11 [b2]=2001:db8:1::12 [b3]=2001:db8:1::13 [gw]=2001:db8:1::1)
declare -A mac=([client]=02:00:00:00:00:10 [b1]=02:00:00:00:01:11 [b2]=02:00:00:00:01:12 [b3]=02:00:00:00:01:13
                [gw]=02:00:00:00:00:fe [tula]=02:00:00:00:00:02)
file_bytes=1048576                  # the download: 1 MiB
requests=30                         # requests that must reach every backend
max_appliance_share=10              # percent: appliance bytes against bytes the client received
check_interval=1 check_rise=2 check_fall=2   # the l2 VIP's health check (seconds, probes in a row)
check_slack=2                       # seconds allowed beyond interval x fall (or rise) for a state change
settle=1                            # seconds from Tula's log line to the new tables in the workers, at most (see below)

# ---------------------------------------------------------------------------------------------------------------------
# Output and checks

passed=0
failed=0
report=""
nobody_curl="" nobody_drops=""      # curl's exit status for the VIP whose backend never resolves, and the drops it caused
say() { printf '== %s\n' "$*"; }
die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

# record NAME PASS|FAIL DETAIL: prints one result line and appends it to the report (tab-separated) when asked for one.
record() {
    printf '%-5s %-40s %s\n' "$2" "$1" "$3"
    if [ "$2" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    if [ -n "$report" ]; then printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$report"; fi
}

# expect NAME DETAIL 'CONDITION': records PASS when the condition (shell code, evaluated here: quote it so that it reads
# the caller's variables when evaluated, never their contents as code) succeeds, FAIL otherwise.
expect() {
    if eval "$3"; then record "$1" PASS "$2"; else record "$1" FAIL "$2"; fi
}

# ---------------------------------------------------------------------------------------------------------------------
# Namespaces and bed state

ns() { echo "$prefix-$bed-$1"; }                      # the namespace of node $1 in this bed
in_ns() { local node=$1; shift; ip netns exec "$(ns "$node")" "$@"; }
# spawn NODE COMMAND...: starts COMMAND in NODE in the background; $! is then its pid (ip netns exec execs it).
spawn() { local node=$1; shift; ip netns exec "$(ns "$node")" "$@" & }
state() { echo "$state_root/$bed"; }

# The ids of every bed that has a namespace or a state directory.
all_beds() {
    { ip netns list | awk '{print $1}' | sed -n "s/^$prefix-\([0-9]*\)-.*/\1/p"
      ls "$state_root" 2>/dev/null || true; } | sort -u
}

# Whether bed $1 is in use: its owner (this script in `run`, Tula with file prefix tulabed-<id> after `up`) is alive.
bed_alive() {
    local owner
    owner=$(cat "$state_root/$1/owner" 2>/dev/null) || return 1
    running "$owner" && grep -qaE "testbed|$prefix-$1" "/proc/$owner/cmdline" 2>/dev/null
}

# Stops every process in bed $1's namespaces (Tula, servers, tcpdump: all started by this script), deletes the namespaces
# and removes DPDK's runtime and hugepage files of its file prefix and the state directory.
teardown_bed() {
    local id=$1 tula_pid namespaces pids
    tula_pid=$(cat "$state_root/$id/tula.pid" 2>/dev/null || true)
    if [ -n "$tula_pid" ]; then stop_pid "$tula_pid"; fi
    namespaces=$(ip netns list | awk '{print $1}' | grep "^$prefix-$id-" || true)
    for n in $namespaces; do
        pids=$(ip netns pids "$n" 2>/dev/null || true)
        for pid in $pids; do stop_pid "$pid"; done
        ip netns delete "$n" 2>/dev/null || true
    done
    rm -rf "/var/run/dpdk/$prefix-$id"
    awk '$3 == "hugetlbfs" {print $2}' /proc/mounts | while read -r dir; do rm -f "$dir/$prefix-${id}map_"*; done
    rm -rf "${state_root:?}/$id"
    rmdir "$state_root" 2>/dev/null || true
}

# Whether process $1 runs (an exited child of this shell stays a zombie until reaped: that counts as gone).
running() { local s; s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${s:0:1}" != Z ]; }

# stop_pid PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do running "$1" || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

# Tears down the beds whose owner is gone (a crashed or killed run).
clean_stale() {
    for id in $(all_beds); do
        if ! bed_alive "$id"; then say "removing the stale bed $id"; teardown_bed "$id"; fi
    done
}

# ---------------------------------------------------------------------------------------------------------------------
# Building the bed

preflight() {
    [ "$(id -u)" = 0 ] || die "the test bed needs root (network namespaces, veth pairs, DPDK)"
    for tool in ip bridge sysctl curl ethtool tcpdump; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs what the bed needs)"
    done
    resolve_python
    if [ -z "${TULA_APPLIANCE:-}" ]; then
        say "building tula-appliance (swift build)"
        local log
        log=$(mktemp)
        if ! (cd "$root" && swift build --product tula-appliance >"$log" 2>&1); then
            tail -20 "$log" >&2
            rm -f "$log"
            die "swift build failed"
        fi
        tail -1 "$log" | sed 's/^/   /'
        rm -f "$log"
    fi
    tula=${TULA_APPLIANCE:-$root/.build/debug/tula-appliance}
    [ -x "$tula" ] || die "no tula-appliance at $tula"
}

# The interpreter itself (find-python.sh resolves pyenv's shims), so that a server's pid is the one `spawn` reports.
resolve_python() { python=$("$root/scripts/find-python.sh" scapy) || die "no Python with scapy (see above)"; }

# Namespaces, the bridge, one veth pair per node (eth0 in the node, p-<node> on the bridge), addresses, MACs and sysctls.
build_bed() {
    say "bed $bed: namespaces $(ns '*') (state in $(state))"
    mkdir -p "$(state)"
    echo "$$" >"$(state)/owner"
    for node in lan "${nodes[@]}"; do
        ip netns add "$(ns "$node")"
        # A fresh host: IPv6 only where the bed gives an IPv6 address (so not on the bridge nor on Tula's DPDK eth0), no
        # routing, the kernel's default ARP behaviour whatever the host has.
        local v6off=1
        if [ -n "${address6[$node]:-}" ]; then v6off=0; fi
        in_ns "$node" sysctl -qw net.ipv6.conf.all.disable_ipv6=$v6off net.ipv6.conf.default.disable_ipv6=$v6off 2>/dev/null || true
        in_ns "$node" sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0 \
            net.ipv4.conf.default.arp_ignore=0 net.ipv4.conf.default.arp_announce=0
        in_ns "$node" ip link set lo up
    done
    in_ns lan ip link add br0 type bridge
    in_ns lan ip link set br0 up
    for node in "${nodes[@]}"; do
        in_ns lan ip link add "p-$node" type veth peer name eth0 netns "$(ns "$node")"
        in_ns lan ip link set "p-$node" master br0 up
        in_ns "$node" ip link set eth0 address "${mac[$node]}"
        if [ -n "${address[$node]:-}" ]; then in_ns "$node" ip addr add "${address[$node]}/24" dev eth0; fi
        # nodad: the address is usable at once (duplicate address detection would hold it tentative for a second).
        if [ -n "${address6[$node]:-}" ]; then in_ns "$node" ip -6 addr add "${address6[$node]}/64" dev eth0 nodad; fi
        in_ns "$node" ip link set eth0 up
    done
    # Tula's namespace also gets a kernel interface on the segment, for the health probes (they go through the kernel's
    # stack; DPDK keeps eth0 to itself, which has no address). arp_ignore=1 keeps the kernel from answering ARP for
    # 10.0.1.3 on eth0 (Tula's port), arp_announce=2 makes its own requests come from eth1's address.
    in_ns tula sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    in_ns lan ip link add p-tula-k type veth peer name eth1 netns "$(ns tula)"
    in_ns lan ip link set p-tula-k master br0 up
    in_ns tula ip link set eth1 address "$probe_mac"
    in_ns tula ip addr add "$probe_address/24" dev eth1
    # IPv6 on eth1 only (the probes to the IPv6 backends); eth0, Tula's, stays without IPv6 in the kernel.
    in_ns tula sysctl -qw net.ipv6.conf.eth1.disable_ipv6=0
    in_ns tula ip -6 addr add "$probe_address6/64" dev eth1 nodad
    in_ns tula ip link set eth1 up
    # Frames the client's kernel leaves for the NIC to checksum reach Tula's AF_PACKET socket with a partial TCP checksum,
    # and Tula forwards them untouched: checksum in software, as a real NIC would have.
    in_ns client ethtool -K eth0 tx off >/dev/null
    for node in "${nodes[@]}"; do
        printf '   %-6s %-9s %-14s %s  eth0 in %s\n' "$node" "${address[$node]:-$tula_address}" "${address6[$node]:-$tula_address6}" \
            "${mac[$node]}" "$(ns "$node")"
    done
    printf '   %-6s %-9s %-14s %s  eth1 in %s (kernel side, for health probes)\n' tula "$probe_address" "$probe_address6" \
        "$probe_mac" "$(ns tula)"
}

# The http health check both l2 VIPs of the bed use (YAML lines of a VIP).
health_check_yaml() {
    printf '    health_check:\n      type: http\n      path: /\n      interval: %s\n      timeout: 1\n      rise: %s\n      fall: %s' \
        "$check_interval" "$check_rise" "$check_fall"
}

# The Tula config of the bed: the af_packet port on the tula namespace's eth0, the l2 VIP over b1..b3 with an http
# health check, the l3 VIP, and an l2 VIP whose backend nobody has; then the IPv6 VIPs (l2 over b1..b3's IPv6 addresses
# with an http health check, 6in6 and 4in6). No MACs: the backends and the gateways are resolved.
write_config() {
    local file
    file=$(state)/tula.yaml
    {
        cat <<EOF
# The test bed's Tula: one af_packet port on the bed's segment (its MAC is the interface's own), two l2 VIPs and an
# l3 VIP, then the IPv6 ones. No backend MAC, no gateway_mac, no gateway6_mac: Tula resolves them by ARP and neighbor
# discovery from its port addresses.
ports:
  - name: bed
    device: "net_af_packet0,iface=eth0"
    address: $tula_address
    gateway: ${address[gw]}
    address6: $tula_address6
    gateway6: ${address6[gw]}
workers: 1
flows_per_worker: 65536
stats_socket: $(state)/tula.sock
vips:
  - name: web-l2
    address: $vip_l2
    port: 80
    protocol: tcp
    mode: l2
$(health_check_yaml)
    backends:
EOF
        for b in "${backends[@]}"; do printf '      - address: %s\n' "${address[$b]}"; done
        cat <<EOF
  - name: web-l3
    address: $vip_l3
    port: 80
    protocol: tcp
    mode: l3
    backends:
EOF
        for a in "${l3_backends[@]}"; do printf '      - address: %s\n' "$a"; done
        cat <<EOF
  - name: nobody-l2
    address: $vip_nobody
    port: 80
    protocol: tcp
    mode: l2
    backends:
      - address: $nobody
  - name: web6-l2
    address: $vip6_l2
    port: 80
    protocol: tcp
    mode: l2
$(health_check_yaml)
    backends:
EOF
        for b in "${backends[@]}"; do printf '      - address: %s\n' "${address6[$b]}"; done
        for vip in "web6-l3 $vip6_l3" "web-4in6 $vip_4in6"; do
            cat <<EOF
  - name: ${vip% *}
    address: ${vip#* }
    port: 80
    protocol: tcp
    mode: l3
    backends:
EOF
            for a in "${l3_backends6[@]}"; do printf '      - address: %s\n' "$a"; done
        done
    } >"$file"
    "$tula" check-config --config "$file" >/dev/null || die "the bed's config is refused"
}

# ---------------------------------------------------------------------------------------------------------------------
# Backends

# doctor NODE [VIP [ARGS...]]: runs `tula-appliance doctor` for VIP (default: the IPv4 l2 VIP) in NODE; sets
# doctor_output and doctor_status.
doctor() {
    local node=$1 vip=${2:-$vip_l2}
    shift $(($# < 2 ? $# : 2))
    doctor_status=0
    doctor_output=$(in_ns "$node" "$tula" doctor --vip "$vip" "$@" 2>&1) || doctor_status=$?
}

# The problem lines of the last doctor run, one per line, without the `problem` column.
doctor_problems() { grep '^problem' <<<"$doctor_output" | sed 's/^problem *//' || true; }

# indent NODE TEXT: prints TEXT with each line prefixed by the node's name.
indent() { printf '%s\n' "$2" | sed "s/^/   $1: /"; }

# Checks each fresh backend with doctor, sets it up with backend-setup --apply exactly as the guide says, checks again.
setup_backends() {
    say "backends: doctor on fresh hosts, then tula-appliance backend-setup --vip $vip_l2 --mode l2 --apply in each"
    local fresh="" applied="" healthy="" problems output status
    for b in "${backends[@]}"; do
        doctor "$b"
        problems=$(doctor_problems)
        if [ "$doctor_status" = 1 ] && grep -q "VIP $vip_l2 is not on lo" <<<"$problems" \
            && grep -q '^arp_ignore must be' <<<"$problems" && grep -q '^arp_announce must be' <<<"$problems" \
            && [ "$(wc -l <<<"$problems")" = 3 ]; then fresh+="$b "; else indent "$b" "$doctor_output"; fi
        status=0
        output=$(in_ns "$b" "$tula" backend-setup --vip "$vip_l2" --mode l2 --apply 2>&1) || status=$?
        if [ "$status" = 0 ] && [ "$(grep -c '^run ' <<<"$output")" = 3 ]; then
            applied+="$b "
            indent "$b" "$(grep '^run ' <<<"$output")"
        else
            indent "$b" "$output"
        fi
        doctor "$b"
        if [ "$doctor_status" = 0 ]; then healthy+="$b "; else indent "$b" "$doctor_output"; fi
    done
    expect doctor-flags-fresh-backends "VIP missing on lo, arp_ignore and arp_announce named with fixes on: ${fresh:-none}" \
        '[ "$fresh" = "b1 b2 b3 " ]'
    expect backend-setup-apply "3 commands run on: ${applied:-none}" '[ "$applied" = "b1 b2 b3 " ]'
    expect doctor-passes-after-setup "exit 0, only ok lines on: ${healthy:-none}" '[ "$healthy" = "b1 b2 b3 " ]'
    setup_backends6
}

# The same for the IPv6 VIP: on a fresh host (IPv6 on) the only problem is the VIP missing on lo, and backend-setup runs
# the one command `ip -6 addr add VIP/128 dev lo nodad`: no sysctl (Linux answers a neighbor solicitation only for an
# address of the interface it arrived on, so the VIP on lo is never advertised on eth0; no ARP-style suppression needed).
setup_backends6() {
    say "backends: doctor for $vip6_l2, then tula-appliance backend-setup --vip $vip6_l2 --mode l2 --apply in each"
    local fresh="" applied="" healthy="" problems output status want="ip -6 addr add $vip6_l2/128 dev lo nodad"
    for b in "${backends[@]}"; do
        doctor "$b" "$vip6_l2"
        problems=$(doctor_problems)
        if [ "$doctor_status" = 1 ] && [ "$problems" = "the VIP $vip6_l2 is not on lo: the kernel drops the packets Tula sends for it" ]
        then fresh+="$b "; else indent "$b" "$doctor_output"; fi
        status=0
        output=$(in_ns "$b" "$tula" backend-setup --vip "$vip6_l2" --mode l2 --apply 2>&1) || status=$?
        if [ "$status" = 0 ] && [ "$(grep '^run ' <<<"$output")" = "run      $want" ]; then
            applied+="$b "
            indent "$b" "$(grep '^run ' <<<"$output")"
        else
            indent "$b" "$output"
        fi
        doctor "$b" "$vip6_l2"
        if [ "$doctor_status" = 0 ]; then healthy+="$b "; else indent "$b" "$doctor_output"; fi
    done
    expect doctor6-flags-fresh-backends "only the IPv6 VIP missing on lo (no ARP/NDP sysctl) named on: ${fresh:-none}" \
        '[ "$fresh" = "b1 b2 b3 " ]'
    expect backend-setup6-apply "exactly \`$want\` run on: ${applied:-none}" '[ "$applied" = "b1 b2 b3 " ]'
    expect doctor6-passes-after-setup "exit 0, only ok lines on: ${healthy:-none}" '[ "$healthy" = "b1 b2 b3 " ]'
}

# server start|stop NODE: the backend's HTTP server (stopping it is how the bed takes a backend down for its health check).
server() {
    local action=$1 node=$2 www=$(state)/www/$2 pidfile=$(state)/$2.server.pid
    case $action in
    stop)
        if [ -f "$pidfile" ]; then stop_pid "$(cat "$pidfile")"; rm -f "$pidfile"; fi ;;
    start)
        spawn "$node" "$python" -m http.server 80 --bind 0.0.0.0 --directory "$www" >"$(state)/$node.server.log" 2>&1
        echo $! >"$pidfile"
        for _ in $(seq 100); do
            if in_ns "$node" curl -s -o /dev/null -m 1 "http://${address[$node]}/"; then return 0; fi
            sleep 0.1
        done
        die "the HTTP server of $node did not start: $(tail -3 "$(state)/$node.server.log")" ;;
    *) die "server: expected start or stop, not '$action'" ;;
    esac
}

# server6 start NODE: the backend's IPv6 HTTP server, a second process (IPV6_V6ONLY, so the IPv4 one keeps its own
# socket and `server stop` takes a backend out of the IPv4 VIP only), serving the same directory on [::]:80.
server6() {
    local node=$2 www=$(state)/www/$2 pidfile=$(state)/$2.server6.pid
    spawn "$node" "$python" -c '
import functools, http.server, socket, sys
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()
Server(("::", 80), functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])).serve_forever()
' "$www" >"$(state)/$node.server6.log" 2>&1
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        if in_ns "$node" curl -s -g -o /dev/null -m 1 "http://[${address6[$node]}]/"; then return 0; fi
        sleep 0.1
    done
    die "the IPv6 HTTP server of $node did not start: $(tail -3 "$(state)/$node.server6.log")"
}

# Each backend serves its own name at / and the same 1 MiB of random bytes at /1mb.bin, on IPv4 and IPv6.
start_servers() {
    say "backends: python3 -m http.server on port 80 in each, serving its name and a 1 MiB file"
    head -c "$file_bytes" /dev/urandom >"$(state)/1mb.bin"
    for b in "${backends[@]}"; do
        mkdir -p "$(state)/www/$b"
        echo "$b" >"$(state)/www/$b/index.html"
        ln "$(state)/1mb.bin" "$(state)/www/$b/1mb.bin"
        server start "$b"
        server6 start "$b"
    done
}

# ---------------------------------------------------------------------------------------------------------------------
# Tula

start_tula() {
    say "tula: tula-appliance run in $(ns tula) on net_af_packet0,iface=eth0"
    spawn tula "$tula" run --config "$(state)/tula.yaml" --json -- --file-prefix "$prefix-$bed" \
        >"$(state)/tula.json" 2>"$(state)/tula.log"
    echo $! >"$(state)/tula.pid"
    # Ready when a request through the VIP succeeds (the first ARP for the VIP may go unanswered while EAL starts).
    local deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        running "$(cat "$(state)/tula.pid")" || die "tula-appliance exited: $(tail -5 "$(state)/tula.log")"
        if in_ns client curl -s -o /dev/null -m 1 "http://$vip_l2/"; then return 0; fi
        sleep 0.2
    done
    die "no answer through $vip_l2 within 30 s; tula-appliance says: $(tail -5 "$(state)/tula.log")"
}

# Stops Tula (SIGTERM; background jobs ignore SIGINT) and waits for its JSON summary.
stop_tula() {
    stop_pid "$(cat "$(state)/tula.pid")"
    rm -f "$(state)/tula.pid"
    grep -q '^{' "$(state)/tula.json" || die "tula-appliance printed no summary: $(tail -5 "$(state)/tula.log")"
}

# summary EXPR: a value from Tula's JSON summary, `s` being the summary (e.g. "s['ports'][0]['rx_bytes']").
summary() {
    "${python:-python3}" -c 'import json, sys
s = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
print(eval(sys.argv[2]))' "$(state)/tula.json" "$1"
}

# live EXPR: the same from the running Tula (`tula-appliance stats --json` on its control socket); "?" if it cannot.
live() {
    local sample
    sample=$("$tula" stats --json --socket "$(state)/tula.sock" 2>/dev/null) || { echo '?'; return; }
    "$python" -c 'import json, sys
s = json.loads(sys.argv[1])
print(eval(sys.argv[2]))' "$sample" "$1" 2>/dev/null || echo '?'
}

# ---------------------------------------------------------------------------------------------------------------------
# The checks through Tula

check_l2() {
    say "client: curl http://$vip_l2/ through Tula (l2 DSR)"
    local out body code
    in_ns client ip neigh flush dev eth0
    out=$(in_ns client curl -s -m 5 -w '\n%{http_code}' "http://$vip_l2/" || true)
    body=$(head -1 <<<"$out") code=$(tail -1 <<<"$out")
    expect curl-vip-200 "HTTP $code from '$body'" '[ "$code" = 200 ] && [ -n "$body" ]'
    local neighbour
    neighbour=$(in_ns client ip neigh show "$vip_l2" dev eth0 | awk '{print $3}')
    expect arp-vip-is-tula "the client's ARP entry for $vip_l2 is ${neighbour:-missing} (Tula's port: ${mac[tula]})" \
        '[ "$neighbour" = "${mac[tula]}" ]'

    say "client: $requests requests, each a new connection"
    local bodies
    bodies=$(in_ns client bash -c "for i in \$(seq $requests); do curl -s -m 5 http://$vip_l2/; done" || true)
    local counts="" ok=1 n
    for b in "${backends[@]}"; do
        n=$(grep -cx "$b" <<<"$bodies" || true)
        counts+="$b=$n "
        [ "$n" -gt 0 ] || ok=0
    done
    [ "$(grep -c . <<<"$bodies")" = "$requests" ] || ok=0
    expect spread-over-all-backends "$(grep -c . <<<"$bodies")/$requests answered: ${counts% }" '[ "$ok" = 1 ]'

    say "client: download http://$vip_l2/1mb.bin"
    out=$(in_ns client curl -s -m 20 -o "$(state)/download.bin" -w '%{http_code} %{size_download} %{speed_download}' \
        "http://$vip_l2/1mb.bin" || true)
    local size speed
    read -r code size speed <<<"$out"
    expect download-1mb "HTTP $code, ${size:-0} bytes at $((${speed:-0} / 1024)) KiB/s, identical to the served file" \
        '[ "$code" = 200 ] && cmp -s "$(state)/download.bin" "$(state)/1mb.bin"'
}

# capture NAME INTERFACE FILTER: starts tcpdump in the lan namespace on INTERFACE (a bridge port) writing
# $(state)/NAME.pcap, and waits until it listens; $capture is then its pid.
capture() {
    spawn lan tcpdump -i "$2" --immediate-mode -Z root -U -w "$(state)/$1.pcap" "$3" 2>"$(state)/tcpdump-$1.log"
    capture=$!
    for _ in $(seq 50); do grep -q 'listening on' "$(state)/tcpdump-$1.log" && break; sleep 0.1; done
}

# Requests to the l3 VIPs leave Tula encapsulated towards the gateway (IP-in-IP; 6in6 and 4in6 to gateway6); the
# captures of Tula's bridge port show them.
check_l3() {
    say "client: 4 connections to each l3 VIP, $vip_l3, [$vip6_l3] (6in6) and $vip_4in6 (4in6)" \
        "(no backend can answer: the capture is the check)"
    local capture l3 l3v6
    capture l3 p-tula "ip and (host $vip_l3 or ip proto 4)"
    l3=$capture
    capture l3v6 p-tula "(ip6 and (host $vip6_l3 or ip6 proto 41 or ip6 proto 4)) or (ip and host $vip_4in6)"
    l3v6=$capture
    in_ns client bash -c "for i in 1 2 3 4; do for url in http://$vip_l3/ 'http://[$vip6_l3]/' http://$vip_4in6/; do
        curl -s -g -o /dev/null --connect-timeout 1.5 \"\$url\" & done; done; wait" || true
    sleep 0.2
    stop_pid "$l3"
    stop_pid "$l3v6"
}

# The IPv6 l2 VIP from the client: it has no neighbor entry for the VIP and must learn Tula's MAC from Tula's
# neighbor advertisement (captured on the client's bridge port: every advertisement for the VIP comes from Tula, none
# from a backend, though each backend holds the VIP on lo and receives the client's solicitation), then requests reach
# every backend.
check_l2v6() {
    say "client: curl -g 'http://[$vip6_l2]/' through Tula (l2 DSR over IPv6), the VIP resolved by neighbor discovery"
    local capture out body code neighbour state nd
    in_ns client ip -6 neigh flush dev eth0
    capture nd p-client 'icmp6 and (ip6[40] == 135 or ip6[40] == 136)'
    out=$(in_ns client curl -s -g -m 5 -w '\n%{http_code}' "http://[$vip6_l2]/" || true)
    sleep 0.2
    stop_pid "$capture"
    body=$(head -1 <<<"$out") code=$(tail -1 <<<"$out")
    expect curl-vip6-200 "HTTP $code from '$body'" '[ "$code" = 200 ] && [ -n "$body" ]'
    read -r neighbour state < <(in_ns client ip -6 neigh show "$vip6_l2" dev eth0 | awk '{print $3, $NF}') || true
    nd=$(dissect_nd 2>&1) || true
    local detail="the client's neighbor entry for $vip6_l2 is ${neighbour:-missing} (${state:-none}; Tula's port: ${mac[tula]});"
    expect nd-vip6-is-tula "$detail on the client's port: $nd" \
        '[ "$neighbour" = "${mac[tula]}" ] && [[ "$state" =~ ^(REACHABLE|STALE|DELAY|PROBE)$ ]] && [[ "$nd" == ok:* ]]'

    say "client: $requests requests to [$vip6_l2], each a new connection"
    local bodies counts
    bodies=$(in_ns client bash -c "for i in \$(seq $requests); do curl -s -g -m 5 'http://[$vip6_l2]/' || echo curl-exit-\$?; done" || true)
    counts=$(tally "$bodies")
    expect spread6-over-all-backends "$(grep -c . <<<"$bodies")/$requests answered: $counts" \
        '[ "$(grep -c . <<<"$bodies")" = "$requests" ] && ! grep -qE "(^| )b[0-9]=0( |$)" <<<"$counts" && grep -q "failed=0$" <<<"$counts"'
}

# Dissects the client's neighbor discovery for the IPv6 l2 VIP: the client's solicitations for it, and the
# advertisements for it, which must all come from Tula's MAC with its MAC in the target link-layer option, solicited
# and override set. Prints "ok: ..." or the problems.
dissect_nd() {
    "$python" - "$(state)/nd.pcap" "${mac[client]}" "${mac[tula]}" "$vip6_l2" <<'EOF'
import ipaddress, sys
from scapy.all import rdpcap
path, client_mac, tula_mac, vip = sys.argv[1:]
mac = lambda b: ":".join(f"{x:02x}" for x in b)
vip = ipaddress.IPv6Address(vip).packed
solicitations, advertisers, problems = 0, {}, []
for f in (bytes(f) for f in rdpcap(path)):
    if f[12:14] != b"\x86\xdd" or f[20] != 58: continue
    icmp = f[54:]
    if icmp[8:24] != vip: continue
    if icmp[0] == 135 and mac(f[6:12]) == client_mac: solicitations += 1
    if icmp[0] == 136:
        sender = mac(f[6:12])
        advertisers[sender] = advertisers.get(sender, 0) + 1
        if sender == tula_mac:
            if icmp[4] & 0x60 != 0x60: problems.append("Tula's advertisement lacks solicited/override")
            if icmp[24:26] != b"\x02\x01" or mac(icmp[26:32]) != tula_mac: problems.append("no target link-layer option with Tula's MAC")
if not solicitations: problems.append("the client sent no solicitation for the VIP")
if tula_mac not in advertisers: problems.append("no advertisement from Tula")
others = {m: n for m, n in advertisers.items() if m != tula_mac}
if others: problems.append("advertisements for the VIP from " + ", ".join(f"{m} x{n}" for m, n in others.items()))
if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"ok: {solicitations} solicitation(s) from the client, {advertisers[tula_mac]} advertisement(s), all from Tula, none from a backend")
EOF
}

# now: the time, in seconds with a fraction. since T0: seconds from T0 to now, one decimal.
now() { date +%s.%N; }
since() { awk -v t0="$1" -v t="$(now)" 'BEGIN { printf "%.1f", t - t0 }'; }

# wait_for_log TEXT T0 LIMIT: waits until a line of Tula's stderr contains TEXT; returns 1 when LIMIT seconds after T0
# passed first.
wait_for_log() {
    while ! grep -qF "$1" "$(state)/tula.log"; do
        awk -v e="$(since "$2")" -v l="$3" 'BEGIN { exit !(e >= l) }' && return 1
        sleep 0.1
    done
}

# l2_requests N: N requests to the l2 VIP from the client, each a new connection; one line each: the body, or
# "curl-exit-<status>" for a request that failed.
l2_requests() {
    in_ns client bash -c "for i in \$(seq $1); do curl -s -m 5 http://$vip_l2/ || echo curl-exit-\$?; done" || true
}

# tally BODIES: how many of the lines are each backend's name, and how many are something else, with curl's exit
# statuses: "b1=7 b2=0 b3=13 failed=0", or "b1=7 b2=0 b3=12 failed=1 curl-exit-7 x1".
tally() {
    local out="" n known=0
    for b in "${backends[@]}"; do n=$(grep -cx "$b" <<<"$1" || true); out+="$b=$n "; known=$((known + n)); done
    out+="failed=$(($(grep -c . <<<"$1") - known))"
    echo "$out$(grep -o 'curl-exit-[0-9]*' <<<"$1" | sort | uniq -c | awk '{printf " %s x%s", $2, $1}')"
}

# The l2 VIP's health check: a backend whose HTTP server stops is taken out within interval x fall (+ slack) and gets no
# new connection; started again, it is back within interval x rise (+ slack). Tula logs both changes on stderr, just
# before it rebuilds and publishes the tables (tens of milliseconds; a few hundred in a debug build on a busy machine):
# the requests start `settle` seconds after the log line.
check_health() {
    local b=b2 t0 took limit bodies counts status line
    local down="backend ${address[$b]} of web-l2 is unhealthy" up="backend ${address[$b]} of web-l2 is healthy again"

    say "b1: Tula's health probes arrive from $probe_address (eth1 of Tula's namespace, through its kernel)"
    local probes neighbour
    probes=$(grep -c "^$probe_address .*\"GET / HTTP/1.0\" 200" "$(state)/b1.server.log" || true)
    neighbour=$(in_ns b1 ip neigh show "$probe_address" dev eth0 | awk '{print $3}')
    expect health-probes-from-kernel-interface \
        "b1 answered $probes probes GET / from $probe_address; its ARP entry for it: ${neighbour:-missing} (eth1: $probe_mac)" \
        '[ "$probes" -gt 0 ] && [ "$neighbour" = "$probe_mac" ]'

    limit=$((check_interval * check_fall + check_slack))
    say "$b: HTTP server stopped; the health check (GET / every $check_interval s, fall $check_fall)" \
        "must take it out within $limit s"
    t0=$(now)
    server stop "$b"
    status=0
    wait_for_log "$down" "$t0" "$limit" || status=$?
    took=$(since "$t0")
    line=$(grep -F "$down" "$(state)/tula.log" | head -1 | sed 's/^tula-appliance: \(warning: \)\{0,1\}//')
    local health
    health=$(live "' '.join(f\"{b['address']}={b['health']}\" for b in s['vips'][0]['backends'])")
    expect health-takes-out-stopped-backend "after $took s (limit $limit s), Tula logged: ${line:-nothing}; stats: $health" \
        '[ "$status" = 0 ] && grep -qw "${address[$b]}=down" <<<"$health"'

    sleep "$settle"
    say "client: 20 requests while $b is out"
    bodies=$(l2_requests 20)
    counts=$(tally "$bodies")
    expect health-no-new-flows-to-down-backend "$(grep -c . <<<"$bodies") requests: $counts" \
        '[ "$(grep -c . <<<"$bodies")" = 20 ] && grep -q " $b=0 .*failed=0$" <<<" $counts"'

    limit=$((check_interval * check_rise + check_slack))
    say "$b: HTTP server started again; the health check (rise $check_rise) must bring it back within $limit s"
    t0=$(now)
    server start "$b"
    status=0
    wait_for_log "$up" "$t0" "$limit" || status=$?
    took=$(since "$t0")
    line=$(grep -F "$up" "$(state)/tula.log" | head -1 | sed 's/^tula-appliance: \(warning: \)\{0,1\}//')
    sleep "$settle"
    bodies=$(l2_requests 30)
    counts=$(tally "$bodies")
    expect health-brings-back-restarted-backend \
        "after $took s (limit $limit s), Tula logged: ${line:-nothing}; then 30 requests: $counts" \
        '[ "$status" = 0 ] && [ "$(grep -c . <<<"$bodies")" = 30 ] && ! grep -q " $b=0 " <<<" $counts" &&
              grep -q "failed=0$" <<<"$counts"'
}

# The IPv6 VIP's health check: probes to each backend's IPv6 address leave Tula's namespace from eth1's IPv6 address
# (the kernel's interface), and b1 resolved that address to eth1's MAC by neighbor discovery.
check_health6() {
    say "b1: Tula's IPv6 health probes arrive from $probe_address6"
    local probes neighbour
    probes=$(grep -c "^$probe_address6 .*\"GET / HTTP/1.0\" 200" "$(state)/b1.server6.log" || true)
    neighbour=$(in_ns b1 ip -6 neigh show "$probe_address6" dev eth0 | awk '{print $3}')
    expect health6-probes-from-kernel-interface \
        "b1 answered $probes probes GET / from $probe_address6; its neighbor entry for it: ${neighbour:-missing} (eth1: $probe_mac)" \
        '[ "$probes" -gt 0 ] && [ "$neighbour" = "$probe_mac" ]'
}

# A connection to the VIP whose only backend (10.0.1.99) nobody has: Tula's ARP requests go unanswered, the client's
# SYNs are dropped as unresolved-next-hop (counted from the live stats around it; the rest is checked on the summary).
check_unresolved() {
    say "client: a connection to $vip_nobody, whose backend $nobody never answers ARP"
    local before after
    before=$(live "s['verdicts']['unresolved-next-hop']")
    nobody_curl=0
    in_ns client curl -s -o /dev/null --connect-timeout 1 "http://$vip_nobody/" || nobody_curl=$?
    sleep 0.1
    after=$(live "s['verdicts']['unresolved-next-hop']")
    nobody_drops=$(awk -v a="$after" -v b="$before" \
        'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) print a - b; else print "?" }')
}

# Dissects the l3 capture: every frame Tula sent is IP-in-IP to a configured backend, from the port address, with
# TTL 64 and a valid header checksum, to the gateway's MAC, and carries one of the client's packets byte for byte.
# Each connection goes to one backend. Prints `<frames> <connections> <backend>=<frames>...` on success, the reasons on failure.
dissect_l3() {
    "$python" - "$(state)/l3.pcap" "${mac[client]}" "${mac[tula]}" "${mac[gw]}" "$tula_address" "$vip_l3" "${l3_backends[@]}" <<'EOF'
import sys
from collections import Counter
from scapy.all import rdpcap
from scapy.utils import checksum
path, client_mac, tula_mac, gw_mac, tula_ip, vip, *backends = sys.argv[1:]
mac = lambda b: ":".join(f"{x:02x}" for x in b)
ip = lambda b: ".".join(str(x) for x in b)
frames = [bytes(f) for f in rdpcap(path)]
def ipv4(frame):  # the IPv4 packet of an Ethernet II frame, without Ethernet padding
    return frame[14:14 + int.from_bytes(frame[16:18], "big")]
sent = {ipv4(f) for f in frames if mac(f[6:12]) == client_mac and ip(ipv4(f)[16:20]) == vip}
problems, outer_dst, flow_dst = [], Counter(), {}
encapsulated = [f for f in frames if mac(f[6:12]) == tula_mac]
for f in encapsulated:
    outer = ipv4(f)
    ihl = (outer[0] & 15) * 4
    src, dst, inner = ip(outer[12:16]), ip(outer[16:20]), outer[ihl:]
    outer_dst[dst] += 1
    flow_dst.setdefault(inner[12:24], set()).add(dst)  # addresses and ports of the client's packet
    if outer[9] != 4: problems.append(f"protocol {outer[9]}, not 4 (IP-in-IP)")
    if src != tula_ip: problems.append(f"outer source {src}, not Tula's port address {tula_ip}")
    if dst not in backends: problems.append(f"outer destination {dst} is not an l3 backend")
    if outer[8] != 64: problems.append(f"outer TTL {outer[8]}")
    if checksum(outer[:ihl]) != 0: problems.append("bad outer header checksum")
    if mac(f[0:6]) != gw_mac: problems.append(f"Ethernet destination {mac(f[0:6])}, not the gateway {gw_mac}")
    if inner not in sent: problems.append(f"inner packet to {ip(inner[16:20])} is not one the client sent")
if any(len(d) > 1 for d in flow_dst.values()): problems.append("one connection went to several backends")
if not sent: problems.append("the client's packets to the VIP were not captured")
if not encapsulated: problems.append("Tula sent no frame for the l3 VIP")
if problems:
    print("; ".join(sorted(set(problems))))
    sys.exit(1)
print(len(encapsulated), len(flow_dst), " ".join(f"{d}={n}" for d, n in sorted(outer_dst.items())))
EOF
}

# Dissects the IPv6 l3 capture: every frame Tula sent with next header 41 or 4 is an IPv6 tunnel packet to an IPv6 l3
# backend, from address6, hop limit 64, payload length the inner packet's, traffic class the inner one's, the flow label
# (flowHash >> 44) & 0xFFFFF of the client's 5-tuple as /tmp/v6spec.md defines it, to gateway6's MAC, and carries one
# of the client's packets to the 6in6 (next header 41) or 4in6 (next header 4) VIP byte for byte. Each connection goes to
# one backend. Prints `<6in6 frames> <4in6 frames> <connections> <vip>:<backend>=<frames>...`, or the reasons.
dissect_l3v6() {
    "$python" - "$(state)/l3v6.pcap" "${mac[client]}" "${mac[tula]}" "${mac[gw]}" "$tula_address6" "$vip6_l3" "$vip_4in6" \
        "${l3_backends6[@]}" <<'EOF'
import ipaddress, sys
from collections import Counter
from scapy.all import rdpcap
path, client_mac, tula_mac, gw_mac, tula_ip6, vip6, vip4, *backends = sys.argv[1:]
mac = lambda b: ":".join(f"{x:02x}" for x in b)
ip6 = lambda b: str(ipaddress.IPv6Address(b))
M = (1 << 64) - 1
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
SEED = 0x74756C6164737231
def ports_proto(l4, proto): return int.from_bytes(l4[0:2], "big") << 48 | int.from_bytes(l4[2:4], "big") << 32 | proto
def flow_hash(inner):  # the client's 5-tuple hash (flowHash / flowHash6)
    if inner[0] >> 4 == 4:
        ihl = (inner[0] & 15) * 4
        src, dst = int.from_bytes(inner[12:16], "big"), int.from_bytes(inner[16:20], "big")
        return mix64(mix64((src << 32 | dst) ^ SEED) ^ ports_proto(inner[ihl:], inner[9]))
    h = mix64(int.from_bytes(inner[8:16], "big") ^ SEED)
    for part in (inner[16:24], inner[24:32], inner[32:40]): h = mix64(h ^ int.from_bytes(part, "big"))
    return mix64(h ^ ports_proto(inner[40:], inner[6]))
def packet(frame):  # the IP packet of an Ethernet II frame, without Ethernet padding
    if frame[12:14] == b"\x08\x00": return frame[14:14 + int.from_bytes(frame[16:18], "big")]
    if frame[12:14] == b"\x86\xdd": return frame[14:14 + 40 + int.from_bytes(frame[18:20], "big")]
    return b""
frames = [bytes(f) for f in rdpcap(path)]
sent = set()
for f in frames:
    p = packet(f)
    if mac(f[6:12]) != client_mac or not p: continue
    if p[0] >> 4 == 6 and p[6] == 6 and ip6(p[24:40]) == vip6: sent.add(p)
    if p[0] >> 4 == 4 and p[9] == 6 and ".".join(map(str, p[16:20])) == vip4: sent.add(p)
problems, per_backend, flow_dst, kinds = [], Counter(), {}, Counter()
for f in frames:
    outer = packet(f)
    if mac(f[6:12]) != tula_mac or f[12:14] != b"\x86\xdd" or outer[6] not in (41, 4): continue
    inner, kind = outer[40:], "6in6" if outer[6] == 41 else "4in6"
    kinds[kind] += 1
    src, dst = ip6(outer[8:24]), ip6(outer[24:40])
    per_backend[f"{vip6 if kind == '6in6' else vip4}:{dst}"] += 1
    key = inner[8:40] + inner[40:44] if kind == "6in6" else inner[12:20] + inner[(inner[0] & 15) * 4:][:4]
    flow_dst.setdefault(key, set()).add(dst)
    if (inner[0] >> 4) != (6 if kind == "6in6" else 4): problems.append(f"{kind}: next header {outer[6]} carries IPv{inner[0] >> 4}")
    if src != tula_ip6: problems.append(f"outer source {src}, not Tula's address6 {tula_ip6}")
    if dst not in backends: problems.append(f"outer destination {dst} is not an IPv6 l3 backend")
    if outer[7] != 64: problems.append(f"outer hop limit {outer[7]}")
    if int.from_bytes(outer[4:6], "big") != len(inner): problems.append("payload length is not the inner packet's length")
    tc = ((outer[0] & 15) << 4) | (outer[1] >> 4)
    inner_tc = inner[1] if kind == "4in6" else ((inner[0] & 15) << 4) | (inner[1] >> 4)
    if tc != inner_tc: problems.append(f"traffic class {tc:#x}, the inner packet's is {inner_tc:#x}")
    label = int.from_bytes(outer[1:4], "big") & 0xFFFFF
    if label != (flow_hash(inner) >> 44) & 0xFFFFF: problems.append(f"{kind}: flow label {label:#x} is not the flow hash's")
    if mac(f[0:6]) != gw_mac: problems.append(f"Ethernet destination {mac(f[0:6])}, not gateway6's {gw_mac}")
    if inner not in sent: problems.append(f"{kind}: the inner packet is not one the client sent")
if any(len(d) > 1 for d in flow_dst.values()): problems.append("one connection went to several backends")
for kind in ("6in6", "4in6"):
    if not kinds[kind]: problems.append(f"Tula sent no {kind} frame")
if len(sent) < 2: problems.append("the client's packets to the VIPs were not captured")
if problems:
    print("; ".join(sorted(set(problems))))
    sys.exit(1)
print(kinds["6in6"], kinds["4in6"], len(flow_dst), " ".join(f"{k}={n}" for k, n in sorted(per_backend.items())))
EOF
}

# The checks on Tula's summary, after it stopped: bytes carried, per-backend counters, and the l3 capture against them.
check_counters() {
    local rx client_rx share
    rx=$(summary "s['ports'][0]['rx_bytes']")
    client_rx=$(in_ns client cat /sys/class/net/eth0/statistics/rx_bytes)
    share=$(awk -v a="$rx" -v c="$client_rx" 'BEGIN { printf "%.1f", 100 * a / c }')
    expect appliance-bytes-under-10pct \
        "Tula received $rx B in the whole run, the client received $client_rx B: $share% (limit $max_appliance_share%)" \
        '[ $((rx * 100)) -lt $((client_rx * max_appliance_share)) ]'

    local per_backend forwarded client_tx
    per_backend=$(summary "' '.join(f\"{b['address']}={b['packets']}\" for b in s['vips'][0]['backends'])")
    forwarded=$(summary "s['verdicts']['forwarded-l2']")
    client_tx=$(in_ns client cat /sys/class/net/eth0/statistics/tx_packets)
    expect tula-counted-client-to-server-only \
        "l2 packets per backend: $per_backend; $forwarded forwarded, the client sent $client_tx" \
        '! grep -qw "[0-9.]*=0" <<<"$per_backend" && [ "$forwarded" -gt 0 ] && [ "$forwarded" -le "$client_tx" ]'

    local dissected status=0 counted frames connections captured detail
    dissected=$(dissect_l3 2>&1) || status=$?
    counted=$(summary "' '.join(f\"{b['address']}={b['packets']}\" for b in s['vips'][1]['backends'] if b['packets'])")
    read -r frames connections captured <<<"$dissected"
    detail="$frames IP-in-IP frames ($connections connections) from $tula_address, TTL 64, valid checksum, to the gateway's MAC,"
    detail+=" each a client packet intact inside; per backend: $captured, Tula counted: $counted"
    [ "$status" = 0 ] || detail="$dissected"
    expect l3-ip-in-ip-on-the-wire "$detail" '[ "$status" = 0 ] && [ "$captured" = "$counted" ]'

    local six four
    status=0
    dissected=$(dissect_l3v6 2>&1) || status=$?
    counted=$(summary "' '.join(sorted(f\"{v['address']}:{b['address']}={b['packets']}\" for v in s['vips']
                                        if v['name'] in ('web6-l3', 'web-4in6') for b in v['backends'] if b['packets']))")
    read -r six four connections captured <<<"$dissected"
    detail="$six 6in6 and $four 4in6 frames ($connections connections) from $tula_address6 to gateway6's MAC, hop limit 64,"
    detail+=" traffic class and payload length of the inner packet, flow label from the flow hash, each a client packet"
    detail+=" intact inside; per VIP:backend: $captured, Tula counted: $counted"
    [ "$status" = 0 ] || detail="$dissected"
    expect l3-6in6-and-4in6-on-the-wire "$detail" '[ "$status" = 0 ] && [ "$captured" = "$counted" ]'
}

# Health as the summary has it: every l2 backend up again (the other VIPs have no check), and exactly two changes logged.
check_health_summary() {
    local health l2 l2v6 others changes
    health=$(summary "'; '.join(v['name'] + ': ' + ' '.join(f\"{b['address']}={b['health']}\" for b in v['backends'])
                                for v in s['vips'])")
    l2=$(summary "' '.join(b['health'] for b in s['vips'][0]['backends'])")
    others=$(summary "' '.join(sorted({b['health'] for v in s['vips'] if v['name'] not in ('web-l2', 'web6-l2')
                                       for b in v['backends']}))")
    l2v6=$(summary "' '.join(b['health'] for v in s['vips'] if v['name'] == 'web6-l2' for b in v['backends'])")
    changes=$(sed -n 's/^tula-appliance: \(warning: \)\{0,1\}backend \(.*\) of .* is \(unhealthy\|healthy again\).*/\2 \3/p' "$(state)/tula.log" |
        paste -sd ',')
    expect health-in-summary "$health; changes logged: ${changes:-none}" \
        '[ "$l2" = "up up up" ] && [ "$l2v6" = "up up up" ] && [ "$others" = unchecked ] &&
              [ "$changes" = "${address[b2]} unhealthy,${address[b2]} healthy again" ]'
}

# Next hops as the summary has them: the backends and the gateway resolved by ARP to their real MACs; the address
# nobody has failed, and the client's packets for it were dropped as unresolved-next-hop.
check_neighbors() {
    local expected="" resolved learned
    for node in "${backends[@]}" gw; do expected+="${address[$node]}=reachable/${mac[$node]}"$'\n'; done
    expected=$(sort <<<"$expected" | grep . | paste -sd ' ')
    resolved=$(summary "' '.join(sorted(f\"{n['address']}={n['state']}/{n.get('mac', 'none')}\"
                                        for n in s['neighbors'] if n['address'] != '$nobody' and ':' not in n['address']))")
    learned=$(summary "s['verdicts']['arp-learned']")
    expect arp-resolves-backends-and-gateway "neighbors: $resolved; $learned ARP replies learned" \
        '[ "$resolved" = "$expected" ]'

    expected=""
    for node in "${backends[@]}" gw; do expected+="${address6[$node]}=reachable/${mac[$node]}"$'\n'; done
    expected=$(sort <<<"$expected" | grep . | paste -sd ' ')
    resolved=$(summary "' '.join(sorted(f\"{n['address']}={n['state']}/{n.get('mac', 'none')}\"
                                        for n in s['neighbors'] if ':' in n['address']))")
    local replies
    learned=$(summary "s['verdicts']['nd-learned']")
    replies=$(summary "s['verdicts']['nd-reply']")
    expect nd-resolves-backends-and-gateway6 "neighbors: $resolved; $learned advertisements learned, $replies solicitations answered" \
        '[ "$resolved" = "$expected" ] && [ "$learned" -ge 4 ] && [ "$replies" -ge 1 ]'

    local state packets
    state=$(summary "' '.join(n['state'] + ', MAC ' + n.get('mac', 'none') for n in s['neighbors']
                              if n['address'] == '$nobody') or 'missing'")
    packets=$(summary "s['vips'][2]['packets']")
    expect arp-unanswered-next-hop-failed \
        "$nobody: $state; the client's connection to $vip_nobody: curl exit $nobody_curl (timeout), $nobody_drops \
packet(s) dropped as unresolved-next-hop meanwhile, $packets forwarded" \
        '[ "$state" = "failed, MAC none" ] && [ "$nobody_curl" = 28 ] && [ "$nobody_drops" != "?" ] &&
              [ "$nobody_drops" -ge 1 ] && [ "$packets" = 0 ]'
}

# A backend broken the usual ways (VIP removed from lo, arp_ignore back to 0) is diagnosed, and doctor's fixes repair it.
check_misconfigured() {
    local b=b3 problems fixes
    say "$b: deliberately misconfigured (ip addr del $vip_l2/32 dev lo; sysctl -w net.ipv4.conf.all.arp_ignore=0), then doctor"
    in_ns "$b" ip addr del "$vip_l2/32" dev lo
    in_ns "$b" sysctl -qw net.ipv4.conf.all.arp_ignore=0
    doctor "$b"
    indent "$b" "$doctor_output"
    problems=$(doctor_problems)
    expect doctor-diagnoses-misconfigured-backend "exit $doctor_status; problems: $(cut -d: -f1 <<<"$problems" | paste -sd ';')" \
        '[ "$doctor_status" = 1 ] && [ "$(wc -l <<<"$problems")" = 2 ] && grep -q "VIP $vip_l2 is not on lo" <<<"$problems" &&
              grep -q "^arp_ignore must be" <<<"$problems" && grep -q "^ok *arp_announce" <<<"$doctor_output"'
    fixes=$(sed -n 's/^ *fix: //p' <<<"$doctor_output")
    say "$b: running the fixes doctor printed: $(paste -sd ';' <<<"$fixes")"
    while read -r fix; do in_ns "$b" sh -c "$fix" >/dev/null; done <<<"$fixes"
    doctor "$b"
    expect doctor-passes-after-fixes "exit $doctor_status after $(wc -l <<<"$fixes") fix command(s)" '[ "$doctor_status" = 0 ]'
}

# The IPv6 twin: IPv6 turned off on b3's lo (which also drops the VIP from it) is diagnosed, and doctor's fixes repair it.
check_misconfigured6() {
    local b=b3 problems fixes
    say "$b: deliberately misconfigured (sysctl -w net.ipv6.conf.lo.disable_ipv6=1: the IPv6 VIP leaves lo), then doctor --vip $vip6_l2"
    in_ns "$b" sysctl -qw net.ipv6.conf.lo.disable_ipv6=1
    doctor "$b" "$vip6_l2"
    indent "$b" "$doctor_output"
    problems=$(doctor_problems)
    expect doctor6-diagnoses-misconfigured-backend "exit $doctor_status; problems: $(sed 's/: .*//' <<<"$problems" | paste -sd ';')" \
        '[ "$doctor_status" = 1 ] && [ "$(wc -l <<<"$problems")" = 2 ] && grep -q "^IPv6 is disabled on lo" <<<"$problems" &&
              grep -q "VIP $vip6_l2 is not on lo" <<<"$problems"'
    fixes=$(sed -n 's/^ *fix: //p' <<<"$doctor_output")
    say "$b: running the fixes doctor printed: $(paste -sd ';' <<<"$fixes")"
    while read -r fix; do in_ns "$b" sh -c "$fix" >/dev/null; done <<<"$fixes"
    doctor "$b" "$vip6_l2"
    expect doctor6-passes-after-fixes "exit $doctor_status after $(wc -l <<<"$fixes") fix command(s)" '[ "$doctor_status" = 0 ]'
}

# ---------------------------------------------------------------------------------------------------------------------
# Commands

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# Builds a bed (removing stale ones first) with its backends set up and serving, and Tula running; tears it down if
# anything fails or the script is interrupted, until `trap - EXIT`.
bring_up() {
    preflight
    clean_stale
    bed=$$
    trap 'teardown_bed "$bed"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    build_bed
    write_config
    setup_backends
    start_servers
    start_tula
}

# The one bed that is running (for `server`).
running_bed() {
    local live=()
    for id in $(all_beds); do bed_alive "$id" && live+=("$id"); done
    [ "${#live[@]}" = 1 ] || die "expected one running bed, found ${#live[@]} (scripts/testbed.sh up starts one)"
    echo "${live[0]}"
}

action=${1:-run}
[ $# -gt 0 ] && shift
case $action in
run)
    while [ $# -gt 0 ]; do
        case $1 in
        --report) report=$2; shift 2 ;;
        *) usage ;;
        esac
    done
    [ -z "$report" ] || : >"$report"
    started=$(date +%s)
    bring_up
    check_l2
    check_l2v6
    check_l3
    check_health
    check_health6
    check_unresolved
    say "tula: stopping (SIGTERM) for its counters"
    stop_tula
    check_counters
    check_health_summary
    check_neighbors
    check_misconfigured
    check_misconfigured6
    say "tearing down bed $bed"
    teardown_bed "$bed"
    trap - EXIT
    echo "testbed: $passed checks passed, $failed failed in $(($(date +%s) - started)) s"
    [ "$failed" = 0 ]
    ;;
up)
    bring_up
    cat "$(state)/tula.pid" >"$(state)/owner"   # the bed now lives as long as Tula does
    trap - EXIT
    cat <<EOF
== bed $bed is up. Try:
   ip netns exec $(ns client) curl -v http://$vip_l2/
   ip netns exec $(ns client) ip neigh show $vip_l2
   ip netns exec $(ns client) curl -g -v 'http://[$vip6_l2]/'      # IPv6: the VIP resolved from Tula's advertisement
   ip netns exec $(ns client) ip -6 neigh show $vip6_l2
   $tula stats --socket $(state)/tula.sock     # health per backend, neighbours (ARP and NDP)
   scripts/testbed.sh server stop b2        # the health check takes b2 out within ~2 s (tail $(state)/tula.log)
   scripts/testbed.sh server start b2       # and brings it back
   scripts/testbed.sh down                  # prints Tula's counters, then removes everything
EOF
    ;;
server)
    [ $# = 2 ] || usage
    bed=$(running_bed)
    resolve_python
    server "$1" "$2"
    ;;
down)
    for id in $(all_beds); do
        say "tearing down bed $id"
        bed=$id
        if [ -f "$(state)/tula.pid" ] && running "$(cat "$(state)/tula.pid")"; then
            stop_pid "$(cat "$(state)/tula.pid")"
            echo "   tula received $(summary "s['ports'][0]['rx_bytes']") B in $(summary "s['rx_packets']") packets;" \
                "per backend: $(summary "' '.join(f\"{b['address']}={b['packets']}\" for v in s['vips'] for b in v['backends'])")" || true
            echo "   health: $(summary "' '.join(f\"{b['address']}={b['health']}\" for v in s['vips'] for b in v['backends'] if b['health'] != 'unchecked')");" \
                "neighbours: $(summary "' '.join(f\"{n['address']}={n['state']}\" + (f\"/{n['mac']}\" if 'mac' in n else '') for n in s['neighbors'])")" || true
        fi
        teardown_bed "$id"
    done
    ;;
*) usage ;;
esac
