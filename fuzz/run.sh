#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after SECS) for SECS seconds each, on a fresh copy of
# its seeds plus its regression inputs (fuzz/regressions/TARGET/, crash inputs of fixed findings,
# replayed first because libFuzzer runs its corpus before mutating), with debug assertions on (overflow panics). Prints one line
# per target (executions, corpus size) and fails if any target crashed; crashing inputs are kept
# in fuzz/artifacts/TARGET/. Used by `make fuzz` and tools/fuzz-smoke.sh.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -a >/dev/null 2>&1 || { cargo fuzz build -a; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    corpus="$work/$t"
    mkdir -p "$corpus" "artifacts/$t"
    cp seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    cp regressions/"$t"/* "$corpus"/ 2>/dev/null || true
    log="$work/$t.log"
    # -rss_limit_mb: every target keeps what a client can make it hold bounded; 1 GiB is far above.
    cargo fuzz run -a "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=1024 \
        -max_len=65536 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "$t: rc=$rc execs=${execs:-?} corpus=$(ls "$corpus" | wc -l)"
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        grep -E "panicked at|thread '.*' |ERROR: libFuzzer|Test unit written" "$log" | head -5 | sed 's/^/    /'
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
