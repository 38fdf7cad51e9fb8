package tracer

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestCostMask(t *testing.T) {
	for _, c := range []struct {
		runs uint64
		d    time.Duration
		want uint32
	}{
		{0, time.Second, 0},
		{1999, time.Second, 0},         // every run timed
		{8000, time.Second, 7},         // 4 runs per timed one: mask/2+1 = 4.5
		{1_000_000, time.Second, 1023}, // 500 per timed one: 512.5
		{500_000, 500 * time.Millisecond, 1023},
		{1 << 40, time.Second, costMaxMask},
	} {
		if got := costMask(c.runs, c.d); got != c.want {
			t.Errorf("costMask(%d, %s) = %d, want %d", c.runs, c.d, got, c.want)
		}
		if m := costMask(c.runs, c.d); m&(m+1) != 0 {
			t.Errorf("costMask(%d, %s) = %d: not a power of two minus one", c.runs, c.d, m)
		}
	}
}

// TestCostMeter drives the meter with a real per-CPU map written by the
// test (as the BPF programs would) and a fake process clock.
// testMeter is a costMeter over a real per-CPU map the test fills, with
// the process CPU time in *proc, ready at start.
type testMeter struct {
	*costMeter
	set   func(slot uint32, perCPU ...costSlot)
	proc  *time.Duration
	start time.Time
}

func newTestMeter(t *testing.T) testMeter {
	t.Helper()
	testenv.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: uint32(binary.Size(costCPU{})), MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]costCPU, ncpu)
	set := func(slot uint32, perCPU ...costSlot) {
		t.Helper()
		for i := range vals {
			vals[i].Slots[slot] = costSlot{}
			if i < len(perCPU) {
				vals[i].Slots[slot] = perCPU[i]
			}
		}
		if err := m.Put(uint32(0), vals); err != nil {
			t.Fatal(err)
		}
	}
	proc := new(time.Duration)
	start := time.Unix(1000, 0)
	c := &costMeter{m: m, maxPct: 5, window: CostWindow, procCPU: func() time.Duration { return *proc }, ready: start,
		slots: map[uint32]string{1: "ingress", 2: "egress"}, prev: map[uint32]costSlot{},
		hooks: map[uint32]*hookTotal{1: {}, 2: {}}}
	c.last = costPoint{at: start}
	c.history = []costPoint{c.last}
	return testMeter{c, set, proc, start}
}

func TestCostMeter(t *testing.T) {
	tm := newTestMeter(t)
	c, set, start := tm.costMeter, tm.set, tm.start
	var proc time.Duration
	tm.procCPU = func() time.Duration { return proc }

	// 0.5 s: ingress 1000 runs (two CPUs), 10 timed: 9 unrelated at
	// 100 ns, and one of the 3 runs that reserved an event (the pings':
	// 250 ns each from their event on); egress 40 runs, none timed yet.
	set(1, costSlot{Runs: 600, Timed: 6, TimedNS: 500 + 350, TimedMatched: 1, TimedMatchedNS: 350, Matched: 2, MatchedNS: 500},
		costSlot{Runs: 400, Timed: 4, TimedNS: 400, Matched: 1, MatchedNS: 250})
	set(2, costSlot{Runs: 40})
	proc = 2 * time.Millisecond
	if err := c.read(start.Add(500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, over := c.over(); over {
		t.Error("over --max-cpu before half a window passed")
	}
	// 1.5 s: ingress 1000 more runs, 10 more timed (2800 ns, none
	// matched); egress gets its first timed runs (200 ns): its first 40
	// runs are priced at that too.
	set(1, costSlot{Runs: 1600, Timed: 16, TimedNS: 850 + 2800, TimedMatched: 1, TimedMatchedNS: 350, Matched: 2, MatchedNS: 500},
		costSlot{Runs: 400, Timed: 4, TimedNS: 400, Matched: 1, MatchedNS: 250})
	set(2, costSlot{Runs: 140, Timed: 2, TimedNS: 400})
	proc = 4 * time.Millisecond
	if err := c.read(start.Add(1500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got := c.cost()
	// ingress: every run at its interval's unrelated mean (1000 × 100,
	// 1000 × 280) plus the matched runs' 750 ns from their events on.
	if want := uint64(1000*100 + 1000*280 + 750); got.Hooks["ingress"].NS != want || got.Hooks["ingress"].Runs != 2000 {
		t.Errorf("ingress %+v, want %d ns over 2000 runs", got.Hooks["ingress"], want)
	}
	// The pings' share: exactly the 3 runs that reserved an event, each
	// priced at the unrelated mean (100 ns) plus its 250 ns.
	if h := got.Hooks["ingress"]; h.MatchedRuns != 3 || h.MatchedNS != 1050 {
		t.Errorf("ingress matched %d runs %d ns, want 3 runs 1050 ns", h.MatchedRuns, h.MatchedNS)
	}
	if got.MatchedBPFNS != 1050 || got.MatchedBPFRuns != 3 || got.Hooks["egress"].MatchedRuns != 0 {
		t.Errorf("matched totals %d ns %d runs (egress %d runs), want 1050 ns 3 runs (egress 0)",
			got.MatchedBPFNS, got.MatchedBPFRuns, got.Hooks["egress"].MatchedRuns)
	}
	if got.Hooks["egress"].NS != 140*200 || got.Hooks["egress"].Runs != 140 {
		t.Errorf("egress %+v, want 28000 ns over 140 runs", got.Hooks["egress"])
	}
	if got.BPFNS != 408_750 || got.BPFRuns != 2140 || got.BPFTimedRuns != 22 || got.UserNS != 4_000_000 {
		t.Errorf("totals %+v", *got)
	}
	if got.WallNS != uint64(1500*time.Millisecond) || got.CPUPercent != 0.29 {
		t.Errorf("wall %d cpu %.2f %%, want 1.5 s and (0.408+4)/1500 = 0.29 %%", got.WallNS, got.CPUPercent)
	}
	if _, over := c.over(); over {
		t.Error("0.3 % over --max-cpu 5 %")
	}
	// The process burns 100 ms in the next 0.5 s: over the 2 s window,
	// 104.4 ms / 2 s > 5 %.
	proc = 104 * time.Millisecond
	if err := c.read(start.Add(2000 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	msg, over := c.over()
	if !over || !strings.Contains(msg, "--max-cpu 5 %") {
		t.Errorf("over = %v %q: want over --max-cpu", over, msg)
	}
	if p := c.cost().PeakCPUPercent; p < 5 {
		t.Errorf("peak %.2f %%, want above 5", p)
	}
}

// A timed run interrupted between its clock reads (a preempted vCPU, an
// NMI) is not a price for every run: a hook's mean is capped at maxRunNS,
// so one 7 ms sample over 16 runs (seen in a TCG guest) does not stop the
// tracer, while a hook that really is slow still counts in full.
func TestCostMeterInterruptedSample(t *testing.T) {
	tm := newTestMeter(t)
	tm.set(1, costSlot{Runs: 16, Timed: 1, TimedNS: 7_000_000})
	for _, at := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond} {
		if err := tm.read(tm.start.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tm.cost().Hooks["ingress"].NS; got != 16*maxRunNS {
		t.Errorf("ingress priced at %d ns, want 16 runs at the cap %d ns", got, maxRunNS)
	}
	if msg, over := tm.over(); over {
		t.Errorf("one interrupted sample stopped the tracer: %s", msg)
	}
	// 20 000 runs a second at the cap is 200 % of a CPU: over.
	tm.set(1, costSlot{Runs: 16 + 40_000, Timed: 1 + 400, TimedNS: 7_000_000 + 400*maxRunNS})
	if err := tm.read(tm.start.Add(3500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, over := tm.over(); !over {
		t.Errorf("a hook at %d ns a run, 20 000 runs a second, is not over --max-cpu 5 %%", maxRunNS)
	}
}

// A longer --max-cpu-window lets a jump of CPU time pass that a 2 s window
// stops on (an idle tracer in a nested VM measured 165.7 % of one CPU over
// 2.3 s while its host was busy), and still stops a tracer whose cost
// stays high over the whole window.
func TestCostMeterWindow(t *testing.T) {
	tm := newTestMeter(t)
	c, start := tm.costMeter, tm.start
	c.window = 20 * time.Second
	var proc time.Duration
	tm.procCPU = func() time.Duration { return proc }
	at := func(d time.Duration) {
		t.Helper()
		if err := c.read(start.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	// 3.8 s of CPU within the first 2.5 s, then nothing.
	for d := 500 * time.Millisecond; d <= 20*time.Second; d += 500 * time.Millisecond {
		if d <= 2500*time.Millisecond {
			proc = time.Duration(float64(3800*time.Millisecond) * d.Seconds() / 2.5)
		}
		at(d)
		if d < 10*time.Second {
			if _, over := c.over(); over {
				t.Fatalf("over at %s: before half the 20 s window", d)
			}
		}
	}
	// 3.8 s over 20 s is 19 % of one CPU: under --max-cpu 25, over 5.
	c.maxPct = 25
	if msg, over := c.over(); over {
		t.Errorf("a 3.8 s jump over a 20 s window stopped the tracer at --max-cpu 25: %s", msg)
	}
	c.maxPct = 5
	if msg, over := c.over(); !over || !strings.Contains(msg, "over the last 20s") {
		t.Errorf("over = %v %q, want over --max-cpu 5 over the last 20s", over, msg)
	}
}

// A hook only the pings reach has no unrelated timed run: the part of its
// runs before their first event is what the timed runs took beyond the
// measured part from there on.
func TestUnrelatedMean(t *testing.T) {
	for _, c := range []struct {
		name string
		d    costSlot
		want float64
		ok   bool
	}{
		{"unrelated timed runs", costSlot{Timed: 5, TimedNS: 1000 + 600, TimedMatched: 1, TimedMatchedNS: 600}, 250, true},
		{"every timed run matched", costSlot{Timed: 2, TimedNS: 1000, TimedMatched: 2, TimedMatchedNS: 1000, Matched: 4, MatchedNS: 1600}, 100, true},
		{"measured part longer than the timed runs", costSlot{Timed: 1, TimedNS: 300, TimedMatched: 1, TimedMatchedNS: 300, Matched: 1, MatchedNS: 400}, 0, true},
		{"nothing timed", costSlot{Runs: 10, Matched: 2, MatchedNS: 800}, 0, false},
	} {
		got, ok := unrelatedMean(c.d)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: unrelatedMean = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
