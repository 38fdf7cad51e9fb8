package tracer

import (
	"strings"
	"testing"
)

// A ladder like the VM tracer's: three rungs, two hooks on the kprobe rung.
var testStages = []Stage{
	{Name: "out", Required: true, Rungs: []Rung{
		{Method: Fentry, Hooks: []Hook{{Target: "ip_local_out", Program: "f_out"}, {Target: "__ip_local_out", Program: "f_out2"}}},
		{Method: Kprobe, Hooks: []Hook{{Target: "ip_local_out", Program: "k_out"}, {Target: "__ip_local_out", Program: "k_out"}}},
		{Method: Tracepoint, Hooks: []Hook{{Target: "syscalls/sys_enter_sendto", Program: "t_out"}}},
	}},
	{Name: "rx", Rungs: []Rung{
		{Method: RawTracepoint, Hooks: []Hook{{Target: "netif_receive_skb", Program: "r_rx"}}},
	}},
	{Name: "icmp", Rungs: []Rung{
		{Method: Fentry, Hooks: []Hook{{Target: "icmp_rcv", Program: "f_icmp"}}},
		{Method: Kprobe, Hooks: []Hook{{Target: "icmp_rcv", Program: "k_icmp"}}},
	}},
}

func allTargets(present bool) map[Method]map[string]bool {
	t := map[Method]map[string]bool{}
	for m, names := range Targets(testStages) {
		t[m] = map[string]bool{}
		for _, n := range names {
			t[m][n] = present
		}
	}
	return t
}

func capsWith(methods map[Method]string) Capabilities {
	return Capabilities{Methods: methods, Targets: allTargets(true)}
}

var (
	everything = capsWith(map[Method]string{Fentry: "", Kprobe: "", Tracepoint: "", RawTracepoint: ""})
	// This machine: no kprobes, fentry refused, tracepoints fine.
	tracepointsOnly = capsWith(map[Method]string{Fentry: "attach refused", Kprobe: "no CONFIG_KPROBES", Tracepoint: "", RawTracepoint: ""})
	kprobesNoFentry = capsWith(map[Method]string{Fentry: "no trampolines", Kprobe: "", Tracepoint: "", RawTracepoint: ""})
)

func methods(t *testing.T, ch []Choice) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range ch {
		if c.Available {
			out[c.Stage] = string(c.Rung.Method)
		} else {
			out[c.Stage] = "unavailable"
		}
	}
	return out
}

func TestSelectAuto(t *testing.T) {
	cases := []struct {
		name string
		caps Capabilities
		want map[string]string
	}{
		{"everything", everything, map[string]string{"out": "fentry", "rx": "raw_tracepoint", "icmp": "fentry"}},
		{"kprobes", kprobesNoFentry, map[string]string{"out": "kprobe", "rx": "raw_tracepoint", "icmp": "kprobe"}},
		{"tracepoints only", tracepointsOnly, map[string]string{"out": "tracepoint", "rx": "raw_tracepoint", "icmp": "unavailable"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := Select(testStages, c.caps, "auto")
			if err != nil {
				t.Fatal(err)
			}
			got := methods(t, ch)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("stage %s: got %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

func TestSelectReasonsAndProbeRecord(t *testing.T) {
	ch, err := Select(testStages, tracepointsOnly, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ch[0].Reason, "fentry: attach refused") || !strings.Contains(ch[0].Reason, "kprobe: no CONFIG_KPROBES") {
		t.Errorf("reason of out does not say why higher rungs were skipped: %q", ch[0].Reason)
	}
	p := ch[2].Probe()
	if p.Available || p.Method != "" || !strings.Contains(p.Reason, "no usable rung") {
		t.Errorf("unavailable stage probe = %+v", p)
	}
	p = ch[0].Probe()
	if p.Method != "tracepoint" || p.Target != "syscalls/sys_enter_sendto" || !p.Available {
		t.Errorf("probe = %+v", p)
	}
}

func TestSelectOnlyPresentHooks(t *testing.T) {
	caps := capsWith(map[Method]string{Kprobe: "", RawTracepoint: "", Tracepoint: ""})
	caps.Targets[Kprobe]["ip_local_out"] = false // e.g. inlined on this build
	ch, err := Select(testStages, caps, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if hooks := ch[0].Rung.Hooks; len(hooks) != 1 || hooks[0].Target != "__ip_local_out" {
		t.Errorf("kprobe rung hooks = %+v, want only __ip_local_out", hooks)
	}
	if got := ch[0].Probe().Target; got != "__ip_local_out" {
		t.Errorf("target = %q", got)
	}
	// No target of the kprobe rung: fall through to the tracepoint.
	caps.Targets[Kprobe]["__ip_local_out"] = false
	ch, err = Select(testStages, caps, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if ch[0].Rung.Method != Tracepoint || !strings.Contains(ch[0].Reason, "not found") {
		t.Errorf("got %s (%s), want tracepoint after missing kprobe targets", ch[0].Rung.Method, ch[0].Reason)
	}
}

func TestSelectForced(t *testing.T) {
	// Forced kprobe where kprobes work: kprobe for stages that have one,
	// own best rung (with a reason) for the others.
	ch, err := Select(testStages, everything, "kprobe")
	if err != nil {
		t.Fatal(err)
	}
	got := methods(t, ch)
	if got["out"] != "kprobe" || got["icmp"] != "kprobe" || got["rx"] != "raw_tracepoint" {
		t.Errorf("forced kprobe: %v", got)
	}
	if !strings.HasPrefix(ch[1].Reason, "no kprobe rung for this stage") {
		t.Errorf("fallback reason = %q", ch[1].Reason)
	}
	// Forced tracepoint covers raw tracepoints; a stage without any
	// tracepoint rung falls back to its best rung.
	ch, err = Select(testStages, everything, "tracepoint")
	if err != nil {
		t.Fatal(err)
	}
	got = methods(t, ch)
	if got["out"] != "tracepoint" || got["rx"] != "raw_tracepoint" || got["icmp"] != "fentry" {
		t.Errorf("forced tracepoint: %v", got)
	}
	// Forced rung that exists but cannot work: a clear error, never a
	// silent substitute.
	_, err = Select(testStages, tracepointsOnly, "kprobe")
	if err == nil || !strings.Contains(err.Error(), "stage out: --probe kprobe forced but kprobe: no CONFIG_KPROBES") {
		t.Errorf("forced kprobe without kprobes: err = %v", err)
	}
	// An optional stage of a module that is not loaded (the host tracer's
	// OVS upcall without openvswitch): nothing to attach to by any method,
	// so a forced probe leaves it unavailable, saying so, instead of
	// refusing the whole tracer (the 5.10 tracepoint cell of the matrix).
	ovs := append(append([]Stage{}, testStages...), Stage{Name: "upcall", Rungs: []Rung{
		{Method: TpBTF, Hooks: []Hook{{Target: "ovs_dp_upcall", Program: "b_up"}}},
		{Method: RawTracepoint, Hooks: []Hook{{Target: "ovs_dp_upcall", Program: "r_up"}}},
	}})
	for _, probe := range []string{"tracepoint", "auto", "kprobe"} {
		ch, err = Select(ovs, everything, probe)
		if err != nil {
			t.Fatalf("forced %s with an absent optional stage: %v", probe, err)
		}
		if up := ch[len(ch)-1]; up.Available || !strings.Contains(up.Reason, "ovs_dp_upcall not found") {
			t.Errorf("forced %s: upcall %+v, want unavailable with the reason", probe, up)
		}
	}
	// Present but unusable by the forced method: still an error.
	caps := capsWith(map[Method]string{TpBTF: "", RawTracepoint: "", Fentry: "", Kprobe: "", Tracepoint: ""})
	caps.Targets[TpBTF] = map[string]bool{"ovs_dp_upcall": true}
	if _, err = Select(ovs, caps, "tracepoint"); err == nil || !strings.Contains(err.Error(), "stage upcall: --probe tracepoint forced but") {
		t.Errorf("forced tracepoint, upcall only by tp_btf: err = %v", err)
	}
	_, err = Select(testStages, everything, "bogus")
	if err == nil {
		t.Error("bogus probe accepted")
	}
}

func TestSelectRequiredStage(t *testing.T) {
	caps := capsWith(map[Method]string{RawTracepoint: ""}) // no tracepoint for "out"
	_, err := Select(testStages, caps, "auto")
	if err == nil || !strings.Contains(err.Error(), "stage out: no usable rung") {
		t.Errorf("required stage without a rung: err = %v", err)
	}
	stages := []Stage{{Name: "ghost"}}
	ch, err := Select(stages, caps, "auto")
	if err != nil || ch[0].Available || !strings.Contains(ch[0].Reason, "not observable") {
		t.Errorf("stage without rungs: %+v %v", ch, err)
	}
}

func TestTargets(t *testing.T) {
	got := Targets(testStages)
	if len(got[Kprobe]) != 3 || len(got[Fentry]) != 3 || len(got[RawTracepoint]) != 1 || len(got[Tracepoint]) != 1 {
		t.Errorf("targets = %v", got)
	}
}
