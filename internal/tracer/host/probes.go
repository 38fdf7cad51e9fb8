package host

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Hooks of the BPF program (pp_event.hook); each is one ladder "stage" for
// the tracer core, because one hook serves two of the ping's stages
// (ingress sees req_in and rep_in) and must be attached once.
const (
	hookIngress = "ingress"
	hookEgress  = "egress"
	hookDrop    = "drop"
	hookUpcall  = "upcall"
)

// Overlay UDP ports the BPF program looks inside (HOST_VXLAN_PORT,
// HOST_GENEVE_PORT in host.bpf.c).
const (
	VXLANPort  = 4789
	GenevePort = 6081
)

// hookStages returns the attach ladders of the four hooks.
//
// Ingress has only the netif_receive_skb tracepoint, on purpose. The
// function it sits in, __netif_receive_skb_core, is static and often a
// ".constprop" clone (it is on 6.18): fentry then fails at load time and a
// kprobe by name misses. Its exported callers are no substitute: NIC drivers
// using GRO deliver through netif_receive_skb_list_internal and
// __netif_receive_skb_list_core, never through netif_receive_skb() or
// __netif_receive_skb(). The tracepoint sees both paths, and a raw
// tracepoint costs about what fentry does.
//
// Egress is dev_hard_start_xmit, a global function (never cloned) that
// calls the driver through xmit_one, where the net_dev_start_xmit
// tracepoint sits, so the three rungs observe the same instant.
func hookStages() []tracer.Stage {
	ingressNote := "after driver, GRO and XDP, before taps, the bridge/OVS rx handler and IP; no fentry/kprobe rung (see docs/tracer-host.md)"
	egressNote := "packet handed to the driver, after the qdisc"
	dropNote := "skb:kfree_skb with the kernel's drop reason"
	upcallNote := "openvswitch:ovs_dp_upcall: a packet sent up to ovs-vswitchd, which may drop it without a kernel drop"
	return []tracer.Stage{
		{Name: hookIngress, Required: true, Rungs: []tracer.Rung{
			{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "netif_receive_skb", Program: hostProgHostIngressBtf}}, Note: ingressNote},
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "netif_receive_skb", Program: hostProgHostIngressTp}}, Note: ingressNote},
		}},
		{Name: hookEgress, Required: true, Rungs: []tracer.Rung{
			{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: "dev_hard_start_xmit", Program: hostProgHostEgressFentry}}, Note: egressNote},
			{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "net_dev_start_xmit", Program: hostProgHostEgressBtf}}, Note: egressNote},
			{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: "dev_hard_start_xmit", Program: hostProgHostEgressKprobe}}, Note: egressNote},
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "net_dev_start_xmit", Program: hostProgHostEgressTp}}, Note: egressNote},
		}},
		// The drop hook is a tracepoint on every kernel; a kernel without it
		// still traces pings, only without drop reasons.
		{Name: hookDrop, Rungs: []tracer.Rung{
			{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "kfree_skb", Program: hostProgHostDropBtf}}, Note: dropNote},
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "kfree_skb", Program: hostProgHostDrop}}, Note: dropNote},
		}},
		// The upcall hook exists where the openvswitch module is loaded
		// (6.1+: 5.10's has no tracepoint); elsewhere no packet can be
		// lost to ovs-vswitchd.
		{Name: hookUpcall, Rungs: []tracer.Rung{
			{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "ovs_dp_upcall", Program: hostProgHostUpcallBtf}}, Note: upcallNote},
			{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "ovs_dp_upcall", Program: hostProgHostUpcallTp}}, Note: upcallNote},
		}},
	}
}

// stageHook is the hook observing each record stage.
var stageHook = map[string]string{
	record.StageReqIn: hookIngress, record.StageReqOut: hookEgress, record.StageRepIn: hookIngress, record.StageRepOut: hookEgress,
}

// kernelLayout is what the BPF program needs to know about the kernel.
type kernelLayout struct {
	kfreeReason bool // the kfree_skb tracepoint passes a drop reason (5.17+)
}

// readLayout inspects the kernel's BTF.
func readLayout(spec *btf.Spec) (kernelLayout, error) {
	var l kernelLayout
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
	var vars hostVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		return fmt.Errorf("reading the host BPF object: %w", err)
	}
	var b uint8
	if l.kfreeReason {
		b = 1
	}
	if err := vars.HostKfreeReason.Set(b); err != nil {
		return fmt.Errorf("setting host_kfree_reason: %w", err)
	}
	return nil
}

// Offsets of struct host_event's own fields after the embedded pp_event
// (checked against the bpf2go type in a test).
const (
	offLocation = tracer.EventSize
	offReason   = tracer.EventSize + 8
	offEncap    = tracer.EventSize + 12
	eventSize   = tracer.EventSize + 16
)

// decode turns a ring buffer record into an Event. sides maps a traced
// ifindex to its class, names to its name (the BPF side names only the
// devices of drops and upcalls, which can be any).
func decode(raw []byte, sides map[uint32]Side, names map[uint32]string) (Event, error) {
	pe, err := tracer.DecodeEvent(raw)
	if err != nil {
		return Event{}, err
	}
	if len(raw) < eventSize {
		return Event{}, fmt.Errorf("decoding host event: %d bytes, want %d", len(raw), eventSize)
	}
	ne := binary.NativeEndian
	e := Event{
		TS: pe.TS, Kind: Kind(pe.Hook), Dir: Dir(pe.Kind), ID: pe.ID, Seq: pe.Seq, Pair: pe.Pair, CPU: pe.CPU, Dev: pe.Ifname,
		Location: ne.Uint64(raw[offLocation:]), Reason: ne.Uint32(raw[offReason:]), Encap: raw[offEncap],
	}
	if e.Kind != KindDrop && e.Kind != KindUpcall {
		e.Side = sides[pe.Ifindex]
	}
	if e.Dev == "" {
		e.Dev = names[pe.Ifindex]
	}
	return e, nil
}
