package tracer

import (
	"time"

	"github.com/pingpath/pingpath/internal/record"
)

// Correlation is done in user space: the BPF side emits one small event per
// stage hit and the Correlator joins them per packet. Reasons: the BPF
// programs stay short (unrelated packets pay only the filter, matched ones
// one ring buffer reserve), there is no shared map written from several
// CPUs, and stale state expires on a real clock.
//
// Every tracer runs the same engine, Correlator: the reorder window, the
// reader's clock (what "now" may be claimed while the reader lags or
// stalls), expiry and the end-of-trace flush. A tool supplies only its
// state machine (Machine), which sees its events in timestamp order and
// writes records to an Output; FlowTable is the per-packet state most
// machines keep.

// Machine is one tool's correlation state machine.
type Machine[E any] interface {
	// Handle takes the next event, in timestamp order (arrival order
	// when the window is 0).
	Handle(ev E)
	// Expire says every event up to now has been handled: finish what can
	// no longer progress.
	Expire(now uint64)
	// Flush finishes everything still open: tracing stopped at end.
	Flush(end uint64)
}

// Correlator feeds a Machine its events in timestamp order. Events may be
// read out of order: each CPU stamps its event before reserving ring buffer
// space, so a batch from one CPU can be read before an earlier event of
// another (the origin tools' per-CPU perf buffers printed a ping's later
// stages before its first). They wait in a reorder buffer until the reader
// is Window past them. Not safe for concurrent use: the runner calls it
// from one goroutine.
type Correlator[E any] struct {
	m       Machine[E]
	time    func(E) uint64
	window  uint64
	pending eventHeap[E]
	arrived uint64 // arrival counter: equal timestamps keep arrival order
	maxTS   uint64 // newest event time added
	// released: every event up to here was handed to the machine; expired:
	// the machine was told every event up to here is in.
	released, expired uint64
	clock             readerClock

	// Counters for the trailer.
	Events uint64 // events added
	Late   uint64 // events that arrived behind what was already released
}

// NewCorrelator returns the engine for m. time reads an event's
// CLOCK_MONOTONIC timestamp; window (ns) is how far out of timestamp order
// events may be read: 0 hands every event over as it arrives.
func NewCorrelator[E any](m Machine[E], time func(E) uint64, window uint64) *Correlator[E] {
	return &Correlator[E]{m: m, time: time, window: window}
}

// Add queues one event. Events more than the window older than the newest
// one are handed over at once: none older can still arrive.
func (c *Correlator[E]) Add(ev E) {
	c.Events++
	ts := c.time(ev)
	if c.released != 0 && ts <= c.released {
		c.Late++
	}
	c.clock.saw(ts)
	c.maxTS = max(c.maxTS, ts)
	if c.window == 0 && len(c.pending) == 0 {
		c.released = max(c.released, ts)
		c.m.Handle(ev)
		return
	}
	c.arrived++
	c.pending.push(queued[E]{ev: ev, ts: ts, arrival: c.arrived})
	if c.maxTS >= c.window {
		c.release(c.maxTS - c.window)
	}
}

// Advance claims that every event with a timestamp up to upTo has been
// added: events up to upTo − window are handed over and the machine
// expires what that time ends.
func (c *Correlator[E]) Advance(upTo uint64) {
	if upTo < c.window {
		return
	}
	wm := upTo - c.window
	c.release(wm)
	if wm > c.expired {
		c.expired = wm
		c.m.Expire(wm)
	}
}

// Tick is the runner's clock (about every 100 ms, CLOCK_MONOTONIC ns): it
// advances as far as the reader has provably read (readerClock).
func (c *Correlator[E]) Tick(now uint64) {
	if upTo, ok := c.clock.progress(now, c.window); ok {
		c.Advance(upTo)
	}
}

// Flush ends the stream (end: when tracing stopped): every queued event is
// handed over and the machine finishes what is open.
func (c *Correlator[E]) Flush(end uint64) {
	c.release(^uint64(0))
	c.m.Flush(max(end, c.expired))
}

// Pending is the number of events waiting in the reorder buffer.
func (c *Correlator[E]) Pending() int { return len(c.pending) }

func (c *Correlator[E]) release(upTo uint64) {
	for len(c.pending) > 0 && c.pending[0].ts <= upTo {
		q := c.pending.pop()
		c.m.Handle(q.ev)
	}
	if upTo != ^uint64(0) {
		c.released = max(c.released, upTo)
	}
}

// TickGap is the longest expected gap between two Ticks (the runner ticks
// about every 100 ms); a longer one means the process was stalled.
const TickGap = 300 * time.Millisecond

// readerClock estimates up to which time every event has been read, so that
// a stalled reader (a descheduled process, a backlog in the ring buffer)
// never makes packets look idle while their events wait unread.
type readerClock struct {
	prevTick uint64 // time of the previous Tick
	maxTS    uint64 // newest event timestamp read
	read     int    // events read since the previous Tick
}

func (r *readerClock) saw(ts uint64) {
	r.read++
	r.maxTS = max(r.maxTS, ts)
}

// progress returns the time up to which events are assumed read at Tick
// time now, and false when no claim can be made yet:
//   - after a stall the ring may hold a backlog: wait one Tick, reading;
//   - while the events read are older than the reorder window, the reader
//     is working through a backlog: trust only their timestamps;
//   - otherwise the reader keeps up: now.
func (r *readerClock) progress(now, window uint64) (uint64, bool) {
	stalled := r.prevTick != 0 && now-r.prevTick > uint64(TickGap)
	read := r.read
	r.prevTick, r.read = now, 0
	switch {
	case stalled:
		return 0, false
	case read > 0 && r.maxTS+window < now:
		return r.maxTS, true
	}
	return now, true
}

type queued[E any] struct {
	ev      E
	ts      uint64
	arrival uint64
}

// eventHeap is a binary min-heap by (timestamp, arrival). Hand-written
// rather than container/heap, whose interface boxes every pushed event.
type eventHeap[E any] []queued[E]

func (h eventHeap[E]) less(i, j int) bool {
	if h[i].ts != h[j].ts {
		return h[i].ts < h[j].ts
	}
	return h[i].arrival < h[j].arrival
}

func (h *eventHeap[E]) push(q queued[E]) {
	*h = append(*h, q)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap[E]) pop() queued[E] {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	var zero queued[E]
	s[n] = zero // drop references held by the event
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s.less(l, m) {
			m = l
		}
		if r < n && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// Output is where a state machine writes its records: the tool's Sink,
// keeping the first write error so that the machine need not check each
// write (the tool returns Err from its next Event or Tick).
type Output struct {
	sink Sink
	err  error
}

// NewOutput returns an Output writing to sink.
func NewOutput(sink Sink) *Output { return &Output{sink: sink} }

// Ping writes a ping record.
func (o *Output) Ping(p *record.Ping) {
	if err := o.sink.Ping(p); err != nil && o.err == nil {
		o.err = err
	}
}

// Drop writes a drop record.
func (o *Output) Drop(d *record.Drop) {
	if err := o.sink.Drop(d); err != nil && o.err == nil {
		o.err = err
	}
}

// Err is the first write error.
func (o *Output) Err() error { return o.err }
