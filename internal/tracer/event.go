package tracer

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// EventSize is sizeof(struct pp_event) in pingpath.h.
const EventSize = 64

// Event is a decoded struct pp_event.
type Event struct {
	TS       uint64 // CLOCK_MONOTONIC ns
	Ifindex  uint32
	PID      uint32
	CPU      uint32
	ID, Seq  uint16
	Hook     uint8
	Kind     uint8 // KindRequest or KindReply
	ICMPType uint8
	Pair     uint8 // index of the address pair (Filter.MorePairs)
	Netns    uint32
	Comm     string
	Ifname   string
}

// DecodeEvent decodes the struct pp_event at the start of raw (tools whose
// event embeds it first decode the rest themselves from raw[EventSize:]).
func DecodeEvent(raw []byte) (Event, error) {
	if len(raw) < EventSize {
		return Event{}, fmt.Errorf("decoding event: %d bytes, want at least %d", len(raw), EventSize)
	}
	ne := binary.NativeEndian
	return Event{
		TS:       ne.Uint64(raw[0:]),
		Ifindex:  ne.Uint32(raw[8:]),
		PID:      ne.Uint32(raw[12:]),
		CPU:      ne.Uint32(raw[16:]),
		ID:       ne.Uint16(raw[20:]),
		Seq:      ne.Uint16(raw[22:]),
		Hook:     raw[24],
		Kind:     raw[25],
		ICMPType: raw[26],
		Pair:     raw[27],
		Netns:    ne.Uint32(raw[28:]),
		Comm:     unix.ByteSliceToString(raw[32:48]),
		Ifname:   unix.ByteSliceToString(raw[48:64]),
	}, nil
}

// IfNames names network devices by index in the calling thread's network
// namespace (the tracer's), for events whose BPF side leaves the name out.
// A name is looked up once per index; an index that no longer exists gets
// "if<N>".
type IfNames struct {
	byIndex map[uint32]string
}

// Name returns the name of device index.
func (n *IfNames) Name(index uint32) string {
	if name, ok := n.byIndex[index]; ok {
		return name
	}
	if n.byIndex == nil {
		n.byIndex = map[uint32]string{}
	}
	name := fmt.Sprintf("if%d", index)
	if ifc, err := net.InterfaceByIndex(int(index)); err == nil {
		name = ifc.Name
	}
	n.byIndex[index] = name
	return name
}
