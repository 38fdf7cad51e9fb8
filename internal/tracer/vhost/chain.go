package vhost

import (
	"cmp"
	"strconv"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Correlator is a vhost tool's correlation: the shared engine (reorder
// window, reader clock, expiry; tracer.Correlator) driving the tool's state
// machine (rxMachine, txMachine).
type Correlator struct {
	*tracer.Correlator[Event]
	counts *counts
	out    *tracer.Output
}

// DefaultWindow is how long (ns of event time) an event waits for earlier
// events from other CPUs.
const DefaultWindow = 5_000_000

// counts are a vhost machine's trailer counters.
type counts struct {
	kinds                               [256]uint64 // events per hook, to tell a silent probe from a failed link
	pings, drops, incomplete, unmatched uint64
}

func newCorrelator(m tracer.Machine[Event], window uint64, c *counts, out *tracer.Output) *Correlator {
	if window == 0 {
		window = DefaultWindow
	}
	return &Correlator{Correlator: tracer.NewCorrelator(m, eventTime, window), counts: c, out: out}
}

func eventTime(ev Event) uint64 { return ev.TS }

// Add queues one event.
func (c *Correlator) Add(ev Event) {
	c.counts.kinds[ev.Kind]++
	c.Correlator.Add(ev)
}

// Err is the first error writing a record.
func (c *Correlator) Err() error { return c.out.Err() }

// Counters returns the correlation counters: events, events_<kind> for
// every kind seen, pings, drops, incomplete, unmatched.
func (c *Correlator) Counters() map[string]uint64 {
	n := c.counts
	out := map[string]uint64{"events": c.Events, "pings": n.pings, "drops": n.drops, "incomplete": n.incomplete, "unmatched": n.unmatched}
	for k, v := range n.kinds {
		if v > 0 {
			out["events_"+Kind(k).String()] = v
		}
	}
	return out
}

// chain is one packet's observations so far.
type chain struct {
	id      Identity
	stages  map[string]uint64
	cpu     map[string]uint32
	pid     map[string]uint32
	comm    map[string]string
	extra   map[string]string
	device  string
	lastTS  uint64
	skb     Ptr
	eventfd Ptr
	gsi     uint32
}

func newChain(id Identity) *chain {
	return &chain{id: id, stages: map[string]uint64{}, cpu: map[string]uint32{},
		pid: map[string]uint32{}, comm: map[string]string{}, extra: map[string]string{}}
}

// see records stage at ev (the first observation wins: a stage is the
// moment the packet first reached it).
func (ch *chain) see(stage string, ev Event) {
	if _, ok := ch.stages[stage]; ok {
		return
	}
	ch.stages[stage] = ev.TS
	ch.cpu[stage] = ev.CPU
	ch.pid[stage] = ev.TID
	if ev.Comm != "" {
		ch.comm[stage] = ev.Comm
	}
	if ev.Method != "" {
		ch.extra["method_"+stage] = ev.Method
	}
	if ev.TS > ch.lastTS {
		ch.lastTS = ev.TS
	}
}

func (ch *chain) has(stage string) bool { _, ok := ch.stages[stage]; return ok }

// ping builds the record: stages seen, durations whose two ends were seen,
// and the available stages that were not seen (extra "missing").
func (ch *chain) ping(path *record.Path, available map[string]bool) *record.Ping {
	p := &record.Ping{ID: ch.id.ID, Seq: ch.id.Seq, ICMPType: ch.id.Type, Role: ch.id.Role(),
		Stages: ch.stages, Durations: path.Durations(ch.stages), CPU: ch.cpu, PID: ch.pid, Comm: ch.comm}
	missing := ""
	for _, s := range path.Stages {
		if available[s] && !ch.has(s) {
			if missing != "" {
				missing += ","
			}
			missing += s
		}
	}
	if missing != "" {
		ch.extra["missing"] = missing
	}
	if ch.device != "" {
		p.Devices = map[string]string{}
		for s := range ch.stages {
			p.Devices[s] = ch.device
		}
	}
	if ch.id.Src.IsValid() {
		ch.extra["src"], ch.extra["dst"] = ch.id.Src.String(), ch.id.Dst.String()
	}
	if ch.skb != 0 {
		ch.extra["skb"] = hexPtr(ch.skb)
	}
	if ch.eventfd != 0 {
		ch.extra["eventfd"] = hexPtr(ch.eventfd)
	}
	if ch.gsi != 0 {
		ch.extra["gsi"] = strconv.FormatUint(uint64(ch.gsi), 10)
	}
	if len(ch.extra) > 0 {
		p.Extra = ch.extra
	}
	return p
}

func hexPtr(p Ptr) string { return "0x" + strconv.FormatUint(uint64(p), 16) }

// taskQueue keeps chains waiting for the next event of a task (the vhost
// worker that took them), in arrival order.
type taskQueue map[uint32][]*chain

func (q taskQueue) push(tid uint32, ch *chain) { q[tid] = append(q[tid], ch) }

func (q taskQueue) take(tid uint32) []*chain {
	chs := q[tid]
	delete(q, tid)
	return chs
}

// drop removes ch wherever it waits.
func (q taskQueue) drop(ch *chain) {
	for tid, chs := range q {
		for i, c := range chs {
			if c == ch {
				chs = append(chs[:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(q, tid)
		} else {
			q[tid] = chs
		}
	}
}

// byFirst orders chains by their first observation, so that chains
// finished together are written in the order the packets came.
func byFirst(a, b *chain) int { return cmp.Compare(a.first(), b.first()) }

func (ch *chain) first() uint64 {
	m := ^uint64(0)
	for _, t := range ch.stages {
		m = min(m, t)
	}
	return m
}
