#!/usr/bin/env bash
# Runs end-to-end scripts side by side and shows each one's output in full once all have ended
# (never interleaved); fails if any failed, naming which.
#
#   scripts/e2e-parallel.sh SCRIPT...
set -uo pipefail
logs=$(mktemp -d /tmp/tek-e2e-parallel.XXXXXX)
trap 'rm -rf "$logs"' EXIT
pids=()
for script in "$@"; do
    "$script" >"$logs/$(basename "$script").log" 2>&1 &
    pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
    script=${*:i+1:1}
    wait "${pids[$i]}" || failed+=("$script")
    echo "==> $script"
    cat "$logs/$(basename "$script").log"
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "e2e-parallel: FAILED: ${failed[*]}" >&2
    exit 1
fi
