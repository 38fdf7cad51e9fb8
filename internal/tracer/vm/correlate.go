package vm

import (
	"cmp"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// The vm tracer's state machine: each BPF event is one stage hit of one
// ping; hits are joined per (id, seq), the first timestamp of a stage wins,
// and a ping is complete when its final stage is seen. With the ring buffer
// the vm tracer needs no reorder window: its records are read in the order
// they were reserved, and a flow is keyed, not ordered. With the perf event
// array it takes tracer.PerfReorderWindow (Tracer.UseEventBuffer).

// flowKey identifies a ping: ICMP echo id and seq (host order). The filter
// pins the address pair, so the key needs no addresses.
type flowKey struct{ id, seq uint16 }

// hit is one stage observation.
type hit struct {
	key      flowKey
	stage    string
	ts       uint64 // CLOCK_MONOTONIC ns
	cpu, pid uint32
	device   string
	comm     string
}

func hitTime(h hit) uint64 { return h.ts }

// flow is a ping being assembled.
type flow struct {
	key     flowKey
	first   uint64 // ts of the first hit
	stages  map[string]uint64
	devices map[string]string
	cpu     map[string]uint32
	pid     map[string]uint32
	comm    map[string]string
}

// machineConfig says when a flow is complete and when it is stale.
type machineConfig struct {
	// stages lists the available stages in path order.
	stages []string
	// final completes a flow (the last stage of the path): a flow is
	// written when final is seen, with whatever it has.
	final string
	// timeout expires flows whose first hit is older (ns); default 5 s.
	timeout uint64
	// dupWindow: a second hit of an already seen stage within this many ns
	// of the flow's first hit is a duplicate (first timestamp wins); a
	// later one is a new ping with a reused id/seq (seq wrapped, ping
	// restarted), so the old flow is closed as incomplete. Default 100 ms:
	// far above the µs–ms between duplicate hits, and short enough that a
	// seq wrap is told apart up to ~650 000 pings/s.
	dupWindow uint64
	role      string
}

// machine joins hits into flows (tracer.Machine[hit]).
type machine struct {
	cfg   machineConfig
	flows *tracer.FlowTable[flowKey, flow]
	out   *tracer.Output
	// Counters
	completed, incomplete, duplicates uint64
}

func newMachine(cfg machineConfig, out *tracer.Output) *machine {
	if cfg.timeout == 0 {
		cfg.timeout = 5e9
	}
	if cfg.dupWindow == 0 {
		cfg.dupWindow = 100e6
	}
	return &machine{cfg: cfg, flows: tracer.NewFlowTable[flowKey, flow](), out: out}
}

// Handle implements tracer.Machine.
func (m *machine) Handle(h hit) {
	// A completed flow's key is remembered with its first-hit time, so that
	// a late duplicate hit (a socket's clone of the packet, a second hook of
	// the same rung) does not open a new flow.
	if first, ok := m.flows.Decided(h.key); ok {
		if h.ts >= first && h.ts-first < m.cfg.dupWindow || h.ts < first {
			m.duplicates++
			return
		}
		m.flows.Forget(h.key)
	}
	f := m.flows.Get(h.key)
	if f != nil {
		if _, seen := f.stages[h.stage]; seen {
			if h.ts-f.first < m.cfg.dupWindow || h.ts < f.first {
				m.duplicates++
				return
			}
			m.flows.Remove(h.key)
			m.drop(f)
			f = nil
		}
	}
	if f == nil {
		f = &flow{key: h.key, first: h.ts, stages: map[string]uint64{}, devices: map[string]string{},
			cpu: map[string]uint32{}, pid: map[string]uint32{}, comm: map[string]string{}}
		m.flows.Open(h.key, f)
	}
	f.stages[h.stage] = h.ts
	f.first = min(f.first, h.ts)
	if h.device != "" {
		f.devices[h.stage] = h.device
	}
	f.cpu[h.stage] = h.cpu
	f.pid[h.stage] = h.pid
	if h.comm != "" {
		f.comm[h.stage] = h.comm
	}
	if h.stage == m.cfg.final {
		m.flows.Close(h.key, f.first)
		m.completed++
		m.out.Ping(f.ping())
	}
}

// Expire implements tracer.Machine: flows older than the timeout are
// incomplete; completed keys older than the duplicate window are forgotten.
func (m *machine) Expire(now uint64) {
	if now > m.cfg.dupWindow {
		m.flows.ForgetBefore(now - m.cfg.dupWindow)
	}
	for _, f := range m.flows.Select(func(f *flow) bool { return now > f.first && now-f.first > m.cfg.timeout }, byFirst) {
		m.flows.Remove(f.key)
		m.drop(f)
	}
}

// Flush implements tracer.Machine: every open flow is incomplete.
func (m *machine) Flush(uint64) {
	for _, f := range m.flows.Select(nil, byFirst) {
		m.flows.Remove(f.key)
		m.drop(f)
	}
}

func byFirst(a, b *flow) int {
	return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.key.id, b.key.id), cmp.Compare(a.key.seq, b.key.seq))
}

// drop writes an incomplete flow: the last stage seen and the first
// expected stage not seen, in path order.
func (m *machine) drop(f *flow) {
	m.incomplete++
	d := &record.Drop{ID: f.key.id, Seq: f.key.seq, Role: m.cfg.role, Stages: f.stages}
	for _, s := range m.cfg.stages {
		if _, ok := f.stages[s]; ok {
			d.LastSeen = s
		} else if d.FirstMissed == "" {
			d.FirstMissed = s
		}
	}
	if len(f.devices) > 0 {
		d.Devices = f.devices
	}
	m.out.Drop(d)
}

// ping converts a complete flow to its record.
func (f *flow) ping() *record.Ping {
	p := &record.Ping{ID: f.key.id, Seq: f.key.seq, Stages: f.stages, Durations: record.VM.Durations(f.stages)}
	if len(f.devices) > 0 {
		p.Devices = f.devices
	}
	if len(f.cpu) > 0 {
		p.CPU = f.cpu
	}
	if len(f.pid) > 0 {
		p.PID = f.pid
	}
	if len(f.comm) > 0 {
		p.Comm = f.comm
	}
	return p
}
