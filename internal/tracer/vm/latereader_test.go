package vm_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"golang.org/x/sys/unix"
)

// TestGuestLateReader: a pinger that reads its replies long after they
// arrived must still get one complete record per ping. Its raw socket's
// clone of each reply is freed by recvmsg well past the correlator's
// duplicate window; before 6.3 consume_skb carries no location, so the
// tracepoint rung must tell that free from ICMP's own by the skb's owner, or
// the late free opens a second, p2_end-only flow. Only the matrix guests
// have such kernels; every rung must pass it.
func TestGuestLateReader(t *testing.T) {
	testenv.GuestOnly(t, "consume_skb without a location needs a kernel before 6.3")
	testenv.RequireRoot(t)
	p := newPair(t)
	// Resolve the neighbour first: a packet to an unresolved address waits
	// for the ARP reply and leaves from whichever task handles it (ksoftirqd
	// in a slow guest), and on the tracepoint rung such a send has no
	// p1_start by design (docs/tracers.md).
	if _, err := p.A.Ping(context.Background(), nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 9999, Count: 1}); err != nil {
		t.Fatal(err)
	}
	tx := startTracer(t, p.A, vmArgs()...)

	var fd int
	err := p.A.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		t.Fatalf("opening raw ICMP socket: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	const id, n = 4444, 5
	sa := &unix.SockaddrInet4{Addr: netip.MustParseAddr(dstIP).As4()}
	pkt := make([]byte, 64)
	var seqs []uint16
	for seq := uint16(1); seq <= n; seq++ {
		nettest.EchoRequest(pkt, id, seq)
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			t.Fatalf("sending seq %d: %v", seq, err)
		}
		seqs = append(seqs, seq)
		time.Sleep(10 * time.Millisecond)
	}
	// Well past the correlator's 100 ms duplicate window.
	time.Sleep(400 * time.Millisecond)
	buf := make([]byte, 1500)
	for got := 0; got < n; {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("reading replies (%d of %d): %v", got, n, err)
		}
		// IPv4 header, then an echo reply (type 0) with our id.
		if ihl := int(buf[0]&0x0f) * 4; m >= ihl+8 && buf[ihl] == 0 && int(buf[ihl+4])<<8|int(buf[ihl+5]) == id {
			got++
		}
	}
	waitSeqs(t, tx, id, seqs)
	s := tx.Signal(os.Interrupt)
	checkPings(t, "tx", s, id, seqs)
	tx.AssertGone()
}
