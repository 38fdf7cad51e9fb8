#!/usr/bin/env bash
# Soak benchmark of pingpath watch: the built-in lab, every tracer on every
# node, ping at 10 pings/s (INTERVAL) for DURATION seconds (3600), the
# rolling report written every minute; every STEP seconds (60) it prints the
# watch process's resident memory (VmRSS, and VmHWM, its peak so far), the
# pings joined so far (from /metrics) and the pings waiting in the window.
# Flat RSS over the hour is the claim (docs/watch.md). Root; tears the lab
# down at the end or on Ctrl-C.
#
#   scripts/soak-watch.sh                    # bin/pingpath, 1 h
#   DURATION=300 STEP=10 scripts/soak-watch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PINGPATH:-bin/pingpath}
dur=${DURATION:-3600}
step=${STEP:-60}
interval=${INTERVAL:-100ms}
port=${PORT:-19465}
work=$(mktemp -d /tmp/pingpath-soak.XXXXXX)
wpid=
cleanup() {
  [[ -n $wpid ]] && kill -INT "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null || true
  "$bin" lab down --dir "$work/lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" lab up --dir "$work/lab" --name "soak$$" >/dev/null
"$bin" watch -c "$work/lab/env.yaml" --interval "$interval" --listen "127.0.0.1:$port" \
  --report-dir "$work/report" 2>"$work/watch.log" &
wpid=$!
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 ~ "^"m"[{ ]" {s += $2} END {print s + 0}'; }
echo "# pingpath watch soak: $interval interval, $dur s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%8s %10s %10s %10s %8s %6s\n' elapsed_s rss_kib hwm_kib pings_sent lost open
start=$(date +%s)
while :; do
  now=$(( $(date +%s) - start ))
  kill -0 "$wpid" 2>/dev/null || { echo "watch exited:"; cat "$work/watch.log"; exit 1; }
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$wpid/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$wpid/status")
  printf '%8d %10d %10d %10d %8d %6d\n' "$now" "$rss" "$hwm" "$(metric pingpath_pings_sent_total)" \
    "$(metric pingpath_pings_lost_total)" "$(metric pingpath_window_open_pings)"
  (( now >= dur )) && break
  sleep "$step"
done
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg); restarts $(metric pingpath_tracer_restarts_total), disconnects $(metric pingpath_node_disconnects_total), ring-buffer loss $(metric pingpath_tracer_ringbuf_lost_total)"
