package tracer

import (
	"testing"
)

type flows struct{ done, lost []*Flow }

func newTestCorrelator(f *flows) *Correlator {
	return NewCorrelator(CorrelatorConfig{Stages: []string{"a", "b", "c"}, Final: "c", Timeout: 5e9, DupWindow: 1e9},
		func(fl *Flow) { f.done = append(f.done, fl) }, func(fl *Flow) { f.lost = append(f.lost, fl) })
}

func TestCorrelatorFirstWinsAndLateDuplicates(t *testing.T) {
	var f flows
	c := newTestCorrelator(&f)
	k := FlowKey{ID: 7, Seq: 1}
	c.Add(Hit{Key: k, Stage: "a", TS: 100})
	c.Add(Hit{Key: k, Stage: "a", TS: 150}) // second hook of the same rung
	c.Add(Hit{Key: k, Stage: "b", TS: 200})
	c.Add(Hit{Key: k, Stage: "c", TS: 300})
	c.Add(Hit{Key: k, Stage: "c", TS: 900}) // a socket's clone freed later
	if len(f.done) != 1 || len(f.lost) != 0 {
		t.Fatalf("done %d lost %d", len(f.done), len(f.lost))
	}
	if got := f.done[0].Stages; got["a"] != 100 || got["b"] != 200 || got["c"] != 300 {
		t.Errorf("stages = %v", got)
	}
	if c.Duplicates != 2 || c.Completed != 1 {
		t.Errorf("duplicates %d completed %d", c.Duplicates, c.Completed)
	}
}

func TestCorrelatorSeqWrapAndExpiry(t *testing.T) {
	var f flows
	c := newTestCorrelator(&f)
	k := FlowKey{ID: 7, Seq: 65535}
	c.Add(Hit{Key: k, Stage: "a", TS: 1e9})
	// Same id/seq again 3 s later (seq wrapped): the old flow is closed as
	// incomplete and a new one starts.
	c.Add(Hit{Key: k, Stage: "a", TS: 4e9})
	c.Add(Hit{Key: k, Stage: "c", TS: 4e9 + 500})
	if len(f.lost) != 1 || f.lost[0].Stages["a"] != 1e9 {
		t.Fatalf("lost = %+v", f.lost)
	}
	if len(f.done) != 1 || f.done[0].Stages["a"] != 4e9 {
		t.Fatalf("done = %+v", f.done)
	}
	last, missed := c.LastSeen(f.lost[0])
	if last != "a" || missed != "b" {
		t.Errorf("last %q missed %q", last, missed)
	}
	// A completed key is forgotten after DupWindow, so the next wrap works.
	c.Expire(6e9)
	c.Add(Hit{Key: k, Stage: "a", TS: 7e9})
	if c.Pending() != 1 {
		t.Fatalf("pending = %d", c.Pending())
	}
	c.Expire(7e9 + 4e9)
	if c.Pending() != 1 {
		t.Fatal("expired before the timeout")
	}
	c.Expire(7e9 + 6e9)
	if c.Pending() != 0 || c.Incomplete != 2 {
		t.Fatalf("pending %d incomplete %d", c.Pending(), c.Incomplete)
	}
	c.Add(Hit{Key: FlowKey{ID: 1, Seq: 1}, Stage: "b", TS: 1})
	c.Flush()
	if c.Incomplete != 3 || c.Pending() != 0 {
		t.Errorf("after flush: incomplete %d pending %d", c.Incomplete, c.Pending())
	}
}

func TestDecodeEvent(t *testing.T) {
	raw := make([]byte, EventSize)
	raw[0] = 1
	raw[20], raw[22], raw[24], raw[25], raw[26] = 0x39, 0x05, 3, KindReply, 0
	copy(raw[32:], "ping\x00")
	copy(raw[48:], "eth0")
	ev, err := DecodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TS != 1 || ev.ID != 0x39 || ev.Seq != 5 || ev.Hook != 3 || ev.Kind != KindReply || ev.Comm != "ping" || ev.Ifname != "eth0" {
		t.Errorf("event = %+v", ev)
	}
	if _, err := DecodeEvent(raw[:10]); err == nil {
		t.Error("short event accepted")
	}
}

// BenchmarkCorrelatorAdd: one complete four-stage ping per iteration, as the
// vm tracer feeds it (device on every stage, comm on the sender's).
func BenchmarkCorrelatorAdd(b *testing.B) {
	stages := []string{"a", "b", "c", "d"}
	c := NewCorrelator(CorrelatorConfig{Stages: stages, Final: "d"}, func(*Flow) {}, func(*Flow) {})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		key := FlowKey{ID: 1, Seq: uint16(i)}
		ts := uint64(i) * 1e9 // far apart: no duplicates, done entries expire
		for j, s := range stages {
			h := Hit{Key: key, Stage: s, TS: ts + uint64(j), Device: "eth0", CPU: 1, PID: 7}
			if j == 0 {
				h.Comm = "ping"
			}
			c.Add(h)
		}
		if i%1024 == 0 {
			c.Expire(ts)
		}
	}
}
