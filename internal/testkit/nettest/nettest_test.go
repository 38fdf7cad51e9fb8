package nettest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestPairPing(t *testing.T) {
	testenv.RequireRoot(t)
	p := NewPair(t, "10.201.0.1/24", "10.201.0.2/24")
	if p.A.Inode == p.B.Inode || p.A.Inode == 0 {
		t.Fatalf("namespaces not distinct: %d %d", p.A.Inode, p.B.Inode)
	}
	res, err := p.A.Ping(context.Background(), PingOptions{Dst: netip.MustParseAddr("10.201.0.2"), ID: 4242, FirstSeq: 65534, Count: 5, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 5 || len(res.Replies) != 5 || len(res.Lost) != 0 {
		t.Fatalf("sent %d, replies %d, lost %v", res.Sent, len(res.Replies), res.Lost)
	}
	seen := map[uint16]bool{}
	for _, r := range res.Replies {
		seen[r.Seq] = true
		if r.RTT <= 0 || r.RTT > time.Second {
			t.Errorf("seq %d: implausible RTT %v", r.Seq, r.RTT)
		}
	}
	for _, s := range []uint16{65534, 65535, 0, 1, 2} {
		if !seen[s] {
			t.Errorf("seq %d (wrapped) not answered", s)
		}
	}
}

func TestVLANPairPing(t *testing.T) {
	testenv.RequireRoot(t)
	p := NewVLANPair(t, "10.202.0.1/24", "10.202.0.2/24", 42)
	res, err := p.B.Ping(context.Background(), PingOptions{Dst: netip.MustParseAddr("10.202.0.1"), ID: 7, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replies) != 3 {
		t.Fatalf("replies %d, lost %v", len(res.Replies), res.Lost)
	}
}

func TestUDPFloodInNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	p := NewPair(t, "10.203.0.1/24", "10.203.0.2/24")
	n, err := p.A.UDPFlood(context.Background(), netip.MustParseAddrPort("10.203.0.2:9"), 1000)
	if err != nil || n != 1000 {
		t.Fatalf("sent %d: %v", n, err)
	}
}
