package vhost

import (
	"strconv"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// RXConfig configures the vhost-rx correlation.
type RXConfig struct {
	// Available lists the stages this host can observe; a chain is complete
	// once it reached the last of them, and linking skips stages that are
	// unavailable (e.g. without S2, S1 chains join the next vhost signal).
	Available map[string]bool
	// Device is the vnet name, written into the records.
	Device string
	// Timeout (ns) after its last observation at which a chain that cannot
	// progress any more is finished (default 2 s).
	Timeout uint64
	// Window is the reorder window (ns, default DefaultWindow).
	Window uint64
	// LinkWindow (ns, default 50 ms): without S2, a tun transmit joins a
	// vhost signal only if it happened at most this long before it.
	LinkWindow uint64
	// S2FromConsume makes consume_skb of a tracked skb count as S2 (the
	// tracepoint rung of last resort).
	S2FromConsume bool
	// DropReason names a kernel skb_drop_reason code (nil: numbers only).
	DropReason func(code uint32) string
}

// rxMachine links the vhost-rx chain the way the kernel runs it:
// S1→S2 by skb pointer (vhost takes the very skb tun queued), S2→S3 by task
// (vhost_add_used_and_signal_n runs in the worker that took the skb, after
// handle_rx's recvmsg loop), S3→S4 by task and eventfd ctx (eventfd_signal
// wakes irqfd_wakeup synchronously), S4→S5 by task (the irqfd fast path
// injects inline) or, for injections from a kworker (irqfd_inject), by GSI
// and order.
type rxMachine struct {
	cfg       RXConfig
	out       *tracer.Output
	counts    *counts
	last      string
	bySkb     map[Ptr]*chain // after S1, waiting for the backend
	noRecv    []*chain       // after S1 when S2 is unavailable: wait for the next signal
	taken     taskQueue      // after S2, waiting for the task's signal
	signalled taskQueue      // after S3, waiting for irqfd
	injecting taskQueue      // after S4, waiting for the injection
	cross     []*chain       // after S4, for injections in another task
	open      *tracer.FlowTable[*chain, chain]
}

// NewRXCorrelator returns the vhost-rx correlator.
func NewRXCorrelator(cfg RXConfig, out tracer.Sink) *Correlator {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2_000_000_000
	}
	if cfg.LinkWindow == 0 {
		cfg.LinkWindow = 50_000_000
	}
	m := &rxMachine{cfg: cfg, out: tracer.NewOutput(out), counts: &counts{},
		last:  record.VhostRX.LastOf(func(s string) bool { return cfg.Available[s] }),
		bySkb: map[Ptr]*chain{}, taken: taskQueue{}, signalled: taskQueue{}, injecting: taskQueue{},
		open: tracer.NewFlowTable[*chain, chain]()}
	return newCorrelator(m, cfg.Window, m.counts, m.out)
}

// Handle implements tracer.Machine.
func (m *rxMachine) Handle(ev Event) {
	switch ev.Kind {
	case KindTunXmit:
		m.onTunXmit(ev)
	case KindVhostRecv:
		m.onTaken(ev, true)
	case KindSkbConsumed:
		m.onTaken(ev, m.cfg.S2FromConsume)
	case KindSkbDropped:
		m.onDropped(ev)
	case KindVhostSignal:
		m.onSignal(ev)
	case KindEventfd:
		for _, ch := range m.signalled[ev.TID] {
			if ch.eventfd == 0 {
				ch.eventfd = ev.Key
			}
		}
		// No irqfd to wait for (no KVM here): the signal went out.
		if m.last == record.StageVhostSignal {
			for _, ch := range m.signalled.take(ev.TID) {
				m.finish(ch)
			}
		}
	case KindIrqfd:
		m.onIrqfd(ev)
	case KindKVMIRQ:
		m.onInjection(ev)
	default:
		m.counts.unmatched++
	}
}

func (m *rxMachine) onTunXmit(ev Event) {
	if ev.ICMP == nil {
		m.counts.unmatched++
		return
	}
	if old := m.bySkb[ev.Key]; old != nil {
		// The skb was freed and its memory reused without us seeing the end.
		m.finish(old)
	}
	ch := newChain(*ev.ICMP)
	ch.device = m.cfg.Device
	ch.skb = ev.Key
	ch.see(record.StageTunXmit, ev)
	m.open.Open(ch, ch)
	if m.last == record.StageTunXmit {
		m.finish(ch)
		return
	}
	if m.cfg.Available[record.StageVhostRecv] {
		m.bySkb[ev.Key] = ch
	} else {
		m.noRecv = append(m.noRecv, ch)
	}
}

// onTaken handles the backend taking a tracked skb (S2, or consume_skb).
func (m *rxMachine) onTaken(ev Event, isStage bool) {
	ch := m.bySkb[ev.Key]
	if ch == nil {
		if ev.Kind != KindSkbConsumed { // consume after S2 is the normal end
			m.counts.unmatched++
		}
		return
	}
	delete(m.bySkb, ev.Key)
	m.signalPassed(ev.TID)
	if isStage {
		ch.see(record.StageVhostRecv, ev)
	}
	ch.extra["vhost_tid"] = strconv.FormatUint(uint64(ev.TID), 10)
	if m.last == record.StageVhostRecv {
		m.finish(ch)
		return
	}
	m.taken.push(ev.TID, ch)
}

func (m *rxMachine) onDropped(ev Event) {
	ch := m.bySkb[ev.Key]
	if ch == nil {
		m.counts.unmatched++
		return
	}
	delete(m.bySkb, ev.Key)
	m.open.Remove(ch)
	d := &record.Drop{ID: ch.id.ID, Seq: ch.id.Seq, Role: ch.id.Role(), LastSeen: record.StageTunXmit,
		FirstMissed: record.StageVhostRecv, Stages: ch.stages, ReasonCode: ev.Aux, Device: m.cfg.Device, AtNS: ev.TS,
		Location: hexPtr(ev.Key2)}
	if m.cfg.DropReason != nil {
		d.Reason = m.cfg.DropReason(ev.Aux)
	}
	if m.cfg.Device != "" {
		d.Devices = map[string]string{record.StageTunXmit: m.cfg.Device}
	}
	m.counts.drops++
	m.out.Drop(d)
}

func (m *rxMachine) onSignal(ev Event) {
	m.signalPassed(ev.TID)
	chs := m.taken.take(ev.TID)
	if !m.cfg.Available[record.StageVhostRecv] {
		// No S2: every chain transmitted shortly before this signal goes
		// with it; older ones stopped (their signal was suppressed).
		var keep []*chain
		for _, ch := range m.noRecv {
			t1 := ch.stages[record.StageTunXmit]
			switch {
			case t1 <= ev.TS && ev.TS-t1 <= m.cfg.LinkWindow:
				chs = append(chs, ch)
			case t1 > ev.TS:
				keep = append(keep, ch)
			}
		}
		m.noRecv = keep
	}
	if len(chs) == 0 {
		m.counts.unmatched++
		return
	}
	for _, ch := range chs {
		ch.see(record.StageVhostSignal, ev)
		ch.extra["vq"] = hexPtr(ev.Key2)
		// The last stage: done, unless the eventfd hook can still tell
		// which eventfd was signalled (then it finishes the chain).
		if m.last == record.StageVhostSignal && !m.cfg.Available[HookEventfd] {
			m.finish(ch)
			continue
		}
		m.signalled.push(ev.TID, ch)
	}
}

// signalPassed finishes the chains task tid signalled whose wake-up can no
// longer come: vhost_signal signals the call eventfd inside the very call S3
// observes, and eventfd_signal runs irqfd_wakeup synchronously, so once the
// worker takes or signals the next packet, a chain still waiting got no
// irqfd wake-up — and, without an eventfd event, no signal at all: the guest
// asked for no interrupt (it was polling the ring; event index or
// VRING_AVAIL_F_NO_INTERRUPT), which extra.notify "suppressed" says. Left
// waiting, such chains took the next packet's wake-up and injection (seen on
// the KVM lab: E of 300 ms, longer than the receiver host's whole turn).
// Needs the irqfd stage or the eventfd hook to tell.
func (m *rxMachine) signalPassed(tid uint32) {
	irqfd, efd := m.cfg.Available[record.StageIrqfd], m.cfg.Available[HookEventfd]
	if !irqfd && !efd {
		return
	}
	var keep []*chain
	for _, ch := range m.signalled.take(tid) {
		if ch.eventfd != 0 && !irqfd {
			keep = append(keep, ch)
			continue
		}
		if ch.eventfd == 0 && efd {
			ch.extra["notify"] = "suppressed"
		}
		m.finish(ch)
	}
	for _, ch := range keep {
		m.signalled.push(tid, ch)
	}
}

func (m *rxMachine) onIrqfd(ev Event) {
	waiting := m.signalled
	if !m.cfg.Available[record.StageVhostSignal] {
		waiting = m.taken
	}
	var rest []*chain
	matched := false
	for _, ch := range waiting.take(ev.TID) {
		// A signal may wake several eventfds' waiters only through their own
		// ctx: an irqfd of another eventfd is not ours.
		if ev.Key != 0 && ch.eventfd != 0 && ev.Key != ch.eventfd {
			rest = append(rest, ch)
			continue
		}
		matched = true
		if ch.eventfd == 0 {
			ch.eventfd = ev.Key
		}
		if ev.Aux != 0 {
			ch.gsi = ev.Aux
		}
		ch.see(record.StageIrqfd, ev)
		if m.last == record.StageIrqfd {
			m.finish(ch)
			continue
		}
		m.injecting.push(ev.TID, ch)
		m.cross = append(m.cross, ch)
	}
	for _, ch := range rest {
		waiting.push(ev.TID, ch)
	}
	if !matched {
		m.counts.unmatched++
	}
}

// IRQ sources of a KindKVMIRQ event (Event.Key; enum vh_irq_src).
const (
	IRQPosted   = 1 // vmx_deliver_posted_interrupt (Aux = vector)
	IRQDeliver  = 2 // vmx_deliver_interrupt / svm_deliver_interrupt (Aux = vector)
	IRQInatomic = 3 // kvm_arch_set_irq_inatomic
	IRQAPIC     = 4 // kvm:kvm_apic_accept_irq (Aux = vector)
	IRQMSI      = 5 // kvm:kvm_msi_set_irq (Aux = vector)
	IRQSetIRQ   = 6 // kvm:kvm_set_irq (Aux = GSI)
)

func (m *rxMachine) onInjection(ev Event) {
	chs := m.injecting.take(ev.TID)
	if len(chs) > 0 {
		m.removeCross(chs)
	} else {
		// Injected from another task (irqfd_inject in a kworker): the
		// oldest waiting chains that share one irqfd wake-up, of the same
		// GSI when the event names one.
		var at uint64
		var keep []*chain
		for _, ch := range m.cross {
			t := ch.stages[record.StageIrqfd]
			sameGSI := ev.Key != IRQSetIRQ || ch.gsi == 0 || ch.gsi == ev.Aux
			if t <= ev.TS && sameGSI && (at == 0 || t == at) {
				at = t
				chs = append(chs, ch)
				continue
			}
			keep = append(keep, ch)
		}
		m.cross = keep
		for _, ch := range chs {
			m.injecting.drop(ch)
		}
	}
	if len(chs) == 0 {
		m.counts.unmatched++
		return
	}
	for _, ch := range chs {
		ch.see(record.StageKVMIRQ, ev)
		switch ev.Key {
		case IRQSetIRQ:
			ch.gsi = ev.Aux
		case IRQPosted, IRQDeliver, IRQAPIC, IRQMSI:
			ch.extra["vector"] = strconv.FormatUint(uint64(ev.Aux), 10)
		}
		if ev.Key2 != 0 {
			ch.extra["irq_target"] = hexPtr(ev.Key2)
		}
		m.finish(ch)
	}
}

func (m *rxMachine) removeCross(chs []*chain) {
	done := map[*chain]bool{}
	for _, ch := range chs {
		done[ch] = true
	}
	keep := m.cross[:0]
	for _, ch := range m.cross {
		if !done[ch] {
			keep = append(keep, ch)
		}
	}
	m.cross = keep
}

// finish writes ch: a ping with the stages it reached, or a drop when the
// backend never took it.
func (m *rxMachine) finish(ch *chain) {
	if m.open.Get(ch) == nil {
		return
	}
	m.open.Remove(ch)
	if m.cfg.Available[record.StageVhostRecv] && !ch.has(record.StageVhostRecv) && ch.extra["vhost_tid"] == "" {
		m.counts.drops++
		m.out.Drop(&record.Drop{ID: ch.id.ID, Seq: ch.id.Seq, Role: ch.id.Role(), LastSeen: record.StageTunXmit,
			FirstMissed: record.StageVhostRecv, Stages: ch.stages, Device: m.cfg.Device,
			Devices: map[string]string{record.StageTunXmit: m.cfg.Device}})
		return
	}
	if !ch.has(m.last) {
		m.counts.incomplete++
	}
	m.counts.pings++
	m.out.Ping(ch.ping(record.VhostRX, m.cfg.Available))
}

// Expire implements tracer.Machine: chains idle for the timeout are
// finished with what they reached.
func (m *rxMachine) Expire(now uint64) {
	for _, ch := range m.open.Select(func(ch *chain) bool { return now > ch.lastTS+m.cfg.Timeout }, byFirst) {
		m.forget(ch)
		m.finish(ch)
	}
}

// forget removes ch from every waiting structure.
func (m *rxMachine) forget(ch *chain) {
	if m.bySkb[ch.skb] == ch {
		delete(m.bySkb, ch.skb)
	}
	for i, c := range m.noRecv {
		if c == ch {
			m.noRecv = append(m.noRecv[:i], m.noRecv[i+1:]...)
			break
		}
	}
	m.taken.drop(ch)
	m.signalled.drop(ch)
	m.injecting.drop(ch)
	m.removeCross([]*chain{ch})
}

// Flush implements tracer.Machine: every open chain is finished.
func (m *rxMachine) Flush(uint64) {
	for _, ch := range m.open.Select(nil, byFirst) {
		m.forget(ch)
		m.finish(ch)
	}
}
