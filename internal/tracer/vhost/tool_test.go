package vhost

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/btftest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/vhostdiscover"
)

// TestDecodeEventMatchesBPF checks the hand-written decoder against the
// layout bpf2go generated from struct vh_event.
func TestDecodeEventMatchesBPF(t *testing.T) {
	var in vhostVhEvent
	in.Pp.Ts, in.Pp.Ifindex, in.Pp.Pid, in.Pp.Cpu = 123456789, 7, 4242, 3
	in.Pp.Id, in.Pp.Seq, in.Pp.Hook, in.Pp.Kind, in.Pp.IcmpType = 0xbeef, 513, uint8(KindTunXmit), 1, 8
	copy(in.Pp.Comm[:], []int8{'v', 'h', 'o', 's', 't'})
	copy(in.Pp.Ifname[:], []int8{'v', 'n', 'e', 't', '0'})
	in.Key, in.Key2, in.Tid, in.Aux, in.Method = 0xffff888101000100, 0xffff8881500000b0, 4300, 37, 3
	in.Saddr = binary.NativeEndian.Uint32([]byte{10, 1, 0, 1})
	in.Daddr = binary.NativeEndian.Uint32([]byte{10, 2, 0, 1})
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &in); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != rawEventSize {
		t.Fatalf("struct vh_event is %d bytes, decoder expects %d", buf.Len(), rawEventSize)
	}
	ev, err := DecodeEvent(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Kind: KindTunXmit, TS: 123456789, Key: 0xffff888101000100, Key2: 0xffff8881500000b0, TID: 4300,
		TGID: 4242, CPU: 3, Ifindex: 7, Aux: 37, Method: "raw_tracepoint", Comm: "vhost", Device: "vnet0",
		ICMP: &Identity{Type: 8, ID: 0xbeef, Seq: 513, Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1")}}
	if ev.ICMP == nil || *ev.ICMP != *want.ICMP {
		t.Fatalf("identity %+v, want %+v", ev.ICMP, want.ICMP)
	}
	ev.ICMP, want.ICMP = nil, nil
	if ev != want {
		t.Errorf("decoded %+v\nwant    %+v", ev, want)
	}
	if _, err := DecodeEvent(buf.Bytes()[:50]); err == nil {
		t.Error("short sample decoded")
	}
}

// testTool builds a tool on "lo" (no tun file: discovery fails, so every
// vhost stage stays possible) with module presence faked.
func testTool(t *testing.T, tool string, modules ...string) *Tool {
	t.Helper()
	tl, err := New(Config{Tool: tool, Interface: "lo", ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// Every function and tracepoint "exists": the ladders are tested on
	// fabricated capabilities.
	tl.present, tl.kbtf = nil, nil
	tl.moduleLoaded = func(m string) bool {
		for _, x := range modules {
			if x == m {
				return true
			}
		}
		return false
	}
	return tl
}

// set is a target set of fabricated capabilities.
func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func chosen(t *testing.T, choices []tracer.Choice) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range choices {
		if c.Available {
			out[c.Stage] = string(c.Rung.Method) + ":" + c.Rung.Hooks[0].Target
		} else {
			out[c.Stage] = "unavailable"
		}
	}
	return out
}

func TestLadderSelection(t *testing.T) {
	allTP := set("net_dev_start_xmit", "skb_copy_datagram_iovec", "consume_skb", "kfree_skb", "netif_receive_skb",
		"kvm_apic_accept_irq", "kvm_msi_set_irq", "kvm_set_irq", "sys_enter")
	for _, c := range []struct {
		name string
		tool string
		caps tracer.Capabilities
		want map[string]string
	}{{
		name: "dev machine: tracepoints only, kvm built in, no vhost",
		tool: record.ToolVhostRX,
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Fentry: "attach refused", tracer.Kprobe: "kprobes not supported", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{tracer.RawTracepoint: allTP}},
		want: map[string]string{record.StageTunXmit: "raw_tracepoint:net_dev_start_xmit", record.StageVhostRecv: "raw_tracepoint:skb_copy_datagram_iovec",
			record.StageVhostSignal: "unavailable", record.StageIrqfd: "unavailable", HookEventfd: "unavailable", record.StageKVMIRQ: "raw_tracepoint:kvm_apic_accept_irq"},
	}, {
		name: "hypervisor 6.x: fentry on vmlinux only, kprobes on the modules, Intel",
		tool: record.ToolVhostRX,
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Fentry: "", tracer.Kprobe: "", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{
				tracer.Fentry:        set("eventfd_signal_mask", "__netif_receive_skb"),
				tracer.Kprobe:        set("tun_net_xmit", "tun_recvmsg", "vhost_add_used_and_signal_n", "vhost_signal", "eventfd_signal_mask", "irqfd_wakeup", "vmx_deliver_interrupt", "kvm_arch_set_irq_inatomic"),
				tracer.RawTracepoint: allTP}},
		want: map[string]string{record.StageTunXmit: "kprobe:tun_net_xmit", record.StageVhostRecv: "kprobe:tun_recvmsg",
			record.StageVhostSignal: "kprobe:vhost_add_used_and_signal_n", HookEventfd: "fentry:eventfd_signal_mask",
			record.StageIrqfd: "kprobe:irqfd_wakeup", record.StageKVMIRQ: "kprobe:vmx_deliver_interrupt"},
	}, {
		name: "hypervisor 5.10 (eventfd_signal, AMD, no vmx)",
		tool: record.ToolVhostRX,
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{
				tracer.Kprobe:        set("tun_net_xmit", "eventfd_signal", "irqfd_wakeup", "svm_deliver_interrupt", "vhost_signal"),
				tracer.RawTracepoint: allTP}},
		want: map[string]string{HookEventfd: "kprobe:eventfd_signal", record.StageKVMIRQ: "kprobe:svm_deliver_interrupt",
			record.StageVhostSignal: "kprobe:vhost_signal"},
	}, {
		name: "vhost-tx on a kprobe hypervisor",
		tool: record.ToolVhostTX,
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{
				tracer.Kprobe:        set("ioeventfd_write", "vhost_poll_wakeup", "handle_tx_kick", "tun_sendmsg", "__netif_receive_skb"),
				tracer.RawTracepoint: allTP}},
		want: map[string]string{record.StageKick: "kprobe:ioeventfd_write", HookPollWakeup: "kprobe:vhost_poll_wakeup",
			record.StageHandleTX: "kprobe:handle_tx_kick", record.StageTunSendmsg: "kprobe:tun_sendmsg", record.StageNetifReceive: "kprobe:__netif_receive_skb"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			tl := testTool(t, c.tool)
			choices, err := tracer.Select(tl.Stages(), c.caps, tracer.ProbeAuto)
			if err != nil {
				t.Fatal(err)
			}
			got := chosen(t, choices)
			for stage, want := range c.want {
				if got[stage] != want {
					t.Errorf("%s: %s, want %s", stage, got[stage], want)
				}
			}
		})
	}
}

// TestAbsentFunctionsLeaveNoRung: on a host without KVM a forced kprobe run
// must not fail on the KVM stages; they have no rung and say why.
func TestAbsentFunctionsLeaveNoRung(t *testing.T) {
	tl := testTool(t, record.ToolVhostRX, "vhost")
	tl.present = set("tun_net_xmit", "tun_recvmsg", "vhost_add_used_and_signal_n", "eventfd_signal_mask")
	c := tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "", tracer.RawTracepoint: ""},
		Targets: map[tracer.Method]map[string]bool{tracer.Kprobe: tl.present,
			tracer.RawTracepoint: set("skb_copy_datagram_iovec", "consume_skb", "kfree_skb", "net_dev_start_xmit")}}
	choices, err := tracer.Select(tl.Stages(), c, tracer.ProbeKprobe)
	if err != nil {
		t.Fatalf("forced kprobe on a host without KVM: %v", err)
	}
	got := chosen(t, choices)
	if got[record.StageVhostSignal] != "kprobe:vhost_add_used_and_signal_n" || got[record.StageIrqfd] != "unavailable" || got[record.StageKVMIRQ] != "unavailable" {
		t.Errorf("choices %v", got)
	}
	h := &record.Header{}
	for _, ch := range choices {
		h.Probes = append(h.Probes, ch.Probe())
	}
	tl.Describe(h)
	if p := probeOf(h, record.StageIrqfd); !strings.HasPrefix(p.Reason, "kvm not loaded") {
		t.Errorf("s4 reason %q", p.Reason)
	}
}

// TestFentryUnsafeFallsBackToKprobe: where fentry on irqfd_wakeup would
// never run (Debian 6.12's kvm.ko, kernel.Functions.FentryUnsafe), s4 gets
// its kprobe rung only, with the reason; a forced --probe fentry takes
// fentry elsewhere and the kprobe for s4 instead of failing or attaching a
// program that never fires.
func TestFentryUnsafeFallsBackToKprobe(t *testing.T) {
	tl := testTool(t, record.ToolVhostRX, "vhost", "kvm")
	tl.kbtf = nil // every fentry rung offered, as with BTF for everything
	const why = "fentry on irqfd_wakeup may never run: (test)"
	tl.fentryUnsafe = map[string]string{"irqfd_wakeup": why}
	all := tracer.Targets(tl.Stages())
	fns := set(all[tracer.Kprobe]...)
	c := tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Fentry: "", tracer.Kprobe: "", tracer.RawTracepoint: ""},
		Targets: map[tracer.Method]map[string]bool{tracer.Fentry: set(all[tracer.Fentry]...), tracer.Kprobe: fns,
			tracer.RawTracepoint: set(all[tracer.RawTracepoint]...)}}
	for _, probe := range []string{tracer.ProbeAuto, tracer.ProbeFentry} {
		choices, err := tracer.Select(tl.Stages(), c, probe)
		if err != nil {
			t.Fatalf("--probe %s: %v", probe, err)
		}
		got := chosen(t, choices)
		if got[record.StageIrqfd] != "kprobe:irqfd_wakeup" || got[record.StageVhostSignal] != "fentry:vhost_add_used_and_signal_n" {
			t.Errorf("--probe %s: %v", probe, got)
		}
		for _, ch := range choices {
			if ch.Stage == record.StageIrqfd && !strings.Contains(ch.Reason, why) {
				t.Errorf("--probe %s: s4 reason %q does not say why fentry is not used", probe, ch.Reason)
			}
		}
	}
}

func TestDescribeReasons(t *testing.T) {
	tl := testTool(t, record.ToolVhostRX, "kvm")
	h := &record.Header{Probes: []record.Probe{
		{Stage: record.StageTunXmit, Available: true, Method: "raw_tracepoint"},
		{Stage: record.StageVhostSignal, Reason: "no usable rung: kprobe: kprobes not supported"},
		{Stage: record.StageIrqfd, Reason: "no usable rung: kprobe: kprobes not supported"},
	}}
	tl.Describe(h)
	if r := h.Probes[1].Reason; !strings.HasPrefix(r, "vhost not loaded; ") {
		t.Errorf("s3 reason %q", r)
	}
	if r := h.Probes[2].Reason; strings.Contains(r, "not loaded") {
		t.Errorf("s4 reason %q: kvm is loaded", r)
	}
	if h.Interfaces[0] != "lo" || !strings.HasPrefix(h.Args["discovery"], "failed") {
		t.Errorf("header %+v", h)
	}

	tx := testTool(t, record.ToolVhostTX)
	h = &record.Header{Probes: []record.Probe{
		{Stage: record.StageKick, Reason: "no usable rung"},
		{Stage: HookPollWakeup, Available: true, Method: "kprobe", Target: "vhost_poll_wakeup"},
	}}
	tx.Describe(h)
	if p := h.Probes[0]; !p.Available || p.Target != "vhost_poll_wakeup" || !strings.Contains(p.Reason, "timed where it wakes") {
		t.Errorf("kick without ioeventfd_write: %+v", p)
	}
	h.Probes = []record.Probe{{Stage: record.StageKick, Available: true, Method: "kprobe"}, {Stage: HookPollWakeup, Reason: "no usable rung"}}
	tx.Describe(h)
	if p := h.Probes[0]; p.Available {
		t.Errorf("kick without vhost_poll_wakeup: %+v", p)
	}
}

func TestRawTracepointArgs(t *testing.T) {
	// 6.18 (this machine's vmlinux BTF): kfree_skb(skb, location, reason, rx_sk).
	n := rawTracepointArgs("kfree_skb")
	if n != -1 && n < 3 {
		t.Errorf("kfree_skb: %d args", n)
	}
	if n := rawTracepointArgs("no_such_tracepoint_pp"); n != -1 {
		t.Errorf("unknown tracepoint: %d", n)
	}
}

// TestModuleBTFLadder: on a 6.1 hypervisor with tun, vhost_net and kvm as
// modules with BTF, their functions get fentry rungs (the tracer core finds
// them in /sys/kernel/btf/<module>) and kvm's tracepoints are offered; a
// module without BTF (vhost here) keeps kprobe only.
func TestModuleBTFLadder(t *testing.T) {
	tl := testTool(t, record.ToolVhostRX, "tun", "vhost", "kvm")
	tl.useBTF(kernel.NewBTF(btftest.Spec(t, []string{"eventfd_signal_mask", "__netif_receive_skb"}, []string{"netif_receive_skb"}),
		map[string]*btf.Spec{
			"tun":       btftest.Spec(t, []string{"tun_net_xmit", "tun_recvmsg"}, nil),
			"kvm":       btftest.Spec(t, []string{"irqfd_wakeup", "kvm_arch_set_irq_inatomic"}, []string{"kvm_apic_accept_irq", "kvm_set_irq"}),
			"kvm_intel": btftest.Spec(t, []string{"vmx_deliver_interrupt"}, nil),
		}))
	fentry := set("eventfd_signal_mask", "__netif_receive_skb", "tun_net_xmit", "tun_recvmsg", "irqfd_wakeup", "vmx_deliver_interrupt")
	caps := tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Fentry: "", tracer.Kprobe: "", tracer.RawTracepoint: ""},
		Targets: map[tracer.Method]map[string]bool{
			tracer.Fentry: fentry,
			tracer.Kprobe: set("tun_net_xmit", "tun_recvmsg", "vhost_add_used_and_signal_n", "vhost_signal", "eventfd_signal_mask",
				"irqfd_wakeup", "vmx_deliver_interrupt", "kvm_arch_set_irq_inatomic"),
			tracer.RawTracepoint: set("kvm_apic_accept_irq", "kvm_set_irq", "netif_receive_skb")}}
	for _, probe := range []string{tracer.ProbeAuto, tracer.ProbeFentry} {
		choices, err := tracer.Select(tl.Stages(), caps, probe)
		if err != nil {
			t.Fatalf("--probe %s: %v", probe, err)
		}
		got := chosen(t, choices)
		for stage, want := range map[string]string{record.StageTunXmit: "fentry:tun_net_xmit", record.StageVhostRecv: "fentry:tun_recvmsg",
			record.StageVhostSignal: "kprobe:vhost_add_used_and_signal_n", HookEventfd: "fentry:eventfd_signal_mask",
			record.StageIrqfd: "fentry:irqfd_wakeup", record.StageKVMIRQ: "fentry:vmx_deliver_interrupt"} {
			if got[stage] != want {
				t.Errorf("--probe %s: %s: %s, want %s", probe, stage, got[stage], want)
			}
		}
	}
	// kvm's tracepoints come from the kvm module's BTF.
	var tps []string
	for _, st := range tl.Stages() {
		for _, r := range st.Rungs {
			if r.Method == tracer.RawTracepoint && strings.HasPrefix(r.Hooks[0].Target, "kvm_") {
				tps = append(tps, r.Hooks[0].Target)
			}
		}
	}
	if len(tps) == 0 {
		t.Error("no kvm raw tracepoint rung offered")
	}
}

// Each tool's ladders are its record table's stages in path order, plus the
// correlation-only hooks, which are no record stage.
func TestStagesMatchRecord(t *testing.T) {
	hooks := []string{HookSkbDropped, HookEventfd, HookPollWakeup}
	for _, path := range []*record.Path{record.VhostRX, record.VhostTX} {
		var stages []string
		for _, s := range testTool(t, path.Tool).Stages() {
			switch {
			case path.Index(s.Name) >= 0:
				stages = append(stages, s.Name)
			case !slices.Contains(hooks, s.Name):
				t.Errorf("%s: ladder %q is neither a stage of record.%s nor a correlation hook", path.Tool, s.Name, path.Tool)
			}
		}
		if !slices.Equal(stages, path.Stages) {
			t.Errorf("%s: ladder stages %v, record table %v", path.Tool, stages, path.Stages)
		}
	}
}

// TestKVMTracepointsWithoutModuleBTF: Debian's 5.10 builds no module BTF, so
// the kernel BTF does not declare kvm's tracepoints; tracefs lists them and
// a raw tracepoint attaches by name, so their rungs are still offered (and
// taken by --probe tracepoint) — but not on a host whose tracefs lacks them.
func TestKVMTracepointsWithoutModuleBTF(t *testing.T) {
	kvmTPs := []string{"kvm_apic_accept_irq", "kvm_msi_set_irq", "kvm_set_irq"}
	for _, listed := range []bool{true, false} {
		tl := testTool(t, record.ToolVhostRX, "tun", "vhost", "kvm")
		tl.hasTracepoint = func(tp string) bool { return listed && strings.HasPrefix(tp, "kvm_") }
		tl.useBTF(kernel.NewBTF(btftest.Spec(t, []string{"eventfd_signal"}, []string{"net_dev_start_xmit"}), map[string]*btf.Spec{}))
		var offered []string
		for _, st := range tl.Stages() {
			for _, r := range st.Rungs {
				if r.Method == tracer.RawTracepoint && strings.HasPrefix(r.Hooks[0].Target, "kvm_") {
					offered = append(offered, r.Hooks[0].Target)
				}
			}
		}
		if !listed {
			if len(offered) != 0 {
				t.Errorf("tracefs without kvm tracepoints: offered %v", offered)
			}
			continue
		}
		if strings.Join(offered, ",") != strings.Join(kvmTPs, ",") {
			t.Errorf("offered %v, want %v", offered, kvmTPs)
		}
		caps := tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Fentry: "", tracer.Kprobe: "", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{
				tracer.Kprobe:        set("tun_net_xmit", "irqfd_wakeup", "svm_deliver_interrupt", "kvm_arch_set_irq_inatomic"),
				tracer.RawTracepoint: set(append([]string{"net_dev_start_xmit", "consume_skb", "kfree_skb"}, kvmTPs...)...)}}
		choices, err := tracer.Select(tl.Stages(), caps, tracer.ProbeTracepoint)
		if err != nil {
			t.Fatal(err)
		}
		if got := chosen(t, choices)[record.StageKVMIRQ]; got != "raw_tracepoint:kvm_apic_accept_irq" {
			t.Errorf("--probe tracepoint: s5 %s, want raw_tracepoint:kvm_apic_accept_irq", got)
		}
	}
}

// TestArmWindow: DefaultArmWindow is the BPF object's own vh_arm_ns, and a
// Config.ArmWindow replaces it in the spec the tracer loads.
func TestArmWindow(t *testing.T) {
	for _, c := range []struct {
		set  time.Duration
		want uint64
	}{{0, uint64(DefaultArmWindow.Nanoseconds())}, {500 * time.Millisecond, 500_000_000}} {
		tl := &Tool{cfg: Config{ArmWindow: c.set}, discErr: errors.New("no discovery in this test")}
		var got uint64
		specConstant(t, tl, "vh_arm_ns", &got)
		if got != c.want {
			t.Errorf("ArmWindow %s: vh_arm_ns %d, want %d", c.set, got, c.want)
		}
	}
}

// specConstant reads the constant name of tl's BPF spec into v and returns
// the spec.
func specConstant(t *testing.T, tl *Tool, name string, v any) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := tl.Spec(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables[name].Get(v); err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return spec
}

// TestWatchedWorkers: vhost-tx follows kernel-thread workers (before 6.4)
// by tid, and only then does the BPF side look up watch_tasks
// (vh_watching); 6.4+ workers are the owner's threads, and vhost-rx never
// watches.
func TestWatchedWorkers(t *testing.T) {
	for _, c := range []struct {
		name     string
		tool     string
		workers  []vhostdiscover.Worker
		watching uint8
		watched  int
	}{
		{"vhost-tx, kernel-thread workers", record.ToolVhostTX, []vhostdiscover.Worker{{TID: 7, Kernel: true}, {TID: 8, Kernel: true}}, 1, 2},
		{"vhost-tx, workers of the owner (6.4+)", record.ToolVhostTX, []vhostdiscover.Worker{{TID: 101}}, 0, 0},
		{"vhost-rx, kernel-thread workers", record.ToolVhostRX, []vhostdiscover.Worker{{TID: 7, Kernel: true}}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl := &Tool{cfg: Config{Tool: c.tool}, disc: &vhostdiscover.Result{OwnerPID: 100,
				TunFiles: []vhostdiscover.TunFile{{PID: 100, FD: 5}}, Workers: c.workers}}
			var watching uint8
			spec := specConstant(t, tl, "vh_watching", &watching)
			if watching != c.watching {
				t.Errorf("vh_watching %d, want %d", watching, c.watching)
			}
			if n := len(spec.Maps["watch_tasks"].Contents); n != c.watched {
				t.Errorf("watch_tasks has %d entries, want %d", n, c.watched)
			}
		})
	}
}

// TestConsumeOnlyAsLastS2: consume_skb runs for every skb the host
// consumes, so it is attached only as S2 itself, on a kernel without the
// copy tracepoint; S2 forgets the skb on every rung (vhost-net's
// tun_recvmsg, the copy in tun_put_user).
func TestConsumeOnlyAsLastS2(t *testing.T) {
	allTP := set("net_dev_start_xmit", "skb_copy_datagram_iovec", "consume_skb", "kfree_skb")
	for _, c := range []struct {
		name    string
		caps    tracer.Capabilities
		s2      string
		consume bool
	}{{
		name: "vhost-net, tun_recvmsg by kprobe",
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{tracer.Kprobe: set("tun_net_xmit", "tun_recvmsg"), tracer.RawTracepoint: allTP}},
		s2: "kprobe:tun_recvmsg",
	}, {
		name: "no kprobes: the copy tracepoint",
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "kprobes not supported", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{tracer.RawTracepoint: allTP}},
		s2: "raw_tracepoint:skb_copy_datagram_iovec",
	}, {
		name: "no copy tracepoint: consume_skb as S2",
		caps: tracer.Capabilities{Methods: map[tracer.Method]string{tracer.Kprobe: "kprobes not supported", tracer.RawTracepoint: ""},
			Targets: map[tracer.Method]map[string]bool{tracer.RawTracepoint: set("net_dev_start_xmit", "consume_skb", "kfree_skb")}},
		s2: "raw_tracepoint:consume_skb", consume: true,
	}} {
		t.Run(c.name, func(t *testing.T) {
			choices, err := tracer.Select(testTool(t, record.ToolVhostRX, "vhost").Stages(), c.caps, tracer.ProbeAuto)
			if err != nil {
				t.Fatal(err)
			}
			if got := chosen(t, choices)[record.StageVhostRecv]; got != c.s2 {
				t.Errorf("s2: %s, want %s", got, c.s2)
			}
			consume := false
			for _, ch := range choices {
				for _, h := range ch.Rung.Hooks {
					if ch.Available && h.Target == "consume_skb" {
						consume = true
					}
				}
			}
			if consume != c.consume {
				t.Errorf("consume_skb attached: %v, want %v (choices %+v)", consume, c.consume, choices)
			}
		})
	}
}
