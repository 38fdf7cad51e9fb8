package labtest

import (
	"context"
	"net/netip"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
)

// UDPFlood sends 64-byte UDP datagrams from the lab node to dst as fast as
// one sender goes until ctx ends, and returns how many left: traffic
// unrelated to any ping, to measure what tracing costs the packets nobody
// asked about.
func UDPFlood(ctx context.Context, l *lab.Lab, node string, dst netip.AddrPort) (int, error) {
	return nettest.UDPFloodFrom(ctx, func(f func() error) error { return l.Do(node, f) }, node, dst, 0)
}
