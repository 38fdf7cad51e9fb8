package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

const (
	observerRounds   = 5
	observerPings    = 100
	observerInterval = 10 * time.Millisecond
)

// BenchmarkObserverEffect measures what tracing costs the traffic it
// observes. In one lab per case (tap or veth VM links, veth wire) it
// alternates ping series with no tracer running and with the case's tracers
// running on the four nodes (as `pingpath run` starts them), and reports
//
//   - the RTT inflation: median and p99 of the traced series minus the
//     untraced ones (ping's own RTT, pooled over the rounds);
//   - the BPF run time per probe invocation from the kernel's BPF
//     statistics (BPF_ENABLE_STATS, the same switch as
//     kernel.bpf_stats_enabled, held only while the benchmark runs), over
//     the programs of our tracer processes only, and the BPF time per ping;
//   - the control ("-empty"): the same RTT figures with empty programs on
//     the hooks the tracers attach, as many per hook — the part of the
//     inflation that any program on those hooks causes.
//
// Run: go test -run '^$' -bench ObserverEffect -benchtime 1x ./test/e2e
// (one iteration is the whole experiment; -benchtime Nx repeats it).
func BenchmarkObserverEffect(b *testing.B) {
	requireLab(b)
	enableRunTimeStats(b)
	all := []string{"vm", "host", "vhost-rx", "vhost-tx"}
	for _, c := range []struct {
		name  string
		link  string
		tools []string
	}{
		// The demo's lab: each VM link crossing is a userspace backend
		// thread, like QEMU without vhost-net.
		{"tap/all", lab.VMLinkTap, all},
		// The data path entirely in the kernel (softirq): what is left
		// is the BPF programs and the tracers competing for the CPUs.
		{"veth/all", lab.VMLinkVeth, all},
		// The origin workflow's four tracers.
		{"veth/vm+host", lab.VMLinkVeth, []string{"vm", "host"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			observe(b, lab.Options{VMLink: c.link}, c.tools)
		})
	}
}

// observe is one case of BenchmarkObserverEffect. With a baseline binary
// ($PINGPATH_BENCH_BASELINE) each round also pings with the baseline's
// tracers, so both builds are compared under the same load; metrics of the
// baseline are suffixed "-base".
func observe(b *testing.B, opts lab.Options, tools []string) {
	l := labtest.Up(b, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// ARP and first-packet warm-up, not measured.
	if _, err := pingSeries(ctx, l, 5); err != nil {
		b.Fatal(err)
	}

	bins := benchBinaries(b)
	var off []float64
	on := make([][]float64, len(bins))
	progs := make([]map[ebpf.ProgramID]*progStat, len(bins))
	// The tracers' own account of the runs that saw the pings (trailer
	// cost.matched_bpf_ns), per node: the pings' share of its BPF time,
	// without the runs for the machine's other packets.
	pingsNS := make([]map[string]uint64, len(bins))
	for k := range progs {
		progs[k] = map[ebpf.ProgramID]*progStat{}
		pingsNS[k] = map[string]uint64{}
	}
	// The control: empty programs on every hook this build's tracers
	// attach (learned from their headers in a start that is not
	// measured), as many per hook as there are tracers on it. What they
	// add to the RTT, no tracer on those hooks can avoid; the rest is the
	// tracers' own work.
	var emptyHooks []tracertest.Hook
	for _, s := range startTracers(b, ctx, l, tools, nil, bins[0]).stop(b) {
		emptyHooks = append(emptyHooks, tracertest.HooksOf(s.Header)...)
	}
	var empty []float64
	var emptyStats tracertest.Stats
	// One round pings once untraced (-1), once with each build's tracers
	// (0…) and once with the empty programs (len(bins)), starting at
	// another variant each round so that none always follows another.
	variants := len(bins) + 2
	tracedPings := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < observerRounds; r++ {
			for v := 0; v < variants; v++ {
				k := (v+r)%variants - 1
				switch {
				case k < 0:
					rtts, err := pingSeries(ctx, l, observerPings)
					if err != nil {
						b.Fatal(err)
					}
					off = append(off, rtts...)
				case k < len(bins):
					tr := startTracers(b, ctx, l, tools, nil, bins[k])
					rtts, err := pingSeries(ctx, l, observerPings)
					if err != nil {
						b.Fatal(err)
					}
					on[k] = append(on[k], rtts...)
					tr.collectStats(b, progs[k]) // before stopping: the programs go with their process
					for i, s := range tr.stop(b) {
						if c := s.Trailer.Cost; c != nil {
							pingsNS[k][tr[i].node] += c.MatchedBPFNS
						}
					}
				default:
					ids, detach := tracertest.AttachEmpty(b, emptyHooks)
					s0 := tracertest.ReadStats(b, ids)
					rtts, err := pingSeries(ctx, l, observerPings)
					if err != nil {
						b.Fatal(err)
					}
					empty = append(empty, rtts...)
					d, _ := tracertest.ReadStats(b, ids).Sub(s0)
					emptyStats = emptyStats.Add(d)
					detach()
				}
			}
			tracedPings += observerPings
		}
	}
	b.StopTimer()

	slices.Sort(off)
	offP50, offP99 := quantile(off, 0.5), quantile(off, 0.99)
	b.ReportMetric(offP50, "off-p50-µs")
	b.ReportMetric(offP99, "off-p99-µs")
	slices.Sort(empty)
	b.ReportMetric(quantile(empty, 0.5)-offP50, "rtt-p50-delta-µs-empty")
	b.ReportMetric(quantile(empty, 0.99)-offP99, "rtt-p99-delta-µs-empty")
	e := emptyStats[tracertest.EmptyProgram]
	b.ReportMetric(float64(e.Time.Nanoseconds())/float64(tracedPings)/1e3, "bpf-µs/ping-empty")
	b.ReportMetric(float64(e.Runs)/float64(tracedPings), "bpf-runs/ping-empty")
	b.ReportMetric(e.PerRun(), "bpf-ns/run-empty")
	b.Logf("empty programs on the same %d hooks: RTT p50 %.1f µs, %d runs at %.0f ns", len(emptyHooks), quantile(empty, 0.5), e.Runs, e.PerRun())
	for k, bin := range bins {
		sfx := ""
		if bin.name != "new" {
			sfx = "-" + bin.name
		}
		slices.Sort(on[k])
		onP50, onP99 := quantile(on[k], 0.5), quantile(on[k], 0.99)
		b.ReportMetric(onP50-offP50, "rtt-p50-delta-µs"+sfx)
		b.ReportMetric(onP99-offP99, "rtt-p99-delta-µs"+sfx)
		b.ReportMetric(onP50, "on-p50-µs"+sfx)
		b.ReportMetric(onP99, "on-p99-µs"+sfx)
		var runtime time.Duration
		var runs uint64
		perNode := map[string]time.Duration{}
		for _, p := range progs[k] {
			runtime += p.runtime
			runs += p.runs
			perNode[p.node] += p.runtime
		}
		if runs == 0 {
			b.Fatalf("the %s tracers' BPF programs never ran (%d programs found)", bin.name, len(progs[k]))
		}
		b.ReportMetric(float64(runtime.Nanoseconds())/float64(runs), "bpf-ns/run"+sfx)
		b.ReportMetric(float64(runtime.Nanoseconds())/float64(tracedPings)/1e3, "bpf-µs/ping"+sfx)
		b.ReportMetric(float64(runs)/float64(tracedPings), "bpf-runs/ping"+sfx)
		// A node's programs run for the packets of every namespace on this
		// machine whether or not the other nodes trace: its share is what
		// it would cost traced alone.
		for node, t := range perNode {
			b.ReportMetric(float64(t.Nanoseconds())/float64(tracedPings)/1e3, "bpf-µs/ping-"+node+sfx)
		}
		for node, ns := range pingsNS[k] {
			if ns == 0 {
				continue // a baseline build that predates the split
			}
			b.ReportMetric(float64(ns)/float64(tracedPings)/1e3, "pings-bpf-µs/ping-"+node+sfx)
		}
		b.Logf("%s: RTT µs over %d pings each: off p50 %.1f p99 %.1f, on p50 %.1f p99 %.1f", bin.name, len(off), offP50, offP99, onP50, onP99)
		b.Logf("%s: BPF run time of the tracers' programs over the traced rounds (every run on the machine, not only this lab's packets):\n%s", bin.name, progTable(progs[k]))
	}
}

// pingSeries pings the receiver VM from the sender VM and returns ping's
// per-reply RTTs (µs). ping prints them to the µs below 10 ms.
func pingSeries(ctx context.Context, l *lab.Lab, count int) ([]float64, error) {
	rvm, err := l.Node(lab.ReceiverVM)
	if err != nil {
		return nil, err
	}
	out, err := l.Exec(ctx, lab.SenderVM, "ping", "-n", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(observerInterval.Seconds(), 'f', -1, 64), "-W", "1", rvm.DataIP.String())
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	return pingRTTs(out, count)
}

// pingRTTs returns the RTTs (µs) of ping's replies in its output, failing
// when fewer than nine in ten of count came back.
func pingRTTs(out []byte, count int) ([]float64, error) {
	var rtts []float64
	for _, m := range pingTime.FindAllSubmatch(out, -1) {
		ms, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			return nil, fmt.Errorf("ping output %q: %w", m[0], err)
		}
		rtts = append(rtts, ms*1e3)
	}
	if len(rtts) < count*9/10 {
		return nil, fmt.Errorf("only %d of %d replies:\n%s", len(rtts), count, out)
	}
	return rtts, nil
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// tracer is one running `pingpath trace` process.
type tracer struct {
	node, tool string
	proc       *os.Process // signalled through its handle, so never a recycled pid
	pid        int
	out        string        // its record stream
	ready      chan struct{} // closed on its ready line
	done       chan error    // its exit
}

// tracers is one round's set.
type tracers []*tracer

// tracerBinary is a pingpath binary the benchmarks run tracers from, with
// extra tracer flags: this build (labtest.Binary), or a baseline build to
// compare with in the same run ($PINGPATH_BENCH_BASELINE, e.g. main's).
type tracerBinary struct {
	name  string // "new", "base"
	path  string
	extra []string
}

// benchBinaries are this build, with --max-cpu raised so that a benchmark's
// own load never detaches it, and the baseline when one is given (which may
// predate --max-cpu: no extra flags).
func benchBinaries(b *testing.B) []tracerBinary {
	bins := []tracerBinary{{name: "new", path: labtest.Binary(b), extra: []string{"--max-cpu", "10000"}}}
	if p := os.Getenv("PINGPATH_BENCH_BASELINE"); p != "" {
		bins = append(bins, tracerBinary{name: "base", path: p})
	}
	return bins
}

// startTracers starts the tracers of the wanted tools on the wanted nodes
// (nil: all four) the way `pingpath run` does (docs/run.md, step 3:
// receivers first, each ready before the senders) from bin, and returns
// once each has printed its ready line.
func startTracers(b *testing.B, ctx context.Context, l *lab.Lab, wanted, nodes []string, bin tracerBinary) tracers {
	b.Helper()
	svm, _ := l.Node(lab.SenderVM)
	rvm, _ := l.Node(lab.ReceiverVM)
	ips := []string{"--src-ip", svm.DataIP.String(), "--dst-ip", rvm.DataIP.String()}
	hostTools := func(node string) [][]string {
		n, _ := l.Node(node)
		return [][]string{
			append([]string{"host", "--vm-interface", n.Vnet, "--phy-interface", n.Phy}, ips...),
			append([]string{"vhost-rx", "--vm-interface", n.Vnet}, ips...),
			append([]string{"vhost-tx", "--vm-interface", n.Vnet}, ips...),
		}
	}
	var all tracers
	for _, phase := range []map[string][][]string{
		{
			lab.ReceiverVM:   {append([]string{"vm", "--direction", "rx", "--interface", rvm.Interface}, ips...)},
			lab.ReceiverHost: hostTools(lab.ReceiverHost),
		},
		{
			lab.SenderHost: hostTools(lab.SenderHost),
			lab.SenderVM:   {append([]string{"vm", "--direction", "tx", "--interface", svm.Interface}, ips...)},
		},
	} {
		var started tracers
		for node, tools := range phase {
			if nodes != nil && !slices.Contains(nodes, node) {
				continue
			}
			for _, args := range tools {
				if slices.Contains(wanted, args[0]) {
					started = append(started, startTracer(b, ctx, l, node, append(args, bin.extra...), bin.path))
				}
			}
		}
		for _, tr := range started {
			select {
			case err := <-tr.done:
				b.Fatalf("%s %s exited before it was ready: %v", tr.node, tr.tool, err)
			case <-time.After(30 * time.Second):
				b.Fatalf("%s %s: not ready after 30 s", tr.node, tr.tool)
			case <-tr.ready:
			}
		}
		all = append(all, started...)
	}
	b.Cleanup(func() { all.kill() })
	return all
}

// startTracer starts `BIN trace ARGS` inside the node's namespace.
func startTracer(b *testing.B, ctx context.Context, l *lab.Lab, node string, args []string, bin string) *tracer {
	b.Helper()
	out := filepath.Join(b.TempDir(), node+"."+args[0]+".jsonl")
	argv := append([]string{bin, "trace"}, args...)
	argv = append(argv, "--format", "json", "--output", out, "--max-duration", "5m")
	cmd, err := l.Command(ctx, node, argv...)
	if err != nil {
		b.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Start(node, cmd); err != nil {
		b.Fatalf("starting %v in %s: %v", argv, node, err)
	}
	tr := &tracer{node: node, tool: args[0], proc: cmd.Process, pid: cmd.Process.Pid, out: out, ready: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		var last string
		for sc.Scan() {
			last = sc.Text()
			if strings.HasPrefix(last, "ready ") {
				close(tr.ready)
				// Keep draining so the tracer never blocks on stderr.
				for sc.Scan() {
				}
				break
			}
		}
		err := cmd.Wait()
		if err == nil && last == "" {
			err = fmt.Errorf("no output")
		}
		if err != nil {
			err = fmt.Errorf("%w (last stderr line %q)", err, last)
		}
		tr.done <- err
	}()
	return tr
}

// stop sends every tracer SIGINT, waits for it and checks its stream's
// trailer: a clean exit and no ring-buffer loss. It returns the streams.
func (ts tracers) stop(b *testing.B) []*record.Stream {
	b.Helper()
	var out []*record.Stream
	for _, tr := range ts {
		_ = tr.proc.Signal(os.Interrupt)
	}
	for _, tr := range ts {
		select {
		case err := <-tr.done:
			if err != nil {
				b.Errorf("%s %s: %v", tr.node, tr.tool, err)
			}
		case <-time.After(20 * time.Second):
			b.Fatalf("%s %s: still running 20 s after SIGINT", tr.node, tr.tool)
		}
		s := readStream(b, tr.out)
		if s.Trailer == nil {
			b.Fatalf("%s %s: stream without trailer", tr.node, tr.tool)
		} else if lost := s.Trailer.Counters["ringbuf_lost"]; lost != 0 {
			b.Errorf("%s %s: %d events lost in the ring buffer", tr.node, tr.tool, lost)
		}
		out = append(out, s)
	}
	return out
}

// kill ends whatever is still running (a benchmark that failed half-way).
func (ts tracers) kill() {
	for _, tr := range ts {
		_ = tr.proc.Kill() // a no-op once the tracer has been waited for
	}
}

// progStat is the BPF run time of one of our tracers' programs.
type progStat struct {
	node, tool, name string
	runtime          time.Duration
	runs             uint64
}

// collectStats adds the run time and run count of every BPF program the
// tracer processes hold (found through the prog_id of their descriptors'
// fdinfo: program and link descriptors both name it), so programs of other
// processes on the machine never count.
func (ts tracers) collectStats(b *testing.B, into map[ebpf.ProgramID]*progStat) {
	b.Helper()
	for _, tr := range ts {
		ids, err := progIDs(tr.pid)
		if err != nil {
			b.Fatalf("%s %s: %v", tr.node, tr.tool, err)
		}
		if len(ids) == 0 {
			b.Fatalf("%s %s (pid %d): holds no BPF program", tr.node, tr.tool, tr.pid)
		}
		for _, id := range ids {
			prog, err := ebpf.NewProgramFromID(id)
			if err != nil {
				b.Fatalf("%s %s: program %d: %v", tr.node, tr.tool, id, err)
			}
			st, err := prog.Stats()
			name := ""
			if info, ierr := prog.Info(); ierr == nil {
				name = info.Name
			}
			prog.Close()
			if err != nil {
				b.Fatalf("%s %s: program %d statistics: %v", tr.node, tr.tool, id, err)
			}
			// IDs are never reused while the kernel runs; each round's
			// programs are new ones.
			into[id] = &progStat{node: tr.node, tool: tr.tool, name: name, runtime: st.Runtime, runs: st.RunCount}
		}
	}
}

// progIDs lists the BPF program IDs referenced by a process's descriptors.
func progIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(line, "prog_id:")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || n == 0 || seen[ebpf.ProgramID(n)] {
				continue
			}
			seen[ebpf.ProgramID(n)] = true
			ids = append(ids, ebpf.ProgramID(n))
		}
	}
	return ids, nil
}

// progTable summarises run time per tool and program name over all rounds.
func progTable(progs map[ebpf.ProgramID]*progStat) string {
	type agg struct {
		runtime time.Duration
		runs    uint64
	}
	byName := map[string]*agg{}
	for _, p := range progs {
		k := p.node + " " + p.tool + " " + p.name
		if byName[k] == nil {
			byName[k] = &agg{}
		}
		byName[k].runtime += p.runtime
		byName[k].runs += p.runs
	}
	keys := make([]string, 0, len(byName))
	for k := range byName {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-44s %10s %10s\n", "node tool program", "runs", "ns/run")
	for _, k := range keys {
		a := byName[k]
		per := 0.0
		if a.runs > 0 {
			per = float64(a.runtime.Nanoseconds()) / float64(a.runs)
		}
		fmt.Fprintf(&sb, "%-44s %10d %10.0f\n", k, a.runs, per)
	}
	return sb.String()
}

// enableRunTimeStats turns on the kernel's BPF run-time statistics (the
// same switch as kernel.bpf_stats_enabled) for the rest of the benchmark.
func enableRunTimeStats(b *testing.B) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling BPF run-time statistics: %v", err)
	}
	b.Cleanup(func() { stats.Close() })
}
