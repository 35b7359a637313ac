#!/usr/bin/env bash
# CI's fuzz smoke (.ci/run calls it): every fuzz target for 15 s (FUZZ_SECS to change; longer runs of
# some: bash fuzz/run.sh SECS TARGET...) on a fresh copy of its seed corpus; fails on any crash, so a
# new panic in a parser cannot land. Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
exec bash fuzz/run.sh "${FUZZ_SECS:-15}"
