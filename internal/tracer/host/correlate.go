package host

import (
	"cmp"
	"strings"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Kind is where an event was taken.
type Kind uint8

// Event kinds, as the BPF program numbers them.
const (
	KindIngress Kind = 1 // a traced device received the packet
	KindEgress  Kind = 2 // the packet was handed to a traced device's driver
	KindDrop    Kind = 3 // this host's kernel freed the packet with a drop reason
	// KindUpcall: the packet missed the OVS datapath's flows and went up
	// to ovs-vswitchd (openvswitch:ovs_dp_upcall), which may never send it
	// back (its flow drops it).
	KindUpcall Kind = 4
)

// UpcallLocation is a drop record's location when a ping's packet went up
// to ovs-vswitchd and was never seen again, with no kernel drop: the
// kernel consumed it after the upcall, so it has no drop reason.
const UpcallLocation = "ovs_dp_upcall (sent up to ovs-vswitchd, not sent back)"

// Dir is the ICMP direction of an event's packet.
type Dir uint8

// Directions, as the BPF program numbers them.
const (
	DirRequest Dir = 1 // echo request, src → dst
	DirReply   Dir = 2 // echo reply, dst → src
)

// Side is the class of a traced device.
type Side uint8

// Device classes, as the ifaces map of the BPF program holds them.
const (
	SideVM  Side = 1 // the VM's tap/vnet device
	SidePhy Side = 2 // a physical device (NIC, bond slave)
)

// Encapsulation flags of an event (bit set).
const (
	EncapVLAN   = 1
	EncapVXLAN  = 2
	EncapGeneve = 4
)

// Event is one observation decoded from the BPF ring buffer.
type Event struct {
	TS       uint64 // CLOCK_MONOTONIC ns
	Kind     Kind
	Dir      Dir
	Side     Side // 0 for drops and upcalls
	ID, Seq  uint16
	Pair     uint8 // address pair index (Config.MorePairs)
	Dev      string
	CPU      uint32
	Encap    uint8
	Reason   uint32 // drops: enum skb_drop_reason code (0 for upcalls)
	Location uint64 // drops: kernel text address that freed the skb
}

// stageOf maps an ingress/egress event to the host's role for its ping and
// the stage it observes. Every (direction, hook, side) triple names exactly
// one role, so the role needs no guessing: a request entering from the VM
// side makes this host the sender, one entering from the wire the receiver.
func stageOf(e *Event) (role string, stage int, ok bool) {
	vm := e.Side == SideVM
	switch {
	case e.Side != SideVM && e.Side != SidePhy:
		return "", 0, false
	case e.Dir == DirRequest && e.Kind == KindIngress:
		return pick(vm, record.RoleSender, record.RoleReceiver), 0, true
	case e.Dir == DirRequest && e.Kind == KindEgress:
		return pick(!vm, record.RoleSender, record.RoleReceiver), 1, true
	case e.Dir == DirReply && e.Kind == KindIngress:
		return pick(!vm, record.RoleSender, record.RoleReceiver), 2, true
	case e.Dir == DirReply && e.Kind == KindEgress:
		return pick(vm, record.RoleSender, record.RoleReceiver), 3, true
	}
	return "", 0, false
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// CorrelatorConfig tunes a Correlator. Times are nanoseconds.
type CorrelatorConfig struct {
	// Timeout: a ping whose last event is this old without completing is
	// decided (drop, or incomplete when a stage in the middle is missing).
	Timeout uint64
	// Window bounds how late an event may be delivered after its timestamp
	// (ring buffer events of different CPUs are not in time order). Events
	// are held this long and then applied in timestamp order.
	Window uint64
	// Role keeps only pings of this role ("sender", "receiver"); empty or
	// "auto" keeps both.
	Role string
	// ReasonName names a drop reason code; Symbol resolves a kernel
	// address. Either may be nil.
	ReasonName func(code uint32) string
	Symbol     func(addr uint64) string
}

// Counters are the host correlation's trailer counters.
type Counters struct {
	Pings      uint64 // complete pings written
	Drops      uint64 // drop records written
	Incomplete uint64 // pings written with a stage missing in the middle, or cut off by the end of tracing
	AfterEnd   uint64 // events for a ping already decided (duplicates, replies after the timeout)
	Duplicates uint64 // a stage seen twice (first kept)
	OtherRole  uint64 // events of the role not traced (--role)
	Unmatched  uint64 // kernel drops of matching packets that belong to no open ping
}

// Correlator joins the four stage events of each ping and decides drops:
// the shared engine (reorder window, reader clock, expiry) driving the host
// state machine. It is not safe for concurrent use.
type Correlator struct {
	*tracer.Correlator[Event]
	*Counters
	m *machine
}

// NewCorrelator returns a Correlator writing its records to out.
func NewCorrelator(cfg CorrelatorConfig, out tracer.Sink) *Correlator {
	if cfg.Role == "auto" {
		cfg.Role = ""
	}
	m := &machine{cfg: cfg, flows: tracer.NewFlowTable[flowKey, flow](), out: tracer.NewOutput(out)}
	return &Correlator{Correlator: tracer.NewCorrelator[Event](m, eventTime, cfg.Window), Counters: &m.Counters, m: m}
}

func eventTime(e Event) uint64 { return e.TS }

// Open reports how many pings are waiting for more events.
func (c *Correlator) Open() int { return c.m.flows.Len() }

// Err is the first error writing a record.
func (c *Correlator) Err() error { return c.m.out.Err() }

// machine is the host tracer's state machine (tracer.Machine[Event]): the
// four stages of each (role, id, seq), kernel drops attached to the open
// pings they belong to, and the decision drop / incomplete for idle ones.
type machine struct {
	Counters
	cfg   CorrelatorConfig
	flows *tracer.FlowTable[flowKey, flow] // decided: key → its last event, so late events do not start a second flow
	out   *tracer.Output
}

type flowKey struct {
	role    string
	id, seq uint16
	pair    uint8 // pings of different VM pairs may share id and seq
}

type flow struct {
	key   flowKey
	ts    [4]uint64 // 0 = not seen
	ev    [4]Event
	last  uint64
	frees []Event // kernel drops and upcalls of this ping's packets, in time order
	encap uint8
}

// Handle implements tracer.Machine.
func (m *machine) Handle(e Event) {
	if e.Kind == KindDrop || e.Kind == KindUpcall {
		m.applyFree(&e)
		return
	}
	role, stage, ok := stageOf(&e)
	if !ok {
		return
	}
	if m.cfg.Role != "" && role != m.cfg.Role {
		m.OtherRole++
		return
	}
	k := flowKey{role, e.ID, e.Seq, e.Pair}
	if at, done := m.flows.Decided(k); done {
		// A request entering after the decided ping's last event is a new
		// ping reusing the id/seq (a restarted ping, sequence wrap); any
		// other stage is a straggler of the decided one.
		if stage != 0 || e.TS <= at {
			m.AfterEnd++
			return
		}
		m.flows.Forget(k)
	}
	f := m.flows.Get(k)
	if f == nil {
		f = &flow{key: k}
		m.flows.Open(k, f)
	}
	if f.ts[stage] != 0 {
		m.Duplicates++
		return
	}
	f.ts[stage], f.ev[stage] = e.TS, e
	f.encap |= e.Encap
	f.last = max(f.last, e.TS)
	if f.ts[0] != 0 && f.ts[1] != 0 && f.ts[2] != 0 && f.ts[3] != 0 {
		m.Pings++
		m.flows.Close(k, f.last)
		m.out.Ping(m.ping(f))
	}
}

// applyFree attaches a kernel drop or an upcall to the open pings it
// belongs to.
func (m *machine) applyFree(e *Event) {
	found := false
	for _, role := range [2]string{record.RoleSender, record.RoleReceiver} {
		if f := m.flows.Get(flowKey{role, e.ID, e.Seq, e.Pair}); f != nil {
			f.frees = append(f.frees, *e)
			found = true
		}
	}
	if !found && e.Kind == KindDrop {
		m.Unmatched++
	}
}

// Expire implements tracer.Machine: every open ping idle since
// now − Timeout is decided, and decisions old enough that a new ping with
// the same id/seq (sequence wrap, a new ping process) must start a new flow
// are forgotten.
func (m *machine) Expire(now uint64) {
	m.decide(now)
	if keep := 10 * m.cfg.Timeout; now > keep {
		m.flows.ForgetBefore(now - keep)
	}
}

// Flush implements tracer.Machine: pings idle for Timeout at end are
// decided, younger incomplete ones written as incomplete.
func (m *machine) Flush(end uint64) {
	m.decide(end)
	for _, f := range m.flows.Select(nil, byLast) {
		m.emitIncomplete(f, "tracing stopped before the timeout")
	}
}

func (m *machine) decide(now uint64) {
	for _, f := range m.flows.Select(func(f *flow) bool { return f.last+m.cfg.Timeout <= now }, byLast) {
		last, missed, prefix := f.progress()
		if !prefix {
			m.emitIncomplete(f, "stage "+record.Host.Stages[missed]+" not observed")
			continue
		}
		m.Drops++
		m.flows.Close(f.key, f.last)
		m.out.Drop(m.drop(f, last, missed))
	}
}

// progress returns the last stage seen, the first stage missing, and whether
// the seen stages are exactly the ones before it (a packet lost on the way),
// rather than a gap (an observation missed while the ping went on).
func (f *flow) progress() (last, firstMissed int, prefix bool) {
	firstMissed, last = -1, -1
	for i, ts := range f.ts {
		if ts == 0 && firstMissed < 0 {
			firstMissed = i
		}
		if ts != 0 {
			last = i
		}
	}
	return last, firstMissed, firstMissed == last+1
}

func (m *machine) emitIncomplete(f *flow, why string) {
	m.Incomplete++
	m.flows.Close(f.key, f.last)
	p := m.ping(f)
	if p.Extra == nil {
		p.Extra = map[string]string{}
	}
	p.Extra["incomplete"] = why
	m.out.Ping(p)
}

func (m *machine) ping(f *flow) *record.Ping {
	p := &record.Ping{
		ID: f.key.id, Seq: f.key.seq, Role: f.key.role, Pair: int(f.key.pair),
		Stages:  map[string]uint64{},
		Devices: map[string]string{},
		CPU:     map[string]uint32{},
	}
	for i, ts := range f.ts {
		if ts == 0 {
			continue
		}
		p.Stages[record.Host.Stages[i]] = ts
		p.Devices[record.Host.Stages[i]] = f.ev[i].Dev
		p.CPU[record.Host.Stages[i]] = f.ev[i].CPU
	}
	p.Durations = record.Host.Durations(p.Stages)
	if f.encap != 0 {
		p.Extra = map[string]string{"encap": EncapString(f.encap)}
	}
	return p
}

// EncapString names encapsulation flags, e.g. "vlan+vxlan".
func EncapString(f uint8) string {
	var s []string
	for _, x := range [...]struct {
		bit  uint8
		name string
	}{{EncapVLAN, "vlan"}, {EncapVXLAN, "vxlan"}, {EncapGeneve, "geneve"}} {
		if f&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, "+")
}

func (m *machine) drop(f *flow, last, missed int) *record.Drop {
	p := m.ping(f)
	d := &record.Drop{
		ID: f.key.id, Seq: f.key.seq, Role: f.key.role, Pair: int(f.key.pair),
		LastSeen: record.Host.Stages[last], FirstMissed: record.Host.Stages[missed],
		Stages: p.Stages, Devices: p.Devices,
	}
	// The kernel drop that explains the loss: the first free of one of the
	// ping's packets at or after the last stage seen. That is the missing
	// stage's packet dying on its way here, or the last seen packet dying
	// after it was seen (a driver dropping a request it was handed).
	// Without one, an upcall to ovs-vswitchd after the last stage places
	// the loss there (vswitchd never sent the packet back).
	var upcall *Event
	for i, fr := range f.frees {
		if fr.TS < f.ts[last] {
			continue
		}
		if fr.Kind == KindUpcall {
			if upcall == nil {
				upcall = &f.frees[i]
			}
			continue
		}
		d.ReasonCode, d.Device, d.AtNS = fr.Reason, fr.Dev, fr.TS
		if m.cfg.ReasonName != nil {
			d.Reason = m.cfg.ReasonName(fr.Reason)
		}
		if m.cfg.Symbol != nil {
			d.Location = m.cfg.Symbol(fr.Location)
		}
		return d
	}
	if upcall != nil {
		d.Location, d.Device, d.AtNS = UpcallLocation, upcall.Dev, upcall.TS
	}
	return d
}

// byLast orders flows by their last event, so output is deterministic.
func byLast(a, b *flow) int {
	return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.key.seq, b.key.seq), cmp.Compare(a.key.role, b.key.role), cmp.Compare(a.key.pair, b.key.pair))
}
