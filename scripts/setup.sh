#!/usr/bin/env bash
# Installs what the tests need when it is missing, so the test command works on a fresh machine.
# Safe to run again: every step checks first.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
need_deb() { # need_deb COMMAND PACKAGE...
    local cmd=$1; shift
    if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Rust: the controller crates and the firmware build for the Cortex-M3.
if ! rustup target list --installed | grep -qx thumbv7m-none-eabi; then
    log "rustup target add thumbv7m-none-eabi"
    rustup target add thumbv7m-none-eabi
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done

# The fuzz targets are kept building: cargo-fuzz on nightly.
if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain (cargo fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

# Supply chain: cargo-deny checks licences, banned and duplicate crates, sources (deny.toml).
if ! cargo deny --version >/dev/null 2>&1; then
    log "cargo install cargo-deny"
    cargo install cargo-deny --locked --quiet
fi

# The NAT test (crates/tek/tests/nat.rs): netfilter masquerade in network namespaces, conntrack
# to flush its mappings.
need_deb nft nftables
need_deb conntrack conntrack
need_deb sysctl procps

# The time-zone database: the schedules' POSIX TZ rules come from its files (server/src/tzdb.rs).
if [ ! -f /usr/share/zoneinfo/Europe/Paris ]; then
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    log "installing tzdata"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tzdata >/dev/null
fi

# A real MQTT broker for the MQTT tests (crates/sim/tests/mqtt_e2e.rs starts its own on a free
# loopback port; the packaged service is not used).
need_deb mosquitto mosquitto

# QEMU for the firmware end-to-end tests, and what scripts/qemu-e2e.sh and
# scripts/firmware-size.sh use around it (namespace, loopback, metrics, ELF sections).
need_deb qemu-system-arm qemu-system-arm
need_deb unshare util-linux
need_deb ip iproute2
need_deb curl curl
need_deb readelf binutils

# Python with the `cryptography` package for scripts/check_vectors.py, the independent check of the
# test vectors in docs/PROTOCOL.md.
need_deb python3 python3
if ! python3 -c "import cryptography" >/dev/null 2>&1; then
    log "installing the Python cryptography package"
    pip install --quiet cryptography 2>/dev/null \
        || python3 -m pip install --quiet cryptography 2>/dev/null \
        || { as_root apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends python3-cryptography >/dev/null; }
fi

# PostgreSQL server binaries (initdb, postgres; Debian keeps them off the PATH in
# /usr/lib/postgresql/*/bin) for the tests of the shared-database backend. The tests start their
# own throwaway server on a loopback port, so no service is configured here.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_deb initdb postgresql
fi

# Headless Chromium and its WebDriver for the web UI's browser test (crates/tek/tests/browser.rs).
need_deb chromium chromium
need_deb chromedriver chromium-driver
