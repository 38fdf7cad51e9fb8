package host

import (
	"container/heap"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/record"
)

// Kind is where an event was taken.
type Kind uint8

// Event kinds, as the BPF program numbers them.
const (
	KindIngress Kind = 1 // a traced device received the packet
	KindEgress  Kind = 2 // the packet was handed to a traced device's driver
	KindDrop    Kind = 3 // this host's kernel freed the packet with a drop reason
)

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
	Side     Side // 0 for drops
	ID, Seq  uint16
	Dev      string
	CPU      uint32
	Encap    uint8
	Reason   uint32 // drops: enum skb_drop_reason code
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
	// Emit receives each result, in decision order: *record.Ping or *record.Drop.
	Emit func(rec any)
}

// Correlator joins the four stage events of each ping and decides drops. It
// is not safe for concurrent use.
type Correlator struct {
	cfg       CorrelatorConfig
	pending   eventHeap
	flows     map[flowKey]*flow
	decided   map[flowKey]uint64 // key → when decided, so late events do not start a second flow
	watermark uint64
	seq       uint64 // arrival counter: keeps equal timestamps in arrival order

	// Counters for the trailer.
	Events     uint64 // events added
	Pings      uint64 // complete pings emitted
	Drops      uint64 // drop records emitted
	Incomplete uint64 // pings emitted with a stage missing in the middle, or cut off by the end of tracing
	Late       uint64 // events that arrived behind the watermark
	AfterEnd   uint64 // events for a ping already decided (duplicates, replies after the timeout)
	Duplicates uint64 // a stage seen twice (first kept)
	OtherRole  uint64 // events of the role not traced (--role)
	Unmatched  uint64 // kernel drops of matching packets that belong to no open ping
}

type flowKey struct {
	role    string
	id, seq uint16
}

type flow struct {
	key   flowKey
	ts    [4]uint64 // 0 = not seen
	ev    [4]Event
	last  uint64
	frees []Event // kernel drops of this ping's packets, in time order
	encap uint8
}

// NewCorrelator returns a Correlator emitting through cfg.Emit.
func NewCorrelator(cfg CorrelatorConfig) *Correlator {
	if cfg.Role == "auto" {
		cfg.Role = ""
	}
	return &Correlator{cfg: cfg, flows: map[flowKey]*flow{}, decided: map[flowKey]uint64{}}
}

// Add queues an event. It is applied once the watermark passes its
// timestamp (Advance, Flush).
func (c *Correlator) Add(e Event) {
	c.Events++
	if e.TS <= c.watermark {
		c.Late++
	}
	c.seq++
	heap.Push(&c.pending, queued{e, c.seq})
}

// Open reports how many pings are waiting for more events.
func (c *Correlator) Open() int { return len(c.flows) }

// Advance tells the correlator that every event with a timestamp up to
// now − Window has been added. It applies those events in time order and
// decides pings idle for Timeout.
func (c *Correlator) Advance(now uint64) {
	if now < c.cfg.Window {
		return
	}
	c.advanceTo(now - c.cfg.Window)
}

// Flush ends the stream at end (the monotonic time tracing stopped): every
// queued event is applied, pings idle for Timeout are decided, and younger
// incomplete pings are emitted as incomplete.
func (c *Correlator) Flush(end uint64) {
	for c.pending.Len() > 0 {
		q := heap.Pop(&c.pending).(queued)
		c.apply(&q.Event)
	}
	if end > c.watermark {
		c.watermark = end
	}
	c.decide(c.watermark)
	for _, f := range c.sortedFlows() {
		c.emitIncomplete(f, "tracing stopped before the timeout")
	}
}

func (c *Correlator) advanceTo(wm uint64) {
	if wm <= c.watermark {
		return
	}
	c.watermark = wm
	for c.pending.Len() > 0 && c.pending[0].TS <= wm {
		q := heap.Pop(&c.pending).(queued)
		c.apply(&q.Event)
	}
	c.decide(wm)
	c.forget(wm)
}

func (c *Correlator) apply(e *Event) {
	if e.Kind == KindDrop {
		c.applyFree(e)
		return
	}
	role, stage, ok := stageOf(e)
	if !ok {
		return
	}
	if c.cfg.Role != "" && role != c.cfg.Role {
		c.OtherRole++
		return
	}
	k := flowKey{role, e.ID, e.Seq}
	if at, done := c.decided[k]; done {
		// A request entering after the decided ping's last event is a new
		// ping reusing the id/seq (a restarted ping, sequence wrap); any
		// other stage is a straggler of the decided one.
		if stage != 0 || e.TS <= at {
			c.AfterEnd++
			return
		}
		delete(c.decided, k)
	}
	f := c.flows[k]
	if f == nil {
		f = &flow{key: k}
		c.flows[k] = f
	}
	if f.ts[stage] != 0 {
		c.Duplicates++
		return
	}
	f.ts[stage], f.ev[stage] = e.TS, *e
	f.encap |= e.Encap
	if e.TS > f.last {
		f.last = e.TS
	}
	if f.ts[0] != 0 && f.ts[1] != 0 && f.ts[2] != 0 && f.ts[3] != 0 {
		c.Pings++
		c.finish(f)
		c.emit(c.ping(f))
	}
}

// applyFree attaches a kernel drop to the open pings it belongs to.
func (c *Correlator) applyFree(e *Event) {
	found := false
	for _, role := range [2]string{record.RoleSender, record.RoleReceiver} {
		if f := c.flows[flowKey{role, e.ID, e.Seq}]; f != nil {
			f.frees = append(f.frees, *e)
			found = true
		}
	}
	if !found {
		c.Unmatched++
	}
}

// decide emits every open ping idle since wm − Timeout.
func (c *Correlator) decide(wm uint64) {
	var idle []*flow
	for _, f := range c.flows {
		if f.last+c.cfg.Timeout <= wm {
			idle = append(idle, f)
		}
	}
	sortFlows(idle)
	for _, f := range idle {
		last, missed, prefix := f.progress()
		if !prefix {
			c.emitIncomplete(f, "stage "+record.Host.Stages[missed]+" not observed")
			continue
		}
		c.Drops++
		c.finish(f)
		c.emit(c.drop(f, last, missed))
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

func (c *Correlator) emitIncomplete(f *flow, why string) {
	c.Incomplete++
	c.finish(f)
	p := c.ping(f)
	if p.Extra == nil {
		p.Extra = map[string]string{}
	}
	p.Extra["incomplete"] = why
	c.emit(p)
}

func (c *Correlator) finish(f *flow) {
	delete(c.flows, f.key)
	c.decided[f.key] = f.last
}

// forget drops decisions old enough that a new ping with the same id/seq
// (sequence wrap, a new ping process) must start a new flow.
func (c *Correlator) forget(wm uint64) {
	keep := 10 * c.cfg.Timeout
	for k, at := range c.decided {
		if at+keep < wm {
			delete(c.decided, k)
		}
	}
}

func (c *Correlator) emit(rec any) {
	if c.cfg.Emit != nil {
		c.cfg.Emit(rec)
	}
}

func (c *Correlator) ping(f *flow) *record.Ping {
	p := &record.Ping{
		ID: f.key.id, Seq: f.key.seq, Role: f.key.role,
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

func (c *Correlator) drop(f *flow, last, missed int) *record.Drop {
	p := c.ping(f)
	d := &record.Drop{
		ID: f.key.id, Seq: f.key.seq, Role: f.key.role,
		LastSeen: record.Host.Stages[last], FirstMissed: record.Host.Stages[missed],
		Stages: p.Stages, Devices: p.Devices,
	}
	// The kernel drop that explains the loss: the first free of one of the
	// ping's packets at or after the last stage seen. That is the missing
	// stage's packet dying on its way here, or the last seen packet dying
	// after it was seen (a driver dropping a request it was handed).
	for _, fr := range f.frees {
		if fr.TS < f.ts[last] {
			continue
		}
		d.ReasonCode, d.Device, d.AtNS = fr.Reason, fr.Dev, fr.TS
		if c.cfg.ReasonName != nil {
			d.Reason = c.cfg.ReasonName(fr.Reason)
		}
		if c.cfg.Symbol != nil {
			d.Location = c.cfg.Symbol(fr.Location)
		}
		break
	}
	return d
}

func (c *Correlator) sortedFlows() []*flow {
	fs := make([]*flow, 0, len(c.flows))
	for _, f := range c.flows {
		fs = append(fs, f)
	}
	sortFlows(fs)
	return fs
}

// sortFlows orders flows by their last event, so output is deterministic.
func sortFlows(fs []*flow) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].last != fs[j].last {
			return fs[i].last < fs[j].last
		}
		if fs[i].key.seq != fs[j].key.seq {
			return fs[i].key.seq < fs[j].key.seq
		}
		return fs[i].key.role < fs[j].key.role
	})
}

type queued struct {
	Event
	arrival uint64
}

// eventHeap orders queued events by timestamp, then arrival.
type eventHeap []queued

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].TS != h[j].TS {
		return h[i].TS < h[j].TS
	}
	return h[i].arrival < h[j].arrival
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
