#!/usr/bin/env bash
# End-to-end test of the telemetry log in flash (issue 17, point 1; PROTOCOL.md 18): the
# LM3S6965 image in QEMU, its flash log in a host file, killed at random instants while it logs
# with the server unreachable; then the server comes back and the whole backlog drains.
#
# Network and harness as scripts/qemu-e2e.sh (its own namespaces, slirp, the DNS stub).
#
# Steps:
#   1. provision device 7 with 10 s logging; boot 1 reaches `tek serve`, gets its configuration
#      and delivers telemetry (so boot 1 has a clock anchor)
#   2. the server stops; QEMU keeps logging, then is killed (SIGKILL: a power cut)
#   3. 20 more boots with no server, each killed at a random instant between 2 and 16 s (so
#      before, during and after the first record of a boot: a kill can land in a flash write)
#   4. the server comes back; one more boot delivers everything: the backlog drains
#   5. check, from the firmware's console (one "log: record B/S ..." line per record logged) and
#      the server's database: every record logged is stored exactly once under its (boot, seq),
#      with exactly the values logged — none lost (except one being written when power failed,
#      which the console never printed), none corrupt, none duplicated; each boot's sequence
#      numbers run from 0 without a gap; boots that never met a server are marked as estimated
#
# Usage: scripts/flashlog-e2e.sh [--keep] [--kills N] [--seed S]   (the seed of the instants is
# printed; give it back to repeat a run's instants)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. "$root/scripts/e2e-lib.sh"
if [ "${TEK_E2E_NS:-}" != 1 ]; then
    e2e_enter flashlog-e2e "qemu-system-arm python3 unshare ip" "--net --mount" "" "$@"
fi
e2e_logs=("firmware console (last run)|fw.log|40" "tek serve|serve.log|30" "dns|dns.log|10")
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
e2e_start flashlog-e2e "${args[@]}"
tek=${TEK_BIN:?}
fw="$root/firmware/target/thumbv7m-none-eabi/release/tek-firmware"

e2e_dns live.tek.test=10.0.2.2
e2e_device flash-pool
"$tek" device config --data "$work/data" --id 7 \
    --set servers=live.tek.test --set log_interval=10 --set batch=10 --set keepalive=15 >/dev/null


# --- steps 1 and 2: a boot with the server, then without ------------------------------------
e2e_start_serve
say "boot 1: with the server"
e2e_boot_firmware "$work/fw-00.log"
wait_for 20 "session" console 'session: up with server'
wait_for 20 "config v1 running (10 s logging)" console 'config: version 1 running .*log 10 s'
wait_for 40 "telemetry acknowledged" console 'records sent [1-9][0-9]* acked [1-9]'
e2e_stop_serve
say "server stopped; boot 1 logs on"
boot1_records() { [ "$(console_count 'log: record 1/')" -ge 4 ]; }
wait_for 40 "two more records logged in boot 1" boot1_records
e2e_power_cut

# --- step 3: power cuts at random instants --------------------------------------------------
say "power cuts at random instants (--seed $seed)"
mapfile -t instants < <(e2e_instants "$seed" "$kills" 2 16)
for i in $(seq 1 "$kills"); do
    at=${instants[$((i - 1))]}
    log=$(printf '%s/fw-%02d.log' "$work" "$i")
    e2e_boot_firmware "$log"
    sleep "$at"
    e2e_power_cut
    say "boot $((i + 1)): power cut after ${at} s ($(grep -c 'log: record' "$log" || true) records shown)"
    e2e_no_crash "$log" "boot $((i + 1))"
done

# --- step 4: the server comes back; the backlog drains --------------------------------------
e2e_start_serve
say "boot $((kills + 2)): the server is back"
e2e_boot_firmware "$work/fw-last.log"
wait_for 20 "session" console 'session: up with server'
logged=$(cat "$work"/fw-*.log | grep -c 'log: record' || true)
say "records shown on the consoles: $logged"
drained() {
    python3 - "$work/data/tek.db" "$work" <<'PY'
import glob, re, sqlite3, sys
db, work = sys.argv[1], sys.argv[2]
shown = set()
for f in glob.glob(f"{work}/fw-*.log"):
    for m in re.finditer(r"log: record (\d+)/(\d+) ", open(f, errors="replace").read()):
        shown.add((int(m[1]), int(m[2])))
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
stored = {(b, s) for b, s in con.execute("SELECT boot, seq FROM telemetry WHERE device_id = 7")}
sys.exit(0 if shown <= stored else 1)
PY
}
wait_for 120 "every record shown is stored (the backlog drained)" drained
# The last boot stops here: what it logs later need not be stored yet.
e2e_power_cut

# --- step 5: exactly once, exactly as logged, no gaps ---------------------------------------
python3 - "$work/data/tek.db" "$work" <<'PY' || fail "stored records differ from the records logged"
import glob, re, sqlite3, sys
db, work = sys.argv[1], sys.argv[2]
MISSING = -32768
logged = {}
last = set()
for f in sorted(glob.glob(f"{work}/fw-*.log")):
    for m in re.finditer(r"log: record (\d+)/(\d+) power (\d+) energy (\d+) water (-?\d+) air (-?\d+) relays (\d+)",
                         open(f, errors="replace").read()):
        b, s, p, e, w, a, r = (int(x) for x in m.groups())
        key = (b, s)
        if key in logged:
            print(f"record {key} logged twice: the boot counter went back"); sys.exit(1)
        logged[key] = (p, e, None if w == MISSING else w, None if a == MISSING else a, r)
        if f.endswith("fw-last.log"):
            last.add(key)
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
rows = con.execute("SELECT boot, seq, power_w, energy_wh, water_cc, air_cc, relays FROM telemetry "
                   "WHERE device_id = 7 ORDER BY boot, seq").fetchall()
stored = {}
for b, s, *v in rows:
    if (b, s) in stored:
        print(f"record {(b, s)} stored twice"); sys.exit(1)
    stored[(b, s)] = tuple(v)
bad = 0
for key, values in sorted(logged.items()):
    if key in last and key not in stored:
        continue  # logged by the last boot after the backlog drained, not yet sent
    if stored.get(key) != values:
        print(f"record {key}: logged {values}, stored {stored.get(key)}"); bad += 1
boots = sorted({b for b, _ in stored})
for b in boots:
    seqs = sorted(s for bb, s in stored if bb == b)
    if seqs != list(range(len(seqs))):
        print(f"boot {b}: sequence numbers with a gap: {seqs}"); bad += 1
    # At most one record more than the console showed: the one whose line was not yet printed
    # when the power failed (a record cut while being written is never stored).
    shown = sum(1 for bb, _ in logged if bb == b)
    if len(seqs) > shown + 1:
        print(f"boot {b}: {len(seqs)} stored, {shown} shown"); bad += 1
print(f"{len(logged)} records logged over {len(boots)} boots, {len(rows)} stored; {bad} problems")
sys.exit(1 if bad else 0)
PY
say "every record logged is stored once, as logged, without gaps"
# The boots after boot 1 never met a server: their times are estimated, and the server says so.
python3 - "$work/data/tek.db" <<'PY' || fail "the estimated boots are not recorded"
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
table = next((t for t in tables if "backlog" in t), None)
if table is None:
    print(f"no backlog table among {sorted(tables)}"); sys.exit(1)
n = con.execute(f"SELECT count(*) FROM {table} WHERE device_id = 7").fetchone()[0]
print(f"{table}: {n} boots recorded")
sys.exit(0 if n >= 1 else 1)
PY
say "flashlog-e2e: PASSED"
