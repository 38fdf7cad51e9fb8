package tracer

import (
	"github.com/pingpath/pingpath/internal/record"
)

// Correlation is done in user space: the BPF side emits one small event per
// stage hit and the Correlator joins them per ping. Reasons: the BPF programs
// stay short (unrelated packets pay only the filter, matched ones one ring
// buffer reserve), there is no shared map written from several CPUs, stale
// entries expire on a real clock, and every tracer shares one implementation
// of "first timestamp wins", seq wrap and incomplete counting.

// FlowKey identifies a ping: ICMP echo id and seq (host order). The filter
// already pins the address pair, so the key needs no addresses; tracers that
// follow several pairs put a pair index in Pair.
type FlowKey struct {
	ID, Seq uint16
	Pair    uint16
}

// Hit is one stage observation.
type Hit struct {
	Key    FlowKey
	Stage  string
	TS     uint64 // CLOCK_MONOTONIC ns
	Device string
	CPU    uint32
	PID    uint32
	Comm   string
}

// Flow is a ping being assembled.
type Flow struct {
	Key     FlowKey
	First   uint64 // ts of the first hit
	Stages  map[string]uint64
	Devices map[string]string
	CPU     map[string]uint32
	PID     map[string]uint32
	Comm    map[string]string
}

// CorrelatorConfig says when a flow is complete and when it is stale.
type CorrelatorConfig struct {
	// Stages lists the available stages in path order.
	Stages []string
	// Final is the stage that completes a flow (normally the last available
	// one). A flow is emitted when Final is seen, with whatever it has.
	Final string
	// Timeout expires flows whose first hit is older than this (ns);
	// default 5 s.
	Timeout uint64
	// DupWindow: a second hit of an already seen stage within this many ns of
	// the flow's first hit is a duplicate (first timestamp wins); a later one
	// is a new ping with a reused id/seq (seq wrapped, ping restarted), so
	// the old flow is closed as incomplete. Default 100 ms: far above the
	// µs–ms between duplicate hits, and short enough that a seq wrap is
	// told apart up to ~650 000 pings/s.
	DupWindow uint64
}

// Correlator joins hits into flows. Not safe for concurrent use (the runner
// calls it from one goroutine).
type Correlator struct {
	cfg   CorrelatorConfig
	flows map[FlowKey]*Flow
	// done remembers the first-hit time of recently completed flows, so that
	// a late duplicate hit (a socket's clone of the packet, a second hook of
	// the same rung) does not open a new flow.
	done map[FlowKey]uint64
	// Complete receives finished flows; Incomplete receives expired or
	// superseded ones.
	complete   func(*Flow)
	incomplete func(*Flow)
	// Counters
	Completed, Incomplete, Duplicates uint64
}

// NewCorrelator returns a Correlator calling complete/incomplete.
func NewCorrelator(cfg CorrelatorConfig, complete, incomplete func(*Flow)) *Correlator {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5e9
	}
	if cfg.DupWindow == 0 {
		cfg.DupWindow = 100e6
	}
	return &Correlator{cfg: cfg, flows: map[FlowKey]*Flow{}, done: map[FlowKey]uint64{}, complete: complete, incomplete: incomplete}
}

// Add records a hit.
func (c *Correlator) Add(h Hit) {
	if first, ok := c.done[h.Key]; ok {
		if h.TS >= first && h.TS-first < c.cfg.DupWindow || h.TS < first {
			c.Duplicates++
			return
		}
		delete(c.done, h.Key)
	}
	f := c.flows[h.Key]
	if f != nil {
		if _, seen := f.Stages[h.Stage]; seen {
			if h.TS-f.First < c.cfg.DupWindow || h.TS < f.First {
				c.Duplicates++
				return
			}
			delete(c.flows, h.Key)
			c.Incomplete++
			c.incomplete(f)
			f = nil
		}
	}
	if f == nil {
		f = &Flow{Key: h.Key, First: h.TS, Stages: map[string]uint64{}, Devices: map[string]string{},
			CPU: map[string]uint32{}, PID: map[string]uint32{}, Comm: map[string]string{}}
		c.flows[h.Key] = f
	}
	f.Stages[h.Stage] = h.TS
	if h.TS < f.First {
		f.First = h.TS
	}
	if h.Device != "" {
		f.Devices[h.Stage] = h.Device
	}
	f.CPU[h.Stage] = h.CPU
	f.PID[h.Stage] = h.PID
	if h.Comm != "" {
		f.Comm[h.Stage] = h.Comm
	}
	if h.Stage == c.cfg.Final {
		delete(c.flows, h.Key)
		c.done[h.Key] = f.First
		c.Completed++
		c.complete(f)
	}
}

// Expire closes flows older than the timeout at monotonic time now.
func (c *Correlator) Expire(now uint64) {
	for k, first := range c.done {
		if now > first && now-first > c.cfg.DupWindow {
			delete(c.done, k)
		}
	}
	for k, f := range c.flows {
		if now > f.First && now-f.First > c.cfg.Timeout {
			delete(c.flows, k)
			c.Incomplete++
			c.incomplete(f)
		}
	}
}

// Flush closes every open flow as incomplete (at exit).
func (c *Correlator) Flush() {
	for k, f := range c.flows {
		delete(c.flows, k)
		c.Incomplete++
		c.incomplete(f)
	}
}

// Pending is the number of open flows.
func (c *Correlator) Pending() int { return len(c.flows) }

// LastSeen and FirstMissed name, for an incomplete flow, the last stage seen
// and the first expected stage not seen, in path order.
func (c *Correlator) LastSeen(f *Flow) (last, firstMissed string) {
	for _, s := range c.cfg.Stages {
		if _, ok := f.Stages[s]; ok {
			last = s
		} else if firstMissed == "" {
			firstMissed = s
		}
	}
	return last, firstMissed
}

// PingRecord converts a flow to a ping record (durations are the tool's).
func (f *Flow) PingRecord() *record.Ping {
	p := &record.Ping{ID: f.Key.ID, Seq: f.Key.Seq, Stages: f.Stages}
	if len(f.Devices) > 0 {
		p.Devices = f.Devices
	}
	if len(f.CPU) > 0 {
		p.CPU = f.CPU
	}
	if len(f.PID) > 0 {
		p.PID = f.PID
	}
	if len(f.Comm) > 0 {
		p.Comm = f.Comm
	}
	return p
}
