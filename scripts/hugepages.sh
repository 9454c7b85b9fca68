#!/usr/bin/env bash
# Reserves and mounts hugepages for DPDK (2 MiB or 1 GiB), gives back what it took, and says what there is.
#
# Usage (as root):
#   hugepages.sh reserve [AMOUNT] [--page-size 2M|1G]   AMOUNT: a page count (1024) or a size (512M, 4G); default 1024
#                                                        pages. Idempotent: nothing changes when enough are reserved.
#   hugepages.sh reserve-for CONFIG [--page-size ...]   what `tula-appliance run --dry-run --config CONFIG` says the
#                                                        config needs (tula-appliance from $TULA_APPLIANCE or PATH)
#   hugepages.sh release [--page-size 2M|1G]             restore the count from before the first reserve; unmount
#                                                        what reserve mounted
#   hugepages.sh status                                  reserved/free pages of each size and the hugetlbfs mounts
#   --owner NAME (with reserve/release): whose reservation this is (default: tula, the boot unit's). Each owner's
#   count is remembered (/run/tula-hugepages/SIZE/NAME) beside the count found before the first one
#   (`baseline`); a release drops to the largest count another owner still holds, or to the baseline, so the test
#   suite's reserve/release on an appliance does not undo tula-hugepages.service's.
#
# Exit status: 0 when at least AMOUNT is reserved and a hugetlbfs for that page size is mounted; 1 when less could
# be had (the count is then put back as it was: nothing half-done is left), 2 on a usage error. Tula itself runs with
# --no-huge when no hugepages are free, so callers that can live without them write `reserve ... || true`.
set -u

usage() { echo "usage: $0 reserve [PAGES|SIZE] [--page-size 2M|1G] | reserve-for CONFIG | release | status" >&2; exit 2; }
say() { echo "hugepages: $*" >&2; }

action=${1:-reserve}
[ $# -gt 0 ] && shift
amount="" config="" page=2M owner=tula
while [ $# -gt 0 ]; do
    case $1 in
    --page-size) [ $# -ge 2 ] || usage; page=$2; shift 2 ;;
    --page-size=*) page=${1#*=}; shift ;;
    --owner) [ $# -ge 2 ] || usage; owner=$2; shift 2 ;;
    -*) usage ;;
    *) if [ "$action" = reserve-for ]; then config=$1; else amount=$1; fi; shift ;;
    esac
done

case $page in
2M|2m|2048k|2048kB) page_kb=2048; page=2M; mnt=/dev/hugepages ;;
1G|1g|1024M|1048576kB) page_kb=1048576; page=1G; mnt=/dev/hugepages-1G ;;
*) say "unknown page size '$page' (2M or 1G)"; exit 2 ;;
esac
sysfs=/sys/kernel/mm/hugepages/hugepages-${page_kb}kB
nr=$sysfs/nr_hugepages
[[ $owner =~ ^[a-z0-9-]+$ ]] || { say "bad owner '$owner' (lower-case letters, digits, -)"; exit 2; }
owners=/run/tula-hugepages/$page
baseline=$owners/baseline
mounted_flag=$owners/mounted

# Pages of this size for an amount given as a count (1024) or a size with a unit (512M, 4G, 1T); empty = 1024.
pages_for() {
    local a=${1:-1024} n unit kb
    if [[ $a =~ ^[0-9]+$ ]]; then echo "$a"; return; fi
    [[ $a =~ ^([0-9]+)([KkMmGgTt])[Ii]?[Bb]?$ ]] || { say "bad amount '$a' (a page count like 1024, or a size like 512M or 4G)"; exit 2; }
    n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
    case $unit in K|k) kb=$n ;; M|m) kb=$((n * 1024)) ;; G|g) kb=$((n * 1048576)) ;; T|t) kb=$((n * 1073741824)) ;; esac
    echo $(((kb + page_kb - 1) / page_kb))
}

# The hugetlbfs mount point serving this page size, if any.
mount_for_size() {
    awk -v kb="$page_kb" '$3 == "hugetlbfs" {
        size = 2048; n = split($4, opts, ",")
        for (i = 1; i <= n; i++) if (opts[i] ~ /^pagesize=/) { v = substr(opts[i], 10)
            if (v ~ /[Gg]$/) size = v * 1048576; else if (v ~ /[Mm]$/) size = v * 1024; else if (v ~ /[Kk]$/) size = v + 0 }
        if (size == kb) { print $2; exit }
    }' /proc/mounts
}

free_pages() { cat "$sysfs/free_hugepages" 2>/dev/null || echo 0; }

status() {
    local d
    for d in /sys/kernel/mm/hugepages/hugepages-*; do
        [ -d "$d" ] || continue
        echo "$(basename "$d" | sed 's/hugepages-//'): $(cat "$d/nr_hugepages") reserved, $(cat "$d/free_hugepages") free"
    done
    awk '$3 == "hugetlbfs" { print "mounted: " $2 " (" $4 ")" }' /proc/mounts
}

reserve() {
    local want=$1 have got where
    if [ "$(id -u)" != 0 ]; then say "reserving needs root"; return 1; fi
    if [ ! -w "$nr" ]; then say "this kernel offers no writable $page pages ($nr)"; return 1; fi
    have=$(cat "$nr")
    if [ "$have" -lt "$want" ]; then
        echo "$want" >"$nr" 2>/dev/null
        got=$(cat "$nr")
        if [ "$got" -lt "$want" ]; then
            echo "$have" >"$nr" 2>/dev/null
            say "asked for $want x $page pages, the kernel gave $got (memory too fragmented or too small);" \
                "put back to $have. Reserve them at boot (hugepages= on the kernel command line) or ask for fewer"
            return 1
        fi
    fi
    mkdir -p "$owners"
    [ -f "$baseline" ] || echo "$have" >"$baseline"
    echo "$want" >"$owners/$owner"
    where=$(mount_for_size)
    if [ -z "$where" ]; then
        mkdir -p "$mnt"
        if mount -t hugetlbfs -o "pagesize=$page" nodev "$mnt" 2>/dev/null; then
            : >"$mounted_flag"
            where=$mnt
        else
            say "$(cat "$nr") x $page pages reserved, but hugetlbfs could not be mounted at $mnt"
            return 1
        fi
    fi
    say "$(cat "$nr") x $page pages reserved ($(free_pages) free, $want asked), hugetlbfs at $where"
}

case $action in
reserve)
    pages=$(pages_for "$amount") || exit 2
    reserve "$pages" || exit 1
    ;;
reserve-for)
    [ -n "$config" ] || usage
    tula=${TULA_APPLIANCE:-$(command -v tula-appliance || true)}
    [ -n "$tula" ] && [ -x "$tula" ] || { say "tula-appliance not found (set TULA_APPLIANCE or put it on PATH)"; exit 1; }
    line=$("$tula" run --dry-run --config "$config" 2>&1 >/dev/null | grep -o '[0-9]* MiB of hugepages' | head -1) || true
    mib=${line%% MiB*}
    [ -n "$mib" ] || { say "could not read what $config needs from '$tula run --dry-run' (is the config valid?)"; exit 1; }
    # Pages of the chosen size for that many MiB, plus one for rounding.
    pages=$(pages_for "${mib}M") || exit 2
    reserve $((pages + 1)) || exit 1
    ;;
release)
    [ -f "$owners/$owner" ] || { say "$owner holds no $page pages; nothing to give back"; exit 0; }
    rm -f "$owners/$owner"
    # The largest count another owner still holds, else what there was before any of them.
    keep=$(cat "$baseline" 2>/dev/null || echo 0)
    others=0
    for f in "$owners"/*; do
        case ${f##*/} in baseline|mounted|'*') continue ;; esac
        others=$((others + 1))
        [ "$(cat "$f")" -gt "$keep" ] && keep=$(cat "$f")
    done
    [ "$(cat "$nr")" -gt "$keep" ] && echo "$keep" >"$nr" 2>/dev/null
    if [ "$others" = 0 ]; then
        if [ -f "$mounted_flag" ]; then
            # Still in use (Tula running): leave it mounted and remembered, so a later release can finish the job.
            if umount "$mnt" 2>/dev/null; then rm -f "$mounted_flag"; else say "$mnt is in use; left mounted"; fi
        fi
        [ -f "$mounted_flag" ] || { rm -rf "$owners"; rmdir /run/tula-hugepages 2>/dev/null || true; }
    fi
    say "$owner gave back its $page pages: $(cat "$nr") reserved now"
    ;;
status)
    status
    ;;
*)
    usage
    ;;
esac
