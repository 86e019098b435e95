# The harness the QEMU end-to-end scripts share (qemu-e2e.sh, gsm-e2e.sh, rtu-e2e.sh,
# modbus-e2e.sh, flashlog-e2e.sh), sourced at their start.
#
#   e2e_enter NAME "TOOLS" "UNSHARE FLAGS" "FIRMWARE BUILD ARGS" "$@"
#                            outside the namespace: checks the tools, builds the firmware and tek,
#                            and runs the script again inside its own namespaces (never returns)
#   e2e_logs=("title|file in the work directory|lines" ...)   what a failure shows
#   e2e_start NAME "$@"      work directory ($work), background pids ($pids), the cleanup trap
#                            (--keep keeps the work directory)
#   e2e_dns NAME=ADDR...     loopback up, the namespace's resolver at 127.0.0.1, the DNS stub
#                            (firmware/tests/dns_stub.py) answering for NAMEs
#   e2e_device NAME          device 7 provisioned in $work/data as NAME; its key in $key
#   say, fail, wait_for LIMIT_S DESCRIPTION COMMAND...   progress lines stamped with the run time
#   console REGEX, console_count REGEX                   the firmware's console ($work/fw.log)
#   metric NAME, metric_ge NAME N                        tek serve's /metrics on 127.0.0.1:8080
#   e2e_boot_firmware LOG [QEMU ARGS...], e2e_power_cut  the firmware started ($qemu_pid), killed
#   e2e_start_serve, e2e_stop_serve                      tek serve over $work/data ($serve_pid; $tek)
#   e2e_instants SEED N LO HI, e2e_no_crash LOG WHAT      power-cut instants; a boot's console checked

e2e_enter() {
    local name=$1 tools=$2 unshare_flags=$3 build_args=$4 tool
    shift 4
    for tool in $tools; do
        command -v "$tool" >/dev/null || { echo "$name: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
    done
    echo "==> building the firmware${build_args:+ ($build_args)} and tek" >&2
    # The firmware has its own target directory (firmware/target), whatever the workspace uses.
    # shellcheck disable=SC2086 # the build arguments are words
    (cd firmware && env -u CARGO_TARGET_DIR cargo build --release --quiet $build_args)
    cargo build --quiet -p tek
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    export TEK_BIN="$target_dir/debug/tek"
    # Root inside, mapped to the caller.
    # shellcheck disable=SC2086 # the flags are words
    exec unshare $unshare_flags --map-root-user env TEK_E2E_NS=1 "$0" "$@"
}

e2e_start() {
    e2e_name=$1
    shift
    keep=
    [ "${1:-}" = --keep ] && keep=1
    work=$(mktemp -d "/tmp/tek-$e2e_name.XXXXXX")
    pids=()
    t0=$(date +%s.%N)
    trap e2e_cleanup EXIT
}

e2e_cleanup() {
    local rc=$? entry title file lines
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        for entry in "${e2e_logs[@]}"; do
            IFS='|' read -r title file lines <<<"$entry"
            echo "---- $title ----" >&2
            tail -n "$lines" "$work/$file" 2>/dev/null >&2 || true
        done
        echo "$e2e_name: FAILED (work directory $work)" >&2
    elif [ -z "$keep" ]; then
        rm -rf "$work"
    else
        echo "$e2e_name: work directory kept: $work" >&2
    fi
    exit $rc
}

elapsed() { python3 -c "import time; print(f'{time.time() - $t0:6.1f}')"; }
say() { printf '[%s s] %s\n' "$(elapsed)" "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

# wait_for LIMIT_S DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit} s"
        sleep 0.2
    done
    say "ok: $what"
}

console() { grep -qE "$1" "$work/fw.log"; }
console_count() { grep -cE "$1" "$work/fw.log" || true; }
metric() { # metric NAME -> value (0 if absent)
    curl -s "http://127.0.0.1:8080/metrics" | awk -v n="$1" '$1 == n { print int($2); f = 1 } END { if (!f) print 0 }'
}
metric_ge() { [ "$(metric "$1")" -ge "$2" ]; }

e2e_dns() {
    ip link set lo up
    echo "nameserver 127.0.0.1" > "$work/resolv.conf"
    mount --bind "$work/resolv.conf" /etc/resolv.conf
    python3 "$root/firmware/tests/dns_stub.py" --listen 127.0.0.1:53 "$@" > "$work/dns.log" 2>&1 &
    pids+=($!)
    wait_for 5 "DNS stub listening" grep -q listening "$work/dns.log"
}

e2e_device() {
    "$tek" device add --data "$work/data" --id 7 --name "$1" --out "$work/fleet.toml" >/dev/null
    key=$(sed -n 's/^key = "\([0-9a-f]\{32\}\)".*/\1/p' "$work/fleet.toml")
    [ ${#key} = 32 ] || fail "no key in the fleet file"
}

# e2e_boot_firmware LOGFILE [QEMU ARG...]: boots "$fw" as device 7 (key from e2e_device) on the
# flash files in "$work", console into LOGFILE (fw.log points at it), the QEMU arguments given
# (e.g. serial ports) added; sets qemu_pid. A power cut is `kill -KILL "$qemu_pid"`.
qemu_pid=
e2e_boot_firmware() {
    local log=$1
    shift
    : > "$log"
    ln -sf "$log" "$work/fw.log"
    (cd "$work" && exec qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic \
        -semihosting-config enable=on,target=native \
        -netdev user,id=n0,net=10.0.2.0/24 -net nic,netdev=n0,model=stellaris "$@" \
        -kernel "$fw" -append "id=7 key=$key server=live.tek.test flash=$work/flash.bin" \
        < /dev/null > "$log" 2>&1) &
    qemu_pid=$!
    pids+=($qemu_pid)
}

# e2e_power_cut: the firmware stopped at once, as a power cut stops the chip (flash as it is).
e2e_power_cut() {
    kill -KILL "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
}

# e2e_instants SEED N LO HI: N power-cut instants in seconds, uniform in [LO, HI], one a line, the
# same for the same seed (a failing run repeats with its printed seed).
e2e_instants() {
    python3 -c "
import random
r = random.Random($1)
for _ in range($2): print(f'{r.uniform($3, $4):.2f}')"
}

# e2e_no_crash LOG WHAT: fails naming WHAT if the firmware's console LOG shows a fatal error or a
# panic.
e2e_no_crash() {
    if grep -qE '^fatal|panic' "$1"; then
        fail "$2 failed: $(grep -E '^fatal|panic' "$1" | head -1)"
    fi
}

# e2e_start_serve / e2e_stop_serve: `tek serve` over $work/data on the namespace's loopback
# (UDP 8844, HTTP 8080), its output appended to serve.log, its pid in $serve_pid. The fold writes
# no chunks (TEK_FOLD_CHUNK_MIN_RECORDS=0): these scripts' checks read each stored record's boot and
# seq with plain SQL from the telemetry table, which a chunk's compressed records are not in.
e2e_start_serve() {
    TEK_FOLD_CHUNK_MIN_RECORDS=0 "$tek" serve --data "$work/data" --udp 127.0.0.1:8844 --http 127.0.0.1:8080 >> "$work/serve.log" 2>&1 &
    serve_pid=$!
    pids+=($serve_pid)
    wait_for 10 "tek serve up" curl -sf http://127.0.0.1:8080/healthz
}
e2e_stop_serve() {
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
}
