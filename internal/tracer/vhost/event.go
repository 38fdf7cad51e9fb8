package vhost

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Kind is what an event reports. The values are shared with vhost.bpf.c.
type Kind uint8

// Event kinds (enum vh_kind in vhost.bpf.c).
const (
	KindTunXmit       Kind = 1  // vhost-rx S1: the tun device transmits an skb toward the guest
	KindVhostRecv     Kind = 2  // vhost-rx S2: the backend takes the skb
	KindSkbConsumed   Kind = 3  // a tracked skb was consumed (the backend took it)
	KindSkbDropped    Kind = 4  // a tracked skb was freed as a drop (Aux = skb_drop_reason)
	KindVhostSignal   Kind = 5  // vhost-rx S3: vhost_add_used_and_signal_n
	KindEventfd       Kind = 6  // eventfd_signal(ctx) in an armed task
	KindIrqfd         Kind = 7  // vhost-rx S4: irqfd_wakeup (Key = eventfd ctx, Aux = GSI when known)
	KindKVMIRQ        Kind = 8  // vhost-rx S5: interrupt injection (Aux = vector or GSI)
	KindKick          Kind = 16 // vhost-tx: guest kick, ioeventfd_write
	KindPollWakeup    Kind = 17 // vhost-tx: the kick wakes vhost work Key
	KindHandleTX      Kind = 18 // vhost-tx: handle_tx_kick(work Key)
	KindTunSendmsg    Kind = 19 // vhost-tx: tun_sendmsg, or write(2) on the tun fd
	KindNetifReceive  Kind = 20 // vhost-tx: netif_receive_skb on the vnet
	kindNameUndefined      = "unknown"
)

var kindNames = map[Kind]string{
	KindTunXmit: "tun_xmit", KindVhostRecv: "vhost_recv", KindSkbConsumed: "skb_consumed",
	KindSkbDropped: "skb_dropped", KindVhostSignal: "vhost_signal", KindEventfd: "eventfd",
	KindIrqfd: "irqfd", KindKVMIRQ: "kvm_irq", KindKick: "kick", KindPollWakeup: "poll_wakeup",
	KindHandleTX: "handle_tx", KindTunSendmsg: "tun_sendmsg", KindNetifReceive: "netif_receive",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return kindNameUndefined + "(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText writes the kind's name (replay corpora are meant to be read).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	for kind, n := range kindNames {
		if n == string(b) {
			*k = kind
			return nil
		}
	}
	return fmt.Errorf("unknown event kind %q", b)
}

// Ptr is a kernel pointer used as a correlation key; it reads and writes as hex.
type Ptr uint64

// MarshalText writes 0x-prefixed hex.
func (p Ptr) MarshalText() ([]byte, error) {
	return []byte("0x" + strconv.FormatUint(uint64(p), 16)), nil
}

// UnmarshalText parses 0x-prefixed hex.
func (p *Ptr) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(string(b), "0x"), 16, 64)
	if err != nil {
		return fmt.Errorf("parsing pointer %q: %w", b, err)
	}
	*p = Ptr(v)
	return nil
}

// Identity is the ICMP echo a packet carries, parsed where the packet is seen
// whole (S1 for vhost-rx, netif_receive for vhost-tx).
type Identity struct {
	Type uint8      `json:"type"` // 8 echo request, 0 echo reply
	ID   uint16     `json:"id"`
	Seq  uint16     `json:"seq"`
	Src  netip.Addr `json:"src"`
	Dst  netip.Addr `json:"dst"`
}

// Role names the direction: the vhost tracers see requests on one host and
// replies on the other.
func (id Identity) Role() string {
	if id.Type == 0 {
		return record.RoleReply
	}
	return record.RoleRequest
}

// Event is one observation from the kernel (or from a replay corpus).
type Event struct {
	Kind    Kind      `json:"kind"`
	TS      uint64    `json:"ts"`             // CLOCK_MONOTONIC ns
	Key     Ptr       `json:"key,omitempty"`  // skb, eventfd ctx, vhost work, tun socket
	Key2    Ptr       `json:"key2,omitempty"` // vq, irqfd wait entry, vcpu
	TID     uint32    `json:"tid"`
	TGID    uint32    `json:"tgid,omitempty"`
	CPU     uint32    `json:"cpu"`
	Ifindex uint32    `json:"ifindex,omitempty"`
	Aux     uint32    `json:"aux,omitempty"`    // GSI, vector, drop reason, fd
	Method  string    `json:"method,omitempty"` // fentry, kprobe, raw_tracepoint, tp_btf
	Comm    string    `json:"comm,omitempty"`
	Device  string    `json:"device,omitempty"` // device name where the packet was parsed
	ICMP    *Identity `json:"icmp,omitempty"`
}

// methodNames maps enum vh_method to record method names.
var methodNames = [...]string{1: "fentry", 2: "kprobe", 3: "raw_tracepoint", 4: "tp_btf"}

// rawEventSize is sizeof(struct vh_event).
const rawEventSize = 104

// DecodeEvent decodes one ring buffer sample: struct vh_event, the common
// struct pp_event (decoded by the tracer core) followed by the vhost keys.
func DecodeEvent(b []byte) (Event, error) {
	if len(b) < rawEventSize {
		return Event{}, fmt.Errorf("decoding vhost event: %d bytes, want %d", len(b), rawEventSize)
	}
	pp, err := tracer.DecodeEvent(b)
	if err != nil {
		return Event{}, err
	}
	ne := binary.NativeEndian
	tail := b[tracer.EventSize:]
	ev := Event{
		TS: pp.TS, Ifindex: pp.Ifindex, TGID: pp.PID, CPU: pp.CPU, Kind: Kind(pp.Hook),
		Comm: pp.Comm, Device: pp.Ifname,
		Key:  Ptr(ne.Uint64(tail[0:])),
		Key2: Ptr(ne.Uint64(tail[8:])),
		TID:  ne.Uint32(tail[16:]),
		Aux:  ne.Uint32(tail[20:]),
	}
	if m := int(tail[32]); m < len(methodNames) {
		ev.Method = methodNames[m]
	}
	if pp.Kind != 0 { // the packet was parsed
		ev.ICMP = &Identity{Type: pp.ICMPType, ID: pp.ID, Seq: pp.Seq,
			Src: netip.AddrFrom4([4]byte(tail[24:28])), Dst: netip.AddrFrom4([4]byte(tail[28:32]))}
	}
	return ev, nil
}

// ReadEvents decodes a replay corpus: one JSON event per line; blank lines
// and lines starting with '#' are skipped.
func ReadEvents(data []byte) ([]Event, error) {
	var out []Event
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return out, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, ev)
	}
	return out, nil
}
