package e2e

// The observer effect where each machine runs only its own tracers: the KVM
// lab (docs/lab.md). BenchmarkObserverEffect measures it in the namespace
// lab, where the four "machines" share one kernel and every hook runs the
// programs of all four nodes' tracers; here a node's tracers load only its
// own kernel, as on real hosts. The machines are emulated (QEMU TCG, the VMs
// under nested KVM in it): every time, traced or not, is 5-100 times a real
// host's, so the result is a ratio of traced to untraced RTT, not a delta
// in µs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/role"
)

const (
	// kvmObserverPings per round at kvmInterval (200 ms, the KVM lab's
	// usual): enough for a p90 of a round, short next to a traced round's
	// tracer start (1-3 minutes under TCG).
	kvmObserverPings = 50
	// kvmExitPartial is `pingpath run`'s exit code of a partial run.
	kvmExitPartial = 3
)

// kvmObserverConfigs are the traced configurations, in the order they run:
// each node alone, then all four (nil: every node).
var kvmObserverConfigs = []struct {
	name  string
	nodes []string
}{
	{role.SenderVM, []string{role.SenderVM}},
	{role.SenderHost, []string{role.SenderHost}},
	{role.ReceiverHost, []string{role.ReceiverHost}},
	{role.ReceiverVM, []string{role.ReceiverVM}},
	{"all", nil},
}

// kvmRound is one `pingpath run` of the benchmark.
type kvmRound struct {
	config string    // a kvmObserverConfigs name, or "untraced"
	rtts   []float64 // ping's RTTs, µs
	costs  []analyze.NodeCost
	load   [2]string // load average before and after
	took   time.Duration
	note   string // a partial run's failures
}

// BenchmarkKVMObserverEffect measures what pingpath's tracers cost the
// pings they observe on the KVM lab: traced RTT against untraced RTT per
// node (that node's tracers alone, `pingpath run --traced-nodes NODE`), then
// with all four nodes traced. The machine's load changes while it runs
// (other labs and suites share its CPUs), so untraced rounds (`--traced-nodes
// none`: the same run with its sessions and collection, ping alone)
// alternate with traced ones — untraced, sender-vm, untraced, sender-host,
// …, all, untraced — and each traced round is compared with its two
// untraced neighbours: ratio = traced p50 (p90) / the neighbours' pooled p50
// (p90). Each node's own account of its cost (the report's "measurement cost
// on NODE" line: µs of BPF and tracer CPU per ping, % of a CPU) comes with it.
//
// Run (PINGPATH_KVM_LAB=DIR reuses a lab with the relay wire that is up):
//
//	PINGPATH_KVM_E2E=1 go test -run '^$' -bench KVMObserverEffect -benchtime 1x -timeout 150m -v ./test/e2e
//
// One iteration is the whole sequence (11 runs, 30-60 minutes on a 2-CPU
// machine at load 10-30); -benchtime Nx repeats it, pooling the rounds.
func BenchmarkKVMObserverEffect(b *testing.B) {
	if os.Getenv(kvmE2EVar) == "" {
		b.Skipf("the observer effect on the KVM lab takes 30-60 minutes: set %s=1 to run it", kvmE2EVar)
	}
	requireLab(b)
	l := relayKVMLab(b)
	bin := labtest.Binary(b)
	var rounds []kvmRound
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rounds = append(rounds, kvmObserverRound(b, l, bin, "untraced", []string{}))
		for _, c := range kvmObserverConfigs {
			rounds = append(rounds, kvmObserverRound(b, l, bin, c.name, c.nodes))
			rounds = append(rounds, kvmObserverRound(b, l, bin, "untraced", []string{}))
		}
	}
	b.StopTimer()
	table, ratios := kvmObserverTable(rounds)
	b.Logf("observer effect on the KVM lab %s (%d pings per round at %s; µs, emulated):\n%s", l.Name, kvmObserverPings, kvmInterval, table)
	for name, r := range ratios {
		b.ReportMetric(r[0], "p50-ratio-"+name)
		b.ReportMetric(r[1], "p90-ratio-"+name)
	}
}

// kvmObserverRound runs one `pingpath run` tracing the given nodes (empty:
// none) and returns its RTTs and, when traced, the nodes' costs. A partial
// run (a tracer lost or detached over --max-cpu) still counts with a note:
// its pings were traced until then.
func kvmObserverRound(b *testing.B, l *lab.Lab, bin, config string, nodes []string) kvmRound {
	b.Helper()
	dir := filepath.Join(b.TempDir(), config)
	args := []string{"run", "-c", l.EnvFile, "-o", dir, "--count", fmt.Sprint(kvmObserverPings), "--interval", kvmInterval.String(),
		"--ready-timeout", kvmReadyTimeout.String()}
	switch {
	case len(nodes) > 0:
		args = append(args, "--traced-nodes", strings.Join(nodes, ","))
	case nodes != nil:
		args = append(args, "--traced-nodes", "none", "--no-analyze")
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvmRunTimeout)
	defer cancel()
	r := kvmRound{config: config}
	r.load[0] = loadAverage()
	began := time.Now()
	_, err := runPingpath(ctx, bin, args...)
	r.took, r.load[1] = time.Since(began), loadAverage()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == kvmExitPartial {
		m, merr := manifest.Read(dir)
		if merr != nil {
			b.Fatalf("%s: %v; manifest: %v", config, err, merr)
		}
		for _, f := range m.Failures {
			r.note += strings.TrimSpace(f.Node+" "+f.Step) + ": " + f.Error + "; "
		}
		b.Logf("%s: partial run, kept: %s", config, r.note)
	} else if err != nil {
		b.Fatalf("%s: %v", config, err)
	}
	out, err := os.ReadFile(filepath.Join(dir, "ping.log"))
	if err != nil {
		b.Fatal(err)
	}
	if r.rtts, err = pingRTTs(out, kvmObserverPings); err != nil {
		b.Fatalf("%s: %v", config, err)
	}
	if len(nodes) > 0 || nodes == nil {
		res := readJSON[struct {
			Cost []analyze.NodeCost `json:"measurement_cost"`
		}](b, filepath.Join(dir, "report.json"))
		r.costs = res.Cost
	}
	slices.Sort(r.rtts)
	b.Logf("%s: %d replies, p50 %.0f µs p90 %.0f µs; run took %s, load %s -> %s",
		config, len(r.rtts), quantile(r.rtts, 0.5), quantile(r.rtts, 0.9), r.took.Round(time.Second), r.load[0], r.load[1])
	return r
}

// kvmObserverTable compares each traced round with its untraced neighbours
// and returns the table and, per configuration, the p50 and p90 ratios over
// every round of it (pooled when the sequence ran more than once).
func kvmObserverTable(rounds []kvmRound) (string, map[string][2]float64) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-14s %9s %9s %9s %9s %8s %8s  %s\n", "traced", "p50", "p90", "untr p50", "untr p90", "p50 ×", "p90 ×", "self-measured cost per node (µs per ping, % of a CPU; BPF µs per ping, of it on the pings)")
	traced, neighbours := map[string][]float64{}, map[string][]float64{}
	var untraced []float64
	for i, r := range rounds {
		if r.config == "untraced" {
			untraced = append(untraced, r.rtts...)
			continue
		}
		var near []float64
		for _, j := range []int{i - 1, i + 1} {
			if j >= 0 && j < len(rounds) && rounds[j].config == "untraced" {
				near = append(near, rounds[j].rtts...)
			}
		}
		slices.Sort(near)
		traced[r.config] = append(traced[r.config], r.rtts...)
		neighbours[r.config] = append(neighbours[r.config], near...)
		var costs []string
		for _, c := range r.costs {
			pings := ""
			if c.PingsBPFUSPerPing != nil {
				pings = fmt.Sprintf(", %.0f", *c.PingsBPFUSPerPing)
			}
			detached := ""
			if len(c.Detached) > 0 {
				detached = " detached: " + strings.Join(c.Detached, ",")
			}
			costs = append(costs, fmt.Sprintf("%s %.0f µs, %.1f %% (BPF %.0f%s)%s", c.Node, c.USPerPing, c.CPUPercent, c.BPFUSPerPing, pings, detached))
		}
		if r.note != "" {
			costs = append(costs, "PARTIAL: "+r.note)
		}
		fmt.Fprintf(&sb, "%-14s %9.0f %9.0f %9.0f %9.0f %8.2f %8.2f  %s\n", r.config,
			quantile(r.rtts, 0.5), quantile(r.rtts, 0.9), quantile(near, 0.5), quantile(near, 0.9),
			quantile(r.rtts, 0.5)/quantile(near, 0.5), quantile(r.rtts, 0.9)/quantile(near, 0.9), strings.Join(costs, "; "))
	}
	slices.Sort(untraced)
	fmt.Fprintf(&sb, "%-14s %9.0f %9.0f  (all untraced rounds pooled, %d pings)\n", "untraced", quantile(untraced, 0.5), quantile(untraced, 0.9), len(untraced))
	fmt.Fprintf(&sb, "rounds in order (load average 1/5/15 min before -> after, duration):\n")
	for _, r := range rounds {
		fmt.Fprintf(&sb, "  %-14s %s -> %s, %s\n", r.config, r.load[0], r.load[1], r.took.Round(time.Second))
	}
	ratios := map[string][2]float64{}
	for name, xs := range traced {
		ys := neighbours[name]
		slices.Sort(xs)
		slices.Sort(ys)
		ratios[name] = [2]float64{quantile(xs, 0.5) / quantile(ys, 0.5), quantile(xs, 0.9) / quantile(ys, 0.9)}
	}
	return sb.String(), ratios
}

// loadAverage is this machine's load average (1, 5, 15 min).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
