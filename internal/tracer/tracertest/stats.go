package tracertest

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// EnableStats turns on the kernel's BPF run-time accounting until the
// returned closer is closed (skips, or fails when CI=true, if refused).
func EnableStats(t testing.TB) io.Closer {
	t.Helper()
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	testenv.Require(t, err == nil, fmt.Sprintf("bpf_stats: %v", err))
	return c
}

// Stat is a program's bpf_stats counters: runs and total run time.
type Stat struct {
	Runs uint64
	Time time.Duration
}

// PerRun is the mean run time in ns (0 without runs).
func (s Stat) PerRun() float64 {
	if s.Runs == 0 {
		return 0
	}
	return float64(s.Time.Nanoseconds()) / float64(s.Runs)
}

// Stats is bpf_stats per program name at one moment.
type Stats map[string]Stat

// ReadStats reads the counters of the programs ids, summed per program name
// (two tracers loading the same programs count together).
func ReadStats(t testing.TB, ids []ebpf.ProgramID) Stats {
	t.Helper()
	out := Stats{}
	for _, id := range ids {
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			t.Fatalf("opening program %d: %v", id, err)
		}
		info, err := prog.Info()
		if err != nil {
			prog.Close()
			t.Fatalf("program %d info: %v", id, err)
		}
		st, err := prog.Stats()
		prog.Close()
		if err != nil {
			t.Fatalf("program %d (%s) stats: %v", id, info.Name, err)
		}
		s := out[info.Name]
		out[info.Name] = Stat{s.Runs + st.RunCount, s.Time + st.Runtime}
	}
	return out
}

// Sub returns the counters accumulated from before to s, and their total
// run time.
func (s Stats) Sub(before Stats) (Stats, time.Duration) {
	out := Stats{}
	var total time.Duration
	for name, a := range s {
		d := Stat{a.Runs - before[name].Runs, a.Time - before[name].Time}
		out[name] = d
		total += d.Time
	}
	return out, total
}

// Median of xs (which it sorts); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// Add returns the counters of s and o summed per program name.
func (s Stats) Add(o Stats) Stats {
	out := Stats{}
	for _, m := range []Stats{s, o} {
		for name, a := range m {
			out[name] = Stat{out[name].Runs + a.Runs, out[name].Time + a.Time}
		}
	}
	return out
}

// Report reports each program's mean run time as the metric
// "ns/run-<phase>-<name>" and logs runs and mean per program, by name.
func (s Stats) Report(b *testing.B, phase string) {
	b.Helper()
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := s[n]
		if d.Runs == 0 {
			b.Logf("%-9s %-16s runs=0", phase, n)
			continue
		}
		b.Logf("%-9s %-16s runs=%-8d %.0f ns/run", phase, n, d.Runs, d.PerRun())
		b.ReportMetric(d.PerRun(), "ns/run-"+phase+"-"+n)
	}
}

// FloodFor sends unrelated UDP from ns to dst:9 for d as fast as a Go
// sender goes (nettest.Netns.UDPFlood) and returns how many datagrams left.
func FloodFor(t testing.TB, ns *nettest.Netns, dst netip.Addr, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n, err := ns.UDPFlood(ctx, netip.AddrPortFrom(dst, 9), 0)
	if err != nil {
		t.Fatalf("UDP flood from %s: %v", ns.Name, err)
	}
	return n
}
