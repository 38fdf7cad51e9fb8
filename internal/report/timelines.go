package report

import (
	"fmt"
	"sort"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/timeline"
)

// maxTimelines bounds the pings whose timelines report.html carries (about
// 2 KB each); `pingpath export --format perfetto` has every ping.
const maxTimelines = 60

// Timeline is one ping laid out along the path (package timeline), in µs.
type Timeline struct {
	Label  string          `json:"label"` // "median RTT", "slowest", "seq 12"
	ID     uint16          `json:"id"`
	Seq    uint16          `json:"seq"`
	RTTUS  float64         `json:"rtt_us"`
	Slices []TimelineSlice `json:"slices"`
}

// TimelineSlice is a timeline.Slice in µs.
type TimelineSlice struct {
	Lane    string  `json:"lane"`
	Name    string  `json:"name"`
	StartUS float64 `json:"start_us"`
	DurUS   float64 `json:"dur_us"`
	ValueUS float64 `json:"value_us"`
	Kind    string  `json:"kind"`
	Depth   int     `json:"depth"`
}

// timelines picks the pings the report's waterfall and swim lanes offer:
// the fastest, median, p90, p99 and slowest RTT (among the pings the
// statistics are over), the next slowest, then the first pings in order.
func timelines(res *analyze.Result) []Timeline {
	clocks := timeline.ClocksOf(res)
	type cand struct {
		i   int
		rtt int64
	}
	var cands []cand
	for _, i := range res.StatSet {
		if rtt, ok := res.Pings[i].Get(analyze.ValRTT); ok && timeline.Layout(&res.Pings[i], clocks) != nil {
			cands = append(cands, cand{i, rtt})
		}
	}
	if len(cands) == 0 {
		return []Timeline{}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].rtt < cands[b].rtt })
	picked := map[int]bool{}
	var out []Timeline
	add := func(c cand, label string) {
		if picked[c.i] || len(out) == maxTimelines {
			return
		}
		picked[c.i] = true
		p := &res.Pings[c.i]
		t := Timeline{Label: label, ID: p.ID, Seq: p.Seq, RTTUS: float64(c.rtt) / 1000}
		for _, s := range timeline.Layout(p, clocks) {
			t.Slices = append(t.Slices, TimelineSlice{Lane: s.Lane, Name: s.Name, StartUS: float64(s.Start) / 1000,
				DurUS: float64(s.Dur) / 1000, ValueUS: float64(s.Value) / 1000, Kind: s.Kind, Depth: s.Depth})
		}
		out = append(out, t)
	}
	n := len(cands)
	at := func(q float64) cand { return cands[min(n-1, int(q*float64(n-1)+0.5))] }
	add(at(0.5), "median RTT")
	add(at(0.9), "p90 RTT")
	add(at(0.99), "p99 RTT")
	add(cands[n-1], "slowest")
	add(cands[0], "fastest")
	for k := n - 2; k >= max(0, n-11); k-- {
		add(cands[k], "slow")
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].i < cands[b].i })
	for _, c := range cands {
		add(c, "")
	}
	for k := range out {
		label := fmt.Sprintf("seq %d", out[k].Seq)
		if out[k].Label != "" {
			label = out[k].Label + " · " + label
		}
		out[k].Label = fmt.Sprintf("%s (%.1f µs)", label, out[k].RTTUS)
	}
	return out
}
