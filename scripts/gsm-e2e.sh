#!/usr/bin/env bash
# End-to-end test of the GSM/3G failover (issue 10): the LM3S6965 firmware in QEMU with its
# Ethernet (QEMU user-mode network) and a modem on UART1 (`tek modem`, QEMU's second -serial),
# against a real `tek serve`.
#
# Network, all inside a private network + mount namespace (unshare), as in scripts/qemu-e2e.sh:
#   Ethernet: slirp NATs the firmware's UDP to 10.0.2.2 onto 127.0.0.1, where `tek serve`
#             listens (0.0.0.0:8844); DNS through slirp to firmware/tests/dns_stub.py on
#             127.0.0.1:53.
#   GSM:      `tek modem` answers AT commands on 127.0.0.1:7700 (QEMU connects UART1 there),
#             runs the network side of PPP (device 10.64.0.2, gateway and DNS 10.64.0.1) and
#             relays the device's UDP to 127.0.0.2 (same port): tek serve, and a second DNS stub
#             on 127.0.0.2:53.
#   Cutting Ethernet: an nftables rule drops UDP to 127.0.0.1:8844 (slirp's path to the server;
#             the modem's path goes to 127.0.0.2) — "the test stops forwarding".
#
# Steps (the test fails at the first one missed):
#   1. device 7 with config v1: servers live.tek.test, 10 s logging/batching, 15 s keepalive,
#      GSM failover after 30 s, rollback after 60 s, APN "internet"; boot with `gsm probe=40`
#   2. session over Ethernet; the server's status says Ethernet; telemetry stored
#   3. Ethernet cut: the controller fails over to GSM (modem attach, PPP, DNS over GSM, session);
#      the server's status says GSM with the signal and radio "data"; telemetry keeps arriving
#   4. a wrong APN (v2, refused by the network) is rolled back by the device: the server shows
#      v2 rolled back, the device is back on GSM with APN "internet"
#   4b. the signal is lost (call dropped, radio searching), then the modem stops answering AT
#      commands (the driver power-cycles it) until it answers again: GSM session again
#   5. Ethernet back: the probe finds it, the controller returns, the modem hangs up; the
#      server's status says Ethernet again
#   6. nothing lost: every record the device logged was acknowledged, and stored by the server
#   7. scripts/firmware-size.sh with the stack high-water mark of this run
#
# Usage: scripts/gsm-e2e.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. "$root/scripts/e2e-lib.sh"
if [ "${TEK_E2E_NS:-}" != 1 ]; then
    e2e_enter gsm-e2e "qemu-system-arm python3 unshare ip nft curl" "--net --mount" "" "$@"
fi
e2e_logs=("firmware console|fw.log|80" "tek modem|modem.log|30" "tek serve|serve.log|20")
e2e_start gsm-e2e "$@"
tek=${TEK_BIN:?}
fw="$root/firmware/target/thumbv7m-none-eabi/release/tek-firmware"
config_state() { "$tek" device config --data "$work/data" --id 7 | head -1; }
config_is() { config_state | grep -q "version $1 ($2), applied $3"; }
# transport_is ethernet|gsm: the device's latest status in the server's database (tek-proto's
# 55-byte status: byte 0 transport, 0 Ethernet / 1 GSM); for GSM also radio "data" and a signal.
transport_is() {
    python3 - "$work/data/tek.db" "$1" <<'PY'
import sqlite3, sys
db, want = sys.argv[1], sys.argv[2]
row = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
    "SELECT body FROM device_status WHERE device_id = 7").fetchone()
if row is None or len(row[0]) != 55:
    sys.exit(1)
sys.exit(0 if row[0][0] == (1 if want == "gsm" else 0) else 1)
PY
}
# The web UI's device page (an admin's session) shows the transport and the radio.
ui_shows() { # ui_shows REGEX
    curl -s -b "$work/cookies" "http://127.0.0.1:8080/devices/7" | grep -qE "$1"
}
modem_ctl() { # modem_ctl COMMAND -> the reply line
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 7701), timeout=5)
s.sendall(sys.argv[1].encode() + b"\n")
print(s.makefile().readline().strip())
PY
}
cut_ethernet() {
    nft add table inet cut
    nft add chain inet cut out '{ type filter hook output priority 0; }'
    nft add rule inet cut out ip daddr 127.0.0.1 udp dport 8844 drop
}
restore_ethernet() { nft delete table inet cut; }

# --- the namespace's network --------------------------------------------------------------------
e2e_dns live.tek.test=10.0.2.2
python3 "$root/firmware/tests/dns_stub.py" --listen 127.0.0.2:53 live.tek.test=10.0.2.2 \
    > "$work/dns-gsm.log" 2>&1 &
pids+=($!)
wait_for 5 "DNS stubs listening" grep -q listening "$work/dns-gsm.log"

# --- step 1: server, device, modem --------------------------------------------------------------
e2e_device gsm-pool
"$tek" device config --data "$work/data" --id 7 \
    --set servers=live.tek.test --set log_interval=10 --set batch=10 --set keepalive=15 \
    --set gsm_failover=30 --set rollback=60 --set gsm_apn=internet >/dev/null
"$tek" serve --data "$work/data" --udp 0.0.0.0:8844 --http 127.0.0.1:8080 > "$work/serve.log" 2>&1 &
pids+=($!)
wait_for 10 "tek serve up" curl -sf http://127.0.0.1:8080/healthz
printf 'gsm-e2e-password\n' | "$tek" user add --data "$work/data" --email ops@tek.test --admin >/dev/null
curl -s -c "$work/cookies" -H "Origin: http://127.0.0.1:8080" \
    --data-urlencode email=ops@tek.test --data-urlencode password=gsm-e2e-password \
    http://127.0.0.1:8080/login >/dev/null
"$tek" modem --listen 127.0.0.1:7700 --control 127.0.0.1:7701 --relay-to 127.0.0.2 \
    --refuse-apn wrong.apn > "$work/modem.log" 2>&1 &
pids+=($!)
wait_for 10 "tek modem listening" grep -q "tek modem listening" "$work/modem.log"

: > "$work/fw.log"
(cd "$work" && exec qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native \
    -netdev user,id=n0,net=10.0.2.0/24 -net nic,netdev=n0,model=stellaris \
    -serial null -serial tcp:127.0.0.1:7700 \
    -kernel "$fw" \
    -append "id=7 key=$key server=live.tek.test flash=$work/flash.bin gsm probe=40" \
    < /dev/null > "$work/fw.log" 2>&1) &
qemu_pid=$!
pids+=($qemu_pid)

# --- step 2: Ethernet ---------------------------------------------------------------------------
wait_for 10 "modem UART connected to tek modem" grep -q "device connected" "$work/modem.log"
wait_for 15 "session over Ethernet" console 'session: up with server #0 .* over Ethernet'
wait_for 15 "config v1 applied" console 'config: version 1 running'
wait_for 15 "server shows transport Ethernet" transport_is ethernet
wait_for 10 "web UI shows Ethernet, radio off" ui_shows 'data-field="transport">Ethernet<.*data-field="radio">off, signal unknown<'
wait_for 60 "telemetry stored over Ethernet" metric_ge tek_telemetry_records_stored_total 1

# --- step 3: Ethernet cut -> GSM -----------------------------------------------------------------
say "cutting the Ethernet path (UDP to 127.0.0.1:8844 dropped)"
cut_ethernet
stored_cut=$(metric tek_telemetry_records_stored_total)
wait_for 120 "modem powered up by the controller (failover)" console 'gsm: modem up'
wait_for 20 "modem registered" console 'radio: Registered'
wait_for 20 "PPP up over the modem" console 'gsm: PPP up, address 10\.64\.0\.2'
wait_for 20 "server name resolved over GSM" console 'dns: .* -> 10\.0\.2\.2 \(GSM\)'
wait_for 30 "session over GSM" console 'session: up with server #0 .* over GSM'
console 'transport: GSM \(failovers 1 returns 0\)' || fail "no switch to GSM reported"
wait_for 20 "server shows transport GSM" transport_is gsm
wait_for 10 "web UI shows GSM, radio data, signal 20" ui_shows 'data-field="transport">GSM<.*data-field="radio">data, signal 20/31<'

wait_for 60 "telemetry stored over GSM" metric_ge tek_telemetry_records_stored_total $((stored_cut + 2))
grep -q "data call: IPCP up" "$work/modem.log" || fail "tek modem did not see IPCP up"

# --- step 4: a wrong APN is rolled back ---------------------------------------------------------------
say "config v2: APN wrong.apn (the network refuses it)"
"$tek" device config --data "$work/data" --id 7 --set gsm_apn=wrong.apn >/dev/null
wait_for 30 "wrong APN applied, dial refused" console 'gsm: dial failed \(NO CARRIER\), APN "wrong\.apn"'
# rollback=60: the device restores v1 60 s after v2 took effect without reaching a server.
wait_for 150 "device rolled back to the working APN" bash -c "[ \$(grep -cE 'gsm: CONNECT \\(APN \"internet\"\\)' '$work/fw.log') -ge 2 ]"
wait_for 60 "server shows v2 rolled back" bash -c "'$tek' device config --data '$work/data' --id 7 | head -1 | grep -q 'version 2 (rolled'"
wait_for 60 "session over GSM again" bash -c "[ \$(grep -cE 'session: up with server #0 .* over GSM' '$work/fw.log') -ge 2 ]"

# --- step 4b: lost signal, then a modem that stops answering ----------------------------------------
say "signal lost (tek modem: signal 0)"
modem_ctl "signal 0" >/dev/null
wait_for 20 "call dropped, radio searching" console 'radio: Searching signal 0'
say "modem hangs (mute), signal back"
modem_ctl mute >/dev/null
modem_ctl "signal 20" >/dev/null
wait_for 30 "unanswered AT commands: modem power-cycled" console 'gsm: modem not answering, power-cycling it'
modem_ctl unmute >/dev/null
wait_for 60 "data call again after the modem answered" bash -c "[ \$(grep -c 'gsm: PPP up' '$work/fw.log') -ge 3 ]"
wait_for 30 "session over GSM again" bash -c "[ \$(grep -cE 'session: up with server #0 .* over GSM' '$work/fw.log') -ge 3 ]"

# --- step 5: Ethernet back -----------------------------------------------------------------------
say "restoring the Ethernet path"
restore_ethernet
# probe=40: the controller tries Ethernet every 40 s while on GSM.
wait_for 90 "back on Ethernet (probe answered)" console 'transport: Ethernet \(failovers 1 returns 1\)'
wait_for 15 "modem hung up and off" bash -c "[ \$(grep -c 'radio: Off' '$work/fw.log') -ge 2 ]"
grep -q "data call: hung up by the device" "$work/modem.log" || fail "tek modem saw no hang-up"
wait_for 20 "server shows transport Ethernet again" transport_is ethernet
wait_for 10 "web UI shows Ethernet again, radio off" ui_shows 'data-field="transport">Ethernet<.*data-field="radio">off'


# --- step 6: nothing lost ---------------------------------------------------------------------------
# Every record the device logged was acknowledged (stored) — none lost in either switch.
all_acked() {
    tail -n 200 "$work/fw.log" | grep -E '^\[.*stats: ' | tail -1 \
        | awk '{ for (i = 1; i < NF; i++) { if ($i == "acked") a = $(i+1); if ($i == "logged") l = $(i+1) } exit !(a == l && l > 0) }'
}
wait_for 60 "every record the device logged acknowledged by the server" all_acked
logged=$(grep -oE 'logged [0-9]+' "$work/fw.log" | tail -1 | awk '{print $2}')
metric_ge tek_telemetry_records_stored_total "$logged" || fail "server stored fewer than the $logged records logged"
say "records logged $logged, stored $(metric tek_telemetry_records_stored_total); radio changes $(console_count 'radio: ')"
say "all GSM steps passed; size budget with the stack measured in this run:"
"$root/scripts/firmware-size.sh" --no-build --stack-log "$work/fw.log" || fail "size budget missed"
say "gsm-e2e: PASSED"
