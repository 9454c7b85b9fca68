#!/usr/bin/env bash
# Reserves and mounts 2 MiB hugepages for DPDK (`reserve [PAGES]`), or gives back what reserve took (`release`).
# Tula falls back to --no-huge by itself when none are free, so failure here is reported, not fatal.
set -u
state=/run/tula-hugepages.prev
nr=/proc/sys/vm/nr_hugepages
mnt=/dev/hugepages

case "${1:-reserve}" in
reserve)
    want=${2:-1024}
    if [ "$(id -u)" != 0 ] || [ ! -w "$nr" ]; then
        echo "hugepages: cannot reserve (need root and a writable $nr); Tula will run with --no-huge" >&2
        exit 0
    fi
    have=$(cat "$nr")
    if [ "$have" -lt "$want" ]; then
        [ -f "$state" ] || echo "$have" > "$state"
        echo "$want" > "$nr" 2>/dev/null
    fi
    if ! grep -q hugetlbfs /proc/mounts; then
        mkdir -p "$mnt" && mount -t hugetlbfs nodev "$mnt" 2>/dev/null && touch /run/tula-hugepages.mounted
    fi
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
    if grep -q hugetlbfs /proc/mounts && [ "${free:-0}" -gt 0 ]; then
        echo "hugepages: $free free 2 MiB pages" >&2
    else
        echo "hugepages: none could be reserved or mounted; Tula will run with --no-huge" >&2
    fi
    ;;
release)
    if [ -f /run/tula-hugepages.mounted ]; then umount "$mnt" 2>/dev/null; rm -f /run/tula-hugepages.mounted; fi
    if [ -f "$state" ]; then echo "$(cat "$state")" > "$nr" 2>/dev/null; rm -f "$state"; fi
    ;;
*)
    echo "usage: $0 reserve [PAGES] | release" >&2
    exit 2
    ;;
esac
