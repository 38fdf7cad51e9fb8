package tracer

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/btftest"
)

// A function of a module with BTF (tun_net_xmit with tun a module) is an
// fentry target, and auto selection takes fentry for it; a function of a
// module without BTF stays on kprobe.
func TestModuleFunctionsGetFentry(t *testing.T) {
	kb := kernel.NewBTF(btftest.Spec(t, []string{"__netif_receive_skb"}, nil), map[string]*btf.Spec{
		"tun": btftest.Spec(t, []string{"tun_net_xmit"}, nil),
	})
	stage := func(name, fn string) Stage {
		return Stage{Name: name, Rungs: []Rung{
			{Method: Fentry, Hooks: []Hook{{Target: fn, Program: "f_" + fn}}},
			{Method: Kprobe, Hooks: []Hook{{Target: fn, Program: "k_" + fn}}},
		}}
	}
	stages := []Stage{stage("xmit", "tun_net_xmit"), stage("recv", "__netif_receive_skb"), stage("nobtf", "handle_tx_kick")}
	var probedOn string
	caps := probeCapabilities(stages, kb, nil, kernelSupport{fentry: func(fn string) error { probedOn = fn; return nil }, functions: noFunctionList})
	if probedOn == "" || caps.Methods[Fentry] != "" {
		t.Fatalf("fentry not probed (%q): %q", probedOn, caps.Methods[Fentry])
	}
	for fn, want := range map[string]bool{"tun_net_xmit": true, "__netif_receive_skb": true, "handle_tx_kick": false} {
		if caps.Targets[Fentry][fn] != want {
			t.Errorf("fentry target %s: %v, want %v", fn, caps.Targets[Fentry][fn], want)
		}
	}
	// The kprobe part of caps is this machine's: fabricate it for selection.
	caps.Methods[Kprobe] = ""
	caps.Targets[Kprobe] = map[string]bool{"tun_net_xmit": true, "__netif_receive_skb": true, "handle_tx_kick": true}
	choices, err := Select(stages, caps, ProbeAuto)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Method{Fentry, Fentry, Kprobe} {
		if got := choices[i].Rung.Method; got != want {
			t.Errorf("%s: %s, want %s (%s)", choices[i].Stage, got, want, choices[i].Reason)
		}
	}
}

// A tracepoint the kernel's BTF types (btf_trace_<name>, vmlinux or a
// module's) gets the tp_btf rung, checked by a real attach (fabricated
// here), and auto prefers it to the untyped raw tracepoint; a tracepoint
// without BTF, or a kernel without BTF, keeps the raw tracepoint.
func TestTypedTracepointsPreferred(t *testing.T) {
	kb := kernel.NewBTF(btftest.Spec(t, nil, []string{"netif_receive_skb"}), map[string]*btf.Spec{
		"kvm": btftest.Spec(t, nil, []string{"kvm_msi_set_irq"}),
	})
	stage := func(tp string) Stage {
		return Stage{Name: tp, Rungs: []Rung{
			{Method: TpBTF, Hooks: []Hook{{Target: tp, Program: "btf_" + tp}}},
			{Method: RawTracepoint, Hooks: []Hook{{Target: tp, Program: "tp_" + tp}}},
		}}
	}
	stages := []Stage{stage("netif_receive_skb"), stage("kvm_msi_set_irq"), stage("no_btf_tp")}
	var probedOn string
	caps := probeCapabilities(stages, kb, nil, kernelSupport{tpBTF: func(tp string) error { probedOn = tp; return nil }, functions: noFunctionList})
	if probedOn == "" || caps.Methods[TpBTF] != "" {
		t.Fatalf("tp_btf not probed (%q): %q", probedOn, caps.Methods[TpBTF])
	}
	// The raw tracepoint part is this machine's: fabricate it.
	caps.Methods[RawTracepoint] = ""
	caps.Targets[RawTracepoint] = map[string]bool{"netif_receive_skb": true, "kvm_msi_set_irq": true, "no_btf_tp": true}
	choices, err := Select(stages, caps, ProbeAuto)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Method{TpBTF, TpBTF, RawTracepoint} {
		if got := choices[i].Rung.Method; got != want {
			t.Errorf("%s: %s, want %s (%s)", choices[i].Stage, got, want, choices[i].Reason)
		}
	}
	// --probe tracepoint keeps the untyped rung; --probe tp_btf fails where
	// a tp_btf rung exists but the tracepoint has no BTF.
	if choices, err = Select(stages[:2], caps, ProbeTracepoint); err != nil || choices[0].Rung.Method != RawTracepoint {
		t.Errorf("--probe tracepoint: %v %+v", err, choices)
	}
	if _, err := Select(stages, caps, ProbeTpBTF); err == nil {
		t.Error("--probe tp_btf on a tracepoint without BTF: no error")
	}

	// No kernel BTF: tp_btf is unusable with the reason, never probed.
	caps = probeCapabilities(stages, nil, errors.New("no /sys/kernel/btf/vmlinux"), kernelSupport{functions: noFunctionList, tpBTF: func(string) error {
		t.Error("tp_btf probed without kernel BTF")
		return nil
	}})
	if caps.Methods[TpBTF] == "" {
		t.Error("tp_btf usable without kernel BTF")
	}
}

// noFunctionList stands for a kernel whose function list says nothing.
func noFunctionList([]string) (kernel.Functions, error) { return kernel.Functions{}, nil }

// A function whose fentry program would never run (its symbol spans dead
// ftrace sites: kvm's irqfd_wakeup on Debian 6.12) is no fentry target: auto
// takes its kprobe rung and says why, and a forced --probe fentry refuses
// rather than attach a program that never fires.
func TestFentryUnsafeTargetUsesKprobe(t *testing.T) {
	kb := kernel.NewBTF(btftest.Spec(t, []string{"irqfd_wakeup", "irqfd_inject"}, nil), nil)
	stage := func(fn string) Stage {
		return Stage{Name: fn, Rungs: []Rung{
			{Method: Fentry, Hooks: []Hook{{Target: fn, Program: "f_" + fn}}},
			{Method: Kprobe, Hooks: []Hook{{Target: fn, Program: "k_" + fn}}},
		}}
	}
	stages := []Stage{stage("irqfd_wakeup"), stage("irqfd_inject")}
	const why = "fentry on irqfd_wakeup may never run"
	var probedOn string
	caps := probeCapabilities(stages, kb, nil, kernelSupport{
		fentry: func(fn string) error { probedOn = fn; return nil },
		functions: func(names []string) (kernel.Functions, error) {
			fs := kernel.Functions{Traceable: map[string]bool{}, FentryUnsafe: map[string]string{"irqfd_wakeup": why}}
			for _, n := range names {
				fs.Traceable[n] = true
			}
			return fs, nil
		},
	})
	if probedOn != "irqfd_inject" {
		t.Errorf("trampoline support probed on %q, want irqfd_inject (a target that can work)", probedOn)
	}
	if caps.Targets[Fentry]["irqfd_wakeup"] || !caps.Targets[Fentry]["irqfd_inject"] {
		t.Errorf("fentry targets %v: want irqfd_inject only", caps.Targets[Fentry])
	}
	// This machine may lack kprobes: fabricate them.
	caps.Methods[Kprobe] = ""
	caps.Targets[Kprobe] = map[string]bool{"irqfd_wakeup": true, "irqfd_inject": true}
	choices, err := Select(stages, caps, ProbeAuto)
	if err != nil {
		t.Fatal(err)
	}
	if c := choices[0]; c.Rung.Method != Kprobe || !strings.Contains(c.Reason, why) {
		t.Errorf("irqfd_wakeup: %s (%q), want kprobe with the reason fentry was skipped", c.Rung.Method, c.Reason)
	}
	if c := choices[1]; c.Rung.Method != Fentry {
		t.Errorf("irqfd_inject: %s, want fentry", c.Rung.Method)
	}
	if _, err := Select(stages, caps, ProbeFentry); err == nil || !strings.Contains(err.Error(), why) {
		t.Errorf("forced fentry: %v, want an error naming why", err)
	}
}
