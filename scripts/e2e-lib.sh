# The harness the QEMU end-to-end scripts share (qemu-e2e.sh, gsm-e2e.sh, rtu-e2e.sh), sourced
# once they run inside their own network namespace.
#
#   e2e_logs=("title|file in the work directory|lines" ...)   what a failure shows
#   e2e_start NAME "$@"      work directory ($work), background pids ($pids), the cleanup trap
#                            (--keep keeps the work directory)
#   say, fail, wait_for LIMIT_S DESCRIPTION COMMAND...   progress lines stamped with the run time
#   console REGEX, console_count REGEX                   the firmware's console ($work/fw.log)
#   metric NAME, metric_ge NAME N                        tek serve's /metrics on 127.0.0.1:8080

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
