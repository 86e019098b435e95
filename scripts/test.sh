#!/usr/bin/env bash
# Runs every test of the project. On a fresh machine it first installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every run here builds from scratch (CI clones afresh): incremental caches would only take disk.
export CARGO_INCREMENTAL=0

step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check
# The fuzz crate is a workspace of its own (cargo-fuzz), so it is checked by name.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "no_std crates build for the Cortex-M3 (thumbv7m-none-eabi)"
cargo build --release -p tek-proto -p tek-controller --target thumbv7m-none-eabi

step "fuzzing: every cargo-fuzz target for 20 s (docs/SECURITY.md)"
scripts/fuzz.sh 20

step "supply chain: cargo deny (deny.toml)"
cargo deny --log-level error check licenses bans sources
# The RustSec advisory database is fetched from github.com, which this project's machines and CI
# cannot reach (docs/SECURITY.md, "Supply chain"), and the tests send nothing off this machine:
# advisories are checked only when asked for, where the database can be fetched.
if [ "${TEK_DENY_ADVISORIES:-0}" = 1 ]; then
    cargo deny --log-level error check advisories
else
    echo "cargo deny advisories: not checked here (set TEK_DENY_ADVISORIES=1 where github.com is reachable)" >&2
fi

step "test vectors of docs/PROTOCOL.md, recomputed independently (Python)"
python3 scripts/check_vectors.py docs/PROTOCOL.md

step "workspace tests"
cargo test --workspace

step "firmware: build, size, QEMU end-to-end"
(cd firmware && cargo fmt --check && cargo clippy --release --quiet -- -D warnings \
    && cargo clippy --release --quiet --features rtu-test --target-dir target/rtu-test -- -D warnings)
scripts/qemu-e2e.sh   # ends with scripts/firmware-size.sh on the measured stack
scripts/gsm-e2e.sh    # GSM failover through `tek modem` and back; ends with the size budget too
scripts/rtu-e2e.sh    # the Modbus RTU master on UART2 against `tek meter` (a test build of the firmware)
# The two power-cut tests spend most of their ~5 and ~4 minutes waiting for a kill at a random
# instant, each in namespaces of its own: they run side by side, their output shown in turn.
#   modbus-e2e: a channel map from `tek serve` run by the firmware against `tek meter`, then
#               20 power cuts while logging the map and the backlog drained
#   flashlog-e2e: the five-channel log in flash, 20 power cuts, the backlog drained
scripts/e2e-parallel.sh scripts/modbus-e2e.sh scripts/flashlog-e2e.sh
