#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 30), as many at once as the
# machine has cores (FUZZ_JOBS overrides): libFuzzer runs one process on one core, so on two
# cores two targets get the same number of runs each in half the wall time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its growing corpus (fuzz/corpus/TARGET, not committed) plus the
# committed seeds (fuzz/seeds/TARGET). A crash stops the script with libFuzzer's report and the
# input saved under fuzz/artifacts/TARGET/; reproduce it with
# `cargo +nightly fuzz run --features server TARGET fuzz/artifacts/TARGET/crash-...`.
# The last line per target is "fuzz: TARGET runs=N seconds=S" for the record.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-30}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
jobs=${FUZZ_JOBS:-$(nproc)}

# Every target is built once, with the server crate's feature (the server_* targets need it; the
# others build the same code either way), before any runs: concurrent runs then find the build
# done instead of waiting on cargo's lock or rebuilding with other features.
cargo +nightly fuzz build -O --debug-assertions --features server

# run_target T: fuzzes T; prints its record line, or libFuzzer's report and fails.
run_target() {
    local t=$1 log runs
    mkdir -p "corpus/$t" "seeds/$t"
    log=$(mktemp)
    # -rss_limit_mb bounds each target's memory; -timeout flags any single input taking > 10 s.
    if ! cargo +nightly fuzz run -O --debug-assertions --features server "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        rm -f "$log"
        echo "fuzz: $t FAILED" >&2
        return 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rm -f "$log"
    echo "fuzz: $t runs=${runs:-?} seconds=$seconds"
}

running=0
failed=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    # A crash stops the script: no new target starts, the running ones finish.
    [ "$failed" = 0 ] || break
    run_target "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
exit "$failed"
