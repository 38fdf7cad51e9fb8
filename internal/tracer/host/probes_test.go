package host

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

func TestEventLayout(t *testing.T) {
	var e hostHostEvent
	if got := int(unsafe.Sizeof(e)); got != eventSize {
		t.Errorf("sizeof(struct host_event) = %d, decode assumes %d", got, eventSize)
	}
	if int(unsafe.Sizeof(e.Pp)) != tracer.EventSize {
		t.Errorf("embedded pp_event is %d bytes, core says %d", unsafe.Sizeof(e.Pp), tracer.EventSize)
	}
	for name, pair := range map[string][2]uintptr{
		"location": {unsafe.Offsetof(e.Location), offLocation},
		"reason":   {unsafe.Offsetof(e.Reason), offReason},
		"encap":    {unsafe.Offsetof(e.Encap), offEncap},
	} {
		if pair[0] != pair[1] {
			t.Errorf("offset of %s = %d, decode uses %d", name, pair[0], pair[1])
		}
	}
}

func TestDecode(t *testing.T) {
	var e hostHostEvent
	e.Pp.Ts, e.Pp.Ifindex, e.Pp.Cpu, e.Pp.Id, e.Pp.Seq = 123, 7, 1, 15812, 9
	e.Pp.Hook, e.Pp.Kind = uint8(KindEgress), uint8(DirReply)
	for i, c := range "vnet35" {
		e.Pp.Ifname[i] = int8(c)
	}
	e.Location, e.Reason, e.Encap = 0xffffffff81000000, 12, EncapVXLAN
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &e); err != nil {
		t.Fatal(err)
	}
	got, err := decode(buf.Bytes(), map[uint32]Side{7: SideVM}, map[uint32]string{7: "configured-name"})
	if err != nil {
		t.Fatal(err)
	}
	want := Event{TS: 123, Kind: KindEgress, Dir: DirReply, Side: SideVM, ID: 15812, Seq: 9, Dev: "vnet35", CPU: 1,
		Encap: EncapVXLAN, Reason: 12, Location: 0xffffffff81000000}
	if got != want {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
	// Ingress and egress events carry no name (the BPF side does not read
	// it): the configured interface's name is used.
	e.Pp.Ifname = [16]int8{}
	buf.Reset()
	if err := binary.Write(&buf, binary.NativeEndian, &e); err != nil {
		t.Fatal(err)
	}
	if got, err := decode(buf.Bytes(), map[uint32]Side{7: SideVM}, map[uint32]string{7: "vnet7"}); err != nil || got.Dev != "vnet7" {
		t.Errorf("decode without a name = %+v, %v; want Dev vnet7", got, err)
	}
	if _, err := decode(buf.Bytes()[:70], nil, nil); err == nil {
		t.Error("short record decoded")
	}
}

// Every (direction, hook, side) lands on one role × stage of record.Host, and
// together they cover the table.
func TestStageOfCoversEveryCombination(t *testing.T) {
	seen := map[string]bool{}
	for _, dir := range []Dir{DirRequest, DirReply} {
		for _, kind := range []Kind{KindIngress, KindEgress} {
			for _, side := range []Side{SideVM, SidePhy} {
				role, stage, ok := stageOf(&Event{Dir: dir, Kind: kind, Side: side})
				if !ok || stage >= len(record.Host.Stages) || !slices.Contains(record.Host.Roles, role) {
					t.Fatalf("dir %d kind %d side %d: role %q stage %d ok %v, not in record.Host", dir, kind, side, role, stage, ok)
				}
				key := role + "/" + record.Host.Stages[stage]
				if seen[key] {
					t.Errorf("%s produced twice", key)
				}
				seen[key] = true
			}
		}
	}
	if len(seen) != len(record.Host.Roles)*len(record.Host.Stages) {
		t.Errorf("got %d role/stage pairs, want %d", len(seen), len(record.Host.Roles)*len(record.Host.Stages))
	}
	if _, _, ok := stageOf(&Event{Dir: DirRequest, Kind: KindIngress}); ok {
		t.Error("event of an untraced device got a stage")
	}
}

// The ladder picks the tracepoint rungs when nothing better works; a
// forced kprobe applies to egress, and ingress and drop keep their
// tracepoints with a reason saying so.
func TestHookStages(t *testing.T) {
	caps := tracer.Capabilities{
		Methods: map[tracer.Method]string{tracer.RawTracepoint: "", tracer.Fentry: "refused", tracer.Kprobe: "no kprobes"},
		Targets: map[tracer.Method]map[string]bool{
			tracer.RawTracepoint: {"netif_receive_skb": true, "net_dev_start_xmit": true, "kfree_skb": true},
		},
	}
	ch, err := tracer.Select(hookStages(), caps, "auto")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ch {
		// No openvswitch module loaded: no upcall hook, and no error.
		if c.Stage == hookUpcall {
			if c.Available || !strings.Contains(c.Reason, "ovs_dp_upcall not found") {
				t.Errorf("%s without the openvswitch module: %+v", c.Stage, c)
			}
			continue
		}
		if !c.Available || c.Rung.Method != tracer.RawTracepoint {
			t.Errorf("%s: %+v", c.Stage, c)
		}
	}
	caps.Targets[tracer.RawTracepoint]["ovs_dp_upcall"] = true
	if ch, err = tracer.Select(hookStages(), caps, "auto"); err != nil || !ch[3].Available || ch[3].Rung.Method != tracer.RawTracepoint {
		t.Errorf("with the openvswitch module: %+v %v", ch, err)
	}
	caps.Methods[tracer.Kprobe] = ""
	caps.Targets[tracer.Kprobe] = map[string]bool{"dev_hard_start_xmit": true}
	if ch, err = tracer.Select(hookStages(), caps, "kprobe"); err != nil {
		t.Fatal(err)
	}
	if ch[0].Rung.Method != tracer.RawTracepoint || ch[1].Rung.Method != tracer.Kprobe || ch[2].Rung.Method != tracer.RawTracepoint {
		t.Errorf("forced kprobe: %+v", ch)
	}
	if !strings.Contains(ch[0].Reason, "no kprobe rung") {
		t.Errorf("ingress reason %q does not say it has no kprobe rung", ch[0].Reason)
	}
}

func TestDescribeListsRecordStages(t *testing.T) {
	tool := &Tool{cfg: Config{Role: "auto", VMInterfaces: []string{"vnet0"}, PhyInterfaces: []string{"eth0", "eth1"}}}
	h := &record.Header{Probes: []record.Probe{
		{Stage: hookIngress, Method: "raw_tracepoint", Target: "netif_receive_skb", Available: true},
		{Stage: hookEgress, Method: "kprobe", Target: "dev_hard_start_xmit", Available: true},
		{Stage: hookDrop, Available: false, Reason: "no kfree_skb"},
		{Stage: hookUpcall, Method: "tp_btf", Target: "ovs_dp_upcall", Available: true},
	}}
	tool.Describe(h)
	var got []string
	for _, p := range h.Probes {
		got = append(got, p.Stage+"="+p.Method)
	}
	want := "req_in=raw_tracepoint req_out=kprobe rep_in=raw_tracepoint rep_out=kprobe drop= upcall=tp_btf"
	if strings.Join(got, " ") != want {
		t.Errorf("probes %v, want %s", got, want)
	}
	if strings.Join(h.Interfaces, ",") != "vnet0,eth0,eth1" || h.Role != "auto" {
		t.Errorf("header %+v", h)
	}
}

func TestReadLayoutRunningKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel btf: %v", err)
	}
	l, err := readLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Kernels since 5.17 pass a drop reason to kfree_skb.
	if !l.kfreeReason {
		t.Errorf("layout %+v on this kernel, want a kfree_skb reason", l)
	}
}
