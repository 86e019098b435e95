#!/usr/bin/env bash
# End-to-end test of the Modbus RTU master (issue 17, point 2): the LM3S6965 firmware in QEMU,
# built with the `rtu-test` feature (a fixed channel map, sampled every 2 s, one retry per read),
# reads an emulated Eastron SDM630 (address 1) and ControlBox TB260 (address 2) from `tek meter`
# over UART2, QEMU's third -serial (19200 baud 8E1, as the map's bus says).
#
# Everything runs inside a private network namespace (unshare): tek meter listens on its
# loopback, the firmware's Ethernet (slirp) reaches nothing (no server: this test reads the
# firmware's console, not a server's database).
#
# Steps (the test fails at the first one missed; every wait is bounded):
#   1. the firmware samples the map: the values equal tek meter's script after the map's
#      conversions (voltage x10, power, energy kWh x1000, temperature 0.1 degC x10) and the
#      board input (the simulated water temperature) has a value
#   2. the script's second set of values (at 20 s) arrives, converted
#   3. one corrupted answer (bad CRC) is retried: no gap, no fault (tek meter's counters show the
#      extra request)
#   4. the TB260 answers with exception 2: its channel has no value, counted as exception 2, and
#      the read is not repeated (an exception is the slave's answer); cleared: its value is back
#   5. the bus unplugged (tek meter's control socket): the meter channels have no value ("none",
#      never 0) and count timeouts; the board input keeps its value
#   6. plugged back: the values are back, and the fault counters stop growing
#
# Usage: scripts/rtu-e2e.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. "$root/scripts/e2e-lib.sh"
if [ "${TEK_E2E_NS:-}" != 1 ]; then
    # A target directory of its own: the feature build must not replace the normal image that
    # scripts/firmware-size.sh measures.
    e2e_enter rtu-e2e "qemu-system-arm python3 unshare ip" "--net" \
        "--features rtu-test --target-dir target/rtu-test" "$@"
fi
e2e_logs=("firmware console|fw.log|40" "tek meter|meter.log|20")
e2e_start rtu-e2e "$@"
tek=${TEK_BIN:?}
fw="$root/firmware/target/rtu-test/thumbv7m-none-eabi/release/tek-firmware"
# The firmware's sample lines: "rtu: sample N: V0 V1 V2 V3 V4 (requests R)".
samples() { grep -oE 'rtu: sample [0-9]+: [^(]*' "$work/fw.log" || true; }
last_sample() { samples | tail -1 | sed 's/.*: //; s/ *$//'; }
sample_count() { samples | wc -l; }
# sample_after N REGEX: a sample numbered above N whose values match REGEX.
sample_after() {
    samples | awk -v n="$1" -v re="$2" '{ k = $3; sub(":", "", k); v = $0; sub(/^[^:]*: [^:]*: /, "", v)
        sub(/ +$/, "", v); if (k + 0 > n + 0 && v ~ re) f = 1 } END { exit !f }'
}
sample_no() { samples | tail -1 | awk '{ k = $3; sub(":", "", k); print k }'; }
meter_ctl() { # meter_ctl COMMAND -> the reply line
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 7711), timeout=5)
s.sendall(sys.argv[1].encode() + b"\n")
print(s.makefile().readline().strip())
PY
}
# requests SLAVE: tek meter's request counter of a slave.
requests() { meter_ctl status | grep -oE "slave $1 [a-z0-9]+ requests=[0-9]+" | sed 's/.*=//'; }

ip link set lo up

# --- the bus: an SDM630 at 1, a TB260 at 2, scripted values ----------------------------------------
cat > "$work/script.txt" <<'EOF'
# SECONDS SLAVE QUANTITY VALUE
0  1 voltage_l1 231.4
0  1 power      1500.5
0  1 total_kwh  12345.5
0  2 temperature 27.3
20 1 voltage_l1 229.8
20 1 power      -750.25
20 1 total_kwh  12346.75
20 2 temperature -4.6
EOF
# After the map's conversions (round half away from zero): voltage x10 (0.1 V), power (W),
# total energy x1000 (Wh), temperature 0.1 degC x10 (0.01 degC).
first='^2314 1501 12345500 2730 -?[0-9]+$'
second='^2298 -750 12346750 -460 -?[0-9]+$'
"$tek" meter --listen 127.0.0.1:7710 --control 127.0.0.1:7711 --slave 1=sdm630 --slave 2=tb260 \
    --baud 19200 --parity even --script "$work/script.txt" > "$work/meter.log" 2>&1 &
pids+=($!)
wait_for 10 "tek meter listening" grep -q "tek meter listening" "$work/meter.log"

: > "$work/fw.log"
# nodelay: with Nagle's algorithm QEMU's socket sends a request's first byte alone and the rest
# only when that is acknowledged (~40 ms later, delayed ACK): a gap tek meter rightly takes for
# the 3.5-character silence that ends (and here drops) a frame. A real line has no such gap.
(cd "$work" && exec qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native \
    -netdev user,id=n0,restrict=on -net nic,netdev=n0,model=stellaris \
    -serial null -serial null -serial tcp:127.0.0.1:7710,nodelay=on \
    -kernel "$fw" \
    -append "id=7 key=000102030405060708090a0b0c0d0e0f server=10.0.2.2 run=170" \
    < /dev/null > "$work/fw.log" 2>&1) &
pids+=($!)

# --- step 1: the first values ---------------------------------------------------------------------
wait_for 15 "the RTU master is up on UART2" grep -q 'rtu: Modbus RTU master on UART2, 5 channels' "$work/fw.log"
wait_for 20 "values as scripted, converted (2314 1501 12345500 2730, board input)" sample_after 0 "$first"
grep -q 'fatal' "$work/fw.log" && fail "the firmware stopped: $(grep fatal "$work/fw.log")"

# --- step 2: the script's second values (20 s after tek meter started) -----------------------------
wait_for 40 "second values as scripted (2298 -750 12346750 -460)" sample_after 0 "$second"

# --- step 3: one bad CRC is retried ----------------------------------------------------------------
# Counters are read right after a sample line: the bus is quiet then until the next sample (2 s).
after_a_sample() { local k; k=$(sample_no); wait_for 5 "$1" sample_after "$k" '.'; }
fw_requests() { grep -oE "rtu: sample $1: .*\(requests [0-9]+\)" "$work/fw.log" | grep -oE '[0-9]+\)$' | tr -d ')'; }
after_a_sample "a sample completed (before)"
n=$(sample_no)
before=$(requests 2)
reply=$(meter_ctl "corrupt 2")
[[ $reply == ok:* ]] || fail "tek meter refused 'corrupt 2': $reply"
wait_for 10 "the corrupted answer went out" bash -c "! python3 - <<'PY' | grep -q corrupt=next
import socket
s = socket.create_connection(('127.0.0.1', 7711), timeout=5)
s.sendall(b'status\n')
print(s.makefile().readline())
PY"
after_a_sample "a sample completed (after)"
m=$(sample_no)
after=$(requests 2)
# One request per sample to slave 2, plus the retry of the corrupted one; the firmware's own
# count: four reads per sample, plus the retry.
[ $((after - before)) = $((m - n + 1)) ] \
    || fail "slave 2 got $((after - before)) requests in $((m - n)) samples (want one retry)"
[ $(( $(fw_requests "$m") - $(fw_requests "$n") )) = $((4 * (m - n) + 1)) ] \
    || fail "the firmware sent $(( $(fw_requests "$m") - $(fw_requests "$n") )) requests in $((m - n)) samples (want 4 each + 1 retry)"
samples | awk -v n="$n" '{ k = $3; sub(":", "", k); if (k + 0 > n + 0) print }' | grep -q none \
    && fail "a gap after one corrupted answer: the retry did not cover it"
grep -q 'rtu: faults' "$work/fw.log" && fail "a fault counted for a retried read: $(grep 'rtu: faults' "$work/fw.log" | tail -1)"
say "ok: one bad CRC retried ($((after - before)) requests to slave 2 in $((m - n)) samples), no gap, no fault"

# --- step 4: an exception answer -------------------------------------------------------------------
after_a_sample "a sample completed (before the exception)"
n=$(sample_no)
before=$(requests 2)
reply=$(meter_ctl "exception 2 2")
[[ $reply == ok:* ]] || fail "tek meter refused 'exception 2 2': $reply"
wait_for 10 "an exception is no value for the TB260's channel" sample_after "$n" '^2298 -750 12346750 none -?[0-9]+$'
wait_for 5 "counted as exception 2" grep -qE 'rtu: faults ch3 x1 Exception\(2\)$' "$work/fw.log"
after_a_sample "a sample completed (after the exception)"
m=$(sample_no)
after=$(requests 2)
[ $((after - before)) = $((m - n)) ] \
    || fail "slave 2 got $((after - before)) requests in $((m - n)) samples: an exception must not be repeated"
reply=$(meter_ctl "clear 2")
[[ $reply == ok:* ]] || fail "tek meter refused 'clear 2': $reply"
n=$(sample_no)
wait_for 10 "cleared: the TB260's value is back" sample_after "$n" "$second"

# --- step 5: the bus unplugged -----------------------------------------------------------------------
reply=$(meter_ctl unplug)
[[ $reply == ok:* ]] || fail "tek meter refused 'unplug': $reply"
n=$(sample_no)
wait_for 15 "meter channels without value, the board input kept" sample_after "$n" '^none none none none -?[0-9]+$'
wait_for 5 "timeouts counted per channel" grep -qE 'rtu: faults ch0 x[0-9]+ Timeout ch1 x[0-9]+ Timeout ch2 x[0-9]+ Timeout ch3 x[0-9]+ Timeout$' "$work/fw.log"
samples | awk -v n="$n" '{ k = $3; sub(":", "", k); if (k + 0 > n + 0) print }' \
    | grep -E ': (0 |.* 0 )' && fail "a zero while unplugged (a failed read must be no value)"
m=$(sample_no)
wait_for 15 "still no value two samples later" sample_after $((m + 1)) '^none none none none -?[0-9]+$'

# --- step 6: plugged back ------------------------------------------------------------------------------
reply=$(meter_ctl plug)
[[ $reply == ok:* ]] || fail "tek meter refused 'plug': $reply"
n=$(sample_no)
wait_for 15 "values again after the plug" sample_after "$n" "$second"
faults=$(grep 'rtu: faults' "$work/fw.log" | tail -1)
m=$(sample_no)
wait_for 15 "two more samples with values" sample_after $((m + 1)) "$second"
[ "$(grep 'rtu: faults' "$work/fw.log" | tail -1)" = "$faults" ] || fail "fault counters still growing after the plug"
grep -q 'fatal' "$work/fw.log" && fail "the firmware stopped: $(grep fatal "$work/fw.log")"
say "rtu-e2e: PASSED ($(sample_count) samples; last faults: ${faults#*rtu: faults})"
