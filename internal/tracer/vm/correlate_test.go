package vm

import (
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

type collected struct {
	pings []*record.Ping
	drops []*record.Drop
}

func (c *collected) Ping(p *record.Ping) error { c.pings = append(c.pings, p); return nil }
func (c *collected) Drop(d *record.Drop) error { c.drops = append(c.drops, d); return nil }

func newTestCorrelator() (*tracer.Correlator[hit], *machine, *collected) {
	out := &collected{}
	m := newMachine(machineConfig{stages: []string{"a", "b", "c"}, final: "c", timeout: 5e9, dupWindow: 1e9}, tracer.NewOutput(out))
	return tracer.NewCorrelator[hit](m, hitTime, 0), m, out
}

func TestCorrelatorFirstWinsAndLateDuplicates(t *testing.T) {
	c, m, out := newTestCorrelator()
	k := flowKey{id: 7, seq: 1}
	c.Add(hit{key: k, stage: "a", ts: 100})
	c.Add(hit{key: k, stage: "a", ts: 150}) // second hook of the same rung
	c.Add(hit{key: k, stage: "b", ts: 200})
	c.Add(hit{key: k, stage: "c", ts: 300})
	c.Add(hit{key: k, stage: "c", ts: 900}) // a socket's clone freed later
	if len(out.pings) != 1 || len(out.drops) != 0 {
		t.Fatalf("done %d lost %d", len(out.pings), len(out.drops))
	}
	if got := out.pings[0].Stages; got["a"] != 100 || got["b"] != 200 || got["c"] != 300 {
		t.Errorf("stages = %v", got)
	}
	if m.duplicates != 2 || m.completed != 1 {
		t.Errorf("duplicates %d completed %d", m.duplicates, m.completed)
	}
}

func TestCorrelatorSeqWrapAndExpiry(t *testing.T) {
	c, m, out := newTestCorrelator()
	k := flowKey{id: 7, seq: 65535}
	c.Add(hit{key: k, stage: "a", ts: 1e9})
	// Same id/seq again 3 s later (seq wrapped): the old flow is closed as
	// incomplete and a new one starts.
	c.Add(hit{key: k, stage: "a", ts: 4e9})
	c.Add(hit{key: k, stage: "c", ts: 4e9 + 500})
	if len(out.drops) != 1 || out.drops[0].Stages["a"] != 1e9 {
		t.Fatalf("lost = %+v", out.drops)
	}
	if len(out.pings) != 1 || out.pings[0].Stages["a"] != 4e9 {
		t.Fatalf("done = %+v", out.pings)
	}
	if d := out.drops[0]; d.LastSeen != "a" || d.FirstMissed != "b" {
		t.Errorf("last %q missed %q", d.LastSeen, d.FirstMissed)
	}
	// A completed key is forgotten after the duplicate window, so the next
	// wrap works.
	c.Advance(6e9)
	c.Add(hit{key: k, stage: "a", ts: 7e9})
	if m.flows.Len() != 1 {
		t.Fatalf("pending = %d", m.flows.Len())
	}
	c.Advance(7e9 + 4e9)
	if m.flows.Len() != 1 {
		t.Fatal("expired before the timeout")
	}
	c.Advance(7e9 + 6e9)
	if m.flows.Len() != 0 || m.incomplete != 2 {
		t.Fatalf("pending %d incomplete %d", m.flows.Len(), m.incomplete)
	}
	c.Add(hit{key: flowKey{id: 1, seq: 1}, stage: "b", ts: 1})
	c.Flush(0)
	if m.incomplete != 3 || m.flows.Len() != 0 {
		t.Errorf("after flush: incomplete %d pending %d", m.incomplete, m.flows.Len())
	}
}

// counted counts records (benchmarks).
type counted struct{ pings, drops int }

func (c *counted) Ping(*record.Ping) error { c.pings++; return nil }
func (c *counted) Drop(*record.Drop) error { c.drops++; return nil }
