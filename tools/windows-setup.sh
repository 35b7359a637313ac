#!/usr/bin/env bash
# Installs what the cross-platform checks need on a Debian machine, from the package registries only:
# the Rust targets (rustup) for Windows, macOS and ARM Linux, mingw-w64 as the Windows linker and Wine
# (64-bit only: no i386 architecture needed) to run rtmpd.exe, the aarch64 cross linker and qemu-user
# to run the ARM64 binary, and clang for the macOS compile check of ring's C (under rustls). Idempotent;
# fails saying what is missing, so a check that could not run is never silent. Used by .ci/run; `make windows-smoke`, `make arm-smoke` and `make check-targets` expect it.
set -euo pipefail

targets=(x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-gnu)
installed=$(rustup target list --installed 2>/dev/null || true)
missing=()
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "windows-setup: rustup target add ${missing[*]}"
    rustup target add "${missing[@]}" || {
        echo "windows-setup: cannot install the Rust targets ${missing[*]}: the Windows, macOS and ARM checks cannot run" >&2
        exit 1
    }
fi

need=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || need+=(wine64)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v file >/dev/null 2>&1 || need+=(file)
# clang compiles ring's C for the macOS check (make check-targets); gcc cannot target Apple.
command -v clang >/dev/null 2>&1 || need+=(clang)
if [ ${#need[@]} -gt 0 ]; then
    echo "windows-setup: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
        echo "windows-setup: cannot install ${need[*]} from Debian: the Windows and ARM smoke runs cannot run" >&2
        exit 1
    }
fi
echo "windows-setup: targets ${targets[*]}, $(x86_64-w64-mingw32-gcc --version | head -1), wine $( (/usr/lib/wine/wine64 --version || wine64 --version) 2>/dev/null | head -1)"
