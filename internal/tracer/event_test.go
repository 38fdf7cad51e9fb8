package tracer

import (
	"net"
	"testing"
)

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

func TestIfNames(t *testing.T) {
	var n IfNames
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback device: %v", err)
	}
	if got := n.Name(uint32(lo.Index)); got != "lo" {
		t.Errorf("Name(%d) = %q, want lo", lo.Index, got)
	}
	if got := n.Name(1 << 30); got != "if1073741824" {
		t.Errorf("Name of a missing index = %q", got)
	}
}
