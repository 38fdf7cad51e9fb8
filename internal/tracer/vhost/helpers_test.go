package vhost

import (
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

type pingOrDrop struct {
	ping *record.Ping
	drop *record.Drop
}

// collector is a tracer.Sink keeping records in the order written.
type collector struct{ out *[]*pingOrDrop }

func (c collector) Ping(p *record.Ping) error {
	*c.out = append(*c.out, &pingOrDrop{ping: p})
	return nil
}
func (c collector) Drop(d *record.Drop) error {
	*c.out = append(*c.out, &pingOrDrop{drop: d})
	return nil
}

func collect(out *[]*pingOrDrop) collector { return collector{out} }

// counted counts records (benchmarks).
type counted struct{ pings, drops int }

func (c *counted) Ping(*record.Ping) error { c.pings++; return nil }
func (c *counted) Drop(*record.Drop) error { c.drops++; return nil }

func replay(t *testing.T, c *Correlator, evs []Event) {
	t.Helper()
	for _, ev := range evs {
		c.Add(ev)
	}
	c.Flush(0)
}

// assertNoTrackedSkbs checks that a vhost-rx tracer's tracked_skbs map is
// empty once its pings are done: S2 ends each skb's tracking on every rung
// (nothing relies on consume_skb or on the LRU forgetting).
func assertNoTrackedSkbs(t *testing.T, rx *tracertest.Tracer) {
	t.Helper()
	m := rx.Map(t, "tracked_skbs")
	defer m.Close()
	var k, v uint64
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading tracked_skbs: %v", err)
	}
	if n != 0 {
		t.Errorf("vhost-rx still tracks %d skbs after its pings (S2 should have ended their tracking)", n)
	}
}
