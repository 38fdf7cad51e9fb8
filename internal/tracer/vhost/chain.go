package vhost

import (
	"sort"
	"strconv"

	"github.com/pingpath/pingpath/internal/record"
)

// Emit receives the correlators' output: a *record.Ping or a *record.Drop.
type Emit func(rec any)

// machine is one tool's correlation state machine. Events reach it in
// timestamp order (the Correlator's reorder buffer sees to that).
type machine interface {
	handle(ev Event)
	expire(now uint64) // finish chains that cannot progress any more
	flush()            // finish every open chain (end of trace)
}

// Correlator joins kernel events into per-packet records. Events may arrive
// out of order (the ring buffer is filled from several CPUs, each stamping
// its event before reserving space; the origin tools' per-CPU perf buffers
// printed a chain's later stages before its first), so they wait in a
// reorder buffer for Window ns of event time before the machine sees them.
type Correlator struct {
	m        machine
	window   uint64
	pending  []Event
	maxTS    uint64 // newest event time added
	counters map[string]uint64
	// added says events arrived since the last Advance: the reader may be
	// behind, with older events still in the ring buffer.
	added bool
}

// DefaultWindow is how long (ns of event time) an event waits for earlier
// events from other CPUs.
const DefaultWindow = 5_000_000

func newCorrelator(m machine, window uint64, counters map[string]uint64) *Correlator {
	if window == 0 {
		window = DefaultWindow
	}
	return &Correlator{m: m, window: window, counters: counters}
}

// Add queues one event.
func (c *Correlator) Add(ev Event) {
	c.counters["events"]++
	c.counters["events_"+ev.Kind.String()]++ // per hook, to tell a silent probe from a failed link
	c.pending = append(c.pending, ev)
	if ev.TS > c.maxTS {
		c.maxTS = ev.TS
	}
	c.added = true
	c.release(c.maxTS)
}

// Advance tells the correlator that the clock reached now (CLOCK_MONOTONIC
// ns), so that the last events of a burst are processed and chains that
// timed out are finished even when no new event arrives. Only when nothing
// arrived since the previous call (the reader has drained the ring buffer)
// does now count; otherwise the reader may be behind (a loaded machine),
// and time is only as far as the newest event read, so that neither the
// reorder window nor a chain's timeout is cut short by the reader's lag.
func (c *Correlator) Advance(now uint64) {
	mark := c.maxTS
	if !c.added && now > mark {
		mark = now
	}
	c.added = false
	c.release(mark)
	if mark > c.window {
		c.m.expire(mark - c.window)
	}
}

// Close processes every queued event and finishes all open chains.
func (c *Correlator) Close() {
	c.release(^uint64(0))
	c.m.flush()
}

// Counters returns the correlation counters (events, pings, drops,
// incomplete, unmatched, ...). The map is live; copy it to keep it.
func (c *Correlator) Counters() map[string]uint64 { return c.counters }

func (c *Correlator) release(upTo uint64) {
	if len(c.pending) == 0 {
		return
	}
	limit := uint64(0)
	if upTo > c.window {
		limit = upTo - c.window
	}
	if upTo == ^uint64(0) {
		limit = upTo
	}
	sort.SliceStable(c.pending, func(i, j int) bool { return c.pending[i].TS < c.pending[j].TS })
	n := 0
	for n < len(c.pending) && c.pending[n].TS <= limit {
		n++
	}
	for _, ev := range c.pending[:n] {
		c.m.handle(ev)
	}
	c.pending = append(c.pending[:0], c.pending[n:]...)
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

// sortChains orders chains by their first observation, so that chains
// finished together are written in the order the packets came.
func sortChains(chs []*chain) {
	first := func(ch *chain) uint64 {
		m := ^uint64(0)
		for _, t := range ch.stages {
			m = min(m, t)
		}
		return m
	}
	sort.SliceStable(chs, func(i, j int) bool { return first(chs[i]) < first(chs[j]) })
}
