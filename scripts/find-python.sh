#!/usr/bin/env bash
# Prints the path of a Python 3 interpreter that can import every module named (default: scapy), or explains why none can.
#
# Debian's python3-* packages (python3-scapy, installed by scripts/install-deps.sh) are visible only to Debian's own
# /usr/bin/python3; the python3 first on PATH may be a pyenv or venv interpreter that cannot see them. Order tried:
# $PYTHON when set (and then only it), /usr/bin/python3, then every python3 on PATH.
#
# Usage: scripts/find-python.sh [MODULE ...]     e.g. python=$(scripts/find-python.sh scapy)
set -euo pipefail

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(scapy)
imports=$(printf 'import %s; ' "${modules[@]}")

if [ -n "${PYTHON:-}" ]; then
    candidates=("$PYTHON")
else
    candidates=(/usr/bin/python3)
    while IFS= read -r p; do candidates+=("$p"); done < <(type -ap python3 || true)
fi

tried=()
for candidate in "${candidates[@]}"; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    [[ " ${tried[*]:-} " == *" $candidate "* ]] && continue
    # The interpreter itself, not a wrapper such as a pyenv shim, so that callers see the real process.
    if resolved=$("$candidate" -c "${imports}import sys; print(sys.executable)" 2>/dev/null) && [ -n "$resolved" ]; then
        echo "$resolved"
        exit 0
    fi
    tried+=("$candidate")
done

echo "find-python: no Python 3 can import ${modules[*]} (tried: ${tried[*]:-none found};" \
     "Debian's python3-${modules[0]} serves /usr/bin/python3: run scripts/install-deps.sh, or set PYTHON)" >&2
exit 1
