package host

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/pingpath/pingpath/internal/tracer"
)

// Hooks of the BPF program (pp_event.hook); each is one ladder "stage" for
// the tracer core, because one hook serves two of the ping's stages
// (ingress sees req_in and rep_in) and must be attached once.
const (
	hookIngress = "ingress"
	hookEgress  = "egress"
	hookDrop    = "drop"
)

// Overlay UDP ports the BPF program looks inside (HOST_VXLAN_PORT,
// HOST_GENEVE_PORT in host.bpf.c).
const (
	VXLANPort  = 4789
	GenevePort = 6081
)

// rcvCore is the kernel function every received packet passes (GRO list and
// single-skb paths alike), and where the netif_receive_skb tracepoint sits.
const rcvCore = "__netif_receive_skb_core"

// hookStages returns the attach ladders of the three hooks. exactRcvCore
// says whether __netif_receive_skb_core is a symbol of its own in kallsyms:
// on many builds it is a ".constprop" clone that neither kprobes nor fentry
// can attach to by name, and then only the tracepoint rung is offered.
func hookStages(exactRcvCore bool) []tracer.Stage {
	ingress := tracer.Stage{Name: hookIngress, Required: true}
	if exactRcvCore {
		ingress.Rungs = append(ingress.Rungs,
			tracer.Rung{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: rcvCore, Program: "host_ingress_fentry"}}},
			tracer.Rung{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: rcvCore, Program: "host_ingress_kprobe"}}})
	}
	rawNote := "after driver, GRO and XDP, before taps, bridge/OVS rx handler and IP"
	if !exactRcvCore {
		rawNote = rcvCore + " is not a symbol of its own on this kernel (inlined or cloned); " + rawNote
	}
	ingress.Rungs = append(ingress.Rungs, tracer.Rung{Method: tracer.RawTracepoint,
		Hooks: []tracer.Hook{{Target: "netif_receive_skb", Program: "host_ingress_tp"}}, Note: rawNote})
	egressNote := "packet handed to the driver, after the qdisc"
	return []tracer.Stage{
		ingress,
		{Name: hookEgress, Required: true, Rungs: []tracer.Rung{
			{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: "dev_hard_start_xmit", Program: "host_egress_fentry"}}, Note: egressNote},
			{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: "dev_hard_start_xmit", Program: "host_egress_kprobe"}}, Note: egressNote},
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "net_dev_start_xmit", Program: "host_egress_tp"}}, Note: egressNote},
		}},
		// The drop hook is a tracepoint on every kernel; a kernel without it
		// still traces pings, only without drop reasons.
		{Name: hookDrop, Rungs: []tracer.Rung{
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "kfree_skb", Program: "host_drop"}}, Note: "skb:kfree_skb with the kernel's drop reason"},
		}},
	}
}

// stageHook is the hook observing each record stage.
var stageHook = map[string]string{
	StageReqIn: hookIngress, StageReqOut: hookEgress, StageRepIn: hookIngress, StageRepOut: hookEgress,
}

// exactSymbol reports whether name is a text symbol of its own in kallsyms.
func exactSymbol(name string) bool {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		f := strings.Fields(string(line))
		if len(f) >= 3 && f[2] == name && (f[1] == "t" || f[1] == "T") {
			return true
		}
	}
	return false
}

// kernelLayout is what the BPF program needs to know about argument layouts.
type kernelLayout struct {
	rcvPskb     bool // __netif_receive_skb_core(struct sk_buff **pskb, ...) (5.7+) rather than (struct sk_buff *skb, ...)
	kfreeReason bool // the kfree_skb tracepoint passes a drop reason (5.17+)
}

// readLayout inspects the kernel's BTF.
func readLayout(spec *btf.Spec) (kernelLayout, error) {
	var l kernelLayout
	var fn *btf.Func
	switch err := spec.TypeByName(rcvCore, &fn); {
	case err == nil:
		if proto, ok := fn.Type.(*btf.FuncProto); ok && len(proto.Params) > 0 {
			if p, ok := btf.UnderlyingType(proto.Params[0].Type).(*btf.Pointer); ok {
				_, l.rcvPskb = btf.UnderlyingType(p.Target).(*btf.Pointer)
			}
		}
	case !errors.Is(err, btf.ErrNotFound):
		return l, fmt.Errorf("reading %s from kernel btf: %w", rcvCore, err)
	}
	var td *btf.Typedef
	switch err := spec.TypeByName("btf_trace_kfree_skb", &td); {
	case err == nil:
		// void (*)(void *, struct sk_buff *, void *location, enum skb_drop_reason, ...)
		if ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer); ok {
			if proto, ok := ptr.Target.(*btf.FuncProto); ok {
				l.kfreeReason = len(proto.Params) >= 4
			}
		}
	case !errors.Is(err, btf.ErrNotFound):
		return l, fmt.Errorf("reading kfree_skb tracepoint from kernel btf: %w", err)
	}
	return l, nil
}

// configure sets the host program's own constants.
func (l kernelLayout) configure(spec *ebpf.CollectionSpec) error {
	for name, v := range map[string]bool{"host_rcv_pskb": l.rcvPskb, "host_kfree_reason": l.kfreeReason} {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("variable %s missing from the host BPF object", name)
		}
		var b uint8
		if v {
			b = 1
		}
		if err := vs.Set(b); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// eventSize is the size of struct host_event.
var eventSize = binary.Size(hostHostEvent{})

// decode turns a ring buffer record into an Event. sides maps a traced
// ifindex to its class.
func decode(raw []byte, sides map[uint32]Side) (Event, error) {
	var he hostHostEvent
	if len(raw) < eventSize {
		return Event{}, fmt.Errorf("ring buffer record of %d bytes, want %d", len(raw), eventSize)
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &he); err != nil {
		return Event{}, fmt.Errorf("decoding ring buffer record: %w", err)
	}
	e := Event{
		TS: he.Pp.Ts, Kind: Kind(he.Pp.Hook), Dir: Dir(he.Pp.Kind),
		ID: he.Pp.Id, Seq: he.Pp.Seq, CPU: he.Pp.Cpu,
		Dev:   cString(he.Pp.Ifname[:]),
		Encap: he.Encap, Reason: he.Reason, Location: he.Location,
	}
	if e.Kind != KindDrop {
		e.Side = sides[he.Pp.Ifindex]
	}
	return e, nil
}

func cString(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
