#!/usr/bin/env bash
# `make install` / `make uninstall`: puts Tula on an appliance (binary, units, hugepage script, example config) and
# takes it off again, all or nothing, honouring DESTDIR and PREFIX.
#
# Usage: scripts/install.sh install BINARY | uninstall
# Environment: DESTDIR (staging root, default none), PREFIX (default /usr/local), SYSCONFDIR (default /etc),
#              UNITDIR (default $SYSCONFDIR/systemd/system).
#
# install: $PREFIX/bin/tula-appliance, $PREFIX/share/tula/{hugepages.sh,README.md,manifest},
# $UNITDIR/{tula,tula-hugepages}.service, and $SYSCONFDIR/tula/tula.yaml from examples/appliance.yaml only when no
# config is there (an existing one is never touched). The manifest lists what was installed (with the example
# config's checksum), so uninstall removes exactly that: a config edited since is kept, and so is anything else.
# A failure part way puts back what this run changed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}
sysconfdir=${SYSCONFDIR:-/etc}
unitdir=${UNITDIR:-$sysconfdir/systemd/system}
bindir=$prefix/bin
datadir=$prefix/share/tula
manifest=$destdir$datadir/manifest
config=$sysconfdir/tula/tula.yaml

say() { echo "install: $*" >&2; }
die() { say "$*"; exit 1; }

for dir in "$prefix" "$sysconfdir" "$unitdir"; do
    [[ $dir == /* ]] || die "PREFIX, SYSCONFDIR and UNITDIR must be absolute paths (got '$dir')"
done

# What this run has put in place, for the rollback: "new PATH" (remove it) or "saved PATH BACKUP" (restore it).
undo=()
rollback() {
    local i entry
    for ((i = ${#undo[@]} - 1; i >= 0; i--)); do
        entry=${undo[i]}
        case $entry in
        new\ *) rm -f -- "${entry#new }" ;;
        saved\ *) entry=${entry#saved }; mv -f -- "${entry#* }" "${entry%% *}" ;;
        esac
    done
}

# Installs SOURCE as DESTDIR+TARGET with MODE, atomically (temp file + rename), remembering how to undo it.
place() {
    local source=$1 target=$destdir$2 mode=$3 tmp
    mkdir -p -- "$(dirname -- "$target")"
    tmp=$(mktemp "$(dirname -- "$target")/.tula-install.XXXXXX")
    if ! { cat -- "$source" >"$tmp" && chmod "$mode" "$tmp"; }; then rm -f -- "$tmp"; return 1; fi
    if [ -e "$target" ]; then
        cp -p -- "$target" "$target.tula-undo" || { rm -f -- "$tmp"; return 1; }
        undo+=("saved $target $target.tula-undo")
    else
        undo+=("new $target")
    fi
    mv -f -- "$tmp" "$target"
    echo "$2" >>"$manifest.new"
}

# A unit file with @BINDIR@ and @DATADIR@ filled in.
unit() { sed -e "s|@BINDIR@|$bindir|g" -e "s|@DATADIR@|$datadir|g" -e "s|@CONFIG@|$config|g" "$root/dist/systemd/$1.in" >"$work/$1"; }

install_all() {
    local binary=$1
    [ -x "$binary" ] || die "no binary at $binary (make release builds it)"
    "$binary" check-config --config "$root/examples/appliance.yaml" >/dev/null || die "the example config does not validate"
    work=$(mktemp -d)
    mkdir -p -- "$(dirname -- "$manifest")"
    : >"$manifest.new"
    trap 'status=$?; if [ $status != 0 ]; then say "failed: putting back what was changed"; rollback; rm -f -- "$manifest.new"; fi; rm -rf "$work"' EXIT
    place "$binary" "$bindir/tula-appliance" 755
    place "$root/scripts/hugepages.sh" "$datadir/hugepages.sh" 755
    place "$root/README.md" "$datadir/README.md" 644
    # The name of Tula's routing protocol number (252) for `ip route`, BIRD and friends.
    place "$root/dist/iproute2/tula.conf" "$sysconfdir/iproute2/rt_protos.d/tula.conf" 644
    for name in tula.service tula-hugepages.service; do
        unit "$name"
        place "$work/$name" "$unitdir/$name" 644
    done
    if [ -e "$destdir$config" ]; then
        say "keeping the existing $config"
        # An example config installed earlier stays owned by the manifest.
        grep -E "^config $config " "$manifest" 2>/dev/null >>"$manifest.new" || true
    else
        place "$root/examples/appliance.yaml" "$config" 640
        sed -i '$d' "$manifest.new"
        echo "config $config $(sha256sum "$destdir$config" | cut -d' ' -f1)" >>"$manifest.new"
    fi
    mv -f -- "$manifest.new" "$manifest"
    echo "$datadir/manifest" >>"$manifest"
    for entry in "${undo[@]}"; do [[ $entry == saved\ * ]] && { entry=${entry#saved }; rm -f -- "${entry#* }"; }; done
    say "installed under ${destdir:-/} (prefix $prefix):"
    sed 's/^config \([^ ]*\) .*/\1/; s/^/  /' "$manifest" >&2
    if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        say "next: edit $config, bind the NIC (tula-appliance bind --config $config), systemctl enable --now tula"
    fi
}

uninstall_all() {
    [ -f "$manifest" ] || die "nothing to uninstall: no manifest at $manifest"
    local line path sum
    while IFS= read -r line; do
        case $line in
        config\ *)
            path=${line#config }; sum=${path#* }; path=${path%% *}
            if [ -f "$destdir$path" ] && [ "$(sha256sum "$destdir$path" | cut -d' ' -f1)" = "$sum" ]; then
                rm -f -- "$destdir$path"
            elif [ -e "$destdir$path" ]; then
                say "keeping $path: it was changed after install"
            fi
            ;;
        *) rm -f -- "$destdir$line" ;;
        esac
    done <"$manifest"
    # The two directories that are Tula's own go when empty; shared ones (bin, systemd/system) stay.
    rmdir -- "$destdir$datadir" "$destdir$sysconfdir/tula" 2>/dev/null || true
    say "removed what was installed under ${destdir:-/} (prefix $prefix)"
    if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
}

case ${1:-} in
install) [ $# = 2 ] || die "usage: $0 install BINARY"; install_all "$2" ;;
uninstall) uninstall_all ;;
*) die "usage: $0 install BINARY | uninstall" ;;
esac
