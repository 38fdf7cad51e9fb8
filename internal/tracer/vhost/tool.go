package vhost

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/dropreason"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/vhostdiscover"
)

// Correlation-only hooks: attached like stages (they appear in the header's
// probes) but they are not record stages.
const (
	HookSkbDropped = "skb_dropped" // kfree_skb of a tracked skb (drop records with a reason)
	HookEventfd    = "eventfd"     // eventfd_signal(_mask): the eventfd ctx of a chain
	HookPollWakeup = "poll_wakeup" // vhost_poll_wakeup: ties a kick to the vhost work it queues
)

// Config configures one vhost tracer.
type Config struct {
	// Tool is record.ToolVhostRX or record.ToolVhostTX.
	Tool string
	// Interface is the vnet (tap) device of the VM, in this namespace.
	Interface string
	// SrcIP/DstIP: the pinging VM and the pinged VM (either may be invalid
	// for "any"). Requests go Src→Dst, replies Dst→Src.
	SrcIP, DstIP netip.Addr
	// ProcRoot is where /proc is ("/proc" when empty).
	ProcRoot string
	// Timeout finishes a vhost-rx chain this long after its last event (2 s).
	Timeout time.Duration
	// BTF is the kernel BTF file (tracer.Options.BTF), "" for the kernel's.
	BTF string
	// ArmWindow is how long a task that took a traced packet stays armed
	// (0: DefaultArmWindow): the kernel reports its vhost signal, eventfd,
	// irqfd and injection only within this of its last take. A worker
	// paused longer between taking a packet and signalling it (a
	// preempted host vCPU) has that signal go unseen, and the chain takes
	// the worker's next one.
	ArmWindow time.Duration
}

// DefaultArmWindow is the BPF object's vh_arm_ns: long next to a vhost
// worker's recvmsg → add_used on real hosts (microseconds), short enough
// that a worker's unrelated signals are not reported for long.
const DefaultArmWindow = 50 * time.Millisecond

// Tool is the vhost-rx or vhost-tx tracer for the tracer core (tracer.Run).
type Tool struct {
	cfg     Config
	ifindex int
	netns   uint64
	disc    *vhostdiscover.Result
	discErr error
	// vhostUsed: the owner has /dev/vhost-net open (or discovery failed and
	// we cannot tell): the kernel vhost stages can happen.
	vhostUsed bool
	disabled  map[string]string // stage → why it cannot happen for this interface
	// moduleLoaded reports whether a kernel module is loaded (tests replace it).
	moduleLoaded func(string) bool
	// hasTracepoint reports whether tracefs lists a tracepoint of this name
	// in any group (kernel.HasTracepointAnyGroup; tests replace it).
	hasTracepoint func(string) bool
	// present says which kernel functions exist (nil: unknown, offer every
	// rung). Rungs on absent functions are left out of the ladder, so that a
	// forced --probe kprobe does not fail on a host without KVM or vhost:
	// those stages become unavailable instead.
	present map[string]bool
	// fentryUnsafe: functions whose fentry program may never run here
	// (kernel.Functions.FentryUnsafe, e.g. kvm's irqfd_wakeup on Debian
	// 6.12), with the reason. They get their kprobe rung only, so that a
	// forced --probe fentry falls back for that stage instead of failing.
	fentryUnsafe map[string]string
	// kbtf is the kernel's BTF (vmlinux and the modules defining our
	// targets), nil when unknown. fentry rungs and raw tracepoint rungs are
	// offered only for what it describes, as the tracer core looks targets
	// up the same way: a forced --probe must not fail on a stage whose
	// module has no BTF or is not loaded; that stage falls back to kprobe.
	kbtf *kernel.BTF
	// kfreeNoReason: this kernel's kfree_skb tracepoint has no reason
	// argument (before 5.17). Looked up once in New, in the BTF New loads
	// anyway: a kernel BTF load takes ~20 ms and Stages runs several times.
	kfreeNoReason bool
	corr          *Correlator
}

// New checks the interface and discovers what is behind it.
func New(cfg Config) (*Tool, error) {
	if cfg.Tool != record.ToolVhostRX && cfg.Tool != record.ToolVhostTX {
		return nil, tracer.Usage("unknown vhost tool %q", cfg.Tool)
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	for _, a := range []netip.Addr{cfg.SrcIP, cfg.DstIP} {
		if a.IsValid() && !a.Is4() {
			return nil, tracer.Usage("address %s: only IPv4 is supported", a)
		}
	}
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, tracer.Usage("--vm-interface %q: %w", cfg.Interface, err)
	}
	t := &Tool{cfg: cfg, ifindex: ifc.Index, disabled: map[string]string{}, moduleLoaded: moduleLoaded, hasTracepoint: kernel.HasTracepointAnyGroup}
	if t.netns, err = kernel.NetnsInode(); err != nil {
		return nil, err
	}
	t.disc, t.discErr = vhostdiscover.Discover(cfg.ProcRoot, cfg.Interface, t.netns)
	t.vhostUsed = t.discErr != nil || t.disc.OwnerPID == 0 || t.disc.VhostNet > 0
	if !t.vhostUsed {
		why := fmt.Sprintf("%s is served by a user space backend (pid %d %s has no /dev/vhost-net open): no vhost worker, eventfd or irqfd on this path",
			cfg.Interface, t.disc.OwnerPID, t.disc.OwnerComm)
		for _, s := range []string{record.StageVhostSignal, record.StageIrqfd, record.StageKVMIRQ, HookEventfd, record.StageKick, HookPollWakeup, record.StageHandleTX} {
			t.disabled[s] = why
		}
	}
	// Last: the ladders depend on what discovery found.
	kb, err := kernel.LoadBTF(cfg.BTF)
	if cfg.Tool == record.ToolVhostRX && err == nil {
		n := rawTracepointArgsIn(kb.Spec(), "kfree_skb")
		t.kfreeNoReason = n >= 0 && n < 3
	}
	all := tracer.Targets(t.Stages())
	if err == nil {
		t.useBTF(kb)
	}
	if fns, err := kernel.ScanFunctions(all[tracer.Kprobe]); err == nil {
		t.present = fns.Traceable
		t.fentryUnsafe = fns.FentryUnsafe
	}
	return t, nil
}

// useBTF makes kb the kernel BTF the ladders follow, after looking every
// fentry function and raw tracepoint the ladders may use up in module BTF.
func (t *Tool) useBTF(kb *kernel.BTF) {
	t.kbtf = nil // Stages offers every rung
	all := tracer.Targets(t.Stages())
	tps := append(append([]string(nil), all[tracer.RawTracepoint]...), all[tracer.TpBTF]...)
	_ = kb.FindInModules(all[tracer.Fentry], tps) // on error: vmlinux only
	t.kbtf = kb
}

// Discovery returns what was found behind the interface (nil and the error
// when discovery failed).
func (t *Tool) Discovery() (*vhostdiscover.Result, error) { return t.disc, t.discErr }

// Name implements tracer.Tool.
func (t *Tool) Name() string { return t.cfg.Tool }

func rung(m tracer.Method, target, prog, note string) tracer.Rung {
	return tracer.Rung{Method: m, Hooks: []tracer.Hook{{Target: target, Program: prog}}, Note: note}
}

// fnRungs is the fentry → kprobe pair for a kernel function, none when the
// function is not in this kernel, the kprobe alone when fentry cannot serve.
func (t *Tool) fnRungs(target, fentryProg, kprobeProg, note string) []tracer.Rung {
	if t.present != nil && !t.present[target] {
		return nil
	}
	if why := t.fentryUnsafe[target]; why != "" {
		if note != "" {
			why = note + "; " + why
		}
		return []tracer.Rung{rung(tracer.Kprobe, target, kprobeProg, why)}
	}
	kp := rung(tracer.Kprobe, target, kprobeProg, note)
	if t.kbtf != nil && !t.kbtf.HasFunc(target) {
		return []tracer.Rung{kp}
	}
	return []tracer.Rung{rung(tracer.Fentry, target, fentryProg, note), kp}
}

// typedBeforeKprobe puts typed, the tp_btf rung of the tracepoint at the
// same instant as a function's rungs (fentry → kprobe), before the kprobe: it
// reads like fentry and costs far less than a kprobe where fentry cannot
// attach (no trampolines: arm64 before 6.0, some distribution kernels).
func typedBeforeKprobe(fn []tracer.Rung, typed tracer.Rung) []tracer.Rung {
	i := slices.IndexFunc(fn, func(r tracer.Rung) bool { return r.Method == tracer.Kprobe })
	if i < 0 {
		i = len(fn)
	}
	return slices.Insert(slices.Clone(fn), i, typed)
}

// tpRungs keeps the raw tracepoint rungs whose tracepoint exists: the
// kernel BTF declares it (vmlinux, or a loaded module's BTF for kvm's
// tracepoints when KVM is a module), or tracefs lists it. A raw tracepoint
// attaches by name without BTF, so kvm's are offered where kvm has no module
// BTF (Debian's 5.10 builds none) too.
func (t *Tool) tpRungs(rs ...tracer.Rung) []tracer.Rung {
	var out []tracer.Rung
	for _, r := range rs {
		tp := r.Hooks[0].Target
		if t.kbtf == nil || t.kbtf.HasRawTracepoint(tp) || t.hasTracepoint(tp) {
			out = append(out, r)
		}
	}
	return out
}

// ownerFDs says whether the write(2) rung can be filtered: the owner and its
// tun fds are known.
func (t *Tool) ownerFDs() bool {
	return t.discErr == nil && t.disc.OwnerPID != 0 && len(t.disc.TunFiles) > 0
}

// Stages implements tracer.Tool: every stage's ladder, best rung first.
func (t *Tool) Stages() []tracer.Stage {
	var st []tracer.Stage
	add := func(name string, required bool, rungs ...[]tracer.Rung) {
		s := tracer.Stage{Name: name, Required: required}
		if _, off := t.disabled[name]; !off {
			for _, r := range rungs {
				s.Rungs = append(s.Rungs, r...)
			}
		}
		st = append(st, s)
	}
	R := tracer.RawTracepoint
	if t.cfg.Tool == record.ToolVhostRX {
		xmitNote := "net:net_dev_start_xmit on the vnet, right before tun_net_xmit"
		add(record.StageTunXmit, true,
			typedBeforeKprobe(t.fnRungs("tun_net_xmit", vhostProgS1Fentry, vhostProgS1Kprobe, ""), rung(tracer.TpBTF, "net_dev_start_xmit", vhostProgS1Btf, xmitNote)),
			[]tracer.Rung{rung(R, "net_dev_start_xmit", vhostProgS1Tp, xmitNote)})
		var s2 [][]tracer.Rung
		if t.vhostUsed {
			s2 = append(s2, t.fnRungs("tun_recvmsg", vhostProgS2Fentry, vhostProgS2Kprobe, "vhost-net handle_rx takes the skb from the tun ring"))
		}
		// S2 ends a traced skb's tracking on every rung (tun frees the skbs
		// it never hands out with kfree_skb, which skb_dropped sees), so
		// consume_skb, which runs for every skb the host consumes, is
		// attached only as S2 of last resort, on kernels without the copy
		// tracepoint.
		s2 = append(s2, []tracer.Rung{
			rung(R, "skb_copy_datagram_iovec", vhostProgS2Tp, "skb:skb_copy_datagram_iovec in tun_put_user, in the task that reads the tun queue (vhost worker or user space backend)"),
			rung(R, "consume_skb", vhostProgSkbConsumed, "skb:consume_skb of the skb once the reader copied it"),
		})
		add(record.StageVhostRecv, false, s2...)
		dropProg, dropNote := vhostProgSkbDropped, "a traced skb dropped, with the kernel's reason"
		if t.kfreeNoReason {
			dropProg, dropNote = vhostProgSkbDroppedNoreason, "a traced skb dropped (this kernel's kfree_skb has no reason)"
		}
		add(HookSkbDropped, false, []tracer.Rung{rung(R, "kfree_skb", dropProg, dropNote)})
		add(record.StageVhostSignal, false, t.fnRungs("vhost_add_used_and_signal_n", vhostProgS3Fentry, vhostProgS3Kprobe, ""),
			t.fnRungs("vhost_signal", vhostProgS3Fentry, vhostProgS3Kprobe, ""))
		add(HookEventfd, false, t.fnRungs("eventfd_signal_mask", vhostProgEventfdFentry, vhostProgEventfdKprobe, "6.8+ (and 6.3+ inner function)"),
			t.fnRungs("eventfd_signal", vhostProgEventfdFentry, vhostProgEventfdKprobe, "before 6.8"))
		add(record.StageIrqfd, false, t.fnRungs("irqfd_wakeup", vhostProgS4Fentry, vhostProgS4Kprobe, ""))
		add(record.StageKVMIRQ, false,
			t.fnRungs("vmx_deliver_posted_interrupt", vhostProgS5Vec2Fentry, vhostProgS5Vec2Kprobe, "Intel posted interrupt"),
			t.fnRungs("vmx_deliver_interrupt", vhostProgS5Vec4Fentry, vhostProgS5Vec4Kprobe, "Intel"),
			t.fnRungs("svm_deliver_interrupt", vhostProgS5Vec4Fentry, vhostProgS5Vec4Kprobe, "AMD"),
			t.tpRungs(
				rung(R, "kvm_apic_accept_irq", vhostProgS5TpApic, "kvm:kvm_apic_accept_irq (vector accepted by the vcpu's APIC)"),
				rung(R, "kvm_msi_set_irq", vhostProgS5TpMsi, "kvm:kvm_msi_set_irq"),
				rung(R, "kvm_set_irq", vhostProgS5TpSetIrq, "kvm:kvm_set_irq (irqfd_inject from a kworker)"),
			),
			t.fnRungs("kvm_arch_set_irq_inatomic", vhostProgS5Arg1Fentry, vhostProgS5Arg1Kprobe, "start of the irqfd fast path injection"))
		return st
	}
	add(record.StageKick, false, t.fnRungs("ioeventfd_write", vhostProgKickFentry, vhostProgKickKprobe, "guest notification (KVM ioeventfd); without it the kick is timed at vhost_poll_wakeup"))
	add(HookPollWakeup, false, t.fnRungs("vhost_poll_wakeup", vhostProgWakeupFentry, vhostProgWakeupKprobe, "a kick wakes the vhost work (ties the kick to the TX queue)"))
	add(record.StageHandleTX, false, t.fnRungs("handle_tx_kick", vhostProgHandleTxFentry, vhostProgHandleTxKprobe, ""))
	var sm [][]tracer.Rung
	if t.vhostUsed {
		sm = append(sm, t.fnRungs("tun_sendmsg", vhostProgSendmsgFentry, vhostProgSendmsgKprobe, "vhost-net hands a packet to tun"))
	}
	// A vhost-net backend never write(2)s packets to the tap: the write
	// rungs are for user space backends only.
	if t.ownerFDs() && !t.vhostUsed {
		note := fmt.Sprintf("write(2)/writev(2) by pid %d on the tun fd (tun_get_user runs inside)", t.disc.OwnerPID)
		sm = append(sm, []tracer.Rung{
			{Method: tracer.Tracepoint, Note: note, Hooks: []tracer.Hook{
				{Target: "syscalls/sys_enter_write", Program: vhostProgSendmsgTpWrite},
				{Target: "syscalls/sys_enter_writev", Program: vhostProgSendmsgTpWrite}}},
			rung(R, "sys_enter", vhostProgSendmsgTp, note+"; raw_syscalls:sys_enter sees every system call"),
		})
	}
	add(record.StageTunSendmsg, false, sm...)
	rxNote := "net:netif_receive_skb on the vnet"
	add(record.StageNetifReceive, true,
		typedBeforeKprobe(t.fnRungs("__netif_receive_skb", vhostProgNetifFentry, vhostProgNetifKprobe, ""), rung(tracer.TpBTF, "netif_receive_skb", vhostProgNetifBtf, rxNote)),
		[]tracer.Rung{rung(R, "netif_receive_skb", vhostProgNetifTp, rxNote)})
	return st
}

// Filter implements tracer.Tool.
func (t *Tool) Filter() tracer.Filter {
	return tracer.Filter{SrcIP: t.cfg.SrcIP, DstIP: t.cfg.DstIP, Netns: t.netns, Ifindexes: []uint32{uint32(t.ifindex)}}
}

// Spec implements tracer.Tool: the BPF object with the owner, its tun fds
// and its kernel-thread vhost workers filled in.
func (t *Tool) Spec(_ []tracer.Choice) (*ebpf.CollectionSpec, error) {
	spec, err := loadVhost()
	if err != nil {
		return nil, err
	}
	var obj vhostSpecs
	if err := spec.Assign(&obj); err != nil {
		return nil, fmt.Errorf("reading the vhost BPF object: %w", err)
	}
	// The constants to set, in order.
	type constant struct {
		v   *ebpf.VariableSpec
		val any
	}
	vars := []constant{{obj.VhSysWrite, uint32(unix.SYS_WRITE)}, {obj.VhSysWritev, uint32(unix.SYS_WRITEV)}}
	if w := t.cfg.ArmWindow; w > 0 {
		vars = append(vars, constant{obj.VhArmNs, uint64(w.Nanoseconds())})
	}
	if !t.vhostUsed {
		// No vhost worker will signal: skip arming the reader's task (an
		// LRU map update per packet).
		vars = append(vars, constant{obj.VhArm, uint8(0)})
	}
	if t.ownerFDs() {
		vars = append(vars, constant{obj.VhQemuTgid, uint32(t.disc.OwnerPID)})
		var kvs []ebpf.MapKV
		for _, f := range t.disc.TunFiles {
			if f.PID == t.disc.OwnerPID {
				kvs = append(kvs, ebpf.MapKV{Key: uint64(f.PID)<<32 | uint64(f.FD), Value: uint8(1)})
			}
		}
		obj.TunFds.Contents = kvs
		// Kernel-thread workers (before 6.4) are not in QEMU's thread
		// group; vhost-tx follows them by tid.
		if t.cfg.Tool == record.ToolVhostTX {
			var ws []ebpf.MapKV
			for _, w := range t.disc.Workers {
				if w.Kernel {
					ws = append(ws, ebpf.MapKV{Key: uint32(w.TID), Value: uint8(1)})
				}
			}
			obj.WatchTasks.Contents = ws
			if len(ws) > 0 {
				vars = append(vars, constant{obj.VhWatching, uint8(1)})
			}
		}
	}
	for _, x := range vars {
		if err := x.v.Set(x.val); err != nil {
			return nil, fmt.Errorf("setting %s: %w", x.v.Name, err)
		}
	}
	return spec, nil
}

// moduleOf names the kernel module a hook target lives in, for the reason
// of an unavailable stage.
var moduleOf = map[string]string{
	record.StageVhostSignal: "vhost", record.StageIrqfd: "kvm", record.StageKVMIRQ: "kvm", HookEventfd: "",
	record.StageKick: "kvm", HookPollWakeup: "vhost", record.StageHandleTX: "vhost_net", record.StageTunSendmsg: "tun",
	record.StageTunXmit: "tun", record.StageVhostRecv: "tun",
}

// Describe implements tracer.Tool: header fields, and reasons that say
// plainly why a stage cannot be seen here.
func (t *Tool) Describe(h *record.Header) {
	h.Interfaces = []string{t.cfg.Interface}
	if t.cfg.SrcIP.IsValid() {
		h.SrcIP = t.cfg.SrcIP.String()
	}
	if t.cfg.DstIP.IsValid() {
		h.DstIP = t.cfg.DstIP.String()
	}
	h.Role = "auto" // per packet: request or reply
	if h.Args == nil {
		h.Args = map[string]string{}
	}
	if t.discErr != nil {
		h.Args["discovery"] = "failed: " + t.discErr.Error()
	} else {
		h.Args["discovery"] = t.disc.Summary()
	}
	for i := range h.Probes {
		p := &h.Probes[i]
		if p.Available {
			continue
		}
		if why, ok := t.disabled[p.Stage]; ok {
			p.Reason = why
			continue
		}
		mod := moduleOf[p.Stage]
		switch {
		case mod != "" && !t.moduleLoaded(mod):
			p.Reason = mod + " not loaded; " + p.Reason
		case strings.Contains(p.Reason, "not observable on any attach method"):
			p.Reason = "none of its kernel functions exists in this kernel"
		}
	}
	if t.cfg.Tool != record.ToolVhostTX {
		return
	}
	// The kick is known through the poll wake-up: without it there is
	// none; with it but without ioeventfd_write, it is timed there.
	wake := probeAvailable(h.Probes, HookPollWakeup)
	for i := range h.Probes {
		p := &h.Probes[i]
		if p.Stage != record.StageKick {
			continue
		}
		switch {
		case !wake:
			p.Available, p.Method, p.Target = false, "", ""
			p.Reason = "vhost_poll_wakeup cannot be traced, so a kick cannot be tied to the TX queue; " + p.Reason
		case !p.Available:
			p.Available, p.Method, p.Target = true, probeMethod(h.Probes, HookPollWakeup), "vhost_poll_wakeup"
			p.Reason = "ioeventfd_write unavailable (" + p.Reason + "): the kick is timed where it wakes the vhost work"
		}
	}
}

// rawTracepointArgs returns how many arguments raw tracepoint name passes on
// this kernel (its btf_trace_<name> typedef, minus the leading data
// pointer), or -1 when unknown.
func rawTracepointArgs(name string) int {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return -1
	}
	return rawTracepointArgsIn(spec, name)
}

// rawTracepointArgsIn is rawTracepointArgs in the kernel BTF spec.
func rawTracepointArgsIn(spec *btf.Spec, name string) int {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return -1
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return -1
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return -1
	}
	return len(proto.Params) - 1
}

func probeMethod(ps []record.Probe, stage string) string {
	for _, p := range ps {
		if p.Stage == stage {
			return p.Method
		}
	}
	return ""
}

func probeAvailable(ps []record.Probe, stage string) bool {
	for _, p := range ps {
		if p.Stage == stage {
			return p.Available
		}
	}
	return false
}

func moduleLoaded(mod string) bool {
	_, err := os.Stat("/sys/module/" + mod)
	return err == nil
}

// Start implements tracer.Tool.
func (t *Tool) Start(choices []tracer.Choice, out tracer.Sink) error {
	avail := map[string]bool{}
	s2Target := ""
	for _, c := range choices {
		avail[c.Stage] = c.Available
		if c.Stage == record.StageVhostRecv && c.Available {
			s2Target = c.Rung.Hooks[0].Target
		}
	}
	if t.cfg.Tool == record.ToolVhostRX {
		cfg := RXConfig{Available: avail, Device: t.cfg.Interface, Timeout: uint64(t.cfg.Timeout),
			S2FromConsume: s2Target == "consume_skb"}
		if names, err := dropreason.Load(nil); err == nil {
			cfg.DropReason = names.Name
		}
		t.corr = NewRXCorrelator(cfg, out)
		return nil
	}
	// Kicks are known through the poll wake-up (see Describe).
	avail[record.StageKick] = avail[HookPollWakeup]
	t.corr = NewTXCorrelator(TXConfig{Available: avail, Device: t.cfg.Interface}, out)
	return nil
}

// Event implements tracer.Tool.
func (t *Tool) Event(raw []byte) error {
	ev, err := DecodeEvent(raw)
	if err != nil {
		return err
	}
	t.corr.Add(ev)
	return t.corr.Err()
}

// Tick implements tracer.Tool.
func (t *Tool) Tick(now uint64) { t.corr.Tick(now) }

// Finish implements tracer.Tool.
func (t *Tool) Finish() map[string]uint64 {
	t.corr.Flush(kernel.MonotonicNS())
	out := map[string]uint64{}
	for k, v := range t.corr.Counters() {
		out[k] = v
	}
	delete(out, "events") // the core counts ring buffer events itself
	out["correlated_events"] = t.corr.Counters()["events"]
	return out
}

// CostHooks implements tracer.CostHooks: the BPF programs account their runs
// under the kind of event they report.
func (t *Tool) CostHooks() map[uint32]string {
	out := map[uint32]string{}
	for k, name := range kindNames {
		out[uint32(k)] = name
	}
	return out
}
