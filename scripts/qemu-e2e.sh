#!/usr/bin/env bash
# End-to-end test of the controller firmware (issue 7): the LM3S6965 image in QEMU against a real
# `tek serve`, with real DHCP and DNS.
#
# Network (see firmware/README.md, "The QEMU test network"): the whole test runs in its own
# network + mount namespace (unshare), so nothing leaves the machine and port numbers are free.
# QEMU's user-mode network (slirp) gives the firmware a DHCP lease (10.0.2.15) and forwards its UDP
# to 10.0.2.2 to the namespace's loopback, where `tek serve` listens. slirp forwards DNS queries
# (to 10.0.2.3) to the resolver in /etc/resolv.conf, which in this namespace is a bind-mounted file
# naming 127.0.0.1, where firmware/tests/dns_stub.py answers for the test names:
#   dead.tek.test -> 10.0.2.2 (a port where nothing listens: the server that does not answer)
#   live.tek.test -> 10.0.2.2 (tek serve on 8844)
#
# Steps, each with a time limit (the test fails at the first one missed):
#   1. provision device 7 (tek device add), config v1: servers, 10 s logging and batching
#   2. boot the firmware (identity on the semihosting command line, flash = a host file):
#      DHCP lease, DNS of both names, 3 unanswered Hellos to dead.tek.test, session with
#      live.tek.test; config v1 applied; the server's stored status says DHCP, 10.0.2.15;
#      telemetry stored by the server and acknowledged
#   3. setpoint change (config v2): applied on the device, synced on the server
#   4. fixed IP (config v3): saved by the device for the next reset (applied_at_reset)
#   5. restart with the HALT input held: the stored fixed IP is ignored, DHCP is used, and the
#      device reaches the server again (new boot, new session, status flags DHCP + HALT, more
#      telemetry); the 45 s run matches the host clock (SysTick calibration)
#   6. stack high-water mark of the runs -> scripts/firmware-size.sh --stack-log
#
# Usage: scripts/qemu-e2e.sh [--keep]   (--keep leaves the work directory for inspection)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. "$root/scripts/e2e-lib.sh"
if [ "${TEK_E2E_NS:-}" != 1 ]; then
    e2e_enter qemu-e2e "qemu-system-arm python3 unshare ip" "--net --mount" "" "$@"
fi
e2e_logs=("firmware console (last run)|fw.log|60" "tek serve|serve.log|30" "dns|dns.log|20")
e2e_start qemu-e2e "$@"
tek=${TEK_BIN:?}
fw="$root/firmware/target/thumbv7m-none-eabi/release/tek-firmware"
config_state() { "$tek" device config --data "$work/data" --id 7 | head -1; }
config_is() { config_state | grep -q "version $1 ($2), applied $3"; }
# status_is FLAGS IP: the device's latest status in the server's database has exactly these flags
# (bit 0 DHCP, bit 1 HALT, bit 2 rolled back; bit 3, clock synchronised, is ignored) and this
# address. The body is tek-proto's 55-byte status (flags at byte 1, address at bytes 2..6).
status_is() {
    python3 - "$work/data/tek.db" "$1" "$2" <<'PY'
import sqlite3, sys
db, flags, ip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
row = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
    "SELECT body FROM device_status WHERE device_id = 7").fetchone()
if row is None or len(row[0]) != 55:
    sys.exit(1)
body = row[0]
seen = ".".join(str(b) for b in body[2:6])
sys.exit(0 if (body[1] & 0x07) == flags and seen == ip else 1)
PY
}

# --- the namespace's network: loopback, resolver, DNS stub ---------------------------------------
e2e_dns dead.tek.test=10.0.2.2 live.tek.test=10.0.2.2

# --- step 1: server and device ------------------------------------------------------------------
e2e_device qemu-pool
"$tek" device config --data "$work/data" --id 7 \
    --set servers=dead.tek.test:8845,live.tek.test \
    --set log_interval=10 --set batch=10 --set keepalive=15 >/dev/null
"$tek" serve --data "$work/data" --udp 127.0.0.1:8844 --http 127.0.0.1:8080 > "$work/serve.log" 2>&1 &
pids+=($!)
wait_for 10 "tek serve up" curl -sf http://127.0.0.1:8080/healthz

# --- step 2: first boot ---------------------------------------------------------------------------
boot_firmware() { # boot_firmware LOGFILE EXTRA_ARGS...
    local log=$1; shift
    : > "$log"
    ln -sf "$log" "$work/fw.log"
    (cd "$work" && exec qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic \
        -semihosting-config enable=on,target=native \
        -netdev user,id=n0,net=10.0.2.0/24 -net nic,netdev=n0,model=stellaris \
        -kernel "$fw" \
        -append "id=7 key=$key server=dead.tek.test:8845 server=live.tek.test flash=$work/flash.bin $*" \
        < /dev/null > "$log" 2>&1) &
    qemu_pid=$!
    pids+=($qemu_pid)
}
stop_firmware() {
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
}

say "boot 1: factory servers dead.tek.test:8845, live.tek.test"
boot_firmware "$work/fw1.log"
wait_for 10 "DHCP lease" console 'eth: DHCP lease 10\.0\.2\.15/24'
wait_for 10 "dead.tek.test resolved" console 'dns: dead\.tek\.test -> 10\.0\.2\.2'
wait_for 15 "3 unanswered Hellos, then live.tek.test resolved" console 'dns: live\.tek\.test -> 10\.0\.2\.2'
console 'stats: hellos 3 sessions 0' || fail "expected three Hellos before the failover"
wait_for 10 "session with live.tek.test (server #1)" console 'session: up with server #1'
wait_for 10 "config v1 applied on the device" console 'config: version 1 running'
wait_for 10 "config v1 synced on the server" config_is 1 applied 1
wait_for 10 "server shows status: DHCP, 10.0.2.15, no HALT" status_is 1 10.0.2.15
# The first record is logged one logging interval after power-up (60 s: the first boot runs the
# factory defaults until config v1 arrives), and batched at once in the session.
wait_for 80 "telemetry stored by the server" metric_ge tek_telemetry_records_stored_total 1
wait_for 10 "telemetry acknowledged to the device" console 'records sent [1-9][0-9]* acked [1-9]'
metric_ge tek_acks_sent_total 1 || fail "server counted no Ack sent"

# --- step 3: setpoint change ---------------------------------------------------------------------------
"$tek" device config --data "$work/data" --id 7 --set setpoint=28.5 >/dev/null
wait_for 15 "setpoint 28.5 applied on the device (config v2)" console 'config: version 2 running \(setpoint 28\.50'
wait_for 10 "config v2 synced on the server" config_is 2 applied 2

# --- step 4: fixed IP, effective at the next reset ---------------------------------------------------------
"$tek" device config --data "$work/data" --id 7 --set ethernet=10.0.2.50/24,10.0.2.2,10.0.2.3 >/dev/null
wait_for 15 "fixed IP saved for the next reset (config v3)" config_is 3 applied_at_reset 3
wait_for 10 "fixed IP persisted in flash" console 'config: version 3 running.*fixed IP 10\.0\.2\.50/24 stored'
stored_before=$(metric tek_telemetry_records_stored_total)
sessions_before=$(metric tek_sessions_established_total)
stop_firmware

# --- step 5: restart with HALT held ---------------------------------------------------------------------
say "boot 2: HALT held"
boot_firmware "$work/fw2.log" halt run=45
# Host time of the firmware's first line (its clock reads ~0 then), for the clock check below.
for _ in $(seq 100); do [ -s "$work/fw2.log" ] && grep -q '^\[' "$work/fw2.log" && break; sleep 0.05; done
boot2_start=$(date +%s.%N)
wait_for 10 "fixed IP found in flash at power-up" console 'flash: record .*config version 3, fixed IP 10\.0\.2\.50/24 stored'
wait_for 5 "HALT seen at power-up" console 'halt: HALT held at power-up'
wait_for 5 "LED blinks fast (HALT pattern)" console 'led: Halt'
wait_for 5 "Ethernet configured for DHCP despite the stored fixed IP" console 'eth: configure DHCP'
console 'eth: configure fixed IP' && fail "the fixed IP was used although HALT was held"
wait_for 10 "DHCP lease after HALT" console 'eth: DHCP lease 10\.0\.2\.15/24'
wait_for 25 "session after HALT" console 'session: up with server'
wait_for 10 "server saw the new session" metric_ge tek_sessions_established_total $((sessions_before + 1))
wait_for 10 "server shows status: DHCP and HALT, 10.0.2.15" status_is 3 10.0.2.15
wait_for 40 "telemetry of the second boot stored" metric_ge tek_telemetry_records_stored_total $((stored_before + 1))

# --- step 6: the end of the run reports the stack high-water mark ---------------------------------------
wait_for 40 "firmware run ended cleanly" console 'run: .* elapsed, stopping'
# The SysTick calibration, against the host's clock: the firmware's 45 s must be 45 s (+-2 %;
# both ends of the measurement are seen within 0.2 s). A 12 MHz assumption on QEMU's 12.5 MHz
# reset clock would be 4 % off.
python3 -c "
import sys, time
took = time.time() - $boot2_start
print(f'firmware 45.0 s took {took:.1f} s of host time', file=sys.stderr)
sys.exit(0 if 44.1 <= took <= 45.9 else 1)" || fail "firmware clock off against the host clock"
wait "$qemu_pid" || fail "QEMU exited with an error"
say "all end-to-end steps passed; size budget with the measured stack:"
cat "$work/fw1.log" "$work/fw2.log" > "$work/stack.log"
"$root/scripts/firmware-size.sh" --no-build --stack-log "$work/stack.log" || fail "size budget missed"
say "qemu-e2e: PASSED"
