package tracer

import (
	"errors"
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
	caps := probeCapabilities(stages, kb, nil, kernelSupport{fentry: func(fn string) error { probedOn = fn; return nil }})
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
	caps := probeCapabilities(stages, kb, nil, kernelSupport{tpBTF: func(tp string) error { probedOn = tp; return nil }})
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
	caps = probeCapabilities(stages, nil, errors.New("no /sys/kernel/btf/vmlinux"), kernelSupport{tpBTF: func(string) error {
		t.Error("tp_btf probed without kernel BTF")
		return nil
	}})
	if caps.Methods[TpBTF] == "" {
		t.Error("tp_btf usable without kernel BTF")
	}
}
