package host

import (
	"context"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
)

// One host tracer serves two VM pairs through the in-kernel pair filter:
// A→B (host A is its sender) and B→A (host A is its receiver), pinged at
// the same time with the same ICMP id and sequence numbers, so only the
// pair index tells their packets apart (B→A's requests have the addresses
// of A→B's replies). Each ping gets one complete record naming its pair,
// and the header lists both pairs.
func TestTraceSeveralPairs(t *testing.T) {
	testenv.RequireRoot(t)
	tp := newTopo(t, topoOptions{})
	pingAll(t, tp.vmA, tp.dst, 1, 1)
	tr := startTracer(t, tp.hostA, Config{SrcIP: tp.src, DstIP: tp.dst,
		MorePairs: []tracer.AddrPair{{Src: tp.dst, Dst: tp.src}}})

	const id, n = 4321, 15
	ctx := context.Background()
	done := make(chan error, 2)
	go func() { _, err := tp.vmA.Ping(ctx, nettestPing(tp.dst, id, n)); done <- err }()
	go func() { _, err := tp.vmB.Ping(ctx, nettestPing(tp.src, id, n)); done <- err }()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	tr.WaitPings(t, 2*n, 10*time.Second)
	s := tr.Stop(t)

	want := []record.Pair{{SrcIP: tp.src.String(), DstIP: tp.dst.String()}, {SrcIP: tp.dst.String(), DstIP: tp.src.String()}}
	if len(s.Header.Pairs) != 2 || s.Header.Pairs[0] != want[0] || s.Header.Pairs[1] != want[1] {
		t.Errorf("header pairs %+v, want %+v", s.Header.Pairs, want)
	}
	seen := map[[2]int]bool{}
	for _, p := range s.Pings {
		wantRole := record.RoleSender
		if p.Pair == 1 {
			wantRole = record.RoleReceiver
		}
		switch {
		case p.ID != id || p.Pair > 1:
			t.Errorf("record of no pair's ping: %+v", p)
		case p.Role != wantRole || len(p.Stages) != 4 || p.Extra["incomplete"] != "":
			t.Errorf("pair %d seq %d: role %q (want %q), stages %v, extra %v", p.Pair, p.Seq, p.Role, wantRole, p.Stages, p.Extra)
		case seen[[2]int{p.Pair, int(p.Seq)}]:
			t.Errorf("pair %d seq %d: two records", p.Pair, p.Seq)
		}
		seen[[2]int{p.Pair, int(p.Seq)}] = true
	}
	for pair := range 2 {
		for seq := 1; seq <= n; seq++ {
			if !seen[[2]int{pair, seq}] {
				t.Errorf("pair %d seq %d: no record", pair, seq)
			}
		}
	}
	if len(s.Drops) != 0 {
		t.Errorf("%d drop records, first %+v", len(s.Drops), s.Drops[0])
	}
	if c := s.Trailer.Counters; c["duplicate_stages"] != 0 || c["events_after_decision"] != 0 {
		t.Errorf("counters %v: the pairs' packets were mixed up", c)
	}
}
