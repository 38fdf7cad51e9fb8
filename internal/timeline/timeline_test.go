package timeline

import (
	"path/filepath"
	"sort"
	"testing"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/parse"
)

// ping builds a joined ping from µs values (as the analysis would derive
// them) with the vantage points' first-stage wall times.
func ping(us map[int]int64, at map[parse.Vantage]int64) *analyze.Ping {
	p := &analyze.Ping{}
	for v, x := range us {
		p.Val[v] = x * 1000
		p.Has |= 1 << v
	}
	for v, t := range at {
		p.At[v] = t * 1000
	}
	return p
}

// A ping with every segment: the sender side's unmeasured time is 6 µs
// before B_1 (request) and 4 µs after L (reply); the receiver side's is 3 µs
// after E and 7 µs before I_1; C = 40, J = 45.
func fullPing() (*analyze.Ping, map[string][2]int64) {
	seg := map[int]int64{analyze.SegA: 10, analyze.SegB1: 20, analyze.SegB: 30, analyze.SegC: 40, analyze.SegD: 25,
		analyze.SegE: 35, analyze.SegF: 15, analyze.SegG: 5, analyze.SegH: 8, analyze.SegI1: 22, analyze.SegI: 27,
		analyze.SegJ: 45, analyze.SegK: 33, analyze.SegL: 31, analyze.SegM: 12}
	// Expected [start, end) of each leaf along the path, in µs.
	want := map[string][2]int64{}
	t := int64(0)
	step := func(name string, d int64) {
		if name != "" {
			want[name+"@"+string(rune('0'+len(want)))] = [2]int64{t, t + d}
		}
		t += d
	}
	step("A", 10)
	step("virt_unmeasured_sender", 6)
	step("B_1", 20)
	hostS := t
	step("B", 30)
	step("C", 40)
	hostR := t
	step("D", 25)
	step("E", 35)
	step("virt_unmeasured_receiver", 3)
	vmR := t
	step("F", 15)
	step("G", 5)
	step("H", 8)
	step("virt_unmeasured_receiver", 7)
	step("I_1", 22)
	step("I", 27)
	step("J", 45)
	step("K", 33)
	step("L", 31)
	step("virt_unmeasured_sender", 4)
	step("M", 12)
	rtt := t
	v := map[int]int64{}
	for k, x := range seg {
		v[k] = x
	}
	v[analyze.ValRTT] = rtt
	v[analyze.ValInterS] = rtt - 10 - 12
	v[analyze.ValTotalS] = 30 + 40 + 25 + 35 + 3 + 15 + 5 + 8 + 7 + 22 + 27 + 45 + 33
	v[analyze.ValExtS] = v[analyze.ValTotalS] - 30 - 33
	v[analyze.ValTotalR] = v[analyze.ValExtS] - 40 - 45
	v[analyze.ValExtR] = v[analyze.ValTotalR] - 25 - 27
	v[analyze.ValTotalRV] = 15 + 5 + 8
	v[analyze.ValResidS] = 10
	v[analyze.ValResidR] = 10
	v[analyze.SegCJ] = 85
	const t0 = 1_000_000
	return ping(v, map[parse.Vantage]int64{parse.VMTx: t0, parse.HostSender: t0 + hostS,
		parse.HostReceiver: t0 + hostR, parse.VMRx: t0 + vmR}), want
}

// leaves returns the slices that tile the path (neither outer intervals nor
// the containers of other slices), ordered by start.
func leaves(s []Slice) []Slice {
	var out []Slice
	for _, x := range s {
		if x.Kind != Outer {
			out = append(out, x)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

func TestLayoutSharedClock(t *testing.T) {
	p, want := fullPing()
	got := leaves(Layout(p, Clocks{SenderVMHost: true, Hosts: true, ReceiverHostVM: true}))
	if len(got) != len(want) {
		t.Fatalf("%d leaves, want %d: %+v", len(got), len(want), got)
	}
	for i, s := range got {
		w := want[s.Name+"@"+string(rune('0'+i))]
		if s.Start != w[0]*1000 || s.Start+s.Dur != w[1]*1000 {
			t.Errorf("leaf %d %s [%d, %d) ns, want [%d, %d) µs", i, s.Name, s.Start, s.Start+s.Dur, w[0], w[1])
		}
		if s.Kind == Estimated {
			t.Errorf("%s estimated although every clock is shared", s.Name)
		}
	}
}

// Without shared clocks the durations are the same, the residuals are
// split evenly and say so; C and J are whatever the analysis measured.
func TestLayoutSeparateClocks(t *testing.T) {
	p, _ := fullPing()
	p.Has &^= 1<<analyze.SegC | 1<<analyze.SegJ // C and J need a shared clock
	s := Layout(p, Clocks{})
	var residS, residR, cj int64
	est := 0
	for _, x := range s {
		switch x.Name {
		case "virt_unmeasured_sender":
			residS += x.Dur
		case "virt_unmeasured_receiver":
			residR += x.Dur
		case "C", "J":
			cj += x.Dur
		}
		if x.Kind == Estimated {
			est++
		}
	}
	if residS != 10_000 || residR != 10_000 || cj != 85_000 || est != 6 {
		t.Errorf("resid %d/%d ns, C+J %d ns, %d estimated slices: %+v", residS, residR, cj, est, s)
	}
	checkTiling(t, "separate clocks", p, s, 0)
}

// A refused residual is not drawn; a missing host leaves a named hole.
func TestLayoutRefusedAndMissing(t *testing.T) {
	p, _ := fullPing()
	p.Excl |= 1 << analyze.ValResidS
	for _, x := range Layout(p, Clocks{}) {
		if x.Name == "virt_unmeasured_sender" {
			t.Errorf("refused residual drawn: %+v", x)
		}
	}
	p, _ = fullPing()
	p.Has &^= 1 << analyze.ValTotalS
	s := Layout(p, Clocks{})
	if len(s) != 5 || s[4].Name != "sender side not traced" || s[4].Kind != Unmeasured {
		t.Errorf("without the sender host: %+v", s)
	}
	p.Excl |= 1 << analyze.SegA
	if s := Layout(p, Clocks{}); s != nil {
		t.Errorf("laid out without A: %+v", s)
	}
}

// pathOrder ranks the leaves along the path; a side's residual appears
// twice (request, then reply).
var pathOrder = []string{"A", "virt_unmeasured_sender", "B_1", "B", "C", "D", "E", "virt_unmeasured_receiver",
	"F", "G", "H", "virt_unmeasured_receiver", "I_1", "I", "J", "K", "L", "virt_unmeasured_sender", "M"}

// checkTiling: for a ping with every path value, the non-outer slices in
// path order follow each other without gap or overlap (a negative residual
// steps back by its value) and end at the RTT.
// tol allows for the origin tools' logs, whose values are rounded to the
// µs or 0.1 µs (a host's total is then not exactly the sum of its parts).
func checkTiling(t *testing.T, name string, p *analyze.Ping, s []Slice, tol int64) {
	t.Helper()
	rtt, _ := p.Get(analyze.ValRTT)
	seen := map[string]int{}
	rank := func(x Slice) int {
		n := 0
		for i, o := range pathOrder {
			if o == x.Name {
				if n == seen[x.Name+x.Lane] {
					return i
				}
				n++
			}
		}
		return -1
	}
	ls := leaves(s)
	ranked := make([]int, len(ls))
	for i, x := range ls {
		ranked[i] = rank(x)
		seen[x.Name+x.Lane]++
	}
	idx := make([]int, len(ls))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return ranked[idx[a]] < ranked[idx[b]] })
	end := int64(0)
	for _, i := range idx {
		x := ls[i]
		if abs(x.Start-end) > tol {
			t.Errorf("%s seq %d: %s starts at %d, previous ended at %d", name, p.Seq, x.Name, x.Start, end)
			return
		}
		end = x.Start + x.Value
	}
	if abs(end-rtt) > tol {
		t.Errorf("%s seq %d: leaves end at %d, RTT %d", name, p.Seq, end, rtt)
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// On the anchor runs (origin logs, separate clocks), every ping the
// analysis fully measured is tiled exactly by its layout.
func TestLayoutAnchorRuns(t *testing.T) {
	// (The other anchor runs have no ping with every value: A is refused
	// on all of 20260206-160003's, 20260205-183643 has no vhost logs.)
	for _, run := range []string{"measurement-20260204-180934"} {
		res, err := analyze.Run(filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", run))
		if err != nil {
			t.Fatal(err)
		}
		clocks := ClocksOf(res)
		n := 0
		for i := range res.Pings {
			p := &res.Pings[i]
			full := true
			for _, v := range []int{analyze.ValRTT, analyze.SegA, analyze.SegM, analyze.ValInterS, analyze.ValTotalS,
				analyze.SegB, analyze.SegK, analyze.ValExtS, analyze.ValTotalR, analyze.SegD, analyze.SegI, analyze.ValExtR,
				analyze.ValTotalRV, analyze.SegF, analyze.SegG, analyze.SegH, analyze.ValResidS, analyze.ValResidR} {
				if _, ok := p.Get(v); !ok {
					full = false
				}
			}
			if !full {
				continue
			}
			n++
			checkTiling(t, run, p, Layout(p, clocks), 1000)
		}
		if n == 0 {
			t.Errorf("%s: no fully measured ping", run)
		}
	}
}
