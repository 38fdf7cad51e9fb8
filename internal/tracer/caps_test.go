package tracer

import (
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
	caps := probeCapabilities(stages, kb, nil, func(fn string) error { probedOn = fn; return nil })
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
