package host

import (
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// TestTraceHostDrops loses pings on purpose and checks both hosts localize
// the loss: the receiver VM's vnet link down (the receiver host's bridge
// drops the request), and the receiver host's physical port taken out of
// its bridge (the request reaches the host's IP stack and dies there). In
// both, the sender host sees the request leave and no reply come, and the
// receiver host reports its kernel's drop reason. (Loss on the wire itself
// is the lab's --wire-loss, see lab_test.go.)
func TestTraceHostDrops(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, tp *topo)
		// expectations per host: last seen, first missed, reason wanted
		a, b *dropWant
	}{
		{
			name: "vnet-down",
			cut:  func(t *testing.T, tp *topo) { setLink(t, tp.hostB.ns, tp.hostB.vnet, false) },
			a:    &dropWant{record.RoleSender, record.StageReqOut, record.StageRepIn, false},
			b:    &dropWant{record.RoleReceiver, record.StageReqIn, record.StageReqOut, true},
		},
		{
			name: "phy-unbridged",
			cut:  func(t *testing.T, tp *topo) { unbridge(t, tp.hostB.ns, tp.hostB.phy) },
			a:    &dropWant{record.RoleSender, record.StageReqOut, record.StageRepIn, false},
			b:    &dropWant{record.RoleReceiver, record.StageReqIn, record.StageReqOut, true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t, topoOptions{})
			pingAll(t, tp.vmA, tp.dst, 1, 1)
			trA := startTracer(t, tp.hostA, Config{SrcIP: tp.src, DstIP: tp.dst})
			trB := startTracer(t, tp.hostB, Config{SrcIP: tp.src, DstIP: tp.dst})
			pingAll(t, tp.vmA, tp.dst, 55, 3) // healthy before the cut
			tc.cut(t, tp)
			res := ping(t, tp.vmA, tp.dst, 55, 3, 200*time.Millisecond)
			if len(res.Replies) != 0 {
				t.Fatalf("pings answered through a cut link: %+v", res.Replies)
			}
			// The drops are written once the tracer's timeout (500 ms) and
			// reorder window have passed.
			trA.WaitRecords(t, tracertest.AtLeast(record.TypeDrop, 3))
			trB.WaitRecords(t, tracertest.AtLeast(record.TypeDrop, 3))
			sA, sB := trA.Stop(t), trB.Stop(t)
			checkDrops(t, "hostA", sA, tc.a)
			checkDrops(t, "hostB", sB, tc.b)
		})
	}
}

type dropWant struct {
	role, lastSeen, firstMissed string
	reason                      bool
}

// checkDrops wants the three complete pings of the healthy burst and three
// drops, as wanted, for the burst after the cut (same id and sequences: a
// new ping reusing them must start a new record).
func checkDrops(t *testing.T, name string, s *record.Stream, want *dropWant) {
	t.Helper()
	complete := 0
	for _, p := range s.Pings {
		if p.Extra["incomplete"] == "" && len(p.Stages) == 4 {
			complete++
		}
	}
	if complete != 3 || len(s.Drops) != 3 {
		t.Fatalf("%s: %d complete pings and %d drops, want 3 and 3; pings %+v drops %+v", name, complete, len(s.Drops), s.Pings, s.Drops)
	}
	for _, d := range s.Drops {
		if d.Role != want.role || d.LastSeen != want.lastSeen || d.FirstMissed != want.firstMissed {
			t.Errorf("%s seq %d: role %s last %s missed %s, want %s %s %s", name, d.Seq, d.Role, d.LastSeen, d.FirstMissed,
				want.role, want.lastSeen, want.firstMissed)
		}
		if want.reason && (d.Reason == "" || d.Location == "" || d.Device == "" || d.AtNS < d.Stages[d.LastSeen]) {
			t.Errorf("%s seq %d: kernel reason missing: %+v", name, d.Seq, d)
		}
		t.Logf("%s seq %d: %s→%s reason=%s location=%s device=%s", name, d.Seq, d.LastSeen, d.FirstMissed, d.Reason, d.Location, d.Device)
	}
}
