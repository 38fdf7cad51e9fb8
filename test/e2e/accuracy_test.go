package e2e

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/wire"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

const (
	// oneWay is the delay injected on the wire, each direction.
	oneWay = 500 * time.Microsecond
	// accuracyPings and accuracyInterval make one measured series: enough
	// pings for stable medians, one second of pinging.
	accuracyPings    = 100
	accuracyInterval = 10 * time.Millisecond
	// minSamples is the fewest values a segment needs on both sides to be
	// judged (the lab has no vhost-net, so E, L, B_1 and I_1 have none).
	minSamples = 20
	// stayPutUs is how far the median of a segment the delay does not
	// cross may move between the two runs: 5 % of the injected RTT change,
	// the same budget the recovered delay gets. Between the two runs of a
	// pair on the loaded 2-CPU development machine these medians moved by
	// up to 21 µs (docs/accuracy.md), so this is over twice the noise
	// floor and a twentieth of what a misattributed delay would show.
	stayPutUs = 50.0
)

// tolerance is the accuracy target of the brief: 5 % of the injected value
// plus 20 µs.
func tolerance(injectedUs float64) float64 { return 0.05*injectedUs + 20 }

// checkDelayedMinimum judges a wire segment's least value with the delay
// injected (slow, µs) against the delay (inj) and the least value without
// it (base): the relay holds every frame at least the delay, so the
// segment can be no less than inj, and no more than inj plus the
// undelayed wire's own time plus the brief's tolerance (5 % + 20 µs).
// Not slow − base = inj ± tolerance: on a loaded machine the relay's
// wake-up differs with and without a delay to sleep through, and the
// undelayed series' least value can be the one inflated (a CI-like run at
// load 10: C 76.5 µs without delay, 528.9 with 500 µs, +452.4 "missing"
// 48 µs of a delay that every frame provably carried).
func checkDelayedMinimum(t *testing.T, name string, base, slow, inj float64) {
	t.Helper()
	const clockSlack = 1 // µs: timestamps rounded to µs in the report
	if slow < inj-clockSlack {
		t.Errorf("%s with delay: minimum %.1f µs, less than the %.0f µs every frame was held", name, slow, inj)
	}
	if hi := inj + base + tolerance(inj); slow > hi {
		t.Errorf("%s with delay: minimum %.1f µs, more than the delay %.0f + the undelayed minimum %.1f + %.0f µs", name, slow, inj, base, tolerance(inj))
	}
}

// TestAccuracyWireDelay runs the workflow twice through the lab's relay wire,
// once with no delay and once with oneWay each way, and checks that the
// report puts the whole difference on the physical network (CJ, and C and J
// separately on the lab's shared clock) and nowhere else, that the values
// agree with the raw timestamps of the host tracers' records, and that
// `pingpath compare` names CJ as the change.
//
// Both runs use the relay with its user clock: every frame then pays the
// same relay wake-up with or without delay, so the runs differ only by the
// delay (docs/lab.md, --wire-clock). They run at the same time in two labs,
// so that wake-up is taken under the same machine load in both.
func TestAccuracyWireDelay(t *testing.T) {
	requireLab(t)
	runs := measure(t, accuracyPings, accuracyInterval,
		spec{"relay-0", lab.Options{Wire: lab.WireRelay, WireClock: wire.ClockUser}},
		spec{"relay-500us", lab.Options{Wire: lab.WireRelay, WireClock: wire.ClockUser, WireDelay: oneWay}})
	base, slow := runs[0], runs[1]
	for _, s := range []*series{base, slow} {
		checkComplete(t, s)
	}
	injectedRTT := 2 * float64(oneWay.Microseconds())

	t.Run("CJ", func(t *testing.T) {
		b, s := base.Report.Segments["CJ"], slow.Report.Segments["CJ"]
		got, gotMin := s.P50-b.P50, s.Min-b.Min
		t.Logf("CJ median %.1f -> %.1f µs: +%.1f µs, minimum %.1f -> %.1f µs: +%.1f µs, for +%.0f µs injected", b.P50, s.P50, got, b.Min, s.Min, gotMin, injectedRTT)
		// The relay holds each frame at least the delay and wakes up late
		// by its scheduling, by a different amount with and without a
		// delay to sleep through (median rises of +1071.6 and +1765.6 µs
		// for 1000 here, and +879.3 in a CI run whose relay without delay
		// was 725 µs late at the median): the least delayed ping shows the
		// injected delay (within the brief's 5 % + 20 µs); the median, only
		// that the typical ping carried the delay at all.
		// (checkDelayedMinimum says why the minimum is bounded, not
		// differenced.)
		checkDelayedMinimum(t, "CJ", b.Min, s.Min, injectedRTT)
		if got < injectedRTT/2 {
			t.Errorf("CJ median rose by %.1f µs, less than half the %.0f µs injected", got, injectedRTT)
		}
	})

	t.Run("other segments stay put", func(t *testing.T) {
		judged := 0
		for _, seg := range pathSegments {
			if seg == "CJ" {
				continue
			}
			a, b := base.Report.Segments[seg], slow.Report.Segments[seg]
			if a.N < minSamples || b.N < minSamples {
				t.Logf("%s: not judged (n = %d, %d)", seg, a.N, b.N)
				continue
			}
			judged++
			d := b.P50 - a.P50
			t.Logf("%-3s median %7.1f -> %7.1f µs (%+.1f)", seg, a.P50, b.P50, d)
			if math.Abs(d) > stayPutUs {
				t.Errorf("%s median moved by %+.1f µs (%.1f -> %.1f), more than %.0f µs, although the delay is on the wire", seg, d, a.P50, b.P50, stayPutUs)
			}
		}
		// The vm and host tracers see A B D F G H I K M on any kernel.
		if judged < 9 {
			t.Errorf("only %d segments had %d values in both runs, want the 9 of the vm and host tracers", judged, minSamples)
		}
	})

	t.Run("C and J against raw timestamps", func(t *testing.T) {
		cBase, jBase := checkCJFromRecords(t, base)
		cSlow, jSlow := checkCJFromRecords(t, slow)
		inj := float64(oneWay.Microseconds())
		for _, x := range []struct {
			name       string
			base, slow float64
		}{{"C", cBase, cSlow}, {"J", jBase, jSlow}} {
			t.Logf("%s from records: minimum %.1f µs without delay, %.1f µs with %.0f µs (+%.1f)", x.name, x.base, x.slow, inj, x.slow-x.base)
			if x.base <= 0 || x.base > inj {
				t.Errorf("%s without delay: minimum %.1f µs, want a small positive base", x.name, x.base)
			}
			checkDelayedMinimum(t, x.name, x.base, x.slow, inj)
		}
	})

	t.Run("compare names CJ", func(t *testing.T) {
		out := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		t.Logf("pingpath compare:\n%s", pingpath(t, ctx, "compare", base.Dir, slow.Dir, "-o", out))
		cmp := readJSON[comparison](t, filepath.Join(out, "compare.json"))
		if cmp.Schema != "pingpath.compare/v1" {
			t.Errorf("compare.json schema %q", cmp.Schema)
		}
		cj := cmp.Segments["CJ"]
		// The amount is judged on the minimum above; compare works on
		// medians, which carry the relay's lateness too.
		if !cj.Significant || cj.DP50 < injectedRTT/2 {
			t.Errorf("compare CJ: significant=%v Δp50 %.1f µs, want a significant rise of at least half the %.0f µs injected", cj.Significant, cj.DP50, injectedRTT)
		}
		// compare's "significant" needs p < 0.05 and a median shift above
		// its effect-size floor: the flag alone must single out CJ.
		for _, seg := range pathSegments {
			d := cmp.Segments[seg]
			switch {
			case seg == "CJ":
			case d.Significant:
				t.Errorf("compare names %s as a significant change (Δp50 %+.1f µs, floor %.1f µs, p=%.2g); only CJ changed", seg, d.DP50, d.MinEffect, d.p())
			case d.p() < 0.05:
				t.Logf("compare: %s has p=%.2g but moved only %+.1f µs (floor %.1f µs): not significant", seg, d.p(), d.DP50, d.MinEffect)
			}
		}
	})
}

// TestAccuracyWireLoss drops frames on the wire (seeded, so the same frames
// every run) and checks that report.json accounts for every ping ping lost,
// and places each on the wire: requests between the sender host's physical
// TX and the receiver host's physical RX (C), replies the other way (J),
// as many of each as the relay says it dropped per direction.
func TestAccuracyWireLoss(t *testing.T) {
	requireLab(t)
	s := measure(t, accuracyPings, accuracyInterval,
		spec{"loss", lab.Options{Wire: lab.WireRelay, WireLoss: 10, WireSeed: 7}})[0]
	lost := lostSeqs(t, filepath.Join(s.Dir, "ping.log"))
	if len(lost) == 0 {
		t.Fatal("ping lost nothing with 10% wire loss")
	}
	if s.Report.Pings.Lost != len(lost) {
		t.Errorf("report: %d pings lost, ping.log: %d (%v)", s.Report.Pings.Lost, len(lost), lost)
	}
	placed, perSegment := placeLost(t, s, lost)
	for seq, d := range placed {
		if seg, _, _ := strings.Cut(d.Segment, " "); seg != "C" && seg != "J" {
			t.Errorf("seq %d: lost on the wire but placed in %q (last seen %q, first missed %q)", seq, d.Segment, d.LastSeen, d.FirstMissed)
		}
		// Also the last pings, which get no "no answer yet" line from
		// ping: its summary's count makes them lost.
		if d.Status != "lost" {
			t.Errorf("seq %d: status %q (%s -> %s), want lost", seq, d.Status, d.LastSeen, d.FirstMissed)
		}
	}
	for _, d := range s.Report.Drops {
		if (d.Status == "lost" || d.Status == "incomplete") && !slices.Contains(lost, d.Seq) {
			t.Errorf("seq %d: ping got the reply but report.json lists it as %s in %s", d.Seq, d.Status, d.Segment)
		}
	}
	req, rep := relayLosses(t, s.Lab)
	t.Logf("lost %d of %d pings: report places %d in C, %d in J; the relay dropped %d requests and %d replies",
		len(lost), s.Report.Pings.Sent, perSegment["C"], perSegment["J"], req, rep)
	if perSegment["C"] != req || perSegment["J"] != rep {
		t.Errorf("report places %d drops in C and %d in J; the relay dropped %d requests and %d replies", perSegment["C"], perSegment["J"], req, rep)
	}
}

// placeLost returns the drop report.json gives each ping of lost (one
// without is an error) and how many it places in each segment.
func placeLost(t *testing.T, s *series, lost []int) (map[int]reportDrop, map[string]int) {
	t.Helper()
	bySeq := map[int]reportDrop{}
	for _, d := range s.Report.Drops {
		if d.Status == "lost" || d.Status == "incomplete" {
			bySeq[d.Seq] = d
		}
	}
	placed, perSegment := map[int]reportDrop{}, map[string]int{}
	for _, seq := range lost {
		d, ok := bySeq[seq]
		if !ok {
			t.Errorf("seq %d: lost (ping.log) but not in report.json drops", seq)
			continue
		}
		placed[seq] = d
		seg, _, _ := strings.Cut(d.Segment, " ")
		perSegment[seg]++
	}
	return placed, perSegment
}

// checkComplete fails a run in which too few pings were seen by every
// tracer to judge the medians.
func checkComplete(t *testing.T, s *series) {
	t.Helper()
	p := s.Report.Pings
	if p.Sent != accuracyPings || p.Complete < accuracyPings*9/10 {
		t.Fatalf("%s: %d sent, %d complete; want %d sent and 90%% complete", s.Dir, p.Sent, p.Complete, accuracyPings)
	}
	if !s.Report.SharedClock {
		t.Errorf("%s: report does not see the lab's shared clock (shared_clock false)", s.Dir)
	}
}

// checkCJFromRecords recomputes C and J of every ping from the raw stage
// timestamps of the two host tracers (one CLOCK_MONOTONIC in the lab):
// C = receiver req_in − sender req_out, J = sender rep_in − receiver
// rep_out. It checks them ping by ping against report.json's per_ping and
// C + J against CJ, checks the report's medians against theirs, and returns
// the minimums (µs) over the pings the report counts (complete, not refused):
// the relay holds a frame at least its delay and wakes up late by its own
// scheduling, so the least delayed frame is the one that shows the delay.
func checkCJFromRecords(t *testing.T, s *series) (cMin, jMin float64) {
	t.Helper()
	type key struct{ id, seq uint16 }
	sender := readStream(t, filepath.Join(s.Dir, "sender-host.host.jsonl"))
	receiver := readStream(t, filepath.Join(s.Dir, "receiver-host.host.jsonl"))
	if sender.Header.BootID == "" || sender.Header.BootID != receiver.Header.BootID {
		t.Fatalf("%s: host streams' boot ids %q and %q: not one clock", s.Dir, sender.Header.BootID, receiver.Header.BootID)
	}
	out := map[key][2]uint64{} // sender host: req_out, rep_in
	for _, p := range sender.Pings {
		if p.Role == "sender" && p.Stages["req_out"] != 0 && p.Stages["rep_in"] != 0 {
			out[key{p.ID, p.Seq}] = [2]uint64{p.Stages["req_out"], p.Stages["rep_in"]}
		}
	}
	raw := map[key][2]float64{}
	for _, p := range receiver.Pings {
		o, ok := out[key{p.ID, p.Seq}]
		if p.Role != "receiver" || !ok || p.Stages["req_in"] == 0 || p.Stages["rep_out"] == 0 {
			continue
		}
		raw[key{p.ID, p.Seq}] = [2]float64{
			float64(int64(p.Stages["req_in"]-o[0])) / 1e3,
			float64(int64(o[1]-p.Stages["rep_out"])) / 1e3,
		}
	}
	var cs, js []float64
	for _, pp := range s.Report.PerPing {
		r, ok := raw[key{uint16(pp.ID), uint16(pp.Seq)}]
		if !pp.Complete {
			continue
		}
		if !ok {
			t.Errorf("%s: seq %d complete in the report but not seen by both host tracers", s.Dir, pp.Seq)
			continue
		}
		for i, name := range []string{"C", "J"} {
			if got, has := pp.Values[name]; !has || math.Abs(got-r[i]) > 0.01 {
				t.Errorf("%s: seq %d: report %s = %v µs (present %v), raw timestamps give %.3f µs", s.Dir, pp.Seq, name, got, has, r[i])
			}
		}
		if cj := pp.Values["CJ"]; math.Abs(cj-(r[0]+r[1])) > 1 {
			t.Errorf("%s: seq %d: CJ %.3f µs but C + J from the records is %.3f µs", s.Dir, pp.Seq, cj, r[0]+r[1])
		}
		if !slices.Contains(pp.Excluded, "C") {
			cs = append(cs, r[0])
		}
		if !slices.Contains(pp.Excluded, "J") {
			js = append(js, r[1])
		}
	}
	if len(cs) < minSamples || len(js) < minSamples {
		t.Fatalf("%s: only %d C and %d J values from the records", s.Dir, len(cs), len(js))
	}
	n := map[string]int{"C": len(cs), "J": len(js)}
	for name, want := range map[string]float64{"C": tracertest.Median(cs), "J": tracertest.Median(js)} {
		if got := s.Report.Segments[name]; got.N != n[name] || math.Abs(got.P50-want) > 0.01 {
			t.Errorf("%s: report's %s: n %d, median %.3f µs; raw timestamps: n %d, median %.3f µs", s.Dir, name, got.N, got.P50, n[name], want)
		}
	}
	return slices.Min(cs), slices.Min(js)
}

// pingReply matches a reply line of `ping -D -n -O`.
var pingReply = regexp.MustCompile(`icmp_seq=(\d+) .*time=`)

// pingSummary matches ping's "N packets transmitted" line.
var pingSummary = regexp.MustCompile(`(\d+) packets transmitted`)

// lostSeqs returns the sequence numbers ping sent and never got a reply for.
func lostSeqs(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := pingSummary.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no ping summary", path)
	}
	sent, _ := strconv.Atoi(string(m[1]))
	answered := map[int]bool{}
	for _, m := range pingReply.FindAllSubmatch(b, -1) {
		seq, _ := strconv.Atoi(string(m[1]))
		answered[seq] = true
	}
	var lost []int
	for seq := 1; seq <= sent; seq++ {
		if !answered[seq] {
			lost = append(lost, seq)
		}
	}
	return lost
}

// relayLosses reads how many frames the lab's relay dropped on purpose in
// each direction (its log, written when the lab goes down): requests travel
// from the sender host's side to the receiver host's.
func relayLosses(t *testing.T, l *lab.Lab) (requests, replies int) {
	t.Helper()
	return relayLossesIn(t, l.LogFile("wire"))
}

// relayLossesIn reads the losses per direction from a relay's log.
func relayLossesIn(t *testing.T, log string) (requests, replies int) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	count := func(dir string) int {
		re := regexp.MustCompile(`wire ` + regexp.QuoteMeta(dir) + `: .*\blost=(\d+)`)
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no counters for %s:\n%s", log, dir, b)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	return count("to-sender->to-receiver"), count("to-receiver->to-sender")
}
