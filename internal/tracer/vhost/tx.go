package vhost

import (
	"strconv"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// TXConfig configures the vhost-tx correlation.
type TXConfig struct {
	Available map[string]bool
	Device    string
	// Stale (ns): earlier stages older than this before netif_receive do
	// not belong to the packet (default 1 s: far above a real host's
	// microseconds, but an emulated guest can take a scheduler tick or
	// more between the kick and the worker).
	Stale  uint64
	Window uint64
}

// txRun is one vhost worker's current handle_tx pass: the kick that
// started it, handle_tx, and the latest tun_sendmsg (or write(2)).
type txRun struct {
	kick, handleTX, sendmsg *Event
	packets                 int // netif_receive events of this tun_sendmsg so far
}

// txMachine links the vhost-tx chain: the kick (ioeventfd_write in a vcpu
// thread) to the vhost work it wakes (vhost_poll_wakeup in the same task),
// that work to the worker running handle_tx_kick(work), and the worker's
// tun_sendmsg to the netif_receive_skb it causes in the same task (tun
// delivers synchronously when the device has no NAPI and RPS is off). The
// ICMP identity comes from netif_receive, the last stage, and is carried
// back to the earlier ones by this linking.
type txMachine struct {
	cfg      TXConfig
	out      *tracer.Output
	counts   *counts
	kicks    map[uint32]Event // vcpu tid → latest kick
	workKick map[Ptr]Event    // vhost work → earliest kick not yet handled
	runs     map[uint32]*txRun
}

// NewTXCorrelator returns the vhost-tx correlator.
func NewTXCorrelator(cfg TXConfig, out tracer.Sink) *Correlator {
	if cfg.Stale == 0 {
		cfg.Stale = 1_000_000_000
	}
	m := &txMachine{cfg: cfg, out: tracer.NewOutput(out), counts: &counts{}, kicks: map[uint32]Event{},
		workKick: map[Ptr]Event{}, runs: map[uint32]*txRun{}}
	return newCorrelator(m, cfg.Window, m.counts, m.out)
}

// Handle implements tracer.Machine.
func (m *txMachine) Handle(ev Event) {
	switch ev.Kind {
	case KindKick:
		m.kicks[ev.TID] = ev
	case KindPollWakeup:
		if !m.cfg.Available[record.StageKick] {
			return
		}
		// The kick is the KVM ioeventfd write of this task when there was
		// one just before; otherwise (a user space driver writing the kick
		// eventfd, or no ioeventfd probe) the wake-up is where the kick is
		// seen.
		k, ok := m.kicks[ev.TID]
		if ok && ev.TS >= k.TS && ev.TS-k.TS <= 1_000_000 {
			delete(m.kicks, ev.TID)
		} else {
			k = ev
		}
		// Kicks while the work is already queued merge into one handle_tx
		// pass: keep the first, which started the wait.
		if _, queued := m.workKick[ev.Key]; !queued {
			m.workKick[ev.Key] = k
		}
	case KindHandleTX:
		run := &txRun{handleTX: &ev}
		if k, ok := m.workKick[ev.Key]; ok {
			delete(m.workKick, ev.Key)
			run.kick = &k
		}
		m.runs[ev.TID] = run
	case KindTunSendmsg:
		run := m.runs[ev.TID]
		if run == nil || ev.TS-run.last() > m.cfg.Stale {
			run = &txRun{}
			m.runs[ev.TID] = run
		}
		run.sendmsg = &ev
		run.packets = 0
	case KindNetifReceive:
		m.onNetifReceive(ev)
	default:
		m.counts.unmatched++
	}
}

// last is the time of the run's latest stage.
func (r *txRun) last() uint64 {
	var t uint64
	for _, e := range []*Event{r.kick, r.handleTX, r.sendmsg} {
		if e != nil && e.TS > t {
			t = e.TS
		}
	}
	return t
}

func (m *txMachine) onNetifReceive(ev Event) {
	if ev.ICMP == nil {
		m.counts.unmatched++
		return
	}
	ch := newChain(*ev.ICMP)
	ch.device = m.cfg.Device
	ch.skb = ev.Key
	if run := m.runs[ev.TID]; run != nil {
		for _, st := range []struct {
			name string
			ev   *Event
		}{{record.StageKick, run.kick}, {record.StageHandleTX, run.handleTX}, {record.StageTunSendmsg, run.sendmsg}} {
			if st.ev != nil && st.ev.TS <= ev.TS && ev.TS-st.ev.TS <= m.cfg.Stale {
				ch.see(st.name, *st.ev)
			}
		}
		if run.kick != nil && ch.has(record.StageKick) {
			ch.extra["kick_tid"] = strconv.FormatUint(uint64(run.kick.TID), 10)
			ch.extra["kick_at"] = run.kick.Kind.String() // kick (ioeventfd_write) or poll_wakeup
		}
		if run.sendmsg != nil && ch.has(record.StageTunSendmsg) {
			// Several packets of one tun_sendmsg (a vhost XDP batch) share
			// its timestamp; say which one this was.
			ch.extra["sendmsg_packet"] = strconv.Itoa(run.packets)
			run.packets++
		}
	}
	ch.see(record.StageNetifReceive, ev)
	ch.extra["vhost_tid"] = strconv.FormatUint(uint64(ev.TID), 10)
	p := ch.ping(record.VhostTX, m.cfg.Available)
	if p.Extra["missing"] != "" {
		m.counts.incomplete++
	}
	m.counts.pings++
	m.out.Ping(p)
}

// Expire implements tracer.Machine: kicks, queued work and runs too old to
// serve a later packet are forgotten.
func (m *txMachine) Expire(now uint64) {
	for tid, k := range m.kicks {
		if now > k.TS+m.cfg.Stale {
			delete(m.kicks, tid)
		}
	}
	for w, k := range m.workKick {
		if now > k.TS+m.cfg.Stale {
			delete(m.workKick, w)
		}
	}
	// Events come in time order: a run none of whose stages is within
	// Stale of now can serve no later packet.
	for tid, r := range m.runs {
		if now > r.last()+m.cfg.Stale {
			delete(m.runs, tid)
		}
	}
}

// Flush implements tracer.Machine: a tx chain is written when its packet
// reaches netif_receive, so nothing is left open.
func (m *txMachine) Flush(uint64) {}
