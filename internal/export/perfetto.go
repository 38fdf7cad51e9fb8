// Package export writes an analysed run in formats other tools read: a
// Chrome/Perfetto trace (JSON Trace Event Format, opens in ui.perfetto.dev
// and chrome://tracing) with every ping laid out on one track per vantage
// point, and a CSV of every ping's segments.
package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/buildinfo"
	"github.com/pingpath/pingpath/internal/timeline"
)

// Event is one Trace Event Format record (the fields pingpath writes).
type Event struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"` // µs since the trace's origin
	Dur  *float64       `json:"dur,omitempty"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	ID   int            `json:"id,omitempty"` // flow id
	Bp   string         `json:"bp,omitempty"` // "e": a flow end binds to the enclosing slice
	S    string         `json:"s,omitempty"`  // instant event scope
	Args map[string]any `json:"args,omitempty"`
}

// Trace is the whole file.
type Trace struct {
	TraceEvents     []Event        `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit"`
	OtherData       map[string]any `json:"otherData"`
}

// nodes are the trace's processes, in path order.
var nodes = []string{"sender-vm", "sender-host", "receiver-host", "receiver-vm"}

// gapNS separates pings without a wall time on the trace's time axis.
const gapNS = 1_000_000

// tracks assigns each ping's slices of one lane to a thread: pings that
// overlap in time on a lane (an interval shorter than the RTT) go to
// numbered extra threads, so that every thread's slices nest.
type tracks struct {
	ends map[string][]int64 // lane → end time of each of its threads
}

// tid is the thread for a ping occupying [start, end) on lane.
func (t *tracks) tid(lane string, start, end int64) (tid, sub int) {
	ends := t.ends[lane]
	for sub = 0; sub < len(ends); sub++ {
		if ends[sub] <= start {
			break
		}
	}
	if sub == len(ends) {
		ends = append(ends, 0)
	}
	ends[sub] = end
	t.ends[lane] = ends
	return laneIndex(lane)*100 + sub + 1, sub
}

func laneIndex(lane string) int {
	for i, l := range timeline.Lanes {
		if l == lane {
			return i
		}
	}
	return len(timeline.Lanes)
}

func nodePid(node string) int {
	for i, n := range nodes {
		if n == node {
			return i + 1
		}
	}
	return len(nodes) + 1
}

func us(ns int64) float64 { return float64(ns) / 1000 }

// BuildTrace lays every ping of res out on the tracks of its vantage points.
// Time 0 is the first ping's wall time (in OtherData), so that the µs
// timestamps keep ns precision as JSON numbers.
func BuildTrace(res *analyze.Result) *Trace {
	clocks := timeline.ClocksOf(res)
	tr := &Trace{DisplayTimeUnit: "ns", TraceEvents: []Event{}}
	var origin int64
	for i := range res.Pings {
		if t := res.Pings[i].Time; t != 0 && (origin == 0 || t < origin) {
			origin = t
		}
	}
	hostnames := map[string]string{}
	if m := res.Manifest; m != nil {
		for _, n := range m.Nodes {
			hostnames[n.Role] = n.Hostname
		}
	}
	tk := &tracks{ends: map[string][]int64{}}
	named := map[int]bool{}
	flow := 0
	next := int64(0) // where a ping without wall time goes
	laidOut := 0
	for i := range res.Pings {
		p := &res.Pings[i]
		base := next
		if p.Time != 0 {
			base = p.Time - origin
		}
		slices := timeline.Layout(p, clocks)
		if slices == nil {
			continue
		}
		laidOut++
		label := fmt.Sprintf("seq %d", p.Seq)
		// One thread per lane for this ping: the span its slices cover.
		span := map[string][2]int64{}
		for _, s := range slices {
			sp, ok := span[s.Lane]
			if !ok {
				sp = [2]int64{s.Start, s.Start + s.Dur}
			}
			span[s.Lane] = [2]int64{min(sp[0], s.Start), max(sp[1], s.Start+s.Dur)}
		}
		tids := map[string]int{}
		for _, lane := range timeline.Lanes {
			sp, ok := span[lane]
			if !ok {
				continue
			}
			tid, sub := tk.tid(lane, base+sp[0], base+sp[1])
			tids[lane] = tid
			pid := nodePid(timeline.Node(lane))
			if !named[tid] {
				named[tid] = true
				name := lane
				if sub > 0 {
					name += " (overlapping pings " + strconv.Itoa(sub+1) + ")"
				}
				tr.TraceEvents = append(tr.TraceEvents,
					Event{Name: "thread_name", Cat: "__metadata", Ph: "M", Pid: pid, Tid: tid, Args: map[string]any{"name": name}},
					Event{Name: "thread_sort_index", Cat: "__metadata", Ph: "M", Pid: pid, Tid: tid, Args: map[string]any{"sort_index": tid}})
			}
		}
		// Outer slices first at equal start, so that the importer nests.
		sort.SliceStable(slices, func(a, b int) bool {
			if slices[a].Start != slices[b].Start {
				return slices[a].Start < slices[b].Start
			}
			return slices[a].Dur > slices[b].Dur
		})
		for _, s := range slices {
			d := us(s.Dur)
			args := map[string]any{"ping": label, "icmp_id": p.ID, "icmp_seq": p.Seq, "value_us": us(s.Value), "kind": s.Kind}
			tr.TraceEvents = append(tr.TraceEvents, Event{Name: s.Name, Cat: s.Kind, Ph: "X", Ts: us(base + s.Start), Dur: &d,
				Pid: nodePid(timeline.Node(s.Lane)), Tid: tids[s.Lane], Args: args})
		}
		// Flows follow the ping from machine to machine.
		var prev *timeline.Slice
		for k := range slices {
			s := &slices[k]
			if s.Kind == timeline.Outer || s.Kind == timeline.Unmeasured || s.Kind == timeline.Estimated && s.Name != "C" && s.Name != "J" {
				continue
			}
			if prev != nil && timeline.Node(prev.Lane) != timeline.Node(s.Lane) {
				flow++
				tr.TraceEvents = append(tr.TraceEvents,
					Event{Name: label, Cat: "path", Ph: "s", ID: flow, Ts: us(base + prev.Start), Pid: nodePid(timeline.Node(prev.Lane)), Tid: tids[prev.Lane]},
					Event{Name: label, Cat: "path", Ph: "f", Bp: "e", ID: flow, Ts: us(base + s.Start), Pid: nodePid(timeline.Node(s.Lane)), Tid: tids[s.Lane]})
			}
			prev = s
		}
		rtt, _ := p.Get(analyze.ValRTT)
		next = base + rtt + gapNS
	}
	when := map[[2]uint16]int64{}
	for i := range res.Pings {
		when[[2]uint16{res.Pings[i].ID, res.Pings[i].Seq}] = res.Pings[i].Time
	}
	for _, d := range res.Drops {
		if d.Status != "lost" {
			continue
		}
		at := when[[2]uint16{d.ID, d.Seq}]
		if at == 0 {
			continue
		}
		tr.TraceEvents = append(tr.TraceEvents, Event{Name: fmt.Sprintf("lost seq %d", d.Seq), Cat: "drop", Ph: "i", S: "p",
			Ts: us(at - origin), Pid: nodePid("sender-vm"), Tid: 1, Args: map[string]any{"icmp_id": d.ID, "icmp_seq": d.Seq,
				"where": d.Segment, "last_seen": d.LastSeen, "first_missed": d.FirstMissed, "reason": d.Reason, "location": d.Location}})
	}
	for i, n := range nodes {
		name := n
		if h := hostnames[n]; h != "" {
			name += " (" + h + ")"
		}
		tr.TraceEvents = append(tr.TraceEvents,
			Event{Name: "process_name", Cat: "__metadata", Ph: "M", Pid: i + 1, Args: map[string]any{"name": name}},
			Event{Name: "process_sort_index", Cat: "__metadata", Ph: "M", Pid: i + 1, Args: map[string]any{"sort_index": i + 1}})
	}
	tr.OtherData = map[string]any{
		"producer":            "pingpath " + buildinfo.String(),
		"run":                 res.Dir,
		"time_origin_unix_ns": strconv.FormatInt(origin, 10), // a string: exact beyond 2^53
		"pings_laid_out":      laidOut,
		"clocks_shared":       map[string]bool{"sender_vm_host": clocks.SenderVMHost, "hosts": clocks.Hosts, "receiver_host_vm": clocks.ReceiverHostVM},
		"note": "ts is µs since time_origin_unix_ns (the first ping). Each ping starts at its sender VM wall time; " +
			"within a ping, slices sit at their measured place where two machines share a clock, otherwise the " +
			"unmeasured residuals (and C/J) are split evenly between request and reply (cat \"estimated\").",
	}
	return tr
}

// WritePerfetto writes res as a Chrome/Perfetto JSON trace.
func WritePerfetto(w io.Writer, res *analyze.Result) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(BuildTrace(res)); err != nil {
		return fmt.Errorf("writing the trace: %w", err)
	}
	return bw.Flush()
}
