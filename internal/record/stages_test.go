package record

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Every table is consistent: spans join two stages of the path in path
// order, total spans the end stages, and segments are given per known role.
func TestPathTables(t *testing.T) {
	for _, p := range Paths {
		if PathOf(p.Tool) != p {
			t.Errorf("PathOf(%q) is not its table", p.Tool)
		}
		total, ok := p.Span(DurTotal)
		if !ok || total.From != p.First() || total.To != p.Last() {
			t.Errorf("%s: total %+v does not span %s → %s", p.Tool, total, p.First(), p.Last())
		}
		for _, s := range p.Spans {
			from, to := p.Index(s.From), p.Index(s.To)
			if from < 0 || to <= from {
				t.Errorf("%s: span %s joins %s (%d) → %s (%d), not two stages in path order", p.Tool, s.Name, s.From, from, s.To, to)
			}
			for role := range s.Segment {
				if !slices.Contains(p.Roles, role) {
					t.Errorf("%s: span %s names a segment for unknown role %q", p.Tool, s.Name, role)
				}
			}
		}
		for i, s := range p.Stages {
			if p.Index(s) != i || p.IndexBytes([]byte(s)) != i {
				t.Errorf("%s: Index(%s) = %d, IndexBytes %d, want %d", p.Tool, s, p.Index(s), p.IndexBytes([]byte(s)), i)
			}
		}
		if p.Index("nope") != -1 || p.IndexBytes([]byte("nope")) != -1 {
			t.Errorf("%s: an unknown stage has an index", p.Tool)
		}
	}
	if PathOf("nope") != nil {
		t.Error("PathOf of an unknown tool is not nil")
	}
}

func TestPathDurationsAndLastOf(t *testing.T) {
	got := VM.Durations(map[string]uint64{StageP1Start: 10, StageP1End: 25, StageP2End: 100})
	want := map[string]int64{DurPath1: 15, DurTotal: 90}
	if len(got) != len(want) || got[DurPath1] != 15 || got[DurTotal] != 90 {
		t.Errorf("durations %v, want %v", got, want)
	}
	if VM.Durations(map[string]uint64{StageP1End: 1}) != nil {
		t.Error("durations without a pair of stages are not nil")
	}
	avail := map[string]bool{StageTunXmit: true, StageVhostRecv: true, StageVhostSignal: true}
	if got := VhostRX.LastOf(func(s string) bool { return avail[s] }); got != StageVhostSignal {
		t.Errorf("LastOf = %q, want %s", got, StageVhostSignal)
	}
	if got := VhostRX.LastOf(func(string) bool { return false }); got != "" {
		t.Errorf("LastOf with nothing available = %q", got)
	}
}

// docs/record-format.md describes the same tables; every stage and duration
// name must appear there.
func TestPathTablesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/record-format.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Paths {
		for _, s := range p.Stages {
			if !strings.Contains(string(doc), "`"+s+"`") {
				t.Errorf("docs/record-format.md does not name %s stage %s", p.Tool, s)
			}
		}
		for _, s := range p.Spans {
			if !strings.Contains(string(doc), "`"+s.Name) {
				t.Errorf("docs/record-format.md does not name %s duration %s", p.Tool, s.Name)
			}
			for role, seg := range s.Segment {
				if !strings.Contains(string(doc), seg) {
					t.Errorf("docs/record-format.md does not name segment %s (%s %s)", seg, p.Tool, role)
				}
			}
		}
	}
}
