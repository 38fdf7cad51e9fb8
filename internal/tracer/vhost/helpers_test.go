package vhost

import (
	"testing"

	"github.com/cilium/ebpf"

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
	seen := map[ebpf.MapID]bool{}
	for _, pid := range rx.ProgramIDs() {
		prog, err := ebpf.NewProgramFromID(pid)
		if err != nil {
			t.Fatalf("opening program %d: %v", pid, err)
		}
		info, err := prog.Info()
		prog.Close()
		if err != nil {
			t.Fatalf("program %d info: %v", pid, err)
		}
		ids, _ := info.MapIDs()
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				t.Fatalf("opening map %d: %v", id, err)
			}
			mi, err := m.Info()
			if err == nil && mi.Name == "tracked_skbs" {
				var k, v uint64
				n := 0
				for it := m.Iterate(); it.Next(&k, &v); {
					n++
				}
				if n != 0 {
					t.Errorf("vhost-rx still tracks %d skbs after its pings (S2 should have ended their tracking)", n)
				}
				m.Close()
				return
			}
			m.Close()
		}
	}
	t.Errorf("vhost-rx: no tracked_skbs map among its programs' maps")
}
