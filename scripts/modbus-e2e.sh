#!/usr/bin/env bash
# End-to-end test of server-defined channel maps on the firmware (issues 16/17): the normal
# LM3S6965 image in QEMU is a channel-capable device; `tek serve` gives it a channel map made
# the way a user makes one (an API token from `tek user token`, a template posted to
# /api/templates and applied to the device), and the firmware reads it from `tek meter` over
# UART2 (QEMU's third -serial): an Eastron SDM630 at address 1, a ControlBox TB260 at 2 and an
# Eastron SDM120 at 3, 19200 baud 8E1.
#
# Network and harness as scripts/flashlog-e2e.sh (its own namespaces, slirp, the DNS stub).
#
# Steps (the test fails at the first one missed; every wait is bounded):
#   1. device 7 (10 s logging) boots with the factory pool map: Telemetry 0x01 arrives, as
#      from any device of before
#   2. a template of 8 channels — three from the SDM630, two from the SDM120, one from the
#      TB260, the relays (board input 4) and a computed channel (SDM630 power + SDM120 power) —
#      with roles, applied to device 7 through the JSON API: the device takes it as
#      ConfigChunks and confirms it (the server shows the version synced), and persists it
#   3. wide records of that version arrive, equal to tek meter's scripted values after the
#      map's conversions, exactly (the computed channel too)
#   4. the SDM120 unplugged (`mute 3` on tek meter's control socket): records with "no value"
#      for its two channels and the computed one (never 0), the other channels unchanged; the
#      TB260 cooled, so the thermostat (on the map's water role) switches the heater and the
#      Status that goes with it carries ChannelFaults to the server
#      (tek_channel_fault_entries_total grows by the three failing channels), and the device's
#      channels in the API show those three with no value and their last error
#   5. plugged back (`clear 3`): values again
#   6. a power cut (QEMU killed) and a restart on the same flash: the channel map is restored
#      from its flash slots, and the new boot's wide records carry the values again
#   7. power cuts while logging the map (issue 17, point 4): the server stops (its port is
#      dead), then 20 boots on the same flash, each killed (SIGKILL: a power cut) at a random
#      instant between 8 and 12.5 s — around a boot's first wide record (the first record is
#      due one log interval, 10 s at least, after power-up; its page is erased and programmed
#      then), so a kill can land in a flash write; the server comes back, one more boot drains
#      the backlog (earlier boots' wide records as wide Backlog, PROTOCOL.md 18.2)
#   8. every wide record the firmware's console logged ("log: wide record B/S: ...") is stored
#      exactly once, value for value (none corrupt); none is missing except at most one per
#      cut boot (one being written when the power failed; the console prints a record once it
#      is in flash, so in practice none); each cut boot's sequence numbers run from 0 without a
#      gap, with at most one more record stored than its console showed
#
# The phases' timings are printed at the end.
#
# Usage: scripts/modbus-e2e.sh [--keep] [--kills N] [--seed S]   (the seed of the instants is
# printed; give it back to repeat a run's instants)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. "$root/scripts/e2e-lib.sh"
if [ "${TEK_E2E_NS:-}" != 1 ]; then
    e2e_enter modbus-e2e "qemu-system-arm python3 unshare ip curl" "--net --mount" "" "$@"
fi
e2e_logs=("firmware console (last run)|fw.log|40" "tek serve|serve.log|30" "tek meter|meter.log|10" "dns|dns.log|10")
kills=20
seed=$RANDOM$RANDOM
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --kills) kills=${2:?}; shift ;;
        --seed) seed=${2:?}; shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
e2e_start modbus-e2e "${args[@]}"
# Phase timings, printed at the end: phase NAME closes the phase before and names the next.
phases=()
phase_name=
phase_t=0
phase() {
    local now
    now=$(elapsed)
    [ -n "$phase_name" ] && phases+=("$(printf '%-44s %6.1f s' "$phase_name" "$(python3 -c "print($now - $phase_t)")")")
    phase_name=$1
    phase_t=$now
}
phase "setup (meter, server, user, token)"
tek=${TEK_BIN:?}
fw="$root/firmware/target/thumbv7m-none-eabi/release/tek-firmware"
api=http://127.0.0.1:8080/api

e2e_dns live.tek.test=10.0.2.2
e2e_device modbus-pool
"$tek" device config --data "$work/data" --id 7 \
    --set servers=live.tek.test --set log_interval=10 --set batch=10 --set keepalive=15 >/dev/null
# An administrator and an API token, as a user's script would get them.
printf 'a long enough password\n' \
    | "$tek" user add --data "$work/data" --email admin@tek.test --admin >/dev/null 2>"$work/cli.log"
token=$("$tek" user token --data "$work/data" --email admin@tek.test --name modbus-e2e 2>>"$work/cli.log" \
    | grep -oE '[0-9a-f]{64}' | head -1)
[ ${#token} = 64 ] || fail "no API token from tek user token"
call() { # call METHOD PATH [BODY] -> the answer's body; fails on an HTTP error
    curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "$api$2"
}

# --- the bus: SDM630 at 1, TB260 at 2, SDM120 at 3, constant scripted values ------------------
cat > "$work/script.txt" <<'EOF'
# SECONDS SLAVE QUANTITY VALUE
0 1 voltage_l1 231.4
0 1 power 1500.5
0 1 total_kwh 12345.5
0 2 temperature 27.3
0 3 power 230.25
0 3 total_kwh 42.125
EOF
"$tek" meter --listen 127.0.0.1:7710 --control 127.0.0.1:7711 \
    --slave 1=sdm630 --slave 2=tb260 --slave 3=sdm120 \
    --baud 19200 --parity even --script "$work/script.txt" > "$work/meter.log" 2>&1 &
pids+=($!)
wait_for 10 "tek meter listening" grep -q "tek meter listening" "$work/meter.log"
meter_ctl() { # meter_ctl COMMAND -> the reply line
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 7711), timeout=5)
s.sendall(sys.argv[1].encode() + b"\n")
print(s.makefile().readline().strip())
PY
}

e2e_start_serve

boot_firmware() { # boot_firmware LOGFILE
    # nodelay: see scripts/rtu-e2e.sh (Nagle would split a request into two frames).
    e2e_boot_firmware "$1" -serial null -serial null -serial tcp:127.0.0.1:7710,nodelay=on
}

# records VERSION: the wide records stored for device 7 under configuration VERSION ("all":
# under any), one line each: "BOOT SEQ: V0 V1 ..." ("none": the channel has no value in it).
records() {
    python3 - "$work/data/tek.db" "$1" <<'PY'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
def varints(b):
    out, i = [], 0
    while i < len(b):
        v = sh = 0
        while True:
            x = b[i]; i += 1
            v |= (x & 0x7F) << sh; sh += 7
            if not x & 0x80:
                break
        out.append((v >> 1) ^ -(v & 1))
    return out
query, args = "SELECT boot, seq, mask, vals FROM telemetry_wide WHERE device_id = 7", ()
if sys.argv[2] != "all":
    query, args = query + " AND config_version = ?", (int(sys.argv[2]),)
for boot, seq, mask, vals in con.execute(query + " ORDER BY boot, seq", args):
    chans = [8 * i + j for i, byte in enumerate(mask) for j in range(8) if byte >> j & 1]
    got = dict(zip(chans, varints(vals)))
    print(f"{boot} {seq}:", " ".join(str(got.get(c, "none")) for c in range(8)))
PY
}
# record_after VERSION BOOT SEQ REGEX: a record of VERSION after (BOOT, SEQ) whose values match.
record_after() {
    records "$1" | awk -v b="$2" -v s="$3" -v re="$4" '{ k = $2; sub(":", "", k)
        v = $0; sub(/^[^:]*: /, "", v)
        if (($1 + 0 > b + 0 || ($1 + 0 == b + 0 && k + 0 > s + 0)) && v ~ re) f = 1 } END { exit !f }'
}
# zeros VERSION: the records with a 0 in a channel other than the relays (a failed read or
# expression must be no value, never 0; none of the scripted values is 0).
zeros() {
    records "$1" | awk '{ for (i = 3; i <= 10; i++) if (i != 9 && $i == "0") { print; f = 1; next } }
        END { exit !f }'
}
last_key() { records "$1" | tail -1 | awk '{ k = $2; sub(":", "", k); print $1, k }'; }
device_json() { call GET /devices | python3 -c '
import json, sys
print(json.dumps([d for d in json.load(sys.stdin) if d["id"] == 7][0]))'; }
config_synced() { # config_synced VERSION
    device_json | python3 -c '
import json, sys
c = json.load(sys.stdin)["config"]
sys.exit(0 if c["state"] == "synced" and c["applied"] == int(sys.argv[1]) else 1)' "$1"
}
narrow_records() {
    python3 - "$work/data/tek.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
n = con.execute("SELECT count(*) FROM telemetry WHERE device_id = 7").fetchone()[0]
sys.exit(0 if n > 0 else 1)
PY
}

# --- step 1: the factory pool map, Telemetry 0x01 ---------------------------------------------
phase "steps 1-6 (pool map, template, values, faults, restore)"
boot_firmware "$work/fw-1.log"
wait_for 20 "session" console 'session: up with server'
wait_for 20 "config v1 running (10 s logging)" console 'config: version 1 running .*log 10 s'
console 'channels: factory pool map, 5 channels, telemetry 0x01' || fail "the part does not run the pool map"
wait_for 40 "pool records (Telemetry 0x01) stored" narrow_records
e2e_no_crash "$work/fw.log" "the firmware"

# --- step 2: a template through the API, applied to the device ---------------------------------
template=$(cat <<'EOF'
{"name": "bench: two meters and a transmitter",
 "buses": [{"baud": 19200, "parity": "even", "timeout_ms": 200}],
 "channels": [
  {"name": "Voltage L1", "kind": "other", "unit": "V", "exponent": -1, "decimals": 1,
   "source": {"modbus": {"bus": 0, "slave": 1, "function": 4, "register": 0, "type": "f32"}},
   "mul": 10},
  {"name": "Power", "kind": "power", "unit": "W",
   "source": {"modbus": {"bus": 0, "slave": 1, "function": 4, "register": 52, "type": "f32"}}},
  {"name": "Energy", "kind": "energy", "unit": "Wh",
   "source": {"modbus": {"bus": 0, "slave": 1, "function": 4, "register": 342, "type": "f32"}},
   "mul": 1000},
  {"name": "Heat pump power", "kind": "power", "unit": "W",
   "source": {"modbus": {"bus": 0, "slave": 3, "function": 4, "register": 12, "type": "f32"}}},
  {"name": "Heat pump energy", "kind": "energy", "unit": "Wh",
   "source": {"modbus": {"bus": 0, "slave": 3, "function": 4, "register": 342, "type": "f32"}},
   "mul": 1000},
  {"name": "Water", "kind": "temperature", "unit": "°C", "exponent": -2, "decimals": 2,
   "source": {"modbus": {"bus": 0, "slave": 2, "function": 3, "register": 0, "type": "i16"}},
   "mul": 10},
  {"name": "Relays", "kind": "state", "unit": "", "source": {"input": 4}},
  {"name": "Total power", "kind": "power", "unit": "W",
   "source": {"expression": "\"Power\" + \"Heat pump power\""}}],
 "roles": {"water": "Water", "air": null, "power": "Total power", "energy": "Energy",
           "pump": 0, "heater": 1}}
EOF
)
tid=$(call POST /templates "$template" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') \
    || fail "the template was refused"
version=$(call POST "/templates/$tid/apply" '{"devices": [7]}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["devices"][0]["version"])') \
    || fail "applying the template failed"
say "template $tid applied to device 7 as configuration version $version"
wait_for 40 "the device runs version $version" console "channels: split configuration $version runs, 8 channels"
wait_for 20 "the server shows version $version synced" config_synced "$version"
console 'flash: channel slot [01] written' || fail "the channel record was not written to flash"

# --- step 3: values exactly as scripted, after the conversions ---------------------------------
# voltage 231.4 V x10 (0.1 V), power 1500.5 W (half away from zero), 12345.5 kWh x1000 (Wh),
# SDM120 230.25 W and 42.125 kWh, TB260 27.3 degC (0.1 degC x10: 0.01 degC), the relays, and
# the computed total 1501 + 230.
all='^2314 1501 12345500 230 42125 2730 [0-9]+ 1731$'
wait_for 40 "wide records equal the scripted values, converted" record_after "$version" 0 -1 "$all"
zeros "$version" && fail "a 0 stored for a meter channel: $(zeros "$version" | head -1)"

# --- step 4: the SDM120 unplugged -------------------------------------------------------------
faults_before=$(metric tek_channel_fault_entries_total)
read -r b s < <(last_key "$version")
reply=$(meter_ctl "mute 3")
[[ $reply == ok:* ]] || fail "tek meter refused 'mute 3': $reply"
muted='^2314 1501 12345500 none none 2730 [0-9]+ none$'
wait_for 40 "no value for the SDM120's channels and the computed one, the rest unchanged" \
    record_after "$version" "$b" "$s" "$muted"
# ChannelFaults go out with the next Status (PROTOCOL.md 17.8: at the latest the hourly one);
# a relay switch sends one at once. The water role is the TB260's channel: cooled to 20 degC,
# the thermostat (setpoint 27) switches the heater (relay 1) on, from the map's channel.
heater_ons=$(console_count 'relay: heater on')
reply=$(meter_ctl "set 2 temperature 20.0")
[[ $reply == ok:* ]] || fail "tek meter refused 'set 2 temperature 20.0': $reply"
heater_switched() { [ "$(console_count 'relay: heater on')" -gt "$heater_ons" ]; }
wait_for 30 "the thermostat acts on the map's water channel (heater on)" heater_switched
wait_for 20 "ChannelFaults at the server (3 channels: two timeouts, one expression)" \
    metric_ge tek_channel_fault_entries_total $((faults_before + 3))
# What a user sees of it (GET /api/devices/7/channels, as the device page): the SDM120's two
# channels and the computed one have no value and their last error; the others a value.
channel_errors() {
    call GET /devices/7/channels | python3 -c '
import json, sys
chs = {c["index"]: c for c in json.load(sys.stdin)["channels"]}
failing = {3, 4, 7}
ok = all(
    (c["value"] is None and c["text"] == "no value" and c["error"] is not None
     and c["error"]["errors"] > 0) if i in failing else
    c["value"] is not None
    for i, c in chs.items())
shown = [str(i) + ": " + c["text"] + " / " + json.dumps(c["error"]) for i, c in chs.items()]
print("; ".join(shown), file=sys.stderr)
sys.exit(0 if ok and failing <= chs.keys() else 1)' 2>"$work/channels.txt"
}
wait_for 20 "the per-channel errors in the device's channels (API)" channel_errors
grep -q "3: no value / {.*timeout" "$work/channels.txt" \
    || fail "the SDM120's channel does not name its timeout: $(cat "$work/channels.txt")"
wait_for 30 "the relay channel shows the heater" \
    record_after "$version" "$b" "$s" '^2314 1501 12345500 none none 2000 [23] none$'
reply=$(meter_ctl "set 2 temperature auto")
[[ $reply == ok:* ]] || fail "tek meter refused 'set 2 temperature auto': $reply"
zeros "$version" && fail "a 0 stored for an unplugged meter (must be no value): $(zeros "$version" | head -1)"

# --- step 5: plugged back ------------------------------------------------------------------------
read -r b s < <(last_key "$version")
reply=$(meter_ctl "clear 3")
[[ $reply == ok:* ]] || fail "tek meter refused 'clear 3': $reply"
wait_for 40 "values again after the plug" record_after "$version" "$b" "$s" "$all"

# --- step 6: a power cut; the map comes back from flash ----------------------------------------
e2e_power_cut
read -r b s < <(last_key "$version")
boot_firmware "$work/fw-2.log"
wait_for 20 "the channel record restored from flash" \
    console "channels: record seq [0-9]+ restored, split configuration $version runs \(8 channels\)"
wait_for 40 "the new boot's wide records carry the values" record_after "$version" "$b" 999999 "$all"

# --- step 7: power cuts while logging the map, the server unreachable ---------------------------
phase "step 7: $kills power cuts, server unreachable"
e2e_stop_serve
say "server stopped; boot 2 logs on"
read -r b s < <(last_key "$version")
boot2_logged() { [ "$(console_count 'log: wide record 2/')" -ge 2 ]; }
wait_for 30 "boot 2 logs wide records with no server" boot2_logged
e2e_power_cut
say "power cuts at random instants (--seed $seed)"
mapfile -t instants < <(e2e_instants "$seed" "$kills" 8 12.5)
for i in $(seq 1 "$kills"); do
    at=${instants[$((i - 1))]}
    log=$(printf '%s/fw-cut-%02d.log' "$work" "$i")
    boot_firmware "$log"
    sleep "$at"
    e2e_power_cut
    say "boot $((i + 2)): power cut after ${at} s ($(grep -c 'log: wide record' "$log" || true) wide records shown)"
    e2e_no_crash "$log" "boot $((i + 2))"
    grep -q "channels: record seq [0-9]* restored, split configuration $version runs" "$log" \
        || fail "boot $((i + 2)) did not restore the channel map: $(grep -m1 'channels:' "$log")"
done

# --- step 8: the server comes back; the backlog drains; every record once, as logged -----------
phase "step 8: the backlog drains"
e2e_start_serve
say "boot $((kills + 3)): the server is back"
boot_firmware "$work/fw-last.log"
wait_for 20 "session" console 'session: up with server'
say "wide records shown on the consoles: $(cat "$work"/fw-*.log | grep -c 'log: wide record' || true)"
# shown_stored: every wide record a console showed before the last boot is stored.
shown_stored() {
    records all >"$work/stored.txt"
    python3 - "$work/stored.txt" "$work" <<'PY'
import glob, re, sys
stored_file, work = sys.argv[1], sys.argv[2]
stored = {tuple(map(int, l.split(":", 1)[0].split())) for l in open(stored_file)}
shown = set()
for f in glob.glob(f"{work}/fw-*.log"):
    if f.endswith("fw-last.log"):
        continue
    for m in re.finditer(r"log: wide record (\d+)/(\d+): ", open(f, errors="replace").read()):
        shown.add((int(m[1]), int(m[2])))
sys.exit(0 if shown <= stored else 1)
PY
}
wait_for 120 "every wide record shown is stored (the backlog drained)" shown_stored
# The last boot stops here: what it logs later need not be stored yet.
e2e_power_cut
phase "step 8: checks"
# Every wide record stored is the one the firmware logged under that (boot, seq), value for value.
records all >"$work/stored.txt"
python3 - "$work/data/tek.db" "$work/stored.txt" "$work" <<'PY' || fail "stored wide records differ from the records the firmware logged"
import glob, re, sqlite3, sys
db, stored_file, work = sys.argv[1], sys.argv[2], sys.argv[3]
logged, cut_boots, last = {}, set(), set()
for f in sorted(glob.glob(f"{work}/fw-*.log")):
    for m in re.finditer(r"log: wide record (\d+)/(\d+): ([^\n]*)", open(f, errors="replace").read()):
        key = (int(m[1]), int(m[2]))
        if key in logged:
            print(f"record {key} logged twice: the boot counter went back"); sys.exit(1)
        logged[key] = m[3].split()
        if "fw-cut-" in f:
            cut_boots.add(key[0])
        if f.endswith("fw-last.log"):
            last.add(key)
# No record stored twice (the table's key is (device, boot, seq); counted all the same).
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
dups = con.execute("SELECT boot, seq, count(*) FROM telemetry_wide WHERE device_id = 7 "
                   "GROUP BY boot, seq HAVING count(*) > 1").fetchall()
if dups:
    print(f"stored twice: {dups}"); sys.exit(1)
stored = {}
for line in open(stored_file):
    key, values = line.split(":", 1)
    stored[tuple(map(int, key.split()))] = values.split()
bad = 0
for key, values in stored.items():
    if key in logged and logged[key] != values:
        print(f"record {key}: stored {values}, logged {logged[key]}"); bad += 1
# Shown but not stored: at most one per boot cut at a random instant (the one being written),
# none elsewhere.
missing = [k for k in logged if k not in stored and k not in last]
per_boot = {}
for b, _ in missing:
    per_boot[b] = per_boot.get(b, 0) + 1
for b, n in per_boot.items():
    if b not in cut_boots or n > 1:
        print(f"boot {b}: {n} wide records logged and not stored"); bad += 1
# Each cut boot (all of its records wide: the map was restored before the first): sequence
# numbers from 0 without a gap, at most one more stored than shown (written, not yet shown).
for b in sorted(cut_boots):
    seqs = sorted(s for bb, s in stored if bb == b)
    if seqs != list(range(len(seqs))):
        print(f"boot {b}: sequence numbers with a gap: {seqs}"); bad += 1
    shown = sum(1 for bb, _ in logged if bb == b)
    if len(seqs) > shown + 1:
        print(f"boot {b}: {len(seqs)} stored, {shown} shown"); bad += 1
# Stored but never shown: at most one per boot (every boot ends in a power cut: the record
# written just before it, its console line not yet printed).
unshown = {}
for b, _ in (k for k in stored if k not in logged):
    unshown[b] = unshown.get(b, 0) + 1
for b, n in unshown.items():
    if n > 1:
        print(f"boot {b}: {n} wide records stored that its console never showed"); bad += 1
print(f"{len(logged)} wide records logged over {len({b for b, _ in logged})} boots, "
      f"{len(stored)} stored, {len(missing)} logged and not stored; {bad} problems")
sys.exit(1 if bad else 0)
PY
grep -qE '^fatal|panic' "$work"/fw-*.log && fail "the firmware stopped: $(grep -hE '^fatal|panic' "$work"/fw-*.log | head -1)"
phase ""
for p in "${phases[@]}"; do say "phase: $p"; done
say "modbus-e2e: PASSED ($(records "$version" | wc -l) wide records of version $version, $kills power cuts, seed $seed)"
