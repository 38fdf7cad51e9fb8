package vhostnet

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

func TestEchoRoundTrip(t *testing.T) {
	in := Echo{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.1.2.4"),
		ID: 0xbeef, Seq: 7, Payload: []byte("0123456789abcdefg"), // odd length: checksum padding
	}
	f := in.Frame()
	out, ok := ParseEcho(f)
	if !ok {
		t.Fatalf("ParseEcho rejected our own frame % x", f)
	}
	if out.Src != in.Src || out.Dst != in.Dst || out.ID != in.ID || out.Seq != in.Seq || out.Reply ||
		!bytes.Equal(out.SrcMAC, in.SrcMAC) || !bytes.Equal(out.DstMAC, in.DstMAC) || !bytes.Equal(out.Payload, in.Payload) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	f[len(f)-1] ^= 1
	if _, ok := ParseEcho(f); ok {
		t.Fatal("ParseEcho accepted a frame with a bad ICMP checksum")
	}
}

func TestQueueLayoutFits(t *testing.T) {
	for _, size := range []int{1, 64, 128} {
		q := &queue{size: size, ringOff: ringArea}
		usedEnd := q.usedOff() + 6 + 8*size
		if q.usedOff()%4 != 0 || q.availOff() < q.ringOff+descSize*size || usedEnd > q.ringOff+ringArea {
			t.Errorf("size %d: avail at %d, used at %d..%d, ring area %d..%d", size, q.availOff(), q.usedOff(), usedEnd, q.ringOff, q.ringOff+ringArea)
		}
	}
}
