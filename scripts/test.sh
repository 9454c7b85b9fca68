#!/usr/bin/env bash
# The README's test command: installs dependencies, reserves hugepages when possible, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/hugepages.sh reserve 1024 --owner test || echo "test: going on without hugepages (Tula runs with --no-huge)" >&2
trap 'scripts/hugepages.sh release --owner test' EXIT

swift build --build-tests
swift test --skip-build "$@"
