package analyze

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/record"
)

func anchor(name string) string {
	return filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", name)
}

func findPing(t *testing.T, r *Result, id, seq uint16) *Ping {
	t.Helper()
	for i := range r.Pings {
		if r.Pings[i].ID == id && r.Pings[i].Seq == seq {
			return &r.Pings[i]
		}
	}
	t.Fatalf("ping id %d seq %d not found", id, seq)
	return nil
}

func wantUS(t *testing.T, p *Ping, v int, want float64) {
	t.Helper()
	got, ok := p.raw(v)
	if !ok {
		t.Errorf("id %d seq %d: %s missing, want %.3f µs", p.ID, p.Seq, ValueNames[v], want)
		return
	}
	if math.Abs(float64(got)/1000-want) > 0.0005 {
		t.Errorf("id %d seq %d: %s = %.3f µs, want %.3f µs", p.ID, p.Seq, ValueNames[v], float64(got)/1000, want)
	}
}

func sharesSum(r *Result) float64 {
	var s float64
	for _, l := range r.Layers {
		s += l.Share
	}
	return s
}

// The origin logs of measurement-20260206-160003, numbers checked by hand
// against the log lines quoted in the comments.
func TestAnchor160003(t *testing.T) {
	r, err := Run(anchor("measurement-20260206-160003"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != "origin" || r.Empty {
		t.Fatalf("source %q empty %v", r.Source, r.Empty)
	}
	// recv-host-vhost-rx.log, id 15812 seq 2: Delay d2=0.030 d3=0.009
	// d4=0.012 d5=0.003 ms. The tool's own Total(S1->S5) line says 0.055 ms
	// (d2+d3+d4+d5, t3−t2 counted twice); E = t5 − t1 = d2+d4+d5 = 45 µs.
	p := findPing(t, r, 15812, 2)
	wantUS(t, p, SegE, 45)
	// Same file, 15812 seq 5: its stage 2–5 block is printed BEFORE its
	// stage-1 line (d2=0.028 d4=0.013 d5=0.002): E = 43 µs.
	wantUS(t, findPing(t, r, 15812, 5), SegE, 43)
	// send-host-icmp.log 15812/1: External=398.7; recv-host-icmp.log
	// 15812/1: Total=380.3 → C+J = 18.4 µs.
	p = findPing(t, r, 15812, 1)
	wantUS(t, p, SegCJ, 18.4)
	wantUS(t, p, SegB, 80.8)
	wantUS(t, p, SegK, 54.9)
	wantUS(t, p, SegD, 106.7)
	wantUS(t, p, SegI, 60.1)
	// send-vm-icmp.log 15812/1: Path 1 = 60144.395 µs while the sender
	// host's whole round trip was 534.4 µs: refused, with the RTT.
	if p.Excl&(1<<SegA) == 0 || p.Excl&(1<<ValRTT) == 0 {
		t.Errorf("60 ms Path 1 of 15812/1 not refused: excl=%b", p.Excl)
	}
	found := false
	for _, e := range r.Excluded {
		if e.ID == 15812 && e.Seq == 1 && e.Segment == "A" && e.ValueUS == 60144.395 {
			found = true
		}
	}
	if !found {
		t.Errorf("exclusion of A=60144.395 on 15812/1 not listed: %+v", r.Excluded)
	}
	if r.Stats[SegA].N != 0 || r.Stats[ValRTT].N != 0 {
		t.Errorf("refused A/RTT averaged in: A n=%d RTT n=%d", r.Stats[SegA].N, r.Stats[ValRTT].N)
	}
	// M of 15812/1 is plausible (103.274 µs) and kept.
	wantUS(t, p, SegM, 103.274)
	if _, ok := p.Get(SegM); !ok {
		t.Error("M of 15812/1 refused")
	}
	// send-host-kvm-tun.log "[16:00:28.459] ... total=35us" pairs by time
	// with send-host-icmp.log "16:00:28.459 [new] ID=15812 Seq=3".
	wantUS(t, findPing(t, r, 15812, 3), SegB1, 35)
	// False drops: the sender host reports 15813/1 and /3 as EXTERNAL, the
	// receiver host 15813/2; the sender VM saw all three come back.
	got := map[uint16]string{}
	for _, d := range r.Drops {
		if d.ID == 15813 {
			got[d.Seq] = d.Status
		}
	}
	for _, seq := range []uint16{1, 2, 3} {
		if got[seq] != "false-drop" {
			t.Errorf("15813/%d: status %q, want false-drop (drops: %+v)", seq, got[seq], r.Drops)
		}
	}
	if r.Counts.Lost != 0 {
		t.Errorf("lost = %d, want 0", r.Counts.Lost)
	}
	if math.Abs(sharesSum(r)-1) > 1e-9 {
		t.Errorf("layer shares sum to %v", sharesSum(r))
	}
	if len(r.Layers) != 5 {
		t.Fatalf("layers: %+v", r.Layers)
	}
}

// The same hand checks on the other two runs with traffic.
func TestAnchorOthers(t *testing.T) {
	r, err := Run(anchor("measurement-20260204-180934"))
	if err != nil {
		t.Fatal(err)
	}
	// send-host-vhost-rx.log, id 160 seq 8 (reply → L): d2=0.040 d3=0.005
	// d4=0.008 d5=0.001 ms → L = 49 µs.
	wantUS(t, findPing(t, r, 160, 8), SegL, 49)
	// This run's sender VM Path 1 is plausible and kept.
	if r.Stats[SegA].N == 0 || r.Stats[ValRTT].N == 0 {
		t.Errorf("A/RTT unexpectedly refused: %+v", r.Excluded)
	}
	if math.Abs(sharesSum(r)-1) > 1e-9 {
		t.Errorf("layer shares sum to %v", sharesSum(r))
	}
	// Per ping, the layers partition the RTT exactly; so do their means.
	var sum float64
	for _, l := range r.Layers {
		sum += l.MeanUS
	}
	if math.Abs(sum-r.LayerRTTUS) > 0.01 {
		t.Errorf("layer means sum %.3f, RTT %.3f", sum, r.LayerRTTUS)
	}
	r2, err := Run(anchor("measurement-20260205-183643"))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Stats[SegA].N != 0 {
		t.Errorf("60 ms Path 1 of 183643 averaged in: %+v", r2.Stats[SegA])
	}
}

func TestAnchorEmpty(t *testing.T) {
	r, err := Run(anchor("measurement-20260204-180849"))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Empty || len(r.Pings) != 0 || r.Counts != (Counts{}) {
		t.Fatalf("empty run: empty=%v pings=%d counts=%+v", r.Empty, len(r.Pings), r.Counts)
	}
	if len(r.Files) != 9 {
		t.Errorf("%d files listed, want the 8 tool logs and commands.log", len(r.Files))
	}
	for _, f := range r.Files {
		want := FileNoObs
		if f.Path == "commands.log" {
			want = FileUsed
		}
		if f.Status != want {
			t.Errorf("%s: status %q, want %q", f.Path, f.Status, want)
		}
	}
	for _, c := range r.Coverage {
		if c.Vantage != "ping" && (c.Status != CovNoObs || len(c.Files) != 1) {
			t.Errorf("coverage %+v: want each vantage point to have run and observed nothing", c)
		}
	}
	if !strings.Contains(strings.Join(r.Notes, " "), "empty run") {
		t.Errorf("notes do not say empty: %q", r.Notes)
	}
	for v := 0; v < NumVals; v++ {
		if r.Stats[v].N != 0 {
			t.Errorf("%s has n=%d", ValueNames[v], r.Stats[v].N)
		}
	}
}

func TestRunErrors(t *testing.T) {
	if _, err := Run(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing directory: no error")
	}
	// A directory with nothing to analyse is an error naming what was
	// looked for, not an "empty run".
	dir := t.TempDir()
	var ni *NoInputError
	if _, err := Run(dir); !errors.As(err, &ni) || !strings.Contains(err.Error(), "it is empty") {
		t.Errorf("empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello\n"), 0o644)
	if _, err := Run(dir); !errors.As(err, &ni) || !strings.Contains(err.Error(), "found notes.txt (not recognised: text no tool writes)") {
		t.Errorf("wrong directory: %v", err)
	}
}

// A generated run with every segment known: shared clock (C and J), one
// lost ping, sequence numbers wrapping past 65535, and out-of-order host
// records.
func TestSyntheticExact(t *testing.T) {
	s := synthRun{pings: 30, firstSeq: 65520, id: 4242, sharedClk: true, lost: map[int]bool{5: true}, swapHost: true}
	dir := t.TempDir()
	s.write(t, dir)
	// Another ping (other ICMP id) on the same host must be ignored.
	writeForeign(t, dir)
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{Sent: 30, Matched: 30, Complete: 29, Lost: 1}); r.Counts != want {
		t.Errorf("counts %+v, want %+v", r.Counts, want)
	}
	if len(r.IDs) != 1 || r.IDs[0] != 4242 {
		t.Errorf("ids %v", r.IDs)
	}
	if !r.SharedClk {
		t.Error("shared clock not detected")
	}
	if len(r.Excluded) != 0 {
		t.Errorf("refused values in a clean run: %+v", r.Excluded)
	}
	segIdx := map[string]int{"A": SegA, "B_1": SegB1, "B": SegB, "C": SegC, "D": SegD, "E": SegE, "F": SegF,
		"G": SegG, "H": SegH, "I_1": SegI1, "I": SegI, "J": SegJ, "K": SegK, "L": SegL, "M": SegM}
	var aVals []float64
	for k := 0; k < s.pings; k++ {
		if s.lost[k] {
			continue
		}
		key := int64(s.firstSeq) + int64(k)
		var p *Ping
		for i := range r.Pings {
			if r.Pings[i].Key == key {
				p = &r.Pings[i]
			}
		}
		if p == nil {
			t.Fatalf("ping %d (key %d) missing", k, key)
		}
		if !p.Complete {
			t.Errorf("ping %d not complete", k)
		}
		for name, want := range s.segs(k) {
			wantUS(t, p, segIdx[name], float64(want)/1000)
		}
		v := s.segs(k)
		wantUS(t, p, SegCJ, float64(v["C"]+v["J"])/1000)
		wantUS(t, p, ValResidS, synthRes/1000)
		wantUS(t, p, ValResidR, synthRes/1000)
		wantUS(t, p, ValRTT, float64(s.expectRTT(k))/1000)
		// ping prints ms with 3 decimals: 1 µs resolution.
		if got, _ := p.raw(ValPingRTT); math.Abs(float64(got-s.expectRTT(k)-30_000)) > 500 {
			t.Errorf("ping %d: ping RTT %d ns, want %d ± 500", k, got, s.expectRTT(k)+30_000)
		}
		aVals = append(aVals, float64(v["A"])/1000)
	}
	sort.Float64s(aVals)
	if got, want := r.Stats[SegA].P50, round3(quantile(aVals, 0.5)); got != want || r.Stats[SegA].N != 29 {
		t.Errorf("A p50 %v n %d, want %v n 29", got, r.Stats[SegA].N, want)
	}
	if math.Abs(sharesSum(r)-1) > 1e-9 {
		t.Errorf("shares sum %v", sharesSum(r))
	}
	unm := r.Layers[4]
	if unm.Name != "virtualization unmeasured" || math.Abs(unm.MeanUS-2*synthRes/1000) > 1e-6 || unm.Flag != "" {
		t.Errorf("unmeasured layer %+v, want %v µs", unm, 2*synthRes/1000)
	}
	if len(r.Drops) != 1 {
		t.Fatalf("drops %+v", r.Drops)
	}
	d := r.Drops[0]
	if d.Status != "lost" || d.Seq != s.firstSeq+5 || d.LastSeen != "receiver host: request in (phy)" ||
		d.FirstMissed != "receiver host: request out (vnet)" || d.Reason != "NETFILTER_DROP" || !strings.HasPrefix(d.Segment, "D ") {
		t.Errorf("drop %+v", d)
	}
	if r.Tail == nil || r.Tail.Pings < 1 || len(r.Tail.Growth) == 0 {
		t.Errorf("tail %+v", r.Tail)
	}
}

// Separate clocks: no C and J, everything else the same.
func TestSyntheticNoSharedClock(t *testing.T) {
	s := synthRun{pings: 12, firstSeq: 1, id: 7, noPingLog: true}
	dir := t.TempDir()
	s.write(t, dir)
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.SharedClk || r.Stats[SegC].N != 0 || r.Stats[SegJ].N != 0 {
		t.Errorf("C/J without a shared clock: %v %+v", r.SharedClk, r.Stats[SegC])
	}
	if r.Stats[SegCJ].N != 12 || r.Counts.Sent != 12 || r.Counts.Complete != 12 {
		t.Errorf("CJ %+v counts %+v", r.Stats[SegCJ], r.Counts)
	}
}

// Gates: a VM RTT above ping's own RTT is refused; a negative residual is
// kept and flagged.
func TestGates(t *testing.T) {
	r := &Result{}
	r.Pings = []Ping{{ID: 1, Seq: 1}, {ID: 1, Seq: 2}}
	p := &r.Pings[0]
	p.set(ValRTT, 900_000)
	p.set(ValPingRTT, 500_000)
	q := &r.Pings[1]
	q.set(SegE, 300_000)
	q.set(ValExtR, 200_000)
	q.set(ValResidR, -5_000)
	applyGates(r)
	if p.Excl&(1<<ValRTT) == 0 {
		t.Error("VM RTT above ping RTT not refused")
	}
	if q.Excl&(1<<SegE) == 0 {
		t.Error("E larger than Ext_r not refused")
	}
	if q.Excl&(1<<ValResidR) != 0 {
		t.Error("negative residual refused (must only be flagged)")
	}
	if len(r.Excluded) != 2 {
		t.Errorf("exclusions %+v", r.Excluded)
	}
}

func TestMannWhitney(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	b := []float64{11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	if p := MannWhitney(a, b); p > 0.001 {
		t.Errorf("separated samples p=%v", p)
	}
	if p := MannWhitney(a, a); p < 0.9 {
		t.Errorf("identical samples p=%v", p)
	}
	// By hand: ranks of A = 1, 2, 3.5, 5.5, 7.5 → R1 = 19.5, U1 = 4.5,
	// mean 12.5; three ties of two: σ² = 25/12·(11 − 18/90) = 22.5;
	// z = (8 − 0.5)/√22.5 = 1.5811 → p = erfc(z/√2) = 0.11385.
	if p := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{3, 4, 5, 6, 7}); math.Abs(p-0.11385) > 0.0001 {
		t.Errorf("p=%v, want 0.11385", p)
	}
	if !math.IsNaN(MannWhitney(nil, a)) {
		t.Error("empty sample must give NaN")
	}
}

func TestCompare(t *testing.T) {
	da, db := t.TempDir(), t.TempDir()
	synthRun{pings: 40, firstSeq: 1, id: 1}.write(t, da)
	// B: 100 µs more on the request wire is the only change.
	sb := synthRun{pings: 40, firstSeq: 1, id: 2, extraC: 100_000}
	sb.write(t, db)
	// Manifests: B's receiver host runs another kernel and deep C-states.
	for i, d := range []string{da, db} {
		m := &manifest.Manifest{Environment: "lab", Version: "test", Status: "complete",
			Ping: manifest.Ping{ICMPID: i + 1, Count: 40, Interval: "1"},
			Nodes: []manifest.Node{{Role: manifest.RoleReceiverHost, Kernel: []string{"6.18.0", "5.10.0"}[i],
				Facts: map[string]string{"cstates": []string{"POLL C1", "POLL C1 C1E C6"}[i]}}}}
		if err := manifest.Write(d, m); err != nil {
			t.Fatal(err)
		}
	}
	a, err := Run(da)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(db)
	if err != nil {
		t.Fatal(err)
	}
	same := Compare(a, a)
	if same.RTT.PValue == nil || *same.RTT.PValue < 0.5 || same.RTT.Signif || same.RTTDelta != 0 {
		t.Errorf("identical runs: RTT delta %+v, mean delta %v", same.RTT, same.RTTDelta)
	}
	c := Compare(a, b)
	cj := c.Segments["CJ"]
	if math.Abs(cj.DP50-100) > 1e-9 || !cj.Signif {
		t.Errorf("CJ delta %+v, want +100 µs, significant", cj)
	}
	if a := c.Segments["A"]; a.Signif || a.DP50 != 0 {
		t.Errorf("A changed: %+v", a)
	}
	if math.Abs(c.RTTDelta-100) > 1e-6 || c.Attribution[0].Segment != "CJ" || math.Abs(c.Attribution[0].Share-1) > 1e-9 {
		t.Errorf("RTT delta %v attribution %+v", c.RTTDelta, c.Attribution)
	}
	if !c.RTT.Signif {
		t.Errorf("RTT +100 µs not significant: %+v", c.RTT)
	}
	env := map[string][2]string{}
	for _, e := range c.Env {
		env[e.What] = [2]string{e.A, e.B}
	}
	if env["receiver-host: kernel"] != [2]string{"6.18.0", "5.10.0"} || env["receiver-host: cstates"] != [2]string{"POLL C1", "POLL C1 C1E C6"} || len(env) != 2 {
		t.Errorf("environment differences %+v", c.Env)
	}
}

func writeForeign(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "foreign.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := record.NewWriter(f)
	w.Write(&record.Header{Tool: record.ToolHost, Role: "auto", Clock: "CLOCK_MONOTONIC"})
	w.Write(&record.Ping{ID: 999, Seq: 3, Role: "sender", Stages: map[string]uint64{"req_in": 1, "req_out": 2, "rep_in": 3, "rep_out": 4}})
	w.Write(&record.Trailer{ExitReason: "signal"})
}

// A corrupt manifest and a record stream cut mid-line give warnings naming
// the file; everything else is still analysed.
func TestCorruptInputKeepsData(t *testing.T) {
	dir := t.TempDir()
	synthRun{pings: 10, firstSeq: 1, id: 3}.write(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"schema":"pingpath.run/v1","nodes":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "d.jsonl")) // receiver host
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:len(b)/2]
	if err := os.WriteFile(filepath.Join(dir, "d.jsonl"), cut, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(r.Warnings, "\n")
	if !strings.Contains(all, "manifest.json") || !strings.Contains(all, "d.jsonl:") {
		t.Errorf("warnings do not name the files:\n%s", all)
	}
	if r.Counts.Sent != 10 || r.Counts.Complete < 3 || r.Counts.Complete > 5 {
		t.Errorf("counts %+v (half the receiver host stream survives)", r.Counts)
	}
	if r.Stats[SegA].N != r.Counts.Complete {
		t.Errorf("A n=%d complete=%d", r.Stats[SegA].N, r.Counts.Complete)
	}
}

// TestSignificanceNeedsEffect: a shift the U test finds (p < 0.05) is
// significant only when it also reaches the effect-size floor.
func TestSignificanceNeedsEffect(t *testing.T) {
	sample := func(base float64) []float64 {
		out := make([]float64, 100)
		for i := range out {
			out[i] = base + float64(i%10)*0.5 // a tight spread: the U test sees small shifts
		}
		return out
	}
	th := Thresholds{Alpha: Alpha, MinDeltaUS: 25, MinDeltaRel: 0.10}
	for _, c := range []struct {
		name       string
		th         Thresholds
		a, b       float64
		wantSignif bool
	}{
		{"5 µs on 50 µs: below the absolute floor", th, 50, 55, false},
		{"20 µs on 5 µs: a fivefold median, still below the absolute floor", th, 5, 25, false},
		{"30 µs on 50 µs: above both floors", th, 50, 80, true},
		{"30 µs on 50 µs with the default 50 µs floor", DefaultThresholds(), 50, 80, false},
		{"20 µs on 300 µs: below 10 % of the median", th, 300, 320, false},
		{"40 µs on 300 µs: above 10 %", th, 300, 340, true},
		{"-40 µs on 340 µs: a fall counts too", th, 340, 300, true},
		{"90 µs on 1000 µs: below 10 %", DefaultThresholds(), 1000, 1090, false},
		{"150 µs on 1000 µs", DefaultThresholds(), 1000, 1150, true},
	} {
		d := delta(sample(c.a), sample(c.b), c.th)
		if d.PValue == nil || *d.PValue >= Alpha {
			t.Fatalf("%s: p %v, want < %v (the test must be about the effect floor)", c.name, d.PValue, Alpha)
		}
		if d.Signif != c.wantSignif {
			t.Errorf("%s: significant=%v (Δp50 %.1f, floor %.1f), want %v", c.name, d.Signif, d.DP50, d.MinEffectUS, c.wantSignif)
		}
	}
	if c := Compare(&Result{}, &Result{}); c.Thresholds.MinDeltaUS != MinEffectUS || c.Thresholds.MinDeltaRel != MinEffectRel || c.Thresholds.Rule == "" {
		t.Errorf("compare's thresholds %+v", c.Thresholds)
	}
}

// TestLastPingLost: ping prints no "no answer yet" line for the last
// request; its summary's count still makes every unanswered sequence lost,
// and so does the manifest's count when ping's output was cut before it.
func TestLastPingLost(t *testing.T) {
	s := synthRun{pings: 20, firstSeq: 1, id: 77, lost: map[int]bool{4: true, 18: true, 19: true}, pingQuietLast: true}
	for _, cut := range []bool{false, true} {
		dir := t.TempDir()
		s.write(t, dir)
		if cut {
			// No summary line: the count comes from the manifest.
			trimPingSummary(t, filepath.Join(dir, "ping.log"))
			m := &manifest.Manifest{Environment: "lab", Version: "test", Status: "partial",
				Ping: manifest.Ping{File: "ping.log", Count: 20, Sent: 20, Received: 17}}
			if err := manifest.Write(dir, m); err != nil {
				t.Fatal(err)
			}
		}
		r, err := Run(dir)
		if err != nil {
			t.Fatal(err)
		}
		if r.Counts.Sent != 20 || r.Counts.Lost != 3 {
			t.Errorf("cut=%v: counts %+v, want 20 sent, 3 lost", cut, r.Counts)
		}
		status := map[uint16]string{}
		for _, d := range r.Drops {
			status[d.Seq] = d.Status
		}
		for _, seq := range []uint16{5, 19, 20} {
			if status[seq] != "lost" {
				t.Errorf("cut=%v: seq %d status %q, want lost (drops %+v)", cut, seq, status[seq], r.Drops)
			}
		}
		if len(status) != 3 {
			t.Errorf("cut=%v: drops %+v, want seqs 5, 19, 20", cut, r.Drops)
		}
	}
}

// trimPingSummary removes ping's statistics from its output, as when ping
// was killed before printing them.
func trimPingSummary(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "\n---")
	if i < 0 {
		t.Fatalf("%s has no summary", path)
	}
	if err := os.WriteFile(path, b[:i+1], 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestManifestICMPID: when a second sender VM stream holds another ping's
// id, the manifest's icmp_id picks the run's (and ping's output can then be
// joined); without it the directory holds two runs.
func TestManifestICMPID(t *testing.T) {
	s := synthRun{pings: 10, firstSeq: 1, id: 77}
	for _, withID := range []bool{false, true} {
		dir := t.TempDir()
		s.write(t, dir)
		f, err := os.Create(filepath.Join(dir, "other-vm.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		w := record.NewWriter(f)
		w.Write(&record.Header{Tool: record.ToolVM, Role: "tx", Clock: "CLOCK_MONOTONIC", Hostname: "sender-vm", BootID: "boot-sender-vm"})
		for seq := uint16(1); seq <= 10; seq++ {
			w.Write(&record.Ping{ID: 999, Seq: seq, Stages: map[string]uint64{"p1_start": 1, "p1_end": 2, "p2_start": 3, "p2_end": 4}})
		}
		w.Write(&record.Trailer{ExitReason: "signal"})
		f.Close()
		m := &manifest.Manifest{Environment: "lab", Version: "test", Status: "complete", Ping: manifest.Ping{File: "ping.log", Count: 10, Sent: 10, Received: 10}}
		if withID {
			m.Ping.ICMPID = 77
		}
		if err := manifest.Write(dir, m); err != nil {
			t.Fatal(err)
		}
		r, err := Run(dir)
		if !withID {
			// Without it, two sender VM streams of two pings are two runs
			// in one directory: refused, not merged.
			var mr *MultiRunError
			if !errors.As(err, &mr) || !strings.Contains(err.Error(), "sender VM in a.jsonl and other-vm.jsonl") {
				t.Errorf("two sender VM streams without the manifest's id: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		joined := r.Stats[ValPingRTT].N
		if len(r.IDs) != 1 || r.IDs[0] != 77 || joined != 10 || r.Counts.Complete != 10 {
			t.Errorf("with the manifest's id: ids %v, %d ping RTTs joined, counts %+v", r.IDs, joined, r.Counts)
		}
	}
}

// TestEveryPingLostHostsOnly: a run with the host tracers alone (the VMs
// untraced) whose every ping was dropped in the receiver host has no
// observation with an ICMP id, only the hosts' drop records: the run's id
// comes from them, and every ping is placed where the receiver host's
// tracer saw it freed, with the kernel's reason (on the KVM lab's OVS drop
// flow the report said "ICMP ids: [0]" and put all 8 on the sender VM).
func TestEveryPingLostHostsOnly(t *testing.T) {
	lost := map[int]bool{}
	for k := 0; k < 8; k++ {
		lost[k] = true
	}
	dir := t.TempDir()
	synthRun{pings: 8, firstSeq: 1, id: 77, lost: lost}.write(t, dir)
	for _, f := range []string{"a.jsonl", "b.jsonl", "e.jsonl", "f.jsonl", "g.jsonl", "h.jsonl"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IDs) != 1 || r.IDs[0] != 77 {
		t.Fatalf("ICMP ids %v, want [77]", r.IDs)
	}
	if r.Counts.Sent != 8 || r.Counts.Lost != 8 {
		t.Errorf("counts %+v, want 8 sent, 8 lost", r.Counts)
	}
	if len(r.Drops) != 8 {
		t.Fatalf("drops %+v, want 8", r.Drops)
	}
	for _, d := range r.Drops {
		if d.Status != "lost" || d.Reason != "NETFILTER_DROP" || !strings.HasPrefix(d.Segment, "D ") {
			t.Errorf("seq %d: %+v, want lost in D with NETFILTER_DROP", d.Seq, d)
		}
	}
}
