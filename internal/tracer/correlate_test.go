package tracer

import (
	"errors"
	"math/rand"
	"slices"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

type stamp struct{ ts, id uint64 }

// recorder is a Machine that records what it is handed.
type recorder struct {
	handled []stamp
	expired []uint64
	flushed []uint64
}

func (r *recorder) Handle(e stamp)    { r.handled = append(r.handled, e) }
func (r *recorder) Expire(now uint64) { r.expired = append(r.expired, now) }
func (r *recorder) Flush(end uint64)  { r.flushed = append(r.flushed, end) }

func stampTime(s stamp) uint64 { return s.ts }

// Events read out of order, but never more than the window behind, reach
// the machine in timestamp order (equal timestamps in arrival order), none
// counted late.
func TestCorrelatorReordersWithinWindow(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		r := rand.New(rand.NewSource(seed))
		m := &recorder{}
		c := NewCorrelator[stamp](m, stampTime, 50)
		type arrival struct {
			at uint64
			s  stamp
		}
		var arr []arrival
		for i := uint64(0); i < 500; i++ {
			ts := 1000 + i*3/2 // some equal timestamps
			arr = append(arr, arrival{ts + uint64(r.Intn(45)), stamp{ts, i}})
		}
		slices.SortStableFunc(arr, func(a, b arrival) int { return int(a.at) - int(b.at) })
		for _, a := range arr {
			c.Add(a.s)
			c.Advance(a.at)
		}
		c.Flush(0)
		if len(m.handled) != 500 || c.Late != 0 || c.Events != 500 {
			t.Fatalf("seed %d: handled %d late %d events %d", seed, len(m.handled), c.Late, c.Events)
		}
		for i := 1; i < len(m.handled); i++ {
			a, b := m.handled[i-1], m.handled[i]
			if b.ts < a.ts || b.ts == a.ts && b.id < a.id {
				t.Fatalf("seed %d: %v handed before %v", seed, a, b)
			}
		}
	}
}

// Window 0 hands every event over as it arrives (the vm tracer); an event
// behind what was handed over is counted late but still handed over.
func TestCorrelatorWindowZeroAndLate(t *testing.T) {
	m := &recorder{}
	c := NewCorrelator[stamp](m, stampTime, 0)
	c.Add(stamp{10, 1})
	c.Add(stamp{5, 2})
	if len(m.handled) != 2 || m.handled[1].id != 2 || c.Late != 1 || c.Pending() != 0 {
		t.Fatalf("handled %v late %d pending %d", m.handled, c.Late, c.Pending())
	}
	m = &recorder{}
	c = NewCorrelator[stamp](m, stampTime, 100)
	c.Add(stamp{1000, 1})
	c.Add(stamp{1200, 2}) // releases ts ≤ 1100
	c.Add(stamp{1050, 3}) // behind the release: late, handed over at once
	if len(m.handled) != 2 || m.handled[1].id != 3 || c.Late != 1 {
		t.Fatalf("handled %v late %d", m.handled, c.Late)
	}
}

// Advance hands over events up to the claim minus the window and expires
// once per new time; Flush hands over the rest and flushes at the later of
// the end and the last expiry.
func TestCorrelatorAdvanceAndFlush(t *testing.T) {
	m := &recorder{}
	c := NewCorrelator[stamp](m, stampTime, 100)
	c.Add(stamp{1000, 1})
	c.Add(stamp{1010, 2})
	c.Advance(50) // below the window: no claim
	c.Advance(1105)
	if len(m.handled) != 1 || !slices.Equal(m.expired, []uint64{1005}) {
		t.Fatalf("handled %v expired %v", m.handled, m.expired)
	}
	c.Advance(1105) // same time again: nothing new to expire
	if len(m.expired) != 1 {
		t.Fatalf("expired %v", m.expired)
	}
	c.Flush(900)
	if len(m.handled) != 2 || !slices.Equal(m.flushed, []uint64{1005}) {
		t.Fatalf("handled %v flushed %v", m.handled, m.flushed)
	}
}

// The reader's clock: while it keeps up, Tick claims now; after a stall it
// claims nothing for one tick; while it reads a backlog older than the
// window, only what it read.
func TestCorrelatorTickFollowsTheReader(t *testing.T) {
	const ms = uint64(1e6)
	m := &recorder{}
	c := NewCorrelator[stamp](m, stampTime, 50*ms)
	c.Tick(1000 * ms)
	c.Tick(1100 * ms)
	if !slices.Equal(m.expired, []uint64{950 * ms, 1050 * ms}) {
		t.Fatalf("idle ticks expired %v", m.expired)
	}
	c.Add(stamp{1150 * ms, 1})
	c.Tick(1200 * ms) // read recently: now
	c.Tick(5000 * ms) // stalled 3.8 s: the ring may hold a backlog
	if !slices.Equal(m.expired[2:], []uint64{1150 * ms}) {
		t.Fatalf("after a stall expired %v", m.expired)
	}
	c.Add(stamp{1300 * ms, 2}) // the backlog
	c.Tick(5100 * ms)
	if got := m.expired[len(m.expired)-1]; got != 1250*ms {
		t.Fatalf("reading a backlog expired up to %d, want the backlog's time", got)
	}
	c.Tick(5200 * ms) // caught up, idle
	if got := m.expired[len(m.expired)-1]; got != 5150*ms {
		t.Fatalf("caught up: expired up to %d", got)
	}
}

type sinkErr struct{ n int }

func (s *sinkErr) Ping(*record.Ping) error { s.n++; return errFull }
func (s *sinkErr) Drop(*record.Drop) error { s.n++; return nil }

var errFull = errors.New("disk full")

func TestOutputKeepsFirstError(t *testing.T) {
	s := &sinkErr{}
	o := NewOutput(s)
	o.Drop(&record.Drop{})
	if o.Err() != nil {
		t.Fatal(o.Err())
	}
	o.Ping(&record.Ping{})
	o.Ping(&record.Ping{})
	if o.Err() == nil || s.n != 3 {
		t.Fatalf("err %v writes %d", o.Err(), s.n)
	}
}

func TestFlowTable(t *testing.T) {
	ft := NewFlowTable[int, stamp]()
	ft.Open(1, &stamp{ts: 30})
	ft.Open(2, &stamp{ts: 10})
	ft.Open(3, &stamp{ts: 20})
	old := ft.Select(func(s *stamp) bool { return s.ts < 25 }, func(a, b *stamp) int { return int(a.ts) - int(b.ts) })
	if len(old) != 2 || old[0].ts != 10 || old[1].ts != 20 {
		t.Fatalf("select %v", old)
	}
	ft.Close(2, 100)
	ft.Remove(3)
	if ft.Len() != 1 || ft.Get(2) != nil || ft.Get(1) == nil {
		t.Fatalf("len %d", ft.Len())
	}
	if at, ok := ft.Decided(2); !ok || at != 100 {
		t.Fatalf("decided %d %v", at, ok)
	}
	if _, ok := ft.Decided(3); ok {
		t.Fatal("a removed flow was remembered as decided")
	}
	ft.Close(1, 200)
	ft.ForgetBefore(150)
	if _, ok := ft.Decided(2); ok {
		t.Fatal("old decision kept")
	}
	ft.Forget(1)
	if _, ok := ft.Decided(1); ok {
		t.Fatal("forgotten decision kept")
	}
}
