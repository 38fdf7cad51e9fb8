package tracer

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/record"
)

// What a tracer costs the host, measured by itself (pingpath.h: pp_cost,
// PP_COSTED). Every BPF program counts its runs in a per-CPU slot (its hook
// number) and times a random sample of them, and the runs of the pings'
// own packets are counted and timed exactly; the meter turns that into an
// estimate of the programs' run time, adds the CPU time of the tracer
// process, and holds the sum to --max-cpu.
//
// Why not the kernel's own run-time statistics (kernel.bpf_stats_enabled,
// BPF_ENABLE_STATS)? They are one switch for the whole machine: while on,
// every BPF program of every user of the host pays two clock reads per run.
// The sample costs this tracer's programs alone a per-CPU counter update per
// run and two clock reads on the few runs it times. What neither sees is the
// attach mechanism's own entry cost (a kprobe's trap, a trampoline): it is
// not in the figures.

// CostMap is the per-CPU cost accounting map of every pingpath object.
const CostMap = "pp_cost"

// costMaskVar is the sample rate control (pp_cost_mask).
const costMaskVar = "pp_cost_mask"

const (
	// DefaultMaxCPU is --max-cpu's default, in percent of one CPU: BPF
	// run time on all CPUs plus the tracer process's CPU time.
	DefaultMaxCPU = 5.0
	// CostWindow is the default span the --max-cpu limit is held over
	// (--max-cpu-window): shorter bursts do not stop a tracer.
	CostWindow = 2 * time.Second
	// costEvery is how often the meter reads the counters.
	costEvery = 500 * time.Millisecond
	// costTimedPerSec is about how many runs a second are timed, whatever
	// the run rate (two clock reads each).
	costTimedPerSec = 2000
	// costMaxMask bounds the sample interval (one run in ~2^19);
	// costInitialMask is pp_cost_mask's initial value in pingpath.h.
	costMaxMask     = 1<<20 - 1
	costInitialMask = 63
	// maxRunNS caps the mean run time of a sample. Our programs run a few
	// hundred ns (tens of µs emulated); a timed run far above that was
	// interrupted between its two clock reads — an NMI, the hypervisor
	// preempting a VM's vCPU (the vm tracer runs in guests), emulation —
	// and, when it is an interval's only timed run, would price every run
	// of the interval at it: in a TCG guest one 7 ms sample of 16 runs
	// stopped a tracer over --max-cpu.
	maxRunNS = 100_000
)

// CostHooks is implemented by tools that name the cost slots their
// programs account under (the hook numbers of their PP_COSTED wrappers).
// The trailer's cost is split by these names; a tool without names has its
// slots read and named by number.
type CostHooks interface {
	CostHooks() map[uint32]string
}

// costSlots is PP_COST_SLOTS: the slots of struct pp_cpu.
const costSlots = 32

// costCPU mirrors struct pp_cpu, one CPU's value of the pp_cost map.
type costCPU struct {
	Slots   [costSlots]costSlot
	Unwoken uint64
	MatchTS uint64
}

// costSlot mirrors struct pp_cost.
type costSlot struct {
	Runs, Timed, TimedNS, Skip   uint64
	TimedMatched, TimedMatchedNS uint64 // timed runs that reserved an event
	Matched, MatchedNS           uint64 // every such run, timed from its first event on
}

func (s *costSlot) add(o costSlot) {
	s.Runs += o.Runs
	s.Timed += o.Timed
	s.TimedNS += o.TimedNS
	s.TimedMatched += o.TimedMatched
	s.TimedMatchedNS += o.TimedMatchedNS
	s.Matched += o.Matched
	s.MatchedNS += o.MatchedNS
}

func (s costSlot) sub(o costSlot) costSlot {
	return costSlot{Runs: s.Runs - o.Runs, Timed: s.Timed - o.Timed, TimedNS: s.TimedNS - o.TimedNS,
		TimedMatched: s.TimedMatched - o.TimedMatched, TimedMatchedNS: s.TimedMatchedNS - o.TimedMatchedNS,
		Matched: s.Matched - o.Matched, MatchedNS: s.MatchedNS - o.MatchedNS}
}

// hookTotal is one slot's cumulative figures.
//
// Every run pays for telling whether its packet is one of the pings'; that
// part is priced at the mean of the sampled runs that were not (mean). The
// pings' runs (matched: they reserved an event) are counted exactly and
// also pay their measured time from their first event on (pingpath.h,
// pp_cost_end), so their share does not depend on the sample catching a
// few hundred runs among a busy host's millions.
type hookTotal struct {
	runs, timed uint64
	ns          float64 // estimated run time of all runs
	mean        float64 // ns per unrelated run, latest interval that had a timed one
	priced      bool    // mean is known
	matchedRuns uint64
	matchedNS   float64 // the matched runs' part of ns
	// unpriced and unpricedMatched count runs before the first mean:
	// they get the first mean known.
	unpriced, unpricedMatched uint64
}

// add accounts one interval's counters d.
func (h *hookTotal) add(d costSlot) {
	h.runs += d.Runs
	h.timed += d.Timed
	h.matchedRuns += d.Matched
	priced, pricedMatched := d.Runs, d.Matched
	if mean, ok := unrelatedMean(d); ok {
		h.mean, h.priced = min(mean, maxRunNS), true
		priced += h.unpriced
		pricedMatched += h.unpricedMatched
		h.unpriced, h.unpricedMatched = 0, 0
	}
	if !h.priced {
		h.unpriced += d.Runs
		h.unpricedMatched += d.Matched
	}
	h.ns += float64(priced)*h.mean + float64(d.MatchedNS)
	h.matchedNS += float64(pricedMatched)*h.mean + float64(d.MatchedNS)
}

// unrelatedMean is the run time of a run up to telling its packet is not
// the pings': the mean of the interval's timed runs that did not match,
// or, where every timed run matched (a hook only the pings reach), what
// their full runs took beyond the measured part from their first event on.
func unrelatedMean(d costSlot) (float64, bool) {
	if other := d.Timed - d.TimedMatched; other > 0 {
		return float64(d.TimedNS-d.TimedMatchedNS) / float64(other), true
	}
	if d.TimedMatched == 0 || d.Matched == 0 {
		return 0, false
	}
	pre := float64(d.TimedMatchedNS)/float64(d.TimedMatched) - float64(d.MatchedNS)/float64(d.Matched)
	return max(pre, 0), true
}

type costPoint struct {
	at time.Time
	ns float64 // BPF estimate + process CPU since ready
}

// costMeter reads and sums a loaded tracer's cost.
type costMeter struct {
	m        *ebpf.Map
	mask     *ebpf.Variable
	slots    map[uint32]string
	maxPct   float64
	window   time.Duration // the span maxPct is held over
	procCPU  func() time.Duration
	ready    time.Time
	startCPU time.Duration // process CPU at ready
	prev     map[uint32]costSlot
	hooks    map[uint32]*hookTotal
	history  []costPoint
	last     costPoint
	peak     float64
	curMask  uint32
}

// newCostMeter starts measuring a tracer that is ready now. procCPU is the
// process CPU time (nil: processCPU).
func newCostMeter(l *Loaded, tool Tool, maxPct float64, window time.Duration, procCPU func() time.Duration) (*costMeter, error) {
	m := l.Coll.Maps[CostMap]
	if m == nil {
		return nil, fmt.Errorf("measuring the tracer's cost: no %s map in the BPF object", CostMap)
	}
	if want := uint32(binary.Size(costCPU{})); m.ValueSize() != want {
		return nil, fmt.Errorf("measuring the tracer's cost: %s values are %d bytes, this build reads %d (object and binary from different builds?)", CostMap, m.ValueSize(), want)
	}
	if procCPU == nil {
		procCPU = processCPU
	}
	c := &costMeter{m: m, mask: l.Coll.Variables[costMaskVar], maxPct: maxPct, window: window, procCPU: procCPU, ready: time.Now(),
		startCPU: procCPU(), prev: map[uint32]costSlot{}, hooks: map[uint32]*hookTotal{}, curMask: costInitialMask}
	if n, ok := tool.(CostHooks); ok {
		c.slots = n.CostHooks()
	} else {
		c.slots = map[uint32]string{}
		for i := uint32(0); i < costSlots; i++ {
			c.slots[i] = fmt.Sprintf("hook%d", i)
		}
	}
	for s := range c.slots {
		if s >= costSlots {
			return nil, fmt.Errorf("measuring the tracer's cost: hook %q has slot %d, past the %d slots", c.slots[s], s, costSlots)
		}
		c.hooks[s] = &hookTotal{}
	}
	c.last = costPoint{at: c.ready}
	c.history = []costPoint{c.last}
	return c, c.read(c.ready)
}

// read takes the counters at now, adds the interval since the last read to
// the totals, and adapts the sample rate to the run rate.
func (c *costMeter) read(now time.Time) error {
	vals := make([]costCPU, 0, 64)
	if err := c.m.Lookup(uint32(0), &vals); err != nil {
		return fmt.Errorf("reading the cost counters: %w", err)
	}
	var runs uint64
	var bpf float64
	for slot, h := range c.hooks {
		var cur costSlot
		for i := range vals {
			cur.add(vals[i].Slots[slot])
		}
		d := cur.sub(c.prev[slot])
		c.prev[slot] = cur
		h.add(d)
		runs += d.Runs
		bpf += h.ns
	}
	pt := costPoint{at: now, ns: bpf + float64(c.procCPU()-c.startCPU)}
	c.adaptMask(runs, now.Sub(c.last.at))
	c.last = pt
	c.history = append(c.history, pt)
	// Keep the newest point at least a window old as the base.
	for len(c.history) > 2 && now.Sub(c.history[1].at) >= c.window {
		c.history = c.history[1:]
	}
	if p, ok := c.windowPercent(); ok {
		c.peak = max(c.peak, p)
	}
	return nil
}

// adaptMask sets the sample rate for the run rate of the last interval.
func (c *costMeter) adaptMask(runs uint64, d time.Duration) {
	if c.mask == nil || d <= 0 {
		return
	}
	if mask := costMask(runs, d); mask != c.curMask && c.mask.Set(mask) == nil {
		c.curMask = mask
	}
}

// costMask is the pp_cost_mask that times about costTimedPerSec of runs
// runs in d: skips are uniform in [0, mask], so one run in mask/2+1 is
// timed; a power of two minus one, at most costMaxMask.
func costMask(runs uint64, d time.Duration) uint32 {
	interval := float64(runs) / d.Seconds() / costTimedPerSec // runs per timed run wanted
	if interval <= 1 {
		return 0
	}
	if interval >= costMaxMask/2 {
		return costMaxMask
	}
	return uint32(1)<<bits.Len32(uint32(math.Ceil(2*interval-2))) - 1
}

// windowPercent is the cost over the last window (at least half of it
// must have passed since ready) in percent of one CPU.
func (c *costMeter) windowPercent() (float64, bool) {
	base, last := c.history[0], c.last
	d := last.at.Sub(base.at)
	if d < c.window/2 {
		return 0, false
	}
	return (last.ns - base.ns) / float64(d.Nanoseconds()) * 100, true
}

// over reports whether the cost over the last window exceeds --max-cpu,
// and says so in words.
func (c *costMeter) over() (string, bool) {
	p, ok := c.windowPercent()
	if !ok || c.maxPct <= 0 || p <= c.maxPct {
		return "", false
	}
	d := c.last.at.Sub(c.history[0].at).Round(100 * time.Millisecond)
	return fmt.Sprintf("tracing cost %.1f %% of one CPU over the last %s (BPF programs and tracer process), more than --max-cpu %g %%: probes detached, this tracer stopped",
		p, d, c.maxPct), true
}

// bpfTotals is the BPF run time (ns) and runs measured so far.
func (c *costMeter) bpfTotals() (ns, runs uint64) {
	var sum float64
	for _, h := range c.hooks {
		sum += h.ns
		runs += h.runs
	}
	return uint64(sum), runs
}

// cost is the trailer's account of everything measured so far.
func (c *costMeter) cost() *record.Cost {
	out := &record.Cost{WallNS: uint64(c.last.at.Sub(c.ready)), StartNS: uint64(c.startCPU),
		PeakCPUPercent: round2(c.peak), MaxCPUPercent: c.maxPct, Hooks: map[string]record.HookCost{}}
	var bpf, matched float64
	var matchedRuns uint64
	slots := make([]uint32, 0, len(c.hooks))
	for s := range c.hooks {
		slots = append(slots, s)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	for _, s := range slots {
		h := c.hooks[s]
		bpf += h.ns
		matched += h.matchedNS
		matchedRuns += h.matchedRuns
		out.BPFRuns += h.runs
		out.BPFTimedRuns += h.timed
		if h.runs > 0 {
			out.Hooks[c.slots[s]] = record.HookCost{Runs: h.runs, NS: uint64(h.ns),
				MatchedRuns: h.matchedRuns, MatchedNS: uint64(h.matchedNS)}
		}
	}
	out.BPFNS = uint64(bpf)
	out.MatchedBPFNS = uint64(matched)
	out.MatchedBPFRuns = matchedRuns
	if user := c.last.ns - bpf; user > 0 {
		out.UserNS = uint64(user)
	}
	if out.WallNS > 0 {
		out.CPUPercent = round2(float64(out.TotalNS()) / float64(out.WallNS) * 100)
	}
	return out
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// processCPU is the CPU time (user + system) of this process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
