#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 30), one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its growing corpus (fuzz/corpus/TARGET, not committed) plus the
# committed seeds (fuzz/seeds/TARGET). A crash stops the script with libFuzzer's report and the
# input saved under fuzz/artifacts/TARGET/; reproduce it with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
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

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log=$(mktemp)
    # Targets of the server crate need its feature (optional so the others build without it).
    features=()
    case $t in server_*) features=(--features server) ;; esac
    # -rss_limit_mb bounds each target's memory; -timeout flags any single input taking > 10 s.
    if ! cargo +nightly fuzz run -O --debug-assertions "${features[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        rm -f "$log"
        echo "fuzz: $t FAILED" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rm -f "$log"
    echo "fuzz: $t runs=${runs:-?} seconds=$seconds"
done
