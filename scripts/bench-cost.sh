#!/usr/bin/env bash
# bench-cost.sh: measures every cost goal of issue 18 in one run and prints
# each against its goal (docs/observer-effect.md, "Reproducing").
#
#   sudo scripts/bench-cost.sh [OUTDIR]     # root; about 3 minutes here
#
# It runs, one after the other (never two at once: they would load each
# other):
#   - the per-program benchmarks (kernel bpf_stats, hot caches): host
#     BenchmarkBPFCost, vm BenchmarkBPFRunTime, vhost BenchmarkTapLinkBPFCost,
#     each with empty programs on the same hooks (the floor), and host
#     BenchmarkHookFloor (the floor from flood rates, without bpf_stats);
#   - the lab benchmarks: BenchmarkFlood/veth (one host's tracers under a
#     UDP flood) and BenchmarkObserverEffect/veth/vm+host (pings with and
#     without the origin workflow's four tracers, and with empty programs on
#     the tracers' hooks as the control);
# and records the load average before and after each, since every figure
# but the per-run ones moves with the machine's load. The raw output is
# kept in OUTDIR (default: a new temporary directory).
#
# bpftool prog profile needs hardware counters (cycles, instructions); the
# script says whether this machine has them (a VM without a virtual PMU does
# not, and then run time per run is the only per-program figure).
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/bench-cost.XXXXXX)}
mkdir -p "$out"
export PATH=/usr/local/go/bin:$PATH

if [ "$(id -u)" != 0 ]; then
	echo "bench-cost.sh: needs root (BPF, namespaces)" >&2
	exit 2
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }

# bench NAME PATTERN PACKAGE: runs one benchmark, output in $out/NAME.txt.
bench() {
	local name=$1 pattern=$2 pkg=$3
	echo "load average before $name: $(load)" | tee -a "$out/load.txt"
	go test -run '^$' -bench "$pattern" -benchtime 1x -timeout 20m -v "$pkg" >"$out/$name.txt" 2>&1 || {
		echo "bench-cost.sh: $name failed (see $out/$name.txt)" >&2
		tail -20 "$out/$name.txt" >&2
		exit 1
	}
	echo "load average after $name: $(load)" | tee -a "$out/load.txt"
}

bench host 'BPFCost$' ./internal/tracer/host/
bench floor 'HookFloor$' ./internal/tracer/host/
bench vm 'BPFRunTime$' ./internal/tracer/vm/
bench vhost 'TapLinkBPFCost$' ./internal/tracer/vhost/
bench flood 'Flood/veth$' ./test/e2e/
bench observer 'ObserverEffect/veth/vm\+host$' ./test/e2e/

if [ -e /sys/bus/event_source/devices/cpu ]; then
	pmu="hardware counters present: try bpftool prog profile id ID duration 5 cycles instructions"
else
	pmu="no hardware counters (/sys/bus/event_source/devices/cpu missing): bpftool prog profile cannot run here"
fi

# metric FILE UNIT[|UNIT...] [name]: the value before the first UNIT found on the
# benchmark's result line (a hook's program name depends on the rung the
# kernel allowed: host_ingress_btf where tp_btf attaches, host_ingress_tp
# where only the raw tracepoint does); with "name", that UNIT instead.
metric() {
	awk -v units="$2" 'BEGIN { n = split(units, u, "|") }
		/^Benchmark/ { for (i = 3; i < NF; i++) for (j = 1; j <= n; j++) if ($(i+1) == u[j]) v[j] = $i }
		END { for (j = 1; j <= n; j++) if (v[j] != "") { print (name ? u[j] : v[j]); exit } print "nan" }' name="${3:-}" "$out/$1.txt"
}

# The unrelated frame, summed over one host's tracers, from the per-run
# benchmarks: host ingress + egress on the traced devices, vhost-tx's receive
# hook on the vnet, vhost-rx's transmit hook on the phy, and the free after
# transmission where vhost-rx has a program on consume_skb (older builds:
# their copy rung attached one) (hot caches); and from the lab flood (every
# run the frame causes, the other nodes' devices taken out).
# runs is how many program runs the per-run sum counts.
read -r micro runs < <(awk -v a="$(metric host "ns/run-unrelated-host_ingress_btf|ns/run-unrelated-host_ingress_tp")" -v b="$(metric host "ns/run-unrelated-host_egress_btf|ns/run-unrelated-host_egress_tp")" \
	-v c="$(metric vhost "ns/run-udp-netif_btf|ns/run-udp-netif_tp")" -v d="$(metric vhost "ns/run-udp-s1_btf|ns/run-udp-s1_tp")" \
	-v e="$(metric vhost ns/run-udp-skb_consumed)" 'BEGIN { n = 4; s = a + b + c + d; if (e != "nan") { s += e; n++ } printf "%.0f %d\n", s, n }')
labhost=$(metric flood bpf-ns/pkt-host)
# The floor: what an empty program on the same hooks costs per run in the
# same floods (tracertest.AttachFloor), i.e. the tracepoint's dispatch as
# bpf_stats sees it with its own clock reads. Every run of the frame pays
# it whatever the program does.
floor=$(awk -v a="$(metric host ns/run-unrelated-pp_empty)" -v b="$(metric vhost ns/run-udp-pp_empty)" 'BEGIN { printf "%.1f", (a + b) / 2 }')

# Matched hook runs: the highest of the per-hook figures.
matched=$(for m in "host ns/matched-run-host_ingress_btf|ns/matched-run-host_ingress_tp" "host ns/matched-run-host_egress_btf|ns/matched-run-host_egress_tp" \
	"vm ns/matched-run-vm_tp_btf_net_dev_queue|ns/matched-run-vm_raw_tp_net_dev_queue" "vm ns/matched-run-vm_tp_btf_netif_receive_skb|ns/matched-run-vm_raw_tp_netif_receive_skb" \
	"vhost ns/run-ping-s1_btf|ns/run-ping-s1_tp" "vhost ns/run-ping-netif_btf|ns/run-ping-netif_tp"; do
	set -- $m
	found=$(metric "$1" "$2" name)
	echo "$(metric "$1" "$2") $1:${found#ns/}"
done | sort -g | tail -1)

# costliest PREFIX: the highest per-node metric PREFIXNODE and its node.
costliest() {
	awk -v p="$1" '/^Benchmark/ { for (i = 3; i < NF; i++) if (index($(i+1), p) == 1 && $(i+1) !~ /-base$/ && $i + 0 > v + 0) { v = $i; n = substr($(i+1), length(p) + 1) } }
		END { print v " " n }' "$out/observer.txt"
}
node=$(costliest "bpf-µs/ping-")
pingsnode=$(costliest "pings-bpf-µs/ping-")

row() { # goal measured what
	awk -v what="$3" -v goal="$1" -v got="$2" 'BEGIN {
		r = (goal > 0 && got == got + 0) ? got / goal : 0
		printf "%-58s %10s %8s %7.2f  %s\n", what, got, goal, r, (r <= 1 ? "met" : "NOT met")
	}'
}

{
	echo
	echo "issue 18 cost goals ($(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) CPUs)"
	printf "%-58s %10s %8s %7s\n" "goal" "measured" "target" "ratio"
	row 250 "$micro" "unrelated frame vnet→phy, host's tracers, per run (ns)"
	row 250 "$labhost" "unrelated frame vnet→phy, host's tracers, lab flood (ns)"
	row 500 "${matched%% *}" "slowest matched hook run (ns, ${matched#* })"
	row 15 "$(metric observer rtt-p50-delta-µs)" "lab observer effect Δ RTT p50 (µs, veth/vm+host)"
	row 5 "${node%% *}" "BPF per ping of the costliest node, all runs (µs, ${node#* })"
	row 5 "${pingsnode%% *}" "… of it on the pings' packets (µs, ${pingsnode#* })"
	echo
	echo "floor: an empty program on the same hooks costs $floor ns per run (host and vhost floods, bpf_stats);" \
		"the unrelated frame's $runs runs: $(awk -v n="$runs" -v f="$floor" 'BEGIN { printf "%.0f", n * f }') ns of floor," \
		"$(awk -v n="$runs" -v m="$micro" -v f="$floor" 'BEGIN { printf "%.0f", m - n * f }') ns of the programs' own work"
	echo "floor without bpf_stats (BenchmarkHookFloor, from flood rates): an empty program adds $(metric floor ns/run-attached) ns per run" \
		"to a packet; bpf_stats reports $(metric floor ns/run-bpf_stats) ns for it and adds $(metric floor ns/run-stats-overhead) ns per run"
	echo "lab control: empty programs on the same hooks as the four tracers ($(metric observer bpf-runs/ping-empty) runs per ping):" \
		"Δ RTT p50 $(metric observer rtt-p50-delta-µs-empty) µs, against $(metric observer rtt-p50-delta-µs) µs with the tracers"
	echo "flood (veth lab, sender host's three tracers): forwarding ratio $(metric flood fwd-ratio)," \
		"cost at 1 Mpps $(metric flood cpu%-at-1Mpps) % of one CPU, self-measured/kernel BPF $(metric flood self/kernel-bpf)"
	echo "observer: untraced p50 $(metric observer off-p50-µs) µs, traced $(metric observer on-p50-µs) µs," \
		"BPF $(metric observer bpf-µs/ping) µs per ping over all nodes"
	echo "bpftool: $pmu"
	echo "load averages (1, 5, 15 min):"
	sed 's/^/  /' "$out/load.txt"
	echo "raw output: $out"
} | tee "$out/summary.txt"
