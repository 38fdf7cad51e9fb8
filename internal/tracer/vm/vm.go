// Package vm is the VM tracer (`pingpath trace vm`), the replacement of the
// origin's kernel_icmp_rtt.py: inside a VM it timestamps one ping's echo
// request and echo reply at four stages of the guest's network stack.
//
// Sender (role tx): p1_start request enters IP output, p1_end request handed
// to the device, p2_start reply received, p2_end reply reaches icmp_rcv.
// Receiver (role rx): p1_start request received, p1_end request reaches
// icmp_rcv, p2_start reply enters IP output, p2_end reply handed to the
// device. Which hook backs each stage on each attach rung is in Stages and
// docs/tracers.md.
package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Hook numbers, VM_HOOK_* in vm.bpf.c (a test keeps them in sync).
const (
	hookIPOut    uint8 = 1
	hookDevQueue uint8 = 2
	hookNetifRX  uint8 = 3
	hookICMPRcv  uint8 = 4
	hookSendto   uint8 = 5
	hookConsume  uint8 = 6
	hookFibIn    uint8 = 7
	hookFibOut   uint8 = 8
)

const netDevQueueNote = "net_dev_queue fires at dev_queue_xmit entry, before the qdisc"

// The rungs, shared by both directions. Each says what it sees. A tracepoint
// is tried typed first (tp_btf: plain loads where the kernel has its own
// BTF), then as a plain raw tracepoint.
var (
	ipLocalOut = []tracer.Rung{
		{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: "ip_local_out", Program: vmProgVmFentryIpLocalOut}, {Target: "__ip_local_out", Program: vmProgVmFentryIpLocalOutInner}}},
		{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: "ip_local_out", Program: vmProgVmKprobeIpLocalOut}, {Target: "__ip_local_out", Program: vmProgVmKprobeIpLocalOut}}},
	}
	devQueue = []tracer.Rung{
		{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: "dev_queue_xmit", Program: vmProgVmFentryDevQueueXmit}, {Target: "__dev_queue_xmit", Program: vmProgVmFentryDevQueueXmitInner}}},
		{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "net_dev_queue", Program: vmProgVmTpBtfNetDevQueue}}, Note: netDevQueueNote},
		{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: "dev_queue_xmit", Program: vmProgVmKprobeDevQueueXmit}, {Target: "__dev_queue_xmit", Program: vmProgVmKprobeDevQueueXmit}}},
		{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "net_dev_queue", Program: vmProgVmRawTpNetDevQueue}}, Note: netDevQueueNote},
	}
	netifReceive = []tracer.Rung{
		{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "netif_receive_skb", Program: vmProgVmTpBtfNetifReceiveSkb}}},
		{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "netif_receive_skb", Program: vmProgVmRawTpNetifReceiveSkb}}},
	}
	icmpRcv = []tracer.Rung{
		{Method: tracer.Fentry, Hooks: []tracer.Hook{{Target: "icmp_rcv", Program: vmProgVmFentryIcmpRcv}}},
		{Method: tracer.Kprobe, Hooks: []tracer.Hook{{Target: "icmp_rcv", Program: vmProgVmKprobeIcmpRcv}}},
	}
)

const replyFreedNote = "approximation: the reply freed (consume_skb or kfree_skb) by icmp_rcv, i.e. the end of icmp_rcv after delivery to the sockets"

// fibLookup is the fib_table_lookup tracepoint's rungs (one program tells
// the request's input lookup from the reply's output lookup), noted.
func fibLookup(note string) []tracer.Rung {
	return []tracer.Rung{
		{Method: tracer.TpBTF, Hooks: []tracer.Hook{{Target: "fib_table_lookup", Program: vmProgVmTpBtfFibTableLookup}}, Note: note},
		{Method: tracer.RawTracepoint, Hooks: []tracer.Hook{{Target: "fib_table_lookup", Program: vmProgVmRawTpFibTableLookup}}, Note: note},
	}
}

func with(rungs []tracer.Rung, more ...tracer.Rung) []tracer.Rung {
	out := append([]tracer.Rung(nil), rungs...)
	return append(out, more...)
}

// Stages returns the probe ladder of each stage for role (record.RoleTX, record.RoleRX).
func Stages(role string) []tracer.Stage {
	if role == record.RoleTX {
		return []tracer.Stage{
			{Name: record.StageP1Start, Required: true, Rungs: with(ipLocalOut, tracer.Rung{Method: tracer.Tracepoint,
				Hooks: []tracer.Hook{{Target: "syscalls/sys_enter_sendto", Program: vmProgVmTpSysEnterSendto},
					{Target: "syscalls/sys_enter_sendmsg", Program: vmProgVmTpSysEnterSendmsg}},
				Note: "approximation: sendto(2)/sendmsg(2) entry, so it also counts the socket layer, route lookup and skb build before ip_local_out"})},
			{Name: record.StageP1End, Rungs: devQueue},
			{Name: record.StageP2Start, Rungs: netifReceive},
			{Name: record.StageP2End, Required: true, Rungs: with(icmpRcv,
				tracer.Rung{Method: tracer.TpBTF, Note: replyFreedNote,
					Hooks: []tracer.Hook{{Target: "consume_skb", Program: vmProgVmTpBtfConsumeSkb}, {Target: "kfree_skb", Program: vmProgVmTpBtfKfreeSkb}}},
				tracer.Rung{Method: tracer.RawTracepoint, Note: replyFreedNote,
					Hooks: []tracer.Hook{{Target: "consume_skb", Program: vmProgVmRawTpConsumeSkb}, {Target: "kfree_skb", Program: vmProgVmRawTpKfreeSkb}}})},
		}
	}
	return []tracer.Stage{
		{Name: record.StageP1Start, Required: true, Rungs: netifReceive},
		{Name: record.StageP1End, Rungs: with(icmpRcv, fibLookup("approximation: the request's input route lookup in ip_rcv_finish, just before local delivery to icmp_rcv")...)},
		{Name: record.StageP2Start, Rungs: with(ipLocalOut, fibLookup("approximation: the reply's output route lookup in icmp_reply, just before ip_local_out")...)},
		{Name: record.StageP2End, Required: true, Rungs: devQueue},
	}
}

// stageOf maps (hook, kind) to the stage it stamps for role.
func stageOf(role string) map[[2]uint8]string {
	req, rep := tracer.KindRequest, tracer.KindReply
	if role == record.RoleTX {
		return map[[2]uint8]string{
			{hookIPOut, req}: record.StageP1Start, {hookSendto, req}: record.StageP1Start,
			{hookDevQueue, req}: record.StageP1End,
			{hookNetifRX, rep}:  record.StageP2Start,
			{hookICMPRcv, rep}:  record.StageP2End, {hookConsume, rep}: record.StageP2End,
		}
	}
	return map[[2]uint8]string{
		{hookNetifRX, req}: record.StageP1Start,
		{hookICMPRcv, req}: record.StageP1End, {hookFibIn, req}: record.StageP1End,
		{hookIPOut, rep}: record.StageP2Start, {hookFibOut, rep}: record.StageP2Start,
		{hookDevQueue, rep}: record.StageP2End,
	}
}

// Config is what `pingpath trace vm` was asked.
type Config struct {
	SrcIP, DstIP netip.Addr // the ping's initiator and target (same on both VMs)
	Interfaces   []string   // device-bound stages only on these; empty = any
	Direction    string     // "auto", "tx" or "rx"
	ICMPID       *uint16    // only this echo identifier
	// FlowTimeout closes pings not complete after this long (default 5 s).
	FlowTimeout time.Duration
}

// Tracer is the VM tracer; it implements tracer.Tool.
type Tracer struct {
	cfg       Config
	role      string
	netns     uint64
	ifindexes []uint32
	stageOf   map[[2]uint8]string
	corr      *tracer.Correlator[hit]
	m         *machine
	out       *tracer.Output
	unmatched uint64
	ifnames   tracer.IfNames
	window    uint64 // reorder window (ns): 0, or PerfReorderWindow with the perf event array
}

// New resolves direction and interfaces in the caller's network namespace.
func New(cfg Config) (*Tracer, error) {
	if !cfg.SrcIP.Is4() || !cfg.DstIP.Is4() {
		return nil, tracer.Usage("--src-ip %s / --dst-ip %s: IPv4 addresses are required", cfg.SrcIP, cfg.DstIP)
	}
	if cfg.SrcIP == cfg.DstIP {
		return nil, tracer.Usage("--src-ip and --dst-ip are both %s", cfg.SrcIP)
	}
	t := &Tracer{cfg: cfg}
	var err error
	if t.netns, err = kernel.NetnsInode(); err != nil {
		return nil, err
	}
	if t.role, err = resolveDirection(cfg); err != nil {
		return nil, err
	}
	for _, name := range cfg.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, tracer.Usage("--interface %s: %w", name, err)
		}
		t.ifindexes = append(t.ifindexes, uint32(ifc.Index))
	}
	if len(t.ifindexes) > tracer.MaxInterfaces {
		return nil, tracer.Usage("--interface: at most %d interfaces", tracer.MaxInterfaces)
	}
	t.stageOf = stageOf(t.role)
	return t, nil
}

// resolveDirection turns auto into tx or rx from which address is local.
func resolveDirection(cfg Config) (string, error) {
	switch cfg.Direction {
	case record.RoleTX, record.RoleRX:
		return cfg.Direction, nil
	case "", "auto":
	default:
		return "", tracer.Usage("--direction %q: want auto, tx or rx", cfg.Direction)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("listing local addresses for --direction auto: %w", err)
	}
	var srcLocal, dstLocal bool
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		srcLocal = srcLocal || ip == cfg.SrcIP
		dstLocal = dstLocal || ip == cfg.DstIP
	}
	switch {
	case srcLocal && !dstLocal:
		return record.RoleTX, nil
	case dstLocal && !srcLocal:
		return record.RoleRX, nil
	case srcLocal && dstLocal:
		return "", tracer.Usage("--direction auto: both --src-ip and --dst-ip are local addresses here; give --direction tx or rx")
	}
	return "", tracer.Usage("--direction auto: neither %s nor %s is an address of this network namespace; give --direction tx or rx", cfg.SrcIP, cfg.DstIP)
}

// Role is "tx" or "rx".
func (t *Tracer) Role() string { return t.role }

// Name implements tracer.Tool.
func (t *Tracer) Name() string { return record.ToolVM }

// Stages implements tracer.Tool.
func (t *Tracer) Stages() []tracer.Stage { return Stages(t.role) }

// Filter implements tracer.Tool.
func (t *Tracer) Filter() tracer.Filter {
	return tracer.Filter{SrcIP: t.cfg.SrcIP, DstIP: t.cfg.DstIP, ICMPID: t.cfg.ICMPID, Netns: t.netns, Ifindexes: t.ifindexes}
}

// freeFuncs are the functions where the echo reply is freed at the end of
// ICMP processing (see vm_freed_in_icmp_rcv in vm.bpf.c).
var freeFuncs = []string{"icmp_rcv", "ping_rcv"}

// Spec implements tracer.Tool: the embedded object, with the text ranges of
// freeFuncs set when consume_skb/kfree_skb back p2_end.
func (t *Tracer) Spec(choices []tracer.Choice) (*ebpf.CollectionSpec, error) {
	spec, err := loadVm()
	if err != nil {
		return nil, err
	}
	var obj vmSpecs
	if err := spec.Assign(&obj); err != nil {
		return nil, fmt.Errorf("reading the vm BPF object: %w", err)
	}
	for _, c := range choices {
		if c.Available && c.Rung.Hooks[0].Program == vmProgVmTpSysEnterSendto {
			// dev_queue_xmit's event carries the send's start (sendStart).
			if err := obj.VmSendNoted.Set(uint8(1)); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range choices {
		if !c.Available || c.Rung.Hooks[0].Program != vmProgVmRawTpConsumeSkb {
			continue
		}
		if hasLoc, err := kernel.TracepointHasField("skb", "consume_skb", "location"); err == nil && !hasLoc {
			if err := obj.VmConsumeHasLoc.Set(uint8(0)); err != nil {
				return nil, err
			}
		}
		syms, err := kallsyms.Lookup(freeFuncs)
		if err != nil {
			return spec, nil // no location check, see below
		}
		var starts, ends [2]uint64
		for i, fn := range freeFuncs {
			sym := syms[fn]
			if starts[i], ends[i] = sym.Start, sym.End; sym.Start == 0 || sym.End == 0 {
				// Without ranges the owner check in vm_freed_in_icmp_rcv
				// keeps out the sockets' clones, as before 6.3.
				return spec, nil
			}
		}
		if err := obj.VmFreeStart.Set(starts); err != nil {
			return nil, err
		}
		if err := obj.VmFreeEnd.Set(ends); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// Describe implements tracer.Tool.
func (t *Tracer) Describe(h *record.Header) {
	h.Role = t.role
	h.SrcIP = t.cfg.SrcIP.String()
	h.DstIP = t.cfg.DstIP.String()
	h.Interfaces = t.cfg.Interfaces
}

// Start implements tracer.Tool.
func (t *Tracer) Start(choices []tracer.Choice, out tracer.Sink) error {
	var stages []string
	for _, c := range choices {
		if c.Available {
			stages = append(stages, c.Stage)
		}
	}
	if len(stages) == 0 {
		return errors.New("no stage can be observed")
	}
	t.out = tracer.NewOutput(out)
	t.m = newMachine(machineConfig{stages: stages, final: record.VM.Last(), timeout: uint64(t.cfg.FlowTimeout), role: t.role}, t.out)
	t.corr = tracer.NewCorrelator[hit](t.m, hitTime, t.window)
	return nil
}

// UseEventBuffer implements tracer.EventBufferUser: with the perf event
// array a ping's first stage can arrive after its last (see
// tracer.PerfReorderWindow), which without a window would end the ping
// before its first stage is in.
func (t *Tracer) UseEventBuffer(buffer string) {
	t.window = 0
	if buffer == tracer.EventBufferPerf {
		t.window = uint64(tracer.PerfReorderWindow)
	}
}

// Event implements tracer.Tool.
func (t *Tracer) Event(raw []byte) error {
	ev, err := tracer.DecodeEvent(raw)
	if err != nil {
		return err
	}
	stage, ok := t.stageOf[[2]uint8{ev.Hook, ev.Kind}]
	if !ok {
		t.unmatched++
		return nil
	}
	key := flowKey{id: ev.ID, seq: ev.Seq}
	if sendTS := sendStart(ev, raw); sendTS != 0 {
		if start, ok := t.stageOf[[2]uint8{hookSendto, ev.Kind}]; ok {
			t.corr.Add(hit{key: key, stage: start, ts: sendTS, cpu: ev.CPU, pid: ev.PID, comm: ev.Comm})
		}
	}
	dev := ev.Ifname
	if dev == "" && ev.Ifindex != 0 {
		dev = t.ifnames.Name(ev.Ifindex)
	}
	t.corr.Add(hit{key: key, stage: stage, ts: ev.TS,
		device: dev, cpu: ev.CPU, pid: ev.PID, comm: ev.Comm})
	return t.out.Err()
}

// sendStartOffset is where dev_queue_xmit's event (vm.bpf.c struct
// vm_event) carries the start of the send that built an echo request.
const sendStartOffset = tracer.EventSize

// sendStart returns the sendto(2)/sendmsg(2) start that ev, dev_queue_xmit's
// event, carries for its packet, or 0. The syscall tracepoint only notes the
// time; the packet's own id and seq are known once dev_queue_xmit sees it
// (vm.bpf.c vm_take_send_start).
func sendStart(ev tracer.Event, raw []byte) uint64 {
	if ev.Hook != hookDevQueue || len(raw) < sendStartOffset+8 {
		return 0
	}
	return binary.NativeEndian.Uint64(raw[sendStartOffset:])
}

// Tick implements tracer.Tool.
func (t *Tracer) Tick(now uint64) { t.corr.Tick(now) }

// Finish implements tracer.Tool.
func (t *Tracer) Finish() map[string]uint64 {
	t.corr.Flush(kernel.MonotonicNS())
	return map[string]uint64{
		"pings":      t.m.completed,
		"drops":      t.m.incomplete,
		"incomplete": t.m.incomplete,
		"duplicates": t.m.duplicates,
		"unmatched":  t.unmatched,
	}
}

// CostHooks implements tracer.CostHooks: the BPF programs account their runs
// under their hook number (both fib_table_lookup stages under hookFibIn).
func (t *Tracer) CostHooks() map[uint32]string {
	return map[uint32]string{
		uint32(hookIPOut): "ip_local_out", uint32(hookDevQueue): "dev_queue_xmit", uint32(hookNetifRX): "netif_receive_skb",
		uint32(hookICMPRcv): "icmp_rcv", uint32(hookSendto): "sendto", uint32(hookConsume): "skb_free",
		uint32(hookFibIn): "fib_table_lookup",
	}
}
